"""The engine's public API: everything an operator can do, for the console, the CLI and the HTTP service alike.

Each call is one short write transaction (BEGIN IMMEDIATE on SQLite) that applies the state machine of
engine.escalation, writes its events, and commits; on PostgreSQL it also sends NOTIFY "watchkeeper_work" on
commit so the engines of other processes wake at once, and in-process it calls `ctx.wake`. `trigger` only
writes the incident and a PENDING escalation (policy snapshot included): the escalate pass expands targets and
writes the pages, which keeps a trigger cheap under bursts.

`trigger_many` and `acknowledge_many` do the same for many incidents in one transaction, written set-based
(engine.batch): the way to take a flood of monitoring alerts or to acknowledge an operator's selection, at
thousands per second where one call per incident manages hundreds. `trigger` and `acknowledge` are batches of
one on the same code path.

Errors: NotFound (no such incident or policy), InvalidTransition (not allowed in the current state),
ValidationError (bad input). Returned dicts are JSON-serialisable, times as ISO 8601 strings.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from engine import batch, paging, receipts, timeline
from engine import escalation as esc_mod

# Re-exported: callers know these as engine.api's.
from engine.batch import OPEN_STATUSES as OPEN_STATUSES
from engine.batch import SEVERITIES as SEVERITIES
from engine.batch import TriggerRequest as TriggerRequest
from engine.batch import TriggerResult as TriggerResult
from engine.batch import _load_snapshot as _load_snapshot
from engine.batch import _sla_cache, _summary, _text
from engine.context import AppContext
from engine.db import read_session, retrying, write_session
from engine.errors import InvalidTransition, NotFound, ValidationError, WatchkeeperError
from engine.models import (
    Assignment,
    Escalation,
    EscalationState,
    Event,
    Incident,
    IncidentStatus,
    OutboxMessage,
    Person,
    Policy,
    PolicyLevel,
    Team,
    Trigger,
)
from engine.notifications import notify
from engine.targets import TargetCache

S = EscalationState
# The NOTIFY payload of a change only consoles care about (engines wake on pass names and ignore it).
BOARD_NOTICE = "board"


# --------------------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------------------


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _sla_deadlines(
    session: Session, incident: Incident, now: datetime, ctx: AppContext | None = None
) -> None:
    try:
        from engine.sla import compute_deadlines
    except ImportError:  # the SLA part not installed: the sla pass computes deadlines it finds missing
        return
    compute_deadlines(session, incident, now, _sla_cache(ctx))


def _reporter_update(session: Session, incident: Incident, now: datetime, status: str) -> None:
    if not incident.reporter_contact:
        return
    try:
        from engine.sla import notify_reporter
    except ImportError:
        return
    notify_reporter(session, now, incident, status)


def _find_incident(session: Session, ref: int | str, *, lock: bool = False) -> Incident:
    """An incident by id (int or digits) or by key (the open one first, else the latest)."""
    stmt = select(Incident)
    if isinstance(ref, int) or (isinstance(ref, str) and ref.strip().isdigit()):
        stmt = stmt.where(Incident.id == int(ref))
    else:
        key = str(ref).strip()
        if not key:
            raise ValidationError("an incident id or key is needed", field="ref")
        open_id = session.scalars(
            select(Incident.id)
            .where(Incident.key == key, Incident.status.in_(OPEN_STATUSES))
            .order_by(Incident.id.desc())
            .limit(1)
        ).first()
        if open_id is None:
            open_id = session.scalars(
                select(Incident.id).where(Incident.key == key).order_by(Incident.id.desc()).limit(1)
            ).first()
        if open_id is None:
            raise NotFound(f"no incident with key {key!r}")
        stmt = stmt.where(Incident.id == open_id)
    if lock and session.get_bind().dialect.name == "postgresql":
        # The lock order (engine.claims.lock_incidents): the incident first, NO KEY UPDATE.
        stmt = stmt.with_for_update(key_share=True)
    incident = session.scalars(stmt).one_or_none()
    if incident is None:
        raise NotFound(f"no incident {ref}")
    return incident


def _latest_escalation(session: Session, incident_id: int, *, lock: bool = False) -> Escalation | None:
    stmt = (
        select(Escalation)
        .where(Escalation.incident_id == incident_id)
        .order_by(Escalation.id.desc())
        .limit(1)
    )
    if lock and session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update(key_share=True)
    return session.scalars(stmt).first()


def _end_escalations(
    session: Session,
    incident: Incident,
    to: EscalationState,
    now: datetime,
    *,
    by: str,
    kind: str,
    message: str,
    data: dict[str, Any],
) -> Escalation | None:
    """Resolve or cancel every escalation of the incident still open — not only the newest — and end all its
    paging (every page, pending fallback and repeat) in the caller's transaction. The newest escalation carries
    the event of `kind`; with none open, the event is the incident's own. Returns the newest escalation."""
    stmt = (
        select(Escalation)
        .where(Escalation.incident_id == incident.id, Escalation.state.in_([s.value for s in esc_mod.OPEN]))
        .order_by(Escalation.id)
    )
    if session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update(key_share=True)
    escs = list(session.scalars(stmt))
    for esc in escs:
        last = esc is escs[-1]
        esc_mod.transition(
            session, esc, to, now, actor=by, kind=kind if last else None, message=message, data=data
        )
        if to == S.RESOLVED:
            esc.resolved_at = now
            esc.resolved_by = by
    if not escs:
        timeline.record(session, kind, now, incident_id=incident.id, actor=by, message=message, data=data)
    paging.stop_paging(session, [incident.id], now)
    return escs[-1] if escs else _latest_escalation(session, incident.id)


def _status_event(
    session: Session, incident: Incident, now: datetime, new: str, actor: str, **data: Any
) -> None:
    """A status change of the incident itself (the board's tint and the reporter follow it)."""
    old = incident.status
    incident.status = new
    incident.updated_at = now
    timeline.record(
        session,
        "status_changed",
        now,
        incident_id=incident.id,
        actor=actor,
        message=f"{old} → {new}",
        data={"from": old, "to": new, **data},
    )


def _retried(ctx: AppContext, work: Any) -> dict[str, Any]:
    """One write transaction, run again if the database rolled it back for a deadlock or a serialization
    failure (engine.db.retrying), then the dispatcher woken."""
    result: dict[str, Any] = retrying(work)
    ctx.wake("dispatch")
    return result


# --------------------------------------------------------------------------------------------------------
# Trigger
# --------------------------------------------------------------------------------------------------------


def trigger(
    ctx: AppContext,
    *,
    policy: str | None,
    summary: str,
    key: str | None = None,
    severity: str = "high",
    category: str = "general",
    site: str = "",
    details: str = "",
    source: str = "operator",
    actor: str = "operator",
    sensitive: bool = False,
    team: str | None = None,
    reporter_name: str | None = None,
    reporter_contact: str | None = None,
    reporter_language: str = "en",
    custom: dict[str, Any] | None = None,
    receipt: str | None = None,
) -> TriggerResult:
    """Open an incident and start its escalation; or, for an open incident with the same key, count the
    trigger on it (deduplicated=True). `receipt`: an Events API event's uid (engine.receipts)."""
    request = TriggerRequest(
        policy=policy,
        summary=summary,
        key=key,
        severity=severity,
        category=category,
        site=site,
        details=details,
        source=source,
        actor=actor,
        sensitive=sensitive,
        team=team,
        reporter_name=reporter_name,
        reporter_contact=reporter_contact,
        reporter_language=reporter_language,
        custom=custom,
        receipt=receipt,
    )
    return batch.trigger_many(ctx, [request], name_items=False)[0]


def trigger_many(ctx: AppContext, requests: Sequence[TriggerRequest]) -> list[TriggerResult]:
    """Many triggers in one write transaction, durable when it returns; results in request order.

    The same as calling `trigger` once per request in order (dedup included, also between requests of the
    batch), at a fraction of the cost. Every request is validated first: an invalid one raises
    ValidationError naming the item and the field ("item 3: summary: must not be empty"), an unknown policy
    or team NotFound naming the item; either way nothing is stored."""
    return batch.trigger_many(ctx, requests)


# --------------------------------------------------------------------------------------------------------
# Acknowledge, resolve, cancel, escalate, re-open
# --------------------------------------------------------------------------------------------------------


def acknowledge(
    ctx: AppContext, ref: int | str, *, by: str, via: str = "console", receipt: str | None = None
) -> dict[str, Any]:
    """Acknowledge an incident: it and every escalation of it stop paging (see engine.batch). `receipt`: an
    Events API event's uid, recorded in the same transaction (engine.receipts)."""
    by = _text(by, "by", limit=200, required=True)
    now = ctx.clock.now()

    def attempt() -> dict[str, Any]:
        with write_session(ctx.sessions) as session:
            outcome = batch.acknowledge_in(session, [ref], by=by, via=via, now=now)[0]
            if isinstance(outcome, WatchkeeperError):
                raise outcome
            if receipt:
                receipts.write(session.connection(), [(receipt, "acknowledged", int(outcome["id"]))], now)
            return outcome

    outcome = retrying(attempt)
    ctx.wake("dispatch")
    return outcome


def acknowledge_many(
    ctx: AppContext, refs: Sequence[int | str], *, by: str, via: str = "console"
) -> list[dict[str, Any]]:
    """Acknowledge many incidents (ids or keys) in one write transaction: one entry per ref, in order — what
    `acknowledge` returns, or {"ref", "error", "message"} for a ref that names no incident or one that cannot
    be acknowledged (the others are acknowledged all the same; see engine.batch.acknowledge_many)."""
    return batch.acknowledge_many(ctx, refs, by=by, via=via)


def resolve(
    ctx: AppContext,
    ref: int | str,
    *,
    by: str,
    via: str = "console",
    note: str = "",
    receipt: str | None = None,
) -> dict[str, Any]:
    by = _text(by, "by", limit=200, required=True)
    now = ctx.clock.now()
    return _retried(ctx, lambda: _resolve(ctx, ref, by=by, via=via, note=note, receipt=receipt, now=now))


def _resolve(
    ctx: AppContext, ref: int | str, *, by: str, via: str, note: str, receipt: str | None, now: datetime
) -> dict[str, Any]:
    with write_session(ctx.sessions) as session:
        incident = _find_incident(session, ref, lock=True)
        if incident.status not in OPEN_STATUSES:
            raise InvalidTransition(f"incident {incident.id} is {incident.status}; it cannot be resolved")
        old = incident.status
        incident.status = IncidentStatus.RESOLVED.value
        incident.resolved_at = now
        incident.resolved_by = by
        incident.updated_at = now
        message = f"resolved by {by} via {via}" + (f": {note}" if note else "")
        data = {"via": via, "note": note, "incident_from": old}
        esc = _end_escalations(
            session, incident, S.RESOLVED, now, by=by, kind="resolved", message=message, data=data
        )
        paging.write_notices(session, incident, now, "resolve", by)
        _reporter_update(session, incident, now, IncidentStatus.RESOLVED.value)
        esc_mod.notify_work(session, "dispatch")
        if receipt:
            receipts.write(session.connection(), [(receipt, "resolved", incident.id)], now)
        result = _summary(incident, esc)
    return result


def cancel(ctx: AppContext, ref: int | str, *, reason: str, by: str) -> dict[str, Any]:
    by = _text(by, "by", limit=200, required=True)
    reason = _text(reason, "reason", limit=2000, required=True)
    now = ctx.clock.now()
    with write_session(ctx.sessions) as session:
        incident = _find_incident(session, ref, lock=True)
        if incident.status not in OPEN_STATUSES:
            raise InvalidTransition(f"incident {incident.id} is {incident.status}; it cannot be cancelled")
        old = incident.status
        incident.status = IncidentStatus.CANCELLED.value
        incident.cancelled_at = now
        incident.cancel_reason = reason
        incident.updated_at = now
        message = f"cancelled by {by}: {reason}"
        data = {"reason": reason, "incident_from": old}
        esc = _end_escalations(
            session, incident, S.CANCELLED, now, by=by, kind="cancelled", message=message, data=data
        )
        if esc is not None and esc.state == S.CANCELLED:
            esc.end_reason = reason
        esc_mod.notify_work(session, BOARD_NOTICE)
        result = _summary(incident, esc)
    return result


def escalate(ctx: AppContext, ref: int | str, *, by: str, level: int | None = None) -> dict[str, Any]:
    """Page the next level now (or the chosen one), whatever the level timers say."""
    by = _text(by, "by", limit=200, required=True)
    now = ctx.clock.now()
    with write_session(ctx.sessions) as session:
        incident = _find_incident(session, ref, lock=True)
        if incident.status not in OPEN_STATUSES:
            raise InvalidTransition(f"incident {incident.id} is {incident.status}; it cannot be escalated")
        esc = _latest_escalation(session, incident.id, lock=True)
        if esc is None or esc.state in (S.RESOLVED, S.CANCELLED):
            # Nothing running to move on (a `manual` policy, or no escalation since a re-open): start one with
            # the incident's policy as it is now.
            policy = (
                session.scalars(
                    select(Policy)
                    .where(Policy.id == incident.policy_id)
                    .options(selectinload(Policy.levels).selectinload(PolicyLevel.targets))
                ).one_or_none()
                if incident.policy_id is not None
                else None
            )
            if policy is None or not policy.enabled:
                raise InvalidTransition(f"incident {incident.id} has no escalation policy to escalate with")
            esc = esc_mod.start_escalation(
                session, now, incident, esc_mod.snapshot_policy(policy), Trigger.MANUAL.value, actor=by
            )
            level = 1 if level is None else level
        if S.ESCALATING not in esc_mod.TRANSITIONS[S(esc.state)]:
            raise InvalidTransition(f"escalation {esc.id} is {esc.state}; it cannot be escalated")
        levels = len(esc.policy_snapshot.get("levels") or [])
        target = esc.current_level + 1 if level is None else int(level)
        if level is None and target > levels:
            raise InvalidTransition(f"incident {incident.id} is already at the last level ({levels})")
        if not 1 <= target <= levels:
            raise ValidationError(f"policy {esc.policy_name} has levels 1 to {levels}", field="level")
        esc_mod.enter_level(session, esc, incident, target, now, TargetCache(session), actor=by, manual=True)
        if incident.status != IncidentStatus.ESCALATED:
            _status_event(session, incident, now, IncidentStatus.ESCALATED.value, by, level=target)
        esc_mod.notify_work(session, "dispatch")
        result = _summary(incident, esc)
    ctx.wake("dispatch")
    ctx.wake("escalate")
    return result


def start_work(ctx: AppContext, ref: int | str, *, by: str, via: str = "console") -> dict[str, Any]:
    """ "I'm on it": the incident is in progress. One that still pages is acknowledged first, in the same
    transaction, so all paging ends; its SLA resolution deadline keeps running."""
    by = _text(by, "by", limit=200, required=True)
    now = ctx.clock.now()
    with write_session(ctx.sessions) as session:
        incident = _find_incident(session, ref, lock=True)
        if incident.status == IncidentStatus.IN_PROGRESS:
            raise InvalidTransition(f"incident {incident.id} is already in progress")
        if incident.status not in OPEN_STATUSES:
            raise InvalidTransition(f"incident {incident.id} is {incident.status}; work cannot start on it")
        if incident.status in batch.ACKNOWLEDGEABLE:
            outcome = batch.acknowledge_in(session, [incident.id], by=by, via=via, now=now)[0]
            if isinstance(outcome, WatchkeeperError):
                raise outcome
            session.refresh(incident)
        _status_event(session, incident, now, IncidentStatus.IN_PROGRESS.value, by, via=via)
        _reporter_update(session, incident, now, IncidentStatus.IN_PROGRESS.value)
        esc_mod.notify_work(session, "dispatch")
        result = _summary(incident, _latest_escalation(session, incident.id))
    ctx.wake("dispatch")
    return result


def reopen(ctx: AppContext, ref: int | str, *, by: str, reason: str = "") -> dict[str, Any]:
    """A resolved or cancelled incident opens again with a new escalation (the policy as it is now)."""
    by = _text(by, "by", limit=200, required=True)
    now = ctx.clock.now()
    with write_session(ctx.sessions) as session:
        incident = _find_incident(session, ref, lock=True)
        if incident.status not in (IncidentStatus.RESOLVED, IncidentStatus.CANCELLED):
            raise InvalidTransition(
                f"incident {incident.id} is {incident.status}; only a closed one can be re-opened"
            )
        other = session.scalar(
            select(Incident.id).where(
                Incident.key == incident.key, Incident.status.in_(OPEN_STATUSES), Incident.id != incident.id
            )
        )
        if other is not None:
            raise InvalidTransition(
                f"incident {other} with the same key {incident.key!r} is open; one key has one open incident"
            )
        old_esc = _latest_escalation(session, incident.id)
        old = incident.status
        incident.status = IncidentStatus.OPEN.value
        incident.updated_at = now
        incident.last_triggered_at = now
        incident.acknowledged_at = incident.acknowledged_by = None
        incident.resolved_at = incident.resolved_by = None
        incident.cancelled_at = incident.cancel_reason = None
        timeline.record(
            session,
            "reopened",
            now,
            incident_id=incident.id,
            actor=by,
            message=f"re-opened by {by}" + (f": {reason}" if reason else ""),
            data={"reason": reason, "incident_from": old},
        )
        snapshot: dict[str, Any] | None = None
        policy = (
            session.scalars(
                select(Policy)
                .where(Policy.id == incident.policy_id)
                .options(selectinload(Policy.levels).selectinload(PolicyLevel.targets))
            ).one_or_none()
            if incident.policy_id is not None
            else None
        )
        if policy is not None and policy.enabled:
            snapshot = esc_mod.snapshot_policy(policy)
        elif old_esc is not None:
            snapshot = old_esc.policy_snapshot
        esc: Escalation | None = None
        if snapshot is not None:
            esc = esc_mod.start_escalation(session, now, incident, snapshot, Trigger.MANUAL.value, actor=by)
            esc_mod.notify_work(session, "escalate")
        _reporter_update(session, incident, now, IncidentStatus.OPEN.value)
        result = _summary(incident, esc)
    ctx.wake("escalate")
    return result


# --------------------------------------------------------------------------------------------------------
# Notes, assignment, category and the sensitive flag
# --------------------------------------------------------------------------------------------------------


def add_note(ctx: AppContext, ref: int | str, *, by: str, text: str) -> dict[str, Any]:
    by = _text(by, "by", limit=200, required=True)
    body = _text(text, "text", limit=10_000, required=True)
    now = ctx.clock.now()
    with write_session(ctx.sessions) as session:
        incident = _find_incident(session, ref)
        event = timeline.record(session, "note", now, incident_id=incident.id, actor=by, message=body)
        incident.updated_at = now
        esc_mod.notify_work(session, BOARD_NOTICE)
        session.flush()
        return {"incident_id": incident.id, "event_id": event.id, "at": _iso(now), "by": by, "text": body}


def assign(
    ctx: AppContext,
    ref: int | str,
    *,
    by: str,
    team: str | None = None,
    person: str | None = None,
    reason: str = "",
) -> dict[str, Any]:
    by = _text(by, "by", limit=200, required=True)
    if not team and not person:
        raise ValidationError("name a team, a person, or both", field="assign")
    now = ctx.clock.now()
    with write_session(ctx.sessions) as session:
        incident = _find_incident(session, ref)
        team_row = session.scalars(select(Team).where(Team.handle == team)).one_or_none() if team else None
        if team and team_row is None:
            raise NotFound(f"no team with handle {team!r}")
        person_row = (
            session.scalars(select(Person).where(Person.handle == person)).one_or_none() if person else None
        )
        if person and person_row is None:
            raise NotFound(f"no person with handle {person!r}")
        if team_row is not None:
            incident.team_id = team_row.id
        if person_row is not None:
            incident.assignee_id = person_row.id
        incident.updated_at = now
        session.add(
            Assignment(
                incident_id=incident.id,
                team_id=incident.team_id,
                person_id=incident.assignee_id,
                assigned_at=now,
                assigned_by=by,
                reason=reason,
            )
        )
        who = " / ".join(
            x for x in (team_row.name if team_row else "", person_row.name if person_row else "") if x
        )
        timeline.record(
            session,
            "assigned",
            now,
            incident_id=incident.id,
            actor=by,
            message=f"assigned to {who}" + (f": {reason}" if reason else ""),
            data={"team_id": incident.team_id, "person_id": incident.assignee_id, "reason": reason},
        )
        if team_row is not None:
            notify(
                session,
                now,
                team_id=team_row.id,
                kind="incident_assigned",
                item=incident,
                title=f"Assigned to {team_row.name}: #{incident.id} {incident.summary}",
                body=f"By {by}" + (f": {reason}" if reason else ""),
            )
        esc_mod.notify_work(session, BOARD_NOTICE)
        return {
            "incident_id": incident.id,
            "team": team_row.handle if team_row else None,
            "person": person_row.handle if person_row else None,
            "team_id": incident.team_id,
            "assignee_id": incident.assignee_id,
        }


def classify(
    ctx: AppContext,
    ref: int | str,
    *,
    by: str,
    category: str | None = None,
    sensitive: bool | None = None,
) -> dict[str, Any]:
    """Change an open incident's category, its sensitive flag, or both, in one transaction.

    The SLA deadlines are computed again from when the incident opened: a new category may have other
    targets; a sensitive incident is never SLA-monitored (no deadlines, so no warnings or breaches from
    now on), and one that stops being sensitive gets the deadlines it would have had from the start — already
    past, they are warned about or breached by the next SLA pass. A breach already recorded stays recorded.
    A closed incident is refused: its SLA is history (met or late) and the statistics count it as it was.
    `changed` lists what was different ([] when both were already so: nothing is written).
    """
    by = _text(by, "by", limit=200, required=True)
    if category is None and sensitive is None:
        raise ValidationError("give a category, the sensitive flag, or both", field="classify")
    new_category = _text(category, "category", limit=80, required=True) if category is not None else None
    if sensitive is not None and not isinstance(sensitive, bool):
        raise ValidationError("sensitive must be true or false", field="sensitive")
    now = ctx.clock.now()
    with write_session(ctx.sessions) as session:
        incident = _find_incident(session, ref, lock=True)
        if incident.status not in OPEN_STATUSES:
            raise InvalidTransition(
                f"incident {incident.id} is {incident.status}; a closed incident's category and SLA stay "
                "as they were (re-open it first)"
            )
        changed: list[str] = []
        if new_category is not None and new_category != incident.category:
            old = incident.category
            incident.category = new_category
            changed.append("category")
            timeline.record(
                session,
                "category_changed",
                now,
                incident_id=incident.id,
                actor=by,
                message=f"category {old} → {new_category}",
                data={"from": old, "to": new_category},
            )
        if sensitive is not None and sensitive != bool(incident.sensitive):
            incident.sensitive = sensitive
            changed.append("sensitive")
            timeline.record(
                session,
                "sensitive_changed",
                now,
                incident_id=incident.id,
                actor=by,
                message=(
                    "marked sensitive: the SLA is no longer monitored"
                    if sensitive
                    else "no longer sensitive: the SLA is monitored from when it opened"
                ),
                data={"from": not sensitive, "to": sensitive},
            )
        if changed:
            incident.updated_at = now
            _sla_deadlines(session, incident, now, ctx)
            esc_mod.notify_work(session, BOARD_NOTICE)
        return {
            "incident_id": incident.id,
            "changed": changed,
            "category": incident.category,
            "sensitive": bool(incident.sensitive),
            "response_due_at": _iso(incident.response_due_at),
            "resolution_due_at": _iso(incident.resolution_due_at),
        }


def set_category(ctx: AppContext, ref: int | str, *, by: str, category: str) -> dict[str, Any]:
    """`classify` with a category only."""
    return classify(ctx, ref, by=by, category=category)


# --------------------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------------------

_INCIDENT_FIELDS = (
    "id",
    "key",
    "source",
    "summary",
    "details",
    "severity",
    "category",
    "site",
    "status",
    "sensitive",
    "reporter_name",
    "reporter_contact",
    "reporter_language",
    "team_id",
    "assignee_id",
    "policy_id",
    "custom",
    "trigger_count",
    "response_due_at",
    "resolution_due_at",
    "response_breached_at",
    "resolution_breached_at",
    "created_at",
    "updated_at",
    "last_triggered_at",
    "acknowledged_at",
    "acknowledged_by",
    "resolved_at",
    "resolved_by",
    "cancelled_at",
    "cancel_reason",
)


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def incident_dict(incident: Incident) -> dict[str, Any]:
    return {name: _jsonable(getattr(incident, name)) for name in _INCIDENT_FIELDS}


def escalation_dict(esc: Escalation) -> dict[str, Any]:
    return {
        "id": esc.id,
        "policy": esc.policy_name,
        "state": esc.state,
        "trigger": esc.trigger,
        "current_level": esc.current_level,
        "levels": len(esc.policy_snapshot.get("levels") or []),
        "repeat_no": esc.repeat_no,
        "next_action_at": _iso(esc.next_action_at),
        "escalation_count": esc.escalation_count,
        "notification_count": esc.notification_count,
        "trigger_count": esc.trigger_count,
        "started_at": _iso(esc.started_at),
        "acknowledged_at": _iso(esc.acknowledged_at),
        "acknowledged_by": esc.acknowledged_by,
        "resolved_at": _iso(esc.resolved_at),
        "resolved_by": esc.resolved_by,
        "ended_at": _iso(esc.ended_at),
        "end_reason": esc.end_reason,
    }


def list_incidents(ctx: AppContext, *, state: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
    """Newest first. `state`: an incident status, or "unresolved" for every open status."""
    if not 1 <= int(limit) <= 10_000:
        raise ValidationError("must be between 1 and 10000", field="limit")
    stmt = select(Incident).order_by(Incident.id.desc()).limit(int(limit))
    if state:
        wanted = state.strip().lower()
        if wanted in ("unresolved", "active", "open_all"):
            stmt = stmt.where(Incident.status.in_(OPEN_STATUSES))
        elif wanted in {s.value for s in IncidentStatus}:
            stmt = stmt.where(Incident.status == wanted)
        else:
            choices = ", ".join([*(s.value for s in IncidentStatus), "unresolved"])
            raise ValidationError(f"unknown state {state!r}; use one of {choices}", field="state")
    with read_session(ctx.sessions) as session:
        incidents = session.scalars(stmt).all()
        escs: dict[int, Escalation] = {}
        if incidents:
            for e in session.scalars(
                select(Escalation)
                .where(Escalation.incident_id.in_([i.id for i in incidents]))
                .order_by(Escalation.id)
            ):
                escs[e.incident_id] = e
        out = []
        for incident in incidents:
            row = incident_dict(incident)
            esc = escs.get(incident.id)
            row["escalation_state"] = esc.state if esc else None
            row["current_level"] = esc.current_level if esc else None
            row["next_action_at"] = _iso(esc.next_action_at) if esc else None
            out.append(row)
        return out


def show_incident(ctx: AppContext, ref: int | str) -> dict[str, Any]:
    with read_session(ctx.sessions) as session:
        incident = _find_incident(session, ref)
        data = incident_dict(incident)
        escs = session.scalars(
            select(Escalation).where(Escalation.incident_id == incident.id).order_by(Escalation.id)
        ).all()
        data["escalation"] = escalation_dict(escs[-1]) if escs else None
        data["escalations"] = [escalation_dict(e) for e in escs]
        data["events"] = [
            {
                "id": e.id,
                "at": _iso(e.at),
                "kind": e.kind,
                "actor": e.actor,
                "message": e.message,
                "escalation_id": e.escalation_id,
                "data": e.data,
            }
            for e in session.scalars(select(Event).where(Event.incident_id == incident.id).order_by(Event.id))
        ]
        data["messages"] = [
            {
                "id": m.id,
                "kind": m.kind,
                "channel": m.channel,
                "to": m.address,
                "level": m.level,
                "step": m.chain_step,
                "person_id": m.person_id,
                "status": m.status,
                "hold_reason": m.hold_reason,
                "next_attempt_at": _iso(m.next_attempt_at),
                "sent_at": _iso(m.sent_at),
                "error": m.error_text,
                "idempotency_key": m.idempotency_key,
                "created_at": _iso(m.created_at),
            }
            for m in session.scalars(
                select(OutboxMessage)
                .where(OutboxMessage.incident_id == incident.id)
                .order_by(OutboxMessage.id)
            )
        ]
        return data


def stats(
    ctx: AppContext,
    *,
    since: datetime | None,
    until: datetime | None,
    policy: str | None = None,
    team: str | None = None,
    site: str | None = None,
    category: str | None = None,
    severity: str | None = None,
) -> dict[str, Any]:
    from engine import stats as stats_mod

    with read_session(ctx.sessions) as session:
        return stats_mod.compute(
            session,
            since=since,
            until=until,
            policy=policy,
            team=team,
            site=site,
            category=category,
            severity=severity,
        )


def intake_set_aside(ctx: AppContext, *, limit: int = 50) -> dict[str, Any]:
    """Events API events that could not be applied and were set aside, newest first, with their errors."""
    from engine.service.queue import set_aside

    total, events = set_aside(ctx, limit)
    return {"total": total, "events": events}
