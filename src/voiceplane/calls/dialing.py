"""Ringing legs: one number, or several at once where the first to answer wins.

Shared by the outbound and click-to-call flows. A leg rings until it is answered, ends
unanswered, or the engine gives up (``stop`` is set: the API cancelled, or the other party
of a click-to-call hung up); giving up sends CANCEL and the leg's status says CANCEL.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from voiceplane.sip.outcome import Outcome
from voiceplane.sip.ua import OutboundCall, Progress

from .flag import Flag
from .outcome import LegVerdict, leg_status, parallel_status
from .tracker import BY_PLATFORM, CallTracker, LegTrack, WallClock, utcnow
from .trunk import Trunk


@dataclass(frozen=True, slots=True)
class Answered:
    """The leg that answered, still connected."""

    call: OutboundCall
    track: LegTrack


@dataclass(frozen=True, slots=True)
class Unanswered:
    """No leg answered: the combined verdict, and whether the engine gave up (CANCEL)."""

    verdict: LegVerdict
    gave_up: bool


async def first_answer(
    tries: list[tuple[OutboundCall, LegTrack]],
    stop: Flag,
    on_progress: Callable[[LegTrack], Callable[[Progress], None]],
) -> tuple[OutboundCall, LegTrack] | None:
    """The first of ``tries`` to answer; None once all ended unanswered or ``stop`` is set.

    Waits on the calls' own futures and the flag's, with no task per try (a task each
    and another per ``stop`` was most of the tasks a click-to-call made). Those futures
    are shared with other waiters: ``asyncio.wait`` never cancels them.
    """
    answers = {call.answered(): (call, track) for call, track in tries}
    # Provisional responses reach ``on_progress`` as the SIP layer hands them up (those
    # already received first), with no task of their own.
    unwatch = [call.watch_progress(on_progress(track)) for call, track in tries]
    pending: set[asyncio.Future[bool] | asyncio.Future[None]] = {*answers, stop.future}
    try:
        while True:
            # An answer that came with the stop still wins, as the answer is ours to end.
            for answer, attempt in answers.items():  # in dialling order, if two answered
                if answer.done() and answer.result():
                    return attempt
            if stop.is_set() or pending == {stop.future}:
                return None  # given up, or every try ended unanswered
            _done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for stop_watching in unwatch:
            stop_watching()


def _finish(
    track: LegTrack, outcome: Outcome, *, gave_up: bool, by: str | None, to_wall: WallClock
) -> LegVerdict:
    verdict = leg_status(outcome, originator_gave_up=gave_up and not outcome.answered)
    track.finish(outcome, verdict, to_wall=to_wall, hangup_by=by if gave_up else None)
    return verdict


async def ring(
    tracker: CallTracker,
    trunk: Trunk,
    *,
    leg: int,
    numbers: tuple[str, ...],
    caller_id: str | None,
    sdp: bytes,
    ring_timeout: float | None,
    stop: Flag,
    stopped_by: Callable[[], str],
) -> Answered | Unanswered:
    """Ring ``numbers`` at once as leg ``leg``; the first to answer wins, the rest get CANCEL.

    ``stopped_by()`` names who gave up when ``stop`` is set (for the leg's ``hangup_by``).
    """
    to_wall = trunk.wall_clock()
    tries: list[tuple[OutboundCall, LegTrack]] = []
    for number in numbers:
        track = tracker.new_leg(leg, number)
        call = trunk.dial(number, caller_id=caller_id, sdp=sdp, ring_timeout=ring_timeout)
        track.sip_call_id = call.call_id
        tries.append((call, track))
    # Not saved yet: the first provisional response (or the end) stores the new legs, which
    # spares the store a write per leg on the busy path.

    def progressed(track: LegTrack) -> Callable[[Progress], None]:
        def on_progress(progress: Progress) -> None:
            if track.ring_time is None:
                track.ring_time = utcnow()
                if tracker.state == "ringing":
                    tracker.save()
                else:
                    tracker.set_state("ringing")

        return on_progress

    winner = await first_answer(tries, stop, progressed)
    # Whoever did not win and still rings is given up on: CANCEL (BYE if an answer crossed
    # it). A try that had already ended on its own (busy, say) keeps its own verdict.
    given_up: set[int] = set()
    for call, _track in tries:
        if winner is not None and call is winner[0]:
            continue
        if call.outcome is None:
            given_up.add(id(call))
            call.cancel()
    verdicts: list[LegVerdict] = []
    by = BY_PLATFORM if winner is not None else stopped_by()
    for call, track in tries:
        if winner is not None and call is winner[0]:
            track.answer_time = utcnow()
            continue
        outcome = await call.ended()
        gave_up = id(call) in given_up
        verdicts.append(_finish(track, outcome, gave_up=gave_up, by=by, to_wall=to_wall))
    if winner is not None:
        return Answered(*winner)
    if len(verdicts) == 1:
        return Unanswered(verdicts[0], bool(given_up))
    return Unanswered(
        LegVerdict(parallel_status(verdicts), None, "rang in parallel"), bool(given_up)
    )


async def hang_up(call: OutboundCall) -> Outcome:
    """End an answered leg (BYE) unless it already ended; its outcome."""
    if call.outcome is None:
        call.hangup()
    return await call.ended()


def finish_answered(
    track: LegTrack, outcome: Outcome, *, by: str | None, to_wall: WallClock
) -> LegVerdict:
    """Record the end of a leg that was answered; ``by`` overrides who hung up."""
    verdict = leg_status(outcome)
    track.finish(outcome, verdict, to_wall=to_wall, hangup_by=by)
    return verdict
