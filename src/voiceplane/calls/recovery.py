"""After a crash: every call the engine left unfinished gets its final status.

A call that was dialing, ringing or answered when the process died cannot be resumed: its
SIP dialogs died with the process. It must not stay "dialing" forever either, so at start
the engine completes it from what the record shows. A leg that had been answered keeps
ANSWER (the parties did talk); a leg still ringing failed on the platform's side (FAILED),
and the call's status follows from its legs the usual way. Queued calls need nothing: the
queue survives and they are dialled as planned.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from voiceplane.store.models import Call, Leg
from voiceplane.store.repository import calls_in_states

from .outcome import LegVerdict, click_to_call_status, platform_failure
from .status import Status
from .tracker import BY_PLATFORM, utcnow, whole_seconds

INTERRUPTED_STATES = ("dialing", "ringing", "answered")


def recover(session: Session) -> int:
    """Complete every interrupted call; how many there were."""
    now = utcnow()
    calls = calls_in_states(session, INTERRUPTED_STATES)
    for call in calls:
        reason = f"interrupted: the platform stopped while the call was {call.state}"
        failure = platform_failure(reason)
        for leg in call.legs:
            if leg.status is not None:
                continue
            leg.status = (Status.ANSWER if leg.answer_time else failure.status).value
            leg.hangup_by = BY_PLATFORM
            leg.end_time = now
        call.status = _call_status(call, failure).value
        call.state = "completed"
        call.reason = reason
        call.end_time = now
        call.duration = whole_seconds(call.start_time, now)
        call.billsec = whole_seconds(call.answer_time, now)
        call.updated_at = now
    session.flush()
    return len(calls)


def _verdict(leg: Leg | None, failure: LegVerdict) -> LegVerdict | None:
    if leg is None:
        return None
    if leg.status is None:
        return failure
    return LegVerdict(Status.parse(leg.status), leg.q850_cause, "recorded")


def _latest(call: Call, number: int) -> Leg | None:
    answered = [leg for leg in call.legs if leg.leg == number and leg.answer_time is not None]
    tried = [leg for leg in call.legs if leg.leg == number]
    found = answered or tried
    return found[-1] if found else None


def _call_status(call: Call, failure: LegVerdict) -> Status:
    leg1 = _verdict(_latest(call, 1), failure) or failure
    if call.service == "click2call":
        return click_to_call_status(leg1, _verdict(_latest(call, 2), failure))
    if call.service == "incoming":
        # Leg 1 is the caller's: answered means the flow had answered it; unanswered, the
        # platform (not the caller) ended it.
        return Status.IVR_ANSWER if leg1.status is Status.ANSWER else Status.FAILED
    return leg1.status
