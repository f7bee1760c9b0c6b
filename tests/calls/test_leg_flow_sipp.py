"""End to end: a flow run on an outgoing leg (an outbound call whose ``target`` is a flow,
click-to-call's ``to=ivr:<id>``), SIPp as the operator.

SIPp runs ``operator_by_number``: ...111 answers and waits for our BYE. The flow says a
sentence, records a second, and hangs up: SIPp must get our BYE once both are done, the
record must stay ANSWER (the callee answered) and show what the flow did (its recording,
the reason naming how it ended).
"""

from __future__ import annotations

import asyncio
import time
import wave
from pathlib import Path
from typing import Any

import pytest

from tests.calls.incoming_support import RtpReceiver
from tests.support.platform import BRIDGE, Running, running_platform
from tests.support.sipp import SippResult, SippServer, requires_sipp
from voiceplane.media.tts import speak

pytestmark = [requires_sipp, pytest.mark.sipp]

ANSWERS = "+919876500111"
SCENARIOS = Path(__file__).parent.parent / "sipp_scenarios"
SENTENCE = "Your appointment is tomorrow at ten."
RECORD_S = 1
FLOW = {
    "name": "Reminder",
    "steps": {
        "hello": {"kind": "say", "text": SENTENCE, "next": "note"},
        "note": {"kind": "record", "beep": False, "max_length": RECORD_S, "next": "bye"},
        "bye": {"kind": "hangup"},
    },
}


async def published_flow(running: Running, document: dict[str, Any]) -> str:
    url = f"/v1/{running.sid}/flows"
    response = await running.client.post(url, json=document, headers=running.headers)
    assert response.status_code == 201, response.text
    flow_id: str = response.json()["id"]
    response = await running.client.post(f"{url}/{flow_id}/publish", headers=running.headers)
    assert response.status_code == 200, response.text
    return flow_id


@pytest.mark.parametrize("prefix", ["flow:", "ivr:"])
async def test_an_outbound_call_runs_its_target_flow_when_the_callee_answers(
    tmp_path: Path, prefix: str
) -> None:
    spoken = await speak(SENTENCE, tmp_path / "tts")
    say_s = len(spoken) / 2 / 8000  # 8 kHz s16le
    async with SippServer("operator_by_number", tmp_path, calls=1, duration_ms=None) as sipp:
        host, port = sipp.address
        async with running_platform(tmp_path, trunk=f"{host}:{port}") as running:
            flow_id = await published_flow(running, FLOW)
            call_id = await running.outbound(to=ANSWERS, target=f"{prefix}{flow_id}")
            record = await running.wait_for(call_id, timeout=30)
        result = await sipp.wait(10)
    result.assert_ok(calls=1)
    assert (record["status"], record["state"]) == ("ANSWER", "completed")
    assert "flow ended by the flow" in record["reason"]
    (leg,) = record["legs"]
    assert (leg["number"], leg["status"], leg["hangup_by"]) == (ANSWERS, "ANSWER", "platform")
    # The record step ran and wrote its WAV (empty: this SIPp scenario sends no RTP).
    assert record["recording"] is not None and call_id in record["recording"]
    with wave.open(record["recording"]) as wav:
        assert wav.getframerate() == 8000
    # SIPp got our BYE after its 200, once the sentence had been said and the second
    # recorded (not at once, as a target that failed would end the call).
    assert [m.method for m in result.received() if m.is_request] == ["INVITE", "ACK", "BYE"]
    assert_bye_after_the_flow(result, say_s)


def assert_bye_after_the_flow(result: SippResult, say_s: float) -> None:
    """Our BYE came once the sentence was said and the second recorded (±50%)."""
    (ok,) = [m for m in result.sent(200) if "INVITE" in (m.header("cseq") or "")]
    (bye,) = result.received("BYE")
    assert ok.time is not None and bye.time is not None
    held = (bye.time - ok.time).total_seconds()
    expected = say_s + RECORD_S
    assert 0.5 * expected <= held <= 1.5 * expected, (held, expected)


async def test_click_to_call_to_a_flow_connects_the_agent_to_it(tmp_path: Path) -> None:
    spoken = await speak(SENTENCE, tmp_path / "tts")
    say_s = len(spoken) / 2 / 8000
    async with SippServer("operator_by_number", tmp_path, calls=1, duration_ms=None) as sipp:
        host, port = sipp.address
        async with running_platform(tmp_path, trunk=f"{host}:{port}") as running:
            flow_id = await published_flow(running, FLOW)
            call_id = await running.click_to_call(**{"from": ANSWERS, "to": f"ivr:{flow_id}"})
            record = await running.wait_for(call_id, timeout=30)
        result = await sipp.wait(10)
    result.assert_ok(calls=1)  # one INVITE only: nobody but the agent was dialled
    assert (record["service"], record["status"], record["to"]) == ("click2call", "ANSWER", None)
    assert f"flow {flow_id}" in record["reason"] and "flow ended by the flow" in record["reason"]
    (agent,) = record["legs"]
    assert (agent["number"], agent["status"], agent["hangup_by"]) == (ANSWERS, "ANSWER",
                                                                      "platform")  # fmt: skip
    assert record["recording"] is not None and call_id in record["recording"]
    assert [m.method for m in result.received() if m.is_request] == ["INVITE", "ACK", "BYE"]
    assert_bye_after_the_flow(result, say_s)


async def test_a_flow_paused_after_the_call_was_placed_fails_it_before_dialing(
    tmp_path: Path,
) -> None:
    async with running_platform(tmp_path, trunk=None) as running:
        flow_id = await published_flow(running, FLOW)
        when = int(time.time()) + 2  # scheduled: the flow is paused before the engine runs it
        call_id = await running.outbound(to=ANSWERS, target=f"flow:{flow_id}", time=str(when))
        url = f"/v1/{running.sid}/flows/{flow_id}/pause"
        response = await running.client.post(url, headers=running.headers)
        assert response.status_code == 200, response.text
        record = await running.wait_for(call_id, timeout=20)
    assert record["status"] == "FAILED"
    assert "flow paused" in record["reason"] and flow_id in record["reason"]
    (leg,) = record["legs"]
    assert (leg["status"], leg["sip_code"], leg["answer_time"]) == ("FAILED", None, None)


async def test_a_call_cancelled_while_its_flow_runs_is_hung_up_at_once(tmp_path: Path) -> None:
    long_flow = {
        "name": "Long",
        "steps": {"talk": {"kind": "say", "text": SENTENCE * 4, "next": "bye"},
                  "bye": {"kind": "hangup"}},
    }  # fmt: skip
    async with SippServer("operator_by_number", tmp_path, calls=1, duration_ms=None) as sipp:
        host, port = sipp.address
        async with running_platform(tmp_path, trunk=f"{host}:{port}") as running:
            flow_id = await published_flow(running, long_flow)
            call_id = await running.outbound(to=ANSWERS, target=f"flow:{flow_id}")
            await running.wait_for(call_id, state="answered", timeout=20)
            await asyncio.sleep(0.5)
            response = await running.cancel(call_id)
            assert response.status_code == 202, response.text
            record = await running.wait_for(call_id, timeout=20)
        result = await sipp.wait(10)
    result.assert_ok(calls=1)
    assert record["status"] == "ANSWER" and "flow ended by the caller" in record["reason"]
    (leg,) = record["legs"]
    assert (leg["status"], leg["hangup_by"]) == ("ANSWER", "api")
    (ok,) = [m for m in result.sent(200) if "INVITE" in (m.header("cseq") or "")]
    (bye,) = result.received("BYE")
    assert ok.time is not None and bye.time is not None
    # The sentence said four times lasts about 8 s; the BYE came soon after the cancel.
    assert (bye.time - ok.time).total_seconds() < 4


async def test_the_callee_receives_the_flows_prompt_as_rtp(tmp_path: Path) -> None:
    """SIPp answers with an SDP pointing at a socket of this test: the prompt's packets
    arrive there, about as many as the sentence lasts in 20 ms packets."""
    spoken = await speak(SENTENCE, tmp_path / "tts")
    say_s = len(spoken) / 2 / 8000
    phone = await RtpReceiver.open()
    try:
        template = (SCENARIOS / "uas_answer.xml").read_text(encoding="iso-8859-1")
        scenario = tmp_path / "callee_rtp.xml"
        scenario.write_text(
            template.replace("c=IN IP[media_ip_type] [media_ip]", "c=IN IP4 127.0.0.1")
            .replace("m=audio [media_port]", f"m=audio {phone.port}"),
            encoding="iso-8859-1",
        )
        say_then_hangup = {
            "name": "Say",
            "steps": {"hello": {"kind": "say", "text": SENTENCE, "next": "bye"},
                      "bye": {"kind": "hangup"}},
        }  # fmt: skip
        async with SippServer(scenario, tmp_path, calls=1, duration_ms=None) as sipp:
            host, port = sipp.address
            async with running_platform(tmp_path, trunk=f"{host}:{port}") as running:
                flow_id = await published_flow(running, say_then_hangup)
                call_id = await running.outbound(to=ANSWERS, target=f"flow:{flow_id}")
                record = await running.wait_for(call_id, timeout=30)
            result = await sipp.wait(10)
    finally:
        phone.close()
    result.assert_ok(calls=1)
    assert record["status"] == "ANSWER" and "flow ended by the flow" in record["reason"]
    packets = phone.audio()
    expected = say_s / 0.020
    assert 0.5 * expected <= len(packets) <= 1.5 * expected, (len(packets), expected)
    span = packets[-1].at - packets[0].at
    assert 0.5 * say_s <= span <= 1.5 * say_s, (span, say_s)


async def test_a_dial_step_connects_the_callee_to_an_agent_who_hangs_up_after_a_second(
    tmp_path: Path,
) -> None:
    """3PCC over an outgoing leg: the agent (...222) is offered the callee's SDP, the callee
    (...111) is re-INVITEd with the agent's, then back to our media when the agent leaves;
    the flow goes on and hangs up."""
    agent = "+919876510222"
    dial_then_hangup = {
        "name": "Connect",
        "steps": {"agent": {"kind": "dial", "numbers": [agent], "ring_timeout": 5,
                            "answered": "bye", "not_answered": "bye"},
                  "bye": {"kind": "hangup"}},
    }  # fmt: skip
    async with SippServer("operator_by_number", tmp_path, calls=2, duration_ms=None) as sipp:
        host, port = sipp.address
        async with running_platform(tmp_path, trunk=f"{host}:{port}") as running:
            flow_id = await published_flow(running, dial_then_hangup)
            call_id = await running.outbound(to=ANSWERS, target=f"flow:{flow_id}")
            record = await running.wait_for(call_id, timeout=30)
        result = await sipp.wait(10)
    result.assert_ok(calls=2)
    assert record["status"] == "ANSWER" and "flow ended by the flow" in record["reason"]
    callee, dialled = record["legs"]
    assert (callee["leg"], callee["number"], callee["status"], callee["hangup_by"]) == (
        1, ANSWERS, "ANSWER", "platform",
    )  # fmt: skip
    assert (dialled["leg"], dialled["number"], dialled["status"]) == (2, agent, "ANSWER")
    invites = result.received("INVITE")
    # The callee's INVITE, the agent's (from the bridge, with the callee's SDP), then the
    # callee's two re-INVITEs: to the agent's media (port 6222), and back to ours.
    assert len(invites) == 4, [m.start_line for m in invites]
    to_agent = next(m for m in invites if agent in m.start_line)
    assert "s=party-111" in to_agent.body and BRIDGE in (to_agent.header("From") or "")
    reinvites = [m for m in invites if m.start_line.startswith("INVITE sip:sipp@")]
    assert len(reinvites) == 2  # in-dialog: to the callee's Contact
    assert "m=audio 6222" in reinvites[0].body and "m=audio 6222" not in reinvites[1].body


async def test_a_key_the_callee_sends_by_sip_info_reaches_the_flows_menu(tmp_path: Path) -> None:
    """SIPp answers and presses 5 by SIP INFO (no RTP): the INFO gets 200, the menu takes
    the 5 branch, and the record keeps the key."""
    press_five = {
        "name": "Press five",
        "steps": {
            "menu": {"kind": "menu", "prompt": {"say": "Press five."}, "branches": {"5": "thanks"},
                     "invalid": "bye", "timeout": 4, "retries": 0},
            "thanks": {"kind": "say", "text": "Thank you.", "next": "bye"},
            "bye": {"kind": "hangup"},
        },
    }  # fmt: skip
    async with SippServer(
        "uas_answer_info_key", tmp_path, calls=1, duration_ms=None,
        values={"key": "5", "pause_ms": 500},
    ) as sipp:  # fmt: skip
        host, port = sipp.address
        async with running_platform(tmp_path, trunk=f"{host}:{port}") as running:
            flow_id = await published_flow(running, press_five)
            call_id = await running.outbound(to=ANSWERS, target=f"flow:{flow_id}")
            record = await running.wait_for(call_id, timeout=30)
        result = await sipp.wait(10)
    result.assert_ok(calls=1)
    assert len(result.received(200)) == 1, "the INFO was not answered 200"
    assert (record["status"], record["keypress"]) == ("ANSWER", "5")
    assert "flow ended by the flow" in record["reason"]
