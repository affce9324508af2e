"""Schema migrations (Alembic) run from code: `watchkeeper db upgrade` and `watchkeeper db current`.

The same revisions run on SQLite and PostgreSQL. On PostgreSQL an advisory lock serialises upgrades, so two
services started at once against a new database do not both try to create the schema; on SQLite the upgrade
runs in a BEGIN IMMEDIATE transaction, which queues a second process behind the first for the write lock.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import Engine, text

from engine.errors import ConfigurationError

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
_UPGRADE_LOCK_ID = 0x5741_4B45  # "WAKE": any fixed number shared by all Watchkeeper processes
UPGRADE_HINT = "run `watchkeeper db upgrade`"


def _config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return cfg


def head_revision() -> str:
    head = ScriptDirectory.from_config(_config()).get_current_head()
    if head is None:
        raise RuntimeError("no migrations found")
    return head


def is_known_revision(revision: str) -> bool:
    try:
        return ScriptDirectory.from_config(_config()).get_revision(revision) is not None
    except CommandError:
        return False


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


@dataclass(frozen=True)
class MigrationStatus:
    current: str | None  # None: an empty database (no alembic_version)
    head: str

    @property
    def at_head(self) -> bool:
        return self.current == self.head

    @property
    def known(self) -> bool:
        return self.current is None or is_known_revision(self.current)

    def describe(self) -> str:
        """One line for `watchkeeper db current` and for errors."""
        if self.at_head:
            return f"{self.current} (head)"
        if self.current is None:
            return f"none (empty database); this Watchkeeper needs {self.head}: {UPGRADE_HINT}"
        if not self.known:
            return (
                f"{self.current}, which this Watchkeeper does not know (a newer version wrote it?); "
                f"this Watchkeeper's head is {self.head}"
            )
        return f"{self.current}, not head; this Watchkeeper needs {self.head}: {UPGRADE_HINT}"

    def mismatch_message(self) -> str:
        """The error an engine gives when it refuses to run on a database that is not at head."""
        if not self.known:
            return (
                f"database at revision {self.current}, which this Watchkeeper does not know (it needs "
                f"{self.head}): the database was upgraded by a newer Watchkeeper; upgrade this one"
            )
        return f"database at revision {self.current or 'none'}, this Watchkeeper needs {self.head}: {UPGRADE_HINT}"


def status(engine: Engine) -> MigrationStatus:
    return MigrationStatus(current=current_revision(engine), head=head_revision())


def upgrade(engine: Engine, revision: str = "head") -> str | None:
    """Bring the database to `revision`; returns the revision it is at afterwards. Idempotent."""
    before = status(engine)
    if not before.known:
        raise ConfigurationError(before.mismatch_message())
    cfg = _config()
    with engine.connect() as conn:
        if conn.dialect.name == "sqlite":
            conn.execution_options(sqlite_begin="IMMEDIATE")
        with conn.begin():
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _UPGRADE_LOCK_ID})
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, revision)
    return current_revision(engine)


def stamp(engine: Engine, revision: str = "head") -> None:
    """Record `revision` without running it: for a schema made by Base.metadata.create_all (tests, tools)."""
    cfg = _config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.stamp(cfg, revision)


def is_up_to_date(engine: Engine) -> bool:
    return current_revision(engine) == head_revision()


def new_revision(message: str) -> Path:
    """Write a new revision for what changed in engine/models.py (for developers: `make migration`).

    Autogenerates against a scratch SQLite database at head, and writes the column types in plain SQLAlchemy
    terms so the revision never imports engine.models (a later model change must not rewrite history).
    """
    import re
    import tempfile

    from engine.db import make_engine

    with tempfile.TemporaryDirectory() as scratch:
        engine = make_engine(f"sqlite:///{scratch}/scratch.db")
        upgrade(engine)
        cfg = _config()
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            script = command.revision(cfg, message=message, autogenerate=True)
        engine.dispose()
    if script is None or isinstance(script, list):
        raise RuntimeError("alembic wrote no single revision")
    path = Path(script.path)
    source = path.read_text(encoding="utf-8")
    source = source.replace("engine.models.UTCDateTime(timezone=True)", "sa.DateTime(timezone=True)")
    source = re.sub(r"^import engine\.models\n", "", source, flags=re.MULTILINE)
    if "engine.models" in source:
        raise RuntimeError(f"{path}: the revision still refers to engine.models; edit it by hand")
    path.write_text(source, encoding="utf-8")
    return path
