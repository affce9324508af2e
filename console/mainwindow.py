"""The console's main window: header (unacknowledged counter, engine state, clock), a banner for trouble, the
board with the incident detail docked beside it, and the supervisor tabs mounted on first use.

The layout (window geometry, docks, board columns and sort) is remembered per operator with QSettings; the
theme, the large-font option and mute-for-this-shift are in the View and Alerts menus.

File → Sign out hands the console over without stopping the embedded engine: the outgoing operator may leave
a handover note, the window closes (`outcome == "sign_out"`) and console.app asks the next person to sign in
while the engine keeps paging. Quitting while this console's engine is the only one running asks first and
says what stops. Tabs a person may not use (Audit for operators) are not shown.

Below the board, two docks: Alerts (console.alert_list: every condition that needs someone now, counted in
the header; F2) and Notifications (console.notifications: the signed-in person's, unread count in the header;
F3). A notification about a workflow item opens it in the Work items tab (`open_item`).
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QSettings, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QCloseEvent, QIcon, QKeySequence
from PySide6.QtWidgets import (
    QApplication,
    QDockWidget,
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QMessageBox,
    QTabWidget,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from console import fit
from console.alert_list import AlertList, counts_text, live_alerts
from console.alerts import AlertCenter, icon_path
from console.board.widget import BoardWidget
from console.detail import DetailWindow, IncidentDetail
from console.notifications import NotificationsPanel
from console.services import ConsoleServices
from console.theme import apply_theme
from engine.permissions import Action

log = logging.getLogger(__name__)

GIL_SWITCH_INTERVAL_S = 0.0005

KEYS_HELP = """<b>Board keys</b> (while the table has the focus)<br>
A acknowledge · W I'm on it · R resolve (asks: R again) · E escalate to the next level (asks: E again) ·
Shift+E escalate to a chosen level · G re-assign · K classify (category, sensitive) · N add a note ·
Delete cancel with a reason ·
Enter open the detail · P pop the detail out (same keys there, Esc closes) ·
↑/↓ PgUp/PgDn move · Home/End first/last row · Shift+↑/↓ select several<br><br>
<b>Messages</b> (in its table) R retry a failed message · S send on another of the person's channels ·
Enter open its incident on the board<br>
<b>Work items</b> (in its table) N new item · G assign · D done (asks: D again) · Enter open its incident<br><br>
<b>Anywhere</b><br>
Ctrl+N new incident · Ctrl+F or / search · Ctrl+L or : command line · Esc back to the table ·
Ctrl+1…7 tabs · Ctrl+Shift+D dark theme · Ctrl+Shift+L large font · Ctrl+M mute alerts for this shift ·
F5 reload the board · Ctrl+Shift+O sign out (hand over) · Ctrl+Q quit<br><br>
<b>Alerts and notifications</b><br>
F2 the alert list · F3 your notifications · in either list: Enter open (a notification is marked read) ·
A acknowledge the alert's incident (alert list) · Esc back to the table<br><br>
<b>Command line</b><br>ack 1234 · res 1234 [note] · esc 1234 [level] · note 1234 text · cancel 1234 reason ·
assign 1234 team|person HANDLE · assign 1234 me · classify 1234 [category] [sensitive|not-sensitive] ·
reopen 1234 · show 1234 · new summary · find text (or /text)"""

# The tabs beside the board, each mounted on first use and shown to those its Action allows (operators see
# Messages and Work items too; Audit is for supervisors and up).
SUPERVISOR_TABS: list[tuple[str, str, str, str, Action]] = [
    # (tab title, module, class, placeholder text, what seeing it needs)
    (
        "Editors",
        "console.editors",
        "EditorsWidget",
        "Policies, people, teams and schedules",
        Action.VIEW_CONFIGURATION,
    ),
    ("Statistics", "console.stats", "StatsWidget", "Response and resolution statistics", Action.VIEW_REPORTS),
    ("History", "console.history", "HistoryWidget", "Past incidents", Action.VIEW_REPORTS),
    ("Audit", "console.audit", "AuditWidget", "Who changed what", Action.VIEW_AUDIT),
    ("Messages", "console.messages", "MessagesWidget", "Every message sent", Action.MESSAGE_LOG),
    ("Work items", "console.items", "WorkItemsWidget", "Workflow items", Action.WORKFLOW_ITEMS),
]

QUIT_TEXT = (
    "This console runs the only escalation engine on this database. Quitting stops, until another console "
    "or a `watchkeeper serve` starts: paging (SMS, WhatsApp, voice, e-mail, webhooks), escalation to the next "
    "level, repeats and fallbacks, SLA warnings and breaches, and reminders.\n\n"
    "To hand over the shift without stopping the engine, sign out instead."
)


def mount(services: ConsoleServices, module: str, cls: str, placeholder: str) -> QWidget:
    """The supervisor widget, or a plain placeholder when it cannot be imported or built."""
    try:
        imported = __import__(module, fromlist=[cls])
        widget: QWidget = getattr(imported, cls)(services)
        return widget
    except Exception as exc:
        log.warning("%s.%s unavailable: %s", module, cls, exc)
        label = QLabel(f"{placeholder} — not available in this build.\n({exc})")
        label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        label.setWordWrap(True)
        return label


class MainWindow(QMainWindow):
    # Emitted when the window closes because its person signed out (the console asks for the next one).
    signed_out = Signal()

    def __init__(
        self,
        services: ConsoleServices,
        *,
        runner: Any = None,
        sound: bool = True,
        start_feed: bool = True,
    ) -> None:
        super().__init__()
        # The database worker is a Python thread: every call from Qt back into Python (each painted cell)
        # must take the GIL from it, waiting up to the switch interval (5 ms by default) each time, which
        # turns a repaint during a load into hundreds of milliseconds. A short interval bounds that wait.
        sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
        self.services = services
        self.runner = runner
        self.outcome = "quit"  # or "sign_out": what closing the window means to console.app
        self._close_confirmed = False
        self._other_engines: list[str] | None = None  # alive engines besides ours, from the health feed
        self.setWindowTitle(f"Watchkeeper — {services.operator.display_name} ({services.operator.role})")
        self.setWindowIcon(QIcon(str(icon_path())))
        self.alerts = AlertCenter(self, sound=sound)
        self._problems: dict[str, tuple[str, str]] = {}
        self._detail_windows: list[DetailWindow] = []

        self.board = BoardWidget(services, self, start=False)
        self.board.message.connect(self.show_message)
        self.board.open_detail.connect(self.open_detail)
        self.board.model.row_arrived.connect(self.alerts.consider)
        # Once per event-loop turn however many slices of rows arrived in it.
        self._counter_timer = QTimer(self)
        self._counter_timer.setSingleShot(True)
        self._counter_timer.setInterval(0)
        self._counter_timer.timeout.connect(self._update_counter)
        self.board.model.counts_changed.connect(self._counter_timer.start)
        self.board.feed.database_state.connect(self._on_database_state)
        self.board.feed.health.connect(self._on_health)
        self.board.feed.first_rows.connect(self._on_first_rows)
        self.board.feed.loaded.connect(self._on_loaded)
        self.alerts.alerted.connect(lambda title, text: self.show_message(f"⚠ {title}: {text}", True))
        self.alert_list = AlertList(self)
        self.alert_list.open_incident.connect(lambda i: self.open_link("incident", i))
        self.alert_list.acknowledge.connect(lambda i: self.board.act_on("acknowledge", i))
        self.alert_list.back.connect(self.back_to_board)
        self.alert_list.message.connect(self.show_message)
        self.notifications = NotificationsPanel(services, self, start=start_feed)
        self.notifications.open_link.connect(self.open_link)
        self.notifications.back.connect(self.back_to_board)
        services.worker.failed.connect(lambda what, exc: self.show_message(f"{what} failed: {exc}", True))

        self.tabs = QTabWidget()
        self.tabs.setObjectName("tabs")
        self.tabs.addTab(self.board, "Board")
        self._mounted: dict[int, bool] = {}
        self.tab_specs = [spec for spec in SUPERVISOR_TABS if services.can(spec[4])]
        for title, *_rest in self.tab_specs:
            self.tabs.addTab(QWidget(), title)
        self.tabs.currentChanged.connect(self._mount_tab)

        central = QWidget()
        layout = QVBoxLayout(central)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(self._header())
        self.banner = QLabel()
        self.banner.setObjectName("banner")
        self.banner.setWordWrap(True)
        self.banner.hide()
        layout.addWidget(self.banner)
        layout.addWidget(self.tabs, 1)
        self.setCentralWidget(central)

        self.detail = IncidentDetail(services, self)
        self.detail.pop_out_requested.connect(lambda i: self.open_detail(i, True))
        self.detail.classify_requested.connect(lambda i: self.board.act_on("classify", i))
        self.board.current_changed.connect(self._follow_selection)
        self.detail_dock = QDockWidget("Incident", self)
        self.detail_dock.setObjectName("detailDock")
        self.detail_dock.setWidget(self.detail)
        self.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, self.detail_dock)
        fit.dock_beside_board(self.detail_dock, self.tabs)
        fit.filters_may_shrink(self.board)
        # Below the board only: the detail keeps the full height of the window on the right.
        self.setCorner(Qt.Corner.BottomRightCorner, Qt.DockWidgetArea.RightDockWidgetArea)
        self.alerts_dock = self._bottom_dock("Alerts", "alertsDock", self.alert_list)
        self.notifications_dock = self._bottom_dock("Notifications", "notificationsDock", self.notifications)
        self.tabifyDockWidget(self.alerts_dock, self.notifications_dock)
        self.alerts_dock.raise_()
        self.resizeDocks([self.alerts_dock], [150], Qt.Orientation.Vertical)

        self._menus()
        self.statusBar().showMessage("Loading the board…")
        self._clock_timer = QTimer(self)
        self._clock_timer.setInterval(1000)
        self._clock_timer.timeout.connect(self._tick)
        self._clock_timer.start()
        self.restore_layout()
        if start_feed:
            self.board.feed.start()

    # -- header, banner, menus --------------------------------------------------------------------------------

    def _header(self) -> QWidget:
        bar = QWidget()
        bar.setObjectName("header")
        row = QHBoxLayout(bar)
        row.setContentsMargins(8, 4, 8, 4)
        title = QLabel("<b>WATCHKEEPER</b>")
        self.counter = QLabel("0 unacknowledged")
        self.counter.setObjectName("unackCounter")
        self.counter.setProperty("alert", False)
        self.counter.setToolTip("Open incidents nobody has acknowledged yet")
        self.engine_label = QLabel("Engine: starting")
        self.engine_label.setObjectName("engineState")
        self.mute_label = QLabel("")
        self.alert_counts = QToolButton()
        self.alert_counts.setObjectName("alertCounts")
        self.alert_counts.setText("No alerts")
        self.alert_counts.setProperty("alert", False)
        self.alert_counts.setToolTip("Alerts by kind; the list is below the board (F2)")
        self.alert_counts.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.alert_counts.clicked.connect(self.focus_alerts)
        self.notifications_button = QToolButton()
        self.notifications_button.setObjectName("notificationsButton")
        self.notifications_button.setText("Notifications")
        self.notifications_button.setToolTip("Your notifications, your role's and your teams' (F3)")
        self.notifications_button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.notifications_button.clicked.connect(self.focus_notifications)
        self.notifications.unread_changed.connect(self._show_unread)
        self.clock_label = QLabel("")
        who = self.services.operator
        row.addWidget(title)
        row.addSpacing(16)
        row.addWidget(self.counter)
        row.addSpacing(8)
        row.addWidget(self.alert_counts)
        row.addSpacing(16)
        row.addWidget(self.engine_label)
        row.addWidget(self.mute_label)
        row.addStretch(1)
        row.addWidget(self.notifications_button)
        row.addSpacing(16)
        self.user_label = QLabel(f"{who.display_name} · {who.role}")
        self.user_label.setToolTip(self.user_label.text())
        row.addWidget(self.user_label)
        row.addSpacing(16)
        row.addWidget(self.clock_label)
        # The header gives way before it widens the window (the large font, a busy shift's counts): the
        # counters keep their room, the rest is cut short and kept whole in its tooltip.
        # The clock is never cut: the time is what a shift is run by.
        for widget in (title, self.engine_label, self.mute_label, self.user_label):
            widget.setMinimumWidth(24)
        for button in (self.alert_counts, self.notifications_button):
            button.setMinimumWidth(60)
        return bar

    def _action(
        self,
        menu: Any,
        text: str,
        key: str | QKeySequence | None,
        slot: Callable[..., Any],
        *,
        checkable: bool = False,
    ) -> QAction:
        act = QAction(text, self)
        if key:
            act.setShortcut(QKeySequence(key))
        act.setCheckable(checkable)
        act.triggered.connect(slot)
        menu.addAction(act)
        return act

    def _menus(self) -> None:
        bar = self.menuBar()
        file_menu = bar.addMenu("&File")
        self._action(file_menu, "&New incident…", None, lambda: self.board.new_incident())
        self._action(file_menu, "&Settings…", "Ctrl+,", self.open_settings)
        file_menu.addSeparator()
        self._action(file_menu, "&Handover…", None, self.show_handover)
        self._action(file_menu, "Change &password…", None, self.change_password)
        self.sign_out_action = self._action(file_menu, "Sign &out…", "Ctrl+Shift+O", self.sign_out)
        file_menu.addSeparator()
        self._action(file_menu, "&Quit", "Ctrl+Q", self.close)
        view = bar.addMenu("&View")
        settings = QSettings()
        self.dark_action = self._action(
            view, "&Dark theme (night shift)", "Ctrl+Shift+D", self._theme_changed, checkable=True
        )
        self.dark_action.setChecked(settings.value("view/dark", False, type=bool))
        self.large_action = self._action(
            view, "&Large font", "Ctrl+Shift+L", self._theme_changed, checkable=True
        )
        self.large_action.setChecked(settings.value("view/large", False, type=bool))
        view.addSeparator()
        self._action(
            view,
            "Show incident &detail",
            "Ctrl+D",
            lambda: self.detail_dock.setVisible(not self.detail_dock.isVisible()),
        )
        self._action(view, "&Reload the board", "F5", self.reload_board)
        for n in range(self.tabs.count()):
            self._action(
                view,
                f"Tab: {self.tabs.tabText(n)}",
                f"Ctrl+{n + 1}",
                lambda _c=False, i=n: self.tabs.setCurrentIndex(i),
            )
        alerts = bar.addMenu("&Alerts")
        self.mute_action = self._action(
            alerts, "&Mute sound and pop-ups for this shift", "Ctrl+M", self._mute_changed, checkable=True
        )
        alerts.addSeparator()
        self._action(alerts, "Go to the &alert list", "F2", self.focus_alerts)
        self._action(alerts, "Go to my &notifications", "F3", self.focus_notifications)
        self._action(alerts, "Mark all notifications &read", None, self.notifications.mark_all_read)
        help_menu = bar.addMenu("&Help")
        self._action(help_menu, "&Keys and commands", "F1", self.show_keys)

    def _theme_changed(self) -> None:
        dark, large = self.dark_action.isChecked(), self.large_action.isChecked()
        QSettings().setValue("view/dark", dark)
        QSettings().setValue("view/large", large)
        app = QApplication.instance()
        if isinstance(app, QApplication):
            palette = apply_theme(app, dark=dark, large=large)
            self.board.model.set_palette(palette)
            self.board.view.verticalHeader().setDefaultSectionSize(
                self.board.view.fontMetrics().height() + 10
            )
            self.board.fit_columns()
            self._restyle(self.counter)
            self._restyle(self.banner)

    def _mute_changed(self) -> None:
        muted = self.mute_action.isChecked()
        self.alerts.set_muted(muted)
        self.mute_label.setText("🔇 alerts muted this shift" if muted else "")
        self.show_message("Alerts muted until you sign out" if muted else "Alerts on", False)

    def show_keys(self) -> None:
        QMessageBox.information(self, "Keys and commands", KEYS_HELP)

    def open_settings(self) -> None:
        try:
            from console.settings_dialog import SettingsDialog

            dialog = SettingsDialog(self.services, self)
        except Exception as exc:
            self.show_message(f"Settings are not available in this build: {exc}", True)
            return
        dialog.exec()

    def _mount_tab(self, index: int) -> None:
        if index <= 0 or self._mounted.get(index):
            return
        title, module, cls, placeholder, _action = self.tab_specs[index - 1]
        widget = mount(self.services, module, cls, placeholder)
        self._mounted[index] = True
        self.tabs.blockSignals(True)
        old = self.tabs.widget(index)
        self.tabs.removeTab(index)
        old.deleteLater()
        self.tabs.insertTab(index, fit.scrolling(widget), title)
        self.tabs.setCurrentIndex(index)
        self.tabs.blockSignals(False)

    # -- live state -------------------------------------------------------------------------------------------

    def show_message(self, text: str, error: bool = False) -> None:
        self.statusBar().showMessage(text, 15_000 if error else 6_000)
        self.statusBar().setStyleSheet("QStatusBar { color: #c0081b; font-weight: bold; }" if error else "")

    def _update_counter(self) -> None:
        n = self.board.model.unacknowledged_count()
        self.counter.setText(f"{n} unacknowledged")
        if self.counter.property("alert") != (n > 0):  # re-polishing costs a style sheet pass: only on change
            self.counter.setProperty("alert", n > 0)
            self._restyle(self.counter)
        self._update_alerts()

    def _update_alerts(self) -> None:
        now = self.services.ctx.clock.now()
        found = live_alerts(self.board.model.open_rows(), now, self._problems)
        self.alert_list.show_alerts(found, now)
        self.alert_counts.setText(counts_text(found))
        urgent = any(a.urgent for a in found)
        if self.alert_counts.property("alert") != urgent:
            self.alert_counts.setProperty("alert", urgent)
            self._restyle(self.alert_counts)

    def _show_unread(self, unread: int) -> None:
        self.notifications_button.setText(f"Notifications: {unread} unread" if unread else "Notifications")
        self.notifications_dock.setWindowTitle(f"Notifications ({unread})" if unread else "Notifications")

    def _bottom_dock(self, title: str, name: str, widget: QWidget) -> QDockWidget:
        dock = QDockWidget(title, self)
        dock.setObjectName(name)
        dock.setWidget(widget)
        self.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, dock)
        return dock

    def focus_alerts(self) -> None:
        self.alerts_dock.show()
        self.alerts_dock.raise_()
        self.alert_list.focus()

    def focus_notifications(self) -> None:
        self.notifications_dock.show()
        self.notifications_dock.raise_()
        self.notifications.focus()

    def back_to_board(self) -> None:
        self.tabs.setCurrentIndex(0)
        self.board.back_to_table()

    def open_link(self, kind: str, target: int) -> None:
        """Open what an alert or a notification is about: an incident on the board (and in the detail), or a
        workflow item in the Work items tab (`open_item`)."""
        if kind == "item":
            self.open_item(target)
            return
        self.tabs.setCurrentIndex(0)
        if not self.board.select_incident(target):
            self.show_message(f"#{target} is not on the board with the current filters: shown in the detail")
        self.board.back_to_table()
        self.open_detail(target, False)

    @staticmethod
    def _restyle(widget: QWidget) -> None:
        widget.style().unpolish(widget)
        widget.style().polish(widget)

    def _set_problem(self, key: str, text: str | None, level: str = "warning") -> None:
        if text:
            self._problems[key] = (text, level)
        else:
            self._problems.pop(key, None)
        self._update_alerts()
        if not self._problems:
            self.banner.hide()
            return
        worst = "error" if any(lv == "error" for _t, lv in self._problems.values()) else "warning"
        self.banner.setText("   ·   ".join(t for t, _lv in self._problems.values()))
        self.banner.setProperty("level", worst)
        self._restyle(self.banner)
        self.banner.show()

    def _on_database_state(self, ok: bool, message: str) -> None:
        self._set_problem(
            "database", None if ok else message + " — the board shows the last known state", "error"
        )

    def _on_health(self, health: dict[str, Any]) -> None:
        self._set_problem("database", None)
        alive = health.get("engines_alive", [])
        self._other_engines = [n for n in alive if n != self.services.ctx.node_id]
        if self.services.ctx.settings.engine_mode == "watch":
            engine_ok = bool(alive)
            label = f"Engine: {len(alive)} service(s) running" if alive else "Engine: NONE RUNNING"
        else:
            engine_ok = self._embedded_running()
            label = "Engine: embedded, running" if engine_ok else "Engine: STOPPED"
        self.engine_label.setText(label)
        self._set_problem(
            "engine",
            None if engine_ok else "No engine is running: escalations and messages are NOT being sent",
            "error",
        )
        simulated = health.get("simulated_channels", [])
        self._set_problem(
            "simulated",
            f"Simulated channels: {', '.join(simulated)} — messages on them do not leave this machine"
            if simulated
            else None,
        )
        aside = int(health.get("intake_set_aside") or 0)
        self._set_problem(
            "intake",
            f"{aside} Events API event(s) could not be applied and were set aside "
            "(`watchkeeper intake` lists them with why)"
            if aside
            else None,
        )
        not_set_up = health.get("channels_not_set_up", {})
        self._set_problem(
            "not_set_up",
            "Not set up, skipped in every chain: "
            + "; ".join(f"{name} ({why})" for name, why in sorted(not_set_up.items()))
            if not_set_up
            else None,
        )

    def _embedded_running(self) -> bool:
        if self.runner is None:
            return False
        if hasattr(self.runner, "running"):  # the engine's own process (engine.engine_process)
            return bool(self.runner.running)
        scheduler = getattr(self.runner, "scheduler", None)
        return bool(getattr(scheduler, "running", True))

    def _on_first_rows(self) -> None:
        """The top of the board is showing: the operator can start working while the rest loads."""
        self.board.view.setFocus()
        if self.board.model.rowCount() and not self.board.view.currentIndex().isValid():
            self.board.view.selectRow(0)

    def _on_loaded(self) -> None:
        self.alerts.remember(self.board.model.rows(), self.services.ctx.clock.now())
        self._update_counter()
        self.statusBar().showMessage(f"Board loaded: {self.board.model.total_count()} incidents", 4000)
        if self.board.model.rowCount() and not self.board.view.currentIndex().isValid():
            self.board.view.setFocus()
            self.board.view.selectRow(0)

    def _tick(self) -> None:
        now = self.services.ctx.clock.now()
        self.clock_label.setText(now.astimezone().strftime("%a %d %b  %H:%M:%S"))
        if self.board.feed.is_loaded:
            # Only open incidents have live deadlines: the model keeps them apart, so this stays cheap.
            self.alerts.check_deadlines(self.board.model.open_rows(), now)
            self._update_counter()

    def _follow_selection(self, incident_id: int) -> None:
        if incident_id and self.detail_dock.isVisible():
            self.detail.show_incident(incident_id)

    def open_detail(self, incident_id: int, pop_out: bool) -> None:
        if pop_out:
            window = DetailWindow(self.services, incident_id, act=self.board.act_on, beside=self)

            def relay(text: str, _error: bool, w: DetailWindow = window) -> None:
                w.show_message(text)  # what the pop-out's own keys did, in its own status bar

            def gone(_o: object = None, w: DetailWindow = window) -> None:
                self.board.message.disconnect(relay)
                if w in self._detail_windows:
                    self._detail_windows.remove(w)

            self.board.message.connect(relay)
            window.destroyed.connect(gone)
            self._detail_windows.append(window)
            window.show()
            return
        self.detail_dock.show()
        self.detail_dock.raise_()
        self.detail.show_incident(incident_id)

    def open_item(self, item_id: int) -> None:
        """The Work items tab with `item_id` selected (a notification's link to a workflow item)."""
        titles = [self.tabs.tabText(n) for n in range(self.tabs.count())]
        if "Work items" not in titles:
            self.show_message(f"Work item {item_id}: the Work items tab is not available to you", True)
            return
        self.tabs.setCurrentIndex(titles.index("Work items"))  # mounts it on first use
        page = self.tabs.currentWidget()
        widget = page.widget() if hasattr(page, "widget") else page  # inside its scroll area
        if hasattr(widget, "show_item"):
            widget.show_item(item_id)
        else:
            self.show_message(f"Work item {item_id}: the Work items tab is not available in this build", True)

    def reload_board(self) -> None:
        self.board.feed.stop()
        self.board.model.clear()
        self.board.feed.is_loaded = False
        self.board.feed.start()

    # -- layout -----------------------------------------------------------------------------------------------

    def _key(self, name: str) -> str:
        return f"layout/{self.services.operator.username}/{name}"

    def restore_layout(self) -> None:
        settings = QSettings()
        geometry = settings.value(self._key("geometry"))
        if geometry is not None:
            self.restoreGeometry(geometry)  # type: ignore[arg-type]
        else:
            self.resize(1560, 900)
        state = settings.value(self._key("state"))
        if state is not None:
            self.restoreState(state)  # type: ignore[arg-type]
        header = settings.value(self._key("board_header"))
        if header is not None:
            self.board.view.horizontalHeader().restoreState(header)  # type: ignore[arg-type]
            self.board.fit_columns()
        view = settings.value(self._key("board_view"))
        if isinstance(view, str) and view:
            import json

            with contextlib.suppress(ValueError, TypeError):
                self.board.apply_view_state(json.loads(view))

    def save_layout(self) -> None:
        import json

        settings = QSettings()
        settings.setValue(self._key("geometry"), self.saveGeometry())
        settings.setValue(self._key("state"), self.saveState())
        settings.setValue(self._key("board_header"), self.board.view.horizontalHeader().saveState())
        settings.setValue(self._key("board_view"), json.dumps(self.board.view_state()))
        settings.sync()

    # -- shift handover and quitting ---------------------------------------------------------------------------

    def _shift_start(self) -> Any:
        from datetime import timedelta

        return self.services.operator.signed_in_at or self.services.ctx.clock.now() - timedelta(hours=12)

    def sign_out(self) -> None:
        """File → Sign out: an optional handover note, then the next person signs in; the engine keeps running."""
        from console.handover import SignOutDialog
        from console.history.records import replies
        from engine import handover

        dialog = SignOutDialog(
            self.services.operator.display_name, self, engine_running=self._embedded_running()
        )
        now, since = self.services.ctx.clock.now(), self._shift_start()
        self.services.worker.submit(
            lambda s: handover.shift_summary(s, now, since, limit=0),
            **replies(dialog, dialog.show_summary),
            what="shift summary",
        )
        if dialog.exec() != dialog.DialogCode.Accepted:
            return
        self.hand_over(dialog.text())

    def hand_over(self, note: str) -> None:
        """Write the handover note (if any) and the sign-out, then close the window for the next person."""
        from engine import accounts, handover

        ctx, who, since = self.services.ctx, self.services.identity, self._shift_start()

        def job() -> None:
            note_id = handover.write_note(ctx, who, note, shift_started_at=since).id if note.strip() else None
            accounts.sign_out(ctx, who, note_id=note_id)

        def done(_result: None) -> None:
            self.outcome = "sign_out"
            self._close_confirmed = True
            self.close()
            self.signed_out.emit()

        self.services.worker.call(
            job, done, lambda exc: self.show_message(f"Sign out failed: {exc}", True), what="sign out"
        )

    def show_handover(self) -> None:
        from console.handover import HandoverDialog
        from console.history.records import replies
        from engine import handover

        identity, now = self.services.identity, self.services.ctx.clock.now()

        def job(session: Any) -> handover.Handover:
            note = handover.latest_note(session)
            since = (note.shift_started_at if note is not None else None) or now - handover.DEFAULT_SHIFT
            return handover.Handover(note=note, summary=handover.shift_summary(session, now, since))

        def show(found: handover.Handover) -> None:
            HandoverDialog(found, self, signed_in_as=identity.label).exec()

        self.services.worker.submit(job, **replies(self, show), what="handover")

    def change_password(self) -> None:
        from console.dialogs import ChangePasswordDialog
        from engine import accounts

        ctx, who = self.services.ctx, self.services.identity
        dialog = ChangePasswordDialog(
            lambda old, new: accounts.change_password(ctx, who, old, new), self, username=who.name
        )
        if dialog.exec() == dialog.DialogCode.Accepted:
            self.show_message("Password changed")

    def engine_is_the_only_one(self) -> bool:
        """This console's embedded engine is running and no other engine has been seen alive (by the last
        health check; before the first one, assume it is alone)."""
        return self._embedded_running() and not self._other_engines

    def confirm_quit(self) -> bool:
        """Ask before quitting stops the only engine: Quit, Sign out instead, or Cancel. True: quit now."""
        if not self.engine_is_the_only_one():
            return True
        box = QMessageBox(
            QMessageBox.Icon.Warning, "Quit Watchkeeper?", "Quitting stops all paging.", parent=self
        )
        box.setObjectName("quitQuestion")
        box.setInformativeText(QUIT_TEXT)
        quit_button = box.addButton("Quit and stop the engine", QMessageBox.ButtonRole.DestructiveRole)
        sign_out_button = box.addButton("Sign out instead", QMessageBox.ButtonRole.AcceptRole)
        box.addButton(QMessageBox.StandardButton.Cancel)
        box.setDefaultButton(sign_out_button)
        box.exec()
        clicked = box.clickedButton()
        if clicked is quit_button:
            return True
        if clicked is sign_out_button:
            QTimer.singleShot(0, self.sign_out)
        return False

    def closeEvent(self, event: QCloseEvent) -> None:
        if not self._close_confirmed and not self.confirm_quit():
            event.ignore()
            return
        self._close_confirmed = True
        self.save_layout()
        self.board.shutdown()
        self.notifications.stop()
        self._clock_timer.stop()
        for window in list(self._detail_windows):
            window.close()
        super().closeEvent(event)
