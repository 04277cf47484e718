"""Restarts: only once the suite is green again, once per recovery, then verified downstream."""

from __future__ import annotations

import sys
import textwrap
from datetime import timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from dq_agent.agent import Cycle, run_cycle
from dq_agent.config import load_project
from dq_agent.engine import RunOptions
from dq_agent.store import Store
from tests.helpers import make_project
from tests.sources import NOW, load_orders, order_rows

# The "pipeline": rebuilds the aggregate from orders, as a scheduled job would.
PIPELINE = textwrap.dedent(
    """
    import sqlite3, sys
    db = sqlite3.connect(sys.argv[1])
    db.execute("DROP TABLE IF EXISTS agg")
    db.execute("CREATE TABLE agg (total INTEGER, refreshed_at TEXT)")
    db.execute("INSERT INTO agg SELECT SUM(amount), ? FROM orders", (sys.argv[2],))
    db.commit()
    sys.exit(int(sys.argv[3]))
    """
)


def project(tmp_path: Path, *, exit_code: int = 0) -> Path:
    db = tmp_path / "w.db"
    (tmp_path / "pipeline.py").write_text(PIPELINE, encoding="utf-8")
    refreshed = (NOW + timedelta(hours=2)).strftime("%Y-%m-%d %H:%M:%S")
    return make_project(
        tmp_path / "p",
        connectors={"warehouse": f"type: sql\nurl: 'sqlite:///{db}'\n"},
        suites={
            "orders": f"""
            suite: orders
            owner: pete@acme.com
            escalation: [pete@acme.com, lead@acme.com]
            source: {{connector: warehouse, table: orders}}
            checks:
              - row_count: {{min: 1}}
            restart:
              - command:
                  run: ["{sys.executable}", "{tmp_path / "pipeline.py"}", "{db}", "{refreshed}",
                        "{exit_code}"]
                  timeout: 1m
            verify: [agg]
            """,
            "agg": """
            suite: agg
            owner: data-eng@acme.com
            source: {connector: warehouse, table: agg}
            checks:
              - freshness: {column: refreshed_at, max_age: 26h}
            """,
        },
        settings=f"state_url: 'sqlite:///{tmp_path}/state.db'\n",
    )


def stale_agg(tmp_path: Path) -> None:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'w.db'}")
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE IF EXISTS agg")
        conn.exec_driver_sql("CREATE TABLE agg (total INTEGER, refreshed_at TEXT)")
        conn.exec_driver_sql("INSERT INTO agg VALUES (0, '2026-11-20 00:00:00')")
    engine.dispose()


def cycle(root: Path, hours: float, suites: tuple[str, ...] = ("orders",)) -> Cycle:
    loaded = load_project(root, env={})
    assert loaded.issues == (), loaded.issues
    options = RunOptions(clock=lambda: NOW + timedelta(hours=hours))
    with Store.open(loaded.state_url) as store:
        return run_cycle(loaded, list(suites), store, options)


def events(root: Path, incident_id: int = 1) -> list[tuple[str, str]]:
    with Store.open(f"sqlite:///{root.parent}/state.db") as store:
        incident = store.incident(incident_id)
    assert incident is not None
    return [(e["event"], e["detail"]) for e in incident["events"]]


def notices(done: Cycle) -> list[tuple[int, str]]:
    return [(n.incident_id, n.event) for n in done.notices]


def test_the_pipeline_restarts_once_the_data_is_back_and_closes_when_verified(
    tmp_path: Path,
) -> None:
    root = project(tmp_path)
    load_orders(f"sqlite:///{tmp_path / 'w.db'}", [])
    stale_agg(tmp_path)
    assert notices(cycle(root, 0)) == [(1, "opened")]
    assert notices(cycle(root, 1)) == [(1, "failed_again")]  # still empty: no restart

    load_orders(f"sqlite:///{tmp_path / 'w.db'}", order_rows(3, newest=NOW + timedelta(hours=1)))
    back = cycle(root, 2)
    assert notices(back) == [
        (1, "recovered"),
        (1, "restarted"),
        (1, "restart_succeeded"),
        (1, "resolved"),
    ]
    [resolved] = [n for n in back.notices if n.event == "resolved"]
    assert resolved.summary == f"command {sys.executable} {tmp_path / 'pipeline.py'} " + (
        f"{tmp_path / 'w.db'} 2026-11-24 14:00:00 0 ran; agg passes"
    )
    assert notices(cycle(root, 3)) == []  # green and closed: nothing restarts again
    with Store.open(f"sqlite:///{tmp_path}/state.db") as store:
        assert [(r.state, r.attempts) for r in store.restarts()] == [("verified", 1)]


def test_a_failed_pipeline_run_keeps_the_incident_open_and_escalates(tmp_path: Path) -> None:
    root = project(tmp_path, exit_code=3)
    load_orders(f"sqlite:///{tmp_path / 'w.db'}", [])
    stale_agg(tmp_path)
    cycle(root, 0)
    load_orders(f"sqlite:///{tmp_path / 'w.db'}", order_rows(3, newest=NOW + timedelta(hours=1)))
    failed = cycle(root, 2)
    assert notices(failed) == [
        (1, "recovered"),
        (1, "restarted"),
        (1, "restart_failed"),
        (1, "escalated"),
    ]
    [escalated] = [n for n in failed.notices if n.event == "escalated"]
    assert (escalated.owners, escalated.summary) == (
        ("lead@acme.com",),
        "the pipeline restart failed: telling lead@acme.com",
    )
    with Store.open(f"sqlite:///{tmp_path}/state.db") as store:
        incident: Any = store.incident(1)
        assert incident["status"] == "notified"
        [restart] = store.restarts()
        assert restart.state == "failed"
        assert restart.detail.startswith("exit code 3")
    # Green, but the failed restart is not retried on its own: a person says when.
    assert notices(cycle(root, 3)) == []
