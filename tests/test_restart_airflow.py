"""The Airflow restart target, driven over HTTP against the Airflow 3 API emulator."""

from __future__ import annotations

import hashlib
import socket
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest
import requests

from dq_agent.config.models import AirflowConnector, AirflowRestart
from dq_agent.restart.airflow import AirflowTarget, dag_run_id_for
from dq_agent.restart.base import PipelineRun, RestartError
from dq_agent_sandbox.airflow import AirflowEmulator
from dq_agent_sandbox.http import LoopbackServer
from dq_agent_sandbox.runner import demo_seed, start_sandbox

NOW = 1764000000.0  # 2025-11-24T16:00:00Z
TOKEN = "test-airflow-token"
DAG = "forecasts_agg"
TASKS = ["extract", "build", "publish"]
CLEAR_PATH = f"/api/v2/dags/{DAG}/clearTaskInstances"


class Clock:
    def __init__(self) -> None:
        self.at = NOW

    def __call__(self) -> float:
        return self.at


@pytest.fixture(scope="module")
def clock() -> Clock:
    return Clock()


@pytest.fixture(scope="module")
def server(clock: Clock) -> Iterator[LoopbackServer]:
    emulator = AirflowEmulator(token=TOKEN, username="ops", password="s3cret", clock=clock)
    with LoopbackServer(emulator) as server:
        yield server


@pytest.fixture
def emulator(server: LoopbackServer, clock: Clock) -> AirflowEmulator:
    emulator = server.emulator
    assert isinstance(emulator, AirflowEmulator)
    emulator.reset()
    clock.at = NOW
    emulator.seed({"dags": {DAG: {"tasks": TASKS, "duration_s": 60}}})
    return emulator


@pytest.fixture
def session() -> Iterator[requests.Session]:
    with requests.Session() as session:
        session.trust_env = False  # loopback only: no proxies from the environment
        yield session


def _target(
    server: LoopbackServer,
    session: requests.Session,
    *,
    dag_id: str = DAG,
    mode: str = "trigger",
    task_ids: list[str] | None = None,
    conf: dict[str, Any] | None = None,
    credentials: dict[str, str] | None = None,
    sleeps: list[float] | None = None,
    base_url: str | None = None,
) -> AirflowTarget:
    connector = AirflowConnector.model_validate(
        {
            "type": "airflow",
            "base_url": base_url or server.base_url,
            **(credentials or {"token": TOKEN}),
        }
    )
    spec = AirflowRestart.model_validate(
        {
            "connector": "airflow",
            "dag_id": dag_id,
            "mode": mode,
            "conf": conf or {},
            "task_ids": task_ids or [],
        }
    )
    naps = sleeps if sleeps is not None else []
    return AirflowTarget(connector, spec, session=session, sleep=naps.append)


def _url(server: LoopbackServer, run_id: str) -> str:
    return f"{server.base_url}/dags/{DAG}/runs/{run_id}"


def _tis(emulator: AirflowEmulator, run_id: str) -> list[tuple[str, str | None, int]]:
    (run,) = [r for r in emulator.state()["dag_runs"] if r["dag_run_id"] == run_id]
    return [(ti["task_id"], ti["state"], ti["try_number"]) for ti in run["task_instances"]]


def _failed_run(
    emulator: AirflowEmulator, server: LoopbackServer, session: requests.Session, clock: Clock
) -> PipelineRun:
    """A run of the DAG that failed at ``build``, the clock just past its end."""
    emulator.set_fail(DAG, True, task_id="build")
    run = _target(server, session).start("first")
    clock.at = NOW + 61
    return run


# --------------------------------------------------------------------------- trigger


def test_trigger_follows_the_run_from_queued_to_success(
    emulator: AirflowEmulator, server: LoopbackServer, session: requests.Session, clock: Clock
) -> None:
    target = _target(server, session, conf={"region": "US"})
    assert target.label == "airflow DAG forecasts_agg"

    run = target.start("incident-7")

    run_id = "dq_agent__incident-7"
    assert run == PipelineRun(run_id, "queued", "triggered", _url(server, run_id))
    (sent,) = emulator.requests_for("POST", f"/api/v2/dags/{DAG}/dagRuns")
    assert sent["body"] == {
        "dag_run_id": run_id,
        "logical_date": None,
        "conf": {"region": "US"},
        "note": "restarted by dq-agent",
    }
    assert _tis(emulator, run_id) == [
        ("extract", "queued", 1),
        ("build", None, 0),
        ("publish", None, 0),
    ]

    clock.at = NOW + 0.5
    assert target.poll(run).state == "queued"
    clock.at = NOW + 1
    run = target.poll(run)
    assert (run.state, run.detail) == ("running", "triggered")
    clock.at = NOW + 1 + 25  # each of the three tasks takes 20 s
    assert target.poll(run).state == "running"
    assert _tis(emulator, run_id) == [
        ("extract", "success", 1),
        ("build", "running", 1),
        ("publish", None, 0),
    ]
    clock.at = NOW + 61
    run = target.poll(run)
    assert run == PipelineRun(run_id, "success", "triggered", _url(server, run_id))

    (shown,) = emulator.state()["dag_runs"]
    assert {k: shown[k] for k in ("state", "run_type", "triggered_by", "conf", "note")} == {
        "state": "success",
        "run_type": "manual",
        "triggered_by": "rest_api",
        "conf": {"region": "US"},
        "note": "restarted by dq-agent",
    }
    assert (shown["logical_date"], shown["queued_at"], shown["start_date"], shown["end_date"]) == (
        None,
        "2025-11-24T16:00:00Z",
        "2025-11-24T16:00:01Z",
        "2025-11-24T16:01:01Z",
    )
    assert shown["duration"] == 60.0
    assert _tis(emulator, run_id) == [
        ("extract", "success", 1),
        ("build", "success", 1),
        ("publish", "success", 1),
    ]
    # A finished run is not asked about again.
    reads = len(emulator.requests_for("GET", f"/api/v2/dags/{DAG}/dagRuns/{run_id}"))
    assert target.poll(run) is run
    assert len(emulator.requests_for("GET", f"/api/v2/dags/{DAG}/dagRuns/{run_id}")) == reads


def test_a_second_start_with_the_same_key_follows_the_first_run(
    emulator: AirflowEmulator, server: LoopbackServer, session: requests.Session, clock: Clock
) -> None:
    first = _target(server, session).start("incident-7")
    clock.at = NOW + 5

    again = _target(server, session).start("incident-7")

    run_id = "dq_agent__incident-7"
    assert first == PipelineRun(run_id, "queued", "triggered", _url(server, run_id))
    assert again == PipelineRun(run_id, "running", "already triggered", _url(server, run_id))
    assert [r["dag_run_id"] for r in emulator.state()["dag_runs"]] == [run_id]
    assert len(emulator.requests_for("POST", f"/api/v2/dags/{DAG}/dagRuns")) == 2


def test_run_ids_keep_to_the_characters_airflow_allows(
    emulator: AirflowEmulator, server: LoopbackServer, session: requests.Session
) -> None:
    digest = hashlib.sha256(b"incident 7/try #2").hexdigest()[:12]
    assert dag_run_id_for("incident-7") == "dq_agent__incident-7"
    assert dag_run_id_for("a:b+c~d.e") == "dq_agent__a:b+c~d.e"
    assert dag_run_id_for("incident 7/try #2") == f"dq_agent__incident_7_try__2__{digest}"
    long = dag_run_id_for("k" * 300)
    long_digest = hashlib.sha256(b"k" * 300).hexdigest()[:12]
    assert long == "dq_agent__" + "k" * 226 + "__" + long_digest
    assert len(long) == 250

    run = _target(server, session).start("incident 7/try #2")

    assert run.run_id == f"dq_agent__incident_7_try__2__{digest}"
    assert [r["dag_run_id"] for r in emulator.state()["dag_runs"]] == [run.run_id]


# --------------------------------------------------------------------------- clear


def test_clear_mode_dry_runs_first_then_reruns_the_failed_tasks(
    emulator: AirflowEmulator, server: LoopbackServer, session: requests.Session, clock: Clock
) -> None:
    failed = _failed_run(emulator, server, session, clock)
    assert _tis(emulator, failed.run_id) == [
        ("extract", "success", 1),
        ("build", "failed", 1),
        ("publish", "upstream_failed", 0),
    ]
    emulator.set_fail(DAG, False)  # somebody fixed the data
    target = _target(server, session, mode="clear")

    run = target.start("incident-7")

    run_id = "dq_agent__first"
    assert run == PipelineRun(run_id, "queued", "cleared build, publish", _url(server, run_id))
    listed = emulator.requests_for("GET", f"/api/v2/dags/{DAG}/dagRuns")
    assert [r["query"] for r in listed if r["path"].endswith("/dagRuns")] == [
        {"order_by": ["-run_after"], "limit": ["1"]}
    ]
    assert [r["body"] for r in emulator.requests_for("POST", CLEAR_PATH)] == [
        {"dag_run_id": run_id, "only_failed": True, "reset_dag_runs": True, "dry_run": True},
        {"dag_run_id": run_id, "only_failed": True, "reset_dag_runs": True, "dry_run": False},
    ]
    assert _tis(emulator, run_id) == [
        ("extract", "success", 1),
        ("build", "queued", 2),
        ("publish", None, 0),
    ]

    clock.at = NOW + 62  # queued again at NOW + 61; two tasks of 20 s to go
    assert target.poll(run).state == "running"
    clock.at = NOW + 101.5
    assert target.poll(run).state == "running"
    clock.at = NOW + 102
    run = target.poll(run)
    assert run == PipelineRun(run_id, "success", "cleared build, publish", _url(server, run_id))
    assert _tis(emulator, run_id) == [
        ("extract", "success", 1),
        ("build", "success", 2),
        ("publish", "success", 1),
    ]
    (shown,) = emulator.state()["dag_runs"]
    assert (shown["queued_at"], shown["start_date"], shown["end_date"]) == (
        "2025-11-24T16:01:01Z",
        "2025-11-24T16:01:02Z",
        "2025-11-24T16:01:42Z",
    )


def test_clear_mode_with_task_ids_clears_them_and_what_follows(
    emulator: AirflowEmulator, server: LoopbackServer, session: requests.Session, clock: Clock
) -> None:
    failed = _failed_run(emulator, server, session, clock)
    emulator.set_fail(DAG, False)

    run = _target(server, session, mode="clear", task_ids=["build"]).start("incident-7")

    assert (run.run_id, run.state, run.detail) == (
        failed.run_id,
        "queued",
        "cleared build, publish",
    )
    assert [r["body"] for r in emulator.requests_for("POST", CLEAR_PATH)] == [
        {
            "dag_run_id": failed.run_id,
            "only_failed": True,
            "reset_dag_runs": True,
            "task_ids": ["build"],
            "include_downstream": True,
            "dry_run": dry_run,
        }
        for dry_run in (True, False)
    ]


def test_a_clear_that_still_fails_polls_failed(
    emulator: AirflowEmulator, server: LoopbackServer, session: requests.Session, clock: Clock
) -> None:
    _failed_run(emulator, server, session, clock)  # and the DAG keeps failing
    target = _target(server, session, mode="clear")

    run = target.start("incident-7")
    clock.at = NOW + 102

    assert target.poll(run) == PipelineRun(
        "dq_agent__first",
        "failed",
        "failed tasks: build (upstream_failed: publish)",
        _url(server, "dq_agent__first"),
    )
    assert _tis(emulator, run.run_id) == [
        ("extract", "success", 1),
        ("build", "failed", 2),
        ("publish", "upstream_failed", 0),
    ]


def test_clear_mode_with_nothing_to_clear_fails_for_good(
    emulator: AirflowEmulator, server: LoopbackServer, session: requests.Session, clock: Clock
) -> None:
    target = _target(server, session, mode="clear")
    with pytest.raises(RestartError) as none:
        target.start("incident-7")
    assert (str(none.value), none.value.transient) == (
        "Airflow DAG forecasts_agg has no run to clear",
        False,
    )

    _target(server, session).start("first")
    clock.at = NOW + 61  # it succeeded

    with pytest.raises(RestartError) as nothing:
        target.start("incident-7")

    assert (str(nothing.value), nothing.value.transient) == (
        "Airflow DAG forecasts_agg run dq_agent__first: nothing to clear "
        "(no failed task instances; the run is success)",
        False,
    )
    assert [r["body"]["dry_run"] for r in emulator.requests_for("POST", CLEAR_PATH)] == [True]


def test_clear_mode_follows_a_run_that_is_already_going_again(
    emulator: AirflowEmulator, server: LoopbackServer, session: requests.Session, clock: Clock
) -> None:
    _failed_run(emulator, server, session, clock)
    emulator.set_fail(DAG, False)
    target = _target(server, session, mode="clear")
    target.start("incident-7")
    clock.at = NOW + 70

    retried = target.start("incident-7")  # a retry after an answer that got lost

    assert (retried.state, retried.detail) == ("running", "already running, nothing to clear")
    assert [r["body"]["dry_run"] for r in emulator.requests_for("POST", CLEAR_PATH)] == [
        True,
        False,
        True,
    ]


# --------------------------------------------------------------------------- failures


def test_a_failing_dag_polls_failed_naming_the_failed_task(
    emulator: AirflowEmulator, server: LoopbackServer, session: requests.Session, clock: Clock
) -> None:
    emulator.set_fail(DAG, True, task_id="build")
    target = _target(server, session)
    run = target.start("incident-7")

    clock.at = NOW + 55  # build started at +21 and runs on until the run's time is up
    run = target.poll(run)
    assert run.state == "running"
    assert _tis(emulator, run.run_id) == [
        ("extract", "success", 1),
        ("build", "running", 1),
        ("publish", None, 0),
    ]
    clock.at = NOW + 61
    run = target.poll(run)

    assert run == PipelineRun(
        "dq_agent__incident-7",
        "failed",
        "failed tasks: build (upstream_failed: publish)",
        _url(server, "dq_agent__incident-7"),
    )
    assert emulator.requests_for("GET", f"/api/v2/dags/{DAG}/dagRuns/{run.run_id}/taskInstances")[
        -1
    ]["query"] == {"state": ["failed", "upstream_failed"], "limit": ["100"]}


def test_username_and_password_log_in_once_and_again_when_the_token_expires(
    emulator: AirflowEmulator, server: LoopbackServer, session: requests.Session, clock: Clock
) -> None:
    target = _target(server, session, credentials={"username": "ops", "password": "s3cret"})

    run = target.start("incident-7")
    run = target.poll(run)
    assert [r["body"] for r in emulator.requests_for("POST", "/auth/token")] == [
        {"username": "ops", "password": "s3cret"}
    ]

    emulator.expire_tokens()
    clock.at = NOW + 61
    run = target.poll(run)

    assert run.state == "success"
    assert len(emulator.requests_for("POST", "/auth/token")) == 2
    path = f"/api/v2/dags/{DAG}/dagRuns/dq_agent__incident-7"
    assert len(emulator.requests_for("GET", path)) == 3  # the poll, the expired one, its retry


def test_wrong_credentials_are_a_lasting_error(
    emulator: AirflowEmulator, server: LoopbackServer, session: requests.Session
) -> None:
    login = _target(server, session, credentials={"username": "ops", "password": "guess"})
    with pytest.raises(RestartError) as refused:
        login.start("incident-7")
    assert (str(refused.value), refused.value.transient) == (
        "Airflow DAG forecasts_agg: log in as ops failed: HTTP 401: Invalid credentials",
        False,
    )

    bad_token = _target(server, session, credentials={"token": "not-the-token"})
    with pytest.raises(RestartError) as invalid:
        bad_token.start("incident-7")
    assert (str(invalid.value), invalid.value.transient) == (
        "Airflow DAG forecasts_agg: trigger failed: HTTP 403: Invalid JWT token",
        False,
    )

    emulator.forbid(TOKEN)
    with pytest.raises(RestartError) as forbidden:
        _target(server, session).start("incident-7")
    assert (str(forbidden.value), forbidden.value.transient) == (
        "Airflow DAG forecasts_agg: trigger failed: HTTP 403: Forbidden",
        False,
    )
    assert emulator.state()["dag_runs"] == []


def test_an_unknown_dag_is_a_lasting_error_naming_it(
    emulator: AirflowEmulator, server: LoopbackServer, session: requests.Session
) -> None:
    with pytest.raises(RestartError) as unknown:
        _target(server, session, dag_id="nightly_missing").start("incident-7")

    assert (str(unknown.value), unknown.value.transient) == (
        "Airflow DAG nightly_missing: trigger failed: HTTP 404: "
        "DAG with dag_id: 'nightly_missing' not found",
        False,
    )


def test_server_trouble_is_transient_after_one_more_try(
    emulator: AirflowEmulator, server: LoopbackServer, session: requests.Session
) -> None:
    sleeps: list[float] = []
    emulator.fail_next(503, times=2)

    with pytest.raises(RestartError) as down:
        _target(server, session, sleeps=sleeps).start("incident-7")

    assert (str(down.value), down.value.transient) == (
        "Airflow DAG forecasts_agg: trigger failed: HTTP 503: Service Unavailable",
        True,
    )
    assert sleeps == [1.0]
    assert emulator.state()["dag_runs"] == []


def test_a_rate_limit_is_waited_out_once(
    emulator: AirflowEmulator, server: LoopbackServer, session: requests.Session
) -> None:
    sleeps: list[float] = []
    emulator.fail_next(429, "slow down", retry_after=7)

    run = _target(server, session, sleeps=sleeps).start("incident-7")

    assert (run.run_id, run.state) == ("dq_agent__incident-7", "queued")
    assert sleeps == [7.0]
    emulator.fail_next(429, "slow down", times=2, retry_after=7)
    with pytest.raises(RestartError) as limited:
        _target(server, session, sleeps=sleeps).poll(run)
    assert (str(limited.value), limited.value.transient) == (
        "Airflow DAG forecasts_agg: read run failed: HTTP 429: slow down",
        True,
    )


def test_an_unreachable_airflow_is_transient(
    server: LoopbackServer, session: requests.Session
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    sleeps: list[float] = []
    target = _target(server, session, base_url=f"http://127.0.0.1:{port}", sleeps=sleeps)

    with pytest.raises(RestartError) as unreachable:
        target.start("incident-7")

    assert (str(unreachable.value), unreachable.value.transient) == (
        f"cannot reach Airflow at http://127.0.0.1:{port} (trigger): ConnectionError",
        True,
    )
    assert sleeps == [1.0]


# --------------------------------------------------------------------------- the emulator


def test_the_emulator_answers_as_airflow_does(
    emulator: AirflowEmulator, server: LoopbackServer, session: requests.Session, clock: Clock
) -> None:
    api = f"{server.base_url}/api/v2/dags/{DAG}"
    auth = {"Authorization": f"Bearer {TOKEN}"}

    anonymous = session.get(f"{api}/dagRuns")
    assert (anonymous.status_code, anonymous.json()) == (401, {"detail": "Not authenticated"})
    no_date = session.post(f"{api}/dagRuns", json={"conf": {}}, headers=auth)
    assert (no_date.status_code, no_date.json()) == (
        422,
        {
            "detail": [
                {
                    "type": "missing",
                    "loc": ["body", "logical_date"],
                    "msg": "Field required",
                    "input": {"conf": {}},
                }
            ]
        },
    )
    for index in range(3):
        clock.at = NOW + 100 * index
        made = session.post(
            f"{api}/dagRuns", json={"dag_run_id": f"r{index}", "logical_date": None}, headers=auth
        )
        assert made.status_code == 200
    again = session.post(
        f"{api}/dagRuns", json={"dag_run_id": "r0", "logical_date": None}, headers=auth
    )
    assert (again.status_code, again.json()["detail"]["reason"]) == (
        409,
        "Unique constraint violation",
    )

    latest = session.get(
        f"{api}/dagRuns", params={"order_by": "-run_after", "limit": 2, "offset": 1}, headers=auth
    ).json()
    assert ([r["dag_run_id"] for r in latest["dag_runs"]], latest["total_entries"]) == (
        ["r1", "r0"],
        3,
    )
    clock.at = NOW + 230  # r0 and r1 are done, r2 is 29 s into its tasks
    running = session.get(f"{api}/dagRuns", params={"state": "running"}, headers=auth).json()
    assert [r["dag_run_id"] for r in running["dag_runs"]] == ["r2"]
    tis = session.get(f"{api}/dagRuns/r2/taskInstances", headers=auth).json()
    assert ([ti["state"] for ti in tis["task_instances"]], tis["total_entries"]) == (
        ["success", "running", None],
        3,
    )
    # Airflow's clear defaults to a dry run of the failed task instances.
    clear = session.post(f"{api}/clearTaskInstances", json={"dag_run_id": "r0"}, headers=auth)
    assert clear.json() == {"task_instances": [], "total_entries": 0}
    missing = session.get(f"{api}/dagRuns/nope", headers=auth)
    assert (missing.status_code, missing.json()) == (
        404,
        {"detail": f"The DagRun with dag_id: `{DAG}` and run_id: `nope` was not found"},
    )


def test_the_sandbox_serves_airflow_with_the_demo_dag() -> None:
    now = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
    with start_sandbox(demo_seed(now)) as sandbox, requests.Session() as session:
        session.trust_env = False
        info = sandbox.info["airflow"]
        base_url = sandbox.servers["airflow"].base_url
        assert info == {
            "base_url": base_url,
            "token": "sandbox-airflow-token",
            "username": "admin",
            "password": "admin",
        }
        emulator = sandbox.servers["airflow"].emulator
        assert isinstance(emulator, AirflowEmulator)
        assert emulator.state()["dags"] == {
            "forecasts_agg": {
                "tasks": ["load_forecasts", "aggregate", "publish"],
                "duration_s": 90.0,
                "fail": False,
                "fail_task": "aggregate",
            },
            "revenue_daily": {
                "tasks": ["aggregate", "publish"],
                "duration_s": 60.0,
                "fail": False,
                "fail_task": "publish",
            },
        }
        connector = AirflowConnector.model_validate(
            {"type": "airflow", "base_url": base_url, "username": "admin", "password": "admin"}
        )
        spec = AirflowRestart(connector="airflow", dag_id="forecasts_agg")
        run = AirflowTarget(connector, spec, session=session).start("demo")
        assert (run.run_id, run.state) == ("dq_agent__demo", "queued")


def test_basic_auth_sends_the_credentials_on_every_request(
    emulator: AirflowEmulator, server: LoopbackServer, session: requests.Session, clock: Clock
) -> None:
    emulator.username, emulator.password = "ops", "s3cret"
    basic = {"username": "ops", "password": "s3cret", "auth": "basic"}
    run = _target(server, session, credentials=basic).start("incident-9")
    assert run.state == "queued"
    assert emulator.requests_for("POST", "/auth/token") == []  # no token exchange
    wrong = _target(server, session, credentials={**basic, "password": "guess"})
    with pytest.raises(RestartError) as refused:
        wrong.start("incident-10")
    assert refused.value.transient is False
    assert "HTTP 401: Invalid credentials" in str(refused.value)


@pytest.mark.parametrize(
    ("header", "slept"),
    [
        ("nan", 1.0),  # time.sleep(nan) would raise: the default wait instead
        ("inf", 1.0),
        ("-5", 1.0),
        ("soon", 1.0),
        ("86400", 30.0),  # a day: capped at the longest wait in place
    ],
)
def test_a_retry_after_that_is_no_wait_gets_the_default_or_the_cap(
    emulator: AirflowEmulator,
    server: LoopbackServer,
    session: requests.Session,
    header: str,
    slept: float,
) -> None:
    sleeps: list[float] = []
    emulator.fail_next(429, "slow down", retry_after=header)

    run = _target(server, session, sleeps=sleeps).start("incident-7")

    assert (run.run_id, run.state) == ("dq_agent__incident-7", "queued")
    assert sleeps == [slept]


def test_a_retry_after_date_is_waited_until(
    emulator: AirflowEmulator, server: LoopbackServer, session: requests.Session
) -> None:
    sleeps: list[float] = []
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=20), usegmt=True)
    emulator.fail_next(503, retry_after=later)

    _target(server, session, sleeps=sleeps).start("incident-7")

    [slept] = sleeps
    assert 17.0 <= slept <= 20.0
