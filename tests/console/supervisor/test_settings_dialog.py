"""Settings dialog: non-secret values to the settings file, secrets to the keyring only; connection test,
test send, engine nodes and master switches on the worker; operators cannot save."""

from __future__ import annotations

import tomllib
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import keyring
import pytest
from sqlalchemy import select

from console.settings_dialog import SettingsDialog
from engine import switches
from engine.models import EngineNode, Event
from engine.settings import load_settings
from tests.conftest import CLOCK_START
from tests.fakes.memory_keyring import MemoryKeyring


@pytest.fixture
def memory_keyring() -> Iterator[MemoryKeyring]:
    previous = keyring.get_keyring()
    backend = MemoryKeyring()
    keyring.set_keyring(backend)
    yield backend
    keyring.set_keyring(previous)


@pytest.fixture
def settings_file(tmp_path: Path, supervisor: Any) -> Path:
    path = tmp_path / "settings.toml"
    supervisor.ctx.settings.source = path
    return path


def test_secrets_go_to_the_keyring_and_never_to_the_settings_file(
    qtbot: Any, supervisor: Any, memory_keyring: MemoryKeyring, settings_file: Path
) -> None:
    dialog = SettingsDialog(supervisor, None)
    qtbot.addWidget(dialog)
    dialog.fields["twilio_account_sid"].setText("AC0123456789abcdef")
    dialog.fields["smtp_host"].setText("mail.example.org")
    dialog.smtp_port.setValue(2525)
    dialog.twilio_token.setText("tok-SECRET-1")
    dialog.smtp_password.setText("pw-SECRET-2")
    with qtbot.waitSignal(dialog.saved, timeout=5000):
        dialog.save_button.click()
    text = settings_file.read_text()
    assert "SECRET" not in text
    data = tomllib.loads(text)
    assert data["twilio_account_sid"] == "AC0123456789abcdef" and data["smtp_port"] == 2525
    assert memory_keyring.store[("watchkeeper", "twilio_auth_token")] == "tok-SECRET-1"
    assert memory_keyring.store[("watchkeeper", "smtp_password")] == "pw-SECRET-2"
    assert load_settings(settings_file, env={}).smtp_host == "mail.example.org"
    assert supervisor.ctx.settings.smtp_host == "mail.example.org"
    assert dialog.twilio_token.text() == ""


def test_simulated_channels_are_chosen_in_settings_and_an_unknown_one_is_refused(
    qtbot: Any, supervisor: Any, memory_keyring: MemoryKeyring, settings_file: Path
) -> None:
    dialog = SettingsDialog(supervisor, None)
    qtbot.addWidget(dialog)
    dialog.simulated.setText("sms, pager")
    with qtbot.waitSignal(dialog.save_failed, timeout=5000) as refused:
        dialog.save_button.click()
    assert "'pager'" in refused.args[0] and not settings_file.exists()
    dialog.simulated.setText("SMS, email")
    with qtbot.waitSignal(dialog.saved, timeout=5000):
        dialog.save_button.click()
    assert tomllib.loads(settings_file.read_text())["simulated_channels"] == ["sms", "email"]
    assert supervisor.ctx.settings.simulated_channels == ["sms", "email"]


def test_connection_test_reports_success_and_failure(qtbot: Any, supervisor: Any, tmp_path: Path) -> None:
    dialog = SettingsDialog(supervisor, None)
    qtbot.addWidget(dialog)
    dialog.use_sqlite.setChecked(True)
    dialog.sqlite_path.setText(str(tmp_path / "other.db"))
    with qtbot.waitSignal(dialog.connection_tested, timeout=10000) as ok:
        dialog.test_db.click()
    assert ok.args[0] is True and "other.db" in ok.args[1]

    dialog.use_pg.setChecked(True)
    dialog.pg_url.setText("postgresql://nobody:hunter2@127.0.0.1:1/none")
    with qtbot.waitSignal(dialog.connection_tested, timeout=20000) as bad:
        dialog.test_db.click()
    assert bad.args[0] is False and "hunter2" not in bad.args[1]
    assert dialog.db_result.text().startswith("✗")


def test_test_send_runs_through_the_engine(qtbot: Any, supervisor: Any) -> None:
    dialog = SettingsDialog(supervisor, None)
    qtbot.addWidget(dialog)
    _channel, to, send, result = dialog.twilio_test
    to.setText("+27821234567")
    with qtbot.waitSignal(dialog.test_sent, timeout=10000) as blocker:
        send.click()
    # Twilio is not set up on this site, and it does not simulate: nothing is sent, and it says why.
    assert blocker.args[0]["ok"] is False and blocker.args[0]["simulated"] is False
    assert result.text().startswith("✗ not sent") and "not set up here" in result.text()


def test_engine_nodes_show_heartbeat_age_and_switches_are_audited(qtbot: Any, supervisor: Any) -> None:
    with supervisor.ctx.sessions.begin() as s:
        s.add(
            EngineNode(
                id="a",
                hostname="h",
                pid=1,
                mode="serve",
                version="0.1",
                heartbeat_at=CLOCK_START - timedelta(seconds=5),
            )
        )
        s.add(
            EngineNode(
                id="b",
                hostname="h",
                pid=2,
                mode="console",
                version="0.1",
                heartbeat_at=CLOCK_START - timedelta(minutes=10),
            )
        )
    dialog = SettingsDialog(supervisor, None)
    qtbot.addWidget(dialog)
    qtbot.waitUntil(lambda: dialog.nodes.rowCount() == 2, timeout=5000)
    assert dialog.nodes_summary.text() == "1 alive of 2 known"
    assert dialog.nodes.display_rows()[0][:4] == ["a", "serve", "alive (running)", "5 s ago"]
    assert dialog.notifications_switch.isChecked()
    with qtbot.waitSignal(dialog.switch_changed, timeout=5000):
        dialog.notifications_switch.click()
    with supervisor.ctx.sessions() as s:
        assert switches.notifications_enabled(s) is False
        event = s.scalars(select(Event).where(Event.kind == "switch_changed")).one()
    assert event.actor == "supervisor1"


def test_operator_cannot_save_settings(qtbot: Any, operator: Any, settings_file: Path) -> None:
    dialog = SettingsDialog(operator, None)
    qtbot.addWidget(dialog)
    assert not dialog.save_button.isEnabled()
    assert dialog.fields["smtp_host"].isReadOnly()
    with qtbot.waitSignal(dialog.save_failed, timeout=5000):
        dialog.save()
    assert not settings_file.exists()


def test_node_model_passes_qt_model_tester(qtbot: Any, qtmodeltester: Any, supervisor: Any) -> None:
    with supervisor.ctx.sessions.begin() as s:
        s.add(EngineNode(id="a", hostname="h", pid=1, mode="serve", version="0.1", heartbeat_at=CLOCK_START))
    dialog = SettingsDialog(supervisor, None)
    qtbot.addWidget(dialog)
    qtbot.waitUntil(lambda: dialog.nodes.rowCount() == 1, timeout=5000)
    qtmodeltester.check(dialog.nodes)
