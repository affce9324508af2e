"""Keeping Python's cyclic garbage collector from pausing the GUI thread.

A full (generation 2) collection walks every object the process holds: with the board's working set, the
Qt wrappers and SQLAlchemy loaded, that is 80-100 ms during which no Python runs — no paint, no key, since
every callback from Qt needs the interpreter. The console moves what is long-lived out of the collector's
reach with `gc.freeze()`: once at start (before the window shows), and again each time the board has taken in a large batch of rows (the first load, a page of older incidents). Later full
collections walk only what was made since, a few milliseconds.

Frozen objects are still freed by reference counting when nothing refers to them, as board rows (plain dicts,
no cycles) are when they leave the board; only reference cycles among frozen objects would outlive their use,
and the freezes come where the console has just made long-lived or acyclic data (start-up leaves little
garbage: a full collection there would cost the cold start as much as it saves).
"""

from __future__ import annotations

import gc
from typing import Any


def freeze_long_lived(*_args: Any) -> None:
    """Freeze what is alive now (a slot: extra signal arguments are ignored)."""
    gc.freeze()


def keep_collector_quiet(window: Any) -> None:
    """The console's policy for its main window: freeze now, and after each large batch of rows."""
    gc.freeze()  # modules, classes, the window
    window.board.feed.loaded.connect(freeze_long_lived)
    window.board.feed.page_loaded.connect(freeze_long_lived)
