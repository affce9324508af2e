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
* `acquire_lease` / `release_lease` — singleton work (housekeeping, statistics roll-ups) through the Lease
  table on both databases: one engine holds the named lease until it releases it or it expires.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, bindparam, delete, or_, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from engine.models import Base, Escalation, EscalationState, Lease, Page, PageStatus

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


def claim_due_pages(session: Session, now: datetime, limit: int) -> list[int]:
    """Ids of up to `limit` pages whose confirmation window has run out (locked on PostgreSQL)."""
    stmt = (
        select(Page.id)
        .where(Page.status.in_((PageStatus.ACTIVE.value, PageStatus.HELD.value)), Page.next_check_at <= now)
        .order_by(Page.next_check_at)
        .limit(limit)
    )
    if dialect_name(session) == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True)
    return list(session.scalars(stmt))


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
