"""The call engine: takes queued calls from the store and carries them out over SIP.

It is a long-running service of ``voiceplane serve`` and the API's doorbell
(:class:`~voiceplane.calls.commands.CallCommands`). The store is the source of truth: the
engine claims due calls from it (so several engines can share one PostgreSQL queue), keeps
each live call in a :class:`~voiceplane.calls.tracker.CallTracker`, and writes every change
through the group-commit writer. A call left unfinished by a crash is given its final
status when the engine starts again (:func:`recover`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import update
from sqlalchemy.orm import Session

from voiceplane.media.backend import MediaBackend, MediaError
from voiceplane.media.tts import load_target
from voiceplane.store.models import Call
from voiceplane.store.queue import CallCommand, cancel_requested, claim_due
from voiceplane.store.writer import StoreWriter

from .click_to_call import run_click_to_call
from .outbound import run_outbound
from .outcome import platform_failure
from .recovery import recover
from .status import Status
from .tracker import BY_PLATFORM, CallTracker, utcnow
from .trunk import Trunk

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class EngineSettings:
    ring_timeout_s: float = 30.0  # when the call does not say
    poll_interval_s: float = 0.5  # how often the queue is read without a doorbell
    gather_s: float = 0.02  # after a doorbell, how long to let more calls arrive
    claim_batch: int = 200
    max_active: int = 20_000  # calls carried out at once by this engine
    max_talk_s: float = 4 * 3600  # a connected click-to-call is hung up after this long
    prompt_cache: Path = Path("voiceplane-data/prompts")


class CallEngine:
    """Carries out outbound and click-to-call calls; see the module docstring."""

    def __init__(
        self,
        *,
        writer: StoreWriter,
        trunk: Callable[[], Trunk],
        media: MediaBackend,
        settings: EngineSettings | None = None,
        on_reported: Callable[[], None] | None = None,
    ) -> None:
        """``on_reported`` is rung when callbacks were stored (the dispatcher's doorbell)."""
        self._writer = writer
        self._on_reported = on_reported
        self._trunk = trunk
        self._media = media
        self.settings = settings or EngineSettings()
        self._active: dict[str, CallTracker] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        self._dispatcher: asyncio.Task[None] | None = None
        self._stopping = False
        self._cancel_waiting = False
        self.recovered = 0

    # --- Service -------------------------------------------------------------------------------

    async def start(self) -> None:
        self.recovered = await self._writer.submit(recover)
        if self.recovered:
            log.warning("gave a final status to %d calls interrupted by a stop", self.recovered)
        self._dispatcher = asyncio.get_running_loop().create_task(self._dispatch())

    async def stop(self) -> None:
        """Stop taking calls; end the live ones (CANCEL or BYE) and store how they ended."""
        self._stopping = True
        self._wake.set()
        if self._dispatcher is not None:
            await self._dispatcher
        for tracker in self._active.values():
            tracker.cancelled_by = BY_PLATFORM
            tracker.cancel_requested.set()
        if self._tasks:
            _done, pending = await asyncio.wait(self._tasks, timeout=5)
            for task in pending:
                task.cancel()

    # --- CallCommands --------------------------------------------------------------------------

    def call_queued(self, call_id: str) -> None:
        self._wake.set()

    def cancel_requested(self, call_id: str) -> None:
        tracker = self._active.get(call_id)
        if tracker is not None:
            tracker.cancel_requested.set()
        else:
            self._cancel_waiting = True  # still queued: the dispatcher completes it
            self._wake.set()

    @property
    def active_calls(self) -> int:
        return len(self._active)

    # --- the dispatcher ------------------------------------------------------------------------

    async def _dispatch(self) -> None:
        settings = self.settings
        loop = asyncio.get_running_loop()
        last_sweep = 0.0
        while not self._stopping:
            rung = False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=settings.poll_interval_s)
                rung = True
            if rung and not self._stopping:
                # Doorbells come in bursts under load: one claim for all of them.
                await asyncio.sleep(settings.gather_s)
            self._wake.clear()
            if self._stopping:
                break
            try:
                sweep = loop.time() - last_sweep >= settings.poll_interval_s
                if sweep or self._cancel_waiting:
                    self._cancel_waiting = False
                    await self._writer.submit(_cancel_queued)
                room = settings.max_active - len(self._active)
                if room > 0:
                    limit = min(room, settings.claim_batch)
                    commands = await self._writer.submit(functools.partial(_claim, limit=limit))
                    for command in commands:
                        self._launch(command)
                    if len(commands) == limit:
                        self._wake.set()  # there may be more waiting
                if sweep and self._active:
                    # Cancel requests stored by an API process that could not ring us.
                    last_sweep = loop.time()
                    ask = functools.partial(cancel_requested, call_ids=list(self._active))
                    for call_id in await self._writer.submit(ask):
                        self.cancel_requested(call_id)
                elif sweep:
                    last_sweep = loop.time()
            except Exception:
                log.exception("the call queue could not be read; retrying")
                await asyncio.sleep(settings.poll_interval_s)

    def _launch(self, command: CallCommand) -> None:
        tracker = CallTracker(command, self._writer)
        tracker.on_reported = self._on_reported
        self._active[command.call_id] = tracker
        task = asyncio.get_running_loop().create_task(self._carry_out(tracker))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _carry_out(self, tracker: CallTracker) -> None:
        command = tracker.command
        try:
            # The claim already stored "dialing"; the next save is when something rings.
            if tracker.cancel_requested.is_set():
                await tracker.complete(Status.CANCEL, "cancelled before dialing")
                return
            ring_timeout = float(command.ring_timeout or self.settings.ring_timeout_s)
            if command.service == "click2call":
                await run_click_to_call(
                    tracker, self._trunk(), self._media, ring_timeout=ring_timeout,
                    max_talk_s=self.settings.max_talk_s,
                )  # fmt: skip
            else:
                prompt = None
                if command.target:
                    try:
                        prompt = await load_target(command.target, self.settings.prompt_cache)
                    except MediaError as error:
                        verdict = platform_failure(f"the target could not be prepared: {error}")
                        tracker.new_leg(1, command.to_numbers[0]).fail(verdict)
                        await tracker.complete(verdict.status, verdict.explanation)
                        return
                await run_outbound(
                    tracker, self._trunk(), self._media, prompt=prompt, ring_timeout=ring_timeout
                )
        except Exception as error:
            log.exception("call %s failed inside the platform", command.call_id)
            await _store_failure(tracker, error)
        finally:
            self._active.pop(command.call_id, None)


async def _store_failure(tracker: CallTracker, error: Exception) -> None:
    verdict = platform_failure(f"internal error: {type(error).__name__}")
    for track in tracker.legs:
        if track.status is None:
            track.fail(verdict)
    status = Status.FAILED
    if tracker.command.service == "click2call":
        status = Status.FAILED_LEG2 if tracker.state == "answered" else Status.FAILED_LEG1
    with contextlib.suppress(Exception):
        await tracker.complete(status, verdict.explanation)


def _claim(session: Session, *, limit: int) -> list[CallCommand]:
    return claim_due(session, now=utcnow(), limit=limit)


def _cancel_queued(session: Session) -> int:
    """Complete queued calls that were cancelled before the engine took them."""
    now = utcnow()
    result = session.execute(
        update(Call)
        .where(Call.state == "queued", Call.cancel_requested_at.is_not(None))
        .values(
            state="completed",
            status=Status.CANCEL.value,
            reason="cancelled before dialing",
            end_time=now,
            updated_at=now,
        )
    )
    return int(result.rowcount)  # type: ignore[attr-defined]
