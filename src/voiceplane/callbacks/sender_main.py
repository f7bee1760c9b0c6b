"""The callback sender process: ``python -m voiceplane.callbacks.sender_main``.

Started by ``voiceplane.callbacks.child.ChildSender``, never by hand. It reads its settings
and then batches of jobs from stdin, makes the attempts with ``HttpSender`` and writes the
outcomes to stdout (the frames of ``voiceplane.callbacks.child``). At the end of stdin (the
parent stopped it, or died) it abandons what is open and exits: the rows stay leased in the
store and are sent again once their leases end.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys

from voiceplane.runtime import tune_gc

from .child import frame, read_frame
from .sending import HttpSender, SenderSettings, SendJob, SendOutcome


async def serve(in_fd: int, out_fd: int) -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=2**20)
    await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(in_fd, "rb", buffering=0)
    )
    out, _protocol = await loop.connect_write_pipe(
        asyncio.Protocol, os.fdopen(out_fd, "wb", buffering=0)
    )
    settings = await read_frame(reader)
    if settings is None:
        return
    done: list[tuple[object, ...]] = []

    def flush() -> None:
        if done and not out.is_closing():
            out.write(frame(done[:]))
        done.clear()

    def on_outcome(outcome: SendOutcome) -> None:
        if not done:  # one write per turn of the loop, for every outcome of that turn
            loop.call_soon(flush)
        done.append(outcome.as_tuple())

    sender = HttpSender(SenderSettings(**settings))
    await sender.start(on_outcome)
    tune_gc()  # like serve: start-up's objects out of the collector's passes
    out.write(frame([]))  # ready
    try:
        while (jobs := await read_frame(reader)) is not None:
            sender.submit([SendJob(*job) for job in jobs])
    finally:
        await sender.stop()
        out.close()


def main() -> None:
    # Ctrl-C reaches the whole process group: the parent decides when this process ends.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(level=logging.WARNING, format="callback sender: %(message)s")
    # The protocol owns the real stdout; anything else printed goes to stderr instead.
    out_fd = os.dup(sys.stdout.fileno())
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover
        pass
    asyncio.run(serve(sys.stdin.fileno(), out_fd))


if __name__ == "__main__":
    main()
