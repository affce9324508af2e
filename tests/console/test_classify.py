"""Category and the sensitive flag in the console: New incident opens a sensitive incident; K on the board, the
docked detail's Classify… button and the pop-out change an open incident's category (its SLA countdowns
follow on the board and in the detail) or its flag, as the signed-in person; refusals reach the status bar.
SQLite only."""

from __future__ import annotations

from typing import Any

import pytest
from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot
from sqlalchemy import Engine, select

from console.board.model import COL
from console.board.widget import BoardWidget
from console.detail import IncidentDetail
from console.dialogs import ClassifyDialog, NewIncidentDialog
from console.services import ConsoleServices
from engine import api
from engine.context import AppContext
from engine.models import Event, Incident, SlaConfig
from tests.console.conftest import show_board


@pytest.fixture
def db(sqlite_db: Engine) -> Engine:
    return sqlite_db


@pytest.fixture
def water_and_roads(ctx: AppContext) -> None:
    """Water is answered within 30 minutes, roads within the hour."""
    with ctx.sessions.begin() as s:
        for category, minutes in (("water", 30), ("roads", 60)):
            s.add(
                SlaConfig(
                    site="", category=category, response_minutes=minutes, resolution_minutes=8 * minutes
                )
            )


def _stored(ctx: AppContext, incident_id: int) -> tuple[str, bool]:
    """The incident's category and sensitive flag as the database has them."""
    with ctx.sessions() as s:
        row = s.execute(select(Incident.category, Incident.sensitive).where(Incident.id == incident_id)).one()
        return str(row.category), bool(row.sensitive)


def _response_cell(board: BoardWidget, incident_id: int) -> str:
    position = board.model.position_of(incident_id)
    assert position is not None
    return str(board.model.data(board.model.index(position, COL["response"])))


def _answer(category: str | None = None, sensitive: bool | None = None) -> Any:
    """Stands in for the operator at the Classify dialog: changes what is given and saves."""
    seen: list[ClassifyDialog] = []

    def ask(dialog: ClassifyDialog) -> bool:
        seen.append(dialog)
        if category is not None:
            dialog.category.setCurrentText(category)
        if sensitive is not None:
            dialog.sensitive.setChecked(sensitive)
        return True

    ask.seen = seen  # type: ignore[attr-defined]
    return ask


def test_new_incident_opens_a_sensitive_incident_the_board_does_not_monitor(
    qtbot: QtBot, ctx: AppContext, services: ConsoleServices
) -> None:
    board = show_board(qtbot, services)
    dialog = NewIncidentDialog({"categories": ["general", "water"]})
    qtbot.addWidget(dialog)
    assert not dialog.sensitive.isChecked()  # an incident is monitored unless the operator says otherwise
    assert "no SLA monitoring" in dialog.sensitive.text()
    dialog.summary.setText("Caller reports an assault")
    dialog.sensitive.setChecked(True)
    created: list[int] = []
    board.actions_.created.connect(created.append)
    board.actions_.trigger(dialog.values())
    qtbot.waitUntil(lambda: bool(created), timeout=5000)
    assert _stored(ctx, created[0]) == ("general", True)
    assert api.show_incident(ctx, created[0])["response_due_at"] is None
    qtbot.waitUntil(lambda: board.current_id() == created[0], timeout=5000)  # the board selects it
    assert _response_cell(board, created[0]) == "not monitored"


def test_k_on_the_board_changes_the_category_and_the_countdowns_follow_on_board_and_detail(
    qtbot: QtBot, ctx: AppContext, services: ConsoleServices, water_and_roads: None
) -> None:
    incident_id = api.trigger(ctx, policy=None, summary="Burst pipe", category="water").incident_id
    board = show_board(qtbot, services, active=True)
    detail = IncidentDetail(services)
    qtbot.addWidget(detail)
    detail.show()
    board.current_changed.connect(detail.show_incident)
    board.activateWindow()
    qtbot.waitUntil(board.isActiveWindow, timeout=2000)
    board.select_incident(incident_id)
    qtbot.waitUntil(lambda: detail.detail.get("id") == incident_id, timeout=3000)
    assert _response_cell(board, incident_id) == "30m left"
    assert detail.fields["response"].text().startswith("30m left")
    board.ask = _answer(category="roads")
    messages: list[str] = []
    board.message.connect(lambda text, _error: messages.append(text))
    board.view.setFocus()
    qtbot.keyClick(board.view, Qt.Key.Key_K)
    qtbot.waitUntil(lambda: _stored(ctx, incident_id)[0] == "roads", timeout=3000)
    qtbot.waitUntil(lambda: _response_cell(board, incident_id) == "1h 00m left", timeout=3000)
    qtbot.waitUntil(lambda: detail.fields["response"].text().startswith("1h 00m left"), timeout=3000)
    assert "/ roads" in detail.fields["where"].text()
    assert any(f"#{incident_id}" in m and "category roads" in m for m in messages), messages
    with ctx.sessions() as s:
        actors = s.scalars(select(Event.actor).where(Event.kind == "category_changed")).all()
    assert actors == ["thandi"]  # the signed-in person, not "console"


def test_the_docked_detail_marks_an_incident_sensitive_and_shows_it(
    qtbot: QtBot, ctx: AppContext, services: ConsoleServices
) -> None:
    from console.mainwindow import MainWindow

    incident_id = api.trigger(ctx, policy=None, summary="Assault, Block D").incident_id
    main = MainWindow(services, sound=False, start_feed=False)
    qtbot.addWidget(main)
    main.show()
    main.board.feed.start()
    qtbot.waitUntil(lambda: main.board.feed.is_loaded, timeout=3000)
    main.open_detail(incident_id, False)
    qtbot.waitUntil(lambda: main.detail.detail.get("id") == incident_id, timeout=3000)
    assert main.detail.classify.isVisible()
    main.board.ask = _answer(sensitive=True)
    qtbot.mouseClick(main.detail.classify, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: _stored(ctx, incident_id)[1], timeout=3000)
    [dialog] = main.board.ask.seen  # type: ignore[attr-defined]
    assert dialog.category.currentText() == "general"  # it opened on the incident's own category
    qtbot.waitUntil(lambda: "sensitive" in main.detail.fields["where"].text(), timeout=3000)
    assert main.detail.fields["response"].text() == "not monitored"
    qtbot.waitUntil(lambda: _response_cell(main.board, incident_id) == "not monitored", timeout=3000)
    main.close()


def test_the_pop_out_classifies_with_k_and_a_refusal_reaches_its_status_bar(
    qtbot: QtBot, ctx: AppContext, services: ConsoleServices
) -> None:
    from console.mainwindow import MainWindow

    open_id = api.trigger(ctx, policy=None, summary="Leak", category="water", key="leak").incident_id
    closed_id = api.trigger(ctx, policy=None, summary="Old leak", key="old").incident_id
    api.resolve(ctx, closed_id, by="sipho")
    main = MainWindow(services, sound=False)
    qtbot.addWidget(main)
    main.show()
    qtbot.waitUntil(lambda: main.board.feed.is_loaded, timeout=3000)
    main.open_detail(open_id, True)
    [window] = main._detail_windows
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow, timeout=2000)
    assert not window.detail.classify.isVisible()  # the pop-out's own row of actions has it, with its key
    assert window.findChild(type(window.detail.classify), "popout_classify") is not None
    main.board.ask = _answer(category="roads")
    qtbot.keyClick(window, Qt.Key.Key_K)
    qtbot.waitUntil(lambda: _stored(ctx, open_id)[0] == "roads", timeout=3000)
    qtbot.waitUntil(lambda: f"#{open_id}" in window.statusBar().currentMessage(), timeout=3000)
    window.close()
    qtbot.waitUntil(lambda: main._detail_windows == [], timeout=2000)

    main.open_detail(closed_id, True)
    [window] = main._detail_windows
    main.board.ask = _answer(sensitive=True)
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow, timeout=2000)
    qtbot.keyClick(window, Qt.Key.Key_K)
    qtbot.waitUntil(lambda: "closed incident" in window.statusBar().currentMessage(), timeout=3000)
    assert _stored(ctx, closed_id) == ("general", False)
    main.close()


def test_an_unchanged_classification_sends_nothing_and_says_so(
    qtbot: QtBot, ctx: AppContext, services: ConsoleServices
) -> None:
    incident_id = api.trigger(ctx, policy=None, summary="Leak", category="water").incident_id
    board = show_board(qtbot, services, active=True)
    board.select_incident(incident_id)
    board.ask = _answer()
    messages: list[str] = []
    board.message.connect(lambda text, _error: messages.append(text))
    board.classify_selected()
    assert messages == [f"Classify: nothing changed — #{incident_id} unchanged"]
    dialog = ClassifyDialog({"categories": ["water"]}, title="#1", category="water", sensitive=False)
    qtbot.addWidget(dialog)
    dialog.category.setCurrentText("  ")
    dialog.accept()
    assert dialog.result() != dialog.DialogCode.Accepted and "a category is needed" in dialog.error.text()


def test_the_command_line_classifies_as_the_signed_in_person(
    qtbot: QtBot, ctx: AppContext, services: ConsoleServices, water_and_roads: None
) -> None:
    """`classify 12 roads`, `classify 12 sensitive`, `cl 12 roads not-sensitive`; `classify 12` alone opens
    the K dialog on that incident."""
    incident_id = api.trigger(ctx, policy=None, summary="Burst pipe", category="water").incident_id
    board = show_board(qtbot, services, active=True)
    messages: list[str] = []
    board.message.connect(lambda text, _error: messages.append(text))

    board.command.setText(f"classify {incident_id} roads")
    board.run_command_line()
    qtbot.waitUntil(lambda: _stored(ctx, incident_id) == ("roads", False), timeout=3000)
    qtbot.waitUntil(lambda: _response_cell(board, incident_id) == "1h 00m left", timeout=3000)
    qtbot.waitUntil(lambda: any("category roads" in m for m in messages), timeout=3000)
    assert any(f"#{incident_id}" in m for m in messages if "category roads" in m)

    board.command.setText(f"classify #{incident_id} sensitive")
    board.run_command_line()
    qtbot.waitUntil(lambda: _stored(ctx, incident_id) == ("roads", True), timeout=3000)
    qtbot.waitUntil(lambda: _response_cell(board, incident_id) == "not monitored", timeout=3000)

    board.command.setText(f"cl {incident_id} water not-sensitive")
    board.run_command_line()
    qtbot.waitUntil(lambda: _stored(ctx, incident_id) == ("water", False), timeout=3000)
    with ctx.sessions() as s:
        actors = set(s.scalars(select(Event.actor).where(Event.kind == "category_changed")))
    assert actors == {"thandi"}

    # The dialog opens on the row as the board has it: wait for the board to have the last change.
    qtbot.waitUntil(
        lambda: (board.model.row_for_id(incident_id) or {}).get("category") == "water", timeout=3000
    )
    board.ask = _answer(category="roads")
    board.command.setText(f"classify {incident_id}")
    board.run_command_line()
    [dialog] = board.ask.seen  # type: ignore[attr-defined]
    assert dialog.category.currentText() == "roads"  # it opened on the incident, then the operator chose
    qtbot.waitUntil(lambda: _stored(ctx, incident_id)[0] == "roads", timeout=3000)


def test_the_command_line_asks_the_same_rule_book_as_k(
    qtbot: QtBot, ctx: AppContext, services: ConsoleServices, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the rule book saying only administrators classify, the signed-in supervisor is refused by K and
    by `classify` alike, with the same words, and nothing changes."""
    import dataclasses

    from engine import permissions
    from engine.permissions import Action

    rule = permissions.RULE_OF[Action.CLASSIFY]
    monkeypatch.setitem(permissions.RULE_OF, Action.CLASSIFY, dataclasses.replace(rule, least="admin"))
    incident_id = api.trigger(ctx, policy=None, summary="Burst pipe", category="water").incident_id
    board = show_board(qtbot, services, active=True)
    board.select_incident(incident_id)
    refusals: list[str] = []
    board.message.connect(lambda text, error: error and refusals.append(text))
    board.ask = _answer(category="roads")
    board.classify_selected()
    board.command.setText(f"classify {incident_id} roads")
    board.run_command_line()
    qtbot.waitUntil(lambda: len(refusals) == 2, timeout=3000)
    assert refusals[0] == refusals[1] and "admin" in refusals[0], refusals
    assert _stored(ctx, incident_id) == ("water", False)
