"""Incoming calls: route an INVITE to its number (DID), refuse it or run the number's flow.

The checks run in this order (docs/flows.md, "What an incoming call does"); each refusal
sends the operator a final response and stores a completed record (service ``incoming``,
``from`` the caller, ``to`` the DID, ``rule`` naming the check):

=====================  ============  =====================================================
check                  status        SIP sent to the operator
=====================  ============  =====================================================
not a number of ours   (no record)   404 Not Found: an unknown DID belongs to no account
caller on blocklist    BLOCKED       603 Decline, Reason Q.850 cause 21 (call rejected)
no free channel        MAX-USE       486 Busy Here, cause 17: the caller hears busy, and
                                     the operator does not hunt for another route as it
                                     may on 503
outside office hours   OFF-HOUR      with an ``off_hour_prompt``: 200, the prompt, BYE;
                                     without: 480 Temporarily Unavailable, cause 19
missed-call number     MISWIG        180, ring ``missed_call`` seconds, then 480 cause 19
                                     (nobody answers a missed call, by design)
no runnable flow       FAILED        480 Temporarily Unavailable; ``reason`` says why
                                     (``no flow``, ``flow paused``, ``flow not
                                     published``): the platform could not serve the call
else: the flow         IVR-ANSWER    once the flow answered; IVR if the caller left first
=====================  ============  =====================================================

The record's leg 1 is the caller's own leg (its number, the code we answered with, who hung
up); agents rung by dial steps are legs 2, 3, ... with their own status. An incoming call
holds a channel of its DID and account (``ChannelCounter``) from the capacity check until
it ends. It is reported like any call: to the number's callback URL when it has one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import httpx
from sqlalchemy.orm import Session

from voiceplane.calls.flows.interpreter import CallInfo, FlowResult, run_flow
from voiceplane.calls.flows.model import FlowError, NumberHours, parse_flow
from voiceplane.media.audio import load_wav
from voiceplane.media.backend import MediaBackend, MediaError, MediaSession
from voiceplane.media.tts import DEFAULT_VOICE, speak
from voiceplane.policy.blocklist import is_blocked
from voiceplane.policy.capacity import ChannelCounter, Need, need_for_number
from voiceplane.policy.hours import check
from voiceplane.sip.legs import LegState
from voiceplane.sip.outcome import Party
from voiceplane.sip.ua import InboundCall
from voiceplane.store.flows import route_for
from voiceplane.store.queue import CallCommand
from voiceplane.store.repository import insert_call
from voiceplane.store.writer import StoreWriter

from .flow_call import SipFlowCall
from .key_routes import KeyRoutes
from .outcome import leg_status
from .reporting import Handover
from .status import Status
from .tracker import BY_PLATFORM, CallTracker, LegTrack, utcnow
from .trunk import Trunk

log = logging.getLogger(__name__)

SERVICE: Final = "incoming"
BY_CALLER: Final = "caller"  # leg 1's hangup_by when the caller ended it

# The rules a refused record names.
RULE_BLOCKLIST: Final = "blocklist"
RULE_HOURS: Final = "hours"
RULE_MISSED_CALL: Final = "missed_call"
RULE_FLOW: Final = "flow"

# (code, reason phrase, Q.850 cause) of each refusal; see the module docstring.
BLOCKED_REPLY: Final = (603, "Decline", 21)
MAX_USE_REPLY: Final = (486, "Busy Here", 17)
OFF_HOUR_REPLY: Final = (480, "Temporarily Unavailable", 19)
MISSED_CALL_REPLY: Final = (480, "Temporarily Unavailable", 19)
NO_FLOW_REPLY: Final = (480, "Temporarily Unavailable", 19)
FAILED_REPLY: Final = (500, "Server Internal Error", 41)
MEDIA_FAILED_REPLY: Final = (503, "Service Unavailable", 34)
END_WAIT_S: Final = 10.0  # how long to wait for the caller's leg to end after we ended it
STOP_WAIT_S: Final = 5.0  # how long a stop waits for the calls it ended to be stored


@dataclass(frozen=True, slots=True)
class IncomingSettings:
    media_dir: Path  # play steps' files
    recordings_dir: Path  # record steps' WAV files, a folder per call id
    tts_cache: Path  # spoken prompts
    max_flow_s: float = 4 * 3600  # a flow is ended after this long, whatever it does


@dataclass(frozen=True, slots=True)
class Routed:
    """What the store said about an incoming call, read and recorded in one transaction."""

    call_id: str
    account_id: int
    blocked: bool
    need: Need | None
    hours: str | None
    missed_call: int | None
    flow_id: str | None
    flow_version: int | None
    document: str | None
    refusal: str | None
    callback_url: str | None
    created_at: datetime


def _route(session: Session, *, caller: str, callee: str) -> Routed | None:
    """Look the DID up and store the new call (state ``ringing``); None for an unknown DID."""
    route = route_for(session, e164=callee)
    if route is None:
        return None
    number = route.number
    account_id = number.account_id
    callback = number.callback_url
    now = utcnow()
    call_id = insert_call(
        session, account_id=account_id, service=SERVICE, now=now, from_number=caller,
        to_number=callee, state="ringing", callback_url=callback,
    )  # fmt: skip
    blocked = is_blocked(session, account_id, caller)
    need = None if blocked else need_for_number(session, call_id=call_id, e164=callee)
    return Routed(
        call_id=call_id, account_id=account_id, blocked=blocked, need=need,
        hours=route.hours, missed_call=route.missed_call, flow_id=route.flow_id,
        flow_version=route.flow_version, document=route.document, refusal=route.refusal,
        callback_url=callback, created_at=now,
    )  # fmt: skip


class IncomingCalls:
    """Handles the INVITEs the SIP service receives (see the module docstring)."""

    def __init__(
        self,
        *,
        writer: StoreWriter,
        media: MediaBackend,
        channels: ChannelCounter,
        trunk: Callable[[], Trunk],
        settings: IncomingSettings,
        http: httpx.AsyncClient | None = None,
        clock: Callable[[], datetime] | None = None,
        on_reported: Callable[[], None] | None = None,
        keys: KeyRoutes | None = None,
    ) -> None:
        self._writer = writer
        self._media = media
        self._channels = channels
        self._trunk = trunk
        self.settings = settings
        self._http = http
        self.clock = clock or (lambda: datetime.now(UTC))  # office hours are judged by it
        self.on_reported = on_reported
        self.active: dict[str, CallTracker] = {}
        self._calls: dict[str, InboundCall] = {}  # by our call id, while handled
        self._tasks: set[asyncio.Task[object]] = set()
        self._stopping = False
        # SIP INFO keys of calls in a flow; shared with the engine's outgoing flow legs.
        self.keys = keys if keys is not None else KeyRoutes()
        # Set by serve: new callbacks go straight to this process's dispatcher.
        self.handover: Handover | None = None

    async def start(self) -> None:
        # The flows' HTTP client now, not at the first call: making one (httpcore, an SSL
        # context) holds the event loop for about 50 ms, which every prompt playing would hear.
        self._client()

    async def stop(self) -> None:
        """End the calls still up (BYE, or 503 to one not yet answered) and wait a little
        for their records to be stored, so a stop leaves none to recover."""
        self._stopping = True
        for call in list(self._calls.values()):
            with contextlib.suppress(Exception):
                if call.outcome is not None:
                    continue
                if call.state in (LegState.RECEIVED, LegState.RINGING):
                    call.reject(503, "Service Unavailable", extra=_reason(41))
                else:
                    call.hangup()
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=STOP_WAIT_S)
        await self.close()

    def key_pressed(self, sip_call_id: str, key: str) -> bool:
        """A key sent by SIP INFO: it joins the RFC 4733 ones of the media session of the
        flow on that dialog (incoming, or an outgoing leg's). False if no flow runs there."""
        return self.keys.press(sip_call_id, key)

    async def close(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    async def handle(self, call: InboundCall, *, caller: str, callee: str | None) -> None:
        """Carry out the incoming ``call`` from ``caller`` to the DID ``callee``."""
        if self._stopping:
            _reject_if_open(call, 503, "Service Unavailable")  # the operator may try elsewhere
            return
        if callee is None:
            _reject_if_open(call, 404, "Not Found")
            return
        routed = await self._writer.submit(
            lambda session: _route(session, caller=caller, callee=callee)
        )
        if routed is None:
            _reject_if_open(call, 404, "Not Found")  # the caller may have gone meanwhile
            return
        tracker = self._tracker(routed, caller, callee)
        track = tracker.new_leg(1, caller)
        track.sip_call_id = call.call_id
        self.active[routed.call_id] = tracker
        self._calls[routed.call_id] = call
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            await self._carry_out(call, routed, tracker, track)
        except Exception as error:
            log.exception("incoming call %s failed inside the platform", routed.call_id)
            with contextlib.suppress(Exception):
                if call.outcome is None:
                    if call.state in (LegState.RECEIVED, LegState.RINGING):
                        code, reason, cause = FAILED_REPLY
                        call.reject(code, reason, extra=_reason(cause))
                    else:
                        call.hangup()
                await self._finish_leg(call, track)
                await tracker.complete(Status.FAILED, f"internal error: {type(error).__name__}")
        finally:
            self._channels.release(routed.call_id)
            self.active.pop(routed.call_id, None)
            self._calls.pop(routed.call_id, None)
            if task is not None:
                self._tasks.discard(task)

    def _tracker(self, routed: Routed, caller: str, callee: str) -> CallTracker:
        command = CallCommand(
            call_id=routed.call_id, account_id=routed.account_id, service=SERVICE,
            from_numbers=(caller,), to_numbers=(callee,), bridge=None, target=None,
            ring_timeout=None, retry=0, retry_interval=0, attempts=1,
            created_at=routed.created_at, start_time=routed.created_at, cancel_requested=False,
            legs=(), reported=routed.callback_url is not None,
        )  # fmt: skip
        tracker = CallTracker(command, self._writer)
        tracker.state = "ringing"
        tracker.on_reported = self.on_reported
        tracker.handover = self.handover
        return tracker

    async def _carry_out(
        self, call: InboundCall, routed: Routed, tracker: CallTracker, track: LegTrack
    ) -> None:
        if routed.blocked:
            reason = "the caller is on the account's blocklist"
            await self._refuse(call, tracker, track, BLOCKED_REPLY, Status.BLOCKED, reason,
                               RULE_BLOCKLIST)  # fmt: skip
            return
        rule = self._channels.acquire(routed.need) if routed.need is not None else None
        if rule is not None:
            await self._refuse(call, tracker, track, MAX_USE_REPLY, Status.MAX_USE,
                               "no free channel", rule)  # fmt: skip
            return
        if routed.hours is not None and await self._off_hours(call, routed, tracker, track):
            return
        if routed.missed_call is not None:
            call.ring()
            ended = call.ended()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(ended), routed.missed_call)
            reason = f"missed call: rang {routed.missed_call} s"
            if ended.done():
                reason = "missed call: the caller hung up while it rang"
            await self._refuse(call, tracker, track, MISSED_CALL_REPLY, Status.MISWIG,
                               reason, RULE_MISSED_CALL)  # fmt: skip
            return
        if routed.document is None:
            await self._refuse(call, tracker, track, NO_FLOW_REPLY, Status.FAILED,
                               routed.refusal or "no flow", RULE_FLOW)  # fmt: skip
            return
        await self._run_flow(call, routed, tracker, track)

    async def _refuse(
        self,
        call: InboundCall,
        tracker: CallTracker,
        track: LegTrack,
        reply: tuple[int, str, int],
        status: Status,
        reason: str,
        rule: str,
    ) -> None:
        code, phrase, cause = reply
        if call.outcome is None:
            call.reject(code, phrase, extra=_reason(cause))
        await self._finish_leg(call, track)
        await tracker.complete(status, reason, rule=rule)

    async def _off_hours(
        self, call: InboundCall, routed: Routed, tracker: CallTracker, track: LegTrack
    ) -> bool:
        """Refuse the call if the number is closed now (True); False if it is open."""
        assert routed.hours is not None
        try:
            hours = NumberHours.model_validate(json.loads(routed.hours))
        except ValueError:
            log.warning("number %s has unreadable hours; ignoring them", routed.call_id)
            return False
        verdict = check(hours, self.clock())
        if verdict.open:
            return False
        prompt = hours.off_hour_prompt
        if prompt is None:
            await self._refuse(call, tracker, track, OFF_HOUR_REPLY, Status.OFF_HOUR,
                               verdict.reason, RULE_HOURS)  # fmt: skip
            return True
        session = await self._media.open_session()
        try:
            call.answer(session.answer(call.remote_sdp))
            if await call.answered():
                tracker.set_state("answered")
                pcm = (
                    await load_wav(self.settings.media_dir / prompt.play)
                    if prompt.play is not None
                    else await speak(prompt.say or "", self.settings.tts_cache,
                                     voice=prompt.voice or DEFAULT_VOICE)  # fmt: skip
                )
                await _until_ended(call, session.play(pcm))
                if call.outcome is None:
                    call.hangup()
        finally:
            await session.close()
        await self._finish_leg(call, track)
        await tracker.complete(Status.OFF_HOUR, verdict.reason, rule=RULE_HOURS)
        return True

    async def _run_flow(
        self, call: InboundCall, routed: Routed, tracker: CallTracker, track: LegTrack
    ) -> None:
        assert routed.document is not None
        try:
            flow = parse_flow(json.loads(routed.document))
        except (FlowError, ValueError) as error:
            await self._refuse(call, tracker, track, FAILED_REPLY, Status.FAILED,
                               f"the live flow is unusable: {error}", RULE_FLOW)  # fmt: skip
            return
        hours = None
        if routed.hours is not None:
            with contextlib.suppress(ValueError):
                hours = NumberHours.model_validate(json.loads(routed.hours))
        try:
            session: MediaSession = await self._media.open_session()
        except MediaError as error:
            await self._refuse(call, tracker, track, MEDIA_FAILED_REPLY, Status.FAILED,
                               f"media setup failed: {error}", RULE_FLOW)  # fmt: skip
            return
        call.ring()
        info = CallInfo(
            call_id=routed.call_id, caller=track.number, callee=tracker.command.to_numbers[0],
            flow_id=routed.flow_id, flow_version=routed.flow_version,
        )  # fmt: skip
        flow_call = SipFlowCall(
            call, session, info, tracker=tracker, trunk=self._trunk(),
            tts_cache=self.settings.tts_cache,
        )  # fmt: skip
        try:
            with self.keys.route(call.call_id, session):
                result = await asyncio.wait_for(
                    run_flow(
                        flow, flow_call, http=self._client(), media_dir=self.settings.media_dir,
                        recordings_dir=self.settings.recordings_dir, clock=self.clock,
                        number_hours=hours,
                    ),  # fmt: skip
                    self.settings.max_flow_s,
                )
        finally:
            if call.outcome is None:
                with contextlib.suppress(Exception):
                    if flow_call.answered:
                        call.hangup()
                    else:
                        call.reject(*NO_FLOW_REPLY[:2])
            await session.close()
        await self._finish_leg(call, track)
        await self._complete_flow(tracker, result)

    async def _complete_flow(self, tracker: CallTracker, result: FlowResult) -> None:
        tracker.keypress = result.keypress or None
        recording = result.recording
        tracker.recording = str(recording) if recording is not None else None
        reason = f"flow ended by the {result.ended_by}"
        if self._stopping and result.ended_by == "caller":
            reason = "flow ended: the platform stopped"  # we hung up, not the caller
        if result.error is not None:
            reason += f": {result.error}"
        await tracker.complete(result.status, reason)

    def _client(self) -> httpx.AsyncClient:
        if self._http is None:
            self._http = httpx.AsyncClient()
        return self._http

    async def _finish_leg(self, call: InboundCall, track: LegTrack) -> None:
        """Leg 1 from the caller's leg outcome, once it has ended."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(call.ended()), END_WAIT_S)
        outcome = call.outcome
        if outcome is None:
            track.hangup_by = BY_PLATFORM
            track.end_time = utcnow()
            return
        verdict = leg_status(outcome)
        by = BY_CALLER if outcome.ended_by is Party.REMOTE else BY_PLATFORM
        track.finish(outcome, verdict, to_wall=self._trunk().wall_clock(), hangup_by=by)


async def _until_ended(call: InboundCall, work: Coroutine[Any, Any, None]) -> None:
    """Await ``work`` unless the caller hangs up first."""
    task = asyncio.ensure_future(work)
    await asyncio.wait((task, call.ended()), return_when=asyncio.FIRST_COMPLETED)
    if not task.done():
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task


def _reject_if_open(call: InboundCall, code: int, reason: str) -> None:
    if call.outcome is None and call.state in (LegState.RECEIVED, LegState.RINGING):
        call.reject(code, reason)


def _reason(cause: int) -> tuple[tuple[str, str], ...]:
    return (("reason", f"Q.850;cause={cause}"),)
