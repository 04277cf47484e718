"""Suite runs as OpenLineage run events: what a lineage backend receives for each run, through
openlineage-python's own transports, and that a backend that is down changes nothing else.

OpenLineage's JSON Schema files are not available offline: every event is checked by rebuilding
it from its JSON with openlineage-python's typed classes (which validate run ids and times, and
give each facet its ``_schemaURL``) and serialising it again with the client's own ``Serde``.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
import threading
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from openlineage.client.event_v2 import InputDataset, Job, Run, RunEvent, RunState
from openlineage.client.generated import (
    data_quality_assertions_dataset as assertions,
)
from openlineage.client.generated import (
    data_quality_metrics_input_dataset as metrics,
)
from openlineage.client.generated import (
    error_message_run,
    job_type_job,
    processing_engine_run,
    tags_run,
)
from openlineage.client.serde import Serde
from openlineage.client.transport import Config, Transport

from dq_agent.cli import main
from dq_agent.config import load_project
from dq_agent.engine import NOW_VARIABLE
from dq_agent.lineage_out import dataset_of, dq_agent_version
from tests.helpers import write
from tests.sources import load_orders, order_rows, project_for

NOW = datetime(2026, 12, 4, 9, 30, tzinfo=UTC)
API_KEY = "ol-secret-key-7f3a"
# What openlineage-python writes into the environment when it reads OPENLINEAGE_URL.
ALIASED = [
    f"OPENLINEAGE__TRANSPORT__TRANSPORTS__DEFAULT_HTTP__{part}"
    for part in ("TYPE", "URL", "AUTH", "ENDPOINT")
]

PASSING = """
suite: orders_ok
owner: ops@acme.com
source: {connector: warehouse, table: orders}
key: [id]
checks:
  - row_count
  - expect_column_values_to_not_be_null: {column: customer}
"""
FAILING = """
suite: orders_bad
owner: ops@acme.com
source: {connector: warehouse, table: orders}
key: [id]
checks:
  - row_count: {min: 100}
  - expect_column_values_to_not_be_null: {column: status}
  - expect_column_values_to_be_between: {column: amount, min_value: 0, max_value: 50, severity: warn}
"""
UNREADABLE = """
suite: ghost
owner: ops@acme.com
source: {connector: warehouse, table: no_such_table}
checks:
  - row_count
"""


@pytest.fixture(autouse=True)
def no_ambient_openlineage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No OpenLineage configuration but the test's: not the environment's, the working
    folder's or the home folder's; the variables the client sets itself are removed after."""
    for name in [n for n in os.environ if n.startswith("OPENLINEAGE")]:
        monkeypatch.delenv(name)
    for name in ALIASED:
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(home)
    monkeypatch.setenv(NOW_VARIABLE, NOW.isoformat())
    yield


def project(tmp_path: Path, settings: str, *suites: str) -> Path:
    """The orders warehouse (10 orders, one with no status, amounts 10 to 100) and ``suites``,
    with ``settings`` added to dq-agent.yml."""
    url = f"sqlite:///{tmp_path / 'warehouse.db'}"
    rows = order_rows(10, newest=NOW - timedelta(minutes=5))
    rows[3]["status"] = None
    load_orders(url, rows)
    root = project_for(
        tmp_path / "project",
        url,
        {yaml.split("\n")[1].removeprefix("suite: "): yaml for yaml in suites},
    )
    with (root / "dq-agent.yml").open("a", encoding="utf-8") as file:
        file.write(settings)
    return root


def ol_config(
    tmp_path: Path, transport: Mapping[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An openlineage.yml with ``transport``, named by OPENLINEAGE_CONFIG."""
    path = tmp_path / "openlineage.yml"
    path.write_text(json.dumps({"transport": dict(transport)}), encoding="utf-8")
    monkeypatch.setenv("OPENLINEAGE_CONFIG", str(path))


def check(root: Path, *suites: str, command: str = "check") -> tuple[int, dict[str, Any] | str]:
    args = [command, "--project", str(root), *suites]
    if command == "check":
        args += ["--format", "json"]
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    out = json.loads(result.stdout) if command == "check" else result.stdout
    return result.exit_code, out


def events_in(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def by_job(events: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    runs: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        runs.setdefault(event["job"]["name"], []).append(event)
    return runs


# --- rebuilding events with openlineage-python's classes -----------------------------------

RUN_FACETS = {
    "processing_engine": processing_engine_run.ProcessingEngineRunFacet,
    "errorMessage": error_message_run.ErrorMessageRunFacet,
}


def _facet(cls: type, doc: Mapping[str, Any], **parts: Any) -> Any:
    fields = {k: v for k, v in doc.items() if not k.startswith("_")}
    facet = cls(**{**fields, **parts}, producer=doc["_producer"])
    assert facet._schemaURL == doc["_schemaURL"], cls
    return facet


def rebuilt(doc: Mapping[str, Any]) -> RunEvent:
    """``doc`` as openlineage-python's typed event; every facet's ``_schemaURL`` must be the
    one its class gives."""
    run_facets = {}
    for name, facet in doc["run"]["facets"].items():
        if name == "tags":
            tags = [tags_run.TagsRunFacetFields(**t) for t in facet["tags"]]
            run_facets[name] = _facet(tags_run.TagsRunFacet, facet, tags=tags)
        else:
            run_facets[name] = _facet(RUN_FACETS[name], facet)
    job_facets = {
        name: _facet(job_type_job.JobTypeJobFacet, facet)
        for name, facet in doc["job"]["facets"].items()
    }
    inputs = []
    for dataset in doc["inputs"]:
        facets: dict[str, Any] = {}
        for name, facet in dataset["inputFacets"].items():
            if name == "dataQualityAssertions":
                listed = [assertions.Assertion(**a) for a in facet["assertions"]]
                facets[name] = _facet(
                    assertions.DataQualityAssertionsDatasetFacet, facet, assertions=listed
                )
            else:
                assert name == "dataQualityMetrics", name
                columns = {c: metrics.ColumnMetrics(**m) for c, m in facet["columnMetrics"].items()}
                facets[name] = _facet(
                    metrics.DataQualityMetricsInputDatasetFacet, facet, columnMetrics=columns
                )
        inputs.append(
            InputDataset(
                namespace=dataset["namespace"],
                name=dataset["name"],
                facets=dataset["facets"],
                inputFacets=facets,
            )
        )
    event = RunEvent(
        eventType=RunState(doc["eventType"]),
        eventTime=doc["eventTime"],
        run=Run(runId=doc["run"]["runId"], facets=run_facets),
        job=Job(namespace=doc["job"]["namespace"], name=doc["job"]["name"], facets=job_facets),
        inputs=inputs,
        outputs=[],
        producer=doc["producer"],
    )
    assert event.schemaURL == doc["schemaURL"]
    return event


def assert_round_trips(events: list[dict[str, Any]]) -> None:
    for event in events:
        assert Serde.to_dict(rebuilt(event)) == event


# --- a loopback lineage backend -------------------------------------------------------------


class Receiver:
    """An HTTP server on 127.0.0.1 that keeps what is POSTed to it and answers ``status``."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.received: list[tuple[str, dict[str, str], dict[str, Any]]] = []
        received, answer = self.received, self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                received.append((self.path, dict(self.headers), json.loads(body)))
                self.send_response(answer.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- the tests ------------------------------------------------------------------------------


def test_each_suite_run_is_a_START_and_a_COMPLETE_with_its_checks_as_assertions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log_file = tmp_path / "events.jsonl"
    ol_config(
        tmp_path, {"type": "file", "log_file_path": str(log_file), "append": True}, monkeypatch
    )
    root = project(
        tmp_path,
        "openlineage: {namespace: acme-dq, job_name: '{project}.{suite}'}\n",
        PASSING,
        FAILING,
    )

    code, out = check(root)

    assert code == 2
    assert isinstance(out, dict)
    assert [s["status"] for s in out["suites"]] == ["fail", "pass"]
    events = events_in(log_file)
    assert_round_trips(events)
    runs = by_job(events)
    assert sorted(runs) == ["project.orders_bad", "project.orders_ok"]
    database = tmp_path / "warehouse.db"
    for job, (start, end) in runs.items():
        assert [start["eventType"], end["eventType"]] == ["START", "COMPLETE"]
        assert start["run"]["runId"] == end["run"]["runId"]
        assert (
            start["job"]
            == end["job"]
            == {
                "namespace": "acme-dq",
                "name": job,
                "facets": end["job"]["facets"],
            }
        )
        assert start["eventTime"].startswith("2026-12-04T09:30")
        assert start["producer"] == f"https://pypi.org/project/dq-agent/{dq_agent_version()}/"
        assert end["run"]["facets"]["processing_engine"]["name"] == "dq-agent"
        for event in (start, end):
            [dataset] = event["inputs"]
            assert (dataset["namespace"], dataset["name"]) == (
                f"sqlite://{database}",
                "main.orders",
            )
        assert start["inputs"][0]["inputFacets"] == {}
    assert len({runs[job][0]["run"]["runId"] for job in runs}) == 2

    bad = runs["project.orders_bad"][1]["inputs"][0]["inputFacets"]
    assert [
        (a["assertion"], a["success"], a.get("column"), a["severity"])
        for a in bad["dataQualityAssertions"]["assertions"]
    ] == [
        ("row_count", False, None, "error"),
        ("expect_column_values_to_not_be_null(status)", False, "status", "error"),
        ("expect_column_values_to_be_between(amount)", False, "amount", "warn"),
    ]
    assert bad["dataQualityMetrics"]["rowCount"] == 10
    assert bad["dataQualityMetrics"]["columnMetrics"] == {
        "status": {"nullCount": 1, "quantiles": {}},
        "amount": {"nullCount": 0, "quantiles": {}},
    }
    good = runs["project.orders_ok"][1]["inputs"][0]["inputFacets"]
    assert [
        (a["assertion"], a["success"], a.get("column"))
        for a in good["dataQualityAssertions"]["assertions"]
    ] == [
        ("row_count", True, None),
        ("expect_column_values_to_not_be_null(customer)", True, "customer"),
    ]
    assert good["dataQualityMetrics"]["rowCount"] == 10
    assert good["dataQualityMetrics"]["columnMetrics"] == {
        "customer": {"nullCount": 0, "quantiles": {}}
    }


def test_a_suite_that_cannot_run_ends_its_run_with_FAIL_and_the_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log_file = tmp_path / "events.jsonl"
    ol_config(
        tmp_path, {"type": "file", "log_file_path": str(log_file), "append": True}, monkeypatch
    )
    root = project(tmp_path, "openlineage: {}\n", UNREADABLE)

    code, _ = check(root)

    assert code == 3
    events = events_in(log_file)
    assert_round_trips(events)
    start, end = events
    assert (start["eventType"], end["eventType"]) == ("START", "FAIL")
    assert start["job"]["name"] == end["job"]["name"] == "ghost"
    assert start["job"]["namespace"] == "dq-agent"
    assert "no_such_table" in end["run"]["facets"]["errorMessage"]["message"]
    assert end["inputs"][0]["name"] == "main.no_such_table"
    assert "dataQualityAssertions" not in end["inputs"][0]["inputFacets"]


def test_dq_agent_run_sends_the_same_events_as_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log_file = tmp_path / "events.jsonl"
    ol_config(
        tmp_path, {"type": "file", "log_file_path": str(log_file), "append": True}, monkeypatch
    )
    root = project(tmp_path, "openlineage: {}\n", PASSING)

    code, _ = check(root, command="run")

    assert code == 0
    events = events_in(log_file)
    assert_round_trips(events)
    assert [(e["job"]["name"], e["eventType"]) for e in events] == [
        ("orders_ok", "START"),
        ("orders_ok", "COMPLETE"),
    ]


def test_over_http_the_events_arrive_with_the_api_key_as_a_bearer_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = project(tmp_path, "openlineage: {}\n", PASSING)
    with Receiver() as receiver:
        monkeypatch.setenv("OPENLINEAGE_URL", receiver.url)
        monkeypatch.setenv("OPENLINEAGE_API_KEY", API_KEY)

        code, _ = check(root)

    assert code == 0
    assert [(path, body["eventType"]) for path, _, body in receiver.received] == [
        ("/api/v1/lineage", "START"),
        ("/api/v1/lineage", "COMPLETE"),
    ]
    for _, headers, _ in receiver.received:
        assert headers["Authorization"] == f"Bearer {API_KEY}"
        assert headers["Content-Type"] == "application/json"
    assert_round_trips([body for _, _, body in receiver.received])


def test_the_transport_can_be_set_in_dq_agent_yml_with_its_secret_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LINEAGE_KEY", API_KEY)
    with Receiver() as receiver:
        settings = (
            "openlineage:\n"
            "  transport:\n"
            "    type: http\n"
            f"    url: {receiver.url}\n"
            "    endpoint: api/v1/lineage\n"
            "    auth: {type: api_key, apiKey: '${LINEAGE_KEY}'}\n"
        )
        root = project(tmp_path, settings, PASSING)

        code, _ = check(root)

    assert code == 0
    assert [body["eventType"] for _, _, body in receiver.received] == ["START", "COMPLETE"]
    assert {h["Authorization"] for _, h, _ in receiver.received} == {f"Bearer {API_KEY}"}


@pytest.mark.parametrize("backend", ["answers 500", "unreachable"])
def test_a_lineage_backend_that_fails_changes_nothing_but_one_warning(
    backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    root = project(tmp_path, "", PASSING, FAILING)
    _, without = check(root)

    with Receiver(status=500) as receiver:
        url = receiver.url if backend == "answers 500" else f"http://127.0.0.1:{closed_port()}"
        transport = {
            "type": "http",
            # The key in the URL too: it may not reach the log either way.
            "url": url.replace("http://", f"http://lineage:{API_KEY}@"),
            "auth": {"type": "api_key", "apiKey": API_KEY},
            "retry": {"total": 0},
            "timeout": 2,
        }
        ol_config(tmp_path, transport, monkeypatch)
        (root / "dq-agent.yml").write_text(
            (root / "dq-agent.yml").read_text(encoding="utf-8") + "openlineage: {}\n",
            encoding="utf-8",
        )
        with caplog.at_level(logging.WARNING, logger="dq_agent"):
            code, out = check(root)

    assert code == 2
    assert isinstance(out, dict) and isinstance(without, dict)
    for suite in (*out["suites"], *without["suites"]):
        del suite["duration_s"], suite["started_at"]
    assert out == without
    warnings = [r for r in caplog.records if r.name == "dq_agent.lineage_out"]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    message = warnings[0].getMessage()
    assert message.startswith("OpenLineage: could not send the run events of orders_bad (")
    assert API_KEY not in message
    assert "no more lineage is sent in this run" in message
    # The first event failed: the rest of the run sent nothing more.
    assert len(receiver.received) <= 1


def test_without_an_openlineage_section_nothing_is_sent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Receiver() as receiver:
        monkeypatch.setenv("OPENLINEAGE_URL", receiver.url)
        root = project(tmp_path, "", PASSING)

        code, _ = check(root)

    assert code == 0
    assert receiver.received == []


def test_enabled_false_turns_it_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with Receiver() as receiver:
        monkeypatch.setenv("OPENLINEAGE_URL", receiver.url)
        root = project(tmp_path, "openlineage: {enabled: false}\n", PASSING)

        code, _ = check(root)

    assert code == 0
    assert receiver.received == []


def test_a_job_name_may_only_name_the_suite_connector_and_project(tmp_path: Path) -> None:
    root = project(tmp_path, "openlineage: {job_name: '{suite}.{table}'}\n", PASSING)

    issues = [str(i) for i in load_project(root, env={}).issues]

    assert len(issues) == 1
    assert issues[0].endswith(
        "openlineage.job_name: expected a name with placeholders among {suite}, {connector}, "
        "{project}, got '{suite}.{table}'"
    )


@pytest.mark.parametrize(
    ("connector", "source", "expected"),
    [
        (
            "type: sql\nurl: postgresql+psycopg://dq:pw@db.acme.com/analytics\n",
            "{connector: c, table: orders, schema: sales}",
            ("postgres://db.acme.com:5432", "analytics.sales.orders"),
        ),
        (
            "type: sql\nurl: postgresql+psycopg://dq@db:6432/analytics\n",
            "{connector: c, table: orders}",
            ("postgres://db:6432", "analytics.public.orders"),
        ),
        (
            "type: sql\nurl: mysql+pymysql://root@127.0.0.1:3306/shop\n",
            "{connector: c, table: orders}",
            ("mysql://127.0.0.1:3306", "shop.orders"),
        ),
        (
            "type: sql\nurl: trino://dq@trino.acme.com:443/hive/sales\n",
            "{connector: c, table: orders}",
            ("trino://trino.acme.com:443", "hive.sales.orders"),
        ),
        (
            "type: sql\nurl: snowflake://dq:pw@acme-prod/analytics/sales\n",
            "{connector: c, table: orders}",
            ("snowflake://acme-prod", "analytics.sales.orders"),
        ),
        (
            "type: sql\nurl: bigquery://acme-project/sales\n",
            "{connector: c, table: orders}",
            ("bigquery", "acme-project.sales.orders"),
        ),
        (
            "type: sql\nurl: postgresql+psycopg://dq@db/analytics\n",
            "{connector: c, query: 'SELECT 1 AS x'}",
            ("postgres://db:5432", "query:s"),
        ),
        (
            "type: salesforce\ninstance_url: https://acme.my.salesforce.com\nsession_id: x\n",
            "{connector: c, object: Opportunity, fields: [Id, Amount]}",
            ("salesforce://acme.my.salesforce.com", "Opportunity"),
        ),
        (
            "type: gsheets\nbase_url: http://127.0.0.1:8080\n",
            "{connector: c, spreadsheet: 'https://docs.google.com/spreadsheets/d/1AbC_d-9/edit', worksheet: us_forecast}",
            ("gsheets://1AbC_d-9", "us_forecast"),
        ),
    ],
)
def test_datasets_are_named_as_openlineage_names_them(
    tmp_path: Path, connector: str, source: str, expected: tuple[str, str]
) -> None:
    root = tmp_path / "p"
    write(root / "connectors" / "c.yml", connector)
    write(root / "checks" / "s.yml", f"suite: s\nsource: {source}\nchecks: [row_count]\n")
    loaded = load_project(root, env={})
    assert loaded.issues == (), [str(i) for i in loaded.issues]

    assert dataset_of(loaded, loaded.suites["s"]) == expected


class LeakyTransport(Transport):
    """A transport whose errors repeat its whole configuration, secrets and all."""

    kind = "leaky"
    config_class = "tests.test_openlineage.LeakyConfig"

    def __init__(self, config: LeakyConfig) -> None:
        self.config = config

    def emit(self, event: Any) -> None:
        raise RuntimeError(f"refused with {self.config.params}")


class LeakyConfig(Config):
    def __init__(self, params: dict[str, Any]) -> None:
        self.params = params

    @classmethod
    def from_dict(cls, params: dict[str, Any]) -> LeakyConfig:
        return cls(params)


def test_no_configured_secret_reaches_the_log_whatever_the_transport_says(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("LINEAGE_KEY", API_KEY)
    settings = (
        "openlineage:\n"
        "  transport:\n"
        "    type: tests.test_openlineage.LeakyTransport\n"
        "    url: 'https://lineage:hunter2-pw@marquez.acme.com/'\n"
        "    auth: {type: api_key, apiKey: '${LINEAGE_KEY}'}\n"
        "    custom_headers: {X-Tenant-Token: tenant-token-99}\n"
    )
    root = project(tmp_path, settings, PASSING)

    with caplog.at_level(logging.WARNING, logger="dq_agent"):
        code, _ = check(root)

    assert code == 0
    [warning] = [r.getMessage() for r in caplog.records if r.name == "dq_agent.lineage_out"]
    assert "refused with" in warning and "marquez.acme.com" in warning
    for secret in (API_KEY, "hunter2-pw", "tenant-token-99"):
        assert secret not in warning


def test_with_no_transport_configured_the_events_only_go_to_the_log(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = project(tmp_path, "openlineage: {}\n", PASSING)

    with caplog.at_level(logging.INFO, logger="openlineage"):
        code, _ = check(root)

    assert code == 0
    printed = [
        json.loads(r.getMessage())
        for r in caplog.records
        if r.name == "openlineage.client.transport.console"
    ]
    assert [e["eventType"] for e in printed] == ["START", "COMPLETE"]


def test_without_openlineage_python_installed_the_run_goes_on_with_one_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setitem(sys.modules, "openlineage.client", None)  # import fails
    root = project(tmp_path, "openlineage: {}\n", PASSING, FAILING)

    with caplog.at_level(logging.WARNING, logger="dq_agent"):
        code, _ = check(root)

    assert code == 2
    assert [r.getMessage() for r in caplog.records if r.name == "dq_agent.lineage_out"] == [
        "openlineage: is set in dq-agent.yml, but openlineage-python is not installed: "
        "pip install 'dq-agent[openlineage]'; no lineage is sent"
    ]
