"""The console's small dialogs: sign-in, first-run administrator, changing a password, signing out with a
handover note and the handover shown at sign-in, new incident (a call by phone), and the prompts behind
actions (note, cancel reason, escalate to level, assign, classify).

Dialogs validate what they can see (required fields, a reporter's phone number or e-mail address) and leave
every rule about incidents to the engine; `values()` returns exactly the keyword arguments of the engine call.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtGui import QKeyEvent
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPlainTextEdit,
    QVBoxLayout,
    QWidget,
)

from console.reach import chosen_handle, fill_people
from engine import contacts
from engine.contacts import DEFAULT_REGION
from engine.errors import ValidationError
from engine.models import Severity

LANGUAGES = [("en", "English"), ("zu", "isiZulu"), ("af", "Afrikaans")]
NO_POLICY = "(no escalation)"
_NO_MODIFIERS = (Qt.KeyboardModifier.NoModifier, Qt.KeyboardModifier.KeypadModifier)


def _error_label() -> QLabel:
    label = QLabel()
    label.setObjectName("dialogError")
    label.setStyleSheet("color: #c0081b; font-weight: bold;")
    label.setWordWrap(True)
    label.hide()
    return label


def _sensitive_box() -> QCheckBox:
    """What the engine does with the flag, and nothing more: a sensitive incident is never SLA-monitored."""
    box = QCheckBox("S&ensitive — no SLA monitoring (no deadlines, warnings or breaches)")
    box.setObjectName("sensitive")
    return box


class SignInDialog(QDialog):
    """User name and password; `check(username, password)` raises with a message when they are wrong."""

    def __init__(
        self,
        check: Callable[[str, str], Any],
        parent: QWidget | None = None,
        *,
        database: str = "",
        username: str = "",
        status: str = "",
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("Watchkeeper — sign in")
        self._check = check
        self.result_value: Any = None
        self.username = QLineEdit(username)
        self.username.setObjectName("username")
        self.password = QLineEdit()
        self.password.setObjectName("password")
        self.password.setEchoMode(QLineEdit.EchoMode.Password)
        self.error = _error_label()
        form = QFormLayout()
        form.addRow("&User name", self.username)
        form.addRow("&Password", self.password)
        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Sign in")
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        if status:
            self.status = QLabel(status)
            self.status.setObjectName("signInStatus")
            self.status.setWordWrap(True)
            layout.addWidget(self.status)
        if database:
            db_label = QLabel(f"Database: {database}")
            db_label.setWordWrap(True)
            layout.addWidget(db_label)
        layout.addLayout(form)
        layout.addWidget(self.error)
        layout.addWidget(buttons)
        (self.password if username else self.username).setFocus()

    def accept(self) -> None:
        try:
            self.result_value = self._check(self.username.text(), self.password.text())
        except Exception as exc:
            # The engine's words: "wrong user name or password" or "locked for a while" — never which field.
            self.error.setText(sentence(str(exc) or "sign-in failed"))
            self.error.show()
            self.password.clear()
            self.password.setFocus()
            return
        super().accept()


def sentence(text: str) -> str:
    text = text.strip()
    if not text:
        return text
    return text[0].upper() + text[1:] + ("" if text.endswith((".", "!", "?")) else ".")


class ChangePasswordDialog(QDialog):
    """A new password, typed twice: at sign-in after a reset (required) or from File → Change password."""

    def __init__(
        self,
        change: Callable[[str, str], Any],
        parent: QWidget | None = None,
        *,
        username: str = "",
        required: bool = False,
        current: str = "",
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("Watchkeeper — choose a new password" if required else "Change password")
        self._change = change
        self.intro = intro = QLabel(
            f"The password of {username} was reset by an administrator. Choose your own before you go on."
            if required
            else f"Change the password of {username}."
        )
        intro.setWordWrap(True)
        self.current = QLineEdit(current)
        self.current.setObjectName("currentPassword")
        self.current.setEchoMode(QLineEdit.EchoMode.Password)
        self.new = QLineEdit()
        self.new.setObjectName("newPassword")
        self.new.setEchoMode(QLineEdit.EchoMode.Password)
        self.new.setPlaceholderText("at least 8 characters")
        self.again = QLineEdit()
        self.again.setObjectName("newPasswordAgain")
        self.again.setEchoMode(QLineEdit.EchoMode.Password)
        self.error = _error_label()
        form = QFormLayout()
        if not current:
            form.addRow("&Current password", self.current)
        form.addRow("&New password", self.new)
        form.addRow("&Again", self.again)
        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Change password")
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(intro)
        layout.addLayout(form)
        layout.addWidget(self.error)
        layout.addWidget(buttons)
        (self.new if current else self.current).setFocus()

    def accept(self) -> None:
        if self.new.text() != self.again.text():
            self.error.setText("The two new passwords differ.")
            self.error.show()
            return
        try:
            self._change(self.current.text(), self.new.text())
        except Exception as exc:
            self.error.setText(sentence(str(exc)))
            self.error.show()
            return
        super().accept()


class FirstRunDialog(QDialog):
    """A database with no operator accounts: create the first administrator (prefilled user name)."""

    def __init__(self, parent: QWidget | None = None, *, database: str = "", offer_demo: bool = True) -> None:
        super().__init__(parent)
        self.setWindowTitle("Watchkeeper — first run")
        intro = QLabel(
            "This database has no operator accounts yet. Create the first administrator account; "
            "it can add operators and supervisors later (Editors → Accounts)."
            + (f"\n\nDatabase: {database}" if database else "")
        )
        intro.setWordWrap(True)
        self.username = QLineEdit("admin")
        self.username.setObjectName("username")
        self.display_name = QLineEdit("Administrator")
        self.password = QLineEdit()
        self.password.setObjectName("password")
        self.password.setEchoMode(QLineEdit.EchoMode.Password)
        self.password.setPlaceholderText("at least 8 characters")
        self.confirm = QLineEdit()
        self.confirm.setObjectName("confirm")
        self.confirm.setEchoMode(QLineEdit.EchoMode.Password)
        self.load_demo = QCheckBox("Load the demo data (people, teams, policies, sample incidents)")
        self.load_demo.setChecked(offer_demo)
        self.load_demo.setVisible(offer_demo)
        self.error = _error_label()
        form = QFormLayout()
        form.addRow("&User name", self.username)
        form.addRow("&Display name", self.display_name)
        form.addRow("&Password", self.password)
        form.addRow("&Confirm", self.confirm)
        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Create account")
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(intro)
        layout.addLayout(form)
        layout.addWidget(self.load_demo)
        layout.addWidget(self.error)
        layout.addWidget(buttons)
        self.password.setFocus()

    def problems(self) -> list[str]:
        out = []
        if not self.username.text().strip():
            out.append("a user name is needed")
        if len(self.password.text()) < 8:
            out.append("the password needs at least 8 characters")
        elif self.password.text() != self.confirm.text():
            out.append("the two passwords differ")
        return out

    def accept(self) -> None:
        problems = self.problems()
        if problems:
            self.error.setText("; ".join(problems))
            self.error.show()
            return
        super().accept()


class NewIncidentDialog(QDialog):
    """A call that came in by phone: everything engine.api.trigger needs."""

    def __init__(
        self,
        choices: dict[str, list[str]] | None = None,
        parent: QWidget | None = None,
        *,
        summary: str = "",
        phone_region: str = DEFAULT_REGION,
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("New incident")
        self.setMinimumWidth(520)
        self.phone_region = phone_region
        choices = choices or {}
        self.policy = QComboBox()
        self.policy.setObjectName("policy")
        self.policy.addItem(NO_POLICY)
        self.policy.addItems(choices.get("policies", []))
        # The centre's default policy, the one an incident without a policy would get anyway; with none set,
        # "(no escalation)" — never whichever policy happens to sort first.
        default = (choices.get("default_policy") or [""])[0]
        self.policy.setCurrentIndex(max(0, self.policy.findText(default)) if default else 0)
        self.severity = QComboBox()
        self.severity.setObjectName("severity")
        self.severity.addItems([s.value for s in Severity])
        self.severity.setCurrentText(Severity.HIGH.value)
        self.category = QComboBox()
        self.category.setEditable(True)
        self.category.addItems(choices.get("categories", ["general"]))
        self.category.setCurrentText("general")
        self.site = QComboBox()
        self.site.setEditable(True)
        self.site.addItems(["", *choices.get("sites", [])])
        self.team = QComboBox()
        self.team.addItems(["", *choices.get("teams", [])])
        self.summary = QLineEdit(summary)
        self.summary.setObjectName("summary")
        self.summary.setMaxLength(1024)
        self.summary.setPlaceholderText("What is happening, where (required)")
        self.details = QPlainTextEdit()
        self.details.setTabChangesFocus(True)
        self.details.setPlaceholderText("What the caller said")
        self.reporter_name = QLineEdit()
        self.reporter_contact = QLineEdit()
        self.reporter_contact.setObjectName("reporter_contact")
        self.reporter_contact.setPlaceholderText("+27 82 555 0100 or name@example.org")
        self.reporter_language = QComboBox()
        for code, name in LANGUAGES:
            self.reporter_language.addItem(name, code)
        self.sensitive = _sensitive_box()
        self.error = _error_label()

        form = QFormLayout()
        form.addRow("&Summary", self.summary)
        form.addRow("Se&verity", self.severity)
        form.addRow("&Policy", self.policy)
        form.addRow("&Category", self.category)
        form.addRow("", self.sensitive)
        form.addRow("S&ite", self.site)
        form.addRow("&Team", self.team)
        form.addRow("&Details", self.details)
        form.addRow("Reporter &name", self.reporter_name)
        form.addRow("Reporter c&ontact", self.reporter_contact)
        form.addRow("Reporter &language", self.reporter_language)
        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Open incident")
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.error)
        layout.addWidget(buttons)
        self.summary.setFocus()

    def _contact(self) -> tuple[str | None, str | None]:
        """(normalised contact, problem)."""
        raw = self.reporter_contact.text().strip()
        if not raw:
            return None, None
        # The engine's own rule, as in the People editor and the import: one form (E.164) for every number.
        try:
            if "@" in raw:
                return contacts.normalise_email(raw), None
            return contacts.normalise_phone(raw, self.phone_region), None
        except ValidationError as exc:
            return None, str(exc)

    def problems(self) -> list[str]:
        out = []
        if not self.summary.text().strip():
            out.append("a summary is needed")
        if not self.category.currentText().strip():
            out.append("a category is needed")
        _contact, problem = self._contact()
        if problem:
            out.append(problem)
        return out

    def values(self) -> dict[str, Any]:
        contact, _problem = self._contact()
        policy = self.policy.currentText()
        return {
            "policy": None if policy == NO_POLICY else policy,
            "summary": self.summary.text().strip(),
            "severity": self.severity.currentText(),
            "category": self.category.currentText().strip(),
            "site": self.site.currentText().strip(),
            "team": self.team.currentText() or None,
            "details": self.details.toPlainText().strip(),
            "reporter_name": self.reporter_name.text().strip() or None,
            "reporter_contact": contact,
            "reporter_language": self.reporter_language.currentData(),
            "sensitive": self.sensitive.isChecked(),
        }

    def accept(self) -> None:
        problems = self.problems()
        if problems:
            self.error.setText("; ".join(problems))
            self.error.show()
            return
        super().accept()


class _EnterSaves(QPlainTextEdit):
    """Enter saves the dialog, Shift+Enter starts a new line (an operator types a note and presses Enter)."""

    def __init__(self, on_enter: Callable[[], None]) -> None:
        super().__init__()
        self._on_enter = on_enter

    def keyPressEvent(self, event: QKeyEvent) -> None:
        enter = event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter)
        if enter and not event.modifiers() & Qt.KeyboardModifier.ShiftModifier:
            self._on_enter()
            return
        if enter:  # Shift+Enter: a plain new line, not the paragraph separator Qt would insert
            self.insertPlainText("\n")
            return
        super().keyPressEvent(event)


class TextPrompt(QDialog):
    """One required text (a note, a cancel reason). Enter saves, Shift+Enter starts a new line; the buttons
    say what they do (`accept_text`, `reject_text`), so "Cancel incident" never has a button called Cancel."""

    def __init__(
        self,
        title: str,
        label: str,
        parent: QWidget | None = None,
        *,
        required: bool = True,
        accept_text: str = "Save",
        reject_text: str = "Back",
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle(title)
        self.required = required
        self.text = _EnterSaves(self.accept)
        self.text.setTabChangesFocus(True)
        self.text.setObjectName("promptText")
        self.text.setPlaceholderText("Enter saves · Shift+Enter new line · Esc goes back")
        self.error = _error_label()
        buttons = QDialogButtonBox()
        self.accept_button = buttons.addButton(accept_text, QDialogButtonBox.ButtonRole.AcceptRole)
        self.reject_button = buttons.addButton(reject_text, QDialogButtonBox.ButtonRole.RejectRole)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel(label))
        layout.addWidget(self.text)
        layout.addWidget(self.error)
        layout.addWidget(buttons)
        self.text.setFocus()

    def value(self) -> str:
        return self.text.toPlainText().strip()

    def accept(self) -> None:
        if self.required and not self.value():
            self.error.setText("this cannot be empty")
            self.error.show()
            return
        super().accept()


class ConfirmDialog(QDialog):
    """One key to confirm an action that cannot be taken back (resolve, escalate): pressing the action's key
    again, or Enter, does it; Esc or any button but the first keeps things as they are."""

    def __init__(
        self,
        title: str,
        question: str,
        *,
        key: str,
        confirm_text: str,
        keep_text: str,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle(title)
        self.setObjectName("confirmAction")
        self.key = Qt.Key(ord(key.upper()))
        label = QLabel(question)
        label.setWordWrap(True)
        hint = QLabel(f"Press {key.upper()} or Enter to confirm, Esc to go back.")
        hint.setObjectName("muted")
        buttons = QDialogButtonBox()
        self.confirm_button = buttons.addButton(
            f"{confirm_text} ({key.upper()})", QDialogButtonBox.ButtonRole.AcceptRole
        )
        buttons.addButton(keep_text, QDialogButtonBox.ButtonRole.RejectRole)
        self.confirm_button.setDefault(True)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(label)
        layout.addWidget(hint)
        layout.addWidget(buttons)
        self.confirm_button.setFocus()

    def keyPressEvent(self, event: QKeyEvent) -> None:
        if event.key() == self.key and event.modifiers() in _NO_MODIFIERS:
            self.accept()
            return
        super().keyPressEvent(event)


class EscalateDialog(QDialog):
    """Escalate now: to the next level, or to a chosen one — each level listed with who it would page now
    (engine.board.escalation_levels), so nobody escalates to a level blind."""

    def __init__(
        self, current_level: int, parent: QWidget | None = None, *, levels: list[dict[str, Any]] | None = None
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("Escalate now")
        self.setMinimumWidth(520)
        self.next_level = QCheckBox("&Next level")
        self.next_level.setChecked(True)
        self.levels = QListWidget()
        self.levels.setObjectName("escalateLevels")
        for entry in levels or []:
            n = int(entry["level"])
            who = ", ".join(entry.get("who") or []) or "nobody"
            why = "; ".join(entry.get("nobody") or [])
            mark = "  (now)" if n == current_level else ""
            item = QListWidgetItem(f"Level {n}{mark} — {who}" + (f"  ⚠ {why}" if why else ""))
            item.setData(Qt.ItemDataRole.UserRole, n)
            self.levels.addItem(item)
        if not self.levels.count():  # the levels could not be read: the engine checks the number given
            for n in range(1, 21):
                item = QListWidgetItem(f"Level {n}")
                item.setData(Qt.ItemDataRole.UserRole, n)
                self.levels.addItem(item)
        self.levels.setCurrentRow(min(max(0, current_level), self.levels.count() - 1))
        self.levels.setEnabled(False)
        self.next_level.toggled.connect(lambda on: self.levels.setEnabled(not on))
        self.levels.itemDoubleClicked.connect(lambda _i: self.accept())
        form = QFormLayout()
        form.addRow(self.next_level)
        form.addRow("Chosen &level", self.levels)
        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Escalate")
        buttons.button(QDialogButtonBox.StandardButton.Cancel).setText("Don't escalate")
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(buttons)

    def chosen(self) -> int | None:
        item = self.levels.currentItem()
        if self.next_level.isChecked() or item is None:
            return None
        return int(item.data(Qt.ItemDataRole.UserRole))


class AssignDialog(QDialog):
    """Re-assign to a team or a person, with a reason kept in the assignment history."""

    def __init__(self, choices: dict[str, list[str]], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Re-assign")
        self.kind = QComboBox()
        self.kind.addItems(["team", "person"])
        self.target = QComboBox()
        self.target.setEditable(True)
        self._choices = choices
        self.kind.currentTextChanged.connect(self._fill)
        self._fill("team")
        self.reason = QLineEdit()
        form = QFormLayout()
        form.addRow("Assign to", self.kind)
        form.addRow("&Who", self.target)
        form.addRow("&Reason", self.reason)
        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(buttons)
        self.setTabOrder(self.kind, self.target)

    def _fill(self, kind: str) -> None:
        """Teams by handle; people by name with their handle, and who is on call now marked."""
        self.target.clear()
        if kind == "team":
            self.target.addItems(self._choices.get("teams", []))
            return
        fill_people(self.target, self._choices)

    def values(self) -> dict[str, Any]:
        kind = self.kind.currentText()
        who = chosen_handle(self.target) or None
        return {
            "team": who if kind == "team" else None,
            "person": who if kind == "person" else None,
            "reason": self.reason.text().strip(),
        }


class ClassifyDialog(QDialog):
    """An open incident's category (the SLA configuration of the new one applies) and sensitive flag."""

    def __init__(
        self,
        choices: dict[str, list[str]],
        *,
        title: str,
        category: str,
        sensitive: bool,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("Classify")
        self._was = (category, sensitive)
        self.category = QComboBox()
        self.category.setObjectName("category")
        self.category.setEditable(True)
        self.category.addItems(sorted({*choices.get("categories", []), category}))
        self.category.setCurrentText(category)
        self.sensitive = _sensitive_box()
        self.sensitive.setChecked(sensitive)
        note = QLabel(
            "The SLA deadlines are worked out again from when the incident opened; a breach already recorded "
            "stays recorded."
        )
        note.setWordWrap(True)
        self.error = _error_label()
        form = QFormLayout()
        form.addRow(QLabel(title))
        form.addRow("&Category", self.category)
        form.addRow("", self.sensitive)
        buttons = QDialogButtonBox()
        buttons.addButton("Save", QDialogButtonBox.ButtonRole.AcceptRole)
        buttons.addButton("Back", QDialogButtonBox.ButtonRole.RejectRole)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        for part in (note, self.error, buttons):
            layout.addWidget(part)
        self.category.setFocus()

    def values(self) -> dict[str, Any]:
        """Only what the operator changed (engine.api.classify's keywords); {} when nothing was."""
        category, sensitive = self.category.currentText().strip(), self.sensitive.isChecked()
        out: dict[str, Any] = {}
        if category != self._was[0]:
            out["category"] = category
        if sensitive != self._was[1]:
            out["sensitive"] = sensitive
        return out

    def accept(self) -> None:
        if not self.category.currentText().strip():
            self.error.setText("a category is needed")
            self.error.show()
            return
        super().accept()


def ask(dialog: QDialog) -> bool:
    dialog.setWindowModality(Qt.WindowModality.ApplicationModal)
    return dialog.exec() == QDialog.DialogCode.Accepted
