"""Apache Iceberg tables: checked like any source, and corrected on a real Iceberg branch.

pyiceberg's SQL catalog on a SQLite file with a local warehouse folder: the fix is written to
a branch at the snapshot read, verified on the branch's snapshot, and main moves to it only if
it has not moved since; the branch is removed after.
"""

from __future__ import annotations

import gc
import re
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import sqlalchemy as sa
from pyiceberg.catalog.sql import SqlCatalog

from dq_agent.agent import run_cycle
from dq_agent.config import load_project
from dq_agent.config.models import IcebergConnector, IcebergSourceSpec
from dq_agent.engine import RunOptions, run_checks
from dq_agent.remedy import revert_correction
from dq_agent.sources.iceberg import IcebergBranch, IcebergSource
from dq_agent.store import Store
from tests.helpers import make_project, run_killed

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
OPTIONS = RunOptions(clock=lambda: NOW)
SLIP = 101  # 12 seats × $500 typed as $60,000
SUITE = """
suite: deals
owner: sales-ops@acme.com
source: {{connector: lake, table: sales.deals, key: [id]}}
key: [id]
checks:
  - row_count: {{min: 1}}
  - fat_finger: {{column: amount, witness: "seats * price", auto_correct: true}}
{more}"""
SETTINGS = """
state_url: 'sqlite:///{root}/state.db'
corrections:
  enabled: true
  allow:
    - {{connector: lake, object: sales.deals, fields: [amount]}}
"""


def deals() -> pa.Table:
    rows = []
    for i in range(1, 61):
        seats = [10, 12, 15, 18, 20, 20, 22, 25, 30, 40][i % 10]
        price, product = (500.0, "basic") if i % 2 else (1200.0, "pro")
        rows.append({"id": i, "product": product, "seats": seats, "price": price})
    rows.append({"id": SLIP, "product": "basic", "seats": 12, "price": 500.0})
    amounts = [r["seats"] * r["price"] for r in rows[:-1]] + [60_000.0]
    return pa.table(
        {
            "id": pa.array([r["id"] for r in rows], pa.int64()),
            "product": pa.array([r["product"] for r in rows], pa.string()),
            "seats": pa.array([r["seats"] for r in rows], pa.int64()),
            "price": pa.array([r["price"] for r in rows], pa.float64()),
            "amount": pa.array(amounts, pa.float64()),
        }
    )


def catalog(root: Path) -> SqlCatalog:
    return SqlCatalog(
        "default", uri=f"sqlite:///{root}/catalog.db", warehouse=f"file://{root}/warehouse"
    )


@pytest.fixture
def lake(tmp_path: Path) -> Path:
    folder = tmp_path / "lake"
    folder.mkdir()
    made = catalog(folder)
    made.create_namespace("sales")
    data = deals()
    made.create_table("sales.deals", schema=data.schema).append(data)
    return folder


def project(root: Path, lake: Path, more: str = "") -> Path:
    return make_project(
        root / "project",
        connectors={
            "lake": "type: iceberg\ncatalog:\n  type: sql\n"
            f"  uri: 'sqlite:///{lake}/catalog.db'\n  warehouse: 'file://{lake}/warehouse'\n"
        },
        suites={"deals": SUITE.format(more=more)},
        settings=SETTINGS.format(root=root),
    )


def cycle(root: Path, at: datetime = NOW) -> Any:
    loaded = load_project(root, env={})
    assert loaded.issues == (), [str(i) for i in loaded.issues]
    with Store.open(loaded.state_url) as store:
        return run_cycle(loaded, ["deals"], store, RunOptions(clock=lambda: at))


def table(lake: Path) -> Any:
    return catalog(lake).load_table("sales.deals")


def amount(lake: Path, deal_id: int = SLIP) -> float:
    [row] = [r for r in table(lake).scan().to_arrow().to_pylist() if r["id"] == deal_id]
    return float(row["amount"])


def events(tmp_path: Path, correction_id: int = 1) -> list[str]:
    with Store.open(f"sqlite:///{tmp_path}/state.db") as store:
        correction = store.correction(correction_id)
        assert correction is not None
        return [e.event for e in correction.events]


def test_a_slip_is_fixed_on_a_branch_then_main_moves_to_it(tmp_path: Path, lake: Path) -> None:
    before = table(lake).current_snapshot().snapshot_id
    root = project(tmp_path, lake)
    [outcome] = cycle(root).outcomes
    assert (outcome.status, outcome.change.new) == ("applied", 6_000.0)
    assert amount(lake) == 6_000
    after = table(lake)
    assert after.current_snapshot().snapshot_id != before
    assert list(after.refs()) == ["main"]  # the branch is gone once published
    assert events(tmp_path) == ["intent", "applied"]
    with Store.open(f"sqlite:///{tmp_path}/state.db") as store:
        applied = store.correction(1)
        assert applied is not None
        assert applied.events[-1].detail == (
            "verified on a branch, then published: main moved from snapshot "
            f"{before} to {after.current_snapshot().snapshot_id}"
        )
    assert cycle(root).outcomes == []

    # Nothing was written since: the undo moves main back to the snapshot before the fix.
    assert undo(root).status == "reverted"
    assert amount(lake) == 60_000
    assert table(lake).current_snapshot().snapshot_id == before
    assert list(table(lake).refs()) == ["main"]
    with Store.open(f"sqlite:///{tmp_path}/state.db") as store:
        reverted = store.correction(1)
        assert reverted is not None
        assert reverted.events[-1].detail == (
            "reverted compare-and-set: main rolled back from snapshot "
            f"{after.current_snapshot().snapshot_id} to {before}"
        )


def test_an_undo_after_a_later_write_publishes_the_inverse_change(
    tmp_path: Path, lake: Path
) -> None:
    root = project(tmp_path, lake)
    [outcome] = cycle(root).outcomes
    assert outcome.status == "applied"
    more = deals().slice(0, 1).set_column(0, "id", pa.array([999], pa.int64()))
    table(lake).append(more)  # a load after the fix: rolling back would lose it
    later = table(lake).current_snapshot().snapshot_id

    assert undo(root).status == "reverted"
    assert amount(lake) == 60_000
    assert amount(lake, 999) > 0  # the later load is still there
    assert table(lake).current_snapshot().snapshot_id != later
    with Store.open(f"sqlite:///{tmp_path}/state.db") as store:
        reverted = store.correction(1)
        assert reverted is not None
        assert reverted.events[-1].detail.startswith(
            f"reverted compare-and-set: main moved from snapshot {later} to "
        )


def undo(root: Path) -> Any:
    loaded = load_project(root, env={})
    with Store.open(loaded.state_url) as store:
        return revert_correction(loaded, store, 1, by="sales-ops@acme.com", options=OPTIONS)


def test_a_fix_that_fails_on_the_branch_never_reaches_main(tmp_path: Path, lake: Path) -> None:
    before = table(lake).current_snapshot().snapshot_id
    guard = "  - expect_column_max_to_be_between: {column: amount, min_value: 50000}\n"
    root = project(tmp_path, lake, guard)
    [outcome] = cycle(root).outcomes
    assert outcome.status == "refused"
    assert "would go from pass to fail" in outcome.detail
    assert table(lake).current_snapshot().snapshot_id == before
    assert amount(lake) == 60_000
    assert events(tmp_path) == ["proposed"]
    # The failed branch stays for people to look at, with the fix on it.
    [kept] = [name for name in table(lake).refs() if name != "main"]
    assert outcome.detail.endswith(f" (the branch {kept} is kept for inspection)")
    on_branch = table(lake).scan(snapshot_id=table(lake).refs()[kept].snapshot_id).to_arrow()
    assert [r["amount"] for r in on_branch.to_pylist() if r["id"] == SLIP] == [6_000.0]


def test_kept_branches_are_removed_after_their_time(
    tmp_path: Path, lake: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    guard = "  - expect_column_max_to_be_between: {column: amount, min_value: 50000}\n"
    root = project(tmp_path, lake, guard)
    cycle(root)
    [first] = [name for name in table(lake).refs() if name != "main"]
    monkeypatch.setattr("dq_agent.sources.iceberg.KEPT_FOR", timedelta(0))
    cycle(root, NOW + timedelta(hours=1))  # its own failed branch is kept; the old one goes
    [second] = [name for name in table(lake).refs() if name != "main"]
    assert second != first


def test_a_table_written_since_it_was_read_is_not_published(
    tmp_path: Path, lake: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = project(tmp_path, lake)
    real = IcebergBranch.publish

    def someone_appends_first(self: IcebergBranch) -> None:
        extra = deals().slice(0, 1).set_column(0, "id", pa.array([999], pa.int64()))
        table(lake).append(extra)
        real(self)

    monkeypatch.setattr(IcebergBranch, "publish", someone_appends_first)
    [outcome] = cycle(root).outcomes
    assert outcome.status == "failed"
    assert "changed since it was read" in outcome.detail
    assert amount(lake) == 60_000  # main kept the other writer's snapshot, not ours
    assert len(table(lake).scan().to_arrow()) == 62
    monkeypatch.undo()

    after = cycle(root, NOW + timedelta(hours=1))  # settled, then fixed on a fresh branch
    assert after.settled == [
        "correction 1: failed (settled on start: interrupted before the write; nothing changed)"
    ]
    assert [(o.status, o.correction_id) for o in after.outcomes] == [("applied", 2)]
    assert amount(lake) == 6_000
    assert len(table(lake).scan().to_arrow()) == 62  # the other writer's row is kept


def test_check_reads_an_iceberg_table(tmp_path: Path, lake: Path) -> None:
    from click.testing import CliRunner

    from dq_agent.cli import main

    root = project(tmp_path, lake)
    result = CliRunner().invoke(main, ["check", "--project", str(root), "--format", "json"])
    assert result.exit_code == 2, result.output
    import json

    [suite] = json.loads(result.stdout)["suites"]
    assert [(c["name"], c["status"]) for c in suite["checks"]] == [
        ("row_count", "pass"),
        ("fat_finger(amount)", "fail"),
    ]
    [finding] = suite["checks"][1]["findings"]
    assert (finding["key"], finding["observed"], finding["proposed"]) == (
        {"id": SLIP},
        60000.0,
        6000.0,
    )


def test_a_crash_after_main_moved_is_settled_once_and_told(tmp_path: Path, lake: Path) -> None:
    root = project(tmp_path, lake)
    # Killed once main has moved, before the ledger hears of it.
    run_killed(root, "deals", "dq_agent.sources.iceberg:IcebergBranch.publish")
    assert amount(lake) == 6_000
    assert events(tmp_path) == ["intent"]
    # The dead process's branch is left behind; main is what counts.
    assert len(table(lake).refs()) == 2

    after = cycle(root)
    assert after.settled == ["correction 1: applied (settled on start: the write had gone through)"]
    assert after.outcomes == []
    assert events(tmp_path) == ["intent", "applied"]
    with Store.open(f"sqlite:///{tmp_path}/state.db") as store:
        assert [(m.kind, m.recipient) for m in store.outbox(correction_id=1)] == [
            ("fyi", "sales-ops@acme.com")
        ]


# -- the checks run in DuckDB over the snapshot's Arrow data ------------------------------------

ORDERS = """
suite: orders
owner: sales-ops@acme.com
source: {connector: lake, table: sales.orders, key: [id]}
key: [id]
checks:
  - row_count: {min: 1}
  - expect_column_values_to_not_be_null: {column: customer_id}
  - expect_column_values_to_be_between: {column: amount, min_value: 0}
  - expect_column_values_to_be_unique: {column: id}
  # Read in Berlin, a time zone an hour from UTC: instants stay instants.
  - freshness: {column: created_at, max_age: 26h, timezone: Europe/Berlin}
"""


def orders(count: int = 5_000) -> pa.Table:
    """``count`` orders, one a minute up to two hours before NOW: five without a customer,
    three with a negative amount."""
    newest = NOW - timedelta(hours=2)
    return pa.table(
        {
            "id": pa.array(range(1, count + 1), pa.int64()),
            "customer_id": pa.array(
                [None if i % 1_000 == 7 else i % 97 for i in range(count)], pa.int64()
            ),
            "amount": pa.array(
                [-5.0 if i in (10, 20, 30) else 10.0 + i % 50 for i in range(count)], pa.float64()
            ),
            "created_at": pa.array(
                [newest - timedelta(minutes=count - 1 - i) for i in range(count)],
                pa.timestamp("us", tz="UTC"),
            ),
        }
    )


def add_table(lake: Path, name: str, data: pa.Table) -> None:
    catalog(lake).create_table(name, schema=data.schema).append(data)


def run_orders(tmp_path: Path, lake: Path, suite: str = ORDERS) -> Any:
    root = make_project(
        tmp_path / "orders",
        connectors={
            "lake": "type: iceberg\ncatalog:\n  type: sql\n"
            f"  uri: 'sqlite:///{lake}/catalog.db'\n  warehouse: 'file://{lake}/warehouse'\n"
        },
        suites={"orders": suite},
        settings=f"state_url: 'sqlite:///{tmp_path}/orders-state.db'\n",
    )
    loaded = load_project(root, env={})
    assert loaded.issues == (), [str(i) for i in loaded.issues]
    with Store.open(loaded.state_url) as store:
        [result] = run_checks(loaded, ["orders"], store=store, options=OPTIONS)
    return result


def iceberg_source(lake: Path, table: str, key: list[str] | None = None) -> IcebergSource:
    connector = IcebergConnector(
        type="iceberg",
        catalog={"type": "sql", "uri": f"sqlite:///{lake}/catalog.db"},
    )
    spec = IcebergSourceSpec(connector="lake", table=table, key=key)
    return IcebergSource(catalog(lake), spec, connector)


def test_a_suite_runs_in_duckdb_over_thousands_of_rows(tmp_path: Path, lake: Path) -> None:
    add_table(lake, "sales.orders", orders())
    result = run_orders(tmp_path, lake)
    assert result.error is None
    assert {c.name: (c.status, c.message) for c in result.checks} == {
        "row_count": ("pass", "5,000 rows"),
        "expect_column_values_to_not_be_null(customer_id)": (
            "fail",
            "5 of 5,000 customer_id values null (0.10%)",
        ),
        "expect_column_values_to_be_between(amount)": (
            "fail",
            "3 of 5,000 amount values unexpected (0.06%)",
        ),
        "expect_column_values_to_be_unique(id)": ("pass", "all 5,000 values as expected"),
        "freshness(created_at)": ("pass", "newest created_at is 2h old (max 26h)"),
    }
    between = result.checks[2]
    assert [(f.key, f.observed) for f in between.findings] == [
        ({"id": 11}, -5.0),
        ({"id": 21}, -5.0),
        ({"id": 31}, -5.0),
    ]


def test_what_only_great_expectations_answers_reads_the_same_records(
    tmp_path: Path, lake: Path
) -> None:
    """No URL reaches the in-memory DuckDB: GX reads the records as a pandas DataFrame."""
    add_table(lake, "sales.orders", orders())
    suite = ORDERS.split("checks:")[0] + (
        "checks:\n"
        "  - expect_column_value_z_scores_to_be_less_than:\n"
        "      {column: amount, threshold: 2, double_sided: true}\n"
        "  - expect_column_value_z_scores_to_be_less_than:\n"
        "      name: later_z_scores\n"
        "      column: amount\n"
        "      threshold: 2\n"
        "      double_sided: true\n"
        "      row_condition: 'col(\"id\")>20'\n"
        "      condition_parser: great_expectations\n"
    )
    result = run_orders(tmp_path, lake, suite)
    assert result.error is None
    z_scores, later = result.checks
    assert (z_scores.status, z_scores.message) == (
        "fail",
        "3 of 5,000 values unexpected (0.06%)",
    )
    assert [f.key for f in z_scores.findings] == [{"id": 11}, {"id": 21}, {"id": 31}]
    # GX's own condition grammar, which its pandas engine does not read, as a pandas query.
    assert (later.status, [f.key for f in later.findings]) == ("fail", [{"id": 21}, {"id": 31}])


def test_records_that_do_not_fit_are_reported_and_the_rest_checked(
    tmp_path: Path, lake: Path
) -> None:
    data = orders(6)
    data = data.set_column(0, "id", pa.array([1, 2, 2, None, 5, 6], pa.int64()))
    data = data.set_column(
        2, "amount", pa.array([10.0, float("nan"), 12.0, 13.0, float("inf"), 15.0], pa.float64())
    )
    add_table(lake, "sales.orders", data)
    result = run_orders(tmp_path, lake)
    [rejected, row_count, *_] = result.checks
    assert (rejected.name, rejected.status) == ("source_records", "fail")
    assert rejected.message == (
        "reading sales.orders: 3 records with problems: record id=2: amount holds nan, not a "
        "finite number; record id=None: no id: the record is left out; record id=5: amount "
        "holds inf, not a finite number; record id=2: came 2 times among the records read "
        "(only the first is checked)"
    )
    # The second id 2 and the record without an id are left out; the NaN and inf are null.
    assert row_count.message == "4 rows"
    assert result.checks[3].message == "all 2 values as expected"


def test_timestamps_with_a_zone_come_back_in_utc_and_those_without_naive(lake: Path) -> None:
    at = datetime(2026, 11, 24, 11, 30, tzinfo=UTC)
    add_table(
        lake,
        "sales.times",
        pa.table(
            {
                "id": pa.array([1], pa.int64()),
                "at": pa.array([at], pa.timestamp("us", tz="UTC")),
                "wall": pa.array([datetime(2026, 11, 24, 12, 30)], pa.timestamp("us")),
                "price": pa.array([Decimal("12345678901234567.89")], pa.decimal128(38, 2)),
            }
        ),
    )
    source = iceberg_source(lake, "sales.times")
    relation = source.open()
    try:
        with relation.connect() as conn:
            [row] = conn.execute(sa.select(relation.selectable)).mappings().all()
            newest = conn.execute(sa.select(sa.func.max(relation.column("at")))).scalar_one()
    finally:
        source.close()
    assert row["at"] == at and row["at"].utcoffset() == timedelta(0)
    assert newest == at and newest.utcoffset() == timedelta(0)
    assert row["wall"] == datetime(2026, 11, 24, 12, 30) and row["wall"].tzinfo is None
    # Every digit of a decimal, as a Decimal.
    assert row["price"] == Decimal("12345678901234567.89")
    assert isinstance(row["price"], Decimal)
    assert [(c.name, c.family) for c in relation.columns.values()] == [
        ("id", "integer"),
        ("at", "timestamp"),
        ("wall", "timestamp"),
        ("price", "number"),
    ]


def test_threads_read_the_same_records(lake: Path) -> None:
    source = iceberg_source(lake, "sales.deals", key=["id"])
    relation = source.open()
    query = sa.select(sa.func.count(), sa.func.sum(relation.column("amount")))
    answers: list[Any] = []

    def read() -> None:
        for _ in range(20):
            with relation.connect() as conn:
                answers.append(tuple(conn.execute(query).one()))

    try:
        threads = [threading.Thread(target=read) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        source.close()
    assert len(answers) == 80
    assert set(answers) == {(61, sum(deals().column("amount").to_pylist()))}


def test_closing_the_source_releases_duckdb_and_the_arrow_data(lake: Path) -> None:
    add_table(lake, "sales.orders", orders(50_000))
    gc.collect()
    before = pa.total_allocated_bytes()
    source = iceberg_source(lake, "sales.orders", key=["id"])
    relation = source.open()
    with relation.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(relation.selectable)).scalar()
    assert pa.total_allocated_bytes() - before > 50_000 * 8 * 4  # four 8-byte columns

    source.close()
    gc.collect()
    assert pa.total_allocated_bytes() - before < 50_000  # no column of it is left
    with pytest.raises(sa.exc.DBAPIError, match="closed"):
        relation.engine.connect()


def test_without_duckdb_a_suite_says_what_to_install(
    tmp_path: Path, lake: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_table(lake, "sales.orders", orders(10))
    monkeypatch.setitem(sys.modules, "duckdb_engine", None)  # as if not installed
    result = run_orders(tmp_path, lake)
    assert result.error == "type: iceberg needs duckdb: pip install 'dq-agent[iceberg]'"


def test_the_iceberg_benchmark_runs() -> None:
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run(
        [
            sys.executable,
            str(root / "benchmarks" / "iceberg.py"),
            "--rows",
            "2000",
            "--repeat",
            "1",
        ],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "== Iceberg, 2,000 rows, 5 checks: medians of 1 fresh processes each ==" in done.stdout
    for path in ("sqlite copy", "duckdb"):
        assert re.search(rf"^{path} +[\d.]+ +[\d.]+ +[\d.]+ +\d+ +\d+$", done.stdout, re.M)
