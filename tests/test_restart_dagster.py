"""The Dagster restart target: dagster-graphql's client over HTTP against the GraphQL emulator."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from dq_agent.config import load_project
from dq_agent.config.models import DagsterConnector, DagsterRestart
from dq_agent.restart.base import PipelineRun, RestartError
from dq_agent.restart.dagster import KEY_TAG, DagsterTarget
from dq_agent.restart.runner import target_for
from dq_agent_sandbox.dagster import QUEUE_DELAY_S, DagsterEmulator
from dq_agent_sandbox.http import LoopbackServer
from tests.helpers import make_project

NOW = 1764000000.0  # 2025-11-24T16:00:00Z
TOKEN = "user:dagster-plus-token"
JOB = "forecasts_agg"
RESTART_KEY = "us_forecast:17:0"
RUN_CONFIG = {"ops": {"build_agg": {"config": {"region": "US"}}}}


class Clock:
    def __init__(self) -> None:
        self.at = NOW

    def __call__(self) -> float:
        return self.at


@pytest.fixture(autouse=True)
def no_waiting(monkeypatch: pytest.MonkeyPatch) -> None:
    def forbidden(seconds: float) -> None:
        raise AssertionError(f"time.sleep({seconds}) called")

    monkeypatch.setattr(time, "sleep", forbidden)


@pytest.fixture(scope="module")
def clock() -> Clock:
    return Clock()


@pytest.fixture(scope="module")
def server(clock: Clock) -> Iterator[LoopbackServer]:
    with LoopbackServer(DagsterEmulator(token=TOKEN, clock=clock)) as server:
        yield server


@pytest.fixture
def emulator(server: LoopbackServer, clock: Clock) -> DagsterEmulator:
    emulator = server.emulator
    assert isinstance(emulator, DagsterEmulator)
    emulator.reset()
    clock.at = NOW
    emulator.seed(
        {
            "jobs": {
                JOB: {"location": "forecasting", "ops": ["load", "build_agg"], "duration_s": 60},
                "revenue_daily": {"location": "finance", "ops": ["sum"]},
            }
        }
    )
    return emulator


def _target(
    server: LoopbackServer | None,
    *,
    job: str = JOB,
    token: str | None = TOKEN,
    run_config: dict[str, Any] | None = None,
    url: str | None = None,
    **where: str,
) -> DagsterTarget:
    connector = DagsterConnector.model_validate(
        {"type": "dagster", "url": url or f"{server.base_url}/", "token": token}  # type: ignore[union-attr]
    )
    spec = DagsterRestart(
        connector="dagster",
        job=job,
        run_config=RUN_CONFIG if run_config is None else run_config,
        **where,  # type: ignore[arg-type]
    )
    return DagsterTarget(connector, spec, suite="us_forecast")


def _runs(emulator: DagsterEmulator) -> list[dict[str, Any]]:
    return list(emulator.state()["runs"])


def test_a_job_is_launched_tagged_with_the_key_and_followed_to_success(
    emulator: DagsterEmulator, server: LoopbackServer, clock: Clock
) -> None:
    target = _target(server)
    assert target.label == "dagster job forecasts_agg"

    run = target.start(RESTART_KEY)

    (launched,) = _runs(emulator)
    run_url = f"{server.base_url}/runs/{launched['runId']}"
    assert run == PipelineRun(launched["runId"], "queued", "launched: Queued", run_url)
    assert launched["tags"] == [{"key": KEY_TAG, "value": RESTART_KEY}]
    assert launched["runConfig"] == RUN_CONFIG
    lookup, locate, launch = emulator.operations()
    # First: is there a run for this restart already?
    assert (lookup["operation"], lookup["root"]) == ("DqAgentRunsByTag", "runsOrError")
    assert lookup["variables"] == {
        "filter": {"pipelineName": JOB, "tags": [{"key": KEY_TAG, "value": RESTART_KEY}]},
        "limit": 1,
    }
    # None: the client finds the job's code location, then launches it.
    assert locate["root"] == "repositoriesOrError"
    assert launch["root"] == "launchPipelineExecution"
    assert launch["variables"]["executionParams"]["selector"]["repositoryLocationName"] == (
        "forecasting"
    )
    assert all(op["headers"]["dagster-cloud-api-token"] == TOKEN for op in emulator.operations())

    clock.at = NOW + QUEUE_DELAY_S
    assert target.poll(run) == run.moved("queued", "Starting")
    clock.at = NOW + 2
    assert target.poll(run) == run.moved("running", "Started")
    clock.at = NOW + 62
    done = target.poll(run)
    assert (done.state, done.detail) == ("success", "Success")
    asked = len(emulator.operations())
    assert target.poll(done) is done  # a finished run is not asked about again
    assert len(emulator.operations()) == asked


def test_a_retried_start_follows_the_run_it_launched(
    emulator: DagsterEmulator, server: LoopbackServer, clock: Clock
) -> None:
    first = _target(server).start(RESTART_KEY)
    clock.at = NOW + 5
    # The agent restarted before it recorded the run: the same restart is started again.
    again = _target(server).start(RESTART_KEY)
    other = _target(server).start("us_forecast:18:0")

    assert again == PipelineRun(first.run_id, "running", "already launched: Started", first.url)
    assert other.run_id != first.run_id
    assert len(_runs(emulator)) == 2
    launches = [op for op in emulator.operations() if op["root"] == "launchPipelineExecution"]
    assert len(launches) == 2


@pytest.mark.parametrize(("outcome", "detail"), [("FAILURE", "Failure"), ("CANCELED", "Canceled")])
def test_failed_and_canceled_runs_fail(
    emulator: DagsterEmulator, server: LoopbackServer, clock: Clock, outcome: str, detail: str
) -> None:
    emulator.set_outcome(JOB, outcome)
    target = _target(server)
    run = target.start(RESTART_KEY)
    clock.at = NOW + 62
    done = target.poll(run)
    assert (done.state, done.detail) == ("failed", detail)


def test_a_configured_code_location_is_used_as_it_is(
    emulator: DagsterEmulator, server: LoopbackServer
) -> None:
    target = _target(
        server,
        job="revenue_daily",
        run_config={},
        repository_location="finance",
        repository="__repository__",
    )
    target.start(RESTART_KEY)
    assert [op["root"] for op in emulator.operations()] == [
        "runsOrError",
        "launchPipelineExecution",
    ]

    wrong = _target(
        server,
        job="revenue_daily",
        run_config={},
        repository_location="forecasting",
        repository="__repository__",
    )
    with pytest.raises(RestartError) as caught:
        wrong.start("us_forecast:18:0")
    assert str(caught.value) == (
        "dagster job revenue_daily (suite us_forecast): Dagster has no job 'revenue_daily' "
        "(PipelineNotFoundError: Could not find Pipeline forecasting.__repository__.revenue_daily)"
    )
    assert caught.value.transient is False


def test_an_unknown_job_is_a_clear_error_that_will_not_pass(
    emulator: DagsterEmulator, server: LoopbackServer
) -> None:
    with pytest.raises(RestartError) as caught:
        _target(server, job="forecasts_agg_v2").start(RESTART_KEY)
    assert str(caught.value) == (
        "dagster job forecasts_agg_v2 (suite us_forecast): Dagster has no job 'forecasts_agg_v2' "
        "(JobNotFoundError: No jobs with the name `forecasts_agg_v2` exist)"
    )
    assert caught.value.transient is False
    assert _runs(emulator) == []


def test_run_config_that_does_not_fit_will_not_pass(
    emulator: DagsterEmulator, server: LoopbackServer
) -> None:
    with pytest.raises(RestartError) as caught:
        _target(server, run_config={"ops": {"publish": {}}}).start(RESTART_KEY)
    assert str(caught.value) == (
        "dagster job forecasts_agg (suite us_forecast): launch: RunConfigValidationInvalid: "
        'Received unexpected config entry "publish" at path root:ops.'
    )
    assert caught.value.transient is False


def test_python_errors_unavailability_and_no_connection_may_pass(
    emulator: DagsterEmulator, server: LoopbackServer
) -> None:
    emulator.python_error_next("DagsterUserCodeUnreachableError: Could not reach user code server")
    with pytest.raises(RestartError) as caught:
        _target(server).start(RESTART_KEY)
    assert str(caught.value).endswith(
        "launch: PythonError: DagsterUserCodeUnreachableError: Could not reach user code server"
    )
    assert caught.value.transient is True

    emulator.fail_next(503)
    with pytest.raises(RestartError) as caught:
        _target(server).start(RESTART_KEY)
    assert str(caught.value) == (
        "dagster job forecasts_agg (suite us_forecast): find its run failed: HTTP 503 Service Unavailable"
    )
    assert caught.value.transient is True

    run = _target(server).start(RESTART_KEY)
    emulator.fail_next(502)
    with pytest.raises(
        RestartError, match=rf"read run {run.run_id} failed: HTTP 502 Bad Gateway$"
    ) as caught:
        _target(server).poll(run)
    assert caught.value.transient is True

    with socket.socket() as probe:  # nothing listens on a port just released
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(
        RestartError, match=r"cannot reach Dagster at http://127\.0\.0\.1:\d+ "
    ) as caught:
        _target(None, url=f"http://127.0.0.1:{port}").poll(run)
    assert caught.value.transient is True


def test_refusals_will_not_pass(emulator: DagsterEmulator, server: LoopbackServer) -> None:
    with pytest.raises(RestartError) as caught:
        _target(server, token="user:wrong").start(RESTART_KEY)
    assert str(caught.value) == (
        "dagster job forecasts_agg (suite us_forecast): find its run failed: HTTP 401 Unauthorized"
    )
    assert caught.value.transient is False

    with pytest.raises(RestartError) as caught:
        _target(server).poll(PipelineRun("6f0c-missing", "running"))
    assert str(caught.value) == (
        "dagster job forecasts_agg (suite us_forecast): read run 6f0c-missing: "
        "RunNotFoundError: Run 6f0c-missing could not be found."
    )
    assert caught.value.transient is False


def test_the_emulator_answers_graphql_as_dagster_does(server: LoopbackServer) -> None:
    headers = {"Dagster-Cloud-Api-Token": TOKEN}
    with requests.Session() as http:
        http.trust_env = False
        unknown = http.post(
            f"{server.base_url}/graphql",
            json={"query": "query Q { assetNodes { id } }"},
            headers=headers,
        )
        assert unknown.status_code == 200
        assert (
            unknown.json()["errors"][0]["message"]
            == 'Cannot query field "assetNodes" on type "Query".'
        )
        empty = http.post(f"{server.base_url}/graphql", json={}, headers=headers)
        assert empty.status_code == 400
        launch = http.post(
            f"{server.base_url}/graphql",
            json={
                "query": "mutation L($p: ExecutionParams!) { launchRun(executionParams: $p) { __typename } }",
                "variables": {
                    "p": {
                        "selector": {
                            "repositoryLocationName": "x",
                            "repositoryName": "y",
                            "jobName": "z",
                        }
                    }
                },
            },
            headers=headers,
        )
        assert launch.json()["data"]["launchRun"]["__typename"] == "PipelineNotFoundError"


# --------------------------------------------------------------------------- configuration


DAGSTER = "type: dagster\nurl: https://acme.dagster.cloud/prod\ntoken: ${DAGSTER_CLOUD_API_TOKEN}\n"


def test_the_restart_entry_and_its_connector_are_validated(tmp_path: Path) -> None:
    make_project(
        tmp_path,
        connectors={
            "warehouse": "type: sql\nurl: sqlite:///warehouse.db\n",
            "dagster": DAGSTER,
            "prefect": "type: prefect\napi_url: http://prefect:4200/api\n",
        },
        suites={
            "a": """
            suite: a
            source: {connector: warehouse, table: t}
            checks: [row_count]
            restart:
              - dagster: {connector: dagster, job: forecasts_agg, run_config: {ops: {}}}
              - dagster: {connector: prefect, job: forecasts_agg}
              - dagster: {connector: nowhere, job: forecasts_agg}
              - dagster: {connector: dagster, job: forecasts_agg, repository: __repository__}
            """,
        },
    )
    project = load_project(tmp_path, env={"DAGSTER_CLOUD_API_TOKEN": "user:secret"})
    assert [str(issue) for issue in project.issues] == [
        f"{tmp_path}/checks/a.yml:6:26: restart[1].dagster.connector: "
        "'prefect' is of type prefect; expected a connector of type dagster",
        f"{tmp_path}/checks/a.yml:7:26: restart[2].dagster.connector: "
        "'nowhere' is not a connector profile; expected a connector of type dagster",
        f"{tmp_path}/checks/a.yml:8:14: restart[3].dagster: "
        "expected both repository_location: and repository:, or neither",
    ]


def test_target_for_builds_the_dagster_target(tmp_path: Path) -> None:
    make_project(
        tmp_path,
        connectors={"warehouse": "type: sql\nurl: sqlite:///warehouse.db\n", "dagster": DAGSTER},
        suites={
            "a": """
            suite: a
            source: {connector: warehouse, table: t}
            checks: [row_count]
            restart:
              - dagster: {connector: dagster, job: forecasts_agg}
            """,
        },
    )
    project = load_project(tmp_path, env={"DAGSTER_CLOUD_API_TOKEN": "user:secret"})
    assert project.issues == ()
    suite = project.suites["a"]
    assert suite.restart[0].label == "dagster job forecasts_agg"
    target = target_for(project, suite, 0)
    assert isinstance(target, DagsterTarget)
    assert target.label == suite.restart[0].label
