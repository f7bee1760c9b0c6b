"""Capacity settings over HTTP: an account's channels and call rate, a number's channels.

Same authentication as the voice routes (the SID in the path, the key in ``api-key``);
another account's number is answered like an unknown one (404). A refused request changes
nothing. The engine reads a new limit at once for calls it has not seen yet and, for a
bridge or account that is full, within its next sweep (half a second).

- ``GET|PUT /v1/{sid}/settings/capacity``: ``channels`` (calls of the account up at once;
  null or empty: unlimited), ``max_cps`` (new calls a second; null, empty or 0: unlimited),
  and, read-only, each number's ``channels``.
- ``GET|PUT /v1/{sid}/numbers/{number}/capacity``: the number's ``channels`` (0: it takes no
  calls; the default when registered is 10).
"""

from __future__ import annotations

from typing import Annotated, Any, Final, TypeVar

from fastapi import APIRouter
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError
from sqlalchemy.orm import Session

from voiceplane.api import body
from voiceplane.api.deps import ApiKeyHeader, BackendDep, authenticate, number_in_path
from voiceplane.api.errors import InvalidInput
from voiceplane.policy.capacity import MAX_CHANNELS
from voiceplane.store import repository
from voiceplane.store.models import Account

M = TypeVar("M", bound=BaseModel)

MAX_CPS: Final = 10_000.0

_ERRORS: Final[dict[int | str, dict[str, Any]]] = {
    400: {"description": "A field is missing or wrong; error.field names it."},
    401: {"description": "No API key, or not a key of this account."},
}
_NOT_FOUND: Final[dict[int | str, dict[str, Any]]] = {
    404: {"description": "No such number in this account (another account's neither)."},
}

router = APIRouter(prefix="/v1/{sid}", tags=["capacity"], responses=_ERRORS)


def _blank_is_none(value: object) -> object:
    """A form cannot send null: an empty field (or "unlimited") means none."""
    if isinstance(value, str) and value.strip().lower() in ("", "null", "unlimited"):
        return None
    return value


Channels = Annotated[int, Field(ge=0, le=MAX_CHANNELS)]
Rate = Annotated[float, Field(ge=0, le=MAX_CPS, allow_inf_nan=False)]


class AccountCapacityChange(BaseModel):
    """The fields a PUT may give; the ones left out keep their value."""

    model_config = ConfigDict(extra="forbid")

    channels: Annotated[Channels | None, BeforeValidator(_blank_is_none)] = None
    max_cps: Annotated[Rate | None, BeforeValidator(_blank_is_none)] = None


class NumberCapacityChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    channels: Channels


class NumberCapacity(BaseModel):
    number: str
    channels: int = Field(description="Calls through this number up at once (0: none).")


class AccountCapacity(BaseModel):
    channels: int | None = Field(
        description="Channels the account's calls may hold at once (a click-to-call holds "
        "one per party it can ring at once, usually 2); null: unlimited."
    )
    max_cps: float | None = Field(description="New calls a second; null: unlimited.")
    numbers: list[NumberCapacity] = Field(description="Each number's own channels.")


def _account_view(session: Session, account: Account) -> dict[str, Any]:
    numbers = repository.list_numbers(session, account=account)
    return {
        "channels": account.channels,
        "max_cps": account.max_cps or None,
        "numbers": [{"number": n.e164, "channels": n.channels} for n in numbers],
    }


def _validated(model: type[M], fields: dict[str, Any]) -> M:
    try:
        return model.model_validate(fields)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"]) or None
        message = error["msg"] if error["type"] != "extra_forbidden" else "unknown field"
        raise InvalidInput(f"{where}: {message}" if where else message, field=where) from None


@router.get("/settings/capacity", response_model=AccountCapacity, summary="Capacity settings")
def get_account_capacity(
    sid: str, backend: BackendDep, api_key: ApiKeyHeader = None
) -> dict[str, Any]:
    """The account's channel and call-rate limits, and each of its numbers' channels."""
    with backend.reading().begin() as session:
        account = authenticate(session, sid=sid, api_key=api_key)
        return _account_view(session, account)


@router.put("/settings/capacity", response_model=AccountCapacity, summary="Change them")
def put_account_capacity(
    sid: str, fields: body.Fields, backend: BackendDep, api_key: ApiKeyHeader = None
) -> dict[str, Any]:
    """Set the fields given (``channels``, ``max_cps``); null or empty means unlimited."""
    with backend.sessions.begin() as session:
        account = authenticate(session, sid=sid, api_key=api_key)
        change = _validated(AccountCapacityChange, fields)
        if "channels" in change.model_fields_set:
            account.channels = change.channels
        if "max_cps" in change.model_fields_set:
            account.max_cps = change.max_cps or None
        session.flush()
        return _account_view(session, account)


@router.get(
    "/numbers/{number}/capacity",
    response_model=NumberCapacity,
    responses=_NOT_FOUND,
    summary="A number's channels",
)
def get_number_capacity(
    sid: str, number: str, backend: BackendDep, api_key: ApiKeyHeader = None
) -> dict[str, Any]:
    """How many calls through this number may be up at once."""
    with backend.reading().begin() as session:
        account = authenticate(session, sid=sid, api_key=api_key)
        own = number_in_path(session, account, number)
        return {"number": own.e164, "channels": own.channels}


@router.put(
    "/numbers/{number}/capacity",
    response_model=NumberCapacity,
    responses=_NOT_FOUND,
    summary="Change a number's channels",
)
def put_number_capacity(
    sid: str, number: str, fields: body.Fields, backend: BackendDep, api_key: ApiKeyHeader = None
) -> dict[str, Any]:
    """Set ``channels`` (0: the number takes no calls; waiting ones end MAX-USE)."""
    with backend.sessions.begin() as session:
        account = authenticate(session, sid=sid, api_key=api_key)
        own = number_in_path(session, account, number)
        change = _validated(NumberCapacityChange, fields)
        own.channels = change.channels
        session.flush()
        return {"number": own.e164, "channels": own.channels}


