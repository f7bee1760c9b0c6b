"""Call-log cursors: where the next keyset page starts, as an opaque string.

A cursor is base64url (no padding) of compact JSON ``{"s": sort, "k": key, "i": id, "h":
check}``: the sort it was made for, the sort value of the last call shown (an ISO 8601 time
or a whole number of seconds), that call's id, and a short hash of those three. The hash is
not a secret: it catches a cursor that was cut, mangled or edited by hand, so such a cursor
is refused (400) instead of silently starting somewhere else. Tampering could gain nothing
anyway: a page never leaves the account's own calls.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from datetime import datetime
from typing import Any, Final

from voiceplane.api.errors import InvalidInput
from voiceplane.store.repository import CALL_SORTS, CallPosition

FIELD: Final = "cursor"
MAX_LENGTH: Final = 512  # a real cursor is about 150 characters


def _check(sort: str, key: object, call_id: str) -> str:
    text = json.dumps([sort, key, call_id], separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


def encode(sort: str, position: CallPosition) -> str:
    """The cursor of the page after ``position`` in ``sort``."""
    key: str | int = (
        position.value.isoformat() if isinstance(position.value, datetime) else position.value
    )
    payload = {"s": sort, "k": key, "i": position.id, "h": _check(sort, key, position.id)}
    raw = json.dumps(payload, separators=(",", ":")).encode("utf-8")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def decode(cursor: str, *, sort: str) -> CallPosition:
    """The position ``cursor`` holds; :class:`InvalidInput` (field ``cursor``) when it is not
    a cursor of this API, or was made for another sort than ``sort``."""
    payload = _payload(cursor)
    made_for, key, call_id = payload.get("s"), payload.get("k"), payload.get("i")
    if (
        set(payload) != {"s", "k", "i", "h"}
        or made_for not in CALL_SORTS
        or not isinstance(call_id, str)
        or payload["h"] != _check(str(made_for), key, call_id)
    ):
        raise _bad()
    if made_for != sort:
        raise InvalidInput(
            f"this cursor pages sort={made_for}, not sort={sort}; give the sort it was made "
            "for, or start again without a cursor",
            field=FIELD,
        )
    return CallPosition(_key(str(made_for), key), call_id)


def _payload(cursor: str) -> dict[str, Any]:
    text = cursor.strip()
    if not text or len(text) > MAX_LENGTH:
        raise _bad()
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        payload = json.loads(raw.decode("utf-8"))
    except (binascii.Error, ValueError):  # UnicodeDecodeError and JSONDecodeError are both
        raise _bad() from None
    if not isinstance(payload, dict):
        raise _bad()
    return payload


def _key(sort: str, key: object) -> datetime | int:
    if sort.removeprefix("-") == "created_at":
        if isinstance(key, str):
            try:
                moment = datetime.fromisoformat(key)
            except ValueError:
                raise _bad() from None
            if moment.tzinfo is not None:
                return moment
        raise _bad()
    if isinstance(key, int) and not isinstance(key, bool):
        return key
    raise _bad()


def _bad() -> InvalidInput:
    return InvalidInput(
        "not a cursor of these call logs: give next_cursor exactly as an answer had it",
        field=FIELD,
    )
