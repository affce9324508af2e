"""Statistics for supervisors: what happened in a period, for a policy, team, site, category or severity.

Counts, rates, SLA figures, pages per person and channel success and cost are SQL aggregates (GROUP BY in the
database). Time to acknowledge (MTTA) and to resolve (MTTR) need a median and a 90th percentile, which SQLite
cannot compute, so only the two timestamps per incident are fetched and the figures computed here; that is a
narrow two-column scan even for a year of incidents. The period is on incident creation: [since, until).

`trend` gives the headline figures per day or week and compares the period with the one before it, so a
supervisor sees whether this month was better than the last.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

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


def _conditions(
    session: Session, since: datetime | None, until: datetime | None, filters: dict[str, str | None]
) -> list[Any]:
    """The WHERE of every figure here: incidents created in [since, until) matching the filters (policy,
    team, site, category, severity); a policy or team that does not exist, or an unknown severity, is
    refused rather than matching nothing."""
    policy, team, site = filters.get("policy"), filters.get("team"), filters.get("site")
    category, severity = filters.get("category"), filters.get("severity")
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
    return conditions


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
    filters = {"policy": policy, "team": team, "site": site, "category": category, "severity": severity}
    conditions = _conditions(session, since, until, filters)
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
        "filters": {k: v for k, v in filters.items() if v},
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


# -- trends: the same figures per day or week, and this period against the one before ---------------------

TREND_BUCKETS = ("auto", "day", "week")
DAILY_UP_TO = timedelta(days=31)  # "auto" shows days up to a month, weeks beyond
DEFAULT_TREND_PERIOD = timedelta(days=30)
_STEPS = {"day": timedelta(days=1), "week": timedelta(days=7)}


@dataclass
class _Tally:
    """Incidents of one stretch of time, and what a trend shows of them."""

    incidents: int = 0
    ack_times: list[float] = field(default_factory=list)
    resolve_times: list[float] = field(default_factory=list)
    monitored: int = 0
    breached: int = 0

    def add(
        self, created: datetime, acked: datetime | None, done: datetime | None, watched: bool, late: bool
    ) -> None:
        self.incidents += 1
        if acked is not None:
            self.ack_times.append(max(0.0, (acked - created).total_seconds()))
        if done is not None:
            self.resolve_times.append(max(0.0, (done - created).total_seconds()))
        self.monitored += int(watched)
        self.breached += int(late)

    def figures(self) -> dict[str, Any]:
        return {
            "incidents": self.incidents,
            "acknowledged": len(self.ack_times),
            "resolved": len(self.resolve_times),
            "mtta_median": duration_summary(self.ack_times)["median"],
            "mttr_median": duration_summary(self.resolve_times)["median"],
            "sla_monitored": self.monitored,
            "sla_breaches": self.breached,
            "sla_compliance_percent": (
                round(100.0 * (self.monitored - self.breached) / self.monitored, 2)
                if self.monitored
                else None
            ),
        }


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValidationError(f"unknown time zone {name!r}", field="timezone") from exc


def _boundaries(since: datetime, until: datetime, step: timedelta, zone: ZoneInfo) -> list[datetime]:
    """since, then every `step` of wall-clock time in `zone` (a day is a local day across a DST change), until."""
    start = since.astimezone(zone).replace(tzinfo=None)
    bounds = [since]
    n = 1
    while True:
        edge = (start + n * step).replace(tzinfo=zone).astimezone(since.tzinfo)
        if edge >= until:
            break
        bounds.append(edge)
        n += 1
    return [*bounds, until]


def trend(
    session: Session,
    *,
    now: datetime,
    since: datetime | None = None,
    until: datetime | None = None,
    bucket: str = "auto",
    timezone: str = "UTC",
    policy: str | None = None,
    team: str | None = None,
    site: str | None = None,
    category: str | None = None,
    severity: str | None = None,
) -> dict[str, Any]:
    """Incidents, MTTA and MTTR (medians) and SLA compliance per day or week of [since, until) (default: the
    30 local days up to `now`), and the whole period against the one of the same length just before it.

    `bucket` is "day", "week" or "auto" (days up to 31 days, weeks beyond); days and weeks are wall-clock
    days in `timezone`, counted from `since`. The figures are those of `compute` for the same incidents.
    Medians need each incident's times, so this is one narrow scan of both periods, tallied here."""
    if bucket not in TREND_BUCKETS:
        raise ValidationError(f"unknown trend bucket {bucket!r}: use day, week or auto", field="bucket")
    zone = _zone(timezone)
    until = until or now
    if since is None:  # from the local midnight 30 days back: each bar is then a whole local day
        start = (until - DEFAULT_TREND_PERIOD).astimezone(zone)
        since = start.replace(hour=0, minute=0, second=0, microsecond=0).astimezone(until.tzinfo)
    if until <= since:
        raise ValidationError("the end of the period must be after its start", field="until")
    length = until - since
    chosen = bucket if bucket != "auto" else ("day" if length <= DAILY_UP_TO else "week")
    bounds = _boundaries(since, until, _STEPS[chosen], zone)
    previous_since = since - length
    filters = {"policy": policy, "team": team, "site": site, "category": category, "severity": severity}
    conditions = _conditions(session, previous_since, until, filters)
    watched = and_(Incident.sensitive.is_(False), Incident.response_due_at.is_not(None))
    late = and_(
        Incident.sensitive.is_(False),
        (Incident.response_breached_at.is_not(None)) | (Incident.resolution_breached_at.is_not(None)),
    )
    periods = [_Tally() for _ in bounds[:-1]]
    current, previous = _Tally(), _Tally()
    for created, acked, done, is_watched, is_late in session.execute(
        select(
            Incident.created_at,
            Incident.acknowledged_at,
            Incident.resolved_at,
            case((watched, True), else_=False),
            case((late, True), else_=False),
        ).where(*conditions)
    ):
        facts = (created, acked, done, bool(is_watched), bool(is_late))
        if created < since:
            previous.add(*facts)
            continue
        current.add(*facts)
        periods[bisect_right(bounds, created) - 1].add(*facts)
    return {
        "bucket": chosen,
        "timezone": timezone,
        "periods": [
            {"start": start.isoformat(), "end": end.isoformat(), **tally.figures()}
            for start, end, tally in zip(bounds, bounds[1:], periods, strict=False)
        ],
        "current": {"since": since.isoformat(), "until": until.isoformat(), **current.figures()},
        "previous": {"since": previous_since.isoformat(), "until": since.isoformat(), **previous.figures()},
    }
