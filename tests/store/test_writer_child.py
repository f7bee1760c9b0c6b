"""The store writer process: bulk writes applied in a child, and the thread taking over when
the child is gone. The child is the real ``python -m voiceplane.store.writer_main``."""

from __future__ import annotations

import asyncio
import os
import pickle
import signal
import sys
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from voiceplane.store import repository as repo
from voiceplane.store.models import Account, Call, Leg
from voiceplane.store.progress import CallProgress, LegProgress, save_many
from voiceplane.store.repository import call_row, insert_calls
from voiceplane.store.writer import StoreWriter
from voiceplane.store.writer_child import (
    ChildLost,
    ChildWriteError,
    WriterChild,
    apply_groups,
    portable,
)

T0 = datetime(2026, 11, 28, 1, 0, tzinfo=UTC)
OFFLOADED = (save_many, insert_calls)


def _account(factory: sessionmaker[Session]) -> int:
    with factory.begin() as session:
        account, _key = repo.create_account(session, name="acme")
        return account.id


def _rows(account_id: int, count: int) -> list[dict[str, Any]]:
    return [
        call_row(account_id=account_id, service="outbound", to_number=f"+9199000{i:05d}",
                 now=T0)
        for i in range(count)
    ]  # fmt: skip


def _stored_ids(factory: sessionmaker[Session]) -> set[str]:
    with factory() as session:
        return set(session.scalars(select(Call.id)))


def _snapshot(call_id: str, state: str = "completed") -> CallProgress:
    leg = LegProgress(seq=1, leg=1, number="+919900000001", status="ANSWER", sip_code=200,
                      start_time=T0, answer_time=T0 + timedelta(seconds=1),
                      end_time=T0 + timedelta(seconds=3), sip_call_id=f"{call_id}@sip")  # fmt: skip
    return CallProgress(
        call_id=call_id, state=state, status="ANSWER", reason=None, start_time=T0,
        answer_time=T0 + timedelta(seconds=1), end_time=T0 + timedelta(seconds=3),
        duration=3, billsec=2, attempts=1, scheduled_at=None, legs=(leg,),
    )  # fmt: skip


def test_snapshots_cross_a_pipe_with_every_field() -> None:
    # Their __reduce__ names the fields one by one: a field added later must be named too,
    # and a swapped pair would show (every field's value differs from every other's).
    legs = tuple(LegProgress(**_distinct(LegProgress.__dataclass_fields__, 100 * index))
                 for index in range(2))  # fmt: skip
    fields = _distinct(CallProgress.__dataclass_fields__, 1000)
    snapshot = CallProgress(**{**fields, "legs": legs})
    assert pickle.loads(pickle.dumps(snapshot)) == snapshot
    assert pickle.loads(pickle.dumps(legs[1])) == legs[1]


def _distinct(names: Iterable[str], base: int) -> dict[str, Any]:
    """A value of each field's kind, no two alike."""
    values: dict[str, Any] = {}
    for offset, name in enumerate(names, start=base):
        if name.endswith("_time") or name == "scheduled_at":
            values[name] = T0 + timedelta(seconds=offset)
        elif name in {"seq", "leg", "sip_code", "q850_cause", "duration", "billsec", "attempts"}:
            values[name] = offset
        else:
            values[name] = f"{name}-{offset}"
    return values


def test_apply_groups_commits_a_batch_and_answers_per_group(
    factory: sessionmaker[Session],
) -> None:
    rows = _rows(_account(factory), 3)
    with factory() as session:
        kind, answers = apply_groups(session, [(insert_calls, rows)])
    assert (kind, answers) == ("ok", [None])
    assert _stored_ids(factory) == {row["id"] for row in rows}


def test_apply_groups_applies_item_by_item_when_the_batch_fails(
    factory: sessionmaker[Session],
) -> None:
    account_id = _account(factory)
    good, twin = _rows(account_id, 2)
    twin["id"] = good["id"]  # the second insert of one id fails, the first lands
    late = _rows(account_id, 1)
    with factory() as session:
        kind, answers = apply_groups(session, [(insert_calls, [good, twin]), (insert_calls, late)])
    assert kind == "each"
    (first, second), (third,) = answers
    assert first == (True, None) and third == (True, None)
    assert second[0] is False and isinstance(second[1], Exception)
    assert _stored_ids(factory) == {good["id"], late[0]["id"]}


def test_an_error_that_cannot_cross_the_pipe_is_named_instead() -> None:
    class Local(Exception):  # not importable by name: pickle cannot bring it back
        pass

    crossed = portable(Local("the reason"))
    assert isinstance(crossed, ChildWriteError)
    assert str(crossed) == "Local: the reason"
    kept = ValueError("plain")
    assert portable(kept) is kept


def test_the_child_process_applies_batches_on_its_own_connection(
    database_url: str, factory: sessionmaker[Session]
) -> None:
    rows = _rows(_account(factory), 5)
    child = WriterChild(database_url)
    child.start()
    try:
        child.wait_ready()
        assert child.apply([(insert_calls, rows[:3]), (insert_calls, rows[3:])]) == (
            "ok", [None, None],
        )  # fmt: skip
        assert child.apply([(save_many, [_snapshot(rows[0]["id"])])]) == ("ok", [None])
    finally:
        child.close()
    assert child.pid is None
    assert _stored_ids(factory) == {row["id"] for row in rows}
    with factory() as session:
        assert session.get(Call, rows[0]["id"]).status == "ANSWER"  # type: ignore[union-attr]
        (leg,) = session.scalars(select(Leg).where(Leg.call_id == rows[0]["id"]))
        assert leg.sip_call_id == f"{rows[0]['id']}@sip"


def test_a_child_that_never_gets_ready_is_lost(database_url: str) -> None:
    child = WriterChild(database_url, command=(sys.executable, "-c", "import sys; sys.exit(3)"))
    child.start()
    with pytest.raises(ChildLost, match="did not start"):
        child.wait_ready(timeout_s=10)
    with pytest.raises(ChildLost):
        child.apply([(insert_calls, [])])


async def test_the_writer_hands_bulk_items_to_the_child_and_keeps_its_jobs(
    database_url: str, factory: sessionmaker[Session]
) -> None:
    account_id = _account(factory)
    rows = _rows(account_id, 20)
    child = WriterChild(database_url)
    child.start()
    writer = StoreWriter(factory, linger_s=0.01, child=child, offload=OFFLOADED)
    writer.start()

    def add_account(session: Session) -> int:  # a closure: it can only run in the thread
        account, _key = repo.create_account(session, name="local")
        return account.id

    try:
        inserted = [writer.submit_item(insert_calls, row) for row in rows[:10]]
        local = writer.submit(add_account)
        urgent = [writer.submit_item(insert_calls, row, urgent=True) for row in rows[10:]]
        await asyncio.gather(*inserted, *urgent)
        assert await local > 0
        saved = [
            writer.submit_item(save_many, _snapshot(row["id"]), key=("call", row["id"]))
            for row in rows
        ]  # fmt: skip
        await asyncio.gather(*saved)
        child_pid = child.pid
    finally:
        await writer.stop()
    assert child_pid is not None and child.pid is None  # stopped with the writer
    assert _stored_ids(factory) == {row["id"] for row in rows}
    with factory() as session:
        states = set(session.scalars(select(Call.state)))
        names = set(session.scalars(select(Account.name)))
    assert states == {"completed"} and names == {"acme", "local"}


async def test_writes_land_in_the_thread_once_the_child_is_killed(
    database_url: str, factory: sessionmaker[Session]
) -> None:
    rows = _rows(_account(factory), 6)
    child = WriterChild(database_url)
    child.start()
    writer = StoreWriter(factory, child=child, offload=OFFLOADED)
    writer.start()
    try:
        await writer.submit_item(insert_calls, rows[0])
        assert child.pid is not None
        os.kill(child.pid, signal.SIGKILL)
        await asyncio.gather(*(writer.submit_item(insert_calls, row) for row in rows[1:]))
    finally:
        await writer.stop()
    assert child.pid is None
    assert _stored_ids(factory) == {row["id"] for row in rows}


async def test_writes_land_in_the_thread_when_the_child_cannot_start(
    database_url: str, factory: sessionmaker[Session]
) -> None:
    rows = _rows(_account(factory), 3)
    child = WriterChild(database_url, command=(sys.executable, "-c", "pass"))
    child.start()
    writer = StoreWriter(factory, child=child, offload=OFFLOADED)
    writer.start()
    try:
        await asyncio.gather(*(writer.submit_item(insert_calls, row) for row in rows))
    finally:
        await writer.stop()
    assert _stored_ids(factory) == {row["id"] for row in rows}
