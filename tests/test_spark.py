"""``type: spark``: the checks pushed down to Spark SQL give SQLite's answers.

One local Spark session (``local[2]``) for the whole file holds the deals of
tests/test_engines_differential.py as a table; the same suite runs on it and on SQLite.
What Spark cannot run yet says so in its result, and nothing pretends.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from dq_agent.config import load_project
from dq_agent.results import SuiteResult
from tests.helpers import make_project
from tests.sources import run
from tests.test_engines_differential import SUITE, deals, essence

pyspark = pytest.importorskip("pyspark")

from pyspark.sql import SparkSession  # noqa: E402
from pyspark.sql import types as T  # noqa: E402

DEALS_SCHEMA = T.StructType(
    [
        T.StructField("id", T.IntegerType(), False),
        T.StructField("customer", T.StringType()),
        T.StructField("status", T.StringType()),
        T.StructField("currency", T.StringType(), False),
        T.StructField("seats", T.IntegerType()),
        T.StructField("price", T.DecimalType(12, 2)),
        T.StructField("amount", T.DecimalType(16, 2)),
        # SQLite's DateTime is a wall-clock time: Spark's TIMESTAMP_NTZ is its like.
        T.StructField("created_at", T.TimestampNTZType(), False),
    ]
)


@pytest.fixture(scope="session")
def spark_conf(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The settings of the one session; the projects' connectors name the same ones."""
    warehouse = tmp_path_factory.mktemp("spark-warehouse")
    return {
        "spark.ui.enabled": "false",
        "spark.sql.shuffle.partitions": "2",
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.warehouse.dir": str(warehouse),
    }


@pytest.fixture(scope="session")
def spark(spark_conf: dict[str, str]) -> Iterator[Any]:
    builder = SparkSession.builder.master("local[2]").appName("dq-agent-tests")
    for name, value in spark_conf.items():
        builder = builder.config(name, value)
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    rows = [
        {k: Decimal(v) if k in ("price", "amount") else v for k, v in row.items()}
        for row in deals()
    ]
    frame = session.createDataFrame(rows, DEALS_SCHEMA)
    frame.write.mode("overwrite").saveAsTable("default.deals")
    yield session
    session.stop()


def lake(spark_conf: dict[str, str]) -> str:
    conf = ", ".join(f"{k}: '{v}'" for k, v in spark_conf.items())
    return f"type: spark\nmaster: local[2]\nconf: {{{conf}}}\n"


def run_on_spark(root: Path, spark_conf: dict[str, str], suite: str) -> SuiteResult:
    make_project(
        root,
        connectors={"lake": lake(spark_conf)},
        suites={"s": suite},
        settings=f"state_url: 'sqlite:///{root}/state.db'\n",
    )
    [result] = run(root)
    return result


@pytest.fixture(scope="module")
def on_sqlite(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from tests.sources import load_orders, run_one
    from tests.test_engines_differential import DEALS

    root = tmp_path_factory.mktemp("sqlite")
    url = f"sqlite:///{root / 'deals.db'}"
    load_orders(url, deals(), DEALS)
    return essence(run_one(root / "project", url, SUITE))


def test_spark_gives_sqlites_answer(
    tmp_path: Path, spark: Any, spark_conf: dict[str, str], on_sqlite: dict[str, Any]
) -> None:
    suite = SUITE.replace(
        "source: {connector: warehouse, table: deals}",
        "source: {connector: lake, table: default.deals}",
    )
    got = essence(run_on_spark(tmp_path, spark_conf, suite))
    # Every check of the suite, fat_finger and the time-bucketed ones included: no exclusion.
    assert list(got) == list(on_sqlite)
    different = {name: (got[name], on_sqlite[name]) for name in got if got[name] != on_sqlite[name]}
    assert different == {}


def test_a_query_is_checked_and_its_instants_read_in_utc(
    tmp_path: Path, spark: Any, spark_conf: dict[str, str]
) -> None:
    """A query's columns are typed from Spark's description of it; a TIMESTAMP (an instant)
    is as fresh as the wall-clock TIMESTAMP_NTZ it was made from in a UTC session."""
    suite = """
        suite: usd
        source:
          connector: lake
          query: "SELECT id, amount, CAST(created_at AS TIMESTAMP) AS created FROM default.deals
            WHERE currency = 'USD'"
        key: [id]
        checks:
          - row_count: {min: 1}
          - schema: {columns: {id: integer, amount: number, created: timestamp}}
          - freshness: {column: created, max_age: 3d}
          - expect_column_values_to_be_unique: {column: id}
        """
    result = run_on_spark(tmp_path, spark_conf, suite)
    assert result.error is None
    usd = sum(1 for row in deals() if row["currency"] == "USD")
    newest = max(row["created_at"] for row in deals() if row["currency"] == "USD")
    assert [(c.name, c.status) for c in result.checks] == [
        ("row_count", "pass"),
        ("schema", "pass"),
        ("freshness(created)", "pass"),
        ("expect_column_values_to_be_unique(id)", "pass"),
    ]
    row_count, _, freshness, _ = result.checks
    assert row_count.message == f"{usd:,} rows"
    assert freshness.observed["newest"] == newest.replace(tzinfo=UTC).isoformat()


def test_a_missing_table_is_the_suites_error(
    tmp_path: Path, spark: Any, spark_conf: dict[str, str]
) -> None:
    suite = """
        suite: gone
        source: {connector: lake, table: default.no_such_deals}
        checks:
          - row_count: {min: 1}
        """
    result = run_on_spark(tmp_path, spark_conf, suite)
    assert (result.status, result.error, result.transient) == (
        "error",
        "table default.no_such_deals not found on spark (local[2])",
        False,
    )


def test_what_does_not_run_on_spark_yet_says_so(
    tmp_path: Path, spark: Any, spark_conf: dict[str, str]
) -> None:
    """Great Expectations cannot read a Spark session here, and ``reference`` cannot describe
    the other table: each is an error result; the other checks still run."""
    suite = """
        suite: partial
        source: {connector: lake, table: default.deals}
        checks:
          - row_count: {min: 1}
          - expect_column_values_to_match_regex: {column: customer, regex: "^c[0-9]+$"}
          - reference: {column: customer, to: {table: deals, column: customer}}
        """
    result = run_on_spark(tmp_path, spark_conf, suite)
    assert [(c.name, c.status, c.message) for c in result.checks] == [
        ("row_count", "pass", f"{len(deals()):,} rows"),
        (
            "expect_column_values_to_match_regex(customer)",
            "error",
            "expect_column_values_to_match_regex is not supported yet on spark "
            "(only compiled expectations run there)",
        ),
        (
            "reference(customer)",
            "error",
            "reference is not supported yet on spark: "
            "the referenced table cannot be described or copied there",
        ),
    ]


def test_a_spark_profile_names_master_or_remote(tmp_path: Path) -> None:
    make_project(
        tmp_path,
        connectors={
            "lake": "type: spark\nmaster: local[2]\nremote: sc://spark:15002\n",
            "tuned": "type: spark\nremote: sc://spark:15002\nconf: {a.b: 8, c.d: true}\n",
        },
    )
    project = load_project(tmp_path, env={})
    issues = [str(i).replace(f"{tmp_path}/", "") for i in project.issues]
    assert issues[0] == "connectors/lake.yml:1:1: expected exactly one of master: or remote:"
    assert issues[1:] == ["checks:1:1: no suite files (*.yml) found in this folder"]
    assert project.connectors["tuned"].conf == {"a.b": "8", "c.d": "true"}  # type: ignore[union-attr]
