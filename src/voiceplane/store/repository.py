"""Queries and changes, as keyword-only functions over a :class:`~sqlalchemy.orm.Session`.

The caller owns the transaction: these functions add, change and flush, never commit::

    with factory.begin() as session:          # commits at the end, rolls back on error
        account, api_key = create_account(session, name="Acme")

Writes that the database may refuse (a number registered twice) run in a SAVEPOINT, so an
:class:`~sqlalchemy.exc.IntegrityError` undoes that one write and leaves the rest of the
caller's transaction usable. Arguments outside the contract's small vocabularies (a
number's kind, a call's service or state) raise :class:`ValueError` before any SQL.

Status words are stored as given: this module never spells one (DESIGN.md, Layers).
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import secrets
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, TypedDict, Unpack

from sqlalchemy import ColumnElement, and_, bindparam, func, or_, select, update
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Mapped, Session, selectinload

from voiceplane.store.driver import (
    RowsStatement,
    execute_rows,
    placeholder,
    timestamps_for,
)
from voiceplane.store.models import (
    DEFAULT_STATUS_DIALECT,
    NUMBER_KINDS,
    SERVICES,
    STATES,
    Account,
    ApiKey,
    Call,
    Leg,
    Number,
    UTCDateTime,
    utcnow,
)
from voiceplane.store.progress import CallProgress, LegProgress

ACCOUNT_SID_PREFIX: Final = "VP"
CALL_ID_PREFIX: Final = "VC"
API_KEY_PREFIX: Final = "vpk_"
API_KEY_DISPLAY_LENGTH: Final = len(API_KEY_PREFIX) + 8
MAX_PAGE: Final = 1000

# Compared against when the SID is unknown, so that case costs the same as a wrong key.
_NO_KEY_HASH: Final = hashlib.sha256(b"voiceplane: no such key").hexdigest()


# --- identifiers and keys --------------------------------------------------------------------


def new_account_sid() -> str:
    """A fresh public account SID: ``VP`` and 20 hex digits."""
    return ACCOUNT_SID_PREFIX + secrets.token_hex(10)


def new_call_id() -> str:
    """A fresh public call id: ``VC``, the creation time in ms (12 hex), 20 random hex.

    Ids sort by creation time, which keeps the primary-key index append-mostly.
    """
    return f"{CALL_ID_PREFIX}{time.time_ns() // 1_000_000:012x}{secrets.token_hex(10)}"


def new_api_key() -> str:
    """A fresh API key: ``vpk_`` and 32 random bytes, URL-safe base64 (47 characters)."""
    return API_KEY_PREFIX + secrets.token_urlsafe(32)


def hash_api_key(api_key: str) -> str:
    """What the store keeps of a key: its SHA-256, hex (the key has 256 random bits)."""
    return hashlib.sha256(api_key.encode("utf-8")).hexdigest()


# --- accounts and keys -----------------------------------------------------------------------


def create_account(
    session: Session, *, name: str, status_dialect: str = DEFAULT_STATUS_DIALECT
) -> tuple[Account, str]:
    """A new account with one API key; returns the account and the plain key (shown once)."""
    account = Account(sid=new_account_sid(), name=name, status_dialect=status_dialect)
    with session.begin_nested():
        session.add(account)
        session.flush()
    _, api_key = add_api_key(session, account=account)
    return account, api_key


def add_api_key(session: Session, *, account: Account) -> tuple[ApiKey, str]:
    """Another API key for ``account``; returns the row and the plain key (shown once)."""
    plain = new_api_key()
    row = ApiKey(prefix=plain[:API_KEY_DISPLAY_LENGTH], key_hash=hash_api_key(plain))
    with session.begin_nested():
        account.api_keys.append(row)
        session.flush()
    return row, plain


def revoke_api_key(session: Session, *, api_key: ApiKey, now: datetime | None = None) -> None:
    """Stop ``api_key`` from authenticating (from the end of the caller's transaction)."""
    if api_key.revoked_at is None:
        api_key.revoked_at = now or utcnow()
        session.flush()


def get_account(session: Session, *, sid: str) -> Account | None:
    """The account with public SID ``sid``."""
    return session.scalars(select(Account).where(Account.sid == sid)).one_or_none()


def authenticate(session: Session, *, sid: str, api_key: str) -> Account | None:
    """The account ``sid`` if ``api_key`` is one of its keys not revoked, else None.

    The key's hash is compared with each active key's in constant time; an unknown SID
    takes the same path as a wrong key.
    """
    if not sid or not api_key:
        return None
    account = get_account(session, sid=sid)
    candidates = (
        session.scalars(
            select(ApiKey.key_hash).where(
                ApiKey.account_id == account.id, ApiKey.revoked_at.is_(None)
            )
        ).all()
        if account is not None
        else []
    )
    digest = hash_api_key(api_key).encode("ascii")
    matched = False
    for stored in candidates or [_NO_KEY_HASH]:
        matched |= hmac.compare_digest(digest, stored.encode("ascii"))
    return account if matched and account is not None else None


# --- numbers ---------------------------------------------------------------------------------


def add_number(
    session: Session, *, account: Account, e164: str, kind: str, channels: int = 10
) -> Number:
    """Register ``e164`` for ``account``; a number registered already raises IntegrityError."""
    if kind not in NUMBER_KINDS:
        raise ValueError(f"unknown number kind {kind!r}; expected one of {NUMBER_KINDS}")
    if channels < 0:
        raise ValueError(f"channels must not be negative, got {channels}")
    number = Number(account_id=account.id, e164=e164, kind=kind, channels=channels)
    with session.begin_nested():
        session.add(number)
        session.flush()
    return number


def get_number(session: Session, *, e164: str) -> Number | None:
    """The registered number ``e164``, whichever account has it (incoming routing)."""
    return session.scalars(select(Number).where(Number.e164 == e164)).one_or_none()


def list_numbers(session: Session, *, account: Account, kind: str | None = None) -> list[Number]:
    """The numbers of ``account``, by number."""
    query = select(Number).where(Number.account_id == account.id).order_by(Number.e164)
    if kind is not None:
        query = query.where(Number.kind == kind)
    return list(session.scalars(query))


# --- calls -----------------------------------------------------------------------------------


class CallChanges(TypedDict, total=False):
    """What :func:`update_call` may change; a key given as None clears that field."""

    state: str
    status: str | None
    reason: str | None
    decided_by_rule: str | None
    scheduled_at: datetime | None
    start_time: datetime | None
    answer_time: datetime | None
    end_time: datetime | None
    duration: int
    billsec: int
    attempts: int
    cancel_requested_at: datetime | None


class LegChanges(TypedDict, total=False):
    """What :func:`record_leg` may set and :func:`update_leg` may change."""

    status: str | None
    sip_code: int | None
    sip_reason: str | None
    q850_cause: int | None
    hangup_by: str | None
    start_time: datetime | None
    ring_time: datetime | None
    answer_time: datetime | None
    end_time: datetime | None
    sip_call_id: str | None


def _check_state(state: str) -> None:
    if state not in STATES:
        raise ValueError(f"unknown call state {state!r}; expected one of {STATES}")


class NewCall(TypedDict, total=False):
    """The fields a new call may be given (see :func:`create_call`)."""

    to_number: str | None
    from_number: str | None
    bridge: str | None
    custom: str | None
    callback_url: str | None
    dlr_url: str | None
    ring_timeout: int | None
    scheduled_at: datetime | None
    target: str | None
    retry: int
    retry_interval: int
    state: str
    status: str | None
    reason: str | None
    decided_by_rule: str | None
    promotional: bool | None
    queue_timeout: int | None


def call_row(
    *,
    account_id: int,
    service: str,
    now: datetime | None = None,
    **fields: Unpack[NewCall],
) -> dict[str, Any]:
    """The row of a new call of account ``account_id``, with a fresh public id in ``id``.

    A call refused before dialing can be stored completed at once: give ``state``,
    ``status``, ``reason`` and ``decided_by_rule``.
    """
    if service not in SERVICES:
        raise ValueError(f"unknown service {service!r}; expected one of {SERVICES}")
    _check_state(fields.get("state", "queued"))
    created = now or utcnow()
    row: dict[str, Any] = {"state": "queued", "retry": 0, "retry_interval": 60}
    for name in NewCall.__annotations__:
        row.setdefault(name, None)
    row.update(fields)
    row.update(
        id=new_call_id(), account_id=account_id, service=service, attempts=0, duration=0,
        billsec=0, created_at=created, updated_at=created, cancel_requested_at=None,
        start_time=None, answer_time=None, end_time=None,
    )  # fmt: skip
    return row


def insert_calls(session: Session, rows: list[dict[str, Any]]) -> None:
    """Store rows made by :func:`call_row` on the driver, no ORM objects (this is the API's
    hot path; the store writer batches the rows of many requests; see
    ``driver.execute_rows``). Every row must have the keys of the first."""
    if not rows:
        return
    connection = session.connection()
    columns = tuple(rows[0])
    statement, timestamps = _insert_call_sql(connection.dialect, columns)
    stamp = timestamps_for(connection.dialect)
    values = [
        tuple(
            stamp(row[name]) if is_time else row[name]
            for name, is_time in zip(columns, timestamps, strict=True)
        )
        for row in rows
    ]
    execute_rows(connection, statement, values)


@functools.cache
def _insert_call_sql(
    dialect: Dialect, columns: tuple[str, ...]
) -> tuple[RowsStatement, tuple[bool, ...]]:
    """The INSERT for rows with ``columns``, and which of them are timestamps."""
    table = Call.__table__.c
    unknown = [name for name in columns if name not in table]
    if unknown:
        raise ValueError(f"not columns of calls: {', '.join(unknown)}")
    mark = placeholder(dialect)
    head = f"INSERT INTO calls ({', '.join(columns)}) VALUES "
    statement = RowsStatement(
        head=head, width=len(columns), tail="", mark=mark,
        single=f"{head}({', '.join([mark] * len(columns))})",
    )  # fmt: skip
    return statement, tuple(isinstance(table[name].type, UTCDateTime) for name in columns)


def insert_call(
    session: Session,
    *,
    account_id: int,
    service: str,
    now: datetime | None = None,
    **fields: Unpack[NewCall],
) -> str:
    """Store a new call of account ``account_id``; its public id."""
    row = call_row(account_id=account_id, service=service, now=now, **fields)
    insert_calls(session, [row])
    return str(row["id"])


def create_call(
    session: Session,
    *,
    account: Account,
    service: str,
    now: datetime | None = None,
    **fields: Unpack[NewCall],
) -> Call:
    """Like :func:`insert_call`, for an account object, returning the stored call."""
    call_id = insert_call(session, account_id=account.id, service=service, now=now, **fields)
    call = session.get(Call, call_id)
    assert call is not None
    return call


def get_call(session: Session, *, account: Account, call_id: str) -> Call | None:
    """The call ``call_id`` if it belongs to ``account``; another account's call is None."""
    return session.scalars(
        select(Call).where(Call.id == call_id, Call.account_id == account.id)
    ).one_or_none()


def find_call(session: Session, *, call_id: str) -> Call | None:
    """The call ``call_id`` of any account: for the engine, never for an API answer."""
    return session.get(Call, call_id)


def _lists(column: Mapped[str | None], number: str) -> ColumnElement[bool]:
    """``column`` is ``number``, or a ","-joined list of numbers rung at once holding it."""
    return or_(column == number, ("," + column + ",").contains("," + number + ","))


class CallQuery(TypedDict, total=False):
    """The filters of :func:`list_calls` and :func:`count_calls`; None (or absent) is any.

    ``number`` matches the to, from or bridge number; ``custom`` the call's ``custom``
    exactly; ``created_from`` is inclusive and ``created_to`` exclusive.
    """

    service: str | None
    state: str | None
    status: str | None
    number: str | None
    custom: str | None
    created_from: datetime | None
    created_to: datetime | None


# A sort is a column and a direction ("-": descending); ties are broken by id in the same
# direction, so every sort is a total order and a keyset page can start after any call.
CALL_SORTS: Final = ("-created_at", "created_at", "-duration", "duration", "-billsec", "billsec")
DEFAULT_CALL_SORT: Final = "-created_at"
_SORT_COLUMNS: Final[dict[str, Any]] = {
    "created_at": Call.created_at,
    "duration": Call.duration,
    "billsec": Call.billsec,
}


@dataclass(frozen=True, slots=True)
class CallPosition:
    """A call's place in a sort: its sort value and its id (where a keyset page starts)."""

    value: datetime | int
    id: str


def _sort_column(sort: str) -> tuple[Any, bool]:
    """The column of ``sort`` and whether it is descending."""
    if sort not in CALL_SORTS:
        raise ValueError(f"unknown sort {sort!r}; expected one of {CALL_SORTS}")
    return _SORT_COLUMNS[sort.removeprefix("-")], sort.startswith("-")


def call_position(call: Call, *, sort: str) -> CallPosition:
    """Where ``call`` stands in ``sort``: give it as ``after`` to page on past it."""
    _sort_column(sort)
    value: datetime | int = getattr(call, sort.removeprefix("-"))
    return CallPosition(value, call.id)


def _call_filters(*, account: Account, **query: Unpack[CallQuery]) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = [Call.account_id == account.id]
    for name in ("service", "state", "status", "custom"):
        value = query.get(name)
        if value is not None:
            conditions.append(getattr(Call, name) == value)
    number = query.get("number")
    if number is not None:
        conditions.append(
            or_(_lists(Call.to_number, number), _lists(Call.from_number, number),
                Call.bridge == number)
        )  # fmt: skip
    created_from, created_to = query.get("created_from"), query.get("created_to")
    if created_from is not None:
        conditions.append(Call.created_at >= created_from)
    if created_to is not None:
        conditions.append(Call.created_at < created_to)
    return conditions


def list_calls(
    session: Session,
    *,
    account: Account,
    limit: int = 50,
    offset: int = 0,
    sort: str = DEFAULT_CALL_SORT,
    after: CallPosition | None = None,
    **query: Unpack[CallQuery],
) -> list[Call]:
    """The calls of ``account`` matching ``query`` (ANDed), in ``sort`` order, with their legs.

    ``sort`` is one of :data:`CALL_SORTS` (default newest first). Page by ``offset``, or by
    keyset: ``after`` (a :func:`call_position`) starts the page after that call, which stays
    right while new calls arrive. ``limit`` is 1 to 1000.
    """
    if not 1 <= limit <= MAX_PAGE:
        raise ValueError(f"limit must be 1 to {MAX_PAGE}, got {limit}")
    return _calls(session, account=account, limit=limit, offset=offset, sort=sort, after=after,
                  query=query)  # fmt: skip


def calls_page(
    session: Session,
    *,
    account: Account,
    limit: int = 50,
    offset: int = 0,
    sort: str = DEFAULT_CALL_SORT,
    after: CallPosition | None = None,
    **query: Unpack[CallQuery],
) -> tuple[list[Call], bool]:
    """:func:`list_calls`, and whether more calls follow this page (one more row is read)."""
    if not 1 <= limit <= MAX_PAGE:
        raise ValueError(f"limit must be 1 to {MAX_PAGE}, got {limit}")
    found = _calls(session, account=account, limit=limit + 1, offset=offset, sort=sort,
                   after=after, query=query)  # fmt: skip
    return found[:limit], len(found) > limit


def _calls(
    session: Session,
    *,
    account: Account,
    limit: int,
    offset: int,
    sort: str,
    after: CallPosition | None,
    query: CallQuery,
) -> list[Call]:
    if offset < 0:
        raise ValueError(f"offset must not be negative, got {offset}")
    column, descending = _sort_column(sort)
    conditions = _call_filters(account=account, **query)
    if after is not None:
        # (column, id) beyond the position, spelt out: the same SQL on SQLite and PostgreSQL.
        if descending:
            beyond = or_(column < after.value, and_(column == after.value, Call.id < after.id))
        else:
            beyond = or_(column > after.value, and_(column == after.value, Call.id > after.id))
        conditions.append(beyond)
    order = (column.desc(), Call.id.desc()) if descending else (column.asc(), Call.id.asc())
    statement = select(Call).where(*conditions).order_by(*order).limit(limit).offset(offset)
    return list(session.scalars(statement))


def count_calls(session: Session, *, account: Account, **query: Unpack[CallQuery]) -> int:
    """How many calls :func:`list_calls` would page through with the same filters."""
    conditions = _call_filters(account=account, **query)
    return session.scalar(select(func.count()).select_from(Call).where(*conditions)) or 0


def calls_in_states(session: Session, states: Iterable[str]) -> list[Call]:
    """Every call, of any account, in one of ``states``, oldest first (restart recovery)."""
    wanted = list(states)
    for state in wanted:
        _check_state(state)
    if not wanted:
        return []
    query = select(Call).where(Call.state.in_(wanted)).order_by(Call.created_at, Call.id)
    return list(session.scalars(query))


def due_conditions(now: datetime | ColumnElement[Any]) -> tuple[ColumnElement[bool], ...]:
    """What makes a call due at ``now``: queued, and unscheduled or scheduled by then.
    ``now`` may be a bound parameter, for a statement built once (``store.queue``)."""
    return (
        Call.state == "queued",
        or_(Call.scheduled_at.is_(None), Call.scheduled_at <= now),
    )


# Oldest due first: by when it became due, then by id for a stable order.
DUE_ORDER: Final = (func.coalesce(Call.scheduled_at, Call.created_at), Call.id)


def due_calls(session: Session, *, now: datetime, limit: int = 100) -> list[Call]:
    """Queued calls whose time has come (no ``scheduled_at``, or not after ``now``).

    Oldest first. On PostgreSQL the rows are locked ``FOR UPDATE SKIP LOCKED`` until the
    caller's transaction ends, so several engines can take work from one queue; move them
    out of ``queued`` in the same transaction. SQLite has one writer at a time anyway.
    The engine's own claim (``store.queue.claim_due``) is the same query in plain SQL.
    """
    if limit < 1:
        raise ValueError(f"limit must be positive, got {limit}")
    query = (
        select(Call)
        .where(*due_conditions(now))
        .order_by(*DUE_ORDER)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return list(session.scalars(query))


def update_call(session: Session, *, call: Call, **changes: Unpack[CallChanges]) -> Call:
    """Change the fields named in ``changes`` (``updated_at`` follows) and flush."""
    if "state" in changes:
        _check_state(changes["state"])
    for field, value in changes.items():
        setattr(call, field, value)
    session.flush()
    return call


def record_leg(
    session: Session, *, call: Call, leg: int, number: str, **fields: Unpack[LegChanges]
) -> Leg:
    """Add a try of leg number ``leg`` (1, 2, ...) to ``call``, after the rows it has."""
    if leg < 1:
        raise ValueError(f"leg numbers start at 1, got {leg}")
    seq = max((row.seq for row in call.legs), default=0) + 1
    row = Leg(leg=leg, seq=seq, number=number, **fields)
    with session.begin_nested():
        call.legs.append(row)
        session.flush()
    return row


def get_leg(call: Call, leg: int) -> Leg | None:
    """The latest try of leg number ``leg`` of ``call``, if one was recorded."""
    return next((row for row in reversed(call.legs) if row.leg == leg), None)


def find_leg_by_sip_call_id(session: Session, *, sip_call_id: str) -> Leg | None:
    """The leg whose SIP dialog has Call-ID ``sip_call_id`` (the newest, if reused)."""
    query = select(Leg).where(Leg.sip_call_id == sip_call_id).order_by(Leg.id.desc()).limit(1)
    return session.scalars(query).first()


def update_leg(session: Session, *, leg: Leg, **changes: Unpack[LegChanges]) -> Leg:
    """Change the fields named in ``changes`` and flush."""
    for field, value in changes.items():
        setattr(leg, field, value)
    session.flush()
    return leg


# --- the call record -------------------------------------------------------------------------


def iso_utc(moment: datetime | None) -> str | None:
    """``2025-01-31T09:30:00.250Z``: UTC, milliseconds, ``Z``; None stays None."""
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def leg_record(leg: Leg | LegProgress) -> dict[str, object]:
    """One entry of a call record's ``legs``."""
    return {
        "leg": leg.leg,
        "number": leg.number,
        "status": leg.status,
        "sip_code": leg.sip_code,
        "sip_reason": leg.sip_reason,
        "q850_cause": leg.q850_cause,
        "hangup_by": leg.hangup_by,
        "start_time": iso_utc(leg.start_time),
        "ring_time": iso_utc(leg.ring_time),
        "answer_time": iso_utc(leg.answer_time),
        "end_time": iso_utc(leg.end_time),
    }


def call_record(call: Call) -> dict[str, object]:
    """The call record of DESIGN.md, Contract: exactly its keys, times in UTC with ``Z``."""
    fields = {name: getattr(call, name) for name in _RECORD_FIELDS}
    return _record(fields, sorted(call.legs, key=lambda leg: leg.seq))


@dataclass(frozen=True, slots=True)
class StoredRecord:
    """A call's record as a snapshot made it, with what reporting it needs."""

    record: dict[str, object]
    account_id: int
    status_dialect: str
    state: str
    callback_url: str | None
    dlr_url: str | None


# The call's own fields in its record; the rest of a record is engine-owned (CallProgress).
_RECORD_FIELDS: Final = (
    "id", "service", "state", "status", "from_number", "to_number", "bridge", "custom",
    "reason", "decided_by_rule", "created_at", "start_time", "answer_time", "end_time",
    "duration", "billsec", "keypress", "recording",
)  # fmt: skip
_FIXED_FIELDS: Final = ("id", "service", "from_number", "to_number", "bridge", "custom",
                        "created_at")  # fmt: skip
# Built once with a bound parameter: building the statement per batch cost more than running it.
_FIXED: Final = (
    select(
        *(Call.__table__.c[name] for name in _FIXED_FIELDS),
        Call.account_id, Call.callback_url, Call.dlr_url, Account.status_dialect,
    )  # fmt: skip
    .join(Account, Account.id == Call.account_id)
    .where(Call.id.in_(bindparam("ids", expanding=True)))
)


def snapshot_records(
    session: Session, snapshots: Sequence[CallProgress]
) -> list[StoredRecord | None]:
    """The record each of ``snapshots`` makes, in order (None for an unknown call).

    The call's fixed fields (numbers, ``custom``, creation) are read in one query for all of
    them; everything else comes from the snapshot itself, so two snapshots of one call in a
    batch each give the record as it was at their own moment. The same keys and values as
    :func:`call_record` once the snapshot is stored (a test holds them equal).
    """
    if not snapshots:
        return []
    ids = list({snapshot.call_id for snapshot in snapshots})
    fixed = {
        row.id: row for row in session.connection().execute(_FIXED, {"ids": ids})
    }
    records: list[StoredRecord | None] = []
    for snapshot in snapshots:
        row = fixed.get(snapshot.call_id)
        if row is None:
            records.append(None)
            continue
        fields: dict[str, Any] = {name: getattr(row, name) for name in _FIXED_FIELDS}
        fields.update(
            state=snapshot.state, status=snapshot.status, reason=snapshot.reason,
            decided_by_rule=snapshot.decided_by_rule, start_time=snapshot.start_time,
            answer_time=snapshot.answer_time, end_time=snapshot.end_time,
            duration=snapshot.duration, billsec=snapshot.billsec,
            keypress=snapshot.keypress, recording=snapshot.recording,
        )  # fmt: skip
        legs = sorted(snapshot.legs, key=lambda leg: leg.seq)
        records.append(
            StoredRecord(
                record=_record(fields, legs),
                account_id=row.account_id,
                status_dialect=row.status_dialect,
                state=snapshot.state,
                callback_url=row.callback_url,
                dlr_url=row.dlr_url,
            )
        )
    return records


def _record(call: Mapping[str, Any], legs: Iterable[Leg | LegProgress]) -> dict[str, object]:
    return {
        "id": call["id"],
        "service": call["service"],
        "state": call["state"],
        "status": call["status"],
        "from": call["from_number"],
        "to": call["to_number"],
        "bridge": call["bridge"],
        "custom": call["custom"],
        "reason": call["reason"],
        "rule": call["decided_by_rule"],
        "created_at": iso_utc(call["created_at"]),
        "start_time": iso_utc(call["start_time"]),
        "answer_time": iso_utc(call["answer_time"]),
        "end_time": iso_utc(call["end_time"]),
        "duration": call["duration"],
        "billsec": call["billsec"],
        "keypress": call["keypress"],  # incoming calls: the keys pressed ("1,2")
        "recording": call["recording"],  # incoming calls: the voicemail's file
        # A waiting call's place in its account's queue is read when the record is shown
        # (voiceplane.api.records); stored records and callbacks say null.
        "queue_position": None,
        "legs": [leg_record(leg) for leg in legs],
    }


# --- for the API -----------------------------------------------------------------------------


def authenticate_key(session: Session, *, api_key: str) -> Account | None:
    """The account whose active API key is ``api_key``, else None (the legacy API has no SID).

    Looked up by the key's hash: keys carry 256 random bits, so the lookup's timing tells
    nothing useful about other keys.
    """
    if not api_key:
        return None
    return session.scalars(
        select(Account)
        .join(ApiKey, ApiKey.account_id == Account.id)
        .where(ApiKey.key_hash == hash_api_key(api_key), ApiKey.revoked_at.is_(None))
    ).one_or_none()


def request_cancel(session: Session, *, call: Call, now: datetime | None = None) -> bool:
    """Ask the engine to end ``call``: set ``cancel_requested_at`` unless it has completed.

    Returns False, changing nothing, when the call has completed. A call asked already keeps
    its first request time. The check and the write are one UPDATE, so an engine completing
    the call at the same moment cannot slip between them.
    """
    moment = now or utcnow()
    session.execute(
        update(Call)
        .where(
            Call.id == call.id,
            Call.state != "completed",
            Call.cancel_requested_at.is_(None),
        )
        .values(cancel_requested_at=moment, updated_at=moment)
        .execution_options(synchronize_session=False)
    )
    session.refresh(call)
    return call.state != "completed"


def recent_calls(session: Session, *, limit: int = 50) -> list[Call]:
    """The newest calls of every account, with their accounts (the admin's view)."""
    if not 1 <= limit <= MAX_PAGE:
        raise ValueError(f"limit must be 1 to {MAX_PAGE}, got {limit}")
    query = (
        select(Call)
        .options(selectinload(Call.account))
        .order_by(Call.created_at.desc(), Call.id.desc())
        .limit(limit)
    )
    return list(session.scalars(query))
