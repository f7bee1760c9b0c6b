"""The store service: the schema migrated at start, and the writer process that serve's
bulk writes go to when the database can be shared by processes."""

from __future__ import annotations

import os
from datetime import UTC, datetime

from sqlalchemy import select

from voiceplane.store import repository as repo
from voiceplane.store.db import shared_by_processes
from voiceplane.store.models import Call
from voiceplane.store.repository import call_row, insert_calls
from voiceplane.store.service import StoreService


def test_only_a_database_other_processes_can_open_is_shared() -> None:
    assert shared_by_processes("sqlite:///data/voiceplane.db")
    assert shared_by_processes("postgresql://voiceplane@localhost/voiceplane")
    assert not shared_by_processes("sqlite://")
    assert not shared_by_processes("sqlite:///:memory:")


async def test_new_calls_are_written_by_the_writer_process(database_url: str) -> None:
    store = StoreService(database_url)
    await store.start()
    try:
        child = store.child
        assert child is not None and child.pid is not None and child.pid != os.getpid()
        with store.sessions.begin() as session:
            account, _key = repo.create_account(session, name="acme")
        row = call_row(account_id=account.id, service="outbound", to_number="+919900000001",
                       now=datetime(2026, 11, 28, tzinfo=UTC))  # fmt: skip
        await store.writer.submit_item(insert_calls, row, urgent=True)
        assert store.writer.batches == 1  # the child's batch: none was applied in the thread
        pid = child.pid
    finally:
        await store.stop()
    assert child.pid is None
    assert not _alive(pid)
    with store.sessions() as session:
        assert list(session.scalars(select(Call.id))) == [row["id"]]


async def test_without_a_writer_process_everything_is_written_in_serve(
    database_url: str,
) -> None:
    store = StoreService(database_url, writer_process=False)
    await store.start()
    try:
        assert store.child is None
        with store.sessions.begin() as session:
            account, _key = repo.create_account(session, name="acme")
        row = call_row(account_id=account.id, service="outbound", to_number="+919900000001")
        await store.writer.submit_item(insert_calls, row, urgent=True)
    finally:
        await store.stop()
    with store.sessions() as session:
        assert list(session.scalars(select(Call.id))) == [row["id"]]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers: a child that exited but was not reaped yet counts as gone.
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
