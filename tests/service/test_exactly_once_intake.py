"""Every accepted Events API event is applied exactly once, in order per dedup key, whatever fails around it;
an event that can never be applied is refused at the door (400 with the reason) or set aside with its error,
never holding others back; bad input never costs a good event its answer."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

from engine.clock import FakeClock
from engine.context import AppContext
from engine.db import write_session
from engine.models import Incident, IntakeEvent
from engine.service import queue as queue_mod
from engine.service.app import ServiceApp
from engine.service.health import ServiceState
from engine.service.keys import CreatedSecret
from engine.service.queue import (
    IntakeRefused,
    IntakeWriter,
    apply_pending,
    drain,
    intake_store,
    queue_row,
)
from tests.service.conftest import WsgiClient, enqueue_body


@pytest.fixture
def writer(ctx: AppContext) -> Iterator[IntakeWriter]:
    w = IntakeWriter(ctx)
    w.start()
    yield w
    w.stop()


@pytest.fixture
def client(ctx: AppContext, writer: IntakeWriter) -> WsgiClient:
    return WsgiClient(ServiceApp(ctx, ServiceState(started_at=ctx.clock.now()), intake=writer))


def _post_raw(client: WsgiClient, raw: str) -> Any:
    return client.post(
        "/v2/enqueue", body=raw.encode("utf-8", "surrogatepass"), content_type="application/json"
    )


def _queued(ctx: AppContext) -> list[IntakeEvent]:
    with intake_store(ctx).sessions() as session:
        return list(session.scalars(select(IntakeEvent).order_by(IntakeEvent.id)))


def _incidents(ctx: AppContext) -> list[Incident]:
    with ctx.sessions() as session:
        return list(session.scalars(select(Incident).order_by(Incident.id)))


# -- refused at the door ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("where", "change"),
    [
        ("payload.summary", lambda b: b["payload"].update(summary="Disk\x00 full")),
        ("payload.source", lambda b: b["payload"].update(source="db1\x00")),
        ("payload.component", lambda b: b["payload"].update(component="\x00")),
        ("payload.custom_details.note", lambda b: b["payload"].update(custom_details={"note": "a\x00b"})),
        ("client", lambda b: b.update(client="graf\x00ana")),
    ],
)
def test_a_nul_character_anywhere_is_refused_at_the_door_naming_where(
    ctx: AppContext, client: WsgiClient, routing_key: CreatedSecret, where: str, change: Any
) -> None:
    body = enqueue_body(routing_key.secret)
    change(body)
    reply = client.post("/v2/enqueue", json_body=body)
    assert reply.status == 400, reply.text
    assert f"'{where}' contains a NUL character" in reply.text
    assert _queued(ctx) == []


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ('{"a": NaN}', "NaN is not a JSON number"),
        ('{"a": -Infinity}', "-Infinity is not a JSON number"),
        ('{"a": ' + "9" * 5000 + "}", "JSON not accepted"),
        ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
        ('{"a":' * 70 + "1" + "}" * 70, "nested too deeply"),
    ],
)
def test_json_no_database_can_store_is_a_400_with_the_reason(
    ctx: AppContext, client: WsgiClient, raw: str, reason: str
) -> None:
    reply = _post_raw(client, raw)
    assert reply.status == 400, reply.text
    assert reason in reply.text
    assert _queued(ctx) == []


def test_a_lone_surrogate_in_the_dedup_key_is_refused(
    ctx: AppContext, client: WsgiClient, routing_key: CreatedSecret
) -> None:
    body = json.dumps(enqueue_body(routing_key.secret, dedup_key="X")).replace('"X"', '"\\ud800"')
    reply = _post_raw(client, body)
    assert reply.status == 400 and "'dedup_key' contains a lone surrogate" in reply.text
    assert _queued(ctx) == []


def test_a_row_the_database_refuses_fails_alone_in_its_group_commit(
    ctx: AppContext, routing_key: CreatedSecret
) -> None:
    """The group commit takes several events in one transaction: one the database cannot store (here a lone
    surrogate that got past the door) fails with its reason; the others are committed and answered."""
    from engine.service.intake import parse_event
    from engine.service.keys import resolve_routing_key

    with ctx.sessions() as session:
        target = resolve_routing_key(session, routing_key.secret)
    assert target is not None
    rows = []
    for key in ("good-1", "bad", "good-2"):
        event, _ = parse_event(enqueue_body(routing_key.secret, dedup_key=key))
        assert event is not None
        rows.append(queue_row(ctx, event, target, key))
    rows[1]["dedup_key"] = "bad\ud800"
    writer = IntakeWriter(ctx, threads=1)
    answers: dict[int, BaseException | None] = {}
    gate = threading.Event()
    writer._queue.put(queue_mod._Submission(rows[0], callback=lambda e: answers.__setitem__(0, e)))
    writer._queue.put(queue_mod._Submission(rows[1], callback=lambda e: answers.__setitem__(1, e)))
    writer._queue.put(
        queue_mod._Submission(rows[2], callback=lambda e: (answers.__setitem__(2, e), gate.set()))
    )
    writer.start()  # all three are waiting: they go in one batch
    try:
        assert gate.wait(10)
    finally:
        writer.stop()
    assert answers[0] is None and answers[2] is None
    assert isinstance(answers[1], IntakeRefused)
    assert [r.dedup_key for r in _queued(ctx)] == ["good-1", "good-2"]


# -- applied exactly once, in order per key -----------------------------------------------------------------


def test_a_resolve_waits_for_its_trigger_held_by_another_nodes_claim(
    ctx: AppContext, client: WsgiClient, routing_key: CreatedSecret, clock: FakeClock
) -> None:
    """The defect: the trigger was being applied by one node while another applied the resolve first; the
    resolve found nothing to resolve ("ignored") and the incident then stayed open for ever."""
    assert (
        client.post("/v2/enqueue", json_body=enqueue_body(routing_key.secret, dedup_key="k1")).status == 202
    )
    assert (
        client.post(
            "/v2/enqueue", json_body=enqueue_body(routing_key.secret, "resolve", dedup_key="k1")
        ).status
        == 202
    )
    trigger, _resolve = _queued(ctx)
    with write_session(intake_store(ctx).sessions) as session:  # another node is applying the trigger
        session.execute(
            update(IntakeEvent)
            .where(IntakeEvent.id == trigger.id)
            .values(claimed_by="node-b", claim_expires_at=clock.now() + timedelta(seconds=30))
        )
    assert apply_pending(ctx) == 0, "the resolve is not taken while its key's trigger is held elsewhere"
    clock.advance(31)  # node B died: its claim expires, and this node takes both, in order
    assert drain(ctx) == 2
    (incident,) = _incidents(ctx)
    assert incident.status == "resolved"
    assert [(r.event_action, r.outcome) for r in _queued(ctx)] == [
        ("trigger", "triggered"),
        ("resolve", "resolved"),
    ]


def test_events_applied_but_not_recorded_are_not_applied_again(
    ctx: AppContext, client: WsgiClient, routing_key: CreatedSecret, clock: FakeClock, monkeypatch: Any
) -> None:
    """The defect: the engine work of a batch committed, recording its outcomes failed (a deadlock, a
    restart, a kill), and 60 s later the whole batch ran again — the resolved alert re-opened as a new
    incident and paged again."""
    for action in ("trigger", "resolve"):
        body = enqueue_body(routing_key.secret, action, dedup_key="flap")
        assert client.post("/v2/enqueue", json_body=body).status == 202
    real = queue_mod.write_session
    calls = {"n": 0}

    def fails_once_when_recording(factory: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 2:  # the claim is the first transaction on the queue; recording the second
            raise ConnectionError("the node was killed before it recorded the outcomes")
        return real(factory)

    monkeypatch.setattr(queue_mod, "write_session", fails_once_when_recording)
    with pytest.raises(ConnectionError):
        apply_pending(ctx)
    monkeypatch.setattr(queue_mod, "write_session", real)
    (incident,) = _incidents(ctx)
    assert incident.status == "resolved"
    clock.advance(61)  # the claim expires; another pass claims the same two events
    assert drain(ctx) == 2
    (again,) = _incidents(ctx)  # still one incident, resolved, triggered once
    assert again.id == incident.id and again.status == "resolved" and again.trigger_count == 1
    assert [r.outcome for r in _queued(ctx)] == ["triggered", "resolved"]


def test_an_event_the_database_cannot_store_is_set_aside_and_the_queue_moves_on(
    ctx: AppContext, routing_key: CreatedSecret, db: Any
) -> None:
    """The defect on PostgreSQL: an event with a NUL character, stored before the door refused them, failed
    its batch for ever and every event claimed with it was never applied. (SQLite stores a NUL.)"""
    if db.dialect.name != "postgresql":
        pytest.skip("SQLite stores a NUL character; PostgreSQL refuses it")
    from engine.service.intake import parse_event
    from engine.service.keys import resolve_routing_key

    with ctx.sessions() as session:
        target = resolve_routing_key(session, routing_key.secret)
    assert target is not None
    rows = []
    for key in ("before", "poison", "after"):
        event, _ = parse_event(enqueue_body(routing_key.secret, dedup_key=key))
        assert event is not None
        rows.append(queue_row(ctx, event, target, key))
    rows[1]["event"] = {**rows[1]["event"], "summary": "Disk\x00 full"}
    with write_session(intake_store(ctx).sessions) as session:
        session.execute(IntakeEvent.__table__.insert(), rows)
    assert drain(ctx) == 3
    statuses = {r.dedup_key: (r.status, r.error or "") for r in _queued(ctx)}
    assert statuses["before"][0] == statuses["after"][0] == "done"
    assert statuses["poison"][0] == "failed" and "0x00" in statuses["poison"][1]
    assert sorted(i.key for i in _incidents(ctx)) == ["after", "before"]
