"""The kaleyra.io-style routes: ``/v1/{sid}/voice/...``.

Each request is one short transaction: authenticate (the SID in the path, the key in the
``api-key`` header), validate, read or write, commit; only then is the engine told. Another
account's call is answered exactly like an unknown one (404), and lists never show it.

Call logs page with ``limit`` (1 to 1000, default 50; also read from a ``limit`` header, as
kaleyra.io sends it) and either ``page`` (from 1) or ``offset``, or by ``cursor`` (keyset,
:mod:`voiceplane.api.cursor`); the answer has ``total`` and ``next_cursor``. The same query
exports as CSV (:mod:`voiceplane.api.csv_export`). A call's callbacks and every attempt at
delivering them are read from the outbox.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, Final, Literal

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import FileResponse, Response, StreamingResponse
from pydantic import BaseModel
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from voiceplane.api import body, csv_export, records
from voiceplane.api import call_callbacks as call_callbacks_module
from voiceplane.api import cursor as cursor_module
from voiceplane.api import filters as filters_module
from voiceplane.api.call_callbacks import CallCallbacks
from voiceplane.api.deps import ApiKeyHeader, Backend, BackendDep, authenticate
from voiceplane.api.errors import Conflict, InvalidInput, NotFound
from voiceplane.api.filters import CallFilters
from voiceplane.api.placing import check_target_flow, click_to_call_row, outbound_row
from voiceplane.api.schemas import (
    CallAccepted,
    CallLogPage,
    CallRecord,
    ClickToCallRequest,
    OutboundRequest,
    Service,
    State,
)
from voiceplane.calls.flow_target import flow_id_of
from voiceplane.store import outbox, repository
from voiceplane.store.models import Account, Call

DEFAULT_PAGE: Final = 50

_ERRORS: Final[dict[int | str, dict[str, Any]]] = {
    400: {"description": "A parameter is missing or wrong; error.field names it."},
    401: {"description": "No API key, or not a key of this account."},
}
_NOT_FOUND: Final[dict[int | str, dict[str, Any]]] = {
    404: {"description": "No such call (another account's calls are not found either)."},
}

# The api-key header as FastAPI documents ApiKeyHeader, for routes that read it themselves.
_API_KEY_PARAMETER: Final[dict[str, Any]] = {
    "name": "api-key",
    "in": "header",
    "required": False,
    "description": "Your API key (voiceplane account create).",
    "schema": {
        "anyOf": [{"type": "string"}, {"type": "null"}],
        "description": "Your API key (voiceplane account create).",
        "title": "Api-Key",
    },
}

PREFIX: Final = "/v1/{sid}/voice"
router = APIRouter(prefix=PREFIX, tags=["voice"], responses=_ERRORS)

Placing = Callable[[Backend, str, Request], Awaitable[Response]]


def request_body(model: type[BaseModel], *, with_key: bool = False) -> dict[str, Any]:
    """OpenAPI for a body read by :func:`voiceplane.api.body.read_fields`: JSON or form;
    ``with_key``: also the ``api-key`` header, for a route that reads it itself."""
    schema = model.model_json_schema()
    extra: dict[str, Any] = {"parameters": [_API_KEY_PARAMETER]} if with_key else {}
    return extra | {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": schema},
                "application/x-www-form-urlencoded": {"schema": schema},
            },
        }
    }


@router.post(
    "/outbound",
    status_code=202,
    response_model=CallAccepted,
    summary="Place an outbound call",
    openapi_extra=request_body(OutboundRequest, with_key=True),
)
async def place_outbound(sid: str, request: Request) -> Response:
    """Call ``to`` from your ``bridge`` number and play ``target`` when it answers."""
    return await accept_outbound(request.app.state.backend, sid, request)


async def accept_outbound(backend: Backend, sid: str, request: Request) -> Response:
    """``POST /v1/{sid}/voice/outbound``, for the route and for the fast path
    (:mod:`voiceplane.api.fast_path`); refusals are raised (:mod:`voiceplane.api.errors`)."""
    # The placing routes read the body, the backend and the key themselves: FastAPI's
    # dependency solving and response validation cost more than the rest of the request.
    # The order is the one the dependencies had: the body is read before the key is checked.
    fields = await body.read_fields(request)
    account = await backend.account(sid=sid, api_key=request.headers.get("api-key"))
    order = body.validate(OutboundRequest, fields, context=backend.order_context())
    await backend.check_own_number(account, order.bridge)
    if order.target is not None and flow_id_of(order.target) is not None:
        await run_in_threadpool(_check_target_flow, backend, account, order.target)
    call_id = await backend.insert_call(outbound_row(account=account, order=order))
    backend.commands.call_queued(call_id)
    return _accepted(call_id)


def _check_target_flow(
    backend: Backend, account: Account, target: str, field: str = "target"
) -> None:
    with backend.reading().begin() as session:
        check_target_flow(session, account=account, target=target, field=field)


@router.post(
    "/click-to-call",
    status_code=202,
    response_model=CallAccepted,
    summary="Connect two numbers",
    openapi_extra=request_body(ClickToCallRequest, with_key=True),
)
async def place_click_to_call(sid: str, request: Request) -> Response:
    """Call ``from`` first; once it answers, call ``to`` and connect the two (or, with
    ``to=ivr:<id>``, run that flow with ``from``)."""
    return await accept_click_to_call(request.app.state.backend, sid, request)


async def accept_click_to_call(backend: Backend, sid: str, request: Request) -> Response:
    """``POST /v1/{sid}/voice/click-to-call``, for the route and for the fast path."""
    fields = await body.read_fields(request)
    account = await backend.account(sid=sid, api_key=request.headers.get("api-key"))
    order = body.validate(ClickToCallRequest, fields, context=backend.order_context())
    await backend.check_own_number(account, order.bridge)
    if flow_id_of(order.to) is not None:
        await run_in_threadpool(_check_target_flow, backend, account, order.to, "to")
    call_id = await backend.insert_call(click_to_call_row(account=account, order=order))
    backend.commands.call_queued(call_id)
    return _accepted(call_id)


# The placing POSTs by their last path segment (``/v1/{sid}/voice/<segment>``), for the fast
# path, which answers them without FastAPI's middleware and routing (each is also a route
# above, for the docs and for whoever builds the app without the fast path).
PLACING: Final[Mapping[str, Placing]] = {
    "outbound": accept_outbound,
    "click-to-call": accept_click_to_call,
}


def _accepted(call_id: str) -> Response:
    """The 202 of a stored call, made by hand: the hot path skips response validation."""
    return Response(
        b'{"id":' + json.dumps(call_id).encode() + b',"state":"queued"}',
        status_code=202,
        media_type="application/json",
    )


@router.get(
    "/calls/{call_id}", response_model=CallRecord, responses=_NOT_FOUND, summary="A call"
)
def get_call(
    sid: str, call_id: str, backend: BackendDep, api_key: ApiKeyHeader = None
) -> dict[str, Any]:
    """The call record: state, final status, times and every leg's SIP outcome."""
    with backend.reading().begin() as session:
        account = authenticate(session, sid=sid, api_key=api_key)
        call = _own_call(session, account, call_id)
        return records.public_record(call, records.dialect_of(account))


@router.post(
    "/calls/{call_id}/cancel",
    status_code=202,
    response_model=CallRecord,
    responses={**_NOT_FOUND, 409: {"description": "The call has completed already."}},
    summary="End a call",
)
def cancel_call(
    sid: str, call_id: str, backend: BackendDep, api_key: ApiKeyHeader = None
) -> dict[str, Any]:
    """Ask the engine to end the call: a queued call is not placed, a ringing one is
    cancelled, an answered one is hung up. Answers with the record as it is now."""
    with backend.sessions.begin() as session:
        account = authenticate(session, sid=sid, api_key=api_key)
        call = _own_call(session, account, call_id)
        if not repository.request_cancel(session, call=call):
            raise Conflict(f"call {call_id} has completed; there is nothing to cancel")
        record = records.public_record(call, records.dialect_of(account))
    backend.commands.cancel_requested(call_id)
    return record


_CSV_ANSWER: Final[dict[int | str, dict[str, Any]]] = {
    200: {
        "description": "The page as JSON; with format=csv (or Accept: text/csv) every matching "
        "call as CSV.",
        "content": {csv_export.MEDIA_TYPE: {"schema": {"type": "string"}}},
    }
}


@router.get(
    "/call-logs", response_model=CallLogPage, responses=_CSV_ANSWER, summary="The call logs"
)
def call_logs(
    sid: str,
    request: Request,
    backend: BackendDep,
    api_key: ApiKeyHeader = None,
    status: Annotated[
        str | None, Query(description="Final status, in either dialect's words.")
    ] = None,
    service: Service | None = None,
    state: State | None = None,
    number: Annotated[
        str | None, Query(description="A number the call was to, from or through (bridge).")
    ] = None,
    prefix: Annotated[
        str | None, Query(description="Country calling code for a number without one.")
    ] = None,
    custom: Annotated[
        str | None, Query(description="The call's custom value, exactly.")
    ] = None,
    start_time: Annotated[
        str | None, Query(description="Calls created at or after this time (or date).")
    ] = None,
    end_time: Annotated[
        str | None, Query(description="Calls created before this time (a date: to its end).")
    ] = None,
    sort: Annotated[
        str | None,
        Query(
            description="created_at, duration or billsec; a leading '-' for descending. "
            "Ties go by id in the same direction.",
            json_schema_extra={"enum": list(filters_module.SORTS)},
        ),
    ] = filters_module.DEFAULT_SORT,
    limit: Annotated[int | None, Query(ge=1, le=repository.MAX_PAGE)] = None,
    limit_header: Annotated[
        int | None,
        Header(alias="limit", ge=1, le=repository.MAX_PAGE, description="As kaleyra.io."),
    ] = None,
    page: Annotated[int | None, Query(ge=1)] = None,
    offset: Annotated[int | None, Query(ge=0)] = None,
    cursor: Annotated[
        str | None, Query(description="next_cursor of the page before (not with page/offset).")
    ] = None,
    format: Annotated[
        Literal["json", "csv"] | None,
        Query(description="csv: every matching call as CSV (also Accept: text/csv)."),
    ] = None,
) -> Any:
    """The account's calls, filtered, sorted and paged, or all of them as CSV.

    Filters combine (AND). ``sort`` is ``-created_at`` (the default: newest first),
    ``created_at``, ``duration``, ``-duration``, ``billsec`` or ``-billsec``.

    Paging: ``limit`` (1 to 1000, default 50; the query parameter or, as kaleyra.io sends it,
    a ``limit`` header) and either ``page`` (from 1) or ``offset``, not both; or ``cursor``:
    the ``next_cursor`` of the page before, which goes on exactly after that page's last call
    even while new calls arrive (keep the same filters and sort; a cursor of another sort is
    a 400). ``total`` counts the matching calls on all pages; ``next_cursor`` is null on the
    last page.

    CSV (``format=csv``, or without ``format`` an ``Accept`` header that prefers
    ``text/csv`` to ``application/json``): every matching call in
    ``sort`` order, one row each under a header row (``limit`` does not apply; ``page``,
    ``offset`` and ``cursor`` are refused), as the attachment ``call-logs.csv``. A ``custom``
    or ``reason`` that starts with ``=``, ``+``, ``-`` or ``@`` is written with a leading
    ``'`` so that spreadsheets do not run it as a formula."""
    as_csv = format == "csv" or (format is None and _accepts_csv(request))
    chosen_sort = filters_module.read_sort(sort)
    size = limit or limit_header or DEFAULT_PAGE
    if page is not None and offset is not None:
        raise InvalidInput("give page or offset, not both", field="page")
    if cursor is not None and (page is not None or offset is not None):
        raise InvalidInput("give cursor or page/offset, not both", field="cursor")
    if as_csv:
        for name, value in (("page", page), ("offset", offset), ("cursor", cursor)):
            if value is not None:
                raise InvalidInput(f"a CSV export has every matching call; drop {name}", field=name)
    after = cursor_module.decode(cursor, sort=chosen_sort) if cursor is not None else None
    skip = offset if offset is not None else ((page or 1) - 1) * size
    filters = CallFilters.read(
        service=service,
        state=state,
        status=status,
        number=number,
        prefix=prefix,
        start_time=start_time,
        end_time=end_time,
        custom=custom,
    )
    if as_csv:
        return _csv_export(backend, sid=sid, api_key=api_key, filters=filters, sort=chosen_sort)
    with backend.reading().begin() as session:
        account = authenticate(session, sid=sid, api_key=api_key)
        dialect = records.dialect_of(account)
        found, more = filters.page(
            session, account=account, limit=size, offset=0 if after else skip,
            sort=chosen_sort, after=after,
        )  # fmt: skip
        total = filters.count(session, account=account)
        calls = [records.public_record(call, dialect) for call in found]
    next_cursor = (
        cursor_module.encode(chosen_sort, repository.call_position(found[-1], sort=chosen_sort))
        if more and found
        else None
    )
    return {
        "total": total,
        "limit": size,
        "offset": None if after else skip,
        "page": None if after else skip // size + 1,
        "next_cursor": next_cursor,
        "calls": calls,
    }


def _csv_export(
    backend: Backend, *, sid: str, api_key: str | None, filters: CallFilters, sort: str
) -> StreamingResponse:
    """Authenticate now (a refusal is still a JSON error), then stream the rows batch by
    batch, each batch in its own reader transaction."""
    with backend.reading().begin() as session:
        account = authenticate(session, sid=sid, api_key=api_key)
    rows = csv_export.lines(
        backend.reading(), account=account, filters=filters, sort=sort,
        dialect=records.dialect_of(account),
    )  # fmt: skip
    return StreamingResponse(
        rows,
        media_type=f"{csv_export.MEDIA_TYPE}; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{csv_export.FILENAME}"'},
    )


def _accepts_csv(request: Request) -> bool:
    """Whether the Accept header asks for CSV: it names text/csv, with a weight above
    application/json's (JSON stays the answer to ``*/*`` and to a tie)."""
    weights: dict[str, float] = {}
    for part in request.headers.get("accept", "").split(","):
        media, *options = (piece.strip() for piece in part.split(";"))
        weight = 1.0
        for option in options:
            name, _, value = option.partition("=")
            if name.strip().lower() == "q":
                try:
                    weight = float(value)
                except ValueError:
                    weight = 0.0
        weights[media.lower()] = max(weight, weights.get(media.lower(), 0.0))
    wanted = weights.get(csv_export.MEDIA_TYPE, 0.0)
    return wanted > 0 and wanted > weights.get("application/json", 0.0)


@router.get(
    "/calls/{call_id}/callbacks",
    response_model=CallCallbacks,
    responses=_NOT_FOUND,
    summary="A call's callbacks and their delivery attempts",
)
def call_callbacks(
    sid: str, call_id: str, backend: BackendDep, api_key: ApiKeyHeader = None
) -> CallCallbacks:
    """Every callback of the call in the order it was written (``sequence``): the final
    status callback (``kind`` status, to its ``callback`` URL) and the progress events (``kind``
    progress, to its ``dlrurl``), each with its ``id`` (the ``webhook-id`` every attempt
    carries), whether and when it was delivered or given up, and every attempt: when, the
    receiver's HTTP status (null: no response), the error, how long it took."""
    with backend.reading().begin() as session:
        account = authenticate(session, sid=sid, api_key=api_key)
        call = _own_call(session, account, call_id)
        reports = outbox.attempts_for(session, call_id=call.id)
    return CallCallbacks(
        call_id=call_id, callbacks=[call_callbacks_module.callback_record(r) for r in reports]
    )


@router.get(
    "/calls/{call_id}/recording",
    response_class=FileResponse,
    responses={
        200: {"content": {"audio/wav": {}}, "description": "The WAV file (8 kHz mono)."},
        **_NOT_FOUND,
    },
    summary="An incoming call's recording",
)
def call_recording(
    sid: str, call_id: str, backend: BackendDep, api_key: ApiKeyHeader = None
) -> FileResponse:
    """The voicemail an incoming call's flow recorded (the record's ``recording``); 404 for
    a call without one."""
    with backend.reading().begin() as session:
        account = authenticate(session, sid=sid, api_key=api_key)
        call = _own_call(session, account, call_id)
        recording = call.recording
    # The path was written by the platform itself (never taken from a request).
    if recording is None or not Path(recording).is_file():
        raise NotFound(f"call {call_id!r} has no recording")
    return FileResponse(recording, media_type="audio/wav", filename=f"{call_id}.wav")


def _own_call(session: Session, account: Account, call_id: str) -> Call:
    call = repository.get_call(session, account=account, call_id=call_id)
    if call is None:
        raise NotFound(f"no call {call_id!r} in this account")
    return call
