"""SLA deadlines, pre-breach warnings and breaches, and the escalation a breach sets off (exactly once).

Configuration is looked up per (site, category): the exact pair, then the site default (category ""), then the
category for any site (site ""), then the system default ("", ""), then the built-in 24 h response / 168 h
resolution / 80 % warning. Deadlines run from the incident's creation, in working time when the config names a
business calendar, and are computed when an incident is created or its category changes (`compute_deadlines`,
called by the API) or, for incidents written some other way, by the next pass.

The pass never loops over tickets in Python. Warnings and breaches are claimed with one indexed query per kind
and then one guarded UPDATE (`… AND response_breached_at IS NULL`) whose RETURNING list says which rows this
engine won: the database makes each breach happen exactly once however many engines run (on PostgreSQL the
claim also takes `FOR UPDATE SKIP LOCKED`, on SQLite the write transaction is BEGIN IMMEDIATE). Only the won rows
are then escalated: status ESCALATED, assigned to the team manager (the assignment kept in history), an event,
an in-app notice to the manager (and to the incident's team), the breach policy started, and a status notice to the reporter in their
language. Sensitive incidents are never SLA-monitored.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Select, false, func, select, update
from sqlalchemy.orm import Session, selectinload

from engine.calendar import WorkingCalendar, add_working_time
from engine.context import AppContext
from engine.db import write_session
from engine.escalation import escalate_for
from engine.models import (
    Assignment,
    BusinessCalendar,
    Incident,
    IncidentStatus,
    MessageStatus,
    OutboxMessage,
    Policy,
    SlaConfig,
    Team,
    Trigger,
)
from engine.notifications import NoticeBatch, insert_many_ignoring_duplicates, insert_returning_id
from engine.switches import escalations_enabled, notifications_enabled
from engine.templates import render, status_text
from engine.timeline import record

log = logging.getLogger(__name__)

DEFAULT_RESPONSE_MINUTES = 24 * 60
DEFAULT_RESOLUTION_MINUTES = 168 * 60
DEFAULT_WARNING_PERCENT = 80
# Rows claimed per transaction, and transactions per pass, so a backlog never makes one huge transaction.
BATCH_SIZE = 500
MAX_BATCHES = 20

# Response is about the first acknowledgement: only a ticket nobody has acknowledged can miss it.
RESPONSE_STATUSES = (IncidentStatus.OPEN.value,)
RESOLUTION_STATUSES = (
    IncidentStatus.OPEN.value,
    IncidentStatus.ACKNOWLEDGED.value,
    IncidentStatus.IN_PROGRESS.value,
    IncidentStatus.ESCALATED.value,
)


@dataclass(frozen=True)
class ResolvedSla:
    """The SLA that applies to one (site, category), and where it came from."""

    response_minutes: int
    resolution_minutes: int
    warning_percent: int
    calendar: WorkingCalendar | None
    calendar_id: int | None
    breach_policy_id: int | None
    config_id: int | None
    source: str  # exact, site, category, system, built-in


BUILT_IN = ResolvedSla(
    response_minutes=DEFAULT_RESPONSE_MINUTES,
    resolution_minutes=DEFAULT_RESOLUTION_MINUTES,
    warning_percent=DEFAULT_WARNING_PERCENT,
    calendar=None,
    calendar_id=None,
    breach_policy_id=None,
    config_id=None,
    source="built-in",
)


class SlaCache:
    """Config lookups and calendars reused within one pass or one batch."""

    def __init__(self) -> None:
        self.configs: dict[tuple[str, str], ResolvedSla] = {}
        self.calendars: dict[int, WorkingCalendar] = {}


def resolve_config(session: Session, site: str, category: str, cache: SlaCache | None = None) -> ResolvedSla:
    """The SLA for (site, category): exact → site default → category default → system default → built-in."""
    site, category = site or "", category or ""
    if cache is not None and (site, category) in cache.configs:
        return cache.configs[(site, category)]
    order = [(site, category), (site, ""), ("", category), ("", "")]
    names = ["exact", "site", "category", "system"]
    rows = session.scalars(
        select(SlaConfig).where(
            SlaConfig.site.in_({site, ""}),
            SlaConfig.category.in_({category, ""}),
        )
    ).all()
    by_pair = {(r.site, r.category): r for r in rows}
    resolved = BUILT_IN
    for pair, name in zip(order, names, strict=True):
        row = by_pair.get(pair)
        if row is None:
            continue
        calendar = _calendar(session, row.calendar_id, cache) if row.calendar_id else None
        resolved = ResolvedSla(
            response_minutes=row.response_minutes,
            resolution_minutes=row.resolution_minutes,
            warning_percent=row.warning_percent,
            calendar=calendar,
            calendar_id=row.calendar_id if calendar else None,
            breach_policy_id=row.breach_policy_id,
            config_id=row.id,
            source=name,
        )
        break
    if cache is not None:
        cache.configs[(site, category)] = resolved
    return resolved


def _calendar(session: Session, calendar_id: int, cache: SlaCache | None) -> WorkingCalendar | None:
    if cache is not None and calendar_id in cache.calendars:
        return cache.calendars[calendar_id]
    row = session.get(BusinessCalendar, calendar_id)
    if row is None:
        return None
    calendar = WorkingCalendar.from_model(row)
    if cache is not None:
        cache.calendars[calendar_id] = calendar
    return calendar


def deadline_values(
    session: Session,
    *,
    site: str,
    category: str,
    sensitive: bool,
    start: datetime,
    now: datetime,
    cache: SlaCache | None = None,
) -> dict[str, datetime | None]:
    """The SLA deadline and warning columns of an incident created at `start` (a plain dict, for Core inserts)."""
    if sensitive:
        return {
            "sla_computed_at": now,
            "response_due_at": None,
            "resolution_due_at": None,
            "response_warn_at": None,
            "resolution_warn_at": None,
        }
    sla = resolve_config(session, site, category, cache)
    response = sla.response_minutes * 60
    resolution = sla.resolution_minutes * 60
    warn = 0 < sla.warning_percent < 100
    return {
        "sla_computed_at": now,
        "response_due_at": add_working_time(start, response, sla.calendar),
        "resolution_due_at": add_working_time(start, resolution, sla.calendar),
        "response_warn_at": (
            add_working_time(start, response * sla.warning_percent / 100, sla.calendar) if warn else None
        ),
        "resolution_warn_at": (
            add_working_time(start, resolution * sla.warning_percent / 100, sla.calendar) if warn else None
        ),
    }


def compute_deadlines(
    session: Session, incident: Incident, now: datetime, cache: SlaCache | None = None
) -> None:
    """Set the incident's SLA deadlines and warning times from its creation and its (site, category).

    Called on create and on a category change. A warning already given stays given unless the new warning
    time lies in the future; a breach already recorded is never undone (it has been escalated).
    """
    values = deadline_values(
        session,
        site=incident.site,
        category=incident.category,
        sensitive=bool(incident.sensitive),
        start=incident.created_at or now,  # not yet flushed: the ORM default would be now
        now=now,
        cache=cache,
    )
    for name, value in values.items():
        setattr(incident, name, value)
    if incident.sensitive:
        return
    if incident.response_warned_at is not None and (
        incident.response_warn_at is None or incident.response_warn_at > now
    ):
        incident.response_warned_at = None
    if incident.resolution_warned_at is not None and (
        incident.resolution_warn_at is None or incident.resolution_warn_at > now
    ):
        incident.resolution_warned_at = None


# --------------------------------------------------------------------------------------------------------
# The pass
# --------------------------------------------------------------------------------------------------------


def sla_pass(ctx: AppContext) -> dict[str, Any]:
    """One SLA pass: pending deadlines, warnings, breaches. Safe to run on many engines at once."""
    now = ctx.clock.now()
    result: dict[str, Any] = {
        "deadlines": 0,
        "response_warnings": 0,
        "resolution_warnings": 0,
        "response_breaches": 0,
        "resolution_breaches": 0,
        "escalations_started": 0,
        "skipped": [],
    }
    result["deadlines"] = _compute_pending(ctx, now)

    with ctx.sessions() as s:
        notices_on = notifications_enabled(s)
        escalating_on = escalations_enabled(s)

    if notices_on:
        result["response_warnings"] = _run_batches(ctx, lambda s: _warn(s, now, "response"))
        result["resolution_warnings"] = _run_batches(ctx, lambda s: _warn(s, now, "resolution"))
    else:
        result["skipped"].append("warnings: notifications switched off")

    started = [0]
    if escalating_on:

        def breach(kind: str) -> Callable[[Session], int]:
            def run(s: Session) -> int:
                won, escalations = _breach(s, now, kind)
                started[0] += escalations
                return won

            return run

        result["response_breaches"] = _run_batches(ctx, breach("response"))
        result["resolution_breaches"] = _run_batches(ctx, breach("resolution"))
    else:
        result["skipped"].append("breaches: escalations switched off")
    result["escalations_started"] = started[0]
    if result["response_breaches"] or result["resolution_breaches"]:
        ctx.wake("escalate")
        ctx.wake("dispatch")
    return result


def _run_batches(ctx: AppContext, work: Callable[[Session], int]) -> int:
    """Run `work(session) -> rows handled` in short transactions until a batch comes back short."""
    total = 0
    for _ in range(MAX_BATCHES):
        with write_session(ctx.sessions) as s:
            done = work(s)
        total += done
        if done < BATCH_SIZE:
            break
    return total


def _compute_pending(ctx: AppContext, now: datetime) -> int:
    """Deadlines for incidents written without them (imports, other clients): partial index, batches."""
    cache = SlaCache()

    def work(s: Session) -> int:
        ids = s.scalars(
            select(Incident.id)
            .where(Incident.sla_computed_at.is_(None))
            .limit(BATCH_SIZE)
            .with_for_update(skip_locked=True, key_share=True)
        ).all()
        if not ids:
            return 0
        for incident in s.scalars(select(Incident).where(Incident.id.in_(ids))):
            if incident.sla_computed_at is None:
                compute_deadlines(s, incident, now, cache)
        return len(ids)

    return _run_batches(ctx, work)


def _claim(
    session: Session, conditions: Sequence[ColumnElement[bool]], values: dict[str, Any]
) -> dict[int, str]:
    """Claim up to a batch of incidents matching `conditions`; {id: status before} of the rows this engine won.

    The SELECT finds candidates through the pending-deadline indexes, earliest deadline first (skipping rows
    another engine has locked on PostgreSQL); the UPDATE repeats the conditions, so a row someone else already
    changed is not won twice.
    """
    rows = session.execute(claim_query(conditions)).tuples()
    candidates = {incident_id: status for incident_id, status in rows}
    if not candidates:
        return {}
    won = session.scalars(
        update(Incident)
        .where(Incident.id.in_(list(candidates)), *conditions)
        .values(**values)
        .returning(Incident.id)
        .execution_options(synchronize_session=False)
    ).all()
    return {i: candidates[i] for i in won}


def claim_query(conditions: Sequence[ColumnElement[bool]]) -> Select[tuple[int, str]]:
    # Ordering by the deadline (the second condition) matters to PostgreSQL's planner, not just to fairness:
    # with a bare LIMIT it may bet on a sequential scan finding matches early; ordered, it walks the small
    # partial index, which already holds exactly the pending rows in deadline order.
    deadline = conditions[1].left
    return (
        select(Incident.id, Incident.status)
        .where(*conditions)
        .order_by(deadline)
        .limit(BATCH_SIZE)
        # NO KEY UPDATE: the lock order of engine.claims.lock_incidents, and foreign-key checks of rows that
        # others write for these incidents never wait on it.
        .with_for_update(skip_locked=True, key_share=True)
    )


def warning_conditions(kind: str, now: datetime) -> list[ColumnElement[bool]]:
    if kind == "response":
        return [
            Incident.status.in_(RESPONSE_STATUSES),
            Incident.response_warn_at <= now,
            Incident.response_warned_at.is_(None),
            Incident.sensitive == false(),
        ]
    return [
        Incident.status.in_(RESOLUTION_STATUSES),
        Incident.resolution_warn_at <= now,
        Incident.resolution_warned_at.is_(None),
        Incident.sensitive == false(),
    ]


def breach_conditions(kind: str, now: datetime) -> list[ColumnElement[bool]]:
    if kind == "response":
        return [
            Incident.status.in_(RESPONSE_STATUSES),
            Incident.response_due_at <= now,
            Incident.response_breached_at.is_(None),
            Incident.sensitive == false(),
        ]
    return [
        Incident.status.in_(RESOLUTION_STATUSES),
        Incident.resolution_due_at <= now,
        Incident.resolution_breached_at.is_(None),
        Incident.sensitive == false(),
    ]


def _warn(session: Session, now: datetime, kind: str) -> int:
    column = "response_warned_at" if kind == "response" else "resolution_warned_at"
    won = _claim(session, warning_conditions(kind, now), {column: now})
    if not won:
        return 0
    notices = NoticeBatch()
    incidents = session.scalars(
        select(Incident).where(Incident.id.in_(list(won))).options(selectinload(Incident.team))
    ).all()
    for incident in incidents:
        due = incident.response_due_at if kind == "response" else incident.resolution_due_at
        if due is not None and due <= now:
            # The engine was away past the deadline: the breach says it all, a warning now is noise.
            continue
        left = _human(due - now) if due else "soon"
        record(
            session,
            "sla_warning",
            now,
            incident_id=incident.id,
            message=f"{kind.capitalize()} deadline in {left}",
            data={"kind": kind, "due_at": due.isoformat() if due else None},
        )
        title = f"SLA warning #{incident.id}: {kind} due in {left}"
        recipients = [
            p for p in (incident.assignee_id, incident.team.manager_id if incident.team else None) if p
        ]
        context = notice_context(incident, kind, due, now)
        if recipients:
            for person_id in dict.fromkeys(recipients):
                notices.add(
                    session,
                    now,
                    person_id=person_id,
                    kind=f"sla_{kind}_warning",
                    item=incident,
                    title=title,
                    body=incident.summary,
                    context=context,
                )
        else:
            notices.add(
                session,
                now,
                role="supervisor",
                kind=f"sla_{kind}_warning",
                item=incident,
                title=title,
                body=incident.summary,
                context=context,
            )
        if incident.team_id is not None:
            notices.add(
                session,
                now,
                team_id=incident.team_id,
                kind=f"sla_{kind}_warning",
                item=incident,
                title=title,
                body=incident.summary,
            )
    notices.write(session)
    return len(won)


def _breach(session: Session, now: datetime, kind: str) -> tuple[int, int]:
    """Claim and escalate a batch of breaches; (rows won, escalations started)."""
    column = "response_breached_at" if kind == "response" else "resolution_breached_at"
    won = _claim(
        session,
        breach_conditions(kind, now),
        {column: now, "status": IncidentStatus.ESCALATED.value, "updated_at": now},
    )
    if not won:
        return 0, 0
    incidents = session.scalars(
        select(Incident).where(Incident.id.in_(list(won))).options(selectinload(Incident.team))
    ).all()
    cache = SlaCache()
    batch = BreachBatch(reporter_counts=reporter_counts(session, list(won), IncidentStatus.ESCALATED.value))
    started = 0
    # The rows added per incident are flushed together (one multi-row INSERT per table), not before each query.
    with session.no_autoflush:
        for incident in incidents:
            previous = won[incident.id]
            started += escalate_breach(
                session, now, incident, kind, previous_status=previous, cache=cache, batch=batch
            )
    batch.write(session)
    return len(won), started


def escalate_breach(
    session: Session,
    now: datetime,
    incident: Incident,
    kind: str,
    *,
    previous_status: str,
    cache: SlaCache | None = None,
    batch: BreachBatch | None = None,
) -> int:
    """What follows a breach this engine won (the row is already ESCALATED and stamped): manager, event,
    notices, breach policy. Returns 1 when an escalation was started. With a `batch`, the notifications and
    reporter messages are gathered there and written by the caller in one go."""
    own = batch is None
    batch = batch or BreachBatch()
    due = incident.response_due_at if kind == "response" else incident.resolution_due_at
    team: Team | None = incident.team
    manager_id = team.manager_id if team else None
    if manager_id is not None and incident.assignee_id != manager_id:
        session.add(
            Assignment(
                incident_id=incident.id,
                team_id=incident.team_id,
                person_id=manager_id,
                assigned_at=now,
                assigned_by="sla",
                reason=f"SLA {kind} deadline missed",
            )
        )
        previous_assignee = incident.assignee_id
        incident.assignee_id = manager_id
        record(
            session,
            "assigned",
            now,
            incident_id=incident.id,
            actor="sla",
            message=f"Assigned to the {team.name if team else 'team'} manager after the SLA {kind} breach",
            data={
                "person_id": manager_id,
                "previous_person_id": previous_assignee,
                "team_id": incident.team_id,
            },
        )
    overdue = _human(now - due) if due else ""
    record(
        session,
        "sla_breached",
        now,
        incident_id=incident.id,
        actor="sla",
        message=f"{kind.capitalize()} deadline missed" + (f" by {overdue}" if overdue else ""),
        data={
            "kind": kind,
            "due_at": due.isoformat() if due else None,
            "manager_id": manager_id,
            "previous_status": previous_status,
        },
    )
    if manager_id is not None:
        batch.notices.add(
            session,
            now,
            person_id=manager_id,
            kind=f"sla_{kind}_breach",
            item=incident,
            title=f"SLA breached #{incident.id}: {kind} deadline missed",
            body=incident.summary,
            context=notice_context(incident, kind, due, now),
        )
    if incident.team_id is not None:
        batch.notices.add(
            session,
            now,
            team_id=incident.team_id,
            kind=f"sla_{kind}_breach",
            item=incident,
            title=f"SLA breached #{incident.id}: {kind} deadline missed",
            body=incident.summary,
        )
    if previous_status != IncidentStatus.ESCALATED.value:
        record(
            session,
            "status_changed",
            now,
            incident_id=incident.id,
            actor="sla",
            message=f"{previous_status} → escalated",
            data={"from": previous_status, "to": IncidentStatus.ESCALATED.value},
        )
        row = reporter_message(
            session, now, incident, IncidentStatus.ESCALATED.value, batch.reporter_counts.get(incident.id)
        )
        if row is not None:
            batch.outbox.append(row)
    started = _start_breach_policy(session, now, incident, kind, cache)
    if own:
        batch.write(session)
    return started


@dataclass
class BreachBatch:
    """Notifications and reporter messages of a batch of breaches, written together at the end."""

    notices: NoticeBatch = field(default_factory=NoticeBatch)
    outbox: list[dict[str, Any]] = field(default_factory=list)
    # How many reporter notices for "escalated" each incident already has (the n of the idempotency key).
    reporter_counts: dict[int, int] = field(default_factory=dict)

    def write(self, session: Session) -> None:
        self.notices.write(session)
        rows, self.outbox = self.outbox, []
        insert_many_ignoring_duplicates(session, OutboxMessage, rows)


def _start_breach_policy(
    session: Session, now: datetime, incident: Incident, kind: str, cache: SlaCache | None
) -> int:
    """Escalate for a breach this engine won; 1 when an escalation was started.

    An incident has at most one live escalation: a breach raises it (the next level now) rather than starting
    a second one beside it. With none live, the SLA configuration's breach policy starts; without one, the
    incident's own policy when it escalates on this breach (`sla_breach` for a missed response, `unresolved`
    for a missed resolution)."""
    sla = resolve_config(session, incident.site, incident.category, cache)
    policy = session.get(Policy, sla.breach_policy_id) if sla.breach_policy_id is not None else None
    trigger = Trigger.SLA_BREACH if kind == "response" else Trigger.UNRESOLVED
    if policy is not None and policy.enabled:
        trigger = Trigger.SLA_BREACH
    done = escalate_for(
        session, now, incident, trigger, why=f"SLA {kind} deadline missed", actor="sla", policy=policy
    )
    return 1 if done == "started" else 0


def notice_context(incident: Incident, kind: str, due: datetime | None, now: datetime) -> dict[str, Any]:
    """The variables of the sla_warning and sla_breach message templates (engine.templates.KIND_VARIABLES)."""
    start = incident.created_at
    percent = 100
    if due is not None and due > start:
        percent = max(0, min(100, round((now - start) / (due - start) * 100)))
    return {
        "incident_id": incident.id,
        "incident_key": incident.key,
        "summary": incident.summary,
        "details": incident.details,
        "severity": incident.severity,
        "category": incident.category,
        "site": incident.site,
        "critical": incident.severity == "critical",
        "team": incident.team.name if incident.team else "",
        "reply_code": None,
        "ack_url": None,
        "console_url": None,
        "deadline_kind": kind,
        "due_at": due,
        "percent": percent,
        "overdue_by": _human(now - due) if due is not None and now > due else "",
    }


def _human(delta: timedelta) -> str:
    minutes = max(0, int(delta.total_seconds() // 60))
    days, rest = divmod(minutes, 24 * 60)
    hours, mins = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {mins} min"
    return f"{mins} min"


# --------------------------------------------------------------------------------------------------------
# Reporter notices
# --------------------------------------------------------------------------------------------------------


def reporter_channel(incident: Incident) -> str | None:
    contact = (incident.reporter_contact or "").strip()
    if not contact:
        return None
    if incident.reporter_channel:
        return incident.reporter_channel
    return "email" if "@" in contact else "whatsapp"


def reporter_counts(session: Session, incident_ids: list[int], status: str) -> dict[int, int]:
    """How many reporter notices for `status` each incident already has (one query for a batch)."""
    if not incident_ids:
        return {}
    rows = session.execute(
        select(OutboxMessage.incident_id, func.count())
        .where(
            OutboxMessage.incident_id.in_(incident_ids),
            OutboxMessage.kind == "reporter_update",
            OutboxMessage.idempotency_key.like(f"reporter:%:{status}:%"),
        )
        .group_by(OutboxMessage.incident_id)
    ).tuples()
    return {incident_id: count for incident_id, count in rows if incident_id is not None}


def reporter_message(
    session: Session, now: datetime, incident: Incident, new_status: str, n: int | None = None
) -> dict[str, Any] | None:
    """The outbox row of a status notice to the reporter, or None when there is no contact. `n`: how many
    notices for this status the incident already has (counted here when not given)."""
    channel = reporter_channel(incident)
    if channel is None:
        return None
    if n is None:
        n = reporter_counts(session, [incident.id], new_status).get(incident.id, 0)
    language = incident.reporter_language or "en"
    context = {
        "tracking_number": f"WK-{incident.id}",
        "status": new_status,
        "status_text": status_text(new_status, language),
        "reporter_name": incident.reporter_name or "",
        "summary": incident.summary,
        "incident_id": incident.id,
    }
    subject, body, body_html = render(session, "status_update", channel, language, context)
    return {
        "idempotency_key": f"reporter:{incident.id}:{new_status}:{n}",
        "kind": "reporter_update",
        "incident_id": incident.id,
        "channel": channel,
        "address": (incident.reporter_contact or "").strip(),
        "subject": subject,
        "body": body,
        "body_html": body_html,
        "status": MessageStatus.PENDING.value,
        "next_attempt_at": now,
        "created_at": now,
        "updated_at": now,
    }


def notify_reporter(session: Session, now: datetime, incident: Incident, new_status: str) -> int | None:
    """Queue a status notice to the incident's reporter in their language: the OutboxMessage id, or None when
    there is no contact (or the same notice was already queued).

    The idempotency key `reporter:<incident>:<status>:<n>` counts how often the incident reached this status,
    so a reopened and re-resolved ticket tells the reporter twice, but one status change never does.
    """
    row = reporter_message(session, now, incident, new_status)
    if row is None:
        return None
    return insert_returning_id(session, OutboxMessage, row)
