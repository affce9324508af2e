"""SQLite's write-ahead log is folded into the database file by the engine (engine.checkpoint), never inside
an operator's or an intake's commit while an engine runs: commits stay short, and the log stays short.

Real files and a real thread; the waits poll the files against a deadline far above the thread's 10 ms look.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from engine.checkpoint import LOG_LIMIT_BYTES, Checkpointer
from engine.context import AppContext
from engine.db import make_engine
from engine.runner import EngineRunner

MB = 1 << 20
ROW = "x" * 2000  # a few rows to the 4 KiB page


def _eventually(what: Callable[[], bool], within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not what():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within} s")
        time.sleep(0.01)


def _log(path: Path) -> int:
    wal = Path(f"{path}-wal")
    return wal.stat().st_size if wal.exists() else 0


def _write(engine: Engine, megabytes: int, between: Callable[[], None] = lambda: None) -> None:
    """`megabytes` of rows, about a quarter of a megabyte per commit."""
    for _ in range(megabytes * 4):
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO filler (body) VALUES (:b)"), [{"b": ROW}] * 120)
        between()


@pytest.fixture
def file(tmp_path: Path) -> Iterator[tuple[Path, Engine]]:
    path = tmp_path / "watchkeeper.db"
    engine = make_engine(f"sqlite:///{path}")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE filler (id INTEGER PRIMARY KEY, body TEXT NOT NULL)"))
    yield path, engine
    engine.dispose()


def test_a_commit_does_not_fold_the_log_in_below_its_own_high_mark(file: tuple[Path, Engine]) -> None:
    """Without the engine's checkpointer, 6 MB of commits stay in the log: SQLite's default (fold in at 4 MB,
    inside whichever commit gets there) would have made one of these commits pay for it."""
    path, engine = file
    _write(engine, 6)
    assert _log(path) > 5 * MB
    assert path.stat().st_size < MB


def test_the_checkpointer_keeps_the_log_short_and_the_data_reaches_the_file(
    file: tuple[Path, Engine],
) -> None:
    path, engine = file
    checkpointer = Checkpointer(str(path), at_bytes=MB, poll=0.01).start()
    try:

        def let_it_fold() -> None:
            if _log(path) >= MB:
                done = checkpointer.checkpoints
                _eventually(lambda: checkpointer.checkpoints > done)

        _write(engine, 12, between=let_it_fold)
    finally:
        checkpointer.stop()
    assert checkpointer.checkpoints >= 4
    # Each fold lets the next commit start the log from its beginning: it never grew past a fold's size.
    assert _log(path) < 2 * MB
    assert path.stat().st_size > 10 * MB
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM filler")).scalar() == 12 * 4 * 120


def test_a_quiet_log_is_not_folded_again_and_its_file_is_reused(file: tuple[Path, Engine]) -> None:
    path, engine = file
    checkpointer = Checkpointer(str(path), at_bytes=MB)  # looked at by hand here, not by its thread
    _write(engine, 2)
    assert checkpointer.fold_if_written()
    assert not checkpointer.fold_if_written(), "nothing was committed since: a quiet engine does nothing"
    size = _log(path)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO filler (body) VALUES ('one more')"))
    # The commit started the log again at the beginning of its file: not cut back, so the commits after it do
    # not grow the file again page by page.
    assert _log(path) == size > MB
    assert checkpointer.fold_if_written()
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM filler")).scalar() == 2 * 4 * 120 + 1


def test_a_log_held_back_by_a_long_reader_is_cut_back_afterwards(file: tuple[Path, Engine]) -> None:
    """A reader that stays in one transaction keeps every later commit in the log (it may still need the pages
    they replaced); once it has gone, the file is cut back to the automatic checkpoint's size."""
    path, engine = file
    checkpointer = Checkpointer(str(path), at_bytes=MB)
    with engine.connect() as reader:
        reader.execute(text("SELECT count(*) FROM filler")).scalar()  # its snapshot stays until it ends
        _write(engine, 40)
        checkpointer.fold_if_written()
        assert _log(path) > LOG_LIMIT_BYTES
    assert checkpointer.fold_if_written()
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO filler (body) VALUES ('one more')"))
    assert _log(path) <= LOG_LIMIT_BYTES


def test_a_running_engine_folds_the_log_in(ctx: AppContext, db: Engine) -> None:
    if db.dialect.name != "sqlite":
        pytest.skip("SQLite's write-ahead log")
    path = Path(str(db.url.database))
    with db.begin() as conn:
        conn.execute(text("CREATE TABLE filler (id INTEGER PRIMARY KEY, body TEXT NOT NULL)"))
    runner = EngineRunner(ctx, passes={}, listen=False)
    runner.start()
    try:
        size = path.stat().st_size
        _write(db, 3)
        _eventually(lambda: path.stat().st_size > size + 2 * MB)
    finally:
        runner.stop()
