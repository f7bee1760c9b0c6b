"""Each account's blocklist in the store (table ``blocklist``, numbers in E.164).

Incoming calls from a blocklisted number end BLOCKED (:func:`is_blocked`, for the incoming
work); outgoing calls to one end not permitted with rule ``blocklist`` when the account's
settings say ``block_outgoing`` (:func:`blocklisted_among`, for the engine). Adding a
number twice or removing one that is not there changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from sqlalchemy import delete, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from voiceplane.store.models import Blocklisted, utcnow

MAX_PER_REQUEST: Final = 100  # numbers one change may name (kaleyra.io's limit)


@dataclass(frozen=True, slots=True)
class Entry:
    number: str
    created_at: datetime


def is_blocked(session: Session, account_id: int, e164: str) -> bool:
    """Whether ``e164`` is on ``account_id``'s blocklist."""
    found = session.execute(
        select(Blocklisted.e164).where(
            Blocklisted.account_id == account_id, Blocklisted.e164 == e164
        )
    ).first()
    return found is not None


def blocklisted_among(session: Session, account_id: int, numbers: Iterable[str]) -> set[str]:
    """Which of ``numbers`` are on ``account_id``'s blocklist (one query)."""
    wanted = sorted(set(numbers))
    if not wanted:
        return set()
    query = select(Blocklisted.e164).where(
        Blocklisted.account_id == account_id, Blocklisted.e164.in_(wanted)
    )
    return set(session.scalars(query))


def change(
    session: Session, account_id: int, *, add: Iterable[str] = (), remove: Iterable[str] = ()
) -> tuple[int, int]:
    """Add and remove numbers; how many were added and removed (already there: not added)."""
    adding, removing = sorted(set(add)), sorted(set(remove))
    if len(adding) + len(removing) > MAX_PER_REQUEST:
        raise ValueError(f"at most {MAX_PER_REQUEST} numbers a change")
    added = removed = 0
    connection = session.connection()
    if adding:
        present = blocklisted_among(session, account_id, adding)
        now = utcnow()
        rows = [
            {"account_id": account_id, "e164": number, "created_at": now}
            for number in adding
            if number not in present
        ]
        if rows:
            insert = postgresql.insert if connection.dialect.name == "postgresql" else sqlite.insert
            # A concurrent request may add the same number: that is not an error.
            statement = insert(Blocklisted).on_conflict_do_nothing()
            connection.execute(statement, rows)
            added = len(rows)
    if removing:
        result = connection.execute(
            delete(Blocklisted).where(
                Blocklisted.account_id == account_id, Blocklisted.e164.in_(removing)
            )
        )
        removed = int(result.rowcount)
    return added, removed


def entries(
    session: Session, account_id: int, *, limit: int, offset: int = 0
) -> tuple[int, list[Entry]]:
    """The total and one page of ``account_id``'s blocklist, in number order."""
    where = Blocklisted.account_id == account_id
    total = session.scalar(select(func.count()).select_from(Blocklisted).where(where)) or 0
    rows = session.execute(
        select(Blocklisted.e164, Blocklisted.created_at)
        .where(where)
        .order_by(Blocklisted.e164)
        .limit(limit)
        .offset(offset)
    ).all()
    return int(total), [Entry(row.e164, row.created_at) for row in rows]
