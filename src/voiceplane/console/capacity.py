"""``voiceplane account capacity`` and ``voiceplane number channels``: capacity limits.

The same settings as ``/v1/{sid}/settings/capacity`` and ``/v1/{sid}/numbers/{number}/capacity``
(voiceplane.api.capacity), written to the store directly; a running ``serve`` picks them up
within half a second for a bridge or account that is full, at once otherwise.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer
from sqlalchemy.orm import Session

from voiceplane.api.phone import NumberError, to_e164
from voiceplane.console.admin import AccountOption, JsonOption, open_store
from voiceplane.console.options import EXIT_USAGE_ERROR, ConfigOption, console, fail
from voiceplane.policy.capacity import MAX_CHANNELS
from voiceplane.store import repository
from voiceplane.store.models import Account


def account_capacity(
    account: AccountOption,
    channels: Annotated[
        int | None,
        typer.Option(
            min=0, max=MAX_CHANNELS, help="Calls of the account up at once.", show_default=False
        ),
    ] = None,
    unlimited: Annotated[
        bool, typer.Option("--unlimited", help="No channel limit for the account.")
    ] = False,
    max_cps: Annotated[
        float | None,
        typer.Option(
            "--max-cps", min=0, max=10_000, help="New calls a second (0: unlimited).",
            show_default=False,
        ),
    ] = None,
    as_json: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    """Show an account's capacity limits, or change those given."""
    if unlimited and channels is not None:
        fail("give --channels or --unlimited, not both", EXIT_USAGE_ERROR)
    with open_store(config) as sessions, sessions.begin() as session:
        owner = _account(session, account)
        if unlimited:
            owner.channels = None
        elif channels is not None:
            owner.channels = channels
        if max_cps is not None:
            owner.max_cps = max_cps or None
        session.flush()
        numbers = {n.e164: n.channels for n in repository.list_numbers(session, account=owner)}
        view = {
            "account": owner.sid,
            "channels": owner.channels,
            "max_cps": owner.max_cps,
            "numbers": numbers,
        }
    if as_json:
        typer.echo(json.dumps(view))
        return
    out = console()
    out.print(f"Account {view['account']}")
    out.print(f"  channels  {_or_unlimited(view['channels'])}")
    out.print(f"  max cps   {_or_unlimited(view['max_cps'])}")
    for e164, count in numbers.items():
        out.print(f"  {e164}  {count} channels")


def number_channels(
    number: Annotated[str, typer.Argument(help="The number, +<country code><number>.")],
    channels: Annotated[
        int, typer.Argument(min=0, max=MAX_CHANNELS, help="Calls it may carry at once (0: none).")
    ],
    as_json: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    """Change how many calls a registered number may carry at once."""
    try:
        e164 = to_e164(number)
    except NumberError as exc:
        fail(str(exc), EXIT_USAGE_ERROR)
    with open_store(config) as sessions, sessions.begin() as session:
        found = repository.get_number(session, e164=e164)
        if found is None:
            fail(f"{e164} is not registered (voiceplane number add {e164} --account SID)")
        found.channels = channels
    if as_json:
        typer.echo(json.dumps({"number": e164, "channels": channels}))
        return
    console().print(f"[bold]{e164}[/bold] now carries {channels} calls at once")


def _account(session: Session, sid: str) -> Account:
    found = repository.get_account(session, sid=sid.strip())
    if found is None:
        fail(f"no account {sid!r} (voiceplane account create NAME makes one)")
    return found


def _or_unlimited(value: object) -> str:
    return "unlimited" if value is None else str(value)
