"""What the benches read of processes and ports: free loopback ports and CPU time from /proc."""

from __future__ import annotations

import os
import socket
from pathlib import Path

HOST = "127.0.0.1"


def free_port(kind: int = socket.SOCK_DGRAM) -> int:
    """A port free on loopback now (UDP by default; ``socket.SOCK_STREAM`` for TCP)."""
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def stat_cpu_seconds(stat: Path) -> float:
    """User + system CPU seconds in a /proc ``stat`` file (a process's or a thread's)."""
    fields = stat.read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far."""
    return stat_cpu_seconds(Path(f"/proc/{pid}/stat"))


def thread_cpu_seconds(pid: int) -> dict[int, float]:
    """CPU seconds of each thread of ``pid``, by thread id."""
    found: dict[int, float] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            found[int(task.name)] = stat_cpu_seconds(task / "stat")
        except OSError:
            continue  # the thread ended meanwhile
    return found


def children_cpu_seconds(pid: int) -> dict[int, float]:
    """CPU of every live descendant of ``pid`` (serve runs callbacks in a child process)."""
    found: dict[int, float] = {}
    pending = [pid]
    while pending:
        parent = pending.pop()
        for task in Path(f"/proc/{parent}/task").glob("*"):
            try:
                children = (task / "children").read_text().split()
            except OSError:
                continue
            for child in map(int, children):
                try:
                    found[child] = cpu_seconds(child)
                except OSError:
                    continue
                pending.append(child)
    return found
