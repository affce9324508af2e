"""Writers on one SQLite file take turns through an operating-system lock, woken the moment a turn ends.

SQLite lets one transaction at a time write a file. A writer that finds the write lock taken does not wait
for it to be released: its busy handler sleeps 1, 2, 5, 10, 15, 20, 25 … ms and looks again. Beside a
running engine, whose escalate batches hold the lock for 20 ms or more, an operator's acknowledgement or an
intake's trigger then sleeps past the end of the batch (measured: callers spent 44 % of their time in
BEGIN IMMEDIATE, more than the engine held the lock). So every Watchkeeper connection to a SQLite file first
takes an exclusive `flock` on a small file beside the database (`<database>-turn`) and holds it from BEGIN
IMMEDIATE to COMMIT or ROLLBACK: a waiter sleeps in the kernel and is woken when the holder lets go.

SQLite's own lock still guards the data; the turn only decides who asks for it next. Anything that does not
take turns (the sqlite3 shell, another program) is waited for by SQLite's busy handler, as before. Where the
turn cannot be had (no `fcntl` on Windows, a directory that is read-only) connections go without it. A wait
for a turn ends after the busy timeout with SQLite's own "database is locked", as a wait for the lock would.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from collections.abc import Callable
from typing import Any

try:
    import fcntl
except ImportError:  # Windows: SQLite's busy handler alone
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)


class Turn:
    """One connection's handle on the file's turn (its own open file: two handles exclude each other, also
    within one process)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        self.held = False

    def take(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds for the turn; whether it was had."""
        assert fcntl is not None
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            self.held = True
            return True
        except BlockingIOError:
            pass
        # Taken: wait in the kernel on a helper thread, so that the wait can end at the timeout. A wait given
        # up keeps that handle (its thread lets go of the turn when it gets it, and closes it); this
        # connection goes on with a new one.
        waiter = _Waiter(self.fd)
        if waiter.wait(timeout):
            self.held = True
            return True
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        return False

    def give_back(self) -> None:
        if self.held:
            self.held = False
            assert fcntl is not None
            fcntl.flock(self.fd, fcntl.LOCK_UN)

    def close(self) -> None:
        self.give_back()
        os.close(self.fd)


class _Waiter:
    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._got = threading.Event()
        self._lock = threading.Lock()
        self._abandoned = False
        threading.Thread(target=self._run, name="watchkeeper-write-turn", daemon=True).start()

    def _run(self) -> None:
        assert fcntl is not None
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        with self._lock:
            if not self._abandoned:
                self._got.set()
                return
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)

    def wait(self, timeout: float) -> bool:
        if self._got.wait(timeout):
            return True
        with self._lock:
            if self._got.is_set():
                return True
            self._abandoned = True
            return False


def turn_path(database: str) -> str:
    return f"{database}-turn"


def open_turn(database: str) -> Turn | None:
    """The turn of this SQLite file for one new connection, or None where there can be none."""
    if fcntl is None:
        return None
    try:
        return Turn(turn_path(database))
    except OSError as exc:
        log.info("writers on %s do not take turns (%s): SQLite's busy handler alone", database, exc)
        return None


class TurnTakingConnection(sqlite3.Connection):
    """A sqlite3 connection that gives its write turn back when its transaction ends (engine.db takes it
    before BEGIN IMMEDIATE)."""

    turn: Turn | None = None

    def commit(self) -> None:
        self._ending(super().commit)

    def rollback(self) -> None:
        self._ending(super().rollback)

    def _ending(self, end: Callable[[], None]) -> None:
        try:
            end()
        finally:
            if self.turn is not None:
                self.turn.give_back()

    def close(self) -> None:
        try:
            super().close()
        finally:
            if self.turn is not None:
                self.turn.close()
                self.turn = None


def turn_of(dbapi_connection: Any) -> Turn | None:
    return getattr(dbapi_connection, "turn", None)
