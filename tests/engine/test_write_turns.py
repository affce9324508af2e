"""Writers on one SQLite file take turns (engine.write_turns): a writer waiting behind another goes on the
moment that one's transaction ends, not at the next wake-up of SQLite's busy handler; a wait still ends with
"database is locked" after the busy timeout; and nothing is held once a transaction is over, however it ended.

Real files, two engines on one file as two processes would open it; the turn is looked at from outside with
a lock of the test's own."""

from __future__ import annotations

import fcntl
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import IntegrityError, OperationalError

from engine import db as db_module
from engine.db import make_engine
from engine.write_turns import turn_path


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "watchkeeper.db"


@pytest.fixture
def engines(path: Path) -> Iterator[tuple[Engine, Engine]]:
    first, second = make_engine(f"sqlite:///{path}"), make_engine(f"sqlite:///{path}")
    with first.begin() as conn:
        conn.execute(text("CREATE TABLE note (id INTEGER PRIMARY KEY, body TEXT NOT NULL UNIQUE)"))
    yield first, second
    first.dispose()
    second.dispose()


def _write(engine: Engine, body: str) -> None:
    with engine.connect() as conn:
        conn = conn.execution_options(sqlite_begin="IMMEDIATE")
        with conn.begin():
            conn.execute(text("INSERT INTO note (body) VALUES (:b)"), {"b": body})


def _turn_is_free(path: Path) -> bool:
    fd = os.open(turn_path(str(path)), os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)
    return True


def test_a_waiting_writer_goes_on_the_moment_the_other_commits(engines: tuple[Engine, Engine]) -> None:
    first, second = engines
    holding = 1.03  # SQLite's busy handler would look again 100 ms apart by then, the next look ~0.1 s late
    committed: list[float] = []
    began: list[float] = []

    def other() -> None:
        with second.connect() as conn:
            conn = conn.execution_options(sqlite_begin="IMMEDIATE")
            with conn.begin():
                began.append(time.monotonic())
                conn.execute(text("INSERT INTO note (body) VALUES ('second')"))

    with first.connect() as conn:
        conn = conn.execution_options(sqlite_begin="IMMEDIATE")
        trans = conn.begin()
        conn.execute(text("INSERT INTO note (body) VALUES ('first')"))
        waiter = threading.Thread(target=other)
        waiter.start()
        time.sleep(holding)  # the engine's batch holding the write lock
        trans.commit()
        committed.append(time.monotonic())
    waiter.join(timeout=15)
    assert began, "the second writer never began"
    assert began[0] - committed[0] < 0.05
    with first.connect() as conn:
        assert conn.execute(text("SELECT body FROM note ORDER BY id")).scalars().all() == ["first", "second"]


def test_the_turn_is_given_back_however_the_transaction_ends(
    path: Path, engines: tuple[Engine, Engine]
) -> None:
    first, _ = engines
    with first.connect() as conn:
        conn = conn.execution_options(sqlite_begin="IMMEDIATE")
        with conn.begin():
            conn.execute(text("INSERT INTO note (body) VALUES ('one')"))
            assert not _turn_is_free(path)
        assert _turn_is_free(path)  # committed
        trans = conn.begin()
        conn.execute(text("INSERT INTO note (body) VALUES ('two')"))
        trans.rollback()
        assert _turn_is_free(path)
    with pytest.raises(IntegrityError):
        _write(first, "one")  # fails inside the transaction: rolled back
    assert _turn_is_free(path)
    with first.connect() as conn, conn.begin():  # a read takes no turn
        conn.execute(text("SELECT count(*) FROM note")).scalar()
        assert _turn_is_free(path)


def test_a_wait_for_the_turn_ends_as_a_wait_for_the_lock_would(
    path: Path, engines: tuple[Engine, Engine], monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = engines
    monkeypatch.setattr(db_module, "SQLITE_BUSY_TIMEOUT_MS", 200)
    with first.connect() as conn:
        conn = conn.execution_options(sqlite_begin="IMMEDIATE")
        with conn.begin():
            conn.execute(text("INSERT INTO note (body) VALUES ('held')"))
            with pytest.raises(OperationalError, match="database is locked"):
                _write(second, "late")
    # The given-up wait lets go of the turn when it gets it: the next writer is not kept out.
    deadline = time.monotonic() + 5
    while not _turn_is_free(path):
        assert time.monotonic() < deadline, "the abandoned wait kept the turn"
        time.sleep(0.01)
    _write(second, "later")
    with first.connect() as conn:
        assert conn.execute(text("SELECT body FROM note ORDER BY id")).scalars().all() == ["held", "later"]
