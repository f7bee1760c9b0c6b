"""Hot writes on the DBAPI driver itself: plain tuples, timestamps converted once each.

Through SQLAlchemy's compiled statements every row pays for each parameter's bind
processing; the store's busiest statements (call snapshots, new calls, callbacks) skip that
and run on tuples, on SQLite as one multi-row statement (:func:`execute_rows`). Timestamps
are stored as the column type stores them, so the text is the same as the ORM's.
"""

from __future__ import annotations

import functools
import json
from collections import namedtuple
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from sqlalchemy import Select, func, select
from sqlalchemy.engine import Connection, Dialect

from .models import Call


def placeholder(dialect: Dialect) -> str:
    """The driver's parameter mark: ``?`` (sqlite3) or ``%s`` (psycopg)."""
    return "?" if dialect.paramstyle == "qmark" else "%s"


def timestamp_converter(dialect: Dialect) -> Callable[[datetime], Any]:
    """A UTC datetime as ``dialect``'s driver takes it for a timestamp column."""
    if dialect.name == "sqlite":
        return sqlite_text
    column_type = Call.__table__.c.updated_at.type
    convert = column_type.dialect_impl(dialect).bind_processor(dialect)
    return convert if convert is not None else _as_is


def sqlite_text(value: datetime) -> str:
    """The text SQLite stores for a timestamp column, exactly as the column type writes it
    (naive UTC, always with microseconds), at a third of its cost: a call's snapshot has
    about ten timestamps, written several times a call."""
    if value.tzinfo is not UTC:
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value.isoformat()} given; use a UTC-aware one")
        value = value.astimezone(UTC)
    return value.isoformat(" ", "microseconds")[:-6]  # without its "+00:00"


def _as_is(value: datetime) -> datetime:
    return value


class Timestamps:
    """Converts datetimes for the driver, each distinct value once while it is remembered.

    One per database kind lives as long as the process (:func:`timestamps_for`): a call's
    timestamps are written again with each snapshot of it (five or so a click-to-call), and
    converting them afresh each time was a few per cent of serve's CPU under load. It
    forgets everything once it holds ``limit`` values, which keeps it small; a value
    forgotten is merely converted again.
    """

    def __init__(self, convert: Callable[[datetime], Any], *, limit: int = 50_000) -> None:
        self._convert = convert
        self._limit = limit
        self._seen: dict[datetime, Any] = {}

    def __call__(self, value: datetime | None) -> Any:
        if value is None:
            return None
        converted = self._seen.get(value)
        if converted is None:
            if len(self._seen) >= self._limit:
                self._seen.clear()
            converted = self._seen[value] = self._convert(value)
        return converted


@functools.cache
def timestamps_for(dialect: Dialect) -> Timestamps:
    """The process's :class:`Timestamps` for ``dialect``'s driver."""
    return Timestamps(timestamp_converter(dialect))


# SQLite's default limit on a statement's parameters (since 3.32).
_SQLITE_MAX_VARIABLES: Final = 32_766


@dataclass(frozen=True, slots=True)
class RowsStatement:
    """A statement applied to many rows of parameters: ``head`` + one ``(?, ...)`` per row +
    ``tail``. ``single`` is the same statement for one row at a time (an executemany), its
    marks in the same order."""

    head: str
    width: int  # parameters per row
    tail: str
    mark: str
    single: str

    def sql_for(self, rows: int) -> str:
        one = f"({', '.join([self.mark] * self.width)})"
        return f"{self.head}{', '.join([one] * rows)}{self.tail}"


def execute_rows(
    connection: Connection, statement: RowsStatement, rows: list[tuple[Any, ...]]
) -> None:
    """Apply ``statement`` to ``rows``.

    On SQLite, as few statements as the parameter limit allows, each with every row in its
    VALUES list: Python's sqlite3 lets go of the GIL at every step, which in an executemany
    is every row, and under load the writer thread then waited for the busy event loop at
    each of them (a batch of 35 snapshots took 140 ms of wall time for 17 ms of CPU at 300
    click-to-calls/s). Elsewhere, one executemany of the single-row statement.
    """
    if not rows:
        return
    if connection.dialect.name != "sqlite":
        connection.exec_driver_sql(statement.single, rows)
        return
    per_statement = max(1, _SQLITE_MAX_VARIABLES // statement.width)
    for start in range(0, len(rows), per_statement):
        chunk = rows[start : start + per_statement]
        flat = tuple(value for row in chunk for value in row)
        connection.exec_driver_sql(statement.sql_for(len(chunk)), flat)


class PackedSelect:
    """A SELECT whose rows SQLite hands over in one step, as one JSON array.

    Python's sqlite3 lets go of the GIL at every step of a statement, and a SELECT takes a
    step per row. In serve's store writer, under load, each of those steps then waited to
    get the GIL back from the busy event loop: against a busy thread, reading 20 rows took
    22 ms and 100 rows 60-110 ms, the same rows packed into one 2.5-3.3 ms (a probe on this
    machine). On SQLite the rows come back as the query gives them, by column name, with
    the values their types give (timestamps, booleans; a REAL keeps 15 significant
    digits), sorted here by ``order_by`` (ascending, NULL first, as SQLite sorts): an
    aggregate does not promise the order of its input, so the keys travel with the rows.
    Elsewhere the query runs as it is: give it its ORDER BY (the same keys) too.
    """

    def __init__(
        self, query: Select[*tuple[Any, ...]], order_by: Sequence[Any]
    ) -> None:
        self.query = query
        keys = [expression.label(f"packed_key_{index}")
                for index, expression in enumerate(order_by)]  # fmt: skip
        inner = query.add_columns(*keys).subquery()
        self.columns = tuple(inner.c)[: len(inner.c) - len(keys)]
        self.packed = select(func.json_group_array(func.json_array(*inner.c)))
        names = [column.name for column in self.columns]
        # Fields known only at run time, which mypy's namedtuple support cannot follow.
        self.row: Any = namedtuple("PackedRow", names)  # type: ignore[misc]  # noqa: PYI024

    def rows(self, connection: Connection, values: Mapping[str, Any]) -> Sequence[Any]:
        """The query's rows: attribute access by column name, as SQLAlchemy's rows."""
        dialect = connection.dialect
        if dialect.name != "sqlite":
            return connection.execute(self.query, dict(values)).all()
        text = connection.execute(self.packed, dict(values)).scalar_one()
        width = len(self.columns)
        found = sorted(
            json.loads(text),
            key=lambda row: [(value is not None, value) for value in row[width:]],
        )
        processors = self._processors(dialect)
        return [
            self.row._make(
                value if convert is None else convert(value)
                for value, convert in zip(row[:width], processors, strict=True)
            )
            for row in found
        ]

    @functools.cache  # noqa: B019 - one per query shape and dialect, both kept for good
    def _processors(self, dialect: Dialect) -> tuple[Callable[[Any], Any] | None, ...]:
        return tuple(
            column.type.dialect_impl(dialect).result_processor(dialect, None)
            for column in self.columns
        )
