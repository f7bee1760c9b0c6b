"""The API's refusals, independent of how they are written on the wire.

Route code raises one of these; the REST routes write it as the contract's error body
(``{"error": {"code", "message", "field"}}``, see :mod:`voiceplane.api.app`) and the legacy
``?method=`` route writes it in its own envelope (:mod:`voiceplane.api.legacy`)::

    ApiError
      + InvalidInput      400  a parameter is missing or wrong; ``field`` names it
      + Unauthorized      401  no API key, or not a key of that account
      + NotFound          404  no such call, or another account's
      + Conflict          409  the call cannot do that in its state
      + UnsupportedMedia  415  a body that is neither JSON nor a form

Every refusal is raised before anything is committed, so a refused request changes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar


class ApiError(Exception):
    """A request the API refuses: an HTTP status, a stable code, a message, maybe a field."""

    status: ClassVar[int] = 400
    default_code: ClassVar[str] = "bad_request"

    def __init__(self, message: str, *, field: str | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.field = field
        self.code = code or self.default_code

    def renamed(self, names: Mapping[str, str]) -> ApiError:
        """The same refusal with ``field`` spelled as the caller spelled it (legacy names)."""
        if self.field is None or self.field not in names:
            return self
        clone = type(self)(self.message, field=names[self.field], code=self.code)
        return clone


class InvalidInput(ApiError):
    status = 400
    default_code = "invalid_input"


class Unauthorized(ApiError):
    status = 401
    default_code = "unauthorized"


class NotFound(ApiError):
    status = 404
    default_code = "not_found"


class Conflict(ApiError):
    status = 409
    default_code = "conflict"


class UnsupportedMedia(ApiError):
    status = 415
    default_code = "unsupported_media_type"
