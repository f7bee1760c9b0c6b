"""The kaleyra.io-style routes: ``/v1/{sid}/voice/...``.

Each request is one short transaction: authenticate (the SID in the path, the key in the
``api-key`` header), validate, read or write, commit; only then is the engine told. Another
account's call is answered exactly like an unknown one (404), and lists never show it.

Call logs page with ``limit`` (1 to 1000, default 50; also read from a ``limit`` header, as
kaleyra.io sends it) and either ``page`` (from 1) or ``offset``; the answer has ``total``.
"""

from __future__ import annotations

from typing import Annotated, Any, Final

from fastapi import APIRouter, Header, Query
from pydantic import BaseModel
from sqlalchemy.orm import Session

from voiceplane.api import body, records
from voiceplane.api.deps import ApiKeyHeader, BackendDep, authenticate
from voiceplane.api.errors import Conflict, InvalidInput, NotFound
from voiceplane.api.filters import CallFilters
from voiceplane.api.placing import click_to_call_row, outbound_row
from voiceplane.api.schemas import (
    CallAccepted,
    CallLogPage,
    CallRecord,
    ClickToCallRequest,
    OutboundRequest,
    Service,
    State,
)
from voiceplane.store import repository
from voiceplane.store.models import Account, Call

DEFAULT_PAGE: Final = 50

_ERRORS: Final[dict[int | str, dict[str, Any]]] = {
    400: {"description": "A parameter is missing or wrong; error.field names it."},
    401: {"description": "No API key, or not a key of this account."},
}
_NOT_FOUND: Final[dict[int | str, dict[str, Any]]] = {
    404: {"description": "No such call (another account's calls are not found either)."},
}

router = APIRouter(prefix="/v1/{sid}/voice", tags=["voice"], responses=_ERRORS)


def request_body(model: type[BaseModel]) -> dict[str, Any]:
    """OpenAPI for a body read by :func:`voiceplane.api.body.read_fields`: JSON or form."""
    schema = model.model_json_schema()
    return {
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
    openapi_extra=request_body(OutboundRequest),
)
async def place_outbound(
    sid: str, fields: body.Fields, backend: BackendDep, api_key: ApiKeyHeader = None
) -> CallAccepted:
    """Call ``to`` from your ``bridge`` number and play ``target`` when it answers."""
    account = await backend.account(sid=sid, api_key=api_key)
    order = body.validate(OutboundRequest, fields, context=backend.order_context())
    await backend.check_own_number(account, order.bridge)
    call_id = await backend.insert_call(outbound_row(account=account, order=order))
    backend.commands.call_queued(call_id)
    return CallAccepted(id=call_id)


@router.post(
    "/click-to-call",
    status_code=202,
    response_model=CallAccepted,
    summary="Connect two numbers",
    openapi_extra=request_body(ClickToCallRequest),
)
async def place_click_to_call(
    sid: str, fields: body.Fields, backend: BackendDep, api_key: ApiKeyHeader = None
) -> CallAccepted:
    """Call ``from`` first; once it answers, call ``to`` and connect the two."""
    account = await backend.account(sid=sid, api_key=api_key)
    order = body.validate(ClickToCallRequest, fields, context=backend.order_context())
    await backend.check_own_number(account, order.bridge)
    call_id = await backend.insert_call(click_to_call_row(account=account, order=order))
    backend.commands.call_queued(call_id)
    return CallAccepted(id=call_id)


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


@router.get("/call-logs", response_model=CallLogPage, summary="The call logs")
def call_logs(
    sid: str,
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
    start_time: Annotated[
        str | None, Query(description="Calls created at or after this time (or date).")
    ] = None,
    end_time: Annotated[
        str | None, Query(description="Calls created before this time (a date: to its end).")
    ] = None,
    limit: Annotated[int | None, Query(ge=1, le=repository.MAX_PAGE)] = None,
    limit_header: Annotated[
        int | None,
        Header(alias="limit", ge=1, le=repository.MAX_PAGE, description="As kaleyra.io."),
    ] = None,
    page: Annotated[int | None, Query(ge=1)] = None,
    offset: Annotated[int | None, Query(ge=0)] = None,
) -> dict[str, Any]:
    """The account's calls, newest first, filtered and paged.

    Filters combine (AND). Paging: ``limit`` (1 to 1000, default 50; the query parameter or,
    as kaleyra.io sends it, a ``limit`` header) and either ``page`` (from 1) or ``offset``,
    not both. ``total`` counts the matching calls on all pages."""
    size = limit or limit_header or DEFAULT_PAGE
    if page is not None and offset is not None:
        raise InvalidInput("give page or offset, not both", field="page")
    skip = offset if offset is not None else ((page or 1) - 1) * size
    filters = CallFilters.read(
        service=service,
        state=state,
        status=status,
        number=number,
        prefix=prefix,
        start_time=start_time,
        end_time=end_time,
    )
    with backend.reading().begin() as session:
        account = authenticate(session, sid=sid, api_key=api_key)
        dialect = records.dialect_of(account)
        found = filters.calls(session, account=account, limit=size, offset=skip)
        total = filters.count(session, account=account)
        calls = [records.public_record(call, dialect) for call in found]
    return {"total": total, "limit": size, "offset": skip, "page": skip // size + 1, "calls": calls}


def _own_call(session: Session, account: Account, call_id: str) -> Call:
    call = repository.get_call(session, account=account, call_id=call_id)
    if call is None:
        raise NotFound(f"no call {call_id!r} in this account")
    return call
