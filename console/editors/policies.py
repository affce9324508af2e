"""Escalation policies: the policy's filters and business hours, and its levels, each with a target picker.

Nothing here is JSON: a level is a delay ("15m"), repeats, require-ack, auto-resolve and a list of targets
picked by type (person, team, team manager, on-call schedule — chosen from the people, teams and schedules
that exist — or an e-mail address, phone number, webhook URL, or the console). Durations stay the text the
supervisor typed; the engine parses and checks them when the policy is saved.
"""

from __future__ import annotations

import copy
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from console.editors.base import ERROR_STYLE, Obj, ObjectEditor, line, set_combo
from console.editors.people import duration_text
from console.history.records import Column
from engine.models import Severity, TargetType, Trigger

TARGET_TYPES = [t.value for t in TargetType]
TARGET_LABELS = {
    "person": "Person",
    "team": "Team (all members)",
    "team_manager": "Team manager",
    "schedule": "On-call schedule",
    "email": "E-mail address",
    "phone": "Phone number",
    "webhook": "Webhook URL",
    "console": "Console pop-up",
}
PICKED = {"person": "people", "team": "teams", "team_manager": "teams", "schedule": "schedules"}
PLACEHOLDERS = {
    "email": "duty@example.org",
    "phone": "+27821234567 (voice:+27… to call)",
    "webhook": "https://chat.example.org/hooks/…",
    "console": "all, or a role",
}
DAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]


def _level_text(index: int, level: Obj) -> str:
    targets = level.get("targets") or []
    delay = duration_text(level.get("delay", 0)) or "0s"
    return f"Level {index + 1} — after {delay}, {len(targets)} target{'s' if len(targets) != 1 else ''}"


class TargetRow(QWidget):
    """One target: its type, then a handle picked from the directory or an address typed in."""

    removed = Signal(object)
    changed = Signal()

    def __init__(self, directory: dict[str, list[str]], target: Obj, editable: bool) -> None:
        super().__init__()
        self.directory = directory
        self.type = QComboBox()
        for value in TARGET_TYPES:
            self.type.addItem(TARGET_LABELS[value], value)
        self.identifier = QComboBox()
        self.identifier.setEditable(True)
        self.identifier.setMinimumWidth(220)
        self.name = QLineEdit()
        self.name.setPlaceholderText("label (optional)")
        self.remove = QPushButton("✕")
        self.remove.setToolTip("Remove this target")
        self.remove.setFixedWidth(28)
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.type)
        row.addWidget(self.identifier, 1)
        row.addWidget(self.name)
        row.addWidget(self.remove)
        index = self.type.findData(str(target.get("type") or "person"))
        self.type.setCurrentIndex(max(index, 0))
        self._refill()
        set_combo(self.identifier, str(target.get("identifier") or target.get("id") or ""))
        self.name.setText(str(target.get("name") or ""))
        self.type.currentIndexChanged.connect(lambda _i: (self._refill(), self.changed.emit()))
        self.identifier.currentTextChanged.connect(lambda _t: self.changed.emit())
        self.remove.clicked.connect(lambda: self.removed.emit(self))
        for w in (self.type, self.identifier, self.remove):
            w.setEnabled(editable)
        self.name.setReadOnly(not editable)

    def target_type(self) -> str:
        return str(self.type.currentData())

    def _refill(self) -> None:
        kind = self.target_type()
        text = self.identifier.currentText()
        self.identifier.clear()
        self.identifier.addItems(self.directory.get(PICKED.get(kind, ""), []))
        self.identifier.lineEdit().setPlaceholderText(PLACEHOLDERS.get(kind, "choose or type a handle"))
        self.identifier.setEditText(
            text if kind not in PICKED or text in self.directory.get(PICKED[kind], []) else ""
        )

    def value(self) -> Obj:
        out: Obj = {"type": self.target_type(), "identifier": self.identifier.currentText().strip()}
        if self.name.text().strip():
            out["name"] = self.name.text().strip()
        return out


class LevelForm(QGroupBox):
    """The level selected in the level list."""

    changed = Signal()

    def __init__(self, editable: bool) -> None:
        super().__init__("Level")
        self.editable = editable
        self.directory: dict[str, list[str]] = {}
        self.delay = line(placeholder="0s, 5m, 15m, 1h")
        self.repeats = QSpinBox()
        self.repeats.setRange(0, 100)
        self.repeat_interval = line(placeholder="5m")
        self.require_ack = QCheckBox("wait for an acknowledgement before the next level")
        self.auto_resolve = line(placeholder="0s: never")
        self.errors: dict[str, QLabel] = {}
        layout = QVBoxLayout(self)
        grid = QHBoxLayout()
        for key, label, widget in (
            ("delay", "Delay", self.delay),
            ("repeat_count", "Repeats", self.repeats),
            ("repeat_interval", "every", self.repeat_interval),
            ("auto_resolve", "Auto-resolve after", self.auto_resolve),
        ):
            cell = QVBoxLayout()
            cell.setAlignment(Qt.AlignmentFlag.AlignTop)
            cell.addWidget(QLabel(label))
            cell.addWidget(widget)
            err = QLabel()
            err.setStyleSheet(ERROR_STYLE)
            err.setWordWrap(True)
            err.hide()
            cell.addWidget(err)
            self.errors[key] = err
            grid.addLayout(cell)
        layout.addLayout(grid)
        layout.addWidget(self.require_ack)
        layout.addWidget(QLabel("Targets"))
        self.target_box = QVBoxLayout()
        layout.addLayout(self.target_box)
        self.targets_error = QLabel()
        self.targets_error.setStyleSheet(ERROR_STYLE)
        self.targets_error.setWordWrap(True)
        self.targets_error.hide()
        self.errors["targets"] = self.targets_error
        layout.addWidget(self.targets_error)
        self.add_target = QPushButton("+ Add target")
        add_row = QHBoxLayout()
        add_row.addWidget(self.add_target)
        add_row.addStretch(1)
        layout.addLayout(add_row)
        layout.addStretch(1)
        self.rows: list[TargetRow] = []
        self.add_target.clicked.connect(lambda: (self._add_row({"type": "person"}), self.changed.emit()))
        for w in (self.delay, self.repeat_interval, self.auto_resolve):
            w.setReadOnly(not editable)
            w.textChanged.connect(lambda _t: self.changed.emit())
        for w2 in (self.repeats, self.require_ack, self.add_target):
            w2.setEnabled(editable)
        self.repeats.valueChanged.connect(lambda _v: self.changed.emit())

    def _add_row(self, target: Obj) -> TargetRow:
        row = TargetRow(self.directory, target, self.editable)
        row.removed.connect(self._remove_row)
        row.changed.connect(self.changed.emit)
        self.rows.append(row)
        self.target_box.addWidget(row)
        return row

    def _remove_row(self, row: TargetRow) -> None:
        self.rows.remove(row)
        row.setParent(None)
        row.deleteLater()
        self.changed.emit()

    def load(self, index: int, level: Obj) -> None:
        self.blockSignals(True)
        self.setTitle(f"Level {index + 1}")
        self.delay.setText(duration_text(level.get("delay", "0s")))
        self.repeats.setValue(int(level.get("repeat_count", level.get("repeats", 0)) or 0))
        self.repeat_interval.setText(duration_text(level.get("repeat_interval", "5m")))
        self.require_ack.setChecked(bool(level.get("require_ack", True)))
        self.auto_resolve.setText(duration_text(level.get("auto_resolve", "0s")))
        for row in list(self.rows):
            row.setParent(None)
            row.deleteLater()
        self.rows.clear()
        for target in level.get("targets") or []:
            self._add_row(
                target if isinstance(target, dict) else {"type": "person", "identifier": str(target)}
            )
        for err in self.errors.values():
            err.hide()
        self.blockSignals(False)

    def collect_into(self, level: Obj) -> None:
        level["delay"] = self.delay.text().strip() or "0s"
        level.pop("repeats", None)
        level["repeat_count"] = self.repeats.value()
        level["repeat_interval"] = self.repeat_interval.text().strip() or "5m"
        level["require_ack"] = self.require_ack.isChecked()
        level["auto_resolve"] = self.auto_resolve.text().strip() or "0s"
        level["targets"] = [row.value() for row in self.rows]


class PoliciesEditor(ObjectEditor):
    kind = "policies"
    title = "Escalation policies"
    handle_key = "name"
    related_kinds = ("people", "teams", "schedules")
    list_columns = [
        Column("Name", lambda o: o.get("name", "")),
        Column("Levels", lambda o: len(o.get("levels") or []), numeric=True),
        Column("Enabled", lambda o: o.get("enabled", True)),
    ]

    def build_form(self) -> None:
        self.levels: list[Obj] = []
        self._level_index = -1
        self.name = self.add_field("name", "Name", line(placeholder="e.g. Fire and rescue"))
        self.description = self.add_field("description", "Description", line())
        self.enabled = self.add_field("enabled", "Enabled", QCheckBox("new incidents may use this policy"))

        self.severity = {s.value: QCheckBox(s.value) for s in Severity}
        self.add_field(
            "severity_filter", "Severities", _row(list(self.severity.values())), "none ticked: every severity"
        )
        self.triggers = {t.value: QCheckBox(t.value.replace("_", " ")) for t in Trigger}
        self.add_field("triggers", "Triggers", _grid(list(self.triggers.values()), 3))
        self.max_escalations = QSpinBox()
        self.max_escalations.setRange(1, 1000)
        self.add_field("max_escalations", "Max escalations", self.max_escalations)
        self.cooldown = self.add_field(
            "cooldown", "Cooldown", line(placeholder="0s"), "one live escalation per key"
        )

        self.business_only = QCheckBox("only escalate in business hours")
        self.add_field("business_hours_only", "Business hours", self.business_only)
        self.days = {i: QCheckBox(d) for i, d in enumerate(DAYS)}
        self.add_field("business_days", "Days", _row(list(self.days.values())))
        self.business_start = line(placeholder="08:00")
        self.business_end = line(placeholder="17:00")
        hours = _row([QLabel("from"), self.business_start, QLabel("to"), self.business_end])
        self.add_field("business_hours", "Hours", hours)
        self.track(self.business_start, self.business_end)
        self.timezone = self.add_field("timezone", "Time zone", line(placeholder="Africa/Johannesburg"))
        self.track(*self.severity.values(), *self.triggers.values(), *self.days.values())

        # Levels: a list on the left, the selected level's form on the right.
        self.level_list = QListWidget()
        self.level_list.setMaximumWidth(280)
        self.level_list.setMaximumHeight(200)
        self.add_level = QPushButton("+ Level")
        self.remove_level = QPushButton("− Level")
        self.level_up = QPushButton("↑")
        self.level_down = QPushButton("↓")
        level_buttons = _row([self.add_level, self.remove_level, self.level_up, self.level_down])
        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(0, 0, 0, 0)
        left_layout.addWidget(self.level_list)
        left_layout.addWidget(level_buttons)
        left_layout.addStretch(1)
        self.level_form = LevelForm(self.editable)
        levels_widget = QWidget()
        levels_layout = QHBoxLayout(levels_widget)
        levels_layout.setContentsMargins(0, 0, 0, 0)
        levels_layout.addWidget(left)
        levels_layout.addWidget(self.level_form, 1)
        self.add_field("levels", "Levels", levels_widget)
        for button in (self.add_level, self.remove_level, self.level_up, self.level_down):
            button.setEnabled(self.editable)
        self.level_list.currentRowChanged.connect(self._choose_level)
        self.level_form.changed.connect(self._level_edited)
        self.add_level.clicked.connect(self._add_level)
        self.remove_level.clicked.connect(self._remove_level)
        self.level_up.clicked.connect(lambda: self._move_level(-1))
        self.level_down.clicked.connect(lambda: self._move_level(1))

    # -- levels ----------------------------------------------------------------------------------------
    def _store_level(self) -> None:
        if 0 <= self._level_index < len(self.levels):
            self.level_form.collect_into(self.levels[self._level_index])

    def _refresh_level_list(self) -> None:
        self.level_list.blockSignals(True)
        self.level_list.clear()
        for i, level in enumerate(self.levels):
            self.level_list.addItem(_level_text(i, level))
        self.level_list.setCurrentRow(self._level_index)
        self.level_list.blockSignals(False)

    def _choose_level(self, row: int) -> None:
        self._store_level()
        self._level_index = row
        if 0 <= row < len(self.levels):
            self.level_form.load(row, self.levels[row])
            self.level_form.setEnabled(True)
        else:
            self.level_form.load(0, {})
            self.level_form.setEnabled(False)

    def _level_edited(self) -> None:
        self._store_level()
        item = self.level_list.item(self._level_index)
        if item is not None:
            item.setText(_level_text(self._level_index, self.levels[self._level_index]))

    def _add_level(self) -> None:
        self._store_level()
        self.levels.append(
            {
                "delay": "15m" if self.levels else "0s",
                "repeat_count": 0,
                "repeat_interval": "5m",
                "require_ack": True,
                "auto_resolve": "0s",
                "targets": [],
            }
        )
        self._level_index = len(self.levels) - 1
        self._refresh_level_list()
        self.level_form.load(self._level_index, self.levels[self._level_index])
        self.level_form.setEnabled(True)

    def _remove_level(self) -> None:
        if not (0 <= self._level_index < len(self.levels)):
            return
        del self.levels[self._level_index]
        self._level_index = min(self._level_index, len(self.levels) - 1)
        self._refresh_level_list()
        self._choose_level_quiet(self._level_index)

    def _move_level(self, step: int) -> None:
        self._store_level()
        i, j = self._level_index, self._level_index + step
        if not (0 <= i < len(self.levels) and 0 <= j < len(self.levels)):
            return
        self.levels[i], self.levels[j] = self.levels[j], self.levels[i]
        self._level_index = j
        self._refresh_level_list()
        self.level_form.load(j, self.levels[j])

    def _choose_level_quiet(self, row: int) -> None:
        self._level_index = -1
        self._choose_level(row)

    def select_level(self, row: int) -> None:
        self.level_list.setCurrentRow(row)

    # -- ObjectEditor ----------------------------------------------------------------------------------
    def key_widgets(self) -> list[QWidget]:
        return [self.name]

    def related_loaded(self, directory: dict[str, list[Obj]]) -> None:
        self.level_form.directory = {
            "people": [str(o.get("handle", "")) for o in directory.get("people", [])],
            "teams": [str(o.get("handle", "")) for o in directory.get("teams", [])],
            "schedules": [str(o.get("handle", "")) for o in directory.get("schedules", [])],
        }
        for row in self.level_form.rows:
            row.directory = self.level_form.directory

    def blank(self) -> Obj:
        return {
            "name": "",
            "enabled": True,
            "triggers": [Trigger.UNACKNOWLEDGED.value],
            "max_escalations": 10,
            "levels": [
                {
                    "delay": "0s",
                    "repeat_count": 0,
                    "repeat_interval": "5m",
                    "require_ack": True,
                    "targets": [],
                }
            ],
        }

    def fill(self, obj: Obj) -> None:
        self.name.setText(obj.get("name", ""))
        self.description.setText(obj.get("description") or "")
        self.enabled.setChecked(bool(obj.get("enabled", True)))
        chosen = set(obj.get("severity_filter") or [])
        for value, box in self.severity.items():
            box.setChecked(value in chosen)
        triggers = set(obj.get("triggers") or [Trigger.UNACKNOWLEDGED.value])
        for value, box in self.triggers.items():
            box.setChecked(value in triggers)
        self.max_escalations.setValue(int(obj.get("max_escalations") or 10))
        self.cooldown.setText(duration_text(obj.get("cooldown", "0s")))
        hours = obj.get("business_hours") if isinstance(obj.get("business_hours"), dict) else {}
        self.business_only.setChecked(bool(obj.get("business_hours_only", bool(hours))))
        days = hours.get("days", obj.get("business_days", [0, 1, 2, 3, 4]))
        for i, box in self.days.items():
            box.setChecked(i in _day_numbers(days))
        self.business_start.setText(str(hours.get("start", obj.get("business_start", "08:00"))))
        self.business_end.setText(str(hours.get("end", obj.get("business_end", "17:00"))))
        self.timezone.setText(str(hours.get("timezone", obj.get("timezone", "")) or ""))
        self.levels = [dict(level) for level in obj.get("levels") or []]
        self._level_index = -1
        self._refresh_level_list()
        self._choose_level_quiet(0 if self.levels else -1)
        self._refresh_level_list()

    def collect_into(self, obj: Obj) -> None:
        self._store_level()
        obj["name"] = self.name.text().strip()
        obj["description"] = self.description.text().strip()
        obj["enabled"] = self.enabled.isChecked()
        obj["severity_filter"] = [v for v, box in self.severity.items() if box.isChecked()]
        obj["triggers"] = [v for v, box in self.triggers.items() if box.isChecked()]
        obj["max_escalations"] = self.max_escalations.value()
        obj["cooldown"] = self.cooldown.text().strip() or "0s"
        obj.pop("business_hours", None)
        obj["business_hours_only"] = self.business_only.isChecked()
        obj["business_days"] = [i for i, box in self.days.items() if box.isChecked()]
        obj["business_start"] = self.business_start.text().strip()
        obj["business_end"] = self.business_end.text().strip()
        if self.timezone.text().strip():
            obj["timezone"] = self.timezone.text().strip()
        levels = copy.deepcopy(self.levels)
        for number, level in enumerate(levels, start=1):
            level["level"] = number
        obj["levels"] = levels

    def locate(self, parts: list[str | int]) -> str | None:
        if len(parts) >= 3 and parts[0] == "levels" and isinstance(parts[1], int):
            field = parts[2]
            key = {"repeats": "repeat_count"}.get(str(field), str(field))
            if key in self.level_form.errors:
                self._field_errors[f"levels.{key}"] = self.level_form.errors[key]
                return f"levels.{key}"
        if parts and parts[0] in ("business_start", "business_end", "business_days"):
            return "business_hours" if parts[0] != "business_days" else "business_days"
        return super().locate(parts)

    def focus_error(self, parts: list[str | int]) -> None:
        if (
            len(parts) >= 2
            and parts[0] == "levels"
            and isinstance(parts[1], int)
            and parts[1] < len(self.levels)
        ):
            self.select_level(parts[1])


def _day_numbers(days: Any) -> set[int]:
    names = {d.lower(): i for i, d in enumerate(DAYS)}
    out: set[int] = set()
    for day in days or []:
        if isinstance(day, int):
            out.add(day)
        elif str(day)[:3].lower() in names:
            out.add(names[str(day)[:3].lower()])
    return out


def _row(widgets: list[QWidget]) -> QWidget:
    host = QWidget()
    row = QHBoxLayout(host)
    row.setContentsMargins(0, 0, 0, 0)
    for w in widgets:
        row.addWidget(w)
    row.addStretch(1)
    return host


def _grid(widgets: list[QWidget], per_row: int) -> QWidget:
    host = QWidget()
    column = QVBoxLayout(host)
    column.setContentsMargins(0, 0, 0, 0)
    for start in range(0, len(widgets), per_row):
        column.addWidget(_row(widgets[start : start + per_row]))
    return host


__all__ = ["PoliciesEditor"]
