"""The sandbox operator's CPU per click-to-call, with SIPp playing serve's side of the calls.

    .venv/bin/python bench/sandbox_cpu.py [--rate 200] [--seconds 10] [--repeat 1]
                                          [--profile DIR] [--keep DIR]
    .venv/bin/python bench/sandbox_cpu.py --callgrind --rate 4 --seconds 10

``voiceplane sandbox`` runs as ``bench/api_calls.py`` runs it (UDP, answers after 50 ms,
rejects after 50 ms, hangs up after 1 s). Two SIPp callers place what serve places for each
click-to-call at ``--rate`` per second:

* leg 1 (``_sandbox_leg1.xml``): INVITE with serve's offer; one in ten numbers is busy
  (180, 486, ACK); the others get 180, 200 with SDP, ACK, a re-INVITE with the other
  party's SDP, ACK, and the sandbox's BYE after its hold time;
* leg 2 (``_sandbox_leg2.xml``), at nine tenths of the rate: INVITE with SDP; one in nine
  busy; the others 180, 200, ACK and, just before the sandbox's hold runs out, our BYE.

That is the api_calls.py mix (80 % answered, 10 % busy on leg 1, 10 % on leg 2), with a
re-INVITE on the leg-2-busy calls too. The figure is the sandbox's CPU (user + system, from
/proc) from just before the first call to after the last one ended, per click-to-call: it
stays meaningful on a busy machine, where throughput does not. The load average is printed
with it. ``--profile DIR`` adds a py-spy profile of the sandbox (GIL samples, collapsed).
``--callgrind`` runs the sandbox under valgrind and counts its instructions per click-to-call
while the calls run: slow (keep the rate low), but the same whatever else the machine does.
To compare with another version, run it with ``PYTHONPATH=<that version's src>``: the
sandbox imports voiceplane from there.

2026-11-27, this 2-core machine, the code before and after the sandbox's CPU work run back to
back (load average 0.5-3): 200/s 2.40-2.70 -> 1.95-2.23 ms a click-to-call, 300/s
2.33-2.49 -> 1.92-1.94 ms; --callgrind at 4/s 4.37M -> 3.0M instructions.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from _procfs import HOST, free_port
from sip_cps import sipp_stats

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
VOICEPLANE = [str(Path(sys.executable).parent / "voiceplane")]
LEG2_SHARE = 0.9  # a second leg is dialled only when the first answered
HOLD_S = 1.0
ANSWERS = "+9198765{:05d}"  # bench/api_calls.py's numbers
BUSY = "+919876500486"


@dataclass
class Run:
    rate: int
    click_to_calls: int
    ok: int
    failed: int
    retransmissions: int
    cpu_s: float
    system_s: float
    wall_s: float
    load: tuple[float, float, float]

    @property
    def cpu_ms_per_call(self) -> float:
        return 1000 * self.cpu_s / self.click_to_calls


def user_system_seconds(pid: int) -> tuple[float, float]:
    """User and system CPU seconds of a process so far (system: mostly its socket calls)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def numbers_file(path: Path, total: int, busy_every: int, *, first_leg: bool) -> Path:
    """SIPp's injection file: one number a call, every ``busy_every``-th busy (486).

    As bench/api_calls.py dials them: first legs a different number each (the few that
    would end in 000 or 400-699 are one fixed number instead), second legs one number.
    """
    lines = ["SEQUENTIAL"]
    for index in range(total):
        if index % busy_every == busy_every - 1:
            number = BUSY
        elif first_leg:
            number = ANSWERS.format(index % 100_000)
            if number.endswith("000") or 400 <= int(number[-3:]) <= 699:
                number = ANSWERS.format(11111)
        else:
            number = ANSWERS.format(22222)
        lines.append(f"{number};")
    path.write_text("\n".join(lines) + "\n")
    return path


def start_sipp(scenario: str, target: str, rate: float, total: int, numbers: Path,
               workdir: Path, pause_ms: int) -> subprocess.Popen[bytes]:  # fmt: skip
    workdir.mkdir()
    return subprocess.Popen(
        ["sipp", target, "-sf", str(HERE / scenario), "-inf", str(numbers),
         "-i", HOST, "-p", str(free_port()), "-t", "u1", "-r", f"{rate:g}", "-rp", "1000",
         "-m", str(total), "-d", str(pause_ms), "-nostdin", "-buff_size", str(4 << 20),
         "-timeout", "120", "-trace_stat", "-trace_err", "-fd", "1",
         "-stf", str(workdir / "stat.csv")],
        cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


def start_sandbox(
    workdir: Path, listen: str, callgrind: Path | None, cprofile: Path | None = None
) -> subprocess.Popen[bytes]:
    env = os.environ | {
        "VOICEPLANE_DATA_DIR": str(workdir / "data"),
        "VOICEPLANE_SANDBOX_LISTEN": listen,
        "VOICEPLANE_SANDBOX_TRANSPORTS": "udp",
        "VOICEPLANE_SANDBOX_ANSWER_AFTER_MS": "50",
        "VOICEPLANE_SANDBOX_REJECT_AFTER_MS": "50",
        "VOICEPLANE_SANDBOX_HOLD_S": f"{HOLD_S:g}",
    }
    log = open(workdir / "sandbox.log", "wb")  # noqa: SIM115 - closed with the process
    command = [*VOICEPLANE, "sandbox"]
    if callgrind is not None:
        # Instruments nothing until the calls start (callgrind_control -i on): exact
        # instruction counts, whatever else the machine is doing.
        command = ["valgrind", "--tool=callgrind", "--instr-atstart=no",
                   f"--callgrind-out-file={callgrind}", sys.executable, *command]  # fmt: skip
    elif cprofile is not None:
        command = [sys.executable, "-m", "cProfile", "-o", str(cprofile), *command]
    proc = subprocess.Popen(command, env=env, stdout=log, stderr=log)
    host, port = listen.rsplit(":", 1)
    deadline = time.monotonic() + (300 if callgrind else 30)
    while time.monotonic() < deadline:  # ready once its port is taken
        if proc.poll() is not None:
            raise SystemExit(f"the sandbox exited; see {workdir / 'sandbox.log'}")
        if int(port) not in _udp_ports_of(proc.pid):
            time.sleep(0.1)
            continue
        time.sleep(0.3)  # its start-up work (imports, collector tuning) is not the calls'
        return proc
    raise SystemExit("the sandbox did not start")


def _udp_ports_of(pid: int) -> set[int]:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports = set()
    for line in Path("/proc/net/udp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[9] in inodes:
            ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def one_run(
    rate: int, seconds: float, profile: Path | None, index: int, callgrind: bool = False,
    keep: Path | None = None, cprofile: Path | None = None,
) -> Run:
    total = int(rate * seconds)
    leg2_total = int(total * LEG2_SHARE)
    listen = f"{HOST}:{free_port()}"
    with tempfile.TemporaryDirectory() as tmp:
        work = keep / f"{rate}-{index}" if keep is not None else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        out = work / "callgrind.out" if callgrind else None
        sandbox = start_sandbox(work, listen, out, cprofile)
        spy = None
        try:
            if profile is not None:
                profile.mkdir(parents=True, exist_ok=True)
                spy = subprocess.Popen(
                    [str(ROOT / ".venv/bin/py-spy"), "record", "--gil", "-f", "raw",
                     "-r", "1000", "-p", str(sandbox.pid), "-d", str(int(seconds + 3)),
                     "-o", str(profile / f"sandbox-{rate}-{index}.txt")],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                )  # fmt: skip
                time.sleep(1.0)
            if out is not None:
                subprocess.run(["callgrind_control", "-i", "on", str(sandbox.pid)], check=True,
                               stdout=subprocess.DEVNULL)  # fmt: skip
            user_before, system_before = user_system_seconds(sandbox.pid)
            began = time.monotonic()
            leg1 = start_sipp(
                "_sandbox_leg1.xml", listen, rate, total,
                numbers_file(work / "leg1.csv", total, 10, first_leg=True), work / "leg1", 0,
            )  # fmt: skip
            leg2 = start_sipp(
                "_sandbox_leg2.xml", listen, rate * LEG2_SHARE, leg2_total,
                numbers_file(work / "leg2.csv", leg2_total, 9, first_leg=False), work / "leg2",
                int(HOLD_S * 1000) - 60,
            )  # fmt: skip
            for caller in (leg1, leg2):
                caller.wait(timeout=seconds + 120)
            time.sleep(0.2)  # the last 200 to the last BYE
            user_after, system_after = user_system_seconds(sandbox.pid)
            if out is not None:
                subprocess.run(["callgrind_control", "-i", "off", str(sandbox.pid)], check=True,
                               stdout=subprocess.DEVNULL)  # fmt: skip
            system = system_after - system_before
            cpu_used = user_after - user_before + system
            wall = time.monotonic() - began
            load = os.getloadavg()
            stats = [sipp_stats(work / leg / "stat.csv") for leg in ("leg1", "leg2")]
        finally:
            sandbox.terminate()
            sandbox.wait(120 if callgrind else 10)
            if spy is not None:
                spy.wait(30)
        if out is not None:
            instructions = _callgrind_total(out)
    if callgrind:
        print(f"instructions per click-to-call: {instructions / total / 1e6:.2f} M")
    ok = sum(s[0] for s in stats)
    failed = sum(s[1] for s in stats) + (total + leg2_total - ok - sum(s[1] for s in stats))
    return Run(rate, total, ok, failed, sum(s[2] for s in stats), cpu_used, system,
               wall, load)  # fmt: skip


def _callgrind_total(path: Path) -> int:
    """The instructions callgrind counted (its ``totals:`` line)."""
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("totals:"):
            return int(line.split()[1])
    raise SystemExit(f"no totals in {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=int, default=200, help="click-to-calls per second")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--profile", type=Path, help="py-spy the sandbox; profiles go here")
    parser.add_argument("--cprofile", type=Path, help="run the sandbox under cProfile, into this")
    parser.add_argument("--keep", type=Path, help="keep SIPp's files and the sandbox's log here")
    parser.add_argument(
        "--callgrind", action="store_true",
        help="count the sandbox's instructions with valgrind instead (use a low --rate: 2)",
    )  # fmt: skip
    args = parser.parse_args()
    if shutil.which("sipp") is None:
        sys.exit("sipp is not installed: run ./scripts/setup.sh")
    print(f"sandbox CPU per click-to-call, {args.rate}/s for {args.seconds:g} s, "
          f"{os.cpu_count()} cores")  # fmt: skip
    print(f"{'run':>4} {'calls':>6} {'legs ok':>8} {'failed':>7} {'retrans':>8} "
          f"{'CPU s':>7} {'sys s':>6} {'ms/call':>8}  load average")  # fmt: skip
    for index in range(args.repeat):
        run = one_run(args.rate, args.seconds, args.profile, index, args.callgrind, args.keep,
                      args.cprofile)  # fmt: skip
        load = " ".join(f"{x:.2f}" for x in run.load)
        print(f"{index + 1:>4} {run.click_to_calls:>6} {run.ok:>8} {run.failed:>7} "
              f"{run.retransmissions:>8} {run.cpu_s:>7.2f} {run.system_s:>6.2f} "
              f"{run.cpu_ms_per_call:>8.3f}  {load}",
              flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
