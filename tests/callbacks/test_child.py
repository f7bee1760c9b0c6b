"""The sender in a child process: attempts made there come back as outcomes; a child that
dies is noticed, its open attempts are given back and a new child takes over; with the
dispatcher, nothing is lost when the child is killed mid-send; the child ends when its
parent is killed."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker
from standardwebhooks.webhooks import Webhook

from tests.callbacks.receiver import Receiver, Request
from voiceplane.callbacks import signing
from voiceplane.callbacks.child import ChildSender
from voiceplane.callbacks.dispatcher import Dispatcher, DispatcherSettings
from voiceplane.callbacks.sending import SenderSettings, SendJob, SendOutcome
from voiceplane.store import outbox
from voiceplane.store import repository as repo
from voiceplane.store.db import create_engine_for, migrate, session_factory
from voiceplane.store.outbox import NewCallback
from voiceplane.store.writer import StoreWriter

SETTINGS = SenderSettings(connect_timeout_s=0.5, total_timeout_s=2.0, per_destination=4)
SECRET = signing.new_secret()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    server = Receiver()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
def sessions(database_url: str) -> Iterator[sessionmaker[Session]]:
    migrate(database_url)
    engine = create_engine_for(database_url)
    yield session_factory(engine)
    engine.dispose()


def _job(ident: str, url: str, body: dict[str, object] | None = None) -> SendJob:
    text = None if body is None else json.dumps(body)
    method = "GET" if body is None else "POST"
    return SendJob(ident, method, url, text, (SECRET,), time.monotonic() + 60)


class Outcomes:
    def __init__(self) -> None:
        self.seen: list[SendOutcome] = []
        self._changed = asyncio.Event()

    def __call__(self, outcome: SendOutcome) -> None:
        self.seen.append(outcome)
        self._changed.set()

    async def wait_for(self, count: int, timeout: float = 10) -> list[SendOutcome]:
        async with asyncio.timeout(timeout):
            while len(self.seen) < count:
                self._changed.clear()
                await self._changed.wait()
        return self.seen


async def _until(condition: object, timeout: float = 10) -> None:
    async with asyncio.timeout(timeout):
        while not condition():  # type: ignore[operator]
            await asyncio.sleep(0.02)


async def test_attempts_made_in_the_child_come_back_signed_and_judged(
    receiver: Receiver,
) -> None:
    async def answer(request: Request) -> int:
        return 500 if request.target == "/fail" else 204

    receiver.respond = answer
    outcomes = Outcomes()
    sender = ChildSender(SETTINGS)
    await sender.start(outcomes)
    try:
        sender.submit(
            [_job("msg_a", receiver.url("/ok"), {"n": 1}), _job("msg_b", receiver.url("/fail"))]
        )
        sender.submit([_job("msg_c", "http://127.0.0.1:9/refused", {"n": 3})])
        seen = {outcome.id: outcome for outcome in await outcomes.wait_for(3)}
        child = sender.pid
    finally:
        await sender.stop()
    assert child is not None and child != os.getpid()
    assert (seen["msg_a"].attempted, seen["msg_a"].http_status, seen["msg_a"].error) == (
        True, 204, None,
    )  # fmt: skip
    assert (seen["msg_b"].http_status, seen["msg_b"].error) == (500, "HTTP 500")
    assert seen["msg_c"].attempted and seen["msg_c"].http_status is None
    assert seen["msg_c"].error and "Connect" in seen["msg_c"].error
    assert all(abs(outcome.at - time.time()) < 30 for outcome in seen.values())
    (post,) = [request for request in receiver.requests if request.method == "POST"]
    assert Webhook(SECRET).verify(post.body, post.headers) == {"n": 1}
    assert post.headers["webhook-id"] == "msg_a"


async def test_a_job_whose_lease_would_end_before_it_could_start_is_given_back(
    receiver: Receiver,
) -> None:
    outcomes = Outcomes()
    sender = ChildSender(SETTINGS)
    await sender.start(outcomes)
    try:
        late = SendJob("msg_late", "GET", receiver.url(), None, (SECRET,), time.monotonic() + 1)
        sender.submit([late])  # 1 s left, an attempt may take total_timeout_s (2 s)
        (outcome,) = await outcomes.wait_for(1)
    finally:
        await sender.stop()
    assert outcome == SendOutcome("msg_late", attempted=False)
    assert receiver.requests == []


async def test_a_dead_child_is_noticed_its_open_attempts_given_back_and_replaced(
    receiver: Receiver,
) -> None:
    gate = asyncio.Event()

    async def stuck(request: Request) -> int:
        await gate.wait()
        return 200

    receiver.respond = stuck
    outcomes = Outcomes()
    sender = ChildSender(SETTINGS)
    await sender.start(outcomes)
    try:
        await sender.ready()
        first = sender.pid
        assert first is not None
        sender.submit([_job(f"msg_{n}", receiver.url(), {"n": n}) for n in range(3)])
        await _until(lambda: receiver.concurrency == 3)
        os.kill(first, signal.SIGKILL)
        given_back = await outcomes.wait_for(3)
        assert sorted(o.id for o in given_back) == ["msg_0", "msg_1", "msg_2"]
        assert not any(outcome.attempted for outcome in given_back)
        gate.set()
        # A new child takes the next jobs.
        sender.submit([_job("msg_next", receiver.url("/next"), {"n": 9})])
        after = await outcomes.wait_for(4)
        assert after[3].id == "msg_next" and after[3].http_status == 200
        assert sender.restarts == 1 and sender.pid not in (None, first)
    finally:
        await sender.stop()


async def test_a_child_that_cannot_start_is_retried_with_a_pause_and_stop_still_works(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    outcomes = Outcomes()
    sender = ChildSender(SETTINGS, command=[sys.executable, "-c", "raise SystemExit(3)"])
    await sender.start(outcomes)
    sender.submit([_job("msg_waits", receiver.url(), {"n": 1})])
    await asyncio.sleep(1.5)
    started = time.monotonic()
    await sender.stop()
    assert time.monotonic() - started < 3
    failures = [
        record for record in caplog.records
        if "did not start" in str(record.exc_info and record.exc_info[1])
    ]  # fmt: skip
    # Restarted, but not in a tight loop: pauses of 0, 0.1, 0.2, 0.4, 0.8 s.
    assert 2 <= len(failures) <= 7
    assert outcomes.seen == [] and receiver.requests == []


async def test_nothing_is_lost_when_the_child_is_killed_mid_send(
    sessions: sessionmaker[Session], receiver: Receiver
) -> None:
    gate = asyncio.Event()

    async def stuck_at_first(request: Request) -> int:
        await gate.wait()
        return 200

    receiver.respond = stuck_at_first
    with sessions.begin() as session:
        account, _key = repo.create_account(session, name="acme")
        call_ids = [
            repo.create_call(session, account=account, service="outbound", to_number=f"+{n}").id
            for n in range(5)
        ]
    with sessions.begin() as session:
        for call_id in call_ids:
            outbox.enqueue(
                session, account_id=account.id, call_id=call_id,
                callbacks=[NewCallback("status", "completed", receiver.url(), "POST",
                                       {"id": call_id})],
            )  # fmt: skip
    settings = DispatcherSettings(
        connect_timeout_s=0.5, total_timeout_s=2, first_retry_s=0.05, max_retry_s=0.2,
        poll_s=0.1, lease_s=30, drain_s=0.5,
    )  # fmt: skip
    writer = StoreWriter(sessions)
    writer.start()
    child = ChildSender(settings.sender)
    dispatcher = Dispatcher(sessions, settings=settings, writer=writer, sender=child)
    await dispatcher.start()
    try:
        await _until(lambda: receiver.concurrency == 5)
        killed = child.pid
        assert killed is not None
        os.kill(killed, signal.SIGKILL)
        gate.set()  # the requests the dead child made are answered; nobody reads them
        # Given back at once (not after the 30 s lease) and sent again by a new child.
        await _until(lambda: dispatcher.delivered == 5)
    finally:
        await dispatcher.stop()
        await writer.stop()
    arrived = {request.headers["webhook-id"] for request in receiver.requests}
    with sessions() as session:
        reports = [r for call_id in call_ids for r in outbox.attempts_for(session, call_id=call_id)]
    assert {report.message.id for report in reports} == arrived  # every one, same webhook-id
    assert all(report.delivered_at is not None for report in reports)
    assert len(receiver.requests) >= 10  # the first sends arrived too: at least once
    assert child.restarts == 1


PARENT = """
import asyncio, sys
from voiceplane.callbacks.child import ChildSender
from voiceplane.callbacks.sending import SenderSettings

async def main():
    sender = ChildSender(SenderSettings(1.0, 2.0, 4))
    await sender.start(lambda outcome: None)
    await sender.ready()
    print(sender.pid, flush=True)
    await asyncio.sleep(60)

asyncio.run(main())
"""


def test_the_child_exits_when_its_parent_is_killed(tmp_path: Path) -> None:
    script = tmp_path / "parent.py"
    script.write_text(PARENT)
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(10)
        deadline = time.monotonic() + 10
        while _alive(child) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(child)
    finally:
        if parent.poll() is None:
            parent.kill()


def _alive(pid: int) -> bool:
    """Whether ``pid`` still runs (a zombie, exited but not reaped by init yet, does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"
