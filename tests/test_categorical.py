"""``accepted_values``, ``new_values`` and ``reference``, end to end on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import event

from dq_agent.config import load_project
from dq_agent.engine import RunOptions, backtest_suite
from dq_agent.results import CheckResult, Finding
from tests.helpers import make_project
from tests.sources import NOW, load_orders, project_for, run, run_one

PAYMENTS = sa.Table(
    "payments",
    sa.MetaData(),
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("account_id", sa.String(10)),
    sa.Column("currency", sa.String(3)),
    sa.Column("created_at", sa.DateTime),
)

ACCOUNTS = sa.Table(
    "accounts",
    sa.MetaData(),
    sa.Column("id", sa.String(10), primary_key=True),
    sa.Column("name", sa.String(40)),
)

Group = tuple[int, dict[str, Any]]


def payments(*groups: Group) -> list[dict[str, Any]]:
    """``count`` payments per group with the group's fields (else: USD, from A-1, at NOW)."""
    usual = {"account_id": "A-1", "currency": "USD", "created_at": NOW.replace(tzinfo=None)}
    rows = [{**usual, **fields} for count, fields in groups for _ in range(count)]
    return [{"id": i, **row} for i, row in enumerate(rows, 1)]


def load_payments(url: str, rows: list[dict[str, Any]]) -> None:
    load_orders(url, rows, PAYMENTS)


def on(day: date, count: int, currency: str, hour: int = 9) -> Group:
    """``count`` payments in ``currency`` on ``day`` (naive wall-clock time)."""
    return count, {"currency": currency, "created_at": datetime.combine(day, time(hour))}


def every_day(first: date, last: date, **counts: int) -> list[Group]:
    """``counts`` payments per currency on every day from ``first`` to ``last``."""
    days = [first + timedelta(days=i) for i in range((last - first).days + 1)]
    return [on(day, n, currency) for day in days for currency, n in counts.items()]


def suite(*checks: str, timezone: str = "UTC") -> str:
    lines = "".join(f"  - {check}\n" for check in checks)
    return (
        f"suite: payments\ntimezone: {timezone}\n"
        "source: {connector: warehouse, table: payments}\nkey: [id]\nchecks:\n" + lines
    )


def only_check(root: Path, url: str, suite_yaml: str, **kwargs: Any) -> CheckResult:
    [result] = run_one(root, url, suite_yaml, **kwargs).checks
    return result


def recording(root: Path) -> tuple[list[CheckResult], list[str]]:
    """Run the project at ``root``: its checks and every statement it sent."""
    statements: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    event.listen(sa.engine.Engine, "before_cursor_execute", seen)
    try:
        [result] = run(root)
    finally:
        event.remove(sa.engine.Engine, "before_cursor_execute", seen)
    return list(result.checks), statements


# --- accepted_values -------------------------------------------------------------------------

CURRENCIES = "accepted_values: {column: currency, values: [USD, EUR]}"


def test_accepted_values_pass_and_nulls_are_never_violations(
    tmp_path: Path, engine_url: str
) -> None:
    load_payments(
        engine_url, payments((700, {}), (300, {"currency": "EUR"}), (50, {"currency": None}))
    )
    result = only_check(tmp_path, engine_url, suite(CURRENCIES))
    assert (result.status, result.message) == ("pass", "all 1,000 currency values accepted")
    assert result.observed == {"unexpected_values": {}, "unexpected_rows": 0, "rows": 1000}
    assert result.metrics == {"unexpected_rows": 0}
    assert result.findings == ()


def test_accepted_values_fail_lists_the_unexpected_values(tmp_path: Path, engine_url: str) -> None:
    load_payments(
        engine_url, payments((880, {}), (120, {"currency": "JPY"}), (9, {"currency": None}))
    )
    result = only_check(tmp_path, engine_url, suite(CURRENCIES))
    assert (result.status, result.message) == (
        "fail",
        "120 of 1,000 currency values are not accepted: JPY (120)",
    )
    assert result.observed == {
        "unexpected_values": {"JPY": 120},
        "unexpected_rows": 120,
        "rows": 1000,
    }
    assert result.metrics == {"unexpected_rows": 120}
    assert result.findings == (
        Finding(
            key={"value": "JPY"},
            column="currency",
            observed="JPY",
            reason="not an accepted value (120 rows)",
        ),
    )


def test_accepted_values_lists_max_findings_values_most_rows_first(
    tmp_path: Path, engine_url: str
) -> None:
    rows = payments(
        (10, {}), (1, {"currency": "CHF"}), (3, {"currency": "GBP"}), (5, {"currency": "JPY"})
    )
    load_payments(engine_url, rows)
    yaml = suite("accepted_values: {column: currency, values: [USD], severity: warn}")
    result = only_check(
        tmp_path, engine_url, yaml.replace("key: [id]", "key: [id]\nmax_findings: 2")
    )
    assert (result.status, result.message) == (
        "warn",
        "9 of 19 currency values are not accepted: JPY (5), GBP (3) and 1 more",
    )
    assert [(f.key, f.reason) for f in result.findings] == [
        ({"value": "JPY"}, "not an accepted value (5 rows)"),
        ({"value": "GBP"}, "not an accepted value (3 rows)"),
    ]
    assert all(f.action == "report" and f.proposed is None for f in result.findings)


def test_accepted_values_takes_part_in_the_one_scan(tmp_path: Path, engine_url: str) -> None:
    load_payments(engine_url, payments((880, {}), (120, {"currency": "JPY"})))
    checks = (
        "row_count: {min: 1}",
        CURRENCIES,
        "accepted_values: {column: account_id, values: [A-1], name: accounts}",
        "expect_column_values_to_not_be_null: {column: currency}",
    )
    project_for(tmp_path, engine_url, {"s": suite(*checks)})
    results, statements = recording(tmp_path)
    assert [r.status for r in results] == ["pass", "fail", "pass", "pass"]
    queries = [s for s in statements if s.lstrip().upper().startswith("SELECT") and "payments" in s]
    scans = [s for s in queries if "GROUP BY" not in s.upper() and "count(" in s.lower()]
    assert len(scans) == 1
    # The failed check reads its values in one bounded statement of its own.
    [listing] = [s for s in queries if "GROUP BY" in s.upper()]
    assert "LIMIT" in listing.upper()


# --- new_values ------------------------------------------------------------------------------

NEW_CURRENCIES = "new_values: {column: currency, timestamp_column: created_at}"
FIRST = date(2026, 10, 26)  # 28 days before Monday 2026-11-23, the last complete day at NOW


def nov(day: int) -> date:
    return date(2026, 11, day)


def four_weeks_then(*groups: Group) -> list[dict[str, Any]]:
    """USD and EUR every day from FIRST to the 23rd, then ``groups``."""
    return payments(*every_day(FIRST, nov(23), USD=10, EUR=5), *groups)


def test_new_values_reports_a_currency_the_baseline_never_had(
    tmp_path: Path, engine_url: str
) -> None:
    # JPY once 35 days ago, before the training window; GBP today, in a bucket not yet complete.
    load_payments(
        engine_url,
        four_weeks_then(
            on(nov(23), 120, "JPY"), on(date(2026, 10, 20), 1, "JPY"), on(nov(24), 1, "GBP", 6)
        ),
    )
    result = only_check(tmp_path, engine_url, suite(NEW_CURRENCIES))
    assert (result.status, result.message) == (
        "fail",
        "2026-11-23: 1 new currency value never seen in the 28 days before: JPY (120 rows)",
    )
    assert result.observed == {
        "bucket": "2026-11-23T00:00:00+00:00",
        "new_values": {"JPY": 120},
        "new_value_rows": 120,
    }
    assert result.metrics == {"new_values": 1, "new_value_rows": 120}
    assert [(f.key, f.column, f.observed, f.reason) for f in result.findings] == [
        ({"value": "JPY"}, "currency", "JPY", "never seen in the 28 days before (120 rows)")
    ]
    ignored = "new_values: {column: currency, timestamp_column: created_at, ignore: [JPY]}"
    assert only_check(tmp_path, engine_url, suite(ignored)).message == (
        "2026-11-23: every currency value was seen in the 28 days before"
    )


def test_new_values_reads_naive_timestamps_in_the_suites_timezone(
    tmp_path: Path, engine_url: str
) -> None:
    load_payments(engine_url, four_weeks_then(on(nov(23), 120, "JPY"), on(nov(24), 1, "GBP", 6)))
    # At NOW it is 01:00 on the 25th in Auckland: the 24th is complete, and JPY is history.
    result = only_check(tmp_path, engine_url, suite(NEW_CURRENCIES, timezone="Pacific/Auckland"))
    assert result.message == (
        "2026-11-24: 1 new currency value never seen in the 28 days before: GBP (1 row)"
    )
    assert result.observed["bucket"] == "2026-11-24T00:00:00+13:00"


def test_new_values_without_history_passes(tmp_path: Path, engine_url: str) -> None:
    load_payments(engine_url, payments(on(nov(23), 10, "USD"), on(nov(23), 2, "JPY")))
    result = only_check(tmp_path, engine_url, suite(NEW_CURRENCIES))
    assert (result.status, result.message) == (
        "pass",
        "2026-11-23: no history yet: no currency values in the 28 days before",
    )


def test_new_values_as_of_judges_an_earlier_day(tmp_path: Path, engine_url: str) -> None:
    load_payments(engine_url, four_weeks_then(on(nov(23), 120, "JPY", hour=2)))
    # As of 10:00 on the 23rd the last complete day is the 22nd: JPY had not arrived yet.
    as_of = datetime(2026, 11, 23, 10, tzinfo=UTC)
    result = only_check(tmp_path, engine_url, suite(NEW_CURRENCIES), as_of=as_of)
    assert (result.status, result.message) == (
        "pass",
        "2026-11-22: every currency value was seen in the 28 days before",
    )


def test_new_values_backtest_flags_only_the_day_a_value_first_came(
    tmp_path: Path, engine_url: str
) -> None:
    # JPY first on the 20th, again on the 23rd: by then it is no longer new.
    load_payments(engine_url, four_weeks_then(on(nov(20), 7, "JPY"), on(nov(23), 3, "JPY")))
    project_for(tmp_path, engine_url, {"s": suite(NEW_CURRENCIES)})
    project = load_project(tmp_path, env={})
    [(spec, verdicts)] = backtest_suite(
        project,
        "payments",
        checks=[],
        start=datetime(2026, 11, 16, tzinfo=UTC),
        end=datetime(2026, 11, 26, tzinfo=UTC),
        store=None,
        options=RunOptions(clock=lambda: NOW),
    )
    assert spec.name == "new_values(currency)"
    # Up to the last day complete at NOW: the 24th had not ended.
    assert [v.bucket for v in verdicts] == [
        datetime(2026, 11, d, tzinfo=UTC) for d in range(16, 24)
    ]
    assert [
        (v.bucket.day, v.status, v.message, v.rows) for v in verdicts if v.status != "pass"
    ] == [
        (
            20,
            "fail",
            "2026-11-20: 1 new currency value never seen in the 28 days before: JPY (7 rows)",
            7,
        )
    ]
    assert verdicts[-1].message == "2026-11-23: every currency value was seen in the 28 days before"


def test_new_values_with_a_missing_timestamp_column_is_an_error(
    tmp_path: Path, engine_url: str
) -> None:
    load_payments(engine_url, payments((1, {})))
    result = only_check(
        tmp_path,
        engine_url,
        suite("new_values: {column: currency, timestamp_column: paid_at}"),
    )
    assert (result.status, result.message) == (
        "error",
        "column 'paid_at' not found in payments; available: id, account_id, currency, created_at",
    )


# --- reference -------------------------------------------------------------------------------

ORPHANS = (
    (963, {"account_id": "A-3"}),
    (20, {"account_id": "A-17"}),
    (17, {"account_id": "A-99"}),
    (30, {"account_id": None}),
)
ORPHAN_MESSAGE = "37 of 1,000 account_id values have no match in accounts.id: A-17 (20), A-99 (17)"


def load_accounts(url: str) -> None:
    load_orders(url, [{"id": f"A-{i}", "name": f"account {i}"} for i in range(1, 11)], ACCOUNTS)


def test_reference_finds_orphans_in_the_same_database(tmp_path: Path, engine_url: str) -> None:
    load_payments(engine_url, payments(*ORPHANS))
    load_accounts(engine_url)
    checks = (
        "reference: {column: account_id, to: {table: accounts, column: id}}",
        # Naming the suite's own connector is the same database: still one query there.
        "reference: {column: account_id, to: {connector: warehouse, table: accounts, column: id}, name: again}",
    )
    project_for(tmp_path, engine_url, {"s": suite(*checks)})
    (result, again), statements = recording(tmp_path)
    assert (result.status, result.message) == ("fail", ORPHAN_MESSAGE)
    assert (again.status, again.message) == ("fail", ORPHAN_MESSAGE)
    assert result.observed == {
        "orphan_values": {"A-17": 20, "A-99": 17},
        "orphan_rows": 37,
        "rows": 1000,
    }
    assert result.metrics == {"orphan_rows": 37}
    assert [(f.key, f.reason) for f in result.findings] == [
        ({"value": "A-17"}, "no match in accounts.id (20 rows)"),
        ({"value": "A-99"}, "no match in accounts.id (17 rows)"),
    ]
    assert not any("TEMPORARY" in s.upper() for s in statements)
    assert sum("NOT (EXISTS" in s.upper() for s in statements) == 2


def test_reference_passes_when_every_value_has_a_match(tmp_path: Path, engine_url: str) -> None:
    load_payments(engine_url, payments((5, {"account_id": "A-2"}), (2, {"account_id": None})))
    load_accounts(engine_url)
    result = only_check(
        tmp_path,
        engine_url,
        suite("reference: {column: account_id, to: {table: accounts, column: id}}"),
    )
    assert (result.status, result.message) == (
        "pass",
        "all 5 account_id values have a match in accounts.id",
    )


def crm_project(root: Path, url: str, check: str) -> Path:
    """The warehouse at ``url`` and a ``crm`` connector: a SQLite file holding the accounts."""
    crm_url = f"sqlite:///{root / 'crm.sqlite'}"
    load_accounts(crm_url)
    return make_project(
        root,
        connectors={
            "warehouse": f"type: sql\nurl: '{url}'\n",
            "crm": f"type: sql\nurl: '{crm_url}'\n",
        },
        suites={"s": suite(check)},
        settings=f"state_url: 'sqlite:///{root}/state.db'\n",
    )


def test_reference_to_another_connector_streams_its_values(
    tmp_path: Path, engine_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("dq_agent.checks.reference.CHUNK", 3)  # ten accounts: four chunks
    load_payments(engine_url, payments(*ORPHANS))
    crm_project(
        tmp_path,
        engine_url,
        "reference: {column: account_id, to: {connector: crm, table: accounts, column: id}}",
    )
    [result], statements = recording(tmp_path)
    assert (result.status, result.message) == ("fail", ORPHAN_MESSAGE)
    assert result.observed["orphan_rows"] == 37
    # The accounts are copied, three at a time, into a temporary table that is dropped again.
    [created] = [s for s in statements if "CREATE TEMPORARY TABLE" in s.upper()]
    copy = created.split()[3]
    assert sum(s.startswith(f"INSERT INTO {copy}") for s in statements) == 4
    assert any(s.strip() == f"DROP TABLE IF EXISTS {copy}" for s in statements)
    # The warehouse has no accounts table of its own: they came from the crm.
    engine = sa.create_engine(engine_url)
    try:
        assert "accounts" not in sa.inspect(engine).get_table_names()
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    ("to", "message"),
    [
        (
            "{table: accounts, column: ident}",
            "column 'ident' not found in accounts; available: id, name",
        ),
        ("{table: acounts, column: id}", "table 'acounts' not found"),
        (
            "{connector: crm, table: acounts, column: id}",
            "table 'acounts' not found on connector 'crm'",
        ),
        (
            "{connector: crm, table: accounts, column: ident}",
            "column 'ident' not found in accounts on connector 'crm'; available: id, name",
        ),
    ],
)
def test_reference_to_a_missing_table_or_column_is_an_error(
    tmp_path: Path, engine_url: str, to: str, message: str
) -> None:
    load_payments(engine_url, payments(*ORPHANS))
    load_accounts(engine_url)
    crm_project(tmp_path, engine_url, f"reference: {{column: account_id, to: {to}}}")
    [suite_result] = run(tmp_path)
    [result] = suite_result.checks
    assert (result.status, result.message) == ("error", message)


def test_reference_to_an_unknown_connector_is_a_config_issue(
    tmp_path: Path, sqlite_url: str
) -> None:
    check = "reference: {column: account_id, to: {connector: crn, table: accounts, column: id}}"
    crm_project(tmp_path, sqlite_url, check)
    make_project(tmp_path, connectors={"hook": "type: webhook\nurl: 'http://localhost/x'\n"})
    make_project(
        tmp_path,
        suites={"t": suite(check.replace("crn", "hook")).replace("suite: payments", "suite: t")},
    )
    project = load_project(tmp_path, env={})
    assert [str(i) for i in project.issues] == [
        f"{tmp_path}/checks/s.yml:6:53: checks[0].reference.to.connector: "
        "unknown connector 'crn'; SQL connectors: crm, warehouse",
        f"{tmp_path}/checks/t.yml:6:53: checks[0].reference.to.connector: "
        "connector 'hook' is of type webhook, not sql; SQL connectors: crm, warehouse",
    ]
    assert set(project.broken_suites) == {"payments", "t"}
