"""Benchmark: the state store, ``check`` time and memory over many consecutive hourly runs.

The scenario: a project of ``--suites`` suites (default 10), each a ``row_count``, an hourly
``volume_anomaly`` (28 training days) and an hourly ``column_anomaly`` of ``amount``, all on
one SQLite table, checked once an hour for ``--runs`` hours (default 1,000, about six weeks).

Data: a table ``events`` of ``--rows`` rows (default 120,000) in the project's own SQLite file
(``warehouse.sqlite``): ``id``, ``created_at``, ``amount`` (mostly positive, about 1% NULL and
2% negative) and ``category``. Its timestamps cover the 28 days before the first simulated run
and go on through the whole simulated period, at a steady rate with a daily rhythm (busiest in
the afternoon, quietest at night) and a little noise per hour, about 70 rows an hour with the
defaults (``--seed`` fixes them). Every row is written before the first run, so the table is
the same size at every run and only the state store changes: rows dated after a run's clock
are there but outside the buckets it judges. The state store is the default one,
``.dq-agent/state.db`` in the project, with no ``retention:``.

Method: one process plays every run, as ``dq-agent check`` runs them
(``dq_agent.cli.checking.check_and_report`` without the spinner and the report): load the
project, select every suite, open the store, and ``run_checks`` with ``RunOptions(clock=...)``,
the clock starting at each simulated hour (a Monday 00:00 UTC first) and moving on with real
time, as ``DQ_AGENT_NOW`` does. Per run:
the wall time of all that (``time.perf_counter``, the store's opening included) and the state
store's bytes on disk after it is closed (``state.db`` with its ``-wal`` and ``-shm``). At the
sample points (runs 1, 30, 100, 250, 500, 750, 1,000, and the last): rows and bytes per table
(``retention.stats``, SQLite's ``dbstat``), resident memory (``/proc/self/statm``) and peak
resident memory (``ru_maxrss``). Check time at a sample point is the median of the five runs
ending there, and every ratio is to run 30's.

Targets (reported, not asserted): after 1,000 runs the store is at most 2× its size after 30
runs; ``check`` time within 10% of run 30's; peak RSS flat (at most ``RSS_FLAT_MB`` more than
after run 30). Then the tables that grew, by rows and bytes per run, and the checks' statuses
over all runs.

Usage: ``.venv/bin/python benchmarks/longrun.py [--runs N] [--suites N] [--rows N] [--seed N]
[--dir DIR] [--json PATH]`` (``--dir``: build the project there and keep it, instead of a
temporary folder; it must be new or empty).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import sqlalchemy as sa  # noqa: E402

from dq_agent.config import load_project  # noqa: E402
from dq_agent.engine import RunOptions, run_checks, select_suites  # noqa: E402
from dq_agent.store import Store  # noqa: E402
from dq_agent.store.retention import stats  # noqa: E402

T0 = datetime(2026, 3, 2, 0, 0, tzinfo=UTC)  # the first simulated run, a Monday
TRAINING_DAYS = 28
SAMPLES = (1, 30, 100, 250, 500, 750, 1000)
BASE_RUN = 30  # the run every ratio is to
SMOOTH = 5  # check time at a sample point: the median of the runs ending there
RSS_FLAT_MB = 5.0  # peak RSS growth after run 30 still called flat
PROGRESS_EVERY = 50
SHOWN_TABLES = ("bucket_values", "check_results", "metrics")
CATEGORIES = ("web", "app", "store", "partner", "phone")

EVENTS = sa.Table(
    "events",
    sa.MetaData(),
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("created_at", sa.DateTime),
    sa.Column("amount", sa.Numeric(12, 2)),
    sa.Column("category", sa.String(20)),
)

SUITE = """\
suite: suite_{n:02d}
owner: data@acme.com
schedule: "0 * * * *"
source: {{connector: warehouse, table: events}}
checks:
  - row_count: {{min: 1}}
  - volume_anomaly: {{timestamp_column: created_at, bucket: hour, training_days: {days}}}
  - column_anomaly: {{column: amount, timestamp_column: created_at, bucket: hour}}
"""


def event_rows(count: int, hours: int, start: datetime, seed: int) -> list[dict[str, Any]]:
    """``count`` events over ``hours`` hours from ``start``: a daily rhythm with noise, in
    time order (stored naive, in UTC)."""
    rng = random.Random(seed)
    weights = []
    for h in range(hours):
        hour_of_day = (start + timedelta(hours=h)).hour
        rhythm = 1 + 0.6 * math.sin(2 * math.pi * (hour_of_day - 9) / 24)  # peak at 15:00
        weights.append(rhythm * max(0.2, rng.gauss(1.0, 0.1)))
    moments = sorted(
        start + timedelta(hours=h, seconds=rng.random() * 3600)
        for h in rng.choices(range(hours), weights=weights, k=count)
    )
    rows = []
    for i, moment in enumerate(moments, start=1):
        draw = rng.random()
        if draw < 0.01:
            amount = None
        elif draw < 0.03:
            amount = -round(rng.lognormvariate(3.0, 0.7), 2)  # refunds
        else:
            amount = round(rng.lognormvariate(3.5, 0.8), 2)
        rows.append(
            {
                "id": i,
                "created_at": moment.replace(tzinfo=None),
                "amount": amount,
                "category": rng.choice(CATEGORIES),
            }
        )
    return rows


def build(folder: Path, *, suites: int, rows: int, runs: int, seed: int) -> None:
    """The project: its settings, the warehouse connector, the table and the suites."""
    (folder / "checks").mkdir(parents=True)
    (folder / "connectors").mkdir()
    (folder / "dq-agent.yml").write_text("defaults:\n  timezone: UTC\n")
    (folder / "connectors" / "warehouse.yml").write_text(
        "type: sql\nurl: 'sqlite:///warehouse.sqlite'\n"
    )
    for n in range(suites):
        (folder / "checks" / f"suite_{n:02d}.yml").write_text(SUITE.format(n=n, days=TRAINING_DAYS))
    start = T0 - timedelta(days=TRAINING_DAYS)
    hours = TRAINING_DAYS * 24 + runs
    engine = sa.create_engine(f"sqlite:///{folder / 'warehouse.sqlite'}")
    try:
        EVENTS.metadata.create_all(engine)
        with engine.begin() as conn:
            conn.execute(EVENTS.insert(), event_rows(rows, hours, start, seed))
    finally:
        engine.dispose()


def moving_clock(moment: datetime) -> Callable[[], datetime]:
    """``moment`` now, moving on with real time (as ``DQ_AGENT_NOW`` pins the clock)."""
    began = time.monotonic()
    return lambda: moment + timedelta(seconds=time.monotonic() - began)


def store_bytes(path: Path) -> int:
    """The SQLite store on disk: the database, its write-ahead log and shared memory."""
    return sum(
        p.stat().st_size
        for p in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm"))
        if p.exists()
    )


def rss_mb() -> float:
    resident = int(Path("/proc/self/statm").read_text().split()[1])
    return resident * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KB on Linux


def check_once(folder: Path, moment: datetime, statuses: Counter[str]) -> float:
    """One ``dq-agent check`` of every suite at ``moment``; its wall time in seconds."""
    began = time.perf_counter()
    project = load_project(folder)
    if project.issues:
        raise SystemExit("the project is invalid: " + "; ".join(str(i) for i in project.issues))
    ids = select_suites(project, ())
    options = RunOptions(as_of=None, clock=moving_clock(moment))
    with Store.open(project.state_url) as store:
        results = run_checks(project, ids, store=store, options=options)
    elapsed = time.perf_counter() - began
    for result in results:
        if result.error:
            statuses[f"suite error: {result.error[:80]}"] += 1
        for check in result.checks:
            statuses[f"{check.type} {check.status}"] += 1
    return elapsed


def table_stats(state_url: str) -> dict[str, dict[str, int | None]]:
    with Store.open(state_url) as store:
        return {t.name: {"rows": t.rows, "bytes": t.bytes} for t in stats(store)}


def play(folder: Path, runs: int) -> dict[str, Any]:
    state_url = load_project(folder).state_url
    state_path = Path(sa.make_url(state_url).database or "")
    points = sorted({p for p in SAMPLES if p <= runs} | {runs})
    seconds: list[float] = []
    sizes: list[int] = []
    samples = []
    statuses: Counter[str] = Counter()
    began = time.perf_counter()
    for n in range(1, runs + 1):
        moment = T0 + timedelta(hours=n - 1)
        seconds.append(check_once(folder, moment, statuses))
        sizes.append(store_bytes(state_path))
        if n in points:
            samples.append(
                {
                    "run": n,
                    "at": moment.isoformat(),
                    "store_bytes": sizes[-1],
                    "check_s": statistics.median(seconds[-SMOOTH:]),
                    "rss_mb": rss_mb(),
                    "peak_rss_mb": peak_rss_mb(),
                    "tables": table_stats(state_url),
                }
            )
        if n % PROGRESS_EVERY == 0 or n == runs:
            print(
                f"run {n}/{runs} ({moment:%Y-%m-%d %H:%M}): check {seconds[-1]:.2f} s, "
                f"store {sizes[-1] / 2**20:.1f} MB, {time.perf_counter() - began:.0f} s so far",
                file=sys.stderr,
                flush=True,
            )
    return {
        "runs": runs,
        "seconds": seconds,
        "store_bytes": sizes,
        "samples": samples,
        "statuses": dict(sorted(statuses.items())),
        "elapsed_s": time.perf_counter() - began,
    }


def report(figures: dict[str, Any]) -> None:
    samples = figures["samples"]
    base = next((s for s in samples if s["run"] == BASE_RUN), samples[0])
    print(
        f"{'run':>5} {'store MB':>9} {'×run ' + str(base['run']):>8} {'check s':>8} "
        f"{'×run ' + str(base['run']):>8} {'RSS MB':>7} {'peak MB':>8} "
        f"{'bucket_values':>14} {'check_results':>14} {'metrics':>9}"
    )
    for s in samples:
        rows = {name: s["tables"].get(name, {}).get("rows", 0) for name in SHOWN_TABLES}
        print(
            f"{s['run']:>5} {s['store_bytes'] / 2**20:>9.2f} "
            f"{s['store_bytes'] / base['store_bytes']:>7.2f}× {s['check_s']:>8.3f} "
            f"{s['check_s'] / base['check_s']:>7.2f}× {s['rss_mb']:>7.1f} "
            f"{s['peak_rss_mb']:>8.1f} {rows['bucket_values']:>14,} "
            f"{rows['check_results']:>14,} {rows['metrics']:>9,}"
        )
    last = samples[-1]
    store_ratio = last["store_bytes"] / base["store_bytes"]
    time_ratio = last["check_s"] / base["check_s"]
    rss_growth = last["peak_rss_mb"] - base["peak_rss_mb"]
    against = f"run {base['run']}"
    print(
        f"\nafter {last['run']} runs:\n"
        f"  store ≤ 2× {against}: {'yes' if store_ratio <= 2 else 'no'} ({store_ratio:.2f}×)\n"
        f"  check time within 10% of {against}: "
        f"{'yes' if abs(time_ratio - 1) <= 0.10 else 'no'} ({(time_ratio - 1) * 100:+.1f}%)\n"
        f"  peak RSS flat: {'yes' if rss_growth <= RSS_FLAT_MB else 'no'} "
        f"({rss_growth:+.1f} MB from {against} to run {last['run']}, "
        f"{base['peak_rss_mb']:.1f} → {last['peak_rss_mb']:.1f} MB)"
    )
    span = last["run"] - base["run"]
    grew = [
        (name, base["tables"].get(name, {}), after)
        for name, after in last["tables"].items()
        if after != base["tables"].get(name)
    ]
    if span > 0 and grew:
        print(f"\ntables that changed from {against} to run {last['run']}:")
        print(
            f"{'table':>16} {'rows':>9} {'→':>1} {'rows':>9} {'rows/run':>9} {'KB':>9} {'→':>1} "
            f"{'KB':>9} {'KB/run':>8}"
        )
        for name, before, after in sorted(grew, key=lambda g: -(g[2]["bytes"] or 0)):
            b0, b1 = before.get("bytes") or 0, after["bytes"] or 0
            r0, r1 = before.get("rows", 0), after["rows"]
            print(
                f"{name:>16} {r0:>9,} → {r1:>9,} {(r1 - r0) / span:>9.1f} {b0 / 1024:>9.0f} → "
                f"{b1 / 1024:>9.0f} {(b1 - b0) / 1024 / span:>8.2f}"
            )
    print(f"\nchecks' statuses over all {figures['runs']} runs:")
    for status, count in figures["statuses"].items():
        print(f"  {status}: {count:,}")
    print(f"\n{figures['runs']} runs took {figures['elapsed_s']:.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=1000, help="consecutive hourly runs")
    parser.add_argument("--suites", type=int, default=10)
    parser.add_argument("--rows", type=int, default=120_000, help="rows of the events table")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--dir", type=Path, help="build the project here and keep it")
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--build", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.build is not None:
        build(args.build, suites=args.suites, rows=args.rows, runs=args.runs, seed=args.seed)
        return
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    if args.dir is not None and args.dir.exists() and any(args.dir.iterdir()):
        parser.error(f"--dir {args.dir} is not empty")
    with tempfile.TemporaryDirectory(prefix="dq-longrun-") as tmp:
        folder = args.dir or Path(tmp) / "project"
        began = time.perf_counter()
        # In a child: generating the rows would otherwise set this process's peak RSS.
        subprocess.run(
            [
                *(sys.executable, __file__, "--build", str(folder), "--runs", str(args.runs)),
                *("--suites", str(args.suites), "--rows", str(args.rows), "--seed", str(args.seed)),
            ],
            check=True,
        )
        print(
            f"{args.suites} suites on {args.rows:,} rows, {args.runs} hourly runs from "
            f"{T0:%Y-%m-%d %H:%M} UTC (project built in {time.perf_counter() - began:.1f} s)",
            flush=True,
        )
        figures = play(folder, args.runs)
    figures |= {"suites": args.suites, "rows": args.rows, "seed": args.seed}
    report(figures)
    if args.json is not None:
        args.json.write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
