"""The board's own painter (console/board/cells.py) draws what Qt's standard cell-by-cell paint draws: the same
row tints and selection, ink where there is text in the same colour, and no text spilling out of its cell.
The two paints of one board are compared pixel by pixel, cell by cell."""

from __future__ import annotations

from datetime import timedelta

import pytest
from PySide6.QtCore import QItemSelectionModel, QRect
from PySide6.QtGui import QColor, QImage
from pytestqt.qtbot import QtBot
from sqlalchemy import Engine

from console.board.model import COL
from console.board.widget import BoardWidget
from console.services import ConsoleServices
from engine.context import AppContext
from tests.console.conftest import add_incident


@pytest.fixture
def db(sqlite_db: Engine) -> Engine:
    return sqlite_db


def _rgb(image: QImage, x: int, y: int) -> tuple[int, int, int]:
    c = QColor(image.pixel(x, y))
    return c.red(), c.green(), c.blue()


def _distance(a: tuple[int, int, int], b: tuple[int, int, int]) -> int:
    return max(abs(p - q) for p, q in zip(a, b, strict=True))


def _ink(
    image: QImage, rect: QRect, background: tuple[int, int, int]
) -> list[tuple[int, int, tuple[int, int, int]]]:
    """Pixels of the cell that differ from its background (text, the severity swatch)."""
    found = []
    for y in range(rect.top() + 1, rect.bottom()):
        for x in range(rect.left() + 1, rect.right()):
            colour = _rgb(image, x, y)
            if _distance(colour, background) > 24:
                found.append((x, y, colour))
    return found


def test_the_fast_painter_draws_what_qts_own_paint_draws(
    qtbot: QtBot, ctx: AppContext, services: ConsoleServices
) -> None:
    now = ctx.clock.now()
    add_incident(ctx.sessions, now, summary="Structure fire, Umlazi", severity="critical", site="umlazi")
    add_incident(
        ctx.sessions, now, summary="Burst pipe", severity="medium", age=timedelta(minutes=27)
    )  # response breached: red countdown
    add_incident(
        ctx.sessions,
        now,
        summary="A very long summary that cannot possibly fit in the summary column of the board " * 3,
        severity="low",
    )
    add_incident(
        ctx.sessions, now, summary="Street lights out", severity="info", status="resolved", resolved_at=now
    )
    widget = BoardWidget(services)
    qtbot.addWidget(widget)
    widget.resize(1400, 400)
    widget.show()
    qtbot.waitUntil(lambda: widget.feed.is_loaded and widget.model.rowCount() == 4, timeout=5000)
    view = widget.view
    view.selectionModel().select(
        widget.model.index(1, 0),
        QItemSelectionModel.SelectionFlag.Select | QItemSelectionModel.SelectionFlag.Rows,
    )
    fast = view.viewport().grab().toImage()
    view.fast_paint = False
    standard = view.viewport().grab().toImage()

    checked_text = 0
    for row in range(widget.model.rowCount()):
        for column in range(len(COL)):
            index = widget.model.index(row, column)
            rect = view.visualRect(index)
            if not view.viewport().rect().contains(rect):
                continue  # scrolled out of sight on the right
            where = f"row {row}, column {column}"
            background = _rgb(standard, rect.left() + 2, rect.top() + 2)
            assert _distance(_rgb(fast, rect.left() + 2, rect.top() + 2), background) <= 2, where
            fast_ink, standard_ink = _ink(fast, rect, background), _ink(standard, rect, background)
            assert bool(fast_ink) == bool(standard_ink) == bool(index.data()), where
            if not fast_ink:
                continue
            # Nothing drawn in the last pixels of the cell: long texts are cut with "…", not spilled.
            assert max(x for x, _y, _c in fast_ink) < rect.right() - 3, where
            # The strongest ink is the same colour in both (text colour: severity, breached red, muted).
            strongest = max(fast_ink, key=lambda p: _distance(p[2], background))[2]
            expected = max(standard_ink, key=lambda p: _distance(p[2], background))[2]
            assert _distance(strongest, expected) <= 40, where
            checked_text += 1
    assert checked_text >= 30
