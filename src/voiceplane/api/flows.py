"""The flow routes, ``/v1/{sid}/flows/...``, and a number's routing (docs/flows.md, "The API").

Each request is one short transaction: authenticate, validate, read or write, commit. A flow
document is validated in full (:func:`voiceplane.calls.flows.model.parse_flow`, and every
audio file it plays must be in the media folder) before anything is stored, and is stored as
sent. Another account's flow or number is answered exactly like an unknown one (404).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Final

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy.orm import Session

from voiceplane.api import body
from voiceplane.api.deps import ApiKeyHeader, BackendDep, authenticate
from voiceplane.api.errors import Conflict, InvalidInput, NotFound
from voiceplane.calls.flows.model import Flow as FlowDocument
from voiceplane.calls.flows.model import FlowError, NumberRouting, parse_flow
from voiceplane.store import flows as store
from voiceplane.store.models import Account, Flow, FlowVersion, Number
from voiceplane.store.repository import iso_utc

_ERRORS: Final[dict[int | str, dict[str, Any]]] = {
    400: {"description": "The body is wrong; error.field is the path of the value at fault."},
    401: {"description": "No API key, or not a key of this account."},
    404: {"description": "No such flow, version or number (another account's neither)."},
}

router = APIRouter(prefix="/v1/{sid}", tags=["flows"], responses=_ERRORS)


class FlowInfo(BaseModel):
    """A flow as the list shows it."""

    id: str
    name: str
    state: str = Field(description="draft, published or paused")
    latest_version: int
    live_version: int | None
    created_at: str
    updated_at: str


class FlowDetail(FlowInfo):
    """One flow, with one version's document (``version``) and what looks wrong in it."""

    version: int
    version_created_at: str
    warnings: list[str]
    definition: dict[str, Any]


class FlowList(BaseModel):
    flows: list[FlowInfo]


class PublishRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: int | None = Field(default=None, ge=1, description="Default: the newest.")


class Routing(BaseModel):
    """What an incoming call to the number does."""

    number: str
    flow: str | None
    hours: dict[str, Any] | None
    missed_call: int | None
    callback: str | None = None  # where incoming calls to the number are reported


def _json_body(model: type[BaseModel] | None = None) -> dict[str, Any]:
    schema = model.model_json_schema() if model is not None else {"type": "object"}
    return {
        "requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}
    }


# --- flows -----------------------------------------------------------------------------------


@router.post(
    "/flows",
    status_code=201,
    response_model=FlowDetail,
    summary="Create a flow",
    openapi_extra=_json_body(),
)
def create_flow(
    sid: str, fields: body.Fields, backend: BackendDep, api_key: ApiKeyHeader = None
) -> FlowDetail:
    """Store a flow document (docs/flows.md) as version 1 of a new flow, in state draft."""
    with backend.sessions.begin() as session:
        account = authenticate(session, sid=sid, api_key=api_key)
        document = _valid_flow(fields, backend.media_dir)
        flow, version = store.create_flow(
            session, account=account, name=document.name, document=json.dumps(fields)
        )
        return _detail(flow, version, document)


@router.put(
    "/flows/{flow_id}",
    response_model=FlowDetail,
    summary="Save a new version of a flow",
    openapi_extra=_json_body(),
)
def save_flow(
    sid: str, flow_id: str, fields: body.Fields, backend: BackendDep, api_key: ApiKeyHeader = None
) -> FlowDetail:
    """Store the document as the flow's next version; the live version stays until you
    publish."""
    with backend.sessions.begin() as session:
        account = authenticate(session, sid=sid, api_key=api_key)
        flow = _own_flow(session, account, flow_id)
        document = _valid_flow(fields, backend.media_dir)
        version = store.add_version(
            session, flow=flow, name=document.name, document=json.dumps(fields)
        )
        session.refresh(flow)
        return _detail(flow, version, document)


@router.get("/flows", response_model=FlowList, summary="The account's flows")
def list_flows(sid: str, backend: BackendDep, api_key: ApiKeyHeader = None) -> FlowList:
    """Every flow of the account, newest first (without their documents)."""
    with backend.reading().begin() as session:
        account = authenticate(session, sid=sid, api_key=api_key)
        return FlowList(flows=[_info(flow) for flow in store.list_flows(session, account=account)])


@router.get("/flows/{flow_id}", response_model=FlowDetail, summary="A flow and its document")
def get_flow(
    sid: str,
    flow_id: str,
    backend: BackendDep,
    api_key: ApiKeyHeader = None,
    version: Annotated[int | None, Query(ge=1, description="Default: the newest.")] = None,
) -> FlowDetail:
    """The flow with the document of ``version``."""
    with backend.reading().begin() as session:
        account = authenticate(session, sid=sid, api_key=api_key)
        flow = _own_flow(session, account, flow_id)
        found = _version(session, flow, version)
        return _detail(flow, found, None)


@router.post(
    "/flows/{flow_id}/publish",
    response_model=FlowDetail,
    summary="Make a version live",
    openapi_extra=_json_body(PublishRequest),
)
def publish_flow(
    sid: str, flow_id: str, fields: body.Fields, backend: BackendDep, api_key: ApiKeyHeader = None
) -> FlowDetail:
    """Make ``version`` (default: the newest) the one incoming calls run; a paused flow
    runs again."""
    request = body.validate(PublishRequest, fields)
    with backend.sessions.begin() as session:
        account = authenticate(session, sid=sid, api_key=api_key)
        flow = _own_flow(session, account, flow_id)
        found = _version(session, flow, request.version)
        store.publish(session, flow=flow, version=found.version)
        return _detail(flow, found, None)


@router.post("/flows/{flow_id}/pause", response_model=FlowDetail, summary="Stop a flow")
def pause_flow(
    sid: str, flow_id: str, backend: BackendDep, api_key: ApiKeyHeader = None
) -> FlowDetail:
    """Stop the flow: calls to its numbers are refused until it is published again."""
    with backend.sessions.begin() as session:
        account = authenticate(session, sid=sid, api_key=api_key)
        flow = _own_flow(session, account, flow_id)
        if flow.live_version is None:
            raise Conflict(f"flow {flow_id} has never been published; there is nothing to pause")
        store.pause(session, flow=flow)
        return _detail(flow, _version(session, flow, flow.live_version), None)


# --- numbers ---------------------------------------------------------------------------------


@router.put(
    "/numbers/{number}/routing",
    response_model=Routing,
    summary="Route a number's incoming calls",
    openapi_extra=_json_body(NumberRouting),
)
def set_routing(
    sid: str, number: str, fields: body.Fields, backend: BackendDep, api_key: ApiKeyHeader = None
) -> Routing:
    """Set the number's flow, office hours and missed-call seconds; each one left out is
    cleared."""
    with backend.sessions.begin() as session:
        account = authenticate(session, sid=sid, api_key=api_key)
        row = _own_number(session, account, number)
        routing = _valid_routing(fields)
        flow = None
        if routing.flow is not None:
            flow = store.get_flow(session, account=account, flow_id=routing.flow)
            if flow is None:
                raise InvalidInput(f"no flow {routing.flow!r} in this account", field="flow")
        hours = json.dumps(fields["hours"]) if routing.hours is not None else None
        store.set_routing(
            session, number=row, flow=flow, hours=hours, missed_call=routing.missed_call,
            callback=routing.callback,
        )  # fmt: skip
        return _routing(row)


@router.get("/numbers/{number}/routing", response_model=Routing, summary="A number's routing")
def get_routing(
    sid: str, number: str, backend: BackendDep, api_key: ApiKeyHeader = None
) -> Routing:
    """What an incoming call to the number does."""
    with backend.reading().begin() as session:
        account = authenticate(session, sid=sid, api_key=api_key)
        return _routing(_own_number(session, account, number))


# --- helpers ---------------------------------------------------------------------------------


def _valid_flow(fields: dict[str, Any], media_dir: Path) -> FlowDocument:
    try:
        document = parse_flow(fields)
    except FlowError as exc:
        raise InvalidInput(exc.message, field=exc.field, code="invalid_flow") from None
    for field, name in document.media_files():
        path = media_dir / name
        # parse_flow refused absolute paths and '..'; a symlink must not lead out either.
        if not path.is_file() or not path.resolve().is_relative_to(media_dir.resolve()):
            raise InvalidInput(
                f"{field}: no audio file {name!r} in the media folder {str(media_dir)!r}",
                field=field,
                code="unknown_audio",
            )
    return document


def _valid_routing(fields: dict[str, Any]) -> NumberRouting:
    try:
        return NumberRouting.model_validate(fields)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first.get("loc", ())) or None
        message = str(first.get("msg", "invalid value")).removeprefix("Value error, ")
        if first.get("type") == "extra_forbidden":
            message = "unknown field"
        raise InvalidInput(f"{field}: {message}" if field else message, field=field) from None


def _own_flow(session: Session, account: Account, flow_id: str) -> Flow:
    flow = store.get_flow(session, account=account, flow_id=flow_id)
    if flow is None:
        raise NotFound(f"no flow {flow_id!r} in this account")
    return flow


def _version(session: Session, flow: Flow, version: int | None) -> FlowVersion:
    wanted = version if version is not None else flow.latest_version
    found = store.get_version(session, flow=flow, version=wanted)
    if found is None:
        raise NotFound(f"flow {flow.id} has no version {wanted} (the newest is "
                       f"{flow.latest_version})")  # fmt: skip
    return found


def _own_number(session: Session, account: Account, number: str) -> Number:
    compact = "".join(number.split())
    e164 = compact if compact.startswith("+") else "+" + compact
    row = store.own_number(session, account=account, e164=e164)
    if row is None:
        raise NotFound(f"no number {e164!r} in this account")
    return row


def _info(flow: Flow) -> FlowInfo:
    return FlowInfo(
        id=flow.id,
        name=flow.name,
        state=flow.state,
        latest_version=flow.latest_version,
        live_version=flow.live_version,
        created_at=iso_utc(flow.created_at) or "",
        updated_at=iso_utc(flow.updated_at) or "",
    )


def _detail(flow: Flow, version: FlowVersion, document: FlowDocument | None) -> FlowDetail:
    definition: dict[str, Any] = json.loads(version.document)
    if document is None:
        try:
            document = parse_flow(definition)
        except FlowError as exc:  # valid when saved; a later, stricter format may refuse it
            warnings = [f"this version no longer validates: {exc.message}"]
        else:
            warnings = document.warnings()
    else:
        warnings = document.warnings()
    return FlowDetail(
        **_info(flow).model_dump(),
        version=version.version,
        version_created_at=iso_utc(version.created_at) or "",
        warnings=warnings,
        definition=definition,
    )


def _routing(number: Number) -> Routing:
    return Routing(
        number=number.e164,
        flow=number.flow_id,
        hours=json.loads(number.hours) if number.hours is not None else None,
        missed_call=number.missed_call,
        callback=number.callback_url,
    )
