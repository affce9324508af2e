"""What the Messages and Work items tabs reach outside themselves: the incident a row is about (on the board,
selected, with its detail open) and the window's status bar.

The tabs are mounted into the main window on first use and know it only as their top-level window, so both are
looked up there; a tab shown on its own (a test, a pop-out) still works and says so in its own status line.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QComboBox, QDialog, QDialogButtonBox, QLabel, QWidget


def tell(widget: QWidget, text: str, error: bool = False) -> None:
    """`text` in the main window's status bar (red for a refusal or failure)."""
    show = getattr(widget.window(), "show_message", None)
    if callable(show):
        show(text, error)


def open_incident(widget: QWidget, incident_id: int | None, what: str) -> bool:
    """Go to the board with `incident_id` selected and its detail open. `what` names the row for the status
    bar when there is no incident to open ("message 12"). False when nothing was opened."""
    if incident_id is None:
        tell(widget, f"{what} is not about an incident", True)
        return False
    window: Any = widget.window()
    board = getattr(window, "board", None)
    tabs = getattr(window, "tabs", None)
    if board is None or tabs is None:
        tell(widget, f"Open #{incident_id}: the board is not in this window", True)
        return False
    tabs.setCurrentWidget(board)
    on_board = board.select_incident(incident_id)
    window.open_detail(incident_id, False)
    if on_board:
        board.back_to_table()
        tell(widget, f"#{incident_id} selected on the board")
    else:  # closed before the board's window (24 hours): the detail still shows it
        tell(widget, f"#{incident_id} is not on the board (closed earlier): shown in the detail")
    return True


def table_keys(
    view: QWidget,
    keys: list[tuple[Any, Callable[[], None]]],
    context: Qt.ShortcutContext = Qt.ShortcutContext.WidgetShortcut,
) -> None:
    """Keys on `view`: by default single letters that act only while it (a table) has the focus, as on the
    board, so typing in a filter never sets anything off; `context` widens that (WidgetWithChildrenShortcut)."""
    for key, slot in keys:
        act = QAction(view)
        act.setShortcut(QKeySequence(key))
        act.setShortcutContext(context)
        act.triggered.connect(lambda _c=False, s=slot: s())
        view.addAction(act)


def fill_people(
    combo: QComboBox, choices: dict[str, list[str]], first: str = "", *, keep_typed: bool = False
) -> None:
    """People by name with their handle (the item's data), who is on call now marked; `first` (e.g. "Anyone")
    on top with no handle. With `keep_typed`, what was typed in an editable one stays (a filter filled while
    someone types)."""
    typed = combo.currentText()
    combo.blockSignals(True)
    combo.clear()
    if first:
        combo.addItem(first, "")
    on_call = set(choices.get("on_call", []))
    names = choices.get("people_names", [])
    for n, handle in enumerate(choices.get("people", [])):
        name = names[n] if n < len(names) else handle
        combo.addItem(f"{name} ({handle})" + (" — on call now" if name in on_call else ""), handle)
    if keep_typed and combo.isEditable():
        combo.setEditText(typed)
    combo.blockSignals(False)


def chosen_handle(combo: QComboBox) -> str:
    """The handle of the person picked (a name from the list stands for its handle; anything typed is taken
    as a handle)."""
    typed = combo.currentText().strip()
    at = combo.findText(typed)
    return str(combo.itemData(at) or typed) if at >= 0 else typed


def people_job(now: Any) -> Callable[[Any], dict[str, list[str]]]:
    """A worker job: the board's pick lists (people by name and handle) and who is on call at `now`."""

    def job(session: Any) -> dict[str, list[str]]:
        from engine import board, oncall

        choices = board.board_choices(session)
        choices["on_call"] = sorted({n for s in oncall.on_call_now(session, now) for n in s["now"]})
        return choices

    return job


def ask(dialog: QDialog) -> bool:
    """Show a dialog and wait: True when it was accepted (console.dialogs.ask, imported on first use)."""
    from console.dialogs import ask as shown

    return shown(dialog)


class RecordTab(QWidget):
    """What the Messages and Work items tabs share: a table of records with an `id`, the selected one, and
    a status line whose news also goes to the window's status bar (`acted` / `failed` for listeners)."""

    loaded = Signal()  # a list arrived, or could not be read
    acted = Signal(str)  # what an action did
    failed = Signal(str)  # a refusal or failure, as the status bar shows it

    model: Any
    view: Any
    status: QLabel

    def __init__(self, services: Any, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.services = services
        self.ask = ask  # tests answer the dialogs themselves
        self._request = 0  # the latest list asked for: an older one that arrives later is dropped

    def _list_failed(self, request: int, exc: Exception) -> None:
        if request == self._request:
            self.say(str(exc), True)
            self.loaded.emit()

    def current(self) -> Any:
        row = self.view.currentIndex().row()
        return self.model.record(row) if 0 <= row < self.model.rowCount() else None

    def current_id(self) -> int | None:
        chosen = self.current()
        return chosen.id if chosen is not None else None

    def select_id(self, record_id: int) -> bool:
        ids = [r.id for r in self.model.rows()]
        if record_id not in ids:
            return False
        self.view.selectRow(ids.index(record_id))
        return True

    noun = "row"  # what a row is, in the status bar: "message", "work item"

    def selected(self, what: str) -> Any:
        """The selected record, or None after saying "`what`: select a … first"."""
        chosen = self.current()
        if chosen is None:
            self.say(f"{what}: select a {self.noun} first", True)
        return chosen

    def open_selected(self) -> None:
        chosen = self.selected("Open incident")
        if chosen is not None:
            open_incident(self, chosen.incident_id, f"{self.noun.capitalize()} {chosen.id}")

    def wire(self, actions: list[tuple[str, Any, Callable[[], None]]], follow: Callable[[], None]) -> None:
        """Each (key, button, slot): the button and the key (in the table) do it; Enter or a double click on
        a row opens its incident; `follow` runs when the selected row changes (buttons that depend on it)."""
        for _key, button, slot in actions:
            button.clicked.connect(slot)
        table_keys(self.view, [(key, slot) for key, _button, slot in actions if key])
        self.view.activated.connect(lambda _index: self.open_selected())
        self.view.selectionModel().currentRowChanged.connect(lambda _c, _p: follow())
        follow()
        # As on the board: Esc anywhere in the tab, or a filter picked from its list, gives the keys back to
        # the table — a pick list that kept the focus would take the next R as "read", not a retry.
        table_keys(
            self, [(Qt.Key.Key_Escape, self.view.setFocus)], Qt.ShortcutContext.WidgetWithChildrenShortcut
        )
        for combo in self.findChildren(QComboBox):
            combo.activated.connect(lambda _i: self.view.setFocus())

    def say(self, text: str, error: bool = False) -> None:
        self.status.setText(("⚠ " if error else "") + text)
        tell(self, text, error)
        (self.failed if error else self.acted).emit(text)


def do_or_back(dialog: QDialog, do: str) -> QDialogButtonBox:
    """A dialog's buttons: `do` (the default: Enter) accepts, Back (Esc) goes back."""
    buttons = QDialogButtonBox()
    buttons.addButton(do, QDialogButtonBox.ButtonRole.AcceptRole).setDefault(True)
    buttons.addButton("Back", QDialogButtonBox.ButtonRole.RejectRole)
    buttons.accepted.connect(dialog.accept)
    buttons.rejected.connect(dialog.reject)
    return buttons
