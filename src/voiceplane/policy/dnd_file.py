"""The DND registry on disk: one immutable file per generation, and an atomic ``current`` link.

Layout of ``<data dir>/dnd/``::

    current -> gen-000007.dnd     a symlink, replaced with rename(2): readers open it
    gen-000007.dnd                the registry as of generation 7 (never changed once named)
    .import.lock                  flock(2)-ed by an import, so two imports never interleave

Opening ``current`` resolves the link and opens the file in one step, so a reader gets
either the old generation or the new one, whole. A generation file that an import deletes
stays readable through every descriptor and mapping already made of it.

A generation file (native byte order; the header records it)::

    header    64 bytes (struct _HEADER)
    offsets   uint32[buckets + 1]   entries of bucket b are [offsets[b], offsets[b + 1])
    lows      uint32[count] (or uint64 when shift > 32)  (number - base) & (2**shift - 1)
    masks     uint8[count]          the categories each subscriber accepts (bit c-1: category c)

Numbers (E.164 digits as integers) are sorted; bucket ``b`` holds the numbers with
``(number - base) >> shift == b``. ``shift`` is chosen so that a bucket holds about
:data:`BUCKET_TARGET` numbers, so a lookup is one offsets read and a binary search over a
handful of entries: three pages touched, whatever the registry's size. The whole file is
about 5.5 bytes a number (100M numbers: 550 MB), read through a memory map.

Internally the import works on *packed* numbers: ``number << 8 | mask`` in one int64 (E.164
numbers are below 10**15 < 2**50), so one sort orders numbers and carries their masks.
"""

from __future__ import annotations

import contextlib
import fcntl
import mmap
import os
import re
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt

MAGIC: Final = b"VPDND\x01\r\n"  # the version is in the magic; \r\n catches text-mode mangling
BYTE_ORDER_MARK: Final = 0x01020304
CURRENT: Final = "current"
LOCK: Final = ".import.lock"
BUCKET_TARGET: Final = 8
ALIGN: Final = 64
MAX_COUNT: Final = 2**32 - 1  # offsets are uint32
CHUNK: Final = 262_144  # entries per step where a whole-array temporary would add up

_HEADER: Final = struct.Struct("=8sIIQQQQQI12x")  # 64 bytes
_GENERATION_FILE: Final = re.compile(r"gen-(\d{6,})\.dnd")

Packed = npt.NDArray[np.int64]


class DndFileError(Exception):
    """A generation file that is not one of ours, or damaged."""


class ImportBusy(Exception):
    """Another import holds the registry's lock."""


@dataclass(frozen=True)
class Header:
    shift: int
    generation: int
    count: int
    base: int
    buckets: int
    created_ns: int
    low_size: int

    @property
    def offsets_at(self) -> int:
        return ALIGN

    @property
    def lows_at(self) -> int:
        return _aligned(self.offsets_at + 4 * (self.buckets + 1))

    @property
    def masks_at(self) -> int:
        return _aligned(self.lows_at + self.low_size * self.count)

    @property
    def size(self) -> int:
        return self.masks_at + self.count


def _aligned(offset: int) -> int:
    return -(-offset // ALIGN) * ALIGN


def generation_name(generation: int) -> str:
    return f"gen-{generation:06d}.dnd"


# --- reading ---------------------------------------------------------------------------------


class MappedGeneration:
    """One generation file, memory-mapped read-only; the lookup structures are memoryviews
    (a Python-level binary search over a memoryview costs less per lookup than a call into
    numpy: bench/dnd.py measured both)."""

    def __init__(self, fd: int, path: str, *, populate: bool = False) -> None:
        stat = os.fstat(fd)
        self.identity = (stat.st_dev, stat.st_ino)
        self.file_size = stat.st_size
        self.path = path
        if stat.st_size < _HEADER.size:
            raise DndFileError(f"{path}: too short to be a DND registry file")
        self._anonymous = populate
        if populate:
            # For lookups (serve, the bench): a private copy in memory, on huge pages where
            # the kernel has them. A lookup touches four or five random places of a 500 MB
            # file; with 4 KiB pages each is also a TLB miss, which under a VM's nested
            # paging costs about as much as the rest of the lookup (bench/dnd.py).
            self._map = _in_memory(fd, stat.st_size)
        else:
            self._map = mmap.mmap(fd, 0, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ)
        self.header = _read_header(self._map, path)
        if self.header.size > stat.st_size:
            raise DndFileError(f"{path}: truncated ({stat.st_size} of {self.header.size} bytes)")
        if not populate:
            # Random single lookups: no read-ahead around each page touched.
            self._map.madvise(mmap.MADV_RANDOM)
        header = self.header
        view = memoryview(self._map)
        self.offsets = view[header.offsets_at : header.lows_at].cast("B").cast("I")
        self.offsets = self.offsets[: header.buckets + 1]
        low_end = header.lows_at + header.low_size * header.count
        self.lows = view[header.lows_at : low_end].cast("I" if header.low_size == 4 else "Q")
        self.masks = view[header.masks_at : header.masks_at + header.count]
        # Plain attributes: the lookup reads them on every call.
        self.base = header.base
        self.shift = header.shift
        self.buckets = header.buckets
        self.low_mask = (1 << header.shift) - 1

    @property
    def generation(self) -> int:
        return self.header.generation

    @property
    def count(self) -> int:
        return self.header.count

    def packed(self, start: int = 0, stop: int | None = None) -> Packed:
        """Entries ``[start, stop)`` as packed numbers (``number << 8 | mask``)."""
        header = self.header
        stop = header.count if stop is None else stop
        offsets = np.frombuffer(self.offsets, dtype=np.uint32)  # a view: no copy
        low_type = np.uint32 if header.low_size == 4 else np.uint64
        lows = np.frombuffer(self.lows, dtype=low_type)[start:stop].astype(np.int64)
        masks = np.frombuffer(self.masks, dtype=np.uint8)[start:stop].astype(np.int64)
        # uint32 positions: with int64 ones numpy would convert all the offsets every call.
        positions = np.arange(start, stop, dtype=np.uint32)
        buckets = np.searchsorted(offsets, positions, side="right").astype(np.int64) - 1
        numbers = header.base + (buckets << header.shift) + lows
        result: Packed = (numbers << 8) | masks
        return result

    def drop_pages(self) -> None:
        """Unmap the pages read so far (they stay in the page cache): a pass over the whole
        file, as a merge makes, would otherwise count all of it in the process's memory.
        Nothing to drop for an in-memory copy (dropping would lose it)."""
        if not self._anonymous:
            self._map.madvise(mmap.MADV_DONTNEED)

    def all_packed(self) -> Packed:
        """Every entry, packed, in order (8 bytes a number in memory)."""
        out = np.empty(self.header.count, dtype=np.int64)
        for start in range(0, self.header.count, CHUNK):
            stop = min(start + CHUNK, self.header.count)
            out[start:stop] = self.packed(start, stop)
        return out


def _in_memory(fd: int, size: int) -> mmap.mmap:
    """The file's bytes in anonymous memory advised onto transparent huge pages."""
    memory = mmap.mmap(-1, max(size, 1), flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    if hasattr(mmap, "MADV_HUGEPAGE"):
        memory.madvise(mmap.MADV_HUGEPAGE)
    view = memoryview(memory)
    done = 0
    while done < size:
        read = os.preadv(fd, [view[done : min(size, done + (64 << 20))]], done)
        if read <= 0:
            break
        done += read
    view.release()
    if done < size:
        raise DndFileError(f"file descriptor {fd}: read {done} of {size} bytes")
    return memory


def _read_header(data: mmap.mmap, path: str) -> Header:
    magic, order, shift, generation, count, base, buckets, created, low_size = _HEADER.unpack(
        data[: _HEADER.size]
    )
    if magic != MAGIC:
        raise DndFileError(f"{path}: not a DND registry file (or a version we cannot read)")
    if order != BYTE_ORDER_MARK:
        raise DndFileError(f"{path}: written on a machine of another byte order")
    if low_size not in (4, 8) or shift > 63:
        raise DndFileError(f"{path}: damaged header")
    return Header(shift, generation, count, base, buckets, created, low_size)


def open_current(directory: Path, *, populate: bool = False) -> MappedGeneration | None:
    """The current generation of the registry in ``directory``; None when there is none."""
    path = directory / CURRENT
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        return MappedGeneration(fd, os.path.realpath(path), populate=populate)
    finally:
        os.close(fd)  # the map keeps the file


def current_identity(directory: Path) -> tuple[int, int] | None:
    """(device, inode) of the current generation file: one stat(2), for a cheap change check."""
    try:
        stat = os.stat(directory / CURRENT)
    except FileNotFoundError:
        return None
    return (stat.st_dev, stat.st_ino)


# --- writing ---------------------------------------------------------------------------------


@contextlib.contextmanager
def import_lock(directory: Path) -> Iterator[None]:
    """Hold the registry's import lock; :class:`ImportBusy` when another import has it."""
    directory.mkdir(parents=True, exist_ok=True)
    fd = os.open(directory / LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ImportBusy(f"another import into {directory} is running") from None
        yield
    finally:
        os.close(fd)


def _layout(packed: Packed, generation: int) -> Header:
    count = len(packed)
    if count > MAX_COUNT:
        raise ValueError(f"a registry holds at most {MAX_COUNT} numbers")
    if count == 0:
        return Header(0, generation, 0, 0, 1, time.time_ns(), 4)
    base = int(packed[0] >> 8)
    span = int(packed[-1] >> 8) - base + 1
    target = max(1, count // BUCKET_TARGET)
    shift = 0
    while ((span - 1) >> shift) + 1 > target:
        shift += 1
    buckets = ((span - 1) >> shift) + 1
    return Header(shift, generation, count, base, buckets, time.time_ns(), 4 if shift <= 32 else 8)


def write_generation(directory: Path, packed: Packed, generation: int) -> Path:
    """Write ``packed`` (sorted, one entry per number) as ``generation`` and make it current.

    The file is written under a temporary name, flushed to disk, renamed, and only then is
    ``current`` switched to it (a new symlink renamed over the old one); older generation
    files are deleted last. Call it holding :func:`import_lock`.
    """
    header = _layout(packed, generation)
    final = directory / generation_name(generation)
    temporary = directory / f".{final.name}.{os.getpid()}.tmp"
    try:
        with temporary.open("wb") as file:
            _write_file(file.fileno(), header, packed)
            os.fsync(file.fileno())
        os.replace(temporary, final)
        link = directory / f".{CURRENT}.{os.getpid()}.tmp"
        with contextlib.suppress(FileNotFoundError):
            link.unlink()
        os.symlink(final.name, link)
        os.replace(link, directory / CURRENT)
        _fsync_directory(directory)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
        raise
    remove_stale(directory, keep=final.name)
    return final


def remove_stale(directory: Path, *, keep: str | None) -> None:
    """Delete generation files other than ``keep`` and leftovers of interrupted imports."""
    for entry in directory.iterdir():
        name = entry.name
        stale_temporary = name.startswith(".") and name.endswith(".tmp")
        if (_GENERATION_FILE.fullmatch(name) and name != keep) or stale_temporary:
            with contextlib.suppress(FileNotFoundError):
                entry.unlink()


def _write_file(fd: int, header: Header, packed: Packed) -> None:
    os.ftruncate(fd, header.size)
    os.pwrite(
        fd,
        _HEADER.pack(
            MAGIC,
            BYTE_ORDER_MARK,
            header.shift,
            header.generation,
            header.count,
            header.base,
            header.buckets,
            header.created_ns,
            header.low_size,
        ),
        0,
    )
    low_type = np.uint32 if header.low_size == 4 else np.uint64
    low_mask = (1 << header.shift) - 1
    next_bucket = 0  # buckets before it have their offsets written
    for start in range(0, header.count, CHUNK):
        chunk = packed[start : start + CHUNK]
        relative = (chunk >> 8) - header.base
        buckets = relative >> header.shift  # sorted, like the numbers
        last = int(buckets[-1])
        wanted = np.arange(next_bucket, last + 1)
        offsets = (start + np.searchsorted(buckets, wanted)).astype(np.uint32)
        os.pwrite(fd, offsets.data, header.offsets_at + 4 * next_bucket)
        next_bucket = last + 1
        del buckets, offsets
        lows = (relative & low_mask).astype(low_type)
        os.pwrite(fd, lows.data, header.lows_at + header.low_size * start)
        del relative, lows
        masks = (chunk & 0xFF).astype(np.uint8)
        os.pwrite(fd, masks.data, header.masks_at + start)
    tail = np.full(header.buckets + 1 - next_bucket, header.count, dtype=np.uint32)
    os.pwrite(fd, tail.data, header.offsets_at + 4 * next_bucket)


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
