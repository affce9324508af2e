"""intake receipts: every Events API event applied exactly once; events of a key applied in order

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "intake_receipt",
        sa.Column("uid", sa.String(length=40), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("incident_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("applied_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("uid", name=op.f("pk_intake_receipt")),
    )
    with op.batch_alter_table("intake_receipt", schema=None) as batch_op:
        batch_op.create_index("ix_intake_receipt_applied", ["applied_at"], unique=False)
    with op.batch_alter_table("intake_event", schema=None) as batch_op:
        batch_op.add_column(sa.Column("uid", sa.String(length=40), nullable=True))
        batch_op.create_index("ix_intake_event_key_pending", ["dedup_key", "status", "id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("intake_event", schema=None) as batch_op:
        batch_op.drop_index("ix_intake_event_key_pending")
        batch_op.drop_column("uid")
    with op.batch_alter_table("intake_receipt", schema=None) as batch_op:
        batch_op.drop_index("ix_intake_receipt_applied")
    op.drop_table("intake_receipt")
