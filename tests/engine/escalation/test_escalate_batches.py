"""The escalate pass at volume: set-based claims, whole batches written at once, backlogs worked without
waiting for the next tick, several batches at once on PostgreSQL, and still every page exactly once."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

from sqlalchemy import Engine, insert, select
from sqlalchemy.orm import Session, sessionmaker

from engine.claims import claim_due_escalation_rows, next_escalation_due
from engine.clock import FakeClock
from engine.context import AppContext
from engine.db import write_session
from engine.escalation import escalate_pass
from engine.models import Escalation, EscalationState, Event, Incident, OutboxMessage, Page
from engine.runner import EngineRunner

from .helpers import add_person, add_policy, bulk_escalations, count, events
from .test_runner import wait_for


def test_a_claim_returns_the_due_escalations_with_their_incidents(
    ctx: AppContext, sessions: sessionmaker[Session], clock: FakeClock, people: dict[str, int]
) -> None:
    add_policy(sessions, "p", [{"targets": [("person", "thandi")]}])
    *ids, later = bulk_escalations(
        sessions, "p", 8, clock.now(), due=[clock.now()] * 7 + [clock.now() + timedelta(minutes=5)]
    )
    with write_session(sessions) as s:
        rows = claim_due_escalation_rows(s, clock.now(), "engine-a", 10)
    assert [r.id for r in rows] == ids  # the due ones only, oldest due first
    row = rows[0]
    assert row.state == EscalationState.PENDING.value
    assert row.policy_snapshot["name"] == "p" and row.policy_snapshot["levels"]
    assert row.incident.id == row.incident_id and row.incident.summary.startswith("Bulk incident")
    assert len({id(r.incident) for r in rows}) == len(rows)
    assert later not in {r.id for r in rows}


def test_two_engines_claiming_at_once_never_get_the_same_escalation(
    db: Engine, ctx: AppContext, sessions: sessionmaker[Session], clock: FakeClock, people: dict[str, int]
) -> None:
    add_policy(sessions, "p", [{"targets": [("person", "thandi")]}])
    ids = bulk_escalations(sessions, "p", 10, clock.now())
    if db.dialect.name == "postgresql":
        # Both claims in open transactions at the same time: SKIP LOCKED hands each its own rows.
        a, b = sessions(), sessions()
        try:
            got_a = {r.id for r in claim_due_escalation_rows(a, clock.now(), "engine-a", 6)}
            got_b = {r.id for r in claim_due_escalation_rows(b, clock.now(), "engine-b", 6)}
        finally:
            a.rollback(), b.rollback()
            a.close(), b.close()
    else:
        # One writer at a time: the first claim's lease outlives its transaction and keeps the second off.
        with write_session(sessions) as a:
            got_a = {r.id for r in claim_due_escalation_rows(a, clock.now(), "engine-a", 6)}
        with write_session(sessions) as b:
            got_b = {r.id for r in claim_due_escalation_rows(b, clock.now(), "engine-b", 6)}
    assert len(got_a) == 6 and len(got_b) == 4
    assert not got_a & got_b and got_a | got_b == set(ids)


def test_a_backlog_many_batches_long_is_paged_once_each_with_its_events_in_order(
    ctx: AppContext, sessions: sessionmaker[Session], clock: FakeClock, people: dict[str, int]
) -> None:
    add_policy(sessions, "p", [{"targets": [("person", "thandi"), ("person", "sipho")]}])
    ids = bulk_escalations(sessions, "p", 95, clock.now())
    assert escalate_pass(ctx, limit=10, workers=3) == 95  # several batches at once on PostgreSQL
    assert count(sessions, Page) == 190 and count(sessions, OutboxMessage) == 190
    with sessions() as s:
        keys = Counter(s.scalars(select(OutboxMessage.idempotency_key)))
        states = set(s.scalars(select(Escalation.state)))
        leases = set(s.scalars(select(Escalation.lease_owner)))
        paged = list(
            s.execute(select(Escalation.id, Escalation.notification_count, Escalation.next_action_at))
        )
    assert max(keys.values()) == 1
    assert states == {EscalationState.ACTIVE.value} and leases == {None}
    assert {e for e, n, due in paged if n == 2 and due is not None} == set(ids)
    active = events(sessions, "escalation_active")
    assert sorted(e.escalation_id for e in active) == sorted(ids)
    assert all(e.data["people"] and e.data["level"] == 1 for e in active)
    assert escalate_pass(ctx) == 0  # nothing is due twice


def test_events_recorded_in_a_batch_carry_the_page_they_are_about(
    ctx: AppContext, sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    # 08:00 UTC is 10:00 in Johannesburg: quiet hours hold every page of the batch.
    add_person(sessions, "thandi", quiet_start="09:00", quiet_end="12:00")
    add_person(sessions, "nobody", phone="", email="", preferred_channel="sms", fallback_channels=[])
    add_policy(sessions, "p", [{"targets": [("person", "thandi"), ("person", "nobody")]}])
    bulk_escalations(sessions, "p", 30, clock.now())
    assert escalate_pass(ctx, limit=12) == 30
    with sessions() as s:
        pages = {(p.escalation_id, p.person_id): p.id for p in s.scalars(select(Page))}
        order = list(s.execute(select(Event.id, Event.kind, Event.escalation_id).order_by(Event.id)))
    for kind in ("page_held", "page_exhausted"):
        found = events(sessions, kind)
        assert len(found) == 30
        assert all(pages[(e.escalation_id, e.data["person_id"])] == e.data["page_id"] for e in found)
    # Each escalation's page events come before the event that says its level was paged.
    seen: dict[int, list[str]] = {}
    for _id, kind, esc in order:
        seen.setdefault(esc, []).append(kind)
    assert all(kinds == ["page_held", "page_exhausted", "escalation_active"] for kinds in seen.values())


def test_a_page_already_written_sends_the_batch_row_by_row_and_nothing_twice(
    ctx: AppContext, sessions: sessionmaker[Session], clock: FakeClock, people: dict[str, int]
) -> None:
    add_policy(sessions, "p", [{"targets": [("person", "thandi")]}])
    ids = bulk_escalations(sessions, "p", 20, clock.now())
    with sessions.begin() as s:  # another engine paged the fifth one and died before moving it on
        incident_id = s.scalar(select(Escalation.incident_id).where(Escalation.id == ids[4]))
        s.execute(
            insert(Page).values(
                escalation_id=ids[4],
                incident_id=incident_id,
                person_id=people["thandi"],
                level=1,
                repeat_no=0,
                chain=[],
                step=0,
                status="exhausted",
                reply_code="123456",
                created_at=clock.now(),
            )
        )
    assert escalate_pass(ctx) == 20
    assert count(sessions, Page) == 20
    assert count(sessions, OutboxMessage) == 19  # the fifth was not paged again
    with sessions() as s:
        assert set(s.scalars(select(Escalation.state))) == {EscalationState.ACTIVE.value}


def test_an_auto_resolve_in_a_batch_resolves_the_incident(
    ctx: AppContext, sessions: sessionmaker[Session], clock: FakeClock, people: dict[str, int]
) -> None:
    add_policy(sessions, "p", [{"targets": [("person", "thandi")], "auto_resolve_seconds": 60}])
    ids = bulk_escalations(sessions, "p", 12, clock.now())
    assert escalate_pass(ctx, limit=5) == 12
    clock.advance(timedelta(seconds=60))
    assert escalate_pass(ctx, limit=5) == 12
    with sessions() as s:
        assert set(s.scalars(select(Escalation.state).where(Escalation.id.in_(ids)))) == {"resolved"}
        resolved = list(s.scalars(select(Incident)))
    assert {i.status for i in resolved} == {"resolved"}
    assert {i.resolved_by for i in resolved} == {"system"}
    assert all(i.resolved_at == clock.now() for i in resolved)


def test_the_next_due_time_is_the_earliest_over_every_state_the_pass_acts_on(
    ctx: AppContext, sessions: sessionmaker[Session], clock: FakeClock, people: dict[str, int]
) -> None:
    with sessions() as s:
        assert next_escalation_due(s) is None
    add_policy(sessions, "p", [{"targets": [("person", "thandi")]}])
    soon, later = clock.now() + timedelta(seconds=40), clock.now() + timedelta(seconds=90)
    bulk_escalations(sessions, "p", 2, clock.now(), due=[later, soon])
    with sessions() as s:
        assert next_escalation_due(s) == soon


def _runner(ctx: AppContext, limit: int) -> EngineRunner:
    """A runner whose escalate pass takes one small batch per run and whose tick is an hour away: only
    the runner keeping pace with the due times can get the work done in time."""

    def one_batch(c: AppContext) -> int:
        return escalate_pass(c, limit=limit, max_batches=1)

    return EngineRunner(
        ctx, mode="test", passes={"escalate": one_batch}, intervals={"escalate": 3600}, listen=False
    )


def test_the_runner_works_a_backlog_batch_after_batch_without_waiting_for_the_tick(
    ctx: AppContext, sessions: sessionmaker[Session], clock: FakeClock, people: dict[str, int]
) -> None:
    add_policy(sessions, "p", [{"targets": [("person", "thandi")]}])
    bulk_escalations(sessions, "p", 40, clock.now())
    runner = _runner(ctx, limit=5)
    runner.start()
    try:
        assert wait_for(lambda: count(sessions, OutboxMessage) == 40, timeout=20)
    finally:
        runner.stop()


def test_the_runner_wakes_at_a_due_time_that_comes_before_the_next_tick(
    ctx: AppContext, sessions: sessionmaker[Session], clock: FakeClock, people: dict[str, int]
) -> None:
    add_policy(sessions, "p", [{"targets": [("person", "thandi")]}])
    bulk_escalations(sessions, "p", 1, clock.now(), due=[clock.now() + timedelta(seconds=1)])
    runner = _runner(ctx, limit=5)
    runner.start()
    try:
        assert wait_for(lambda: runner.scheduler.get_job("due-escalate") is not None, timeout=10)
        clock.advance(timedelta(seconds=1))  # the engine's time reaches the due time as the wake fires
        assert wait_for(lambda: count(sessions, OutboxMessage) == 1, timeout=10)
    finally:
        runner.stop()
