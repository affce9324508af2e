"""Screenshots of the board (light, night-shift and large-font themes, the large font beside the open detail),
an incident's detail, the Messages and Work items tabs and the Notifications list (a team's notification that a
colleague has read), for docs/screenshots/ (run under Xvfb, at 1600×1000):

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python -m tests.console.make_screenshots

A throwaway SQLite database gets the demo centre (`watchkeeper demo`), the embedded engine pages the demo
incidents over the simulated channels, and the main window is captured as an administrator sees it. Window
layout and theme settings go to a throwaway directory, never the user's own.
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QCoreApplication, QEventLoop, QSettings, Qt, QTimer
from PySide6.QtWidgets import QApplication

OUT = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


def wait(ms: int) -> None:
    loop = QEventLoop()
    QTimer.singleShot(ms, loop.quit)
    loop.exec()


def wait_until(condition: Callable[[], bool], timeout_ms: int = 10_000) -> None:
    waited = 0
    while not condition() and waited < timeout_ms:
        wait(50)
        waited += 50


def main() -> int:
    app = QApplication(sys.argv[:1])
    with tempfile.TemporaryDirectory() as tmp:
        QCoreApplication.setOrganizationName("watchkeeper-screenshots")
        QCoreApplication.setApplicationName("watchkeeper-screenshots")
        for fmt in (QSettings.Format.NativeFormat, QSettings.Format.IniFormat):
            QSettings.setPath(fmt, QSettings.Scope.UserScope, str(Path(tmp) / "qsettings"))

        from console.app import load_demo_data, start_engine
        from console.detail import DetailWindow
        from console.mainwindow import MainWindow
        from console.services import ConsoleServices, SignedIn
        from console.theme import apply_theme
        from engine.bootstrap import open_context
        from engine.settings import Settings

        apply_theme(app, dark=False, large=False)
        ctx = open_context(Settings(db=f"sqlite:///{tmp}/shots.db"), "console")
        load_demo_data(ctx)
        runner = start_engine(ctx)
        from sqlalchemy import select

        from engine.models import Person

        with ctx.sessions() as s:  # the administrator is Thandi Nkosi, of Fire & Rescue: she sees its notices
            people = dict(s.execute(select(Person.handle, Person.id)).tuples().all())
        services = ConsoleServices(
            ctx, SignedIn(None, "admin", "Administrator", "admin", person_id=people["thandi.nkosi"])
        )
        window = MainWindow(services, runner=runner, sound=False)
        window.resize(1600, 1000)
        window.show()
        wait_until(lambda: window.board.feed.is_loaded)
        wait(6_000)  # the engine pages the demo incidents and the board follows
        first = window.board.model.row_at(0)["id"]
        window.board.select_incident(first)
        window.open_detail(first, False)
        wait(1_500)
        window.grab().save(str(OUT / "board.png"))

        detail = DetailWindow(services, first)
        detail.resize(1000, 700)
        detail.show()
        wait(1_500)
        detail.grab().save(str(OUT / "detail.png"))
        detail.close()

        from engine import items
        from engine.permissions import system

        items.create_item(
            ctx,
            system("demo"),
            title="Confirm the road is closed",
            time_limit_seconds=900,
            incident=first,
            assignee="thandi.nkosi",
        )
        for title, index in (("Messages", "messages.png"), ("Work items", "work-items.png")):
            window.tabs.setCurrentIndex(
                [window.tabs.tabText(n) for n in range(window.tabs.count())].index(title)
            )
            wait(2_000)
            window.grab().save(str(OUT / index))
        window.tabs.setCurrentIndex(0)
        wait(500)

        # Notifications: an incident assigned to Fire & Rescue reaches every member; Sipho dealt with one.
        from engine import api, inbox
        from engine.permissions import Identity

        rows = [window.board.model.row_at(n) for n in range(window.board.model.rowCount())]
        for row in rows[:2]:
            api.assign(ctx, row["id"], by="Nomvula Zulu", team="fire-rescue", reason="closest station")
        seen = inbox.inbox(ctx, Identity("sipho", "supervisor", person_id=people["sipho.dlamini"]))
        sipho = Identity(
            "sipho", "supervisor", display_name="Sipho Dlamini", person_id=people["sipho.dlamini"]
        )
        inbox.mark_read(ctx, sipho, seen["notifications"][-1]["id"])
        window.notifications.refresh()
        window.focus_notifications()
        window.resizeDocks([window.notifications_dock], [230], Qt.Orientation.Vertical)
        wait(2_000)
        window.grab().save(str(OUT / "notifications.png"))
        window.board.view.setFocus()

        # The large font is for a wall screen: every column on it, beside the open detail.
        window.large_action.setChecked(True)
        window._theme_changed()
        wait(1_500)
        window.grab().save(str(OUT / "board-large.png"))
        window.large_action.setChecked(False)
        window.dark_action.setChecked(True)
        window._theme_changed()
        wait(1_500)
        window.grab().save(str(OUT / "board-dark.png"))

        window.close()
        runner.stop()
        services.shutdown()
        QCoreApplication.processEvents()
        ctx.db.dispose()
    names = (
        "board.png",
        "detail.png",
        "messages.png",
        "work-items.png",
        "notifications.png",
        "board-large.png",
        "board-dark.png",
    )
    print("wrote", *(OUT / name for name in names))
    app.quit()
    return 0


if __name__ == "__main__":
    sys.exit(main())
