"""SIP call rate of one voiceplane process, both ways, against SIPp; SIPp vs SIPp as the ceiling.

    .venv/bin/python bench/sip_cps.py [--seconds 5] [--transport udp|tcp] [--rates 500,1000,...]

Each step offers calls at a fixed rate for ``--seconds`` (INVITE, 200, ACK, BYE, 200; 0 s
calls). A step is clean when every call succeeded and neither side retransmitted anything.
The figure is the highest clean rate and the CPU the voiceplane process used for it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from _procfs import free_port

HERE = Path(__file__).resolve().parent
PYTHON = sys.executable


@dataclass
class Step:
    rate: int
    ok: int
    failed: int
    retransmissions: int
    cpu_percent: float | None  # of one core, for the voiceplane process

    @property
    def clean(self) -> bool:
        return self.failed == 0 and self.retransmissions == 0 and self.ok > 0


def sipp_stats(path: Path) -> tuple[int, int, int]:
    """Successful calls, failed calls and retransmissions from SIPp's last statistics line."""
    lines = path.read_text().strip().splitlines()
    header, last = lines[0].split(";"), lines[-1].split(";")
    col = {name: i for i, name in enumerate(header)}
    return (
        int(last[col["SuccessfulCall(C)"]]),
        int(last[col["FailedCall(C)"]]),
        int(last[col["Retransmissions(C)"]]),
    )


def sipp(args: list[str], workdir: Path, timeout: float) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        # SIPp's default 64 KiB socket buffer drops datagrams past a few thousand calls/s.
        ["sipp", *args, "-nostdin", "-buff_size", str(4 << 20),
         "-trace_stat", "-stf", str(workdir / "stat.csv")],
        cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


def transport_flag(transport: str) -> str:
    return "t1" if transport == "tcp" else "u1"


def step_into_voiceplane(rate: int, seconds: float, transport: str) -> Step:
    """SIPp places calls into a voiceplane UAS that answers each at once."""
    total = int(rate * seconds)
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        worker = subprocess.Popen(
            [PYTHON, str(HERE / "_sip_worker.py"), "uas", "--port", str(port),
             "--transport", transport],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert worker.stdout is not None and worker.stdin is not None
        worker.stdout.readline()  # "ready"
        caller = sipp(
            ["-sn", "uac", f"127.0.0.1:{port}", "-i", "127.0.0.1", "-p", str(free_port()),
             "-t", transport_flag(transport), "-r", str(rate), "-m", str(total), "-d", "0",
             "-timeout", str(int(seconds * 3 + 30))],
            work, seconds * 3 + 30,
        )  # fmt: skip
        caller.wait()
        worker.stdin.close()
        result = json.loads(worker.stdout.readline())
        worker.wait()
        ok, failed, retrans = sipp_stats(work / "stat.csv")
    busy = seconds  # the calls were offered over this long
    return Step(rate, ok, failed + (total - ok - failed),
                retrans + int(result["retransmissions"]), 100 * result["cpu"] / busy)  # fmt: skip


def step_from_voiceplane(rate: int, seconds: float, transport: str) -> Step:
    """A voiceplane UAC places calls into SIPp's UAS, hanging up each once answered."""
    total = int(rate * seconds)
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        callee = sipp(
            ["-sn", "uas", "-i", "127.0.0.1", "-p", str(port), "-t", transport_flag(transport),
             "-m", str(total), "-timeout", str(int(seconds * 3 + 30))],
            work, seconds * 3 + 30,
        )  # fmt: skip
        time.sleep(0.5)  # SIPp binds before it reads its scenario
        worker = subprocess.Popen(
            [PYTHON, str(HERE / "_sip_worker.py"), "uac", "--port", str(port),
             "--transport", transport, "--rate", str(rate), "--seconds", str(seconds)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert worker.stdout is not None and worker.stdin is not None
        result = json.loads(worker.stdout.readline())
        try:
            callee.wait(timeout=10)
        except subprocess.TimeoutExpired:
            callee.kill()
            callee.wait()
        worker.stdin.close()  # SIPp is done: the worker may close its connections now
        worker.wait()
        ok, failed, retrans = sipp_stats(work / "stat.csv")
    return Step(rate, int(result["ok"]), int(result["failed"]) + failed,
                retrans + int(result["retransmissions"]),
                100 * result["cpu"] / max(result["wall"], seconds))  # fmt: skip


def step_sipp_ceiling(rate: int, seconds: float, transport: str) -> Step:
    total = int(rate * seconds)
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        work_uas, work_uac = Path(tmp, "uas"), Path(tmp, "uac")
        work_uas.mkdir()
        work_uac.mkdir()
        callee = sipp(["-sn", "uas", "-i", "127.0.0.1", "-p", str(port),
                       "-t", transport_flag(transport), "-m", str(total)],
                      work_uas, seconds * 3 + 30)  # fmt: skip
        time.sleep(0.5)
        caller = sipp(["-sn", "uac", f"127.0.0.1:{port}", "-i", "127.0.0.1",
                       "-p", str(free_port()), "-t", transport_flag(transport), "-r", str(rate),
                       "-m", str(total), "-d", "0", "-timeout", str(int(seconds * 3 + 30))],
                      work_uac, seconds * 3 + 30)  # fmt: skip
        caller.wait()
        try:
            callee.wait(timeout=10)
        except subprocess.TimeoutExpired:
            callee.kill()
            callee.wait()
        ok, failed, retrans = sipp_stats(work_uac / "stat.csv")
    return Step(rate, ok, failed + (total - ok - failed), retrans, None)


def ramp(
    name: str, step_fn: object, rates: list[int], seconds: float, transport: str
) -> Step | None:
    print(f"\n{name}")
    print(f"{'rate/s':>8} {'ok':>8} {'failed':>7} {'retrans':>8} {'cpu %':>6}")
    best: Step | None = None
    for rate in rates:
        step = step_fn(rate, seconds, transport)  # type: ignore[operator]
        cpu = f"{step.cpu_percent:6.0f}" if step.cpu_percent is not None else "     -"
        print(f"{step.rate:>8} {step.ok:>8} {step.failed:>7} {step.retransmissions:>8} {cpu}",
              flush=True)  # fmt: skip
        if not step.clean:
            break
        best = step
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--transport", choices=["udp", "tcp"], default="udp")
    parser.add_argument("--rates", default="500,1000,1500,2000,2500,3000")
    parser.add_argument("--ceiling-rates", default="2500,5000,7500,10000,12500,15000")
    parser.add_argument("--skip-ceiling", action="store_true")
    args = parser.parse_args()
    if shutil.which("sipp") is None:
        sys.exit("sipp is not installed: run ./scripts/setup.sh")
    rates = [int(r) for r in args.rates.split(",")]
    print(f"voiceplane SIP call rate, {args.transport.upper()}, {args.seconds:g} s a step, "
          f"{os.cpu_count()} cores")  # fmt: skip
    into = ramp("SIPp UAC -> voiceplane UAS (answers at once)", step_into_voiceplane,
                rates, args.seconds, args.transport)  # fmt: skip
    out = ramp("voiceplane UAC -> SIPp UAS", step_from_voiceplane, rates, args.seconds,
               args.transport)  # fmt: skip
    ceiling = None
    if not args.skip_ceiling:
        ceiling = ramp("SIPp UAC -> SIPp UAS (the ceiling)", step_sipp_ceiling,
                       [int(r) for r in args.ceiling_rates.split(",")], args.seconds,
                       args.transport)  # fmt: skip
    print("\nsummary (highest rate with no failed call and no retransmission)")
    for label, best in (("into voiceplane (UAS)", into), ("from voiceplane (UAC)", out)):
        if best is None:
            print(f"  {label:24} none clean")
        else:
            print(f"  {label:24} {best.rate:>6}/s at {best.cpu_percent:.0f}% of one core")
    if ceiling is not None:
        print(f"  {'SIPp against SIPp':24} {ceiling.rate:>6}/s")
    target = 1500
    verdict = all(b is not None and b.rate >= target for b in (into, out))
    print(f"  target {target}/s each way: {'met' if verdict else 'NOT met'}")


if __name__ == "__main__":
    main()
