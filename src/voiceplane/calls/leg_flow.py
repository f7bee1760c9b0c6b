"""A flow run on an outgoing leg that has answered: an outbound call whose ``target`` is
``flow:<id>``, or click-to-call's agent connected to a flow (``to=ivr:<id>``).

The engine reads the flow's live version before it dials (:func:`load`); once the leg
answers, :func:`run_on_leg` runs it over that leg and our media session
(:class:`~voiceplane.calls.flow_call.SipFlowCall`, whose ``answer()`` is then a no-op).
The party on the leg is the flow's "caller": webhooks get its number as ``caller`` and the
bridge as ``callee``, and a dial step rings agents with the bridge as caller ID. The
flow's keys and last recording go to the record (``keypress``, ``recording``); the status
stays that of the leg (ANSWER: the callee answered), see docs in the README.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
from sqlalchemy.orm import Session

from voiceplane.calls.flows.interpreter import CallInfo, FlowResult, run_flow
from voiceplane.calls.flows.model import Flow, FlowError, parse_flow
from voiceplane.media.backend import MediaSession
from voiceplane.sip.outcome import Party
from voiceplane.sip.ua import OutboundCall
from voiceplane.store.flows import live_flow
from voiceplane.store.writer import StoreWriter

from .dialing import Answered, finish_answered, hang_up
from .flag import Flag
from .flow_call import SipFlowCall
from .key_routes import KeyRoutes
from .outcome import LegVerdict
from .tracker import BY_PLATFORM, CallTracker, WallClock
from .trunk import Trunk


@dataclass(frozen=True, slots=True)
class FlowPlaces:
    """Where flows run by outgoing calls find and put files, and how long they may run."""

    media_dir: Path
    recordings_dir: Path
    tts_cache: Path
    max_flow_s: float = 4 * 3600


@dataclass(frozen=True, slots=True)
class LegFlow:
    """A flow ready to run on an answered leg."""

    flow: Flow
    flow_id: str
    version: int | None
    places: FlowPlaces
    http: httpx.AsyncClient
    keys: KeyRoutes | None = None  # where SIP INFO keys on the leg's dialog are routed


class FlowUnusable(Exception):
    """The target flow cannot run: gone, paused, unpublished or unreadable (says which)."""


async def load(
    writer: StoreWriter,
    *,
    account_id: int,
    flow_id: str,
    places: FlowPlaces,
    http: httpx.AsyncClient,
    keys: KeyRoutes | None = None,
) -> LegFlow:
    """The live version of the account's flow ``flow_id``; :class:`FlowUnusable` if none."""

    def read(session: Session) -> tuple[int | None, str | None, str | None] | None:
        live = live_flow(session, account_id=account_id, flow_id=flow_id)
        return None if live is None else (live.version, live.document, live.refusal)

    found = await writer.submit(read)
    if found is None:
        raise FlowUnusable(f"no flow {flow_id}")
    version, document, refusal = found
    if document is None:
        raise FlowUnusable(f"flow {flow_id}: {refusal}")
    try:
        flow = parse_flow(json.loads(document))
    except (FlowError, ValueError) as error:
        raise FlowUnusable(f"flow {flow_id}: the live version is unusable: {error}") from None
    return LegFlow(flow, flow_id, version, places, http, keys)


async def run_on_leg(
    leg_flow: LegFlow,
    call: OutboundCall,
    session: MediaSession,
    *,
    media_sdp: bytes,
    tracker: CallTracker,
    trunk: Trunk,
    party: str,
    first_leg: int,
    cancel: Flag,
    clock: Callable[[], datetime] | None = None,
) -> FlowResult:
    """Run the flow on the answered ``call`` until it ends. A cancel from the API, or the
    flow running past ``max_flow_s``, hangs the leg up: the flow then ends as if the party
    had hung up (``ended_by`` ``caller``); the caller of this tells them apart."""
    command = tracker.command
    info = CallInfo(
        call_id=command.call_id, caller=party, callee=command.bridge or "",
        flow_id=leg_flow.flow_id, flow_version=leg_flow.version,
    )  # fmt: skip
    flow_call = SipFlowCall(
        call, session, info, tracker=tracker, trunk=trunk, tts_cache=leg_flow.places.tts_cache,
        media_sdp=media_sdp, first_leg=first_leg,
    )  # fmt: skip
    places = leg_flow.places
    running = asyncio.ensure_future(
        run_flow(
            leg_flow.flow, flow_call, http=leg_flow.http, media_dir=places.media_dir,
            recordings_dir=places.recordings_dir, clock=clock or (lambda: datetime.now(UTC)),
        )  # fmt: skip
    )
    routing = (
        leg_flow.keys.route(call.call_id, session)
        if leg_flow.keys is not None
        else contextlib.nullcontext()
    )
    try:
        with routing:  # keys by SIP INFO reach the flow while it runs
            await asyncio.wait(
                (running, cancel.future), timeout=places.max_flow_s,
                return_when=asyncio.FIRST_COMPLETED,
            )  # fmt: skip
        if not running.done() and call.outcome is None:
            with contextlib.suppress(Exception):
                call.hangup()  # the flow sees its party gone and ends
        return await running
    finally:
        if not running.done():
            running.cancel()


async def run_and_finish(
    leg_flow: LegFlow,
    answered: Answered,
    session: MediaSession,
    *,
    media_sdp: bytes,
    tracker: CallTracker,
    trunk: Trunk,
    to_wall: WallClock,
) -> tuple[LegVerdict, FlowResult]:
    """Run the flow on the answered leg, end the leg, and store on ``tracker`` the flow's
    keys and recording; the leg's verdict and what the flow did."""
    call, track = answered.call, answered.track
    cancel = tracker.cancel_requested
    result = await run_on_leg(
        leg_flow, call, session, media_sdp=media_sdp, tracker=tracker, trunk=trunk,
        party=track.number, first_leg=2, cancel=cancel,
    )  # fmt: skip
    tracker.keypress = result.keypress or None
    tracker.recording = str(result.recording) if result.recording is not None else None
    by: str | None = BY_PLATFORM  # the flow ended the call (a hangup step, a time limit)
    if cancel.is_set():
        by = tracker.cancelled_by
    elif call.outcome is not None and call.outcome.ended_by is Party.REMOTE:
        by = None  # the party hung up: the outcome says so
    outcome = await hang_up(call)
    return finish_answered(track, outcome, by=by, to_wall=to_wall), result


def how(result: FlowResult) -> str:
    """How a flow run ended, for the call's reason."""
    text = f"flow ended by the {result.ended_by}"
    return f"{text}: {result.error}" if result.error is not None else text
