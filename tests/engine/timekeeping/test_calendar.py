"""Working time skips nights, weekends and public holidays, in the calendar's own time zone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from engine.calendar import WorkingCalendar, add_working_time, working_seconds_between
from engine.errors import ValidationError

OFFICE = {d: [["08:00", "17:00"]] for d in ("mon", "tue", "wed", "thu", "fri")}
HOUR = 3600


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def za() -> WorkingCalendar:
    return WorkingCalendar.build("Africa/Johannesburg", OFFICE, holiday_country="ZA")


def test_without_a_calendar_working_time_is_wall_clock() -> None:
    start = utc(2026, 3, 6, 16)
    assert add_working_time(start, 24 * HOUR, None) == start + timedelta(hours=24)
    assert working_seconds_between(start, start + timedelta(hours=5), None) == 5 * HOUR


def test_working_time_runs_over_the_weekend_to_monday() -> None:
    # Friday 15:00 SAST (13:00 UTC) + 4 working hours: 2 on Friday, 2 on Monday -> Monday 10:00 SAST.
    assert add_working_time(utc(2026, 3, 6, 13), 4 * HOUR, za()) == utc(2026, 3, 9, 8)


def test_start_outside_hours_counts_from_next_opening() -> None:
    # Saturday noon + 1 working hour -> Monday 09:00 SAST.
    assert add_working_time(utc(2026, 3, 7, 10), HOUR, za()) == utc(2026, 3, 9, 7)


def test_public_holiday_is_skipped() -> None:
    # Good Friday 2026-04-03 and Family Day Monday 2026-04-06 are South African public holidays.
    thursday_16 = utc(2026, 4, 2, 14)  # 16:00 SAST
    assert add_working_time(thursday_16, 2 * HOUR, za()) == utc(2026, 4, 7, 7)  # Tuesday 09:00 SAST
    assert working_seconds_between(thursday_16, utc(2026, 4, 7, 7), za()) == 2 * HOUR


def test_extra_closed_dates_are_skipped() -> None:
    cal = WorkingCalendar.build("Africa/Johannesburg", OFFICE, extra_holidays=["2026-03-09"])
    assert add_working_time(utc(2026, 3, 6, 14), 2 * HOUR, cal) == utc(2026, 3, 10, 7)


def test_subdivision_holidays_apply() -> None:
    # Epiphany (6 January) is a holiday in Bavaria but not in Berlin.
    hours = {"tue": [["09:00", "17:00"]], "wed": [["09:00", "17:00"]]}
    by = WorkingCalendar.build("Europe/Berlin", hours, holiday_country="DE", holiday_subdivision="BY")
    be = WorkingCalendar.build("Europe/Berlin", hours, holiday_country="DE", holiday_subdivision="BE")
    tuesday_9 = utc(2026, 1, 6, 8)
    assert add_working_time(tuesday_9, HOUR, be) == utc(2026, 1, 6, 9)
    assert add_working_time(tuesday_9, HOUR, by) == utc(2026, 1, 7, 9)


def test_working_hours_follow_local_time_across_dst() -> None:
    cal = WorkingCalendar.build("Europe/Berlin", OFFICE)
    # Friday 16:00 CET + 2 working hours: 1 on Friday, 1 on Monday after the change -> 09:00 CEST = 07:00 UTC.
    assert add_working_time(utc(2026, 3, 27, 15), 2 * HOUR, cal) == utc(2026, 3, 30, 7)


def test_working_seconds_between_is_negative_backwards() -> None:
    assert working_seconds_between(utc(2026, 3, 9, 8), utc(2026, 3, 6, 13), za()) == -4 * HOUR


def test_split_day_intervals() -> None:
    cal = WorkingCalendar.build("UTC", {"mon": [["08:00", "12:00"], ["13:00", "17:00"]]})
    assert add_working_time(utc(2026, 3, 2, 11), 2 * HOUR, cal) == utc(2026, 3, 2, 14)


def test_calendar_without_hours_is_refused() -> None:
    with pytest.raises(ValidationError):
        add_working_time(utc(2026, 3, 2), HOUR, WorkingCalendar.build("UTC", {}))


def test_bad_interval_is_refused() -> None:
    with pytest.raises(ValidationError, match="ends before"):
        WorkingCalendar.build("UTC", {"mon": [["17:00", "08:00"]]})
