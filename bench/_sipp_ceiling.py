"""The ceiling for bench/api_calls.py: SIPp against SIPp, carrying the same signalling.

SIPp plays serve's side of each call (``_sandbox_leg1.xml`` and ``_sandbox_leg2.xml``, the
scenarios bench/sandbox_cpu.py drives the sandbox with) and SIPp plays the operator
(``_operator_leg1.xml`` and ``_operator_leg2.xml``: ring, answer or reject after 50 ms,
hang up the first leg after 1 s, as api_calls.py runs the sandbox). A click-to-call is a
first leg at the rate and a second leg at nine tenths of it; an outbound call is one
second-shaped leg, hung up on the answer. No HTTP, no store, no call logic: what is left is
what the SIP messages alone cost two C++ peers on this machine.

A step is clean when every leg reached its scenario's end, nothing was retransmitted (a
retransmission means a side fell 500 ms behind), and the callers kept to the rate: they
were done within 2 s of the last call's own length after the offering time.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from _procfs import HOST, cpu_seconds, free_port
from sandbox_cpu import HOLD_S, LEG2_SHARE, numbers_file, start_sipp
from sip_cps import sipp, sipp_stats

HERE = Path(__file__).resolve().parent
ANSWER_AND_REJECT_MS = 50  # the operator's delays, as in _operator_leg*.xml


@dataclass(frozen=True)
class CeilingStep:
    service: str
    rate: int
    calls: int
    legs: int
    legs_ok: int
    retransmissions: int
    cpu_s: float  # every SIPp process's user + system time
    late_s: float  # how much longer the callers took than the offering time and one call

    @property
    def clean(self) -> bool:
        return self.legs_ok == self.legs and self.retransmissions == 0 and self.late_s < 2.0

    @property
    def cpu_ms_per_call(self) -> float:
        return 1000 * self.cpu_s / self.calls


def _operator(scenario: str, port: int, total: int, workdir: Path) -> subprocess.Popen[bytes]:
    workdir.mkdir()
    args = ["-sf", str(HERE / scenario), "-i", HOST, "-p", str(port), "-t", "u1",
            "-m", str(total), "-timeout", "120"]  # fmt: skip
    return sipp(args, workdir, 120)


def step(service: str, rate: int, seconds: float) -> CeilingStep:
    """One step at ``rate`` calls per second for ``seconds``."""
    calls = int(rate * seconds)
    legs: list[tuple[str, str, float, int, int]] = []  # caller, operator, rate, total, pause
    if service == "click2call":
        legs.append(("_sandbox_leg1.xml", "_operator_leg1.xml", rate, calls, 0))
        hold_left = int(HOLD_S * 1000) - ANSWER_AND_REJECT_MS - 10
        legs.append(("_sandbox_leg2.xml", "_operator_leg2.xml", rate * LEG2_SHARE,
                     int(calls * LEG2_SHARE), hold_left))  # fmt: skip
    else:
        legs.append(("_sandbox_leg2.xml", "_operator_leg2.xml", rate, calls, 0))
    with tempfile.TemporaryDirectory(prefix="voiceplane-ceiling-") as tmp:
        work = Path(tmp)
        procs: list[subprocess.Popen[bytes]] = []
        callers: list[subprocess.Popen[bytes]] = []
        try:
            for index, (caller, operator, leg_rate, total, pause_ms) in enumerate(legs):
                port = free_port()
                procs.append(_operator(operator, port, total, work / f"operator{index}"))
                time.sleep(0.3)  # SIPp binds before it reads its scenario
                numbers = numbers_file(work / f"numbers{index}.csv", total, 10 - index,
                                       first_leg=index == 0)  # fmt: skip
                callers.append(start_sipp(caller, f"{HOST}:{port}", leg_rate, total, numbers,
                                          work / f"caller{index}", pause_ms))  # fmt: skip
            began = time.monotonic()
            procs.extend(callers)
            # Sampled from /proc while each SIPp lives (a reaped child's is gone): the last
            # sample misses what a process used in its final 50 ms, next to nothing.
            last: dict[int, float] = {}
            while any(proc.poll() is None for proc in procs):
                for proc in procs:
                    try:
                        last[proc.pid] = cpu_seconds(proc.pid)
                    except OSError:
                        pass  # it has just exited
                time.sleep(0.05)
            one_call = ANSWER_AND_REJECT_MS / 1000 + (HOLD_S if service == "click2call" else 0)
            late = time.monotonic() - began - seconds - one_call
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.kill()
                proc.wait()
        ok = retrans = 0
        total_legs = sum(leg[3] for leg in legs)
        for index in range(len(legs)):
            leg_ok, _failed, leg_retrans = sipp_stats(work / f"caller{index}" / "stat.csv")
            ok += leg_ok
            retrans += leg_retrans
    return CeilingStep(
        service, rate, calls, total_legs, ok, retrans, sum(last.values()), max(late, 0.0)
    )


def ramp(service: str, start: int, seconds: float, cap: int) -> list[CeilingStep]:
    """The clean steps, doubling from ``start`` until a step is not clean or passes ``cap``."""
    clean: list[CeilingStep] = []
    rate = start
    while rate <= cap:
        found = step(service, rate, seconds)
        print(
            f"  SIPp vs SIPp {service:>10} {rate:>5}/s  legs={found.legs:<6} "
            f"ok={found.legs_ok:<6} retrans={found.retransmissions:<4} late={found.late_s:.1f} s  "
            f"cpu/call ms: {found.cpu_ms_per_call:.2f}  load={os.getloadavg()[0]:.2f}  "
            f"{'ok' if found.clean else 'not clean'}",
            flush=True,
        )
        if not found.clean:
            break
        clean.append(found)
        rate *= 2
    return clean
