"""The audit view: the audit trail (engine.audit) filtered by person, kind, object and time, to the second,
a page at a time, with each entry's changes field by field, and CSV export of everything a filter matches.

Searches and the export run on the database worker; a search started while another runs wins. The view is
mounted only for people the rule book lets see the trail, and every search checks that again on the worker.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from console.history.records import Column, RecordTableModel, record_table, replies, to_second
from console.history.timerange import TimeRange
from console.services import ConsoleServices
from engine import audit
from engine.audit import AuditRecord
from engine.history import ResultPage
from engine.permissions import Action

PAGE_SIZE = 100
ALL_KINDS = "All kinds"


AUDIT_COLUMNS: list[Column[AuditRecord]] = [
    Column("When", lambda r: to_second(r.at)),
    Column("Person", lambda r: r.actor),
    Column("Role", lambda r: r.actor_role),
    Column("Via", lambda r: r.via),
    Column("Kind", lambda r: r.action, tooltip=lambda r: audit.ACTIONS.get(r.action, "")),
    Column("Object", lambda r: f"{r.object_kind}: {r.object_name}" if r.object_kind else r.object_name),
    Column("What", lambda r: r.message, tooltip=lambda r: r.changes_text() or r.message),
]


class ChangeRow:
    def __init__(self, change: dict[str, Any]) -> None:
        self.field = str(change.get("field", ""))
        self.before = audit.show_value(change.get("before"))
        self.after = audit.show_value(change.get("after"))


CHANGE_COLUMNS: list[Column[ChangeRow]] = [
    Column("Field", lambda c: c.field),
    Column("Before", lambda c: c.before),
    Column("After", lambda c: c.after),
]


class AuditWidget(QWidget):
    search_finished = Signal()
    exported = Signal(str, int)  # path, rows written
    failed = Signal(str)

    def __init__(self, services: ConsoleServices, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.services = services
        self._offset = 0
        self._has_more = False
        self._request = 0

        self.person = QComboBox()
        self.person.setEditable(True)
        self.person.setObjectName("auditPerson")
        self.person.lineEdit().setPlaceholderText("Person (any)")
        self.person.setMinimumWidth(160)
        self.kind = QComboBox()
        self.kind.setObjectName("auditKind")
        self.kind.addItem(ALL_KINDS, "")
        for action, meaning in audit.ACTIONS.items():
            self.kind.addItem(f"{action} — {meaning}", action)
        self.object = QLineEdit()
        self.object.setObjectName("auditObject")
        self.object.setPlaceholderText("Object: a name, or kind:name (policy:fire, account:thandi)")
        self.object.setClearButtonEnabled(True)
        self.range = TimeRange(services.ctx.clock, timedelta(days=7))
        self.since, self.until = self.range.since, self.range.until
        self.search_button = QPushButton("&Search")
        self.search_button.setDefault(True)
        self.export_button = QPushButton("Export CSV…")
        self.prev_button = QPushButton("◀ Newer")
        self.next_button = QPushButton("Older ▶")
        self.page_label = QLabel()
        self.status = QLabel()
        self.status.setObjectName("auditStatus")

        bar = QHBoxLayout()
        bar.addWidget(self.person)
        bar.addWidget(self.kind)
        bar.addWidget(self.object, 2)
        bar.addWidget(QLabel("From"))
        bar.addWidget(self.since)
        bar.addWidget(QLabel("to"))
        bar.addWidget(self.until)
        bar.addWidget(self.search_button)
        bar.addWidget(self.export_button)

        self.entries = RecordTableModel(AUDIT_COLUMNS, self)
        self.changes = RecordTableModel(CHANGE_COLUMNS, self)
        self.entry_view = record_table(self.entries)
        self.change_view = record_table(self.changes)
        self.detail = QLabel()
        self.detail.setObjectName("auditDetail")
        self.detail.setWordWrap(True)
        self.detail.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        lower = QWidget()
        lower_layout = QVBoxLayout(lower)
        lower_layout.setContentsMargins(0, 0, 0, 0)
        lower_layout.addWidget(self.detail)
        lower_layout.addWidget(self.change_view, 1)
        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(self.entry_view)
        split.addWidget(lower)
        split.setSizes([480, 220])

        pager = QHBoxLayout()
        pager.addWidget(self.status, 1)
        pager.addWidget(self.prev_button)
        pager.addWidget(self.page_label)
        pager.addWidget(self.next_button)
        layout = QVBoxLayout(self)
        layout.addLayout(bar)
        layout.addWidget(split, 1)
        layout.addLayout(pager)

        self.search_button.clicked.connect(self.search)
        self.object.returnPressed.connect(self.search)
        self.person.lineEdit().returnPressed.connect(self.search)
        self.kind.currentIndexChanged.connect(lambda _i: self.search())
        self.export_button.clicked.connect(self._choose_export)
        self.prev_button.clicked.connect(lambda: self._load(max(0, self._offset - PAGE_SIZE)))
        self.next_button.clicked.connect(lambda: self._load(self._offset + PAGE_SIZE))
        self.entry_view.selectionModel().currentRowChanged.connect(lambda cur, _p: self._show(cur.row()))
        self._update_pager()
        self._load_people()
        self.search()

    # -- filters -----------------------------------------------------------------------------------------
    def filters(self) -> dict[str, Any]:
        return {
            "person": self.person.currentText().strip(),
            "kind": str(self.kind.currentData() or ""),
            "obj": self.object.text().strip(),
            "since": self.range.bounds()[0],
            "until": self.range.bounds()[1],
        }

    def set_kind(self, action: str) -> None:
        self.kind.setCurrentIndex(max(0, self.kind.findData(action)))

    def _load_people(self) -> None:
        def done(names: list[str]) -> None:
            typed = self.person.currentText()
            self.person.blockSignals(True)
            self.person.clear()
            self.person.addItems(["", *names])
            self.person.setEditText(typed)
            self.person.blockSignals(False)

        self.services.worker.submit(audit.people, **replies(self, done), what="audit people")

    # -- searching ---------------------------------------------------------------------------------------
    def search(self) -> None:
        # The end of the range follows the clock while nobody has changed it (searching "until now").
        self.range.follow_clock()
        self._load(0)

    def _load(self, offset: int) -> None:
        self._request += 1
        request = self._request
        filters = self.filters()

        def job(_who: Any) -> ResultPage[AuditRecord]:
            from engine.db import read_session

            with read_session(self.services.ctx.sessions) as session:
                return audit.search(session, offset=offset, limit=PAGE_SIZE, **filters)

        self.status.setText("Searching…")
        self.services.act(
            Action.VIEW_AUDIT,
            job,
            **replies(
                self, lambda page: self._arrived(request, page), lambda exc: self._failed(request, exc)
            ),
            what="audit search",
        )

    def _arrived(self, request: int, page: ResultPage[AuditRecord]) -> None:
        if request != self._request:
            return
        self._offset, self._has_more = page.offset, page.has_more
        self.entries.set_rows(page.rows)
        self.changes.set_rows([])
        self.detail.clear()
        shown = len(page.rows)
        self.status.setText(
            f"Entries {page.offset + 1}–{page.offset + shown}{' (more)' if page.has_more else ''}"
            if shown
            else "No audit entries match these filters."
        )
        self._update_pager()
        if shown:
            self.entry_view.selectRow(0)
        self.search_finished.emit()

    def _failed(self, request: int, exc: Exception) -> None:
        if request != self._request:
            return
        self.status.setText(f"⚠ {exc}")
        self.failed.emit(str(exc))
        self.search_finished.emit()

    def _update_pager(self) -> None:
        self.prev_button.setEnabled(self._offset > 0)
        self.next_button.setEnabled(self._has_more)
        self.page_label.setText(f"Page {self._offset // PAGE_SIZE + 1}")

    def _show(self, row: int) -> None:
        if row < 0 or row >= self.entries.rowCount():
            return
        r = self.entries.record(row)
        self.detail.setText(
            f"<b>{to_second(r.at)}</b> — {r.actor} ({r.actor_role or 'system'}, via {r.via or '—'}): "
            f"{r.message}" + ("" if r.changes else "<br><i>No field changes recorded for this entry.</i>")
        )
        self.changes.set_rows([ChangeRow(c) for c in r.changes])

    # -- CSV -----------------------------------------------------------------------------------------------
    def _choose_export(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export the audit trail", "audit.csv", "CSV (*.csv)")
        if path:
            self.export_csv(Path(path))

    def export_csv(self, path: Path) -> None:
        """Every entry the current filters match (not just this page), newest first."""
        filters = self.filters()

        def job(_who: Any) -> int:
            from engine.db import read_session

            tmp = path.with_name(path.name + ".tmp")
            with (
                read_session(self.services.ctx.sessions) as session,
                tmp.open("w", encoding="utf-8", newline="") as handle,
            ):
                count = audit.write_csv(session, handle, **filters)
            tmp.replace(path)
            return count

        def done(count: int) -> None:
            self.status.setText(f"Exported {count} entries to {path}")
            self.exported.emit(str(path), count)

        def failed(exc: Exception) -> None:
            self.status.setText(f"⚠ Export failed: {exc}")
            self.failed.emit(str(exc))

        self.services.act(Action.VIEW_AUDIT, job, **replies(self, done, failed), what="audit export")
