"""Working-time arithmetic: "24 working hours from now" on a business calendar with public holidays.

A calendar has working hours per weekday in its own time zone ({"mon": [["08:00", "17:00"]], …, "sun": []};
an end of "24:00" runs to midnight), public holidays from the `holidays` package by country and subdivision,
and extra closed dates. Time is counted only inside working intervals, which are turned into UTC instants per
local day, so daylight saving changes, weekends and holidays are all honoured. Without a calendar, working
time is plain wall-clock time.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from itertools import pairwise
from typing import Any

import holidays as holidays_lib

from engine.errors import ValidationError
from engine.hours import local_instant, parse_hhmm, zone
from engine.models import BusinessCalendar

WEEKDAY_KEYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
# A calendar with working hours has at least one working day a week; holidays cannot close a whole decade.
_MAX_DAYS = 3660


@lru_cache(maxsize=64)
def _public_holidays(country: str, subdivision: str | None) -> Any:
    try:
        return holidays_lib.country_holidays(country, subdiv=subdivision or None)
    except NotImplementedError as exc:
        raise ValidationError(
            f"no public holidays known for country {country!r}"
            + (f" subdivision {subdivision!r}" if subdivision else ""),
            field="holiday_country",
        ) from exc


@dataclass(frozen=True)
class WorkingCalendar:
    """A business calendar ready for arithmetic (built from a BusinessCalendar row or directly in tests)."""

    timezone: str
    # Per weekday (0 = Monday): ordered, non-overlapping ((h, m), (h, m)) intervals.
    hours: tuple[tuple[tuple[tuple[int, int], tuple[int, int]], ...], ...]
    holiday_country: str | None = None
    holiday_subdivision: str | None = None
    extra_holidays: frozenset[date] = field(default_factory=frozenset)

    @classmethod
    def build(
        cls,
        timezone: str,
        hours: dict[str, Any],
        holiday_country: str | None = None,
        holiday_subdivision: str | None = None,
        extra_holidays: Iterable[str | date] = (),
    ) -> WorkingCalendar:
        zone(timezone)  # validate early
        unknown = set(hours) - set(WEEKDAY_KEYS)
        if unknown:
            raise ValidationError(f"unknown weekday keys {sorted(unknown)}; use mon…sun", field="hours")
        per_day: list[tuple[tuple[tuple[int, int], tuple[int, int]], ...]] = []
        for key in WEEKDAY_KEYS:
            intervals = []
            for pair in hours.get(key) or []:
                if len(pair) != 2:
                    raise ValidationError(f"{key}: each interval is [start, end]", field="hours")
                start, end = parse_hhmm(str(pair[0])), parse_hhmm(str(pair[1]))
                if end <= start:
                    raise ValidationError(
                        f"{key}: interval {pair[0]}–{pair[1]} ends before it starts", field="hours"
                    )
                intervals.append((start, end))
            intervals.sort()
            for (_s1, e1), (s2, _e2) in pairwise(intervals):
                if s2 < e1:
                    raise ValidationError(f"{key}: working intervals overlap", field="hours")
            per_day.append(tuple(intervals))
        extra = frozenset(d if isinstance(d, date) else date.fromisoformat(str(d)) for d in extra_holidays)
        if holiday_country:
            _public_holidays(holiday_country, holiday_subdivision)  # validate early
        return cls(
            timezone=timezone,
            hours=tuple(per_day),
            holiday_country=holiday_country or None,
            holiday_subdivision=holiday_subdivision or None,
            extra_holidays=extra,
        )

    @classmethod
    def from_model(cls, row: BusinessCalendar) -> WorkingCalendar:
        return cls.build(
            row.timezone,
            dict(row.hours or {}),
            row.holiday_country,
            row.holiday_subdivision,
            [str(d) for d in row.extra_holidays or []],
        )

    def is_holiday(self, day: date) -> bool:
        if day in self.extra_holidays:
            return True
        if self.holiday_country:
            return day in _public_holidays(self.holiday_country, self.holiday_subdivision)
        return False

    def intervals_on(self, day: date) -> list[tuple[datetime, datetime]]:
        """The working intervals of a local day as UTC instants (none on a holiday)."""
        spans = self.hours[day.weekday()]
        if not spans or self.is_holiday(day):
            return []
        result = []
        for start, end in spans:
            opens = local_instant(day, start, self.timezone)
            closes = local_instant(day, end, self.timezone)
            if closes > opens:
                result.append((opens, closes))
        return result

    def has_working_hours(self) -> bool:
        return any(self.hours)


CalendarLike = WorkingCalendar | BusinessCalendar | None


def as_working_calendar(calendar: CalendarLike) -> WorkingCalendar | None:
    if calendar is None or isinstance(calendar, WorkingCalendar):
        return calendar
    return WorkingCalendar.from_model(calendar)


def _intervals_from(start: datetime, cal: WorkingCalendar) -> Iterator[tuple[datetime, datetime]]:
    """Working intervals (clipped to start at `start`) in time order, from `start`'s local day onwards."""
    if not cal.has_working_hours():
        raise ValidationError("the business calendar has no working hours", field="hours")
    day = start.astimezone(zone(cal.timezone)).date() - timedelta(days=1)
    for _ in range(_MAX_DAYS):
        for opens, closes in cal.intervals_on(day):
            if closes <= start:
                continue
            yield max(opens, start), closes
        day += timedelta(days=1)
    raise ValidationError("the business calendar has no working time in ten years", field="hours")


def add_working_time(start: datetime, seconds: float, calendar: CalendarLike) -> datetime:
    """The instant `seconds` of working time after `start` (UTC). Without a calendar: wall-clock time."""
    if start.tzinfo is None:
        raise ValueError("naive datetime; the engine works in timezone-aware UTC")
    start = start.astimezone(UTC)
    cal = as_working_calendar(calendar)
    if cal is None:
        return start + timedelta(seconds=seconds)
    if seconds < 0:
        raise ValueError("working time cannot be negative")
    if seconds == 0:
        return start
    remaining = timedelta(seconds=seconds)
    for opens, closes in _intervals_from(start, cal):
        span = closes - opens
        if remaining <= span:
            return opens + remaining
        remaining -= span
    raise AssertionError("unreachable")  # pragma: no cover - _intervals_from raises first


def working_seconds_between(a: datetime, b: datetime, calendar: CalendarLike) -> float:
    """Working seconds from `a` to `b` (negative when `b` is earlier). Without a calendar: wall-clock."""
    if a.tzinfo is None or b.tzinfo is None:
        raise ValueError("naive datetime; the engine works in timezone-aware UTC")
    cal = as_working_calendar(calendar)
    if cal is None:
        return (b - a).total_seconds()
    if b < a:
        return -working_seconds_between(b, a, cal)
    total = timedelta(0)
    for opens, closes in _intervals_from(a.astimezone(UTC), cal):
        if opens >= b:
            break
        total += min(closes, b) - opens
    return total.total_seconds()


def next_working_instant(at: datetime, calendar: CalendarLike) -> datetime:
    """`at` when it is working time, else the start of the next working interval."""
    cal = as_working_calendar(calendar)
    if cal is None:
        return at.astimezone(UTC)
    for opens, _closes in _intervals_from(at.astimezone(UTC), cal):
        return opens
    raise AssertionError("unreachable")  # pragma: no cover
