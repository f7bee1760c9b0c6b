"""``voiceplane call``: place a call through the HTTP API of a running serve, and watch it.

It is a plain API client (the same requests a user's application makes): ``POST`` outbound,
or click-to-call when ``--from`` is given, then it polls ``GET /calls/{id}`` and prints the
call's state and each leg's progress until the call completes. Exit codes: 0 once the call
completed (whatever its status), 1 when the API refused or could not be reached, or the
call did not complete within ``--wait`` (it goes on regardless), 2 for a bad command line.
"""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime
from typing import Annotated, Any, Final, NoReturn

import httpx
import typer
from rich.console import Console
from rich.markup import escape

from voiceplane.config import ConfigError, HostPort, load_config
from voiceplane.console import progress
from voiceplane.console.admin import styled_status
from voiceplane.console.options import EXIT_USAGE_ERROR, ConfigOption, console, fail

EXIT_INTERRUPTED: Final = 130
REQUEST_TIMEOUT_S: Final = 10.0
_ANY_ADDRESS: Final = {"0.0.0.0": "127.0.0.1", "::": "::1"}


def call_command(
    to: Annotated[
        str,
        typer.Argument(
            help="The number to call; with --from, the one connected second ('a^b': both).",
            show_default=False,
        ),
    ],
    bridge: Annotated[
        str,
        typer.Option("--bridge", "-b", help="Your number shown as the caller.", show_default=False),
    ],
    account: Annotated[
        str,
        typer.Option(
            "--account", "-a", envvar="VOICEPLANE_ACCOUNT_SID", help="Your account's SID.",
            show_default=False,
        ),
    ],
    api_key: Annotated[
        str,
        typer.Option(
            "--api-key", "-k", envvar="VOICEPLANE_API_KEY", help="Your API key.",
            show_default=False,
        ),
    ],
    from_: Annotated[
        str | None,
        typer.Option("--from", "-f", help="Click-to-call: call this number first (the agent)."),
    ] = None,
    target: Annotated[
        str | None,
        typer.Option("--target", "-t", help="Outbound: text to speak, or a .wav file."),
    ] = None,
    prefix: Annotated[
        str | None,
        typer.Option(help="Country calling code for numbers written without one (91)."),
    ] = None,
    api: Annotated[
        str | None,
        typer.Option(help="The API's base URL [default: from the settings' api.listen]."),
    ] = None,
    watch: Annotated[
        bool, typer.Option(help="Follow the call until it completes, or print its id only.")
    ] = True,
    wait: Annotated[
        float, typer.Option(min=1, help="Stop watching after this many seconds.")
    ] = 600,
    poll: Annotated[float, typer.Option(min=0.05, hidden=True)] = 0.5,
    config: ConfigOption = None,
) -> None:
    """Place a call through the API of a running voiceplane serve and watch it live."""  # fmt: skip
    if from_ is not None and target is not None:
        fail("--target is for outbound calls; a click-to-call connects two people", 2)
    base = api.rstrip("/") if api else _api_from_settings(config)
    fields = {"to": to, "bridge": bridge, "prefix": prefix}
    if from_ is not None:
        path, fields = "click-to-call", {**fields, "from": from_}
    else:
        path, fields = "outbound", {**fields, "target": target}
    form = {key: value for key, value in fields.items() if value is not None}
    out = console()
    headers = {"api-key": api_key}
    with httpx.Client(base_url=base, headers=headers, timeout=REQUEST_TIMEOUT_S) as client:
        placed = _request(client, "POST", f"/v1/{account}/voice/{path}", data=form)
        if placed.status_code != 202:
            _refused(placed, "the API refused the call")
        call_id = str(placed.json()["id"])
        if not watch:
            typer.echo(call_id)
            return
        out.print(f"Placed call [bold]{call_id}[/bold] ({path})")
        try:
            _watch(client, out, f"/v1/{account}/voice/calls/{call_id}", wait, poll)
        except KeyboardInterrupt:
            fail(f"stopped watching; call {call_id} goes on", EXIT_INTERRUPTED)


def _watch(client: httpx.Client, out: Console, url: str, wait: float, poll: float) -> None:
    """Poll the record, print what changed, return once the call completed."""
    deadline = time.monotonic() + wait
    before: dict[str, Any] | None = None
    while True:
        response = _request(client, "GET", url)
        if response.status_code != 200:
            _refused(response, "the API did not return the call")
        record: dict[str, Any] = response.json()
        stamp = datetime.now(UTC).strftime("%H:%M:%S")
        for line in progress.changes(before, record):
            out.print(f"[dim]{stamp}[/dim] {escape(line)}")
        before = record
        if record.get("state") == "completed":
            status = styled_status(record.get("status"))
            out.print(f"status [bold]{status}[/bold] {escape(progress.ending(record))}")
            return
        if time.monotonic() >= deadline:
            fail(f"the call is still {record.get('state')} after {wait:g} s; it goes on")
        time.sleep(poll)


def _request(client: httpx.Client, method: str, url: str, **kwargs: Any) -> httpx.Response:
    try:
        return client.request(method, url, **kwargs)
    except httpx.TransportError as exc:
        fail(f"cannot reach the API at {client.base_url} ({exc}); is voiceplane serve running?")


def _refused(response: httpx.Response, what: str) -> NoReturn:
    """Fail with the API's own error message, and the field it named."""
    try:
        error = response.json()["error"]
        message = str(error["message"])
        if error.get("field"):
            message += f" (field {error['field']})"
    except (ValueError, KeyError, TypeError):
        message = response.text.strip().splitlines()[0] if response.text.strip() else ""
    fail(f"{what} ({response.status_code}): {message}")


def _api_from_settings(config: ConfigOption) -> str:
    try:
        settings = load_config(config, os.environ)
    except ConfigError as exc:
        fail(str(exc), EXIT_USAGE_ERROR)
    return api_url(settings.api.listen)


def api_url(listen: HostPort) -> str:
    """The URL a local client reaches ``api.listen`` at (a wildcard address means loopback)."""
    host = _ANY_ADDRESS.get(listen.host, listen.host)
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{listen.port}"
