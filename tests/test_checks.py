"""Each check type passes on good data and fails on bad data, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import sqlalchemy as sa

from dq_agent.config import load_project
from dq_agent.engine import RunOptions, run_checks
from dq_agent.results import CheckResult, SuiteResult
from dq_agent.store import Store
from tests.sources import NOW, ORDERS, load_orders, order_rows, project_for, run, run_one


def check(result: SuiteResult, name: str) -> CheckResult:
    [found] = [c for c in result.checks if c.name == name]
    return found


SUITE = """
suite: orders
source: {connector: warehouse, table: orders}
key: [id]
checks:
"""


def test_row_count_passes_on_rows_and_fails_on_an_empty_table(
    tmp_path: Path, engine_url: str
) -> None:
    load_orders(engine_url, order_rows(3))
    suite = SUITE + "  - row_count: {min: 1, max: 5}\n"
    result = run_one(tmp_path, engine_url, suite)
    assert (result.status, result.checks[0].message) == ("pass", "3 rows")
    assert result.checks[0].observed == {"row_count": 3, "min": 1, "max": 5}

    load_orders(engine_url, [])
    result = run_one(tmp_path, engine_url, suite)
    assert (result.status, result.checks[0].message) == ("fail", "the source is empty")

    load_orders(engine_url, order_rows(6))
    result = run_one(tmp_path, engine_url, suite)
    assert (result.status, result.checks[0].message) == ("fail", "6 rows, expected at most 5")


def test_freshness_passes_when_recent_and_fails_when_stale(tmp_path: Path, engine_url: str) -> None:
    load_orders(engine_url, order_rows(5, newest=NOW - timedelta(hours=2)))
    suite = SUITE + "  - freshness: {column: updated_at, max_age: 26h}\n"
    fresh = run_one(tmp_path, engine_url, suite)
    assert fresh.status == "pass"
    assert fresh.checks[0].message == "newest updated_at is 2h old (max 26h)"
    assert fresh.checks[0].metrics == {"age_s": 7200.0}

    stale = run_one(tmp_path, engine_url, suite, now=NOW + timedelta(days=2))
    assert stale.status == "fail"
    assert stale.checks[0].message == "stale: newest updated_at is 50h old, over the 26h limit"
    assert stale.checks[0].observed["newest"] == "2026-11-24T10:00:00+00:00"


def test_freshness_says_when_the_newest_row_is_in_the_future(
    tmp_path: Path, sqlite_url: str
) -> None:
    # A clock ahead of ours, or a timezone mistaken: fresh, and said as it is.
    load_orders(sqlite_url, order_rows(2, newest=NOW + timedelta(minutes=5)))
    suite = SUITE + "  - freshness: {column: updated_at, max_age: 26h}\n"
    result = run_one(tmp_path, sqlite_url, suite)
    assert (result.status, result.checks[0].message) == (
        "pass",
        "newest updated_at is in the future (max age 26h)",
    )


def test_freshness_on_an_empty_table_fails(tmp_path: Path, engine_url: str) -> None:
    load_orders(engine_url, [])
    result = run_one(
        tmp_path, engine_url, SUITE + "  - freshness: {column: updated_at, max_age: 1h}\n"
    )
    assert (result.status, result.checks[0].message) == ("fail", "no timestamps in updated_at")


def test_freshness_reads_naive_timestamps_in_the_given_timezone(
    tmp_path: Path, engine_url: str
) -> None:
    # Stored as 07:00 wall-clock time in New York = 12:00 UTC = NOW.
    load_orders(engine_url, order_rows(1, newest=NOW.replace(hour=7)))
    suite = SUITE + "  - freshness: {column: updated_at, max_age: 1h, timezone: America/New_York}\n"
    result = run_one(tmp_path, engine_url, suite)
    assert result.checks[0].observed["newest"] == "2026-11-24T12:00:00+00:00"
    assert result.status == "pass"


def test_freshness_on_a_timezone_aware_column(tmp_path: Path, postgres_url: str) -> None:
    table = sa.Table(
        "events",
        sa.MetaData(),
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("at", sa.DateTime(timezone=True)),
    )
    load_orders(postgres_url, [{"id": 1, "at": NOW - timedelta(minutes=30)}], table)
    suite = """
    suite: events
    source: {connector: warehouse, table: events}
    checks:
      - freshness: {column: at, max_age: 1h, timezone: Asia/Tokyo}
    """
    result = run_one(tmp_path, postgres_url, suite)
    assert result.checks[0].observed["newest"] == "2026-11-24T11:30:00+00:00"
    assert result.status == "pass"


def test_as_of_ignores_rows_after_it(tmp_path: Path, engine_url: str) -> None:
    load_orders(engine_url, order_rows(10, newest=NOW - timedelta(hours=1)))
    suite = SUITE + "  - freshness: {column: updated_at, max_age: 2h}\n"
    # Rows were written hourly from 02:00 to 11:00; as of 06:30 the newest is 06:00.
    result = run_one(tmp_path, engine_url, suite, as_of=NOW.replace(hour=6, minute=30))
    assert result.checks[0].observed["newest"] == "2026-11-24T06:00:00+00:00"
    assert result.checks[0].message == "newest updated_at is 30m old (max 2h)"
    before_any = run_one(tmp_path, engine_url, suite, as_of=NOW.replace(hour=1))
    assert before_any.checks[0].message == "no timestamps in updated_at up to --as-of"


def test_schema_required_columns_and_types(tmp_path: Path, engine_url: str) -> None:
    load_orders(engine_url, order_rows(2))
    ok = run_one(
        tmp_path,
        engine_url,
        SUITE + "  - schema: {columns: {id: integer, amount: number, updated_at: timestamp}}\n",
    )
    assert ok.status == "pass"
    assert ok.checks[0].observed["columns"] == {
        "id": "integer",
        "customer": "string",
        "amount": "number",
        "status": "string",
        "updated_at": "timestamp",
    }
    bad = run_one(
        tmp_path,
        engine_url,
        SUITE + "  - schema: {columns: {id: string, region: any}, drift: false}\n",
    )
    assert bad.status == "fail"
    assert bad.checks[0].message == "missing region; id is integer, expected string"


def test_schema_drift_against_the_last_run(tmp_path: Path, engine_url: str) -> None:
    load_orders(engine_url, order_rows(2))
    suite = SUITE + "  - schema: {columns: [id]}\n"
    first = run_one(tmp_path, engine_url, suite)
    assert first.checks[0].message == "5 columns as expected (first run: baseline saved)"
    assert run_one(tmp_path, engine_url, suite).checks[0].message == "5 columns as expected"

    engine = sa.create_engine(engine_url)
    with engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE orders ADD COLUMN region VARCHAR(8)"))
    engine.dispose()
    drifted = run_one(tmp_path, engine_url, suite)
    assert drifted.status == "fail"
    assert drifted.checks[0].message == "added since the last run: region"
    assert drifted.checks[0].observed["drift"] == {
        "added": ["region"],
        "removed": [],
        "retyped": [],
    }
    # The new shape becomes the baseline: the next run passes again.
    assert run_one(tmp_path, engine_url, suite).status == "pass"


def test_severity_warn_makes_a_failure_a_warning(tmp_path: Path, engine_url: str) -> None:
    load_orders(engine_url, [])
    result = run_one(tmp_path, engine_url, SUITE + "  - row_count: {severity: warn}\n")
    assert (result.status, result.checks[0].status, result.checks[0].severity) == (
        "warn",
        "warn",
        "warn",
    )


def test_row_level_failures_carry_up_to_max_findings_keys(tmp_path: Path, engine_url: str) -> None:
    rows = order_rows(10)
    for row in rows[2:7]:
        row["status"] = None
    load_orders(engine_url, rows)
    suite = SUITE.replace("key: [id]", "key: [id]\nmax_findings: 3") + (
        "  - expect_column_values_to_not_be_null: {column: status}\n"
    )
    result = run_one(tmp_path, engine_url, suite)
    [check_result] = result.checks
    assert check_result.message == "5 of 10 status values null (50.00%)"
    assert [f.key for f in check_result.findings] == [{"id": 3}, {"id": 4}, {"id": 5}]
    assert {(f.column, f.observed, f.action) for f in check_result.findings} == {
        ("status", None, "report")
    }


def test_a_missing_column_is_an_error_for_that_check_only(tmp_path: Path, engine_url: str) -> None:
    load_orders(engine_url, order_rows(2))
    result = run_one(
        tmp_path,
        engine_url,
        SUITE + "  - row_count\n  - freshness: {column: modified, max_age: 1h}\n",
    )
    assert [c.status for c in result.checks] == ["pass", "error"]
    assert result.checks[1].message == (
        "column 'modified' not found in orders; available: id, customer, amount, status, updated_at"
    )
    assert result.status == "error"


def test_a_query_source(tmp_path: Path, engine_url: str) -> None:
    load_orders(engine_url, order_rows(10))
    suite = """
    suite: paid
    source:
      connector: warehouse
      query: SELECT id, amount FROM orders WHERE status = 'paid'
    key: [id]
    checks:
      - row_count: {min: 5, max: 5}
      - expect_column_values_to_be_between: {column: amount, min_value: 0, max_value: 50}
    """
    result = run_one(tmp_path, engine_url, suite)
    assert result.checks[0].status == "pass"
    between = result.checks[1]
    assert between.message == "2 of 5 amount values unexpected (40.00%)"
    assert [f.key for f in between.findings] == [{"id": 7}, {"id": 9}]


def test_key_columns_must_exist(tmp_path: Path, engine_url: str) -> None:
    load_orders(engine_url, order_rows(1))
    result = run_one(tmp_path, engine_url, SUITE.replace("[id]", "[order_id]") + "  - row_count\n")
    assert result.status == "error"
    assert result.error == (
        "key column(s) order_id not in orders; available: id, customer, amount, status, updated_at"
    )


def test_an_unreachable_source_errors_that_suite_and_the_others_run(
    tmp_path: Path, sqlite_url: str
) -> None:
    load_orders(sqlite_url, order_rows(2))
    project_for(tmp_path, sqlite_url, {"a_good": SUITE + "  - row_count\n"})
    (tmp_path / "connectors" / "down.yml").write_text(
        "type: sql\nurl: postgresql+psycopg://nobody:secret@127.0.0.1:1/x\nconnect_timeout: 2\n"
    )
    (tmp_path / "checks" / "b_down.yml").write_text(
        "suite: down\nsource: {connector: down, table: t}\nchecks: [row_count]\n"
    )
    good, down = run(tmp_path)
    assert good.status == "pass"
    assert down.status == "error"
    assert down.error is not None
    assert down.error.startswith("cannot reach postgresql+psycopg://nobody:***@127.0.0.1:1/x: ")
    assert "secret" not in down.error


def test_a_missing_table_is_a_clear_error(tmp_path: Path, engine_url: str) -> None:
    load_orders(engine_url, [])
    result = run_one(
        tmp_path, engine_url, SUITE.replace("table: orders", "table: ordrs") + "  - row_count\n"
    )
    assert result.status == "error"
    assert result.error is not None
    assert result.error.startswith("table ordrs not found in ")


def test_a_missing_sqlite_file_is_not_created(tmp_path: Path) -> None:
    missing = tmp_path / "nope.db"
    result = run_one(tmp_path, f"sqlite:///{missing}", SUITE + "  - row_count\n")
    assert result.error == f"SQLite database file not found: {missing}"
    assert not missing.exists()


def test_results_and_metrics_are_recorded_in_the_store(tmp_path: Path, engine_url: str) -> None:
    from dq_agent.store import Store

    load_orders(engine_url, order_rows(4))
    suite = SUITE + "  - row_count\n  - freshness: {column: updated_at, max_age: 1d}\n"
    run_one(tmp_path, engine_url, suite)
    load_orders(engine_url, order_rows(7))
    run_one(tmp_path, engine_url, suite, now=NOW + timedelta(hours=1))
    with Store.open(f"sqlite:///{tmp_path}/state.db") as store:
        history = store.metric_history("orders", "row_count", "row_count")
        assert history == [(NOW, 4.0), (NOW + timedelta(hours=1), 7.0)]
        assert [r["status"] for r in store.recent_runs()] == ["pass", "pass"]


def test_one_aggregate_statement_reads_the_table_for_all_compiled_checks(
    tmp_path: Path, engine_url: str
) -> None:
    load_orders(engine_url, order_rows(20))
    suite = (
        SUITE
        + """
  - row_count
  - freshness: {column: updated_at, max_age: 1d}
  - expect_column_values_to_not_be_null: {column: amount}
  - expect_column_values_to_not_be_null: {column: status}
  - expect_column_values_to_be_between: {column: amount, min_value: 0, strict_min: true}
  - expect_column_values_to_be_in_set: {column: status, value_set: [open, paid]}
  - expect_column_values_to_be_unique: {column: id}
  - expect_table_row_count_to_be_between: {min_value: 1}
"""
    )
    project_for(tmp_path, engine_url, {"s": suite})
    statements: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        statements.append(statement)

    sa.event.listen(sa.Engine, "before_cursor_execute", record)
    try:
        [result] = run(tmp_path)
    finally:
        sa.event.remove(sa.Engine, "before_cursor_execute", record)
    assert result.status == "pass", [c.message for c in result.checks]
    reads = [s for s in statements if "FROM orders" in s and "sqlite_master" not in s]
    assert len(reads) == 1, reads
    assert ORDERS.name in reads[0]


def test_a_run_says_what_it_is_doing_step_by_step(tmp_path: Path, sqlite_url: str) -> None:
    # For the progress line of a long suite: the shared scan, each check judged after it, and
    # the expectations Great Expectations runs.
    load_orders(sqlite_url, order_rows(5))
    suite = (
        SUITE
        + "  - row_count: {min: 1}\n"
        + "  - freshness: {column: updated_at, max_age: 26h}\n"
        # Compiled on PostgreSQL only: on SQLite, Great Expectations runs it.
        + "  - expect_column_values_to_match_regex: {column: status, regex: '^[a-z]+$'}\n"
    )
    project_for(tmp_path, sqlite_url, {"s": suite})
    project = load_project(tmp_path, env={})
    steps: list[str] = []
    with Store.open(project.state_url) as store:
        run_checks(project, ["orders"], store=store, options=RunOptions(step=steps.append))
    assert steps == [
        "one scan for 2 checks",
        "row_count",
        "freshness(updated_at)",
        "1 expectation through Great Expectations",
    ]
