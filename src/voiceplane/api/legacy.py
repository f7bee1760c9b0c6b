"""The legacy ``?method=`` API (Solutions Infini / Kaleyra api-voice), on ``GET|POST /v1/``.

Parameters come from the query string and the body (form or JSON) together; the key from
``api_key``, or the ``x-api-key`` (or ``api-key``) header. Answers use the legacy envelope
in ``format`` = ``text`` (default), ``json`` or ``xml`` (:mod:`voiceplane.api.envelope`).

Methods (kaleyra-api-research.md 3 to 5):

- ``dial.click2call``: ``caller`` (leg 1; ``a-b`` rings both), ``receiver`` (leg 2; ``a^b``),
  ``caller_id`` (the bridge number; may be left out when the account has exactly one
  number), and ``retry``, ``timeout``, ``time``, ``callback``, ``dlrurl``, ``custom``.
  ``data`` is ``{"id": ...}``.
- ``voice.call``: ``numbers`` (``a,b``: one call each), ``caller_id``, ``message`` (text to
  speak) or ``play`` (a ``.wav`` file), ``retries`` (or ``retry``), ``interval``,
  ``timeout``, ``time``, ``callback``, ``dlrurl``, ``custom``. ``data`` is
  ``{"id": <first call>, "ids": [every call]}``.
- ``dial.c2cstatus`` (click-to-call calls) and ``voice.status`` (outbound calls): ``id``
  for one call, else a page of calls filtered by ``callto`` / ``mobile``, ``fromdate`` and
  ``todate`` (``YYYY/MM/DD``), ``status``; ``page`` (from 1) and ``limit`` (default 50).
  ``data`` is a list of records (:func:`voiceplane.api.records.legacy_record`).

The same checks and storage as the kaleyra.io-style routes, with two differences: legacy
numbers are often national (10 digits), so give ``prefix`` (``91``) for them, as those routes
need too; and IVR receivers, sound ids and contact groups are refused as not supported yet.
``promotional`` (or ``type``) is read as by those routes (DND applies to promotional calls).
``return``, ``meta`` and ``campaign`` are accepted and ignored; any other unknown parameter
is refused, so that a misspelt one is not silently dropped.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool
from sqlalchemy.orm import Session

from voiceplane.api import body, envelope, records
from voiceplane.api.deps import Backend, BackendDep
from voiceplane.api.errors import ApiError, InvalidInput, NotFound, Unauthorized
from voiceplane.api.filters import CallFilters
from voiceplane.api.placing import store_click_to_call, store_outbound
from voiceplane.api.schemas import ClickToCallRequest, OutboundRequest
from voiceplane.calls import flow_target
from voiceplane.store import repository
from voiceplane.store.models import Account

PATHS: Final = ("/v1/", "/v1", "/api/v1/", "/api/v1/index.php")
MAX_NUMBERS: Final = 100
DEFAULT_PAGE: Final = 50

_CONTROL: Final = frozenset({"method", "format", "api_key"})
_IGNORED: Final = frozenset({"return", "meta", "campaign"})
_COMMON: Final = (
    "prefix", "retry", "timeout", "time", "callback", "dlrurl", "custom",
    "promotional", "type",  # promotional calls are checked against the DND registry
)  # fmt: skip
_CALL_LIST: Final = frozenset({"id", "fromdate", "todate", "status", "page", "limit", "prefix"})

router = APIRouter(tags=["legacy"])

Params = Mapping[str, Any]


@dataclass(frozen=True)
class Outcome:
    """What a method answers (``data``) and the calls it queued (rung after the commit)."""

    data: Any
    queued: tuple[str, ...] = ()


async def legacy_api(request: Request, backend: BackendDep) -> Response:
    """``?method=dial.click2call|dial.c2cstatus|voice.call|voice.status``; see the module."""
    fmt = _format_hint(request)
    try:
        params = await _params(request)
        fmt = envelope.Format.read(params.get("format"))
        method = _method(params)
        api_key = (
            params.get("api_key")
            or request.headers.get("x-api-key")
            or request.headers.get("api-key")
        )
        outcome = await run_in_threadpool(_run, backend, method, api_key, params)
    except ApiError as error:
        return envelope.failure(error, fmt)
    for call_id in outcome.queued:
        backend.commands.call_queued(call_id)
    return envelope.success(outcome.data, fmt)


_DOCS: Final[dict[str, Any]] = {
    "parameters": [
        {
            "name": "method",
            "in": "query",
            "required": True,
            "schema": {
                "type": "string",
                "enum": ["dial.click2call", "dial.c2cstatus", "voice.call", "voice.status"],
            },
        },
        {
            "name": "format",
            "in": "query",
            "schema": {"type": "string", "enum": ["text", "json", "xml"], "default": "text"},
        },
        {"name": "api_key", "in": "query", "schema": {"type": "string"}},
        {"name": "x-api-key", "in": "header", "schema": {"type": "string"}},
    ]
}

for _path in PATHS:
    for _verb in ("GET", "POST"):
        router.add_api_route(
            _path,
            legacy_api,
            methods=[_verb],
            summary="The legacy ?method= API",
            operation_id=f"legacy_{_verb.lower()}",
            include_in_schema=_path == PATHS[0],
            openapi_extra=_DOCS,
            response_class=Response,
        )


def _format_hint(request: Request) -> envelope.Format:
    """The format to refuse unreadable parameters in: the query string's, if it is one."""
    try:
        return envelope.Format.read(request.query_params.get("format"))
    except ApiError:
        return envelope.Format.TEXT


async def _params(request: Request) -> dict[str, Any]:
    """Query parameters and body fields together; a name given twice is refused."""
    query = body.single_values(request.query_params.multi_items(), "query string")
    fields = await body.read_fields(request) if request.method == "POST" else {}
    for key in fields.keys() & query.keys():
        raise InvalidInput(f"{key} is given in both the query string and the body", field=key)
    # Legacy parameters are text; a JSON body may send numbers as numbers.
    return {key: _as_text(value) for key, value in {**query, **fields}.items()}


def _as_text(value: Any) -> Any:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return value


def _method(params: Params) -> Callable[[Session, Account, Params, Backend], Outcome]:
    name = params.get("method")
    if not name:
        raise InvalidInput("method is required, e.g. method=dial.click2call", field="method")
    method = _METHODS.get(str(name).strip())
    if method is None:
        raise InvalidInput(
            f"unknown method {name!r}; expected one of {', '.join(_METHODS)}", field="method"
        )
    return method


def _run(
    backend: Backend,
    method: Callable[[Session, Account, Params, Backend], Outcome],
    api_key: str | None,
    params: Params,
) -> Outcome:
    with backend.sessions.begin() as session:
        if not api_key:
            raise Unauthorized("send your API key as api_key or in the x-api-key header")
        account = repository.authenticate_key(session, api_key=str(api_key))
        if account is None:
            raise Unauthorized("the API key is not valid")
        return method(session, account, params, backend)


# --- placing calls -----------------------------------------------------------------------


def _click2call(session: Session, account: Account, params: Params, backend: Backend) -> Outcome:
    _only(params, {"caller", "receiver", "caller_id", *_COMMON})
    receiver = str(params.get("receiver", ""))
    if receiver.endswith(".ivr"):  # ivr:<id> names a flow (voiceplane.api.fields.leg2)
        raise InvalidInput("IVR files are not supported; use ivr:<flow id>", field="receiver")
    fields = _renamed(params, {"caller": "from", "receiver": "to"}, _COMMON)
    fields["bridge"] = _caller_id(session, account, params)
    names = {"from": "caller", "to": "receiver", "bridge": "caller_id"}
    try:
        order = body.validate(
            ClickToCallRequest, fields, context=backend.order_context(), names=names
        )
        call_id = store_click_to_call(session, account=account, order=order)
    except ApiError as error:
        raise error.renamed(names) from None
    return Outcome({"id": call_id}, (call_id,))


def _voice_call(session: Session, account: Account, params: Params, backend: Backend) -> Outcome:
    _only(params, {"numbers", "caller_id", "message", "play", "retries", "interval", *_COMMON})
    if "retries" in params and "retry" in params:
        raise InvalidInput("give retries or retry, not both", field="retries")
    fields = _renamed(params, {"retries": "retry"}, (*_COMMON, "interval"))
    names = {"bridge": "caller_id", "retry": "retries" if "retries" in params else "retry"}
    target_field = _target(params)
    if target_field is not None:
        fields["target"] = params[target_field]
        names["target"] = target_field
    fields["bridge"] = _caller_id(session, account, params)
    numbers = [part for part in str(params.get("numbers", "")).split(",") if part.strip()]
    if not numbers:
        raise InvalidInput(
            "numbers is required: one or more numbers, separated by ','", field="numbers"
        )
    if len(numbers) > MAX_NUMBERS:
        raise InvalidInput(f"at most {MAX_NUMBERS} numbers in one request", field="numbers")
    context = backend.order_context()
    ids: list[str] = []
    for number in numbers:
        try:
            order = body.validate(OutboundRequest, {**fields, "to": number}, context=context)
            ids.append(store_outbound(session, account=account, order=order))
        except ApiError as error:
            raise error.renamed({**names, "to": "numbers"}) from None
    return Outcome({"id": ids[0], "ids": ids}, tuple(ids))


def _target(params: Params) -> str | None:
    """Which parameter says what to play: ``play`` wins over ``message``, as in the legacy
    API; a play reference other than a ``.wav`` file or a flow (``ivr:<id>``) is refused."""
    if params.get("group"):
        raise InvalidInput("contact groups are not supported yet; list numbers", field="group")
    play = str(params.get("play") or "").strip()
    if play:
        if not play.lower().endswith(".wav") and not play.lower().startswith(flow_target.PREFIXES):
            raise InvalidInput(
                "play must be a .wav file or a flow (ivr:<id>); sound ids are not supported",
                field="play",
            )
        return "play"
    return "message" if params.get("message") else None


def _caller_id(session: Session, account: Account, params: Params) -> Any:
    """The bridge number as given, or the account's only number when none is given."""
    given = params.get("caller_id")
    if given:
        return given
    numbers = repository.list_numbers(session, account=account)
    if len(numbers) != 1:
        raise InvalidInput(
            f"caller_id is required: the account has {len(numbers)} numbers to choose from",
            field="caller_id",
        )
    return numbers[0].e164


def _renamed(params: Params, renames: Mapping[str, str], kept: tuple[str, ...]) -> dict[str, Any]:
    fields = {new: params[old] for old, new in renames.items() if old in params}
    fields.update({name: params[name] for name in kept if name in params})
    return fields


def _only(params: Params, allowed: set[str] | frozenset[str]) -> None:
    for name in params:
        if name not in allowed and name not in _CONTROL and name not in _IGNORED:
            raise InvalidInput(f"unknown parameter {name!r}", field=name)


# --- reading calls -------------------------------------------------------------------------


def _c2c_status(session: Session, account: Account, params: Params, backend: Backend) -> Outcome:
    _only(params, {*_CALL_LIST, "callto"})
    return Outcome(_records(session, account, params, service="click2call", number="callto"))


def _voice_status(session: Session, account: Account, params: Params, backend: Backend) -> Outcome:
    _only(params, {*_CALL_LIST, "mobile"})
    return Outcome(_records(session, account, params, service="outbound", number="mobile"))


def _records(
    session: Session, account: Account, params: Params, *, service: str, number: str
) -> list[dict[str, Any]]:
    call_id = params.get("id")
    if call_id:
        call = repository.get_call(session, account=account, call_id=str(call_id))
        if call is None or call.service != service:
            raise NotFound(f"no call {call_id!r} of this kind in this account", field="id")
        return [records.legacy_record(call)]
    filters = CallFilters.read(
        service=service,
        status=params.get("status"),
        number=params.get(number),
        prefix=params.get("prefix"),
        start_time=params.get("fromdate"),
        end_time=params.get("todate"),
        names={"number": number, "start_time": "fromdate", "end_time": "todate"},
    )
    limit = _bounded(params, "limit", DEFAULT_PAGE, 1, repository.MAX_PAGE)
    page = _bounded(params, "page", 1, 1, 1_000_000)
    found = filters.calls(session, account=account, limit=limit, offset=(page - 1) * limit)
    return [records.legacy_record(call) for call in found]


def _bounded(params: Params, name: str, default: int, low: int, high: int) -> int:
    text = str(params.get(name) or "").strip()
    if not text:
        return default
    if not text.isdigit() or not low <= int(text) <= high:
        raise InvalidInput(f"{name} must be a whole number from {low} to {high}", field=name)
    return int(text)


_METHODS: Final[dict[str, Callable[[Session, Account, Params, Backend], Outcome]]] = {
    "dial.click2call": _click2call,
    "dial.c2cstatus": _c2c_status,
    "voice.call": _voice_call,
    "voice.status": _voice_status,
}
