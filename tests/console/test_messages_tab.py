"""The Messages tab as an operator uses it: every message in operators' words and to the second, the filters,
More, R to retry a failed message, S to send one again on another channel (with the engine's refusals in the
status bar), Enter to open the incident on the board. SQLite (the engine's log is tested on both databases)."""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot
from sqlalchemy import Engine

from console.history.timerange import to_qdatetime
from console.mainwindow import MainWindow
from console.messages.widget import ChannelChooser, MessagesWidget
from console.services import ConsoleServices
from engine.context import AppContext
from engine.db import write_session
from engine.models import OutboxMessage, Person
from tests.console.conftest import add_incident


@pytest.fixture
def db(sqlite_db: Engine) -> Engine:
    return sqlite_db


def _add(ctx: AppContext, person_id: int | None, **fields: Any) -> int:
    now = ctx.clock.now()
    values: dict[str, Any] = {
        "idempotency_key": f"m-{now.timestamp()}-{fields.get('channel', 'sms')}",
        "kind": "page",
        "person_id": person_id,
        "channel": "sms",
        "address": "+27821234567",
        "subject": "Smoke, Block C",
        "body": "Smoke, Block C",
        "status": "failed",
        "created_at": now,
        "updated_at": now,
    }
    values.update(fields)
    with write_session(ctx.sessions) as s:
        row = OutboxMessage(**values)
        s.add(row)
        s.flush()
    ctx.clock.advance(timedelta(seconds=7))  # type: ignore[attr-defined]
    return int(row.id)


@pytest.fixture
def log(ctx: AppContext) -> dict[str, int]:
    """Thandi's failed SMS, Sipho's delivered (priced) one, both about an incident; an e-mail notice to
    Thandi about nothing in particular, still waiting; a status update to a reporter."""
    ctx.settings.simulated_channels = ["sms", "email"]  # a rehearsal on these two; voice is not set up
    with write_session(ctx.sessions) as s:
        thandi = Person(
            handle="thandi", name="Thandi Nkosi", phone="+27821234567", email="thandi@example.org"
        )
        sipho = Person(handle="sipho", name="Sipho Dlamini", phone="+27831234567")
        s.add_all([thandi, sipho])
        s.flush()
        people = {"thandi": thandi.id, "sipho": sipho.id}
    incident = add_incident(ctx.sessions, ctx.clock.now(), summary="Smoke, Block C")
    return {
        "incident": incident,
        "failed": _add(
            ctx, people["thandi"], incident_id=incident, level=1, error_code="30003", error_text="Unreachable"
        ),
        "delivered": _add(
            ctx,
            people["sipho"],
            incident_id=incident,
            address="+27831234567",
            status="delivered",
            provider_id="SM123",
            price=Decimal("0.04500"),
            currency="USD",
        ),
        "notice": _add(
            ctx,
            people["thandi"],
            kind="notice",
            channel="email",
            address="thandi@example.org",
            status="pending",
        ),
        "reporter": _add(
            ctx, None, kind="reporter_update", incident_id=incident, address="+27841234567", status="sent"
        ),
    }


def _widget(qtbot: QtBot, services: ConsoleServices) -> MessagesWidget:
    widget = MessagesWidget(services)
    qtbot.addWidget(widget)
    qtbot.waitUntil(lambda: widget.status.text() not in ("", "Searching…"), timeout=5000)
    return widget


def _search(qtbot: QtBot, widget: MessagesWidget, start: Any = None) -> None:
    with qtbot.waitSignal(widget.loaded, timeout=5000):
        (start or widget.search)()


def _column(widget: MessagesWidget, header: str) -> list[str]:
    at = [c.header for c in widget.model.columns()].index(header)
    return [row[at] for row in widget.model.display_rows()]


def test_every_message_newest_first_in_operators_words_to_the_second_and_filtered(
    qtbot: QtBot, ctx: AppContext, services: ConsoleServices, log: dict[str, int]
) -> None:
    widget = _widget(qtbot, services)
    assert [r.id for r in widget.model.rows()] == [
        log["reporter"],
        log["notice"],
        log["delivered"],
        log["failed"],
    ]
    created = {r.id: r.created_at for r in widget.model.rows()}
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", t) for t in _column(widget, "When"))
    assert _column(widget, "What") == [
        "Status update to the reporter",
        "Notice to a person paged",
        "Page",
        "Page",
    ]
    assert _column(widget, "Status") == ["sent", "waiting to send", "delivered", "failed"]
    assert _column(widget, "Person") == ["", "Thandi Nkosi", "Sipho Dlamini", "Thandi Nkosi"]
    assert _column(widget, "#")[2:] == [str(log["incident"])] * 2
    assert _column(widget, "Cost")[2] == "0.045 USD" and _column(widget, "Provider id")[2] == "SM123"
    assert _column(widget, "Error")[3] == "30003 Unreachable"

    widget.status_filter.setCurrentIndex(widget.status_filter.findData("failed"))
    qtbot.waitUntil(lambda: [r.id for r in widget.model.rows()] == [log["failed"]], timeout=5000)
    widget.status_filter.setCurrentIndex(0)
    widget.channel_filter.setCurrentIndex(widget.channel_filter.findData("email"))
    qtbot.waitUntil(lambda: [r.id for r in widget.model.rows()] == [log["notice"]], timeout=5000)
    widget.channel_filter.setCurrentIndex(0)
    qtbot.waitUntil(lambda: widget.model.rowCount() == 4, timeout=5000)
    widget.person.setEditText("Sipho Dlamini (sipho)")  # the name as listed, or a handle typed
    _search(qtbot, widget)
    assert [r.id for r in widget.model.rows()] == [log["delivered"]]
    widget.person.setEditText("nobody")
    _search(qtbot, widget)
    assert "no person with handle 'nobody'" in widget.status.text()
    widget.person.setEditText("")
    widget.incident.setText(f"#{log['incident']}")
    _search(qtbot, widget)
    assert {r.id for r in widget.model.rows()} == {log["failed"], log["delivered"], log["reporter"]}
    widget.incident.setText("Block C")  # refused, naming the filter: no search with it ignored
    _search(qtbot, widget)
    assert widget.status.text() == "⚠ Incident # must be a number, not 'Block C'"
    widget.incident.clear()
    widget.range.since.setDateTime(to_qdatetime(created[log["notice"]]))  # from the notice on
    _search(qtbot, widget)
    assert [r.id for r in widget.model.rows()] == [log["reporter"], log["notice"]]


def test_more_adds_the_next_older_messages(
    qtbot: QtBot,
    ctx: AppContext,
    services: ConsoleServices,
    log: dict[str, int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("console.messages.widget.PAGE_SIZE", 3)
    widget = _widget(qtbot, services)
    assert widget.model.rowCount() == 3 and widget.more_button.isEnabled()
    _search(qtbot, widget, widget.more_button.click)
    assert [r.id for r in widget.model.rows()][-1] == log["failed"]
    assert not widget.more_button.isEnabled()
    assert widget.current_id() == log["failed"]  # the first of what arrived


def _in_window(qtbot: QtBot, services: ConsoleServices) -> tuple[MainWindow, MessagesWidget]:
    window = MainWindow(services, sound=False)
    qtbot.addWidget(window)
    window.show()
    qtbot.waitUntil(lambda: window.board.feed.is_loaded, timeout=5000)
    titles = [window.tabs.tabText(n) for n in range(window.tabs.count())]
    window.tabs.setCurrentIndex(titles.index("Messages"))
    widget = window.tabs.currentWidget().widget()
    assert isinstance(widget, MessagesWidget)
    qtbot.waitUntil(lambda: widget.model.rowCount() == 4, timeout=5000)
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow, timeout=2000)
    widget.view.setFocus()
    return window, widget


def test_r_retries_a_failed_message_and_the_engines_refusals_reach_the_status_bar(
    qtbot: QtBot, ctx: AppContext, services: ConsoleServices, log: dict[str, int]
) -> None:
    window, widget = _in_window(qtbot, services)
    said: list[str] = []
    window.statusBar().messageChanged.connect(lambda m: said.append(m) if m else None)
    widget.select_message(log["failed"])
    with qtbot.waitSignal(widget.acted, timeout=5000) as done:
        qtbot.keyClick(widget.view, Qt.Key.Key_R)
    assert re.fullmatch(
        rf"Message {log['failed']} retried as message \d+ \(sms to \+27821234567\)", done.args[0]
    )
    qtbot.waitUntil(lambda: widget.model.rowCount() == 5, timeout=5000)
    new = widget.model.rows()[0]
    assert (new.status, new.channel, widget.current_id()) == ("pending", "sms", new.id)  # shown and selected
    widget.select_message(log["failed"])
    with qtbot.waitSignal(widget.failed, timeout=5000):
        qtbot.keyClick(widget.view, Qt.Key.Key_R)
    assert said[-1] == f"message {log['failed']} has been retried already"
    widget.select_message(log["delivered"])
    with qtbot.waitSignal(widget.failed, timeout=5000):
        widget.retry_button.click()
    assert said[-1] == (
        f"message {log['delivered']} is delivered: only a failed message can be retried (the provider took this one)"
    )
    window.close()


def test_s_sends_a_message_again_on_a_channel_chosen_from_the_persons_others(
    qtbot: QtBot, ctx: AppContext, services: ConsoleServices, log: dict[str, int]
) -> None:
    window, widget = _in_window(qtbot, services)
    offered: list[list[str]] = []

    def choose(channel: str) -> Any:
        def answer(dialog: ChannelChooser) -> bool:
            offered.append([dialog.channel.itemData(i) for i in range(dialog.channel.count())])
            dialog.channel.setCurrentIndex(dialog.channel.findData(channel))
            return True

        return answer

    widget.select_message(log["failed"])
    widget.ask = choose("email")
    with qtbot.waitSignal(widget.acted, timeout=5000) as done:
        qtbot.keyClick(widget.view, Qt.Key.Key_S)
    assert offered[-1] == ["whatsapp", "voice", "email", "console"]  # not SMS, which failed
    assert done.args[0].endswith("(email to thandi@example.org)")
    qtbot.waitUntil(lambda: widget.model.rowCount() == 5, timeout=5000)
    assert (widget.model.rows()[0].channel, widget.current_id()) == ("email", widget.model.rows()[0].id)
    # A channel the site has not set up: the engine says so, in the status bar.
    widget.select_message(log["failed"])
    widget.ask = choose("voice")
    with qtbot.waitSignal(widget.failed, timeout=5000) as refused:
        widget.resend_button.click()
    assert refused.args[0] == "channel: voice is not set up here: no Twilio account"
    assert window.statusBar().currentMessage() == refused.args[0]
    # A status update to a reporter was to no person: nothing to choose from.
    widget.select_message(log["reporter"])
    with qtbot.waitSignal(widget.failed, timeout=5000) as none:
        qtbot.keyClick(widget.view, Qt.Key.Key_S)
    assert "was not to a person" in none.args[0]
    window.close()


def test_enter_on_a_message_opens_its_incident_on_the_board(
    qtbot: QtBot, ctx: AppContext, services: ConsoleServices, log: dict[str, int]
) -> None:
    window, widget = _in_window(qtbot, services)
    widget.select_message(log["delivered"])
    qtbot.keyClick(widget.view, Qt.Key.Key_Return)
    assert window.tabs.currentIndex() == 0
    assert window.board.current_id() == log["incident"]
    assert window.board.selected_ids() == [log["incident"]]
    qtbot.waitUntil(lambda: window.detail.incident_id == log["incident"], timeout=2000)
    assert window.detail_dock.isVisible()
    titles = [window.tabs.tabText(n) for n in range(window.tabs.count())]
    window.tabs.setCurrentIndex(titles.index("Messages"))
    widget.select_message(log["notice"])  # about no incident: said, and the tab stays
    widget.view.setFocus()
    qtbot.keyClick(widget.view, Qt.Key.Key_Return)
    assert window.tabs.tabText(window.tabs.currentIndex()) == "Messages"
    assert window.statusBar().currentMessage() == f"Message {log['notice']} is not about an incident"
    window.close()
