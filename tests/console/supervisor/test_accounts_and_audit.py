"""The administrator's Accounts tab, the audit view, the settings dialog's audit entries and the board's
"Mine" (SQLite; the engine behind them runs on both databases in tests/engine/accounts)."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import QDateTime
from pytestqt.qtbot import QtBot

from console import app as console_app
from console.audit import AuditWidget
from console.board.widget import BoardWidget
from console.editors import EditorsWidget
from console.editors.accounts import AccountsEditor
from console.services import ConsoleServices
from console.settings_dialog import SettingsDialog
from engine import accounts, api, audit, config_io
from engine.clock import FakeClock
from engine.context import AppContext
from engine.db import read_session, write_session
from engine.models import Person
from engine.secrets import SecretStore
from tests.fakes.memory_keyring import MemoryKeyring, installed

PASSWORD = {"boss": "centre-admin-9", "naledi": "supervisor-pass-1", "thandi": "night-shift-7"}


@pytest.fixture
def centre(console_ctx: AppContext) -> AppContext:
    now = console_ctx.clock.now()
    with write_session(console_ctx.sessions) as s:
        s.add_all([Person(handle="thandi", name="Thandi Nkosi", phone="+27821234567"),
                   Person(handle="sipho", name="Sipho Dlamini", phone="+27831234567")])  # fmt: skip
        s.flush()
        accounts.create_operator(s, now, username="boss", password=PASSWORD["boss"], role="admin",
                                 display_name="Centre Admin")  # fmt: skip
        accounts.create_operator(s, now, username="naledi", password=PASSWORD["naledi"], role="supervisor",
                                 display_name="Naledi Khumalo")  # fmt: skip
        accounts.create_operator(s, now, username="thandi", password=PASSWORD["thandi"], person="thandi",
                                 display_name="Thandi Nkosi")  # fmt: skip
    return console_ctx


def signed_in(ctx: AppContext, username: str) -> Iterator[ConsoleServices]:
    services = ConsoleServices(ctx, console_app.sign_in(ctx, username, PASSWORD[username]))
    yield services
    services.shutdown()


@pytest.fixture
def admin(qapp: Any, centre: AppContext) -> Iterator[ConsoleServices]:
    yield from signed_in(centre, "boss")


@pytest.fixture
def supervisor_services(qapp: Any, centre: AppContext) -> Iterator[ConsoleServices]:
    yield from signed_in(centre, "naledi")


@pytest.fixture
def thandi(qapp: Any, centre: AppContext) -> Iterator[ConsoleServices]:
    yield from signed_in(centre, "thandi")


def _loaded(qtbot: QtBot, editor: AccountsEditor) -> None:
    with qtbot.waitSignal(editor.loaded, timeout=5000):
        editor.reload()


def test_the_accounts_tab_is_the_administrators_alone(
    qtbot: QtBot, admin: ConsoleServices, supervisor_services: ConsoleServices, thandi: ConsoleServices
) -> None:
    for services, expected in ((admin, True), (supervisor_services, False), (thandi, False)):
        widget = EditorsWidget(services)
        qtbot.addWidget(widget)
        titles = [widget.tabs.tabText(n) for n in range(widget.tabs.count())]
        assert ("Accounts" in titles) is expected, services.operator.role


def test_an_administrator_adds_changes_disables_and_resets_accounts(
    qtbot: QtBot, qtmodeltester: Any, admin: ConsoleServices, centre: AppContext, console_ctx: AppContext
) -> None:
    clock = console_ctx.clock
    assert isinstance(clock, FakeClock)
    editor = AccountsEditor(admin)
    qtbot.addWidget(editor)
    _loaded(qtbot, editor)
    qtmodeltester.check(editor.model)
    rows = {r["username"]: r for r in editor.objects()}
    assert set(rows) == {"boss", "naledi", "thandi"}
    # Who signed in when, to the second (the administrator's own sign-in just now).
    boss_row = editor.model.display_rows()[[r["username"] for r in editor.objects()].index("boss")]
    assert boss_row[5] == clock.now().astimezone().strftime("%Y-%m-%d %H:%M:%S")
    assert (
        "never" in editor.model.display_rows()[[r["username"] for r in editor.objects()].index("naledi")][5]
    )

    editor.new_object()
    editor.username.setText("sipho")
    editor.display_name.setText("Sipho Dlamini")
    editor.role.setCurrentText("operator")
    editor.person.setCurrentText("sipho")
    with qtbot.waitSignal(editor.password_issued, timeout=5000) as issued:
        editor.save()
    username, temporary = issued.args
    assert username == "sipho" and len(temporary) >= 12
    assert accounts.sign_in(centre, "sipho", temporary).must_change_password

    qtbot.waitUntil(lambda: editor.select_handle("naledi"), timeout=5000)
    editor.role.setCurrentText("admin")
    editor.active.setChecked(True)
    with qtbot.waitSignal(editor.saved, timeout=5000):
        editor.save()
    qtbot.waitUntil(lambda: editor.select_handle("thandi"), timeout=5000)
    editor.active.setChecked(False)
    with qtbot.waitSignal(editor.saved, timeout=5000):
        editor.save()
    with qtbot.waitSignal(editor.loaded, timeout=5000):
        pass
    assert {r["username"]: r["state"] for r in editor.objects()}["thandi"] == "disabled"
    with qtbot.waitSignal(editor.password_issued, timeout=5000):
        editor.reset_password()
    with read_session(centre.sessions) as s:
        trail = [(e.actor, e.action, e.object_name) for e in audit.entries(s)]
        naledi = accounts.get_account(s, "naledi")
    assert naledi.role == "admin"
    for expected in (
        ("boss", "account_created", "sipho"),
        ("boss", "account_updated", "naledi"),
        ("boss", "account_disabled", "thandi"),
        ("boss", "password_reset", "thandi"),
    ):
        assert expected in trail


def test_the_last_administrator_cannot_be_removed_from_the_form(qtbot: QtBot, admin: ConsoleServices) -> None:
    editor = AccountsEditor(admin)
    qtbot.addWidget(editor)
    _loaded(qtbot, editor)
    assert editor.select_handle("boss")
    editor.role.setCurrentText("operator")
    with qtbot.waitSignal(editor.save_failed, timeout=5000) as failed:
        editor.save()
    assert "no active administrator" in failed.args[0]
    assert "no active administrator" in editor.field_error("role")


def _audit_rows(view: AuditWidget) -> list[list[str]]:
    return view.entries.display_rows()


def test_the_audit_view_filters_by_person_kind_object_and_time_and_exports_csv(
    qtbot: QtBot, qtmodeltester: Any, supervisor_services: ConsoleServices, centre: AppContext, tmp_path: Path
) -> None:
    clock = centre.clock
    assert isinstance(clock, FakeClock)
    clock.advance(timedelta(seconds=7))
    naledi = supervisor_services.identity
    config_io.save_objects(
        centre,
        "policies",
        [
            {
                "name": "fire",
                "levels": [{"delay": "0s", "targets": [{"type": "person", "identifier": "thandi"}]}],
            }
        ],
        naledi,
    )
    clock.advance(timedelta(seconds=3))
    config_io.save_objects(
        centre,
        "policies",
        [
            {
                "name": "fire",
                "levels": [{"delay": "5m", "targets": [{"type": "person", "identifier": "thandi"}]}],
            }
        ],
        naledi,
    )
    saved_at = clock.now()
    clock.advance(timedelta(minutes=1))
    view = AuditWidget(supervisor_services)
    qtbot.addWidget(view)
    qtbot.waitUntil(lambda: view.entries.rowCount() > 0, timeout=5000)
    qtmodeltester.check(view.entries)
    assert _audit_rows(view)[0][0] == saved_at.astimezone().strftime("%Y-%m-%d %H:%M:%S")  # to the second

    with qtbot.waitSignal(view.search_finished, timeout=5000):
        view.set_kind("config_updated")
    rows = _audit_rows(view)
    assert [(r[1], r[4], r[5]) for r in rows] == [("naledi", "config_updated", "policy: fire")]
    view.entry_view.selectRow(0)
    changes = view.changes.display_rows()
    assert ["levels[0].delay", "0s", "5m"] in changes and ["version", "1", "2"] in changes

    with qtbot.waitSignal(view.search_finished, timeout=5000):
        view.set_kind("")
    accounts.sign_in(centre, "thandi", PASSWORD["thandi"])
    view.person.setEditText("thand")  # part of a name
    with qtbot.waitSignal(view.search_finished, timeout=5000):
        view.search()
    assert [(r[1], r[4]) for r in _audit_rows(view)] == [("thandi", "sign_in")]
    view.person.setEditText("")
    view.object.setText("policy:fire")
    with qtbot.waitSignal(view.search_finished, timeout=5000):
        view.search()
    assert [r[4] for r in _audit_rows(view)] == ["config_updated", "config_created"]
    # Exactly the second of the first save.
    first = saved_at - timedelta(seconds=3)
    view.since.setDateTime(QDateTime.fromSecsSinceEpoch(int(first.timestamp())))
    view.until.setDateTime(QDateTime.fromSecsSinceEpoch(int(first.timestamp()) + 1))
    with qtbot.waitSignal(view.search_finished, timeout=5000):
        view.search()
    assert [r[4] for r in _audit_rows(view)] == ["config_created"]

    target = tmp_path / "audit.csv"
    view.object.setText("")
    view.since.setDateTime(QDateTime.fromSecsSinceEpoch(int((saved_at - timedelta(hours=1)).timestamp())))
    view.until.setDateTime(QDateTime.fromSecsSinceEpoch(int((saved_at + timedelta(hours=1)).timestamp())))
    with qtbot.waitSignal(view.exported, timeout=5000) as exported:
        view.export_csv(target)
    with target.open(encoding="utf-8") as handle:
        rows_written = list(csv.reader(handle))
    assert exported.args[1] == len(rows_written) - 1 == 7  # three accounts made, two sign-ins, two saves
    assert rows_written[0] == list(audit.CSV_COLUMNS)
    assert any("levels[0].delay: 0s → 5m" in r[8] for r in rows_written[1:])


def test_an_operator_cannot_search_the_audit_trail(qtbot: QtBot, thandi: ConsoleServices) -> None:
    view = AuditWidget(thandi)  # not offered in the window, and refused if built anyway
    qtbot.addWidget(view)
    qtbot.waitUntil(lambda: view.status.text().startswith("⚠"), timeout=5000)
    assert "only a supervisor or higher may see and export the audit trail" in view.status.text()
    assert view.entries.rowCount() == 0


@pytest.fixture
def memory_keyring() -> Iterator[MemoryKeyring]:
    with installed() as backend:
        yield backend


def test_settings_and_secret_changes_are_audited_without_the_secret(
    qtbot: QtBot,
    supervisor_services: ConsoleServices,
    centre: AppContext,
    tmp_path: Path,
    memory_keyring: Any,
) -> None:
    supervisor_services.ctx.settings.source = tmp_path / "settings.toml"
    dialog = SettingsDialog(supervisor_services, None, secrets=SecretStore(env={}))
    qtbot.addWidget(dialog)
    dialog.fields["smtp_host"].setText("mail.example.org")
    dialog.smtp_port.setValue(2525)
    dialog.smtp_password.setText("pw-SECRET-42")
    with qtbot.waitSignal(dialog.saved, timeout=5000):
        dialog.save()
    qtbot.waitUntil(lambda: supervisor_services.worker.pending == 0, timeout=5000)
    with read_session(centre.sessions) as s:
        (setting,) = audit.entries(s, "setting_changed")
        (secret,) = audit.entries(s, "secret_set")
        everything = repr(audit.entries(s))
    assert setting.actor == "naledi" and setting.object_kind == "settings"
    assert {"field": "smtp_host", "before": "", "after": "mail.example.org"} in setting.changes
    assert {"field": "smtp_port", "before": 587, "after": 2525} in setting.changes
    assert (secret.actor, secret.object_name) == ("naledi", "smtp_password")
    assert "pw-SECRET-42" not in everything


def test_mine_shows_what_i_acknowledged_and_what_is_assigned_to_my_person(
    qtbot: QtBot, thandi: ConsoleServices, centre: AppContext
) -> None:
    mine_assigned = api.trigger(centre, policy=None, summary="Assigned to Thandi").incident_id
    api.assign(centre, mine_assigned, by="naledi", person="thandi")
    mine_acked = api.trigger(centre, policy=None, summary="Thandi acknowledged").incident_id
    api.acknowledge(centre, mine_acked, by="thandi")
    other = api.trigger(centre, policy=None, summary="Sipho's").incident_id
    api.assign(centre, other, by="naledi", person="sipho")
    board = BoardWidget(thandi)
    qtbot.addWidget(board)
    qtbot.waitUntil(lambda: board.feed.is_loaded, timeout=5000)
    board.mine.setChecked(True)
    assert set(board.model.ids()) == {mine_assigned, mine_acked}
    # "assign ID me" assigns to the person the account is linked to.
    with qtbot.waitSignal(board.actions_.done, timeout=5000):
        board.actions_.assign([other], person="me")
    qtbot.waitUntil(lambda: set(board.model.ids()) == {mine_assigned, mine_acked, other}, timeout=10_000)
