"""Call legs: the INVITE sessions of RFC 3261 sections 13 to 15, one per call we place or take.

Rule 1: every legal move of a leg is in ``OUTGOING`` or ``INCOMING`` below; an input that is
not there is ignored (a late response, a duplicate) or, when it is our own, refused with
``LocalProtocolError``. Rule 2: legs never touch sockets or clocks; they use the endpoint's
services (start a transaction, arm a timer, emit an event) with the ``now`` they are given.

Outgoing leg, the usual paths::

    CALLING --1xx--> RINGING --2xx--> ANSWERED --hangup/BYE--> ENDING --> ENDED
       |                |  \\--3xx-6xx------------------------------------> ENDED
       +--cancel/ring timeout--> CANCELLING --487--> ENDED
                                      \\--2xx (crossed our CANCEL): ACK, BYE --> ENDING

A CANCEL is only sent once a provisional response has arrived (section 9.1).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .dialog import Dialog, DialogState
from .errors import LocalProtocolError, SipParseError
from .headers import q850_cause_from_reasons
from .message import Request, Response
from .outcome import (
    NO_RESPONSE_STATUS,
    TRANSPORT_ERROR_STATUS,
    EndCause,
    Outcome,
    Party,
)
from .timers import Timer
from .transaction import (
    ClientInviteTransaction,
    ClientTransaction,
    ServerInviteTransaction,
    ServerTransaction,
    build_cancel,
    make_response,
)

if TYPE_CHECKING:
    from .addressing import Address
    from .digest import Credentials
    from .endpoint import SipEndpoint


class LegState(enum.Enum):
    CALLING = "calling"  # outgoing: INVITE sent, nothing back yet
    RECEIVED = "received"  # incoming: INVITE in, nothing decided yet
    RINGING = "ringing"  # a provisional response was received or sent
    CANCELLING = "cancelling"
    ANSWERED = "answered"  # 2xx received (outgoing) or sent, ACK pending (incoming)
    CONFIRMED = "confirmed"  # incoming: our 2xx was ACKed
    ENDING = "ending"  # our BYE is under way
    ENDED = "ended"


class LegInput(enum.Enum):
    PROVISIONAL = "1xx"
    SUCCESS = "2xx"
    FAILURE = "3xx-6xx"
    CHALLENGE = "401/407 we can answer"
    TIMEOUT = "no response"
    TRANSPORT_ERROR = "transport error"
    CANCEL = "cancel"
    RING_TIMEOUT = "ring timeout"
    HANGUP = "hangup"
    REMOTE_BYE = "BYE received"
    BYE_DONE = "BYE finished"
    RING = "ring"
    ANSWER = "answer"
    REJECT = "reject"
    ACK = "ACK"
    ACK_TIMEOUT = "ACK timeout"
    REMOTE_CANCEL = "CANCEL received"


S, I = LegState, LegInput  # noqa: E741

OUTGOING: dict[tuple[LegState, LegInput], LegState] = {
    (S.CALLING, I.PROVISIONAL): S.RINGING,
    (S.RINGING, I.PROVISIONAL): S.RINGING,
    (S.CALLING, I.SUCCESS): S.ANSWERED,
    (S.RINGING, I.SUCCESS): S.ANSWERED,
    (S.ANSWERED, I.SUCCESS): S.ANSWERED,  # 2xx retransmitted: ACK again
    (S.CALLING, I.FAILURE): S.ENDED,
    (S.RINGING, I.FAILURE): S.ENDED,
    (S.CALLING, I.CHALLENGE): S.CALLING,  # INVITE sent again with credentials
    (S.RINGING, I.CHALLENGE): S.CALLING,
    (S.CALLING, I.TIMEOUT): S.ENDED,
    (S.RINGING, I.TIMEOUT): S.ENDED,
    (S.CALLING, I.TRANSPORT_ERROR): S.ENDED,
    (S.RINGING, I.TRANSPORT_ERROR): S.ENDED,
    (S.CALLING, I.CANCEL): S.CANCELLING,
    (S.RINGING, I.CANCEL): S.CANCELLING,
    (S.CALLING, I.RING_TIMEOUT): S.CANCELLING,
    (S.RINGING, I.RING_TIMEOUT): S.CANCELLING,
    (S.CANCELLING, I.CANCEL): S.CANCELLING,
    (S.CANCELLING, I.PROVISIONAL): S.CANCELLING,  # now the deferred CANCEL can go
    (S.CANCELLING, I.FAILURE): S.ENDED,
    (S.CANCELLING, I.CHALLENGE): S.ENDED,
    (S.CANCELLING, I.SUCCESS): S.ENDING,  # the 200 crossed our CANCEL: ACK it, then BYE
    (S.CANCELLING, I.TIMEOUT): S.ENDED,
    (S.CANCELLING, I.TRANSPORT_ERROR): S.ENDED,
    # A BYE on the early dialog (a UAS must not, section 15; some do): answered 200, and
    # our INVITE is CANCELled so that its transaction ends too.
    (S.RINGING, I.REMOTE_BYE): S.CANCELLING,
    (S.ANSWERED, I.HANGUP): S.ENDING,
    (S.ANSWERED, I.REMOTE_BYE): S.ENDED,
    (S.ANSWERED, I.TRANSPORT_ERROR): S.ENDED,
    (S.ENDING, I.SUCCESS): S.ENDING,
    (S.ENDING, I.REMOTE_BYE): S.ENDING,
    (S.ENDING, I.HANGUP): S.ENDING,
    (S.ENDING, I.CANCEL): S.ENDING,
    (S.ENDING, I.BYE_DONE): S.ENDED,
}

INCOMING: dict[tuple[LegState, LegInput], LegState] = {
    (S.RECEIVED, I.RING): S.RINGING,
    (S.RINGING, I.RING): S.RINGING,
    (S.RECEIVED, I.ANSWER): S.ANSWERED,
    (S.RINGING, I.ANSWER): S.ANSWERED,
    (S.RECEIVED, I.REJECT): S.ENDED,
    (S.RINGING, I.REJECT): S.ENDED,
    (S.RECEIVED, I.REMOTE_CANCEL): S.ENDED,
    (S.RINGING, I.REMOTE_CANCEL): S.ENDED,
    (S.RINGING, I.REMOTE_BYE): S.ENDED,  # BYE on the early dialog (section 15)
    (S.ANSWERED, I.ACK): S.CONFIRMED,
    (S.CONFIRMED, I.ACK): S.CONFIRMED,
    (S.ANSWERED, I.ACK_TIMEOUT): S.ENDING,
    (S.ANSWERED, I.REMOTE_BYE): S.ENDED,
    (S.CONFIRMED, I.REMOTE_BYE): S.ENDED,
    (S.ANSWERED, I.HANGUP): S.ANSWERED,  # BYE waits for the ACK (section 15)
    (S.CONFIRMED, I.HANGUP): S.ENDING,
    (S.CONFIRMED, I.TRANSPORT_ERROR): S.ENDED,
    # Our responses to the INVITE can no longer reach the caller (section 17.2.4).
    (S.RECEIVED, I.TRANSPORT_ERROR): S.ENDED,
    (S.RINGING, I.TRANSPORT_ERROR): S.ENDED,
    (S.ANSWERED, I.TRANSPORT_ERROR): S.ENDED,
    (S.ENDING, I.REMOTE_BYE): S.ENDING,
    (S.ENDING, I.ACK): S.ENDING,
    (S.ENDING, I.HANGUP): S.ENDING,
    (S.ENDING, I.BYE_DONE): S.ENDED,
}


# --- events legs emit ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class IncomingCall:
    leg: IncomingLeg


@dataclass(frozen=True, slots=True)
class CallProgress:
    """A provisional response (180, 183 with early media) on an outgoing leg."""

    leg: OutgoingLeg
    status: int
    reason: str
    sdp: bytes


@dataclass(frozen=True, slots=True)
class CallAnswered:
    """Outgoing: the 2xx arrived (ACK sent). Incoming: our 2xx was ACKed."""

    leg: Leg
    sdp: bytes


@dataclass(frozen=True, slots=True)
class CallEnded:
    leg: Leg
    outcome: Outcome


@dataclass(frozen=True, slots=True)
class ReinviteReceived:
    """The far end sent a re-INVITE: answer with ``accept_reinvite`` or ``reject_reinvite``."""

    leg: Leg
    request: Request


@dataclass(frozen=True, slots=True)
class ReinviteAbandoned:
    """The far end's re-INVITE ended before it was answered: it was CANCELled (answered 487,
    section 9.2) or our answer could not reach the far end (section 17.2.4). Do not answer
    it; the session stays as it was."""

    leg: Leg
    request: Request


@dataclass(frozen=True, slots=True)
class ReinviteFinished:
    leg: Leg
    status: int
    sdp: bytes


class _Pending2xx:
    """Section 13.3.1.4: our 2xx to an INVITE, resent from T1 doubling to T2 until its ACK."""

    __slots__ = ("cseq", "response", "transaction", "retransmit", "give_up", "interval")

    def __init__(self, cseq: int, response: Response, transaction: ServerInviteTransaction) -> None:
        self.cseq = cseq
        self.response = response
        self.transaction = transaction
        self.retransmit: Timer | None = None
        self.give_up: Timer | None = None
        self.interval = 0.0

    def stop(self) -> None:
        for timer in (self.retransmit, self.give_up):
            if timer is not None:
                timer.cancel()


class Leg:
    """What both kinds of leg share."""

    TABLE: dict[tuple[LegState, LegInput], LegState] = {}

    def __init__(
        self, endpoint: SipEndpoint, invite: Request, *, now: float, transport: str
    ) -> None:
        self._ep = endpoint
        self.id = endpoint._next_leg_id()
        self.invite = invite
        self.transport = transport
        self.state = LegState.CALLING
        self.dialog: Dialog | None = None
        self.next_hop: Address | None = None  # pinned route: outbound proxy or TCP flow
        self.local_sdp = b""
        self.remote_sdp = b""
        self.outcome: Outcome | None = None
        self.created_at = now
        self.ringing_at: float | None = None
        self.answered_at: float | None = None
        self._ended_at: float | None = None
        self._status: tuple[int, str] | None = None
        self._q850: int | None = None
        self._end: tuple[EndCause, Party] | None = None
        self._pending: _Pending2xx | None = None
        self._bye_pending = False
        self._reinvite_tx: ClientTransaction | ServerInviteTransaction | None = None
        self._bye_tx: ClientTransaction | None = None
        self.user_data: object = None  # free for the layer above

    @property
    def call_id(self) -> str:
        return self.invite.call_id

    def _step(self, event: LegInput, *, local: bool = False) -> LegState | None:
        new = self.TABLE.get((self.state, event))
        if new is None:
            if local:
                raise LocalProtocolError(
                    f"{type(self).__name__} cannot {event.value} in state {self.state.value}"
                )
            return None
        self.state = new
        return new

    def _finish(self, now: float) -> None:
        """Emit the outcome once, as the leg reaches ENDED."""
        if self.outcome is not None:
            return
        self.state = LegState.ENDED
        cause, party = self._end or (EndCause.LOCAL_HANGUP, Party.LOCAL)
        status, reason = self._status or (None, "")
        self.outcome = Outcome(
            cause=cause,
            ended_by=party,
            status=status,
            reason=reason,
            q850_cause=self._q850,
            created_at=self.created_at,
            ringing_at=self.ringing_at,
            answered_at=self.answered_at,
            ended_at=self._ended_at if self._ended_at is not None else now,
        )
        if self._pending is not None:
            self._pending.stop()
        # Its transactions linger up to 32 s for retransmissions and need nothing of the
        # leg for them: let go, so the leg, its dialog and its INVITE go with the call.
        for tx in self._transactions():
            if tx is not None and tx.owner is self:
                tx.owner = None
        self._ep._forget_leg(self)
        self._ep._emit(CallEnded(self, self.outcome))

    def _transactions(self) -> tuple[ClientTransaction | ServerTransaction | None, ...]:
        """Those this leg may still own as it ends."""
        return (self._reinvite_tx, self._bye_tx)

    def _record_end(self, cause: EndCause, party: Party, now: float) -> None:
        if self._end is None:
            self._end = (cause, party)
            self._ended_at = now

    def _send_in_dialog(self, method: str, now: float, *, body: bytes = b"",
                        extra: tuple[tuple[str, str], ...] = ()) -> ClientTransaction:  # fmt: skip
        assert self.dialog is not None
        via, branch = self._ep._via_and_branch(self.transport)
        request = self.dialog.new_request(
            method,
            via=via,
            body=body,
            content_type="application/sdp" if body else None,
            extra=extra,
        )
        return self._ep._start_client(request, self._route(), now, owner=self, branch=branch)

    def _route(self) -> Address:
        assert self.dialog is not None
        if self.next_hop is not None:
            return self.next_hop
        return self._ep._next_hop_of_dialog(self.dialog, self.transport)

    def _hangup_with_bye(self, now: float) -> None:
        self._bye_tx = self._send_in_dialog("BYE", now)

    # Requests the far end sends inside the dialog, routed here by the endpoint.
    def _on_request(self, request: Request, tx: ServerTransaction, now: float) -> None:
        assert self.dialog is not None
        if not self.dialog.accept_remote_request(request):
            self._ep._respond(tx, 500, "Server Internal Error", now,
                              extra=(("retry-after", "1"),))  # fmt: skip
            return
        method = request.method
        if method == "BYE":
            self._ep._respond(tx, 200, "OK", now)
            self._q850 = self._q850 or q850_cause_from_reasons(request.headers.get_all("reason"))
            self._on_remote_bye(now)
        elif method == "INVITE":
            self._on_reinvite(request, tx, now)
        else:
            self._ep._hand_up_request(request, tx, self)

    def _on_remote_bye(self, now: float) -> None:
        old = self.state
        if self._step(LegInput.REMOTE_BYE) is None:
            return
        self._record_end(EndCause.REMOTE_HANGUP, Party.REMOTE, now)
        if old is LegState.RINGING:
            self._terminate_early(now)
        if self.state is LegState.ENDED:
            self._finish(now)

    def _terminate_early(self, now: float) -> None:
        """A BYE ended an early dialog; incoming legs still owe their INVITE a final."""

    def _on_cancel_of(self, tx: ServerInviteTransaction, cancel: Request, now: float) -> None:
        """Section 9.2: a CANCEL (already answered 200) of an INVITE this leg received."""
        if tx is self._reinvite_tx:
            # A re-INVITE not answered yet: 487, and the session stays as it was.
            self._reinvite_tx = None
            self._ep._respond(tx, 487, "Request Terminated", now)
            self._ep._emit(ReinviteAbandoned(self, tx.request))

    def _on_reinvite(self, request: Request, tx: ServerTransaction, now: float) -> None:
        if self._pending is not None:
            # Our 2xx to the last INVITE is not ACKed yet: ask the far end to retry later
            # (the usual reading of section 14.2 for an INVITE that overlaps our 2xx).
            self._ep._respond(tx, 500, "Server Internal Error", now,
                              extra=(("retry-after", "1"),))  # fmt: skip
            return
        if (
            self.state not in (LegState.ANSWERED, LegState.CONFIRMED)
            or self._reinvite_tx is not None
        ):
            # Section 14.2: a re-INVITE while another is pending gets 491.
            self._ep._respond(tx, 491, "Request Pending", now)
            return
        assert isinstance(tx, ServerInviteTransaction)
        tx.owner = self
        self._reinvite_tx = tx
        self._ep._emit(ReinviteReceived(self, request))

    def accept_reinvite(self, sdp: bytes, now: float) -> None:
        tx = self._reinvite_tx
        if not isinstance(tx, ServerInviteTransaction):
            raise LocalProtocolError("no re-INVITE is waiting for an answer")
        self._reinvite_tx = None
        assert self.dialog is not None
        self.dialog.refresh_target(tx.request)
        self.remote_sdp = tx.request.body or self.remote_sdp
        self.local_sdp = sdp
        self._answer_2xx(tx, sdp, now)

    def reject_reinvite(self, status: int, reason: str, now: float) -> None:
        tx = self._reinvite_tx
        if not isinstance(tx, ServerInviteTransaction):
            raise LocalProtocolError("no re-INVITE is waiting for an answer")
        self._reinvite_tx = None
        self._ep._respond(tx, status, reason, now)

    def reinvite(self, sdp: bytes, now: float) -> None:
        """Send a re-INVITE with a new offer; the answer comes as ``ReinviteFinished``."""
        if (
            self.state not in (LegState.ANSWERED, LegState.CONFIRMED)
            or self._reinvite_tx is not None
        ):
            raise LocalProtocolError(f"cannot re-INVITE in state {self.state.value}")
        self.local_sdp = sdp
        self._reinvite_tx = self._send_in_dialog("INVITE", now, body=sdp)

    def _answer_2xx(self, tx: ServerInviteTransaction, sdp: bytes, now: float) -> None:
        assert self.dialog is not None
        response = make_response(
            tx.request, 200, "OK", to_tag=self.dialog.local_tag,
            extra=self._ep._answer_headers(self.dialog, bool(sdp)), body=sdp,
        )  # fmt: skip
        tx.respond(response, now)
        pending = _Pending2xx(tx.request.cseq.number, response, tx)
        values = self._ep.timer_values
        pending.interval = values.t1
        pending.retransmit = self._ep.timers.arm(now + values.t1, self._retransmit_2xx)
        pending.give_up = self._ep.timers.arm(now + values.h, self._ack_timed_out)
        if self._pending is not None:
            self._pending.stop()
        self._pending = pending

    def _retransmit_2xx(self, now: float) -> None:
        pending = self._pending
        if pending is None:
            return
        pending.transaction.respond(pending.response, now)
        pending.interval = min(2 * pending.interval, self._ep.timer_values.t2)
        pending.retransmit = self._ep.timers.arm(now + pending.interval, self._retransmit_2xx)

    def _ack_timed_out(self, now: float) -> None:
        self._pending = None

    def _on_ack(self, request: Request, now: float) -> None:
        pending = self._pending
        if pending is None or request.cseq.number != pending.cseq:
            return
        pending.stop()
        self._pending = None
        if request.body:
            self.remote_sdp = request.body

    # Responses to transactions this leg started (BYE, re-INVITE), routed by the endpoint.
    def _on_response(self, tx: ClientTransaction, response: Response, now: float) -> None:
        method = tx.method
        if method == "BYE":
            if response.status >= 200:
                self._bye_done(now)
        elif method == "INVITE" and tx is self._reinvite_tx:
            self._on_reinvite_response(tx, response, now)

    def _on_reinvite_response(self, tx: ClientTransaction, response: Response, now: float) -> None:
        if response.status < 200:
            return
        if response.status < 300:
            assert self.dialog is not None
            self._send_ack(tx, now)
            self.dialog.refresh_target(response)
            self.remote_sdp = response.body or self.remote_sdp
        if self._reinvite_tx is tx:
            self._reinvite_tx = None
            # It lingers 32 s and answers a 2xx again with the ACK it keeps: let go of it,
            # or a call that re-INVITEd once would live that long after it ended.
            tx.owner = None
            self._ep._emit(ReinviteFinished(self, response.status, response.body))

    def _send_ack(self, tx: ClientTransaction, now: float) -> None:
        """Section 13.2.2.4: the ACK for a 2xx is a new request in the dialog, same CSeq.
        The INVITE's transaction sends it, and keeps it for 2xx retransmissions that come
        once this leg has let go of it (see ``_finish``)."""
        assert self.dialog is not None and isinstance(tx, ClientInviteTransaction)
        ack = self.dialog.new_request(
            "ACK", via=self._ep._via(self.transport), cseq=tx.cseq_number
        )
        tx.send_2xx_ack(ack.encode(), self._route(), self.dialog.remote_tag)

    def _on_tx_failure(
        self, tx: ClientTransaction | ServerTransaction, timed_out: bool, now: float
    ) -> None:
        method = tx.method
        if method == "BYE":
            self._bye_done(now)
        elif tx is self._reinvite_tx and isinstance(tx, ServerInviteTransaction):
            # The far end's re-INVITE: our answer could not reach it (section 17.2.4).
            self._reinvite_tx = None
            self._ep._emit(ReinviteAbandoned(self, tx.request))
        elif tx is self._reinvite_tx:
            self._reinvite_tx = None
            status = NO_RESPONSE_STATUS[0] if timed_out else TRANSPORT_ERROR_STATUS[0]
            self._ep._emit(ReinviteFinished(self, status, b""))

    def _bye_done(self, now: float) -> None:
        if self._step(LegInput.BYE_DONE) is not None:
            self._finish(now)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.id} {self.call_id} {self.state.value}>"


class OutgoingLeg(Leg):
    """A call we place: the UAC side of an INVITE."""

    TABLE = OUTGOING

    def __init__(
        self,
        endpoint: SipEndpoint,
        invite: Request,
        *,
        now: float,
        transport: str,
        destination: Address,
        ring_timeout: float | None,
        credentials: Credentials | None,
    ) -> None:
        super().__init__(endpoint, invite, now=now, transport=transport)
        self.local_sdp = invite.body
        self.destination = destination
        self.next_hop = destination if endpoint.pin_outbound else None
        self._credentials = credentials
        self._auth_tries = 0
        self._cancel_reason: EndCause | None = None
        self._cancel_sent = False
        self._provisional_seen = False
        self._invite_tx: ClientTransaction | None = None
        self._ring_timer = (
            endpoint.timers.arm(now + ring_timeout, self._ring_timed_out)
            if ring_timeout is not None
            else None
        )

    def _start(self, now: float) -> None:
        self._invite_tx = self._ep._start_client(self.invite, self.destination, now, owner=self)

    def _transactions(self) -> tuple[ClientTransaction | ServerTransaction | None, ...]:
        return (self._invite_tx, self._reinvite_tx, self._bye_tx)

    # --- what the layer above asks for ---

    def cancel(self, now: float) -> None:
        """Give up before the answer (CANCEL), or hang up after it (BYE)."""
        if self.state in (LegState.ANSWERED, LegState.ENDING):
            self.hangup(now)
            return
        if self.state is LegState.ENDED:
            return
        self._begin_cancel(EndCause.CANCELLED, LegInput.CANCEL, now)

    def hangup(self, now: float) -> None:
        if self.state in (LegState.CALLING, LegState.RINGING, LegState.CANCELLING):
            self.cancel(now)
            return
        if self.state in (LegState.ENDED, LegState.ENDING):
            return
        self._step(LegInput.HANGUP, local=True)
        self._record_end(EndCause.LOCAL_HANGUP, Party.LOCAL, now)
        self._hangup_with_bye(now)

    # --- inputs ---

    def _ring_timed_out(self, now: float) -> None:
        self._ring_timer = None
        if self.state in (LegState.CALLING, LegState.RINGING):
            self._begin_cancel(EndCause.RING_TIMEOUT, LegInput.RING_TIMEOUT, now)

    def _begin_cancel(self, reason: EndCause, event: LegInput, now: float) -> None:
        if self._step(event) is None:
            return
        if self._cancel_reason is None:
            self._cancel_reason = reason
            self._ended_at = now
        if self._provisional_seen and not self._cancel_sent:
            self._send_cancel(now)

    def _send_cancel(self, now: float) -> None:
        self._cancel_sent = True
        self._ep._start_client(build_cancel(self.invite), self.destination, now, owner=None)
        if isinstance(self._invite_tx, ClientInviteTransaction):
            self._invite_tx.cancel_sent(now)  # give up if no final comes (section 9.1)

    def _terminate_early(self, now: float) -> None:
        # The BYE ended the early session; CANCEL the INVITE so its transaction ends too
        # (a 2xx that crosses the CANCEL is ACKed and BYEd, as for any CANCEL).
        self._cancel_reason = self._cancel_reason or EndCause.REMOTE_HANGUP
        self._stop_ring_timer()
        if not self._cancel_sent:
            self._send_cancel(now)

    def _stop_ring_timer(self) -> None:
        if self._ring_timer is not None:
            self._ring_timer.cancel()
            self._ring_timer = None

    def _on_response(self, tx: ClientTransaction, response: Response, now: float) -> None:
        if tx is not self._invite_tx:
            super()._on_response(tx, response, now)
            return
        status = response.status
        if status < 200:
            self._on_provisional(response, now)
        elif status < 300:
            self._on_success(tx, response, now)
        elif status in (401, 407) and self._can_authenticate(response):
            self._step(LegInput.CHALLENGE)
            self._resend_with_credentials(response, now)
        else:
            self._on_failure(response, now)

    def _on_provisional(self, response: Response, now: float) -> None:
        # Any provisional, 100 included, proves the far end holds the INVITE: a CANCEL
        # deferred until now may go (section 9.1).
        self._provisional_seen = True
        if self.state is LegState.CANCELLING:
            if not self._cancel_sent:
                self._send_cancel(now)
            return
        if response.status == 100 or self._step(LegInput.PROVISIONAL) is None:
            return
        if self.ringing_at is None:
            self.ringing_at = now
        if response.to.tag and self.dialog is None:
            try:
                self.dialog = Dialog.as_uac(self.invite, response, user_agent=self._ep.user_agent)
            except SipParseError:
                self.dialog = None
            else:
                # The early dialog exists for the far end too: requests it sends on it
                # (INFO, even a BYE it should not send) are routed here, not answered 481.
                self._ep._register_dialog(self.dialog, self)
        if response.body:
            self.remote_sdp = response.body
        self._ep._emit(CallProgress(self, response.status, response.reason, response.body))

    def _on_success(self, tx: ClientTransaction, response: Response, now: float) -> None:
        old = self.state
        if self._step(LegInput.SUCCESS) is None:
            return
        if old is LegState.ANSWERED or old is LegState.ENDING:
            self._send_ack(tx, now)  # a retransmitted 2xx: our ACK was lost
            return
        self._stop_ring_timer()
        try:
            dialog = Dialog.as_uac(self.invite, response, user_agent=self._ep.user_agent)
        except SipParseError:
            dialog = None
        if dialog is None:  # a 2xx we cannot build a dialog from: nothing to ACK into
            self._status = (response.status, response.reason)
            self._record_end(EndCause.REJECTED, Party.REMOTE, now)
            self._finish(now)
            return
        dialog.state = DialogState.CONFIRMED
        if self.dialog is not None:  # the early dialog: confirmed now, or another fork's
            self._ep._forget_dialog(self.dialog)
        self.dialog = dialog
        self._ep._register_dialog(dialog, self)
        self._status = (response.status, response.reason)
        self.remote_sdp = response.body or self.remote_sdp
        self._send_ack(tx, now)
        if old is LegState.CANCELLING:
            # Section 9.1: our CANCEL lost the race with the 200. The call is ours to end,
            # and it ends for the reason we cancelled it.
            assert self._cancel_reason is not None
            self._record_end(self._cancel_reason, Party.LOCAL, now)
            self._hangup_with_bye(now)
            return
        self.answered_at = now
        self._ep._emit(CallAnswered(self, self.remote_sdp))

    def _on_failure(self, response: Response, now: float) -> None:
        old = self.state
        if self._step(LegInput.FAILURE) is None:
            return
        self._stop_ring_timer()
        self._status = (response.status, response.reason)
        # A BYE on the early dialog may have given its cause before the 487 to our CANCEL.
        self._q850 = q850_cause_from_reasons(response.headers.get_all("reason")) or self._q850
        if old is LegState.CANCELLING and response.status == 487 and self._cancel_reason:
            self._record_end(self._cancel_reason, Party.LOCAL, now)
        else:
            self._record_end(EndCause.REJECTED, Party.REMOTE, now)
        self._finish(now)

    def _on_tx_failure(
        self, tx: ClientTransaction | ServerTransaction, timed_out: bool, now: float
    ) -> None:
        if tx is not self._invite_tx:
            super()._on_tx_failure(tx, timed_out, now)
            return
        event = LegInput.TIMEOUT if timed_out else LegInput.TRANSPORT_ERROR
        if self._step(event) is None:
            return
        self._stop_ring_timer()
        self._status = NO_RESPONSE_STATUS if timed_out else TRANSPORT_ERROR_STATUS
        cause = EndCause.NO_RESPONSE if timed_out else EndCause.TRANSPORT_ERROR
        if self._cancel_reason is EndCause.CANCELLED:
            cause = EndCause.CANCELLED  # the user gave up; the far end never spoke
        elif timed_out and self._cancel_sent and self._cancel_reason is not None:
            cause = self._cancel_reason  # CANCEL sent, but no final response ever came
        self._end = None
        self._record_end(cause, Party.LOCAL if timed_out else Party.REMOTE, now)
        self._finish(now)

    def _can_authenticate(self, response: Response) -> bool:
        if self._credentials is None or self.state is LegState.CANCELLING:
            return False
        header = "www-authenticate" if response.status == 401 else "proxy-authenticate"
        if response.headers.get(header) is None:
            return False
        return self._auth_tries < 2

    def _resend_with_credentials(self, response: Response, now: float) -> None:
        from .digest import Challenge, authorization

        assert self._credentials is not None
        status = response.status
        header = "www-authenticate" if status == 401 else "proxy-authenticate"
        try:
            challenge = Challenge.parse(response.headers.get(header) or "")
        except SipParseError:
            self._on_failure(response, now)
            return
        if self._auth_tries >= 1 and not challenge.stale:
            self._on_failure(response, now)  # our credentials were refused
            return
        if not self._credentials.applies_to(challenge):
            self._on_failure(response, now)  # we hold no password for this realm
            return
        self._auth_tries += 1
        value = authorization(
            challenge, self._credentials, method="INVITE", uri=self.invite.uri,
            cnonce=self._ep._new_token(), body=self.invite.body,
        )  # fmt: skip
        name = "authorization" if status == 401 else "proxy-authorization"
        cseq = self.invite.cseq.number + 1
        headers = (
            self.invite.headers.set("via", self._ep._via(self.transport))
            .set("cseq", f"{cseq} INVITE")
            .set(name, value)
        )
        self.invite = Request("INVITE", self.invite.uri, headers, self.invite.body)
        self._provisional_seen = False  # a CANCEL must wait for a 1xx to the new INVITE
        self._start(now)


class IncomingLeg(Leg):
    """A call we take: the UAS side of an INVITE."""

    TABLE = INCOMING

    def __init__(self, endpoint: SipEndpoint, invite: Request, tx: ServerInviteTransaction,
                 *, now: float, transport: str, source: Address) -> None:  # fmt: skip
        super().__init__(endpoint, invite, now=now, transport=transport)
        self.state = LegState.RECEIVED
        self._tx = tx
        self.source = source
        self.remote_sdp = invite.body
        # On a stream transport, requests back to the caller reuse its connection.
        self.next_hop = source if source.reliable else None
        local_tag = endpoint._new_token()
        self.dialog = Dialog.as_uas(
            invite, local_tag=local_tag, local_contact=endpoint._contact(transport),
            local_seq=endpoint._new_cseq(), user_agent=endpoint.user_agent,
        )  # fmt: skip

    @property
    def request_uri(self) -> str:
        return self.invite.uri

    def ring(
        self, now: float, *, status: int = 180, reason: str = "Ringing", sdp: bytes = b""
    ) -> None:
        self._step(LegInput.RING, local=True)
        if self.ringing_at is None:
            self.ringing_at = now
        assert self.dialog is not None
        if sdp:
            self.local_sdp = sdp
        response = make_response(
            self.invite, status, reason, to_tag=self.dialog.local_tag,
            extra=self._ep._answer_headers(self.dialog, bool(sdp)), body=sdp,
        )  # fmt: skip
        self._tx.respond(response, now)
        self._ep._register_dialog(self.dialog, self)

    def answer(self, sdp: bytes, now: float) -> None:
        self._step(LegInput.ANSWER, local=True)
        assert self.dialog is not None
        self.local_sdp = sdp
        self._status = (200, "OK")
        self.answered_at = now
        self._ep._register_dialog(self.dialog, self)
        self._answer_2xx(self._tx, sdp, now)

    def reject(self, status: int, reason: str, now: float,
               *, extra: tuple[tuple[str, str], ...] = ()) -> None:  # fmt: skip
        if not 300 <= status <= 699:
            raise LocalProtocolError(f"a rejection needs a 3xx-6xx status, not {status}")
        self._step(LegInput.REJECT, local=True)
        assert self.dialog is not None
        self._status = (status, reason)
        self._record_end(EndCause.DECLINED, Party.LOCAL, now)
        self._tx.respond(
            make_response(self.invite, status, reason, to_tag=self.dialog.local_tag, extra=extra),
            now,
        )
        self._finish(now)

    def hangup(self, now: float) -> None:
        if self.state in (LegState.RECEIVED, LegState.RINGING):
            self.reject(480, "Temporarily Unavailable", now)
            return
        if self.state in (LegState.ENDING, LegState.ENDED):
            return
        self._step(LegInput.HANGUP, local=True)
        self._record_end(EndCause.LOCAL_HANGUP, Party.LOCAL, now)
        if self.state is LegState.ANSWERED:
            self._bye_pending = True  # sent when the ACK arrives (section 15)
        else:
            self._hangup_with_bye(now)

    def _terminate_early(self, now: float) -> None:
        self._status = (487, "Request Terminated")
        assert self.dialog is not None
        self._tx.respond(
            make_response(self.invite, 487, "Request Terminated", to_tag=self.dialog.local_tag),
            now,
        )

    def _on_cancel_of(self, tx: ServerInviteTransaction, cancel: Request, now: float) -> None:
        if tx is self._tx:
            self._on_remote_cancel(cancel, now)
        else:
            super()._on_cancel_of(tx, cancel, now)

    def _on_tx_failure(
        self, tx: ClientTransaction | ServerTransaction, timed_out: bool, now: float
    ) -> None:
        if tx is not self._tx:
            super()._on_tx_failure(tx, timed_out, now)
            return
        # Sections 17.2.4 and 18.2.2: our responses to the INVITE, the 2xx included, can
        # no longer reach the caller. The call is over; a BYE would go the same dead way.
        # (Once our 2xx is ACKed, the INVITE's transaction has nothing left to send.)
        if timed_out or self.state is LegState.CONFIRMED:
            return
        if self._step(LegInput.TRANSPORT_ERROR) is None:
            return
        self._end = None
        self._record_end(EndCause.TRANSPORT_ERROR, Party.REMOTE, now)
        self._finish(now)

    def _on_remote_cancel(self, cancel: Request, now: float) -> bool:
        """Section 9.2: a CANCEL of our pending INVITE; ``False`` if it came too late."""
        if self._step(LegInput.REMOTE_CANCEL) is None:
            return False
        self._q850 = q850_cause_from_reasons(cancel.headers.get_all("reason"))
        self._status = (487, "Request Terminated")
        self._record_end(EndCause.REMOTE_CANCEL, Party.REMOTE, now)
        assert self.dialog is not None
        self._tx.respond(
            make_response(self.invite, 487, "Request Terminated", to_tag=self.dialog.local_tag),
            now,
        )
        self._finish(now)
        return True

    def _on_ack(self, request: Request, now: float) -> None:
        pending = self._pending
        if pending is None or request.cseq.number != pending.cseq:
            return
        super()._on_ack(request, now)
        if pending.transaction is not self._tx:
            return  # the ACK of a re-INVITE's 2xx
        if self._step(LegInput.ACK) is not LegState.CONFIRMED:
            return
        self._ep._emit(CallAnswered(self, self.remote_sdp))
        if self._bye_pending:
            self._bye_pending = False
            self._step(LegInput.HANGUP)
            self._hangup_with_bye(now)

    def _ack_timed_out(self, now: float) -> None:
        pending = self._pending
        self._pending = None
        if pending is None or pending.transaction is not self._tx:
            return
        if self._step(LegInput.ACK_TIMEOUT) is not None:
            # Section 13.3.1.4: no ACK for 64*T1; the session SHOULD be ended with a BYE.
            self._end = None
            self._record_end(EndCause.ACK_TIMEOUT, Party.REMOTE, now)
            self._hangup_with_bye(now)
