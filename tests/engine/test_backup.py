"""`watchkeeper backup`, `watchkeeper restore` and `db upgrade --backup-dir`: what an administrator relies on.

SQLite backups are copies of files a live engine may be writing (tests/service/test_backup_live.py runs one);
here each rule is checked on its own: where backups go, that nothing is overwritten, that a restore is refused
while an engine runs on the database (SQLite and PostgreSQL), that a backup from a newer Watchkeeper is
refused, that PostgreSQL archives are checked and replayed in one transaction, and that a failed migration
leaves the database as it was and names the copy taken before it.
"""

from __future__ import annotations

import os
import shutil
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, inspect, select, text

import engine.migrate as migrate
from engine.api import trigger
from engine.backup import (
    BackupFailed,
    EngineRunning,
    backup,
    restore,
    running_engines,
    spool_beside,
    upgrade_with_backup,
)
from engine.bootstrap import open_context
from engine.buildinfo import BuildInfo, new_build_info, read_build_info, version_line
from engine.cli import main
from engine.context import AppContext
from engine.db import make_engine, write_session
from engine.errors import ConfigurationError, ValidationError
from engine.migrate import current_revision, head_revision, stamp, upgrade
from engine.models import EngineNode, Incident, Person, Policy, PolicyLevel, PolicyTarget
from engine.settings import Settings
from tests.conftest import CLOCK_START
from tests.engine.test_cli import _restore_logging  # noqa: F401 (autouse: main() configures logging)

NOW = CLOCK_START
HOST = socket.gethostname()[:255]


# -- helpers --------------------------------------------------------------------------------------------------


def seed_site(url: str) -> tuple[Engine, AppContext]:
    """A database made by the migrations, with a person and the policy "ops" that pages her by SMS."""
    db = make_engine(url)
    upgrade(db)
    ctx = AppContext.create(Settings(db=url), mode="test", db=db)
    with write_session(ctx.sessions) as session:
        session.add(Person(handle="alice", name="Alice", phone="+27820000001", preferred_channel="sms"))
        pol = Policy(name="ops")
        pol.levels = [
            PolicyLevel(level=1, delay_seconds=0, targets=[PolicyTarget(type="person", identifier="alice")])
        ]
        session.add(pol)
    return db, ctx


def _site(url: str) -> Engine:
    """seed_site, with one incident ("before")."""
    db, _ctx = seed_site(url)
    _incident(db, "before")
    return db


def _incident(db: Engine, key: str) -> None:
    ctx = AppContext.create(Settings(db=db.url.render_as_string(hide_password=False)), mode="test", db=db)
    trigger(ctx, policy="ops", summary=f"Incident {key}", key=key, severity="critical")


def _keys(db: Engine) -> set[str]:
    with db.connect() as conn:
        return set(conn.execute(select(Incident.key)).scalars())


def _node(
    db: Engine, *, host: str = HOST, pid: int | None = None, beat: Any = NOW, status: str = "running"
) -> None:
    with db.begin() as conn:
        conn.execute(
            EngineNode.__table__.insert().values(  # type: ignore[attr-defined]
                id=f"{host}:{pid}:serve:test",
                hostname=host,
                pid=os.getpid() if pid is None else pid,
                mode="serve",
                version="test",
                status=status,
                started_at=beat,
                heartbeat_at=beat,
                last_pass={},
            )
        )


def _queue_in_spool(db_file: Path, dedup_key: str) -> Path:
    """An event waiting in the intake spool beside `db_file` (a queue table as the spool has it)."""
    spool = spool_beside(db_file)
    conn = sqlite3.connect(spool)
    conn.execute("CREATE TABLE IF NOT EXISTS intake_event (id INTEGER PRIMARY KEY, dedup_key TEXT)")
    conn.execute("INSERT INTO intake_event (dedup_key) VALUES (?)", (dedup_key,))
    conn.commit()
    conn.close()
    return spool


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _make_backup(url: str, db: Engine, tmp_path: Path) -> Path:
    """A backup of the site as it is now: `watchkeeper backup` on SQLite, `pg_dump -Fc` on PostgreSQL."""
    if db.dialect.name == "sqlite":
        return backup(url, tmp_path / "site-backup.db", NOW).database
    path = tmp_path / "site.dump"
    target = db.url.set(drivername="postgresql").render_as_string(hide_password=False)
    subprocess.run(["pg_dump", "-Fc", "--file", str(path), target], check=True)
    return path


@pytest.fixture
def site(db_url: str) -> Iterator[Engine]:
    db = _site(db_url)
    yield db
    db.dispose()


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


# -- backup ---------------------------------------------------------------------------------------------------


def test_backup_without_a_path_goes_to_backups_beside_the_database(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path}/watchkeeper.db"
    _site(url).dispose()
    code, out, err = run(["backup", "--db", url], capsys)
    assert code == 0, err
    made = sorted((tmp_path / "backups").glob("watchkeeper-*.db"))
    assert len(made) == 1
    assert str(made[0]) in out
    copy = make_engine(f"sqlite:///{made[0]}")
    try:
        assert _keys(copy) == {"before"}
        assert current_revision(copy) == head_revision()
    finally:
        copy.dispose()
    # A second backup in the same second gets a name of its own.
    assert run(["backup", "--db", url], capsys)[0] == 0
    assert len(list((tmp_path / "backups").glob("watchkeeper-*.db"))) == 2


def test_a_backup_is_one_self_contained_file_and_never_overwrites(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/watchkeeper.db"
    _site(url).dispose()
    result = backup(url, tmp_path / "copy.db", NOW)
    conn = sqlite3.connect(result.database)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    finally:
        conn.close()
    assert not Path(str(result.database) + "-wal").exists()
    before = result.database.read_bytes()
    with pytest.raises(ValidationError, match="never overwrites"):
        backup(url, result.database, NOW)
    assert result.database.read_bytes() == before
    # A folder gets a dated file inside it, and so does a new name that ends in a slash.
    (tmp_path / "dir").mkdir()
    inside = backup(url, tmp_path / "dir", NOW)
    assert inside.database.parent == tmp_path / "dir"
    assert inside.database.name == "watchkeeper-20260302-080000.db"
    new_folder = backup(url, f"{tmp_path}/usb/", NOW)
    assert new_folder.database == tmp_path / "usb" / "watchkeeper-20260302-080000.db"


def test_backup_copies_the_intake_spool_beside_the_database_copy(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/watchkeeper.db"
    _site(url).dispose()
    _queue_in_spool(tmp_path / "watchkeeper.db", "queued-1")
    result = backup(url, tmp_path / "b" / "copy.db", NOW)
    assert result.spool == tmp_path / "b" / "copy.intake.db"
    copy = sqlite3.connect(result.spool)
    try:
        assert copy.execute("SELECT dedup_key FROM intake_event").fetchall() == [("queued-1",)]
    finally:
        copy.close()


def test_backup_of_a_postgresql_site_says_to_use_pg_dump(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["backup", "--db", "postgresql://wk@db1.example.org:5432/watchkeeper"], capsys)
    assert code == 1 and out == ""
    assert "pg_dump -Fc" in err
    assert "postgresql://wk@db1.example.org:5432/watchkeeper" in err


def test_backup_of_a_missing_database_is_an_error_that_creates_nothing(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="no database file"):
        backup(f"sqlite:///{tmp_path}/none.db", None, NOW)
    assert not (tmp_path / "none.db").exists()


# -- restore --------------------------------------------------------------------------------------------------


def test_restore_puts_the_backup_back_and_keeps_what_it_replaced(
    site: Engine, db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    saved = _make_backup(db_url, site, tmp_path)
    _incident(site, "after")
    assert _keys(site) == {"before", "after"}
    site.dispose()
    code, out, err = run(["restore", str(saved), "--db", db_url], capsys)
    assert code == 0, err
    assert f"schema revision {head_revision()}" in out
    assert _keys(site) == {"before"}
    if site.dialect.name == "sqlite":
        # The database it replaced was copied aside first, "after" and all.
        kept = next(
            (Path(site.url.database or "").parent / "backups").glob("watchkeeper-before-restore-*.db")
        )
        assert str(kept) in out
        copy = make_engine(f"sqlite:///{kept}")
        try:
            assert _keys(copy) == {"before", "after"}
        finally:
            copy.dispose()


def test_restore_is_refused_while_an_engine_runs_on_the_database(
    site: Engine, db_url: str, tmp_path: Path
) -> None:
    saved = _make_backup(db_url, site, tmp_path)
    _incident(site, "after")
    _node(site, beat=NOW - timedelta(seconds=5))
    with pytest.raises(EngineRunning, match=r"serve on .* last heartbeat 5 s ago"):
        restore(db_url, saved, NOW)
    assert _keys(site) == {"before", "after"}  # nothing replaced
    # Once the node has said it stopped, the restore goes ahead.
    with site.begin() as conn:
        conn.execute(EngineNode.__table__.update().values(status="stopped"))  # type: ignore[attr-defined]
    site.dispose()
    restore(db_url, saved, NOW)
    assert _keys(site) == {"before"}


def test_which_nodes_count_as_running(site: Engine) -> None:
    _node(site, host="other-host", pid=1, beat=NOW - timedelta(seconds=90))  # another machine, recent
    _node(site, host="gone-host", pid=2, beat=NOW - timedelta(minutes=3))  # silent too long
    _node(site, pid=_dead_pid(), beat=NOW)  # this machine, its process gone: crashed
    _node(site, host="stopped-host", pid=3, beat=NOW, status="stopped")
    _node(site, host="degraded-host", pid=4, beat=NOW, status="degraded")
    running = running_engines(site, NOW)
    assert sorted(n.hostname for n in running) == ["degraded-host", "other-host"]


def test_a_backup_from_a_newer_watchkeeper_is_refused(site: Engine, db_url: str, tmp_path: Path) -> None:
    with site.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = 'ffff_from_the_future'"))
    saved = _make_backup(db_url, site, tmp_path)
    with site.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = :v"), {"v": head_revision()})
    _incident(site, "after")
    site.dispose()
    with pytest.raises(ConfigurationError, match=r"ffff_from_the_future.*newer Watchkeeper"):
        restore(db_url, saved, NOW)
    assert _keys(site) == {"before", "after"}
    assert current_revision(site) == head_revision()


def test_a_database_that_watchkeeper_did_not_make_is_not_restored(
    site: Engine, db_url: str, tmp_path: Path
) -> None:
    with site.begin() as conn:
        conn.execute(text("DROP TABLE alembic_version"))
    saved = _make_backup(db_url, site, tmp_path)
    stamp(site)  # the live site is whole again
    site.dispose()
    with pytest.raises(ValidationError, match="records no schema revision"):
        restore(db_url, saved, NOW)
    assert current_revision(site) == head_revision()


def test_restore_of_something_that_is_not_a_backup_changes_nothing(
    site: Engine, db_url: str, tmp_path: Path
) -> None:
    junk = tmp_path / "notes.txt"
    junk.write_text("not a database\n" * 100)
    site.dispose()
    with pytest.raises(ValidationError):
        restore(db_url, junk, NOW)
    assert _keys(site) == {"before"}


def test_sqlite_restore_replaces_the_spool_and_drops_a_stale_wal(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/watchkeeper.db"
    db = _site(url)
    db.dispose()
    saved = backup(url, tmp_path / "saved.db", NOW)
    assert saved.spool is None
    live_spool = _queue_in_spool(tmp_path / "watchkeeper.db", "queued-after-the-backup")
    # A -wal file of the database being replaced must not be replayed into the restored one.
    (tmp_path / "watchkeeper.db-wal").write_bytes(b"stale")
    result = restore(url, saved.database, NOW)
    assert not (tmp_path / "watchkeeper.db-wal").exists()
    assert not live_spool.exists()  # the spool belonged to the replaced database…
    assert result.set_aside is not None and result.set_aside.spool is not None  # …and was kept with it
    db = make_engine(url)
    try:
        assert _keys(db) == {"before"}
    finally:
        db.dispose()


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_postgresql_restore_drops_tables_a_later_revision_made(
    db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = db_url
    db = _site(url)
    saved = _make_backup(url, db, tmp_path)
    with db.begin() as conn:
        conn.execute(text("CREATE TABLE added_later (id integer)"))
    db.dispose()
    code, out, err = run(["restore", str(saved), "--db", url], capsys)
    assert code == 0, err
    assert "dropped tables the backup does not have: added_later" in out
    assert "added_later" not in inspect(db).get_table_names()
    assert _keys(db) == {"before"}
    db.dispose()


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_a_postgresql_restore_that_fails_late_changes_nothing(db_url: str, tmp_path: Path) -> None:
    url = db_url
    db = _site(url)
    # A damaged archive: a level that points at no policy (foreign keys switched off while it was written).
    # Its tables, rows and indexes replay, and only re-creating the foreign key at the very end fails.
    with db.begin() as conn:
        conn.execute(text("ALTER TABLE policy_level DISABLE TRIGGER ALL"))
        conn.execute(text("UPDATE policy_level SET policy_id = 999999"))
    saved = _make_backup(url, db, tmp_path)
    with db.begin() as conn:
        conn.execute(text("UPDATE policy_level SET policy_id = (SELECT min(id) FROM policy)"))
        conn.execute(text("ALTER TABLE policy_level ENABLE TRIGGER ALL"))
    _incident(db, "after")
    db.dispose()
    with pytest.raises(BackupFailed, match=r"rolled back \(nothing changed\).*policy_level"):
        restore(url, saved, NOW)
    assert _keys(db) == {"before", "after"}
    assert [fk["referred_table"] for fk in inspect(db).get_foreign_keys("policy_level")] == ["policy"]
    db.dispose()


def test_a_sqlite_backup_is_refused_for_a_postgresql_site_and_the_reverse(
    site: Engine, db_url: str, tmp_path: Path
) -> None:
    if site.dialect.name == "sqlite":
        fake = tmp_path / "x.dump"
        fake.write_bytes(b"PGDMP\x01\x0e\x00" + b"\x00" * 100)
        with pytest.raises(ValidationError, match="pg_dump archive, but the database is the SQLite file"):
            restore(db_url, fake, NOW)
    else:
        other = f"sqlite:///{tmp_path}/other.db"
        _site(other).dispose()
        saved = backup(other, tmp_path / "sqlite-backup.db", NOW)
        site.dispose()
        with pytest.raises(ValidationError, match="not a pg_dump custom-format archive"):
            restore(db_url, saved.database, NOW)


# -- db upgrade --backup-dir ---------------------------------------------------------------------------------


def _revision(name: str, body: str) -> str:
    """A revision file after this Watchkeeper's head ({head}), as a newer version would ship it."""
    lines = [
        "import sqlalchemy as sa",
        "from alembic import op",
        f"revision = {name!r}",
        "down_revision = '{head}'",
        "branch_labels = None",
        "depends_on = None",
        "def upgrade() -> None:",
        *[f"    {line}" for line in body.splitlines()],
        "def downgrade() -> None:",
        "    pass",
    ]
    return "\n".join(lines) + "\n"


# Fails half-way, after a change it must not leave behind.
FAILING_REVISION = _revision(
    "9001_fails",
    'op.create_table("half_done", sa.Column("id", sa.Integer, primary_key=True))\n'
    'op.execute("INSERT INTO half_done (id) VALUES (1)")\n'
    'raise RuntimeError("disk quota exceeded while rebuilding incident")',
)
WORKING_REVISION = _revision(
    "9001_adds", 'op.create_table("added_by_9001", sa.Column("id", sa.Integer, primary_key=True))'
)


@pytest.fixture
def later_migrations(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """This Watchkeeper's migrations plus one revision of the test's choosing, as a newer version's would be."""

    def install(source: str) -> str:
        head = head_revision()
        folder = tmp_path / "migrations"
        shutil.copytree(migrate.MIGRATIONS_DIR, folder, ignore=shutil.ignore_patterns("__pycache__"))
        (folder / "versions" / "9001_next.py").write_text(source.format(head=head))
        monkeypatch.setattr(migrate, "MIGRATIONS_DIR", folder)
        return head

    return install


def test_a_failed_migration_leaves_the_database_as_it_was_and_names_the_copy(
    tmp_path: Path, later_migrations: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path}/watchkeeper.db"
    _site(url).dispose()
    was = later_migrations(FAILING_REVISION)
    code, _out, err = run(["db", "upgrade", "--backup-dir", str(tmp_path / "pre"), "--db", url], capsys)
    assert code == 1
    assert "disk quota exceeded" in err
    assert f"unchanged at revision {was}" in err
    copy = next((tmp_path / "pre").glob("watchkeeper-before-upgrade-*.db"))
    assert f"copy taken just before the upgrade is at {copy}" in err
    db = make_engine(url)
    try:
        assert current_revision(db) == was
        assert "half_done" not in inspect(db).get_table_names()
        assert _keys(db) == {"before"}
    finally:
        db.dispose()


def test_an_upgrade_with_a_backup_dir_copies_first_then_migrates(
    tmp_path: Path, later_migrations: Any
) -> None:
    url = f"sqlite:///{tmp_path}/watchkeeper.db"
    _site(url).dispose()
    was = later_migrations(WORKING_REVISION)
    lines = upgrade_with_backup(url, tmp_path / "pre", NOW)
    assert lines[-1].endswith(f"upgraded from {was} to 9001_adds (head)")
    copy = next((tmp_path / "pre").glob("watchkeeper-before-upgrade-*.db"))
    old = make_engine(f"sqlite:///{copy}")
    new = make_engine(url)
    try:
        assert current_revision(old) == was  # the copy is the database as it was before
        assert current_revision(new) == "9001_adds"
        assert "added_by_9001" in inspect(new).get_table_names()
        assert _keys(new) == {"before"}
    finally:
        old.dispose()
        new.dispose()


def test_a_workstation_database_is_copied_before_it_is_upgraded_on_opening(
    tmp_path: Path, later_migrations: Any
) -> None:
    url = f"sqlite:///{tmp_path}/watchkeeper.db"
    _site(url).dispose()
    was = later_migrations(WORKING_REVISION)
    ctx = open_context(Settings(db=url), "console")
    try:
        assert current_revision(ctx.db) == "9001_adds"
    finally:
        ctx.db.dispose()
    copy = next((tmp_path / "backups").glob("watchkeeper-before-upgrade-*.db"))
    old = make_engine(f"sqlite:///{copy}")
    try:
        assert current_revision(old) == was
        assert _keys(old) == {"before"}
    finally:
        old.dispose()
    # Opened again at head: no further copy.
    open_context(Settings(db=url), "console").db.dispose()
    assert len(list((tmp_path / "backups").glob("*.db"))) == 1


def test_an_upgrade_with_a_backup_dir_is_refused_while_an_engine_runs(
    tmp_path: Path, later_migrations: Any
) -> None:
    url = f"sqlite:///{tmp_path}/watchkeeper.db"
    db = _site(url)
    _node(db, beat=NOW)
    db.dispose()
    was = later_migrations(WORKING_REVISION)
    with pytest.raises(EngineRunning):
        upgrade_with_backup(url, tmp_path / "pre", NOW)
    assert not (tmp_path / "pre").exists()
    assert current_revision(db) == was
    db.dispose()


def test_an_upgrade_with_a_backup_dir_of_a_site_with_no_database_yet_creates_nothing(tmp_path: Path) -> None:
    lines = upgrade_with_backup(f"sqlite:///{tmp_path}/new.db", tmp_path / "pre", NOW)
    assert lines == [f"no database at {tmp_path}/new.db yet: nothing to back up or upgrade"]
    assert not (tmp_path / "new.db").exists()


def test_an_upgrade_with_a_backup_dir_on_postgresql_says_to_use_pg_dump(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, _out, err = run(
        ["db", "upgrade", "--backup-dir", "/tmp/x", "--db", "postgresql://wk@db1.example.org/watchkeeper"],
        capsys,
    )
    assert code == 1
    assert "pg_dump -Fc" in err


def test_backup_and_restore_have_help(capsys: pytest.CaptureFixture[str]) -> None:
    for path in (["backup"], ["restore"], ["db", "upgrade"]):
        code, out, _ = run([*path, "--help"], capsys)
        assert code == 0 and out.startswith("usage: watchkeeper")
    assert "--backup-dir" in run(["db", "upgrade", "--help"], capsys)[1]


# -- --version -----------------------------------------------------------------------------------------------


def test_a_packaged_build_says_its_version_and_build_date(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    info = BuildInfo(version="1.2.3", built_at=datetime(2026, 3, 2, 8, 5, tzinfo=UTC), commit="abc1234")
    (tmp_path / "build-info.json").write_text(info.to_json())
    assert read_build_info(tmp_path) == info
    assert version_line("1.2.3", tmp_path) == "watchkeeper 1.2.3 (built 2026-03-02 08:05 UTC, commit abc1234)"


def test_a_source_checkout_does_not_pretend_to_have_a_build_date(tmp_path: Path) -> None:
    assert version_line("1.2.3", tmp_path) == "watchkeeper 1.2.3 (from source, not a packaged build)"
    (tmp_path / "build-info.json").write_text("{ not json")
    assert version_line("1.2.3", tmp_path) == "watchkeeper 1.2.3 (from source, not a packaged build)"


def test_the_build_date_honours_source_date_epoch(tmp_path: Path) -> None:
    info = new_build_info("1.2.3", tmp_path, env={"SOURCE_DATE_EPOCH": "1772438400"})
    assert info.built_at.isoformat() == "2026-03-02T08:00:00+00:00"
    assert info.commit == ""  # not a git checkout
