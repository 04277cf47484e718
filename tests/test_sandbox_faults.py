"""Faults on demand (dq-agent sandbox --faults FILE): chosen requests meet the service's own
error, and a person's edit lands just before the agent's write."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner
from simple_salesforce.exceptions import SalesforceGeneralError

from dq_agent.agent import run_cycle
from dq_agent.cli import main
from dq_agent.config import load_project
from dq_agent.engine import RunOptions
from dq_agent.errors import DqAgentError
from dq_agent.sources.retry import RetryPolicy
from dq_agent.store import Store
from dq_agent_sandbox.faults import load_faults
from dq_agent_sandbox.runner import demo_seed, start_sandbox
from tests.helpers import make_project
from tests.sf_client import salesforce_client

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
SLIP = "006Dn0000040000042"  # Dana's deal, 200 seats × $5,000 typed as $10,000,000
DANA_USER = "005Dn000001AbCdIAK"
CRM_SUITE = """
suite: crm_opportunities
owner: sales-ops@acme.com
source:
  connector: crm
  object: Opportunity
  fields: [Id, Name, Amount, Seats__c, Price_Per_Seat__c, OwnerId]
key: [Id]
checks:
  - fat_finger: {column: Amount, witness: "Seats__c * Price_Per_Seat__c", auto_correct: true}
"""


def test_a_chosen_request_meets_the_services_own_error_then_it_answers(tmp_path: Path) -> None:
    faults_file = tmp_path / "faults.yml"
    faults_file.write_text(
        "salesforce:\n"
        "  - {path: /query, status: 503, code: SERVER_UNAVAILABLE, message: down, times: 2}\n"
    )
    with start_sandbox(demo_seed(NOW), faults=load_faults(faults_file)) as sandbox:
        client = salesforce_client(sandbox.info["salesforce"]["instance_url"])
        try:
            client.Opportunity.get(SLIP)  # not a query: no fault
            for _ in range(2):
                with pytest.raises(SalesforceGeneralError, match="SERVER_UNAVAILABLE"):
                    client.query("SELECT Id FROM Opportunity LIMIT 1")
            assert client.query("SELECT Id FROM Opportunity LIMIT 1")["totalSize"] == 1
        finally:
            client.session.close()


def test_a_persons_edit_just_before_the_agents_write_is_not_claimed(tmp_path: Path) -> None:
    faults_file = tmp_path / "faults.yml"
    faults_file.write_text(
        "salesforce:\n"
        f"  - {{method: PATCH, path: /sobjects/Opportunity/{SLIP}, edit: {{Amount: 1000000}},"
        f" by: {DANA_USER}}}\n"
    )
    with start_sandbox(demo_seed(NOW), faults=load_faults(faults_file)) as sandbox:
        url = sandbox.info["salesforce"]["instance_url"]
        root = make_project(
            tmp_path / "p",
            connectors={"crm": f"type: salesforce\ninstance_url: {url}\nsession_id: sandbox\n"},
            suites={"crm": CRM_SUITE},
            settings=(
                f"state_url: 'sqlite:///{tmp_path}/state.db'\ncorrections:\n  enabled: true\n"
                "  allow:\n    - {connector: crm, object: Opportunity, fields: [Amount]}\n"
            ),
        )
        project = load_project(root, env={})
        options = RunOptions(clock=lambda: NOW, retry=RetryPolicy(attempts=1))
        with Store.open(project.state_url) as store:
            cycle = run_cycle(project, ["crm_opportunities"], store, options)
            [outcome] = cycle.outcomes
            assert (outcome.status, outcome.fixed_at_source) == ("conflict", True)
            assert outcome.detail == (
                "already fixed at the source: Amount holds 1,000,000 already "
                "(changed by dana@acme.com)"
            )
            assert store.incidents() == [] and store.outbox() == []
        client = salesforce_client(url)
        try:
            record = client.Opportunity.get(SLIP)
        finally:
            client.session.close()
        assert (record["Amount"], record["LastModifiedById"]) == (1_000_000, DANA_USER)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("mail:\n  - {status: 503}\n", "expected a mapping of salesforce, gsheets, slack, airflow"),
        ("slack:\n  - {status: 429, code: X}\n", "slack[0]: unknown code; allowed: "),
        ("gsheets:\n  - {status: 9000}\n", "gsheets[0]: status: expected an HTTP status"),
        ("airflow:\n  - {times: 0}\n", "airflow[0]: times: expected a whole number of at least 1"),
        ("salesforce:\n  - {path: '('}\n", "salesforce[0]: path: not a regular expression"),
    ],
)
def test_a_bad_faults_file_says_what_is_wrong(tmp_path: Path, text: str, message: str) -> None:
    faults_file = tmp_path / "faults.yml"
    faults_file.write_text(text)
    with pytest.raises(DqAgentError, match="^" + str(faults_file).replace(".", r"\.")) as caught:
        load_faults(faults_file)
    assert message in str(caught.value)
    done = CliRunner().invoke(main, ["sandbox", "--faults", str(faults_file), "--port-base", "1"])
    assert done.exit_code == 3
    assert message in done.stderr
