"""What the console commands share: the ``--config`` option, exit codes, failing cleanly."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Final, NoReturn

import typer
from rich.console import Console

EXIT_RUNTIME_ERROR: Final = 1  # the command could not do its job (unknown account, API error)
EXIT_USAGE_ERROR: Final = 2  # the command line or the settings are wrong
PIPE_WIDTH: Final = 200

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="TOML settings file; VOICEPLANE_<SECTION>_<KEY> variables override it.",
        show_default=False,
    ),
]


def fail(message: str, code: int = EXIT_RUNTIME_ERROR) -> NoReturn:
    """Print ``voiceplane: message`` on stderr and exit with ``code`` (no traceback)."""
    typer.echo(f"voiceplane: {message}", err=True)
    raise typer.Exit(code)


def console() -> Console:
    """Rich output on stdout; a pipe or a file has no width to fit, so lines are not wrapped
    at 80 columns there (one call, one event a line, for grep and for tests)."""
    out = Console(highlight=False)
    if not out.is_terminal:
        out.width = PIPE_WIDTH
    return out
