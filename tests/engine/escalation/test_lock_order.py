"""One lock order for every path that touches an incident: acknowledgements racing the escalate pass never
deadlock, never fail, and nothing pages after an acknowledgement.

The defect on PostgreSQL: acknowledging locked the incident and then its escalation, while the escalate pass
held the escalation and then inserted pages, whose foreign key waited for the incident: 700–1,400
acknowledgements of 5,000 failed with DeadlockDetected and those incidents were paged at levels 2 and 3."""

from __future__ import annotations

import threading
from datetime import timedelta

from sqlalchemy import func, select

from engine import api
from engine.api import TriggerRequest
from engine.escalation import escalate_pass
from engine.models import Escalation, OutboxMessage, Page

from .helpers import add_policy

N = 600


def test_acknowledgements_racing_the_escalate_pass_all_succeed_and_stop_paging(
    ctx, sessions, people, clock
) -> None:
    add_policy(
        sessions,
        "race",
        [
            {"targets": [("person", "thandi"), ("person", "sipho")]},
            {"targets": [("person", "anna")], "delay_seconds": 60},
        ],
    )
    results = api.trigger_many(
        ctx, [TriggerRequest(policy="race", summary=f"Alarm {n}", key=f"race-{n}") for n in range(N)]
    )
    acked = [r.incident_id for r in results[::2]]  # every other one, acknowledged while the pass pages them
    errors: list[BaseException] = []
    started = threading.Event()

    def escalate() -> None:
        started.set()
        try:
            while escalate_pass(ctx, limit=50):
                pass
        except BaseException as exc:
            errors.append(exc)

    def acknowledge() -> None:
        started.wait(5)
        for incident_id in acked:
            try:
                api.acknowledge(ctx, incident_id, by="operator")
            except BaseException as exc:
                errors.append(exc)

    threads = [threading.Thread(target=escalate), threading.Thread(target=acknowledge)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == [], f"{len(errors)} failed, e.g. {errors[:3]!r}"
    escalate_pass(ctx)  # whatever was left of level 1
    clock.advance(timedelta(seconds=61))  # level 2 falls due for everyone not acknowledged
    while escalate_pass(ctx):
        pass
    with sessions() as s:
        states = dict(
            s.execute(
                select(Escalation.state, func.count())
                .where(Escalation.incident_id.in_(acked))
                .group_by(Escalation.state)
            ).all()
        )
        assert states == {"acknowledged": len(acked)}
        open_pages = s.scalar(
            select(func.count()).where(Page.incident_id.in_(acked), Page.status.in_(("active", "held")))
        )
        unsent = s.scalar(
            select(func.count()).where(
                OutboxMessage.incident_id.in_(acked),
                OutboxMessage.kind == "page",
                OutboxMessage.status == "pending",
            )
        )
        level_two = s.scalar(select(func.count()).where(Page.incident_id.in_(acked), Page.level == 2))
        others_level_two = s.scalar(select(func.count()).where(Page.level == 2))
    assert open_pages == 0 and unsent == 0, "an acknowledged incident still has paging under way"
    assert level_two == 0, "an acknowledged incident was paged at level 2"
    assert others_level_two == N - len(acked)
