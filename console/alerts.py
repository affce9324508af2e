"""Alerting an operator who is looking elsewhere: a short sound and a tray notification for a new critical
incident and for an SLA breach, mutable for the rest of a shift.

The sound is resources/sounds/alert.wav (generated with the wave module if it is missing). Sound and tray are
both optional: on a machine without audio or without a system tray (a headless test run) they degrade
silently, and the `alerted` signal still fires, so the window's status bar and the tests see every alert.
"""

from __future__ import annotations

import logging
import math
import struct
import wave
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, QUrl, Signal
from PySide6.QtGui import QIcon
from PySide6.QtWidgets import QSystemTrayIcon

from console.board import format as fmt

log = logging.getLogger(__name__)


def sound_path() -> Path:
    return Path(str(resources.files("resources") / "sounds" / "alert.wav"))


def icon_path() -> Path:
    return Path(str(resources.files("resources") / "icons" / "watchkeeper.svg"))


def write_alert_wav(path: Path, rate: int = 22_050) -> Path:
    """Two rising tones, 0.45 s, 16-bit mono: audible over a room, short enough not to annoy."""
    frames = bytearray()
    for freq, seconds in ((880.0, 0.18), (0.0, 0.05), (1320.0, 0.22)):
        count = int(rate * seconds)
        for n in range(count):
            # Fade the ends of each tone so it does not click.
            envelope = min(1.0, n / (rate * 0.01), (count - n) / (rate * 0.01))
            value = 0.45 * envelope * math.sin(2 * math.pi * freq * n / rate) if freq else 0.0
            frames += struct.pack("<h", int(value * 32767))
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(bytes(frames))
    return path


class AlertCenter(QObject):
    alerted = Signal(str, str)  # (title, text)

    def __init__(self, parent: QObject | None = None, *, sound: bool = True, tray: bool = True) -> None:
        super().__init__(parent)
        self.muted = False
        self._want_sound = sound
        self._want_tray = tray
        self._effect: Any = None
        self._tray: QSystemTrayIcon | None = None
        self._seen: set[tuple[int, str]] = set()
        self.count = 0

    # -- what deserves an alert -------------------------------------------------------------------------------

    def consider(self, row: dict[str, Any], previous: dict[str, Any] | None) -> None:
        """A row that arrived through the change feed (previous is None for a new incident)."""
        incident_id = int(row["id"])
        if previous is None and row.get("severity") == "critical" and fmt.is_unacknowledged(row):
            self._alert(
                incident_id, "new", f"New critical incident #{incident_id}", str(row.get("summary", ""))
            )
        for which in ("response", "resolution"):
            key = f"{which}_breached_at"
            if (
                row.get(key) is not None
                and (previous is None or previous.get(key) is None)
                and fmt.is_open(row)
            ):
                self._alert(
                    incident_id,
                    which,
                    f"{which.title()} SLA breached: #{incident_id}",
                    str(row.get("summary", "")),
                )

    def check_deadlines(self, rows: Any, now: datetime) -> None:
        """Deadlines passing on the board's clock, before any engine has marked the breach."""
        for incident_id, which, summary in _passed(rows, now):
            if (incident_id, which) not in self._seen:
                self._alert(incident_id, which, f"{which.title()} SLA breached: #{incident_id}", summary)

    def remember(self, rows: Any, now: datetime) -> None:
        """Rows on the board at start: breaches already there are not news."""
        for incident_id, which, _summary in _passed(rows, now):
            self._seen.add((incident_id, which))
        for row in rows:
            for which in ("response", "resolution"):
                if row.get(f"{which}_breached_at"):
                    self._seen.add((int(row["id"]), which))

    def _alert(self, incident_id: int, kind: str, title: str, text: str) -> None:
        if (incident_id, kind) in self._seen:
            return
        self._seen.add((incident_id, kind))
        self.count += 1
        self.alerted.emit(title, text)
        if self.muted:
            return
        self._play()
        self._notify(title, text)

    # -- sound and tray -----------------------------------------------------------------------------------

    def _play(self) -> None:
        if not self._want_sound:
            return
        try:
            if self._effect is None:
                from PySide6.QtMultimedia import QSoundEffect

                path = sound_path()
                if not path.exists():
                    write_alert_wav(path)
                self._effect = QSoundEffect(self)
                self._effect.setSource(QUrl.fromLocalFile(str(path)))
                self._effect.setVolume(0.8)
            self._effect.play()
        except Exception as exc:  # no audio back end: the alert still shows
            log.info("alert sound unavailable: %s", exc)
            self._want_sound = False

    def _notify(self, title: str, text: str) -> None:
        if not self._want_tray or not QSystemTrayIcon.isSystemTrayAvailable():
            return
        if self._tray is None:
            self._tray = QSystemTrayIcon(QIcon(str(icon_path())), self)
            self._tray.setToolTip("Watchkeeper")
            self._tray.show()
        self._tray.showMessage(title, text, QSystemTrayIcon.MessageIcon.Warning, 10_000)

    def set_muted(self, muted: bool) -> None:
        self.muted = muted


def _passed(rows: Any, now: datetime) -> list[tuple[int, str, str]]:
    """(incident id, "response"/"resolution", summary) for every live deadline already past `now`.

    Cheap comparisons first: this runs every second over the whole board."""
    out = []
    for row in rows:
        if row.get("status") not in fmt.OPEN_STATUSES or row.get("sensitive"):
            continue
        due = row.get("response_due_at")
        if due is not None and due <= now and row.get("acknowledged_at") is None:
            out.append((int(row["id"]), "response", str(row.get("summary", ""))))
        due = row.get("resolution_due_at")
        if due is not None and due <= now:
            out.append((int(row["id"]), "resolution", str(row.get("summary", ""))))
    return out
