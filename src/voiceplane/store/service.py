"""The store as a service of ``voiceplane serve``: schema up to date, the writer running.

Sessions exist from construction (creating an engine opens no connection), so the HTTP app
can be built before anything starts; the schema is migrated in :meth:`StoreService.start`,
before any other service touches the database.
"""

from __future__ import annotations

import asyncio

from sqlalchemy.orm import Session, sessionmaker

from .db import create_engine_for, migrate_engine, session_factory
from .writer import StoreWriter

# How long the writer waits for more work before a transaction: every commit is an fsync on
# SQLite, so under load fewer, larger transactions cost far less CPU and disk. A write an API
# client waits for (a new call) is urgent and goes ahead in a batch of its own at once:
# lingering had every POST wait these 5 ms first (their median at 100 click-to-calls/s).
WRITER_LINGER_S = 0.005


class StoreService:
    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = create_engine_for(url)
        self.sessions: sessionmaker[Session] = session_factory(self.engine)
        self.writer = StoreWriter(self.sessions, linger_s=WRITER_LINGER_S)

    async def start(self) -> None:
        await asyncio.to_thread(migrate_engine, self.engine)
        self.writer.start()

    async def stop(self) -> None:
        await self.writer.stop()
        self.engine.dispose()
