"""Checks of single request fields, shared by the request models of both APIs.

Each check turns the text a user sent into the value the store keeps, or raises a
``PydanticCustomError`` whose message says what is wrong, so the error names the field it
came from. Checks that depend on the request (a number needs its ``prefix``; a schedule needs
the current time; a ``.wav`` path needs the data directory) read them from the validation
info: the ``prefix`` validated before, and an :class:`OrderContext` passed as the context.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

from pydantic import ValidationInfo
from pydantic_core import PydanticCustomError

from voiceplane.api import phone, times
from voiceplane.callbacks import legacy
from voiceplane.calls import flow_target
from voiceplane.store.models import utcnow

MAX_URL_LENGTH: Final = 2048
MAX_TTS_TEXT: Final = 1000
AUDIO_SUFFIX: Final = ".wav"


@dataclass(frozen=True)
class OrderContext:
    """What validating a call request needs besides the request itself."""

    media_dir: Path
    now: datetime = field(default_factory=utcnow)


def invalid(message: str, code: str = "invalid_value") -> PydanticCustomError:
    """A validation error with exactly ``message`` (braces in it are not placeholders)."""
    return PydanticCustomError(code, "{reason}", {"reason": message})


def context_of(info: ValidationInfo) -> OrderContext:
    context = info.context
    if not isinstance(context, OrderContext):  # pragma: no cover - a programming error
        raise TypeError("validate call requests with context=OrderContext(...)")
    return context


def as_text(value: Any) -> Any:
    """JSON clients send numbers as numbers; the API reads them as the digits they are."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value


def prefix(value: object) -> int | None:
    """The ``prefix`` field: a country calling code, or None."""
    value = as_text(value)
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if not isinstance(value, str):
        raise invalid("prefix must be a country calling code like 91", "invalid_prefix")
    try:
        return phone.parse_prefix(value)
    except phone.NumberError as exc:
        raise invalid(str(exc), "invalid_prefix") from None


def numbers(value: str, info: ValidationInfo, *, separator: str | None) -> str:
    """One number (``separator`` None) or a parallel list, stored as E.164 joined by ``,``."""
    code = info.data.get("prefix")
    try:
        if separator is None:
            return phone.to_e164(value, prefix=code)
        return phone.stored(phone.to_e164_list(value, separator=separator, prefix=code))
    except phone.NumberError as exc:
        raise invalid(str(exc), "invalid_number") from None


def leg2(value: str, info: ValidationInfo) -> str:
    """Click-to-call's ``to``: numbers separated by ``^``, or a flow (``ivr:<id>`` or
    ``flow:<id>``, returned as ``flow:<id>``; whose it is is checked against the store)."""
    try:
        flow_id = flow_target.flow_id_of(value)
    except flow_target.FlowTargetError as error:
        raise invalid(str(error), "invalid_target") from None
    if flow_id is not None:
        return flow_target.stored(flow_id)
    return numbers(value, info, separator=phone.LEG2_SEPARATOR)


def schedule(value: object, info: ValidationInfo) -> datetime | None:
    """The ``time`` field: when to place the call, or None for now."""
    value = as_text(value)
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if not isinstance(value, str):
        raise invalid("time must be a string: ISO 8601 or Unix seconds", "invalid_time")
    try:
        return times.parse_schedule(value, now=context_of(info).now)
    except ValueError as exc:
        raise invalid(str(exc), "invalid_time") from None


def http_url(value: str | None) -> str | None:
    """``callback`` / ``dlrurl``: an absolute http(s) URL, kept as written ({tokens} too)."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        parts = urlsplit(text)
    except ValueError:
        raise invalid(f"{text!r} is not a URL", "invalid_url") from None
    if parts.scheme.lower() not in {"http", "https"} or not parts.hostname:
        raise invalid(f"{text!r} is not an http:// or https:// URL", "invalid_url")
    if any(char.isspace() for char in text):
        raise invalid("a URL cannot contain blanks; percent-encode them", "invalid_url")
    if legacy.has_placeholders(text):
        try:
            legacy.check_template(text)
        except ValueError as error:
            raise invalid(str(error), "unknown_placeholder") from None
    return text


def target(value: str | None, info: ValidationInfo) -> str | None:
    """What to play when the callee answers: text to speak, or an existing ``.wav`` file;
    or a flow to run, ``flow:<id>`` or ``ivr:<id>`` (stored as ``flow:<id>``).

    Also read: kaleyra.io's JSON form ``[{"message": {"text": "..."}}]``. A ``.wav`` file
    must be in the data directory's ``media`` folder (written relative to it, or as an
    absolute path inside it); the store keeps it absolute.
    """
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        flow_id = flow_target.flow_id_of(text)
    except flow_target.FlowTargetError as error:
        raise invalid(str(error), "invalid_target") from None
    if flow_id is not None:
        # Whose flow it is, and whether it is published, is checked against the store
        # (voiceplane.api.placing.check_target_flow).
        return flow_target.stored(flow_id)
    if text.startswith("["):
        text = _kaleyra_target(text)
    if text.lower().endswith(AUDIO_SUFFIX):
        return _audio_file(text, context_of(info).media_dir)
    if len(text) > MAX_TTS_TEXT:
        raise invalid(f"the text to speak is longer than {MAX_TTS_TEXT} characters", "too_long")
    return text


def _kaleyra_target(text: str) -> str:
    try:
        items = json.loads(text)
    except ValueError:
        raise invalid("target starts with '[' but is not valid JSON", "invalid_target") from None
    message = (
        items[0].get("message") if isinstance(items, list) and len(items) == 1 and
        isinstance(items[0], dict) else None
    )  # fmt: skip
    spoken = message.get("text") if isinstance(message, dict) else None
    if not isinstance(spoken, str) or not spoken.strip():
        raise invalid(
            'a JSON target must be [{"message": {"text": "..."}}]; JSON flows are not supported '
            "(give a stored flow as flow:<id>)",
            "invalid_target",
        )
    return spoken.strip()


def _audio_file(text: str, media_dir: Path) -> str:
    path = Path(text).expanduser()
    if not path.is_absolute():
        path = media_dir / path
    if not path.is_file():
        raise invalid(f"no audio file {str(path)!r} on the server", "unknown_audio")
    resolved = path.resolve()
    # The target comes from API users: only the media folder is theirs to play from, not
    # every file the server can read.
    if not resolved.is_relative_to(media_dir.resolve()):
        raise invalid(
            f"audio files must be in the media folder {str(media_dir)!r}", "unknown_audio"
        )
    return str(resolved)
