"""Shared fixtures: a fresh database per test on SQLite and on PostgreSQL, an injected clock.

PostgreSQL runs at WATCHKEEPER_TEST_PG_URL (default postgresql://postgres@127.0.0.1:5432/postgres, trust
auth). The suite creates its own database and drops it at the end. An unreachable PostgreSQL fails the tests
that need it; set WATCHKEEPER_SKIP_PG=1 to skip them on a machine without one (CI never does).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import Engine, make_url, text
from sqlalchemy.orm import Session, sessionmaker

from engine.clock import FakeClock
from engine.context import AppContext
from engine.db import make_engine, session_factory
from engine.models import Base
from engine.settings import Settings

PG_ADMIN_URL = os.environ.get("WATCHKEEPER_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
SKIP_PG = os.environ.get("WATCHKEEPER_SKIP_PG") == "1"
# A Monday morning in March, 08:00 UTC (10:00 in Johannesburg).
CLOCK_START = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """No test reads the developer's own settings, data directory or secrets."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / "config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(home / "data"))
    for name in list(os.environ):
        if name.startswith("WATCHKEEPER_") and name not in {"WATCHKEEPER_TEST_PG_URL", "WATCHKEEPER_SKIP_PG"}:
            monkeypatch.delenv(name)
    # The process-wide redactor hides every secret value it has seen; a value an earlier test used ("before",
    # say) must not be hidden in this test's messages.
    import engine.logs

    monkeypatch.setattr(engine.logs, "_redactor", engine.logs.SecretRedactor())


class PgServer:
    """One throwaway PostgreSQL database for the whole run."""

    def __init__(self) -> None:
        self.admin = make_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT", pool_size=1)
        self.name = f"wk_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"
        with self.admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{self.name}"'))
        self.url = make_url(PG_ADMIN_URL).set(database=self.name).render_as_string(hide_password=False)
        self.schema_ready = False

    def drop(self) -> None:
        with self.admin.connect() as conn:
            conn.execute(
                text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n"),
                {"n": self.name},
            )
            conn.execute(text(f'DROP DATABASE IF EXISTS "{self.name}"'))
        self.admin.dispose()


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    if SKIP_PG:
        pytest.skip("WATCHKEEPER_SKIP_PG=1")
    try:
        server = PgServer()
    except Exception as exc:  # pragma: no cover - depends on the machine
        pytest.fail(f"PostgreSQL is not reachable at {PG_ADMIN_URL}: {exc}", pytrace=False)
    yield server
    server.drop()


def _truncate_all(engine: Engine) -> None:
    names = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: os.PathLike[str]) -> str:
    """The URL of an empty database with no schema yet (for migration tests), on each backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/watchkeeper.db"
    server: PgServer = request.getfixturevalue("pg_server")
    # Migration tests need an empty database, not the shared one: give them their own.
    name = f"{server.name}_{uuid.uuid4().hex[:6]}"
    with server.admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))

    def _drop() -> None:
        with server.admin.connect() as conn:
            conn.execute(
                text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n"), {"n": name}
            )
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))

    request.addfinalizer(_drop)
    return make_url(server.url).set(database=name).render_as_string(hide_password=False)


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: os.PathLike[str]) -> Iterator[Engine]:
    """A database with the full schema and no rows, on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        engine = make_engine(f"sqlite:///{tmp_path}/watchkeeper.db")
        Base.metadata.create_all(engine)
        yield engine
        engine.dispose()
        return
    server: PgServer = request.getfixturevalue("pg_server")
    engine = make_engine(server.url)
    if not server.schema_ready:
        Base.metadata.drop_all(engine)
        Base.metadata.create_all(engine)
        server.schema_ready = True
    else:
        _truncate_all(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def sqlite_db(tmp_path: os.PathLike[str]) -> Iterator[Engine]:
    """SQLite only, for tests of behaviour that PostgreSQL does not share (pragmas, file handling)."""
    engine = make_engine(f"sqlite:///{tmp_path}/watchkeeper.db")
    Base.metadata.create_all(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def sessions(db: Engine) -> sessionmaker[Session]:
    return session_factory(db)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(CLOCK_START)


@pytest.fixture
def settings(db: Engine) -> Settings:
    return Settings(db=db.url.render_as_string(hide_password=False))


@pytest.fixture
def ctx(db: Engine, clock: FakeClock, settings: Settings) -> AppContext:
    return AppContext.create(settings, clock=clock, mode="test", db=db)
