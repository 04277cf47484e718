"""The ``airflow_asset`` restart target, driven over HTTP against the Airflow 3 API emulator:
an asset event, and the runs Airflow's scheduler starts for the DAGs scheduled on the asset."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import requests

from dq_agent.agent import Cycle, run_cycle, tick
from dq_agent.config import load_project
from dq_agent.config.models import AirflowAssetRestart, AirflowConnector
from dq_agent.engine import RunOptions
from dq_agent.restart.airflow import AirflowAssetTarget
from dq_agent.restart.base import PipelineRun, RestartError
from dq_agent.store import Store
from dq_agent_sandbox.airflow import AirflowEmulator
from dq_agent_sandbox.http import LoopbackServer
from tests.helpers import make_project
from tests.sources import NOW as AGENT_NOW
from tests.sources import load_orders, order_rows

NOW = 1764000000.0  # 2025-11-24T16:00:00Z, the emulator's clock
TOKEN = "test-airflow-token"
ORDERS_URI = "postgres://warehouse:5432/analytics/public/orders"
EVENTS = "/api/v2/assets/events"


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
    with LoopbackServer(AirflowEmulator(token=TOKEN, clock=clock)) as server:
        yield server


@pytest.fixture
def emulator(server: LoopbackServer, clock: Clock) -> AirflowEmulator:
    emulator = server.emulator
    assert isinstance(emulator, AirflowEmulator)
    emulator.reset()
    clock.at = NOW
    emulator.seed(
        {
            "dags": {
                "forecasts_agg": {"tasks": ["load", "aggregate", "publish"], "duration_s": 60},
                "revenue_daily": {"tasks": ["aggregate", "publish"], "duration_s": 30},
                "churn_model": {"tasks": ["train"], "duration_s": 10},
            },
            "assets": [
                {
                    "name": "warehouse.orders",
                    "uri": ORDERS_URI,
                    "scheduled_dags": ["forecasts_agg", "revenue_daily"],
                },
                {"name": "warehouse.orders_archive", "uri": ORDERS_URI + "_archive"},
                {"name": "warehouse.customers", "scheduled_dags": ["churn_model"]},
                {"name": "warehouse.events", "scheduled_dags": ["churn_model"]},
            ],
        }
    )
    return emulator


@pytest.fixture
def session() -> Iterator[requests.Session]:
    with requests.Session() as session:
        session.trust_env = False  # loopback only: no proxies from the environment
        yield session


def _target(server: LoopbackServer, session: requests.Session, asset: str) -> AirflowAssetTarget:
    connector = AirflowConnector.model_validate(
        {"type": "airflow", "base_url": server.base_url, "token": TOKEN}
    )
    spec = AirflowAssetRestart(connector="airflow", asset=asset)
    return AirflowAssetTarget(connector, spec, session=session, sleep=lambda _: None)


def _runs(emulator: AirflowEmulator) -> list[tuple[str, str, str, str]]:
    return [
        (r["dag_id"], r["run_type"], r["triggered_by"], r["state"])
        for r in emulator.state()["dag_runs"]
    ]


# --------------------------------------------------------------------------- the target


def test_an_event_runs_both_dags_scheduled_on_the_asset_and_succeeds_when_both_do(
    emulator: AirflowEmulator, server: LoopbackServer, session: requests.Session, clock: Clock
) -> None:
    target = _target(server, session, "warehouse.orders")
    assert target.label == "airflow asset warehouse.orders"

    run = target.start("incident-7")

    url = f"{server.base_url}/assets/1"
    assert run == PipelineRun(
        "1",
        "queued",
        "asset event 1 sent; waiting for Airflow to start forecasts_agg, revenue_daily",
        url,
    )
    # Found by name: no URI is "warehouse.orders"; the archive's name only contains it.
    found = emulator.requests_for("GET", "/api/v2/assets")
    assert [r["query"] for r in found if r["path"] == "/api/v2/assets"] == [
        {"uri_pattern": ["warehouse.orders"], "limit": ["100"], "offset": ["0"]},
        {"name_pattern": ["warehouse.orders"], "limit": ["100"], "offset": ["0"]},
    ]
    [sent] = emulator.requests_for("POST", EVENTS)
    assert sent["body"] == {"asset_id": 1, "extra": {"dq_agent_restart_key": "incident-7"}}
    assert _runs(emulator) == []

    clock.at = NOW + 1  # the scheduler's next loop creates the runs, queued
    run = target.poll(run)
    assert (run.state, run.detail) == ("queued", "forecasts_agg queued, revenue_daily queued")
    clock.at = NOW + 2
    assert target.poll(run).detail == "forecasts_agg running, revenue_daily running"
    clock.at = NOW + 40  # revenue_daily took 30 s
    run = target.poll(run)
    assert (run.state, run.detail) == ("running", "forecasts_agg running, revenue_daily success")
    clock.at = NOW + 62
    run = target.poll(run)

    assert run == PipelineRun("1", "success", "forecasts_agg, revenue_daily succeeded", url)
    assert _runs(emulator) == [
        ("forecasts_agg", "asset_triggered", "asset", "success"),
        ("revenue_daily", "asset_triggered", "asset", "success"),
    ]
    [event] = emulator.state()["asset_events"]
    assert event["extra"] == {"dq_agent_restart_key": "incident-7", "from_rest_api": True}
    assert [(r["dag_id"], r["run_id"]) for r in event["created_dagruns"]] == [
        ("forecasts_agg", "asset_triggered__2025-11-24T16:00:01+00:00"),
        ("revenue_daily", "asset_triggered__2025-11-24T16:00:01+00:00"),
    ]


def test_an_asset_is_found_by_its_uri_first(
    emulator: AirflowEmulator, server: LoopbackServer, session: requests.Session
) -> None:
    run = _target(server, session, ORDERS_URI).start("incident-7")

    assert run.url == f"{server.base_url}/assets/1"
    found = emulator.requests_for("GET", "/api/v2/assets")
    assert [r["query"] for r in found if r["path"] == "/api/v2/assets"] == [
        {"uri_pattern": [ORDERS_URI], "limit": ["100"], "offset": ["0"]}
    ]


def test_a_retried_start_with_the_same_key_sends_no_second_event(
    emulator: AirflowEmulator, server: LoopbackServer, session: requests.Session, clock: Clock
) -> None:
    first = _target(server, session, "warehouse.orders").start("incident-7")
    clock.at = NOW + 5  # the answer was lost; the agent tries again later, afresh

    again = _target(server, session, "warehouse.orders").start("incident-7")

    assert first.run_id == again.run_id == "1"
    assert (again.state, again.detail) == (
        "running",
        "asset event 1 already sent; forecasts_agg running, revenue_daily running",
    )
    assert len(emulator.requests_for("POST", EVENTS)) == 1
    assert len(emulator.state()["dag_runs"]) == 2
    # The next recovery is another restart, with another key: another event.
    assert _target(server, session, "warehouse.orders").start("incident-8").run_id == "2"


def test_one_failing_dag_fails_the_restart_naming_it(
    emulator: AirflowEmulator, server: LoopbackServer, session: requests.Session, clock: Clock
) -> None:
    emulator.set_fail("revenue_daily", True, task_id="publish")
    target = _target(server, session, "warehouse.orders")
    run = target.start("incident-7")

    clock.at = NOW + 40  # revenue_daily failed; forecasts_agg still runs: wait for it
    run = target.poll(run)
    assert (run.state, run.detail) == ("running", "forecasts_agg running, revenue_daily failed")
    clock.at = NOW + 62
    run = target.poll(run)

    assert (run.state, run.detail) == ("failed", "DAG revenue_daily failed (failed tasks: publish)")
    assert _runs(emulator) == [
        ("forecasts_agg", "asset_triggered", "asset", "success"),
        ("revenue_daily", "asset_triggered", "asset", "failed"),
    ]


def test_an_unknown_asset_is_a_lasting_error_naming_it(
    emulator: AirflowEmulator, server: LoopbackServer, session: requests.Session
) -> None:
    with pytest.raises(RestartError) as unknown:
        _target(server, session, "warehouse.order").start("incident-7")

    assert (str(unknown.value), unknown.value.transient) == (
        "Airflow has no asset with the URI or name 'warehouse.order'",
        False,
    )
    assert emulator.requests_for("POST", EVENTS) == []


def test_an_asset_no_dag_is_scheduled_on_succeeds_at_once_saying_so(
    emulator: AirflowEmulator, server: LoopbackServer, session: requests.Session
) -> None:
    run = _target(server, session, "warehouse.orders_archive").start("incident-7")

    assert run == PipelineRun(
        "1",
        "success",
        "asset event 1 sent; no DAG is scheduled on the asset: there is nothing to run",
        f"{server.base_url}/assets/2",
    )
    assert emulator.state()["dag_runs"] == []


def test_a_dag_that_also_waits_for_another_asset_is_waited_for(
    emulator: AirflowEmulator, server: LoopbackServer, session: requests.Session, clock: Clock
) -> None:
    """churn_model is scheduled on customers and events: Airflow starts it once both have news."""
    target = _target(server, session, "warehouse.customers")
    run = target.start("incident-7")
    for second in range(1, 200, 10):
        clock.at = NOW + second
        run = target.poll(run)
        assert (run.state, run.detail) == ("queued", "waiting for Airflow to start churn_model")

    _target(server, session, "warehouse.events").start("other-producer")
    clock.at = NOW + 201 + 1 + 10
    run = target.poll(run)

    assert (run.state, run.detail) == ("success", "churn_model succeeded")
    [(dag_id, _, _, _)] = _runs(emulator)
    assert dag_id == "churn_model"


def test_the_asset_is_looked_up_on_every_page(
    emulator: AirflowEmulator, server: LoopbackServer, session: requests.Session
) -> None:
    # 151 URIs contain "s3://lake/orders_" (its "_" matches any character): the one that is
    # exactly that comes last, on the second page.
    parts = [{"uri": f"s3://lake/orders_{i:03}"} for i in range(150)]
    emulator.seed({"assets": [*parts, {"uri": "s3://lake/orders_"}]})

    run = _target(server, session, "s3://lake/orders_").start("incident-7")

    assert run.url == f"{server.base_url}/assets/155"  # after the four seeded first
    found = emulator.requests_for("GET", "/api/v2/assets")
    assert [r["query"]["offset"] for r in found if r["path"] == "/api/v2/assets"] == [
        ["0"],
        ["100"],
    ]


class LosingSession(requests.Session):
    """Delivers the next asset event to Airflow, then loses its answer, as a dropped
    connection would."""

    lose = True

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> Any:
        response = super().request(method, url, *args, **kwargs)
        if method == "POST" and str(url).endswith("/assets/events") and self.lose:
            self.lose = False
            raise requests.ConnectionError("connection reset by peer")
        return response


def test_a_lost_answer_to_the_event_is_transient_and_the_retry_finds_the_event(
    emulator: AirflowEmulator, server: LoopbackServer
) -> None:
    with LosingSession() as session:
        session.trust_env = False
        target = _target(server, session, "warehouse.orders")
        with pytest.raises(RestartError) as lost:
            target.start("incident-7")
        assert (str(lost.value), lost.value.transient) == (
            f"cannot reach Airflow at {server.base_url} (send event): ConnectionError",
            True,
        )
        assert len(emulator.requests_for("POST", EVENTS)) == 1  # not sent again at once

        retried = target.start("incident-7")

    assert (retried.run_id, retried.detail) == (
        "1",
        "asset event 1 already sent; waiting for Airflow to start forecasts_agg, revenue_daily",
    )
    assert len(emulator.requests_for("POST", EVENTS)) == 1


def test_airflow_trouble_while_reading_is_transient_after_one_more_try(
    emulator: AirflowEmulator, server: LoopbackServer, session: requests.Session
) -> None:
    target = _target(server, session, "warehouse.orders")
    run = target.start("incident-7")
    emulator.fail_next(503, times=2)

    with pytest.raises(RestartError) as down:
        target.poll(run)

    assert (str(down.value), down.value.transient) == (
        "Airflow asset warehouse.orders: read events failed: HTTP 503: Service Unavailable",
        True,
    )


# --------------------------------------------------------------------------- the emulator


def test_the_emulator_lists_assets_and_events_as_airflow_does(
    emulator: AirflowEmulator, server: LoopbackServer, session: requests.Session, clock: Clock
) -> None:
    api = f"{server.base_url}/api/v2"
    auth = {"Authorization": f"Bearer {TOKEN}"}

    def names(**params: Any) -> list[str]:
        listed = session.get(f"{api}/assets", params=params, headers=auth).json()
        assert listed["total_entries"] >= len(listed["assets"])
        return [a["name"] for a in listed["assets"]]

    # ILIKE '%pattern%': "_" is any one character, "%" any run, "|" splits, "~" is all.
    assert names(name_pattern="ORDERS") == ["warehouse.orders", "warehouse.orders_archive"]
    assert names(name_pattern="warehouse_customers") == ["warehouse.customers"]
    assert names(name_pattern="cust%ers | events") == ["warehouse.customers", "warehouse.events"]
    assert names(name_pattern="~", limit=2, offset=1, order_by="-name") == [
        "warehouse.orders",
        "warehouse.events",
    ]
    assert names(uri_pattern="5432") == ["warehouse.orders", "warehouse.orders_archive"]
    assert names(dag_ids="churn_model") == ["warehouse.customers", "warehouse.events"]
    listed = session.get(f"{api}/assets", params={"name_pattern": "e.orders"}, headers=auth)
    orders = listed.json()["assets"][0]
    assert {k: orders[k] for k in ("id", "uri", "group", "consuming_tasks")} == {
        "id": 1,
        "uri": ORDERS_URI,
        "group": "asset",
        "consuming_tasks": [],
    }
    assert [d["dag_id"] for d in orders["scheduled_dags"]] == ["forecasts_agg", "revenue_daily"]

    no_id = session.post(f"{api}/assets/events", json={"extra": {}}, headers=auth)
    assert (no_id.status_code, no_id.json()) == (
        422,
        {
            "detail": [
                {
                    "type": "missing",
                    "loc": ["body", "asset_id"],
                    "msg": "Field required",
                    "input": {"extra": {}},
                }
            ]
        },
    )
    bad_id = session.post(f"{api}/assets/events", json={"asset_id": "one"}, headers=auth)
    assert (bad_id.status_code, bad_id.json()["detail"][0]["type"]) == (422, "int_parsing")
    missing = session.post(f"{api}/assets/events", json={"asset_id": 99}, headers=auth)
    assert (missing.status_code, missing.json()) == (
        404,
        {"detail": "Asset with ID: `99` was not found"},
    )
    for index in range(3):
        clock.at = NOW + index
        sent = session.post(
            f"{api}/assets/events",
            json={"asset_id": 1, "extra": {"batch": index, "api_token": "s3cret"}},
            headers=auth,
        )
        assert sent.status_code == 200
    assert sent.json()["extra"] == {"batch": 2, "api_token": "***", "from_rest_api": True}

    clock.at = NOW + 3
    newest = session.get(
        f"{api}/assets/events",
        params={"asset_id": 1, "order_by": "-timestamp", "limit": 2},
        headers=auth,
    ).json()
    assert ([e["id"] for e in newest["asset_events"]], newest["total_entries"]) == ([3, 2], 3)
    # Each scheduler loop took the events queued since the last: three runs per DAG.
    assert [len(e["created_dagruns"]) for e in newest["asset_events"]] == [2, 2]
    oldest = session.get(f"{api}/assets/events", params={"asset_id": 1}, headers=auth).json()
    assert [e["id"] for e in oldest["asset_events"]] == [1, 2, 3]
    none = session.get(f"{api}/assets/events", params={"asset_id": 3}, headers=auth).json()
    assert none == {"asset_events": [], "total_entries": 0}
    bad_order = session.get(f"{api}/assets/events", params={"order_by": "id"}, headers=auth)
    assert bad_order.status_code == 400
    assert session.get(f"{api}/assets/7", headers=auth).json() == {
        "detail": "The Asset with ID: `7` was not found"
    }
    assert session.get(f"{api}/assets/1", headers=auth).json()["last_asset_event"] == {
        "id": 3,
        "timestamp": "2025-11-24T16:00:02Z",
    }


# --------------------------------------------------------------------------- end to end


def _project(tmp_path: Path, base_url: str, asset: str = "warehouse.orders") -> Path:
    return make_project(
        tmp_path / "p",
        connectors={
            "warehouse": f"type: sql\nurl: 'sqlite:///{tmp_path / 'w.db'}'\n",
            "airflow": f"type: airflow\nbase_url: {base_url}\ntoken: {TOKEN}\n",
        },
        suites={
            "orders": f"""
            suite: orders
            owner: pete@acme.com
            source: {{connector: warehouse, table: orders}}
            checks:
              - row_count: {{min: 1}}
            restart:
              - airflow_asset: {{connector: airflow, asset: {asset}}}
            """,
        },
        settings=f"state_url: 'sqlite:///{tmp_path}/state.db'\n",
    )


def test_the_asset_is_announced_once_the_suite_passes_again_and_the_incident_resolves(
    tmp_path: Path, emulator: AirflowEmulator, server: LoopbackServer, clock: Clock
) -> None:
    root = _project(tmp_path, server.base_url)
    project = load_project(root, env={})
    assert project.issues == ()
    assert project.suites["orders"].restart[0].label == "airflow asset warehouse.orders"

    def cycle(hours: float) -> Cycle:
        options = RunOptions(clock=lambda: AGENT_NOW + timedelta(hours=hours))
        with Store.open(project.state_url) as store:
            return run_cycle(project, ["orders"], store, options)

    def later(hours: float) -> Cycle:
        options = RunOptions(clock=lambda: AGENT_NOW + timedelta(hours=hours))
        with Store.open(project.state_url) as store:
            return tick(project, store, options)

    load_orders(f"sqlite:///{tmp_path / 'w.db'}", [])
    assert [n.event for n in cycle(0).notices] == ["opened"]
    assert emulator.requests_for("POST", EVENTS) == []  # still failing: nothing restarts

    load_orders(f"sqlite:///{tmp_path / 'w.db'}", order_rows(3))
    assert [n.event for n in cycle(1).notices] == ["recovered", "restarted"]
    [sent] = emulator.requests_for("POST", EVENTS)
    assert sent["body"]["extra"] == {"dq_agent_restart_key": "orders:3:0"}

    clock.at = NOW + 30  # the runs are going
    assert [n.event for n in later(1.1).notices] == []
    clock.at = NOW + 62  # and have succeeded
    done = later(1.2)

    assert [n.event for n in done.notices] == ["restart_succeeded", "resolved"]
    [resolved] = [n for n in done.notices if n.event == "resolved"]
    assert resolved.summary == "airflow asset warehouse.orders ran"
    with Store.open(project.state_url) as store:
        assert [(r.state, r.run_id) for r in store.restarts()] == [("verified", "1")]
    assert len(emulator.requests_for("POST", EVENTS)) == 1


def test_a_run_airflow_never_starts_is_given_up_on_and_the_chain_hears(
    tmp_path: Path, emulator: AirflowEmulator, server: LoopbackServer, clock: Clock
) -> None:
    """churn_model also waits for another asset that never has news: twelve hours on, the
    restart fails, the incident opens again and goes one step up its chain."""
    root = _project(tmp_path, server.base_url, asset="warehouse.customers")
    project = load_project(root, env={})

    def cycle(hours: float) -> list[str]:
        options = RunOptions(clock=lambda: AGENT_NOW + timedelta(hours=hours))
        with Store.open(project.state_url) as store:
            return [n.event for n in run_cycle(project, ["orders"], store, options).notices]

    def later(hours: float) -> list[str]:
        options = RunOptions(clock=lambda: AGENT_NOW + timedelta(hours=hours))
        with Store.open(project.state_url) as store:
            return [n.event for n in tick(project, store, options).notices]

    load_orders(f"sqlite:///{tmp_path / 'w.db'}", [])
    assert cycle(0) == ["opened"]
    load_orders(f"sqlite:///{tmp_path / 'w.db'}", order_rows(3))
    assert cycle(1) == ["recovered", "restarted"]
    clock.at = NOW + 3600
    assert later(12.9) == []  # queued, within its time
    assert later(13.1) == ["restart_failed"]
    with Store.open(project.state_url) as store:
        [row] = store.restarts()
    assert (row.state, row.detail) == (
        "failed",
        "still queued 12 hours after it started (waiting for Airflow to start churn_model)",
    )


def test_a_misconfigured_asset_restart_is_a_config_error_with_its_place(
    tmp_path: Path,
) -> None:
    root = make_project(
        tmp_path,
        connectors={
            "warehouse": f"type: sql\nurl: 'sqlite:///{tmp_path / 'w.db'}'\n",
            "airflow": "type: airflow\nbase_url: http://airflow:8080\ntoken: t\n",
        },
        suites={
            "orders": """
            suite: orders
            source: {connector: warehouse, table: orders}
            checks: [row_count]
            restart:
              - airflow_asset: {connector: warehouse, asset: warehouse.orders}
              - airflow_asset: {connector: airflow, dag_id: agg}
            """,
        },
    )

    issues = [str(i) for i in load_project(root, env={}).issues]

    assert issues == [
        f"{tmp_path}/checks/orders.yml:5:32: restart[0].airflow_asset.connector: "
        "'warehouse' is of type sql; expected a connector of type airflow",
        f"{tmp_path}/checks/orders.yml:6:20: restart[1].airflow_asset.asset: "
        "required key is missing",
        f"{tmp_path}/checks/orders.yml:6:41: restart[1].airflow_asset.dag_id: "
        "unknown key; expected one of: asset, connector",
    ]
