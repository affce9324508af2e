"""The escalation state machine: only the moves in the table, every one of them recorded as an event."""

from __future__ import annotations

import itertools

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from engine import api
from engine.context import AppContext
from engine.errors import InvalidTransition
from engine.escalation import TRANSITIONS, can_transition, transition
from engine.models import Escalation, EscalationState, Event, Incident

from .helpers import add_policy

S = EscalationState
EVERY_PAIR = list(itertools.product(list(S), list(S)))


def test_the_table_names_every_state() -> None:
    assert set(TRANSITIONS) == set(S)
    for targets in TRANSITIONS.values():
        assert targets <= set(S)


def test_closed_states_are_final() -> None:
    assert TRANSITIONS[S.RESOLVED] == frozenset()
    assert TRANSITIONS[S.CANCELLED] == frozenset()


def test_every_transition_is_allowed_or_refused_exactly_as_the_table_says(
    sessions: sessionmaker[Session], clock
) -> None:
    now = clock.now()
    with sessions.begin() as s:
        allowed = refused = 0
        for frm, to in EVERY_PAIR:
            # An incident of its own per pair: an incident has at most one live escalation.
            incident = Incident(
                key=f"k-{frm.value}-{to.value}",
                summary="Gas leak",
                status="cancelled",
                created_at=now,
                updated_at=now,
                last_triggered_at=now,
            )
            s.add(incident)
            s.flush()
            esc = Escalation(
                incident_id=incident.id, policy_name="p", state=frm.value, started_at=now, updated_at=now
            )
            s.add(esc)
            s.flush()
            before = len(s.scalars(select(Event).where(Event.escalation_id == esc.id)).all())
            if to in TRANSITIONS[frm]:
                transition(s, esc, to, now, actor="tester")
                s.flush()
                assert esc.state == to.value
                events = s.scalars(select(Event).where(Event.escalation_id == esc.id)).all()
                assert len(events) == before + 1
                assert events[-1].actor == "tester"
                assert events[-1].data["from"] == frm.value and events[-1].data["to"] == to.value
                assert events[-1].at == now
                allowed += 1
            else:
                with pytest.raises(InvalidTransition):
                    transition(s, esc, to, now, actor="tester")
                assert esc.state == frm.value
                assert len(s.scalars(select(Event).where(Event.escalation_id == esc.id)).all()) == before
                refused += 1
            assert can_transition(frm.value, to.value) == (to in TRANSITIONS[frm])
        assert allowed + refused == len(S) ** 2
        assert refused > allowed  # most moves are illegal; the table is the whole truth
        s.rollback()


def test_live_states_can_fail_and_time_out_but_closed_ones_cannot() -> None:
    for state in (S.PENDING, S.ACTIVE, S.ESCALATING):
        assert {S.FAILED, S.TIMED_OUT, S.CANCELLED, S.ACKNOWLEDGED, S.RESOLVED} <= TRANSITIONS[state]
    for state in (S.RESOLVED, S.CANCELLED):
        assert S.FAILED not in TRANSITIONS[state]


@pytest.fixture
def incident_id(ctx: AppContext, sessions: sessionmaker[Session], people: dict[str, int]) -> int:
    add_policy(sessions, "standby", [{"targets": [("person", "thandi")]}])
    return api.trigger(ctx, policy="standby", summary="Burst main, Umlazi").incident_id


def test_acknowledging_a_resolved_incident_is_refused(ctx: AppContext, incident_id: int) -> None:
    api.resolve(ctx, incident_id, by="sipho")
    with pytest.raises(InvalidTransition):
        api.acknowledge(ctx, incident_id, by="sipho")


def test_acknowledging_twice_is_refused(ctx: AppContext, incident_id: int) -> None:
    api.acknowledge(ctx, incident_id, by="sipho")
    with pytest.raises(InvalidTransition):
        api.acknowledge(ctx, incident_id, by="thandi")


def test_resolving_a_cancelled_incident_is_refused(ctx: AppContext, incident_id: int) -> None:
    api.cancel(ctx, incident_id, reason="duplicate call", by="op")
    with pytest.raises(InvalidTransition):
        api.resolve(ctx, incident_id, by="op")
    with pytest.raises(InvalidTransition):
        api.escalate(ctx, incident_id, by="op")
    with pytest.raises(InvalidTransition):
        api.cancel(ctx, incident_id, reason="again", by="op")


def test_reopening_an_open_incident_is_refused(ctx: AppContext, incident_id: int) -> None:
    with pytest.raises(InvalidTransition):
        api.reopen(ctx, incident_id, by="op")


def test_escalating_past_the_last_level_is_refused(ctx: AppContext, incident_id: int, run) -> None:
    run()
    with pytest.raises(InvalidTransition):
        api.escalate(ctx, incident_id, by="op")
