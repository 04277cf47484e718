"""The Prefect restart target: Prefect's own client over HTTP against the Prefect API emulator."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from dq_agent.config import load_project
from dq_agent.config.models import PrefectConnector, PrefectRestart
from dq_agent.restart.base import PipelineRun, RestartError
from dq_agent.restart.prefect import PrefectTarget
from dq_agent.restart.runner import target_for
from dq_agent_sandbox.http import LoopbackServer
from dq_agent_sandbox.prefect import PICKUP_DELAY_S, PrefectEmulator
from tests.helpers import make_project

NOW = 1764000000.0  # 2025-11-24T16:00:00Z
KEY = "pnu_test_key"
DEPLOYMENT = "etl/daily"
RESTART_KEY = "orders:17:0"


class Clock:
    def __init__(self) -> None:
        self.at = NOW

    def __call__(self) -> float:
        return self.at


@pytest.fixture(autouse=True)
def no_waiting(monkeypatch: pytest.MonkeyPatch) -> None:
    """Prefect's client sleeps before its retries: with none configured, it must never wait."""

    def forbidden(seconds: float) -> None:
        raise AssertionError(f"time.sleep({seconds}) called")

    monkeypatch.setattr(time, "sleep", forbidden)


@pytest.fixture(scope="module")
def clock() -> Clock:
    return Clock()


@pytest.fixture(scope="module")
def server(clock: Clock) -> Iterator[LoopbackServer]:
    with LoopbackServer(PrefectEmulator(api_key=KEY, clock=clock)) as server:
        yield server


@pytest.fixture
def emulator(server: LoopbackServer, clock: Clock) -> PrefectEmulator:
    emulator = server.emulator
    assert isinstance(emulator, PrefectEmulator)
    emulator.reset()
    emulator.forget_fields()
    clock.at = NOW
    emulator.seed(
        {
            "deployments": {
                DEPLOYMENT: {"parameters": {"region": "US", "full": False}, "duration_s": 60},
                "etl/hourly": {"outcome": "failed", "message": "KeyError: 'forecast'"},
            }
        }
    )
    return emulator


def _target(
    server: LoopbackServer,
    *,
    deployment: str = DEPLOYMENT,
    api_key: str | None = KEY,
    parameters: dict[str, Any] | None = None,
    api_url: str | None = None,
) -> PrefectTarget:
    connector = PrefectConnector.model_validate(
        {"type": "prefect", "api_url": api_url or f"{server.base_url}/api", "api_key": api_key}
    )
    spec = PrefectRestart(
        connector="prefect", deployment=deployment, parameters=parameters or {"full": True}
    )
    return PrefectTarget(connector, spec, suite="orders")


def _runs(emulator: PrefectEmulator) -> list[dict[str, Any]]:
    return list(emulator.state()["flow_runs"])


def test_a_flow_run_is_created_with_the_key_and_followed_to_completed(
    emulator: PrefectEmulator, server: LoopbackServer, clock: Clock
) -> None:
    target = _target(server)
    assert target.label == "prefect deployment etl/daily"

    run = target.start(RESTART_KEY)

    (flow_run,) = _runs(emulator)
    assert run == PipelineRun(
        flow_run["id"], "queued", "Scheduled", f"{server.base_url}/runs/flow-run/{flow_run['id']}"
    )
    (read,) = emulator.requests_for("GET", "/deployments/")
    assert read["path"] == "/deployments/name/etl/daily"
    (create,) = emulator.requests_for("POST")
    deployment_id = emulator.state()["deployments"][DEPLOYMENT]["id"]
    assert create["path"] == f"/deployments/{deployment_id}/create_flow_run"
    assert create["body"]["idempotency_key"] == RESTART_KEY
    assert create["body"]["parameters"] == {"full": True}
    assert create["body"]["tags"] == ["dq-agent"]
    assert create["body"]["state"]["type"] == "SCHEDULED"
    assert all(
        r["headers"]["authorization"] == f"Bearer {KEY}" for r in emulator.requests_for("GET")
    )
    # The deployment's defaults, overridden by the restart's parameters.
    assert flow_run["parameters"] == {"region": "US", "full": True}

    clock.at = NOW + PICKUP_DELAY_S
    assert target.poll(run) == run.moved("queued", "Pending")
    clock.at = NOW + 2
    assert target.poll(run) == run.moved("running", "Running")
    clock.at = NOW + 62
    done = target.poll(run)
    assert (done.state, done.detail) == ("success", "Completed")
    asked = len(emulator.requests_for("GET"))
    assert target.poll(done) is done  # a finished run is not asked about again
    assert len(emulator.requests_for("GET")) == asked


def test_a_retried_start_follows_the_run_the_first_one_created(
    emulator: PrefectEmulator, server: LoopbackServer
) -> None:
    # The create reached Prefect, but its answer was lost on the way back.
    emulator.drop_next_answer()
    with pytest.raises(RestartError, match="cannot reach Prefect at") as caught:
        _target(server).start(RESTART_KEY)
    assert caught.value.transient is True
    assert len(_runs(emulator)) == 1

    # The agent tries again later (or after a restart of its own), with the same key.
    again = _target(server).start(RESTART_KEY)
    other = _target(server).start("orders:18:0")

    first, second = _runs(emulator)
    assert again.run_id == first["id"]
    assert other.run_id == second["id"]
    assert [r["body"]["idempotency_key"] for r in emulator.requests_for("POST")] == [
        RESTART_KEY,
        RESTART_KEY,
        "orders:18:0",
    ]


@pytest.mark.parametrize(
    ("outcome", "detail"),
    [
        ("failed", "Failed: Flow run encountered an exception: KeyError: 'forecast'"),
        ("crashed", "Crashed: Flow run infrastructure exited with non-zero status code 137."),
        ("cancelled", "Cancelled: Flow run was cancelled."),
    ],
)
def test_failed_crashed_and_cancelled_runs_fail_with_prefects_message(
    emulator: PrefectEmulator, server: LoopbackServer, clock: Clock, outcome: str, detail: str
) -> None:
    message = (
        "Flow run encountered an exception: KeyError: 'forecast'" if outcome == "failed" else None
    )
    emulator.set_outcome(DEPLOYMENT, outcome, message)
    target = _target(server)
    run = target.start(RESTART_KEY)
    clock.at = NOW + 62
    done = target.poll(run)
    assert (done.state, done.detail) == ("failed", detail)


def test_a_deployment_can_be_named_by_its_id(
    emulator: PrefectEmulator, server: LoopbackServer
) -> None:
    deployment_id = emulator.state()["deployments"]["etl/hourly"]["id"]
    run = _target(server, deployment=deployment_id).start(RESTART_KEY)
    (read,) = emulator.requests_for("GET", "/deployments/")
    assert read["path"] == f"/deployments/{deployment_id}"
    assert _runs(emulator)[0]["deployment_id"] == deployment_id
    assert run.state == "queued"


def test_an_unknown_deployment_is_a_clear_error_that_will_not_pass(
    emulator: PrefectEmulator, server: LoopbackServer
) -> None:
    with pytest.raises(RestartError) as caught:
        _target(server, deployment="etl/weekly").start(RESTART_KEY)
    assert str(caught.value) == (
        "prefect deployment etl/weekly (suite orders): "
        "Prefect has no deployment 'etl/weekly' (Deployment not found)"
    )
    assert caught.value.transient is False
    assert _runs(emulator) == []


def test_service_unavailable_is_transient_and_the_client_does_not_retry_by_itself(
    emulator: PrefectEmulator, server: LoopbackServer
) -> None:
    emulator.fail_next(503, retry_after="30")
    with pytest.raises(RestartError) as caught:
        _target(server).start(RESTART_KEY)
    assert str(caught.value) == (
        "prefect deployment etl/daily (suite orders): create a flow run failed: "
        "HTTP 503: Service Unavailable"
    )
    assert caught.value.transient is True
    assert len(emulator.requests_for("GET")) == 1  # one try: the agent's schedule retries

    run = _target(server).start(RESTART_KEY)
    emulator.fail_next(429)
    with pytest.raises(RestartError, match="HTTP 429: Too Many Requests") as caught:
        _target(server).poll(run)
    assert caught.value.transient is True


def test_refusals_will_not_pass(emulator: PrefectEmulator, server: LoopbackServer) -> None:
    with pytest.raises(RestartError) as caught:
        _target(server, api_key="pnu_wrong").start(RESTART_KEY)
    assert str(caught.value).endswith(
        "create a flow run failed: HTTP 401: Invalid authentication credentials"
    )
    assert caught.value.transient is False

    # A server older than the client does not know every field the client sends.
    emulator.forget_fields("labels")
    with pytest.raises(RestartError) as caught:
        _target(server).start(RESTART_KEY)
    assert str(caught.value).endswith(
        "create a flow run failed: HTTP 422: body.labels: Extra inputs are not permitted"
    )
    assert caught.value.transient is False


def test_a_flow_run_that_is_gone_fails_the_restart(
    emulator: PrefectEmulator, server: LoopbackServer
) -> None:
    gone = PipelineRun("7b0f9a40-1111-4c2e-8d3f-0a9b8c7d6e5f", "running")
    with pytest.raises(RestartError, match="flow run 7b0f9a40-.* no longer exists") as caught:
        _target(server).poll(gone)
    assert caught.value.transient is False


def test_an_unreachable_server_is_transient(emulator: PrefectEmulator) -> None:
    with socket.socket() as probe:  # nothing listens on a port just released
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    target = _target(None, api_url=f"http://127.0.0.1:{port}/api")  # type: ignore[arg-type]
    with pytest.raises(RestartError, match=r"cannot reach Prefect at http://127\.0\.0\.1:\d+/api"):
        target.start(RESTART_KEY)


def test_no_analytics_and_nothing_but_the_api(
    emulator: PrefectEmulator, server: LoopbackServer
) -> None:
    _target(server).start(RESTART_KEY)
    from prefect._internal.analytics import is_telemetry_enabled
    from prefect._internal.analytics.service import AnalyticsService

    assert os.environ["DO_NOT_TRACK"] == "1"
    assert is_telemetry_enabled() is False
    assert AnalyticsService._instance is None  # no event was ever queued
    # Every request went to the configured API (the CSRF probe included), under /api.
    paths = [r["path"] for r in emulator.requests_for("GET") + emulator.requests_for("POST")]
    assert sorted(paths) == sorted(
        [
            "/deployments/name/etl/daily",
            "/csrf-token",
            f"/deployments/{emulator.state()['deployments'][DEPLOYMENT]['id']}/create_flow_run",
        ]
    )


def test_the_emulator_answers_errors_in_prefects_shapes(
    emulator: PrefectEmulator, server: LoopbackServer
) -> None:
    api = f"{server.base_url}/api"
    headers = {"Authorization": f"Bearer {KEY}"}
    with requests.Session() as http:
        http.trust_env = False
        missing = http.get(f"{api}/deployments/name/etl/nope", headers=headers)
        assert (missing.status_code, missing.json()) == (404, {"detail": "Deployment not found"})
        bad_id = http.get(f"{api}/flow_runs/not-a-uuid", headers=headers)
        assert bad_id.status_code == 422
        assert bad_id.json()["exception_message"] == "Invalid request received."
        assert bad_id.json()["exception_detail"][0]["loc"] == ["path", "id"]
        deployment_id = emulator.state()["deployments"][DEPLOYMENT]["id"]
        create = f"{api}/deployments/{deployment_id}/create_flow_run"
        bad_body = http.post(create, json={"parameters": [1]}, headers=headers)
        assert bad_body.status_code == 422
        assert bad_body.json()["exception_detail"][0]["msg"] == "Input should be a valid dictionary"
        first = http.post(create, json={"idempotency_key": "k"}, headers=headers)
        again = http.post(create, json={"idempotency_key": "k"}, headers=headers)
        assert (first.status_code, again.status_code) == (201, 200)
        assert first.json()["id"] == again.json()["id"]
        assert http.get(f"{api}/health").status_code == 401  # the key is needed everywhere


# --------------------------------------------------------------------------- configuration


PREFECT = "type: prefect\napi_url: https://api.prefect.cloud/api/accounts/a1/workspaces/w1\napi_key: ${PREFECT_API_KEY}\n"


def test_the_restart_entry_and_its_connector_are_validated(tmp_path: Path) -> None:
    make_project(
        tmp_path,
        connectors={
            "warehouse": "type: sql\nurl: sqlite:///warehouse.db\n",
            "prefect": PREFECT,
            "hook": "type: webhook\nurl: http://hook\n",
        },
        suites={
            "a": """
            suite: a
            source: {connector: warehouse, table: t}
            checks: [row_count]
            restart:
              - prefect: {connector: prefect, deployment: etl/daily, parameters: {full: true}}
              - prefect: {connector: hook, deployment: etl/daily}
              - prefect: {connector: nowhere, deployment: etl/daily}
              - prefect: {connector: prefect, deployment: daily}
            """,
        },
    )
    project = load_project(tmp_path, env={"PREFECT_API_KEY": "pnu_secret"})
    assert [str(issue) for issue in project.issues] == [
        f"{tmp_path}/checks/a.yml:6:26: restart[1].prefect.connector: "
        "'hook' is of type webhook; expected a connector of type prefect",
        f"{tmp_path}/checks/a.yml:7:26: restart[2].prefect.connector: "
        "'nowhere' is not a connector profile; expected a connector of type prefect",
        f"{tmp_path}/checks/a.yml:8:47: restart[3].prefect.deployment: "
        "expected flow-name/deployment-name or a deployment id, got 'daily'",
    ]


def test_target_for_builds_the_prefect_target(tmp_path: Path) -> None:
    make_project(
        tmp_path,
        connectors={"warehouse": "type: sql\nurl: sqlite:///warehouse.db\n", "prefect": PREFECT},
        suites={
            "a": """
            suite: a
            source: {connector: warehouse, table: t}
            checks: [row_count]
            restart:
              - prefect: {connector: prefect, deployment: etl/daily}
            """,
        },
    )
    project = load_project(tmp_path, env={"PREFECT_API_KEY": "pnu_secret"})
    assert project.issues == ()
    suite = project.suites["a"]
    assert suite.restart[0].label == "prefect deployment etl/daily"
    target = target_for(project, suite, 0)
    assert isinstance(target, PrefectTarget)
    assert target.label == suite.restart[0].label
