"""``dq-agent validate --connect``: each suite held against its live source, every problem
reported at the line and column that caused it, all of them in one run."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.dialects.sqlite.pysqlite import SQLiteDialect_pysqlite

from tests.helpers import make_project
from tests.sources import load_orders, order_rows, project_for
from tests.test_cli import invoke

# The orders table has: id, customer, amount, status, updated_at.
ORDERS_SUITE = """
suite: orders
source: {{connector: warehouse, table: {table}}}
key: [{key}]
checks:
{checks}
"""

GOOD_CHECKS = """
  - row_count
  - freshness: {column: updated_at, max_age: 1h}
  - fat_finger: {column: amount, witness: 'amount * 1', peers: {group_by: [customer]}}
  - expect_column_values_to_not_be_null: {column: status}
  - expect_compound_columns_to_be_unique: {column_list: [id, customer]}
  - volume_anomaly: {timestamp_column: updated_at}
  - schema: {columns: {amount: number, status: string}}
"""


def orders_project(
    root: Path, url: str, checks: str, *, table: str = "orders", key: str = "id"
) -> Path:
    load_orders(url, order_rows(10))
    suite = ORDERS_SUITE.format(table=table, key=key, checks=checks.strip("\n"))
    return project_for(root / "project", url, {"orders": suite})


def validate(project: Path) -> tuple[int, str, list[str]]:
    """Exit code, stdout, and the stderr lines with the project folder left out."""
    code, out, err = invoke("validate", "--connect", "--project", str(project))
    return code, out, err.replace(f"{project}/", "").splitlines()


def test_a_project_whose_sources_have_what_it_names_is_ok(tmp_path: Path, db_url: str) -> None:
    project = orders_project(tmp_path, db_url, GOOD_CHECKS)
    assert validate(project) == (0, "OK: 1 suite, 1 connector\n", [])


def test_a_misspelt_table_is_named_with_its_engine_and_a_close_match(
    tmp_path: Path, db_url: str
) -> None:
    project = orders_project(tmp_path, db_url, "  - row_count", table="orderz")
    engine = "sqlite" if db_url.startswith("sqlite") else "postgresql"
    assert validate(project) == (
        3,
        "",
        [
            "checks/orders.yml:2:39: source.table: "
            f"table 'orderz' not found on {engine}; did you mean 'orders'?",
            "1 error in 1 file",
        ],
    )


def test_every_misspelt_column_is_reported_where_the_suite_names_it(
    tmp_path: Path, db_url: str
) -> None:
    project = orders_project(
        tmp_path,
        db_url,
        """
  - freshness: {column: updated, max_age: 1h}
  - fat_finger: {column: amount, witness: 'amout * 1'}
  - expect_column_values_to_not_be_null: {column: stauts}
  - expect_compound_columns_to_be_unique: {column_list: [id, customr]}
  - distribution_shift: {column: amount, timestamp_column: updated_at, group_by: currency}
  - schema: {columns: {amount: number, stat: string}}
""",
        key="ID",
    )
    code, out, err = validate(project)
    assert (code, out) == (3, "")
    assert err == [
        "checks/orders.yml:3:7: key[0]: column 'ID' not found in orders; did you mean 'id'?",
        "checks/orders.yml:5:25: checks[0].freshness.column: "
        "column 'updated' not found in orders; did you mean 'updated_at'?",
        "checks/orders.yml:6:43: checks[1].fat_finger.witness: "
        "column 'amout' not found in orders; did you mean 'amount'?",
        "checks/orders.yml:7:51: checks[2].expect_column_values_to_not_be_null.column: "
        "column 'stauts' not found in orders; did you mean 'status'?",
        "checks/orders.yml:8:62: checks[3].expect_compound_columns_to_be_unique.column_list[1]: "
        "column 'customr' not found in orders; did you mean 'customer'?",
        "checks/orders.yml:9:82: checks[4].distribution_shift.group_by: "
        "column 'currency' not found in orders; available: id, customer, amount, status, "
        "updated_at",
        "checks/orders.yml:10:40: checks[5].schema.columns.stat: "
        "column 'stat' not found in orders; did you mean 'status'?",
        "7 errors in 1 file",
    ]


def test_an_unreachable_source_is_one_issue_and_the_other_suites_are_still_checked(
    tmp_path: Path, sqlite_url: str
) -> None:
    load_orders(sqlite_url, order_rows(10))
    project = make_project(
        tmp_path / "project",
        connectors={
            # Nothing listens on port 1.
            "lost": "type: sql\nurl: 'postgresql+psycopg://dq:s3cret@127.0.0.1:1/warehouse'\n",
            "warehouse": f"type: sql\nurl: '{sqlite_url}'\n",
        },
        suites={
            "lost": ORDERS_SUITE.format(table="orders", key="id", checks="  - row_count")
            .replace("warehouse", "lost")
            .replace("suite: orders", "suite: lost"),
            "orders": ORDERS_SUITE.format(
                table="orders", key="id", checks="  - freshness: {column: updated, max_age: 1h}"
            ),
        },
    )
    code, out, err = validate(project)
    assert (code, out) == (3, "")
    [lost, orders, summary] = err
    assert lost.startswith(
        "checks/lost.yml:2:21: source.connector: connector 'lost' could not be reached: "
        "cannot reach postgresql+psycopg://dq:***@127.0.0.1:1/warehouse: "
    )
    assert lost.endswith("Connection refused")  # the driver's own words
    assert "s3cret" not in lost
    assert orders == (
        "checks/orders.yml:5:25: checks[0].freshness.column: "
        "column 'updated' not found in orders; did you mean 'updated_at'?"
    )
    assert summary == "2 errors in 2 files"


def test_a_time_bucketed_check_on_an_engine_it_does_not_support_is_refused(
    tmp_path: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = orders_project(
        tmp_path,
        sqlite_url,
        "  - row_count\n  - volume_anomaly: {timestamp_column: updated_at}",
    )
    # SQLite standing in for a database the bucketing SQL has not been written for.
    monkeypatch.setattr(SQLiteDialect_pysqlite, "name", "mssql")
    assert validate(project) == (
        3,
        "",
        [
            "checks/orders.yml:6:5: checks[1].volume_anomaly: volume_anomaly is not supported "
            "on mssql (supported: postgresql, duckdb, sqlite, mysql, snowflake, bigquery, databricks, redshift, trino)",
            "1 error in 1 file",
        ],
    )


def test_without_connect_no_source_is_touched(tmp_path: Path, sqlite_url: str) -> None:
    project = orders_project(tmp_path, sqlite_url, "  - row_count", table="orderz")
    assert invoke("validate", "--project", str(project)) == (0, "OK: 1 suite, 1 connector\n", "")
