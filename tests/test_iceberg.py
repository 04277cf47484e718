"""Apache Iceberg tables: checked like any source, and corrected on a real Iceberg branch.

pyiceberg's SQL catalog on a SQLite file with a local warehouse folder: the fix is written to
a branch at the snapshot read, verified on the branch's snapshot, and main moves to it only if
it has not moved since; the branch is removed after.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from pyiceberg.catalog.sql import SqlCatalog

from dq_agent.agent import run_cycle
from dq_agent.config import load_project
from dq_agent.engine import RunOptions
from dq_agent.remedy import revert_correction
from dq_agent.sources.iceberg import IcebergBranch
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
