"""``voiceplane account create``, ``number add`` and ``calls``: the admin's view of the store.

They open the store named by the settings (``store.url``, or the SQLite file in the data
directory), migrate it first so a fresh machine works at once, and write or read it directly;
``voiceplane serve`` may be running at the same time.
"""

from __future__ import annotations

import enum
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Final

import typer
from rich.markup import escape
from rich.table import Table
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from voiceplane.api.phone import NumberError, parse_prefix, to_e164
from voiceplane.calls.status import Status
from voiceplane.config import ConfigError, load_config
from voiceplane.console.options import EXIT_USAGE_ERROR, ConfigOption, console, fail
from voiceplane.policy.capacity import MAX_CHANNELS
from voiceplane.store import repository
from voiceplane.store.db import create_engine_for, migrate, session_factory
from voiceplane.store.models import Account, Call

DEFAULT_CALLS: Final = 20
WIDE: Final = 160

account_app = typer.Typer(help="Accounts and their API keys.", no_args_is_help=True)
number_app = typer.Typer(help="Telephone numbers of an account.", no_args_is_help=True)


class NumberKind(enum.StrEnum):
    BRIDGE = "bridge"
    DID = "did"


JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
AccountOption = Annotated[
    str,
    typer.Option(
        "--account", "-a", envvar="VOICEPLANE_ACCOUNT_SID", help="The account's SID.",
        show_default=False,
    ),
]  # fmt: skip


@contextmanager
def open_store(config: ConfigOption) -> Iterator[sessionmaker[Session]]:
    """Sessions on the configured store, migrated to the current schema."""
    try:
        settings = load_config(config, os.environ)
    except ConfigError as exc:
        fail(str(exc), EXIT_USAGE_ERROR)
    url = settings.effective_store_url
    shown = make_url(url).render_as_string(hide_password=True)
    try:
        migrate(url)
    except (SQLAlchemyError, OSError) as exc:
        fail(f"cannot open the store {shown}: {_first_line(exc)}")
    engine = create_engine_for(url)
    try:
        yield session_factory(engine)
    except SQLAlchemyError as exc:
        fail(f"the store {shown} failed: {_first_line(exc)}")
    finally:
        engine.dispose()


@account_app.command("create")
def create_account(
    name: Annotated[str, typer.Argument(help="Who the account is for.", show_default=False)],
    as_json: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    """Create an account and its first API key (shown this once)."""
    name = name.strip()
    if not name:
        fail("the account name must not be empty", EXIT_USAGE_ERROR)
    with open_store(config) as sessions, sessions.begin() as session:
        account, api_key = repository.create_account(session, name=name)
        sid = account.sid
    if as_json:
        typer.echo(json.dumps({"sid": sid, "api_key": api_key}))
        return
    out = console()
    out.print(f"Created account [bold]{escape(name)}[/bold]")
    out.print(f"  SID      [bold cyan]{sid}[/bold cyan]")
    out.print(f"  API key  [bold yellow]{api_key}[/bold yellow]", soft_wrap=True)
    out.print("The key is shown only now: keep it somewhere safe.", style="dim")


@number_app.command("add")
def add_number(
    number: Annotated[
        str, typer.Argument(help="The number, +<country code><number>.", show_default=False)
    ],
    account: AccountOption,
    kind: Annotated[
        NumberKind, typer.Option(help="bridge: shown as the caller; did: receives calls.")
    ] = NumberKind.BRIDGE,
    channels: Annotated[
        int, typer.Option(min=0, max=MAX_CHANNELS, help="Calls it may carry at once.")
    ] = 10,
    prefix: Annotated[
        str | None,
        typer.Option(help="Country calling code for a number written without one (91)."),
    ] = None,
    as_json: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    """Register a DID or bridge number to an account."""
    try:
        code = parse_prefix(prefix) if prefix else None
        e164 = to_e164(number, prefix=code)
    except NumberError as exc:
        fail(str(exc), EXIT_USAGE_ERROR)
    with open_store(config) as sessions, sessions.begin() as session:
        owner = _account(session, account)
        try:
            repository.add_number(
                session, account=owner, e164=e164, kind=kind.value, channels=channels
            )
        except IntegrityError:
            fail(f"{e164} is registered already")
    if as_json:
        payload = {"number": e164, "account": account, "kind": kind.value, "channels": channels}
        typer.echo(json.dumps(payload))
        return
    console().print(
        f"Added [bold]{e164}[/bold] ({kind.value}, {channels} channels) to account {account}"
    )


def calls_command(
    account: Annotated[
        str | None,
        typer.Option(
            "--account", "-a", envvar="VOICEPLANE_ACCOUNT_SID",
            help="Only this account's calls (default: every account's).",
        ),
    ] = None,
    limit: Annotated[
        int, typer.Option("--limit", "-n", min=1, max=repository.MAX_PAGE, help="How many.")
    ] = DEFAULT_CALLS,
    config: ConfigOption = None,
) -> None:
    """The most recent calls, newest first."""  # fmt: skip
    with open_store(config) as sessions, sessions.begin() as session:
        if account is not None:
            calls = repository.list_calls(session, account=_account(session, account), limit=limit)
        else:
            calls = repository.recent_calls(session, limit=limit)
        out = console()
        table = calls_table(calls, show_account=account is None, width=out.width)
    if not calls:
        out.print("No calls yet.")
        return
    out.print(table)


def calls_table(calls: list[Call], *, show_account: bool, width: int = WIDE) -> Table:
    """A table of ``calls``: when, what, between whom, and how it ended.

    Below :data:`WIDE` columns the bridge and the account are left out, so that the rest
    still fits on one line per call in a common terminal.
    """
    wide = width >= WIDE
    columns = ["created (UTC)", "id", "service", "state", "status", "from", "to"]
    columns += ["bridge", "secs", *(["account"] if show_account else [])] if wide else ["secs"]
    table = Table(header_style="bold", box=None, pad_edge=False)
    for column in columns:
        # Fold rather than cut: a number or an id shown as "…" is of no use.
        table.add_column(
            column,
            no_wrap=column in {"id", "created (UTC)"},
            overflow="fold",
            justify="right" if column == "secs" else "left",
        )
    for call in calls:
        cells = {
            "created (UTC)": call.created_at.strftime("%Y-%m-%d %H:%M:%S"),
            "id": call.id,
            "service": call.service,
            "state": call.state,
            "status": styled_status(call.status),
            "from": call.from_number or "",
            "to": call.to_number or "",
            "bridge": call.bridge or "",
            "secs": str(call.duration),
            "account": call.account.sid if show_account else "",
        }
        table.add_row(*(cells[column] for column in columns))
    return table


def styled_status(word: str | None) -> str:
    """A status word in rich markup: green when answered, red when not, dim while pending."""
    if word is None:
        return "[dim]-[/dim]"
    try:
        status = Status.parse(word)
    except ValueError:
        return word
    return f"[green]{word}[/green]" if status in _ANSWERED else f"[red]{word}[/red]"


_ANSWERED: Final = frozenset({Status.ANSWER, Status.IVR_ANSWER})


def _account(session: Session, sid: str) -> Account:
    found = repository.get_account(session, sid=sid.strip())
    if found is None:
        fail(f"no account {sid!r} (voiceplane account create NAME makes one)")
    return found


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
