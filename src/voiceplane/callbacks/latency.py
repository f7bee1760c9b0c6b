"""How long callbacks took to deliver: a histogram the metrics endpoint exposes.

Kept by the dispatcher with no metrics library of its own (``voiceplane.metrics`` turns it
into Prometheus' format at scrape time). The time is from the callback's creation (the
commit of the change it reports) to its 2xx answer, retries included, so a receiver that
was down shows up here as well as in the retry counts.
"""

from __future__ import annotations

import bisect
from typing import Final

# Upper bounds in seconds, Prometheus-style ("le"); the last bucket is +Inf.
BUCKETS_S: Final = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
                    300.0, 3600.0)  # fmt: skip


class LatencyHistogram:
    """Counts of observed durations per bucket, and their sum."""

    def __init__(self, buckets: tuple[float, ...] = BUCKETS_S) -> None:
        if list(buckets) != sorted(set(buckets)) or not buckets:
            raise ValueError("buckets must be distinct and ascending")
        self.buckets = buckets
        self._counts = [0] * (len(buckets) + 1)  # the last one: above every bound
        self.total_s = 0.0
        self.count = 0

    def observe(self, seconds: float) -> None:
        seconds = max(0.0, seconds)  # clocks of two machines (PostgreSQL) may disagree a bit
        self._counts[bisect.bisect_left(self.buckets, seconds)] += 1
        self.total_s += seconds
        self.count += 1

    def cumulative(self) -> list[tuple[str, int]]:
        """``(le, count of observations <= le)`` per bucket, ending with ``+Inf``."""
        out: list[tuple[str, int]] = []
        running = 0
        for bound, count in zip((*map(str, self.buckets), "+Inf"), self._counts, strict=True):
            running += count
            out.append((bound, running))
        return out
