"""What every console window is handed: the engine context, the database worker and who is signed in.

Widgets call engine functions only through here (engine.api for actions, engine.config_io for editors, engine
query modules for reads), always on the worker, never on the GUI thread. Who may do what is the engine's rule
book (engine.permissions): widgets ask `can` to enable or hide a control, and every action is checked again,
against the account as it is in the database at that moment, before the engine is called (`act`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from PySide6.QtCore import QObject, Signal

from console.worker import DbWorker
from engine.context import AppContext
from engine.db import read_session
from engine.permissions import Action, Identity, PermissionDenied, authorize

__all__ = ["ConsoleServices", "PermissionDenied", "SignedIn"]

T = TypeVar("T")


@dataclass
class SignedIn:
    operator_id: int | None
    username: str
    display_name: str
    role: str
    person_id: int | None = None
    must_change_password: bool = False
    previous_sign_in_at: datetime | None = None  # before this sign-in (what the handover is measured from)
    signed_in_at: datetime | None = None

    def identity(self) -> Identity:
        return Identity(
            name=self.username,
            role=self.role,
            kind="account",
            account_id=self.operator_id,
            display_name=self.display_name,
            person_id=self.person_id,
            via="console",
        )

    def can(self, action: Action) -> bool:
        return self.identity().can(action)


class ConsoleServices(QObject):
    """Shared by all windows of one console (one signed-in person: a new sign-in makes new services)."""

    # Emitted after the change feed saw new events: the ids of incidents that changed.
    incidents_changed = Signal(list)
    # Emitted when configuration (policies, people, templates…) changed, so pickers can reload.
    config_changed = Signal(str)

    def __init__(self, ctx: AppContext, operator: SignedIn, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self.operator = operator
        self.worker = DbWorker(ctx.sessions, self)
        self._on_shutdown: list[Callable[[], None]] = []

    @property
    def actor(self) -> str:
        return self.operator.username

    @property
    def identity(self) -> Identity:
        return self.operator.identity()

    def can(self, action: Action) -> bool:
        """For showing or enabling a control; the action itself is checked again when it runs."""
        return self.operator.can(action)

    def require(self, action: Action) -> None:
        """PermissionDenied (with the role it needs) unless the signed-in person may do this."""
        self.identity.require(action)

    def authorized(self, action: Action) -> Identity:
        """On the worker: the signed-in person, checked against the account as it is now in the database."""
        with read_session(self.ctx.sessions) as session:
            return authorize(session, self.identity, action)

    def act(
        self,
        action: Action,
        job: Callable[[Identity], T],
        on_done: Callable[[T], Any] | None = None,
        on_error: Callable[[Exception], Any] | None = None,
        *,
        what: str = "",
    ) -> None:
        """Run `job(identity)` on the worker once the rule book allows `action` (PermissionDenied otherwise,
        delivered to `on_error`)."""

        def run() -> T:
            return job(self.authorized(action))

        self.worker.call(run, on_done, on_error, what=what or action.value)

    def at_shutdown(self, stop: Callable[[], None]) -> None:
        """Run `stop` when the console shuts down (background threads that are not the worker)."""
        self._on_shutdown.append(stop)

    def shutdown(self) -> None:
        for stop in reversed(self._on_shutdown):
            stop()
        self._on_shutdown.clear()
        self.worker.shutdown()
