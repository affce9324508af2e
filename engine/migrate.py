"""Schema migrations (Alembic) run from code: `watchkeeper db upgrade` and `watchkeeper db current`.

The same revisions run on SQLite and PostgreSQL. On PostgreSQL an advisory lock serialises upgrades, so two
services started at once against a new database do not both try to create the schema; on SQLite the upgrade
runs in a BEGIN IMMEDIATE transaction, which queues a second process behind the first for the write lock.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, inspect, text

from engine.errors import ConfigurationError

if TYPE_CHECKING:
    from alembic.config import Config

# Alembic is imported only when a migration command runs: on the common path (a database already at head,
# checked by `quick_status`) it would add about 130 ms to every console start.

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
_UPGRADE_LOCK_ID = 0x5741_4B45  # "WAKE": any fixed number shared by all Watchkeeper processes
UPGRADE_HINT = "run `watchkeeper db upgrade`"


def _config() -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return cfg


def include_object(dialect_name: str) -> Any:
    """Alembic's `include_object` for a database of `dialect_name`: an index the models create only on the
    other database (`Index.ddl_if(dialect=…)`, which Alembic's comparison does not read) is not this one's."""

    def include(obj: Any, _name: str | None, type_: str, reflected: bool, _compare_to: Any) -> bool:
        only = getattr(obj, "_ddl_if", None) if type_ == "index" and not reflected else None
        if only is None or only.dialect is None:
            return True
        wanted = (only.dialect,) if isinstance(only.dialect, str) else tuple(only.dialect)
        return dialect_name in wanted

    return include


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(_config()).get_current_head()
    if head is None:
        raise RuntimeError("no migrations found")
    return head


def is_known_revision(revision: str) -> bool:
    from alembic.script import ScriptDirectory
    from alembic.util.exc import CommandError

    try:
        return ScriptDirectory.from_config(_config()).get_revision(revision) is not None
    except CommandError:
        return False


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

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


_ASSIGN = re.compile(r"^(revision|down_revision)\s*(?::[^=]*)?=\s*(.+)$", re.MULTILINE)


def head_from_files() -> str | None:
    """The head revision read from the revision files as text (no Alembic): the one revision no other
    names as its down_revision. None when the files do not make one clear head (Alembic then decides)."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in (MIGRATIONS_DIR / "versions").glob("*.py"):
        found = dict(_ASSIGN.findall(path.read_text(encoding="utf-8")))
        try:
            revision = ast.literal_eval(found["revision"].strip())
            down = ast.literal_eval(found.get("down_revision", "None").strip())
        except (KeyError, ValueError, SyntaxError):
            return None
        if not isinstance(revision, str):
            return None
        revisions.add(revision)
        parents.update([down] if isinstance(down, str) else list(down or ()))
    heads = revisions - parents
    return heads.pop() if len(heads) == 1 else None


def quick_status(engine: Engine) -> MigrationStatus | None:
    """The status when the database is at head, found with one query and no Alembic import; None otherwise
    (then `status` gives the full answer)."""
    head = head_from_files()
    if head is None:
        return None
    with engine.connect() as conn:
        if not inspect(conn).has_table("alembic_version"):
            return None
        rows = conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
    return MigrationStatus(current=head, head=head) if rows == [head] else None


def status(engine: Engine) -> MigrationStatus:
    return MigrationStatus(current=current_revision(engine), head=head_revision())


def upgrade(engine: Engine, revision: str = "head") -> str | None:
    """Bring the database to `revision`; returns the revision it is at afterwards. Idempotent."""
    before = status(engine)
    if not before.known:
        raise ConfigurationError(before.mismatch_message())
    from alembic import command

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
    from alembic import command

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
    import tempfile

    from alembic import command

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
