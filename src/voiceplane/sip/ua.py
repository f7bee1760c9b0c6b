"""The awaitable face of the SIP layer, for the call engine above it.

``UserAgent`` binds the transports, drives one ``SipEndpoint`` and turns its events into
awaitable calls::

    ua = UserAgent(listen=[("udp", "127.0.0.1", 5060)], on_call=handle_incoming)
    await ua.start()
    call = ua.invite(to_uri="sip:+15550001@trunk", from_uri="sip:+15550002@us",
                     destination=Address("203.0.113.7", 5060), sdp=offer, ring_timeout=30)
    if await call.answered():
        ...
        call.hangup()
    outcome = await call.ended()

Incoming calls are handed to ``on_call(call)``; it may answer, ring or reject at once
(a plain function) or take its time (a coroutine function: it runs as a task).
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from .addressing import Address
from .digest import Credentials
from .endpoint import MalformedMessage, RequestFinished, RequestReceived, SipEndpoint
from .legs import (
    CallAnswered,
    CallEnded,
    CallProgress,
    IncomingCall,
    IncomingLeg,
    Leg,
    LegState,
    OutgoingLeg,
    ReinviteFinished,
    ReinviteReceived,
)
from .message import Request
from .outcome import Outcome
from .timers import TimerValues
from .transport import TransportShell

CallHandler = Callable[["InboundCall"], Awaitable[None] | None]
RequestHandler = Callable[[Request], tuple[int, str] | None]


@dataclass(frozen=True, slots=True)
class Progress:
    """A provisional response on an outgoing call: 180 ringing, 183 with early media."""

    status: int
    reason: str
    sdp: bytes


class _Call:
    """What outgoing and incoming calls share: the leg, its end, re-INVITEs."""

    def __init__(self, ua: UserAgent, leg: Leg) -> None:
        self._ua = ua
        self.leg = leg
        self._ended: asyncio.Future[Outcome] | None = None
        self._answered: asyncio.Future[bool] | None = None
        self._reinvite: asyncio.Future[tuple[int, bytes]] | None = None
        self.on_reinvite: Callable[[Request], bytes | None] | None = None

    @property
    def state(self) -> LegState:
        return self.leg.state

    @property
    def call_id(self) -> str:
        return self.leg.call_id

    @property
    def remote_sdp(self) -> bytes:
        return self.leg.remote_sdp

    @property
    def outcome(self) -> Outcome | None:
        return self.leg.outcome

    def ended(self) -> asyncio.Future[Outcome]:
        """Resolves with the leg's outcome once it has ended."""
        if self._ended is None:
            self._ended = self._ua.loop.create_future()
            if self.leg.outcome is not None:
                self._ended.set_result(self.leg.outcome)
        return self._ended

    def answered(self) -> asyncio.Future[bool]:
        """True once answered (incoming: once our 2xx is ACKed); False if it ends first."""
        if self._answered is None:
            self._answered = self._ua.loop.create_future()
            if self._is_answered():
                self._answered.set_result(True)
            elif self.leg.outcome is not None:
                self._answered.set_result(False)
        return self._answered

    def _is_answered(self) -> bool:
        # Outgoing legs are answered once the 2xx came; incoming ones once it was ACKed.
        if isinstance(self.leg, OutgoingLeg):
            return self.leg.state is LegState.ANSWERED
        return self.leg.state is LegState.CONFIRMED

    async def reinvite(self, sdp: bytes) -> tuple[int, bytes]:
        """Send a re-INVITE with a new offer; returns the final status and the answer SDP."""
        self._reinvite = self._ua.loop.create_future()
        self.leg.reinvite(sdp, self._ua._now())
        self._ua._kick()
        return await self._reinvite

    def hangup(self) -> None:
        self.leg.hangup(self._ua._now())  # type: ignore[attr-defined]
        self._ua._kick()

    # events from the UA
    def _set_answered(self) -> None:
        if self._answered is not None and not self._answered.done():
            self._answered.set_result(True)

    def _set_ended(self, outcome: Outcome) -> None:
        if self._answered is not None and not self._answered.done():
            self._answered.set_result(False)
        if self._ended is not None and not self._ended.done():
            self._ended.set_result(outcome)
        if self._reinvite is not None and not self._reinvite.done():
            self._reinvite.set_result((481, b""))


class OutboundCall(_Call):
    leg: OutgoingLeg

    def __init__(self, ua: UserAgent, leg: OutgoingLeg) -> None:
        super().__init__(ua, leg)
        self.progress: list[Progress] = []
        self._progress_waiters: list[asyncio.Future[Progress | None]] = []
        self._progress_listeners: list[Callable[[Progress], None]] = []

    def watch_progress(self, listener: Callable[[Progress], None]) -> Callable[[], None]:
        """Call ``listener`` with every provisional response, those already received first
        (at once) and each new one as it comes; returns the function that stops it.

        Like a loop over :meth:`next_progress`, without a task of its own per call.
        """
        for earlier in self.progress:
            listener(earlier)
        self._progress_listeners.append(listener)

        def stop() -> None:
            if listener in self._progress_listeners:
                self._progress_listeners.remove(listener)

        return stop

    def cancel(self) -> None:
        """Give up ringing (CANCEL); after the answer this hangs up (BYE)."""
        self.leg.cancel(self._ua._now())
        self._ua._kick()

    def next_progress(self) -> asyncio.Future[Progress | None]:
        """The next provisional response, or None if the call is answered or ends first."""
        waiter: asyncio.Future[Progress | None] = self._ua.loop.create_future()
        if self.leg.state not in (LegState.CALLING, LegState.RINGING):
            waiter.set_result(None)
        else:
            self._progress_waiters.append(waiter)
        return waiter

    def _set_progress(self, progress: Progress) -> None:
        self.progress.append(progress)
        for listener in list(self._progress_listeners):
            listener(progress)
        waiters, self._progress_waiters = self._progress_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(progress)

    def _release_progress_waiters(self) -> None:
        waiters, self._progress_waiters = self._progress_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)


class InboundCall(_Call):
    leg: IncomingLeg

    @property
    def request(self) -> Request:
        return self.leg.invite

    @property
    def request_uri(self) -> str:
        return self.leg.invite.uri

    @property
    def source(self) -> Address:
        return self.leg.source

    def ring(self, *, status: int = 180, reason: str = "Ringing", sdp: bytes = b"") -> None:
        self.leg.ring(self._ua._now(), status=status, reason=reason, sdp=sdp)
        self._ua._kick()

    def answer(self, sdp: bytes) -> None:
        self.leg.answer(sdp, self._ua._now())
        self._ua._kick()

    def reject(self, status: int, reason: str, *, extra: tuple[tuple[str, str], ...] = ()) -> None:
        self.leg.reject(status, reason, self._ua._now(), extra=extra)
        self._ua._kick()


class UserAgent:
    def __init__(
        self,
        *,
        listen: Sequence[tuple[str, str, int]],
        user_agent: str = "voiceplane",
        timer_values: TimerValues | None = None,
        on_call: CallHandler | None = None,
        on_request: RequestHandler | None = None,
        pin_outbound: bool = True,
    ) -> None:
        """``listen`` is a list of ``(transport, host, port)``; port 0 picks a free one."""
        self._listen = list(listen)
        self._user_agent = user_agent
        self._timer_values = timer_values
        self._pin_outbound = pin_outbound
        self.on_call = on_call
        self.on_request = on_request
        self.loop = asyncio.get_event_loop()
        self.shell: TransportShell | None = None
        self.endpoint: SipEndpoint | None = None
        self.addresses: dict[str, Address] = {}
        self._calls: dict[int, _Call] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._pending_requests: dict[int, asyncio.Future[int]] = {}
        self._wall_offset = 0.0
        self.malformed = 0

    async def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        shell = TransportShell(self.loop)
        for transport, host, port in self._listen:
            if transport == "udp":
                self.addresses["udp"] = await shell.listen_udp(host, port)
            elif transport == "tcp":
                self.addresses["tcp"] = await shell.listen_tcp(host, port)
            else:
                raise ValueError(f"unsupported SIP transport {transport!r}")
        self.endpoint = SipEndpoint(
            local=self.addresses, user_agent=self._user_agent,
            timer_values=self._timer_values, pin_outbound=self._pin_outbound,
        )  # fmt: skip
        shell.endpoint = self.endpoint
        shell.on_events = self._on_events
        self.shell = shell
        self._wall_offset = time.time() - self.loop.time()

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self.shell is not None:
            await self.shell.close()

    def wall_time(self, t: float | None) -> float | None:
        """A time from an outcome (loop clock) as a UNIX timestamp."""
        return None if t is None else t + self._wall_offset

    @property
    def active_calls(self) -> int:
        return len(self._calls)

    # --- placing calls -------------------------------------------------------------------------

    def invite(
        self,
        *,
        to_uri: str,
        from_uri: str,
        destination: Address | None = None,
        request_uri: str | None = None,
        sdp: bytes = b"",
        ring_timeout: float | None = None,
        credentials: Credentials | None = None,
        display_name: str | None = None,
        extra_headers: tuple[tuple[str, str], ...] = (),
    ) -> OutboundCall:
        endpoint = self._require_endpoint()
        leg = endpoint.invite(
            to_uri=to_uri, from_uri=from_uri, now=self._now(), destination=destination,
            request_uri=request_uri, sdp=sdp, ring_timeout=ring_timeout,
            credentials=credentials, display_name=display_name, extra_headers=extra_headers,
        )  # fmt: skip
        call = OutboundCall(self, leg)
        self._calls[leg.id] = call
        self._kick()
        return call

    async def options(self, uri: str, destination: Address | None = None) -> int:
        """Send OPTIONS (a keep-alive or a capability probe); returns the final status."""
        endpoint = self._require_endpoint()
        tx = endpoint.request("OPTIONS", uri=uri, now=self._now(), destination=destination)
        waiter: asyncio.Future[int] = self.loop.create_future()
        self._pending_requests[id(tx)] = waiter
        self._kick()
        return await waiter

    # --- the event pump ------------------------------------------------------------------------

    def _now(self) -> float:
        return self.loop.time()

    def _kick(self) -> None:
        endpoint = self._require_endpoint()
        endpoint.drain(self._now())
        assert self.shell is not None
        self.shell.flush()

    def _require_endpoint(self) -> SipEndpoint:
        if self.endpoint is None:
            raise RuntimeError("the user agent is not started")
        return self.endpoint

    def _on_events(self, events: list[object]) -> None:
        for event in events:
            if isinstance(event, CallEnded):
                call = self._calls.pop(event.leg.id, None)
                if call is not None:
                    if isinstance(call, OutboundCall):
                        call._release_progress_waiters()
                    call._set_ended(event.outcome)
            elif isinstance(event, CallAnswered):
                found = self._calls.get(event.leg.id)
                if found is not None:
                    found._set_answered()
                    if isinstance(found, OutboundCall):
                        found._release_progress_waiters()
            elif isinstance(event, CallProgress):
                outbound = self._calls.get(event.leg.id)
                if isinstance(outbound, OutboundCall):
                    outbound._set_progress(Progress(event.status, event.reason, event.sdp))
            elif isinstance(event, IncomingCall):
                self._on_incoming(event.leg)
            elif isinstance(event, ReinviteReceived):
                self._on_reinvite(event)
            elif isinstance(event, ReinviteFinished):
                target = self._calls.get(event.leg.id)
                if target is not None and target._reinvite is not None \
                        and not target._reinvite.done():  # fmt: skip
                    target._reinvite.set_result((event.status, event.sdp))
            elif isinstance(event, RequestReceived):
                self._on_request(event)
            elif isinstance(event, RequestFinished):
                waiter = self._pending_requests.pop(id(event.transaction), None)
                if waiter is not None and not waiter.done():
                    waiter.set_result(event.status)
            elif isinstance(event, MalformedMessage):
                self.malformed += 1

    def _on_incoming(self, leg: IncomingLeg) -> None:
        call = InboundCall(self, leg)
        self._calls[leg.id] = call
        if self.on_call is None:
            call.reject(404, "Not Found")
            return
        result = self.on_call(call)
        if inspect.isawaitable(result):
            task = self.loop.create_task(_run_handler(result, call))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _on_reinvite(self, event: ReinviteReceived) -> None:
        call = self._calls.get(event.leg.id)
        now = self._now()
        answer: bytes | None = event.leg.local_sdp
        if call is not None and call.on_reinvite is not None:
            answer = call.on_reinvite(event.request)
        if answer is None:
            event.leg.reject_reinvite(488, "Not Acceptable Here", now)
        else:
            event.leg.accept_reinvite(answer, now)

    def _on_request(self, event: RequestReceived) -> None:
        endpoint = self._require_endpoint()
        now = self._now()
        reply = self.on_request(event.request) if self.on_request is not None else None
        if reply is None:
            method = event.request.method
            if method == "OPTIONS" or (method == "INFO" and event.leg is not None):
                reply = (200, "OK")
            else:
                reply = (405, "Method Not Allowed")
        extra: tuple[tuple[str, str], ...] = ()
        if event.request.method == "OPTIONS":
            extra = (("accept", "application/sdp"),)
        endpoint.respond(event.transaction, reply[0], reply[1], now, extra=extra)


async def _run_handler(result: Awaitable[None], call: InboundCall) -> None:
    try:
        await result
    finally:
        if call.leg.state in (LegState.RECEIVED, LegState.RINGING):
            # A handler that returned without deciding must not leave the caller hanging.
            call.reject(500, "Server Internal Error")
