"""Business hours and quiet hours are evaluated in their own time zone, across weekends and DST changes."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from engine.errors import ValidationError
from engine.hours import in_business_hours, local_instant, next_business_open, quiet_hours_end

WEEKDAYS = [0, 1, 2, 3, 4]


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def test_inside_business_hours_returns_the_same_instant() -> None:
    at = utc(2026, 3, 2, 8, 0)  # Monday 10:00 in Johannesburg
    assert in_business_hours(at, WEEKDAYS, "08:00", "17:00", "Africa/Johannesburg")
    assert next_business_open(at, WEEKDAYS, "08:00", "17:00", "Africa/Johannesburg") == at


def test_friday_evening_waits_for_monday_morning_local_time() -> None:
    at = utc(2026, 3, 6, 16, 0)  # Friday 18:00 SAST
    assert not in_business_hours(at, WEEKDAYS, "08:00", "17:00", "Africa/Johannesburg")
    assert next_business_open(at, WEEKDAYS, "08:00", "17:00", "Africa/Johannesburg") == utc(2026, 3, 9, 6, 0)


def test_closing_time_is_outside_and_opening_time_is_inside() -> None:
    tz = "Africa/Johannesburg"
    assert in_business_hours(utc(2026, 3, 2, 6, 0), WEEKDAYS, "08:00", "17:00", tz)
    assert not in_business_hours(utc(2026, 3, 2, 15, 0), WEEKDAYS, "08:00", "17:00", tz)


def test_weekend_wait_across_spring_dst_change_opens_at_local_eight() -> None:
    # Europe/Berlin moves to CEST on Sunday 2026-03-29: Friday 08:00 is 07:00 UTC, Monday 08:00 is 06:00 UTC.
    at = utc(2026, 3, 27, 18, 0)
    assert next_business_open(at, WEEKDAYS, "08:00", "17:00", "Europe/Berlin") == utc(2026, 3, 30, 6, 0)


def test_weekend_wait_across_autumn_dst_change_opens_at_local_eight() -> None:
    at = utc(2026, 10, 23, 17, 0)  # Friday 19:00 CEST; Monday is CET
    assert next_business_open(at, WEEKDAYS, "08:00", "17:00", "Europe/Berlin") == utc(2026, 10, 26, 7, 0)


def test_night_window_crossing_midnight_belongs_to_the_day_it_opens() -> None:
    tz = "Africa/Johannesburg"
    # Monday 22:00 - Tuesday 06:00 only (opening day Monday).
    assert in_business_hours(utc(2026, 3, 3, 2, 0), [0], "22:00", "06:00", tz)  # Tue 04:00 local
    assert not in_business_hours(utc(2026, 3, 4, 2, 0), [0], "22:00", "06:00", tz)  # Wed 04:00 local
    assert next_business_open(utc(2026, 3, 3, 5, 0), [0], "22:00", "06:00", tz) == utc(2026, 3, 9, 20, 0)


def test_no_business_days_is_a_validation_error() -> None:
    with pytest.raises(ValidationError):
        next_business_open(utc(2026, 3, 2, 8, 0), [], "08:00", "17:00", "UTC")


def test_unknown_time_zone_is_a_validation_error() -> None:
    with pytest.raises(ValidationError, match="time zone"):
        in_business_hours(utc(2026, 3, 2, 8, 0), WEEKDAYS, "08:00", "17:00", "Mars/Olympus")


def test_quiet_hours_crossing_midnight_end_next_morning_local() -> None:
    tz = "Africa/Johannesburg"
    assert quiet_hours_end(utc(2026, 3, 2, 21, 0), "22:00", "06:00", tz) == utc(2026, 3, 3, 4, 0)  # 23:00
    assert quiet_hours_end(utc(2026, 3, 3, 1, 0), "22:00", "06:00", tz) == utc(2026, 3, 3, 4, 0)  # 03:00
    assert quiet_hours_end(utc(2026, 3, 3, 4, 0), "22:00", "06:00", tz) is None  # 06:00 exactly
    assert quiet_hours_end(utc(2026, 3, 3, 12, 0), "22:00", "06:00", tz) is None


def test_no_quiet_hours_when_unset_or_empty() -> None:
    at = utc(2026, 3, 2, 23, 0)
    assert quiet_hours_end(at, None, "06:00", "UTC") is None
    assert quiet_hours_end(at, "22:00", None, "UTC") is None
    assert quiet_hours_end(at, "22:00", "22:00", "UTC") is None


def test_quiet_hours_same_day_window() -> None:
    assert quiet_hours_end(utc(2026, 3, 2, 12, 30), "12:00", "13:00", "UTC") == utc(2026, 3, 2, 13, 0)
    assert quiet_hours_end(utc(2026, 3, 2, 11, 59), "12:00", "13:00", "UTC") is None


def test_quiet_hours_end_in_the_spring_gap_resolves_forward() -> None:
    # Berlin 2026-03-29: clocks jump from 02:00 CET to 03:00 CEST at 01:00 UTC; 02:30 does not exist.
    at = utc(2026, 3, 29, 0, 15)  # 01:15 CET
    assert quiet_hours_end(at, "22:00", "02:30", "Europe/Berlin") == utc(2026, 3, 29, 1, 0)


def test_quiet_hours_across_autumn_night_last_one_hour_longer() -> None:
    # Berlin 2026-10-25: 22:00 CEST (20:00 UTC) to 06:00 CET (05:00 UTC) is nine real hours.
    assert quiet_hours_end(utc(2026, 10, 24, 21, 0), "22:00", "06:00", "Europe/Berlin") == utc(
        2026, 10, 25, 5, 0
    )


def test_local_instant_in_the_autumn_fold_is_the_first_occurrence() -> None:
    from datetime import date

    assert local_instant(date(2026, 10, 25), "02:30", "Europe/Berlin") == utc(2026, 10, 25, 0, 30)


def test_naive_input_is_refused() -> None:
    with pytest.raises(ValueError, match="naive"):
        in_business_hours(datetime(2026, 3, 2, 8, 0), WEEKDAYS, "08:00", "17:00", "UTC")
