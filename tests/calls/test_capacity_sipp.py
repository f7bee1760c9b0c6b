"""Channel capacity and the call-rate limit, end to end, measured on the operator's side.

SIPp plays the operator (``operator_short_calls``: rings 100 ms, answers, hangs up after
``duration_ms``). What SIPp logged is the evidence: when each INVITE arrived and when each
call ended, so the concurrency and the rate the operator saw are computed from its log, not
from our records.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.support.platform import Running, running_platform
from tests.support.sipp import SippMessage, SippResult, SippServer, requires_sipp

pytestmark = [requires_sipp, pytest.mark.sipp]

BURST = 1000
CHANNELS = 10  # a bridge number's default


def number(index: int) -> str:
    return f"+91987650{index:04d}"


def dialled(message: SippMessage) -> str:
    uri = message.request_uri or ""
    return uri.removeprefix("sip:").partition("@")[0]


def operator(tmp_path: Path, calls: int, *, talk_ms: int) -> SippServer:
    return SippServer(
        "operator_short_calls", tmp_path, calls=calls, duration_ms=talk_ms, max_runtime=120
    )


async def place_in_order(running: Running, count: int, **fields: Any) -> list[str]:
    """Place ``count`` outbound calls one after the other (the API order), no target: each
    lasts until the operator hangs up."""
    return [await running.outbound(to=number(index), **fields) for index in range(count)]


async def all_records(running: Running, count: int, *, timeout: float) -> list[dict[str, Any]]:
    """Every call's record once all ``count`` have completed."""
    deadline = asyncio.get_running_loop().time() + timeout
    path = f"/v1/{running.sid}/voice/call-logs"
    while True:
        response = await running.client.get(
            path, params={"state": "completed", "limit": 1}, headers=running.headers
        )
        if response.json()["total"] >= count:
            break
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"only {response.json()['total']} of {count} calls completed")
        await asyncio.sleep(0.25)
    records: list[dict[str, Any]] = []
    for offset in range(0, count, 1000):
        response = await running.client.get(
            path, params={"limit": 1000, "offset": offset}, headers=running.headers
        )
        records += response.json()["calls"]
    return records


def first_per_call(messages: list[SippMessage]) -> list[SippMessage]:
    """Each call's first message of these (a retransmission is not another call)."""
    seen: set[str | None] = set()
    first = []
    for message in messages:
        if message.call_id not in seen:
            seen.add(message.call_id)
            first.append(message)
    return first


def invites(result: SippResult) -> list[SippMessage]:
    return first_per_call(result.received("INVITE"))


def most_at_once(result: SippResult) -> int:
    """The most calls SIPp had up at once: from the INVITE it received to the 200 it
    received for its BYE (a call's dialog exists on the operator for all that time)."""
    events: list[tuple[datetime, int]] = []
    for message in invites(result):
        assert message.time is not None
        events.append((message.time, +1))
    byes = [message for message in result.received(200) if message.cseq_method == "BYE"]
    for message in first_per_call(byes):
        assert message.time is not None
        events.append((message.time, -1))
    up = peak = 0
    for _moment, change in sorted(events):  # an end before a start at the same instant
        up += change
        peak = max(peak, up)
    return peak


def busiest_second(times: Sequence[datetime]) -> int:
    """The most INVITEs in any window of one second."""
    ordered = sorted(times)
    most, start = 0, 0
    for end, moment in enumerate(ordered):
        while moment - ordered[start] >= timedelta(seconds=1):
            start += 1
        most = max(most, end - start + 1)
    return most


async def test_a_burst_of_1000_calls_never_holds_more_than_the_bridges_10_channels(
    tmp_path: Path,
) -> None:
    async with operator(tmp_path, BURST, talk_ms=150) as sipp:
        host, port = sipp.address
        async with running_platform(tmp_path, trunk=f"{host}:{port}") as running:
            ids = await place_in_order(running, BURST)
            # The last ones are still waiting for a channel, and say where they stand.
            last = await running.record(ids[-1])
            assert last["state"] == "queued", last
            assert last["queue_position"] is not None and last["queue_position"] > 1
            records = await all_records(running, BURST, timeout=90)
        result = await sipp.wait(30)
    result.assert_ok(calls=BURST)
    # Every call ended with a status: all were answered (the operator answers them all).
    assert len(records) == BURST
    assert {record["status"] for record in records} == {"ANSWER"}
    assert {record["id"] for record in records} == set(ids)
    # The operator never had more than 10 calls up, and the 10 were used.
    assert most_at_once(result) == CHANNELS
    # Those that waited were dialled in the order they were placed.
    assert [dialled(invite) for invite in invites(result)] == [number(i) for i in range(BURST)]


async def test_the_call_rate_holds_under_a_burst(tmp_path: Path) -> None:
    calls, cps = 100, 20
    async with operator(tmp_path, calls, talk_ms=50) as sipp:
        host, port = sipp.address
        extra = {"VOICEPLANE_TRUNK_MAX_CPS": str(cps)}
        async with running_platform(tmp_path, trunk=f"{host}:{port}", extra=extra) as running:
            # Channels are not what limits here: give the bridge plenty.
            response = await running.client.put(
                f"/v1/{running.sid}/numbers/{running.bridge}/capacity",
                json={"channels": calls},
                headers=running.headers,
            )
            assert response.status_code == 200, response.text
            await place_in_order(running, calls)
            records = await all_records(running, calls, timeout=30)
        result = await sipp.wait(15)
    result.assert_ok(calls=calls)
    assert {record["status"] for record in records} == {"ANSWER"}  # waited, not failed
    times = [invite.time for invite in invites(result) if invite.time is not None]
    assert len(times) == calls
    burst = 2  # the default: a tenth of a second's worth
    # SIPp's times are when it read each INVITE: on a loaded machine (two test workers)
    # they are late by up to some tens of ms, so a one-second window of them can hold an
    # INVITE sent just before it. Allow 100 ms of that; no limiter at all would put all 100
    # in well under a second.
    assert busiest_second(times) <= cps * 1.1 + burst
    # And the limit is what paced them: 100 calls at 20 a second take about 5 seconds.
    assert max(times) - min(times) >= timedelta(seconds=(calls - burst) / cps - 0.5)


@pytest.mark.parametrize("limit", ["bridge", "account"])
async def test_a_call_that_waits_out_its_queue_time_ends_max_use_without_an_invite(
    tmp_path: Path, limit: str
) -> None:
    async with operator(tmp_path, 1, talk_ms=2500) as sipp:
        host, port = sipp.address
        async with running_platform(tmp_path, trunk=f"{host}:{port}") as running:
            path = (
                f"numbers/{running.bridge}/capacity" if limit == "bridge" else "settings/capacity"
            )
            response = await running.client.put(
                f"/v1/{running.sid}/{path}", json={"channels": 1}, headers=running.headers
            )
            assert response.status_code == 200, response.text
            first = await running.outbound(to=number(1))
            await running.wait_for(first, state="answered")
            waiting = await running.outbound(to=number(2), queue_timeout=1)
            record = await running.record(waiting)
            assert (record["state"], record["queue_position"]) == ("queued", 1)
            record = await running.wait_for(waiting, timeout=5)
            answered = await running.wait_for(first, timeout=10)
        result = await sipp.wait(10)
    result.assert_ok(calls=1)
    assert (record["status"], record["rule"]) == ("MAX-USE", f"capacity.{limit}")
    assert record["legs"] == [] and record["start_time"] is None
    assert "no free channel" in (record["reason"] or "")
    assert answered["status"] == "ANSWER"
    # The operator saw one call only: no INVITE ever left for the one that waited.
    assert [dialled(invite) for invite in invites(result)] == [number(1)]


async def test_a_click_to_call_holds_two_channels_agent_and_customer(tmp_path: Path) -> None:
    """A bridge of 3 channels: a second click-to-call (2 more) waits until the first ends,
    and an outbound call placed after it waits behind it (first in, first out), though its
    one channel was free."""
    agents = ("+919876500111", "+919876510111")  # answer and wait (operator_by_number)
    customers = ("+919876500222", "+919876510222")  # answer, hang up after 1 s
    alone = "+919876520222"
    async with SippServer("operator_by_number", tmp_path, calls=5, duration_ms=None) as sipp:
        host, port = sipp.address
        async with running_platform(tmp_path, trunk=f"{host}:{port}") as running:
            response = await running.client.put(
                f"/v1/{running.sid}/numbers/{running.bridge}/capacity",
                json={"channels": 3},
                headers=running.headers,
            )
            assert response.status_code == 200, response.text
            first = await running.click_to_call(**{"from": agents[0], "to": customers[0]})
            second = await running.click_to_call(**{"from": agents[1], "to": customers[1]})
            outbound = await running.outbound(to=alone)
            records = [await running.wait_for(call_id, timeout=15) for call_id in (first, second)]
            lone = await running.wait_for(outbound, timeout=15)
        result = await sipp.wait(10)
    result.assert_ok(calls=5)
    assert [record["status"] for record in records] == ["ANSWER", "ANSWER"]
    assert lone["status"] == "ANSWER"
    arrived = {dialled(invite): invite for invite in invites(result)}
    assert set(arrived) == {*agents, *customers, alone}
    # The first click-to-call's dialogs (agent and customer) were over, BYEs answered, before
    # the second's agent was rung; the outbound call did not overtake it.
    dialogs = {arrived[agents[0]].call_id, arrived[customers[0]].call_id}
    everything = result.received() + result.sent()
    first_over = max(m.time for m in everything if m.call_id in dialogs and m.time is not None)
    assert at(arrived[agents[1]]) > first_over
    assert at(arrived[alone]) > at(arrived[agents[1]])


def at(message: SippMessage) -> datetime:
    assert message.time is not None
    return message.time
