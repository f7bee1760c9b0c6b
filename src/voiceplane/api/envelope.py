"""The legacy API's response envelope in its three formats (kaleyra-api-research.md 2.1).

Success: ``status`` ``"200"`` (a string, which is what legacy clients compare), ``message``
``"OK"`` and ``data``. A refusal has the HTTP status as ``status``, the reason as
``message``, ``data`` null, and the contract's ``error`` object (``code``, ``message``,
``field``) so the bad parameter is named. The HTTP status is the real one as well.

- ``json``: that object.
- ``xml``: ``<response>`` with one element per key; a list's items are ``<item>`` elements.
- ``text`` (the legacy default): ``key=value`` lines; a list of records is one line per
  record, URL-encoded like a query string.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode
from xml.etree import ElementTree

from fastapi import Response

from voiceplane.api.errors import ApiError, InvalidInput

OK = "OK"


class Format(enum.Enum):
    TEXT = "text"
    JSON = "json"
    XML = "xml"

    @classmethod
    def read(cls, text: str | None) -> Format:
        """The ``format`` parameter; absent means text, as in the legacy API."""
        if text is None or not text.strip():
            return cls.TEXT
        try:
            return cls(text.strip().lower())
        except ValueError:
            known = ", ".join(member.value for member in cls)
            raise InvalidInput(f"format must be one of {known}", field="format") from None


def success(data: Any, fmt: Format) -> Response:
    return _render({"status": "200", "message": OK, "data": data}, 200, fmt)


def failure(error: ApiError, fmt: Format) -> Response:
    body = {
        "status": str(error.status),
        "message": error.message,
        "data": None,
        "error": {"code": error.code, "message": error.message, "field": error.field},
    }
    return _render(body, error.status, fmt)


def _render(body: Mapping[str, Any], status: int, fmt: Format) -> Response:
    if fmt is Format.JSON:
        return Response(json.dumps(body), status, media_type="application/json")
    if fmt is Format.XML:
        root = ElementTree.Element("response")
        for key, value in body.items():
            _xml(root, key, value)
        text = ElementTree.tostring(root, encoding="unicode", xml_declaration=True)
        return Response(text, status, media_type="application/xml")
    return Response(_text(body), status, media_type="text/plain")


def _xml(parent: ElementTree.Element, name: str, value: Any) -> None:
    element = ElementTree.SubElement(parent, name)
    if isinstance(value, Mapping):
        for key, item in value.items():
            _xml(element, str(key), item)
    elif isinstance(value, list | tuple):
        for item in value:
            _xml(element, "item", item)
    elif value is not None:
        element.text = str(value)


def _text(body: Mapping[str, Any]) -> str:
    lines = [f"status={_line(body['status'])}", f"message={_line(body['message'])}"]
    data = body.get("data")
    if isinstance(data, Mapping):
        lines += [f"{key}={_line(value)}" for key, value in data.items()]
    elif isinstance(data, list):
        lines += [urlencode({k: _line(v) for k, v in record.items()}) for record in data]
    error = body.get("error")
    if isinstance(error, Mapping):
        lines += [f"code={_line(error['code'])}", f"field={_line(error['field'])}"]
    return "\n".join(lines) + "\n"


def _line(value: Any) -> str:
    """One value on one line: None is empty, lists are joined with commas."""
    if value is None:
        return ""
    if isinstance(value, list | tuple):
        return ",".join(_line(item) for item in value)
    return " ".join(str(value).splitlines())
