"""SLA configs per (site, category) and the business calendars they may count in."""

from __future__ import annotations

from PySide6.QtWidgets import QSpinBox, QWidget

from console.editors.base import Obj, ObjectEditor, combo, line, parse_list, set_combo, text_list
from console.editors.people import duration_text
from console.history.records import Column

DAY_KEYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
DAY_LABELS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]


class SlaEditor(ObjectEditor):
    kind = "sla"
    title = "SLA targets"
    related_kinds = ("calendars", "policies")
    list_columns = [
        Column("Site", lambda o: o.get("site") or "(any)"),
        Column("Category", lambda o: o.get("category") or "(any)"),
        Column("Response", lambda o: duration_text(o.get("response"))),
        Column("Resolution", lambda o: duration_text(o.get("resolution"))),
    ]

    def build_form(self) -> None:
        self.site = self.add_field("site", "Site", line(placeholder="empty: any site"))
        self.category = self.add_field("category", "Category", line(placeholder="empty: any category"))
        self.response = self.add_field("response", "Respond within", line(placeholder="4h"))
        self.resolution = self.add_field("resolution", "Resolve within", line(placeholder="3d"))
        self.warning = QSpinBox()
        self.warning.setRange(0, 100)
        self.warning.setSuffix(" %")
        self.add_field("warning_percent", "Warn at", self.warning, "of the time elapsed")
        self.calendar = self.add_field("calendar", "Count in calendar", combo([""]))
        self.breach_policy = self.add_field("breach_policy", "On breach, escalate with", combo([""]))

    def key_widgets(self) -> list[QWidget]:
        return [self.site, self.category]

    def related_loaded(self, directory: dict[str, list[Obj]]) -> None:
        for box, kind in ((self.calendar, "calendars"), (self.breach_policy, "policies")):
            current = box.currentText()
            box.clear()
            box.addItems([""] + [str(o.get("name", "")) for o in directory.get(kind, [])])
            set_combo(box, current)

    def blank(self) -> Obj:
        return {"site": "", "category": "", "response": "24h", "resolution": "7d", "warning_percent": 80}

    def fill(self, obj: Obj) -> None:
        self.site.setText(obj.get("site") or "")
        self.category.setText(obj.get("category") or "")
        self.response.setText(duration_text(obj.get("response", "24h")))
        self.resolution.setText(duration_text(obj.get("resolution", "7d")))
        self.warning.setValue(int(obj.get("warning_percent", 80)))
        set_combo(self.calendar, obj.get("calendar") or "")
        set_combo(self.breach_policy, obj.get("breach_policy") or "")

    def collect_into(self, obj: Obj) -> None:
        for alias in ("response_minutes", "resolution_minutes", "response_hours", "resolution_hours"):
            obj.pop(alias, None)
        obj["site"] = self.site.text().strip()
        obj["category"] = self.category.text().strip()
        obj["response"] = self.response.text().strip()
        obj["resolution"] = self.resolution.text().strip()
        obj["warning_percent"] = self.warning.value()
        obj["calendar"] = self.calendar.currentText() or None
        obj["breach_policy"] = self.breach_policy.currentText() or None


class CalendarsEditor(ObjectEditor):
    kind = "calendars"
    title = "Business calendars"
    handle_key = "name"
    list_columns = [
        Column("Name", lambda o: o.get("name", "")),
        Column("Time zone", lambda o: o.get("timezone", "")),
        Column("Holidays", lambda o: o.get("holiday_country") or ""),
    ]

    def build_form(self) -> None:
        self.name = self.add_field("name", "Name", line())
        self.timezone = self.add_field("timezone", "Time zone", line(placeholder="Africa/Johannesburg"))
        self.hours = {}
        for key, label in zip(DAY_KEYS, DAY_LABELS, strict=True):
            self.hours[key] = self.add_field(
                f"hours.{key}", label, line(placeholder="08:00-17:00 (empty: closed)")
            )
        self.country = self.add_field("holiday_country", "Public holidays of", line(placeholder="ZA"))
        self.subdivision = self.add_field("holiday_subdivision", "Subdivision", line())
        self.extra = self.add_field(
            "extra_holidays", "Extra holidays", line(placeholder="2026-12-24, 2026-12-31")
        )

    def key_widgets(self) -> list[QWidget]:
        return [self.name]

    def blank(self) -> Obj:
        return {"name": "", "hours": {k: (["08:00-17:00"] if i < 5 else []) for i, k in enumerate(DAY_KEYS)}}

    def fill(self, obj: Obj) -> None:
        self.name.setText(obj.get("name", ""))
        self.timezone.setText(obj.get("timezone") or "")
        hours = obj.get("hours") or {}
        for key, edit in self.hours.items():
            edit.setText(text_list(hours.get(key) or []))
        self.country.setText(obj.get("holiday_country") or "")
        self.subdivision.setText(obj.get("holiday_subdivision") or "")
        self.extra.setText(text_list(obj.get("extra_holidays") or []))

    def collect_into(self, obj: Obj) -> None:
        obj["name"] = self.name.text().strip()
        if self.timezone.text().strip():
            obj["timezone"] = self.timezone.text().strip()
        obj["hours"] = {key: parse_list(edit.text()) for key, edit in self.hours.items()}
        obj["holiday_country"] = self.country.text().strip() or None
        obj["holiday_subdivision"] = self.subdivision.text().strip() or None
        obj["extra_holidays"] = parse_list(self.extra.text())
