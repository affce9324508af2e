"""/healthz (database, last pass times, lag → 200/503) and /metrics (Prometheus text)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from engine.clock import FakeClock
from engine.context import AppContext
from engine.db import write_session
from engine.models import EngineNode, Escalation, Incident, OutboxMessage
from engine.service.app import ServiceApp
from engine.service.health import ServiceState


def _incident(session: Any, ctx: AppContext, **fields: Any) -> Incident:
    now = ctx.clock.now()
    incident = Incident(
        key=fields.pop("key", "k"),
        summary="Pump station 4 offline",
        created_at=now,
        updated_at=now,
        last_triggered_at=now,
        **fields,
    )
    session.add(incident)
    session.flush()
    return incident


def test_healthz_is_200_with_the_database_reachable(ctx: AppContext, client: Any) -> None:
    reply = client.get("/healthz")
    assert reply.status == 200
    report = reply.json()
    assert report["status"] == "ok"
    assert report["database"] == "ok"
    assert report["escalation_lag_seconds"] == 0
    assert report["node"] == ctx.node_id


def test_healthz_reports_last_pass_times_of_this_node(ctx: AppContext, client: Any, clock: FakeClock) -> None:
    with write_session(ctx.sessions) as session:
        session.add(
            EngineNode(
                id=ctx.node_id,
                hostname="h",
                pid=1,
                mode="serve",
                version="0.1.0",
                started_at=clock.now(),
                heartbeat_at=clock.now(),
                last_pass={"escalate": {"at": clock.now().isoformat(), "ms": 12.5}},
            )
        )
    clock.advance(3)
    report = client.get("/healthz").json()
    assert report["passes"]["escalate"]["ms"] == 12.5
    assert report["passes"]["escalate"]["age_seconds"] == 3.0
    assert [n["id"] for n in report["nodes"]] == [ctx.node_id]


def test_healthz_is_503_when_escalations_are_overdue(ctx: AppContext, client: Any, clock: FakeClock) -> None:
    with write_session(ctx.sessions) as session:
        incident = _incident(session, ctx)
        session.add(
            Escalation(
                incident_id=incident.id,
                policy_name="ops",
                state="active",
                next_action_at=clock.now() - timedelta(minutes=10),
                started_at=clock.now(),
                updated_at=clock.now(),
            )
        )
    reply = client.get("/healthz")
    assert reply.status == 503
    report = reply.json()
    assert report["status"] == "degraded"
    assert report["escalation_lag_seconds"] == 600
    assert any("overdue" in p for p in report["problems"])


def test_healthz_is_503_when_the_database_is_unreachable(ctx: AppContext, tmp_path: Any) -> None:
    from engine.db import make_engine, session_factory

    broken = make_engine("postgresql://nobody@127.0.0.1:1/none", connect_args={"connect_timeout": 1})
    dead = AppContext(
        db=broken, sessions=session_factory(broken), clock=ctx.clock, settings=ctx.settings, node_id="dead"
    )
    from tests.service.conftest import WsgiClient

    reply = WsgiClient(ServiceApp(dead)).get("/healthz")
    assert reply.status == 503
    assert reply.json()["database"] == "unreachable"
    metrics = WsgiClient(ServiceApp(dead)).get("/metrics")
    assert metrics.status == 200
    assert "watchkeeper_database_up 0" in metrics.text


def test_healthz_is_503_when_a_serving_node_has_no_passes(ctx: AppContext, clock: FakeClock) -> None:
    from tests.service.conftest import WsgiClient

    state = ServiceState(started_at=clock.now(), expect_passes=True)
    client = WsgiClient(ServiceApp(ctx, state))
    assert client.get("/healthz").status == 200  # just started: not yet expected
    clock.advance(120)
    reply = client.get("/healthz")
    assert reply.status == 503
    assert "escalate pass has not run recently" in reply.json()["problems"]


def test_metrics_exposes_outbox_sends_lag_breaches_and_pass_durations(
    ctx: AppContext, client: Any, clock: FakeClock
) -> None:
    now = clock.now()
    with write_session(ctx.sessions) as session:
        _incident(session, ctx, key="a", response_breached_at=now)
        _incident(session, ctx, key="b", response_breached_at=now, resolution_breached_at=now)
        for i, (channel, status) in enumerate(
            [
                ("sms", "sent"),
                ("sms", "sent"),
                ("sms", "failed"),
                ("email", "delivered"),
                ("voice", "pending"),
            ]
        ):
            session.add(
                OutboxMessage(
                    idempotency_key=f"m{i}",
                    channel=channel,
                    address="x",
                    status=status,
                    next_attempt_at=now - timedelta(seconds=30) if status == "pending" else None,
                    created_at=now,
                    updated_at=now,
                )
            )
        session.add(
            EngineNode(
                id=ctx.node_id,
                hostname="h",
                pid=1,
                mode="serve",
                version="0.1.0",
                started_at=now,
                heartbeat_at=now,
                last_pass={"dispatch": {"at": now.isoformat(), "ms": 40.0}},
            )
        )
    client.get("/healthz")
    reply = client.get("/metrics")
    assert reply.status == 200
    assert reply.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    text = reply.text
    lines = set(text.splitlines())
    assert 'watchkeeper_outbox_messages{status="sent"} 2' in lines
    assert 'watchkeeper_outbox_messages{status="pending"} 1' in lines
    assert 'watchkeeper_outbox_messages{status="sending"} 0' in lines
    assert 'watchkeeper_sends{channel="sms",status="sent"} 2' in lines
    assert 'watchkeeper_sends{channel="sms",status="failed"} 1' in lines
    assert 'watchkeeper_sends{channel="email",status="delivered"} 1' in lines
    assert 'watchkeeper_sla_breaches{kind="response"} 2' in lines
    assert 'watchkeeper_sla_breaches{kind="resolution"} 1' in lines
    assert 'watchkeeper_pass_duration_seconds{pass="dispatch"} 0.04' in lines
    assert "watchkeeper_outbox_lag_seconds 30" in lines
    assert "watchkeeper_escalation_lag_seconds 0" in lines
    assert "watchkeeper_database_up 1" in lines
    assert 'watchkeeper_http_requests_total{code="200",route="/healthz"} 1' in lines
    # Every sample belongs to a family declared with HELP and TYPE.
    declared = {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE")}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            assert line.split("{")[0].split(" ")[0] in declared


def test_metrics_over_a_real_socket(live: Any) -> None:
    reply = live.get("/metrics")
    assert reply.status == 200
    assert "# TYPE watchkeeper_outbox_messages gauge" in reply.text
