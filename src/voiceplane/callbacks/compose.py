"""What to write to the outbox for a call: its final callback and its ``dlrurl`` events.

The engine calls these with the call record (``voiceplane.store.repository.call_record``)
and passes the result to ``voiceplane.store.outbox.enqueue`` in the transaction that stores
the change. A ``callback`` URL with ``{placeholders}`` is legacy: a GET with the values in
the URL (:mod:`voiceplane.callbacks.legacy`). Any other ``callback`` URL, and every
``dlrurl``, gets a POST of JSON, signed (:mod:`voiceplane.callbacks.signing`)::

    {"type": "call.status", "event": "completed", "timestamp": "...Z",
     "data": <the call record>, "sequence": 5}

``sequence`` is added by the outbox: it numbers the callbacks of one call, in order, across
both URLs. Status words are written in the account's dialect.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Final

from voiceplane.calls.status import Dialect, Status, spell
from voiceplane.store.outbox import NewCallback
from voiceplane.store.repository import iso_utc

from . import legacy

PROGRESS_EVENTS: Final = ("initiated", "ringing", "answered", "completed")
STATUS_EVENT: Final = "completed"
STATUS_TYPE: Final = "call.status"
PROGRESS_TYPE: Final = "call.progress"


def _spelled(value: object, dialect: Dialect) -> object:
    if isinstance(value, str) and value:
        return spell(Status.parse(value), dialect)
    return value


def in_dialect(record: Mapping[str, object], dialect: Dialect) -> dict[str, object]:
    """``record`` with its status words (the call's and each leg's) written in ``dialect``."""
    spelled = dict(record)
    spelled["status"] = _spelled(record.get("status"), dialect)
    legs = record.get("legs")
    if isinstance(legs, list):
        spelled["legs"] = [
            {**leg, "status": _spelled(leg.get("status"), dialect)}
            if isinstance(leg, Mapping)
            else leg
            for leg in legs
        ]
    return spelled


def status_callback(
    record: Mapping[str, object],
    url: str,
    *,
    at: datetime,
    dialect: Dialect = Dialect.VOICEPLANE,
) -> NewCallback:
    """The final callback of a completed call to its ``callback`` URL."""
    if legacy.has_placeholders(url):
        rendered = legacy.render(url, legacy.values(record, dialect))
        return NewCallback(kind="status", event=STATUS_EVENT, url=rendered, method="GET")
    payload = {
        "type": STATUS_TYPE,
        "event": STATUS_EVENT,
        "timestamp": iso_utc(at),
        "data": in_dialect(record, dialect),
    }
    return NewCallback(kind="status", event=STATUS_EVENT, url=url, method="POST", payload=payload)


def progress_callback(
    event: str,
    record: Mapping[str, object],
    url: str,
    *,
    at: datetime,
    dialect: Dialect = Dialect.VOICEPLANE,
) -> NewCallback:
    """One progress event (``initiated``, ``ringing``, ``answered``, ``completed``) to a
    call's ``dlrurl``."""
    if event not in PROGRESS_EVENTS:
        raise ValueError(f"unknown progress event {event!r}; expected one of {PROGRESS_EVENTS}")
    payload = {
        "type": PROGRESS_TYPE,
        "event": event,
        "timestamp": iso_utc(at),
        "data": in_dialect(record, dialect),
    }
    return NewCallback(kind="progress", event=event, url=url, method="POST", payload=payload)
