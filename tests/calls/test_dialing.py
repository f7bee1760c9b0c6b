"""Waiting for the first of several rung legs to answer (calls/dialing.py first_answer)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, cast

from voiceplane.calls.dialing import first_answer
from voiceplane.calls.flag import Flag
from voiceplane.calls.tracker import LegTrack
from voiceplane.sip.ua import OutboundCall, Progress


class FakeCall:
    """What first_answer reads of a call: its answered future and its progress."""

    def __init__(self) -> None:
        self._answered: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self.watching = 0

    def answered(self) -> asyncio.Future[bool]:
        return self._answered

    def watch_progress(self, listener: Callable[[Progress], None]) -> Callable[[], None]:
        self.watching += 1

        def stop() -> None:
            self.watching -= 1

        return stop


def tries(*calls: FakeCall) -> list[tuple[OutboundCall, LegTrack]]:
    return [(cast(OutboundCall, call), cast(LegTrack, object())) for call in calls]


def no_progress(_track: Any) -> Callable[[Progress], None]:
    return lambda _progress: None


async def test_the_first_to_answer_wins_and_stops_being_watched() -> None:
    a, b = FakeCall(), FakeCall()
    attempts = tries(a, b)
    asyncio.get_running_loop().call_soon(a._answered.set_result, False)  # a: busy
    asyncio.get_running_loop().call_later(0.01, b._answered.set_result, True)
    winner = await asyncio.wait_for(first_answer(attempts, Flag(), no_progress), 1)
    assert winner == attempts[1]
    assert a.watching == b.watching == 0


async def test_none_when_every_try_ends_unanswered() -> None:
    a, b = FakeCall(), FakeCall()
    a._answered.set_result(False)
    asyncio.get_running_loop().call_soon(b._answered.set_result, False)
    assert await asyncio.wait_for(first_answer(tries(a, b), Flag(), no_progress), 1) is None


async def test_none_once_stopped_and_the_calls_futures_are_left_alone() -> None:
    a = FakeCall()
    stop = Flag()
    asyncio.get_running_loop().call_soon(stop.set)
    assert await asyncio.wait_for(first_answer(tries(a), stop, no_progress), 1) is None
    assert not a._answered.done()  # shared with other waiters: never cancelled


async def test_an_answer_that_comes_with_the_stop_still_wins() -> None:
    a = FakeCall()
    stop = Flag()
    attempts = tries(a)

    def both() -> None:
        stop.set()
        a._answered.set_result(True)

    asyncio.get_running_loop().call_soon(both)
    assert await asyncio.wait_for(first_answer(attempts, stop, no_progress), 1) == attempts[0]
