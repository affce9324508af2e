"""Queued triggers are applied in runs, through one engine.api.trigger_many call per run of consecutive
triggers, with exactly the outcomes applying them one by one has: repeats of a key, a key whose incident is
already open, an acknowledge or resolve between two triggers of one key. An event that cannot be applied
fails alone."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import insert, select

from engine import api
from engine.context import AppContext
from engine.escalation import escalate_pass
from engine.models import Escalation, Incident, IntakeEvent, OutboxMessage
from engine.service.intake import lookup_routing_key, parse_event, process_event
from engine.service.keys import CreatedSecret, RoutingTarget
from engine.service.queue import apply_pending, intake_store, queue_row

# (action, key) in queue order; "open" already has an open incident when the batch is applied.
SEQUENCE = [
    ("trigger", "x"),
    ("trigger", "x"),  # a repeat inside the run
    ("trigger", "open"),
    ("trigger", "y"),
    ("acknowledge", "y"),
    ("trigger", "y"),  # its incident is acknowledged, still open
    ("trigger", "z"),
    ("resolve", "z"),
    ("trigger", "z"),  # resolved: a new incident
    ("trigger", "x"),
]
EXPECTED = [
    "triggered",
    "deduplicated",
    "deduplicated",
    "triggered",
    "acknowledged",
    "deduplicated",
    "triggered",
    "resolved",
    "triggered",
    "deduplicated",
]


def _event(routing_key: str, action: str, key: str, event_body: Any) -> Any:
    event, errors = parse_event(event_body(routing_key, action=action, dedup_key=key, summary=f"Alarm {key}"))
    assert not errors
    return event


def _queue(ctx: AppContext, rows: list[dict[str, Any]]) -> None:
    with intake_store(ctx).db.begin() as conn:
        conn.execute(insert(IntakeEvent.__table__), rows)


def _results(ctx: AppContext, prefix: str) -> list[tuple[str, str, int | None]]:
    with intake_store(ctx).sessions() as session:
        return [
            (r.dedup_key.removeprefix(prefix), r.outcome, r.incident_id)
            for r in session.scalars(select(IntakeEvent).order_by(IntakeEvent.id))
            if r.dedup_key.startswith(prefix)
        ]


def _incidents(ctx: AppContext, prefix: str) -> list[tuple[int, str, str, int, int]]:
    """(id, key, status, trigger count, escalations) of the incidents whose keys start with `prefix`."""
    with ctx.sessions() as session:
        out = []
        for i in session.scalars(
            select(Incident).where(Incident.key.startswith(prefix)).order_by(Incident.id)
        ):
            escalations = len(
                session.scalars(select(Escalation.id).where(Escalation.incident_id == i.id)).all()
            )
            out.append((i.id, i.key.removeprefix(prefix), i.status, i.trigger_count, escalations))
        return out


def _shape(
    results: list[tuple[str, Any, Any]], incidents: list[tuple[int, str, str, int, int]]
) -> tuple[list[Any], list[Any]]:
    """Incident ids replaced by their position among the scenario's incidents (the two runs differ in ids)."""
    position = {row[0]: n for n, row in enumerate(incidents)}
    return (
        [(key, outcome, position.get(incident_id)) for key, outcome, incident_id in results],
        [row[1:] for row in incidents],
    )


def _count_trigger_many(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The size of each engine.api.trigger_many call from now on (the calls still do their work)."""
    calls: list[int] = []
    trigger_many = api.trigger_many

    def counting(ctx_: AppContext, requests: Any) -> Any:
        calls.append(len(requests))
        return trigger_many(ctx_, requests)

    monkeypatch.setattr(api, "trigger_many", counting)
    return calls


def test_a_batch_has_the_outcomes_of_applying_its_events_one_by_one(
    ctx: AppContext, routing_key: CreatedSecret, event_body: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = lookup_routing_key(ctx, routing_key.secret)
    assert target is not None

    # One by one, through process_event, each in its own transaction (keys "one-…").
    process_event(ctx, _event(routing_key.secret, "trigger", "one-open", event_body), target)
    one_by_one = []
    for action, key in SEQUENCE:
        result = process_event(ctx, _event(routing_key.secret, action, f"one-{key}", event_body), target)
        one_by_one.append((key, result.outcome, result.incident_id))

    # Queued and applied in one batch (keys "batch-…").
    process_event(ctx, _event(routing_key.secret, "trigger", "batch-open", event_body), target)
    _queue(
        ctx,
        [
            queue_row(
                ctx, _event(routing_key.secret, action, f"batch-{key}", event_body), target, f"batch-{key}"
            )
            for action, key in SEQUENCE
        ],
    )
    calls = _count_trigger_many(monkeypatch)
    assert apply_pending(ctx) == len(SEQUENCE)

    batched = _results(ctx, "batch-")
    assert [outcome for _key, outcome, _id in batched] == EXPECTED
    assert _shape(batched, _incidents(ctx, "batch-")) == _shape(one_by_one, _incidents(ctx, "one-"))
    # Three runs of triggers reached the engine, each whole: it joins open incidents itself, under a lock on
    # the key (an unlocked look-up here first let two nodes open the same alert twice).
    assert calls == [4, 2, 2]
    # A deduplicated trigger pages nobody: one page per escalation, as one by one.
    escalate_pass(ctx)
    with ctx.sessions() as session:
        keys = session.scalars(
            select(Incident.key).join(OutboxMessage, OutboxMessage.incident_id == Incident.id)
        ).all()
    assert sorted(k.removeprefix("batch-") for k in keys if k.startswith("batch-")) == sorted(
        k.removeprefix("one-") for k in keys if k.startswith("one-")
    )


def test_a_trigger_the_engine_refuses_fails_alone_and_the_rest_of_its_run_is_applied(
    ctx: AppContext, routing_key: CreatedSecret, event_body: Any
) -> None:
    target = lookup_routing_key(ctx, routing_key.secret)
    assert target is not None
    # Its routing key's policy was deleted after the event was queued: the whole batch is refused.
    gone = RoutingTarget(
        routing_key_id=target.routing_key_id, label=target.label, policy_id=0, policy_name="gone"
    )
    rows = [
        queue_row(ctx, _event(routing_key.secret, "trigger", "a", event_body), target, "a"),
        queue_row(ctx, _event(routing_key.secret, "trigger", "b", event_body), gone, "b"),
        queue_row(ctx, _event(routing_key.secret, "trigger", "a", event_body), target, "a"),
        queue_row(ctx, _event(routing_key.secret, "trigger", "c", event_body), target, "c"),
    ]
    _queue(ctx, rows)

    assert apply_pending(ctx) == 4

    with intake_store(ctx).sessions() as session:
        applied = session.scalars(select(IntakeEvent).order_by(IntakeEvent.id)).all()
        assert [(r.dedup_key, r.status, r.outcome) for r in applied] == [
            ("a", "done", "triggered"),
            ("b", "failed", "failed"),
            ("a", "done", "deduplicated"),
            ("c", "done", "triggered"),
        ]
        assert "gone" in (applied[1].error or "")
        assert applied[0].incident_id == applied[2].incident_id
    with ctx.sessions() as session:
        assert sorted(session.scalars(select(Incident.key)).all()) == ["a", "c"]


def test_a_stored_event_that_cannot_be_read_fails_alone_without_holding_up_its_run(
    ctx: AppContext, routing_key: CreatedSecret, event_body: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = lookup_routing_key(ctx, routing_key.secret)
    assert target is not None
    rows = [
        queue_row(ctx, _event(routing_key.secret, "trigger", key, event_body), target, key) for key in "pqr"
    ]
    rows[1]["event"] = {**rows[1]["event"], "severity": "catastrophic"}  # no such severity
    _queue(ctx, rows)
    calls = _count_trigger_many(monkeypatch)

    assert apply_pending(ctx) == 3

    with intake_store(ctx).sessions() as session:
        applied = session.scalars(select(IntakeEvent).order_by(IntakeEvent.id)).all()
        assert [(r.dedup_key, r.status) for r in applied] == [("p", "done"), ("q", "failed"), ("r", "done")]
    assert calls == [2], "the others still went in one batch"
