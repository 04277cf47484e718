"""One bad value never stops a run: garbled Salesforce records are reported by key, and every
other check and suite still runs — end to end, through ``dq-agent check``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from dq_agent.cli import main
from dq_agent_sandbox.http import LoopbackServer
from dq_agent_sandbox.salesforce import SalesforceEmulator
from tests.helpers import make_project
from tests.sources import load_orders, order_rows

FIELDS = {
    "Name": "string",
    "Amount": "currency",
    "Seats__c": "double",
    "Price_Per_Seat__c": "currency",
    "StageName": "picklist",
}
CRM_SUITE = """
suite: crm_opportunities
owner: sales-ops@acme.com
source:
  connector: crm
  object: Opportunity
  fields: [Name, Amount, Seats__c, Price_Per_Seat__c, StageName]
key: [Id]
checks:
  - row_count: {min: 1}
  - fat_finger: {column: Amount, witness: "Seats__c * Price_Per_Seat__c"}
  - expect_column_values_to_be_unique: {column: Id}
  - expect_column_values_to_not_be_null: {column: StageName}
"""
ORDERS_SUITE = """
suite: orders
source: {connector: warehouse, table: orders}
key: [id]
checks: [row_count]
"""


def opportunity_id(n: int) -> str:
    return f"006000000000{n:03d}AAA"


def deal(n: int, **values: Any) -> dict[str, Any]:
    seats, price = 10 + n, 500.0
    return {
        "Id": opportunity_id(n),
        "Name": f"deal {n}",
        "Seats__c": seats,
        "Price_Per_Seat__c": price,
        "Amount": seats * price,
        "StageName": "Prospecting",
        **values,
    }


# What a proxy, a replica or a broken integration handed back instead of Salesforce's own.
GARBLED = [
    deal(101, Amount="abc"),
    deal(102, Amount=""),
    deal(103, Amount="1,000"),
    deal(104, Amount={"x": 1}),
    deal(105, Amount=[1]),
    deal(3, Amount=1.0),  # deal 3 again
]


@pytest.fixture
def crm() -> Iterator[tuple[LoopbackServer, SalesforceEmulator]]:
    emulator = SalesforceEmulator()
    with LoopbackServer(emulator) as server:
        yield server, emulator


def test_garbled_amounts_and_a_repeated_id_are_reported_by_key_and_the_run_goes_on(
    tmp_path: Path, crm: tuple[LoopbackServer, SalesforceEmulator]
) -> None:
    server, emulator = crm
    emulator.seed({"Opportunity": {"fields": FIELDS, "records": [deal(n) for n in range(1, 13)]}})
    emulator.serve_raw("Opportunity", GARBLED)
    warehouse = f"sqlite:///{tmp_path / 'warehouse.db'}"
    load_orders(warehouse, order_rows(5))
    project = make_project(
        tmp_path / "project",
        connectors={
            "crm": f"type: salesforce\ninstance_url: {server.base_url}\nsession_id: sandbox\n",
            "warehouse": f"type: sql\nurl: '{warehouse}'\n",
        },
        suites={"crm_opportunities": CRM_SUITE, "orders": ORDERS_SUITE},
        settings=f"state_url: 'sqlite:///{tmp_path}/state.db'\n",
    )

    done = CliRunner().invoke(
        main, ["check", "--project", str(project), "--format", "json"], catch_exceptions=False
    )

    assert done.exit_code == 2, done.output  # a failed check, not a crash (3) or a traceback
    suites = {s["suite"]: s for s in json.loads(done.stdout)["suites"]}
    assert {name: s["status"] for name, s in suites.items()} == {
        "crm_opportunities": "fail",
        "orders": "pass",
    }
    checks = {c["name"]: c for c in suites["crm_opportunities"]["checks"]}
    assert {name: c["status"] for name, c in checks.items()} == {
        "source_records": "fail",
        "row_count": "pass",
        "fat_finger(Amount)": "pass",  # the twelve good deals agree with seats × price
        "expect_column_values_to_be_unique(Id)": "pass",
        "expect_column_values_to_not_be_null(StageName)": "pass",
    }
    read = checks["source_records"]
    assert read["message"] == (
        "reading Opportunity: 6 records with problems: "
        f"record Id={opportunity_id(101)}: Amount holds 'abc', not a number; "
        f"record Id={opportunity_id(102)}: Amount holds '', not a number; "
        f"record Id={opportunity_id(103)}: Amount holds '1,000', not a number; "
        f'record Id={opportunity_id(104)}: Amount holds {{"x": 1}}, not a number; '
        f"record Id={opportunity_id(105)}: Amount holds [1], not a number; and 1 more"
    )
    assert [(f["key"], f["column"], f["observed"], f["reason"]) for f in read["findings"]] == [
        ({"Id": opportunity_id(101)}, "Amount", "abc", "Amount holds 'abc', not a number"),
        ({"Id": opportunity_id(102)}, "Amount", "", "Amount holds '', not a number"),
        ({"Id": opportunity_id(103)}, "Amount", "1,000", "Amount holds '1,000', not a number"),
        ({"Id": opportunity_id(104)}, "Amount", {"x": 1}, 'Amount holds {"x": 1}, not a number'),
        ({"Id": opportunity_id(105)}, "Amount", [1], "Amount holds [1], not a number"),
        (
            {"Id": opportunity_id(3)},
            "Id",
            opportunity_id(3),
            "came 2 times among the records read (only the first is checked)",
        ),
    ]
    assert read["observed"] == {"problems": 6, "records": 6}
    # The garbled records are still counted and checked for everything else.
    assert checks["row_count"]["observed"]["row_count"] == 17
