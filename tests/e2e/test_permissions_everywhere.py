"""One rule book, three doors: for every action and every role, the console, the command line and the HTTP
API give the answer engine.permissions gives — and the README's permission table says the same.

Each case really attempts the action through the entry point, as a person of that role (an account signed
in with its password for the console and the command line, a token of that role over HTTP), and then looks
at what happened: done, or refused by the rule book with the role it needs. Any other outcome (a crash, a
refusal for another reason) fails the test. On SQLite and PostgreSQL.
"""

from __future__ import annotations

import io
import json
import re
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from pytestqt.qtbot import QtBot
from sqlalchemy import text

from console.services import ConsoleServices, SignedIn
from engine import accounts, api
from engine.cli import main
from engine.context import AppContext
from engine.db import write_session
from engine.migrate import stamp
from engine.models import OutboxMessage, Person, Policy, PolicyLevel, PolicyTarget
from engine.permissions import RULES, Action, Rule, permission_table, role_allows
from engine.secrets import SecretStore
from engine.service.app import ServiceApp
from engine.service.health import ServiceState
from engine.service.keys import create_api_token
from tests.fakes.memory_keyring import installed
from tests.service.conftest import WsgiClient
from tests.signin import Typed

ROOT = Path(__file__).resolve().parents[2]
ROLES = ("operator", "supervisor", "admin")
PASSWORD = {"operator": "operator-pass-1", "supervisor": "supervisor-pass-1", "admin": "admin-pass-1"}
REFUSAL = re.compile(r"only an? (operator|supervisor|admin)( or higher)? may ")


@dataclass
class World:
    """A centre with one account and one API token per role, a policy, an open and a closed incident."""

    ctx: AppContext
    url: str
    tmp: Path
    account_ids: dict[str, int] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)
    open_id: int = 0
    closed_id: int = 0
    failed_message_id: int = 0
    cleanup: list[Callable[[], None]] = field(default_factory=list)

    def signed_in(self, role: str) -> SignedIn:
        result = accounts.sign_in(self.ctx, role, PASSWORD[role], via="console")
        a = result.account
        return SignedIn(a.id, a.username, a.display_name, a.role, person_id=a.person_id)

    def refused(self, message: str) -> bool:
        return bool(REFUSAL.search(message))


@pytest.fixture
def world(ctx: AppContext, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    # A rehearsal site: a test message is "sent" on a simulated channel, for every entry point.
    ctx.settings.simulated_channels = ["all"]
    monkeypatch.setenv("WATCHKEEPER_SIMULATED_CHANNELS", "all")
    stamp(ctx.db)
    url = ctx.db.url.render_as_string(hide_password=False)
    w = World(ctx, url, tmp_path)
    now = ctx.clock.now()
    with write_session(ctx.sessions) as s:
        s.add_all([Person(handle="thandi", name="Thandi Nkosi", phone="+27821234567"),
                   Person(handle="sipho", name="Sipho Dlamini", phone="+27831234567")])  # fmt: skip
        s.add(
            Policy(
                name="fire",
                levels=[
                    PolicyLevel(level=1, targets=[PolicyTarget(type="person", identifier="thandi")]),
                    PolicyLevel(
                        level=2, delay_seconds=600, targets=[PolicyTarget(type="person", identifier="sipho")]
                    ),
                ],
            )
        )
        for role in ROLES:
            op = accounts.create_operator(s, now, username=role, password=PASSWORD[role], role=role,
                                          display_name=role.title())  # fmt: skip
            w.account_ids[role] = op.id
    for role in ROLES:
        w.tokens[role] = create_api_token(ctx, label=f"{role}-token", role=role).secret
    w.open_id = api.trigger(ctx, policy="fire", summary="Smoke, Block C", key="open-one").incident_id
    w.closed_id = api.trigger(ctx, policy="fire", summary="Burst pipe", key="closed-one").incident_id
    api.resolve(ctx, w.closed_id, by="setup")
    with write_session(ctx.sessions) as s:
        failed = OutboxMessage(idempotency_key="failed-sms", incident_id=w.open_id, channel="sms",
                               address="+27821234567", body="Smoke, Block C", status="failed")  # fmt: skip
        s.add(failed)
        s.flush()
        w.failed_message_id = failed.id
    with installed():
        yield w
    for undo in w.cleanup:
        undo()


# --------------------------------------------------------------------------------------------------------
# HTTP: a token of the role
# --------------------------------------------------------------------------------------------------------

CONFIG_DOCUMENT = {"people": [{"handle": "ayanda", "name": "Ayanda Mthembu", "phone": "+27841234567"}]}


def _http_request(w: World, action: Action) -> tuple[str, str, dict[str, Any] | None]:
    i, c = w.open_id, w.closed_id
    return {
        Action.VIEW_INCIDENTS: ("GET", "/api/incidents", None),
        Action.OPEN_INCIDENT: (
            "POST",
            "/api/incidents",
            {"policy": "fire", "summary": "Alarm", "key": "new"},
        ),
        Action.ACKNOWLEDGE: ("POST", f"/api/incidents/{i}/acknowledge", None),
        Action.START_WORK: ("POST", f"/api/incidents/{i}/start-work", None),
        Action.RESOLVE: ("POST", f"/api/incidents/{i}/resolve", {"note": "done"}),
        Action.ESCALATE: ("POST", f"/api/incidents/{i}/escalate", {"level": 2}),
        Action.ADD_NOTE: ("POST", f"/api/incidents/{i}/notes", {"text": "caller rang back"}),
        Action.ASSIGN: ("POST", f"/api/incidents/{i}/assign", {"person": "sipho"}),
        Action.CLASSIFY: ("POST", f"/api/incidents/{i}/classify", {"category": "roads", "sensitive": True}),
        Action.REOPEN: ("POST", f"/api/incidents/{c}/reopen", {"reason": "again"}),
        Action.CANCEL: ("POST", f"/api/incidents/{i}/cancel", {"reason": "duplicate"}),
        Action.VIEW_REPORTS: ("GET", "/api/stats", None),
        Action.HANDOVER: ("POST", "/api/handover", {"text": "all quiet"}),
        Action.NOTIFICATIONS: ("POST", "/api/notifications/read-all", None),
        Action.WORKFLOW_ITEMS: ("POST", "/api/items", {"title": "Call back", "time_limit_seconds": 600}),
        Action.MESSAGE_LOG: ("GET", "/api/messages?status=failed", None),
        Action.RESEND_MESSAGE: ("POST", f"/api/messages/{w.failed_message_id}/retry", None),
        Action.VIEW_CONFIGURATION: ("GET", "/api/config?format=json", None),
        Action.EDIT_CONFIGURATION: ("POST", "/api/config", CONFIG_DOCUMENT),
        Action.MASTER_SWITCHES: ("PUT", "/api/switches/escalations_enabled", {"enabled": False}),
        Action.VIEW_AUDIT: ("GET", "/api/audit", None),
        Action.MANAGE_ROUTING_KEYS: ("POST", "/api/routing-keys", {"policy": "fire", "label": "monitoring"}),
        Action.MANAGE_API_TOKENS: ("POST", "/api/tokens", {"label": "script", "role": "operator"}),
        Action.MANAGE_ACCOUNTS: ("POST", "/api/users", {"username": "zanele", "role": "operator"}),
    }[action]


def over_http(w: World, action: Action, role: str, _qtbot: QtBot) -> bool:
    client = WsgiClient(ServiceApp(w.ctx, ServiceState(started_at=w.ctx.clock.now())))
    method, path, body = _http_request(w, action)
    reply = client.request(
        method, path, json_body=body, headers={"Authorization": f"Bearer {w.tokens[role]}"}
    )
    if reply.status == 403:
        assert w.refused(reply.json()["message"]), reply.text
        return False
    assert 200 <= reply.status < 300, f"{method} {path}: {reply.status} {reply.text}"
    return True


# --------------------------------------------------------------------------------------------------------
# The command line: an account of the role, its password piped in
# --------------------------------------------------------------------------------------------------------


def _cli_args(w: World, action: Action) -> tuple[list[str], list[str]]:
    """(arguments, extra stdin lines after the sign-in password)."""
    i, c = str(w.open_id), str(w.closed_id)
    config = w.tmp / "config.json"
    config.write_text(json.dumps(CONFIG_DOCUMENT), encoding="utf-8")
    suffix = uuid.uuid4().hex[:8]
    return {
        Action.VIEW_INCIDENTS: (["list"], []),
        Action.OPEN_INCIDENT: (["trigger", "--policy", "fire", "--summary", "Alarm", "--key", "new"], []),
        Action.ACKNOWLEDGE: (["ack", i], []),
        Action.START_WORK: (["start-work", i], []),
        Action.RESOLVE: (["resolve", i], []),
        Action.ESCALATE: (["escalate", i, "--level", "2"], []),
        Action.ADD_NOTE: (["note", i, "caller rang back"], []),
        Action.ASSIGN: (["assign", i, "--person", "sipho"], []),
        Action.CLASSIFY: (["classify", i, "--category", "roads", "--sensitive"], []),
        Action.REOPEN: (["reopen", c], []),
        Action.CANCEL: (["cancel", i, "--reason", "duplicate"], []),
        Action.VIEW_REPORTS: (["stats"], []),
        Action.HANDOVER: (["handover", "write", "all quiet"], []),
        Action.NOTIFICATIONS: (["notifications", "read", "--all"], []),
        Action.WORKFLOW_ITEMS: (["items", "add", "Call back", "--time-limit", "10m"], []),
        Action.MESSAGE_LOG: (["messages", "--status", "failed"], []),
        Action.RESEND_MESSAGE: (["messages", "retry", str(w.failed_message_id)], []),
        Action.CHANGE_OWN_PASSWORD: (["users", "passwd"], ["a-new-password-1", "a-new-password-1"]),
        Action.VIEW_CONFIGURATION: (["export"], []),
        Action.EDIT_CONFIGURATION: (["import", str(config)], []),
        Action.MASTER_SWITCHES: (["switches", "set", "escalations_enabled", "off"], []),
        Action.MANAGE_SECRETS: (["secrets", "set", "smtp_password"], ["smtp-value-1"]),
        Action.TEST_SEND: (["test-send", "--channel", "sms", "--to", "+27821234567"], []),
        Action.VIEW_AUDIT: (["audit"], []),
        Action.MANAGE_ROUTING_KEYS: (["keys", "create", "--policy", "fire", "--label", "monitoring"], []),
        Action.MANAGE_API_TOKENS: (["tokens", "create", "--label", "script"], []),
        Action.MANAGE_ACCOUNTS: (["users", "add", "zanele", "--role", "operator"], []),
        Action.DATABASE_ROLES: (
            ["db", "roles", "--service-role", f"wk_s_{suffix}", "--console-role", f"wk_c_{suffix}"],
            [],
        ),
    }[action]


def on_the_command_line(w: World, action: Action, role: str, _qtbot: QtBot) -> bool:
    args, more = _cli_args(w, action)
    if action == Action.DATABASE_ROLES:
        if w.ctx.db.dialect.name != "postgresql":
            pytest.skip("PostgreSQL roles exist only on PostgreSQL (SQLite's answer is tested on its own)")
        roles = [args[3], args[5]]

        def drop() -> None:
            with w.ctx.db.begin() as conn:
                for name in roles:
                    if conn.execute(text("SELECT 1 FROM pg_roles WHERE rolname = :n"), {"n": name}).first():
                        conn.execute(text(f'DROP OWNED BY "{name}"'))
                        conn.execute(text(f'DROP ROLE "{name}"'))

        w.cleanup.append(drop)
    old = sys.stdin, sys.stdout, sys.stderr
    sys.stdin, sys.stdout, sys.stderr = Typed(PASSWORD[role], *more), io.StringIO(), io.StringIO()
    try:
        code = main(["--db", w.url, "--user", role, *args])
        err = sys.stderr.getvalue()
    finally:
        sys.stdin, sys.stdout, sys.stderr = old
    if code != 0:
        assert code == 1 and w.refused(err), f"{args}: exit {code}: {err}"
        return False
    return True


# --------------------------------------------------------------------------------------------------------
# The console: the widgets and actions a person of the role would use
# --------------------------------------------------------------------------------------------------------


def _outcome(qtbot: QtBot, ok: Any, failed: Any, start: Callable[[], None]) -> tuple[bool, str]:
    """Connect to the success and failure signals, start, and wait for one of them."""
    results: list[tuple[bool, str]] = []
    ok.connect(lambda *a: results.append((True, "")))
    failed.connect(lambda *a: results.append((False, str(a[0]) if a else "")))
    start()
    qtbot.waitUntil(lambda: bool(results), timeout=10_000)
    return results[0]


def _board_action(
    name: str, *args: Any, **kwargs: Any
) -> Callable[[World, ConsoleServices, QtBot], tuple[bool, str]]:
    def drive(w: World, services: ConsoleServices, qtbot: QtBot) -> tuple[bool, str]:
        from console.board.actions import IncidentActions

        actions = IncidentActions(services)
        ids = [w.closed_id if name == "reopen" else w.open_id]
        if name == "trigger":
            return _outcome(qtbot, actions.created, actions.failed,
                            lambda: actions.trigger({"policy": "fire", "summary": "Alarm", "key": "new"}))  # fmt: skip
        return _outcome(
            qtbot, actions.done, actions.failed, lambda: getattr(actions, name)(ids, *args, **kwargs)
        )

    return drive


def _main_window_tab(title: str) -> Callable[[World, ConsoleServices, QtBot], tuple[bool, str]]:
    def drive(w: World, services: ConsoleServices, qtbot: QtBot) -> tuple[bool, str]:
        from console.mainwindow import MainWindow

        window = MainWindow(services, sound=False, start_feed=False)
        qtbot.addWidget(window)
        titles = [window.tabs.tabText(n) for n in range(window.tabs.count())]
        window.close()
        return (
            title in titles,
            "" if title in titles else f"only {services.operator.role} and below: no {title}",
        )

    return drive


def _view_board(w: World, services: ConsoleServices, qtbot: QtBot) -> tuple[bool, str]:
    from console.board.widget import BoardWidget

    board = BoardWidget(services)
    qtbot.addWidget(board)
    qtbot.waitUntil(lambda: board.feed.is_loaded, timeout=10_000)
    shown = board.model.has(w.open_id)
    board.shutdown()
    return shown, ""


def _handover(w: World, services: ConsoleServices, qtbot: QtBot) -> tuple[bool, str]:
    from console.mainwindow import MainWindow

    window = MainWindow(services, sound=False, start_feed=False)
    qtbot.addWidget(window)
    messages: list[str] = []
    window.statusBar().messageChanged.connect(lambda m: messages.append(m) if m else None)
    with qtbot.waitSignal(window.signed_out, timeout=10_000, raising=False) as blocker:
        window.hand_over("all quiet")
    return bool(blocker.signal_triggered), " ".join(messages)


def _notifications(w: World, services: ConsoleServices, qtbot: QtBot) -> tuple[bool, str]:
    from console.notifications import NotificationsPanel

    panel = NotificationsPanel(services, start=False)
    qtbot.addWidget(panel)
    return _outcome(qtbot, panel.marked, panel.failed, panel.mark_all_read)


def _change_password(w: World, services: ConsoleServices, qtbot: QtBot) -> tuple[bool, str]:
    from console.dialogs import ChangePasswordDialog

    who = services.identity
    dialog = ChangePasswordDialog(
        lambda old, new: accounts.change_password(w.ctx, who, old, new), username=who.name
    )
    qtbot.addWidget(dialog)
    dialog.current.setText(PASSWORD[services.operator.role])
    dialog.new.setText("a-new-password-1")
    dialog.again.setText("a-new-password-1")
    dialog.accept()
    return dialog.result() == dialog.DialogCode.Accepted, dialog.error.text()


def _export(w: World, services: ConsoleServices, qtbot: QtBot) -> tuple[bool, str]:
    from console.editors import EditorsWidget

    editors = EditorsWidget(services)
    qtbot.addWidget(editors)
    return _outcome(qtbot, editors.exported, editors.failed, lambda: editors.export_file(w.tmp / "out.yaml"))


def _save_person(w: World, services: ConsoleServices, qtbot: QtBot) -> tuple[bool, str]:
    from console.editors.people import PeopleEditor

    editor = PeopleEditor(services)
    qtbot.addWidget(editor)
    editor.load_object({"handle": "", "name": ""})
    editor.handle.setText("ayanda")
    editor.name.setText("Ayanda Mthembu")
    return _outcome(qtbot, editor.saved, editor.save_failed, editor.save)


def _settings(w: World, services: ConsoleServices) -> Any:
    from console.settings_dialog import SettingsDialog

    services.ctx.settings.source = w.tmp / "settings.toml"
    return SettingsDialog(services, None, secrets=SecretStore(env={}))


def _switch(w: World, services: ConsoleServices, qtbot: QtBot) -> tuple[bool, str]:
    dialog = _settings(w, services)
    qtbot.addWidget(dialog)
    result = _outcome(qtbot, dialog.switch_changed, dialog.save_failed, lambda: _switch_now(dialog))
    return result if result[0] else (False, dialog.message.text())


def _switch_now(dialog: Any) -> None:
    from engine import switches

    dialog.set_switch(switches.ESCALATIONS_ENABLED, False)
    if dialog.message.text().startswith("⚠"):  # refused before anything was sent
        dialog.save_failed.emit(dialog.message.text())


def _save_settings(w: World, services: ConsoleServices, qtbot: QtBot) -> tuple[bool, str]:
    dialog = _settings(w, services)
    qtbot.addWidget(dialog)
    dialog.fields["smtp_host"].setText("mail.example.org")
    return _outcome(qtbot, dialog.saved, dialog.save_failed, dialog.save)


def _remove_secret(w: World, services: ConsoleServices, qtbot: QtBot) -> tuple[bool, str]:
    store = SecretStore(env={})
    store.set("smtp_password", "before")
    dialog = _settings(w, services)
    qtbot.addWidget(dialog)
    dialog._remove_secret("smtp_password", dialog.smtp_password)
    gone = store.get("smtp_password") is None
    return gone, dialog.message.text()


def _test_send(w: World, services: ConsoleServices, qtbot: QtBot) -> tuple[bool, str]:
    dialog = _settings(w, services)
    qtbot.addWidget(dialog)
    _channel, _to, _send, result = dialog.twilio_test
    with qtbot.waitSignal(dialog.test_sent, timeout=10_000) as blocker:
        dialog.send_test("sms", "+27821234567", result)
    answer = blocker.args[0]
    return bool(answer.get("ok")), str(answer.get("error", ""))


def _audit_view(w: World, services: ConsoleServices, qtbot: QtBot) -> tuple[bool, str]:
    from console.audit import AuditWidget

    in_tabs, why = _main_window_tab("Audit")(w, services, qtbot)
    view = AuditWidget(services)  # built directly as well: the search itself is refused too
    qtbot.addWidget(view)
    qtbot.waitUntil(lambda: view.status.text() not in ("", "Searching…"), timeout=10_000)
    searched = not view.status.text().startswith("⚠")
    assert searched == in_tabs, (view.status.text(), why)
    return searched, view.status.text()


def _add_account(w: World, services: ConsoleServices, qtbot: QtBot) -> tuple[bool, str]:
    from console.editors import EditorsWidget
    from console.editors.accounts import AccountsEditor

    editors = EditorsWidget(services)
    qtbot.addWidget(editors)
    has_tab = "accounts" in editors.editors
    editor = AccountsEditor(services)
    qtbot.addWidget(editor)
    editor.new_object()
    editor.username.setText("zanele")
    ok, message = _outcome(qtbot, editor.password_issued, editor.save_failed, editor.save)
    assert ok == has_tab, message
    return ok, message


def _new_work_item(w: World, services: ConsoleServices, qtbot: QtBot) -> tuple[bool, str]:
    from console.items import WorkItemsWidget

    in_tabs, why = _main_window_tab("Work items")(w, services, qtbot)
    view = WorkItemsWidget(services)
    qtbot.addWidget(view)
    view.ask = lambda dialog: (dialog.title.setText("Call back"), True)[1]
    ok, message = _outcome(qtbot, view.acted, view.failed, view.new_item)
    assert ok == in_tabs, (message, why)
    return ok, message


def _message_log(w: World, services: ConsoleServices, qtbot: QtBot) -> tuple[bool, str]:
    from console.messages import MessagesWidget

    in_tabs, why = _main_window_tab("Messages")(w, services, qtbot)
    view = MessagesWidget(services)
    qtbot.addWidget(view)
    qtbot.waitUntil(lambda: view.status.text() not in ("", "Searching…"), timeout=10_000)
    searched = not view.status.text().startswith("⚠")
    assert searched == in_tabs, (view.status.text(), why)
    return searched, view.status.text()


def _retry_message(w: World, services: ConsoleServices, qtbot: QtBot) -> tuple[bool, str]:
    from datetime import UTC, datetime

    from console.history.timerange import to_qdatetime
    from console.messages import MessagesWidget

    view = MessagesWidget(services)
    qtbot.addWidget(view)
    # The message was written at the wall clock's time, not the test clock's: any time will do.
    view.range.since.setDateTime(to_qdatetime(datetime(2000, 1, 1, tzinfo=UTC)))
    view.range.until.setDateTime(to_qdatetime(datetime(2100, 1, 1, tzinfo=UTC)))
    view.search()
    qtbot.waitUntil(lambda: view.select_message(w.failed_message_id), timeout=10_000)
    return _outcome(qtbot, view.acted, view.failed, view.retry_selected)


CONSOLE: dict[Action, Callable[[World, ConsoleServices, QtBot], tuple[bool, str]]] = {
    Action.VIEW_INCIDENTS: _view_board,
    Action.OPEN_INCIDENT: _board_action("trigger"),
    Action.ACKNOWLEDGE: _board_action("acknowledge"),
    Action.START_WORK: _board_action("start_work"),
    Action.RESOLVE: _board_action("resolve"),
    Action.ESCALATE: _board_action("escalate", 2),
    Action.ADD_NOTE: _board_action("add_note", "caller rang back"),
    Action.ASSIGN: _board_action("assign", person="sipho"),
    Action.CLASSIFY: _board_action("classify", category="roads", sensitive=True),
    Action.REOPEN: _board_action("reopen"),
    Action.CANCEL: _board_action("cancel", "duplicate"),
    Action.VIEW_REPORTS: _main_window_tab("Statistics"),
    Action.HANDOVER: _handover,
    Action.NOTIFICATIONS: _notifications,
    Action.CHANGE_OWN_PASSWORD: _change_password,
    Action.VIEW_CONFIGURATION: _export,
    Action.EDIT_CONFIGURATION: _save_person,
    Action.MASTER_SWITCHES: _switch,
    Action.EDIT_SETTINGS: _save_settings,
    Action.MANAGE_SECRETS: _remove_secret,
    Action.TEST_SEND: _test_send,
    Action.VIEW_AUDIT: _audit_view,
    Action.WORKFLOW_ITEMS: _new_work_item,
    Action.MESSAGE_LOG: _message_log,
    Action.RESEND_MESSAGE: _retry_message,
    Action.MANAGE_ACCOUNTS: _add_account,
}


def in_the_console(w: World, action: Action, role: str, qtbot: QtBot) -> bool:
    services = ConsoleServices(w.ctx, w.signed_in(role))
    try:
        allowed, message = CONSOLE[action](w, services, qtbot)
    finally:
        services.shutdown()
    if not allowed and action not in (Action.VIEW_REPORTS, Action.VIEW_AUDIT, Action.MESSAGE_LOG):
        assert w.refused(message), f"{action}: not done, and not a refusal by the rule book: {message!r}"
    return allowed


ENTRY_POINTS: dict[str, Callable[[World, Action, str, QtBot], bool]] = {
    "console": in_the_console,
    "cli": on_the_command_line,
    "http": over_http,
}


def _cases() -> list[Any]:
    cases = []
    for rule in RULES:
        for entry in ENTRY_POINTS:
            if not getattr(rule, entry):
                continue
            for role in ROLES:
                cases.append(pytest.param(rule, entry, role, id=f"{rule.action.value}-{entry}-{role}"))
    return cases


@pytest.mark.parametrize(("rule", "entry", "role"), _cases())
def test_every_entry_point_gives_the_rule_books_answer(
    world: World, rule: Rule, entry: str, role: str, qtbot: QtBot
) -> None:
    done = ENTRY_POINTS[entry](world, rule.action, role, qtbot)
    assert done == role_allows(role, rule.action), (
        f"{entry} {'did' if done else 'refused'} {rule.action.value} for {role}; the rule book says "
        f"{'yes' if role_allows(role, rule.action) else 'no'}"
    )


def test_every_action_is_offered_somewhere_and_the_console_drivers_cover_it() -> None:
    for rule in RULES:
        assert rule.console or rule.cli or rule.http, rule.action
        if rule.console:
            assert rule.action in CONSOLE, rule.action


def test_the_readme_table_is_the_rule_book() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("### Roles", 1)[1].split("\n### ", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 7 and cells[0] and not set(cells[0]) <= {"-", " "} and cells[0] != "action":
            rows[cells[0]] = cells
    for rule, allowed in permission_table():
        cells = rows.get(rule.says)
        assert cells is not None, f"the README's table has no row for {rule.says!r}"
        assert cells[1:4] == ["yes" if allowed[r] else "—" for r in ROLES], rule.says
        assert cells[4:7] == [rule.console or "—", rule.cli or "—", rule.http or "—"], rule.says
    assert len(rows) == len(RULES)
