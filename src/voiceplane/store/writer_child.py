"""The store's bulk writes in a process of their own, so they share no GIL with serve.

Under load, serve's event loop and the store writer's thread shared one GIL, and the
writer's statements were about a third of it at 300 click-to-calls a second: an API request
waited for SIP work and batches in turn (bench/api_calls.py). The writer thread now hands
the kinds of items it is told to offload (call snapshots, new calls: plain data, applied by
module-level functions) to ``python -m voiceplane.store.writer_main``, which applies them on
a connection of its own, in one transaction per batch, while the thread waits with the GIL
released. The writer thread still decides what goes in which batch and in what order, and
never has a transaction open while the child has one, so the two never wait for SQLite's
write lock on each other.

The wire is :mod:`voiceplane.frames`. The first frame to the child is its settings (the
store URL), answered by ``"ready"``. Then each frame is a batch, a list of ``(apply,
items)``; the answer is ``("ok", [apply's answer per group])`` once the batch committed, or,
when the batch failed and was rolled back, ``("each", [[(ok, result or error) per item] per
group])`` from applying each item alone, as :class:`~voiceplane.store.writer.StoreWriter`
does in-process. At the end of its stdin (the parent stopped, or died) the child exits.

If the child dies or the pipe breaks, :meth:`WriterChild.apply` raises :class:`ChildLost`
and the writer applies the batch, and everything after it, in its own thread: nothing
submitted is lost. A batch the child committed just before it died is then applied twice,
which a snapshot (an upsert) survives; a new call's row fails as a duplicate instead.
"""

from __future__ import annotations

import logging
import pickle
import select
import subprocess
import sys
from collections.abc import Callable, Sequence
from typing import Any, Final

from sqlalchemy.orm import Session

from voiceplane.frames import read_frame_from, write_frame_to

__all__ = ["ChildLost", "ChildWriteError", "WriterChild", "apply_groups"]

COMMAND: Final = (sys.executable, "-m", "voiceplane.store.writer_main")
READY_WAIT_S: Final = 60.0
STOP_WAIT_S: Final = 5.0

# What a batch sends: each kind of item with its items, applied in this order.
Groups = Sequence[tuple[Callable[[Session, list[Any]], "list[Any] | None"], list[Any]]]
# One item's outcome when a batch is applied item by item: (True, result) or (False, error).
Outcome = tuple[bool, Any]

log = logging.getLogger(__name__)


class ChildLost(RuntimeError):
    """The writer process is gone (or never became ready); its batch's fate is unknown."""


class ChildWriteError(RuntimeError):
    """An item failed in the writer process with an error that could not cross the pipe."""


class WriterChild:
    """The parent's end: starts the writer process, hands it batches, waits for answers.

    Blocking calls, made from the store writer's thread (which holds no GIL while it waits).
    """

    def __init__(self, url: str, *, command: Sequence[str] = COMMAND) -> None:
        self.url = url
        self._command = tuple(command)
        self._process: subprocess.Popen[bytes] | None = None
        self._ready = False

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    def start(self) -> None:
        """Start the process (it gets ready while the parent migrates the schema)."""
        process = subprocess.Popen(
            self._command, stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )  # stderr: the parent's, so its log lines land where serve's do
        self._process = process
        assert process.stdin is not None
        write_frame_to(process.stdin, {"url": self.url})

    def wait_ready(self, timeout_s: float = READY_WAIT_S) -> None:
        """Block until the process answered ``"ready"``; :class:`ChildLost` if it did not."""
        process = self._require()
        assert process.stdout is not None
        readable, _, _ = select.select([process.stdout], [], [], timeout_s)
        answer = self._read() if readable else None
        if answer != "ready":
            self.close()
            raise ChildLost(
                f"the store writer process did not start (answered {answer!r}, "
                f"exit code {process.poll()})"
            )
        self._ready = True

    def apply(self, groups: Groups) -> tuple[str, list[Any]]:
        """Apply ``groups`` in the process: ``("ok", answers)`` or ``("each", outcomes)``
        (see the module docstring). :class:`ChildLost` if the process is gone."""
        process = self._require()
        if not self._ready:
            self.wait_ready()
        assert process.stdin is not None
        try:
            write_frame_to(process.stdin, list(groups))
        except OSError as error:  # the child is gone: a broken pipe
            self.close()
            raise ChildLost(f"the store writer process is gone ({error})") from error
        answer = self._read()
        if answer is None:
            self.close()
            raise ChildLost(f"the store writer process exited (code {process.poll()})")
        kind, results = answer
        return str(kind), list(results)

    def close(self) -> None:
        """End the process: it exits at the end of its stdin; killed if it lingers."""
        process, self._process = self._process, None
        self._ready = False
        if process is None:
            return
        if process.stdin is not None:
            try:
                process.stdin.close()
            except OSError:
                pass  # already broken
        try:
            process.wait(STOP_WAIT_S)
        except subprocess.TimeoutExpired:
            log.warning("the store writer process %d did not exit; killing it", process.pid)
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()

    def _require(self) -> subprocess.Popen[bytes]:
        if self._process is None:
            raise ChildLost("the store writer process is not running")
        return self._process

    def _read(self) -> Any | None:
        process = self._require()
        assert process.stdout is not None
        try:
            return read_frame_from(process.stdout)
        except (OSError, EOFError, pickle.UnpicklingError, ValueError):
            return None


def apply_groups(session: Session, groups: Groups) -> tuple[str, list[Any]]:
    """The child's work for one batch (see the module docstring); ``session`` is left empty."""
    try:
        with session.begin():
            answers = [apply(session, items) for apply, items in groups]
        return "ok", answers
    except Exception:
        log.warning("a batch of store writes failed; retrying item by item", exc_info=True)
    finally:
        session.close()
    return "each", [[_apply_alone(session, apply, item) for item in items]
                    for apply, items in groups]  # fmt: skip


def _apply_alone(
    session: Session, apply: Callable[[Session, list[Any]], list[Any] | None], item: Any
) -> Outcome:
    try:
        with session.begin():
            answers = apply(session, [item])
    except Exception as error:
        return False, portable(error)
    finally:
        session.close()
    return True, None if answers is None else answers[0]


def portable(error: BaseException) -> BaseException:
    """``error`` if it crosses a pipe as itself, else a :class:`ChildWriteError` naming it."""
    try:
        pickle.loads(pickle.dumps(error))
    except Exception:
        return ChildWriteError(f"{type(error).__name__}: {error}")
    return error
