"""The signed-in person's notifications: what the engine wrote for them, for their role and for their teams
(SLA warnings and breaches, overdue reminders, overdue items escalated, incidents assigned to a team), newest
first with the unread ones on top. "For" says whose it is (you, a team, a role); a team's or a role's
notification is read once for all of them, and "Read by" names the colleague who dealt with it.

Enter on a notification marks it read and opens what it is about (`open_link`: an incident, or a workflow
item); *Mark all read* marks every one. The list reloads when the board's change feed sees changes (the engine
writes a notification in the same pass as the incident's event) and every REFRESH_MS otherwise; every query
runs on the database worker and is checked against the rule book (Action.NOTIFICATIONS) as it runs.
"""

from __future__ import annotations

from datetime import datetime

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QFont
from PySide6.QtWidgets import (
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from console.keyed_list import KeyedList
from console.services import ConsoleServices
from engine import inbox
from engine.db import read_session
from engine.permissions import Action, Identity

REFRESH_MS = 30_000
LIMIT = 200


class NotificationsPanel(QWidget):
    open_link = Signal(str, int)  # ("incident" or "item", its id)
    unread_changed = Signal(int)
    loaded = Signal()
    marked = Signal(int)  # how many notifications were marked read
    failed = Signal(str)
    back = Signal()  # Esc: back to the board's table

    def __init__(
        self, services: ConsoleServices, parent: QWidget | None = None, *, start: bool = True
    ) -> None:
        super().__init__(parent)
        self.services = services
        self.notices: list[inbox.NoticeRecord] = []
        self.unread = 0
        self.status = QLabel("")
        self.status.setObjectName("notificationsStatus")
        self.list = KeyedList("notificationList", ["When", "Notification", "For", "Read by", "Details"])
        # When, For and Read by are as wide as what they say, in any font; the notification gets 380 px.
        header = self.list.header()
        for column in (0, 2, 3):
            header.setSectionResizeMode(column, QHeaderView.ResizeMode.ResizeToContents)
        self.list.setColumnWidth(1, 380)
        self.list.enter.connect(self.open_current)
        self.list.on_key("Esc", self.back.emit)
        self.mark_all = QPushButton("Mark all read")
        self.mark_all.setObjectName("markAllRead")
        self.mark_all.clicked.connect(self.mark_all_read)
        top = QHBoxLayout()
        top.addWidget(self.status, 1)
        top.addWidget(self.mark_all)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 2, 4, 2)
        layout.addLayout(top)
        layout.addWidget(self.list, 1)
        # Changes come in bursts (a pass of the engine): one reload for the burst.
        self._soon = QTimer(self)
        self._soon.setSingleShot(True)
        self._soon.setInterval(500)
        self._soon.timeout.connect(self.refresh)
        services.incidents_changed.connect(self._changes_seen)  # a method: disconnected when the panel goes
        self._timer = QTimer(self)
        self._timer.setInterval(REFRESH_MS)
        self._timer.timeout.connect(self.refresh)
        if start:
            self._timer.start()
            self.refresh()

    # -- loading ----------------------------------------------------------------------------------------------

    def refresh(self) -> None:
        ctx = self.services.ctx

        def job(who: Identity) -> tuple[list[inbox.NoticeRecord], int]:
            recipient = inbox.Recipient.of(who)
            with read_session(ctx.sessions) as session:
                found = inbox.notifications(session, recipient, unread_first=True, limit=LIMIT)
                return found, inbox.unread_count(session, recipient)

        self.services.act(Action.NOTIFICATIONS, job, self._show, self._failed, what="notifications")

    def _changes_seen(self, _ids: list[int]) -> None:
        self._soon.start()

    def _show(self, result: tuple[list[inbox.NoticeRecord], int]) -> None:
        notices, unread = result
        current = self.current()
        self.notices = notices
        self.list.clear()
        bold = QFont(self.list.font())
        bold.setBold(True)
        for notice in notices:
            title = ("● " if notice.unread else "") + notice.title
            item = QTreeWidgetItem(
                [
                    _when(notice.created_at),
                    title,
                    for_whom(notice),
                    notice.read_by or "",
                    " ".join(notice.body.split()),
                ]
            )
            item.setToolTip(1, notice.title)
            item.setToolTip(4, notice.body)
            if notice.read_at is not None and notice.read_by:
                item.setToolTip(3, f"Marked read by {notice.read_by} at {_when(notice.read_at)}")
            if notice.unread:
                for column in range(5):
                    item.setFont(column, bold)
            self.list.addTopLevelItem(item)
        ids = [n.id for n in notices]
        if notices:
            row = ids.index(current.id) if current is not None and current.id in ids else 0
            self.list.setCurrentItem(self.list.topLevelItem(row))
        self.status.setText(f"{unread} unread" if notices else "No notifications")
        if unread != self.unread:
            self.unread = unread
            self.unread_changed.emit(unread)
        self.loaded.emit()

    def _failed(self, exc: Exception) -> None:
        self.status.setText(f"⚠ {exc}")
        self.failed.emit(str(exc))

    # -- acting -----------------------------------------------------------------------------------------------

    def current(self) -> inbox.NoticeRecord | None:
        row = self.list.current_row()
        return self.notices[row] if 0 <= row < len(self.notices) else None

    def focus(self) -> None:
        self.list.setFocus(Qt.FocusReason.ShortcutFocusReason)

    def open_current(self) -> None:
        """Mark the notification read and open what it is about."""
        notice = self.current()
        if notice is None:
            return
        if notice.unread:
            ctx, notice_id = self.services.ctx, notice.id
            self.services.act(
                Action.NOTIFICATIONS,
                lambda who: inbox.mark_read(ctx, who, notice_id),
                lambda _r: self.refresh(),
                self._failed,
                what="mark notification read",
            )
        link = notice.link
        if link is not None:
            self.open_link.emit(str(link["kind"]), int(link["id"]))

    def mark_all_read(self) -> None:
        ctx = self.services.ctx

        def done(count: int) -> None:
            self.marked.emit(count)
            self.refresh()

        self.services.act(
            Action.NOTIFICATIONS,
            lambda who: inbox.mark_all_read(ctx, who),
            done,
            self._failed,
            what="mark all notifications read",
        )

    def stop(self) -> None:
        self._timer.stop()
        self._soon.stop()


def for_whom(notice: inbox.NoticeRecord) -> str:
    """Whose notification, in the operator's words: "You", "Fire rescue (team)", "Supervisors"."""
    if notice.to == "you":
        return "You"
    if notice.to.startswith("team:"):
        return f"{notice.team or notice.to[5:]} (team)"
    return notice.to.removeprefix("role:").capitalize() + "s"


def _when(at: datetime) -> str:
    return at.astimezone().strftime("%a %d %b %H:%M")
