"""From what the SIP layer saw on a leg to the status the user reads.

The rules are DESIGN.md's "Status derivation" table, which follows Asterisk's chan_pjsip
(``ast_sip_hangup_sip2cause`` for the cause, app_dial for the status): see
reference/peers-and-sip-status-mapping.md section 4. Only the facts in ``Outcome`` are used;
this module never sees SIP text.
"""

from __future__ import annotations

from dataclasses import dataclass

from voiceplane.sip.outcome import EndCause, Outcome

from .status import Status

# Q.850 causes this module hands out itself (numbers from Asterisk's causes.h).
NORMAL_CLEARING = 16
NO_ANSWER = 19
PROTOCOL_ERROR = 111
INTERWORKING = 127

# ast_sip_hangup_sip2cause() (res/res_pjsip.c), row for row; the ranges below are its defaults.
_SIP_TO_Q850: dict[int, int] = {
    302: 23,
    401: 21, 403: 21, 404: 1, 405: 127, 407: 21, 408: 18, 409: 41, 410: 22,
    411: 127, 413: 127, 414: 127, 415: 127, 420: 3,
    480: 19, 481: 127, 482: 127, 483: 19, 484: 28, 485: 1, 486: 17, 487: 127, 488: 58,
    491: 127, 493: 127,
    500: 38, 501: 29, 502: 27, 503: 34, 504: 102, 505: 127,
    600: 17, 603: 21, 604: 1, 606: 58,
}  # fmt: skip


def q850_for_sip(code: int) -> int:
    """The Q.850 cause chan_pjsip gives a final SIP response code."""
    mapped = _SIP_TO_Q850.get(code)
    if mapped is not None:
        return mapped
    if 400 <= code <= 499 or 600 <= code <= 699:
        return INTERWORKING
    if 500 <= code <= 599:
        return 34  # NORMAL_CIRCUIT_CONGESTION: why an unknown 5xx reads as CONGESTION
    return NORMAL_CLEARING  # Asterisk's catch-all, 3xx other than 302 included


# The 5xx codes DESIGN.md sends to CHANUNAVAIL; every other 5xx is CONGESTION. Asterisk also
# gives CHANUNAVAIL for 501 (cause 29) and 505 (cause 127); DESIGN.md's table lists neither,
# so they follow its "any 5xx not listed" row until the table says otherwise.
_UNAVAILABLE_5XX = frozenset({500, 502, 504})


def status_for_sip(code: int) -> Status:
    """The status of a leg that ended with a final response ``code`` (300..699)."""
    if code in (486, 600):
        return Status.BUSY
    if code in (480, 483):
        return Status.NOANSWER
    if 500 <= code <= 599 and code not in _UNAVAILABLE_5XX:
        return Status.CONGESTION
    # Everything else could not reach the callee. That includes a 487 we did not cause (as
    # chan_pjsip), and an unfollowed 3xx: we do not chase redirects, so the number was not
    # reachable where we dialled it (Asterisk gives 302 CHANUNAVAIL; it gives other 3xx
    # NOANSWER only through its catch-all cause 16, which would claim the phone rang).
    return Status.CHANUNAVAIL


@dataclass(frozen=True, slots=True)
class LegVerdict:
    """The status of one leg, the Q.850 cause recorded with it, and why, in a few words."""

    status: Status
    q850_cause: int | None  # None when answered, and when no network cause exists (FAILED)
    explanation: str


def _sip_text(outcome: Outcome) -> str:
    if outcome.status is None:
        return ""
    return f"{outcome.status} {outcome.reason}".strip()


def _with_sip(what: str, outcome: Outcome) -> str:
    text = _sip_text(outcome)
    return f"{what} ({text})" if text else what


def _cause(outcome: Outcome, default: int) -> int:
    # A Reason header is recorded as the cause; the status never looks at it (DESIGN.md).
    return outcome.q850_cause if outcome.q850_cause is not None else default


def leg_status(outcome: Outcome, *, originator_gave_up: bool = False) -> LegVerdict:
    """Derive one leg's status from its outcome.

    ``originator_gave_up`` is the engine's knowledge that the other side of the call (the
    caller, the agent of a click-to-call, the API) went away while this leg rang; the SIP
    layer only knows it sent a CANCEL.
    """
    cause = outcome.cause
    if outcome.answered:
        # Whoever hung up afterwards, the leg was answered; its BYE's Reason is not a verdict.
        return LegVerdict(Status.ANSWER, None, _with_sip("answered", outcome))
    # Before the answer, giving up is the originator's doing whatever came back: a 487 or a
    # 200 that crossed our CANCEL (the SIP layer then hangs up at once and reports the
    # cancel as the cause) keeps CANCEL, or NOANSWER for our ring timeout.
    if originator_gave_up or cause in (EndCause.CANCELLED, EndCause.REMOTE_CANCEL):
        # In ISUP a caller abandoning before the answer releases with cause 16.
        return LegVerdict(
            Status.CANCEL, _cause(outcome, NORMAL_CLEARING), _with_sip("cancelled", outcome)
        )
    if cause is EndCause.RING_TIMEOUT:
        # Our 487 would map to 127; 19 is what actually happened, and is app_dial's NOANSWER.
        return LegVerdict(
            Status.NOANSWER, _cause(outcome, NO_ANSWER), _with_sip("ring timeout", outcome)
        )
    if cause is EndCause.NO_RESPONSE:
        # The code on such an outcome is the SIP layer's stand-in (408): go by the cause.
        return LegVerdict(Status.CHANUNAVAIL, _cause(outcome, q850_for_sip(408)), "no response")
    if cause is EndCause.TRANSPORT_ERROR:
        return LegVerdict(
            Status.CONGESTION, _cause(outcome, q850_for_sip(503)), "far end unreachable"
        )
    code = outcome.status
    if code is None:
        # No final response recorded and no answer: nothing says the callee was reached.
        return LegVerdict(Status.CHANUNAVAIL, _cause(outcome, INTERWORKING), cause.value)
    if code < 300:
        # A 2xx that did not answer the leg (the SIP layer could not build a dialog from it).
        return LegVerdict(
            Status.CHANUNAVAIL, _cause(outcome, PROTOCOL_ERROR), _with_sip("unusable", outcome)
        )
    return LegVerdict(status_for_sip(code), _cause(outcome, q850_for_sip(code)), _sip_text(outcome))


def platform_failure(reason: str) -> LegVerdict:
    """A leg the platform could not carry: FAILED, with ``reason`` saying what broke."""
    if not reason.strip():
        raise ValueError("a platform failure needs a reason")
    # No Q.850 cause: the operator said nothing, and inventing one would blame it.
    return LegVerdict(Status.FAILED, None, reason.strip())


def click_to_call_status(
    leg1: LegVerdict,
    leg2: LegVerdict | None,
    *,
    leg1_hung_up_while_leg2_rang: bool = False,
) -> Status:
    """The status of a click-to-call: leg 1 (the agent) is dialled first, then leg 2.

    ``leg2`` is None when it was never dialled.
    """
    # A policy verdict (e.g. DND on the customer) is the answer as it is: never dressed up as
    # a leg failure, and never BUSY or CONGESTION.
    for verdict in (leg1, leg2):
        if verdict is not None and verdict.status.decided_before_dialing:
            return verdict.status
    if leg1.status is not Status.ANSWER:
        # The API cancelling while the agent's phone rang is the originator giving up too.
        if leg1.status is Status.CANCEL:
            return Status.CANCEL
        return _leg_failure(leg1.status, Status.BUSY_LEG1, Status.NOANSWER_LEG1, Status.FAILED_LEG1)
    # The flag wins over leg 2's verdict: a 200 that crossed the CANCEL is still a CANCEL.
    if leg1_hung_up_while_leg2_rang or (leg2 is not None and leg2.status is Status.CANCEL):
        return Status.CANCEL
    if leg2 is None:
        return Status.FAILED_LEG2  # leg 1 answered and waits, but leg 2 never got dialled
    if leg2.status is Status.ANSWER:
        return Status.ANSWER
    return _leg_failure(leg2.status, Status.BUSY_LEG2, Status.NOANSWER_LEG2, Status.FAILED_LEG2)


def _leg_failure(status: Status, busy: Status, noanswer: Status, failed: Status) -> Status:
    if status is Status.BUSY:
        return busy
    if status is Status.NOANSWER:
        return noanswer
    return failed  # CHANUNAVAIL, CONGESTION and FAILED all read "failed to connect"


def parallel_status(verdicts: list[LegVerdict]) -> Status:
    """The status of several numbers rung at once (app_dial's rules for Dial(A&B&...))."""
    if not verdicts:
        raise ValueError("parallel_status needs at least one leg")
    # Numbers policy kept from being dialled take no part, unless that was all of them.
    dialled = [v for v in verdicts if not v.status.decided_before_dialing] or verdicts
    statuses = {verdict.status for verdict in dialled}
    if dialled[0].status.decided_before_dialing:
        return dialled[0].status  # none was dialled: the first policy verdict says why
    # app_dial stays at NOANSWER unless every callee failed with a counted cause, then picks
    # BUSY over CONGESTION over CHANUNAVAIL. An answer ends the dial; a caller hang-up too.
    for status in (
        Status.ANSWER,
        Status.CANCEL,
        Status.NOANSWER,
        Status.BUSY,
        Status.CONGESTION,
    ):
        if status in statuses:
            return status
    # FAILED only when no leg reached the network at all; otherwise the platform's own
    # failures count like app_dial's channels that could not be created (CHANUNAVAIL).
    if statuses == {Status.FAILED}:
        return Status.FAILED
    return Status.CHANUNAVAIL
