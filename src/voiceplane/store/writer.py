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

A client waiting on a write (an API request storing a new call: an ``urgent`` item) does
not wait for the engine's work queued before it. Urgent items are taken ahead of the queue
in a transaction of their own, and a batch that is running when one arrives stops at its
next job or kind of item, commits what it applied, and leaves the rest for right after
the urgent ones. The rest keeps its order, and nothing new is taken before it, so only
the urgent items move ahead: they insert new calls, which nothing queued refers to.

A waiter resolves on the event loop it was submitted from: serve's HTTP server runs on a
loop of its own and stores new calls through here too. A loop that has closed meanwhile
gets nothing (nobody waits there) and the writer goes on.

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
        self._carry: list[_Pending] = []  # the rest of a batch cut short for urgent items
        self._flush = False  # take what is pending without lingering (it waited already)
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._started = False
        self.batches = 0
        self.jobs = 0

    def start(self) -> None:
        self._started = True
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

        ``urgent``: a client is waiting for this write (an API request). It is applied
        ahead of everything queued, in a transaction of its own that starts at once (a
        running batch stops early for it), so it must not depend on any write queued before
        it: a new row that nothing pending refers to.
        """
        return self._queue(None, (apply, item), key, urgent)

    def _queue(
        self, job: Job | None, bulk: tuple[BulkApply, Any] | None, key: object,
        urgent: bool = False,
    ) -> asyncio.Future[Any]:
        if not self._started:
            raise WriterStopped("the store writer is not started")
        # On the caller's loop: serve's HTTP thread submits from a loop of its own.
        waiter: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
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
            while not self._order and not self._carry and not self._stopping:
                self._lock.wait()
            if self._urgent:
                return self._take_urgent()
            if self._carry:
                batch, self._carry = self._carry, []
                return batch
            if not self._order:
                return None
            if self._linger_s and not self._flush:
                # Let more work arrive: a transaction costs about the same for 1 job or 100.
                deadline = time.monotonic() + self._linger_s
                while not self._stopping and len(self._order) < self._max_batch \
                        and not self._urgent:  # fmt: skip
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._lock.wait(left)
                if self._urgent:
                    return self._take_urgent()
            self._flush = False
            tokens = self._order[: self._max_batch]
            del self._order[: self._max_batch]
            return [self._pending.pop(token) for token in tokens]

    def _take_urgent(self) -> list[_Pending]:
        """The pending urgent items, out of the queue (called holding the lock)."""
        urgent = [token for token in self._order if self._pending[token].urgent]
        del urgent[self._max_batch :]
        chosen = set(urgent)
        self._order = [token for token in self._order if token not in chosen]
        self._urgent -= len(urgent)
        self._flush = bool(self._order)  # what lingered with them goes next, at once
        return [self._pending.pop(token) for token in urgent]

    def _run(self) -> None:
        # One session for the thread's life, emptied after every transaction: making a new
        # one per batch cost a sixth of a small transaction's CPU (callgrind), and the
        # writer runs hundreds of transactions a second.
        session = self._sessions()
        try:
            while (batch := self._take()) is not None:
                self._process(session, batch)
        finally:
            session.close()

    def _process(self, session: Session, batch: list[_Pending]) -> None:
        self.batches += 1
        try:
            with session.begin():
                applied, results, rest = self._apply(session, batch)
        except Exception:
            session.close()
            log.warning("a batch of %d store writes failed; retrying one by one", len(batch))
            self.jobs += len(batch)
            for item in batch:
                self._run_alone(session, item)
            return
        finally:
            # As a new session each time: nothing one transaction loaded is taken as
            # current by the next (objects handed out stay readable, detached).
            session.close()
        if rest:  # ahead of an earlier batch's rest, if this batch went before that
            self._carry = rest + self._carry
        self.jobs += len(applied)
        # One wake-up of each loop for the whole batch, not one per waiter: each costs a
        # write to the loop's self-pipe and a turn of the loop.
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], object]]] = {}
        for item, result in zip(applied, results, strict=True):
            for waiter in item.waiters:
                by_loop.setdefault(waiter.get_loop(), []).append((waiter, result))
        for loop, settled in by_loop.items():
            _hand_to(loop, _settle_all, settled)

    def _apply(
        self, session: Session, batch: list[_Pending]
    ) -> tuple[list[_Pending], list[Any], list[_Pending]]:
        """Apply ``batch``: its plain jobs in order, then its items, one call per kind.

        When an urgent item is waiting, stop before the next job or kind. Returns what was
        applied, in the order applied, with its results, and the rest, unapplied, in the
        order it is to be applied.
        """
        steps: list[tuple[BulkApply | None, list[_Pending]]] = [
            (None, [item]) for item in batch if item.job is not None
        ]
        groups: dict[BulkApply, list[_Pending]] = {}
        for item in batch:
            if item.bulk is not None:
                groups.setdefault(item.bulk[0], []).append(item)
        steps.extend(groups.items())
        applied: list[_Pending] = []
        results: list[Any] = []
        for index, (apply, items) in enumerate(steps):
            if index and self._urgent:
                return applied, results, [item for _apply, rest in steps[index:] for item in rest]
            if apply is None:
                job = items[0].job
                assert job is not None
                results.append(job(session))
            else:
                answers = apply(session, [item.bulk[1] for item in items if item.bulk])
                results.extend([None] * len(items) if answers is None else answers)
            applied.extend(items)
        return applied, results, []

    def _run_alone(self, session: Session, item: _Pending) -> None:
        try:
            with session.begin():
                result = item.run_alone(session)
        except Exception as error:  # handed to the waiter, which decides
            self._resolve(item, None, error)
        else:
            self._resolve(item, result, None)
        finally:
            session.close()

    def _resolve(self, item: _Pending, result: object, error: BaseException | None) -> None:
        for waiter in item.waiters:
            _hand_to(waiter.get_loop(), _settle, waiter, result, error)


def _hand_to(loop: asyncio.AbstractEventLoop, settle: Callable[..., None], *args: Any) -> None:
    """``settle(*args)`` on ``loop``; nothing if that loop has closed (nobody waits there)."""
    try:
        loop.call_soon_threadsafe(settle, *args)
    except RuntimeError:
        return


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
