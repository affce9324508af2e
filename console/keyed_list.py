"""A flat list of rows for the keyboard (the alert list, the notifications): Enter on a row is one signal, and
a few single keys act on the current row only while the list has the focus."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QAbstractItemView, QTreeWidget


class KeyedList(QTreeWidget):
    enter = Signal()  # Enter (or a double click) on a row

    def __init__(self, name: str, headers: list[str]) -> None:
        super().__init__()
        self.setObjectName(name)
        self.setHeaderLabels(headers)
        self.setRootIsDecorated(False)
        self.setUniformRowHeights(True)
        self.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.itemDoubleClicked.connect(lambda _item, _col: self.enter.emit())

    def on_key(self, key: str, slot: Callable[[], Any]) -> None:
        """`key` runs `slot` while this list has the focus (typing elsewhere never triggers it)."""
        act = QAction(self)
        act.setShortcut(QKeySequence(key))
        act.setShortcutContext(Qt.ShortcutContext.WidgetShortcut)
        act.triggered.connect(lambda _c=False: slot())
        self.addAction(act)

    def current_row(self) -> int:
        item = self.currentItem()
        return self.indexOfTopLevelItem(item) if item is not None else -1

    def keyPressEvent(self, event: Any) -> None:
        if event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter) and self.currentItem() is not None:
            self.enter.emit()
            return
        super().keyPressEvent(event)
