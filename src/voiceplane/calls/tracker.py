"""A live call in memory: its record as it grows, saved to the store as snapshots.

The engine owns a :class:`CallTracker` per call it is carrying out. Every change users can
see goes through it, and :meth:`CallTracker.save` hands the store writer a frozen snapshot
of the whole call (a newer one replaces one still waiting), so the stored record never
shows half a change.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from dataclasses import astuple, dataclass
from datetime import UTC, datetime
from typing import Any, Final

from voiceplane.sip.outcome import Outcome, Party
from voiceplane.store.progress import CallProgress, LegProgress, save_many
from voiceplane.store.queue import CallCommand
from voiceplane.store.writer import StoreWriter

from .flag import Flag
from .outcome import LegVerdict
from .reporting import Handover, Report, store_reports
from .status import Status

# Who ended a leg, as the record's ``hangup_by`` says it.
BY_CALLEE: Final = "callee"  # the dialled party: rejected, or hung up after answering
BY_PLATFORM: Final = "platform"  # we did: ring timeout, prompt finished, failure
BY_API: Final = "api"  # the application cancelled the call
BY_OTHER_LEG: Final = "other-leg"  # click-to-call: the other party hung up first


def wall(moment: float | None) -> datetime | None:
    """A UNIX timestamp as an aware UTC datetime."""
    return None if moment is None else datetime.fromtimestamp(moment, UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


def whole_seconds(start: datetime | None, end: datetime | None) -> int:
    """Seconds from ``start`` to ``end``, rounded up as billing does; 0 if either is missing."""
    if start is None or end is None or end <= start:
        return 0
    return math.ceil((end - start).total_seconds())


@dataclass
class LegTrack:
    """One try of a leg, mutable while it runs."""

    seq: int
    leg: int
    number: str
    status: str | None = None
    sip_code: int | None = None
    sip_reason: str | None = None
    q850_cause: int | None = None
    hangup_by: str | None = None
    start_time: datetime | None = None
    ring_time: datetime | None = None
    answer_time: datetime | None = None
    end_time: datetime | None = None
    sip_call_id: str | None = None

    def finish(
        self,
        outcome: Outcome,
        verdict: LegVerdict,
        *,
        to_wall: WallClock,
        hangup_by: str | None = None,
    ) -> None:
        """Record how the leg ended: the SIP facts and the verdict derived from them."""
        self.status = verdict.status.value
        self.sip_code = outcome.status
        self.sip_reason = outcome.reason or None
        self.q850_cause = verdict.q850_cause
        if hangup_by is None:
            hangup_by = BY_CALLEE if outcome.ended_by is Party.REMOTE else BY_PLATFORM
        self.hangup_by = hangup_by
        self.ring_time = self.ring_time or wall(to_wall(outcome.ringing_at))
        self.answer_time = self.answer_time or wall(to_wall(outcome.answered_at))
        self.end_time = wall(to_wall(outcome.ended_at)) or utcnow()

    def fail(self, verdict: LegVerdict) -> None:
        """The leg could not be tried at all (the platform failed before any SIP)."""
        self.status = verdict.status.value
        self.hangup_by = BY_PLATFORM
        self.end_time = utcnow()

    def freeze(self) -> LegProgress:
        return LegProgress(**vars(self))


class WallClock:
    """Turns the SIP layer's loop-clock times into UNIX timestamps."""

    def __init__(self, offset: float) -> None:
        self.offset = offset

    def __call__(self, moment: float | None) -> float | None:
        return None if moment is None else moment + self.offset


class CallTracker:
    """The engine's view of one call while it runs."""

    def __init__(self, command: CallCommand, writer: StoreWriter) -> None:
        self.command = command
        self._writer = writer
        self.state = "dialing"
        self.status: Status | None = None
        self.reason: str | None = None
        self.start_time: datetime | None = command.start_time
        self.answer_time: datetime | None = None
        self.end_time: datetime | None = None
        self.attempts = command.attempts
        self.scheduled_at: datetime | None = None
        self.decided_by_rule: str | None = None  # set when policy decided before dialing
        self.keypress: str | None = None  # incoming calls: the keys pressed in the flow
        self.recording: str | None = None  # incoming calls: the voicemail's file
        self.legs: list[LegTrack] = [LegTrack(*astuple(leg)) for leg in command.legs]
        self.cancel_requested = Flag()
        if command.cancel_requested:
            self.cancel_requested.set()
        # Who a cancel comes from: the API, or the platform itself when it is stopping.
        self.cancelled_by = BY_API
        # Progress events not yet reported (only calls with a callback or dlrurl report).
        self._events: list[str] = []
        self._initiated = False
        self.on_reported: Callable[[], None] | None = None  # rung when callbacks were stored
        # Set when this process's dispatcher takes new callbacks straight from the engine.
        self.handover: Handover | None = None

    @property
    def call_id(self) -> str:
        return self.command.call_id

    def new_leg(self, leg: int, number: str) -> LegTrack:
        seq = max((track.seq for track in self.legs), default=0) + 1
        track = LegTrack(seq=seq, leg=leg, number=number, start_time=utcnow())
        self.legs.append(track)
        return track

    def set_state(self, state: str) -> None:
        """Move forward to ``state`` (never back) and save."""
        order = ("queued", "dialing", "ringing", "answered", "completed")
        if order.index(state) > order.index(self.state):
            self.state = state
            if state in ("ringing", "answered"):
                self._note(state)
            if state == "answered" and self.answer_time is None:
                self.answer_time = utcnow()
            self.save()

    def complete(
        self, status: Status, reason: str | None, *, rule: str | None = None
    ) -> asyncio.Future[None]:
        """The call is over: its final status and reason (and, for a status decided before
        dialing, the pre-dial ``rule`` that decided it); resolves once stored."""
        self.state = "completed"
        self.status = status
        self.reason = reason
        self.decided_by_rule = rule
        self.end_time = utcnow()
        self._note("completed")
        return self.save()

    def requeue(self, at: datetime, reason: str) -> asyncio.Future[None]:
        """Put the call back in the queue for another attempt at ``at``."""
        self.state = "queued"
        self.reason = reason
        self.scheduled_at = at
        self.answer_time = None
        return self.save()

    def snapshot(self) -> CallProgress:
        return CallProgress(
            call_id=self.call_id,
            state=self.state,
            status=None if self.status is None else self.status.value,
            reason=self.reason,
            start_time=self.start_time,
            answer_time=self.answer_time,
            end_time=self.end_time,
            duration=whole_seconds(self.start_time, self.end_time),
            billsec=whole_seconds(self.answer_time, self.end_time),
            attempts=self.attempts,
            scheduled_at=self.scheduled_at,
            legs=tuple(track.freeze() for track in self.legs),
            decided_by_rule=self.decided_by_rule,
            keypress=self.keypress,
            recording=self.recording,
        )

    def _note(self, event: str) -> None:
        if not self._initiated:
            self._initiated = True
            self._events.append("initiated")
        self._events.append(event)

    def save(self) -> asyncio.Future[None]:
        """Hand the writer a snapshot; the future resolves once it is stored."""
        if not self.command.reported:
            # Nobody to tell: a newer snapshot may replace this one while it waits.
            return self._writer.submit_item(
                save_many, self.snapshot(), key=("call", self.call_id)
            )
        # Reported calls keep every save, in order, each with the callbacks for its events.
        events, self._events = self._events, []
        report = Report(self.snapshot(), tuple(events))
        apply = store_reports if self.handover is None else self.handover.reports
        stored = self._writer.submit_item(apply, report)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        stored.add_done_callback(lambda result: self._stored(result, done))
        return done

    def _stored(self, result: asyncio.Future[Any], done: asyncio.Future[None]) -> None:
        if result.cancelled():
            done.cancel()
        elif (error := result.exception()) is not None:
            done.set_exception(error)
        else:
            leased = result.result()
            if leased and self.handover is not None:
                self.handover.send(leased)
            elif self.on_reported is not None:
                self.on_reported()  # the dispatcher's doorbell: cheap when nothing was written
            done.set_result(None)
