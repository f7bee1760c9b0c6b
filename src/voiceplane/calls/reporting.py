"""A call's changes and the callbacks that report them, stored in one transaction.

For a call with a ``callback`` or ``dlrurl`` URL, each save of the call is a job that writes
the snapshot, reads the record back as users will see it, and writes the callbacks for what
happened since the last save into the outbox (``voiceplane.store.outbox``): progress events
(initiated, ringing, answered, completed) to ``dlrurl``, the final status to ``callback``.
Either both are stored or neither, so a status is never reported that was not stored, and
never stored without its callback. The dispatcher sends them later.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from voiceplane.callbacks.compose import STATUS_EVENT, progress_callback, status_callback
from voiceplane.store.models import Account, Call, utcnow
from voiceplane.store.outbox import NewCallback, enqueue
from voiceplane.store.progress import CallProgress, save_many
from voiceplane.store.repository import call_record

from .status import Dialect


def report_job(snapshot: CallProgress, events: Sequence[str]) -> Callable[[Session], int]:
    """The job that stores ``snapshot`` and the callbacks for ``events``; it returns how
    many callbacks it wrote."""
    wanted = tuple(events)

    def job(session: Session) -> int:
        save_many(session, [snapshot])
        if not wanted:
            return 0
        # populate_existing: the snapshot was written with plain SQL in this transaction.
        call = session.scalars(
            select(Call)
            .where(Call.id == snapshot.call_id)
            .execution_options(populate_existing=True)
        ).one()
        account = session.get(Account, call.account_id)
        dialect = Dialect(account.status_dialect) if account is not None else Dialect.VOICEPLANE
        record = call_record(call)
        now = utcnow()
        callbacks: list[NewCallback] = []
        if call.dlr_url:
            callbacks += [
                progress_callback(event, record, call.dlr_url, at=now, dialect=dialect)
                for event in wanted
            ]
        if call.callback_url and STATUS_EVENT in wanted and call.state == "completed":
            callbacks.append(status_callback(record, call.callback_url, at=now, dialect=dialect))
        enqueue(session, account_id=call.account_id, call_id=call.id, callbacks=callbacks, now=now)
        return len(callbacks)

    return job
