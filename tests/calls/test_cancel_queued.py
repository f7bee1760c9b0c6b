"""End to end: a call cancelled while it waits in the queue ends CANCEL and reports it like
any other completion (its callback and its dlrurl's ``completed`` event).

The platform runs with its sandbox operator; the call is scheduled an hour ahead, so it is
still queued when the application cancels it, and the engine ends it without dialing.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tests.callbacks.receiver import Receiver
from tests.support.platform import running_platform


async def test_a_call_cancelled_in_the_queue_reports_cancel(tmp_path: Path) -> None:
    receiver = Receiver()
    await receiver.start()
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    try:
        async with running_platform(tmp_path, trunk=None) as running:
            call_id = await running.outbound(
                to="+919876500111", time=later, callback=receiver.url("/status"),
                dlrurl=receiver.url("/progress"),
            )  # fmt: skip
            assert (await running.record(call_id))["state"] == "queued"
            response = await running.cancel(call_id)
            assert response.status_code < 300, response.text
            record = await running.wait_for(call_id, timeout=10)
            got = await receiver.wait_for(2)
    finally:
        await receiver.stop()
    assert (record["status"], record["legs"]) == ("CANCEL", [])
    assert record["reason"] == "cancelled before dialing"
    by_target = {request.target: json.loads(request.body) for request in got}
    assert set(by_target) == {"/status", "/progress"}
    assert by_target["/progress"]["event"] == "completed"
    final = by_target["/status"]
    assert final["event"] == "completed" and final["data"] == record  # the stored record
