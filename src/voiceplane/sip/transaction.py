"""SIP transactions (RFC 3261 section 17, amended by RFC 6026).

Theory of operation
-------------------
There are four machines: client and server, INVITE and non-INVITE. Each is written as a
table of legal ``(state, input) -> state`` transitions; an input with no entry in the
table is a stray message and is dropped, as section 17 requires. What a transition *does*
(send, retransmit, arm a timer, tell the transaction user) is in the method that feeds
the input, next to the RFC text it implements.

Transactions never read a clock and never touch a socket. They write what must be sent
to an ``Outbox`` and arm timers on a shared ``TimerQueue``; the endpoint drains both.
On a reliable transport (TCP) the retransmission timers A, E and G are never armed and
timers D, I, J and K are zero, so the transaction ends at once.

Matching (section 17.1.3 and 17.2.3): a response belongs to the client transaction with
the same top-Via branch and CSeq method; a request belongs to the server transaction with
the same branch, sent-by and method, an ACK matching its INVITE.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass

from .addressing import Address
from .errors import LocalProtocolError
from .headers import Via
from .message import Headers, Request, Response
from .timers import Timer, TimerQueue, TimerValues


class TxState(enum.Enum):
    CALLING = "calling"
    TRYING = "trying"
    PROCEEDING = "proceeding"
    COMPLETED = "completed"
    CONFIRMED = "confirmed"
    ACCEPTED = "accepted"  # RFC 6026
    TERMINATED = "terminated"


class TxInput(enum.Enum):
    PROVISIONAL = "1xx"
    SUCCESS = "2xx"
    FAILURE = "300-699"
    REQUEST_RETRANSMIT = "request retransmission"
    ACK = "ACK"
    RETRANSMIT_TIMER = "retransmit timer"  # A, E or G
    TIMEOUT = "timeout"  # B, F or H
    WAIT_OVER = "wait over"  # D, I, J, K, L or M
    TRANSPORT_ERROR = "transport error"


S, I = TxState, TxInput  # noqa: E741  short names make the tables readable

CLIENT_INVITE: dict[tuple[TxState, TxInput], TxState] = {
    (S.CALLING, I.RETRANSMIT_TIMER): S.CALLING,
    (S.CALLING, I.PROVISIONAL): S.PROCEEDING,
    (S.PROCEEDING, I.PROVISIONAL): S.PROCEEDING,
    (S.CALLING, I.SUCCESS): S.ACCEPTED,
    (S.PROCEEDING, I.SUCCESS): S.ACCEPTED,
    (S.ACCEPTED, I.SUCCESS): S.ACCEPTED,  # 2xx retransmissions go up to the TU
    (S.CALLING, I.FAILURE): S.COMPLETED,
    (S.PROCEEDING, I.FAILURE): S.COMPLETED,
    (S.COMPLETED, I.FAILURE): S.COMPLETED,  # retransmitted final: ACK again
    (S.CALLING, I.TIMEOUT): S.TERMINATED,  # timer B
    (S.PROCEEDING, I.TIMEOUT): S.TERMINATED,  # section 9.1: no final 64*T1 after our CANCEL
    (S.COMPLETED, I.WAIT_OVER): S.TERMINATED,  # timer D
    (S.ACCEPTED, I.WAIT_OVER): S.TERMINATED,  # timer M
    (S.CALLING, I.TRANSPORT_ERROR): S.TERMINATED,
    (S.PROCEEDING, I.TRANSPORT_ERROR): S.TERMINATED,
}

CLIENT_NON_INVITE: dict[tuple[TxState, TxInput], TxState] = {
    (S.TRYING, I.RETRANSMIT_TIMER): S.TRYING,
    (S.PROCEEDING, I.RETRANSMIT_TIMER): S.PROCEEDING,
    (S.TRYING, I.PROVISIONAL): S.PROCEEDING,
    (S.PROCEEDING, I.PROVISIONAL): S.PROCEEDING,
    (S.TRYING, I.SUCCESS): S.COMPLETED,
    (S.PROCEEDING, I.SUCCESS): S.COMPLETED,
    (S.TRYING, I.FAILURE): S.COMPLETED,
    (S.PROCEEDING, I.FAILURE): S.COMPLETED,
    (S.TRYING, I.TIMEOUT): S.TERMINATED,  # timer F
    (S.PROCEEDING, I.TIMEOUT): S.TERMINATED,
    (S.COMPLETED, I.WAIT_OVER): S.TERMINATED,  # timer K
    (S.TRYING, I.TRANSPORT_ERROR): S.TERMINATED,
    (S.PROCEEDING, I.TRANSPORT_ERROR): S.TERMINATED,
}

SERVER_INVITE: dict[tuple[TxState, TxInput], TxState] = {
    (S.PROCEEDING, I.REQUEST_RETRANSMIT): S.PROCEEDING,  # resend the last provisional
    (S.PROCEEDING, I.PROVISIONAL): S.PROCEEDING,
    (S.PROCEEDING, I.SUCCESS): S.ACCEPTED,
    (S.PROCEEDING, I.FAILURE): S.COMPLETED,
    (S.ACCEPTED, I.SUCCESS): S.ACCEPTED,  # the TU's 2xx retransmissions pass through
    (S.ACCEPTED, I.REQUEST_RETRANSMIT): S.ACCEPTED,  # absorbed; the TU retransmits the 2xx
    (S.COMPLETED, I.REQUEST_RETRANSMIT): S.COMPLETED,  # resend the final
    (S.COMPLETED, I.RETRANSMIT_TIMER): S.COMPLETED,  # timer G
    (S.COMPLETED, I.ACK): S.CONFIRMED,
    (S.CONFIRMED, I.ACK): S.CONFIRMED,  # absorbed
    (S.CONFIRMED, I.REQUEST_RETRANSMIT): S.CONFIRMED,  # absorbed
    (S.COMPLETED, I.TIMEOUT): S.TERMINATED,  # timer H: no ACK ever came
    (S.CONFIRMED, I.WAIT_OVER): S.TERMINATED,  # timer I
    (S.ACCEPTED, I.WAIT_OVER): S.TERMINATED,  # timer L
    (S.PROCEEDING, I.TRANSPORT_ERROR): S.TERMINATED,
    (S.COMPLETED, I.TRANSPORT_ERROR): S.TERMINATED,
    (S.ACCEPTED, I.TRANSPORT_ERROR): S.ACCEPTED,  # the 2xx is retransmitted end to end
}

SERVER_NON_INVITE: dict[tuple[TxState, TxInput], TxState] = {
    (S.TRYING, I.REQUEST_RETRANSMIT): S.TRYING,  # absorbed
    (S.TRYING, I.PROVISIONAL): S.PROCEEDING,
    (S.PROCEEDING, I.PROVISIONAL): S.PROCEEDING,
    (S.PROCEEDING, I.REQUEST_RETRANSMIT): S.PROCEEDING,  # resend the provisional
    (S.TRYING, I.SUCCESS): S.COMPLETED,
    (S.TRYING, I.FAILURE): S.COMPLETED,
    (S.PROCEEDING, I.SUCCESS): S.COMPLETED,
    (S.PROCEEDING, I.FAILURE): S.COMPLETED,
    (S.COMPLETED, I.REQUEST_RETRANSMIT): S.COMPLETED,  # resend the final
    (S.COMPLETED, I.WAIT_OVER): S.TERMINATED,  # timer J
    (S.TRYING, I.TRANSPORT_ERROR): S.TERMINATED,
    (S.PROCEEDING, I.TRANSPORT_ERROR): S.TERMINATED,
    (S.COMPLETED, I.TRANSPORT_ERROR): S.TERMINATED,
}


def response_input(status: int) -> TxInput:
    if status < 200:
        return TxInput.PROVISIONAL
    if status < 300:
        return TxInput.SUCCESS
    return TxInput.FAILURE


# --- what transactions tell their user --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ResponseReceived:
    transaction: ClientTransaction
    response: Response


@dataclass(frozen=True, slots=True)
class TransactionTimedOut:
    """Timer B or F fired on a client transaction, or timer H (no ACK) on a server one."""

    transaction: Transaction


@dataclass(frozen=True, slots=True)
class TransactionTransportFailed:
    transaction: Transaction


TransactionEvent = ResponseReceived | TransactionTimedOut | TransactionTransportFailed


class Outbox:
    """What the core produced: bytes to send and events for the layer above."""

    __slots__ = ("datagrams", "tx_events", "retransmissions")

    def __init__(self) -> None:
        self.datagrams: list[tuple[bytes, Address]] = []
        self.tx_events: list[TransactionEvent] = []
        self.retransmissions = 0  # a benchmark at a sustainable rate keeps this at zero

    def send(self, data: bytes, dest: Address) -> None:
        self.datagrams.append((data, dest))

    def resend(self, data: bytes, dest: Address) -> None:
        self.retransmissions += 1
        self.datagrams.append((data, dest))


class _Transaction:
    """What all four machines share: state, the table, the timers, the outbox."""

    TABLE: dict[tuple[TxState, TxInput], TxState] = {}
    kind = ""
    # Slots for all four machines, declared and given their defaults here (``__init__``):
    # tens of thousands of transactions linger at a few hundred calls a second, and an
    # instance dict apiece was one more object each for the cyclic collector to walk.
    __slots__ = (
        "_request", "method", "peer", "state", "_outbox", "_timers", "_values",
        "_on_terminated", "_retransmit", "_timeout", "_wait", "_interval", "owner", "key",
        "_branch", "data", "last_response", "cseq_number", "_ack_data", "_ack_2xx",
        "_last_data",
    )  # fmt: skip

    def __init__(
        self,
        request: Request,
        peer: Address,
        *,
        outbox: Outbox,
        timers: TimerQueue,
        values: TimerValues,
        on_terminated: Callable[[_Transaction], None],
        branch: str | None = None,
    ) -> None:
        self._request: Request | None = request
        self.method = request.method
        self.peer = peer
        self.state = TxState.TERMINATED  # set by the subclass
        self._outbox = outbox
        self._timers = timers
        self._values = values
        self._on_terminated = on_terminated
        self._retransmit: Timer | None = None
        self._timeout: Timer | None = None
        self._wait: Timer | None = None
        self._interval = values.t1
        self.owner: object = None  # the leg this transaction works for, if any
        self.key: tuple[str, ...] = ()  # where the endpoint files it
        # None: read from the top Via when first asked (a client passes the branch of the
        # Via it made, which spares parsing it)
        self._branch = branch
        # A client's last provisional while it rings; the last response a server sent.
        self.last_response: Response | None = None
        # Client side:
        self.data = b""  # the request as sent (and resent), encoded when it starts
        self.cseq_number = 0  # an INVITE's, kept when the request goes: a 2xx's ACK needs it
        self._ack_data = b""  # our ACK of a non-2xx final (INVITE)
        # the TU's ACK of a 2xx: its bytes, where it went, the 2xx's To tag
        self._ack_2xx: tuple[bytes, Address, str] | None = None
        # Server side: the last response as sent, to send again
        self._last_data = b""

    @property
    def request(self) -> Request:
        if self._request is None:
            raise LocalProtocolError(
                f"{self.kind} transaction {self.branch} let go of its request when its "
                "exchange ended"
            )
        return self._request

    @property
    def branch(self) -> str:
        if self._branch is None:
            self._branch = self.request.top_via.branch or ""
        return self._branch

    def _let_go(self) -> None:
        """The exchange is over and the transaction only lingers (timers D, J, K, M) to
        absorb retransmissions: drop the parsed request and what was sent, a dozen live
        objects apiece that every pass of the cyclic collector walked for 32 s."""
        if self._branch is None:
            self._branch = self.request.top_via.branch or ""
        self._request = None

    def _step(self, event: TxInput) -> TxState | None:
        """Apply the table; ``None`` means the input is not legal now and is dropped."""
        new = self.TABLE.get((self.state, event))
        if new is None:
            return None
        self.state = new
        if new is TxState.TERMINATED:
            self._terminate()
        return new

    def _terminate(self) -> None:
        self.state = TxState.TERMINATED
        for timer in (self._retransmit, self._timeout, self._wait):
            if timer is not None:
                timer.cancel()
        self._on_terminated(self)

    def _arm_wait(self, now: float, duration: float) -> None:
        if duration <= 0:
            self._step(TxInput.WAIT_OVER)
        else:
            self._timers.arm_after(now, duration, _Transaction._wait_over, self)

    def _wait_over(self, now: float) -> None:
        self._step(TxInput.WAIT_OVER)

    def transport_failed(self, now: float) -> None:
        if self._step(TxInput.TRANSPORT_ERROR) is not None:
            self._outbox.tx_events.append(TransactionTransportFailed(self))  # type: ignore[arg-type]

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.method} {self.branch} {self.state.value}>"


class ClientTransaction(_Transaction):
    """Client side: sends the request, retransmits it, matches its responses."""

    __slots__ = ()

    def start(self, now: float) -> None:
        raise NotImplementedError

    def _send_request(self) -> None:
        self.data = self.request.encode()
        self._outbox.send(self.data, self.peer)

    def _let_go(self) -> None:
        super()._let_go()
        self.data = b""

    def receive(self, response: Response, now: float) -> None:
        raise NotImplementedError

    def _timed_out(self, now: float) -> None:
        if self._step(TxInput.TIMEOUT) is not None:
            self._outbox.tx_events.append(TransactionTimedOut(self))


class ClientInviteTransaction(ClientTransaction):
    TABLE = CLIENT_INVITE
    kind = "client INVITE"
    __slots__ = ()

    def start(self, now: float) -> None:
        self.state = TxState.CALLING
        self.cseq_number = self.request.cseq.number
        self._send_request()
        if not self.peer.reliable:
            self._retransmit = self._timers.arm(now + self._values.t1, self._timer_a)
        self._timeout = self._timers.arm(now + self._values.b, self._timed_out)

    def cancel_sent(self, now: float) -> None:
        """Section 9.1: the TU cancelled this INVITE. If no final response comes within
        64*T1, the transaction is considered cancelled and destroyed (a timeout)."""
        if self._timeout is not None:
            self._timeout.cancel()
        self._timeout = self._timers.arm(now + self._values.b, self._timed_out)

    def _timer_a(self, now: float) -> None:
        # Section 17.1.1.2: resend, and double the interval each time (no T2 cap for INVITE).
        if self._step(TxInput.RETRANSMIT_TIMER) is not None:
            self._outbox.resend(self.data, self.peer)
            self._interval *= 2
            self._retransmit = self._timers.arm(now + self._interval, self._timer_a)

    def receive(self, response: Response, now: float) -> None:
        event = response_input(response.status)
        old = self.state
        if self._step(event) is None:
            return
        if old is TxState.COMPLETED:  # a retransmitted final: the ACK got lost
            self._outbox.resend(self._ack_data, self.peer)
            return
        if old is TxState.CALLING:
            # Timers A and B only run while Calling; once the far end is alive, the TU's own
            # timers (our ring timeout) govern how long we wait.
            for timer in (self._retransmit, self._timeout):
                if timer is not None:
                    timer.cancel()
            self._retransmit = self._timeout = None  # not kept for the lingering 32 s
        # Kept while it rings only: after a final response the transaction lingers 32 s
        # (timers D, M) just to absorb retransmissions, and holding the response (a dozen
        # live objects) that long made every pass of the cyclic collector longer.
        self.last_response = response if event is TxInput.PROVISIONAL else None
        if event is TxInput.FAILURE:
            self._ack_data = build_non2xx_ack(self.request, response).encode()
            self._outbox.send(self._ack_data, self.peer)
            self._let_go()
            self._arm_wait(now, 0 if self.peer.reliable else self._values.d)
        elif event is TxInput.SUCCESS and old is not TxState.ACCEPTED:
            self._let_go()
            self._arm_wait(now, self._values.m)
        elif event is TxInput.SUCCESS and self.owner is None:
            # A retransmitted 2xx once the TU has gone: its ACK was lost, send it again
            # (a 2xx of another fork, with another To tag, is not ours to ACK).
            ack = self._ack_2xx
            if ack is not None and response.to_tag == ack[2]:
                self._outbox.resend(ack[0], ack[1])
            return
        self._outbox.tx_events.append(ResponseReceived(self, response))

    def send_2xx_ack(self, data: bytes, destination: Address, to_tag: str) -> None:
        """Send the TU's ACK for a 2xx (section 13.2.2.4: the TU's job, not the
        transaction's) and keep it, to answer a retransmitted 2xx that comes after the TU
        has let go of this transaction."""
        self._ack_2xx = (data, destination, to_tag)
        self._outbox.send(data, destination)


class ClientNonInviteTransaction(ClientTransaction):
    TABLE = CLIENT_NON_INVITE
    kind = "client non-INVITE"
    __slots__ = ()

    def start(self, now: float) -> None:
        self.state = TxState.TRYING
        self._send_request()
        if not self.peer.reliable:
            self._retransmit = self._timers.arm(now + self._values.t1, self._timer_e)
        self._timeout = self._timers.arm(now + self._values.f, self._timed_out)

    def _timer_e(self, now: float) -> None:
        # Section 17.1.2.2: double up to T2 while Trying; every T2 once Proceeding.
        if self._step(TxInput.RETRANSMIT_TIMER) is None:
            return
        self._outbox.resend(self.data, self.peer)
        if self.state is TxState.PROCEEDING:
            self._interval = self._values.t2
        else:
            self._interval = min(2 * self._interval, self._values.t2)
        self._retransmit = self._timers.arm(now + self._interval, self._timer_e)

    def receive(self, response: Response, now: float) -> None:
        event = response_input(response.status)
        if self._step(event) is None:
            return
        # A final response goes up to the TU; it is not held for the lingering of timer K.
        self.last_response = response if event is TxInput.PROVISIONAL else None
        if event is not TxInput.PROVISIONAL:
            for timer in (self._retransmit, self._timeout):
                if timer is not None:
                    timer.cancel()
            self._retransmit = self._timeout = None
            self._let_go()
            self._arm_wait(now, 0 if self.peer.reliable else self._values.t4)
        # A 1xx does not re-arm timer E: it keeps running, and once it fires in Proceeding
        # it is reset to T2 (section 17.1.2.2), so repeated 1xx cannot delay retransmission.
        self._outbox.tx_events.append(ResponseReceived(self, response))


class ServerTransaction(_Transaction):
    """Server side: absorbs retransmitted requests and retransmits its responses."""

    __slots__ = ()

    @property
    def final_sent(self) -> bool:
        return self.state is not TxState.TRYING and self.state is not TxState.PROCEEDING

    def start(self, now: float) -> None:
        raise NotImplementedError

    def respond(self, response: Response, now: float) -> None:
        raise NotImplementedError

    def receive_retransmission(self, now: float) -> None:
        old = self.state
        if self._step(TxInput.REQUEST_RETRANSMIT) is None:
            return
        if self._last_data and old is not TxState.ACCEPTED and old is not TxState.CONFIRMED:
            self._outbox.resend(self._last_data, self.peer)

    def _send(self, response: Response) -> None:
        self.last_response = response
        self._last_data = response.encode()
        self._outbox.send(self._last_data, self.peer)


class ServerInviteTransaction(ServerTransaction):
    TABLE = SERVER_INVITE
    kind = "server INVITE"
    __slots__ = ()
    TRYING_DELAY = 0.2  # section 17.2.1: send 100 unless the TU answers within 200 ms

    def start(self, now: float) -> None:
        self.state = TxState.PROCEEDING
        self._wait = self._timers.arm(now + self.TRYING_DELAY, self._send_trying)

    def _send_trying(self, now: float) -> None:
        if self.state is TxState.PROCEEDING and self.last_response is None:
            self._send(make_response(self.request, 100, "Trying"))
        self._wait = None

    def respond(self, response: Response, now: float) -> None:
        event = response_input(response.status)
        old = self.state
        new = self._step(event)
        if new is None:
            raise_illegal(self, event)
        if self._wait is not None and old is TxState.PROCEEDING:
            self._wait.cancel()  # no 100 needed any more
            self._wait = None
        if old is TxState.ACCEPTED and response is self.last_response:
            # The TU resending its 2xx until the ACK (section 13.3.1.4): a retransmission.
            self._outbox.resend(self._last_data, self.peer)
            return
        self._send(response)
        if old is TxState.PROCEEDING and event is TxInput.SUCCESS:
            self._arm_wait(now, self._values.l)
        elif event is TxInput.FAILURE:
            if not self.peer.reliable:
                self._retransmit = self._timers.arm(now + self._values.t1, self._timer_g)
            self._timeout = self._timers.arm(now + self._values.h, self._timer_h)

    def _timer_g(self, now: float) -> None:
        if self._step(TxInput.RETRANSMIT_TIMER) is None:
            return
        self._outbox.resend(self._last_data, self.peer)
        self._interval = min(2 * self._interval, self._values.t2)
        self._retransmit = self._timers.arm(now + self._interval, self._timer_g)

    def _timer_h(self, now: float) -> None:
        if self._step(TxInput.TIMEOUT) is not None:
            self._outbox.tx_events.append(TransactionTimedOut(self))

    def receive_ack(self, now: float) -> None:
        old = self.state
        if self._step(TxInput.ACK) is None or old is not TxState.COMPLETED:
            return
        for timer in (self._retransmit, self._timeout):
            if timer is not None:
                timer.cancel()
        self._arm_wait(now, 0 if self.peer.reliable else self._values.t4)


class ServerNonInviteTransaction(ServerTransaction):
    TABLE = SERVER_NON_INVITE
    kind = "server non-INVITE"
    __slots__ = ()

    def start(self, now: float) -> None:
        self.state = TxState.TRYING

    def respond(self, response: Response, now: float) -> None:
        event = response_input(response.status)
        if self._step(event) is None:
            raise_illegal(self, event)
        self._send(response)
        if event is not TxInput.PROVISIONAL:
            self._let_go()
            self.last_response = None  # what is resent is ``_last_data``
            self._arm_wait(now, 0 if self.peer.reliable else self._values.j)


Transaction = ClientTransaction | ServerTransaction


def raise_illegal(tx: _Transaction, event: TxInput) -> None:
    raise LocalProtocolError(
        f"{tx.kind} transaction cannot take a {event.value} response in state {tx.state.value}"
    )


# --- messages the transaction layer builds itself -------------------------------------------


def make_response(
    request: Request,
    status: int,
    reason: str,
    *,
    to_tag: str | None = None,
    extra: tuple[tuple[str, str], ...] = (),
    body: bytes = b"",
) -> Response:
    """A response per section 8.2.6.2: Via, From, Call-ID and CSeq copied, To tagged."""
    items: list[tuple[str, str]] = []
    copied = _COPIED_INTO_RESPONSES
    for name, value in request.headers:
        if name in copied:
            if name == "record-route" and not 100 < status < 300:
                continue
            items.append((name, value))
        elif name == "to":
            if to_tag is not None and ";tag=" not in value.replace(" ", "").lower():
                value = f"{value};tag={to_tag}"
            items.append((name, value))
    for name, value in extra:
        items.append((name.lower(), value))
    return Response(status, reason, Headers._trusted(tuple(items)), body)


_COPIED_INTO_RESPONSES = frozenset({"via", "from", "call-id", "cseq", "record-route"})


def build_non2xx_ack(invite: Request, response: Response) -> Request:
    """Section 17.1.1.3: the ACK for a non-2xx final, part of the INVITE transaction."""
    headers = invite.headers
    items: list[tuple[str, str]] = [("via", headers.get("via") or "")]
    for name, value in headers:
        if name in ("from", "call-id", "route", "max-forwards"):
            items.append((name, value))
    items.append(("to", response.headers.get("to") or headers.get("to") or ""))
    items.append(("cseq", f"{invite.cseq.number} ACK"))
    return Request("ACK", invite.uri, Headers._trusted(tuple(items)))


def build_cancel(invite: Request) -> Request:
    """Section 9.1: CANCEL copies Request-URI, Call-ID, To, From, CSeq number, Via, Route."""
    headers = invite.headers
    items: list[tuple[str, str]] = [("via", headers.get("via") or "")]
    for name, value in headers:
        if name in ("from", "to", "call-id", "route", "max-forwards"):
            items.append((name, value))
    items.append(("cseq", f"{invite.cseq.number} CANCEL"))
    return Request("CANCEL", invite.uri, Headers._trusted(tuple(items)))


def server_key(request: Request, via: Via) -> tuple[str, str, str]:
    method = "INVITE" if request.method == "ACK" else request.method
    return (via.branch or "", f"{via.host}:{via.port or 5060}", method)
