"""End to end: an HTTP request, SIP to SIPp as the operator, the stored record.

SIPp runs ``operator_by_number``: the last three digits of the dialled number pick what the
operator does (486 busy, 404, 503 with a Reason cause, 000 rings forever, 111 answers and
waits, 222 answers and hangs up after 1 s). Every status below is asserted against what
SIPp actually sent and received, from its own message log.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from tests.support.platform import BRIDGE, Running, running_platform
from tests.support.sipp import SippResult, SippServer, requires_sipp
from voiceplane.store import repository

pytestmark = [requires_sipp, pytest.mark.sipp]

BUSY = "+919876500486"
UNKNOWN = "+919876500404"
CONGESTED = "+919876500503"
RINGS = "+919876500000"
RINGS_TOO = "+919876510000"
ANSWERS = "+919876500111"
HANGS_UP = "+919876500222"
LEAVES_AT_BRIDGE = "+919876500333"


def port_of(sdp: str) -> int:
    line = next(line for line in sdp.splitlines() if line.startswith("m=audio"))
    return int(line.split()[1])


def leg(record: dict[str, Any], number: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = [leg for leg in record["legs"] if leg["number"] == number]
    assert len(found) == 1, record["legs"]
    return found[0]


async def operator(tmp_path: Path, calls: int) -> SippServer:
    return SippServer("operator_by_number", tmp_path, calls=calls, duration_ms=None)


async def _call_and_wait(
    tmp_path: Path, calls: int, place: Any, *, timeout: float = 20
) -> tuple[dict[str, Any], SippResult]:
    async with await operator(tmp_path, calls) as sipp:
        host, port = sipp.address
        async with running_platform(tmp_path, trunk=f"{host}:{port}") as running:
            call_id = await place(running)
            record = await running.wait_for(call_id, timeout=timeout)
        result = await sipp.wait(10)
    return record, result


# --- outbound ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("number", "status", "code", "cause"),
    [
        (BUSY, "BUSY", 486, 17),
        (UNKNOWN, "CHANUNAVAIL", 404, 1),
        # The Reason header's cause (34) is kept on the leg; 503 alone would map to 41.
        (CONGESTED, "CONGESTION", 503, 34),
    ],
)
async def test_outbound_rejected_by_the_operator(
    tmp_path: Path, number: str, status: str, code: int, cause: int
) -> None:
    record, result = await _call_and_wait(
        tmp_path, 1, lambda running: running.outbound(to=number, target="hello")
    )
    result.assert_ok(calls=1)
    sent = result.sent(code)
    assert len(sent) == 1  # the operator did send that code, and only once
    assert record["service"] == "outbound" and record["state"] == "completed"
    assert record["status"] == status
    assert record["to"] == number and record["bridge"] == BRIDGE
    one = leg(record, number)
    assert (one["status"], one["sip_code"], one["q850_cause"]) == (status, code, cause)
    assert one["sip_reason"] == sent[0].reason
    assert one["hangup_by"] == "callee"
    invite = result.received("INVITE")[0]
    assert invite.request_uri is not None and number in invite.request_uri
    assert BRIDGE in (invite.header("From") or "")  # the bridge number is the caller ID


async def test_outbound_answered_plays_the_target_then_hangs_up(tmp_path: Path) -> None:
    record, result = await _call_and_wait(
        tmp_path, 1, lambda running: running.outbound(to=ANSWERS, target="Your code is 4 2.")
    )
    result.assert_ok(calls=1)
    assert record["status"] == "ANSWER"
    one = leg(record, ANSWERS)
    assert (one["status"], one["sip_code"], one["hangup_by"]) == ("ANSWER", 200, "platform")
    assert one["answer_time"] is not None and record["answer_time"] is not None
    assert record["billsec"] >= 1  # the prompt lasts over a second
    # SIPp received our BYE after its 200: we hung up when the prompt was done.
    assert [m.method for m in result.received() if m.is_request] == ["INVITE", "ACK", "BYE"]


async def test_outbound_unanswered_ends_on_our_ring_timeout(tmp_path: Path) -> None:
    record, result = await _call_and_wait(
        tmp_path, 1, lambda running: running.outbound(to=RINGS, target="hi", timeout=1)
    )
    result.assert_ok(calls=1)
    assert record["status"] == "NOANSWER"
    one = leg(record, RINGS)
    assert (one["sip_code"], one["q850_cause"], one["hangup_by"]) == (487, 19, "platform")
    assert len(result.received("CANCEL")) == 1 and len(result.sent(487)) == 1


async def test_outbound_cancelled_through_the_api_while_it_rings(tmp_path: Path) -> None:
    async def place(running: Running) -> str:
        call_id = await running.outbound(to=RINGS, target="hi", timeout=30)
        await running.wait_for(call_id, state="ringing")
        response = await running.cancel(call_id)
        assert response.status_code == 202, response.text
        return call_id

    record, result = await _call_and_wait(tmp_path, 1, place)
    result.assert_ok(calls=1)
    assert record["status"] == "CANCEL"
    one = leg(record, RINGS)
    assert (one["status"], one["sip_code"], one["hangup_by"]) == ("CANCEL", 487, "api")
    assert len(result.received("CANCEL")) == 1


async def test_outbound_platform_failure_is_failed_and_dials_nobody(tmp_path: Path) -> None:
    """The prompt file vanished between the request and the dialing: our fault, FAILED."""
    prompt = tmp_path / "data" / "media" / "prompt.wav"  # where audio targets must be
    prompt.parent.mkdir(parents=True)
    prompt.write_bytes(b"RIFF not really a wave file")

    async with await operator(tmp_path, 1) as sipp:
        host, port = sipp.address
        async with running_platform(tmp_path, trunk=f"{host}:{port}") as running:
            response = await running.post(
                "outbound", to=ANSWERS, bridge=BRIDGE, target=str(prompt)
            )
            if response.status_code == 400:  # the API itself checks the file: then break it later
                pytest.fail(f"the API refused a readable .wav path: {response.text}")
            call_id = response.json()["id"]
            record = await running.wait_for(call_id)
        result = await sipp.stop()
    # SIPp saw nothing at all: no INVITE was sent for a call we could not play.
    assert result.received() == []
    assert record["status"] == "FAILED"
    one = leg(record, ANSWERS)
    assert one["status"] == "FAILED" and one["sip_code"] is None
    assert "target" in (record["reason"] or "")


# --- click-to-call -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("agent", "status", "agent_status"),
    [
        (BUSY, "BUSY_LEG1", "BUSY"),
        (UNKNOWN, "FAILED_LEG1", "CHANUNAVAIL"),
        (CONGESTED, "FAILED_LEG1", "CONGESTION"),
    ],
)
async def test_click_to_call_leg_one_fails(
    tmp_path: Path, agent: str, status: str, agent_status: str
) -> None:
    record, result = await _call_and_wait(
        tmp_path, 1, lambda running: running.click_to_call(**{"from": agent, "to": ANSWERS})
    )
    result.assert_ok(calls=1)
    assert record["service"] == "click2call" and record["status"] == status
    assert [leg["leg"] for leg in record["legs"]] == [1]  # the customer was never dialled
    assert leg(record, agent)["status"] == agent_status
    assert len(result.received("INVITE")) == 1


async def test_click_to_call_leg_one_does_not_answer(tmp_path: Path) -> None:
    record, result = await _call_and_wait(
        tmp_path, 1,
        lambda running: running.click_to_call(**{"from": RINGS, "to": ANSWERS, "timeout": 1}),
    )  # fmt: skip
    result.assert_ok(calls=1)
    assert record["status"] == "NOANSWER_LEG1"
    assert leg(record, RINGS)["status"] == "NOANSWER"


@pytest.mark.parametrize(
    ("customer", "status", "customer_status", "timeout"),
    [
        (BUSY, "BUSY_LEG2", "BUSY", 10),
        (RINGS, "NOANSWER_LEG2", "NOANSWER", 1),
        (UNKNOWN, "FAILED_LEG2", "CHANUNAVAIL", 10),
    ],
)
async def test_click_to_call_leg_two_fails(
    tmp_path: Path, customer: str, status: str, customer_status: str, timeout: int
) -> None:
    record, result = await _call_and_wait(
        tmp_path, 2,
        lambda running: running.click_to_call(
            **{"from": ANSWERS, "to": customer, "timeout": timeout}
        ),
    )  # fmt: skip
    result.assert_ok(calls=2)
    assert record["status"] == status
    agent = leg(record, ANSWERS)
    assert agent["status"] == "ANSWER" and agent["hangup_by"] == "platform"
    assert leg(record, customer)["status"] == customer_status
    # The customer was offered the agent's SDP (third-party call control).
    invites = result.received("INVITE")
    assert len(invites) == 2
    assert port_of(invites[1].body) == 6111
    # The agent was not re-INVITEd: there was nobody to connect it to; we hung up.
    assert len(result.received("BYE")) == 1


async def test_click_to_call_agent_hangs_up_while_the_customer_rings(tmp_path: Path) -> None:
    record, result = await _call_and_wait(
        tmp_path, 2,
        lambda running: running.click_to_call(**{"from": HANGS_UP, "to": RINGS, "timeout": 30}),
    )  # fmt: skip
    result.assert_ok(calls=2)
    assert record["status"] == "CANCEL"
    assert leg(record, HANGS_UP)["hangup_by"] == "callee"
    customer = leg(record, RINGS)
    assert (customer["status"], customer["sip_code"], customer["hangup_by"]) == (
        "CANCEL", 487, "other-leg",
    )  # fmt: skip
    assert len(result.received("CANCEL")) == 1


async def test_click_to_call_both_answer_and_each_gets_the_others_sdp(tmp_path: Path) -> None:
    record, result = await _call_and_wait(
        tmp_path, 2,
        lambda running: running.click_to_call(**{"from": ANSWERS, "to": HANGS_UP}),
    )  # fmt: skip
    result.assert_ok(calls=2)
    assert record["status"] == "ANSWER" and record["answer_time"] is not None
    agent, customer = leg(record, ANSWERS), leg(record, HANGS_UP)
    assert agent["status"] == customer["status"] == "ANSWER"
    assert customer["hangup_by"] == "callee" and agent["hangup_by"] == "other-leg"
    invites = result.received("INVITE")
    assert len(invites) == 3  # agent, customer, then the agent's re-INVITE
    first, second, reinvite = invites
    assert port_of(second.body) == 6111  # the customer got the agent's media
    assert port_of(reinvite.body) == 6222  # the agent got the customer's media
    assert reinvite.call_id == first.call_id  # in the agent's dialog
    assert "s=party-222" in reinvite.body


async def test_click_to_call_agent_hangs_up_as_the_customer_is_connected(
    tmp_path: Path,
) -> None:
    """The agent's BYE crosses the re-INVITE that would connect the customer (who answered):
    the two never talked, so it is the agent giving up, like a 200 crossing a CANCEL."""
    record, result = await _call_and_wait(
        tmp_path, 2,
        lambda running: running.click_to_call(**{"from": LEAVES_AT_BRIDGE, "to": ANSWERS}),
    )  # fmt: skip
    result.assert_ok(calls=2)
    assert record["status"] == "CANCEL"
    agent, customer = leg(record, LEAVES_AT_BRIDGE), leg(record, ANSWERS)
    assert (agent["status"], agent["hangup_by"]) == ("ANSWER", "callee")
    assert (customer["status"], customer["hangup_by"]) == ("ANSWER", "other-leg")
    invites = result.received("INVITE")
    assert len(invites) == 3 and port_of(invites[2].body) == 6111  # the re-INVITE was sent
    assert len(result.received("BYE")) == 1  # ours, to the customer
    assert len(result.received("ACK")) == 3  # the two 200s, and the 481


async def test_click_to_call_parallel_customers_second_answers_first(tmp_path: Path) -> None:
    record, result = await _call_and_wait(
        tmp_path, 3,
        lambda running: running.click_to_call(**{"from": ANSWERS, "to": f"{RINGS}^{HANGS_UP}"}),
    )  # fmt: skip
    result.assert_ok(calls=3)
    assert record["status"] == "ANSWER"
    assert leg(record, HANGS_UP)["status"] == "ANSWER"
    loser = leg(record, RINGS)
    assert (loser["status"], loser["sip_code"], loser["leg"]) == ("CANCEL", 487, 2)
    assert len(result.received("CANCEL")) == 1


async def test_click_to_call_parallel_agents_first_to_answer_wins(tmp_path: Path) -> None:
    record, result = await _call_and_wait(
        tmp_path, 3,
        lambda running: running.click_to_call(**{"from": f"{RINGS_TOO}-{ANSWERS}",
                                                 "to": HANGS_UP}),
    )  # fmt: skip
    result.assert_ok(calls=3)
    assert record["status"] == "ANSWER"
    assert leg(record, RINGS_TOO)["status"] == "CANCEL"
    assert leg(record, ANSWERS)["status"] == "ANSWER"


async def test_click_to_call_is_hung_up_after_the_longest_talk_time(tmp_path: Path) -> None:
    """Both parties stay (SIPp's 111 waits for a BYE): the engine's limit ends the call."""
    other_agent = "+919876511111"

    async def place(running: Running) -> str:
        engine = running.platform.engine
        engine.settings = dataclasses.replace(engine.settings, max_talk_s=1.0)
        return await running.click_to_call(**{"from": ANSWERS, "to": other_agent})

    record, result = await _call_and_wait(tmp_path, 2, place)
    result.assert_ok(calls=2)
    assert record["status"] == "ANSWER"
    assert {leg["hangup_by"] for leg in record["legs"]} == {"platform"}
    assert 1 <= record["billsec"] <= 3
    assert len(result.received("BYE")) == 2  # we hung up both parties


async def test_a_parallel_try_that_was_busy_keeps_busy_when_another_answers(
    tmp_path: Path,
) -> None:
    """The busy customer number said BUSY before the other answered: not a CANCEL."""
    record, result = await _call_and_wait(
        tmp_path, 3,
        lambda running: running.click_to_call(**{"from": ANSWERS, "to": f"{BUSY}^{HANGS_UP}"}),
    )  # fmt: skip
    result.assert_ok(calls=3)
    assert record["status"] == "ANSWER"
    busy = leg(record, BUSY)
    assert (busy["status"], busy["sip_code"], busy["hangup_by"]) == ("BUSY", 486, "callee")
    assert result.received("CANCEL") == []


async def test_a_graceful_stop_cancels_ringing_calls_and_says_the_platform_did(
    tmp_path: Path,
) -> None:
    async with await operator(tmp_path, 1) as sipp:
        host, port = sipp.address
        async with running_platform(tmp_path, trunk=f"{host}:{port}") as running:
            call_id = await running.outbound(to=RINGS, target="hi", timeout=60)
            await running.wait_for(call_id, state="ringing")
            sessions = running.platform.sessions
        # serve has stopped: the engine ended the call and stored it before it went.
        result = await sipp.wait(10)
    result.assert_ok(calls=1)
    assert len(result.received("CANCEL")) == 1
    with sessions() as session:
        call = repository.find_call(session, call_id=call_id)
        assert call is not None
        record = repository.call_record(call)
    assert record["state"] == "completed" and record["status"] == "CANCEL"
    assert leg(record, RINGS)["hangup_by"] == "platform"
