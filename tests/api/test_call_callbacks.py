"""GET /v1/{sid}/voice/calls/{id}/callbacks: a call's callbacks and every delivery attempt,
read from outbox rows written with the store's own functions (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy.orm import Session, sessionmaker

from tests.api.conftest import Tenant, error_of
from voiceplane.store import outbox, repository
from voiceplane.store.outbox import NewCallback

T0 = datetime(2026, 11, 27, 12, 0, 0, tzinfo=UTC)
HOOK = "https://crm.example.test/hooks/voice"
LEGACY = "https://crm.example.test/status?id={id}&status={status}"
CALLBACK_KEYS = {
    "id", "kind", "event", "sequence", "url", "method", "created_at", "next_attempt_at",
    "delivered_at", "given_up_at", "last_error", "attempts",
}  # fmt: skip


def call_with_callbacks(sessions: sessionmaker[Session], tenant: Tenant) -> tuple[str, list[str]]:
    """A call with three callbacks: one delivered on its second attempt, one given up after
    a refused connection, one waiting for its first retry."""
    with sessions.begin() as session:
        account = repository.get_account(session, sid=tenant.sid)
        assert account is not None
        call = repository.create_call(
            session, account=account, service="outbound", to_number="+919876543210", now=T0
        )
        ids = outbox.enqueue(
            session,
            account_id=account.id,
            call_id=call.id,
            callbacks=[
                NewCallback("progress", "initiated", HOOK, "POST", {"event": "initiated"}),
                NewCallback("progress", "ringing", HOOK, "POST", {"event": "ringing"}),
                NewCallback("status", "completed", LEGACY.replace("{id}", call.id), "GET"),
            ],
            now=T0,
        )
        call_id = call.id
    first, second, third = ids
    with sessions.begin() as session:
        outbox.record_attempt(
            session, message_id=first, at=T0 + timedelta(seconds=1), http_status=500,
            error="HTTP 500", duration_ms=12,
        )  # fmt: skip
        outbox.schedule_retry(
            session, message_id=first, at=T0 + timedelta(seconds=3), error="HTTP 500"
        )
        outbox.record_attempt(
            session, message_id=first, at=T0 + timedelta(seconds=3), http_status=204,
            error=None, duration_ms=8,
        )  # fmt: skip
        outbox.mark_delivered(session, message_id=first, at=T0 + timedelta(seconds=3))
        outbox.record_attempt(
            session, message_id=second, at=T0 + timedelta(seconds=2), http_status=None,
            error="connection refused", duration_ms=1,
        )  # fmt: skip
        outbox.give_up(
            session, message_id=second, at=T0 + timedelta(hours=24), error="connection refused"
        )
        outbox.record_attempt(
            session, message_id=third, at=T0 + timedelta(seconds=4), http_status=None,
            error="timed out", duration_ms=5000,
        )  # fmt: skip
        outbox.schedule_retry(
            session, message_id=third, at=T0 + timedelta(seconds=64), error="timed out"
        )
    return call_id, ids


async def test_a_calls_callbacks_come_in_order_with_every_attempt(
    client: httpx.AsyncClient, acme: Tenant, sessions: sessionmaker[Session]
) -> None:
    call_id, ids = call_with_callbacks(sessions, acme)

    response = await client.get(acme.url(f"calls/{call_id}/callbacks"), headers=acme.headers)

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["call_id"] == call_id
    callbacks = body["callbacks"]
    assert [set(callback) for callback in callbacks] == [CALLBACK_KEYS] * 3
    assert [c["id"] for c in callbacks] == ids
    assert [(c["sequence"], c["kind"], c["event"], c["method"]) for c in callbacks] == [
        (1, "progress", "initiated", "POST"),
        (2, "progress", "ringing", "POST"),
        (3, "status", "completed", "GET"),
    ]
    delivered, given_up, waiting = callbacks
    assert delivered["url"] == HOOK
    assert waiting["url"] == LEGACY.replace("{id}", call_id)
    assert delivered["created_at"] == "2026-11-27T12:00:00.000Z"
    assert (delivered["delivered_at"], delivered["given_up_at"], delivered["last_error"]) == (
        "2026-11-27T12:00:03.000Z", None, None
    )  # fmt: skip
    assert delivered["next_attempt_at"] is None
    assert delivered["attempts"] == [
        {"at": "2026-11-27T12:00:01.000Z", "http_status": 500, "error": "HTTP 500",
         "duration_ms": 12},
        {"at": "2026-11-27T12:00:03.000Z", "http_status": 204, "error": None, "duration_ms": 8},
    ]  # fmt: skip
    assert (given_up["given_up_at"], given_up["last_error"]) == (
        "2026-11-28T12:00:00.000Z", "connection refused"
    )  # fmt: skip
    assert [a["http_status"] for a in given_up["attempts"]] == [None]
    assert (waiting["next_attempt_at"], waiting["delivered_at"], waiting["last_error"]) == (
        "2026-11-27T12:01:04.000Z", None, "timed out"
    )  # fmt: skip
    assert waiting["attempts"][0]["duration_ms"] == 5000


async def test_a_call_without_callbacks_has_an_empty_list(
    client: httpx.AsyncClient, acme: Tenant, sessions: sessionmaker[Session]
) -> None:
    with sessions.begin() as session:
        account = repository.get_account(session, sid=acme.sid)
        assert account is not None
        call_id = repository.create_call(session, account=account, service="outbound").id

    response = await client.get(acme.url(f"calls/{call_id}/callbacks"), headers=acme.headers)

    assert response.status_code == 200
    assert response.json() == {"call_id": call_id, "callbacks": []}


async def test_another_accounts_call_is_not_found_like_an_unknown_one(
    client: httpx.AsyncClient, acme: Tenant, globex: Tenant, sessions: sessionmaker[Session]
) -> None:
    call_id, _ = call_with_callbacks(sessions, acme)

    theirs = await client.get(globex.url(f"calls/{call_id}/callbacks"), headers=globex.headers)
    unknown = await client.get(acme.url("calls/VC0/callbacks"), headers=acme.headers)
    no_key = await client.get(acme.url(f"calls/{call_id}/callbacks"))

    assert (theirs.status_code, unknown.status_code) == (404, 404)
    assert error_of(theirs)["code"] == error_of(unknown)["code"] == "not_found"
    assert HOOK not in theirs.text and "msg_" not in theirs.text
    assert no_key.status_code == 401
