"""One timer for every session that plays: a frame each for all of them every 20 ms.

A timer per session (300 callers: 15,000 wake-ups a second, each resuming a coroutine)
costs more than the packets themselves and lets the sessions drift against each other.
Here one timer fires on an absolute grid (origin + n * interval, never "now + interval", so
scheduling delays never add up) and calls ``tick(deadline)`` on every member in turn.

A tick that comes late is served once, not caught up: a burst of back-to-back frames
would be a worse interval for every caller than one late frame. So ticks whose time has
passed by the end of a tick (the loop stalled) are skipped, and the next is the next one
on the grid. With no member the timer
stops; the next ``add`` starts a new grid from that moment, with an immediate first tick.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Protocol

__all__ = ["Clock", "Tickable", "Ticker"]

log = logging.getLogger(__name__)


class Handle(Protocol):
    def cancel(self) -> None: ...


class Clock(Protocol):
    """What the ticker needs of an event loop (an asyncio loop is one)."""

    def time(self) -> float: ...

    def call_at(self, when: float, callback: Callable[[], object], /) -> Handle: ...


class Tickable(Protocol):
    def tick(self, deadline: float) -> bool:
        """Do this period's work, due at ``deadline``; ``True`` when done (leave the ticker)."""
        ...


class Ticker:
    """Calls ``tick`` on each member every ``interval`` seconds, on one shared grid."""

    def __init__(self, interval: float, clock: Clock) -> None:
        if not interval > 0:
            raise ValueError(f"the tick interval must be positive, got {interval!r}")
        self.interval = interval
        self._clock = clock
        self._members: dict[Tickable, None] = {}  # a set that keeps the order of joining
        self._origin = 0.0
        self._index = 0  # the next tick is due at origin + index * interval
        self._handle: Handle | None = None
        self._firing = False  # inside _fire, which schedules the next tick itself
        self.ticks = 0  # ticks fired
        self.skipped = 0  # ticks whose time had passed before they could fire

    def __len__(self) -> int:
        return len(self._members)

    def add(self, member: Tickable) -> None:
        """Join: the member is ticked from the next tick on (at once if the timer was idle)."""
        self._members[member] = None
        if self._handle is None and not self._firing:
            self._origin, self._index = self._clock.time(), 0
            self._handle = self._clock.call_at(self._origin, self._fire)

    def discard(self, member: Tickable) -> None:
        """Leave; the timer stops when no member is left."""
        self._members.pop(member, None)
        if not self._members and self._handle is not None and not self._firing:
            self._handle.cancel()
            self._handle = None

    def _fire(self) -> None:
        deadline = self._origin + self._index * self.interval
        self.ticks += 1
        self._firing = True
        try:
            for member in list(self._members):
                if member not in self._members:
                    continue  # left during this tick
                try:
                    done = member.tick(deadline)
                except Exception:  # one broken member must not stop the others' audio
                    log.exception("ticker member %r failed; dropping it", member)
                    done = True
                if done:
                    self._members.pop(member, None)
        finally:
            self._firing = False
        if not self._members:
            self._handle = None
            return
        self._index += 1
        late = self._clock.time() - (self._origin + self._index * self.interval)
        if late > 0:  # that tick's time is gone: it and any others gone are skipped
            missed = math.floor(late / self.interval) + 1
            self.skipped += missed
            self._index += missed
        self._handle = self._clock.call_at(self._origin + self._index * self.interval, self._fire)
