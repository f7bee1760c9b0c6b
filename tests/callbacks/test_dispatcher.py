"""The dispatcher against a real HTTP receiver on loopback, on SQLite and PostgreSQL:
signed deliveries in order, retries after 500s, timeouts and refused connections, the
per-destination limit, giving up, and resuming after a crash."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy.orm import Session, sessionmaker
from standardwebhooks.webhooks import Webhook

from tests.callbacks.receiver import Receiver, Request
from tests.support.sipp import free_port
from voiceplane.callbacks import compose
from voiceplane.callbacks.dispatcher import (
    Dispatcher,
    DispatcherSettings,
    backoff_s,
    destination,
)
from voiceplane.store import outbox
from voiceplane.store import repository as repo
from voiceplane.store.db import create_engine_for, migrate, session_factory
from voiceplane.store.models import utcnow
from voiceplane.store.outbox import NewCallback
from voiceplane.store.writer import StoreWriter

FAST = DispatcherSettings(
    connect_timeout_s=0.5, total_timeout_s=0.5, first_retry_s=0.05, max_retry_s=0.2,
    retry_for_s=60, poll_s=0.1, lease_s=2, drain_s=0.5,
)  # fmt: skip


@pytest.fixture
def sessions(database_url: str) -> Iterator[sessionmaker[Session]]:
    migrate(database_url)
    engine = create_engine_for(database_url)
    yield session_factory(engine)
    engine.dispose()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    server = Receiver()
    await server.start()
    yield server
    await server.stop()


def _calls(sessions: sessionmaker[Session], count: int) -> tuple[int, list[str]]:
    with sessions.begin() as session:
        account, _key = repo.create_account(session, name="acme")
        ids = [
            repo.create_call(session, account=account, service="outbound", to_number=f"+{n}").id
            for n in range(count)
        ]
        return account.id, ids


def _enqueue(
    sessions: sessionmaker[Session], account_id: int, call_id: str, *callbacks: NewCallback
) -> list[str]:
    with sessions.begin() as session:
        return outbox.enqueue(
            session, account_id=account_id, call_id=call_id, callbacks=callbacks
        )


def _post(url: str, event: str = "ringing") -> NewCallback:
    return NewCallback("progress", event, url, "POST", {"event": event})


def _reports(sessions: sessionmaker[Session], call_id: str) -> list[outbox.CallbackReport]:
    with sessions() as session:
        return outbox.attempts_for(session, call_id=call_id)


async def _until(condition: Callable[[], bool], timeout: float = 15) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.02)


async def test_signed_callbacks_arrive_in_sequence_order_per_call(
    sessions: sessionmaker[Session], receiver: Receiver
) -> None:
    account_id, call_ids = _calls(sessions, 3)
    now = utcnow()
    record: dict[str, object] = {
        "id": "X", "status": None, "legs": [], "to": "+1 2", "custom": "a&b"
    }
    legacy_url = receiver.url("/legacy?id={id}&to={to}&custom={custom}")
    for call_id in call_ids:
        _enqueue(
            sessions, account_id, call_id,
            *(compose.progress_callback(event, {**record, "id": call_id}, receiver.url("/dlr"),
                                        at=now)
              for event in compose.PROGRESS_EVENTS),
            compose.status_callback({**record, "id": call_id}, legacy_url, at=now),
            compose.status_callback({**record, "id": call_id}, receiver.url("/final"), at=now),
        )  # fmt: skip
    writer = StoreWriter(sessions)
    writer.start()
    dispatcher = Dispatcher(sessions, settings=FAST, writer=writer)
    await dispatcher.start()
    try:
        requests = await receiver.wait_for(len(call_ids) * 6)
    finally:
        await dispatcher.stop()
        await writer.stop()
    with sessions() as session:
        secrets = outbox.signing_secrets(
            session, account_ids=[account_id], now=utcnow(), grace=timedelta(0)
        )[account_id]
    posts = [request for request in requests if request.method == "POST"]
    gets = [request for request in requests if request.method == "GET"]
    assert len(gets) == len(call_ids) and len(posts) == 5 * len(call_ids)
    seen: dict[str, list[tuple[str, int]]] = {}
    for request in posts:
        Webhook(secrets[0]).verify(request.body, request.headers)
        payload = json.loads(request.body)
        seen.setdefault(payload["data"]["id"], []).append((request.target, payload["sequence"]))
    for call_id in call_ids:
        dlr = [seq for target, seq in seen[call_id] if target == "/dlr"]
        assert dlr == [1, 2, 3, 4]  # the progress events, in order
        assert [seq for target, seq in seen[call_id] if target == "/final"] == [6]
    for request in gets:
        query = parse_qs(urlsplit(request.target).query)
        assert query["to"] == ["+1 2"] and query["custom"] == ["a&b"]
        assert query["id"][0] in call_ids
        assert request.headers["webhook-id"].startswith("msg_")
    for call_id in call_ids:
        reports = _reports(sessions, call_id)
        assert all(report.delivered_at is not None for report in reports)
        assert all([a.http_status for a in report.attempts] == [200] for report in reports)
    assert dispatcher.delivered == 6 * len(call_ids) and dispatcher.retried == 0


async def test_500s_and_timeouts_are_retried_with_the_same_webhook_id(
    sessions: sessionmaker[Session], receiver: Receiver
) -> None:
    answers: Iterator[int | str] = iter([500, "slow", 503])

    async def respond(request: Request) -> int:
        answer = next(answers, 204)
        if answer == "slow":
            await asyncio.sleep(1.5)  # longer than total_timeout_s
            return 200
        return int(answer)

    receiver.respond = respond
    account_id, (call_id,) = _calls(sessions, 1)
    (ident,) = _enqueue(sessions, account_id, call_id, _post(receiver.url()))
    dispatcher = Dispatcher(sessions, settings=FAST)
    await dispatcher.start()
    try:
        await _until(lambda: _reports(sessions, call_id)[0].delivered_at is not None)
    finally:
        await dispatcher.stop()
    (report,) = _reports(sessions, call_id)
    assert [a.http_status for a in report.attempts] == [500, None, 503, 204]
    errors = [attempt.error for attempt in report.attempts]
    assert errors == ["HTTP 500", "timed out after 0.5 s", "HTTP 503", None]
    assert 400 <= report.attempts[1].duration_ms < 1400
    await receiver.wait_for(4)
    assert {request.headers["webhook-id"] for request in receiver.requests} == {ident}
    assert report.last_error is None and report.message.attempts == 4


async def test_a_receiver_down_for_a_while_gets_everything_when_back(
    sessions: sessionmaker[Session],
) -> None:
    port = free_port()
    account_id, call_ids = _calls(sessions, 5)
    url = f"http://127.0.0.1:{port}/hook"
    sent = {call_id: _enqueue(sessions, account_id, call_id, _post(url, "a"), _post(url, "b"))
            for call_id in call_ids}  # fmt: skip
    dispatcher = Dispatcher(sessions, settings=FAST)
    await dispatcher.start()
    receiver = Receiver()
    try:
        await _until(lambda: all(
            r.message.attempts >= 2 for c in call_ids for r in _reports(sessions, c)[:1]
        ))  # fmt: skip
        refused = _reports(sessions, call_ids[0])[0].attempts[0]
        assert refused.http_status is None and refused.error is not None
        assert "Connect" in refused.error
        await receiver.start(port)
        await receiver.wait_for(10)
        await _until(lambda: all(
            r.delivered_at is not None for c in call_ids for r in _reports(sessions, c)
        ))  # fmt: skip
    finally:
        await dispatcher.stop()
        await receiver.stop()
    # At least once: an attempt that timed out after the receiver took it is sent again (a
    # loaded machine can make that happen), with the same webhook-id. First arrivals count.
    got: dict[str, int] = {}
    for request in receiver.requests:
        got.setdefault(request.headers["webhook-id"], json.loads(request.body)["sequence"])
    for ids in sent.values():
        assert [seq for ident, seq in got.items() if ident in ids] == [1, 2]


async def test_the_per_destination_limit_holds_and_other_destinations_go_on(
    sessions: sessionmaker[Session], receiver: Receiver
) -> None:
    async def slow(request: Request) -> int:
        await asyncio.sleep(0.2)
        return 200

    receiver.respond = slow
    other = Receiver()
    await other.start()
    account_id, call_ids = _calls(sessions, 8)
    for call_id in call_ids:
        _enqueue(sessions, account_id, call_id, _post(receiver.url()), _post(other.url(), "x"))
    settings = DispatcherSettings(
        connect_timeout_s=0.5, total_timeout_s=1, first_retry_s=0.05, max_retry_s=0.2,
        poll_s=0.1, lease_s=5, per_destination=2,
    )  # fmt: skip
    dispatcher = Dispatcher(sessions, settings=settings)
    await dispatcher.start()
    try:
        await other.wait_for(8, timeout=5)
        assert len(receiver.requests) < 8  # the slow one did not hold the other back
        await receiver.wait_for(8)
    finally:
        await dispatcher.stop()
        await other.stop()
    assert receiver.max_concurrency == 2
    assert other.max_concurrency <= 2


async def test_a_callback_is_given_up_after_its_retry_period(
    sessions: sessionmaker[Session], receiver: Receiver
) -> None:
    async def fail(request: Request) -> int:
        return 500

    receiver.respond = fail
    account_id, (call_id,) = _calls(sessions, 1)
    _enqueue(sessions, account_id, call_id, _post(receiver.url()), _post(receiver.url(), "b"))
    settings = DispatcherSettings(
        connect_timeout_s=0.5, total_timeout_s=0.5, first_retry_s=0.05, max_retry_s=0.1,
        retry_for_s=0.4, poll_s=0.05, lease_s=2,
    )  # fmt: skip
    dispatcher = Dispatcher(sessions, settings=settings)
    await dispatcher.start()
    try:
        await _until(lambda: all(r.given_up_at is not None for r in _reports(sessions, call_id)))
    finally:
        await dispatcher.stop()
    first, second = _reports(sessions, call_id)
    assert first.last_error == "HTTP 500" and len(first.attempts) >= 2
    assert second.attempts and second.attempts[0].at >= first.given_up_at  # type: ignore[operator]
    assert dispatcher.given_up == 2 and dispatcher.delivered == 0


async def test_a_row_being_sent_when_the_process_died_is_sent_again_after_a_restart(
    sessions: sessionmaker[Session], receiver: Receiver
) -> None:
    account_id, (call_id,) = _calls(sessions, 1)
    ids = _enqueue(sessions, account_id, call_id, _post(receiver.url()), _post(receiver.url()))
    # The dead process had taken the first row (leased for 1 s) and never finished it.
    with sessions.begin() as session:
        taken = outbox.claim(
            session, now=utcnow(), limit=1, lease_until=utcnow() + timedelta(seconds=1)
        )
    assert [message.id for message in taken] == ids[:1]
    dispatcher = Dispatcher(sessions, settings=FAST)
    await dispatcher.start()
    try:
        await asyncio.sleep(0.5)
        assert receiver.requests == []  # the lease holds, and the second waits for the first
        requests = await receiver.wait_for(2)
    finally:
        await dispatcher.stop()
    assert [request.headers["webhook-id"] for request in requests] == ids


async def test_stop_gives_back_rows_it_had_not_sent(
    sessions: sessionmaker[Session], receiver: Receiver
) -> None:
    gate = asyncio.Event()

    async def stuck(request: Request) -> int:
        await gate.wait()
        return 200

    receiver.respond = stuck
    account_id, call_ids = _calls(sessions, 3)
    for call_id in call_ids:
        _enqueue(sessions, account_id, call_id, _post(receiver.url()))
    settings = DispatcherSettings(
        connect_timeout_s=0.5, total_timeout_s=5, poll_s=0.05, lease_s=60, per_destination=1,
        drain_s=0.1,
    )  # fmt: skip
    dispatcher = Dispatcher(sessions, settings=settings)
    await dispatcher.start()
    await _until(lambda: receiver.concurrency == 1 and dispatcher.in_flight == 3)
    await dispatcher.stop()
    gate.set()
    with sessions() as session:
        due = outbox.due(session, now=utcnow(), limit=10)
    assert len(due) == 3  # all due again now, not in 60 s


def test_backoff_is_full_jitter_under_a_doubling_ceiling() -> None:
    settings = DispatcherSettings(first_retry_s=1, max_retry_s=10)
    rng = random.Random(4)
    for failures, ceiling in [(1, 1), (2, 2), (3, 4), (4, 8), (5, 10), (200, 10)]:
        waits = [backoff_s(failures, settings, rng) for _ in range(200)]
        assert all(0 <= wait <= ceiling for wait in waits)
        assert max(waits) > ceiling * 0.8 and min(waits) < ceiling * 0.2
    with pytest.raises(ValueError, match="failures"):
        backoff_s(0, settings, rng)


def test_settings_and_destinations() -> None:
    with pytest.raises(ValueError, match="lease_s"):
        DispatcherSettings(total_timeout_s=30, lease_s=20)
    with pytest.raises(ValueError, match="per_destination"):
        DispatcherSettings(per_destination=0)
    assert destination("https://Example.com/a?b") == ("https", "example.com", 443)
    assert destination("http://h:8080/x") == ("http", "h", 8080)


async def test_callbacks_handed_over_are_sent_at_once_signed_and_the_held_up_ones_follow(
    sessions: sessionmaker[Session], receiver: Receiver
) -> None:
    account_id, call_ids = _calls(sessions, 2)
    # poll_s is long: only the handover (and a delivery's doorbell) can make these go soon.
    settings = DispatcherSettings(
        connect_timeout_s=0.5, total_timeout_s=0.5, first_retry_s=0.05, max_retry_s=0.2,
        poll_s=30, lease_s=2, drain_s=0.5,
    )  # fmt: skip
    writer = StoreWriter(sessions)
    writer.start()
    dispatcher = Dispatcher(sessions, settings=settings, writer=writer)
    await dispatcher.start()
    try:
        await asyncio.sleep(0.1)  # the dispatcher's first look at the (empty) outbox is over
        with sessions.begin() as session:
            written = outbox.enqueue_many(
                session,
                [(account_id, call_id, [_post(receiver.url("/dlr"), "initiated"),
                                        _post(receiver.url("/dlr"), "ringing")])
                 for call_id in call_ids],
                lease_until=utcnow() + timedelta(seconds=settings.lease_s),
            )  # fmt: skip
        leased = [message for entry in written for message in entry.leased]
        assert [message.event for message in leased] == ["initiated", "initiated"]
        dispatcher.send_now(leased)  # the account has no secret yet: it is made, then used
        requests = await receiver.wait_for(4, timeout=5)
    finally:
        await dispatcher.stop()
        await writer.stop()
    with sessions() as session:
        (secret,) = outbox.signing_secrets(
            session, account_ids=[account_id], now=utcnow(), grace=timedelta(0)
        )[account_id]
    for request in requests:
        Webhook(secret).verify(request.body, request.headers)
    for call_id in call_ids:
        events = [json.loads(r.body)["event"] for r in requests
                  if r.headers["webhook-id"] in {m.id for e in written for m in e.messages
                                                 if m.call_id == call_id}]  # fmt: skip
        assert events == ["initiated", "ringing"]
        assert all(report.delivered_at is not None for report in _reports(sessions, call_id))
