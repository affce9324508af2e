"""Incident detail: everything that happened to one incident, in time order, with its SLA deadlines drawn in.

The timeline holds events, every message sent (channel, recipient, status, error), replies received and notes;
the response and resolution deadlines appear as rows in their place in time and as lines on the strip above
the table. The detail follows the change feed, so a delivery receipt or an acknowledgement shows up while the
operator watches. `DetailWindow` pops an incident out into a window of its own.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from PySide6.QtCore import (
    QAbstractTableModel,
    QModelIndex,
    QPersistentModelIndex,
    QPointF,
    QRectF,
    QSettings,
    Qt,
    QTimer,
    Signal,
)
from PySide6.QtGui import QAction, QBrush, QColor, QFont, QGuiApplication, QKeySequence, QPainter, QPen
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QMainWindow,
    QPlainTextEdit,
    QPushButton,
    QSizePolicy,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from console.board import format as fmt
from console.services import ConsoleServices
from console.theme import current_palette
from engine import board, wording

ModelIndex = QModelIndex | QPersistentModelIndex
TIMELINE_COLUMNS = ["Time", "What", "Who / channel", "Detail", "Status"]


def _local(at: datetime) -> str:
    return at.astimezone().strftime("%d %b %H:%M:%S")


def timeline_with_deadlines(detail: dict[str, Any]) -> list[dict[str, Any]]:
    """The incident's timeline plus one row per SLA deadline, in time order."""
    items = list(detail.get("timeline", []))
    for which in ("response", "resolution"):
        due = detail.get(f"{which}_due_at")
        if due is not None and not detail.get("sensitive"):
            items.append(
                {"at": due, "type": "deadline", "kind": which, "actor": "", "text": f"{which.title()} due"}
            )
    items.sort(key=lambda item: item["at"])
    return items


class TimelineModel(QAbstractTableModel):
    def __init__(self, parent: Any = None) -> None:
        super().__init__(parent)
        self._items: list[dict[str, Any]] = []
        self._incident: int | None = None
        self._detail: dict[str, Any] = {}
        self.now = lambda: datetime.now().astimezone()

    def set_detail(self, detail: dict[str, Any]) -> None:
        items = timeline_with_deadlines(detail)
        if detail.get("id") != self._incident or len(items) < len(self._items):
            self.beginResetModel()
            self._items, self._incident, self._detail = items, detail.get("id"), detail
            self.endResetModel()
            return
        self._detail = detail
        old = self._items
        for n in range(len(old)):
            if old[n] != items[n]:
                self._items[n] = items[n]
                self.dataChanged.emit(self.index(n, 0), self.index(n, len(TIMELINE_COLUMNS) - 1))
        if len(items) > len(old):
            start = len(old)
            self.beginInsertRows(QModelIndex(), start, len(items) - 1)
            self._items = self._items[:start] + items[start:]
            self.endInsertRows()

    def items(self) -> list[dict[str, Any]]:
        return list(self._items)

    def refresh_deadlines(self) -> None:
        """The time left on each deadline row (and its colour) changes every second."""
        last = len(TIMELINE_COLUMNS) - 1
        for n, item in enumerate(self._items):
            if item["type"] == "deadline":
                self.dataChanged.emit(self.index(n, 0), self.index(n, last))

    def rowCount(self, parent: ModelIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self._items)

    def columnCount(self, parent: ModelIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(TIMELINE_COLUMNS)

    def headerData(
        self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole
    ) -> Any:
        if (
            orientation == Qt.Orientation.Horizontal
            and role == Qt.ItemDataRole.DisplayRole
            and 0 <= section < len(TIMELINE_COLUMNS)
        ):
            return TIMELINE_COLUMNS[section]
        return None

    def flags(self, index: ModelIndex) -> Qt.ItemFlag:
        if not index.isValid():
            return Qt.ItemFlag.NoItemFlags
        return Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable | Qt.ItemFlag.ItemNeverHasChildren

    def data(self, index: ModelIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or index.row() >= len(self._items):
            return None
        item = self._items[index.row()]
        col = index.column()
        kind = item["type"]
        if role == Qt.ItemDataRole.DisplayRole:
            if col == 0:
                return _local(item["at"])
            if col == 1:  # what is due is in the detail column, the time left in the status
                return "Deadline" if kind == "deadline" else wording.entry_text(item)
            if col == 2:
                if kind == "message":
                    return f"{str(item['channel']).upper()} → {item['recipient']}"
                if kind == "reply":
                    return f"{str(item['channel']).upper()} ← {item['actor']}"
                return item.get("actor", "")
            if col == 3:
                text = str(item.get("text") or "")
                if item.get("error"):
                    text = f"{text} — error: {item['error']}"
                return text.replace("\n", " ")
            if col == 4:
                if kind == "message":
                    return wording.message_status_text(str(item["status"]), bool(item.get("simulated")))
                if kind == "deadline":
                    state, text = fmt.sla_state(self._detail, item["kind"], self.now())
                    return text or state
                return ""
        if role == Qt.ItemDataRole.FontRole and kind in ("deadline", "note"):
            font = QFont()
            font.setBold(kind == "deadline")
            font.setItalic(kind == "note")
            return font
        if role == Qt.ItemDataRole.ForegroundRole:
            palette = current_palette()
            if kind == "deadline":
                state = fmt.sla_state(self._detail, item["kind"], self.now())[0]
                if state == fmt.BREACHED:
                    return QBrush(QColor(palette.breached))
                return QBrush(QColor(palette.warning))
            if kind == "message" and item.get("status") in ("failed", "undelivered"):
                return QBrush(QColor(palette.breached))
        if role == Qt.ItemDataRole.ToolTipRole and col == 3:
            return str(item.get("text") or "")
        return None


class TimelineStrip(QWidget):
    """A time axis from the incident's opening to now: a tick per event, lines at the SLA deadlines."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setMinimumHeight(64)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.items: list[dict[str, Any]] = []
        self.detail: dict[str, Any] = {}
        self.now: datetime | None = None

    def set_data(self, detail: dict[str, Any], items: list[dict[str, Any]], now: datetime) -> None:
        self.detail, self.items, self.now = detail, items, now
        self.update()

    def paintEvent(self, _event: Any) -> None:
        if not self.detail or self.now is None:
            return
        palette = current_palette()
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        start: datetime = self.detail["created_at"]
        times = [i["at"] for i in self.items] + [self.now]
        end = max(times)
        span = max((end - start).total_seconds(), 60.0) * 1.05
        left, right = 12.0, float(self.width() - 12)
        y = self.height() / 2 + 6

        def x_of(at: datetime) -> float:
            return left + (right - left) * max(0.0, (at - start).total_seconds()) / span

        p.setPen(QPen(QColor(palette.muted), 2))
        p.drawLine(QPointF(left, y), QPointF(right, y))
        colors = {
            "event": palette.status.get("in_progress", "#4493f8"),
            "message": palette.status.get("acknowledged", "#d4a72c"),
            "reply": palette.status.get("resolved", "#3fb950"),
            "note": palette.muted,
        }
        for item in self.items:
            if item["type"] == "deadline":
                state = fmt.sla_state(self.detail, item["kind"], self.now)[0]
                color = QColor(palette.breached if state == fmt.BREACHED else palette.warning)
                x = x_of(item["at"])
                p.setPen(QPen(color, 2, Qt.PenStyle.DashLine))
                p.drawLine(QPointF(x, 4), QPointF(x, self.height() - 4))
                p.setPen(QPen(color))
                label = f"{item['kind']} due"
                width = p.fontMetrics().horizontalAdvance(label) + 2
                if x + 3 + width <= self.width():
                    p.drawText(QRectF(x + 3, 2, width, 16), Qt.AlignmentFlag.AlignLeft, label)
                else:  # no room right of the line: its label goes on the left, never cut by the edge
                    p.drawText(QRectF(x - 3 - width, 2, width, 16), Qt.AlignmentFlag.AlignRight, label)
                continue
            color = QColor(colors.get(item["type"], palette.muted))
            if item["type"] == "message" and item.get("status") in ("failed", "undelivered"):
                color = QColor(palette.breached)
            p.setPen(QPen(color.darker(130), 1))
            p.setBrush(QBrush(color))
            p.drawEllipse(QPointF(x_of(item["at"]), y), 5, 5)
        x_now = x_of(self.now)
        p.setPen(QPen(QColor(palette.text), 1))
        p.drawLine(QPointF(x_now, y - 10), QPointF(x_now, y + 10))
        p.drawText(QRectF(x_now - 20, y + 10, 40, 16), Qt.AlignmentFlag.AlignCenter, "now")
        p.end()


class IncidentDetail(QWidget):
    """The detail of one incident; `show_incident(id)` loads it on the worker."""

    pop_out_requested = Signal(int)
    classify_requested = Signal(int)
    loaded = Signal(int)

    def __init__(
        self, services: ConsoleServices, parent: QWidget | None = None, *, can_pop_out: bool = True
    ) -> None:
        super().__init__(parent)
        self.services = services
        self.incident_id: int | None = None
        self.detail: dict[str, Any] = {}
        self.title = QLabel("No incident selected")
        self.title.setObjectName("detailTitle")
        self.title.setWordWrap(True)
        self.title.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.fields: dict[str, QLabel] = {}
        form = QFormLayout()
        for key, label in (
            ("severity", "Severity"),
            ("status", "Status"),
            ("where", "Site / category"),
            ("team", "Team / assignee"),
            ("level", "Escalation"),
            ("paged", "Last page"),
            ("response", "Response SLA"),
            ("resolution", "Resolution SLA"),
            ("reporter", "Reporter"),
        ):
            value = QLabel("")
            value.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            value.setWordWrap(True)
            form.addRow(label, value)
            self.fields[key] = value
        self.details = QPlainTextEdit()
        self.details.setReadOnly(True)
        self.details.setMaximumHeight(80)
        self.details.setTabChangesFocus(True)
        self.strip = TimelineStrip()
        self.timeline = TimelineModel(self)
        self.timeline.now = services.ctx.clock.now
        self.table = QTableView()
        self.table.setObjectName("timeline")
        self.table.setModel(self.timeline)
        self.table.verticalHeader().hide()
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setWordWrap(False)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(3, QHeaderView.ResizeMode.Stretch)
        # The time to the second in any font (the large font included); a timeline has tens of rows, not more.
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        header.resizeSection(1, 170)
        header.resizeSection(2, 230)
        self.pop_out = QPushButton("Pop out")
        self.pop_out.setToolTip("Open this incident in a window of its own (P on the board)")
        self.pop_out.setVisible(can_pop_out)
        self.pop_out.clicked.connect(
            lambda: self.incident_id and self.pop_out_requested.emit(self.incident_id)
        )
        self.classify = QPushButton("Classify…")
        self.classify.setObjectName("classify")
        self.classify.setToolTip(
            "Change the category (its SLA deadlines follow) or the sensitive flag (K on the board)"
        )
        self.classify.setVisible(can_pop_out)  # a pop-out has it in its own row of actions
        self.classify.clicked.connect(
            lambda: self.incident_id and self.classify_requested.emit(self.incident_id)
        )
        # The buttons above the title, not beside it: in the fixed-width dock (and with the large font) a title
        # squeezed beside them broke mid-word.
        top = QHBoxLayout()
        top.addStretch(1)
        top.addWidget(self.classify)
        top.addWidget(self.pop_out)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.title)
        layout.addLayout(form)
        layout.addWidget(self.details)
        layout.addWidget(self.strip)
        layout.addWidget(self.table, 1)
        services.incidents_changed.connect(self._on_changed)
        self._tick = QTimer(self)
        self._tick.setInterval(1000)
        self._tick.timeout.connect(self.tick)
        self._tick.start()

    def show_incident(self, incident_id: int) -> None:
        self.incident_id = incident_id or None
        if not incident_id:
            return
        self.services.worker.submit(
            lambda s: board.incident_detail(s, incident_id),
            lambda d: self._set(incident_id, d),
            lambda exc: self.title.setText(f"Could not load #{incident_id}: {exc}"),
            what="loading an incident",
        )

    def _on_changed(self, ids: list[int]) -> None:
        if self.incident_id is not None and self.incident_id in ids:
            self.show_incident(self.incident_id)

    def _set(self, incident_id: int, detail: dict[str, Any] | None) -> None:
        if incident_id != self.incident_id:
            return  # the operator moved on while this loaded
        if detail is None:
            self.title.setText(f"Incident #{incident_id} does not exist")
            return
        self.detail = detail
        now = self.services.ctx.clock.now()
        self.title.setText(f"#{detail['id']}  {detail['summary']}")
        f = self.fields
        f["severity"].setText(str(detail["severity"]).upper())
        status = fmt.STATUS_LABEL.get(detail["status"], detail["status"])
        if detail.get("acknowledged_by"):
            status += f" by {detail['acknowledged_by']}"
        f["status"].setText(status)
        sensitive = " · sensitive (SLA not monitored)" if detail.get("sensitive") else ""
        f["where"].setText(f"{detail['site'] or '—'} / {detail['category']}{sensitive}")
        f["team"].setText(f"{detail['team'] or '—'} / {detail['assignee'] or '—'}")
        policy = f" — policy {detail['policy']}" if detail.get("policy") else ""
        f["level"].setText(fmt.level_text(detail) + policy)
        f["paged"].setText(fmt.paged_text(detail))
        self._show_deadlines(now)
        reporter = " ".join(x for x in (detail.get("reporter_name"), detail.get("reporter_contact")) if x)
        f["reporter"].setText(f"{reporter} ({detail.get('reporter_language', 'en')})" if reporter else "—")
        self.details.setPlainText(detail.get("details") or "")
        self.timeline.set_detail(detail)
        self.strip.set_data(detail, self.timeline.items(), now)
        self.loaded.emit(incident_id)

    def _show_deadlines(self, now: datetime) -> None:
        """The SLA countdowns, from the same clock as the board's, so the two never disagree."""
        detail, palette = self.detail, current_palette()
        for which in ("response", "resolution"):
            state, text = fmt.sla_state(detail, which, now)
            due = detail.get(f"{which}_due_at")
            self.fields[which].setText(f"{text}" + (f" (due {_local(due)})" if due else ""))
            color = (
                palette.breached if state == fmt.BREACHED else palette.warning if state == fmt.WARNING else ""
            )
            style = f"color: {color}; font-weight: bold;" if color else ""
            if self.fields[which].styleSheet() != style:  # a style sheet pass costs: only on change
                self.fields[which].setStyleSheet(style)

    def tick(self) -> None:
        """Every second, like the board: countdowns and the deadline rows' time left move on."""
        if not self.detail or not self.isVisible():
            return
        now = self.services.ctx.clock.now()
        self._show_deadlines(now)
        self.timeline.refresh_deadlines()
        self.strip.set_data(self.detail, self.timeline.items(), now)


# The pop-out's actions: (button text, key, what the board does with it).
POP_OUT_ACTIONS: tuple[tuple[str, str, str], ...] = (
    ("&Acknowledge", "A", "acknowledge"),
    ("I'm on it", "W", "start_work"),
    ("&Resolve…", "R", "resolve"),
    ("&Escalate…", "E", "escalate"),
    ("Re-assi&gn…", "G", "assign"),
    ("Classify…", "K", "classify"),
    ("&Note…", "N", "note"),
)


class DetailWindow(QMainWindow):
    """An incident popped out into a window of its own, with the board's actions on it (the same keys, the
    same questions before resolve and escalate) and Esc to close it. It opens on the screen, beside the main
    window where there is room, and remembers where it was put."""

    def __init__(
        self,
        services: ConsoleServices,
        incident_id: int,
        parent: QWidget | None = None,
        *,
        act: Callable[[str, int], None] | None = None,
        beside: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        self.setWindowTitle(f"Incident #{incident_id} — Watchkeeper")
        self.incident_id = incident_id
        self.detail = IncidentDetail(services, self, can_pop_out=False)
        body = QWidget()
        layout = QVBoxLayout(body)
        layout.setContentsMargins(0, 0, 0, 0)
        if act is not None:
            bar = QHBoxLayout()
            bar.setContentsMargins(8, 6, 8, 0)
            for text, key, name in POP_OUT_ACTIONS:
                button = QPushButton(f"{text.replace('&', '')}  ({key})")
                button.setObjectName(f"popout_{name}")
                button.setFocusPolicy(Qt.FocusPolicy.TabFocus)
                button.clicked.connect(lambda _c=False, n=name: act(n, self.incident_id))
                bar.addWidget(button)
                shortcut = QAction(self)
                shortcut.setShortcut(QKeySequence(key))
                shortcut.triggered.connect(lambda _c=False, n=name: act(n, self.incident_id))
                self.addAction(shortcut)
            bar.addStretch(1)
            layout.addLayout(bar)
        layout.addWidget(self.detail, 1)
        self.setCentralWidget(body)
        close = QAction(self)
        close.setShortcut(QKeySequence(Qt.Key.Key_Escape))
        close.triggered.connect(self.close)
        self.addAction(close)
        geometry = QSettings().value("layout/detail_window")
        if geometry is not None:
            self.restoreGeometry(geometry)  # type: ignore[arg-type]
        else:
            self.resize(900, 640)
            self._place_beside(beside)
        self._placed = False
        self.detail.show_incident(incident_id)

    def showEvent(self, event: Any) -> None:
        super().showEvent(event)
        if not self._placed:  # the frame's size is known only once shown
            self._placed = True
            self._keep_on_screen()

    def _place_beside(self, beside: QWidget | None) -> None:
        """Right of the main window when the screen has room, else over its right-hand side."""
        if beside is None:
            return
        frame = beside.frameGeometry()
        self.move(frame.right() + 8, frame.top())

    def _keep_on_screen(self) -> None:
        screen = self.screen() or QGuiApplication.primaryScreen()
        if screen is None:
            return
        room = screen.availableGeometry()
        frame = self.frameGeometry()
        extra_w, extra_h = frame.width() - self.width(), frame.height() - self.height()
        width, height = min(frame.width(), room.width()), min(frame.height(), room.height())
        self.resize(width - extra_w, height - extra_h)
        x = min(max(frame.x(), room.left()), room.right() - width + 1)
        y = min(max(frame.y(), room.top()), room.bottom() - height + 1)
        self.move(x, y)  # move() places the frame's top-left corner

    def show_message(self, text: str) -> None:
        self.statusBar().showMessage(text, 6000)

    def closeEvent(self, event: Any) -> None:
        QSettings().setValue("layout/detail_window", self.saveGeometry())
        super().closeEvent(event)
