"""The callback outbox: rows written with the change they report, taken by the dispatcher.

Like the repository, these functions take a session and never commit: :func:`enqueue` runs
inside the transaction that stores a call's status change, so the callback exists exactly
when the status does (a crash loses both or neither). What comes out is plain data
(:class:`OutboxMessage`, :class:`CallbackReport`), not ORM rows bound to a session.

Delivery order: rows of one call to one URL go out in ``seq`` order; :func:`due` does not
return a row while an earlier row of its call and URL is still pending (neither delivered
nor given up). Different URLs (a ``callback`` and a ``dlrurl``) do not wait for each other.

A row being sent is leased: :func:`claim` moves its ``next_attempt_at`` past the time the
send can take, so another dispatcher (or this one after a restart) sends it again only once
that time has passed: at least once, always with the same ``webhook-id``.
"""

from __future__ import annotations

import functools
import json
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from sqlalchemy import (
    ColumnElement,
    Connection,
    Select,
    and_,
    bindparam,
    exists,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Session, aliased

from .driver import PackedSelect, placeholder, timestamps_for
from .models import (
    OUTBOX_KINDS,
    OUTBOX_METHODS,
    Outbox,
    OutboxAttempt,
    WebhookSecret,
    utcnow,
)

WEBHOOK_ID_PREFIX: Final = "msg_"


@dataclass(frozen=True, slots=True)
class NewCallback:
    """A callback to write: POST ``payload`` as JSON, or GET ``url`` (payload None)."""

    kind: str  # one of OUTBOX_KINDS
    event: str  # e.g. "completed", "ringing"
    url: str
    method: str  # "GET" | "POST"
    payload: Mapping[str, object] | None = None


@dataclass(frozen=True, slots=True)
class OutboxMessage:
    """A row to send, as the dispatcher sees it."""

    id: str
    account_id: int
    call_id: str
    kind: str
    event: str
    seq: int
    url: str
    method: str
    body: str | None
    attempts: int  # attempts made before this one
    created_at: datetime


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    at: datetime
    http_status: int | None
    error: str | None
    duration_ms: int


@dataclass(frozen=True, slots=True)
class CallbackReport:
    """One callback of a call and every attempt at it (what the API shows)."""

    message: OutboxMessage
    next_attempt_at: datetime
    delivered_at: datetime | None
    given_up_at: datetime | None
    last_error: str | None
    attempts: tuple[AttemptRecord, ...]


def new_webhook_id() -> str:
    return WEBHOOK_ID_PREFIX + secrets.token_urlsafe(18)


def _check(callback: NewCallback) -> None:
    if callback.kind not in OUTBOX_KINDS:
        raise ValueError(f"unknown callback kind {callback.kind!r}; expected one of {OUTBOX_KINDS}")
    if callback.method not in OUTBOX_METHODS:
        raise ValueError(
            f"unknown callback method {callback.method!r}; expected one of {OUTBOX_METHODS}"
        )
    if callback.method == "GET" and callback.payload is not None:
        raise ValueError("a GET callback carries its values in its URL, not a payload")
    if callback.method == "POST" and callback.payload is None:
        raise ValueError("a POST callback needs a payload")
    if not callback.url:
        raise ValueError("a callback needs a URL")


# --- the hot statements, on the driver itself --------------------------------------------------
# Every reported change of every call writes outbox rows, and every attempt updates one:
# thousands a second (bench/callbacks.py). Through SQLAlchemy's compiled statements each row
# paid for its parameters' processing one by one (about half the writer's time); here a
# batch is one executemany of plain tuples on the DBAPI cursor (see .driver).

_OUTBOX_COLUMNS: Final = (
    "id", "account_id", "call_id", "kind", "event", "seq", "url", "method", "body",
    "created_at", "next_attempt_at", "attempts",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class _DriverSql:
    insert_outbox: str
    insert_attempts: str
    finish_attempts: str


@functools.cache
def _driver_sql(dialect: Dialect) -> _DriverSql:
    mark = placeholder(dialect)

    def marks(count: int) -> str:
        return ", ".join([mark] * count)

    pending = "delivered_at IS NULL AND given_up_at IS NULL"
    return _DriverSql(
        insert_outbox=(
            f"INSERT INTO outbox ({', '.join(_OUTBOX_COLUMNS)}) "
            f"VALUES ({marks(len(_OUTBOX_COLUMNS))})"
        ),
        insert_attempts=(
            "INSERT INTO outbox_attempts (outbox_id, at, http_status, error, duration_ms) "
            f"VALUES ({marks(5)})"
        ),
        finish_attempts=(
            f"UPDATE outbox SET attempts = attempts + 1, "
            f"next_attempt_at = COALESCE({mark}, next_attempt_at), delivered_at = {mark}, "
            f"given_up_at = {mark}, last_error = {mark} WHERE id = {mark} AND {pending}"
        ),
    )


def _executemany(connection: Connection, sql: str, rows: list[tuple[Any, ...]]) -> None:
    connection.exec_driver_sql(sql, rows)  # a list of tuples: one executemany


def _pending(row: type[Outbox]) -> list[ColumnElement[bool]]:
    return [row.delivered_at.is_(None), row.given_up_at.is_(None)]


# Every callback already written for some calls: their numbering, and which are not
# finished (a new callback to the same URL must wait for those).
# Read in one step on SQLite (driver.PackedSelect): the writer runs this for every batch of
# reports, and each row of a plain read could wait for the GIL under load.
_EXISTING: Final = PackedSelect(
    select(
        Outbox.call_id, Outbox.url, Outbox.seq, and_(*_pending(Outbox)).label("pending")
    ).where(Outbox.call_id.in_(bindparam("call_ids", expanding=True))),
    order_by=(Outbox.call_id, Outbox.seq),
)

# (account id, call id, its new callbacks in order)
CallCallbacks = tuple[int, str, Sequence[NewCallback]]


@dataclass(frozen=True, slots=True)
class Written:
    """The callbacks :func:`enqueue_many` wrote for one entry, and which of them are leased
    to the caller (to send now)."""

    messages: tuple[OutboxMessage, ...] = ()
    leased: tuple[OutboxMessage, ...] = ()


def enqueue(
    session: Session,
    *,
    account_id: int,
    call_id: str,
    callbacks: Iterable[NewCallback],
    now: datetime | None = None,
) -> list[str]:
    """Write ``callbacks`` of one call, due at once, numbered after the call's earlier ones.

    Call it in the transaction that stores the change being reported. A POST payload is
    stored as JSON with ``"sequence"`` (its ``seq``) added. Returns the webhook ids, in order.
    Callers write the callbacks of one call from one place at a time (the engine does): two
    transactions numbering the same call at once would collide on ``(call_id, seq)``.
    """
    (written,) = enqueue_many(session, [(account_id, call_id, list(callbacks))], now=now)
    return [message.id for message in written.messages]


def enqueue_many(
    session: Session,
    batch: Sequence[CallCallbacks],
    *,
    now: datetime | None = None,
    lease_until: datetime | None = None,
) -> list[Written]:
    """:func:`enqueue` for several calls (a call may appear more than once, in order) in two
    statements; per entry of ``batch``, the callbacks written.

    With ``lease_until``, a callback that nothing holds up (no earlier unfinished callback
    of its call to its URL) is written leased until then instead of due at once: the caller
    sends it itself, now, without the dispatcher having to find it first. If the caller dies,
    the lease ends and the dispatcher sends it, like any other.
    """
    for _account_id, _call_id, callbacks in batch:
        for callback in callbacks:
            _check(callback)
    moment = now or utcnow()
    if not any(callbacks for _account_id, _call_id, callbacks in batch):
        return [Written() for _entry in batch]
    connection = session.connection()
    call_ids = list({call_id for _account_id, call_id, callbacks in batch if callbacks})
    last: dict[str, int] = {}
    held: set[tuple[str, str]] = set()  # (call, URL) with an unfinished callback
    for call_id, url, seq, pending in _EXISTING.rows(connection, {"call_ids": call_ids}):
        last[call_id] = max(last.get(call_id, 0), seq)
        if pending:
            held.add((call_id, url))
    rows: list[tuple[Any, ...]] = []
    written: list[Written] = []
    for account_id, call_id, callbacks in batch:
        messages: list[OutboxMessage] = []
        leased: list[OutboxMessage] = []
        number = last.get(call_id, 0)
        for callback in callbacks:
            number += 1
            body = None
            if callback.payload is not None:
                body = json.dumps({**callback.payload, "sequence": number}, separators=(",", ":"))
            due = moment
            if lease_until is not None and (call_id, callback.url) not in held:
                due = lease_until
            held.add((call_id, callback.url))
            webhook_id = new_webhook_id()
            rows.append(
                (webhook_id, account_id, call_id, callback.kind, callback.event, number,
                 callback.url, callback.method, body, moment, due, 0)
            )  # fmt: skip
            message = OutboxMessage(
                id=webhook_id, account_id=account_id, call_id=call_id, kind=callback.kind,
                event=callback.event, seq=number, url=callback.url, method=callback.method,
                body=body, attempts=0, created_at=moment,
            )  # fmt: skip
            messages.append(message)
            if due is not moment:
                leased.append(message)
        last[call_id] = number
        written.append(Written(tuple(messages), tuple(leased)))
    sql = _driver_sql(connection.dialect)
    stamp = timestamps_for(connection.dialect)
    _executemany(
        connection, sql.insert_outbox,
        [(*row[:9], stamp(row[9]), stamp(row[10]), row[11]) for row in rows],
    )  # fmt: skip
    return written


def _message(row: Outbox) -> OutboxMessage:
    return OutboxMessage(
        id=row.id,
        account_id=row.account_id,
        call_id=row.call_id,
        kind=row.kind,
        event=row.event,
        seq=row.seq,
        url=row.url,
        method=row.method,
        body=row.body,
        attempts=row.attempts,
        created_at=row.created_at,
    )


def _due_statement() -> Select[*tuple[Any, ...]]:
    # Built once: the dispatcher runs it after every delivery, and building it (an alias,
    # a correlated EXISTS) and computing its cache key each time was a seventh of the CPU
    # of bench/callbacks.py. Core columns, not ORM rows: plain data comes out anyway.
    earlier = aliased(Outbox)
    held_up = exists().where(
        earlier.call_id == Outbox.call_id,
        earlier.url == Outbox.url,
        earlier.seq < Outbox.seq,
        *_pending(earlier),
    )
    return (
        select(
            Outbox.id, Outbox.account_id, Outbox.call_id, Outbox.kind, Outbox.event,
            Outbox.seq, Outbox.url, Outbox.method, Outbox.body, Outbox.attempts,
            Outbox.created_at,
        )  # fmt: skip
        .where(*_pending(Outbox), Outbox.next_attempt_at <= bindparam("now"), ~held_up)
        .order_by(Outbox.next_attempt_at, Outbox.call_id, Outbox.seq)
        .limit(bindparam("limit"))
        .with_for_update(skip_locked=True, of=Outbox)
    )


# Read in one step on SQLite (driver.PackedSelect), like the calls the engine claims.
_DUE: Final = PackedSelect(
    _due_statement(), order_by=(Outbox.next_attempt_at, Outbox.call_id, Outbox.seq)
)


def due(session: Session, *, now: datetime, limit: int = 100) -> list[OutboxMessage]:
    """Pending rows whose time has come and that no earlier row of their call and URL holds up.

    Oldest due first. On PostgreSQL they are locked ``FOR UPDATE SKIP LOCKED`` until the
    caller's transaction ends (lease or finish them in it); SQLite has one writer anyway.
    """
    if limit < 1:
        raise ValueError(f"limit must be positive, got {limit}")
    return [
        OutboxMessage(*row)
        for row in _DUE.rows(session.connection(), {"now": now, "limit": limit})
    ]


def lease(session: Session, ids: Sequence[str], *, until: datetime) -> None:
    """Hold ``ids`` until ``until``: nobody takes them before (their send is under way)."""
    if ids:
        session.execute(
            update(Outbox)
            .where(Outbox.id.in_(ids))
            .values(next_attempt_at=until)
            .execution_options(synchronize_session=False)
        )


def claim(
    session: Session, *, now: datetime, limit: int, lease_until: datetime
) -> list[OutboxMessage]:
    """:func:`due`, leased until ``lease_until`` in the same transaction."""
    if lease_until <= now:
        raise ValueError("a lease must end after now")
    messages = due(session, now=now, limit=limit)
    lease(session, [message.id for message in messages], until=lease_until)
    return messages


def release(session: Session, ids: Sequence[str], *, now: datetime) -> None:
    """Make leased rows that were not sent due again at ``now`` (a dispatcher stopping)."""
    if ids:
        session.execute(
            update(Outbox)
            .where(Outbox.id.in_(ids), *_pending(Outbox))
            .values(next_attempt_at=now)
            .execution_options(synchronize_session=False)
        )


def record_attempt(
    session: Session,
    *,
    message_id: str,
    at: datetime,
    http_status: int | None,
    error: str | None,
    duration_ms: int,
) -> None:
    """Keep one attempt at ``message_id`` and count it."""
    if duration_ms < 0:
        raise ValueError(f"duration_ms must not be negative, got {duration_ms}")
    session.execute(
        insert(OutboxAttempt),
        [
            {
                "outbox_id": message_id,
                "at": at,
                "http_status": http_status,
                "error": error,
                "duration_ms": duration_ms,
            }
        ],
    )
    session.execute(
        update(Outbox)
        .where(Outbox.id == message_id)
        .values(attempts=Outbox.attempts + 1)
        .execution_options(synchronize_session=False)
    )


def _finish(session: Session, message_id: str, **values: object) -> None:
    session.execute(
        update(Outbox)
        .where(Outbox.id == message_id, *_pending(Outbox))
        .values(**values)
        .execution_options(synchronize_session=False)
    )


def mark_delivered(session: Session, *, message_id: str, at: datetime) -> None:
    _finish(session, message_id, delivered_at=at, last_error=None)


def schedule_retry(session: Session, *, message_id: str, at: datetime, error: str) -> None:
    """Send ``message_id`` again at ``at``."""
    _finish(session, message_id, next_attempt_at=at, last_error=error)


def give_up(session: Session, *, message_id: str, at: datetime, error: str) -> None:
    """Stop trying ``message_id`` (its retry period is over); it stays, with its attempts."""
    _finish(session, message_id, given_up_at=at, last_error=error)


@dataclass(frozen=True, slots=True)
class AttemptResult:
    """One finished attempt and what follows from it, as :func:`record_results` stores it.

    Exactly one of ``delivered_at`` (a 2xx), ``retry_at`` (send again then) and
    ``given_up_at`` (its retry period is over) is set.
    """

    message_id: str
    at: datetime
    http_status: int | None
    error: str | None
    duration_ms: int
    delivered_at: datetime | None = None
    retry_at: datetime | None = None
    given_up_at: datetime | None = None

    def __post_init__(self) -> None:
        if self.duration_ms < 0:
            raise ValueError(f"duration_ms must not be negative, got {self.duration_ms}")
        ends = (self.delivered_at, self.retry_at, self.given_up_at)
        if sum(end is not None for end in ends) != 1:
            raise ValueError("an attempt is delivered, retried or given up: exactly one")


def record_results(session: Session, results: Sequence[AttemptResult]) -> None:
    """Keep each attempt and finish or reschedule its row: two executemany statements for
    any number of results (the dispatcher's hot path; a ``StoreWriter`` bulk apply).

    A row already finished (sent twice after a lease ran out) keeps its first ending; the
    attempt is kept all the same."""
    if not results:
        return
    connection = session.connection()
    sql = _driver_sql(connection.dialect)
    stamp = timestamps_for(connection.dialect)
    _executemany(
        connection, sql.insert_attempts,
        [(result.message_id, stamp(result.at), result.http_status, result.error,
          result.duration_ms) for result in results],
    )  # fmt: skip
    _executemany(
        connection, sql.finish_attempts,
        [(stamp(result.retry_at), stamp(result.delivered_at), stamp(result.given_up_at),
          result.error, result.message_id) for result in results],
    )  # fmt: skip


def attempts_for(session: Session, *, call_id: str) -> list[CallbackReport]:
    """Every callback of ``call_id`` in ``seq`` order, each with its attempts, oldest first."""
    query = select(Outbox).where(Outbox.call_id == call_id).order_by(Outbox.seq)
    rows = list(session.scalars(query))
    if not rows:
        return []
    found: dict[str, list[AttemptRecord]] = {}
    attempts = (
        select(OutboxAttempt)
        .where(OutboxAttempt.outbox_id.in_([row.id for row in rows]))
        .order_by(OutboxAttempt.id)
    )
    for attempt in session.scalars(attempts):
        found.setdefault(attempt.outbox_id, []).append(
            AttemptRecord(attempt.at, attempt.http_status, attempt.error, attempt.duration_ms)
        )
    return [
        CallbackReport(
            message=_message(row),
            next_attempt_at=row.next_attempt_at,
            delivered_at=row.delivered_at,
            given_up_at=row.given_up_at,
            last_error=row.last_error,
            attempts=tuple(found.get(row.id, ())),
        )
        for row in rows
    ]


def pending_count(session: Session) -> int:
    """How many callbacks are neither delivered nor given up."""
    query = select(func.count()).select_from(Outbox).where(*_pending(Outbox))
    return session.scalar(query) or 0


# --- signing secrets -------------------------------------------------------------------------


def rotate_secret(
    session: Session, *, account_id: int, secret: str, now: datetime | None = None
) -> None:
    """Make ``secret`` the account's signing secret; the current one retires at ``now``."""
    if not secret:
        raise ValueError("a signing secret must not be empty")
    moment = now or utcnow()
    session.execute(
        update(WebhookSecret)
        .where(WebhookSecret.account_id == account_id, WebhookSecret.retired_at.is_(None))
        .values(retired_at=moment)
        .execution_options(synchronize_session=False)
    )
    session.add(WebhookSecret(account_id=account_id, secret=secret, created_at=moment))
    session.flush()


def signing_secrets(
    session: Session, *, account_ids: Iterable[int], now: datetime, grace: timedelta
) -> dict[int, list[str]]:
    """Per account, the secrets that sign now, newest first: the current one, then those
    retired less than ``grace`` ago. An account without any is absent."""
    wanted = sorted(set(account_ids))
    found: dict[int, list[str]] = {}
    if not wanted:
        return found
    query = (
        select(WebhookSecret.account_id, WebhookSecret.secret)
        .where(
            WebhookSecret.account_id.in_(wanted),
            or_(
                WebhookSecret.retired_at.is_(None),
                and_(WebhookSecret.retired_at > now - grace),
            ),
        )
        .order_by(WebhookSecret.account_id, WebhookSecret.id.desc())
    )
    for account_id, secret in session.execute(query):
        found.setdefault(account_id, []).append(secret)
    return found
