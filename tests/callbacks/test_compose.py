"""What the engine writes to the outbox: legacy GET or signed-JSON POST, in the dialect."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tests.callbacks.test_legacy import RECORD
from voiceplane.callbacks import compose
from voiceplane.calls.status import Dialect, Status

AT = datetime(2026, 11, 28, 10, 0, 35, tzinfo=UTC)


def test_a_url_with_placeholders_gets_a_get_with_the_values() -> None:
    callback = compose.status_callback(RECORD, "https://crm.example/cb?id={id}&s={status}", at=AT)
    assert (callback.kind, callback.event, callback.method) == ("status", "completed", "GET")
    assert callback.url == f"https://crm.example/cb?id=VC123&s={Status.NOANSWER_LEG2.value}"
    assert callback.payload is None


def test_a_plain_url_gets_the_record_as_json_in_the_accounts_dialect() -> None:
    callback = compose.status_callback(
        RECORD, "https://crm.example/hook", at=AT, dialect=Dialect.KALEYRA_IO
    )
    assert (callback.method, callback.url) == ("POST", "https://crm.example/hook")
    payload = callback.payload
    assert payload is not None
    assert (payload["type"], payload["event"], payload["timestamp"]) == (
        "call.status",
        "completed",
        "2026-11-28T10:00:35.000Z",
    )
    data = payload["data"]
    assert isinstance(data, dict)
    assert data["status"] == "NOANSWER_CHANNEL2"
    assert [leg["status"] for leg in data["legs"]] == [
        Status.BUSY.value,
        Status.ANSWER.value,
        Status.NOANSWER.value,
    ]
    assert data["id"] == "VC123" and RECORD["status"] == Status.NOANSWER_LEG2.value  # a copy


def test_progress_events_are_posts_and_unknown_events_are_refused() -> None:
    callback = compose.progress_callback("ringing", RECORD, "https://crm.example/dlr", at=AT)
    assert (callback.kind, callback.event, callback.method) == ("progress", "ringing", "POST")
    assert callback.payload is not None and callback.payload["type"] == "call.progress"
    with pytest.raises(ValueError, match="unknown progress event"):
        compose.progress_callback("exploded", RECORD, "https://crm.example/dlr", at=AT)
