"""Claims and memories that make actions happen once: outbox leases, seen Slack requests,
ended dashboard sessions and failed sign-ins.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | None = None
depends_on: str | None = None


def _ts(name: str, *, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(sa.Column("claimed_by", sa.String(128), nullable=True))
        batch.add_column(_ts("claimed_until", nullable=True))
    op.create_table(
        "seen_requests",
        sa.Column("key", sa.String(255), nullable=False),
        _ts("expires_at"),
        sa.PrimaryKeyConstraint("key", name="pk_seen_requests"),
    )
    op.create_index("ix_seen_requests_expires_at", "seen_requests", ["expires_at"])
    op.create_table(
        "ended_sessions",
        sa.Column("session_id", sa.String(64), nullable=False),
        _ts("expires_at"),
        sa.PrimaryKeyConstraint("session_id", name="pk_ended_sessions"),
    )
    op.create_table(
        "sign_in_failures",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("subject", sa.String(255), nullable=False),
        _ts("at"),
        sa.PrimaryKeyConstraint("id", name="pk_sign_in_failures"),
    )
    op.create_index("ix_sign_in_failures_subject_at", "sign_in_failures", ["subject", "at"])


def downgrade() -> None:
    op.drop_index("ix_sign_in_failures_subject_at", table_name="sign_in_failures")
    op.drop_table("sign_in_failures")
    op.drop_table("ended_sessions")
    op.drop_index("ix_seen_requests_expires_at", table_name="seen_requests")
    op.drop_table("seen_requests")
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("claimed_until")
        batch.drop_column("claimed_by")
