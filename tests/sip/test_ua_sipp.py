"""Conformance of the user agent against SIPp on loopback, over UDP and TCP.

SIPp plays the operator (our UA calls it) and the caller (it calls our UA). Every test
checks two things: the outcome our UA reports (code, reason, Q.850 cause, who ended it),
and that SIPp's scenario saw every message it expected (``assert_ok``), plus the specific
messages on SIPp's side that prove the exchange (the ACK, the CANCEL, the Authorization).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from itertools import pairwise
from pathlib import Path

import pytest

from tests.support.sipp import SippClient, SippServer, Transport, free_port, requires_sipp
from voiceplane.sip.addressing import Address
from voiceplane.sip.digest import Credentials
from voiceplane.sip.outcome import EndCause, Party
from voiceplane.sip.timers import TimerValues
from voiceplane.sip.ua import InboundCall, OutboundCall, UserAgent

pytestmark = [pytest.mark.sipp, requires_sipp]

OFFER = (
    b"v=0\r\no=voiceplane 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    b"m=audio 40000 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"
    b"a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=sendrecv\r\n"
)

# A short T1 makes timer B (64*T1) fire after 3.2 s instead of 32 s.
FAST_TIMERS = TimerValues(t1=0.05, t2=0.4, t4=0.5)


@pytest.fixture(params=["udp", "tcp"])
def transport(request: pytest.FixtureRequest) -> Transport:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
async def ua(transport: Transport) -> AsyncIterator[UserAgent]:
    agent = UserAgent(listen=[(transport, "127.0.0.1", 0)])
    await agent.start()
    yield agent
    await agent.stop()


def call_sipp(
    ua: UserAgent, sipp: SippServer, transport: Transport, **kwargs: object
) -> OutboundCall:
    return ua.invite(
        to_uri=sipp.uri("15550001"),
        from_uri="sip:15550002@127.0.0.1",
        destination=Address("127.0.0.1", sipp.port, transport),
        sdp=OFFER,
        **kwargs,  # type: ignore[arg-type]
    )


# --- SIPp as the operator ----------------------------------------------------------------------


async def test_answer_then_our_bye(ua: UserAgent, transport: Transport, tmp_path: Path) -> None:
    async with SippServer("uas_answer", tmp_path, transport=transport) as sipp:
        call = call_sipp(ua, sipp, transport, ring_timeout=10)
        assert await call.answered()
        assert b"m=audio" in call.remote_sdp
        call.hangup()
        outcome = await call.ended()
        result = await sipp.wait(10)
    result.assert_ok(calls=1)
    assert (outcome.cause, outcome.ended_by, outcome.status, outcome.reason) == (
        EndCause.LOCAL_HANGUP, Party.LOCAL, 200, "OK",
    )  # fmt: skip
    assert outcome.answered_at is not None and outcome.ringing_at is not None
    assert outcome.created_at <= outcome.ringing_at <= outcome.answered_at <= outcome.ended_at
    assert [m.method for m in result.received() if m.is_request] == ["INVITE", "ACK", "BYE"]
    assert result.received("INVITE")[0].body == OFFER.decode()


async def test_answer_then_operator_bye(
    ua: UserAgent, transport: Transport, tmp_path: Path
) -> None:
    async with SippServer("uas_answer_then_bye", tmp_path, transport=transport,
                          duration_ms=100) as sipp:  # fmt: skip
        call = call_sipp(ua, sipp, transport)
        assert await call.answered()
        outcome = await call.ended()
        result = await sipp.wait(10)
    result.assert_ok(calls=1)
    assert (outcome.cause, outcome.ended_by, outcome.status) == (
        EndCause.REMOTE_HANGUP, Party.REMOTE, 200,
    )  # fmt: skip
    assert [m.status_code for m in result.received() if m.is_response] == [200]
    assert result.received(200)[0].cseq_method == "BYE"


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        (486, "Busy Here"),
        (600, "Busy Everywhere"),
        (603, "Decline"),
        (480, "Temporarily Unavailable"),
        (404, "Not Found"),
        (408, "Request Timeout"),
        (484, "Address Incomplete"),
        (500, "Server Internal Error"),
        (502, "Bad Gateway"),
        (503, "Service Unavailable"),
        (504, "Server Time-out"),
        (580, "Precondition Failure"),
    ],
)
async def test_final_response(
    ua: UserAgent, transport: Transport, tmp_path: Path, code: int, reason: str
) -> None:
    async with SippServer("uas_final", tmp_path, transport=transport,
                          values={"code": code, "reason": reason}) as sipp:  # fmt: skip
        call = call_sipp(ua, sipp, transport, ring_timeout=10)
        outcome = await call.ended()
        result = await sipp.wait(10)
    result.assert_ok(calls=1)
    assert (outcome.cause, outcome.ended_by, outcome.status, outcome.reason) == (
        EndCause.REJECTED, Party.REMOTE, code, reason,
    )  # fmt: skip
    assert outcome.q850_cause is None  # no Reason header came
    assert outcome.ringing_at is not None and outcome.answered_at is None
    assert [p.status for p in call.progress] == [180]
    ack = result.received("ACK")
    assert len(ack) == 1
    invite = result.received("INVITE")[0]
    # Section 17.1.1.3: the ACK of a non-2xx shares the INVITE's branch and CSeq number.
    assert ack[0].header("Via") == invite.header("Via")
    assert ack[0].cseq == (invite.cseq[0], "ACK")  # type: ignore[index]


@pytest.mark.parametrize(("code", "cause"), [(486, 17), (480, 17), (503, 34)])
async def test_reason_header_cause_is_kept(
    ua: UserAgent, transport: Transport, tmp_path: Path, code: int, cause: int
) -> None:
    values = {"code": code, "extra_headers": {"Reason": f'Q.850;cause={cause};text="x"'}}
    async with SippServer("uas_final", tmp_path, transport=transport, values=values) as sipp:
        outcome = await call_sipp(ua, sipp, transport).ended()
        result = await sipp.wait(10)
    result.assert_ok(calls=1)
    assert (outcome.status, outcome.q850_cause) == (code, cause)


async def test_no_response_at_all_ends_on_timer_b(transport: Transport, tmp_path: Path) -> None:
    ua = UserAgent(listen=[(transport, "127.0.0.1", 0)], timer_values=FAST_TIMERS)
    await ua.start()
    try:
        async with SippServer("uas_no_answer", tmp_path, transport=transport,
                              values={"hold_ms": 5000}) as sipp:  # fmt: skip
            outcome = await call_sipp(ua, sipp, transport, ring_timeout=30).ended()
            result = await sipp.wait(10)
    finally:
        await ua.stop()
    result.assert_ok(calls=1)
    assert (outcome.cause, outcome.status, outcome.reason) == (
        EndCause.NO_RESPONSE, 408, "Request Timeout",
    )  # fmt: skip
    assert outcome.ended_at - outcome.created_at == pytest.approx(64 * FAST_TIMERS.t1, abs=0.5)
    invites = result.received("INVITE")
    if transport == "udp":
        # Timer A: retransmissions at T1, 2T1, 4T1, ... (section 17.1.1.2), until timer B.
        assert len(invites) >= 6
        gaps = [(b.time - a.time).total_seconds() for a, b in pairwise(invites)]  # type: ignore[operator]
        assert gaps[0] == pytest.approx(FAST_TIMERS.t1, abs=0.04)
        assert gaps[3] == pytest.approx(8 * FAST_TIMERS.t1, abs=0.1)
    else:
        assert len(invites) == 1  # a reliable transport never retransmits
    assert not result.received("CANCEL")  # nothing provisional came: no CANCEL (section 9.1)


async def test_183_with_sdp_then_200(ua: UserAgent, transport: Transport, tmp_path: Path) -> None:
    async with SippServer("uas_183_then_200", tmp_path, transport=transport) as sipp:
        call = call_sipp(ua, sipp, transport)
        progress = await call.next_progress()
        assert progress is not None and progress.status == 183
        assert b"m=audio" in progress.sdp
        assert await call.answered()
        call.hangup()
        outcome = await call.ended()
        result = await sipp.wait(10)
    result.assert_ok(calls=1)
    assert (outcome.cause, outcome.status) == (EndCause.LOCAL_HANGUP, 200)
    assert result.received("ACK") and result.received("BYE")


async def test_watch_progress_replays_then_follows(
    ua: UserAgent, transport: Transport, tmp_path: Path
) -> None:
    async with SippServer("uas_183_then_200", tmp_path, transport=transport) as sipp:
        call = call_sipp(ua, sipp, transport)
        early: list[int] = []
        late: list[int] = []
        unwatch_late = call.watch_progress(lambda progress: late.append(progress.status))
        assert await call.next_progress() is not None  # the 183 came
        # A listener added after it is first handed the 183 already received.
        unwatch_early = call.watch_progress(lambda progress: early.append(progress.status))
        assert early == [183] and late == [183]
        unwatch_early()
        unwatch_late()
        assert await call.answered()
        call.hangup()
        await call.ended()
        result = await sipp.wait(10)
    result.assert_ok(calls=1)
    assert early == [183] and late == [183]


async def test_ring_timeout_cancels(ua: UserAgent, transport: Transport, tmp_path: Path) -> None:
    async with SippServer("uas_ring_forever", tmp_path, transport=transport) as sipp:
        outcome = await call_sipp(ua, sipp, transport, ring_timeout=0.5).ended()
        result = await sipp.wait(10)
    result.assert_ok(calls=1)
    assert (outcome.cause, outcome.ended_by, outcome.status, outcome.reason) == (
        EndCause.RING_TIMEOUT, Party.LOCAL, 487, "Request Terminated",
    )  # fmt: skip
    assert outcome.ended_at - outcome.created_at == pytest.approx(0.5, abs=0.25)
    cancel = result.received("CANCEL")
    invite = result.received("INVITE")[0]
    assert len(cancel) == 1
    # Section 9.1: the CANCEL copies the INVITE's Via, Call-ID, From, To and CSeq number.
    for name in ("Via", "Call-ID", "From", "To"):
        assert cancel[0].header(name) == invite.header(name)
    assert result.received("ACK")


async def test_cancel_while_ringing(ua: UserAgent, transport: Transport, tmp_path: Path) -> None:
    async with SippServer("uas_ring_forever", tmp_path, transport=transport) as sipp:
        call = call_sipp(ua, sipp, transport, ring_timeout=30)
        progress = await call.next_progress()
        assert progress is not None and progress.status == 180
        call.cancel()
        outcome = await call.ended()
        result = await sipp.wait(10)
    result.assert_ok(calls=1)
    assert (outcome.cause, outcome.ended_by, outcome.status) == (
        EndCause.CANCELLED, Party.LOCAL, 487,
    )  # fmt: skip
    assert len(result.received("CANCEL")) == 1


async def test_digest_challenge_answered(
    ua: UserAgent, transport: Transport, tmp_path: Path
) -> None:
    async with SippServer("uas_auth", tmp_path, transport=transport) as sipp:
        call = call_sipp(ua, sipp, transport, credentials=Credentials("sipp", "password"))
        assert await call.answered()
        call.hangup()
        outcome = await call.ended()
        result = await sipp.wait(10)
    result.assert_ok(calls=1)
    assert (outcome.cause, outcome.status) == (EndCause.LOCAL_HANGUP, 200)
    first, second = result.received("INVITE")
    assert not first.has_header("Authorization")
    authorization = second.header("Authorization") or ""
    assert authorization.startswith("Digest ") and 'username="sipp"' in authorization
    assert "qop=auth" in authorization
    assert second.cseq[0] == first.cseq[0] + 1  # type: ignore[index]
    assert second.header("Call-ID") == first.header("Call-ID")


async def test_wrong_password_fails_the_call(
    ua: UserAgent, transport: Transport, tmp_path: Path
) -> None:
    async with SippServer("uas_auth", tmp_path, transport=transport) as sipp:
        call = call_sipp(ua, sipp, transport, credentials=Credentials("sipp", "wrong"))
        outcome = await call.ended()
        result = await sipp.wait(10)
    # SIPp refuses the bad digest with 403 and counts its call as rejected.
    assert result.failed_calls == 1
    assert (outcome.cause, outcome.status) == (EndCause.REJECTED, 403)
    assert len(result.received("INVITE")) == 2


async def test_options_to_sipp(ua: UserAgent, transport: Transport, tmp_path: Path) -> None:
    async with SippServer("uas_options", tmp_path, transport=transport) as sipp:
        status = await ua.options(sipp.uri(), Address("127.0.0.1", sipp.port, transport))
        result = await sipp.wait(10)
    result.assert_ok(calls=1)
    assert status == 200


# --- SIPp as the caller ------------------------------------------------------------------------


async def answering_ua(transport: Transport, on_call: object) -> tuple[UserAgent, int]:
    port = free_port()
    agent = UserAgent(listen=[(transport, "127.0.0.1", port)], on_call=on_call)  # type: ignore[arg-type]
    await agent.start()
    return agent, port


async def test_incoming_call_caller_hangs_up(transport: Transport, tmp_path: Path) -> None:
    calls: list[InboundCall] = []

    def on_call(call: InboundCall) -> None:
        calls.append(call)
        call.ring()
        call.answer(OFFER)

    ua, port = await answering_ua(transport, on_call)
    try:
        result = await SippClient("uac_call_sipp_hangs_up", tmp_path, port, transport=transport,
                                  duration_ms=100).run(10)  # fmt: skip
        outcome = await calls[0].ended()
    finally:
        await ua.stop()
    result.assert_ok(calls=1)
    assert (outcome.cause, outcome.ended_by, outcome.status) == (
        EndCause.REMOTE_HANGUP, Party.REMOTE, 200,
    )  # fmt: skip
    assert outcome.answered_at is not None
    assert b"m=audio" in calls[0].remote_sdp
    ok = [m for m in result.received(200) if m.cseq_method == "INVITE"]
    assert ok and ok[0].body == OFFER.decode() and ok[0].header("Contact")
    assert [m.status_code for m in result.received() if m.is_response] == [180, 200, 200]


async def test_incoming_call_we_hang_up(transport: Transport, tmp_path: Path) -> None:
    calls: list[InboundCall] = []

    async def on_call(call: InboundCall) -> None:
        calls.append(call)
        call.answer(OFFER)
        assert await call.answered()  # our 2xx was ACKed
        call.hangup()

    ua, port = await answering_ua(transport, on_call)
    try:
        result = await SippClient("uac_call_remote_hangs_up", tmp_path, port,
                                  transport=transport).run(10)  # fmt: skip
        outcome = await calls[0].ended()
    finally:
        await ua.stop()
    result.assert_ok(calls=1)
    assert (outcome.cause, outcome.ended_by) == (EndCause.LOCAL_HANGUP, Party.LOCAL)
    assert [m.method for m in result.received() if m.is_request] == ["BYE"]


async def test_incoming_call_cancelled_before_answer(transport: Transport, tmp_path: Path) -> None:
    calls: list[InboundCall] = []

    def on_call(call: InboundCall) -> None:
        calls.append(call)
        call.ring()  # and never answer

    ua, port = await answering_ua(transport, on_call)
    try:
        result = await SippClient("uac_cancel", tmp_path, port, transport=transport).run(10)
        outcome = await calls[0].ended()
    finally:
        await ua.stop()
    result.assert_ok(calls=1)
    assert (outcome.cause, outcome.ended_by, outcome.status) == (
        EndCause.REMOTE_CANCEL, Party.REMOTE, 487,
    )  # fmt: skip
    statuses = [(m.status_code, m.cseq_method) for m in result.received() if m.is_response]
    assert (200, "CANCEL") in statuses and (487, "INVITE") in statuses


async def test_incoming_options(transport: Transport, tmp_path: Path) -> None:
    ua, port = await answering_ua(transport, None)
    try:
        result = await SippClient("uac_options", tmp_path, port, transport=transport).run(10)
    finally:
        await ua.stop()
    result.assert_ok(calls=1)
    ok = result.received(200)[0]
    assert "INVITE" in (ok.header("Allow") or "")


async def test_incoming_call_nobody_serves_gets_404(transport: Transport, tmp_path: Path) -> None:
    ua, port = await answering_ua(transport, None)  # no handler: nothing is served
    try:
        result = await SippClient("uac_expect_final", tmp_path, port, transport=transport,
                                  values={"code": 404}).run(10)  # fmt: skip
    finally:
        await ua.stop()
    result.assert_ok(calls=1)
    assert result.received(404)
