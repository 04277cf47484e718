"""Benchmark: an Iceberg suite checked in DuckDB over the snapshot's Arrow data, beside the
SQLite copy it replaced.

Writes ``bench.orders`` (``--rows`` rows, default 1,000,000) with pyiceberg's ``SqlCatalog``
in a temporary folder, then runs one five-check suite on it through ``run_checks`` (row count,
not-null, between, in-set and freshness, all passing), two ways:

1. **duckdb**: the product's path: the pyiceberg scan's Arrow table is a view of a private
   DuckDB database, and the checks are pushed down to DuckDB over it;
2. **sqlite copy**: the path it replaced, which the product no longer has: reproduced here by
   loading the same Arrow table, row by row, into a private SQLite file with ``FetchedCopy``
   (still the product's copy for records fetched from APIs), where the checks then run.

Both read the snapshot with the same pyiceberg scan; only where the checks run differs. Each
measurement runs in a fresh process, the two take turns in every repeat (each going first in
turn), and medians are printed: opening the source (the scan, and the copy or the view), the
checks, both, the process's peak RSS once the libraries are imported (before the suite runs)
and at the end (``resource.getrusage``; the parent imports nothing heavy and writes the table
in a child of its own, so what ``ru_maxrss`` carries over the vfork+exec from it is a few MB).

Usage: ``.venv/bin/python benchmarks/iceberg.py [--rows N] [--repeat N]``
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
PATHS = ("sqlite", "duckdb")
LABELS = {"sqlite": "sqlite copy", "duckdb": "duckdb"}
STATUSES = ("new", "paid", "shipped", "cancelled")
SUITE = """\
suite: orders
owner: bench@example.com
source: {connector: lake, table: bench.orders, key: [id]}
key: [id]
checks:
  - row_count: {min: 1}
  - expect_column_values_to_not_be_null: {column: customer_id}
  - expect_column_values_to_be_between: {column: amount, min_value: 0, max_value: 1024}
  - expect_column_values_to_be_in_set: {column: status, value_set: [new, paid, shipped, cancelled]}
  - freshness: {column: created_at, max_age: 26h}
"""


def catalog(folder: Path) -> Any:
    from pyiceberg.catalog.sql import SqlCatalog

    return SqlCatalog(
        "default", uri=f"sqlite:///{folder}/catalog.db", warehouse=f"file://{folder}/warehouse"
    )


def generate(folder: Path, rows: int) -> None:
    """``rows`` orders, one a millisecond up to NOW, every value passing the suite."""
    import pyarrow as pa
    import pyarrow.compute as pc

    ids = pa.array(range(1, rows + 1), pa.int64())
    newest_us = int(NOW.timestamp() * 1_000_000)
    orders = pa.table(
        {
            "id": ids,
            "customer_id": pc.add(pc.bit_wise_and(ids, 1023), 1),
            "amount": pc.multiply(pc.cast(pc.bit_wise_and(ids, 4095), pa.float64()), 0.25),
            "status": pc.take(pa.array(STATUSES), pc.bit_wise_and(ids, 3)),
            "created_at": pc.cast(
                pc.subtract(pa.scalar(newest_us), pc.multiply(ids, 1000)),
                pa.timestamp("us", tz="UTC"),
            ),
        }
    )
    made = catalog(folder)
    made.create_namespace("bench")
    made.create_table("bench.orders", schema=orders.schema).append(orders)


def project(folder: Path) -> Path:
    root = folder / "project"
    (root / "connectors").mkdir(parents=True, exist_ok=True)
    (root / "checks").mkdir(exist_ok=True)
    (root / "connectors" / "lake.yml").write_text(
        "type: iceberg\ncatalog:\n  type: sql\n"
        f"  uri: 'sqlite:///{folder}/catalog.db'\n  warehouse: 'file://{folder}/warehouse'\n"
    )
    (root / "checks" / "orders.yml").write_text(SUITE)
    (root / "dq-agent.yml").write_text(f"state_url: 'sqlite:///{folder}/state.db'\n")
    return root


class SqliteCopy:
    """The path the DuckDB view replaced: the scanned Arrow table copied into SQLite."""

    def __init__(self, label: str) -> None:
        from dq_agent.sources.fetched import FetchedCopy

        self._copy = FetchedCopy(label)

    def load(self, arrow: Any, primary_key: Any) -> Any:
        from dq_agent.sources.fetched import FetchedColumn
        from dq_agent.sources.iceberg import _sql_type

        columns = [
            FetchedColumn(name, _sql_type(arrow.schema.field(name).type))
            for name in arrow.column_names
        ]
        return self._copy.load(columns, arrow.to_pylist(), primary_key)

    def close(self) -> None:
        self._copy.close()


def measure(path: str, folder: Path) -> dict[str, Any]:
    """One suite run the ``path`` way, in this process."""
    # Both ways import the same libraries before the clock starts (the product imports
    # pyiceberg, DuckDB and duckdb-engine on first use): what is timed is the work.
    import duckdb  # noqa: F401
    import duckdb_engine  # noqa: F401
    import pyarrow  # noqa: F401
    import pyiceberg.catalog.sql  # noqa: F401

    from dq_agent.config import load_project
    from dq_agent.engine import RunOptions, run_checks
    from dq_agent.sources import iceberg

    if path == "sqlite":
        iceberg.ArrowView = SqliteCopy  # type: ignore[assignment,misc]
    opening: list[float] = []
    real_open = iceberg.IcebergSource.open

    def timed_open(self: Any) -> Any:
        started = time.perf_counter()
        try:
            return real_open(self)
        finally:
            opening.append(time.perf_counter() - started)

    iceberg.IcebergSource.open = timed_open  # type: ignore[method-assign]
    loaded = load_project(project(folder), env={})
    assert loaded.issues == (), [str(i) for i in loaded.issues]
    imported_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    started = time.perf_counter()
    [result] = run_checks(loaded, ["orders"], options=RunOptions(clock=lambda: NOW))
    total = time.perf_counter() - started
    failed = {c.name: c.message for c in result.checks if c.status != "pass"}
    assert result.error is None and not failed, (result.error, failed)
    return {
        "open_s": opening[0],
        "checks_s": total - opening[0],
        "total_s": total,
        "imported_mb": imported_mb,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def child(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, __file__, *args], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{done.stderr}")
    return done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3, help="rounds (medians reported)")
    parser.add_argument("--generate", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--measure", choices=PATHS, help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.generate is not None:
        generate(args.generate, args.rows)
        return
    if args.measure is not None:
        print(json.dumps(measure(args.measure, args.folder)))
        return

    with tempfile.TemporaryDirectory(prefix="dq-bench-iceberg-") as name:
        folder = Path(name)
        started = time.perf_counter()
        child("--generate", str(folder), "--rows", str(args.rows))
        print(
            f"{args.rows:,} rows written to an Iceberg table in "
            f"{time.perf_counter() - started:.1f} s"
        )
        runs: dict[str, list[dict[str, Any]]] = {path: [] for path in PATHS}
        for turn in range(args.repeat):
            for path in PATHS if turn % 2 == 0 else reversed(PATHS):
                runs[path].append(json.loads(child("--measure", path, "--folder", str(folder))))

    keys = ("open_s", "checks_s", "total_s", "imported_mb", "peak_rss_mb")
    medians = {p: {k: statistics.median(r[k] for r in runs[p]) for k in keys} for p in PATHS}
    print(
        f"\n== Iceberg, {args.rows:,} rows, 5 checks: medians of {args.repeat} "
        "fresh processes each =="
    )
    header = (
        f"{'path':<12} {'open s':>8} {'checks s':>9} {'total s':>8} "
        f"{'RSS before MB':>14} {'peak RSS MB':>12}"
    )
    print(header)
    print("-" * len(header))
    for path in PATHS:
        m = medians[path]
        print(
            f"{LABELS[path]:<12} {m['open_s']:8.2f} {m['checks_s']:9.2f} {m['total_s']:8.2f} "
            f"{m['imported_mb']:14.0f} {m['peak_rss_mb']:12.0f}"
        )
    old, new = medians["sqlite"], medians["duckdb"]
    print(
        f"duckdb: {old['total_s'] / new['total_s']:.1f}x faster than the sqlite copy, "
        f"{old['peak_rss_mb'] / new['peak_rss_mb']:.1f}x less peak memory"
    )


if __name__ == "__main__":
    main()
