"""The alert list an operator cannot miss: one row per condition that needs someone (critical unacknowledged,
SLA warnings and breaches, paging that ran out, the banner's problems), counted in the header, reachable with
F2, Enter to the incident, A to acknowledge, Esc back to the table; a row leaves when its condition ends.
SQLite only (the board's change feed runs on both databases in test_board_feed.py)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot
from sqlalchemy import Engine

from console.alert_list import EXHAUSTED, counts_text, incident_alerts, live_alerts
from console.mainwindow import KEYS_HELP, MainWindow
from console.services import ConsoleServices
from engine.context import AppContext
from engine.models import Incident
from tests.console.conftest import add_incident


@pytest.fixture
def db(sqlite_db: Engine) -> Engine:
    return sqlite_db


def _window(qtbot: QtBot, services: ConsoleServices) -> MainWindow:
    window = MainWindow(services, sound=False)
    qtbot.addWidget(window)
    window.resize(1600, 1000)
    window.show()
    qtbot.waitUntil(lambda: window.board.feed.is_loaded, timeout=5000)
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow, timeout=2000)
    return window


def _rows(window: MainWindow, *, problems: bool = False) -> list[tuple[str, str]]:
    """(what, #number) of each row; the banner's problems (no engine runs in these tests) only if asked."""
    tree = window.alert_list.list
    items = [tree.topLevelItem(n) for n in range(tree.topLevelItemCount())]
    return [(i.text(0), i.text(1)) for i in items if problems or i.text(1)]


def _status(ctx: AppContext, incident_id: int) -> str:
    with ctx.sessions() as s:
        incident = s.get(Incident, incident_id)
        assert incident is not None
        return incident.status


def test_two_breaches_in_the_same_second_are_two_rows_and_the_header_counts_them(
    qtbot: QtBot, ctx: AppContext, services: ConsoleServices
) -> None:
    now = ctx.clock.now()
    fire = add_incident(
        ctx.sessions, now, summary="Structure fire", severity="critical", age=timedelta(minutes=1)
    )
    # Both opened in the same second with the same 15-minute response SLA: they breach in the same second.
    first = add_incident(ctx.sessions, now, summary="Gas smell, Block A", age=timedelta(minutes=10))
    second = add_incident(ctx.sessions, now, summary="Gas smell, Block B", age=timedelta(minutes=10))
    window = _window(qtbot, services)
    qtbot.waitUntil(lambda: window.alert_counts.text().startswith("1 critical · 2 problems"), timeout=3000)
    assert _rows(window) == [("Critical, not acknowledged", f"#{fire}")]

    ctx.clock.advance(timedelta(minutes=5))
    qtbot.waitUntil(lambda: len(_rows(window)) == 3, timeout=3000)
    assert _rows(window) == [
        ("Critical, not acknowledged", f"#{fire}"),
        ("Response SLA breached", f"#{first}"),
        ("Response SLA breached", f"#{second}"),
    ]
    # No engine runs here, and no channel is set up: the banner's two problems are counted too.
    assert window.alert_counts.text() == "1 critical · 2 breached · 2 problems"
    assert window.alert_list.summary.text() == window.alert_counts.text()
    assert _rows(window, problems=True)[0] == (
        "No engine is running: escalations and messages are NOT being sent",
        "",
    )
    # The status bar has room for one of the two breaches; the list keeps both.
    assert window.alerts.count == 2


def test_f2_enter_selects_the_incident_a_acknowledges_it_and_the_alert_leaves_the_list(
    qtbot: QtBot, ctx: AppContext, services: ConsoleServices
) -> None:
    now = ctx.clock.now()
    fire = add_incident(ctx.sessions, now, summary="Structure fire", severity="critical")
    leak = add_incident(ctx.sessions, now, summary="Water leak", severity="low")
    window = _window(qtbot, services)
    window.board.select_incident(leak)
    qtbot.waitUntil(lambda: len(_rows(window)) == 1, timeout=3000)

    qtbot.keyClick(window, Qt.Key.Key_F2)
    assert window.alert_list.list.hasFocus()
    qtbot.keyClick(window.alert_list.list, Qt.Key.Key_Return)
    assert window.board.current_id() == fire
    qtbot.waitUntil(lambda: window.detail.detail.get("id") == fire, timeout=2000)
    assert window.board.view.hasFocus()  # the board's keys act on what the alert was about

    qtbot.keyClick(window, Qt.Key.Key_F2)
    qtbot.keyClick(window.alert_list.list, Qt.Key.Key_A)
    qtbot.waitUntil(lambda: _status(ctx, fire) == "acknowledged", timeout=3000)
    assert _status(ctx, leak) == "open"
    qtbot.waitUntil(lambda: _rows(window) == [], timeout=3000)
    assert "critical" not in window.alert_counts.text()
    assert f"Acknowledged #{fire}" in window.statusBar().currentMessage()

    qtbot.keyClick(window, Qt.Key.Key_F2)
    qtbot.keyClick(window.alert_list.list, Qt.Key.Key_Escape)
    assert window.board.view.hasFocus()
    assert "F2" in KEYS_HELP


def test_a_on_an_alert_for_an_incident_that_cannot_be_acknowledged_echoes_the_boards_refusal(
    qtbot: QtBot, ctx: AppContext, services: ConsoleServices
) -> None:
    now = ctx.clock.now()
    late = add_incident(
        ctx.sessions,
        now,
        summary="Lift stuck",
        status="acknowledged",
        acknowledged_at=now,
        age=timedelta(hours=5),
    )
    window = _window(qtbot, services)
    qtbot.waitUntil(lambda: _rows(window) == [("Resolution SLA breached", f"#{late}")], timeout=3000)
    window.focus_alerts()
    qtbot.keyClick(window.alert_list.list, Qt.Key.Key_A)
    qtbot.waitUntil(lambda: f"#{late}" in window.statusBar().currentMessage(), timeout=3000)
    assert "it cannot be acknowledged" in window.statusBar().currentMessage()
    assert _rows(window) == [("Resolution SLA breached", f"#{late}")]  # still breached: still on the list


def test_the_banners_problems_are_alerts_until_they_end(
    qtbot: QtBot, ctx: AppContext, services: ConsoleServices
) -> None:
    window = _window(qtbot, services)
    qtbot.waitUntil(lambda: window.alert_counts.text() == "2 problems", timeout=3000)
    window._on_database_state(False, "The database cannot be reached")
    lost = ("The database cannot be reached — the board shows the last known state", "")
    assert lost in _rows(window, problems=True)
    assert window.alert_counts.text() == "3 problems"
    window.focus_alerts()
    qtbot.keyClick(window.alert_list.list, Qt.Key.Key_A)
    assert "not about an incident" in window.statusBar().currentMessage()
    window._on_database_state(True, "")
    assert lost not in _rows(window, problems=True)
    assert window.alert_counts.text() == "2 problems"


def test_a_warning_a_chain_that_ran_out_and_an_escalation_that_timed_out_are_alerts() -> None:
    from datetime import UTC, datetime

    now = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
    base: dict[str, Any] = {
        "id": 7,
        "summary": "Smoke, Block C",
        "severity": "high",
        "status": "escalated",
        "created_at": now - timedelta(minutes=13),
        "updated_at": now,
        "acknowledged_at": None,
        "response_due_at": now + timedelta(minutes=2),
        "response_warn_at": now - timedelta(minutes=1),
        "escalation_state": "active",
        "current_level": 2,
        "paged": "Sipho Dlamini",
        "page_status": "exhausted",
    }
    [warning, ran_out] = incident_alerts(base, now)
    assert warning.kind == "warning" and warning.what.startswith("Response SLA due ")
    assert (
        ran_out.kind == EXHAUSTED
        and ran_out.what == "Paging ran out: Sipho Dlamini not reached on any channel"
    )
    timed_out = {**base, "escalation_state": "timed_out", "response_warn_at": None}
    [alert] = incident_alerts(timed_out, now)
    assert alert.what == "Paging ran out at level 2: nobody acknowledged"
    acknowledged = {**timed_out, "status": "acknowledged", "acknowledged_at": now}
    assert incident_alerts(acknowledged, now) == []  # someone has it: paging running out no longer matters
    problems = {"engine": ("No engine is running", "error")}
    found = live_alerts([base, timed_out], now, problems)
    assert [a.kind for a in found] == ["problem", "exhausted", "exhausted", "warning"]
    assert counts_text(found) == "2 paging ran out · 1 warning · 1 problem"


def test_muted_for_the_shift_a_new_critical_still_reaches_the_list_and_the_header(
    qtbot: QtBot, ctx: AppContext, services: ConsoleServices
) -> None:
    window = _window(qtbot, services)
    qtbot.keyClick(window, Qt.Key.Key_M, Qt.KeyboardModifier.ControlModifier)
    assert window.alerts.muted and window.mute_label.text() == "🔇 alerts muted this shift"
    fire = add_incident(ctx.sessions, ctx.clock.now(), summary="Structure fire", severity="critical")
    qtbot.waitUntil(lambda: _rows(window) == [("Critical, not acknowledged", f"#{fire}")], timeout=5000)
    assert window.alert_counts.text().startswith("1 critical")
    assert window.alerts.count == 1  # counted (and in the status bar), with no sound or pop-up
