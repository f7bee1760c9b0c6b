"""The DND registry at national scale: import time, lookup latency, resident memory.

    .venv/bin/python bench/dnd.py [--count 100000000] [--lookups 1000000] [--dir DIR]

1. A child process writes ``--count`` random Indian mobile numbers (91 and 10 digits from
   6000000000 to 9999999999, repeats allowed as in a real dump) to a text file, one a line,
   and keeps a sample of them for hits (not timed).
2. Another child imports the file (full mode, timed) with
   :func:`voiceplane.policy.dnd_import.import_files` and reports its own peak resident
   memory (VmHWM): the import's memory, measured apart from the lookups'.
3. This process opens the registry (:class:`voiceplane.policy.dnd.DndRegistry`, memory
   mapped) and times ``--lookups`` single ``blocks()`` calls one by one with
   ``time.perf_counter_ns`` (half numbers from the file, half random numbers of the same
   range: nearly all misses), in one pass: every call counts, the first (cold pages) too.
   The same queries through ``numpy.searchsorted`` on the same mapped arrays are timed for
   comparison (a tenth of them).
4. Resident memory (VmRSS, VmHWM of /proc/self/status) of this process after opening the
   registry and after the lookups: the mapped file's pages that the lookups touched count.

Targets: import under 120 s, lookup p99 under 5 microseconds, resident memory under 1 GiB
(the import's peak and the lookup process's peak are each held to it). Prints PASS/FAIL.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from array import array
from pathlib import Path

import numpy as np

LOW, HIGH = 916_000_000_000, 920_000_000_000  # +91 6000000000 .. +91 9999999999
IMPORT_LIMIT_S = 120.0
P99_LIMIT_US = 5.0
MEMORY_LIMIT = 1 << 30
GENERATE_CHUNK = 5_000_000
SAMPLE = 2_000_000


def memory() -> dict[str, int]:
    """VmRSS and VmHWM of this process, in bytes."""
    figures = {}
    with open("/proc/self/status") as status:
        for line in status:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                figures[key] = int(value.split()[0]) * 1024
    return figures


def generate(path: Path, count: int, sample_path: Path, seed: int = 5) -> None:
    rng = np.random.default_rng(seed)
    sample = []
    powers = 10 ** np.arange(11, -1, -1, dtype=np.int64)
    with path.open("wb") as file:
        for start in range(0, count, GENERATE_CHUNK):
            size = min(GENERATE_CHUNK, count - start)
            numbers = rng.integers(LOW, HIGH, size, dtype=np.int64)
            sample.append(numbers[: SAMPLE * size // count + 1])
            text = np.empty((size, 13), dtype=np.uint8)
            text[:, :12] = (numbers[:, None] // powers[None, :] % 10 + ord("0")).astype(np.uint8)
            text[:, 12] = ord("\n")
            file.write(text.tobytes())
    np.save(sample_path, np.concatenate(sample))


def run_import(directory: Path, path: Path) -> None:
    from voiceplane.policy.dnd_import import import_files

    began = time.perf_counter()
    result = import_files(directory, [path], mode="full")
    seconds = time.perf_counter() - began
    print(json.dumps({"seconds": seconds, "count": result.count, "entries": result.entries,
                      **memory()}))  # fmt: skip


def child(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, __file__, *args], check=True, capture_output=True, text=True
    )
    return done.stdout


def percentile(sorted_ns: np.ndarray, fraction: float) -> float:
    return float(sorted_ns[min(len(sorted_ns) - 1, int(len(sorted_ns) * fraction))]) / 1000


def time_lookups(queries: list[str], check: object) -> np.ndarray:
    clock = time.perf_counter_ns
    spent = array("q", bytes(8 * len(queries)))
    blocks = check
    for index, query in enumerate(queries):
        began = clock()
        blocks(query)  # type: ignore[operator]
        spent[index] = clock() - began
    return np.sort(np.frombuffer(spent, dtype=np.int64))


def numpy_finder(registry: object) -> object:
    """The same lookup with np.searchsorted over numpy views of the mapped arrays."""
    from voiceplane.policy.dnd import number_key

    mapped = registry.snapshot()  # type: ignore[attr-defined]
    offsets = np.frombuffer(mapped.offsets, dtype=np.uint32)
    lows = np.frombuffer(mapped.lows, dtype=np.uint32 if mapped.header.low_size == 4 else np.uint64)
    masks = np.frombuffer(mapped.masks, dtype=np.uint8)
    low_type = lows.dtype.type

    def find(e164: str) -> int | None:
        relative = number_key(e164) - mapped.base
        bucket = relative >> mapped.shift
        if relative < 0 or bucket >= mapped.buckets:
            return None
        start, stop = int(offsets[bucket]), int(offsets[bucket + 1])
        low = low_type(relative & mapped.low_mask)
        index = start + int(np.searchsorted(lows[start:stop], low))
        return int(masks[index]) if index < stop and lows[index] == low else None

    return find


def report(name: str, value: float, unit: str, limit: float, *, below: bool = True) -> bool:
    ok = value < limit if below else value > limit
    print(f"  {name:<44} {value:>12.2f} {unit:<4} (target < {limit:g} {unit})  "
          f"{'PASS' if ok else 'FAIL'}")  # fmt: skip
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=100_000_000)
    parser.add_argument("--lookups", type=int, default=1_000_000)
    parser.add_argument("--dir", type=Path, default=None, help="work here (default: a temp dir)")
    parser.add_argument("--phase", choices=["generate", "import"], help=argparse.SUPPRESS)
    parser.add_argument("args", nargs="*", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.phase == "generate":
        generate(Path(options.args[0]), options.count, Path(options.args[1]))
        return 0
    if options.phase == "import":
        run_import(Path(options.args[0]), Path(options.args[1]))
        return 0

    with tempfile.TemporaryDirectory(dir=options.dir) as work:
        root = Path(work)
        numbers, sample_path, registry_dir = root / "dnd.txt", root / "sample.npy", root / "dnd"
        print(f"generating {options.count:,} numbers ...", flush=True)
        began = time.perf_counter()
        child("--phase", "generate", "--count", str(options.count), str(numbers),
              str(sample_path))  # fmt: skip
        size = numbers.stat().st_size
        print(f"  {size / 1e9:.2f} GB in {time.perf_counter() - began:.1f} s (not timed)")
        print("importing (full mode, in a child process) ...", flush=True)
        imported = json.loads(child("--phase", "import", str(registry_dir), str(numbers)))
        numbers.unlink()

        from voiceplane.policy.dnd import DndRegistry

        registry = DndRegistry(registry_dir, refresh_interval_s=1.0)
        stats = registry.stats()
        opened = memory()
        rng = np.random.default_rng(7)
        hits = np.load(sample_path)
        half = options.lookups // 2
        chosen = np.concatenate(
            [rng.choice(hits, half), rng.integers(LOW, HIGH, options.lookups - half)]
        )
        rng.shuffle(chosen)
        queries = [f"+{value}" for value in chosen.tolist()]
        del hits, chosen
        load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
        print(f"timing {len(queries):,} lookups one by one ...", flush=True)
        spent = time_lookups(queries, registry.blocks)
        after = memory()
        found = sum(registry.blocks(query) for query in queries[:100_000]) / 100_000
        compare = queries[: max(1, len(queries) // 10)]
        spent_numpy = time_lookups(compare, numpy_finder(registry))

    p50, p99 = percentile(spent, 0.50), percentile(spent, 0.99)
    mib = 2**20
    per_number = stats.file_size / max(1, stats.count)
    rate = imported["entries"] / imported["seconds"] / 1e6
    print()
    print(f"load average before the lookups: {load}")
    print(f"registry: {stats.count:,} numbers ({imported['entries']:,} lines, repeats merged), "
          f"file {stats.file_size / 1e6:.0f} MB ({per_number:.2f} B/number)")  # fmt: skip
    print(f"import: {imported['seconds']:.1f} s ({rate:.2f} M lines/s), "
          f"peak RSS of the import process {imported['VmHWM'] / mib:.0f} MiB")  # fmt: skip
    print(f"lookups (blocks(), bisect over the mapped file): {len(spent):,} calls, "
          f"{found:.0%} on the registry; p50 {p50:.2f} us, p90 {percentile(spent, 0.9):.2f} us, "
          f"p99 {p99:.2f} us, p99.9 {percentile(spent, 0.999):.2f} us, "
          f"max {spent[-1] / 1000:.1f} us, mean {spent.mean() / 1000:.2f} us")  # fmt: skip
    numpy_p50, numpy_p99 = percentile(spent_numpy, 0.5), percentile(spent_numpy, 0.99)
    print(f"same lookups with numpy.searchsorted: {len(spent_numpy):,} calls, "
          f"p50 {numpy_p50:.2f} us, p99 {numpy_p99:.2f} us")  # fmt: skip
    print(f"lookup process: RSS {opened['VmRSS'] / mib:.0f} MiB after opening, "
          f"{after['VmRSS'] / mib:.0f} MiB after the lookups, peak {after['VmHWM'] / mib:.0f} "
          f"MiB (includes the {len(queries):,} query strings)")  # fmt: skip
    print()
    results = [
        report(f"import of {options.count:,} numbers", imported["seconds"], "s", IMPORT_LIMIT_S),
        report("lookup p99", p99, "us", P99_LIMIT_US),
        report("import process peak RSS", imported["VmHWM"] / 2**20, "MiB", 1024),
        report("lookup process peak RSS", after["VmHWM"] / 2**20, "MiB", 1024),
    ]
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
