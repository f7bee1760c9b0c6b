"""Pre-dial policy over HTTP: the blocklist (kaleyra.io's ``/contacts/blocklisted``) and the
dialing settings of an account and of its numbers.

Same authentication as the voice routes (the SID in the path, the key in ``api-key``);
another account's number is answered like an unknown one (404). Every refusal is raised
before anything is written, so a refused request changes nothing.

Blocklist changes (``POST /v1/{sid}/contacts/blocklisted``), JSON as kaleyra.io sends it::

    {"channel": "voice",
     "contacts": [{"blocklist_status": 1, "numbers": ["+9188XXXX6328"]},
                  {"blocklist_status": 0, "numbers": ["+9170XXXX9399"]}]}

or flat, which forms can send too: ``numbers`` (a list, or numbers separated by commas) and
``status`` (1 adds, 0 removes; ``blocklist_status`` is read as well). ``prefix`` is the
country calling code for numbers written without one. At most 100 numbers a request.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Final

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from voiceplane.api import body, phone
from voiceplane.api.deps import ApiKeyHeader, BackendDep, authenticate, number_in_path
from voiceplane.api.errors import InvalidInput
from voiceplane.policy import blocklist, settings
from voiceplane.policy.permissions import RuleError
from voiceplane.store import repository

DEFAULT_PAGE: Final = 50
CHANNELS: Final = ("voice",)

_ERRORS: Final[dict[int | str, dict[str, Any]]] = {
    400: {"description": "A field is missing or wrong; error.field names it."},
    401: {"description": "No API key, or not a key of this account."},
}
_NOT_FOUND: Final[dict[int | str, dict[str, Any]]] = {
    404: {"description": "No such number in this account (another account's neither)."},
}

router = APIRouter(prefix="/v1/{sid}", tags=["policy"], responses=_ERRORS)


# --- bodies ----------------------------------------------------------------------------------


class BlocklistChange(BaseModel):
    """What a blocklist change did: numbers added (not there before) and removed."""

    added: int
    removed: int
    numbers: list[dict[str, Any]] = Field(
        description='Each number named, as E.164, with the status asked: {"number", '
        '"blocklist_status"}.'
    )


class BlocklistEntry(BaseModel):
    number: str
    created_at: str


class BlocklistPage(BaseModel):
    total: int
    limit: int
    offset: int
    page: int
    numbers: list[BlocklistEntry]


class DialingRulesBody(BaseModel):
    """Dialing permissions; a null list means any (docs: README, pre-dial checks)."""

    countries: list[str] | None = Field(description="Allowed ISO 3166 countries (IN, US).")
    international: bool = Field(description="Whether calls abroad (from the bridge) are allowed.")
    number_types: list[str] | None = Field(
        description="Allowed phonenumbers number types (mobile, fixed_line, toll_free, ...)."
    )
    networks: list[str] | None = Field(description="Allowed networks (carrier names).")
    blocked_networks: list[str] = Field(description="Refused networks (carrier names).")


class AccountDialing(DialingRulesBody):
    promotional: bool = Field(
        description="Whether the account's calls are promotional (checked against the DND "
        "registry) unless a call says otherwise."
    )
    block_outgoing: bool = Field(
        description="Whether the blocklist also refuses outgoing calls to its numbers."
    )
    dnd_category: int | None = Field(
        description="The DND preference category (1-8) of the account's promotions: a "
        "registered number that accepts it is called; null: blocked if registered at all."
    )


class NumberDialing(DialingRulesBody):
    number: str


# --- blocklist -------------------------------------------------------------------------------


@router.post(
    "/contacts/blocklisted",
    response_model=BlocklistChange,
    summary="Add numbers to the blocklist or remove them",
)
def change_blocklist(
    sid: str, fields: body.Fields, backend: BackendDep, api_key: ApiKeyHeader = None
) -> dict[str, Any]:
    """Up to 100 numbers a request: ``blocklist_status`` (or ``status``) 1 adds, 0 removes.
    Incoming calls from a blocklisted number are refused (BLOCKED); outgoing calls to one
    too when the account's dialing settings say ``block_outgoing``."""
    with backend.sessions.begin() as session:
        account = authenticate(session, sid=sid, api_key=api_key)
        add, remove = _blocklist_request(fields)
        added, removed = blocklist.change(session, account.id, add=add, remove=remove)
    named = [{"number": n, "blocklist_status": 1} for n in add]
    named += [{"number": n, "blocklist_status": 0} for n in remove]
    return {"added": added, "removed": removed, "numbers": named}


@router.get(
    "/contacts/blocklisted", response_model=BlocklistPage, summary="The blocklisted numbers"
)
def list_blocklist(
    sid: str,
    backend: BackendDep,
    api_key: ApiKeyHeader = None,
    limit: Annotated[int, Query(ge=1, le=repository.MAX_PAGE)] = DEFAULT_PAGE,
    page: Annotated[int | None, Query(ge=1)] = None,
    offset: Annotated[int | None, Query(ge=0)] = None,
) -> dict[str, Any]:
    """The account's blocklist in number order, paged like the call logs."""
    if page is not None and offset is not None:
        raise InvalidInput("give page or offset, not both", field="page")
    skip = offset if offset is not None else ((page or 1) - 1) * limit
    with backend.reading().begin() as session:
        account = authenticate(session, sid=sid, api_key=api_key)
        total, found = blocklist.entries(session, account.id, limit=limit, offset=skip)
    return {
        "total": total,
        "limit": limit,
        "offset": skip,
        "page": skip // limit + 1,
        "numbers": [
            {"number": entry.number, "created_at": repository.iso_utc(entry.created_at)}
            for entry in found
        ],
    }


def _blocklist_request(fields: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    """(numbers to add, numbers to remove), as E.164; InvalidInput names a bad field."""
    known = {"channel", "contacts", "numbers", "status", "blocklist_status", "prefix"}
    for name in fields:
        if name not in known:
            raise InvalidInput(f"unknown field {name!r}", field=name)
    channel = fields.get("channel")
    if channel is not None and str(channel).strip().lower() not in CHANNELS:
        raise InvalidInput("channel must be voice (this platform has no other)", field="channel")
    code = _prefix(fields.get("prefix"))
    groups: list[tuple[Any, Any, str]] = []
    if "contacts" in fields:
        if "numbers" in fields:
            raise InvalidInput("give contacts or numbers, not both", field="numbers")
        contacts = fields["contacts"]
        if not isinstance(contacts, list) or not contacts:
            raise InvalidInput("contacts must be a non-empty list", field="contacts")
        for index, contact in enumerate(contacts):
            where = f"contacts.{index}"
            if not isinstance(contact, Mapping):
                raise InvalidInput(f"{where} must be an object", field=where)
            status = contact.get("blocklist_status", contact.get("status"))
            groups.append((status, contact.get("numbers"), where))
    else:
        status = fields.get("blocklist_status", fields.get("status"))
        groups.append((status, fields.get("numbers"), ""))
    add: list[str] = []
    remove: list[str] = []
    for status, numbers, where in groups:
        prefix = f"{where}." if where else ""
        flag = _status(status, f"{prefix}blocklist_status" if where else "status")
        for number in _numbers(numbers, f"{prefix}numbers", code):
            (add if flag else remove).append(number)
    if len(add) + len(remove) > blocklist.MAX_PER_REQUEST:
        raise InvalidInput(
            f"at most {blocklist.MAX_PER_REQUEST} numbers a request, got {len(add) + len(remove)}",
            field="numbers",
            code="too_many_numbers",
        )
    if set(add) & set(remove):
        raise InvalidInput("a number cannot be both added and removed", field="numbers")
    return add, remove


def _prefix(value: Any) -> int | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        return phone.parse_prefix(str(value))
    except phone.NumberError as exc:
        raise InvalidInput(str(exc), field="prefix", code="invalid_prefix") from None


def _status(value: Any, field: str) -> bool:
    if isinstance(value, bool) or value is None:
        raise InvalidInput(f"{field} must be 0 (remove) or 1 (add)", field=field)
    if str(value).strip() in ("0", "1"):
        return str(value).strip() == "1"
    raise InvalidInput(f"{field} must be 0 (remove) or 1 (add), got {value!r}", field=field)


def _numbers(value: Any, field: str, code: int | None) -> list[str]:
    if isinstance(value, str):
        value = [part for part in value.split(",") if part.strip()]
    if isinstance(value, int) and not isinstance(value, bool):
        value = [str(value)]
    if not isinstance(value, list) or not value:
        raise InvalidInput(f"{field} must be a non-empty list of numbers", field=field)
    found = []
    for item in value:
        if isinstance(item, int) and not isinstance(item, bool):
            item = str(item)
        if not isinstance(item, str):
            raise InvalidInput(f"{field}: {item!r} is not a number", field=field)
        try:
            found.append(phone.to_e164(item, prefix=code))
        except phone.NumberError as exc:
            raise InvalidInput(str(exc), field=field, code="invalid_number") from None
    return found


# --- dialing settings ------------------------------------------------------------------------


@router.get("/settings/dialing", response_model=AccountDialing, summary="Dialing settings")
def get_account_dialing(
    sid: str, backend: BackendDep, api_key: ApiKeyHeader = None
) -> dict[str, object]:
    """The account's dialing permissions, its DND and blocklist choices."""
    with backend.reading().begin() as session:
        account = authenticate(session, sid=sid, api_key=api_key)
        return settings.account_settings(session, account_id=account.id).as_dict()


@router.put("/settings/dialing", response_model=AccountDialing, summary="Change them")
def put_account_dialing(
    sid: str, fields: body.Fields, backend: BackendDep, api_key: ApiKeyHeader = None
) -> dict[str, object]:
    """Set the fields given (the others keep their value); a list set to null (or "any")
    means any. Lists may be sent as comma-separated text. Applies to calls within 5 s."""
    with backend.sessions.begin() as session:
        account = authenticate(session, sid=sid, api_key=api_key)
        current = settings.account_settings(session, account_id=account.id)
        try:
            changed = settings.changed_account(current, fields)
        except RuleError as exc:
            raise InvalidInput(exc.message, field=exc.field) from None
        settings.save_account(session, account_id=account.id, settings=changed)
        return changed.as_dict()


@router.get(
    "/numbers/{number}/dialing",
    response_model=NumberDialing,
    responses=_NOT_FOUND,
    summary="A number's dialing settings",
)
def get_number_dialing(
    sid: str, number: str, backend: BackendDep, api_key: ApiKeyHeader = None
) -> dict[str, object]:
    """The dialing permissions of one of your numbers (applied to calls it bridges, on top
    of the account's)."""
    with backend.reading().begin() as session:
        account = authenticate(session, sid=sid, api_key=api_key)
        own = number_in_path(session, account, number)
        rules = settings.number_rules(session, number_id=own.id)
        return {"number": own.e164, **rules.as_dict()}


@router.put(
    "/numbers/{number}/dialing",
    response_model=NumberDialing,
    responses=_NOT_FOUND,
    summary="Change a number's dialing settings",
)
def put_number_dialing(
    sid: str, number: str, fields: body.Fields, backend: BackendDep, api_key: ApiKeyHeader = None
) -> dict[str, object]:
    """Set the fields given, as for the account's settings (permissions only)."""
    with backend.sessions.begin() as session:
        account = authenticate(session, sid=sid, api_key=api_key)
        own = number_in_path(session, account, number)
        current = settings.number_rules(session, number_id=own.id)
        try:
            changed = settings.changed_rules(current, fields)
        except RuleError as exc:
            raise InvalidInput(exc.message, field=exc.field) from None
        settings.save_number(session, number_id=own.id, rules=changed)
        return {"number": own.e164, **changed.as_dict()}


