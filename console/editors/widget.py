"""The configuration editors in one tabbed widget, with YAML import and export of the whole configuration.

Import and export reuse the engine's file format (engine.config_io import_text / export_text): what a
supervisor exports here imports on another site or through `watchkeeper config import`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QMessageBox,
    QPushButton,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from console.editors.accounts import AccountsEditor
from console.editors.base import ObjectEditor, config_io
from console.editors.people import PeopleEditor
from console.editors.policies import PoliciesEditor
from console.editors.schedules import SchedulesEditor
from console.editors.sla import CalendarsEditor, SlaEditor
from console.editors.teams import TeamsEditor
from console.editors.templates import TemplatesEditor
from console.history.records import replies
from console.services import ConsoleServices, PermissionDenied
from engine.permissions import Action

EDITORS: tuple[type[ObjectEditor], ...] = (
    PoliciesEditor,
    PeopleEditor,
    TeamsEditor,
    SchedulesEditor,
    TemplatesEditor,
    SlaEditor,
    CalendarsEditor,
)


class EditorsWidget(QWidget):
    imported = Signal(dict)  # the engine's import summary
    exported = Signal(str)  # the file written
    failed = Signal(str)

    def __init__(self, services: ConsoleServices, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.services = services
        self.tabs = QTabWidget()
        self.editors: dict[str, ObjectEditor] = {}
        # The accounts tab is an administrator's alone; nobody else sees it.
        kinds = (*EDITORS, AccountsEditor) if services.can(Action.MANAGE_ACCOUNTS) else EDITORS
        for cls in kinds:
            editor = cls(services)
            self.editors[cls.kind] = editor
            self.tabs.addTab(editor, cls.title)
        self._loaded: set[str] = set()

        self.import_button = QPushButton("Import YAML…")
        self.export_button = QPushButton("Export YAML…")
        self.import_button.setEnabled(services.can(Action.EDIT_CONFIGURATION))
        self.status = QLabel()
        self.status.setWordWrap(True)
        if not services.can(Action.EDIT_CONFIGURATION):
            self.status.setText("Read-only: signed in as an operator. Supervisors can edit and import.")
        bar = QHBoxLayout()
        bar.addWidget(self.status, 1)
        bar.addWidget(self.import_button)
        bar.addWidget(self.export_button)
        layout = QVBoxLayout(self)
        layout.addLayout(bar)
        layout.addWidget(self.tabs, 1)

        self.tabs.currentChanged.connect(self._tab_shown)
        self.import_button.clicked.connect(self._choose_import)
        self.export_button.clicked.connect(self._choose_export)
        services.config_changed.connect(self._config_changed)
        self._tab_shown(0)

    def editor(self, kind: str) -> ObjectEditor:
        return self.editors[kind]

    def _tab_shown(self, index: int) -> None:
        # Lazily: an editor loads its objects the first time it is shown.
        editor = self.tabs.widget(index)
        if isinstance(editor, ObjectEditor) and editor.kind not in self._loaded:
            self._loaded.add(editor.kind)
            editor.reload()

    def _config_changed(self, kind: str) -> None:
        # Pickers in other editors (people in teams, policies in SLA…) must see the change.
        for other in self.editors.values():
            if other.kind != kind and other.kind in self._loaded and kind in other.related_kinds:
                other.reload()

    # -- import / export -----------------------------------------------------------------------------
    def _choose_import(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Import configuration", "", "YAML or JSON (*.yaml *.yml *.json)"
        )
        if path:
            self.import_file(Path(path))

    def _choose_export(self) -> None:
        path, _ = QFileDialog.getSaveFileName(
            self, "Export configuration", "watchkeeper-config.yaml", "YAML (*.yaml)"
        )
        if path:
            self.export_file(Path(path))

    def import_file(self, path: Path) -> None:
        try:
            self.services.require(Action.EDIT_CONFIGURATION)
        except PermissionDenied as exc:
            self._fail(str(exc))
            return
        # The engine checks again (and that accounts in the file need an administrator).
        ctx, actor = self.services.ctx, self.services.identity

        def job() -> dict[str, Any]:
            text = path.read_text(encoding="utf-8")
            return dict(config_io().import_text(ctx, text, path.name, actor))

        self.status.setText(f"Importing {path.name}…")
        self.services.worker.call(
            job,
            **replies(self, self._imported, lambda e: self._fail(str(e))),
            what="import",
        )

    def _imported(self, summary: dict[str, Any]) -> None:
        self.status.setText("Imported. " + _summary_text(summary))
        for kind in self._loaded:
            self.editors[kind].reload()
        self.services.config_changed.emit("all")
        self.imported.emit(summary)

    def export_file(self, path: Path) -> None:
        ctx, by = self.services.ctx, self.services.identity

        def job() -> str:
            # Accounts (never passwords) are in the file only for someone who may manage them.
            text = config_io().export_text(ctx, by=by)
            path.write_text(text, encoding="utf-8")
            return str(path)

        self.services.worker.call(
            job,
            **replies(self, self._exported, lambda e: self._fail(str(e))),
            what="export",
        )

    def _exported(self, path: str) -> None:
        self.status.setText(f"Exported to {path}")
        self.exported.emit(path)

    def _fail(self, message: str) -> None:
        self.status.setText("⚠ " + message.splitlines()[0])
        self.failed.emit(message)
        if self.isVisible():
            QMessageBox.warning(self, "Configuration", message)


def _summary_text(summary: dict[str, Any]) -> str:
    parts = []
    for key in ("created", "updated", "unchanged"):
        value = summary.get(key)
        if isinstance(value, int):
            parts.append(f"{value} {key}")
        elif isinstance(value, dict):
            parts.append(f"{sum(int(v) for v in value.values())} {key}")
    warnings = summary.get("warnings") or []
    if warnings:
        parts.append(f"{len(warnings)} warning{'s' if len(warnings) != 1 else ''}")
    return ", ".join(parts)
