"""In-app notifications with a dedupe key: the same (person or role, event, item, local day) appears once.

The key is inserted with INSERT … ON CONFLICT DO NOTHING (the SQLite and PostgreSQL dialect inserts), so two
engines notifying at the same moment, or one pass run twice, leave exactly one row and never raise.
"""

from __future__ import annotations

from datetime import date, datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import Executable, Insert, Table, bindparam, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from engine.hours import zone
from engine.models import Incident, Notification, Person, WorkflowItem
from engine.switches import notifications_enabled

DEFAULT_TIMEZONE = "Africa/Johannesburg"

Item = Incident | WorkflowItem | None


def dedupe_key(*, person_id: int | None, role: str | None, kind: str, item: Item, day: date) -> str:
    who = f"person:{person_id}" if person_id is not None else f"role:{role}"
    if isinstance(item, Incident):
        what = f"incident:{item.id}"
    elif isinstance(item, WorkflowItem):
        what = f"item:{item.id}"
    else:
        what = "-"
    return f"{who}:{kind}:{what}:{day.isoformat()}"


@lru_cache(maxsize=32)
def _insert_ignoring(
    dialect_name: str, table: Table, columns: tuple[str, ...], returning: bool
) -> Executable:
    """INSERT … ON CONFLICT DO NOTHING [RETURNING id] for these columns, compiled once.

    SQLAlchemy does not cache the dialect-specific `on_conflict_do_nothing` inserts, and compiling one costs
    more than running it; a pass writes hundreds, so the statement is compiled here once and kept as text
    with typed parameters (UTC conversion still applies).
    """
    dialect: Any
    stmt: Insert
    if dialect_name == "postgresql":
        dialect = postgresql.dialect(paramstyle="named")  # type: ignore[no-untyped-call]
        stmt = postgresql.insert(table).on_conflict_do_nothing()
    elif dialect_name == "sqlite":
        dialect = sqlite.dialect(paramstyle="named")
        stmt = sqlite.insert(table).on_conflict_do_nothing()
    else:  # pragma: no cover - only the two shipped databases
        raise NotImplementedError(dialect_name)
    stmt = stmt.values({name: bindparam(name) for name in columns})
    if returning:
        stmt = stmt.returning(table.c.id)
    sql = str(stmt.compile(dialect=dialect))
    params = [bindparam(name, type_=table.c[name].type) for name in columns]
    textual = text(sql).bindparams(*params)
    return textual.columns(table.c.id) if returning else textual


def _with_defaults(table: Table, values: dict[str, object]) -> dict[str, object]:
    """A textual INSERT knows no column defaults: fill in the Python-side ones the ORM would have."""
    values = dict(values)
    for column in table.columns:
        default = column.default
        if column.name in values or default is None or column.primary_key:
            continue
        if getattr(default, "is_scalar", False):
            values[column.name] = getattr(default, "arg", None)
        elif getattr(default, "is_callable", False):
            values[column.name] = getattr(default, "arg")(None)  # noqa: B009
    return values


def insert_many_ignoring_duplicates(session: Session, model: Any, rows: list[dict[str, object]]) -> None:
    """Insert rows (all with the same keys) in one round of statements; clashes on unique keys are skipped."""
    if not rows:
        return
    table: Table = model.__table__
    full = [_with_defaults(table, row) for row in rows]
    stmt = _insert_ignoring(session.get_bind().dialect.name, table, tuple(sorted(full[0])), False)
    session.execute(stmt, full)


def insert_ignoring_duplicates(session: Session, model: Any, values: dict[str, object]) -> bool:
    """Insert one row of a mapped class; a clash on a unique key is skipped silently. True when written."""
    return insert_returning_id(session, model, values) is not None


def insert_returning_id(session: Session, model: Any, values: dict[str, object]) -> int | None:
    """Insert one row of a mapped class and return its id; None when a unique key clashed (nothing written)."""
    table: Table = model.__table__
    values = _with_defaults(table, values)
    stmt = _insert_ignoring(session.get_bind().dialect.name, table, tuple(sorted(values)), True)
    row = session.execute(stmt, values).first()
    return int(row[0]) if row is not None else None


def _person_zone(session: Session, person_id: int) -> str | None:
    zones: dict[int, str | None] = session.info.setdefault("watchkeeper_person_zones", {})
    if person_id not in zones:
        zones[person_id] = session.scalar(select(Person.timezone).where(Person.id == person_id))
    return zones[person_id]


def notification_row(
    session: Session,
    now: datetime,
    *,
    person_id: int | None = None,
    role: str | None = None,
    kind: str,
    item: Item = None,
    title: str,
    body: str = "",
    tz: str | None = None,
) -> dict[str, object]:
    """The notification row for one recipient, with its dedupe key (see `notify`)."""
    if (person_id is None) == (role is None):
        raise ValueError("a notification needs exactly one of person_id or role")
    zone_name = tz
    if person_id is not None and zone_name is None:
        zone_name = _person_zone(session, person_id)
    day = now.astimezone(zone(zone_name or DEFAULT_TIMEZONE)).date()
    key = dedupe_key(person_id=person_id, role=role, kind=kind, item=item, day=day)
    return {
        "dedupe_key": key[:255],
        "person_id": person_id,
        "role": role,
        "kind": kind,
        "title": title[:500],
        "body": body,
        "incident_id": item.id if isinstance(item, Incident) else (item.incident_id if item else None),
        "workflow_item_id": item.id if isinstance(item, WorkflowItem) else None,
        "created_at": now,
    }


def notify(
    session: Session,
    now: datetime,
    *,
    person_id: int | None = None,
    role: str | None = None,
    kind: str,
    item: Item = None,
    title: str,
    body: str = "",
    tz: str | None = None,
) -> bool:
    """Write an in-app notification for a person or a role; False when it was a duplicate or switched off.

    The day in the key is the recipient's local day (the person's time zone, else `tz`, else the centre's).
    """
    row = notification_row(
        session, now, person_id=person_id, role=role, kind=kind, item=item, title=title, body=body, tz=tz
    )
    if not notifications_enabled(session):
        return False
    return insert_ignoring_duplicates(session, Notification, row)


class NoticeBatch:
    """Notifications gathered while a pass works through a batch, then written in one go (duplicates skipped:
    the dedupe key decides, exactly as for `notify`)."""

    def __init__(self) -> None:
        self.rows: list[dict[str, object]] = []

    def add(
        self,
        session: Session,
        now: datetime,
        *,
        person_id: int | None = None,
        role: str | None = None,
        kind: str,
        item: Item = None,
        title: str,
        body: str = "",
    ) -> None:
        self.rows.append(
            notification_row(
                session, now, person_id=person_id, role=role, kind=kind, item=item, title=title, body=body
            )
        )

    def write(self, session: Session) -> int:
        """Insert the gathered notifications; the number offered (0 when notifications are switched off)."""
        rows, self.rows = self.rows, []
        if not rows or not notifications_enabled(session):
            return 0
        insert_many_ignoring_duplicates(session, Notification, rows)
        return len(rows)
