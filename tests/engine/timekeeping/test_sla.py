"""SLA deadlines from config with fallbacks, warnings, breaches escalated exactly once, reporter notices."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, sessionmaker

from engine import sla
from engine.clock import FakeClock
from engine.context import AppContext
from engine.db import make_engine
from engine.models import (
    Assignment,
    BusinessCalendar,
    Event,
    Incident,
    Notification,
    OutboxMessage,
    SlaConfig,
)
from engine.settings import Settings
from engine.sla import compute_deadlines, notify_reporter, resolve_config, sla_pass
from engine.switches import ESCALATIONS_ENABLED, NOTIFICATIONS_ENABLED, set_switch

from .conftest import Crew, add_incident

HOUR = timedelta(hours=1)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def _configs(s: Session) -> None:
    s.add_all(
        [
            SlaConfig(site="durban", category="roads", response_minutes=60, resolution_minutes=8 * 60),
            SlaConfig(site="durban", category="", response_minutes=120, resolution_minutes=24 * 60),
            SlaConfig(site="", category="water", response_minutes=30, resolution_minutes=4 * 60),
            SlaConfig(
                site="", category="", response_minutes=12 * 60, resolution_minutes=72 * 60, warning_percent=50
            ),
        ]
    )


def test_config_lookup_falls_back_from_exact_to_site_to_category_to_system(
    sessions: sessionmaker[Session],
) -> None:
    with sessions.begin() as s:
        _configs(s)
    with sessions() as s:
        assert resolve_config(s, "durban", "roads").response_minutes == 60
        assert resolve_config(s, "durban", "lights").source == "site"
        assert resolve_config(s, "durban", "lights").response_minutes == 120
        assert resolve_config(s, "pinetown", "water").source == "category"
        system = resolve_config(s, "pinetown", "lights")
        assert (system.source, system.response_minutes, system.warning_percent) == ("system", 12 * 60, 50)


def test_without_any_config_the_built_in_is_24h_response_168h_resolution(
    sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    now = clock.now()
    with sessions.begin() as s:
        incident = add_incident(s, now)
        compute_deadlines(s, incident, now)
        assert incident.response_due_at == now + 24 * HOUR
        assert incident.resolution_due_at == now + 168 * HOUR
        assert incident.response_warn_at == now + 24 * HOUR * 0.8
        assert incident.resolution_warn_at == now + 168 * HOUR * 0.8
        assert incident.sla_computed_at == now


def test_deadlines_follow_the_business_calendar_and_skip_a_public_holiday(
    sessions: sessionmaker[Session],
) -> None:
    with sessions.begin() as s:
        cal = BusinessCalendar(
            name="Office",
            timezone="Africa/Johannesburg",
            hours={d: [["08:00", "17:00"]] for d in ("mon", "tue", "wed", "thu", "fri")},
            holiday_country="ZA",
        )
        s.add(cal)
        s.flush()
        s.add(
            SlaConfig(
                site="durban",
                category="roads",
                response_minutes=4 * 60,
                resolution_minutes=18 * 60,
                warning_percent=50,
                calendar_id=cal.id,
            )
        )
    # Thursday 2 April 2026 15:00 SAST; Good Friday and Family Day (Monday) are public holidays.
    created = utc(2026, 4, 2, 13)
    with sessions.begin() as s:
        incident = add_incident(s, created)
        compute_deadlines(s, incident, created)
        assert incident.response_warn_at == utc(2026, 4, 2, 15)  # 2 working hours: Thursday 17:00 SAST
        assert incident.response_due_at == utc(2026, 4, 7, 8)  # 2 on Thursday, 2 on Tuesday: 10:00 SAST
        # 18 working hours: 2 Thursday, 9 Tuesday, 7 Wednesday -> Wednesday 15:00 SAST.
        assert incident.resolution_due_at == utc(2026, 4, 8, 13)


def test_sensitive_incident_gets_no_deadlines_and_is_never_breached(
    ctx: AppContext, clock: FakeClock
) -> None:
    with ctx.sessions.begin() as s:
        incident = add_incident(s, clock.now(), sensitive=True)
        incident_id = incident.id
    clock.advance(200 * HOUR)
    result = sla_pass(ctx)
    assert result["deadlines"] == 1
    assert result["response_breaches"] == result["resolution_breaches"] == 0
    with ctx.sessions() as s:
        incident = s.get(Incident, incident_id)
        assert incident is not None
        assert incident.status == "open" and incident.response_due_at is None
        assert incident.sla_computed_at is not None


def test_pass_computes_deadlines_for_incidents_written_without_them(
    ctx: AppContext, clock: FakeClock
) -> None:
    with ctx.sessions.begin() as s:
        _configs(s)
        ids = [add_incident(s, clock.now(), summary=f"n{i}").id for i in range(3)]
    assert sla_pass(ctx)["deadlines"] == 3
    assert sla_pass(ctx)["deadlines"] == 0
    with ctx.sessions() as s:
        for incident in s.scalars(select(Incident).where(Incident.id.in_(ids))):
            assert incident.response_due_at == clock.now() + HOUR


def test_category_change_recomputes_deadlines_and_rearms_the_warning(
    sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    with sessions.begin() as s:
        _configs(s)
    now = clock.now()
    with sessions.begin() as s:
        incident = add_incident(s, now, site="pinetown", category="water")
        compute_deadlines(s, incident, now)
        assert incident.response_due_at == now + timedelta(minutes=30)
        incident.response_warned_at = now + timedelta(minutes=25)
        later = now + timedelta(minutes=26)
        incident.category = "roads"  # pinetown has no roads config: the system default, 12 h at 50 %
        compute_deadlines(s, incident, later)
        assert incident.response_due_at == now + 12 * HOUR
        assert incident.response_warn_at == now + 6 * HOUR
        assert incident.response_warned_at is None  # the new warning time is still ahead
        assert incident.sla_computed_at == later


def test_response_warning_notifies_assignee_and_manager_once(
    ctx: AppContext, clock: FakeClock, crew: Crew
) -> None:
    with ctx.sessions.begin() as s:
        _configs(s)
        incident = add_incident(s, clock.now(), team_id=crew.team_id, assignee_id=crew.agent_id)
        compute_deadlines(s, incident, clock.now())
        incident_id = incident.id
    clock.advance(timedelta(minutes=47))
    assert sla_pass(ctx)["response_warnings"] == 0
    clock.advance(timedelta(minutes=1))  # 80 % of one hour
    first = sla_pass(ctx)
    assert first["response_warnings"] == 1
    assert sla_pass(ctx)["response_warnings"] == 0
    with ctx.sessions() as s:
        notes = s.scalars(select(Notification).where(Notification.incident_id == incident_id)).all()
        assert sorted(n.person_id for n in notes if n.person_id) == sorted([crew.agent_id, crew.manager_id])
        assert all(n.kind == "sla_response_warning" for n in notes)
        events = s.scalars(select(Event).where(Event.kind == "sla_warning")).all()
        assert len(events) == 1 and events[0].data["kind"] == "response"


def test_unassigned_warning_goes_to_the_supervisor_role(ctx: AppContext, clock: FakeClock) -> None:
    with ctx.sessions.begin() as s:
        incident = add_incident(s, clock.now())
        compute_deadlines(s, incident, clock.now())
    clock.advance(20 * HOUR)
    assert sla_pass(ctx)["response_warnings"] == 1
    with ctx.sessions() as s:
        note = s.scalars(select(Notification)).one()
        assert (note.role, note.person_id) == ("supervisor", None)


def _breach_setup(ctx: AppContext, clock: FakeClock, crew: Crew, **fields: Any) -> int:
    with ctx.sessions.begin() as s:
        _configs(s)
        values: dict[str, Any] = {
            "team_id": crew.team_id,
            "assignee_id": crew.agent_id,
            "reporter_name": "Mrs Naidoo",
            "reporter_contact": "+27831234567",
            "reporter_language": "zu",
        }
        values.update(fields)
        incident = add_incident(s, clock.now(), **values)
        compute_deadlines(s, incident, clock.now())
        return incident.id


def test_response_breach_escalates_to_the_team_manager_and_tells_the_reporter(
    ctx: AppContext, clock: FakeClock, crew: Crew
) -> None:
    incident_id = _breach_setup(ctx, clock, crew)
    clock.advance(HOUR - timedelta(seconds=1))
    assert sla_pass(ctx)["response_breaches"] == 0
    clock.advance(timedelta(seconds=1))
    result = sla_pass(ctx)
    assert result["response_breaches"] == 1
    with ctx.sessions() as s:
        incident = s.get(Incident, incident_id)
        assert incident is not None
        assert incident.status == "escalated"
        assert incident.assignee_id == crew.manager_id
        assert incident.response_breached_at == clock.now()
        history = s.scalars(select(Assignment).where(Assignment.incident_id == incident_id)).all()
        assert [(a.person_id, a.assigned_by) for a in history] == [(crew.manager_id, "sla")]
        events = s.scalars(select(Event).where(Event.incident_id == incident_id).order_by(Event.id))
        assert [e.kind for e in events] == ["sla_warning", "assigned", "sla_breached", "status_changed"]
        notices = s.scalars(select(Notification).where(Notification.person_id == crew.manager_id))
        assert sorted(n.kind for n in notices) == ["sla_response_breach", "sla_response_warning"]
        to_manager = s.scalars(
            select(OutboxMessage.kind).where(OutboxMessage.person_id == crew.manager_id)
        ).all()
        assert sorted(to_manager) == ["sla_breach", "sla_warning"]  # in-app and as messages
        message = s.scalars(select(OutboxMessage).where(OutboxMessage.kind == "reporter_update")).one()
        assert (message.channel, message.address) == ("whatsapp", "+27831234567")
        assert message.idempotency_key == f"reporter:{incident_id}:escalated:0"
        assert "idluliselwe" in message.body  # isiZulu: escalated to the senior team
    # Nothing happens twice.
    clock.advance(HOUR)
    again = sla_pass(ctx)
    assert again["response_breaches"] == 0
    with ctx.sessions() as s:
        assert s.scalar(select(func.count()).select_from(Assignment)) == 1


def test_acknowledged_ticket_misses_no_response_deadline_but_can_miss_resolution(
    ctx: AppContext, clock: FakeClock, crew: Crew
) -> None:
    incident_id = _breach_setup(ctx, clock, crew, status="acknowledged")
    clock.advance(2 * HOUR)
    assert sla_pass(ctx)["response_breaches"] == 0
    clock.advance(6 * HOUR)  # 8 h resolution for durban/roads
    result = sla_pass(ctx)
    assert result["resolution_breaches"] == 1
    with ctx.sessions() as s:
        incident = s.get(Incident, incident_id)
        assert incident is not None
        assert incident.status == "escalated" and incident.resolution_breached_at == clock.now()
        assert incident.response_breached_at is None


def test_resolved_ticket_is_never_breached(ctx: AppContext, clock: FakeClock, crew: Crew) -> None:
    _breach_setup(ctx, clock, crew, status="resolved")
    clock.advance(300 * HOUR)
    result = sla_pass(ctx)
    assert result["response_breaches"] == result["resolution_breaches"] == 0


def test_response_then_resolution_breach_assigns_manager_once(
    ctx: AppContext, clock: FakeClock, crew: Crew
) -> None:
    incident_id = _breach_setup(ctx, clock, crew)
    clock.advance(2 * HOUR)
    sla_pass(ctx)
    clock.advance(7 * HOUR)
    assert sla_pass(ctx)["resolution_breaches"] == 1
    with ctx.sessions() as s:
        assert s.scalar(select(func.count()).select_from(Assignment)) == 1
        breaches = s.scalars(
            select(Event).where(Event.kind == "sla_breached", Event.incident_id == incident_id)
        )
        assert sorted(e.data["kind"] for e in breaches) == ["resolution", "response"]
        # The reporter heard about the one status change only.
        reporter = select(func.count()).where(OutboxMessage.kind == "reporter_update")
        assert s.scalar(reporter) == 1


def test_escalations_switch_off_defers_breaches_without_losing_them(
    ctx: AppContext, clock: FakeClock, crew: Crew
) -> None:
    incident_id = _breach_setup(ctx, clock, crew)
    with ctx.sessions.begin() as s:
        set_switch(s, ESCALATIONS_ENABLED, False, now=clock.now(), by="supervisor")
    clock.advance(2 * HOUR)
    result = sla_pass(ctx)
    assert result["response_breaches"] == 0 and result["skipped"]
    with ctx.sessions() as s:
        incident = s.get(Incident, incident_id)
        assert incident is not None and incident.status == "open"
    with ctx.sessions.begin() as s:
        set_switch(s, ESCALATIONS_ENABLED, True, now=clock.now(), by="supervisor")
    assert sla_pass(ctx)["response_breaches"] == 1


def test_notifications_switch_off_defers_warnings(ctx: AppContext, clock: FakeClock, crew: Crew) -> None:
    _breach_setup(ctx, clock, crew)
    with ctx.sessions.begin() as s:
        set_switch(s, NOTIFICATIONS_ENABLED, False, now=clock.now())
    clock.advance(timedelta(minutes=50))
    assert sla_pass(ctx)["response_warnings"] == 0
    with ctx.sessions.begin() as s:
        set_switch(s, NOTIFICATIONS_ENABLED, True, now=clock.now())
    assert sla_pass(ctx)["response_warnings"] == 1


def test_two_engines_running_at_once_escalate_each_breach_exactly_once(
    db: Engine, settings: Settings, clock: FakeClock, crew: Crew, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sla, "BATCH_SIZE", 7)  # many small transactions, so the engines interleave
    url = db.url.render_as_string(hide_password=False)
    engines = [make_engine(url), make_engine(url)]
    contexts = [
        AppContext.create(settings, clock=clock, mode=f"test{i}", db=e) for i, e in enumerate(engines)
    ]
    with contexts[0].sessions.begin() as s:
        _configs(s)
        for i in range(60):
            incident = add_incident(
                s,
                clock.now(),
                summary=f"pothole {i}",
                team_id=crew.team_id,
                assignee_id=crew.agent_id,
                reporter_contact=f"+2783123{i:04d}",
            )
            compute_deadlines(s, incident, clock.now())
    clock.advance(2 * HOUR)
    barrier = threading.Barrier(2)
    results: list[dict[str, Any]] = []
    errors: list[BaseException] = []

    def run(c: AppContext) -> None:
        try:
            barrier.wait()
            for _ in range(3):
                results.append(sla_pass(c))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(c,)) for c in contexts]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for e in engines:
        e.dispose()
    assert not errors, errors
    assert sum(r["response_breaches"] for r in results) == 60
    with Session(db) as s:
        assert s.scalar(select(func.count()).select_from(Assignment)) == 60
        assert s.scalar(select(func.count()).select_from(Event).where(Event.kind == "sla_breached")) == 60
        assert s.scalar(select(func.count()).where(OutboxMessage.kind == "reporter_update")) == 60
        assert s.scalar(select(func.count()).where(OutboxMessage.kind == "sla_breach")) == 60
        assert (
            s.scalar(
                select(func.count())
                .select_from(Notification)
                .where(Notification.kind == "sla_response_breach")
            )
            == 120  # one to the manager, one to the team, for each incident
        )
        assert (
            s.scalar(select(func.count()).select_from(Incident).where(Incident.status == "escalated")) == 60
        )


def test_reporter_notice_needs_a_contact_and_counts_repeats(
    sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    now = clock.now()
    with sessions.begin() as s:
        silent = add_incident(s, now, summary="no contact")
        assert notify_reporter(s, now, silent, "resolved") is None
        mailed = add_incident(
            s, now, summary="by mail", reporter_contact="naidoo@example.org", reporter_language="af"
        )
        first_id = notify_reporter(s, now, mailed, "resolved")
        second_id = notify_reporter(s, now, mailed, "resolved")
        first, second = s.get(OutboxMessage, first_id), s.get(OutboxMessage, second_id)
        assert first is not None and second is not None
        assert first.channel == "email" and first.kind == "reporter_update"
        assert [first.idempotency_key, second.idempotency_key] == [
            f"reporter:{mailed.id}:resolved:0",
            f"reporter:{mailed.id}:resolved:1",
        ]
        assert "opgelos" in (first.subject + first.body).lower()  # Afrikaans


def _plan(engine: Engine, stmt: Any) -> str:
    sql = str(stmt.compile(engine, compile_kwargs={"literal_binds": True, "render_postcompile": True}))
    with engine.begin() as conn:
        if engine.dialect.name == "sqlite":
            return " ".join(str(row[-1]) for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql))
        # An empty table makes any plan cheap: forbid the sequential scan to prove an index can answer.
        conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
        return " ".join(str(row[0]) for row in conn.exec_driver_sql("EXPLAIN " + sql))


def test_claim_queries_are_answered_from_the_deadline_indexes(db: Engine, clock: FakeClock) -> None:
    now = clock.now()
    for kind in ("response", "resolution"):
        for conditions in (sla.warning_conditions(kind, now), sla.breach_conditions(kind, now)):
            plan = _plan(db, sla.claim_query(conditions).with_for_update(skip_locked=False))
            assert "ix_incident_" in plan and ("SCAN incident " not in plan), plan
            # The one index per deadline each database keeps (migration 0006) is the one its planner takes.
            assert ("_pending" in plan) == (db.dialect.name == "postgresql"), plan
    pending = _plan(db, select(Incident.id).where(Incident.sla_computed_at.is_(None)).limit(10))
    assert "ix_incident_sla_pending" in pending, pending


def test_breach_starts_the_configured_breach_policy_once(
    ctx: AppContext, clock: FakeClock, crew: Crew
) -> None:
    from engine.models import Escalation, Policy, PolicyLevel, PolicyTarget

    with ctx.sessions.begin() as s:
        policy = Policy(name="SLA breach")
        policy.levels = [
            PolicyLevel(level=1, targets=[PolicyTarget(type="team_manager", identifier="roads")])
        ]
        s.add(policy)
        s.flush()
        s.add(
            SlaConfig(
                site="durban",
                category="roads",
                response_minutes=60,
                resolution_minutes=120,
                breach_policy_id=policy.id,
            )
        )
        incident = add_incident(s, clock.now(), team_id=crew.team_id)
        compute_deadlines(s, incident, clock.now())
        incident_id = incident.id
    clock.advance(HOUR)
    assert sla_pass(ctx)["escalations_started"] == 1
    clock.advance(HOUR)  # the resolution breach while the breach escalation still runs adds no second one
    result = sla_pass(ctx)
    assert result["resolution_breaches"] == 1 and result["escalations_started"] == 0
    with ctx.sessions() as s:
        escalations = s.scalars(select(Escalation).where(Escalation.incident_id == incident_id)).all()
        assert [(e.trigger, e.policy_name) for e in escalations] == [("sla_breach", "SLA breach")]


def test_warning_and_breach_on_a_teams_incident_reach_the_team_in_app_only(
    ctx: AppContext, clock: FakeClock, crew: Crew
) -> None:
    """The team that owns the incident sees its warning and its breach (every member, in their list); the
    messages still go only to the people named (the assignee, the manager), not to the whole team."""
    incident_id = _breach_setup(ctx, clock, crew)
    clock.advance(timedelta(minutes=48))  # 80 % of the hour: the warning
    assert sla_pass(ctx)["response_warnings"] == 1
    clock.advance(timedelta(minutes=12))  # the breach
    assert sla_pass(ctx)["response_breaches"] == 1
    with ctx.sessions() as s:
        to_team = s.scalars(
            select(Notification).where(Notification.team_id == crew.team_id).order_by(Notification.kind)
        ).all()
        assert [(n.kind, n.incident_id, n.person_id, n.role) for n in to_team] == [
            ("sla_response_breach", incident_id, None, None),
            ("sla_response_warning", incident_id, None, None),
        ]
        messaged = set(s.scalars(select(OutboxMessage.person_id).where(OutboxMessage.person_id.is_not(None))))
        assert crew.other_id not in messaged  # a team member named nowhere is not messaged


def test_a_warning_on_an_incident_without_a_team_has_no_team_notice(
    ctx: AppContext, clock: FakeClock
) -> None:
    with ctx.sessions.begin() as s:
        incident = add_incident(s, clock.now())
        compute_deadlines(s, incident, clock.now())
    clock.advance(20 * HOUR)
    sla_pass(ctx)
    with ctx.sessions() as s:
        assert s.scalar(select(func.count()).where(Notification.team_id.is_not(None))) == 0
