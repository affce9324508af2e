"""Policies in motion: level delays, repeats, time-outs, dedup, business hours, snapshots, targets, notices."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from engine import api
from engine.clock import FakeClock
from engine.errors import NotFound, ValidationError
from engine.models import (
    Escalation,
    EscalationState,
    Incident,
    OutboxMessage,
    Page,
    PolicyLevel,
    Rotation,
    RotationMember,
    Schedule,
)

from .helpers import add_policy, add_team, count, events, outbox


def _escalation(sessions: sessionmaker[Session], esc_id: int) -> Escalation:
    with sessions() as s:
        got = s.get(Escalation, esc_id)
        assert got is not None
        return got


def _paged(sessions: sessionmaker[Session]) -> list[tuple[int, int, int | None]]:
    """(level, repeat, person) of each page message, in order."""
    return [
        (m.level or 0, int(m.idempotency_key.split(":")[3]), m.person_id)
        for m in outbox(sessions, kind="page")
    ]


def test_level_one_is_paged_after_its_delay_and_level_two_after_its_own(ctx, sessions, people, run) -> None:
    add_policy(
        sessions,
        "water",
        [
            {"targets": [("person", "thandi")], "delay_seconds": 60, "repeat_interval_seconds": 900},
            {"targets": [("person", "sipho")], "delay_seconds": 300},
        ],
    )
    r = api.trigger(ctx, policy="water", summary="Pump station 7 offline")
    assert run() == 0  # level 1 waits 60 s
    assert run(59) == 0
    assert run(1) == 1
    assert _paged(sessions) == [(1, 0, people["thandi"])]
    esc = _escalation(sessions, r.escalation_id)
    assert esc.state == EscalationState.ACTIVE and esc.current_level == 1
    run(299)
    assert len(_paged(sessions)) == 1
    run(1)
    assert _paged(sessions) == [(1, 0, people["thandi"]), (2, 0, people["sipho"])]
    esc = _escalation(sessions, r.escalation_id)
    assert esc.current_level == 2 and esc.escalation_count == 1
    kinds = [e.kind for e in events(sessions) if e.escalation_id == r.escalation_id]
    assert kinds == [
        "escalation_started",
        "escalation_active",
        "escalation_escalating",
        "escalation_active",
    ]


def test_a_level_repeats_at_its_interval_before_escalating(ctx, sessions, people, run) -> None:
    add_policy(
        sessions,
        "water",
        [
            {"targets": [("person", "thandi")], "repeat_count": 2, "repeat_interval_seconds": 120},
            {"targets": [("person", "sipho")], "delay_seconds": 600},
        ],
    )
    api.trigger(ctx, policy="water", summary="Chlorine alarm")
    run()
    run(120)
    run(120)
    run(120)  # repeats used up: nothing until level 2 is due
    assert _paged(sessions) == [(1, 0, people["thandi"]), (1, 1, people["thandi"]), (1, 2, people["thandi"])]
    run(240)
    assert _paged(sessions)[-1] == (2, 0, people["sipho"])
    assert len(events(sessions, "level_repeated")) == 2


def test_the_last_level_stops_escalating_and_times_out_only_when_its_chains_end(
    ctx, sessions, people, run
) -> None:
    add_policy(sessions, "short", [{"targets": [("person", "thandi")], "repeat_interval_seconds": 300}])
    r = api.trigger(ctx, policy="short", summary="Generator fault")
    run()
    run(299)
    assert _escalation(sessions, r.escalation_id).state == EscalationState.ACTIVE
    run(1)
    esc = _escalation(sessions, r.escalation_id)
    # No level is left, but Thandi's chain (SMS, then her fallbacks) still runs: not timed out yet.
    assert esc.state == EscalationState.ACTIVE and esc.levels_done_at is not None
    assert "last level" in events(sessions, "levels_done")[0].message
    with sessions() as s:
        assert s.scalar(select(Page.status)) == "active"
        s.execute(Page.__table__.update().values(status="exhausted", next_check_at=None))
        s.commit()
    run(900)
    esc = _escalation(sessions, r.escalation_id)
    assert esc.state == EscalationState.TIMED_OUT and esc.next_action_at is None and esc.ended_at is not None
    assert "every person paged was tried" in events(sessions, "escalation_timed_out")[0].message
    with sessions() as s:  # the incident stays open for operators
        assert s.get(Incident, r.incident_id).status == "open"


def test_max_escalations_reached_stops_escalating(ctx, sessions, people, run) -> None:
    levels = [{"targets": [("person", name)], "delay_seconds": 60} for name in ("thandi", "sipho", "anna")]
    add_policy(sessions, "capped", levels, max_escalations=1)
    r = api.trigger(ctx, policy="capped", summary="Sewage overflow")
    run(60)
    run(60)  # level 2 (escalation 1 of 1)
    run(60)  # level 3 would be escalation 2: refused
    esc = _escalation(sessions, r.escalation_id)
    assert esc.state == EscalationState.ACTIVE and esc.current_level == 2 and esc.levels_done_at is not None
    assert [p[0] for p in _paged(sessions)] == [1, 2]
    assert "limit of 1" in events(sessions, "levels_done")[0].message


def test_a_second_trigger_inside_the_cooldown_joins_the_live_escalation(ctx, sessions, people, run) -> None:
    add_policy(sessions, "dedup", [{"targets": [("person", "thandi")]}], cooldown_seconds=600)
    first = api.trigger(ctx, policy="dedup", summary="Substation trip", key="sub-12")
    run(100)
    second = api.trigger(ctx, policy="dedup", summary="Substation trip", key="sub-12")
    assert second.deduplicated and second.incident_id == first.incident_id
    assert second.escalation_id == first.escalation_id
    with sessions() as s:
        assert s.get(Incident, first.incident_id).trigger_count == 2
        assert s.get(Escalation, first.escalation_id).trigger_count == 2
        assert s.scalar(select(Incident.id).where(Incident.id != first.incident_id)) is None
    assert len(events(sessions, "retriggered")) == 1
    assert len(_paged(sessions)) == 1  # joining never pages again


def test_a_trigger_for_an_open_incident_joins_it_whatever_the_cooldown(ctx, sessions, people, run) -> None:
    add_policy(sessions, "dedup", [{"targets": [("person", "thandi")]}], cooldown_seconds=0)
    first = api.trigger(ctx, policy="dedup", summary="Substation trip", key="sub-12")
    run(3600)
    second = api.trigger(ctx, policy="dedup", summary="Substation trip", key="sub-12")
    assert second.deduplicated and second.incident_id == first.incident_id


def test_a_trigger_within_the_cooldown_after_resolving_reopens_the_incident(
    ctx, sessions, people, run
) -> None:
    add_policy(sessions, "dedup", [{"targets": [("person", "thandi")]}], cooldown_seconds=600)
    first = api.trigger(ctx, policy="dedup", summary="Substation trip", key="sub-12")
    api.resolve(ctx, first.incident_id, by="thandi")
    run(599)
    second = api.trigger(ctx, policy="dedup", summary="Substation trip", key="sub-12")
    assert second.incident_id == first.incident_id and second.escalation_id != first.escalation_id
    with sessions() as s:
        incident = s.get(Incident, first.incident_id)
        assert incident.status == "open" and incident.resolved_at is None and incident.trigger_count == 2
    assert "within the cooldown" in events(sessions, "reopened")[0].message


def test_a_trigger_for_a_resolved_key_after_the_cooldown_opens_a_new_incident(
    ctx, sessions, people, run
) -> None:
    add_policy(sessions, "dedup", [{"targets": [("person", "thandi")]}], cooldown_seconds=600)
    first = api.trigger(ctx, policy="dedup", summary="Substation trip", key="sub-12")
    api.resolve(ctx, first.incident_id, by="thandi")
    run(600)
    second = api.trigger(ctx, policy="dedup", summary="Substation trip", key="sub-12")
    assert not second.deduplicated and second.incident_id != first.incident_id


def test_business_hours_policy_waits_over_the_weekend(ctx, sessions, people, run, clock: FakeClock) -> None:
    clock.set(datetime(2026, 3, 6, 16, 0, tzinfo=UTC))  # Friday 18:00 in Johannesburg, after hours
    add_policy(
        sessions,
        "office",
        [{"targets": [("person", "thandi")]}],
        business_hours_only=True,
        business_start="08:00",
        business_end="17:00",
        timezone="Africa/Johannesburg",
    )
    r = api.trigger(ctx, policy="office", summary="Printer queue stuck", severity="low")
    monday_open = datetime(2026, 3, 9, 6, 0, tzinfo=UTC)  # Monday 08:00 local
    esc = _escalation(sessions, r.escalation_id)
    assert esc.next_action_at == monday_open
    assert events(sessions, "escalation_started")[0].data["waiting_business_hours"] is True
    clock.set(datetime(2026, 3, 8, 12, 0, tzinfo=UTC))  # Sunday
    assert run() == 0
    clock.set(monday_open)
    assert run() == 1
    assert len(_paged(sessions)) == 1


def test_critical_incidents_do_not_wait_for_business_hours(ctx, sessions, people, run, clock) -> None:
    clock.set(datetime(2026, 3, 7, 10, 0, tzinfo=UTC))  # Saturday
    add_policy(sessions, "office", [{"targets": [("person", "thandi")]}], business_hours_only=True)
    api.trigger(ctx, policy="office", summary="Building fire alarm", severity="critical")
    assert run() == 1
    assert len(_paged(sessions)) == 1


def test_editing_the_policy_never_changes_a_running_escalation(ctx, sessions, people, run) -> None:
    policy_id = add_policy(
        sessions,
        "water",
        [{"targets": [("person", "thandi")]}, {"targets": [("person", "sipho")], "delay_seconds": 300}],
    )
    r = api.trigger(ctx, policy="water", summary="Valve stuck")
    run()
    with sessions.begin() as s:  # an administrator shortens level 2 and points it at someone else
        level2 = s.scalars(
            select(PolicyLevel).where(PolicyLevel.policy_id == policy_id, PolicyLevel.level == 2)
        ).one()
        level2.delay_seconds = 30
        level2.targets[0].identifier = "anna"
    run(30)
    assert [p[0] for p in _paged(sessions)] == [1]
    run(270)
    assert _paged(sessions)[-1] == (2, 0, people["sipho"])
    assert _escalation(sessions, r.escalation_id).policy_snapshot["levels"][1]["delay_seconds"] == 300
    later = api.trigger(ctx, policy="water", summary="Another valve")  # a new escalation takes the edit
    assert _escalation(sessions, later.escalation_id).policy_snapshot["levels"][1]["delay_seconds"] == 30


def test_a_target_that_resolves_to_nobody_is_an_event(ctx, sessions, people, run) -> None:
    add_team(sessions, "empty", [])
    add_policy(
        sessions,
        "broken",
        [{"targets": [("person", "nobody"), ("team", "empty"), ("schedule", "none"), ("person", "thandi")]}],
    )
    r = api.trigger(ctx, policy="broken", summary="Pressure drop")
    run()
    unresolved = events(sessions, "target_unresolved")
    assert len(unresolved) == 3
    assert all(e.incident_id == r.incident_id and e.escalation_id == r.escalation_id for e in unresolved)
    assert "nobody" in unresolved[0].message
    assert _paged(sessions) == [(1, 0, people["thandi"])]  # the others still go out


def test_team_targets_page_every_member_once_or_only_the_manager(ctx, sessions, people, run) -> None:
    add_team(sessions, "water", ["thandi", "sipho"], manager="anna")
    add_policy(
        sessions,
        "team",
        [
            {"targets": [("team", "water"), ("person", "thandi")]},
            {"targets": [("team_manager", "water")], "delay_seconds": 60},
        ],
    )
    api.trigger(ctx, policy="team", summary="Leak")
    run()
    assert sorted(p[2] for p in _paged(sessions)) == sorted([people["thandi"], people["sipho"]])
    run(60)
    assert _paged(sessions)[-1] == (2, 0, people["anna"])


def _standby(sessions: sessionmaker[Session], people: dict[str, int]) -> int:
    """A daily rota from 2026-03-01 08:00 local: Sipho, then Anna (on call on the test clock's Monday)."""
    with sessions.begin() as s:
        schedule = Schedule(handle="standby", name="Standby", timezone="Africa/Johannesburg")
        rotation = Rotation(name="Primary", start_date="2026-03-01", handoff_time="08:00", shift_hours=24)
        rotation.members = [
            RotationMember(person_id=people["sipho"], position=0),
            RotationMember(person_id=people["anna"], position=1),
        ]
        schedule.rotations = [rotation]
        s.add(schedule)
        s.flush()
        return schedule.id


def test_schedule_target_pages_whoever_is_on_call(ctx, sessions, people, run) -> None:
    _standby(sessions, people)
    add_policy(sessions, "oncall", [{"targets": [("schedule", "standby")]}])
    api.trigger(ctx, policy="oncall", summary="Night call")
    run()
    # 2026-03-02 10:00 local: the second day of the rotation, so the second member is on call.
    assert [p[2] for p in _paged(sessions)] == [people["anna"]]


def test_a_team_with_an_on_call_schedule_pages_whoever_is_on_call_not_every_member(
    ctx, sessions, people, run
) -> None:
    from engine.models import Team

    team_id = add_team(sessions, "water", ["thandi", "sipho", "anna"])
    schedule_id = _standby(sessions, people)
    with sessions.begin() as s:
        team = s.get(Team, team_id)
        assert team is not None
        team.schedule_id = schedule_id
    add_policy(sessions, "team", [{"targets": [("team", "water")]}])
    api.trigger(ctx, policy="team", summary="Burst main")
    run()
    assert [p[2] for p in _paged(sessions)] == [people["anna"]]


def test_a_gap_in_a_teams_rota_pages_every_member(ctx, sessions, people, run) -> None:
    from engine.models import Team

    team_id = add_team(sessions, "water", ["thandi", "sipho"])
    with sessions.begin() as s:
        empty = Schedule(handle="empty", name="Empty", timezone="Africa/Johannesburg")
        s.add(empty)
        s.flush()
        team = s.get(Team, team_id)
        assert team is not None
        team.schedule_id = empty.id
    add_policy(sessions, "team", [{"targets": [("team", "water")]}])
    api.trigger(ctx, policy="team", summary="Burst main")
    run()
    assert sorted(p[2] for p in _paged(sessions)) == sorted([people["thandi"], people["sipho"]])


def test_address_targets_get_one_message_each(ctx, sessions, people, run) -> None:
    add_policy(
        sessions,
        "broadcast",
        [
            {
                "targets": [
                    ("email", "control@example.org"),
                    ("phone", "+27215550000"),
                    ("webhook", "https://hooks.example.org/wk"),
                    ("console", "all"),
                ]
            }
        ],
    )
    r = api.trigger(ctx, policy="broadcast", summary="Storm warning")
    run()
    msgs = outbox(sessions)
    assert [(m.channel, m.address) for m in msgs] == [
        ("email", "control@example.org"),
        ("sms", "+27215550000"),
        ("webhook", "https://hooks.example.org/wk"),
        ("console", "all"),
    ]
    assert [m.idempotency_key for m in msgs] == [f"target:{r.escalation_id}:1:0:{i}" for i in range(4)]


def _delivered(sessions: sessionmaker[Session]) -> None:
    """The dispatcher sent every page message written so far (only people reached are told of an ack)."""
    with sessions.begin() as s:
        for m in s.scalars(select(OutboxMessage).where(OutboxMessage.kind == "page")):
            m.status, m.sent_at = "sent", m.created_at


def test_acknowledging_notifies_everyone_already_paged(ctx, sessions, people, run) -> None:
    add_policy(
        sessions,
        "water",
        [{"targets": [("person", "thandi")]}, {"targets": [("person", "sipho")], "delay_seconds": 60}],
    )
    r = api.trigger(ctx, policy="water", summary="Main burst")
    run()
    run(60)
    _delivered(sessions)
    result = api.acknowledge(ctx, r.incident_id, by="anna", via="sms")
    assert result["status"] == "acknowledged" and result["escalation_state"] == "acknowledged"
    notices = outbox(sessions, kind="notice")
    assert sorted(m.idempotency_key for m in notices) == sorted(
        f"notice:ack:{r.incident_id}:{people[name]}" for name in ("thandi", "sipho")
    )
    assert all("anna" in m.body for m in notices)
    ack = events(sessions, "acknowledged")
    assert len(ack) == 1 and ack[0].actor == "anna" and ack[0].data["via"] == "sms"
    run(3600)  # acknowledged: nothing escalates any more
    assert [p[0] for p in _paged(sessions)] == [1, 2]


def test_the_person_who_acknowledged_is_not_told_what_they_did(ctx, sessions, people, run) -> None:
    add_policy(sessions, "water", [{"targets": [("person", "thandi"), ("person", "sipho")]}])
    r = api.trigger(ctx, policy="water", summary="Main burst")
    run()
    _delivered(sessions)
    api.acknowledge(ctx, r.incident_id, by="thandi")
    assert [m.person_id for m in outbox(sessions, kind="notice")] == [people["sipho"]]


def test_resolving_notifies_everyone_paged_and_closes_the_escalation(ctx, sessions, people, run) -> None:
    add_policy(sessions, "water", [{"targets": [("person", "thandi")]}])
    r = api.trigger(ctx, policy="water", summary="Main burst")
    run()
    _delivered(sessions)
    api.acknowledge(ctx, r.incident_id, by="thandi")
    api.resolve(ctx, r.incident_id, by="sipho", note="valve replaced")
    esc = _escalation(sessions, r.escalation_id)
    assert esc.state == EscalationState.RESOLVED and esc.resolved_by == "sipho"
    assert [m.idempotency_key for m in outbox(sessions, kind="notice")] == [
        f"notice:resolve:{r.incident_id}:{people['thandi']}"
    ]
    assert "valve replaced" in events(sessions, "resolved")[0].message


def test_a_level_auto_resolves_after_its_time(ctx, sessions, people, run) -> None:
    add_policy(
        sessions,
        "flap",
        [{"targets": [("person", "thandi")], "auto_resolve_seconds": 900, "repeat_interval_seconds": 3600}],
    )
    r = api.trigger(ctx, policy="flap", summary="Link flapping")
    run()
    api.acknowledge(ctx, r.incident_id, by="thandi")
    run(899)
    assert _escalation(sessions, r.escalation_id).state == EscalationState.ACKNOWLEDGED
    run(1)
    assert _escalation(sessions, r.escalation_id).state == EscalationState.RESOLVED
    with sessions() as s:
        incident = s.get(Incident, r.incident_id)
        assert incident.status == "resolved" and incident.resolved_by == "system"
    assert len(events(sessions, "auto_resolved")) == 1


def test_manual_escalation_pages_the_next_level_now(ctx, sessions, people, run) -> None:
    add_policy(
        sessions,
        "water",
        [{"targets": [("person", "thandi")]}, {"targets": [("person", "sipho")], "delay_seconds": 3600}],
    )
    r = api.trigger(ctx, policy="water", summary="Main burst")
    run()
    result = api.escalate(ctx, r.incident_id, by="supervisor")
    assert result["current_level"] == 2 and result["status"] == "escalated"
    assert _paged(sessions)[-1] == (2, 0, people["sipho"])
    assert events(sessions, "escalation_escalating")[0].actor == "supervisor"


def test_manual_escalation_to_a_level_already_paged_never_reuses_a_key(ctx, sessions, people, run) -> None:
    add_policy(
        sessions,
        "water",
        [{"targets": [("person", "thandi")]}, {"targets": [("person", "sipho")], "delay_seconds": 3600}],
    )
    r = api.trigger(ctx, policy="water", summary="Main burst")
    run()
    api.acknowledge(ctx, r.incident_id, by="thandi")
    api.escalate(ctx, r.incident_id, by="thandi", level=1)  # "page my level again, I need help"
    assert _paged(sessions) == [(1, 0, people["thandi"]), (1, 1, people["thandi"])]
    assert _escalation(sessions, r.escalation_id).state == EscalationState.ACTIVE


def test_escalating_to_a_level_the_policy_lacks_is_a_validation_error(ctx, sessions, people, run) -> None:
    add_policy(sessions, "water", [{"targets": [("person", "thandi")]}])
    r = api.trigger(ctx, policy="water", summary="Main burst")
    with pytest.raises(ValidationError):
        api.escalate(ctx, r.incident_id, by="op", level=5)


def test_cancel_records_the_reason_and_stops_paging(ctx, sessions, people, run) -> None:
    add_policy(
        sessions,
        "water",
        [{"targets": [("person", "thandi")], "repeat_count": 3, "repeat_interval_seconds": 60}],
    )
    r = api.trigger(ctx, policy="water", summary="Prank call")
    run()
    api.cancel(ctx, r.incident_id, reason="prank call", by="op")
    run(600)
    assert len(_paged(sessions)) == 1
    esc = _escalation(sessions, r.escalation_id)
    assert esc.state == EscalationState.CANCELLED and esc.end_reason == "prank call"
    with sessions() as s:
        assert s.get(Incident, r.incident_id).cancel_reason == "prank call"


def test_reopen_starts_a_new_escalation(ctx, sessions, people, run) -> None:
    add_policy(sessions, "water", [{"targets": [("person", "thandi")]}])
    r = api.trigger(ctx, policy="water", summary="Main burst")
    run()
    api.resolve(ctx, r.incident_id, by="thandi")
    result = api.reopen(ctx, r.incident_id, by="sipho", reason="leaking again")
    assert result["status"] == "open" and result["escalation_id"] != r.escalation_id
    run()
    assert len(_paged(sessions)) == 2
    assert len({m.idempotency_key for m in outbox(sessions, kind="page")}) == 2


def test_severity_filter_leaves_other_severities_unescalated(ctx, sessions, people, run) -> None:
    add_policy(
        sessions, "urgent", [{"targets": [("person", "thandi")]}], severity_filter=["critical", "high"]
    )
    r = api.trigger(ctx, policy="urgent", summary="Streetlight out", severity="low")
    assert r.escalation_id is None
    assert "not escalated" in events(sessions, "not_escalated")[0].message
    run()
    assert outbox(sessions) == []


def test_trigger_validates_its_input(ctx, sessions, people) -> None:
    add_policy(sessions, "water", [{"targets": [("person", "thandi")]}])
    with pytest.raises(ValidationError):
        api.trigger(ctx, policy="water", summary="x", severity="apocalyptic")
    with pytest.raises(ValidationError):
        api.trigger(ctx, policy="water", summary="   ")
    with pytest.raises(NotFound):
        api.trigger(ctx, policy="no-such-policy", summary="x")
    with pytest.raises(NotFound):
        api.trigger(ctx, policy="water", summary="x", team="no-such-team")
    assert count(sessions, Incident) == 0


def test_show_incident_has_escalation_events_and_messages(ctx, sessions, people, run) -> None:
    add_policy(sessions, "water", [{"targets": [("person", "thandi")]}])
    r = api.trigger(ctx, policy="water", summary="Main burst", key="main-7", site="Durban")
    run()
    shown = api.show_incident(ctx, "main-7")
    json.dumps(shown)  # serialisable as it is
    assert shown["id"] == r.incident_id and shown["site"] == "Durban"
    assert shown["escalation"]["state"] == "active" and shown["escalation"]["current_level"] == 1
    assert shown["escalation"]["next_action_at"]
    assert [e["kind"] for e in shown["events"]][:2] == ["triggered", "escalation_started"]
    (msg,) = shown["messages"]
    assert msg["channel"] == "sms" and msg["to"] == "+27821234567" and msg["level"] == 1
    assert msg["status"] == "pending" and msg["idempotency_key"].startswith(f"page:{r.escalation_id}:1:0:")
    with pytest.raises(NotFound):
        api.show_incident(ctx, 999_999)


def test_list_notes_assignment_and_category(ctx, sessions, people, run) -> None:
    add_team(sessions, "water", ["thandi"], manager="anna")
    add_policy(sessions, "water", [{"targets": [("person", "thandi")]}])
    r = api.trigger(ctx, policy="water", summary="Main burst")
    api.trigger(ctx, policy=None, summary="Walk-in report")
    api.add_note(ctx, r.incident_id, by="op", text="caller says water is brown")
    assigned = api.assign(ctx, r.incident_id, by="op", team="water", person="sipho", reason="on site")
    assert assigned["team"] == "water" and assigned["person"] == "sipho"
    changed = api.set_category(ctx, r.incident_id, by="op", category="water-quality")
    assert changed["category"] == "water-quality"
    listed = api.list_incidents(ctx, state="unresolved")
    assert [i["id"] for i in listed][-1] == r.incident_id and len(listed) == 2
    assert listed[-1]["escalation_state"] == "pending"
    kinds = [e.kind for e in events(sessions) if e.incident_id == r.incident_id]
    assert {"note", "assigned", "category_changed"} <= set(kinds)
    with pytest.raises(NotFound):
        api.assign(ctx, r.incident_id, by="op", person="ghost")
    with pytest.raises(ValidationError):
        api.list_incidents(ctx, state="sleeping")


def test_an_escalation_of_a_closed_incident_is_cancelled_not_paged(ctx, sessions, people, run) -> None:
    add_policy(sessions, "water", [{"targets": [("person", "thandi")]}])
    r = api.trigger(ctx, policy="water", summary="Main burst")
    with sessions.begin() as s:  # another client closed the incident behind the engine's back
        s.get(Incident, r.incident_id).status = "resolved"
    run()
    assert _escalation(sessions, r.escalation_id).state == EscalationState.CANCELLED
    assert outbox(sessions) == []


def test_a_broken_snapshot_fails_that_escalation_only(ctx, sessions, people, run) -> None:
    add_policy(sessions, "water", [{"targets": [("person", "thandi")]}])
    bad = api.trigger(ctx, policy="water", summary="one")
    good = api.trigger(ctx, policy="water", summary="two")
    with sessions.begin() as s:
        s.get(Escalation, bad.escalation_id).policy_snapshot = {
            "name": "water",
            "levels": [{"targets": "oops"}],
        }
    assert run() == 2
    assert _escalation(sessions, bad.escalation_id).state == EscalationState.FAILED
    assert _escalation(sessions, good.escalation_id).state == EscalationState.ACTIVE
    assert events(sessions, "escalation_failed")[0].message.startswith("engine error")
    with sessions() as s:
        assert s.scalar(select(Page.id).where(Page.escalation_id == good.escalation_id)) is not None
        assert count(sessions, OutboxMessage, OutboxMessage.escalation_id == bad.escalation_id) == 0
