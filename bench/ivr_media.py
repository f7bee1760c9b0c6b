"""Prompt pacing of the embedded media backend with many callers held in a flow.

    .venv/bin/python bench/ivr_media.py [--legs 300] [--seconds 10] [--no-talk] [--record]
    .venv/bin/python bench/ivr_media.py --through-serve [--legs 300] [--seconds 10] [--ramp 1]

One voiceplane media backend (this process, uvloop) opens ``--legs`` sessions, each
answering the SDP offer of one caller, and plays each caller a ``--seconds`` prompt while
listening for a key (as a flow's gather does). The callers are plain UDP sockets in a
process of their own (bench/_rtp_callers.py): they note the kernel receive time of every
packet and, unless ``--no-talk``, answer each with 20 ms of audio, so the platform receives
as much RTP as it sends. ``--record`` also records every caller to a WAV (in a temp dir).
Callers join over ``--ramp`` seconds, as real ones would not all come at once.

The figure: for every caller, the intervals between the prompt packets it received; the
p99 of their distance from 20 ms over all callers. PASS when that is within 5 ms and no
packet was lost. Also printed: the CPU this process used (of one core) and the load average,
since on a shared machine other processes' CPU shows up as late ticks. ``--realtime`` runs
this process SCHED_FIFO, as media servers are run (Asterisk ``-p``, FreeSWITCH ``-rp``).

``--through-serve`` measures the same figure end to end, as a flow runs it (bench/_ivr_serve.py):
``voiceplane serve`` as a subprocess (embedded media, SQLite in a temp data dir), an account,
a DID and a published flow (a ``gather`` whose prompt is the ``--seconds`` tone as a WAV in
``<data dir>/media``, then ``hangup``); then the same callers process, then SIPp
(bench/_ivr_sipp_caller.xml) placing ``--legs`` calls over ``--ramp`` seconds, each INVITE's
SDP pointing at one caller socket (an injection file), each call held for the prompt plus
2 s, then BYE. SIPp sends no RTP: the callers answer the prompt as above. Also printed:
calls answered and failed (SIPp's counts and statistics), serve's records by status, the
prompt packets each caller got (a caller that got fewer counts them as lost), serve's CPU
over the calls (/proc, and idle before them) and per prompt packet, and the load average.
``--nice``/``--realtime`` then apply to serve (``nice -n``, ``chrt -f 10``); ``--profile FILE``
samples serve with py-spy over the calls (GIL-holding samples, collapsed stacks).

The ceiling to compare with (skipped by ``--no-ceiling`` or when there is no gcc): the same callers
receiving the same packet pattern from a plain C loop (bench/_rtp_pacer.c, compiled into a
temp dir), run right after the platform and measured the same way. What spread the C loop
shows is the machine's (scheduler, hypervisor, loopback), not the platform's.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import math
import os
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _ivr_serve import Run, through_serve

from voiceplane.media.embedded import EmbeddedMedia, EmbeddedSession
from voiceplane.sip.sdp import make_offer

HERE = Path(__file__).resolve().parent
HOST = "127.0.0.1"
PTIME_MS = 20.0
LIMIT_MS = 5.0


def tone(seconds: float) -> bytes:
    count = round(seconds * 8000)
    return struct.pack(
        f"<{count}h", *(round(8000 * math.sin(2 * math.pi * 440 * i / 8000)) for i in range(count))
    )


async def caller(
    session: EmbeddedSession, prompt: bytes, delay: float, record: Path | None, seconds: float
) -> None:
    await asyncio.sleep(delay)
    listening = asyncio.ensure_future(session.dtmf().get())  # a gather waiting for a key
    if record is not None:
        recording = asyncio.ensure_future(session.record(record, seconds + 1, "#"))
    try:
        async with asyncio.timeout(2 * seconds + 5):
            await session.play(prompt)
    finally:
        listening.cancel()
        if record is not None:
            await session.close()
            await recording


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(fraction * len(ordered)) - 1)]


async def bench(
    legs: int, seconds: float, talk: bool, record: bool, ramp: float, nice: int, realtime: bool
) -> bool:
    workdir = Path(tempfile.mkdtemp(prefix="ivr_media_"))
    out = workdir / "arrivals.json"
    command = [sys.executable, str(HERE / "_rtp_callers.py"), str(legs), str(out)]
    callers = subprocess.Popen(command + (["--talk"] if talk else []), stdout=subprocess.PIPE)
    assert callers.stdout is not None
    ports = json.loads(callers.stdout.readline())
    if nice:
        os.nice(nice)  # this process only: the callers keep the default priority
    if realtime:  # as Asterisk's -p or FreeSWITCH's -rp run media: ahead of everything else
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(10))
    media = EmbeddedMedia(HOST, (40000, 40000 + 4 * legs + 100))
    sessions = []
    for i, port in enumerate(ports):
        session = await media.open_session()
        session.answer(make_offer(address=HOST, port=port, session_id=i + 1).encode())
        sessions.append(session)
    prompt = tone(seconds)
    began, cpu = time.perf_counter(), time.process_time()
    outcomes = await asyncio.gather(
        *(
            caller(s, prompt, ramp * i / legs, workdir / f"{i}.wav" if record else None, seconds)
            for i, s in enumerate(sessions)
        ),
        return_exceptions=True,
    )
    failed = [o for o in outcomes if isinstance(o, BaseException)]
    if failed:
        print(f"{len(failed)} callers failed, first: {failed[0]!r}")
    wall, cpu = time.perf_counter() - began, time.process_time() - cpu
    await asyncio.sleep(0.3)  # the last packets' way to the callers
    received = sum(s.packets_received for s in sessions)
    await media.close()
    callers.send_signal(signal.SIGTERM)
    callers.wait(10)
    result = json.loads(out.read_text())

    frames = math.ceil(seconds * 1000 / PTIME_MS)
    print(f"arrival times (ns, per caller): {out}")
    print(
        f"legs {legs}, prompt {seconds:g} s, talk {'on' if talk else 'off'}, "
        f"record {'on' if record else 'off'}, nice {os.nice(0)}, "
        f"{'SCHED_FIFO' if realtime else 'SCHED_OTHER'}, load {os.getloadavg()[0]:.1f}"
    )
    p99, lost = spread("platform", result["arrivals"], frames)
    print(
        f"platform CPU {100 * cpu / wall:.0f}% of one core over {wall:.1f} s; "
        f"RTP received {received} (callers sent {result['sent']})"
    )
    passed = p99 <= LIMIT_MS and lost == 0 and not failed
    print(f"{'PASS' if passed else 'FAIL'}: p99 within {LIMIT_MS:g} ms of {PTIME_MS:g} ms")
    return passed


def report_through_serve(
    run: Run, legs: int, seconds: float, talk: bool, prefix: list[str]
) -> bool:
    """Print the --through-serve figures; True when they pass."""
    frames = math.ceil(seconds * 1000 / PTIME_MS)
    print(f"arrival times (ns, per caller), serve's log, SIPp's logs: {run.workdir}")
    print(
        f"through serve: legs {legs}, prompt {seconds:g} s, talk {'on' if talk else 'off'}, "
        f"serve run as {' '.join(prefix) or 'is'}, load {run.load[0]:.2f} before, "
        f"{run.load[1]:.2f} after"
    )
    sipp = run.sipp
    print(
        f"SIPp: {run.answered} answered, {sipp.successful} successful (INVITE to BYE's 200), "
        f"{sipp.failed} failed, of {legs}; INVITE to 200 mean {sipp.answer_ms:.0f} ms "
        f"(stdev {sipp.answer_ms_stdev:.0f}), {sipp.retransmissions} retransmissions"
    )
    print(
        "serve's records: "
        + (", ".join(f"{n} {what}" for what, n in sorted(run.records.items())) or "none")
    )
    if any(run.arrivals):
        p99, lost = spread("serve", run.arrivals, frames)
        held(run.arrivals)
    else:
        p99, lost = math.inf, frames * legs
        print(f"serve: no caller received a packet; lost {lost} of {lost}")
    packets = sum(len(a) for a in run.arrivals)
    counts = sorted(len(a) for a in run.arrivals)
    print(
        f"prompt packets a caller received: min {counts[0]}, median {counts[len(counts) // 2]}, "
        f"max {counts[-1]} (due {frames}); callers with none: {counts.count(0)}"
    )
    print(
        f"serve CPU {run.serve_cpu:.2f} s over {run.wall:.1f} s "
        f"({100 * run.serve_cpu / run.wall:.0f}% of one core, {100 * run.idle_cpu:.1f}% idle; "
        f"children {run.children_cpu:.2f} s): "
        f"{1e6 * run.serve_cpu / max(packets, 1):.0f} us a prompt packet received, "
        f"{1e3 * run.serve_cpu / max(legs, 1):.0f} ms a call; callers sent {run.sent} RTP packets"
    )
    passed = p99 <= LIMIT_MS and lost == 0 and sipp.successful == legs and sipp.failed == 0
    print(f"{'PASS' if passed else 'FAIL'}: p99 within {LIMIT_MS:g} ms of {PTIME_MS:g} ms")
    return passed


def held(arrivals: list[list[int]]) -> None:
    """Print the spread of the intervals while every caller was held (from the last caller's
    first packet to the first caller's last): the ramp's and the hangups' signalling left out.
    A second figure beside the whole run's, never instead of it."""
    starts, ends = [a[0] for a in arrivals if a], [a[-1] for a in arrivals if a]
    begin, end = max(starts), min(ends)
    deviations = [
        abs((b - a) / 1e6 - PTIME_MS)
        for leg in arrivals
        for a, b in itertools.pairwise(leg)
        if begin <= a and b <= end
    ]
    if not deviations:
        print("every caller held: never at once (the ramp is longer than the prompt)")
        return
    print(
        f"every caller held ({(end - begin) / 1e9:.1f} s): p50 {percentile(deviations, 0.5):.2f} "
        f"ms, p99 {percentile(deviations, 0.99):.2f} ms, max {max(deviations):.2f} ms "
        f"over {len(deviations)} intervals"
    )


def spread(who: str, arrivals: list[list[int]], frames: int) -> tuple[float, int]:
    """Print and return the p99 distance from 20 ms of the intervals, and the packets lost."""
    lost = sum(frames - len(a) for a in arrivals)
    deviations = [
        abs((b - a) / 1e6 - PTIME_MS) for leg in arrivals for a, b in itertools.pairwise(leg)
    ]
    p50, p99 = percentile(deviations, 0.5), percentile(deviations, 0.99)
    print(
        f"{who}: interval deviation from {PTIME_MS:g} ms: p50 {p50:.2f} ms, p99 {p99:.2f} ms, "
        f"max {max(deviations):.2f} ms; lost {lost} of {frames * len(arrivals)}"
    )
    return p99, lost


def ceiling(legs: int, seconds: float, talk: bool, realtime: bool) -> None:
    """The same callers fed by bench/_rtp_pacer.c: what this machine allows at best."""
    compiler = shutil.which("gcc") or shutil.which("cc")
    if compiler is None:
        print("ceiling: skipped (no C compiler)")
        return
    workdir = Path(tempfile.mkdtemp(prefix="ivr_media_ceiling_"))
    pacer, out = workdir / "pacer", workdir / "arrivals.json"
    subprocess.run([compiler, "-O2", "-o", str(pacer), str(HERE / "_rtp_pacer.c")], check=True)
    command = [sys.executable, str(HERE / "_rtp_callers.py"), str(legs), str(out)]
    callers = subprocess.Popen(command + (["--talk"] if talk else []), stdout=subprocess.PIPE)
    assert callers.stdout is not None
    ports = json.loads(callers.stdout.readline())
    run = [str(pacer), f"{seconds:g}", *map(str, ports)]
    if realtime:
        run = ["chrt", "-f", "10", *run]
    subprocess.run(run, check=True)
    time.sleep(0.3)  # the last packets' way to the callers
    callers.send_signal(signal.SIGTERM)
    callers.wait(10)
    frames = math.ceil(seconds * 1000 / PTIME_MS)
    spread(
        f"ceiling (C, load {os.getloadavg()[0]:.1f})",
        json.loads(out.read_text())["arrivals"],
        frames,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--legs", type=int, default=300)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--ramp", type=float, default=1.0, help="seconds over which callers join")
    parser.add_argument("--no-talk", dest="talk", action="store_false")
    parser.add_argument("--record", action="store_true")
    parser.add_argument(
        "--nice",
        type=int,
        default=0,
        help="change this process's niceness (e.g. -10, needs root)",
    )
    parser.add_argument(
        "--realtime",
        action="store_true",
        help="run this process SCHED_FIFO (needs root), as a media server would be run",
    )
    parser.add_argument(
        "--no-ceiling",
        dest="ceiling",
        action="store_false",
        help="skip the C pacer run (bench/_rtp_pacer.c) that shows what the machine allows",
    )
    parser.add_argument(
        "--through-serve",
        action="store_true",
        help="run voiceplane serve and ring a flow of it with SIPp callers (bench/_ivr_serve.py)",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="FILE",
        help="with --through-serve: py-spy samples of serve over the calls (collapsed stacks)",
    )
    args = parser.parse_args()
    if args.through_serve:
        if args.record:
            parser.error("--record does not go with --through-serve (the flow does not record)")
        prefix = (["nice", "-n", str(args.nice)] if args.nice else []) + (
            ["chrt", "-f", "10"] if args.realtime else []
        )
        pcm = tone(args.seconds)
        run = through_serve(
            args.legs, args.seconds, pcm, args.talk, args.ramp, prefix, args.profile
        )
        passed = report_through_serve(run, args.legs, args.seconds, args.talk, prefix)
        if args.ceiling:
            ceiling(args.legs, args.seconds, args.talk, args.realtime)
        sys.exit(0 if passed else 1)
    try:
        import uvloop
    except ImportError:
        loop_factory = None
    else:
        loop_factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        passed = runner.run(
            bench(
                args.legs, args.seconds, args.talk, args.record, args.ramp, args.nice, args.realtime
            )
        )
    if args.ceiling:
        ceiling(args.legs, args.seconds, args.talk, args.realtime)
    sys.exit(0 if passed else 1)


if __name__ == "__main__":
    main()
