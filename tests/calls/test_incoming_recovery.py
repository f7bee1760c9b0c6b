"""An incoming call cut short by a stop gets its final status at the next start."""

from __future__ import annotations

from datetime import timedelta

from voiceplane.calls.recovery import recover
from voiceplane.store import repository as repo
from voiceplane.store.db import create_engine_for, migrate, session_factory
from voiceplane.store.models import Call, Leg, utcnow


def test_an_interrupted_incoming_call_is_ivr_answer_if_answered_else_failed(
    database_url: str,
) -> None:
    migrate(database_url)
    sessions = session_factory(create_engine_for(database_url))
    now = utcnow()
    with sessions.begin() as session:
        account, _key = repo.create_account(session, name="acme")
        ids = {}
        for name, state, answered in (("in-flow", "answered", True), ("ringing", "ringing", False)):
            call_id = repo.insert_call(
                session, account_id=account.id, service="incoming", state=state,
                from_number="+919812345678", to_number="+918047199999",
            )  # fmt: skip
            session.add(
                Leg(call_id=call_id, leg=1, seq=1, number="+919812345678",
                    start_time=now - timedelta(seconds=5),
                    answer_time=now - timedelta(seconds=4) if answered else None)
            )  # fmt: skip
            ids[name] = call_id
    with sessions.begin() as session:
        assert recover(session) == 2
    with sessions.begin() as session:
        in_flow = session.get(Call, ids["in-flow"])
        ringing = session.get(Call, ids["ringing"])
        assert in_flow is not None and ringing is not None
        assert (in_flow.state, in_flow.status) == ("completed", "IVR-ANSWER")
        assert (ringing.state, ringing.status) == ("completed", "FAILED")
        assert in_flow.legs[0].status == "ANSWER" and ringing.legs[0].status == "FAILED"
