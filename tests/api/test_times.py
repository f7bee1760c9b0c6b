"""Moments the API reads: schedules and log filters."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from voiceplane.api.times import legacy, parse_moment, parse_schedule

NOON = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "moment"),
    [
        ("2026-01-05T12:00:00Z", NOON),
        ("2026-01-05T17:30:00+05:30", NOON),
        ("2026-01-05 12:00", NOON),  # no offset: UTC
        ("2026/01/05 12:00:00", NOON),
        (str(int(NOON.timestamp())), NOON),
        ("2026-01-05", NOON.replace(hour=0)),
    ],
)
def test_moments(text: str, moment: datetime) -> None:
    assert parse_moment(text) == moment


def test_a_date_as_an_end_means_the_end_of_that_day() -> None:
    assert parse_moment("2026/01/05", end_of_day=True) == datetime(2026, 1, 6, tzinfo=UTC)
    assert parse_moment("2026-01-05T10:00", end_of_day=True) == NOON.replace(hour=10)


@pytest.mark.parametrize("text", ["tomorrow", "05/01/2026", "2026-13-01", ""])
def test_not_moments(text: str) -> None:
    with pytest.raises(ValueError, match="not a time"):
        parse_moment(text)


def test_a_schedule_is_in_the_future_and_at_most_30_days_ahead() -> None:
    assert parse_schedule("2026-01-05T12:00:01Z", now=NOON) == NOON + timedelta(seconds=1)
    assert parse_schedule("2026-02-04T12:00:00Z", now=NOON) == NOON + timedelta(days=30)
    with pytest.raises(ValueError, match="not in the future"):
        parse_schedule("2026-01-05T12:00:00Z", now=NOON)
    with pytest.raises(ValueError, match="more than 30 days"):
        parse_schedule("2026-02-04T12:00:01Z", now=NOON)


def test_legacy_times() -> None:
    assert legacy(NOON) == "2026-01-05 12:00:00"
    assert legacy(None) is None
