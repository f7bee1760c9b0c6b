"""A real rtpengine daemon on loopback for tests and benchmarks (userspace, no kernel module).

``RtpengineDaemon`` starts ``rtpengine`` in the foreground with no config file, its ng port
and DTMF log destination on free loopback ports and its media ports in a range of its own,
with the options the backend recommends for its player (``DAEMON_OPTIONS`` in
``voiceplane.media.rtpengine``, and ``DAEMON_PRELOAD`` when installed), waits until it
answers ping, and stops it.
``requires_rtpengine`` skips a test when the binary is missing, except in CI (env ``CI``
set), where scripts/setup.sh installs it.
"""

from __future__ import annotations

import ctypes.util
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

import pytest

from tests.support.sipp import free_port
from voiceplane.media.bencode import decode, encode
from voiceplane.media.rtpengine import DAEMON_OPTIONS, DAEMON_PRELOAD

BINARY = "rtpengine"
LOOPBACK = "127.0.0.1"
START_TIMEOUT = 10.0  # seconds until it must answer ping


def require_rtpengine() -> None:
    """Skip without rtpengine locally; in CI its absence is a failure."""
    if shutil.which(BINARY) is not None:
        return
    if os.environ.get("CI"):
        pytest.fail("rtpengine is required in CI (scripts/setup.sh installs rtpengine-daemon)")
    pytest.skip("rtpengine is not installed (Debian package rtpengine-daemon)")


class RtpengineDaemon:
    """``with RtpengineDaemon() as rtpengine:`` -> ``rtpengine.ng`` / ``.dtmf_log`` addresses."""

    def __init__(
        self,
        *,
        ports: int = 1000,
        low: int | None = None,
        threads: int | None = None,
        realtime: int = 0,
        extra: tuple[str, ...] = (),
        binary: tuple[str, ...] = (BINARY,),
        preload: bool = True,
    ) -> None:
        self.ng = (LOOPBACK, free_port("udp"))
        self.dtmf_log = (LOOPBACK, free_port("udp"))
        if low is None:  # a random media port range, so parallel runs rarely collide
            low = 20000 + 2 * secrets.randbelow((60000 - 20000 - ports) // 2)
        self.port_range = (low, low + ports - 1)
        self.threads = threads
        # SCHED_FIFO at this priority for every rtpengine thread (0: the default policy).
        self.realtime = realtime
        self.extra = extra  # more command-line options, after (and so over) DAEMON_OPTIONS
        # How to run it: e.g. ("chroot", "/srv/trixie", "rtpengine") for another release,
        # which must see our prompt folder (under $TMPDIR) at the same path.
        self.binary = binary
        # DAEMON_PRELOAD, if this machine has it (a release run by chroot may not).
        self.preload = preload and ctypes.util.find_library("tcmalloc_minimal") is not None
        self._workdir = Path(tempfile.mkdtemp(prefix="rtpengine-"))
        self.log_path = self._workdir / "rtpengine.log"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        if self._process is None:
            raise RuntimeError("rtpengine is not running")
        return self._process.pid

    def command(self) -> list[str]:
        args = [
            *self.binary,
            "--config-file=none",  # not /etc/rtpengine/rtpengine.conf
            "--foreground",
            "--log-stderr",
            "--log-level=5",
            "--table=-1",  # no kernel module: userspace forwarding
            f"--interface={LOOPBACK}",
            f"--listen-ng={self.ng[0]}:{self.ng[1]}",
            f"--dtmf-log-dest={self.dtmf_log[0]}:{self.dtmf_log[1]}",
            f"--port-min={self.port_range[0]}",
            f"--port-max={self.port_range[1]}",
        ]
        if self.threads is not None:
            args.append(f"--num-threads={self.threads}")
        if self.realtime:
            args += ["--scheduling=fifo", f"--priority={self.realtime}"]
        return args + list(DAEMON_OPTIONS) + list(self.extra)

    def start(self) -> None:
        log = self.log_path.open("wb")
        env = dict(os.environ)
        if self.preload:
            env["LD_PRELOAD"] = DAEMON_PRELOAD
        self._process = subprocess.Popen(
            self.command(), cwd=self._workdir, stdout=log, stderr=subprocess.STDOUT, env=env
        )
        log.close()
        deadline = time.monotonic() + START_TIMEOUT
        while not self._pong():
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"rtpengine did not start:\n{self.log_text()}")
            time.sleep(0.05)

    def _pong(self) -> bool:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(0.2)
            sock.sendto(b"probe " + encode({"command": "ping"}), self.ng)
            try:
                cookie, _, body = sock.recv(65535).partition(b" ")
            except OSError:
                return False
        return cookie == b"probe" and decode(body) == {"result": b"pong"}

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self._workdir, ignore_errors=True)

    def __enter__(self) -> RtpengineDaemon:
        self.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.cleanup()
