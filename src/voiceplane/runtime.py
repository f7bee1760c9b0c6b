"""Tuning of a long-running voiceplane process (``serve``, the sandbox operator)."""

from __future__ import annotations

import gc
from typing import Final

__all__ = ["GC_YOUNG_THRESHOLD", "tune_gc"]

# Python collects its youngest generation every 700 allocations by default; a process that
# parses SIP and builds records allocates that many in well under a millisecond, so the
# collector ran thousands of times a second (about a tenth of the SIP exchange's CPU, and
# pauses of up to 236 ms in serve under load, bench/api_calls.py). Every 20,000 is still
# often enough to free cycles promptly.
GC_YOUNG_THRESHOLD: Final = 20_000


def tune_gc() -> None:
    """Keep what start-up made (modules, apps, the ORM's registries, the dial plan: most of
    the process's objects) out of the cyclic collector's passes for good, since they live
    as long as the process and scanning them again and again stalled the event loop for
    tens of ms; and collect young objects less often (see ``GC_YOUNG_THRESHOLD``)."""
    gc.collect()
    gc.freeze()
    _young, middle, old = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, middle, old)
