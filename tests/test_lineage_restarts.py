"""``restart: {auto: true}``: what to restart once a suite passes again, found in the dbt
lineage of the table it reads, from the manifest.json dbt itself wrote for a small project
(tests/dbt_shop)."""

from __future__ import annotations

import json
import sys
import textwrap
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests

from dq_agent.agent import run_cycle
from dq_agent.config import load_project
from dq_agent.config.models import CommandRestart, DbtCloudConnector, DbtCloudRestart
from dq_agent.engine import RunOptions
from dq_agent.restart.dbt_cloud import DbtCloudTarget
from dq_agent.store import Store
from dq_agent_sandbox.http import LoopbackServer
from tests.helpers import make_project
from tests.sources import load_orders, order_rows
from tests.test_cli import invoke
from tests.test_restart_targets import ACCOUNT, JOB, TOKEN, DbtCloudEmulator

MANIFEST = Path(__file__).parent / "dbt_shop" / "target" / "manifest.json"
NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
ORDERS_PATH = "source raw.orders → stg_orders → customer_orders, orders_daily"

SUITE = """
suite: {name}
owner: pete@acme.com
source: {{connector: warehouse, {source}}}
checks:
  - row_count: {{min: 1}}
restart: {{auto: true}}
"""


def project(
    root: Path,
    *,
    rebuild: str = "command: {run: [dbt, build, --project-dir, ../analytics]}",
    manifest: Path = MANIFEST,
    suites: dict[str, str] | None = None,
    connectors: dict[str, str] | None = None,
) -> Path:
    return make_project(
        root,
        connectors={
            "warehouse": f"type: sql\nurl: 'sqlite:///{root}/w.db'\n",
            **(connectors or {}),
        },
        suites=suites
        or {"orders": SUITE.format(name="orders", source="table: orders, schema: raw")},
        settings=f"state_url: 'sqlite:///{root}/state.db'\n"
        f"lineage:\n  dbt_manifest: {manifest}\n  dbt:\n    {rebuild}\n",
    )


def test_a_source_table_restarts_the_models_built_from_it(tmp_path: Path) -> None:
    loaded = load_project(project(tmp_path), env={})
    assert loaded.issues == ()
    [spec] = loaded.suites["orders"].restart
    assert isinstance(spec.args, CommandRestart)
    assert spec.args.run == [
        "dbt",
        "build",
        "--project-dir",
        "../analytics",
        "--select",
        "stg_orders+",
    ]
    # stg_orders+ covers what is built from it further down: the path says what that is.
    assert spec.why == ORDERS_PATH


def test_a_model_restarts_its_children_and_a_dead_end_restarts_nothing(tmp_path: Path) -> None:
    suites = {
        "staged": SUITE.format(name="staged", source="table: stg_customers, schema: analytics"),
        "refunds": SUITE.format(name="refunds", source="table: refunds, schema: raw"),
    }
    loaded = load_project(project(tmp_path, suites=suites), env={})
    assert loaded.issues == ()
    [spec] = loaded.suites["staged"].restart
    assert isinstance(spec.args, CommandRestart)
    assert spec.args.run[-2:] == ["--select", "customer_orders+"]
    assert spec.why == "model stg_customers → customer_orders"
    assert loaded.suites["refunds"].restart == ()  # raw.refunds feeds no model


def test_a_dbt_cloud_job_builds_only_the_models_the_lineage_found(tmp_path: Path) -> None:
    emulator = DbtCloudEmulator()
    with LoopbackServer(emulator) as server:
        root = project(
            tmp_path,
            rebuild=f"dbt_cloud: {{connector: dbt, job_id: {JOB}}}",
            connectors={
                "dbt": f"type: dbt_cloud\nbase_url: {server.base_url}/\n"
                f"account_id: {ACCOUNT}\ntoken: {TOKEN}\n"
            },
        )
        loaded = load_project(root, env={})
        assert loaded.issues == ()
        [spec] = loaded.suites["orders"].restart
        assert isinstance(spec.args, DbtCloudRestart)
        assert spec.args.select == ["stg_orders+"]
        assert spec.label == f"dbt Cloud job {JOB} (dbt build --select stg_orders+)"
        connector = loaded.connectors["dbt"]
        assert isinstance(connector, DbtCloudConnector)
        with requests.Session() as session:
            run = DbtCloudTarget(connector, spec.args, session=session).start("restart-1")
        [triggered] = [r["trigger"] for r in emulator.runs.values() if str(r["id"]) == run.run_id]
    assert triggered["steps_override"] == ["dbt build --select stg_orders+"]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            {"source": "table: nope, schema: raw"},
            "checks/orders.yml:6:17: restart.auto: table raw.nope is no dbt source, model, "
            "seed or snapshot in the manifest: nothing to follow (name the restart targets "
            "instead)",
        ),
        (
            {"source": "query: select 1 as x"},
            "checks/orders.yml:6:17: restart.auto: auto: true follows the lineage of a SQL "
            "table; this suite reads no table",
        ),
    ],
)
def test_a_table_lineage_cannot_follow_is_an_error_of_the_suite_that_says_why(
    tmp_path: Path, change: dict[str, str], expected: str
) -> None:
    suites = {"orders": SUITE.format(name="orders", **change)}
    loaded = load_project(project(tmp_path, suites=suites), env={})
    assert [str(i).replace(f"{tmp_path}/", "") for i in loaded.issues] == [expected]
    assert "orders" in loaded.broken_suites


def test_auto_without_lineage_settings_or_with_a_broken_manifest_says_so(tmp_path: Path) -> None:
    bare = make_project(
        tmp_path / "bare",
        connectors={"warehouse": "type: sql\nurl: 'sqlite:///w.db'\n"},
        suites={"orders": SUITE.format(name="orders", source="table: orders")},
    )
    [issue] = load_project(bare, env={}).issues
    assert "auto: true needs lineage: in dq-agent.yml: {dbt_manifest: …, dbt:" in str(issue)
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    issues = [str(i) for i in load_project(project(tmp_path / "p", manifest=broken), env={}).issues]
    assert issues[0].startswith(f"{tmp_path}/p/dq-agent.yml:3:17: lineage.dbt_manifest: ")
    assert "is not JSON" in issues[0]
    assert "restart.auto: the dbt manifest cannot be read (see dq-agent.yml)" in issues[1]


def test_plan_shows_what_restarts_and_the_lineage_that_found_it(tmp_path: Path) -> None:
    root = project(tmp_path, suites={"orders": SUITE.format(name="orders", source="table: orders")})
    load_orders(f"sqlite:///{tmp_path}/w.db", order_rows(3, newest=NOW))
    code, out, err = invoke("plan", "--project", str(root), "--format", "json")
    assert code == 0, err
    assert json.loads(out)["restarts"] == [
        {
            "suite": "orders",
            "target": "command dbt build --project-dir ../analytics --select stg_orders+",
            "why": ORDERS_PATH,
        }
    ]
    _, text, _ = invoke("plan", "--project", str(root))
    assert "orders: command dbt build --project-dir ../analytics --select stg_orders+" in text
    assert f"lineage: {ORDERS_PATH}" in text


# Stands in for dbt: says what it was asked to build.
FAKE_DBT = textwrap.dedent(
    """
    import pathlib, sys
    pathlib.Path(sys.argv[1]).write_text(" ".join(sys.argv[2:]))
    """
)


@pytest.fixture
def cycles(tmp_path: Path) -> Iterator[Path]:
    (tmp_path / "dbt.py").write_text(FAKE_DBT, encoding="utf-8")
    asked = tmp_path / "asked.txt"
    run = f'["{sys.executable}", "{tmp_path / "dbt.py"}", "{asked}", build]'
    suites = {"orders": SUITE.format(name="orders", source="table: orders")}
    yield project(tmp_path, rebuild=f"command: {{run: {run}}}", suites=suites)


def test_once_the_table_is_right_again_the_models_built_from_it_are_rebuilt(
    tmp_path: Path, cycles: Path
) -> None:
    url = f"sqlite:///{tmp_path}/w.db"

    def cycle(hours: float) -> list[str]:
        loaded = load_project(cycles, env={})
        options = RunOptions(clock=lambda: NOW + timedelta(hours=hours))
        with Store.open(loaded.state_url) as store:
            return [n.event for n in run_cycle(loaded, ["orders"], store, options).notices]

    load_orders(url, [])
    assert cycle(0) == ["opened"]
    assert not (tmp_path / "asked.txt").exists()
    load_orders(url, order_rows(3, newest=NOW + timedelta(hours=1)))
    assert cycle(2) == ["recovered", "restarted", "restart_succeeded", "resolved"]
    assert (tmp_path / "asked.txt").read_text() == "build --select stg_orders+"


def test_the_dags_scheduled_on_the_tables_airflow_asset_restart_too(tmp_path: Path) -> None:
    """With lineage.airflow, the table's asset is told it is right again (an asset event),
    so that Airflow runs every DAG scheduled on it, beside the dbt models built from it."""
    root = project(
        tmp_path,
        connectors={"airflow": "type: airflow\nbase_url: http://127.0.0.1:9/\ntoken: t\n"},
    )
    settings = root / "dq-agent.yml"
    settings.write_text(
        settings.read_text()
        + "  airflow: {connector: airflow, asset: 'postgres://db/shop/{schema}/{table}'}\n"
    )
    loaded = load_project(root, env={})
    assert loaded.issues == ()
    dbt, asset = loaded.suites["orders"].restart
    assert dbt.why == ORDERS_PATH
    assert asset.label == "airflow asset postgres://db/shop/raw/orders"
    assert asset.why == "Airflow asset postgres://db/shop/raw/orders → the DAGs scheduled on it"
