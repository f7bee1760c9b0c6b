"""The callback outbox: enqueue in the caller's transaction, due rows in order, leases,
attempts, retries, giving up, and the signing secrets (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, or_, select
from sqlalchemy.orm import Session, sessionmaker

from voiceplane.store import outbox
from voiceplane.store import repository as repo
from voiceplane.store.models import Outbox, OutboxAttempt
from voiceplane.store.outbox import NewCallback

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
URL = "https://example.test/hook"


def _call(factory: sessionmaker[Session]) -> tuple[int, str]:
    with factory.begin() as session:
        account, _key = repo.create_account(session, name="acme")
        call = repo.create_call(session, account=account, service="outbound", to_number="+1")
        return account.id, call.id


def _post(event: str, url: str = URL, kind: str = "progress") -> NewCallback:
    return NewCallback(kind=kind, event=event, url=url, method="POST", payload={"event": event})


def test_enqueue_numbers_a_calls_callbacks_and_stores_json_with_the_sequence(
    factory: sessionmaker[Session],
) -> None:
    account_id, call_id = _call(factory)
    with factory.begin() as session:
        first = outbox.enqueue(
            session, account_id=account_id, call_id=call_id,
            callbacks=[_post("initiated"), _post("ringing")], now=NOW,
        )  # fmt: skip
    with factory.begin() as session:
        second = outbox.enqueue(
            session, account_id=account_id, call_id=call_id,
            callbacks=[NewCallback("status", "completed", URL + "?s=x", "GET")], now=NOW,
        )  # fmt: skip
    assert len(set(first + second)) == 3
    assert all(ident.startswith("msg_") for ident in first + second)
    with factory() as session:
        reports = outbox.attempts_for(session, call_id=call_id)
    messages = [report.message for report in reports]
    assert [(m.seq, m.event, m.method) for m in messages] == [
        (1, "initiated", "POST"),
        (2, "ringing", "POST"),
        (3, "completed", "GET"),
    ]
    assert [m.id for m in messages] == first + second
    assert messages[0].body is not None
    assert json.loads(messages[0].body) == {"event": "initiated", "sequence": 1}
    assert messages[2].body is None
    assert all(report.attempts == () and report.delivered_at is None for report in reports)


def test_enqueue_is_part_of_the_callers_transaction(factory: sessionmaker[Session]) -> None:
    account_id, call_id = _call(factory)
    with pytest.raises(RuntimeError), factory.begin() as session:
        outbox.enqueue(session, account_id=account_id, call_id=call_id, callbacks=[_post("a")])
        raise RuntimeError("the status change failed")
    with factory() as session:
        assert outbox.attempts_for(session, call_id=call_id) == []
        assert outbox.pending_count(session) == 0


@pytest.mark.parametrize(
    ("callback", "message"),
    [
        (NewCallback("final", "x", URL, "POST", {}), "kind"),
        (NewCallback("status", "x", URL, "PUT", {}), "method"),
        (NewCallback("status", "x", URL, "GET", {"a": 1}), "GET"),
        (NewCallback("status", "x", URL, "POST"), "payload"),
        (NewCallback("status", "x", "", "GET"), "URL"),
    ],
)
def test_enqueue_refuses_bad_callbacks(
    factory: sessionmaker[Session], callback: NewCallback, message: str
) -> None:
    account_id, call_id = _call(factory)
    with pytest.raises(ValueError, match=message), factory.begin() as session:
        outbox.enqueue(session, account_id=account_id, call_id=call_id, callbacks=[callback])


def test_due_holds_later_rows_of_a_call_and_url_until_earlier_ones_finish(
    factory: sessionmaker[Session],
) -> None:
    account_id, call_id = _call(factory)
    other = "https://other.test/dlr"
    with factory.begin() as session:
        ids = outbox.enqueue(
            session, account_id=account_id, call_id=call_id,
            callbacks=[_post("a"), _post("b"), _post("c", url=other)], now=NOW,
        )  # fmt: skip
    with factory.begin() as session:
        assert [m.id for m in outbox.due(session, now=NOW, limit=10)] == [ids[0], ids[2]]
        outbox.mark_delivered(session, message_id=ids[0], at=NOW)
    with factory.begin() as session:
        assert [m.id for m in outbox.due(session, now=NOW, limit=10)] == [ids[1], ids[2]]
        outbox.give_up(session, message_id=ids[1], at=NOW, error="HTTP 500")
        outbox.mark_delivered(session, message_id=ids[2], at=NOW)
    with factory.begin() as session:
        assert outbox.due(session, now=NOW, limit=10) == []
        assert outbox.pending_count(session) == 0


def test_a_claimed_row_is_leased_and_a_stopped_dispatcher_releases_it(
    factory: sessionmaker[Session],
) -> None:
    account_id, call_id = _call(factory)
    with factory.begin() as session:
        (ident,) = outbox.enqueue(
            session, account_id=account_id, call_id=call_id, callbacks=[_post("a")], now=NOW
        )
    lease_end = NOW + timedelta(seconds=30)
    with factory.begin() as session:
        assert [m.id for m in outbox.claim(session, now=NOW, limit=5, lease_until=lease_end)] == [
            ident
        ]
    with factory.begin() as session:
        assert outbox.due(session, now=NOW + timedelta(seconds=29), limit=5) == []
        # After the lease (the process died mid-send): the same row, the same webhook id.
        assert [m.id for m in outbox.due(session, now=lease_end, limit=5)] == [ident]
        outbox.release(session, [ident], now=NOW)
    with factory.begin() as session:
        assert [m.id for m in outbox.due(session, now=NOW, limit=5)] == [ident]
        with pytest.raises(ValueError, match="lease"):
            outbox.claim(session, now=NOW, limit=5, lease_until=NOW)
        with pytest.raises(ValueError, match="limit"):
            outbox.due(session, now=NOW, limit=0)


def test_attempts_retries_and_delivery_are_kept(factory: sessionmaker[Session]) -> None:
    account_id, call_id = _call(factory)
    with factory.begin() as session:
        (ident,) = outbox.enqueue(
            session, account_id=account_id, call_id=call_id, callbacks=[_post("a")], now=NOW
        )
    later = NOW + timedelta(seconds=7)
    with factory.begin() as session:
        outbox.record_attempt(
            session, message_id=ident, at=NOW, http_status=500, error="HTTP 500", duration_ms=3
        )
        outbox.schedule_retry(session, message_id=ident, at=later, error="HTTP 500")
    with factory.begin() as session:
        assert outbox.due(session, now=later - timedelta(seconds=1), limit=5) == []
        (message,) = outbox.due(session, now=later, limit=5)
        assert message.attempts == 1
        outbox.record_attempt(
            session, message_id=ident, at=later, http_status=None, error="ConnectError",
            duration_ms=0,
        )  # fmt: skip
        outbox.record_attempt(
            session, message_id=ident, at=later, http_status=204, error=None, duration_ms=5
        )
        outbox.mark_delivered(session, message_id=ident, at=later)
        # A late retry decision cannot reopen a delivered row.
        outbox.schedule_retry(session, message_id=ident, at=later, error="late")
    with factory() as session:
        (report,) = outbox.attempts_for(session, call_id=call_id)
    assert report.delivered_at == later and report.given_up_at is None
    assert report.last_error is None and report.message.attempts == 3
    assert [(a.at, a.http_status, a.error, a.duration_ms) for a in report.attempts] == [
        (NOW, 500, "HTTP 500", 3),
        (later, None, "ConnectError", 0),
        (later, 204, None, 5),
    ]


def test_due_skips_rows_another_transaction_holds(
    postgresql_database_url: str,
) -> None:
    """Two dispatchers on PostgreSQL: FOR UPDATE SKIP LOCKED, each row to one of them."""
    from voiceplane.store.db import create_engine_for, migrate, session_factory

    migrate(postgresql_database_url)
    engine: Engine = create_engine_for(postgresql_database_url)
    try:
        factory = session_factory(engine)
        account_id, call_id = _call(factory)
        with factory.begin() as session:
            ids = outbox.enqueue(
                session, account_id=account_id, call_id=call_id,
                callbacks=[_post("a", url=f"https://h{n}.test/") for n in range(4)], now=NOW,
            )  # fmt: skip
        held = threading.Event()
        done = threading.Event()
        first: list[str] = []

        def hold() -> None:
            with factory.begin() as session:
                first.extend(m.id for m in outbox.due(session, now=NOW, limit=2))
                held.set()
                done.wait(10)

        thread = threading.Thread(target=hold)
        thread.start()
        assert held.wait(10)
        with factory.begin() as session:
            second = [m.id for m in outbox.due(session, now=NOW, limit=10)]
        done.set()
        thread.join()
        assert sorted(first + second) == sorted(ids) and not set(first) & set(second)
    finally:
        engine.dispose()


def test_signing_secrets_rotate_with_a_grace_period(factory: sessionmaker[Session]) -> None:
    account_id, _call_id = _call(factory)
    grace = timedelta(hours=24)
    with factory.begin() as session:
        assert outbox.signing_secrets(session, account_ids=[account_id], now=NOW, grace=grace) == {}
        outbox.rotate_secret(session, account_id=account_id, secret="whsec_old", now=NOW)
        outbox.rotate_secret(
            session, account_id=account_id, secret="whsec_new", now=NOW + timedelta(hours=1)
        )
    with factory() as session:

        def at(moment: datetime) -> dict[int, list[str]]:
            return outbox.signing_secrets(
                session, account_ids=[account_id, 999], now=moment, grace=grace
            )

        assert at(NOW + timedelta(hours=2)) == {account_id: ["whsec_new", "whsec_old"]}
        assert at(NOW + timedelta(hours=26)) == {account_id: ["whsec_new"]}
    with pytest.raises(ValueError, match="empty"), factory.begin() as session:
        outbox.rotate_secret(session, account_id=account_id, secret="")


def test_enqueue_many_leases_only_callbacks_that_nothing_holds_up(
    factory: sessionmaker[Session],
) -> None:
    account_id, call_id = _call(factory)
    other = "https://other.test/status"
    until = NOW + timedelta(seconds=60)
    with factory.begin() as session:
        (first,) = outbox.enqueue_many(
            session, [(account_id, call_id, [_post("initiated"), _post("ringing")])],
            now=NOW, lease_until=until,
        )  # fmt: skip
    # The first to its URL is leased to the writer; the second waits for it (due, held up).
    assert [m.event for m in first.messages] == ["initiated", "ringing"]
    assert [m.event for m in first.leased] == ["initiated"]
    with factory.begin() as session:
        (second,) = outbox.enqueue_many(
            session,
            [(account_id, call_id, [_post("answered"), _post("completed", other, "status")])],
            now=NOW, lease_until=until,
        )  # fmt: skip
    # "answered" waits for the unfinished ones to the same URL; the other URL goes at once.
    assert [m.event for m in second.leased] == ["completed"]
    assert [m.seq for m in second.messages] == [3, 4]
    with factory.begin() as session:
        # Nothing leased is due to anybody else; the held-up rows are not due before them.
        due = outbox.due(session, now=NOW + timedelta(seconds=1))
        assert due == []
        outbox.record_results(
            session,
            [outbox.AttemptResult(first.leased[0].id, NOW, 204, None, 3, delivered_at=NOW)],
        )
        due = outbox.due(session, now=NOW + timedelta(seconds=1))
    assert [m.event for m in due] == ["ringing"]


def test_record_results_keeps_every_attempt_and_ends_each_row_its_own_way(
    factory: sessionmaker[Session],
) -> None:
    account_id, call_id = _call(factory)
    with factory.begin() as session:
        ids = outbox.enqueue(
            session, account_id=account_id, call_id=call_id,
            callbacks=[_post("a", URL + "/a"), _post("b", URL + "/b"), _post("c", URL + "/c")],
            now=NOW,
        )  # fmt: skip
    later = NOW + timedelta(seconds=30)
    results = [
        outbox.AttemptResult(ids[0], NOW, 204, None, 5, delivered_at=NOW),
        outbox.AttemptResult(ids[1], NOW, 500, "HTTP 500", 7, retry_at=later),
        outbox.AttemptResult(ids[2], NOW, None, "timed out", 9, given_up_at=NOW),
    ]
    with factory.begin() as session:
        outbox.record_results(session, results)
    with factory.begin() as session:  # a late duplicate does not undo an ending
        outbox.record_results(
            session, [outbox.AttemptResult(ids[0], later, 500, "HTTP 500", 1, retry_at=later)]
        )
    with factory() as session:
        reports = {report.message.id: report for report in outbox.attempts_for(session,
                                                                                call_id=call_id)}
    delivered, retried, given_up = (reports[ident] for ident in ids)
    assert delivered.delivered_at == NOW and delivered.last_error is None
    assert [a.http_status for a in delivered.attempts] == [204, 500]
    assert retried.next_attempt_at == later and retried.last_error == "HTTP 500"
    assert retried.delivered_at is None and retried.message.attempts == 1
    assert given_up.given_up_at == NOW and given_up.attempts[0].error == "timed out"


@pytest.mark.parametrize(
    "ends", [{}, {"delivered_at": NOW, "retry_at": NOW}], ids=["none", "two"]
)
def test_an_attempt_result_ends_exactly_one_way(ends: dict[str, datetime]) -> None:
    with pytest.raises(ValueError, match="exactly one"):
        outbox.AttemptResult("msg_x", NOW, 204, None, 1, **ends)


def test_timestamps_written_on_the_driver_are_stored_as_sqlalchemy_stores_them(
    factory: sessionmaker[Session],
) -> None:
    # enqueue_many and record_results bypass SQLAlchemy's parameter processing. On SQLite a
    # timestamp is text, compared as text: a whole second must be stored the way every
    # other query writes and compares it ("...:00.000000"), or equal times would differ.
    account_id, call_id = _call(factory)
    until = NOW + timedelta(seconds=60)
    with factory.begin() as session:
        (written,) = outbox.enqueue_many(
            session, [(account_id, call_id, [_post("a", URL + "/a"), _post("b", URL + "/b")])],
            now=NOW, lease_until=until,
        )  # fmt: skip
        delivered, retried = (message.id for message in written.messages)
        outbox.record_results(
            session,
            [outbox.AttemptResult(delivered, NOW, 204, None, 1, delivered_at=NOW),
             outbox.AttemptResult(retried, NOW, 500, "HTTP 500", 1, retry_at=until)],
        )  # fmt: skip
    with factory() as session:
        found = session.execute(
            select(Outbox.id).where(
                Outbox.created_at == NOW,
                or_(Outbox.delivered_at == NOW, Outbox.next_attempt_at == until),
            )
        ).scalars()
        assert sorted(found) == sorted([delivered, retried])
        attempts = session.scalars(select(OutboxAttempt.outbox_id).where(OutboxAttempt.at == NOW))
        assert sorted(attempts) == sorted([delivered, retried])
