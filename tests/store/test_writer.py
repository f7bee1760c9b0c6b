"""The group-commit writer: batches, replaced snapshots, failures that stay alone."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from voiceplane.store import repository as repo
from voiceplane.store.models import Account
from voiceplane.store.writer import StoreWriter, WriterStopped


def _add_account(name: str) -> Callable[[Session], str]:
    def job(session: Session) -> str:
        account, _key = repo.create_account(session, name=name)
        return account.sid

    return job


def _names(factory: sessionmaker[Session]) -> list[str]:
    with factory() as session:
        return sorted(session.scalars(select(Account.name)))


async def test_jobs_submitted_together_commit_in_one_batch(
    factory: sessionmaker[Session],
) -> None:
    writer = StoreWriter(factory, linger_s=0.01)
    writer.start()
    try:
        sids = await asyncio.gather(*(writer.submit(_add_account(f"a{i}")) for i in range(50)))
    finally:
        await writer.stop()
    assert len(set(sids)) == 50
    assert _names(factory) == sorted(f"a{i}" for i in range(50))
    assert writer.jobs == 50
    assert writer.batches < 50  # they did not each get a transaction


async def test_a_failing_job_fails_alone_and_the_rest_of_its_batch_lands(
    factory: sessionmaker[Session],
) -> None:
    def broken(session: Session) -> None:
        repo.create_account(session, name="doomed")
        raise ValueError("bad job")

    writer = StoreWriter(factory)
    writer.start()
    try:
        good = [writer.submit(_add_account(f"ok{i}")) for i in range(5)]
        bad = writer.submit(broken)
        more = [writer.submit(_add_account(f"late{i}")) for i in range(5)]
        results = await asyncio.gather(*good, bad, *more, return_exceptions=True)
    finally:
        await writer.stop()
    errors = [result for result in results if isinstance(result, BaseException)]
    assert len(errors) == 1 and str(errors[0]) == "bad job"
    assert "doomed" not in _names(factory)  # its own changes were rolled back
    assert len(_names(factory)) == 10


async def test_a_newer_job_with_the_same_key_replaces_a_pending_one(
    factory: sessionmaker[Session],
) -> None:
    writer = StoreWriter(factory)
    writer.start()
    gate = asyncio.get_running_loop().create_future()

    def blocker(session: Session) -> None:
        # Hold the thread so the next two jobs are both pending at once.
        asyncio.run_coroutine_threadsafe(_wait(gate), loop).result(timeout=5)

    loop = asyncio.get_running_loop()
    try:
        first = writer.submit(blocker)
        await asyncio.sleep(0.05)
        older = writer.submit(_add_account("older"), key="same")
        newer = writer.submit(_add_account("newer"), key="same")
        gate.set_result(None)
        await first
        assert await older == await newer  # both waiters learn of the one write
    finally:
        await writer.stop()
    assert _names(factory) == ["newer"]


async def _wait(gate: asyncio.Future[None]) -> None:
    await gate


async def test_stop_applies_what_was_submitted_and_refuses_more(
    factory: sessionmaker[Session],
) -> None:
    writer = StoreWriter(factory)
    writer.start()
    pending = [writer.submit(_add_account(f"s{i}")) for i in range(20)]
    await writer.stop()
    await asyncio.gather(*pending)
    assert len(_names(factory)) == 20
    with pytest.raises(WriterStopped):
        writer.submit(_add_account("too late"))


def test_a_writer_needs_a_positive_batch(factory: sessionmaker[Session]) -> None:
    with pytest.raises(ValueError, match="positive"):
        StoreWriter(factory, max_batch=0)


async def test_items_of_one_kind_are_written_by_one_call(
    factory: sessionmaker[Session],
) -> None:
    calls: list[list[str]] = []

    def add_accounts(session: Session, names: list[str]) -> None:
        calls.append(list(names))
        for name in names:
            repo.create_account(session, name=name)

    writer = StoreWriter(factory, linger_s=0.02)
    writer.start()
    try:
        await asyncio.gather(
            *(writer.submit_item(add_accounts, f"b{i}") for i in range(10)),
            writer.submit_item(add_accounts, "replaced", key="k"),
            writer.submit_item(add_accounts, "kept", key="k"),
        )
    finally:
        await writer.stop()
    assert sorted(name for batch in calls for name in batch) == sorted(
        [f"b{i}" for i in range(10)] + ["kept"]
    )
    assert len(calls) < 11  # grouped, not one call per item
    assert _names(factory) == sorted([f"b{i}" for i in range(10)] + ["kept"])


def _insert_names(session: Session, names: list[str]) -> None:
    for name in names:
        repo.create_account(session, name=name)


async def test_an_urgent_item_does_not_wait_for_the_linger(
    factory: sessionmaker[Session],
) -> None:
    writer = StoreWriter(factory, linger_s=5.0)
    writer.start()
    try:
        loop = asyncio.get_running_loop()
        began = loop.time()
        await asyncio.wait_for(writer.submit_item(_insert_names, "now", urgent=True), 2.0)
        assert loop.time() - began < 2.0
        lazy = writer.submit_item(_insert_names, "later")
        await asyncio.sleep(0.2)
        assert not lazy.done()  # still lingering for company
        # An urgent item cuts the linger short, for what waits with it too: that goes
        # right after it, without lingering again.
        await asyncio.wait_for(writer.submit_item(_insert_names, "hurry", urgent=True), 2.0)
        await asyncio.wait_for(lazy, 1.0)
    finally:
        await writer.stop()
    assert _names(factory) == ["hurry", "later", "now"]


async def test_an_urgent_item_goes_ahead_of_a_running_batch_which_keeps_its_order(
    factory: sessionmaker[Session],
) -> None:
    """A batch stops at its next job when an urgent item waits: the urgent item commits
    next, then the rest of the batch in its order, before anything submitted later."""
    loop = asyncio.get_running_loop()
    gate = loop.create_future()
    order: list[str] = []

    def step(name: str, hold: bool = False) -> Callable[[Session], None]:
        def job(session: Session) -> None:
            if hold:  # keep the batch running until the urgent item is queued
                asyncio.run_coroutine_threadsafe(_wait(gate), loop).result(timeout=5)
            order.append(name)
            repo.create_account(session, name=name)

        return job

    def urgent(session: Session, names: list[str]) -> None:
        order.extend(names)
        _insert_names(session, names)

    writer = StoreWriter(factory, linger_s=0.05)
    writer.start()
    try:
        batch = [writer.submit(step("first", hold=True))]
        batch += [writer.submit(step(f"then{i}")) for i in range(3)]
        await asyncio.sleep(0.1)  # the four are one batch, held in its first job
        hurry = writer.submit_item(urgent, "hurry", urgent=True)
        later = writer.submit(step("later"))
        gate.set_result(None)
        await asyncio.wait_for(asyncio.gather(*batch, hurry, later), 5.0)
    finally:
        await writer.stop()
    assert order == ["first", "hurry", "then0", "then1", "then2", "later"]
    assert writer.jobs == 6
    assert _names(factory) == sorted(order)


async def test_a_cut_batch_that_fails_later_keeps_what_was_committed(
    factory: sessionmaker[Session],
) -> None:
    """The rest of a cut batch is a transaction of its own: its bad job fails alone."""
    loop = asyncio.get_running_loop()
    gate = loop.create_future()

    def held(session: Session) -> None:
        asyncio.run_coroutine_threadsafe(_wait(gate), loop).result(timeout=5)
        repo.create_account(session, name="held")

    def broken(session: Session) -> None:
        raise ValueError("bad job")

    writer = StoreWriter(factory, linger_s=0.05)
    writer.start()
    try:
        first = writer.submit(held)
        bad = writer.submit(broken)
        good = writer.submit(_add_account("good"))
        await asyncio.sleep(0.1)
        hurry = writer.submit_item(_insert_names, "hurry", urgent=True)
        gate.set_result(None)
        results = await asyncio.gather(first, bad, good, hurry, return_exceptions=True)
    finally:
        await writer.stop()
    kinds = [type(result).__name__ for result in results]
    assert kinds == ["NoneType", "ValueError", "str", "NoneType"]
    assert _names(factory) == ["good", "held", "hurry"]


async def test_each_waiter_is_settled_on_the_loop_that_submitted(
    factory: sessionmaker[Session],
) -> None:
    """serve's HTTP thread submits from a loop of its own: its waiters resolve there."""
    writer = StoreWriter(factory, linger_s=0.01)
    writer.start()
    settled_on: list[int] = []

    def submit_from_another_loop() -> str:
        async def submit() -> str:
            sid: str = await writer.submit(_add_account("elsewhere"))
            settled_on.append(threading.get_ident())
            return sid

        return asyncio.run(submit())

    try:
        here = writer.submit(_add_account("here"))
        there = await asyncio.to_thread(submit_from_another_loop)
        here_sid = await here
    finally:
        await writer.stop()
    assert there.startswith("VP") and here_sid.startswith("VP") and there != here_sid
    assert settled_on and settled_on[0] != threading.get_ident()
    assert _names(factory) == ["elsewhere", "here"]


async def test_a_waiter_on_a_closed_loop_does_not_stop_the_writer(
    factory: sessionmaker[Session],
) -> None:
    writer = StoreWriter(factory)
    writer.start()
    hold = threading.Event()

    def held(session: Session) -> None:
        hold.wait(5)

    def submit_then_close_the_loop() -> None:
        loop = asyncio.new_event_loop()

        async def submit() -> None:
            writer.submit(held)  # not awaited: the loop closes before the job is done

        loop.run_until_complete(submit())
        loop.close()

    try:
        await asyncio.to_thread(submit_then_close_the_loop)
        hold.set()
        sid = await asyncio.wait_for(writer.submit(_add_account("after")), 5)
    finally:
        await writer.stop()
    assert sid.startswith("VP")
    assert _names(factory) == ["after"]
