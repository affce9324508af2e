"""Handing over a shift in a running console (SQLite): sign out with a note while the embedded engine keeps
paging, the next operator signs in and sees the note with the shift's incidents; a reset password is changed
at sign-in; a lock-out is said without saying which field was wrong; quitting the only engine asks first."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication, QMessageBox, QWidget
from pytestqt.qtbot import QtBot
from sqlalchemy import Engine, func, select

from console import app as console_app
from console.dialogs import ChangePasswordDialog, SignInDialog
from console.handover import HandoverDialog, SignOutDialog
from console.mainwindow import MainWindow
from console.services import ConsoleServices
from engine import accounts, api, audit
from engine.context import AppContext
from engine.db import read_session, write_session
from engine.models import EngineNode, MessageStatus, OutboxMessage, Person, Policy, PolicyLevel, PolicyTarget
from engine.runner import EngineRunner

PASSWORD = {"thandi": "night-shift-7", "sipho": "day-shift-8", "boss": "centre-admin-9"}


@pytest.fixture
def db(sqlite_db: Engine) -> Engine:
    return sqlite_db


@pytest.fixture
def centre(ctx: AppContext) -> AppContext:
    ctx.settings.simulated_channels = [
        "all"
    ]  # a rehearsal: pages are "delivered" without leaving the machine
    now = ctx.clock.now()
    with write_session(ctx.sessions) as s:
        s.add(Person(handle="thandi", name="Thandi Nkosi", phone="+27821234567"))
        s.add(
            Policy(
                name="fire",
                levels=[PolicyLevel(level=1, targets=[PolicyTarget(type="person", identifier="thandi")])],
            )
        )
        accounts.create_operator(
            s, now, username="thandi", password=PASSWORD["thandi"], display_name="Thandi Nkosi"
        )
        accounts.create_operator(
            s, now, username="sipho", password=PASSWORD["sipho"], display_name="Sipho Dlamini"
        )
        accounts.create_operator(s, now, username="boss", password=PASSWORD["boss"], role="admin")
    return ctx


@pytest.fixture
def runner(centre: AppContext) -> Iterator[EngineRunner]:
    engine = EngineRunner(centre, mode="console", listen=False)
    engine.start()
    yield engine
    engine.stop()


class DialogScript:
    """Answers the modal dialogs the code under test opens, in order: each step waits for a dialog of its
    class to be the active modal window, then does what a person would (and the dialog closes)."""

    def __init__(self, *steps: tuple[type[QWidget], Callable[[Any], None]]) -> None:
        self.steps = list(steps)
        self.seen: list[str] = []
        self.timer = QTimer()
        self.timer.setInterval(50)
        self.timer.timeout.connect(self._tick)
        self.timer.start()

    def _tick(self) -> None:
        if not self.steps:
            self.timer.stop()
            return
        kind, act = self.steps[0]
        dialog = QApplication.activeModalWidget()
        if isinstance(dialog, kind) and dialog.isVisible():
            self.steps.pop(0)
            self.seen.append(kind.__name__)
            act(dialog)

    @property
    def done(self) -> bool:
        return not self.steps


def sign_in_as(username: str, password: str | None = None) -> Callable[[SignInDialog], None]:
    def act(dialog: SignInDialog) -> None:
        dialog.username.setText(username)
        dialog.password.setText(password or PASSWORD[username])
        dialog.accept()

    return act


def wait_for(condition: Callable[[], bool], timeout: float = 20.0) -> bool:
    """The engine runs in its own threads: wait for its effect in the database (the GUI thread may block)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def sent_pages(ctx: AppContext, incident_id: int) -> int:
    with read_session(ctx.sessions) as s:
        return int(
            s.scalar(
                select(func.count())
                .select_from(OutboxMessage)
                .where(
                    OutboxMessage.incident_id == incident_id,
                    OutboxMessage.status.in_([MessageStatus.SENT.value, MessageStatus.DELIVERED.value]),
                )
            )
            or 0
        )


def test_sign_out_hands_over_while_the_engine_keeps_paging(
    qtbot: QtBot, centre: AppContext, runner: EngineRunner
) -> None:
    thandi = console_app.sign_in(centre, "thandi", PASSWORD["thandi"])
    services = ConsoleServices(centre, thandi)
    window = MainWindow(services, runner=runner, sound=False)
    qtbot.addWidget(window)
    window.show()
    waiting = api.trigger(
        centre, policy="fire", summary="Gas smell, Pinetown library", actor="thandi"
    ).incident_id

    def leave_note(dialog: SignOutDialog) -> None:
        qtbot.waitUntil(lambda: dialog.counts.text().startswith("This shift:"), timeout=5000)
        assert "1 open · 1 unacknowledged" in dialog.counts.text()
        assert "keeps running in this console: paging does not stop" in "".join(
            label.text() for label in dialog.findChildren(type(dialog.counts))
        )
        dialog.note.setPlainText("Pinetown gas board is on the way; call them back at 07:00.")
        dialog.accept()

    script = DialogScript((SignOutDialog, leave_note))
    with qtbot.waitSignal(window.signed_out, timeout=10_000):
        window.sign_out()
    assert script.done and window.outcome == "sign_out" and not window.isVisible()
    services.shutdown()

    # Nobody is signed in now. An alarm comes in, and the engine of this console pages for it.
    new_alarm: dict[str, int] = {}

    def while_signed_out(dialog: SignInDialog) -> None:
        assert "keeps running: paging continues while nobody is signed in" in dialog.status.text()
        new_alarm["id"] = api.trigger(
            centre, policy="fire", summary="Fire alarm, Block C", actor="monitoring"
        ).incident_id
        assert wait_for(lambda: sent_pages(centre, new_alarm["id"]) == 1), "the engine stopped paging"
        sign_in_as("sipho")(dialog)

    shown: dict[str, Any] = {}

    def read_handover(dialog: HandoverDialog) -> None:
        shown["note"] = dialog.handover.note
        shown["counts"] = dialog.counts.text()
        shown["tabs"] = [dialog.tabs.tabText(n) for n in range(dialog.tabs.count())]
        shown["unacknowledged"] = {i.id for i in dialog.handover.summary.unacknowledged}
        dialog.accept()

    script = DialogScript((SignInDialog, while_signed_out), (HandoverDialog, read_handover))
    operator, _demo = console_app.choose_operator(
        centre, ask_demo=False, after_sign_out=True, engine_running=True
    )
    assert script.done and operator is not None and operator.username == "sipho"
    assert shown["note"].author == "thandi" and shown["note"].text.startswith("Pinetown gas board")
    assert shown["tabs"][0] == "Unacknowledged (2)" and shown["unacknowledged"] == {waiting, new_alarm["id"]}
    assert "2 open · 2 unacknowledged · 0 breached" in shown["counts"]
    assert runner.scheduler.running  # the engine never stopped
    with read_session(centre.sessions) as s:
        trail = [(e.actor, e.action) for e in audit.entries(s)]
    assert trail.index(("thandi", "handover_note")) < trail.index(("thandi", "sign_out"))
    assert trail.index(("thandi", "sign_out")) < len(trail) - 1 and trail[-1] == ("sipho", "sign_in")


def test_a_reset_password_is_changed_at_sign_in(qtbot: QtBot, centre: AppContext) -> None:
    boss = accounts.sign_in(centre, "boss", PASSWORD["boss"]).identity
    temporary = accounts.reset_password(centre, boss, "sipho").password
    assert temporary is not None

    def choose(dialog: ChangePasswordDialog) -> None:
        assert "was reset by an administrator" in dialog.intro.text()
        assert dialog.current.text() == temporary  # the password just typed, not asked again
        dialog.new.setText("sipho-own-pass-1")
        dialog.again.setText("sipho-own-pass-1")
        dialog.accept()

    script = DialogScript((SignInDialog, sign_in_as("sipho", temporary)), (ChangePasswordDialog, choose))
    operator, _demo = console_app.choose_operator(centre, ask_demo=False)
    assert script.done and operator is not None and not operator.must_change_password
    assert accounts.sign_in(centre, "sipho", "sipho-own-pass-1").identity.name == "sipho"


def test_the_sign_in_dialog_says_locked_without_saying_which_field(qtbot: QtBot, centre: AppContext) -> None:
    dialog = SignInDialog(lambda u, p: console_app.sign_in(centre, u, p), username="thandi")
    qtbot.addWidget(dialog)
    dialog.show()
    for _ in range(4):
        dialog.password.setText("guess")
        dialog.accept()
        assert dialog.error.text() == "Wrong user name or password."
    dialog.password.setText("guess")
    dialog.accept()
    locked = dialog.error.text()
    assert locked.startswith("Too many failed sign-ins: this account is locked for 15 minutes")
    dialog.password.setText(PASSWORD["thandi"])
    dialog.accept()
    assert dialog.isVisible() and dialog.error.text().startswith("Too many failed sign-ins")
    dialog.username.setText("nobody-here")  # an unknown name answers the same way
    for _ in range(5):
        dialog.password.setText("guess")
        dialog.accept()
    assert dialog.error.text().startswith("Too many failed sign-ins: this account is locked")


def _answer_quit(button_text: str, seen: list[str]) -> Callable[[QMessageBox], None]:
    def act(box: QMessageBox) -> None:
        seen.append(box.text() + "\n" + box.informativeText())
        for button in box.buttons():
            if button.text().replace("&", "") == button_text:
                button.click()
                return
        raise AssertionError(f"no button {button_text!r}")

    return act


def test_quitting_the_only_engine_asks_first_and_says_what_stops(
    qtbot: QtBot, centre: AppContext, runner: EngineRunner
) -> None:
    services = ConsoleServices(centre, console_app.sign_in(centre, "thandi", PASSWORD["thandi"]))
    window = MainWindow(services, runner=runner, sound=False)
    qtbot.addWidget(window)
    window.show()
    qtbot.waitUntil(lambda: window.engine_label.text() == "Engine: embedded, running", timeout=10_000)
    seen: list[str] = []
    script = DialogScript((QMessageBox, _answer_quit("Cancel", seen)))
    window.close()
    assert script.done and window.isVisible()  # cancelled: still there, engine still running
    assert "only escalation engine" in seen[0]
    for stops in (
        "paging (SMS, WhatsApp, voice, e-mail, webhooks)",
        "SLA warnings and breaches",
        "sign out instead",
    ):
        assert stops in seen[0]
    script = DialogScript((QMessageBox, _answer_quit("Quit and stop the engine", seen)))
    window.close()
    assert script.done and not window.isVisible() and window.outcome == "quit"
    services.shutdown()


def test_no_question_when_another_engine_runs(qtbot: QtBot, centre: AppContext, runner: EngineRunner) -> None:
    with write_session(centre.sessions) as s:
        now = centre.clock.now()
        s.add(EngineNode(id="server-1:serve", hostname="server-1", pid=1, mode="serve", version="0.1",
                         started_at=now, heartbeat_at=now))  # fmt: skip
    services = ConsoleServices(centre, console_app.sign_in(centre, "thandi", PASSWORD["thandi"]))
    window = MainWindow(services, runner=runner, sound=False)
    qtbot.addWidget(window)
    window.show()
    qtbot.waitUntil(lambda: not window.engine_is_the_only_one(), timeout=10_000)
    window.close()
    assert not window.isVisible()
    services.shutdown()
