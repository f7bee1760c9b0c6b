"""The one-way flag the call flows race against answers and hangups (calls/flag.py)."""

from __future__ import annotations

import asyncio

from voiceplane.calls.flag import Flag


async def test_the_future_is_done_once_set_and_set_is_idempotent() -> None:
    flag = Flag()
    future = flag.future
    assert not flag.is_set() and not future.done()
    flag.set()
    flag.set()
    assert flag.is_set() and future.done() and flag.future is future


async def test_set_before_the_future_is_asked_for() -> None:
    flag = Flag()
    flag.set()
    assert flag.future.done()
    await asyncio.wait_for(flag.wait(), 1)


async def test_asyncio_wait_takes_it_without_a_task_and_leaves_it_uncancelled() -> None:
    flag = Flag()
    other: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    done, _ = await asyncio.wait((flag.future, other), timeout=0.01)
    assert not done
    asyncio.get_running_loop().call_soon(flag.set)
    done, pending = await asyncio.wait(
        (flag.future, other), return_when=asyncio.FIRST_COMPLETED
    )
    assert done == {flag.future} and pending == {other}


async def test_a_cancelled_waiter_does_not_cancel_the_flag() -> None:
    flag = Flag()
    waiter = asyncio.ensure_future(flag.wait())
    await asyncio.sleep(0)
    waiter.cancel()
    await asyncio.gather(waiter, return_exceptions=True)
    assert not flag.future.cancelled()
    flag.set()
    assert flag.future.done() and not flag.future.cancelled()
