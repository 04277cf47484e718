"""Retention: old run history pruned in small batches, never what a baseline or the ledger
needs, on SQLite and PostgreSQL; ``dq-agent store stats`` and ``store prune``."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from click.testing import CliRunner

from dq_agent.cli import main
from dq_agent.config import load_project
from dq_agent.engine import RunOptions, run_checks
from dq_agent.results import SuiteResult
from dq_agent.store import Store
from dq_agent.store.models import BucketValue, CheckResultRow, Metric, Run, SuiteRun
from dq_agent.store.retention import cutoff, prune, reach, stats, thin
from tests.helpers import make_project

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
SUITE = """
suite: orders
owner: data@acme.com
source: {connector: warehouse, table: orders}
checks:
  - row_count: {min: 1}
  - volume_anomaly: {timestamp_column: created_at, bucket: day, training_days: 28}
"""


def shop(root: Path, state_url: str, retention: str = "") -> Path:
    """A table with 120 days of orders, and a suite that counts them per day."""
    warehouse = root / "warehouse.db"
    engine = sa.create_engine(f"sqlite:///{warehouse}")
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE orders (id INTEGER PRIMARY KEY, created_at TIMESTAMP)"))
        rows = [
            {"id": i, "created_at": (NOW - timedelta(hours=6 * i)).replace(tzinfo=None)}
            for i in range(480)
        ]
        conn.execute(sa.text("INSERT INTO orders VALUES (:id, :created_at)"), rows)
    engine.dispose()
    return make_project(
        root,
        connectors={"warehouse": f"type: sql\nurl: sqlite:///{warehouse}\n"},
        suites={"orders": SUITE},
        settings=f"state_url: '{state_url}'\n{retention}",
    )


def checked_every_ten_days(root: Path) -> None:
    """Ten runs, one every ten days, the newest now."""
    project = load_project(root, env={})
    with Store.open(project.state_url) as store:
        for days_ago in range(90, -1, -10):
            at = NOW - timedelta(days=days_ago)
            run_checks(project, ["orders"], store=store, options=RunOptions(clock=lambda at=at: at))


def counts(store: Store) -> dict[str, int]:
    with store.engine.connect() as conn:
        return {
            model.__tablename__: conn.execute(
                sa.select(sa.func.count()).select_from(model)
            ).scalar_one()
            for model in (Run, SuiteRun, CheckResultRow, Metric, BucketValue)
        }


def test_the_cutoff_never_reaches_into_a_baseline_window(tmp_path: Path) -> None:
    project = load_project(shop(tmp_path, f"sqlite:///{tmp_path}/state.db"), env={})
    suites = project.suites.values()
    # 28 training days, and a margin of 8 for a week-long bucket still settling.
    assert reach(suites) == timedelta(days=36)
    assert cutoff(None, suites, NOW) is None
    assert cutoff(7, suites, NOW) == NOW - timedelta(days=36)
    assert cutoff(90, suites, NOW) == NOW - timedelta(days=90)


def test_old_runs_go_in_batches_and_the_baseline_is_untouched(tmp_path: Path, db_url: str) -> None:
    root = shop(tmp_path, db_url)
    checked_every_ten_days(root)
    project = load_project(root, env={})
    with Store.open(project.state_url) as store:
        before = counts(store)
        baseline = store.bucket_history("orders", "volume_anomaly(created_at)", since=None)
        window = {b: v for b, v in baseline.items() if b >= NOW - timedelta(days=36)}
        dry = prune(store, days=7, suites=project.suites.values(), now=NOW, dry_run=True)
        assert counts(store) == before
        seen: list[int] = []
        pruned = prune(
            store,
            days=7,
            suites=project.suites.values(),
            now=NOW,
            batch=2,
            progress=lambda p: seen.append(p.rows["suite_runs"]),
        )
        after = counts(store)
        kept = store.bucket_history("orders", "volume_anomaly(created_at)", since=None)
        runs = [r["started_at"] for r in store.suite_runs("orders", limit=100)]
    # Runs 90..40 days ago are older than the 36 days a baseline reaches: six of ten go.
    assert before["suite_runs"] == 10 and after["suite_runs"] == 4
    assert seen == [2, 4, 6]  # two suite runs per transaction
    # The first run stays: the schema it saw is still the newest (drift compares with it).
    assert pruned.rows["suite_runs"] == 6 and pruned.rows["runs"] == 5
    assert {t: n for t, n in dry.rows.items() if t != "runs"} == {
        t: n for t, n in pruned.rows.items() if t not in ("runs", "schema_snapshots")
    }
    for table in ("check_results", "metrics"):
        assert after[table] == before[table] - pruned.rows[table]
    # Bucket values outlive their runs: the check lets go of them when no window reaches them.
    assert after["bucket_values"] == before["bucket_values"]
    assert min(runs) >= NOW - timedelta(days=36)
    # What the baseline reads within its window is exactly what it was.
    assert {b: v for b, v in kept.items() if b >= NOW - timedelta(days=36)} == window


def test_a_suites_latest_run_is_kept_however_old(tmp_path: Path) -> None:
    root = shop(tmp_path, f"sqlite:///{tmp_path}/state.db")
    project = load_project(root, env={})
    long_ago = NOW - timedelta(days=400)
    with Store.open(project.state_url) as store:
        run_checks(project, ["orders"], store=store, options=RunOptions(clock=lambda: long_ago))
        pruned = prune(store, days=30, suites=project.suites.values(), now=NOW)
        assert counts(store)["suite_runs"] == 1
    assert "suite_runs" not in pruned.rows


def test_the_ledger_is_never_pruned(tmp_path: Path) -> None:
    root = shop(tmp_path, f"sqlite:///{tmp_path}/state.db")
    project = load_project(root, env={})
    with Store.open(project.state_url) as store:
        store.ledger_append(
            event="proposed",
            at=NOW - timedelta(days=900),
            suite="orders",
            check="fat_finger(amount)",
            source="warehouse/orders",
            key={"id": 1},
            column="amount",
            old=10,
            new=1,
            evidence=(),
            decided_by="rule",
            detail="",
        )
        pruned = prune(store, days=30, suites=project.suites.values(), now=NOW)
        assert len(store.corrections()) == 1
        assert store.verify_ledger() == []
    assert pruned.rows == {}


def test_store_stats_and_prune_commands(tmp_path: Path) -> None:
    root = shop(tmp_path, f"sqlite:///{tmp_path}/state.db", "retention: {days: 7, batch: 3}\n")
    checked_every_ten_days(root)
    runner = CliRunner()
    result = runner.invoke(main, ["store", "stats", "--format", "json", "--project", str(root)])
    assert result.exit_code == 0, result.output
    tables: dict[str, Any] = {t["table"]: t for t in json.loads(result.output)["tables"]}
    assert tables["suite_runs"]["rows"] == 10
    assert tables["ledger"]["rows"] == 0
    result = runner.invoke(main, ["store", "prune", "--dry-run", "--project", str(root)])
    assert result.exit_code == 0, result.output
    assert "would delete 6 from suite_runs" in result.output
    result = runner.invoke(main, ["store", "prune", "--project", str(root)])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0].startswith("run history started before ")
    assert "  deleted 6 from suite_runs" in result.output
    with Store.open(f"sqlite:///{tmp_path}/state.db") as store:
        assert {t.name: t.rows for t in stats(store)}["suite_runs"] == 4


def test_without_retention_days_nothing_of_the_history_goes(tmp_path: Path) -> None:
    root = shop(tmp_path, f"sqlite:///{tmp_path}/state.db")
    checked_every_ten_days(root)
    result = CliRunner().invoke(main, ["store", "prune", "--project", str(root)])
    assert result.exit_code == 0, result.output
    assert result.output == (
        "retention.days is not set in dq-agent.yml: run history is only thinned\n"
        "  deleted nothing\n"
    )


def checked_every_hour(root: Path, hours: int) -> None:
    project = load_project(root, env={})
    with Store.open(project.state_url) as store:
        for hour in range(hours, 0, -1):
            at = NOW - timedelta(hours=hour)
            run_checks(project, ["orders"], store=store, options=RunOptions(clock=lambda at=at: at))


def suite_runs(store: Store) -> list[tuple[datetime, str]]:
    query = sa.select(SuiteRun.started_at, SuiteRun.status).order_by(SuiteRun.id)
    with store.engine.connect() as conn:
        return [(started_at, status) for started_at, status in conn.execute(query)]


def test_runs_past_a_suites_newest_are_thinned_to_one_a_day_and_those_that_did_not_pass(
    tmp_path: Path,
) -> None:
    root = shop(tmp_path, f"sqlite:///{tmp_path}/state.db", "retention: {full_runs: 5}\n")
    checked_every_hour(root, 72)  # three days of hourly checks
    with Store.open(f"sqlite:///{tmp_path}/state.db") as store:
        kept = suite_runs(store)
        # The newest five whole, and before them the newest run of each earlier day (28 to
        # 30 Nov; 1 Dec's newest is among the five).
        newest = [NOW - timedelta(hours=h) for h in range(5, 0, -1)]
        assert [at for at, _ in kept] == [
            datetime(2026, 11, 28, 23, 0, tzinfo=UTC),
            datetime(2026, 11, 29, 23, 0, tzinfo=UTC),
            datetime(2026, 11, 30, 23, 0, tzinfo=UTC),
            *newest,
        ]
        assert counts(store) == {
            "runs": 9,  # and the first, which saw the table's columns (drift compares with it)
            "suite_runs": 8,
            "check_results": 16,
            "metrics": 16,
            # Each day of the windows of three days once, however many runs counted it.
            "bucket_values": 32,
        }


def test_a_run_that_did_not_pass_is_never_thinned(tmp_path: Path) -> None:
    root = shop(tmp_path, f"sqlite:///{tmp_path}/state.db", "retention: {full_runs: 2}\n")
    project = load_project(root, env={})
    with Store.open(project.state_url) as store:
        for hour in (5, 4, 3, 2, 1):
            at = NOW - timedelta(hours=hour)
            if hour == 4:  # the table is gone for one run
                engine = sa.create_engine(f"sqlite:///{root / 'warehouse.db'}")
                with engine.begin() as conn:
                    conn.execute(sa.text("ALTER TABLE orders RENAME TO orders_away"))
            run_checks(project, ["orders"], store=store, options=RunOptions(clock=lambda at=at: at))
            if hour == 4:
                with engine.begin() as conn:
                    conn.execute(sa.text("ALTER TABLE orders_away RENAME TO orders"))
                engine.dispose()
        assert [status for _, status in suite_runs(store)] == ["error", "pass", "pass"]
        # Nothing more to thin: the newest of 1 Dec is kept with the error.
        assert thin(store, "orders", keep=2) == {}
        assert thin(store, "orders", keep=None) == {}


def test_beyond_two_weeks_a_passing_run_a_week_is_kept(tmp_path: Path) -> None:
    newest = datetime(2026, 12, 2, 18, 0, tzinfo=UTC)  # a Wednesday
    with Store.open(f"sqlite:///{tmp_path}/state.db") as store:
        for quarter in range(4 * 35, -1, -1):  # every six hours for five weeks
            at = newest - timedelta(hours=6 * quarter)
            run = store.start_run(command="check", started_at=at, as_of=None, suites=["orders"])
            store.record_suite(run, SuiteResult("orders", "pass", at, 0.1))
        thin(store, "orders", keep=4)
        kept = [at for at, _ in suite_runs(store)]
    # The newest four (2 Dec), then the newest run of each day for two weeks: 19 Nov to 1 Dec.
    assert kept[-4:] == [newest - timedelta(hours=6 * q) for q in (3, 2, 1, 0)]
    assert kept[-17:-4] == [newest - timedelta(days=d) for d in range(13, 0, -1)]
    # Before those, the newest run of each ISO week (Monday to Sunday).
    assert kept[:-17] == [
        datetime(2026, 11, 1, 18, 0, tzinfo=UTC),
        datetime(2026, 11, 8, 18, 0, tzinfo=UTC),
        datetime(2026, 11, 15, 18, 0, tzinfo=UTC),
        datetime(2026, 11, 18, 18, 0, tzinfo=UTC),  # two weeks before the newest: weekly
    ]
