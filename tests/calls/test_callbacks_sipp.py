"""End to end: a call's progress events and final status reach the application's URLs.

The whole platform runs (``serve`` in the test's loop), SIPp plays the operator, and a real
HTTP receiver on loopback stands for the application. What arrives is checked against the
stored record, and each POST's signature with the ``standardwebhooks`` library.
"""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import select
from standardwebhooks.webhooks import Webhook

from tests.callbacks.receiver import Receiver
from tests.support.platform import running_platform
from tests.support.sipp import SippServer, requires_sipp
from voiceplane.store.models import Account, utcnow
from voiceplane.store.outbox import rotate_secret

pytestmark = [requires_sipp, pytest.mark.sipp]

BUSY = "+919876500486"
ANSWERS = "+919876500111"
HANGS_UP = "+919876500222"


async def test_progress_events_and_the_final_status_arrive_signed_and_in_order(
    tmp_path: Path,
) -> None:
    receiver = Receiver()
    await receiver.start()
    secret = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    try:
        async with SippServer("operator_by_number", tmp_path, calls=2, duration_ms=None) as sipp:
            host, port = sipp.address
            async with running_platform(tmp_path, trunk=f"{host}:{port}") as running:
                with running.platform.sessions.begin() as session:
                    account = session.scalars(select(Account)).one()
                    rotate_secret(session, account_id=account.id, secret=secret, now=utcnow())
                call_id = await running.click_to_call(
                    **{"from": ANSWERS, "to": HANGS_UP, "callback": receiver.url("/status"),
                       "dlrurl": receiver.url("/progress")}
                )  # fmt: skip
                record = await running.wait_for(call_id)
                got = await receiver.wait_for(5)  # 4 progress events and the final status
            result = await sipp.wait(10)
    finally:
        await receiver.stop()
    result.assert_ok(calls=2)
    assert record["status"] == "ANSWER"
    progress = [r for r in got if r.target == "/progress"]
    status = [r for r in got if r.target == "/status"]
    bodies = [json.loads(r.body) for r in progress]
    assert [b["event"] for b in bodies] == ["initiated", "ringing", "answered", "completed"]
    # One numbering across both URLs, in the order things happened (the final status is
    # written with the "completed" event, after it).
    sequences = [b["sequence"] for b in bodies] + [json.loads(status[0].body)["sequence"]]
    assert sequences == list(range(sequences[0], sequences[0] + 5))
    final = json.loads(status[0].body)
    assert final["event"] == "completed" and final["data"]["id"] == call_id
    assert final["data"] == record  # exactly the stored record
    for request in got:
        assert request.method == "POST"
        Webhook(secret).verify(request.body, request.headers)  # raises if it does not match
    assert len({r.headers["webhook-id"] for r in got}) == 5


async def test_a_legacy_callback_url_gets_a_get_with_the_values_in_it(tmp_path: Path) -> None:
    receiver = Receiver()
    await receiver.start()
    url = receiver.url("/legacy") + "?id={id}&status={status}&callto={callto}&custom={custom}"
    try:
        async with SippServer("operator_by_number", tmp_path, calls=1, duration_ms=None) as sipp:
            host, port = sipp.address
            async with running_platform(tmp_path, trunk=f"{host}:{port}") as running:
                call_id = await running.outbound(
                    to=BUSY, target="hi", callback=url, custom="order 42 & more"
                )
                record = await running.wait_for(call_id)
                got = await receiver.wait_for(1)
            await sipp.wait(10)
    finally:
        await receiver.stop()
    assert record["status"] == "BUSY"
    (request,) = got
    assert request.method == "GET"
    query = parse_qs(urlsplit(request.target).query)
    assert query["id"] == [call_id] and query["status"] == ["BUSY"]
    assert query["callto"] == [BUSY] and query["custom"] == ["order 42 & more"]
