"""The SIP endpoint: the one sans-IO object a transport shell drives.

Bytes and the time go in (``receive``, ``handle_timer``), bytes to send and events come
out (``datagrams_to_send``, ``events``). It owns the transactions, the dialogs and the
legs, and routes each message to the right one:

* a response goes to the client transaction with its branch and method (section 17.1.3);
* a request goes to the server transaction with its branch, sent-by and method
  (section 17.2.3), or starts one; with a To tag it belongs to a dialog (section 12.2.2);
* the ACK for a 2xx has a branch of its own and is routed by dialog (section 13.3.1.4).
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .addressing import Address, address_of_uri, next_hop
from .dialog import Dialog, DialogId
from .errors import SipParseError
from .headers import BRANCH_COOKIE, Via
from .legs import IncomingCall, IncomingLeg, Leg, OutgoingLeg
from .message import Headers, Request, Response, parse_message
from .timers import TimerQueue, TimerValues
from .transaction import (
    ClientInviteTransaction,
    ClientNonInviteTransaction,
    ClientTransaction,
    Outbox,
    ResponseReceived,
    ServerInviteTransaction,
    ServerNonInviteTransaction,
    ServerTransaction,
    TransactionTimedOut,
    make_response,
    server_key,
)
from .uri import SipUri

if TYPE_CHECKING:
    from .digest import Credentials

ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO"


@dataclass(frozen=True, slots=True)
class RequestReceived:
    """A request the endpoint does not handle itself (OPTIONS, INFO, MESSAGE, ...).

    Answer it with ``endpoint.respond(transaction, ...)``; ``leg`` is set when it came
    inside a dialog.
    """

    request: Request
    transaction: ServerNonInviteTransaction
    leg: Leg | None


@dataclass(frozen=True, slots=True)
class RequestFinished:
    """The final response (or the timeout, as 408) of a request sent with ``request()``."""

    transaction: ClientNonInviteTransaction
    status: int
    response: Response | None


@dataclass(frozen=True, slots=True)
class RequestAbandoned:
    """A request handed up (``RequestReceived``) and not answered yet can no longer be:
    the transport to its sender failed (section 17.2.4). Do not ``respond`` to it."""

    transaction: ServerNonInviteTransaction


@dataclass(frozen=True, slots=True)
class MalformedMessage:
    """Bytes that were not a SIP message; answered with 400 where a request could be read."""

    source: Address
    reason: str


@dataclass(slots=True)
class EndpointStats:
    received: int = 0
    malformed: int = 0
    stray_responses: int = 0


class SipEndpoint:
    def __init__(
        self,
        *,
        local: Mapping[str, Address],
        user_agent: str = "voiceplane",
        timer_values: TimerValues | None = None,
        rng: random.Random | None = None,
        pin_outbound: bool = True,
    ) -> None:
        """``local`` maps each transport ("udp", "tcp") to the address we are reached at.

        With ``pin_outbound``, every request of an outgoing leg goes to the address its
        INVITE went to (the trunk as outbound proxy), as operators' SBCs expect.
        """
        if not local:
            raise ValueError("an endpoint needs at least one local address")
        self.local = dict(local)
        self.user_agent = user_agent
        self.timer_values = timer_values or TimerValues()
        self.timers = TimerQueue()
        self.pin_outbound = pin_outbound
        self.stats = EndpointStats()
        self._rng = rng or random.Random()
        self._outbox = Outbox()
        self._events: list[object] = []
        self._client: dict[tuple[str, ...], ClientTransaction] = {}
        self._server: dict[tuple[str, ...], ServerTransaction] = {}
        # Transactions that ended since the last drain: they let go of their legs once
        # their last events are delivered (see ``_drain``).
        self._ended: list[ClientTransaction | ServerTransaction] = []
        # Bound once: a method object made per transaction was one more object for each of
        # the tens of thousands that linger at a few hundred calls a second.
        self._on_server_done = self._server_done
        self._on_client_done = self._client_done
        self._dialogs: dict[DialogId, Leg] = {}
        self._legs: dict[int, Leg] = {}
        self._leg_seq = 0
        self._via_prefix = {
            t: f"SIP/2.0/{a.via_transport} {_hostport(a)};rport;branch={BRANCH_COOKIE}"
            for t, a in self.local.items()
        }
        self._contacts = {
            t: f"<sip:voiceplane@{_hostport(a)}{'' if t == 'udp' else f';transport={t}'}>"
            for t, a in self.local.items()
        }

    # --- driving the endpoint -----------------------------------------------------------------

    def receive(self, data: bytes, source: Address, now: float) -> None:
        """One datagram, or one message cut from a stream by ``StreamFramer``."""
        self.stats.received += 1
        try:
            message = parse_message(data)
            if isinstance(message, Response):
                self._receive_response(message, now)
            else:
                self._receive_request(message, source, now)
        except SipParseError as exc:
            self.stats.malformed += 1
            self._answer_malformed(data, source, exc)
        self._drain(now)

    def handle_timer(self, now: float) -> None:
        self.timers.fire_due(now)
        self._drain(now)

    def next_deadline(self) -> float | None:
        return self.timers.next_deadline()

    def datagrams_to_send(self) -> list[tuple[bytes, Address]]:
        out = self._outbox.datagrams
        if out:
            self._outbox.datagrams = []
        return out

    def events(self) -> list[object]:
        out = self._events
        if out:
            self._events = []
        return out

    @property
    def retransmissions(self) -> int:
        return self._outbox.retransmissions

    @property
    def active_legs(self) -> int:
        return len(self._legs)

    def transport_failed(self, destination: Address, now: float) -> None:
        """The shell could not reach ``destination`` (refused, reset): fail what was going there.

        That includes our responses (sections 17.2.4 and 18.2.2): the server transactions
        sending them tell their user, so an INVITE that can no longer be answered, or
        whose 2xx cannot reach the caller, ends its call.
        """
        for tx in [t for t in self._client.values() if t.peer == destination]:
            tx.transport_failed(now)
        for stx in [t for t in self._server.values() if t.peer == destination]:
            unanswered = isinstance(stx, ServerNonInviteTransaction) and not stx.final_sent
            stx.transport_failed(now)
            if unanswered and stx.owner is None:
                assert isinstance(stx, ServerNonInviteTransaction)
                self._emit(RequestAbandoned(stx))
        self._drain(now)

    # --- what the layer above asks for ----------------------------------------------------------

    def invite(
        self,
        *,
        to_uri: str,
        from_uri: str,
        now: float,
        destination: Address | None = None,
        request_uri: str | None = None,
        sdp: bytes = b"",
        ring_timeout: float | None = None,
        credentials: Credentials | None = None,
        display_name: str | None = None,
        extra_headers: tuple[tuple[str, str], ...] = (),
    ) -> OutgoingLeg:
        """Place a call. ``destination`` is the next hop (the trunk); by default the URI's host."""
        uri = request_uri or to_uri
        if display_name and '"' in display_name:
            raise ValueError(f"quote in the display name: {display_name!r}")
        for value in (to_uri, from_uri, uri, display_name or "", *(v for _, v in extra_headers)):
            if "\r" in value or "\n" in value:
                raise ValueError(f"line break in a header value: {value!r}")
        if destination is None:
            destination = address_of_uri(SipUri.parse(uri))
        transport = destination.transport
        if transport not in self.local:
            raise ValueError(f"no local {transport} transport to reach {destination}")
        display = f'"{display_name}" ' if display_name else ""
        items: list[tuple[str, str]] = [
            ("via", self._via(transport)),
            ("max-forwards", "70"),
            ("from", f"{display}<{from_uri}>;tag={self._new_token()}"),
            ("to", f"<{to_uri}>"),
            ("call-id", f"{self._new_token()}{self._new_token()}"),
            ("cseq", f"{self._new_cseq()} INVITE"),
            ("contact", self._contacts[transport]),
            ("allow", ALLOW),
            ("user-agent", self.user_agent),
        ]
        if sdp:
            items.append(("content-type", "application/sdp"))
        items.extend((name.lower(), value) for name, value in extra_headers)
        invite = Request("INVITE", uri, Headers._trusted(tuple(items)), sdp)
        leg = OutgoingLeg(
            self, invite, now=now, transport=transport, destination=destination,
            ring_timeout=ring_timeout, credentials=credentials,
        )  # fmt: skip
        self._legs[leg.id] = leg
        leg._start(now)
        self._drain(now)
        return leg

    def request(
        self,
        method: str,
        *,
        uri: str,
        now: float,
        destination: Address | None = None,
        from_uri: str | None = None,
        extra_headers: tuple[tuple[str, str], ...] = (),
        body: bytes = b"",
    ) -> ClientNonInviteTransaction:
        """An out-of-dialog non-INVITE request (OPTIONS keep-alive, MESSAGE ...)."""
        if destination is None:
            destination = address_of_uri(SipUri.parse(uri))
        transport = destination.transport
        local = self.local[transport]
        items: list[tuple[str, str]] = [
            ("via", self._via(transport)),
            ("max-forwards", "70"),
            (
                "from",
                f"<{from_uri or f'sip:voiceplane@{_hostport(local)}'}>;tag={self._new_token()}",
            ),
            ("to", f"<{uri}>"),
            ("call-id", f"{self._new_token()}{self._new_token()}"),
            ("cseq", f"1 {method}"),
            ("user-agent", self.user_agent),
        ]
        items.extend((name.lower(), value) for name, value in extra_headers)
        tx = self._start_client(Request(method, uri, Headers._trusted(tuple(items)), body),
                                destination, now, owner=None)  # fmt: skip
        assert isinstance(tx, ClientNonInviteTransaction)
        self._drain(now)
        return tx

    def respond(
        self,
        transaction: ServerTransaction,
        status: int,
        reason: str,
        now: float,
        *,
        extra: tuple[tuple[str, str], ...] = (),
        body: bytes = b"",
    ) -> None:
        self._respond(transaction, status, reason, now, extra=extra, body=body)
        self._drain(now)

    def drain(self, now: float) -> None:
        """Process what legs produced after a call from the layer above (cancel, answer ...)."""
        self._drain(now)

    # --- routing --------------------------------------------------------------------------------

    def _receive_response(self, response: Response, now: float) -> None:
        via = response.top_via
        tx = self._client.get((via.branch or "", response.cseq.method))
        if tx is None:
            self.stats.stray_responses += 1
            return
        tx.receive(response, now)

    def _receive_request(self, request: Request, source: Address, now: float) -> None:
        via = request.top_via
        method = request.method
        # An ACK is never answered, so what its Via would say of its source is never read.
        if method != "ACK" and (via.rport == "" or via.host != source.host):
            request, via = _stamp_received(request, via, source)
        key = server_key(request, via)
        if method == "ACK":
            tx = self._server.get(key)
            if isinstance(tx, ServerInviteTransaction) and tx.last_response is not None \
                    and tx.last_response.status >= 300:  # fmt: skip
                tx.receive_ack(now)
                return
            leg = self._dialogs.get(_dialog_id_of(request))
            if leg is not None:
                leg._on_ack(request, now)
            return
        existing = self._server.get(key)
        if existing is not None:
            existing.receive_retransmission(now)
            return
        tx = self._new_server(request, key, source, now)
        try:
            self._dispatch_request(request, via, tx, source, now)
        except SipParseError as exc:
            # Readable enough for a transaction, not for a dialog (a broken From or To):
            # answer through the transaction, which then absorbs the retransmissions.
            self.stats.malformed += 1
            self._emit(MalformedMessage(source, exc.reason))
            if not tx.final_sent:
                self._respond(tx, 400, _bad_request(exc.reason), now)

    def _dispatch_request(self, request: Request, via: Via, tx: ServerTransaction,
                          source: Address, now: float) -> None:  # fmt: skip
        method = request.method
        if method == "CANCEL":
            self._on_cancel(request, via, tx, now)
            return
        if request.to_tag:
            leg = self._dialogs.get(_dialog_id_of(request))
            if leg is None:
                self._respond(tx, 481, "Call/Transaction Does Not Exist", now)
            else:
                leg._on_request(request, tx, now)
            return
        if method == "INVITE":
            assert isinstance(tx, ServerInviteTransaction)
            leg = IncomingLeg(self, request, tx, now=now, transport=source.transport, source=source)
            tx.owner = leg
            self._legs[leg.id] = leg
            self._emit(IncomingCall(leg))
            return
        if method == "BYE":
            self._respond(tx, 481, "Call/Transaction Does Not Exist", now)
            return
        assert isinstance(tx, ServerNonInviteTransaction)
        self._emit(RequestReceived(request, tx, None))

    def _on_cancel(self, cancel: Request, via: Via, tx: ServerTransaction, now: float) -> None:
        invite_tx = self._server.get((via.branch or "", f"{via.host}:{via.port or 5060}", "INVITE"))
        if not isinstance(invite_tx, ServerInviteTransaction):
            self._respond(tx, 481, "Call/Transaction Does Not Exist", now)
            return
        # Section 9.2: answer the CANCEL itself 200 either way; only a pending INVITE (a
        # call's, or a re-INVITE's) stops.
        self._respond(tx, 200, "OK", now)
        leg = invite_tx.owner
        if isinstance(leg, Leg):
            leg._on_cancel_of(invite_tx, cancel, now)

    def _drain(self, now: float) -> None:
        """Hand transaction events to the legs that own the transactions."""
        events = self._outbox.tx_events
        while events:
            event = events.pop(0)
            tx = event.transaction
            owner = tx.owner
            if isinstance(event, ResponseReceived):
                if isinstance(owner, Leg):
                    owner._on_response(event.transaction, event.response, now)
                elif isinstance(tx, ClientNonInviteTransaction) and event.response.status >= 200:
                    self._emit(RequestFinished(tx, event.response.status, event.response))
            else:
                timed_out = isinstance(event, TransactionTimedOut)
                if isinstance(owner, Leg):
                    owner._on_tx_failure(tx, timed_out, now)
                elif isinstance(tx, ClientNonInviteTransaction):
                    self._emit(RequestFinished(tx, 408 if timed_out else 503, None))
        # A leg holds its transactions and each transaction its leg: a cycle, which kept
        # every call's legs, dialogs and INVITEs for the collector's rare full passes (they
        # lived the 32 s of timers D and M, long enough to reach the oldest generation).
        # Cut it once an ended transaction's events are delivered, so they go when the
        # call does.
        ended = self._ended
        if ended:
            for tx in ended:
                tx.owner = None
            ended.clear()

    def _answer_malformed(self, data: bytes, source: Address, error: SipParseError) -> None:
        self._emit(MalformedMessage(source, error.reason))
        request = _salvage_request(data)
        if request is None or request.method == "ACK":
            return  # nothing we can answer: section 18.3 says discard
        hint = error.status_hint
        reason = _bad_request(error.reason) if hint == 400 else _printable(error.reason)
        # Section 8.2.6.2: a final response carries a To tag, a stateless one too.
        response = make_response(request, hint, reason, to_tag=self._new_token())
        self._outbox.send(response.encode(), source)

    # --- services for transactions and legs ----------------------------------------------------

    def _new_server(self, request: Request, key: tuple[str, str, str], source: Address,
                    now: float) -> ServerTransaction:  # fmt: skip
        cls = ServerInviteTransaction if request.method == "INVITE" else ServerNonInviteTransaction
        tx = cls(request, source, outbox=self._outbox, timers=self.timers,
                 values=self.timer_values, on_terminated=self._on_server_done)  # fmt: skip
        tx.key = key
        self._server[key] = tx
        tx.start(now)
        return tx

    def _server_done(self, tx: object) -> None:
        assert isinstance(tx, ServerTransaction)
        if self._server.get(tx.key) is tx:
            del self._server[tx.key]
        self._ended.append(tx)

    def _client_done(self, tx: object) -> None:
        assert isinstance(tx, ClientTransaction)
        if self._client.get(tx.key) is tx:
            del self._client[tx.key]
        self._ended.append(tx)

    def _start_client(
        self, request: Request, destination: Address, now: float, *, owner: Leg | None,
        branch: str | None = None,
    ) -> ClientTransaction:  # fmt: skip
        """``branch``: the top Via's, when the caller made that Via (spares parsing it)."""
        cls = ClientInviteTransaction if request.method == "INVITE" else ClientNonInviteTransaction
        tx = cls(request, destination, outbox=self._outbox, timers=self.timers,
                 values=self.timer_values, on_terminated=self._on_client_done,
                 branch=branch)  # fmt: skip
        tx.owner = owner
        tx.key = (tx.branch, request.method)
        self._client[tx.key] = tx
        tx.start(now)
        return tx

    def _send_stateless(self, request: Request, destination: Address) -> None:
        self._outbox.send(request.encode(), destination)

    def _respond(self, tx: ServerTransaction, status: int, reason: str, now: float, *,
                 extra: tuple[tuple[str, str], ...] = (), body: bytes = b"") -> None:  # fmt: skip
        to_tag = self._new_token() if status > 100 else None
        headers = extra
        if status == 405 or tx.method == "OPTIONS":
            headers = (("allow", ALLOW), *extra)
        if body and not any(n.lower() == "content-type" for n, _ in headers):
            headers = (*headers, ("content-type", "application/sdp"))
        tx.respond(make_response(tx.request, status, reason, to_tag=to_tag, extra=headers,
                                 body=body), now)  # fmt: skip

    def _emit(self, event: object) -> None:
        self._events.append(event)

    def _hand_up_request(self, request: Request, tx: ServerTransaction, leg: Leg) -> None:
        assert isinstance(tx, ServerNonInviteTransaction)
        self._emit(RequestReceived(request, tx, leg))

    def _register_dialog(self, dialog: Dialog, leg: Leg) -> None:
        self._dialogs[dialog.id] = leg

    def _forget_dialog(self, dialog: Dialog) -> None:
        self._dialogs.pop(dialog.id, None)

    def _forget_leg(self, leg: Leg) -> None:
        self._legs.pop(leg.id, None)
        if leg.dialog is not None and self._dialogs.get(leg.dialog.id) is leg:
            del self._dialogs[leg.dialog.id]

    def _next_hop_of_dialog(self, dialog: Dialog, transport: str) -> Address:
        return next_hop(dialog.route_set, dialog.remote_target, transport)

    def _answer_headers(self, dialog: Dialog, has_sdp: bool) -> tuple[tuple[str, str], ...]:
        headers: tuple[tuple[str, str], ...] = (
            ("contact", dialog.local_contact), ("allow", ALLOW), ("user-agent", self.user_agent),
        )  # fmt: skip
        if has_sdp:
            headers = (*headers, ("content-type", "application/sdp"))
        return headers

    def _via(self, transport: str) -> str:
        return self._via_prefix[transport] + self._new_token()

    def _via_and_branch(self, transport: str) -> tuple[str, str]:
        """A new top Via for a request we send, and its branch."""
        token = self._new_token()
        return self._via_prefix[transport] + token, BRANCH_COOKIE + token

    def _contact(self, transport: str) -> str:
        return self._contacts.get(transport) or next(iter(self._contacts.values()))

    def _new_token(self) -> str:
        return f"{self._rng.getrandbits(64):016x}"

    def _new_cseq(self) -> int:
        # randint(1, 2**20) as random.py computes it (the same draws, the same numbers),
        # without its three layers of argument checks.
        bits = self._rng.getrandbits
        value = bits(21)
        while value >= 1 << 20:
            value = bits(21)
        return value + 1

    def _next_leg_id(self) -> int:
        self._leg_seq += 1
        return self._leg_seq


def _hostport(address: Address) -> str:
    host = f"[{address.host}]" if ":" in address.host else address.host
    return f"{host}:{address.port}"


def _printable(text: str) -> str:
    return "".join(c if c.isprintable() else " " for c in text)[:120]


def _bad_request(reason: str) -> str:
    return f"Bad Request ({_printable(reason)})"


def _dialog_id_of(request: Request) -> DialogId:
    """Section 12.2.2: for a request we receive, our tag is in To and theirs in From."""
    return (request.call_id, request.to_tag or "", request.from_tag or "")


def _stamp_received(request: Request, via: Via, source: Address) -> tuple[Request, Via]:
    """RFC 3581 and section 18.2.1: note where the request really came from in its top Via."""
    params = tuple((k, v) for k, v in via.params if k not in ("received", "rport"))
    params = (*params, ("received", source.host))
    if via.rport is not None:
        params = (*params, ("rport", str(source.port)))
    stamped = Via(via.transport, via.host, via.port, params)
    rewritten = request.headers.with_top_via(stamped)
    if rewritten is not None:
        return Request(request.method, request.uri, rewritten, request.body), stamped
    values = request.headers.get_all("via")
    headers = request.headers.remove("via")
    for value in reversed([str(stamped), *values[1:]]):
        headers = headers.prepend("via", value)
    return Request(request.method, request.uri, headers, request.body), stamped


def _salvage_request(data: bytes) -> Request | None:
    """Enough of a broken request to answer it: its request line and the five key headers."""
    try:
        text = data.decode("utf-8", errors="replace")
    except Exception:  # pragma: no cover - decode with errors="replace" does not raise
        return None
    lines = text.replace("\r\n", "\n").split("\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or parts[0].startswith("SIP/") or not parts[0].isalpha():
        return None
    wanted = {"via": "via", "v": "via", "from": "from", "f": "from", "to": "to", "t": "to",
              "call-id": "call-id", "i": "call-id", "cseq": "cseq"}  # fmt: skip
    items: list[tuple[str, str]] = []
    for line in lines[1:]:
        if not line:
            break
        name, colon, value = line.partition(":")
        key = wanted.get(name.strip().lower())
        if colon and key:
            items.append((key, value.strip()))
    found = {name for name, _ in items}
    if found != {"via", "from", "to", "call-id", "cseq"}:
        return None
    return Request(parts[0], parts[1], Headers._trusted(tuple(items)))
