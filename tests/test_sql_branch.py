"""A slip in a warehouse table is fixed on a branch: a transaction on the table itself.

Written compare-and-set inside the transaction, checked there by the suite (nobody else sees
it), committed only if the checks pass, recorded in the ledger, undone compare-and-set.
SQLite, PostgreSQL and MariaDB.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from dq_agent.agent import run_cycle
from dq_agent.config import load_project
from dq_agent.engine import RunOptions
from dq_agent.remedy import revert_correction
from dq_agent.sources.sql import SqlSource
from dq_agent.store import Store
from tests.helpers import make_project, run_killed
from tests.sources import load_orders
from tests.test_fat_finger import DEALS, clean_deals, deal

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
OPTIONS = RunOptions(clock=lambda: NOW)
SLIP = 101  # 12 seats × $500 typed as $60,000
SUITE = """
suite: deals
owner: sales-ops@acme.com
source: {{connector: warehouse, table: deals}}
key: [id]
checks:
  - fat_finger: {{column: amount, witness: "seats * price", auto_correct: true}}
{more}"""
SETTINGS = """
state_url: 'sqlite:///{root}/state.db'
corrections:
  enabled: true
  allow:
    - {{connector: warehouse, object: deals, fields: [amount]}}
"""


@pytest.fixture(params=["sqlite", "duckdb", "postgres", "mariadb"])
def warehouse(request: pytest.FixtureRequest) -> Iterator[str]:
    """The deals table with its slip, on SQLite, PostgreSQL and MariaDB."""
    url = str(request.getfixturevalue(f"{request.param}_url"))
    load_orders(url, [*clean_deals(), deal(SLIP, 12, 500, 60_000, "basic")], DEALS)
    yield url


def project(root: Path, url: str, more: str = "") -> Path:
    return make_project(
        root,
        connectors={"warehouse": f"type: sql\nurl: '{url}'\n"},
        suites={"deals": SUITE.format(more=more)},
        settings=SETTINGS.format(root=root),
    )


def cycle(root: Path) -> Any:
    loaded = load_project(root, env={})
    assert loaded.issues == (), [str(i) for i in loaded.issues]
    with Store.open(loaded.state_url) as store:
        return run_cycle(loaded, ["deals"], store, OPTIONS)


def amount(url: str, deal_id: int = SLIP) -> float:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            value = conn.execute(
                sa.select(DEALS.c.amount).where(DEALS.c.id == deal_id)
            ).scalar_one()
    finally:
        engine.dispose()
    return float(value)


def events(root: Path, correction_id: int = 1) -> list[str]:
    with Store.open(f"sqlite:///{root}/state.db") as store:
        assert store.verify_ledger() == []
        correction = store.correction(correction_id)
        assert correction is not None
        return [e.event for e in correction.events]


def test_a_slip_in_a_table_is_fixed_on_a_branch_and_can_be_undone(
    tmp_path: Path, warehouse: str
) -> None:
    root = project(tmp_path, warehouse)
    [outcome] = cycle(root).outcomes
    assert (outcome.status, outcome.detail) == (
        "applied",
        "verified on a branch, then published",
    )
    assert (outcome.change.key, float(outcome.change.old), outcome.change.new) == (
        {"id": SLIP},
        60_000.0,
        6_000.0,
    )
    assert amount(warehouse) == 6_000
    assert events(tmp_path) == ["intent", "applied"]
    assert cycle(root).outcomes == []  # fixed: nothing more to do

    loaded = load_project(root, env={})
    with Store.open(loaded.state_url) as store:
        undone = revert_correction(loaded, store, 1, by="sales-ops@acme.com", options=OPTIONS)
    assert undone.status == "reverted"
    assert amount(warehouse) == 60_000
    assert events(tmp_path) == ["intent", "applied", "revert_intent", "reverted"]


def test_a_fix_that_fails_on_the_branch_leaves_the_table_as_it_was(
    tmp_path: Path, warehouse: str
) -> None:
    # Passes today (the slip is the largest amount); would fail once the slip is fixed.
    guard = "  - expect_column_max_to_be_between: {column: amount, min_value: 50000}\n"
    root = project(tmp_path, warehouse, guard)
    [outcome] = cycle(root).outcomes
    assert outcome.status == "refused"
    assert outcome.detail.startswith("the branch check failed: ")
    assert "would go from pass to fail" in outcome.detail
    assert amount(warehouse) == 60_000  # rolled back: production never saw it
    assert events(tmp_path) == ["proposed"]  # the owner decides


def test_a_row_changed_since_it_was_read_is_not_overwritten(
    tmp_path: Path, warehouse: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = project(tmp_path, warehouse)
    real = SqlSource.branch

    def someone_edits_first(self: SqlSource, **kwargs: Any) -> Any:
        engine = sa.create_engine(warehouse)
        with engine.begin() as conn:
            conn.execute(sa.update(DEALS).where(DEALS.c.id == SLIP).values(amount=59_000))
        engine.dispose()
        return real(self, **kwargs)

    monkeypatch.setattr(SqlSource, "branch", someone_edits_first)
    [outcome] = cycle(root).outcomes
    assert outcome.status == "conflict"
    assert outcome.detail.startswith("conflict: amount is ")
    assert amount(warehouse) == 59_000  # theirs, untouched
    assert events(tmp_path) == ["intent", "conflict"]


def test_a_crash_after_publishing_is_settled_once_and_told(tmp_path: Path, warehouse: str) -> None:
    root = project(tmp_path, warehouse)
    run_killed(root, "deals", "dq_agent.sources.sql:SqlBranch.publish")  # after the commit
    assert amount(warehouse) == 6_000
    assert events(tmp_path) == ["intent"]

    after = cycle(root)
    assert after.settled == ["correction 1: applied (settled on start: the write had gone through)"]
    assert after.outcomes == []
    assert amount(warehouse) == 6_000
    assert events(tmp_path) == ["intent", "applied"]
    with Store.open(f"sqlite:///{tmp_path}/state.db") as store:
        assert [(m.kind, m.recipient) for m in store.outbox(correction_id=1)] == [
            ("fyi", "sales-ops@acme.com")
        ]


@pytest.mark.parametrize("server", ["postgres", "mariadb"])
def test_a_row_someone_holds_is_waited_for_only_as_long_as_lock_timeout(
    tmp_path: Path, request: pytest.FixtureRequest, server: str
) -> None:
    url = str(request.getfixturevalue(f"{server}_url"))
    load_orders(url, [*clean_deals(), deal(SLIP, 12, 500, 60_000, "basic")], DEALS)
    root = project(tmp_path, url)
    settings = root / "dq-agent.yml"
    settings.write_text(settings.read_text() + "  lock_timeout: 1s\n")
    holder = sa.create_engine(url)
    try:
        with holder.begin() as conn:  # a long transaction of someone else's holds the row
            conn.execute(sa.select(DEALS.c.id).where(DEALS.c.id == SLIP).with_for_update())
            [outcome] = cycle(root).outcomes
    finally:
        holder.dispose()
    assert outcome.status == "failed"
    assert outcome.detail.startswith(f"not written: gave up waiting on {url.split(':')[0]}")
    assert "lock" in outcome.detail.lower()
    assert amount(url) == 60_000
    with Store.open(f"sqlite:///{tmp_path}/state.db") as store:
        assert store.corrections() == []  # nothing was intended, nothing to settle
    [retried] = cycle(root).outcomes  # the next run, with the row free, fixes it
    assert retried.status == "applied"
    assert amount(url) == 6_000


def test_a_check_that_cannot_read_the_branch_keeps_the_fix_from_being_published(
    tmp_path: Path, sqlite_url: str
) -> None:
    load_orders(sqlite_url, [*clean_deals(), deal(SLIP, 12, 500, 60_000, "basic")], DEALS)
    gx_only = "engine: gx\n"  # every expectation through Great Expectations
    root = project(tmp_path, sqlite_url, "  - expect_column_values_to_not_be_null: {column: id}\n")
    suite = root / "checks" / "deals.yml"
    suite.write_text(suite.read_text().replace("key: [id]\n", f"key: [id]\n{gx_only}"))
    [outcome] = cycle(root).outcomes
    assert outcome.status == "refused"
    assert outcome.detail == (
        "the branch check failed: expect_column_values_to_not_be_null(id) would go from pass "
        "to error"
    )
    assert amount(sqlite_url) == 60_000


def test_an_owner_approves_a_proposed_fix_of_a_table_from_the_command_line(
    tmp_path: Path, sqlite_url: str
) -> None:
    from click.testing import CliRunner

    from dq_agent.cli import main

    load_orders(sqlite_url, [*clean_deals(), deal(SLIP, 12, 500, 60_000, "basic")], DEALS)
    root = project(tmp_path, sqlite_url)
    suite = root / "checks" / "deals.yml"
    suite.write_text(suite.read_text().replace("auto_correct: true", "auto_correct: false"))
    [proposal] = cycle(root).outcomes
    assert (proposal.status, proposal.correction_id) == ("proposed", 1)
    assert amount(sqlite_url) == 60_000

    runner = CliRunner()
    approved = runner.invoke(
        main, ["corrections", "approve", "1", "--by", "sales-ops@acme.com", "--project", str(root)]
    )
    assert approved.exit_code == 0, approved.output
    assert approved.stdout == ("correction 1: applied: verified on a branch, then published\n")
    assert amount(sqlite_url) == 6_000
    assert events(tmp_path) == ["proposed", "intent", "applied"]
    undone = runner.invoke(
        main, ["corrections", "revert", "1", "--by", "sales-ops@acme.com", "--project", str(root)]
    )
    assert undone.exit_code == 0, undone.output
    assert amount(sqlite_url) == 60_000


def test_a_crash_before_the_commit_leaves_the_table_as_it_was_and_is_settled(
    tmp_path: Path, warehouse: str
) -> None:
    root = project(tmp_path, warehouse)
    # Killed with the intents recorded, instead of committing.
    run_killed(root, "deals", "dq_agent.sources.sql:SqlBranch.publish", after_call=False)
    assert amount(warehouse) == 60_000  # the database dropped the uncommitted branch
    assert events(tmp_path) == ["intent"]

    after = cycle(root)
    assert after.settled == [
        "correction 1: failed (settled on start: interrupted before the write; nothing changed)"
    ]
    # The slip is still there, so the same run fixes it, once, as a correction of its own.
    assert [(o.status, o.correction_id) for o in after.outcomes] == [("applied", 2)]
    assert amount(warehouse) == 6_000
    assert events(tmp_path, 1) == ["intent", "failed"]
    assert events(tmp_path, 2) == ["intent", "applied"]


TOTALS = """
suite: totals
owner: finance@acme.com
source: {{connector: warehouse, table: deal_totals}}
checks:
  - expect_column_sum_to_be_between: {{column: total, min_value: {minimum}}}
"""


@pytest.mark.parametrize(("minimum", "published"), [(1, True), (1_080_000, False)])
def test_the_verify_suites_run_inside_the_transaction_too(
    tmp_path: Path, warehouse: str, minimum: int, published: bool
) -> None:
    engine = sa.create_engine(warehouse)
    with engine.begin() as conn:  # downstream of deals: a view, so it sees the branch
        conn.execute(sa.text("DROP VIEW IF EXISTS deal_totals"))
        conn.execute(
            sa.text(
                "CREATE VIEW deal_totals AS "
                "SELECT product, SUM(amount) AS total FROM deals GROUP BY product"
            )
        )
    engine.dispose()
    root = project(tmp_path, warehouse)
    (root / "checks" / "totals.yml").write_text(TOTALS.format(minimum=minimum))
    suite = root / "checks" / "deals.yml"
    suite.write_text(suite.read_text().replace("key: [id]\n", "key: [id]\nverify: [totals]\n"))
    [outcome] = cycle(root).outcomes
    if published:
        assert outcome.status == "applied"
        assert amount(warehouse) == 6_000
    else:
        # The totals add up to 1,103,400 with the slip and 1,049,400 without: the view breaks.
        assert (outcome.status, outcome.detail) == (
            "refused",
            "the branch check failed: totals: expect_column_sum_to_be_between(total) would "
            "go from pass to fail",
        )
        assert amount(warehouse) == 60_000
