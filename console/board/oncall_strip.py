"""Who is on call now, per team and schedule, in one line above the board: "Fire team: Thandi Nkosi until
20:00, next Sipho Dlamini from 20:00". A schedule that is a team's on-call schedule is shown under the team's
name (the tooltip names the schedule too); a schedule no team names is shown under its own. Read from
engine.oncall.on_call_now on the database worker once the board has loaded, every minute after that, and when
this console saves configuration (a schedule, an override or a team changed)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QLabel, QSizePolicy, QWidget

from console.services import ConsoleServices

REFRESH_MS = 60_000


def _at(when: datetime, now: datetime) -> str:
    """14:00 today; "Mon 08:00" within the week; "12 Mar 08:00" further away."""
    local, today = when.astimezone(), now.astimezone()
    if local.date() == today.date():
        return local.strftime("%H:%M")
    if local - today < timedelta(days=6):
        return local.strftime("%a %H:%M")
    return local.strftime("%d %b %H:%M")


def label(entry: dict[str, Any]) -> str:
    """The teams whose on-call schedule it is ("Fire team / Hazmat"), else the schedule's own name."""
    teams = entry.get("teams") or []
    return " / ".join(teams) if teams else str(entry["name"])


def schedule_text(entry: dict[str, Any], now: datetime, *, full: bool = False) -> str:
    """One team or schedule: who now and until when, who next and from when. `full` (the tooltip) also names
    the schedule a team's line comes from."""
    people = " and ".join(entry["now"]) if entry["now"] else "nobody on call"
    name = label(entry)
    if full and entry.get("teams"):
        name += f" (schedule {entry['name']})"
    text = f"{name}: {people}"
    if entry["now"] and entry["until"] is not None:
        text += f" until {_at(entry['until'], now)}"
    if entry["next"]:
        text += f", next {' and '.join(entry['next'])}"
        if entry["next_from"] is not None:
            text += f" from {_at(entry['next_from'], now)}"
    return text


def strip_text(entries: list[dict[str, Any]], now: datetime) -> str:
    if not entries:
        return "On call: no schedules set up"
    return "On call — " + "  ·  ".join(schedule_text(e, now) for e in entries)


class OnCallStrip(QLabel):
    def __init__(self, services: ConsoleServices, parent: QWidget | None = None) -> None:
        super().__init__("On call: …", parent)
        self.services = services
        self.setObjectName("onCallStrip")
        self.setTextInteractionFlags(Qt.TextInteractionFlag.NoTextInteraction)
        # Many schedules make a long line: it is cut at the window's edge (the tooltip has every schedule)
        # rather than widening the window past the screen.
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.setToolTip(
            "Who is on call now, per team and schedule, and who comes next (refreshed every minute)"
        )
        self.entries: list[dict[str, Any]] = []
        self._timer = QTimer(self)
        self._timer.setInterval(REFRESH_MS)
        self._timer.timeout.connect(self.refresh)
        services.config_changed.connect(self._config_changed)  # a method: disconnected when the strip goes

    def start(self) -> None:
        if not self._timer.isActive():
            self._timer.start()
            self.refresh()

    def _config_changed(self, _kind: str) -> None:
        self.refresh()

    def refresh(self) -> None:
        now = self.services.ctx.clock.now()

        def job(session: Any) -> list[dict[str, Any]]:
            from engine import oncall

            return oncall.on_call_now(session, now)

        self.services.worker.submit(
            job, lambda entries: self._show(entries, now), self._failed, what="who is on call"
        )

    def _show(self, entries: list[dict[str, Any]], now: datetime) -> None:
        self.entries = entries
        text = strip_text(entries, now)
        self.setText(text)
        self.setToolTip("\n".join(schedule_text(e, now, full=True) for e in entries) or text)

    def _failed(self, exc: Exception) -> None:
        self.setText(f"On call: not known ({exc})")

    def stop(self) -> None:
        self._timer.stop()
