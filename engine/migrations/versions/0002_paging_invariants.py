"""one live escalation per incident, one open incident per key, levels_done_at

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-04

Before the indexes can be created, data that breaks them is mended, with an event on each incident touched:
an incident key with several open incidents keeps its newest one open and the older ones are cancelled as
duplicates (their escalations and unsent pages with them); an incident with several live escalations keeps its
newest one and the older ones are cancelled as superseded.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, cast

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

OPEN = "('open', 'acknowledged', 'in_progress', 'escalated')"
LIVE = "('pending', 'active', 'escalating')"


def _sql(conn: sa.Connection, sql: str, **params: object) -> sa.CursorResult[Any]:
    """A statement whose :now is a timestamp as the column stores it (naive UTC on SQLite) and :data JSON."""
    stmt = sa.text(sql)
    if "now" in params:
        stmt = stmt.bindparams(sa.bindparam("now", type_=sa.DateTime(timezone=True)))
        if conn.dialect.name == "sqlite":
            params["now"] = cast(datetime, params["now"]).replace(tzinfo=None)
    if "data" in params:
        stmt = stmt.bindparams(sa.bindparam("data", type_=sa.JSON()))
    return conn.execute(stmt, params)


def _event(conn: sa.Connection, now: datetime, incident_id: int, kind: str, message: str) -> None:
    _sql(
        conn,
        "INSERT INTO event (at, kind, incident_id, actor, message, data) "
        "VALUES (:now, :kind, :incident_id, 'upgrade', :message, :data)",
        now=now,
        kind=kind,
        incident_id=incident_id,
        message=message,
        data={},
    )


def _mend(conn: sa.Connection) -> None:
    now = datetime.now(UTC)
    duplicates = conn.execute(
        sa.text(
            f"SELECT key, MAX(id) FROM incident WHERE status IN {OPEN} GROUP BY key HAVING COUNT(*) > 1"
        )
    ).all()
    for key, keep in duplicates:
        older = conn.execute(
            sa.text(f"SELECT id FROM incident WHERE key = :key AND status IN {OPEN} AND id <> :keep"),
            {"key": key, "keep": keep},
        ).scalars()
        for incident_id in list(older):
            reason = f"duplicate of #{keep}: one open incident per key"
            _sql(
                conn,
                "UPDATE incident SET status = 'cancelled', cancelled_at = :now, cancel_reason = :reason, "
                "updated_at = :now WHERE id = :id",
                now=now,
                reason=reason,
                id=incident_id,
            )
            _sql(
                conn,
                "UPDATE escalation SET state = 'cancelled', ended_at = :now, next_action_at = NULL, "
                "end_reason = :reason WHERE incident_id = :id AND state IN "
                "('pending', 'active', 'escalating', 'acknowledged', 'timed_out', 'failed')",
                now=now,
                reason=reason,
                id=incident_id,
            )
            conn.execute(
                sa.text(
                    "UPDATE page SET status = 'cancelled', next_check_at = NULL "
                    "WHERE incident_id = :id AND status IN ('active', 'held')"
                ),
                {"id": incident_id},
            )
            _sql(
                conn,
                "UPDATE outbox_message SET status = 'cancelled', updated_at = :now "
                "WHERE incident_id = :id AND status = 'pending' AND kind = 'page'",
                now=now,
                id=incident_id,
            )
            _event(conn, now, incident_id, "cancelled", f"cancelled on upgrade: {reason}")
    live = conn.execute(
        sa.text(
            f"SELECT incident_id, MAX(id) FROM escalation WHERE state IN {LIVE} "
            "GROUP BY incident_id HAVING COUNT(*) > 1"
        )
    ).all()
    for incident_id, keep in live:
        _sql(
            conn,
            f"UPDATE escalation SET state = 'cancelled', ended_at = :now, next_action_at = NULL, "
            f"end_reason = :reason WHERE incident_id = :id AND state IN {LIVE} AND id <> :keep",
            now=now,
            reason=f"superseded by escalation {keep}",
            id=incident_id,
            keep=keep,
        )
        _event(conn, now, incident_id, "escalation_superseded", f"older escalations superseded by {keep}")


def upgrade() -> None:
    _mend(op.get_bind())
    with op.batch_alter_table("escalation", schema=None) as batch_op:
        batch_op.add_column(sa.Column("levels_done_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index(
            "ux_escalation_one_live",
            ["incident_id"],
            unique=True,
            sqlite_where=sa.text("state IN ('pending', 'active', 'escalating')"),
            postgresql_where=sa.text("state IN ('pending', 'active', 'escalating')"),
        )
    with op.batch_alter_table("incident", schema=None) as batch_op:
        batch_op.create_index(
            "ux_incident_open_key",
            ["key"],
            unique=True,
            sqlite_where=sa.text(f"status IN {OPEN}"),
            postgresql_where=sa.text(f"status IN {OPEN}"),
        )


def downgrade() -> None:
    with op.batch_alter_table("incident", schema=None) as batch_op:
        batch_op.drop_index("ux_incident_open_key")
    with op.batch_alter_table("escalation", schema=None) as batch_op:
        batch_op.drop_index("ux_escalation_one_live")
        batch_op.drop_column("levels_done_at")
