"""A sender in a child process: the HTTP part of delivering callbacks off the main process.

``voiceplane serve`` is CPU-bound on one core when callbacks pour out: the store writer's
thread and the event loop share the GIL, and the HTTP requests (aiohttp then) were a third of the
CPU per callback (bench/callbacks.py). :class:`ChildSender` hands the attempts to
``python -m voiceplane.callbacks.sender_main`` over its stdin and reads the outcomes from
its stdout, so the HTTP work runs on the machine's other core. The store stays the one
place of truth: rows are leased in the store before they are handed over, and outcomes are
recorded by the parent's writer, as for the in-process sender.

The wire: frames of a 4-byte big-endian length and a pickle (both ends are this module's
own code, on a private pipe). The first frame to the child is its ``SenderSettings`` as a
dict, answered by an empty frame once it is ready; then each frame is a list of ``SendJob``
tuples one way and ``SendOutcome`` tuples the other way, as many as one turn of the loop
gathered.

If the child dies, the attempts it held are given back unattempted (the dispatcher makes
them due again: sent again with the same ``webhook-id``, at least once) and a new child is
started, at once the first time and after a growing pause if it keeps dying young. If the
parent dies, even by SIGKILL, the child reads the end of its stdin and exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import pickle
import struct
import sys
import time
from collections.abc import Sequence
from typing import Any, Final

from .sending import OnOutcome, SenderSettings, SendJob, SendOutcome

HEADER: Final = struct.Struct(">I")
MAX_FRAME: Final = 256 * 1024 * 1024
COMMAND: Final = (sys.executable, "-m", "voiceplane.callbacks.sender_main")
# A child that dies sooner than this after its start is restarted after a pause that doubles
# (up to MAX_RESTART_PAUSE_S): a child that cannot live must not be restarted in a tight loop.
YOUNG_S: Final = 5.0
MAX_RESTART_PAUSE_S: Final = 5.0
STOP_WAIT_S: Final = 2.0
START_WAIT_S: Final = 30.0


class ChildFailed(RuntimeError):
    """The sender process could not be started."""

log = logging.getLogger(__name__)


def frame(value: object) -> bytes:
    data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    return HEADER.pack(len(data)) + data


async def read_frame(reader: asyncio.StreamReader) -> Any | None:
    """The next frame's value; None at the end of the stream (the other side is gone)."""
    try:
        header = await reader.readexactly(HEADER.size)
        (size,) = HEADER.unpack(header)
        if size > MAX_FRAME:
            raise ValueError(f"a frame of {size} bytes: the stream is corrupt")
        return pickle.loads(await reader.readexactly(size))
    except asyncio.IncompleteReadError:
        return None


class ChildSender:
    """A ``Sender`` whose attempts run in a child process (restarted if it dies)."""

    def __init__(self, settings: SenderSettings, *, command: Sequence[str] = COMMAND) -> None:
        self.settings = settings
        self._command = tuple(command)
        self._on_outcome: OnOutcome | None = None
        self._process: asyncio.subprocess.Process | None = None
        self._open: dict[str, SendJob] = {}  # handed to the current child, no outcome yet
        self._unsent: list[SendJob] = []  # not written to a child yet
        self._flush_scheduled = False
        self._supervisor: asyncio.Task[None] | None = None
        self._stopping = False
        self._ready = asyncio.Event()  # a child is up and has been handed what waited
        self.restarts = 0  # children started after the first (one died each time)

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    @property
    def in_flight(self) -> int:
        return len(self._open) + len(self._unsent)

    async def start(self, on_outcome: OnOutcome) -> None:
        """Start the child; jobs submitted before it is ready wait for it (:meth:`ready`)."""
        if self._supervisor is not None:
            raise RuntimeError("the sender is already running")
        self._on_outcome = on_outcome
        self._stopping = False
        self._ready.clear()
        self._supervisor = asyncio.create_task(self._supervise(), name="callback-sender-child")

    async def ready(self) -> None:
        """Wait until a child is up and taking jobs."""
        await self._ready.wait()

    def submit(self, jobs: Sequence[SendJob]) -> None:
        if self._on_outcome is None:
            raise RuntimeError("the sender is not started")
        self._unsent.extend(jobs)
        if not self._flush_scheduled:
            # One write per turn of the loop, for everything handed over during it.
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    async def stop(self) -> None:
        """End the child (its open attempts get no outcome: the dispatcher gives them back)."""
        self._stopping = True
        supervisor, self._supervisor = self._supervisor, None
        process = self._process
        if process is not None:
            await _end(process)
        if supervisor is not None:
            supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await supervisor
        self._process = None
        self._open.clear()
        self._unsent.clear()
        self._on_outcome = None

    # --- the child -------------------------------------------------------------------------------

    async def _spawn(self) -> asyncio.subprocess.Process:
        process = await asyncio.create_subprocess_exec(
            *self._command,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            # stderr: the parent's, so the child's log lines land where serve's do
        )
        self._process = process
        assert process.stdin is not None and process.stdout is not None
        process.stdin.write(frame(dataclasses.asdict(self.settings)))
        try:  # it answers an empty frame once it is ready to send
            ready = await asyncio.wait_for(read_frame(process.stdout), START_WAIT_S)
        except TimeoutError:
            ready = None
        if ready != []:
            await _end(process)
            raise ChildFailed(
                f"the callback sender process did not start (exit code {process.returncode})"
            )
        self._ready.set()
        self._flush()
        return process

    def _flush(self) -> None:
        self._flush_scheduled = False
        process = self._process
        if not self._ready.is_set() or process is None or process.stdin is None:
            return  # no child right now: written once the next one is up
        if not self._unsent or process.stdin.is_closing():
            return
        jobs, self._unsent = self._unsent, []
        for job in jobs:
            self._open[job.id] = job
        process.stdin.write(frame([job.as_tuple() for job in jobs]))

    async def _supervise(self) -> None:
        failures_in_a_row = 0
        children = 0
        while not self._stopping:
            started = time.monotonic()
            process: asyncio.subprocess.Process | None = None
            try:
                process = await self._spawn()
                children += 1
                self.restarts = children - 1
                assert process.stdout is not None
                while (outcomes := await read_frame(process.stdout)) is not None:
                    self._deliver([SendOutcome(*item) for item in outcomes])
            except Exception:  # a child that cannot start, or a garbled stream: a new child
                log.exception("the callback sender process failed")
                process = process or self._process
                if process is not None:
                    await _end(process)
            self._ready.clear()
            if process is not None:
                code = await process.wait()
                if self._stopping:
                    return
                self._lost(process.pid, code)
            self._process = None
            young = time.monotonic() - started < YOUNG_S
            failures_in_a_row = failures_in_a_row + 1 if young else 0
            if failures_in_a_row > 1:  # the first restart is at once; then a growing pause
                await asyncio.sleep(min(MAX_RESTART_PAUSE_S, 0.1 * 2 ** (failures_in_a_row - 2)))

    def _lost(self, pid: int, code: int | None) -> None:
        """The child died: what it held is given back (it may or may not have been sent)."""
        lost, self._open = list(self._open), {}
        log.error(
            "the callback sender process %d exited (code %s) with %d attempts open; they are "
            "given back and a new sender process starts", pid, code, len(lost),
        )  # fmt: skip
        if self._on_outcome is not None:
            for job_id in lost:
                self._on_outcome(SendOutcome(job_id, attempted=False))

    def _deliver(self, outcomes: list[SendOutcome]) -> None:
        on_outcome = self._on_outcome
        for outcome in outcomes:
            if self._open.pop(outcome.id, None) is not None and on_outcome is not None:
                on_outcome(outcome)


async def _end(process: asyncio.subprocess.Process) -> None:
    """Close the child's stdin (it exits at the end of it); kill it if it lingers."""
    if process.stdin is not None and not process.stdin.is_closing():
        process.stdin.close()
    try:
        await asyncio.wait_for(process.wait(), STOP_WAIT_S)
    except TimeoutError:
        log.warning("the callback sender process %d did not exit; killing it", process.pid)
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()
