"""The flow format: a JSON document of named steps joined by transitions (docs/flows.md).

::

    {
      "name": "Support line",
      "start": "welcome",
      "steps": {
        "welcome": {"kind": "say", "text": "Welcome to Acme.", "next": "menu"},
        "menu": {"kind": "menu", "prompt": {"say": "Press 1 for sales."},
                 "branches": {"1": "sales"}, "invalid": "bye"},
        "sales": {"kind": "dial", "numbers": ["+919876543210"], "not_answered": "bye"},
        "bye": {"kind": "hangup"}
      }
    }

:func:`parse_flow` turns the document into a :class:`Flow` or raises :class:`FlowError`,
whose ``field`` is the path of the offending value (``steps.menu.branches.1``) and whose
message names the step. A transition left out (``next`` and the like) ends the call after
that step. Steps nobody can reach are allowed but reported by :meth:`Flow.warnings`, since a
flow being edited often has them for a while; loops are allowed (a menu that starts over)
and bounded when the flow runs by ``max_steps``.

The models are plain data: nothing here touches media, SIP or the clock. Audio files are
paths relative to the data directory's ``media`` folder; whether they exist is checked where
that folder is known (:meth:`Flow.media_files` lists them).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from pathlib import PurePosixPath
from typing import Annotated, Any, Final, Literal

import phonenumbers
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from voiceplane.policy.hours import OfficeHours

MAX_STEPS_IN_FLOW: Final = 200
DEFAULT_MAX_STEPS: Final = 200  # steps one call may run through (a guard against loops)
MAX_TEXT: Final = 1000
MAX_PARALLEL: Final = 10
DTMF_KEYS: Final = frozenset("0123456789*#")
AUDIO_SUFFIX: Final = ".wav"
_STEP_NAME: Final = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")


class FlowError(ValueError):
    """A flow document that cannot run: ``field`` is the path of the value at fault."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


def _step_name(value: str) -> str:
    if not _STEP_NAME.fullmatch(value):
        raise ValueError(
            f"{value!r} is not a step name: 1 to 64 letters, digits, '_', '-' or '.', "
            "not starting with '-' or '.'"
        )
    return value


def _key(value: str | None) -> str | None:
    if value is not None and (len(value) != 1 or value not in DTMF_KEYS):
        raise ValueError(f"{value!r} is not a key: one of 0-9, * or #")
    return value


def _audio_path(value: str) -> str:
    path = PurePosixPath(value.strip())
    if not value.strip() or path.is_absolute() or ".." in path.parts:
        raise ValueError(
            f"{value!r}: write audio files relative to the media folder, without '..'"
        )
    if path.suffix.lower() != AUDIO_SUFFIX:
        raise ValueError(f"{value!r} is not a {AUDIO_SUFFIX} file")
    return str(path)


def _e164(value: str) -> str:
    text = value.strip()
    if not text.startswith("+"):
        raise ValueError(f"{value!r}: write numbers in E.164, with + and the country code")
    try:
        number = phonenumbers.parse(text, None)
    except phonenumbers.NumberParseException:
        raise ValueError(f"{value!r} is not a telephone number") from None
    if not phonenumbers.is_valid_number(number):
        raise ValueError(f"{value!r} is not a valid number for its country")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


StepName = Annotated[str, AfterValidator(_step_name)]
Key = Annotated[str | None, AfterValidator(_key)]
AudioFile = Annotated[str, AfterValidator(_audio_path)]
E164 = Annotated[str, AfterValidator(_e164)]
Seconds = Annotated[float, Field(gt=0, le=60)]


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Prompt(_Strict):
    """What to let the caller hear: ``{"say": "text"}`` (espeak-ng) or ``{"play": "a.wav"}``."""

    say: str | None = Field(default=None, min_length=1, max_length=MAX_TEXT)
    voice: str | None = Field(default=None, max_length=64)  # espeak-ng voice, e.g. "en-us"
    play: AudioFile | None = None

    @model_validator(mode="after")
    def _one_of(self) -> Prompt:
        if (self.say is None) == (self.play is None):
            raise ValueError('a prompt is either {"say": "text"} or {"play": "file.wav"}')
        if self.voice is not None and self.say is None:
            raise ValueError("voice only goes with say")
        return self


class _Step(_Strict):
    def transitions(self) -> Iterator[tuple[str, str | None]]:
        """(field path, step name or None) for every transition out of this step."""
        yield from ()

    def prompts(self) -> Iterator[tuple[str, Prompt]]:
        """(field path, prompt) for every prompt of this step."""
        yield from ()


class _Next(_Step):
    next: StepName | None = None

    def transitions(self) -> Iterator[tuple[str, str | None]]:
        yield "next", self.next


class AnswerStep(_Next):
    """Answer the call (media steps answer by themselves if this has not run yet)."""

    kind: Literal["answer"]


class PlayStep(_Next):
    """Play an audio file from the media folder."""

    kind: Literal["play"]
    file: AudioFile

    def prompts(self) -> Iterator[tuple[str, Prompt]]:
        yield "file", Prompt(play=self.file)


class SayStep(_Next):
    """Speak ``text`` with espeak-ng."""

    kind: Literal["say"]
    text: str = Field(min_length=1, max_length=MAX_TEXT)
    voice: str | None = Field(default=None, max_length=64)

    def prompts(self) -> Iterator[tuple[str, Prompt]]:
        yield "text", Prompt(say=self.text, voice=self.voice)


class _Input(_Step):
    """What gather and menu share: a prompt, how many keys, how long, how many tries."""

    prompt: Prompt | None = None
    max_digits: int = Field(default=1, ge=1, le=32)
    timeout: Seconds = 5.0  # for the first key after the prompt, and between keys
    finish_key: Key = "#"
    retries: int = Field(default=0, ge=0, le=10)  # extra tries after the first
    retry_prompt: Prompt | None = None  # played before each retry
    no_input: StepName | None = None

    def prompts(self) -> Iterator[tuple[str, Prompt]]:
        if self.prompt is not None:
            yield "prompt", self.prompt
        if self.retry_prompt is not None:
            yield "retry_prompt", self.retry_prompt


class GatherStep(_Input):
    """Collect digits; they are kept under the step's name for webhooks and the record.

    ``next`` once some digits came, ``no_input`` (default: ``next``) when none did in any try.
    """

    kind: Literal["gather"]
    max_digits: int = Field(default=10, ge=1, le=32)
    min_digits: int = Field(default=1, ge=1, le=32)
    next: StepName | None = None

    @model_validator(mode="after")
    def _digits(self) -> GatherStep:
        if self.min_digits > self.max_digits:
            raise ValueError(f"min_digits {self.min_digits} is more than max_digits")
        return self

    def transitions(self) -> Iterator[tuple[str, str | None]]:
        yield "next", self.next
        yield "no_input", self.no_input


class MenuStep(_Input):
    """Branch on the keys pressed: ``branches`` maps digits to steps; wrong digits try again
    (``retries``), then go to ``invalid``; silence does the same, then goes to ``no_input``
    (default: ``invalid``)."""

    kind: Literal["menu"]
    retries: int = Field(default=2, ge=0, le=10)
    branches: dict[str, StepName] = Field(min_length=1)
    invalid: StepName | None

    @field_validator("branches")
    @classmethod
    def _choices(cls, branches: dict[str, str]) -> dict[str, str]:
        for choice in branches:
            if not choice or any(key not in DTMF_KEYS for key in choice):
                raise ValueError(f"branch {choice!r} is not a key sequence of 0-9, * and #")
        return branches

    @model_validator(mode="after")
    def _reachable_choices(self) -> MenuStep:
        for choice in self.branches:
            if len(choice) > self.max_digits:
                raise ValueError(
                    f"branch {choice!r} is longer than max_digits {self.max_digits}; "
                    "it could never be chosen"
                )
            if self.finish_key is not None and self.finish_key in choice:
                raise ValueError(
                    f"branch {choice!r} contains the finish key {self.finish_key!r}"
                )
        return self

    def transitions(self) -> Iterator[tuple[str, str | None]]:
        for choice, step in self.branches.items():
            yield f"branches.{choice}", step
        yield "invalid", self.invalid
        yield "no_input", self.no_input


class DialStep(_Step):
    """Connect the caller to an agent: ``numbers`` rung all at once (``parallel``) or one
    after the other (``sequential``), each for ``ring_timeout`` seconds. After a conversation
    with an agent that ended with the agent hanging up, ``answered``; if none answered,
    ``not_answered``."""

    kind: Literal["dial"]
    numbers: list[E164] = Field(min_length=1, max_length=MAX_PARALLEL)
    mode: Literal["parallel", "sequential"] = "sequential"
    ring_timeout: int = Field(default=30, ge=5, le=300)
    answered: StepName | None = None
    not_answered: StepName | None = None

    def transitions(self) -> Iterator[tuple[str, str | None]]:
        yield "answered", self.answered
        yield "not_answered", self.not_answered


class RecordStep(_Next):
    """Record the caller (a voicemail) to a WAV file, until ``finish_key``, ``max_length``
    seconds, or ``silence`` seconds of silence (if set)."""

    kind: Literal["record"]
    prompt: Prompt | None = None
    beep: bool = True
    max_length: int = Field(default=120, ge=1, le=3600)
    finish_key: Key = "#"
    silence: float | None = Field(default=None, gt=0, le=60)

    def prompts(self) -> Iterator[tuple[str, Prompt]]:
        if self.prompt is not None:
            yield "prompt", self.prompt


class WebhookStep(_Next):
    """Send the call's data to ``url`` and follow the answer (docs/flows.md, "webhook").

    A JSON answer ``{"next": "step"}`` goes to that step; the legacy plain-text answer
    ``200|dial=<number>`` dials it, then goes to ``dial_answered`` / ``dial_not_answered``;
    any other 2xx answer goes to ``next``; a failure (no answer within ``timeout``, not 2xx,
    an unknown step, a reply that cannot be read) goes to ``on_error`` (default: ``next``).
    """

    kind: Literal["webhook"]
    url: str = Field(max_length=2048)
    method: Literal["POST", "GET"] = "POST"
    timeout: Annotated[float, Field(gt=0, le=30)] = 5.0
    on_error: StepName | None = None
    dial_ring_timeout: int = Field(default=30, ge=5, le=300)
    dial_answered: StepName | None = None
    dial_not_answered: StepName | None = None

    @field_validator("url")
    @classmethod
    def _http(cls, value: str) -> str:
        text = value.strip()
        if not re.match(r"https?://[^/\s]+", text, re.IGNORECASE) or re.search(r"\s", text):
            raise ValueError(f"{value!r} is not an http:// or https:// URL")
        return text

    def transitions(self) -> Iterator[tuple[str, str | None]]:
        yield "next", self.next
        yield "on_error", self.on_error
        yield "dial_answered", self.dial_answered
        yield "dial_not_answered", self.dial_not_answered


class HoursStep(_Step):
    """Branch on office hours: ``hours`` here, or (left out) the called number's schedule.
    ``holiday`` (default: ``closed``) is taken on a holiday."""

    kind: Literal["hours"]
    hours: OfficeHours | None = None
    open: StepName | None = None
    closed: StepName | None = None
    holiday: StepName | None = None

    def transitions(self) -> Iterator[tuple[str, str | None]]:
        yield "open", self.open
        yield "closed", self.closed
        yield "holiday", self.holiday


class HangupStep(_Step):
    """End the call."""

    kind: Literal["hangup"]


Step = Annotated[
    AnswerStep
    | PlayStep
    | SayStep
    | GatherStep
    | MenuStep
    | DialStep
    | RecordStep
    | WebhookStep
    | HoursStep
    | HangupStep,
    Field(discriminator="kind"),
]
STEP_KINDS: Final = (
    "answer", "play", "say", "gather", "menu", "dial", "record", "webhook", "hours", "hangup"
)  # fmt: skip


class Flow(_Strict):
    """A flow that passed every check of :func:`parse_flow`."""

    name: str = Field(min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=2000)
    start: StepName | None = None  # default: the first step written
    max_steps: int = Field(default=DEFAULT_MAX_STEPS, ge=1, le=10_000)
    steps: dict[StepName, Step] = Field(min_length=1, max_length=MAX_STEPS_IN_FLOW)

    @property
    def start_step(self) -> str:
        return self.start if self.start is not None else next(iter(self.steps))

    def step(self, name: str) -> Step:
        return self.steps[name]

    def transitions(self) -> Iterator[tuple[str, str, str | None]]:
        """(step, field path, target or None) for every transition of the flow."""
        for name, step in self.steps.items():
            for path, target in step.transitions():
                yield name, path, target

    def reachable(self) -> set[str]:
        """The steps a call can get to from the start."""
        seen = {self.start_step}
        todo = [self.start_step]
        while todo:
            for _path, target in self.steps[todo.pop()].transitions():
                if target is not None and target not in seen and target in self.steps:
                    seen.add(target)
                    todo.append(target)
        return seen

    def warnings(self) -> list[str]:
        """What is allowed but probably a mistake: steps no call can reach."""
        reachable = self.reachable()
        return [
            f"step {name!r} cannot be reached from the start step {self.start_step!r}"
            for name in self.steps
            if name not in reachable
        ]

    def media_files(self) -> Iterator[tuple[str, str]]:
        """(field path, file relative to the media folder) for every audio file played."""
        for name, step in self.steps.items():
            for path, prompt in step.prompts():
                if prompt.play is not None:
                    suffix = "" if path == "file" else ".play"
                    yield f"steps.{name}.{path}{suffix}", prompt.play


def parse_flow(document: Mapping[str, Any]) -> Flow:
    """``document`` as a :class:`Flow`, or :class:`FlowError` saying which value is wrong."""
    try:
        flow = Flow.model_validate(document)
    except ValidationError as exc:
        raise _flow_error(exc) from None
    if flow.start is not None and flow.start not in flow.steps:
        raise FlowError(f"the start step {flow.start!r} is not a step of this flow", field="start")
    for name, path, target in flow.transitions():
        if target is not None and target not in flow.steps:
            raise FlowError(
                f"step {name!r}: {path} points at {target!r}, which is not a step of this flow",
                field=f"steps.{name}.{path}",
            )
    return flow


def _flow_error(exc: ValidationError) -> FlowError:
    first = exc.errors()[0]
    loc = [str(part) for part in first.get("loc", ())]
    # pydantic puts the step kind (the union's tag) after the step name: drop it.
    if len(loc) >= 3 and loc[0] == "steps" and loc[2] in STEP_KINDS:
        del loc[2]
    message = str(first.get("msg", "invalid value")).removeprefix("Value error, ")
    kind = first.get("type", "")
    if kind == "missing":
        message = "this field is required"
    elif kind == "extra_forbidden":
        message = "unknown field"
    elif kind in {"union_tag_invalid", "union_tag_not_found"}:
        loc.append("kind")
        message = f"kind must be one of: {', '.join(STEP_KINDS)}"
    field = ".".join(loc) or None
    if len(loc) >= 2 and loc[0] == "steps":
        where = ".".join(loc[2:])
        prefix = f"step {loc[1]!r}" + (f": {where}" if where else "")
        return FlowError(f"{prefix}: {message}", field=field)
    return FlowError(f"{field}: {message}" if field else message, field=field)


class NumberHours(OfficeHours):
    """A number's office hours, and what a caller hears outside them before the refusal."""

    off_hour_prompt: Prompt | None = None


class NumberRouting(_Strict):
    """What an incoming call to a number does (``PUT /v1/{sid}/numbers/{number}/routing``).

    ``flow``: the id of the flow it runs; ``hours``: its office hours (outside them the call
    is refused as OFF-HOUR, after ``off_hour_prompt`` if set); ``missed_call``: ring this
    many seconds, then refuse and record it (a missed-call number; no flow runs);
    ``callback``: where each incoming call's record is sent once it is completed, like an
    outbound call's ``callback`` (legacy ``{placeholders}`` too).
    """

    flow: str | None = Field(default=None, max_length=64)
    hours: NumberHours | None = None
    missed_call: int | None = Field(default=None, ge=1, le=120)
    callback: str | None = Field(default=None, max_length=2048)

    @field_validator("callback")
    @classmethod
    def _http(cls, value: str | None) -> str | None:
        if value is None:
            return None
        text = value.strip()
        if not re.match(r"https?://[^/\s]+", text, re.IGNORECASE) or re.search(r"\s", text):
            raise ValueError(f"{value!r} is not an http:// or https:// URL")
        return text
