"""tune_gc: start-up objects frozen out of the collector, the thresholds of GC_THRESHOLDS."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from voiceplane.runtime import GC_THRESHOLDS, tune_gc


@pytest.fixture
def thresholds() -> Iterator[None]:
    before = gc.get_threshold()
    yield
    gc.set_threshold(*before)


@pytest.mark.usefixtures("thresholds")
def test_tune_gc_freezes_what_exists_and_sets_the_thresholds() -> None:
    gc.set_threshold(700, 10, 10)
    kept = [object(), []]  # made before: frozen with the rest
    tune_gc()
    assert gc.get_freeze_count() >= len(kept)
    assert gc.get_threshold() == GC_THRESHOLDS
    young, middle, old = GC_THRESHOLDS
    assert young > 700 and middle < 10 and old > 10  # fewer young passes, shorter middle ones
