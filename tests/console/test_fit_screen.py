"""The console at 1600×1000: every column that matters is on screen beside the incident detail, the detail
belongs to the board, and the large font neither pushes the window off the screen nor leaves mixed sizes."""

from __future__ import annotations

import pytest
from PySide6.QtWidgets import QApplication, QWidget
from pytestqt.qtbot import QtBot
from sqlalchemy import Engine

from console.board.columns import NARROWEST, START_WIDTHS, content_width
from console.board.model import COL
from console.fit import DETAIL_WIDTH
from console.mainwindow import MainWindow
from console.services import ConsoleServices
from engine.context import AppContext
from tests.console.conftest import add_incident

THAT_MATTER = [
    "severity",
    "id",
    "status",
    "summary",
    "site",
    "team",
    "age",
    "response",
    "resolution",
    "level",
    "paged",
]


@pytest.fixture
def db(sqlite_db: Engine) -> Engine:
    return sqlite_db


def _window(qtbot: QtBot, ctx: AppContext, services: ConsoleServices) -> MainWindow:
    now = ctx.clock.now()
    for n, severity in enumerate(["critical", "high", "medium", "low", "info"]):
        add_incident(
            ctx.sessions, now, summary=f"Smoke reported at the loading bay of block {n}", severity=severity
        )
    window = MainWindow(services, sound=False)
    qtbot.addWidget(window)
    window.show()
    window.resize(1600, 1000)
    qtbot.waitUntil(lambda: window.board.feed.is_loaded, timeout=5000)
    return window


def _right_edges(window: MainWindow) -> dict[str, int]:
    header = window.board.view.horizontalHeader()
    return {
        key: header.sectionViewportPosition(COL[key]) + header.sectionSize(COL[key]) for key in THAT_MATTER
    }


def test_every_column_that_matters_fits_1600_beside_the_detail(
    qtbot: QtBot, ctx: AppContext, services: ConsoleServices, styled: QApplication
) -> None:
    window = _window(qtbot, ctx, services)
    assert window.detail_dock.isVisible() and window.detail_dock.width() == DETAIL_WIDTH
    view = window.board.view
    width = view.viewport().width()
    edges = _right_edges(window)
    assert all(edge <= width for edge in edges.values()), (width, edges)
    assert view.horizontalScrollBar().value() == 0
    header = view.horizontalHeader()
    for key in ("severity", "id"):  # as wide as their content, no wider
        assert view.sizeHintForColumn(COL[key]) <= header.sectionSize(COL[key]) <= 110, key  # was 116
    assert header.sectionSize(COL["id"]) <= 70  # was 86
    # What was reported keeps room (in full: the detail, the tooltip): 169 px before the SLA columns were
    # narrowed and the name columns gave way.
    assert header.sectionSize(COL["summary"]) >= 250
    for key in ("response", "resolution"):  # as narrow as their headers: "breached 2h", not "… 2h 05m"
        assert header.sectionSize(COL[key]) <= 120, key  # was 143
    window.close()


def test_with_the_large_font_every_column_that_matters_fits_beside_the_open_detail(
    qtbot: QtBot, ctx: AppContext, services: ConsoleServices, styled: QApplication
) -> None:
    window = _window(qtbot, ctx, services)
    _large(window, True)
    assert window.board.view.font().pointSizeF() == 13.0
    assert window.detail_dock.isVisible() and window.detail_dock.width() == DETAIL_WIDTH
    view = window.board.view
    qtbot.waitUntil(lambda: max(_right_edges(window).values()) <= view.viewport().width(), timeout=2000)
    assert view.horizontalScrollBar().maximum() == 0
    header = view.horizontalHeader()
    assert header.sectionSize(COL["summary"]) >= 140  # was 36, and "Paged / delivery" off the edge
    for key, narrowest in NARROWEST.items():  # names are cut with "…", never to nothing
        if not header.isSectionHidden(COL[key]):
            assert header.sectionSize(COL[key]) >= narrowest, key
    for key in ("severity", "status", "age", "response", "resolution", "level"):  # no text of theirs is cut
        assert header.sectionSize(COL[key]) >= content_width(view, key), key
    # Back to the normal font, the names get their room back.
    _large(window, False)
    qtbot.waitUntil(lambda: header.sectionSize(COL["summary"]) >= 250, timeout=2000)
    window.close()


def test_the_name_columns_widen_again_when_the_detail_closes_and_keep_a_width_the_operator_chose(
    qtbot: QtBot, ctx: AppContext, services: ConsoleServices, styled: QApplication
) -> None:
    window = _window(qtbot, ctx, services)
    header = window.board.view.horizontalHeader()
    beside = header.sectionSize(COL["paged"])
    window.detail_dock.hide()
    qtbot.waitUntil(lambda: header.sectionSize(COL["paged"]) == START_WIDTHS["paged"], timeout=2000)
    assert beside < START_WIDTHS["paged"]
    header.resizeSection(COL["site"], 140)  # the operator drags Site wider: it stays, font or no font
    window.detail_dock.show()
    _large(window, True)
    _large(window, False)
    assert header.sectionSize(COL["site"]) == 140
    window.close()


def test_the_detail_hides_on_supervisor_tabs_and_comes_back_on_the_board(
    qtbot: QtBot, ctx: AppContext, services: ConsoleServices, styled: QApplication
) -> None:
    window = _window(qtbot, ctx, services)
    for index in range(1, window.tabs.count()):
        window.tabs.setCurrentIndex(index)
        assert not window.detail_dock.isVisible(), window.tabs.tabText(index)
    window.tabs.setCurrentIndex(0)
    assert window.detail_dock.isVisible()
    window.detail_dock.hide()  # closed on the board: it stays closed after a visit to History
    window.tabs.setCurrentIndex(3)
    window.tabs.setCurrentIndex(0)
    assert not window.detail_dock.isVisible()
    window.close()


def _fonts(window: MainWindow) -> dict[int, tuple[str, float, int]]:
    return {
        id(w): (type(w).__name__, w.font().pointSizeF(), w.font().pixelSize())
        for w in [window, *window.findChildren(QWidget)]
    }


def _large(window: MainWindow, on: bool) -> None:
    window.large_action.setChecked(on)
    window._theme_changed()
    QApplication.processEvents()


def test_large_font_keeps_the_window_on_a_1600_by_1000_screen(
    qtbot: QtBot, ctx: AppContext, services: ConsoleServices, styled: QApplication
) -> None:
    window = _window(qtbot, ctx, services)
    for index in range(window.tabs.count()):  # every tab built, the widest included
        window.tabs.setCurrentIndex(index)
    window.tabs.setCurrentIndex(0)
    # The header as a busy shift shows it: an engine running, alerts counted, a long name.
    window.engine_label.setText("Engine: embedded, running")
    window.alert_counts.setText("3 critical · 2 breached · 1 warning · 2 problems")
    window.notifications_button.setText("Notifications: 12 unread")
    window.clock_label.setText("Wed 30 Dec  23:59:59")
    _large(window, True)
    assert window.board.view.font().pointSizeF() == 13.0
    minimum = window.minimumSizeHint()
    assert minimum.width() <= 1600 and minimum.height() <= 1000, minimum
    assert window.frameGeometry().width() <= 1600 + 8 and window.height() <= 1000, window.size()
    window.close()


def test_large_font_off_brings_every_widget_back_to_the_normal_size(
    qtbot: QtBot, ctx: AppContext, services: ConsoleServices, styled: QApplication
) -> None:
    window = _window(qtbot, ctx, services)
    for index in range(window.tabs.count()):
        window.tabs.setCurrentIndex(index)
    window.tabs.setCurrentIndex(0)
    normal = _fonts(window)
    _large(window, True)
    large = _fonts(window)
    assert not [k for k in normal if large[k] == normal[k] and normal[k][1] == 10.0], (
        "every widget went large"
    )
    _large(window, False)
    back = _fonts(window)
    mixed = sorted({back[k][0] for k in normal if back[k] != normal[k]})
    assert mixed == [], f"still large after turning it off: {mixed}"
    window.close()
