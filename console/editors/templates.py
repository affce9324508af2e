"""Message templates per kind, channel and language, with versions and an active flag.

As the supervisor types, the template is rendered with the kind's sample data (engine.templates, in its
sandbox) and the preview shows the result, the problems `validate_template` finds and, for SMS and WhatsApp,
the encoding and how many segments the message costs. Rendering a template reads no database, so it runs on
the GUI thread, debounced. Save refuses a template the engine finds problems with.
"""

from __future__ import annotations

import contextlib

from PySide6.QtCore import QTimer, Signal
from PySide6.QtGui import QFont, QFontDatabase
from PySide6.QtWidgets import (
    QCheckBox,
    QGroupBox,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from console.editors.base import Obj, ObjectEditor, combo, line, set_combo
from console.history.records import Column
from engine import templates as engine_templates
from engine.errors import ValidationError
from engine.models import Channel

PREVIEW_DELAY_MS = 150


def _mono() -> QFont:
    return QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont)


class TemplatesEditor(ObjectEditor):
    kind = "templates"
    title = "Message templates"
    list_columns = [
        Column("Kind", lambda o: o.get("kind", "")),
        Column("Channel", lambda o: o.get("channel", "")),
        Column("Lang", lambda o: o.get("language", "")),
        Column("Version", lambda o: o.get("version", 1), numeric=True),
        Column("Active", lambda o: o.get("active", True)),
    ]

    preview_updated = Signal()

    def build_form(self) -> None:
        self.template_kind = self.add_field("kind", "Kind", combo(list(engine_templates.KINDS)))
        self.channel = self.add_field("channel", "Channel", combo([c.value for c in Channel]))
        self.language = self.add_field(
            "language", "Language", combo(list(engine_templates.SHIPPED_LANGUAGES), editable=True)
        )
        self.version = QLabel("1")
        self.version.setObjectName("templateVersion")
        self.new_version = QPushButton("New version from this one")
        self.add_field("version", "Version", self.version)
        self.form.addRow("", self.new_version)
        self.active = self.add_field("active", "Active", QCheckBox("the highest active version is used"))
        self.subject = self.add_field("subject", "Subject (e-mail)", line())
        self.body = QPlainTextEdit()
        self.body.setFont(_mono())
        self.body.setMinimumHeight(110)
        self.add_field("body", "Body", self.body)
        self.body_html = QPlainTextEdit()
        self.body_html.setFont(_mono())
        self.body_html.setMaximumHeight(90)
        self.body_html.setPlaceholderText("optional HTML body for e-mail")
        self.add_field("body_html", "HTML body", self.body_html)
        self.content_sid = self.add_field(
            "whatsapp_content_sid", "WhatsApp content SID", line(placeholder="HX… (outside the 24 h window)")
        )

        box = QGroupBox("Preview with sample data")
        layout = QVBoxLayout(box)
        self.variables = QLabel()
        self.variables.setWordWrap(True)
        self.variables.setObjectName("templateVariables")
        self.preview_subject = QLabel()
        self.preview = QTextBrowser()
        self.preview.setMinimumHeight(90)
        self.sms_label = QLabel()
        self.sms_label.setObjectName("smsInfo")
        self.problems = QLabel()
        self.problems.setObjectName("templateProblems")
        self.problems.setWordWrap(True)
        self.problems.setStyleSheet("color: #b00020;")
        layout.addWidget(self.variables)
        layout.addWidget(self.preview_subject)
        layout.addWidget(self.preview)
        layout.addWidget(self.sms_label)
        layout.addWidget(self.problems)
        self.form.addRow(box)

        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(PREVIEW_DELAY_MS)
        self._timer.timeout.connect(self.update_preview)
        for signal in (
            self.body.textChanged,
            self.body_html.textChanged,
            self.subject.textChanged,
            self.template_kind.currentTextChanged,
            self.channel.currentTextChanged,
        ):
            signal.connect(lambda *_a: self._timer.start())
        self.new_version.clicked.connect(self.start_new_version)
        self.new_version.setEnabled(self.editable)
        self.track(self.body, self.body_html)

    def key_widgets(self) -> list[QWidget]:
        return [self.template_kind, self.channel, self.language]

    def blank(self) -> Obj:
        return {"kind": "page", "channel": "sms", "language": "en", "version": 1, "active": True, "body": ""}

    def fill(self, obj: Obj) -> None:
        set_combo(self.template_kind, obj.get("kind") or "page")
        set_combo(self.channel, obj.get("channel") or "sms")
        set_combo(self.language, obj.get("language") or "en")
        self.version.setText(str(obj.get("version", 1)))
        self.active.setChecked(bool(obj.get("active", True)))
        self.subject.setText(obj.get("subject") or "")
        self.body.setPlainText(obj.get("body") or "")
        self.body_html.setPlainText(obj.get("body_html") or "")
        self.content_sid.setText(obj.get("whatsapp_content_sid") or "")
        self.new_version.setEnabled(self.editable and bool(self.current_handle))
        self.update_preview()

    def collect_into(self, obj: Obj) -> None:
        obj["kind"] = self.template_kind.currentText()
        obj["channel"] = self.channel.currentText()
        obj["language"] = self.language.currentText().strip() or "en"
        obj["version"] = int(self.version.text())
        obj["active"] = self.active.isChecked()
        obj["subject"] = self.subject.text()
        obj["body"] = self.body.toPlainText()
        obj["body_html"] = self.body_html.toPlainText() or None
        obj["whatsapp_content_sid"] = self.content_sid.text().strip() or None
        obj["created_by"] = self.services.actor
        problems = engine_templates.validate_template(
            obj["kind"], obj["body"], obj["subject"], obj["body_html"]
        )
        unspoken = engine_templates.voice_language_problem(obj["channel"], obj["language"])
        if unspoken:
            problems.append(f"language: {unspoken}")
        if problems:
            raise _problems_error(problems)

    def start_new_version(self) -> None:
        """The same kind/channel/language with the next free version number, as a new unsaved template."""
        obj = self.collect_unchecked()
        same = [
            int(o.get("version", 1))
            for o in self.objects()
            if (o.get("kind"), o.get("channel"), o.get("language"))
            == (obj["kind"], obj["channel"], obj["language"])
        ]
        obj["version"] = max([*same, int(obj.get("version", 1))]) + 1
        obj["active"] = True
        self.list_view.clearSelection()
        self.load_object({})
        self.current = {}
        self.fill(obj)
        self.info.setText(f"New version {obj['version']}: not saved yet.")

    def collect_unchecked(self) -> Obj:
        obj = dict(self.current)
        with contextlib.suppress(ValidationError):
            self.collect_into(obj)
        return obj

    # -- preview -------------------------------------------------------------------------------------
    def update_preview(self) -> None:
        kind = self.template_kind.currentText()
        body = self.body.toPlainText()
        subject = self.subject.text()
        html = self.body_html.toPlainText() or None
        sample = engine_templates.sample_context(kind)
        self.variables.setText("Variables: " + ", ".join("{{ " + k + " }}" for k in sample))
        problems = engine_templates.validate_template(kind, body, subject, html) if body.strip() else []
        rendered = ""
        if body.strip() and not problems:
            try:
                rendered = engine_templates.render_string(body, sample)
                rendered_subject = engine_templates.render_string(subject, sample) if subject else ""
            except ValidationError as exc:
                problems = [str(exc)]
                rendered_subject = ""
            self.preview_subject.setText(f"Subject: {rendered_subject}" if rendered_subject else "")
        else:
            self.preview_subject.setText("")
        self.preview.setPlainText(rendered)
        channel = self.channel.currentText()
        text = rendered if rendered else body
        if channel in ("sms", "whatsapp"):
            encoding, segments, chars = engine_templates.sms_info(text)
            cost = "" if channel == "sms" else " (WhatsApp is billed per message)"
            self.sms_label.setText(
                f"{encoding} · {chars} characters · {segments} SMS segment{'s' if segments != 1 else ''}{cost}"
            )
        else:
            self.sms_label.setText("")
        self.problems.setText("\n".join("⚠ " + p for p in problems))
        self.preview_updated.emit()


def _problems_error(problems: list[str]) -> ValidationError:
    first = problems[0]
    field, _, _message = first.partition(": ")
    error = ValidationError(
        "\n".join(problems), field=field if field in ("body", "subject", "body_html") else ""
    )
    return error


__all__ = ["TemplatesEditor"]
