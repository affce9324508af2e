"""The history view searches on the worker and pages through closed incidents and the audit log."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from PySide6.QtCore import QDate

from console.history import HistoryWidget
from console.history.records import Column, RecordTableModel
from tests.conftest import CLOCK_START
from tests.console.supervisor.conftest import add_event, add_incident

T0 = CLOCK_START


def _search(qtbot: Any, widget: HistoryWidget) -> None:
    with qtbot.waitSignal(widget.search_finished, timeout=5000):
        widget.search()


def _seed(services: Any) -> None:
    with services.ctx.sessions.begin() as s:
        add_incident(s, T0 - timedelta(days=40), summary="Old fire", resolved_by="alice")
        add_incident(s, T0 - timedelta(days=2), summary="Fire at depot", resolved_by="alice")
        add_incident(s, T0 - timedelta(days=1), summary="Flooded road", resolved_by="bob")
        add_incident(s, T0 - timedelta(hours=1), summary="Fire still burning", status="open")
        add_event(s, T0 - timedelta(days=1), "config.saved", actor="sup1", message="policy Fire saved")
        add_event(s, T0 - timedelta(hours=2), "incident.acknowledged", actor="op2", message="acknowledged")


def test_history_search_filters_closed_incidents_by_text_date_and_actor(qtbot: Any, supervisor: Any) -> None:
    _seed(supervisor)
    widget = HistoryWidget(supervisor)
    qtbot.addWidget(widget)
    widget.date_from.setDate(QDate(2026, 2, 1))
    widget.date_to.setDate(QDate(2026, 3, 2))

    _search(qtbot, widget)
    assert [r.summary for r in widget.incidents.rows()] == ["Flooded road", "Fire at depot"]

    widget.text.setText("fire")
    _search(qtbot, widget)
    assert [r.summary for r in widget.incidents.rows()] == ["Fire at depot"]

    widget.text.setText("")
    widget.actor.setText("bob")
    _search(qtbot, widget)
    assert [r.summary for r in widget.incidents.rows()] == ["Flooded road"]

    widget.actor.setText("")
    widget.date_from.setDate(QDate(2026, 1, 1))
    widget.text.setText("fire")
    _search(qtbot, widget)
    assert [r.summary for r in widget.incidents.rows()] == ["Fire at depot", "Old fire"]


def test_history_audit_log_tab_filters_by_actor(qtbot: Any, supervisor: Any) -> None:
    _seed(supervisor)
    widget = HistoryWidget(supervisor)
    qtbot.addWidget(widget)
    widget.date_from.setDate(QDate(2026, 2, 1))
    widget.actor.setText("sup1")
    with qtbot.waitSignal(widget.search_finished, timeout=5000):
        widget.tabs.setCurrentIndex(1)
    assert [e.message for e in widget.events.rows()] == ["policy Fire saved"]


def test_history_pages_through_many_incidents(qtbot: Any, supervisor: Any) -> None:
    with supervisor.ctx.sessions.begin() as s:
        for i in range(230):
            add_incident(s, T0 - timedelta(minutes=i + 1), summary=f"n{i}")
    widget = HistoryWidget(supervisor)
    qtbot.addWidget(widget)
    _search(qtbot, widget)
    assert widget.incidents.rowCount() == 100 and widget.next_button.isEnabled()
    assert not widget.prev_button.isEnabled()
    for _ in range(2):
        with qtbot.waitSignal(widget.search_finished, timeout=5000):
            widget.next_button.click()
    assert widget.incidents.rowCount() == 30
    assert not widget.next_button.isEnabled()
    assert widget.incidents.rows()[-1].summary == "n229"


def test_record_table_model_passes_qt_model_tester(qtmodeltester: Any) -> None:
    model: RecordTableModel[tuple[int, str]] = RecordTableModel(
        [Column("n", lambda r: r[0], numeric=True), Column("name", lambda r: r[1])]
    )
    model.set_rows([(1, "a"), (2, "b"), (3, "c")])
    qtmodeltester.check(model)


def test_history_models_pass_qt_model_tester(qtbot: Any, qtmodeltester: Any, supervisor: Any) -> None:
    _seed(supervisor)
    widget = HistoryWidget(supervisor)
    qtbot.addWidget(widget)
    widget.date_from.setDate(QDate(2026, 2, 1))
    _search(qtbot, widget)
    qtmodeltester.check(widget.incidents)
    with qtbot.waitSignal(widget.search_finished, timeout=5000):
        widget.tabs.setCurrentIndex(1)
    qtmodeltester.check(widget.events)
