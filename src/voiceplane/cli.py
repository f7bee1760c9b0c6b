"""The ``voiceplane`` command."""

import asyncio
import logging
import os
from collections.abc import Coroutine
from typing import Annotated, Any, NoReturn

import typer

from voiceplane import __version__
from voiceplane.config import ConfigError, load_config
from voiceplane.console import admin, calling, capacity, policy
from voiceplane.console.dnd import dnd_app
from voiceplane.console.options import ConfigOption
from voiceplane.runtime import event_loop_factory

# The modules behind serve and the sandbox (FastAPI, the engine, SIP) are imported by the
# commands that run them: every other command, and --help, starts a second sooner.

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
    from voiceplane.server import ServeError, serve
    from voiceplane.services import build_platform

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


sandbox_app = typer.Typer(
    help="The built-in sandbox operator: run it alone, or place an incoming call with it.",
    no_args_is_help=False,
    add_completion=False,
)


@sandbox_app.callback(invoke_without_command=True)
def sandbox_command(ctx: typer.Context, config: ConfigOption = None) -> None:
    """Run the built-in sandbox operator alone, in the foreground, until Ctrl-C."""
    if ctx.invoked_subcommand is not None:
        return
    from voiceplane.sandbox.foreground import run_sandbox

    try:
        settings = load_config(config, os.environ).sandbox
    except ConfigError as exc:
        _fail(str(exc), EXIT_CONFIG_ERROR)
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    try:
        _run(run_sandbox(settings))
    except OSError as exc:
        _fail(f"the sandbox operator cannot listen on {settings.listen}: {exc}", EXIT_RUNTIME_ERROR)


@sandbox_app.command("call")
def sandbox_call_command(
    caller: Annotated[str, typer.Option("--from", help="The calling number.")],
    did: Annotated[str, typer.Option("--to", help="The platform's number (DID) to call.")],
    press: Annotated[
        str | None,
        typer.Option("--press", help="Keys to press after the answer: inputs separated by "
                     "commas, e.g. 1,42# (1 in a menu, then 42# in a gather)."),
    ] = None,
    hangup_after: Annotated[
        float, typer.Option("--hangup-after", min=0.5, help="Hang up this many seconds "
                            "after the answer (or give up ringing after it).")
    ] = 10.0,
    press_gap: Annotated[
        float, typer.Option("--press-gap", min=0.0, help="Seconds between inputs.")
    ] = 2.0,
    config: ConfigOption = None,
) -> None:
    """Ring a number of a running `voiceplane serve`, press keys, hang up; print what happened."""
    from voiceplane.sandbox.caller import CallReport, parse_presses, place_call
    from voiceplane.sip.addressing import Address

    try:
        settings = load_config(config, os.environ)
        presses = parse_presses(press)
    except ConfigError as exc:
        _fail(str(exc), EXIT_CONFIG_ERROR)
    except ValueError as exc:
        _fail(str(exc), EXIT_CONFIG_ERROR)
    listen = settings.sip.listen
    host = "127.0.0.1" if listen.host in ("0.0.0.0", "::", "") else listen.host
    transport = settings.sip.transports[0]
    report: list[CallReport] = []

    async def main() -> None:
        report.append(
            await place_call(
                platform=Address(host, listen.port, transport), caller=caller, did=did,
                presses=presses, hangup_after=hangup_after, press_gap=press_gap,
            )  # fmt: skip
        )

    try:
        _run(main())
    except OSError as exc:
        _fail(f"cannot call {host}:{listen.port}: {exc}", EXIT_RUNTIME_ERROR)
    for line in report[0].lines():
        typer.echo(line)
    if not report[0].answered and (report[0].final_status or 0) >= 300:
        raise typer.Exit(EXIT_RUNTIME_ERROR)


app.add_typer(sandbox_app, name="sandbox")


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
    with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
        runner.run(main)
