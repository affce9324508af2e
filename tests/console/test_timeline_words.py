"""The console says timeline entries in operators' words: the incident detail, the board's last page and the
history's event log (engine.wording), never codes like "reporter_update sent"."""

from __future__ import annotations

from typing import Any

import pytest
from PySide6.QtCore import QDate, Qt
from pytestqt.qtbot import QtBot
from sqlalchemy import Engine

from console.board import format as fmt
from console.detail import IncidentDetail
from console.history import HistoryWidget
from console.services import ConsoleServices
from engine import board
from engine.context import AppContext
from tests.engine.test_wording import seed_paged_then_reporter_update


@pytest.fixture
def db(sqlite_db: Engine) -> Engine:
    """Console views on SQLite; engine.board and engine.wording are tested on both in tests/engine."""
    return sqlite_db


def _column(model: Any, column: int) -> list[str]:
    return [
        str(model.data(model.index(row, column), Qt.ItemDataRole.DisplayRole))
        for row in range(model.rowCount())
    ]


def test_detail_timeline_and_last_page_read_in_operators_words(
    qtbot: QtBot, ctx: AppContext, services: ConsoleServices
) -> None:
    incident_id = seed_paged_then_reporter_update(ctx.sessions, ctx.clock.now())
    detail = IncidentDetail(services)
    qtbot.addWidget(detail)
    with qtbot.waitSignal(detail.loaded, timeout=3000):
        detail.show_incident(incident_id)
    what, status = _column(detail.timeline, 1), _column(detail.timeline, 4)
    assert "Page (level 1)" in what
    assert "Status update to the reporter" in what
    assert "Response SLA warning" in what
    assert status[what.index("Status update to the reporter")] == "waiting to send"
    assert not [w for w in what if "_" in w or w[:1].islower()]
    # The last page is Thandi's SMS, not the WhatsApp to the reporter that came after it.
    assert detail.fields["paged"].text() == "Thandi Nkosi · SMS · delivered"
    with ctx.sessions() as s:
        assert fmt.paged_text(board.board_rows(s, [incident_id])[0]) == "Thandi Nkosi · SMS · delivered"


def test_history_event_log_says_what_happened(
    qtbot: QtBot, ctx: AppContext, services: ConsoleServices
) -> None:
    seed_paged_then_reporter_update(ctx.sessions, ctx.clock.now())
    widget = HistoryWidget(services)
    qtbot.addWidget(widget)
    widget.date_from.setDate(QDate(2026, 2, 1))
    with qtbot.waitSignal(widget.search_finished, timeout=3000):
        widget.tabs.setCurrentIndex(1)
    assert _column(widget.events, 1) == ["Response SLA warning"]
