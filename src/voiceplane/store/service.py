"""The store as a service of ``voiceplane serve``: schema up to date, the writer running.

Sessions exist from construction (creating an engine opens no connection), so the HTTP app
can be built before anything starts; the schema is migrated in :meth:`StoreService.start`,
before any other service touches the database.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Final

from sqlalchemy.orm import Session, sessionmaker

from .db import create_engine_for, migrate_engine, session_factory, shared_by_processes
from .progress import save_many
from .repository import insert_calls
from .writer import BulkApply, StoreWriter
from .writer_child import WriterChild

# How long the writer waits for more work before a transaction: every commit is an fsync on
# SQLite, so under load fewer, larger transactions cost far less CPU and disk. A write an API
# client waits for (a new call) is urgent and goes ahead in a batch of its own at once:
# lingering had every POST wait these 5 ms first (their median at 100 click-to-calls/s).
WRITER_LINGER_S = 0.005

# The writes applied in the writer process (voiceplane.store.writer_child): the engine's
# call snapshots and the API's new calls, the bulk of all writes under load.
OFFLOADED: Final[tuple[BulkApply, ...]] = (save_many, insert_calls)

log = logging.getLogger(__name__)


class StoreService:
    def __init__(self, url: str, *, writer_process: bool = True) -> None:
        """``writer_process``: apply the bulk of the writes in a process of their own, when
        the database can be shared by processes (a SQLite file or PostgreSQL)."""
        self.url = url
        self.engine = create_engine_for(url)
        self.sessions: sessionmaker[Session] = session_factory(self.engine)
        self.child = WriterChild(url) if writer_process and shared_by_processes(url) else None
        self.writer = StoreWriter(
            self.sessions, linger_s=WRITER_LINGER_S, child=self.child, offload=OFFLOADED
        )

    async def start(self) -> None:
        if self.child is not None:
            try:  # it gets ready (imports, connects) while the schema is migrated
                self.child.start()
            except OSError:
                log.exception("no store writer process; the writes stay in this process")
                self.child = None
                self.writer.stop_offloading()
        await asyncio.to_thread(migrate_engine, self.engine)
        self.writer.start()

    async def stop(self) -> None:
        await self.writer.stop()
        self.engine.dispose()
