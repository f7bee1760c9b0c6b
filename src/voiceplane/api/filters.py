"""The filters of a call-log query, checked once and shared by both APIs.

A status is read in either dialect's words and matched as the canonical word the store
keeps; a number is matched as E.164 against the call's to, from and bridge numbers;
``custom`` is matched exactly; times bound the call's creation (the start inclusive, the end
exclusive; a date alone as an end means the end of that day). A sort is one of
:data:`SORTS`: newest first unless asked otherwise.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from sqlalchemy.orm import Session

from voiceplane.api import phone, times
from voiceplane.api.errors import InvalidInput
from voiceplane.calls.status import Status
from voiceplane.store import repository
from voiceplane.store.models import Account, Call
from voiceplane.store.repository import CallPosition

SORTS: Final = repository.CALL_SORTS
DEFAULT_SORT: Final = repository.DEFAULT_CALL_SORT
MAX_CUSTOM: Final = 255  # as a call's custom (voiceplane.api.schemas)


def read_sort(text: str | None, *, field: str = "sort") -> str:
    """The sort the user asked for (default newest first); :class:`InvalidInput` otherwise."""
    if text is None or not text.strip():
        return DEFAULT_SORT
    value = text.strip()
    if value not in SORTS:
        raise InvalidInput(
            f"unknown sort {text!r}; expected one of {', '.join(SORTS)} ('-': descending)",
            field=field,
        )
    return value


@dataclass(frozen=True)
class CallFilters:
    service: str | None = None
    state: str | None = None
    status: Status | None = None
    number: str | None = None
    custom: str | None = None
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
        custom: str | None = None,
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
        if custom is not None and len(custom) > MAX_CUSTOM:
            raise InvalidInput(
                f"custom is at most {MAX_CUSTOM} characters, as a call's custom is",
                field=names.get("custom", "custom"),
            )
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
            custom=custom or None,
            created_from=bounds[0],
            created_to=bounds[1],
        )

    def calls(
        self,
        session: Session,
        *,
        account: Account,
        limit: int,
        offset: int = 0,
        sort: str = DEFAULT_SORT,
        after: CallPosition | None = None,
    ) -> list[Call]:
        """One page of the matching calls in ``sort`` order (by offset, or after a call)."""
        return repository.list_calls(
            session, account=account, limit=limit, offset=offset, sort=sort, after=after,
            **self._where(),
        )  # fmt: skip

    def page(
        self,
        session: Session,
        *,
        account: Account,
        limit: int,
        offset: int = 0,
        sort: str = DEFAULT_SORT,
        after: CallPosition | None = None,
    ) -> tuple[list[Call], bool]:
        """:meth:`calls`, and whether more matching calls follow this page."""
        return repository.calls_page(
            session, account=account, limit=limit, offset=offset, sort=sort, after=after,
            **self._where(),
        )  # fmt: skip

    def count(self, session: Session, *, account: Account) -> int:
        """How many calls match, on all pages."""
        return repository.count_calls(session, account=account, **self._where())

    def _where(self) -> repository.CallQuery:
        return {
            "service": self.service,
            "state": self.state,
            "status": self.status.value if self.status is not None else None,
            "number": self.number,
            "custom": self.custom,
            "created_from": self.created_from,
            "created_to": self.created_to,
        }
