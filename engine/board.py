"""Read helpers for a live incident board (the console's, and any other client's): plain data, no Qt.

The board follows the change feed: `changes_since` reads Event rows with an id above the last one seen and
names the incidents they touched; `board_rows` builds one flat dict per incident (incident, latest escalation,
latest page and delivery); `open_incident_ids` is the working set a board loads at start (every open incident
plus the ones closed recently), and `closed_ids_before` pages through older closed ones on demand. Each helper is
one or a few indexed queries, so it stays fast with 100,000 incidents in the database.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import String, and_, cast, distinct, func, or_, select
from sqlalchemy.orm import Session, selectinload

from engine.channels.setup import channel_modes
from engine.models import (
    OPEN_INCIDENT_STATUSES,
    EngineNode,
    Escalation,
    Event,
    InboundMessage,
    Incident,
    IncidentStatus,
    OutboxMessage,
    Page,
    Person,
    Policy,
    SlaConfig,
    SystemSetting,
    Team,
)
from engine.settings import Settings

CLOSED_STATUSES = (IncidentStatus.RESOLVED.value, IncidentStatus.CANCELLED.value)
OPEN_STATUSES = tuple(s.value for s in OPEN_INCIDENT_STATUSES)
# SQLite allows 999 bound parameters in older builds; stay well below.
_CHUNK = 500


@dataclass(frozen=True)
class BoardFilter:
    """What a board shows. Empty tuples mean "any"."""

    statuses: tuple[str, ...] = ()
    severities: tuple[str, ...] = ()
    sites: tuple[str, ...] = ()
    teams: tuple[str, ...] = ()  # team handles
    text: str = ""
    closed_within: timedelta = field(default=timedelta(hours=24))
    limit: int = 20_000


def latest_event_id(session: Session) -> int:
    return int(session.scalar(select(func.max(Event.id))) or 0)


def changes_since(session: Session, last_event_id: int, limit: int = 5_000) -> tuple[int, list[int]]:
    """Events after `last_event_id`: (the id to ask from next time, ids of the incidents they touched).

    At most `limit` events are read per call; a busy burst is picked up over the next calls.
    """
    rows = session.execute(
        select(Event.id, Event.incident_id).where(Event.id > last_event_id).order_by(Event.id).limit(limit)
    ).all()
    if not rows:
        return last_event_id, []
    seen: dict[int, None] = {}
    for _event_id, incident_id in rows:
        if incident_id is not None:
            seen[int(incident_id)] = None
    return int(rows[-1][0]), list(seen)


def _apply_filter(stmt: Any, filters: BoardFilter) -> Any:
    if filters.statuses:
        stmt = stmt.where(Incident.status.in_(filters.statuses))
    if filters.severities:
        stmt = stmt.where(Incident.severity.in_(filters.severities))
    if filters.sites:
        stmt = stmt.where(Incident.site.in_(filters.sites))
    if filters.teams:
        stmt = stmt.where(Incident.team_id.in_(select(Team.id).where(Team.handle.in_(filters.teams))))
    text = filters.text.strip()
    if text:
        like = f"%{text.lower()}%"
        stmt = stmt.where(
            or_(
                func.lower(Incident.summary).like(like),
                func.lower(Incident.site).like(like),
                func.lower(Incident.category).like(like),
                func.lower(Incident.key).like(like),
                cast(Incident.id, String) == text,
            )
        )
    return stmt


def open_incident_ids(
    session: Session, filters: BoardFilter | None = None, now: datetime | None = None
) -> list[int]:
    """Every open incident, then those closed within `filters.closed_within` of `now`, newest first."""
    return [int(fact["id"]) for fact in working_set(session, filters, now)]


def working_set(
    session: Session, filters: BoardFilter | None = None, now: datetime | None = None
) -> list[dict[str, Any]]:
    """What `open_incident_ids` names, in its order, with the facts a board sorts on by default — id, status,
    severity, created_at — so a board can load the rows it shows first before the rest (one indexed query
    each for the open and the recently closed incidents, no joins)."""
    filters = filters or BoardFilter()
    columns = (Incident.id, Incident.status, Incident.severity, Incident.created_at)
    open_stmt = _apply_filter(
        select(*columns).where(Incident.status.in_(OPEN_STATUSES)).order_by(Incident.id.desc()), filters
    ).limit(filters.limit)
    facts = [dict(r) for r in session.execute(open_stmt).mappings()]
    if now is not None and filters.closed_within > timedelta(0) and len(facts) < filters.limit:
        # By the updated_at index alone, status checked here: a condition on status would make SQLite walk
        # the status index through every closed incident in the database.
        cutoff = now - filters.closed_within
        recent = _apply_filter(
            select(*columns).where(Incident.updated_at >= cutoff).order_by(Incident.id.desc()), filters
        )
        closed = [dict(r) for r in session.execute(recent).mappings() if r["status"] in CLOSED_STATUSES]
        facts.extend(closed[: filters.limit - len(facts)])
    return facts


def closed_ids_before(session: Session, before_id: int | None, limit: int = 500) -> list[int]:
    """A page of closed incidents with ids below `before_id` (None: from the newest), newest first."""
    stmt = select(Incident.id).where(Incident.status.in_(CLOSED_STATUSES))
    if before_id is not None:
        stmt = stmt.where(Incident.id < before_id)
    return [int(i) for i in session.scalars(stmt.order_by(Incident.id.desc()).limit(limit))]


def _chunks(ids: Sequence[int]) -> Iterable[Sequence[int]]:
    for start in range(0, len(ids), _CHUNK):
        yield ids[start : start + _CHUNK]


def board_rows(session: Session, ids: Sequence[int]) -> list[dict[str, Any]]:
    """One flat dict per existing incident in `ids` (in no particular order); missing ids are left out."""
    out: list[dict[str, Any]] = []
    for chunk in _chunks(list(ids)):
        out.extend(_rows_for(session, chunk))
    return out


def _rows_for(session: Session, ids: Sequence[int]) -> list[dict[str, Any]]:
    # Plain column selects rather than ORM objects: a board load builds thousands of rows, and hydrating
    # entities would cost several times the queries themselves.
    assignee = Person.__table__.alias("assignee")
    inc = Incident.__table__.c
    incidents = (
        session.execute(
            select(
                Incident.__table__,
                Team.name.label("team_name"),
                Team.handle.label("team_handle"),
                assignee.c.name.label("assignee_name"),
                Policy.name.label("policy_name"),
            )
            .outerjoin(Team, Team.id == inc.team_id)
            .outerjoin(assignee, assignee.c.id == inc.assignee_id)
            .outerjoin(Policy, Policy.id == inc.policy_id)
            .where(inc.id.in_(ids))
        )
        .mappings()
        .all()
    )
    if not incidents:
        return []

    latest_esc = (
        select(func.max(Escalation.id))
        .where(Escalation.incident_id.in_(ids))
        .group_by(Escalation.incident_id)
    )
    escalations = {
        r.incident_id: r
        for r in session.execute(
            select(
                Escalation.incident_id,
                Escalation.state,
                Escalation.current_level,
                Escalation.next_action_at,
                Escalation.policy_name,
            ).where(Escalation.id.in_(latest_esc))
        )
    }
    latest_page = select(func.max(Page.id)).where(Page.incident_id.in_(ids)).group_by(Page.incident_id)
    pages = {
        r.incident_id: r
        for r in session.execute(
            select(Page.incident_id, Page.status, Page.level, Person.name)
            .outerjoin(Person, Person.id == Page.person_id)
            .where(Page.id.in_(latest_page))
        )
    }
    # The last *page*: a status update to the reporter or a notice is not who was paged (the detail's
    # timeline shows those).
    latest_msg = (
        select(func.max(OutboxMessage.id))
        .where(OutboxMessage.incident_id.in_(ids), OutboxMessage.kind == "page")
        .group_by(OutboxMessage.incident_id)
    )
    messages = {
        r.incident_id: r
        for r in session.execute(
            select(
                OutboxMessage.incident_id,
                OutboxMessage.channel,
                OutboxMessage.status,
                OutboxMessage.address,
                OutboxMessage.error_text,
                OutboxMessage.simulated,
                Person.name,
            )
            .outerjoin(Person, Person.id == OutboxMessage.person_id)
            .where(OutboxMessage.id.in_(latest_msg))
        )
    }

    rows: list[dict[str, Any]] = []
    for r in incidents:
        incident_id = int(r["id"])
        esc = escalations.get(incident_id)
        page = pages.get(incident_id)
        msg = messages.get(incident_id)
        rows.append(
            {
                "id": incident_id,
                "key": r["key"],
                "source": r["source"],
                "summary": r["summary"],
                "severity": r["severity"],
                "status": r["status"],
                "category": r["category"],
                "site": r["site"],
                "sensitive": bool(r["sensitive"]),
                "team": r["team_name"] or "",
                "team_handle": r["team_handle"] or "",
                "assignee": r["assignee_name"] or "",
                "assignee_id": r["assignee_id"],
                "policy": r["policy_name"] or (esc.policy_name if esc else ""),
                "reporter_name": r["reporter_name"] or "",
                "reporter_contact": r["reporter_contact"] or "",
                "created_at": r["created_at"],
                "updated_at": r["updated_at"],
                "acknowledged_at": r["acknowledged_at"],
                "acknowledged_by": r["acknowledged_by"] or "",
                "resolved_at": r["resolved_at"],
                "cancelled_at": r["cancelled_at"],
                "response_due_at": r["response_due_at"],
                "resolution_due_at": r["resolution_due_at"],
                "response_warn_at": r["response_warn_at"],
                "resolution_warn_at": r["resolution_warn_at"],
                "response_breached_at": r["response_breached_at"],
                "resolution_breached_at": r["resolution_breached_at"],
                "escalation_state": esc.state if esc else "",
                "current_level": int(esc.current_level) if esc else 0,
                "next_action_at": esc.next_action_at if esc else None,
                "paged": (page.name or "") if page else "",
                "page_status": page.status if page else "",
                "page_level": int(page.level) if page else 0,
                "last_channel": msg.channel if msg else "",
                "last_recipient": (msg.name or msg.address) if msg else "",
                "last_delivery": msg.status if msg else "",
                "last_delivery_error": (msg.error_text or "") if msg else "",
                "last_simulated": bool(msg.simulated) if msg else False,
            }
        )
    return rows


def incident_detail(session: Session, incident_id: int) -> dict[str, Any] | None:
    """Everything about one incident for a detail view: its row, and a timeline of events, messages sent
    (channel, recipient, status, error), replies received and notes, oldest first."""
    rows = board_rows(session, [incident_id])
    if not rows:
        return None
    row = rows[0]
    inc = session.get(Incident, incident_id)
    assert inc is not None
    row["details"] = inc.details
    row["reporter_language"] = inc.reporter_language
    items: list[dict[str, Any]] = []
    for ev in session.scalars(select(Event).where(Event.incident_id == incident_id).order_by(Event.id)):
        items.append(
            {
                "at": ev.at,
                "type": "note" if ev.kind in {"note", "note_added"} else "event",
                "kind": ev.kind,
                "actor": ev.actor,
                "text": ev.message or ev.kind.replace("_", " "),
                "data": ev.data,
                "order": (0, ev.id),
            }
        )
    people: dict[int, str] = {int(pid): name for pid, name in session.execute(select(Person.id, Person.name))}
    for msg in session.scalars(select(OutboxMessage).where(OutboxMessage.incident_id == incident_id)):
        who = people.get(msg.person_id, "") if msg.person_id else ""
        items.append(
            {
                "at": msg.created_at,
                "type": "message",
                "kind": msg.kind,
                "actor": "engine",
                "channel": msg.channel,
                "recipient": f"{who} <{msg.address}>" if who else msg.address,
                "status": msg.status,
                "error": msg.error_text or "",
                "level": msg.level,
                "simulated": msg.simulated,
                "text": msg.subject or msg.body[:160],
                "order": (1, msg.id),
            }
        )
    for reply in session.scalars(select(InboundMessage).where(InboundMessage.incident_id == incident_id)):
        who = people.get(reply.person_id, "") if reply.person_id else ""
        items.append(
            {
                "at": reply.received_at,
                "type": "reply",
                "kind": reply.action,
                "actor": who or reply.from_address,
                "channel": reply.channel,
                "text": reply.body,
                "order": (2, reply.id),
            }
        )
    items.sort(key=lambda item: (item["at"], item["order"]))
    for item in items:
        item.pop("order", None)
    row["timeline"] = items
    return row


def board_choices(session: Session) -> dict[str, list[str]]:
    """Pick lists for the board's filters and dialogs."""
    sites = {s for s in session.scalars(select(distinct(Incident.site))) if s}
    sites |= {s for s in session.scalars(select(distinct(SlaConfig.site))) if s}
    categories = {c for c in session.scalars(select(distinct(Incident.category))) if c}
    categories |= {c for c in session.scalars(select(distinct(SlaConfig.category))) if c}
    stored = session.scalar(select(SystemSetting.value).where(SystemSetting.name == "default_policy"))
    default_policy = str(stored.get("policy") or "") if isinstance(stored, dict) else ""
    people = session.execute(
        select(Person.handle, Person.name).where(Person.active).order_by(Person.name, Person.handle)
    ).all()
    return {
        "policies": list(session.scalars(select(Policy.name).where(Policy.enabled).order_by(Policy.name))),
        # The centre's default policy first in New incident; [] when none is set.
        "default_policy": [default_policy] if default_policy else [],
        "teams": list(session.scalars(select(Team.handle).order_by(Team.handle))),
        "people": [p.handle for p in people],
        "people_names": [p.name for p in people],  # beside "people", in the same order
        "sites": sorted(sites),
        "categories": sorted(categories | {"general"}),
    }


def board_health(
    session: Session, now: datetime, settings: Settings, stale_after: float = 30.0
) -> dict[str, Any]:
    """Engines alive (a heartbeat within `stale_after` seconds), channels running simulated and channels not
    set up (skipped in everyone's chain)."""
    cutoff = now - timedelta(seconds=stale_after)
    nodes = session.execute(
        select(EngineNode.id, EngineNode.mode, EngineNode.heartbeat_at, EngineNode.status)
    ).all()
    alive = [n.id for n in nodes if n.heartbeat_at >= cutoff and n.status != "stopped"]
    modes = channel_modes(settings)
    simulated = {name for name, mode in modes.items() if mode == "simulated"}
    not_set_up = {
        name: mode.removeprefix("not set up: ")
        for name, mode in modes.items()
        if mode != "simulated" and mode != "real"
    }
    recent = now - timedelta(hours=1)
    # Another node (a service with its own settings) may simulate what this one does not: its messages say so.
    simulated |= set(
        session.scalars(
            select(distinct(OutboxMessage.channel)).where(
                and_(OutboxMessage.simulated.is_(True), OutboxMessage.created_at >= recent)
            )
        )
    )
    return {
        "engines_alive": alive,
        "engines_known": len(nodes),
        "simulated_channels": sorted(simulated),
        "channels_not_set_up": not_set_up,
    }


def escalation_levels(session: Session, incident_id: int, now: datetime) -> dict[str, Any]:
    """The levels an operator may escalate an incident to, and who each would page now: the running
    escalation's policy as it was snapshotted (what escalating uses), else the incident's policy as it is.
    {"policy", "current_level", "levels": [{"level", "who", "nobody"}]}; `who` names people and addresses,
    `nobody` says why a target reaches no one (empty team, nobody on call)."""
    from engine.escalation import snapshot_policy
    from engine.models import PolicyLevel
    from engine.targets import TargetCache, resolve_target

    snapshot: dict[str, Any] = {}
    current = 0
    esc = session.scalars(
        select(Escalation)
        .where(Escalation.incident_id == incident_id)
        .order_by(Escalation.id.desc())
        .limit(1)
    ).first()
    if esc is not None and esc.state not in ("resolved", "cancelled"):
        snapshot, current = dict(esc.policy_snapshot or {}), int(esc.current_level or 0)
    else:
        policy_id = session.scalar(select(Incident.policy_id).where(Incident.id == incident_id))
        policy = (
            session.scalars(
                select(Policy)
                .where(Policy.id == policy_id)
                .options(selectinload(Policy.levels).selectinload(PolicyLevel.targets))
            ).one_or_none()
            if policy_id is not None
            else None
        )
        snapshot = snapshot_policy(policy) if policy is not None else {}
    cache = TargetCache(session)
    levels: list[dict[str, Any]] = []
    for n, level in enumerate(snapshot.get("levels") or [], start=1):
        who: list[str] = []
        nobody: list[str] = []
        for target in level.get("targets") or []:
            found = resolve_target(cache, target, now)
            who += [p.name for p in found.people if p.name not in who]
            if found.address is not None:
                who.append(found.address.name or found.address.address)
            if found.unresolved:
                nobody.append(found.unresolved)
        levels.append({"level": n, "who": who, "nobody": nobody})
    return {"policy": snapshot.get("name"), "current_level": current, "levels": levels}
