"""The run queue: due suite runs, each claimed by one replica at a time for a lease.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | None = None
depends_on: str | None = None


def _ts(name: str, *, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "run_queue",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("suite", sa.String(255), nullable=False),
        _ts("due_at"),
        sa.Column("reason", sa.String(16), nullable=False),
        sa.Column("claimed_by", sa.String(128), nullable=True),
        _ts("lease_until", nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        _ts("started_at", nullable=True),
        _ts("finished_at", nullable=True),
        sa.Column("status", sa.String(16), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_run_queue"),
        sa.UniqueConstraint("suite", "due_at", name="uq_run_queue_suite"),
    )
    op.create_index(
        "ix_run_queue_one_open_per_suite",
        "run_queue",
        ["suite"],
        unique=True,
        sqlite_where=sa.text("finished_at IS NULL"),
        postgresql_where=sa.text("finished_at IS NULL"),
    )
    op.create_index("ix_run_queue_due", "run_queue", ["finished_at", "due_at"])


def downgrade() -> None:
    op.drop_index("ix_run_queue_due", table_name="run_queue")
    op.drop_index("ix_run_queue_one_open_per_suite", table_name="run_queue")
    op.drop_table("run_queue")
