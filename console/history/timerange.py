"""A From … to … filter to the second (the audit trail, the message log): the end follows the clock until
someone changes it, so a search "until now" keeps meaning now as the shift goes on."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from PySide6.QtCore import QDateTime
from PySide6.QtWidgets import QDateTimeEdit

from engine.clock import Clock


def to_qdatetime(value: datetime) -> QDateTime:
    return QDateTime.fromSecsSinceEpoch(int(value.timestamp()))


def from_qdatetime(value: QDateTime) -> datetime:
    return datetime.fromtimestamp(value.toSecsSinceEpoch(), tz=UTC)


class TimeRange:
    def __init__(self, clock: Clock, back: timedelta) -> None:
        self.clock = clock
        now = clock.now()
        self.since = QDateTimeEdit(to_qdatetime(now - back))
        self.until = QDateTimeEdit(to_qdatetime(now + timedelta(minutes=1)))
        for edit in (self.since, self.until):
            edit.setCalendarPopup(True)
            edit.setDisplayFormat("yyyy-MM-dd HH:mm:ss")
        self.until_chosen = False
        self.until.dateTimeChanged.connect(lambda _v: setattr(self, "until_chosen", True))

    def follow_clock(self) -> None:
        """Before a search: the end is a minute from now unless someone chose it."""
        if not self.until_chosen:
            self.until.blockSignals(True)
            self.until.setDateTime(to_qdatetime(self.clock.now() + timedelta(minutes=1)))
            self.until.blockSignals(False)

    def bounds(self) -> tuple[datetime, datetime]:
        return from_qdatetime(self.since.dateTime()), from_qdatetime(self.until.dateTime())
