"""The delivery-latency histogram behind ``voiceplane_callback_latency_seconds``."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from voiceplane.callbacks.latency import LatencyHistogram


def test_observations_land_in_cumulative_buckets_with_their_sum() -> None:
    histogram = LatencyHistogram((0.1, 1.0))
    for seconds in (0.05, 0.1, 0.5, 7.0, -0.2):  # a clock step backwards counts as 0
        histogram.observe(seconds)
    assert histogram.cumulative() == [("0.1", 3), ("1.0", 4), ("+Inf", 5)]
    assert histogram.count == 5
    assert histogram.total_s == pytest.approx(7.65)


@given(st.lists(st.floats(min_value=0, max_value=1e6, allow_nan=False)))
def test_the_last_bucket_counts_everything_and_counts_never_fall(values: list[float]) -> None:
    histogram = LatencyHistogram()
    for value in values:
        histogram.observe(value)
    counts = [count for _le, count in histogram.cumulative()]
    assert counts == sorted(counts) and counts[-1] == len(values) == histogram.count


@pytest.mark.parametrize("buckets", [(), (1.0, 0.5), (1.0, 1.0)])
def test_buckets_must_ascend(buckets: tuple[float, ...]) -> None:
    with pytest.raises(ValueError, match="ascending"):
        LatencyHistogram(buckets)
