"""People and their contact methods. Phone numbers are checked and normalised to E.164 by the engine when
saved; its message appears under the field."""

from __future__ import annotations

from typing import Any

from PySide6.QtWidgets import QCheckBox, QHBoxLayout, QWidget

from console.editors.base import Obj, ObjectEditor, combo, line, set_combo
from console.history.records import Column
from engine.models import Channel

CHANNELS = [c.value for c in Channel]
LANGUAGES = ["en", "zu", "af"]


def duration_text(value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        from engine.contacts import format_duration

        return format_duration(value)
    return "" if value is None else str(value)


class ChannelChecks(QWidget):
    """A row of channel check boxes (fallback or disabled channels)."""

    def __init__(self) -> None:
        super().__init__()
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        self.boxes = {c: QCheckBox(c) for c in CHANNELS}
        for box in self.boxes.values():
            row.addWidget(box)
        row.addStretch(1)

    def set_values(self, values: list[Any]) -> None:
        for name, box in self.boxes.items():
            box.setChecked(name in (values or []))

    def values(self) -> list[str]:
        return [name for name, box in self.boxes.items() if box.isChecked()]

    def setEnabled(self, enabled: bool) -> None:
        for box in self.boxes.values():
            box.setEnabled(enabled)


class PeopleEditor(ObjectEditor):
    kind = "people"
    title = "People"
    list_columns = [
        Column("Handle", lambda o: o.get("handle", "")),
        Column("Name", lambda o: o.get("name", "")),
        Column("Phone", lambda o: o.get("phone") or ""),
        Column("Active", lambda o: o.get("active", True)),
    ]

    def build_form(self) -> None:
        self.handle = self.add_field("handle", "Handle", line(placeholder="e.g. thandi"))
        self.name = self.add_field("name", "Name", line())
        self.phone = self.add_field("phone", "Mobile (E.164)", line(placeholder="+27821234567"))
        self.whatsapp = self.add_field("whatsapp", "WhatsApp", line(placeholder="empty: same as mobile"))
        self.email = self.add_field("email", "E-mail", line())
        self.preferred = self.add_field("preferred_channel", "Preferred channel", combo(CHANNELS))
        self.fallback = ChannelChecks()
        self.add_field(
            "fallback_channels", "Fallback channels", self.fallback, "tried in order after the preferred one"
        )
        self.disabled = ChannelChecks()
        self.add_field("disabled_channels", "Disabled channels", self.disabled)
        self.confirm_wait = self.add_field("confirm_wait", "Wait for confirmation", line(placeholder="15m"))
        self.fallback_wait = self.add_field("fallback_wait", "Wait on each fallback", line(placeholder="5m"))
        self.language = self.add_field("language", "Language", combo(LANGUAGES, editable=True))
        self.timezone = self.add_field("timezone", "Time zone", line(placeholder="Africa/Johannesburg"))
        self.quiet_start = self.add_field("quiet_start", "Quiet hours from", line(placeholder="22:00"))
        self.quiet_end = self.add_field("quiet_end", "Quiet hours until", line(placeholder="06:00"))
        self.active = self.add_field("active", "Active", QCheckBox("can be paged"))

    def key_widgets(self) -> list[QWidget]:
        return [self.handle]

    def locate(self, parts: list[str | int]) -> str | None:
        if parts and parts[0] == "quiet_hours":
            return "quiet_end" if "end" in parts else "quiet_start"
        return super().locate(parts)

    def blank(self) -> Obj:
        return {"active": True, "preferred_channel": "sms", "language": "en"}

    def fill(self, obj: Obj) -> None:
        self.handle.setText(obj.get("handle", ""))
        self.name.setText(obj.get("name", ""))
        self.phone.setText(obj.get("phone") or "")
        self.whatsapp.setText(obj.get("whatsapp") or "")
        self.email.setText(obj.get("email") or "")
        set_combo(self.preferred, obj.get("preferred_channel") or "sms")
        self.fallback.set_values(obj.get("fallback_channels") or [])
        self.disabled.set_values(obj.get("disabled_channels") or [])
        self.confirm_wait.setText(duration_text(obj.get("confirm_wait")))
        self.fallback_wait.setText(duration_text(obj.get("fallback_wait")))
        set_combo(self.language, obj.get("language") or "en")
        self.timezone.setText(obj.get("timezone") or "")
        quiet = obj.get("quiet_hours") if isinstance(obj.get("quiet_hours"), dict) else {}
        self.quiet_start.setText(str(quiet.get("start") or obj.get("quiet_start") or ""))
        self.quiet_end.setText(str(quiet.get("end") or obj.get("quiet_end") or ""))
        self.active.setChecked(bool(obj.get("active", True)))

    def collect_into(self, obj: Obj) -> None:
        obj["handle"] = self.handle.text().strip()
        obj["name"] = self.name.text().strip()
        obj["phone"] = self.phone.text().strip() or None
        obj["whatsapp"] = self.whatsapp.text().strip() or None
        obj["email"] = self.email.text().strip() or None
        obj["preferred_channel"] = self.preferred.currentText()
        obj["fallback_channels"] = self.fallback.values()
        obj["disabled_channels"] = self.disabled.values()
        for key, edit in (("confirm_wait", self.confirm_wait), ("fallback_wait", self.fallback_wait)):
            if edit.text().strip():
                obj[key] = edit.text().strip()
            else:
                obj.pop(key, None)
        obj["language"] = self.language.currentText().strip() or "en"
        if self.timezone.text().strip():
            obj["timezone"] = self.timezone.text().strip()
        else:
            obj.pop("timezone", None)
        obj.pop("quiet_hours", None)
        obj["quiet_start"] = self.quiet_start.text().strip() or None
        obj["quiet_end"] = self.quiet_end.text().strip() or None
        obj["active"] = self.active.isChecked()


__all__ = ["PeopleEditor"]
