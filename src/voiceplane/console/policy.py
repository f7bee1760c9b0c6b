"""``voiceplane account settings``, ``number settings`` and ``blocklist``: pre-dial policy
from the command line, on the store directly (as ``account create`` does).

With no option, ``settings`` prints the current settings; each option changes one (the
others keep their value). Lists are comma-separated; ``any`` means no restriction. A bad
value exits 2 naming the option, with nothing changed. ``voiceplane serve`` applies a change
to new calls within 5 seconds.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.table import Table
from sqlalchemy.orm import Session

from voiceplane.api.phone import NumberError, parse_prefix, to_e164
from voiceplane.console.admin import AccountOption, JsonOption, open_store
from voiceplane.console.options import EXIT_USAGE_ERROR, ConfigOption, console, fail
from voiceplane.policy import blocklist, settings
from voiceplane.policy.permissions import RuleError
from voiceplane.store import repository
from voiceplane.store.models import Account, Number

blocklist_app = typer.Typer(help="An account's blocklisted numbers.", no_args_is_help=True)

Countries = Annotated[
    str | None,
    typer.Option(help="Allowed countries, ISO codes: IN,US ('any': every country)."),
]
International = Annotated[
    bool | None,
    typer.Option(
        "--international/--no-international",
        help="Whether calls to another country than the bridge number's are allowed.",
        show_default=False,
    ),
]
NumberTypes = Annotated[
    str | None,
    typer.Option(help="Allowed number types: mobile,fixed_line,toll_free,... ('any')."),
]
Networks = Annotated[
    str | None, typer.Option(help="Allowed networks (carrier names): Airtel,Jio ('any').")
]
BlockedNetworks = Annotated[
    str | None, typer.Option(help="Refused networks (carrier names); 'any' clears the list.")
]
_OPTIONS = {
    "countries": "--countries",
    "international": "--international",
    "number_types": "--number-types",
    "networks": "--networks",
    "blocked_networks": "--blocked-networks",
    "promotional": "--promotional",
    "block_outgoing": "--block-outgoing",
    "dnd_category": "--dnd-category",
}


def account_settings(
    sid: Annotated[str, typer.Argument(help="The account's SID.", show_default=False)],
    countries: Countries = None,
    international: International = None,
    number_types: NumberTypes = None,
    networks: Networks = None,
    blocked_networks: BlockedNetworks = None,
    promotional: Annotated[
        bool | None,
        typer.Option(
            "--promotional/--transactional",
            help="Whether the account's calls are promotional (checked against the DND "
            "registry) unless a call says otherwise.",
            show_default=False,
        ),
    ] = None,
    block_outgoing: Annotated[
        bool | None,
        typer.Option(
            "--block-outgoing/--no-block-outgoing",
            help="Whether the blocklist also refuses outgoing calls to its numbers.",
            show_default=False,
        ),
    ] = None,
    dnd_category: Annotated[
        str | None,
        typer.Option(help="DND preference category (1-8) of the promotions; 'none' for none."),
    ] = None,
    as_json: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    """Show or change an account's dialing permissions, DND and blocklist choices."""
    changes = _given(
        countries=countries, international=international, number_types=number_types,
        networks=networks, blocked_networks=blocked_networks, promotional=promotional,
        block_outgoing=block_outgoing,
    )  # fmt: skip
    if dnd_category is not None:
        changes["dnd_category"] = None if dnd_category.strip().lower() == "none" else dnd_category
    with open_store(config) as sessions, sessions.begin() as session:
        account = _account(session, sid)
        current = settings.account_settings(session, account_id=account.id)
        try:
            changed = settings.changed_account(current, changes)
        except RuleError as exc:
            fail(f"{_OPTIONS.get(exc.field, exc.field)}: {exc.message}", EXIT_USAGE_ERROR)
        if changes:
            settings.save_account(session, account_id=account.id, settings=changed)
        shown = changed.as_dict()
    _show(f"Account {account.sid}", shown, as_json)


def number_settings(
    number: Annotated[
        str, typer.Argument(help="The number, +<country code><number>.", show_default=False)
    ],
    countries: Countries = None,
    international: International = None,
    number_types: NumberTypes = None,
    networks: Networks = None,
    blocked_networks: BlockedNetworks = None,
    prefix: Annotated[
        str | None,
        typer.Option(help="Country calling code for a number written without one (91)."),
    ] = None,
    as_json: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    """Show or change a bridge number's dialing permissions (on top of its account's)."""
    e164 = _e164(number, prefix)
    changes = _given(
        countries=countries, international=international, number_types=number_types,
        networks=networks, blocked_networks=blocked_networks,
    )  # fmt: skip
    with open_store(config) as sessions, sessions.begin() as session:
        found = _number(session, e164)
        current = settings.number_rules(session, number_id=found.id)
        try:
            changed = settings.changed_rules(current, changes)
        except RuleError as exc:
            fail(f"{_OPTIONS.get(exc.field, exc.field)}: {exc.message}", EXIT_USAGE_ERROR)
        if changes:
            settings.save_number(session, number_id=found.id, rules=changed)
        shown = {"number": found.e164, "account": found.account.sid, **changed.as_dict()}
    _show(f"Number {e164}", shown, as_json)


Numbers = Annotated[
    list[str], typer.Argument(help="Numbers, +<country code><number>.", show_default=False)
]
PrefixOption = Annotated[
    str | None, typer.Option(help="Country calling code for numbers written without one.")
]


@blocklist_app.command("add")
def blocklist_add(
    numbers: Numbers,
    account: AccountOption,
    prefix: PrefixOption = None,
    config: ConfigOption = None,
) -> None:
    """Blocklist numbers (up to 100 at once)."""
    _change(account, numbers, prefix, config, add=True)


@blocklist_app.command("remove")
def blocklist_remove(
    numbers: Numbers,
    account: AccountOption,
    prefix: PrefixOption = None,
    config: ConfigOption = None,
) -> None:
    """Take numbers off the blocklist."""
    _change(account, numbers, prefix, config, add=False)


@blocklist_app.command("list")
def blocklist_list(
    account: AccountOption,
    limit: Annotated[
        int, typer.Option("--limit", "-n", min=1, max=repository.MAX_PAGE, help="How many.")
    ] = repository.MAX_PAGE,
    as_json: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    """The account's blocklisted numbers, in number order."""
    with open_store(config) as sessions, sessions.begin() as session:
        owner = _account(session, account)
        total, found = blocklist.entries(session, owner.id, limit=limit)
    if as_json:
        typer.echo(json.dumps({"total": total, "numbers": [entry.number for entry in found]}))
        return
    out = console()
    if not found:
        out.print("The blocklist is empty.")
    elif total > len(found):
        out.print(f"[dim]{len(found)} of {total} numbers[/dim]")
    for entry in found:
        out.print(f"{entry.number}  [dim]{entry.created_at:%Y-%m-%d %H:%M:%S} UTC[/dim]")


def _change(
    account: str, numbers: list[str], prefix: str | None, config: Any, *, add: bool
) -> None:
    e164s = [_e164(number, prefix) for number in numbers]
    if len(e164s) > blocklist.MAX_PER_REQUEST:
        fail(f"at most {blocklist.MAX_PER_REQUEST} numbers at once", EXIT_USAGE_ERROR)
    with open_store(config) as sessions, sessions.begin() as session:
        owner = _account(session, account)
        if add:
            done, _ = blocklist.change(session, owner.id, add=e164s)
        else:
            _, done = blocklist.change(session, owner.id, remove=e164s)
    verb = "Added" if add else "Removed"
    console().print(f"{verb} {done} of {len(e164s)} numbers ({account})")


def _given(**values: object) -> dict[str, object]:
    return {name: value for name, value in values.items() if value is not None}


def _e164(number: str, prefix: str | None) -> str:
    try:
        return to_e164(number, prefix=parse_prefix(prefix) if prefix else None)
    except NumberError as exc:
        fail(str(exc), EXIT_USAGE_ERROR)


def _account(session: Session, sid: str) -> Account:
    found = repository.get_account(session, sid=sid.strip())
    if found is None:
        fail(f"no account {sid!r} (voiceplane account create NAME makes one)")
    return found


def _number(session: Session, e164: str) -> Number:
    found = repository.get_number(session, e164=e164)
    if found is None:
        fail(f"{e164} is not registered (voiceplane number add registers it)")
    return found


def _show(title: str, shown: dict[str, object], as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(shown))
        return
    table = Table(title=title, show_header=False, box=None, pad_edge=False)
    table.add_column("setting", style="bold")
    table.add_column("value", overflow="fold")
    for name, value in shown.items():
        if isinstance(value, list):
            text = ", ".join(value) or "none"
        elif value is None:
            text = "any" if name in settings.RULE_FIELDS else "-"
        else:
            text = str(value).lower() if isinstance(value, bool) else str(value)
        table.add_row(name, text)
    console().print(table)
