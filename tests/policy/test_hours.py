"""Office hours: slots, midnight, DST changes, listed and national holidays, bad input."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from voiceplane.policy.hours import OfficeHours, check, holiday_name, is_open, parse_days

KOLKATA = ZoneInfo("Asia/Kolkata")
NEW_YORK = ZoneInfo("America/New_York")


def hours(**fields: Any) -> OfficeHours:
    return OfficeHours.model_validate(fields)


def slot(days: str, open_: str, close: str) -> dict[str, str]:
    return {"days": days, "open": open_, "close": close}


def weekdays_9_to_6(zone: str = "Asia/Kolkata", **more: Any) -> OfficeHours:
    return hours(timezone=zone, slots=[slot("mon-fri", "09:00", "18:00")], **more)


def test_a_slot_opens_at_its_start_and_closes_at_its_end() -> None:
    schedule = weekdays_9_to_6()
    # Wednesday 2027-02-03 in Kolkata (UTC+05:30).
    assert not is_open(schedule, datetime(2027, 2, 3, 8, 59, 59, tzinfo=KOLKATA))
    assert is_open(schedule, datetime(2027, 2, 3, 9, 0, tzinfo=KOLKATA))
    assert is_open(schedule, datetime(2027, 2, 3, 17, 59, 59, tzinfo=KOLKATA))
    assert not is_open(schedule, datetime(2027, 2, 3, 18, 0, tzinfo=KOLKATA))
    # Saturday is not in mon-fri.
    verdict = check(schedule, datetime(2027, 2, 6, 11, 0, tzinfo=KOLKATA))
    assert not verdict and verdict.reason == "outside office hours" and verdict.holiday is None


def test_the_moment_is_judged_in_the_schedules_timezone() -> None:
    schedule = weekdays_9_to_6()
    # 03:30 UTC is 09:00 in Kolkata: open; 03:29 UTC is not.
    assert is_open(schedule, datetime(2027, 2, 3, 3, 30, tzinfo=UTC))
    assert not is_open(schedule, datetime(2027, 2, 3, 3, 29, tzinfo=UTC))
    verdict = check(schedule, datetime(2027, 2, 3, 3, 30, tzinfo=UTC))
    assert verdict.local_time.utcoffset() == KOLKATA.utcoffset(verdict.local_time)
    assert verdict.reason == "within mon,tue,wed,thu,fri 09:00-18:00"


def test_a_slot_past_midnight_belongs_to_the_day_it_opens() -> None:
    schedule = hours(timezone="UTC", slots=[{"days": "fri", "open": "22:00", "close": "02:00"}])
    assert is_open(schedule, datetime(2027, 2, 5, 23, 0, tzinfo=UTC))  # Friday night
    assert is_open(schedule, datetime(2027, 2, 6, 1, 59, tzinfo=UTC))  # Saturday small hours
    assert not is_open(schedule, datetime(2027, 2, 6, 2, 0, tzinfo=UTC))
    assert not is_open(schedule, datetime(2027, 2, 6, 23, 0, tzinfo=UTC))  # Saturday night
    assert not is_open(schedule, datetime(2027, 2, 5, 1, 0, tzinfo=UTC))  # Friday small hours


def test_24_00_closes_at_the_end_of_the_day_and_a_week_can_wrap() -> None:
    schedule = hours(timezone="UTC", slots=[{"days": "sat-mon", "open": "00:00", "close": "24:00"}])
    assert is_open(schedule, datetime(2027, 2, 6, 0, 0, tzinfo=UTC))  # Saturday
    assert is_open(schedule, datetime(2027, 2, 8, 23, 59, 59, tzinfo=UTC))  # Monday
    assert not is_open(schedule, datetime(2027, 2, 9, 0, 0, tzinfo=UTC))  # Tuesday


def test_dst_moves_the_utc_hours_not_the_local_ones() -> None:
    schedule = weekdays_9_to_6("America/New_York")
    # Winter (EST, UTC-5): 09:00 local is 14:00 UTC.
    assert not is_open(schedule, datetime(2027, 3, 12, 13, 59, tzinfo=UTC))
    assert is_open(schedule, datetime(2027, 3, 12, 14, 0, tzinfo=UTC))
    # Clocks go forward on Sunday 2027-03-14; on Monday (EDT, UTC-4) 09:00 is 13:00 UTC.
    assert is_open(schedule, datetime(2027, 3, 15, 13, 0, tzinfo=UTC))
    assert not is_open(schedule, datetime(2027, 3, 15, 12, 59, tzinfo=UTC))
    assert not is_open(schedule, datetime(2027, 3, 15, 22, 0, tzinfo=UTC))  # 18:00 EDT


def test_a_night_slot_across_the_fall_back_change_keeps_its_local_hours() -> None:
    # Saturday 22:00 to Sunday 03:00 local; on Sunday 2027-11-07 01:00-02:00 happens twice.
    schedule = hours(
        timezone="America/New_York", slots=[{"days": "sat", "open": "22:00", "close": "03:00"}]
    )
    # 06:30 UTC is 01:30 EDT (first time), 07:30 UTC is 02:30 EST after the change,
    # 08:00 UTC is 03:00 EST: closed. The slot lasted one hour longer in UTC.
    assert is_open(schedule, datetime(2027, 11, 7, 5, 30, tzinfo=UTC))
    assert is_open(schedule, datetime(2027, 11, 7, 6, 30, tzinfo=UTC))
    assert is_open(schedule, datetime(2027, 11, 7, 7, 30, tzinfo=UTC))
    assert not is_open(schedule, datetime(2027, 11, 7, 8, 0, tzinfo=UTC))
    assert is_open(schedule, datetime(2027, 11, 7, 2, 0, tzinfo=UTC))  # Sat 22:00 EDT


def test_a_national_holiday_closes_the_day_and_says_which() -> None:
    schedule = weekdays_9_to_6(country="IN")
    # Republic Day, Tuesday 26 January 2027, at 11:00 in Kolkata.
    verdict = check(schedule, datetime(2027, 1, 26, 11, 0, tzinfo=KOLKATA))
    assert not verdict.open
    assert verdict.holiday == "Republic Day"
    assert verdict.reason == "holiday: Republic Day"
    # The day after is an ordinary Wednesday.
    assert is_open(schedule, datetime(2027, 1, 27, 11, 0, tzinfo=KOLKATA))
    # Without the country calendar the same moment is open.
    assert is_open(weekdays_9_to_6(), datetime(2027, 1, 26, 11, 0, tzinfo=KOLKATA))


def test_the_holiday_is_the_local_date_not_the_utc_one() -> None:
    schedule = hours(timezone="Asia/Kolkata", country="IN")
    # 2027-01-25 19:00 UTC is already 26 January 00:30 in Kolkata.
    assert not is_open(schedule, datetime(2027, 1, 25, 19, 0, tzinfo=UTC))
    assert is_open(schedule, datetime(2027, 1, 25, 18, 0, tzinfo=UTC))  # 23:30 on the 25th


def test_a_subdivision_adds_its_own_holidays() -> None:
    # Karnataka Rajyotsava (1 November) is a Karnataka holiday, not a national one.
    day = date(2027, 11, 1)
    assert holiday_name(hours(timezone="Asia/Kolkata", country="IN"), day) is None
    name = holiday_name(hours(timezone="Asia/Kolkata", country="IN", subdivision="ka"), day)
    assert name is not None and "Karnataka" in name


def test_listed_holidays_close_the_whole_day_even_a_slot_from_the_evening_before() -> None:
    schedule = hours(
        timezone="UTC",
        slots=[{"days": "daily", "open": "20:00", "close": "04:00"}],
        holidays=["2027-12-25", {"date": "2027-12-31", "name": "Year end"}],
    )
    assert check(schedule, datetime(2027, 12, 25, 21, 0, tzinfo=UTC)).holiday == "holiday"
    assert not is_open(schedule, datetime(2027, 12, 25, 1, 0, tzinfo=UTC))  # from the 24th
    assert is_open(schedule, datetime(2027, 12, 24, 23, 0, tzinfo=UTC))
    assert check(schedule, datetime(2027, 12, 31, 22, 0, tzinfo=UTC)).holiday == "Year end"


def test_no_slots_means_open_except_on_holidays() -> None:
    schedule = hours(timezone="Asia/Kolkata", holidays=["2027-03-01"])
    assert is_open(schedule, datetime(2027, 2, 28, 3, 0, tzinfo=KOLKATA))
    assert not is_open(schedule, datetime(2027, 3, 1, 3, 0, tzinfo=KOLKATA))


def test_a_naive_moment_is_refused() -> None:
    with pytest.raises(ValueError, match="naive"):
        is_open(weekdays_9_to_6(), datetime(2027, 2, 3, 10, 0))


def test_day_lists_read_ranges_lists_and_aliases() -> None:
    assert parse_days("mon-fri") == frozenset(range(5))
    assert parse_days("fri-mon") == frozenset({4, 5, 6, 0})
    assert parse_days(["Saturday", "sun"]) == frozenset({5, 6})
    assert parse_days("sat, sun") == frozenset({5, 6})
    assert parse_days("daily") == frozenset(range(7))


@pytest.mark.parametrize(
    ("fields", "complaint"),
    [
        ({"timezone": "Mars/Olympus"}, "unknown timezone"),
        ({"timezone": "UTC", "slots": [slot("mon", "9", "18:00")]}, "HH:MM"),
        ({"timezone": "UTC", "slots": [slot("mon", "09:00", "24:30")]}, "00:00 to 24:00"),
        ({"timezone": "UTC", "slots": [slot("mon", "09:00", "09:00")]}, "opens and closes"),
        ({"timezone": "UTC", "slots": [slot("funday", "09:00", "10:00")]}, "unknown day"),
        ({"timezone": "UTC", "slots": [slot("", "09:00", "10:00")]}, "days is empty"),
        ({"timezone": "UTC", "country": "XX"}, "no holiday calendar"),
        ({"timezone": "UTC", "country": "IN", "subdivision": "ZZ"}, "no subdivision"),
        ({"timezone": "UTC", "subdivision": "KA"}, "needs a country"),
        ({"timezone": "UTC", "holidays": ["26/01/2027"]}, "date"),
        ({"timezone": "UTC", "open": "always"}, "Extra inputs"),
    ],
)  # fmt: skip
def test_bad_schedules_are_refused_saying_why(fields: dict[str, Any], complaint: str) -> None:
    with pytest.raises(ValidationError, match=complaint):
        OfficeHours.model_validate(fields)
