"""tune_gc: start-up objects frozen out of the collector, the thresholds of GC_THRESHOLDS; the
kind of event loop long-running processes run on."""

from __future__ import annotations

import gc
import sys
from collections.abc import Iterator

import pytest

from voiceplane.runtime import (
    GC_THRESHOLDS,
    SWITCH_INTERVAL_S,
    event_loop_factory,
    tune_gc,
    tune_threads,
)


@pytest.fixture
def thresholds() -> Iterator[None]:
    before = gc.get_threshold()
    yield
    gc.set_threshold(*before)


@pytest.fixture
def switch_interval() -> Iterator[None]:
    before = sys.getswitchinterval()
    yield
    sys.setswitchinterval(before)


@pytest.mark.usefixtures("switch_interval")
def test_tune_threads_shortens_the_switch_interval() -> None:
    sys.setswitchinterval(0.005)
    tune_threads()
    assert sys.getswitchinterval() == pytest.approx(SWITCH_INTERVAL_S)
    assert SWITCH_INTERVAL_S < 0.005


@pytest.mark.usefixtures("thresholds")
def test_tune_gc_freezes_what_exists_and_sets_the_thresholds() -> None:
    gc.set_threshold(700, 10, 10)
    kept = [object(), []]  # made before: frozen with the rest
    tune_gc()
    assert gc.get_freeze_count() >= len(kept)
    assert gc.get_threshold() == GC_THRESHOLDS
    young, middle, old = GC_THRESHOLDS
    assert young > 700 and middle < 10 and old > 10  # fewer young passes, shorter middle ones


def test_new_event_loops_are_uvloops_when_it_is_installed() -> None:
    uvloop = pytest.importorskip("uvloop")
    loop = event_loop_factory()()
    try:
        assert isinstance(loop, uvloop.Loop)
    finally:
        loop.close()
