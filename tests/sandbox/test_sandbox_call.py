"""``voiceplane sandbox call``: an incoming call with key presses into a running platform.

The sandbox's caller rings a DID of the platform (real SIP), counts the prompt's RTP and
sends its keys as RFC 4733 events; the flow's record must show the keys it pressed.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support.platform import Running, running_platform
from voiceplane.sandbox.caller import parse_presses, place_call
from voiceplane.sip.addressing import Address
from voiceplane.store import flows as flow_store
from voiceplane.store import repository as repo
from voiceplane.store.models import Call

DID = "+918047188888"
CALLER = "+919811111111"
FLOW: dict[str, Any] = {
    "name": "walk", "start": "menu",
    "steps": {
        "menu": {"kind": "menu", "prompt": {"say": "Menu."}, "timeout": 4, "retries": 0,
                 "branches": {"1": "order"}, "invalid": "bye"},
        "order": {"kind": "gather", "max_digits": 4, "finish_key": "#", "timeout": 4,
                  "next": "thanks"},
        "thanks": {"kind": "say", "text": "Thanks.", "next": "bye"},
        "bye": {"kind": "hangup"},
    },
}  # fmt: skip


def publish_did(running: Running) -> None:
    with running.platform.sessions.begin() as session:
        account = repo.get_account(session, sid=running.sid)
        assert account is not None
        number = repo.add_number(session, account=account, e164=DID, kind="did")
        flow, _ = flow_store.create_flow(
            session, account=account, name="walk", document=json.dumps(FLOW)
        )
        flow_store.publish(session, flow=flow, version=1)
        flow_store.set_routing(session, number=number, flow=flow, hours=None, missed_call=None)


async def the_record(running: Running) -> dict[str, Any]:
    for _ in range(200):
        with running.platform.sessions.begin() as session:
            call = session.query(Call).filter(Call.service == "incoming").one_or_none()
            if call is not None and call.state == "completed":
                return repo.call_record(call)
        await asyncio.sleep(0.05)
    raise AssertionError("the incoming call never completed")


def test_presses_are_inputs_of_dtmf_keys() -> None:
    assert parse_presses("1, 42#") == ("1", "42#")
    assert parse_presses(None) == ()
    with pytest.raises(ValueError, match="DTMF keys"):
        parse_presses("1,x")
    with pytest.raises(ValueError, match="DTMF keys"):
        parse_presses("1,,2")


async def test_the_sandbox_caller_walks_a_flow_with_its_keys(tmp_path: Path) -> None:
    async with running_platform(tmp_path, trunk=None) as running:
        publish_did(running)
        listen = running.config.sip.listen
        report = await place_call(
            platform=Address(listen.host, listen.port, "udp"), caller=CALLER, did=DID,
            presses=("1", "42#"), hangup_after=8, press_delay=0.3, press_gap=0.8,
        )  # fmt: skip
        record = await the_record(running)
    assert report.answered and report.final_status == 200
    assert report.digits_sent == ["1", "42#"]
    assert report.hung_up_by == "platform"  # the flow ended the call after "Thanks."
    assert report.prompt_packets > 40  # "Menu." and "Thanks.", 20 ms each
    assert report.first_prompt_after_s is not None and report.first_prompt_after_s < 3
    assert (record["status"], record["keypress"], record["from"]) == (
        "IVR-ANSWER", "1,42", CALLER,
    )  # fmt: skip


async def test_voiceplane_sandbox_call_prints_what_happened(tmp_path: Path) -> None:
    async with running_platform(tmp_path, trunk=None) as running:
        publish_did(running)
        listen = running.config.sip.listen
        env = {k: v for k, v in os.environ.items() if not k.startswith("VOICEPLANE_")}
        env["VOICEPLANE_SIP_LISTEN"] = f"{listen.host}:{listen.port}"
        env["VOICEPLANE_SIP_TRANSPORTS"] = "udp"
        env["VOICEPLANE_DATA_DIR"] = str(tmp_path / "cli-data")
        process = await asyncio.create_subprocess_exec(
            str(Path(sys.executable).parent / "voiceplane"), "sandbox", "call",
            "--from", CALLER, "--to", DID, "--press", "1,42#", "--hangup-after", "8",
            "--press-gap", "0.8",
            env=env, cwd=tmp_path, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        out, _ = await asyncio.wait_for(process.communicate(), 30)
        record = await the_record(running)
    text = out.decode()
    assert process.returncode == 0, text
    assert "final response: 200 OK" in text
    assert "digits sent: 1,42#" in text
    assert "hung up by: platform" in text
    packets = int(text.split("prompt packets received: ")[1].split(",")[0].split()[0])
    assert packets > 40
    assert record["keypress"] == "1,42"


async def test_an_unknown_number_prints_the_refusal_and_fails(tmp_path: Path) -> None:
    async with running_platform(tmp_path, trunk=None) as running:
        listen = running.config.sip.listen
        report = await place_call(
            platform=Address(listen.host, listen.port, "udp"), caller=CALLER,
            did="+918047100009", hangup_after=3,
        )  # fmt: skip
    assert (report.answered, report.final_status) == (False, 404)
    assert report.lines() == ["final response: 404 Not Found"]
