"""The same suite on the same data gives the same result on every engine.

One table of deals over five weeks (a quiet last day, a currency mixed in, a typing slip, nulls,
text of every length) is loaded into SQLite, DuckDB, PostgreSQL and MariaDB; one suite with
every built-in check and the compiled expectations runs on each. Statuses, messages, observed
values and findings must match SQLite's, numbers within float tolerance.
"""

from __future__ import annotations

import random
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from dq_agent.results import SuiteResult, to_jsonable
from tests.sources import NOW, load_orders, run_one

DEALS = sa.Table(
    "deals",
    sa.MetaData(),
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("customer", sa.String(40)),
    sa.Column("status", sa.String(20)),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("seats", sa.Integer),
    sa.Column("price", sa.Numeric(12, 2)),
    sa.Column("amount", sa.Numeric(16, 2)),
    sa.Column("created_at", sa.DateTime, nullable=False),
)
SUITE = """
suite: deals
source: {connector: warehouse, table: deals}
key: [id]
max_findings: 50
checks:
  - row_count: {min: 1}
  - freshness: {column: created_at, max_age: 26h}
  - schema: {columns: {id: integer, customer: string, amount: number, created_at: timestamp}}
  - volume_anomaly: {timestamp_column: created_at}
  - distribution_shift: {timestamp_column: created_at, column: amount, group_by: currency}
  - column_anomaly: {timestamp_column: created_at, column: amount, metrics: [null_rate, mean]}
  - new_values: {timestamp_column: created_at, column: currency}
  - accepted_values: {column: status, values: [open, won, lost]}
  - fat_finger: {column: amount, witness: "seats * price"}
  - expect_column_values_to_not_be_null: {column: customer}
  - expect_column_values_to_not_be_null: {name: most_customers, column: customer, mostly: 0.9}
  - expect_column_values_to_be_between: {column: seats, min_value: 1, max_value: 500}
  - expect_column_values_to_be_in_set: {column: currency, value_set: [USD, EUR]}
  - expect_column_values_to_be_unique: {column: id}
  - expect_compound_columns_to_be_unique: {column_list: [customer, created_at]}
  - expect_column_value_lengths_to_be_between: {column: customer, min_value: 2, max_value: 6}
  - expect_column_mean_to_be_between: {column: seats, min_value: 1, max_value: 100}
  - expect_column_max_to_be_between: {column: amount, max_value: 1000000}
  - expect_table_row_count_to_be_between: {min_value: 100}
"""


def deals() -> list[dict[str, Any]]:
    """Five weeks of deals; yesterday is quiet and carries Yen and one slip."""
    rng = random.Random(18)
    rows: list[dict[str, Any]] = []
    today = NOW.replace(tzinfo=None, hour=0, minute=0, second=0, microsecond=0)
    for days_ago in range(35, 0, -1):
        day = today - timedelta(days=days_ago)
        count = 8 if days_ago == 1 else (40 if day.weekday() < 5 else 12) + rng.randint(-3, 3)
        for i in range(count):
            seats = rng.choice([5, 10, 20, 25, 50])
            price = rng.choice([900, 1200, 2500])
            currency = "JPY" if days_ago == 1 and i % 2 else rng.choice(["USD", "EUR"])
            amount = seats * price * (150 if currency == "JPY" else 1)
            rows.append(
                {
                    "id": len(rows) + 1,
                    "customer": None if i == 3 else f"c{rng.randint(1, 40)}",
                    "status": "pending" if i == 5 else rng.choice(["open", "won", "lost"]),
                    "currency": currency,
                    "seats": seats,
                    "price": price,
                    "amount": amount,
                    "created_at": day + timedelta(minutes=17 * i),
                }
            )
    rows[100]["amount"] = rows[100]["seats"] * rows[100]["price"] * 10  # one zero too many
    return rows


def essence(result: SuiteResult) -> dict[str, Any]:
    """What must agree across engines: per check, status, message, observed, findings."""
    assert result.error is None, result.error
    return {
        check.name: {
            "status": check.status,
            "message": check.message,
            "observed": _rounded(to_jsonable(check.observed)),
            "findings": sorted(
                (_rounded(to_jsonable(f.to_json())) for f in check.findings), key=repr
            ),
        }
        for check in result.checks
    }


def _rounded(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 6)
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    return value


# The days of five weeks before NOW cross the end of summer time in Europe (25 October 2026):
# one day of 25 hours there, bucketed the same on every engine.
ZONES = {
    "UTC": SUITE,
    "Europe/Berlin": SUITE.replace("key: [id]", "key: [id]\ntimezone: Europe/Berlin"),
}


@pytest.fixture(scope="module", params=list(ZONES))
def zone(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def on_sqlite(tmp_path_factory: pytest.TempPathFactory, zone: str) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("sqlite")
    url = f"sqlite:///{root / 'deals.db'}"
    load_orders(url, deals(), DEALS)
    return essence(run_one(root / "project", url, ZONES[zone]))


@pytest.mark.parametrize("server", ["duckdb", "postgres", "mariadb"])
def test_every_engine_gives_sqlites_answer(
    tmp_path: Path,
    request: pytest.FixtureRequest,
    server: str,
    zone: str,
    on_sqlite: dict[str, Any],
) -> None:
    url = str(request.getfixturevalue(f"{server}_url"))
    load_orders(url, deals(), DEALS)
    got = essence(run_one(tmp_path, url, ZONES[zone]))
    assert list(got) == list(on_sqlite)
    different = {name: (got[name], on_sqlite[name]) for name in got if got[name] != on_sqlite[name]}
    assert different == {}


def test_the_suite_sees_what_the_data_holds(on_sqlite: dict[str, Any]) -> None:
    """The data is not trivially green: each kind of problem is found on SQLite."""
    failing = {name for name, check in on_sqlite.items() if check["status"] == "fail"}
    assert failing == {
        "freshness(created_at)",
        "volume_anomaly(created_at)",
        "distribution_shift(amount)",
        "new_values(currency)",
        "accepted_values(status)",
        "fat_finger(amount)",
        "expect_column_values_to_not_be_null(customer)",
        "expect_column_values_to_be_in_set(currency)",
        "expect_column_max_to_be_between(amount)",
    }
