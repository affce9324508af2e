"""Several engines, one database: who works on which row, and writes that can never happen twice.

Three tools, each the same in spirit on both databases:

* `insert_ignore` — INSERT … ON CONFLICT DO NOTHING. Every page and every outbox row has a natural unique key
  (escalation, level, repeat, person, chain step), so when two engines race to write the same page, the
  database keeps exactly one and the loser learns it wrote nothing.
* `claim_due_escalations` / `claim_due_pages` — a batch of due rows for this engine alone. On PostgreSQL the
  rows are locked with `SELECT … FOR UPDATE SKIP LOCKED`: other engines skip them and take the next ones, and
  the locks vanish with the transaction (or the connection of a crashed engine). On SQLite, which has one
  writer at a time, the transaction starts with BEGIN IMMEDIATE (engine.db.write_session) and the claimed
  escalations are stamped with a lease (`lease_owner`, `lease_expires_at`) that other engines respect until it
  expires. A claim and its processing commit together, so a crash rolls both back; the lease is what makes a
  claim that outlives its transaction (a node paused by the operating system mid-pass, a long batch) visible,
  and lets another engine take over once it expires.
* `claim_due_escalation_rows` — the escalate pass's claim: the same rows, with the columns of each escalation
  and its incident the pass works on, as plain objects (`EscalationRow`, `IncidentRow`) rather than ORM
  instances. On PostgreSQL the claim and the read are one `SELECT … FOR UPDATE OF escalation SKIP LOCKED`;
  on SQLite the lease UPDATE … RETURNING, then one SELECT of the claimed rows.
* `acquire_lease` / `release_lease` — singleton work (housekeeping, statistics roll-ups) through the Lease
  table on both databases: one engine holds the named lease until it releases it or it expires.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    Connection,
    Text,
    and_,
    bindparam,
    cast,
    delete,
    func,
    or_,
    select,
    text,
    union_all,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from engine.models import Base, Escalation, EscalationState, Incident, Lease, Page, PageStatus
from engine.prepared import Prepared

# States the escalate pass acts on: the live ones, and an acknowledged escalation whose level auto-resolves.
DUE_ESCALATION_STATES = (
    EscalationState.PENDING.value,
    EscalationState.ACTIVE.value,
    EscalationState.ESCALATING.value,
    EscalationState.ACKNOWLEDGED.value,
)
DEFAULT_LEASE_SECONDS = 30.0


def dialect_name(session: Session) -> str:
    return session.get_bind().dialect.name


_INSERT_IGNORE_CACHE: dict[tuple[str, tuple[str, ...], tuple[str, ...], tuple[str, ...]], Any] = {}


def insert_ignore_statement(
    model: type[Base], columns: Sequence[str], conflict: Sequence[str], returning: Sequence[str] = ()
) -> Any:
    """INSERT … ON CONFLICT (…) DO NOTHING [RETURNING …] for `columns`, the same SQL on SQLite (3.35+) and
    PostgreSQL. Written as text with typed parameters because SQLAlchemy cannot cache the dialect-specific
    upsert constructs on SQLite (it would compile the statement again for every page); this one is built
    once per shape and reused, and the column types still convert aware datetimes and JSON."""
    key = (model.__tablename__, tuple(columns), tuple(conflict), tuple(returning))
    stmt = _INSERT_IGNORE_CACHE.get(key)
    if stmt is None:
        table: Any = model.__table__
        cols = ", ".join(f'"{c}"' for c in columns)
        params = ", ".join(f":{c}" for c in columns)
        sql = f'INSERT INTO "{table.name}" ({cols}) VALUES ({params}) ON CONFLICT ({", ".join(conflict)}) DO NOTHING'
        if returning:
            sql += " RETURNING " + ", ".join(f'"{c}"' for c in returning)
        stmt = text(sql).bindparams(*[bindparam(c, type_=table.c[c].type) for c in columns])
        if returning:
            stmt = stmt.columns(*[table.c[c] for c in returning])
        _INSERT_IGNORE_CACHE[key] = stmt
    return stmt


_INSERT_IGNORE_PREPARED: dict[tuple[str, tuple[str, ...], tuple[str, ...]], Prepared] = {}


def insert_ignore_many(
    conn: Connection, model: type[Base], rows: list[dict[str, Any]], conflict: Sequence[str]
) -> int:
    """`insert_ignore_statement` for many rows with the same columns as driver SQL (engine.prepared: no
    per-row parameter processing in Python beyond the column types' own); how many rows were written."""
    if not rows:
        return 0
    key = (model.__tablename__, tuple(rows[0]), tuple(conflict))
    prepared = _INSERT_IGNORE_PREPARED.get(key)
    if prepared is None:
        prepared = _INSERT_IGNORE_PREPARED[key] = Prepared(insert_ignore_statement(model, key[1], conflict))
    return prepared.run_many(conn, rows)


def _with_defaults(model: type[Base], row: dict[str, Any]) -> dict[str, Any]:
    """The row with the model's Python-side column defaults filled in (a text INSERT does not apply them)."""
    table: Any = model.__table__
    out = dict(row)
    for column in table.columns:
        if column.key in out or column.primary_key or column.default is None:
            continue
        default = column.default
        if default.is_scalar:
            out[column.key] = default.arg
        elif default.is_callable:
            out[column.key] = default.arg(None)
    return out


def insert_ignore(
    session: Session,
    model: type[Base],
    rows: Sequence[dict[str, Any]],
    conflict: Sequence[str],
    returning: Sequence[str] = (),
) -> list[Any]:
    """Insert rows, skipping any whose `conflict` columns already exist; return the `returning` values of the
    rows actually written (nothing for a row another engine wrote first)."""
    if not rows:
        return []
    rows = [_with_defaults(model, row) for row in rows]
    stmt = insert_ignore_statement(model, list(rows[0]), conflict, returning)
    conn = session.connection()
    if returning:
        written: list[Any] = []
        for row in rows:  # RETURNING with executemany is not portable across drivers: one by one.
            written.extend(conn.execute(stmt, row).all())
        return written
    conn.execute(stmt, list(rows))
    return []


def claim_due_escalations(
    session: Session, now: datetime, owner: str, limit: int, lease_seconds: float = DEFAULT_LEASE_SECONDS
) -> list[int]:
    """Ids of up to `limit` due escalations this engine alone may process in the current transaction."""
    due = and_(Escalation.state.in_(DUE_ESCALATION_STATES), Escalation.next_action_at <= now)
    if dialect_name(session) == "postgresql":
        stmt = (
            select(Escalation.id)
            .where(due)
            .order_by(Escalation.next_action_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        return list(session.scalars(stmt))
    free = or_(
        Escalation.lease_owner.is_(None), Escalation.lease_owner == owner, Escalation.lease_expires_at <= now
    )
    candidates = (
        select(Escalation.id)
        .where(due, free)
        .order_by(Escalation.next_action_at)
        .limit(limit)
        .scalar_subquery()
    )
    stmt_u = (
        update(Escalation)
        .where(Escalation.id.in_(candidates))
        .values(lease_owner=owner, lease_expires_at=now + timedelta(seconds=lease_seconds))
        .returning(Escalation.id)
    )
    return list(session.scalars(stmt_u))


class IncidentRow:
    """The columns of a claimed escalation's incident that the escalate pass reads or changes."""

    id: int
    key: str
    source: str
    summary: str
    details: str
    severity: str
    category: str
    site: str
    status: str
    reporter_language: str
    updated_at: datetime
    resolved_at: datetime | None
    resolved_by: str | None

    def __init__(self, values: dict[str, Any]) -> None:
        self.__dict__.update(values)

    def changes(self, before: tuple[Any, ...]) -> bool:
        """Whether the columns in INCIDENT_WRITABLE differ from `before` (their values when loaded)."""
        return before != tuple(getattr(self, c) for c in INCIDENT_WRITABLE)


class EscalationRow:
    """A claimed escalation as a plain object: the same attribute names as engine.models.Escalation, so the
    state machine runs on it unchanged, without ORM bookkeeping; the pass writes it back with one
    executemany UPDATE per batch."""

    id: int
    incident_id: int
    policy_id: int | None
    policy_name: str
    policy_snapshot: dict[str, Any]
    state: str
    trigger: str
    current_level: int
    repeat_no: int
    repeat_base: int
    level_started_at: datetime | None
    level_rounds: dict[str, Any]
    next_action_at: datetime | None
    escalation_count: int
    notification_count: int
    trigger_count: int
    started_at: datetime
    updated_at: datetime
    ended_at: datetime | None
    levels_done_at: datetime | None
    resolved_at: datetime | None
    resolved_by: str | None
    lease_owner: str | None
    lease_expires_at: datetime | None
    incident: IncidentRow

    def __init__(self, values: dict[str, Any], incident: IncidentRow) -> None:
        self.__dict__.update(values)
        self.incident = incident


# What the escalate pass may change, and so writes back.
ESCALATION_WRITABLE = (
    "state",
    "current_level",
    "repeat_no",
    "repeat_base",
    "level_started_at",
    "level_rounds",
    "next_action_at",
    "escalation_count",
    "notification_count",
    "updated_at",
    "ended_at",
    "levels_done_at",
    "resolved_at",
    "resolved_by",
    "lease_owner",
    "lease_expires_at",
)
INCIDENT_WRITABLE = ("status", "updated_at", "resolved_at", "resolved_by")
# What is read: every attribute the row classes declare (the snapshot is read as text, see below).
_ESC_READ = tuple(c for c in EscalationRow.__annotations__ if c not in ("policy_snapshot", "incident"))
_INC_READ = tuple(IncidentRow.__annotations__)
_ESC: Any = Escalation.__table__
_INC: Any = Incident.__table__
# The snapshot comes as text and is parsed once per distinct text: every escalation of one policy version
# shares the same snapshot, so a batch usually parses it once.
_LOAD_COLUMNS = (
    *[_ESC.c[c] for c in _ESC_READ],
    cast(_ESC.c.policy_snapshot, Text).label("snapshot_text"),
    *[_INC.c[c].label(f"i_{c}") for c in _INC_READ],
)
_LOAD_FROM = _ESC.join(_INC, _INC.c.id == _ESC.c.incident_id)


def _due(now: datetime) -> Any:
    return and_(_ESC.c.state.in_(DUE_ESCALATION_STATES), _ESC.c.next_action_at <= now)


def claim_due_escalation_rows(
    session: Session, now: datetime, owner: str, limit: int, lease_seconds: float = DEFAULT_LEASE_SECONDS
) -> list[EscalationRow]:
    """Up to `limit` due escalations for this engine alone, with their incidents, oldest due first (the same
    rows and exclusivity as `claim_due_escalations`)."""
    if dialect_name(session) == "postgresql":
        # Lock and order the ids alone (a narrow sort), then read the rows and their incidents. The incident is
        # locked with its escalation (the lock order of docs/locking: incident first; SKIP LOCKED never waits),
        # so an acknowledgement holding the incident is never waited for here, and never waits on a pass that
        # would then wait on it.
        locked = (
            select(_ESC.c.id)
            .select_from(_LOAD_FROM)
            .where(_due(now))
            .order_by(_ESC.c.next_action_at)
            .limit(limit)
            .with_for_update(skip_locked=True, key_share=True, of=[_ESC, _INC])
        )
        stmt = (
            select(*_LOAD_COLUMNS)
            .select_from(_LOAD_FROM)
            .where(_ESC.c.id.in_(locked.scalar_subquery()))
            .order_by(_ESC.c.next_action_at, _ESC.c.id)
        )
        rows = session.execute(stmt).all()
    else:
        ids = claim_due_escalations(session, now, owner, limit, lease_seconds)
        if not ids:
            return []
        stmt = (
            select(*_LOAD_COLUMNS)
            .select_from(_LOAD_FROM)
            .where(_ESC.c.id.in_(ids))
            .order_by(_ESC.c.next_action_at, _ESC.c.id)
        )
        rows = session.execute(stmt).all()
    snapshots: dict[str, dict[str, Any]] = {}
    incidents: dict[int, IncidentRow] = {}  # one object per incident, as the ORM's identity map would have
    out: list[EscalationRow] = []
    n = len(_ESC_READ)
    for row in rows:
        raw = row[n] or "{}"
        snapshot = snapshots.get(raw)
        if snapshot is None:
            snapshot = snapshots[raw] = json.loads(raw)
        values = dict(zip(_ESC_READ, row[:n], strict=True))
        values["policy_snapshot"] = snapshot
        values["level_rounds"] = dict(values["level_rounds"] or {})
        incident = incidents.get(values["incident_id"])
        if incident is None:
            incident = IncidentRow(dict(zip(_INC_READ, row[n + 1 :], strict=True)))
            incidents[values["incident_id"]] = incident
        out.append(EscalationRow(values, incident))
    return out


# The earliest due time over the states the pass acts on: one index probe per state on (state, next_action_at).
_NEXT_DUE = select(func.min(text("due"))).select_from(
    union_all(
        *[
            select(func.min(_ESC.c.next_action_at).label("due")).where(_ESC.c.state == state)
            for state in DUE_ESCALATION_STATES
        ]
    ).subquery()
)


def next_escalation_due(session: Session) -> datetime | None:
    """When the next escalation falls due (possibly already past), or None when none is scheduled."""
    due = session.execute(_NEXT_DUE).scalar()
    if isinstance(due, str):  # SQLite returns the aggregate of a union without the column's type
        due = datetime.fromisoformat(due)
    if due is not None and due.tzinfo is None:
        due = due.replace(tzinfo=UTC)
    return due


def claim_due_pages(session: Session, now: datetime, limit: int) -> list[int]:
    """Ids of up to `limit` pages whose check time has come (locked on PostgreSQL, with their incidents: the
    incident is always locked before its pages, see `lock_incidents`)."""
    stmt = (
        select(Page.id)
        .select_from(Page.__table__.join(_INC, _INC.c.id == Page.incident_id))
        .where(Page.status.in_((PageStatus.ACTIVE.value, PageStatus.HELD.value)), Page.next_check_at <= now)
        .order_by(Page.next_check_at)
        .limit(limit)
    )
    if dialect_name(session) == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True, key_share=True, of=[Page.__table__, _INC])
    return list(session.scalars(stmt))


_LOCK_INCIDENTS = (
    select(_INC.c.id)
    .where(_INC.c.id.in_(bindparam("ids", expanding=True)))
    .order_by(_INC.c.id)
    .with_for_update(key_share=True)
)


def lock_incidents(session: Session, incident_ids: Sequence[int | None]) -> None:
    """The lock order of every write that touches an incident's escalations, pages or page messages: the
    incidents first (PostgreSQL `FOR NO KEY UPDATE`, in id order), then the rest. Acknowledge, resolve, cancel
    and escalate lock them this way; the passes claim them with SKIP LOCKED; dispatch results and delivery
    reports lock them before moving a chain on. With one order a deadlock cannot form. `NO KEY UPDATE` leaves
    foreign-key checks (`KEY SHARE`) of new pages and messages unblocked. SQLite writes one at a time anyway."""
    ids = sorted({i for i in incident_ids if i is not None})
    if not ids or dialect_name(session) != "postgresql":
        return
    for start in range(0, len(ids), 1000):
        session.execute(_LOCK_INCIDENTS, {"ids": ids[start : start + 1000]}).all()


def acquire_lease(session: Session, name: str, owner: str, now: datetime, seconds: float) -> bool:
    """Take (or renew) the named lease for `seconds`; False while another engine holds it unexpired."""
    expires = now + timedelta(seconds=seconds)
    values = {"name": name, "owner": owner, "expires_at": expires}
    taken = or_(Lease.owner == owner, Lease.expires_at <= now)
    stmt: Any
    if dialect_name(session) == "postgresql":
        ins = postgresql.insert(Lease).values(**values)
        stmt = ins.on_conflict_do_update(
            index_elements=["name"], set_={"owner": owner, "expires_at": expires}, where=taken
        )
    else:
        ins_s = sqlite.insert(Lease).values(**values)
        stmt = ins_s.on_conflict_do_update(
            index_elements=["name"], set_={"owner": owner, "expires_at": expires}, where=taken
        )
    session.execute(stmt)
    holder = session.scalars(select(Lease.owner).where(Lease.name == name)).one_or_none()
    return holder == owner


def release_lease(session: Session, name: str, owner: str) -> None:
    session.execute(delete(Lease).where(Lease.name == name, Lease.owner == owner))
