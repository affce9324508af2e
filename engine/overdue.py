"""Workflow items past their time limit: remind the assignee at 1x, escalate to a role at 2x, expire past the end.

Like the SLA pass, nothing here loops over items in Python to find the due ones: each step claims its rows with a
guarded UPDATE (`… AND reminded_at IS NULL`) and acts only on the rows it won, so a reminder, an escalation or
an expiry happens once however many engines run. Elapsed time is compared in the database (julianday on SQLite,
epoch seconds on PostgreSQL) because every item carries its own limit. In-app notices go through
engine.notifications, whose dedupe key also keeps one (recipient, event, item, day).

The master switches decide what may happen: with notifications off, no reminders (and no escalations, which are
notices to a role) are claimed, so they are all still due when the switch goes back on; with escalations off, the
2x step waits the same way. Expiry is a change of state and always happens; its notice follows the switch.

`retention_cleanup` deletes old notifications, handled inbound messages and long-closed workflow items.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import ColumnElement, CursorResult, Delete, delete, extract, func, literal, select, update
from sqlalchemy.orm import Session

from engine.context import AppContext
from engine.db import write_session
from engine.models import InboundMessage, Notification, Person, UTCDateTime, WorkflowItem
from engine.notifications import notify
from engine.switches import escalations_enabled, notifications_enabled
from engine.timeline import record

BATCH_SIZE = 500
MAX_BATCHES = 20
OPEN = "open"
DONE = "done"
EXPIRED = "expired"


def _elapsed_at_least(dialect: str, now: datetime, factor: int) -> ColumnElement[bool]:
    """started_at + factor × time_limit_seconds <= now, computed by the database for every row."""
    limit = WorkflowItem.time_limit_seconds * factor
    now_param = literal(now, UTCDateTime())
    if dialect == "sqlite":
        elapsed = (func.julianday(now_param) - func.julianday(WorkflowItem.started_at)) * 86400.0
        # julianday is a double: half a millisecond of slack so "exactly at the limit" counts as reached.
        return elapsed + 0.0005 >= limit
    return extract("epoch", now_param - WorkflowItem.started_at) >= limit


def _claim(session: Session, conditions: Sequence[ColumnElement[bool]], values: dict[str, Any]) -> list[int]:
    """Ids of up to a batch of open items matching `conditions` that this engine changed with `values`."""
    candidates = session.scalars(
        select(WorkflowItem.id).where(*conditions).limit(BATCH_SIZE).with_for_update(skip_locked=True)
    ).all()
    if not candidates:
        return []
    return list(
        session.scalars(
            update(WorkflowItem)
            .where(WorkflowItem.id.in_(list(candidates)), *conditions)
            .values(**values)
            .returning(WorkflowItem.id)
            .execution_options(synchronize_session=False)
        ).all()
    )


def _items(session: Session, ids: list[int]) -> list[WorkflowItem]:
    return list(
        session.scalars(select(WorkflowItem).where(WorkflowItem.id.in_(ids)).order_by(WorkflowItem.id))
    )


def _limit_text(seconds: int) -> str:
    minutes = seconds // 60
    if minutes % 60 == 0:
        return f"{minutes // 60} h"
    return f"{minutes} min"


def _expire(session: Session, now: datetime) -> int:
    ids = _claim(
        session,
        [WorkflowItem.status == OPEN, WorkflowItem.ends_at.is_not(None), WorkflowItem.ends_at <= now],
        {"status": EXPIRED, "expired_at": now},
    )
    for item in _items(session, ids):
        if item.incident_id is not None:
            record(
                session,
                "workflow_expired",
                now,
                incident_id=item.incident_id,
                message=f"{item.title} expired",
                data={"item_id": item.id},
            )
        if item.assignee_id is not None:
            notify(
                session,
                now,
                person_id=item.assignee_id,
                kind="workflow_expired",
                item=item,
                title=f"Expired: {item.title}",
                body="The end time passed before it was done.",
            )
    return len(ids)


def _remind(session: Session, now: datetime) -> int:
    dialect = session.get_bind().dialect.name
    ids = _claim(
        session,
        [WorkflowItem.status == OPEN, WorkflowItem.reminded_at.is_(None), _elapsed_at_least(dialect, now, 1)],
        {"reminded_at": now},
    )
    for item in _items(session, ids):
        title = f"Overdue: {item.title}"
        body = f"Its time limit of {_limit_text(item.time_limit_seconds)} has passed."
        context = _context(session, item, now)
        if item.assignee_id is not None:
            notify(
                session,
                now,
                person_id=item.assignee_id,
                kind="workflow_overdue",
                item=item,
                title=title,
                body=body,
                context=context,
            )
        else:
            notify(
                session,
                now,
                role=item.escalate_to_role,
                kind="workflow_overdue",
                item=item,
                title=title,
                body=body,
                context=context,
            )
        if item.incident_id is not None:
            record(
                session,
                "workflow_overdue",
                now,
                incident_id=item.incident_id,
                message=title,
                data={"item_id": item.id, "assignee_id": item.assignee_id},
            )
    return len(ids)


def _escalate(session: Session, now: datetime) -> int:
    dialect = session.get_bind().dialect.name
    ids = _claim(
        session,
        [
            WorkflowItem.status == OPEN,
            WorkflowItem.escalated_at.is_(None),
            _elapsed_at_least(dialect, now, 2),
        ],
        {"escalated_at": now},
    )
    for item in _items(session, ids):
        assignee = session.get(Person, item.assignee_id) if item.assignee_id is not None else None
        who = assignee.name if assignee else "nobody"
        title = f"Escalated: {item.title}"
        body = (
            f"Still open at twice its time limit ({_limit_text(item.time_limit_seconds)}); assigned to {who}."
        )
        notify(
            session,
            now,
            role=item.escalate_to_role,
            kind="workflow_escalated",
            item=item,
            title=title,
            body=body,
            context=_context(session, item, now),
        )
        if item.incident_id is not None:
            record(
                session,
                "workflow_escalated",
                now,
                incident_id=item.incident_id,
                message=title,
                data={"item_id": item.id, "role": item.escalate_to_role},
            )
            _escalate_incident(session, item, now, title)
    return len(ids)


def _escalate_incident(session: Session, item: WorkflowItem, now: datetime, why: str) -> None:
    """An item of an open incident, overdue twice over: when the incident's policy escalates on `overdue`,
    its live escalation moves on now, or the policy starts one."""
    from engine.claims import lock_incidents
    from engine.escalation import escalate_for
    from engine.models import Incident, Trigger

    lock_incidents(session, [item.incident_id])
    incident = session.get(Incident, item.incident_id)
    if incident is None or incident.status not in ("open", "acknowledged", "in_progress", "escalated"):
        return
    escalate_for(session, now, incident, Trigger.OVERDUE, why=why, actor="overdue", only_if_listed=True)


def _context(session: Session, item: WorkflowItem, now: datetime) -> dict[str, Any]:
    """The variables of the reminder and overdue_escalation message templates."""
    from engine.models import Incident

    assignee = session.get(Person, item.assignee_id) if item.assignee_id is not None else None
    incident = session.get(Incident, item.incident_id) if item.incident_id is not None else None
    due = item.started_at + timedelta(seconds=item.time_limit_seconds)
    over = now - due
    minutes = max(0, int(over.total_seconds() // 60))
    return {
        "title": item.title,
        "due_at": due,
        "overdue_by": f"{minutes // 60} h {minutes % 60} min" if minutes >= 60 else f"{minutes} min",
        "assignee_name": assignee.name if assignee else "nobody",
        "incident_id": item.incident_id,
        "summary": incident.summary if incident else "",
        "item_id": item.id,
    }


def _batches(ctx: AppContext, work: Callable[[Session], int]) -> int:
    total = 0
    for _ in range(MAX_BATCHES):
        with write_session(ctx.sessions) as s:
            done = work(s)
        total += done
        if done < BATCH_SIZE:
            break
    return total


def overdue_pass(ctx: AppContext) -> dict[str, Any]:
    """One overdue pass; safe to run on many engines at once."""
    now = ctx.clock.now()
    with ctx.sessions() as s:
        notices_on = notifications_enabled(s)
        escalating_on = escalations_enabled(s)
    result: dict[str, Any] = {"expired": 0, "reminded": 0, "escalated": 0, "skipped": []}
    result["expired"] = _batches(ctx, lambda s: _expire(s, now))
    if notices_on:
        result["reminded"] = _batches(ctx, lambda s: _remind(s, now))
    else:
        result["skipped"].append("reminders: notifications switched off")
    if notices_on and escalating_on:
        result["escalated"] = _batches(ctx, lambda s: _escalate(s, now))
    else:
        result["skipped"].append(
            "escalations: " + ("escalations" if notices_on else "notifications") + " switched off"
        )
    return result


def complete_item(session: Session, item_id: int, now: datetime) -> bool:
    """Mark an open workflow item done; False when it was not open."""
    changed = session.execute(
        update(WorkflowItem)
        .where(WorkflowItem.id == item_id, WorkflowItem.status == OPEN)
        .values(status=DONE, completed_at=now)
        .returning(WorkflowItem.id)
        .execution_options(synchronize_session=False)
    ).first()
    return changed is not None


def retention_cleanup(ctx: AppContext, days: int) -> dict[str, int]:
    """Delete notifications, handled inbound messages and closed workflow items older than `days` days."""
    if days < 1:
        raise ValueError("retention must be at least one day")
    cutoff = ctx.clock.now() - timedelta(days=days)
    with write_session(ctx.sessions) as s:
        notifications = _deleted(s, delete(Notification).where(Notification.created_at < cutoff))
        inbound = _deleted(
            s,
            delete(InboundMessage).where(
                InboundMessage.handled.is_(True), InboundMessage.received_at < cutoff
            ),
        )
        items = _deleted(
            s,
            delete(WorkflowItem).where(
                WorkflowItem.status.in_([DONE, EXPIRED]),
                func.coalesce(WorkflowItem.completed_at, WorkflowItem.expired_at, WorkflowItem.started_at)
                < cutoff,
            ),
        )
    return {"notifications": notifications, "inbound_messages": inbound, "workflow_items": items}


def _deleted(session: Session, stmt: Delete) -> int:
    result = session.execute(stmt.execution_options(synchronize_session=False))
    return int(cast(CursorResult[Any], result).rowcount or 0)
