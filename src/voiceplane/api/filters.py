"""The filters of a call-log query, checked once and shared by both APIs.

A status is read in either dialect's words and matched as the canonical word the store
keeps; a number is matched as E.164 against the call's to, from and bridge numbers; times
bound the call's creation (the start inclusive, the end exclusive; a date alone as an end
means the end of that day).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from voiceplane.api import phone, times
from voiceplane.api.errors import InvalidInput
from voiceplane.calls.status import Status
from voiceplane.store import repository
from voiceplane.store.models import Account, Call


@dataclass(frozen=True)
class CallFilters:
    service: str | None = None
    state: str | None = None
    status: Status | None = None
    number: str | None = None
    created_from: datetime | None = None
    created_to: datetime | None = None

    @classmethod
    def read(
        cls,
        *,
        service: str | None = None,
        state: str | None = None,
        status: str | None = None,
        number: str | None = None,
        prefix: str | None = None,
        start_time: str | None = None,
        end_time: str | None = None,
        names: Mapping[str, str] | None = None,
    ) -> CallFilters:
        """The filters as the user wrote them; an error names the field as ``names`` spells it
        (legacy parameter names), else by the keyword's name."""
        names = names or {}
        try:
            parsed_status = Status.parse(status) if status else None
        except ValueError as exc:
            raise InvalidInput(str(exc), field=names.get("status", "status")) from None
        try:
            code = phone.parse_prefix(prefix) if prefix else None
        except phone.NumberError as exc:
            raise InvalidInput(str(exc), field=names.get("prefix", "prefix")) from None
        try:
            e164 = phone.to_e164(number, prefix=code) if number else None
        except phone.NumberError as exc:
            raise InvalidInput(str(exc), field=names.get("number", "number")) from None
        bounds: list[datetime | None] = []
        for name, text, end in (("start_time", start_time, False), ("end_time", end_time, True)):
            try:
                bounds.append(times.parse_moment(text, end_of_day=end) if text else None)
            except ValueError as exc:
                raise InvalidInput(str(exc), field=names.get(name, name)) from None
        return cls(
            service=service,
            state=state,
            status=parsed_status,
            number=e164,
            created_from=bounds[0],
            created_to=bounds[1],
        )

    def calls(self, session: Session, *, account: Account, limit: int, offset: int) -> list[Call]:
        """One page of the matching calls, newest first."""
        return repository.list_calls(
            session, account=account, limit=limit, offset=offset, **self._where()
        )

    def count(self, session: Session, *, account: Account) -> int:
        """How many calls match, on all pages."""
        return repository.count_calls(session, account=account, **self._where())

    def _where(self) -> dict[str, Any]:
        return {
            "service": self.service,
            "state": self.state,
            "status": self.status.value if self.status is not None else None,
            "number": self.number,
            "created_from": self.created_from,
            "created_to": self.created_to,
        }
