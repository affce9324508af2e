"""SQLite's write-ahead log folded back into the database file by the engine, not by the caller.

In WAL mode every commit appends the pages it changed to the `-wal` file beside the database; a *checkpoint*
copies them into the database file and syncs it. By default SQLite checkpoints inside whichever commit takes
the log past 1,000 pages (4 MB): with a busy intake that is one trigger or acknowledgement in forty, and that
call then takes 4–5 ms instead of 0.5 (measured: 78 of 3,000 single triggers, 15 % of their time).

So on a SQLite file the engine runs a checkpointer thread: it looks at the log every POLL_SECONDS and, when
its file is past CHECKPOINT_AT_BYTES and something was committed since it last folded the log in, runs a
PASSIVE checkpoint on a connection of its own. A passive
checkpoint never takes the write lock and never waits: writers go on appending meanwhile, and what a reader
still needs stays in the log until the next round. Every connection (engine.db) sets SQLite's own
automatic checkpoint at AUTOCHECKPOINT_PAGES, far above what the engine lets the log reach: it only acts
when no engine runs on the file (a command-line import on its own), as before, at a larger size.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading

from sqlalchemy import make_url

log = logging.getLogger(__name__)

# Every connection's own automatic checkpoint (PRAGMA wal_autocheckpoint), in pages of 4 KiB: 32 MiB of log.
AUTOCHECKPOINT_PAGES = 8_000
# The engine checkpoints once the log is this big, looking this often.
CHECKPOINT_AT_BYTES = 1 << 20
POLL_SECONDS = 0.05
# SQLite starts the log again from the beginning of its file after a checkpoint and never shortens the file
# unless told to; the thread folds the log in only when something was committed since its last fold, so a
# quiet engine does nothing however big the file. The file is cut back (PRAGMA journal_size_limit, on every
# connection) only past the automatic checkpoint's size, after a long reader held the log back: cutting it
# back at every restart made the commits after one grow the file again (measured: 17 % fewer single
# triggers and acknowledgements per second, 20 % fewer for plain sqlite3 writing the same rows).
LOG_LIMIT_BYTES = AUTOCHECKPOINT_PAGES * 4096


def database_path(db_url: str) -> str | None:
    """The SQLite file of `db_url`, or None (PostgreSQL, a database in memory)."""
    url = make_url(db_url)
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return None
    return os.path.realpath(url.database)


class Checkpointer:
    """The thread that keeps a SQLite file's write-ahead log short (see the module's docstring)."""

    def __init__(self, path: str, *, at_bytes: int = CHECKPOINT_AT_BYTES, poll: float = POLL_SECONDS) -> None:
        self.path = path
        self.at_bytes = at_bytes
        self.poll = poll
        self.checkpoints = 0  # how many this thread ran (for the tests and the log)
        self._conn: sqlite3.Connection | None = None
        self._folded: int | None = None  # the database's data_version when the log was last folded in
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="watchkeeper-checkpoint", daemon=True)

    def start(self) -> Checkpointer:
        self._thread.start()
        return self

    def _log_size(self) -> int:
        try:
            return os.stat(self.path + "-wal").st_size
        except OSError:  # no log yet, or the file is being replaced (a restore)
            return 0

    def fold_if_written(self) -> bool:
        """One look: fold the log in if its file is past `at_bytes` and something was committed since the
        last fold; whether it did. The thread calls this every `poll` seconds."""
        if self._log_size() < self.at_bytes:
            return False
        if self._conn is None:
            self._conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        # SQLite's own counter of commits made by other connections: it changes with every one of them.
        version = self._conn.execute("PRAGMA data_version").fetchone()[0]
        if version == self._folded:
            return False
        _busy, in_log, folded = self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        self.checkpoints += 1
        # A reader still using older pages keeps the rest in the log: look again next time, commits or not.
        self._folded = version if folded >= in_log else None
        return True

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _run(self) -> None:
        try:
            while not self._stopping.wait(self.poll):
                try:
                    self.fold_if_written()
                except sqlite3.Error as exc:  # the file went away or is locked for a restore: try later
                    log.debug("checkpoint of %s not done: %s", self.path, exc)
                    self._close()
                    self._stopping.wait(1.0)
        finally:
            self._close()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5.0)


def start_for(db_url: str) -> Checkpointer | None:
    """A running checkpointer for this database, or None where SQLite's log is not ours to keep."""
    path = database_path(db_url)
    return Checkpointer(path).start() if path is not None else None
