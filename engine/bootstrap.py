"""From settings to a working AppContext: connect, check the database answers, make sure the schema is right.

Schema policy: a SQLite file is a workstation's own database, so it is upgraded automatically when it is
opened. A PostgreSQL database is shared by many workstations and services, so it is upgraded deliberately by
an administrator (`watchkeeper db upgrade`); a process that finds it at another revision refuses to start and
says so, instead of changing a shared schema under everyone else.

Error messages name the database (file, or host/port/name/user) and never its password.
"""

from __future__ import annotations

import logging
import re

from sqlalchemy import Engine, inspect
from sqlalchemy.engine import URL
from sqlalchemy.exc import SQLAlchemyError

from engine.clock import Clock, SystemClock
from engine.context import AppContext
from engine.db import DatabaseURLError, make_engine, normalise_url, ping
from engine.errors import ConfigurationError, DatabaseUnavailable, WatchkeeperError
from engine.logs import redact, register_secret
from engine.migrate import MigrationStatus, quick_status, status, upgrade
from engine.settings import Settings

log = logging.getLogger(__name__)
CONNECT_TIMEOUT_SECONDS = 10

_USERINFO_RE = re.compile(r"(://[^:/@]*):[^@]*@")


def mask_url(url: str) -> str:
    """The URL with any password replaced by ***, even when it does not parse."""
    return _USERINFO_RE.sub(r"\1:***@", url)


def describe_database(url: str | URL) -> str:
    """'SQLite file /path/watchkeeper.db' or "PostgreSQL database 'wk' on db1:5432 as user 'wk'"."""
    parsed = url if isinstance(url, URL) else normalise_url(url)
    if parsed.get_backend_name() == "sqlite":
        if not parsed.database or parsed.database == ":memory:":
            return "in-memory SQLite database"
        return f"SQLite file {parsed.database}"
    host = parsed.host or "localhost (socket)"
    port = f":{parsed.port}" if parsed.port else ""
    user = f" as user {parsed.username!r}" if parsed.username else ""
    return f"PostgreSQL database {parsed.database or '(default)'!r} on {host}{port}{user}"


def error_reason(exc: BaseException, password: str | None) -> str:
    orig = getattr(exc, "orig", None) or exc
    text = str(orig).strip().splitlines()
    first = text[0].strip() if text else type(orig).__name__
    if password:
        first = first.replace(password, "***")
    return redact(first)


def connect(settings: Settings) -> Engine:
    """An engine for settings.db that has answered a ping; DatabaseUnavailable when it does not."""
    try:
        parsed = normalise_url(settings.db)
    except DatabaseURLError:
        raise ConfigurationError(
            f"the database setting {mask_url(settings.db)!r} is not usable: give a SQLite file path "
            "(or sqlite:///path) or postgresql://user@host:port/name"
        ) from None
    register_secret(parsed.password if isinstance(parsed.password, str) else None)
    label = describe_database(parsed)
    kwargs: dict[str, object] = {}
    if parsed.get_backend_name() == "postgresql" and "connect_timeout" not in parsed.query:
        # A host that drops packets would otherwise hold the operator for minutes before an error.
        kwargs["connect_args"] = {"connect_timeout": CONNECT_TIMEOUT_SECONDS}
    try:
        engine = make_engine(settings.db, **kwargs)
    except OSError as exc:
        raise DatabaseUnavailable(f"cannot create the {label}: {exc.strerror or exc}") from None
    try:
        ping(engine)
    except SQLAlchemyError as exc:
        engine.dispose()
        reason = error_reason(exc, parsed.password if isinstance(parsed.password, str) else None)
        raise DatabaseUnavailable(f"cannot reach the {label}: {reason}") from None
    return engine


def ensure_schema(engine: Engine) -> MigrationStatus:
    """SQLite: upgrade to head. PostgreSQL: refuse unless already at head. Returns the status at the end."""
    label = describe_database(engine.url)
    try:
        quick = quick_status(engine)
        if quick is not None:
            return quick
        now = status(engine)
        if now.at_head:
            return now
        if engine.dialect.name != "sqlite":
            raise ConfigurationError(f"{now.mismatch_message()} ({label})")
        if not now.known:
            raise ConfigurationError(f"{now.mismatch_message()} ({label})")
        if now.current is None:
            tables = set(inspect(engine).get_table_names()) - {"alembic_version"}
            if tables:
                # Another process may have created the schema since we looked (tables and revision are
                # committed together): look again before calling the file foreign.
                again = status(engine)
                if again.at_head:
                    return again
                raise ConfigurationError(
                    f"the {label} has tables but no migration record, so it was not made by Watchkeeper's "
                    "migrations; point --db at a new file or restore a backup"
                )
        if now.current is not None:
            _backup_before_upgrade(engine, label)
        upgrade(engine)
        after = status(engine)
        log.info("upgraded the %s from %s to %s", label, now.current or "empty", after.current)
        return after
    except SQLAlchemyError as exc:
        raise DatabaseUnavailable(
            f"cannot prepare the schema of the {label}: {error_reason(exc, None)}"
        ) from None


def _backup_before_upgrade(engine: Engine, label: str) -> None:
    """A workstation's SQLite file is upgraded when it is opened: copy it (and its intake spool) into
    backups/ beside it first, as a package upgrade does for the service's database."""
    from pathlib import Path

    from engine.backup import backup_sqlite, backup_target

    database = engine.url.database or ""
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    db_file = Path(database)
    try:
        copy = backup_sqlite(db_file, backup_target(db_file, None, SystemClock().now(), "before-upgrade"))
    except (OSError, WatchkeeperError) as exc:
        raise ConfigurationError(
            f"the {label} needs a schema upgrade, and the copy taken before it failed, so it was not "
            f"upgraded: {exc}"
        ) from None
    log.info("copied the %s to %s before upgrading it", label, copy.database)


def open_context(settings: Settings, mode: str, clock: Clock | None = None) -> AppContext:
    """Connect, ensure the schema (see the module text), and build the AppContext every component takes."""
    engine = connect(settings)
    try:
        ensure_schema(engine)
    except BaseException:
        engine.dispose()
        raise
    return AppContext.create(settings, clock=clock, mode=mode, db=engine)
