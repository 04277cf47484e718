"""Start the loopback emulators together, seeded from a file or from the running example."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml

from dq_agent.errors import DqAgentError
from dq_agent_sandbox.airflow import AirflowEmulator
from dq_agent_sandbox.anthropic import AnthropicEmulator
from dq_agent_sandbox.faults import Fault, with_faults
from dq_agent_sandbox.gsheets import SheetsEmulator
from dq_agent_sandbox.http import Emulator, LoopbackServer
from dq_agent_sandbox.salesforce import SalesforceEmulator
from dq_agent_sandbox.slack import SlackEmulator
from dq_agent_sandbox.warehouse import OWNERS, PRODUCTS, REGIONS, opportunities

SESSION_ID = "sandbox"
SLACK_TOKEN = "xoxb-sandbox"
SLACK_SIGNING_SECRET = "sandbox-signing-secret"
AIRFLOW_TOKEN = "sandbox-airflow-token"
AIRFLOW_USERNAME = "admin"
AIRFLOW_PASSWORD = "admin"
ANTHROPIC_API_KEY = "sandbox-anthropic-key"
# The demo's finance spreadsheet keeps a fixed key so suites can name it.
FINANCE_KEY = "1DqAgentDemoFinanceForecastsSheetKey000000"


@dataclass
class Sandbox:
    """Running emulators; :meth:`stop` shuts them down."""

    servers: dict[str, LoopbackServer]
    info: dict[str, Any] = field(default_factory=dict)

    def stop(self) -> None:
        for server in self.servers.values():
            server.stop()

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()


def start_sandbox(
    seed: Mapping[str, Any],
    *,
    port_base: int | None = None,
    clock: Callable[[], float] | None = None,
    faults: Mapping[str, list[Fault]] | None = None,
) -> Sandbox:
    """Seed and start the Salesforce, Google Sheets, Slack, Airflow and Anthropic emulators on
    127.0.0.1.

    ``port_base`` N puts Salesforce on N, Sheets on N+1, Slack on N+2, Airflow on N+3 and
    Anthropic on N+4; without it, free ports are used. ``faults`` (by service, see
    :mod:`dq_agent_sandbox.faults`) are met by the requests they match.
    """
    session_id = str(seed.get("salesforce", {}).get("session_id", SESSION_ID))
    salesforce = SalesforceEmulator(session_id=session_id)
    salesforce.seed(seed.get("salesforce", {}).get("objects", {}))
    sheets = SheetsEmulator()
    keys = sheets.seed(seed.get("gsheets", {}).get("spreadsheets", {}))
    slack = SlackEmulator()
    slack.seed(seed.get("slack", {}))
    # ``clock``: the demo's simulated time, so that pipeline runs take their time in it.
    airflow = AirflowEmulator(
        token=AIRFLOW_TOKEN, username=AIRFLOW_USERNAME, password=AIRFLOW_PASSWORD, clock=clock
    )
    airflow.seed(seed.get("airflow", {}))
    anthropic = AnthropicEmulator(api_key=ANTHROPIC_API_KEY)
    anthropic.seed(seed.get("anthropic", {}))
    servers: dict[str, LoopbackServer] = {}
    try:
        emulators: list[Emulator] = [salesforce, sheets, slack, airflow, anthropic]
        emulators = with_faults(emulators, dict(faults or {}))
        for offset, emulator in enumerate(emulators):
            port = 0 if port_base is None else port_base + offset
            try:
                servers[emulator.name] = LoopbackServer(emulator, port).start()
            except OSError as exc:
                raise DqAgentError(
                    f"cannot start the {emulator.name} emulator on 127.0.0.1:{port}: {exc.strerror}"
                ) from exc
    except DqAgentError:
        for server in servers.values():
            server.stop()
        raise
    info = {
        "salesforce": {
            "instance_url": servers["salesforce"].base_url,
            "session_id": session_id,
        },
        "gsheets": {"base_url": servers["gsheets"].base_url, "spreadsheets": keys},
        "slack": {
            "base_url": servers["slack"].base_url + "/api/",
            "token": SLACK_TOKEN,
            "signing_secret": SLACK_SIGNING_SECRET,
        },
        "airflow": {
            "base_url": servers["airflow"].base_url,
            "token": AIRFLOW_TOKEN,
            "username": AIRFLOW_USERNAME,
            "password": AIRFLOW_PASSWORD,
        },
        "anthropic": {"base_url": servers["anthropic"].base_url, "api_key": ANTHROPIC_API_KEY},
    }
    return Sandbox(servers, info)


def load_seed(path: Path) -> dict[str, Any]:
    """A seed file (YAML or JSON): ``{salesforce: {objects: …}, gsheets: {spreadsheets: …},
    slack: {users: …, channels: …}, airflow: {dags: …}, anthropic: {script: […]}}``."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise DqAgentError(f"cannot read seed file {path}: {exc}") from exc
    sections = {"salesforce", "gsheets", "slack", "airflow", "anthropic"}
    if not isinstance(data, dict) or not set(data) <= sections:
        raise DqAgentError(
            f"{path}: expected a mapping with salesforce:, gsheets:, slack:, airflow:, anthropic:"
        )
    return data


FORECAST_HEADER = ["region", "state", "product", "month", "units", "amount"]


def forecast_rows(region: str) -> list[list[Any]]:
    """A region's December forecast, as the finance sheet holds it (header not included)."""
    return [
        [region, state, product, "2026-12-01", 120 + 10 * i, (120 + 10 * i) * 1500]
        for i, (state, product) in enumerate((s, p) for s in REGIONS[region] for p in PRODUCTS)
    ]


def demo_seed(now: datetime) -> dict[str, Any]:
    """The running example: the CRM with its fat finger and whale, Pete's finance sheet."""
    naive_now = now.astimezone(UTC).replace(tzinfo=None)
    users = [
        {"Id": user_id, "Email": email, "Name": email.split("@")[0].title()}
        for user_id, email in OWNERS.items()
    ]
    deals = [{k: _json_value(v) for k, v in deal.items()} for deal in opportunities(naive_now)]
    header = FORECAST_HEADER
    return {
        "salesforce": {
            "session_id": SESSION_ID,
            "objects": {
                "User": {"fields": {"Email": "email", "Name": "string"}, "records": users},
                "Opportunity": {
                    "fields": {
                        "Name": "string",
                        "Amount": "currency",
                        "Seats__c": "double",
                        "Price_Per_Seat__c": "currency",
                        "StageName": "picklist",
                        "OwnerId": "reference",
                    },
                    "records": deals,
                },
            },
        },
        "gsheets": {
            "spreadsheets": {
                "finance_forecasts": {
                    "key": FINANCE_KEY,
                    "title": "Finance forecasts FY27",
                    "sheets": {
                        # Pete pasted over the US tab: only the header row survived.
                        "us_forecast_dec_v1": [header],
                        "eu_forecast_dec_v1": [header, *forecast_rows("EU")],
                    },
                }
            }
        },
        "airflow": {
            "dags": {
                "forecasts_agg": {
                    "tasks": ["load_forecasts", "aggregate", "publish"],
                    "duration_s": 90,
                },
                "revenue_daily": {"tasks": ["aggregate", "publish"], "duration_s": 60},
            }
        },
    }


def _json_value(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC).isoformat()
    return value
