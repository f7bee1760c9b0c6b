"""The call queue, as the engine sees it: claim due calls, find cancel requests.

A claimed call leaves ``queued`` in the same transaction that selected it (``FOR UPDATE
SKIP LOCKED`` on PostgreSQL), so two engines never dial the same call. What the engine
gets back is plain data (:class:`CallCommand`), not ORM rows that belong to a session.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Integer, Select, Update, and_, bindparam, func, or_, select, update
from sqlalchemy.orm import Session

from .driver import PackedSelect
from .models import Account, Call, Leg, Number
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


@dataclass(frozen=True, slots=True)
class Candidate:
    """A due call as the claim's gate sees it, with the limits of its bridge and account
    (``numbers.channels``, ``accounts.channels``, ``accounts.max_cps``)."""

    call_id: str
    account_id: int
    service: str
    from_number: str | None
    to_number: str | None
    bridge: str | None
    bridge_channels: int | None  # None: the bridge is not a registered number
    account_channels: int | None  # None: unlimited
    account_cps: float | None  # None: unlimited
    promotional: bool | None = None  # the call's own choice; None: the account's default


Gate = Callable[[Candidate], bool]


def claim_due(
    session: Session,
    *,
    now: datetime,
    limit: int = 100,
    gate: Gate | None = None,
    skip_bridges: Collection[str] = (),
    skip_accounts: Collection[int] = (),
) -> list[CallCommand]:
    """Move up to ``limit`` due queued calls to ``dialing`` and return their commands.

    Oldest due first. Plain SQL (this runs for every call); on PostgreSQL the rows are
    locked ``FOR UPDATE SKIP LOCKED``, so several engines can share the queue.

    With a ``gate`` (the engine's capacity and rate checks), each due call is offered to it
    in queue order and only those it admits are claimed; the others stay queued in their
    place. Calls through ``skip_bridges`` or of ``skip_accounts`` (known to be full) are not
    even read, so calls behind them are not starved.
    """
    if limit < 1:
        raise ValueError(f"limit must be positive, got {limit}")
    query = _packed_due_query(gated=gate is not None, bridges=bool(skip_bridges),
                              accounts=bool(skip_accounts))  # fmt: skip
    values: dict[str, Any] = {"now": now, "limit": limit}
    if skip_bridges:
        values["skip_bridges"] = list(skip_bridges)
    if skip_accounts:
        values["skip_accounts"] = list(skip_accounts)
    rows = query.rows(session.connection(), values)
    if gate is not None:
        rows = _gated(rows, gate)
    return _claim_rows(session, rows, now)


@functools.cache
def _due_query(*, gated: bool, bridges: bool, accounts: bool) -> Select[Any]:
    """The claim's query, built once per shape (this runs for every call, and building it
    and its cache key cost more than running it): ``now``, ``limit`` and the skip lists
    are bound at each run. ``gated`` also reads the bridge's and the account's limits."""
    calls, account_table, numbers = Call.__table__, Account.__table__, Number.__table__
    c = calls.c
    conditions: list[Any] = list(due_conditions(bindparam("now", type_=c.scheduled_at.type)))
    if bridges:
        skipped = bindparam("skip_bridges", expanding=True, type_=c.bridge.type)
        conditions.append(or_(c.bridge.is_(None), c.bridge.not_in(skipped)))
    if accounts:
        skipped = bindparam("skip_accounts", expanding=True, type_=c.account_id.type)
        conditions.append(c.account_id.not_in(skipped))
    columns = list(_command_columns(c))
    if gated:
        columns += [
            numbers.c.channels.label("bridge_channels"),
            account_table.c.channels.label("account_channels"),
            account_table.c.max_cps.label("account_cps"),
        ]
    query = select(*columns)
    if gated:
        query = (
            query.select_from(calls)
            .join(account_table, account_table.c.id == c.account_id)
            .outerjoin(numbers, numbers.c.e164 == c.bridge)
        )
    return (
        query.where(*conditions)
        .order_by(*DUE_ORDER)
        .limit(bindparam("limit", type_=Integer))
        .with_for_update(skip_locked=True, of=calls)
    )


@functools.cache
def _packed_due_query(*, gated: bool, bridges: bool, accounts: bool) -> PackedSelect:
    """:func:`_due_query`, its rows read in one step on SQLite (see ``PackedSelect``)."""
    return PackedSelect(
        _due_query(gated=gated, bridges=bridges, accounts=accounts), order_by=DUE_ORDER
    )


def _gated(rows: Sequence[Any], gate: Gate) -> Sequence[Any]:
    return [
        row
        for row in rows
        if gate(
            Candidate(
                call_id=row.id, account_id=row.account_id, service=row.service,
                from_number=row.from_number, to_number=row.to_number, bridge=row.bridge,
                bridge_channels=row.bridge_channels, account_channels=row.account_channels,
                account_cps=row.account_cps, promotional=row.promotional,
            )  # fmt: skip
        )
    ]


def waiting_on(
    session: Session,
    *,
    now: datetime,
    bridges: dict[str, datetime | None],
    accounts: dict[int, datetime | None],
) -> list[Candidate]:
    """The due queued calls through ``bridges`` or of ``accounts`` (those the claim does
    not read: full), each key mapped to a time: only the calls queued, requeued or due at
    or after it are returned (None: all of them). Locked like the claim's rows on
    PostgreSQL. For the pre-dial checks, which must not wait for a channel: the limits in
    the candidates are not read (None)."""
    if not bridges and not accounts:
        return []
    c = Call.__table__.c
    by_time: dict[datetime | None, tuple[list[str], list[int]]] = {}
    for bridge, since in bridges.items():
        by_time.setdefault(since, ([], []))[0].append(bridge)
    for account_id, since in accounts.items():
        by_time.setdefault(since, ([], []))[1].append(account_id)
    scopes: list[Any] = []
    for since, (some_bridges, some_accounts) in by_time.items():
        keys = [c.bridge.in_(some_bridges)] if some_bridges else []
        keys += [c.account_id.in_(some_accounts)] if some_accounts else []
        scope = or_(*keys)
        if since is not None:
            scope = and_(scope, or_(c.updated_at >= since, c.scheduled_at >= since))
        scopes.append(scope)
    query = (
        select(*_command_columns(c))
        .where(*due_conditions(now), or_(*scopes))
        .order_by(*DUE_ORDER)
        .with_for_update(skip_locked=True)
    )
    return [
        Candidate(
            call_id=row.id, account_id=row.account_id, service=row.service,
            from_number=row.from_number, to_number=row.to_number, bridge=row.bridge,
            bridge_channels=None, account_channels=None, account_cps=None,
            promotional=row.promotional,
        )  # fmt: skip
        for row in session.connection().execute(query)
    ]


def _command_columns(c: Any) -> tuple[Any, ...]:
    """What a :class:`CallCommand` is made of."""
    return (
        c.id, c.account_id, c.service, c.from_number, c.to_number, c.bridge, c.target,
        c.ring_timeout, c.retry, c.retry_interval, c.attempts, c.created_at,
        c.start_time, c.cancel_requested_at, c.callback_url, c.dlr_url, c.promotional,
    )  # fmt: skip


def _claim_rows(session: Session, rows: Sequence[Any], now: datetime) -> list[CallCommand]:
    if not rows:
        return []
    connection = session.connection()  # Core only: no ORM objects for the hot path
    connection.execute(_claim_update(), {"ids": [row.id for row in rows], "now": now})
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


@functools.cache
def _claim_update() -> Update:
    """The claimed calls (``ids``) to dialing, with their first start time (``now``) if they
    have none yet: one statement (each costs the writer a wait for the GIL), built once and
    bound at each claim."""
    calls = Call.__table__
    c = calls.c
    ids = bindparam("ids", expanding=True, type_=c.id.type)
    now = bindparam("now", type_=c.updated_at.type)
    return (
        update(calls)  # type: ignore[arg-type]
        .where(c.id.in_(ids))
        .values(
            state="dialing", attempts=c.attempts + 1, updated_at=now,
            start_time=func.coalesce(c.start_time, now),
        )  # fmt: skip
    )


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
