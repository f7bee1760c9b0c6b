"""One process: the long-running services on the event loop, plus the HTTP API (uvicorn).

The HTTP server runs on a thread and event loop of its own. There it answers the POSTs that
place calls (:mod:`voiceplane.api.fast_path`): storing a call waits for the store writer,
not for the SIP signalling of the calls already running on the engine's loop, which at
hundreds of calls a second was most of such a POST's latency. Every other request is served
on the engine's loop (:mod:`voiceplane.api.on_loop`), as before.

Start order: every service in the order given, then HTTP; ``GET /healthz`` answers 200 only
once all of them are up. On SIGINT or SIGTERM (or when ``stop`` is set) everything stops in
the reverse order: HTTP first, then the services from last to first. A second signal makes
HTTP drop its open connections instead of waiting for them.
"""

import asyncio
import contextlib
import logging
import signal
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import uvicorn
from prometheus_client import CollectorRegistry
from sqlalchemy.orm import Session, sessionmaker

from voiceplane.api.app import create_app
from voiceplane.calls.commands import CallCommands
from voiceplane.config import Config
from voiceplane.policy.dnd import DndRegistry
from voiceplane.runtime import event_loop_factory, tune_gc, tune_threads
from voiceplane.store.writer import StoreWriter

GRACEFUL_HTTP_SHUTDOWN_S = 5
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Service(Protocol):
    """A long-running part of the process (SIP, the engine, the dispatcher, ...).

    ``start`` returns once the service is ready (sockets bound, tasks spawned); ``stop``
    releases everything it holds and returns once that is done.
    """

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class ServeError(Exception):
    """The process could not run, for a reason the user can act on."""


class _Server(uvicorn.Server):
    """uvicorn, minus its own signal handling: :func:`serve` owns the signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


@dataclass
class _Readiness:
    """``ready()`` for the health check: all services started and uvicorn listening."""

    server: uvicorn.Server | None = None
    services_started: bool = False

    def __call__(self) -> bool:
        return self.services_started and self.server is not None and self.server.started


async def serve(
    config: Config,
    services: Sequence[Service] = (),
    *,
    stop: asyncio.Event | None = None,
    sessions: sessionmaker[Session] | None = None,
    commands: CallCommands | None = None,
    writer: StoreWriter | None = None,
    metrics: CollectorRegistry | None = None,
    dnd: DndRegistry | None = None,
) -> None:
    """Run ``services`` and the HTTP API until SIGINT/SIGTERM, or until ``stop`` is set.

    Raises :class:`ServeError` if the HTTP API cannot start (e.g. its port is taken); the
    services already started are stopped first. A service whose ``start`` raises makes
    ``serve`` stop the ones started before it and re-raise.
    """
    stop = stop if stop is not None else asyncio.Event()
    readiness = _Readiness()
    server = _build_server(config, readiness, sessions, commands, writer, metrics, dnd)
    readiness.server = server
    with _signal_handlers(stop, server):
        async with contextlib.AsyncExitStack() as running:
            await _start_services(services, running)
            readiness.services_started = True
            tune_gc()
            tune_threads()
            if not stop.is_set():
                await _run_http(server, stop, config)
    _log().info("voiceplane stopped")


def _build_server(
    config: Config,
    ready: _Readiness,
    sessions: sessionmaker[Session] | None,
    commands: CallCommands | None,
    writer: StoreWriter | None,
    metrics: CollectorRegistry | None,
    dnd: DndRegistry | None = None,
) -> uvicorn.Server:
    app = create_app(
        config,
        ready=ready,
        sessions=sessions,
        commands=commands,
        writer=writer,
        metrics=metrics,
        dnd=dnd,
        engine_loop=asyncio.get_running_loop(),
    )
    listen = config.api.listen
    return _Server(
        uvicorn.Config(
            app,
            host=listen.host,
            port=listen.port,
            log_level="info",
            lifespan="on",
            timeout_graceful_shutdown=GRACEFUL_HTTP_SHUTDOWN_S,
            # No line per request in the log unless asked for ([api] access_log): formatting
            # and writing it cost about 26 µs of CPU a request, a fifth of a placing POST's in
            # the loop with the fast path (the calls are in the store, with every outcome;
            # errors are still logged).
            access_log=config.api.access_log,
            # No "server: uvicorn" header: it tells clients nothing they need. The Date
            # header stays (HTTP wants it; uvicorn makes it once a second). proxy_headers
            # stays on, as uvicorn's default: about 3 µs a request, and behind a local
            # proxy it keeps X-Forwarded-Proto in the URLs FastAPI makes (slash redirects).
            server_header=False,
        )
    )


async def _start_services(services: Sequence[Service], running: contextlib.AsyncExitStack) -> None:
    for service in services:
        name = type(service).__name__
        _log().info("starting %s", name)
        await service.start()
        running.push_async_callback(_stop_service, service)
        _log().info("started %s", name)


async def _stop_service(service: Service) -> None:
    name = type(service).__name__
    _log().info("stopping %s", name)
    try:
        await service.stop()
    except Exception:
        _log().exception("%s failed to stop cleanly", name)
        raise
    _log().info("stopped %s", name)


async def _run_http(server: uvicorn.Server, stop: asyncio.Event, config: Config) -> None:
    """Serve HTTP on its own thread until ``stop`` is set (or uvicorn ends on its own), then
    stop it."""
    http = asyncio.ensure_future(asyncio.to_thread(_serve_on_new_loop, server))
    stopped = asyncio.create_task(stop.wait(), name="voiceplane-stop")
    try:
        either: set[asyncio.Future[Any]] = {http, stopped}
        await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
    finally:
        server.should_exit = True
        stopped.cancel()
        started = await http
    if not started:
        raise ServeError(f"the HTTP API could not start on {config.api.listen} (see the log above)")


def _serve_on_new_loop(server: uvicorn.Server) -> bool:
    """:func:`_serve_http` on a new event loop (run on a thread of its own)."""
    with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
        return runner.run(_serve_http(server))


async def _serve_http(server: uvicorn.Server) -> bool:
    """Run uvicorn; return whether it got as far as listening.

    uvicorn calls ``sys.exit`` when it cannot bind or its lifespan startup fails; catching
    it here keeps that from tearing through the event loop past our services' cleanup.
    """
    try:
        await server.serve()
    except SystemExit:
        return False
    return server.started


@contextlib.contextmanager
def _signal_handlers(stop: asyncio.Event, server: uvicorn.Server) -> Iterator[None]:
    """Route SIGINT/SIGTERM to ``stop``; without a main thread, leave signals alone."""
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []
    for sig in STOP_SIGNALS:
        try:
            loop.add_signal_handler(sig, _on_stop_signal, sig, stop, server)
        except (NotImplementedError, RuntimeError, ValueError):
            continue
        installed.append(sig)
    try:
        yield
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)


def _on_stop_signal(sig: signal.Signals, stop: asyncio.Event, server: uvicorn.Server) -> None:
    if stop.is_set():
        _log().warning("%s again: closing HTTP connections now", sig.name)
        server.force_exit = True
        return
    _log().info("%s: shutting down", sig.name)
    stop.set()


def _log() -> logging.Logger:
    return logging.getLogger(__name__)
