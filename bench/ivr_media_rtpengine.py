"""Prompt pacing through rtpengine with many callers held in a flow (issue 6: 2,000 legs).

    .venv/bin/python bench/ivr_media_rtpengine.py [--legs 2000] [--seconds 3] [--ramp 1]

Starts its own rtpengine (userspace, tests/support/rtpengine.py), opens ``--legs``
sessions of the rtpengine backend, each answering the SDP offer of one caller, and plays
each caller a ``--seconds`` prompt while its session waits for a key (as a gather does).
Callers join over ``--ramp`` seconds. A caller is a UDP socket in this process that is not
read while the prompts play: the kernel stamps each packet on arrival (SO_TIMESTAMPNS) and
keeps it, and the sockets are drained afterwards, so measuring costs no CPU during the run.

The figure: for every caller, the intervals between the prompt packets it received; the
p99 of their distance from 20 ms over all callers. PASS when that is within 5 ms and no
packet was lost. Also printed: rtpengine's CPU (of one core) and the load average.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import math
import os
import socket
import struct
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests.support

from tests.support.rtpengine import RtpengineDaemon  # noqa: E402

from voiceplane.media.rtpengine import RtpengineMedia, RtpengineSession  # noqa: E402
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


def drain(sock: socket.socket) -> list[int]:
    """Arrival times (ns) of the packets waiting on ``sock``."""
    times: list[int] = []
    while True:
        try:
            _, ancillary, _, _ = sock.recvmsg(2048, socket.CMSG_SPACE(TIMESPEC.size))
        except BlockingIOError:
            return times
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


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(fraction * len(ordered)) - 1)]


async def run(
    daemon: RtpengineDaemon,
    media: RtpengineMedia,
    phones: list[socket.socket],
    seconds: float,
    ramp: float,
) -> tuple[list[list[int]], float, float, float, list[BaseException]]:
    """Set the legs up, play, drain: (arrivals, setup s, wall s, rtpengine CPU s, failures)."""
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
    began, cpu = time.perf_counter(), cpu_seconds(daemon.pid)
    outcomes = await asyncio.gather(
        *(caller(s, prompt, ramp * i / legs) for i, s in enumerate(sessions)),
        return_exceptions=True,
    )
    wall, cpu = time.perf_counter() - began, cpu_seconds(daemon.pid) - cpu
    await asyncio.sleep(0.5)  # the last packets' way to the callers
    failed = [o for o in outcomes if isinstance(o, BaseException)]
    if failed:
        print(f"{len(failed)} callers failed, first: {failed[0]!r}")
    return [drain(sock) for sock in phones], setup, wall, cpu, failed


async def bench(daemon: RtpengineDaemon, legs: int, seconds: float, ramp: float) -> bool:
    media = RtpengineMedia(daemon.ng, dtmf_log=daemon.dtmf_log, ng_timeout=10.0)
    await media.start()
    phones = [phone() for _ in range(legs)]
    try:
        arrivals, setup, wall, cpu, failed = await run(daemon, media, phones, seconds, ramp)
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
    print(
        f"legs {legs}, prompt {seconds:g} s, ramp {ramp:g} s, load {os.getloadavg()[0]:.1f}, "
        f"rtpengine threads {daemon.threads or 'default'} {' '.join(daemon.extra)}, "
        f"setup {setup:.1f} s ({1000 * setup / legs:.2f} ms a leg)"
    )
    print(
        f"interval deviation from {PTIME_MS:g} ms: p50 {p50:.2f} ms, p99 {p99:.2f} ms, "
        f"max {max(deviations):.2f} ms; lost {lost} of {frames * legs}"
    )
    print(f"rtpengine CPU {100 * cpu / wall:.0f}% of one core over {wall:.1f} s")
    print(f"{'PASS' if passed else 'FAIL'}: p99 within {LIMIT_MS:g} ms of {PTIME_MS:g} ms")
    return passed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--legs", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--ramp", type=float, default=1.0, help="seconds over which callers join")
    parser.add_argument("--threads", type=int, default=None, help="rtpengine --num-threads")
    parser.add_argument(
        "--realtime",
        type=int,
        default=0,
        metavar="PRIORITY",
        help="run rtpengine's threads SCHED_FIFO at this priority (needs root), as a media "
        "server is run: on a shared machine other work then cannot delay its packets",
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
    with (
        RtpengineDaemon(
            ports=ports,
            low=10000,
            threads=args.threads,
            extra=("--scheduling=fifo", f"--priority={args.realtime}") if args.realtime else (),
        ) as daemon,
        asyncio.Runner(loop_factory=loop_factory) as runner,
    ):
        passed = runner.run(bench(daemon, args.legs, args.seconds, args.ramp))
    sys.exit(0 if passed else 1)


if __name__ == "__main__":
    main()
