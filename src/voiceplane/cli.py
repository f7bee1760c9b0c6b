"""The ``voiceplane`` command."""

import asyncio
import logging
import os
from collections.abc import Callable, Coroutine
from typing import Any, NoReturn

import typer

from voiceplane import __version__
from voiceplane.config import ConfigError, load_config
from voiceplane.console import admin, calling, capacity, policy
from voiceplane.console.dnd import dnd_app
from voiceplane.console.options import ConfigOption
from voiceplane.sandbox.foreground import run_sandbox
from voiceplane.server import ServeError, serve
from voiceplane.services import build_platform

EXIT_RUNTIME_ERROR = 1
EXIT_CONFIG_ERROR = 2
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

app = typer.Typer(
    name="voiceplane",
    help="voiceplane: a self-hosted programmable-voice platform.",
    no_args_is_help=True,
    add_completion=False,
)


@app.command("serve")
def serve_command(config: ConfigOption = None) -> None:
    """Run everything in one process: HTTP API, SIP and the services behind them."""
    try:
        settings = load_config(config, os.environ)
        platform = build_platform(settings)
    except ConfigError as exc:
        _fail(str(exc), EXIT_CONFIG_ERROR)
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    try:
        _run(
            serve(
                settings,
                platform.services,
                sessions=platform.sessions,
                commands=platform.commands,
                writer=platform.writer,
                metrics=platform.metrics,
                dnd=platform.dnd,
            )
        )
    except ServeError as exc:
        _fail(str(exc), EXIT_RUNTIME_ERROR)


@app.command("version")
def version_command() -> None:
    """Print the version."""
    typer.echo(f"voiceplane {__version__}")


@app.command("sandbox")
def sandbox_command(config: ConfigOption = None) -> None:
    """Run the built-in sandbox operator alone, in the foreground, until Ctrl-C."""
    try:
        settings = load_config(config, os.environ).sandbox
    except ConfigError as exc:
        _fail(str(exc), EXIT_CONFIG_ERROR)
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    try:
        _run(run_sandbox(settings))
    except OSError as exc:
        _fail(f"the sandbox operator cannot listen on {settings.listen}: {exc}", EXIT_RUNTIME_ERROR)


# The store and API commands live in voiceplane.console; registered here so that
# `voiceplane --help` lists them all.
app.add_typer(admin.account_app, name="account")
admin.account_app.command("capacity")(capacity.account_capacity)
admin.number_app.command("channels")(capacity.number_channels)
admin.account_app.command("settings")(policy.account_settings)
admin.number_app.command("settings")(policy.number_settings)
app.add_typer(admin.number_app, name="number")
app.add_typer(policy.blocklist_app, name="blocklist")
app.add_typer(dnd_app, name="dnd")
app.command("calls")(admin.calls_command)
app.command("call")(calling.call_command)


def _fail(message: str, code: int) -> NoReturn:
    typer.echo(f"voiceplane: {message}", err=True)
    raise typer.Exit(code)


def _run(main: Coroutine[Any, Any, None]) -> None:
    """Run ``main`` on uvloop when it is installed, else on the default asyncio loop."""
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        runner.run(main)


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop
