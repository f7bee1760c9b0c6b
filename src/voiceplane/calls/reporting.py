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

from sqlalchemy.orm import Session

from voiceplane.callbacks.compose import STATUS_EVENT, progress_callback, status_callback
from voiceplane.store.models import utcnow
from voiceplane.store.outbox import NewCallback, enqueue_many
from voiceplane.store.progress import CallProgress, save_many
from voiceplane.store.repository import snapshot_records

from .status import Dialect


@dataclass(frozen=True, slots=True)
class Report:
    """One save of a reported call: its snapshot and the progress events since the last."""

    snapshot: CallProgress
    events: tuple[str, ...]


def store_reports(session: Session, reports: Sequence[Report]) -> None:
    """Store ``reports`` (in order) and the callbacks they make; a ``StoreWriter`` bulk apply."""
    save_many(session, [report.snapshot for report in reports])
    wanted = [report for report in reports if report.events]
    records = snapshot_records(session, [report.snapshot for report in wanted])
    now = utcnow()
    batch: list[tuple[int, str, list[NewCallback]]] = []
    for report, stored in zip(wanted, records, strict=True):
        if stored is None:
            continue
        dialect = Dialect(stored.status_dialect)
        record = stored.record
        callbacks: list[NewCallback] = []
        if stored.dlr_url:
            callbacks += [
                progress_callback(event, record, stored.dlr_url, at=now, dialect=dialect)
                for event in report.events
            ]
        if stored.callback_url and STATUS_EVENT in report.events and stored.state == "completed":
            callbacks.append(
                status_callback(record, stored.callback_url, at=now, dialect=dialect)
            )
        if callbacks:
            batch.append((stored.account_id, report.snapshot.call_id, callbacks))
    enqueue_many(session, batch, now=now)


def report_job(snapshot: CallProgress, events: Sequence[str]) -> Callable[[Session], None]:
    """One report as a plain writer job (for code that already holds a transaction)."""
    report = Report(snapshot, tuple(events))
    return lambda session: store_reports(session, [report])
