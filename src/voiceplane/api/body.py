"""Request bodies as JSON or form fields, read into one plain mapping, then validated.

kaleyra.io's clients post ``application/x-www-form-urlencoded``; others post JSON. Both are
read into a ``dict`` (:func:`read_fields`), and the same pydantic model validates either
(:func:`validate`), so a field means the same thing whichever way it came. A field given
twice is refused rather than one copy silently winning.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Annotated, Any, Final, TypeVar

from fastapi import Depends, Request
from pydantic import BaseModel, ValidationError
from starlette.datastructures import UploadFile

from voiceplane.api.errors import InvalidInput, UnsupportedMedia

JSON_TYPE: Final = "application/json"
FORM_TYPES: Final = ("application/x-www-form-urlencoded", "multipart/form-data")

Model = TypeVar("Model", bound=BaseModel)


async def read_fields(request: Request) -> dict[str, Any]:
    """The fields of the request body (JSON object or form); no body gives ``{}``."""
    media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media_type in FORM_TYPES:
        form = await request.form()
        return single_values(form.multi_items(), "form")
    raw = await request.body()
    if not raw.strip():
        return {}
    if media_type == JSON_TYPE or media_type.endswith("+json"):
        try:
            value = json.loads(raw)
        except ValueError:
            raise InvalidInput("the request body is not valid JSON") from None
        if not isinstance(value, dict):
            raise InvalidInput("the JSON body must be an object of fields")
        return value
    raise UnsupportedMedia(
        f"send the body as {JSON_TYPE} or {FORM_TYPES[0]}, not {media_type or 'untyped'}"
    )


Fields = Annotated[dict[str, Any], Depends(read_fields)]


def single_values(items: Iterable[tuple[str, Any]], source: str) -> dict[str, Any]:
    """``items`` as a dict; a key given twice or a file upload is refused, naming the key."""
    values: dict[str, Any] = {}
    for key, value in items:
        if isinstance(value, UploadFile):
            raise InvalidInput(f"{key} must be a text field, not a file", field=key)
        if key in values:
            raise InvalidInput(f"{key} is given twice in the {source}", field=key)
        values[key] = value
    return values


def validate(
    model: type[Model],
    data: Mapping[str, Any],
    *,
    context: object = None,
    names: Mapping[str, str] | None = None,
) -> Model:
    """``data`` validated as ``model``; the first problem becomes an :class:`InvalidInput`.

    ``names`` maps the model's field names to the ones the caller used (legacy parameters),
    so that the error names a field the caller knows.
    """
    try:
        return model.model_validate(data, context=context)
    except ValidationError as exc:
        raise invalid_input(exc, names or {}) from None


def invalid_input(exc: ValidationError, names: Mapping[str, str]) -> InvalidInput:
    """The first error of ``exc``, with a message that stands on its own."""
    first = exc.errors()[0]
    loc = [str(part) for part in first.get("loc", ())]
    field = ".".join(loc) or None
    if field is not None:
        field = names.get(field, field)
    kind = first.get("type", "")
    if kind == "missing":
        message = f"{field} is required"
    elif kind == "extra_forbidden":
        message = f"unknown field {field!r}"
    elif field is not None and kind in _PYDANTIC_WORDING:
        message = f"{field}: {first.get('msg', 'invalid value')}"
    else:
        message = str(first.get("msg", "invalid value"))
    return InvalidInput(message, field=field)


# pydantic's own messages ("Input should be ...") do not say which field they are about.
_PYDANTIC_WORDING: Final = frozenset(
    {
        "int_parsing",
        "int_from_float",
        "int_type",
        "string_type",
        "string_too_long",
        "string_too_short",
        "greater_than_equal",
        "less_than_equal",
        "greater_than",
        "less_than",
        "literal_error",
        "datetime_type",
    }
)
