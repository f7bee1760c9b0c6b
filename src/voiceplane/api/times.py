"""Moments as the API reads and writes them.

Read (``time`` to schedule a call, the date filters of the call logs):

- ISO 8601, ``2025-01-31T09:30:00Z``, ``2025-01-31T15:00+05:30``, ``2025-01-31 09:30``;
- the legacy spelling with slashes, ``2025/01/31 09:30:00`` or the date ``2025/01/31``;
- Unix time in seconds, ``1738315800``.

A time written without an offset is UTC, as every time voiceplane writes is: the platform
runs anywhere, so it assumes no local zone (Kaleyra's legacy API meant India time).
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from typing import Final

MAX_SCHEDULE_AHEAD: Final = timedelta(days=30)

_EPOCH = re.compile(r"[0-9]{9,11}")
_SLASHED_DATE = re.compile(r"([0-9]{4})/([0-9]{2})/([0-9]{2})")
_DATE_ONLY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def parse_moment(text: str, *, end_of_day: bool = False) -> datetime:
    """``text`` as an aware UTC datetime; raises ValueError with a message for the user.

    A date without a time means the start of that day (UTC), or with ``end_of_day`` the start
    of the next one, so an exclusive upper bound ``2025-01-31`` still includes the 31st.
    """
    value = text.strip()
    if _EPOCH.fullmatch(value):
        return datetime.fromtimestamp(int(value), UTC)
    value = _SLASHED_DATE.sub(r"\1-\2-\3", value, count=1)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(
            f"{text!r} is not a time: use ISO 8601 like 2025-01-31T09:30:00Z, "
            "2025/01/31 09:30:00, or Unix seconds"
        ) from None
    if end_of_day and _DATE_ONLY.fullmatch(value):
        moment += timedelta(days=1)
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def parse_schedule(text: str, *, now: datetime) -> datetime:
    """When to place a call: in the future, and at most :data:`MAX_SCHEDULE_AHEAD` ahead."""
    moment = parse_moment(text)
    if moment <= now:
        raise ValueError(f"{text!r} is not in the future (it is now {iso(now)})")
    if moment > now + MAX_SCHEDULE_AHEAD:
        raise ValueError(f"{text!r} is more than {MAX_SCHEDULE_AHEAD.days} days ahead")
    return moment


def iso(moment: datetime) -> str:
    """``2025-01-31T09:30:00Z``."""
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def legacy(moment: datetime | None) -> str | None:
    """The legacy API's ``YYYY-MM-DD HH:MM:SS`` (UTC here); None stays None."""
    if moment is None:
        return None
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def legacy_date(moment: datetime) -> str:
    """The legacy API's ``YYYY-MM-DD`` of a record (UTC)."""
    day: date = moment.astimezone(UTC).date()
    return day.isoformat()
