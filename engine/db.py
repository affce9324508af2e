"""Database connections for SQLite (one workstation) and PostgreSQL (a centre shared by many processes).

SQLite is opened in WAL mode with foreign keys on and a busy timeout, and write transactions start with
BEGIN IMMEDIATE so two engines on one file queue for the write lock at the start of a transaction instead of
failing half-way through it. PostgreSQL uses psycopg 3.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from engine.checkpoint import AUTOCHECKPOINT_PAGES, LOG_LIMIT_BYTES
from engine.errors import DatabaseRefused

T = TypeVar("T")
SQLITE_BUSY_TIMEOUT_MS = 10_000
SQLITE_CACHE_KIB = 65_536
# NORMAL in WAL mode survives a process crash; only a power loss can drop the last commits. Sites that need
# FULL set WATCHKEEPER_SQLITE_SYNCHRONOUS=FULL (the README quotes the price measured in bench/).
SQLITE_SYNCHRONOUS = os.environ.get("WATCHKEEPER_SQLITE_SYNCHRONOUS", "NORMAL").upper()


class DatabaseURLError(ValueError):
    """The database URL is not one Watchkeeper can use."""


def normalise_url(url: str) -> URL:
    """Accept the URL forms operators type, and pick the drivers Watchkeeper ships with."""
    raw = url.strip()
    if "://" not in raw:
        # A bare path is a SQLite file.
        raw = "sqlite:///" + str(Path(raw).expanduser().resolve())
    try:
        parsed = make_url(raw)
    except ArgumentError as exc:
        raise DatabaseURLError(f"not a database URL: {url!r}") from exc
    backend = parsed.get_backend_name()
    if backend == "postgresql" or backend == "postgres":
        return parsed.set(drivername="postgresql+psycopg")
    if backend == "sqlite":
        return parsed.set(drivername="sqlite+pysqlite")
    raise DatabaseURLError(f"unsupported database {backend!r}: use a SQLite file or a postgresql:// URL")


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


def make_engine(url: str, **kwargs: Any) -> Engine:
    parsed = normalise_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            parsed,
            connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000, "check_same_thread": False},
            **kwargs,
        )
        _configure_sqlite(engine)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 10)
    return create_engine(parsed, **kwargs)


def _use_wal(cursor: Any) -> None:
    """Switch the file to WAL (it stays so). The switch needs the file to itself and SQLite answers "database
    is locked" at once, without its busy handler, while another process is creating the same new file — two
    consoles started together on a new file — so the switch is retried for up to the busy timeout."""
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # pysqlite's own transaction handling would defer BEGIN until the first write; turn it off and emit
        # BEGIN ourselves (the SQLAlchemy-documented recipe) so BEGIN IMMEDIATE is possible.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        _use_wal(cursor)
        cursor.execute(f"PRAGMA synchronous={SQLITE_SYNCHRONOUS}")
        # SQLite's own page cache is 2,000 pages (8 MB) per connection by default: a centre's incident table
        # and its dozen indexes outgrow that within days, and every acknowledgement then reads index pages
        # back from the operating system (measured: acknowledgements 4× slower at 10,000 incidents than at
        # 5,000). 64 MB per connection keeps a busy centre's working set in memory.
        cursor.execute(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}")
        cursor.execute("PRAGMA foreign_keys=ON")
        # The engine keeps the write-ahead log short on its own thread (engine.checkpoint); a commit here
        # folds it in only past this much, when no engine runs on the file.
        cursor.execute(f"PRAGMA wal_autocheckpoint={AUTOCHECKPOINT_PAGES}")
        cursor.execute(f"PRAGMA journal_size_limit={LOG_LIMIT_BYTES}")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        mode = connection.get_execution_options().get("sqlite_begin", "DEFERRED")
        # Straight to the driver: through Core (exec_driver_sql) a BEGIN cost about 60 µs of Python on every
        # write transaction (4 % of a single trigger, measured).
        raw = connection.connection.dbapi_connection
        try:
            raw.execute(_BEGIN[mode])
        except sqlite3.Error as exc:  # as Core reports a statement's error ("database is locked" included)
            lost = connection.dialect.is_disconnect(exc, raw, None)
            if lost:
                connection.invalidate(exc)
            raise DBAPIError.instance(
                _BEGIN[mode], (), exc, sqlite3.Error, connection_invalidated=lost
            ) from exc


_BEGIN = {mode: f"BEGIN {mode}" for mode in ("DEFERRED", "IMMEDIATE", "EXCLUSIVE")}


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def write_session(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A session whose transaction takes the write lock at once on SQLite (BEGIN IMMEDIATE).

    Commits on success, rolls back on any exception so nothing is half-written.
    """
    session = factory()
    try:
        if is_sqlite(session.get_bind()):  # type: ignore[arg-type]
            session.connection(execution_options={"sqlite_begin": "IMMEDIATE"})
        yield session
        session.commit()
    except BaseException as exc:
        session.rollback()
        refused = refused_by_database(exc, session.get_bind())  # type: ignore[arg-type]
        if refused is not None:
            raise refused from exc
        raise
    finally:
        session.close()


INSUFFICIENT_PRIVILEGE = "42501"  # PostgreSQL's SQLSTATE for "permission denied"


def refused_by_database(exc: BaseException, bind: Engine) -> DatabaseRefused | None:
    """A PostgreSQL "permission denied" as an error that says whose login it was and what to do instead."""
    orig = getattr(exc, "orig", None)
    if getattr(orig, "sqlstate", None) != INSUFFICIENT_PRIVILEGE:
        return None
    reason = str(orig).strip().splitlines()[0] if str(orig).strip() else "permission denied"
    user = bind.url.username or "(default)"
    return DatabaseRefused(
        f"the database refused this change ({reason}): this workstation's database login {user!r} may not "
        "change configuration or accounts; make the change from a supervisor's workstation or through the "
        "service (see the README, 'The trust boundary')"
    )


@contextmanager
def read_session(factory: sessionmaker[Session]) -> Iterator[Session]:
    session = factory()
    try:
        yield session
    finally:
        session.rollback()
        session.close()


def ping(engine: Engine) -> None:
    """Raise if the database cannot be reached."""
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))


# PostgreSQL's SQLSTATEs that say "try the same transaction again": a serialization failure, a deadlock (one
# lock order makes these rare; a retry makes them harmless), and the connection or server going away.
RETRY_SQLSTATES = frozenset({"40001", "40P01"})
TRANSIENT_SQLSTATE_CLASSES = ("08", "53", "57")


def sqlstate(exc: BaseException) -> str:
    orig = getattr(exc, "orig", exc)
    return str(getattr(orig, "sqlstate", "") or getattr(orig, "pgcode", "") or "")


def is_retryable(exc: BaseException) -> bool:
    """A transaction the database rolled back that will likely work if run again at once."""
    return sqlstate(exc) in RETRY_SQLSTATES


def is_transient(exc: BaseException) -> bool:
    """Whether a failure is about the database's state (away, restarting, busy, a deadlock) rather than about
    the data: the same work should be tried again later, not set aside."""
    from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

    if not isinstance(exc, DBAPIError):
        return False
    code = sqlstate(exc)
    if code in RETRY_SQLSTATES or code.startswith(TRANSIENT_SQLSTATE_CLASSES):
        return True
    return bool(exc.connection_invalidated) or isinstance(exc, OperationalError | InterfaceError)


def retrying(fn: Callable[[], T], *, attempts: int = 4) -> T:
    """Run `fn()` (one whole transaction), again if the database rolled it back for a deadlock or a
    serialization failure; anything else, or the last attempt's failure, is raised."""
    for attempt in range(attempts):
        try:
            return fn()
        except Exception as exc:
            if attempt + 1 >= attempts or not is_retryable(exc):
                raise
            time.sleep(0.01 * (2**attempt))
    raise AssertionError("unreachable")
