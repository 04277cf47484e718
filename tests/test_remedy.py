"""Corrections end to end: the running example's $10m slip on the Salesforce emulator."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from dq_agent.agent import run_cycle
from dq_agent.cli import main
from dq_agent.config import load_project
from dq_agent.engine import RunOptions
from dq_agent.errors import DqAgentError
from dq_agent.remedy import approve_correction, revert_correction, settle
from dq_agent.sources.retry import RetryPolicy
from dq_agent.store import Store
from dq_agent_sandbox.http import LoopbackServer
from dq_agent_sandbox.runner import demo_seed
from dq_agent_sandbox.salesforce import SalesforceEmulator
from tests.helpers import make_project, run_killed
from tests.sf_client import salesforce_client

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
SLIP = "006Dn0000040000042"  # 200 seats × $5,000 typed as $10,000,000
WHALE = "006Dn0000040000088"  # 2,000 seats × $5,000: a real $10m deal
OPTIONS = RunOptions(clock=lambda: NOW, retry=RetryPolicy(attempts=2, sleep=lambda _s: None))

SETTINGS = """
state_url: 'sqlite:///{root}/state.db'
corrections:
  enabled: {enabled}
  allow:
    - {{connector: crm, object: Opportunity, fields: [Amount]}}
  max_per_run: {max_per_run}
"""
SUITE = """
suite: crm_opportunities
owner: sales-ops@acme.com
escalation: [cro@acme.com]
source:
  connector: crm
  object: Opportunity
  fields: [Id, Name, Amount, Seats__c, Price_Per_Seat__c, StageName]
key: [Id]
checks:
  - fat_finger: {{column: Amount, witness: "Seats__c * Price_Per_Seat__c", auto_correct: {auto}}}
"""


@pytest.fixture
def crm() -> Iterator[tuple[LoopbackServer, SalesforceEmulator]]:
    emulator = SalesforceEmulator()
    emulator.seed(demo_seed(NOW)["salesforce"]["objects"])
    with LoopbackServer(emulator) as server:
        yield server, emulator


def project(
    root: Path,
    server: LoopbackServer,
    *,
    enabled: bool = True,
    max_per_run: int = 5,
    auto: bool = True,
) -> Path:
    return make_project(
        root,
        connectors={
            "crm": f"type: salesforce\ninstance_url: {server.base_url}\nsession_id: sandbox\n"
        },
        suites={"crm": SUITE.format(auto=str(auto).lower())},
        settings=SETTINGS.format(root=root, enabled=str(enabled).lower(), max_per_run=max_per_run),
    )


def amount(emulator: SalesforceEmulator, record_id: str) -> Any:
    [record] = [r for r in emulator.state()["objects"]["Opportunity"] if r["Id"] == record_id]
    return record["Amount"]


def cycle(root: Path, **kwargs: Any) -> Any:
    loaded = load_project(root, env={})
    assert loaded.issues == ()
    with Store.open(loaded.state_url) as store:
        return run_cycle(loaded, ["crm_opportunities"], store, OPTIONS, **kwargs)


def ledger(root: Path) -> list[dict[str, Any]]:
    with Store.open(f"sqlite:///{root}/state.db") as store:
        assert store.verify_ledger() == []
        return [c.to_json() for c in store.corrections()]


def test_the_ten_million_dollar_slip_is_corrected_and_can_be_undone(
    tmp_path: Path, crm: Any
) -> None:
    server, emulator = crm
    root = project(tmp_path, server)
    [outcome] = cycle(root).outcomes
    assert (outcome.status, outcome.change.key, outcome.change.old, outcome.change.new) == (
        "applied",
        {"Id": SLIP},
        10000000,
        1000000,
    )
    assert amount(emulator, SLIP) == 1_000_000  # what the owner now sees in the CRM
    assert amount(emulator, WHALE) == 10_000_000  # the whale is untouched
    [entry] = ledger(tmp_path)
    assert {
        k: entry[k] for k in ("id", "suite", "key", "column", "old", "new", "status", "decided_by")
    } == {
        "id": 1,
        "suite": "crm_opportunities",
        "key": {"Id": SLIP},
        "column": "Amount",
        "old": 10000000,
        "new": 1000000,
        "status": "applied",
        "decided_by": "rule",
    }
    # The next run finds nothing left to correct.
    assert cycle(root).outcomes == []

    loaded = load_project(root, env={})
    with Store.open(loaded.state_url) as store:
        undone = revert_correction(loaded, store, 1, by="sales-ops@acme.com", options=OPTIONS)
    assert undone.status == "reverted"
    assert amount(emulator, SLIP) == 10_000_000
    assert [e["status"] for e in ledger(tmp_path)] == ["reverted"]


def test_a_human_edit_between_plan_and_write_wins(
    tmp_path: Path, crm: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    server, emulator = crm
    root = project(tmp_path, server)
    import dq_agent.remedy.runner as runner

    real = runner.verify_on_branch

    def meanwhile(*args: Any, **kwargs: Any) -> Any:
        verdict = real(*args, **kwargs)
        # The owner fixes the amount by hand while the agent is verifying its change.
        from tests.sf_client import salesforce_client

        salesforce_client(server.base_url).Opportunity.update(SLIP, {"Amount": 1_000_001})
        return verdict

    monkeypatch.setattr(runner, "verify_on_branch", meanwhile)
    [outcome] = cycle(root).outcomes
    assert outcome.status == "conflict"
    assert amount(emulator, SLIP) == 1_000_001
    assert [e["status"] for e in ledger(tmp_path)] == ["conflict"]


@pytest.mark.parametrize(
    ("settings", "env", "reason"),
    [
        ({"enabled": False}, {}, "corrections are disabled (corrections: enabled: false)"),
        ({}, {"DQ_AGENT_READ_ONLY": "1"}, "read-only mode (DQ_AGENT_READ_ONLY=1)"),
        (
            {"max_per_run": 0},
            {},
            "1 corrections in one run exceed max_per_run (0): nothing is written, the owner decides",
        ),
    ],
)
def test_guardrails_write_nothing_and_ask_the_owner(
    tmp_path: Path, crm: Any, settings: dict[str, Any], env: dict[str, str], reason: str
) -> None:
    server, emulator = crm
    root = project(tmp_path, server, **settings)
    [outcome] = cycle(root, env=env).outcomes
    assert outcome.status == "refused"
    assert outcome.detail == f"not applied automatically: {reason}"
    assert amount(emulator, SLIP) == 10_000_000
    [entry] = ledger(tmp_path)
    assert (entry["status"], entry["new"]) == ("pending", 1000000)


def test_a_dry_run_writes_and_records_nothing(tmp_path: Path, crm: Any) -> None:
    server, emulator = crm
    root = project(tmp_path, server)
    [outcome] = cycle(root, dry_run=True).outcomes
    assert (outcome.status, outcome.change.new) == ("planned", 1000000)
    assert amount(emulator, SLIP) == 10_000_000
    assert ledger(tmp_path) == []


def test_plan_prints_the_changeset_alone_and_run_dry_run_the_checks_too(
    tmp_path: Path, crm: Any
) -> None:
    server, emulator = crm
    root = project(tmp_path, server)
    planned = CliRunner().invoke(main, ["plan", "--project", str(root)])
    change = f"  planned   crm/Opportunity Id={SLIP}: Amount: 10000000 → 1000000"
    lines = planned.stdout.splitlines()
    assert lines[0] == "corrections (dry run: nothing written)"
    assert lines[1].startswith(change)
    assert len(lines) == 2
    as_json = CliRunner().invoke(main, ["plan", "--project", str(root), "--format", "json"])
    [correction] = json.loads(as_json.stdout)["corrections"]
    assert (correction["status"], correction["new"]) == ("planned", 1000000)
    dry = CliRunner().invoke(main, ["run", "--dry-run", "--project", str(root)]).stdout
    assert "fat_finger(Amount)" in dry and change in dry
    assert amount(emulator, SLIP) == 10_000_000
    assert ledger(tmp_path) == []


def test_an_owner_approves_a_proposal(tmp_path: Path, crm: Any) -> None:
    server, emulator = crm
    root = project(tmp_path, server, auto=False)
    [outcome] = cycle(root).outcomes
    assert (outcome.status, outcome.correction_id) == ("proposed", 1)
    assert amount(emulator, SLIP) == 10_000_000
    loaded = load_project(root, env={})
    with Store.open(loaded.state_url) as store:
        with pytest.raises(
            DqAgentError, match="mallory@acme.com may not decide correction 1 of suite"
        ):
            approve_correction(loaded, store, 1, by="mallory@acme.com", options=OPTIONS)
        approved = approve_correction(loaded, store, 1, by="CRO@acme.com", options=OPTIONS)
    assert approved.status == "applied"
    assert amount(emulator, SLIP) == 1_000_000
    [entry] = ledger(tmp_path)
    assert (entry["status"], entry["decided_by"]) == ("applied", "owner:CRO@acme.com")
    # A second run does not propose it again.
    assert cycle(root).outcomes == []


def died_right_after_the_write(tmp_path: Path, crm: Any) -> Path:
    """A project whose run was killed just after its Salesforce PATCH went through."""
    server, emulator = crm
    root = project(tmp_path, server)
    # Killed after the API call, before the ledger hears of it.
    run_killed(root, "crm_opportunities", "dq_agent.sources.salesforce:SalesforceSource.write")
    assert amount(emulator, SLIP) == 1_000_000
    assert [e["status"] for e in ledger(tmp_path)] == ["pending"]  # the intent, and nothing after
    return root


def test_a_crash_between_intent_and_outcome_is_settled_without_a_second_write(
    tmp_path: Path, crm: Any
) -> None:
    _, emulator = crm
    root = died_right_after_the_write(tmp_path, crm)

    requests_before = emulator.state()["requests"]
    loaded = load_project(root, env={})
    with Store.open(loaded.state_url) as store:
        settled = settle(loaded, store, OPTIONS)
        [correction] = store.corrections()
    assert settled.notes == ["correction 1: applied (settled on start: the write had gone through)"]
    assert correction.status == "applied"
    assert emulator.state()["requests"] > requests_before  # it read the source...
    assert amount(emulator, SLIP) == 1_000_000  # ...and wrote nothing again
    assert cycle(root).outcomes == []


def test_a_crash_right_after_the_write_still_tells_the_owner(tmp_path: Path, crm: Any) -> None:
    root = died_right_after_the_write(tmp_path, crm)
    after = cycle(root)
    assert after.settled == ["correction 1: applied (settled on start: the write had gone through)"]
    assert after.outcomes == []  # nothing written again
    with Store.open(f"sqlite:///{tmp_path}/state.db") as store:
        told = [(m.kind, m.recipient) for m in store.outbox(correction_id=1)]
    # The FYI with its Undo the dead process never queued: queued by the run that settled it.
    assert told == [("fyi", "sales-ops@acme.com")]
    assert cycle(root).settled == []
    with Store.open(f"sqlite:///{tmp_path}/state.db") as store:
        assert len(store.outbox(correction_id=1)) == 1  # once


def test_a_second_revert_is_a_no_op_that_says_so(tmp_path: Path, crm: Any) -> None:
    server, emulator = crm
    root = project(tmp_path, server)
    cycle(root)
    loaded = load_project(root, env={})
    with Store.open(loaded.state_url) as store:
        stale = store.correction(1)  # what a second click's page still shows: applied
        first = revert_correction(loaded, store, 1, by="sales-ops@acme.com", options=OPTIONS)
        assert first.status == "reverted"
        again = revert_correction(loaded, store, 1, by="sales-ops@acme.com", options=OPTIONS)
        assert (again.status, again.detail) == (
            "unchanged",
            "correction 1 was already reverted at 2026-11-24 12:00 UTC: nothing to do",
        )
        # Even with the stale view of a click that raced the first, nothing follows "reverted".
        assert stale is not None and stale.status == "applied"
        from dq_agent.remedy.apply import revert

        raced = revert(store, None, stale, by="sales-ops@acme.com", clock=lambda: NOW)  # type: ignore[arg-type]
        assert raced.status == "unchanged"
        events = [e.event for e in store.correction(1).events]  # type: ignore[union-attr]
        assert events == ["intent", "applied", "revert_intent", "reverted"]
        assert store.correction(1).status == "reverted"  # type: ignore[union-attr]
    assert amount(emulator, SLIP) == 10_000_000  # the ledger matches the source
    # The next run does not write the undone fix again: the value put back is kept.
    [outcome] = cycle(root).outcomes
    assert outcome.status == "kept"
    assert amount(emulator, SLIP) == 10_000_000
    # Another slip of the same deal later: the fix that was undone is theirs to decide.
    client = salesforce_client(server.base_url)
    client.Opportunity.update(SLIP, {"Amount": 100_000_000})
    client.session.close()
    [outcome] = cycle(root).outcomes
    assert outcome.status == "proposed"
    assert "correction 1 of the same value was undone, so a person decides" in outcome.change.reason
    assert amount(emulator, SLIP) == 100_000_000


def test_a_value_someone_else_already_fixed_is_not_claimed_as_a_correction(
    tmp_path: Path, crm: Any
) -> None:
    from dq_agent.sources.salesforce import SalesforceSource

    server, emulator = crm
    root = project(tmp_path, server)
    real = SalesforceSource.write

    def person_fixes_it_first(self: Any, key: Any, column: str, old: Any, new: Any) -> Any:
        # Between the agent's read and its write, the owner types the right amount.
        self._sf.Opportunity.update(key["Id"], {column: new})
        return real(self, key, column, old, new)

    SalesforceSource.write = person_fixes_it_first  # type: ignore[method-assign]
    try:
        [outcome] = cycle(root).outcomes
    finally:
        SalesforceSource.write = real  # type: ignore[method-assign]
    assert (outcome.status, outcome.detail) == (
        "conflict",
        "already fixed at the source: Amount holds 1,000,000 already",
    )
    [entry] = ledger(tmp_path)
    assert (entry["status"], entry["applied_at"]) == ("conflict", None)
    assert (
        entry["detail"]
        == "already fixed at the source: Amount holds 1,000,000 already; nothing written"
    )
    with Store.open(f"sqlite:///{tmp_path}/state.db") as store:
        assert store.outbox(correction_id=1) == []  # no "I changed Amount" for someone else's fix
        # The deal is right, by the owner's own hand: no incident, nobody asked to fix it.
        assert store.incidents() == []
        assert store.outbox() == []


def test_corrections_cli_lists_shows_and_verifies(tmp_path: Path, crm: Any) -> None:
    from click.testing import CliRunner

    from dq_agent.cli import main

    server, _ = crm
    root = project(tmp_path, server)
    cycle(root)
    runner = CliRunner()
    listed = runner.invoke(
        main, ["corrections", "list", "--project", str(root), "--format", "json"]
    )
    assert listed.exit_code == 0
    [entry] = json.loads(listed.stdout)
    assert {"id", "suite", "key", "column", "old", "new", "status"} <= set(entry)
    shown = runner.invoke(
        main, ["corrections", "show", "1", "--project", str(root), "--format", "json"]
    )
    assert [e["event"] for e in json.loads(shown.stdout)["events"]] == ["intent", "applied"]
    verified = runner.invoke(main, ["corrections", "verify", "--project", str(root)])
    assert (verified.exit_code, verified.stdout) == (0, "ledger intact: 1 correction\n")


SHEET_SUITE = """
suite: us_forecast_sheet
owner: pete@acme.com
source: {connector: sheets, spreadsheet: fin, worksheet: US}
checks:
  - row_count: {min: 1}
"""
HEADER = ["region", "state", "units"]
ROWS = [["US", "CA", 120], ["US", "NY", 95]]


def test_an_overwritten_sheet_is_restored_from_its_last_good_snapshot(tmp_path: Path) -> None:
    from dq_agent_sandbox.gsheets import SheetsEmulator
    from tests.sheets_client import open_sheets_client

    emulator = SheetsEmulator()
    emulator.seed({"finance": {"key": "fin", "sheets": {"US": [HEADER, *ROWS]}}})
    with LoopbackServer(emulator) as server:
        root = make_project(
            tmp_path,
            connectors={"sheets": f"type: gsheets\nbase_url: {server.base_url}\n"},
            suites={"sheet": SHEET_SUITE},
            settings=SETTINGS.format(root=tmp_path, enabled="true", max_per_run=5),
        )

        def sheet() -> list[list[Any]]:
            return [list(r) for r in emulator.state()["spreadsheets"]["fin"]["sheets"]["US"]]

        def run_sheet() -> list[Any]:
            loaded = load_project(root, env={})
            with Store.open(loaded.state_url) as store:
                return run_cycle(loaded, ["us_forecast_sheet"], store, OPTIONS).outcomes

        assert run_sheet() == []  # a good read: kept as a snapshot, nothing to do
        # Pete pastes over the tab: only the header survives.
        with open_sheets_client(server.base_url) as client:
            client.open_by_key("fin").worksheet("US").batch_clear(["A2:C3"])
        [proposal] = run_sheet()
        assert (proposal.status, proposal.correction_id) == ("proposed", 1)
        assert proposal.detail == "restore the last good snapshot from 2026-11-24 12:00 UTC"
        assert sheet() == [HEADER]
        assert run_sheet()[0].correction_id == 1  # proposed once, not again every run

        loaded = load_project(root, env={})
        with Store.open(loaded.state_url) as store:
            restored = approve_correction(loaded, store, 1, by="pete@acme.com", options=OPTIONS)
            assert restored.status == "applied"
            assert sheet() == [HEADER, *ROWS]
            undone = revert_correction(loaded, store, 1, by="pete@acme.com", options=OPTIONS)
            assert undone.status == "reverted"
            assert sheet() == [HEADER]
            assert [e.event for e in store.correction(1).events] == [  # type: ignore[union-attr]
                "proposed",
                "intent",
                "applied",
                "revert_intent",
                "reverted",
            ]
