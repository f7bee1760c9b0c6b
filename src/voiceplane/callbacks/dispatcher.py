"""The callback dispatcher: sends what the outbox holds, until each row is delivered or due
to be given up.

One asyncio task takes due rows from the store (``voiceplane.store.outbox.claim``: leased,
in ``seq`` order per call and URL) and hands each to a sending task; all share one
``aiohttp.ClientSession``. (httpx was the first client: measured here with
bench/callbacks.py's receiver it delivered 240 requests/s over 32 connections, aiohttp
9,000; the issue asks 2,000 callbacks/s.) A 2xx answer is delivered; anything else
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
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Final, TypeVar
from urllib.parse import urlsplit

import aiohttp
from sqlalchemy.orm import Session, sessionmaker
from yarl import URL

from voiceplane.store import outbox
from voiceplane.store.models import utcnow
from voiceplane.store.outbox import OutboxMessage
from voiceplane.store.writer import StoreWriter

from . import signing
from .latency import LatencyHistogram

USER_AGENT: Final = "voiceplane-callbacks/1"
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


def destination(url: str) -> tuple[str, str, int]:
    """What the per-destination limit counts by: scheme, host, port."""
    parsed = urlsplit(url)
    scheme = parsed.scheme.lower()
    port = parsed.port or (443 if scheme == "https" else 80)
    return scheme, (parsed.hostname or "").lower(), port


class _Limits:
    """One semaphore per destination, dropped when nobody uses it."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._slots: dict[tuple[str, str, int], tuple[asyncio.Semaphore, int]] = {}

    @contextlib.asynccontextmanager
    async def hold(self, key: tuple[str, str, int]) -> AsyncIterator[None]:
        semaphore, users = self._slots.get(key, (asyncio.Semaphore(self._size), 0))
        self._slots[key] = (semaphore, users + 1)
        try:
            async with semaphore:
                yield
        finally:
            semaphore, users = self._slots[key]
            if users == 1:
                del self._slots[key]
            else:
                self._slots[key] = (semaphore, users - 1)


Claimed = tuple[OutboxMessage, tuple[str, ...]]


class Dispatcher:
    """Delivers the outbox; a ``Service`` of ``voiceplane serve`` (start after the store)."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        *,
        settings: DispatcherSettings | None = None,
        writer: StoreWriter | None = None,
        client: aiohttp.ClientSession | None = None,
        clock: Callable[[], datetime] = utcnow,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings or DispatcherSettings()
        self._sessions = sessions
        self._writer = writer
        self._client = client
        self._owns_client = client is None
        self._clock = clock
        self._rng = rng or random.Random()
        self._limits = _Limits(self.settings.per_destination)
        self._doorbell = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None
        self._sending: dict[str, asyncio.Task[None]] = {}
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
        if self._client is None:
            settings = self.settings
            self._client = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(
                    total=settings.total_timeout_s, connect=settings.connect_timeout_s
                ),
                # Our own per-destination limit (_Limits) decides; the pool only reuses.
                connector=aiohttp.TCPConnector(limit=0, limit_per_host=0),
                auto_decompress=False,
            )
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
        if self._sending:
            await asyncio.wait(list(self._sending.values()), timeout=self.settings.drain_s)
        unfinished = list(self._sending)
        left = list(self._sending.values())
        for sending in left:
            sending.cancel()
        await asyncio.gather(*left, return_exceptions=True)
        self._sending.clear()
        if unfinished:
            try:  # due again now, rather than when their leases end
                await self._store(partial(_release, ids=unfinished, now=self._clock()))
            except Exception:
                log.warning("could not give back %d callbacks; their leases will end", len(left))
        if self._owns_client and self._client is not None:
            await self._client.close()
            self._client = None

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
            deadline = time.monotonic() + settings.lease_s
            self._remember({message.account_id: secrets for message, secrets in claimed})
            for message, secrets in claimed:
                if message.id in self._sending:  # pragma: no cover - leases prevent it
                    continue
                self._sending[message.id] = asyncio.create_task(
                    self._deliver(message, secrets, deadline), name=f"callback-{message.id}"
                )
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
        deadline = time.monotonic() + settings.lease_s - margin
        for message in messages:
            if message.id in self._sending:  # pragma: no cover - a fresh row is nobody's
                continue
            self._sending[message.id] = asyncio.create_task(
                self._deliver(message, secrets[message.account_id], deadline),
                name=f"callback-{message.id}",
            )

    async def _store(self, job: Callable[[Session], T]) -> T:
        if self._writer is not None:
            return await self._writer.submit(job)
        return await asyncio.to_thread(_in_transaction, self._sessions, job)

    # --- sending -------------------------------------------------------------------------------

    async def _deliver(
        self, message: OutboxMessage, secrets: tuple[str, ...], deadline: float
    ) -> None:
        try:
            async with self._limits.hold(destination(message.url)):
                if time.monotonic() + self.settings.total_timeout_s > deadline:
                    # Waited so long for a slot that the lease could end mid-send: give the
                    # row back rather than risk two senders at once.
                    await self._store(partial(_release, ids=[message.id], now=self._clock()))
                    return
                at, status, error, duration_ms = await self._attempt(message, secrets)
            await self._record(self._result(message, at, status, error, duration_ms))
        except Exception:
            log.exception("callback %s: could not record an attempt", message.id)
        finally:
            self._sending.pop(message.id, None)
            self.wake()  # the next row of this call may be due now

    async def _attempt(
        self, message: OutboxMessage, secrets: tuple[str, ...]
    ) -> tuple[datetime, int | None, str | None, int]:
        client = self._client
        assert client is not None
        at = self._clock()
        body = (message.body or "").encode()
        headers = signing.headers(
            secrets, msg_id=message.id, timestamp=int(at.timestamp()), body=body
        )
        headers["user-agent"] = USER_AGENT
        if message.method == "POST":
            headers["content-type"] = "application/json"
        started = time.monotonic()
        status: int | None = None
        error: str | None = None
        try:
            async with asyncio.timeout(self.settings.total_timeout_s):
                async with client.request(
                    message.method,
                    # encoded: a legacy URL was percent-encoded when its placeholders were
                    # filled; sent exactly as it is, not re-quoted.
                    URL(message.url, encoded=True),
                    data=body if message.method == "POST" else None,
                    headers=headers,
                    allow_redirects=False,
                ) as response:
                    await response.read()  # the connection goes back to the pool whole
            status = response.status
            if not 200 <= status < 300:
                error = f"HTTP {status}"
        except TimeoutError:
            error = f"timed out after {self.settings.total_timeout_s:g} s"
        except (aiohttp.ClientError, OSError, ValueError) as failure:
            name = type(failure).__name__
            error = f"{name}: {failure}" if str(failure) else name
        duration_ms = round((time.monotonic() - started) * 1000)
        return at, status, error, duration_ms

    def _result(
        self,
        message: OutboxMessage,
        at: datetime,
        status: int | None,
        error: str | None,
        duration_ms: int,
    ) -> outbox.AttemptResult:
        """What the attempt means for its row: delivered, retried later, or given up."""

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

    async def _record(self, result: outbox.AttemptResult) -> None:
        if self._writer is not None:
            # A bulk item: every result of a writer batch in two statements.
            await self._writer.submit_item(outbox.record_results, result)
        else:
            await self._store(partial(outbox.record_results, results=[result]))


def _in_transaction(sessions: sessionmaker[Session], job: Callable[[Session], T]) -> T:
    with sessions.begin() as session:
        return job(session)


def _release(session: Session, *, ids: list[str], now: datetime) -> None:
    outbox.release(session, ids, now=now)
