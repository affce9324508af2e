"""The Work items tab: the shift's workflow items (engine.items) — steps with a time limit, the assignee
reminded at 1x and the item's role told at 2x. Open, done, expired or all; *Mine* is those assigned to the
person your account is linked to. **N** new item, **G** assign, **D** done (D again to confirm), **Enter**
opens the linked incident on the board. An open item past its limit is amber, past twice its limit red.

Lists and changes run on the database worker, as the signed-in person (Action.WORKFLOW_ITEMS); the engine's
refusals are shown in the status bar as they are.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from console import reach
from console.history.records import Column, RecordTableModel, record_table, replies, to_second
from console.services import ConsoleServices
from engine import items
from engine.contacts import format_duration, parse_duration
from engine.errors import ValidationError
from engine.items import ItemRecord
from engine.permissions import ROLES, Action

SHOWN = [("Open", "open"), ("Done", "done"), ("Expired", "expired"), ("All", "")]
LIMIT = 500
REFRESH_MS = 30_000  # the engine marks reminders and escalations: read them again while the tab is shown
DEFAULT_LIMIT = "15m"


def _minutes(seconds: float) -> str:
    seconds = int(abs(seconds))
    return format_duration(seconds if seconds < 60 else seconds - seconds % 60)


def time_left(r: ItemRecord, now: datetime) -> str:
    if r.status != "open":
        return r.status
    left = (r.due_at - now).total_seconds()
    return f"{_minutes(left)} left" if left > 0 else f"overdue {_minutes(left)}"


def _mark(at: datetime | None) -> str:
    return f"✓ {to_second(at)[11:]}" if at is not None else ""


def _status(r: ItemRecord) -> str:
    at = r.completed_at or r.expired_at
    return f"{r.status} {to_second(at)}" if at is not None else r.status


def item_columns(now: Any) -> list[Column[ItemRecord]]:
    """`now()` is the console's clock: the Left column counts down with it."""
    return [
        Column("Item", lambda r: r.id, numeric=True),
        Column("Title", lambda r: r.title, tooltip=lambda r: r.title),
        Column("#", lambda r: r.incident_id or "", numeric=True),
        Column(
            "Assignee",
            lambda r: r.assignee_name or f"({r.escalate_to_role}s)",
            tooltip=lambda r: r.assignee or "",
        ),
        Column("Limit", lambda r: format_duration(r.time_limit_seconds)),
        Column("Started", lambda r: to_second(r.started_at)),
        Column("Due", lambda r: to_second(r.due_at), tooltip=lambda r: "the assignee is reminded"),
        Column(
            "Escalates",
            lambda r: to_second(r.escalates_at),
            tooltip=lambda r: f"the {r.escalate_to_role}s are told",
        ),
        Column("Left", lambda r: time_left(r, now())),
        Column("Reminded", lambda r: _mark(r.reminded_at), tooltip=lambda r: to_second(r.reminded_at)),
        Column("Escalated", lambda r: _mark(r.escalated_at), tooltip=lambda r: to_second(r.escalated_at)),
        Column("Status", _status),
    ]


class NewItemDialog(QDialog):
    """New item: title, optional incident #, assignee (or nobody: the role is reminded), time limit,
    escalate-to role. What the engine refuses is said in the status bar."""

    def __init__(
        self, choices: dict[str, list[str]], parent: QWidget | None = None, *, incident: int | None = None
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("New work item")
        self.title = QLineEdit()
        self.title.setObjectName("itemTitle")
        self.title.setPlaceholderText("e.g. Verify the isolation, Block C")
        self.incident = QLineEdit(str(incident) if incident else "")
        self.incident.setPlaceholderText("optional")
        self.assignee = QComboBox()
        reach.fill_people(self.assignee, choices, "Nobody (remind the role)")
        self.limit = QLineEdit(DEFAULT_LIMIT)
        self.limit.setPlaceholderText("15m, 1h30m, 90s")
        self.role = QComboBox()
        self.role.addItems(list(ROLES))
        self.role.setCurrentText("supervisor")
        self.error = QLabel()
        self.error.setObjectName("error")
        self.error.setWordWrap(True)
        form = QFormLayout()
        form.addRow("&Title", self.title)
        form.addRow("&Incident #", self.incident)
        form.addRow("&Assignee", self.assignee)
        form.addRow("Time &limit", self.limit)
        form.addRow("&Escalate to", self.role)
        buttons = reach.do_or_back(self, "Add item")
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(
            QLabel("The assignee is reminded when the limit passes; the role is told at twice it.")
        )
        layout.addWidget(self.error)
        layout.addWidget(buttons)
        self.title.setFocus()

    def values(self) -> dict[str, Any]:
        """The engine's create_item arguments; ValidationError naming the field that cannot be read."""
        number = self.incident.text().strip().lstrip("#")
        if number and not number.isdigit():
            raise ValidationError(f"incident # must be a number, not {self.incident.text().strip()!r}")
        if not self.title.text().strip():
            raise ValidationError("an item needs a title", field="title")
        return {
            "title": self.title.text().strip(),
            "incident": int(number) if number else None,
            "assignee": str(self.assignee.currentData() or "") or None,
            "time_limit_seconds": parse_duration(self.limit.text()),
            "escalate_to_role": self.role.currentText(),
        }

    def accept(self) -> None:
        try:
            self.values()
        except ValidationError as exc:
            self.error.setText(str(exc))
            return
        super().accept()


class AssignItemDialog(QDialog):
    def __init__(self, r: ItemRecord, choices: dict[str, list[str]], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Assign work item")
        self.person = QComboBox()
        self.person.setEditable(True)
        self.person.setObjectName("itemAssignee")
        reach.fill_people(self.person, choices)
        if r.assignee:
            self.person.setCurrentIndex(max(0, self.person.findData(r.assignee)))
        buttons = reach.do_or_back(self, "Assign")
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel(f"Item {r.id}: {r.title}\nAssign to:"))
        layout.addWidget(self.person)
        layout.addWidget(buttons)
        self.person.setFocus()

    def chosen(self) -> str:
        return reach.chosen_handle(self.person)


class WorkItemsWidget(reach.RecordTab):
    noun = "work item"

    def __init__(self, services: ConsoleServices, parent: QWidget | None = None) -> None:
        super().__init__(services, parent)
        self.choices: dict[str, list[str]] = {}
        self._pending: int | None = None  # an item asked for (open_item) that the list does not show yet

        self.shown = QComboBox()
        self.shown.setObjectName("itemsShown")
        for label, status in SHOWN:
            self.shown.addItem(label, status)
        self.mine = QCheckBox("&Mine")
        self.mine.setObjectName("itemsMine")
        if services.operator.person_id is None:
            self.mine.setEnabled(False)
            self.mine.setToolTip("Your account is not linked to a person record: ask an administrator")
        else:
            self.mine.setToolTip("Only the items assigned to you")
        self.new_button = QPushButton("New item… (N)")
        self.assign_button = QPushButton("Assign… (G)")
        self.done_button = QPushButton("Done (D)")
        self.open_button = QPushButton("Open incident (Enter)")
        self.status = QLabel()
        self.status.setObjectName("itemsStatus")
        bar = QHBoxLayout()
        bar.addWidget(QLabel("Show"))
        bar.addWidget(self.shown)
        bar.addWidget(self.mine)
        bar.addStretch(1)
        bar.addWidget(self.new_button)
        bar.addWidget(self.assign_button)
        bar.addWidget(self.done_button)
        bar.addWidget(self.open_button)

        clock = services.ctx.clock
        self.model = RecordTableModel(item_columns(clock.now), self, tint=lambda r: self.tint(r, clock.now()))
        self.view = record_table(self.model)
        self.view.setObjectName("itemTable")
        layout = QVBoxLayout(self)
        layout.addLayout(bar)
        layout.addWidget(self.view, 1)
        layout.addWidget(self.status)

        self.shown.currentIndexChanged.connect(lambda _i: self.refresh())
        self.mine.toggled.connect(lambda _on: self.refresh())
        self.wire(
            [
                ("N", self.new_button, self.new_item),
                ("G", self.assign_button, self.assign_selected),
                ("D", self.done_button, self.done_selected),
                ("", self.open_button, self.open_selected),
            ],
            self._update_buttons,
        )
        # Countdowns and colours follow the clock; the engine's reminders are read again now and then.
        self._tick = QTimer(self)
        self._tick.setInterval(1000)
        self._tick.timeout.connect(self.view.viewport().update)
        self._tick.start()
        self._reload = QTimer(self)
        self._reload.setInterval(REFRESH_MS)
        self._reload.timeout.connect(lambda: self.refresh() if self.isVisible() else None)
        self._reload.start()
        self.services.worker.submit(
            reach.people_job(clock.now()), **replies(self, self._set_choices), what="people"
        )
        self.refresh()

    @staticmethod
    def tint(r: ItemRecord, now: datetime) -> str | None:
        if r.status != "open" or now < r.due_at:
            return None
        return "breached" if now >= r.escalates_at else "warning"

    def _set_choices(self, choices: dict[str, list[str]]) -> None:
        self.choices = choices

    # -- the list -----------------------------------------------------------------------------------------
    def refresh(self, select: int | None = None) -> None:
        self._request += 1
        request = self._request
        status = str(self.shown.currentData() or "") or None
        mine = self.mine.isChecked()
        keep = [i for i in (select, self._pending, self.current_id()) if i is not None]

        def job(who: Any) -> list[ItemRecord]:
            from engine.db import read_session

            with read_session(self.services.ctx.sessions) as session:
                if mine and who.person_id is None:
                    raise ValidationError(f"{who.label} is not linked to a person record", field="mine")
                return items.list_items(
                    session, status=status, assignee_id=who.person_id if mine else None, limit=LIMIT
                )

        self.services.act(
            Action.WORKFLOW_ITEMS,
            job,
            **replies(
                self, lambda rows: self._arrived(request, rows, keep), lambda e: self._list_failed(request, e)
            ),
            what="work items",
        )

    def _arrived(self, request: int, rows: list[ItemRecord], keep: list[int]) -> None:
        if request != self._request:
            return
        self.model.set_rows(rows)
        label = self.shown.currentText().lower()
        whose = "of yours" if self.mine.isChecked() else ""
        self.status.setText(
            f"{len(rows)} {label} item(s) {whose}".strip()
            if rows
            else f"No {label} items {whose}".strip() + "."
        )
        if rows and not any(self.select_item(i) for i in keep):
            self.view.selectRow(0)
        if self._pending is not None:
            pending, self._pending = self._pending, None
            if self.select_item(pending):
                self.view.setFocus()
            else:
                self.say(f"Work item {pending} is not in the list", True)
        self._update_buttons()
        self.loaded.emit()

    def _update_buttons(self) -> None:
        chosen = self.current()
        is_open = chosen is not None and chosen.status == "open"
        self.assign_button.setEnabled(is_open)
        self.done_button.setEnabled(is_open)
        self.open_button.setEnabled(chosen is not None and chosen.incident_id is not None)

    # -- the selected item --------------------------------------------------------------------------------
    def select_item(self, item_id: int) -> bool:
        return self.select_id(item_id)

    def show_item(self, item_id: int) -> None:
        """Select `item_id` (a notification's link): at once when listed, else after showing all items."""
        if self.select_item(item_id):
            self.view.setFocus()
            return
        self._pending = item_id
        self.mine.blockSignals(True)
        self.mine.setChecked(False)
        self.mine.blockSignals(False)
        self.shown.setCurrentIndex(len(SHOWN) - 1)  # All: reloads (or the reload below if it was All)
        self.refresh()

    def _change(self, job: Any, said: Any, what: str) -> None:
        """Run an engine change as the signed-in person; say what it did and show the item, or the refusal."""

        def done(r: ItemRecord) -> None:
            self.say(said(r))
            self.refresh(select=r.id)

        self.services.act(
            Action.WORKFLOW_ITEMS, job, **replies(self, done, lambda e: self.say(str(e), True)), what=what
        )

    def new_item(self) -> None:
        dialog = NewItemDialog(self.choices, self)
        if not self.ask(dialog):
            return
        values, ctx = dialog.values(), self.services.ctx
        self._change(
            lambda who: items.create_item(ctx, who, **values),
            lambda r: f"Work item {r.id} added: {r.title} — due {to_second(r.due_at)[11:]}",
            "new work item",
        )

    def assign_selected(self) -> None:
        chosen = self.selected("Assign")
        if chosen is None:
            return
        if chosen.status != "open":
            self.say(f"Work item {chosen.id} is {chosen.status}, not open: it cannot be assigned", True)
            return
        dialog = AssignItemDialog(chosen, self.choices, self)
        if not self.ask(dialog):
            self.say(f"Assign: nothing changed — item {chosen.id} unchanged")
            return
        handle, ctx, item_id = dialog.chosen(), self.services.ctx, chosen.id
        if not handle:
            self.say("Assign: choose a person", True)
            return
        self._change(
            lambda who: items.assign_item(ctx, who, item_id, handle),
            lambda r: f"Work item {r.id} assigned to {r.assignee_name}",
            "assign work item",
        )

    def done_selected(self) -> None:
        chosen = self.selected("Done")
        if chosen is None:
            return
        if chosen.status != "open":
            self.say(f"Work item {chosen.id} is {chosen.status} already", True)
            return
        from console.dialogs import ConfirmDialog

        dialog = ConfirmDialog(
            f"Item {chosen.id} done?",
            f"Mark item {chosen.id} “{chosen.title}” done? No reminder or escalation follows.",
            key="D",
            confirm_text="Done",
            keep_text="Keep it open",
            parent=self,
        )
        if not self.ask(dialog):
            self.say(f"Done: nothing changed — item {chosen.id} still {chosen.status}")
            return
        ctx, item_id = self.services.ctx, chosen.id
        self._change(
            lambda who: items.complete_item(ctx, who, item_id),
            lambda r: f"Work item {r.id} done",
            "item done",
        )
