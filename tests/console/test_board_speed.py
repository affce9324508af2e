"""What keeps the board quick with a large database, as an operator sees it: the top of the board shows before
the rest of the working set, big batches reach the table a slice at a time, a commit that sends NOTIFY on
PostgreSQL shows without waiting for the poll, the severity and status columns are wide enough for their
values, and the scheduler's and the migrations' routine log lines stay off the console's stderr.

Timings are not asserted here (bench/bench_console.py prints them); these tests pin the mechanisms."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import timedelta

import pytest
from pytestqt.modeltest import ModelTester
from pytestqt.qtbot import QtBot

from console.app import QUIET_LOGGERS, quiet_library_logs
from console.board import feed as feed_module
from console.board.model import COL
from console.board.widget import BoardWidget
from console.services import ConsoleServices
from engine.context import AppContext
from engine.settings import Settings
from tests.console.conftest import add_incident

SEVERITIES = ["low", "critical", "medium", "info", "high", "critical", "medium", "high", "low", "critical"]


def _board(qtbot: QtBot, services: ConsoleServices) -> BoardWidget:
    widget = BoardWidget(services)
    qtbot.addWidget(widget)
    widget.resize(1400, 600)
    widget.show()
    return widget


def _board_order(widget: BoardWidget) -> list[int]:
    return [int(widget.model.row_at(n)["id"]) for n in range(widget.model.rowCount())]


def test_top_of_the_board_shows_first_then_the_rest_in_place(
    qtbot: QtBot,
    qtmodeltester: ModelTester,
    ctx: AppContext,
    services: ConsoleServices,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(feed_module, "FIRST_PAGE", 3)
    now = ctx.clock.now()
    ids = [
        add_incident(ctx.sessions, now, summary=f"Call {n}", severity=sev, age=timedelta(minutes=n + 1))
        for n, sev in enumerate(SEVERITIES)
    ]
    widget = _board(qtbot, services)
    first: list[list[int]] = []
    widget.feed.first_rows.connect(lambda: first.append(_board_order(widget)))
    qtbot.waitUntil(lambda: widget.feed.is_loaded, timeout=5000)

    # The first rows shown are the three critical incidents, oldest first: the top of the board as sorted.
    critical = [i for i, sev in zip(ids, SEVERITIES, strict=True) if sev == "critical"]
    assert first == [sorted(critical, reverse=True)]
    # Then every incident, in the board's order, with the first three still on top.
    assert widget.model.rowCount() == len(ids)
    order = _board_order(widget)
    assert order[:3] == first[0]
    widget.model.sort(COL["severity"])
    assert _board_order(widget) == order
    qtmodeltester.check(widget.model)


def test_a_big_batch_reaches_the_table_a_slice_per_event_loop_turn(
    qtbot: QtBot, ctx: AppContext, services: ConsoleServices, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = ctx.clock.now()
    add_incident(ctx.sessions, now, summary="Already on the board")
    widget = _board(qtbot, services)
    qtbot.waitUntil(lambda: widget.feed.is_loaded, timeout=5000)
    monkeypatch.setattr(feed_module, "TURN_BUDGET_S", 0.0)  # one slice per turn: the mechanism, not a time
    template = dict(widget.model.row_at(0))
    rows = []
    for n in range(feed_module.SLICE_ROWS * 3):
        row = dict(template, id=10_000 + n, key=f"burst-{n}", summary=f"Burst {n}")
        row["search_text"] = f"burst {n}"
        rows.append(row)
    inserted: list[int] = []
    widget.model.rowsInserted.connect(lambda _p, first, last: inserted.append(last - first + 1))

    widget.feed._apply(rows, from_feed=True)

    # Nothing yet: the slices wait for the event loop's turns, one per turn (paints and keys between).
    assert widget.model.rowCount() == 1
    assert widget.feed.pending_slices == 3
    qtbot.waitUntil(lambda: widget.model.rowCount() == 1 + len(rows), timeout=2000)
    assert inserted == [feed_module.SLICE_ROWS] * 3


def test_severity_number_status_and_age_columns_fit_their_longest_values(
    qtbot: QtBot, ctx: AppContext, services: ConsoleServices
) -> None:
    now = ctx.clock.now()
    add_incident(ctx.sessions, now, summary="Cardiac arrest", severity="critical")
    add_incident(
        ctx.sessions,
        now,
        summary="Burst water main",
        severity="medium",
        status="acknowledged",
        acknowledged_at=now,
    )
    widget = _board(qtbot, services)
    qtbot.waitUntil(lambda: widget.feed.is_loaded, timeout=5000)
    header = widget.view.horizontalHeader()
    for key in ("severity", "id", "status", "age"):
        column = COL[key]
        # What the delegate needs to paint every loaded value in full, and what the header needs.
        assert widget.view.sizeHintForColumn(column) <= header.sectionSize(column), key
        assert header.sectionSizeHint(column) <= header.sectionSize(column), key
    # A layout saved narrower (before this width existed) is widened again; a wider one is kept.
    header.resizeSection(COL["status"], 40)
    header.resizeSection(COL["severity"], 400)
    widget.fit_columns()
    assert widget.view.sizeHintForColumn(COL["status"]) <= header.sectionSize(COL["status"])
    assert header.sectionSize(COL["severity"]) == 400


@pytest.fixture
def _library_levels() -> Iterator[None]:
    before = {name: logging.getLogger(name).level for name in (*QUIET_LOGGERS, "")}
    yield
    for name, level in before.items():
        logging.getLogger(name or None).setLevel(level)


@pytest.mark.usefixtures("_library_levels")
def test_scheduler_and_migration_info_lines_are_quiet_unless_verbose() -> None:
    quiet_library_logs(Settings(log_level="INFO"))
    for name in ("apscheduler.scheduler", "apscheduler.executors.default", "alembic.runtime.migration"):
        assert not logging.getLogger(name).isEnabledFor(logging.INFO), name
        assert logging.getLogger(name).isEnabledFor(logging.WARNING), name
    quiet_library_logs(Settings(log_level="DEBUG"))
    logging.getLogger().setLevel(logging.DEBUG)
    assert logging.getLogger("apscheduler.scheduler").isEnabledFor(logging.DEBUG)


def test_a_commit_with_notify_shows_without_waiting_for_the_poll(
    qtbot: QtBot, ctx: AppContext, services: ConsoleServices, monkeypatch: pytest.MonkeyPatch
) -> None:
    if ctx.db.dialect.name != "postgresql":
        widget = _board(qtbot, services)
        assert widget.feed.listener is None  # SQLite has no LISTEN: the poll alone follows changes
        return
    monkeypatch.setattr(feed_module, "FEED_INTERVAL_MS", 3_600_000)  # the poll would wait an hour
    now = ctx.clock.now()
    widget = _board(qtbot, services)
    qtbot.waitUntil(lambda: widget.feed.is_loaded and widget.feed.listening, timeout=5000)

    # Another engine opens an incident and, as engine.api does, sends NOTIFY in the same transaction.
    new_id = add_incident(ctx.sessions, now, summary="Gas leak, Block D", severity="critical", notify=True)

    qtbot.waitUntil(lambda: widget.model.row_for_id(new_id) is not None, timeout=3000)
    widget.shutdown()
    assert widget.feed.listener is not None and not widget.feed.listener.running


def test_cancel_and_recategorise_from_another_console_show_without_waiting_for_the_poll(
    qtbot: QtBot, ctx: AppContext, services: ConsoleServices, monkeypatch: pytest.MonkeyPatch
) -> None:
    if ctx.db.dialect.name != "postgresql":
        pytest.skip("LISTEN/NOTIFY is PostgreSQL's; SQLite consoles follow changes by the poll")
    from engine import api

    gone = api.trigger(ctx, policy=None, summary="Duplicate call, Block E", severity="low").incident_id
    moved = api.trigger(ctx, policy=None, summary="Smoke, Block F", severity="high").incident_id
    monkeypatch.setattr(feed_module, "FEED_INTERVAL_MS", 3_600_000)  # the poll would wait an hour
    widget = _board(qtbot, services)
    qtbot.waitUntil(lambda: widget.feed.is_loaded and widget.feed.listening, timeout=5000)

    api.cancel(ctx, gone, reason="duplicate of an earlier call", by="sipho")
    api.set_category(ctx, moved, by="sipho", category="medical")

    qtbot.waitUntil(lambda: (widget.model.row_for_id(gone) or {}).get("status") == "cancelled", timeout=3000)
    qtbot.waitUntil(lambda: (widget.model.row_for_id(moved) or {}).get("category") == "medical", timeout=3000)
    widget.shutdown()


def test_long_lived_objects_are_frozen_at_start_and_after_each_large_batch(
    qtbot: QtBot, ctx: AppContext, services: ConsoleServices, monkeypatch: pytest.MonkeyPatch
) -> None:
    from console import heap
    from console.mainwindow import MainWindow

    freezes: list[int] = []
    monkeypatch.setattr(heap.gc, "freeze", lambda: freezes.append(1))  # the process's collector untouched
    add_incident(ctx.sessions, ctx.clock.now(), summary="Smoke, Block C")
    window = MainWindow(services, sound=False)
    qtbot.addWidget(window)
    heap.keep_collector_quiet(window)
    assert freezes == [1]  # at start, before the window shows
    window.show()
    qtbot.waitUntil(lambda: window.board.feed.is_loaded, timeout=5000)
    assert freezes == [1, 1]  # the working set is in
    window.board.feed.page_loaded.emit()
    assert len(freezes) == 3
