"""The call queue, as the engine sees it: claim due calls, find cancel requests.

A claimed call leaves ``queued`` in the same transaction that selected it (``FOR UPDATE
SKIP LOCKED`` on PostgreSQL), so two engines never dial the same call. What the engine
gets back is plain data (:class:`CallCommand`), not ORM rows that belong to a session.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from .models import Call, Leg
from .progress import LegProgress
from .repository import DUE_ORDER, due_conditions


@dataclass(frozen=True, slots=True)
class CallCommand:
    """What the engine needs to carry out one call."""

    call_id: str
    account_id: int
    service: str
    from_numbers: tuple[str, ...]
    to_numbers: tuple[str, ...]
    bridge: str | None
    target: str | None
    ring_timeout: int | None
    retry: int
    retry_interval: int
    attempts: int  # including the one now claimed
    created_at: datetime
    start_time: datetime
    cancel_requested: bool
    legs: tuple[LegProgress, ...]  # tries made by earlier attempts
    reported: bool = False  # it has a callback or dlrurl URL: its changes are reported
    promotional: bool | None = None  # the call's own choice; None: the account's default


def split_numbers(value: str | None) -> tuple[str, ...]:
    """The numbers of a ``from``/``to`` field: several ring in parallel, stored ","-joined."""
    if not value:
        return ()
    return tuple(part for part in (piece.strip() for piece in value.split(",")) if part)


def claim_due(session: Session, *, now: datetime, limit: int = 100) -> list[CallCommand]:
    """Move up to ``limit`` due queued calls to ``dialing`` and return their commands.

    Oldest due first. Plain SQL (this runs for every call); on PostgreSQL the rows are
    locked ``FOR UPDATE SKIP LOCKED``, so several engines can share the queue.
    """
    if limit < 1:
        raise ValueError(f"limit must be positive, got {limit}")
    calls = Call.__table__
    c = calls.c
    query = (
        select(
            c.id, c.account_id, c.service, c.from_number, c.to_number, c.bridge, c.target,
            c.ring_timeout, c.retry, c.retry_interval, c.attempts, c.created_at,
            c.start_time, c.cancel_requested_at, c.callback_url, c.dlr_url, c.promotional,
        )  # fmt: skip
        .where(*due_conditions(now))
        .order_by(*DUE_ORDER)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    connection = session.connection()  # Core only: no ORM objects for the hot path
    rows = connection.execute(query).all()
    if not rows:
        return []
    ids = [row.id for row in rows]
    connection.execute(
        update(calls)  # type: ignore[arg-type]
        .where(c.id.in_(ids))
        .values(state="dialing", attempts=c.attempts + 1, updated_at=now)
    )
    connection.execute(
        update(calls)  # type: ignore[arg-type]
        .where(c.id.in_(ids), c.start_time.is_(None))
        .values(start_time=now)
    )
    earlier = _legs_of([row.id for row in rows if row.attempts > 0], session)
    return [
        CallCommand(
            call_id=row.id,
            account_id=row.account_id,
            service=row.service,
            from_numbers=split_numbers(row.from_number),
            to_numbers=split_numbers(row.to_number),
            bridge=row.bridge,
            target=row.target,
            ring_timeout=row.ring_timeout,
            retry=row.retry,
            retry_interval=row.retry_interval,
            attempts=row.attempts + 1,
            created_at=row.created_at,
            start_time=row.start_time or now,
            cancel_requested=row.cancel_requested_at is not None,
            legs=tuple(earlier.get(row.id, ())),
            reported=bool(row.callback_url or row.dlr_url),
            promotional=row.promotional,
        )
        for row in rows
    ]


def _legs_of(call_ids: list[str], session: Session) -> dict[str, list[LegProgress]]:
    """The legs already recorded for ``call_ids`` (calls being retried), in order."""
    found: dict[str, list[LegProgress]] = {}
    if not call_ids:
        return found
    legs = Leg.__table__.c
    query = select(Leg.__table__).where(legs.call_id.in_(call_ids)).order_by(legs.seq)
    for row in session.execute(query).mappings():
        found.setdefault(row["call_id"], []).append(
            LegProgress(**{name: row[name] for name in LegProgress.__dataclass_fields__})
        )
    return found


def cancel_requested(session: Session, call_ids: Iterable[str]) -> set[str]:
    """Which of ``call_ids`` have a cancel request stored."""
    wanted = list(call_ids)
    if not wanted:
        return set()
    query = select(Call.id).where(Call.id.in_(wanted), Call.cancel_requested_at.is_not(None))
    return set(session.scalars(query))
