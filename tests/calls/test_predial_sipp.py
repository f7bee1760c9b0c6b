"""End to end: calls refused before dialing never reach the operator.

SIPp is the operator (``operator_by_number``: a number ending 111 answers and waits for our
BYE, sent once the target was played). Each test sets a rule through the API, places a call
the rule refuses and then one it allows, and proves from SIPp's own message log that the
only INVITE it received was the allowed call's, while the refused call's record says
NOTALLOWED or DND and names the rule that decided it, with no leg dialled.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.support.platform import Running, running_platform
from tests.support.sipp import SippResult, SippServer, requires_sipp
from voiceplane.policy.dnd import DND_DIR
from voiceplane.policy.dnd_import import import_files

pytestmark = [requires_sipp, pytest.mark.sipp]

AIRTEL = "+919876500111"  # Indian mobile in Airtel's range
IDEA = "+919812300111"  # Indian mobile in Idea's range
ABROAD = "+14155550111"  # a US number
PREMIUM = "+19005550111"  # a US premium-rate number
AGENT = "+919812345111"  # Idea, for click-to-call


@dataclass
class FakeDnd:
    """A DND registry holding ``numbers`` for every category."""

    numbers: set[str]
    asked: list[tuple[str, int | None]] = field(default_factory=list)

    def blocks(self, e164: str, category: int | None) -> bool:
        self.asked.append((e164, category))
        return e164 in self.numbers


async def put(running: Running, path: str, body: dict[str, Any]) -> None:
    response = await running.client.put(
        f"/v1/{running.sid}/{path}", json=body, headers=running.headers
    )
    assert response.status_code == 200, response.text


def assert_refused(record: dict[str, Any], status: str, rule: str, number: str) -> None:
    assert record["state"] == "completed"
    assert (record["status"], record["rule"]) == (status, rule)
    assert record["legs"] == []  # no leg was dialled
    assert number in (record["reason"] or "")
    assert record["answer_time"] is None and record["billsec"] == 0


def assert_only_invite_to(result: SippResult, allowed: str, *refused: str) -> None:
    result.assert_ok(calls=1)
    invites = result.received("INVITE")
    assert len(invites) == 1, [str(message) for message in invites]
    uri = invites[0].request_uri or ""
    assert allowed in uri
    for number in refused:
        assert all(number not in (m.request_uri or "") for m in result.received())


async def outbound(running: Running, to: str, **fields: Any) -> dict[str, Any]:
    call_id = await running.outbound(to=to, target="hi", **fields)
    return await running.wait_for(call_id, timeout=20)


@pytest.mark.parametrize(
    ("account", "bridge", "refused", "allowed", "rule"),
    [
        pytest.param(
            {"countries": ["IN"]}, {}, ABROAD, AIRTEL, "permissions.country", id="country"
        ),
        pytest.param(
            {"international": False}, {}, ABROAD, AIRTEL, "permissions.international",
            id="international",
        ),
        # No settings at all: premium-rate numbers are refused by default.
        pytest.param({}, {}, PREMIUM, ABROAD, "permissions.number_type", id="number-type"),
        pytest.param(
            {}, {"blocked_networks": ["Airtel"]}, AIRTEL, IDEA, "permissions.network",
            id="network-of-the-bridge",
        ),
    ],
)  # fmt: skip
async def test_dialing_permissions_refuse_before_any_invite(
    tmp_path: Path,
    account: dict[str, Any],
    bridge: dict[str, Any],
    refused: str,
    allowed: str,
    rule: str,
) -> None:
    async with SippServer("operator_by_number", tmp_path, calls=1, duration_ms=None) as sipp:
        host, port = sipp.address
        async with running_platform(tmp_path, trunk=f"{host}:{port}") as running:
            if account:
                await put(running, "settings/dialing", account)
            if bridge:
                await put(running, f"numbers/{running.bridge}/dialing", bridge)
            no = await outbound(running, refused)
            yes = await outbound(running, allowed)
        result = await sipp.wait(10)
    assert_refused(no, "NOTALLOWED", rule, refused)
    assert (yes["status"], yes["rule"]) == ("ANSWER", None)
    assert_only_invite_to(result, allowed, refused)


async def test_the_outgoing_blocklist_refuses_click_to_call_before_the_agent_rings(
    tmp_path: Path,
) -> None:
    async with SippServer("operator_by_number", tmp_path, calls=1, duration_ms=None) as sipp:
        host, port = sipp.address
        async with running_platform(tmp_path, trunk=f"{host}:{port}") as running:
            response = await running.client.post(
                f"/v1/{running.sid}/contacts/blocklisted",
                json={"contacts": [{"blocklist_status": 1, "numbers": [AIRTEL]}]},
                headers=running.headers,
            )
            assert response.status_code == 200, response.text
            # Blocklisted, but the account does not apply it to outgoing calls yet: dialled.
            yes = await outbound(running, AIRTEL)
            await put(running, "settings/dialing", {"block_outgoing": True})
            # The engine keeps settings for 5 s; this test will not wait for that.
            running.platform.engine.pre_dial.forget()
            call_id = await running.click_to_call(**{"from": AGENT, "to": AIRTEL})
            no = await running.wait_for(call_id)
        result = await sipp.wait(10)
    assert_refused(no, "NOTALLOWED", "blocklist", AIRTEL)
    assert yes["status"] == "ANSWER"
    assert_only_invite_to(result, AIRTEL, AGENT)  # the agent was never rung


async def test_dnd_refuses_promotional_calls_and_lets_transactional_ones_through(
    tmp_path: Path,
) -> None:
    registry = FakeDnd({AIRTEL})
    async with SippServer("operator_by_number", tmp_path, calls=1, duration_ms=None) as sipp:
        host, port = sipp.address
        async with running_platform(tmp_path, trunk=f"{host}:{port}") as running:
            running.platform.engine.pre_dial.dnd = registry
            await put(running, "settings/dialing", {"promotional": True, "dnd_category": 3})
            by_account = await outbound(running, AIRTEL)  # promotional by the account's default
            by_call = await outbound(running, AIRTEL, type="promotional")
            yes = await outbound(running, AIRTEL, promotional=False)  # transactional
        result = await sipp.wait(10)
    for no in (by_account, by_call):
        assert_refused(no, "DND", "dnd", AIRTEL)
    assert (yes["status"], yes["rule"]) == ("ANSWER", None)
    assert registry.asked == [(AIRTEL, 3), (AIRTEL, 3)]  # the transactional call: not asked
    # The only INVITE SIPp saw was the transactional call's, to the same number.
    result.assert_ok(calls=1)
    invites = result.received("INVITE")
    assert len(invites) == 1 and AIRTEL in (invites[0].request_uri or "")


async def test_the_real_registry_in_the_data_directory_is_the_one_serve_checks(
    tmp_path: Path,
) -> None:
    """A registry imported into <data dir>/dnd: a number that accepts the account's category
    is called, one that does not is refused DND, a promotional call first then the other."""
    listing = tmp_path / "registry.csv"
    listing.write_text(f"number,categories\n{AIRTEL},0\n{IDEA},3|7\n")
    import_files(tmp_path / "data" / DND_DIR, [listing])
    async with SippServer("operator_by_number", tmp_path, calls=1, duration_ms=None) as sipp:
        host, port = sipp.address
        async with running_platform(tmp_path, trunk=f"{host}:{port}") as running:
            await put(running, "settings/dialing", {"dnd_category": 3})
            no = await outbound(running, AIRTEL, promotional=True)  # fully blocked
            yes = await outbound(running, IDEA, type="promotional")  # accepts category 3
        result = await sipp.wait(10)
    assert_refused(no, "DND", "dnd", AIRTEL)
    assert (yes["status"], yes["rule"]) == ("ANSWER", None)
    assert_only_invite_to(result, IDEA, AIRTEL)


async def test_refused_calls_end_at_once_while_the_bridge_is_full(tmp_path: Path) -> None:
    """A 1-channel bridge held by an answered call, an allowed call waiting for it: a DND
    call and a NOTALLOWED call placed behind them end at once (not MAX-USE when their queue
    time runs out), no INVITE leaves for them, and the answered call keeps its channel."""
    listing = tmp_path / "registry.txt"
    listing.write_text(f"{AIRTEL}\n")
    import_files(tmp_path / "data" / DND_DIR, [listing])
    async with SippServer("operator_by_number", tmp_path, calls=1, duration_ms=None) as sipp:
        host, port = sipp.address
        async with running_platform(tmp_path, trunk=f"{host}:{port}") as running:
            await put(running, f"numbers/{running.bridge}/capacity", {"channels": 1})
            await put(running, "settings/dialing", {"countries": ["IN"]})
            busy = await running.outbound(to=IDEA)  # answers and stays up (no target)
            await running.wait_for(busy, state="answered")
            waiting = await running.outbound(to=AGENT, queue_timeout=60)
            placed = asyncio.get_running_loop().time()
            dnd = await running.outbound(to=AIRTEL, type="promotional", queue_timeout=60)
            abroad = await running.outbound(to=ABROAD, queue_timeout=60)
            refused = [await running.wait_for(call_id, timeout=10) for call_id in (dnd, abroad)]
            took = asyncio.get_running_loop().time() - placed
            engine = running.platform.engine
            holders = engine.channels.holders()
            still = [await running.record(call_id) for call_id in (busy, waiting)]
            assert (await running.cancel(waiting)).status_code < 300
            assert (await running.cancel(busy)).status_code < 300  # our BYE ends SIPp's call
            ended = await running.wait_for(busy, timeout=10)
            gone = await running.wait_for(waiting, timeout=10)
        result = await sipp.wait(10)
    assert_refused(refused[0], "DND", "dnd", AIRTEL)
    assert_refused(refused[1], "NOTALLOWED", "permissions.country", ABROAD)
    assert took < 5  # at once; a wait for the channel would have lasted 60 s
    # Meanwhile the answered call held the only channel, the allowed one still waited.
    assert holders == {busy}
    assert [record["state"] for record in still] == ["answered", "queued"]
    assert still[1]["queue_position"] == 1
    assert ended["status"] == "ANSWER" and len(ended["legs"]) == 1
    assert (gone["status"], gone["legs"]) == ("CANCEL", [])
    assert_only_invite_to(result, IDEA, AIRTEL, ABROAD, AGENT)
