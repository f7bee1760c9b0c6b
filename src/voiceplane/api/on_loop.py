"""An ASGI app served on another thread's event loop than the server's.

``voiceplane serve`` runs its HTTP server on a thread and loop of its own, so that a POST
placing a call does not wait behind the SIP signalling of the calls already running; every
other request is served on the engine's loop, where the objects those routes touch live.
:func:`on_loop` is the hop: the app runs as a task on its loop, and each of its ``receive``
and ``send`` calls runs back on the server's loop, where the connection lives.

Cancelling the server's side (a connection dropped at shutdown) cancels the app's task on
the other loop too: the futures that carry the hop pass the cancellation along.

The lifespan messages are answered on the server's loop, without the hop: the server ends
its loop as soon as the app has said "shutdown complete", and a hop still returning then
would be cancelled halfway. voiceplane's app has no startup or shutdown work of its own
(serve starts and stops the services), so nothing runs on the wrong thread there.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from starlette.types import ASGIApp, Message, Receive, Scope, Send

T = TypeVar("T")


def on_loop(app: ASGIApp, loop: asyncio.AbstractEventLoop) -> ASGIApp:
    """``app``, served on ``loop`` whichever loop the server calls it from."""

    async def served_on_loop(scope: Scope, receive: Receive, send: Send) -> None:
        here = asyncio.get_running_loop()
        if here is loop or scope["type"] == "lifespan":
            await app(scope, receive, send)
            return

        async def receive_here() -> Message:
            return await _run_on(here, receive())

        async def send_here(message: Message) -> None:
            await _run_on(here, send(message))

        await _run_on(loop, app(scope, receive_here, send_here))

    return served_on_loop


async def _run_on(loop: asyncio.AbstractEventLoop, awaitable: Awaitable[T]) -> T:
    """Await ``awaitable`` as a task on ``loop`` (another thread's), from this loop."""
    return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(_awaited(awaitable), loop))


async def _awaited(awaitable: Awaitable[T]) -> T:
    return await awaitable
