"""RFC 3261 timer values and the sans-IO timer queue (timers.py)."""

from __future__ import annotations

from collections.abc import Callable

from hypothesis import given, settings
from hypothesis import strategies as st

from voiceplane.sip.timers import Timer, TimerQueue, TimerValues


def appends(fired: list[int], item: int) -> Callable[[float], None]:
    """A timer callback that records ``item`` when it fires."""
    return lambda now: fired.append(item)


def test_default_values_follow_rfc3261_table_4() -> None:
    v = TimerValues()
    assert (v.t1, v.t2, v.t4) == (0.5, 4.0, 5.0)
    assert v.b == v.f == v.h == v.j == v.l == v.m == 32.0  # 64*T1
    assert v.d == 32.0  # "> 32 s" for unreliable transports


def test_derived_values_scale_with_t1() -> None:
    v = TimerValues(t1=1.0, t2=8.0)
    assert v.b == v.f == v.h == v.j == v.l == v.m == 64.0
    assert v.d == 64.0
    fast = TimerValues(t1=0.1)
    assert fast.b == 6.4
    assert fast.d == 32.0  # timer D never goes below 32 s


def test_fire_due_runs_timers_in_deadline_order() -> None:
    q = TimerQueue()
    fired: list[tuple[str, float]] = []
    q.arm(3.0, lambda now: fired.append(("c", now)))
    q.arm(1.0, lambda now: fired.append(("a", now)))
    q.arm(2.0, lambda now: fired.append(("b", now)))
    assert len(q) == 3
    assert q.next_deadline() == 1.0
    assert q.fire_due(0.999) == 0
    assert q.fire_due(2.0) == 2
    assert fired == [("a", 2.0), ("b", 2.0)]  # the callback gets the time it was fired at
    assert q.next_deadline() == 3.0 and len(q) == 1
    assert q.fire_due(10.0) == 1
    assert q.next_deadline() is None and len(q) == 0


def test_equal_deadlines_fire_in_the_order_they_were_armed() -> None:
    q = TimerQueue()
    fired: list[int] = []
    for i in range(5):
        q.arm(1.0, appends(fired, i))
    q.fire_due(1.0)
    assert fired == [0, 1, 2, 3, 4]


def test_cancelled_timers_never_fire_and_are_skipped() -> None:
    q = TimerQueue()
    fired: list[str] = []
    first = q.arm(1.0, lambda now: fired.append("first"))
    q.arm(2.0, lambda now: fired.append("second"))
    assert isinstance(first, Timer) and first.active
    first.cancel()
    first.cancel()  # idempotent
    assert not first.active
    assert len(q) == 1
    assert q.next_deadline() == 2.0
    assert q.fire_due(5.0) == 1
    assert fired == ["second"]


def test_a_fired_timer_is_inactive_and_cancel_is_harmless() -> None:
    q = TimerQueue()
    timer = q.arm(1.0, lambda now: None)
    q.fire_due(1.0)
    assert not timer.active
    timer.cancel()
    assert q.fire_due(2.0) == 0


def test_callbacks_may_arm_timers_that_fire_in_the_same_call() -> None:
    q = TimerQueue()
    fired: list[str] = []

    def first(now: float) -> None:
        fired.append("first")
        q.arm(5.0, lambda now: fired.append("due"))

    def second(now: float) -> None:
        q.arm(now + 1.0, lambda now: fired.append("not yet"))

    q.arm(1.0, first)
    q.arm(2.0, second)
    assert q.fire_due(10.0) == 3
    assert fired == ["first", "due"]
    assert q.next_deadline() == 11.0  # armed from the ``now`` the callback was given


def test_callbacks_may_cancel_other_due_timers() -> None:
    q = TimerQueue()
    fired: list[str] = []
    later = q.arm(1.0, lambda now: fired.append("later"))
    q.arm(0.5, lambda now: later.cancel())
    assert q.fire_due(1.0) == 1
    assert fired == []


def test_cancelled_timers_are_dropped_from_the_heap_once_they_are_most_of_it() -> None:
    q = TimerQueue()
    fired: list[int] = []
    timers = [q.arm(100.0 + i, appends(fired, i)) for i in range(1000)]
    for timer in timers[:900]:
        timer.cancel()
    assert len(q) == 100
    assert q.size < 600  # compacted at least once: not all 900 dead entries kept
    assert q.next_deadline() == 1000.0  # the first live one
    assert q.fire_due(2000.0) == 100
    assert fired == list(range(900, 1000))
    assert len(q) == 0 and q.size == 0


def test_a_callback_cancelling_many_timers_during_fire_due_is_safe() -> None:
    q = TimerQueue()
    fired: list[int] = []
    later = [q.arm(5.0 + i, appends(fired, i)) for i in range(600)]

    def cancel_most(now: float) -> None:
        for timer in later[:-10]:
            timer.cancel()  # compacts the heap fire_due is walking

    q.arm(1.0, cancel_most)
    assert q.fire_due(10_000.0) == 11
    assert fired == list(range(590, 600))
    assert len(q) == 0


_OPS = st.lists(
    st.one_of(
        st.tuples(st.just("arm"), st.integers(0, 50)),
        st.tuples(st.just("cancel"), st.integers(0, 10_000)),
        st.tuples(st.just("fire"), st.integers(0, 50)),
    ),
    max_size=400,
)


@settings(max_examples=200)
@given(_OPS)
def test_the_queue_fires_what_a_plain_list_would(ops: list[tuple[str, int]]) -> None:
    """Against a model with no heap and no compaction: the same timers fire, in order."""
    q = TimerQueue()
    fired: list[int] = []
    timers: list[Timer] = []
    model: list[tuple[float, int]] = []  # (deadline, id) of the live timers
    expected: list[int] = []
    clock = 0.0
    for op, value in ops:
        if op == "arm":
            ident = len(timers)
            deadline = clock + value
            timers.append(q.arm(deadline, appends(fired, ident)))
            model.append((deadline, ident))
        elif op == "cancel" and timers:
            ident = value % len(timers)
            timers[ident].cancel()
            model = [entry for entry in model if entry[1] != ident]
        elif op == "fire":
            clock += value
            due = sorted(entry for entry in model if entry[0] <= clock)
            expected += [ident for _deadline, ident in due]
            model = [entry for entry in model if entry[0] > clock]
            assert q.fire_due(clock) == len(due)
        assert len(q) == len(model)
        assert q.next_deadline() == (min(model)[0] if model else None)
    assert fired == expected


# --- lanes: timers armed a fixed duration ahead ---------------------------------------------------


class Target:
    """What ``arm_after`` calls back: records (name, now) on a shared list."""

    def __init__(self, name: str, fired: list[tuple[str, float]]) -> None:
        self.name = name
        self.fired = fired

    def expire(self, now: float) -> None:
        self.fired.append((self.name, now))


def test_lane_timers_fire_in_the_order_armed_and_count_as_timers() -> None:
    q = TimerQueue()
    fired: list[tuple[str, float]] = []
    q.arm_after(0.0, 32.0, Target.expire, Target("a", fired))
    q.arm_after(1.0, 32.0, Target.expire, Target("b", fired))
    q.arm_after(1.0, 5.0, Target.expire, Target("k", fired))
    q.arm(10.0, lambda now: fired.append(("heap", now)))
    assert len(q) == 4 and q.next_deadline() == 6.0
    assert q.fire_due(31.9) == 2
    assert fired == [("heap", 31.9), ("k", 31.9)]  # the heap's due timers, then the lanes'
    assert q.next_deadline() == 32.0
    assert q.fire_due(33.0) == 2 and fired[2:] == [("a", 33.0), ("b", 33.0)]
    assert len(q) == 0 and q.next_deadline() is None


def test_a_lane_timer_armed_with_an_earlier_clock_still_fires_on_time() -> None:
    q = TimerQueue()
    fired: list[tuple[str, float]] = []
    q.arm_after(10.0, 32.0, Target.expire, Target("late", fired))
    q.arm_after(5.0, 32.0, Target.expire, Target("early", fired))  # the clock went back
    assert q.next_deadline() == 37.0
    q.fire_due(37.0)
    assert fired == [("early", 37.0)]
    q.fire_due(42.0)
    assert fired == [("early", 37.0), ("late", 42.0)]


def test_a_lane_callback_may_arm_in_a_new_lane() -> None:
    q = TimerQueue()
    fired: list[tuple[str, float]] = []

    class Chain(Target):
        def expire(self, now: float) -> None:
            super().expire(now)
            q.arm_after(now, 1.0, Target.expire, Target("next", fired))

    q.arm_after(0.0, 5.0, Chain.expire, Chain("first", fired))
    q.fire_due(5.0)
    q.fire_due(6.0)
    assert fired == [("first", 5.0), ("next", 6.0)]


@settings(max_examples=200)
@given(
    st.lists(
        st.one_of(
            st.tuples(st.just("arm"), st.integers(0, 50)),
            st.tuples(st.just("after"), st.sampled_from([5, 32])),
            st.tuples(st.just("fire"), st.integers(0, 50)),
        ),
        max_size=300,
    )
)
def test_lanes_and_heap_fire_what_a_plain_list_would(ops: list[tuple[str, int]]) -> None:
    """Due heap timers fire in deadline order, then each lane's in the order armed."""
    q = TimerQueue()
    fired: list[tuple[str, float]] = []
    heap: list[tuple[float, int]] = []
    lanes: dict[int, list[tuple[float, int]]] = {}
    expected: list[tuple[str, float]] = []
    clock = 0.0
    for n, (op, value) in enumerate(ops):
        if op == "arm":
            heap.append((clock + value, n))
            q.arm(clock + value, Target(str(n), fired).expire)
        elif op == "after":
            lanes.setdefault(value, []).append((clock + value, n))
            q.arm_after(clock, value, Target.expire, Target(str(n), fired))
        else:
            clock += value
            due = sorted(entry for entry in heap if entry[0] <= clock)
            heap = [entry for entry in heap if entry[0] > clock]
            for lane in lanes.values():
                due += [entry for entry in lane if entry[0] <= clock]
                lane[:] = [entry for entry in lane if entry[0] > clock]
            expected += [(str(ident), clock) for _, ident in due]
            assert q.fire_due(clock) == len(due)
        pending = heap + [entry for lane in lanes.values() for entry in lane]
        assert len(q) == len(pending)
        assert q.next_deadline() == (min(pending)[0] if pending else None)
    assert fired == expected
