"""The CSV export's parts: the formula guard, and batches read in transactions of their own."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import pytest
from sqlalchemy.orm import Session, sessionmaker

from tests.api.conftest import Tenant
from voiceplane.api import csv_export
from voiceplane.api.filters import CallFilters
from voiceplane.calls.status import Dialect
from voiceplane.store import repository


@pytest.mark.parametrize(
    ("text", "written"),
    [
        ("=HYPERLINK(\"http://x\")", "'=HYPERLINK(\"http://x\")"),
        ("+1", "'+1"),
        ("-1", "'-1"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\rx", "'\rx"),
        ("a=b", "a=b"),
        ("", ""),
        (None, None),
    ],
)
def test_defused_quotes_what_a_spreadsheet_would_run(text: str | None, written: str) -> None:
    assert csv_export.defused(text) == written


@dataclass
class CountingReaders:
    """A sessionmaker stand-in that counts the transactions begun and how many calls were
    read in each (the export must not read everything in one)."""

    sessions: sessionmaker[Session]
    begun: int = 0
    open_now: int = 0
    most_open: int = 0
    reads: list[int] = field(default_factory=list)

    @contextmanager
    def begin(self) -> Iterator[Session]:
        self.begun += 1
        self.open_now += 1
        self.most_open = max(self.most_open, self.open_now)
        try:
            with self.sessions.begin() as session:
                yield session
        finally:
            self.open_now -= 1


def test_every_batch_is_read_in_a_transaction_of_its_own(
    sessions: sessionmaker[Session], acme: Tenant
) -> None:
    with sessions.begin() as session:
        account = repository.get_account(session, sid=acme.sid)
        assert account is not None
        repository.insert_calls(
            session,
            [repository.call_row(account_id=account.id, service="outbound") for _ in range(25)],
        )
    readers = CountingReaders(sessions)

    chunks = []
    for chunk in csv_export.lines(
        readers,  # type: ignore[arg-type]
        account=account, filters=CallFilters(), sort="-created_at",
        dialect=Dialect.VOICEPLANE, batch=10,
    ):  # fmt: skip
        chunks.append(chunk)
        assert readers.open_now == 0  # no transaction stays open while a chunk is sent

    rows = list(csv.reader(io.StringIO("".join(chunks), newline="")))
    assert rows[0] == list(csv_export.COLUMNS)
    assert len({row[0] for row in rows[1:]}) == 25
    assert readers.begun == 3  # 10 + 10 + 5
    assert readers.most_open == 1
    assert len(chunks) == 4  # the header, then one chunk a batch
