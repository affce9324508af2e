"""The window fits a 1600×1000 screen: the incident detail beside the board only, and supervisor tabs that
scroll rather than widen the window (with the large font too).

A QTabWidget is as wide as its widest page and a dock adds its own width, so one crowded filter bar on the
Statistics tab, or the detail dock on a tab where it means nothing, pushed the whole window off the screen.
"""

from __future__ import annotations

from PySide6.QtWidgets import QComboBox, QDockWidget, QFrame, QScrollArea, QTabWidget, QWidget

DETAIL_WIDTH = (
    320  # px: the detail's fields stay readable (the timeline pops out, P); the board keeps its columns
)
BOARD_TAB = 0


def dock_beside_board(dock: QDockWidget, tabs: QTabWidget) -> None:
    """A fixed-width detail that hides on the other tabs and comes back on the board if it was open there."""
    dock.setFixedWidth(DETAIL_WIDTH)
    state = {"open": True, "on_board": tabs.currentIndex() == BOARD_TAB}

    def follow(index: int) -> None:
        if state["on_board"] and index != BOARD_TAB:
            state["open"] = dock.isVisible()
            dock.hide()
        elif index == BOARD_TAB and not state["on_board"]:
            dock.setVisible(state["open"])
        state["on_board"] = index == BOARD_TAB

    tabs.currentChanged.connect(follow)


def scrolling(page: QWidget) -> QScrollArea:
    """A supervisor tab in a frameless scroll area: at most as wide as the window, scrolled if it must be."""
    area = QScrollArea()
    area.setObjectName("tabPage")
    area.setFrameShape(QFrame.Shape.NoFrame)
    area.setWidgetResizable(True)
    area.setWidget(page)
    return area


def filters_may_shrink(board: QWidget, narrowest: int = 90) -> None:
    """The board's pick lists keep their full width while there is room and give way, their text cut with
    "…", when there is not (the large font beside the detail), instead of widening the window."""
    for combo in board.findChildren(QComboBox):
        combo.setMinimumWidth(narrowest)
