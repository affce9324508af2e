"""Local-time windows: business hours and quiet hours, evaluated in their own IANA time zone.

Everything here is a pure function: aware datetimes in (any zone), aware UTC out. A window is a start and an
end wall-clock time ("HH:MM", end may be "24:00") on given days; an end at or before the start means the window
runs past midnight into the next day (22:00–06:00), and start == end means the whole day. Wall times are turned
into instants with `local_instant`, which is where daylight saving time is handled: a wall time that does not
exist (the hour skipped in spring) resolves forward to the first instant after the gap, and a wall time that
happens twice (the hour repeated in autumn) means its first occurrence.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from engine.errors import ValidationError

# Far enough to cross any weekend, holiday-free week or DST change; windows repeat weekly.
_SEARCH_DAYS = 8


@lru_cache(maxsize=256)
def zone(name: str) -> ZoneInfo:
    """A ZoneInfo by IANA name; a ValidationError (not a KeyError deep in a pass) for an unknown one."""
    try:
        return ZoneInfo(name)
    except (KeyError, ValueError) as exc:
        raise ValidationError(f"unknown time zone {name!r}", field="timezone") from exc


@lru_cache(maxsize=1024)
def parse_hhmm(value: str) -> tuple[int, int]:
    """ "08:30" -> (8, 30); "24:00" is allowed as the end of a day."""
    try:
        hh, mm = value.strip().split(":")
        hour, minute = int(hh), int(mm)
    except (AttributeError, ValueError) as exc:
        raise ValidationError(f"not a time of day (HH:MM): {value!r}") from exc
    if not (0 <= minute < 60 and (0 <= hour < 24 or (hour == 24 and minute == 0))):
        raise ValidationError(f"not a time of day (HH:MM): {value!r}")
    return hour, minute


def _require_aware(at: datetime) -> None:
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError("naive datetime; the engine works in timezone-aware UTC")


def local_instant(day: date, hhmm: str | tuple[int, int], tz: str | ZoneInfo) -> datetime:
    """The UTC instant at which the wall clock in `tz` shows `hhmm` on `day`.

    "24:00" is midnight at the end of `day`. A nonexistent wall time (spring-forward gap) resolves forward to
    the transition instant, the first moment the clock shows a time at or after it. An ambiguous wall time
    (autumn fold) is its first occurrence.
    """
    zi = tz if isinstance(tz, ZoneInfo) else zone(tz)
    hour, minute = parse_hhmm(hhmm) if isinstance(hhmm, str) else hhmm
    if hour == 24:
        day, hour = day + timedelta(days=1), 0
    wall = datetime.combine(day, time(hour, minute))
    first = wall.replace(tzinfo=zi, fold=0)
    utc0 = first.astimezone(UTC)
    if utc0.astimezone(zi).replace(tzinfo=None) == wall:
        return utc0
    # In a gap: fold=0 maps with the old offset (an instant after the transition), fold=1 with the new one
    # (an instant before it). The transition lies between; find it to the second.
    lo = wall.replace(tzinfo=zi, fold=1).astimezone(UTC)
    hi = utc0
    if lo > hi:
        lo, hi = hi, lo
    old_offset = lo.astimezone(zi).utcoffset()
    while hi - lo > timedelta(seconds=1):
        mid = lo + (hi - lo) / 2
        mid = mid.replace(microsecond=0)
        if mid <= lo:
            break
        if mid.astimezone(zi).utcoffset() == old_offset:
            lo = mid
        else:
            hi = mid
    return hi


def _window_for_day(
    day: date, start: tuple[int, int], end: tuple[int, int], zi: ZoneInfo
) -> tuple[datetime, datetime]:
    opens = local_instant(day, start, zi)
    if end <= start and end != (24, 0):
        closes = local_instant(day + timedelta(days=1), end, zi)
    else:
        closes = local_instant(day, end, zi)
    return opens, closes


def _windows(
    around: datetime, days: Iterable[int] | None, start: str, end: str, zi: ZoneInfo, *, back: int, ahead: int
) -> Iterator[tuple[datetime, datetime]]:
    """Windows whose opening day lies from `back` days before to `ahead` days after `around`'s local date."""
    day_set = set(range(7)) if days is None else set(days)
    start_t, end_t = parse_hhmm(start), parse_hhmm(end)
    today = around.astimezone(zi).date()
    for offset in range(-back, ahead + 1):
        day = today + timedelta(days=offset)
        if day.weekday() in day_set:
            yield _window_for_day(day, start_t, end_t, zi)


def window_containing(
    at: datetime, days: Iterable[int] | None, start: str, end: str, tz: str
) -> tuple[datetime, datetime] | None:
    """The (open, close) window `at` lies in, or None. `days` None means every day."""
    _require_aware(at)
    zi = zone(tz)
    for opens, closes in _windows(at, days, start, end, zi, back=1, ahead=0):
        if opens <= at < closes:
            return opens, closes
    return None


def in_business_hours(at: datetime, days: list[int], start: str, end: str, tz: str) -> bool:
    """True when `at` lies in the window on one of `days` (0 = Monday), evaluated in `tz`."""
    return window_containing(at, days, start, end, tz) is not None


def next_business_open(at: datetime, days: list[int], start: str, end: str, tz: str) -> datetime:
    """`at` (as UTC) when inside business hours, else the next instant they open."""
    _require_aware(at)
    at_utc = at.astimezone(UTC)
    if not days:
        raise ValidationError("business hours need at least one day", field="business_days")
    if window_containing(at_utc, days, start, end, tz) is not None:
        return at_utc
    zi = zone(tz)
    openings = [
        o
        for o, c in _windows(at_utc, days, start, end, zi, back=0, ahead=_SEARCH_DAYS)
        if o >= at_utc and c > o
    ]
    if not openings:
        raise ValidationError("business hours never open", field="business_hours")
    return min(openings)


def business_close(at: datetime, days: list[int], start: str, end: str, tz: str) -> datetime | None:
    """When the business-hours window `at` lies in closes; None outside business hours."""
    window = window_containing(at, days, start, end, tz)
    return window[1] if window else None


def quiet_hours_end(at: datetime, quiet_start: str | None, quiet_end: str | None, tz: str) -> datetime | None:
    """The UTC instant quiet hours end when `at` falls inside them, else None.

    Quiet hours apply every day; a window may cross midnight (22:00–06:00). No start or end, or start == end,
    means no quiet hours.
    """
    _require_aware(at)
    if not quiet_start or not quiet_end or parse_hhmm(quiet_start) == parse_hhmm(quiet_end):
        return None
    window = window_containing(at.astimezone(UTC), None, quiet_start, quiet_end, tz)
    return window[1] if window else None


def in_quiet_hours(at: datetime, quiet_start: str | None, quiet_end: str | None, tz: str) -> bool:
    return quiet_hours_end(at, quiet_start, quiet_end, tz) is not None
