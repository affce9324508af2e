"""The live incident board's Qt models: ids plus a row cache (BoardModel), sorting and filtering (BoardProxy).

The model never queries: rows arrive from the database worker (see feed.py) as plain dicts and are applied as
targeted changes — `dataChanged` for a row that changed, one `beginInsertRows` per batch of new rows — so
selection, scroll position and sort survive every refresh; `beginResetModel` is used only by `clear()`.

What is loaded (documented choice): the working set — every open incident plus those closed in the last 24 h —
sits in memory, which is what a dispatch board shows (hundreds to a few thousand rows even in a database of
100,000 incidents). Sorting and search-as-you-type then run in the proxy without a round trip. Older closed
incidents are paged in 500 at a time through `canFetchMore`/`fetchMore` when the operator scrolls to the end
with closed incidents shown; the History tab is the place for searching years of incidents.

Age, SLA countdowns and the tint are computed in `data()` from the cached times and the clock, so the board
ticks with a viewport repaint, not a model signal.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from PySide6.QtCore import (
    QAbstractItemModel,
    QAbstractTableModel,
    QModelIndex,
    QPersistentModelIndex,
    QSortFilterProxyModel,
    Qt,
    Signal,
)
from PySide6.QtGui import QBrush, QColor, QFont

from console.board import format as fmt
from console.theme import Palette, current_palette

ModelIndex = QModelIndex | QPersistentModelIndex

SORT_ROLE = int(Qt.ItemDataRole.UserRole) + 1
ID_ROLE = int(Qt.ItemDataRole.UserRole) + 2
STATE_ROLE = int(Qt.ItemDataRole.UserRole) + 3  # normal/warning/breached for SLA cells (tests, delegates)

# (key, header, tooltip)
COLUMNS: list[tuple[str, str, str]] = [
    ("severity", "Severity", "Severity, colour and text"),
    ("id", "#", "Incident number (use it on the command line)"),
    ("status", "Status", "Incident status"),
    ("summary", "Summary", "What was reported"),
    ("site", "Site", "Site"),
    ("category", "Category", "Category (sets the SLA)"),
    ("team", "Team", "Team the incident is assigned to"),
    ("age", "Age", "Time since the incident was opened"),
    ("response", "Response SLA", "Time left to acknowledge; amber at warning, red at breach"),
    ("resolution", "Resolution SLA", "Time left to resolve; amber at warning, red at breach"),
    ("level", "Level", "Current escalation level and state"),
    ("paged", "Paged / delivery", "Who was paged last, on which channel, and the delivery status"),
]
COLUMN_KEYS = [c[0] for c in COLUMNS]
COL = {key: i for i, key in enumerate(COLUMN_KEYS)}
_LIVE_COLUMNS = frozenset({"age", "response", "resolution"})  # text changes with the clock

_R = Qt.ItemDataRole
_DISPLAY, _DECORATION, _TOOLTIP = (
    int(_R.DisplayRole.value),
    int(_R.DecorationRole.value),
    int(_R.ToolTipRole.value),
)
_FONT, _ALIGN = int(_R.FontRole.value), int(_R.TextAlignmentRole.value)
_BACKGROUND, _FOREGROUND = int(_R.BackgroundRole.value), int(_R.ForegroundRole.value)
_ACCESSIBLE = int(_R.AccessibleTextRole.value)
_ROLES = frozenset(
    {
        _DISPLAY,
        _DECORATION,
        _TOOLTIP,
        _FONT,
        _ALIGN,
        _BACKGROUND,
        _FOREGROUND,
        _ACCESSIBLE,
        SORT_ROLE,
        ID_ROLE,
        STATE_ROLE,
    }
)
_RIGHT = int((Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter).value)
_FLAGS = Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable | Qt.ItemFlag.ItemNeverHasChildren
_NO_FLAGS = Qt.ItemFlag.NoItemFlags
_BOLD: list[QFont] = []


def _bold() -> QFont:
    if not _BOLD:  # made on first use: a QFont needs the application to exist
        font = QFont()
        font.setBold(True)
        _BOLD.append(font)
    return _BOLD[0]


class BoardModel(QAbstractTableModel):
    # Emitted for rows that arrive through the change feed (not the first load): (row, previous row or None).
    row_arrived = Signal(object, object)
    counts_changed = Signal()
    fetch_more_requested = Signal()

    def __init__(self, now: Callable[[], datetime], parent: Any = None) -> None:
        super().__init__(parent)
        self._now = now
        self._ids: list[int] = []
        self._rows: dict[int, dict[str, Any]] = {}
        self._position: dict[int, int] = {}
        self._blob: dict[int, str] = {}
        self._keys: dict[int, Any] = {}
        self._text: dict[int, list[str]] = {}  # display text of the static columns
        self._brushes: dict[tuple[str, int], QBrush] = {}
        self.sort_column = COL["severity"]
        self.sort_order = Qt.SortOrder.AscendingOrder
        self.palette: Palette = current_palette()
        self.more_available = False  # older closed incidents exist beyond what is loaded
        self.fetching = False
        self.fetch_enabled = True

    # -- row object interface -------------------------------------------------------------------------------

    def now(self) -> datetime:
        return self._now()

    def ids(self) -> list[int]:
        return list(self._ids)

    def row_for_id(self, incident_id: int) -> dict[str, Any] | None:
        return self._rows.get(incident_id)

    def row_at(self, row: int) -> dict[str, Any]:
        return self._rows[self._ids[row]]

    def position_of(self, incident_id: int) -> int | None:
        return self._position.get(incident_id)

    def rows(self) -> Iterable[dict[str, Any]]:
        return self._rows.values()

    def unacknowledged_count(self) -> int:
        return sum(1 for r in self._rows.values() if fmt.is_unacknowledged(r))

    def open_count(self) -> int:
        return sum(1 for r in self._rows.values() if fmt.is_open(r))

    def min_closed_id(self) -> int | None:
        closed = [i for i, r in self._rows.items() if not fmt.is_open(r)]
        return min(closed) if closed else None

    def search_blob(self, row: int) -> str:
        return self._blob[self._ids[row]]

    def _key_of(self, row: dict[str, Any]) -> Any:
        return (self._sort_key(row, COLUMN_KEYS[self.sort_column]), row["id"])

    def _insert_position(self, key: Any) -> int:
        """Where a row with this sort key goes in the current order (binary search over cached keys)."""
        lo, hi = 0, len(self._ids)
        descending = self.sort_order == Qt.SortOrder.DescendingOrder
        while lo < hi:
            mid = (lo + hi) // 2
            other = self._keys[self._ids[mid]]
            if (other > key) if descending else (other < key):
                lo = mid + 1
            else:
                hi = mid
        return lo

    def apply_rows(self, rows: list[dict[str, Any]], *, from_feed: bool = True) -> None:
        """Update known rows in place (one dataChanged per changed row) and insert new ones where the sort
        order puts them; a change that moves a row in the order is one layout change for the whole batch."""
        fresh: list[dict[str, Any]] = []
        fresh_ids: set[int] = set()
        moved = False
        last_col = len(COLUMNS) - 1
        for row in rows:
            incident_id = int(row["id"])
            position = self._position.get(incident_id)
            if position is None:
                if incident_id not in fresh_ids:
                    fresh_ids.add(incident_id)
                    fresh.append(row)
                continue
            previous = self._rows[incident_id]
            if previous == row:
                continue
            self._rows[incident_id] = row
            self._text.pop(incident_id, None)
            self._blob[incident_id] = fmt.search_blob(row)
            key = self._key_of(row)
            if key != self._keys[incident_id]:
                self._keys[incident_id] = key
                moved = True
            self.dataChanged.emit(self.index(position, 0), self.index(position, last_col))
            if from_feed:
                self.row_arrived.emit(row, previous)
        if moved:
            self._resort()
        if fresh:
            self._insert_sorted(fresh)
        if from_feed:
            for row in fresh:
                self.row_arrived.emit(row, None)
        if rows:
            self.counts_changed.emit()

    def _insert_sorted(self, fresh: list[dict[str, Any]]) -> None:
        """Insert new rows at their places in the order, one beginInsertRows per contiguous run.

        Runs, not a layout change: a proxy then filters only the new rows instead of every row, which keeps
        a page of 500 older incidents cheap on a board of thousands."""
        descending = self.sort_order == Qt.SortOrder.DescendingOrder
        keyed = sorted(((self._key_of(r), r) for r in fresh), key=lambda kr: kr[0], reverse=descending)
        runs: list[tuple[int, list[tuple[Any, dict[str, Any]]]]] = []
        for key, row in keyed:
            at = self._insert_position(key)  # position in the list as it was before this batch
            if runs and runs[-1][0] == at:
                runs[-1][1].append((key, row))
            else:
                runs.append((at, [(key, row)]))
        offset = 0
        for at, members in runs:
            start = at + offset
            self.beginInsertRows(QModelIndex(), start, start + len(members) - 1)
            for n, (key, row) in enumerate(members):
                incident_id = int(row["id"])
                self._rows[incident_id] = row
                self._text.pop(incident_id, None)
                self._blob[incident_id] = fmt.search_blob(row)
                self._keys[incident_id] = key
                self._ids.insert(start + n, incident_id)
            self._position = {i: n for n, i in enumerate(self._ids)}
            self.endInsertRows()
            offset += len(members)

    def _resort(self) -> None:
        """Reorder rows by the cached keys as one layout change: persistent indexes (selection, current
        row) follow their incidents."""
        descending = self.sort_order == Qt.SortOrder.DescendingOrder
        new_ids = sorted(self._ids, key=self._keys.__getitem__, reverse=descending)
        if new_ids == self._ids:
            return
        hint = QAbstractItemModel.LayoutChangeHint.VerticalSortHint
        self.layoutAboutToBeChanged.emit([], hint)
        persistent = self.persistentIndexList()
        remembered = [(self._ids[i.row()], i.column()) for i in persistent]
        self._ids = new_ids
        self._position = {i: n for n, i in enumerate(self._ids)}
        self.changePersistentIndexList(
            persistent, [self.index(self._position[i], col) for i, col in remembered]
        )
        self.layoutChanged.emit([], hint)

    def sort(self, column: int, order: Qt.SortOrder = Qt.SortOrder.AscendingOrder) -> None:
        if not 0 <= column < len(COLUMNS):
            return
        self.sort_column, self.sort_order = column, order
        self._keys = {i: self._key_of(r) for i, r in self._rows.items()}
        self._resort()

    def remove_ids(self, ids: Iterable[int]) -> None:
        """Incidents that no longer exist (retention): rare, so one removal per row is fine."""
        for incident_id in ids:
            position = self._position.get(incident_id)
            if position is None:
                continue
            self.beginRemoveRows(QModelIndex(), position, position)
            del self._ids[position]
            del self._rows[incident_id]
            self._blob.pop(incident_id, None)
            self._keys.pop(incident_id, None)
            self._text.pop(incident_id, None)
            self._position = {i: n for n, i in enumerate(self._ids)}
            self.endRemoveRows()
        self.counts_changed.emit()

    def clear(self) -> None:
        self.beginResetModel()
        self._ids, self._rows, self._position, self._blob, self._keys = [], {}, {}, {}, {}
        self._text = {}
        self.endResetModel()
        self.counts_changed.emit()

    def set_palette(self, palette: Palette) -> None:
        self.palette = palette
        self._brushes = {}
        if self._ids:
            self.dataChanged.emit(self.index(0, 0), self.index(len(self._ids) - 1, len(COLUMNS) - 1))

    # -- Qt model interface ---------------------------------------------------------------------------------

    def rowCount(self, parent: ModelIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self._ids)

    def columnCount(self, parent: ModelIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(COLUMNS)

    def headerData(
        self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole
    ) -> Any:
        if orientation != Qt.Orientation.Horizontal or not 0 <= section < len(COLUMNS):
            return None
        if role == Qt.ItemDataRole.DisplayRole:
            return COLUMNS[section][1]
        if role == Qt.ItemDataRole.ToolTipRole:
            return COLUMNS[section][2]
        return None

    def flags(self, index: ModelIndex) -> Qt.ItemFlag:
        return _FLAGS if index.isValid() else _NO_FLAGS

    def canFetchMore(self, parent: ModelIndex) -> bool:
        if parent.isValid():
            return False
        return self.fetch_enabled and self.more_available and not self.fetching

    def fetchMore(self, parent: ModelIndex) -> None:
        if self.canFetchMore(parent):
            self.fetching = True
            self.fetch_more_requested.emit()

    def data(self, index: ModelIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        # Called for every visible cell and role on each repaint (once a second for the countdowns), so the
        # roles the board does not use return at once and everything static comes from per-row caches.
        role = int(role)
        if role not in _ROLES or not index.isValid():
            return None
        r, c = index.row(), index.column()
        if r >= len(self._ids) or c >= len(COLUMNS):
            return None
        incident_id = self._ids[r]
        row = self._rows[incident_id]
        key = COLUMN_KEYS[c]
        if role == _DISPLAY:
            if key in _LIVE_COLUMNS:
                return self._display(row, key)
            cached = self._text.get(incident_id)
            if cached is None:
                cached = self._text[incident_id] = [self._display(row, k) for k in COLUMN_KEYS]
            return cached[c]
        if role == _BACKGROUND:
            return self._background(row)
        if role == _FOREGROUND:
            return self._foreground(row, key)
        if role == ID_ROLE:
            return incident_id
        if role == SORT_ROLE:
            return self._sort_key(row, key)
        if role == STATE_ROLE:
            return fmt.sla_state(row, key, self._now())[0] if key in ("response", "resolution") else None
        if role == _DECORATION:
            return (
                self._brush(self.palette.severity.get(row["severity"], "#888888")).color() if c == 0 else None
            )
        if role == _FONT:
            return _bold() if c == 0 and row["severity"] == "critical" and fmt.is_open(row) else None
        if role == _TOOLTIP:
            return self._tooltip(row, key)
        if role == _ALIGN:
            return _RIGHT if key in ("id", "age") else None
        if role == _ACCESSIBLE:
            return f"{COLUMNS[c][1]}: {self._display(row, key)}"
        return None

    def _brush(self, color: str, alpha: int = 255) -> QBrush:
        brush = self._brushes.get((color, alpha))
        if brush is None:
            qcolor = QColor(color)
            qcolor.setAlpha(alpha)
            brush = self._brushes[(color, alpha)] = QBrush(qcolor)
        return brush

    def _display(self, row: dict[str, Any], key: str) -> str:
        if key == "severity":
            return str(row["severity"]).upper()
        if key == "id":
            return str(row["id"])
        if key == "status":
            return fmt.STATUS_LABEL.get(row["status"], row["status"])
        if key == "age":
            return fmt.duration(fmt.age_seconds(row, self._now()))
        if key in ("response", "resolution"):
            return fmt.sla_state(row, key, self._now())[1]
        if key == "level":
            return fmt.level_text(row)
        if key == "paged":
            return fmt.paged_text(row)
        return str(row.get(key) or "")

    def _sort_key(self, row: dict[str, Any], key: str) -> Any:
        created = row["created_at"].timestamp()
        if key == "severity":
            closed = 0 if fmt.is_open(row) else 1
            return float((closed * 10 + fmt.SEVERITY_RANK.get(row["severity"], 9)) * 1e10 + created)
        if key == "id":
            return int(row["id"])
        if key == "status":
            return float(fmt.STATUS_RANK.get(row["status"], 9) * 1e10 + created)
        if key == "age":
            return -created  # static, so the order never needs a clock tick
        if key in ("response", "resolution"):
            return fmt.sla_sort_key(row, key)
        if key == "level":
            return int(row.get("current_level") or 0)
        return self._display(row, key).lower()

    def _background(self, row: dict[str, Any]) -> QBrush | None:
        base = self.palette.status.get(row["status"])
        if base is None:
            return None
        # Ten steps of depth are plenty for the eye and keep the brush cache small.
        depth = round(fmt.tint_depth(row, self._now()) * 10) / 10
        alpha = self.palette.tint_alpha + depth * (self.palette.tint_alpha_max - self.palette.tint_alpha)
        return self._brush(base, int(alpha))

    def _foreground(self, row: dict[str, Any], key: str) -> QBrush | None:
        if key == "severity":
            return self._brush(self.palette.severity_text.get(row["severity"], self.palette.text))
        if key in ("response", "resolution"):
            state = fmt.sla_state(row, key, self._now())[0]
            if state == fmt.BREACHED:
                return self._brush(self.palette.breached)
            if state == fmt.WARNING:
                return self._brush(self.palette.warning)
        if key == "paged" and (
            row.get("last_delivery") in ("failed", "undelivered") or row.get("page_status") == "exhausted"
        ):
            return self._brush(self.palette.breached)
        if not fmt.is_open(row):
            return self._brush(self.palette.muted)
        return None

    def _tooltip(self, row: dict[str, Any], key: str) -> str | None:
        if key == "paged" and row.get("last_delivery_error"):
            return f"{fmt.paged_text(row)}\n{row['last_delivery_error']}"
        if key in ("response", "resolution"):
            due = row.get(f"{key}_due_at")
            if due is not None:
                return f"{key.title()} due {due.astimezone().strftime('%Y-%m-%d %H:%M')}"
        if key == "summary":
            return str(row["summary"])
        return None


class BoardProxy(QSortFilterProxyModel):
    """Filters by status, severity, site, team, "mine" and free text; sorts by each column's sort key."""

    def __init__(self, parent: Any = None) -> None:
        super().__init__(parent)
        # The source model keeps itself sorted (keys cached per row, see BoardModel.sort); the proxy only
        # filters. Sorting here would call back into Python for every comparison: seconds on a busy board.
        self.setDynamicSortFilter(True)
        self.statuses: frozenset[str] = frozenset()
        self.severities: frozenset[str] = frozenset()
        self.sites: frozenset[str] = frozenset()
        self.teams: frozenset[str] = frozenset()
        self.text = ""
        self.show_closed = True
        self.mine_of: tuple[str, ...] = ()  # names that count as "me" (user name, display name)

    def sort(self, column: int, order: Qt.SortOrder = Qt.SortOrder.AscendingOrder) -> None:
        self.board().sort(column, order)

    def board(self) -> BoardModel:
        model = self.sourceModel()
        assert isinstance(model, BoardModel)
        return model

    def set_filters(self, **changes: Any) -> None:
        self._begin_change()
        for name, value in changes.items():
            if not hasattr(self, name):
                raise AttributeError(name)
            if isinstance(value, (set, list, tuple)) and name != "mine_of":
                value = frozenset(value)
            setattr(self, name, value)
        self.board().fetch_enabled = self.show_closed
        self._end_change()

    def filter_state(self) -> dict[str, Any]:
        return {
            "statuses": sorted(self.statuses),
            "severities": sorted(self.severities),
            "sites": sorted(self.sites),
            "teams": sorted(self.teams),
            "text": self.text,
            "show_closed": self.show_closed,
            "mine": bool(self.mine_of),
        }

    def _begin_change(self) -> None:
        begin = getattr(self, "beginFilterChange", None)
        if begin is not None:
            begin()

    def _end_change(self) -> None:
        if hasattr(self, "beginFilterChange"):
            self.endFilterChange(QSortFilterProxyModel.Direction.Rows)
        else:  # Qt < 6.10
            self.invalidateFilter()

    def filterAcceptsRow(self, source_row: int, source_parent: ModelIndex) -> bool:
        row = self.board().row_at(source_row)
        if not self.show_closed and not fmt.is_open(row):
            return False
        if self.statuses and row["status"] not in self.statuses:
            return False
        if self.severities and row["severity"] not in self.severities:
            return False
        if self.sites and row["site"] not in self.sites:
            return False
        if self.teams and row.get("team_handle") not in self.teams:
            return False
        if (
            self.mine_of
            and row.get("acknowledged_by") not in self.mine_of
            and row.get("assignee") not in self.mine_of
        ):
            return False
        if self.text:
            blob = self.board().search_blob(source_row)
            return all(word in blob for word in self.text.lower().split())
        return True

    def incident_id(self, index: ModelIndex) -> int | None:
        if not index.isValid():
            return None
        value = self.data(index, ID_ROLE)
        return int(value) if value is not None else None
