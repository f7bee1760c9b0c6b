"""The HTTP server on a loop of its own: the hop to the engine's loop, and the app with it.

The test's loop plays the server's thread (``voiceplane serve``'s HTTP thread); the engine's
loop runs in a thread of its own, as serve's main loop does.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.orm import Session, sessionmaker
from starlette.types import Message, Receive, Scope, Send

from tests.api.conftest import Doorbell, Tenant, stored_calls
from voiceplane.api.app import create_app
from voiceplane.api.on_loop import on_loop
from voiceplane.config import load_config


@dataclass(frozen=True)
class EngineLoop:
    loop: asyncio.AbstractEventLoop
    thread: threading.Thread


@pytest.fixture
def engine() -> Iterator[EngineLoop]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="engine-loop", daemon=True)
    thread.start()
    try:
        yield EngineLoop(loop, thread)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()


@dataclass
class Echo:
    """An ASGI app that answers a request with its body, noting the thread it ran on."""

    threads: list[int] = field(default_factory=list)
    release: asyncio.Event | None = None  # the app waits for it before answering
    cancelled: threading.Event = field(default_factory=threading.Event)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.threads.append(threading.get_ident())
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        if self.release is not None:
            try:
                await self.release.wait()
            except asyncio.CancelledError:
                self.cancelled.set()
                raise
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})


@dataclass
class Connection:
    """The server's side of one request: its body in two parts, and what was sent back."""

    threads: list[int] = field(default_factory=list)
    sent: list[Message] = field(default_factory=list)
    parts: list[bytes] = field(default_factory=lambda: [b"hello ", b"there"])

    async def receive(self) -> Message:
        self.threads.append(threading.get_ident())
        part = self.parts.pop(0)
        return {"type": "http.request", "body": part, "more_body": bool(self.parts)}

    async def send(self, message: Message) -> None:
        self.threads.append(threading.get_ident())
        self.sent.append(message)


SCOPE: Scope = {"type": "http", "method": "POST", "path": "/", "headers": []}


async def test_the_app_runs_on_its_loop_and_the_connection_on_the_servers(
    engine: EngineLoop,
) -> None:
    app, connection = Echo(), Connection()

    await on_loop(app, engine.loop)(dict(SCOPE), connection.receive, connection.send)

    assert app.threads == [engine.thread.ident]
    assert set(connection.threads) == {threading.get_ident()}
    assert len(connection.threads) == 4  # two parts received, start and body sent
    assert connection.sent[0]["status"] == 200
    assert connection.sent[1]["body"] == b"hello there"


async def test_on_its_own_loop_the_app_is_called_directly() -> None:
    app, connection = Echo(), Connection()

    await on_loop(app, asyncio.get_running_loop())(
        dict(SCOPE), connection.receive, connection.send
    )

    assert app.threads == [threading.get_ident()]
    assert connection.sent[1]["body"] == b"hello there"


async def test_a_failure_of_the_app_reaches_the_server(engine: EngineLoop) -> None:
    async def failing(scope: Scope, receive: Receive, send: Send) -> None:
        raise LookupError("no such thing")

    connection = Connection()
    with pytest.raises(LookupError, match="no such thing"):
        await on_loop(failing, engine.loop)(dict(SCOPE), connection.receive, connection.send)
    assert connection.sent == []


async def test_cancelling_the_servers_side_cancels_the_app(engine: EngineLoop) -> None:
    released = asyncio.run_coroutine_threadsafe(_new_event(), engine.loop).result(5)
    app, connection = Echo(release=released), Connection()
    hop = on_loop(app, engine.loop)

    async def serve() -> None:
        await hop(dict(SCOPE), connection.receive, connection.send)

    served = asyncio.create_task(serve())
    while not connection.parts:  # the app has read the whole body and waits
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)

    served.cancel()
    with pytest.raises(asyncio.CancelledError):
        await served
    assert await asyncio.to_thread(app.cancelled.wait, 5)
    assert connection.sent == []


async def _new_event() -> asyncio.Event:
    return asyncio.Event()


@dataclass
class ThreadNotingDoorbell(Doorbell):
    """A doorbell that also notes the thread each ring came on."""

    threads: list[int] = field(default_factory=list)

    def call_queued(self, call_id: str) -> None:
        self.threads.append(threading.get_ident())
        super().call_queued(call_id)


def note_threads(app: FastAPI) -> list[int]:
    """Add ``GET /where`` to ``app``; the list it fills with the thread of each request."""
    served_on: list[int] = []

    @app.get("/where")
    async def where() -> dict[str, Any]:
        served_on.append(threading.get_ident())
        return {}

    return served_on


def client_of(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://voiceplane.test")


async def test_the_placing_posts_are_answered_here_and_the_rest_on_the_engines_loop(
    engine: EngineLoop, sessions: sessionmaker[Session], data_dir: Path, acme: Tenant
) -> None:
    doorbell = ThreadNotingDoorbell(sessions)
    config = load_config(None, {"VOICEPLANE_DATA_DIR": str(data_dir)})
    app = create_app(
        config, ready=lambda: True, sessions=sessions, commands=doorbell,
        engine_loop=engine.loop,
    )  # fmt: skip
    served_on = note_threads(app)
    async with client_of(app) as c:
        placed = await c.post(
            acme.url("click-to-call"),
            json={"from": "+919900000001", "to": "+919900000002", "bridge": acme.bridge},
            headers=acme.headers,
        )
        call_id = placed.json()["id"]
        for _ in range(100):  # the ring is handed to the engine's loop
            if doorbell.queued:
                break
            await asyncio.sleep(0.01)
        record = await c.get(acme.url(f"calls/{call_id}"), headers=acme.headers)
        await c.get("/where")

    assert placed.status_code == 202
    assert doorbell.queued == [call_id] and stored_calls(sessions) == 1
    assert doorbell.threads == [engine.thread.ident]
    assert record.status_code == 200 and record.json()["id"] == call_id
    assert served_on == [engine.thread.ident]


async def test_without_a_store_every_request_is_served_on_the_engines_loop(
    engine: EngineLoop, data_dir: Path
) -> None:
    config = load_config(None, {"VOICEPLANE_DATA_DIR": str(data_dir)})
    app = create_app(config, ready=lambda: True, engine_loop=engine.loop)
    served_on = note_threads(app)
    async with client_of(app) as c:
        health = await c.get("/healthz")
        await c.get("/where")

    assert health.status_code == 200
    assert served_on == [engine.thread.ident]


async def test_lifespan_is_answered_on_the_servers_loop(engine: EngineLoop) -> None:
    """The server ends its loop right after "shutdown complete": no hop may be in flight."""
    threads: list[int] = []
    inbox = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    sent: list[Message] = []

    async def lifespan_app(scope: Scope, receive: Receive, send: Send) -> None:
        threads.append(threading.get_ident())
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})

    async def receive() -> Message:
        return inbox.pop(0)

    async def send(message: Message) -> None:
        sent.append(message)

    await on_loop(lifespan_app, engine.loop)({"type": "lifespan"}, receive, send)

    assert threads == [threading.get_ident()]
    assert [m["type"] for m in sent] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
