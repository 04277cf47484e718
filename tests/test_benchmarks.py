"""The benchmark harness end to end on tiny SQLite and DuckDB tables (never a server), and how
it counts the scans of the table on SQL engines and Spark (no JVM: Spark would take a minute)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.children import plan_scans, table_reads

ROOT = Path(__file__).resolve().parents[1]

# A plan of plain GX's on Spark as Spark's status store keeps it (trimmed): it reads the copy
# of the Parquet file that GX persisted, filled by the file's scan under the InMemoryRelation.
CACHED_PLAN = """\
== Physical Plan ==
AdaptiveSparkPlan (14)
+- == Final Plan ==
   ResultQueryStage (10), Statistics(sizeInBytes=8.0 EiB)
   +- * HashAggregate (9)
      +- ShuffleQueryStage (8), Statistics(sizeInBytes=32.0 B, rowCount=2)
         +- Exchange (7)
            +- * HashAggregate (6)
               +- TableCacheQueryStage (5), Statistics(sizeInBytes=78.2 MiB, rowCount=1.00E+6)
                  +- InMemoryTableScan (1)
                        +- InMemoryRelation (2)
                              +- * ColumnarToRow (4)
                                 +- Scan parquet  (3)
+- == Initial Plan ==
   HashAggregate (13)
   +- Exchange (12)
      +- HashAggregate (11)
         +- InMemoryTableScan (1)
               +- InMemoryRelation (2)
                     +- * ColumnarToRow (4)
                        +- Scan parquet  (3)


(1) InMemoryTableScan
Output [1]: [id#230]

(3) Scan parquet
Output [1]: [id#230]
Location: InMemoryFileIndex [file:/data/bench.parquet]
"""
# dq-agent's uniqueness query: the file itself, read once.
FILE_PLAN = """\
== Physical Plan ==
AdaptiveSparkPlan (11)
+- == Final Plan ==
   ResultQueryStage (7), Statistics(sizeInBytes=8.0 EiB)
   +- * HashAggregate (6)
      +- ShuffleQueryStage (5), Statistics(sizeInBytes=240.0 B, rowCount=2)
         +- Exchange (4)
            +- * HashAggregate (3)
               +- * ColumnarToRow (2)
                  +- Scan parquet  (1)
+- == Initial Plan ==
   HashAggregate (10)
   +- Exchange (9)
      +- HashAggregate (8)
         +- Scan parquet  (1)


(1) Scan parquet
Output [1]: [id#230]
"""


def test_a_scan_on_sql_is_the_table_after_from_or_join() -> None:
    assert table_reads('SELECT count(*) FROM "dq_bench"."bench_orders"') == 1
    assert table_reads('WITH f AS (SELECT * FROM "test"."dq_bench"."bench_orders") SELECT 1') == 1
    both = "SELECT 1 FROM (SELECT id FROM bench_orders) AS t JOIN bench_orders AS b ON t.id = b.id"
    assert table_reads(both) == 2
    # The catalogue names the table as a value; SQLite's PRAGMA has no FROM.
    catalogue = (
        "SELECT column_name FROM information_schema.columns WHERE table_name = 'bench_orders'"
    )
    assert table_reads(catalogue) == 0
    assert table_reads('PRAGMA main.table_xinfo("bench_orders")') == 0
    assert table_reads("SELECT * FROM bench_orders_archive") == 0


def test_a_scan_on_spark_is_a_scan_node_of_the_file_or_of_a_cached_copy() -> None:
    assert plan_scans(FILE_PLAN) == (1, 0)
    # The file's scan under the InMemoryRelation fills the cache once, not at every plan.
    assert plan_scans(CACHED_PLAN) == (0, 1)


def _harness(
    tmp_path: Path, backend: str, *options: str, timeout: int = 120
) -> tuple[subprocess.CompletedProcess[str], Path]:
    """``run.py`` on a 2,000-row table, one round: its output and its JSON results' path."""
    out = tmp_path / "results.json"
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "run.py"),
            *("--rows", "2000", "--repeat", "1", "--backends", backend, *options),
            *("--data-dir", str(tmp_path / "data"), "--json", str(out)),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done, out


def test_harness_runs_all_three_tools_on_sqlite_and_dq_agent_with_fat_finger(
    tmp_path: Path,
) -> None:
    done, out = _harness(tmp_path, "sqlite", "--fat-finger", timeout=180)

    results = json.loads(out.read_text(encoding="utf-8"))
    assert list(results["backends"]) == ["sqlite"]
    samples = results["backends"]["sqlite"]["samples"]
    by_tool = {s["tool"]: s for s in samples}
    assert set(by_tool) == {"single_sql", "dq_agent", "dq_agent_ff", "gx", "cli"}
    for tool in ("single_sql", "dq_agent", "gx"):
        sample = by_tool[tool]
        assert sample["work_s"] > 0 and sample["import_s"] > 0, sample
        assert sample["statements"] >= 1
        assert sample["passed"] is True
        assert len(sample["outcomes"]) == 10 and all(sample["outcomes"].values()), sample
    assert by_tool["single_sql"]["statements"] == 1
    # One scan each: the one aggregate (dq-agent's other statements describe the table);
    # plain GX reads the table again for most expectations.
    assert by_tool["single_sql"]["scans"] == by_tool["dq_agent"]["scans"] == 1
    assert by_tool["gx"]["scans"] > 1, by_tool["gx"]["sql"]
    assert by_tool["cli"]["cli_wall_s"] > 0 and by_tool["cli"]["passed"] is True
    assert "dq-agent / single-pass SQL" in done.stdout

    # dq-agent with fat_finger added, beside dq-agent without it.
    with_ff = by_tool["dq_agent_ff"]
    assert len(with_ff["outcomes"]) == 11 and with_ff["statuses"]["fat_finger"] in ("pass", "warn")
    # The tool's row beside dq-agent's, the ratio against its target, and its findings.
    assert re.search(r"^dq-agent \+fat_finger +\d+\.\d{3} ", done.stdout, re.M), done.stdout
    ratio = r"^dq-agent \+fat_finger / dq-agent \(work\): +\d+\.\d\dx +target <= 2x +(PASS|MISS)$"
    assert re.search(ratio, done.stdout, re.M), done.stdout
    found = re.search(r"^fat_finger: (pass|warn), (\d+) findings", done.stdout, re.M)
    assert found and int(found[2]) == with_ff["findings"]["fat_finger"], done.stdout


def test_harness_runs_on_duckdb_and_reports_gx_as_not_available(tmp_path: Path) -> None:
    done, out = _harness(tmp_path, "duckdb")

    run = json.loads(out.read_text(encoding="utf-8"))["backends"]["duckdb"]
    by_tool = {s["tool"]: s for s in run["samples"]}
    assert set(by_tool) == {"single_sql", "dq_agent", "cli"}
    for tool in ("single_sql", "dq_agent", "cli"):
        assert by_tool[tool]["passed"] is True, by_tool[tool]
    # One scan: the table's columns, its primary key, then every check's aggregate at once.
    assert by_tool["dq_agent"]["statements"] == 3, by_tool["dq_agent"]["sql"]
    assert by_tool["dq_agent"]["scans"] == 1, by_tool["dq_agent"]["sql"]
    assert run["gx_skipped"]
    assert re.search(r"^plain GX +n/a on duckdb: ", done.stdout, re.M), done.stdout
    assert re.search(r"^plain GX / dq-agent \(work\): +n/a", done.stdout, re.M), done.stdout


def _bench(script: str, *args: str, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    """``benchmarks/<script>`` run with ``args``, its output captured. Past ``timeout`` it is
    killed with every process it started (a server it serves, the children it forked), so a
    benchmark that hangs leaves nothing running behind the tests."""
    command = [sys.executable, str(ROOT / "benchmarks" / script), *args]
    with subprocess.Popen(
        command,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    ) as bench:
        try:
            out, err = bench.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(bench.pid, signal.SIGKILL)
            out, err = bench.communicate()
            pytest.fail(f"benchmarks/{script} took over {timeout} s:\n{out}{err}")
    return subprocess.CompletedProcess(command, bench.returncode, out, err)


def test_the_escalation_benchmark_runs() -> None:
    done = _bench("escalation.py", "--incidents", "6", "--owners", "2", timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "messages posted: 18 (raw 6 + first 6 + reminders 6)" in done.stdout


def test_the_semantic_benchmark_scores_every_kind_and_check() -> None:
    done = _bench("semantic.py", "--rounds", "1", "--days", "120", timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "recall on injected days" in out and "false alarms on clean days" in out
    for kind, check in (
        ("currency_mix", "distribution_shift"),
        ("unit_change", "distribution_shift"),
        ("null_jump", "column_anomaly"),
        ("new_category", "new_values"),
    ):
        row = re.search(
            rf"^  {kind} +{check} +(\d+) +(\d+) +(\d\.\d{{3}}) +\d+  (PASS|MISS)$", out, re.M
        )
        assert row, f"no recall row for {kind}:\n{out}"
        days, caught, recall = int(row[1]), int(row[2]), float(row[3])
        assert days > 0 and 0 <= caught <= days and recall == round(caught / days, 3)
    for check in ("distribution_shift", "column_anomaly", "new_values"):
        row = re.search(rf"^  {check} +(\d+) +(\d+) +(\d+\.\d\d)% +\d+  (PASS|MISS)$", out, re.M)
        assert row, f"no false-alarm row for {check}:\n{out}"
        assert int(row[1]) > 0 and 0 <= float(row[3]) <= 100
    assert re.search(
        r"^scanned: [\d,]+ queries by the checks, reading about [\d,]+ rows", out, re.M
    )
    assert re.search(r"^wall time: \d+\.\ds", out, re.M)


def test_the_dashboard_benchmark_times_every_page() -> None:
    done = _bench(
        "ui.py", *("--runs", "200", "--incidents", "20", "--repeat", "1", "--profile", "0")
    )
    assert done.returncode == 0, done.stdout + done.stderr
    timed = re.findall(r"^(/\S*) +[0-9.]+ +[0-9.]+ .*(PASS|MISS)$", done.stdout, re.M)
    assert [page for page, _ in timed] == [
        "/",
        "/incidents/<open>",
        "/incidents/<resolved>",
        "/corrections",
        "/monitors",
        "/suites/<id>",
    ], done.stdout


@pytest.mark.parametrize("client", ["lean", "httpx"])
def test_the_web_benchmark_times_clicks_and_the_overview_under_dq_agent_serve(
    client: str,
) -> None:
    done = _bench(
        "web.py",
        *("--runs", "200", "--incidents", "20", "--clients", "2", "--requests", "4"),
        *("--seconds", "20", "--drain", "0", "--rates", "50", "--http-client", client),
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    served, floor = done.stdout.split("\nthe floor, 2 concurrent clients (ms)\n")
    row = r"^(overview GET /|Slack click ack) +(closed|50/s) +(\d+) +(\d+) .*(PASS|MISS)$"
    expected = [
        ("overview GET /", "closed", "4", "0"),
        ("overview GET /", "50/s", "4", "0"),
        ("Slack click ack", "closed", "4", "0"),
        ("Slack click ack", "50/s", "4", "0"),
    ]
    for out in (served, floor):
        timed = re.findall(row, out, re.M)
        assert [(kind, load, n, errors) for kind, load, n, errors, _ in timed] == expected, out
    assert re.search(r"^clicks acted on \(snoozes recorded\): ", served, re.M), served


def test_the_salesforce_benchmark_counts_the_calls_of_each_path() -> None:
    done = _bench("salesforce.py", *("--records", "12000", "--corrections", "450"))
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    # 12,000 records: 6 REST pages beside a job (one REST page to size it, create, two polls,
    # one page of results); 450 corrections: 1,350 calls one by one, 5 as Collections.
    assert re.search(r"^  REST pages of 2,000 +7 ", out, re.M), out
    assert re.search(r"^  Bulk API 2.0 query job +6 ", out, re.M), out
    assert re.search(r"^  one by one \(read, PATCH, read\) +1,35\d ", out, re.M), out
    assert re.search(r"^  sObject Collections +5 ", out, re.M), out
    assert "(target <= 10) PASS" in out


def test_the_replicas_benchmark_loses_and_doubles_nothing(postgres_server: str) -> None:
    name = f"dq_bench_rq_{os.getpid()}"
    try:
        done = _bench(
            "replicas.py",
            *("--suites", "24", "--minutes", "4", "--replicas", "2"),
            *("--postgres-url", postgres_server, "--name", name),
        )
    finally:
        import sqlalchemy as sa

        url = sa.make_url(postgres_server)
        admin = sa.create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name}_state WITH (FORCE)"))
        admin.dispose()
        warehouse = sa.create_engine(url)
        with warehouse.begin() as conn:
            conn.execute(sa.text(f"DROP SCHEMA IF EXISTS {name} CASCADE"))
        warehouse.dispose()
    assert done.returncode == 0, done.stdout + done.stderr
    # replicas, due, finished, lost, taken over, recorded twice, ...
    [row] = re.findall(r"^ +2 +(\d+) +(\d+) +(\d+) +(\d+) +(\d+) ", done.stdout, re.M)
    due, finished, lost, taken_over, _twice = map(int, row)
    assert due == finished > 0 and lost == 0
    assert taken_over == 1  # the run the killed replica held


def test_the_broker_benchmark_checks_both_ways(postgres_server: str) -> None:
    rows = 2_000
    try:
        done = _bench(
            "broker.py",
            *("--rows", str(rows), "--repeat", "1", "--postgres-url", postgres_server),
            *("--records", "200,400"),
        )
    finally:
        import sqlalchemy as sa

        from benchmarks.data import bench_schema

        warehouse = sa.create_engine(postgres_server)
        with warehouse.begin() as conn:
            conn.execute(sa.text(f"DROP SCHEMA IF EXISTS {bench_schema(rows)} CASCADE"))
        warehouse.dispose()
    assert done.returncode == 0, done.stdout + done.stderr
    assert "suite status: pass, both paths, every run" in done.stdout
    assert "brokered/direct" in done.stdout
    assert "every failing record through the broker (read)" in done.stdout
