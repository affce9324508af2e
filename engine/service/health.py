"""What /healthz and /metrics report: database reachability, pass times, lag, outbox depth, sends, breaches.

`ServiceState` is the in-memory side (is the database reachable, why is the node degraded, what the passes
last did); the rest is read from the database, which is the source of truth shared by every node.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from engine.context import AppContext
from engine.db import ping, read_session
from engine.models import (
    LIVE_ESCALATION_STATES,
    EngineNode,
    Escalation,
    Incident,
    MessageStatus,
    OutboxMessage,
)
from engine.service.http import Counters
from engine.service.queue import oldest_pending, queue_depth, set_aside

# Due work older than this means the engine is not keeping up: /healthz answers 503.
LAG_LIMIT_SECONDS = 120.0


@dataclass
class ServiceState:
    """Shared by the HTTP threads and the serve loop."""

    started_at: datetime
    expect_passes: bool = False  # True under `serve`: a node whose passes stopped is not healthy
    db_ok: bool = True
    db_error: str = ""
    degraded_reason: str = ""
    # pass name -> {"at": iso, "ms": float}; filled from the runner when it exposes its timings
    pass_source: Callable[[], dict[str, Any]] | None = None
    counters: Counters = field(default_factory=Counters)
    # Set when a request finds the database gone: the serve loop checks at once instead of at its next tick.
    wakeup: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def set_database(self, ok: bool, error: str = "") -> None:
        with self._lock:
            self.db_ok = ok
            self.db_error = error
        if not ok:
            self.wakeup.set()

    def set_degraded(self, reason: str) -> None:
        with self._lock:
            self.degraded_reason = reason

    def status(self) -> str:
        with self._lock:
            if not self.db_ok or self.degraded_reason:
                return "degraded"
            return "running"


def _age(now: datetime, iso: str | None) -> float | None:
    if not iso:
        return None
    try:
        then = datetime.fromisoformat(iso)
    except ValueError:
        return None
    return max(0.0, (now - then).total_seconds())


def escalation_lag(session: Session, now: datetime) -> float:
    oldest = session.scalar(
        select(func.min(Escalation.next_action_at)).where(
            Escalation.state.in_([s.value for s in LIVE_ESCALATION_STATES]),
            Escalation.next_action_at <= now,
        )
    )
    return _seconds_since(now, oldest)


def outbox_lag(session: Session, now: datetime) -> float:
    oldest = session.scalar(
        select(func.min(OutboxMessage.next_attempt_at)).where(
            OutboxMessage.status == MessageStatus.PENDING.value,
            OutboxMessage.hold_reason.is_(None),
            OutboxMessage.next_attempt_at <= now,
        )
    )
    return _seconds_since(now, oldest)


def _seconds_since(now: datetime, then: Any) -> float:
    if then is None:
        return 0.0
    if isinstance(then, datetime):
        if then.tzinfo is None:  # aggregate results bypass the column type on SQLite
            from datetime import UTC

            then = then.replace(tzinfo=UTC)
        return max(0.0, float((now - then).total_seconds()))
    try:
        from datetime import UTC

        parsed = datetime.fromisoformat(str(then))
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return max(0.0, (now - parsed).total_seconds())
    except ValueError:
        return 0.0


def intake_lag(ctx: AppContext, now: datetime) -> float:
    return _seconds_since(now, oldest_pending(ctx))


def node_passes(ctx: AppContext, state: ServiceState, session: Session | None) -> dict[str, Any]:
    if state.pass_source is not None:
        try:
            passes = state.pass_source()
            if passes:
                return dict(passes)
        except Exception:  # the runner's view is a convenience; the database row is the record
            pass
    if session is None:
        return {}
    node = session.get(EngineNode, ctx.node_id)
    return dict(node.last_pass or {}) if node is not None else {}


def health(ctx: AppContext, state: ServiceState) -> tuple[int, dict[str, Any]]:
    now = ctx.clock.now()
    report: dict[str, Any] = {
        "node": ctx.node_id,
        "time": now.isoformat(),
        "uptime_seconds": round(max(0.0, (now - state.started_at).total_seconds()), 1),
    }
    problems: list[str] = []
    try:
        ping(ctx.db)
        with read_session(ctx.sessions) as session:
            esc_lag = escalation_lag(session, now)
            out_lag = outbox_lag(session, now)
            in_lag = intake_lag(ctx, now)
            passes = node_passes(ctx, state, session)
            nodes = [
                {"id": n.id, "mode": n.mode, "status": n.status, "heartbeat_at": n.heartbeat_at.isoformat()}
                for n in session.scalars(select(EngineNode).where(EngineNode.status != "stopped")).all()
            ]
        report["database"] = "ok"
    except Exception as exc:
        report["database"] = "unreachable"
        report["database_error"] = type(exc).__name__
        if state.expect_passes:
            state.set_database(False, type(exc).__name__)
        problems.append("database unreachable")
        esc_lag = out_lag = in_lag = 0.0
        passes = node_passes(ctx, state, None)
        nodes = []
    report["escalation_lag_seconds"] = round(esc_lag, 3)
    report["outbox_lag_seconds"] = round(out_lag, 3)
    report["intake_lag_seconds"] = round(in_lag, 3)
    report["passes"] = {
        name: {**info, "age_seconds": _age(now, info.get("at"))}
        for name, info in sorted(passes.items())
        if isinstance(info, dict)
    }
    report["nodes"] = nodes
    try:
        report["intake_set_aside"] = set_aside(ctx, 0)[0]
    except Exception:  # the database is away: said above
        report["intake_set_aside"] = None
    if report["intake_set_aside"]:
        # Not a fault of this node (the events themselves could not be applied), so no 503: said, and listed
        # by `watchkeeper intake` and in the console's banner.
        report["warnings"] = [
            f"{report['intake_set_aside']} Events API event(s) set aside: could not be applied"
        ]
    if max(esc_lag, out_lag, in_lag) > LAG_LIMIT_SECONDS:
        problems.append(f"work is {max(esc_lag, out_lag, in_lag):.0f} s overdue")
    if state.expect_passes:
        interval = float(ctx.settings.escalate_interval_seconds)
        stale_after = 30.0 + 10.0 * interval
        esc = report["passes"].get("escalate")
        age = esc.get("age_seconds") if esc else None
        if report["uptime_seconds"] > stale_after and (age is None or age > stale_after):
            problems.append("escalate pass has not run recently")
    if state.degraded_reason:
        problems.append(state.degraded_reason)
    if not state.db_ok and "database unreachable" not in problems:
        problems.append("database connection lost; retrying")
    report["status"] = "ok" if not problems else "degraded"
    report["problems"] = problems
    return (200 if not problems else 503), report


# ----------------------------------------------------------------------------------------------------------
# Prometheus text format
# ----------------------------------------------------------------------------------------------------------


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(labels: dict[str, str] | tuple[tuple[str, str], ...]) -> str:
    items = labels.items() if isinstance(labels, dict) else labels
    inner = ",".join(f'{k}="{_escape(str(v))}"' for k, v in items)
    return "{" + inner + "}" if inner else ""


class _Metrics:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def family(self, name: str, kind: str, help_text: str) -> None:
        self.lines.append(f"# HELP {name} {help_text}")
        self.lines.append(f"# TYPE {name} {kind}")

    def sample(self, name: str, value: float, labels: dict[str, str] | None = None) -> None:
        text = repr(float(value)) if value != int(value) else f"{int(value)}"
        self.lines.append(f"{name}{_labels(labels or {})} {text}")

    def render(self) -> str:
        return "\n".join(self.lines) + "\n"


def metrics(ctx: AppContext, state: ServiceState) -> str:
    now = ctx.clock.now()
    m = _Metrics()
    db_up = 1
    outbox: list[tuple[str, int]] = []
    sends: list[tuple[str, str, int]] = []
    breaches = {"response": 0, "resolution": 0}
    incidents: list[tuple[str, int]] = []
    nodes: list[tuple[str, int]] = []
    esc_lag = out_lag = in_lag = 0.0
    intake: list[tuple[str, int]] = []
    passes: dict[str, Any] = {}
    try:
        with read_session(ctx.sessions) as session:
            outbox = [
                (str(s), int(n))
                for s, n in session.execute(
                    select(OutboxMessage.status, func.count()).group_by(OutboxMessage.status)
                ).all()
            ]
            sends = [
                (str(c), str(s), int(n))
                for c, s, n in session.execute(
                    select(OutboxMessage.channel, OutboxMessage.status, func.count())
                    .where(
                        OutboxMessage.status.notin_(
                            [MessageStatus.PENDING.value, MessageStatus.CANCELLED.value]
                        )
                    )
                    .group_by(OutboxMessage.channel, OutboxMessage.status)
                ).all()
            ]
            breaches["response"] = int(
                session.scalar(select(func.count()).where(Incident.response_breached_at.is_not(None))) or 0
            )
            breaches["resolution"] = int(
                session.scalar(select(func.count()).where(Incident.resolution_breached_at.is_not(None))) or 0
            )
            incidents = [
                (str(s), int(n))
                for s, n in session.execute(
                    select(Incident.status, func.count()).group_by(Incident.status)
                ).all()
            ]
            nodes = [
                (str(s), int(n))
                for s, n in session.execute(
                    select(EngineNode.status, func.count()).group_by(EngineNode.status)
                ).all()
            ]
            esc_lag = escalation_lag(session, now)
            out_lag = outbox_lag(session, now)
            in_lag = intake_lag(ctx, now)
            intake = sorted(queue_depth(ctx).items())
            passes = node_passes(ctx, state, session)
    except Exception:
        db_up = 0
        passes = node_passes(ctx, state, None)

    m.family("watchkeeper_up", "gauge", "1 while this node is running without known problems, else 0.")
    m.sample("watchkeeper_up", 1 if state.status() == "running" and db_up else 0, {"node": ctx.node_id})
    m.family("watchkeeper_database_up", "gauge", "1 when the database answered this scrape.")
    m.sample("watchkeeper_database_up", db_up)
    m.family("watchkeeper_pass_duration_seconds", "gauge", "Duration of the last run of each engine pass.")
    for name, info in sorted(passes.items()):
        if isinstance(info, dict) and info.get("ms") is not None:
            m.sample("watchkeeper_pass_duration_seconds", float(info["ms"]) / 1000.0, {"pass": name})
    m.family("watchkeeper_pass_age_seconds", "gauge", "Seconds since each engine pass last ran on this node.")
    for name, info in sorted(passes.items()):
        age = _age(now, info.get("at")) if isinstance(info, dict) else None
        if age is not None:
            m.sample("watchkeeper_pass_age_seconds", age, {"pass": name})
    m.family("watchkeeper_escalation_lag_seconds", "gauge", "Age of the oldest due escalation action.")
    m.sample("watchkeeper_escalation_lag_seconds", round(esc_lag, 3))
    m.family("watchkeeper_outbox_lag_seconds", "gauge", "Age of the oldest due outbox message not yet sent.")
    m.sample("watchkeeper_outbox_lag_seconds", round(out_lag, 3))
    m.family("watchkeeper_intake_lag_seconds", "gauge", "Age of the oldest queued Events API event.")
    m.sample("watchkeeper_intake_lag_seconds", round(in_lag, 3))
    m.family("watchkeeper_intake_events", "gauge", "Events API events in the intake queue, by status.")
    for intake_status in ("pending", "done", "failed"):
        m.sample("watchkeeper_intake_events", dict(intake).get(intake_status, 0), {"status": intake_status})
    m.family("watchkeeper_outbox_messages", "gauge", "Outbox messages by status.")
    for message_status in MessageStatus:
        m.sample(
            "watchkeeper_outbox_messages",
            dict(outbox).get(message_status.value, 0),
            {"status": message_status.value},
        )
    m.family("watchkeeper_sends", "gauge", "Messages handed to a channel, by channel and resulting status.")
    for channel, send_status, count in sorted(sends):
        m.sample("watchkeeper_sends", count, {"channel": channel, "status": send_status})
    m.family("watchkeeper_sla_breaches", "gauge", "Incidents that breached an SLA deadline, by kind.")
    for kind, count in breaches.items():
        m.sample("watchkeeper_sla_breaches", count, {"kind": kind})
    m.family("watchkeeper_incidents", "gauge", "Incidents by status.")
    for status_name, count in sorted(incidents):
        m.sample("watchkeeper_incidents", count, {"status": status_name})
    m.family("watchkeeper_engine_nodes", "gauge", "Engine nodes registered in the database, by status.")
    for status_name, count in sorted(nodes):
        m.sample("watchkeeper_engine_nodes", count, {"status": status_name})
    snapshot = state.counters.snapshot()
    described: set[str] = set()
    helps = {
        "watchkeeper_http_requests_total": "HTTP requests answered by this node, by route and status code.",
        "watchkeeper_events_total": "Events API v2 events accepted by this node, by action and outcome.",
        "watchkeeper_twilio_signature_rejected_total": "Twilio webhooks refused for a bad signature.",
    }
    for (name, labels), value in sorted(snapshot.items()):
        if name not in described:
            m.family(name, "counter", helps.get(name, name))
            described.add(name)
        m.sample(name, value, dict(labels))
    return m.render()
