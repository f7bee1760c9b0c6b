"""HTTP attempts at callbacks: what a sender is handed, what it answers, and the sender.

The dispatcher decides what to send and what an answer means (delivered, retried, given
up); a sender only makes attempts. :class:`HttpSender` makes them with
:mod:`voiceplane.callbacks.http1` in the running event loop, at most ``per_destination``
requests open to one scheme+host+port at a time. It runs in ``voiceplane serve``'s own
process (the dispatcher's default) or in a child
process of its own (``voiceplane.callbacks.child``), which is why jobs and outcomes are
plain data with wall-clock and ``time.monotonic()`` times (CLOCK_MONOTONIC is one clock for
every process of the machine).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Final, Protocol
from urllib.parse import urlsplit

from . import signing
from .http1 import Http1Client

USER_AGENT: Final = "voiceplane-callbacks/1"

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SendJob:
    """One attempt to make: the outbox row's id is its ``webhook-id``."""

    id: str
    method: str  # "GET" | "POST"
    url: str  # sent exactly as it is (a legacy URL was percent-encoded when it was filled)
    body: str | None  # POST: the JSON text
    secrets: tuple[str, ...]  # the account's signing secrets, newest first
    start_by: float  # time.monotonic(): not begun by then, it is given back unattempted

    def as_tuple(self) -> tuple[str, str, str, str | None, tuple[str, ...], float]:
        return (self.id, self.method, self.url, self.body, self.secrets, self.start_by)


@dataclass(frozen=True, slots=True)
class SendOutcome:
    """What became of a job. ``attempted`` False: no request was made as far as the sender
    knows (its slot came too late, or the sender stopped or died): the row is given back."""

    id: str
    attempted: bool
    at: float = 0.0  # epoch seconds when the attempt began
    http_status: int | None = None
    error: str | None = None  # None: a 2xx answer
    duration_ms: int = 0

    def as_tuple(self) -> tuple[str, bool, float, int | None, str | None, int]:
        return (self.id, self.attempted, self.at, self.http_status, self.error, self.duration_ms)


OnOutcome = Callable[[SendOutcome], None]


@dataclass(frozen=True, slots=True)
class SenderSettings:
    connect_timeout_s: float
    total_timeout_s: float  # one attempt, connect to the last byte of the answer
    per_destination: int  # open requests per scheme+host+port

    def __post_init__(self) -> None:
        if self.connect_timeout_s <= 0 or self.total_timeout_s <= 0:
            raise ValueError("a sender's timeouts must be positive")
        if self.per_destination < 1:
            raise ValueError(f"per_destination must be at least 1, got {self.per_destination}")


class Sender(Protocol):
    """What the dispatcher hands its attempts to. Every submitted job gets exactly one
    outcome through ``on_outcome``, except those still open when ``stop`` is called."""

    async def start(self, on_outcome: OnOutcome) -> None: ...

    def submit(self, jobs: Sequence[SendJob]) -> None: ...

    async def stop(self) -> None: ...


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


class HttpSender:
    """Makes attempts with one :class:`Http1Client` in the running loop."""

    def __init__(self, settings: SenderSettings) -> None:
        self.settings = settings
        self._client: Http1Client | None = None
        self._limits = _Limits(settings.per_destination)
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._on_outcome: OnOutcome | None = None

    async def start(self, on_outcome: OnOutcome) -> None:
        self._on_outcome = on_outcome
        if self._client is None:
            self._client = Http1Client(connect_timeout_s=self.settings.connect_timeout_s)

    def submit(self, jobs: Sequence[SendJob]) -> None:
        if self._on_outcome is None:
            raise RuntimeError("the sender is not started")
        for job in jobs:
            if job.id in self._tasks:  # pragma: no cover - the dispatcher sends a row once
                continue
            self._tasks[job.id] = asyncio.create_task(self._send(job), name=f"callback-{job.id}")

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    async def stop(self) -> None:
        """Abandon the attempts still open (no outcome for them), close the client."""
        tasks = list(self._tasks.values())
        self._tasks.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._on_outcome = None
        if self._client is not None:
            await self._client.close()
            self._client = None

    async def _send(self, job: SendJob) -> None:
        try:
            async with self._limits.hold(destination(job.url)):
                if time.monotonic() + self.settings.total_timeout_s > job.start_by:
                    # Waited so long for a slot that the row's lease could end mid-send:
                    # give it back rather than risk two senders at once.
                    outcome = SendOutcome(job.id, attempted=False)
                else:
                    outcome = await self._attempt(job)
        except Exception:  # pragma: no cover - _attempt turns failures into outcomes
            log.exception("callback %s: the attempt failed unexpectedly", job.id)
            outcome = SendOutcome(job.id, attempted=False)
        if self._tasks.pop(job.id, None) is not None and self._on_outcome is not None:
            self._on_outcome(outcome)

    async def _attempt(self, job: SendJob) -> SendOutcome:
        client = self._client
        assert client is not None
        at = time.time()
        body = (job.body or "").encode()
        headers = signing.headers(job.secrets, msg_id=job.id, timestamp=int(at), body=body)
        headers["user-agent"] = USER_AGENT
        if job.method == "POST":
            headers["content-type"] = "application/json"
        started = time.monotonic()
        status: int | None = None
        error: str | None = None
        try:
            async with asyncio.timeout(self.settings.total_timeout_s):
                # The URL is sent as it is (a legacy URL was percent-encoded when filled).
                status = await client.request(
                    job.method, job.url, headers=headers,
                    body=body if job.method == "POST" else None,
                )  # fmt: skip
            if not 200 <= status < 300:  # a 3xx too: redirects are not followed
                error = f"HTTP {status}"
        except TimeoutError:
            error = f"timed out after {self.settings.total_timeout_s:g} s"
        except (OSError, ValueError) as failure:
            name = type(failure).__name__
            error = f"{name}: {failure}" if str(failure) else name
        duration_ms = round((time.monotonic() - started) * 1000)
        return SendOutcome(job.id, True, at, status, error, duration_ms)
