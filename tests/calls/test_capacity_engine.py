"""The engine's channel counts at start: right after a crash, and with calls it does not own.

A real store and writer, the real engine; the trunk is a stand-in that fails at once, so a
call the engine takes ends FAILED without SIP (what is tested is whether it was taken).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from voiceplane.calls import engine as engine_module
from voiceplane.calls.engine import CallEngine, EngineSettings
from voiceplane.calls.trunk import Trunk
from voiceplane.store import repository
from voiceplane.store.db import create_engine_for, migrate, session_factory
from voiceplane.store.models import Account, Call
from voiceplane.store.writer import StoreWriter

BRIDGE = "+918047100000"
OTHER = "+918047100001"


@pytest.fixture
def sessions(database_url: str) -> Iterator[sessionmaker[Session]]:
    migrate(database_url)
    engine = create_engine_for(database_url)
    yield session_factory(engine)
    engine.dispose()


@pytest.fixture
async def writer(sessions: sessionmaker[Session]) -> AsyncIterator[StoreWriter]:
    writer = StoreWriter(sessions)
    writer.start()
    yield writer
    await writer.stop()


def no_trunk() -> Trunk:
    raise RuntimeError("no trunk in this test")


def calls(sessions: sessionmaker[Session], *states: str) -> list[str]:
    """An account whose bridge has 2 channels, and one outbound call in each of ``states``
    (oldest first)."""
    ids = []
    with sessions.begin() as session:
        account, _key = repository.create_account(session, name="acme")
        repository.add_number(session, account=account, e164=BRIDGE, kind="bridge", channels=2)
        for index, state in enumerate(states):
            call = repository.create_call(
                session, account=account, service="outbound", to_number=f"+9198765000{index:02}",
                bridge=BRIDGE,
            )  # fmt: skip
            session.execute(update(Call).where(Call.id == call.id).values(state=state))
            ids.append(call.id)
    return ids


def call(sessions: sessionmaker[Session], call_id: str) -> Call:
    with sessions.begin() as session:
        found = repository.find_call(session, call_id=call_id)
        assert found is not None
        session.expunge(found)
        return found


async def until(check: Any, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.02)


def an_engine(writer: StoreWriter) -> CallEngine:
    return CallEngine(
        writer=writer, trunk=no_trunk, media=None,  # type: ignore[arg-type]
        settings=EngineSettings(poll_interval_s=0.05),
    )  # fmt: skip


async def test_after_a_crash_the_counts_start_from_what_recovery_left(
    sessions: sessionmaker[Session], writer: StoreWriter
) -> None:
    # A crash left both channels of the bridge "in use" in the store, and a call waiting.
    talking, ringing, waiting = calls(sessions, "answered", "dialing", "queued")
    engine = an_engine(writer)
    await engine.start()
    try:
        # Recovery ended the two interrupted calls; their channels are free, not stuck, and
        # the waiting call is taken at once.
        assert engine.recovered == 2
        assert call(sessions, talking).state == "completed"
        await until(lambda: call(sessions, waiting).state == "completed")
        assert call(sessions, waiting).status == "FAILED"  # taken, and failed at our trunk
        await until(lambda: engine.channels.in_use(bridge=BRIDGE) == 0)  # and let go
    finally:
        await engine.stop()


async def test_calls_in_progress_it_does_not_own_hold_their_channels_until_they_end(
    sessions: sessionmaker[Session], writer: StoreWriter, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Another engine on the same store is carrying out two calls: recovery must not touch
    # them (stand-in: no recovery), and this engine must count them.
    monkeypatch.setattr(engine_module, "recover", lambda session: 0)
    first, second, waiting = calls(sessions, "dialing", "answered", "queued")
    engine = an_engine(writer)
    await engine.start()
    try:
        assert engine.channels.in_use(bridge=BRIDGE) == 2
        await asyncio.sleep(0.3)  # several passes of the dispatcher
        assert call(sessions, waiting).state == "queued"  # no free channel
        with sessions.begin() as session:
            session.execute(update(Call).where(Call.id == first).values(state="completed"))
        # The sweep sees it ended: its channel frees, and the waiting call is taken.
        await until(lambda: call(sessions, waiting).state == "completed")
        await until(lambda: engine.channels.in_use(bridge=BRIDGE) == 1)  # the other's second
        assert call(sessions, second).state == "answered"
    finally:
        await engine.stop()


async def test_a_bridge_full_of_its_own_calls_waits_then_times_out(
    sessions: sessionmaker[Session], writer: StoreWriter, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(engine_module, "recover", lambda session: 0)
    _a, _b, waiting = calls(sessions, "dialing", "dialing", "queued")
    with sessions.begin() as session:
        session.execute(update(Call).where(Call.id == waiting).values(queue_timeout=0))
        account = session.query(Account).one()
        assert account.channels is None
    engine = an_engine(writer)
    await engine.start()
    try:
        await until(lambda: call(sessions, waiting).state == "completed")
        ended = call(sessions, waiting)
        assert (ended.status, ended.decided_by_rule) == ("MAX-USE", "capacity.bridge")
        assert ended.legs == []
    finally:
        await engine.stop()


async def test_calls_behind_a_head_that_does_not_fit_are_not_starved(
    sessions: sessionmaker[Session], writer: StoreWriter, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Another engine's click-to-call holds 2 of the bridge's 3 channels. Ours waits for 2
    # (only 1 is free), with outbound calls queued behind it on the same bridge, more than
    # one claim reads; a call through another bridge, queued last, must still go at once.
    monkeypatch.setattr(engine_module, "recover", lambda session: 0)
    with sessions.begin() as session:
        account, _key = repository.create_account(session, name="acme")
        repository.add_number(session, account=account, e164=BRIDGE, kind="bridge", channels=3)
        repository.add_number(session, account=account, e164=OTHER, kind="bridge")
        ids = [
            repository.create_call(
                session, account=account, service=service, from_number="+919000000001",
                to_number=f"+9198765000{index:02}", bridge=bridge,
            ).id
            for index, (service, bridge) in enumerate(
                [("click2call", BRIDGE), ("click2call", BRIDGE)]
                + [("outbound", BRIDGE)] * 10 + [("outbound", OTHER)]
            )
        ]  # fmt: skip
        session.execute(update(Call).where(Call.id == ids[0]).values(state="answered"))
    engine = CallEngine(
        writer=writer, trunk=no_trunk, media=None,  # type: ignore[arg-type]
        settings=EngineSettings(poll_interval_s=0.5, claim_batch=5),
    )  # fmt: skip
    await engine.start()
    try:
        await until(lambda: call(sessions, ids[-1]).state == "completed", timeout=2)
        assert call(sessions, ids[1]).state == "queued"  # still waiting for its 2 channels
        assert {call(sessions, call_id).state for call_id in ids[2:-1]} == {"queued"}  # FIFO
    finally:
        await engine.stop()
