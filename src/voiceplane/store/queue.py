"""The call queue, as the engine sees it: claim due calls, find cancel requests, recover.

A claimed call leaves ``queued`` in the same transaction that selected it (``FOR UPDATE
SKIP LOCKED`` on PostgreSQL), so two engines never dial the same call. What the engine
gets back is plain data (:class:`CallCommand`), not ORM rows that belong to a session.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from .models import Call
from .progress import CallProgress, LegProgress
from .repository import due_calls


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


def split_numbers(value: str | None) -> tuple[str, ...]:
    """The numbers of a ``from``/``to`` field: several ring in parallel, stored ","-joined."""
    if not value:
        return ()
    return tuple(part for part in (piece.strip() for piece in value.split(",")) if part)


def claim_due(session: Session, *, now: datetime, limit: int = 100) -> list[CallCommand]:
    """Move up to ``limit`` due queued calls to ``dialing`` and return their commands."""
    commands = []
    for call in due_calls(session, now=now, limit=limit):
        call.state = "dialing"
        call.attempts += 1
        if call.start_time is None:
            call.start_time = now
        call.updated_at = now
        commands.append(
            CallCommand(
                call_id=call.id,
                account_id=call.account_id,
                service=call.service,
                from_numbers=split_numbers(call.from_number),
                to_numbers=split_numbers(call.to_number),
                bridge=call.bridge,
                target=call.target,
                ring_timeout=call.ring_timeout,
                retry=call.retry,
                retry_interval=call.retry_interval,
                attempts=call.attempts,
                created_at=call.created_at,
                start_time=call.start_time,
                cancel_requested=call.cancel_requested_at is not None,
                legs=tuple(_leg_progress(leg) for leg in call.legs),
            )
        )
    session.flush()
    return commands


def cancel_requested(session: Session, call_ids: Iterable[str]) -> set[str]:
    """Which of ``call_ids`` have a cancel request stored."""
    wanted = list(call_ids)
    if not wanted:
        return set()
    query = select(Call.id).where(Call.id.in_(wanted), Call.cancel_requested_at.is_not(None))
    return set(session.scalars(query))


def interrupted(session: Session) -> list[CallProgress]:
    """Calls left dialing, ringing or answered by an engine that stopped without ending them."""
    query = (
        select(Call)
        .where(Call.state.in_(("dialing", "ringing", "answered")))
        .order_by(Call.created_at, Call.id)
    )
    return [
        CallProgress(
            call_id=call.id,
            state=call.state,
            status=call.status,
            reason=call.reason,
            start_time=call.start_time,
            answer_time=call.answer_time,
            end_time=call.end_time,
            duration=call.duration,
            billsec=call.billsec,
            attempts=call.attempts,
            scheduled_at=call.scheduled_at,
            legs=tuple(_leg_progress(leg) for leg in call.legs),
        )
        for call in session.scalars(query)
    ]


def _leg_progress(leg: object) -> LegProgress:
    return LegProgress(**{name: getattr(leg, name) for name in LegProgress.__dataclass_fields__})
