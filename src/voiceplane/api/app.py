"""The HTTP application: FastAPI app factory, health check and the JSON error format.

Every error leaves as ``{"error": {"code": ..., "message": ..., "field": ...}}`` (DESIGN.md,
Contract). Routes raise an :class:`~voiceplane.api.errors.ApiError`, or
``HTTPException(status, detail=...)`` where ``detail`` is either a message or a dict with
``code``, ``message`` and optionally ``field``.

With a store (``sessions``), the app also serves the voice API: the kaleyra.io-style routes
(:mod:`voiceplane.api.voice`) and the legacy ``?method=`` API (:mod:`voiceplane.api.legacy`).
Without one it serves only ``/healthz`` and the docs.
"""

import asyncio
import dataclasses
from collections.abc import Callable, Mapping
from http import HTTPStatus
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from pydantic import BaseModel
from sqlalchemy.orm import Session, sessionmaker
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from voiceplane import __version__
from voiceplane.api import capacity, flows, legacy, policy, voice
from voiceplane.api.admin_dnd import router as admin_dnd_router
from voiceplane.api.deps import Backend
from voiceplane.api.errors import ApiError
from voiceplane.api.fast_path import FastPath
from voiceplane.api.on_loop import on_loop
from voiceplane.calls.commands import CallCommands, NoEngine, OnEngineLoop
from voiceplane.config import Config
from voiceplane.policy.dnd import DndRegistry
from voiceplane.store.db import reader_sessions
from voiceplane.store.writer import StoreWriter

MEDIA_DIR = "media"  # under the data directory: where relative .wav targets are looked for

_CODES: Mapping[int, str] = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    422: "unprocessable",
    429: "too_many_requests",
    500: "internal_error",
    503: "unavailable",
}
_LOCATIONS = frozenset({"body", "query", "path", "header", "cookie"})


class Health(BaseModel):
    """The body of ``GET /healthz``."""

    status: Literal["ok", "starting"]


class ErrorDetail(BaseModel):
    code: str
    message: str
    field: str | None = None


class ErrorBody(BaseModel):
    """The body of every error response."""

    error: ErrorDetail


class _Api(FastAPI):
    """FastAPI with, optionally, a raw ASGI front before all of it (the fast path)."""

    front: ASGIApp | None = None

    def put_in_front(self, front: Callable[[ASGIApp], ASGIApp]) -> None:
        """Serve every request through ``front(fastapi)``, where ``fastapi`` is this app as
        FastAPI alone would serve it."""
        self.front = front(super().__call__)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope["app"] = self  # as Starlette does, for whatever the front answers itself
        front = self.front
        if front is None:
            await super().__call__(scope, receive, send)
        else:
            await front(scope, receive, send)


def create_app(
    config: Config,
    *,
    ready: Callable[[], bool],
    sessions: sessionmaker[Session] | None = None,
    commands: CallCommands | None = None,
    writer: StoreWriter | None = None,
    metrics: CollectorRegistry | None = None,
    dnd: DndRegistry | None = None,
    fast_path: bool = True,
    engine_loop: asyncio.AbstractEventLoop | None = None,
) -> FastAPI:
    """Build the HTTP app; ``ready()`` says whether the whole process is ready to serve.

    ``sessions`` is the store the voice API reads and writes; ``commands`` is the engine's
    doorbell, rung after a call or a cancel request was committed (default: no engine in
    this process, the engines poll the store); ``writer``, when given, stores new calls
    through the group-commit writer (see :class:`voiceplane.api.deps.Backend`).
    ``fast_path``: the POSTs that place calls skip FastAPI's middleware and routing
    (:mod:`voiceplane.api.fast_path`; the same answers, for less CPU); ``False`` is for the
    tests and the benchmark that compare the two.
    ``engine_loop``: the server runs on a thread and loop of its own (``voiceplane serve``),
    so the fast path answers the placing POSTs there, and everything else is served on
    ``engine_loop``, where the engine's objects live (:mod:`voiceplane.api.on_loop`).
    """
    app = _Api(
        title="voiceplane",
        version=__version__,
        description="Self-hosted programmable voice: outbound calls, click-to-call and IVR.",
        responses={400: {"model": ErrorBody}},
    )
    app.state.config = config
    # The platform's DND registry, so an import through the API switches the engine's too
    # (None: the admin routes open the one in the data directory on first use).
    app.state.dnd = dnd
    _add_error_handlers(app)
    _add_health(app, ready)
    app.include_router(admin_dnd_router)
    if metrics is not None:
        _add_metrics(app, metrics)
    if sessions is not None:
        app.state.backend = Backend(
            sessions=sessions,
            commands=commands if commands is not None else NoEngine(),
            media_dir=(config.data.dir / MEDIA_DIR).absolute(),
            writer=writer,
            readers=reader_sessions(sessions),
        )
        app.include_router(voice.router, responses={401: {"model": ErrorBody}})
        app.include_router(policy.router, responses={401: {"model": ErrorBody}})
        app.include_router(capacity.router, responses={401: {"model": ErrorBody}})
        app.include_router(flows.router)
        app.include_router(legacy.router)
    _put_front(app, fast_path=fast_path and sessions is not None, engine_loop=engine_loop)
    return app


def _put_front(
    app: _Api, *, fast_path: bool, engine_loop: asyncio.AbstractEventLoop | None
) -> None:
    """Put the fast path, the hop to the engine's loop, both or neither before ``app``."""
    if not fast_path:
        if engine_loop is not None:
            app.put_in_front(lambda behind: on_loop(behind, engine_loop))
        return
    backend: Backend = app.state.backend
    handlers = app.exception_handlers
    if engine_loop is None:
        app.put_in_front(lambda behind: FastPath(behind, backend=backend, handlers=handlers))
        return
    # The fast path's handlers run on the server's thread: they ring the engine through
    # its loop, and everything else is served there.
    here = dataclasses.replace(backend, commands=OnEngineLoop(backend.commands, engine_loop))
    app.put_in_front(
        lambda behind: FastPath(on_loop(behind, engine_loop), backend=here, handlers=handlers)
    )


def _add_metrics(app: FastAPI, registry: CollectorRegistry) -> None:
    @app.get("/metrics", tags=["admin"], response_class=Response)
    def metrics() -> Response:
        """The platform's figures in the Prometheus text format."""
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


def _add_health(app: FastAPI, ready: Callable[[], bool]) -> None:
    @app.get(
        "/healthz",
        response_model=Health,
        responses={503: {"model": Health, "description": "Still starting"}},
        tags=["admin"],
    )
    async def healthz() -> JSONResponse:
        """200 once every service and the HTTP server are up, 503 before."""
        if ready():
            return JSONResponse({"status": "ok"})
        return JSONResponse({"status": "starting"}, status_code=503)


def error_response(
    status: int,
    message: str,
    *,
    code: str | None = None,
    field: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    """A response in the contract's error format."""
    detail = ErrorDetail(code=code or _code_for(status), message=message, field=field)
    body = ErrorBody(error=detail).model_dump()
    return JSONResponse(body, status_code=status, headers=headers)


def _code_for(status: int) -> str:
    if status in _CODES:
        return _CODES[status]
    return _phrase(status).lower().replace(" ", "_").replace("-", "_")


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "error"


def _add_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, _on_api_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_exception)
    app.add_exception_handler(Exception, _on_unexpected_error)


async def _on_api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return error_response(exc.status, exc.message, code=exc.code, field=exc.field)


async def _on_validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    if not errors:
        return error_response(400, "invalid request", code="invalid_input")
    first: Mapping[str, Any] = errors[0]
    if first.get("type") == "json_invalid":
        return error_response(400, "the request body is not valid JSON", code="invalid_input")
    field = _field_name(first.get("loc", ()))
    return error_response(
        400, str(first.get("msg", "invalid value")), code="invalid_input", field=field
    )


def _field_name(loc: tuple[str | int, ...]) -> str | None:
    parts = list(loc)
    if parts and parts[0] in _LOCATIONS:
        parts = parts[1:]
    return ".".join(str(part) for part in parts) or None


async def _on_http_exception(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    detail = exc.detail
    if isinstance(detail, Mapping):
        return error_response(
            exc.status_code,
            str(detail.get("message", "")),
            code=detail.get("code"),
            field=detail.get("field"),
            headers=exc.headers,
        )
    message = str(detail) if detail else _phrase(exc.status_code)
    if exc.status_code == 404 and detail == HTTPStatus.NOT_FOUND.phrase:
        message = f"no such resource: {request.method} {request.url.path}"
    return error_response(exc.status_code, message, headers=exc.headers)


async def _on_unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    return error_response(500, "internal error")
