"""Group commit: one thread applies the engine's writes in batches, one transaction each.

The engine changes hundreds of calls a second. Committing each change on its own would cost
an fsync apiece on SQLite (``synchronous=FULL``) and a round trip apiece on PostgreSQL, so
writes queue here and everything pending when the thread comes round is applied in one
transaction. A job submitted with a ``key`` replaces a pending job with the same key: a
newer snapshot of a call makes the older one pointless, and both waiters learn when the
newer one is stored.

Each job's future resolves only after its transaction committed, so a caller that awaits it
knows the data is durable (a callback is sent only after the status it reports is stored).
If a batch fails, it is rolled back and its jobs are retried one per transaction, so one bad
job fails alone and the others still land.

Batches run in a thread of their own. Under load that thread waits for the GIL at every
row (SQLite's driver gives it up around each step), so a busy batch can take tens of
milliseconds, which the API requests in it wait too. Running the statements in the event
loop's thread instead was measured (bench/api_calls.py): API latency was no better and SIP
suffered, click-to-call lost statuses at 150 calls/s instead of 200.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy.orm import Session, sessionmaker

T = TypeVar("T")
Job = Callable[[Session], Any]

log = logging.getLogger(__name__)


# Writes a list of items; may return one result per item (each item's future gets its own).
BulkApply = Callable[[Session, list[Any]], "list[Any] | None"]


@dataclass
class _Pending:
    job: Job | None
    waiters: list[asyncio.Future[Any]] = field(default_factory=list)
    bulk: tuple[BulkApply, Any] | None = None  # (apply, item): applied with its kind at once
    urgent: bool = False  # someone is waiting on it now: the batch does not linger

    def run_alone(self, session: Session) -> Any:
        if self.bulk is not None:
            apply, item = self.bulk
            answers = apply(session, [item])
            return None if answers is None else answers[0]
        assert self.job is not None
        return self.job(session)


class WriterStopped(RuntimeError):
    """A job was submitted to a writer that has stopped."""


class StoreWriter:
    """Applies submitted jobs in a background thread, many per transaction."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        *,
        max_batch: int = 500,
        linger_s: float = 0.0,
    ) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be positive, got {max_batch}")
        self._sessions = sessions
        self._max_batch = max_batch
        self._linger_s = linger_s
        self._lock = threading.Condition()
        self._order: list[object] = []  # keys in submission order; anonymous jobs get a token
        self._pending: dict[object, _Pending] = {}
        self._urgent = 0  # pending urgent jobs
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.batches = 0
        self.jobs = 0

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._run, name="store-writer", daemon=True)
        self._thread.start()

    async def stop(self) -> None:
        """Apply everything already submitted, then end the thread."""
        with self._lock:
            self._stopping = True
            self._lock.notify()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join)
            self._thread = None

    def submit(self, job: Callable[[Session], T], *, key: object = None) -> asyncio.Future[T]:
        """Queue ``job(session)``; the future resolves once its transaction committed."""
        return self._queue(job, None, key)

    def submit_item(
        self, apply: BulkApply, item: object, *, key: object = None, urgent: bool = False
    ) -> asyncio.Future[Any]:
        """Queue ``item`` to be written by ``apply(session, items)`` with others of its kind.

        All items pending for the same ``apply`` go to one call of it (one executemany
        instead of a statement each); they are applied after the batch's plain jobs. If
        ``apply`` returns a list, the future of each item resolves to its entry.

        ``urgent``: a client is waiting for this write (an API request), so the next batch
        starts at once instead of lingering for more work.
        """
        return self._queue(None, (apply, item), key, urgent)

    def _queue(
        self, job: Job | None, bulk: tuple[BulkApply, Any] | None, key: object,
        urgent: bool = False,
    ) -> asyncio.Future[Any]:
        loop = self._loop
        if loop is None:
            raise WriterStopped("the store writer is not started")
        waiter: asyncio.Future[Any] = loop.create_future()
        with self._lock:
            if self._stopping:
                raise WriterStopped("the store writer is stopping")
            token: object = key if key is not None else object()
            pending = self._pending.get(token)
            if pending is None:
                self._pending[token] = _Pending(job, [waiter], bulk, urgent)
                self._order.append(token)
                self._urgent += urgent
                self._lock.notify()
            else:
                pending.job, pending.bulk = job, bulk
                pending.waiters.append(waiter)
                if urgent and not pending.urgent:
                    pending.urgent = True
                    self._urgent += 1
                    self._lock.notify()
        return waiter

    @property
    def backlog(self) -> int:
        with self._lock:
            return len(self._order)

    # --- the thread ----------------------------------------------------------------------------

    def _take(self) -> list[_Pending] | None:
        with self._lock:
            while not self._order and not self._stopping:
                self._lock.wait()
            if not self._order:
                return None
            if self._linger_s and not self._urgent:
                # Let more work arrive: a transaction costs about the same for 1 job or 100.
                deadline = time.monotonic() + self._linger_s
                while not self._stopping and len(self._order) < self._max_batch \
                        and not self._urgent:  # fmt: skip
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._lock.wait(left)
            tokens = self._order[: self._max_batch]
            del self._order[: self._max_batch]
            batch = [self._pending.pop(token) for token in tokens]
            self._urgent -= sum(item.urgent for item in batch)
            return batch

    def _run(self) -> None:
        while (batch := self._take()) is not None:
            self._process(batch)

    def _process(self, batch: list[_Pending]) -> None:
        self.batches += 1
        self.jobs += len(batch)
        try:
            with self._sessions.begin() as session:
                results = self._apply(session, batch)
        except Exception:
            log.warning("a batch of %d store writes failed; retrying one by one", len(batch))
            for item in batch:
                self._run_alone(item)
            return
        # One wake-up of the loop for the whole batch, not one per waiter: each costs a
        # write to the loop's self-pipe and a turn of the loop.
        settled = [
            (waiter, result) for item, result in zip(batch, results, strict=True)
            for waiter in item.waiters
        ]  # fmt: skip
        loop = self._loop
        assert loop is not None
        loop.call_soon_threadsafe(_settle_all, settled)

    @staticmethod
    def _apply(session: Session, batch: list[_Pending]) -> list[Any]:
        results = [None if item.job is None else item.job(session) for item in batch]
        groups: dict[BulkApply, list[tuple[int, Any]]] = {}
        for index, item in enumerate(batch):
            if item.bulk is not None:
                groups.setdefault(item.bulk[0], []).append((index, item.bulk[1]))
        for apply, entries in groups.items():
            answers = apply(session, [entry for _index, entry in entries])
            if answers is not None:
                for (index, _entry), answer in zip(entries, answers, strict=True):
                    results[index] = answer
        return results

    def _run_alone(self, item: _Pending) -> None:
        try:
            with self._sessions.begin() as session:
                result = item.run_alone(session)
        except Exception as error:  # handed to the waiter, which decides
            self._resolve(item, None, error)
        else:
            self._resolve(item, result, None)

    def _resolve(self, item: _Pending, result: object, error: BaseException | None) -> None:
        loop = self._loop
        assert loop is not None
        for waiter in item.waiters:
            loop.call_soon_threadsafe(_settle, waiter, result, error)


def _settle_all(settled: list[tuple[asyncio.Future[Any], object]]) -> None:
    for waiter, result in settled:
        _settle(waiter, result, None)


def _settle(waiter: asyncio.Future[Any], result: object, error: BaseException | None) -> None:
    if waiter.done():  # the awaiting task was cancelled
        return
    if error is not None:
        waiter.set_exception(error)
    else:
        waiter.set_result(result)
