"""The driver-level timestamp text is exactly what the column type stores."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import create_engine, select
from sqlalchemy.dialects import sqlite
from sqlalchemy.orm import Session, sessionmaker

from voiceplane.store import repository
from voiceplane.store.driver import (
    PackedSelect,
    RowsStatement,
    Timestamps,
    execute_rows,
    sqlite_text,
    timestamp_converter,
    timestamps_for,
)
from voiceplane.store.models import Call

_COLUMN = Call.__table__.c.updated_at.type.dialect_impl(sqlite.dialect())
_ORM_TEXT = _COLUMN.bind_processor(sqlite.dialect())

_aware = st.datetimes(
    min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30),
    timezones=st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30)),
                               timezone(timedelta(hours=-8))]),
)  # fmt: skip


@given(_aware)
def test_sqlite_text_is_the_column_types_text(value: datetime) -> None:
    assert _ORM_TEXT is not None
    assert sqlite_text(value) == _ORM_TEXT(value)


def test_whole_seconds_keep_their_microseconds() -> None:
    assert sqlite_text(datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)) == "2026-01-02 03:04:05.000000"


def test_a_naive_datetime_is_refused() -> None:
    with pytest.raises(ValueError, match="naive datetime"):
        sqlite_text(datetime(2026, 1, 2, 3, 4, 5))


def test_sqlite_uses_the_fast_text() -> None:
    assert timestamp_converter(sqlite.dialect()) is sqlite_text


def test_timestamps_convert_each_distinct_value_once() -> None:
    seen: list[datetime] = []

    def convert(value: datetime) -> str:
        seen.append(value)
        return value.isoformat()

    stamp = Timestamps(convert)
    now = datetime(2026, 1, 2, tzinfo=UTC)
    assert stamp(now) == stamp(now) == now.isoformat()
    assert stamp(None) is None
    assert seen == [now]


def test_timestamps_forget_everything_at_their_limit_and_convert_again() -> None:
    seen: list[datetime] = []

    def convert(value: datetime) -> str:
        seen.append(value)
        return value.isoformat()

    stamp = Timestamps(convert, limit=2)
    first, second, third = (datetime(2026, 1, day, tzinfo=UTC) for day in (1, 2, 3))
    for value in (first, second, first, third, first):
        assert stamp(value) == value.isoformat()
    assert seen == [first, second, third, first]  # the third value came with two remembered


def test_one_timestamps_per_database_kind() -> None:
    dialect = sqlite.dialect()
    assert timestamps_for(dialect) is timestamps_for(dialect)
    moment = datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC)
    assert timestamps_for(dialect)(moment) == sqlite_text(moment)


def test_rows_past_the_parameter_limit_go_in_several_statements() -> None:
    engine = create_engine("sqlite://")
    statement = RowsStatement(
        head="INSERT INTO t (a, b) VALUES ", width=2, tail="", mark="?",
        single="INSERT INTO t (a, b) VALUES (?, ?)",
    )  # fmt: skip
    rows = [(index, f"row {index}") for index in range(20_000)]  # over 32,766 parameters
    with engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE t (a INTEGER PRIMARY KEY, b TEXT)")
        execute_rows(connection, statement, rows)
        execute_rows(connection, statement, [])  # nothing to do
        stored = connection.exec_driver_sql("SELECT a, b FROM t ORDER BY a").all()
    assert [tuple(row) for row in stored] == rows


def test_packed_rows_are_the_query_s_rows_in_its_order(
    factory: sessionmaker[Session],
) -> None:
    # Ties broken by the next key, NULL where each database puts it, timestamps and booleans
    # as their types give them: what the plain query returns, in its order.
    base = datetime(2026, 11, 28, 2, 0, tzinfo=UTC)
    with factory.begin() as session:
        account, _key = repository.create_account(session, name="acme")
        for index, scheduled in enumerate([None, base, None, base - timedelta(hours=1), base]):
            repository.insert_calls(session, [repository.call_row(
                account_id=account.id, service="outbound", to_number=f"+9199{index:08d}",
                scheduled_at=scheduled, promotional=bool(index % 2),
            )])  # fmt: skip
    calls = Call.__table__.c
    order = (calls.scheduled_at, calls.to_number)
    query = select(calls.id, calls.scheduled_at, calls.promotional, calls.created_at).order_by(
        *order
    )
    packed = PackedSelect(query, order_by=order)
    with factory.begin() as session:
        connection = session.connection()
        plain = connection.execute(query).all()
        rows = packed.rows(connection, {})
        null_first = connection.dialect.name == "sqlite"
    assert [tuple(row) for row in rows] == [tuple(row) for row in plain]
    assert [row.scheduled_at is None for row in rows][:2] == [null_first, null_first]
    assert all(isinstance(row.promotional, bool) for row in rows)
