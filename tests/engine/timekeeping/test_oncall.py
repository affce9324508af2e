"""On-call rotations hand off at local wall time (DST included); overrides win; layers fall through."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy.orm import Session, sessionmaker

from engine.models import Person, Rotation, RotationMember, Schedule, ScheduleOverride
from engine.oncall import Shift, on_call_at, rotation_person_at, rotation_shift_at, upcoming_shifts


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def test_midnight_handoff_in_johannesburg_happens_at_local_midnight() -> None:
    # Midnight SAST is 22:00 UTC the day before.
    args = ("2026-03-02", "00:00", 24, [1, 2, 3], "Africa/Johannesburg")
    assert rotation_person_at(*args, utc(2026, 3, 1, 21, 59)) is None  # before the rotation starts
    assert rotation_person_at(*args, utc(2026, 3, 1, 22, 0)) == 1
    assert rotation_person_at(*args, utc(2026, 3, 2, 21, 59)) == 1
    assert rotation_person_at(*args, utc(2026, 3, 2, 22, 0)) == 2
    assert rotation_person_at(*args, utc(2026, 3, 4, 22, 0)) == 1  # wraps round


def test_midnight_handoff_in_berlin_across_spring_dst() -> None:
    args = ("2026-03-27", "00:00", 24, [1, 2], "Europe/Berlin")
    # Sunday 29 March starts at 23:00 UTC on the 28th (CET); Monday 30 March at 22:00 UTC (CEST).
    assert rotation_person_at(*args, utc(2026, 3, 28, 22, 59)) == 2
    assert rotation_person_at(*args, utc(2026, 3, 28, 23, 0)) == 1
    assert rotation_person_at(*args, utc(2026, 3, 29, 21, 59)) == 1
    assert rotation_person_at(*args, utc(2026, 3, 29, 22, 0)) == 2
    shift = rotation_shift_at(*args, utc(2026, 3, 29, 12, 0))
    assert shift is not None and shift.end - shift.start == timedelta(hours=23)


def test_daily_eight_oclock_handoff_stays_at_eight_local_across_autumn_dst() -> None:
    args = ("2026-10-20", "08:00", 24, [10, 20, 30], "Europe/Berlin")
    # 24 Oct: 08:00 CEST = 06:00 UTC; 26 Oct: 08:00 CET = 07:00 UTC.
    before = rotation_shift_at(*args, utc(2026, 10, 24, 6, 0))
    assert before is not None and before.start == utc(2026, 10, 24, 6, 0)
    shift = rotation_shift_at(*args, utc(2026, 10, 25, 12, 0))
    assert shift is not None
    assert shift.start == utc(2026, 10, 25, 7, 0)
    assert shift.end == utc(2026, 10, 26, 7, 0)
    fold_day = rotation_shift_at(*args, utc(2026, 10, 25, 6, 30))  # still the 24th's shift: 25 hours long
    assert fold_day is not None and fold_day.end - fold_day.start == timedelta(hours=25)
    assert rotation_person_at(*args, utc(2026, 10, 26, 6, 59)) == shift.person_id


def test_twelve_hour_shifts_hand_off_at_eight_and_twenty_local() -> None:
    args = ("2026-03-28", "08:00", 12, [1, 2], "Europe/Berlin")
    assert rotation_person_at(*args, utc(2026, 3, 28, 7, 0)) == 1  # 08:00 CET
    assert rotation_person_at(*args, utc(2026, 3, 28, 19, 0)) == 2  # 20:00 CET
    assert rotation_person_at(*args, utc(2026, 3, 29, 5, 59)) == 2  # 07:59 CEST
    assert rotation_person_at(*args, utc(2026, 3, 29, 6, 0)) == 1  # 08:00 CEST


def test_weekly_rotation_counts_local_weeks() -> None:
    args = ("2026-03-02", "09:00", 168, [7, 8], "Europe/Berlin")
    assert rotation_person_at(*args, utc(2026, 3, 9, 7, 59)) == 7
    assert rotation_person_at(*args, utc(2026, 3, 9, 8, 0)) == 8
    # The week containing the spring change: 09:00 CEST on 30 March is 07:00 UTC.
    assert rotation_person_at(*args, utc(2026, 3, 30, 6, 59)) == 8
    assert rotation_person_at(*args, utc(2026, 3, 30, 7, 0)) == 7


def test_empty_rotation_has_nobody() -> None:
    assert rotation_person_at("2026-03-02", "08:00", 24, [], "UTC", utc(2026, 3, 5)) is None


def _schedule(s: Session, tz: str = "Africa/Johannesburg") -> tuple[Schedule, list[Person]]:
    people = [Person(handle=f"p{i}", name=f"Person {i}") for i in range(4)]
    s.add_all(people)
    schedule = Schedule(handle="ops", name="Ops", timezone=tz)
    s.add(schedule)
    s.flush()
    return schedule, people


def _pair(schedule: Schedule, people: list[Person], *, shift_hours: int) -> Rotation:
    """The first two people take turns from 2026-03-02 08:00 local."""
    rotation = Rotation(
        schedule_id=schedule.id, start_date="2026-03-02", handoff_time="08:00", shift_hours=shift_hours
    )
    rotation.members = [
        RotationMember(person_id=people[0].id, position=0),
        RotationMember(person_id=people[1].id, position=1),
    ]
    return rotation


def test_on_call_follows_the_rotation_and_an_override_wins(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as s:
        schedule, people = _schedule(s)
        rotation = Rotation(
            schedule_id=schedule.id, start_date="2026-03-02", handoff_time="00:00", shift_hours=24
        )
        rotation.members = [
            RotationMember(person_id=people[0].id, position=0),
            RotationMember(person_id=people[1].id, position=1),
        ]
        s.add(rotation)
        s.add(
            ScheduleOverride(
                schedule_id=schedule.id,
                person_id=people[3].id,
                start_at=utc(2026, 3, 3, 8),
                end_at=utc(2026, 3, 3, 12),
            )
        )
        ids = schedule.id, [p.id for p in people]
    schedule_id, pid = ids
    with sessions() as s:
        assert on_call_at(s, schedule_id, utc(2026, 3, 2, 12)) == [pid[0]]
        assert on_call_at(s, schedule_id, utc(2026, 3, 3, 7, 59)) == [pid[1]]
        assert on_call_at(s, schedule_id, utc(2026, 3, 3, 8)) == [pid[3]]
        assert on_call_at(s, schedule_id, utc(2026, 3, 3, 12)) == [pid[1]]


def test_second_layer_covers_when_first_has_nobody(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as s:
        schedule, people = _schedule(s)
        empty = Rotation(
            schedule_id=schedule.id, name="Primary", position=0, start_date="2026-03-02", shift_hours=24
        )
        backup = Rotation(
            schedule_id=schedule.id, name="Backup", position=1, start_date="2026-03-01", shift_hours=24
        )
        backup.members = [RotationMember(person_id=people[2].id)]
        s.add_all([empty, backup])
        schedule_id, p2 = schedule.id, people[2].id
    with sessions() as s:
        assert on_call_at(s, schedule_id, utc(2026, 3, 4, 12)) == [p2]
        shifts = upcoming_shifts(s, schedule_id, utc(2026, 3, 4, 12), 1)
        assert shifts[0].person_id == p2 and shifts[0].source == "rotation:Backup"


def test_schedule_with_no_rotation_members_has_nobody(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as s:
        schedule, _people = _schedule(s)
        s.add(Rotation(schedule_id=schedule.id, start_date="2026-03-02", shift_hours=24))
        schedule_id = schedule.id
    with sessions() as s:
        assert on_call_at(s, schedule_id, utc(2026, 3, 4, 12)) == []
        assert upcoming_shifts(s, schedule_id, utc(2026, 3, 4, 12), 3) == []


def test_upcoming_shifts_show_current_and_next_with_override_cutting_in(
    sessions: sessionmaker[Session],
) -> None:
    with sessions.begin() as s:
        schedule, people = _schedule(s)
        s.add(_pair(schedule, people, shift_hours=24))
        s.add(
            ScheduleOverride(
                schedule_id=schedule.id,
                person_id=people[3].id,
                start_at=utc(2026, 3, 3, 10),
                end_at=utc(2026, 3, 3, 14),
            )
        )
        schedule_id, pid = schedule.id, [p.id for p in people]
    with sessions() as s:
        shifts = upcoming_shifts(s, schedule_id, utc(2026, 3, 2, 12), 4)
    assert shifts == [
        Shift(pid[0], utc(2026, 3, 2, 6), utc(2026, 3, 3, 6), "rotation:Primary"),
        Shift(pid[1], utc(2026, 3, 3, 6), utc(2026, 3, 3, 10), "rotation:Primary"),
        Shift(pid[3], utc(2026, 3, 3, 10), utc(2026, 3, 3, 14), "override"),
        Shift(pid[1], utc(2026, 3, 3, 14), utc(2026, 3, 4, 6), "rotation:Primary"),
    ]


def test_single_person_rotation_shows_when_the_current_shift_began(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as s:
        schedule, people = _schedule(s)
        rotation = Rotation(
            schedule_id=schedule.id, start_date="2026-03-02", handoff_time="08:00", shift_hours=24
        )
        rotation.members = [RotationMember(person_id=people[0].id)]
        s.add(rotation)
        schedule_id, p0 = schedule.id, people[0].id
    with sessions() as s:
        shifts = upcoming_shifts(s, schedule_id, utc(2026, 3, 10, 12), 1)
    assert len(shifts) == 1 and shifts[0].person_id == p0
    assert utc(2026, 3, 2, 6) <= shifts[0].start <= utc(2026, 3, 10, 6)


def test_on_call_now_names_the_teams_of_each_schedule_and_who_is_next_from_when(
    sessions: sessionmaker[Session],
) -> None:
    from engine.models import Team
    from engine.oncall import on_call_now

    with sessions.begin() as s:
        schedule, people = _schedule(s)
        s.add(_pair(schedule, people, shift_hours=12))
        standby = Schedule(handle="standby", name="Standby", timezone="Africa/Johannesburg")
        s.add(standby)
        s.add_all(
            [
                Team(handle="fire", name="Fire rescue", schedule=schedule),
                Team(handle="hazmat", name="Hazmat", schedule=schedule),
                Team(handle="roads", name="Roads"),
            ]
        )
        names = [p.name for p in people]
    with sessions() as s:
        entries = on_call_now(s, utc(2026, 3, 2, 7))  # 09:00 in Johannesburg
    # The team's schedule first, under both its teams; the schedule no team names after it.
    assert [(e["name"], e["teams"]) for e in entries] == [
        ("Ops", ["Fire rescue", "Hazmat"]),
        ("Standby", []),
    ]
    first = entries[0]
    assert (first["now"], first["until"]) == ([names[0]], utc(2026, 3, 2, 18))
    assert (first["next"], first["next_from"]) == ([names[1]], utc(2026, 3, 2, 18))
