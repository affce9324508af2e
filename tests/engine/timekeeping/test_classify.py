"""Classifying an open incident: a new category brings that category's SLA, counted from when the incident
opened; marking it sensitive stops SLA monitoring, and un-marking it gives it the deadlines it would have had
from the start. A closed incident keeps its classification. On SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from engine import api
from engine.clock import FakeClock
from engine.context import AppContext
from engine.errors import InvalidTransition, ValidationError
from engine.models import Event, Incident, SlaConfig
from engine.sla import sla_pass

HOUR = timedelta(hours=1)


@pytest.fixture
def configs(ctx: AppContext) -> None:
    with ctx.sessions.begin() as s:
        s.add_all(
            [
                SlaConfig(site="durban", category="roads", response_minutes=60, resolution_minutes=8 * 60),
                SlaConfig(site="", category="water", response_minutes=30, resolution_minutes=4 * 60),
            ]
        )


def _incident(ctx: AppContext, incident_id: int) -> Incident:
    with ctx.sessions() as s:
        incident = s.get(Incident, incident_id)
        assert incident is not None
        s.expunge(incident)
        return incident


def _events(ctx: AppContext, incident_id: int, kind: str) -> list[Event]:
    with ctx.sessions() as s:
        rows = list(s.scalars(select(Event).where(Event.incident_id == incident_id, Event.kind == kind)))
        s.expunge_all()
        return rows


def test_a_new_category_brings_its_own_sla_counted_from_when_the_incident_opened(
    ctx: AppContext, clock: FakeClock, configs: None
) -> None:
    opened = clock.now()
    incident_id = api.trigger(
        ctx, policy=None, summary="Burst pipe", site="durban", category="water"
    ).incident_id
    assert _incident(ctx, incident_id).response_due_at == opened + timedelta(minutes=30)
    clock.advance(timedelta(minutes=10))
    result = api.classify(ctx, incident_id, by="sipho", category="roads")
    assert result["changed"] == ["category"]
    incident = _incident(ctx, incident_id)
    assert incident.category == "roads"
    assert incident.response_due_at == opened + HOUR  # from the opening, not from the change
    assert incident.resolution_due_at == opened + 8 * HOUR
    (event,) = _events(ctx, incident_id, "category_changed")
    assert (event.actor, event.data) == ("sipho", {"from": "water", "to": "roads"})


def test_marking_an_incident_sensitive_stops_its_warnings_and_breaches(
    ctx: AppContext, clock: FakeClock, configs: None
) -> None:
    incident_id = api.trigger(
        ctx, policy=None, summary="Assault", site="durban", category="roads"
    ).incident_id
    result = api.classify(ctx, incident_id, by="sipho", sensitive=True)
    assert result["changed"] == ["sensitive"] and result["response_due_at"] is None
    clock.advance(200 * HOUR)  # far past every deadline the category has
    passed = sla_pass(ctx)
    assert passed["response_warnings"] == passed["response_breaches"] == passed["resolution_breaches"] == 0
    incident = _incident(ctx, incident_id)
    assert incident.sensitive and incident.status == "open"
    assert incident.response_due_at is None and incident.resolution_due_at is None
    (event,) = _events(ctx, incident_id, "sensitive_changed")
    assert event.actor == "sipho" and "no longer monitored" in (event.message or "")


def test_an_incident_no_longer_sensitive_gets_its_deadlines_from_when_it_opened(
    ctx: AppContext, clock: FakeClock, configs: None
) -> None:
    opened = clock.now()
    incident_id = api.trigger(
        ctx, policy=None, summary="Assault", site="durban", category="roads", sensitive=True
    ).incident_id
    assert _incident(ctx, incident_id).response_due_at is None
    clock.advance(2 * HOUR)
    result = api.classify(ctx, incident_id, by="anna", sensitive=False)
    assert result["changed"] == ["sensitive"]
    incident = _incident(ctx, incident_id)
    assert not incident.sensitive and incident.response_due_at == opened + HOUR
    # Nobody acknowledged it within the hour it had: the next pass breaches it, as for any other incident.
    assert sla_pass(ctx)["response_breaches"] == 1
    assert _incident(ctx, incident_id).status == "escalated"


def test_category_and_sensitive_together_in_one_change(
    ctx: AppContext, clock: FakeClock, configs: None
) -> None:
    incident_id = api.trigger(ctx, policy=None, summary="Leak", site="durban", category="water").incident_id
    result = api.classify(ctx, incident_id, by="sipho", category="roads", sensitive=True)
    assert result["changed"] == ["category", "sensitive"]
    assert result["category"] == "roads" and result["sensitive"] is True
    assert result["response_due_at"] is None  # sensitive wins: no deadlines whatever the category


def test_nothing_different_writes_nothing(ctx: AppContext, clock: FakeClock) -> None:
    incident_id = api.trigger(ctx, policy=None, summary="Leak", category="water").incident_id
    before = _incident(ctx, incident_id).updated_at
    clock.advance(HOUR)
    result = api.classify(ctx, incident_id, by="sipho", category="water", sensitive=False)
    assert result["changed"] == []
    assert _incident(ctx, incident_id).updated_at == before
    assert (
        _events(ctx, incident_id, "category_changed") == _events(ctx, incident_id, "sensitive_changed") == []
    )


def test_a_closed_incident_keeps_its_classification(ctx: AppContext) -> None:
    incident_id = api.trigger(ctx, policy=None, summary="Leak", category="water").incident_id
    api.resolve(ctx, incident_id, by="sipho")
    with pytest.raises(InvalidTransition, match="closed"):
        api.classify(ctx, incident_id, by="sipho", category="roads")
    with pytest.raises(InvalidTransition):
        api.classify(ctx, incident_id, by="sipho", sensitive=True)
    incident = _incident(ctx, incident_id)
    assert incident.category == "water" and not incident.sensitive


def test_a_classification_needs_something_to_change(ctx: AppContext) -> None:
    incident_id = api.trigger(ctx, policy=None, summary="Leak").incident_id
    with pytest.raises(ValidationError, match="category, the sensitive flag, or both"):
        api.classify(ctx, incident_id, by="sipho")
    with pytest.raises(ValidationError, match="must not be empty"):
        api.classify(ctx, incident_id, by="sipho", category="  ")
