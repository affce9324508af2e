"""The board tab: command line and action buttons, filters and saved views, and the live incident table.

Keyboard first: A acknowledge, R resolve, E escalate to the next level (Shift+E: choose a level), G re-assign,
N add a note, Delete cancel with a reason, Enter open the detail, P pop it out, Ctrl+N new incident,
Ctrl+F or / search, Ctrl+L or : the command line, Escape back to the table. Single-letter keys act only while
the table has the focus, so typing in the search box or the command line never triggers them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import (
    QEvent,
    QItemSelection,
    QItemSelectionModel,
    QModelIndex,
    QPersistentModelIndex,
    QSettings,
    Qt,
    QTimer,
    Signal,
)
from PySide6.QtGui import QAction, QKeyEvent, QKeySequence, QPaintEvent
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QInputDialog,
    QLabel,
    QLineEdit,
    QMenu,
    QPushButton,
    QTableView,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from console import reach
from console.board import columns
from console.board.actions import IncidentActions
from console.board.cells import BoardPainter, warm_up
from console.board.commands import HELP, Command, CommandError, parse_command
from console.board.feed import BoardFeed
from console.board.model import COL, BoardModel
from console.board.oncall_strip import OnCallStrip
from console.services import ConsoleServices
from engine import board

STATUS_PRESETS: list[tuple[str, dict[str, Any]]] = [
    ("Open + closed today", {"statuses": (), "show_closed": True}),
    ("Open only", {"statuses": (), "show_closed": False}),
    ("Unacknowledged", {"statuses": ("open", "escalated"), "show_closed": False}),
    ("Acknowledged / in progress", {"statuses": ("acknowledged", "in_progress"), "show_closed": False}),
    ("Escalated", {"statuses": ("escalated",), "show_closed": False}),
    ("Closed", {"statuses": ("resolved", "cancelled"), "show_closed": True}),
]
SEVERITIES = ["critical", "high", "medium", "low", "info"]
_ROW_ENDS = (QAbstractItemView.CursorAction.MoveHome, QAbstractItemView.CursorAction.MoveEnd)
_MOVEMENT_KEYS = {
    Qt.Key.Key_Home,
    Qt.Key.Key_End,
    Qt.Key.Key_Up,
    Qt.Key.Key_Down,
    Qt.Key.Key_PageUp,
    Qt.Key.Key_PageDown,
}


def _dialogs() -> Any:
    """console.dialogs, imported on first use: it pulls in phonenumbers (~0.1 s), which the board does not
    need to show itself."""
    import console.dialogs

    return console.dialogs


def _ask(dialog: Any) -> bool:
    return bool(_dialogs().ask(dialog))


class BoardView(QTableView):
    """The incident table; Enter opens the selected incident. Its cells are painted by BoardPainter (cells.py)
    in one pass, not cell by cell through a delegate."""

    activated_row = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.cell_painter = BoardPainter()
        self.fast_paint = True  # False: Qt's own cell-by-cell paint (the tests compare the two)

    def paintEvent(self, event: QPaintEvent) -> None:
        model = self.model()
        if self.fast_paint and isinstance(model, BoardModel):
            self.cell_painter.paint(self, model, event.rect())
        else:
            super().paintEvent(event)

    def keyPressEvent(self, event: Any) -> None:
        if event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter) and self.currentIndex().isValid():
            self.activated_row.emit()
            return
        super().keyPressEvent(event)

    def moveCursor(
        self, cursorAction: QAbstractItemView.CursorAction, modifiers: Qt.KeyboardModifier
    ) -> QModelIndex:
        """Home and End go to the first and last row (Qt's table moves along the row instead)."""
        model = self.model()
        if model is not None and model.rowCount() and cursorAction in _ROW_ENDS:
            row = 0 if cursorAction == _ROW_ENDS[0] else model.rowCount() - 1
            return model.index(row, max(0, self.currentIndex().column()))
        return super().moveCursor(cursorAction, modifiers)

    def selectionCommand(
        self, index: QModelIndex | QPersistentModelIndex, event: QEvent | None = None
    ) -> QItemSelectionModel.SelectionFlag:
        """Ctrl with a movement key moves the highlight with the cursor. Qt's extended selection would move
        only the cursor and leave the old row highlighted: the detail would show one incident while the
        next key acts on another."""
        if (
            isinstance(event, QKeyEvent)
            and event.type() == QEvent.Type.KeyPress
            and event.key() in _MOVEMENT_KEYS
            and event.modifiers() & Qt.KeyboardModifier.ControlModifier
            and not event.modifiers() & Qt.KeyboardModifier.ShiftModifier
        ):
            return QItemSelectionModel.SelectionFlag.ClearAndSelect | QItemSelectionModel.SelectionFlag.Rows
        return super().selectionCommand(index, event)


class BoardWidget(QWidget):
    message = Signal(str, bool)  # (text, is_error)
    open_detail = Signal(int, bool)  # (incident id, pop out)
    current_changed = Signal(int)  # incident id, or 0 when nothing is selected

    def __init__(
        self, services: ConsoleServices, parent: QWidget | None = None, *, start: bool = True
    ) -> None:
        super().__init__(parent)
        self.services = services
        self.model = BoardModel(services.ctx.clock.now, self)
        self.feed = BoardFeed(services, self.model, self)
        self.actions_ = IncidentActions(services, self)
        self.choices: dict[str, list[str]] = {}
        # Tests replace these to answer dialogs without showing them.
        self.ask: Callable[[Any], bool] = _ask

        self._build()
        self.actions_.done.connect(self._on_done)
        self.actions_.failed.connect(lambda text: self.message.emit(text, True))
        self.actions_.created.connect(self._on_created)
        self.feed.loaded.connect(self._on_loaded)
        self.feed.loaded.connect(self.on_call.start)
        self._tick = QTimer(self)
        self._tick.setInterval(1000)
        self._tick.timeout.connect(self._repaint_clock)
        self._ticks = 0
        self._tick.start()
        if start:
            self.feed.start()

    # -- layout ---------------------------------------------------------------------------------------------

    def _build(self) -> None:
        self.command = QLineEdit()
        self.command.setObjectName("commandLine")
        self.command.setPlaceholderText(
            "Command (Ctrl+L):  ack 1234 · res 1234 · esc 1234 3 · new Smoke at Block C"
        )
        self.command.setToolTip(HELP)
        self.command.returnPressed.connect(self.run_command_line)
        self._history: list[str] = []

        buttons = QHBoxLayout()
        self.buttons: dict[str, QPushButton] = {}
        for key, label, tip, slot in (
            ("ack", "&Acknowledge", "Acknowledge the selected incidents (A)", self.acknowledge_selected),
            ("resolve", "&Resolve", "Resolve the selected incidents (R)", self.resolve_selected),
            (
                "escalate",
                "&Escalate",
                "Escalate now to the next level (E) or a chosen one (Shift+E)",
                self.escalate_selected,
            ),
            ("assign", "Re-assi&gn", "Assign to a team or person (G)", self.assign_selected),
            ("note", "&Note", "Add a note (N)", self.note_selected),
            ("cancel", "Cancel…", "Cancel with a reason (Delete)", self.cancel_selected),
            ("new", "New incident", "Open a new incident for a call (Ctrl+N)", self.new_incident),
        ):
            button = QPushButton(label)
            button.setObjectName(f"button_{key}")
            button.setToolTip(tip)
            button.clicked.connect(lambda _checked=False, s=slot: s())
            buttons.addWidget(button)
            self.buttons[key] = button
        buttons.addStretch(1)

        top = QHBoxLayout()
        top.addWidget(self.command, 1)

        filters = QHBoxLayout()
        self.search = QLineEdit()
        self.search.setObjectName("search")
        self.search.setPlaceholderText("Search (Ctrl+F): number, summary, site, person…")
        self.search.setClearButtonEnabled(True)
        self._search_timer = QTimer(self)
        self._search_timer.setSingleShot(True)
        self._search_timer.setInterval(120)
        self._search_timer.timeout.connect(lambda: self.model.set_filters(text=self.search.text()))
        self.search.textChanged.connect(lambda _t: self._search_timer.start())
        self.status_filter = QComboBox()
        self.status_filter.setObjectName("statusFilter")
        for label, _preset in STATUS_PRESETS:
            self.status_filter.addItem(label)
        self.status_filter.currentIndexChanged.connect(self._on_status_preset)
        self.severity_button = QToolButton()
        self.severity_button.setText("Severity: all")
        self.severity_button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        menu = QMenu(self.severity_button)
        self.severity_actions: dict[str, QAction] = {}
        for sev in SEVERITIES:
            act = menu.addAction(sev.title())
            act.setCheckable(True)
            act.toggled.connect(self._on_severity)
            self.severity_actions[sev] = act
        self.severity_button.setMenu(menu)
        self.site_filter = QComboBox()
        self.site_filter.setObjectName("siteFilter")
        self.site_filter.addItem("All sites", "")
        self.site_filter.currentIndexChanged.connect(
            lambda _i: self.model.set_filters(
                sites=[self.site_filter.currentData()] if self.site_filter.currentData() else []
            )
        )
        self.team_filter = QComboBox()
        self.team_filter.setObjectName("teamFilter")
        self.team_filter.addItem("All teams", "")
        self.team_filter.currentIndexChanged.connect(
            lambda _i: self.model.set_filters(
                teams=[self.team_filter.currentData()] if self.team_filter.currentData() else []
            )
        )
        self.mine = QCheckBox("&Mine")
        self.mine.setToolTip(
            "Only incidents I acknowledged or that are assigned to me (the person my account is linked to)"
        )
        self.mine.toggled.connect(self._on_mine)
        self.views = QComboBox()
        self.views.setObjectName("savedViews")
        self.views.setToolTip("Saved views")
        self._reload_views()
        self.views.activated.connect(self._on_view_chosen)
        save_view = QToolButton()
        save_view.setText("Save view…")
        save_view.clicked.connect(self.save_view_dialog)
        delete_view = QToolButton()
        delete_view.setText("Delete view")
        delete_view.clicked.connect(self.delete_current_view)
        self.count_label = QLabel()
        for w in (self.search,):
            filters.addWidget(w, 2)
        for w in (self.status_filter, self.severity_button, self.site_filter, self.team_filter, self.mine):
            filters.addWidget(w)
        filters.addSpacing(12)
        filters.addWidget(QLabel("View:"))
        filters.addWidget(self.views)
        filters.addWidget(save_view)
        filters.addWidget(delete_view)
        filters.addStretch(1)
        filters.addWidget(self.count_label)

        self.view = BoardView()
        self.view.setObjectName("board")
        self.view.setModel(self.model)
        self.view.setSortingEnabled(True)
        self.view.sortByColumn(COL["severity"], Qt.SortOrder.AscendingOrder)
        self.view.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.view.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.view.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.view.setWordWrap(False)
        self.view.verticalHeader().hide()
        # Fixed row heights and per-pixel scrolling: the view never measures rows (or asks the model for
        # size hints), so thousands of rows cost nothing until they are painted.
        self.view.verticalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Fixed)
        self.view.verticalHeader().setDefaultSectionSize(self.view.fontMetrics().height() + 10)
        self.view.setVerticalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        # Always there: rows arriving on an empty board then repaint the rows, not the table laid out anew.
        self.view.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOn)
        self.view.setHorizontalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        header = self.view.horizontalHeader()
        header.setSectionsMovable(True)
        header.setHighlightSections(False)
        columns.set_start_widths(self.view)
        warm_up(self.view)
        self.view.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.view.customContextMenuRequested.connect(self._context_menu)
        self.view.doubleClicked.connect(lambda _i: self._open_current(False))
        self.view.activated_row.connect(lambda: self._open_current(False))
        self.view.selectionModel().currentRowChanged.connect(self._on_current_row)
        self.view.selectionModel().selectionChanged.connect(self._keep_current_highlighted)
        # The count follows the rows once per event-loop turn, not once per inserted run of rows.
        self._count_timer = QTimer(self)
        self._count_timer.setSingleShot(True)
        self._count_timer.setInterval(0)
        self._count_timer.timeout.connect(self._update_count)
        for signal in (
            self.model.rowsInserted,
            self.model.rowsRemoved,
            self.model.layoutChanged,
            self.model.modelReset,
        ):
            signal.connect(lambda *_args: self._count_timer.start())

        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.addLayout(top)
        layout.addLayout(buttons)
        layout.addLayout(filters)
        self.on_call = OnCallStrip(self.services)
        layout.addWidget(self.on_call)
        layout.addWidget(self.view, 1)
        self._install_shortcuts()

    def fit_columns(self) -> None:
        """The short columns sized to their content in the current font; the summary takes the rest."""
        columns.fit(self.view)

    def _install_shortcuts(self) -> None:
        table_keys: list[tuple[str, Callable[[], None]]] = [
            ("A", self.acknowledge_selected),
            ("R", self.resolve_selected),
            ("W", self.start_work_selected),
            ("E", self.escalate_selected),
            ("Shift+E", lambda: self.escalate_selected(choose=True)),
            ("G", self.assign_selected),
            ("K", self.classify_selected),
            ("N", self.note_selected),
            ("Delete", self.cancel_selected),
            ("P", lambda: self._open_current(True)),
            ("/", self.focus_search),
            (":", self.focus_command),
        ]
        reach.table_keys(self.view, table_keys)
        window_keys: list[tuple[QKeySequence | str, Callable[[], None]]] = [
            ("Ctrl+N", self.new_incident),
            (QKeySequence.StandardKey.Find, self.focus_search),
            ("Ctrl+L", self.focus_command),
        ]
        reach.table_keys(self, window_keys, Qt.ShortcutContext.WidgetWithChildrenShortcut)
        # Esc from anywhere on the board (search, command line, a filter) goes back to the table, where the
        # letter keys act; an open pick list takes the first Esc itself and closes.
        esc = QAction(self)
        esc.setShortcut(QKeySequence(Qt.Key.Key_Escape))
        esc.setShortcutContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
        esc.triggered.connect(self.back_to_table)
        self.addAction(esc)
        # A filter chosen with the mouse or the keyboard hands the focus back to the table: a pick list that
        # kept it would take the next A as "Acknowledged / in progress" instead of an acknowledgement.
        for combo in (self.status_filter, self.site_filter, self.team_filter, self.views):
            combo.setFocusPolicy(Qt.FocusPolicy.TabFocus)
            combo.activated.connect(lambda _i: self.back_to_table())
        for control in (self.mine, self.severity_button, *self.buttons.values()):
            control.setFocusPolicy(Qt.FocusPolicy.TabFocus)
        self.mine.clicked.connect(lambda _c=False: self.back_to_table())
        self.severity_button.menu().triggered.connect(lambda _a: self.back_to_table())

    def _repaint_clock(self) -> None:
        """Countdowns change every second, the row tint only slowly: repaint the age and SLA columns each
        second and the whole table every tenth — every painted cell is a call into Python."""
        self._ticks += 1
        viewport = self.view.viewport()
        if self._ticks % 10 == 0:
            viewport.update()
            return
        header = self.view.horizontalHeader()
        for key in ("age", "response", "resolution"):
            x = header.sectionViewportPosition(COL[key])
            width = header.sectionSize(COL[key])
            if x + width >= 0 and x <= viewport.width() and not header.isSectionHidden(COL[key]):
                viewport.update(x, 0, width, viewport.height())

    # -- selection --------------------------------------------------------------------------------------------

    def selected_ids(self) -> list[int]:
        rows = self.view.selectionModel().selectedRows()
        ids = [self.model.incident_id(i) for i in rows]
        if not ids and self.view.currentIndex().isValid():
            ids = [self.model.incident_id(self.view.currentIndex())]
        return [i for i in ids if i is not None]

    def current_id(self) -> int | None:
        return self.model.incident_id(self.view.currentIndex())

    def select_incident(self, incident_id: int) -> bool:
        position = self.model.position_of(incident_id)
        if position is None:
            return False
        index = self.model.index(position, 0)
        self.view.selectionModel().setCurrentIndex(
            index, QItemSelectionModel.SelectionFlag.ClearAndSelect | QItemSelectionModel.SelectionFlag.Rows
        )
        self.view.scrollTo(index)
        return True

    def back_to_table(self) -> None:
        self.view.setFocus(Qt.FocusReason.ShortcutFocusReason)

    def _keep_current_highlighted(self, _selected: QItemSelection, _deselected: QItemSelection) -> None:
        """The row with the cursor (what the detail shows) is always one of the highlighted rows, and
        something is highlighted whenever there is a cursor: actions take the highlighted rows."""
        selection = self.view.selectionModel()
        current = self.view.currentIndex()
        if not current.isValid():
            return
        rows = selection.selectedRows()
        if not rows:
            selection.select(
                current, QItemSelectionModel.SelectionFlag.Select | QItemSelectionModel.SelectionFlag.Rows
            )
        elif not selection.isRowSelected(current.row(), QModelIndex()):
            selection.setCurrentIndex(rows[-1], QItemSelectionModel.SelectionFlag.NoUpdate)

    def _on_current_row(self, current: QModelIndex, _previous: QModelIndex) -> None:
        incident_id = self.model.incident_id(current)
        self.current_changed.emit(incident_id or 0)

    def _open_current(self, pop_out: bool) -> None:
        incident_id = self.current_id()
        if incident_id is not None:
            self.open_detail.emit(incident_id, pop_out)

    def focus_search(self) -> None:
        self.search.setFocus()
        self.search.selectAll()

    def focus_command(self) -> None:
        self.command.setFocus()
        self.command.selectAll()

    # -- actions ----------------------------------------------------------------------------------------------

    def _ids(self, ids: list[int] | None) -> list[int]:
        """The incidents an action is for: those given (a pop-out's), else the highlighted rows."""
        return self.selected_ids() if ids is None else ids

    def acknowledge_selected(self, ids: list[int] | None = None) -> None:
        self.actions_.acknowledge(self._ids(ids))

    def _named(self, ids: list[int]) -> str:
        """ "#7 Smoke at Block C" for one incident, "#7, #9 and #12" for several: what a question names."""
        if len(ids) == 1:
            row = self.model.row_for_id(ids[0]) or {}
            return f"#{ids[0]} {row.get('summary', '')}".strip()
        numbers = [f"#{i}" for i in ids]
        return ", ".join(numbers[:-1]) + f" and {numbers[-1]}"

    def _confirmed(self, ids: list[int], verb: str, key: str, question: str, keep: str) -> bool:
        """Resolve and escalate cannot be taken back (pages go out at once; a re-opened incident starts its
        escalation again), so the key asks once more: the same key or Enter confirms."""
        if not ids:
            return True  # the action itself says "select an incident first"
        numbers = ", ".join(f"#{i}" for i in ids)
        dialog = _dialogs().ConfirmDialog(
            f"{verb} {numbers}?",
            question,
            key=key,
            confirm_text=f"{verb} {numbers}",
            keep_text=keep,
            parent=self,
        )
        if self.ask(dialog):
            return True
        self.message.emit(f"{verb}: nothing done — {numbers} unchanged", False)
        return False

    def resolve_selected(self, ids: list[int] | None = None) -> None:
        ids = self._ids(ids)
        question = f"Resolve {self._named(ids)}? Paging for it stops."
        if self._confirmed(ids, "Resolve", "R", question, "Keep it open"):
            self.actions_.resolve(ids)

    def start_work_selected(self, ids: list[int] | None = None) -> None:
        self.actions_.start_work(self._ids(ids))

    def escalate_selected(self, choose: bool = False, ids: list[int] | None = None) -> None:
        ids = self._ids(ids)
        level = None
        if choose and ids:
            self._choose_level(ids)
            return
        if not self._confirmed(
            ids,
            "Escalate",
            "E",
            f"Escalate {self._named(ids)} to the next level now? Its people are paged at once.",
            "Don't escalate",
        ):
            return
        self.actions_.escalate(ids, level)

    def _choose_level(self, ids: list[int]) -> None:
        """Shift+E: read who each level of the first incident would page now (on the worker), then ask."""
        first, now = ids[0], self.services.ctx.clock.now()

        def ask(found: dict[str, Any]) -> None:
            dialog = _dialogs().EscalateDialog(int(found["current_level"]), self, levels=found["levels"])
            dialog.setWindowTitle(f"Escalate {self._named(ids)} now")
            if self.ask(dialog):
                self.actions_.escalate(ids, dialog.chosen())

        self.services.worker.submit(
            lambda s: board.escalation_levels(s, first, now),
            ask,
            lambda exc: self.message.emit(f"Escalate: could not read the levels of #{first}: {exc}", True),
            what="reading the escalation levels",
        )

    def note_selected(self, ids: list[int] | None = None) -> None:
        ids = self._ids(ids)
        if not ids:
            self.message.emit("Add note: select an incident first", True)
            return
        dialog = _dialogs().TextPrompt(
            "Add note", f"Note for {self._named(ids)}:", self, accept_text="Add note", reject_text="Back"
        )
        if self.ask(dialog):
            self.actions_.add_note(ids, dialog.value())

    def cancel_selected(self, ids: list[int] | None = None) -> None:
        ids = self._ids(ids)
        if not ids:
            self.message.emit("Cancel: select an incident first", True)
            return
        numbers = ", ".join(f"#{i}" for i in ids)
        dialog = _dialogs().TextPrompt(
            "Cancel incident",
            f"Why cancel {self._named(ids)}? Paging for it stops and it leaves the board.",
            self,
            accept_text=f"Cancel incident {numbers}",
            reject_text="Keep the incident",
        )
        if self.ask(dialog):
            self.actions_.cancel(ids, dialog.value())

    def assign_selected(self, ids: list[int] | None = None) -> None:
        ids = self._ids(ids)
        if not ids:
            self.message.emit("Re-assign: select an incident first", True)
            return
        dialog = _dialogs().AssignDialog(self.choices, self)
        if self.ask(dialog):
            values = dialog.values()
            if not values["team"] and not values["person"]:
                self.message.emit("Re-assign: choose a team or a person", True)
                return
            self.actions_.assign(ids, **values)

    def classify_selected(self, ids: list[int] | None = None) -> None:
        """K: one incident's category (its SLA deadlines follow) and sensitive flag."""
        ids = self._ids(ids)
        if len(ids) != 1:
            self.message.emit(f"Classify: select one incident ({len(ids)} selected) — nothing changed", True)
            return
        incident_id = ids[0]
        row = self.model.row_for_id(incident_id)
        if row is not None:
            self._classify(incident_id, row)
            return
        # A popped-out incident the board's filters hide: its category and flag come from the database first.
        self.services.worker.submit(
            lambda s: next(iter(board.board_rows(s, [incident_id])), None),
            lambda found: (
                self._classify(incident_id, found)
                if found
                else self.message.emit(f"Classify: #{incident_id} does not exist", True)
            ),
            lambda exc: self.message.emit(f"Classify #{incident_id} failed: {exc}", True),
            what="loading an incident",
        )

    def _classify(self, incident_id: int, row: dict[str, Any]) -> None:
        dialog = _dialogs().ClassifyDialog(
            self.choices,
            title=f"#{incident_id} {row.get('summary', '')}".strip(),
            category=str(row.get("category") or ""),
            sensitive=bool(row.get("sensitive")),
            parent=self,
        )
        if not self.ask(dialog):
            return
        values = dialog.values()
        if not values:
            self.message.emit(f"Classify: nothing changed — #{incident_id} unchanged", False)
            return
        self.actions_.classify([incident_id], **values)

    def new_incident(self, summary: str = "") -> None:
        dialog = _dialogs().NewIncidentDialog(
            self.choices, self, summary=summary, phone_region=self.services.ctx.settings.phone_region
        )
        if self.ask(dialog):
            self.actions_.trigger(dialog.values())

    def run_command_line(self) -> None:
        line = self.command.text()
        try:
            command = parse_command(line)
        except CommandError as exc:
            self.message.emit(str(exc), True)
            return
        self._history.append(line)
        self.command.clear()
        self.execute(command)

    def execute(self, command: Command) -> None:
        ids = list(command.ids) or self.selected_ids()
        if command.action == "acknowledge":
            self.actions_.acknowledge(ids)
        elif command.action == "resolve":
            self.actions_.resolve(ids, command.text)
        elif command.action == "escalate":
            self.actions_.escalate(ids, command.level)
        elif command.action == "note":
            self.actions_.add_note(ids, command.text)
        elif command.action == "cancel":
            self.actions_.cancel(ids, command.text)
        elif command.action == "reopen":
            self.actions_.reopen(ids)
        elif command.action == "start_work":
            self.actions_.start_work(ids)
        elif command.action == "assign":
            team = command.target if command.target_kind == "team" else None
            person = command.target if command.target_kind == "person" else None
            self.actions_.assign(ids, team=team, person=person, reason=command.text)
        elif command.action == "classify":
            if not command.text and command.sensitive is None:
                self.classify_selected(ids)  # nothing given: the K dialog asks
            else:
                self.actions_.classify(ids, category=command.text or None, sensitive=command.sensitive)
        elif command.action == "show":
            self.select_incident(ids[0])
            self.open_detail.emit(ids[0], False)
        elif command.action == "find":
            self.search.setText(command.text)
        elif command.action == "new":
            self.new_incident(command.text)

    def act_on(self, name: str, incident_id: int) -> None:
        """An action asked for from elsewhere (a popped-out incident): the same path as the board's keys."""
        actions: dict[str, Callable[[list[int]], None]] = {
            "acknowledge": self.acknowledge_selected,
            "start_work": self.start_work_selected,
            "resolve": self.resolve_selected,
            "escalate": lambda ids: self.escalate_selected(ids=ids),
            "assign": self.assign_selected,
            "classify": self.classify_selected,
            "note": self.note_selected,
        }
        actions[name]([incident_id])

    def _on_done(self, text: str, ids: list[int]) -> None:
        self.message.emit(text, False)
        self.feed.refresh_ids(ids)

    def _on_created(self, incident_id: int) -> None:
        self.feed.refresh_ids([incident_id])
        QTimer.singleShot(400, lambda: self.select_incident(incident_id))

    def _context_menu(self, pos: Any) -> None:
        if not self.view.indexAt(pos).isValid():
            return
        menu = QMenu(self)
        for label, key, slot in (
            ("Acknowledge", "A", self.acknowledge_selected),
            ("I'm on it (in progress)", "W", self.start_work_selected),
            ("Resolve", "R", self.resolve_selected),
            ("Escalate to next level", "E", self.escalate_selected),
            ("Escalate to level…", "Shift+E", lambda: self.escalate_selected(choose=True)),
            ("Re-assign…", "G", self.assign_selected),
            ("Classify (category, sensitive)…", "K", self.classify_selected),
            ("Add note…", "N", self.note_selected),
            ("Cancel with reason…", "Delete", self.cancel_selected),
            (None, None, None),
            ("Open detail", "Enter", lambda: self._open_current(False)),
            ("Pop out detail", "P", lambda: self._open_current(True)),
        ):
            if label is None:
                menu.addSeparator()
                continue
            act = menu.addAction(f"{label}\t{key}")
            act.triggered.connect(lambda _c=False, s=slot: s())
        menu.popup(self.view.viewport().mapToGlobal(pos))

    # -- filters and views ------------------------------------------------------------------------------------

    def _on_status_preset(self, index: int) -> None:
        if 0 <= index < len(STATUS_PRESETS):
            self.model.set_filters(**STATUS_PRESETS[index][1])

    def _on_severity(self) -> None:
        chosen = [s for s, act in self.severity_actions.items() if act.isChecked()]
        self.severity_button.setText("Severity: " + (", ".join(chosen) if chosen else "all"))
        self.model.set_filters(severities=chosen)

    def _on_mine(self, on: bool) -> None:
        op = self.services.operator
        me = (op.username, op.display_name, *((f"#{op.person_id}",) if op.person_id is not None else ()))
        self.model.set_filters(mine_of=me if on else ())

    def _on_loaded(self) -> None:
        self._update_count()
        self.load_choices()

    def load_choices(self) -> None:
        now = self.services.ctx.clock.now()

        def job(session: Any) -> dict[str, list[str]]:
            from engine import oncall

            choices = board.board_choices(session)
            choices["on_call"] = sorted({n for s in oncall.on_call_now(session, now) for n in s["now"]})
            return choices

        self.services.worker.submit(job, self._set_choices, lambda _e: None)

    def _set_choices(self, choices: dict[str, list[str]]) -> None:
        self.choices = choices
        for combo, key in ((self.site_filter, "sites"), (self.team_filter, "teams")):
            current = combo.currentData()
            combo.blockSignals(True)
            while combo.count() > 1:
                combo.removeItem(1)
            for value in choices.get(key, []):
                combo.addItem(value, value)
            at = combo.findData(current)
            combo.setCurrentIndex(max(0, at))
            combo.blockSignals(False)

    def _update_count(self, *_args: Any) -> None:
        self.count_label.setText(f"{self.model.rowCount()} shown of {self.model.total_count()}")

    def view_state(self) -> dict[str, Any]:
        header = self.view.horizontalHeader()
        return {
            "status_preset": self.status_filter.currentIndex(),
            "severities": [s for s, a in self.severity_actions.items() if a.isChecked()],
            "site": self.site_filter.currentData() or "",
            "team": self.team_filter.currentData() or "",
            "text": self.search.text(),
            "mine": self.mine.isChecked(),
            "sort_column": header.sortIndicatorSection(),
            "sort_order": int(header.sortIndicatorOrder().value),
        }

    def apply_view_state(self, state: dict[str, Any]) -> None:
        self.status_filter.setCurrentIndex(int(state.get("status_preset", 0)))
        for sev, act in self.severity_actions.items():
            act.setChecked(sev in state.get("severities", []))
        for combo, key in ((self.site_filter, "site"), (self.team_filter, "team")):
            value = state.get(key) or ""
            if value and combo.findData(value) < 0:
                combo.addItem(value, value)
            combo.setCurrentIndex(max(0, combo.findData(value)))
        self.search.setText(state.get("text", ""))
        self.model.set_filters(text=state.get("text", ""))
        self.mine.setChecked(bool(state.get("mine")))
        self.view.sortByColumn(
            int(state.get("sort_column", COL["severity"])), Qt.SortOrder(int(state.get("sort_order", 0)))
        )

    def _settings(self) -> QSettings:
        return QSettings()

    def saved_views(self) -> dict[str, dict[str, Any]]:
        raw = self._settings().value(f"board/views/{self.services.operator.username}", "{}")
        try:
            views = json.loads(str(raw))
        except ValueError:
            views = {}
        return views if isinstance(views, dict) else {}

    def save_view(self, name: str) -> None:
        views = self.saved_views()
        views[name] = self.view_state()
        self._settings().setValue(f"board/views/{self.services.operator.username}", json.dumps(views))
        self._reload_views(select=name)

    def save_view_dialog(self) -> None:
        name, ok = QInputDialog.getText(self, "Save view", "Name of this view:")
        if ok and name.strip():
            self.save_view(name.strip())
            self.message.emit(f"View {name.strip()!r} saved", False)

    def delete_current_view(self) -> None:
        name = self.views.currentText()
        views = self.saved_views()
        if name in views:
            del views[name]
            self._settings().setValue(f"board/views/{self.services.operator.username}", json.dumps(views))
            self._reload_views()

    def _reload_views(self, select: str = "") -> None:
        self.views.blockSignals(True)
        self.views.clear()
        self.views.addItem("(saved views)")
        for name in sorted(self.saved_views()):
            self.views.addItem(name)
        if select:
            self.views.setCurrentText(select)
        self.views.blockSignals(False)

    def _on_view_chosen(self, index: int) -> None:
        name = self.views.itemText(index)
        state = self.saved_views().get(name)
        if state:
            self.apply_view_state(state)

    def shutdown(self) -> None:
        self._tick.stop()
        self.on_call.stop()
        self.feed.close()
