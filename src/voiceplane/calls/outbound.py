"""An outbound call: dial ``to`` from the bridge number, play the target, hang up.

A target that is a flow (``flow:<id>``) is run on the answered leg instead
(:mod:`.leg_flow`); the status stays ANSWER (the callee answered), the flow's keys and
recording go to the record, and the reason says how the flow ended.

One attempt per run. An unanswered attempt (busy, no answer, congestion) is put back in the
queue while the call has retries left; the status of the call is that of its last attempt.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from datetime import timedelta
from typing import Final

from voiceplane.media.backend import MediaBackend, MediaError, MediaSession
from voiceplane.sip.outcome import Outcome

from .dialing import Answered, finish_answered, hang_up, ring
from .leg_flow import LegFlow, how, run_and_finish
from .outcome import LegVerdict, platform_failure
from .status import Status
from .tracker import BY_PLATFORM, CallTracker, WallClock, utcnow
from .trunk import Trunk

# Outcomes worth another try later: the callee may pick up next time. A number that does
# not exist (CHANUNAVAIL) or a call the application cancelled is not retried.
RETRIED: Final = frozenset({Status.NOANSWER, Status.BUSY, Status.CONGESTION})


async def run_outbound(
    tracker: CallTracker,
    trunk: Trunk,
    media: MediaBackend,
    *,
    prompt: bytes | None,
    ring_timeout: float,
    flow: LegFlow | None = None,
) -> None:
    """Carry out one attempt of an outbound call, and store how it ended. With ``flow``,
    the flow runs once the callee answers (``prompt`` is not played)."""
    command = tracker.command
    number = command.to_numbers[0]
    try:
        session = await media.open_session()
    except MediaError as error:
        await _fail(tracker, number, f"media setup failed: {error}")
        return
    try:
        verdict = await _attempt(tracker, trunk, session, number, prompt, ring_timeout, flow)
    finally:
        with contextlib.suppress(Exception):
            await session.close()
    status = verdict.status
    if status in RETRIED and command.attempts <= command.retry:
        at = utcnow() + timedelta(seconds=command.retry_interval)
        await tracker.requeue(at, f"attempt {command.attempts}: {verdict.explanation}")
        return
    await tracker.complete(status, verdict.explanation)


async def _attempt(
    tracker: CallTracker,
    trunk: Trunk,
    session: MediaSession,
    number: str,
    prompt: bytes | None,
    ring_timeout: float,
    flow: LegFlow | None,
) -> LegVerdict:
    cancel = tracker.cancel_requested
    offer = session.offer()
    result = await ring(
        tracker, trunk, leg=1, numbers=(number,), caller_id=tracker.command.bridge,
        sdp=offer, ring_timeout=ring_timeout, stop=cancel,
        stopped_by=lambda: tracker.cancelled_by,
    )  # fmt: skip
    if not isinstance(result, Answered):
        return result.verdict
    call, track = result.call, result.track
    tracker.set_state("answered")
    to_wall = trunk.wall_clock()
    try:
        session.accept_answer(call.remote_sdp)
    except MediaError as error:
        outcome = await hang_up(call)
        finish_answered(track, outcome, by=BY_PLATFORM, to_wall=to_wall)
        return platform_failure(f"media setup failed: {error}")
    if flow is not None:
        return await _run_flow(tracker, trunk, session, result, offer, flow, to_wall)
    ended = call.ended()
    playing = asyncio.ensure_future(session.play(prompt)) if prompt else None
    waits: set[asyncio.Future[Outcome] | asyncio.Future[None]] = {ended, cancel.future}
    if playing is not None:
        waits.add(playing)
    await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    by: str | None = tracker.cancelled_by if cancel.is_set() and not ended.done() else BY_PLATFORM
    if playing is not None and not playing.done():
        playing.cancel()
    if ended.done():
        by = None  # the callee hung up first: the outcome says so
    outcome = await hang_up(call)
    return finish_answered(track, outcome, by=by, to_wall=to_wall)


async def _run_flow(
    tracker: CallTracker,
    trunk: Trunk,
    session: MediaSession,
    answered: Answered,
    offer: bytes,
    flow: LegFlow,
    to_wall: WallClock,
) -> LegVerdict:
    """Run the target flow on the answered leg; the leg's verdict, its explanation saying
    how the flow ended."""
    verdict, result = await run_and_finish(
        flow, answered, session, media_sdp=offer, tracker=tracker, trunk=trunk, to_wall=to_wall
    )
    return dataclasses.replace(verdict, explanation=f"{verdict.explanation}; {how(result)}")


async def _fail(tracker: CallTracker, number: str, reason: str) -> None:
    verdict = platform_failure(reason)
    tracker.new_leg(1, number).fail(verdict)
    await tracker.complete(verdict.status, reason)
