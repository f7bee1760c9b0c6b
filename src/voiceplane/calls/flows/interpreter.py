"""Runs a flow (:mod:`.model`) for one call, against an abstract :class:`FlowCall`.

The interpreter decides *what* happens: which step runs next, how often a menu is retried,
which numbers a dial step rings in which order, what a webhook is sent and what its answer
means. The :class:`FlowCall` does it: answering, playing, listening for keys, ringing agents
and bridging, recording, hanging up. Incoming calls implement it over SIP and a media
session; the tests implement it with a script. Everything else the run needs is passed in:
the HTTP client for webhooks, the clock for hours steps, the folders for audio files and
recordings. There are no globals and no I/O here besides the webhook request.

How a run ends (:attr:`FlowResult.ended_by`):

- ``flow``: a hangup step, or a step with no transition to follow; the interpreter calls
  :meth:`FlowCall.hangup` (before the call was answered that means refusing it);
- ``caller``: a :class:`FlowCall` method raised :class:`CallerHungUp`;
- ``loop``: more than the flow's ``max_steps`` steps ran (a flow that loops for ever);
  the interpreter hangs up;
- ``error``: a :class:`FlowCall` method failed otherwise (``error`` says how); the
  interpreter still tries to hang up.

The caller of :func:`run_flow` turns the result into the call record: the status
(:attr:`FlowResult.status`: IVR-ANSWER once the flow answered, IVR before), the keys
(:attr:`FlowResult.keypress`), the dialled legs and the recordings.
"""

from __future__ import annotations

import json
import logging
import re
import wave
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Final, Literal, Protocol

import httpx

from voiceplane.calls.flows.model import (
    AnswerStep,
    DialStep,
    Flow,
    GatherStep,
    HangupStep,
    HoursStep,
    MenuStep,
    PlayStep,
    Prompt,
    RecordStep,
    SayStep,
    Step,
    WebhookStep,
)
from voiceplane.calls.status import Status
from voiceplane.policy.hours import OfficeHours, check

log = logging.getLogger(__name__)

EndedBy = Literal["flow", "caller", "loop", "error"]
KEYPRESS_SEPARATOR: Final = ","
MAX_WEBHOOK_REPLY: Final = 64 * 1024  # bytes read of a webhook's answer
_LEGACY_REPLY: Final = re.compile(r"(\d{3})(?:\|(.*))?", re.DOTALL)


class CallerHungUp(Exception):
    """Raised by any :class:`FlowCall` method once the caller has hung up: whatever the
    method was doing stops, and the flow ends."""


@dataclass(frozen=True)
class CallInfo:
    """The call a flow runs for, as webhooks and recordings name it."""

    call_id: str
    caller: str  # the number that called (From), E.164 when known
    callee: str  # the number called (the DID)
    custom: str | None = None
    flow_id: str | None = None
    flow_version: int | None = None


@dataclass(frozen=True)
class DialLeg:
    """One agent number rung by a dial step, and how it ended (its own leg status)."""

    number: str
    status: Status  # ANSWER, BUSY, NOANSWER, CHANUNAVAIL, CONGESTION, CANCEL or FAILED
    sip_code: int | None = None
    talk_seconds: float = 0.0  # how long it was bridged to the caller

    @property
    def answered(self) -> bool:
        return self.status is Status.ANSWER


@dataclass(frozen=True)
class DialOutcome:
    """What :meth:`FlowCall.dial` reports: every leg it rang, in the order they were rung."""

    legs: tuple[DialLeg, ...]
    # The caller hung up while the agents rang or while bridged: the flow ends after this.
    caller_hung_up: bool = False

    @property
    def answered(self) -> bool:
        return any(leg.answered for leg in self.legs)


@dataclass(frozen=True)
class FlowRecording:
    """A recording made by a record step: the WAV file and how long it is."""

    step: str
    path: Path
    duration: float  # seconds


class FlowCall(Protocol):
    """One call as a flow drives it. Every method may raise :class:`CallerHungUp`.

    An implementation over SIP and media (incoming calls) would map them so:

    - ``answer``: send the 2xx with the media session's SDP answer; idempotent is not needed,
      the interpreter answers once;
    - ``play`` / ``say``: load the WAV (``media.audio.load_wav``) or synthesise the text
      (``media.tts``), then ``MediaSession.play``; keys pressed meanwhile must be kept (not
      dropped) for the next ``gather``, so callers can type ahead of a prompt;
    - ``gather``: read ``MediaSession.dtmf()``;
    - ``dial``: place an outgoing leg per number at once, bridge the first to answer,
      cancel the others; return once the bridge ends or no leg answered;
    - ``record``: ``MediaSession.record``;
    - ``hangup``: BYE if answered, else a final response refusing the INVITE (480).
    """

    @property
    def info(self) -> CallInfo:
        """Who called whom: sent to webhooks and used to name recordings."""
        ...

    async def answer(self) -> None:
        """Answer the call. Called once, before the first step that needs media."""
        ...

    async def play(self, path: Path) -> None:
        """Play the audio file ``path`` (a WAV, absolute) to the caller; return once played."""
        ...

    async def say(self, text: str, *, voice: str | None) -> None:
        """Speak ``text`` (espeak-ng, ``voice`` or the default one); return once spoken."""
        ...

    async def gather(self, *, max_digits: int, timeout: float, finish_key: str | None) -> str:
        """The keys the caller presses, including those typed ahead since the last gather.

        Stops at ``max_digits`` keys, at ``finish_key`` (not included in the result), or
        when ``timeout`` seconds pass with no key (for the first key, then between keys).
        Returns ``""`` if no key came.
        """
        ...

    async def dial(self, numbers: Sequence[str], *, ring_timeout: float) -> DialOutcome:
        """Ring every one of ``numbers`` at once for up to ``ring_timeout`` seconds; bridge
        the caller to the first that answers (the others are cancelled: CANCEL) and return
        when that conversation ends. If the agent hangs up, the flow goes on; if the caller
        does, set ``caller_hung_up`` (rather than raising, so the legs are kept). The
        interpreter calls this once per number for ``sequential`` dial steps."""
        ...

    async def record(
        self,
        path: Path,
        *,
        max_length: float,
        finish_key: str | None,
        silence: float | None,
        beep: bool,
    ) -> float:
        """Record the caller to the WAV file ``path`` (its folder exists) after a beep if
        ``beep``; stop at ``finish_key``, after ``max_length`` seconds, or after ``silence``
        seconds of silence (None: do not stop on silence). Returns the seconds recorded.
        If the caller hangs up while recording, keep the file and raise
        :class:`CallerHungUp`."""
        ...

    async def hangup(self) -> None:
        """End the call (refuse it, if it was never answered)."""
        ...


@dataclass(frozen=True)
class FlowResult:
    """What a flow did with a call: everything its record and callbacks need."""

    answered: bool
    ended_by: EndedBy
    steps: tuple[str, ...]  # every step run, in order (a step run twice appears twice)
    keys: tuple[str, ...]  # each input the caller typed (gather, menu), in order
    digits: Mapping[str, str]  # the last input of each gather/menu step, by step name
    legs: tuple[DialLeg, ...]  # every agent leg rung, in order
    recordings: tuple[FlowRecording, ...]
    error: str | None = None

    @property
    def status(self) -> Status:
        """IVR-ANSWER once the flow answered, IVR if the caller left before it did."""
        return Status.IVR_ANSWER if self.answered else Status.IVR

    @property
    def keypress(self) -> str:
        """The inputs joined by ``,`` (``"1,2"``: 1 in one menu, then 2): the record's and
        the callbacks' ``keypress``."""
        return KEYPRESS_SEPARATOR.join(self.keys)

    @property
    def recording(self) -> Path | None:
        """The last recording's file (the voicemail), if any."""
        return self.recordings[-1].path if self.recordings else None


class _LoopGuard(Exception):
    """More steps ran than the flow's ``max_steps``."""


@dataclass
class _Run:
    """The state of one run."""

    flow: Flow
    call: FlowCall
    http: httpx.AsyncClient
    media_dir: Path
    recordings_dir: Path
    clock: Callable[[], datetime]
    number_hours: OfficeHours | None
    answered: bool = False
    steps: list[str] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)
    digits: dict[str, str] = field(default_factory=dict)
    legs: list[DialLeg] = field(default_factory=list)
    recordings: list[FlowRecording] = field(default_factory=list)

    def result(self, ended_by: EndedBy, error: str | None = None) -> FlowResult:
        return FlowResult(
            answered=self.answered,
            ended_by=ended_by,
            steps=tuple(self.steps),
            keys=tuple(self.keys),
            digits=dict(self.digits),
            legs=tuple(self.legs),
            recordings=tuple(self.recordings),
            error=error,
        )

    # --- the loop ------------------------------------------------------------------------

    async def run(self) -> FlowResult:
        try:
            name: str | None = self.flow.start_step
            while name is not None:
                if len(self.steps) >= self.flow.max_steps:
                    raise _LoopGuard
                self.steps.append(name)
                name = await self._step(name, self.flow.step(name))
        except CallerHungUp:
            return self.result("caller")
        except _LoopGuard:
            log.warning("flow %r: more than %d steps; hanging up", self.flow.name, len(self.steps))
            return await self._hang_up("loop", None)
        except Exception as exc:  # a FlowCall failure must still end in a result and a hangup
            log.exception("flow %r failed in step %r", self.flow.name, self.steps[-1:])
            return await self._hang_up("error", f"{type(exc).__name__}: {exc}")
        return await self._hang_up("flow", None)

    async def _hang_up(self, ended_by: EndedBy, error: str | None) -> FlowResult:
        try:
            await self.call.hangup()
        except CallerHungUp:
            return self.result("caller" if ended_by == "flow" else ended_by, error)
        except Exception as exc:
            log.warning("hanging up after the flow failed: %s", exc)
        return self.result(ended_by, error)

    async def _step(self, name: str, step: Step) -> str | None:
        """Run one step; the name of the next one, or None to end the call."""
        match step:
            case AnswerStep():
                await self._answer()
                return step.next
            case PlayStep() | SayStep():
                await self._answer()
                for _path, prompt in step.prompts():
                    await self._prompt(prompt)
                return step.next
            case GatherStep():
                return await self._gather(name, step)
            case MenuStep():
                return await self._menu(name, step)
            case DialStep():
                await self._answer()
                answered = await self._dial(step.numbers, step.mode, step.ring_timeout)
                return step.answered if answered else step.not_answered
            case RecordStep():
                return await self._record(name, step)
            case WebhookStep():
                return await self._webhook(name, step)
            case HoursStep():
                return self._hours(step)
            case HangupStep():
                return None
        raise AssertionError(f"unknown step {step!r}")  # pragma: no cover - the union is closed

    # --- steps ---------------------------------------------------------------------------

    async def _answer(self) -> None:
        if not self.answered:
            await self.call.answer()
            self.answered = True

    async def _prompt(self, prompt: Prompt | None) -> None:
        if prompt is None:
            return
        if prompt.play is not None:
            await self.call.play(self.media_dir / prompt.play)
        elif prompt.say is not None:
            await self.call.say(prompt.say, voice=prompt.voice)

    async def _input(self, step: GatherStep | MenuStep, attempt: int) -> str:
        """Prompt (the retry prompt first on a retry) and read one input."""
        if attempt > 0:
            await self._prompt(step.retry_prompt)
        await self._prompt(step.prompt)
        keys = await self.call.gather(
            max_digits=step.max_digits, timeout=step.timeout, finish_key=step.finish_key
        )
        if keys:
            self.keys.append(keys)
        return keys

    async def _gather(self, name: str, step: GatherStep) -> str | None:
        await self._answer()
        keys = ""
        for attempt in range(step.retries + 1):
            keys = await self._input(step, attempt)
            if len(keys) >= step.min_digits:
                self.digits[name] = keys
                return step.next
        self.digits[name] = keys
        return step.no_input if step.no_input is not None else step.next

    async def _menu(self, name: str, step: MenuStep) -> str | None:
        await self._answer()
        keys = ""
        for attempt in range(step.retries + 1):
            keys = await self._input(step, attempt)
            self.digits[name] = keys
            if keys in step.branches:
                return step.branches[keys]
        if not keys and step.no_input is not None:
            return step.no_input
        return step.invalid

    async def _dial(self, numbers: Sequence[str], mode: str, ring_timeout: float) -> bool:
        """Ring ``numbers`` (all at once, or in turn until one answers); True if one did."""
        groups = [list(numbers)] if mode == "parallel" else [[number] for number in numbers]
        for group in groups:
            outcome = await self.call.dial(group, ring_timeout=ring_timeout)
            self.legs.extend(outcome.legs)
            if outcome.caller_hung_up:
                raise CallerHungUp
            if outcome.answered:
                return True
        return False

    async def _record(self, name: str, step: RecordStep) -> str | None:
        await self._answer()
        await self._prompt(step.prompt)
        path = self._recording_path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            seconds = await self.call.record(
                path,
                max_length=step.max_length,
                finish_key=step.finish_key,
                silence=step.silence,
                beep=step.beep,
            )
        except CallerHungUp:
            # A voicemail usually ends with the caller hanging up: it still counts.
            if path.exists():
                self.recordings.append(FlowRecording(name, path, _wav_seconds(path)))
            raise
        self.recordings.append(FlowRecording(name, path, seconds))
        return step.next

    def _recording_path(self, name: str) -> Path:
        call_id = self.call.info.call_id
        taken = sum(1 for recording in self.recordings if recording.step == name)
        suffix = f"-{taken + 1}" if taken else ""
        return self.recordings_dir / call_id / f"{name}{suffix}.wav"

    def _hours(self, step: HoursStep) -> str | None:
        hours = step.hours if step.hours is not None else self.number_hours
        if hours is None:
            return step.open  # no schedule anywhere: nothing restricts the call
        verdict = check(hours, self.clock())
        if verdict.open:
            return step.open
        if verdict.holiday is not None and step.holiday is not None:
            return step.holiday
        return step.closed

    # --- webhook -------------------------------------------------------------------------

    def webhook_data(self, name: str) -> dict[str, Any]:
        """What a webhook step sends: the call, the flow, and the keys so far."""
        info = self.call.info
        return {
            "call_id": info.call_id,
            "from": info.caller,
            "to": info.callee,
            "custom": info.custom,
            "flow_id": info.flow_id,
            "flow_version": info.flow_version,
            "step": name,
            "answered": self.answered,
            "keypress": KEYPRESS_SEPARATOR.join(self.keys),
            "digits": dict(self.digits),
            "time": self.clock().isoformat(),
        }

    async def _webhook(self, name: str, step: WebhookStep) -> str | None:
        on_error = step.on_error if step.on_error is not None else step.next
        data = self.webhook_data(name)
        try:
            if step.method == "POST":
                response = await self.http.post(step.url, json=data, timeout=step.timeout)
            else:
                response = await self.http.get(
                    step.url, params=_query(data), timeout=step.timeout
                )
        except httpx.HTTPError as exc:
            log.info("webhook of step %r failed: %s", name, exc)
            return on_error
        if not response.is_success:
            log.info("webhook of step %r answered %d", name, response.status_code)
            return on_error
        reply = _read_reply(response.content[:MAX_WEBHOOK_REPLY], self.flow)
        if isinstance(reply, _Goto):
            return reply.step if reply.step is not None else step.next
        if isinstance(reply, _Dial):
            await self._answer()
            answered = await self._dial(reply.numbers, "sequential", step.dial_ring_timeout)
            return step.dial_answered if answered else step.dial_not_answered
        log.info("webhook of step %r: %s", name, reply)
        return on_error


@dataclass(frozen=True)
class _Goto:
    step: str | None  # None: the webhook step's own next


@dataclass(frozen=True)
class _Dial:
    numbers: tuple[str, ...]


def _read_reply(body: bytes, flow: Flow) -> _Goto | _Dial | str:
    """A webhook's answer: where to go, whom to dial, or (a string) why it is unusable."""
    text = body.decode("utf-8", errors="replace").strip()
    if not text:
        return _Goto(None)
    if text.startswith("{"):
        try:
            value = json.loads(text)
        except ValueError:
            return "the reply is not valid JSON"
        target = value.get("next") if isinstance(value, dict) else None
        if target is None:
            return _Goto(None)
        if not isinstance(target, str) or target not in flow.steps:
            return f"the reply names {target!r}, which is not a step of this flow"
        return _Goto(target)
    legacy = _LEGACY_REPLY.fullmatch(text)
    if legacy is None:
        return f"unreadable reply {text[:80]!r}"
    if legacy[1] != "200":
        return f"the reply says {legacy[1]}"
    action = (legacy[2] or "").strip()
    if not action:
        return _Goto(None)
    verb, _, argument = action.partition("=")
    if verb.strip().lower() != "dial" or not argument.strip():
        return f"unknown instruction {action[:80]!r}"
    numbers = tuple(_legacy_number(part) for part in argument.split(","))
    if not all(numbers):
        return f"the reply's dial= has an unusable number: {argument[:80]!r}"
    return _Dial(tuple(number for number in numbers if number is not None))


def _legacy_number(text: str) -> str | None:
    # The legacy reply writes numbers with or without "+"; E.164 digits either way.
    digits = text.strip().removeprefix("+")
    if not re.fullmatch(r"[1-9][0-9]{5,14}", digits):
        return None
    return "+" + digits


def _query(data: Mapping[str, Any]) -> dict[str, str]:
    """``data`` as GET parameters: digits flattened to ``digits.<step>``, None left out."""
    query: dict[str, str] = {}
    for key, value in data.items():
        if value is None:
            continue
        if isinstance(value, Mapping):
            for inner, item in value.items():
                query[f"{key}.{inner}"] = str(item)
        elif isinstance(value, bool):
            query[key] = "true" if value else "false"
        else:
            query[key] = str(value)
    return query


def _wav_seconds(path: Path) -> float:
    """The length of a recording left behind by a caller who hung up (0 if unreadable)."""
    try:
        with wave.open(str(path), "rb") as wav:
            return wav.getnframes() / float(wav.getframerate())
    except (wave.Error, OSError, EOFError, ZeroDivisionError):
        return 0.0


async def run_flow(
    flow: Flow,
    call: FlowCall,
    *,
    http: httpx.AsyncClient,
    media_dir: Path,
    recordings_dir: Path,
    clock: Callable[[], datetime],
    number_hours: OfficeHours | None = None,
) -> FlowResult:
    """Run ``flow`` for ``call`` until it ends; never raises for what the call does.

    ``media_dir``: where play steps' files are (the data directory's ``media``);
    ``recordings_dir``: where record steps write, one folder per call id; ``clock``: the
    time for hours steps (timezone-aware); ``number_hours``: the called number's schedule,
    for hours steps that have none of their own.
    """
    run = _Run(
        flow=flow,
        call=call,
        http=http,
        media_dir=media_dir,
        recordings_dir=recordings_dir,
        clock=clock,
        number_hours=number_hours,
    )
    return await run.run()
