"""Who is on call: rotations counted in the schedule's local wall time, overrides on top.

A rotation's shift k starts when the local wall clock shows `start_date handoff_time + k × shift_hours` and
ends when shift k+1 starts; member k mod n holds it. Counting in wall time (not in elapsed hours) is what a
roster means: a daily 08:00 hand-off stays at 08:00 local across daylight saving time, so the shift that
contains the change lasts 23 or 25 hours; a 24-hour shift is one local day and a 168-hour shift one local
week; a 12-hour shift hands off at 08:00 and 20:00 local. Wall times are turned into instants by
`engine.hours.local_instant` (a hand-off inside the spring-forward gap happens at the transition; one in the
repeated autumn hour happens at its first occurrence).

A schedule's active overrides win over its rotations; otherwise the rotation layer with the lowest position
that has someone on call does.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from engine.errors import NotFound, ValidationError
from engine.hours import local_instant, parse_hhmm, zone
from engine.models import Rotation, Schedule

# How far ahead upcoming_shifts looks for the next change before giving up (nobody on call).
_HORIZON = timedelta(days=400)


@dataclass(frozen=True)
class Shift:
    person_id: int
    start: datetime
    end: datetime
    source: str  # "override" or "rotation:<name>"


@dataclass(frozen=True)
class RotationShift:
    index: int  # k: 0 is the first shift of the rotation
    person_id: int
    start: datetime
    end: datetime


def _parse_date(value: str) -> date:
    try:
        return date.fromisoformat(value.strip())
    except (AttributeError, ValueError) as exc:
        raise ValidationError(f"not an ISO date: {value!r}", field="start_date") from exc


def _boundary(start_wall: datetime, shift: timedelta, k: int, tz: str) -> datetime:
    wall = start_wall + k * shift
    return local_instant(wall.date(), (wall.hour, wall.minute), tz)


def rotation_shift_at(
    start_date: str, handoff_time: str, shift_hours: int, member_ids: list[int], tz: str, at: datetime
) -> RotationShift | None:
    """The rotation shift in force at `at`, or None (no members, or the rotation has not started yet)."""
    if not member_ids:
        return None
    if shift_hours <= 0:
        raise ValidationError("a shift lasts at least one hour", field="shift_hours")
    if at.tzinfo is None:
        raise ValueError("naive datetime; the engine works in timezone-aware UTC")
    at = at.astimezone(UTC)
    zi = zone(tz)
    hour, minute = parse_hhmm(handoff_time)
    start_wall = datetime.combine(_parse_date(start_date), datetime.min.time()).replace(
        hour=hour % 24, minute=minute
    )
    if hour == 24:
        start_wall += timedelta(days=1)
    shift = timedelta(hours=shift_hours)
    if at < _boundary(start_wall, shift, 0, tz):
        return None
    # Estimate k from the wall clock, then correct it against the real instants (DST moves them by an hour).
    local_wall = at.astimezone(zi).replace(tzinfo=None)
    k = max(0, int((local_wall - start_wall) / shift))
    while k > 0 and _boundary(start_wall, shift, k, tz) > at:
        k -= 1
    while _boundary(start_wall, shift, k + 1, tz) <= at:
        k += 1
    return RotationShift(
        index=k,
        person_id=member_ids[k % len(member_ids)],
        start=_boundary(start_wall, shift, k, tz),
        end=_boundary(start_wall, shift, k + 1, tz),
    )


def rotation_person_at(
    start_date: str, handoff_time: str, shift_hours: int, member_ids: list[int], tz: str, at: datetime
) -> int | None:
    """The member on call at `at`; None when the rotation has no members or starts later."""
    found = rotation_shift_at(start_date, handoff_time, shift_hours, member_ids, tz, at)
    return found.person_id if found else None


def _first_start(rotation: Rotation, tz: str) -> datetime:
    hour, minute = parse_hhmm(rotation.handoff_time)
    return local_instant(_parse_date(rotation.start_date), (hour, minute), tz)


def _load_schedule(session: Session, schedule_id: int) -> Schedule:
    schedule = session.scalars(
        select(Schedule)
        .where(Schedule.id == schedule_id)
        .options(
            selectinload(Schedule.rotations).selectinload(Rotation.members),
            selectinload(Schedule.overrides),
        )
    ).one_or_none()
    if schedule is None:
        raise NotFound(f"no on-call schedule with id {schedule_id}")
    return schedule


def _members(rotation: Rotation) -> list[int]:
    return [m.person_id for m in sorted(rotation.members, key=lambda m: (m.position, m.id))]


def _state_at(schedule: Schedule, at: datetime) -> tuple[tuple[int, ...], str]:
    """(people on call, source) at `at`; ((), "") when nobody is."""
    active = [o for o in schedule.overrides if o.start_at <= at < o.end_at]
    if active:
        people: list[int] = []
        for o in sorted(active, key=lambda o: (o.start_at, o.id)):
            if o.person_id not in people:
                people.append(o.person_id)
        return tuple(people), "override"
    for rotation in sorted(schedule.rotations, key=lambda r: (r.position, r.id)):
        person = rotation_person_at(
            rotation.start_date,
            rotation.handoff_time,
            rotation.shift_hours,
            _members(rotation),
            schedule.timezone,
            at,
        )
        if person is not None:
            return (person,), f"rotation:{rotation.name}"
    return (), ""


def _next_change(schedule: Schedule, at: datetime) -> datetime | None:
    """The earliest instant after `at` at which an override or rotation boundary may change who is on call."""
    candidates: list[datetime] = []
    for o in schedule.overrides:
        for t in (o.start_at, o.end_at):
            if t > at:
                candidates.append(t)
    for rotation in schedule.rotations:
        members = _members(rotation)
        if not members:
            continue
        found = rotation_shift_at(
            rotation.start_date, rotation.handoff_time, rotation.shift_hours, members, schedule.timezone, at
        )
        candidates.append(found.end if found else _first_start(rotation, schedule.timezone))
    later = [c for c in candidates if c > at]
    return min(later) if later else None


def on_call_at(session: Session, schedule_id: int, at: datetime) -> list[int]:
    """Person ids on call for the schedule at `at`: active overrides, else the first layer with someone."""
    schedule = _load_schedule(session, schedule_id)
    people, _source = _state_at(schedule, at.astimezone(UTC))
    return list(people)


def upcoming_shifts(session: Session, schedule_id: int, at: datetime, count: int) -> list[Shift]:
    """The shift in force at `at` (with its real start) and the ones after it, `count` in all.

    Overrides cut into rotation shifts, so a rotation shift interrupted by an override shows as two pieces.
    Several people overriding at once give one Shift each.
    """
    schedule = _load_schedule(session, schedule_id)
    return shifts_between(schedule, at.astimezone(UTC), count)


def shifts_between(schedule: Schedule, at: datetime, count: int) -> list[Shift]:
    if count <= 0:
        return []
    # Start early enough that the current shift shows its real start.
    lookback = max([r.shift_hours for r in schedule.rotations] + [24])
    begin = at - timedelta(hours=lookback + 24)
    for o in schedule.overrides:
        if o.start_at <= at < o.end_at:
            begin = min(begin, o.start_at)
    horizon = at + _HORIZON
    segments: list[tuple[tuple[int, ...], str, datetime, datetime]] = []
    t = begin
    while t < horizon:
        people, source = _state_at(schedule, t)
        nxt = _next_change(schedule, t) or horizon
        if segments and segments[-1][0] == people and segments[-1][1] == source and segments[-1][3] == t:
            segments[-1] = (people, source, segments[-1][2], nxt)
        else:
            segments.append((people, source, t, nxt))
        t = nxt
        shown = [s for s in segments if s[0] and s[3] > at]
        if len(shown) > count:  # the last one may still grow; one more proves it ended
            break
    if segments and segments[0][2] == begin and segments[0][0]:
        # The first piece began before the look-back (one person covering many shifts): show when the shift
        # or override in force at the look-back began, not the look-back itself.
        people, source, _start, end = segments[0]
        segments[0] = (people, source, _real_start(schedule, begin, source), end)
    result: list[Shift] = []
    for people, source, start, end in segments:
        if not people or end <= at:
            continue
        for person in people:
            result.append(Shift(person_id=person, start=start, end=end, source=source))
    return result[:count]


def _real_start(schedule: Schedule, at: datetime, source: str) -> datetime:
    if source == "override":
        return min(o.start_at for o in schedule.overrides if o.start_at <= at < o.end_at)
    for rotation in schedule.rotations:
        if f"rotation:{rotation.name}" == source:
            found = rotation_shift_at(
                rotation.start_date,
                rotation.handoff_time,
                rotation.shift_hours,
                _members(rotation),
                schedule.timezone,
                at,
            )
            if found is not None:
                return found.start
    return at


def describe(shift: Shift) -> dict[str, Any]:
    """A JSON-ready form of a shift for the CLI and HTTP API."""
    return {
        "person_id": shift.person_id,
        "start": shift.start.isoformat(),
        "end": shift.end.isoformat(),
        "source": shift.source,
    }


def on_call_now(session: Session, now: datetime) -> list[dict[str, Any]]:
    """For each schedule: who is on call now and until when, who comes next and from when, and the teams whose
    on-call schedule it is (the board's "On call" strip, per team). Names, not ids: this is what an operator
    reads. Schedules of teams come first, in team order; schedules no team names follow."""
    from engine.models import Person, Team  # the models module imports nothing from this one, keep it so

    names = dict(session.execute(select(Person.id, Person.name)).tuples().all())
    teams: dict[int, list[str]] = {}
    for schedule_id, team_name in session.execute(
        select(Team.schedule_id, Team.name).where(Team.schedule_id.is_not(None)).order_by(Team.name)
    ).tuples():
        if schedule_id is not None:
            teams.setdefault(schedule_id, []).append(team_name)
    out: list[dict[str, Any]] = []
    for schedule_id, handle, title in session.execute(
        select(Schedule.id, Schedule.handle, Schedule.name).order_by(Schedule.name)
    ).tuples():
        shifts = upcoming_shifts(session, schedule_id, now, 8)
        current = [s for s in shifts if s.start <= now < s.end]
        later = [s for s in shifts if s.start > now]
        following = [s for s in later if s.start == later[0].start] if later else []
        out.append(
            {
                "schedule": handle,
                "name": title,
                "now": [names.get(s.person_id, f"#{s.person_id}") for s in current],
                "until": min((s.end for s in current), default=None),
                "next": [names.get(s.person_id, f"#{s.person_id}") for s in following],
                "next_from": following[0].start if following else None,
                "teams": teams.get(schedule_id, []),
            }
        )
    out.sort(key=lambda e: (not e["teams"], e["teams"][:1], e["name"]))
    return out
