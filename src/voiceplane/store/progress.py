"""What the call engine writes: plain snapshots of a call in progress, stored by upsert.

The engine keeps each live call in memory and hands the store a frozen snapshot whenever
something users can see changed (state, a leg's times, the final status). A snapshot holds
the whole call, so a newer one can replace an older one that is still waiting to be written
(see :mod:`voiceplane.store.writer`), and writing it twice changes nothing.

Plain SQL (SQLAlchemy Core) rather than the ORM: this is the engine's hot path.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Executable, bindparam, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from .models import Call, Leg, utcnow


@dataclass(frozen=True, slots=True)
class LegProgress:
    """One try of a leg, keyed by its ``seq`` within the call."""

    seq: int
    leg: int
    number: str
    status: str | None = None
    sip_code: int | None = None
    sip_reason: str | None = None
    q850_cause: int | None = None
    hangup_by: str | None = None
    start_time: datetime | None = None
    ring_time: datetime | None = None
    answer_time: datetime | None = None
    end_time: datetime | None = None
    sip_call_id: str | None = None


@dataclass(frozen=True, slots=True)
class CallProgress:
    """The engine-owned fields of a call and all its legs, as they are now."""

    call_id: str
    state: str
    status: str | None
    reason: str | None
    start_time: datetime | None
    answer_time: datetime | None
    end_time: datetime | None
    duration: int
    billsec: int
    attempts: int
    scheduled_at: datetime | None
    legs: tuple[LegProgress, ...] = ()
    decided_by_rule: str | None = None  # the pre-dial rule that decided the status
    keypress: str | None = None  # incoming calls: the keys pressed in the flow
    recording: str | None = None  # incoming calls: the flow's recording (voicemail) file


_CALL_FIELDS = (
    "state",
    "status",
    "reason",
    "start_time",
    "answer_time",
    "end_time",
    "duration",
    "billsec",
    "attempts",
    "scheduled_at",
    "decided_by_rule",
    "keypress",
    "recording",
)


_LEG_FIELDS = tuple(LegProgress.__dataclass_fields__)


def save_progress(session: Session, progress: CallProgress) -> None:
    """Store ``progress``: update the call, insert or update each of its legs."""
    save_many(session, [progress])


def save_many(session: Session, snapshots: Sequence[CallProgress]) -> None:
    """Store several snapshots with one executemany per table."""
    if not snapshots:
        return
    now = utcnow()
    call_rows = [
        {"call_id": snap.call_id, "updated_at": now}
        | {name: getattr(snap, name) for name in _CALL_FIELDS}
        for snap in snapshots
    ]
    # Core on the session's connection: no ORM work for rows the ORM does not hold.
    connection = session.connection()
    statements = _statements(connection.dialect.name)
    connection.execute(statements.update_calls, call_rows)
    leg_rows = [
        {name: getattr(leg, name) for name in _LEG_FIELDS} | {"call_id": snap.call_id}
        for snap in snapshots
        for leg in snap.legs
    ]
    if leg_rows:
        connection.execute(statements.upsert_legs, leg_rows)


@dataclass(frozen=True, slots=True)
class _Statements:
    update_calls: Executable
    upsert_legs: Executable


@functools.cache
def _statements(dialect: str) -> _Statements:
    """The two statements, built once per database kind (building them is not free)."""
    calls = Call.__table__
    update_calls = (
        update(calls)  # type: ignore[arg-type]
        .where(calls.c.id == bindparam("call_id"))
        .values({name: bindparam(name) for name in (*_CALL_FIELDS, "updated_at")})
    )
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(Leg.__table__)  # type: ignore[arg-type]
    changing = {name: statement.excluded[name] for name in _LEG_FIELDS if name != "seq"}
    upsert_legs = statement.on_conflict_do_update(
        index_elements=["call_id", "seq"], set_=changing
    )
    return _Statements(update_calls, upsert_legs)
