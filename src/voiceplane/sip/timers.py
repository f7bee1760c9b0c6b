"""Timer values of RFC 3261 (section 17 and table 4) and a sans-IO timer queue.

The core never reads a clock. Whoever drives it passes ``now`` in, asks
``TimerQueue.next_deadline()`` when to come back, and calls ``fire_due(now)`` then.
"""

from __future__ import annotations

import heapq
import itertools
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final


@dataclass(frozen=True, slots=True)
class TimerValues:
    """T1, T2 and T4 in seconds, and the timers RFC 3261 derives from them."""

    t1: float = 0.5  # round-trip time estimate
    t2: float = 4.0  # longest retransmit interval for non-INVITE requests and INVITE responses
    t4: float = 5.0  # longest time a message stays in the network

    @property
    def b(self) -> float:  # INVITE transaction timeout
        return 64 * self.t1

    @property
    def d(self) -> float:  # wait for response retransmits (unreliable transport)
        return max(32.0, 64 * self.t1)

    @property
    def f(self) -> float:  # non-INVITE transaction timeout
        return 64 * self.t1

    @property
    def h(self) -> float:  # wait for ACK receipt
        return 64 * self.t1

    @property
    def j(self) -> float:  # wait for non-INVITE request retransmits
        return 64 * self.t1

    @property
    def l(self) -> float:  # noqa: E743  RFC 6026: wait for INVITE retransmits after a 2xx
        return 64 * self.t1

    @property
    def m(self) -> float:  # RFC 6026: wait for 2xx retransmits
        return 64 * self.t1


Callback = Callable[[float], None]
Method = Callable[[Any, float], object]  # called as method(target, now)


class Timer:
    """One armed timer; ``cancel`` makes it a no-op (its queue drops it later)."""

    __slots__ = ("deadline", "callback", "_queue")

    def __init__(self, deadline: float, callback: Callback, queue: TimerQueue | None = None):
        self.deadline = deadline
        self.callback: Callback | None = callback
        self._queue = queue

    def cancel(self) -> None:
        if self.callback is None:
            return
        self.callback = None
        if self._queue is not None:
            self._queue._cancelled()

    @property
    def active(self) -> bool:
        return self.callback is not None


# A cancelled timer stays in the heap until it would have fired or the heap is compacted.
# Most timers are cancelled (each transaction's timeout, B or F, once it gets its answer) and
# would linger for their 32 s: tens of thousands of dead entries at a few hundred calls a
# second, each walked by every pass of the cyclic collector. The heap is rebuilt without
# them once they are more than half of it, which costs O(1) per cancel over time.
_COMPACT_FROM: Final = 256


class TimerQueue:
    """A heap of timers with lazy cancellation, and first-in first-out lanes for the many
    timers armed a fixed duration ahead (see ``arm_after``)."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Timer]] = []
        self._seq = itertools.count()
        self._dead = 0  # cancelled timers still in the heap
        self._lanes: dict[float, deque[tuple[float, Method, object]]] = {}

    def arm(self, deadline: float, callback: Callback) -> Timer:
        timer = Timer(deadline, callback, self)
        heapq.heappush(self._heap, (deadline, next(self._seq), timer))
        return timer

    def arm_after(self, now: float, duration: float, method: Method, target: object) -> None:
        """Call ``method(target, now)`` once ``duration`` has passed since ``now``.

        For the tens of thousands of transactions that linger 32 s (or T4) after their
        exchange: with one duration, they fall due in the order they were armed, so a
        FIFO per duration keeps them, each one tuple where the heap needed a ``Timer``, a
        bound method and a heap entry, all walked by the cyclic collector. There is no
        cancelling: the target ignores a call it no longer needs. Lanes fire after the
        heap's due timers in the same ``fire_due``.
        """
        deadline = now + duration
        lane = self._lanes.get(duration)
        if lane is None:
            lane = self._lanes[duration] = deque()
        elif lane and lane[-1][0] > deadline:  # the clock went back: the heap keeps order

            def call(at: float) -> None:
                method(target, at)

            self.arm(deadline, call)
            return
        lane.append((deadline, method, target))

    def next_deadline(self) -> float | None:
        heap = self._heap
        while heap and heap[0][2].callback is None:
            heapq.heappop(heap)
            self._dead -= 1
        earliest = heap[0][0] if heap else None
        for lane in self._lanes.values():
            if lane and (earliest is None or lane[0][0] < earliest):
                earliest = lane[0][0]
        return earliest

    def fire_due(self, now: float) -> int:
        """Run every timer whose deadline is not after ``now``; returns how many ran."""
        heap = self._heap
        fired = 0
        while heap and heap[0][0] <= now:
            _, _, timer = heapq.heappop(heap)
            callback = timer.callback
            if callback is None:
                self._dead -= 1
                continue
            timer.callback = None
            callback(now)
            fired += 1
        for lane in list(self._lanes.values()):  # a callback may open a lane
            while lane and lane[0][0] <= now:
                _, method, target = lane.popleft()
                method(target, now)
                fired += 1
        return fired

    def __len__(self) -> int:
        return len(self._heap) - self._dead + sum(len(lane) for lane in self._lanes.values())

    @property
    def size(self) -> int:
        """Entries in the heap, cancelled ones included."""
        return len(self._heap)

    def _cancelled(self) -> None:
        self._dead += 1
        heap = self._heap
        if self._dead >= _COMPACT_FROM and 2 * self._dead > len(heap):
            # In place: fire_due may be walking this very list (a callback cancelling).
            heap[:] = [entry for entry in heap if entry[2].callback is not None]
            heapq.heapify(heap)
            self._dead = 0
