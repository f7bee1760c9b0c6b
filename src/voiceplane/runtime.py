"""Tuning of a long-running voiceplane process (``serve``, the sandbox operator)."""

from __future__ import annotations

import asyncio
import gc
import sys
from collections.abc import Callable
from typing import Final

__all__ = ["GC_THRESHOLDS", "SWITCH_INTERVAL_S", "event_loop_factory", "tune_gc", "tune_threads"]

# The cyclic collector's thresholds (young, middle, old); Python's are (700, 10, 10).
#
# Young: a collection every 700 allocations ran thousands of times a second in a process
# that parses SIP and builds records (about a tenth of the SIP exchange's CPU). Every
# 10,000 is still often enough to free cycles promptly.
#
# Middle and old: what stalls the event loop is not how often the collector runs but how
# many live objects one pass walks, since it holds the GIL throughout. Under load most
# live objects are calls in progress and SIP transactions lingering for their 32 s timers
# (RFC 3261 timers D, J, K, M): 100-140 thousand at 100 click-to-calls/s, and a pass over
# them took 70-280 ms here (bench/api_calls.py, gc DEBUG_STATS); a lingering transaction
# now keeps a few objects, not dozens, so about a third as many. With Python's defaults
# the middle generation (ten young passes' survivors) took 70-120 ms and a full pass came
# every few seconds; a middle pass after every second young one keeps each pass to a few
# young passes' survivors (15-35 ms), and a full pass only after 100 middle ones (some two
# million allocations) makes the long stalls rare. Garbage cycles that lived long enough
# to reach the old generation wait that long to be freed.
GC_THRESHOLDS: Final = (10_000, 1, 100)


def tune_gc() -> None:
    """Keep what start-up made (modules, apps, the ORM's registries, the dial plan: most of
    the process's objects) out of the cyclic collector's passes for good, since they live
    as long as the process and scanning them again and again stalled the event loop for
    tens of ms; and set the thresholds of ``GC_THRESHOLDS``."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


# How long a thread that wants the GIL waits before the running one must hand it over
# (Python's default: 5 ms). serve's store writer lets go of the GIL around every SQLite
# step and must win it back from the busy event loop each time, so a batch of a few
# statements could take 30-60 ms of wall time for 2-7 ms of CPU, and an API POST waited for
# that. At 1 ms, bench/api_calls.py at 300 click-to-calls/s gave a p99 of 122-187 ms
# against 237-539 ms (runs taking turns on a quiet machine).
SWITCH_INTERVAL_S: Final = 0.001


def tune_threads() -> None:
    """Hand the GIL over sooner (see ``SWITCH_INTERVAL_S``): for a process whose event loop
    works with threads it waits on (serve and its store writer)."""
    sys.setswitchinterval(SWITCH_INTERVAL_S)


def event_loop_factory() -> Callable[[], asyncio.AbstractEventLoop]:
    """New event loops of uvloop when it is installed, else of asyncio's default kind."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop
    return uvloop.new_event_loop
