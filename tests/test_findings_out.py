"""``dq-agent check --findings-out DIR``: every failing record on disk, the report unchanged."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from dq_agent import findings_out
from dq_agent.cli import main
from tests.sources import load_orders, order_rows, project_for
from tests.test_fat_finger import DEALS, SCENARIOS, clean_deals

# 5,000 orders: 1,234 without an amount, 300 refunded (not an accepted status), 1,250 for a
# customer the customers table does not know.
NULL_AMOUNT = range(2, 2 + 4 * 1234, 4)
REFUNDED = range(3, 3 + 15 * 300, 15)
CUSTOMERS = ["c0", "c1", "c2"]  # c3 is missing

ORDERS_SUITE = """
suite: orders
source: {connector: warehouse, table: orders}
key: [id]
max_findings: 20
checks:
  - row_count: {min: 1}
  - expect_column_values_to_not_be_null: {column: amount}
  - accepted_values: {column: status, values: [paid, open]}
  - reference: {column: customer, to: {table: customers, column: id}}
"""

NOT_NULL = "expect_column_values_to_not_be_null(amount)"


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def orders_project(root: Path, url: str) -> Path:
    rows = order_rows(5000, newest=datetime.now(UTC) - timedelta(minutes=5))
    for i in NULL_AMOUNT:
        rows[i - 1]["amount"] = None
    for i in REFUNDED:
        rows[i - 1]["status"] = "refunded"
    load_orders(url, rows)
    customers = sa.Table("customers", sa.MetaData(), sa.Column("id", sa.String(40)))
    load_orders(url, [{"id": c} for c in CUSTOMERS], customers)
    return project_for(root / "project", url, {"orders": ORDERS_SUITE})


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def from_parquet(path: Path) -> list[dict[str, Any]]:
    """A Parquet export's rows, its JSON text read back."""
    return [
        {k: json.loads(v) if k in JSON_TEXT and v is not None else v for k, v in row.items()}
        for row in pq.read_table(path).to_pylist()
    ]


JSON_TEXT = ("key", "observed", "proposed")


def record(id: int, column: str, observed: Any, reason: str) -> dict[str, Any]:
    return {
        "key": {"id": id},
        "column": column,
        "observed": observed,
        "proposed": None,
        "action": "report",
        "reason": reason,
    }


def without_timing(doc: dict[str, Any]) -> dict[str, Any]:
    for suite in doc["suites"]:
        del suite["started_at"], suite["duration_s"]
    return doc


def test_every_failing_record_is_written_and_the_report_stays_capped(
    tmp_path: Path, db_url: str
) -> None:
    project = orders_project(tmp_path, db_url)
    out = tmp_path / "findings"

    code, stdout, stderr = invoke(
        "check", "--project", str(project), "--format", "json", "--findings-out", str(out)
    )

    assert code == 2
    doc = json.loads(stdout)  # stdout is the one JSON document, as without the option
    _, plain, _ = invoke("check", "--project", str(project), "--format", "json")
    assert without_timing(doc) == without_timing(json.loads(plain))
    checks = {c["name"]: c for c in doc["suites"][0]["checks"]}
    assert checks[NOT_NULL]["message"] == "1,234 of 5,000 amount values null (24.68%)"
    assert len(checks[NOT_NULL]["findings"]) == 20

    folder = out / "orders"
    assert sorted(p.name for p in folder.iterdir()) == [
        "accepted_values_status.jsonl",
        "expect_column_values_to_not_be_null_amount.jsonl",
        "reference_customer.jsonl",
    ]
    nulls = folder / "expect_column_values_to_not_be_null_amount.jsonl"
    assert nulls.read_text(encoding="utf-8").splitlines()[0] == (
        '{"key": {"id": 2}, "column": "amount", "observed": null, "proposed": null, '
        '"action": "report", "reason": "amount is null"}'
    )
    assert lines(nulls) == [record(i, "amount", None, "amount is null") for i in NULL_AMOUNT]
    assert lines(folder / "accepted_values_status.jsonl") == [
        record(i, "status", "refunded", "not an accepted value") for i in REFUNDED
    ]
    assert lines(folder / "reference_customer.jsonl") == [
        record(i, "customer", "c3", "no match in customers.id") for i in range(3, 5001, 4)
    ]
    assert stderr.splitlines()[-3:] == [
        f"wrote 1,234 failing records of orders / {NOT_NULL} to {nulls}",
        f"wrote 300 failing records of orders / accepted_values(status) to "
        f"{folder / 'accepted_values_status.jsonl'}",
        f"wrote 1,250 failing records of orders / reference(customer) to "
        f"{folder / 'reference_customer.jsonl'}",
    ]


def test_parquet_holds_the_same_records_with_values_as_json_text(
    tmp_path: Path, db_url: str
) -> None:
    project = orders_project(tmp_path, db_url)
    jsonl, parquet = tmp_path / "jsonl", tmp_path / "parquet"

    invoke("check", "--project", str(project), "--findings-out", str(jsonl))
    code, _, stderr = invoke(
        "check",
        *("--project", str(project), "--findings-out", str(parquet)),
        *("--findings-format", "parquet"),
    )

    assert code == 2
    path = parquet / "orders" / "accepted_values_status.parquet"
    assert f"wrote 300 failing records of orders / accepted_values(status) to {path}" in stderr
    table = pq.read_table(path)
    assert table.column_names == ["key", "column", "observed", "proposed", "action", "reason"]
    assert table.slice(0, 1).to_pylist() == [
        {
            "key": '{"id": 3}',
            "column": "status",
            "observed": '"refunded"',
            "proposed": None,
            "action": "report",
            "reason": "not an accepted value",
        }
    ]
    for name in ("accepted_values_status", "expect_column_values_to_not_be_null_amount"):
        rows = from_parquet(parquet / "orders" / f"{name}.parquet")
        assert rows == lines(jsonl / "orders" / f"{name}.jsonl")


def test_a_long_export_says_how_far_it_got_on_stderr(
    tmp_path: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(findings_out, "BATCH", 250)
    monkeypatch.setattr(findings_out, "PROGRESS_EVERY", 500)
    project = orders_project(tmp_path, sqlite_url)

    out = str(tmp_path / "out")
    code, stdout, stderr = invoke(
        "check", "orders", "--project", str(project), "--format", "json", "--findings-out", out
    )

    assert code == 2
    json.loads(stdout)
    said = [line for line in stderr.splitlines() if "so far" in line]
    assert said == [
        f"orders / {NOT_NULL}: 500 failing records written so far",
        f"orders / {NOT_NULL}: 1,000 failing records written so far",
        "orders / reference(customer): 500 failing records written so far",
        "orders / reference(customer): 1,000 failing records written so far",
    ]


DEALS_SUITE = """
suite: deals
source: {connector: warehouse, table: deals}
key: [id]
max_findings: 3
checks:
  - fat_finger: {column: amount, witness: "seats * price", auto_correct: true}
"""

GX_SUITE = """
suite: customers
source: {connector: warehouse, table: orders}
key: [id]
max_findings: 1
checks:
  - expect_column_value_lengths_to_equal: {column: customer, value: 2}
"""


def test_a_check_that_cannot_stream_its_records_writes_its_findings_and_says_capped(
    tmp_path: Path, sqlite_url: str
) -> None:
    load_orders(sqlite_url, clean_deals() + SCENARIOS, DEALS)
    rows = order_rows(10)
    rows[4]["customer"] = rows[8]["customer"] = "acme"
    load_orders(sqlite_url, rows)
    project = project_for(tmp_path / "project", sqlite_url, {"deals": DEALS_SUITE, "gx": GX_SUITE})
    out = tmp_path / "out"

    code, _, stderr = invoke("check", "--project", str(project), "--findings-out", str(out))

    assert code == 2
    slips = out / "deals" / "fat_finger_amount.jsonl"
    assert slips.read_text(encoding="utf-8").splitlines() == [
        '{"key": {"id": 101}, "column": "amount", "observed": 60000, "proposed": 6000, '
        '"action": "auto_correct", "reason": "observed = 10 × witness seats * price"}',
        '{"key": {"id": 102}, "column": "amount", "observed": 12600, "proposed": 21600, '
        '"action": "auto_correct", "reason": "observed = witness seats * price with the '
        'adjacent digits 2 and 1 swapped"}',
        '{"key": {"id": 103}, "column": "amount", "observed": 216600, "proposed": 21600, '
        '"action": "auto_correct", "reason": "observed = witness seats * price with the '
        'digit 6 typed twice"}',
    ]
    lengths = out / "customers" / "expect_column_value_lengths_to_equal_customer.jsonl"
    assert lines(lengths) == [
        {
            "key": {"id": 5},
            "column": "customer",
            "observed": "acme",
            "proposed": None,
            "action": "report",
            "reason": "expect_column_value_lengths_to_equal not met",
        }
    ]
    assert stderr.splitlines()[-2:] == [
        f"wrote 3 failing records of deals / fat_finger(amount) to {slips} "
        "(capped at max_findings=3: this check's records cannot be streamed yet)",
        "wrote 1 failing record of customers / expect_column_value_lengths_to_equal(customer) "
        f"to {lengths} (capped at max_findings=1: this check's records cannot be streamed yet)",
    ]


def test_parquet_without_pyarrow_is_an_error_that_says_what_to_install(
    tmp_path: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    load_orders(sqlite_url, order_rows(10))
    project = project_for(tmp_path / "project", sqlite_url, {"orders": ORDERS_SUITE})
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)

    parquet = ["--findings-out", str(tmp_path / "out"), "--findings-format", "parquet"]
    code, stdout, stderr = invoke("check", "--project", str(project), *parquet)

    assert (code, stdout) == (3, "")
    assert stderr.splitlines() == [
        "error: --findings-format parquet needs pyarrow, which is not installed: "
        "pip install pyarrow"
    ]
    assert not (tmp_path / "out").exists()


def test_findings_format_alone_is_a_usage_error(tmp_path: Path) -> None:
    code, _, stderr = invoke("check", "--project", str(tmp_path), "--findings-format", "jsonl")
    assert code == 2
    assert "Error: --findings-format needs --findings-out DIR" in stderr
