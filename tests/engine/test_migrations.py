"""Migrations build exactly the ORM's schema on SQLite and PostgreSQL; bootstrap applies the upgrade policy."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, event, inspect, text

from engine.bootstrap import connect, open_context
from engine.clock import FakeClock
from engine.db import make_engine
from engine.errors import ConfigurationError, DatabaseUnavailable
from engine.migrate import (
    current_revision,
    head_from_files,
    head_revision,
    include_object,
    quick_status,
    status,
    upgrade,
)
from engine.models import Base
from engine.settings import Settings


@pytest.fixture
def empty_db(db_url: str) -> Any:
    engine = make_engine(db_url)
    yield engine
    engine.dispose()


def test_the_migrated_schema_equals_the_orm_metadata(empty_db: Engine) -> None:
    assert upgrade(empty_db) == head_revision()
    with empty_db.connect() as conn:
        context = MigrationContext.configure(
            conn, opts={"compare_type": True, "include_object": include_object(conn.dialect.name)}
        )
        differences = compare_metadata(context, Base.metadata)
    assert differences == [], (
        "engine/models.py differs from the migrations; regenerate engine/migrations/versions/0001_initial_schema.py "
        f"(or add a revision): {differences}"
    )
    tables = set(inspect(empty_db).get_table_names())
    assert tables == {t.name for t in Base.metadata.sorted_tables} | {"alembic_version"}


def test_upgrading_twice_changes_nothing(empty_db: Engine) -> None:
    upgrade(empty_db)
    statements: list[str] = []

    def watch(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement.strip().split()[0].upper())

    event.listen(empty_db, "before_cursor_execute", watch)
    try:
        assert upgrade(empty_db) == head_revision()
    finally:
        event.remove(empty_db, "before_cursor_execute", watch)
    changes = [s for s in statements if s in {"CREATE", "ALTER", "DROP", "INSERT", "UPDATE", "DELETE"}]
    assert changes == []


def test_status_tells_an_empty_database_from_one_at_head(empty_db: Engine) -> None:
    before = status(empty_db)
    assert before.current is None and not before.at_head
    assert "run `watchkeeper db upgrade`" in before.describe()
    upgrade(empty_db)
    after = status(empty_db)
    assert after.at_head
    assert after.describe() == f"{head_revision()} (head)"


def test_the_quick_check_agrees_with_alembic(empty_db: Engine) -> None:
    """Opening a database at head skips Alembic (a faster console start); anything else gets the full check."""
    assert head_from_files() == head_revision()
    assert (
        quick_status(empty_db) is None
    )  # empty: the full path decides (SQLite upgrades, PostgreSQL refuses)
    upgrade(empty_db)
    assert quick_status(empty_db) == status(empty_db)
    with empty_db.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '0000_older'"))
    assert quick_status(empty_db) is None


def test_opening_a_database_at_head_does_not_load_alembic(tmp_path: Path) -> None:
    import subprocess
    import sys

    url = f"sqlite:///{tmp_path}/wk.db"
    upgrade(make_engine(url))
    code = (
        "import sys; from engine.bootstrap import open_context; from engine.settings import Settings; "
        f"ctx = open_context(Settings(db={url!r}), 'cli'); print('alembic' in sys.modules)"
    )
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_sqlite_connections_run_with_wal_foreign_keys_and_a_busy_timeout(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path}/wk.db")
    try:
        upgrade(engine)
        with engine.connect() as conn:
            assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
            assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
            assert conn.execute(text("PRAGMA busy_timeout")).scalar() == 10_000
            assert conn.execute(text("PRAGMA synchronous")).scalar() == 1  # NORMAL
    finally:
        engine.dispose()


def test_opening_a_new_sqlite_file_creates_its_schema(tmp_path: Path) -> None:
    path = tmp_path / "station" / "watchkeeper.db"
    ctx = open_context(Settings(db=str(path)), "console", clock=FakeClock())
    try:
        assert path.exists()
        assert current_revision(ctx.db) == head_revision()
        assert ctx.node_id.split(":")[2] == "console"
    finally:
        ctx.db.dispose()
    # Opening it again is a no-op upgrade.
    ctx = open_context(Settings(db=str(path)), "console")
    ctx.db.dispose()


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_an_empty_postgresql_database_is_never_upgraded_by_opening_it(db_url: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        open_context(Settings(db=db_url), "service")
    assert str(caught.value).startswith(
        f"database at revision none, this Watchkeeper needs {head_revision()}: run `watchkeeper db upgrade`"
    )
    engine = make_engine(db_url)
    try:
        assert current_revision(engine) is None
        assert inspect(engine).get_table_names() == []
        upgrade(engine)
    finally:
        engine.dispose()
    ctx = open_context(Settings(db=db_url), "service")
    ctx.db.dispose()


def test_a_database_from_a_newer_watchkeeper_is_refused_on_both(empty_db: Engine, db_url: str) -> None:
    upgrade(empty_db)
    with empty_db.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = 'ffff_future'"))
    with pytest.raises(
        ConfigurationError, match="revision ffff_future, which this Watchkeeper does not know"
    ):
        open_context(Settings(db=db_url), "cli")
    with pytest.raises(ConfigurationError, match="does not know"):
        upgrade(empty_db)


def test_a_sqlite_file_with_tables_but_no_migration_record_is_not_touched(tmp_path: Path) -> None:
    path = tmp_path / "handmade.db"
    engine = make_engine(str(path))
    Base.metadata.create_all(engine)
    engine.dispose()
    with pytest.raises(ConfigurationError, match="has tables but no migration record"):
        open_context(Settings(db=str(path)), "cli")


def test_an_unreachable_postgresql_names_host_and_port_but_never_the_password() -> None:
    password = "pw-Very-Secret-771"
    settings = Settings(db=f"postgresql://wk:{password}@127.0.0.1:1/watchkeeper")
    with pytest.raises(DatabaseUnavailable) as caught:
        open_context(settings, "cli")
    message = str(caught.value)
    assert message.startswith(
        "cannot reach the PostgreSQL database 'watchkeeper' on 127.0.0.1:1 as user 'wk'"
    )
    assert password not in message
    assert "\n" not in message


def test_a_sqlite_file_that_cannot_be_created_names_the_file(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    with pytest.raises(DatabaseUnavailable, match=r"SQLite file .*not-a-dir/wk\.db"):
        connect(Settings(db=str(blocker / "wk.db")))


def test_a_url_that_is_not_a_database_is_a_configuration_error_without_its_password() -> None:
    with pytest.raises(ConfigurationError) as caught:
        connect(Settings(db="mysql://root:hunter2-secret@db/wk"))
    assert "hunter2-secret" not in str(caught.value)
    assert "mysql://root:***@db/wk" in str(caught.value)


def test_two_processes_upgrading_one_new_database_at_once_both_succeed(db_url: str) -> None:
    """Two services started together against a new database: one creates the schema, the other waits for it
    (PostgreSQL: an advisory lock; SQLite: BEGIN IMMEDIATE plus the busy timeout) and then finds it at head."""
    engines = [make_engine(db_url), make_engine(db_url)]
    barrier = threading.Barrier(2)
    results: list[str | None] = []
    errors: list[BaseException] = []

    def start(engine: Engine) -> None:
        try:
            barrier.wait()
            results.append(upgrade(engine))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(e,)) for e in engines]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    for e in engines:
        e.dispose()
    assert errors == []
    assert results == [head_revision(), head_revision()]


def test_two_consoles_opening_one_new_sqlite_file_at_once_both_start(tmp_path: Path) -> None:
    settings = Settings(db=str(tmp_path / "shared.db"))
    barrier = threading.Barrier(3)
    revisions: list[str | None] = []
    errors: list[BaseException] = []

    def start() -> None:
        try:
            barrier.wait()
            ctx = open_context(settings, "console")
            revisions.append(current_revision(ctx.db))
            ctx.db.dispose()
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    assert revisions == [head_revision()] * 3
