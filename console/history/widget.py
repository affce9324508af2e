"""The history view: search closed incidents or the event log (the timeline of everything) by text, date range and actor, page by page.
It opens on the last 30 days; events read in operators' words (engine.wording), times to the second.

Every search runs engine.history on the database worker; the GUI thread only swaps in the page that comes
back. A search started while another is running wins: results of an older request are dropped.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from PySide6.QtCore import QDate, Qt, Signal
from PySide6.QtWidgets import (
    QDateEdit,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSplitter,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from console.history.records import Column, RecordTableModel, record_table, replies
from console.services import ConsoleServices
from engine import history, wording
from engine.history import EventRecord, IncidentRecord, ResultPage

PAGE_SIZE = 100

INCIDENT_COLUMNS: list[Column[IncidentRecord]] = [
    Column("#", lambda r: r.id, numeric=True),
    Column("Created", lambda r: r.created_at),
    Column("Summary", lambda r: r.summary, tooltip=lambda r: r.key),
    Column("Severity", lambda r: r.severity),
    Column("Category", lambda r: r.category),
    Column("Site", lambda r: r.site),
    Column("Team", lambda r: r.team),
    Column("Status", lambda r: r.status),
    Column("Acknowledged by", lambda r: r.acknowledged_by or ""),
    Column("Closed", lambda r: r.closed_at),
    Column("Resolved by", lambda r: r.resolved_by or ""),
]

EVENT_COLUMNS: list[Column[EventRecord]] = [
    Column("When", lambda r: r.at),
    Column("What", lambda r: wording.event_text(r.kind, r.data), tooltip=lambda r: r.kind),
    Column("Actor", lambda r: r.actor),
    Column("Incident", lambda r: r.incident_id or "", numeric=True),
    Column("Message", lambda r: r.message),
]


def _day_start(day: QDate) -> datetime:
    """The start of a local calendar day, as aware UTC."""
    local = datetime.combine(date(day.year(), day.month(), day.day()), time()).astimezone()
    return local.astimezone(UTC)


class HistoryWidget(QWidget):
    # Emitted after a page arrived (tests and status bars wait on it).
    search_finished = Signal()

    def __init__(self, services: ConsoleServices, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.services = services
        self._offset = 0
        self._has_more = False
        self._request = 0

        self.text = QLineEdit()
        self.text.setPlaceholderText("Search text, key or #number")
        self.text.setClearButtonEnabled(True)
        self.actor = QLineEdit()
        self.actor.setPlaceholderText("Actor (user name)")
        self.actor.setClearButtonEnabled(True)
        today = services.ctx.clock.now().astimezone().date()
        self.date_from = QDateEdit(QDate(today - timedelta(days=30)))
        self.date_to = QDateEdit(QDate(today))
        for edit in (self.date_from, self.date_to):
            edit.setCalendarPopup(True)
            edit.setDisplayFormat("yyyy-MM-dd")
        self.search_button = QPushButton("&Search")
        self.search_button.setDefault(True)
        self.prev_button = QPushButton("◀ Newer")
        self.next_button = QPushButton("Older ▶")
        self.page_label = QLabel()
        self.status = QLabel()
        self.status.setObjectName("historyStatus")

        bar = QHBoxLayout()
        bar.addWidget(self.text, 3)
        bar.addWidget(QLabel("From"))
        bar.addWidget(self.date_from)
        bar.addWidget(QLabel("to"))
        bar.addWidget(self.date_to)
        bar.addWidget(self.actor, 1)
        bar.addWidget(self.search_button)

        self.incidents = RecordTableModel(INCIDENT_COLUMNS, self)
        self.events = RecordTableModel(EVENT_COLUMNS, self)
        self.timeline = RecordTableModel(EVENT_COLUMNS, self)
        self.incident_view = record_table(self.incidents)
        self.event_view = record_table(self.events)
        self.timeline_view = record_table(self.timeline)

        incident_split = QSplitter(Qt.Orientation.Vertical)
        incident_split.addWidget(self.incident_view)
        incident_split.addWidget(self.timeline_view)
        incident_split.setSizes([400, 160])
        self.tabs = QTabWidget()
        self.tabs.addTab(incident_split, "Closed incidents")
        self.tabs.addTab(self.event_view, "Event log")

        pager = QHBoxLayout()
        pager.addWidget(self.status, 1)
        pager.addWidget(self.prev_button)
        pager.addWidget(self.page_label)
        pager.addWidget(self.next_button)

        layout = QVBoxLayout(self)
        layout.addLayout(bar)
        layout.addWidget(self.tabs, 1)
        layout.addLayout(pager)

        self.search_button.clicked.connect(self.search)
        self.text.returnPressed.connect(self.search)
        self.actor.returnPressed.connect(self.search)
        self.tabs.currentChanged.connect(lambda _i: self.search())
        self.prev_button.clicked.connect(lambda: self._load(max(0, self._offset - PAGE_SIZE)))
        self.next_button.clicked.connect(lambda: self._load(self._offset + PAGE_SIZE))
        self.incident_view.selectionModel().currentRowChanged.connect(
            lambda cur, _prev: self._show_timeline(cur.row())
        )
        self._update_pager()
        self.search()  # the last 30 days as soon as the tab opens

    # -- searching -------------------------------------------------------------------------------------
    def showing_events(self) -> bool:
        return self.tabs.currentIndex() == 1

    def search(self) -> None:
        self._load(0)

    def _filters(self) -> dict[str, Any]:
        since = _day_start(self.date_from.date())
        until = _day_start(self.date_to.date().addDays(1))
        return {"text": self.text.text(), "actor": self.actor.text(), "since": since, "until": until}

    def _load(self, offset: int) -> None:
        self._request += 1
        request = self._request
        filters = self._filters()
        events = self.showing_events()

        def job(session: Any) -> ResultPage[Any]:
            if events:
                return history.search_events(session, offset=offset, limit=PAGE_SIZE, **filters)
            return history.search_incidents(session, offset=offset, limit=PAGE_SIZE, **filters)

        self.status.setText("Searching…")
        self.services.worker.submit(
            job,
            **replies(
                self,
                lambda page: self._arrived(request, events, page),
                lambda exc: self._failed(request, exc),
            ),
            what="history search",
        )

    def _arrived(self, request: int, events: bool, page: ResultPage[Any]) -> None:
        if request != self._request:
            return
        self._offset = page.offset
        self._has_more = page.has_more
        if events:
            self.events.set_rows(page.rows)
        else:
            self.incidents.set_rows(page.rows)
            self.timeline.set_rows([])
        shown = len(page.rows)
        if shown:
            self.status.setText(
                f"Rows {page.offset + 1}–{page.offset + shown}{' (more)' if page.has_more else ''}"
            )
        else:
            self.status.setText("Nothing matches these filters.")
        self._update_pager()
        self.search_finished.emit()

    def _failed(self, request: int, exc: Exception) -> None:
        if request != self._request:
            return
        self.status.setText(f"Search failed: {exc}")
        self.search_finished.emit()

    def _update_pager(self) -> None:
        self.prev_button.setEnabled(self._offset > 0)
        self.next_button.setEnabled(self._has_more)
        self.page_label.setText(f"Page {self._offset // PAGE_SIZE + 1}")

    def _show_timeline(self, row: int) -> None:
        if row < 0 or row >= self.incidents.rowCount():
            return
        incident_id = self.incidents.record(row).id
        self.services.worker.submit(
            lambda s: history.incident_events(s, incident_id),
            **replies(self, self.timeline.set_rows),
            what="incident timeline",
        )
