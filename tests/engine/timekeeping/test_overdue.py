"""Workflow items: reminder at 1x, escalation to a role at 2x, expiry past the end; notices deduplicated per day."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, sessionmaker

from engine import overdue
from engine.clock import FakeClock
from engine.context import AppContext
from engine.db import make_engine
from engine.errors import ValidationError
from engine.models import Event, InboundMessage, Notification, WorkflowItem
from engine.notifications import notify
from engine.overdue import complete_item, overdue_pass, retention_cleanup
from engine.settings import Settings
from engine.switches import ESCALATIONS_ENABLED, NOTIFICATIONS_ENABLED, get_switch, set_switch

from .conftest import Crew, add_incident

HOUR = timedelta(hours=1)


def _item(ctx: AppContext, clock: FakeClock, crew: Crew, **fields: object) -> int:
    with ctx.sessions.begin() as s:
        values: dict[str, object] = {
            "title": "Verify isolation at substation 4",
            "assignee_id": crew.agent_id,
            "time_limit_seconds": 4 * 3600,
            "started_at": clock.now(),
        }
        values.update(fields)
        item = WorkflowItem(**values)
        s.add(item)
        s.flush()
        return item.id


def _notes(s: Session) -> list[tuple[int | None, str | None, str]]:
    return [(n.person_id, n.role, n.kind) for n in s.scalars(select(Notification).order_by(Notification.id))]


def test_reminds_assignee_at_1x_and_escalates_to_role_at_2x(
    ctx: AppContext, clock: FakeClock, crew: Crew
) -> None:
    item_id = _item(ctx, clock, crew)
    clock.advance(4 * HOUR - timedelta(seconds=1))
    assert overdue_pass(ctx)["reminded"] == 0
    clock.advance(timedelta(seconds=1))
    assert overdue_pass(ctx)["reminded"] == 1
    assert overdue_pass(ctx)["reminded"] == 0
    clock.advance(4 * HOUR - timedelta(seconds=1))
    assert overdue_pass(ctx)["escalated"] == 0
    clock.advance(timedelta(seconds=1))
    assert overdue_pass(ctx)["escalated"] == 1
    assert overdue_pass(ctx)["escalated"] == 0
    with ctx.sessions() as s:
        assert _notes(s) == [
            (crew.agent_id, None, "workflow_overdue"),
            (None, "supervisor", "workflow_escalated"),
        ]
        item = s.get(WorkflowItem, item_id)
        assert item is not None and item.reminded_at is not None and item.escalated_at == clock.now()


def test_engine_away_past_2x_reminds_and_escalates_in_one_pass(
    ctx: AppContext, clock: FakeClock, crew: Crew
) -> None:
    _item(ctx, clock, crew, escalate_to_role="admin")
    clock.advance(9 * HOUR)
    result = overdue_pass(ctx)
    assert (result["reminded"], result["escalated"]) == (1, 1)
    with ctx.sessions() as s:
        assert _notes(s) == [(crew.agent_id, None, "workflow_overdue"), (None, "admin", "workflow_escalated")]


def test_done_item_is_never_reminded(ctx: AppContext, clock: FakeClock, crew: Crew) -> None:
    item_id = _item(ctx, clock, crew)
    clock.advance(HOUR)
    with ctx.sessions.begin() as s:
        assert complete_item(s, item_id, clock.now())
        assert not complete_item(s, item_id, clock.now())
    clock.advance(10 * HOUR)
    result = overdue_pass(ctx)
    assert (result["reminded"], result["escalated"]) == (0, 0)


def test_item_past_its_end_expires_and_its_incident_timeline_says_so(
    ctx: AppContext, clock: FakeClock, crew: Crew
) -> None:
    with ctx.sessions.begin() as s:
        incident_id = add_incident(s, clock.now()).id
    item_id = _item(ctx, clock, crew, ends_at=clock.now() + 2 * HOUR, incident_id=incident_id)
    clock.advance(3 * HOUR)
    result = overdue_pass(ctx)
    assert (result["expired"], result["reminded"]) == (1, 0)
    with ctx.sessions() as s:
        item = s.get(WorkflowItem, item_id)
        assert item is not None and (item.status, item.expired_at) == ("expired", clock.now())
        assert _notes(s) == [(crew.agent_id, None, "workflow_expired")]
        kinds = s.scalars(select(Event.kind).where(Event.incident_id == incident_id)).all()
        assert kinds == ["workflow_expired"]
    clock.advance(10 * HOUR)
    assert overdue_pass(ctx) == {"expired": 0, "reminded": 0, "escalated": 0, "skipped": []}


def test_unassigned_item_reminds_the_role(ctx: AppContext, clock: FakeClock, crew: Crew) -> None:
    _item(ctx, clock, crew, assignee_id=None)
    clock.advance(5 * HOUR)
    overdue_pass(ctx)
    with ctx.sessions() as s:
        assert _notes(s) == [(None, "supervisor", "workflow_overdue")]


def test_switches_off_defer_reminders_and_escalations_without_losing_them(
    ctx: AppContext, clock: FakeClock, crew: Crew
) -> None:
    _item(ctx, clock, crew)
    with ctx.sessions.begin() as s:
        set_switch(s, NOTIFICATIONS_ENABLED, False, now=clock.now())
        set_switch(s, ESCALATIONS_ENABLED, False, now=clock.now())
    clock.advance(9 * HOUR)
    result = overdue_pass(ctx)
    assert (result["reminded"], result["escalated"]) == (0, 0) and len(result["skipped"]) == 2
    with ctx.sessions.begin() as s:
        set_switch(s, NOTIFICATIONS_ENABLED, True, now=clock.now())
    assert overdue_pass(ctx)["reminded"] == 1
    with ctx.sessions.begin() as s:
        set_switch(s, ESCALATIONS_ENABLED, True, now=clock.now())
    assert overdue_pass(ctx)["escalated"] == 1


def test_same_person_event_item_and_local_day_is_notified_once(
    sessions: sessionmaker[Session], clock: FakeClock, crew: Crew
) -> None:
    # Johannesburg midnight is 22:00 UTC: 21:30 and 21:59 UTC are one local day, 22:00 UTC the next.
    evening = datetime(2026, 3, 2, 21, 30, tzinfo=UTC)
    with sessions.begin() as s:
        item = WorkflowItem(title="Close permit", time_limit_seconds=60, started_at=evening)
        s.add(item)
        s.flush()
        args = {"person_id": crew.agent_id, "kind": "workflow_overdue", "item": item, "title": "Overdue"}
        assert notify(s, evening, **args)  # type: ignore[arg-type]
        assert not notify(s, evening + timedelta(minutes=29), **args)  # type: ignore[arg-type]
        assert notify(s, evening + timedelta(minutes=30), **args)  # type: ignore[arg-type]
        assert notify(
            s, evening, person_id=crew.other_id, kind="workflow_overdue", item=item, title="Overdue"
        )
        assert notify(s, evening, role="supervisor", kind="workflow_overdue", item=item, title="Overdue")
        assert not notify(s, evening, role="supervisor", kind="workflow_overdue", item=item, title="Overdue")
    with sessions() as s:
        keys = s.scalars(select(Notification.dedupe_key).order_by(Notification.id)).all()
        assert keys == [
            f"person:{crew.agent_id}:workflow_overdue:item:{item.id}:2026-03-02",
            f"person:{crew.agent_id}:workflow_overdue:item:{item.id}:2026-03-03",
            f"person:{crew.other_id}:workflow_overdue:item:{item.id}:2026-03-02",
            f"role:supervisor:workflow_overdue:item:{item.id}:2026-03-02",
        ]


def test_a_duplicate_from_another_session_is_skipped_silently(
    sessions: sessionmaker[Session], clock: FakeClock, crew: Crew
) -> None:
    now = clock.now()
    with sessions.begin() as s:
        assert notify(s, now, person_id=crew.agent_id, kind="hello", title="Hi")
    with sessions.begin() as s:
        assert not notify(s, now, person_id=crew.agent_id, kind="hello", title="Hi")
        # The transaction is still usable after the skipped insert.
        assert notify(s, now, person_id=crew.manager_id, kind="hello", title="Hi")


def test_notifications_switch_off_writes_nothing(
    sessions: sessionmaker[Session], clock: FakeClock, crew: Crew
) -> None:
    with sessions.begin() as s:
        set_switch(s, NOTIFICATIONS_ENABLED, False, now=clock.now())
        assert not notify(s, clock.now(), person_id=crew.agent_id, kind="hello", title="Hi")
        assert s.scalar(select(func.count()).select_from(Notification)) == 0


def test_retention_removes_only_old_notifications_handled_inbound_and_closed_items(
    ctx: AppContext, clock: FakeClock, crew: Crew
) -> None:
    old = clock.now()
    with ctx.sessions.begin() as s:
        notify(s, old, person_id=crew.agent_id, kind="old", title="old")
        s.add(
            InboundMessage(
                channel="sms", from_address="+27820000002", body="1", handled=True, received_at=old
            )
        )
        s.add(
            InboundMessage(
                channel="sms", from_address="+27820000002", body="?", handled=False, received_at=old
            )
        )
        s.add(
            WorkflowItem(
                title="done long ago", time_limit_seconds=60, started_at=old, status="done", completed_at=old
            )
        )
        s.add(WorkflowItem(title="still open", time_limit_seconds=60, started_at=old))
    clock.advance(timedelta(days=31))
    with ctx.sessions.begin() as s:
        notify(s, clock.now(), person_id=crew.agent_id, kind="new", title="new")
    assert retention_cleanup(ctx, 30) == {"notifications": 1, "inbound_messages": 1, "workflow_items": 1}
    with ctx.sessions() as s:
        assert s.scalars(select(Notification.kind)).all() == ["new"]
        assert s.scalars(select(InboundMessage.body)).all() == ["?"]
        assert s.scalars(select(WorkflowItem.title)).all() == ["still open"]


def test_two_engines_remind_each_overdue_item_once(
    db: Engine, settings: Settings, clock: FakeClock, crew: Crew, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(overdue, "BATCH_SIZE", 5)
    url = db.url.render_as_string(hide_password=False)
    engines = [make_engine(url), make_engine(url)]
    contexts = [AppContext.create(settings, clock=clock, mode=f"t{i}", db=e) for i, e in enumerate(engines)]
    with contexts[0].sessions.begin() as s:
        for i in range(30):
            s.add(
                WorkflowItem(
                    title=f"Step {i}",
                    assignee_id=crew.agent_id,
                    time_limit_seconds=3600,
                    started_at=clock.now(),
                )
            )
    clock.advance(3 * HOUR)
    barrier = threading.Barrier(2)
    results: list[dict[str, Any]] = []

    def run(c: AppContext) -> None:
        barrier.wait()
        results.append(overdue_pass(c))

    threads = [threading.Thread(target=run, args=(c,)) for c in contexts]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for e in engines:
        e.dispose()
    assert sum(int(r["reminded"]) for r in results) == 30
    assert sum(int(r["escalated"]) for r in results) == 30
    with Session(db) as s:
        assert s.scalar(select(func.count()).select_from(Notification)) == 60


def test_unknown_switch_is_refused_and_changes_are_on_the_timeline(
    sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    with sessions.begin() as s:
        with pytest.raises(ValidationError):
            set_switch(s, "pagers_enabled", False, now=clock.now())
        set_switch(s, NOTIFICATIONS_ENABLED, False, now=clock.now(), by="supervisor")
    with sessions() as s:
        assert get_switch(s, NOTIFICATIONS_ENABLED) is False
        assert get_switch(s, ESCALATIONS_ENABLED) is True
        event = s.scalars(select(Event).where(Event.kind == "switch_changed")).one()
        assert (event.actor, event.data) == ("supervisor", {"name": NOTIFICATIONS_ENABLED, "enabled": False})
