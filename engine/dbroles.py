"""The trust boundary of a shared PostgreSQL database: one role for the engine and service, one for consoles.

On a shared database each workstation holds database credentials, and whatever the console refuses, those
credentials could do with plain SQL. `watchkeeper db roles` (run by an administrator with the database owner's
login) creates two login roles and grants each only what it needs:

* the **service role** — for `watchkeeper serve` nodes and supervisors' and administrators' workstations:
  reads and writes every table, except that the audit trail and handover notes are append-only;
* the **console role** — for operators' workstations: runs the embedded engine and every incident action
  (incidents, escalations, pages, the outbox, the timeline, notifications, leases, heartbeats), writes
  handover notes and audit entries (append-only), and signs in through the database's sign-in functions
  (engine.signin_sql). It may only *read* configuration — people, teams, schedules, policies, templates,
  SLA targets, calendars, switches, routing keys, API tokens — and accounts, without their password hashes.
  The one exception is the person's opted-out channels, which the engine updates when someone replies STOP.

A table this module does not know (added by a later release) is read-only for the console role until it is
listed here. Grants are per table, so `db upgrade` applies them again after adding tables (the role names
are remembered in `system_setting`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Connection, Engine, text

from engine import audit
from engine.errors import ConfigurationError, ValidationError
from engine.models import Base, SystemSetting
from engine.permissions import Action, Identity
from engine.signin_sql import FUNCTION_SIGNATURES

SETTING = "database_roles"
DEFAULT_SERVICE_ROLE = "watchkeeper_service"
DEFAULT_CONSOLE_ROLE = "watchkeeper_console"
_ROLE_RE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")

# What the console role writes: the life of incidents and the engine's own bookkeeping.
OPERATIONAL_TABLES = (
    "incident",
    "assignment",
    "escalation",
    "page",
    "outbox_message",
    "inbound_message",
    "event",
    "notification",
    "workflow_item",
    "engine_node",
    "lease",
    "intake_event",
)
# Written once, never changed, by either role.
APPEND_ONLY_TABLES = ("audit_entry", "handover_note")
ACCOUNT_TABLE = "operator"
SECRET_COLUMNS = {"operator": ("password_hash",)}
# Columns of configuration tables the engine itself updates (a STOP or START reply).
ENGINE_UPDATED_COLUMNS = {"person": ("opted_out_channels",)}


@dataclass
class GrantReport:
    service_role: str
    console_role: str
    created: list[str] = field(default_factory=list)
    console_writes: list[str] = field(default_factory=list)
    console_reads_only: list[str] = field(default_factory=list)
    append_only: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = [f"created role {name} (LOGIN, no password yet)" for name in self.created]
        out.append(
            f"{self.service_role}: reads and writes every table; audit_entry and handover_note append-only"
        )
        out.append(f"{self.console_role}: writes {', '.join(self.console_writes)}")
        out.append(f"{self.console_role}: appends to {', '.join(self.append_only)}")
        out.append(f"{self.console_role}: reads only {', '.join(self.console_reads_only)}")
        out.append(
            f"{self.console_role}: reads operator without password_hash; signs in through the sign-in functions"
        )
        return out


def check_role_name(name: str) -> str:
    if not _ROLE_RE.match(name):
        raise ValidationError(
            f"{name!r} is not a usable role name (lower-case letters, digits and _, at most 63)", field="role"
        )
    return name


def _quote(name: str) -> str:
    return '"' + check_role_name(name) + '"'


def _ensure_role(conn: Connection, name: str) -> bool:
    exists = conn.execute(text("SELECT 1 FROM pg_roles WHERE rolname = :n"), {"n": name}).first()
    if exists:
        return False
    conn.execute(text(f"CREATE ROLE {_quote(name)} LOGIN"))
    return True


def _columns(table: str) -> list[str]:
    return [c.name for c in Base.metadata.tables[table].columns]


def _grant(conn: Connection, role: str, *, service: bool) -> list[str]:
    """The grants of one role, from nothing; returns the tables it may write (besides append-only ones)."""
    q = _quote(role)
    tables = [t.name for t in Base.metadata.sorted_tables]
    conn.execute(text(f"REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {q}"))
    conn.execute(text(f"GRANT USAGE ON SCHEMA public TO {q}"))
    conn.execute(text(f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {q}"))
    conn.execute(text(f"GRANT SELECT ON alembic_version TO {q}"))
    for signature in FUNCTION_SIGNATURES:
        conn.execute(text(f"GRANT EXECUTE ON FUNCTION {signature} TO {q}"))
    writes: list[str] = []
    for table in tables:
        if table in APPEND_ONLY_TABLES:
            conn.execute(text(f'GRANT SELECT, INSERT ON "{table}" TO {q}'))
        elif service or table in OPERATIONAL_TABLES:
            conn.execute(text(f'GRANT SELECT, INSERT, UPDATE, DELETE ON "{table}" TO {q}'))
            writes.append(table)
        elif table in SECRET_COLUMNS:
            shown = [c for c in _columns(table) if c not in SECRET_COLUMNS[table]]
            conn.execute(text(f'GRANT SELECT ({", ".join(shown)}) ON "{table}" TO {q}'))
        else:
            conn.execute(text(f'GRANT SELECT ON "{table}" TO {q}'))
            for column in ENGINE_UPDATED_COLUMNS.get(table, ()):
                conn.execute(text(f'GRANT UPDATE ({column}) ON "{table}" TO {q}'))
    return writes


def grant_roles(
    engine: Engine,
    *,
    service_role: str = DEFAULT_SERVICE_ROLE,
    console_role: str = DEFAULT_CONSOLE_ROLE,
    now: datetime,
    by: Identity | None = None,
) -> GrantReport:
    """Create the two roles if they do not exist and (re)apply their grants, in one transaction. Needs a
    login that owns the tables and may create roles (the database owner, or a superuser)."""
    if engine.dialect.name != "postgresql":
        raise ConfigurationError(
            "database roles are for a shared PostgreSQL database; on SQLite whoever can write the file can "
            "do anything, so protect the file instead"
        )
    if by is not None:
        by.require(Action.DATABASE_ROLES)
    check_role_name(service_role)
    check_role_name(console_role)
    if service_role == console_role:
        raise ValidationError("the service role and the console role must differ", field="role")
    report = GrantReport(service_role, console_role)
    try:
        with engine.begin() as conn:
            for name in (service_role, console_role):
                if _ensure_role(conn, name):
                    report.created.append(name)
            _grant(conn, service_role, service=True)
            report.console_writes = _grant(conn, console_role, service=False)
            report.append_only = list(APPEND_ONLY_TABLES)
            report.console_reads_only = sorted(
                t.name
                for t in Base.metadata.sorted_tables
                if t.name not in OPERATIONAL_TABLES and t.name not in APPEND_ONLY_TABLES
            )
            _remember(conn, service_role, console_role, by, now)
    except Exception as exc:
        orig = getattr(exc, "orig", None)
        if getattr(orig, "sqlstate", None) == "42501":
            raise ConfigurationError(
                f"this login ({engine.url.username}) may not create roles or grant on these tables: run "
                "`watchkeeper db roles` with the database owner's login (or a superuser)"
            ) from None
        raise
    return report


def _remember(
    conn: Connection, service_role: str, console_role: str, by: Identity | None, now: datetime
) -> None:
    from sqlalchemy.orm import Session

    with Session(bind=conn) as session:
        row = session.get(SystemSetting, SETTING)
        value = {"service": service_role, "console": console_role}
        when = now
        if row is None:
            session.add(
                SystemSetting(name=SETTING, value=value, updated_at=when, updated_by=by.name if by else "db")
            )
        else:
            row.value, row.updated_at = value, when
            row.updated_by = by.name if by else "db"
        audit.record(
            session,
            when,
            by or "db",
            "database_roles",
            object_kind="database",
            object_name=f"{service_role}, {console_role}",
            message=f"Database roles granted: service role {service_role}, console role {console_role}",
            data=value,
        )
        session.flush()


def remembered_roles(engine: Engine) -> tuple[str, str] | None:
    """The role names `db roles` last granted to on this database, if any."""
    if engine.dialect.name != "postgresql":
        return None
    with engine.connect() as conn:
        row = conn.execute(text("SELECT value FROM system_setting WHERE name = :n"), {"n": SETTING}).first()
    if row is None or not isinstance(row[0], dict):
        return None
    service, console = row[0].get("service"), row[0].get("console")
    if not isinstance(service, str) or not isinstance(console, str):
        return None
    return service, console
