"""The DND registry, read side: lookups, categories, generations swapped under readers."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest

from voiceplane.policy import dnd_file
from voiceplane.policy.dnd import (
    DndEntry,
    DndRegistry,
    categories_of,
    find,
    mask_of,
    number_key,
)
from voiceplane.policy.dnd_file import DndFileError, MappedGeneration


def write(directory: Path, entries: dict[int, int], generation: int = 1) -> None:
    """Write a generation straight from {number: mask}."""
    packed = np.array(sorted(n << 8 | m for n, m in entries.items()), dtype=np.int64)
    directory.mkdir(parents=True, exist_ok=True)
    with dnd_file.import_lock(directory):
        dnd_file.write_generation(directory, packed, generation)


@pytest.fixture
def directory(tmp_path: Path) -> Path:
    return tmp_path / "dnd"


def test_an_empty_registry_blocks_nothing(directory: Path) -> None:
    registry = DndRegistry(directory)
    assert registry.lookup("+919876543210") is None
    assert not registry.blocks("+919876543210")
    stats = registry.stats()
    assert (stats.count, stats.generation, stats.file_size) == (0, 0, 0)


def test_lookup_finds_the_numbers_and_their_categories(directory: Path) -> None:
    write(directory, {919876543210: 0, 919876543211: mask_of([1, 3]), 14155550100: 0})
    registry = DndRegistry(directory)
    assert registry.lookup("+919876543210") == DndEntry("+919876543210", frozenset())
    assert registry.lookup("919876543211") == DndEntry("+919876543211", frozenset({1, 3}))
    assert registry.lookup("+14155550100") is not None
    assert registry.lookup("+919876543212") is None
    assert registry.lookup("+14155550101") is None
    assert registry.lookup("+1") is None  # below every number
    assert registry.lookup("+999999999999999") is None  # above every number


def test_blocks_follows_the_subscribers_preferences(directory: Path) -> None:
    write(directory, {919876543210: 0, 919876543211: mask_of([1, 3])})
    registry = DndRegistry(directory)
    fully, partly = "+919876543210", "+919876543211"
    assert all(registry.blocks(fully, category) for category in [None, *range(1, 9)])
    assert not registry.blocks(partly, 1)
    assert not registry.blocks(partly, 3)
    assert registry.blocks(partly, 2)
    assert registry.blocks(partly, 8)
    assert registry.blocks(partly, None)  # category not known: refused
    assert not registry.blocks("+919876543219", None)  # not on the registry


def test_entry_blocks_agrees_with_the_registry() -> None:
    entry = DndEntry("+919876543211", frozenset({2}))
    assert not entry.blocks(2)
    assert entry.blocks(1)
    assert entry.blocks(None)
    assert DndEntry("+91", frozenset()).fully_blocked


@pytest.mark.parametrize("bad", ["", "+", "+0919876543210", "91-98765", "+9198765432101234",
                                 "١٢٣٤٥٦٧٨", "+91 98765", "abc"])  # fmt: skip
def test_a_string_that_is_not_e164_is_refused(directory: Path, bad: str) -> None:
    registry = DndRegistry(directory)
    with pytest.raises(ValueError, match="E.164"):
        registry.lookup(bad)
    with pytest.raises(ValueError, match="E.164"):
        registry.blocks(bad)


@pytest.mark.parametrize("bad", [0, 9, -1, True])
def test_a_category_outside_1_to_8_is_refused(directory: Path, bad: int) -> None:
    with pytest.raises(ValueError, match="1 to 8"):
        DndRegistry(directory).blocks("+919876543210", bad)


def test_masks_and_categories_round_trip() -> None:
    for categories in [set(), {1}, {8}, {1, 2, 7}, set(range(1, 9))]:
        assert categories_of(mask_of(categories)) == categories
    assert mask_of([1, 2, 7]) == 0b1000011


def test_number_key() -> None:
    assert number_key("+919876543210") == number_key("919876543210") == 919876543210


def test_many_numbers_across_countries_all_found(directory: Path) -> None:
    # Two countries far apart: the buckets span a wide range, so shift is large.
    rng = np.random.default_rng(1)
    numbers = set(rng.integers(916_000_000_000, 920_000_000_000, 20_000).tolist())
    numbers |= set(rng.integers(14_150_000_000, 14_160_000_000, 2_000).tolist())
    numbers.add(999_999_999_999_999)
    write(directory, {n: n % 256 for n in numbers})
    registry = DndRegistry(directory)
    mapped = registry.snapshot()
    assert mapped is not None and mapped.count == len(numbers)
    for number in numbers:
        assert find(mapped, number) == number % 256
    for number in rng.integers(916_000_000_000, 920_000_000_000, 5_000).tolist():
        assert (find(mapped, number) is not None) == (number in numbers)
    assert (mapped.all_packed() >> 8).tolist() == sorted(numbers)


def test_refresh_picks_up_a_new_generation(directory: Path) -> None:
    write(directory, {919876543210: 0}, generation=1)
    registry = DndRegistry(directory, refresh_interval_s=3600)
    assert not registry.refresh()  # nothing changed: one stat, no remap
    write(directory, {919876543211: 0}, generation=2)
    assert registry.blocks("+919876543210")  # not yet: the interval has not passed
    assert registry.refresh()
    assert registry.stats().generation == 2
    assert not registry.blocks("+919876543210")
    assert registry.blocks("+919876543211")


def test_lookups_refresh_by_themselves_after_the_interval(directory: Path) -> None:
    write(directory, {919876543210: 0}, generation=1)
    registry = DndRegistry(directory, refresh_interval_s=0)
    write(directory, {919876543211: 0}, generation=2)
    # A thread opens the new generation; lookups answer from the old one until it is in.
    deadline = time.monotonic() + 10
    while not registry.blocks("+919876543211"):
        assert registry.blocks("+919876543210")
        assert time.monotonic() < deadline, "the new generation never came"
        time.sleep(0.001)
    assert not registry.blocks("+919876543210")
    assert registry.stats().generation == 2


def test_a_reader_keeps_its_generation_while_a_new_one_replaces_it(directory: Path) -> None:
    write(directory, {919876543210: mask_of([4])}, generation=1)
    registry = DndRegistry(directory)
    held = registry.snapshot()
    assert held is not None
    old_file = held.path
    write(directory, {919876543211: 0}, generation=2)
    registry.refresh()
    assert not os.path.exists(old_file)  # the old generation's file is gone ...
    assert find(held, 919876543210) == mask_of([4])  # ... and still readable through the map
    assert find(held, 919876543211) is None
    assert registry.lookup("+919876543211") is not None
    assert sorted(p.name for p in directory.iterdir()) == [
        ".import.lock", "current", "gen-000002.dnd"
    ]  # fmt: skip


def test_a_file_that_is_not_a_registry_is_refused(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus"
    bogus.write_bytes(b"not a registry".ljust(200, b"\0"))
    fd = os.open(bogus, os.O_RDONLY)
    try:
        with pytest.raises(DndFileError, match="not a DND registry file"):
            MappedGeneration(fd, str(bogus))
    finally:
        os.close(fd)
