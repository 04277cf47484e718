"""Benchmark: fixing slips in a PostgreSQL table on a branch (a transaction), beside a scan.

Generates ``deals_branch`` (``--rows`` rows, default 1,000,000) in schema ``dq_bench_branch``
with ``--slips`` amounts (default 100) typed ten times too large, then times side by side in
one process, on the same suite (``fat_finger: {column: amount, witness: "seats * price"}``):

1. **scan**: ``run_checks`` alone, what ``dq-agent check`` does;
2. **branch**: the branch itself inside ``dq-agent run`` (the transaction's compare-and-set
   writes, the suite run again inside it to verify, the ledger intents and the commit),
   timed from the branch's opening to its close; the target is at most 1.5x one scan;
3. **readers**: a thread reading one of the slipped rows every 5 ms all along the run; the
   longest any read took tells whether the branch's row locks ever blocked a reader (MVCC:
   they should not).

Nothing is asserted: it prints the figures and the ratio. The table is regenerated each run
(about 10 s per million rows) so every run starts with the same slips.

Usage: ``.venv/bin/python benchmarks/branch.py [--rows N] [--slips N] [--postgres-url URL]``
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import sqlalchemy as sa  # noqa: E402

from dq_agent.agent import run_cycle  # noqa: E402
from dq_agent.config import load_project  # noqa: E402
from dq_agent.engine import RunOptions, run_checks  # noqa: E402
from dq_agent.sources.sql import SqlSource  # noqa: E402
from dq_agent.store import Store  # noqa: E402

DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
SCHEMA = "dq_bench_branch"
TABLE = "deals_branch"
SUITE = """\
suite: deals
owner: bench@example.com
source: {connector: warehouse, table: deals_branch}
key: [id]
max_findings: 10000
checks:
  - fat_finger: {column: amount, witness: "seats * price", auto_correct: true}
"""
SETTINGS = """\
state_url: 'sqlite:///{root}/state.db'
corrections:
  enabled: true
  max_per_run: {slips}
  allow:
    - {{connector: warehouse, object: deals_branch, fields: [amount]}}
"""


def generate(engine: sa.Engine, rows: int, slips: int) -> None:
    """``rows`` consistent deals (seats × price = amount), every (rows // slips)th one slipped."""
    every = max(rows // slips, 1)
    with engine.begin() as conn:
        conn.execute(sa.text(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE"))
        conn.execute(sa.text(f"CREATE SCHEMA {SCHEMA}"))
        conn.execute(
            sa.text(
                f"CREATE TABLE {SCHEMA}.{TABLE} (id integer PRIMARY KEY, product text, "
                "seats integer, price numeric(12,2), amount numeric(16,2))"
            )
        )
        conn.execute(
            sa.text(
                f"INSERT INTO {SCHEMA}.{TABLE} "
                "SELECT i, CASE WHEN i % 2 = 0 THEN 'pro' ELSE 'basic' END, s, p, "
                f"s * p * CASE WHEN i % {every} = 0 AND i / {every} <= {slips} THEN 10 ELSE 1 END "
                "FROM (SELECT i, 10 + (i % 31) AS s, "
                "CASE WHEN i % 2 = 0 THEN 1200 ELSE 500 END AS p "
                "FROM generate_series(1, :rows) AS i) g"
            ),
            {"rows": rows},
        )
        conn.execute(sa.text(f"ANALYZE {SCHEMA}.{TABLE}"))


@contextmanager
def timed_branches(spans: list[float]) -> Any:
    """Time every branch a run opens, from its opening to its close."""
    real = SqlSource.branch

    @contextmanager
    def branch(self: SqlSource, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            with real(self, **kwargs) as opened:
                yield opened
        finally:
            spans.append(time.perf_counter() - started)

    SqlSource.branch = branch  # type: ignore[method-assign]
    try:
        yield
    finally:
        SqlSource.branch = real  # type: ignore[method-assign]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--slips", type=int, default=100)
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("DQ_AGENT_BENCH_POSTGRES_URL", DEFAULT_POSTGRES_URL),
    )
    args = parser.parse_args()
    url = f"{args.postgres_url}?options=-csearch_path%3D{SCHEMA}"
    engine = sa.create_engine(args.postgres_url)
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except sa.exc.OperationalError as exc:
        print(f"PostgreSQL not reachable ({exc.__class__.__name__}): skipped")
        return
    started = time.perf_counter()
    generate(engine, args.rows, args.slips)
    print(
        f"{args.rows:,} rows with {args.slips} slips generated in "
        f"{time.perf_counter() - started:.1f} s"
    )

    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        (root / "connectors").mkdir()
        (root / "checks").mkdir()
        (root / "connectors" / "warehouse.yml").write_text(f"type: sql\nurl: '{url}'\n")
        (root / "checks" / "deals.yml").write_text(SUITE)
        (root / "dq-agent.yml").write_text(SETTINGS.format(root=root, slips=args.slips))
        project = load_project(root, env={})
        assert project.issues == (), [str(i) for i in project.issues]
        options = RunOptions()

        with Store.open(project.state_url) as store:
            started = time.perf_counter()
            [result] = run_checks(project, ["deals"], store=store, options=options)
            scan = time.perf_counter() - started
        found = sum(len(c.findings) for c in result.checks)

        waits: list[float] = []
        stop = threading.Event()
        slipped = max(args.rows // args.slips, 1)

        def read() -> None:
            query = sa.text(f"SELECT amount FROM {SCHEMA}.{TABLE} WHERE id = :id")
            with engine.connect() as conn:
                while not stop.is_set():
                    began = time.perf_counter()
                    conn.execute(query, {"id": slipped}).scalar_one()
                    conn.rollback()
                    waits.append(time.perf_counter() - began)
                    stop.wait(0.005)

        reader = threading.Thread(target=read, daemon=True)
        spans: list[float] = []
        reader.start()
        try:
            with Store.open(project.state_url) as store, timed_branches(spans):
                started = time.perf_counter()
                cycle = run_cycle(project, ["deals"], store, options)
                whole = time.perf_counter() - started
        finally:
            stop.set()
            reader.join()
    engine.dispose()

    applied = sum(1 for o in cycle.outcomes if o.status == "applied")
    branch = sum(spans)
    print(f"scan (dq-agent check)           {scan:8.2f} s   {found} findings")
    print(f"run (check + branch + ledger)   {whole:8.2f} s   {applied} corrections applied")
    print(
        f"the branch (write, verify, commit) {branch:5.2f} s   "
        f"{branch / scan:.2f}x one scan (target <= 1.5x)"
    )
    print(
        f"readers: {len(waits)} reads of a slipped row during the run, "
        f"longest {max(waits) * 1000:.1f} ms, median {sorted(waits)[len(waits) // 2] * 1000:.1f} ms"
    )


if __name__ == "__main__":
    main()
