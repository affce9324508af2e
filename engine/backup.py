"""Backing up and restoring a site's database: `watchkeeper backup [PATH]`, `watchkeeper restore PATH`, and
the copy taken before a migration by `watchkeeper db upgrade --backup-dir DIR` (what the packages run when a
newer version is installed).

SQLite. A live site's file is copied with SQLite's online backup API in one step, so the copy is the database
as one read transaction saw it; in WAL mode the engine keeps writing meanwhile and nothing waits for the copy.
A service on SQLite keeps its Events API queue in a second file, the intake spool (`<name>.intake.db`, see
engine.service.queue). The spool is copied first, then the database: every event the spool copy records as
applied is then in the database copy, and an event still pending in the spool copy that the engine applied
in between is applied again after a restore and found by its dedup key (a repeat trigger pages nobody). The
other order could lose events: applied according to the spool copy, missing from an older database copy.
Each copy is checked (`PRAGMA quick_check`) and switched out of WAL mode, so a backup is one self-contained
file per database.

Restore refuses while an engine runs on the database it would replace: an engine_node row whose heartbeat is
recent (the console's embedded engine and every `serve` node beat every 10 s), unless that node ran on this
machine and its process is gone. The database it replaces is copied aside first, so a restore never loses
data. A backup made by a newer Watchkeeper (a schema revision this one does not know) is refused.

PostgreSQL. pg_dump is consistent while nodes run (`watchkeeper backup` says how to call it). Restore takes a
pg_dump custom-format archive (`pg_dump -Fc`): it checks the archive's schema revision against this
Watchkeeper's migrations and that no engine runs on the target, then replays it with pg_restore and psql in
one transaction (all or nothing), dropping first any table the archive does not have (made by a later
revision), so the database ends exactly as it was when the dump was taken.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import re
import shutil
import socket
import sqlite3
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import Engine, create_engine, inspect, select
from sqlalchemy.engine import URL
from sqlalchemy.exc import SQLAlchemyError

from engine.db import DatabaseURLError, make_engine, normalise_url
from engine.errors import ConfigurationError, ValidationError, WatchkeeperError
from engine.migrate import current_revision, head_revision, is_known_revision, status, upgrade
from engine.models import EngineNode

# A node whose last heartbeat is older than this has stopped, whatever its row says (housekeeping marks such
# rows stopped after the same two minutes). Heartbeats come every 10 s.
RUNNING_WITHIN = timedelta(minutes=2)
BACKUP_DIR_NAME = "backups"
BACKUP_FILE_MODE = 0o640  # as the service writes its own files (UMask=0027): the data names people
PG_ARCHIVE_MAGIC = b"PGDMP"


class EngineRunning(WatchkeeperError):
    """An engine (a `serve` node or a console) is running on the database: stop it first."""


class BackupFailed(WatchkeeperError):
    """A copy could not be made or did not check out; nothing was replaced."""


class UpgradeFailed(WatchkeeperError):
    """A migration failed; the message says what state the database is in and where the backup is."""


# -- engines running on a database ----------------------------------------------------------------------------


@dataclass(frozen=True)
class RunningNode:
    id: str
    mode: str
    hostname: str
    pid: int
    heartbeat_at: datetime

    def describe(self, now: datetime) -> str:
        age = max(0, int((now - self.heartbeat_at).total_seconds()))
        return f"{self.mode} on {self.hostname} (process {self.pid}, last heartbeat {age} s ago)"


def process_alive(pid: int) -> bool:
    """Whether a process with this id exists on this machine (True when that cannot be told)."""
    if os.name == "nt":  # os.kill(pid, 0) would terminate the process on Windows: assume it runs
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    except OSError:
        return True
    return True


def running_engines(
    db: Engine,
    now: datetime,
    *,
    this_host: str | None = None,
    alive: Callable[[int], bool] = process_alive,
) -> list[RunningNode]:
    """Engines with a recent heartbeat on this database, leaving out nodes of this machine whose process is
    gone (killed or crashed without saying so). A database without the engine_node table has none."""
    host = socket.gethostname()[:255] if this_host is None else this_host
    with db.connect() as conn:
        if not inspect(conn).has_table(EngineNode.__tablename__):
            return []
        rows = conn.execute(
            select(
                EngineNode.id, EngineNode.mode, EngineNode.hostname, EngineNode.pid, EngineNode.heartbeat_at
            ).where(EngineNode.status != "stopped", EngineNode.heartbeat_at >= now - RUNNING_WITHIN)
        ).all()
    running = []
    for node_id, mode, hostname, pid, heartbeat_at in rows:
        if hostname == host and not alive(int(pid)):
            continue
        running.append(RunningNode(node_id, mode, hostname, int(pid), heartbeat_at))
    return running


def refuse_if_running(db: Engine, now: datetime, action: str) -> None:
    nodes = running_engines(db, now)
    if nodes:
        which = "; ".join(n.describe(now) for n in nodes)
        raise EngineRunning(
            f"cannot {action} while an engine runs on this database: {which}. Stop it first "
            "(`systemctl stop watchkeeper` for the service, close the consoles); a node that stopped without "
            f"saying so counts as stopped {int(RUNNING_WITHIN.total_seconds())} s after its last heartbeat"
        )


# -- SQLite files ---------------------------------------------------------------------------------------------


def _parse(url: str) -> URL:
    try:
        return normalise_url(url)
    except DatabaseURLError as exc:
        raise ConfigurationError(str(exc)) from None


def sqlite_file(url: str) -> Path | None:
    """The database file of a SQLite URL; None for PostgreSQL. In-memory databases cannot be backed up."""
    parsed = _parse(url)
    if parsed.get_backend_name() != "sqlite":
        return None
    database = parsed.database or ""
    if not database or database == ":memory:" or database.startswith("file:"):
        raise ConfigurationError(
            f"the database {url!r} is not a file: there is nothing to back up or restore"
        )
    return Path(database)


def spool_beside(db_file: Path) -> Path:
    """The intake spool that belongs beside a database file (the rule is engine.service.queue's)."""
    from engine.service.queue import spool_path

    probe = create_engine(f"sqlite:///{db_file}")  # not connected: only its URL is read
    try:
        found = spool_path(probe)
    finally:
        probe.dispose()
    if found is None:  # pragma: no cover - only for in-memory URLs, refused before
        raise ConfigurationError(f"{db_file}: no intake spool can sit beside this database")
    return found


def _sidecars(path: Path) -> list[Path]:
    return [path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")]


def backup_name(db_file: Path, now: datetime, label: str = "") -> str:
    stamp = now.strftime("%Y%m%d-%H%M%S")
    middle = f"-{label}" if label else ""
    return f"{db_file.stem}{middle}-{stamp}{db_file.suffix or '.db'}"


def _free_name(directory: Path, name: str) -> Path:
    """directory/name, or name-2, name-3 … when a backup of the same second is already there."""
    candidate = directory / name
    stem, suffix = candidate.stem, candidate.suffix
    n = 2
    while candidate.exists() or spool_beside(candidate).exists():
        candidate = directory / f"{stem}-{n}{suffix}"
        n += 1
    return candidate


def backup_target(db_file: Path, path: str | Path | None, now: datetime, label: str = "") -> Path:
    """Where a backup goes: PATH itself (a new file), a dated file in PATH (a folder, or a name ending in
    a slash), or in backups/ beside the database when no PATH is given."""
    if path is None:
        return _free_name(db_file.parent / BACKUP_DIR_NAME, backup_name(db_file, now, label))
    folder = str(path).endswith(("/", os.sep))  # Path() drops a trailing slash: look at the text first
    path = Path(path)
    if folder or path.is_dir():
        return _free_name(path, backup_name(db_file, now, label))
    for existing in (path, spool_beside(path)):
        if existing.exists():
            raise ValidationError(
                "already exists; a backup never overwrites a file: choose another name or a directory",
                where=str(existing),
            )
    return path


def _fsync_dir(directory: Path) -> None:
    if os.name == "nt":  # directories cannot be opened for fsync there; the rename is durable enough
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _open_existing(path: Path) -> sqlite3.Connection:
    """A connection to a database file that must already exist (sqlite3 would create an empty one)."""
    if not path.is_file():
        raise ValidationError("no such database file", where=str(path))
    conn = sqlite3.connect(str(path), timeout=30)
    conn.execute("PRAGMA busy_timeout=30000")
    return conn


def copy_sqlite(source: Path, dest: Path, *, mode: int = BACKUP_FILE_MODE) -> None:
    """Copy a database that may be in use into `dest` (a new file): one backup step, so the copy is one
    consistent snapshot; then checked and taken out of WAL mode. `dest` appears only when complete."""
    partial = dest.with_name(dest.name + ".part")
    for leftover in (partial, *_sidecars(partial)):
        leftover.unlink(missing_ok=True)
    try:
        src = _open_existing(source)
        try:
            dst = sqlite3.connect(str(partial))
            try:
                src.backup(dst)  # pages=-1: the whole database in one step, as one read transaction saw it
                dst.execute("PRAGMA journal_mode=DELETE")
                verdict = dst.execute("PRAGMA quick_check").fetchone()[0]
            finally:
                dst.close()
        finally:
            src.close()
        if verdict != "ok":
            raise BackupFailed(f"the copy of {source} does not check out ({verdict}); nothing was kept")
        with contextlib.suppress(OSError):  # a file system without modes
            os.chmod(partial, mode)
        with open(partial, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(partial, dest)
        _fsync_dir(dest.parent)
    except sqlite3.Error as exc:
        raise BackupFailed(f"cannot copy {source}: {exc}") from None
    finally:
        partial.unlink(missing_ok=True)


def _revision_of(path: Path) -> str | None:
    """The schema revision recorded in a SQLite file; None when it has none (not made by the migrations)."""
    conn = _open_existing(path)
    try:
        found = conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'alembic_version'"
        ).fetchone()
        if found is None:
            return None
        row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
        return str(row[0]) if row else None
    except sqlite3.DatabaseError as exc:
        raise ValidationError(f"not a SQLite database: {exc}", where=str(path)) from None
    finally:
        conn.close()


def _check_file(path: Path) -> None:
    conn = _open_existing(path)
    try:
        verdict = conn.execute("PRAGMA quick_check").fetchone()[0]
    except sqlite3.DatabaseError as exc:
        raise ValidationError(f"not a SQLite database: {exc}", where=str(path)) from None
    finally:
        conn.close()
    if verdict != "ok":
        raise ValidationError(f"the file is damaged ({verdict})", where=str(path))


# -- backup ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BackupResult:
    database: Path
    spool: Path | None
    revision: str | None

    def lines(self) -> list[str]:
        out = [f"backed up the database to {self.database} (schema revision {self.revision or 'none'})"]
        if self.spool is not None:
            out.append(f"backed up the intake spool to {self.spool}")
        return out


def pg_dump_advice(url: str, now: datetime) -> str:
    parsed = _parse(url)
    target = parsed.set(drivername="postgresql", password=None).render_as_string(hide_password=True)
    name = f"watchkeeper-{now:%Y%m%d-%H%M%S}.dump"
    return (
        "`watchkeeper backup` copies SQLite files; back up this PostgreSQL database with pg_dump, which is "
        f"consistent while the nodes run: pg_dump -Fc --file={name} '{target}' "
        "(restore it with `watchkeeper restore FILE`)"
    )


def backup_sqlite(db_file: Path, target: Path) -> BackupResult:
    """The spool (when there is one), then the database, each copied as one consistent snapshot."""
    if not db_file.is_file():
        raise ValidationError("no database file to back up", where=str(db_file))
    target.parent.mkdir(parents=True, exist_ok=True)
    spool = spool_beside(db_file)
    spool_copy: Path | None = None
    if spool.is_file():
        spool_copy = spool_beside(target)
        copy_sqlite(spool, spool_copy)
    try:
        copy_sqlite(db_file, target)
    except BaseException:
        if spool_copy is not None:  # half a backup is worse than none: it would be taken for a whole one
            spool_copy.unlink(missing_ok=True)
        raise
    return BackupResult(target, spool_copy, _revision_of(target))


def backup(url: str, path: str | Path | None, now: datetime) -> BackupResult:
    """`watchkeeper backup [PATH]`."""
    db_file = sqlite_file(url)
    if db_file is None:
        raise ConfigurationError(pg_dump_advice(url, now))
    return backup_sqlite(db_file, backup_target(db_file, path, now))


# -- restore --------------------------------------------------------------------------------------------------


@dataclass
class RestoreResult:
    database: str
    source: Path
    revision: str
    head: str
    spool: Path | None = None
    set_aside: BackupResult | None = None
    dropped_tables: list[str] = field(default_factory=list)
    sqlite: bool = True

    def lines(self) -> list[str]:
        out = [f"restored the {self.database} from {self.source} (schema revision {self.revision})"]
        if self.spool is not None:
            out.append(f"restored the intake spool from {self.spool}")
        elif self.sqlite:
            out.append("the backup has no intake spool: the site starts with an empty Events API queue")
        if self.dropped_tables:
            out.append("dropped tables the backup does not have: " + ", ".join(self.dropped_tables))
        if self.set_aside is not None:
            out.append(f"the database it replaced was copied to {self.set_aside.database} first")
        if self.revision != self.head:
            if self.sqlite:
                out.append(
                    f"this Watchkeeper is at revision {self.head}: it upgrades the file when it next opens it "
                    "(or run `watchkeeper db upgrade`)"
                )
            else:
                out.append(f"this Watchkeeper needs revision {self.head}: run `watchkeeper db upgrade` next")
        return out


def _check_revision(revision: str | None, source: Path) -> str:
    if revision is None:
        raise ValidationError(
            "not a Watchkeeper database backup: it records no schema revision", where=str(source)
        )
    if not is_known_revision(revision):
        raise ConfigurationError(
            f"{source} is at schema revision {revision}, which this Watchkeeper does not know: it was made by "
            f"a newer Watchkeeper (this one's is {head_revision()}); restore it with that version"
        )
    return revision


def _keep_owner(new: Path, old: Path) -> None:
    """The restored file keeps the owner and mode of the one it replaces (root restoring a service's file)."""
    try:
        st = old.stat()
    except FileNotFoundError:
        return
    with contextlib.suppress(OSError):
        os.chmod(new, st.st_mode & 0o7777)
    if hasattr(os, "chown"):
        with contextlib.suppress(OSError):
            os.chown(new, st.st_uid, st.st_gid)


def _put_in_place(staged: Path, target: Path) -> None:
    # A -wal file left from the replaced database would be replayed into the new one: remove both sidecars.
    for sidecar in _sidecars(target):
        sidecar.unlink(missing_ok=True)
    _keep_owner(staged, target)
    os.replace(staged, target)


def _backup_file(path: Path) -> Path:
    """The backup to restore, which must exist and be readable by whoever runs the restore."""
    path = path.resolve()
    if not path.is_file():
        raise ValidationError("no such backup file", where=str(path))
    if not os.access(path, os.R_OK):
        raise ValidationError(
            f"the user {getpass.getuser()} cannot read it: copy it where that user can "
            "(for the service, into /var/lib/watchkeeper/backups)",
            where=str(path),
        )
    return path


def restore_sqlite(db_file: Path, source: Path, now: datetime) -> RestoreResult:
    source = _backup_file(source)
    if _is_pg_archive(source):
        raise ValidationError(
            f"this is a pg_dump archive, but the database is the SQLite file {db_file}", where=str(source)
        )
    if source == db_file.resolve():
        raise ValidationError("this is the database itself, not a backup of it", where=str(source))
    _check_file(source)
    revision = _check_revision(_revision_of(source), source)
    source_spool = spool_beside(source)
    has_spool = source_spool.is_file()
    if has_spool:
        _check_file(source_spool)
    set_aside: BackupResult | None = None
    db_file.parent.mkdir(parents=True, exist_ok=True)
    if db_file.exists():
        target = make_engine(f"sqlite:///{db_file}")
        try:
            refuse_if_running(target, now, "restore")
        finally:
            target.dispose()
        set_aside = backup_sqlite(db_file, backup_target(db_file, None, now, "before-restore"))
    spool = spool_beside(db_file)
    staged_db = db_file.with_name(db_file.name + ".restoring")
    staged_spool = spool.with_name(spool.name + ".restoring")
    try:
        copy_sqlite(source, staged_db)
        if has_spool:
            copy_sqlite(source_spool, staged_spool)
        if db_file.exists():  # again, just before replacing: an engine may have started meanwhile
            target = make_engine(f"sqlite:///{db_file}")
            try:
                refuse_if_running(target, now, "restore")
            finally:
                target.dispose()
        _put_in_place(staged_db, db_file)
        if has_spool:
            _put_in_place(staged_spool, spool)
        else:
            # Events queued after the backup belong to the database that was replaced (kept in set_aside).
            for stale in (spool, *_sidecars(spool)):
                stale.unlink(missing_ok=True)
    finally:
        staged_db.unlink(missing_ok=True)
        staged_spool.unlink(missing_ok=True)
    return RestoreResult(
        database=f"SQLite file {db_file}",
        source=source,
        revision=revision,
        head=head_revision(),
        spool=source_spool if has_spool else None,
        set_aside=set_aside,
    )


def _is_pg_archive(path: Path) -> bool:
    try:
        with open(path, "rb") as handle:
            return handle.read(len(PG_ARCHIVE_MAGIC)) == PG_ARCHIVE_MAGIC
    except OSError:
        return False


# -- PostgreSQL -----------------------------------------------------------------------------------------------

_COPY_REVISION = re.compile(
    r"^COPY public\.alembic_version \(version_num\) FROM stdin;\n(?P<rows>.*?)^\\\.$",
    re.MULTILINE | re.DOTALL,
)
_CREATE_TABLE = re.compile(r'^CREATE TABLE public\.("?)(?P<name>[^" (]+)\1 \(', re.MULTILINE)


def _pg_tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise ConfigurationError(
            f"restoring a PostgreSQL database needs PostgreSQL's client program {name} "
            "(Debian and Ubuntu: apt install postgresql-client)"
        )
    return found


def _pg_env(parsed: URL) -> dict[str, str]:
    env = dict(os.environ)
    if isinstance(parsed.password, str) and parsed.password:
        env["PGPASSWORD"] = parsed.password  # never on a command line, where `ps` shows it
    return env


def _last_lines(text: str, n: int = 5) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return " / ".join(lines[-n:]) or "(no message)"


def _connect_target(url: str) -> Engine:
    from engine.bootstrap import connect
    from engine.settings import Settings

    return connect(Settings(db=url))


def restore_postgresql(url: str, archive: Path, now: datetime) -> RestoreResult:
    from engine.bootstrap import describe_database, error_reason

    archive = _backup_file(archive)
    if not _is_pg_archive(archive):
        raise ValidationError(
            "not a pg_dump custom-format archive: make PostgreSQL backups with `pg_dump -Fc`",
            where=str(archive),
        )
    parsed = _parse(url)
    pg_restore, psql = _pg_tool("pg_restore"), _pg_tool("psql")
    label = describe_database(parsed)
    with tempfile.TemporaryDirectory(prefix="watchkeeper-restore-") as scratch:
        script = Path(scratch) / "restore.sql"
        made = subprocess.run(
            [
                pg_restore,
                "--clean",
                "--if-exists",
                "--no-owner",
                "--no-privileges",
                "-f",
                str(script),
                str(archive),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if made.returncode != 0:
            raise ValidationError(
                f"pg_restore cannot read it: {_last_lines(made.stderr)}", where=str(archive)
            )
        text = script.read_text(encoding="utf-8")
        rows = _COPY_REVISION.search(text)
        revision = _check_revision(rows.group("rows").strip() or None if rows else None, archive)
        tables = {m.group("name") for m in _CREATE_TABLE.finditer(text)}
        db = _connect_target(url)
        try:
            refuse_if_running(db, now, "restore")
            present = set(inspect(db).get_table_names(schema="public"))
        finally:
            db.dispose()
        extra = sorted(present - tables)
        drops = "".join(f'DROP TABLE IF EXISTS public."{name}" CASCADE;\n' for name in extra)
        script.write_text(drops + text, encoding="utf-8")
        target = parsed.set(drivername="postgresql", password=None).render_as_string(hide_password=False)
        ran = subprocess.run(
            [
                psql,
                "-X",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "--single-transaction",
                "-f",
                str(script),
                "-d",
                target,
            ],
            capture_output=True,
            text=True,
            env=_pg_env(parsed),
            check=False,
        )
        if ran.returncode != 0:
            raise BackupFailed(
                f"the restore into the {label} failed and was rolled back (nothing changed): "
                f"{_last_lines(ran.stderr)}"
            )
    db = _connect_target(url)
    try:
        now_at = current_revision(db)
    except SQLAlchemyError as exc:
        raise BackupFailed(
            f"the {label} does not answer after the restore: {error_reason(exc, None)}"
        ) from None
    finally:
        db.dispose()
    return RestoreResult(
        database=label,
        source=archive,
        revision=now_at or revision,
        head=head_revision(),
        dropped_tables=extra,
        sqlite=False,
    )


def restore(url: str, path: Path, now: datetime) -> RestoreResult:
    """`watchkeeper restore PATH`."""
    db_file = sqlite_file(url)
    if db_file is None:
        return restore_postgresql(url, path, now)
    return restore_sqlite(db_file, path, now)


# -- upgrade with a backup first ------------------------------------------------------------------------------


@contextlib.contextmanager
def _engine_for(db_file: Path) -> Iterator[Engine]:
    db = make_engine(f"sqlite:///{db_file}")
    try:
        yield db
    finally:
        db.dispose()


def upgrade_with_backup(url: str, backup_dir: Path, now: datetime) -> list[str]:
    """`watchkeeper db upgrade --backup-dir DIR`: copy the SQLite database and its spool into DIR, then migrate.

    Refused while an engine runs on the file. A migration runs in one transaction: when it fails, the
    database is left at the revision it had, and the error says so and where the copy is."""
    db_file = sqlite_file(url)
    if db_file is None:
        raise ConfigurationError(
            "--backup-dir is for SQLite sites; "
            + pg_dump_advice(url, now)
            + ", then run `watchkeeper db upgrade`"
        )
    if not db_file.exists():
        return [f"no database at {db_file} yet: nothing to back up or upgrade"]
    with _engine_for(db_file) as db:
        refuse_if_running(db, now, "upgrade")
        before = status(db)
    if not before.known:
        raise ConfigurationError(f"{before.mismatch_message()} (SQLite file {db_file})")
    backup_dir.mkdir(parents=True, exist_ok=True)
    copy = backup_sqlite(db_file, backup_target(db_file, backup_dir, now, "before-upgrade"))
    lines = copy.lines()
    if before.at_head:
        lines.append(f"SQLite file {db_file}: already at {before.head} (head)")
        return lines
    try:
        with _engine_for(db_file) as db:
            after = upgrade(db)
    except Exception as exc:
        raise UpgradeFailed(_failure_message(db_file, before.current, before.head, exc, copy)) from None
    lines.append(f"SQLite file {db_file}: upgraded from {before.current or 'empty'} to {after} (head)")
    return lines


def _failure_message(
    db_file: Path, was: str | None, head: str, exc: BaseException, copy: BackupResult
) -> str:
    reason = " ".join(str(getattr(exc, "orig", None) or exc).split()) or type(exc).__name__
    try:
        with _engine_for(db_file) as db:
            now_at: str | None = current_revision(db)
        unchanged = now_at == was
    except Exception:
        now_at, unchanged = None, False
    where = str(copy.database) + (f" (and its intake spool {copy.spool})" if copy.spool else "")
    if unchanged:
        state = (
            f"The database is unchanged at revision {was or 'none'} (the upgrade runs in one transaction): "
            "the version installed before can still use it."
        )
    else:
        state = (
            f"The database is now at revision {now_at or 'unknown'}: put the copy back with "
            f"`watchkeeper restore {copy.database}`."
        )
    return (
        f"the upgrade of SQLite file {db_file} from {was or 'none'} to {head} failed: {reason}. {state} "
        f"A copy taken just before the upgrade is at {where}."
    )
