"""A runbook fix: the change people know for a known failure, run on a branch.

Yesterday some payments arrived in Yen beside dollars. The suite's ``convert_yen`` fix is
one UPDATE on the payments table, bound to the failing bucket and group; it runs inside a
transaction, must turn distribution_shift green with every other check no worse, and waits
for the owner's Apply fix unless it is ``approve: auto``. The ledger keeps the rows before
and after; the undo puts them back compare-and-set. SQLite, PostgreSQL and MariaDB.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from dq_agent.agent import run_cycle
from dq_agent.config import load_project
from dq_agent.engine import RunOptions
from dq_agent.remedy import approve_correction, revert_correction
from dq_agent.store import Store
from dq_agent.store.ledger import RUNBOOK_FIX
from dq_agent_sandbox.warehouse import payments
from tests.helpers import make_project, run_killed

NOW = datetime(2026, 11, 25, 7, 0, tzinfo=UTC)
OPTIONS = RunOptions(clock=lambda: NOW)
OWNER = "finance-data@acme.com"
CHECK = "distribution_shift(local_value)"
METADATA = sa.MetaData()
PAYMENTS = sa.Table(
    "payments",
    METADATA,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("paid_at", sa.DateTime, nullable=False),
    sa.Column("local_value", sa.Numeric(14, 2)),
    sa.Column("currency", sa.String(3), nullable=False),
)
FX_RATES = sa.Table(
    "fx_rates",
    METADATA,
    sa.Column("currency", sa.String(3), primary_key=True),
    sa.Column("rate", sa.Numeric(12, 4), nullable=False),
)
CONVERT_YEN = """
  UPDATE payments
     SET local_value = ROUND(local_value * 1.0 / (SELECT rate FROM fx_rates WHERE fx_rates.currency = payments.currency), 2),
         currency = 'USD'
   WHERE currency = :currency AND paid_at >= :bucket_start AND paid_at < :bucket_end
"""  # noqa: E501
SUITE = """
suite: payments
owner: {owner}
source: {{connector: warehouse, table: payments}}
key: [id]
checks:
  - row_count: {{min: 1}}
  - distribution_shift: {{timestamp_column: paid_at, column: local_value, group_by: currency}}
fixes:
  - name: convert_yen
    when: {{check: "{check}", group: {{currency: JPY}}}}
    sql: |
{sql}
    max_rows: {max_rows}
    approve: {approve}
"""


@pytest.fixture(params=["sqlite", "duckdb", "postgres", "mariadb"])
def warehouse(request: pytest.FixtureRequest) -> Iterator[str]:
    """Four weeks of payments, yesterday's partly in Yen, and the rate to convert them."""
    url = str(request.getfixturevalue(f"{request.param}_url"))
    load_payments(url)
    yield url


def load_payments(url: str) -> None:
    engine = sa.create_engine(url)
    try:
        METADATA.drop_all(engine)
        METADATA.create_all(engine)
        with engine.begin() as conn:
            conn.execute(PAYMENTS.insert(), payments(NOW.replace(tzinfo=None), random.Random(7)))
            conn.execute(FX_RATES.insert(), [{"currency": "JPY", "rate": 150}])
    finally:
        engine.dispose()


def set_rate(url: str, rate: int) -> None:
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.update(FX_RATES).values(rate=rate))
    finally:
        engine.dispose()


def project(root: Path, url: str, *, approve: str = "owner", max_rows: int = 5000) -> Path:
    sql = "\n".join(f"      {line}" for line in CONVERT_YEN.strip("\n").splitlines())
    suite = SUITE.format(owner=OWNER, check=CHECK, sql=sql, max_rows=max_rows, approve=approve)
    return make_project(
        root,
        connectors={"warehouse": f"type: sql\nurl: '{url}'\n"},
        suites={"payments": suite},
        settings=f"state_url: 'sqlite:///{root}/state.db'\ncorrections: {{enabled: true}}\n",
    )


def cycle(root: Path, at: datetime = NOW) -> Any:
    loaded = load_project(root, env={})
    assert loaded.issues == (), [str(i) for i in loaded.issues]
    with Store.open(loaded.state_url) as store:
        return run_cycle(loaded, ["payments"], store, RunOptions(clock=lambda: at))


def yen(url: str) -> int:
    """Payments still in Yen."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            query = sa.select(sa.func.count()).where(PAYMENTS.c.currency == "JPY")
            return int(conn.execute(query).scalar_one())
    finally:
        engine.dispose()


def events(root: Path, correction_id: int = 1) -> list[str]:
    with Store.open(f"sqlite:///{root}/state.db") as store:
        assert store.verify_ledger() == []
        correction = store.correction(correction_id)
        assert correction is not None
        return [e.event for e in correction.events]


def decide(root: Path, verb: str, correction_id: int = 1, by: str = OWNER) -> Any:
    loaded = load_project(root, env={})
    with Store.open(loaded.state_url) as store:
        if verb == "approve":
            return approve_correction(loaded, store, correction_id, by=by, options=OPTIONS)
        return revert_correction(loaded, store, correction_id, by=by, options=OPTIONS)


def test_the_owner_sees_the_branch_report_applies_the_fix_and_can_undo_it(
    tmp_path: Path, warehouse: str
) -> None:
    root = project(tmp_path, warehouse)
    before = yen(warehouse)
    assert before > 10

    [proposed] = cycle(root).outcomes
    assert (proposed.status, proposed.detail) == ("proposed", "verified on a branch")
    change = proposed.change
    assert change.column == RUNBOOK_FIX
    assert change.key == {
        "fix": "convert_yen",
        "currency": "JPY",
        "bucket_start": "2026-11-24T00:00:00",
        "bucket_end": "2026-11-25T00:00:00",
    }
    assert change.evidence[:3] == (
        f"{before} row(s) changed on a branch (max_rows 5,000)",
        "row_count: pass → pass",
        f"{CHECK}: fail → pass",
    )
    assert {row["currency"] for row in change.old} == {"JPY"}
    assert {row["currency"] for row in change.new} == {"USD"}
    for old, new in zip(change.old, change.new, strict=True):  # Yen to dollars, to the cent
        assert (new["id"], new["local_value"]) == (old["id"], round(old["local_value"] / 150, 2))
    assert yen(warehouse) == before  # the branch was rolled back: nothing changed yet
    assert cycle(root).outcomes == []  # waiting for the owner: not tried again

    applied = decide(root, "approve")
    assert (applied.status, applied.detail) == ("applied", "verified on a branch, then published")
    assert yen(warehouse) == 0
    assert events(tmp_path) == ["proposed", "intent", "applied"]
    assert cycle(root).results[0].status == "pass"

    undone = decide(root, "revert")
    assert (undone.status, undone.detail) == (
        "reverted",
        f"{before} row(s) are as they were before the fix",
    )
    assert yen(warehouse) == before
    assert events(tmp_path) == ["proposed", "intent", "applied", "revert_intent", "reverted"]


def test_an_auto_fix_is_published_at_once(tmp_path: Path, warehouse: str) -> None:
    root = project(tmp_path, warehouse, approve="auto")
    [applied] = cycle(root).outcomes
    assert (applied.status, applied.change.check) == ("applied", CHECK)
    assert yen(warehouse) == 0
    assert events(tmp_path) == ["intent", "applied"]


def test_a_fix_that_would_touch_more_than_max_rows_is_refused_before_it_runs(
    tmp_path: Path, warehouse: str
) -> None:
    root = project(tmp_path, warehouse, approve="auto", max_rows=5)
    before = yen(warehouse)
    [refused] = cycle(root).outcomes
    assert refused.status == "refused"
    assert refused.detail == (
        "not written: the fix would touch more than max_rows (5) rows of payments: "
        "refused before it ran"
    )
    assert yen(warehouse) == before


def test_a_fix_that_leaves_the_check_red_is_not_published(tmp_path: Path, warehouse: str) -> None:
    set_rate(warehouse, 1_000_000)  # a rate that makes the Yen too small to be dollars
    root = project(tmp_path, warehouse, approve="auto")
    before = yen(warehouse)
    [refused] = cycle(root).outcomes
    assert refused.status == "refused"
    assert refused.detail.startswith(
        f"the branch check failed: {CHECK} is still fail on the branch: 2026-11-24:"
    )
    assert yen(warehouse) == before
    with Store.open(f"sqlite:///{tmp_path}/state.db") as store:
        assert store.corrections() == []  # nothing to approve: it cannot pass


def test_rows_changed_after_the_report_refuse_the_apply(tmp_path: Path, warehouse: str) -> None:
    root = project(tmp_path, warehouse)
    [proposed] = cycle(root).outcomes
    touched = proposed.change.old[0]["id"]
    engine = sa.create_engine(warehouse)
    try:
        with engine.begin() as conn:  # someone corrects one of the rows by hand meanwhile
            conn.execute(
                sa.update(PAYMENTS)
                .where(PAYMENTS.c.id == touched)
                .values(local_value=10, currency="USD")
            )
    finally:
        engine.dispose()
    before = yen(warehouse)
    conflict = decide(root, "approve")
    assert conflict.status == "conflict"
    assert "the rows changed since the fix was verified" in conflict.detail
    assert yen(warehouse) == before
    assert events(tmp_path) == ["proposed", "intent", "conflict"]
    [again] = cycle(root).outcomes  # verified again on the rows as they are now
    assert (again.status, len(again.change.old)) == ("proposed", before)


def test_an_undo_after_someone_changed_a_row_is_refused_whole(
    tmp_path: Path, warehouse: str
) -> None:
    root = project(tmp_path, warehouse, approve="auto")
    [applied] = cycle(root).outcomes
    touched = applied.change.new[0]["id"]
    engine = sa.create_engine(warehouse)
    try:
        with engine.begin() as conn:
            conn.execute(sa.update(PAYMENTS).where(PAYMENTS.c.id == touched).values(local_value=1))
    finally:
        engine.dispose()
    undone = decide(root, "revert")
    assert undone.status == "conflict"
    assert f"the row {{'id': {touched}}} of payments changed since" in undone.detail
    assert yen(warehouse) == 0  # not one row put back
    assert events(tmp_path)[-2:] == ["revert_intent", "revert_refused"]


def test_only_the_suites_people_may_apply_a_fix(tmp_path: Path, warehouse: str) -> None:
    root = project(tmp_path, warehouse)
    cycle(root)
    with pytest.raises(Exception, match="mallory@acme.com may not decide correction 1"):
        decide(root, "approve", by="mallory@acme.com")


@pytest.mark.parametrize(
    ("after_call", "settled", "left"),
    [(True, "applied", 0), (False, "failed", None)],
    ids=["killed-after-the-commit", "killed-before-the-commit"],
)
def test_a_fix_killed_around_its_commit_is_settled_once_on_the_next_run(
    tmp_path: Path, warehouse: str, after_call: bool, settled: str, left: int | None
) -> None:
    root = project(tmp_path, warehouse, approve="auto")
    before = yen(warehouse)
    target = "dq_agent.sources.sql:SqlBranch.publish"
    run_killed(root, "payments", target, after_call=after_call, now=NOW)
    assert events(tmp_path) == ["intent"]
    assert yen(warehouse) == (before if left is None else left)

    again = cycle(root, NOW + timedelta(minutes=30))  # the next scheduled run
    assert again.settled == [f"correction 1: {settled} ({_SETTLED[settled]})"]
    assert events(tmp_path) == ["intent", settled]
    if settled == "applied":
        assert again.outcomes == []  # published once: nothing left to fix
    else:  # nothing had changed: the fix is tried again, and published this time
        assert [o.status for o in again.outcomes] == ["applied"]
    assert yen(warehouse) == 0


_SETTLED = {
    "applied": "settled on start: the branch had been published",
    "failed": "settled on start: interrupted before the branch was published; nothing changed",
}


BAD_FIXES = """
suite: payments
owner: finance-data@acme.com
source: {connector: warehouse, table: payments}
key: [id]
checks:
  - row_count: {min: 1}
  - distribution_shift: {timestamp_column: paid_at, column: local_value, group_by: currency}
fixes:
  - name: two_statements
    when: {check: "distribution_shift(local_value)"}
    sql: "UPDATE payments SET currency = 'USD'; DELETE FROM payments"
  - name: other_table
    when: {check: "distribution_shift(local_value)"}
    sql: "UPDATE fx_rates SET rate = 1"
  - name: unknown_check
    when: {check: "freshness(paid_at)"}
    sql: "DELETE FROM payments WHERE id = 1"
  - name: unknown_parameter
    when: {check: row_count}
    sql: "DELETE FROM payments WHERE paid_at >= :bucket_start"
  - name: a_select
    when: {check: "distribution_shift(local_value)", group: {country: JP}}
    sql: "SELECT * FROM payments"
"""


def test_a_fix_that_is_not_one_change_of_the_suites_table_is_refused_by_validate(
    tmp_path: Path, sqlite_url: str
) -> None:
    root = make_project(
        tmp_path,
        connectors={"warehouse": f"type: sql\nurl: '{sqlite_url}'\n"},
        suites={"payments": BAD_FIXES},
    )
    loaded = load_project(root, env={})
    assert [(i.line, i.path, i.message) for i in loaded.issues] == [
        (
            11,
            "fixes[0].sql",
            "expected one statement, found 2: a fix is a single UPDATE, DELETE or INSERT … SELECT",
        ),
        (
            14,
            "fixes[1].sql",
            "UPDATE changes fx_rates: a fix may change only the suite's table payments",
        ),
        (
            16,
            "fixes[2].when.check",
            "unknown check 'freshness(paid_at)'; expected one of this suite's: row_count, "
            "distribution_shift(local_value)",
        ),
        (20, "fixes[3].sql", "unknown parameter(s) :bucket_start; row_count gives no parameters"),
        (
            22,
            "fixes[4].when.group",
            "distribution_shift(local_value) groups by currency, not country",
        ),
        (23, "fixes[4].sql", "a fix is an UPDATE, DELETE or INSERT … SELECT, not SELECT"),
    ]
    assert loaded.suites == {}


def test_the_dashboard_shows_the_branch_report_and_applies_the_fix(
    tmp_path: Path, sqlite_url: str
) -> None:
    from dq_agent.escalate.endpoint import WebRequest
    from dq_agent.ui.app import Dashboard
    from dq_agent.ui.auth import hash_token

    warehouse = sqlite_url
    load_payments(warehouse)
    root = project(tmp_path, warehouse)
    with open(root / "dq-agent.yml", "a", encoding="utf-8") as settings:
        token = hash_token("finance-token-123456")
        settings.write(
            f"ui:\n  trusted_header: X-User\n  users:\n    {OWNER}: {{token_hash: '{token}'}}\n"
        )
    before = yen(warehouse)
    cycle(root)
    loaded = load_project(root, env={})
    headers = {"x-user": OWNER}
    with Store.open(loaded.state_url) as store:
        [incident] = store.incidents(events=False)
        app = Dashboard(lambda: loaded, store, OPTIONS)
        page = app.handle(WebRequest("GET", f"/incidents/{incident['id']}", {}, headers, {}))
        assert page is not None and page.status == 200
        assert f"{before} row(s) → <strong>{before} row(s)</strong>" in page.body
        assert f"{CHECK}: fail → pass" in page.body
        assert ">Apply fix</button>" in page.body
        form = {"csrf": app.gate.form_token(headers, {}), "action": "approve", "correction": "1"}
        answer = app.handle(
            WebRequest("POST", f"/incidents/{incident['id']}", {}, headers, {}, form)
        )
        assert answer is not None and answer.status == 303
    assert yen(warehouse) == 0
    assert events(tmp_path) == ["proposed", "intent", "applied"]


def test_a_fix_that_no_longer_verifies_when_applied_closes_the_proposal(
    tmp_path: Path, sqlite_url: str
) -> None:
    load_payments(sqlite_url)
    root = project(tmp_path, sqlite_url)
    cycle(root)
    set_rate(sqlite_url, 150_000_000)  # the rate someone typed in is wrong by a million
    before = yen(sqlite_url)
    refused = decide(root, "approve")
    assert refused.status == "conflict"
    assert f"the branch check failed: {CHECK} is still fail on the branch" in refused.detail
    assert yen(sqlite_url) == before
    assert events(tmp_path) == ["proposed", "intent", "conflict"]


def test_an_undo_killed_after_its_commit_is_settled_as_reverted(
    tmp_path: Path, warehouse: str
) -> None:
    root = project(tmp_path, warehouse, approve="auto")
    [applied] = cycle(root).outcomes
    with Store.open(f"sqlite:///{tmp_path}/state.db") as store:
        correction = store.correction(1)
        assert correction is not None
        # The undo claimed the correction and committed its branch, then the process died.
        store.ledger_append(
            event="revert_intent",
            at=NOW,
            correction_id=1,
            old=correction.new,
            new=correction.old,
            decided_by=OWNER,
            detail="revert requested",
            after=("applied",),
        )
    engine = sa.create_engine(warehouse)
    try:
        with engine.begin() as conn:
            for row in applied.change.old:
                conn.execute(
                    sa.update(PAYMENTS)
                    .where(PAYMENTS.c.id == row["id"])
                    .values(local_value=row["local_value"], currency=row["currency"])
                )
    finally:
        engine.dispose()
    again = cycle(root, NOW + timedelta(minutes=30))
    assert again.settled == [
        "correction 1: reverted (settled on start: the branch had been published)"
    ]
    assert events(tmp_path) == ["intent", "applied", "revert_intent", "reverted"]
    # Undone: the Yen are back, and the fix is not made again behind the person's back.
    [proposed] = again.outcomes
    assert (proposed.status, proposed.detail) == (
        "proposed",
        "verified on a branch; correction 1 of the same fix was undone, so a person decides",
    )
    assert yen(warehouse) == len(applied.change.old)


def test_a_dry_run_says_which_fix_it_would_try_and_writes_nothing(
    tmp_path: Path, sqlite_url: str
) -> None:
    from rich.console import Console

    from dq_agent.report import print_outcomes

    load_payments(sqlite_url)
    root = project(tmp_path, sqlite_url, approve="auto")
    before = yen(sqlite_url)
    loaded = load_project(root, env={})
    with Store.open(loaded.state_url) as store:
        planned = run_cycle(loaded, ["payments"], store, OPTIONS, dry_run=True)
        assert store.corrections() == []
    console = Console(record=True, width=200)
    print_outcomes(console, planned.outcomes, [], dry_run=True)
    assert console.export_text().splitlines()[1:] == [
        "  planned   warehouse/payments fix=convert_yen, currency=JPY, "
        "bucket_start=2026-11-24T00:00:00, bucket_end=2026-11-25T00:00:00: "
        "the rows its SQL selects  would run convert_yen on a branch"
    ]
    assert yen(sqlite_url) == before
