"""Calls placed through the HTTP API, end to end against the sandbox operator.

    .venv/bin/python bench/api_calls.py [--service click2call|outbound|both]
                                        [--rates 100,200,300,400] [--seconds 10]

Two processes, as an operator would run them: ``voiceplane serve`` (HTTP API, engine, SIP,
SQLite in a temporary data directory) with its trunk pointed at ``voiceplane sandbox`` (the
built-in operator, in its own process, answering after 50 ms and hanging up after 1 s).
This script is the application: at each rate it POSTs calls open-loop for ``--seconds``
(one request every 1/rate s, whatever the answers do), then waits for every call to reach
its final status and checks each against what the dialled numbers must give:

    click-to-call: 80% both answer (ANSWER), 10% agent busy (BUSY_LEG1), 10% customer busy
                   (BUSY_LEG2)
    outbound:      90% answer (ANSWER; no target, so we hang up on the answer), 10% busy

Per step it also prints the CPU each process spent per call (serve, and of that its event
loop's thread alone, the sandbox, this load generator), counted until 2.5 s after the last
POST so the calls' hangups are in it, and the load average; `--profile DIR` samples serve
and the sandbox with py-spy (GIL-holding samples, collapsed stacks, a file per process and
step).

``--callgrind`` runs serve under valgrind instead and counts the instructions it executes
(every thread: event loop, store writer) per call while the calls run, from the first POST
to 2.5 s after the last: slow (one rate, and keep it low: 2/s), its latencies mean nothing,
but the count does not follow what else the machine does, as the CPU times on this VM do.
It still varies by about 4 % run to run (how work falls into batches and collector passes
depends on timing), and at 2/s it includes serve's fixed work per second (timers, sweeps):
2026-11-27, click-to-call at 2/s for 15 s, 17.0-18.4 M instructions a call.

``--against SRC`` compares this version with another (its ``src`` folder, a git worktree's
say: ``git worktree add /tmp/other REV``): one step, ``--repeat`` times for each version,
taking turns, each on a fresh platform, then the medians. On this VM a single run says
little (two runs of the same code differ by up to 2x in p99 at 300/s). Each version runs
its own compiled SIP core if its checkout has an up-to-date ``.native`` build
(``scripts/build_native.py``), its Python sources otherwise: a fresh worktree has none,
and ``VOICEPLANE_NATIVE=off`` makes this version run its sources too.

Two figures per service: the highest rate at which every call got its right status and
nothing was lost (with the p50 and p99 of the POSTs there), and the highest rate at which
that held with the API's p99 under 50 ms too. The ramp stops at the first rate where a
status is wrong or lost, or the p99 passes 1 s (overload). Then the ceiling, unless
``--skip-ceiling``: SIPp against SIPp with the same calls' signalling
(bench/_sipp_ceiling.py: SIPp as serve's side of each leg, SIPp as the operator doing what
the sandbox does), from our best rate up, doubling, 5 s a step, with the CPU a call both
peers needed, beside what serve and the sandbox needed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import _sipp_ceiling
import httpx
from _http_load import Pool
from _procfs import cpu_seconds, free_port, thread_cpu_seconds

HERE = Path(__file__).resolve().parent
VOICEPLANE = [str(Path(sys.executable).parent / "voiceplane")]
P99_LIMIT_MS = 50.0
CEILING_SECONDS = 5.0  # a SIPp-against-SIPp step
CEILING_CAP = {"click2call": 10_000, "outbound": 20_000}  # calls/s: enough to compare
BRIDGE = "+918047100000"
ANSWERS = "+9198765{:05d}"  # any number not ending in 000 or 400..699: answered
AGENT_BUSY = "+919876500486"


@dataclass
class Step:
    service: str
    rate: int
    offered: int
    accepted: int
    right: int
    wrong: dict[str, int]
    lost: int
    p50_ms: float
    p99_ms: float
    cpu_percent: float
    cpu_ms: dict[str, float]  # CPU per call, by process (serve, sandbox, load)

    @property
    def right_statuses(self) -> bool:
        """Every call accepted and ended with the status its numbers call for."""
        return self.accepted == self.offered and self.right == self.offered and self.lost == 0

    @property
    def clean(self) -> bool:
        return self.right_statuses and self.p99_ms < P99_LIMIT_MS


def own_cpu_seconds() -> float:
    """This process's CPU (the load generator), user and system."""
    return time.process_time()


def plan(service: str, index: int) -> tuple[dict[str, str], str]:
    """The request body of call ``index`` and the status it must end with."""
    answer = ANSWERS.format(index % 100_000)
    if answer.endswith("000") or 400 <= int(answer[-3:]) <= 699:
        answer = ANSWERS.format(11111)
    kind = index % 10
    if service == "click2call":
        if kind == 0:
            return {"from": AGENT_BUSY, "to": answer, "bridge": BRIDGE}, "BUSY_LEG1"
        if kind == 1:
            return {"from": answer, "to": AGENT_BUSY, "bridge": BRIDGE}, "BUSY_LEG2"
        return {"from": answer, "to": ANSWERS.format(22222), "bridge": BRIDGE}, "ANSWER"
    if kind == 0:
        return {"to": AGENT_BUSY, "bridge": BRIDGE}, "BUSY"
    return {"to": answer, "bridge": BRIDGE}, "ANSWER"


class Platform:
    """``voiceplane serve`` and ``voiceplane sandbox`` in a temporary directory; serve under
    callgrind (instrumenting nothing until told) when ``callgrind`` names its output file."""

    def __init__(
        self, workdir: Path, callgrind: Path | None = None, source: Path | None = None
    ) -> None:
        self.workdir = workdir
        self.callgrind = callgrind
        self.api = f"127.0.0.1:{free_port(socket.SOCK_STREAM)}"
        self.sandbox = f"127.0.0.1:{free_port()}"
        self.env = os.environ | {
            "VOICEPLANE_DATA_DIR": str(workdir / "data"),
            "VOICEPLANE_API_LISTEN": self.api,
            "VOICEPLANE_SIP_LISTEN": f"127.0.0.1:{free_port()}",
            "VOICEPLANE_SIP_TRANSPORTS": "udp",
            "VOICEPLANE_TRUNK_HOST": self.sandbox,
            "VOICEPLANE_SANDBOX_LISTEN": self.sandbox,
            "VOICEPLANE_SANDBOX_TRANSPORTS": "udp",
            "VOICEPLANE_SANDBOX_ANSWER_AFTER_MS": "50",
            "VOICEPLANE_SANDBOX_REJECT_AFTER_MS": "50",
            "VOICEPLANE_SANDBOX_HOLD_S": "1",
        }
        if source is not None:  # another version's voiceplane package (--against)
            self.env["PYTHONPATH"] = os.pathsep.join(
                [str(source), *filter(None, [os.environ.get("PYTHONPATH")])]
            )
        self.processes: list[subprocess.Popen[bytes]] = []
        self.sid = ""
        self.api_key = ""

    @property
    def database(self) -> Path:
        return self.workdir / "data" / "voiceplane.db"

    def _spawn(
        self, *args: str, log: str, wrap: list[str] | None = None
    ) -> subprocess.Popen[bytes]:
        out = open(self.workdir / log, "wb")  # noqa: SIM115 - closed with the process
        command = [*(wrap or []), *VOICEPLANE, *args]
        proc = subprocess.Popen(command, env=self.env, stdout=out, stderr=out)
        self.processes.append(proc)
        return proc

    def start(self) -> None:
        created = subprocess.run(
            [*VOICEPLANE, "account", "create", "bench", "--json"],
            env=self.env, check=True, capture_output=True,
        )  # fmt: skip
        account = json.loads(created.stdout)
        self.sid, self.api_key = account["sid"], account["api_key"]
        # Every call of the run goes through this one bridge: give it room for all of them
        # (a number carries 10 calls at once by default; capacity is not what this measures).
        subprocess.run(
            [*VOICEPLANE, "number", "add", BRIDGE, "--account", self.sid, "--kind", "bridge",
             "--channels", "10000"],
            env=self.env, check=True, capture_output=True,
        )  # fmt: skip
        self.operator = self._spawn("sandbox", log="sandbox.log")
        wrap = None
        if self.callgrind is not None:
            wrap = ["valgrind", "--tool=callgrind", "--instr-atstart=no",
                    f"--callgrind-out-file={self.callgrind}", sys.executable]  # fmt: skip
        self.serve = self._spawn("serve", log="serve.log", wrap=wrap)
        deadline = time.monotonic() + (600 if self.callgrind else 30)
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://{self.api}/healthz").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise SystemExit(f"serve did not start; see {self.workdir / 'serve.log'}")

    def stop(self) -> None:
        for proc in reversed(self.processes):
            proc.terminate()
        for proc in self.processes:
            try:
                proc.wait(180 if self.callgrind else 10)  # valgrind writes its counts at exit
            except subprocess.TimeoutExpired:
                proc.kill()


def start_profiles(
    platform: Platform, where: Path, name: str, seconds: float
) -> list[subprocess.Popen[bytes]]:
    """py-spy sampling serve and the sandbox for one step (collapsed stacks, ``--format raw``)."""
    where.mkdir(parents=True, exist_ok=True)
    spy = str(Path(sys.executable).parent / "py-spy")
    profilers = []
    for label, proc in (("serve", platform.serve), ("sandbox", platform.operator)):
        out = where / f"{name}-{label}.txt"
        profilers.append(subprocess.Popen(
            [spy, "record", "--pid", str(proc.pid), "--format", "raw", "--rate", "200", "--gil",
             "--duration", str(int(seconds) + 2), "--nonblocking", "-o", str(out)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        ))  # fmt: skip
    return profilers


async def offer(
    platform: Platform,
    service: str,
    rate: int,
    seconds: float,
    first: int,
    profile: Path | None = None,
) -> Step:
    path = "click-to-call" if service == "click2call" else "outbound"
    url = f"/v1/{platform.sid}/voice/{path}"
    total = int(rate * seconds)
    latencies: list[float] = []
    expected: dict[str, str] = {}
    refused = 0
    headers = {"api-key": platform.api_key}
    host, port = platform.api.rsplit(":", 1)
    pool = Pool(host, int(port))
    loop = asyncio.get_running_loop()

    async def one(index: int, due: float) -> None:
        nonlocal refused
        body, status = plan(service, first + index)
        reply = await pool.post_json(url, body, headers)
        latencies.append((loop.time() - due) * 1000)  # from when it was due
        if reply.status == 202:
            expected[json.loads(reply.body)["id"]] = status
        else:
            refused += 1

    watched = {"serve": platform.serve.pid, "sandbox": platform.operator.pid}
    cpu_before = {label: cpu_seconds(pid) for label, pid in watched.items()}
    load_before = own_cpu_seconds()
    serve_threads = thread_cpu_seconds(platform.serve.pid)
    profilers = (
        start_profiles(platform, profile, f"{service}-{rate}", seconds) if profile else []
    )
    if platform.callgrind is not None:
        instrument(platform, "on")
    begin = loop.time()
    tasks = []
    for index in range(total):
        due = begin + index / rate
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(index, due)))
    await asyncio.gather(*tasks)
    sent_for = loop.time() - begin
    # Calls still run after the last POST (a click-to-call holds for about 1.1 s): their CPU
    # counts too, so wait for the hangups before reading the counters.
    await asyncio.sleep(2.5)
    if platform.callgrind is not None:
        instrument(platform, "off")
    cpu_used = {label: cpu_seconds(pid) - cpu_before[label] for label, pid in watched.items()}
    cpu_used["load"] = own_cpu_seconds() - load_before
    # serve's main thread (the engine and SIP: the event loop) apart from its other threads
    # (HTTP's own thread and loop, the store writer, the thread pool).
    main = platform.serve.pid
    loop_after = thread_cpu_seconds(main).get(main, 0.0)
    cpu_used["serve-loop"] = loop_after - serve_threads.get(main, 0.0)
    serve_share = cpu_used["serve"] / (sent_for + 2.5)
    pool.close()
    for profiler in profilers:
        profiler.wait()
    statuses = await asyncio.to_thread(wait_final, platform.database, list(expected), 60)
    wrong: dict[str, int] = {}
    right = 0
    for call_id, status in expected.items():
        got = statuses.get(call_id)
        if got == status:
            right += 1
        else:
            key = f"{status}->{got}"
            wrong[key] = wrong.get(key, 0) + 1
    lost = sum(1 for call_id in expected if call_id not in statuses)
    latencies.sort()
    return Step(
        service=service,
        rate=rate,
        offered=total,
        accepted=total - refused,
        right=right,
        wrong=wrong,
        lost=lost,
        p50_ms=statistics.median(latencies),
        p99_ms=latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
        cpu_percent=100 * serve_share,
        cpu_ms={label: 1000 * used / total for label, used in cpu_used.items()},
    )


def instrument(platform: Platform, state: str) -> None:
    """Turn callgrind's counting in serve on or off."""
    subprocess.run(
        ["callgrind_control", "-i", state, str(platform.serve.pid)],
        check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


def callgrind_total(path: Path) -> int:
    """The instructions callgrind counted (its ``totals:`` line)."""
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("totals:"):
            return int(line.split()[1])
    raise SystemExit(f"no totals in {path}")


def wait_final(database: Path, call_ids: list[str], timeout: float) -> dict[str, str]:
    """The final statuses of ``call_ids``, once all completed (or when ``timeout`` ran out)."""
    deadline = time.monotonic() + timeout
    found: dict[str, str] = {}
    with sqlite3.connect(database, timeout=30) as db:
        while True:
            pending = [call_id for call_id in call_ids if call_id not in found]
            for start in range(0, len(pending), 500):
                chunk = pending[start : start + 500]
                marks = ",".join("?" * len(chunk))
                for call_id, status in db.execute(
                    f"SELECT id, status FROM calls WHERE state = 'completed' AND id IN ({marks})",
                    chunk,
                ):
                    found[call_id] = status
            if len(found) == len(call_ids) or time.monotonic() > deadline:
                return found
            time.sleep(0.5)


def show(step: Step) -> None:
    verdict = "ok" if step.clean else ("statuses ok, p99 too high" if step.right_statuses
                                          else "FAILS")
    wrong = f" wrong={step.wrong}" if step.wrong else ""
    print(
        f"{step.service:>10} {step.rate:>5}/s  offered={step.offered:<6} "
        f"accepted={step.accepted:<6} right={step.right:<6} lost={step.lost:<4} "
        f"p50={step.p50_ms:6.1f} ms  p99={step.p99_ms:6.1f} ms  "
        f"serve cpu={step.cpu_percent:5.1f}%  cpu/call ms: "
        + " ".join(f"{label}={ms:.2f}" for label, ms in step.cpu_ms.items())
        + f"  load={os.getloadavg()[0]:.2f}  {verdict}{wrong}",
        flush=True,
    )


def summary(service: str, what: str, step: Step | None) -> None:
    if step is None:
        print(f"{service}: no rate had {what}")
        return
    print(
        f"{service}: {step.rate} calls/s sustained end to end with {what}: API p50 "
        f"{step.p50_ms:.1f} ms, p99 {step.p99_ms:.1f} ms (serve at {step.cpu_percent:.0f}% "
        "of one core)"
    )


async def compare(args: argparse.Namespace) -> int:
    """``--against``: one step, ``--repeat`` times for each version, taking turns."""
    services = ["click2call", "outbound"] if args.service == "both" else [args.service]
    rates = [int(rate) for rate in args.rates.split(",")]
    if len(services) != 1 or len(rates) != 1:
        raise SystemExit("--against compares one step: give one --service and one rate")
    versions = {"this": None, "against": args.against.resolve()}
    steps: dict[str, list[Step]] = {name: [] for name in versions}
    for turn in range(args.repeat):
        for name, source in versions.items():
            with tempfile.TemporaryDirectory(prefix="voiceplane-bench-") as tmp:
                platform = Platform(Path(tmp), source=source)
                platform.start()
                try:
                    step = await offer(platform, services[0], rates[0], args.seconds, 0)
                finally:
                    platform.stop()
            steps[name].append(step)
            print(f"{name:>8} turn {turn + 1}:", end=" ")
            show(step)
    for name, taken in steps.items():
        right = sum(step.right_statuses for step in taken)
        print(
            f"{name:>8}: median p50 {statistics.median(s.p50_ms for s in taken):.1f} ms, "
            f"median p99 {statistics.median(s.p99_ms for s in taken):.1f} ms "
            f"(each: {', '.join(f'{s.p99_ms:.1f}' for s in taken)}), "
            f"serve {statistics.median(s.cpu_ms['serve'] for s in taken):.2f} ms of CPU a "
            f"call (median), every status right in {right} of {len(taken)}"
        )
    return 0


async def run(args: argparse.Namespace) -> int:
    services = ["click2call", "outbound"] if args.service == "both" else [args.service]
    rates = [int(rate) for rate in args.rates.split(",")]
    if args.callgrind and (len(services) != 1 or len(rates) != 1):
        raise SystemExit("--callgrind counts one step: give one --service and one rate")
    calls = 0
    reached: dict[str, Step | None] = {}
    with tempfile.TemporaryDirectory(prefix="voiceplane-bench-") as tmp:
        counts = Path(tmp) / "callgrind.out" if args.callgrind else None
        platform = Platform(Path(tmp), callgrind=counts)
        platform.start()
        try:
            first = 0
            for service in services:
                right: Step | None = None
                clean: Step | None = None
                for rate in rates:
                    step = await offer(
                        platform, service, rate, args.seconds, first, profile=args.profile
                    )
                    first += step.offered
                    calls += step.offered
                    show(step)
                    if not step.right_statuses:
                        break
                    right = step
                    if step.clean:
                        clean = step
                    if step.p99_ms > 1000:
                        break
                    await asyncio.sleep(2)  # let the last calls' hangups finish
                reached[service] = right
                summary(service, "every status right", right)
                summary(service, f"every status right and API p99 < {P99_LIMIT_MS:.0f} ms", clean)
        finally:
            platform.stop()
            if args.logs:
                args.logs.mkdir(parents=True, exist_ok=True)
                for log in ("serve.log", "sandbox.log"):
                    shutil.copy(Path(tmp) / log, args.logs / log)
                # The store too: the legs of a call with a wrong status say what happened.
                shutil.copytree(Path(tmp) / "data", args.logs / "data", dirs_exist_ok=True)
        if counts is not None:
            instructions = callgrind_total(counts)
            print(f"serve's instructions per call (callgrind): {instructions / calls / 1e6:.2f} M")
    if not args.skip_ceiling and counts is None:  # not after a count under valgrind
        for service, best in reached.items():
            ceiling_of(service, best)
    return 0


def ceiling_of(service: str, ours: Step | None) -> None:
    """SIPp against SIPp with the same calls' signalling, doubling from our best rate."""
    start = ours.rate if ours is not None else 100
    print(f"ceiling, {service}: SIPp against SIPp, the same signalling (bench/_sipp_ceiling.py)")
    clean = _sipp_ceiling.ramp(service, start, CEILING_SECONDS, CEILING_CAP[service])
    if not clean:
        print(f"ceiling, {service}: SIPp against SIPp was not clean at {start}/s")
        return
    top, same = clean[-1], clean[0]
    reach = "at least " if top.rate * 2 > CEILING_CAP[service] else ""
    line = f"ceiling, {service}: SIPp against SIPp carries {reach}{top.rate}/s clean"
    if ours is not None:
        ours_ms = ours.cpu_ms["serve"] + ours.cpu_ms["sandbox"]
        line += (
            f"; CPU a call at {ours.rate}/s: {same.cpu_ms_per_call:.2f} ms for both SIPps, "
            f"{ours_ms:.2f} ms for serve and the sandbox"
        )
    print(line)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--service", choices=["click2call", "outbound", "both"], default="both")
    parser.add_argument("--rates", default="25,50,100,150,200,300")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument(
        "--logs", type=Path, help="copy serve's and sandbox's logs and the store here"
    )
    parser.add_argument(
        "--profile", type=Path,
        help="py-spy serve and the sandbox during each step; collapsed stacks into this folder",
    )  # fmt: skip
    parser.add_argument(
        "--callgrind", action="store_true",
        help="count serve's instructions per call under valgrind (one step, low rate: 2)",
    )  # fmt: skip
    parser.add_argument(
        "--against", type=Path, metavar="SRC",
        help="compare with another version: its src folder (say, a git worktree's); one "
        "step, run --repeat times for each version, taking turns",
    )  # fmt: skip
    parser.add_argument("--repeat", type=int, default=3, help="turns per version (--against)")
    parser.add_argument(
        "--skip-ceiling", action="store_true",
        help="do not measure SIPp against SIPp with the same signalling afterwards",
    )  # fmt: skip
    args = parser.parse_args()
    if args.against is not None:
        if args.callgrind or args.profile or args.logs:
            raise SystemExit("--against takes none of --callgrind, --profile, --logs")
        if not (args.against / "voiceplane").is_dir():
            raise SystemExit(f"--against {args.against}: no voiceplane package in it")
        if args.repeat < 1:
            raise SystemExit(f"--repeat must be at least 1, got {args.repeat}")
        return asyncio.run(compare(args))
    return asyncio.run(run(args))


if __name__ == "__main__":
    raise SystemExit(main())
