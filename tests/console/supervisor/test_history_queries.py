"""engine.history: bounded, paged searches of closed incidents and the audit log, on both databases."""

from __future__ import annotations

from datetime import timedelta

from engine.context import AppContext
from engine.history import MAX_PAGE, incident_events, search_events, search_incidents
from tests.conftest import CLOCK_START
from tests.console.supervisor.conftest import add_event, add_incident

T0 = CLOCK_START


def _seed(ctx: AppContext) -> None:
    with ctx.sessions.begin() as s:
        add_incident(
            s, T0 - timedelta(days=3), summary="Fire alarm at depot", site="depot", resolved_by="alice"
        )
        add_incident(
            s, T0 - timedelta(days=2), summary="Water leak 50% wet", category="facilities", resolved_by="bob"
        )
        add_incident(s, T0 - timedelta(days=1), summary="Fire in kitchen", status="cancelled")
        add_incident(s, T0 - timedelta(hours=1), summary="Fire still open", status="open")


def test_closed_incidents_are_found_by_text_newest_first(ctx: AppContext) -> None:
    _seed(ctx)
    with ctx.sessions() as s:
        page = search_incidents(s, text="fire")
    assert [r.summary for r in page.rows] == ["Fire in kitchen", "Fire alarm at depot"]
    assert page.has_more is False


def test_incident_search_filters_by_date_range_and_actor(ctx: AppContext) -> None:
    _seed(ctx)
    with ctx.sessions() as s:
        in_range = search_incidents(
            s, since=T0 - timedelta(days=2, hours=1), until=T0 - timedelta(days=1, hours=1)
        )
        by_bob = search_incidents(s, actor="BOB")
    assert [r.summary for r in in_range.rows] == ["Water leak 50% wet"]
    assert [r.resolved_by for r in by_bob.rows] == ["bob"]


def test_like_wildcards_in_search_text_are_literal(ctx: AppContext) -> None:
    _seed(ctx)
    with ctx.sessions() as s:
        page = search_incidents(s, text="50%")
        none = search_incidents(s, text="Fire_")
    assert [r.summary for r in page.rows] == ["Water leak 50% wet"]
    assert none.rows == []


def test_incident_number_finds_that_incident(ctx: AppContext) -> None:
    _seed(ctx)
    with ctx.sessions() as s:
        first = search_incidents(s).rows[-1]
        page = search_incidents(s, text=f"#{first.id}")
    assert [r.id for r in page.rows] == [first.id]


def test_incident_pages_do_not_overlap_and_report_more(ctx: AppContext) -> None:
    with ctx.sessions.begin() as s:
        for i in range(25):
            add_incident(s, T0 - timedelta(minutes=i), summary=f"n{i}")
    with ctx.sessions() as s:
        first = search_incidents(s, limit=10)
        second = search_incidents(s, limit=10, offset=10)
        third = search_incidents(s, limit=10, offset=20)
    assert first.has_more and second.has_more and not third.has_more
    ids = [r.id for r in first.rows + second.rows + third.rows]
    assert len(ids) == len(set(ids)) == 25


def test_page_size_is_capped(ctx: AppContext) -> None:
    with ctx.sessions() as s:
        page = search_incidents(s, limit=MAX_PAGE * 10)
    assert page.limit == MAX_PAGE


def test_audit_log_filters_by_text_actor_and_date(ctx: AppContext) -> None:
    with ctx.sessions.begin() as s:
        add_event(s, T0 - timedelta(days=2), "config.saved", actor="sup1", message="policy Fire saved")
        add_event(s, T0 - timedelta(days=1), "incident.acknowledged", actor="op7", message="acknowledged")
        add_event(s, T0, "config.saved", actor="sup1", message="person alice saved")
    with ctx.sessions() as s:
        by_text = search_events(s, text="policy")
        by_actor = search_events(s, actor="sup")
        by_date = search_events(s, since=T0 - timedelta(days=1, hours=1), until=T0)
        by_kind = search_events(s, kind="config.saved")
    assert [e.message for e in by_text.rows] == ["policy Fire saved"]
    assert [e.message for e in by_actor.rows] == ["person alice saved", "policy Fire saved"]
    assert [e.kind for e in by_date.rows] == ["incident.acknowledged"]
    assert len(by_kind.rows) == 2


def test_incident_timeline_is_oldest_first(ctx: AppContext) -> None:
    with ctx.sessions.begin() as s:
        inc = add_incident(s, T0 - timedelta(hours=2))
        add_event(s, T0 - timedelta(hours=2), "incident.created", incident_id=inc.id)
        add_event(s, T0 - timedelta(hours=1), "incident.resolved", incident_id=inc.id)
        add_event(s, T0, "other")
        inc_id = inc.id
    with ctx.sessions() as s:
        events = incident_events(s, inc_id)
    assert [e.kind for e in events] == ["incident.created", "incident.resolved"]
