"""GX expectations: passthrough to Great Expectations, and the compiled ones match GX exactly."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import event

from dq_agent.checks.compiled import can_compile
from dq_agent.checks.conditions import RowCondition, parse_row_condition
from dq_agent.config import load_project
from dq_agent.config.models import CheckSpec
from dq_agent.results import CheckResult
from tests.helpers import make_project
from tests.sources import load_orders, order_rows, project_for, run, run_one
from tests.test_expectations_differential import (
    GX_COUNTS_BYTES_ON_MYSQL,
    GX_COUNTS_NULL_KEYS_ON_MYSQL,
    TABLE,
)

SUITE = """
suite: orders
source: {connector: warehouse, table: orders}
key: [id]
checks:
"""


# Ten orders with a bit of everything wrong: nulls, duplicates, out of range, out of set.
# Order 6 has neither amount nor status (a row GX's compound uniqueness leaves out), and
# orders 2 and 6 share (c2, NULL): a repeat GX does not count, a NULL never being equal (but
# on MySQL and MariaDB: see NULL_KEY_REPEATS).
def messy_rows() -> list[dict[str, Any]]:
    rows = order_rows(10)
    rows[1]["status"] = None
    rows[2]["status"] = "refunded"
    rows[3]["customer"] = None
    rows[4]["amount"] = -5
    rows[5]["amount"] = None
    rows[5]["status"] = None
    rows[6]["customer"] = "c1"
    return rows


GX_PARSER = "condition_parser: great_expectations"
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
    # Found by the differential test: an empty set leaves the NULLs out, as GX does.
    "expect_column_values_to_be_in_set: {column: status, value_set: []}",
    "expect_column_values_to_be_unique: {column: customer}",
    "expect_column_values_to_be_unique: {column: id}",
    "expect_column_values_to_be_unique: {column: customer, mostly: 0.1}",
    "expect_table_row_count_to_be_between: {min_value: 1, max_value: 10}",
    "expect_table_row_count_to_be_between: {min_value: 10, strict_min: true}",
    # No bound at all: vacuously within them, as in GX; an explicit null is no bound.
    "expect_table_row_count_to_be_between: {}",
    "expect_table_row_count_to_be_between: {min_value: null, max_value: 9}",
    "expect_column_values_to_be_between: {column: amount, min_value: null, max_value: 50}",
    "expect_column_value_lengths_to_be_between: {column: status, min_value: 6, max_value: null}",
    "expect_column_min_to_be_between: {column: amount, min_value: null, max_value: 0}",
    "expect_column_sum_to_be_between: {column: id, min_value: null, max_value: null}",
    "expect_table_row_count_to_equal: {value: 10}",
    "expect_table_row_count_to_equal: {value: 11}",
    "expect_column_value_lengths_to_be_between: {column: status, min_value: 5}",
    "expect_column_value_lengths_to_be_between: {column: status, max_value: 4, mostly: 0.8}",
    "expect_column_value_lengths_to_be_between:"
    " {column: status, min_value: 4, max_value: 8, strict_max: true}",
    "expect_column_value_lengths_to_be_between:"
    " {column: status, min_value: 4, strict_min: true, mostly: 0.1}",
    "expect_column_value_lengths_to_be_between: {column: customer, min_value: 2, max_value: 2}",
    "expect_column_min_to_be_between: {column: amount, min_value: 0}",
    "expect_column_min_to_be_between: {column: amount, min_value: -5, max_value: 0}",
    "expect_column_min_to_be_between: {column: amount, min_value: -5, strict_min: true}",
    "expect_column_min_to_be_between: {column: updated_at}",
    "expect_column_max_to_be_between: {column: amount, max_value: 100}",
    "expect_column_max_to_be_between: {column: amount, max_value: 100, strict_max: true}",
    "expect_column_max_to_be_between: {column: id, min_value: 5, max_value: 20}",
    "expect_column_max_to_be_between: {column: status}",
    "expect_column_mean_to_be_between: {column: amount, min_value: 40, max_value: 60}",
    "expect_column_mean_to_be_between: {column: amount, min_value: 48.4}",
    "expect_column_mean_to_be_between: {column: id, min_value: 5.5, strict_min: true}",
    "expect_column_mean_to_be_between: {column: id, max_value: 5.5}",
    "expect_column_sum_to_be_between: {column: amount, min_value: 435, max_value: 435}",
    "expect_column_sum_to_be_between: {column: amount, max_value: 435, strict_max: true}",
    "expect_column_sum_to_be_between: {column: id, min_value: 100}",
    "expect_compound_columns_to_be_unique: {column_list: [customer, status]}",
    "expect_compound_columns_to_be_unique: {column_list: [customer, status], mostly: 0.6}",
    "expect_compound_columns_to_be_unique:"
    " {column_list: [customer, status], ignore_row_if: any_value_is_missing}",
    "expect_compound_columns_to_be_unique: {column_list: [amount, status]}",
    "expect_compound_columns_to_be_unique: {column_list: [amount, status], ignore_row_if: never}",
    "expect_compound_columns_to_be_unique: {column_list: [status, id]}",
    # Compiled on PostgreSQL only; on SQLite both runs go through GX.
    "expect_column_values_to_match_regex: {column: status, regex: '^p'}",
    "expect_column_values_to_match_regex: {column: status, regex: '^p', mostly: 0.5}",
    "expect_column_values_to_match_regex: {column: status, regex: '^(open|paid|refunded)$'}",
    "expect_column_values_to_match_regex: {column: customer, regex: 'c[0-3]'}",
    # GX's row filter: every number is over the rows it keeps.
    "expect_column_values_to_be_in_set:"
    " {column: status, value_set: [paid], row_condition: 'col(\"id\")>5', " + GX_PARSER + "}",
    "expect_column_values_to_be_unique:"
    " {column: customer, row_condition: 'col(\"amount\") >= 0', " + GX_PARSER + "}",
    "expect_compound_columns_to_be_unique:"
    " {column_list: [customer, status], row_condition: 'col(\"id\")>4', " + GX_PARSER + "}",
    "expect_column_mean_to_be_between:"
    ' {column: amount, min_value: 50, row_condition: \'col("status")=="paid"\', ' + GX_PARSER + "}",
    "expect_column_values_to_match_regex:"
    " {column: status, regex: '^p', row_condition: 'col(\"id\")>2', " + GX_PARSER + "}",
    "expect_table_row_count_to_equal:"
    " {value: 8, row_condition: 'col(\"customer\").notnull()', " + GX_PARSER + "}",
    "expect_column_values_to_not_be_null:"
    " {column: status, row_condition: 'col(\"customer\") != ''c1''', " + GX_PARSER + "}",
]
REGEX = "expect_column_values_to_match_regex"
COMPOUND = "expect_compound_columns_to_be_unique"
# Orders 2 and 6 share (c2, NULL): no repeat to dq-agent, on every database, nor to GX but on
# MySQL and MariaDB (GX_COUNTS_NULL_KEYS_ON_MYSQL). The status and unexpected count of each.
NULL_KEY_REPEATS = {
    "expect_compound_columns_to_be_unique: {column_list: [customer, status]}": {
        "dq-agent": ("fail", 4),
        "GX on MySQL": ("fail", 6),
    },
    "expect_compound_columns_to_be_unique: {column_list: [customer, status], mostly: 0.6}": {
        "dq-agent": ("pass", 4),
        "GX on MySQL": ("fail", 6),
    },
}
STATISTICS = [f"expect_column_{stat}_to_be_between" for stat in ("min", "max", "mean", "sum")]
COMPILED_TYPES = {line.split(":")[0] for line in COMPILED}
NEWER = ["expect_column_value_lengths_to_be_between", *STATISTICS, COMPOUND, REGEX]


def _suite(lines: list[str]) -> str:
    return SUITE + "".join(f"  - {line}\n" for line in _named(lines))


def _named(lines: list[str]) -> list[str]:
    # Give each its own name: several share a type and column.
    return [line.replace("{", f"{{name: c{i}, ", 1) for i, line in enumerate(lines)]


def _verdict(check: CheckResult) -> tuple[str, Any]:
    return check.status, check.observed.get("unexpected_count")


def _essence(check: CheckResult, *, findings: bool = True) -> tuple[Any, ...]:
    observed = check.observed
    return (
        check.status,
        observed.get("element_count"),
        observed.get("unexpected_count"),
        round(float(observed.get("unexpected_percent") or 0), 6),
        observed.get("missing_count"),
        round(float(observed.get("missing_percent") or 0), 6),
        observed.get("observed_value"),
        sorted(tuple(sorted(f.key.items())) for f in check.findings) if findings else None,
    )


@pytest.mark.parametrize("rows", ["messy", "empty"])
def test_compiled_expectations_agree_with_great_expectations(
    tmp_path: Path, gx_url: str, rows: str
) -> None:
    load_orders(gx_url, messy_rows() if rows == "messy" else [])
    suite = _suite(COMPILED)
    compiled = run_one(tmp_path / "compiled", gx_url, suite)
    through_gx = run_one(tmp_path / "gx", gx_url, suite, compile_expectations=False)
    assert [(c.name, c.message) for c in through_gx.checks if c.status == "error"] == []
    for line, ours, theirs in zip(COMPILED, compiled.checks, through_gx.checks, strict=True):
        if rows == "messy" and line in NULL_KEY_REPEATS:
            answers = NULL_KEY_REPEATS[line]
            assert _verdict(ours) == answers["dq-agent"], line
            if GX_COUNTS_NULL_KEYS_ON_MYSQL.applies(ours.type, gx_url):
                reason = GX_COUNTS_NULL_KEYS_ON_MYSQL.reason
                assert _verdict(theirs) == answers["GX on MySQL"], (line, reason)
                continue
        # GX lists no records for compound columns on SQL (it skips unexpected_index_list
        # there); dq-agent does (see test_compound_uniqueness_...).
        findings = ours.type != COMPOUND
        assert _essence(ours, findings=findings) == _essence(theirs, findings=findings), (
            ours.name,
            ours.observed,
            theirs.observed,
        )
    # Only GX reports "partial_unexpected_list": the regex compiles on PostgreSQL alone.
    on_postgres = gx_url.startswith("postgresql")
    for check in compiled.checks:
        through = "partial_unexpected_list" in check.observed
        assert through == (check.type == REGEX and not on_postgres), check.name
    if rows == "messy":
        assert {c.status for c in compiled.checks} == {"pass", "fail"}
        # Each newer expectation is seen both holding and not.
        for kind in NEWER:
            assert {c.status for c in compiled.checks if c.type == kind} == {"pass", "fail"}, kind
    else:
        # GX fails a statistic it cannot compute (MIN of nothing is NULL), unlike the others.
        failed = {c.type for c in compiled.checks if c.status == "fail"}
        assert failed == {*STATISTICS, *(k for k in COMPILED_TYPES if "row_count" in k)}
        assert {c.observed["observed_value"] for c in compiled.checks if c.type in STATISTICS} == {
            None
        }


def test_other_expectations_run_through_great_expectations(tmp_path: Path, gx_url: str) -> None:
    load_orders(gx_url, messy_rows())
    suite = (
        SUITE
        + """
  - expect_column_value_lengths_to_equal: {column: customer, value: 2}
  - expect_column_value_lengths_to_equal: {name: long_names, column: status, value: 8}
  - expect_column_distinct_values_to_be_in_set: {column: status, value_set: [open, paid]}
  - expect_column_median_to_be_between: {column: amount, min_value: 40, max_value: 60}
  - expect_column_max_to_be_between: {name: dated, column: updated_at, max_value: 2020-01-01}
  - expect_compound_columns_to_be_unique:
      {name: late_pairs, column_list: [customer, status],
       row_condition: 'col("id")>4 # GX reads up to here', condition_parser: great_expectations}
"""
    )
    result = run_one(tmp_path, gx_url, suite)
    by_name = {c.name: c for c in result.checks}
    assert by_name["expect_column_value_lengths_to_equal(customer)"].status == "pass"
    long_names = by_name["long_names"]
    assert long_names.status == "fail"
    assert long_names.message == "7 of 8 values unexpected (87.50%)"
    # Whole numbers on every database: GX hands MySQL's on as floats (7.0 of 8.0).
    counts = {k: long_names.observed[k] for k in ("unexpected_count", "missing_count")}
    assert json.dumps(counts) == '{"unexpected_count": 7, "missing_count": 2}'
    assert [f.key["id"] for f in long_names.findings] == [1, 4, 5, 7, 8, 9, 10]
    assert {f.observed for f in long_names.findings} == {"open", "paid"}
    distinct = by_name["expect_column_distinct_values_to_be_in_set(status)"]
    assert distinct.status == "fail"
    assert distinct.observed["partial_unexpected_list"] == ["refunded"]
    median = by_name["expect_column_median_to_be_between(amount)"]
    # GX's median is 40 on SQLite, Decimal("40.00") on PostgreSQL and MariaDB.
    assert (median.status, median.message) == ("pass", "observed 40")
    # A date bound is GX's to interpret (it parses the column's values): not compiled.
    assert by_name["dated"].status == "fail"
    # A row filter with more than GX's grammar (GX ignores the rest): GX's to read.
    assert by_name["late_pairs"].status == "fail"
    assert by_name["late_pairs"].observed["unexpected_count"] == 3  # (c1, paid): 5, 7, 9
    assert "partial_unexpected_list" in by_name["late_pairs"].observed


def test_text_lengths_are_counted_in_characters_on_every_database(
    tmp_path: Path, gx_url: str
) -> None:
    statuses = ["paid", "payé", "Zürich"]  # 4, 4 and 6 characters; 4, 5 and 7 bytes in UTF-8
    load_orders(gx_url, [{"id": i, "status": s} for i, s in enumerate(statuses, 1)], TABLE)
    suite = (
        SUITE + "  - expect_column_value_lengths_to_be_between: {column: status, max_value: 4}\n"
    )
    [ours] = run_one(tmp_path / "compiled", gx_url, suite).checks
    [theirs] = run_one(tmp_path / "gx", gx_url, suite, compile_expectations=False).checks
    assert ours.message == "1 of 3 status values unexpected (33.33%)"
    assert [(f.key["id"], f.observed) for f in ours.findings] == [(3, "Zürich")]
    if GX_COUNTS_BYTES_ON_MYSQL.applies(ours.type, gx_url):
        assert _verdict(theirs) == ("fail", 2), GX_COUNTS_BYTES_ON_MYSQL.reason
        assert [f.key["id"] for f in theirs.findings] == [2, 3]
    else:
        assert _essence(theirs) == _essence(ours)


# Characters a URL must quote, and GX's own syntax for configuration variables (${VAR} and
# $VAR), which GX substitutes in a connection string it is given.
PASSWORD = "p@ss:/%${HOME}$USER?#"


def test_great_expectations_reads_mariadb_as_a_user_with_a_password(
    tmp_path: Path, mariadb_url: str
) -> None:
    load_orders(mariadb_url, messy_rows())
    user = f"dq_{uuid.uuid4().hex[:8]}"
    database = sa.make_url(mariadb_url).database
    _execute(mariadb_url, f"CREATE USER '{user}'@'%' IDENTIFIED BY :password", password=PASSWORD)
    url = sa.make_url(mariadb_url).set(username=user, password=PASSWORD)
    suite = SUITE + (
        "  - expect_column_values_to_not_be_null: {column: id}\n"  # compiled
        "  - expect_column_value_lengths_to_equal: {column: status, value: 8}\n"  # through GX
    )
    try:
        _execute(mariadb_url, f"GRANT SELECT ON `{database}`.* TO '{user}'@'%'")
        through = url.render_as_string(hide_password=False)
        checks = run_one(tmp_path / "allowed", through, suite).checks
        assert [(c.status, c.message) for c in checks] == [
            ("pass", "all 10 values as expected"),
            ("fail", "7 of 8 values unexpected (87.50%)"),
        ]
        # One connection at a time: dq-agent's stays open in its pool while GX opens its own,
        # which MariaDB refuses. The error names the cause, and never the password.
        _execute(mariadb_url, f"ALTER USER '{user}'@'%' WITH MAX_USER_CONNECTIONS 1")
        compiled, refused = run_one(tmp_path / "capped", through, suite).checks
    finally:
        _execute(mariadb_url, f"DROP USER '{user}'@'%'")
    assert compiled.status == "pass"
    assert refused.status == "error"
    assert refused.message.startswith("Great Expectations could not run: TestConnectionError: ")
    assert user in refused.message and "max_user_connections" in refused.message
    assert PASSWORD not in refused.message and quote(PASSWORD, safe="") not in refused.message


def test_great_expectations_reads_a_mariadb_url_as_mysql(tmp_path: Path, mariadb_url: str) -> None:
    """GX knows MySQL's SQL by the name mysql alone (through mariadb:// it has no regex)."""
    load_orders(mariadb_url, messy_rows())
    url = sa.make_url(mariadb_url)
    url = url.set(drivername=f"mariadb+{url.get_driver_name()}")
    suite = SUITE + "  - expect_column_values_to_match_regex: {column: status, regex: '^p'}\n"
    [check] = run_one(tmp_path, url.render_as_string(hide_password=False), suite).checks
    assert (check.status, check.message) == ("fail", "4 of 8 values unexpected (50.00%)")
    assert [f.key["id"] for f in check.findings] == [3, 4, 8, 10]


def test_a_crash_inside_great_expectations_is_an_error_not_a_failure(
    tmp_path: Path, sqlite_url: str
) -> None:
    load_orders(sqlite_url, order_rows(3))
    suite = SUITE + "  - expect_column_value_lengths_to_equal: {column: nope, value: 1}\n"
    result = run_one(tmp_path, sqlite_url, suite)
    assert result.checks[0].status == "error"


def test_mixed_suite_uses_one_scan_and_one_gx_validation(tmp_path: Path, sqlite_url: str) -> None:
    load_orders(sqlite_url, order_rows(5))
    suite = (
        SUITE
        + """
  - row_count
  - expect_column_values_to_not_be_null: {column: amount}
  - expect_column_value_lengths_to_equal: {column: customer, value: 2}
  - expect_column_median_to_be_between: {column: amount, max_value: 1000}
"""
    )
    [result] = [run_one(tmp_path, sqlite_url, suite)]
    assert [c.status for c in result.checks] == ["pass"] * 4
    assert run(tmp_path)[0].status == "pass"


def test_uniqueness_comes_from_the_catalog_or_a_probe_never_from_count_distinct(
    tmp_path: Path, gx_url: str
) -> None:
    rows = messy_rows()
    load_orders(gx_url, rows)
    suite = SUITE + (
        "  - expect_column_values_to_be_unique: {column: id}\n"  # the primary key: proven
        "  - expect_column_values_to_be_unique: {column: customer}\n"  # probed
    )
    result, statements = _run_recording(tmp_path, gx_url, suite)
    by_name = {c.name: c for c in result.checks}
    assert by_name["expect_column_values_to_be_unique(id)"].status == "pass"
    assert by_name["expect_column_values_to_be_unique(customer)"].observed["unexpected_count"] > 0
    assert not any("count(distinct" in s.lower() for s in statements)
    assert len(_probes(statements)) == 1  # for customer only: id is the table's primary key


def _run_recording(root: Path, url: str, suite: str) -> tuple[Any, list[str]]:
    """Run ``suite`` and return its result with the statements it sent to the orders table."""
    statements: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    event.listen(sa.engine.Engine, "before_cursor_execute", seen)
    try:
        result = run_one(root, url, suite)
    finally:
        event.remove(sa.engine.Engine, "before_cursor_execute", seen)
    return result, [s for s in statements if "orders" in s and "alembic" not in s]


def _probes(statements: list[str]) -> list[str]:
    return [s for s in statements if "HAVING" in s.upper() and "sum(" in s.lower()]


def test_compound_uniqueness_is_proven_from_the_catalog_or_probed(
    tmp_path: Path, gx_url: str
) -> None:
    load_orders(gx_url, messy_rows())
    _execute(gx_url, "CREATE UNIQUE INDEX orders_amount_at ON orders (amount, updated_at)")
    suite = SUITE + (
        "  - expect_compound_columns_to_be_unique: {column_list: [status, id]}\n"
        "  - expect_compound_columns_to_be_unique: {column_list: [updated_at, status, amount]}\n"
        "  - expect_compound_columns_to_be_unique: {column_list: [customer, status]}\n"
    )
    result, statements = _run_recording(tmp_path, gx_url, suite)
    proven_by_key, proven_by_index, probed = result.checks
    assert (proven_by_key.status, proven_by_index.status) == ("pass", "pass")
    assert not any("count(distinct" in s.lower() for s in statements)
    assert len(_probes(statements)) == 1  # for (customer, status) only
    assert probed.status == "fail"
    assert probed.message == "4 of 10 (customer, status) values unexpected (40.00%)"
    # (c1, paid) four times; (c2, NULL) twice is no repeat, on every database. GX lists no
    # records for compound columns on SQL; dq-agent reports the duplicated ones.
    assert [f.key["id"] for f in probed.findings] == [1, 5, 7, 9]
    assert {f.reason for f in probed.findings} == {"customer, status combination is duplicated"}


def test_a_partial_unique_index_proves_nothing(tmp_path: Path, gx_url: str) -> None:
    if sa.make_url(gx_url).get_backend_name() in ("mysql", "mariadb"):
        pytest.skip("MySQL and MariaDB have no partial indexes (CREATE INDEX ... WHERE)")
    load_orders(gx_url, messy_rows())
    # Unique among refunded orders only: proves nothing about the others.
    _execute(gx_url, "CREATE UNIQUE INDEX orders_refund ON orders (customer) WHERE status = 'x'")
    suite = SUITE + "  - expect_compound_columns_to_be_unique: {column_list: [customer, status]}\n"
    result, statements = _run_recording(tmp_path, gx_url, suite)
    [probed] = result.checks
    assert len(_probes(statements)) == 1
    assert probed.message == "4 of 10 (customer, status) values unexpected (40.00%)"


def _execute(url: str, statement: str, **parameters: Any) -> None:
    db = sa.create_engine(url)
    try:
        with db.begin() as conn:
            conn.execute(sa.text(statement), parameters)
    finally:
        db.dispose()


def _spec(kind: str, **kwargs: Any) -> CheckSpec:
    return CheckSpec(
        type=kind, name="c", severity="fail", owner=None, args=None, expectation_kwargs=kwargs
    )


def test_the_regex_compiles_on_postgresql_only() -> None:
    spec = _spec(REGEX, column="status", regex="^p", mostly=0.5)
    assert can_compile(spec, "postgresql")
    assert not can_compile(spec, "sqlite")
    assert not can_compile(spec)  # a caller that does not say where: GX answers
    assert not can_compile(_spec(REGEX, column="status"), "postgresql")  # GX's default regex


@pytest.mark.parametrize(
    ("kind", "kwargs"),
    [
        # GX parses these itself (dates, strings that read as numbers or dates, "yes")...
        ("expect_column_min_to_be_between", {"column": "a", "min_value": "2024-01-01"}),
        ("expect_column_max_to_be_between", {"column": "a", "max_value": "5"}),
        ("expect_column_sum_to_be_between", {"column": "a", "min_value": 1, "strict_min": "yes"}),
        ("expect_column_mean_to_be_between", {"column": "a", "max_value": True}),
        ("expect_column_value_lengths_to_be_between", {"column": "a", "min_value": 2.0}),
        ("expect_column_values_to_be_between", {"column": "a", "min_value": 0, "strict_min": 1}),
        # ... or rejects them, and says why.
        ("expect_compound_columns_to_be_unique", {"column_list": ["a"]}),
        ("expect_compound_columns_to_be_unique", {"column_list": ["a", "b"], "ignore_row_if": 1}),
        ("expect_column_value_lengths_to_be_between", {"column": "a"}),
        # Not understood here.
        ("expect_column_min_to_be_between", {"column": "a", "min_value": 1, "mostly": 0.5}),
    ],
)
def test_arguments_gx_reads_its_own_way_are_left_to_gx(kind: str, kwargs: dict[str, Any]) -> None:
    assert not can_compile(_spec(kind, **kwargs), "postgresql")


# -- row conditions ---------------------------------------------------------------------------

# Well-formed conditions in GX's grammar, with the spacing and quoting people write.
CONDITIONS = {
    'col("id")>4': RowCondition("id", ">", 4),
    ' col("id") <= -2.5 ': RowCondition("id", "<=", -2.5),
    'col("Amount")>=1e3': RowCondition("Amount", ">=", 1000.0),
    'col("status")=="paid"': RowCondition("status", "==", "paid"),
    "col(\"status\") != 'paid off'": RowCondition("status", "!=", "paid off"),
    'col("when") < date("2024-01-01")': RowCondition("when", "<", "2024-01-01"),
    'col("n")=="5"': RowCondition("n", "==", "5"),
    'col("customer").notnull()': RowCondition("customer"),
    'col("customer") .NotNull()': RowCondition("customer"),
}
# What GX reads differently, or not at all: left to GX.
LEFT_TO_GX = [
    'col("id")>4 and col("id")<9',  # GX ignores everything after the first condition
    "col('id')>4",  # GX wants double quotes around the column
    'col("id") > " 4"',  # GX drops the leading space inside the quotes
    'col("a\\tb")>4',  # GX turns the \\t into a tab
    'col("id").isnull()',
    'col("id") = 4',
    "",
]


@pytest.mark.parametrize(("text", "expected"), CONDITIONS.items())
def test_row_conditions_are_read_as_gx_reads_them(text: str, expected: RowCondition) -> None:
    assert parse_row_condition(text) == expected
    assert parse_row_condition(text) == _as_gx_reads(text)


@pytest.mark.parametrize("text", LEFT_TO_GX)
def test_a_row_condition_read_otherwise_is_left_to_gx(text: str) -> None:
    assert parse_row_condition(text) is None
    kwargs = {"column": "id", "row_condition": text, "condition_parser": "great_expectations"}
    assert not can_compile(_spec("expect_column_values_to_not_be_null", **kwargs))
    # Nor with another parser, or none: GX refuses those on SQL, and says so.
    ok = {"column": "id", "row_condition": 'col("id")>4'}
    assert not can_compile(_spec("expect_column_values_to_not_be_null", **ok))
    pandas = {**ok, "condition_parser": "pandas"}
    assert not can_compile(_spec("expect_column_values_to_not_be_null", **pandas))


_PIECES = st.sampled_from(
    [
        'col("',
        '")',
        "col(",
        '"',
        "'",
        "id",
        "a b",
        "\\t",
        "\\n",
        "\t",
        " ",
        "\n",
        "\f",
        "é",
        "ü",
        ">",
        "<",
        "=",
        "!",
        "==",
        ">=",
        ".notnull()",
        ".NOTNULL()",
        "date(",
        ")",
        "(",
        "-",
        "+",
        "1",
        "0",
        ".",
        "e",
        "5.",
        "x",
        "#",
        "\\\\",
        "and",
    ]
)


@settings(max_examples=600, deadline=None)
@given(st.lists(_PIECES, max_size=12).map("".join))
def test_a_row_condition_read_here_is_what_gx_reads(text: str) -> None:
    """Any text at all: where this module reads a condition, GX's parser reads the same."""
    ours = parse_row_condition(text)
    if ours is not None:
        assert ours == _as_gx_reads(text), text


def _as_gx_reads(text: str) -> RowCondition | None:
    from great_expectations.expectations.expectation import _convert_string_to_condition
    from great_expectations.expectations.row_conditions import NullityCondition

    try:
        condition: Any = _convert_string_to_condition(text)
    except Exception:  # GX's parser raises its own error types
        return None
    if isinstance(condition, NullityCondition):
        return RowCondition(condition.column.name)
    parameter = condition.parameter
    assert type(parameter) in (int, float, str)
    return RowCondition(condition.column.name, str(condition.operator), parameter)


def test_row_condition_on_a_missing_column_names_it(tmp_path: Path, sqlite_url: str) -> None:
    load_orders(sqlite_url, order_rows(3))
    suite = SUITE + (
        "  - expect_column_values_to_not_be_null:\n"
        "      {column: id, row_condition: 'col(\"nope\")>1', condition_parser: great_expectations}\n"
    )
    [check] = run_one(tmp_path, sqlite_url, suite).checks
    assert check.status == "error"
    assert check.message.startswith("column 'nope' not found in orders; available: id, ")


def test_the_failed_checks_records_come_in_one_statement(tmp_path: Path, gx_url: str) -> None:
    load_orders(gx_url, messy_rows())
    suite = _suite(
        [
            "expect_column_values_to_not_be_null: {column: status}",
            "expect_column_values_to_be_between: {column: amount, min_value: 0}",
            "expect_column_values_to_be_in_set: {column: status, value_set: [open, paid]}",
            "expect_column_values_to_not_be_null: {column: id}",  # holds: no records wanted
            "expect_column_values_to_be_unique:"
            " {column: customer, row_condition: 'col(\"id\")<8', " + GX_PARSER + "}",
        ]
    )
    result, statements = _run_recording(tmp_path, gx_url, suite)
    nulls, negative, unknown, ids, repeated = result.checks
    assert [f.key["id"] for f in nulls.findings] == [2, 6]
    assert [(f.key["id"], f.observed) for f in negative.findings] == [(5, -5)]
    assert [(f.key["id"], f.observed) for f in unknown.findings] == [(3, "refunded")]
    assert (ids.status, ids.findings) == ("pass", ())
    # Among orders 1-7 only: c1 on 1, 5 and 7, c2 on 2 and 6 (not 9 and 10: filtered out).
    assert [f.key["id"] for f in repeated.findings] == [1, 2, 5, 6, 7]
    # The scan, the uniqueness probe and one read of records; no statement per failed check.
    reads = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
    assert len(reads) == 3, reads
    assert len([s for s in reads if "LIMIT" in s.upper()]) == 1


def test_the_new_expectations_arguments_are_validated_natively(tmp_path: Path) -> None:
    make_project(
        tmp_path,
        connectors={"warehouse": "type: sql\nurl: sqlite:///w.db\n"},
        suites={
            "a": textwrap.dedent(
                """\
                suite: a
                source: {connector: warehouse, table: t}
                checks:
                  - expect_column_value_lengths_to_be_between: {column: x, min_value: 2.5}
                  - expect_column_value_lengths_to_be_between: {column: x, mostly: 0.5}
                  - expect_column_min_to_be_between: {column: x, min_value: soon}
                  - expect_column_max_to_be_between: {column: x, max_value: 5, mostly: 0.5}
                  - expect_column_mean_to_be_between: {column: x, min_value: 2024-01-01}
                  - expect_column_sum_to_be_between: {column: x, strict_min: maybe}
                  - expect_compound_columns_to_be_unique: {column_list: [a]}
                  - expect_compound_columns_to_be_unique:
                      {column_list: [a, b], ignore_row_if: sometimes}
                """
            )
        },
    )
    found = [
        str(i).removeprefix(f"{tmp_path}/checks/a.yml:") for i in load_project(tmp_path).issues
    ]
    assert found == [
        "4:71: checks[0].expect_column_value_lengths_to_be_between.min_value: "
        "expected a valid integer, got a number with a fractional part",
        "5:48: checks[1].expect_column_value_lengths_to_be_between: "
        "expected min_value, max_value or both",
        "6:61: checks[2].expect_column_min_to_be_between.min_value: "
        "expected a number, a date or a datetime, got 'soon'",
        "7:64: checks[3].expect_column_max_to_be_between.mostly: unknown key; expected one of: "
        "column, condition_parser, description, max_value, meta, min_value, name, notes, owner, "
        "row_condition, severity, strict_max, strict_min",
        "9:62: checks[5].expect_column_sum_to_be_between.strict_min: "
        "expected true or false, got 'maybe'",
        "10:57: checks[6].expect_compound_columns_to_be_unique.column_list: "
        "expected at least 2 items",
        "12:44: checks[7].expect_compound_columns_to_be_unique.ignore_row_if: "
        "expected 'all_values_are_missing', 'any_value_is_missing' or 'never', got 'sometimes'",
    ]


def test_a_suite_of_compiled_expectations_never_imports_great_expectations(
    tmp_path: Path, sqlite_url: str
) -> None:
    load_orders(sqlite_url, messy_rows())
    lines = [line for line in COMPILED if not line.startswith(REGEX)]
    assert {line.split(":")[0] for line in lines} >= set(NEWER) - {REGEX}
    project_for(tmp_path, sqlite_url, {"s": _suite(lines)})
    script = textwrap.dedent(
        f"""\
        import sys
        from dq_agent.config import load_project
        from dq_agent.engine import run_checks
        project = load_project({str(tmp_path)!r}, env={{}})
        assert project.issues == (), project.issues
        [result] = run_checks(project, list(project.suites))
        print(sorted({{c.status for c in result.checks}}))
        print("great_expectations" in sys.modules)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["['fail', 'pass']", "False"]


def test_dq_agent_check_loads_only_what_checking_needs(tmp_path: Path, sqlite_url: str) -> None:
    """Start-up time is import time: `dq-agent check` leaves Slack, the LLM, the scheduler,
    corrections and the emulators unloaded."""
    load_orders(sqlite_url, messy_rows())
    project_for(tmp_path, sqlite_url, {"s": _suite(COMPILED[:3])})
    heavy = [
        "great_expectations",
        "slack_sdk",
        "anthropic",
        "apscheduler",
        "simple_salesforce",
        "gspread",
        "dq_agent.escalate.notify",
        "dq_agent.remedy",
        "dq_agent.daemon.service",
        "dq_agent_sandbox.runner",
    ]
    script = textwrap.dedent(
        f"""\
        import sys
        from dq_agent.cli import main
        try:
            main(["check", "--project", {str(tmp_path)!r}])
        except SystemExit as exit:
            print("exit", exit.code, file=sys.stderr)
        print([name for name in {heavy!r} if name in sys.modules])
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.stderr.splitlines()[-1] == "exit 2", done.stderr  # a check failed: it ran
    assert done.stdout.splitlines()[-1] == "[]"


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


@pytest.mark.parametrize(
    "line",
    [
        "expect_column_values_to_be_between: {column: amount, min_value: 10, max_value: 0}",
        "expect_table_row_count_to_be_between: {min_value: 5, max_value: 1}",
    ],
)
def test_bounds_the_wrong_way_round_are_a_configuration_error(tmp_path: Path, line: str) -> None:
    from dq_agent.config import load_project
    from tests.sources import project_for

    root = project_for(tmp_path, f"sqlite:///{tmp_path / 'w.db'}", {"s": SUITE + f"  - {line}\n"})
    [issue] = load_project(root, env={}).issues
    assert issue.message.startswith("min_value ") and "is greater than max_value" in issue.message


def test_values_in_order_need_a_key_to_order_the_rows(tmp_path: Path, sqlite_url: str) -> None:
    load_orders(sqlite_url, messy_rows())
    suite = """
suite: orders
source: {connector: warehouse, query: "SELECT amount FROM orders"}
checks:
  - expect_column_values_to_be_increasing: {column: amount}
"""
    [check] = run_one(tmp_path, sqlite_url, suite).checks
    assert check.status == "error"
    assert check.message == (
        "needs the suite's key (or a primary key) to put the rows in order: "
        "a table has no order of its own"
    )
    assert not can_compile(_spec(INCREASING, column="a", strictly="yes"), "sqlite")


INCREASING = "expect_column_values_to_be_increasing"


def test_values_in_order_are_read_in_key_order(tmp_path: Path, gx_url: str) -> None:
    load_orders(gx_url, messy_rows())
    suite = SUITE + (
        "  - expect_column_values_to_be_increasing: {column: amount}\n"
        "  - expect_column_values_to_be_increasing: {column: customer, strictly: true}\n"
    )
    amounts, customers = run_one(tmp_path, gx_url, suite).checks
    # 10, 20, 30, 40, -5 (after 40), NULL, 70, 80, 90, 100.
    assert amounts.message == "1 of 9 amount values unexpected (11.11%)"
    assert [(f.key["id"], f.observed) for f in amounts.findings] == [(5, -5)]
    # c1, c2, c3, c1 (5), c2, c1 (7), c0 (8), c1, c2: strings compare as the database orders.
    assert [f.key["id"] for f in customers.findings] == [5, 7, 8]
