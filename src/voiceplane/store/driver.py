"""Hot writes on the DBAPI driver itself: plain tuples, timestamps converted once each.

Through SQLAlchemy's compiled statements every row pays for each parameter's bind
processing; the store's busiest statements (call snapshots, callbacks) skip that and run as
one executemany of tuples. Timestamps still go through the column type's own bind
processor, so the stored text is the same as the ORM's.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.engine import Dialect

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
    """Converts datetimes for the driver, each distinct value once (a batch shares a few)."""

    def __init__(self, convert: Callable[[datetime], Any]) -> None:
        self._convert = convert
        self._seen: dict[datetime, Any] = {}

    def __call__(self, value: datetime | None) -> Any:
        if value is None:
            return None
        converted = self._seen.get(value)
        if converted is None:
            converted = self._seen[value] = self._convert(value)
        return converted
