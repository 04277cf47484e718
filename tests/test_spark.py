"""``type: spark``: the checks pushed down to Spark SQL give SQLite's answers.

One local Spark session (``local[2]``) for the whole file holds the deals of
tests/test_engines_differential.py as a table; the same suite runs on it and on SQLite.
What Spark cannot run yet says so in its result, and nothing pretends.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
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


def lake(spark_conf: dict[str, str], remote: str | None = None) -> str:
    conf = ", ".join(f"{k}: '{v}'" for k, v in spark_conf.items())
    where = f"remote: {remote}" if remote else "master: local[2]"
    return f"type: spark\n{where}\nconf: {{{conf}}}\n"


def run_on_spark(
    root: Path, spark_conf: dict[str, str], suite: str, remote: str | None = None
) -> SuiteResult:
    make_project(
        root,
        connectors={"lake": lake(spark_conf, remote)},
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


# Expectations dq-agent does not compile: Great Expectations runs them itself.
VIA_GX = """
suite: gx
source: {connector: warehouse, table: deals}
key: [id]
max_findings: 2000
checks:
  - row_count: {min: 1}
  - expect_column_values_to_match_regex: {column: customer, regex: "^c[0-9]$"}
  - expect_column_values_to_match_regex:
      name: open_customers
      column: customer
      regex: "^c[1-3]"
      row_condition: 'col("status")=="open"'
      condition_parser: great_expectations
  - expect_column_values_to_not_match_regex: {column: status, regex: "^pend"}
  - expect_column_values_to_be_in_set: {column: currency, value_set: [USD, EUR], mostly: 0.5}
"""


def test_expectations_gx_runs_read_the_same_session_and_give_sqlites_answer(
    tmp_path: Path, spark: Any, spark_conf: dict[str, str]
) -> None:
    """What is not compiled runs through Great Expectations' Spark engine on a DataFrame of
    the session; GX on SQLite is the oracle."""
    from tests.sources import load_orders, run_one
    from tests.test_engines_differential import DEALS

    url = f"sqlite:///{tmp_path / 'deals.db'}"
    load_orders(url, deals(), DEALS)
    expected = essence(run_one(tmp_path / "sqlite", url, VIA_GX))
    on_spark = VIA_GX.replace(
        "source: {connector: warehouse, table: deals}",
        "source: {connector: lake, table: default.deals}",
    )
    got = essence(run_on_spark(tmp_path / "spark", spark_conf, on_spark))
    assert [(name, check["status"]) for name, check in got.items()] == [
        ("row_count", "pass"),
        ("expect_column_values_to_match_regex(customer)", "fail"),
        ("open_customers", "fail"),
        ("expect_column_values_to_not_match_regex(status)", "fail"),
        ("expect_column_values_to_be_in_set(currency)", "pass"),
    ]
    # GX lists at most 200 unexpected values: a sample, which depends on the order each engine
    # reads the rows in. Every record is among the findings on both.
    for name, check in got.items():
        sample = check["observed"].pop("partial_unexpected_list", [])
        oracle = expected[name]["observed"].pop("partial_unexpected_list", [])
        assert len(sample) == len(oracle)
        assert set(sample) <= {f["observed"] for f in check["findings"]}
    assert got == expected
    assert not spark.catalog.isCached("default.deals")


def test_what_does_not_run_on_spark_yet_says_so(
    tmp_path: Path, spark: Any, spark_conf: dict[str, str]
) -> None:
    """``reference`` cannot describe the other table there: an error result; the other
    checks still run."""
    suite = """
        suite: partial
        source: {connector: lake, table: default.deals}
        checks:
          - row_count: {min: 1}
          - reference: {column: customer, to: {table: deals, column: customer}}
        """
    result = run_on_spark(tmp_path, spark_conf, suite)
    assert [(c.name, c.status, c.message) for c in result.checks] == [
        ("row_count", "pass", f"{len(deals()):,} rows"),
        (
            "reference(customer)",
            "error",
            "reference is not supported yet on spark: "
            "the referenced table cannot be described or copied there",
        ),
    ]


@pytest.fixture(scope="module")
def spark_connect(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Spark Connect server of PySpark's own (what Databricks Connect and managed Spark
    speak), on a free port: its ``sc://`` URL."""
    home = Path(pyspark.__file__).parent
    work = tmp_path_factory.mktemp("spark-connect")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings = {
        "spark.connect.grpc.binding.address": "127.0.0.1",
        "spark.connect.grpc.binding.port": str(port),
        "spark.ui.enabled": "false",
        "spark.sql.shuffle.partitions": "2",
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.warehouse.dir": str(work / "warehouse"),
    }
    command = [str(home / "bin" / "spark-submit"), "--master", "local[2]"]
    command += [arg for item in settings.items() for arg in ("--conf", "=".join(item))]
    command += ["--class", "org.apache.spark.sql.connect.service.SparkConnectServer"]
    log = (work / "server.log").open("w")
    server = subprocess.Popen(
        command,
        cwd=work,
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "SPARK_HOME": str(home)},
    )
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                pass
            try:  # the pause between probes, which also notices a server that died
                server.wait(timeout=0.25)
            except subprocess.TimeoutExpired:
                pass
            else:
                pytest.fail(f"the Spark Connect server exited: {(work / 'server.log').read_text()}")
            if time.monotonic() > deadline:
                pytest.fail("the Spark Connect server did not listen within 180 s")
        yield f"sc://127.0.0.1:{port}"
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()


# A Spark Connect client cannot start in a process that runs a local session (PySpark's
# SESSION_ALREADY_EXIST): the suites run in a child process of their own.
_CHILD = """
import json, sys
from pathlib import Path
from tests.sources import run
from tests.test_engines_differential import essence
results = run(Path(sys.argv[1]))
print(json.dumps({r.suite: essence(r) if r.error is None else [r.error, r.transient]
                  for r in results}))
"""


def test_a_spark_connect_server_gives_sqlites_answer(
    tmp_path: Path, spark_connect: str, on_sqlite: dict[str, Any]
) -> None:
    """``remote: sc://…``: the same checks, and what GX runs, through a Spark Connect client."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([(f.name, _arrow(f.dataType)) for f in DEALS_SCHEMA.fields])
    rows = [
        {k: Decimal(v) if k in ("price", "amount") else v for k, v in row.items()}
        for row in deals()
    ]
    pq.write_table(pa.Table.from_pylist(rows, schema), tmp_path / "deals.parquet")
    # A few of the suite's checks (each statement is a round trip): one of each kind of work.
    kept = ("row_count", "volume_anomaly", "fat_finger", "expect_column_values_to_be_unique")
    lines = SUITE.replace(
        "source: {connector: warehouse, table: deals}",
        f"source: {{connector: lake, query: 'SELECT * FROM parquet.`{tmp_path}/deals.parquet`'}}",
    ).splitlines()
    suite = "\n".join(
        line for line in lines if not line.startswith("  - ") or line[4:].startswith(kept)
    )
    suite += '\n  - expect_column_values_to_not_match_regex: {column: status, regex: "^pend"}\n'
    # Another connector to the same server gets a session of its own, with its own settings.
    tuned = """
        suite: tuned
        source: {connector: tuned, query: "SELECT current_timezone() AS zone"}
        checks:
          - accepted_values: {column: zone, values: [America/New_York]}
        """
    make_project(
        tmp_path / "project",
        connectors={
            "lake": lake({"spark.sql.session.timeZone": "UTC"}, spark_connect),
            "tuned": lake({"spark.sql.session.timeZone": "America/New_York"}, spark_connect),
        },
        suites={"deals": suite, "tuned": tuned},
        settings=f"state_url: 'sqlite:///{tmp_path}/state.db'\n",
    )
    child = subprocess.run(
        [sys.executable, "-c", _CHILD, str(tmp_path / "project")],
        cwd=Path(__file__).parents[1],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert child.returncode == 0, child.stderr[-3000:]
    got = json.loads(child.stdout.splitlines()[-1])
    assert got["tuned"]["accepted_values(zone)"]["status"] == "pass"
    checks = got["deals"]
    gx_only = checks.pop("expect_column_values_to_not_match_regex(status)")
    pending = sum(1 for r in deals() if r["status"] == "pending")
    share = 100 * pending / len(deals())
    assert (gx_only["status"], gx_only["message"]) == (
        "fail",
        f"{pending} of {len(deals()):,} values unexpected ({share:.2f}%)",
    )
    assert list(checks) == [
        "row_count",
        "volume_anomaly(created_at)",
        "fat_finger(amount)",
        "expect_column_values_to_be_unique(id)",
    ]
    oracle = json.loads(json.dumps(on_sqlite))
    different = {n: (checks[n], oracle[n]) for n in checks if checks[n] != oracle[n]}
    assert different == {}


def _arrow(data_type: Any) -> Any:
    """The Arrow type a Parquet file stores a deals column as (what Spark reads it back as)."""
    import pyarrow as pa

    name = type(data_type).__name__
    if name == "DecimalType":
        return pa.decimal128(data_type.precision, data_type.scale)
    simple = {
        "IntegerType": pa.int32(),
        "StringType": pa.string(),
        "TimestampNTZType": pa.timestamp("us"),
    }
    return simple[name]


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
    assert issues[1:] == ["checks: no suite files (*.yml) found in this folder"]
    assert project.connectors["tuned"].conf == {"a.b": "8", "c.d": "true"}  # type: ignore[union-attr]
