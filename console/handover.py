"""Shift handover in the console: the sign-out dialog where the outgoing operator leaves a note, and the
handover the incoming one sees at sign-in (the note with the open, unacknowledged and breached incidents).

Both only show and collect; engine.handover stores the note and finds the incidents.
"""

from __future__ import annotations

from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QHeaderView,
    QLabel,
    QPlainTextEdit,
    QTableView,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from console.history.records import Column, RecordTableModel, fmt_time, record_table
from engine.handover import Handover, IncidentBrief, ShiftSummary

BRIEF_COLUMNS: list[Column[IncidentBrief]] = [
    Column("#", lambda i: i.id, numeric=True),
    Column("Severity", lambda i: i.severity),
    Column("Status", lambda i: i.status),
    Column("Site", lambda i: i.site),
    Column("Breached", lambda i: i.breach),
    Column("Acknowledged by", lambda i: i.acknowledged_by or ""),
    Column("Summary", lambda i: i.summary),
]


def counts_text(summary: ShiftSummary) -> str:
    return (
        f"{summary.open_count} open · {summary.unacknowledged_count} unacknowledged · "
        f"{summary.breached_count} breached since {fmt_time(summary.since)}"
    )


def _table(rows: list[IncidentBrief], parent: QWidget) -> QTableView:
    model: RecordTableModel[IncidentBrief] = RecordTableModel(BRIEF_COLUMNS, parent)
    model.set_rows(rows)
    view: QTableView = record_table(model)
    view.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
    return view


class HandoverDialog(QDialog):
    """At sign-in: the note the outgoing operator left, and the shift's incidents that need attention."""

    def __init__(self, handover: Handover, parent: QWidget | None = None, *, signed_in_as: str = "") -> None:
        super().__init__(parent)
        self.setWindowTitle("Watchkeeper — shift handover")
        self.resize(900, 560)
        self.handover = handover
        layout = QVBoxLayout(self)
        note = handover.note
        if note is not None:
            head = QLabel(
                f"<b>Handover from {note.author_name or note.author}</b>, written {fmt_time(note.written_at)}"
                + (f" for {signed_in_as}" if signed_in_as else "")
            )
            text = QPlainTextEdit(note.text)
            text.setObjectName("handoverNote")
            text.setReadOnly(True)
            text.setMaximumHeight(140)
            layout.addWidget(head)
            layout.addWidget(text)
        else:
            layout.addWidget(QLabel("<b>No handover note was left for you.</b>"))
        summary = handover.summary
        self.counts = QLabel(counts_text(summary))
        self.counts.setObjectName("handoverCounts")
        layout.addWidget(self.counts)
        self.tabs = QTabWidget()
        for title, rows, count in (
            ("Unacknowledged", summary.unacknowledged, summary.unacknowledged_count),
            ("Breached", summary.breached, summary.breached_count),
            ("Open", summary.open, summary.open_count),
        ):
            self.tabs.addTab(_table(rows, self), f"{title} ({count})")
        layout.addWidget(self.tabs, 1)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok)
        buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Take over the shift")
        buttons.accepted.connect(self.accept)
        layout.addWidget(buttons)


class SignOutDialog(QDialog):
    """Sign out (the engine keeps running): an optional handover note for whoever signs in next."""

    def __init__(self, who: str, parent: QWidget | None = None, *, engine_running: bool = True) -> None:
        super().__init__(parent)
        self.setWindowTitle("Sign out")
        self.resize(640, 380)
        intro = QLabel(
            f"Sign {who} out and hand over the console. "
            + (
                "The escalation engine keeps running in this console: paging does not stop."
                if engine_running
                else "This console runs no engine; escalations continue wherever the engine runs."
            )
        )
        intro.setWordWrap(True)
        self.counts = QLabel("Counting the shift's incidents…")
        self.counts.setObjectName("signOutCounts")
        self.note = QPlainTextEdit()
        self.note.setObjectName("handoverText")
        self.note.setTabChangesFocus(True)
        self.note.setPlaceholderText(
            "Handover note for the next shift (optional): what is still going on, who is waiting for what…"
        )
        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Sign out")
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(intro)
        layout.addWidget(self.counts)
        layout.addWidget(self.note, 1)
        layout.addWidget(buttons)
        self.note.setFocus()

    def show_summary(self, summary: ShiftSummary) -> None:
        self.counts.setText("This shift: " + counts_text(summary))

    def text(self) -> str:
        return self.note.toPlainText().strip()
