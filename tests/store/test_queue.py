"""Claiming due calls, cancel requests, interrupted calls and progress snapshots."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy.orm import Session, sessionmaker

from voiceplane.store import repository as repo
from voiceplane.store.models import Account
from voiceplane.store.progress import CallProgress, LegProgress, save_many, save_progress
from voiceplane.store.queue import cancel_requested, claim_due, split_numbers

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def _account(factory: sessionmaker[Session]) -> int:
    with factory.begin() as session:
        account, _key = repo.create_account(session, name="acme")
        return account.id


def _call(factory: sessionmaker[Session], **fields: object) -> str:
    with factory.begin() as session:
        account = session.get(Account, fields.pop("account_id"))
        assert account is not None
        call = repo.create_call(session, account=account, **fields)  # type: ignore[arg-type]
        return call.id


def test_split_numbers_reads_the_stored_lists() -> None:
    assert split_numbers("+911,+912") == ("+911", "+912")
    assert split_numbers(" +911 ,, ") == ("+911",)
    assert split_numbers(None) == () and split_numbers("") == ()


def test_claim_moves_due_calls_to_dialing_once(factory: sessionmaker[Session]) -> None:
    account_id = _account(factory)
    due = _call(
        factory, account_id=account_id, service="click2call", from_number="+911,+912",
        to_number="+913", bridge="+914", ring_timeout=20, retry=2, retry_interval=5,
        now=NOW - timedelta(seconds=5),
    )  # fmt: skip
    later = _call(
        factory, account_id=account_id, service="outbound", to_number="+915",
        scheduled_at=NOW + timedelta(minutes=5), target="hello",
    )  # fmt: skip
    with factory.begin() as session:
        commands = claim_due(session, now=NOW, limit=10)
    assert [command.call_id for command in commands] == [due]
    command = commands[0]
    assert command.from_numbers == ("+911", "+912") and command.to_numbers == ("+913",)
    assert (command.bridge, command.ring_timeout, command.retry) == ("+914", 20, 2)
    assert command.attempts == 1 and command.start_time == NOW
    assert not command.cancel_requested
    with factory.begin() as session:
        assert claim_due(session, now=NOW, limit=10) == []  # taken once only
        call = repo.find_call(session, call_id=due)
        assert call is not None and call.state == "dialing" and call.attempts == 1
        later_call = repo.find_call(session, call_id=later)
        assert later_call is not None and later_call.state == "queued"


def test_progress_snapshots_update_the_call_and_upsert_legs(
    factory: sessionmaker[Session],
) -> None:
    account_id = _account(factory)
    call_id = _call(factory, account_id=account_id, service="outbound", to_number="+915")
    leg = LegProgress(seq=1, leg=1, number="+915", start_time=NOW, sip_call_id="x@h")
    snapshot = CallProgress(
        call_id=call_id, state="ringing", status=None, reason=None, start_time=NOW,
        answer_time=None, end_time=None, duration=0, billsec=0, attempts=1,
        scheduled_at=None, legs=(leg,),
    )  # fmt: skip
    with factory.begin() as session:
        save_progress(session, snapshot)
    ended = LegProgress(
        seq=1, leg=1, number="+915", status="BUSY", sip_code=486, sip_reason="Busy Here",
        q850_cause=17, hangup_by="callee", start_time=NOW, end_time=NOW + timedelta(seconds=3),
        sip_call_id="x@h",
    )  # fmt: skip
    final = CallProgress(
        call_id=call_id, state="completed", status="BUSY", reason="busy", start_time=NOW,
        answer_time=None, end_time=NOW + timedelta(seconds=3), duration=3, billsec=0,
        attempts=1, scheduled_at=None, legs=(ended,),
    )  # fmt: skip
    with factory.begin() as session:
        save_many(session, [final, final])  # writing it twice changes nothing
    with factory() as session:
        call = repo.find_call(session, call_id=call_id)
        assert call is not None
        record = repo.call_record(call)
    assert record["state"] == "completed" and record["status"] == "BUSY"
    assert record["duration"] == 3
    legs = record["legs"]
    assert isinstance(legs, list) and len(legs) == 1
    assert legs[0]["sip_code"] == 486 and legs[0]["q850_cause"] == 17
    assert legs[0]["hangup_by"] == "callee"


def test_cancel_requests_and_claimed_calls_are_found(
    factory: sessionmaker[Session],
) -> None:
    account_id = _account(factory)
    first = _call(factory, account_id=account_id, service="outbound", to_number="+915")
    second = _call(factory, account_id=account_id, service="outbound", to_number="+916")
    with factory.begin() as session:
        claim_due(session, now=NOW, limit=10)
        call = repo.find_call(session, call_id=second)
        assert call is not None
        repo.update_call(session, call=call, cancel_requested_at=NOW)
    with factory() as session:
        assert cancel_requested(session, [first, second]) == {second}
        assert cancel_requested(session, []) == set()
        live = repo.calls_in_states(session, ["dialing", "ringing", "answered"])
        assert sorted(call.id for call in live) == sorted([first, second])


def test_a_batch_of_many_calls_keeps_the_newest_snapshot_of_each(
    factory: sessionmaker[Session],
) -> None:
    account_id = _account(factory)
    ids = [_call(factory, account_id=account_id, service="outbound", to_number="+915")
           for _ in range(30)]  # fmt: skip

    def snapshot(call_id: str, state: str, status: str | None, seconds: int) -> CallProgress:
        leg = LegProgress(
            seq=0, leg=1, number="+915", status=status, start_time=NOW,
            end_time=NOW + timedelta(seconds=seconds) if status else None,
        )  # fmt: skip
        return CallProgress(
            call_id=call_id, state=state, status=status, reason=None, start_time=NOW,
            answer_time=None, end_time=None, duration=seconds, billsec=0, attempts=1,
            scheduled_at=None, legs=(leg,),
        )  # fmt: skip

    batch = [snapshot(call_id, "ringing", None, 0) for call_id in ids]
    batch += [snapshot(call_id, "completed", "BUSY", 2) for call_id in ids[::2]]
    with factory.begin() as session:
        save_many(session, batch)
    with factory() as session:
        calls = {call_id: repo.find_call(session, call_id=call_id) for call_id in ids}
        records = {call_id: repo.call_record(call) for call_id, call in calls.items() if call}
    for index, call_id in enumerate(ids):
        record = records[call_id]
        done = index % 2 == 0
        assert record["state"] == ("completed" if done else "ringing")
        assert record["duration"] == (2 if done else 0)
        legs = record["legs"]
        assert isinstance(legs, list)
        assert [leg["status"] for leg in legs] == (["BUSY"] if done else [None])


def test_the_due_calls_read_in_one_step_are_the_rows_the_query_gives(
    factory: sessionmaker[Session],
) -> None:
    # On SQLite the claim reads its rows packed in one JSON value (store.driver.PackedSelect):
    # the same rows, in the same order, with the same values and types, as the query itself.
    from voiceplane.store.queue import _due_query, _packed_due_query

    with factory.begin() as session:
        account, _key = repo.create_account(session, name="acme")
        account.max_cps = 2.5
        account.channels = 7
        repo.add_number(session, account=account, e164="+914", kind="bridge", channels=3)
    account_id = account.id
    fields: list[dict[str, object]] = [
        {"service": "click2call", "from_number": "+911,+912", "to_number": "+913",
         "bridge": "+914", "ring_timeout": 20, "retry": 2, "retry_interval": 5,
         "promotional": True, "callback_url": "http://example.test/cb",
         "now": NOW - timedelta(seconds=5)},
        {"service": "outbound", "to_number": "+915", "bridge": "+916",
         "target": 'héllo, "x" \\ [1]', "promotional": False, "now": NOW - timedelta(seconds=9)},
        {"service": "outbound", "to_number": "+917", "now": NOW - timedelta(seconds=9),
         "scheduled_at": NOW - timedelta(seconds=20)},
        {"service": "outbound", "to_number": "+918", "now": NOW - timedelta(seconds=1)},
    ]  # fmt: skip
    for each in fields:
        _call(factory, account_id=account_id, **each)
    with factory.begin() as session:
        connection = session.connection()
        for gated in (False, True):
            values = {"now": NOW, "limit": 3}
            plain = connection.execute(
                _due_query(gated=gated, bridges=False, accounts=False), values
            ).all()
            packed = _packed_due_query(gated=gated, bridges=False, accounts=False).rows(
                connection, values
            )
            assert len(plain) == 3
            assert [tuple(row) for row in packed] == [tuple(row) for row in plain]
            assert [row._fields for row in packed] == [tuple(row._fields) for row in plain]
            for row in packed:
                assert row.created_at.tzinfo is not None
        empty = _packed_due_query(gated=True, bridges=False, accounts=True).rows(
            connection, {"now": NOW, "limit": 3, "skip_accounts": [account_id]}
        )
        assert list(empty) == []
