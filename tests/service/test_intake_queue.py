"""Service mode's durable intake queue: 202 only once the event is committed; workers apply queued events in
order, a dead worker's claim expires, and an event applied twice still makes one incident."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select, update

from engine.clock import FakeClock
from engine.context import AppContext
from engine.db import write_session
from engine.models import Incident, IntakeEvent
from engine.service.app import ServiceApp
from engine.service.health import ServiceState
from engine.service.keys import CreatedSecret
from engine.service.queue import IntakeWriter, apply_pending, drain


@pytest.fixture
def writer(ctx: AppContext) -> Iterator[IntakeWriter]:
    w = IntakeWriter(ctx)
    w.start()
    yield w
    w.stop()


@pytest.fixture
def queued_client(ctx: AppContext, writer: IntakeWriter) -> Any:
    from tests.service.conftest import WsgiClient

    return WsgiClient(ServiceApp(ctx, ServiceState(started_at=ctx.clock.now()), intake=writer))


def _incidents(ctx: AppContext) -> list[Incident]:
    with ctx.sessions() as session:
        return list(session.scalars(select(Incident).order_by(Incident.id)).all())


def test_event_is_committed_before_the_answer_and_applied_by_the_worker(
    ctx: AppContext, queued_client: Any, routing_key: CreatedSecret, event_body: Any
) -> None:
    reply = queued_client.post("/v2/enqueue", json_body=event_body(routing_key.secret))
    assert reply.status == 202
    assert reply.json()["dedup_key"] == "disk-full-db1"
    with ctx.sessions() as session:
        [row] = session.scalars(select(IntakeEvent)).all()
        assert row.status == "pending" and row.policy_name == "ops"
        assert routing_key.secret not in json.dumps(row.event), "the routing key is a secret: never stored"
    assert _incidents(ctx) == []
    assert drain(ctx) == 1
    [incident] = _incidents(ctx)
    assert incident.key == "disk-full-db1" and incident.severity == "critical"
    with ctx.sessions() as session:
        [row] = session.scalars(select(IntakeEvent)).all()
        assert (row.status, row.outcome, row.incident_id) == ("done", "triggered", incident.id)


def test_trigger_then_resolve_are_applied_in_order(
    ctx: AppContext, queued_client: Any, routing_key: CreatedSecret, event_body: Any
) -> None:
    queued_client.post("/v2/enqueue", json_body=event_body(routing_key.secret))
    queued_client.post("/v2/enqueue", json_body=event_body(routing_key.secret, action="acknowledge"))
    queued_client.post("/v2/enqueue", json_body=event_body(routing_key.secret, action="resolve"))
    assert drain(ctx) == 3
    assert [i.status for i in _incidents(ctx)] == ["resolved"]


def test_a_dead_workers_claim_expires_and_another_applies_the_event(
    ctx: AppContext, clock: FakeClock, queued_client: Any, routing_key: CreatedSecret, event_body: Any
) -> None:
    queued_client.post("/v2/enqueue", json_body=event_body(routing_key.secret))
    with write_session(ctx.sessions) as session:
        session.execute(
            update(IntakeEvent).values(
                claimed_by="dead-node", claim_expires_at=clock.now().replace(microsecond=0)
            )
        )
    clock.advance(-1)
    assert apply_pending(ctx) == 0, "a live claim is left alone"
    clock.advance(2)
    assert apply_pending(ctx) == 1
    assert len(_incidents(ctx)) == 1


def test_an_event_applied_twice_still_makes_one_incident(
    ctx: AppContext, queued_client: Any, routing_key: CreatedSecret, event_body: Any
) -> None:
    queued_client.post("/v2/enqueue", json_body=event_body(routing_key.secret))
    drain(ctx)
    # A node died after applying but before recording it: the event is pending again.
    with write_session(ctx.sessions) as session:
        session.execute(update(IntakeEvent).values(status="pending", processed_at=None))
    drain(ctx)
    assert len(_incidents(ctx)) == 1
    with ctx.sessions() as session:
        assert session.scalars(select(IntakeEvent.outcome)).all() == ["deduplicated"]


def test_bad_events_are_not_queued(
    queued_client: Any, routing_key: CreatedSecret, event_body: Any, counts: Any
) -> None:
    before = counts()
    assert queued_client.post("/v2/enqueue", body=b"{", content_type="application/json").status == 400
    assert queued_client.post("/v2/enqueue", json_body=event_body("f" * 32)).status == 400
    assert (
        queued_client.post("/v2/enqueue", json_body=event_body(routing_key.secret, severity="x")).status
        == 400
    )
    assert counts() == before


def test_a_stopped_writer_answers_503_and_stores_nothing(
    queued_client: Any, writer: IntakeWriter, routing_key: CreatedSecret, event_body: Any, counts: Any
) -> None:
    writer.stop()
    before = counts()
    reply = queued_client.post("/v2/enqueue", json_body=event_body(routing_key.secret))
    assert reply.status == 503
    assert reply.headers["Retry-After"]
    assert counts() == before


def test_many_events_share_a_few_commits(
    ctx: AppContext, writer: IntakeWriter, queued_client: Any, routing_key: CreatedSecret, event_body: Any
) -> None:
    import threading

    def post(i: int) -> None:
        assert (
            queued_client.post(
                "/v2/enqueue", json_body=event_body(routing_key.secret, dedup_key=f"k{i}")
            ).status
            == 202
        )

    threads = [threading.Thread(target=post, args=(i,)) for i in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert writer.rows == 40
    assert writer.batches <= 40
    assert drain(ctx) == 40
    assert len(_incidents(ctx)) == 40
