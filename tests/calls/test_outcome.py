"""SIP outcome -> status: DESIGN.md's table, the causes recorded with it, and the combinations."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from voiceplane.calls.outcome import (
    LegVerdict,
    click_to_call_status,
    leg_status,
    parallel_status,
    platform_failure,
    q850_for_sip,
    status_for_sip,
)
from voiceplane.calls.status import Status
from voiceplane.sip.outcome import EndCause, Outcome, Party

S = Status


def leg(
    cause: EndCause = EndCause.REJECTED,
    status: int | None = 486,
    reason: str = "",
    q850: int | None = None,
    *,
    answered: bool = False,
) -> Outcome:
    return Outcome(
        cause=cause,
        ended_by=Party.REMOTE,
        status=status,
        reason=reason,
        q850_cause=q850,
        created_at=0.0,
        ringing_at=1.0,
        answered_at=2.0 if answered else None,
        ended_at=3.0,
    )


def verdict(status: Status) -> LegVerdict:
    return LegVerdict(status, None if status is S.ANSWER else 16, "test")


# (SIP final code, status, Q.850 cause): DESIGN.md's rows, then the defaults of sip2cause.
SIP_TABLE = [
    (486, S.BUSY, 17), (600, S.BUSY, 17),
    (480, S.NOANSWER, 19), (483, S.NOANSWER, 19),
    (503, S.CONGESTION, 34), (580, S.CONGESTION, 34), (599, S.CONGESTION, 34),
    (501, S.CONGESTION, 29), (505, S.CONGESTION, 127), (513, S.CONGESTION, 34),
    (404, S.CHANUNAVAIL, 1), (403, S.CHANUNAVAIL, 21), (408, S.CHANUNAVAIL, 18),
    (410, S.CHANUNAVAIL, 22), (484, S.CHANUNAVAIL, 28), (485, S.CHANUNAVAIL, 1),
    (488, S.CHANUNAVAIL, 58), (500, S.CHANUNAVAIL, 38), (502, S.CHANUNAVAIL, 27),
    (504, S.CHANUNAVAIL, 102), (603, S.CHANUNAVAIL, 21), (604, S.CHANUNAVAIL, 1),
    (606, S.CHANUNAVAIL, 58),
    (487, S.CHANUNAVAIL, 127),  # not caused by us
    (401, S.CHANUNAVAIL, 21), (407, S.CHANUNAVAIL, 21), (405, S.CHANUNAVAIL, 127),
    (409, S.CHANUNAVAIL, 41), (415, S.CHANUNAVAIL, 127), (420, S.CHANUNAVAIL, 3),
    (481, S.CHANUNAVAIL, 127), (491, S.CHANUNAVAIL, 127),
    (400, S.CHANUNAVAIL, 127), (499, S.CHANUNAVAIL, 127),
    (607, S.CHANUNAVAIL, 127), (608, S.CHANUNAVAIL, 127), (699, S.CHANUNAVAIL, 127),
    (302, S.CHANUNAVAIL, 23), (300, S.CHANUNAVAIL, 16), (301, S.CHANUNAVAIL, 16),
]  # fmt: skip


@pytest.mark.parametrize(("code", "status", "cause"), SIP_TABLE)
def test_sip_final_code(code: int, status: Status, cause: int) -> None:
    assert q850_for_sip(code) == cause
    assert status_for_sip(code) is status
    assert leg_status(leg(status=code)) == LegVerdict(status, cause, str(code))


def test_explanation_is_the_response_line() -> None:
    assert leg_status(leg(status=486, reason="Busy Here")).explanation == "486 Busy Here"


def test_codes_outside_final_responses_fall_to_the_catch_all_cause() -> None:
    assert q850_for_sip(200) == 16
    assert q850_for_sip(0) == 16
    assert q850_for_sip(999) == 16


# --- the Reason header: recorded as the cause, never the status ---


@pytest.mark.parametrize(
    ("code", "reason_cause", "status"),
    [
        (480, 17, S.NOANSWER),  # Asterisk before 2026-03 would have said BUSY
        (486, 34, S.BUSY),
        (503, 17, S.CONGESTION),
        (404, 19, S.CHANUNAVAIL),
    ],
)
def test_status_follows_the_code_and_the_reason_cause_is_kept(
    code: int, reason_cause: int, status: Status
) -> None:
    assert leg_status(leg(status=code, q850=reason_cause)) == LegVerdict(
        status, reason_cause, str(code)
    )


# --- every way a leg ends ---

END_CAUSES = [
    (leg(EndCause.REJECTED, 486, "Busy Here"), LegVerdict(S.BUSY, 17, "486 Busy Here")),
    (
        leg(EndCause.NO_RESPONSE, 408, "Request Timeout"),
        LegVerdict(S.CHANUNAVAIL, 18, "no response"),
    ),
    (
        leg(EndCause.TRANSPORT_ERROR, 503, "Service Unavailable"),
        LegVerdict(S.CONGESTION, 34, "far end unreachable"),
    ),
    (
        leg(EndCause.RING_TIMEOUT, 487, "Request Terminated"),
        LegVerdict(S.NOANSWER, 19, "ring timeout (487 Request Terminated)"),
    ),
    (
        leg(EndCause.CANCELLED, 487, "Request Terminated"),
        LegVerdict(S.CANCEL, 16, "cancelled (487 Request Terminated)"),
    ),
    (
        leg(EndCause.LOCAL_HANGUP, 200, "OK", answered=True),
        LegVerdict(S.ANSWER, None, "answered (200 OK)"),
    ),
    (
        leg(EndCause.REMOTE_HANGUP, 200, "OK", 16, answered=True),
        LegVerdict(S.ANSWER, None, "answered (200 OK)"),
    ),
    (
        leg(EndCause.REMOTE_CANCEL, 487, "Request Terminated"),
        LegVerdict(S.CANCEL, 16, "cancelled (487 Request Terminated)"),
    ),
    (
        leg(EndCause.DECLINED, 480, "Temporarily Unavailable"),
        LegVerdict(S.NOANSWER, 19, "480 Temporarily Unavailable"),
    ),
    (
        leg(EndCause.ACK_TIMEOUT, 200, "OK", answered=True),
        LegVerdict(S.ANSWER, None, "answered (200 OK)"),
    ),
]


@pytest.mark.parametrize(
    ("outcome", "expected"), END_CAUSES, ids=[o.cause.name for o, _ in END_CAUSES]
)
def test_end_cause(outcome: Outcome, expected: LegVerdict) -> None:
    assert leg_status(outcome) == expected


def test_every_end_cause_is_covered() -> None:
    assert {outcome.cause for outcome, _ in END_CAUSES} == set(EndCause)


@pytest.mark.parametrize(
    ("outcome", "status", "cause"),
    [
        # Our CANCEL crossed the far end's 200: the SIP layer hung up at once; it stays ours.
        (leg(EndCause.CANCELLED, 200, "OK"), S.CANCEL, 16),
        (leg(EndCause.RING_TIMEOUT, 200, "OK"), S.NOANSWER, 19),
        # CANCEL sent but no final response ever came.
        (leg(EndCause.CANCELLED, 408, "Request Timeout"), S.CANCEL, 16),
        (leg(EndCause.RING_TIMEOUT, 408, "Request Timeout"), S.NOANSWER, 19),
        # A Reason header on the CANCEL or the 487 is still the recorded cause.
        (leg(EndCause.REMOTE_CANCEL, 487, q850=31), S.CANCEL, 31),
        (leg(EndCause.RING_TIMEOUT, 487, q850=18), S.NOANSWER, 18),
        # The SIP layer's stand-in codes do not override what it says happened.
        (leg(EndCause.TRANSPORT_ERROR, None), S.CONGESTION, 34),
        (leg(EndCause.NO_RESPONSE, None), S.CHANUNAVAIL, 18),
        # A 2xx that answered nothing (no dialog could be built), and no code at all.
        (leg(EndCause.REJECTED, 200, "OK"), S.CHANUNAVAIL, 111),
        (leg(EndCause.REJECTED, None), S.CHANUNAVAIL, 127),
    ],
)
def test_corner_cases(outcome: Outcome, status: Status, cause: int) -> None:
    result = leg_status(outcome)
    assert (result.status, result.q850_cause) == (status, cause)


@pytest.mark.parametrize(
    "outcome",
    [leg(EndCause.RING_TIMEOUT, 487), leg(EndCause.REJECTED, 486), leg(EndCause.NO_RESPONSE, 408)],
)
def test_originator_giving_up_is_cancel(outcome: Outcome) -> None:
    assert leg_status(outcome, originator_gave_up=True).status is S.CANCEL


def test_an_answered_leg_stays_answered_whoever_gave_up() -> None:
    outcome = leg(EndCause.CANCELLED, 200, "OK", answered=True)
    assert leg_status(outcome, originator_gave_up=True).status is S.ANSWER


def test_platform_failure() -> None:
    assert platform_failure(" no trunk configured ") == LegVerdict(
        S.FAILED, None, "no trunk configured"
    )
    with pytest.raises(ValueError, match="needs a reason"):
        platform_failure("  ")


# --- click-to-call ---


@pytest.mark.parametrize(
    ("leg1", "leg2", "hung_up", "expected"),
    [
        (S.BUSY, None, False, S.BUSY_LEG1),
        (S.NOANSWER, None, False, S.NOANSWER_LEG1),
        (S.CHANUNAVAIL, None, False, S.FAILED_LEG1),
        (S.CONGESTION, None, False, S.FAILED_LEG1),
        (S.FAILED, None, False, S.FAILED_LEG1),
        (S.CANCEL, None, False, S.CANCEL),  # API cancel while the agent's phone rang
        (S.BUSY, S.ANSWER, True, S.BUSY_LEG1),  # leg 1 decides; leg 2 was never rung
        (S.ANSWER, S.BUSY, False, S.BUSY_LEG2),
        (S.ANSWER, S.NOANSWER, False, S.NOANSWER_LEG2),
        (S.ANSWER, S.CHANUNAVAIL, False, S.FAILED_LEG2),
        (S.ANSWER, S.CONGESTION, False, S.FAILED_LEG2),
        (S.ANSWER, S.FAILED, False, S.FAILED_LEG2),
        (S.ANSWER, None, False, S.FAILED_LEG2),  # leg 2 never got dialled
        (S.ANSWER, S.CANCEL, False, S.CANCEL),
        (S.ANSWER, S.CANCEL, True, S.CANCEL),
        (S.ANSWER, None, True, S.CANCEL),
        (S.ANSWER, S.ANSWER, True, S.CANCEL),  # leg 2's 200 crossed our CANCEL
        (S.ANSWER, S.ANSWER, False, S.ANSWER),
        (S.DND, None, False, S.DND),
        (S.ANSWER, S.NOTALLOWED, False, S.NOTALLOWED),
    ],
)
def test_click_to_call(leg1: Status, leg2: Status | None, hung_up: bool, expected: Status) -> None:
    second = verdict(leg2) if leg2 is not None else None
    assert (
        click_to_call_status(verdict(leg1), second, leg1_hung_up_while_leg2_rang=hung_up)
        is expected
    )


# --- several numbers rung at once ---


@pytest.mark.parametrize(
    ("statuses", "expected"),
    [
        ([S.BUSY, S.ANSWER, S.NOANSWER], S.ANSWER),
        ([S.BUSY, S.CANCEL], S.CANCEL),
        ([S.BUSY, S.NOANSWER, S.CONGESTION], S.NOANSWER),  # a 480 anywhere keeps NOANSWER
        ([S.CHANUNAVAIL, S.CONGESTION, S.BUSY], S.BUSY),
        ([S.CHANUNAVAIL, S.CONGESTION], S.CONGESTION),
        ([S.CHANUNAVAIL, S.FAILED], S.CHANUNAVAIL),
        ([S.CHANUNAVAIL], S.CHANUNAVAIL),
        ([S.FAILED, S.FAILED], S.FAILED),
        ([S.DND, S.BUSY], S.BUSY),  # the DND number was not dialled
        ([S.DND, S.NOTALLOWED], S.DND),
    ],
)
def test_parallel(statuses: list[Status], expected: Status) -> None:
    assert parallel_status([verdict(status) for status in statuses]) is expected


def test_parallel_matches_single_leg_results() -> None:
    outcomes = [leg(status=486), leg(status=404), leg(status=503)]
    assert parallel_status([leg_status(o) for o in outcomes]) is S.BUSY
    outcomes.append(leg(status=480))
    assert parallel_status([leg_status(o) for o in outcomes]) is S.NOANSWER


def test_parallel_needs_a_leg() -> None:
    with pytest.raises(ValueError, match="at least one"):
        parallel_status([])


# --- properties ---

DIAL_FAILURES = {S.BUSY, S.NOANSWER, S.CONGESTION, S.CHANUNAVAIL}
LEG_STATUSES = DIAL_FAILURES | {S.ANSWER, S.CANCEL}


@given(
    code=st.integers(300, 699),
    reason=st.text(max_size=20),
    q850=st.none() | st.integers(0, 127),
)
def test_every_final_code_gives_one_dial_failure(code: int, reason: str, q850: int | None) -> None:
    result = leg_status(leg(EndCause.REJECTED, code, reason, q850))
    assert result.status in DIAL_FAILURES
    assert result.status is status_for_sip(code)
    assert result.q850_cause == (q850 if q850 is not None else q850_for_sip(code))


def test_every_final_code_exhaustively() -> None:
    assert {status_for_sip(code) for code in range(300, 700)} == DIAL_FAILURES


times = st.floats(0, 1e6, allow_nan=False)
outcomes = st.builds(
    Outcome,
    cause=st.sampled_from(EndCause),
    ended_by=st.sampled_from(Party),
    status=st.none() | st.integers(-1, 1000),
    reason=st.text(max_size=30),
    q850_cause=st.none() | st.integers(0, 127),
    created_at=times,
    ringing_at=st.none() | times,
    answered_at=st.none() | times,
    ended_at=times,
)


@given(outcome=outcomes, gave_up=st.booleans())
def test_leg_status_is_total(outcome: Outcome, gave_up: bool) -> None:
    result = leg_status(outcome, originator_gave_up=gave_up)
    assert result.status in LEG_STATUSES
    assert (result.q850_cause is None) == (result.status is S.ANSWER)
    if outcome.q850_cause is not None and not outcome.answered:
        assert result.q850_cause == outcome.q850_cause
    assert result.explanation
