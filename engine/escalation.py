"""The escalation engine: a policy frozen into each escalation, a table-driven state machine, the escalate pass.

An escalation starts PENDING with `next_action_at` = when level 1 is due (its delay after the start, or when
business hours open for a business-hours policy and a non-critical incident). The escalate pass claims due rows
(engine.claims) and moves each one on: PENDING → ACTIVE pages level 1; while ACTIVE, a level repeats every
`repeat_interval_seconds` up to `repeat_count` times, and `delay_seconds` after a level was paged the next one
is (ACTIVE → ESCALATING → ACTIVE at the next level). Past the last level, or once `max_escalations` level moves
were made, the escalation is TIMED_OUT: nobody acknowledged. A level with `auto_resolve_seconds` resolves the
incident that long after it was paged. Acknowledge, resolve, cancel, manual escalate and re-open come from
engine.api. Every transition is checked against TRANSITIONS and writes an Event with actor and time.

The policy snapshot (Escalation.policy_snapshot) is taken when the escalation starts; the engine reads only the
snapshot afterwards, so editing or deleting a policy never changes an escalation already running. Nothing here
keeps time in memory: each row's `next_action_at` is the whole schedule, so any engine can pick up any row.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import bindparam, select, text, update
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session, joinedload

from engine import paging, timeline
from engine.claims import (
    DEFAULT_LEASE_SECONDS,
    ESCALATION_WRITABLE,
    INCIDENT_WRITABLE,
    EscalationRow,
    claim_due_escalation_rows,
    dialect_name,
    next_escalation_due,
)
from engine.db import read_session, write_session
from engine.errors import InvalidTransition, ValidationError
from engine.hours import next_business_open
from engine.models import (
    Escalation,
    EscalationState,
    Incident,
    IncidentStatus,
    Person,
    Policy,
    Severity,
    Trigger,
)
from engine.paging import AnyEscalation, AnyIncident
from engine.prepared import Prepared
from engine.targets import Resolution, TargetCache, describe_target, resolve_target

if TYPE_CHECKING:
    from engine.context import AppContext

log = logging.getLogger(__name__)

S = EscalationState
# Every legal move. Anything else is refused with InvalidTransition (tested pair by pair).
TRANSITIONS: dict[EscalationState, frozenset[EscalationState]] = {
    S.PENDING: frozenset(
        {S.ACTIVE, S.ESCALATING, S.ACKNOWLEDGED, S.RESOLVED, S.CANCELLED, S.TIMED_OUT, S.FAILED}
    ),
    S.ACTIVE: frozenset({S.ESCALATING, S.ACKNOWLEDGED, S.RESOLVED, S.CANCELLED, S.TIMED_OUT, S.FAILED}),
    S.ESCALATING: frozenset({S.ACTIVE, S.ACKNOWLEDGED, S.RESOLVED, S.CANCELLED, S.TIMED_OUT, S.FAILED}),
    # Acknowledged: someone owns it. It can still be resolved, cancelled, or escalated by hand for help.
    S.ACKNOWLEDGED: frozenset({S.ESCALATING, S.RESOLVED, S.CANCELLED}),
    # Nobody answered, or the engine failed: the incident is still open and an operator may escalate by hand.
    S.TIMED_OUT: frozenset({S.ESCALATING, S.ACKNOWLEDGED, S.RESOLVED, S.CANCELLED}),
    S.FAILED: frozenset({S.ESCALATING, S.ACKNOWLEDGED, S.RESOLVED, S.CANCELLED}),
    # Closed for good; a re-opened incident gets a new escalation.
    S.RESOLVED: frozenset(),
    S.CANCELLED: frozenset(),
}
LIVE = frozenset({S.PENDING, S.ACTIVE, S.ESCALATING})
# States an operator's acknowledge/resolve/cancel still applies to (the escalation has not been closed).
OPEN = frozenset({S.PENDING, S.ACTIVE, S.ESCALATING, S.ACKNOWLEDGED, S.TIMED_OUT, S.FAILED})
# Escalations per claim and transaction: big enough to spread each statement's cost over many rows, small
# enough that the write lock (SQLite) and the row locks (PostgreSQL) are held for a fraction of a second.
DEFAULT_BATCH = 500
# SQLite has one write lock for the whole file, and every other writer (an HTTP intake commit, an operator's
# acknowledge) waits while a batch holds it, about 0.5 ms per escalation on 2 cores. Measured on SQLite:
# batches of 250 halve that wait against 500 at the same burst time (5.0 s / 4.9 s for 10,000) and lag
# (p99 0.17 s / 0.19 s); 100 pushed the lag p99 over a second and 50 slowed a burst by half. PostgreSQL
# locks rows, not the database, and keeps DEFAULT_BATCH.
SQLITE_BATCH = 250
# PostgreSQL: batches of one backlog worked at the same time (escalate_pass).
PARALLEL_BATCHES = 2


def can_transition(frm: str, to: str) -> bool:
    return EscalationState(to) in TRANSITIONS[EscalationState(frm)]


def transition(
    session: Session,
    esc: AnyEscalation,
    to: EscalationState,
    now: datetime,
    *,
    actor: str = "system",
    kind: str | None = None,
    message: str = "",
    data: dict[str, Any] | None = None,
) -> None:
    """Move `esc` to `to` if the table allows it, and record the event; InvalidTransition otherwise."""
    frm = EscalationState(esc.state)
    if to not in TRANSITIONS[frm]:
        raise InvalidTransition(f"escalation {esc.id} is {frm.value}; it cannot become {to.value}")
    esc.state = to.value
    esc.updated_at = now
    if to not in LIVE:
        esc.next_action_at = None
    if to in (S.RESOLVED, S.CANCELLED, S.TIMED_OUT, S.FAILED):
        esc.ended_at = now
    timeline.emit(
        session,
        kind or f"escalation_{to.value}",
        now,
        incident_id=esc.incident_id,
        escalation_id=esc.id,
        actor=actor,
        message=message,
        data={"from": frm.value, "to": to.value, **(data or {})},
    )


# --------------------------------------------------------------------------------------------------------
# The policy snapshot
# --------------------------------------------------------------------------------------------------------


def snapshot_policy(policy: Policy) -> dict[str, Any]:
    """The policy as plain JSON: everything the engine will ever read about it for this escalation."""
    return {
        "id": policy.id,
        "name": policy.name,
        "version": policy.version,
        "severity_filter": list(policy.severity_filter or []),
        "triggers": list(policy.triggers or []),
        "max_escalations": policy.max_escalations,
        "cooldown_seconds": policy.cooldown_seconds,
        "business_hours_only": policy.business_hours_only,
        "business_days": list(policy.business_days or []),
        "business_start": policy.business_start,
        "business_end": policy.business_end,
        "timezone": policy.timezone,
        "levels": [
            {
                "level": lvl.level,
                "delay_seconds": lvl.delay_seconds,
                "repeat_count": lvl.repeat_count,
                "repeat_interval_seconds": lvl.repeat_interval_seconds,
                "require_ack": lvl.require_ack,
                "auto_resolve_seconds": lvl.auto_resolve_seconds,
                "targets": [
                    {"type": t.type, "identifier": t.identifier, "name": t.name} for t in lvl.targets
                ],
            }
            for lvl in sorted(policy.levels, key=lambda lv: lv.level)
        ],
    }


def starts_at_trigger(snapshot: dict[str, Any]) -> bool:
    """Whether the policy starts escalating when an incident opens (`unacknowledged`, the default). Its other
    triggers start it later: `sla_breach` at a missed response deadline, `unresolved` at a missed resolution
    deadline (engine.sla), `overdue` when a workflow item of the incident is overdue twice over
    (engine.overdue), `repeated_failure` when the alert comes back while the incident is open (engine.batch),
    `manual` only when an operator escalates."""
    triggers = [str(t) for t in snapshot.get("triggers") or []]
    return not triggers or Trigger.UNACKNOWLEDGED.value in triggers


def has_trigger(snapshot: dict[str, Any], trigger: Trigger) -> bool:
    return trigger.value in [str(t) for t in snapshot.get("triggers") or []]


def severity_matches(snapshot: dict[str, Any], severity: str) -> bool:
    wanted = [str(s) for s in snapshot.get("severity_filter") or []]
    return not wanted or severity in wanted


def _levels(snapshot: dict[str, Any]) -> list[dict[str, Any]]:
    return list(snapshot.get("levels") or [])


def _level(snapshot: dict[str, Any], n: int) -> dict[str, Any] | None:
    levels = _levels(snapshot)
    return levels[n - 1] if 1 <= n <= len(levels) else None


def business_hours_wait(snapshot: dict[str, Any], severity: str, at: datetime) -> datetime | None:
    """When a business-hours policy must wait for the window to open, the opening; None to go now.
    Critical incidents never wait."""
    if not snapshot.get("business_hours_only") or severity == Severity.CRITICAL:
        return None
    opens = next_business_open(
        at,
        [int(d) for d in snapshot.get("business_days") or []],
        str(snapshot.get("business_start", "08:00")),
        str(snapshot.get("business_end", "17:00")),
        str(snapshot.get("timezone", "UTC")),
    )
    return opens if opens > at else None


# --------------------------------------------------------------------------------------------------------
# Starting
# --------------------------------------------------------------------------------------------------------


def new_escalation_values(
    severity: str, snapshot: dict[str, Any], trigger: str, now: datetime
) -> tuple[dict[str, Any], datetime | None]:
    """The columns of a new PENDING escalation but its incident, with its first due time; (values,
    business-hours opening or None). Plain values: the trigger path writes them without an ORM object."""
    first = _level(snapshot, 1)
    due = now + timedelta(seconds=int(first["delay_seconds"]) if first else 0)
    opens = business_hours_wait(snapshot, severity, due)
    values = {
        "policy_id": snapshot.get("id"),
        "policy_name": str(snapshot.get("name", "")),
        "policy_snapshot": snapshot,
        "state": S.PENDING.value,
        "trigger": str(trigger),
        "current_level": 0,
        "repeat_no": 0,
        "repeat_base": 0,
        "level_rounds": {},
        "next_action_at": opens or due,
        "escalation_count": 0,
        "notification_count": 0,
        "trigger_count": 1,
        "started_at": now,
        "updated_at": now,
    }
    return values, opens


def new_escalation(
    incident: Incident,
    snapshot: dict[str, Any],
    trigger: str,
    now: datetime,
) -> tuple[Escalation, datetime | None]:
    """An unsaved PENDING escalation with its first due time; (escalation, business-hours opening or None)."""
    values, opens = new_escalation_values(incident.severity, snapshot, trigger, now)
    return Escalation(incident_id=incident.id, **values), opens


def started_event_data(esc: Escalation, opens: datetime | None) -> tuple[str, dict[str, Any]]:
    assert esc.next_action_at is not None
    return started_event_values(esc.policy_name, esc.trigger, esc.next_action_at, opens)


def started_event_values(
    policy_name: str, trigger: str, first_action_at: datetime, opens: datetime | None
) -> tuple[str, dict[str, Any]]:
    """The message and data of an `escalation_started` event."""
    msg = f"escalation started with policy {policy_name}"
    if opens is not None:
        msg += f"; waiting for business hours ({opens.isoformat()})"
    return msg, {
        "policy": policy_name,
        "trigger": trigger,
        "first_action_at": first_action_at.isoformat(),
        "waiting_business_hours": opens is not None,
    }


def start_escalation(
    session: Session,
    now: datetime,
    incident: Incident,
    policy: Policy | dict[str, Any],
    trigger: str = Trigger.UNACKNOWLEDGED.value,
    *,
    actor: str = "system",
) -> Escalation:
    """Freeze the policy and start a PENDING escalation for `incident` (the escalate pass pages level 1)."""
    snapshot = policy if isinstance(policy, dict) else snapshot_policy(policy)
    if incident.id is None:
        session.flush()
    esc, opens = new_escalation(incident, snapshot, trigger, now)
    esc.incident = incident
    session.add(esc)
    session.flush()
    msg, data = started_event_data(esc, opens)
    timeline.emit(
        session,
        "escalation_started",
        now,
        incident_id=incident.id,
        escalation_id=esc.id,
        actor=actor,
        message=msg,
        data=data,
    )
    return esc


# --------------------------------------------------------------------------------------------------------
# Paging a level
# --------------------------------------------------------------------------------------------------------


def page_round(
    session: Session,
    esc: AnyEscalation,
    incident: AnyIncident,
    now: datetime,
    cache: TargetCache,
    buffer: paging.PageBuffer | None = None,
) -> dict[str, Any]:
    """Page everyone the current level's targets mean now, for round `esc.repeat_no`."""
    level = _level(esc.policy_snapshot, esc.current_level)
    assert level is not None
    critical = incident.severity == Severity.CRITICAL
    people: dict[int, Person] = {}
    addresses: list[tuple[int, Any]] = []
    unresolved = 0
    for index, target in enumerate(level.get("targets") or []):
        try:
            found = resolve_target(cache, target, now)
        except Exception as exc:  # a broken schedule must not stop the other targets
            log.exception("target %s could not be resolved", target)
            found = Resolution(unresolved=f"could not be resolved: {exc}")
        if found.unresolved:
            unresolved += 1
            timeline.emit(
                session,
                "target_unresolved",
                now,
                incident_id=incident.id,
                escalation_id=esc.id,
                message=f"level {esc.current_level}: {describe_target(target)} reaches nobody: {found.unresolved}",
                data={"level": esc.current_level, "target": target, "reason": found.unresolved},
            )
            continue
        if found.address is not None:
            addresses.append((index, found.address))
        for person in found.people:
            people.setdefault(person.id, person)
    paged: list[int] = []
    require_ack = bool(level.get("require_ack", True))
    for person in people.values():
        page = paging.start_page(
            session,
            now,
            esc,
            esc.current_level,
            esc.repeat_no,
            person,
            incident=incident,
            require_confirmation=require_ack,
            critical=critical,
            buffer=buffer,
        )
        if page is not None or buffer is not None:  # a buffered page is checked when the batch is written
            paged.append(person.id)
    written_addresses: list[str] = []
    for index, target in addresses:
        context = paging.incident_context(incident) | {
            "level": esc.current_level,
            "repeat_no": esc.repeat_no,
            "reply_code": None,
            "person_name": target.name,
            "channel": target.channel,
        }
        subject, body, html = paging.render_message(session, "page", target.channel, "en", context, now)
        if paging.write_outbox(
            session,
            key=f"target:{esc.id}:{esc.current_level}:{esc.repeat_no}:{index}",
            kind="page",
            now=now,
            channel=target.channel,
            address=target.address,
            subject=subject,
            body=body,
            body_html=html,
            incident_id=incident.id,
            escalation_id=esc.id,
            level=esc.current_level,
            critical=critical,
        ):
            written_addresses.append(f"{target.channel}:{target.address}")
    esc.notification_count += len(paged) + len(written_addresses)
    rounds = dict(esc.level_rounds or {})
    rounds[str(esc.current_level)] = esc.repeat_no + 1
    esc.level_rounds = rounds
    return {
        "level": esc.current_level,
        "repeat_no": esc.repeat_no,
        "people": paged,
        "addresses": written_addresses,
        "unresolved": unresolved,
    }


def _schedule(esc: AnyEscalation, now: datetime) -> None:
    """Set `next_action_at` for an ACTIVE (or ACKNOWLEDGED) escalation from its level's timing."""
    snap = esc.policy_snapshot
    level = _level(snap, esc.current_level)
    if level is None or esc.level_started_at is None:
        esc.next_action_at = None
        return
    t0 = esc.level_started_at
    auto = int(level.get("auto_resolve_seconds") or 0)
    times: list[datetime] = []
    if auto > 0:
        times.append(t0 + timedelta(seconds=auto))
    if esc.state == S.ACTIVE:
        interval = int(level.get("repeat_interval_seconds") or 0)
        done = esc.repeat_no - esc.repeat_base
        nxt = _level(snap, esc.current_level + 1)
        if done < int(level.get("repeat_count") or 0):
            times.append(t0 + timedelta(seconds=(done + 1) * interval))
        if nxt is not None:
            times.append(t0 + timedelta(seconds=int(nxt.get("delay_seconds") or 0)))
        else:
            times.append(t0 + timedelta(seconds=(int(level.get("repeat_count") or 0) + 1) * interval))
    esc.next_action_at = min(times) if times else None


def enter_level(
    session: Session,
    esc: AnyEscalation,
    incident: AnyIncident,
    number: int,
    now: datetime,
    cache: TargetCache,
    *,
    actor: str = "system",
    manual: bool = False,
    why: str = "",
    buffer: paging.PageBuffer | None = None,
) -> dict[str, Any]:
    """Page level `number`: PENDING → ACTIVE for the first, X → ESCALATING → ACTIVE for any later move.
    `manual`: an operator (or an SLA breach, `why` saying so) moves it now, whatever the timers say.
    Returns what the round paged (page_round's summary)."""
    snap = esc.policy_snapshot
    if _level(snap, number) is None:
        raise ValidationError(f"policy {esc.policy_name} has no level {number} (it has {len(_levels(snap))})")
    if esc.state != S.PENDING or manual:
        transition(
            session,
            esc,
            S.ESCALATING,
            now,
            actor=actor,
            message=f"escalating to level {number}" + (f": {why}" if why else " by hand" if manual else ""),
            data={"level": number, "from_level": esc.current_level, "manual": manual, "why": why},
        )
        esc.escalation_count += 1
    base = int((esc.level_rounds or {}).get(str(number), 0))
    esc.levels_done_at = None  # paged again: its chains decide anew when it times out
    esc.current_level = number
    esc.repeat_base = base
    esc.repeat_no = base
    esc.level_started_at = now
    summary = page_round(session, esc, incident, now, cache, buffer)
    transition(
        session,
        esc,
        S.ACTIVE,
        now,
        actor=actor,
        message=f"level {number} paged: {len(summary['people'])} people, {len(summary['addresses'])} addresses",
        data=summary,
    )
    _schedule(esc, now)
    return summary


def _reached_nobody(summary: dict[str, Any]) -> bool:
    return not summary["people"] and not summary["addresses"]


def _enter_reaching_someone(
    session: Session,
    esc: AnyEscalation,
    incident: AnyIncident,
    number: int,
    now: datetime,
    cache: TargetCache,
    buffer: paging.PageBuffer | None,
) -> None:
    """Page level `number`; a level that reaches nobody (an empty team, nobody on call, an unknown handle)
    is passed over at once for the next one, rather than waiting out its delay with nobody paged."""
    summary = enter_level(session, esc, incident, number, now, cache, buffer=buffer)
    limit = int(esc.policy_snapshot.get("max_escalations") or 0)
    while _reached_nobody(summary) and _level(esc.policy_snapshot, esc.current_level + 1) is not None:
        if limit and esc.escalation_count >= limit:
            return
        skipped = esc.current_level
        summary = enter_level(
            session,
            esc,
            incident,
            skipped + 1,
            now,
            cache,
            why=f"level {skipped} reaches nobody",
            buffer=buffer,
        )


def raise_escalation(
    session: Session, esc: Escalation, incident: Incident, now: datetime, *, actor: str, why: str
) -> int:
    """Move the incident's live escalation on now (an SLA breach): the next level, or the last one paged again
    when there is none; returns the level paged. One escalation keeps running, so one acknowledgement ends
    it — a second escalation started beside it would page on after the first was acknowledged."""
    levels = len(_levels(esc.policy_snapshot))
    if esc.state == S.PENDING:
        number = 1
    else:
        number = min(esc.current_level + 1, levels) if levels else 0
    if number < 1:
        return 0
    enter_level(session, esc, incident, number, now, TargetCache(session), actor=actor, manual=True, why=why)
    return number


def escalate_for(
    session: Session,
    now: datetime,
    incident: Incident,
    trigger: Trigger,
    *,
    why: str,
    actor: str,
    policy: Policy | None = None,
    only_if_listed: bool = False,
) -> str:
    """Something happened that escalates the incident (`trigger`: an SLA breach, an overdue item). Its live
    escalation moves on now (raise_escalation) — with `only_if_listed`, only when that escalation's policy
    lists the trigger. With none live, `policy` starts (a breach policy), else the incident's own policy when
    it lists the trigger. The caller holds the incident's lock. Returns "raised", "started" or ""."""
    stmt = select(Escalation).where(
        Escalation.incident_id == incident.id, Escalation.state.in_([s.value for s in LIVE])
    )
    if session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update(key_share=True)
    live = session.scalars(stmt).first()
    if live is not None:
        if only_if_listed and not has_trigger(live.policy_snapshot, trigger):
            return ""
        _mark_escalated(session, incident, now, actor, why)
        raise_escalation(session, live, incident, now, actor=actor, why=why)
        return "raised"
    if policy is None or not policy.enabled:
        own = session.get(Policy, incident.policy_id) if incident.policy_id is not None else None
        if own is None or not own.enabled or trigger.value not in [str(t) for t in own.triggers or []]:
            return ""
        policy = own
    _mark_escalated(session, incident, now, actor, why)
    esc = start_escalation(session, now, incident, policy, trigger.value, actor=actor)
    timeline.emit(
        session,
        "escalation_reason",
        now,
        incident_id=incident.id,
        escalation_id=esc.id,
        actor=actor,
        message=f"escalation started: {why}",
        data={"trigger": trigger.value},
    )
    return "started"


def _mark_escalated(session: Session, incident: Incident, now: datetime, actor: str, why: str) -> None:
    """Paging resumes for the incident: its status says so (an acknowledged one is escalated again)."""
    if incident.status == IncidentStatus.ESCALATED:
        return
    old = incident.status
    incident.status = IncidentStatus.ESCALATED.value
    incident.updated_at = now
    timeline.emit(
        session,
        "status_changed",
        now,
        incident_id=incident.id,
        actor=actor,
        message=f"{old} → escalated: {why}",
        data={"from": old, "to": IncidentStatus.ESCALATED.value},
    )


def _time_out(session: Session, esc: AnyEscalation, now: datetime, why: str) -> None:
    """Nobody acknowledged and nobody is being tried any more. The pages stay as they ended (confirmed, sent,
    exhausted): timing out stops escalating, it never withdraws a page."""
    esc.levels_done_at = esc.levels_done_at or now
    transition(session, esc, S.TIMED_OUT, now, message=why, data={"level": esc.current_level})


def _levels_done(session: Session, esc: AnyEscalation, now: datetime, why: str) -> str:
    """No level is left to page (or `max_escalations` was reached). The people already paged go on being tried
    through their chains; the escalation times out only when the last chain has ended."""
    still = paging.open_pages(session, esc.id)
    if not still:
        _time_out(session, esc, now, f"nobody acknowledged; {why}")
        return "timed_out"
    esc.levels_done_at = now
    esc.updated_at = now
    timeline.emit(
        session,
        "levels_done",
        now,
        incident_id=esc.incident_id,
        escalation_id=esc.id,
        message=f"{why}; still trying {len(still)} "
        + ("person" if len(still) == 1 else "people")
        + " through their channels",
        data={"level": esc.current_level, "open_pages": len(still)},
    )
    esc.next_action_at = _chains_recheck(session, esc, now)
    return "levels_done"


# An escalation waiting for its chains looks again at least this often (a chain that ends nudges it sooner).
CHAINS_RECHECK_SECONDS = 900


def _chains_recheck(session: Session, esc: AnyEscalation, now: datetime) -> datetime:
    """When an escalation whose levels are done looks at its chains again: the earliest check of an open page
    (the confirm pass nudges it when a chain ends before that), at most CHAINS_RECHECK_SECONDS away."""
    soonest = paging.next_page_check(session, esc.id)
    latest = now + timedelta(seconds=CHAINS_RECHECK_SECONDS)
    if soonest is None or soonest > latest:
        return latest
    return max(soonest, now + timedelta(seconds=1))


def _await_chains(session: Session, esc: AnyEscalation, now: datetime) -> str:
    if paging.open_pages(session, esc.id):
        esc.next_action_at = _chains_recheck(session, esc, now)
        return "waiting_for_chains"
    _time_out(session, esc, now, "nobody acknowledged; every person paged was tried on every channel")
    return "timed_out"


def auto_resolve(session: Session, esc: AnyEscalation, incident: AnyIncident, now: datetime) -> None:
    level = esc.current_level
    transition(
        session,
        esc,
        S.RESOLVED,
        now,
        kind="auto_resolved",
        message=f"resolved automatically (level {level} auto-resolve time reached)",
        data={"level": level},
    )
    esc.resolved_at = now
    esc.resolved_by = "system"
    paging.stop_paging(session, [incident.id], now)
    if incident.status in (
        IncidentStatus.OPEN,
        IncidentStatus.ACKNOWLEDGED,
        IncidentStatus.IN_PROGRESS,
        IncidentStatus.ESCALATED,
    ):
        incident.status = IncidentStatus.RESOLVED.value
        incident.resolved_at = now
        incident.resolved_by = "system"
        incident.updated_at = now
        paging.write_notices(session, incident, now, "resolve", "system")


def process_escalation(
    session: Session,
    esc: AnyEscalation,
    now: datetime,
    cache: TargetCache,
    buffer: paging.PageBuffer | None = None,
) -> str:
    """Do whatever is due for one claimed escalation; returns what was done."""
    incident = esc.incident
    state = EscalationState(esc.state)
    if state in LIVE and incident.status not in paging.PAGING_STATUSES:
        # Acknowledge, resolve and cancel end every escalation in their own transaction; this only meets rows
        # written before that rule (or by hand), and ends them the same way.
        to = (
            S.ACKNOWLEDGED
            if incident.status in (IncidentStatus.ACKNOWLEDGED, IncidentStatus.IN_PROGRESS)
            else S.CANCELLED
        )
        transition(session, esc, to, now, message=f"incident is {incident.status}")
        paging.stop_paging(session, [incident.id], now)
        return to.value
    snap = esc.policy_snapshot
    if state == S.PENDING:
        if not _levels(snap):
            transition(session, esc, S.FAILED, now, message="the policy has no levels")
            return "failed"
        opens = business_hours_wait(snap, incident.severity, now)
        if opens is not None:
            esc.next_action_at = opens
            timeline.emit(
                session,
                "waiting_business_hours",
                now,
                incident_id=incident.id,
                escalation_id=esc.id,
                message=f"waiting for business hours ({opens.isoformat()})",
                data={"until": opens.isoformat()},
            )
            return "waiting"
        _enter_reaching_someone(session, esc, incident, 1, now, cache, buffer)
        return "started"
    level = _level(snap, esc.current_level)
    if level is None or esc.level_started_at is None:
        transition(session, esc, S.FAILED, now, message=f"level {esc.current_level} is not in the snapshot")
        return "failed"
    t0 = esc.level_started_at
    auto = int(level.get("auto_resolve_seconds") or 0)
    if auto > 0 and now >= t0 + timedelta(seconds=auto):
        auto_resolve(session, esc, incident, now)
        return "auto_resolved"
    if state != S.ACTIVE:  # acknowledged: only auto-resolve is ever due
        _schedule(esc, now)
        return "nothing"
    if esc.levels_done_at is not None:
        return _await_chains(session, esc, now)
    nxt = _level(snap, esc.current_level + 1)
    interval = int(level.get("repeat_interval_seconds") or 0)
    repeat_count = int(level.get("repeat_count") or 0)
    level_due = t0 + timedelta(seconds=int(nxt.get("delay_seconds") or 0)) if nxt is not None else None
    done = esc.repeat_no - esc.repeat_base
    repeated = False
    if done < repeat_count and now >= t0 + timedelta(seconds=(done + 1) * interval):
        # A repeat due before (or with) the next level is paged even when the engine runs late; repeats missed
        # while no engine ran are one round, not a burst of identical pages.
        due = (
            repeat_count if interval <= 0 else min(repeat_count, int((now - t0).total_seconds() // interval))
        )
        if level_due is not None and interval > 0:
            due = min(due, int((level_due - t0).total_seconds() // interval))
        if due > done:
            esc.repeat_no = esc.repeat_base + due
            esc.updated_at = now
            summary = page_round(session, esc, incident, now, cache, buffer)
            missed = due - done - 1
            timeline.emit(
                session,
                "level_repeated",
                now,
                incident_id=incident.id,
                escalation_id=esc.id,
                message=f"level {esc.current_level} paged again (repeat {due} of {repeat_count})"
                + (f"; {missed} missed while no engine ran" if missed else ""),
                data=summary | {"missed": missed},
            )
            repeated = True
    if level_due is not None and now >= level_due:
        limit = int(snap.get("max_escalations") or 0)
        if limit and esc.escalation_count >= limit:
            if repeated:  # its pages are written with the batch; look at the chains next time round
                _schedule(esc, now)
                return "repeated"
            return _levels_done(session, esc, now, f"the limit of {limit} escalations was reached")
        _enter_reaching_someone(session, esc, incident, esc.current_level + 1, now, cache, buffer)
        return "escalated"
    if not repeated and nxt is None and now >= t0 + timedelta(seconds=(repeat_count + 1) * interval):
        return _levels_done(session, esc, now, f"level {esc.current_level} is the last level")
    _schedule(esc, now)
    return "repeated" if repeated else "rescheduled"


def notify_work(session: Session, pass_name: str) -> None:
    """Wake other processes' engines when this transaction commits (PostgreSQL LISTEN/NOTIFY)."""
    if dialect_name(session) == "postgresql":
        session.execute(text("SELECT pg_notify('watchkeeper_work', :p)"), {"p": pass_name})


def next_due(ctx: AppContext) -> datetime | None:
    """When the next escalation falls due (possibly already past); None when nothing is scheduled."""
    with read_session(ctx.sessions) as session:
        return next_escalation_due(session)


def escalate_pass(
    ctx: AppContext,
    *,
    limit: int | None = None,
    lease_seconds: float = DEFAULT_LEASE_SECONDS,
    max_batches: int = 50,
    workers: int | None = None,
) -> int:
    """Claim due escalations batch by batch and move each on; returns how many were processed.

    A batch that comes back full means a backlog. On PostgreSQL the rest of it is then worked by `workers`
    threads at once (default PARALLEL_BATCHES), each claiming its own batches with SKIP LOCKED: while one
    waits for the database, another prepares its rows. SQLite has one writer at a time, so it goes on in
    this thread. `limit`: escalations per batch (one transaction); by default `batch_size(ctx)`."""
    if limit is None:
        limit = batch_size(ctx)
    budget = _BatchBudget(max_batches)
    total = _drain(ctx, limit, lease_seconds, budget, first_only=True)
    if total == limit and budget.left():
        n = workers if workers is not None else PARALLEL_BATCHES
        if n > 1 and dialect_name_of(ctx) == "postgresql":
            with ThreadPoolExecutor(max_workers=n, thread_name_prefix="escalate") as pool:
                futures = [pool.submit(_drain, ctx, limit, lease_seconds, budget) for _ in range(n)]
                total += sum(f.result() for f in futures)
        else:
            total += _drain(ctx, limit, lease_seconds, budget)
    if total:
        ctx.wake("dispatch")
    return total


class _BatchBudget:
    """How many more batches one pass may claim, shared by its threads."""

    def __init__(self, batches: int) -> None:
        self._left = batches
        self._lock = threading.Lock()

    def take(self) -> bool:
        with self._lock:
            if self._left <= 0:
                return False
            self._left -= 1
            return True

    def left(self) -> bool:
        with self._lock:
            return self._left > 0


def _drain(
    ctx: AppContext, limit: int, lease_seconds: float, budget: _BatchBudget, *, first_only: bool = False
) -> int:
    """Batches until one comes back short of `limit` (nothing more is due) or the budget is spent."""
    total = 0
    while budget.take():
        now = ctx.clock.now()
        try:
            done = _escalate_batch(ctx, now, limit, lease_seconds)
        except OperationalError as exc:
            if "locked" not in str(exc).lower():
                raise
            # SQLite: another engine held the write lock past the busy timeout. Its work is its own;
            # ours is still due and is picked up at the next tick.
            log.info("escalate pass: database busy (another engine is writing); retrying next tick")
            break
        total += done
        if done < limit or first_only:
            break
    return total


def dialect_name_of(ctx: AppContext) -> str:
    return str(ctx.db.dialect.name)


def batch_size(ctx: AppContext) -> int:
    """Escalations per batch (and write transaction) on this database."""
    return SQLITE_BATCH if dialect_name_of(ctx) == "sqlite" else DEFAULT_BATCH


def _escalate_batch(ctx: AppContext, now: datetime, limit: int, lease_seconds: float) -> int:
    """Claim and process one batch in one transaction; how many escalations it held.

    The batch is processed as a whole first, on plain rows (engine.claims.EscalationRow) rather than ORM
    instances: pages and their first messages are buffered and written with a few multi-row INSERT … ON
    CONFLICT DO NOTHING statements, events with one INSERT, the escalations' changes with one executemany
    UPDATE. If anything in the batch fails (a broken snapshot, a page another engine already wrote), the batch
    is rolled back to its savepoint and processed again row by row on ORM instances, each escalation in its
    own savepoint, so one bad escalation only ever fails itself."""
    with write_session(ctx.sessions) as session:
        rows = claim_due_escalation_rows(session, now, ctx.node_id, limit, lease_seconds)
        if not rows:
            return 0
        cache = TargetCache(session)
        if not _process_batch(session, rows, now, cache):
            escs = session.scalars(
                select(Escalation)
                .options(joinedload(Escalation.incident))
                .where(Escalation.id.in_([r.id for r in rows]))
                .order_by(Escalation.next_action_at, Escalation.id)
            ).all()
            _process_rows(session, escs, now, cache)
        notify_work(session, "dispatch")
    return len(rows)


_ESC_TABLE: Any = Escalation.__table__
_INC_TABLE: Any = Incident.__table__
# One statement shape for every row of a batch (executemany, as driver SQL): all the columns the pass may
# change.
_WRITE_ESCALATION = Prepared(
    update(_ESC_TABLE)
    .where(_ESC_TABLE.c.id == bindparam("b_id"))
    .values({c: bindparam(f"b_{c}") for c in ESCALATION_WRITABLE})
)
_WRITE_INCIDENT = Prepared(
    update(_INC_TABLE)
    .where(_INC_TABLE.c.id == bindparam("b_id"))
    .values({c: bindparam(f"b_{c}") for c in INCIDENT_WRITABLE})
)


def _process_batch(
    session: Session, rows: Sequence[EscalationRow], now: datetime, cache: TargetCache
) -> bool:
    """Every escalation of the batch at once; False (and nothing written) when the batch must go row by row."""
    incidents = {r.incident.id: r.incident for r in rows}
    before = {i: tuple(getattr(inc, c) for c in INCIDENT_WRITABLE) for i, inc in incidents.items()}
    try:
        with session.begin_nested(), session.no_autoflush, timeline.EventBuffer(session) as events:
            buffer = paging.PageBuffer()
            for esc in rows:
                process_escalation(session, esc, now, cache, buffer)
                esc.lease_owner = None
                esc.lease_expires_at = None
            buffer.flush(session, now)
            events.flush()
            conn = session.connection()
            _WRITE_ESCALATION.run_many(
                conn,
                [{"b_id": r.id, **{f"b_{c}": getattr(r, c) for c in ESCALATION_WRITABLE}} for r in rows],
            )
            changed = [inc for i, inc in incidents.items() if inc.changes(before[i])]
            if changed:
                _WRITE_INCIDENT.run_many(
                    conn,
                    [
                        {"b_id": inc.id, **{f"b_{c}": getattr(inc, c) for c in INCIDENT_WRITABLE}}
                        for inc in changed
                    ],
                )
        return True
    except OperationalError as exc:
        if "locked" in str(exc).lower():
            raise  # SQLite busy: the whole batch is retried next tick
        log.warning("escalate pass: batch of %s failed (%s); processing it row by row", len(rows), exc)
    except Exception as exc:
        log.warning("escalate pass: batch of %s failed (%s); processing it row by row", len(rows), exc)
    return False


def _process_rows(session: Session, escs: Sequence[Escalation], now: datetime, cache: TargetCache) -> None:
    """Each escalation in its own savepoint: one that fails is marked FAILED, the others go on."""
    for esc in escs:
        esc_id = esc.id
        try:
            with session.begin_nested():
                process_escalation(session, esc, now, cache)
        except DBAPIError:
            raise  # the database itself: the whole batch is retried next tick
        except Exception as exc:
            log.exception("escalation %s failed", esc_id)
            with session.begin_nested():
                failed = session.get(Escalation, esc_id)
                if failed is not None and S.FAILED in TRANSITIONS[EscalationState(failed.state)]:
                    transition(session, failed, S.FAILED, now, message=f"engine error: {exc}"[:2000])
        esc.lease_owner = None
        esc.lease_expires_at = None
