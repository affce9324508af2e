"""Statistics for a period and a filter: counts, rates, MTTA/MTTR, SLA, pages per person, channels and cost."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import update

from engine import api
from engine.errors import NotFound, ValidationError
from engine.models import Incident, MessageStatus, OutboxMessage
from engine.stats import duration_summary

from .helpers import add_policy


def test_duration_summary_gives_mean_median_and_p90() -> None:
    assert duration_summary([60, 120, 180, 240, 300, 360, 420, 480, 540, 600]) == {
        "count": 10,
        "mean": 330.0,
        "median": 330.0,
        "p90": 546.0,
    }
    assert duration_summary([])["mean"] is None


def test_stats_for_a_period(ctx, sessions, people, run, clock) -> None:
    add_policy(sessions, "water", [{"targets": [("person", "thandi")]}])
    start = clock.now()
    a = api.trigger(ctx, policy="water", summary="A", severity="high", site="Durban")
    b = api.trigger(ctx, policy="water", summary="B", severity="high", site="Durban")
    c = api.trigger(ctx, policy="water", summary="C", severity="low", site="Pinetown")
    run()
    clock.advance(60)
    api.acknowledge(ctx, a.incident_id, by="thandi")
    clock.advance(60)
    api.acknowledge(ctx, b.incident_id, by="thandi")
    clock.advance(480)
    api.resolve(ctx, a.incident_id, by="thandi")
    with sessions.begin() as s:
        s.execute(
            update(OutboxMessage)
            .where(OutboxMessage.incident_id == a.incident_id, OutboxMessage.kind == "page")
            .values(status=MessageStatus.DELIVERED, price=Decimal("-0.0075"), currency="USD")
        )
        s.execute(
            update(OutboxMessage)
            .where(OutboxMessage.incident_id == c.incident_id, OutboxMessage.kind == "page")
            .values(status=MessageStatus.FAILED)
        )
        s.execute(
            update(Incident).where(Incident.id == c.incident_id).values(response_breached_at=clock.now())
        )

    got = api.stats(ctx, since=start, until=clock.now() + timedelta(seconds=1))
    assert got["incidents"]["total"] == 3
    assert got["incidents"]["by_status"] == {"resolved": 1, "acknowledged": 1, "open": 1}
    assert got["escalations"]["by_state"] == {"resolved": 1, "acknowledged": 1, "active": 1}
    assert got["ack_rate"] == pytest.approx(2 / 3, abs=1e-4)
    assert got["resolution_rate"] == pytest.approx(1 / 3, abs=1e-4)
    assert got["mtta_seconds"] == {"count": 2, "mean": 90.0, "median": 90.0, "p90": 114.0}
    assert got["mttr_seconds"] == {"count": 1, "mean": 600.0, "median": 600.0, "p90": 600.0}
    assert got["sla"]["monitored"] == 3 and got["sla"]["response_breaches"] == 1
    assert got["sla"]["compliance_percent"] == pytest.approx(66.67)
    (thandi,) = got["pages_per_person"]
    assert thandi["handle"] == "thandi" and thandi["pages"] == 3
    sms = next(ch for ch in got["channels"] if ch["channel"] == "sms")
    assert sms["sent"] == 1 and sms["failed"] == 1 and sms["success_rate"] == 0.5
    assert sms["cost"] == {"USD": "0.00750"}

    high = api.stats(ctx, since=None, until=None, severity="high", site="Durban", policy="water")
    assert high["incidents"]["total"] == 2
    empty = api.stats(ctx, since=clock.now() + timedelta(days=1), until=None)
    assert empty["incidents"]["total"] == 0 and empty["ack_rate"] is None


def test_stats_refuse_unknown_filters(ctx, sessions) -> None:
    with pytest.raises(NotFound):
        api.stats(ctx, since=None, until=None, policy="nope")
    with pytest.raises(ValidationError):
        api.stats(ctx, since=None, until=None, severity="bad")
