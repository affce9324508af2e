"""The settings dialog: database, Twilio and SMTP accounts, engine mode and nodes, master switches.

Non-secret values go to the settings file through engine.settings (`Settings.save()`); the Twilio auth token
and the SMTP password go to the operating system's keyring through engine.secrets.SecretStore and are never
written to the settings file, shown back, or logged. The connection test, the test send, the node list and
the switches all run on the database worker. Who may save settings, set secrets, send a test or turn a switch
is the engine's rule book (engine.permissions). Every change is in the audit trail with the person: each
setting's old and new value, each secret's name (never its value), each switch and each test message.
A new database takes effect the next time the console starts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QButtonGroup,
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QRadioButton,
    QSpinBox,
    QTableView,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from console.history.records import Column, RecordTableModel, replies
from console.services import ConsoleServices, PermissionDenied
from engine import audit, history, switches
from engine.errors import WatchkeeperError
from engine.history import NodeRecord
from engine.permissions import Action
from engine.secrets import SecretStore
from engine.settings import Settings

TEST_TEXT = "Watchkeeper test message: if you can read this, the channel works."

NODE_COLUMNS: list[Column[NodeRecord]] = [
    Column("Node", lambda n: n.id),
    Column("Mode", lambda n: n.mode),
    Column("Status", lambda n: ("alive" if n.alive else "silent") + f" ({n.status})"),
    Column("Heartbeat", lambda n: f"{n.heartbeat_age_seconds:.0f} s ago", numeric=True),
    Column("Version", lambda n: n.version),
    Column("Started", lambda n: n.started_at),
]

# Settings fields edited here, by tab: (attribute, label).
TWILIO_FIELDS = [
    ("twilio_account_sid", "Account SID"),
    ("twilio_sms_from", "SMS from"),
    ("twilio_whatsapp_from", "WhatsApp from"),
    ("twilio_voice_from", "Voice from"),
    ("twilio_messaging_service_sid", "Messaging service SID"),
    ("twilio_base_url", "API base URL"),
]
SMTP_FIELDS = [
    ("smtp_host", "Server"),
    ("smtp_username", "User name"),
    ("smtp_from", "From address"),
]


def _host() -> str:
    import socket

    return socket.gethostname()


class SettingsDialog(QDialog):
    saved = Signal(object)  # the Settings written
    save_failed = Signal(str)
    connection_tested = Signal(bool, str)
    test_sent = Signal(dict)
    nodes_loaded = Signal()
    switch_changed = Signal(str, bool)

    def __init__(
        self, services: ConsoleServices, parent: QWidget | None = None, secrets: SecretStore | None = None
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("Watchkeeper settings")
        self.resize(760, 560)
        self.services = services
        self.secrets = secrets or SecretStore()
        self.settings: Settings = services.ctx.settings
        self.editable = services.can(Action.EDIT_SETTINGS)
        self.fields: dict[str, QLineEdit] = {}

        self.tabs = QTabWidget()
        self.tabs.addTab(self._database_tab(), "Database")
        self.tabs.addTab(self._twilio_tab(), "Twilio")
        self.tabs.addTab(self._smtp_tab(), "E-mail (SMTP)")
        self.tabs.addTab(self._engine_tab(), "Engine")

        self.message = QLabel()
        self.message.setWordWrap(True)
        self.message.setObjectName("settingsMessage")
        self.buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Save | QDialogButtonBox.StandardButton.Close
        )
        self.save_button = self.buttons.button(QDialogButtonBox.StandardButton.Save)
        self.save_button.setEnabled(self.editable)
        self.buttons.accepted.connect(self.save)
        self.buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.tabs, 1)
        layout.addWidget(self.message)
        layout.addWidget(self.buttons)
        if not self.editable:
            self.message.setText("Read-only: signed in as an operator. A supervisor can change settings.")
            for edit in self.findChildren(QLineEdit):
                edit.setReadOnly(True)
            for w in (
                *self.findChildren(QComboBox),
                *self.findChildren(QSpinBox),
                *self.findChildren(QCheckBox),
            ):
                w.setEnabled(False)
            for w2 in (*self.findChildren(QRadioButton), self.clear_token, self.clear_password):
                w2.setEnabled(False)
        for _channel, _to, send, _result in (self.twilio_test, self.email_test):
            send.setEnabled(services.can(Action.TEST_SEND))
        self.notifications_switch.setEnabled(services.can(Action.MASTER_SWITCHES))
        self.escalations_switch.setEnabled(services.can(Action.MASTER_SWITCHES))
        self.refresh_engine()

    # -- tabs ----------------------------------------------------------------------------------------
    def _database_tab(self) -> QWidget:
        tab = QWidget()
        form = QFormLayout(tab)
        self.use_sqlite = QRadioButton("SQLite file (one workstation)")
        self.use_pg = QRadioButton("PostgreSQL (a centre shared by many workstations and services)")
        group = QButtonGroup(tab)
        group.addButton(self.use_sqlite)
        group.addButton(self.use_pg)
        self.sqlite_path = QLineEdit()
        self.browse = QPushButton("Browse…")
        path_row = QHBoxLayout()
        path_row.addWidget(self.sqlite_path, 1)
        path_row.addWidget(self.browse)
        self.pg_url = QLineEdit()
        self.pg_url.setPlaceholderText("postgresql://watchkeeper@db1:5432/watchkeeper")
        self.test_db = QPushButton("Test connection")
        self.db_result = QLabel()
        self.db_result.setWordWrap(True)
        form.addRow(self.use_sqlite)
        form.addRow("File", path_row)
        form.addRow(self.use_pg)
        form.addRow("URL", self.pg_url)
        form.addRow(
            "",
            QLabel(
                "Give a PostgreSQL password in ~/.pgpass or the service's environment, not in the URL:\n"
                "the URL is stored in the settings file."
            ),
        )
        form.addRow(self.test_db, self.db_result)
        url = self.settings.db
        if url.startswith("postgres"):
            self.use_pg.setChecked(True)
            self.pg_url.setText(url)
        else:
            self.use_sqlite.setChecked(True)
            self.sqlite_path.setText(url.removeprefix("sqlite:///").removeprefix("sqlite+pysqlite:///"))
        self.browse.clicked.connect(self._browse)
        self.test_db.clicked.connect(self.test_connection)
        return tab

    def _line(self, form: QFormLayout, name: str, label: str) -> QLineEdit:
        edit = QLineEdit(str(getattr(self.settings, name)))
        self.fields[name] = edit
        form.addRow(label, edit)
        return edit

    def _secret_row(self, form: QFormLayout, name: str, label: str) -> tuple[QLineEdit, QPushButton]:
        edit = QLineEdit()
        edit.setEchoMode(QLineEdit.EchoMode.Password)
        clear = QPushButton("Remove")
        row = QHBoxLayout()
        row.addWidget(edit, 1)
        row.addWidget(clear)
        form.addRow(label, row)
        try:
            present = self.secrets.source(name)
        except WatchkeeperError as exc:
            present = None
            edit.setPlaceholderText(f"keyring unavailable: {exc}")
        problem = self.secrets.keyring_problem()
        if present:
            edit.setPlaceholderText(f"stored ({present}); type to replace")
        elif problem:
            edit.setPlaceholderText("no usable keyring on this machine")
            edit.setToolTip(problem)
        else:
            edit.setPlaceholderText("not set: its channels are skipped (or simulated, where chosen)")
        clear.clicked.connect(lambda: self._remove_secret(name, edit))
        return edit, clear

    def _twilio_tab(self) -> QWidget:
        tab = QWidget()
        form = QFormLayout(tab)
        for name, label in TWILIO_FIELDS:
            self._line(form, name, label)
        self.twilio_token, self.clear_token = self._secret_row(
            form, "twilio_auth_token", "Auth token (keyring)"
        )
        form.addRow(self._test_box(["sms", "whatsapp", "voice"], "+27821234567"))
        return tab

    def _smtp_tab(self) -> QWidget:
        tab = QWidget()
        form = QFormLayout(tab)
        for name, label in SMTP_FIELDS[:1]:
            self._line(form, name, label)
        self.smtp_port = QSpinBox()
        self.smtp_port.setRange(1, 65535)
        self.smtp_port.setValue(int(self.settings.smtp_port))
        form.addRow("Port", self.smtp_port)
        self.smtp_security = QComboBox()
        self.smtp_security.addItems(["starttls", "ssl", "none"])
        self.smtp_security.setCurrentText(self.settings.smtp_security)
        form.addRow("Security", self.smtp_security)
        for name, label in SMTP_FIELDS[1:]:
            self._line(form, name, label)
        self.smtp_password, self.clear_password = self._secret_row(
            form, "smtp_password", "Password (keyring)"
        )
        form.addRow(self._test_box(["email"], "duty@example.org"))
        return tab

    def _test_box(self, channels: list[str], example: str) -> QGroupBox:
        box = QGroupBox("Test send (uses the saved settings)")
        column = QVBoxLayout(box)
        row = QHBoxLayout()
        channel = QComboBox()
        channel.addItems(channels)
        to = QLineEdit()
        to.setPlaceholderText(example)
        send = QPushButton("Send test")
        result = QLabel()
        result.setWordWrap(True)
        row.addWidget(channel)
        row.addWidget(to, 1)
        row.addWidget(send)
        column.addLayout(row)
        column.addWidget(result)
        send.clicked.connect(lambda: self.send_test(channel.currentText(), to.text(), result))
        if channels[0] == "email":
            self.email_test = (channel, to, send, result)
        else:
            self.twilio_test = (channel, to, send, result)
        return box

    def _engine_tab(self) -> QWidget:
        tab = QWidget()
        layout = QVBoxLayout(tab)
        form = QFormLayout()
        self.engine_mode = QComboBox()
        self.engine_mode.addItem("Embedded: this console runs the escalation engine", "embedded")
        self.engine_mode.addItem("Watch: a Watchkeeper service runs the engine", "watch")
        self.engine_mode.setCurrentIndex(max(0, self.engine_mode.findData(self.settings.engine_mode)))
        form.addRow("Engine mode", self.engine_mode)
        self.simulated = QLineEdit(", ".join(self.settings.simulated_channels))
        self.simulated.setPlaceholderText("none: every channel set up sends for real")
        self.simulated.setToolTip(
            "Channels that send nothing and mark their messages delivered, for a rehearsal: sms, whatsapp, "
            "voice, email, webhook, or all. A channel that is not set up and not listed here is skipped."
        )
        form.addRow("Simulated channels", self.simulated)
        layout.addLayout(form)

        switches_box = QGroupBox("Master switches (every workstation and service)")
        sl = QVBoxLayout(switches_box)
        self.notifications_switch = QCheckBox("Notifications and reminders")
        self.escalations_switch = QCheckBox("Automatic escalations (SLA breaches, overdue items)")
        sl.addWidget(self.notifications_switch)
        sl.addWidget(self.escalations_switch)
        layout.addWidget(switches_box)
        self.notifications_switch.clicked.connect(
            lambda on: self.set_switch(switches.NOTIFICATIONS_ENABLED, on)
        )
        self.escalations_switch.clicked.connect(lambda on: self.set_switch(switches.ESCALATIONS_ENABLED, on))

        nodes_box = QGroupBox("Engine nodes on this database")
        nl = QVBoxLayout(nodes_box)
        self.nodes = RecordTableModel(NODE_COLUMNS, self)
        view = QTableView()
        view.setModel(self.nodes)
        view.verticalHeader().setVisible(False)
        view.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        view.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        view.horizontalHeader().setStretchLastSection(True)
        self.nodes_summary = QLabel()
        refresh = QPushButton("Refresh")
        refresh.clicked.connect(self.refresh_engine)
        top = QHBoxLayout()
        top.addWidget(self.nodes_summary, 1)
        top.addWidget(refresh)
        nl.addLayout(top)
        nl.addWidget(view)
        layout.addWidget(nodes_box, 1)
        return tab

    # -- actions -------------------------------------------------------------------------------------
    def _browse(self) -> None:
        path, _ = QFileDialog.getSaveFileName(
            self,
            "SQLite database file",
            self.sqlite_path.text(),
            "SQLite (*.db)",
            options=QFileDialog.Option.DontConfirmOverwrite,
        )
        if path:
            self.sqlite_path.setText(path)

    def database_url(self) -> str:
        if self.use_pg.isChecked():
            return self.pg_url.text().strip()
        path = self.sqlite_path.text().strip()
        return "sqlite:///" + str(Path(path).expanduser()) if path else ""

    def test_connection(self) -> None:
        url = self.database_url()
        self.db_result.setText("Connecting…")

        def job() -> str:
            from engine.bootstrap import connect, describe_database

            engine = connect(Settings(db=url))
            try:
                return f"Connected to the {describe_database(engine.url)}."
            finally:
                engine.dispose()

        def done(text: str) -> None:
            self.db_result.setText("✓ " + text)
            self.connection_tested.emit(True, text)

        def failed(exc: Exception) -> None:
            self.db_result.setText("✗ " + str(exc))
            self.connection_tested.emit(False, str(exc))

        self.services.worker.call(job, **replies(self, done, failed), what="connection test")

    def send_test(self, channel: str, to: str, result: QLabel) -> None:
        ctx = self.services.ctx
        try:
            self.services.require(Action.TEST_SEND)
        except PermissionDenied as exc:
            result.setText(f"✗ {exc}")
            self.test_sent.emit({"ok": False, "error": str(exc)})
            return
        result.setText("Sending…")

        def job() -> dict[str, Any]:
            from engine.channels import test_send

            who = self.services.authorized(Action.TEST_SEND)
            answer = test_send(ctx, channel, to, TEST_TEXT)
            audit.record_now(
                ctx,
                who,
                "test_send",
                object_kind="channel",
                object_name=channel,
                message=f"Test message on {channel} to {to}: " + ("sent" if answer.get("ok") else "refused"),
            )
            return answer

        def done(answer: dict[str, Any]) -> None:
            mode = " (simulated: the simulated_channels setting)" if answer.get("simulated") else ""
            if answer.get("ok"):
                result.setText(
                    f"✓ sent{mode}: {answer.get('status') or ''} {answer.get('provider_id') or ''}".strip()
                )
            else:
                result.setText(f"✗ not sent{mode}: {answer.get('error') or answer.get('error_code')}")
            self.test_sent.emit(answer)

        def failed(exc: Exception) -> None:
            result.setText(f"✗ {exc}")
            self.test_sent.emit({"ok": False, "error": str(exc)})

        self.services.worker.call(job, **replies(self, done, failed), what="test send")

    def refresh_engine(self) -> None:
        now = self.services.ctx.clock.now()

        def job(session: Any) -> tuple[list[NodeRecord], bool, bool]:
            return (
                history.engine_nodes(session, now),
                switches.notifications_enabled(session),
                switches.escalations_enabled(session),
            )

        def done(result: tuple[list[NodeRecord], bool, bool]) -> None:
            nodes, notifications, escalations = result
            self.nodes.set_rows(nodes)
            alive_count = sum(1 for n in nodes if n.alive)
            self.nodes_summary.setText(f"{alive_count} alive of {len(nodes)} known")
            self.notifications_switch.setChecked(notifications)
            self.escalations_switch.setChecked(escalations)
            self.nodes_loaded.emit()

        self.services.worker.submit(job, **replies(self, done), what="engine nodes")

    def set_switch(self, name: str, enabled: bool) -> None:
        try:
            self.services.require(Action.MASTER_SWITCHES)
        except PermissionDenied as exc:
            self.message.setText("⚠ " + str(exc))
            self.refresh_engine()
            return
        # engine.switches checks the permission again and writes the audit entry.
        now, actor = self.services.ctx.clock.now(), self.services.identity

        def job(session: Any) -> None:
            switches.set_switch(session, name, enabled, now=now, by=actor)

        def failed(exc: Exception) -> None:
            self.message.setText(f"⚠ {exc}")
            self.refresh_engine()

        self.services.worker.submit(
            job,
            **replies(self, lambda _r: self.switch_changed.emit(name, enabled), failed),
            what="master switch",
        )

    def _audit(self, action: str, **fields: Any) -> None:
        """An audit entry for a change kept outside the database (settings file, keyring), on the worker."""
        ctx, who = self.services.ctx, self.services.identity
        self.services.worker.call(lambda: audit.record_now(ctx, who, action, **fields), what="audit")

    def _remove_secret(self, name: str, edit: QLineEdit) -> None:
        try:
            self.services.require(Action.MANAGE_SECRETS)
            self.secrets.delete(name)
        except WatchkeeperError as exc:
            self.message.setText("⚠ " + str(exc))
            return
        self._audit(
            "secret_removed",
            object_kind="secret",
            object_name=name,
            message=f"Secret {name} removed from the keyring of {_host()}",
        )
        edit.clear()
        edit.setPlaceholderText("not set: its channels are skipped (or simulated, where chosen)")
        self.message.setText(f"Removed {name} from the keyring.")

    def collected(self) -> Settings:
        """The settings as edited (not yet saved)."""
        changes: dict[str, Any] = {name: edit.text().strip() for name, edit in self.fields.items()}
        changes["smtp_port"] = self.smtp_port.value()
        changes["smtp_security"] = self.smtp_security.currentText()
        changes["engine_mode"] = self.engine_mode.currentData()
        changes["simulated_channels"] = _simulated_channels(self.simulated.text())
        url = self.database_url()
        if url:
            changes["db"] = url
        return self.settings.replace(**changes)

    def save(self) -> None:
        typed = [
            (name, edit)
            for name, edit in (
                ("twilio_auth_token", self.twilio_token),
                ("smtp_password", self.smtp_password),
            )
            if edit.text()
        ]
        try:
            self.services.require(Action.EDIT_SETTINGS)
            if typed:
                self.services.require(Action.MANAGE_SECRETS)
        except PermissionDenied as exc:
            self.message.setText("⚠ " + str(exc))
            self.save_failed.emit(str(exc))
            return
        try:
            new = self.collected()
        except WatchkeeperError as exc:  # a simulated channel Watchkeeper does not know, named
            self.message.setText("⚠ " + str(exc))
            self.save_failed.emit(str(exc))
            return
        before = self.settings.to_toml_dict()
        try:
            for name, edit in typed:
                self.secrets.set(name, edit.text())
                edit.clear()
                edit.setPlaceholderText("stored (keyring); type to replace")
                # That it changed, where and by whom: never the value.
                self._audit(
                    "secret_set",
                    object_kind="secret",
                    object_name=name,
                    message=f"Secret {name} set in the keyring of {_host()}",
                )
            path = new.save()
        except (WatchkeeperError, OSError) as exc:
            self.message.setText("⚠ " + str(exc))
            self.save_failed.emit(str(exc))
            return
        changes = audit.diff(before, new.to_toml_dict())
        if changes:
            self._audit(
                "setting_changed",
                object_kind="settings",
                object_name=f"{_host()}:{path}",
                message=f"Settings of {_host()} changed: " + ", ".join(c.field for c in changes),
                changes=changes,
            )
        db_changed = new.db != self.settings.db
        # The running engine uses the new accounts at once; a new database needs a restart.
        live = {k: v for k, v in new.to_toml_dict().items() if k not in ("schema_version", "db")}
        for key, value in live.items():
            setattr(self.services.ctx.settings, key, value)
        self.services.ctx.settings.source = path
        self.settings = self.services.ctx.settings
        ctx = self.services.ctx

        def rebuild() -> None:
            from engine.channels import build_senders, install_senders

            install_senders(ctx, build_senders(ctx.settings, clock=ctx.clock))

        self.services.worker.call(rebuild, what="reload channels")
        ctx.settings_changed()  # an engine in its own process takes them too
        note = " The new database is used from the next start." if db_changed else ""
        self.message.setText(f"Saved to {path}.{note}")
        self.saved.emit(new)


def _simulated_channels(text: str) -> list[str]:
    """The simulated channels as typed, checked as the settings file would check them (a ValueError names a
    channel Watchkeeper does not know)."""
    from engine.settings import LIST_CHOICES

    names = [part.strip().lower() for part in text.replace(";", ",").split(",") if part.strip()]
    unknown = [n for n in names if n not in LIST_CHOICES["simulated_channels"]]
    if unknown:
        raise WatchkeeperError(
            f"simulated channels: unknown {', '.join(map(repr, unknown))}; use "
            + ", ".join(LIST_CHOICES["simulated_channels"])
        )
    return names
