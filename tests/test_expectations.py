"""GX expectations: passthrough to Great Expectations, and the compiled ones match GX exactly."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from dq_agent.results import CheckResult
from tests.sources import load_orders, order_rows, run, run_one

SUITE = """
suite: orders
source: {connector: warehouse, table: orders}
key: [id]
checks:
"""


# Ten orders with a bit of everything wrong: nulls, duplicates, out of range, out of set.
def messy_rows() -> list[dict[str, Any]]:
    rows = order_rows(10)
    rows[1]["status"] = None
    rows[2]["status"] = "refunded"
    rows[3]["customer"] = None
    rows[4]["amount"] = -5
    rows[5]["amount"] = None
    rows[6]["customer"] = "c1"
    return rows


COMPILED = [
    "expect_column_values_to_not_be_null: {column: status}",
    "expect_column_values_to_not_be_null: {column: status, mostly: 0.8}",
    "expect_column_values_to_not_be_null: {column: id}",
    "expect_column_values_to_be_null: {column: customer}",
    "expect_column_values_to_be_null: {column: customer, mostly: 0.05}",
    "expect_column_values_to_be_between: {column: amount, min_value: 0}",
    "expect_column_values_to_be_between: {column: amount, min_value: 0, mostly: 0.85}",
    "expect_column_values_to_be_between: {column: amount, min_value: -5, strict_min: true}",
    "expect_column_values_to_be_between: {column: amount, max_value: 100, strict_max: true}",
    "expect_column_values_to_be_between: {column: amount, min_value: 20, max_value: 80}",
    "expect_column_values_to_be_in_set: {column: status, value_set: [open, paid]}",
    "expect_column_values_to_be_in_set: {column: status, value_set: [open, paid], mostly: 0.8}",
    "expect_column_values_to_not_be_in_set: {column: status, value_set: [refunded]}",
    "expect_column_values_to_be_unique: {column: customer}",
    "expect_column_values_to_be_unique: {column: id}",
    "expect_column_values_to_be_unique: {column: customer, mostly: 0.1}",
    "expect_table_row_count_to_be_between: {min_value: 1, max_value: 10}",
    "expect_table_row_count_to_be_between: {min_value: 10, strict_min: true}",
    "expect_table_row_count_to_equal: {value: 10}",
    "expect_table_row_count_to_equal: {value: 11}",
]


def _suite(lines: list[str]) -> str:
    return SUITE + "".join(f"  - {line}\n" for line in _named(lines))


def _named(lines: list[str]) -> list[str]:
    # Give each its own name: several share a type and column.
    return [line.replace("{", f"{{name: c{i}, ", 1) for i, line in enumerate(lines)]


def _essence(check: CheckResult) -> tuple[Any, ...]:
    observed = check.observed
    return (
        check.status,
        observed.get("element_count"),
        observed.get("unexpected_count"),
        round(float(observed.get("unexpected_percent") or 0), 6),
        observed.get("missing_count"),
        observed.get("observed_value"),
        sorted(tuple(sorted(f.key.items())) for f in check.findings),
    )


@pytest.mark.parametrize("rows", ["messy", "empty"])
def test_compiled_expectations_agree_with_great_expectations(
    tmp_path: Path, db_url: str, rows: str
) -> None:
    load_orders(db_url, messy_rows() if rows == "messy" else [])
    suite = _suite(COMPILED)
    compiled = run_one(tmp_path / "compiled", db_url, suite)
    through_gx = run_one(tmp_path / "gx", db_url, suite, compile_expectations=False)
    assert [c.status for c in through_gx.checks if c.status == "error"] == []
    for ours, theirs in zip(compiled.checks, through_gx.checks, strict=True):
        assert _essence(ours) == _essence(theirs), (ours.name, ours.observed, theirs.observed)
    if rows == "messy":
        assert {c.status for c in compiled.checks} == {"pass", "fail"}


def test_other_expectations_run_through_great_expectations(tmp_path: Path, db_url: str) -> None:
    load_orders(db_url, messy_rows())
    suite = (
        SUITE
        + """
  - expect_column_value_lengths_to_be_between: {column: customer, min_value: 2, max_value: 2}
  - expect_column_value_lengths_to_be_between: {name: long_names, column: status, min_value: 5}
  - expect_column_value_lengths_to_be_between:
      {name: mostly_short, column: status, max_value: 4, mostly: 0.8}
  - expect_compound_columns_to_be_unique: {column_list: [customer, status]}
  - expect_column_distinct_values_to_be_in_set: {column: status, value_set: [open, paid]}
  - expect_column_mean_to_be_between: {column: amount, min_value: 40, max_value: 60}
  - expect_column_max_to_be_between: {column: amount, max_value: 50}
  - expect_column_values_to_be_in_set:
      {name: paid_only_filtered, column: status, value_set: [paid], row_condition: 'col("id")>5',
       condition_parser: great_expectations}
"""
    )
    result = run_one(tmp_path, db_url, suite)
    by_name = {c.name: c for c in result.checks}
    assert by_name["expect_column_value_lengths_to_be_between(customer)"].status == "pass"
    long_names = by_name["long_names"]
    assert long_names.status == "fail"
    assert long_names.message == "8 of 9 values unexpected (88.89%)"
    assert [f.key["id"] for f in long_names.findings] == [1, 4, 5, 6, 7, 8, 9, 10]
    assert {f.observed for f in long_names.findings} == {"open", "paid"}
    assert by_name["mostly_short"].status == "pass"
    assert by_name["expect_compound_columns_to_be_unique(customer,status)"].status == "fail"
    distinct = by_name["expect_column_distinct_values_to_be_in_set(status)"]
    assert distinct.status == "fail"
    assert distinct.observed["partial_unexpected_list"] == ["refunded"]
    assert by_name["expect_column_mean_to_be_between(amount)"].status == "pass"
    assert by_name["expect_column_max_to_be_between(amount)"].status == "fail"
    assert by_name["expect_column_max_to_be_between(amount)"].observed["observed_value"] == 100
    assert by_name["paid_only_filtered"].status == "fail"


def test_a_crash_inside_great_expectations_is_an_error_not_a_failure(
    tmp_path: Path, sqlite_url: str
) -> None:
    load_orders(sqlite_url, order_rows(3))
    suite = SUITE + "  - expect_column_value_lengths_to_be_between: {column: nope, min_value: 1}\n"
    result = run_one(tmp_path, sqlite_url, suite)
    assert result.checks[0].status == "error"


def test_mixed_suite_uses_one_scan_and_one_gx_validation(tmp_path: Path, sqlite_url: str) -> None:
    load_orders(sqlite_url, order_rows(5))
    suite = (
        SUITE
        + """
  - row_count
  - expect_column_values_to_not_be_null: {column: amount}
  - expect_column_value_lengths_to_be_between: {column: customer, min_value: 2}
  - expect_column_max_to_be_between: {column: amount, max_value: 1000}
"""
    )
    [result] = [run_one(tmp_path, sqlite_url, suite)]
    assert [c.status for c in result.checks] == ["pass"] * 4
    assert run(tmp_path)[0].status == "pass"


def test_uniqueness_comes_from_the_catalog_or_a_probe_never_from_count_distinct(
    tmp_path: Path, db_url: str
) -> None:
    import sqlalchemy as sa
    from sqlalchemy import event

    rows = messy_rows()
    load_orders(db_url, rows)
    suite = SUITE + (
        "  - expect_column_values_to_be_unique: {column: id}\n"  # the primary key: proven
        "  - expect_column_values_to_be_unique: {column: customer}\n"  # probed
    )
    statements: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    event.listen(sa.engine.Engine, "before_cursor_execute", seen)
    try:
        result = run_one(tmp_path, db_url, suite)
    finally:
        event.remove(sa.engine.Engine, "before_cursor_execute", seen)
    by_name = {c.name: c for c in result.checks}
    assert by_name["expect_column_values_to_be_unique(id)"].status == "pass"
    assert by_name["expect_column_values_to_be_unique(customer)"].observed["unexpected_count"] > 0
    on_orders = [s for s in statements if "orders" in s and "alembic" not in s]
    assert not any("count(distinct" in s.lower() for s in on_orders)
    probes = [s for s in on_orders if "HAVING" in s.upper() and "sum(" in s.lower()]
    assert len(probes) == 1  # for customer only: id is the table's primary key


def test_a_suite_can_send_every_expectation_through_great_expectations(
    tmp_path: Path, sqlite_url: str
) -> None:
    load_orders(sqlite_url, messy_rows())
    lines = "".join(f"  - {line}\n" for line in _named(COMPILED[:6]))
    compiled = run_one(tmp_path / "a", sqlite_url, SUITE + lines)
    through_gx = run_one(
        tmp_path / "b", sqlite_url, SUITE.replace("checks:", "engine: gx\nchecks:") + lines
    )
    assert [_essence(c) for c in through_gx.checks] == [_essence(c) for c in compiled.checks]
    # GX reports its own way ("partial_unexpected_list"), which the compiled path never does.
    assert all("partial_unexpected_list" in c.observed for c in through_gx.checks)
