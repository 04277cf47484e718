"""Benchmark: the same ten checks on a generated table, three ways, side by side.

1. dq-agent, the product path (a generated project, its state store in a temporary file);
2. plain Great Expectations 1.x with the same expectations (one ValidationDefinition);
3. one hand-written single-pass aggregate query (the floor: every metric in one SELECT).

Each measurement runs in a fresh process; the tools take turns within each repeat (in a
rotating order) so machine noise hits all of them alike, and medians are reported.

Targets: dq-agent's checking work within 1.5x of the single-pass query, and faster than GX.
A miss is reported, not turned into an error; a tool whose checks fail aborts the run.

Usage: ``.venv/bin/python benchmarks/run.py [--rows N] [--repeat N] [--backends ...]``
"""

from __future__ import annotations

import argparse
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

from benchmarks.data import Dataset, Unreachable, prepare_postgres, prepare_sqlite  # noqa: E402
from benchmarks.suite import (  # noqa: E402
    evaluate_single_pass,
    single_pass_sql,
    write_dq_agent_project,
)

DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
BACKENDS = ("sqlite", "postgresql")
TOOLS = ("single_sql", "dq_agent", "gx", "cli")  # "cli": the whole `dq-agent check` command
LABELS = {
    "single_sql": "single-pass SQL",
    "dq_agent": "dq-agent",
    "gx": "plain GX",
    "cli": "dq-agent CLI",
}
MAX_RATIO_TO_SQL = 1.5
LEGEND = """\
Targets: dq-agent's work within {ratio}x of the single-pass query's, and below plain GX's.
  work     reading the table and judging the checks (dq-agent: connect, reflect the table,
           scan, record the run in its state store; GX: the ValidationDefinition run)
  setup    configuration before that (dq-agent: load the project, open the state store;
           GX: context, datasource, asset, suite; single-pass SQL: create the engine)
  import   module imports, database driver included
  process  the child process's whole wall clock, interpreter start included"""
CHILD_TIMEOUT_S = 3600

_T0 = time.perf_counter()


def log(message: str) -> None:
    print(f"[{time.perf_counter() - _T0:7.1f}s] {message}", flush=True)


class CheckFailure(SystemExit):
    """A tool reported a failing check: its timings would be meaningless."""


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="dq-agent vs plain GX vs one hand-written query on the same ten checks."
    )
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows in the table")
    parser.add_argument("--repeat", type=int, default=3, help="timed rounds (median reported)")
    parser.add_argument(
        "--backends", default=",".join(BACKENDS), help="comma-separated: sqlite,postgresql"
    )
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("DQ_AGENT_BENCH_POSTGRES_URL", DEFAULT_POSTGRES_URL),
        help="database for schema dq_bench (env DQ_AGENT_BENCH_POSTGRES_URL)",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=ROOT / "benchmarks" / ".data",
        help="where the SQLite file is kept",
    )
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    args = parser.parse_args(argv)
    args.backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = sorted(set(args.backends) - set(BACKENDS))
    if unknown or not args.backends:
        parser.error(f"--backends: expected some of {', '.join(BACKENDS)}, got {unknown}")
    if args.rows < 1 or args.repeat < 1:
        parser.error("--rows and --repeat must be at least 1")
    return args


# --- running the tools ----------------------------------------------------------------------


def _dq_agent_command() -> list[str]:
    script = Path(sys.executable).parent / "dq-agent"
    found = str(script) if script.exists() else shutil.which("dq-agent")
    if found is None:
        raise SystemExit("cannot find the dq-agent command next to this Python or on PATH")
    return [found]


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
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        raise SystemExit(
            f"{tool} on {dataset.backend} crashed (exit {done.returncode}):\n"
            f"{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
        )
    report: dict[str, Any] = json.loads(lines[-1])
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
    if report["passed"]:
        return
    failed = sorted(name for name, ok in report["outcomes"].items() if not ok) or ["(none named)"]
    raise CheckFailure(
        f"ABORT: {LABELS[report['tool']]} on {report['backend']} reports failing checks: "
        f"{', '.join(failed)}. The data is built so that every check passes; timings of a "
        "suite that does not pass are not comparable."
    )


def warm_up(dataset: Dataset, project: Path) -> None:
    """Read the table once (and check the data passes), then create dq-agent's state store."""
    started = time.perf_counter()
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


def measure(dataset: Dataset, repeat: int, project: Path) -> list[dict[str, Any]]:
    samples: list[dict[str, Any]] = []
    for round_ in range(repeat):
        shift = round_ % len(TOOLS)
        for tool in TOOLS[shift:] + TOOLS[:shift]:
            if tool == "cli":
                report = run_cli(dataset, project)
                shown = f"wall {report['cli_wall_s']:.3f}s"
            else:
                report = run_child(tool, dataset, project)
                shown = (
                    f"work {report['work_s']:.3f}s, import {report['import_s']:.2f}s, "
                    f"{report['statements']} statements"
                )
            require_pass(report)
            report["round"] = round_ + 1
            samples.append(report)
            log(f"{dataset.backend} round {round_ + 1}/{repeat}: {LABELS[tool]:<16} {shown}")
    return samples


# --- the report -----------------------------------------------------------------------------


def summarize(samples: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per tool: medians of the times, the highest peak RSS, the statement counts seen."""
    summary: dict[str, dict[str, Any]] = {}
    for tool in TOOLS:
        mine = [s for s in samples if s["tool"] == tool]
        if tool == "cli":
            summary[tool] = {"cli_wall_s": statistics.median(s["cli_wall_s"] for s in mine)}
            continue
        summary[tool] = {
            key: statistics.median(s[key] for s in mine)
            for key in ("work_s", "setup_s", "import_s", "process_s")
        }
        summary[tool]["peak_rss_mb"] = max(s["peak_rss_mb"] for s in mine)
        summary[tool]["statements"] = sorted({s["statements"] for s in mine})
        summary[tool]["other_statements"] = sorted({s["other_statements"] for s in mine})
        summary[tool]["sql"] = mine[-1]["sql"]
    work = {tool: float(summary[tool]["work_s"]) for tool in ("single_sql", "dq_agent", "gx")}
    summary["ratios"] = {
        "dq_agent_over_single_sql": work["dq_agent"] / work["single_sql"],
        "gx_over_dq_agent": work["gx"] / work["dq_agent"],
    }
    return summary


def _counts(values: list[int]) -> str:
    return "/".join(str(v) for v in values)


def print_report(dataset: Dataset, repeat: int, summary: dict[str, dict[str, Any]]) -> None:
    print()
    print(f"== {dataset.backend}: {dataset.rows:,} rows, 10 checks, median of {repeat} ==")
    header = (
        f"{'tool':<18}{'work s':>9}{'setup s':>9}{'import s':>10}{'process s':>11}"
        f"{'peak RSS MB':>13}  statements"
    )
    print(header)
    print("-" * len(header))
    for tool in ("single_sql", "dq_agent", "gx"):
        row = summary[tool]
        statements = _counts(row["statements"])
        if any(row["other_statements"]):
            statements += f" (+{_counts(row['other_statements'])} to its state store)"
        print(
            f"{LABELS[tool]:<18}{row['work_s']:>9.3f}{row['setup_s']:>9.3f}{row['import_s']:>10.2f}"
            f"{row['process_s']:>11.2f}{row['peak_rss_mb']:>13.0f}  {statements}"
        )
    print(
        f"{LABELS['cli']:<18}{summary['cli']['cli_wall_s']:>9.3f}"
        "  (wall clock of the whole `dq-agent check --format json` command)"
    )
    ratios = summary["ratios"]
    to_sql, gx_ratio = ratios["dq_agent_over_single_sql"], ratios["gx_over_dq_agent"]
    verdict = {True: "PASS", False: "MISS"}
    print(
        f"dq-agent / single-pass SQL (work): {to_sql:6.2f}x   "
        f"target <= {MAX_RATIO_TO_SQL}x   {verdict[to_sql <= MAX_RATIO_TO_SQL]}"
    )
    print(
        f"plain GX / dq-agent (work):        {gx_ratio:6.2f}x   "
        f"target > 1x (dq-agent faster)   {verdict[gx_ratio > 1]}"
    )
    print("dq-agent's statements to the database (last round):")
    for statement in summary["dq_agent"]["sql"]:
        print(f"  {statement}")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    print(__doc__.split("\n\n")[0] if __doc__ else "", flush=True)
    print(LEGEND.format(ratio=MAX_RATIO_TO_SQL), flush=True)
    datasets: list[Dataset] = []
    for backend in args.backends:
        if backend == "sqlite":
            datasets.append(prepare_sqlite(args.data_dir, args.rows, log))
            continue
        try:
            datasets.append(prepare_postgres(args.postgres_url, args.rows, log))
        except Unreachable as exc:
            log(f"PostgreSQL is unreachable at {args.postgres_url} ({exc}): skipping PostgreSQL")
    if not datasets:
        raise SystemExit("nothing to measure")

    results: dict[str, Any] = {
        "started_at": datetime.now(UTC).isoformat(),
        "rows": args.rows,
        "repeat": args.repeat,
        "python": sys.version.split()[0],
        "backends": {},
    }
    with tempfile.TemporaryDirectory(prefix="dq-bench-") as tmp:
        for dataset in datasets:
            project = write_dq_agent_project(
                Path(tmp) / dataset.backend, dataset.url, dataset.schema
            )
            warm_up(dataset, project)
            samples = measure(dataset, args.repeat, project)
            summary = summarize(samples)
            results["backends"][dataset.backend] = {"summary": summary, "samples": samples}
    for dataset in datasets:
        print_report(dataset, args.repeat, results["backends"][dataset.backend]["summary"])
    results["total_s"] = time.perf_counter() - _T0
    print(f"\ntotal {results['total_s']:.0f}s")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2, default=str), encoding="utf-8")
        print(f"raw results written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
