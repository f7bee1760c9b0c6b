"""SIPp calls the sandbox, over UDP and TCP: what the sandbox really sent, as SIPp logged it."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from tests.sandbox.conftest import OperatorFactory, wait_for_call
from tests.support.sipp import SippClient, Transport, requires_sipp
from voiceplane.sandbox.operator import HungUpBy
from voiceplane.sandbox.rules import Action
from voiceplane.sip.sdp import SessionDescription

pytestmark = [pytest.mark.sipp, requires_sipp]


@pytest.fixture(params=["udp", "tcp"])
def transport(request: pytest.FixtureRequest) -> Transport:
    return request.param  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("number", "code", "reason", "cause"),
    [
        ("15550486", 486, "Busy Here", 17),
        ("15550503", 503, "Service Unavailable", 41),
        ("+15550404", 404, "Not Found", 1),
    ],
)
async def test_rejections_ring_then_carry_the_code_and_a_reason_header(
    make_operator: OperatorFactory,
    transport: Transport,
    tmp_path: Path,
    number: str,
    code: int,
    reason: str,
    cause: int,
) -> None:
    operator = await make_operator(reject_after_ms=100)

    result = await SippClient("uac_expect_final", tmp_path, operator.address.port,
                              transport=transport, service=number,
                              values={"code": code}).run(10)  # fmt: skip

    result.assert_ok(calls=1)
    responses = [m for m in result.received() if m.is_response]
    assert [m.status_code for m in responses] == [180, code]
    final = responses[-1]
    assert final.reason == reason
    assert final.header_values("Reason") == [f"Q.850;cause={cause}"]
    rang = (final.time - responses[0].time).total_seconds()  # type: ignore[operator]
    assert rang == pytest.approx(0.1, abs=0.08)
    record = await wait_for_call(operator, number)
    assert (record.final_status, record.hung_up_by, record.decision.action) == (
        code, HungUpBy.SANDBOX, Action.REJECT,
    )  # fmt: skip
    assert record.invite_sdp.decode() == result.sent("INVITE")[0].body


async def test_000_rings_until_the_caller_cancels(
    make_operator: OperatorFactory, transport: Transport, tmp_path: Path
) -> None:
    # A normal number would be answered after 100 ms; SIPp waits 600 ms with the 180 in hand,
    # and any 200 in that time would fail its call as an unexpected message.
    operator = await make_operator(answer_after_ms=100)

    result = await SippClient("sandbox_cancel_after", tmp_path, operator.address.port,
                              transport=transport, service="+15550000",
                              values={"pause_ms": 600}).run(10)  # fmt: skip

    result.assert_ok(calls=1)
    statuses = [(m.status_code, m.cseq_method) for m in result.received() if m.is_response]
    assert statuses == [(180, "INVITE"), (200, "CANCEL"), (487, "INVITE")]
    record = await wait_for_call(operator, "+15550000")
    assert (record.decision.action, record.final_status, record.hung_up_by) == (
        Action.RING, 487, HungUpBy.CALLER,
    )  # fmt: skip


async def test_normal_number_is_answered_then_hung_up_after_hold_s(
    make_operator: OperatorFactory, transport: Transport, tmp_path: Path
) -> None:
    operator = await make_operator(answer_after_ms=100, hold_s=0.5)

    result = await SippClient("uac_call_remote_hangs_up", tmp_path, operator.address.port,
                              transport=transport, service="+15550100").run(10)  # fmt: skip

    result.assert_ok(calls=1)
    responses = [m for m in result.received() if m.is_response]
    assert [(m.status_code, m.cseq_method) for m in responses] == [(180, "INVITE"), (200, "INVITE")]
    ringing, ok = responses
    bye = result.received("BYE")
    assert len(bye) == 1
    answered_after = (ok.time - ringing.time).total_seconds()  # type: ignore[operator]
    held = (bye[0].time - ok.time).total_seconds()  # type: ignore[operator]
    assert answered_after == pytest.approx(0.1, abs=0.08)
    assert held == pytest.approx(0.5, abs=0.15)
    answer = SessionDescription.parse(ok.body)
    assert ok.header("Content-Type") == "application/sdp"
    assert answer.audio is not None
    # SIPp offered PCMU and telephone-event 101: the answer keeps both, in that order.
    assert [(c.payload_type, c.name) for c in answer.audio.codecs] == [
        (0, "PCMU"), (101, "telephone-event"),
    ]  # fmt: skip
    record = await wait_for_call(operator, "+15550100")
    assert answer.rtp_address() == ("127.0.0.1", record.media_port)
    assert (record.final_status, record.hung_up_by) == (200, HungUpBy.SANDBOX)
    assert record.from_uri.startswith("sip:sipp@127.0.0.1:")


async def test_reinvite_is_answered_on_the_same_media_port(
    make_operator: OperatorFactory, transport: Transport, tmp_path: Path
) -> None:
    operator = await make_operator(answer_after_ms=0, hold_s=0)

    result = await SippClient("sandbox_reinvite", tmp_path, operator.address.port,
                              transport=transport, service="+15550100",
                              duration_ms=100).run(10)  # fmt: skip

    result.assert_ok(calls=1)
    first, second = [m for m in result.received(200) if m.cseq_method == "INVITE"]
    assert (first.cseq, second.cseq) == ((1, "INVITE"), (2, "INVITE"))
    before, after = SessionDescription.parse(first.body), SessionDescription.parse(second.body)
    assert after.rtp_address() == before.rtp_address()
    assert after.session_id == before.session_id
    assert after.session_version == before.session_version + 1
    assert after.audio is not None
    assert [(c.payload_type, c.name) for c in after.audio.codecs] == [(8, "PCMA")]
    record = await wait_for_call(operator, "+15550100")
    reinvite = result.sent("INVITE")[1]
    assert [sdp.decode() for sdp in record.reinvite_sdps] == [reinvite.body]
    assert b"c=IN IP4 127.0.0.2" in record.reinvite_sdps[0]
    assert (record.final_status, record.hung_up_by) == (200, HungUpBy.CALLER)


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def test_many_concurrent_calls_are_carried_and_cleaned_up(
    make_operator: OperatorFactory, tmp_path: Path
) -> None:
    """600 calls, up to about 300 at once, each with its media socket; nothing leaks."""
    operator = await make_operator(answer_after_ms=0, hold_s=0)
    fds_before = open_fds()
    peak = 0

    async def watch() -> None:
        nonlocal peak
        while True:
            peak = max(peak, operator.active_calls)
            await asyncio.sleep(0.05)

    watcher = asyncio.create_task(watch())
    try:
        result = await SippClient("uac_call_sipp_hangs_up", tmp_path, operator.address.port,
                                  service="+15550100", calls=600, rate=300, limit=600,
                                  duration_ms=1000, trace_msg=False).run(60)  # fmt: skip
    finally:
        watcher.cancel()

    result.assert_ok(calls=600)
    assert peak >= 200
    calls = operator.calls_for("+15550100")
    assert len(calls) == 600
    assert all(c.final_status == 200 and c.hung_up_by is HungUpBy.CALLER for c in calls)
    assert len({c.media_port for c in calls}) > 200  # distinct sockets, in use together
    assert operator.active_calls == 0
    assert open_fds() <= fds_before
