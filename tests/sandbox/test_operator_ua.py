"""Our own user agent calls the sandbox: outcomes, media that really arrives, re-INVITEs, stop.

These need no SIPp: both ends are our SIP stack, over real sockets on loopback.
"""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import AsyncIterator

import pytest

from tests.sandbox.conftest import FAST_TIMERS, OperatorFactory, wait_for_call
from voiceplane.config import SandboxSettings
from voiceplane.sandbox.operator import HungUpBy, SandboxOperator
from voiceplane.sandbox.rules import Action
from voiceplane.sip.outcome import EndCause, Party
from voiceplane.sip.sdp import SessionDescription
from voiceplane.sip.ua import OutboundCall, UserAgent

OFFER = (
    b"v=0\r\no=caller 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    b"m=audio 40000 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"
    b"a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=sendrecv\r\n"
)
# What third-party call control re-INVITEs a leg with: another party's address and codecs.
OTHER_PARTY = (
    b"v=0\r\no=other 9 1 IN IP4 127.0.0.2\r\ns=-\r\nc=IN IP4 127.0.0.2\r\nt=0 0\r\n"
    b"m=audio 41000 RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\na=sendrecv\r\n"
)
G729_ONLY = OFFER.replace(b"RTP/AVP 0 8 101", b"RTP/AVP 18").replace(
    b"a=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n", b"a=rtpmap:18 G729/8000\r\n"
)


@pytest.fixture(params=["udp", "tcp"])
async def ua(request: pytest.FixtureRequest) -> AsyncIterator[UserAgent]:
    agent = UserAgent(listen=[(request.param, "127.0.0.1", 0)], timer_values=FAST_TIMERS)
    await agent.start()
    yield agent
    await agent.stop()


def dial(ua: UserAgent, operator: SandboxOperator, number: str, **kwargs: object) -> OutboundCall:
    transport = next(iter(ua.addresses))
    kwargs.setdefault("sdp", OFFER)
    return ua.invite(
        to_uri=f"sip:{number}@127.0.0.1",
        from_uri="sip:+15557000@127.0.0.1",
        destination=operator.addresses[transport],
        **kwargs,  # type: ignore[arg-type]
    )


async def rung(call: OutboundCall) -> None:
    """Until the call has had a provisional response (it may have come already)."""
    if not call.progress:
        assert (await call.next_progress()) is not None


def rtp_packet(seq: int) -> bytes:
    # Version 2, PCMU, then sequence number, timestamp, SSRC and 160 bytes of silence.
    return struct.pack("!BBHII", 0x80, 0, seq, seq * 160, 0x1234) + b"\xff" * 160


async def test_answered_call_gets_media_that_counts_rtp(
    ua: UserAgent, make_operator: OperatorFactory
) -> None:
    operator = await make_operator(hold_s=0)
    call = dial(ua, operator, "+15550100")

    assert await call.answered()
    answer = SessionDescription.parse(call.remote_sdp)
    host, port = answer.rtp_address()  # type: ignore[misc]
    record = operator.calls_for("+15550100")[0]
    assert (host, port) == ("127.0.0.1", record.media_port)
    assert answer.audio is not None
    assert [c.name for c in answer.audio.codecs] == ["PCMU", "PCMA", "telephone-event"]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as media:
        for seq in range(25):
            media.sendto(rtp_packet(seq), (host, port))
        media.sendto(b"not rtp at all", (host, port))
        media.sendto(bytes([0x80, 200]) + b"\x00" * 26, (host, port))  # RTCP SR: not RTP
        record = await wait_for_call(operator, "+15550100", lambda c: c.rtp_packets >= 25)
    await asyncio.sleep(0.05)
    assert operator.calls_for("+15550100")[0].rtp_packets == 25

    call.hangup()
    outcome = await call.ended()
    record = await wait_for_call(operator, "+15550100")
    assert (outcome.cause, outcome.status) == (EndCause.LOCAL_HANGUP, 200)
    assert (record.final_status, record.final_reason, record.hung_up_by) == (
        200, "OK", HungUpBy.CALLER,
    )  # fmt: skip
    assert record.answered and record.invite_sdp == OFFER
    assert record.from_uri == "sip:+15557000@127.0.0.1"
    assert record.request_uri == "sip:+15550100@127.0.0.1"
    assert record.decision.action is Action.ANSWER
    assert operator.active_calls == 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", port))  # the media socket was closed with the call


async def test_reinvite_with_another_partys_sdp_keeps_the_media_port(
    ua: UserAgent, make_operator: OperatorFactory
) -> None:
    operator = await make_operator(hold_s=0, answer_after_ms=0)
    call = dial(ua, operator, "+15550101")
    assert await call.answered()
    first = SessionDescription.parse(call.remote_sdp)

    status, body = await call.reinvite(OTHER_PARTY)

    assert status == 200
    second = SessionDescription.parse(body)
    assert second.rtp_address() == first.rtp_address()
    assert second.session_id == first.session_id
    assert second.session_version == first.session_version + 1
    assert second.audio is not None and [c.name for c in second.audio.codecs] == ["PCMA"]
    status, body = await call.reinvite(OFFER)  # and back
    assert status == 200
    third = SessionDescription.parse(body)
    assert third.rtp_address() == first.rtp_address()
    assert third.session_version == first.session_version + 2
    status, _ = await call.reinvite(G729_ONLY)
    assert status == 488  # nothing in common: refused, the call goes on
    record = operator.calls_for("+15550101")[0]
    assert record.reinvite_sdps == (OTHER_PARTY, OFFER, G729_ONLY)
    assert not record.ended
    call.hangup()
    await call.ended()


async def test_sandbox_hangs_up_after_hold_s(
    ua: UserAgent, make_operator: OperatorFactory
) -> None:
    operator = await make_operator(answer_after_ms=150, hold_s=0.3)
    call = dial(ua, operator, "15550102")

    outcome = await asyncio.wait_for(call.ended(), 5)

    assert (outcome.cause, outcome.ended_by, outcome.status) == (
        EndCause.REMOTE_HANGUP, Party.REMOTE, 200,
    )  # fmt: skip
    assert outcome.answered_at is not None and outcome.ringing_at is not None
    assert outcome.answered_at - outcome.ringing_at == pytest.approx(0.15, abs=0.1)
    assert outcome.ended_at - outcome.answered_at == pytest.approx(0.3, abs=0.1)
    record = await wait_for_call(operator, "15550102")
    assert record.hung_up_by is HungUpBy.SANDBOX and record.final_status == 200


async def test_hold_s_zero_never_hangs_up(ua: UserAgent, make_operator: OperatorFactory) -> None:
    operator = await make_operator(answer_after_ms=0, hold_s=0)
    call = dial(ua, operator, "15550103")
    assert await call.answered()

    await asyncio.sleep(0.4)

    assert call.outcome is None
    assert operator.active_calls == 1
    call.hangup()
    await call.ended()


@pytest.mark.parametrize(
    ("number", "code", "reason", "cause"),
    [
        ("+15550486", 486, "Busy Here", 17),
        ("+15550503", 503, "Service Unavailable", 41),
        ("+15550404", 404, "Not Found", 1),
        ("+15550480", 480, "Temporarily Unavailable", 18),
    ],
)
async def test_rejection_rings_then_sends_the_code_and_its_cause(
    ua: UserAgent,
    make_operator: OperatorFactory,
    number: str,
    code: int,
    reason: str,
    cause: int,
) -> None:
    operator = await make_operator(reject_after_ms=150)
    call = dial(ua, operator, number)

    outcome = await call.ended()

    assert [p.status for p in call.progress] == [180]
    assert (outcome.cause, outcome.status, outcome.reason, outcome.q850_cause) == (
        EndCause.REJECTED, code, reason, cause,
    )  # fmt: skip
    assert outcome.ringing_at is not None
    assert outcome.ended_at - outcome.ringing_at == pytest.approx(0.15, abs=0.1)
    record = await wait_for_call(operator, number)
    assert (record.final_status, record.hung_up_by, record.media_port) == (
        code, HungUpBy.SANDBOX, None,
    )  # fmt: skip


async def test_reject_after_zero_ms_sends_no_ringing(
    ua: UserAgent, make_operator: OperatorFactory
) -> None:
    operator = await make_operator(reject_after_ms=0)
    call = dial(ua, operator, "+15550600")

    outcome = await call.ended()

    assert call.progress == [] and outcome.ringing_at is None
    assert (outcome.status, outcome.q850_cause) == (600, 17)


async def test_000_rings_until_the_caller_gives_up(
    ua: UserAgent, make_operator: OperatorFactory
) -> None:
    operator = await make_operator(answer_after_ms=50)
    call = dial(ua, operator, "+15550000", ring_timeout=0.4)

    outcome = await call.ended()

    assert (outcome.cause, outcome.status, outcome.answered_at) == (
        EndCause.RING_TIMEOUT, 487, None,
    )  # fmt: skip
    assert outcome.ended_at - outcome.created_at == pytest.approx(0.4, abs=0.15)
    record = await wait_for_call(operator, "+15550000")
    assert (record.decision.action, record.final_status, record.hung_up_by) == (
        Action.RING, 487, HungUpBy.CALLER,
    )  # fmt: skip


async def test_cancel_while_the_answer_is_pending_is_final(
    ua: UserAgent, make_operator: OperatorFactory
) -> None:
    operator = await make_operator(answer_after_ms=300)
    call = dial(ua, operator, "+15550104")
    await rung(call)

    call.cancel()
    outcome = await call.ended()
    await asyncio.sleep(0.4)  # past the answer the sandbox had planned

    assert (outcome.cause, outcome.status) == (EndCause.CANCELLED, 487)
    record = operator.calls_for("+15550104")[0]
    assert (record.final_status, record.hung_up_by) == (487, HungUpBy.CALLER)
    assert operator.active_calls == 0


async def test_rules_from_the_settings_come_first(
    ua: UserAgent, make_operator: OperatorFactory
) -> None:
    operator = await make_operator(
        rules=[
            {"match": "+15550100", "code": 480, "cause": 17, "after_ms": 0},
            {"suffix": "486", "action": "answer", "after_ms": 0, "hold_s": 0.1},
        ]
    )

    busy = await dial(ua, operator, "15550100").ended()
    answered = await dial(ua, operator, "+15550486").ended()

    assert (busy.status, busy.reason, busy.q850_cause) == (480, "Temporarily Unavailable", 17)
    assert (answered.status, answered.cause) == (200, EndCause.REMOTE_HANGUP)
    assert operator.calls_for("15550100")[0].decision.rule == 0
    assert operator.calls_for("+15550486")[0].decision.rule == 1


async def test_not_a_number_is_not_found(ua: UserAgent, make_operator: OperatorFactory) -> None:
    operator = await make_operator(reject_after_ms=0)

    outcome = await dial(ua, operator, "alice").ended()

    assert (outcome.status, outcome.q850_cause) == (404, 1)
    assert operator.calls()[0].number is None


async def test_offer_without_a_common_codec_is_refused_at_once(
    ua: UserAgent, make_operator: OperatorFactory
) -> None:
    operator = await make_operator()

    call = dial(ua, operator, "+15550105", sdp=G729_ONLY)
    outcome = await call.ended()

    assert call.progress == []
    assert (outcome.status, outcome.reason, outcome.q850_cause) == (
        488, "Not Acceptable Here", 58,
    )  # fmt: skip
    assert operator.active_calls == 0


async def test_invite_without_sdp_gets_an_offer(
    ua: UserAgent, make_operator: OperatorFactory
) -> None:
    operator = await make_operator(answer_after_ms=0, hold_s=0)
    call = dial(ua, operator, "+15550106", sdp=b"")

    assert await call.answered()

    offer = SessionDescription.parse(call.remote_sdp)
    assert offer.rtp_address() == ("127.0.0.1", operator.calls_for("+15550106")[0].media_port)
    assert offer.audio is not None
    assert [c.name for c in offer.audio.codecs] == ["PCMU", "PCMA", "telephone-event"]
    call.hangup()
    await call.ended()


async def test_stop_ends_every_call_it_holds(
    ua: UserAgent, make_operator: OperatorFactory
) -> None:
    operator = await make_operator(answer_after_ms=0, hold_s=0)
    answered = dial(ua, operator, "+15550107")
    ringing = dial(ua, operator, "+15550000")
    assert await answered.answered()
    await rung(ringing)

    await operator.stop()

    answered_outcome = await asyncio.wait_for(answered.ended(), 2)
    ringing_outcome = await asyncio.wait_for(ringing.ended(), 2)
    assert (answered_outcome.cause, answered_outcome.ended_by) == (
        EndCause.REMOTE_HANGUP, Party.REMOTE,
    )  # fmt: skip
    assert (ringing_outcome.status, ringing_outcome.q850_cause) == (503, 41)
    assert operator.active_calls == 0


async def test_records_are_bounded(ua: UserAgent) -> None:
    settings = SandboxSettings(reject_after_ms=0)
    settings = SandboxSettings.model_validate(
        {**settings.model_dump(), "listen": "127.0.0.1:0", "transports": list(ua.addresses)}
    )
    operator = SandboxOperator(settings, FAST_TIMERS, record_limit=2)
    await operator.start()
    try:
        for number in ("+15550404", "+15550486", "+15550503"):
            await dial(ua, operator, number).ended()
    finally:
        await operator.stop()

    assert [c.number for c in operator.calls()] == ["+15550486", "+15550503"]
    assert operator.calls_for("+15550404") == ()
    with pytest.raises(ValueError, match="not a phone number"):
        operator.calls_for("alice")
