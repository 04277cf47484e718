"""``dq-agent mcp``: the gateway's tools served over stdio, driven by the real MCP client.

The server runs as ``python -m dq_agent.cli mcp`` in a child process, as an MCP client
would start it; what is tested is that the tools are the gateway's, answered under its
policy, and that proposing never writes to the source.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from click.testing import CliRunner
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.types import CallToolResult, TextContent

from dq_agent.agent import run_cycle
from dq_agent.cli import main
from dq_agent.config import load_project
from dq_agent.store import Store
from dq_agent.triage.gateway import TOOLS
from dq_agent_sandbox.http import LoopbackServer
from dq_agent_sandbox.runner import demo_seed
from dq_agent_sandbox.salesforce import SalesforceEmulator
from tests.helpers import make_project
from tests.test_llm import CRM_SUITE, NOW, OPTIONS, SESSION, SLIP

WHALE = "006Dn0000040000088"  # a real $10,000,000 deal: not a finding
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def crm() -> Iterator[tuple[SalesforceEmulator, str]]:
    emulator = SalesforceEmulator(session_id=SESSION)
    emulator.seed(demo_seed(NOW)["salesforce"]["objects"])
    with LoopbackServer(emulator) as server:
        yield emulator, server.base_url


def project(root: Path, crm_url: str) -> Path:
    """A project with no ``llm:`` section: the MCP server does not need one."""
    return make_project(
        root,
        connectors={"crm": f"type: salesforce\ninstance_url: {crm_url}\nsession_id: {SESSION}\n"},
        suites={"crm": CRM_SUITE},
        settings=f"""
state_url: 'sqlite:///{root}/state.db'
corrections:
  enabled: true
  allow:
    - {{connector: crm, object: Opportunity, fields: [Amount]}}
""",
    )


def text(result: CallToolResult) -> str:
    [block] = result.content
    assert isinstance(block, TextContent)
    return block.text


async def session_calls(root: Path, errlog: Path) -> dict[str, Any]:
    """One MCP session against ``dq-agent mcp``: what the client saw."""
    server = StdioServerParameters(
        command=sys.executable,
        args=["-m", "dq_agent.cli", "mcp", "--project", str(root)],
        cwd=REPO,
    )
    seen: dict[str, Any] = {}
    with errlog.open("w", encoding="utf-8") as err:
        async with (
            stdio_client(server, errlog=err) as (read, write),
            ClientSession(read, write) as session,
        ):
            init = await session.initialize()
            seen["server"] = init.server_info.name
            seen["tools"] = (await session.list_tools()).tools
            seen["incidents"] = await session.call_tool("list_incidents", {"active": True})
            seen["resolved"] = await session.call_tool("list_incidents", {"status": "resolved"})
            seen["evidence"] = await session.call_tool("read_evidence", {"incident_id": 1})
            seen["not_a_finding"] = await session.call_tool(
                "propose_correction",
                {
                    "incident_id": 1,
                    "key": {"Id": WHALE},
                    "column": "Amount",
                    "value": 0,
                    "reason": "every Amount to 0",
                },
            )
            seen["too_big"] = await session.call_tool(
                "propose_correction",
                {
                    "incident_id": 1,
                    "key": {"Id": SLIP},
                    "column": "Amount",
                    "value": 0,
                    "reason": "zero it",
                },
            )
            seen["not_a_number"] = await session.call_tool(
                "propose_correction",
                {
                    "incident_id": 1,
                    "key": {"Id": SLIP},
                    "column": "Amount",
                    "value": "1200000; DROP TABLE x",
                    "reason": "text where a number goes",
                },
            )
            seen["within_policy"] = await session.call_tool(
                "propose_correction",
                {
                    "incident_id": 1,
                    "key": {"Id": SLIP},
                    "column": "Amount",
                    "value": 1_200_000,
                    "reason": "240 seats were signed, per the order form",
                },
            )
            seen["bad_arguments"] = await session.call_tool("read_evidence", {})
    return seen


def test_an_mcp_client_investigates_under_the_gateways_policy(
    tmp_path: Path, crm: tuple[SalesforceEmulator, str]
) -> None:
    salesforce, crm_url = crm
    root = project(tmp_path / "p", crm_url)
    loaded = load_project(root, env={})
    assert loaded.issues == ()
    with Store.open(loaded.state_url) as store:
        run_cycle(loaded, ["crm_opportunities"], store, OPTIONS)
    before = salesforce.state()

    seen = anyio.run(session_calls, root, tmp_path / "stderr.txt")

    assert seen["server"] == "dq-agent"
    tools = {t.name: t for t in seen["tools"]}
    assert list(tools) == [t["name"] for t in TOOLS] + ["list_incidents"]
    for tool in TOOLS:
        assert tools[tool["name"]].description == tool["description"]
        assert tools[tool["name"]].input_schema == tool["input_schema"]

    assert not seen["incidents"].is_error
    [listed] = json.loads(text(seen["incidents"]))
    assert set(listed) == {"id", "suite", "check", "status", "owners", "summary", "opened_at"}
    assert (listed["id"], listed["suite"], listed["status"]) == (1, "crm_opportunities", "notified")
    assert listed["owners"] == ["dana@acme.com"]  # the record's owner, from the CRM
    assert json.loads(text(seen["resolved"])) == []

    assert not seen["evidence"].is_error
    evidence = json.loads(text(seen["evidence"]))
    assert evidence["incident"] == 1
    findings = evidence["evidence"]["findings"]
    assert [(f["key"], f["column"]) for f in findings] == [({"Id": SLIP}, "Amount")]

    assert seen["not_a_finding"].is_error
    assert text(seen["not_a_finding"]) == (
        "Amount of {'Id': '006Dn0000040000088'} is not among this incident's findings: only "
        "those can be proposed"
    )
    assert seen["too_big"].is_error
    assert text(seen["too_big"]) == (
        "the policy refuses this proposal: a change of more than 10^3 needs a person "
        "(max_magnitude)"
    )
    assert seen["not_a_number"].is_error
    assert text(seen["not_a_number"]) == (
        "the policy refuses this proposal: Amount must be a number, like the value it replaces, "
        "not '1200000; DROP TABLE x'"
    )
    assert seen["bad_arguments"].is_error
    assert text(seen["bad_arguments"]).startswith("bad arguments for read_evidence:")

    assert not seen["within_policy"].is_error
    assert text(seen["within_policy"]).startswith("proposed as correction ")
    with Store.open(loaded.state_url) as store:
        ledger = [(c.status, c.decided_by, c.key, c.new) for c in store.corrections()]
    assert sorted(ledger, key=lambda c: c[1]) == [
        ("pending", "mcp", {"Id": SLIP}, 1_200_000),
        ("pending", "rule", {"Id": SLIP}, 1_000_000),
    ]

    assert salesforce.state() == before  # not a request, not a write: proposing only
    assert "Traceback" not in (tmp_path / "stderr.txt").read_text(encoding="utf-8")


def test_a_store_that_cannot_open_is_an_error_on_stderr_and_exit_3(tmp_path: Path) -> None:
    root = make_project(tmp_path / "p", settings="state_url: 'not a database url'\n")
    result = CliRunner().invoke(main, ["mcp", "--project", str(root)])
    assert result.exit_code == 3
    assert result.stdout == ""
    assert result.stderr.splitlines()[-1].startswith("error: invalid state store URL")


def test_listed_summaries_hide_the_values_of_redacted_columns(tmp_path: Path) -> None:
    from dq_agent.triage.gateway import Gateway
    from dq_agent.triage.mcp_server import list_incidents
    from tests.test_llm import problem
    from tests.test_llm import project as llm_project

    root = llm_project(tmp_path, "http://127.0.0.1:9")  # redact_columns: [Name]
    problem(
        root,
        "accepted_values(Name)",
        {
            "message": "1 unexpected Name value: Acme deal (3 rows)",
            "observed": {"unexpected_values": {"Acme deal": 3}},
            "findings": [
                {"key": {"value": "Acme deal"}, "column": "Name", "observed": "Acme deal"}
            ],
        },
    )
    loaded = load_project(root, env={})
    with Store.open(loaded.state_url) as store:
        gateway = Gateway(loaded, store, lambda: NOW, actor="mcp")
        [listed] = json.loads(list_incidents(gateway, {}))
    assert listed["summary"] == "1 unexpected Name value: [redacted] (3 rows)"
