"""Benchmark: the same ten checks on a generated table, four ways, side by side.

1. dq-agent, the product path (a generated project, its state store in a temporary file);
2. plain Great Expectations 1.x with the same expectations (one ValidationDefinition);
   not on DuckDB, where it cannot run (see GX_UNSUPPORTED): reported as n/a there;
3. one hand-written single-pass aggregate query (the floor: every metric in one SELECT);
4. Soda Core 4 with the same checks as a data contract (PostgreSQL only), run by the Python
   of its own virtualenv, ``benchmarks/.soda-venv`` (``make bench`` builds it).

Each measurement runs in a fresh process; the tools take turns within each repeat (in a
rotating order) so machine noise hits all of them alike, and medians are reported, with the
statements each tool sent to the engine and the scans of the table in them.

Targets: dq-agent's checking work within 1.5x of the single-pass query (1.3x on DuckDB and
Spark), and faster than GX (3x faster on Spark). A miss is reported, not turned into an
error; a tool whose checks fail aborts the run.

Backends: ``sqlite`` and ``postgresql`` by default; ``--backends duckdb,mariadb,spark`` adds
a DuckDB file next to the SQLite ones (``duckdb:///`` through duckdb-engine), a MariaDB
(or MySQL) database, ``--mariadb-url`` (``mysql+pymysql://``), and a local Spark session
reading DuckDB's table written out as a Parquet file (``type: spark`` for dq-agent, Spark SQL
for the single-pass query, a Spark DataFrame for GX). MariaDB is meant for 1,000,000 rows
(10,000,000 would take minutes to generate there); DuckDB generates 10,000,000 in seconds.
An unreachable PostgreSQL or MariaDB is reported and skipped.

``--fat-finger`` adds a fifth tool, dq-agent on the same suite plus the ``fat_finger`` check
(``suite.FAT_FINGER``: amount against its witness ``quantity * unit_price``, peers grouped by
status), in a project of its own, and reports what the check costs: its work against
dq-agent's without it, target at most 2x. The table's few planted slips make that check warn; that
warning, and only it, is accepted.

Usage: ``.venv/bin/python benchmarks/run.py [--rows N[,N...]] [--repeat N] [--backends ...]
[--fat-finger]``
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: make the `benchmarks` package importable
    sys.path.insert(0, str(ROOT))

import sqlalchemy as sa  # noqa: E402

from benchmarks.data import (  # noqa: E402
    Dataset,
    Unreachable,
    prepare_duckdb,
    prepare_mariadb,
    prepare_postgres,
    prepare_spark,
    prepare_sqlite,
)
from benchmarks.suite import (  # noqa: E402
    DEFAULT_ROWS,
    FAT_FINGER_CHECK,
    SODA_NOTES,
    evaluate_single_pass,
    single_pass_sql,
    write_dq_agent_project,
    write_soda_project,
)

DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
DEFAULT_MARIADB_URL = "mysql+pymysql://root@127.0.0.1:3306/test"
DEFAULT_SODA_PYTHON = ROOT / "benchmarks" / ".soda-venv" / "bin" / "python"
SODA_CHILD = ROOT / "benchmarks" / "soda_child.py"
SODA_ENV = {"SODA_CORE_TELEMETRY_ENABLED": "false"}
BACKENDS = ("sqlite", "postgresql", "duckdb", "mariadb", "spark")
DEFAULT_BACKENDS = ("sqlite", "postgresql")
# Skipped when unreachable (Spark: without PySpark or a Java to start its JVM with).
SERVERS = {"postgresql": "PostgreSQL", "mariadb": "MariaDB", "spark": "Spark"}
# Why plain GX cannot run on a backend (found with GX 1.24, duckdb-engine 0.17, SQLAlchemy
# 2.1): it fetches its metric rows after closing the connection that ran the query, and
# duckdb-engine's result is gone by then, so every expectation fails ("list index out of
# range"); its column reflection fails too (no pg_catalog.pg_collation in DuckDB).
GX_UNSUPPORTED = {
    "duckdb": "every expectation errors through duckdb-engine (GX fetches its rows after "
    "closing the connection, and they come back empty)"
}
# "cli": the whole `dq-agent check` command; "soda": Soda Core 4, on PostgreSQL when installed;
# "dq_agent_ff": dq-agent with the fat_finger check added, with --fat-finger only.
TOOLS = ("single_sql", "dq_agent", "dq_agent_ff", "gx", "cli", "soda")
# The tools timed from inside their process.
TIMED = ("single_sql", "dq_agent", "dq_agent_ff", "gx", "soda")
LABELS = {
    "single_sql": "single-pass SQL",
    "dq_agent": "dq-agent",
    "dq_agent_ff": "dq-agent +fat_finger",
    "gx": "plain GX",
    "cli": "dq-agent CLI",
    "soda": "Soda Core 4",
}
# The targets: dq-agent's work at most this many times the single-pass query's, and plain
# GX's more than this many times dq-agent's; tighter where the issue set them per engine.
MAX_RATIO_TO_SQL = 1.5
MIN_GX_RATIO = 1.0
MAX_RATIO_TO_SQL_ON = {"duckdb": 1.3, "spark": 1.3}
MIN_GX_RATIO_ON = {"spark": 3.0}
# With --fat-finger: the suite with fat_finger at most this many times the suite without it.
MAX_FAT_FINGER_RATIO = 2.0
# The one check a tool's suite may leave at a warning: fat_finger, finding the planted slips.
MAY_WARN = {"dq_agent_ff": FAT_FINGER_CHECK}
LEGEND = """\
Targets: dq-agent's work within {ratio:g}x of the single-pass query's ({tighter}),
and below plain GX's ({gx}).
  work     reading the table and judging the checks (dq-agent: connect, reflect the table,
           scan, record the run in its state store; GX: the ValidationDefinition run, on
           spark reading the Parquet file's schema too; Soda: verify_contract_locally,
           parsing the contract, connecting, querying)
  setup    configuration before that (dq-agent: load the project, open the state store;
           GX: context, datasource, asset, suite; single-pass SQL: create the engine;
           Soda: build its data source from the YAML; on spark, starting the session's JVM)
  import   module imports, database driver (DBAPI and SQLAlchemy dialect, or PySpark)
  process  the child process's whole wall clock, interpreter start (and JVM stop) included
  RSS      the child's peak resident set (on spark, plus its JVM's)
  stmts    statements the work sent to the engine: on SQL, every one SQLAlchemy's
           before_cursor_execute sees (Soda: psycopg's cursor) on the benchmark database;
           on spark, every query Spark's SQL status store recorded, from spark.sql text or a
           DataFrame (dq-agent's spark.sql call that only reads its query's schema runs none)
  scans    reads of the table in them: on SQL, references to it after FROM or JOIN (each
           may be answered from an index, or stop early at a LIMIT); on spark, the Scan
           parquet nodes of the plans Spark ran, a cache filled from the file counting
           once; '+N of a cache': plans' InMemoryTableScan of such a copy"""
FAT_FINGER_LEGEND = """\
With --fat-finger: dq-agent +fat_finger runs the same suite plus fat_finger (amount against
its witness quantity * unit_price, auto_correct, peers grouped by status, severity warn) in a
project of its own; target: its work within {ratio:g}x of dq-agent's. The table's few typing
slips (amount x 10 where id % 3333331 = 0) make it warn: that warning is accepted, and its
findings are counted."""
CHILD_TIMEOUT_S = 3600

_T0 = time.perf_counter()


def log(message: str) -> None:
    print(f"[{time.perf_counter() - _T0:7.1f}s] {message}", flush=True)


class CheckFailure(SystemExit):
    """A tool reported a failing check: its timings would be meaningless."""


def _sizes(text: str) -> list[int]:
    """``--rows``: one size or several, comma-separated (``1000000,10_000_000``)."""
    try:
        sizes = [int(part.strip().replace("_", "")) for part in text.split(",") if part.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected N[,N...], got {text!r}") from exc
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"row counts must be at least 1, got {text!r}")
    return list(dict.fromkeys(sizes))


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="dq-agent vs plain GX vs one hand-written query vs Soda Core 4 on the "
        "same ten checks."
    )
    parser.add_argument(
        "--rows",
        type=_sizes,
        default=[DEFAULT_ROWS],
        help="rows in the table; several sizes comma-separated, each run on every backend",
    )
    parser.add_argument("--repeat", type=int, default=3, help="timed rounds (median reported)")
    parser.add_argument(
        "--backends",
        default=",".join(DEFAULT_BACKENDS),
        help=f"comma-separated, some of {','.join(BACKENDS)}",
    )
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("DQ_AGENT_BENCH_POSTGRES_URL", DEFAULT_POSTGRES_URL),
        help="database for the dq_bench schemas (env DQ_AGENT_BENCH_POSTGRES_URL)",
    )
    parser.add_argument(
        "--mariadb-url",
        default=os.environ.get("DQ_AGENT_BENCH_MARIADB_URL", DEFAULT_MARIADB_URL),
        help="MariaDB/MySQL server for the dq_bench databases (env DQ_AGENT_BENCH_MARIADB_URL)",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=ROOT / "benchmarks" / ".data",
        help="where the SQLite and DuckDB files are kept",
    )
    parser.add_argument(
        "--soda-python",
        type=Path,
        default=Path(os.environ.get("DQ_AGENT_BENCH_SODA_PYTHON", DEFAULT_SODA_PYTHON)),
        help="Python of Soda Core's virtualenv (env DQ_AGENT_BENCH_SODA_PYTHON); "
        "Soda is skipped when it is missing",
    )
    parser.add_argument(
        "--fat-finger",
        action="store_true",
        help="also time dq-agent with the fat_finger check added, against dq-agent without it",
    )
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    args = parser.parse_args(argv)
    args.backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = sorted(set(args.backends) - set(BACKENDS))
    if unknown or not args.backends:
        parser.error(f"--backends: expected some of {', '.join(BACKENDS)}, got {unknown}")
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    return args


# --- running the tools ----------------------------------------------------------------------


def _dq_agent_command() -> list[str]:
    script = Path(sys.executable).parent / "dq-agent"
    found = str(script) if script.exists() else shutil.which("dq-agent")
    if found is None:
        raise SystemExit("cannot find the dq-agent command next to this Python or on PATH")
    return [found]


def _report_from(tool: str, dataset: Dataset, done: subprocess.CompletedProcess[str]) -> Any:
    """The JSON report a child prints on its last stdout line; a crash stops the run."""
    lines = done.stdout.strip().splitlines()
    if done.returncode == 0 and lines:
        try:
            return json.loads(lines[-1])
        except ValueError:
            pass
    raise SystemExit(
        f"{tool} on {dataset.backend} crashed (exit {done.returncode}):\n"
        f"{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    )


def run_child(tool: str, dataset: Dataset, project: Path) -> dict[str, Any]:
    """One measurement of ``tool`` in a fresh interpreter; its JSON report plus process time."""
    command = [
        sys.executable,
        "-m",
        "benchmarks.children",
        tool,
        "--backend",
        dataset.backend,
        "--url",
        dataset.url,
        "--table",
        dataset.table,
        "--project",
        str(project),
    ]
    if dataset.schema:
        command += ["--schema", dataset.schema]
    started = time.perf_counter()
    done = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=CHILD_TIMEOUT_S, check=False
    )
    elapsed = time.perf_counter() - started
    report: dict[str, Any] = _report_from(tool, dataset, done)
    report["process_s"] = elapsed
    return report


def soda_unavailable(python: Path) -> str | None:
    """Why Soda Core cannot run from ``python``, or None if it can (checked once per run)."""
    if not python.exists():
        return (
            f"no Soda virtualenv ({python} is missing); `make bench` builds "
            "benchmarks/.soda-venv with soda-core and soda-postgres 4.28.0"
        )
    done = subprocess.run(
        [str(python), "-c", "import soda_core, soda_postgres"],
        env={**os.environ, **SODA_ENV},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines() or ["(no error output)"]
        return f"{python} cannot import soda_core and soda_postgres: {lines[-1]}"
    return None


def spark_unavailable() -> str | None:
    """Why a local Spark session cannot start here, or None if it can: it needs PySpark (the
    dev extra) and a Java (17 or later) from JAVA_HOME or the PATH."""
    if importlib.util.find_spec("pyspark") is None:
        return "PySpark is not installed (pip install -e '.[dev]')"
    java_home = os.environ.get("JAVA_HOME")
    if java_home:
        if not Path(java_home, "bin", "java").exists():
            return f"no Java for its JVM: JAVA_HOME is {java_home}, with no bin/java"
    elif shutil.which("java") is None:
        return "no Java for its JVM: no JAVA_HOME, no java on the PATH"
    return None


def run_soda(dataset: Dataset, project: Path, python: Path) -> dict[str, Any]:
    """One Soda Core measurement in a fresh interpreter of Soda's own virtualenv."""
    command = [
        str(python),
        str(SODA_CHILD),
        "--data-source",
        str(project / "soda-data-source.yml"),
        "--contract",
        str(project / "soda-contract.yml"),
    ]
    started = time.perf_counter()
    done = subprocess.run(
        command,
        cwd=project,  # whatever Soda might write stays in the temporary project
        env={**os.environ, **SODA_ENV},
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT_S,
        check=False,
    )
    elapsed = time.perf_counter() - started
    report: dict[str, Any] = _report_from("soda", dataset, done)
    report["process_s"] = elapsed
    return report


def run_cli(dataset: Dataset, project: Path) -> dict[str, Any]:
    """The whole ``dq-agent check --format json`` command, timed from outside."""
    command = [*_dq_agent_command(), "check", "--project", str(project), "--format", "json"]
    started = time.perf_counter()
    done = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=CHILD_TIMEOUT_S, check=False
    )
    elapsed = time.perf_counter() - started
    try:
        suites = json.loads(done.stdout)["suites"]
    except (ValueError, KeyError) as exc:
        raise SystemExit(
            f"dq-agent check on {dataset.backend} printed no JSON report (exit "
            f"{done.returncode}): {exc}\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
        ) from exc
    outcomes = {c["name"]: c["status"] == "pass" for s in suites for c in s["checks"]}
    outcomes.update({f"suite {s['suite']}": False for s in suites if s.get("error")})
    passed = done.returncode == 0 and bool(outcomes) and all(outcomes.values())
    return {
        "tool": "cli",
        "backend": dataset.backend,
        "cli_wall_s": elapsed,
        "exit_code": done.returncode,
        "passed": passed,
        "outcomes": outcomes,
    }


def require_pass(report: dict[str, Any]) -> None:
    """Stop the run unless every check passed, but for a warning from the one check the tool
    may leave warning (``MAY_WARN``)."""
    if report["passed"]:
        return
    may_warn = MAY_WARN.get(report["tool"])
    statuses: dict[str, str] = report.get("statuses", {})
    messages: dict[str, str] = report.get("messages", {})
    failed = [
        name
        for name, ok in sorted(report["outcomes"].items())
        if not ok and not (name == may_warn and statuses.get(name) == "warn")
    ]
    if report["outcomes"] and not failed:
        return
    named = [
        f"{name} ({statuses[name]}: {messages.get(name, '')})" if name in statuses else name
        for name in failed
    ]
    but = f" (but {may_warn}, which may warn)" if may_warn else ""
    raise CheckFailure(
        f"ABORT: {LABELS[report['tool']]} on {report['backend']} reports failing checks: "
        f"{', '.join(named) or '(none named)'}. The data is built so that every check "
        f"passes{but}; timings of a suite that does not pass are not comparable."
    )


def fat_finger_found(report: dict[str, Any]) -> str:
    """What the fat_finger check of a ``dq_agent_ff`` report said: status, findings, message."""
    status = report["statuses"][FAT_FINGER_CHECK]
    found = report["findings"][FAT_FINGER_CHECK]
    message = report.get("messages", {}).get(FAT_FINGER_CHECK)
    return f"{status}, {found} findings" + (f": {message}" if message else "")


def warm_up(dataset: Dataset, projects: dict[str, Path], soda_python: Path | None) -> None:
    """Read the table once (and check the data passes), then create dq-agent's state store
    (and, with ``dq_agent_ff`` among ``projects``, that project's, by one untimed run).

    Soda, where it runs, verifies its contract once too: a contract that does not pass stops
    the run before anything is timed. On Spark the single-pass query's child reads the file
    (a session in this process would keep a JVM running all along).
    """
    project = projects["dq_agent"]
    started = time.perf_counter()
    if dataset.backend == "spark":
        require_pass(run_child("single_sql", dataset, project))
    else:
        engine = sa.create_engine(dataset.url)
        try:
            with engine.connect() as conn:
                row = conn.execute(sa.text(single_pass_sql(dataset.table))).mappings().one()
        finally:
            engine.dispose()
        outcomes = evaluate_single_pass(dict(row), datetime.now(UTC))
        require_pass(
            {
                "tool": "single_sql",
                "backend": dataset.backend,
                "passed": all(outcomes.values()),
                "outcomes": outcomes,
            }
        )
    log(f"{dataset.backend}: warm-up query {time.perf_counter() - started:.2f}s")
    # A scheduled monitor finds its state store already there: create it before timing.
    require_pass(run_cli(dataset, project))
    if "dq_agent_ff" in projects:
        report = run_child("dq_agent_ff", dataset, projects["dq_agent_ff"])
        require_pass(report)
        log(f"{dataset.backend}: {FAT_FINGER_CHECK} {fat_finger_found(report)}")
    if soda_python is not None:
        report = run_soda(dataset, project, soda_python)
        require_pass(report)
        log(f"{dataset.backend}: Soda Core {report.get('soda_version', '?')}'s contract passes")


def measure(
    dataset: Dataset,
    repeat: int,
    projects: dict[str, Path],
    tools: Sequence[str],
    soda_python: Path | None,
) -> list[dict[str, Any]]:
    """Each tool ``repeat`` times, taking turns; ``projects``: each tool's directory (its
    dq-agent project; Soda's files sit in dq_agent's), ``dq_agent``'s for those not named."""
    samples: list[dict[str, Any]] = []
    order = tuple(tools)
    for round_ in range(repeat):
        shift = round_ % len(order)
        for tool in order[shift:] + order[:shift]:
            project = projects.get(tool, projects["dq_agent"])
            if tool == "cli":
                report = run_cli(dataset, project)
                shown = f"wall {report['cli_wall_s']:.3f}s"
            else:
                if tool == "soda":
                    assert soda_python is not None
                    report = run_soda(dataset, project, soda_python)
                else:
                    report = run_child(tool, dataset, project)
                shown = (
                    f"work {report['work_s']:.3f}s, import {report['import_s']:.2f}s, "
                    f"{report['statements']} statements, {report['scans']} scans"
                )
                if tool == "dq_agent_ff":
                    shown += f"; {FAT_FINGER_CHECK} {report['findings'][FAT_FINGER_CHECK]} findings"
            require_pass(report)
            report["round"] = round_ + 1
            samples.append(report)
            log(
                f"{dataset.backend} {dataset.rows:,} round {round_ + 1}/{repeat}: "
                f"{LABELS[tool]:<20} {shown}"
            )
    return samples


# --- the report -----------------------------------------------------------------------------


def summarize(samples: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per tool: medians of the times, the highest peak RSS, the statement and scan counts
    seen."""
    summary: dict[str, dict[str, Any]] = {}
    for tool in TOOLS:
        mine = [s for s in samples if s["tool"] == tool]
        if not mine:
            continue
        if tool == "cli":
            summary[tool] = {"cli_wall_s": statistics.median(s["cli_wall_s"] for s in mine)}
            continue
        summary[tool] = {
            key: statistics.median(s[key] for s in mine)
            for key in ("work_s", "setup_s", "import_s", "process_s")
        }
        summary[tool]["peak_rss_mb"] = max(s["peak_rss_mb"] for s in mine)
        for key in ("statements", "scans", "cache_scans", "setup_statements", "other_statements"):
            summary[tool][key] = sorted({s[key] for s in mine})
        summary[tool]["sql"] = mine[-1]["sql"]
        if tool == "dq_agent_ff":
            summary[tool]["findings"] = sorted({s["findings"][FAT_FINGER_CHECK] for s in mine})
            summary[tool]["statuses"] = sorted({s["statuses"][FAT_FINGER_CHECK] for s in mine})
            summary[tool]["message"] = mine[-1].get("messages", {}).get(FAT_FINGER_CHECK)
    work = {tool: float(summary[tool]["work_s"]) for tool in TIMED if tool in summary}
    ratios = {"dq_agent_over_single_sql": work["dq_agent"] / work["single_sql"]}
    if "dq_agent_ff" in work:
        ratios["dq_agent_ff_over_dq_agent"] = work["dq_agent_ff"] / work["dq_agent"]
    if "gx" in work:
        ratios["gx_over_dq_agent"] = work["gx"] / work["dq_agent"]
    if "soda" in work:
        ratios["soda_over_dq_agent"] = work["soda"] / work["dq_agent"]
        ratios["soda_over_single_sql"] = work["soda"] / work["single_sql"]
    summary["ratios"] = ratios
    return summary


def _counts(values: list[int]) -> str:
    return "/".join(str(v) for v in values)


def _notes(tool: str, row: dict[str, Any]) -> str:
    """What the statement and scan columns leave out."""
    notes = []
    if any(row["cache_scans"]):
        notes.append(f"+{_counts(row['cache_scans'])} of a cache")
    if any(row["setup_statements"]):
        notes.append(f"+{_counts(row['setup_statements'])} statements before the work")
    if any(row["other_statements"]):
        notes.append(f"+{_counts(row['other_statements'])} to its state store")
    if tool == "soda":
        notes.append("counted at the psycopg cursor")
    return "; ".join(notes)


def _gx_target(backend: str, ratio: float) -> tuple[str, bool]:
    least = MIN_GX_RATIO_ON.get(backend, MIN_GX_RATIO)
    if least == 1:
        return "target > 1x (dq-agent faster)", ratio > 1
    return f"target >= {least:g}x (dq-agent {least:g}x faster)", ratio >= least


def print_report(
    dataset: Dataset,
    repeat: int,
    summary: dict[str, dict[str, Any]],
    soda_skipped: str | None,
    gx_skipped: str | None,
) -> None:
    print()
    checks = "10 checks" + (f" (+ {FAT_FINGER_CHECK})" if "dq_agent_ff" in summary else "")
    print(f"== {dataset.backend}: {dataset.rows:,} rows, {checks}, median of {repeat} ==")
    header = (
        f"{'tool':<22}{'work s':>9}{'setup s':>9}{'import s':>10}{'process s':>11}"
        f"{'peak RSS MB':>13}{'stmts':>7}{'scans':>7}"
    )
    print(header)
    print("-" * len(header))
    for tool in TIMED:
        if tool == "gx" and gx_skipped:
            print(f"{LABELS['gx']:<22}  n/a on {dataset.backend}: {gx_skipped}")
        if tool not in summary:
            continue
        row = summary[tool]
        notes = _notes(tool, row)
        print(
            f"{LABELS[tool]:<22}{row['work_s']:>9.3f}{row['setup_s']:>9.3f}{row['import_s']:>10.2f}"
            f"{row['process_s']:>11.2f}{row['peak_rss_mb']:>13.0f}"
            f"{_counts(row['statements']):>7}{_counts(row['scans']):>7}"
            + (f"  ({notes})" if notes else "")
        )
    print(
        f"{LABELS['cli']:<22}{summary['cli']['cli_wall_s']:>9.3f}"
        "  (wall clock of the whole `dq-agent check --format json` command)"
    )
    if soda_skipped:
        print(f"{LABELS['soda']:<22}  skipped: {soda_skipped}")
    ratios = summary["ratios"]
    to_sql = ratios["dq_agent_over_single_sql"]
    most = MAX_RATIO_TO_SQL_ON.get(dataset.backend, MAX_RATIO_TO_SQL)
    verdict = {True: "PASS", False: "MISS"}
    lines = [
        (
            "dq-agent / single-pass SQL (work):",
            to_sql,
            f"target <= {most:g}x   {verdict[to_sql <= most]}",
        ),
    ]
    if "dq_agent_ff_over_dq_agent" in ratios:
        ff_ratio = ratios["dq_agent_ff_over_dq_agent"]
        within = ff_ratio <= MAX_FAT_FINGER_RATIO
        lines.append(
            (
                f"{LABELS['dq_agent_ff']} / dq-agent (work):",
                ff_ratio,
                f"target <= {MAX_FAT_FINGER_RATIO:g}x   {verdict[within]}",
            )
        )
    if "gx_over_dq_agent" in ratios:
        gx_ratio = ratios["gx_over_dq_agent"]
        target, met = _gx_target(dataset.backend, gx_ratio)
        lines.append(("plain GX / dq-agent (work):", gx_ratio, f"{target}   {verdict[met]}"))
    if "soda_over_dq_agent" in ratios:
        lines.append(("Soda Core 4 / dq-agent (work):", ratios["soda_over_dq_agent"], ""))
        lines.append(("Soda Core 4 / single-pass SQL (work):", ratios["soda_over_single_sql"], ""))
    for label, ratio, target in lines:
        print(f"{label:<42}{ratio:6.2f}x   {target}".rstrip())
    if "gx_over_dq_agent" not in ratios:
        print(f"{'plain GX / dq-agent (work):':<42}   n/a   (no GX on {dataset.backend})")
    if "dq_agent_ff" in summary:
        ff = summary["dq_agent_ff"]
        print(
            f"{FAT_FINGER_CHECK}: {'/'.join(ff['statuses'])}, {_counts(ff['findings'])} findings"
            + (f" ({ff['message']})" if ff["message"] else "")
        )
    for tool in ("dq_agent", "dq_agent_ff"):
        if tool not in summary:
            continue
        if dataset.backend == "spark":
            print(f"{LABELS[tool]}'s spark.sql calls (last round):")
        else:
            print(f"{LABELS[tool]}'s statements to the database (last round):")
        for statement in summary[tool]["sql"]:
            print(f"  {statement}")
    if "soda" in summary:
        print("Soda Core 4's statements to the database (last round):")
        for statement in summary["soda"]["sql"]:
            print(f"  {statement}")
        print("Soda Core 4's contract against the others' checks:")
        for note in SODA_NOTES:
            print(f"  - {note}")


SODA_ELSEWHERE = {
    "sqlite": "no SQLite data source for Soda Core 4 on PyPI (PostgreSQL only)",
    "duckdb": "PostgreSQL only here (soda-duckdb 4.28.0 exists but is not installed)",
    "mariadb": "no MySQL/MariaDB data source for Soda Core 4 on PyPI (PostgreSQL only)",
    "spark": "PostgreSQL only here (soda-sparkdf 4.28.0 exists but is not installed)",
}


def _soda_for(backend: str, unavailable: str | None) -> str | None:
    """Why Soda is skipped on ``backend``, or None when it runs there."""
    if backend != "postgresql":
        return SODA_ELSEWHERE[backend]
    return unavailable


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    print(__doc__.split("\n\n")[0] if __doc__ else "", flush=True)
    tighter = ", ".join(f"{ratio:g}x on {b}" for b, ratio in MAX_RATIO_TO_SQL_ON.items())
    gx = ", ".join(f"at most 1/{ratio:g} of it on {b}" for b, ratio in MIN_GX_RATIO_ON.items())
    print(LEGEND.format(ratio=MAX_RATIO_TO_SQL, tighter=tighter, gx=gx), flush=True)
    if args.fat_finger:
        print(FAT_FINGER_LEGEND.format(ratio=MAX_FAT_FINGER_RATIO), flush=True)

    soda_unavailable_reason: str | None = None
    if "postgresql" in args.backends:
        soda_unavailable_reason = soda_unavailable(args.soda_python)
        if soda_unavailable_reason:
            log(f"Soda Core 4 skipped: {soda_unavailable_reason}")
    for backend in args.backends:
        if backend != "postgresql":
            log(f"Soda Core 4 skipped on {backend}: {_soda_for(backend, None)}")
        if backend in GX_UNSUPPORTED:
            log(f"plain GX n/a on {backend}: {GX_UNSUPPORTED[backend]}")

    datasets: list[Dataset] = []
    urls = {"postgresql": args.postgres_url, "mariadb": args.mariadb_url}
    unreachable: set[str] = set()
    for rows in args.rows:
        for backend in args.backends:
            if backend == "sqlite":
                datasets.append(prepare_sqlite(args.data_dir, rows, log))
            elif backend == "duckdb":
                datasets.append(prepare_duckdb(args.data_dir, rows, log))
            elif backend == "spark" and backend not in unreachable:
                missing = spark_unavailable()
                if missing is None:
                    datasets.append(prepare_spark(args.data_dir, rows, log))
                else:
                    log(f"Spark cannot start here, {missing}: skipping it")
                    unreachable.add(backend)
            elif backend not in unreachable:
                prepare = prepare_postgres if backend == "postgresql" else prepare_mariadb
                try:
                    datasets.append(prepare(urls[backend], rows, log))
                except Unreachable as exc:
                    name = SERVERS[backend]
                    log(f"{name} is unreachable at {urls[backend]} ({exc}): skipping it")
                    unreachable.add(backend)
    if not datasets:
        if unreachable:  # like the server half of a run, skipped, not failed
            names = " and ".join(SERVERS[b] for b in sorted(unreachable))
            log(f"nothing to measure: every backend asked for is unreachable ({names})")
            return 0
        raise SystemExit("nothing to measure")

    results: dict[str, Any] = {
        "started_at": datetime.now(UTC).isoformat(),
        "rows": args.rows[0] if len(args.rows) == 1 else args.rows,
        "repeat": args.repeat,
        "python": sys.version.split()[0],
        "fat_finger": args.fat_finger,
        "backends": {},  # backend -> its run at the first size in --rows
        "runs": [],  # every (backend, size) run
    }
    reports: list[tuple[Dataset, dict[str, dict[str, Any]], str | None, str | None]] = []
    with tempfile.TemporaryDirectory(prefix="dq-bench-") as tmp:
        for dataset in datasets:
            name = f"{dataset.backend}-{dataset.rows}"
            projects = {
                "dq_agent": write_dq_agent_project(
                    Path(tmp) / name, dataset.backend, dataset.url, dataset.schema
                )
            }
            if args.fat_finger:
                projects["dq_agent_ff"] = write_dq_agent_project(
                    Path(tmp) / f"{name}-fat-finger",
                    dataset.backend,
                    dataset.url,
                    dataset.schema,
                    fat_finger=True,
                )
            skipped = _soda_for(dataset.backend, soda_unavailable_reason)
            gx_skipped = GX_UNSUPPORTED.get(dataset.backend)
            soda_python = None if skipped else args.soda_python
            left_out = {"soda"} if soda_python is None else set()
            if not args.fat_finger:
                left_out.add("dq_agent_ff")
            if gx_skipped:
                left_out.add("gx")
            tools = [tool for tool in TOOLS if tool not in left_out]
            if soda_python is not None:
                assert dataset.schema is not None
                write_soda_project(projects["dq_agent"], dataset.url, dataset.schema)
            warm_up(dataset, projects, soda_python)
            samples = measure(dataset, args.repeat, projects, tools, soda_python)
            summary = summarize(samples)
            run = {
                "backend": dataset.backend,
                "rows": dataset.rows,
                "soda_skipped": skipped,
                "gx_skipped": gx_skipped,
                "summary": summary,
                "samples": samples,
            }
            results["runs"].append(run)
            results["backends"].setdefault(dataset.backend, run)
            reports.append((dataset, summary, skipped, gx_skipped))
    for dataset, summary, skipped, gx_skipped in reports:
        print_report(dataset, args.repeat, summary, skipped, gx_skipped)
    results["total_s"] = time.perf_counter() - _T0
    print(f"\ntotal {results['total_s']:.0f}s")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2, default=str), encoding="utf-8")
        print(f"raw results written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
