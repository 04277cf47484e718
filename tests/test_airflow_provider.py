"""Suites as Airflow tasks: a DAG loads the orders table, the operator checks it, and the sensor
waits for it, each run by Airflow itself (``dag.test()``, its trigger in the same process)."""

from __future__ import annotations

# Airflow is set up, and the logging it changes recorded, before it is imported.
# ruff: noqa: E402
import logging
import os
import tempfile

# Airflow reads its settings, and writes airflow.cfg into its home, when first imported: both
# go to a folder of this module's own (also when pytest only collects it), never ~/airflow.
# unit_test_mode lets a test call an operator's execute() itself.
os.environ["AIRFLOW_HOME"] = tempfile.mkdtemp(prefix="dq-agent-airflow-")
os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = (
    f"sqlite:///{os.environ['AIRFLOW_HOME']}/airflow.db"
)
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = os.path.join(os.environ["AIRFLOW_HOME"], "dags")
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__UNIT_TEST_MODE"] = "True"
os.makedirs(os.environ["AIRFLOW__CORE__DAGS_FOLDER"])

LoggingState = dict[str, tuple[int, list[logging.Handler], bool, bool]]


def logging_state() -> LoggingState:
    """Each logger's level, handlers, propagation and whether it is disabled."""
    named = logging.root.manager.loggerDict.items()
    loggers = [("", logging.root), *((n, g) for n, g in named if isinstance(g, logging.Logger))]
    return {n: (g.level, list(g.handlers), g.propagate, g.disabled) for n, g in loggers}


def restore_logging(state: LoggingState) -> None:
    """Loggers as they were in ``state``; those created since, as Python makes them."""
    for name, (level, handlers, propagate, disabled) in {
        **{n: (logging.NOTSET, [], True, False) for n in logging_state()},
        **state,
    }.items():
        logger = logging.getLogger(name or None)
        logger.setLevel(level)
        logger.handlers[:] = handlers
        logger.propagate = propagate
        logger.disabled = disabled


# Importing Airflow configures logging for an Airflow process (the root logger at INFO with a
# handler on stdout, uvicorn's loggers cut off): the tests after this module's expect Python's.
BEFORE_AIRFLOW = logging_state()

import asyncio
import sqlite3
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from importlib.metadata import entry_points, version
from pathlib import Path
from typing import Any

import pytest
from airflow.dag_processing.bundles.manager import DagBundlesManager
from airflow.dag_processing.dagbag import DagBag, sync_bag_to_db
from airflow.models.dagrun import DagRun
from airflow.providers_manager import ProvidersManager
from airflow.sdk import DAG, DagRunState, TaskInstanceState, task
from airflow.sdk.exceptions import AirflowException, AirflowFailException
from airflow.triggers.base import TriggerEvent
from airflow.utils.db import resetdb

import dq_agent.integrations.airflow as dq_airflow
from dq_agent.integrations.airflow import (
    DqAgentCheckOperator,
    DqAgentSensor,
    DqAgentSuiteTrigger,
    get_provider_info,
)
from dq_agent.results import SuiteResult
from tests.helpers import make_project

restore_logging(BEFORE_AIRFLOW)

ORDERS = """
suite: orders
source: {connector: warehouse, table: orders}
key: [id]
checks:
  - row_count: {min: 1}
  - expect_column_values_to_not_be_null: {column: status, severity: warn}
  - expect_column_values_to_be_between: {column: amount, min_value: 0}
"""
GOOD = [(1, "paid", 120.0), (2, "open", 80.0), (3, "paid", 5.0)]
NULL_STATUS = [(1, "paid", 120.0), (2, None, 80.0)]
NEGATIVE = [(1, "paid", 120.0), (2, "open", -40.0)]


@pytest.fixture(scope="module", autouse=True)
def metadata_db() -> Iterator[None]:
    """Airflow's metadata database, created once for the module's DAG runs; Python's logging
    as it was before, after them."""
    resetdb()
    yield
    restore_logging(BEFORE_AIRFLOW)


def project_at(tmp_path: Path) -> Path:
    database = tmp_path / "warehouse.db"
    return make_project(
        tmp_path / "project",
        connectors={"warehouse": f"type: sql\nurl: sqlite:///{database}\n"},
        suites={"orders": ORDERS},
    )


def load(project: Path, rows: list[tuple[int, str | None, float]]) -> None:
    """(Re)write the orders table the suite reads."""
    with sqlite3.connect(project.parent / "warehouse.db") as db:
        db.execute("DROP TABLE IF EXISTS orders")
        db.execute("CREATE TABLE orders (id INTEGER, status TEXT, amount REAL)")
        db.executemany("INSERT INTO orders VALUES (?, ?, ?)", rows)
    db.close()


def run(dag: DAG) -> DagRun:
    """``dag.test()``, the DAG saved to the metadata database first as Airflow's processor would."""
    DagBundlesManager().sync_bundles_to_db()
    bag = DagBag(dag_folder=os.devnull)
    bag.bag_dag(dag)
    sync_bag_to_db(bag, "dags-folder", None)
    return dag.test()


def states(run: DagRun) -> dict[str, str | None]:
    return {ti.task_id: ti.state for ti in run.get_task_instances()}


def xcom(run: DagRun, task_id: str) -> Any:
    [ti] = [ti for ti in run.get_task_instances() if ti.task_id == task_id]
    return ti.xcom_pull(task_ids=task_id)


def statuses(doc: dict[str, Any]) -> dict[str, str]:
    return {check["name"]: check["status"] for check in doc["checks"]}


def loader(project: Path, rows: list[tuple[int, str | None, float]]) -> Any:
    """The task upstream of the suite that loads the orders table."""

    @task
    def load_orders() -> None:
        load(project, rows)

    return load_orders()


@pytest.fixture
def arriving(monkeypatch: pytest.MonkeyPatch) -> Callable[[Path, int], list[str]]:
    """Makes the orders land after the suite's n-th try, as a load that finishes while the
    sensor waits; returns the status each try saw."""

    def after(project: Path, tries: int) -> list[str]:
        seen: list[str] = []
        real = dq_airflow._try

        def trying(project_dir: str, suite: str) -> Any:
            result = real(project_dir, suite)
            seen.append(result.status)
            if len(seen) == tries:
                load(project, GOOD)
            return result

        monkeypatch.setattr(dq_airflow, "_try", trying)
        return seen

    return after


def test_a_passing_suite_succeeds_and_hands_its_json_to_xcom(tmp_path: Path) -> None:
    project = project_at(tmp_path)
    with DAG("passing", schedule=None, params={"suite": "orders"}) as dag:
        check = DqAgentCheckOperator(
            task_id="check", suite="{{ params.suite }}", project=str(project)
        )
        loader(project, GOOD) >> check

    result = run(dag)

    assert states(result) == {"load_orders": "success", "check": "success"}
    doc = xcom(result, "check")
    assert set(doc) == {"suite", "status", "started_at", "duration_s", "checks"}
    assert (doc["suite"], doc["status"]) == ("orders", "pass")
    assert statuses(doc) == {
        "row_count": "pass",
        "expect_column_values_to_not_be_null(status)": "pass",
        "expect_column_values_to_be_between(amount)": "pass",
    }
    assert doc["checks"][0]["observed"] == {"row_count": 3, "min": 1, "max": None}


def test_a_suite_that_only_warns_succeeds(tmp_path: Path) -> None:
    project = project_at(tmp_path)
    with DAG("warning", schedule=None) as dag:
        loader(project, NULL_STATUS) >> DqAgentCheckOperator(
            task_id="check", suite="orders", project=project
        )

    result = run(dag)

    assert states(result)["check"] == TaskInstanceState.SUCCESS
    doc = xcom(result, "check")
    assert doc["status"] == "warn"
    assert statuses(doc)["expect_column_values_to_not_be_null(status)"] == "warn"


def test_a_failing_suite_fails_the_task_and_stops_the_tasks_after_it(tmp_path: Path) -> None:
    project = project_at(tmp_path)
    with DAG("failing", schedule=None) as dag:

        @task
        def publish() -> None: ...

        check = DqAgentCheckOperator(task_id="check", suite="orders", project=project)
        loader(project, NEGATIVE) >> check >> publish()

    result = run(dag)

    assert result.state == DagRunState.FAILED
    assert states(result) == {
        "load_orders": "success",
        "check": "failed",
        "publish": "upstream_failed",
    }


def test_the_failure_says_which_checks_failed_and_why(tmp_path: Path) -> None:
    project = project_at(tmp_path)
    load(project, [(1, None, 120.0), (2, "open", -40.0)])
    check = DqAgentCheckOperator(task_id="check", suite="orders", project=project)

    with pytest.raises(AirflowFailException) as raised:
        check.execute(context={})

    # The warning is not what failed the suite: only the failing check is named.
    assert str(raised.value) == (
        "dq-agent suite 'orders': fail: expect_column_values_to_be_between(amount) (fail): "
        "1 of 2 amount values unexpected (50.00%)"
    )


def test_a_suite_that_cannot_run_fails_the_task_with_the_reason(tmp_path: Path) -> None:
    project = project_at(tmp_path)  # its warehouse.db is never written
    check = DqAgentCheckOperator(task_id="check", suite="orders", project=project)

    with pytest.raises(AirflowFailException) as raised:
        check.execute(context={})

    assert str(raised.value) == (
        f"dq-agent suite 'orders': error: SQLite database file not found: "
        f"{tmp_path / 'warehouse.db'}"
    )


def test_a_suite_that_may_run_later_fails_the_task_for_airflow_to_retry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    timed_out = SuiteResult(
        "orders", "error", datetime.now(UTC), 30.0, error="the warehouse timed out", transient=True
    )
    monkeypatch.setattr(dq_airflow, "check_once", lambda project, suite: timed_out)
    check = DqAgentCheckOperator(task_id="check", suite="orders", project=project_at(tmp_path))

    with pytest.raises(AirflowException) as raised:
        check.execute(context={})

    # Not an AirflowFailException, which would skip the task's retries.
    assert type(raised.value) is AirflowException
    assert str(raised.value) == "dq-agent suite 'orders': error: the warehouse timed out"


def test_a_suite_the_project_does_not_have_fails_the_task(tmp_path: Path) -> None:
    check = DqAgentCheckOperator(task_id="check", suite="order", project=project_at(tmp_path))
    with pytest.raises(AirflowFailException, match=r"^unknown suite 'order'; available: orders$"):
        check.execute(context={})


def test_the_deferred_sensor_waits_in_its_trigger_until_the_orders_land(
    tmp_path: Path, arriving: Callable[[Path, int], list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    project = project_at(tmp_path)
    # The table exists, empty, when the sensor first looks; the rows land after the trigger's
    # first try.
    seen = arriving(project, 2)
    pokes: list[str] = []
    poke = DqAgentSensor.poke

    def counted(sensor: DqAgentSensor, context: Any) -> Any:
        pokes.append(sensor.task_id)
        return poke(sensor, context)

    monkeypatch.setattr(DqAgentSensor, "poke", counted)
    with DAG("deferred", schedule=None) as dag:
        wait = DqAgentSensor(
            task_id="wait", suite="orders", project=project, poke_interval=0.01, timeout=60
        )
        loader(project, []) >> wait

    result = run(dag)

    assert states(result) == {"load_orders": "success", "wait": "success"}
    # Once on the worker, then twice in the trigger: it fired on the try that found the rows.
    assert seen == ["fail", "fail", "pass"]
    assert pokes == ["wait"]
    assert xcom(result, "wait")["checks"][0]["observed"]["row_count"] == 3


def test_the_sensor_pokes_on_the_worker_when_not_deferrable(
    tmp_path: Path, arriving: Callable[[Path, int], list[str]]
) -> None:
    project = project_at(tmp_path)
    seen = arriving(project, 1)
    with DAG("poking", schedule=None) as dag:
        wait = DqAgentSensor(
            task_id="wait",
            suite="orders",
            project=project,
            poke_interval=0.01,
            timeout=60,
            deferrable=False,
        )
        loader(project, []) >> wait

    result = run(dag)

    assert states(result)["wait"] == TaskInstanceState.SUCCESS
    assert seen == ["fail", "pass"]
    assert xcom(result, "wait")["status"] == "pass"


def test_the_sensor_takes_a_warning_as_green_unless_told_not_to(
    tmp_path: Path, arriving: Callable[[Path, int], list[str]]
) -> None:
    project = project_at(tmp_path)
    load(project, NULL_STATUS)
    seen = arriving(project, 1)
    strict = DqAgentSensor(
        task_id="strict",
        suite="orders",
        project=project,
        poke_interval=0,
        deferrable=False,
        accept_warn=False,
    )

    assert strict.execute(context={})["status"] == "pass"
    assert seen == ["warn", "pass"]

    load(project, NULL_STATUS)
    lenient = DqAgentSensor(task_id="lenient", suite="orders", project=project)
    # Green on its first try, on the worker: nothing to defer.
    assert lenient.execute(context={})["status"] == "warn"


def test_the_sensor_fails_at_once_when_the_suite_cannot_be_found(tmp_path: Path) -> None:
    project = project_at(tmp_path)
    with DAG("missing", schedule=None) as dag:
        DqAgentSensor(task_id="wait", suite="order", project=project, timeout=60)

    result = run(dag)

    assert states(result) == {"wait": "failed"}
    sensor = DqAgentSensor(task_id="wait", suite="order", project=project)
    with pytest.raises(AirflowFailException, match=r"^unknown suite 'order'; available: orders$"):
        sensor.execute(context={})


def test_the_trigger_rebuilds_from_what_it_serializes(tmp_path: Path) -> None:
    trigger = DqAgentSuiteTrigger(
        suite="orders", project=str(tmp_path), poke_interval=5.0, accept_warn=False
    )
    classpath, kwargs = trigger.serialize()

    assert classpath == "dq_agent.integrations.airflow.DqAgentSuiteTrigger"
    assert kwargs == {
        "suite": "orders",
        "project": str(tmp_path),
        "poke_interval": 5.0,
        "accept_warn": False,
    }
    assert DqAgentSuiteTrigger(**kwargs).serialize() == (classpath, kwargs)


def test_the_trigger_fires_an_error_when_the_project_cannot_be_loaded(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    trigger = DqAgentSuiteTrigger(suite="orders", project=str(missing), poke_interval=0.01)

    async def first() -> TriggerEvent | None:
        return await anext(trigger.run(), None)

    event = asyncio.run(first())

    assert event is not None
    assert event.payload["error"].startswith(
        f"invalid configuration: {missing}: no such project folder; "
    )


def test_airflow_finds_dq_agent_among_its_providers() -> None:
    [entry] = [
        e for e in entry_points(group="apache_airflow_provider") if e.dist.name == "dq-agent"
    ]
    assert entry.load() is get_provider_info

    provider = ProvidersManager().providers["dq-agent"]

    assert provider.version == version("dq-agent")
    assert provider.data["package-name"] == "dq-agent"
    assert provider.data["versions"] == [version("dq-agent")]
    assert provider.data["sensors"] == [
        {"integration-name": "dq-agent", "python-modules": ["dq_agent.integrations.airflow"]}
    ]
