"""Operator actions on incidents: every one is an engine.api call on the worker, as the signed-in operator.

Buttons, the context menu, keyboard shortcuts and the command line all end here, so they behave the same.
Each one is checked against the engine's rule book (engine.permissions) before it is sent, and again on the
worker against the account as it is then, so the console refuses exactly what the command line and the HTTP
API refuse. Results, refusals and engine errors come back as `done`/`failed` signals the window shows in its
status bar.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, Signal

from console.services import ConsoleServices
from engine.errors import WatchkeeperError
from engine.permissions import Action


class IncidentActions(QObject):
    done = Signal(str, list)  # (message for the status bar, incident ids touched)
    failed = Signal(str)  # message for the operator
    created = Signal(int)  # a new incident's id

    def __init__(self, services: ConsoleServices, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.services = services

    def allowed(self, action: Action, what: str) -> bool:
        """Whether the signed-in person may; a refusal is reported (the role it needs) and nothing is sent."""
        if self.services.can(action):
            return True
        try:
            self.services.require(action)
        except WatchkeeperError as exc:
            self.failed.emit(f"{what}: {exc}")
        return False

    def _run(
        self, action: Action, what: str, ids: list[int], call: Callable[[Any, int, str], Any], verb: str
    ) -> None:
        def job() -> list[tuple[int, str | None]]:
            from engine import api  # imported late: the console starts even if the engine API is missing

            by = self.services.authorized(action).name
            results: list[tuple[int, str | None]] = []
            for incident_id in ids:
                try:
                    call(api, incident_id, by)
                    results.append((incident_id, None))
                except WatchkeeperError as exc:
                    results.append((incident_id, str(exc)))
            return results

        self._submit(action, what, ids, job, verb)

    def _submit(
        self,
        action: Action,
        what: str,
        ids: list[int],
        job: Callable[[], list[tuple[int, str | None]]],
        verb: str,
    ) -> None:
        if not self.allowed(action, what):
            return
        if not ids:
            self.failed.emit(f"{what}: select an incident first (or give its number)")
            return

        def finished(results: list[tuple[int, str | None]]) -> None:
            ok = [i for i, err in results if err is None]
            errors = [f"#{i}: {err}" for i, err in results if err is not None]
            if ok:
                self.done.emit(f"{verb} " + ", ".join(f"#{i}" for i in ok), ok)
            if errors:
                self.failed.emit(f"{what} failed — " + "; ".join(errors))

        def crashed(exc: Exception) -> None:
            self.failed.emit(f"{what} failed: {exc}")

        self.services.worker.call(job, finished, crashed, what=what)

    def acknowledge(self, ids: list[int]) -> None:
        """A whole selection in one transaction (engine.api.acknowledge_many): one commit, and an incident
        another operator handled meanwhile is reported without holding up the rest."""
        ctx = self.services.ctx

        def job() -> list[tuple[int, str | None]]:
            from engine import api

            by = self.services.authorized(Action.ACKNOWLEDGE).name
            answers = api.acknowledge_many(ctx, ids, by=by, via="console")
            return [
                (incident_id, str(answer["message"]) if "error" in answer else None)
                for incident_id, answer in zip(ids, answers, strict=True)
            ]

        self._submit(Action.ACKNOWLEDGE, "Acknowledge", ids, job, "Acknowledged")

    def resolve(self, ids: list[int], note: str = "") -> None:
        ctx = self.services.ctx
        self._run(
            Action.RESOLVE,
            "Resolve",
            ids,
            lambda api, i, by: api.resolve(ctx, i, by=by, via="console", note=note),
            "Resolved",
        )

    def start_work(self, ids: list[int]) -> None:
        """ "I'm on it": in progress (acknowledged first when it still pages, so all paging ends)."""
        ctx = self.services.ctx
        self._run(
            Action.START_WORK,
            "I'm on it",
            ids,
            lambda api, i, by: api.start_work(ctx, i, by=by, via="console"),
            "In progress:",
        )

    def escalate(self, ids: list[int], level: int | None = None) -> None:
        ctx = self.services.ctx
        label = "Escalated" if level is None else f"Escalated to level {level}:"
        self._run(
            Action.ESCALATE,
            "Escalate",
            ids,
            lambda api, i, by: api.escalate(ctx, i, by=by, level=level),
            label,
        )

    def add_note(self, ids: list[int], text: str) -> None:
        ctx = self.services.ctx
        if not text.strip():
            self.failed.emit("Add note: the note is empty")
            return
        self._run(
            Action.ADD_NOTE,
            "Add note",
            ids,
            lambda api, i, by: api.add_note(ctx, i, by=by, text=text),
            "Note added to",
        )

    def cancel(self, ids: list[int], reason: str) -> None:
        ctx = self.services.ctx
        if not reason.strip():
            self.failed.emit("Cancel: a reason is needed")
            return
        self._run(
            Action.CANCEL,
            "Cancel",
            ids,
            lambda api, i, by: api.cancel(ctx, i, reason=reason, by=by),
            "Cancelled",
        )

    def reopen(self, ids: list[int], reason: str = "") -> None:
        ctx = self.services.ctx
        self._run(
            Action.REOPEN,
            "Reopen",
            ids,
            lambda api, i, by: api.reopen(ctx, i, by=by, reason=reason),
            "Reopened",
        )

    def assign(
        self, ids: list[int], *, team: str | None = None, person: str | None = None, reason: str = ""
    ) -> None:
        """Re-assign; `person="me"` is the person linked to the signed-in account."""
        ctx = self.services.ctx
        person_id = self.services.operator.person_id
        if person == "me" and person_id is None:
            self.failed.emit(
                f"Assign to me: {self.services.operator.display_name}'s account is not linked to a person "
                "record (an administrator links it under Editors → Accounts)"
            )
            return

        def call(api: Any, incident_id: int, by: str) -> Any:
            who = _person_handle(ctx, person_id) if person == "me" else person
            return api.assign(ctx, incident_id, by=by, team=team, person=who, reason=reason)

        self._run(
            Action.ASSIGN,
            "Assign",
            ids,
            call,
            "Assigned to " + ("you" if person == "me" else f"{team or person}:"),
        )

    def classify(self, ids: list[int], *, category: str | None = None, sensitive: bool | None = None) -> None:
        """A new category (its SLA deadlines follow), the sensitive flag, or both."""
        ctx = self.services.ctx
        if category is None and sensitive is None:
            self.failed.emit("Classify: nothing to change")
            return
        said = [f"category {category}"] if category is not None else []
        if sensitive is not None:
            said.append("sensitive" if sensitive else "not sensitive")
        self._run(
            Action.CLASSIFY,
            "Classify",
            ids,
            lambda api, i, by: api.classify(ctx, i, by=by, category=category, sensitive=sensitive),
            f"Classified ({', '.join(said)}):",
        )

    def trigger(self, fields: dict[str, Any]) -> None:
        """A new incident (a call that came in by phone): engine.api.trigger with the dialog's fields."""
        ctx = self.services.ctx
        if not self.allowed(Action.OPEN_INCIDENT, "New incident"):
            return

        def job() -> int:
            from engine import api

            by = self.services.authorized(Action.OPEN_INCIDENT).name
            result = api.trigger(ctx, actor=by, source="operator", **fields)
            return int(result.incident_id)

        def finished(incident_id: int) -> None:
            self.created.emit(incident_id)
            self.done.emit(f"Incident #{incident_id} opened", [incident_id])

        def crashed(exc: Exception) -> None:
            self.failed.emit(f"New incident failed: {exc}")

        self.services.worker.call(job, finished, crashed, what="opening an incident")


def _person_handle(ctx: Any, person_id: int | None) -> str:
    """On the worker: the handle of the person an account is linked to."""
    from engine.db import read_session
    from engine.errors import NotFound
    from engine.models import Person

    with read_session(ctx.sessions) as session:
        person = session.get(Person, person_id) if person_id is not None else None
        if person is None:
            raise NotFound("the person record linked to this account no longer exists")
        return person.handle
