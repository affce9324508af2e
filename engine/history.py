"""Read queries for the supervisor console: closed incidents and the audit log, searched by text, dates and
actor, and the on-call outlook of a schedule.

Every query is bounded: a page holds at most `MAX_PAGE` rows and one more row is read to tell whether another
page follows, so no query counts or loads a whole table (the console pages through 100,000 incidents). The
filters lead with indexed columns — incidents by (status, created_at), one index walk per status merged, and
events by `at` — and text matching (case-insensitive LIKE) only narrows what those indexes already
selected, stopping as soon as a page is full. Results are plain frozen records,
safe to hand to another thread.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from sqlalchemy import ColumnElement, Select, and_, case, func, or_, select, union_all
from sqlalchemy.orm import Session

from engine.models import EngineNode, Event, Incident, IncidentStatus, Person, Policy, Schedule, Team

MAX_PAGE = 500
CLOSED_STATUSES: tuple[str, ...] = (IncidentStatus.RESOLVED.value, IncidentStatus.CANCELLED.value)

R = TypeVar("R")


@dataclass(frozen=True)
class ResultPage(Generic[R]):
    rows: list[R]
    offset: int
    limit: int
    has_more: bool


@dataclass(frozen=True)
class IncidentRecord:
    id: int
    key: str
    summary: str
    severity: str
    category: str
    site: str
    status: str
    team: str
    created_at: datetime
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    resolved_at: datetime | None
    resolved_by: str | None
    cancelled_at: datetime | None

    @property
    def closed_at(self) -> datetime | None:
        return self.resolved_at or self.cancelled_at


@dataclass(frozen=True)
class EventRecord:
    id: int
    at: datetime
    kind: str
    actor: str
    message: str
    incident_id: int | None
    escalation_id: int | None
    data: dict[str, Any]


def _like(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _bounds(limit: int, offset: int) -> tuple[int, int]:
    if limit <= 0:
        raise ValueError("limit must be positive")
    if offset < 0:
        raise ValueError("offset must not be negative")
    return min(limit, MAX_PAGE), offset


def _page(session: Session, stmt: Select[Any], limit: int, offset: int) -> tuple[Sequence[Any], bool]:
    rows = session.execute(stmt.limit(limit + 1).offset(offset)).all()
    return rows[:limit], len(rows) > limit


def search_incidents(
    session: Session,
    *,
    text: str = "",
    since: datetime | None = None,
    until: datetime | None = None,
    actor: str = "",
    statuses: Sequence[str] = CLOSED_STATUSES,
    offset: int = 0,
    limit: int = 100,
) -> ResultPage[IncidentRecord]:
    """Incidents (closed ones by default) created in [since, until), newest first.

    `text` matches the summary, key, details, site and category (case-insensitive), or the incident number
    when it is one. `actor` matches who acknowledged or resolved it.
    """
    limit, offset = _bounds(limit, offset)
    conditions: list[ColumnElement[bool]] = []
    if since is not None:
        conditions.append(Incident.created_at >= since)
    if until is not None:
        conditions.append(Incident.created_at < until)
    needle = text.strip()
    if needle:
        pattern = _like(needle)
        matches: list[ColumnElement[bool]] = [
            Incident.summary.ilike(pattern, escape="\\"),
            Incident.key.ilike(pattern, escape="\\"),
            Incident.details.ilike(pattern, escape="\\"),
            Incident.site.ilike(pattern, escape="\\"),
            Incident.category.ilike(pattern, escape="\\"),
        ]
        number = needle.lstrip("#")
        if number.isdigit() and len(number) < 18:
            matches.append(Incident.id == int(number))
        conditions.append(or_(*matches))
    who = actor.strip()
    if who:
        conditions.append(
            or_(
                Incident.acknowledged_by.ilike(_like(who), escape="\\"),
                Incident.resolved_by.ilike(_like(who), escape="\\"),
            )
        )
    # Newest first, per status: each branch walks the (status, created_at) index backwards and stops after
    # offset + limit + 1 matches, instead of the planner sorting every closed incident for one page.
    wanted = list(dict.fromkeys(statuses)) or [st.value for st in IncidentStatus]
    need = offset + limit + 1
    branches = []
    for status in wanted:
        branch = (
            select(Incident.id.label("id"), Incident.created_at.label("created_at"))
            .where(Incident.status == status, *conditions)
            .order_by(Incident.created_at.desc(), Incident.id.desc())
            .limit(need)
            .subquery()
        )
        branches.append(select(branch.c.id, branch.c.created_at))
    newest = (branches[0] if len(branches) == 1 else union_all(*branches)).subquery()
    id_rows = session.execute(
        select(newest.c.id)
        .order_by(newest.c.created_at.desc(), newest.c.id.desc())
        .limit(limit + 1)
        .offset(offset)
    ).all()
    more = len(id_rows) > limit
    ids = [r[0] for r in id_rows[:limit]]
    stmt = (
        select(
            Incident.id,
            Incident.key,
            Incident.summary,
            Incident.severity,
            Incident.category,
            Incident.site,
            Incident.status,
            Team.name,
            Incident.created_at,
            Incident.acknowledged_at,
            Incident.acknowledged_by,
            Incident.resolved_at,
            Incident.resolved_by,
            Incident.cancelled_at,
        )
        .outerjoin(Team, Team.id == Incident.team_id)
        .where(Incident.id.in_(ids))
    )
    position = {incident_id: i for i, incident_id in enumerate(ids)}
    rows = sorted(session.execute(stmt).all(), key=lambda r: position[r[0]]) if ids else []
    records = [
        IncidentRecord(
            id=r[0],
            key=r[1],
            summary=r[2],
            severity=r[3],
            category=r[4],
            site=r[5],
            status=r[6],
            team=r[7] or "",
            created_at=r[8],
            acknowledged_at=r[9],
            acknowledged_by=r[10],
            resolved_at=r[11],
            resolved_by=r[12],
            cancelled_at=r[13],
        )
        for r in rows
    ]
    return ResultPage(rows=records, offset=offset, limit=limit, has_more=more)


def search_events(
    session: Session,
    *,
    text: str = "",
    since: datetime | None = None,
    until: datetime | None = None,
    actor: str = "",
    kind: str = "",
    incident_id: int | None = None,
    offset: int = 0,
    limit: int = 100,
) -> ResultPage[EventRecord]:
    """The audit log: events in [since, until), newest first, filtered by text (message or kind), actor
    (case-insensitive substring), exact kind and incident."""
    limit, offset = _bounds(limit, offset)
    conditions: list[ColumnElement[bool]] = []
    if since is not None:
        conditions.append(Event.at >= since)
    if until is not None:
        conditions.append(Event.at < until)
    if kind.strip():
        conditions.append(Event.kind == kind.strip())
    if incident_id is not None:
        conditions.append(Event.incident_id == incident_id)
    needle = text.strip()
    if needle:
        pattern = _like(needle)
        conditions.append(
            or_(Event.message.ilike(pattern, escape="\\"), Event.kind.ilike(pattern, escape="\\"))
        )
    who = actor.strip()
    if who:
        conditions.append(Event.actor.ilike(_like(who), escape="\\"))
    stmt = (
        select(
            Event.id,
            Event.at,
            Event.kind,
            Event.actor,
            Event.message,
            Event.incident_id,
            Event.escalation_id,
            Event.data,
        )
        .where(*conditions)
        .order_by(Event.at.desc(), Event.id.desc())
    )
    rows, more = _page(session, stmt, limit, offset)
    records = [
        EventRecord(
            id=r[0],
            at=r[1],
            kind=r[2],
            actor=r[3],
            message=r[4],
            incident_id=r[5],
            escalation_id=r[6],
            data=dict(r[7] or {}),
        )
        for r in rows
    ]
    return ResultPage(rows=records, offset=offset, limit=limit, has_more=more)


def incident_events(session: Session, incident_id: int, limit: int = MAX_PAGE) -> list[EventRecord]:
    """One incident's timeline, oldest first (the detail pane of the history view)."""
    page = search_events(session, incident_id=incident_id, limit=limit)
    return list(reversed(page.rows))


@dataclass(frozen=True)
class ShiftRecord:
    person: str  # handle
    name: str
    start: datetime
    end: datetime
    source: str  # "override" or "rotation:<name>"


def schedule_outlook(session: Session, handle: str, at: datetime, count: int = 60) -> list[ShiftRecord]:
    """Who is on call for the schedule `handle` from `at` on: the shift in force, then the next ones.

    Empty when the schedule does not exist (yet) or nobody is on call."""
    from engine.oncall import upcoming_shifts

    schedule_id = session.scalar(select(Schedule.id).where(Schedule.handle == handle))
    if schedule_id is None:
        return []
    shifts = upcoming_shifts(session, schedule_id, at, count)
    ids = {s.person_id for s in shifts}
    people = {p.id: p for p in session.scalars(select(Person).where(Person.id.in_(ids)))} if ids else {}
    out: list[ShiftRecord] = []
    for s in shifts:
        person = people.get(s.person_id)
        out.append(
            ShiftRecord(
                person=person.handle if person else str(s.person_id),
                name=person.name if person else f"person {s.person_id}",
                start=s.start,
                end=s.end,
                source=s.source,
            )
        )
    return out


@dataclass(frozen=True)
class BreachRow:
    group: str  # the category or site ("" shows as "(none)")
    incidents: int
    monitored: int
    response_breaches: int
    resolution_breaches: int

    @property
    def breaches(self) -> int:
        return self.response_breaches + self.resolution_breaches


def breaches_by(
    session: Session,
    by: str,
    *,
    since: datetime | None,
    until: datetime | None,
    policy: str | None = None,
    team: str | None = None,
    site: str | None = None,
    category: str | None = None,
    severity: str | None = None,
) -> list[BreachRow]:
    """SLA breaches per category or per site for incidents created in [since, until), most breaches first.

    The same filters as engine.stats.compute; sensitive incidents are never SLA-monitored, so they are not
    counted as monitored or breached. One GROUP BY in the database."""
    if by not in ("category", "site"):
        raise ValueError("breaches_by groups by 'category' or 'site'")
    column = Incident.category if by == "category" else Incident.site
    conditions: list[ColumnElement[bool]] = []
    if since is not None:
        conditions.append(Incident.created_at >= since)
    if until is not None:
        conditions.append(Incident.created_at < until)
    if policy:
        conditions.append(Incident.policy_id.in_(select(Policy.id).where(Policy.name == policy)))
    if team:
        conditions.append(Incident.team_id.in_(select(Team.id).where(Team.handle == team)))
    if site:
        conditions.append(Incident.site == site)
    if category:
        conditions.append(Incident.category == category)
    if severity:
        conditions.append(Incident.severity == severity)
    monitored = Incident.sensitive.is_(False)
    response = func.sum(case((and_(monitored, Incident.response_breached_at.is_not(None)), 1), else_=0))
    resolution = func.sum(case((and_(monitored, Incident.resolution_breached_at.is_not(None)), 1), else_=0))
    stmt = (
        select(
            column,
            func.count(Incident.id),
            func.sum(case((and_(monitored, Incident.response_due_at.is_not(None)), 1), else_=0)),
            response,
            resolution,
        )
        .where(*conditions)
        .group_by(column)
        .order_by((response + resolution).desc(), column)
    )
    return [
        BreachRow(
            group=str(g or ""),
            incidents=int(n),
            monitored=int(m or 0),
            response_breaches=int(r or 0),
            resolution_breaches=int(x or 0),
        )
        for g, n, m, r, x in session.execute(stmt)
    ]


@dataclass(frozen=True)
class NodeRecord:
    id: str
    hostname: str
    pid: int
    mode: str
    version: str
    status: str
    started_at: datetime
    heartbeat_at: datetime
    heartbeat_age_seconds: float
    alive: bool


def engine_nodes(session: Session, now: datetime, stale_after: float = 30.0) -> list[NodeRecord]:
    """Every engine node that has reported, freshest heartbeat first; alive = a heartbeat within
    `stale_after` seconds and not stopped."""
    rows = session.scalars(select(EngineNode).order_by(EngineNode.heartbeat_at.desc(), EngineNode.id)).all()
    out: list[NodeRecord] = []
    for n in rows:
        age = max(0.0, (now - n.heartbeat_at).total_seconds())
        out.append(
            NodeRecord(
                id=n.id,
                hostname=n.hostname,
                pid=n.pid,
                mode=n.mode,
                version=n.version,
                status=n.status,
                started_at=n.started_at,
                heartbeat_at=n.heartbeat_at,
                heartbeat_age_seconds=age,
                alive=age <= stale_after and n.status != "stopped",
            )
        )
    return out
