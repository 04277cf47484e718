"""Escalation state on incidents, and the outbox of messages to people.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | None = None
depends_on: str | None = None


def _ts(name: str, *, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.add_column(
        "incidents", sa.Column("check_type", sa.String(64), nullable=False, server_default="")
    )
    op.add_column("incidents", sa.Column("evidence", sa.JSON(), nullable=True))
    op.add_column("incidents", sa.Column("chain", sa.JSON(), nullable=True))
    op.add_column("incidents", sa.Column("level", sa.Integer(), nullable=False, server_default="0"))
    op.add_column(
        "incidents", sa.Column("nudges", sa.Integer(), nullable=False, server_default="0")
    )
    op.add_column("incidents", _ts("last_nudged_at", nullable=True))
    op.create_table(
        "outbox",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("incident_id", sa.Integer(), nullable=True),
        sa.Column("correction_id", sa.Integer(), nullable=True),
        sa.Column("recipient", sa.String(255), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        _ts("created_at"),
        _ts("due_at"),
        _ts("attempted_at", nullable=True),
        _ts("sent_at", nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("channel", sa.String(64), nullable=True),
        sa.Column("ts", sa.String(32), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_outbox"),
        sa.UniqueConstraint("key", name="uq_outbox_key"),
    )
    op.create_index("ix_outbox_status", "outbox", ["status"])
    op.create_index("ix_outbox_incident_id", "outbox", ["incident_id"])


def downgrade() -> None:
    op.drop_index("ix_outbox_incident_id", table_name="outbox")
    op.drop_index("ix_outbox_status", table_name="outbox")
    op.drop_table("outbox")
    with op.batch_alter_table("incidents") as batch:
        for column in ("last_nudged_at", "nudges", "level", "chain", "evidence", "check_type"):
            batch.drop_column(column)
