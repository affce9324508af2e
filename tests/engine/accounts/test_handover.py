"""Shift handover on SQLite and PostgreSQL: the note the outgoing operator writes is shown to the next person
to sign in, with the open, unacknowledged and breached incidents of the shift."""

from __future__ import annotations

from datetime import timedelta

import pytest

from engine import accounts, api, handover
from engine.clock import FakeClock
from engine.db import read_session, write_session
from engine.errors import ValidationError
from engine.models import Incident

from .conftest import PASSWORD, Centre


def _open(centre: Centre, summary: str, **fields: object) -> int:
    incident_id = api.trigger(centre.ctx, policy=None, summary=summary, severity="high").incident_id
    if fields:
        with write_session(centre.ctx.sessions) as s:
            incident = s.get(Incident, incident_id)
            assert incident is not None
            for name, value in fields.items():
                setattr(incident, name, value)
    return incident_id


def test_the_next_operator_sees_the_note_with_the_shifts_incidents(centre: Centre, clock: FakeClock) -> None:
    shift_start = clock.now()
    night = accounts.sign_in(centre.ctx, "operator2", PASSWORD["operator"]).identity
    waiting = _open(centre, "Gas smell, Pinetown library")
    taken = _open(centre, "Water main, Florida Road")
    api.acknowledge(centre.ctx, taken, by="operator2")
    breached = _open(centre, "Street lights out", response_breached_at=clock.now() + timedelta(minutes=30))
    closed_breach = _open(centre, "Cable theft", resolution_breached_at=clock.now() + timedelta(hours=1))
    api.resolve(centre.ctx, closed_breach, by="operator2")
    old = _open(centre, "Last week's flood")
    api.resolve(centre.ctx, old, by="operator2")

    clock.advance(timedelta(hours=8))
    note = handover.write_note(
        centre.ctx,
        night,
        "Pinetown gas board on the way; Florida Road crew on site.",
        shift_started_at=shift_start,
    )
    assert (note.open_count, note.unacknowledged_count, note.breached_count) == (3, 2, 2)
    assert note.author == "operator2"
    accounts.sign_out(centre.ctx, night, note_id=note.id)

    clock.advance(timedelta(minutes=5))
    morning = accounts.sign_in(centre.ctx, "operator1", PASSWORD["operator"])
    with read_session(centre.ctx.sessions) as s:
        seen = handover.handover_for(s, morning.identity, morning.previous_sign_in_at, clock.now())
    assert seen.note is not None and seen.note.text.startswith("Pinetown gas board")
    summary = seen.summary
    assert summary.since == shift_start
    assert {i.id for i in summary.open} == {waiting, taken, breached}
    assert {i.id for i in summary.unacknowledged} == {waiting, breached}
    assert {i.id for i in summary.breached} == {breached, closed_breach}
    assert next(i for i in summary.breached if i.id == closed_breach).breach == "resolution"

    # The author is not shown their own note, and the reader not twice.
    with read_session(centre.ctx.sessions) as s:
        assert handover.note_for(s, night, None, clock.now()) is None
    clock.advance(timedelta(minutes=1))
    again = accounts.sign_in(centre.ctx, "operator1", PASSWORD["operator"])
    with read_session(centre.ctx.sessions) as s:
        assert handover.note_for(s, again.identity, again.previous_sign_in_at, clock.now()) is None


def test_an_empty_note_is_refused(centre: Centre) -> None:
    with pytest.raises(ValidationError, match="empty"):
        handover.write_note(centre.ctx, centre.signed_in("operator1"), "  ", shift_started_at=None)


def test_a_note_is_in_the_audit_trail(centre: Centre) -> None:
    from engine import audit

    handover.write_note(centre.ctx, centre.signed_in("supervisor2"), "All quiet.", shift_started_at=None)
    with read_session(centre.ctx.sessions) as s:
        (entry,) = audit.entries(s, "handover_note")
    assert entry.actor == "supervisor2" and entry.data["text"] == "All quiet."
