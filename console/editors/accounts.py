"""Operator accounts, for administrators: who may sign in, with which role, linked to which person, and when
each last signed in.

New accounts get a temporary password, shown once here, that the person must change at their first sign-in;
*Reset password…* does the same for an existing account (and lifts a lock-out). Accounts are never deleted —
the audit trail names them — they are disabled. Every change goes through engine.accounts, which checks the
administrator's permission, refuses to leave the centre without an active administrator, and writes the
audit trail.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QDialog,
    QDialogButtonBox,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from console.editors.base import Obj, ObjectEditor, combo, line, set_combo
from console.history.records import Column, replies
from engine import accounts
from engine.permissions import ROLES, Action

NO_PERSON = "(no person)"


def seconds(value: datetime | None) -> str:
    return value.astimezone().strftime("%Y-%m-%d %H:%M:%S") if value is not None else "never"


def account_row(a: accounts.Account, now: datetime) -> Obj:
    """An account for the list and the form: the editable fields plus what the administrator should see."""
    return {
        "username": a.username,
        "display_name": a.display_name,
        "role": a.role,
        "person": a.person,
        "active": a.active,
        "state": a.state(now),
        "last_sign_in_at": a.last_sign_in_at,
        "failed_sign_ins": a.failed_sign_ins,
        "locked_until": a.locked_until,
        "password_changed_at": a.password_changed_at,
        "created_at": a.created_at,
        "person_name": a.person_name,
    }


class TemporaryPasswordDialog(QDialog):
    """Shows a temporary password once, selectable, with what to tell the person."""

    def __init__(self, username: str, password: str, verb: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle(f"Temporary password for {username}")
        text = QLabel(
            f"The account <b>{username}</b> was {verb}. Give this temporary password to its owner; it is shown "
            "only now, and must be changed at the first sign-in."
        )
        text.setWordWrap(True)
        self.password = QLineEdit(password)
        self.password.setObjectName("temporaryPassword")
        self.password.setReadOnly(True)
        self.password.selectAll()
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok)
        buttons.accepted.connect(self.accept)
        layout = QVBoxLayout(self)
        layout.addWidget(text)
        layout.addWidget(self.password)
        layout.addWidget(buttons)


class AccountsEditor(ObjectEditor):
    kind = "accounts"
    title = "Accounts"
    handle_key = "username"
    action = Action.MANAGE_ACCOUNTS
    related_kinds = ("people",)
    list_columns = [
        Column("User name", lambda o: o.get("username", "")),
        Column("Name", lambda o: o.get("display_name", "")),
        Column("Role", lambda o: o.get("role", "")),
        Column("Person", lambda o: o.get("person") or ""),
        Column("State", lambda o: o.get("state", "")),
        Column("Last sign-in", lambda o: seconds(o.get("last_sign_in_at"))),
    ]

    # A new account's temporary password (username, password), for tests and the dialog.
    password_issued = Signal(str, str)

    def build_form(self) -> None:
        self.username = self.add_field("username", "User name", line(placeholder="e.g. thandi"))
        self.display_name = self.add_field("display_name", "Display name", line())
        self.role = self.add_field("role", "Role", combo(list(ROLES)))
        self.person = self.add_field(
            "person",
            "Person",
            combo([NO_PERSON]),
            "the person record this account is (the board's Mine and 'assign to me' use it)",
        )
        self.active = self.add_field("active", "Active", QCheckBox("may sign in"))
        self.facts = QLabel()
        self.facts.setObjectName("accountFacts")
        self.facts.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.form.addRow("Sign-in", self.facts)
        self.reset_button = QPushButton("Reset password…")
        self.reset_button.setObjectName("resetPassword")
        self.reset_button.setToolTip("A temporary password, shown once, to be changed at the next sign-in")
        self.reset_button.clicked.connect(self.reset_password)
        self.form.addRow("", self.reset_button)
        self.delete_button.hide()  # accounts are disabled, never deleted
        self.new_button.setText("&New account")
        # The list is what an administrator reads most (state, last sign-in): give it room.
        self.splitter.setStretchFactor(0, 3)
        self.splitter.setStretchFactor(1, 2)
        self.splitter.setSizes([760, 600])

    def key_widgets(self) -> list[QWidget]:
        return [self.username]

    def blank(self) -> Obj:
        return {"role": "operator", "active": True}

    def handle_of(self, obj: Obj) -> str:
        return str(obj.get("username") or "")

    def related_loaded(self, directory: dict[str, list[Obj]]) -> None:
        current = self.person.currentText()
        self.person.clear()
        self.person.addItems([NO_PERSON, *(str(p["handle"]) for p in directory.get("people", []))])
        set_combo(self.person, current or NO_PERSON)

    def reload(self) -> None:
        now = self.services.ctx.clock.now()

        def job(session: Any) -> dict[str, list[Obj]]:
            from engine import config_io

            return {
                "accounts": [account_row(a, now) for a in accounts.list_accounts(session)],
                "people": list(config_io.export_objects(session, "people")),
            }

        self.services.worker.submit(
            job, **replies(self, self._arrived, self._load_failed), what="load accounts"
        )

    def fill(self, obj: Obj) -> None:
        self.username.setText(obj.get("username", ""))
        self.display_name.setText(obj.get("display_name", ""))
        set_combo(self.role, obj.get("role") or "operator")
        if self.person.findText(obj.get("person") or NO_PERSON) < 0 and obj.get("person"):
            self.person.addItem(str(obj["person"]))
        set_combo(self.person, obj.get("person") or NO_PERSON)
        self.active.setChecked(bool(obj.get("active", True)))
        self.reset_button.setEnabled(self.editable and bool(obj.get("username")))
        if not obj.get("username"):
            self.facts.setText("A temporary password is made when you save; it is shown once.")
            return
        locked = obj.get("locked_until")
        lines = [
            f"State: {obj.get('state', '')}",
            f"Last sign-in: {seconds(obj.get('last_sign_in_at'))}",
            f"Failed sign-ins in a row: {obj.get('failed_sign_ins', 0)}",
        ]
        if locked is not None and obj.get("state") == "locked":
            lines.append(f"Locked until: {seconds(locked)}")
        lines.append(f"Password last set: {seconds(obj.get('password_changed_at'))}")
        lines.append(f"Created: {seconds(obj.get('created_at'))}")
        self.facts.setText("\n".join(lines))

    def collect_into(self, obj: Obj) -> None:
        obj["username"] = self.username.text().strip()
        obj["display_name"] = self.display_name.text().strip() or obj["username"]
        obj["role"] = self.role.currentText()
        person = self.person.currentText()
        obj["person"] = None if person in ("", NO_PERSON) else person
        obj["active"] = self.active.isChecked()

    # -- saving goes through engine.accounts ---------------------------------------------------------------

    def save(self) -> None:
        self.clear_errors()
        try:
            self.services.require(self.action)
            obj = self.collect()
        except Exception as exc:
            self.save_failed.emit(self.show_error(exc))
            return
        ctx, by = self.services.ctx, self.services.identity
        new = self.current_handle is None
        self.info.setText("Saving…")
        self.save_button.setEnabled(False)

        def job() -> tuple[str, str | None]:
            if new:
                made = accounts.add_account(
                    ctx,
                    by,
                    username=obj["username"],
                    role=obj["role"],
                    display_name=obj["display_name"],
                    person=obj["person"],
                )
                if not obj["active"]:
                    accounts.disable(ctx, by, made.account.username)
                return made.account.username, made.password
            account = accounts.update_account(
                ctx,
                by,
                obj["username"],
                role=obj["role"],
                display_name=obj["display_name"],
                person=obj["person"],
                active=obj["active"],
            )
            return account.username, None

        self.services.worker.call(
            job, **replies(self, self._account_saved, self._save_error), what="save account"
        )

    def _account_saved(self, result: tuple[str, str | None]) -> None:
        username, password = result
        self._saved({"username": username})
        if password:
            self.password_issued.emit(username, password)
            if self.isVisible():
                TemporaryPasswordDialog(username, password, "created", self).exec()

    def reset_password(self) -> None:
        username = self.current_handle
        if not username:
            return
        try:
            self.services.require(self.action)
        except Exception as exc:
            self.show_error(exc)
            return
        ctx, by = self.services.ctx, self.services.identity

        def done(made: accounts.NewPassword) -> None:
            self.info.setText(f"Password of {username} reset.")
            self.reload()
            if made.password:
                self.password_issued.emit(username, made.password)
                if self.isVisible():
                    TemporaryPasswordDialog(username, made.password, "given a new password", self).exec()

        self.services.worker.call(
            lambda: accounts.reset_password(ctx, by, username),
            **replies(self, done, self.show_error),
            what="reset password",
        )


__all__ = ["AccountsEditor"]
