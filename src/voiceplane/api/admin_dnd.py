"""The admin API of the national DND registry: ``/v1/admin/dnd``.

Platform-wide, so not an account's key: the ``api-key`` header must be ``[api] admin_key``
(``VOICEPLANE_API_ADMIN_KEY``); with no admin key configured every request is refused (401).

- ``POST /v1/admin/dnd/imports?mode=full|add|remove[&country_code=91]``: the file (text or
  CSV, see :mod:`voiceplane.policy.dnd_import`) is the request body. It is streamed to a
  temporary file, imported in a worker thread, and the live registry switches to the new
  generation before the answer (201, with the counts). A bad line is a 400 naming the line,
  and the registry is unchanged; an import already running is a 409.
- ``GET /v1/admin/dnd/{number}``: whether the number is on the registry, and which
  categories of promotional call it still accepts.
- ``GET /v1/admin/dnd``: how many numbers, the generation, the file.
"""

from __future__ import annotations

import contextlib
import hmac
import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Final, Literal

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from voiceplane.api.deps import ApiKeyHeader
from voiceplane.api.errors import Conflict, InvalidInput, Unauthorized
from voiceplane.config import Config
from voiceplane.policy.dnd import DndRegistry, number_key
from voiceplane.policy.dnd_file import ImportBusy
from voiceplane.policy.dnd_import import (
    DndImportError,
    ImportResult,
    check_country_code,
    import_files,
)

WRITE_BYTES: Final = 4 * 1024 * 1024  # the body is written to disk in pieces of this size

_ERRORS: Final[dict[int | str, dict[str, Any]]] = {
    400: {"description": "A bad parameter, or a bad line in the file (the message names it)."},
    401: {"description": "No admin key configured, or not the admin key."},
}

router = APIRouter(prefix="/v1/admin/dnd", tags=["admin"], responses=_ERRORS)


def registry_of(request: Request) -> DndRegistry:
    """The app's registry (the platform's, see ``create_app``), made on first use if the app
    was built without one."""
    registry: DndRegistry | None = getattr(request.app.state, "dnd", None)
    if registry is None:
        config: Config = request.app.state.config
        registry = DndRegistry.in_data_dir(config.data.dir)
        request.app.state.dnd = registry
    return registry


async def require_admin(request: Request, api_key: ApiKeyHeader = None) -> None:
    config: Config = request.app.state.config
    expected = config.api.admin_key
    if expected is None:
        raise Unauthorized("the admin API is off: set [api] admin_key (VOICEPLANE_API_ADMIN_KEY)")
    if not api_key:
        raise Unauthorized("send the admin key in the api-key header")
    if not hmac.compare_digest(api_key.encode(), expected.get_secret_value().encode()):
        raise Unauthorized("not the admin key")


Admin = Depends(require_admin)
Registry = Annotated[DndRegistry, Depends(registry_of)]


class ImportAnswer(BaseModel):
    mode: Literal["full", "add", "remove"]
    generation: int
    entries: int
    unique: int
    count_before: int
    count: int
    added: int
    removed: int
    seconds: float

    @classmethod
    def of(cls, result: ImportResult) -> ImportAnswer:
        return cls(
            mode=result.mode,
            generation=result.generation,
            entries=result.entries,
            unique=result.unique,
            count_before=result.count_before,
            count=result.count,
            added=result.added,
            removed=result.removed,
            seconds=round(result.seconds, 3),
        )


class EntryAnswer(BaseModel):
    number: str
    on_registry: bool
    fully_blocked: bool
    accepted_categories: list[int]


class StatsAnswer(BaseModel):
    count: int
    generation: int
    file_size: int
    created_at: str | None


@router.post("/imports", status_code=201, dependencies=[Admin])
async def import_registry(
    request: Request,
    registry: Registry,
    mode: Annotated[Literal["full", "add", "remove"], Query()] = "full",
    country_code: Annotated[
        str | None, Query(description="Country calling code of numbers written nationally.")
    ] = None,
) -> ImportAnswer:
    """Import the request body (text or CSV) into the registry, as a new generation."""
    try:
        code = check_country_code(country_code)
    except ValueError as exc:
        raise InvalidInput(str(exc), field="country_code") from None
    registry.directory.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix="upload-", suffix=".part", dir=registry.directory)
    upload = Path(name)
    try:
        with os.fdopen(fd, "wb") as file:
            size = await _store_body(request, file)
        if size == 0:
            raise InvalidInput("the request body is empty: send the file as the body")
        result = await run_in_threadpool(_import, registry, upload, mode, code)
    finally:
        with contextlib.suppress(FileNotFoundError):
            upload.unlink()
    return ImportAnswer.of(result)


async def _store_body(request: Request, file: Any) -> int:
    size = 0
    pending = bytearray()
    async for piece in request.stream():
        pending += piece
        size += len(piece)
        if len(pending) >= WRITE_BYTES:
            await run_in_threadpool(file.write, bytes(pending))
            pending.clear()
    if pending:
        await run_in_threadpool(file.write, bytes(pending))
    return size


def _import(
    registry: DndRegistry,
    upload: Path,
    mode: Literal["full", "add", "remove"],
    code: str | None,
) -> ImportResult:
    try:
        result = import_files(registry.directory, [upload], mode=mode, country_code=code)
    except DndImportError as exc:
        where = f"line {exc.line}: " if exc.line is not None else ""
        raise InvalidInput(f"nothing imported: {where}{exc.message}", field="body") from None
    except ImportBusy:
        raise Conflict("another import of the DND registry is running") from None
    registry.refresh()  # the live registry (the engine's too) answers from the new one now
    return result


@router.get("/{number}", dependencies=[Admin])
async def check_number(number: str, registry: Registry) -> EntryAnswer:
    """Whether ``number`` (E.164) is on the registry, and the categories it accepts."""
    try:
        entry = registry.lookup(number)
    except ValueError as exc:
        raise InvalidInput(str(exc), field="number") from None
    e164 = f"+{number_key(number)}"
    if entry is None:
        return EntryAnswer(
            number=e164, on_registry=False, fully_blocked=False, accepted_categories=[]
        )
    return EntryAnswer(
        number=e164,
        on_registry=True,
        fully_blocked=entry.fully_blocked,
        accepted_categories=sorted(entry.accepted),
    )


@router.get("", dependencies=[Admin])
async def registry_stats(registry: Registry) -> StatsAnswer:
    """How many numbers the registry holds, its generation (0: nothing imported yet)."""
    stats = registry.stats()
    created = (
        datetime.fromtimestamp(stats.created_ns / 1e9, UTC).isoformat(timespec="seconds")
        if stats.created_ns is not None
        else None
    )
    return StatsAnswer(
        count=stats.count,
        generation=stats.generation,
        file_size=stats.file_size,
        created_at=created,
    )
