"""The alert list: every condition that needs someone now, one row each, until the condition ends.

What is an alert: an open critical incident nobody has acknowledged, a response or resolution SLA past its
warning point or its deadline, an incident whose paging ran out (the escalation timed out or failed, or the
last person paged was tried on every channel) while nobody has acknowledged it, and each problem the banner
shows (no engine, no database, simulated or unconfigured channels, set-aside Events API events).

The list is worked out from the board's rows and the banner's problems, not from a log of what happened, so
two breaches in the same second are two rows and an alert leaves the list when its condition ends
(acknowledged, resolved, deadline met, engine back). A "handled" history would duplicate the incident's
timeline and the handover summary; the list stays short enough to act on.

Keys on the list: Enter selects the incident on the board (the detail follows), A acknowledges it through the
board's own action (same refusals, same status-bar echo), Esc goes back to the board's table.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QLabel, QTreeWidgetItem, QVBoxLayout, QWidget

from console.board import format as fmt
from console.keyed_list import KeyedList

CRITICAL, BREACHED, EXHAUSTED, WARNING, PROBLEM = "critical", "breached", "exhausted", "warning", "problem"
# Order of the rows (a banner error first: with no engine nothing else on the list is being worked on).
_RANK = {PROBLEM + ":error": 0, CRITICAL: 1, BREACHED: 2, EXHAUSTED: 3, WARNING: 4, PROBLEM: 5}
# How the header counts each kind, in this order.
COUNT_WORDS = ((CRITICAL, "critical"), (BREACHED, "breached"), (EXHAUSTED, "paging ran out"),
               (WARNING, "warning"), (PROBLEM, "problem"))  # fmt: skip
_NOBODY_LEFT = frozenset({"timed_out", "failed"})


@dataclass(frozen=True)
class Alert:
    kind: str
    incident_id: int | None  # None for a problem of the engine or the database
    what: str  # "Response SLA breached", "Paging ran out: Thandi Nkosi not reached", the banner's text
    summary: str
    since: datetime | None
    level: str = ""  # a problem's banner level: "error" or "warning"

    @property
    def key(self) -> tuple[str, int, str]:
        return (self.kind, self.incident_id or 0, self.what)

    @property
    def urgent(self) -> bool:
        """What turns the header's count red: not a warning, not a banner's yellow notice."""
        return self.kind in (CRITICAL, BREACHED, EXHAUSTED) or self.level == "error"

    @property
    def rank(self) -> int:
        return _RANK[f"{self.kind}:error"] if self.level == "error" else _RANK[self.kind]


def incident_alerts(row: dict[str, Any], now: datetime) -> list[Alert]:
    """The alerts one board row raises at `now` (none for a closed incident)."""
    if not fmt.is_open(row):
        return []
    incident_id, summary = int(row["id"]), str(row.get("summary") or "")
    out: list[Alert] = []
    unacknowledged = fmt.is_unacknowledged(row)
    if unacknowledged and row.get("severity") == "critical":
        out.append(Alert(CRITICAL, incident_id, "Critical, not acknowledged", summary, row.get("created_at")))
    for which in ("response", "resolution"):
        state = fmt.sla_state(row, which, now)[0]
        if state == fmt.BREACHED:
            since = row.get(f"{which}_due_at")
            out.append(Alert(BREACHED, incident_id, f"{which.title()} SLA breached", summary, since))
        elif state == fmt.WARNING:
            due: datetime = row[f"{which}_due_at"]
            what = f"{which.title()} SLA due {_clock(due, now)}"
            out.append(Alert(WARNING, incident_id, what, summary, row.get(f"{which}_warn_at")))
    if unacknowledged:
        if row.get("escalation_state") in _NOBODY_LEFT:
            what = f"Paging ran out at level {int(row.get('current_level') or 0)}: nobody acknowledged"
            out.append(Alert(EXHAUSTED, incident_id, what, summary, row.get("updated_at")))
        elif row.get("page_status") == "exhausted":
            who = row.get("paged") or "the person paged"
            what = f"Paging ran out: {who} not reached on any channel"
            out.append(Alert(EXHAUSTED, incident_id, what, summary, row.get("updated_at")))
    return out


def live_alerts(
    rows: Iterable[dict[str, Any]], now: datetime, problems: dict[str, tuple[str, str]]
) -> list[Alert]:
    """Every alert at `now`: the open rows' and the banner's problems ({key: (text, level)}), most urgent first."""
    out = [Alert(PROBLEM, None, text, "", None, level) for text, level in problems.values()]
    for row in rows:
        out.extend(incident_alerts(row, now))
    out.sort(key=lambda a: (a.rank, a.since.timestamp() if a.since else 0.0, a.incident_id or 0, a.what))
    return out


def counts_text(alerts: list[Alert]) -> str:
    """ "3 critical · 2 breached · 1 warning" (kinds with none left out), or "No alerts"."""
    counts = {kind: 0 for kind, _word in COUNT_WORDS}
    for alert in alerts:
        counts[alert.kind] += 1
    parts = []
    for kind, word in COUNT_WORDS:
        n = counts[kind]
        if n:
            parts.append(f"{n} {word}{'s' if kind == PROBLEM and n > 1 else ''}")
    return " · ".join(parts) if parts else "No alerts"


def _clock(at: datetime, now: datetime) -> str:
    local, today = at.astimezone(), now.astimezone()
    return local.strftime("%H:%M") if local.date() == today.date() else local.strftime("%a %d %b %H:%M")


class AlertList(QWidget):
    open_incident = Signal(int)  # Enter: select it on the board
    acknowledge = Signal(int)  # A: the board's acknowledge
    back = Signal()  # Esc: back to the board's table
    message = Signal(str, bool)  # (text, is_error)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.alerts: list[Alert] = []
        self.summary = QLabel("No alerts")
        self.summary.setObjectName("alertSummary")
        self.list = KeyedList("alertList", ["Alert", "#", "Incident", "Since"])
        self.list.setAlternatingRowColors(True)
        self.list.setColumnWidth(0, 360)
        self.list.setColumnWidth(1, 60)
        self.list.setColumnWidth(2, 360)
        self.list.enter.connect(self.open_current)
        self.list.on_key("A", self.acknowledge_current)
        self.list.on_key("Esc", self.back.emit)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 2, 4, 2)
        layout.addWidget(self.summary)
        layout.addWidget(self.list, 1)

    def show_alerts(self, alerts: list[Alert], now: datetime) -> None:
        """Show these alerts; the list is rebuilt only when they changed, and the cursor stays on its alert."""
        if [a.key for a in alerts] == [a.key for a in self.alerts]:
            return
        current = self.current()
        self.alerts = alerts
        self.list.clear()
        for alert in alerts:
            number = f"#{alert.incident_id}" if alert.incident_id is not None else ""
            since = _clock(alert.since, now) if alert.since else ""
            item = QTreeWidgetItem([alert.what, number, alert.summary, since])
            item.setToolTip(0, alert.what)
            item.setToolTip(2, alert.summary)
            self.list.addTopLevelItem(item)
        self.summary.setText(counts_text(alerts))
        keys = [a.key for a in alerts]
        if alerts:
            row = keys.index(current.key) if current is not None and current.key in keys else 0
            self.list.setCurrentItem(self.list.topLevelItem(row))

    def current(self) -> Alert | None:
        row = self.list.current_row()
        return self.alerts[row] if 0 <= row < len(self.alerts) else None

    def focus(self) -> None:
        self.list.setFocus(Qt.FocusReason.ShortcutFocusReason)
        if self.list.currentItem() is None and self.alerts:
            self.list.setCurrentItem(self.list.topLevelItem(0))

    def open_current(self) -> None:
        alert = self.current()
        if alert is None:
            return
        if alert.incident_id is None:
            self.message.emit(f"{alert.what} (not about one incident: nothing to open)", False)
            return
        self.open_incident.emit(alert.incident_id)

    def acknowledge_current(self) -> None:
        alert = self.current()
        if alert is None:
            self.message.emit("Acknowledge: no alert selected", True)
        elif alert.incident_id is None:
            self.message.emit(
                "Acknowledge: this alert is not about an incident; it ends when the problem does", True
            )
        else:
            self.acknowledge.emit(alert.incident_id)
