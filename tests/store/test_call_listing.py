"""Listing calls: the custom filter, every sort (ties by id), keyset pages after a position,
and whether more calls follow a page (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy.orm import Session, sessionmaker

from voiceplane.store import repository as repo
from voiceplane.store.models import Account, Call

T0 = datetime(2026, 3, 1, 8, 0, 0, 123_456, tzinfo=UTC)
# (seconds after T0, duration, billsec): ties on every key, so the id decides.
SHAPES = [(0, 30, 10), (5, 30, 0), (5, 12, 12), (9, 0, 0), (9, 45, 10), (20, 12, 3), (20, 30, 3)]


def _account(factory: sessionmaker[Session], name: str = "acme") -> Account:
    with factory.begin() as session:
        account, _key = repo.create_account(session, name=name)
        return account


def _store(factory: sessionmaker[Session], account: Account, **fields: Any) -> None:
    shapes = fields.pop("shapes", SHAPES)
    rows = []
    for offset, duration, billsec in shapes:
        row = repo.call_row(
            account_id=account.id, service="outbound", now=T0 + timedelta(seconds=offset),
            to_number="+919876543210", **fields,
        )  # fmt: skip
        row.update(duration=duration, billsec=billsec)
        rows.append(row)
    with factory.begin() as session:
        repo.insert_calls(session, rows)


def _expected(calls: list[Call], sort: str) -> list[str]:
    name = sort.removeprefix("-")
    ordered = sorted(calls, key=lambda call: (getattr(call, name), call.id))
    if sort.startswith("-"):
        ordered.reverse()
    return [call.id for call in ordered]


@pytest.mark.parametrize("sort", repo.CALL_SORTS)
def test_every_sort_orders_by_its_key_then_id_in_the_same_direction(
    factory: sessionmaker[Session], sort: str
) -> None:
    account = _account(factory)
    _store(factory, account)
    with factory() as session:
        everything = repo.list_calls(session, account=account, limit=100)
        listed = repo.list_calls(session, account=account, limit=100, sort=sort)
    assert len(everything) == len(SHAPES)
    assert [call.id for call in listed] == _expected(everything, sort)


def test_the_default_sort_is_newest_first() -> None:
    assert repo.DEFAULT_CALL_SORT == "-created_at"


@pytest.mark.parametrize("sort", repo.CALL_SORTS)
def test_pages_after_a_position_walk_the_same_order_as_offsets(
    factory: sessionmaker[Session], sort: str
) -> None:
    account = _account(factory)
    _store(factory, account)
    with factory() as session:
        by_offset = [
            call.id
            for offset in range(0, len(SHAPES), 2)
            for call in repo.list_calls(session, account=account, limit=2, offset=offset,
                                        sort=sort)  # fmt: skip
        ]
        by_key: list[str] = []
        after = None
        while True:
            page, more = repo.calls_page(session, account=account, limit=2, sort=sort, after=after)
            by_key += [call.id for call in page]
            if not more:
                break
            after = repo.call_position(page[-1], sort=sort)
    assert by_key == by_offset
    assert len(set(by_key)) == len(SHAPES)


def test_calls_page_says_whether_more_follow(factory: sessionmaker[Session]) -> None:
    account = _account(factory)
    _store(factory, account)
    with factory() as session:
        first, more_after_first = repo.calls_page(session, account=account, limit=4)
        last, more_after_last = repo.calls_page(session, account=account, limit=4, offset=4)
        exact, more_after_exact = repo.calls_page(session, account=account, limit=len(SHAPES))
    assert (len(first), more_after_first) == (4, True)
    assert (len(last), more_after_last) == (3, False)
    assert (len(exact), more_after_exact) == (len(SHAPES), False)


def test_custom_matches_exactly_and_combines_with_other_filters(
    factory: sessionmaker[Session],
) -> None:
    account = _account(factory)
    _store(factory, account, shapes=[(0, 1, 1)], custom="ticket 9")
    _store(factory, account, shapes=[(1, 1, 1)], custom="ticket 90")
    _store(factory, account, shapes=[(2, 1, 1)], custom="Ticket 9")
    _store(factory, account, shapes=[(3, 1, 1)])
    other = _account(factory, "globex")
    _store(factory, other, shapes=[(4, 1, 1)], custom="ticket 9")
    with factory() as session:
        found = repo.list_calls(session, account=account, custom="ticket 9")
        counted = repo.count_calls(session, account=account, custom="ticket 9")
        with_service = repo.count_calls(
            session, account=account, custom="ticket 9", service="click2call"
        )
    assert [call.custom for call in found] == ["ticket 9"]
    assert (counted, with_service) == (1, 0)


def test_an_unknown_sort_is_refused_before_any_sql(factory: sessionmaker[Session]) -> None:
    account = _account(factory)
    with factory() as session, pytest.raises(ValueError, match="unknown sort"):
        repo.list_calls(session, account=account, sort="to")
    with pytest.raises(ValueError, match="unknown sort"):
        repo.call_position(Call(id="VC1", duration=1), sort="+duration")
