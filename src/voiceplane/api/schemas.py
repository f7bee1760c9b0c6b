"""The API's request and response bodies, as pydantic models (they make the OpenAPI schema).

The request models are the one place where a call command is validated: the kaleyra.io-style
routes fill them from a JSON or form body, the legacy ``?method=`` route from its renamed
parameters. A validated model holds what the store keeps: numbers in E.164 (parallel lists
joined with ``,``), the schedule as a UTC datetime, the target as text or an absolute path.
``prefix`` is declared first because the numbers after it are read with it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Final, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
)

from voiceplane.api import fields, phone

MAX_RETRY: Final = 5
MIN_RING_TIMEOUT: Final = 1
MAX_RING_TIMEOUT: Final = 180
DEFAULT_RING_TIMEOUT: Final = 30
MIN_INTERVAL: Final = 10
MAX_INTERVAL: Final = 3600
DEFAULT_INTERVAL: Final = 60
MAX_CUSTOM: Final = 255
MAX_QUEUE_TIMEOUT: Final = 24 * 3600

Service = Literal["outbound", "click2call", "incoming"]
State = Literal["queued", "dialing", "ringing", "answered", "completed"]

_NUMBER_TEXT = BeforeValidator(fields.as_text, json_schema_input_type=str | int)

Prefix = Annotated[
    int | None,
    BeforeValidator(fields.prefix, json_schema_input_type=str | None),
    Field(
        description="Country calling code (91 or +91) for the numbers written without one.",
        examples=["91"],
    ),
]
Number = Annotated[str, _NUMBER_TEXT, Field(max_length=32)]
NumberList = Annotated[str, _NUMBER_TEXT, Field(max_length=400)]
Retry = Annotated[
    int,
    Field(
        ge=0,
        le=MAX_RETRY,
        description="How many more times to try when an attempt is not answered.",
    ),
]
RingTimeout = Annotated[
    int,
    Field(
        ge=MIN_RING_TIMEOUT,
        le=MAX_RING_TIMEOUT,
        description="Seconds to let a number ring before giving up.",
    ),
]
Schedule = Annotated[
    datetime | None,
    BeforeValidator(fields.schedule, json_schema_input_type=str | int | None),
    Field(
        description="When to place the call, up to 30 days ahead: ISO 8601 "
        "(2025-01-31T09:30:00Z; no offset means UTC), 2025/01/31 09:30:00, or Unix seconds. "
        "Empty: now.",
        examples=["2025-01-31T09:30:00Z"],
    ),
]
Url = Annotated[str | None, Field(max_length=fields.MAX_URL_LENGTH)]
QueueTimeout = Annotated[
    int | None,
    Field(
        ge=0,
        le=MAX_QUEUE_TIMEOUT,
        description="Seconds the call may wait for a free channel of the bridge or account; "
        "then it ends with the status for no free channel, and is never dialled (0: do not "
        "wait). Empty: the server's default ([trunk] queue_timeout, 300 s unless changed).",
    ),
]
Custom = Annotated[
    str | None,
    Field(max_length=MAX_CUSTOM, description="Your reference, returned in the call record."),
]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    promotional: bool | None = Field(
        default=None,
        description="Whether the call is promotional: a promotional call to a number on the "
        "do-not-disturb registry is not dialled. Empty: the account's setting (transactional "
        "unless changed).",
    )
    type: Literal["promotional", "transactional"] | None = Field(
        default=None, description="The same choice as promotional, in words."
    )

    @field_validator("type")
    @classmethod
    def _type(cls, value: str | None, info: ValidationInfo) -> str | None:
        chosen = info.data.get("promotional")
        if value is not None and chosen is not None and chosen != (value == "promotional"):
            raise fields.invalid(f"type {value} contradicts promotional", "conflicting_fields")
        return value

    @property
    def is_promotional(self) -> bool | None:
        """The call's own choice; None leaves it to the account."""
        if self.promotional is not None:
            return self.promotional
        return None if self.type is None else self.type == "promotional"

    @field_validator("callback", "dlrurl", check_fields=False)
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return fields.http_url(value)

    @field_validator("bridge", check_fields=False)
    @classmethod
    def _bridge(cls, value: str, info: ValidationInfo) -> str:
        return fields.numbers(value, info, separator=None)


class OutboundRequest(_Request):
    """``POST /v1/{sid}/voice/outbound``: call ``to`` from ``bridge`` and play ``target``."""

    prefix: Prefix = None
    to: Number = Field(description="The number to call.", examples=["+919876543210"])
    bridge: Number = Field(
        description="A number of your account, shown to the callee as the caller (any "
        "other number is a 400 naming bridge).",
        examples=["+918067000000"],
    )
    target: str | None = Field(
        default=None,
        max_length=4000,
        description="What to play when the call is answered: text to speak, the path of a "
        '.wav file on the server (relative to <data dir>/media), [{"message": {"text": '
        '"..."}}], or flow:<id> / ivr:<id> to run one of your published flows.',
    )
    retry: Retry = 0
    interval: int = Field(
        default=DEFAULT_INTERVAL,
        ge=MIN_INTERVAL,
        le=MAX_INTERVAL,
        description="Seconds between one attempt and the next retry.",
    )
    time: Schedule = None
    timeout: RingTimeout = DEFAULT_RING_TIMEOUT
    callback: Url = Field(default=None, description="URL told the call's outcome when it ends.")
    dlrurl: Url = Field(default=None, description="URL told each change of the call's state.")
    custom: Custom = None
    queue_timeout: QueueTimeout = None

    @field_validator("to")
    @classmethod
    def _to(cls, value: str, info: ValidationInfo) -> str:
        return fields.numbers(value, info, separator=None)

    @field_validator("target")
    @classmethod
    def _target(cls, value: str | None, info: ValidationInfo) -> str | None:
        return fields.target(value, info)


class ClickToCallRequest(_Request):
    """``POST /v1/{sid}/voice/click-to-call``: call ``from``, then connect it to ``to``."""

    prefix: Prefix = None
    from_: NumberList = Field(
        alias="from",
        description="Leg 1, called first (the agent). Several numbers separated by '-' ring "
        "at once; the first to answer is connected.",
        examples=["+919876543210"],
    )
    to: NumberList = Field(
        description="Leg 2, called once leg 1 answered (the customer). Several numbers "
        "separated by '^' ring at once. Or a flow, ivr:<id> (flow:<id> too): leg 1 is "
        "connected to the account's published flow instead of a second call.",
        examples=["+919812345678"],
    )
    bridge: Number = Field(
        description="A number of your account, shown to both parties as the caller (any "
        "other number is a 400 naming bridge).",
        examples=["+918067000000"],
    )
    retry: Retry = 0
    time: Schedule = None
    timeout: RingTimeout = DEFAULT_RING_TIMEOUT
    callback: Url = Field(default=None, description="URL told the call's outcome when it ends.")
    dlrurl: Url = Field(default=None, description="URL told each change of the call's state.")
    custom: Custom = None
    queue_timeout: QueueTimeout = None

    @field_validator("from_")
    @classmethod
    def _from(cls, value: str, info: ValidationInfo) -> str:
        return fields.numbers(value, info, separator=phone.LEG1_SEPARATOR)

    @field_validator("to")
    @classmethod
    def _to(cls, value: str, info: ValidationInfo) -> str:
        return fields.leg2(value, info)


# --- responses -------------------------------------------------------------------------------


class CallAccepted(BaseModel):
    """A call was stored and queued; follow it with ``GET /v1/{sid}/voice/calls/{id}``."""

    id: str
    state: Literal["queued"] = "queued"


class LegRecord(BaseModel):
    leg: int = Field(description="1: the number called first; 2: the second (click-to-call).")
    number: str
    status: str | None = Field(description="What happened on this leg (the account's words).")
    sip_code: int | None
    sip_reason: str | None
    q850_cause: int | None
    hangup_by: str | None
    start_time: str | None
    ring_time: str | None
    answer_time: str | None
    end_time: str | None


class CallRecord(BaseModel):
    """Everything a call did. Times are ISO 8601 UTC; ``status`` is null until completed."""

    model_config = ConfigDict(populate_by_name=True)

    id: str
    service: Service
    state: State
    status: str | None = Field(description="The call's final status, in the account's words.")
    from_: str | None = Field(alias="from")
    to: str | None
    bridge: str | None
    custom: str | None
    reason: str | None
    rule: str | None = Field(
        description="For a status decided before any SIP was sent, the pre-dial rule that "
        "decided it (permissions.country, permissions.international, permissions.number_type, "
        "permissions.network, blocklist, dnd, ...); null when the operator decided."
    )
    created_at: str
    start_time: str | None
    answer_time: str | None
    end_time: str | None
    duration: int = Field(description="Seconds from start to end.")
    billsec: int = Field(description="Seconds from answer to end.")
    keypress: str | None = Field(
        default=None,
        description="An incoming call's flow: the keys the caller pressed, each input "
        "separated by a comma (\"1,2\": 1 in one menu, then 2); null otherwise.",
    )
    recording: str | None = Field(
        default=None,
        description="An incoming call's flow: the file of its recording (the voicemail).",
    )
    queue_position: int | None = Field(
        default=None,
        description="While the call waits to be dialled: its place among the account's "
        "waiting calls (1: next); null once it is dialled or while it is scheduled for later.",
    )
    legs: list[LegRecord]


class CallLogPage(BaseModel):
    """One page of the call logs, in the order asked for (newest first by default)."""

    total: int = Field(description="How many calls match the filters, on all pages.")
    limit: int
    offset: int | None = Field(description="Calls skipped before this page; null by cursor.")
    page: int | None = Field(
        description="The page number of this page (from 1) at this limit; null by cursor."
    )
    next_cursor: str | None = Field(
        description="Give it as cursor (with the same filters and sort) for the next page; "
        "null on the last page."
    )
    calls: list[CallRecord]
