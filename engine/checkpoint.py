"""SQLite's write-ahead log folded back into the database file by the engine, not by the caller.

In WAL mode every commit appends the pages it changed to the `-wal` file beside the database; a *checkpoint*
copies them into the database file and syncs it. By default SQLite checkpoints inside whichever commit takes
the log past 1,000 pages (4 MB): with a busy intake that is one trigger or acknowledgement in forty, and that
call then takes 4–5 ms instead of 0.5 (measured: 78 of 3,000 single triggers, 15 % of their time).

So on a SQLite file the engine runs a checkpointer thread: it looks at the size of the log every
POLL_SECONDS and, past CHECKPOINT_AT_BYTES, runs a PASSIVE checkpoint on a connection of its own. A passive
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
# SQLite reuses the log file from its start after a checkpoint but never shortens it: one burst would leave a
# file past CHECKPOINT_AT_BYTES, and the thread would checkpoint an empty log every POLL_SECONDS from then on.
# Every connection (PRAGMA journal_size_limit) cuts the file back to this when it starts the log again.
LOG_LIMIT_BYTES = CHECKPOINT_AT_BYTES // 2


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

    def _run(self) -> None:
        conn: sqlite3.Connection | None = None
        try:
            while not self._stopping.wait(self.poll):
                if self._log_size() < self.at_bytes:
                    continue
                try:
                    if conn is None:
                        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                    self.checkpoints += 1
                except sqlite3.Error as exc:  # the file went away or is locked for a restore: try later
                    log.debug("checkpoint of %s not done: %s", self.path, exc)
                    if conn is not None:
                        conn.close()
                        conn = None
                    self._stopping.wait(1.0)
        finally:
            if conn is not None:
                conn.close()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5.0)


def start_for(db_url: str) -> Checkpointer | None:
    """A running checkpointer for this database, or None where SQLite's log is not ours to keep."""
    path = database_path(db_url)
    return Checkpointer(path).start() if path is not None else None
