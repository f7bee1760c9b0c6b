"""A crash loses no callback: SIGKILL ``voiceplane serve`` with callbacks pending, start again.

Real processes, real HTTP, real SIP to the built-in sandbox operator (numbers ending in 486
are busy). Three calls are placed with a ``callback`` (JSON POST, or a legacy GET with
placeholders) and a ``dlrurl`` (progress events). The receiver first answers 503 to
everything, so every callback is stored, tried and waiting for its retry; then it stops
answering at all, so some sends are under way when ``serve`` is killed with SIGKILL. The
second ``serve`` on the same store, with the receiver answering 204, must deliver every
callback in the outbox: each with the ``webhook-id`` it had before the crash (receivers drop
duplicates by it), and each call's callbacks in their ``sequence`` order.
"""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from tests.callbacks.receiver import Receiver, Request
from tests.calls.test_restart import api, run_cli, serving
from tests.support.platform import BRIDGE, platform_environment
from voiceplane.config import load_config
from voiceplane.store.db import create_engine_for, session_factory
from voiceplane.store.models import Outbox

BUSY = "+919876500486"
BUSY_TOO = "+919876510486"
BUSY_AS_WELL = "+919876520486"
# Short timings so the test takes seconds: an attempt may take 2 s, a lease lasts 3 s.
CALLBACK_SETTINGS = {
    "VOICEPLANE_CALLBACKS_TOTAL_TIMEOUT_S": "2",
    "VOICEPLANE_CALLBACKS_CONNECT_TIMEOUT_S": "1",
    "VOICEPLANE_CALLBACKS_LEASE_S": "3",
    "VOICEPLANE_CALLBACKS_FIRST_RETRY_S": "0.3",
    "VOICEPLANE_CALLBACKS_MAX_RETRY_S": "0.5",
}


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgresql)])
def store_url(request: pytest.FixtureRequest) -> Iterator[str | None]:
    if request.param == "sqlite":
        yield None
    else:
        yield request.getfixturevalue("postgresql_database_url")


def outbox_rows(url: str) -> list[Outbox]:
    engine = create_engine_for(url)
    try:
        with session_factory(engine)() as session:
            rows = session.scalars(select(Outbox).order_by(Outbox.call_id, Outbox.seq))
            found = list(rows)
            session.expunge_all()
            return found
    finally:
        engine.dispose()


async def until(condition: object, what: str, within: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not condition():  # type: ignore[operator]
        if loop.time() > deadline:
            raise AssertionError(f"never {what} within {within} s")
        await asyncio.sleep(0.05)


async def test_callbacks_pending_at_a_sigkill_are_all_delivered_after_the_restart(
    tmp_path: Path, store_url: str | None
) -> None:
    mode = {"answer": "fail"}
    answered: list[tuple[Request, int]] = []

    async def respond(request: Request) -> int:
        if mode["answer"] == "hang":
            await asyncio.sleep(3600)  # until the process on the other end dies
        status = 503 if mode["answer"] == "fail" else 204
        answered.append((request, status))
        return status

    receiver = Receiver(respond=respond)
    await receiver.start()

    def environment() -> dict[str, str]:
        return platform_environment(
            tmp_path, trunk=None, database_url=store_url, extra=CALLBACK_SETTINGS
        )

    first_env = environment()
    url = load_config(None, first_env).effective_store_url
    account = json.loads(
        await run_cli("account", "create", "Acme", "--json", environ=first_env, cwd=tmp_path)
    )
    await run_cli("number", "add", BRIDGE, "--account", account["sid"], "--kind", "bridge",
                  environ=first_env, cwd=tmp_path)  # fmt: skip
    legacy = receiver.url("/legacy?id={id}&status={status}&to={receiver}")
    try:
        async with serving(tmp_path, first_env, "serve-1") as first:
            async with api(first, account["sid"], account["api_key"]) as before:
                calls = [
                    await before.place("outbound", to=BUSY, callback=receiver.url("/status"),
                                       dlrurl=receiver.url("/progress")),  # fmt: skip
                    await before.place("outbound", to=BUSY_TOO, callback=legacy,
                                       dlrurl=receiver.url("/progress")),  # fmt: skip
                    await before.place("click-to-call", **{"from": BUSY_AS_WELL, "to": BUSY,
                                       "callback": receiver.url("/status")}),  # fmt: skip
                ]
                for call_id in calls:
                    await before.until(call_id, lambda r: r["state"] == "completed",
                                       "completed", 10)  # fmt: skip
            # Every callback written, and each call's first ones tried and refused (the later
            # ones of a call and URL wait for the earlier: order is kept) ...
            await until(lambda: len(outbox_rows(url)) >= 7, "wrote the callbacks", 10)
            await until(lambda: {row.call_id for row in outbox_rows(url) if row.attempts}
                        == set(calls), "tried every call's callbacks", 10)  # fmt: skip
            # ... then some sends are under way at the kill.
            mode["answer"] = "hang"
            await until(lambda: receiver.concurrency >= 1, "had a send under way", 10)
            first.process.send_signal(signal.SIGKILL)
            assert await first.process.wait() == -signal.SIGKILL

        before_kill = outbox_rows(url)
        assert before_kill and all(row.delivered_at is None for row in before_kill)
        refused = {r.headers["webhook-id"] for r, status in answered if status == 503}
        assert refused and refused <= {row.id for row in before_kill}
        mode["answer"] = "ok"
        tried_before = len(answered)

        async with serving(tmp_path, environment(), "serve-2"):
            await until(
                lambda: all(row.delivered_at is not None for row in outbox_rows(url)),
                "delivered every callback",
                20,
            )
        after = outbox_rows(url)
    finally:
        await receiver.stop()

    # The same callbacks as before the crash: none lost, none new, none given up.
    assert [row.id for row in after] == [row.id for row in before_kill]
    assert all(row.given_up_at is None for row in after)
    delivered = [(r, s) for r, s in answered[tried_before:] if s == 204]
    by_id = {request.headers["webhook-id"]: request for request, _ in delivered}
    assert set(by_id) == {row.id for row in after}
    # Each call's callbacks to one URL arrived in order (a call's callback and dlrurl are
    # separate receivers: neither waits for the other).
    first_seen: dict[tuple[str, str], list[int]] = {}
    seen: set[str] = set()
    for request, _ in delivered:
        ident = request.headers["webhook-id"]
        if ident in seen:
            continue
        seen.add(ident)
        row = next(row for row in after if row.id == ident)
        first_seen.setdefault((row.call_id, row.url), []).append(row.seq)
        if request.method == "POST":
            assert json.loads(request.body)["sequence"] == row.seq
        else:  # the legacy GET: its values in the URL
            assert request.target.startswith("/legacy?id=") and "status=BUSY" in request.target
    assert {call_id for call_id, _url in first_seen} == set(calls)
    for key, seqs in first_seen.items():
        assert seqs == sorted(seqs), (key, seqs)
