"""The board as an operator uses it: models pass Qt's model tester, keys and the command line act through the
engine as the signed-in operator, filters and saved views work, alerts fire for new critical incidents.
SQLite only (the change feed on both databases is in test_board_feed.py)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from PySide6.QtCore import QSettings, Qt
from pytestqt.modeltest import ModelTester
from pytestqt.qtbot import QtBot
from sqlalchemy import Engine, select

from console.alerts import AlertCenter
from console.board.model import COL, STATE_ROLE
from console.board.widget import BoardWidget
from console.services import ConsoleServices
from engine import api
from engine.context import AppContext
from engine.models import Event, Incident
from tests.console.conftest import add_incident, change_incident, show_board


@pytest.fixture
def db(sqlite_db: Engine) -> Engine:
    """These tests run on SQLite only; the change feed runs on both databases in test_board_feed.py."""
    return sqlite_db


def _board(qtbot: QtBot, services: ConsoleServices) -> BoardWidget:
    board: BoardWidget = show_board(qtbot, services)
    return board


def test_the_board_model_passes_the_model_tester_through_changes_and_filters(
    qtbot: QtBot, qtmodeltester: ModelTester, ctx: AppContext, services: ConsoleServices
) -> None:
    now = ctx.clock.now()
    ids = [
        add_incident(ctx.sessions, now, summary=f"Incident {n}", severity=sev, age=timedelta(minutes=n * 7))
        for n, sev in enumerate(["critical", "high", "medium", "low", "info"])
    ]
    add_incident(ctx.sessions, now, summary="Closed one", status="resolved", resolved_at=now)
    widget = _board(qtbot, services)
    qtmodeltester.check(widget.model)
    # Changes arriving while the tester watches must be consistent too.
    add_incident(ctx.sessions, now, summary="Arrives later", severity="critical")
    qtbot.waitUntil(lambda: widget.model.rowCount() == 7, timeout=1000)
    widget.view.selectRow(widget.model.position_of(ids[1]) or 0)
    widget.model.set_filters(severities=["critical", "high"])
    assert widget.model.rowCount() == 4  # with "Closed one", high
    assert widget.model.total_count() == 7
    assert widget.selected_ids() == [ids[1]]  # the selection stays on its incident through a filter change
    # Under a filter, a change that makes a shown row stop matching takes it off the board, one that makes
    # a loaded row match puts it on at its place in the order, and a new row that does not match waits.
    change_incident(ctx.sessions, now, ids[0], severity="low")
    change_incident(ctx.sessions, now, ids[2], severity="high")
    add_incident(ctx.sessions, now, summary="Not matching", severity="info")
    add_incident(ctx.sessions, now, summary="Late high", severity="high")
    qtbot.waitUntil(lambda: widget.model.total_count() == 9, timeout=1000)
    qtbot.waitUntil(lambda: widget.model.position_of(ids[0]) is None, timeout=1000)
    shown = [widget.model.row_at(r)["summary"] for r in range(widget.model.rowCount())]
    assert shown == ["Arrives later", "Incident 2", "Incident 1", "Late high", "Closed one"]
    assert widget.selected_ids() == [ids[1]]
    widget.model.set_filters(severities=[], statuses=["acknowledged"], show_closed=False)
    assert widget.model.rowCount() == 0
    widget.model.set_filters(statuses=["open"])
    assert [widget.model.row_at(r)["summary"] for r in range(widget.model.rowCount())][:3] == [
        "Arrives later",
        "Incident 2",
        "Incident 1",
    ]
    widget.model.set_filters(statuses=[], show_closed=True, text="")
    assert widget.model.rowCount() == 9


def test_board_shows_inserted_incidents_with_severity_in_colour_and_text(
    qtbot: QtBot, ctx: AppContext, services: ConsoleServices
) -> None:
    now = ctx.clock.now()
    fire = add_incident(
        ctx.sessions, now, summary="Structure fire, Umlazi", severity="critical", site="umlazi"
    )
    late = add_incident(
        ctx.sessions,
        now,
        summary="Burst pipe",
        severity="medium",
        age=timedelta(minutes=27),
        response_in=timedelta(minutes=15),
    )
    widget = _board(qtbot, services)
    assert widget.model.rowCount() == 2
    fire_row = widget.model.position_of(fire)
    assert fire_row is not None
    severity = widget.model.index(fire_row, COL["severity"])
    assert severity.data() == "CRITICAL"
    assert severity.data(Qt.ItemDataRole.DecorationRole) is not None  # the colour swatch
    # Sorted by severity: critical on top.
    assert widget.model.index(0, COL["summary"]).data() == "Structure fire, Umlazi"
    late_row = widget.model.position_of(late)
    assert late_row is not None
    response = widget.model.index(late_row, COL["response"])
    assert response.data() == "breached 12m"
    assert response.data(STATE_ROLE) == "breached"
    assert widget.model.unacknowledged_count() == 2


def test_pressing_a_acknowledges_the_selected_incident_as_the_signed_in_operator(
    qtbot: QtBot, ctx: AppContext, services: ConsoleServices
) -> None:
    result = api.trigger(
        ctx, policy=None, summary="Gas smell reported, Pinetown", severity="high", site="pinetown"
    )
    other = api.trigger(ctx, policy=None, summary="Water leak", severity="low")
    widget = _board(qtbot, services)
    assert widget.select_incident(result.incident_id)
    widget.view.setFocus()
    qtbot.keyClick(widget.view, Qt.Key.Key_A)

    def acknowledged() -> None:
        row = widget.model.row_for_id(result.incident_id)
        assert row is not None and row["status"] == "acknowledged"

    qtbot.waitUntil(acknowledged, timeout=2000)
    with ctx.sessions() as s:
        incident = s.get(Incident, result.incident_id)
        assert incident is not None
        assert incident.acknowledged_by == "thandi"
        assert s.get(Incident, other.incident_id).status == "open"  # type: ignore[union-attr]
    assert widget.current_id() == result.incident_id
    assert widget.model.unacknowledged_count() == 1


def test_acknowledging_several_reports_the_one_already_closed_and_acknowledges_the_rest(
    qtbot: QtBot, ctx: AppContext, services: ConsoleServices
) -> None:
    first = api.trigger(ctx, policy=None, summary="Alarm, Block A", severity="high").incident_id
    closed = api.trigger(ctx, policy=None, summary="False alarm, Block B", severity="low").incident_id
    third = api.trigger(ctx, policy=None, summary="Alarm, Block C", severity="high").incident_id
    api.resolve(ctx, closed, by="sipho")
    widget = _board(qtbot, services)
    messages: list[tuple[str, bool]] = []
    widget.message.connect(lambda text, error: messages.append((text, error)))
    qtbot.keyClicks(widget.command, f"ack {first} {closed} {third}")
    qtbot.keyClick(widget.command, Qt.Key.Key_Return)

    def both_acknowledged() -> None:
        for incident_id in (first, third):
            row = widget.model.row_for_id(incident_id)
            assert row is not None and row["status"] == "acknowledged"

    qtbot.waitUntil(both_acknowledged, timeout=2000)
    qtbot.waitUntil(lambda: any(error for _text, error in messages), timeout=2000)
    assert (f"Acknowledged #{first}, #{third}", False) in messages
    [failure] = [text for text, error in messages if error]
    assert f"#{closed}:" in failure and "resolved" in failure
    with ctx.sessions() as s:
        assert s.get(Incident, closed).status == "resolved"  # type: ignore[union-attr]
        assert s.get(Incident, first).acknowledged_by == "thandi"  # type: ignore[union-attr]


def test_typing_a_letter_in_the_search_box_does_not_act_on_incidents(
    qtbot: QtBot, ctx: AppContext, services: ConsoleServices
) -> None:
    incident_id = add_incident(ctx.sessions, ctx.clock.now(), summary="Alarm, Block A")
    widget = _board(qtbot, services)
    widget.select_incident(incident_id)
    widget.search.setFocus()
    qtbot.keyClicks(widget.search, "ar")
    qtbot.waitUntil(lambda: widget.model.filters.text == "ar", timeout=1000)
    assert widget.model.rowCount() == 1
    assert widget.services.worker.pending == 0
    with ctx.sessions() as s:
        assert s.get(Incident, incident_id).status == "open"  # type: ignore[union-attr]


def test_command_line_resolves_and_escalates_through_the_engine(
    qtbot: QtBot, ctx: AppContext, services: ConsoleServices
) -> None:
    first = api.trigger(ctx, policy=None, summary="Fallen tree on M4", severity="medium").incident_id
    widget = _board(qtbot, services)
    messages: list[tuple[str, bool]] = []
    widget.message.connect(lambda text, error: messages.append((text, error)))
    qtbot.keyClicks(widget.command, f"res {first} cleared by crew")
    qtbot.keyClick(widget.command, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: (widget.model.row_for_id(first) or {}).get("status") == "resolved", timeout=2000)
    assert widget.command.text() == ""
    # An engine refusal reaches the operator as a message, not an exception.
    qtbot.keyClicks(widget.command, f"ack {first}")
    qtbot.keyClick(widget.command, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: any(error for _t, error in messages), timeout=2000)
    assert any("cannot be acknowledged" in text for text, error in messages if error)
    qtbot.keyClicks(widget.command, "launch 12")
    qtbot.keyClick(widget.command, Qt.Key.Key_Return)
    assert "unknown command" in messages[-1][0]


def test_note_and_cancel_ask_for_text_and_reach_the_timeline(
    qtbot: QtBot, ctx: AppContext, services: ConsoleServices
) -> None:
    incident_id = api.trigger(ctx, policy=None, summary="Prank call?", severity="low").incident_id
    widget = _board(qtbot, services)
    widget.select_incident(incident_id)

    def answer(dialog: object) -> bool:
        dialog.text.setPlainText("caller hung up twice")  # type: ignore[attr-defined]
        return True

    widget.ask = answer
    widget.view.setFocus()
    qtbot.keyClick(widget.view, Qt.Key.Key_N)
    qtbot.keyClick(widget.view, Qt.Key.Key_Delete)
    qtbot.waitUntil(
        lambda: (widget.model.row_for_id(incident_id) or {}).get("status") == "cancelled", timeout=2000
    )
    with ctx.sessions() as s:
        kinds = list(s.scalars(select(Event.kind).where(Event.incident_id == incident_id)))
        assert "note" in kinds
        assert s.get(Incident, incident_id).cancel_reason == "caller hung up twice"  # type: ignore[union-attr]


def test_filters_and_saved_views(qtbot: QtBot, ctx: AppContext, services: ConsoleServices) -> None:
    now = ctx.clock.now()
    add_incident(ctx.sessions, now, summary="North fire", severity="critical", site="north")
    add_incident(ctx.sessions, now, summary="South leak", severity="low", site="south")
    add_incident(ctx.sessions, now, summary="Old closed", status="resolved", resolved_at=now, site="south")
    widget = _board(qtbot, services)
    assert widget.model.rowCount() == 3
    widget.status_filter.setCurrentIndex(1)  # open only
    assert widget.model.rowCount() == 2
    widget.severity_actions["critical"].setChecked(True)
    assert widget.model.rowCount() == 1
    widget.save_view("critical open")
    widget.severity_actions["critical"].setChecked(False)
    widget.status_filter.setCurrentIndex(0)
    assert widget.model.rowCount() == 3
    assert "critical open" in widget.saved_views()
    assert QSettings().contains("board/views/thandi")
    widget.apply_view_state(widget.saved_views()["critical open"])
    assert widget.model.rowCount() == 1
    widget.model.set_filters(severities=[], statuses=[], show_closed=True, text="south")
    assert widget.model.rowCount() == 2


def test_new_critical_incident_raises_an_alert_once_and_mute_keeps_it_quiet(
    qtbot: QtBot, ctx: AppContext, services: ConsoleServices
) -> None:
    now = ctx.clock.now()
    add_incident(ctx.sessions, now, summary="Already there", severity="critical")
    widget = _board(qtbot, services)
    alerts = AlertCenter(widget, sound=False, tray=False)
    alerts.remember(widget.model.rows(), now)
    widget.model.row_arrived.connect(alerts.consider)
    seen: list[str] = []
    alerts.alerted.connect(lambda title, _text: seen.append(title))
    fresh = add_incident(ctx.sessions, now, summary="Cardiac arrest, Durban Central", severity="critical")
    qtbot.waitUntil(lambda: len(seen) == 1, timeout=1000)
    assert seen == [f"New critical incident #{fresh}"]
    change_incident(ctx.sessions, now, fresh, summary="Cardiac arrest, Durban Central (CPR)")
    add_incident(ctx.sessions, now, summary="Low priority", severity="low")
    qtbot.waitUntil(lambda: widget.model.rowCount() == 3, timeout=1000)
    assert len(seen) == 1
    alerts.set_muted(True)
    alerts.check_deadlines(widget.model.rows(), now + timedelta(hours=1))
    assert any("Response SLA breached" in title for title in seen)  # still reported, just silent


def test_resorting_by_a_header_click_and_a_changed_row_keeps_the_operators_selection(
    qtbot: QtBot, ctx: AppContext, services: ConsoleServices
) -> None:
    now = ctx.clock.now()
    ids = [
        add_incident(ctx.sessions, now, summary=f"Incident {n}", severity=sev, age=timedelta(minutes=n))
        for n, sev in enumerate(["low", "critical", "medium", "high"])
    ]
    widget = _board(qtbot, services)
    picked = ids[2]
    row = widget.model.position_of(picked)
    assert row is not None
    widget.view.selectRow(row)

    def selected_summary() -> str:
        [index] = widget.view.selectionModel().selectedRows(COL["summary"])
        return str(index.data())

    assert selected_summary() == "Incident 2"
    # A header click re-sorts the whole table (this raised TypeError in the layout signals once).
    widget.view.horizontalHeader().sectionClicked.emit(COL["summary"])
    widget.view.sortByColumn(COL["summary"], Qt.SortOrder.DescendingOrder)
    assert [widget.model.index(r, COL["summary"]).data() for r in range(4)] == [
        "Incident 3",
        "Incident 2",
        "Incident 1",
        "Incident 0",
    ]
    assert selected_summary() == "Incident 2"
    # A change from the feed that moves a row in the sort order keeps the selection too.
    widget.view.sortByColumn(COL["severity"], Qt.SortOrder.AscendingOrder)
    change_incident(ctx.sessions, now, ids[0], severity="critical", summary="Incident 0 (upgraded)")
    qtbot.waitUntil(
        lambda: widget.model.index(1, COL["summary"]).data() == "Incident 0 (upgraded)", timeout=2000
    )
    assert selected_summary() == "Incident 2"
