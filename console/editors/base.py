"""The frame every configuration editor shares: a filterable list of objects beside a form.

Objects travel as the dicts of the YAML import format (engine.config_io): the list is
`export_objects(session, kind)` run on the worker; Save sends the form's dict to `save_objects(ctx, kind,
[obj], actor)` on the worker, where the engine validates it, writes it and audits it. A form starts from a
copy of the object it loaded and overwrites only the keys it edits, so fields a form does not show survive a
round trip. The editor holds no rule of its own: a ValidationError from the engine is shown next to the field
its path names (or above the form when no field matches). Operators see the same forms read-only; the
engine's rule book (engine.permissions) decides, and checks again when a save or delete reaches the engine.
"""

from __future__ import annotations

import copy
import importlib
import re
from collections.abc import Callable
from types import ModuleType
from typing import Any

from PySide6.QtCore import QSortFilterProxyModel, Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QFormLayout,
    QFrame,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPlainTextEdit,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QSplitter,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from console.history.records import Column, RecordTableModel, replies
from console.services import ConsoleServices, PermissionDenied
from engine.errors import ValidationError
from engine.permissions import Action, least_role

Obj = dict[str, Any]

ERROR_STYLE = "color: #b00020;"
BANNER_STYLE = "background: #fdecea; color: #8a1c1c; border: 1px solid #e0a0a0; padding: 4px;"
_INDEX_RE = re.compile(r"\[(\d+)\]")


def config_io() -> ModuleType:
    """engine.config_io, imported when first used (the editors load even before it exists)."""
    return importlib.import_module("engine.config_io")


def split_path(path: str) -> list[str | int]:
    """'policies[0].levels[1].delay' -> ['policies', 0, 'levels', 1, 'delay']."""
    parts: list[str | int] = []
    for piece in path.replace("/", ".").split("."):
        if not piece:
            continue
        name = _INDEX_RE.split(piece)
        for i, token in enumerate(name):
            if not token:
                continue
            parts.append(int(token) if i % 2 else token)
    return parts


def error_path(exc: ValidationError) -> str:
    """The field path a ValidationError names: its `field`, else a path-looking prefix of its message."""
    if exc.field:
        return exc.field
    text = str(exc)
    head, sep, _rest = text.partition(": ")
    if sep and " " not in head:
        return head
    return exc.where or ""


def text_list(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return "" if value is None else str(value)


def parse_list(text: str) -> list[str]:
    return [part.strip() for part in text.replace("\n", ",").split(",") if part.strip()]


class ObjectEditor(QWidget):
    """One kind of configuration object: subclasses build the form, load a dict into it and collect it."""

    kind = ""
    title = ""
    handle_key = "handle"
    list_columns: list[Column[Obj]] = []

    loaded = Signal()  # the list arrived
    saved = Signal(str)  # handle of the object saved
    save_failed = Signal(str)  # the message shown
    deleted = Signal(str)

    # What saving and deleting need (accounts: MANAGE_ACCOUNTS).
    action = Action.EDIT_CONFIGURATION

    def __init__(self, services: ConsoleServices, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.services = services
        self.editable = services.can(self.action)
        self.current: Obj = {}
        self.current_handle: str | None = None
        self._field_errors: dict[str, QLabel] = {}
        self._inputs: list[QWidget] = []

        self.model: RecordTableModel[Obj] = RecordTableModel(self.list_columns, self)
        self.proxy = QSortFilterProxyModel(self)
        self.proxy.setSourceModel(self.model)
        self.proxy.setFilterCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
        self.proxy.setFilterKeyColumn(-1)
        self.filter = QLineEdit()
        self.filter.setPlaceholderText(f"Filter {self.title.lower()}")
        self.filter.setClearButtonEnabled(True)
        self.filter.textChanged.connect(self.proxy.setFilterFixedString)
        self.list_view = QTableView()
        self.list_view.setModel(self.proxy)
        self.list_view.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.list_view.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.list_view.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.list_view.verticalHeader().setVisible(False)
        self.list_view.horizontalHeader().setStretchLastSection(True)
        self.list_view.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.list_view.selectionModel().currentRowChanged.connect(lambda cur, _p: self._row_chosen(cur.row()))

        self.new_button = QPushButton("&New")
        self.delete_button = QPushButton("Delete")
        list_buttons = QHBoxLayout()
        list_buttons.addWidget(self.new_button)
        list_buttons.addWidget(self.delete_button)
        list_buttons.addStretch(1)
        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(0, 0, 0, 0)
        left_layout.addWidget(self.filter)
        left_layout.addWidget(self.list_view, 1)
        left_layout.addLayout(list_buttons)

        self.banner = QLabel()
        self.banner.setObjectName("editorError")
        self.banner.setWordWrap(True)
        self.banner.setStyleSheet(BANNER_STYLE)
        self.banner.hide()
        self.info = QLabel()
        self.info.setObjectName("editorInfo")
        self.info.setWordWrap(True)
        self.form_host = QWidget()
        self.form = QFormLayout(self.form_host)
        self.form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.ExpandingFieldsGrow)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setWidget(self.form_host)

        self.revert_button = QPushButton("Revert")
        self.save_button = QPushButton("&Save")
        self.save_button.setDefault(True)
        form_buttons = QHBoxLayout()
        form_buttons.addWidget(self.info, 1)
        form_buttons.addWidget(self.revert_button)
        form_buttons.addWidget(self.save_button)
        right = QWidget()
        right_layout = QVBoxLayout(right)
        right_layout.setContentsMargins(0, 0, 0, 0)
        right_layout.addWidget(self.banner)
        right_layout.addWidget(scroll, 1)
        right_layout.addLayout(form_buttons)

        self.splitter = splitter = QSplitter()
        splitter.addWidget(left)
        splitter.addWidget(right)
        splitter.setStretchFactor(0, 1)
        splitter.setStretchFactor(1, 3)
        splitter.setSizes([300, 900])
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(splitter)

        self.new_button.clicked.connect(self.new_object)
        self.delete_button.clicked.connect(self.delete_current)
        self.revert_button.clicked.connect(lambda: self.load_object(self.current))
        self.save_button.clicked.connect(self.save)

        self.build_form()
        self.load_object(self.blank())
        self._apply_role()

    # -- for subclasses --------------------------------------------------------------------------------
    def build_form(self) -> None:
        raise NotImplementedError

    def blank(self) -> Obj:
        return {}

    def fill(self, obj: Obj) -> None:
        """Show `obj` in the form."""
        raise NotImplementedError

    def collect_into(self, obj: Obj) -> None:
        """Write the form's values into `obj` (a copy of the object loaded)."""
        raise NotImplementedError

    def locate(self, parts: list[str | int]) -> str | None:
        """The registered field key for an error path (after the kind prefix is stripped)."""
        for size in range(len(parts), 0, -1):
            key = ".".join(str(p) for p in parts[:size])
            if key in self._field_errors:
                return key
        names = [p for p in parts if isinstance(p, str)]
        if names and names[-1] in self._field_errors:
            return names[-1]
        return None

    def related_loaded(self, directory: dict[str, list[Obj]]) -> None:
        """Other kinds' objects (people, teams, schedules) for pickers; override to use them."""

    related_kinds: tuple[str, ...] = ()

    # -- form helpers ----------------------------------------------------------------------------------
    def add_field(self, key: str, label: str, widget: QWidget, hint: str = "") -> QWidget:
        """A form row: the input, and under it a line for the engine's message about this field."""
        error = QLabel()
        error.setObjectName(f"error:{key}")
        error.setStyleSheet(ERROR_STYLE)
        error.setWordWrap(True)
        error.hide()
        box = QWidget()
        column = QVBoxLayout(box)
        column.setContentsMargins(0, 0, 0, 0)
        column.setSpacing(1)
        column.addWidget(widget)
        if hint:
            hint_label = QLabel(hint)
            hint_label.setStyleSheet("color: palette(mid);")
            column.addWidget(hint_label)
        column.addWidget(error)
        self.form.addRow(label, box)
        self._field_errors[key] = error
        self.track(widget)
        return widget

    def register_error(self, key: str, label: QLabel) -> None:
        label.setStyleSheet(ERROR_STYLE)
        label.setWordWrap(True)
        label.hide()
        self._field_errors[key] = label

    def track(self, *widgets: QWidget) -> None:
        """Inputs that an operator must not change."""
        self._inputs.extend(widgets)
        if not self.editable:
            for w in widgets:
                _make_read_only(w)

    def field_error(self, key: str) -> str:
        label = self._field_errors.get(key)
        return label.text() if label is not None and not label.isHidden() else ""

    # -- list ------------------------------------------------------------------------------------------
    def handle_of(self, obj: Obj) -> str:
        """The object's key as the engine names it (handle, name, "site/category", "kind/channel/lang/vN")."""
        if not obj:
            return ""
        try:
            return str(config_io().object_key(self.kind, obj))
        except (ImportError, ValueError, TypeError):
            return str(obj.get(self.handle_key) or "")

    def reload(self) -> None:
        kinds = (self.kind, *self.related_kinds)

        def job(session: Any) -> dict[str, list[Obj]]:
            io = config_io()
            return {k: list(io.export_objects(session, k)) for k in kinds}

        self.services.worker.submit(
            job,
            **replies(self, self._arrived, self._load_failed),
            what=f"load {self.title}",
        )

    def _arrived(self, directory: dict[str, list[Obj]]) -> None:
        self.related_loaded(directory)
        self.model.set_rows(directory.get(self.kind, []))
        if self.current_handle:
            self.select_handle(self.current_handle)
        self.loaded.emit()

    def _load_failed(self, exc: Exception) -> None:
        self.show_banner(f"Could not load {self.title.lower()}: {exc}")
        self.loaded.emit()

    def objects(self) -> list[Obj]:
        return self.model.rows()

    def select_handle(self, handle: str) -> bool:
        for row, obj in enumerate(self.model.rows()):
            if self.handle_of(obj) == handle:
                index = self.proxy.mapFromSource(self.model.index(row, 0))
                if index.isValid():
                    self.list_view.setCurrentIndex(index)
                self.load_object(obj)
                return True
        return False

    def _row_chosen(self, proxy_row: int) -> None:
        if proxy_row < 0:
            return
        source = self.proxy.mapToSource(self.proxy.index(proxy_row, 0))
        if source.isValid():
            self.load_object(self.model.record(source.row()))

    def new_object(self) -> None:
        self.list_view.clearSelection()
        self.current_handle = None
        self.load_object(self.blank())

    # -- load / save -----------------------------------------------------------------------------------
    def load_object(self, obj: Obj) -> None:
        self.current = copy.deepcopy(obj)
        handle = self.handle_of(obj) if obj else ""
        self.current_handle = handle or None
        self.clear_errors()
        self.fill(copy.deepcopy(obj))
        self.delete_button.setEnabled(self.editable and bool(handle))
        # Saving upserts by key, so the key of an existing object is fixed (a new object gets a new key).
        for widget in self.key_widgets():
            if isinstance(widget, QLineEdit):
                widget.setReadOnly(bool(handle) or not self.editable)
            else:
                widget.setEnabled(not handle and self.editable)

    def key_widgets(self) -> list[QWidget]:
        """The inputs that make up the object's key."""
        return []

    def collect(self) -> Obj:
        obj = copy.deepcopy(self.current)
        self.collect_into(obj)
        return obj

    def clear_errors(self) -> None:
        self.banner.hide()
        self.banner.clear()
        for label in self._field_errors.values():
            label.clear()
            label.hide()

    def show_banner(self, text: str) -> None:
        self.banner.setText("⚠ " + text)
        self.banner.show()

    def show_error(self, exc: BaseException) -> str:
        """Put the engine's message next to the field it names (and above the form)."""
        message = str(exc)
        if isinstance(exc, ValidationError):
            # A refused save lists every problem (`issues`, each with its field path): each goes next to
            # its field; a plain ValidationError names one field.
            issues = getattr(exc, "issues", None)
            pairs = (
                [(str(i.path), str(i.message)) for i in issues]
                if issues
                else [(error_path(exc), _short(exc))]
            )
            focused = False
            for path, text in pairs:
                parts = split_path(path)
                if parts and parts[0] == self.kind:
                    parts = parts[1:]
                if parts and isinstance(parts[0], int):
                    parts = parts[1:]
                key = self.locate(parts) if parts else None
                if key is None:
                    continue
                if not focused:
                    self.focus_error(parts)
                    focused = True
                label = self._field_errors[key]
                label.setText(text if label.isHidden() else f"{label.text()}\n{text}")
                label.show()
        self.show_banner(message)
        return message

    def focus_error(self, parts: list[str | int]) -> None:
        """Bring the part of the form an error is about into view (a policy level, a rotation)."""

    def save(self) -> None:
        self.clear_errors()
        try:
            self.services.require(self.action)
        except PermissionDenied as exc:
            self.save_failed.emit(self.show_error(exc))
            return
        try:
            obj = self.collect()
        except ValidationError as exc:
            self.save_failed.emit(self.show_error(exc))
            return
        # The engine checks the permission again, against the account as it is now (engine.config_io).
        ctx, actor, kind = self.services.ctx, self.services.identity, self.kind
        self.info.setText("Saving…")
        self.save_button.setEnabled(False)
        self.services.worker.call(
            lambda: config_io().save_objects(ctx, kind, [obj], actor),
            **replies(self, lambda _r: self._saved(obj), self._save_error),
            what=f"save {self.title}",
        )

    def _saved(self, obj: Obj) -> None:
        self.save_button.setEnabled(self.editable)
        handle = self.handle_of(obj)
        self.current = copy.deepcopy(obj)
        self.current_handle = handle
        self.info.setText(f"Saved {handle}.")
        self.services.config_changed.emit(self.kind)
        self.reload()
        self.saved.emit(handle)

    def _save_error(self, exc: Exception) -> None:
        self.save_button.setEnabled(self.editable)
        self.info.setText("Not saved.")
        self.save_failed.emit(self.show_error(exc))

    def delete_current(self) -> None:
        handle = self.current_handle
        if not handle:
            return
        try:
            self.services.require(self.action)
        except PermissionDenied as exc:
            self.show_error(exc)
            return
        answer = QMessageBox.question(self, f"Delete {handle}", f"Delete {handle}? This cannot be undone.")
        if answer != QMessageBox.StandardButton.Yes:
            return
        self.delete_handle(handle)

    def delete_handle(self, handle: str) -> None:
        ctx, actor, kind = self.services.ctx, self.services.identity, self.kind

        def done(_r: Any) -> None:
            self.info.setText(f"Deleted {handle}.")
            self.services.config_changed.emit(kind)
            self.new_object()
            self.reload()
            self.deleted.emit(handle)

        self.services.worker.call(
            lambda: config_io().delete_object(ctx, kind, handle, actor),
            **replies(self, done, self.show_error),
            what=f"delete {handle}",
        )

    def _apply_role(self) -> None:
        for button in (self.new_button, self.delete_button, self.save_button, self.revert_button):
            button.setEnabled(self.editable)
        if not self.editable:
            self.info.setText(
                f"Read-only: signed in as {self.services.operator.role}; "
                f"{least_role(self.action)}s and above edit."
            )


def _short(exc: BaseException) -> str:
    """The message without its path prefix (the label already sits next to the field)."""
    text = str(exc)
    if isinstance(exc, ValidationError):
        prefix = ": ".join(p for p in (exc.where, exc.field) if p)
        if prefix and text.startswith(prefix + ": "):
            return text[len(prefix) + 2 :]
    return text


def _make_read_only(widget: QWidget) -> None:
    if isinstance(widget, QLineEdit | QPlainTextEdit):
        widget.setReadOnly(True)
    elif isinstance(widget, QComboBox | QSpinBox | QCheckBox | QPushButton):
        widget.setEnabled(False)
    else:
        widget.setEnabled(False)


def line(text: str = "", placeholder: str = "") -> QLineEdit:
    edit = QLineEdit(text)
    if placeholder:
        edit.setPlaceholderText(placeholder)
    return edit


def combo(items: list[str], editable: bool = False) -> QComboBox:
    box = QComboBox()
    box.addItems(items)
    box.setEditable(editable)
    return box


def set_combo(box: QComboBox, value: str) -> None:
    index = box.findText(value)
    if index >= 0:
        box.setCurrentIndex(index)
    elif box.isEditable():
        box.setEditText(value)
    elif value:
        box.addItem(value)
        box.setCurrentIndex(box.count() - 1)


def on_change(widget: QWidget, slot: Callable[[], None]) -> None:
    if isinstance(widget, QLineEdit):
        widget.textChanged.connect(lambda _t: slot())
    elif isinstance(widget, QPlainTextEdit):
        widget.textChanged.connect(slot)
    elif isinstance(widget, QComboBox):
        widget.currentTextChanged.connect(lambda _t: slot())
    elif isinstance(widget, QSpinBox):
        widget.valueChanged.connect(lambda _v: slot())
    elif isinstance(widget, QCheckBox):
        widget.toggled.connect(lambda _v: slot())
