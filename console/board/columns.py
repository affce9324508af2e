"""How wide the board's columns are: every column that matters fits a 1600-pixel screen beside the detail.

The short columns (severity, number, status, age, the SLA countdowns, level) are sized to the longest text
they can show in the current font, with the cell padding the painter uses (console/board/cells.py), so none
is cut and none wastes room; they are set again when the font changes (the large-font option). A breached
deadline says how long ago in its largest unit ("breached 2h"; the detail has the minutes), which keeps the
SLA columns as narrow as their headers. Site, team and "Paged / delivery" hold names, which are cut with "…"
(the tooltip and the detail have them whole): they start at a width for typical names and give way, down to
a narrowest width, when the summary would otherwise have less than SUMMARY_ROOM — the large font beside the
detail, a narrow window — and widen again when there is room; a width the operator dragged them to is kept.
The summary takes the room that is left, so the row always ends at the window's edge without a horizontal
scroll bar. The category starts hidden (right-click a column header to choose the columns shown).
"""

from __future__ import annotations

from PySide6.QtCore import QEvent, QObject, QPoint, Qt
from PySide6.QtGui import QFont, QFontMetrics
from PySide6.QtWidgets import QHeaderView, QMenu, QStyle, QTableView

from console.board import format as fmt
from console.board.model import COL, COLUMNS

SEVERITIES = ["critical", "high", "medium", "low", "info"]
# The texts each content-sized column can show, longest cases included.
_SLA_SAMPLES = ["breached 23h", "breached 59m", "late 23h 59m", "23h 59m left", "not monitored"]
SAMPLES: dict[str, list[str]] = {
    "severity": [s.upper() for s in SEVERITIES],
    "id": ["999999"],  # incident numbers up to six digits
    "status": list(fmt.STATUS_LABEL.values()),
    "age": [fmt.duration(23 * 3600 + 59 * 60), fmt.duration(99 * 86400 + 23 * 3600)],
    "response": _SLA_SAMPLES,
    "resolution": _SLA_SAMPLES,
    "level": [f"L9 {state}" for state in fmt.LEVEL_STATE.values()],
}
# Starting widths (px at the normal font) of the columns whose texts are names; the operator may drag them.
START_WIDTHS = {"site": 80, "team": 80, "category": 90, "paged": 150}
# How narrow the name columns may get (px, whatever the font) when the summary needs the room.
NARROWEST = {"site": 60, "team": 60, "category": 60, "paged": 100}
SUMMARY_ROOM = 260  # px the summary should have before the name columns give way
_FITTED = "fittedWidths"  # view property: the widths `fit` last set, by column key


def _padding(_font: QFont) -> int:
    """The cell padding of the style sheets: 6 px a side, with the large font too (large.qss)."""
    return 6


def content_width(view: QTableView, key: str) -> int:
    """The width column `key` needs for its longest text and for its header (with the sort arrow)."""
    view.ensurePolished()
    font = QFont(view.font())
    extra = 0
    if key == "severity":  # bold when critical and open, after the colour swatch
        font.setBold(True)
        swatch = min(
            view.style().pixelMetric(QStyle.PixelMetric.PM_SmallIconSize), QFontMetrics(view.font()).height()
        )
        extra = swatch + 2 * _padding(font)
    metrics = QFontMetrics(font)
    # Both sides' padding, and the 8 px Qt's item view adds around a cell's text under the style sheet (focus
    # frame and text margins), so the delegate's own size hint never asks for more than the column has; in
    # the severity column the spacing after the swatch already holds half of it.
    margin = 4 if key == "severity" else 8
    cell = max(metrics.horizontalAdvance(t) for t in SAMPLES[key]) + extra + 2 * _padding(font) + margin
    return max(cell, view.horizontalHeader().sectionSizeHint(COL[key]))


def set_start_widths(view: QTableView) -> None:
    header = view.horizontalHeader()
    header.setTextElideMode(Qt.TextElideMode.ElideRight)  # a narrowed name column's title: "Paged / d…"
    for key in SAMPLES:  # a new view's default section width is no choice of the operator's
        header.resizeSection(COL[key], 0)
    scale = view.font().pointSizeF() / 10.0 if view.font().pointSizeF() > 0 else 1.0
    for key, width in START_WIDTHS.items():
        header.resizeSection(COL[key], round(width * scale))
    # The category starts hidden (the detail shows it, search finds it; right-click a header to show it):
    # everything an operator acts on stays on screen.
    header.moveSection(header.visualIndex(COL["category"]), header.count() - 1)
    header.hideSection(COL["category"])
    header.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
    header.customContextMenuRequested.connect(lambda at: choose_columns(view, header.mapToGlobal(at)))
    view.viewport().installEventFilter(_Refit(view))
    fit(view)


def choose_columns(view: QTableView, at: QPoint) -> None:
    """Right-click on the header: tick the columns to show."""
    header = view.horizontalHeader()
    menu = QMenu(view)
    for column, (_key, title, _tip) in enumerate(COLUMNS):
        action = menu.addAction(title)
        action.setCheckable(True)
        action.setChecked(not header.isSectionHidden(column))
        action.toggled.connect(lambda shown, c=column: header.setSectionHidden(c, not shown))
    menu.exec(at)


def fit(view: QTableView) -> None:
    """Size the short columns to their content and let the summary take the rest of the row. A column the
    operator dragged wider stays that wide; one this sized follows the font (large font on and off)."""
    header = view.horizontalHeader()
    header.setStretchLastSection(False)
    fitted = dict(view.property(_FITTED) or {})
    for key in SAMPLES:
        needed, now = content_width(view, key), header.sectionSize(COL[key])
        header.setSectionResizeMode(COL[key], QHeaderView.ResizeMode.Interactive)
        if now < needed or now == fitted.get(key):
            header.resizeSection(COL[key], needed)
            fitted[key] = needed
    view.setProperty(_FITTED, fitted)
    header.setSectionResizeMode(COL["summary"], QHeaderView.ResizeMode.Stretch)
    give_way(view)


def _scale(view: QTableView) -> float:
    size = view.font().pointSizeF()
    return size / 10.0 if size > 0 else 1.0


def give_way(view: QTableView) -> None:
    """Narrow the name columns (down to NARROWEST) while the summary has less than SUMMARY_ROOM, widen them
    back (up to their start width in this font) when it has more; columns the operator sized are left."""
    header = view.horizontalHeader()
    fitted = dict(view.property(_FITTED) or {})
    scale = _scale(view)
    ours: dict[str, tuple[int, int]] = {}  # key -> (narrowest, widest)
    for key, start in START_WIDTHS.items():
        column = COL[key]
        if header.isSectionHidden(column):
            continue
        if header.sectionSize(column) != fitted.get(key, header.sectionSize(column)):
            continue  # dragged by the operator (or restored from their layout)
        ours[key] = (min(NARROWEST[key], round(start * scale)), round(start * scale))
    if not ours:
        return
    taken = sum(
        header.sectionSize(c)
        for c in range(header.count())
        if not header.isSectionHidden(c) and c != COL["summary"] and COLUMNS[c][0] not in ours
    )
    room = view.viewport().width() - taken - SUMMARY_ROOM
    low = sum(n for n, _w in ours.values())
    high = sum(w for _n, w in ours.values())
    share = 1.0 if room >= high else 0.0 if room <= low else (room - low) / (high - low)
    for key, (narrowest, widest) in ours.items():
        width = round(narrowest + share * (widest - narrowest))
        if header.sectionSize(COL[key]) != width:
            header.resizeSection(COL[key], width)
        fitted[key] = width
    view.setProperty(_FITTED, fitted)


class _Refit(QObject):
    """Gives the name columns room back, or takes it, when the board's width changes (the detail shown or
    hidden, the window resized)."""

    def __init__(self, view: QTableView) -> None:
        super().__init__(view)
        self.view = view

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if event.type() == QEvent.Type.Resize:
            give_way(self.view)
        return False
