"""On-call schedules: rotations (layers) and overrides, with who is on call now and next and a week view.

The outlook comes from engine.history.schedule_outlook (engine.oncall underneath) on the worker, for the
schedule as saved; the week view paints those shifts in the schedule's own time zone.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from PySide6.QtCore import QDateTime, QRectF, Qt, QTimeZone, Signal
from PySide6.QtGui import QColor, QPainter, QPen
from PySide6.QtWidgets import (
    QComboBox,
    QDateTimeEdit,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from console.editors.base import Obj, ObjectEditor, line, set_combo
from console.editors.people import duration_text
from console.editors.teams import PeoplePicker, people_choices
from console.history.records import Column, replies
from engine import history
from engine.history import ShiftRecord

PALETTE = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#9c755f"]


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


class WeekView(QWidget):
    """Seven local days side by side, hours downwards, each shift a labelled block (colour and name)."""

    def __init__(self) -> None:
        super().__init__()
        self.setMinimumSize(560, 300)
        self.shifts: list[ShiftRecord] = []
        self.week_start = datetime(2026, 1, 5, tzinfo=UTC)
        self.tz = ZoneInfo("UTC")
        self._colours: dict[str, QColor] = {}

    def show_week(self, week_start: datetime, tz: ZoneInfo, shifts: list[ShiftRecord]) -> None:
        self.week_start, self.tz, self.shifts = week_start, tz, shifts
        for shift in shifts:
            if shift.person not in self._colours:
                self._colours[shift.person] = QColor(PALETTE[len(self._colours) % len(PALETTE)])
        self.update()

    def paintEvent(self, _event: Any) -> None:
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        left, top = 40.0, 22.0
        width = (self.width() - left - 4) / 7
        height = self.height() - top - 4
        p.fillRect(self.rect(), self.palette().base())
        p.setPen(QPen(self.palette().mid().color()))
        for h in range(0, 25, 3):
            y = top + height * h / 24
            p.drawLine(int(left), int(y), self.width() - 4, int(y))
            p.drawText(QRectF(0, y - 8, left - 4, 16), Qt.AlignmentFlag.AlignRight, f"{h:02d}:00")
        start_local = self.week_start.astimezone(self.tz)
        for d in range(7):
            x = left + d * width
            p.drawLine(int(x), int(top), int(x), int(top + height))
            day = start_local + timedelta(days=d)
            p.drawText(QRectF(x, 2, width, 18), Qt.AlignmentFlag.AlignCenter, day.strftime("%a %d %b"))
        for shift in self.shifts:
            self._paint_shift(p, shift, left, top, width, height)
        p.end()

    def _paint_shift(
        self, p: QPainter, shift: ShiftRecord, left: float, top: float, width: float, height: float
    ) -> None:
        start_local = self.week_start.astimezone(self.tz).replace(tzinfo=None)
        colour = self._colours.get(shift.person, QColor(PALETTE[0]))
        s = shift.start.astimezone(self.tz).replace(tzinfo=None)
        e = shift.end.astimezone(self.tz).replace(tzinfo=None)
        for d in range(7):
            day0 = start_local + timedelta(days=d)
            day1 = day0 + timedelta(days=1)
            a, b = max(s, day0), min(e, day1)
            if a >= b:
                continue
            y0 = top + height * (a - day0).total_seconds() / 86400
            y1 = top + height * (b - day0).total_seconds() / 86400
            rect = QRectF(left + d * width + 2, y0 + 1, width - 4, max(y1 - y0 - 2, 2))
            fill = QColor(colour)
            fill.setAlpha(200 if shift.source == "override" else 150)
            p.fillRect(rect, fill)
            p.setPen(QPen(colour.darker(150)))
            p.drawRect(rect)
            p.setPen(QPen(QColor("#000000")))
            label = shift.name + (" (override)" if shift.source == "override" else "")
            p.drawText(rect.adjusted(3, 2, -3, -2), Qt.TextFlag.TextWordWrap, label)


class SubList(QGroupBox):
    """A list of sub-objects (rotations, overrides) with one form for the selected one."""

    changed = Signal()

    def __init__(self, title: str, form: QWidget, load: Any, collect: Any, describe: Any, blank: Any) -> None:
        super().__init__(title)
        self.items: list[Obj] = []
        self.index = -1
        self._load, self._collect, self._describe, self._blank = load, collect, describe, blank
        self.list = QListWidget()
        self.list.setMaximumHeight(110)
        self.add = QPushButton("+ Add")
        self.remove = QPushButton("− Remove")
        buttons = QHBoxLayout()
        buttons.addWidget(self.add)
        buttons.addWidget(self.remove)
        buttons.addStretch(1)
        self.form = form
        layout = QVBoxLayout(self)
        layout.addWidget(self.list)
        layout.addLayout(buttons)
        layout.addWidget(form)
        self.list.currentRowChanged.connect(self._choose)
        self.add.clicked.connect(self._add)
        self.remove.clicked.connect(self._remove)

    def set_items(self, items: list[Obj]) -> None:
        self.items = [dict(i) for i in items]
        self.index = -1
        self._refresh(0 if self.items else -1)
        self._choose(0 if self.items else -1)

    def values(self) -> list[Obj]:
        self._store()
        return [dict(i) for i in self.items]

    def _store(self) -> None:
        if 0 <= self.index < len(self.items):
            self._collect(self.items[self.index])
            item = self.list.item(self.index)
            if item is not None:
                item.setText(self._describe(self.items[self.index]))

    def _refresh(self, row: int) -> None:
        self.list.blockSignals(True)
        self.list.clear()
        for item in self.items:
            self.list.addItem(self._describe(item))
        self.list.setCurrentRow(row)
        self.list.blockSignals(False)

    def _choose(self, row: int) -> None:
        self._store()
        self.index = row
        has = 0 <= row < len(self.items)
        self.form.setVisible(has)
        if has:
            self._load(self.items[row])

    def _add(self) -> None:
        self._store()
        self.items.append(self._blank())
        self.index = -1
        self._refresh(len(self.items) - 1)
        self._choose(len(self.items) - 1)
        self.changed.emit()

    def _remove(self) -> None:
        if not (0 <= self.index < len(self.items)):
            return
        del self.items[self.index]
        row = min(self.index, len(self.items) - 1)
        self.index = -1
        self._refresh(row)
        self._choose(row)
        self.changed.emit()

    def set_editable(self, editable: bool) -> None:
        self.add.setEnabled(editable)
        self.remove.setEnabled(editable)


class SchedulesEditor(ObjectEditor):
    kind = "schedules"
    title = "On-call schedules"
    related_kinds = ("people",)
    list_columns = [
        Column("Handle", lambda o: o.get("handle", "")),
        Column("Name", lambda o: o.get("name", "")),
        Column("Time zone", lambda o: o.get("timezone", "")),
    ]

    outlook_loaded = Signal()

    def build_form(self) -> None:
        self.handle = self.add_field("handle", "Handle", line(placeholder="e.g. fire-primary"))
        self.name = self.add_field("name", "Name", line())
        self.timezone = self.add_field("timezone", "Time zone", line(placeholder="Africa/Johannesburg"))
        self.description = self.add_field("description", "Description", line())

        # Rotation form.
        self.rot_name = line(placeholder="Primary")
        self.rot_start = line(placeholder="2026-03-02")
        self.rot_handoff = line(placeholder="08:00")
        self.rot_shift = line(placeholder="24h, 12h, 168h")
        self.rot_members = PeoplePicker()
        rot_form = QWidget()
        rf = QVBoxLayout(rot_form)
        rf.setContentsMargins(0, 0, 0, 0)
        row = QHBoxLayout()
        for label, w in (
            ("Name", self.rot_name),
            ("Starts", self.rot_start),
            ("Hand-off", self.rot_handoff),
            ("Shift", self.rot_shift),
        ):
            row.addWidget(QLabel(label))
            row.addWidget(w)
        rf.addLayout(row)
        rf.addWidget(QLabel("Members take turns in this order:"))
        rf.addWidget(self.rot_members)
        self.rotations = SubList(
            "Rotations (the first layer with someone on call wins)",
            rot_form,
            self._load_rotation,
            self._collect_rotation,
            lambda r: (
                f"{r.get('name') or 'Primary'}: {len(r.get('members') or [])} people, "
                f"{duration_text(r.get('shift', '24h'))} from {r.get('start_date') or '?'} {r.get('handoff_time') or ''}"
            ),
            lambda: {
                "name": "Primary",
                "start_date": "",
                "handoff_time": "08:00",
                "shift": "24h",
                "members": [],
            },
        )
        self.add_field("rotations", "Rotations", self.rotations)
        self.track(self.rot_name, self.rot_start, self.rot_handoff, self.rot_shift, self.rot_members)

        # Override form.
        self.ov_person = QComboBox()
        self.ov_start = QDateTimeEdit()
        self.ov_end = QDateTimeEdit()
        for edit in (self.ov_start, self.ov_end):
            edit.setCalendarPopup(True)
            edit.setDisplayFormat("yyyy-MM-dd HH:mm")
        self.ov_note = line(placeholder="why (sick leave, swap…)")
        ov_form = QWidget()
        of = QHBoxLayout(ov_form)
        of.setContentsMargins(0, 0, 0, 0)
        for label, w in (
            ("Person", self.ov_person),
            ("from", self.ov_start),
            ("to", self.ov_end),
            ("Note", self.ov_note),
        ):
            of.addWidget(QLabel(label))
            of.addWidget(w)
        self.overrides = SubList(
            "Overrides (win over every rotation while they last)",
            ov_form,
            self._load_override,
            self._collect_override,
            lambda o: (
                f"{o.get('person') or '?'}: {str(o.get('start', ''))[:16]} → {str(o.get('end', ''))[:16]}"
            ),
            self._blank_override,
        )
        self.add_field("overrides", "Overrides", self.overrides)
        self.track(self.ov_person, self.ov_start, self.ov_end, self.ov_note)
        self.rotations.set_editable(self.editable)
        self.overrides.set_editable(self.editable)

        # Outlook: now, next, the week.
        self.now_label = QLabel("—")
        self.now_label.setObjectName("onCallNow")
        self.next_label = QLabel("—")
        self.next_label.setObjectName("onCallNext")
        self.week = WeekView()
        self.prev_week = QPushButton("◀")
        self.next_week = QPushButton("▶")
        self.week_label = QLabel()
        nav = QHBoxLayout()
        nav.addWidget(self.prev_week)
        nav.addWidget(self.week_label, 1)
        nav.addWidget(self.next_week)
        outlook = QGroupBox("On call (as saved)")
        ol = QVBoxLayout(outlook)
        ol.addWidget(self.now_label)
        ol.addWidget(self.next_label)
        ol.addLayout(nav)
        ol.addWidget(self.week)
        self.form.addRow(outlook)
        self._week_offset = 0
        self.prev_week.clicked.connect(lambda: self._shift_week(-1))
        self.next_week.clicked.connect(lambda: self._shift_week(1))
        self._people: list[tuple[str, str]] = []

    def key_widgets(self) -> list[QWidget]:
        return [self.handle]

    # -- rotations and overrides -------------------------------------------------------------------------
    def _load_rotation(self, r: Obj) -> None:
        self.rot_name.setText(str(r.get("name") or ""))
        self.rot_start.setText(str(r.get("start_date") or ""))
        self.rot_handoff.setText(str(r.get("handoff_time") or ""))
        self.rot_shift.setText(duration_text(r.get("shift", "24h")))
        self.rot_members.set_values([str(m) for m in r.get("members") or []])

    def _collect_rotation(self, r: Obj) -> None:
        r["name"] = self.rot_name.text().strip() or "Primary"
        r["start_date"] = self.rot_start.text().strip()
        r["handoff_time"] = self.rot_handoff.text().strip() or "08:00"
        for alias in ("shift_hours", "shift_minutes", "shift_seconds"):
            r.pop(alias, None)
        r["shift"] = self.rot_shift.text().strip() or "24h"
        r["members"] = self.rot_members.values()

    def _tz(self) -> ZoneInfo:
        return _zone(self.timezone.text().strip() or "Africa/Johannesburg")

    def _load_override(self, o: Obj) -> None:
        set_combo(self.ov_person, str(o.get("person") or ""))
        tz = QTimeZone(self._tz().key.encode())
        for edit, key in ((self.ov_start, "start"), (self.ov_end, "end")):
            edit.setTimeZone(tz)
            try:
                when = datetime.fromisoformat(str(o.get(key)))
            except ValueError:
                when = self.services.ctx.clock.now()
            edit.setDateTime(QDateTime.fromSecsSinceEpoch(int(when.timestamp()), tz))
        self.ov_note.setText(str(o.get("note") or ""))

    def _collect_override(self, o: Obj) -> None:
        tz = self._tz()
        o["person"] = self.ov_person.currentText()
        o["start"] = datetime.fromtimestamp(self.ov_start.dateTime().toSecsSinceEpoch(), tz).isoformat()
        o["end"] = datetime.fromtimestamp(self.ov_end.dateTime().toSecsSinceEpoch(), tz).isoformat()
        o["note"] = self.ov_note.text()

    def _blank_override(self) -> Obj:
        tz = self._tz()
        start = self.services.ctx.clock.now().astimezone(tz).replace(minute=0, second=0, microsecond=0)
        return {
            "person": self._people[0][0] if self._people else "",
            "start": start.isoformat(),
            "end": (start + timedelta(hours=12)).isoformat(),
            "note": "",
        }

    # -- ObjectEditor ------------------------------------------------------------------------------------
    def related_loaded(self, directory: dict[str, list[Obj]]) -> None:
        self._people = people_choices(directory)
        self.rot_members.set_people(self._people)
        current = self.ov_person.currentText()
        self.ov_person.clear()
        self.ov_person.addItems([h for h, _ in self._people])
        set_combo(self.ov_person, current)

    def blank(self) -> Obj:
        return {"handle": "", "name": "", "rotations": [], "overrides": []}

    def fill(self, obj: Obj) -> None:
        self.handle.setText(obj.get("handle", ""))
        self.name.setText(obj.get("name", ""))
        self.timezone.setText(obj.get("timezone") or "")
        self.description.setText(obj.get("description") or "")
        self.rotations.set_items(obj.get("rotations") or [])
        self.overrides.set_items(obj.get("overrides") or [])
        self._week_offset = 0
        self.refresh_outlook()

    def collect_into(self, obj: Obj) -> None:
        obj["handle"] = self.handle.text().strip()
        obj["name"] = self.name.text().strip()
        if self.timezone.text().strip():
            obj["timezone"] = self.timezone.text().strip()
        obj["description"] = self.description.text()
        obj["rotations"] = self.rotations.values()
        obj["overrides"] = self.overrides.values()

    def locate(self, parts: list[str | int]) -> str | None:
        if parts and parts[0] in ("rotations", "overrides"):
            return str(parts[0])
        return super().locate(parts)

    def focus_error(self, parts: list[str | int]) -> None:
        if len(parts) >= 2 and parts[0] in ("rotations", "overrides") and isinstance(parts[1], int):
            sub = self.rotations if parts[0] == "rotations" else self.overrides
            if parts[1] < len(sub.items):
                sub.list.setCurrentRow(parts[1])

    # -- outlook -----------------------------------------------------------------------------------------
    def _shift_week(self, step: int) -> None:
        self._week_offset += step
        self.refresh_outlook()

    def refresh_outlook(self) -> None:
        handle = self.current_handle
        now = self.services.ctx.clock.now()
        tz = _zone(str(self.current.get("timezone") or "UTC"))
        local = now.astimezone(tz)
        monday = (local - timedelta(days=local.weekday())).replace(hour=0, minute=0, second=0, microsecond=0)
        week_start = (monday + timedelta(weeks=self._week_offset)).astimezone(UTC)
        self.week_label.setText(f"Week of {monday.date() + timedelta(weeks=self._week_offset)} ({tz.key})")
        if not handle:
            self.now_label.setText("On call now: — (save the schedule to see its rota)")
            self.next_label.setText("")
            self.week.show_week(week_start, tz, [])
            return

        def job(session: Any) -> tuple[list[ShiftRecord], list[ShiftRecord]]:
            current = history.schedule_outlook(session, handle, now, 4)
            week = history.schedule_outlook(session, handle, week_start, 80)
            return current, [s for s in week if s.start < week_start + timedelta(days=7)]

        def done(result: tuple[list[ShiftRecord], list[ShiftRecord]]) -> None:
            if handle != self.current_handle:
                return
            current, week = result
            in_force = [s for s in current if s.start <= now < s.end]
            upcoming = [s for s in current if s.start > now]
            fmt = "%a %d %b %H:%M"
            if in_force:
                names = ", ".join(s.name for s in in_force)
                self.now_label.setText(
                    f"On call now: {names} until {in_force[0].end.astimezone(tz).strftime(fmt)}"
                )
            else:
                self.now_label.setText("On call now: nobody")
            if upcoming:
                nxt = upcoming[0]
                self.next_label.setText(f"Next: {nxt.name} from {nxt.start.astimezone(tz).strftime(fmt)}")
            else:
                self.next_label.setText("Next: nobody scheduled")
            self.week.show_week(week_start, tz, week)
            self.outlook_loaded.emit()

        self.services.worker.submit(
            job,
            **replies(self, done, lambda e: self.now_label.setText(f"⚠ {e}")),
            what="on-call outlook",
        )
