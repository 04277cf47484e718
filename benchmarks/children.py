"""One measurement in a fresh process: ``python -m benchmarks.children TOOL --backend ...``.

Prints one JSON object on its last stdout line:

- ``import_s``: importing the tool (and SQLAlchemy, whose events count the statements, and
  the database driver: the DBAPI module and SQLAlchemy's dialect for the URL; on Spark,
  PySpark);
- ``setup_s``: building the tool's configuration objects before it reads the table (on Spark,
  starting the session's JVM too);
- ``work_s``: the checking itself, up to and including the verdicts (and, for dq-agent,
  recording the run in its state store, as every run of the product does);
- ``peak_rss_mb`` (on Spark, this process's and its JVM's together);
- what the work sent to the engine: ``statements`` and ``scans`` (the reads of the table in
  them, ``cache_scans`` those of a cached copy), ``sql`` (each statement shortened),
  ``setup_statements`` (sent to the benchmark database before the work) and
  ``other_statements`` (to anything else: dq-agent's state store);
- ``passed`` (every check held) and ``outcomes`` (each check's verdict by name); dq-agent's
  also ``statuses`` (each check's status: pass, warn, fail or error), ``findings`` (how many
  each check listed) and ``messages`` (those of the checks that did not pass).

``dq_agent_ff`` is dq-agent on a project whose suite adds the ``fat_finger`` check
(``suite.FAT_FINGER``): the same runner, given that project.

How statements and scans are counted:

- on SQL engines, SQLAlchemy's ``before_cursor_execute`` event sees every statement; a scan is
  a reference to the table after ``FROM`` or ``JOIN`` in one of them (``table_reads``);
- on Spark, Spark's own SQL status store (the web UI's SQL tab, kept without the UI) records
  every query it runs, whether it came from ``spark.sql`` text or a DataFrame: each is a
  statement, and its physical plan's ``Scan parquet`` nodes are its scans (``plan_scans``).
  ``sql`` lists the ``spark.sql`` calls, or where there are none the queries' call sites.
"""

from __future__ import annotations

import argparse
import functools
import json
import re
import resource
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

STARTED = time.perf_counter()

import sqlalchemy as sa  # noqa: E402  (after STARTED: its import is part of import_s)

from benchmarks.suite import (  # noqa: E402
    SPARK_CONF,
    SPARK_MASTER,
    TABLE,
    evaluate_single_pass,
    gx_checks,
    single_pass_sql,
)

TOOLS = ("single_sql", "dq_agent", "dq_agent_ff", "gx")
BACKENDS = ("sqlite", "postgresql", "duckdb", "mariadb", "spark")
SQL_SHOWN = 160  # characters of each statement kept in the report

# The table after FROM or JOIN, quoted or not, qualified by a schema (and a database) or not.
# Catalogue queries name it as a value (``table_name = 'bench_orders'``) or a parameter, and
# SQLite's ``PRAGMA table_info("bench_orders")`` has no FROM: none of them is a scan.
_NAME = r'(?:\w+|"[^"]+"|`[^`]+`|\[[^\]]+\])'
_READS_TABLE = re.compile(
    rf'\b(?:FROM|JOIN)\s+(?:{_NAME}\s*\.\s*){{0,2}}["`\[]?{TABLE}["`\]]?(?![\w.])', re.I
)
# A node of a physical plan's tree as Spark's status store describes it (formatted EXPLAIN):
# ``+- * HashAggregate (9)``, ``Scan parquet  (3)``; the details below the tree begin with
# ``(9) HashAggregate`` and never match.
_PLAN_NODE = re.compile(r"^(?P<lead>[ +\-:*]*)(?P<name>[A-Za-z][A-Za-z ]*?) +\((?P<id>\d+)\)")


def table_reads(statement: str) -> int:
    """How many times ``statement`` reads the benchmark table: its references to it after
    FROM or JOIN (each may be answered from an index, or stop early at a LIMIT)."""
    return len(_READS_TABLE.findall(statement))


def plan_scans(plan: str) -> tuple[int, int]:
    """The file scans and the cache scans in a physical plan as Spark's status store keeps it:
    its ``Scan parquet`` nodes, but for those under an ``InMemoryRelation`` (they fill a cached
    copy, once, not each time the plan runs), and its ``InMemoryTableScan`` nodes."""
    nodes: dict[str, tuple[str, bool]] = {}
    path: list[tuple[int, str]] = []  # the current node's ancestors, with their indentation
    for line in plan.splitlines():
        match = _PLAN_NODE.match(line)
        if match is None:
            continue
        depth, name = len(match["lead"]), match["name"].strip()
        while path and path[-1][0] >= depth:
            path.pop()
        # The initial plan of an adaptive one repeats nodes of the final plan, by number.
        nodes.setdefault(match["id"], (name, any(a == "InMemoryRelation" for _, a in path)))
        path.append((depth, name))
    files = sum(1 for name, cached in nodes.values() if name == "Scan parquet" and not cached)
    caches = sum(1 for name, _ in nodes.values() if name == "InMemoryTableScan")
    return files, caches


def _vm_hwm_mb(pid: int | str) -> float | None:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def peak_rss_mb() -> float:
    """This process's peak resident set, in MB.

    VmHWM where Linux has it: ``ru_maxrss`` keeps the parent's peak across the
    vfork+exec that starts this process, so a parent that built a table in-process
    (DuckDB, SQLite) would show up as this child's memory.
    """
    peak = _vm_hwm_mb("self")
    if peak is not None:
        return peak
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@dataclass
class Measurement:
    import_s: float = 0.0
    setup_s: float = 0.0
    work_s: float = 0.0
    outcomes: dict[str, bool] = field(default_factory=dict)
    # dq-agent only: each check's status, findings listed, and message where it did not pass.
    details: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class StatementLog:
    """Counts statements per engine: those the work sends to the benchmark database (and the
    scans in them), those sent to it before the work, and those to anything else."""

    backend: str  # SQLAlchemy's backend name: "mysql" for MariaDB
    database: str | None
    sql: list[str] = field(default_factory=list)
    scans: int = 0
    setup: int = 0
    other: int = 0
    working: bool = False

    def install(self) -> None:
        sa.event.listen(sa.engine.Engine, "before_cursor_execute", self._on_execute)

    def begin(self) -> None:
        self.working = True

    def end(self) -> None:
        self.working = False

    def report(self) -> dict[str, Any]:
        return {
            "statements": len(self.sql),
            "scans": self.scans,
            "cache_scans": 0,
            "setup_statements": self.setup,
            "other_statements": self.other,
            "sql": self.sql,
        }

    def _on_execute(
        self,
        conn: sa.Connection,
        _cursor: Any,
        statement: str,
        _parameters: Any,
        _context: Any,
        _executemany: bool,
    ) -> None:
        url = conn.engine.url
        if url.get_backend_name() != self.backend or url.database != self.database:
            self.other += 1
        elif not self.working:
            self.setup += 1
        else:
            self.sql.append(" ".join(statement.split())[:SQL_SHOWN])
            self.scans += table_reads(statement)


class SparkLog:
    """What the work asked of Spark: the queries its SQL status store recorded meanwhile (with
    the scans in their plans), the caches they filled, and the ``spark.sql`` calls."""

    def __init__(self) -> None:
        self.sql: list[str] = []
        self.sites: list[str] = []  # where the queries were started: GX's calls
        self.statements = 0
        self.scans = 0
        self.cache_scans = 0
        self.working = False
        self._seen: set[int] = set()
        self._cached = 0
        self._jvm_peak_mb = 0.0

    def install(self) -> None:
        from pyspark.sql import SparkSession

        sql = SparkSession.sql
        log = self

        @functools.wraps(sql)
        def counted(spark: Any, query: str, *args: Any, **kwargs: Any) -> Any:
            if log.working:
                log.sql.append(" ".join(query.split())[:SQL_SHOWN])
            return sql(spark, query, *args, **kwargs)

        SparkSession.sql = counted  # type: ignore[method-assign,assignment]

    @staticmethod
    def _spark() -> Any:
        from pyspark.sql import SparkSession

        spark = SparkSession.getActiveSession()
        if spark is None:
            raise SystemExit("no active Spark session to count the statements of")
        return spark

    @staticmethod
    def _settled(spark: Any) -> Any:
        """The JVM's SparkContext once its listeners have seen every event so far."""
        context = spark.sparkContext._jsc.sc()
        context.listenerBus().waitUntilEmpty()
        return context

    @staticmethod
    def _executions(spark: Any) -> list[Any]:
        listed = spark._jsparkSession.sharedState().statusStore().executionsList()
        return [listed.apply(i) for i in range(listed.size())]

    def begin(self) -> None:
        spark = self._spark()
        context = self._settled(spark)
        self._seen = {int(e.executionId()) for e in self._executions(spark)}
        self._cached = len(context.getRDDStorageInfo())
        self.working = True

    def end(self) -> None:
        self.working = False
        spark = self._spark()
        context = self._settled(spark)
        for execution in self._executions(spark):
            if int(execution.executionId()) in self._seen:
                continue
            self.statements += 1
            files, caches = plan_scans(str(execution.physicalPlanDescription()))
            self.scans += files
            self.cache_scans += caches
            site = re.sub(r"\S*/site-packages/", "", str(execution.description()))
            self.sites.append(site[:SQL_SHOWN])
        # A cache filled during the work read the file once: Spark keeps it in its storage.
        self.scans += len(context.getRDDStorageInfo()) - self._cached
        self._jvm_peak_mb = _vm_hwm_mb(spark.sparkContext._gateway.proc.pid) or 0.0

    def jvm_peak_mb(self) -> float:
        """The JVM's peak resident set at the end of the work, in MB."""
        return self._jvm_peak_mb

    def stop(self) -> None:
        """Stop the session: its JVM exits before this process does."""
        self._spark().stop()

    def report(self) -> dict[str, Any]:
        return {
            "statements": self.statements,
            "scans": self.scans,
            "cache_scans": self.cache_scans,
            "setup_statements": 0,
            "other_statements": 0,
            "sql": self.sql or self.sites,
        }


Log = StatementLog | SparkLog


def spark_session() -> Any:
    """A session with the benchmark's settings, those of dq-agent's connector."""
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.master(SPARK_MASTER)
    for name, value in SPARK_CONF.items():
        builder = builder.config(name, value)
    return builder.getOrCreate()


def run_single_sql(args: argparse.Namespace, log: Log) -> Measurement:
    if args.backend == "spark":
        return _single_sql_on_spark(args, log)
    started = time.perf_counter()
    query = sa.text(single_pass_sql(args.table))
    engine = sa.create_engine(args.url)
    ready = time.perf_counter()
    log.begin()
    with engine.connect() as conn:
        row = conn.execute(query).mappings().one()
    outcomes = evaluate_single_pass(dict(row), datetime.now(UTC))
    engine.dispose()
    done = time.perf_counter()
    log.end()
    return Measurement(started - STARTED, ready - started, done - ready, outcomes)


def _single_sql_on_spark(args: argparse.Namespace, log: Log) -> Measurement:
    """The same single-pass query as Spark SQL, over the Parquet file (``args.table``)."""
    started = time.perf_counter()
    query = single_pass_sql(args.table)
    spark = spark_session()
    ready = time.perf_counter()
    log.begin()
    row = spark.sql(query).collect()[0].asDict()
    outcomes = evaluate_single_pass(row, datetime.now(UTC))
    done = time.perf_counter()
    log.end()
    return Measurement(started - STARTED, ready - started, done - ready, outcomes)


def run_dq_agent(args: argparse.Namespace, log: Log) -> Measurement:
    from dq_agent.config.loader import load_project
    from dq_agent.config.models import SparkConnector
    from dq_agent.engine import RunOptions, run_checks, select_suites
    from dq_agent.sources.spark import session
    from dq_agent.store import Store

    started = time.perf_counter()
    project = load_project(args.project)
    if project.issues:
        raise SystemExit("invalid benchmark project: " + "; ".join(map(str, project.issues)))
    store = Store.open(project.state_url)
    for connector in project.connectors.values():
        if isinstance(connector, SparkConnector):
            # The process's session, which the run then finds started: a daemon starts it once.
            session(connector)
    ready = time.perf_counter()
    log.begin()
    with store:
        results = run_checks(project, select_suites(project, []), store=store, options=RunOptions())
    done = time.perf_counter()
    log.end()
    checks = [c for r in results for c in r.checks]
    outcomes = {c.name: c.status == "pass" for c in checks}
    for r in results:
        if r.error:
            outcomes[f"suite {r.suite}: {r.error}"] = False
    details: dict[str, dict[str, Any]] = {
        "statuses": {c.name: c.status for c in checks},
        "findings": {c.name: len(c.findings) for c in checks},
        "messages": {c.name: c.message for c in checks if c.status != "pass"},
    }
    return Measurement(started - STARTED, ready - started, done - ready, outcomes, details)


def run_gx(args: argparse.Namespace, log: Log) -> Measurement:
    import great_expectations as gx
    import great_expectations.expectations as gxe
    from great_expectations.data_context.types.base import ProgressBarsConfig

    started = time.perf_counter()
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    sources = context.data_sources
    spark = None
    if args.backend == "spark":
        # GX takes the session already started with the benchmark's settings. (Given them as
        # its spark_config, it would stop that session and start another: it cannot set the
        # static spark.sql.warehouse.dir, which Spark reports back as a file: URL.) It persists
        # the batch's DataFrame (persist: true, its default) and computes its metrics from there.
        spark = spark_session()
        datasource: Any = sources.add_spark(name="bench")
        batch = datasource.add_dataframe_asset(name=TABLE).add_batch_definition_whole_dataframe(
            "whole dataframe"
        )
    else:
        # GX has no MariaDB/MySQL data source of its own: its generic SQL one speaks the mysql
        # dialect. (Not DuckDB: run.py reports GX there as n/a, see GX_UNSUPPORTED.)
        add = {"sqlite": sources.add_sqlite, "postgresql": sources.add_postgres}.get(
            args.backend, sources.add_sql
        )
        datasource = add(name="bench", connection_string=args.url)
        asset = datasource.add_table_asset(name=TABLE, table_name=TABLE, schema_name=args.schema)
        batch = asset.add_batch_definition_whole_table("whole table")
    suite = context.suites.add(gx.ExpectationSuite(name="bench_orders"))
    for name, kind, kwargs in gx_checks(datetime.now(UTC)):
        expectation = getattr(gxe, "".join(p.title() for p in kind.split("_")))
        suite.add_expectation(expectation(**kwargs, meta={"check": name}))
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(name="bench_orders", data=batch, suite=suite)
    )
    ready = time.perf_counter()
    log.begin()
    if spark is None:
        outcome = definition.run(result_format="SUMMARY")
    else:  # reading the file's schema is work here, as dq-agent's and the query's are
        frame = spark.read.parquet(args.url)
        outcome = definition.run(batch_parameters={"dataframe": frame}, result_format="SUMMARY")
    done = time.perf_counter()
    log.end()
    outcomes: dict[str, bool] = {}
    for index, item in enumerate(outcome.results):
        config = item.expectation_config
        check = (config.meta or {}).get("check") if config is not None else None
        outcomes[str(check or f"result #{index}")] = bool(item.success)
    if not outcome.success and all(outcomes.values()):
        outcomes["validation"] = False
    return Measurement(started - STARTED, ready - started, done - ready, outcomes)


RUNNERS: dict[str, Callable[[argparse.Namespace, Log], Measurement]] = {
    "single_sql": run_single_sql,
    "dq_agent": run_dq_agent,
    "dq_agent_ff": run_dq_agent,  # its --project has the fat_finger check
    "gx": run_gx,
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("tool", choices=TOOLS)
    parser.add_argument("--backend", required=True, choices=BACKENDS)
    parser.add_argument(
        "--url",
        required=True,
        help="SQLAlchemy URL of the benchmark database (spark: the Parquet file's path)",
    )
    parser.add_argument("--schema", default=None)
    parser.add_argument("--table", required=True, help="the table as SQL (schema-qualified)")
    parser.add_argument(
        "--project", type=Path, help="the dq-agent project (dq_agent and dq_agent_ff only)"
    )
    args = parser.parse_args(argv)

    # The driver is every tool's import, not part of anyone's checking work: the DBAPI module
    # and SQLAlchemy's dialect for the URL (duckdb-engine, a package of its own, takes 0.07 s);
    # on Spark, PySpark.
    log: Log
    if args.backend == "spark":
        log = SparkLog()
    else:
        url = sa.make_url(args.url)
        url.get_dialect().import_dbapi()
        log = StatementLog(url.get_backend_name(), url.database)
    log.install()
    measured = RUNNERS[args.tool](args, log)
    peak = peak_rss_mb()
    if isinstance(log, SparkLog):
        peak += log.jvm_peak_mb()
    report = {
        "tool": args.tool,
        "backend": args.backend,
        "import_s": measured.import_s,
        "setup_s": measured.setup_s,
        "work_s": measured.work_s,
        "peak_rss_mb": peak,
        **log.report(),
        "passed": bool(measured.outcomes) and all(measured.outcomes.values()),
        "outcomes": measured.outcomes,
        **measured.details,
    }
    if isinstance(log, SparkLog):
        log.stop()
    sys.stdout.flush()
    print(json.dumps(report))


if __name__ == "__main__":
    main()
