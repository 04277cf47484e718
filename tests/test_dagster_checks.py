"""A suite's checks as Dagster asset checks: an asset writes the orders table, Dagster runs the
suite once after it, and each check's evaluation says what ``dq-agent check`` would."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest

from dq_agent.config.loader import load_project
from dq_agent.errors import DqAgentError
from dq_agent.integrations.dagster import dq_agent_asset_checks
from dq_agent.store import Store
from tests.helpers import make_project

ORDERS = """
suite: orders
source: {connector: warehouse, table: orders}
key: [id]
checks:
  - row_count: {min: 1}
  - expect_column_values_to_not_be_null: {column: status, severity: warn}
  - expect_column_values_to_be_between: {column: amount, min_value: 0}
"""
ROW_COUNT = "row_count"
NO_NULL_STATUS = "expect_column_values_to_not_be_null_status"
NON_NEGATIVE = "expect_column_values_to_be_between_amount"


@pytest.fixture(scope="module")
def instance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dg.DagsterInstance]:
    """A throwaway Dagster instance whose home is a temporary folder, telemetry off."""
    home = tmp_path_factory.mktemp("dagster_home")
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n", encoding="utf-8")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DAGSTER_HOME", str(home))
        with dg.DagsterInstance.ephemeral(
            tempdir=str(home), settings={"telemetry": {"enabled": False}}
        ) as ephemeral:
            assert not ephemeral.telemetry_enabled
            yield ephemeral


def project_at(tmp_path: Path, database: Path) -> Path:
    return make_project(
        tmp_path / "project",
        connectors={"warehouse": f"type: sql\nurl: sqlite:///{database}\n"},
        suites={"orders": ORDERS},
    )


def orders_asset(database: Path) -> dg.AssetsDefinition:
    """The asset the suite watches: it (re)writes the orders table."""

    @dg.asset
    def orders() -> None:
        updated = (datetime.now(UTC) - timedelta(minutes=5)).isoformat()
        with sqlite3.connect(database) as db:
            db.execute("DROP TABLE IF EXISTS orders")
            db.execute(
                "CREATE TABLE orders (id INTEGER, status TEXT, amount REAL, updated_at TEXT)"
            )
            db.executemany(
                "INSERT INTO orders VALUES (?, ?, ?, ?)",
                [
                    (1, "paid", 120.0, updated),
                    (2, None, 80.0, updated),
                    (3, "paid", -5.0, updated),
                    (4, "open", -40.0, updated),
                ],
            )
        db.close()

    return orders


def evaluations(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetCheckEvaluation]:
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


def metadata(evaluation: dg.AssetCheckEvaluation) -> dict[str, object]:
    return {name: value.value for name, value in evaluation.metadata.items()}


def test_each_check_of_the_suite_is_an_asset_check_with_its_evidence(
    tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    database = tmp_path / "warehouse.db"
    project = project_at(tmp_path, database)
    orders = orders_asset(database)
    checks = dq_agent_asset_checks(project, {"orders": "orders"})
    defs = dg.Definitions(assets=[orders], asset_checks=checks)
    dg.Definitions.validate_loadable(defs)

    result = defs.resolve_implicit_global_asset_job_def().execute_in_process(instance=instance)

    assert result.success  # failing checks are evaluations, not a failed run
    found = evaluations(result)
    assert set(found) == {ROW_COUNT, NO_NULL_STATUS, NON_NEGATIVE}
    assert {e.asset_key for e in found.values()} == {dg.AssetKey("orders")}

    row_count = found[ROW_COUNT]
    assert (row_count.passed, row_count.severity) == (True, dg.AssetCheckSeverity.ERROR)
    assert metadata(row_count) == {
        "suite": "orders",
        "status": "pass",
        "message": "4 rows",
        "findings": 0,
        "observed": {"row_count": 4, "min": 1, "max": None},
    }

    no_null = found[NO_NULL_STATUS]
    assert (no_null.passed, no_null.severity) == (False, dg.AssetCheckSeverity.WARN)
    assert metadata(no_null) == {
        "suite": "orders",
        "status": "warn",
        "message": "1 of 4 status values null (25.00%)",
        "findings": 1,
        "observed": {"element_count": 4, "unexpected_count": 1, "unexpected_percent": 25.0},
        "finding keys": [{"id": 2}],
    }
    assert no_null.description == "1 of 4 status values null (25.00%)"

    non_negative = found[NON_NEGATIVE]
    assert (non_negative.passed, non_negative.severity) == (False, dg.AssetCheckSeverity.ERROR)
    assert metadata(non_negative)["status"] == "fail"
    assert metadata(non_negative)["findings"] == 2
    assert metadata(non_negative)["finding keys"] == [{"id": 3}, {"id": 4}]


def test_the_run_is_recorded_in_the_project_state_store_as_a_check(
    tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    database = tmp_path / "warehouse.db"
    project = load_project(project_at(tmp_path, database))
    orders = orders_asset(database)

    dg.materialize(
        [orders, *dq_agent_asset_checks(project, {"orders": dg.AssetKey("orders")})],
        instance=instance,
    )

    with Store.open(project.state_url) as store:
        [run] = store.recent_runs()
        [suite_run] = store.suite_runs("orders", limit=5)
    assert (run["command"], run["suites"], run["status"]) == ("check", ["orders"], "fail")
    assert suite_run["checks"]["row_count"] == {"status": "pass", "message": "4 rows"}


def test_a_subset_of_the_checks_reports_only_those(
    tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    database = tmp_path / "warehouse.db"
    orders = orders_asset(database)
    checks = dq_agent_asset_checks(project_at(tmp_path, database), {"orders": orders})

    result = dg.materialize(
        [orders, *checks],
        instance=instance,
        selection=dg.AssetSelection.assets(orders).without_checks()
        | dg.AssetSelection.checks(dg.AssetCheckKey(orders.key, ROW_COUNT)),
    )

    assert set(evaluations(result)) == {ROW_COUNT}


def test_an_unreachable_source_fails_every_check_with_the_error(
    tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    missing = tmp_path / "missing.db"
    project = project_at(tmp_path, missing)
    orders = orders_asset(tmp_path / "warehouse.db")  # not the database the suite reads

    result = dg.materialize(
        [orders, *dq_agent_asset_checks(project, {"orders": orders})], instance=instance
    )

    assert result.success
    found = evaluations(result)
    assert set(found) == {ROW_COUNT, NO_NULL_STATUS, NON_NEGATIVE}
    error = f"SQLite database file not found: {missing}"
    for evaluation in found.values():
        assert (evaluation.passed, evaluation.severity) == (False, dg.AssetCheckSeverity.ERROR)
        assert metadata(evaluation) == {"suite": "orders", "status": "error", "error": error}
        assert evaluation.description == error


def test_blocking_checks_stop_the_run_when_a_fail_check_fails(
    tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    database = tmp_path / "warehouse.db"
    orders = orders_asset(database)
    checks = dq_agent_asset_checks(
        project_at(tmp_path, database), {"orders": orders}, blocking=True
    )

    result = dg.materialize([orders, *checks], instance=instance, raise_on_error=False)

    assert not result.success
    assert evaluations(result)[NON_NEGATIVE].passed is False


def test_a_suite_the_project_does_not_have_is_an_error_at_definition_time(tmp_path: Path) -> None:
    project = project_at(tmp_path, tmp_path / "warehouse.db")
    with pytest.raises(DqAgentError, match=r"^unknown suite 'order'; available: orders$"):
        dq_agent_asset_checks(project, {"order": "orders"})


def test_an_invalid_suite_is_an_error_at_definition_time(tmp_path: Path) -> None:
    project = project_at(tmp_path, tmp_path / "warehouse.db")
    (project / "checks" / "broken.yml").write_text(
        "suite: broken\nsource: {connector: warehouse, table: t}\nchecks:\n  - row_cont: {}\n",
        encoding="utf-8",
    )
    with pytest.raises(
        DqAgentError, match=r"^invalid configuration: .*broken\.yml:4:5: .*row_cont"
    ):
        dq_agent_asset_checks(project, {"broken": "t"})


def test_two_suites_on_one_asset_cannot_share_a_check_name(tmp_path: Path) -> None:
    project = project_at(tmp_path, tmp_path / "warehouse.db")
    (project / "checks" / "more.yml").write_text(
        "suite: more\nsource: {connector: warehouse, table: orders}\nchecks:\n  - row_count\n",
        encoding="utf-8",
    )
    with pytest.raises(DqAgentError) as raised:
        dq_agent_asset_checks(project, {"orders": "orders", "more": "orders"})
    assert str(raised.value) == (
        "check 'row_count' of suite 'more' and check 'row_count' of suite 'orders' would both "
        "be asset check 'row_count' on orders: give one of them another name: in its suite"
    )
