"""Prompt pacing through rtpengine with many callers held in a flow (issue 6: 2,000 legs).

    .venv/bin/python bench/ivr_media_rtpengine.py [--legs 2000] [--seconds 10] [--ramp 4]
        [--realtime 50] [--media-threads N] [--option=--rtpengine-option ...]
        [--rtpengine 'chroot /srv/trixie rtpengine']

Starts its own rtpengine (userspace, tests/support/rtpengine.py, with the backend's
``DAEMON_OPTIONS``), opens ``--legs`` sessions of the rtpengine backend, each answering the
SDP offer of one caller, and plays each caller a ``--seconds`` prompt while its session
waits for a key (as a gather does). Callers join over ``--ramp`` seconds. A caller is a UDP
socket in this process that is not read while the prompts play: the kernel stamps each
packet on arrival (SO_TIMESTAMPNS) and keeps it, and the sockets are drained afterwards, so
measuring costs no CPU during the run. Only RTP counts: rtpengine also sends RTCP to the
port after each caller's, which may be another caller's socket.

The figure: for every caller, the intervals between the prompt packets it received; the
p99 of their distance from 20 ms over all callers. PASS when that is within 5 ms and no
packet was lost. Also printed: the load average, rtpengine's CPU per prompt packet over the
whole run and while every caller listens (after the last joined; by thread), and what that
cost means in cores for this many legs.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import dataclasses
import itertools
import math
import os
import socket
import struct
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests.support

from _procfs import cpu_seconds, stat_cpu_seconds  # noqa: E402
from tests.support.rtpengine import RtpengineDaemon  # noqa: E402

from voiceplane.media.rtpengine import (  # noqa: E402
    DAEMON_PRELOAD,
    RtpengineMedia,
    RtpengineSession,
)
from voiceplane.sip.sdp import make_offer  # noqa: E402

HOST = "127.0.0.1"
PTIME_MS = 20.0
LIMIT_MS = 5.0
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)  # Linux; also the cmsg type
SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)
TIMESPEC = struct.Struct("@qq")


def tone(seconds: float) -> bytes:
    count = round(seconds * 8000)
    return struct.pack(
        f"<{count}h", *(round(8000 * math.sin(2 * math.pi * 440 * i / 8000)) for i in range(count))
    )


def phone() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    try:  # room for the whole prompt while nobody reads (root may exceed rmem_max)
        sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 4 << 20)
    except OSError:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sock.bind((HOST, 0))
    sock.setblocking(False)
    return sock


def is_rtp(data: bytes) -> bool:
    # Version 2, and not RTCP (packet types 200-204 in the second byte, RFC 5761).
    return len(data) >= 12 and data[0] >> 6 == 2 and not 200 <= data[1] <= 204


def drain(sock: socket.socket) -> list[int]:
    """Arrival times (ns) of the RTP packets waiting on ``sock``."""
    times: list[int] = []
    while True:
        try:
            data, ancillary, _, _ = sock.recvmsg(2048, socket.CMSG_SPACE(TIMESPEC.size))
        except BlockingIOError:
            return times
        if not is_rtp(data):
            continue
        for level, kind, data in ancillary:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                seconds, nanoseconds = TIMESPEC.unpack(data[: TIMESPEC.size])
                times.append(seconds * 1_000_000_000 + nanoseconds)


async def caller(session: RtpengineSession, prompt: bytes, delay: float) -> None:
    await asyncio.sleep(delay)
    listening = asyncio.ensure_future(session.dtmf().get())  # a gather waiting for a key
    try:
        await session.play(prompt)
    finally:
        listening.cancel()


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds of each of ``pid``'s threads, summed by thread name."""
    totals: dict[str, float] = collections.defaultdict(float)
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            name = (task / "comm").read_text().strip()
            totals[name] += stat_cpu_seconds(task / "stat")
        except (OSError, ValueError):  # a thread that just ended
            continue
    return totals


@dataclasses.dataclass
class Cpu:
    """rtpengine's CPU seconds over the run and over the window in which all callers listen."""

    run: float = 0.0
    run_wall: float = 0.0
    steady: float = 0.0
    steady_wall: float = 0.0
    window: tuple[int, int] = (0, 0)  # the steady window, in CLOCK_REALTIME ns as stamped
    threads: dict[str, float] = dataclasses.field(default_factory=dict)


async def watch_steady(pid: int, ramp: float, seconds: float, cpu: Cpu) -> None:
    """Measure rtpengine's CPU from just after the last caller joined to just before the
    first caller's prompt ends: every caller listening, no prompt starting or ending."""
    window = seconds - ramp - 0.6
    if window < 0.5:
        return
    await asyncio.sleep(ramp + 0.3)
    began, before, threads = time.perf_counter(), cpu_seconds(pid), thread_cpu(pid)
    opened = time.time_ns()
    await asyncio.sleep(window)
    cpu.window = (opened, time.time_ns())
    cpu.steady_wall = time.perf_counter() - began
    cpu.steady = cpu_seconds(pid) - before
    after = thread_cpu(pid)
    cpu.threads = {name: after[name] - threads.get(name, 0.0) for name in after}


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(fraction * len(ordered)) - 1)]


async def run(
    daemon: RtpengineDaemon,
    media: RtpengineMedia,
    phones: list[socket.socket],
    seconds: float,
    ramp: float,
) -> tuple[list[list[int]], float, Cpu, list[BaseException]]:
    """Set the legs up, play, drain: (arrivals, setup s, rtpengine CPU, failures)."""
    legs = len(phones)
    sessions = []
    began = time.perf_counter()
    for i, sock in enumerate(phones):
        session = await media.open_session()
        sessions.append(session)
        offer = make_offer(address=HOST, port=sock.getsockname()[1], session_id=i + 1)
        try:
            session.answer(offer.encode())
        except Exception:
            print(f"setting up leg {i + 1} failed:\n{daemon.log_text()[-1000:]}")
            raise
    setup = time.perf_counter() - began
    prompt = tone(seconds)
    cpu = Cpu()
    steady = asyncio.ensure_future(watch_steady(daemon.pid, ramp, seconds, cpu))
    began, before = time.perf_counter(), cpu_seconds(daemon.pid)
    outcomes = await asyncio.gather(
        *(caller(s, prompt, ramp * i / legs) for i, s in enumerate(sessions)),
        return_exceptions=True,
    )
    await steady
    await asyncio.sleep(1.0)  # the last packets' way to the callers (late ones included)
    cpu.run_wall, cpu.run = time.perf_counter() - began, cpu_seconds(daemon.pid) - before
    failed = [o for o in outcomes if isinstance(o, BaseException)]
    if failed:
        print(f"{len(failed)} callers failed, first: {failed[0]!r}")
    return [drain(sock) for sock in phones], setup, cpu, failed


async def bench(daemon: RtpengineDaemon, legs: int, seconds: float, ramp: float) -> bool:
    media = RtpengineMedia(daemon.ng, dtmf_log=daemon.dtmf_log, ng_timeout=10.0)
    await media.start()
    phones = [phone() for _ in range(legs)]
    try:
        arrivals, setup, cpu, failed = await run(daemon, media, phones, seconds, ramp)
    finally:
        await media.close()  # also on a failure: its prompt folder goes too
        for sock in phones:
            sock.close()

    frames = math.ceil(seconds * 1000 / PTIME_MS)
    lost = sum(max(0, frames - len(leg)) for leg in arrivals)
    deviations = [
        abs((b - a) / 1e6 - PTIME_MS) for leg in arrivals for a, b in itertools.pairwise(leg)
    ]
    if not deviations:
        print("FAIL: no prompt packet arrived")
        return False
    p50, p99 = percentile(deviations, 0.5), percentile(deviations, 0.99)
    passed = p99 <= LIMIT_MS and lost == 0 and not failed
    received = sum(len(leg) for leg in arrivals)
    print(
        f"legs {legs}, prompt {seconds:g} s, ramp {ramp:g} s, "
        f"load {' '.join(f'{v:.2f}' for v in os.getloadavg())}, "
        f"rtpengine {' '.join(daemon.command()[len(daemon.binary) + 10 :])}"
        f"{' with ' + DAEMON_PRELOAD if daemon.preload else ''}, "
        f"setup {setup:.1f} s ({1000 * setup / legs:.2f} ms a leg)"
    )
    print(
        f"interval deviation from {PTIME_MS:g} ms: p50 {p50:.2f} ms, p99 {p99:.2f} ms, "
        f"max {max(deviations):.2f} ms; lost {lost} of {frames * legs}"
    )
    print(
        f"rtpengine CPU {100 * cpu.run / cpu.run_wall:.0f}% of one core over "
        f"{cpu.run_wall:.1f} s: {1e6 * cpu.run / max(1, received):.1f} us a packet received, "
        "prompt starts included"
    )
    opened, closed = cpu.window
    report_steady(cpu, legs, sum(opened <= t < closed for leg in arrivals for t in leg))
    print(f"{'PASS' if passed else 'FAIL'}: p99 within {LIMIT_MS:g} ms of {PTIME_MS:g} ms")
    return passed


def report_steady(cpu: Cpu, legs: int, sent: int) -> None:
    """CPU per packet while every caller listens, and what it means for this machine.

    ``sent``: the packets that arrived in that window (fewer than due when rtpengine falls
    behind, so the cost is per packet it managed to send)."""
    if not cpu.steady_wall or not sent:
        print("(no window with every caller listening: --seconds must exceed --ramp + 1)")
        return
    rate = sent / cpu.steady_wall  # packets a second rtpengine sent
    share = cpu.steady / cpu.steady_wall
    per_packet = 1e6 * cpu.steady / sent
    busy = ", ".join(
        f"{name} {100 * spent / cpu.steady_wall:.0f}%"
        for name, spent in sorted(cpu.threads.items(), key=lambda item: -item[1])
        if spent / cpu.steady_wall >= 0.01
    )
    print(
        f"all {legs} listening ({cpu.steady_wall:.1f} s): rtpengine {100 * share:.0f}% of one "
        f"core ({busy}) = {per_packet:.1f} us a packet at {rate:,.0f} packets/s "
        f"({legs * 1000 / PTIME_MS:,.0f} due)"
    )
    print(
        f"at {per_packet:.1f} us a packet, one core sends {1e6 / per_packet:,.0f} packets/s "
        f"({1e6 / per_packet * PTIME_MS / 1000:,.0f} legs); {legs} legs need "
        f"{legs * per_packet * 1000 / PTIME_MS / 1e6:.2f} cores, "
        f"2,000 legs {2000 * per_packet * 1000 / PTIME_MS / 1e6:.2f}; "
        f"this machine has {os.cpu_count()}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--legs", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument(
        "--ramp",
        type=float,
        default=4.0,
        help="seconds over which callers join (each join starts a prompt: rtpengine opens and "
        "probes its file, so a short ramp measures prompt starts more than pacing)",
    )
    parser.add_argument("--threads", type=int, default=None, help="rtpengine --num-threads")
    parser.add_argument(
        "--media-threads",
        type=int,
        default=None,
        help="rtpengine --media-num-threads (default: the backend's DAEMON_OPTIONS)",
    )
    parser.add_argument(
        "--option",
        action="append",
        default=[],
        help="another rtpengine option, e.g. --option=--log-level=3 (repeatable)",
    )
    parser.add_argument(
        "--realtime",
        type=int,
        default=50 if os.geteuid() == 0 else 0,
        metavar="PRIORITY",
        help="run rtpengine's threads SCHED_FIFO at this priority, as a media server is run: "
        "on a shared machine other work then cannot delay its packets (default 50 as root, "
        "which it needs; 0: the default policy)",
    )
    parser.add_argument(
        "--no-preload",
        action="store_true",
        help="start rtpengine without the backend's DAEMON_PRELOAD (tcmalloc)",
    )
    parser.add_argument(
        "--rtpengine",
        default="rtpengine",
        help="the command that runs rtpengine, e.g. 'chroot /srv/trixie rtpengine' for "
        "Debian 13's (README); it must see this machine's /tmp",
    )
    args = parser.parse_args()
    try:
        import uvloop
    except ImportError:
        loop_factory = None
    else:
        loop_factory = uvloop.new_event_loop
    # Four ports a leg on rtpengine's side (RTP and RTCP towards the caller and towards us),
    # and twice that for the ports it skips: below Linux's ephemeral range (32768-), where
    # this process's own sockets are.
    ports = min(8 * args.legs + 200, 32000 - 10000)
    extra = tuple(args.option)
    if args.media_threads is not None:
        extra += (f"--media-num-threads={args.media_threads}",)
    with (
        RtpengineDaemon(
            ports=ports,
            low=10000,
            threads=args.threads,
            realtime=args.realtime,
            extra=extra,
            binary=tuple(args.rtpengine.split()),
            preload=not args.no_preload and args.rtpengine == "rtpengine",
        ) as daemon,
        asyncio.Runner(loop_factory=loop_factory) as runner,
    ):
        passed = runner.run(bench(daemon, args.legs, args.seconds, args.ramp))
    sys.exit(0 if passed else 1)


if __name__ == "__main__":
    main()
