"""``bench/ivr_media.py --through-serve``: SIPp callers held in a real flow of ``voiceplane serve``.

One run, in order: ``voiceplane serve`` in a temp data dir (embedded media, SQLite, the
sandbox operator since no trunk is set; incoming calls need none); an account, a DID with
room for every caller, and a published flow on it, made with the CLI and the flows API: a
``gather`` whose prompt is a ``seconds``-long WAV written into ``<data dir>/media``, with a
timeout that outlasts the callers, then ``hangup``. Then the callers process
(bench/_rtp_callers.py), then SIPp (bench/_ivr_sipp_caller.xml): ``legs`` calls over
``ramp`` seconds, each call's SDP pointing at one caller socket (injection file), each held
for the prompt plus a margin, then BYE. SIPp sends no RTP; the caller sockets note every
packet's kernel receive time and (with ``talk``) answer each with 20 ms of audio.

This module runs it and hands back what was seen (:class:`Run`); ivr_media.py judges it.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import wave
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import httpx
from _procfs import HOST, children_cpu_seconds, cpu_seconds, free_port

HERE = Path(__file__).resolve().parent
VOICEPLANE = str(Path(sys.executable).parent / "voiceplane")
SCENARIO = HERE / "_ivr_sipp_caller.xml"
DID = "+918047155555"
CALLERS = "+9198100{:05d}"
PROMPT = "bench-prompt.wav"
MARGIN_S = 2.0  # a caller stays this long after the prompt's length: late starts still end
IDLE_S = 2.0  # serve's idle CPU is measured over this long before the calls
GATHER_EXTRA_S = 10.0  # the gather waits this long past the margin before serve hangs up


@dataclass(frozen=True)
class Run:
    """What one run through serve saw."""

    arrivals: list[list[int]]  # per caller (call i used socket i), kernel receive times, ns
    sent: int  # RTP packets the callers sent back to serve
    sipp: SippStatistics  # calls successful (INVITE to BYE's 200) and failed, answer times
    answered: int  # INVITEs SIPp got a 200 for (its message counts)
    records: dict[str, int]  # serve's incoming call records, "state status": count
    serve_cpu: float  # seconds of CPU, serve's own process, over the calls' window
    children_cpu: float  # seconds of CPU of serve's child processes over that window
    wall: float  # the window: SIPp's first INVITE to its exit, seconds
    idle_cpu: float  # serve's CPU per second with no call, just before the window
    load: tuple[float, float]  # the 1-minute load average before and after
    workdir: Path


def write_prompt(path: Path, pcm: bytes) -> None:
    """The prompt as a WAV serve reads without sox: 8 kHz, mono, 16-bit."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(pcm)


def flow_document(timeout: float) -> dict[str, object]:
    return {
        "name": "bench: a prompt while listening",
        "start": "listen",
        "steps": {
            "listen": {
                "kind": "gather",
                "prompt": {"play": PROMPT},
                "timeout": timeout,
                "next": "bye",
            },
            "bye": {"kind": "hangup"},
        },
    }


class Serve:
    """``voiceplane serve`` in a temp directory, set up with a DID running the bench flow."""

    def __init__(self, workdir: Path, command_prefix: list[str]) -> None:
        self.workdir = workdir
        self.data = workdir / "data"
        self.api = f"{HOST}:{free_port(socket.SOCK_STREAM)}"
        self.sip_port = free_port()
        self.env = os.environ | {
            "VOICEPLANE_DATA_DIR": str(self.data),
            "VOICEPLANE_API_LISTEN": self.api,
            "VOICEPLANE_SIP_LISTEN": f"{HOST}:{self.sip_port}",
            "VOICEPLANE_SIP_TRANSPORTS": "udp",
            "VOICEPLANE_TRUNK_HOST": "",  # incoming calls need no trunk: the sandbox stands in
            "VOICEPLANE_SANDBOX_LISTEN": f"{HOST}:{free_port()}",
            "VOICEPLANE_SANDBOX_TRANSPORTS": "udp",
            "VOICEPLANE_MEDIA_BACKEND": "embedded",
        }
        self.prefix = command_prefix
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def cli(self, *args: str) -> str:
        done = subprocess.run(
            [VOICEPLANE, *args], env=self.env, capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            raise SystemExit(f"voiceplane {' '.join(args)} failed: {done.stderr.strip()}")
        return done.stdout

    def start(self, legs: int, pcm: bytes, gather_timeout: float) -> None:
        account = json.loads(self.cli("account", "create", "bench", "--json"))
        sid, key = account["sid"], account["api_key"]
        # Room for every caller at once: capacity is not what this measures.
        self.cli("number", "add", DID, "--account", sid, "--kind", "did",
                 "--channels", str(max(legs, 1)))  # fmt: skip
        write_prompt(self.data / "media" / PROMPT, pcm)
        log = open(self.workdir / "serve.log", "wb")  # noqa: SIM115 - lives as long as serve
        self.proc = subprocess.Popen(
            [*self.prefix, VOICEPLANE, "serve"], env=self.env, stdout=log, stderr=log
        )
        base = f"http://{self.api}"
        deadline = time.monotonic() + 60
        while True:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"serve did not start; see {self.workdir / 'serve.log'}")
            try:
                if httpx.get(f"{base}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        with httpx.Client(base_url=f"{base}/v1/{sid}", headers={"api-key": key}) as api:
            created = api.post("/flows", json=flow_document(gather_timeout))
            if created.status_code != 201:
                raise SystemExit(f"the flow was refused: {created.text}")
            flow = created.json()["id"]
            for reply in (
                api.post(f"/flows/{flow}/publish", json={}),
                api.put(f"/numbers/{DID}/routing", json={"flow": flow}),
            ):
                if reply.status_code != 200:
                    raise SystemExit(f"{reply.request.url}: {reply.status_code} {reply.text}")

    def records(self, legs: int, wait: float = 10.0) -> dict[str, int]:
        """Serve's incoming records by state and status, once ``legs`` of them completed (or
        ``wait`` seconds passed: the records are written after the calls end)."""
        deadline = time.monotonic() + wait
        with sqlite3.connect(self.data / "voiceplane.db", timeout=30) as db:
            while True:
                rows = db.execute(
                    "SELECT state, status, COUNT(*) FROM calls WHERE service = 'incoming' "
                    "GROUP BY state, status"
                ).fetchall()
                counts = Counter({f"{state} {status}": n for state, status, n in rows})
                done = sum(n for (state, _s, n) in rows if state == "completed")
                if done >= legs or time.monotonic() > deadline:
                    return dict(counts)
                time.sleep(0.2)

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@dataclass(frozen=True)
class SippStatistics:
    successful: int
    failed: int
    retransmissions: int
    answer_ms: float  # mean INVITE to 200 (the scenario's rtd)
    answer_ms_stdev: float


def sipp_statistics(path: Path) -> SippStatistics:
    """The cumulative figures of SIPp's last statistics line."""
    lines = path.read_text().strip().splitlines()
    header, last = lines[0].split(";"), lines[-1].split(";")
    value = dict(zip(header, last, strict=False))

    def ms(text: str) -> float:  # SIPp writes durations as HH:MM:SS:microseconds
        hours, minutes, seconds, micros = map(int, text.split(":"))
        return (hours * 3600 + minutes * 60 + seconds) * 1000 + micros / 1000

    return SippStatistics(
        successful=int(value["SuccessfulCall(C)"]),
        failed=int(value["FailedCall(C)"]),
        retransmissions=int(value["Retransmissions(C)"]),
        answer_ms=ms(value["ResponseTime1(C)"]),
        answer_ms_stdev=ms(value["ResponseTime1StDev(C)"]),
    )


def sipp_answered(path: Path) -> int:
    """How many INVITEs got their 200, from SIPp's message counts (-trace_counts): the
    scenario's first ``200`` received."""
    lines = path.read_text().strip().splitlines()
    header, last = lines[0].split(";"), lines[-1].split(";")
    for i, name in enumerate(header):
        if name.endswith("_200_Recv"):
            return int(last[i])
    raise SystemExit(f"no 200 counter in {path}")


def run_sipp(serve: Serve, ports: list[int], ramp: float, hold_s: float, workdir: Path) -> None:
    legs = len(ports)
    injection = workdir / "callers.csv"
    injection.write_text(
        "SEQUENTIAL\n" + "".join(f"{port};{CALLERS.format(i)}\n" for i, port in enumerate(ports))
    )
    # SIPp writes its logs beside the scenario: run a copy in the work dir.
    scenario = workdir / SCENARIO.name
    shutil.copyfile(SCENARIO, scenario)
    period_ms = max(1, round(ramp * 1000))
    limit_s = ramp + hold_s + 60
    command = [
        "sipp", f"{HOST}:{serve.sip_port}", "-sf", str(scenario), "-inf", str(injection),
        "-s", DID, "-i", HOST, "-p", str(free_port()), "-t", "u1",
        "-m", str(legs), "-l", str(legs), "-r", str(legs), "-rp", str(period_ms),
        "-d", str(round(hold_s * 1000)), "-recv_timeout", "30000",
        "-timeout", f"{limit_s:.0f}s", "-timeout_error", "-nostdin",
        "-buff_size", str(4 << 20),
        "-trace_stat", "-stf", str(workdir / "sipp_stat.csv"),
        "-trace_counts", "-trace_err", "-error_file", str(workdir / "sipp_errors.log"),
    ]  # fmt: skip
    (workdir / "sipp_command.txt").write_text(" ".join(command) + "\n")
    with open(workdir / "sipp.out", "wb") as out:
        subprocess.run(command, cwd=workdir, stdout=out, stderr=out, timeout=limit_s + 30)
    if not (workdir / "sipp_stat.csv").is_file():
        raise SystemExit(f"SIPp did not run its calls; see {workdir / 'sipp.out'}")


def start_profile(pid: int, out: Path, seconds: float) -> subprocess.Popen[bytes]:
    """py-spy sampling serve over the calls: GIL-holding samples, collapsed stacks, each
    under its thread (the event loop, the store writer)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    spy = str(Path(sys.executable).parent / "py-spy")
    return subprocess.Popen(
        [spy, "record", "--pid", str(pid), "--format", "raw", "--rate", "250", "--gil", "--threads",
         "--duration", str(math.ceil(seconds)), "--nonblocking", "-o", str(out)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


def through_serve(
    legs: int,
    seconds: float,
    pcm: bytes,
    talk: bool,
    ramp: float,
    serve_prefix: list[str],
    profile: Path | None = None,
) -> Run:
    if shutil.which("sipp") is None:
        raise SystemExit("sipp is not installed: run ./scripts/setup.sh (Debian's sip-tester)")
    workdir = Path(tempfile.mkdtemp(prefix="ivr_media_serve_"))
    hold_s = seconds + MARGIN_S
    serve = Serve(workdir, serve_prefix)
    callers: subprocess.Popen[bytes] | None = None
    try:
        serve.start(legs, pcm, min(60.0, MARGIN_S + GATHER_EXTRA_S))
        out = workdir / "arrivals.json"
        command = [sys.executable, str(HERE / "_rtp_callers.py"), str(legs), str(out)]
        callers = subprocess.Popen(command + (["--talk"] if talk else []), stdout=subprocess.PIPE)
        assert callers.stdout is not None
        ports = json.loads(callers.stdout.readline())
        idle_began, idle_cpu = time.perf_counter(), cpu_seconds(serve.pid)
        time.sleep(IDLE_S)
        idle_cpu = (cpu_seconds(serve.pid) - idle_cpu) / (time.perf_counter() - idle_began)
        load_before = os.getloadavg()[0]
        children_before = children_cpu_seconds(serve.pid)
        began, cpu_before = time.perf_counter(), cpu_seconds(serve.pid)
        spy = start_profile(serve.pid, profile, ramp + hold_s) if profile else None
        run_sipp(serve, ports, ramp, hold_s, workdir)
        wall, serve_cpu = time.perf_counter() - began, cpu_seconds(serve.pid) - cpu_before
        children_after = children_cpu_seconds(serve.pid)
        children_cpu = sum(
            cpu - children_before.get(pid, 0.0) for pid, cpu in children_after.items()
        )
        load_after = os.getloadavg()[0]
        if spy is not None:
            spy.wait(30)
        time.sleep(0.3)  # the last packets' way to the callers
        callers.send_signal(signal.SIGTERM)
        callers.wait(10)
        callers = None
        result = json.loads(out.read_text())
        statistics = sipp_statistics(workdir / "sipp_stat.csv")
        counts = next(workdir.glob("*_counts.csv"), None)
        answered = sipp_answered(counts) if counts is not None else -1
        records = serve.records(legs)
    finally:
        if callers is not None:
            callers.kill()
            callers.wait()
        serve.stop()
    return Run(
        arrivals=result["arrivals"],
        sent=result["sent"],
        sipp=statistics,
        answered=answered,
        records=records,
        serve_cpu=serve_cpu,
        children_cpu=children_cpu,
        wall=wall,
        idle_cpu=idle_cpu,
        load=(load_before, load_after),
        workdir=workdir,
    )
