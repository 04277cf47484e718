"""The credential broker: the agent checks suites through it holding no source secret, and
a token does only what its scope and the suite's own config allow."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from dq_agent.agent import Cycle, connect_slack, run_cycle, tick
from dq_agent.broker.client import BrokerClient
from dq_agent.broker.server import Broker, BrokerServer
from dq_agent.broker.slack import BrokeredSlack
from dq_agent.cli import main
from dq_agent.config import Project, load_project
from dq_agent.config.models import BrokerSettings
from dq_agent.engine import RunOptions, run_checks
from dq_agent.errors import SourceError
from dq_agent.escalate.slack import Slack, SlackError
from dq_agent.sources.registry import opened
from dq_agent.sources.retry import RetryPolicy
from dq_agent.store import Store
from dq_agent_sandbox import demo
from dq_agent_sandbox.airflow import AirflowEmulator
from dq_agent_sandbox.http import LoopbackServer
from dq_agent_sandbox.runner import demo_seed
from dq_agent_sandbox.salesforce import SalesforceEmulator
from dq_agent_sandbox.slack import SlackEmulator
from tests.helpers import make_project, write

REPO = Path(__file__).resolve().parents[1]
NOW = datetime(2026, 12, 4, 9, 0, tzinfo=UTC)
WAREHOUSE_SECRET = "warehouse-Secret-7f3a9"
NO_WAIT = RetryPolicy(attempts=2, sleep=lambda _s: None)
# The broker's environment: the sources' secrets and the Slack bot token.
BROKER_ENV = {"WAREHOUSE_PASSWORD": WAREHOUSE_SECRET, "SLACK_BOT_TOKEN": "xoxb-broker"}

SUITE = """
suite: {name}
owner: data@acme.example
source: {{connector: warehouse, table: orders}}
checks:
  - row_count: {{min: 1}}
  - expect_column_values_to_not_be_null: {{column: amount}}
"""


@dataclass
class Setup:
    project: Path
    home: Path
    socket: str
    table_url: str


def _short_dir() -> Path:
    # A unix socket's path is limited to about 100 bytes: pytest's folders are longer.
    return Path(tempfile.mkdtemp(prefix="dqb-"))


@pytest.fixture
def setup(tmp_path: Path, postgres_url: str) -> Iterator[Setup]:
    engine = sa.create_engine(postgres_url)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE orders (id int primary key, amount numeric)"))
        conn.execute(sa.text("INSERT INTO orders VALUES (1, 10), (2, 20), (3, 30)"))
    engine.dispose()
    # Trust authentication takes any password: the one in the profile stands for a real one.
    assert "postgres@" in postgres_url
    secret_url = postgres_url.replace("postgres@", "postgres:${WAREHOUSE_PASSWORD}@", 1)
    sockets = _short_dir()
    socket = f"unix:{sockets / 'broker.sock'}"
    project = make_project(
        tmp_path / "project",
        connectors={"warehouse": f"type: sql\nurl: {secret_url}\n"},
        suites={
            "orders": SUITE.format(name="orders"),
            "payroll": SUITE.format(name="hr_payroll"),
        },
        # The bot token is the broker's (it posts for the agent); the signing secret, which
        # verifies what Slack sends the agent, is the agent's.
        settings=f"broker:\n  url: {socket}\n  token: ${{DQ_BROKER_TOKEN}}\n"
        "slack:\n  token: ${SLACK_BOT_TOKEN}\n  signing_secret: ${SLACK_SIGNING_SECRET}\n",
    )
    yield Setup(project, tmp_path / "broker-home", socket, postgres_url)
    for leftover in sockets.iterdir():
        leftover.unlink()
    sockets.rmdir()


@pytest.fixture
def served(setup: Setup) -> Iterator[BrokerServer]:
    broker = Broker(setup.project, setup.home, env=BROKER_ENV)
    with BrokerServer(broker, setup.socket) as server:
        yield server
    broker.close()


def _token(server: BrokerServer, suites: str = "orders", actions: str = "check") -> str:
    # Minted now: the broker judges a token's expiry by its clock, the wall clock here.
    _, secret = server.broker.tokens.create(
        suites=suites.split(","),
        actions=actions.split(","),
        ttl=timedelta(days=1),
        now=datetime.now(UTC),
    )
    return secret


def _agent_env(token: str) -> dict[str, str]:
    """The agent's environment: the broker's token and the secret it verifies Slack with."""
    return {"DQ_BROKER_TOKEN": token, "SLACK_SIGNING_SECRET": "agent-signing"}


def _agent(setup: Setup, token: str) -> tuple[Project, BrokerClient]:
    project = load_project(setup.project, env=_agent_env(token))
    assert not project.issues, project.issues
    assert project.settings.broker is not None
    return project, BrokerClient(project.settings.broker, retry=NO_WAIT)


def test_the_agent_checks_through_a_broker_process_holding_no_source_secret(
    setup: Setup,
) -> None:
    """The broker runs as its own process with the warehouse password in its environment;
    the agent's environment, files and loaded project hold only the broker's token."""
    home = setup.home
    created = subprocess.run(
        [sys.executable, "-m", "dq_agent.cli", "broker", "token", "create", "--home", str(home)]
        + ["--suites", "orders", "--actions", "check", "--ttl", "1d", "--note", "agent"],
        capture_output=True,
        text=True,
        check=True,
    )
    token = created.stdout.strip()
    assert token.startswith("dqb_") and "valid until" in created.stderr
    broker_env = {**os.environ, **BROKER_ENV}
    # Its own configuration file, paths relative to it.
    config = write(
        setup.project.parent / "broker.yml",
        f"project: {setup.project.name}\nhome: {home.name}\nlisten: {setup.socket}\n",
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "dq_agent.cli", "broker", "--config", str(config)],
        env=broker_env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stderr is not None
        assert "broker listening on unix:" in process.stderr.readline()
        assert "WAREHOUSE_PASSWORD" not in os.environ
        agent_env = _agent_env(token)
        project = load_project(setup.project, env=agent_env)
        assert WAREHOUSE_SECRET not in repr(project)
        with Store.open(project.state_url) as store:
            results = run_checks(project, ["orders"], store=store, options=RunOptions())
            assert [r.status for r in results] == ["pass"]
            assert [c.status for c in results[0].checks] == ["pass", "pass"]
            assert results[0].checks[0].metrics  # the row count, kept as history
            (run,) = store.recent_runs(limit=1)
            assert run["status"] == "pass"
        # The command line too, with the stable JSON shape.
        outcome = CliRunner().invoke(
            main,
            ["check", "orders", "--project", str(setup.project), "--format", "json"],
            env=agent_env,
        )
        assert outcome.exit_code == 0, outcome.output
        assert json.loads(outcome.stdout)["suites"][0]["status"] == "pass"
        # Another suite is outside the token: refused, and the agent reports an error.
        outcome = CliRunner().invoke(
            main, ["check", "hr_payroll", "--project", str(setup.project)], env=agent_env
        )
        assert outcome.exit_code == 3
        assert "may not act on suite 'hr_payroll'" in outcome.output
        assert token not in outcome.output
    finally:
        process.terminate()
        process.wait(timeout=30)
        if process.stderr is not None:
            process.stderr.close()
    audit = subprocess.run(
        [sys.executable, "-m", "dq_agent.cli", "broker", "audit", "--home", str(home)],
        capture_output=True,
        text=True,
        check=True,
    )
    lines = audit.stdout.splitlines()
    assert len(lines) == 3
    assert "orders  ok" in lines[0] and "hr_payroll  refused" in lines[2]
    assert WAREHOUSE_SECRET not in audit.stdout and token not in audit.stdout


def test_a_token_cannot_reach_another_suite_send_sql_or_ask_for_what_is_not_built(
    setup: Setup, served: BrokerServer
) -> None:
    token = _token(served, suites="orders", actions="check")
    _, client = _agent(setup, token)
    assert client.check("orders").status == "pass"
    with pytest.raises(SourceError, match="may not act on suite 'hr_payroll'") as refused:
        client.check("hr_payroll")
    assert not refused.value.transient and token not in str(refused.value)
    with pytest.raises(SourceError, match="refused: sql") as refused:
        client.call("check", {"suite": "orders", "sql": "DELETE FROM orders"})
    assert "takes no SQL" in str(refused.value)
    with pytest.raises(SourceError, match="may not `read`; it allows: check"):
        client.call("read", {"suite": "orders", "fields": ["amount"]})
    _, everything = _agent(setup, _token(served, suites="*"))
    with pytest.raises(SourceError, match="no suite 'nope'"):
        everything.call("check", {"suite": "nope"})
    engine = sa.create_engine(setup.table_url)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM orders")).scalar() == 3
    engine.dispose()
    outcomes = [(e["operation"], e["suite"], e["outcome"]) for e in served.broker.audit.entries()]
    assert outcomes == [
        ("check", "orders", "ok"),
        ("check", "hr_payroll", "refused"),
        ("check", "orders", "refused"),
        ("read", "orders", "refused"),
        ("check", "nope", "refused"),
    ]
    assert served.broker.audit.verify().ok


def test_a_token_without_the_check_action_is_refused(setup: Setup, served: BrokerServer) -> None:
    token = _token(served, suites="*", actions="notify")
    _, client = _agent(setup, token)
    with pytest.raises(SourceError, match="may not `check`|may not check"):
        client.check("orders")


def test_a_revoked_token_is_refused_at_once(setup: Setup, served: BrokerServer) -> None:
    token = _token(served)
    project, client = _agent(setup, token)
    assert client.check("orders").status == "pass"
    (listed,) = served.broker.tokens.list()
    outcome = CliRunner().invoke(
        main, ["broker", "token", "revoke", listed.id, "--home", str(setup.home)]
    )
    assert outcome.exit_code == 0, outcome.output
    results = run_checks(project, ["orders"], options=RunOptions(retry=NO_WAIT))
    assert results[0].status == "error" and results[0].transient is False
    assert f"token {listed.id}" in (results[0].error or "") and "revoked" in (
        results[0].error or ""
    )
    assert token not in (results[0].error or "")


def test_an_unreachable_broker_makes_the_suite_an_error_that_may_pass(setup: Setup) -> None:
    token = "dqb_0123456789ab_not-a-real-secret"
    project, _ = _agent(setup, token)
    results = run_checks(project, ["orders", "hr_payroll"], options=RunOptions(retry=NO_WAIT))
    assert [r.status for r in results] == ["error", "error"]
    assert all(r.transient for r in results)
    assert "is unreachable" in (results[0].error or "")
    assert token not in (results[0].error or "")


def test_commands_that_act_are_refused_until_the_broker_does_them(
    setup: Setup, served: BrokerServer
) -> None:
    env = _agent_env(_token(served))
    outcome = CliRunner().invoke(main, ["mcp", "--project", str(setup.project)], env=env)
    assert outcome.exit_code == 3
    assert "dq-agent mcp does not run with a broker" in outcome.output
    assert "dq-agent broker --mcp-listen URL" in outcome.output
    project, _ = _agent(setup, env["DQ_BROKER_TOKEN"])
    # Whatever would reach a source itself (approving a fix, a backtest) says why it cannot.
    spec = project.suites["orders"].source
    reading = opened(project.root, project.connectors, spec, sealed=project.sealed)
    with pytest.raises(SourceError, match="credentials are the broker's"), reading:
        pass


class AirflowClock:
    def __init__(self) -> None:
        self.at = NOW.timestamp()

    def __call__(self) -> float:
        return self.at


def test_a_run_through_the_broker_opens_the_incident_and_restarts_the_pipeline(
    tmp_path: Path, postgres_url: str
) -> None:
    """The agent holds neither the warehouse password nor the Airflow token: the broker
    checks the suite and starts and follows the DAG run the suite names."""
    engine = sa.create_engine(postgres_url)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE orders (id int primary key, amount numeric)"))
    clock = AirflowClock()
    emulator = AirflowEmulator(token="airflow-Secret-42", clock=clock)
    sockets = _short_dir()
    socket = f"unix:{sockets / 'broker.sock'}"
    with LoopbackServer(emulator) as airflow:
        emulator.seed({"dags": {"forecasts_agg": {"tasks": ["build"], "duration_s": 60}}})
        secret_url = postgres_url.replace("postgres@", "postgres:${WAREHOUSE_PASSWORD}@", 1)
        root = make_project(
            tmp_path / "project",
            connectors={
                "warehouse": f"type: sql\nurl: {secret_url}\n",
                "airflow": f"type: airflow\nbase_url: {airflow.base_url}\ntoken: ${{AIRFLOW_TOKEN}}\n",
            },
            suites={
                "orders": SUITE.format(name="orders")
                + "restart:\n  - airflow: {connector: airflow, dag_id: forecasts_agg}\n"
            },
            settings=f"state_url: 'sqlite:///{tmp_path}/state.db'\n"
            f"broker:\n  url: {socket}\n  token: ${{DQ_BROKER_TOKEN}}\n",
        )
        secrets = {"WAREHOUSE_PASSWORD": WAREHOUSE_SECRET, "AIRFLOW_TOKEN": "airflow-Secret-42"}
        broker = Broker(root, tmp_path / "home", env=secrets)
        with BrokerServer(broker, socket) as server:
            token = _token(server, "orders", "check,correct,restart")
            project = load_project(root, env={"DQ_BROKER_TOKEN": token})
            assert not project.issues, project.issues
            assert "airflow-Secret-42" not in repr(project)

            def cycle(hours: float) -> Cycle:
                options = RunOptions(clock=lambda: NOW + timedelta(hours=hours), retry=NO_WAIT)
                with Store.open(project.state_url) as store:
                    return run_cycle(project, ["orders"], store, options)

            assert [(n.incident_id, n.event) for n in cycle(0).notices] == [(1, "opened")]
            with engine.begin() as conn:
                conn.execute(sa.text("INSERT INTO orders VALUES (1, 10), (2, 20)"))
            back = cycle(1)
            assert [n.event for n in back.notices] == ["recovered", "restarted"]
            (dag_run,) = emulator.state()["dag_runs"]
            clock.at += 120  # the DAG run has finished
            options = RunOptions(clock=lambda: NOW + timedelta(hours=2), retry=NO_WAIT)
            with Store.open(project.state_url) as store:
                later = tick(project, store, options)
                assert [n.event for n in later.notices] == ["restart_succeeded", "resolved"]
                assert [r.state for r in store.restarts()] == ["verified"]
            operations = [(e["operation"], e["outcome"]) for e in broker.audit.entries()]
            assert operations == [
                ("act", "ok"),
                ("act", "ok"),
                ("restart", "ok"),
                ("restart_poll", "ok"),  # the run just started: queued
                ("restart_poll", "ok"),  # done
            ]
            assert dag_run["dag_run_id"] in broker.audit.entries()[-1]["detail"]
        broker.close()
    engine.dispose()
    (sockets / "broker.sock").unlink(missing_ok=True)
    sockets.rmdir()


def test_the_audit_log_verifies_and_shows_an_edited_line(
    setup: Setup, served: BrokerServer
) -> None:
    token = _token(served)
    _, client = _agent(setup, token)
    for _ in range(3):
        client.check("orders")
    home = ["--home", str(setup.home)]
    outcome = CliRunner().invoke(main, ["broker", "audit", "--verify", *home])
    assert outcome.exit_code == 0 and "intact: 3 lines" in outcome.output
    log = setup.home / "audit.log"
    lines = log.read_text().splitlines()
    lines[1] = lines[1].replace('"ok"', '"refused"')
    log.write_text("\n".join(lines) + "\n")
    outcome = CliRunner().invoke(main, ["broker", "audit", "--verify", *home])
    assert outcome.exit_code == 2 and "line 2" in outcome.output


def test_https_with_the_brokers_own_certificate_authority(setup: Setup, tmp_path: Path) -> None:
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
    broker = Broker(setup.project, setup.home, env=BROKER_ENV)
    listen = "https://localhost:0"
    with BrokerServer(broker, listen, cert=cert_file, key=key_file) as server:
        port = server.url.rsplit(":", 1)[1]
        token = _token(server)
        url = f"https://localhost:{port}"
        trusted = BrokerSettings(url=url, token=token, ca_file=str(cert_file))
        assert BrokerClient(trusted, retry=NO_WAIT).check("orders").status == "pass"
        untrusted = BrokerSettings(url=url, token=token)
        with pytest.raises(SourceError, match="certificate is not trusted") as refused:
            BrokerClient(untrusted, retry=NO_WAIT).check("orders")
        assert not refused.value.transient
    broker.close()


SLIP = "006Dn0000040000042"  # 200 seats × $5,000 typed as $10,000,000
WHALE = "006Dn0000040000088"  # 2,000 seats × $5,000: a real $10m deal
CRM_SUITE = """
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


def _crm_project(tmp_path: Path, crm_url: str, socket: str, state_url: str) -> Path:
    """The Opportunity suite, its Salesforce session the broker's, its Amount correctable."""
    return make_project(
        tmp_path / "project",
        connectors={
            "crm": f"type: salesforce\ninstance_url: {crm_url}\nsession_id: ${{SF_SESSION_ID}}\n"
        },
        suites={"crm": CRM_SUITE},
        settings=f"state_url: '{state_url}'\n"
        "corrections:\n  enabled: true\n"
        "  allow: [{connector: crm, object: Opportunity, fields: [Amount]}]\n"
        f"broker:\n  url: {socket}\n  token: ${{DQ_BROKER_TOKEN}}\n",
    )


def test_the_broker_corrects_the_slip_within_the_guardrails_and_audits_the_write(
    tmp_path: Path,
) -> None:
    """The Salesforce session lives in the broker alone; a run through it corrects the
    $10m slip (compare-and-set, ledgered), leaves the whale alone, and each write is an
    audit line with its ledger id."""
    emulator = SalesforceEmulator()
    emulator.seed(demo_seed(NOW)["salesforce"]["objects"])
    sockets = _short_dir()
    socket = f"unix:{sockets / 'broker.sock'}"
    with LoopbackServer(emulator) as crm:
        root = _crm_project(tmp_path, crm.base_url, socket, f"sqlite:///{tmp_path}/state.db")
        broker = Broker(root, tmp_path / "home", env={"SF_SESSION_ID": "sandbox"})
        with BrokerServer(broker, socket) as server:
            token = _token(server, "crm_*", "check,correct")
            project = load_project(root, env={"DQ_BROKER_TOKEN": token})
            assert not project.issues, project.issues
            options = RunOptions(clock=lambda: NOW, retry=NO_WAIT)
            with Store.open(project.state_url) as store:
                done = run_cycle(project, ["crm_opportunities"], store, options)
                [outcome] = done.outcomes
                assert (outcome.status, outcome.change.key, outcome.change.new) == (
                    "applied",
                    {"Id": SLIP},
                    1000000,
                )
                [correction] = store.corrections()
                assert (correction.id, correction.status) == (1, "applied")
                assert store.verify_ledger() == []
                # Nothing is left to correct; nothing is written twice.
                assert run_cycle(project, ["crm_opportunities"], store, options).outcomes == []
            amounts = {r["Id"]: r["Amount"] for r in emulator.state()["objects"]["Opportunity"]}
            assert (amounts[SLIP], amounts[WHALE]) == (1_000_000, 10_000_000)
            writes = [e for e in broker.audit.entries() if e["operation"] == "correct"]
            assert [(e["outcome"], e["ledger_id"]) for e in writes] == [("applied", 1)]
            assert SLIP in writes[0]["target"]
            # Someone the suite does not name may not undo it, even asking the broker
            # directly with the agent's token: the broker authorizes against its own config.
            client = BrokerClient(project.settings.broker, retry=NO_WAIT)  # type: ignore[arg-type]
            with pytest.raises(SourceError, match="mallory@evil.example may not undo"):
                client.revert("crm_opportunities", [1], by="mallory@evil.example")
            with pytest.raises(SourceError, match="may not act on suite 'hr_payroll'"):
                client.revert("hr_payroll", [1], by="sales-ops@acme.com")
            # Its owner undoes it, from the command line, through the broker.
            outcome = CliRunner().invoke(
                main,
                [
                    "corrections",
                    "revert",
                    "1",
                    "--by",
                    "sales-ops@acme.com",
                    "--project",
                    str(root),
                ],
                env={"DQ_BROKER_TOKEN": token},
            )
            assert outcome.exit_code == 0, outcome.output
            amounts = {r["Id"]: r["Amount"] for r in emulator.state()["objects"]["Opportunity"]}
            assert amounts[SLIP] == 10_000_000
            writes = [e for e in broker.audit.entries() if e["operation"] == "correct"]
            assert [(e["outcome"], e["ledger_id"]) for e in writes] == [
                ("applied", 1),
                ("reverted", 1),
            ]
            assert broker.audit.verify().ok
        broker.close()
    (sockets / "broker.sock").unlink(missing_ok=True)
    sockets.rmdir()


def test_the_running_example_plays_through_the_broker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`dq-agent demo` on the example whose Salesforce session, Airflow password and Slack
    bot token live in the broker alone: the same story, the agent's environment holding only
    its token (and the secret it verifies Slack's requests with).

    The broker tells the time by the story's clock, as a broker beside a live agent tells it
    by the same wall clock: by the wall clock alone, a test run on another day than the
    story's (a Saturday, or before 09:00) judged the story's day as over, and found its
    half-day of deals an anomaly."""
    story: list[demo.Clock] = []

    @dataclass
    class StoryClock(demo.Clock):
        def __post_init__(self) -> None:
            story.append(self)

    monkeypatch.setattr(demo, "Clock", StoryClock)
    example = tmp_path / "example"
    for source in (REPO / "checks", REPO / "connectors"):
        for file in source.glob("*.yml"):
            write(example / source.name / file.name, file.read_text())
    crm = example / "connectors" / "crm.yml"
    crm.write_text(crm.read_text().replace("session_id: sandbox", "session_id: ${SF_SESSION_ID}"))
    airflow = example / "connectors" / "airflow.yml"
    airflow.write_text(airflow.read_text().replace("password: admin", "password: ${AIRFLOW_PW}"))
    sockets = _short_dir()
    socket = f"unix:{sockets / 'broker.sock'}"
    settings = (REPO / "dq-agent.yml").read_text()
    assert "token: xoxb-sandbox" in settings
    settings = settings.replace("token: xoxb-sandbox", "token: ${SLACK_BOT_TOKEN}")
    write(
        example / "dq-agent.yml",
        settings + f"broker:\n  url: {socket}\n  token: ${{DQ_BROKER_TOKEN}}\n",
    )
    secrets = {"SF_SESSION_ID": "sandbox", "AIRFLOW_PW": "admin", "SLACK_BOT_TOKEN": "xoxb-sandbox"}
    assert not set(secrets) & set(os.environ)
    broker = Broker(example, tmp_path / "home", env=secrets, clock=lambda: story[-1].at)
    with BrokerServer(broker, socket):
        _, token = broker.tokens.create(
            suites=["*"],
            actions=["check", "correct", "restart", "notify"],
            ttl=timedelta(days=1),
            now=datetime.now(UTC),
        )
        outcome = CliRunner().invoke(
            main,
            ["demo", "--project", str(example), "--format", "json"],
            env={"DQ_BROKER_TOKEN": token},
        )
    broker.close()
    sockets.rmdir()
    assert outcome.exit_code == 0, outcome.stderr
    told = " ".join(outcome.stderr.split())
    for line in (
        "incidents: 4 opened, 4 resolved · corrections: 2 (applied, reverted) · pipeline "
        "restarts: 2 (verified, verified)",
        "slack › DM @dana: I changed Amount on Id=006Dn0000040000042 from 10,000,000 to 1,000,000",
        "↳ [DM @dana · changed Amount] Undone by dana@acme.com: Amount is 10,000,000 again.",
    ):
        assert line in told
    operations = Counter((e["operation"], e["outcome"]) for e in broker.audit.entries())
    assert operations[("correct", "applied")] == 2  # the slip and the runbook fix
    assert operations[("correct", "reverted")] == 1
    assert operations[("restart", "ok")] == 2
    posted = [e for e in broker.audit.entries() if e["operation"] == "notify"]
    assert {e["detail"] for e in posted} >= {"lookup", "channel", "post", "update"}
    assert {e["suite"] for e in posted if e["detail"] == "post"} >= {"crm_opportunities"}
    assert not [e for e in broker.audit.entries() if e["outcome"] in ("refused", "error")]
    assert broker.audit.verify().ok


def test_a_broker_that_cannot_read_the_settings_refuses_rather_than_use_defaults(
    setup: Setup, served: BrokerServer, tmp_path: Path
) -> None:
    """Default settings would mean another state store and no guardrails: never."""
    settings = setup.project / "dq-agent.yml"
    settings.write_text(
        settings.read_text() + "state_url: 'sqlite:///${STATE_DIR}/state.db'\n", encoding="utf-8"
    )
    token = _token(served)
    env = {**_agent_env(token), "STATE_DIR": str(tmp_path)}
    project = load_project(setup.project, env=env)
    assert not project.issues, project.issues
    client = BrokerClient(project.settings.broker, retry=NO_WAIT)  # type: ignore[arg-type]
    with pytest.raises(SourceError, match="cannot read dq-agent.yml: .*STATE_DIR is not set"):
        client.check("orders")


def test_a_broker_configuration_file_with_a_mistake_says_where(tmp_path: Path) -> None:
    config = write(tmp_path / "broker.yml", "project: .\nlisten: unix:/tmp/x.sock\nlistn: 1\n")
    outcome = CliRunner().invoke(main, ["broker", "--config", str(config)])
    assert outcome.exit_code == 3
    assert f"{config}:3:1: listn:" in outcome.stderr


def test_slack_goes_through_the_broker_to_the_people_of_the_tokens_suites_only(
    tmp_path: Path,
) -> None:
    """The bot token lives in the broker alone; a token for `orders` reaches the suite's
    owner and channel, and nobody of another suite or outside every suite."""
    emulator = SlackEmulator(token="xoxb-broker")
    people = emulator.seed(
        {
            "users": [
                {"email": "data@acme.example"},
                {"email": "hr@acme.example"},
                {"email": "stranger@acme.example"},
            ],
            "channels": [{"name": "orders-data"}],
        }
    )["users"]
    sockets = _short_dir()
    socket = f"unix:{sockets / 'broker.sock'}"
    with LoopbackServer(emulator) as slack:
        root = make_project(
            tmp_path / "project",
            connectors={"warehouse": f"type: sql\nurl: sqlite:///{tmp_path}/w.db\n"},
            suites={
                "orders": SUITE.format(name="orders") + "escalation: ['#orders-data']\n",
                "payroll": SUITE.format(name="hr_payroll").replace("data@", "hr@"),
            },
            settings=f"state_url: 'sqlite:///{tmp_path}/state.db'\n"
            f"broker:\n  url: {socket}\n  token: ${{DQ_BROKER_TOKEN}}\n"
            "slack:\n  token: ${SLACK_BOT_TOKEN}\n  signing_secret: ${SLACK_SIGNING_SECRET}\n"
            f"  base_url: {slack.base_url}/api/\n",
        )
        broker = Broker(root, tmp_path / "home", env={"SLACK_BOT_TOKEN": "xoxb-broker"})
        with BrokerServer(broker, socket) as server:

            def agent_slack(suites: str, actions: str = "notify") -> Slack:
                project = load_project(root, env=_agent_env(_token(server, suites, actions)))
                assert not project.issues, project.issues
                assert project.settings.slack is not None
                assert project.settings.slack.token is None  # never read by the agent
                slack = connect_slack(project)
                assert isinstance(slack, BrokeredSlack)
                return slack

            scoped, everything = agent_slack("orders"), agent_slack("*")
            assert scoped.user("Data@acme.example").id == people["data@acme.example"]
            dm = scoped.channel_for("data@acme.example")
            ts = scoped.post(dm, "orders has no rows", None, key="incident-1")
            assert scoped.find(dm, "incident-1") == ts
            scoped.update(dm, ts, "orders has rows again", None)
            channel = scoped.channel_for("#orders-data")
            scoped.post(channel, "fyi", None, key="i-2")
            assert scoped.email_of(people["data@acme.example"]) == "data@acme.example"

            hr_dm = everything.channel_for("hr@acme.example")
            for attempt in (
                lambda: scoped.user("hr@acme.example"),
                lambda: scoped.channel_for("stranger@acme.example"),
                lambda: scoped.post(hr_dm, "psst", None, key="i-3"),
                lambda: scoped.update(hr_dm, ts, "psst", None),
            ):
                with pytest.raises(SlackError, match="not (a DM or channel of )?one of the peop"):
                    attempt()
            # Who someone outside its suites is, is not the token's to know.
            assert scoped.email_of(people["hr@acme.example"]) is None
            with pytest.raises(SlackError, match="may not `notify`"):
                agent_slack("orders", actions="check").user("data@acme.example")
        broker.close()
    sockets.rmdir()
    sent = [(m["channel"], m["text"]) for m in emulator.state()["messages"]]
    assert sent == [(dm, "orders has rows again"), (channel, "fyi")]
    refused = [e["operation"] for e in broker.audit.entries() if e["outcome"] == "refused"]
    assert refused == ["notify"] * 5
    ok = {(e["detail"], e["suite"]) for e in broker.audit.entries() if e["outcome"] == "ok"}
    assert {("post", "orders"), ("update", "orders"), ("channel", "hr_payroll")} <= ok
    assert broker.audit.verify().ok


def test_two_agents_acting_at_once_through_the_broker_write_the_slip_once(
    tmp_path: Path, postgres_url: str
) -> None:
    """Two agents (replicas, or one run twice) ask the broker to act on the same suite at
    the same moment: the ledger's claims let one correction through, written once."""
    emulator = SalesforceEmulator()
    emulator.seed(demo_seed(NOW)["salesforce"]["objects"])
    sockets = _short_dir()
    socket = f"unix:{sockets / 'broker.sock'}"
    with LoopbackServer(emulator) as crm:
        root = _crm_project(tmp_path, crm.base_url, socket, postgres_url)
        broker = Broker(root, tmp_path / "home", env={"SF_SESSION_ID": "sandbox"})
        with BrokerServer(broker, socket) as server:
            project = load_project(
                root, env={"DQ_BROKER_TOKEN": _token(server, "crm_*", "correct")}
            )
            assert project.settings.broker is not None
            start = threading.Barrier(2)

            def act() -> list[str]:
                client = BrokerClient(project.settings.broker, retry=NO_WAIT)  # type: ignore[arg-type]
                start.wait()
                return [o.status for o in client.act("crm_opportunities").outcomes]

            with ThreadPoolExecutor(2) as pool:
                both = [f.result() for f in [pool.submit(act), pool.submit(act)]]
        broker.close()
    sockets.rmdir()
    # The other found the claim taken, or the value changed under its compare-and-set.
    assert sorted(status for statuses in both for status in statuses) in (
        ["applied"],
        ["applied", "conflict"],
    ), both
    amounts = {r["Id"]: r["Amount"] for r in emulator.state()["objects"]["Opportunity"]}
    assert (amounts[SLIP], amounts[WHALE]) == (1_000_000, 10_000_000)
    with Store.open(postgres_url) as store:
        [applied] = [c for c in store.corrections() if c.status == "applied"]
        assert store.verify_ledger() == []
    audited = [e for e in broker.audit.entries() if e["operation"] == "correct"]
    assert [e["ledger_id"] for e in audited if e["outcome"] == "applied"] == [applied.id]


_KILLED_BROKER = """
import os, signal, sys, threading
from pathlib import Path
from dq_agent.broker.server import Broker, BrokerServer
from dq_agent.sources.salesforce import SalesforceSource

made = SalesforceSource.write

def write(self, *args, **kwargs):
    result = made(self, *args, **kwargs)
    os.kill(os.getpid(), signal.SIGKILL)  # the write went through; nothing after it did
    return result

SalesforceSource.write = write
root, home, socket = sys.argv[1:4]
server = BrokerServer(Broker(Path(root), Path(home), env={"SF_SESSION_ID": "sandbox"}), socket)
server.start()
print("ready", flush=True)
threading.Event().wait()
"""


def test_a_broker_killed_after_its_write_is_settled_by_the_next_without_a_second_write(
    tmp_path: Path,
) -> None:
    """The broker dies right after the Salesforce PATCH, before the ledger hears of it: the
    agent's suite is an error, and the next broker's act settles the write as applied,
    writing nothing again and auditing it with its ledger id."""
    emulator = SalesforceEmulator()
    emulator.seed(demo_seed(NOW)["salesforce"]["objects"])
    sockets = _short_dir()
    socket = f"unix:{sockets / 'broker.sock'}"
    home = tmp_path / "home"
    with LoopbackServer(emulator) as crm:
        root = _crm_project(tmp_path, crm.base_url, socket, f"sqlite:///{tmp_path}/state.db")
        broker = Broker(root, home, env={"SF_SESSION_ID": "sandbox"})
        _, token = broker.tokens.create(
            suites=["crm_*"], actions=["correct"], ttl=timedelta(days=1), now=datetime.now(UTC)
        )
        project = load_project(root, env={"DQ_BROKER_TOKEN": token})
        assert project.settings.broker is not None
        client = BrokerClient(project.settings.broker, retry=NO_WAIT)
        script = write(tmp_path / "killed_broker.py", _KILLED_BROKER)
        process = subprocess.Popen(
            [sys.executable, str(script), str(root), str(home), socket],
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
        assert process.stdout is not None and process.stdout.readline() == "ready\n"
        with pytest.raises(SourceError, match="unreachable") as dropped:
            client.act("crm_opportunities")
        assert dropped.value.transient
        assert process.wait(timeout=60) == -signal.SIGKILL
        process.stdout.close()
        amounts = {r["Id"]: r["Amount"] for r in emulator.state()["objects"]["Opportunity"]}
        assert amounts[SLIP] == 1_000_000
        with Store.open(project.state_url) as store:
            assert [c.status for c in store.corrections()] == ["pending"]
        requests = emulator.state()["requests"]
        with BrokerServer(broker, socket):
            acted = client.act("crm_opportunities")
        broker.close()
    sockets.rmdir()
    assert acted.settled.notes == [
        "correction 1: applied (settled on start: the write had gone through)"
    ]
    assert acted.outcomes == []  # nothing is written again
    assert [o.correction_id for o in acted.settled.written] == [1]  # its owner is yet to hear
    assert emulator.state()["requests"] > requests
    with Store.open(project.state_url) as store:
        assert [c.status for c in store.corrections()] == ["applied"]
    audited = [(e["operation"], e["outcome"], e["ledger_id"]) for e in broker.audit.entries()]
    assert ("correct", "applied", 1) in audited
    assert broker.audit.verify().ok
