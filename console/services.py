"""What every console window is handed: the engine context, the database worker and who is signed in.

Widgets call engine functions only through here (engine.api for actions, engine.config_io for editors, engine
query modules for reads), always on the worker, never on the GUI thread.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from PySide6.QtCore import QObject, Signal

from console.worker import DbWorker
from engine.context import AppContext
from engine.errors import WatchkeeperError
from engine.models import Role

ROLE_RANK = {Role.OPERATOR.value: 0, Role.SUPERVISOR.value: 1, Role.ADMIN.value: 2}


@dataclass
class SignedIn:
    operator_id: int | None
    username: str
    display_name: str
    role: str

    def can(self, role: Role) -> bool:
        return ROLE_RANK.get(self.role, -1) >= ROLE_RANK[role.value]


class PermissionDenied(WatchkeeperError):
    pass


class ConsoleServices(QObject):
    """Shared by all windows of one console."""

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

    def require(self, role: Role) -> None:
        if not self.operator.can(role):
            raise PermissionDenied(
                f"{self.operator.display_name} is signed in as {self.operator.role}; this needs {role.value}"
            )

    def at_shutdown(self, stop: Callable[[], None]) -> None:
        """Run `stop` when the console shuts down (background threads that are not the worker)."""
        self._on_shutdown.append(stop)

    def shutdown(self) -> None:
        for stop in reversed(self._on_shutdown):
            stop()
        self._on_shutdown.clear()
        self.worker.shutdown()
