"""Sign-in and first run, the new-incident dialog, the incident detail, the main window and start-up errors.
SQLite only."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from PySide6.QtCore import QSettings, Qt
from PySide6.QtWidgets import QApplication, QLabel
from pytestqt.modeltest import ModelTester
from pytestqt.qtbot import QtBot
from sqlalchemy import Engine

from console import app as console_app
from console.detail import DetailWindow, IncidentDetail
from console.dialogs import FirstRunDialog, NewIncidentDialog, SignInDialog
from console.mainwindow import MainWindow
from console.services import ConsoleServices
from engine import accounts, api
from engine.context import AppContext
from engine.settings import Settings
from tests.console.conftest import add_incident


@pytest.fixture
def db(sqlite_db: Engine) -> Engine:
    """These tests run on SQLite only; the change feed runs on both databases in test_board_feed.py."""
    return sqlite_db


def test_passwords_are_stored_as_salted_scrypt_hashes() -> None:
    first, second = accounts.hash_password("correct horse"), accounts.hash_password("correct horse")
    assert first.startswith("scrypt$") and first != second
    assert "correct horse" not in first
    assert accounts.verify_password("correct horse", first)
    assert not accounts.verify_password("correct horsE", first)
    assert not accounts.verify_password("anything", "not-a-hash")


def test_sign_in_with_wrong_password_is_refused_and_the_dialog_stays_open(
    qtbot: QtBot, ctx: AppContext
) -> None:
    with ctx.sessions.begin() as s:
        accounts.create_operator(
            s, ctx.clock.now(), username="sipho", password="night-shift-7", role="operator"
        )
    dialog = SignInDialog(lambda u, p: console_app.sign_in(ctx, u, p), username="sipho")
    qtbot.addWidget(dialog)
    dialog.show()
    qtbot.keyClicks(dialog.password, "night-shift-8")
    qtbot.keyClick(dialog.password, Qt.Key.Key_Return)
    assert dialog.isVisible()
    assert dialog.error.text() == "Wrong user name or password."
    assert dialog.password.text() == ""
    dialog.username.setText("nobody")
    qtbot.keyClicks(dialog.password, "night-shift-7")
    qtbot.keyClick(dialog.password, Qt.Key.Key_Return)
    assert dialog.isVisible() and dialog.error.text() == "Wrong user name or password."
    dialog.username.setText("sipho")
    qtbot.keyClicks(dialog.password, "night-shift-7")
    qtbot.keyClick(dialog.password, Qt.Key.Key_Return)
    assert not dialog.isVisible()
    assert dialog.result_value.username == "sipho" and dialog.result_value.role == "operator"


def test_first_run_creates_the_admin_once(qtbot: QtBot, ctx: AppContext) -> None:
    dialog = FirstRunDialog()
    qtbot.addWidget(dialog)
    assert dialog.username.text() == "admin"
    dialog.password.setText("short")
    dialog.accept()
    assert "at least 8" in dialog.error.text()
    dialog.password.setText("long enough 1")
    dialog.confirm.setText("long enough 2")
    dialog.accept()
    assert "differ" in dialog.error.text()
    admin = console_app.create_first_admin(ctx, "admin", "long enough 1", "Administrator")
    assert admin is not None and admin.role == "admin"
    assert console_app.create_first_admin(ctx, "admin2", "long enough 1", "Second") is None
    assert console_app.sign_in(ctx, "admin", "long enough 1").username == "admin"


def test_new_incident_dialog_validates_before_anything_is_sent(qtbot: QtBot) -> None:
    dialog = NewIncidentDialog(
        {
            "policies": ["critical-incidents"],
            "default_policy": ["critical-incidents"],
            "sites": ["umlazi"],
            "categories": ["fire"],
        }
    )
    qtbot.addWidget(dialog)
    assert dialog.problems() == ["a summary is needed"]
    dialog.summary.setText("Structure fire, informal settlement")
    dialog.reporter_contact.setText("0825")
    assert any("not a valid phone number" in p for p in dialog.problems())
    dialog.reporter_contact.setText("someone@")
    assert any("not a valid e-mail address" in p for p in dialog.problems())
    dialog.reporter_contact.setText("082 555 0100")
    dialog.severity.setCurrentText("critical")
    dialog.reporter_language.setCurrentIndex(1)
    assert dialog.problems() == []
    values = dialog.values()
    assert values["reporter_contact"] == "+27825550100"
    assert values["policy"] == "critical-incidents"
    assert values["severity"] == "critical" and values["reporter_language"] == "zu"
    dialog.policy.setCurrentIndex(0)
    assert dialog.values()["policy"] is None


def test_detail_shows_events_and_sla_deadlines_in_time_order(
    qtbot: QtBot, qtmodeltester: ModelTester, ctx: AppContext, services: ConsoleServices
) -> None:
    incident_id = api.trigger(ctx, policy=None, summary="Flooding, Morningside", severity="high").incident_id
    api.add_note(ctx, incident_id, by="thandi", text="Second caller confirms")
    detail = IncidentDetail(services)
    qtbot.addWidget(detail)
    with qtbot.waitSignal(detail.loaded, timeout=2000):
        detail.show_incident(incident_id)
    qtmodeltester.check(detail.timeline)
    items = detail.timeline.items()
    assert [i["at"] for i in items] == sorted(i["at"] for i in items)
    assert {i["type"] for i in items} >= {"event", "note", "deadline"}
    assert detail.title.text().startswith(f"#{incident_id}")
    ctx.clock.advance(timedelta(seconds=5))  # type: ignore[attr-defined]
    before = len(items)
    api.acknowledge(ctx, incident_id, by="thandi")
    with qtbot.waitSignal(detail.loaded, timeout=2000):
        services.incidents_changed.emit([incident_id])
    assert len(detail.timeline.items()) > before
    window = DetailWindow(services, incident_id)
    qtbot.addWidget(window)
    window.show()
    qtbot.waitUntil(lambda: window.detail.detail.get("id") == incident_id, timeout=2000)
    window.close()


def test_main_window_counts_unacknowledged_warns_of_simulated_channels_and_remembers_layout(
    qtbot: QtBot, ctx: AppContext, services: ConsoleServices
) -> None:
    now = ctx.clock.now()
    ctx.settings.simulated_channels = ["sms"]  # a rehearsal on SMS; nothing else set up
    add_incident(ctx.sessions, now, summary="One", severity="critical")
    add_incident(ctx.sessions, now, summary="Two", status="acknowledged", acknowledged_at=now)
    window = MainWindow(services, sound=False)
    qtbot.addWidget(window)
    window.show()
    qtbot.waitUntil(lambda: window.board.feed.is_loaded, timeout=3000)
    assert window.counter.text() == "1 unacknowledged"
    qtbot.waitUntil(lambda: window.banner.isVisible(), timeout=3000)
    assert "Simulated channels: sms" in window.banner.text()
    assert (
        "Not set up, skipped in every chain: email (no SMTP host); voice (no Twilio account); "
        "whatsapp (no Twilio account)" in window.banner.text()
    )
    assert "No engine is running" in window.banner.text()  # no runner in this test
    window.tabs.setCurrentIndex(3)  # History: mounted on first use (or a placeholder)
    assert window.tabs.tabText(3) == "History"
    window.board.view.horizontalHeader().resizeSection(3, 411)
    window.close()
    assert QSettings().value("layout/thandi/board_header") is not None
    again = MainWindow(services, sound=False, start_feed=False)
    qtbot.addWidget(again)
    assert again.board.view.horizontalHeader().sectionSize(3) == 411
    again.close()


def test_supervisor_tab_that_cannot_be_imported_becomes_a_placeholder(
    services: ConsoleServices, qtbot: QtBot
) -> None:
    from console.mainwindow import mount

    widget = mount(services, "console.no_such_module", "Nothing", "Statistics")
    qtbot.addWidget(widget)
    assert isinstance(widget, QLabel) and "not available" in widget.text()


def test_dark_theme_and_large_font_switch_the_whole_application(
    qtbot: QtBot, services: ConsoleServices
) -> None:
    window = MainWindow(services, sound=False, start_feed=False)
    qtbot.addWidget(window)
    window.dark_action.setChecked(True)
    window.large_action.setChecked(True)
    window._theme_changed()
    app = QApplication.instance()
    assert isinstance(app, QApplication)
    assert "Night shift" in app.styleSheet()
    assert window.board.model.palette.name == "dark"
    assert QSettings().value("view/dark", type=bool) is True
    window.dark_action.setChecked(False)
    window.large_action.setChecked(False)
    window._theme_changed()
    assert window.board.model.palette.name == "light"
    window.close()


def test_unreachable_database_at_start_is_a_dialog_not_a_traceback(
    qtbot: QtBot, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shown: list[tuple[str, str]] = []
    monkeypatch.setattr(
        console_app, "error_dialog", lambda title, text, parent=None: shown.append((title, text))
    )
    settings = Settings(db="postgresql://nobody@127.0.0.1:1/nothing")
    assert console_app.run(settings) == 1
    assert shown and shown[0][0] == "Watchkeeper cannot start"
    assert "cannot reach" in shown[0][1] and "127.0.0.1" in shown[0][1]
    assert "Traceback" not in capsys.readouterr().err
