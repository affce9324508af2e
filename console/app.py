"""Starting the console: database, sign-in, first run, demo data, embedded engine, main window.

`run(settings)` is what `watchkeeper` (no command) calls. Everything that can go wrong at start — a database
that does not answer, a schema at the wrong revision, a missing keyring — ends in a dialog with the engine's
message, never a traceback. On a database with no operator accounts (the README's `make run` on a fresh
SQLite file) a first-run dialog creates the administrator account, prefilled with the user name "admin" (the
password is chosen there; none is ever built in), and offers to load the demo data.

A console serves one shift after another: File → Sign out closes the main window and asks the next person to
sign in, while the embedded engine started at the first sign-in keeps running (and paging) in between. The
engine stops only when the console quits, which asks first when it is the only engine running.
"""

from __future__ import annotations

import logging
import os
import sys
from datetime import datetime
from typing import Any

from PySide6.QtCore import QSettings, Qt
from PySide6.QtGui import QGuiApplication, QIcon
from PySide6.QtWidgets import QApplication, QMessageBox, QWidget

from console.alerts import icon_path
from console.dialogs import ChangePasswordDialog, FirstRunDialog, SignInDialog
from console.services import ConsoleServices, SignedIn
from console.theme import apply_theme
from engine import accounts
from engine.context import AppContext
from engine.db import read_session, write_session
from engine.errors import WatchkeeperError
from engine.settings import Settings

log = logging.getLogger(__name__)

# Libraries that report routine work at INFO (every scheduler job added and run, every migration check): an
# operator's terminal shows their warnings only, unless verbose (DEBUG) logging was chosen.
QUIET_LOGGERS = ("apscheduler", "alembic")


def quiet_library_logs(settings: Settings) -> None:
    verbose = settings.log_level.upper() == "DEBUG"
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.NOTSET if verbose else logging.WARNING)


def signed_in(result: accounts.SignIn, now: datetime) -> SignedIn:
    a = result.account
    return SignedIn(
        operator_id=a.id,
        username=a.username,
        display_name=a.display_name,
        role=a.role,
        person_id=a.person_id,
        must_change_password=a.must_change_password,
        previous_sign_in_at=result.previous_sign_in_at,
        signed_in_at=now,
    )


def sign_in(ctx: AppContext, username: str, password: str) -> SignedIn:
    """The operator for these credentials (SignInFailed otherwise: wrong, or locked for a while); the
    engine records the sign-in (or the failure) in the audit trail."""
    return signed_in(accounts.sign_in(ctx, username, password, via="console"), ctx.clock.now())


def create_first_admin(ctx: AppContext, username: str, password: str, display_name: str) -> SignedIn | None:
    with write_session(ctx.sessions) as session:
        op = accounts.ensure_first_admin(
            session,
            ctx.clock.now(),
            username=username,
            password=password,
            display_name=display_name,
            via="console",
        )
        if op is None:
            return None
        return SignedIn(
            operator_id=op.id,
            username=op.username,
            display_name=op.display_name,
            role=op.role,
            signed_in_at=ctx.clock.now(),
        )


def database_is_empty(ctx: AppContext) -> bool:
    from sqlalchemy import func, select

    from engine.models import Incident, Policy

    with read_session(ctx.sessions) as session:
        policies = session.scalar(select(func.count()).select_from(Policy)) or 0
        incidents = session.scalar(select(func.count()).select_from(Incident)) or 0
        return not policies and not incidents


def describe(ctx: AppContext) -> str:
    try:
        from engine.bootstrap import describe_database

        return describe_database(ctx.db.url)
    except Exception:
        return ctx.db.url.render_as_string(hide_password=True)


def error_dialog(title: str, text: str, parent: QWidget | None = None) -> None:
    box = QMessageBox(QMessageBox.Icon.Critical, title, text, QMessageBox.StandardButton.Ok, parent)
    box.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    box.exec()


def operator_message(exc: BaseException) -> str:
    """One readable paragraph for an operator; engine errors are already written for people."""
    if isinstance(exc, WatchkeeperError):
        return str(exc)
    text = " ".join(str(exc).split()) or type(exc).__name__
    return f"{type(exc).__name__}: {text[:400]}"


def choose_operator(
    ctx: AppContext, *, ask_demo: bool, after_sign_out: bool = False, engine_running: bool = False
) -> tuple[SignedIn | None, bool]:
    """First run (no accounts): create the admin; otherwise sign in (and, after a password reset, choose a
    new password). Returns (operator, load demo?); (None, False) when nobody signs in and the console quits.

    After a sign-out the dialog says the engine keeps running, and closing it asks before quitting."""
    with read_session(ctx.sessions) as session:
        first_run = accounts.needs_first_admin(session)
    if first_run:
        dialog = FirstRunDialog(database=describe(ctx), offer_demo=ask_demo)
        while True:
            if dialog.exec() != FirstRunDialog.DialogCode.Accepted:
                return None, False
            try:
                operator = create_first_admin(
                    ctx, dialog.username.text().strip(), dialog.password.text(), dialog.display_name.text()
                )
            except WatchkeeperError as exc:
                dialog.error.setText(str(exc))
                dialog.error.show()
                continue
            if operator is None:  # someone else created an account meanwhile: sign in normally
                break
            return operator, ask_demo and dialog.load_demo.isChecked()
    status = ""
    if after_sign_out:
        status = (
            "Signed out. The escalation engine in this console keeps running: paging continues while nobody "
            "is signed in."
            if engine_running
            else "Signed out."
        )
    while True:
        last_user = "" if after_sign_out else str(QSettings().value("signin/last_user", "") or "")
        signin = SignInDialog(
            lambda u, p: sign_in(ctx, u, p), database=describe(ctx), username=last_user, status=status
        )
        if signin.exec() != SignInDialog.DialogCode.Accepted:
            if after_sign_out and not quit_while_signed_out(ctx, engine_running):
                continue
            return None, False
        operator: SignedIn = signin.result_value
        if operator.must_change_password and not change_password_now(ctx, operator, signin.password.text()):
            continue
        QSettings().setValue("signin/last_user", operator.username)
        show_handover(ctx, operator, always=after_sign_out)
        return operator, False


def change_password_now(ctx: AppContext, operator: SignedIn, current: str) -> bool:
    """After a reset the new password comes before anything else; False when the person gives up."""
    dialog = ChangePasswordDialog(
        lambda old, new: accounts.change_password(ctx, operator.identity(), old, new),
        username=operator.username,
        required=True,
        current=current,
    )
    if dialog.exec() != ChangePasswordDialog.DialogCode.Accepted:
        return False
    operator.must_change_password = False
    return True


def show_handover(ctx: AppContext, operator: SignedIn, *, always: bool = False) -> None:
    """The note the last shift left for this person, with the open, unacknowledged and breached incidents;
    shown when there is a note they have not seen (or at any sign-in that follows a sign-out)."""
    from console.handover import HandoverDialog
    from engine import handover

    now = ctx.clock.now()
    with read_session(ctx.sessions) as session:
        found = handover.handover_for(session, operator.identity(), operator.previous_sign_in_at, now)
    if found.note is None and not always:
        return
    HandoverDialog(found, signed_in_as=operator.display_name).exec()


def other_engines_alive(ctx: AppContext) -> bool:
    from engine.board import board_health

    with read_session(ctx.sessions) as session:
        alive = board_health(session, ctx.clock.now(), ctx.settings)["engines_alive"]
    return any(node != ctx.node_id for node in alive)


def quit_while_signed_out(ctx: AppContext, engine_running: bool) -> bool:
    """Nobody signed in and the sign-in closed: quitting stops the engine, so ask when it is the only one."""
    from console.mainwindow import QUIT_TEXT

    if not engine_running or other_engines_alive(ctx):
        return True
    box = QMessageBox(QMessageBox.Icon.Warning, "Quit Watchkeeper?", "Quitting stops all paging.")
    box.setObjectName("quitQuestion")
    box.setInformativeText(QUIT_TEXT.split("\n\n")[0])
    quit_button = box.addButton("Quit and stop the engine", QMessageBox.ButtonRole.DestructiveRole)
    box.addButton("Back to sign-in", QMessageBox.ButtonRole.RejectRole)
    box.exec()
    return box.clickedButton() is quit_button


def load_demo_data(ctx: AppContext, by: Any = None) -> dict[str, Any]:
    """The demo centre, loaded in the name of `by` (the administrator who just made the first account)."""
    from engine.demo import DEMO_ACTOR, load_demo

    return load_demo(ctx, by=by or DEMO_ACTOR)


def start_engine(ctx: AppContext) -> Any:
    """The embedded engine: a process of its own (engine.engine_process), or with `engine_process =
    "console"` threads of this process."""
    runner: Any
    if ctx.settings.engine_process == "console":
        from engine.runner import EngineRunner

        runner = EngineRunner(ctx, mode="console")
    else:
        from engine.engine_process import EngineProcess

        runner = EngineProcess(ctx)
    runner.start()
    return runner


def _no_display() -> bool:
    if sys.platform != "linux" or os.environ.get("QT_QPA_PLATFORM"):
        return False
    return not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


SMOKE_MODULES = (
    "console.mainwindow",
    "console.detail",
    "console.editors.widget",
    "console.stats.widget",
    "console.history.widget",
    "console.settings_dialog",
)


def smoke_test(ctx: AppContext, app: QApplication) -> int:
    """`watchkeeper --smoke-test`: what an installer or CI checks of a build without anyone at the keyboard.
    The database opens, the first window (first-run or sign-in) paints, and every window the console opens
    later imports (charts, editors, printing). Nobody is signed in and no engine starts."""
    import importlib

    with read_session(ctx.sessions) as session:
        first_run = accounts.needs_first_admin(session)
    dialog: QWidget = (
        FirstRunDialog(database=describe(ctx), offer_demo=False)
        if first_run
        else SignInDialog(lambda u, p: sign_in(ctx, u, p), database=describe(ctx))
    )
    dialog.show()
    app.processEvents()
    painted = dialog.grab()
    dialog.close()
    for name in SMOKE_MODULES:
        importlib.import_module(name)
    print(
        f"console smoke test passed: Qt {app.platformName()}, "
        f"{'first-run' if first_run else 'sign-in'} window painted {painted.width()}x{painted.height()}, "
        f"{len(SMOKE_MODULES)} console parts loaded, {describe(ctx)}",
        flush=True,
    )
    return 0 if not painted.isNull() else 1


def run(settings: Settings, *, demo: bool | None = None, smoke: bool = False) -> int:
    """The console, from the settings to the end of the shift; returns the process exit code."""
    if _no_display():
        sys.stderr.write(
            "watchkeeper: no display to open the console on (DISPLAY is not set); "
            "use `watchkeeper serve` for a service, or run under Xvfb\n"
        )
        return 1
    quiet_library_logs(settings)
    app = QApplication.instance() or QApplication(sys.argv[:1])
    assert isinstance(app, QApplication)
    app.setOrganizationName("Watchkeeper")
    app.setApplicationName("watchkeeper")
    app.setWindowIcon(QIcon(str(icon_path())))
    QGuiApplication.setDesktopFileName("watchkeeper")
    qsettings = QSettings()
    apply_theme(
        app,
        dark=qsettings.value("view/dark", False, type=bool),
        large=qsettings.value("view/large", False, type=bool),
    )

    try:
        from engine.bootstrap import open_context

        ctx = open_context(settings, "console")
    except Exception as exc:
        if smoke:  # nobody is there to close a dialog
            sys.stderr.write(f"console smoke test failed: {operator_message(exc)}\n")
            return 1
        error_dialog(
            "Watchkeeper cannot start", f"The database could not be opened.\n\n{operator_message(exc)}"
        )
        return 1

    if smoke:
        try:
            return smoke_test(ctx, app)
        finally:
            ctx.db.dispose()

    runner: Any = None
    services: ConsoleServices | None = None
    try:
        empty = database_is_empty(ctx)
        first = True
        while True:
            operator, wants_demo = choose_operator(
                ctx,
                ask_demo=empty and first,
                after_sign_out=not first,
                engine_running=runner is not None,
            )
            if operator is None:
                return 0
            if first:
                if empty and (wants_demo or demo or os.environ.get("WATCHKEEPER_DEMO") == "1"):
                    QApplication.setOverrideCursor(Qt.CursorShape.WaitCursor)
                    try:
                        load_demo_data(ctx, operator.identity())
                    except Exception as exc:
                        error_dialog(
                            "Demo data", f"The demo data could not be loaded:\n\n{operator_message(exc)}"
                        )
                    finally:
                        QApplication.restoreOverrideCursor()
                if settings.engine_mode != "watch":
                    try:
                        runner = start_engine(ctx)
                    except Exception as exc:
                        error_dialog(
                            "Engine not started",
                            "The embedded engine could not start, so this console will not send messages. "
                            f"The board still works.\n\n{operator_message(exc)}",
                        )
            services = ConsoleServices(ctx, operator)
            window = open_window(services, runner)
            code = int(app.exec())
            services.shutdown()
            services = None
            # A sign-out hands the console to the next person; the engine has kept running throughout.
            if window.outcome != "sign_out":
                return code
            window.deleteLater()
            first = False
    except Exception as exc:
        log.exception("console failed")
        error_dialog("Watchkeeper stopped", operator_message(exc))
        return 1
    finally:
        if runner is not None:
            try:
                runner.stop()
            except Exception:
                log.exception("engine stop failed")
        if services is not None:
            services.shutdown()
        ctx.db.dispose()


def open_window(services: ConsoleServices, runner: Any) -> Any:
    from console.heap import keep_collector_quiet
    from console.mainwindow import MainWindow

    window = MainWindow(services, runner=runner)
    keep_collector_quiet(window)
    window.show()
    return window


start_console = run
