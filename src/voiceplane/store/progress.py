"""What the call engine writes: plain snapshots of a call in progress, stored by upsert.

The engine keeps each live call in memory and hands the store a frozen snapshot whenever
something users can see changed (state, a leg's times, the final status). A snapshot holds
the whole call, so a newer one can replace an older one that is still waiting to be written
(see :mod:`voiceplane.store.writer`), and writing it twice changes nothing.

Plain SQL on the driver rather than the ORM or Core: this is the engine's hot path.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Session

from .driver import RowsStatement, execute_rows, placeholder, timestamps_for
from .models import utcnow


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
    """Store several snapshots: a statement or two per table (see ``driver.execute_rows``)."""
    if not snapshots:
        return
    connection = session.connection()
    sql = _driver_sql(connection.dialect)
    stamp = timestamps_for(connection.dialect)
    now = stamp(utcnow())
    # The newest snapshot of each call (a reported call keeps every save, so a batch may
    # hold several): one row per call, as an UPDATE ... FROM needs.
    newest = {snap.call_id: snap for snap in snapshots}
    call_rows = [
        (
            snap.state, snap.status, snap.reason, stamp(snap.start_time),
            stamp(snap.answer_time), stamp(snap.end_time), snap.duration, snap.billsec,
            snap.attempts, stamp(snap.scheduled_at), snap.decided_by_rule, snap.keypress,
            snap.recording, now, snap.call_id,
        )
        for snap in newest.values()
    ]  # fmt: skip
    # Plain tuples on the driver: through SQLAlchemy's compiled statements every row paid
    # for each parameter's bind processing, about half of the writer thread's time.
    execute_rows(connection, sql.update_calls, call_rows)
    leg_rows = [
        (
            leg.seq, leg.leg, leg.number, leg.status, leg.sip_code, leg.sip_reason,
            leg.q850_cause, leg.hangup_by, stamp(leg.start_time), stamp(leg.ring_time),
            stamp(leg.answer_time), stamp(leg.end_time), leg.sip_call_id, snap.call_id,
        )
        for snap in newest.values()
        for leg in snap.legs
    ]  # fmt: skip
    execute_rows(connection, sql.upsert_legs, leg_rows)


@dataclass(frozen=True, slots=True)
class _DriverSql:
    update_calls: RowsStatement
    upsert_legs: RowsStatement


@functools.cache
def _driver_sql(dialect: Dialect) -> _DriverSql:
    """The two statements as driver SQL, built once per database kind."""
    mark = placeholder(dialect)
    changed = (*_CALL_FIELDS, "updated_at")
    call_columns = (*changed, "id")  # the id last, as the single-row UPDATE wants it too
    leg_columns = (*_LEG_FIELDS, "call_id")
    changing = ", ".join(
        f"{name} = excluded.{name}" for name in leg_columns if name not in ("seq", "call_id")
    )
    upsert_head = f"INSERT INTO legs ({', '.join(leg_columns)}) VALUES "
    upsert_tail = f" ON CONFLICT (call_id, seq) DO UPDATE SET {changing}"
    return _DriverSql(
        update_calls=RowsStatement(
            head=f"WITH v({', '.join(call_columns)}) AS (VALUES ",
            width=len(call_columns),
            tail=(
                f") UPDATE calls SET {', '.join(f'{name} = v.{name}' for name in changed)} "
                "FROM v WHERE calls.id = v.id"
            ),
            mark=mark,
            single=(
                f"UPDATE calls SET {', '.join(f'{name} = {mark}' for name in changed)} "
                f"WHERE id = {mark}"
            ),
        ),
        upsert_legs=RowsStatement(
            head=upsert_head,
            width=len(leg_columns),
            tail=upsert_tail,
            mark=mark,
            single=f"{upsert_head}({', '.join([mark] * len(leg_columns))}){upsert_tail}",
        ),
    )
