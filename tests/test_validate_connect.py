"""``dq-agent validate --connect``: each suite held against its live source, every problem
reported at the line and column that caused it, all of them in one run."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects.sqlite.pysqlite import SQLiteDialect_pysqlite

from dq_agent_sandbox.runner import demo_seed, start_sandbox
from dq_agent_sandbox.warehouse import build_demo_warehouse
from tests.helpers import make_project
from tests.sources import load_orders, order_rows, project_for
from tests.test_cli import REPO, invoke

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


# Beside the orders: the rates a fix converts with, and the customers a reference looks up.
LOOKUPS = sa.MetaData()
FX_RATES = sa.Table(
    "fx_rates", LOOKUPS, sa.Column("currency", sa.String(3)), sa.Column("rate", sa.Numeric(10, 4))
)
CUSTOMERS = sa.Table(
    "customers", LOOKUPS, sa.Column("id", sa.String(40)), sa.Column("name", sa.String(80))
)


def with_lookups(url: str) -> str:
    engine = sa.create_engine(url)
    try:
        LOOKUPS.drop_all(engine)
        LOOKUPS.create_all(engine)
    finally:
        engine.dispose()
    return url


def fixes_project(root: Path, url: str, checks: str, fixes: str) -> Path:
    load_orders(url, order_rows(10))
    with_lookups(url)
    suite = ORDERS_SUITE.format(table="orders", key="id", checks=checks.strip("\n"))
    return project_for(root / "project", url, {"orders": suite + fixes.lstrip("\n")})


def test_a_fix_is_held_against_every_table_and_column_its_sql_names(
    tmp_path: Path, sqlite_url: str
) -> None:
    project = fixes_project(
        tmp_path,
        sqlite_url,
        "  - row_count",
        """
fixes:
  - name: reprice
    when: {check: row_count}
    sql: |
      UPDATE orders
         SET amout = amount / (SELECT rte FROM fx_rates WHERE fx_rates.curency = orders.status),
             status = 'repriced'
       WHERE stauts = 'open' AND customer IN (SELECT name FROM customerz)
  - name: reopen
    when: {check: row_count}
    sql: "INSERT INTO orders (id, customer, amount, staus) SELECT id + 100, customer, amount, 'open' FROM orders o WHERE o.updated < '2026-01-01'"
""",
    )
    code, out, err = validate(project)
    assert (code, out) == (3, "")
    assert err == [
        "checks/orders.yml:9:10: fixes[0].sql: "
        "column 'amout' not found in orders; did you mean 'amount'?",
        "checks/orders.yml:9:10: fixes[0].sql: "
        "column 'rte' not found in fx_rates; did you mean 'rate'?",
        "checks/orders.yml:9:10: fixes[0].sql: "
        "column 'curency' not found in fx_rates; did you mean 'currency'?",
        "checks/orders.yml:9:10: fixes[0].sql: "
        "column 'stauts' not found in orders; did you mean 'status'?",
        "checks/orders.yml:9:10: fixes[0].sql: "
        "table 'customerz' not found on sqlite; did you mean 'customers'?",
        "checks/orders.yml:16:10: fixes[1].sql: "
        "column 'staus' not found in orders; did you mean 'status'?",
        "checks/orders.yml:16:10: fixes[1].sql: "
        "column 'updated' not found in orders; did you mean 'updated_at'?",
        "7 errors in 1 file",
    ]


def test_a_fix_on_postgresql_names_columns_as_postgresql_reads_them(
    tmp_path: Path, postgres_url: str
) -> None:
    # Unquoted names fold to lower case: Amount is amount; a quoted "Status" is not status.
    project = fixes_project(
        tmp_path,
        postgres_url,
        "  - row_count",
        """
fixes:
  - name: reprice
    when: {check: row_count}
    sql: UPDATE Orders SET Amount = Amount * 2 WHERE "Status" = 'open' AND orders.ctid IS NOT NULL
""",
    )
    assert validate(project) == (
        3,
        "",
        [
            "checks/orders.yml:9:10: fixes[0].sql: "
            "column 'Status' not found in orders; did you mean 'status'?",
            "1 error in 1 file",
        ],
    )


def test_a_reference_check_is_held_against_the_table_it_looks_values_up_in(
    tmp_path: Path, sqlite_url: str
) -> None:
    load_orders(sqlite_url, order_rows(10))
    with_lookups(sqlite_url)
    ledger = with_lookups(f"sqlite:///{tmp_path / 'ledger.sqlite'}")
    suite = ORDERS_SUITE.format(
        table="orders",
        key="id",
        checks="""\
  - reference: {column: customer, to: {table: customerz, column: id}}
  - reference: {name: by_name, column: customer, to: {table: customers, column: nam}}
  - reference: {name: ledger, column: customer, to: {connector: ledger, table: customer, column: id}}
  - reference: {name: lost, column: customer, to: {connector: lost, table: customers, column: id}}""",
    )
    project = make_project(
        tmp_path / "project",
        connectors={
            "warehouse": f"type: sql\nurl: '{sqlite_url}'\n",
            "ledger": f"type: sql\nurl: '{ledger}'\n",
            "lost": "type: sql\nurl: 'postgresql+psycopg://dq:s3cret@127.0.0.1:1/ledger'\n",
        },
        suites={"orders": suite},
    )
    code, out, err = validate(project)
    assert (code, out) == (3, "")
    [table, column, elsewhere, lost, summary] = err
    assert table == (
        "checks/orders.yml:5:47: checks[0].reference.to.table: "
        "table 'customerz' not found on sqlite; did you mean 'customers'?"
    )
    assert column == (
        "checks/orders.yml:6:81: checks[1].reference.to.column: "
        "column 'nam' not found in customers; did you mean 'name'?"
    )
    assert elsewhere == (
        "checks/orders.yml:7:80: checks[2].reference.to.table: "
        "table 'customer' not found on connector 'ledger' (sqlite); did you mean 'customers'?"
    )
    assert lost.startswith(
        "checks/orders.yml:8:63: checks[3].reference.to.connector: "
        "connector 'lost' could not be reached: cannot reach postgresql+psycopg://dq:***@"
    )
    assert lost.endswith("Connection refused")
    assert "s3cret" not in lost
    assert summary == "4 errors in 1 file"


def test_a_reference_from_a_fetched_source_is_checked_on_sql_connectors_only(
    tmp_path: Path, sqlite_url: str
) -> None:
    with_lookups(sqlite_url)
    seed = {
        "gsheets": {"spreadsheets": {"crm": {"key": "crm", "sheets": {"deals": [["customer"]]}}}}
    }
    with start_sandbox(seed) as sandbox:
        project = make_project(
            tmp_path / "project",
            connectors={
                "warehouse": f"type: sql\nurl: '{sqlite_url}'\n",
                "sheets": f"type: gsheets\nbase_url: {sandbox.info['gsheets']['base_url']}\n",
            },
            suites={
                "deals": """\
suite: deals
source: {connector: sheets, spreadsheet: crm, worksheet: deals}
checks:
  # Beside the worksheet's copy there is no table to look values up in: nothing to say.
  - reference: {column: customer, to: {table: customerz, column: id}}
  - reference: {name: known, column: customer, to: {connector: warehouse, table: customers, column: idd}}
"""
            },
        )
        assert validate(project) == (
            3,
            "",
            [
                "checks/deals.yml:6:101: checks[1].reference.to.column: "
                "column 'idd' not found in customers; did you mean 'id'?",
                "1 error in 1 file",
            ],
        )


def test_every_column_a_row_condition_names_must_be_there(tmp_path: Path, db_url: str) -> None:
    project = orders_project(
        tmp_path,
        db_url,
        """
  - expect_column_values_to_not_be_null:
      column: amount
      row_condition: 'col("stauts")=="open"'
      condition_parser: great_expectations
  - expect_column_values_to_be_between:
      column: amount
      min_value: 0
      row_condition: 'customer != "c1" and updated > "2026-01-01"'
      condition_parser: pandas
""",
    )
    code, out, err = validate(project)
    assert (code, out) == (3, "")
    assert err == [
        "checks/orders.yml:7:22: checks[0].expect_column_values_to_not_be_null.row_condition: "
        "column 'stauts' not found in orders; did you mean 'status'?",
        "checks/orders.yml:12:22: checks[1].expect_column_values_to_be_between.row_condition: "
        "column 'updated' not found in orders; did you mean 'updated_at'?",
        "2 errors in 1 file",
    ]


def test_fixes_references_and_row_conditions_that_name_what_is_there_are_ok(
    tmp_path: Path, db_url: str
) -> None:
    ledger = with_lookups(f"sqlite:///{tmp_path / 'ledger.sqlite'}")
    project = fixes_project(
        tmp_path,
        db_url,
        """
  - row_count
  - reference: {column: customer, to: {table: customers, column: id}}
  - reference: {name: ledger, column: customer, to: {connector: ledger, table: customers, column: id}}
  - expect_column_values_to_not_be_null:
      column: amount
      row_condition: 'col("status")=="open"'
      condition_parser: great_expectations
  - expect_column_values_to_be_between:
      {column: amount, min_value: 0, row_condition: 'status == "open"', condition_parser: pandas}
""",
        """
fixes:
  - name: convert
    when: {check: row_count}
    sql: |
      UPDATE orders
         SET amount = ROUND(amount / (SELECT rate FROM fx_rates AS fx
                                      WHERE fx.currency = orders.status), 2),
             status = 'converted'
       WHERE status = 'open'
         AND customer IN (SELECT c.id FROM customers c JOIN fx_rates ON rate > 0)
         AND EXISTS (SELECT 1 FROM (SELECT name AS who FROM customers) AS named
                     WHERE who = customer ORDER BY who)
  - name: drop_cancelled
    when: {check: row_count}
    sql: DELETE FROM orders WHERE status IN (SELECT currency FROM fx_rates WHERE rate = 0)
""",
    )
    (project / "connectors" / "ledger.yml").write_text(f"type: sql\nurl: '{ledger}'\n")
    assert validate(project) == (0, "OK: 1 suite, 2 connectors\n", [])


def test_the_demo_project_is_ok_against_its_own_sources(tmp_path: Path) -> None:
    for part in ("checks", "connectors"):
        shutil.copytree(REPO / part, tmp_path / part)
    shutil.copy(REPO / "dq-agent.yml", tmp_path / "dq-agent.yml")
    now = datetime.now(UTC)
    build_demo_warehouse(tmp_path / ".dq-agent" / "demo-warehouse.db", now)
    with start_sandbox(demo_seed(now)) as sandbox:
        # The emulators on ports of their own, not the demo's fixed ones.
        for name, setting, url in (
            ("crm", "instance_url", sandbox.info["salesforce"]["instance_url"]),
            ("finance_sheets", "base_url", sandbox.info["gsheets"]["base_url"]),
        ):
            profile = tmp_path / "connectors" / f"{name}.yml"
            lines = profile.read_text().splitlines()
            profile.write_text(
                "".join(
                    f"{setting}: {url}\n" if line.startswith(f"{setting}:") else f"{line}\n"
                    for line in lines
                )
            )
        assert validate(tmp_path) == (0, "OK: 7 suites, 4 connectors\n", [])
