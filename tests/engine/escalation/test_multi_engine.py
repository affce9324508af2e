"""Several engines on one database: every page written exactly once, claims and leases respected."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import timedelta

import pytest
from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session, sessionmaker

from engine.clock import FakeClock
from engine.context import AppContext
from engine.db import make_engine
from engine.escalation import escalate_pass
from engine.models import Escalation, OutboxMessage, Page
from engine.settings import Settings

from .helpers import add_policy, bulk_escalations, count

N = 1000


def _engine_ctx(db: Engine, clock: FakeClock, name: str) -> AppContext:
    """A separate engine: its own connection pool and node id, the same database and clock."""
    url = db.url.render_as_string(hide_password=False)
    return AppContext.create(Settings(db=url), clock=clock, mode=name, db=make_engine(url))


def _due(ctx: AppContext) -> int:
    with ctx.sessions() as s:
        now = ctx.clock.now()
        return len(s.scalars(select(Escalation.id).where(Escalation.next_action_at <= now)).all())


def _run_engines(contexts: list[AppContext]) -> list[int]:
    done = [0] * len(contexts)
    errors: list[BaseException] = []
    start = threading.Barrier(len(contexts))

    def work(i: int) -> None:
        try:
            start.wait()
            while _due(contexts[i]):  # a pass that found the database busy simply runs again
                done[i] += escalate_pass(contexts[i], limit=25, max_batches=2)
        except BaseException as exc:  # surfaced in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(contexts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=240)
    assert not errors, errors
    return done


@pytest.mark.slow
def test_two_engines_write_every_page_exactly_once(
    db: Engine, sessions: sessionmaker[Session], clock: FakeClock, people: dict[str, int]
) -> None:
    add_policy(
        sessions,
        "shared",
        [
            {"targets": [("person", "thandi"), ("person", "sipho")]},
            {"targets": [("person", "anna")], "delay_seconds": 60},
        ],
    )
    escalations = bulk_escalations(sessions, "shared", N, clock.now())
    engines = [_engine_ctx(db, clock, "engine-a"), _engine_ctx(db, clock, "engine-b")]
    try:
        first = _run_engines(engines)
        assert sum(first) == N  # each escalation was processed once, by one engine
        clock.advance(60)
        second = _run_engines(engines)
        assert sum(second) == N
    finally:
        for e in engines:
            e.db.dispose()

    with sessions() as s:
        keys = Counter(s.scalars(select(OutboxMessage.idempotency_key)))
    expected = {f"page:{e}:1:0:{people[p]}:0" for e in escalations for p in ("thandi", "sipho")} | {
        f"page:{e}:2:0:{people['anna']}:0" for e in escalations
    }
    duplicates = [k for k, c in keys.items() if c > 1]
    missing = expected - set(keys)
    assert duplicates == [] and missing == set()
    assert set(keys) == expected and len(keys) == 3 * N
    assert count(sessions, Page) == 3 * N
    with sessions() as s:
        assert set(s.scalars(select(Escalation.current_level))) == {2}
        assert set(s.scalars(select(Escalation.lease_owner))) == {None}


def test_sqlite_engine_skips_rows_another_engine_leased_until_the_lease_expires(
    db: Engine, ctx: AppContext, sessions: sessionmaker[Session], clock: FakeClock, people: dict[str, int]
) -> None:
    if db.dialect.name != "sqlite":
        pytest.skip("leases are SQLite's claim; PostgreSQL uses row locks (next test)")
    add_policy(sessions, "p", [{"targets": [("person", "thandi")]}])
    bulk_escalations(sessions, "p", 1, clock.now())
    with sessions.begin() as s:
        s.execute(
            update(Escalation).values(
                lease_owner="crashed-engine", lease_expires_at=clock.now() + timedelta(seconds=30)
            )
        )
    assert escalate_pass(ctx) == 0
    clock.advance(30)
    assert escalate_pass(ctx) == 1  # the dead engine's lease expired: taken over
    assert count(sessions, OutboxMessage) == 1


def test_postgresql_engine_skips_rows_another_engine_has_locked(
    db: Engine, ctx: AppContext, sessions: sessionmaker[Session], clock: FakeClock, people: dict[str, int]
) -> None:
    if db.dialect.name != "postgresql":
        pytest.skip("SKIP LOCKED is PostgreSQL's claim")
    add_policy(sessions, "p", [{"targets": [("person", "thandi")]}])
    first, _second = bulk_escalations(sessions, "p", 2, clock.now())
    other = sessions()
    try:
        other.execute(select(Escalation).where(Escalation.id == first).with_for_update())
        assert escalate_pass(ctx) == 1  # only the unlocked one
    finally:
        other.rollback()
        other.close()
    assert escalate_pass(ctx) == 1
    assert count(sessions, OutboxMessage) == 2
