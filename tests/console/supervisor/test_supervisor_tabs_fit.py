"""The supervisor tabs at 1600×1000: Statistics and History show the last 30 days as soon as they open, times
are shown to the second in columns wide enough for them, and the statistics tables have room for rows."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication, QScrollArea, QTableView
from pytestqt.qtbot import QtBot

from console.mainwindow import MainWindow
from engine import audit
from engine.models import Page, Person
from tests.conftest import CLOCK_START
from tests.console.supervisor.conftest import add_event, add_incident

T0 = CLOCK_START


def _seed(services: Any) -> None:
    with services.ctx.sessions.begin() as s:
        people = [
            Person(handle=f"p{n}", name=f"Person {n:02d}", phone=f"+2782123450{n % 10}") for n in range(14)
        ]
        s.add_all(people)
        s.flush()
        for n in range(14):
            created = T0 - timedelta(days=n + 1, seconds=17 * n + 7)
            incident = add_incident(
                s, created, summary=f"Fire {n}", resolved_at=created + timedelta(minutes=40)
            )
            s.add(Page(incident_id=incident.id, person_id=people[n].id, status="confirmed", level=1))
            add_event(s, created, "sla_breached", message=f"Response deadline missed on {n}")


def _window(qtbot: QtBot, services: Any) -> MainWindow:
    window = MainWindow(services, sound=False, start_feed=False)
    qtbot.addWidget(window)
    window.show()
    window.resize(1600, 1000)
    return window


def _open(window: MainWindow, title: str) -> Any:
    index = next(i for i in range(window.tabs.count()) if window.tabs.tabText(i) == title)
    window.tabs.setCurrentIndex(index)
    page = window.tabs.currentWidget()
    return page.widget() if isinstance(page, QScrollArea) else page


def _uncut(view: QTableView, column: int) -> bool:
    """Every shown text of the column fits its width (the view's own measure of what its cells need)."""
    return view.sizeHintForColumn(column) <= view.columnWidth(column)


def test_history_opens_with_the_last_30_days_to_the_second_and_uncut(
    qtbot: QtBot, supervisor: Any, styled: QApplication
) -> None:
    _seed(supervisor)
    window = _window(qtbot, supervisor)
    history = _open(window, "History")
    qtbot.waitUntil(lambda: history.incidents.rowCount() == 14, timeout=5000)  # nobody pressed Search
    first = history.incidents.record(0)
    shown = history.incidents.data(history.incidents.index(0, 1))
    assert shown == first.created_at.astimezone().strftime("%Y-%m-%d %H:%M:%S")
    for column in (1, 9):  # Created, Closed
        assert _uncut(history.incident_view, column), history.incidents.headerData(
            column, Qt.Orientation.Horizontal
        )
    with qtbot.waitSignal(history.search_finished, timeout=5000):
        history.tabs.setCurrentIndex(1)
    assert history.events.rowCount() == 14
    assert _uncut(history.event_view, 0)  # When
    window.close()


def test_audit_times_are_to_the_second_and_uncut(qtbot: QtBot, supervisor: Any, styled: QApplication) -> None:
    at = supervisor.ctx.clock.now() - timedelta(minutes=5, seconds=13)
    with supervisor.ctx.sessions.begin() as s:
        audit.record(s, at, "naledi", "config_updated", object_kind="policy", object_name="fire")
    window = _window(qtbot, supervisor)
    view = _open(window, "Audit")
    qtbot.waitUntil(lambda: view.entries.rowCount() == 1, timeout=5000)
    assert view.entries.display_rows()[0][0] == at.astimezone().strftime("%Y-%m-%d %H:%M:%S")
    assert _uncut(view.entry_view, 0)
    window.close()


def test_statistics_open_computed_with_room_for_the_tables(
    qtbot: QtBot, supervisor: Any, styled: QApplication
) -> None:
    _seed(supervisor)
    window = _window(qtbot, supervisor)
    stats = _open(window, "Statistics")
    qtbot.waitUntil(lambda: stats.result is not None, timeout=5000)  # nobody pressed Show
    assert stats.tiles["incidents"].value.text() == "14"
    stats.tables.setCurrentIndex(stats.tables.indexOf(stats.tables.findChild(QTableView, "peopleTable")))
    view = stats.tables.currentWidget()
    assert view.model().rowCount() == 14
    rows_shown = view.viewport().height() // view.verticalHeader().defaultSectionSize()
    assert rows_shown >= 12
    window.close()
