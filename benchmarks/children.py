"""One measurement in a fresh process: ``python -m benchmarks.children TOOL --backend ...``.

Prints one JSON object on its last stdout line:

- ``import_s``: importing the tool (and SQLAlchemy, whose events count the statements, and
  the database driver: the DBAPI module and SQLAlchemy's dialect for the URL);
- ``setup_s``: building the tool's configuration objects before it reads the table;
- ``work_s``: the checking itself, up to and including the verdicts (and, for dq-agent,
  recording the run in its state store, as every run of the product does);
- ``peak_rss_mb``, the SQL statements sent to the benchmark database (``statements`` and
  ``sql``, each shortened) and to anything else (``other_statements``: dq-agent's state store);
- ``passed`` (every check held) and ``outcomes`` (each check's verdict by name).
"""

from __future__ import annotations

import argparse
import json
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

from benchmarks.suite import TABLE, evaluate_single_pass, gx_checks, single_pass_sql  # noqa: E402

TOOLS = ("single_sql", "dq_agent", "gx")
BACKENDS = ("sqlite", "postgresql", "duckdb", "mariadb")
SQL_SHOWN = 160  # characters of each statement kept in the report


def peak_rss_mb() -> float:
    """This process's peak resident set, in MB.

    VmHWM where Linux has it: ``ru_maxrss`` keeps the parent's peak across the
    vfork+exec that starts this process, so a parent that built a table in-process
    (DuckDB, SQLite) would show up as this child's memory.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@dataclass
class Measurement:
    import_s: float = 0.0
    setup_s: float = 0.0
    work_s: float = 0.0
    outcomes: dict[str, bool] = field(default_factory=dict)


@dataclass
class StatementLog:
    """Counts statements per engine: those to the benchmark database, and the rest."""

    backend: str  # SQLAlchemy's backend name: "mysql" for MariaDB
    database: str | None
    sql: list[str] = field(default_factory=list)
    other: int = 0

    def install(self) -> None:
        sa.event.listen(sa.engine.Engine, "before_cursor_execute", self._on_execute)

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
        if url.get_backend_name() == self.backend and url.database == self.database:
            self.sql.append(" ".join(statement.split())[:SQL_SHOWN])
        else:
            self.other += 1


def run_single_sql(args: argparse.Namespace) -> Measurement:
    started = time.perf_counter()
    query = sa.text(single_pass_sql(args.table))
    engine = sa.create_engine(args.url)
    ready = time.perf_counter()
    with engine.connect() as conn:
        row = conn.execute(query).mappings().one()
    outcomes = evaluate_single_pass(dict(row), datetime.now(UTC))
    engine.dispose()
    done = time.perf_counter()
    return Measurement(started - STARTED, ready - started, done - ready, outcomes)


def run_dq_agent(args: argparse.Namespace) -> Measurement:
    from dq_agent.config.loader import load_project
    from dq_agent.engine import RunOptions, run_checks, select_suites
    from dq_agent.store import Store

    started = time.perf_counter()
    project = load_project(args.project)
    if project.issues:
        raise SystemExit("invalid benchmark project: " + "; ".join(map(str, project.issues)))
    store = Store.open(project.state_url)
    ready = time.perf_counter()
    with store:
        results = run_checks(project, select_suites(project, []), store=store, options=RunOptions())
    done = time.perf_counter()
    outcomes = {c.name: c.status == "pass" for r in results for c in r.checks}
    for r in results:
        if r.error:
            outcomes[f"suite {r.suite}: {r.error}"] = False
    return Measurement(started - STARTED, ready - started, done - ready, outcomes)


def run_gx(args: argparse.Namespace) -> Measurement:
    import great_expectations as gx
    import great_expectations.expectations as gxe
    from great_expectations.data_context.types.base import ProgressBarsConfig

    started = time.perf_counter()
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    sources = context.data_sources
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
    outcome = definition.run(result_format="SUMMARY")
    done = time.perf_counter()
    outcomes: dict[str, bool] = {}
    for index, item in enumerate(outcome.results):
        config = item.expectation_config
        check = (config.meta or {}).get("check") if config is not None else None
        outcomes[str(check or f"result #{index}")] = bool(item.success)
    if not outcome.success and all(outcomes.values()):
        outcomes["validation"] = False
    return Measurement(started - STARTED, ready - started, done - ready, outcomes)


RUNNERS: dict[str, Callable[[argparse.Namespace], Measurement]] = {
    "single_sql": run_single_sql,
    "dq_agent": run_dq_agent,
    "gx": run_gx,
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("tool", choices=TOOLS)
    parser.add_argument("--backend", required=True, choices=BACKENDS)
    parser.add_argument("--url", required=True, help="SQLAlchemy URL of the benchmark database")
    parser.add_argument("--schema", default=None)
    parser.add_argument("--table", required=True, help="the table as SQL (schema-qualified)")
    parser.add_argument("--project", type=Path, help="the dq-agent project (dq_agent only)")
    args = parser.parse_args(argv)

    # The driver is every tool's import, not part of anyone's checking work: the DBAPI module
    # and SQLAlchemy's dialect for the URL (duckdb-engine, a package of its own, takes 0.07 s).
    url = sa.make_url(args.url)
    url.get_dialect().import_dbapi()
    log = StatementLog(url.get_backend_name(), url.database)
    log.install()
    measured = RUNNERS[args.tool](args)
    report = {
        "tool": args.tool,
        "backend": args.backend,
        "import_s": measured.import_s,
        "setup_s": measured.setup_s,
        "work_s": measured.work_s,
        "peak_rss_mb": peak_rss_mb(),
        "statements": len(log.sql),
        "other_statements": log.other,
        "passed": bool(measured.outcomes) and all(measured.outcomes.values()),
        "outcomes": measured.outcomes,
        "sql": log.sql,
    }
    sys.stdout.flush()
    print(json.dumps(report))


if __name__ == "__main__":
    main()
