"""``voiceplane dnd import|check|stats``: the national Do-Not-Disturb registry on this machine.

They work on the registry files in ``<data dir>/dnd`` directly (no API key: the admin's own
machine); a running ``voiceplane serve`` sees a new generation within a second.
"""

from __future__ import annotations

import enum
import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from voiceplane.config import ConfigError, load_config
from voiceplane.console.options import EXIT_USAGE_ERROR, ConfigOption, console, fail
from voiceplane.policy.dnd import DND_DIR, DndRegistry
from voiceplane.policy.dnd_file import ImportBusy
from voiceplane.policy.dnd_import import (
    NATIONAL_DIGITS,
    DndImportError,
    ImportResult,
    check_country_code,
    import_files,
    parse_number,
)

dnd_app = typer.Typer(help="The national Do-Not-Disturb registry.", no_args_is_help=True)


class ModeChoice(enum.StrEnum):
    FULL = "full"
    ADD = "add"
    REMOVE = "remove"


DataDirOption = Annotated[
    Path | None,
    typer.Option("--data-dir", help="The data directory (default: [data] dir of the settings).",
                 show_default=False),
]  # fmt: skip
CountryCodeOption = Annotated[
    str | None,
    typer.Option("--country-code", help="Country calling code of numbers written nationally "
                 "(91).", show_default=False),
]  # fmt: skip
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]


def registry_dir(data_dir: Path | None, config: Path | None) -> Path:
    if data_dir is None:
        try:
            data_dir = load_config(config, os.environ).data.dir
        except ConfigError as exc:
            fail(str(exc), EXIT_USAGE_ERROR)
    return data_dir / DND_DIR


@dnd_app.command("import")
def import_command(
    files: Annotated[list[Path], typer.Argument(help="Text or CSV files: number[,categories] "
                                                "a line.", show_default=False)],
    mode: Annotated[ModeChoice, typer.Option(help="full: replace the registry; add, remove: "
                                             "an incremental file.")] = ModeChoice.FULL,
    country_code: CountryCodeOption = None,
    national_digits: Annotated[int, typer.Option(min=4, max=14, help="With --country-code: "
                               "a number of at most this many digits is national.")]
    = NATIONAL_DIGITS,
    data_dir: DataDirOption = None,
    as_json: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    """Import numbers into the registry as a new generation (all or nothing)."""  # fmt: skip
    try:
        code = check_country_code(country_code)
    except ValueError as exc:
        fail(str(exc), EXIT_USAGE_ERROR)
    directory = registry_dir(data_dir, config)
    out = console()
    columns = (
        TextColumn("[bold]reading"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=out, transient=True, disable=as_json) as bar:
        task = bar.add_task("reading", total=None)

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        try:
            result = import_files(
                directory,
                files,
                mode=mode.value,
                country_code=code,
                national_digits=national_digits,
                progress=progress,
            )
        except (DndImportError, ImportBusy) as exc:
            fail(f"nothing imported: {exc}")
    if as_json:
        typer.echo(json.dumps(result_json(result)))
        return
    out.print(describe(result))


def result_json(result: ImportResult) -> dict[str, object]:
    return {
        "mode": result.mode,
        "generation": result.generation,
        "entries": result.entries,
        "unique": result.unique,
        "count_before": result.count_before,
        "count": result.count,
        "added": result.added,
        "removed": result.removed,
        "seconds": round(result.seconds, 3),
    }


def describe(result: ImportResult) -> str:
    change = {
        "full": f"replaced the {result.count_before:,} numbers it held",
        "add": f"{result.added:,} new, {result.unique - result.added:,} already on it",
        "remove": f"{result.removed:,} taken off, {result.unique - result.removed:,} not on it",
    }[result.mode]
    return (
        f"Imported {result.entries:,} lines ({result.unique:,} numbers, {result.mode}) in "
        f"{result.seconds:.1f} s: generation [bold]{result.generation}[/bold] holds "
        f"[bold]{result.count:,}[/bold] numbers ({change})"
    )


@dnd_app.command("check")
def check_command(
    number: Annotated[str, typer.Argument(help="The number (+E.164, or national with "
                                          "--country-code).", show_default=False)],
    country_code: CountryCodeOption = None,
    data_dir: DataDirOption = None,
    as_json: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    """Whether a number is on the registry, and which categories it still accepts."""  # fmt: skip
    try:
        e164 = f"+{parse_number(number, check_country_code(country_code))}"
    except ValueError as exc:
        fail(str(exc), EXIT_USAGE_ERROR)
    registry = DndRegistry(registry_dir(data_dir, config), populate=False)
    entry = registry.lookup(e164)
    if as_json:
        typer.echo(json.dumps(entry_json(e164, entry is not None,
                                         sorted(entry.accepted) if entry else [])))  # fmt: skip
        return
    out = console()
    if entry is None:
        out.print(f"{e164} is not on the DND registry")
    elif entry.fully_blocked:
        out.print(f"{e164} is on the DND registry: [bold red]fully blocked[/bold red]")
    else:
        accepted = ", ".join(str(category) for category in sorted(entry.accepted))
        out.print(f"{e164} is on the DND registry: accepts promotional categories {accepted}")


def entry_json(e164: str, on_registry: bool, accepted: list[int]) -> dict[str, object]:
    return {
        "number": e164,
        "on_registry": on_registry,
        "fully_blocked": on_registry and not accepted,
        "accepted_categories": accepted,
    }


@dnd_app.command("stats")
def stats_command(
    data_dir: DataDirOption = None, as_json: JsonOption = False, config: ConfigOption = None
) -> None:
    """How many numbers the registry holds, its generation and its file."""
    directory = registry_dir(data_dir, config)
    stats = DndRegistry(directory, populate=False).stats()
    created = (
        datetime.fromtimestamp(stats.created_ns / 1e9, UTC).isoformat(timespec="seconds")
        if stats.created_ns is not None
        else None
    )
    if as_json:
        payload = {
            "count": stats.count,
            "generation": stats.generation,
            "file_size": stats.file_size,
            "created_at": created,
            "path": stats.path,
        }
        typer.echo(json.dumps(payload))
        return
    out = console()
    if stats.generation == 0:
        out.print(f"The DND registry in {directory} is empty: nothing imported yet.")
        return
    out.print(f"numbers     [bold]{stats.count:,}[/bold]")
    out.print(f"generation  {stats.generation} (imported {created})")
    out.print(f"file        {stats.path} ({stats.file_size / 1e6:,.1f} MB)")

