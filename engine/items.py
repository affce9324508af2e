"""Workflow items, by hand: add one (a step with a time limit, optionally for an incident), re-assign it,
complete it, list them. The overdue pass (engine.overdue) then reminds the assignee at 1x the limit and
escalates to the item's role at 2x.

Every change is written to the audit trail as the person who made it and, for an item of an incident, to
that incident's timeline; the new assignee also gets an in-app notification. Readers take a Session and
return `ItemRecord`s; writers take the AppContext and the acting Identity. The entry points check the
permission (Action.WORKFLOW_ITEMS): any operator may add, re-assign and complete an item, as they may an
incident, because items are the shift's shared work; the audit trail says who did what.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from engine import audit, timeline
from engine.context import AppContext
from engine.db import write_session
from engine.errors import InvalidTransition, NotFound, ValidationError
from engine.models import Incident, Person, WorkflowItem
from engine.notifications import notify
from engine.overdue import DONE, EXPIRED, OPEN
from engine.overdue import complete_item as _complete_open
from engine.permissions import ROLES, Identity

STATUSES = (OPEN, DONE, EXPIRED)
MAX_TIME_LIMIT = 30 * 24 * 3600  # a month: longer is a plan, not a step with a time limit


@dataclass(frozen=True)
class ItemRecord:
    id: int
    title: str
    status: str  # open, done, expired
    incident_id: int | None
    assignee: str | None  # the person's handle
    assignee_name: str | None
    escalate_to_role: str
    time_limit_seconds: int
    started_at: datetime
    due_at: datetime  # 1x: the assignee is reminded
    escalates_at: datetime  # 2x: the role is told
    reminded_at: datetime | None
    escalated_at: datetime | None
    completed_at: datetime | None
    expired_at: datetime | None

    def overdue(self, now: datetime) -> bool:
        return self.status == OPEN and now >= self.due_at

    def as_dict(self) -> dict[str, Any]:
        return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in asdict(self).items()}


def _record(item: WorkflowItem, person: Person | None) -> ItemRecord:
    limit = timedelta(seconds=item.time_limit_seconds)
    return ItemRecord(
        id=item.id,
        title=item.title,
        status=item.status,
        incident_id=item.incident_id,
        assignee=person.handle if person else None,
        assignee_name=person.name if person else None,
        escalate_to_role=item.escalate_to_role,
        time_limit_seconds=item.time_limit_seconds,
        started_at=item.started_at,
        due_at=item.started_at + limit,
        escalates_at=item.started_at + 2 * limit,
        reminded_at=item.reminded_at,
        escalated_at=item.escalated_at,
        completed_at=item.completed_at,
        expired_at=item.expired_at,
    )


def list_items(
    session: Session, *, status: str | None = OPEN, assignee_id: int | None = None, limit: int = 100
) -> list[ItemRecord]:
    """Items, open ones by default (`status` None: all), soonest due first for open, newest first otherwise;
    only those assigned to `assignee_id` when given."""
    if status is not None and status not in STATUSES:
        raise ValidationError(f"status must be one of {', '.join(STATUSES)}", field="status")
    stmt = select(WorkflowItem, Person).outerjoin(Person, Person.id == WorkflowItem.assignee_id)
    if status is not None:
        stmt = stmt.where(WorkflowItem.status == status)
    if assignee_id is not None:
        stmt = stmt.where(WorkflowItem.assignee_id == assignee_id)
    limit = max(1, min(int(limit), 1000))
    records = [_record(i, p) for i, p in session.execute(stmt.order_by(WorkflowItem.id.desc()).limit(limit))]
    if status == OPEN:
        records.sort(key=lambda r: (r.due_at, r.id))
    return records


def get_item(session: Session, item_id: int) -> ItemRecord:
    item = session.get(WorkflowItem, item_id)
    if item is None:
        raise NotFound(f"no workflow item {item_id}")
    return _record(item, session.get(Person, item.assignee_id) if item.assignee_id else None)


def person_id(session: Session, handle: str) -> int:
    """The id of the person with this handle (NotFound otherwise), for a list of someone's items."""
    found = session.scalar(select(Person.id).where(Person.handle == handle.strip()))
    if found is None:
        raise NotFound(f"no person with handle {handle!r}")
    return int(found)


def _person(session: Session, handle: str) -> Person:
    person = session.scalars(select(Person).where(Person.handle == handle.strip())).one_or_none()
    if person is None:
        raise NotFound(f"no person with handle {handle!r}")
    if not person.active:
        raise ValidationError(f"{person.name} is not active", field="assignee")
    return person


def _tell_assignee(session: Session, now: datetime, item: WorkflowItem, person: Person, by: Identity) -> None:
    if by.person_id == person.id:
        return  # nobody needs telling what they just gave themselves
    notify(
        session,
        now,
        person_id=person.id,
        kind="workflow_assigned",
        item=item,
        title=f"Assigned to you: {item.title}",
        body=f"By {by.label}; due within {_duration(item.time_limit_seconds)}.",
    )


def _duration(seconds: int) -> str:
    if seconds % 3600 == 0:
        return f"{seconds // 3600} h"
    if seconds % 60 == 0:
        return f"{seconds // 60} min"
    return f"{seconds} s"


def create_item(
    ctx: AppContext,
    by: Identity,
    *,
    title: str,
    time_limit_seconds: int,
    incident: int | str | None = None,
    assignee: str | None = None,
    escalate_to_role: str = "supervisor",
) -> ItemRecord:
    """A new open item, started now. `assignee` is a person's handle (None: the role is reminded at 1x)."""
    title = (title or "").strip()
    if not title:
        raise ValidationError("an item needs a title", field="title")
    if len(title) > 500:
        raise ValidationError("a title has at most 500 characters", field="title")
    if isinstance(time_limit_seconds, bool) or not 1 <= int(time_limit_seconds) <= MAX_TIME_LIMIT:
        raise ValidationError("the time limit must be between 1 second and 30 days", field="time_limit")
    if escalate_to_role not in ROLES:
        raise ValidationError(f"escalate_to_role must be one of {', '.join(ROLES)}", field="escalate_to_role")
    now = ctx.clock.now()
    with write_session(ctx.sessions) as session:
        from engine.api import _find_incident

        incident_row: Incident | None = _find_incident(session, incident) if incident is not None else None
        person = _person(session, assignee) if assignee else None
        item = WorkflowItem(
            title=title,
            incident_id=incident_row.id if incident_row else None,
            assignee_id=person.id if person else None,
            escalate_to_role=escalate_to_role,
            time_limit_seconds=int(time_limit_seconds),
            started_at=now,
        )
        session.add(item)
        session.flush()
        who = person.name if person else f"the {escalate_to_role}s"
        message = (
            f"Workflow item {item.id} added: {title} ({who}, within {_duration(item.time_limit_seconds)})"
        )
        _written(session, now, by, item, "item_created", "workflow_added", message)
        if person is not None:
            _tell_assignee(session, now, item, person, by)
        return _record(item, person)


def _written(
    session: Session,
    now: datetime,
    by: Identity,
    item: WorkflowItem,
    action: str,
    event: str,
    message: str,
    changes: list[audit.Change] | None = None,
) -> None:
    """The change in the audit trail and, for an item of an incident, on the incident's timeline."""
    audit.record(
        session,
        now,
        by,
        action,
        object_kind="workflow_item",
        object_name=str(item.id),
        message=message,
        changes=changes or (),
    )
    if item.incident_id is not None:
        timeline.record(
            session,
            event,
            now,
            incident_id=item.incident_id,
            actor=by.name,
            message=message,
            data={"item_id": item.id, "assignee_id": item.assignee_id},
        )


def _open_item(session: Session, item_id: int) -> WorkflowItem:
    item = session.get(WorkflowItem, item_id, with_for_update=True)
    if item is None:
        raise NotFound(f"no workflow item {item_id}")
    if item.status != OPEN:
        raise InvalidTransition(f"workflow item {item_id} is {item.status}, not open")
    return item


def assign_item(ctx: AppContext, by: Identity, item_id: int, assignee: str) -> ItemRecord:
    """Give an open item to another person (a handle). Its reminder and escalation times stay as they were."""
    now = ctx.clock.now()
    with write_session(ctx.sessions) as session:
        item = _open_item(session, item_id)
        person = _person(session, assignee)
        before = session.get(Person, item.assignee_id) if item.assignee_id else None
        item.assignee_id = person.id
        message = f"Workflow item {item.id} ({item.title}) assigned to {person.name}" + (
            f" (was {before.name})" if before else ""
        )
        change = audit.Change("assignee", before.handle if before else None, person.handle)
        _written(session, now, by, item, "item_assigned", "workflow_assigned", message, [change])
        _tell_assignee(session, now, item, person, by)
        session.flush()
        return _record(item, person)


def complete_item(ctx: AppContext, by: Identity, item_id: int) -> ItemRecord:
    """Mark an open item done: no reminder or escalation follows. InvalidTransition when it is not open."""
    now = ctx.clock.now()
    with write_session(ctx.sessions) as session:
        item = _open_item(session, item_id)
        if not _complete_open(session, item_id, now):
            raise InvalidTransition(f"workflow item {item_id} is no longer open")
        session.refresh(item)
        message = f"Workflow item {item.id} done: {item.title}"
        _written(session, now, by, item, "item_completed", "workflow_done", message)
        person = session.get(Person, item.assignee_id) if item.assignee_id else None
        return _record(item, person)
