"""The engine's pre-dial gate: settings read once per account and bridge for many calls,
kept for the TTL, a failed read not kept; the blocklist read only when it applies."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy.orm import Session

from voiceplane.calls.predial import PreDialGate, dial_request, status_of
from voiceplane.calls.status import Status
from voiceplane.policy.checks import AccountSettings, CallPolicy
from voiceplane.policy.permissions import DialingRules
from voiceplane.policy.refusal import Refusal, RefusalKind
from voiceplane.store.queue import CallCommand

BRIDGE = "+918047100000"
CUSTOMER = "+919876500111"
ABROAD = "+14155550111"


class FakeWriter:
    """Runs each job on a fake session that answers what the gate asks."""

    def __init__(self, policy: CallPolicy, blocklisted: set[str] | None = None) -> None:
        self.policy = policy
        self.blocklisted = blocklisted or set()
        self.jobs: list[str] = []
        self.fail_next = False

    def submit(self, job: Callable[[Session], Any]) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        name = job.func.__name__  # type: ignore[attr-defined]
        self.jobs.append(name)

        def resolve() -> None:
            if self.fail_next:
                self.fail_next = False
                future.set_exception(RuntimeError("the store is away"))
            elif name == "_policy":
                future.set_result(self.policy)
            else:
                numbers = job.keywords["numbers"]  # type: ignore[attr-defined]
                future.set_result({n for n in numbers if n in self.blocklisted})

        asyncio.get_running_loop().call_soon(resolve)
        return future


def command(*to: str, service: str = "outbound", agents: tuple[str, ...] = ()) -> CallCommand:
    now = datetime.now(UTC)
    return CallCommand(
        call_id="VC1", account_id=7, service=service, from_numbers=agents, to_numbers=to,
        bridge=BRIDGE, target=None, ring_timeout=None, retry=0, retry_interval=60, attempts=1,
        created_at=now, start_time=now, cancel_requested=False, legs=(),
    )  # fmt: skip


def gate(writer: FakeWriter, ttl_s: float = 5.0) -> PreDialGate:
    return PreDialGate(writer, ttl_s=ttl_s)  # type: ignore[arg-type]


async def test_a_burst_reads_the_settings_once() -> None:
    writer = FakeWriter(CallPolicy())
    checks = gate(writer)
    results = await asyncio.gather(*(checks.check(command(CUSTOMER)) for _ in range(50)))
    assert results == [None] * 50
    assert writer.jobs == ["_policy"]


async def test_settings_are_read_again_after_the_ttl_or_forget() -> None:
    writer = FakeWriter(CallPolicy())
    checks = gate(writer, ttl_s=0.05)
    await checks.check(command(CUSTOMER))
    await asyncio.sleep(0.06)
    await checks.check(command(CUSTOMER))
    checks.forget()
    await checks.check(command(CUSTOMER))
    assert writer.jobs == ["_policy"] * 3


async def test_a_failed_read_is_not_kept() -> None:
    writer = FakeWriter(CallPolicy())
    writer.fail_next = True
    checks = gate(writer)
    with pytest.raises(RuntimeError):
        await checks.check(command(CUSTOMER))
    assert await checks.check(command(CUSTOMER)) is None
    assert writer.jobs == ["_policy", "_policy"]


async def test_refusals_and_their_statuses() -> None:
    strict = CallPolicy(AccountSettings(rules=DialingRules.build(countries=["IN"])))
    refusal = await gate(FakeWriter(strict)).check(command(ABROAD))
    assert refusal is not None and status_of(refusal) is Status.NOTALLOWED
    dnd = Refusal(RefusalKind.DO_NOT_DISTURB, "dnd", "on the registry")
    assert status_of(dnd) is Status.DND
    assert {status_of(Refusal(kind, "r", "")) for kind in RefusalKind} <= {
        status for status in Status if status.decided_before_dialing
    }


async def test_the_blocklist_is_read_only_for_accounts_that_apply_it() -> None:
    writer = FakeWriter(CallPolicy(), blocklisted={CUSTOMER})
    assert await gate(writer).check(command(CUSTOMER)) is None
    assert writer.jobs == ["_policy"]
    writer = FakeWriter(CallPolicy(AccountSettings(block_outgoing=True)), {CUSTOMER})
    refusal = await gate(writer).check(command(CUSTOMER))
    assert refusal is not None and refusal.rule == "blocklist"
    assert writer.jobs == ["_policy", "_blocklisted"]


def test_click_to_call_dials_its_agents_too() -> None:
    request = dial_request(command(CUSTOMER, service="click2call", agents=("+919812345111",)))
    assert request.dialled == ("+919812345111", CUSTOMER)
    assert request.customers == (CUSTOMER,)
    outbound = dial_request(command(CUSTOMER, agents=("+919812345111",)))
    assert outbound.dialled == (CUSTOMER,)
