"""The shared ticker, on a clock the test drives."""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable

import pytest

from voiceplane.media.ticker import Ticker

INTERVAL = 0.02


class FakeHandle:
    def __init__(self) -> None:
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class FakeClock:
    """A loop clock: timers run when the test advances time, each ``lateness(when)`` late."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self.lateness: Callable[[float], float] = lambda when: 0.0
        self._timers: list[tuple[float, int, Callable[[], object], FakeHandle]] = []
        self._order = itertools.count()

    def time(self) -> float:
        return self.now

    def call_at(self, when: float, callback: Callable[[], object], /) -> FakeHandle:
        handle = FakeHandle()
        heapq.heappush(self._timers, (when, next(self._order), callback, handle))
        return handle

    @property
    def pending(self) -> int:
        return sum(not t[3].cancelled for t in self._timers)

    def run_until(self, end: float) -> None:
        while self._timers and self._timers[0][0] <= end:
            when, _, callback, handle = heapq.heappop(self._timers)
            if handle.cancelled:
                continue
            self.now = max(self.now, when + self.lateness(when))
            callback()
        self.now = max(self.now, end)


class Member:
    def __init__(self, clock: FakeClock, frames: int, *, fail_at: int | None = None) -> None:
        self.clock = clock
        self.frames = frames
        self.fail_at = fail_at
        self.deadlines: list[float] = []
        self.fired_at: list[float] = []

    def tick(self, deadline: float) -> bool:
        if len(self.deadlines) == self.fail_at:
            raise RuntimeError("broken member")
        self.deadlines.append(deadline)
        self.fired_at.append(self.clock.now)
        return len(self.deadlines) >= self.frames


def gaps(times: list[float]) -> list[float]:
    return [round(b - a, 6) for a, b in itertools.pairwise(times)]


def test_all_members_share_one_grid_without_drift() -> None:
    clock = FakeClock()
    ticker = Ticker(INTERVAL, clock)
    a, b = Member(clock, 1000), Member(clock, 1000)
    ticker.add(a)
    ticker.add(b)
    assert clock.pending == 1  # one timer for everybody
    clock.run_until(clock.now + 30)
    assert len(a.deadlines) == 1000
    assert a.deadlines == b.deadlines
    # Each deadline is computed from the origin, so the thousandth is still on the grid.
    assert a.deadlines[-1] == pytest.approx(1000.0 + 999 * INTERVAL, abs=1e-9)
    assert set(gaps(a.deadlines)) == {INTERVAL}
    assert clock.pending == 0 and len(ticker) == 0  # idle: no timer left running


def test_a_late_tick_does_not_shift_the_ones_after() -> None:
    clock = FakeClock()
    clock.lateness = lambda when: 0.007 if abs(when - 1000.1) < 1e-9 else 0.0
    ticker = Ticker(INTERVAL, clock)
    member = Member(clock, 10)
    ticker.add(member)
    clock.run_until(clock.now + 1)
    assert gaps(member.fired_at) == [0.02] * 4 + [0.027, 0.013] + [0.02] * 3
    assert ticker.skipped == 0


def test_a_stalled_loop_skips_ticks_instead_of_bursting() -> None:
    clock = FakeClock()
    clock.lateness = lambda when: 0.075 if abs(when - 1000.04) < 1e-9 else 0.0
    ticker = Ticker(INTERVAL, clock)
    member = Member(clock, 6)
    ticker.add(member)
    clock.run_until(clock.now + 1)
    # Fired at 1000.115 instead of 1000.04: the ticks of .06, .08 and .10 are gone, and the
    # next frame waits for the grid (.12) instead of following at once.
    assert ticker.skipped == 3
    assert gaps(member.fired_at) == [0.02, 0.095, 0.005, 0.02, 0.02]
    assert all(round((t - 1000.0) / INTERVAL, 6) % 1 == 0 for t in member.deadlines)


def test_members_join_on_the_running_grid_and_leave_when_done() -> None:
    clock = FakeClock()
    ticker = Ticker(INTERVAL, clock)
    first = Member(clock, 5)
    ticker.add(first)
    clock.run_until(1000.03)
    second = Member(clock, 2)
    ticker.add(second)
    assert clock.pending == 1
    clock.run_until(1000.2)
    assert second.deadlines == pytest.approx([1000.04, 1000.06])
    assert len(first.deadlines) == 5 and clock.pending == 0
    # Idle, a new member starts a new grid at once.
    clock.run_until(1003.333)
    third = Member(clock, 2)
    ticker.add(third)
    clock.run_until(1004)
    assert third.deadlines == pytest.approx([1003.333, 1003.353])


def test_discard_stops_the_timer_when_the_last_member_leaves() -> None:
    clock = FakeClock()
    ticker = Ticker(INTERVAL, clock)
    member = Member(clock, 100)
    ticker.add(member)
    clock.run_until(1000.05)
    ticker.discard(member)
    ticker.discard(member)  # twice is fine
    assert clock.pending == 0
    clock.run_until(1001)
    assert len(member.deadlines) == 3


def test_a_failing_member_is_dropped_and_the_others_go_on() -> None:
    clock = FakeClock()
    ticker = Ticker(INTERVAL, clock)
    broken, good = Member(clock, 10, fail_at=2), Member(clock, 10)
    ticker.add(broken)
    ticker.add(good)
    clock.run_until(1001)
    assert len(broken.deadlines) == 2
    assert len(good.deadlines) == 10


def test_a_member_added_during_a_tick_does_not_start_a_second_timer() -> None:
    clock = FakeClock()
    ticker = Ticker(INTERVAL, clock)
    late = Member(clock, 3)

    class Adder(Member):
        def tick(self, deadline: float) -> bool:
            ticker.add(late)
            return super().tick(deadline)

    adder = Adder(clock, 1)
    ticker.add(adder)
    clock.run_until(1000.001)
    assert clock.pending == 1
    clock.run_until(1001)
    assert late.deadlines == pytest.approx([1000.02, 1000.04, 1000.06])


def test_the_interval_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        Ticker(0, FakeClock())
