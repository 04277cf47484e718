"""A small orders table written into any test database, and a runner for suites over it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from dq_agent.config import load_project
from dq_agent.engine import RunOptions, run_checks
from dq_agent.results import SuiteResult
from dq_agent.store import Store
from tests.helpers import make_project

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)

ORDERS = sa.Table(
    "orders",
    sa.MetaData(),
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("customer", sa.String(40)),
    sa.Column("amount", sa.Numeric(12, 2)),
    sa.Column("status", sa.String(20)),
    sa.Column("updated_at", sa.DateTime),
)


def order_rows(
    count: int = 10, *, newest: datetime = NOW - timedelta(hours=1)
) -> list[dict[str, Any]]:
    """``count`` clean orders, the newest updated at ``newest`` (stored naive, in UTC)."""
    return [
        {
            "id": i,
            "customer": f"c{i % 4}",
            "amount": 10 * i,
            "status": "paid" if i % 2 else "open",
            "updated_at": (newest - timedelta(hours=count - i)).replace(tzinfo=None),
        }
        for i in range(1, count + 1)
    ]


def load_orders(url: str, rows: list[dict[str, Any]], table: sa.Table = ORDERS) -> None:
    engine = sa.create_engine(url)
    try:
        table.metadata.drop_all(engine)
        table.metadata.create_all(engine)
        if rows:
            with engine.begin() as conn:
                conn.execute(table.insert(), rows)
    finally:
        engine.dispose()


def project_for(root: Path, url: str, suites: dict[str, str]) -> Path:
    return make_project(
        root,
        connectors={"warehouse": f"type: sql\nurl: '{url}'\n"},
        suites=suites,
        settings=f"state_url: 'sqlite:///{root}/state.db'\n",
    )


def run(
    root: Path,
    *suite_ids: str,
    as_of: datetime | None = None,
    now: datetime = NOW,
    compile_expectations: bool = True,
) -> list[SuiteResult]:
    project = load_project(root, env={})
    assert project.issues == (), [str(i) for i in project.issues]
    options = RunOptions(as_of=as_of, clock=lambda: now, compile_expectations=compile_expectations)
    with Store.open(project.state_url) as store:
        return run_checks(project, suite_ids or list(project.suites), store=store, options=options)


def run_one(root: Path, url: str, suite_yaml: str, **kwargs: Any) -> SuiteResult:
    """Write a one-suite project for ``url`` under ``root`` and run it."""
    project_for(root, url, {"s": suite_yaml})
    [result] = run(root, **kwargs)
    return result
