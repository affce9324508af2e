"""In-app notifications with a dedupe key: the same (person, role or team, event, item, local day) appears once.

The key is inserted with INSERT … ON CONFLICT DO NOTHING (the SQLite and PostgreSQL dialect inserts), so two
engines notifying at the same moment, or one pass run twice, leave exactly one row and never raise.

A notification that has a message template (`TEMPLATE_OF`: an SLA warning or breach, an overdue reminder, an
overdue item escalated) also goes out as a message to each person it is for — a role means the people whose
accounts have that role — on their first usable channel, in their language, held through their quiet hours,
once per notification key (the outbox's idempotency key is the notification's).

A team's notification (`team_id`: the incident concerns that team) is in-app only: every member sees it in
their list, and the people the engine messages about the same thing (the assignee, the team's manager) are
notified by name beside it. Messaging a whole team for each SLA warning would page people who are off shift.
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


def dedupe_key(
    *, person_id: int | None, role: str | None, kind: str, item: Item, day: date, team_id: int | None = None
) -> str:
    if person_id is not None:
        who = f"person:{person_id}"
    elif team_id is not None:
        who = f"team:{team_id}"
    else:
        who = f"role:{role}"
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
    team_id: int | None = None,
    kind: str,
    item: Item = None,
    title: str,
    body: str = "",
    tz: str | None = None,
) -> dict[str, object]:
    """The notification row for one recipient, with its dedupe key (see `notify`)."""
    if sum(x is not None for x in (person_id, role, team_id)) != 1:
        raise ValueError("a notification needs exactly one of person_id, role or team_id")
    zone_name = tz
    if person_id is not None and zone_name is None:
        zone_name = _person_zone(session, person_id)
    day = now.astimezone(zone(zone_name or DEFAULT_TIMEZONE)).date()
    key = dedupe_key(person_id=person_id, role=role, team_id=team_id, kind=kind, item=item, day=day)
    return {
        "dedupe_key": key[:255],
        "person_id": person_id,
        "role": role,
        "team_id": team_id,
        "kind": kind,
        "title": title[:500],
        "body": body,
        "incident_id": item.id if isinstance(item, Incident) else (item.incident_id if item else None),
        "workflow_item_id": item.id if isinstance(item, WorkflowItem) else None,
        "created_at": now,
    }


def notify(session: Session, now: datetime, *, context: dict[str, Any] | None = None, **fields: Any) -> bool:
    """Write an in-app notification for a person, a role or a team (`fields`: those of `notification_row`);
    False when it was a duplicate or switched off. With a `context` (its template's variables) it also goes out
    as a message (TEMPLATE_OF) to a person or a role's people; a team's notification is in-app only (see the
    module's text).

    The day in the key is the recipient's local day (the person's time zone, else `tz`, else the centre's).
    """
    row = notification_row(session, now, **fields)
    if not notifications_enabled(session):
        return False
    written = insert_ignoring_duplicates(session, Notification, row)
    if written and context is not None:
        from engine.models import OutboxMessage

        outbox = message_rows(session, now, row, context)
        if outbox:
            insert_many_ignoring_duplicates(session, OutboxMessage, outbox)
    return written


# Notification kinds that also reach the person as a message, and the message template each one renders.
TEMPLATE_OF = {
    "sla_response_warning": "sla_warning",
    "sla_resolution_warning": "sla_warning",
    "sla_response_breach": "sla_breach",
    "sla_resolution_breach": "sla_breach",
    "workflow_overdue": "reminder",
    "workflow_escalated": "overdue_escalation",
}


def _recipients(session: Session, row: dict[str, object]) -> list[Person]:
    if row.get("team_id") is not None:
        return []  # in-app only: see the module's text
    if row.get("person_id") is not None:
        person = session.get(Person, row["person_id"])
        return [person] if person is not None and person.active else []
    from engine.models import Operator

    return list(
        session.scalars(
            select(Person)
            .join(Operator, Operator.person_id == Person.id)
            .where(Operator.role == row["role"], Operator.active.is_(True), Person.active.is_(True))
        )
    )


def message_rows(
    session: Session, now: datetime, row: dict[str, object], context: dict[str, Any]
) -> list[dict[str, Any]]:
    """The outbox rows that carry notification `row` to its people as messages (see the module's text)."""
    template = TEMPLATE_OF.get(str(row["kind"]))
    if template is None:
        return []
    from engine import paging

    out: list[dict[str, Any]] = []
    for person in _recipients(session, row):
        chain = paging.build_chain(person)
        if not chain:
            continue
        channel, address = str(chain[0]["channel"]), str(chain[0]["address"])
        tz = zone(person.timezone or DEFAULT_TIMEZONE)
        local = {
            k: (v.astimezone(tz).strftime("%Y-%m-%d %H:%M") if isinstance(v, datetime) else v)
            for k, v in context.items()
        }
        local["person_name"] = person.name
        subject, body, html = paging.render_message(session, template, channel, person.language, local, now)
        held = paging._quiet_until(person, now, critical=False)
        out.append(
            {
                "idempotency_key": f"{template}:{row['dedupe_key']}:{person.id}"[:255],
                "kind": template,
                "incident_id": row.get("incident_id"),
                "person_id": person.id,
                "channel": channel,
                "address": address,
                "subject": subject[:500],
                "body": body,
                "body_html": html,
                "status": "pending",
                "next_attempt_at": held or now,
                "hold_reason": "quiet_hours" if held else None,
                "created_at": now,
                "updated_at": now,
            }
        )
    return out


class NoticeBatch:
    """Notifications gathered while a pass works through a batch, then written in one go (duplicates skipped:
    the dedupe key decides, exactly as for `notify`)."""

    def __init__(self) -> None:
        self.rows: list[dict[str, object]] = []
        self.messages: list[tuple[dict[str, object], dict[str, Any]]] = []
        self.now: datetime | None = None

    def add(
        self,
        session: Session,
        now: datetime,
        *,
        person_id: int | None = None,
        role: str | None = None,
        team_id: int | None = None,
        kind: str,
        item: Item = None,
        title: str,
        body: str = "",
        context: dict[str, Any] | None = None,
    ) -> None:
        """Gather one notification; with a `context` (its template's variables) it also goes out as a message
        when its kind has a template (TEMPLATE_OF) and it is for a person or a role."""
        row = notification_row(
            session,
            now,
            person_id=person_id,
            role=role,
            team_id=team_id,
            kind=kind,
            item=item,
            title=title,
            body=body,
        )
        self.rows.append(row)
        self.now = now
        if context is not None and kind in TEMPLATE_OF and team_id is None:
            self.messages.append((row, context))

    def write(self, session: Session) -> int:
        """Insert the gathered notifications and their messages; the number of notifications offered (0 when
        notifications are switched off)."""
        rows, self.rows = self.rows, []
        messages, self.messages = self.messages, []
        if not rows or not notifications_enabled(session):
            return 0
        insert_many_ignoring_duplicates(session, Notification, rows)
        if messages and self.now is not None:
            from engine.models import OutboxMessage

            outbox = [m for row, context in messages for m in message_rows(session, self.now, row, context)]
            if outbox:
                insert_many_ignoring_duplicates(session, OutboxMessage, outbox)
        return len(rows)
