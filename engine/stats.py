"""Statistics for supervisors: what happened in a period, for a policy, team, site, category or severity.

Counts, rates, SLA figures, pages per person and channel success and cost are SQL aggregates (GROUP BY in the
database). Time to acknowledge (MTTA) and to resolve (MTTR) need a median and a 90th percentile, which SQLite
cannot compute, so only the two timestamps per incident are fetched and the figures computed here; that is a
narrow two-column scan even for a year of incidents. The period is on incident creation: [since, until).
"""

from __future__ import annotations

import math
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Select, and_, case, func, select
from sqlalchemy.orm import Session

from engine.errors import NotFound, ValidationError
from engine.models import (
    Escalation,
    Incident,
    IncidentStatus,
    MessageStatus,
    OutboxMessage,
    Page,
    PageStatus,
    Person,
    Policy,
    Severity,
    Team,
)
from engine.prices import unpriced_condition

SENT = (MessageStatus.SENT.value, MessageStatus.DELIVERED.value, MessageStatus.READ.value)
FAILED = (MessageStatus.FAILED.value, MessageStatus.UNDELIVERED.value)


def _percentile(sorted_values: list[float], fraction: float) -> float:
    """Linear interpolation between closest ranks (numpy's default), on an already sorted list."""
    if not sorted_values:
        return math.nan
    pos = (len(sorted_values) - 1) * fraction
    lo, hi = math.floor(pos), math.ceil(pos)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def duration_summary(seconds: list[float]) -> dict[str, Any]:
    """{count, mean, median, p90} in seconds (None when there is nothing to measure)."""
    values = sorted(seconds)
    if not values:
        return {"count": 0, "mean": None, "median": None, "p90": None}
    return {
        "count": len(values),
        "mean": round(sum(values) / len(values), 1),
        "median": round(_percentile(values, 0.5), 1),
        "p90": round(_percentile(values, 0.9), 1),
    }


def _channel_entry(channel: str) -> dict[str, Any]:
    return {"channel": channel, "messages": 0, "sent": 0, "failed": 0, "cost": {}, "unpriced": 0}


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def compute(
    session: Session,
    *,
    since: datetime | None,
    until: datetime | None,
    policy: str | None = None,
    team: str | None = None,
    site: str | None = None,
    category: str | None = None,
    severity: str | None = None,
) -> dict[str, Any]:
    conditions: list[Any] = []
    if since is not None:
        conditions.append(Incident.created_at >= since)
    if until is not None:
        conditions.append(Incident.created_at < until)
    if since is not None and until is not None and until <= since:
        raise ValidationError("the end of the period must be after its start", field="until")
    if policy:
        policy_id = session.scalars(select(Policy.id).where(Policy.name == policy)).one_or_none()
        if policy_id is None:
            raise NotFound(f"no escalation policy named {policy!r}")
        conditions.append(Incident.policy_id == policy_id)
    if team:
        team_id = session.scalars(select(Team.id).where(Team.handle == team)).one_or_none()
        if team_id is None:
            raise NotFound(f"no team with handle {team!r}")
        conditions.append(Incident.team_id == team_id)
    if site:
        conditions.append(Incident.site == site)
    if category:
        conditions.append(Incident.category == category)
    if severity:
        if severity not in {s.value for s in Severity}:
            raise ValidationError(f"unknown severity {severity!r}", field="severity")
        conditions.append(Incident.severity == severity)
    where = and_(True, *conditions)
    incident_ids: Select[Any] = select(Incident.id).where(where)

    by_status = dict(
        session.execute(select(Incident.status, func.count()).where(where).group_by(Incident.status))
        .tuples()
        .all()
    )
    total = sum(by_status.values())
    acknowledged = session.scalar(
        select(func.count()).select_from(Incident).where(where, Incident.acknowledged_at.is_not(None))
    )
    resolved = by_status.get(IncidentStatus.RESOLVED.value, 0)

    by_state = dict(
        session.execute(
            select(Escalation.state, func.count())
            .where(Escalation.incident_id.in_(incident_ids))
            .group_by(Escalation.state)
        )
        .tuples()
        .all()
    )

    ack_times: list[float] = []
    resolve_times: list[float] = []
    for created, acked, done in session.execute(
        select(Incident.created_at, Incident.acknowledged_at, Incident.resolved_at).where(
            where, (Incident.acknowledged_at.is_not(None)) | (Incident.resolved_at.is_not(None))
        )
    ):
        if acked is not None:
            ack_times.append(max(0.0, (acked - created).total_seconds()))
        if done is not None:
            resolve_times.append(max(0.0, (done - created).total_seconds()))

    sla_row = session.execute(
        select(
            func.count(Incident.response_due_at),
            func.count(Incident.response_breached_at),
            func.count(Incident.resolution_breached_at),
            func.sum(
                case(
                    (
                        (Incident.response_breached_at.is_not(None))
                        | (Incident.resolution_breached_at.is_not(None)),
                        1,
                    ),
                    else_=0,
                )
            ),
        ).where(where, Incident.sensitive.is_(False))
    ).one()
    monitored, response_breaches, resolution_breaches, breached = (int(v or 0) for v in sla_row)

    people = [
        {
            "person_id": pid,
            "handle": handle,
            "name": name,
            "pages": int(pages),
            "confirmed": int(confirmed or 0),
            "exhausted": int(exhausted or 0),
        }
        for pid, handle, name, pages, confirmed, exhausted in session.execute(
            select(
                Page.person_id,
                Person.handle,
                Person.name,
                func.count(Page.id),
                func.sum(case((Page.status == PageStatus.CONFIRMED.value, 1), else_=0)),
                func.sum(case((Page.status == PageStatus.EXHAUSTED.value, 1), else_=0)),
            )
            .join(Person, Person.id == Page.person_id)
            .where(Page.incident_id.in_(incident_ids))
            .group_by(Page.person_id, Person.handle, Person.name)
            .order_by(func.count(Page.id).desc(), Person.handle)
        )
    ]

    channels: dict[str, dict[str, Any]] = {}
    for channel, status, count in session.execute(
        select(OutboxMessage.channel, OutboxMessage.status, func.count())
        .where(OutboxMessage.incident_id.in_(incident_ids))
        .group_by(OutboxMessage.channel, OutboxMessage.status)
    ):
        entry = channels.setdefault(channel, _channel_entry(channel))
        entry["messages"] += int(count)
        if status in SENT:
            entry["sent"] += int(count)
        elif status in FAILED:
            entry["failed"] += int(count)
    for channel, currency, cost in session.execute(
        select(OutboxMessage.channel, OutboxMessage.currency, func.sum(OutboxMessage.price))
        .where(OutboxMessage.incident_id.in_(incident_ids), OutboxMessage.price.is_not(None))
        .group_by(OutboxMessage.channel, OutboxMessage.currency)
    ):
        entry = channels.setdefault(channel, _channel_entry(channel))
        # Providers report prices as negative debits (Twilio); a cost is shown as a positive amount.
        entry["cost"][currency or "?"] = str(abs(Decimal(str(cost))).quantize(Decimal("0.00001")))
    # The cost above is only what providers have reported: say how many billed messages it leaves out.
    for channel, count in session.execute(
        select(OutboxMessage.channel, func.count())
        .where(OutboxMessage.incident_id.in_(incident_ids), unpriced_condition())
        .group_by(OutboxMessage.channel)
    ):
        channels.setdefault(channel, _channel_entry(channel))["unpriced"] = int(count)
    for entry in channels.values():
        finished = entry["sent"] + entry["failed"]
        entry["success_rate"] = _rate(entry["sent"], finished)

    return {
        "period": {
            "since": since.isoformat() if since else None,
            "until": until.isoformat() if until else None,
        },
        "filters": {
            k: v
            for k, v in {
                "policy": policy,
                "team": team,
                "site": site,
                "category": category,
                "severity": severity,
            }.items()
            if v
        },
        "incidents": {"total": total, "by_status": by_status},
        "escalations": {"total": sum(by_state.values()), "by_state": by_state},
        "ack_rate": _rate(int(acknowledged or 0), total),
        "resolution_rate": _rate(resolved, total),
        "mtta_seconds": duration_summary(ack_times),
        "mttr_seconds": duration_summary(resolve_times),
        "sla": {
            "monitored": monitored,
            "response_breaches": response_breaches,
            "resolution_breaches": resolution_breaches,
            "breaches": response_breaches + resolution_breaches,
            "compliance_percent": round(100.0 * (monitored - breached) / monitored, 2) if monitored else None,
        },
        "pages_per_person": people,
        "channels": sorted(channels.values(), key=lambda e: e["channel"]),
    }
