"""The lines ``voiceplane call`` prints as a call record changes."""

from __future__ import annotations

from typing import Any

from voiceplane.console.progress import changes, describe_leg, leg_phase, summary


def leg(number: str = "+919812345678", **times: Any) -> dict[str, Any]:
    base = {"leg": 1, "number": number, "status": None, "sip_code": None, "sip_reason": None,
            "q850_cause": None, "hangup_by": None, "start_time": "t0", "ring_time": None,
            "answer_time": None, "end_time": None}  # fmt: skip
    return {**base, **times}


def record(state: str, *legs: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"state": state, "status": None, "legs": list(legs), "duration": 0, "billsec": 0,
            "reason": None, **fields}  # fmt: skip


def test_the_first_record_tells_everything() -> None:
    assert changes(None, record("queued")) == ["call queued"]
    assert changes(None, record("ringing", leg(ring_time="t1"))) == [
        "leg 1 +919812345678: ringing",
        "call ringing",
    ]


def test_only_what_changed_is_told_legs_before_the_call() -> None:
    before = record("dialing", leg())
    ended = leg(end_time="t2", status="BUSY", sip_code=486, sip_reason="Busy Here",
                q850_cause=17, hangup_by="callee")  # fmt: skip
    after = record("completed", ended)

    assert changes(before, before) == []
    assert changes(before, after) == [
        "leg 1 +919812345678: ended BUSY (SIP 486 Busy Here, Q.850 17, hung up by callee)",
        "call completed",
    ]


def test_a_new_leg_is_told_when_it_appears() -> None:
    first = leg(answer_time="t1")
    second = {**leg("+14155550100"), "leg": 2}

    assert changes(record("answered", first), record("answered", first, second)) == [
        "leg 2 +14155550100: dialing"
    ]


def test_phases_follow_the_times() -> None:
    assert [leg_phase({**leg(), **t}) for t in ({}, {"ring_time": 1}, {"answer_time": 1},
                                                {"end_time": 1})] == [
        "dialing", "ringing", "answered", "ended"
    ]  # fmt: skip
    assert describe_leg(leg(end_time="t")) == "leg 1 +919812345678: ended"


def test_the_summary_has_status_durations_and_reason() -> None:
    done = record("completed", status="ANSWER", duration=25, billsec=20, reason="callee hung up")

    assert summary(done) == "status ANSWER after 25 s (20 s talking); callee hung up"
    assert summary(record("completed")) == "status - after 0 s (0 s talking)"
