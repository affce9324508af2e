"""A read-only table model over a list of plain records, described by columns.

Used for pages of history, statistics tables and editor object lists: each is a bounded list that is
replaced as a whole when a new page or period arrives (a page swap, not a live feed), so a model reset per
replacement is right here. Cells are computed by the column's getter; sorting is left to a proxy model, which
sorts on the `SORT_ROLE` value (the raw number or time, not its display text).
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, Qt

R = TypeVar("R")
log = logging.getLogger(__name__)
SORT_ROLE = Qt.ItemDataRole.UserRole + 1
RECORD_ROLE = Qt.ItemDataRole.UserRole + 2
AnyIndex = QModelIndex | QPersistentModelIndex
MAX_COLUMN_WIDTH = 420  # px: a longer summary or message is cut with "…" (drag the column wider to read it)


# Result handlers waiting for the database worker, by token. Only the GUI thread touches this: handlers are
# registered there and the worker delivers results there. The worker's own references (its futures) hold
# just the token, so a widget captured by a handler is never released — and destroyed — on the worker thread.
_WAITING: dict[int, tuple[Any, Callable[[Any], Any] | None, Callable[[Exception], Any] | None]] = {}
_tokens = itertools.count(1)


def replies(
    owner: Any, on_done: Callable[[Any], Any] | None, on_error: Callable[[Exception], Any] | None = None
) -> dict[str, Callable[..., None]]:
    """`on_done` / `on_error` for DbWorker.submit/call (as `**replies(self, done, failed)`): whichever
    arrives runs on the GUI thread if `owner` (the waiting widget) still exists, and drops both handlers."""
    token = next(_tokens)
    _WAITING[token] = (owner, on_done, on_error)

    def arrive(index: int, value: Any) -> None:
        import shiboken6

        owner, *handlers = _WAITING.pop(token, (None, None, None))
        handler = handlers[index]
        if owner is not None and shiboken6.isValid(owner):
            if handler is not None:
                handler(value)
            elif index == 1:
                log.warning("%s: %s", type(owner).__name__, value)

    return {"on_done": lambda value: arrive(0, value), "on_error": lambda exc: arrive(1, exc)}


def fmt_time(value: datetime | None) -> str:
    """A time in a sentence (a handover's "since …"): the workstation's local zone, to the minute."""
    if value is None:
        return ""
    return value.astimezone().strftime("%Y-%m-%d %H:%M")


def to_second(value: datetime | None) -> str:
    """A time in a table: local, to the second, so events of the same minute keep their order readable."""
    return value.astimezone().strftime("%Y-%m-%d %H:%M:%S") if value is not None else ""


@dataclass(frozen=True)
class Column(Generic[R]):
    header: str
    value: Callable[[R], Any]
    numeric: bool = False
    tooltip: Callable[[R], str] | None = None


def _display(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return to_second(value)
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:,.2f}"
    return str(value)


def _sortable(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int | float):
        return value
    return str(value).casefold()


class RecordTableModel(QAbstractTableModel, Generic[R]):
    def __init__(
        self,
        columns: Sequence[Column[R]],
        parent: Any = None,
        *,
        tint: Callable[[R], str | None] | None = None,
    ) -> None:
        """`tint` names a row's text colour in the theme's palette ("warning", "breached"), or None."""
        super().__init__(parent)
        self._columns = list(columns)
        self._rows: list[R] = []
        self._tint = tint

    # -- data ------------------------------------------------------------------------------------------
    def set_rows(self, rows: Sequence[R]) -> None:
        self.beginResetModel()
        self._rows = list(rows)
        self.endResetModel()

    def rows(self) -> list[R]:
        return list(self._rows)

    def record(self, row: int) -> R:
        return self._rows[row]

    def columns(self) -> list[Column[R]]:
        return list(self._columns)

    def display_rows(self) -> list[list[str]]:
        """Every row as the texts shown (CSV export)."""
        return [[_display(c.value(r)) for c in self._columns] for r in self._rows]

    # -- Qt model --------------------------------------------------------------------------------------
    def rowCount(self, parent: AnyIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self._rows)

    def columnCount(self, parent: AnyIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self._columns)

    def data(self, index: AnyIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or not (0 <= index.row() < len(self._rows)):
            return None
        if not (0 <= index.column() < len(self._columns)):
            return None
        record = self._rows[index.row()]
        column = self._columns[index.column()]
        if role == Qt.ItemDataRole.DisplayRole:
            return _display(column.value(record))
        if role == SORT_ROLE:
            return _sortable(column.value(record))
        if role == RECORD_ROLE:
            return record
        if role == Qt.ItemDataRole.TextAlignmentRole and column.numeric:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        if role == Qt.ItemDataRole.ToolTipRole and column.tooltip is not None:
            return column.tooltip(record)
        if role == Qt.ItemDataRole.ForegroundRole and self._tint is not None:
            colour = self._tint(record)
            if colour:
                from PySide6.QtGui import QColor

                from console.theme import current_palette

                return QColor(getattr(current_palette(), colour))
        return None

    def headerData(
        self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole
    ) -> Any:
        if role != Qt.ItemDataRole.DisplayRole:
            return None
        if orientation == Qt.Orientation.Horizontal and 0 <= section < len(self._columns):
            return self._columns[section].header
        if orientation == Qt.Orientation.Vertical:
            return str(section + 1)
        return None


def record_table(model: RecordTableModel[Any]) -> Any:
    """A read-only, row-selecting table view over a RecordTableModel (history, audit, handover lists)."""
    from PySide6.QtWidgets import QAbstractItemView, QHeaderView, QTableView

    view = QTableView()
    view.setModel(model)
    view.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
    view.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
    view.setAlternatingRowColors(True)
    view.verticalHeader().setVisible(False)
    view.horizontalHeader().setStretchLastSection(True)
    view.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
    # Each new page sizes the columns to what they show, so no time or number is cut to "2026-12-04 …";
    # a long summary or message is capped and the last column takes the rest.
    model.modelReset.connect(lambda: fit_columns(view))
    return view


def fit_columns(view: Any, widest: int = MAX_COLUMN_WIDTH) -> None:
    view.resizeColumnsToContents()
    header = view.horizontalHeader()
    for column in range(header.count()):
        header.resizeSection(column, min(header.sectionSize(column), widest))
