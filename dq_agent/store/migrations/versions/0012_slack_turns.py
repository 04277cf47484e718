"""Slack pacing shared by replicas: when each channel's recent posts went.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "slack_turns",
        sa.Column("channel", sa.String(64), nullable=False),
        sa.Column("turns", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("channel", name="pk_slack_turns"),
    )


def downgrade() -> None:
    op.drop_table("slack_turns")
