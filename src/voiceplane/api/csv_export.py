"""The call logs as CSV: every call a query matches, streamed in keyset batches.

One row per call under a header row (:data:`COLUMNS`), written by the stdlib ``csv`` module
(RFC 4180: quoted where needed, CRLF line ends, UTF-8). Times are ISO 8601 UTC as in the
JSON; status words are in the account's dialect; ``leg1_*`` / ``leg2_*`` are the latest try
of each leg (empty when the call has no such leg).

Formula injection: a spreadsheet runs a cell that starts with ``=``, ``+``, ``-`` or ``@`` as
a formula, so a ``custom`` or ``reason`` (text a user or an operator chose) starting with one
of those, or with a tab or carriage return, is written with a leading ``'``, which
spreadsheets show as plain text. The other columns come from the platform (E.164 numbers,
ids, times, vocabulary words) and are written as they are.

The export never holds a transaction open for long: each batch of :data:`BATCH` calls is read
in its own short reader transaction, the next one starting after the last call of the one
before (keyset), so the rows neither repeat nor skip while new calls arrive. Calls that
arrive during an export may or may not be in it.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from typing import Final

from sqlalchemy.orm import Session, sessionmaker

from voiceplane.api.filters import CallFilters
from voiceplane.api.records import spelled
from voiceplane.calls.status import Dialect
from voiceplane.store import repository
from voiceplane.store.models import Account, Call

MEDIA_TYPE: Final = "text/csv"
FILENAME: Final = "call-logs.csv"
BATCH: Final = 500
COLUMNS: Final = (
    "id", "service", "state", "status", "from", "to", "bridge", "custom", "reason", "rule",
    "created_at", "start_time", "answer_time", "end_time", "duration", "billsec",
    "leg1_status", "leg2_status", "leg1_sip_code", "leg2_sip_code",
)  # fmt: skip
# What a spreadsheet may read as the start of a formula (OWASP, "CSV Injection").
FORMULA_STARTS: Final = ("=", "+", "-", "@", "\t", "\r")

Cell = str | int | None


def defused(text: str | None) -> str | None:
    """``text`` made safe to open in a spreadsheet: a leading ``'`` if it could be a formula."""
    if text and text.startswith(FORMULA_STARTS):
        return "'" + text
    return text


def row(call: Call, dialect: Dialect) -> list[Cell]:
    """The CSV row of ``call``, in :data:`COLUMNS` order."""
    iso = repository.iso_utc
    leg1, leg2 = repository.get_leg(call, 1), repository.get_leg(call, 2)
    return [
        call.id, call.service, call.state, spelled(call.status, dialect),
        call.from_number, call.to_number, call.bridge, defused(call.custom),
        defused(call.reason), call.decided_by_rule, iso(call.created_at),
        iso(call.start_time), iso(call.answer_time), iso(call.end_time), call.duration,
        call.billsec,
        spelled(leg1.status, dialect) if leg1 else None,
        spelled(leg2.status, dialect) if leg2 else None,
        leg1.sip_code if leg1 else None,
        leg2.sip_code if leg2 else None,
    ]  # fmt: skip


def lines(
    readers: sessionmaker[Session],
    *,
    account: Account,
    filters: CallFilters,
    sort: str,
    dialect: Dialect,
    batch: int = BATCH,
) -> Iterator[str]:
    """The CSV text of every call ``filters`` match in ``sort`` order: the header, then one
    chunk per batch. Each batch is read in a transaction of its own from ``readers``."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(COLUMNS)
    yield _drain(buffer)
    after: repository.CallPosition | None = None
    while True:
        with readers.begin() as session:
            calls = filters.calls(session, account=account, limit=batch, sort=sort, after=after)
            writer.writerows(row(call, dialect) for call in calls)
        if calls:
            yield _drain(buffer)
        if len(calls) < batch:
            return
        after = repository.call_position(calls[-1], sort=sort)


def _drain(buffer: io.StringIO) -> str:
    text = buffer.getvalue()
    buffer.seek(0)
    buffer.truncate()
    return text
