"""Remote MCP through the broker: the investigation tools over streamable HTTP, driven by
the real MCP client, each request's token deciding which tools it sees and whose incidents.

The broker holds the warehouse's path (its stand-in for a secret) and serves on the loopback;
two teams' suites each have an open incident: the CRM's $10m slip and an empty payroll table.
"""

from __future__ import annotations

import json
import os
import shutil
import ssl
import subprocess
import sys
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import anyio
import httpx2
import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp.types import CallToolResult, TextContent

from dq_agent.agent import run_cycle
from dq_agent.broker.mcp_http import McpServer
from dq_agent.broker.server import Broker
from dq_agent.cli import main
from dq_agent.config import load_project
from dq_agent.engine import RunOptions
from dq_agent.errors import DqAgentError
from dq_agent.sources.retry import RetryPolicy
from dq_agent.store import Store
from tests.helpers import make_project

NOW = datetime(2026, 12, 4, 9, 0, tzinfo=UTC)
OPTIONS = RunOptions(clock=lambda: NOW, retry=RetryPolicy(attempts=1, sleep=lambda _s: None))
READ_ONLY = ["read_evidence", "read_runbook", "read_past_incidents", "list_incidents"]

DEALS = """
suite: crm_deals
owner: sales-ops@acme.example
source: {connector: warehouse, table: deals}
key: [id]
checks:
  - fat_finger: {column: amount, witness: "seats * price", auto_correct: false}
runbook: Amounts over $5m need the CRO's sign-off.
"""
PAYROLL = """
suite: hr_payroll
owner: people-ops@acme.example
source: {connector: warehouse, table: payroll}
checks:
  - row_count: {min: 1}
runbook: Salaries are confidential; ask people-ops.
"""


@dataclass
class Served:
    broker: Broker
    server: McpServer
    project: Path
    env: dict[str, str]
    warehouse: str
    state_url: str

    def token(self, suites: str, actions: str = "investigate", tools: str | None = None) -> str:
        _, secret = self.broker.tokens.create(
            suites=suites.split(","),
            actions=actions.split(","),
            tools=None if tools is None else tools.split(","),
            ttl=timedelta(days=1),
            now=NOW,
        )
        return secret

    def audit(self, token: str) -> list[tuple[str, str | None, str | None, str]]:
        """The audit lines of ``token``: operation, suite, target, outcome."""
        token_id = token.split("_")[1]
        return [
            (e["operation"], e["suite"], e["target"], e["outcome"])
            for e in self.broker.audit.entries()
            if e["token"] == token_id
        ]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("broker-mcp")
    warehouse = f"sqlite:///{root}/warehouse.db"
    engine = sa.create_engine(warehouse)
    with engine.begin() as conn:
        conn.execute(
            sa.text("CREATE TABLE deals (id int primary key, amount int, seats int, price int)")
        )
        # Deal 1: 200 seats at $5,000 typed as $10,000,000; the others as they should be.
        conn.execute(sa.text("INSERT INTO deals VALUES (1, 10000000, 200, 5000)"))
        conn.execute(
            sa.text("INSERT INTO deals VALUES (:id, :seats * 5000, :seats, 5000)"),
            [{"id": i, "seats": 10 * i} for i in range(2, 12)],
        )
        conn.execute(sa.text("CREATE TABLE payroll (id int primary key, salary int)"))
    engine.dispose()
    project = make_project(
        root / "project",
        connectors={"warehouse": "type: sql\nurl: sqlite:///${WAREHOUSE_DB}\n"},
        suites={"deals": DEALS, "payroll": PAYROLL},
        settings=f"state_url: 'sqlite:///{root}/state.db'\n"
        "corrections:\n  enabled: true\n"
        "  allow: [{connector: warehouse, object: deals, fields: [amount]}]\n",
    )
    env = {"WAREHOUSE_DB": f"{root}/warehouse.db"}
    # The agent's cycle opens the two incidents (the broker only reads the same store).
    loaded = load_project(project, env=env)
    assert not loaded.issues, loaded.issues
    with Store.open(loaded.state_url) as store:
        opened = run_cycle(loaded, ["crm_deals", "hr_payroll"], store, OPTIONS).notices
    assert [(n.incident_id, n.suite, n.event) for n in opened] == [
        (1, "crm_deals", "opened"),
        (2, "hr_payroll", "opened"),
    ]
    broker = Broker(project, root / "home", env=env, clock=lambda: NOW)
    with McpServer(broker, "http://127.0.0.1:0") as server:
        yield Served(broker, server, project, env, warehouse, loaded.state_url)
    broker.close()


T = TypeVar("T")


def session(
    served: Served,
    token: str | None,
    script: Callable[[ClientSession], Awaitable[T]],
    *,
    url: str | None = None,
    verify: ssl.SSLContext | bool = True,
) -> T:
    """Run ``script`` in an MCP session with the broker, sending ``token`` as the bearer."""

    async def run() -> T:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with (
            httpx2.AsyncClient(headers=headers, trust_env=False, verify=verify) as http,
            streamable_http_client(url or served.server.url, http_client=http) as (read, write),
            ClientSession(read, write) as client,
        ):
            await client.initialize()
            return await script(client)

    return anyio.run(run)


def text(result: CallToolResult) -> str:
    [block] = result.content
    assert isinstance(block, TextContent)
    return block.text


async def tool_names(client: ClientSession) -> list[str]:
    return [t.name for t in (await client.list_tools()).tools]


def test_a_token_lists_exactly_its_own_tools(served: Served) -> None:
    reader = served.token("crm_*")
    assert session(served, reader, tool_names) == READ_ONLY
    proposer = served.token("crm_*", tools="list_incidents,read_evidence,propose_correction")
    assert session(served, proposer, tool_names) == [
        "read_evidence",
        "propose_correction",
        "list_incidents",
    ]
    assert served.audit(reader) == []  # listing tools calls none


def test_a_tool_outside_the_tokens_list_is_refused(served: Served) -> None:
    reader = served.token("crm_*")
    reader_id = reader.split("_")[1]

    async def script(client: ClientSession) -> tuple[CallToolResult, CallToolResult]:
        arguments = {"incident_id": 1, "key": {"id": 1}, "column": "amount", "value": 0}
        proposed = await client.call_tool("propose_correction", arguments | {"reason": "x"})
        unknown = await client.call_tool("run_sql", {"sql": "DELETE FROM deals"})
        return proposed, unknown

    proposed, unknown = session(served, reader, script)
    assert proposed.is_error and unknown.is_error
    assert text(proposed) == (
        f"token {reader_id} may not use propose_correction; it may use: read_evidence, "
        "read_runbook, read_past_incidents, list_incidents"
    )
    assert text(unknown) == "there is no tool 'run_sql'"
    assert served.audit(reader) == [
        ("mcp:propose_correction", None, "incident 1", "refused"),
        ("mcp:run_sql", None, None, "refused"),
    ]


def test_a_token_for_one_suite_neither_sees_nor_reads_anothers_incident(
    served: Served,
) -> None:
    crm = served.token("crm_*")
    crm_id = crm.split("_")[1]

    async def script(client: ClientSession) -> dict[str, CallToolResult]:
        return {
            "listed": await client.call_tool("list_incidents", {}),
            "own": await client.call_tool("read_evidence", {"incident_id": 1}),
            "runbook": await client.call_tool("read_runbook", {"incident_id": 1}),
            "payroll": await client.call_tool("read_evidence", {"incident_id": 2}),
            "payroll_runbook": await client.call_tool("read_runbook", {"incident_id": 2}),
            "past": await client.call_tool("read_past_incidents", {"incident_id": 2}),
        }

    seen = session(served, crm, script)
    assert [(i["id"], i["suite"]) for i in json.loads(text(seen["listed"]))] == [(1, "crm_deals")]
    evidence = json.loads(text(seen["own"]))
    assert evidence["suite"] == "crm_deals"
    assert [(f["key"], f["column"]) for f in evidence["evidence"]["findings"]] == [
        ({"id": 1}, "amount")
    ]
    assert text(seen["runbook"]) == "Amounts over $5m need the CRO's sign-off."
    for refused in ("payroll", "payroll_runbook", "past"):
        assert seen[refused].is_error
        assert text(seen[refused]) == (
            f"token {crm_id} may not see incident 2: it does not cover the incident's suite"
        )
        assert "people-ops" not in text(seen[refused])
    assert served.audit(crm) == [
        ("mcp:list_incidents", None, None, "ok"),
        ("mcp:read_evidence", "crm_deals", "incident 1", "ok"),
        ("mcp:read_runbook", "crm_deals", "incident 1", "ok"),
        ("mcp:read_evidence", "hr_payroll", "incident 2", "refused"),
        ("mcp:read_runbook", "hr_payroll", "incident 2", "refused"),
        ("mcp:read_past_incidents", "hr_payroll", "incident 2", "refused"),
    ]
    # Every team's token sees its own.
    people = served.token("hr_*")
    listed = session(served, people, lambda client: client.call_tool("list_incidents", {}))
    assert [i["suite"] for i in json.loads(text(listed))] == ["hr_payroll"]


def test_proposing_records_a_proposal_and_leaves_the_source_row_alone(served: Served) -> None:
    proposer = served.token("crm_*", tools="read_evidence,propose_correction")
    engine = sa.create_engine(served.warehouse)

    def deals() -> list[Any]:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(sa.text("SELECT * FROM deals ORDER BY id"))]

    before = deals()

    async def script(client: ClientSession) -> tuple[CallToolResult, CallToolResult]:
        proposal = {"incident_id": 1, "key": {"id": 1}, "column": "amount"}
        within = await client.call_tool(
            "propose_correction",
            proposal | {"value": 1_200_000, "reason": "240 seats, per the order form"},
        )
        beyond = await client.call_tool(
            "propose_correction", proposal | {"value": 0, "reason": "zero it"}
        )
        return within, beyond

    within, beyond = session(served, proposer, script)
    assert not within.is_error
    assert text(within).startswith("proposed as correction ")
    assert text(within).endswith(": an owner decides")
    assert beyond.is_error
    assert text(beyond).startswith("the policy refuses this proposal: ")
    assert deals() == before  # not written: an owner decides
    engine.dispose()
    with Store.open(served.state_url) as store:
        proposals = [
            (c.status, c.decided_by, c.key, c.new)
            for c in store.corrections()
            if c.decided_by == "mcp"
        ]
    assert proposals == [("pending", "mcp", {"id": 1}, 1_200_000)]
    [ok, refused] = served.audit(proposer)
    assert ok == ("mcp:propose_correction", "crm_deals", "incident 1", "ok")
    assert refused == ("mcp:propose_correction", "crm_deals", "incident 1", "refused")
    details = [e["detail"] for e in served.broker.audit.entries()]
    assert text(within) in details


def test_a_revoked_token_is_refused_at_its_next_request(served: Served) -> None:
    token = served.token("crm_*")
    token_id = token.split("_")[1]
    home = ["--home", str(served.broker.tokens.path.parent)]

    async def script(client: ClientSession) -> tuple[CallToolResult, str]:
        before = await client.call_tool("read_evidence", {"incident_id": 1})
        outcome = CliRunner().invoke(main, ["broker", "token", "revoke", token_id, *home])
        assert outcome.exit_code == 0, outcome.output
        with pytest.raises(MCPError) as refused:
            await client.call_tool("read_evidence", {"incident_id": 1})
        return before, str(refused.value)

    before, _ = session(served, token, script)
    assert not before.is_error
    assert served.audit(token) == [
        ("mcp:read_evidence", "crm_deals", "incident 1", "ok"),
        ("mcp:read_evidence", None, "incident 1", "refused"),
    ]
    [line] = [e for e in served.broker.audit.entries() if e["token"] == token_id][1:]
    assert line["detail"].startswith(f"token {token_id} was revoked at ")
    assert token not in json.dumps(served.broker.audit.entries())


def post(served: Served, headers: dict[str, str]) -> httpx2.Response:
    initialize = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-11-25",
            "capabilities": {},
            "clientInfo": {"name": "curl", "version": "1"},
        },
    }
    accept = {"Accept": "application/json, text/event-stream"}
    with httpx2.Client(trust_env=False) as http:
        return http.post(served.server.url, json=initialize, headers=accept | headers)


def test_no_token_an_unknown_one_or_one_that_may_not_investigate_is_refused(
    served: Served,
) -> None:
    answer = post(served, {})
    assert answer.status_code == 401
    assert answer.json() == {
        "error": "no token: send Authorization: Bearer <token>",
        "reason": "no_token",
    }
    assert answer.headers["WWW-Authenticate"].startswith("Bearer")
    last = served.broker.audit.entries()[-1]
    assert (last["token"], last["operation"], last["target"], last["outcome"]) == (
        None,
        "mcp",
        "initialize",
        "refused",
    )

    wrong = "dqb_0123456789ab_" + "s" * 43
    answer = post(served, {"Authorization": f"Bearer {wrong}"})
    assert answer.status_code == 401
    assert answer.json()["error"] == "no token 0123456789ab is known to this broker"

    checker = served.token("crm_*", actions="check")
    checker_id = checker.split("_")[1]
    answer = post(served, {"Authorization": f"Bearer {checker}"})
    assert answer.status_code == 403
    assert answer.json() == {
        "error": f"token {checker_id} may not `investigate`; it allows: check",
        "reason": "action_not_allowed",
    }
    assert checker.split("_", 2)[2] not in answer.text
    assert served.audit(checker) == [("mcp", None, "initialize", "refused")]

    # The real client gets no session without a token.
    with pytest.raises(ExceptionGroup) as failed:
        session(served, None, tool_names)
    assert failed.value.subgroup(MCPError) is not None


def test_every_call_is_in_the_audit_log_and_the_chain_holds(served: Served) -> None:
    token = served.token("*", tools="list_incidents,read_evidence")

    async def script(client: ClientSession) -> None:
        await client.call_tool("list_incidents", {"active": True})
        await client.call_tool("read_evidence", {"incident_id": 2})
        await client.call_tool("read_evidence", {"incident_id": 99})
        await client.call_tool("read_runbook", {"incident_id": 2})

    session(served, token, script)
    assert served.audit(token) == [
        ("mcp:list_incidents", None, None, "ok"),
        ("mcp:read_evidence", "hr_payroll", "incident 2", "ok"),
        ("mcp:read_evidence", None, "incident 99", "refused"),  # no such incident
        ("mcp:read_runbook", None, "incident 2", "refused"),  # not one of its tools
    ]
    [listed] = [e for e in served.broker.audit.entries() if e["operation"] == "mcp:list_incidents"][
        -1:
    ]
    assert listed["detail"] == "2 incidents"
    checked = served.broker.audit.verify()
    assert checked.ok and checked.lines == len(served.broker.audit.entries())


def test_redacted_columns_stay_hidden_though_the_llm_settings_are_the_agents(
    served: Served, tmp_path: Path
) -> None:
    """The broker never reads the agent's LLM API key (its environment lacks it), but it reads
    what the llm: section hides from a model: the MCP tools hide it too."""
    project = tmp_path / "project"
    shutil.copytree(served.project, project)
    settings = project / "dq-agent.yml"
    settings.write_text(
        settings.read_text() + "llm:\n  model: claude-sonnet-4-6\n  api_key: ${ANTHROPIC_API_KEY}\n"
        "  redact_columns: [amount]\n"
    )
    broker = Broker(project, tmp_path / "home", env=served.env, clock=lambda: NOW)
    _, token = broker.tokens.create(
        suites=["crm_*"],
        actions=["investigate"],
        tools=["read_evidence", "propose_correction"],
        ttl=timedelta(days=1),
        now=NOW,
    )

    async def script(client: ClientSession) -> tuple[CallToolResult, CallToolResult]:
        evidence = await client.call_tool("read_evidence", {"incident_id": 1})
        proposal = {"incident_id": 1, "key": {"id": 1}, "column": "amount", "value": 1_200_000}
        proposed = await client.call_tool("propose_correction", proposal | {"reason": "x"})
        return evidence, proposed

    with McpServer(broker, "http://127.0.0.1:0") as server:
        evidence, proposed = session(served, token, script, url=server.url)
    broker.close()
    [finding] = json.loads(text(evidence))["evidence"]["findings"]
    assert (finding["observed"], finding["proposed"]) == ("[redacted]", "[redacted]")
    assert "10,000,000" not in text(evidence) and "10000000" not in text(evidence)
    assert proposed.is_error
    assert text(proposed) == "amount is redacted: it cannot be proposed"


def test_https_with_the_brokers_own_certificate(served: Served, tmp_path: Path) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(datetime.now(UTC) - timedelta(days=1))
        .not_valid_after(datetime.now(UTC) + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / "broker.pem", tmp_path / "broker.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    token = served.token("crm_*")
    with McpServer(served.broker, "https://localhost:0", cert=cert_file, key=key_file) as server:
        assert server.url.startswith("https://localhost:") and server.url.endswith("/mcp")
        trusted = ssl.create_default_context(cafile=str(cert_file))
        names = session(served, token, tool_names, url=server.url, verify=trusted)
        assert names == READ_ONLY
        with pytest.raises(ExceptionGroup) as untrusted:
            session(served, token, tool_names, url=server.url)
        assert "CERTIFICATE_VERIFY_FAILED" in repr(untrusted.value.exceptions)


@pytest.mark.parametrize(
    ("listen", "message"),
    [
        (
            "http://0.0.0.0:8443",
            "--mcp-listen http://0.0.0.0:8443: without TLS the broker listens on the loopback "
            "only; give https://… with --cert and --key",
        ),
        ("https://0.0.0.0:8443", "--mcp-listen https://0.0.0.0:8443: HTTPS needs --cert and --key"),
        (
            "unix:/run/broker-mcp.sock",
            "--mcp-listen unix:/run/broker-mcp.sock: expected https://host:port or "
            "http://127.0.0.1:port",
        ),
    ],
)
def test_where_mcp_may_listen(served: Served, listen: str, message: str) -> None:
    with pytest.raises(DqAgentError) as refused:
        McpServer(served.broker, listen)
    assert str(refused.value) == message


def test_the_broker_command_serves_mcp_and_the_agent_points_there(tmp_path: Path) -> None:
    project = make_project(
        tmp_path / "project",
        suites={"payroll": PAYROLL},
        settings="broker:\n  url: http://127.0.0.1:9\n  token: dqb_0123456789ab_secret\n",
    )
    # The agent, holding no source credential, cannot serve MCP over stdio: it says where.
    outcome = CliRunner().invoke(main, ["mcp", "--project", str(project)])
    assert outcome.exit_code == 3
    assert "dq-agent broker --mcp-listen URL" in " ".join(outcome.stderr.split())
    # Its configuration file names where MCP is served; the command line, the main listener.
    config = tmp_path / "broker.yml"
    config.write_text("project: project\nhome: home\nmcp_listen: http://127.0.0.1:0\n")
    process = subprocess.Popen(
        [sys.executable, "-m", "dq_agent.cli", "broker", "--config", str(config)]
        + ["--listen", "http://127.0.0.1:0"],
        env={k: v for k, v in os.environ.items() if k != "DQ_BROKER_HOME"},
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stderr is not None
        assert process.stderr.readline().startswith("broker listening on http://127.0.0.1:")
        line = process.stderr.readline()
        assert line.startswith("broker serving MCP on http://127.0.0.1:")
        assert line.rstrip().endswith("/mcp")
    finally:
        process.terminate()
        process.wait(timeout=30)
        if process.stderr is not None:
            process.stderr.close()
