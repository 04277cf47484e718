"""Salesforce at real scale: Bulk API 2.0 reads, sObject Collections writes, the org's daily
API limit — with the real simple-salesforce client against the emulator."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from dq_agent.agent import run_cycle
from dq_agent.cli import main
from dq_agent.config import load_project
from dq_agent.config.models import SalesforceConnector, SalesforceSourceSpec
from dq_agent.engine import RunOptions
from dq_agent.sources import salesforce
from dq_agent.sources.base import CellWrite
from dq_agent.sources.retry import RetryPolicy
from dq_agent.store import Store
from dq_agent_sandbox.http import LoopbackServer, Request, Response
from dq_agent_sandbox.salesforce import SalesforceEmulator
from tests.helpers import make_project

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
LONG_AGO = "2026-11-20T08:00:00+00:00"
SLEPT: list[float] = []
FAST = RetryPolicy(attempts=2, base_delay=0.5, sleep=SLEPT.append)
OPTIONS = RunOptions(clock=lambda: NOW, retry=FAST)
FIELDS = {
    "Name": "string",
    "Amount": "currency",
    "Seats__c": "int",
    "Price_Per_Seat__c": "currency",
    "IsWon": "boolean",
    "CloseDate": "date",
    "Seen__c": "datetime",
    "StageName": "picklist",
    "OwnerId": "reference",
}


@dataclass
class Counted:
    """The emulator behind a log of the API calls it answered: (method, path)."""

    emulator: SalesforceEmulator
    calls: list[tuple[str, str]] = field(default_factory=list)
    name: str = "salesforce"
    # (method, path prefix): how many such calls answer 503 before the org answers again.
    down: dict[tuple[str, str], int] = field(default_factory=dict)

    def handle(self, request: Request) -> Response:
        if request.path.startswith("/services/data/v"):
            path = request.path.split("/", 4)[4] if request.path.count("/") >= 4 else ""
            self.calls.append((request.method, path))
            for (method, prefix), left in self.down.items():
                if left and request.method == method and path.startswith(prefix):
                    self.down[method, prefix] = left - 1
                    body = [{"message": "down for maintenance", "errorCode": "SERVER_UNAVAILABLE"}]
                    return Response(503, body)
        return self.emulator.handle(request)

    def count(self, method: str, prefix: str) -> int:
        return sum(1 for m, p in self.calls if m == method and p.startswith(prefix))


@pytest.fixture
def org() -> Iterator[tuple[LoopbackServer, Counted]]:
    counted = Counted(SalesforceEmulator(request_limit=1_000_000))
    with LoopbackServer(counted) as server:  # type: ignore[arg-type]
        yield server, counted


def deals(n: int) -> list[dict[str, Any]]:
    """``n`` opportunities with every kind of value, nulls and text that needs quoting."""
    records = []
    for i in range(n):
        records.append(
            {
                "Name": f'deal {i}, "quoted"\nline' if i % 97 == 0 else f"deal {i}",
                "Amount": None if i % 50 == 0 else 1000.0 * (i % 40) + 0.25,
                "Seats__c": i % 13,
                "Price_Per_Seat__c": 1000.0,
                "IsWon": i % 3 == 0,
                "CloseDate": None if i % 31 == 0 else f"2026-12-{i % 28 + 1:02d}",
                "Seen__c": f"2026-11-{i % 20 + 1:02d}T0{i % 10}:30:00+00:00",
                "StageName": "Prospecting",
                "LastModifiedDate": LONG_AGO,
            }
        )
    return records


def source_of(
    server: LoopbackServer, *, bulk_threshold: int = 10_000, max_api_share: float = 0.5
) -> salesforce.SalesforceSource:
    connector = SalesforceConnector(
        type="salesforce",
        instance_url=server.base_url,
        session_id="sandbox",
        bulk_threshold=bulk_threshold,
        max_api_share=max_api_share,
    )  # type: ignore[arg-type]
    spec = SalesforceSourceSpec(connector="crm", object="Opportunity", fields=list(FIELDS))
    return salesforce.SalesforceSource(
        salesforce.connect(connector), spec, retry=FAST, connector=connector
    )


def rows(source: salesforce.SalesforceSource) -> list[dict[str, Any]]:
    relation = source.open()
    with relation.connect() as conn:
        order = relation.column("Name")
        return [
            dict(r._mapping) for r in conn.execute(sa.select(relation.selectable).order_by(order))
        ]


def test_bulk_and_rest_reads_give_identical_records(org: Any) -> None:
    server, counted = org
    counted.emulator.seed({"Opportunity": {"fields": FIELDS, "records": deals(4_500)}})
    rest, bulk = source_of(server), source_of(server, bulk_threshold=1_000)
    try:
        by_rest = rows(rest)
        rest_calls = counted.count("GET", "query")
        counted.calls.clear()
        by_bulk = rows(bulk)
    finally:
        rest.close()
        bulk.close()
    assert (rest.read_by, bulk.read_by) == ("rest", "bulk")
    assert len(by_bulk) == 4_500
    assert by_bulk == by_rest
    assert rest_calls == 3  # 2,000 records a page
    # One REST page to learn the size, then the job: created, polled, its results fetched.
    assert counted.count("POST", "jobs/query") == 1
    assert counted.count("GET", "jobs/query/") >= 2
    assert SLEPT and max(SLEPT) <= 30.0  # polled with backoff, never a real wait


def test_a_bulk_job_that_fails_is_a_clear_error(org: Any) -> None:
    server, counted = org
    counted.emulator.seed({"Opportunity": {"fields": FIELDS, "records": deals(30)}})
    source = source_of(server, bulk_threshold=10)
    source._spec = SalesforceSourceSpec(
        connector="crm", object="Opportunity", fields=list(FIELDS), where="Amount > 0 OFFSET 5"
    )
    with pytest.raises(Exception) as raised:
        source.open()
    assert "Salesforce" in str(raised.value)


def test_many_corrections_go_200_records_a_call(org: Any) -> None:
    server, counted = org
    counted.emulator.seed({"Opportunity": {"fields": FIELDS, "records": deals(1_000)}})
    source = source_of(server)
    try:
        relation = source.open()
        with relation.connect() as conn:
            found = conn.execute(
                sa.select(
                    relation.column("Id"), relation.column("Amount"), relation.column("Seats__c")
                ).where(relation.column("Amount").is_not(None))
            ).all()
        writes = [
            CellWrite({"Id": record_id}, "Amount", amount, seats * 1000.0 + 1)
            for record_id, amount, seats in found
        ]
        counted.calls.clear()
        results = source.write_many(writes)
    finally:
        source.close()
    assert len(results) == len(writes) == 980
    assert {r.status for r in results} == {"written"}
    # 980 records: 5 updates of up to 200, the re-read before and the verification after.
    assert counted.count("PATCH", "composite/sobjects") == 5
    assert counted.count("GET", "composite/sobjects") == 2
    assert len(counted.calls) == 7
    state = {r["Id"]: r for r in counted.emulator.state()["objects"]["Opportunity"]}
    assert all(state[w.key["Id"]]["Amount"] == w.new for w in writes)
    history = counted.emulator.state()["objects"]["OpportunityFieldHistory"]
    assert len([h for h in history if h["Field"] == "Amount"]) == 980


def test_each_record_of_a_batch_stands_alone(org: Any) -> None:
    server, counted = org
    three = [
        {"Name": name, "Amount": 10.0, "StageName": "Prospecting", "LastModifiedDate": LONG_AGO}
        for name in ("a", "b", "c", "d")
    ]
    counted.emulator.seed({"Opportunity": {"fields": FIELDS, "records": three}})
    source = source_of(server)
    sf = source._sf
    try:
        relation = source.open()
        with relation.connect() as conn:
            ids = dict(
                conn.execute(sa.select(relation.column("Name"), relation.column("Id"))).all()
            )
        # After the read: someone types a new Amount on b, and only touches the stage on c.
        sf.Opportunity.update(ids["b"], {"Amount": 12.0})
        sf.Opportunity.update(ids["c"], {"StageName": "Qualification"})
        results = source.write_many(
            [
                CellWrite({"Id": ids["a"]}, "Amount", 10.0, 1.0),
                CellWrite({"Id": ids["b"]}, "Amount", 10.0, 1.0),
                CellWrite({"Id": ids["c"]}, "Amount", 10.0, 1.0),
                CellWrite({"Id": ids["d"]}, "Name", "d", None),
            ]
        )
    finally:
        source.close()
    assert [(r.status, r.detail) for r in results] == [
        ("written", ""),
        ("conflict", "Amount is now 12.0"),
        ("conflict", "the record changed after it was read (412)"),
        ("failed", results[3].detail),
    ]
    assert results[3].detail == (
        "Salesforce refused the record: REQUIRED_FIELD_MISSING: Required fields are missing: [Name]"
    )
    amounts = {r["Name"]: r["Amount"] for r in counted.emulator.state()["objects"]["Opportunity"]}
    assert amounts == {"a": 1.0, "b": 12.0, "c": 10.0, "d": 10.0}


def test_writes_of_one_record_go_as_one_entry_and_a_failed_call_is_read_back(org: Any) -> None:
    server, counted = org
    two = [
        {"Name": name, "Amount": 10.0, "Seats__c": 1, "StageName": "Prospecting"}
        for name in ("a", "b")
    ]
    counted.emulator.seed({"Opportunity": {"fields": FIELDS, "records": two}})
    source = source_of(server)
    try:
        relation = source.open()
        with relation.connect() as conn:
            ids = dict(
                conn.execute(sa.select(relation.column("Name"), relation.column("Id"))).all()
            )
        counted.calls.clear()
        results = source.write_many(
            [
                CellWrite({"Id": ids["a"]}, "Amount", 10.0, 1.0),
                CellWrite({"Id": ids["a"]}, "Seats__c", 1, 2),
                CellWrite({"Id": ids["a"]}, "Amount", 10.0, 3.0),
            ]
        )
        assert [(r.status, r.after) for r in results] == [
            ("written", 1.0),
            ("written", 2),
            ("failed", 1.0),
        ]
        assert results[2].detail == f"Amount of {ids['a']} is set by an earlier write of the batch"
        assert counted.count("PATCH", "composite/sobjects") == 1
        # The org is down for the whole write: each record is read back and found unchanged.
        counted.down["PATCH", "composite/sobjects"] = 2  # the first try and the retry
        [down] = source.write_many([CellWrite({"Id": ids["b"]}, "Amount", 10.0, 1.0)])
    finally:
        source.close()
    assert (down.status, down.after) == ("failed", 10.0)
    assert down.detail.startswith("not written: Salesforce SERVER_UNAVAILABLE")


def test_past_the_api_share_a_run_stops_calling_the_org(org: Any) -> None:
    server, counted = org
    emulator = counted.emulator
    emulator.seed({"Opportunity": {"fields": FIELDS, "records": deals(10)}})
    emulator.request_limit = 100
    source = source_of(server)
    try:
        for _ in range(51):  # the org's other integrations used half of today's requests
            source._sf.query("SELECT Id FROM Opportunity LIMIT 1")
        before = len(counted.calls)
        with pytest.raises(Exception) as raised:
            source.open()
    finally:
        source.close()
    assert str(raised.value) == (
        "Salesforce API usage is 51 of 100 daily API requests (51%), past max_api_share 50%: "
        "no more Salesforce reads or writes this run (the describe on Opportunity was not made)"
    )
    assert len(counted.calls) == before


SETTINGS = """
state_url: 'sqlite:///{root}/state.db'
defaults:
  max_findings: 1000
corrections:
  enabled: true
  allow:
    - {{connector: crm, object: Opportunity, fields: [Amount]}}
  max_per_run: 1000
"""
SUITE = """
suite: crm_opportunities
owner: sales-ops@acme.com
source:
  connector: crm
  object: Opportunity
  fields: [Id, Name, Amount, Seats__c, Price_Per_Seat__c, StageName]
key: [Id]
checks:
  - fat_finger: {column: Amount, witness: "Seats__c * Price_Per_Seat__c", auto_correct: true}
"""


def crm_project(root: Path, server: LoopbackServer, extra: str = "") -> Path:
    return make_project(
        root,
        connectors={
            "crm": f"type: salesforce\ninstance_url: {server.base_url}\nsession_id: sandbox\n"
            + extra
        },
        suites={"crm": SUITE},
        settings=SETTINGS.format(root=root),
    )


def slips(n: int) -> list[dict[str, Any]]:
    """``10 × n`` deals of which every tenth (``n`` of them) is a tenfold slip of its seats ×
    price."""
    return [
        {
            "Name": f"deal {i}",
            "Amount": (10 if i % 10 == 0 else 1) * (i % 40 + 1) * 5000.0,
            "Seats__c": i % 40 + 1,
            "Price_Per_Seat__c": 5000.0,
            "StageName": "Prospecting",
            "LastModifiedDate": LONG_AGO,
        }
        for i in range(10 * n)
    ]


def amounts(counted: Counted) -> list[float]:
    return [r["Amount"] for r in counted.emulator.state()["objects"]["Opportunity"]]


def test_a_run_corrects_and_an_owner_reverts_many_records_in_a_few_calls(
    tmp_path: Path, org: Any
) -> None:
    server, counted = org
    counted.emulator.seed({"Opportunity": {"fields": FIELDS, "records": slips(450)}})
    root = crm_project(tmp_path, server)
    loaded = load_project(root, env={})
    counted.calls.clear()
    with Store.open(loaded.state_url) as store:
        cycle = run_cycle(loaded, ["crm_opportunities"], store, OPTIONS)
        [finding_check] = cycle.results[0].checks
        applied = [c for c in store.corrections() if c.status == "applied"]
    auto = [f for f in finding_check.findings if f.action == "auto_correct"]
    # Where seats × 10 would explain the amount as well, a person decides: proposed.
    assert (len(auto), len(finding_check.findings)) == (337, 450)
    assert sorted(o.status for o in cycle.outcomes) == ["applied"] * 337 + ["proposed"] * 113
    assert len(applied) == 337
    assert counted.count("PATCH", "composite/sobjects") == 2  # 200 + 137
    assert counted.count("PATCH", "sobjects/") == 0
    corrected = {str(c.key["Id"]) for c in applied}
    state = counted.emulator.state()["objects"]["Opportunity"]
    assert all(r["Amount"] == r["Seats__c"] * 5000.0 for r in state if r["Id"] in corrected)

    counted.calls.clear()
    ids = [str(c.id) for c in applied]
    result = CliRunner().invoke(
        main, ["corrections", "revert", *ids, "--by", "sales-ops@acme.com", "--project", str(root)]
    )
    assert result.exit_code == 0, result.output
    assert result.output.count(": reverted: ") == 337
    assert counted.count("PATCH", "composite/sobjects") == 2
    assert amounts(counted) == [r["Amount"] for r in slips(450)]
    with Store.open(loaded.state_url) as store:
        assert {c.status for c in store.corrections() if c.id in {a.id for a in applied}} == {
            "reverted"
        }
        assert store.verify_ledger() == []


def test_a_batch_cut_short_is_settled_by_the_next_run(tmp_path: Path, org: Any) -> None:
    server, counted = org
    counted.emulator.seed({"Opportunity": {"fields": FIELDS, "records": slips(30)}})
    root = crm_project(tmp_path, server)
    loaded = load_project(root, env={})
    counted.down["GET", "composite/sobjects"] = 2  # the re-read before the write, and its retry
    with Store.open(loaded.state_url) as store:
        first = run_cycle(loaded, ["crm_opportunities"], store, OPTIONS).outcomes
        intents = [c.id for c in store.corrections() if c.events[-1].event == "intent"]
    cut = [o for o in first if o.status == "failed"]
    assert len(cut) == len(intents) > 1
    assert cut[0].detail.startswith("the batch of writes failed (Salesforce SERVER_UNAVAILABLE")
    assert cut[0].detail.endswith("; the next run settles each record")
    assert counted.count("PATCH", "composite/sobjects") == 0

    later = RunOptions(clock=lambda: NOW.replace(hour=13), retry=FAST)
    with Store.open(loaded.state_url) as store:
        second = run_cycle(loaded, ["crm_opportunities"], store, later)
        settled = {c.id: c for c in store.corrections()}
    # Read back, each was never written; then this run corrects them, once.
    assert {settled[i].status for i in intents} == {"failed"}
    assert settled[intents[0]].events[-1].detail == (
        "settled on start: interrupted before the write; nothing changed"
    )
    assert sorted({o.status for o in second.outcomes}) == ["applied", "proposed"]
    assert len([o for o in second.outcomes if o.status == "applied"]) == len(intents)
    assert counted.count("PATCH", "composite/sobjects") == 1


def test_a_run_past_the_api_share_reports_an_error_that_says_so(tmp_path: Path, org: Any) -> None:
    server, counted = org
    counted.emulator.seed({"Opportunity": {"fields": FIELDS, "records": slips(3)}})
    counted.emulator.request_limit = 10
    other = source_of(server)
    for _ in range(3):  # another integration's calls today
        other._sf.query("SELECT Id FROM Opportunity LIMIT 1")
    root = crm_project(tmp_path, server, extra="max_api_share: 0.2\n")
    loaded = load_project(root, env={})
    with Store.open(loaded.state_url) as store:
        cycle = run_cycle(loaded, ["crm_opportunities"], store, OPTIONS)
        [suite] = cycle.results
        incidents = store.incidents()
    assert suite.status == "error"
    assert "past max_api_share 20%" in json.dumps(suite.to_json())
    assert [o.status for o in cycle.outcomes] == []
    [incident] = incidents
    stopped = "past max_api_share 20%: no more Salesforce reads or writes this run"
    assert stopped in incident["summary"]
    assert counted.count("PATCH", "composite/sobjects") == 0


def test_sources_lists_connectors_reachability_and_quotas(tmp_path: Path, org: Any) -> None:
    server, counted = org
    counted.emulator.request_limit = 15_000
    root = crm_project(tmp_path, server)
    (root / "connectors" / "down.yml").write_text(
        "type: salesforce\ninstance_url: http://127.0.0.1:1\nsession_id: x\ntimeout: 2\n"
    )
    result = CliRunner().invoke(main, ["sources", "--format", "json", "--project", str(root)])
    assert result.exit_code == 3, result.output
    found = {s["connector"]: s for s in json.loads(result.output)["sources"]}
    assert found["crm"]["state"] == "reachable"
    assert found["crm"]["suites"] == ["crm_opportunities"]
    quotas = {q["name"]: q for q in found["crm"]["quotas"]}
    assert quotas["daily API requests"]["limit"] == 15_000
    assert 0 < quotas["daily API requests"]["used"] < 10
    assert found["down"]["state"] == "unreachable"
    assert found["down"]["detail"] == "cannot reach Salesforce: ConnectionError"
