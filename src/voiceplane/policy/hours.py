"""Office hours: is a number (or a flow's hours step) open at a given moment, and why not.

A schedule is written as JSON (docs/flows.md, "Office hours")::

    {
      "timezone": "Asia/Kolkata",
      "slots": [
        {"days": "mon-fri", "open": "09:00", "close": "18:00"},
        {"days": ["sat"], "open": "22:00", "close": "02:00"}
      ],
      "holidays": ["2027-08-16", {"date": "2027-12-24", "name": "Office party"}],
      "country": "IN",
      "subdivision": "KA"
    }

Rules, all in the schedule's own timezone (its wall clock, so a DST change moves the UTC
hours and never the local ones):

- A slot is open from ``open`` (included) to ``close`` (excluded), on each of its ``days``.
  ``close`` at or before ``open`` means the slot runs past midnight into the next day (the day
  it *opens* is the one listed); ``"24:00"`` closes at the end of the day.
- No slots at all means open around the clock, except on holidays.
- A holiday closes its whole local date, including the part of a slot that ran into it from
  the evening before. Holidays are the listed dates plus, with ``country``, the public
  holidays of that country's calendar in the ``holidays`` library (``subdivision``: a state
  or province with its own holidays, such as India's ``KA``).

Nothing here reads a clock: the caller passes the moment (timezone-aware), so every rule is a
plain unit test.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from datetime import date, datetime
from typing import Annotated, Any, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import holidays as holiday_calendars
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

DAY_NAMES: Final = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
MINUTES_A_DAY: Final = 24 * 60
_CLOCK: Final = re.compile(r"(\d{1,2}):(\d{2})")
_DAY_ALIASES: Final = {"daily": "mon-sun", "weekdays": "mon-fri", "weekends": "sat-sun"}


def _day(name: str) -> int:
    key = name.strip().lower()[:3]
    if key not in DAY_NAMES:
        raise ValueError(f"unknown day {name.strip()!r}; use {', '.join(DAY_NAMES)}")
    return DAY_NAMES.index(key)


def parse_days(value: object) -> frozenset[int]:
    """``"mon-fri"``, ``"sat,sun"``, ``["mon", "wed"]``, ``"daily"`` as weekday numbers (Monday
    is 0); a range may wrap round the week (``"fri-mon"``)."""
    if isinstance(value, str):
        value = _DAY_ALIASES.get(value.strip().lower(), value)
        assert isinstance(value, str)
        parts: list[object] = [part for part in value.split(",") if part.strip()]
    elif isinstance(value, list | tuple | set | frozenset):
        parts = list(value)
    else:
        raise ValueError('days must be a text like "mon-fri" or a list of day names')
    days: set[int] = set()
    for part in parts:
        if not isinstance(part, str):
            raise ValueError(f"a day must be a name like 'mon', not {part!r}")
        first, dash, last = part.partition("-")
        if not dash:
            days.add(_day(first))
            continue
        start, end = _day(first), _day(last)
        days.update((start + step) % 7 for step in range((end - start) % 7 + 1))
    if not days:
        raise ValueError("days is empty; name at least one day")
    return frozenset(days)


def parse_clock(value: object) -> int:
    """``"HH:MM"`` (24-hour, ``"24:00"`` allowed) as minutes after midnight."""
    if not isinstance(value, str):
        raise ValueError(f'a time must be a text like "09:30", not {value!r}')
    match = _CLOCK.fullmatch(value.strip())
    if match is None:
        raise ValueError(f'{value!r} is not a time like "09:30" (24-hour HH:MM)')
    hours, minutes = int(match[1]), int(match[2])
    if minutes > 59 or hours > 24 or (hours == 24 and minutes):
        raise ValueError(f"{value!r} is not a time of day (00:00 to 24:00)")
    return hours * 60 + minutes


def _clock_text(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


Days = Annotated[frozenset[int], BeforeValidator(parse_days)]
Clock = Annotated[int, BeforeValidator(parse_clock)]


class Slot(BaseModel):
    """Open from ``open`` to ``close`` (minutes after midnight) on each of ``days``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    days: Days
    open: Clock
    close: Clock

    @model_validator(mode="after")
    def _not_empty(self) -> Slot:
        if self.open == self.close:
            raise ValueError(
                f"the slot opens and closes at {_clock_text(self.open)}; "
                'for the whole day write "00:00" to "24:00"'
            )
        if self.open == MINUTES_A_DAY:
            raise ValueError("a slot cannot open at 24:00; write 00:00")
        return self

    @property
    def crosses_midnight(self) -> bool:
        return self.close < self.open

    def covers(self, weekday: int, minute: int) -> bool:
        """Whether the slot is open at ``minute`` after midnight of a day ``weekday``."""
        if not self.crosses_midnight:
            return weekday in self.days and self.open <= minute < self.close
        if weekday in self.days and minute >= self.open:
            return True
        return (weekday - 1) % 7 in self.days and minute < self.close

    def describe(self) -> str:
        days = ",".join(DAY_NAMES[day] for day in sorted(self.days))
        return f"{days} {_clock_text(self.open)}-{_clock_text(self.close)}"


class HolidayDate(BaseModel):
    """A date the office is closed all day, with an optional name."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    date: date
    name: str = Field(default="holiday", min_length=1, max_length=200)

    @model_validator(mode="before")
    @classmethod
    def _from_text(cls, value: Any) -> Any:
        if isinstance(value, str | date):
            return {"date": value}
        return value


class OfficeHours(BaseModel):
    """A schedule: see the module docstring. Build it with ``OfficeHours.model_validate``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    timezone: str
    slots: tuple[Slot, ...] = ()
    holidays: tuple[HolidayDate, ...] = ()
    country: str | None = None
    subdivision: str | None = None

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown timezone {value!r}; use an IANA name like 'Asia/Kolkata'"
            ) from None
        return value

    @field_validator("country", "subdivision")
    @classmethod
    def _upper(cls, value: str | None) -> str | None:
        return value.strip().upper() if value is not None and value.strip() else None

    @model_validator(mode="after")
    def _known_calendar(self) -> OfficeHours:
        if self.subdivision is not None and self.country is None:
            raise ValueError("subdivision needs a country")
        if self.country is not None:
            supported = holiday_calendars.list_supported_countries()
            if self.country not in supported:
                raise ValueError(
                    f"no holiday calendar for country {self.country!r}; "
                    "use an ISO 3166 code like 'IN'"
                )
            subdivisions = supported[self.country]
            if self.subdivision is not None and self.subdivision not in subdivisions:
                raise ValueError(
                    f"{self.country} has no subdivision {self.subdivision!r}; "
                    f"known: {', '.join(subdivisions)}"
                )
        return self

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


@dataclass(frozen=True)
class Verdict:
    """Whether the schedule is open, why, and the local time it was judged at."""

    open: bool
    reason: str
    local_time: datetime
    holiday: str | None = None  # the holiday's name, when that is why it is closed

    def __bool__(self) -> bool:
        return self.open


def check(hours: OfficeHours, at: datetime) -> Verdict:
    """Whether ``hours`` is open at ``at`` (timezone-aware), and why."""
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"naive datetime {at.isoformat()} given; use a timezone-aware one")
    local = at.astimezone(hours.zone)
    holiday = holiday_name(hours, local.date())
    if holiday is not None:
        return Verdict(False, f"holiday: {holiday}", local, holiday=holiday)
    if not hours.slots:
        return Verdict(True, "no slots: open around the clock", local)
    minute = local.hour * 60 + local.minute
    for slot in hours.slots:
        if slot.covers(local.weekday(), minute):
            return Verdict(True, f"within {slot.describe()}", local)
    return Verdict(False, "outside office hours", local)


def is_open(hours: OfficeHours, at: datetime) -> bool:
    """Whether ``hours`` is open at ``at``; :func:`check` also says why."""
    return check(hours, at).open


def holiday_name(hours: OfficeHours, day: date) -> str | None:
    """The name of the holiday on local date ``day``, or None for a working day."""
    for listed in hours.holidays:
        if listed.date == day:
            return listed.name
    if hours.country is None:
        return None
    return _calendar(hours.country, hours.subdivision, day.year).get(day)


@functools.lru_cache(maxsize=256)
def _calendar(country: str, subdivision: str | None, year: int) -> holiday_calendars.HolidayBase:
    # Building a year's calendar costs milliseconds; an incoming call must not pay it each time.
    return holiday_calendars.country_holidays(country, subdiv=subdivision, years=year)
