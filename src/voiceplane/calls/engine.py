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
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import httpx
from sqlalchemy import select
from sqlalchemy.orm import Session

from voiceplane.media.backend import MediaBackend, MediaError
from voiceplane.media.tts import load_target
from voiceplane.policy.capacity import (
    DEFAULT_QUEUE_TIMEOUT_S,
    Admission,
    ChannelCounter,
    calls_in_progress,
    still_in_progress,
)
from voiceplane.policy.checks import DndRegistry
from voiceplane.policy.rate import RateLimits
from voiceplane.store.models import Call
from voiceplane.store.queue import CallCommand, cancel_requested, claim_due
from voiceplane.store.writer import StoreWriter

from .before_dialing import Ended, Ending, end_queued, sweep_capacity
from .click_to_call import run_click_to_call
from .flow_target import FlowTargetError, flow_id_of
from .key_routes import KeyRoutes
from .leg_flow import FlowPlaces, FlowUnusable, LegFlow, load
from .outbound import run_outbound
from .outcome import click_to_call_status, platform_failure
from .predial import PreDialGate, Screening
from .recovery import recover
from .reporting import Handover
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
    queue_timeout_s: float = DEFAULT_QUEUE_TIMEOUT_S  # waiting for a channel, when not given
    max_cps: float = 0  # new calls a second on the trunk; 0: unlimited
    cps_burst: int = 0  # 0: a tenth of a second's worth (voiceplane.policy.rate)
    prompt_cache: Path = Path("voiceplane-data/prompts")
    # Flows run by outgoing calls (target=flow:<id>): play steps' files, recordings.
    media_dir: Path = Path("voiceplane-data/media")
    recordings_dir: Path = Path("voiceplane-data/recordings")


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
        dnd: DndRegistry | None = None,
    ) -> None:
        """``on_reported`` is rung when callbacks were stored (the dispatcher's doorbell);
        ``dnd`` is the Do-Not-Disturb registry promotional calls are checked against."""
        self._writer = writer
        # Checks made before any SIP is sent (voiceplane.policy.checks), in the claim: a
        # refused call never takes a channel or a token.
        self.pre_dial = PreDialGate(dnd=dnd)
        self._on_reported = on_reported
        # Set by serve: new callbacks go straight to this process's dispatcher.
        self.handover: Handover | None = None
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
        # Capacity and call rate (voiceplane.policy): see _claim_pass.
        self.channels = ChannelCounter()
        self.keys = KeyRoutes()  # SIP INFO keys of outgoing legs running a flow
        self._rates = RateLimits(
            trunk_cps=self.settings.max_cps, trunk_burst=self.settings.cps_burst
        )
        self._foreign: set[str] = set()  # calls in progress at start that are not ours
        self._next_look: float | None = None  # when calls held back by the rate may go
        # Bridges and accounts a call was left waiting on since the last sweep (for its
        # queue time), and since one of their calls last ended (not read again till then).
        self._waiting: tuple[set[str], set[int]] = (set(), set())
        self._held: tuple[set[str], set[int]] = (set(), set())
        self._http: httpx.AsyncClient | None = None  # flows' webhook steps, made at start

    # --- Service -------------------------------------------------------------------------------

    async def start(self) -> None:
        self.recovered = await self._writer.submit(recover)
        if self.recovered:
            log.warning("gave a final status to %d calls interrupted by a stop", self.recovered)
        # What is still in progress now belongs to other engines sharing the store: it holds
        # channels until it ends (re-read in the sweep).
        holding = await self._writer.submit(calls_in_progress)
        self.channels.rebuild(holding)
        self._foreign = {need.call_id for need in holding}
        self._dispatcher = asyncio.get_running_loop().create_task(self._dispatch())
        self._client()  # for target flows' webhooks: made now, not during a call

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
        if self._http is not None:
            await self._http.aclose()
            self._http = None

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
            timeout = settings.poll_interval_s
            if self._next_look is not None:
                timeout = max(0.0, min(timeout, self._next_look - loop.time()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=timeout)
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
                    self._reported(await self._writer.submit(_cancel_queued))
                room = settings.max_active - len(self._active)
                if room > 0:
                    await self._claim_pass(min(room, settings.claim_batch))
                if sweep:
                    await self._sweep_capacity()
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

    async def _claim_pass(self, limit: int) -> None:
        """Claim and start the due calls that have a free channel and a token, in queue
        order; the others stay queued (see voiceplane.policy.capacity)."""
        loop = asyncio.get_running_loop()
        now = time.monotonic()
        self._next_look = None
        if not self._rates.trunk.available(now):
            self._next_look = loop.time() + self._rates.trunk.wait(now)
            return
        # Not read: full bridges and accounts, and those whose next call did not fit (a
        # click-to-call needing 2 where 1 is free), so calls behind them are not starved.
        full_bridges, full_accounts = self.channels.full()
        skip_bridges = full_bridges | self._held[0]
        skip_accounts = full_accounts | self._held[1]
        admission = Admission(self.channels, self._rates, now)
        claim = functools.partial(
            _claim, limit=limit, gate=admission, pre_dial=self.pre_dial,
            skip_bridges=skip_bridges,
            skip_accounts=skip_accounts | self._rates.empty_accounts(now),
        )  # fmt: skip
        try:
            commands, screening, ended = await self._writer.submit(claim)
        except Exception:
            admission.undo()
            raise
        screening.keep()
        self._reported(ended)
        for keys in (self._waiting, self._held):
            keys[0].update(admission.waiting_bridges)
            keys[1].update(admission.waiting_accounts)
        claimed = {command.call_id for command in commands}
        for call_id in admission.admitted:
            if call_id not in claimed:  # admitted in a transaction that was rolled back
                self.channels.release(call_id)
        for command in commands:
            self._launch(command)
        if admission.rate_held:
            self._next_look = loop.time() + self._rates.wait(time.monotonic())
        full_now = self.channels.full()
        filled = (full_now[0] | self._held[0], full_now[1] | self._held[1]) != (
            skip_bridges, skip_accounts,
        )  # fmt: skip
        if admission.seen == limit and (commands or filled or admission.screened_out):
            self._wake.set()  # there may be more waiting behind what was read

    def _reported(self, ended: Ended) -> None:
        """Calls ended in the queue wrote callbacks: ring the dispatcher."""
        if ended.reported and self._on_reported is not None:
            self._on_reported()

    async def _sweep_capacity(self) -> None:
        """End MAX-USE the calls whose queue time ran out, notice changed limits, and let go
        of the channels of other engines' calls that have ended."""
        if self._foreign:
            ended = self._foreign - await self._writer.submit(
                functools.partial(still_in_progress, call_ids=list(self._foreign))
            )
            for call_id in ended:
                self._foreign.discard(call_id)
                if self.channels.release(call_id):
                    self._wake.set()
        full = self.channels.full()
        waiting, self._waiting = self._waiting, (set(), set())
        if not (full[0] or full[1] or waiting[0] or waiting[1]):
            return
        sweep = functools.partial(
            sweep_capacity, counter=self.channels, waiting=waiting,
            default_timeout_s=self.settings.queue_timeout_s,
        )  # fmt: skip
        expired, reported = await self._writer.submit(sweep)
        if reported and self._on_reported is not None:
            self._on_reported()
        if expired:
            log.info("%d calls waited out their queue time for a channel", expired)
        if self.channels.full() != full or waiting[0] or waiting[1]:
            self._held = (set(), set())  # limits may have been raised: look again
            self._wake.set()

    def _launch(self, command: CallCommand) -> None:
        tracker = CallTracker(command, self._writer)
        tracker.on_reported = self._on_reported
        tracker.handover = self.handover
        self._active[command.call_id] = tracker
        task = asyncio.get_running_loop().create_task(self._carry_out(tracker))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(functools.partial(self._call_ended, command))

    def _call_ended(self, command: CallCommand, _task: asyncio.Task[None]) -> None:
        """Free the call's channels; a call waiting for one may go now."""
        held_bridges, held_accounts = self._held
        held = command.bridge in held_bridges or command.account_id in held_accounts
        if held:
            held_bridges.discard(command.bridge or "")
            held_accounts.discard(command.account_id)
        if self.channels.release(command.call_id) or held:
            self._wake.set()

    async def _carry_out(self, tracker: CallTracker) -> None:
        command = tracker.command
        try:
            # The claim already stored "dialing" (and the pre-dial checks passed in it); the
            # next save is when something rings.
            if tracker.cancel_requested.is_set():
                await tracker.complete(Status.CANCEL, CANCELLED_BEFORE_DIALING)
                return
            ring_timeout = float(command.ring_timeout or self.settings.ring_timeout_s)
            if command.service == "click2call":
                try:
                    leg2_flow = await self._target_flow(tracker)
                except (FlowUnusable, FlowTargetError) as error:
                    verdict = platform_failure(f"the flow could not be prepared: {error}")
                    tracker.new_leg(1, command.from_numbers[0]).fail(verdict)
                    await tracker.complete(
                        click_to_call_status(verdict, None), verdict.explanation
                    )
                    return
                await run_click_to_call(
                    tracker, self._trunk(), self._media, ring_timeout=ring_timeout,
                    max_talk_s=self.settings.max_talk_s, flow=leg2_flow,
                )  # fmt: skip
            else:
                prompt = None
                flow: LegFlow | None = None
                if command.target:
                    try:
                        flow = await self._target_flow(tracker)
                        if flow is None:
                            prompt = await load_target(command.target, self.settings.prompt_cache)
                    except (MediaError, FlowUnusable, FlowTargetError) as error:
                        verdict = platform_failure(f"the target could not be prepared: {error}")
                        tracker.new_leg(1, command.to_numbers[0]).fail(verdict)
                        await tracker.complete(verdict.status, verdict.explanation)
                        return
                await run_outbound(
                    tracker, self._trunk(), self._media, prompt=prompt,
                    ring_timeout=ring_timeout, flow=flow,
                )  # fmt: skip
        except Exception as error:
            log.exception("call %s failed inside the platform", command.call_id)
            await _store_failure(tracker, error)
        finally:
            self._active.pop(command.call_id, None)

    async def _target_flow(self, tracker: CallTracker) -> LegFlow | None:
        """The live flow the call's target names (read now, before dialing), or None when
        the target is not a flow; :class:`FlowUnusable` if it cannot run."""
        command = tracker.command
        flow_id = flow_id_of(command.target)
        if flow_id is None:
            return None
        settings = self.settings
        places = FlowPlaces(
            media_dir=settings.media_dir, recordings_dir=settings.recordings_dir,
            tts_cache=settings.prompt_cache,
        )  # fmt: skip
        return await load(
            self._writer, account_id=command.account_id, flow_id=flow_id, places=places,
            http=self._client(), keys=self.keys,
        )  # fmt: skip

    def _client(self) -> httpx.AsyncClient:
        """The flows' HTTP client (webhook steps); made at start, or here if not started."""
        if self._http is None:
            self._http = httpx.AsyncClient()
        return self._http


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


def _claim(
    session: Session,
    *,
    limit: int,
    gate: Admission,
    pre_dial: PreDialGate,
    skip_bridges: set[str],
    skip_accounts: set[int],
) -> tuple[list[CallCommand], Screening, Ended]:
    """One claim pass in one transaction: the pre-dial checks of the calls the claim will
    not read (full bridges and accounts) and of those it offers to ``gate``, the claim, and
    the end of the refused calls (DND, NOTALLOWED), before any of them took a channel."""
    gate.seen = gate.screened_out = 0  # the writer may run this job again after a failure
    now = utcnow()
    screening = pre_dial.screening(session)
    screening.look_at_waiting(now=now, bridges=skip_bridges, accounts=skip_accounts)
    gate.screen = screening
    commands = claim_due(
        session, now=now, limit=limit, gate=gate, skip_bridges=skip_bridges,
        skip_accounts=skip_accounts,
    )  # fmt: skip
    pre_dial.claimed([command.call_id for command in commands])
    return commands, screening, end_queued(session, screening.refused, now=now)


CANCELLED_BEFORE_DIALING: Final = "cancelled before dialing"


def _cancel_queued(session: Session) -> Ended:
    """Complete queued calls that were cancelled before the engine took them, with their
    callbacks like any other completion."""
    query = (
        select(Call.id)
        .where(Call.state == "queued", Call.cancel_requested_at.is_not(None))
        .with_for_update(skip_locked=True)
    )
    endings = [
        Ending(call_id, Status.CANCEL, CANCELLED_BEFORE_DIALING)
        for call_id in session.scalars(query)
    ]
    return end_queued(session, endings, now=utcnow())
