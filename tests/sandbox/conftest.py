"""A sandbox operator on a free loopback port, with short timers, for the SIP tests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager

import pytest

from tests.support.sipp import free_port
from voiceplane.config import SandboxSettings
from voiceplane.sandbox.operator import SandboxCall, SandboxOperator
from voiceplane.sip.timers import TimerValues

# A short T1 so that a lost ACK or an unanswered BYE cannot hold a test for 32 s.
FAST_TIMERS = TimerValues(t1=0.05, t2=0.4, t4=0.5)
FAST = {"answer_after_ms": 100, "reject_after_ms": 50, "hold_s": 0.5}

OperatorFactory = Callable[..., Awaitable[SandboxOperator]]


@asynccontextmanager
async def running_operator(**settings: object) -> AsyncIterator[SandboxOperator]:
    """A started operator on a port free for UDP and TCP; ``settings`` override ``FAST``."""
    values: dict[str, object] = {**FAST, "listen": f"127.0.0.1:{free_port('both')}"}
    values.update(settings)
    operator = SandboxOperator(SandboxSettings.model_validate(values), FAST_TIMERS)
    await operator.start()
    try:
        yield operator
    finally:
        await operator.stop()


@pytest.fixture
async def make_operator() -> AsyncIterator[OperatorFactory]:
    """``await make_operator(hold_s=0, rules=[...])``: started now, stopped after the test."""
    async with AsyncExitStack() as stack:

        async def make(**settings: object) -> SandboxOperator:
            return await stack.enter_async_context(running_operator(**settings))

        yield make


async def wait_for_call(
    operator: SandboxOperator,
    number: str,
    done: Callable[[SandboxCall], bool] = lambda call: call.ended,
    timeout: float = 5.0,
) -> SandboxCall:
    """The latest call to ``number`` once ``done`` holds for it (by default: it has ended)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        calls = operator.calls_for(number)
        if calls and done(calls[-1]):
            return calls[-1]
        if loop.time() > deadline:
            raise AssertionError(f"no call to {number} reached the state asked for: {calls}")
        await asyncio.sleep(0.01)
