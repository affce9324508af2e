"""The live incident board's Qt model: ids plus a row cache, kept sorted and filtered by the model itself.

The model never queries: rows arrive from the database worker (see feed.py) as plain dicts and are applied as
targeted changes — `dataChanged` for a row that changed, one `beginInsertRows` per batch of new rows — so
selection, scroll position and sort survive every refresh; `beginResetModel` is used only by `clear()`.

What is loaded (documented choice): the working set — every open incident plus those closed in the last 24 h —
sits in memory, which is what a dispatch board shows (hundreds to a few thousand rows even in a database of
100,000 incidents). Sorting and search-as-you-type then run in memory without a round trip.

Filtering lives in the model, not in a QSortFilterProxyModel: a proxy calls into Python once per row for every
filter change (7,500 calls, 30-40 ms of the GUI thread after paging older incidents) and maps every painted
index through Python again. Here a filter change is one pass over the rows' cached facts in Python and one
layout change; rows that start or stop matching after a change arrive or leave as row insertions and removals. Older closed
incidents are paged in 500 at a time through `canFetchMore`/`fetchMore` when the operator scrolls to the end
with closed incidents shown; the History tab is the place for searching years of incidents.

Age, SLA countdowns and the tint are computed in `data()` from the cached times and the clock, so the board
ticks with a viewport repaint, not a model signal.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, Qt, Signal
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
    ("response", "Response", "Response SLA: time left to acknowledge; amber at warning, red at breach"),
    ("resolution", "Resolution", "Resolution SLA: time left to resolve; amber at warning, red at breach"),
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


@dataclass(frozen=True)
class BoardFilter:
    """What the board shows: by status, severity, site, team, "mine" and free text (every word must occur)."""

    statuses: frozenset[str] = frozenset()
    severities: frozenset[str] = frozenset()
    sites: frozenset[str] = frozenset()
    teams: frozenset[str] = frozenset()
    text: str = ""
    show_closed: bool = True
    # Who "me" is: user name and display name (matched against "acknowledged by"), and "#<person id>" of the
    # person the account is linked to (matched against the assignee).
    mine_of: tuple[str, ...] = ()

    @property
    def words(self) -> tuple[str, ...]:
        return tuple(self.text.lower().split())

    @property
    def active(self) -> bool:
        return bool(
            not self.show_closed
            or self.statuses
            or self.severities
            or self.sites
            or self.teams
            or self.mine_of
            or self.words
        )

    def test(self) -> Callable[[tuple[bool, str, str, str, str, str, str, str]], bool]:
        """A function of a row's facts (BoardModel._remember) saying whether the row is shown."""
        if not self.active:
            return lambda _facts: True
        statuses, severities, sites, teams = self.statuses, self.severities, self.sites, self.teams
        show_closed, mine_of, words = self.show_closed, self.mine_of, self.words

        def accepts(facts: tuple[bool, str, str, str, str, str, str, str]) -> bool:
            is_open, status, severity, site, team, acked_by, assignee, blob = facts
            if not show_closed and not is_open:
                return False
            if statuses and status not in statuses:
                return False
            if severities and severity not in severities:
                return False
            if sites and site not in sites:
                return False
            if teams and team not in teams:
                return False
            if mine_of and acked_by not in mine_of and assignee not in mine_of:
                return False
            return all(word in blob for word in words)

        return accepts


class BoardModel(QAbstractTableModel):
    # Emitted for rows that arrive through the change feed (not the first load): (row, previous row or None).
    row_arrived = Signal(object, object)
    counts_changed = Signal()
    fetch_more_requested = Signal()

    def __init__(self, now: Callable[[], datetime], parent: Any = None) -> None:
        super().__init__(parent)
        self._now = now
        self._ids: list[int] = []  # the rows shown, in order
        self._rows: dict[int, dict[str, Any]] = {}  # every row loaded, shown or filtered out
        self._position: dict[int, int] = {}  # id -> row, for the rows shown
        self.filters = BoardFilter()
        self._accepts = self.filters.test()
        # Per-row facts the filter reads, built when a row arrives, so testing a row is one tuple lookup:
        # (is open, status, severity, site, team handle, acknowledged by, #assignee id, search blob).
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
        """The row showing this incident; None when it is not loaded or filtered out."""
        return self._position.get(incident_id)

    def has(self, incident_id: int) -> bool:
        """Whether the incident is loaded (shown or filtered out)."""
        return incident_id in self._rows

    def total_count(self) -> int:
        """Incidents loaded, shown or not."""
        return len(self._rows)

    def incident_id(self, index: ModelIndex) -> int | None:
        if not index.isValid() or not 0 <= index.row() < len(self._ids):
            return None
        return self._ids[index.row()]

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
            f"#{row['assignee_id']}" if row.get("assignee_id") is not None else "",
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
        order puts them; a change that moves a row in the order is one layout change for the whole batch. A
        change that makes a row match the filter, or stop matching it, inserts or removes that row."""
        fresh: list[dict[str, Any]] = []
        fresh_ids: set[int] = set()
        shown: list[dict[str, Any]] = []  # known rows that now match the filter and did not before
        hidden: list[int] = []  # shown rows that no longer match
        moved = False
        last_col = len(COLUMNS) - 1
        accepts, facts = self._accepts, self._facts
        for row in rows:
            incident_id = int(row["id"])
            previous = self._rows.get(incident_id)
            if previous is None:
                if incident_id not in fresh_ids:
                    fresh_ids.add(incident_id)
                    fresh.append(row)
                continue
            if previous == row:
                continue
            self._rows[incident_id] = row
            self._forget_cells(incident_id)
            self._remember(incident_id, row)
            key = self._key_of(row)
            position = self._position.get(incident_id)
            if not accepts(facts[incident_id]):
                self._keys[incident_id] = key
                if position is not None:
                    hidden.append(incident_id)
            elif position is None:
                self._keys[incident_id] = key
                shown.append(row)
            else:
                if key != self._keys[incident_id]:
                    self._keys[incident_id] = key
                    moved = True
                self.dataChanged.emit(self.index(position, 0), self.index(position, last_col))
            if from_feed:
                self.row_arrived.emit(row, previous)
        if hidden:
            self._hide(hidden)
        if moved:
            self._resort()
        if fresh:
            for row in fresh:
                incident_id = int(row["id"])
                self._rows[incident_id] = row
                self._forget_cells(incident_id)
                self._remember(incident_id, row)
                self._keys[incident_id] = self._key_of(row)
            shown.extend(r for r in fresh if accepts(facts[int(r["id"])]))
        if shown:
            self._show(shown)
        if from_feed:
            for row in fresh:
                self.row_arrived.emit(row, None)
        if rows:
            self.counts_changed.emit()

    def _show(self, rows: list[dict[str, Any]]) -> None:
        """Insert rows (already cached, not yet shown) at their places in the order, one beginInsertRows per
        contiguous run. The feed hands rows over in slices (feed.py), which bounds the runs per turn."""
        descending = self.sort_order == Qt.SortOrder.DescendingOrder
        keys = self._keys
        ordered = sorted((int(r["id"]) for r in rows), key=keys.__getitem__, reverse=descending)
        runs: list[tuple[int, list[int]]] = []
        for incident_id in ordered:
            at = self._insert_position(keys[incident_id])  # position in the list as it was before this batch
            if runs and runs[-1][0] == at:
                runs[-1][1].append(incident_id)
            else:
                runs.append((at, [incident_id]))
        offset = 0
        for at, members in runs:
            start = at + offset
            self.beginInsertRows(QModelIndex(), start, start + len(members) - 1)
            self._ids[start:start] = members
            self.endInsertRows()
            offset += len(members)
        # Positions are only read by our own code (never by Qt during an insert): rebuild once per batch,
        # not once per run, which made a page of older incidents quadratic.
        self._position = {i: n for n, i in enumerate(self._ids)}

    def _hide(self, ids: list[int]) -> None:
        """Remove shown rows from view (they stay loaded), last row first so earlier positions hold."""
        for position in sorted((self._position[i] for i in ids), reverse=True):
            self.beginRemoveRows(QModelIndex(), position, position)
            del self._ids[position]
            self.endRemoveRows()
        self._position = {i: n for n, i in enumerate(self._ids)}

    def _relayout(self, new_ids: list[int]) -> None:
        """Show `new_ids` in this order as one layout change: persistent indexes (selection, current row)
        follow their incidents, and those of incidents no longer shown become invalid."""
        if new_ids == self._ids:
            return
        # Emitted without arguments: PySide6 6.10 refuses the (parents, hint) form of these signals.
        self.layoutAboutToBeChanged.emit()
        persistent = self.persistentIndexList()
        remembered = [(self._ids[i.row()], i.column()) for i in persistent]
        self._ids = new_ids
        self._position = {i: n for n, i in enumerate(self._ids)}
        invalid = QModelIndex()
        self.changePersistentIndexList(
            persistent,
            [self.index(self._position[i], col) if i in self._position else invalid for i, col in remembered],
        )
        self.layoutChanged.emit()

    def _resort(self) -> None:
        """Reorder the shown rows by the cached keys."""
        descending = self.sort_order == Qt.SortOrder.DescendingOrder
        self._relayout(sorted(self._ids, key=self._keys.__getitem__, reverse=descending))

    def sort(self, column: int, order: Qt.SortOrder = Qt.SortOrder.AscendingOrder) -> None:
        if not 0 <= column < len(COLUMNS):
            return
        self.sort_column, self.sort_order = column, order
        self._keys = {i: self._key_of(r) for i, r in self._rows.items()}
        self._resort()

    def set_filters(self, **changes: Any) -> None:
        """Change what is shown (fields of BoardFilter), as one pass over the loaded rows and one layout
        change; selection and current row stay on their incidents when these are still shown."""
        for name, value in changes.items():
            if isinstance(value, (set, list, tuple)) and name != "mine_of":
                changes[name] = frozenset(value)
            elif name == "mine_of":
                changes[name] = tuple(value)
        self.filters = replace(self.filters, **changes)
        self._accepts = accepts = self.filters.test()
        self.fetch_enabled = self.filters.show_closed
        facts = self._facts
        descending = self.sort_order == Qt.SortOrder.DescendingOrder
        matching = [i for i in self._rows if accepts(facts[i])]
        self._relayout(sorted(matching, key=self._keys.__getitem__, reverse=descending))
        self.counts_changed.emit()

    def filter_state(self) -> dict[str, Any]:
        f = self.filters
        return {
            "statuses": sorted(f.statuses),
            "severities": sorted(f.severities),
            "sites": sorted(f.sites),
            "teams": sorted(f.teams),
            "text": f.text,
            "show_closed": f.show_closed,
            "mine": bool(f.mine_of),
        }

    def remove_ids(self, ids: Iterable[int]) -> None:
        """Incidents that no longer exist (retention): rare, so one removal per row is fine."""
        for incident_id in ids:
            if incident_id not in self._rows:
                continue
            position = self._position.get(incident_id)
            if position is not None:
                self.beginRemoveRows(QModelIndex(), position, position)
                del self._ids[position]
            del self._rows[incident_id]
            self._facts.pop(incident_id, None)
            self._open.discard(incident_id)
            self._keys.pop(incident_id, None)
            self._forget_cells(incident_id)
            if position is not None:
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
            return fmt.sla_state(row, key, now or self._now(), compact=True)[1]
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
