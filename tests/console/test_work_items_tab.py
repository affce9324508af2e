"""The Work items tab as an operator uses it: open / done / expired / all and Mine; N adds an item, G assigns
it, D marks it done (D again to confirm), Enter opens its incident; past the limit amber, past twice it red;
MainWindow.open_item goes to an item (a notification's link). SQLite (the engine's items are tested on both)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QColor
from pytestqt.qtbot import QtBot
from sqlalchemy import Engine

from console.items.widget import AssignItemDialog, NewItemDialog, WorkItemsWidget
from console.mainwindow import MainWindow
from console.services import ConsoleServices, SignedIn
from console.theme import current_palette
from engine import items
from engine.context import AppContext
from engine.db import write_session
from engine.models import Person
from engine.permissions import system
from tests.console.conftest import add_incident


@pytest.fixture
def db(sqlite_db: Engine) -> Engine:
    return sqlite_db


@pytest.fixture
def people(ctx: AppContext) -> dict[str, int]:
    with write_session(ctx.sessions) as s:
        found = {}
        for handle, name in (("thandi", "Thandi Nkosi"), ("sipho", "Sipho Dlamini")):
            person = Person(handle=handle, name=name, phone="+27821234567")
            s.add(person)
            s.flush()
            found[handle] = person.id
        return found


@pytest.fixture
def thandi(ctx: AppContext, people: dict[str, int], qapp: Any) -> Iterator[ConsoleServices]:
    """Thandi's console: her account is linked to her person record (Mine)."""
    services = ConsoleServices(
        ctx, SignedIn(None, "thandi", "Thandi Nkosi", "operator", person_id=people["thandi"])
    )
    yield services
    services.shutdown()


def _shown(widget: WorkItemsWidget) -> list[str]:
    return [r.title for r in widget.model.rows()]


def _widget(qtbot: QtBot, services: ConsoleServices) -> WorkItemsWidget:
    widget = WorkItemsWidget(services)
    qtbot.addWidget(widget)
    widget.show()
    widget.activateWindow()
    qtbot.waitUntil(widget.isActiveWindow, timeout=2000)
    qtbot.waitUntil(lambda: widget.status.text() != "", timeout=5000)
    qtbot.waitUntil(lambda: bool(widget.choices), timeout=5000)
    widget.view.setFocus()
    return widget


def test_n_g_and_d_add_assign_and_complete_an_item_from_the_keyboard(
    qtbot: QtBot, ctx: AppContext, thandi: ConsoleServices, people: dict[str, int]
) -> None:
    incident = add_incident(ctx.sessions, ctx.clock.now(), summary="Smoke, Block C")
    widget = _widget(qtbot, thandi)
    assert widget.status.text() == "No open items."

    def new_item(dialog: NewItemDialog) -> bool:
        dialog.title.setText("Verify the isolation")
        dialog.incident.setText(f"#{incident}")
        dialog.assignee.setCurrentIndex(dialog.assignee.findData("sipho"))
        dialog.limit.setText("10m")
        return True

    widget.ask = new_item
    with qtbot.waitSignal(widget.acted, timeout=5000) as added:
        qtbot.keyClick(widget.view, Qt.Key.Key_N)
    assert added.args[0].startswith("Work item ") and "Verify the isolation — due " in added.args[0]
    qtbot.waitUntil(lambda: _shown(widget) == ["Verify the isolation"], timeout=5000)
    row = dict(zip([c.header for c in widget.model.columns()], widget.model.display_rows()[0], strict=True))
    assert (row["#"], row["Assignee"], row["Limit"], row["Left"]) == (
        str(incident),
        "Sipho Dlamini",
        "10m",
        "10m left",
    )
    item_id = widget.current_id()
    assert item_id is not None

    widget.ask = lambda d: (
        (isinstance(d, AssignItemDialog) and d.person.setCurrentIndex(d.person.findData("thandi"))) or True
    )
    with qtbot.waitSignal(widget.acted, timeout=5000) as assigned:
        qtbot.keyClick(widget.view, Qt.Key.Key_G)
    assert assigned.args[0] == f"Work item {item_id} assigned to Thandi Nkosi"
    qtbot.waitUntil(lambda: widget.model.rows()[0].assignee == "thandi", timeout=5000)

    asked: list[str] = []
    widget.ask = lambda d: (asked.append(d.windowTitle()), False)[1]  # Esc: nothing happens
    qtbot.keyClick(widget.view, Qt.Key.Key_D)
    assert asked == [f"Item {item_id} done?"] and widget.status.text().startswith("Done: nothing changed")
    widget.ask = lambda d: True
    with qtbot.waitSignal(widget.acted, timeout=5000) as done:
        qtbot.keyClick(widget.view, Qt.Key.Key_D)
    assert done.args[0] == f"Work item {item_id} done"
    qtbot.waitUntil(lambda: _shown(widget) == [], timeout=5000)  # open items only
    widget.shown.setCurrentIndex(widget.shown.findText("Done"))
    qtbot.waitUntil(lambda: _shown(widget) == ["Verify the isolation"], timeout=5000)
    widget.view.setFocus()
    with qtbot.waitSignal(widget.failed, timeout=5000) as again:
        qtbot.keyClick(widget.view, Qt.Key.Key_D)
    assert again.args[0] == f"Work item {item_id} is done already"


def test_the_new_item_dialog_and_the_engine_refuse_what_they_cannot_take(
    qtbot: QtBot, ctx: AppContext, thandi: ConsoleServices
) -> None:
    widget = _widget(qtbot, thandi)
    dialog = NewItemDialog(widget.choices, widget)
    qtbot.addWidget(dialog)
    dialog.title.setText("Call the caretaker")
    dialog.limit.setText("soon")
    dialog.accept()
    assert dialog.result() != dialog.DialogCode.Accepted and "'soon' is not a duration" in dialog.error.text()

    def unknown_incident(d: NewItemDialog) -> bool:
        d.title.setText("Call the caretaker")
        d.incident.setText("999")
        return True

    widget.ask = unknown_incident
    with qtbot.waitSignal(widget.failed, timeout=5000) as refused:
        widget.new_button.click()
    assert "999" in refused.args[0]
    assert widget.status.text() == "⚠ " + refused.args[0]


def test_mine_and_the_colours_of_an_item_past_its_limit(
    qtbot: QtBot, ctx: AppContext, thandi: ConsoleServices, people: dict[str, int]
) -> None:
    who = system("setup")
    items.create_item(ctx, who, title="Thandi's check", time_limit_seconds=600, assignee="thandi")
    items.create_item(ctx, who, title="Sipho's check", time_limit_seconds=3600, assignee="sipho")
    widget = _widget(qtbot, thandi)
    assert _shown(widget) == ["Thandi's check", "Sipho's check"]  # soonest due first
    widget.mine.setChecked(True)
    qtbot.waitUntil(lambda: _shown(widget) == ["Thandi's check"], timeout=5000)
    assert widget.status.text() == "1 open item(s) of yours"

    def colour() -> Any:
        return widget.model.data(widget.model.index(0, 1), Qt.ItemDataRole.ForegroundRole)

    left = [c.header for c in widget.model.columns()].index("Left")
    assert colour() is None
    ctx.clock.advance(timedelta(minutes=11))  # type: ignore[attr-defined]
    assert colour() == QColor(current_palette().warning)
    assert widget.model.display_rows()[0][left] == "overdue 1m"
    ctx.clock.advance(timedelta(minutes=10))  # type: ignore[attr-defined]
    assert colour() == QColor(current_palette().breached)


def test_an_operator_without_a_person_record_cannot_tick_mine(
    qtbot: QtBot, services: ConsoleServices
) -> None:
    widget = WorkItemsWidget(services)
    qtbot.addWidget(widget)
    assert not widget.mine.isEnabled() and "not linked to a person" in widget.mine.toolTip()


def test_open_item_goes_to_the_item_and_enter_to_its_incident(
    qtbot: QtBot, ctx: AppContext, thandi: ConsoleServices, people: dict[str, int]
) -> None:
    incident = add_incident(ctx.sessions, ctx.clock.now(), summary="Burst pipe, Block D")
    who = system("setup")
    first = items.create_item(ctx, who, title="Shut the valve", time_limit_seconds=600, incident=incident)
    done = items.create_item(ctx, who, title="Call the plumber", time_limit_seconds=600)
    items.complete_item(ctx, who, done.id)
    window = MainWindow(thandi, sound=False)
    qtbot.addWidget(window)
    window.show()
    qtbot.waitUntil(lambda: window.board.feed.is_loaded, timeout=5000)
    window.open_item(done.id)  # done: not among the open items the tab starts with
    assert window.tabs.tabText(window.tabs.currentIndex()) == "Work items"
    widget = window.tabs.currentWidget().widget()
    assert isinstance(widget, WorkItemsWidget)
    qtbot.waitUntil(lambda: widget.current_id() == done.id, timeout=5000)
    assert widget.shown.currentText() == "All"
    window.open_item(first.id)
    assert widget.current_id() == first.id
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow, timeout=2000)
    widget.view.setFocus()
    qtbot.keyClick(widget.view, Qt.Key.Key_Return)
    assert window.tabs.currentIndex() == 0 and window.board.current_id() == incident
    qtbot.waitUntil(lambda: window.detail.incident_id == incident, timeout=2000)
    window.close()


def test_esc_and_a_picked_filter_give_the_keys_back_to_the_table(
    qtbot: QtBot, ctx: AppContext, thandi: ConsoleServices
) -> None:
    widget = _widget(qtbot, thandi)
    widget.shown.setFocus()
    qtbot.waitUntil(widget.shown.hasFocus, timeout=2000)
    widget.shown.activated.emit(1)  # "Done" picked from the list
    assert widget.view.hasFocus()
    widget.mine.setFocus()
    qtbot.waitUntil(widget.mine.hasFocus, timeout=2000)
    qtbot.keyClick(widget.mine, Qt.Key.Key_Escape)
    assert widget.view.hasFocus()
