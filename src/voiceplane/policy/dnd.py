"""The national Do-Not-Disturb registry, read-only: is this number on it, and for what?

TRAI-style registries record, per subscriber, the *preference categories*: the kinds of
promotional call the subscriber still accepts (1 banking/insurance/finance, 2 real estate,
3 education, 4 health, 5 consumer goods and automobiles, 6 communication/broadcasting/
entertainment/IT, 7 tourism and leisure, 8 food and beverages). A subscriber with no
category is *fully blocked*. So a promotional call is blocked when its number is on the
registry and its category is not one the subscriber accepts; a call whose category is not
known (None) is blocked whenever the number is on the registry at all.

:class:`DndRegistry` reads the files that :mod:`voiceplane.policy.dnd_import` writes
(format: :mod:`voiceplane.policy.dnd_file`). It maps the current generation and answers
single lookups in a few microseconds; :meth:`DndRegistry.refresh` (one stat(2)) switches
to a newer generation, and lookups check for one by themselves at most once a
``refresh_interval_s``, so an import made by another process is seen soon after.
:meth:`DndRegistry.blocks` is what the pre-dial checks call
(:class:`voiceplane.policy.checks.DndRegistry`).
"""

from __future__ import annotations

import threading
import time
from bisect import bisect_left
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from voiceplane.policy.dnd_file import MappedGeneration, current_identity, open_current

CATEGORIES: Final = range(1, 9)
DND_DIR: Final = "dnd"  # under the data directory
DEFAULT_REFRESH_S: Final = 1.0
MAX_DIGITS: Final = 15  # E.164


def mask_of(categories: Iterable[int]) -> int:
    """The bit set of ``categories`` (each 1..8): bit ``c - 1`` for category ``c``."""
    mask = 0
    for category in categories:
        _check_category(category)
        mask |= 1 << (category - 1)
    return mask


def categories_of(mask: int) -> frozenset[int]:
    return frozenset(c for c in CATEGORIES if mask >> (c - 1) & 1)


def _check_category(category: int) -> None:
    if isinstance(category, bool) or category not in CATEGORIES:
        raise ValueError(f"a DND category is 1 to 8, not {category!r}")


@dataclass(frozen=True, slots=True)
class DndEntry:
    """A number on the registry and the categories of promotional call it still accepts."""

    number: str  # +E.164
    accepted: frozenset[int]

    @property
    def fully_blocked(self) -> bool:
        return not self.accepted

    def blocks(self, category: int | None) -> bool:
        """Whether a promotional call of ``category`` (None: not known) is refused."""
        if category is None:
            return True
        _check_category(category)
        return category not in self.accepted


@dataclass(frozen=True, slots=True)
class DndStats:
    count: int
    generation: int  # 0: nothing imported yet
    file_size: int
    created_ns: int | None
    path: str | None


def number_key(e164: str) -> int:
    """``+919876543210`` or ``919876543210`` as the integer the registry is keyed by."""
    digits = e164[1:] if e164[:1] == "+" else e164
    # isdigit() alone takes other scripts' digits, which int() would read as well.
    if not (digits.isdigit() and digits.isascii()) or len(digits) > MAX_DIGITS:
        raise ValueError(f"{e164!r} is not an E.164 number (+ and up to 15 digits)")
    if digits[0] == "0":
        raise ValueError(f"{e164!r} is not an E.164 number (it starts with 0)")
    return int(digits)


class DndRegistry:
    """The registry in ``directory`` (``<data dir>/dnd`` by default), for lookups.

    Safe to share between threads: a lookup reads one generation object, which a refresh
    replaces whole; a reader that still holds the old one keeps a valid mapping of it.

    ``populate`` reads a generation into memory (on huge pages) when it is opened (a
    national registry: about 500 MB, a fraction of a second from the page cache), so that no
    lookup waits on a page fault or pays a TLB miss per random place it reads. That is why a
    lookup that notices a new generation does not open it itself: a thread does, and lookups
    go on with the old one until it is ready.
    """

    def __init__(
        self,
        directory: Path,
        *,
        refresh_interval_s: float = DEFAULT_REFRESH_S,
        populate: bool = True,
    ) -> None:
        self.directory = directory
        self.populate = populate
        self.refresh_interval_s = refresh_interval_s
        self._lock = threading.Lock()
        self._generation: MappedGeneration | None = None
        self._identity: tuple[int, int] | None = None
        self._next_check = 0.0
        self._opening = False
        self.refresh()

    @classmethod
    def in_data_dir(
        cls, data_dir: Path, *, refresh_interval_s: float = DEFAULT_REFRESH_S, populate: bool = True
    ) -> DndRegistry:
        return cls(data_dir / DND_DIR, refresh_interval_s=refresh_interval_s, populate=populate)

    def refresh(self) -> bool:
        """Switch to the current generation if it changed (one stat); True if it did."""
        self._next_check = time.monotonic() + self.refresh_interval_s
        identity = current_identity(self.directory)
        if identity == self._identity:
            return False
        with self._lock:
            mapped = open_current(self.directory, populate=self.populate)
            self._generation = mapped
            self._identity = mapped.identity if mapped is not None else None
        return True

    def _check(self) -> None:
        """From a lookup: if the generation changed, open the new one in a thread."""
        self._next_check = time.monotonic() + self.refresh_interval_s
        if self._opening or current_identity(self.directory) == self._identity:
            return
        self._opening = True
        threading.Thread(target=self._open_in_background, name="dnd-refresh", daemon=True).start()

    def _open_in_background(self) -> None:
        try:
            self.refresh()
        finally:
            self._opening = False

    def snapshot(self) -> MappedGeneration | None:
        """The generation lookups use now (a reader may hold it across a refresh)."""
        if time.monotonic() >= self._next_check:
            self._check()
        return self._generation

    def lookup(self, e164: str) -> DndEntry | None:
        """The registry's entry for ``e164``; None when the number is not on it.

        Raises ``ValueError`` for a string that is not an E.164 number.
        """
        key = number_key(e164)
        mask = find(self.snapshot(), key)
        if mask is None:
            return None
        return DndEntry(f"+{key}", categories_of(mask))

    def blocks(self, e164: str, category: int | None = None) -> bool:
        """True when a promotional call of ``category`` (None: any) to ``e164`` is refused.

        Raises ``ValueError`` for a string that is not an E.164 number or a category not 1-8.
        """
        if category is not None:
            _check_category(category)
        if time.monotonic() >= self._next_check:
            self._check()
        mask = find(self._generation, number_key(e164))
        if mask is None:
            return False
        return category is None or not mask >> (category - 1) & 1

    def stats(self) -> DndStats:
        mapped = self.snapshot()
        if mapped is None:
            return DndStats(0, 0, 0, None, None)
        header = mapped.header
        return DndStats(header.count, header.generation, mapped.file_size, header.created_ns,
                        mapped.path)  # fmt: skip


def find(mapped: MappedGeneration | None, key: int) -> int | None:
    """The categories mask of number ``key`` in ``mapped``; None when it is not there."""
    if mapped is None:
        return None
    relative = key - mapped.base
    if relative < 0:
        return None
    bucket = relative >> mapped.shift
    if bucket >= mapped.buckets:
        return None
    low = relative & mapped.low_mask
    offsets = mapped.offsets
    start, stop = offsets[bucket], offsets[bucket + 1]
    lows = mapped.lows
    index = bisect_left(lows, low, start, stop)
    if index < stop and lows[index] == low:
        mask: int = mapped.masks[index]
        return mask
    return None
