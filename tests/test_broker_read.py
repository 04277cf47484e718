"""The broker's ``read``: every failing record streamed from the source the broker holds, so
that ``check --findings-out`` in a sealed project writes what the direct path writes."""

from __future__ import annotations

import gc
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from dq_agent.broker.client import BrokerClient, ReadCheck
from dq_agent.broker.server import Broker, BrokerServer
from dq_agent.checks import base
from dq_agent.cli import main
from dq_agent.config import load_project
from dq_agent.errors import SourceError
from dq_agent.results import Finding, SuiteResult
from dq_agent_sandbox.http import LoopbackServer
from dq_agent_sandbox.salesforce import SalesforceEmulator
from tests.helpers import make_project
from tests.test_broker import NO_WAIT, WAREHOUSE_SECRET, _short_dir

ROWS = 3000
NULL_AMOUNT = [i for i in range(1, ROWS + 1) if i % 3 == 0]  # 1,000 records
REFUNDED = [i for i in range(1, ROWS + 1) if i % 7 == 0]  # 428 records

SUITE = """
suite: {name}
owner: data@acme.example
source: {{connector: warehouse, table: orders}}
key: [id]
max_findings: 20
checks:
  - row_count: {{min: 1}}
  - expect_column_values_to_not_be_null: {{column: amount}}
  - accepted_values: {{column: status, values: [paid, open]}}
"""
NOT_NULL = "expect_column_values_to_not_be_null_amount.jsonl"
ACCEPTED = "accepted_values_status.jsonl"


@dataclass
class Projects:
    direct: Path
    sealed: Path
    socket: str
    table_url: str
    application: str  # the broker's connections' application_name


@pytest.fixture
def projects(tmp_path: Path, postgres_url: str) -> Iterator[Projects]:
    """The same orders table checked directly (the agent holds the password) and through a
    broker (only the broker does); the broker's connections carry an application name."""
    engine = sa.create_engine(postgres_url)
    with engine.begin() as conn:
        conn.execute(
            sa.text("CREATE TABLE orders (id int primary key, amount numeric, status text)")
        )
        rows = [
            {
                "id": i,
                "amount": None if i in NULL_AMOUNT else i * 10,
                "status": "refunded" if i % 7 == 0 else "paid",
            }
            for i in range(1, ROWS + 1)
        ]
        conn.execute(sa.text("INSERT INTO orders VALUES (:id, :amount, :status)"), rows)
    engine.dispose()
    assert "postgres@" in postgres_url
    application = f"dqb_read_{uuid.uuid4().hex[:8]}"
    secret_url = postgres_url.replace("postgres@", "postgres:${WAREHOUSE_PASSWORD}@", 1)
    sockets = _short_dir()
    socket = f"unix:{sockets / 'broker.sock'}"
    suites = {"orders": SUITE.format(name="orders"), "payroll": SUITE.format(name="hr_payroll")}
    direct = make_project(
        tmp_path / "direct",
        connectors={"warehouse": f"type: sql\nurl: {postgres_url}\n"},
        suites=suites,
    )
    sealed = make_project(
        tmp_path / "sealed",
        connectors={"warehouse": f"type: sql\nurl: {secret_url}&application_name={application}\n"},
        suites=suites,
        settings=f"broker:\n  url: {socket}\n  token: ${{DQ_BROKER_TOKEN}}\n",
    )
    yield Projects(direct, sealed, socket, postgres_url, application)
    for leftover in sockets.iterdir():
        leftover.unlink()
    sockets.rmdir()


@pytest.fixture
def broker(projects: Projects, tmp_path: Path) -> Iterator[Broker]:
    broker = Broker(
        projects.sealed, tmp_path / "home", env={"WAREHOUSE_PASSWORD": WAREHOUSE_SECRET}
    )
    with BrokerServer(broker, projects.socket):
        yield broker
    broker.close()


def token(broker: Broker, actions: str = "check,read", suites: str = "orders") -> str:
    # Minted now: the broker judges a token's expiry by its clock, the wall clock here.
    _, secret = broker.tokens.create(
        suites=suites.split(","),
        actions=actions.split(","),
        ttl=timedelta(days=1),
        now=datetime.now(UTC),
    )
    return secret


def check(project: Path, out: Path, env: dict[str, str] | None = None) -> tuple[int, Any, str]:
    """``dq-agent check orders --format json --findings-out OUT``: exit code, report, stderr."""
    outcome = CliRunner().invoke(
        main,
        ["check", "orders", "--project", str(project), "--format", "json"]
        + ["--findings-out", str(out)],
        env=env or {},
    )
    report = json.loads(outcome.stdout) if outcome.stdout else None
    return outcome.exit_code, report, outcome.stderr


def without_timing(report: dict[str, Any]) -> dict[str, Any]:
    for suite in report["suites"]:
        del suite["started_at"], suite["duration_s"]
    return report


def files(folder: Path) -> dict[str, str]:
    return {p.name: p.read_text(encoding="utf-8") for p in sorted(folder.iterdir())}


def test_a_sealed_check_writes_the_same_files_as_the_direct_one(
    projects: Projects, broker: Broker, tmp_path: Path
) -> None:
    secret = token(broker)
    direct_code, direct_report, direct_said = check(projects.direct, tmp_path / "direct-out")
    sealed_code, sealed_report, sealed_said = check(
        projects.sealed, tmp_path / "sealed-out", {"DQ_BROKER_TOKEN": secret}
    )

    assert (sealed_code, direct_code) == (2, 2)
    assert without_timing(sealed_report) == without_timing(direct_report)
    written = files(tmp_path / "sealed-out" / "orders")
    assert written == files(tmp_path / "direct-out" / "orders")
    assert sorted(written) == [ACCEPTED, NOT_NULL]
    nulls = [json.loads(line) for line in written[NOT_NULL].splitlines()]
    assert [r["key"]["id"] for r in nulls] == NULL_AMOUNT
    assert nulls[0] == {
        "key": {"id": 3},
        "column": "amount",
        "observed": None,
        "proposed": None,
        "action": "report",
        "reason": "amount is null",
    }
    assert len(written[ACCEPTED].splitlines()) == len(REFUNDED)
    assert sealed_said.splitlines()[-2:] == [
        line.replace("direct-out", "sealed-out") for line in direct_said.splitlines()[-2:]
    ]
    assert sealed_said.splitlines()[-2] == (
        f"wrote 1,000 failing records of orders / expect_column_values_to_not_be_null(amount) "
        f"to {tmp_path / 'sealed-out' / 'orders' / NOT_NULL}"
    )
    (entry,) = broker.audit.entries()
    assert (entry["operation"], entry["suite"], entry["outcome"]) == ("read", "orders", "ok")
    assert entry["detail"] == "status fail; 1,428 records of 2 checks"
    assert WAREHOUSE_SECRET not in json.dumps(sealed_report) + sealed_said


def test_the_client_reads_the_stream_line_by_line(projects: Projects, broker: Broker) -> None:
    project = load_project(projects.sealed, env={"DQ_BROKER_TOKEN": token(broker)})
    assert project.settings.broker is not None
    client = BrokerClient(project.settings.broker, retry=NO_WAIT)

    lines = list(client.read("orders"))

    assert lines[0] == ReadCheck("expect_column_values_to_not_be_null(amount)", None)
    assert lines[1] == Finding({"id": 3}, "amount", None, reason="amount is null")
    assert lines[1001] == ReadCheck("accepted_values(status)", None)
    assert all(isinstance(line, Finding) for line in lines[1002:-1])
    assert len(lines) == 1 + 1000 + 1 + len(REFUNDED) + 1
    result = lines[-1]
    assert isinstance(result, SuiteResult) and result.status == "fail"
    assert [c.status for c in result.checks] == ["pass", "fail", "fail"]


def test_read_is_refused_without_the_action_for_another_suite_and_with_more_fields(
    projects: Projects, broker: Broker, tmp_path: Path
) -> None:
    checks_only = token(broker, actions="check")
    code, report, _ = check(projects.sealed, tmp_path / "out", {"DQ_BROKER_TOKEN": checks_only})
    assert code == 3
    (suite,) = report["suites"]
    assert suite["status"] == "error"
    assert "may not `read`; it allows: check" in suite["error"]
    assert checks_only not in suite["error"]
    assert not (tmp_path / "out" / "orders").exists()

    project = load_project(projects.sealed, env={"DQ_BROKER_TOKEN": token(broker)})
    assert project.settings.broker is not None
    client = BrokerClient(project.settings.broker, retry=NO_WAIT)
    with pytest.raises(SourceError, match="may not act on suite 'hr_payroll'") as refused:
        next(client.read("hr_payroll"))
    assert not refused.value.transient
    with pytest.raises(SourceError, match="read takes only as_of, suite; refused: sql"):
        client.call("read", {"suite": "orders", "sql": "SELECT * FROM pg_shadow"})
    with pytest.raises(SourceError, match="refused: fields"):
        client.call("read", {"suite": "orders", "fields": ["amount"]})

    outcomes = [(e["operation"], e["suite"], e["outcome"]) for e in broker.audit.entries()]
    assert outcomes == [
        ("read", "orders", "refused"),
        ("read", "hr_payroll", "refused"),
        ("read", "orders", "refused"),
        ("read", "orders", "refused"),
    ]
    assert "refused: sql" in broker.audit.entries()[2]["detail"]
    assert broker.audit.verify().ok


# psycopg warns, when it is collected, of the server-side cursor whose connection the test
# kills: a cursor on a dead connection cannot be closed.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_source_failing_mid_stream_is_an_error_not_a_short_file(
    projects: Projects, broker: Broker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The warehouse drops the broker's connection after 300 of the 1,000 null amounts: the
    suite is an error and no file holds part of them under its name."""
    monkeypatch.setattr(base, "RECORDS_CHUNK", 100)
    real_finding = base._finding
    admin = sa.create_engine(projects.table_url)
    made = 0

    def dropping(*args: Any) -> Finding:
        nonlocal made
        made += 1
        if made == 20 + 300:  # past the report's 20 findings, 300 records into the stream
            with admin.connect() as conn:
                conn.execute(
                    sa.text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE application_name = :name"
                    ),
                    {"name": projects.application},
                )
        return real_finding(*args)

    monkeypatch.setattr(base, "_finding", dropping)
    out = tmp_path / "out"

    code, report, _ = check(projects.sealed, out, {"DQ_BROKER_TOKEN": token(broker)})

    admin.dispose()
    gc.collect()  # that cursor's warning, here rather than in a later test
    assert code == 3
    (suite,) = report["suites"]
    assert suite["status"] == "error"
    assert "failed reading suite 'orders'" in suite["error"]
    assert WAREHOUSE_SECRET not in suite["error"]
    assert list((out / "orders").iterdir()) == []  # neither the file nor its .partial
    (entry,) = broker.audit.entries()
    assert (entry["operation"], entry["outcome"]) == ("read", "error")


OPPORTUNITIES = 4500  # three REST pages of 2,000
CRM_SUITE = """
suite: crm_opportunities
owner: sales-ops@acme.com
source:
  connector: crm
  object: Opportunity
  fields: [Id, Name, Amount, StageName, Seats__c, Price_Per_Seat__c]
key: [Id]
max_findings: 2
checks:
  - expect_column_values_to_not_be_null: {column: Amount}
  - accepted_values: {column: StageName, values: [Prospecting, Closed Won]}
  - fat_finger: {column: Amount, witness: "Seats__c * Price_Per_Seat__c"}
"""


def opportunities() -> list[dict[str, Any]]:
    """Every fifth deal without an amount, every eleventh at an unknown stage, three typed
    with a zero too many."""
    deals = []
    for i in range(1, OPPORTUNITIES + 1):
        amount = None if i % 5 == 0 else 10 * 500.0
        if i in (7, 1234, 4321):
            amount = 10 * 5000.0
        stage = "Closed Lost" if i % 11 == 0 else "Prospecting"
        deals.append(
            {
                "Name": f"Deal {i}",
                "Amount": amount,
                "StageName": stage,
                "CloseDate": "2026-12-31",
                "Seats__c": 10,
                "Price_Per_Seat__c": 500.0,
            }
        )
    return deals


def test_salesforce_records_stream_through_the_broker_as_the_direct_path_writes_them(
    tmp_path: Path,
) -> None:
    emulator = SalesforceEmulator()
    emulator.seed(
        {
            "Opportunity": {
                "fields": {"Seats__c": "double", "Price_Per_Seat__c": "currency"},
                "records": opportunities(),
            }
        }
    )
    sockets = _short_dir()
    socket = f"unix:{sockets / 'broker.sock'}"
    with LoopbackServer(emulator) as crm:
        crm_profile = f"type: salesforce\ninstance_url: {crm.base_url}\nsession_id: {{}}\n"
        direct = make_project(
            tmp_path / "direct",
            connectors={"crm": crm_profile.format("sandbox")},
            suites={"crm": CRM_SUITE},
        )
        sealed = make_project(
            tmp_path / "sealed",
            connectors={"crm": crm_profile.format("${SF_SESSION_ID}")},
            suites={"crm": CRM_SUITE},
            settings=f"broker:\n  url: {socket}\n  token: ${{DQ_BROKER_TOKEN}}\n",
        )
        broker = Broker(sealed, tmp_path / "home", env={"SF_SESSION_ID": "sandbox"})
        with BrokerServer(broker, socket):
            secret = token(broker, actions="read", suites="crm_*")
            out = tmp_path / "out"
            args = ["check", "--format", "json", "--findings-out"]
            runner = CliRunner()
            plain = runner.invoke(main, [*args, str(out / "direct"), "--project", str(direct)])
            through = runner.invoke(
                main,
                [*args, str(out / "sealed"), "--project", str(sealed)],
                env={"DQ_BROKER_TOKEN": secret},
            )
        broker.close()
    sockets.rmdir()

    assert (through.exit_code, plain.exit_code) == (2, 2), through.stderr
    sealed_report = without_timing(json.loads(through.stdout))
    assert sealed_report == without_timing(json.loads(plain.stdout))
    folder = out / "sealed" / "crm_opportunities"
    written = files(folder)
    assert written == files(out / "direct" / "crm_opportunities")
    assert {name: len(text.splitlines()) for name, text in written.items()} == {
        "expect_column_values_to_not_be_null_Amount.jsonl": OPPORTUNITIES // 5,
        "accepted_values_StageName.jsonl": OPPORTUNITIES // 11,
        "fat_finger_Amount.jsonl": 2,  # capped: fat_finger cannot read its records again
    }
    assert through.stderr.splitlines()[-1] == (
        f"wrote 2 failing records of crm_opportunities / fat_finger(Amount) to "
        f"{folder / 'fat_finger_Amount.jsonl'} (capped at max_findings=2: this check's "
        "records cannot be streamed yet)"
    )
    (entry,) = broker.audit.entries()
    assert entry["detail"] == (
        f"status fail; {OPPORTUNITIES // 5 + OPPORTUNITIES // 11 + 2:,} records of 3 checks"
    )
