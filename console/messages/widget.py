"""The Messages tab: every outbox message (engine.messages), newest first, filtered by status, channel,
person, incident and time, to the second; **R** retries a failed message, **S** sends one again on another
of the person's channels, **Enter** opens its incident on the board.

Searches and actions run on the database worker; the engine's refusals ("only a failed message can be
retried") are shown in the status bar as they are. A page is 100 messages; *More* adds the next hundred.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from console import reach
from console.history.records import Column, RecordTableModel, record_table, replies, to_second
from console.history.timerange import TimeRange
from console.services import ConsoleServices
from engine import messages, wording
from engine.messages import MessageRecord
from engine.permissions import Action

PAGE_SIZE = 100
ANY = "Any"


def cost(r: MessageRecord) -> str:
    if r.price is None:
        return ""
    return f"{r.price.normalize():f} {r.currency or ''}".strip()


def status_text(r: MessageRecord) -> str:
    text = wording.message_status_text(r.status, r.simulated)
    return f"{text}, held: {r.hold_reason.replace('_', ' ')}" if r.hold_reason else text


MESSAGE_COLUMNS: list[Column[MessageRecord]] = [
    Column("When", lambda r: to_second(r.created_at), tooltip=lambda r: f"message {r.id}"),
    Column("#", lambda r: r.incident_id or "", numeric=True),
    Column("Person", lambda r: r.person_name or "", tooltip=lambda r: r.person or ""),
    Column("Channel", lambda r: r.channel),
    Column("Address", lambda r: r.address),
    Column("What", lambda r: wording.message_text(r.kind), tooltip=lambda r: r.subject),
    Column("Status", status_text, tooltip=lambda r: f"{r.attempts} attempt(s)"),
    Column("Provider id", lambda r: r.provider_id or ""),
    Column("Cost", cost),
    Column("Error", lambda r: r.error or ""),
]


def _tint(r: MessageRecord) -> str | None:
    return "breached" if r.status in ("failed", "undelivered") else None


class ChannelChooser(QDialog):
    """Send on another channel: the person's other channels, each with the address it goes to."""

    def __init__(
        self, r: MessageRecord, channels: list[tuple[str, str]], parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("Send on another channel")
        self.channel = QComboBox()
        self.channel.setObjectName("resendChannel")
        for channel, address in channels:
            self.channel.addItem(f"{channel} — {address}", channel)
        buttons = reach.do_or_back(self, "Send")
        layout = QVBoxLayout(self)
        layout.addWidget(
            QLabel(
                f"Send message {r.id} ({wording.message_text(r.kind)}, {r.channel}) to {r.person_name} on:"
            )
        )
        layout.addWidget(self.channel)
        layout.addWidget(buttons)
        self.channel.setFocus()

    def chosen(self) -> str:
        return str(self.channel.currentData() or "")


class MessagesWidget(reach.RecordTab):
    noun = "message"

    def __init__(self, services: ConsoleServices, parent: QWidget | None = None) -> None:
        super().__init__(services, parent)
        self._has_more = False

        self.status_filter = QComboBox()
        self.status_filter.setObjectName("messageStatus")
        self.status_filter.addItem(f"Status: {ANY}", "")
        for status in messages.STATUSES:
            self.status_filter.addItem(wording.message_status_text(status), status)
        self.channel_filter = QComboBox()
        self.channel_filter.setObjectName("messageChannel")
        self.channel_filter.addItem(f"Channel: {ANY}", "")
        for channel in messages.CHANNELS:
            self.channel_filter.addItem(channel, channel)
        self.person = QComboBox()
        self.person.setEditable(True)
        self.person.setObjectName("messagePerson")
        self.person.lineEdit().setPlaceholderText("Person (anyone)")
        self.person.setMinimumWidth(170)
        self.incident = QLineEdit()
        self.incident.setObjectName("messageIncident")
        self.incident.setPlaceholderText("Incident #")
        self.incident.setClearButtonEnabled(True)
        self.incident.setMaximumWidth(110)
        self.range = TimeRange(services.ctx.clock, timedelta(days=7))
        self.search_button = QPushButton("&Search")
        self.search_button.setDefault(True)

        bar = QHBoxLayout()
        bar.addWidget(self.status_filter)
        bar.addWidget(self.channel_filter)
        bar.addWidget(self.person, 1)
        bar.addWidget(self.incident)
        bar.addWidget(QLabel("From"))
        bar.addWidget(self.range.since)
        bar.addWidget(QLabel("to"))
        bar.addWidget(self.range.until)
        bar.addWidget(self.search_button)

        self.model = RecordTableModel(MESSAGE_COLUMNS, self, tint=_tint)
        self.view = record_table(self.model)
        self.view.setObjectName("messageTable")

        self.retry_button = QPushButton("Retry (R)")
        self.retry_button.setToolTip("Send a failed message once more, on the same channel")
        self.resend_button = QPushButton("Send on another channel… (S)")
        self.open_button = QPushButton("Open incident (Enter)")
        self.more_button = QPushButton("More")
        self.more_button.setToolTip(f"The next {PAGE_SIZE} older messages")
        self.status = QLabel()
        self.status.setObjectName("messagesStatus")
        actions = QHBoxLayout()
        actions.addWidget(self.retry_button)
        actions.addWidget(self.resend_button)
        actions.addWidget(self.open_button)
        actions.addWidget(self.status, 1)
        actions.addWidget(self.more_button)

        layout = QVBoxLayout(self)
        layout.addLayout(bar)
        layout.addWidget(self.view, 1)
        layout.addLayout(actions)

        self.search_button.clicked.connect(self.search)
        self.incident.returnPressed.connect(self.search)
        self.person.lineEdit().returnPressed.connect(self.search)
        self.status_filter.currentIndexChanged.connect(lambda _i: self.search())
        self.channel_filter.currentIndexChanged.connect(lambda _i: self.search())
        self.person.activated.connect(lambda _i: self.search())
        self.more_button.clicked.connect(self.more)
        self.wire(
            [
                ("R", self.retry_button, self.retry_selected),
                ("S", self.resend_button, self.resend_selected),
                ("", self.open_button, self.open_selected),
            ],
            self._update_buttons,
        )
        self.services.worker.submit(
            reach.people_job(services.ctx.clock.now()),
            **replies(self, lambda c: reach.fill_people(self.person, c, keep_typed=True)),
            what="people",
        )
        self.search()

    # -- filters and searching ---------------------------------------------------------------------------
    def filters(self) -> dict[str, Any]:
        """The engine's search arguments; ValueError naming the filter when one cannot be read."""
        number = self.incident.text().strip().lstrip("#")
        if number and not number.isdigit():
            raise ValueError(f"Incident # must be a number, not {self.incident.text().strip()!r}")
        since, until = self.range.bounds()
        return {
            "status": self.status_filter.currentData() or None,
            "channel": self.channel_filter.currentData() or None,
            "person": reach.chosen_handle(self.person) or None,
            "incident_id": int(number) if number else None,
            "since": since,
            "until": until,
        }

    def search(self) -> None:
        self.range.follow_clock()
        self._load(0, PAGE_SIZE)

    def more(self) -> None:
        self._load(self.model.rowCount(), PAGE_SIZE, append=True)

    def refresh(self, select: int | None = None) -> None:
        """The messages shown, read again (after an action: the new message is on top)."""
        self.range.follow_clock()
        self._load(0, max(PAGE_SIZE, self.model.rowCount()), select=select)

    def _load(self, offset: int, count: int, *, append: bool = False, select: int | None = None) -> None:
        try:
            filters = self.filters()
        except ValueError as exc:
            self.say(str(exc), True)
            self.loaded.emit()
            return
        self._request += 1
        request = self._request
        count = min(count, messages.MAX_PAGE - 1)

        def job(_who: Any) -> list[MessageRecord]:
            from engine.db import read_session

            with read_session(self.services.ctx.sessions) as session:
                # One more than shown: whether "More" has anything to add.
                return messages.search(session, limit=count + 1, offset=offset, **filters)

        self.status.setText("Searching…")
        self.services.act(
            Action.MESSAGE_LOG,
            job,
            **replies(
                self,
                lambda rows: self._arrived(request, rows[:count], len(rows) > count, append, select),
                lambda exc: self._list_failed(request, exc),
            ),
            what="message log",
        )

    def _arrived(
        self, request: int, rows: list[MessageRecord], more: bool, append: bool, select: int | None
    ) -> None:
        if request != self._request:
            return
        keep = [i for i in (select, self.current_id()) if i is not None]
        self._has_more = more
        self.model.set_rows((self.model.rows() if append else []) + rows)
        shown = self.model.rowCount()
        self.status.setText(
            f"{shown} message(s), newest first{' — More for older ones' if more else ''}"
            if shown
            else "No messages match these filters."
        )
        if append and rows:  # More: on to the first of the older ones
            self.view.selectRow(shown - len(rows))
        elif shown and not any(self.select_message(i) for i in keep):
            self.view.selectRow(0)
        self._update_buttons()
        self.loaded.emit()

    def _update_buttons(self) -> None:
        chosen = self.current()
        self.retry_button.setEnabled(chosen is not None)
        self.resend_button.setEnabled(chosen is not None and chosen.person is not None)
        self.open_button.setEnabled(chosen is not None and chosen.incident_id is not None)
        self.more_button.setEnabled(self._has_more)

    # -- the selected message ---------------------------------------------------------------------------
    def select_message(self, message_id: int) -> bool:
        return self.select_id(message_id)

    def retry_selected(self) -> None:
        chosen = self.selected("Retry")
        if chosen is None:
            return
        ctx, source = self.services.ctx, chosen.id
        self.services.act(
            Action.RESEND_MESSAGE,
            lambda who: messages.retry(ctx, who, source),
            **replies(self, lambda new: self._sent(source, new, "retried"), self._refused),
            what="retry",
        )

    def resend_selected(self) -> None:
        chosen = self.selected("Send on another channel")
        if chosen is None:
            return
        if chosen.person is None:
            self.say(
                f"Message {chosen.id} was not to a person: there is no other channel to send it on", True
            )
            return
        source = chosen.id

        def job(_who: Any) -> list[tuple[str, str]]:
            from engine.db import read_session

            with read_session(self.services.ctx.sessions) as session:
                return messages.resend_channels(session, source)

        self.services.act(
            Action.MESSAGE_LOG,
            job,
            **replies(self, lambda channels: self._choose_channel(chosen, channels), self._refused),
            what="channels",
        )

    def _choose_channel(self, chosen: MessageRecord, channels: list[tuple[str, str]]) -> None:
        if not channels:
            self.say(
                f"{chosen.person_name} has no other channel to send message {chosen.id} on "
                "(no address there, disabled or opted out)",
                True,
            )
            return
        dialog = ChannelChooser(chosen, channels, self)
        if not self.ask(dialog):
            self.say(f"Send on another channel: nothing sent — message {chosen.id} unchanged")
            return
        ctx, source, channel = self.services.ctx, chosen.id, dialog.chosen()
        self.services.act(
            Action.RESEND_MESSAGE,
            lambda who: messages.resend(ctx, who, source, channel),
            **replies(self, lambda new: self._sent(source, new, f"sent again on {channel}"), self._refused),
            what="send again",
        )

    def _sent(self, source: int, new: MessageRecord, what: str) -> None:
        self.say(f"Message {source} {what} as message {new.id} ({new.channel} to {new.address})")
        self.refresh(select=new.id)

    def _refused(self, exc: Exception) -> None:
        self.say(str(exc), True)
