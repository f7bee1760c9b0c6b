"""Ending calls that never left the queue: refused by the pre-dial checks, cancelled
before the engine took them, or out of queue time waiting for a channel (MAX-USE).

Such a call has no tracker (the engine never claimed it), so it is ended here, in the
caller's transaction (a writer job): one statement per call, guarded by its state (a call
claimed or ended meanwhile is left alone), and, for a call with a ``callback`` or
``dlrurl`` URL, its final callback (and ``completed`` event) in that same transaction, as
:func:`voiceplane.calls.reporting.report_job` writes it. Like every completion: a status
is never stored without its callback.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from voiceplane.policy.capacity import (
    ChannelCounter,
    Expired,
    overdue_after_refresh,
    overdue_waiting,
)
from voiceplane.store.models import Call, utcnow
from voiceplane.store.progress import CallProgress

from .reporting import report_job
from .status import Status
from .tracker import whole_seconds


@dataclass(frozen=True, slots=True)
class Ending:
    """How one queued call ends."""

    call_id: str
    status: Status
    reason: str
    rule: str | None = None  # the pre-dial rule that decided it


@dataclass(frozen=True, slots=True)
class Ended:
    ended: int = 0
    reported: int = 0  # of those, how many wrote callbacks (the dispatcher's doorbell)
    call_ids: frozenset[str] = frozenset()  # the calls ended (others had left the queue)


def end_queued(session: Session, endings: Sequence[Ending], *, now: datetime) -> Ended:
    """End each call of ``endings`` that is still queued (see the module docstring)."""
    if not endings:
        return Ended()
    c = Call.__table__.c
    rows = {
        row.id: row
        for row in session.execute(
            select(
                c.id, c.start_time, c.attempts, c.scheduled_at, c.callback_url, c.dlr_url
            ).where(c.id.in_([ending.call_id for ending in endings]))
        )
    }
    ended: set[str] = set()
    reported = 0
    for ending in endings:
        row = rows.get(ending.call_id)
        if row is None:
            continue
        duration = whole_seconds(row.start_time, now)
        result = session.execute(
            update(Call)
            .where(Call.id == ending.call_id, Call.state == "queued")
            .values(
                state="completed", status=ending.status.value, reason=ending.reason,
                decided_by_rule=ending.rule, end_time=now, duration=duration, billsec=0,
                updated_at=now,
            )  # fmt: skip
            .execution_options(synchronize_session=False)
        )
        if not result.rowcount:  # type: ignore[attr-defined]
            continue
        ended.add(ending.call_id)
        if row.callback_url or row.dlr_url:
            snapshot = CallProgress(
                call_id=ending.call_id, state="completed", status=ending.status.value,
                reason=ending.reason, start_time=row.start_time, answer_time=None,
                end_time=now, duration=duration, billsec=0, attempts=row.attempts,
                scheduled_at=row.scheduled_at, decided_by_rule=ending.rule,
            )  # fmt: skip
            report_job(snapshot, ["completed"])(session)
            reported += 1
    return Ended(len(ended), reported, frozenset(ended))


def expire_waiting(
    session: Session,
    *,
    now: datetime,
    full_bridges: Sequence[str],
    full_accounts: Sequence[int],
    bridge_limits: dict[str, int | None],
    default_timeout_s: float,
) -> list[Expired]:
    """End MAX-USE the queued calls whose wait for a channel is over
    (``voiceplane.policy.capacity.overdue_waiting`` decides which); those ended."""
    overdue = overdue_waiting(
        session, now=now, full_bridges=full_bridges, full_accounts=full_accounts,
        bridge_limits=bridge_limits, default_timeout_s=default_timeout_s,
    )  # fmt: skip
    ended = end_queued(session, _max_use(overdue), now=now)
    return [item for item in overdue if item.call_id in ended.call_ids]


def sweep_capacity(
    session: Session,
    *,
    counter: ChannelCounter,
    default_timeout_s: float,
    waiting: tuple[set[str], set[int]] = (set(), set()),
) -> tuple[int, int]:
    """The engine's periodic sweep of calls waiting for a channel (limits read again, see
    ``voiceplane.policy.capacity.overdue_after_refresh``): end those out of queue time.
    How many ended, how many of those wrote callbacks."""
    now = utcnow()
    overdue = overdue_after_refresh(
        session, counter=counter, default_timeout_s=default_timeout_s, waiting=waiting, now=now
    )
    ended = end_queued(session, _max_use(overdue), now=now)
    return ended.ended, ended.reported


def _max_use(overdue: Sequence[Expired]) -> list[Ending]:
    return [Ending(item.call_id, Status.MAX_USE, item.reason, item.rule) for item in overdue]
