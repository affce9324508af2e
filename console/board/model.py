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
_COLUMN_COUNT = len(COLUMNS)
_FACT_COLUMNS = frozenset({"severity", "id", "status", "age"})  # sort keys from id/status/severity/created
_LIVE_COLUMNS = frozenset(COL[k] for k in ("age", "response", "resolution"))  # change with the clock

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
        # Per-row facts the proxy filters on, built when a row arrives, so filterAcceptsRow is one tuple
        # lookup: (is open, status, severity, site, team handle, acknowledged by, assignee, search blob).
        self._facts: dict[int, tuple[bool, str, str, str, str, str, str, str]] = {}
        self._open: set[int] = set()  # ids of open incidents: the per-second deadline checks walk only these
        self._keys: dict[int, Any] = {}
        # Every role of every column of a row, ready for data() (one dict lookup per cell and role): the
        # static columns built once per change of the row, the clock-driven ones (age, SLA countdowns, the
        # tint) once per row and second of the clock.
        self._cells: dict[int, list[dict[int, Any]]] = {}
        self._live: dict[int, tuple[QBrush | None, dict[int, dict[int, Any]]]] = {}
        self._live_second = -1
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

    def open_rows(self) -> list[dict[str, Any]]:
        rows = self._rows
        return [rows[i] for i in self._open]

    def unacknowledged_count(self) -> int:
        rows = self._rows
        return sum(1 for i in self._open if fmt.is_unacknowledged(rows[i]))

    def open_count(self) -> int:
        return len(self._open)

    def min_closed_id(self) -> int | None:
        open_ids = self._open
        closed = [i for i in self._rows if i not in open_ids]
        return min(closed) if closed else None

    def search_blob(self, row: int) -> str:
        return self._facts[self._ids[row]][7]

    def facts_at(self, row: int) -> tuple[bool, str, str, str, str, str, str, str]:
        return self._facts[self._ids[row]]

    def _remember(self, incident_id: int, row: dict[str, Any]) -> None:
        """Cache what filtering needs for this row (called whenever a row arrives or changes)."""
        is_open = fmt.is_open(row)
        self._facts[incident_id] = (
            is_open,
            str(row["status"]),
            str(row["severity"]),
            str(row.get("site") or ""),
            str(row.get("team_handle") or ""),
            str(row.get("acknowledged_by") or ""),
            str(row.get("assignee") or ""),
            str(row.get("search_text") or fmt.search_blob(row)),  # made on the worker (feed.py)
        )
        if is_open:
            self._open.add(incident_id)
        else:
            self._open.discard(incident_id)

    def order_for_facts(self) -> tuple[Callable[[dict[str, Any]], Any], bool] | None:
        """(sort key, descending) for rows that carry only id, status, severity and created_at (see
        engine.board.working_set), when the current sort column needs no more; None otherwise. Pure Python,
        safe to call on the database worker."""
        key = COLUMN_KEYS[self.sort_column]
        if key not in _FACT_COLUMNS:
            return None
        sort_key = self._sort_key
        return (
            lambda row: (sort_key(row, key), row["id"]),
            self.sort_order == Qt.SortOrder.DescendingOrder,
        )

    def order_for_rows(self) -> tuple[Callable[[dict[str, Any]], Any], bool]:
        """(sort key, descending) for full rows in the current order: the worker orders a batch of the first
        load with it, so the batch lands as one contiguous run of rows. Pure Python, safe on the worker."""
        key = COLUMN_KEYS[self.sort_column]
        sort_key = self._sort_key
        return (
            lambda row: (sort_key(row, key), row["id"]),
            self.sort_order == Qt.SortOrder.DescendingOrder,
        )

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
            self._forget_cells(incident_id)
            self._remember(incident_id, row)
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
        a page of older incidents cheap on a board of thousands (tried: one block plus one layout change
        made the proxy re-filter every row and measured no better). The feed hands rows over in slices
        (feed.py), which bounds the runs per event-loop turn."""
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
            for key, row in members:
                incident_id = int(row["id"])
                self._rows[incident_id] = row
                self._forget_cells(incident_id)
                self._remember(incident_id, row)
                self._keys[incident_id] = key
            self._ids[start:start] = [int(row["id"]) for _key, row in members]
            self.endInsertRows()
            offset += len(members)
        # Positions are only read by our own code (never by Qt during an insert): rebuild once per batch,
        # not once per run, which made a page of older incidents quadratic.
        self._position = {i: n for n, i in enumerate(self._ids)}

    def _resort(self) -> None:
        """Reorder rows by the cached keys as one layout change: persistent indexes (selection, current
        row) follow their incidents."""
        descending = self.sort_order == Qt.SortOrder.DescendingOrder
        new_ids = sorted(self._ids, key=self._keys.__getitem__, reverse=descending)
        if new_ids == self._ids:
            return
        # Emitted without arguments: PySide6 6.10 refuses the (parents, hint) form of these signals.
        self.layoutAboutToBeChanged.emit()
        persistent = self.persistentIndexList()
        remembered = [(self._ids[i.row()], i.column()) for i in persistent]
        self._ids = new_ids
        self._position = {i: n for n, i in enumerate(self._ids)}
        self.changePersistentIndexList(
            persistent, [self.index(self._position[i], col) for i, col in remembered]
        )
        self.layoutChanged.emit()

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
            self._facts.pop(incident_id, None)
            self._open.discard(incident_id)
            self._keys.pop(incident_id, None)
            self._forget_cells(incident_id)
            self._position = {i: n for n, i in enumerate(self._ids)}
            self.endRemoveRows()
        self.counts_changed.emit()

    def clear(self) -> None:
        self.beginResetModel()
        self._ids, self._rows, self._position, self._facts, self._keys = [], {}, {}, {}, {}
        self._open = set()
        self._cells, self._live = {}, {}
        self.endResetModel()
        self.counts_changed.emit()

    def set_palette(self, palette: Palette) -> None:
        self.palette = palette
        self._brushes = {}
        self._cells, self._live = {}, {}
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

    def canFetchMore(self, parent: ModelIndex) -> bool:
        if parent.isValid():
            return False
        return self.fetch_enabled and self.more_available and not self.fetching

    def fetchMore(self, parent: ModelIndex) -> None:
        if self.canFetchMore(parent):
            self.fetching = True
            self.fetch_more_requested.emit()

    def data(self, index: ModelIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        # Called for every visible cell and role on each repaint (once a second for the countdowns): one
        # lookup in the row's prepared tables.
        role = int(role)
        if role not in _ROLES:
            return None
        r, c = index.row(), index.column()
        ids = self._ids
        if not (0 <= r < len(ids) and 0 <= c < _COLUMN_COUNT):
            return None
        incident_id = ids[r]
        if role == _TOOLTIP:  # only on hover: not worth preparing for every painted row
            return self._tooltip(self._rows[incident_id], COLUMN_KEYS[c])
        if role == _BACKGROUND:
            return self._live_for(incident_id)[0]
        if c in _LIVE_COLUMNS:
            return self._live_for(incident_id)[1][c].get(role)
        return self._static_for(incident_id)[c].get(role)

    def paint_row(self, row: int, now: datetime) -> tuple[list[dict[int, Any]], QBrush | None]:
        """(each column's roles, the row's tint) at `now`, for the board's painter (cells.py): one call per
        painted row instead of one data() call per cell and role."""
        incident_id = self._ids[row]
        tint, live = self._live_for(incident_id, now)
        cells = list(self._static_for(incident_id))
        for column, roles in live.items():
            cells[column] = roles
        return cells, tint

    def _live_for(
        self, incident_id: int, now: datetime | None = None
    ) -> tuple[QBrush | None, dict[int, dict[int, Any]]]:
        if now is None:
            now = self._now()
        second = int(now.timestamp())
        if second != self._live_second:  # the clock moved on: ages, countdowns and tints may change
            self._live = {}
            self._live_second = second
        live = self._live.get(incident_id)
        if live is None:
            live = self._live[incident_id] = self._live_table(self._rows[incident_id], now)
        return live

    def _static_for(self, incident_id: int) -> list[dict[int, Any]]:
        cells = self._cells.get(incident_id)
        if cells is None:
            cells = self._cells[incident_id] = self._static_table(self._rows[incident_id])
        return cells

    def _forget_cells(self, incident_id: int) -> None:
        self._cells.pop(incident_id, None)
        self._live.pop(incident_id, None)

    def _static_table(self, row: dict[str, Any]) -> list[dict[int, Any]]:
        """Each column's value for each role the board answers (None values left out); the clock-driven
        columns are left empty here (see _live_table)."""
        incident_id = int(row["id"])
        is_open = fmt.is_open(row)
        table: list[dict[int, Any]] = []
        for c, key in enumerate(COLUMN_KEYS):
            if c in _LIVE_COLUMNS:
                table.append({})
                continue
            display = self._display(row, key)
            roles: dict[int, Any] = {
                _DISPLAY: display,
                ID_ROLE: incident_id,
                SORT_ROLE: self._sort_key(row, key),
                _ACCESSIBLE: f"{COLUMNS[c][1]}: {display}",
            }
            foreground = self._foreground(row, key, None)
            if foreground is not None:
                roles[_FOREGROUND] = foreground
            if c == 0:
                roles[_DECORATION] = self._brush(
                    self.palette.severity.get(row["severity"], "#888888")
                ).color()
                if row["severity"] == "critical" and is_open:
                    roles[_FONT] = _bold()
            if key == "id":
                roles[_ALIGN] = _RIGHT
            table.append(roles)
        return table

    def _live_table(
        self, row: dict[str, Any], now: datetime
    ) -> tuple[QBrush | None, dict[int, dict[int, Any]]]:
        """(row tint, {column: roles}) for the columns that change with the clock, at `now`."""
        incident_id = int(row["id"])
        columns: dict[int, dict[int, Any]] = {}
        for c in _LIVE_COLUMNS:
            key = COLUMN_KEYS[c]
            display = self._display(row, key, now)
            roles: dict[int, Any] = {
                _DISPLAY: display,
                ID_ROLE: incident_id,
                SORT_ROLE: self._sort_key(row, key),
                _ACCESSIBLE: f"{COLUMNS[c][1]}: {display}",
            }
            foreground = self._foreground(row, key, now)
            if foreground is not None:
                roles[_FOREGROUND] = foreground
            if key == "age":
                roles[_ALIGN] = _RIGHT
            else:
                roles[STATE_ROLE] = fmt.sla_state(row, key, now)[0]
            columns[c] = roles
        return self._background(row, now), columns

    def _brush(self, color: str, alpha: int = 255) -> QBrush:
        brush = self._brushes.get((color, alpha))
        if brush is None:
            qcolor = QColor(color)
            qcolor.setAlpha(alpha)
            brush = self._brushes[(color, alpha)] = QBrush(qcolor)
        return brush

    def _display(self, row: dict[str, Any], key: str, now: datetime | None = None) -> str:
        if key == "severity":
            return str(row["severity"]).upper()
        if key == "id":
            return str(row["id"])
        if key == "status":
            return fmt.STATUS_LABEL.get(row["status"], row["status"])
        if key == "age":
            return fmt.duration(fmt.age_seconds(row, now or self._now()))
        if key in ("response", "resolution"):
            return fmt.sla_state(row, key, now or self._now())[1]
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

    def _background(self, row: dict[str, Any], now: datetime) -> QBrush | None:
        base = self.palette.status.get(row["status"])
        if base is None:
            return None
        # Ten steps of depth are plenty for the eye and keep the brush cache small.
        depth = round(fmt.tint_depth(row, now) * 10) / 10
        alpha = self.palette.tint_alpha + depth * (self.palette.tint_alpha_max - self.palette.tint_alpha)
        return self._brush(base, int(alpha))

    def _foreground(self, row: dict[str, Any], key: str, now: datetime | None) -> QBrush | None:
        if key == "severity":
            return self._brush(self.palette.severity_text.get(row["severity"], self.palette.text))
        if key in ("response", "resolution"):
            state = fmt.sla_state(row, key, now or self._now())[0]
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
        self._words: tuple[str, ...] = ()
        self._active = False  # any filter set; when not, every row is accepted without a lookup
        self._facts_at: Callable[[int], tuple[bool, str, str, str, str, str, str, str]] = lambda _r: (
            True,
            "",
            "",
            "",
            "",
            "",
            "",
            "",
        )

    def setSourceModel(self, model: QAbstractItemModel) -> None:
        if isinstance(model, BoardModel):
            self._facts_at = model.facts_at
        super().setSourceModel(model)

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
        self._words = tuple(self.text.lower().split())
        self._active = bool(
            not self.show_closed
            or self.statuses
            or self.severities
            or self.sites
            or self.teams
            or self.mine_of
            or self._words
        )
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
        # Called from C++ once per source row on every filter change: one tuple lookup, no row formatting.
        if not self._active:
            return True
        is_open, status, severity, site, team, acked_by, assignee, blob = self._facts_at(source_row)
        if not self.show_closed and not is_open:
            return False
        if self.statuses and status not in self.statuses:
            return False
        if self.severities and severity not in self.severities:
            return False
        if self.sites and site not in self.sites:
            return False
        if self.teams and team not in self.teams:
            return False
        if self.mine_of and acked_by not in self.mine_of and assignee not in self.mine_of:
            return False
        return all(word in blob for word in self._words)

    def incident_id(self, index: ModelIndex) -> int | None:
        if not index.isValid():
            return None
        value = self.data(index, ID_ROLE)
        return int(value) if value is not None else None
