"""Service mode's durable intake queue: 202 only once the event is committed; workers apply queued events in
order, a dead worker's claim expires, and an event applied twice still makes one incident."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select, text, update

from engine.clock import FakeClock
from engine.context import AppContext
from engine.db import write_session
from engine.models import Incident, IntakeEvent
from engine.service.app import ServiceApp
from engine.service.health import ServiceState
from engine.service.keys import CreatedSecret
from engine.service.queue import IntakeWriter, apply_pending, drain, intake_store


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


@contextlib.contextmanager
def _write_lock_held(engine: Any) -> Iterator[threading.Event]:
    """Another connection (as another process would) holds the SQLite file's write lock until the yielded
    event is set or the block ends."""
    holding, release = threading.Event(), threading.Event()

    def hold_the_lock() -> None:
        with engine.connect() as conn:
            conn.execution_options(sqlite_begin="IMMEDIATE")
            with conn.begin():
                conn.execute(text("SELECT 1"))
                holding.set()
                release.wait(30)

    holder = threading.Thread(target=hold_the_lock)
    holder.start()
    try:
        assert holding.wait(10)
        yield release
    finally:
        release.set()
        holder.join(10)
        engine.dispose()


def _incidents(ctx: AppContext) -> list[Incident]:
    with ctx.sessions() as session:
        return list(session.scalars(select(Incident).order_by(Incident.id)).all())


def test_event_is_committed_before_the_answer_and_applied_by_the_worker(
    ctx: AppContext, queued_client: Any, routing_key: CreatedSecret, event_body: Any
) -> None:
    reply = queued_client.post("/v2/enqueue", json_body=event_body(routing_key.secret))
    assert reply.status == 202
    assert reply.json()["dedup_key"] == "disk-full-db1"
    with intake_store(ctx).sessions() as session:
        [row] = session.scalars(select(IntakeEvent)).all()
        assert row.status == "pending" and row.policy_name == "ops"
        assert routing_key.secret not in json.dumps(row.event), "the routing key is a secret: never stored"
    assert _incidents(ctx) == []
    assert drain(ctx) == 1
    [incident] = _incidents(ctx)
    assert incident.key == "disk-full-db1" and incident.severity == "critical"
    with intake_store(ctx).sessions() as session:
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
    with write_session(intake_store(ctx).sessions) as session:
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
    with write_session(intake_store(ctx).sessions) as session:
        session.execute(update(IntakeEvent).values(status="pending", processed_at=None))
    drain(ctx)
    assert len(_incidents(ctx)) == 1
    # Its receipt says it was applied: it is not applied again (not even counted as a repeat of the alert).
    with intake_store(ctx).sessions() as session:
        assert session.scalars(select(IntakeEvent.outcome)).all() == ["triggered"]
    with ctx.sessions() as session:
        assert session.scalars(select(Incident.trigger_count)).all() == [1]


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


def test_one_batch_applies_trigger_resolve_trigger_of_one_key_in_order(
    ctx: AppContext, queued_client: Any, routing_key: CreatedSecret, event_body: Any
) -> None:
    already_open = event_body(routing_key.secret, dedup_key="db2-cpu")
    queued_client.post("/v2/enqueue", json_body=already_open)
    assert drain(ctx) == 1
    for body in (
        event_body(routing_key.secret, dedup_key="db2-cpu"),  # the open incident firing again
        event_body(routing_key.secret),  # a new key
        event_body(routing_key.secret, action="resolve"),
        event_body(routing_key.secret),  # the same key after its incident was resolved: a new incident
    ):
        assert queued_client.post("/v2/enqueue", json_body=body).status == 202

    assert apply_pending(ctx) == 4  # one batch

    with intake_store(ctx).sessions() as session:
        outcomes = session.scalars(select(IntakeEvent.outcome).order_by(IntakeEvent.id)).all()
    assert outcomes == ["triggered", "deduplicated", "triggered", "resolved", "triggered"]
    by_key = [(i.key, i.status) for i in _incidents(ctx)]
    assert by_key == [("db2-cpu", "open"), ("disk-full-db1", "resolved"), ("disk-full-db1", "open")]


def test_the_writer_reconnects_when_the_database_dropped_its_connection(ctx: AppContext) -> None:
    from engine.service.intake import parse_event
    from engine.service.keys import RoutingTarget
    from engine.service.queue import queue_row
    from tests.service.conftest import enqueue_body

    writer = IntakeWriter(ctx)
    event, _ = parse_event(enqueue_body("k" * 32, dedup_key="dropped"))
    assert event is not None
    row = queue_row(
        ctx, event, RoutingTarget(routing_key_id=0, label="x", policy_id=0, policy_name="ops"), "dropped"
    )
    row["routing_key_id"] = None
    kept = writer._connect()
    if ctx.db.dialect.name == "postgresql":
        pid = kept.execute(text("SELECT pg_backend_pid()")).scalar_one()
        kept.rollback()
        with ctx.db.connect() as admin:
            admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    else:
        kept.connection.driver_connection.close()  # type: ignore[union-attr]

    fresh = writer._commit(kept, [row])

    assert fresh is not kept
    writer._close(fresh)
    with intake_store(ctx).sessions() as session:
        assert session.scalars(select(IntakeEvent.dedup_key)).all() == ["dropped"]


def test_on_sqlite_the_writer_takes_the_lock_as_soon_as_another_process_lets_it_go(
    ctx: AppContext, writer: IntakeWriter, queued_client: Any, routing_key: CreatedSecret, event_body: Any
) -> None:
    from engine.db import make_engine

    if ctx.db.dialect.name != "sqlite":
        pytest.skip("one write lock for the whole file is SQLite's; PostgreSQL inserts never wait for it")
    # The intake spool's lock, held as another process (another node, or this one's engine) would hold it.
    other = make_engine(intake_store(ctx).db.url.render_as_string(hide_password=False))
    answers: list[int] = []
    with _write_lock_held(other) as release:
        poster = threading.Thread(
            target=lambda: answers.append(
                queued_client.post("/v2/enqueue", json_body=event_body(routing_key.secret)).status
            )
        )
        poster.start()
        deadline = time.monotonic() + 10
        while writer.lock_retries < 3 and time.monotonic() < deadline:
            release.wait(0.01)  # the writer is asking again and again while the lock is held
        assert writer.lock_retries >= 3 and answers == []
        released_at = time.monotonic()
        release.set()
        poster.join(10)

    assert answers == [202]
    assert time.monotonic() - released_at < 2.0
    with intake_store(ctx).sessions() as session:
        assert len(session.scalars(select(IntakeEvent)).all()) == 1
    writer.stop()
    with intake_store(ctx).db.connect() as conn:
        busy = conn.exec_driver_sql("PRAGMA busy_timeout").scalar()
    assert busy and int(busy) > 0, "the writer's connection goes back to the pool with its busy timeout"


def test_on_sqlite_an_event_is_answered_while_the_engine_holds_the_databases_write_lock(
    ctx: AppContext, queued_client: Any, routing_key: CreatedSecret, event_body: Any
) -> None:
    """The intake spool is a file of its own: an HTTP answer does not wait for the engine's transactions."""
    from pathlib import Path

    from engine.db import make_engine

    if ctx.db.dialect.name != "sqlite":
        pytest.skip("PostgreSQL has no file-wide write lock; its queue is the shared intake_event table")
    main_file = Path(str(ctx.db.url.database))
    # The main database's lock, held as the engine process holds it while it writes a batch of triggers.
    with _write_lock_held(make_engine(ctx.db.url.render_as_string(hide_password=False))):
        started = time.monotonic()
        reply = queued_client.post("/v2/enqueue", json_body=event_body(routing_key.secret))
        answered_in = time.monotonic() - started
        assert reply.status == 202
        assert answered_in < 2.0, "the answer waited for the main database's write lock"

    store = intake_store(ctx)
    assert store.separate and Path(str(store.db.url.database)) == main_file.with_name("watchkeeper.intake.db")
    with store.sessions() as session:
        assert [r.dedup_key for r in session.scalars(select(IntakeEvent))] == ["disk-full-db1"]
    assert drain(ctx) == 1
    assert [i.key for i in _incidents(ctx)] == ["disk-full-db1"]


def test_events_left_pending_in_the_main_databases_queue_are_applied_when_the_worker_starts(
    ctx: AppContext, routing_key: CreatedSecret, event_body: Any
) -> None:
    """SQLite: events queued in the main file before the intake spool existed are not lost on upgrade."""
    from sqlalchemy import insert

    from engine.service.intake import lookup_routing_key, parse_event
    from engine.service.queue import IntakeWorker, queue_row

    if ctx.db.dialect.name != "sqlite":
        pytest.skip("on PostgreSQL the main database's table is the queue")
    target = lookup_routing_key(ctx, routing_key.secret)
    event, _ = parse_event(event_body(routing_key.secret, dedup_key="queued-before-upgrade"))
    assert target is not None and event is not None
    with ctx.db.begin() as conn:
        conn.execute(insert(IntakeEvent.__table__), [queue_row(ctx, event, target, "queued-before-upgrade")])

    worker = IntakeWorker(ctx)
    worker.start()
    worker.stop()  # joins the thread, whose first step is the main database's queue

    assert [i.key for i in _incidents(ctx)] == ["queued-before-upgrade"]
    with ctx.sessions() as session:
        [row] = session.scalars(select(IntakeEvent)).all()
        assert (row.status, row.outcome) == ("done", "triggered")


def test_a_spool_written_by_an_earlier_version_gets_the_columns_it_lacks(
    ctx: AppContext, routing_key: CreatedSecret, event_body: Any
) -> None:
    """The spool is not under `db upgrade`: opening it adds a column a later version put on intake_event."""
    from sqlalchemy import Column, MetaData, Table

    from engine.db import make_engine
    from engine.service.queue import spool_path

    path = spool_path(ctx.db)
    if path is None:
        pytest.skip("only SQLite has an intake spool")
    source: Any = IntakeEvent.__table__
    old = MetaData()
    Table(
        source.name,
        old,
        *[
            Column(c.name, c.type, primary_key=c.primary_key)
            for c in source.columns
            if c.name != "source_label"
        ],
    )
    earlier = make_engine(f"sqlite:///{path}")
    old.create_all(earlier)
    earlier.dispose()

    store = intake_store(ctx)
    with store.db.connect() as conn:
        columns = {row[1] for row in conn.exec_driver_sql("PRAGMA table_info(intake_event)")}
    assert columns == {c.name for c in source.columns}
    writer = IntakeWriter(ctx)
    writer.start()
    try:
        from tests.service.conftest import WsgiClient

        client = WsgiClient(ServiceApp(ctx, ServiceState(started_at=ctx.clock.now()), intake=writer))
        assert client.post("/v2/enqueue", json_body=event_body(routing_key.secret)).status == 202
    finally:
        writer.stop()
    assert drain(ctx) == 1
    assert [i.key for i in _incidents(ctx)] == ["disk-full-db1"]


def test_over_the_real_server_an_event_is_answered_once_it_is_committed_and_not_when_it_cannot_be(
    ctx: AppContext, writer: IntakeWriter, routing_key: CreatedSecret, event_body: Any
) -> None:
    """The HTTP server's event loop queues an event without a thread per request: the first event's routing
    key is looked up from a thread (not yet cached), the next is checked on the loop; both answer 202 only
    once committed. With the writer stopped the answer is 503 and nothing is stored."""
    from engine.service.server import bound_address, make_server, shutdown_server
    from tests.service.conftest import HttpClient

    server = make_server(
        ServiceApp(ctx, ServiceState(started_at=ctx.clock.now()), intake=writer), "127.0.0.1", 0
    )
    host, port = bound_address(server)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        live = HttpClient(f"http://{host}:{port}")
        for key in ("first", "second"):
            reply = live.post("/v2/enqueue", json_body=event_body(routing_key.secret, dedup_key=key))
            assert reply.status == 202 and reply.json()["dedup_key"] == key
        with intake_store(ctx).sessions() as session:
            assert sorted(session.scalars(select(IntakeEvent.dedup_key))) == ["first", "second"]
        writer.stop()
        refused = live.post("/v2/enqueue", json_body=event_body(routing_key.secret, dedup_key="third"))
        assert refused.status == 503 and refused.headers["Retry-After"]
        with intake_store(ctx).sessions() as session:
            assert "third" not in session.scalars(select(IntakeEvent.dedup_key)).all()
    finally:
        shutdown_server(server)
        thread.join(timeout=5)
    assert drain(ctx) == 2
    assert sorted(i.key for i in _incidents(ctx)) == ["first", "second"]
