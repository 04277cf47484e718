"""Lake files checked in place: a DuckDB ``query:`` over Parquet and CSV files.

The connector is an in-memory DuckDB; the suite's query reads the files (paths taken from the
project, wherever the agent runs), and every check is pushed down to DuckDB as for a table:
columns are typed from DuckDB's description of the query, so the time-bucketed checks run.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest

from dq_agent.config import load_project
from dq_agent.engine import RunOptions, run_checks
from dq_agent.store import Store
from tests.helpers import make_project

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
SUITE = """
suite: orders
source:
  connector: lake
  query: "SELECT * FROM read_{kind}('data/orders/*.{kind}')"
key: [id]
checks:
  - row_count: {{min: 1}}
  - freshness: {{column: created_at, max_age: 26h}}
  - volume_anomaly: {{timestamp_column: created_at}}
  - schema: {{columns: {{id: integer, amount: number, created_at: timestamp}}}}
  - expect_column_values_to_not_be_null: {{column: amount}}
  - expect_column_values_to_be_between: {{column: amount, min_value: 0}}
"""


def orders(day: int) -> pa.Table:
    """One day's file of 100 orders (a day three weeks in has 5 without an amount)."""
    start = datetime(2026, 11, 1) + timedelta(days=day)
    ids = [day * 1000 + i for i in range(100)]
    amounts = [None if day == 20 and i < 5 else 10.0 + i for i in range(100)]
    return pa.table(
        {
            "id": pa.array(ids, pa.int64()),
            "amount": pa.array(amounts, pa.float64()),
            "created_at": pa.array(
                [start + timedelta(minutes=10 * i) for i in range(100)], pa.timestamp("us")
            ),
        }
    )


@pytest.mark.parametrize("kind", ["parquet", "csv"])
def test_a_query_over_lake_files_is_checked_in_place(tmp_path: Path, kind: str) -> None:
    root = tmp_path / "project"
    folder = root / "data" / "orders"
    folder.mkdir(parents=True)
    for day in range(23):
        if kind == "parquet":
            pq.write_table(orders(day), folder / f"day-{day:02d}.parquet")
        else:
            pa_csv.write_csv(orders(day), folder / f"day-{day:02d}.csv")
    make_project(
        root,
        connectors={"lake": "type: sql\nurl: 'duckdb:///:memory:'\n"},
        suites={"orders": SUITE.format(kind=kind)},
        settings=f"state_url: 'sqlite:///{tmp_path}/state.db'\n",
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    cwd = os.getcwd()
    os.chdir(elsewhere)  # the daemon's working directory is not the project's
    try:
        project = load_project(root, env={})
        assert project.issues == ()
        with Store.open(project.state_url) as store:
            [result] = run_checks(
                project, ["orders"], store=store, options=RunOptions(clock=lambda: NOW)
            )
    finally:
        os.chdir(cwd)
    assert result.error is None
    outcome = {c.name: (c.status, c.message) for c in result.checks}
    assert outcome == {
        "row_count": ("pass", "2,300 rows"),
        "freshness(created_at)": ("pass", "newest created_at is 19h old (max 26h)"),
        "volume_anomaly(created_at)": (
            "pass",
            outcome["volume_anomaly(created_at)"][1],
        ),
        "schema": ("pass", "3 columns as expected (first run: baseline saved)"),
        "expect_column_values_to_not_be_null(amount)": (
            "fail",
            "5 of 2,300 amount values null (0.22%)",
        ),
        "expect_column_values_to_be_between(amount)": ("pass", "all 2,295 values as expected"),
    }
    assert outcome["volume_anomaly(created_at)"][1].startswith("2026-11-23: 100 rows")
