"""A raw ASGI front that answers the POSTs placing calls without FastAPI's machinery.

At hundreds of calls a second, ``voiceplane serve``'s event loop is the bottleneck, and most
of a placing POST's CPU went to the framework around the handler, not the handler: FastAPI's
per-request telemetry check, five middlewares, the router matching the path against every
route's regex, dependency solving for ``sid`` and the request. This front recognises the
placing requests by splitting the path, and runs the very handler the FastAPI route runs
(:data:`voiceplane.api.voice.PLACING`, :func:`voiceplane.api.legacy.legacy_api`), so there is
no second copy of any rule; everything else goes to FastAPI untouched.

The answer is the same in every case, refusals included, because a refusal is handed to the
app's own exception handlers exactly as Starlette would: a handled exception (an
:class:`~voiceplane.api.errors.ApiError`, an ``HTTPException``) by its status or class, and
anything else to the app's 500 handler, after which it is raised again for the server to log
(as Starlette's ``ServerErrorMiddleware`` does). FastAPI's native OpenTelemetry is not applied
to these requests: voiceplane configures no OpenTelemetry provider, so it was not either.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final

from fastapi import Request, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from voiceplane.api import legacy, voice
from voiceplane.api.deps import Backend

Handler = Callable[[Request, Any], Response | Awaitable[Response]]
Answer = voice.Placing

# voice.PREFIX + "/<segment>" split on "/": "", "v1", the SID, "voice", the segment.
_ROOT, _SID, _VOICE = voice.PREFIX.strip("/").split("/")
assert _SID == "{sid}", voice.PREFIX
_SERVER_ERROR_KEYS: Final = (500, Exception)  # FastAPI's ServerErrorMiddleware handler keys


async def _legacy(backend: Backend, sid: str, request: Request) -> Response:
    return await legacy.legacy_api(request, backend)


class FastPath:
    """``app`` (the FastAPI app) behind a front that answers the placing requests itself.

    ``handlers`` is the app's ``exception_handlers`` (read at each refusal, so it is the
    mapping FastAPI itself uses).
    """

    def __init__(
        self, app: ASGIApp, *, backend: Backend, handlers: Mapping[Any, Handler]
    ) -> None:
        self.app = app
        self.backend = backend
        self.handlers = handlers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not scope.get("root_path"):
            found = route(scope["method"], scope["path"])
            if found is not None:
                await self._serve(found[0], found[1], scope, receive, send)
                return
        await self.app(scope, receive, send)

    async def _serve(
        self, answer: Answer, sid: str, scope: Scope, receive: Receive, send: Send
    ) -> None:
        request = Request(scope, receive)
        try:
            response = await self._answer(answer, sid, request)
        except Exception as exc:
            await (await self._server_error(request, exc))(scope, receive, send)
            raise
        await response(scope, receive, send)

    async def _answer(self, answer: Answer, sid: str, request: Request) -> Response:
        """The handler's response, or the response of the exception handler for its
        refusal (Starlette's ExceptionMiddleware: by status, then by class)."""
        try:
            return await answer(self.backend, sid, request)
        except Exception as exc:
            handler = self._handler_for(exc)
            if handler is None:
                raise
            return await _call(handler, request, exc)

    def _handler_for(self, exc: Exception) -> Handler | None:
        handlers = self.handlers
        if isinstance(exc, HTTPException) and exc.status_code not in _SERVER_ERROR_KEYS:
            by_status = handlers.get(exc.status_code)
            if by_status is not None:
                return by_status
        for cls in type(exc).__mro__:
            if cls not in _SERVER_ERROR_KEYS and cls in handlers:
                return handlers[cls]
        return None

    async def _server_error(self, request: Request, exc: Exception) -> Response:
        """What ServerErrorMiddleware answers: the app's 500 handler (the last one given,
        as FastAPI picks it), else Starlette's plain text."""
        handler = None
        for key, value in self.handlers.items():
            if key in _SERVER_ERROR_KEYS:
                handler = value
        if handler is None:
            return PlainTextResponse("Internal Server Error", status_code=500)
        return await _call(handler, request, exc)


def route(method: str, path: str) -> tuple[Answer, str] | None:
    """The handler the fast path answers ``method path`` with, and the account SID of the
    path (empty for the legacy API); ``None``: FastAPI's request."""
    if method == "POST":
        parts = path.split("/")
        if (
            len(parts) == 5
            and parts[1] == _ROOT
            and parts[3] == _VOICE
            and parts[2]
            and parts[4] in voice.PLACING
        ):
            return voice.PLACING[parts[4]], parts[2]
    if (method == "POST" or method == "GET") and path in legacy.PATHS:
        return _legacy, ""
    return None


async def _call(handler: Handler, request: Request, exc: Exception) -> Response:
    """``handler(request, exc)``; a synchronous one in the thread pool, as Starlette does."""
    if inspect.iscoroutinefunction(handler):
        response: Response = await handler(request, exc)
        return response
    return await run_in_threadpool(_sync, handler, request, exc)


def _sync(handler: Handler, request: Request, exc: Exception) -> Response:
    response = handler(request, exc)
    assert isinstance(response, Response)
    return response
