"""Call records as the APIs show them: the store's record, its status words in a dialect.

The store keeps the canonical words (:class:`~voiceplane.calls.status.Status` values); each
account chooses the words it reads (``Account.status_dialect``). The legacy API always writes
the legacy words, which are the canonical ones: its clients were written against them.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import object_session

from voiceplane.api import times
from voiceplane.calls.status import Dialect, Status, spell
from voiceplane.policy.capacity import queue_position
from voiceplane.store import repository
from voiceplane.store.models import Account, Call, utcnow

_LEGACY_SERVICES = {"outbound": "Outbound", "click2call": "Click2Call", "incoming": "Incoming"}


def dialect_of(account: Account) -> Dialect:
    """The account's dialect; an unknown value reads as the canonical words."""
    try:
        return Dialect(account.status_dialect)
    except ValueError:
        return Dialect.VOICEPLANE


def spelled(word: str | None, dialect: Dialect) -> str | None:
    """A stored status word in ``dialect``; a word this version does not know is kept."""
    if word is None:
        return None
    try:
        return spell(Status.parse(word), dialect)
    except ValueError:
        return word


def public_record(call: Call, dialect: Dialect) -> dict[str, Any]:
    """The contract's call record (``repository.call_record``) in ``dialect``'s words, with
    the place of a waiting call in its account's queue (read in the call's own session)."""
    record: dict[str, Any] = repository.call_record(call)
    session = object_session(call)
    if call.state == "queued" and session is not None:
        record["queue_position"] = queue_position(session, call, now=utcnow())
    record["status"] = spelled(call.status, dialect)
    record["legs"] = [
        {**leg, "status": spelled(leg["status"], dialect)} for leg in record["legs"]
    ]
    return record


def legacy_record(call: Call) -> dict[str, Any]:
    """A record of ``dial.c2cstatus`` / ``voice.status`` (kaleyra-api-research.md 4.1).

    ``status1`` / ``status2`` are what happened on leg 1 and leg 2; times are UTC.
    """
    dialect = Dialect.VOICEPLANE
    leg1, leg2 = repository.get_leg(call, 1), repository.get_leg(call, 2)
    return {
        "id": call.id,
        "service": _LEGACY_SERVICES.get(call.service, call.service),
        "callfrom": call.from_number,
        "callto": call.to_number,
        "caller_id": call.bridge,
        "state": call.state,
        "status": spelled(call.status, dialect),
        "status1": spelled(leg1.status, dialect) if leg1 is not None else None,
        "status2": spelled(leg2.status, dialect) if leg2 is not None else None,
        "date": times.legacy_date(call.created_at),
        "start_time": times.legacy(call.start_time),
        "end_time": times.legacy(call.end_time),
        "duration": call.duration,
        "billsec": call.billsec,
        "custom": call.custom,
        "reason": call.reason,
    }
