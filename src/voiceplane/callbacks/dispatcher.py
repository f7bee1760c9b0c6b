"""The callback dispatcher: sends what the outbox holds, until each row is delivered or due
to be given up.

One asyncio task takes due rows from the store (``voiceplane.store.outbox.claim``: leased,
in ``seq`` order per call and URL) and hands them to a sender (``voiceplane.callbacks.
sending``), which makes the HTTP attempts (``voiceplane.callbacks.http1``): in this
process by default, or in a child process of its own (``voiceplane.callbacks.child``, what
``serve`` uses: the HTTP work then runs on another core than the store writer and the
engine). The dispatcher alone decides what an answer means and stores it. (Clients measured
here with bench/callbacks.py's receiver: httpx delivered 240 requests/s over 32
connections, aiohttp 9,000 at about 265 µs of CPU a request, ``http1`` 35,000 at about
100 µs; the issue asks 2,000 callbacks/s.) A 2xx answer is delivered; anything else
(another status, a refused connection, a timeout) is retried after an exponential backoff
with full jitter
(``uniform(0, min(max_retry_s, first_retry_s * 2**(n-1)))``) until ``retry_for_s`` after the
row was written, then given up. Redirects are not followed: a 3xx is a failure. Every
attempt is kept (time, HTTP status, error, duration). At most ``per_destination`` requests
are open to one scheme+host+port at a time.

Nothing lives only in memory: rows are read from the store, so a restart resumes them. A row
whose send was under way when the process died is sent again once its lease ends (at least
once, always with the same ``webhook-id``). ``wake()`` rings the doorbell after new rows were
written; without it they are found within ``poll_s``.

The engine's fast path: a new callback that nothing holds up is written leased to this
process and handed over with :meth:`Dispatcher.send_now` once its transaction committed
(``voiceplane.calls.reporting.Handover``), so the time from a call's end to its callback is
one commit and one request, with no claim in between. Its results are stored like any other.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, Final, TypeVar

from sqlalchemy.orm import Session, sessionmaker

from voiceplane.store import outbox
from voiceplane.store.models import utcnow
from voiceplane.store.outbox import OutboxMessage
from voiceplane.store.writer import StoreWriter

from . import signing
from .latency import LatencyHistogram
from .sending import (
    USER_AGENT,
    HttpSender,
    Sender,
    SenderSettings,
    SendJob,
    SendOutcome,
    destination,
)

__all__ = ["USER_AGENT", "Dispatcher", "DispatcherSettings", "backoff_s", "destination"]
# How long a signing secret read from the store is used for handed-over callbacks: a
# rotated secret signs them within this long (the retired one still signs too, for its
# grace period).
SECRETS_CACHED_S: Final = 5.0

T = TypeVar("T")
log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class DispatcherSettings:
    connect_timeout_s: float = 5.0
    total_timeout_s: float = 15.0  # one attempt, connect to last byte of the answer
    first_retry_s: float = 5.0  # the backoff's first ceiling; doubles per failure
    max_retry_s: float = 1800.0  # the ceiling of one wait
    retry_for_s: float = 24 * 3600.0  # after this long since the row was written: give up
    per_destination: int = 8  # open requests per scheme+host+port
    max_in_flight: int = 1000  # rows taken from the store and not finished yet
    batch: int = 200  # rows per claim
    poll_s: float = 1.0  # look for due rows at least this often
    lease_s: float = 60.0  # a taken row is nobody else's for this long
    secret_grace_s: float = 24 * 3600.0  # a rotated-out secret keeps signing this long
    drain_s: float = 2.0  # on stop, how long sends under way may finish

    @property
    def sender(self) -> SenderSettings:
        return SenderSettings(self.connect_timeout_s, self.total_timeout_s, self.per_destination)

    def __post_init__(self) -> None:
        for name in (
            "connect_timeout_s", "total_timeout_s", "first_retry_s", "max_retry_s",
            "retry_for_s", "poll_s", "lease_s",
        ):  # fmt: skip
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        for name in ("per_destination", "max_in_flight", "batch"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.secret_grace_s < 0 or self.drain_s < 0:
            raise ValueError("secret_grace_s and drain_s must not be negative")
        if self.lease_s <= self.total_timeout_s:
            raise ValueError("lease_s must be longer than total_timeout_s")


def backoff_s(failures: int, settings: DispatcherSettings, rng: random.Random) -> float:
    """The wait before the next attempt after ``failures`` failed ones (full jitter)."""
    if failures < 1:
        raise ValueError(f"failures starts at 1, got {failures}")
    ceiling = min(settings.max_retry_s, settings.first_retry_s * 2 ** min(failures - 1, 60))
    return rng.uniform(0, ceiling)


Claimed = tuple[OutboxMessage, tuple[str, ...]]


class Dispatcher:
    """Delivers the outbox; a ``Service`` of ``voiceplane serve`` (start after the store)."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        *,
        settings: DispatcherSettings | None = None,
        writer: StoreWriter | None = None,
        sender: Sender | None = None,
        clock: Callable[[], datetime] = utcnow,
        rng: random.Random | None = None,
    ) -> None:
        """``sender`` makes the attempts: by default an ``HttpSender`` in this process;
        ``serve`` passes a ``ChildSender``."""
        self.settings = settings or DispatcherSettings()
        self._sessions = sessions
        self._writer = writer
        self.sender: Sender = sender or HttpSender(self.settings.sender)
        self._clock = clock
        self._rng = rng or random.Random()
        self._doorbell = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None
        self._sending: dict[str, OutboxMessage] = {}  # handed to the sender, no outcome yet
        self._results: list[outbox.AttemptResult] = []  # to hand the writer this turn
        self._idle = asyncio.Event()  # set while nothing is being sent
        self._idle.set()
        self._helpers: set[asyncio.Task[None]] = set()
        self._awaiting_secrets: dict[int, list[OutboxMessage]] = {}
        # Signing secrets by account, for callbacks handed over without a store read.
        self._secret_cache: dict[int, tuple[tuple[str, ...], float]] = {}
        self.delivered = 0
        self.latency = LatencyHistogram()  # creation to delivery (voiceplane.metrics)
        self.retried = 0
        self.given_up = 0

    # --- the Service protocol ----------------------------------------------------------------

    async def start(self) -> None:
        if self._loop_task is not None:
            raise RuntimeError("the dispatcher is already running")
        await self.sender.start(self._on_outcome)
        self._loop_task = asyncio.create_task(self._run(), name="callback-dispatcher")

    async def stop(self) -> None:
        """Stop taking rows, let sends under way finish (``drain_s``), give back the rest."""
        task, self._loop_task = self._loop_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for helper in list(self._helpers):  # handed-over rows keep their leases
            helper.cancel()
        await asyncio.gather(*self._helpers, return_exceptions=True)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), self.settings.drain_s)
        await self.sender.stop()  # abandons what is still open
        self._flush_results()  # the writer stores what it was handed before it stops
        unfinished = list(self._sending)
        self._sending.clear()
        self._idle.set()
        if unfinished:
            try:  # due again now, rather than when their leases end
                await self._store(partial(_release, ids=unfinished, now=self._clock()))
            except Exception:
                log.warning(
                    "could not give back %d callbacks; their leases will end", len(unfinished)
                )

    def wake(self) -> None:
        """New rows were written: look now instead of at the next poll."""
        self._doorbell.set()

    @property
    def in_flight(self) -> int:
        return len(self._sending)

    # --- taking rows ---------------------------------------------------------------------------

    async def _run(self) -> None:
        settings = self.settings
        while True:
            self._doorbell.clear()
            room = min(settings.batch, settings.max_in_flight - len(self._sending))
            claimed: list[Claimed] = []
            if room > 0:
                now = self._clock()
                try:
                    claimed = await self._store(
                        partial(
                            self._claim,
                            now=now,
                            limit=room,
                            lease_until=now + timedelta(seconds=settings.lease_s),
                        )
                    )
                except Exception:
                    log.exception("could not read the callback outbox; trying again")
            if claimed:
                found = {message.account_id: secrets for message, secrets in claimed}
                self._remember(found)
                start_by = time.monotonic() + settings.lease_s
                self._send([message for message, _secrets in claimed], found, start_by)
            if room > 0 and len(claimed) == room:
                await asyncio.sleep(0)  # more may be due: take them after a turn of the loop
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._doorbell.wait(), settings.poll_s)

    def _claim(
        self, session: Session, *, now: datetime, limit: int, lease_until: datetime
    ) -> list[Claimed]:
        messages = outbox.claim(session, now=now, limit=limit, lease_until=lease_until)
        if not messages:
            return []
        secrets = self._secrets_of(session, {message.account_id for message in messages}, now)
        return [(message, secrets[message.account_id]) for message in messages]

    def _secrets_of(
        self, session: Session, accounts: set[int], now: datetime
    ) -> dict[int, tuple[str, ...]]:
        grace = timedelta(seconds=self.settings.secret_grace_s)
        secrets = outbox.signing_secrets(session, account_ids=accounts, now=now, grace=grace)
        for account_id in accounts - secrets.keys():
            # An account's first callback: it gets its secret now (the API shows it).
            secret = signing.new_secret()
            outbox.rotate_secret(session, account_id=account_id, secret=secret, now=now)
            secrets[account_id] = [secret]
        return {account_id: tuple(secrets[account_id]) for account_id in accounts}

    # --- callbacks handed over by the engine ---------------------------------------------------

    def send_now(self, messages: Sequence[OutboxMessage]) -> None:
        """Send callbacks the engine has just written leased to this process
        (``voiceplane.calls.reporting.Handover``), without looking for them in the store.

        If the dispatcher is not running, nothing is lost: their leases end and they are
        sent like any other due row."""
        if self._loop_task is None or not messages:
            return
        now = time.monotonic()
        ready: list[OutboxMessage] = []
        secrets: dict[int, tuple[str, ...]] = {}
        unknown: set[int] = set()
        for message in messages:
            account_id = message.account_id
            cached = self._secret_cache.get(account_id)
            if cached is not None and cached[1] > now:
                secrets[account_id] = cached[0]
                ready.append(message)
            elif account_id in self._awaiting_secrets:  # a read is under way: join it
                self._awaiting_secrets[account_id].append(message)
            else:
                self._awaiting_secrets[account_id] = [message]
                unknown.add(account_id)
        if ready:
            self._start(ready, secrets)
        if unknown:
            task = asyncio.create_task(self._read_secrets(unknown))
            self._helpers.add(task)
            task.add_done_callback(self._helpers.discard)

    async def _read_secrets(self, accounts: set[int]) -> None:
        """One store read for the secrets of ``accounts``, then send what waited for them."""
        try:
            job = partial(self._secrets_of, accounts=accounts, now=self._clock())
            found = await self._store(job)
        except Exception:
            found = {}
            log.exception("could not read signing secrets; callbacks wait for their leases")
        self._remember(found)
        for account_id in accounts:
            waiting = self._awaiting_secrets.pop(account_id, [])
            if account_id in found:
                self._start(waiting, found)

    def _remember(self, secrets: dict[int, tuple[str, ...]]) -> None:
        until = time.monotonic() + SECRETS_CACHED_S
        for account_id, account_secrets in secrets.items():
            self._secret_cache[account_id] = (account_secrets, until)

    def _start(
        self, messages: Sequence[OutboxMessage], secrets: dict[int, tuple[str, ...]]
    ) -> None:
        # The lease began when the row was written, a moment ago: keep a margin.
        settings = self.settings
        margin = min(1.0, (settings.lease_s - settings.total_timeout_s) / 2)
        self._send(messages, secrets, time.monotonic() + settings.lease_s - margin)

    async def _store(self, job: Callable[[Session], T]) -> T:
        if self._writer is not None:
            return await self._writer.submit(job)
        return await asyncio.to_thread(_in_transaction, self._sessions, job)

    # --- sending -------------------------------------------------------------------------------

    def _send(
        self,
        messages: Sequence[OutboxMessage],
        secrets: dict[int, tuple[str, ...]],
        start_by: float,
    ) -> None:
        jobs: list[SendJob] = []
        for message in messages:
            if message.id in self._sending:  # pragma: no cover - leases prevent it
                continue
            self._sending[message.id] = message
            jobs.append(
                SendJob(
                    message.id, message.method, message.url, message.body,
                    secrets[message.account_id], start_by,
                )  # fmt: skip
            )
        if jobs:
            self._idle.clear()
            self.sender.submit(jobs)

    def _on_outcome(self, outcome: SendOutcome) -> None:
        message = self._sending.pop(outcome.id, None)
        if message is None:  # pragma: no cover - the sender answers each job once
            return
        if not self._sending:
            self._idle.set()
        if outcome.attempted:
            self._record(self._result(message, outcome))
        else:
            self._give_back(message.id)

    def _result(self, message: OutboxMessage, outcome: SendOutcome) -> outbox.AttemptResult:
        """What the attempt means for its row: delivered, retried later, or given up."""
        at = datetime.fromtimestamp(outcome.at, UTC)
        status, error, duration_ms = outcome.http_status, outcome.error, outcome.duration_ms

        def ending(**end: datetime) -> outbox.AttemptResult:
            return outbox.AttemptResult(message.id, at, status, error, duration_ms, **end)

        if error is None:
            self.delivered += 1
            delivered_at = self._clock()
            self.latency.observe((delivered_at - message.created_at).total_seconds())
            return ending(delivered_at=delivered_at)
        wait = backoff_s(message.attempts + 1, self.settings, self._rng)
        next_at = at + timedelta(seconds=wait)
        if next_at > message.created_at + timedelta(seconds=self.settings.retry_for_s):
            self.given_up += 1
            return ending(given_up_at=at)
        self.retried += 1
        return ending(retry_at=next_at)

    def _record(self, result: outbox.AttemptResult) -> None:
        if self._writer is None:
            stored = asyncio.ensure_future(
                self._store(partial(outbox.record_results, results=[result]))
            )
            self._after_recording(stored, finished=result.retry_at is None)
            return
        if not self._results:
            # One writer item per turn of the loop for every result of that turn (a frame
            # of outcomes from the sender process brings many).
            asyncio.get_running_loop().call_soon(self._flush_results)
        self._results.append(result)

    def _flush_results(self) -> None:
        results, self._results = self._results, []
        if not results or self._writer is None:
            return
        # A bulk item: every result of a writer batch in two statements.
        stored = self._writer.submit_item(_record_lists, results)
        self._after_recording(stored, finished=any(r.retry_at is None for r in results))

    def _after_recording(self, stored: asyncio.Future[Any], *, finished: bool) -> None:
        stored.add_done_callback(_log_failure)
        if finished:
            # The next row of its call may be due now, once this is stored (a claim in the
            # same writer batch would run before this bulk item).
            stored.add_done_callback(self._wake_after)

    def _give_back(self, message_id: str) -> None:
        """A row handed to the sender and not attempted: due again now, not when its
        lease ends."""
        if self._writer is not None:
            stored = self._writer.submit_item(_release_items, (message_id, self._clock()))
        else:
            job = partial(_release, ids=[message_id], now=self._clock())
            stored = asyncio.ensure_future(self._store(job))
        stored.add_done_callback(_log_failure)
        stored.add_done_callback(self._wake_after)

    def _wake_after(self, _stored: asyncio.Future[object]) -> None:
        self.wake()


def _log_failure(stored: asyncio.Future[object]) -> None:
    if not stored.cancelled() and (error := stored.exception()) is not None:
        log.error("could not store a callback's attempt; its lease will end", exc_info=error)


def _in_transaction(sessions: sessionmaker[Session], job: Callable[[Session], T]) -> T:
    with sessions.begin() as session:
        return job(session)


def _release(session: Session, *, ids: list[str], now: datetime) -> None:
    outbox.release(session, ids, now=now)


def _record_lists(session: Session, lists: list[list[outbox.AttemptResult]]) -> None:
    outbox.record_results(session, [result for results in lists for result in results])


def _release_items(session: Session, items: list[tuple[str, datetime]]) -> None:
    """Rows given back, as a ``StoreWriter`` bulk apply: one statement per batch."""
    outbox.release(session, [message_id for message_id, _now in items], now=items[-1][1])
