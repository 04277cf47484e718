"""Feedback on buckets ("expected") and the history of time-bucketed values.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None


def _ts(name: str) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=False)


def upgrade() -> None:
    op.create_table(
        "feedback",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("suite", sa.String(255), nullable=False),
        sa.Column("check_name", sa.String(255), nullable=False),
        _ts("bucket"),
        sa.Column("verdict", sa.String(16), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("created_by", sa.String(255), nullable=False),
        _ts("created_at"),
        sa.PrimaryKeyConstraint("id", name="pk_feedback"),
    )
    op.create_index("ix_feedback_check", "feedback", ["suite", "check_name", "bucket"])

    op.create_table(
        "bucket_values",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("suite_run_id", sa.Integer(), nullable=False),
        sa.Column("suite", sa.String(255), nullable=False),
        sa.Column("check_name", sa.String(255), nullable=False),
        _ts("bucket"),
        sa.Column("value", sa.Float(), nullable=False),
        _ts("observed_at"),
        sa.ForeignKeyConstraint(
            ["suite_run_id"],
            ["suite_runs.id"],
            name="fk_bucket_values_suite_run_id_suite_runs",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_bucket_values"),
    )
    op.create_index("ix_bucket_values_series", "bucket_values", ["suite", "check_name", "bucket"])
    op.create_index("ix_bucket_values_suite_run_id", "bucket_values", ["suite_run_id"])


def downgrade() -> None:
    op.drop_index("ix_bucket_values_suite_run_id", table_name="bucket_values")
    op.drop_index("ix_bucket_values_series", table_name="bucket_values")
    op.drop_table("bucket_values")
    op.drop_index("ix_feedback_check", table_name="feedback")
    op.drop_table("feedback")
