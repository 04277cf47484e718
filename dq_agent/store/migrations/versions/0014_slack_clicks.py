"""Slack clicks acknowledged: recorded before the acknowledgement, each acted on once.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | None = None
depends_on: str | None = None


def _ts(name: str, *, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "slack_clicks",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        _ts("received_at"),
        sa.Column("claimed_by", sa.String(128), nullable=True),
        _ts("lease_until", nullable=True),
        _ts("done_at", nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_slack_clicks"),
        sa.UniqueConstraint("key", name="uq_slack_clicks_key"),
    )
    op.create_index("ix_slack_clicks_done_at", "slack_clicks", ["done_at"])


def downgrade() -> None:
    op.drop_index("ix_slack_clicks_done_at", table_name="slack_clicks")
    op.drop_table("slack_clicks")
