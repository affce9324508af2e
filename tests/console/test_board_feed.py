"""The board follows the database: inserted incidents show, another connection's commit shows within a second
as a row update, selection and sort survive. The change-feed test runs on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest
from pytestqt.qtbot import QtBot
from sqlalchemy.orm import Session, sessionmaker

from console.board import feed as feed_module
from console.board.model import COL
from console.board.widget import BoardWidget
from console.services import ConsoleServices
from engine.context import AppContext
from tests.console.conftest import add_incident, change_incident


def _board(qtbot: QtBot, services: ConsoleServices) -> BoardWidget:
    widget = BoardWidget(services)
    qtbot.addWidget(widget)
    widget.resize(1400, 600)
    widget.show()
    qtbot.waitUntil(lambda: widget.feed.is_loaded, timeout=5000)
    return widget


def test_change_committed_elsewhere_appears_as_row_update_with_selection_kept(
    qtbot: QtBot, ctx: AppContext, services: ConsoleServices
) -> None:
    now = ctx.clock.now()
    first = add_incident(ctx.sessions, now, summary="Water leak, ward 4", severity="medium")
    second = add_incident(ctx.sessions, now, summary="Power failure, theatre 2", severity="critical")
    widget = _board(qtbot, services)
    assert widget.model.rowCount() == 2
    assert widget.select_incident(first)
    resets: list[int] = []
    widget.model.modelReset.connect(lambda: resets.append(1))
    scroll_before = widget.view.verticalScrollBar().value()

    change_incident(
        ctx.sessions, now, second, status="acknowledged", acknowledged_at=now, acknowledged_by="sipho"
    )
    third = add_incident(ctx.sessions, now, summary="Fire alarm, Block C", severity="critical")

    def seen() -> None:
        row = widget.model.row_for_id(second)
        assert row is not None and row["status"] == "acknowledged"
        assert widget.model.row_for_id(third) is not None

    qtbot.waitUntil(seen, timeout=1000)
    assert widget.current_id() == first
    assert widget.selected_ids() == [first]
    assert resets == []
    assert widget.view.verticalScrollBar().value() == scroll_before
    status_cell = widget.model.index(
        widget.model.position_of(second) or 0,
        COL["status"],
    )
    assert status_cell.data() == "Acknowledged"


def _sessions(ctx: AppContext) -> sessionmaker[Session]:
    return ctx.sessions


def test_board_waits_for_nothing_on_an_empty_database(
    qtbot: QtBot, ctx: AppContext, services: ConsoleServices
) -> None:
    widget = _board(qtbot, services)
    assert widget.model.rowCount() == 0
    add_incident(_sessions(ctx), ctx.clock.now() + timedelta(seconds=1), summary="First call of the night")
    qtbot.waitUntil(lambda: widget.model.rowCount() == 1, timeout=1000)


def test_a_reload_during_the_first_load_leaves_one_board_loaded_once(
    qtbot: QtBot, ctx: AppContext, services: ConsoleServices, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(feed_module, "FIRST_PAGE", 2)  # the top first, then the rest: two steps to interrupt
    now = ctx.clock.now()
    ids = [add_incident(ctx.sessions, now, summary=f"Incident {n}") for n in range(6)]
    widget = BoardWidget(services, start=False)
    qtbot.addWidget(widget)
    loaded: list[int] = []
    widget.feed.loaded.connect(lambda: loaded.append(1))

    def reload_once() -> None:  # F5 the moment the top is in: the rest of the first load is on its way
        widget.feed.first_rows.disconnect(reload_once)
        widget.feed.stop()
        widget.model.clear()
        widget.feed.is_loaded = False
        widget.feed.start()

    widget.feed.first_rows.connect(reload_once)
    widget.feed.start()
    qtbot.waitUntil(lambda: widget.feed.is_loaded, timeout=5000)
    qtbot.wait(300)  # anything of the old load still queued would have arrived by now
    assert loaded == [1]
    assert sorted(widget.model.ids()) == sorted(ids)
