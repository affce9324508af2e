"""Teams: members (in paging order), the manager who gets team-manager pages and SLA escalations, and the
team's on-call schedule (a team target then pages whoever is on call on it, not every member)."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QHBoxLayout, QListWidget, QListWidgetItem, QPushButton, QVBoxLayout, QWidget

from console.editors.base import Obj, ObjectEditor, combo, line, set_combo
from console.history.records import Column


def member_handles(value: Any) -> list[str]:
    """Members as handles, whether the format lists handles or {person: handle} entries."""
    out: list[str] = []
    for entry in value or []:
        if isinstance(entry, dict):
            out.append(str(entry.get("person") or entry.get("handle") or ""))
        else:
            out.append(str(entry))
    return [h for h in out if h]


class PeoplePicker(QWidget):
    """Every person with a check box; checked ones are members, in the list's order (move with ↑ ↓)."""

    def __init__(self) -> None:
        super().__init__()
        self.list = QListWidget()
        self.list.setMinimumHeight(140)
        self.up = QPushButton("↑")
        self.down = QPushButton("↓")
        buttons = QVBoxLayout()
        buttons.addWidget(self.up)
        buttons.addWidget(self.down)
        buttons.addStretch(1)
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.list, 1)
        row.addLayout(buttons)
        self.up.clicked.connect(lambda: self._move(-1))
        self.down.clicked.connect(lambda: self._move(1))
        self._people: list[tuple[str, str]] = []

    def set_people(self, people: list[tuple[str, str]]) -> None:
        chosen = self.values()
        self._people = people
        self.set_values(chosen)

    def set_values(self, handles: list[str]) -> None:
        self.list.clear()
        names = dict(self._people)
        for handle in handles:
            self._add(handle, names.get(handle, handle), True)
        for handle, name in self._people:
            if handle not in handles:
                self._add(handle, name, False)

    def _add(self, handle: str, name: str, checked: bool) -> None:
        item = QListWidgetItem(f"{name} ({handle})" if name != handle else handle)
        item.setData(Qt.ItemDataRole.UserRole, handle)
        item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
        item.setCheckState(Qt.CheckState.Checked if checked else Qt.CheckState.Unchecked)
        self.list.addItem(item)

    def values(self) -> list[str]:
        out = []
        for i in range(self.list.count()):
            item = self.list.item(i)
            if item.checkState() == Qt.CheckState.Checked:
                out.append(str(item.data(Qt.ItemDataRole.UserRole)))
        return out

    def check(self, handle: str, checked: bool = True) -> None:
        for i in range(self.list.count()):
            item = self.list.item(i)
            if item.data(Qt.ItemDataRole.UserRole) == handle:
                item.setCheckState(Qt.CheckState.Checked if checked else Qt.CheckState.Unchecked)

    def _move(self, step: int) -> None:
        row = self.list.currentRow()
        target = row + step
        if row < 0 or not (0 <= target < self.list.count()):
            return
        item = self.list.takeItem(row)
        self.list.insertItem(target, item)
        self.list.setCurrentRow(target)

    def setEnabled(self, enabled: bool) -> None:
        self.list.setEnabled(enabled)
        self.up.setEnabled(enabled)
        self.down.setEnabled(enabled)


def people_choices(directory: dict[str, list[Obj]]) -> list[tuple[str, str]]:
    return [
        (str(p.get("handle", "")), str(p.get("name") or p.get("handle", "")))
        for p in directory.get("people", [])
    ]


class TeamsEditor(ObjectEditor):
    kind = "teams"
    title = "Teams"
    related_kinds = ("people", "schedules")
    list_columns = [
        Column("Handle", lambda o: o.get("handle", "")),
        Column("Name", lambda o: o.get("name", "")),
        Column("Manager", lambda o: o.get("manager") or ""),
        Column("On call", lambda o: o.get("schedule") or ""),
        Column("Members", lambda o: len(member_handles(o.get("members"))), numeric=True),
    ]

    def build_form(self) -> None:
        self.handle = self.add_field("handle", "Handle", line(placeholder="e.g. fire-crew"))
        self.name = self.add_field("name", "Name", line())
        self.description = self.add_field("description", "Description", line())
        self.manager = self.add_field("manager", "Manager", combo([""]))
        self.members = PeoplePicker()
        self.add_field("members", "Members", self.members, "checked people are paged, top first")
        self.schedule = self.add_field(
            "schedule",
            "On-call schedule",
            combo([""]),
            "a team target pages whoever is on call on it (every member when nobody is); empty: every member",
        )

    def key_widgets(self) -> list[QWidget]:
        return [self.handle]

    def related_loaded(self, directory: dict[str, list[Obj]]) -> None:
        people = people_choices(directory)
        current = self.manager.currentText()
        self.manager.clear()
        self.manager.addItems([""] + [h for h, _ in people])
        set_combo(self.manager, current)
        self.members.set_people(people)
        schedule = self.schedule.currentText()
        self.schedule.clear()
        self.schedule.addItems([""] + [str(o.get("handle", "")) for o in directory.get("schedules", [])])
        set_combo(self.schedule, schedule)

    def fill(self, obj: Obj) -> None:
        self.handle.setText(obj.get("handle", ""))
        self.name.setText(obj.get("name", ""))
        self.description.setText(obj.get("description") or "")
        set_combo(self.manager, obj.get("manager") or "")
        self.members.set_values(member_handles(obj.get("members")))
        set_combo(self.schedule, obj.get("schedule") or "")

    def collect_into(self, obj: Obj) -> None:
        obj["handle"] = self.handle.text().strip()
        obj["name"] = self.name.text().strip()
        obj["description"] = self.description.text().strip()
        obj["manager"] = self.manager.currentText().strip() or None
        obj["members"] = self.members.values()
        obj["schedule"] = self.schedule.currentText().strip() or None
