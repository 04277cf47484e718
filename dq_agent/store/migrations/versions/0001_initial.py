"""Create the state store's tables.

Revision ID: 0001
Revises:
Create Date: 2024-06-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None


def _ts(name: str, *, nullable: bool) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "runs",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("command", sa.String(64), nullable=False),
        _ts("started_at", nullable=False),
        _ts("finished_at", nullable=True),
        _ts("as_of", nullable=True),
        sa.Column("status", sa.String(16), nullable=True),
        sa.Column("suites", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_runs"),
    )

    op.create_table(
        "suite_runs",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("suite", sa.String(255), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        _ts("started_at", nullable=False),
        sa.Column("duration_s", sa.Float(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        _ts("as_of", nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_suite_runs"),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name="fk_suite_runs_run_id_runs"),
    )
    op.create_index("ix_suite_runs_run_id", "suite_runs", ["run_id"])
    op.create_index("ix_suite_runs_suite", "suite_runs", ["suite"])

    op.create_table(
        "check_results",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("suite_run_id", sa.Integer(), nullable=False),
        sa.Column("suite", sa.String(255), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("type", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("observed", sa.JSON(), nullable=False),
        sa.Column("findings", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_check_results"),
        sa.ForeignKeyConstraint(
            ["suite_run_id"], ["suite_runs.id"], name="fk_check_results_suite_run_id_suite_runs"
        ),
    )
    op.create_index("ix_check_results_suite_run_id", "check_results", ["suite_run_id"])
    op.create_index("ix_check_results_suite", "check_results", ["suite"])

    op.create_table(
        "metrics",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("suite_run_id", sa.Integer(), nullable=False),
        sa.Column("suite", sa.String(255), nullable=False),
        sa.Column("check_name", sa.String(255), nullable=False),
        sa.Column("metric", sa.String(255), nullable=False),
        sa.Column("value", sa.Float(), nullable=True),
        _ts("measured_at", nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_metrics"),
        sa.ForeignKeyConstraint(
            ["suite_run_id"], ["suite_runs.id"], name="fk_metrics_suite_run_id_suite_runs"
        ),
    )
    op.create_index("ix_metrics_suite_run_id", "metrics", ["suite_run_id"])
    op.create_index(
        "ix_metrics_series", "metrics", ["suite", "check_name", "metric", "measured_at"]
    )

    op.create_table(
        "schema_snapshots",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("suite", sa.String(255), nullable=False),
        sa.Column("columns", sa.JSON(), nullable=False),
        _ts("seen_at", nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_schema_snapshots"),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name="fk_schema_snapshots_run_id_runs"),
    )
    op.create_index("ix_schema_snapshots_suite", "schema_snapshots", ["suite"])
    op.create_index("ix_schema_snapshots_run_id", "schema_snapshots", ["run_id"])


def downgrade() -> None:
    op.drop_table("schema_snapshots")
    op.drop_table("metrics")
    op.drop_table("check_results")
    op.drop_table("suite_runs")
    op.drop_table("runs")
