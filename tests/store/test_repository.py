"""Repository functions: accounts and keys, numbers, calls, legs and the call record."""

import re
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import Engine, select, text
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from voiceplane.store import repository as repo
from voiceplane.store.db import create_engine_for, migrate, session_factory
from voiceplane.store.models import Account, ApiKey, Call, Number

T0 = datetime(2025, 3, 14, 9, 26, 53, 589_793, tzinfo=UTC)

RECORD_KEYS = [
    "id",
    "service",
    "state",
    "status",
    "from",
    "to",
    "bridge",
    "custom",
    "reason",
    "rule",
    "created_at",
    "start_time",
    "answer_time",
    "end_time",
    "duration",
    "billsec",
    "keypress",
    "recording",
    "queue_position",
    "legs",
]
LEG_KEYS = [
    "leg",
    "number",
    "status",
    "sip_code",
    "sip_reason",
    "q850_cause",
    "hangup_by",
    "start_time",
    "ring_time",
    "answer_time",
    "end_time",
]


def new_account(factory: sessionmaker[Session], name: str = "Acme") -> tuple[Account, str]:
    with factory.begin() as session:
        return repo.create_account(session, name=name)


def new_call(factory: sessionmaker[Session], account: Account, **fields: object) -> str:
    with factory.begin() as session:
        values: dict[str, object] = {"service": "outbound", "to_number": "+15550100"} | fields
        return repo.create_call(session, account=account, **values).id  # type: ignore[arg-type]


# --- accounts and keys -----------------------------------------------------------------------


def test_create_account_gives_a_sid_and_a_key_stored_only_as_a_hash(
    factory: sessionmaker[Session],
) -> None:
    account, api_key = new_account(factory)
    assert re.fullmatch(r"VP[0-9a-f]{20}", account.sid)
    assert api_key.startswith("vpk_") and len(api_key) >= 4 + 43
    assert account.status_dialect == "voiceplane"
    with factory() as session:
        (row,) = session.scalars(select(ApiKey)).all()
        assert row.key_hash == repo.hash_api_key(api_key) != api_key
        assert api_key.startswith(row.prefix) and len(row.prefix) == 12
        assert row.revoked_at is None


def test_authenticate_accepts_only_the_right_key_for_the_right_sid(
    factory: sessionmaker[Session],
) -> None:
    acme, acme_key = new_account(factory, "Acme")
    other, other_key = new_account(factory, "Other")
    with factory() as session:
        found = repo.authenticate(session, sid=acme.sid, api_key=acme_key)
        assert found is not None and found.id == acme.id
        assert repo.authenticate(session, sid=acme.sid, api_key=acme_key + "x") is None
        assert repo.authenticate(session, sid=acme.sid, api_key=other_key) is None
        assert repo.authenticate(session, sid="VP" + "0" * 20, api_key=acme_key) is None
        assert repo.authenticate(session, sid=other.sid, api_key=acme_key) is None
        assert repo.authenticate(session, sid=acme.sid, api_key="") is None
        assert repo.authenticate(session, sid="", api_key=acme_key) is None


def test_an_account_can_have_several_keys_and_revoke_one(
    factory: sessionmaker[Session],
) -> None:
    account, first = new_account(factory)
    with factory.begin() as session:
        stored = session.get_one(Account, account.id)
        _row, second = repo.add_api_key(session, account=stored)
    with factory() as session:
        assert repo.authenticate(session, sid=account.sid, api_key=first) is not None
        assert repo.authenticate(session, sid=account.sid, api_key=second) is not None
    with factory.begin() as session:
        key_row = session.scalars(
            select(ApiKey).where(ApiKey.key_hash == repo.hash_api_key(first))
        ).one()
        repo.revoke_api_key(session, api_key=key_row)
    with factory() as session:
        assert repo.authenticate(session, sid=account.sid, api_key=first) is None
        assert repo.authenticate(session, sid=account.sid, api_key=second) is not None


# --- numbers ---------------------------------------------------------------------------------


def test_numbers_are_registered_and_found(factory: sessionmaker[Session]) -> None:
    account, _key = new_account(factory)
    with factory.begin() as session:
        repo.add_number(session, account=account, e164="+15550199", kind="did", channels=4)
        repo.add_number(session, account=account, e164="+15550100", kind="bridge")
    with factory() as session:
        did = repo.get_number(session, e164="+15550199")
        assert did is not None and did.account_id == account.id
        assert (did.kind, did.channels) == ("did", 4)
        numbers = repo.list_numbers(session, account=account)
        assert [(n.e164, n.channels) for n in numbers] == [("+15550100", 10), ("+15550199", 4)]
        assert [n.e164 for n in repo.list_numbers(session, account=account, kind="did")] == [
            "+15550199"
        ]
        assert repo.get_number(session, e164="+10000000") is None


def test_a_duplicate_number_is_refused_and_earlier_rows_stay(
    factory: sessionmaker[Session],
) -> None:
    acme, _key = new_account(factory, "Acme")
    other, _key = new_account(factory, "Other")
    with factory.begin() as session:
        repo.add_number(session, account=acme, e164="+15550100", kind="did")
    with factory.begin() as session:
        repo.add_number(session, account=acme, e164="+15550101", kind="did")
        with pytest.raises(IntegrityError):
            repo.add_number(session, account=other, e164="+15550100", kind="bridge")
        # The savepoint undid only the refused write; this transaction goes on and commits.
        repo.add_number(session, account=acme, e164="+15550102", kind="bridge")
    with factory() as session:
        rows = session.scalars(select(Number).order_by(Number.e164)).all()
        assert [(n.e164, n.account_id, n.kind) for n in rows] == [
            ("+15550100", acme.id, "did"),
            ("+15550101", acme.id, "did"),
            ("+15550102", acme.id, "bridge"),
        ]


def test_a_failed_transaction_changes_nothing(factory: sessionmaker[Session]) -> None:
    account, _key = new_account(factory)
    with factory.begin() as session:
        repo.add_number(session, account=account, e164="+15550100", kind="did")
    with pytest.raises(IntegrityError), factory.begin() as session:
        repo.create_call(session, account=account, service="outbound", to_number="+1")
        repo.add_number(session, account=account, e164="+15550100", kind="did")
    with factory() as session:
        assert repo.count_calls(session, account=account) == 0
        assert len(repo.list_numbers(session, account=account)) == 1


def test_bad_vocabulary_is_refused_before_any_sql(factory: sessionmaker[Session]) -> None:
    account, _key = new_account(factory)
    with factory() as session:
        with pytest.raises(ValueError, match="kind"):
            repo.add_number(session, account=account, e164="+1", kind="mobile")
        with pytest.raises(ValueError, match="channels"):
            repo.add_number(session, account=account, e164="+1", kind="did", channels=-1)
        with pytest.raises(ValueError, match="service"):
            repo.create_call(session, account=account, service="fax")
        with pytest.raises(ValueError, match="state"):
            repo.create_call(session, account=account, service="outbound", state="done")
        with pytest.raises(ValueError, match="state"):
            repo.calls_in_states(session, ["done"])


# --- calls and the call record ---------------------------------------------------------------


def test_call_and_legs_round_trip_into_the_call_record(factory: sessionmaker[Session]) -> None:
    account, _key = new_account(factory)
    with factory.begin() as session:
        call = repo.create_call(
            session,
            account=account,
            service="click2call",
            from_number="+15550001",
            to_number="+15550002",
            bridge="+15550100",
            custom="order-42",
            callback_url="https://example.test/cb",
            dlr_url="https://example.test/dlr",
            ring_timeout=30,
            now=T0,
        )
        assert call.state == "queued" and call.status is None
        leg1 = repo.record_leg(
            session, call=call, leg=1, number="+15550001", start_time=T0, sip_call_id="a@h"
        )
        repo.update_leg(session, leg=leg1, ring_time=T0 + timedelta(seconds=1))
        repo.update_leg(session, leg=leg1, answer_time=T0 + timedelta(seconds=3))
        leg2 = repo.record_leg(
            session, call=call, leg=2, number="+15550002", start_time=T0 + timedelta(seconds=3)
        )
        repo.update_leg(
            session,
            leg=leg2,
            status="BUSY",
            sip_code=486,
            sip_reason="Busy Here",
            q850_cause=17,
            hangup_by="callee",
            end_time=T0 + timedelta(seconds=5),
        )
        repo.update_leg(
            session,
            leg=leg1,
            status="ANSWER",
            hangup_by="platform",
            end_time=T0 + timedelta(seconds=5),
        )
        repo.update_call(
            session,
            call=call,
            state="completed",
            status="BUSY_LEG2",
            start_time=T0,
            answer_time=T0 + timedelta(seconds=3),
            end_time=T0 + timedelta(seconds=5),
            duration=5,
            billsec=2,
        )
        call_id = call.id
        in_session = repo.call_record(call)

    with factory() as session:
        stored = repo.get_call(session, account=account, call_id=call_id)
        assert stored is not None
        record = repo.call_record(stored)
    assert record == in_session
    assert list(record) == RECORD_KEYS
    assert record == {
        "id": call_id,
        "service": "click2call",
        "state": "completed",
        "status": "BUSY_LEG2",
        "from": "+15550001",
        "to": "+15550002",
        "bridge": "+15550100",
        "custom": "order-42",
        "reason": None,
        "rule": None,
        "created_at": "2025-03-14T09:26:53.589Z",
        "start_time": "2025-03-14T09:26:53.589Z",
        "answer_time": "2025-03-14T09:26:56.589Z",
        "end_time": "2025-03-14T09:26:58.589Z",
        "duration": 5,
        "billsec": 2,
        "keypress": None,
        "recording": None,
        "queue_position": None,
        "legs": [
            {
                "leg": 1,
                "number": "+15550001",
                "status": "ANSWER",
                "sip_code": None,
                "sip_reason": None,
                "q850_cause": None,
                "hangup_by": "platform",
                "start_time": "2025-03-14T09:26:53.589Z",
                "ring_time": "2025-03-14T09:26:54.589Z",
                "answer_time": "2025-03-14T09:26:56.589Z",
                "end_time": "2025-03-14T09:26:58.589Z",
            },
            {
                "leg": 2,
                "number": "+15550002",
                "status": "BUSY",
                "sip_code": 486,
                "sip_reason": "Busy Here",
                "q850_cause": 17,
                "hangup_by": "callee",
                "start_time": "2025-03-14T09:26:56.589Z",
                "ring_time": None,
                "answer_time": None,
                "end_time": "2025-03-14T09:26:58.589Z",
            },
        ],
    }
    legs = record["legs"]
    assert isinstance(legs, list)
    assert all(list(leg) == LEG_KEYS for leg in legs)


def test_a_new_call_has_an_empty_record(factory: sessionmaker[Session]) -> None:
    account, _key = new_account(factory)
    call_id = new_call(factory, account)
    assert re.fullmatch(r"VC[0-9a-f]{32}", call_id)
    with factory() as session:
        call = repo.get_call(session, account=account, call_id=call_id)
        assert call is not None
        record = repo.call_record(call)
    assert record["state"] == "queued"
    assert record["status"] is None and record["legs"] == []
    assert (record["duration"], record["billsec"]) == (0, 0)
    assert isinstance(record["created_at"], str) and record["created_at"].endswith("Z")


def test_a_call_decided_before_dialing_keeps_its_rule(factory: sessionmaker[Session]) -> None:
    account, _key = new_account(factory)
    call_id = new_call(
        factory,
        account,
        state="completed",
        status="DND",
        reason="the callee is on the DND registry",
        decided_by_rule="dnd",
    )
    with factory() as session:
        call = repo.get_call(session, account=account, call_id=call_id)
        assert call is not None
        assert (call.state, call.status, call.decided_by_rule) == ("completed", "DND", "dnd")
        assert repo.call_record(call)["reason"] == "the callee is on the DND registry"
        assert repo.call_record(call)["rule"] == "dnd"


def test_another_accounts_call_is_never_returned(factory: sessionmaker[Session]) -> None:
    acme, _key = new_account(factory, "Acme")
    other, _key = new_account(factory, "Other")
    acme_call = new_call(factory, acme)
    with factory() as session:
        assert repo.get_call(session, account=acme, call_id=acme_call) is not None
        assert repo.get_call(session, account=other, call_id=acme_call) is None
        assert repo.get_call(session, account=acme, call_id="VCnope") is None
        assert repo.list_calls(session, account=other) == []
        assert repo.count_calls(session, account=other) == 0


def test_list_calls_filters_and_pages_newest_first(factory: sessionmaker[Session]) -> None:
    account, _key = new_account(factory)
    ids = [
        new_call(factory, account, to_number=f"+1555000{i}", now=T0 + timedelta(minutes=i))
        for i in range(5)
    ]
    click = new_call(
        factory,
        account,
        service="click2call",
        from_number="+15550003",
        to_number="+15559999",
        now=T0 + timedelta(minutes=10),
    )
    with factory.begin() as session:
        stored = repo.get_call(session, account=account, call_id=ids[1])
        assert stored is not None
        repo.update_call(session, call=stored, state="completed", status="NOANSWER")

    with factory() as session:

        def listed(**filters: object) -> list[str]:
            calls = repo.list_calls(session, account=account, **filters)  # type: ignore[arg-type]
            return [call.id for call in calls]

        assert listed() == [click, *reversed(ids)]
        assert listed(limit=2) == [click, ids[4]]
        assert listed(limit=2, offset=2) == [ids[3], ids[2]]
        assert listed(service="click2call") == [click]
        assert listed(state="completed") == [ids[1]]
        assert listed(status="NOANSWER") == [ids[1]]
        assert listed(number="+15550003") == [click, ids[3]]
        assert listed(
            created_from=T0 + timedelta(minutes=1), created_to=T0 + timedelta(minutes=3)
        ) == [ids[2], ids[1]]
        assert repo.count_calls(session, account=account) == 6
        assert repo.count_calls(session, account=account, service="outbound") == 5
        with pytest.raises(ValueError, match="limit"):
            repo.list_calls(session, account=account, limit=0)
        with pytest.raises(ValueError, match="offset"):
            repo.list_calls(session, account=account, offset=-1)


def test_calls_in_states_spans_accounts_for_recovery(factory: sessionmaker[Session]) -> None:
    acme, _key = new_account(factory, "Acme")
    other, _key = new_account(factory, "Other")
    queued = new_call(factory, acme, now=T0)
    ringing = new_call(factory, other, state="ringing", now=T0 + timedelta(seconds=1))
    new_call(factory, acme, state="completed", status="ANSWER")
    with factory() as session:
        found = repo.calls_in_states(session, ["queued", "dialing", "ringing", "answered"])
        assert [call.id for call in found] == [queued, ringing]
        assert repo.calls_in_states(session, []) == []


def test_due_calls_are_queued_calls_whose_time_has_come(factory: sessionmaker[Session]) -> None:
    account, _key = new_account(factory)
    now = T0 + timedelta(hours=1)
    later = new_call(factory, account, scheduled_at=now + timedelta(minutes=5), now=T0)
    scheduled = new_call(factory, account, scheduled_at=now - timedelta(minutes=1), now=T0)
    immediate = new_call(factory, account, now=T0 + timedelta(minutes=1))
    new_call(factory, account, state="dialing", now=T0)
    with factory.begin() as session:
        due = repo.due_calls(session, now=now)
        assert [call.id for call in due] == [immediate, scheduled]
        for call in due:
            repo.update_call(session, call=call, state="dialing")
    with factory() as session:
        assert repo.due_calls(session, now=now) == []
        assert [c.id for c in repo.due_calls(session, now=now + timedelta(hours=1))] == [later]


def test_due_calls_skip_the_rows_another_engine_has_taken(postgresql_database_url: str) -> None:
    """FOR UPDATE SKIP LOCKED: two engines share one queue, each gets other calls, none waits."""
    migrate(postgresql_database_url)
    engine = create_engine_for(postgresql_database_url)
    try:
        factory = session_factory(engine)
        account, _key = new_account(factory)
        ids = [new_call(factory, account, now=T0 + timedelta(seconds=i)) for i in range(3)]
        now = T0 + timedelta(hours=1)

        with factory.begin() as first:
            taken = repo.due_calls(first, now=now, limit=2)
            assert [call.id for call in taken] == ids[:2]
            # The rows really are locked: a third session may not lock them without waiting.
            with factory() as third, pytest.raises(OperationalError, match="lock"):
                third.execute(select(Call).where(Call.id == ids[0]).with_for_update(nowait=True))
            with factory.begin() as second:
                # Waiting for the first engine's locks would be the bug: fail instead of hanging.
                second.execute(text("SET LOCAL lock_timeout = '2s'"))
                others = repo.due_calls(second, now=now)
                assert [call.id for call in others] == [ids[2]]
                for call in others:
                    repo.update_call(second, call=call, state="dialing")
                # A plain read is not held up by the locks and still sees those calls queued.
                assert repo.calls_in_states(second, ["queued"])[0].id == ids[0]
            for call in taken:
                repo.update_call(first, call=call, state="dialing")

        with factory() as session:
            assert repo.due_calls(session, now=now) == []
            assert [c.id for c in repo.calls_in_states(session, ["dialing"])] == ids
    finally:
        engine.dispose()


def test_due_calls_taken_by_a_rolled_back_transaction_are_due_again(
    factory: sessionmaker[Session],
) -> None:
    account, _key = new_account(factory)
    call_id = new_call(factory, account, now=T0)
    with factory() as session:
        assert [call.id for call in repo.due_calls(session, now=T0)] == [call_id]
        session.rollback()  # the engine failed before moving the call out of the queue
    with factory.begin() as session:
        assert [call.id for call in repo.due_calls(session, now=T0)] == [call_id]


def test_update_call_moves_updated_at(factory: sessionmaker[Session]) -> None:
    account, _key = new_account(factory)
    call_id = new_call(factory, account, now=T0)
    with factory.begin() as session:
        call = repo.get_call(session, account=account, call_id=call_id)
        assert call is not None and call.updated_at == T0
        repo.update_call(session, call=call, state="dialing", start_time=T0)
        assert call.updated_at > T0
        with pytest.raises(ValueError, match="state"):
            repo.update_call(session, call=call, state="bogus")


def test_leg_tries_are_ordered_and_found_by_sip_call_id(
    factory: sessionmaker[Session],
) -> None:
    account, _key = new_account(factory)
    call_id = new_call(factory, account)
    with factory.begin() as session:
        call = repo.get_call(session, account=account, call_id=call_id)
        assert call is not None
        repo.record_leg(session, call=call, leg=1, number="+1", sip_call_id="abc@host")
        repo.record_leg(session, call=call, leg=1, number="+2")  # a parallel try of leg 1
        with pytest.raises(ValueError, match="start at 1"):
            repo.record_leg(session, call=call, leg=0, number="+2")
    with factory() as session:
        leg = repo.find_leg_by_sip_call_id(session, sip_call_id="abc@host")
        assert leg is not None and leg.call_id == call_id and leg.number == "+1"
        call = repo.get_call(session, account=account, call_id=call_id)
        assert call is not None
        assert [(leg.leg, leg.seq, leg.number) for leg in call.legs] == [(1, 1, "+1"), (1, 2, "+2")]
        latest = repo.get_leg(call, 1)
        assert latest is not None and latest.number == "+2"
        assert repo.get_leg(call, 2) is None


def test_a_committed_call_survives_closing_and_reopening_the_engine(
    engine: Engine, database_url: str
) -> None:
    factory = session_factory(engine)
    account, _key = new_account(factory)
    call_id = new_call(factory, account, custom="keep me")
    engine.dispose()
    reopened = create_engine_for(database_url)
    try:
        with session_factory(reopened)() as session:
            call = session.get(Call, call_id)
            assert call is not None and call.custom == "keep me"
    finally:
        reopened.dispose()


def test_iso_utc_converts_other_zones() -> None:
    india = timezone(timedelta(hours=5, minutes=30))
    assert repo.iso_utc(datetime(2025, 1, 1, 11, 0, tzinfo=india)) == "2025-01-01T05:30:00.000Z"
    assert repo.iso_utc(None) is None


def test_a_number_filter_finds_calls_that_rang_it_in_parallel(
    factory: sessionmaker[Session],
) -> None:
    account, _key = new_account(factory)
    parallel = new_call(factory, account, service="click2call", from_number="+9111",
                        to_number="+91222,+91333")  # fmt: skip
    single = new_call(factory, account, service="outbound", to_number="+91333")
    with factory() as session:
        def found(number: str) -> set[str]:
            return {c.id for c in repo.list_calls(session, account=account, number=number)}

        assert found("+91333") == {parallel, single}
        assert found("+91222") == {parallel}
        assert found("+9122") == set()  # a prefix of a listed number is not that number
        assert found("+9111") == {parallel}


def test_a_snapshots_record_is_the_record_the_store_then_shows(
    factory: sessionmaker[Session],
) -> None:
    from voiceplane.store.progress import CallProgress, LegProgress, save_many

    account, _key = new_account(factory)
    call_id = new_call(factory, account, custom="order-7", from_number="+15550001")
    legs = (
        LegProgress(seq=2, leg=2, number="+15550003", status="BUSY", sip_code=486,
                    sip_reason="Busy Here", q850_cause=17, hangup_by="callee",
                    start_time=T0 + timedelta(seconds=2), end_time=T0 + timedelta(seconds=4)),
        LegProgress(seq=1, leg=1, number="+15550001", status="ANSWER", start_time=T0,
                    ring_time=T0, answer_time=T0 + timedelta(seconds=1),
                    end_time=T0 + timedelta(seconds=4)),
    )  # fmt: skip
    snapshot = CallProgress(
        call_id=call_id, state="completed", status="BUSY_LEG2", reason="busy",
        start_time=T0, answer_time=T0 + timedelta(seconds=1),
        end_time=T0 + timedelta(seconds=4), duration=4, billsec=3, attempts=1,
        scheduled_at=None, legs=legs,
    )  # fmt: skip
    with factory.begin() as session:
        save_many(session, [snapshot])
        (made,) = repo.snapshot_records(session, [snapshot])
    with factory() as session:
        call = session.get(Call, call_id)
        assert call is not None
        shown = repo.call_record(call)
    assert made is not None
    assert made.record == shown
    shown_legs = shown["legs"]
    assert isinstance(shown_legs, list)
    assert [leg["leg"] for leg in shown_legs] == [1, 2]
    assert made.account_id == account.id and made.state == "completed"
