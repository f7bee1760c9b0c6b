"""A call's changes and the callbacks that report them, stored in one transaction.

For a call with a ``callback`` or ``dlrurl`` URL, each save of the call is a
:class:`Report`: the snapshot, and the events that happened since the last save. The store
writer hands every report pending in a batch to :func:`store_reports` at once, which writes
the snapshots, builds each one's call record as users will see it, and writes the callbacks
into the outbox (``voiceplane.store.outbox``): progress events (initiated, ringing,
answered, completed) to ``dlrurl``, the final status to ``callback``. It all runs in the
batch's transaction: a status is never reported that was not stored, and never stored
without its callback. The dispatcher sends them later.

One call per batch item, a handful of statements per batch: this is the hot path of
bench/callbacks.py (thousands of reports a second), where a statement per report was the
limit.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from voiceplane.callbacks.compose import STATUS_EVENT, progress_callback, status_callback
from voiceplane.store.models import utcnow
from voiceplane.store.outbox import (
    CallCallbacks,
    NewCallback,
    OutboxMessage,
    Written,
    enqueue_many,
)
from voiceplane.store.progress import CallProgress, save_many
from voiceplane.store.repository import StoredRecord, snapshot_records

from .status import Dialect


@dataclass(frozen=True, slots=True)
class Report:
    """One save of a reported call: its snapshot and the progress events since the last."""

    snapshot: CallProgress
    events: tuple[str, ...]


def store_reports(session: Session, reports: Sequence[Report]) -> None:
    """Store ``reports`` (in order) and the callbacks they make, due at once; a
    ``StoreWriter`` bulk apply."""
    _store(session, reports, lease_until=None)


@dataclass(frozen=True, slots=True)
class LeasedReports:
    """:func:`store_reports` for a process whose dispatcher sends new callbacks at once.

    A ``StoreWriter`` bulk apply (equal instances share a batch): each report's future gets
    the callbacks written leased to this process for ``lease_s`` (see
    ``voiceplane.store.outbox.enqueue_many``), to hand to the dispatcher. That spares the
    dispatcher a round trip to the store to find them: the time from a call's end to its
    callback is one commit and one HTTP request.
    """

    lease_s: float

    def __call__(
        self, session: Session, reports: Sequence[Report]
    ) -> list[tuple[OutboxMessage, ...]]:
        until = utcnow() + timedelta(seconds=self.lease_s)
        return [written.leased for written in _store(session, reports, lease_until=until)]


@dataclass(frozen=True, slots=True)
class Handover:
    """How the engine hands new callbacks to this process's dispatcher: stored with
    ``reports`` (leased), then given to ``send``."""

    reports: LeasedReports
    send: Callable[[Sequence[OutboxMessage]], None]


def _store(
    session: Session, reports: Sequence[Report], *, lease_until: datetime | None
) -> list[Written]:
    save_many(session, [report.snapshot for report in reports])
    # Records only for the saves that report something (most saves carry no event).
    telling = [report.snapshot for report in reports if report.events]
    records = iter(snapshot_records(session, telling))
    now = utcnow()
    batch: list[CallCallbacks] = []
    for report in reports:
        stored = next(records) if report.events else None
        callbacks: list[NewCallback] = []
        if stored is not None:
            callbacks = _callbacks(report, stored, now)
        account_id = stored.account_id if stored is not None else 0
        batch.append((account_id, report.snapshot.call_id, callbacks))
    return enqueue_many(session, batch, now=now, lease_until=lease_until)


def _callbacks(report: Report, stored: StoredRecord, now: datetime) -> list[NewCallback]:
    dialect = Dialect(stored.status_dialect)
    record = stored.record
    callbacks: list[NewCallback] = []
    if stored.dlr_url:
        callbacks += [
            progress_callback(event, record, stored.dlr_url, at=now, dialect=dialect)
            for event in report.events
        ]
    if stored.callback_url and STATUS_EVENT in report.events and stored.state == "completed":
        callbacks.append(status_callback(record, stored.callback_url, at=now, dialect=dialect))
    return callbacks


def report_job(snapshot: CallProgress, events: Sequence[str]) -> Callable[[Session], None]:
    """One report as a plain writer job (for code that already holds a transaction)."""
    report = Report(snapshot, tuple(events))
    return lambda session: store_reports(session, [report])
