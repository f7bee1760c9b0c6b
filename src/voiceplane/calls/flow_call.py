"""A flow's :class:`~voiceplane.calls.flows.interpreter.FlowCall` over SIP and a media session.

The incoming call's leg (:class:`~voiceplane.sip.ua.InboundCall`) is answered with the SDP
of our media session; prompts, digits and recordings go through that session. A dial step
rings agents through the trunk (:func:`voiceplane.calls.dialing.ring`, the DID as caller
ID) and connects the one who answers by third-party call control (RFC 3725), as
click-to-call does: the agents are offered the caller's SDP, and once one answers the
caller is re-INVITEd with the agent's SDP, so the two send RTP to each other. When the
agent hangs up the caller is re-INVITEd back to our media session and the flow goes on.

The same class drives an outgoing leg that has already answered (an outbound call whose
``target`` is a flow, click-to-call's agent connected to a flow): ``answer()`` is then a
no-op, the media session's SDP is the offer the leg answered, and "the caller" is whoever
is on that leg.

Every method races the caller's hangup: if the caller's leg ends, the method stops what it
was doing and raises :class:`CallerHungUp`.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import struct
from collections.abc import Awaitable, Sequence
from pathlib import Path
from typing import Final, TypeVar

from voiceplane.calls.flows.interpreter import (
    CallerHungUp,
    CallInfo,
    DialLeg,
    DialOutcome,
)
from voiceplane.media.backend import MediaSession
from voiceplane.media.embedded import EmbeddedSession
from voiceplane.media.tts import DEFAULT_VOICE, speak
from voiceplane.sip.errors import SipParseError
from voiceplane.sip.outcome import Outcome
from voiceplane.sip.sdp import under_origin
from voiceplane.sip.ua import InboundCall, OutboundCall

from .dialing import Answered, finish_answered, hang_up, ring
from .flag import Flag
from .status import Status
from .tracker import BY_OTHER_LEG, BY_PLATFORM, CallTracker
from .trunk import Trunk

T = TypeVar("T")

BEEP_HZ: Final = 1000
BEEP_S: Final = 0.25
SAMPLE_RATE: Final = 8000


def beep_tone() -> bytes:
    """A short 1 kHz tone (8 kHz s16le) played before a recording."""
    count = int(SAMPLE_RATE * BEEP_S)
    samples = (int(8000 * math.sin(2 * math.pi * BEEP_HZ * i / SAMPLE_RATE)) for i in range(count))
    return struct.pack(f"<{count}h", *samples)


class SipFlowCall:
    """One call as a flow drives it (see the module docstring): an incoming call, or an
    outgoing leg that has answered (then ``media_sdp`` is the offer it answered)."""

    def __init__(
        self,
        call: InboundCall | OutboundCall,
        session: MediaSession,
        info: CallInfo,
        *,
        tracker: CallTracker,
        trunk: Trunk,
        tts_cache: Path,
        media_sdp: bytes = b"",
        first_leg: int = 2,
    ) -> None:
        self._call = call
        self._session = session
        self._info = info
        self._tracker = tracker
        self._trunk = trunk
        self._tts_cache = tts_cache
        self._gone = call.ended()
        # An outgoing leg reaches the flow answered already.
        self.answered = isinstance(call, OutboundCall)
        self._next_leg = first_leg  # the legs before are the caller's own (and the agent's)
        self._media_sdp = media_sdp  # our media session's SDP, as the caller's leg has it

    @property
    def info(self) -> CallInfo:
        return self._info

    async def _guard(self, work: Awaitable[T]) -> T:
        """Run ``work`` unless the caller hangs up first (then raise CallerHungUp)."""
        if self._gone.done():
            if asyncio.iscoroutine(work):
                work.close()
            raise CallerHungUp
        task = asyncio.ensure_future(work)
        try:
            await asyncio.wait((task, self._gone), return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            task.cancel()
            raise
        if task.done():
            return task.result()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
        raise CallerHungUp

    async def answer(self) -> None:
        if self._gone.done():
            raise CallerHungUp
        if not isinstance(self._call, InboundCall):
            return  # an outgoing leg: answered before the flow started
        sdp = self._session.answer(self._call.remote_sdp)
        self._media_sdp = sdp
        self._call.answer(sdp)
        if not await self._guard(self._call.answered()):
            raise CallerHungUp
        self.answered = True
        self._tracker.set_state("answered")

    async def play(self, path: Path) -> None:
        await self._guard(self._session.play_file(path))

    async def say(self, text: str, *, voice: str | None) -> None:
        pcm = await self._guard(speak(text, self._tts_cache, voice=voice or DEFAULT_VOICE))
        await self._guard(self._session.play(pcm))

    async def gather(self, *, max_digits: int, timeout: float, finish_key: str | None) -> str:
        digits = self._session.dtmf()
        keys = ""
        while len(keys) < max_digits:
            try:
                key = await self._guard(asyncio.wait_for(digits.get(), timeout))
            except TimeoutError:
                break
            if finish_key is not None and key == finish_key:
                break
            keys += key
        return keys

    async def record(
        self,
        path: Path,
        *,
        max_length: float,
        finish_key: str | None,
        silence: float | None,
        beep: bool,
    ) -> float:
        if beep:
            await self.play_pcm(beep_tone())
        stop_on = finish_key or ""
        if silence is not None and isinstance(self._session, EmbeddedSession):
            # Only the embedded backend hears silence; elsewhere max_length ends it.
            recording = self._session.record(path, max_length, stop_on, silence_s=silence)
        else:
            recording = self._session.record(path, max_length, stop_on)
        task = asyncio.ensure_future(recording)
        try:
            result = await self._guard(asyncio.shield(task))
        except CallerHungUp:
            # The session closes with the call; let the recorder finish its file.
            await self._session.close()
            with contextlib.suppress(Exception):
                await task
            raise
        return result.duration

    async def play_pcm(self, pcm: bytes) -> None:
        await self._guard(self._session.play(pcm))

    async def hangup(self) -> None:
        if self._gone.done():
            raise CallerHungUp
        if self.answered or not isinstance(self._call, InboundCall):
            self._call.hangup()
        else:
            self._call.reject(480, "Temporarily Unavailable")
        await self._call.ended()

    # --- dial ----------------------------------------------------------------------------

    async def dial(self, numbers: Sequence[str], *, ring_timeout: float) -> DialOutcome:
        leg = self._next_leg
        self._next_leg += 1
        first = len(self._tracker.legs)
        stop = Flag()
        self._gone.add_done_callback(lambda _: stop.set())
        result = await ring(
            self._tracker, self._trunk, leg=leg, numbers=tuple(numbers),
            caller_id=self._info.callee, sdp=self._call.remote_sdp, ring_timeout=ring_timeout,
            stop=stop, stopped_by=lambda: BY_OTHER_LEG,
        )  # fmt: skip
        talk = 0.0
        if isinstance(result, Answered):
            talk = await self._bridge(result)
        legs = tuple(
            DialLeg(
                number=track.number,
                status=Status(track.status) if track.status else Status.FAILED,
                sip_code=track.sip_code,
                talk_seconds=talk if track.status == Status.ANSWER.value else 0.0,
            )
            for track in self._tracker.legs[first:]
        )
        self._tracker.save()
        return DialOutcome(legs, caller_hung_up=self._gone.done())

    async def _bridge(self, answered: Answered) -> float:
        """Connect the caller to the agent until either hangs up; the seconds connected."""
        agent, track = answered.call, answered.track
        to_wall = self._trunk.wall_clock()
        loop = asyncio.get_running_loop()
        started = loop.time()
        connected = await self._reoffer(agent.remote_sdp)
        if connected:
            agent_gone = agent.ended()
            await asyncio.wait((agent_gone, self._gone), return_when=asyncio.FIRST_COMPLETED)
        caller_left = self._gone.done()
        by: str | None = BY_OTHER_LEG if caller_left else (None if connected else BY_PLATFORM)
        outcome: Outcome = await hang_up(agent)
        finish_answered(track, outcome, by=by, to_wall=to_wall)
        seconds = loop.time() - started
        if not caller_left and connected:
            # Back to our media session: the flow goes on after the agent hung up.
            await self._reoffer(self._media_sdp)
        return seconds

    async def _reoffer(self, sdp: bytes) -> bool:
        """Re-INVITE the caller with ``sdp`` (under our origin); True if it took it."""
        if self._gone.done():
            return False
        try:
            offer = under_origin(sdp, self._call.leg.local_sdp)
        except SipParseError:
            return False
        try:
            status, _answer = await self._guard(self._call.reinvite(offer))
        except CallerHungUp:
            return False
        return 200 <= status < 300

