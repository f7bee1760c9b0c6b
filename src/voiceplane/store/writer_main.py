"""The store writer process: ``python -m voiceplane.store.writer_main``.

Started by :class:`voiceplane.store.writer_child.WriterChild`, never by hand. It reads its
settings, then batches of writes from stdin, applies each on its own connection and writes
the answer to stdout (the wire of ``voiceplane.store.writer_child``). At the end of stdin
(the parent stopped it, or died) it exits; a batch it was applying is committed or rolled
back whole, as SQLite and PostgreSQL keep a transaction.
"""

from __future__ import annotations

import logging
import os
import signal
import sys

from voiceplane.frames import read_frame_from, write_frame_to
from voiceplane.runtime import tune_gc

from .db import create_engine_for, session_factory
from .writer_child import apply_groups


def main() -> None:
    # Ctrl-C reaches the whole process group: the parent decides when this process ends.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(level=logging.WARNING, format="store writer: %(message)s")
    # The wire owns the real stdout; anything else printed goes to stderr instead.
    out = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    source = sys.stdin.buffer
    settings = read_frame_from(source)
    if settings is None:
        return
    engine = create_engine_for(settings["url"])
    session = session_factory(engine)()
    try:
        with engine.connect():  # fail here, before "ready", if the store is unreachable
            pass
        tune_gc()  # like serve: start-up's objects out of the collector's passes
        write_frame_to(out, "ready")
        while (groups := read_frame_from(source)) is not None:
            write_frame_to(out, apply_groups(session, groups))
    except BrokenPipeError:
        pass  # the parent is gone
    finally:
        session.close()
        engine.dispose()


if __name__ == "__main__":
    main()
