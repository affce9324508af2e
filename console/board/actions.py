"""Operator actions on incidents: every one is an engine.api call on the worker, as the signed-in operator.

Buttons, the context menu, keyboard shortcuts and the command line all end here, so they behave the same.
Results and engine errors come back as `done`/`failed` signals the window shows in its status bar.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, Signal

from console.services import ConsoleServices
from engine.errors import WatchkeeperError


class IncidentActions(QObject):
    done = Signal(str, list)  # (message for the status bar, incident ids touched)
    failed = Signal(str)  # message for the operator
    created = Signal(int)  # a new incident's id

    def __init__(self, services: ConsoleServices, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.services = services

    @property
    def _by(self) -> str:
        return self.services.actor

    def _run(self, what: str, ids: list[int], call: Callable[[Any, int], Any], verb: str) -> None:
        def job() -> list[tuple[int, str | None]]:
            from engine import api  # imported late: the console starts even if the engine API is missing

            results: list[tuple[int, str | None]] = []
            for incident_id in ids:
                try:
                    call(api, incident_id)
                    results.append((incident_id, None))
                except WatchkeeperError as exc:
                    results.append((incident_id, str(exc)))
            return results

        self._submit(what, ids, job, verb)

    def _submit(
        self, what: str, ids: list[int], job: Callable[[], list[tuple[int, str | None]]], verb: str
    ) -> None:
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
        ctx, by = self.services.ctx, self._by

        def job() -> list[tuple[int, str | None]]:
            from engine import api

            answers = api.acknowledge_many(ctx, ids, by=by, via="console")
            return [
                (incident_id, str(answer["message"]) if "error" in answer else None)
                for incident_id, answer in zip(ids, answers, strict=True)
            ]

        self._submit("Acknowledge", ids, job, "Acknowledged")

    def resolve(self, ids: list[int], note: str = "") -> None:
        ctx, by = self.services.ctx, self._by
        self._run(
            "Resolve", ids, lambda api, i: api.resolve(ctx, i, by=by, via="console", note=note), "Resolved"
        )

    def escalate(self, ids: list[int], level: int | None = None) -> None:
        ctx, by = self.services.ctx, self._by
        label = "Escalated" if level is None else f"Escalated to level {level}:"
        self._run("Escalate", ids, lambda api, i: api.escalate(ctx, i, by=by, level=level), label)

    def add_note(self, ids: list[int], text: str) -> None:
        ctx, by = self.services.ctx, self._by
        if not text.strip():
            self.failed.emit("Add note: the note is empty")
            return
        self._run("Add note", ids, lambda api, i: api.add_note(ctx, i, by=by, text=text), "Note added to")

    def cancel(self, ids: list[int], reason: str) -> None:
        ctx, by = self.services.ctx, self._by
        if not reason.strip():
            self.failed.emit("Cancel: a reason is needed")
            return
        self._run("Cancel", ids, lambda api, i: api.cancel(ctx, i, reason=reason, by=by), "Cancelled")

    def reopen(self, ids: list[int], reason: str = "") -> None:
        ctx, by = self.services.ctx, self._by
        self._run("Reopen", ids, lambda api, i: api.reopen(ctx, i, by=by, reason=reason), "Reopened")

    def assign(
        self, ids: list[int], *, team: str | None = None, person: str | None = None, reason: str = ""
    ) -> None:
        ctx, by = self.services.ctx, self._by
        self._run(
            "Assign",
            ids,
            lambda api, i: api.assign(ctx, i, by=by, team=team, person=person, reason=reason),
            f"Assigned to {team or person}:",
        )

    def trigger(self, fields: dict[str, Any]) -> None:
        """A new incident (a call that came in by phone): engine.api.trigger with the dialog's fields."""
        ctx, by = self.services.ctx, self._by

        def job() -> int:
            from engine import api

            result = api.trigger(ctx, actor=by, source="operator", **fields)
            return int(result.incident_id)

        def finished(incident_id: int) -> None:
            self.created.emit(incident_id)
            self.done.emit(f"Incident #{incident_id} opened", [incident_id])

        def crashed(exc: Exception) -> None:
            self.failed.emit(f"New incident failed: {exc}")

        self.services.worker.call(job, finished, crashed, what="opening an incident")
