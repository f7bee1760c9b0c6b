"""Incoming calls end to end: SIPp as the caller rings a DID of the running platform.

Each routing status is asserted against what the caller received (SIPp's message log; the
prompt's RTP on the caller's side, by :class:`RtpReceiver`) and the stored record.
"""

from __future__ import annotations

import array
import asyncio
import json
import socket
import wave
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.callbacks.receiver import Receiver
from tests.calls.incoming_support import Caller, RtpReceiver, can_press_keys, gaps_ms, percentile
from tests.support.platform import Running, running_platform
from tests.support.rtpengine import RtpengineDaemon, require_rtpengine
from tests.support.sipp import SippClient, SippResult, SippServer, free_port, requires_sipp
from voiceplane.calls.incoming import IncomingCalls
from voiceplane.policy import blocklist
from voiceplane.store import flows as flow_store
from voiceplane.store import repository as repo
from voiceplane.store.models import Call

pytestmark = [requires_sipp, pytest.mark.sipp]

DID = "+918047199999"
CALLER = "+919812345678"
needs_keys = pytest.mark.skipif(not can_press_keys(), reason="play_pcap_audio needs root")


async def setup_did(
    running: Running,
    *,
    flow: dict[str, Any] | None = None,
    hours: dict[str, Any] | None = None,
    missed_call: int | None = None,
    channels: int = 10,
    blocked: tuple[str, ...] = (),
    publish: bool = True,
    callback: str | None = None,
) -> None:
    with running.platform.sessions.begin() as session:
        account = repo.get_account(session, sid=running.sid)
        assert account is not None
        number = repo.add_number(session, account=account, e164=DID, kind="did")
        number.channels = channels
        row = None
        if flow is not None:
            row, _version = flow_store.create_flow(
                session, account=account, name="test", document=json.dumps(flow)
            )
            if publish:
                flow_store.publish(session, flow=row, version=1)
        flow_store.set_routing(
            session, number=number, flow=row,
            hours=json.dumps(hours) if hours is not None else None, missed_call=missed_call,
            callback=callback,
        )  # fmt: skip
        if blocked:
            blocklist.change(session, account.id, add=blocked)


async def incoming_record(running: Running, *, timeout: float = 15) -> dict[str, Any]:
    """The one incoming call's record, once completed."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        with running.platform.sessions.begin() as session:
            call = session.query(Call).filter(Call.service == "incoming").one_or_none()
            record = repo.call_record(call) if call is not None else None
        if record is not None and record["state"] == "completed":
            return record
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"no completed incoming call: {record}")
        await asyncio.sleep(0.05)


def sip_port(running: Running) -> int:
    return running.config.sip.listen.port


async def call_in(
    tmp_path: Path, running: Running, caller: Caller, *, timeout: float = 30
) -> SippResult:
    scenario = caller.write(tmp_path / "scenario")
    client = SippClient(
        scenario, tmp_path / "sipp", sip_port(running), duration_ms=None,
        extra_args=["-mp", str(free_port())],
    )  # fmt: skip
    return await client.run(timeout)


@pytest.fixture
async def receiver() -> AsyncIterator[RtpReceiver]:
    rtp = await RtpReceiver.open()
    yield rtp
    rtp.close()


@pytest.fixture
async def platform(tmp_path: Path) -> AsyncIterator[Running]:
    async with running_platform(tmp_path, trunk=None) as running:
        yield running


@pytest.fixture(params=["embedded", "rtpengine"])
def media_env(request: pytest.FixtureRequest) -> Iterator[dict[str, str]]:
    """The media backend the IVR tests run on: in-process RTP, or a real rtpengine."""
    if request.param == "embedded":
        yield {}
        return
    require_rtpengine()
    with RtpengineDaemon() as rtpengine:
        ng, dtmf_log = rtpengine.ng, rtpengine.dtmf_log
        yield {
            "VOICEPLANE_MEDIA_BACKEND": "rtpengine",
            "VOICEPLANE_MEDIA_RTPENGINE_NG": f"{ng[0]}:{ng[1]}",
            "VOICEPLANE_MEDIA_RTPENGINE_DTMF_LOG": f"{dtmf_log[0]}:{dtmf_log[1]}",
        }


@pytest.fixture
async def ivr_platform(tmp_path: Path, media_env: dict[str, str]) -> AsyncIterator[Running]:
    async with running_platform(tmp_path, trunk=None, extra=media_env) as running:
        yield running


# --- refusals ------------------------------------------------------------------------------


async def test_unknown_number_is_refused_404_without_a_record(
    tmp_path: Path, platform: Running, receiver: RtpReceiver
) -> None:
    caller = Caller(CALLER, "+918047100001", receiver.port).refused(404)
    result = await call_in(tmp_path, platform, caller)
    result.assert_ok(calls=1)
    with platform.platform.sessions.begin() as session:
        assert session.query(Call).filter(Call.service == "incoming").count() == 0


async def test_blocked_caller_is_declined_603(
    tmp_path: Path, platform: Running, receiver: RtpReceiver
) -> None:
    await setup_did(platform, flow=SAY_AND_HANG_UP, blocked=(CALLER,))
    result = await call_in(tmp_path, platform, Caller(CALLER, DID, receiver.port).refused(603))
    result.assert_ok(calls=1)
    assert result.received(603)[0].header("Reason") == "Q.850;cause=21"
    record = await incoming_record(platform)
    assert (record["status"], record["rule"]) == ("BLOCKED", "blocklist")
    assert (record["from"], record["to"], record["service"]) == (CALLER, DID, "incoming")
    (leg1,) = record["legs"]
    assert (leg1["leg"], leg1["number"], leg1["sip_code"]) == (1, CALLER, 603)
    assert receiver.arrivals == []


async def test_no_free_channel_is_max_use_486(
    tmp_path: Path, platform: Running, receiver: RtpReceiver
) -> None:
    await setup_did(platform, flow=SAY_AND_HANG_UP, channels=0)
    result = await call_in(tmp_path, platform, Caller(CALLER, DID, receiver.port).refused(486))
    result.assert_ok(calls=1)
    record = await incoming_record(platform)
    assert (record["status"], record["rule"]) == ("MAX-USE", "capacity.bridge")
    assert record["legs"][0]["sip_code"] == 486


def _today_holiday() -> dict[str, Any]:
    today = datetime.now(UTC).date().isoformat()
    return {"timezone": "UTC", "holidays": [{"date": today, "name": "Test day"}]}


async def test_off_hour_on_a_calendar_holiday_without_a_prompt_is_480(
    tmp_path: Path, platform: Running, receiver: RtpReceiver
) -> None:
    # Open around the clock on working days; the platform's clock says Christmas Day, a
    # holiday of the holidays library's US calendar.
    incoming = next(s for s in platform.platform.services if isinstance(s, IncomingCalls))
    incoming.clock = lambda: datetime(2026, 12, 25, 10, 0, tzinfo=UTC)
    hours = {"timezone": "America/New_York", "country": "US"}
    await setup_did(platform, flow=SAY_AND_HANG_UP, hours=hours)
    result = await call_in(tmp_path, platform, Caller(CALLER, DID, receiver.port).refused(480))
    result.assert_ok(calls=1)
    record = await incoming_record(platform)
    assert (record["status"], record["rule"]) == ("OFF-HOUR", "hours")
    assert record["reason"] == "holiday: Christmas Day"
    assert receiver.arrivals == []


async def test_off_hour_on_a_listed_holiday_plays_the_prompt_then_hangs_up(
    tmp_path: Path, ivr_platform: Running, receiver: RtpReceiver
) -> None:
    platform = ivr_platform
    hours = {**_today_holiday(), "off_hour_prompt": {"say": "We are closed today."}}
    await setup_did(platform, flow=SAY_AND_HANG_UP, hours=hours)
    caller = Caller(CALLER, DID, receiver.port).answered().hung_up_on()
    result = await call_in(tmp_path, platform, caller)
    result.assert_ok(calls=1)
    record = await incoming_record(platform)
    assert (record["status"], record["rule"]) == ("OFF-HOUR", "hours")
    audio = receiver.audio()
    assert len(audio) > 40  # the prompt lasts well over 0.8 s
    assert record["legs"][0]["hangup_by"] == "platform"
    assert record["reason"] == "holiday: Test day"


async def test_missed_call_number_rings_then_refuses_records_and_calls_back(
    tmp_path: Path, platform: Running, receiver: RtpReceiver
) -> None:
    app = Receiver()
    await app.start()
    try:
        await setup_did(
            platform, flow=SAY_AND_HANG_UP, missed_call=1, callback=app.url("/incoming")
        )
        caller = Caller(CALLER, DID, receiver.port)
        caller.provisional(ringing=True)
        caller.steps.append('  <recv response="480"/>\n')
        caller.steps.append(caller._ack_non_2xx())
        result = await call_in(tmp_path, platform, caller)
        record = await incoming_record(platform)
        (hook,) = await app.wait_for(1)
    finally:
        await app.stop()
    result.assert_ok(calls=1)
    ringing, refused = result.received(180)[0], result.received(480)[0]
    assert ringing.time is not None and refused.time is not None
    assert (refused.time - ringing.time).total_seconds() >= 0.9
    assert (record["status"], record["rule"], record["from"]) == ("MISWIG", "missed_call", CALLER)
    # The number's callback gets the record, as an outbound call's callback does.
    sent = json.loads(hook.body)
    assert hook.target == "/incoming" and sent["event"] == "completed"
    assert sent["data"] == record


async def test_unpublished_flow_is_refused_480(
    tmp_path: Path, platform: Running, receiver: RtpReceiver
) -> None:
    await setup_did(platform, flow=SAY_AND_HANG_UP, publish=False)
    result = await call_in(tmp_path, platform, Caller(CALLER, DID, receiver.port).refused(480))
    result.assert_ok(calls=1)
    record = await incoming_record(platform)
    assert (record["status"], record["reason"]) == ("FAILED", "flow not published")
    response = await platform.client.get(
        f"/v1/{platform.sid}/voice/calls/{record['id']}/recording", headers=platform.headers
    )
    assert response.status_code == 404 and "no recording" in response.text


# --- flows ---------------------------------------------------------------------------------

SAY_AND_HANG_UP: dict[str, Any] = {
    "name": "hello",
    "start": "hello",
    "steps": {
        "hello": {"kind": "say", "text": "Hello and welcome.", "next": "bye"},
        "bye": {"kind": "hangup"},
    },
}


async def test_flow_answers_plays_the_prompt_and_hangs_up(
    tmp_path: Path, ivr_platform: Running, receiver: RtpReceiver
) -> None:
    platform = ivr_platform
    await setup_did(platform, flow=SAY_AND_HANG_UP)
    caller = Caller(CALLER, DID, receiver.port).answered().hung_up_on()
    result = await call_in(tmp_path, platform, caller)
    result.assert_ok(calls=1)
    record = await incoming_record(platform)
    assert record["status"] == "IVR-ANSWER"
    assert record["legs"][0]["status"] == "ANSWER"
    audio = receiver.audio()
    assert len(audio) > 25
    gaps = gaps_ms(audio)
    # Paced 20 ms frames, seen at the caller: the median on the dot, the tail bounded (loose
    # enough for a test machine shared with other work; bench/ivr_media.py measures it).
    assert 18 <= percentile(gaps, 50) <= 22
    assert percentile(gaps, 95) < 40


WALK: dict[str, Any] = {
    "name": "walk",
    "start": "menu",
    "steps": {
        "menu": {
            "kind": "menu", "prompt": {"say": "Menu."}, "timeout": 4, "retries": 0,
            "branches": {"1": "order", "2": "bye"}, "invalid": "bye",
        },
        "order": {
            "kind": "gather", "prompt": {"say": "Order."}, "max_digits": 4, "finish_key": "#",
            "timeout": 4, "next": "voicemail",
        },
        "voicemail": {"kind": "record", "max_length": 3, "beep": True, "next": "bye"},
        "bye": {"kind": "hangup"},
    },
}  # fmt: skip


@needs_keys
async def test_caller_walks_menu_gather_and_voicemail_with_rfc4733_keys(
    tmp_path: Path, ivr_platform: Running, receiver: RtpReceiver
) -> None:
    platform = ivr_platform
    await setup_did(platform, flow=WALK)
    caller = Caller(CALLER, DID, receiver.port).answered().pause(300).press("1")
    caller.press("42#").pause(500).speak().hung_up_on()
    result = await call_in(tmp_path, platform, caller)
    result.assert_ok(calls=1)
    record = await incoming_record(platform)
    assert record["status"] == "IVR-ANSWER"
    assert record["keypress"] == "1,42"
    recording = Path(record["recording"])
    assert recording.is_file() and recording.name == "voicemail.wav"
    with wave.open(str(recording), "rb") as wav:
        assert wav.getframerate() == 8000
        seconds = wav.getnframes() / 8000
        samples = array.array("h", wav.readframes(wav.getnframes()))
    assert 2.5 <= seconds <= 3.5
    assert max(abs(sample) for sample in samples) > 1000  # the caller's voice, not silence
    # The API serves it.
    response = await platform.client.get(
        f"/v1/{platform.sid}/voice/calls/{record['id']}/recording", headers=platform.headers
    )
    assert response.status_code == 200 and response.headers["content-type"] == "audio/wav"
    assert response.content == recording.read_bytes()
    # The prompts reached the caller, paced at 20 ms. rtpengine latches onto where RTP comes
    # from (symmetric RTP): once SIPp sends its first key from its own port, the prompts go
    # there and no longer to the receiver, so only those before the first key are counted.
    audio = receiver.audio()
    assert len(audio) > (50 if platform.config.media.backend == "embedded" else 4)
    assert 18 <= percentile(gaps_ms(audio), 50) <= 22


async def test_caller_hanging_up_before_the_flow_answers_is_ivr(
    tmp_path: Path, platform: Running, receiver: RtpReceiver
) -> None:
    # The flow first asks a webhook that never answers: the caller gives up meanwhile.
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(1)
    url = f"http://127.0.0.1:{silent.getsockname()[1]}/ivr"
    flow = {
        "name": "slow", "start": "ask",
        "steps": {
            "ask": {"kind": "webhook", "url": url, "timeout": 1, "next": "hello"},
            "hello": {"kind": "say", "text": "Hello.", "next": "bye"},
            "bye": {"kind": "hangup"},
        },
    }  # fmt: skip
    try:
        await setup_did(platform, flow=flow)
        caller = Caller(CALLER, DID, receiver.port).provisional(ringing=True).pause(200).cancel()
        result = await call_in(tmp_path, platform, caller)
        result.assert_ok(calls=1)
        record = await incoming_record(platform)
    finally:
        silent.close()
    assert record["status"] == "IVR"
    (leg1,) = record["legs"]
    assert (leg1["status"], leg1["sip_code"], leg1["hangup_by"]) == ("CANCEL", 487, "caller")
    assert record["answer_time"] is None and receiver.arrivals == []


# --- dial ----------------------------------------------------------------------------------

AGENT_BUSY = "+919876500486"
AGENT_RINGS = "+919876500000"
AGENT_ANSWERS = "+919876500111"


def dial_flow(agent: str) -> dict[str, Any]:
    return {
        "name": "dial", "start": "agent",
        "steps": {
            "agent": {"kind": "dial", "numbers": [agent], "ring_timeout": 5,
                      "answered": "bye", "not_answered": "sorry"},
            "sorry": {"kind": "say", "text": "Nobody.", "next": "bye"},
            "bye": {"kind": "hangup"},
        },
    }  # fmt: skip


@pytest.mark.parametrize(
    ("agent", "status", "code"), [(AGENT_BUSY, "BUSY", 486), (AGENT_RINGS, "NOANSWER", 487)]
)
async def test_dial_step_to_an_agent_who_does_not_take_the_call(
    tmp_path: Path, receiver: RtpReceiver, agent: str, status: str, code: int
) -> None:
    async with SippServer("operator_by_number", tmp_path / "operator", calls=1,
                          duration_ms=None) as operator:  # fmt: skip
        host, port = operator.address
        async with running_platform(tmp_path, trunk=f"{host}:{port}") as running:
            await setup_did(running, flow=dial_flow(agent))
            caller = Caller(CALLER, DID, receiver.port).answered().hung_up_on()
            result = await call_in(tmp_path, running, caller)
            record = await incoming_record(running)
        operated = await operator.wait(10)
    result.assert_ok(calls=1)
    operated.assert_ok(calls=1)
    assert record["status"] == "IVR-ANSWER"
    leg1, leg2 = record["legs"]
    assert (leg1["leg"], leg1["number"], leg1["status"]) == (1, CALLER, "ANSWER")
    assert (leg2["leg"], leg2["number"], leg2["status"], leg2["sip_code"]) == (
        2, agent, status, code,
    )  # fmt: skip
    invite = operated.received("INVITE")[0]
    assert DID in (invite.header("From") or "")  # the DID is the agent's caller ID
    assert len(receiver.audio()) > 20  # "Nobody." was played to the caller


async def test_dial_step_to_an_agent_who_answers_bridges_the_caller(
    tmp_path: Path, receiver: RtpReceiver
) -> None:
    async with SippServer("operator_by_number", tmp_path / "operator", calls=1,
                          duration_ms=None) as operator:  # fmt: skip
        host, port = operator.address
        async with running_platform(tmp_path, trunk=f"{host}:{port}") as running:
            await setup_did(running, flow=dial_flow(AGENT_ANSWERS))
            caller = Caller(CALLER, DID, receiver.port).answered().reinvited()
            caller.pause(1000).hang_up()
            result = await call_in(tmp_path, running, caller)
            record = await incoming_record(running)
        operated = await operator.wait(10)
    result.assert_ok(calls=1)
    operated.assert_ok(calls=1)
    assert record["status"] == "IVR-ANSWER"
    leg1, leg2 = record["legs"]
    assert (leg1["status"], leg1["hangup_by"]) == ("ANSWER", "caller")
    assert (leg2["number"], leg2["status"], leg2["sip_code"], leg2["hangup_by"]) == (
        AGENT_ANSWERS, "ANSWER", 200, "other-leg",
    )  # fmt: skip
    # 3PCC: the agent was offered the caller's media, and the caller re-INVITEd with the
    # agent's, so the two talk directly.
    invite = operated.received("INVITE")[0]
    assert f"m=audio {receiver.port} " in invite.body
    reinvite = [m for m in result.received("INVITE")]
    assert len(reinvite) == 1
    assert [m.method for m in operated.received() if m.is_request][-1] == "BYE"


async def test_an_incoming_call_holds_a_channel_of_its_did_while_it_is_up(
    tmp_path: Path, platform: Running, receiver: RtpReceiver
) -> None:
    flow = {
        "name": "hold", "start": "wait",
        "steps": {
            "wait": {"kind": "gather", "prompt": {"say": "Hi."}, "timeout": 5, "next": "bye"},
            "bye": {"kind": "hangup"},
        },
    }  # fmt: skip
    await setup_did(platform, flow=flow, channels=1)
    first = Caller(CALLER, DID, receiver.port).answered().pause(1500).hang_up()
    second = Caller("+919812345679", DID, receiver.port).refused(486)
    in_flow = asyncio.create_task(call_in(tmp_path / "first", platform, first))
    await asyncio.sleep(0.7)
    assert DID in platform.platform.engine.channels.full()[0]
    refused = await call_in(tmp_path / "second", platform, second)
    answered = await in_flow
    answered.assert_ok(calls=1)
    refused.assert_ok(calls=1)
    deadline = asyncio.get_running_loop().time() + 10
    while True:
        with platform.platform.sessions.begin() as session:
            calls = session.query(Call).filter(Call.service == "incoming").all()
            statuses = sorted((call.from_number or "", call.status or "") for call in calls)
        if all(status for _caller, status in statuses) or \
                asyncio.get_running_loop().time() > deadline:  # fmt: skip
            break
        await asyncio.sleep(0.05)
    assert statuses == [(CALLER, "IVR-ANSWER"), ("+919812345679", "MAX-USE")]
    # Released at the end: once the call's task finishes, a moment after its record is stored.
    deadline = asyncio.get_running_loop().time() + 5
    while DID in platform.platform.engine.channels.full()[0]:
        assert asyncio.get_running_loop().time() < deadline, "the channel was never released"
        await asyncio.sleep(0.05)


AGENT_HANGS_UP = "+919876500222"


async def test_after_the_agent_hangs_up_the_caller_is_back_in_the_flow(
    tmp_path: Path, receiver: RtpReceiver
) -> None:
    # Two agents in parallel: one busy, one answers and hangs up after a second. The caller
    # is re-INVITEd to the agent, then back to the platform, and hears the goodbye.
    flow = {
        "name": "parallel", "start": "agents",
        "steps": {
            "agents": {"kind": "dial", "numbers": [AGENT_BUSY, AGENT_HANGS_UP],
                       "mode": "parallel", "ring_timeout": 5, "answered": "goodbye",
                       "not_answered": "bye"},
            "goodbye": {"kind": "say", "text": "Goodbye.", "next": "bye"},
            "bye": {"kind": "hangup"},
        },
    }  # fmt: skip
    async with SippServer("operator_by_number", tmp_path / "operator", calls=2,
                          duration_ms=None) as operator:  # fmt: skip
        host, port = operator.address
        async with running_platform(tmp_path, trunk=f"{host}:{port}") as running:
            await setup_did(running, flow=flow)
            caller = Caller(CALLER, DID, receiver.port).answered().reinvited().reinvited()
            caller.hung_up_on()
            result = await call_in(tmp_path, running, caller)
            record = await incoming_record(running)
        operated = await operator.wait(10)
    result.assert_ok(calls=1)
    operated.assert_ok(calls=2)
    assert record["status"] == "IVR-ANSWER"
    leg1, *agents = record["legs"]
    assert (leg1["status"], leg1["hangup_by"]) == ("ANSWER", "platform")
    by_number = {leg["number"]: leg for leg in agents}
    assert {leg["leg"] for leg in agents} == {2}  # rung together, as one dial
    assert (by_number[AGENT_BUSY]["status"], by_number[AGENT_BUSY]["sip_code"]) == ("BUSY", 486)
    assert (by_number[AGENT_HANGS_UP]["status"], by_number[AGENT_HANGS_UP]["hangup_by"]) == (
        "ANSWER", "callee",
    )  # fmt: skip
    # The second re-INVITE gave the caller our media again: the goodbye reached it.
    to_agent, back = result.received("INVITE")
    assert "m=audio 6222 " in to_agent.body  # the agent's media (operator_by_number's ...222)
    assert "m=audio 6222 " not in back.body and f"m=audio {receiver.port} " not in back.body
    assert len(receiver.audio()) > 20


async def test_keys_sent_by_sip_info_reach_the_flow(
    tmp_path: Path, ivr_platform: Running, receiver: RtpReceiver
) -> None:
    platform = ivr_platform
    flow = {
        "name": "info", "start": "menu",
        "steps": {
            "menu": {"kind": "menu", "prompt": {"say": "Menu."}, "timeout": 4, "retries": 0,
                     "branches": {"7": "code"}, "invalid": "bye"},
            "code": {"kind": "gather", "max_digits": 3, "finish_key": "#", "timeout": 4,
                     "next": "bye"},
            "bye": {"kind": "hangup"},
        },
    }  # fmt: skip
    await setup_did(platform, flow=flow)
    caller = Caller(CALLER, DID, receiver.port).answered().pause(200).info("7")
    caller.pause(300).info("*9#").hung_up_on()
    result = await call_in(tmp_path, platform, caller)
    result.assert_ok(calls=1)
    record = await incoming_record(platform)
    assert (record["status"], record["keypress"]) == ("IVR-ANSWER", "7,*9")


async def test_a_stop_hangs_up_the_calls_in_a_flow_and_stores_how_they_ended(
    tmp_path: Path, receiver: RtpReceiver
) -> None:
    flow = {
        "name": "long", "start": "wait",
        "steps": {
            "wait": {"kind": "gather", "prompt": {"say": "Hi."}, "timeout": 20, "next": "bye"},
            "bye": {"kind": "hangup"},
        },
    }  # fmt: skip
    async with running_platform(tmp_path, trunk=None) as running:
        await setup_did(running, flow=flow)
        caller = Caller(CALLER, DID, receiver.port).answered().hung_up_on()
        in_flow = asyncio.create_task(call_in(tmp_path, running, caller))
        await asyncio.sleep(1.5)
    result = await in_flow  # the stop sent the BYE
    result.assert_ok(calls=1)
    with running.platform.sessions.begin() as session:
        call = session.query(Call).filter(Call.service == "incoming").one()
        record: dict[str, Any] = repo.call_record(call)
    assert (record["state"], record["status"]) == ("completed", "IVR-ANSWER")
    assert record["reason"] == "flow ended: the platform stopped"
    assert record["legs"][0]["hangup_by"] == "platform"


async def test_a_voicemail_ends_after_the_set_silence(
    tmp_path: Path, platform: Running, receiver: RtpReceiver
) -> None:
    flow = {
        "name": "quiet", "start": "voicemail",
        "steps": {
            "voicemail": {"kind": "record", "max_length": 20, "silence": 1, "beep": False,
                          "next": "bye"},
            "bye": {"kind": "hangup"},
        },
    }  # fmt: skip
    await setup_did(platform, flow=flow)
    started = asyncio.get_running_loop().time()
    result = await call_in(tmp_path, platform, Caller(CALLER, DID, receiver.port).answered()
                           .hung_up_on())  # fmt: skip
    elapsed = asyncio.get_running_loop().time() - started
    result.assert_ok(calls=1)
    record = await incoming_record(platform)
    assert record["status"] == "IVR-ANSWER"
    with wave.open(record["recording"], "rb") as wav:
        seconds = wav.getnframes() / wav.getframerate()
    # No RTP came (the file holds what arrived: nothing); a second of silence ended it,
    # not max_length's 20 s.
    assert seconds <= 2.0 and elapsed < 8, (seconds, elapsed)


async def test_the_caller_hanging_up_while_the_agent_rings_cancels_the_agent(
    tmp_path: Path, receiver: RtpReceiver
) -> None:
    async with SippServer("operator_by_number", tmp_path / "operator", calls=1,
                          duration_ms=None) as operator:  # fmt: skip
        host, port = operator.address
        async with running_platform(tmp_path, trunk=f"{host}:{port}") as running:
            await setup_did(running, flow=dial_flow(AGENT_RINGS))
            caller = Caller(CALLER, DID, receiver.port).answered().pause(1000).hang_up()
            result = await call_in(tmp_path, running, caller)
            record = await incoming_record(running)
        operated = await operator.wait(10)
    result.assert_ok(calls=1)
    assert record["status"] == "IVR-ANSWER"
    leg1, leg2 = record["legs"]
    assert (leg1["status"], leg1["hangup_by"]) == ("ANSWER", "caller")
    assert (leg2["status"], leg2["sip_code"], leg2["hangup_by"]) == ("CANCEL", 487, "other-leg")
    assert len(operated.received("CANCEL")) == 1
