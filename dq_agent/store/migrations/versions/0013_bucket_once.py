"""Each bucket of a check once, with the moment it was judged as of.

Runs used to append every bucket of their training window, so the table grew by the window
with every run. The newest count of each bucket (by the wall clock, as reads took it) stays;
the older copies go.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    # The copies to keep, in a derived table (MySQL cannot read the table it deletes from).
    op.execute(
        "DELETE FROM bucket_values WHERE id NOT IN (SELECT id FROM ("
        " SELECT max(b.id) AS id FROM bucket_values b JOIN ("
        "  SELECT suite, check_name, bucket, max(observed_at) AS newest FROM bucket_values"
        "  GROUP BY suite, check_name, bucket) n"
        " ON b.suite = n.suite AND b.check_name = n.check_name AND b.bucket = n.bucket"
        " AND b.observed_at = n.newest"
        " GROUP BY b.suite, b.check_name, b.bucket) keep)"
    )
    op.drop_index("ix_bucket_values_series", table_name="bucket_values")
    op.create_index(
        "uq_bucket_values_series",
        "bucket_values",
        ["suite", "check_name", "bucket"],
        unique=True,
    )
    op.add_column(
        "bucket_values", sa.Column("judged_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.execute(
        "UPDATE bucket_values SET judged_at = COALESCE("
        " (SELECT as_of FROM suite_runs WHERE suite_runs.id = bucket_values.suite_run_id),"
        " observed_at)"
    )
    with op.batch_alter_table("bucket_values") as batch:
        batch.alter_column("judged_at", existing_type=sa.DateTime(timezone=True), nullable=False)
        # A bucket's count outlives the run that counted it (run history is thinned).
        batch.alter_column("suite_run_id", existing_type=sa.Integer(), nullable=True)
        batch.drop_constraint("fk_bucket_values_suite_run_id_suite_runs", type_="foreignkey")
        batch.create_foreign_key(
            "fk_bucket_values_suite_run_id_suite_runs",
            "suite_runs",
            ["suite_run_id"],
            ["id"],
            ondelete="SET NULL",
        )


def downgrade() -> None:
    op.execute("DELETE FROM bucket_values WHERE suite_run_id IS NULL")
    with op.batch_alter_table("bucket_values") as batch:
        batch.drop_constraint("fk_bucket_values_suite_run_id_suite_runs", type_="foreignkey")
        batch.create_foreign_key(
            "fk_bucket_values_suite_run_id_suite_runs", "suite_runs", ["suite_run_id"], ["id"]
        )
        batch.alter_column("suite_run_id", existing_type=sa.Integer(), nullable=False)
        batch.drop_column("judged_at")
    op.drop_index("uq_bucket_values_series", table_name="bucket_values")
    op.create_index("ix_bucket_values_series", "bucket_values", ["suite", "check_name", "bucket"])
