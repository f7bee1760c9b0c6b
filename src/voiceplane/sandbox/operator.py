"""The sandbox operator: a real SIP peer on loopback that plays the telephone network.

It takes the platform's calls on our own SIP stack (``voiceplane.sip.ua``) and treats each
one as the dial plan in ``rules.py`` decides: ring, then reject with a code and its Q.850
cause; ring until the caller gives up; or answer with an SDP answer and hang up later. An
answered call gets a UDP socket of its own that counts the RTP arriving on it, so tests can
prove that media flowed. Re-INVITEs (hold, or third-party call control handing the leg
another party's SDP) get a fresh answer that keeps the call's media port.

Everything runs on the event loop: timers are ``loop.call_later`` handles and media
sockets are watched with ``loop.add_reader``, so a call costs one socket and a few objects,
and thousands of them can be up at once. What the sandbox saw and did is kept for the last
``record_limit`` calls and read with :meth:`SandboxOperator.calls_for` and friends.
"""

from __future__ import annotations

import asyncio
import enum
import ipaddress
import itertools
import logging
import socket
import time
from collections import deque
from dataclasses import dataclass
from functools import partial

from voiceplane import __version__
from voiceplane.config import SandboxSettings
from voiceplane.sip.addressing import Address
from voiceplane.sip.errors import SipParseError
from voiceplane.sip.headers import NameAddr
from voiceplane.sip.legs import LegState
from voiceplane.sip.message import Request
from voiceplane.sip.outcome import Outcome, Party
from voiceplane.sip.sdp import answer_to, make_offer
from voiceplane.sip.timers import TimerValues
from voiceplane.sip.ua import InboundCall, UserAgent

from .rules import (
    Action,
    Decision,
    DialPlan,
    dialled_number,
    normalize_number,
    q850_cause,
    reason_phrase,
)

log = logging.getLogger(__name__)

RECORD_LIMIT = 10_000
STOP_GRACE_S = 2.0  # how long stop() waits for the BYEs it sent to be answered
_RTP_READS_PER_WAKE = 64  # then yield, so one busy socket cannot starve the loop
_MAX_DATAGRAM = 2048
_SHUTDOWN_CODE = 503  # what a call still ringing gets when the sandbox stops
_SOCK_NONBLOCK: int = getattr(socket, "SOCK_NONBLOCK", 0)  # Linux: born non-blocking


class HungUpBy(enum.Enum):
    CALLER = "caller"  # BYE or CANCEL from the caller
    SANDBOX = "sandbox"  # our BYE, or our final response to the INVITE


@dataclass(frozen=True, slots=True)
class SandboxCall:
    """What the sandbox saw and did on one call, at the time it was asked.

    ``final_status`` is the final response the sandbox sent to the INVITE (200, the
    rejection, or 487 when the caller cancelled), ``None`` while it is still ringing.
    ``media_port`` is the port in the sandbox's SDP, ``rtp_packets`` the RTP packets
    that arrived there. ``outcome`` is the SIP layer's record once the call has ended.
    """

    call_id: str
    number: str | None
    request_uri: str
    from_uri: str
    decision: Decision
    invite_sdp: bytes
    reinvite_sdps: tuple[bytes, ...]
    final_status: int | None
    final_reason: str
    media_port: int | None
    rtp_packets: int
    hung_up_by: HungUpBy | None
    outcome: Outcome | None

    @property
    def ended(self) -> bool:
        return self.outcome is not None

    @property
    def answered(self) -> bool:
        return self.final_status is not None and 200 <= self.final_status < 300


class _Record:
    """What the sandbox keeps of one call, during it and after: no SIP objects, so it is small."""

    __slots__ = (
        "call_id", "number", "request_uri", "from_header", "decision", "invite_sdp",
        "reinvite_sdps", "final", "media_port", "rtp_packets", "outcome",
    )  # fmt: skip

    def __init__(self, call: InboundCall, number: str | None, decision: Decision) -> None:
        self.call_id = call.call_id
        self.number = number
        self.request_uri = call.request_uri
        # The From is parsed when someone asks (snapshot), not on every call.
        self.from_header = call.request.headers.get("from") or ""
        self.decision = decision
        self.invite_sdp = call.request.body
        self.reinvite_sdps: list[bytes] = []
        self.final: tuple[int, str] | None = None  # the final response we sent ourselves
        self.media_port: int | None = None
        self.rtp_packets = 0
        self.outcome: Outcome | None = None

    def snapshot(self) -> SandboxCall:
        outcome = self.outcome
        final = (outcome.status, outcome.reason) if outcome and outcome.status else self.final
        hung_up_by = None
        if outcome is not None:
            hung_up_by = HungUpBy.CALLER if outcome.ended_by is Party.REMOTE else HungUpBy.SANDBOX
        return SandboxCall(
            call_id=self.call_id,
            number=self.number,
            request_uri=self.request_uri,
            from_uri=_from_uri(self.from_header),
            decision=self.decision,
            invite_sdp=self.invite_sdp,
            reinvite_sdps=tuple(self.reinvite_sdps),
            final_status=final[0] if final else None,
            final_reason=final[1] if final else "",
            media_port=self.media_port,
            rtp_packets=self.rtp_packets,
            hung_up_by=hung_up_by,
            outcome=outcome,
        )


class _Session:
    """The sandbox's side of one call while it is up."""

    __slots__ = (
        "call", "record", "timer", "sock", "answer_sdp", "session_id", "session_version",
        "ended",
    )  # fmt: skip

    def __init__(self, call: InboundCall, record: _Record) -> None:
        self.call = call
        self.record = record
        self.timer: asyncio.TimerHandle | None = None
        self.sock: socket.socket | None = None
        self.answer_sdp = b""
        self.session_id = 0
        self.session_version = 0
        self.ended = call.ended()

    @property
    def decision(self) -> Decision:
        return self.record.decision


def _from_uri(value: str) -> str:
    try:
        return NameAddr.parse(value).uri
    except SipParseError:
        return value


class SandboxOperator:
    """The built-in operator. ``start``/``stop`` make it a ``voiceplane.server.Service``."""

    def __init__(
        self,
        settings: SandboxSettings,
        timer_values: TimerValues | None = None,
        *,
        record_limit: int = RECORD_LIMIT,
    ) -> None:
        if record_limit < 1:
            raise ValueError("record_limit must be at least 1")
        self.settings = settings
        self.plan = DialPlan.from_settings(settings)
        host, port = settings.listen.host, settings.listen.port
        self.ua = UserAgent(
            listen=[(transport, host, port) for transport in settings.transports],
            user_agent=f"voiceplane-sandbox/{__version__}",
            timer_values=timer_values,
            on_call=self._on_call,
        )
        self._records: deque[_Record] = deque(maxlen=record_limit)
        self._active: dict[int, _Session] = {}
        self._media_host = host
        self._media_family = socket.AF_INET
        # o= session ids: unique per call, and larger for later calls (RFC 8866 section 5.2).
        self._session_ids = itertools.count(int(time.time()) << 16)
        self._loop: asyncio.AbstractEventLoop | None = None

    # --- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._media_family, self._media_host = await _media_address(loop, self.settings)
        await self.ua.start()
        self._loop = loop
        for address in self.ua.addresses.values():
            log.info("sandbox operator listening on %s", address)

    async def stop(self) -> None:
        """Hang up every call still up (BYE, or 503 while ringing), then close everything."""
        if self._loop is None:
            return
        sessions = list(self._active.values())
        for session in sessions:
            self._cancel_timer(session)
            state = session.call.state
            if state in (LegState.RECEIVED, LegState.RINGING):
                self._reject(session, _SHUTDOWN_CODE, reason_phrase(_SHUTDOWN_CODE),
                             q850_cause(_SHUTDOWN_CODE))  # fmt: skip
            elif state in (LegState.ANSWERED, LegState.CONFIRMED):
                session.call.hangup()
        pending = [s.ended for s in sessions if not s.ended.done()]
        if pending:
            await asyncio.wait(pending, timeout=STOP_GRACE_S)
        for session in list(self._active.values()):
            self._cancel_timer(session)
            self._close_media(session)
        self._active.clear()
        await self.ua.stop()
        self._loop = None

    # --- what callers and tests read -----------------------------------------------------------

    @property
    def addresses(self) -> dict[str, Address]:
        """Where the sandbox listens, per transport (``udp``, ``tcp``)."""
        return dict(self.ua.addresses)

    @property
    def address(self) -> Address:
        """The address to send calls to: UDP when the sandbox listens on it."""
        addresses = self.ua.addresses
        if not addresses:
            raise RuntimeError("the sandbox operator is not started")
        return addresses.get("udp") or next(iter(addresses.values()))

    @property
    def active_calls(self) -> int:
        return len(self._active)

    def calls(self) -> tuple[SandboxCall, ...]:
        """Every call still on record, oldest first."""
        return tuple(record.snapshot() for record in self._records)

    def calls_for(self, number: str) -> tuple[SandboxCall, ...]:
        """The calls on record to ``number`` (written as dialled: a leading + counts)."""
        wanted = normalize_number(number)
        if wanted is None:
            raise ValueError(f"not a phone number: {number!r}")
        return tuple(r.snapshot() for r in self._records if r.number == wanted)

    def call(self, call_id: str) -> SandboxCall | None:
        """The latest call on record with this Call-ID."""
        for record in reversed(self._records):
            if record.call_id == call_id:
                return record.snapshot()
        return None

    # --- calls ---------------------------------------------------------------------------------

    def _on_call(self, call: InboundCall) -> None:
        number = dialled_number(call.request_uri)
        decision = self.plan.decide(number)
        record = _Record(call, number, decision)
        session = _Session(call, record)
        self._records.append(record)
        self._active[call.leg.id] = session
        session.ended.add_done_callback(partial(self._on_ended, session))
        if log.isEnabledFor(logging.DEBUG):
            log.debug("call %s to %s: %s", call.call_id, number, decision)
        if decision.action is Action.ANSWER and not self._prepare_answer(session):
            return
        if decision.action is Action.RING or decision.delay_s > 0:
            call.ring()
        if decision.action is Action.RING:
            return
        if decision.delay_s > 0:
            session.timer = self._require_loop().call_later(
                decision.delay_s, self._complete, session
            )
        else:
            self._complete(session)

    def _prepare_answer(self, session: _Session) -> bool:
        """Bind the call's media socket and build its SDP; reject the call if either fails."""
        try:
            self._open_media(session)
        except OSError as exc:
            log.warning("sandbox: no media socket for call %s: %s", session.call.call_id, exc)
            self._reject(session, 503, reason_phrase(503), q850_cause(503))
            return False
        session.session_id = next(self._session_ids)
        session.session_version = 1
        try:
            session.answer_sdp = self._sdp_for(session, session.record.invite_sdp)
        except SipParseError as exc:
            code = exc.status_hint if 400 <= exc.status_hint <= 699 else 488
            self._reject(session, code, reason_phrase(code), q850_cause(code))
            return False
        session.call.on_reinvite = partial(self._on_reinvite, session)
        return True

    def _complete(self, session: _Session) -> None:
        """The delay is over: answer or reject, unless the caller has gone meanwhile."""
        session.timer = None
        call = session.call
        if call.state not in (LegState.RECEIVED, LegState.RINGING):
            return
        decision = session.decision
        if decision.action is Action.REJECT:
            assert decision.code is not None
            self._reject(session, decision.code, decision.reason, decision.cause)
            return
        session.record.final = (200, "OK")
        call.answer(session.answer_sdp)
        if decision.hold_s > 0:
            session.timer = self._require_loop().call_later(
                decision.hold_s, self._hang_up, session
            )

    def _reject(self, session: _Session, code: int, reason: str, cause: int | None) -> None:
        session.record.final = (code, reason)
        extra = () if cause is None else (("Reason", f"Q.850;cause={cause}"),)
        session.call.reject(code, reason, extra=extra)

    def _hang_up(self, session: _Session) -> None:
        session.timer = None
        if session.call.state in (LegState.ANSWERED, LegState.CONFIRMED):
            session.call.hangup()

    def _on_reinvite(self, session: _Session, request: Request) -> bytes | None:
        """A new offer (hold, or another party's SDP): answer it on the same media port."""
        session.record.reinvite_sdps.append(request.body)
        session.session_version += 1
        try:
            sdp = self._sdp_for(session, request.body)
        except SipParseError:
            return None  # the user agent answers 488
        session.answer_sdp = sdp
        return sdp

    def _on_ended(self, session: _Session, ended: asyncio.Future[Outcome]) -> None:
        if not ended.cancelled():
            session.record.outcome = ended.result()
        self._cancel_timer(session)
        self._close_media(session)
        self._active.pop(session.call.leg.id, None)

    def _cancel_timer(self, session: _Session) -> None:
        if session.timer is not None:
            session.timer.cancel()
            session.timer = None

    def _require_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            raise RuntimeError("the sandbox operator is not started")
        return self._loop

    # --- media ---------------------------------------------------------------------------------

    def _sdp_for(self, session: _Session, offer_body: bytes) -> bytes:
        """Our answer to ``offer_body``, or our offer when it is empty (RFC 3264)."""
        port = session.record.media_port
        assert port is not None
        if not offer_body:
            return make_offer(
                address=self._media_host, port=port,
                session_id=session.session_id, session_version=session.session_version,
            ).encode()  # fmt: skip
        # Offers repeat their shape from call to call (only ports and origins differ):
        # answer_to makes each shape's answer once.
        return answer_to(
            offer_body, address=self._media_host, port=port, session_id=session.session_id,
            session_version=session.session_version,
        )  # fmt: skip

    def _open_media(self, session: _Session) -> int:
        # Non-blocking from the start where it can be: a system call fewer per call.
        sock = socket.socket(self._media_family, socket.SOCK_DGRAM | _SOCK_NONBLOCK)
        try:
            if not _SOCK_NONBLOCK:
                sock.setblocking(False)
            sock.bind((self._media_host, 0))
            self._require_loop().add_reader(sock.fileno(), self._on_rtp, session)
        except BaseException:
            sock.close()
            raise
        session.sock = sock
        port = int(sock.getsockname()[1])
        session.record.media_port = port
        return port

    def _on_rtp(self, session: _Session) -> None:
        sock = session.sock
        if sock is None:
            return
        record = session.record
        for _ in range(_RTP_READS_PER_WAKE):
            try:
                data = sock.recv(_MAX_DATAGRAM)
            except BlockingIOError:
                return
            except OSError:
                return  # an ICMP error surfacing on the socket: nothing to count
            if _is_rtp(data):
                record.rtp_packets += 1

    def _close_media(self, session: _Session) -> None:
        sock, session.sock = session.sock, None
        if sock is None:
            return
        if self._loop is not None:
            self._loop.remove_reader(sock.fileno())
        sock.close()


def _is_rtp(data: bytes) -> bool:
    """RTP version 2, and not RTCP multiplexed onto the port (RFC 5761 section 4)."""
    return len(data) >= 12 and data[0] >> 6 == 2 and not 192 <= data[1] <= 223


async def _media_address(
    loop: asyncio.AbstractEventLoop, settings: SandboxSettings
) -> tuple[socket.AddressFamily, str]:
    """The address media sockets bind to and the SDP names: the SIP listen address.

    A wildcard listen address cannot go into SDP (``c=0.0.0.0`` means hold), so calls then
    get loopback media: the sandbox is for trying things on one machine.
    """
    host = settings.listen.host
    infos = await loop.getaddrinfo(host, None, type=socket.SOCK_DGRAM)
    if not infos:
        raise OSError(f"cannot resolve {host!r}")
    family, _, _, _, sockaddr = infos[0]
    address = str(sockaddr[0])
    if ipaddress.ip_address(address).is_unspecified:
        address = "::1" if family == socket.AF_INET6 else "127.0.0.1"
    return socket.AddressFamily(family), address
