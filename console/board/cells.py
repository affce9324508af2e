"""Painting the board's cells: one call into Python per repaint.

Qt's own table paint asks the model for each cell's flags, index and every role (each a call from C++ into
Python) and lays every text out afresh; with the style sheet on top, a repaint of a full-screen board took
40-60 ms of the GUI thread. Worse, each call into Python must first take the interpreter lock from the
database worker thread, so while the worker was busy (a load, a reload) a repaint could take 150 ms.

`BoardPainter` paints the visible cells in one pass from the model's prepared rows (BoardModel.paint_row),
drawing each text as a QStaticText laid out once and kept. It draws what the style did: the row's tint
(status and SLA urgency), the selection in the palette's highlight colours, the severity swatch, bold text for
open critical incidents, right-aligned numbers, "…" where a text is cut, and a dotted frame around the
current cell while the board has the focus. The view still does everything else (scrolling, selection,
keys, the header); tooltips, accessible text and sizes still come from the model's standard roles.
"""

from __future__ import annotations

import math

from PySide6.QtCore import QModelIndex, QPointF, QRect, Qt
from PySide6.QtGui import (
    QColor,
    QFont,
    QFontMetrics,
    QImage,
    QPainter,
    QPalette,
    QPen,
    QStaticText,
    QTransform,
)
from PySide6.QtWidgets import QStyle, QTableView

from console.board.model import BoardModel

_R = Qt.ItemDataRole
_DISPLAY, _DECORATION = int(_R.DisplayRole.value), int(_R.DecorationRole.value)
_FONT, _ALIGN = int(_R.FontRole.value), int(_R.TextAlignmentRole.value)
_FOREGROUND = int(_R.ForegroundRole.value)
_ALIGN_RIGHT = int(Qt.AlignmentFlag.AlignRight.value)
_HIGHLIGHT, _HIGHLIGHTED_TEXT = QPalette.ColorRole.Highlight, QPalette.ColorRole.HighlightedText
_TEXT = QPalette.ColorRole.Text
_ACTIVE, _INACTIVE = QPalette.ColorGroup.Active, QPalette.ColorGroup.Inactive
_ELIDE = Qt.TextElideMode.ElideRight
# Prepared texts kept at most: the visible cells of a few screens. The clock columns make new texts every
# second, so the store is emptied when it grows past this rather than tracked per entry.
_KEEP_TEXTS = 6000


def warm_up(view: QTableView) -> None:
    """Make PySide6 do its one-time work for what the painter touches before the window shows.

    PySide6 builds its Python wrappers and enum classes lazily: the first viewport, palette brush, painter
    and static text a process asks for created some sixty enum classes, 25-30 ms inside the board's first
    paint with rows; the font engine rasterises each glyph the first time it is drawn. Done here, it costs
    the same at start-up, and the first paint with rows does only painting."""
    view.viewport()
    view.horizontalHeader()
    view.verticalHeader()
    view.selectionModel()
    view.currentIndex()
    palette = view.palette()
    highlight = palette.brush(_ACTIVE, _HIGHLIGHT)
    palette.color(_ACTIVE, _TEXT)
    image = QImage(4, 4, QImage.Format.Format_ARGB32_Premultiplied)
    painter = QPainter(image)
    try:
        painter.fillRect(QRect(0, 0, 2, 2), highlight)
        # The glyphs a board shows, regular and bold, rasterised into the font engine's cache.
        glyphs = "".join(chr(c) for c in range(32, 127)) + "…—→←·"
        font = QFont(view.font())
        for bold in (False, True):
            font.setBold(bold)
            painter.setFont(font)
            painter.drawStaticText(QPointF(0, 0), QStaticText(glyphs))
    finally:
        painter.end()


class BoardPainter:
    def __init__(self) -> None:
        self._font_seen: QFont | None = None  # the view font the fields below were made for
        self._font = QFont()
        self._bold = QFont()
        self._metrics = (QFontMetrics(self._font), QFontMetrics(self._bold))
        self._padding = 6
        self._swatch = 12
        # (text, room in pixels, bold) -> (the laid-out text, cut with "…" if it did not fit; its width)
        self._texts: dict[tuple[str, int, bool], tuple[QStaticText, int]] = {}
        self._transform = QTransform()

    def _use_font(self, font: QFont, icon_size: int) -> None:
        """A new view font (the large-font option, a theme change): new metrics, nothing laid out kept."""
        self._font_seen = QFont(font)
        self._font = QFont(font)
        self._bold = QFont(font)
        self._bold.setBold(True)
        self._metrics = (QFontMetrics(self._font), QFontMetrics(self._bold))
        # The cell padding of the style sheets: 6 px a side, with the large font too (large.qss).
        self._padding = 6
        # The severity swatch: the size of the small icon the standard delegate drew for a colour.
        self._swatch = min(icon_size, self._metrics[0].height())
        self._texts = {}

    def _laid_out(self, text: str, room: int, bold: bool) -> tuple[QStaticText, int]:
        key = (text, room, bold)
        found = self._texts.get(key)
        if found is not None:
            return found
        font = self._bold if bold else self._font
        static = self._prepared(text, font)
        width = math.ceil(static.size().width())  # laid out once: measuring it apart would lay it out twice
        if width > room:
            static = self._prepared(
                self._metrics[1 if bold else 0].elidedText(text, _ELIDE, max(0, room)), font
            )
            width = math.ceil(static.size().width())
        if len(self._texts) >= _KEEP_TEXTS:
            self._texts = {}
        found = self._texts[key] = (static, width)
        return found

    def _prepared(self, text: str, font: QFont) -> QStaticText:
        static = QStaticText(text)
        static.setTextFormat(Qt.TextFormat.PlainText)
        static.prepare(self._transform, font)
        return static

    def paint(self, view: QTableView, model: BoardModel, area: QRect) -> None:
        """Paint the cells of `view` (showing `model`) that meet `area` of its viewport."""
        rows = model.rowCount()
        if rows == 0:
            return
        first = view.rowAt(area.top())
        if first < 0:
            return
        last = view.rowAt(area.bottom())
        last = rows - 1 if last < 0 else last
        header = view.horizontalHeader()
        left = header.visualIndexAt(area.left())
        right = header.visualIndexAt(area.right())
        right = header.count() - 1 if right < 0 else right
        columns = [
            (logical, header.sectionViewportPosition(logical), header.sectionSize(logical))
            for logical in (header.logicalIndex(v) for v in range(max(0, left), right + 1))
            if not header.isSectionHidden(logical)
        ]
        if not columns:
            return
        font = view.font()
        if self._font_seen is None or font != self._font_seen:
            self._use_font(font, view.style().pixelMetric(QStyle.PixelMetric.PM_SmallIconSize))
        grid = 1 if view.showGrid() else 0
        height = view.verticalHeader().defaultSectionSize()
        palette = view.palette()
        group = _ACTIVE if view.isActiveWindow() else _INACTIVE
        highlight = palette.brush(group, _HIGHLIGHT)
        highlighted_text = palette.color(group, _HIGHLIGHTED_TEXT)
        plain_text = palette.color(group, _TEXT)
        selection = view.selectionModel()
        root = QModelIndex()
        current = view.currentIndex()
        focus_row = current.row() if current.isValid() and view.hasFocus() else -1
        padding, swatch_size = self._padding, self._swatch
        text_top = (height - grid - self._metrics[0].height()) / 2
        now = model.now()

        painter = QPainter(view.viewport())
        try:
            painter.setFont(self._font)
            for row in range(first, last + 1):
                y = view.rowViewportPosition(row)
                cells, tint = model.paint_row(row, now)
                selected = selection.isRowSelected(row, root)
                for column, x, width in columns:
                    rect = QRect(x, y, width - grid, height - grid)
                    roles = cells[column]
                    pen: QColor
                    if selected:
                        painter.fillRect(rect, highlight)
                        pen = highlighted_text
                    else:
                        if tint is not None:
                            painter.fillRect(rect, tint)
                        foreground = roles.get(_FOREGROUND)
                        pen = foreground.color() if foreground is not None else plain_text
                    text_x, text_right = x + padding, x + width - grid - padding
                    swatch = roles.get(_DECORATION)
                    if swatch is not None:
                        painter.fillRect(
                            text_x, y + (height - grid - swatch_size) // 2, swatch_size, swatch_size, swatch
                        )
                        text_x += swatch_size + padding
                    text = roles.get(_DISPLAY)
                    if text:
                        bold = _FONT in roles
                        static, text_width = self._laid_out(str(text), text_right - text_x, bold)
                        if roles.get(_ALIGN, 0) & _ALIGN_RIGHT:
                            text_x = max(text_x, text_right - text_width)
                        painter.setPen(pen)
                        if bold:
                            painter.setFont(self._bold)
                        painter.drawStaticText(QPointF(text_x, y + text_top), static)
                        if bold:
                            painter.setFont(self._font)
                    if row == focus_row and column == current.column():
                        painter.setPen(QPen(pen, 1, Qt.PenStyle.DotLine))
                        painter.drawRect(rect.adjusted(0, 0, -1, -1))
        finally:
            painter.end()
