"""Silent semantic failures: the columns and types stay the same, the numbers do not.

Four weeks of payments in dollars and euros, then a day on which some arrive in Yen under the
same ``currency`` column (``distribution_shift``), cents beside dollars, a null-rate jump
(``column_anomaly``), on SQLite and PostgreSQL.
"""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from dq_agent.config import load_project
from dq_agent.engine import RunOptions, backtest_suite
from dq_agent.store import Store
from tests.sources import load_orders, project_for, run

FIRST, LAST = date(2026, 10, 27), date(2026, 11, 23)  # the last complete day at NOW
NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
PAYMENTS = sa.Table(
    "payments",
    sa.MetaData(),
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("paid_at", sa.DateTime()),
    sa.Column("local_value", sa.Float),
    sa.Column("currency", sa.String(3)),
)
YEN_PER_DOLLAR = 130.0


def payments(
    *,
    yen: dict[date, float] | None = None,
    cents: dict[date, float] | None = None,
    nulls: dict[date, float] | None = None,
    seed: int = 7,
) -> list[dict[str, Any]]:
    """About 200 payments a day (60 at weekends) of $20–$20,000; on the given days that share
    arrives in Yen (``yen``), in cents (``cents``) or without a value (``nulls``)."""
    rng = random.Random(seed)
    rows: list[dict[str, Any]] = []
    day = FIRST
    while day <= LAST:
        count = (200 if day.weekday() < 5 else 60) + rng.randint(-8, 8)
        for i in range(count):
            value = round(10 ** rng.uniform(1.3, 4.3), 2)
            currency = "USD" if rng.random() < 0.7 else "EUR"
            draw = rng.random()
            if draw < (yen or {}).get(day, 0):
                value, currency = round(value * YEN_PER_DOLLAR * rng.uniform(0.85, 1.15)), "JPY"
            elif draw < (cents or {}).get(day, 0):
                value = round(value * 100)
            value_or_null: float | None = value
            if rng.random() < 0.02 + (nulls or {}).get(day, 0):
                value_or_null = None
            moment = datetime.combine(day, time(i * 24 // count, (i * 7) % 60))
            rows.append(
                {
                    "id": len(rows) + 1,
                    "paid_at": moment,
                    "local_value": value_or_null,
                    "currency": currency,
                }
            )
        day += timedelta(days=1)
    return rows


def project(root: Path, url: str, check: str) -> Path:
    suite = (
        "suite: payments\nowner: finance-data@acme.com\n"
        "source: {connector: warehouse, table: payments}\n"
        f"checks:\n  - {check}\n"
    )
    return project_for(root, url, {"payments": suite})


def backtest_payments(root: Path) -> list[Any]:
    """The suite's one check replayed day by day over 10–23 November."""
    project_ = load_project(root, env={})
    with Store.open(project_.state_url) as store:
        [(_, verdicts)] = backtest_suite(
            project_,
            "payments",
            checks=[],
            start=datetime(2026, 11, 10, tzinfo=UTC),
            end=datetime(2026, 11, 24, tzinfo=UTC),
            store=store,
            options=RunOptions(clock=lambda: NOW),
        )
    return verdicts


SHIFT = "distribution_shift: {timestamp_column: paid_at, column: local_value, group_by: currency}"


def test_yen_arriving_under_the_same_currency_column_is_named(
    tmp_path: Path, engine_url: str
) -> None:
    load_orders(engine_url, payments(yen={LAST: 0.12}), PAYMENTS)
    root = project(tmp_path, engine_url, SHIFT)
    [check] = run(root, now=NOW)[0].checks
    assert check.status == "fail"
    share = check.observed["moved_share"]
    assert 0.09 <= share <= 0.15
    assert check.message.startswith(
        f"2026-11-23: local_value shifted: {share:.0%} of {check.observed['rows']:,} rows ("
    )
    assert "are about 1" in check.message and "× larger than usual; they have currency = JPY (" in (
        check.message
    )
    assert check.message.endswith("rows, new: not seen in the 28 days before)")
    [group] = check.observed["groups"]
    assert (group["value"], group["new"]) == ("JPY", True)
    assert 100 <= check.observed["factor"] <= 170


def test_an_ordinary_day_passes(tmp_path: Path, engine_url: str) -> None:
    load_orders(engine_url, payments(), PAYMENTS)
    root = project(tmp_path, engine_url, SHIFT)
    [check] = run(root, now=NOW)[0].checks
    assert check.status == "pass", check.message
    assert check.message.startswith("2026-11-23: local_value as usual: ")


def test_cents_beside_dollars_without_a_group_to_blame(tmp_path: Path, sqlite_url: str) -> None:
    load_orders(sqlite_url, payments(cents={LAST: 0.3}), PAYMENTS)
    check_yaml = "distribution_shift: {timestamp_column: paid_at, column: local_value}"
    root = project(tmp_path, sqlite_url, check_yaml)
    [check] = run(root, now=NOW)[0].checks
    assert check.status == "fail"
    assert "× larger than usual (" in check.message
    assert check.observed["groups"] == []
    assert 30 <= check.observed["factor"] <= 300


def test_the_day_before_the_yen_passes_as_of_then_and_a_backtest_flags_only_it(
    tmp_path: Path, sqlite_url: str
) -> None:
    load_orders(sqlite_url, payments(yen={LAST: 0.12}), PAYMENTS)
    root = project(tmp_path, sqlite_url, SHIFT)
    as_of = datetime(2026, 11, 23, 6, 0, tzinfo=UTC)
    [check] = run(root, now=NOW, as_of=as_of)[0].checks
    assert check.status == "pass"
    verdicts = backtest_payments(root)
    flagged = [v.bucket.date() for v in verdicts if v.status == "fail"]
    assert flagged == [LAST]
    assert len(verdicts) == 14


COLUMN = "column_anomaly: {timestamp_column: paid_at, column: local_value}"


def test_a_null_rate_jump_is_flagged_against_its_own_history(
    tmp_path: Path, engine_url: str
) -> None:
    load_orders(engine_url, payments(nulls={LAST: 0.3}), PAYMENTS)
    root = project(tmp_path, engine_url, COLUMN)
    [check] = run(root, now=NOW)[0].checks
    assert check.status == "fail"
    null_rate = check.observed["metrics"]["null_rate"]
    assert null_rate["anomaly"] and 0.25 <= null_rate["value"] <= 0.4
    assert check.message.startswith("2026-11-23: local_value null rate ")
    assert "(usually 2." in check.message or "(usually 1." in check.message
    # The other metrics held.
    assert [m for m, v in check.observed["metrics"].items() if v["anomaly"]] == ["null_rate"]


def test_column_metrics_on_an_ordinary_day_pass(tmp_path: Path, engine_url: str) -> None:
    load_orders(engine_url, payments(), PAYMENTS)
    root = project(tmp_path, engine_url, COLUMN)
    [check] = run(root, now=NOW)[0].checks
    assert check.status == "pass", check.message
    assert set(check.observed["metrics"]) == {"null_rate", "zero_rate", "negative_rate", "mean"}


def test_text_metrics_and_a_mean_that_moved(tmp_path: Path, sqlite_url: str) -> None:
    load_orders(sqlite_url, payments(cents={LAST: 0.5}), PAYMENTS)
    checks = (
        "column_anomaly: {timestamp_column: paid_at, column: local_value, metrics: [mean]}\n"
        "  - column_anomaly: {timestamp_column: paid_at, column: currency}"
    )
    root = project(tmp_path, sqlite_url, checks)
    mean, currency = run(root, now=NOW)[0].checks
    assert mean.status == "fail"
    assert mean.message.startswith("2026-11-23: local_value mean ")
    assert currency.status == "pass", currency.message
    assert set(currency.observed["metrics"]) == {"null_rate", "distinct_count", "length"}


def test_a_backtest_of_column_metrics_flags_only_the_broken_day(
    tmp_path: Path, sqlite_url: str
) -> None:
    load_orders(sqlite_url, payments(nulls={date(2026, 11, 18): 0.4}), PAYMENTS)
    root = project(tmp_path, sqlite_url, COLUMN)
    verdicts = backtest_payments(root)
    assert [v.bucket.date() for v in verdicts if v.status == "fail"] == [date(2026, 11, 18)]


def test_a_text_column_cannot_have_a_mean(tmp_path: Path, sqlite_url: str) -> None:
    load_orders(sqlite_url, payments(), PAYMENTS)
    check = "column_anomaly: {timestamp_column: paid_at, column: currency, metrics: [mean]}"
    [result] = run(project(tmp_path, sqlite_url, check), now=NOW)[0].checks
    assert (result.status, result.message) == (
        "error",
        "mean need a numeric column; 'currency' is string",
    )


@pytest.mark.parametrize(
    ("check", "damage"), [(SHIFT, {"yen": {LAST: 0.12}}), (COLUMN, {"nulls": {LAST: 0.3}})]
)
def test_a_closure_day_of_the_suites_calendar_is_expected(
    tmp_path: Path, sqlite_url: str, check: str, damage: dict[str, Any]
) -> None:
    load_orders(sqlite_url, payments(**damage), PAYMENTS)
    root = project(tmp_path, sqlite_url, check)
    assert run(root, now=NOW)[0].checks[0].status == "fail"
    suite = root / "checks" / "payments.yml"
    suite.write_text(suite.read_text() + "calendar: {closed: [2026-11-23]}\n")
    [result] = run(root, now=NOW)[0].checks
    assert (result.status, result.message) == ("pass", "2026-11-23: a closure day")


def test_a_day_marked_expected_passes_and_leaves_the_baseline(
    tmp_path: Path, sqlite_url: str
) -> None:
    load_orders(sqlite_url, payments(yen={LAST: 0.12}), PAYMENTS)
    root = project(tmp_path, sqlite_url, SHIFT)
    assert run(root, now=NOW)[0].checks[0].status == "fail"
    project_ = load_project(root, env={})
    with Store.open(project_.state_url) as store:
        store.add_feedback(
            "payments",
            "distribution_shift(local_value)",
            datetime(2026, 11, 23, tzinfo=UTC),
            verdict="expected",
            by="finance-data@acme.com",
            at=NOW,
        )
    [check] = run(root, now=NOW)[0].checks
    assert (check.status, check.message) == ("pass", "2026-11-23: marked as expected")
