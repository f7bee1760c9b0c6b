"""Import the DND registry from text or CSV files into a new generation.

A file holds one number a line, optionally ``number,categories`` (``1|2|7``: the categories
the subscriber accepts; ``0`` or nothing: fully blocked). A header line is allowed as the
first line with content, blank lines and ``#`` comments are skipped. Numbers are written in
E.164 (``+919876543210``, ``919876543210``, ``00919876543210``) or, with a default country
code, nationally (``09876543210``, or ``9876543210``: no more than ``national_digits``
digits); spaces and dashes inside a number are allowed.

Modes: ``full`` replaces the registry, ``add`` adds the numbers (a number already on it
takes the new categories), ``remove`` takes them off. A number listed twice in one import
keeps only the categories both lines accept (the safe reading of a contradiction).

Nothing is half-imported: the files are read and checked whole before the new generation
is written (see :mod:`voiceplane.policy.dnd_file`), and a bad line raises
:class:`DndImportError` naming the file and the line, with the registry untouched.

Speed (this 2-core machine, busy): the file is read in 1 MB chunks, and a chunk of
``number`` or ``number,1|2|7`` lines is parsed by numpy, about 2.5 million lines a second
for plain numbers (the whole import of 100M: 37-48 s, bench/dnd.py) and 0.7 million with
categories. A chunk with anything else (quotes, spaces, comments, a header) goes through
the per-line parser, about 0.1 million lines a second: a header or a comment costs only its
own chunk, but a quoted CSV dump of 100M lines would take a quarter of an hour.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

import numpy as np
import numpy.typing as npt

from voiceplane.policy import dnd_file
from voiceplane.policy.dnd import CATEGORIES, mask_of
from voiceplane.policy.dnd_file import CHUNK, Packed

Mode = Literal["full", "add", "remove"]
MODES: Final[tuple[Mode, ...]] = ("full", "add", "remove")
Progress = Callable[[int, int], None]

READ_BYTES: Final = 1024 * 1024  # small: the parse temporaries add to the peak memory
NATIONAL_DIGITS: Final = 10
MIN_DIGITS: Final = 7
MAX_DIGITS: Final = 15
MAX_WRITTEN: Final = 17  # "00" and 15 digits
_POW10: Final = 10 ** np.arange(19, dtype=np.int64)
_SEPARATORS: Final = str.maketrans("", "", " -\t")
_NEWLINE, _RETURN, _PLUS, _COMMA, _BAR, _ZERO = (ord(c) for c in "\n\r+,|0")
_FAST_BYTES: Final = np.zeros(256, dtype=bool)  # what the numpy parser reads
_FAST_BYTES[[*range(ord("0"), ord("9") + 1), _NEWLINE, _RETURN, _PLUS, _COMMA, _BAR]] = True


class DndImportError(Exception):
    """A file that cannot be imported; ``str()`` names the file and, for a bad line, the line."""

    def __init__(self, path: str, message: str, line: int | None = None) -> None:
        self.path = path
        self.line = line
        self.message = message
        where = f"{path}, line {line}" if line is not None else path
        super().__init__(f"{where}: {message}")


@dataclass(frozen=True)
class ImportResult:
    mode: Mode
    generation: int
    files: int
    entries: int  # numbers read (with repeats)
    unique: int  # distinct numbers read
    count_before: int
    count: int
    seconds: float

    @property
    def added(self) -> int:
        """Numbers that were not on the registry before (full: every number now on it)."""
        if self.mode == "full":
            return self.count
        return self.count - self.count_before if self.mode == "add" else 0

    @property
    def removed(self) -> int:
        """Numbers taken off (full: every number the old registry held)."""
        if self.mode == "full":
            return self.count_before
        return self.count_before - self.count if self.mode == "remove" else 0


def check_country_code(code: str | None) -> str | None:
    """``"91"`` (or ``"+91"``) as digits; ValueError for something that is not one."""
    if code is None:
        return None
    digits = code.strip().removeprefix("+")
    if not (digits.isascii() and digits.isdigit()) or not 1 <= len(digits) <= 3:
        raise ValueError(f"{code!r} is not a country calling code (1 to 3 digits, like 91)")
    if digits.startswith("0"):
        raise ValueError(f"{code!r} is not a country calling code (they never start with 0)")
    return digits


# --- the per-line parser (the reference for the vectorised one) --------------------------------


def parse_number(
    text: str, country_code: str | None = None, national_digits: int = NATIONAL_DIGITS
) -> int:
    """One written number as its E.164 digits (an int); ValueError says what is wrong."""
    written = text.strip().translate(_SEPARATORS)
    if written.startswith("+"):
        digits = _digits(written[1:], text)
        if digits.startswith("0"):
            raise ValueError(f"{text.strip()!r}: a country code never starts with 0")
    elif written.startswith("00"):
        digits = _digits(written[2:], text)
        if digits.startswith("0"):
            raise ValueError(f"{text.strip()!r}: a country code never starts with 0")
    elif written.startswith("0"):
        if country_code is None:
            raise ValueError(
                f"{text.strip()!r} is a national number (leading 0): give the country code"
            )
        digits = country_code + _digits(written[1:], text)
    else:
        digits = _digits(written, text)
        if country_code is not None and len(digits) <= national_digits:
            digits = country_code + digits
    if not MIN_DIGITS <= len(digits) <= MAX_DIGITS:
        raise ValueError(
            f"{text.strip()!r} has {len(digits)} digits as E.164 (+{digits}): "
            f"a number has {MIN_DIGITS} to {MAX_DIGITS}"
        )
    return int(digits)


def _digits(text: str, written: str) -> str:
    if not text or not (text.isascii() and text.isdigit()):
        raise ValueError(f"{written.strip()!r} is not a telephone number")
    return text


def parse_categories(text: str) -> int:
    """``"1|2|7"`` as a bit set; ``"0"`` or ``""`` (fully blocked) as 0."""
    field = text.strip().strip('"').strip()
    if field in ("", "0"):
        return 0
    categories: list[int] = []
    for part in field.split("|"):
        part = part.strip()
        if not (part.isascii() and part.isdigit()) or int(part) not in CATEGORIES:
            raise ValueError(
                f"{text.strip()!r} is not a list of categories (1 to 8, like 1|2|7, or 0)"
            )
        categories.append(int(part))
    return mask_of(categories)


def parse_line(
    line: str, country_code: str | None = None, national_digits: int = NATIONAL_DIGITS
) -> tuple[int, int] | None:
    """``number[,categories]`` as (E.164 digits, categories mask); None for a blank line or
    a comment. ValueError says what is wrong."""
    text = line.strip()
    if not text or text.startswith("#"):
        return None
    fields = text.split(",")
    if len(fields) > 2:
        raise ValueError(f"expected number or number,categories; got {len(fields)} fields")
    number = parse_number(fields[0].strip().strip('"'), country_code, national_digits)
    mask = parse_categories(fields[1]) if len(fields) == 2 else 0
    return number, mask


def _is_header(line: str) -> bool:
    first = line.split(",")[0]
    return not any(char.isdigit() for char in first)


# --- reading files ------------------------------------------------------------------------------


@dataclass
class _Reader:
    """Reads files chunk by chunk into one growing array of packed numbers."""

    country_code: str | None
    national_digits: int
    progress: Progress | None
    total_bytes: int
    done_bytes: int = 0
    count: int = 0

    def __post_init__(self) -> None:
        # Room for the most lines the bytes can hold: the pages never written are never
        # touched, so they cost address space, not memory.
        self.packed: Packed = np.empty(self.total_bytes // 5 + 16, dtype=np.int64)

    def read(self, path: Path) -> None:
        name = str(path)
        line_base = 0  # lines before the current chunk
        first_content = True
        rest = b""
        try:
            with path.open("rb") as file:
                while True:
                    block = file.read(READ_BYTES)
                    data = rest + block
                    if not block:
                        if data and not data.endswith(b"\n"):
                            data += b"\n"
                        rest = b""
                    else:
                        cut = data.rfind(b"\n") + 1
                        data, rest = data[:cut], data[cut:]
                    if data:
                        if line_base == 0 and data.startswith(b"\xef\xbb\xbf"):
                            data = data[3:]  # a UTF-8 byte order mark
                        first_content = self._chunk(name, data, line_base, first_content)
                        line_base += data.count(b"\n")
                    self.done_bytes += len(block)
                    if self.progress is not None:
                        self.progress(self.done_bytes, self.total_bytes)
                    if not block:
                        break
        except OSError as exc:
            raise DndImportError(name, f"cannot read it: {exc.strerror or exc}") from None

    def _chunk(self, name: str, data: bytes, line_base: int, first_content: bool) -> bool:
        """Parse ``data`` (whole lines); return whether no content line was seen yet."""
        fast = _parse_fast(data, self.country_code, self.national_digits)
        if fast is not None:
            self._append(fast)
            return False
        entries: list[int] = []
        position = 0
        index = 0
        while position < len(data):
            end = data.index(b"\n", position)
            line = data[position:end].decode("utf-8", errors="replace")
            position = end + 1
            index += 1
            try:
                parsed = parse_line(line, self.country_code, self.national_digits)
            except ValueError as exc:
                if first_content and _is_header(line):
                    first_content = False
                    rest = _parse_fast(data[position:], self.country_code, self.national_digits)
                    if rest is not None:
                        self._append(rest)
                        return False
                    continue
                raise DndImportError(name, str(exc), line_base + index) from None
            if parsed is None:
                continue
            entries.append(parsed[0] << 8 | parsed[1])
            if first_content:
                # Past a file's first line with content (maybe a header): the rest of the
                # chunk may well be plain numbers again.
                first_content = False
                rest = _parse_fast(data[position:], self.country_code, self.national_digits)
                if rest is not None:
                    self._append(np.array(entries, dtype=np.int64))
                    self._append(rest)
                    return False
        self._append(np.array(entries, dtype=np.int64))
        return first_content

    def _append(self, packed: Packed) -> None:
        end = self.count + len(packed)
        if end > len(self.packed):  # cannot happen with lines of 5 bytes or more; be safe
            self.packed = np.resize(self.packed, max(end, len(self.packed) * 3 // 2))
        self.packed[self.count : end] = packed
        self.count = end


def _parse_fast(data: bytes, country_code: str | None, national_digits: int) -> Packed | None:
    """The entries of ``data`` (whole lines: ``number`` or ``number,categories``), packed,
    parsed by numpy; None when the chunk holds anything else (a header, a comment, quotes,
    spaces) or anything wrong: the per-line parser then reads it, and names the bad line.
    Mirrors :func:`parse_line` (a property test checks that they agree)."""
    if not data:
        empty: Packed = np.zeros(0, dtype=np.int64)
        return empty
    chars = np.frombuffer(data, dtype=np.uint8)
    present = np.bincount(chars, minlength=256).astype(bool)
    if (present & ~_FAST_BYTES).any():
        return None
    line_ends = np.flatnonzero(chars == _NEWLINE)
    starts = np.empty_like(line_ends)
    starts[0] = 0
    starts[1:] = line_ends[:-1] + 1
    ends = line_ends
    if present[_RETURN]:
        returns = np.flatnonzero(chars == _RETURN)
        if not (chars[returns + 1] == _NEWLINE).all():
            return None
        ends = ends - ((chars[np.maximum(ends - 1, 0)] == _RETURN) & (ends > starts))
    plus = np.zeros(len(ends), dtype=bool)
    if present[_PLUS]:
        signs = np.flatnonzero(chars == _PLUS)
        lines = np.searchsorted(line_ends, signs)
        if not (signs == starts[lines]).all():
            return None
        plus[lines] = True
    masks = np.zeros(len(ends), dtype=np.int64)
    number_ends = ends
    text = data
    if present[_COMMA]:
        parsed = _categories(chars, starts, ends, line_ends)
        if parsed is None:
            return None
        number_ends, masks, text = parsed
    elif present[_BAR]:
        return None
    content = ends > starts
    digit_start = (starts + plus)[content]
    written = (number_ends - starts - plus)[content]
    plus = plus[content]
    masks = masks[content]
    if (written <= 0).any() or (written > MAX_WRITTEN).any():
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        values = np.fromstring(text, dtype=np.int64, sep="\n")
    if len(values) != len(written):
        return None
    first_zero = chars[digit_start] == _ZERO
    second_zero = first_zero & (written >= 2)
    second_zero &= chars[np.minimum(digit_start + 1, len(chars) - 1)] == _ZERO
    if (plus & first_zero).any():
        return None
    international = plus | second_zero
    trunk = first_zero & ~second_zero
    significant = written - np.where(second_zero & ~plus, 2, np.where(trunk, 1, 0))
    if (np.searchsorted(_POW10, values, side="right") != significant).any():
        return None  # a zero after the prefix ("000...", "+0...") or an empty number
    if country_code is None:
        if trunk.any():
            return None
        national = np.zeros(len(values), dtype=bool)
    else:
        national = trunk | (~international & (significant <= national_digits))
    total = significant + national * len(country_code or "")
    if ((total < MIN_DIGITS) | (total > MAX_DIGITS)).any():
        return None
    if country_code is not None and national.any():
        prefixed = int(country_code) * _POW10[np.minimum(significant, 18)] + values
        values = np.where(national, prefixed, values)
    result: Packed = (values << 8) | masks
    return result


def _categories(
    chars: npt.NDArray[np.uint8],
    starts: npt.NDArray[np.intp],
    ends: npt.NDArray[np.intp],
    line_ends: npt.NDArray[np.intp],
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.int64], bytes] | None:
    """For lines ``number,1|2|7``: where each number ends, each line's categories mask, and
    the text with the category fields blanked (for np.fromstring); None when a field is not
    single categories 1-8 joined by ``|``, a lone ``0``, or empty."""
    commas = np.flatnonzero(chars == _COMMA)
    comma_lines = np.searchsorted(line_ends, commas)
    if len(commas) > 1 and (np.diff(comma_lines) == 0).any():
        return None  # two commas on a line
    number_ends = ends.copy()
    number_ends[comma_lines] = commas
    field_starts, field_ends = commas + 1, ends[comma_lines]
    opens = np.zeros(len(chars) + 1, dtype=np.int8)
    opens[field_starts] = 1
    closes = np.zeros(len(chars) + 1, dtype=np.int8)
    closes[field_ends] = 1
    in_field = (np.cumsum(opens - closes, dtype=np.int32) > 0)[:-1]
    padded = np.concatenate([[_NEWLINE], chars, [_NEWLINE]])  # chars[p - 1], chars[p + 1]
    before, after = padded[:-2], padded[2:]
    digit = (chars >= ord("1")) & (chars <= ord("8"))
    line_end = (after == _NEWLINE) | (after == _RETURN)
    bar = chars == _BAR
    zero = chars == _ZERO
    if (bar & ~in_field).any():
        return None
    ok_digit = digit & ((before == _COMMA) | (before == _BAR)) & ((after == _BAR) | line_end)
    ok_bar = bar & (before >= ord("1")) & (before <= ord("8"))
    ok_bar &= (after >= ord("1")) & (after <= ord("8"))
    ok_zero = zero & (before == _COMMA) & line_end
    if (in_field & ~(ok_digit | ok_bar | ok_zero)).any():
        return None
    bits = np.zeros(len(chars), dtype=np.uint8)
    where = in_field & digit
    bits[where] = np.left_shift(1, chars[where] - ord("1")).astype(np.uint8)
    masks = np.bitwise_or.reduceat(bits, starts).astype(np.int64)
    blanked = chars.copy()
    blanked[in_field | (chars == _COMMA)] = ord(" ")
    return number_ends, masks, blanked.tobytes()


# --- merging and importing --------------------------------------------------------------------


def unique_sorted(packed: Packed) -> Packed:
    """Sort ``packed`` in place and keep one entry per number (the categories all its
    entries accept); returns a view of ``packed`` holding the result.

    One pass, a chunk at a time, written back in place: the memory it needs beyond
    ``packed`` does not grow with the registry (repeats in a dump of 100M random numbers
    run to a million and more).
    """
    packed.sort()
    count = len(packed)
    kept = 0  # entries written back so far; the last one's group may go on in the next chunk
    for start in range(0, count, CHUNK):
        chunk = packed[start : start + CHUNK].copy()  # the writes below may overlap it
        numbers = chunk >> 8
        first = np.empty(len(chunk), dtype=bool)  # where a number's group begins
        first[0] = kept == 0 or int(packed[kept - 1] >> 8) != int(numbers[0])
        np.not_equal(numbers[1:], numbers[:-1], out=first[1:])
        segments = np.flatnonzero(first)
        if not first[0]:
            segments = np.concatenate([[0], segments])
        masks = np.bitwise_and.reduceat(chunk & 0xFF, segments)
        entries = (numbers[segments] << 8) | masks
        if not first[0]:  # the chunk begins inside the last group written: merge into it
            packed[kept - 1] &= entries[0] | ~0xFF
            entries = entries[1:]
        packed[kept : kept + len(entries)] = entries
        kept += len(entries)
    return packed[:kept]


def _contained(packed: Packed, sorted_numbers: Packed) -> npt.NDArray[np.bool_]:
    """For each entry of ``packed``, whether its number is in ``sorted_numbers``."""
    if not len(sorted_numbers):
        return np.zeros(len(packed), dtype=bool)
    numbers = packed >> 8
    at = np.minimum(np.searchsorted(sorted_numbers, numbers), len(sorted_numbers) - 1)
    found: npt.NDArray[np.bool_] = sorted_numbers[at] == numbers
    return found


def merge(current: dnd_file.MappedGeneration, new: Packed, mode: Literal["add", "remove"]
          ) -> Packed:  # fmt: skip
    """The registry after ``mode`` with ``new`` (sorted, one entry per number).

    The old entries are read from the mapped file a chunk at a time and the result is built
    in one array, merged in place: the memory needed is about the result's (8 bytes a
    number), not two or three copies of the registry.
    """
    new_numbers = new >> 8
    extra = len(new) if mode == "add" else 0
    out = np.empty(current.count + extra, dtype=np.int64)  # pages beyond the result: untouched
    kept = 0
    for start in range(0, current.count, CHUNK):
        chunk = current.packed(start, min(start + CHUNK, current.count))
        chunk = chunk[~_contained(chunk, new_numbers)]
        out[extra + kept : extra + kept + len(chunk)] = chunk
        kept += len(chunk)
        current.drop_pages()
    if mode == "remove":
        result: Packed = out[:kept]
        return result
    # The kept entries sit at out[extra:]; each moves down by the number of new entries
    # before it (never past an entry not yet moved), then the new ones fill the gaps.
    inserted_at = np.searchsorted(out[extra : extra + kept], new)  # new numbers: none kept
    for start in range(0, kept, CHUNK):
        stop = min(start + CHUNK, kept)
        chunk = out[extra + start : extra + stop].copy()
        shift = np.searchsorted(inserted_at, np.arange(start, stop), side="right")
        out[np.arange(start, stop) + shift] = chunk
    out[inserted_at + np.arange(len(new))] = new
    merged: Packed = out[: kept + extra]
    return merged


def import_files(
    directory: Path,
    paths: Sequence[Path],
    *,
    mode: Mode = "full",
    country_code: str | None = None,
    national_digits: int = NATIONAL_DIGITS,
    progress: Progress | None = None,
) -> ImportResult:
    """Read ``paths`` and write the registry's next generation in ``directory``.

    Raises :class:`DndImportError` for an unreadable file or a bad line, and
    :class:`~voiceplane.policy.dnd_file.ImportBusy` when another import is running; the
    registry is unchanged in both cases.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
    code = check_country_code(country_code)
    began = time.perf_counter()
    sizes = []
    for path in paths:
        try:
            sizes.append(path.stat().st_size)
        except OSError as exc:
            raise DndImportError(str(path), f"cannot read it: {exc.strerror or exc}") from None
    reader = _Reader(code, national_digits, progress, sum(sizes))
    with dnd_file.import_lock(directory):
        for path in paths:
            reader.read(path)
        entries = reader.count
        if mode == "full" and entries == 0:
            # An empty dump is far likelier a mistake than a country without DND subscribers.
            names = ", ".join(str(path) for path in paths)
            raise DndImportError(names, "no numbers: a full import would empty the registry")
        new = unique_sorted(reader.packed[:entries])
        current = dnd_file.open_current(directory)
        generation = current.generation + 1 if current is not None else 1
        count_before = current.count if current is not None else 0
        if current is None or mode == "full":
            result = new if mode != "remove" else new[:0]
        else:
            result = merge(current, new, mode)
        del current  # unmap before the file is replaced and deleted
        dnd_file.write_generation(directory, result, generation)
    return ImportResult(
        mode=mode,
        generation=generation,
        files=len(paths),
        entries=entries,
        unique=len(new),
        count_before=count_before,
        count=len(result),
        seconds=time.perf_counter() - began,
    )
