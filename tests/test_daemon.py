"""The daemon: schedules, hot reload, retries, endpoints, SIGTERM, and replicas that fail over."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from dq_agent.config import load_project
from dq_agent.daemon.service import Daemon, next_retry, retry_windows
from dq_agent.store import queue
from tests.helpers import make_project
from tests.sources import NOW, load_orders, order_rows

BERLIN_SUITE = """
suite: orders
owner: pete@acme.com
schedule: "0 6 * * 1-5"
timezone: Europe/Berlin
source: {connector: warehouse, table: orders}
checks:
  - row_count: {min: 1}
runbook: |
  The loader is flaky at night: retry between 02:47 and 03:12 UTC.
"""
EVERY_HALF_HOUR = """
suite: payments
owner: ana@acme.com
schedule: "*/30 * * * *"
source: {connector: warehouse, table: orders}
checks:
  - row_count: {min: 1}
"""


def project(root: Path, url: str, state_url: str | None = None) -> Path:
    return make_project(
        root,
        connectors={"warehouse": f"type: sql\nurl: '{url}'\n"},
        suites={"orders": BERLIN_SUITE, "payments": EVERY_HALF_HOUR},
        settings=f"state_url: '{state_url or f'sqlite:///{root}/state.db'}'\n",
    )


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[Daemon]:
    url = f"sqlite:///{tmp_path / 'w.db'}"
    load_orders(url, [])
    root = project(tmp_path / "p", url)
    daemon = Daemon(root, port=0, clock=lambda: NOW, env={})
    daemon.server.start()
    try:
        yield daemon
    finally:
        daemon.shutdown()


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return int(response.status), response.read().decode()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read().decode()


def test_each_suite_runs_on_its_cron_in_its_timezone_once_at_a_time(agent: Daemon) -> None:
    agent.step()  # the only replica: it leads
    assert agent.leadership.holds()
    orders = agent.scheduler.get_job("suite:orders")
    assert orders.trigger.timezone == ZoneInfo("Europe/Berlin")
    assert str(orders.trigger) == (
        "cron[month='*', day='*', day_of_week='mon,tue,wed,thu,fri', hour='6', minute='0']"
    )
    assert (orders.coalesce, orders.misfire_grace_time, orders.max_instances) == (True, 300, 1)
    monday = datetime(2026, 11, 30, 0, 0, tzinfo=UTC)
    assert orders.trigger.get_next_fire_time(None, monday) == datetime(
        2026, 11, 30, 6, 0, tzinfo=ZoneInfo("Europe/Berlin")
    )
    assert {job.id for job in agent.scheduler.get_jobs()} == {
        "suite:orders",
        "suite:payments",
        "tick",
        "reload",
    }
    cycle = agent.run_suite("orders")  # what the scheduler calls at 06:00 Berlin time
    assert cycle is not None
    assert [(r.suite, r.status) for r in cycle.results] == [("orders", "fail")]
    assert [n.event for n in cycle.notices] == ["opened"]


def test_suite_files_are_picked_up_without_a_restart(agent: Daemon) -> None:
    agent.step()
    checks = agent.root / "checks"
    (checks / "payments.yml").write_text(EVERY_HALF_HOUR.replace("*/30", "*/15"))
    (checks / "refunds.yml").write_text(
        EVERY_HALF_HOUR.replace("payments", "refunds").replace("*/30 * * * *", "0 * * * *")
    )
    assert sorted(agent.reload()) == ["payments: changed", "refunds: added"]
    assert "minute='*/15'" in str(agent.scheduler.get_job("suite:payments").trigger)
    assert agent.scheduler.get_job("suite:refunds") is not None

    # A broken file: the last good version keeps running, and its owner hears why.
    (checks / "orders.yml").write_text(BERLIN_SUITE.replace("row_count", "row_cont"))
    assert agent.reload() == ["orders: broken, kept"]
    assert agent.project is not None and "orders" in agent.project.suites
    assert agent.scheduler.get_job("suite:orders") is not None
    [broken] = agent.store.incidents(active=True)
    assert (broken["suite"], broken["check"], broken["owners"]) == (
        "orders",
        "(config)",
        ["pete@acme.com"],
    )
    assert "unknown check type 'row_cont'" in broken["summary"]
    assert agent.reload() == []  # the same breakage is told once

    (checks / "orders.yml").write_text(BERLIN_SUITE)  # fixed (a line lower than before)
    assert agent.reload() == ["orders: changed"]
    assert agent.store.incident(broken["id"])["status"] == "resolved"  # type: ignore[index]
    (checks / "refunds.yml").unlink()
    assert agent.reload() == ["refunds: removed"]
    assert agent.scheduler.get_job("suite:refunds") is None


def test_a_suite_without_a_schedule_is_not_scheduled_and_the_daemon_says_so(
    agent: Daemon, caplog: pytest.LogCaptureFixture
) -> None:
    agent.step()
    checks = agent.root / "checks"
    (checks / "adhoc.yml").write_text(
        EVERY_HALF_HOUR.replace("payments", "adhoc").replace('schedule: "*/30 * * * *"\n', "")
    )
    with caplog.at_level(logging.WARNING, logger="dq_agent.daemon.service"):
        assert agent.reload() == ["adhoc: added"]
    assert agent.scheduler.get_job("suite:adhoc") is None
    assert [r.getMessage() for r in caplog.records] == [
        f"suite adhoc has no schedule: it runs only with dq-agent run (add schedule: to "
        f"{checks / 'adhoc.yml'})"
    ]


def test_transient_failures_are_retried_in_the_runbooks_window() -> None:
    [suite] = [s for s in _suites(BERLIN_SUITE)]
    assert retry_windows(suite.runbook) == [
        (datetime(1, 1, 1, 2, 47).time(), datetime(1, 1, 1, 3, 12).time())
    ]
    night = datetime(2026, 11, 24, 1, 0, tzinfo=UTC)
    assert next_retry(suite, 0, night) == datetime(2026, 11, 24, 2, 47, tzinfo=UTC)
    inside = datetime(2026, 11, 24, 2, 50, tzinfo=UTC)
    assert next_retry(suite, 0, inside) == inside + timedelta(minutes=1)
    late = datetime(2026, 11, 24, 3, 0, tzinfo=UTC)
    assert next_retry(suite, 2, late) is None  # 15 minutes on, the window has closed
    day = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
    assert next_retry(suite, 0, day) == datetime(2026, 11, 25, 2, 47, tzinfo=UTC)
    [plain] = _suites(EVERY_HALF_HOUR)
    assert [next_retry(plain, n, day) for n in range(4)] == [
        day + timedelta(minutes=1),
        day + timedelta(minutes=5),
        day + timedelta(minutes=15),
        None,
    ]


def _suites(text: str) -> list[Any]:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        root = project(Path(tmp), f"sqlite:///{tmp}/w.db")
        (root / "checks" / "payments.yml").write_text(text)
        (root / "checks" / "orders.yml").unlink()
        loaded = load_project(root, env={})
        return list(loaded.suites.values())


def test_health_and_metrics(agent: Daemon) -> None:
    status, body = get(agent.server.base_url + "/healthz")
    assert (status, json.loads(body)["role"]) == (200, "standby")
    agent.step()
    agent.run_suite("orders")
    status, body = get(agent.server.base_url + "/healthz")
    assert status == 200
    assert json.loads(body) == {
        "status": "ok",
        "role": "leader",
        "scheduler": "running",
        "store": "ok",
        "suites": 2,
    }
    status, metrics = get(agent.server.base_url + "/metrics")
    assert status == 200
    assert 'dq_agent_runs_total{suite="orders",status="fail"} 1' in metrics
    assert "dq_agent_leader 1" in metrics
    assert "dq_agent_incidents_open 1" in metrics
    assert 'dq_agent_run_duration_seconds_count{suite="orders"} 1' in metrics
    assert "dq_agent_outbox_depth 0" in metrics
    assert "dq_agent_slack_rate_limit_waits_total 0" in metrics


def test_a_cron_time_queues_a_run_and_a_replica_claims_and_runs_it(agent: Daemon) -> None:
    agent.step()
    assert agent.scheduler.get_job("suite:orders").func == agent.enqueue_due
    assert agent.enqueue_due("orders") is True
    assert agent.enqueue_due("orders") is False  # the next cron time coalesces into it
    cycle = agent.work_once()
    assert cycle is not None and [(r.suite, r.status) for r in cycle.results] == [
        ("orders", "fail")
    ]
    assert agent.work_once() is None  # nothing else is due
    [run] = queue.history(agent.store, since=NOW - timedelta(days=1))
    assert (run.suite, run.status, run.attempts, run.claimed_by) == (
        "orders",
        "fail",
        1,
        agent.replica,
    )
    metrics = agent.metrics.render(agent.store, leader=True, now=NOW)
    assert "dq_agent_queue_depth 0" in metrics
    assert "dq_agent_queued_runs_claimed_total 1" in metrics
    assert 'dq_agent_queued_runs_finished_total{status="fail"} 1' in metrics
    assert "dq_agent_schedule_lag_seconds_count 1" in metrics


def test_a_queued_run_of_a_suite_removed_since_is_finished_not_retried(agent: Daemon) -> None:
    agent.step()
    assert agent.enqueue_due("payments")
    (agent.root / "checks" / "payments.yml").unlink()
    assert agent.reload() == ["payments: removed"]
    assert agent.work_once() is None
    [run] = queue.history(agent.store, since=NOW - timedelta(days=1))
    assert (run.suite, run.status) == ("payments", "removed")
    assert agent.work_once() is None  # and it is not claimed again


def test_replicas_share_the_queue_and_take_over_a_dead_ones_run(
    tmp_path: Path, postgres_url: str
) -> None:
    url = f"sqlite:///{tmp_path / 'w.db'}"
    load_orders(url, order_rows(3, newest=NOW))
    root = project(tmp_path / "p", url, state_url=postgres_url)
    now = [NOW]
    first = Daemon(root, port=0, clock=lambda: now[0], env={})
    second = Daemon(root, port=0, clock=lambda: now[0], env={})
    try:
        first.step()  # leads: its cron jobs queue the runs
        assert first.enqueue_due("orders") and first.enqueue_due("payments")
        ran = [d.work_once() for d in (first, second)]
        assert [c.results[0].suite if c else None for c in ran] == ["orders", "payments"]
        assert first.work_once() is None and second.work_once() is None

        # A third replica claims the next orders run and dies holding it.
        now[0] = NOW + timedelta(hours=1)
        assert first.enqueue_due("orders")
        dead = queue.claim(first.store, by="dead", now=now[0], lease=timedelta(minutes=2))
        assert dead is not None
        now[0] += timedelta(minutes=1)
        assert second.work_once() is None  # its lease still holds
        now[0] += timedelta(minutes=2)
        taken = second.work_once()  # lapsed: taken over
        assert taken is not None and taken.results[0].suite == "orders"
        runs = queue.history(first.store, since=NOW)
        assert [(r.suite, r.attempts, r.claimed_by == second.replica) for r in runs] == [
            ("orders", 1, False),
            ("payments", 1, True),
            ("orders", 2, True),
        ]
        assert all(r.finished_at is not None for r in runs)
    finally:
        second.shutdown()
        first.shutdown()


def test_the_daemon_serves_the_dashboard(agent: Daemon) -> None:
    status, body = get(agent.server.base_url + "/login")
    assert status == 200
    assert "<h1>Sign in</h1>" in body
    # Anything else asks to sign in first (urllib follows the redirect to the form).
    status, body = get(agent.server.base_url + "/corrections")
    assert (status, "<h1>Sign in</h1>" in body) == (200, True)


def _start(root: Path) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "dq_agent.cli",
            "daemon",
            "--project",
            str(root),
            "--listen",
            "127.0.0.1:0",
        ],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert process.stderr is not None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        if "serving on " in line:
            return process, line.rsplit("serving on ", 1)[1].strip()
        if not line and process.poll() is not None:
            break
    process.kill()
    raise AssertionError("the daemon did not start")


def _role(url: str) -> str | None:
    try:
        return str(json.loads(get(url + "/healthz")[1])["role"])
    except (OSError, ValueError):
        return None


def test_sigterm_stops_cleanly(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'w.db'}"
    load_orders(url, order_rows(3, newest=NOW))
    root = project(tmp_path / "p", url)
    process, base = _start(root)
    try:
        deadline = time.monotonic() + 30
        while _role(base) != "leader" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _role(base) == "leader"
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()
        assert process.stderr is not None
        process.stderr.close()


def test_replicas_elect_one_leader_and_fail_over(tmp_path: Path, postgres_url: str) -> None:
    url = f"sqlite:///{tmp_path / 'w.db'}"
    load_orders(url, order_rows(3, newest=NOW))
    root = project(tmp_path / "p", url, state_url=postgres_url)
    replicas = [_start(root) for _ in range(3)]
    try:
        deadline = time.monotonic() + 30
        roles: list[str | None] = []
        while time.monotonic() < deadline:
            roles = [_role(base) for _, base in replicas]
            if roles.count("leader") == 1 and roles.count("standby") == 2:
                break
            time.sleep(0.05)
        assert sorted(map(str, roles)) == ["leader", "standby", "standby"]
        leader = roles.index("leader")
        replicas[leader][0].kill()  # no goodbye: the lock goes with its connection
        replicas[leader][0].wait()
        survivors = [r for i, r in enumerate(replicas) if i != leader]
        started = time.monotonic()
        while time.monotonic() - started < 15:
            roles = [_role(base) for _, base in survivors]
            if roles.count("leader") == 1:
                break
            time.sleep(0.05)
        assert sorted(map(str, roles)) == ["leader", "standby"]
        assert time.monotonic() - started < 15
    finally:
        for process, _ in replicas:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process, _ in replicas:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            assert process.stderr is not None
            process.stderr.close()


@pytest.mark.parametrize(
    ("field", "days"),
    [
        ("1-5", "mon,tue,wed,thu,fri"),  # APScheduler's from_crontab would run Tue-Sat
        ("0", "sun"),
        ("7", "sun"),
        ("*/2", "tue,thu,sat,sun"),  # cron counts from Sunday: 0, 2, 4, 6
        ("5-7", "fri,sat,sun"),
        ("mon-fri", "mon,tue,wed,thu,fri"),
        ("*", "*"),
    ],
)
def test_cron_days_of_the_week_mean_what_cron_means(field: str, days: str) -> None:
    from dq_agent.config.schedule import cron_days

    assert cron_days(field) == days


def test_a_stop_mid_run_lets_the_run_finish_and_starts_nothing_new(tmp_path: Path) -> None:
    import threading

    from dq_agent.store import Store

    url = f"sqlite:///{tmp_path / 'w.db'}"
    load_orders(url, [])
    go = tmp_path / "go"
    wait_for_go = f"import os, time\nwhile not os.path.exists({str(go)!r}): time.sleep(0.01)"
    root = make_project(
        tmp_path / "p",
        connectors={"warehouse": f"type: sql\nurl: '{url}'\n"},
        suites={
            "orders": f"""
            suite: orders
            owner: pete@acme.com
            source: {{connector: warehouse, table: orders}}
            checks: [row_count]
            restart:
              - command: {{run: ["{sys.executable}", "-c", {json.dumps(wait_for_go)}]}}
            """
        },
        settings=f"state_url: 'sqlite:///{tmp_path}/state.db'\n",
    )
    daemon = Daemon(root, port=0, clock=lambda: NOW, env={})
    daemon.run_suite("orders")  # empty: an incident
    load_orders(url, order_rows(3, newest=NOW))
    running = threading.Thread(target=daemon.run_suite, args=("orders",))
    running.start()  # green again: the restart command runs, and waits
    state_url = f"sqlite:///{tmp_path}/state.db"
    deadline = time.monotonic() + 30
    with Store.open(state_url) as store:
        while time.monotonic() < deadline and [r.state for r in store.restarts()] != ["running"]:
            time.sleep(0.01)
        assert [r.state for r in store.restarts()] == ["running"]

    stopping = threading.Thread(target=daemon.shutdown)
    stopping.start()
    stopping.join(timeout=0.3)
    assert stopping.is_alive()  # the stop waits for the run in progress
    go.touch()
    running.join(timeout=30)
    stopping.join(timeout=30)
    assert not stopping.is_alive() and not running.is_alive()
    assert daemon.run_suite("orders") is None  # stopped: no new runs
    with Store.open(state_url) as store:
        assert [r.state for r in store.restarts()] == ["verified"]
        assert store.incident(1)["status"] == "resolved"  # type: ignore[index]


def test_json_logs_are_one_object_per_line(capsys: pytest.CaptureFixture[str]) -> None:
    import logging

    from dq_agent.daemon.logs import configure_logging

    logger = logging.getLogger("dq_agent")
    try:
        configure_logging("json")
        logging.getLogger("dq_agent.daemon.service").warning("lost the %s", "leadership")
        [line] = capsys.readouterr().err.splitlines()
        doc = json.loads(line)
        assert {k: doc[k] for k in ("level", "logger", "message")} == {
            "level": "warning",
            "logger": "dq_agent.daemon.service",
            "message": "lost the leadership",
        }
        assert datetime.fromisoformat(doc["at"]).tzinfo is not None
    finally:
        logger.handlers.clear()
        logger.propagate = True
        logger.setLevel(logging.NOTSET)


def test_the_daemon_prunes_old_run_history_once_an_hour(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'w.db'}"
    load_orders(url, order_rows(3))
    root = project(tmp_path / "p", url)
    settings = root / "dq-agent.yml"
    settings.write_text(settings.read_text() + "retention: {days: 40}\n")
    now = [NOW - timedelta(days=100)]
    daemon = Daemon(root, port=0, clock=lambda: now[0], env={})
    try:
        for _ in range(3):  # runs 100, 70 and 40 days ago
            daemon.run_suite("orders")
            now[0] += timedelta(days=30)
        now[0] = NOW
        daemon.run_suite("orders")
        daemon.tick_once()
        metrics = daemon.metrics.render(daemon.store, leader=True)
        # Older than 40 days: the runs 100 and 70 days ago (40 days ago is on the edge: kept).
        assert 'dq_agent_pruned_rows_total{table="suite_runs"} 2' in metrics
        daemon.run_suite("orders")
        daemon.tick_once()  # within the hour: not again
        assert daemon.metrics.pruned["suite_runs"] == 2
        assert len(daemon.store.suite_runs("orders", limit=10)) == 3
    finally:
        daemon.shutdown()


def test_a_second_daemon_on_sqlite_says_it_stands_by(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"sqlite:///{tmp_path / 'w.db'}"
    load_orders(url, [])
    root = project(tmp_path / "p", url)
    first = Daemon(root, port=0, clock=lambda: NOW, env={})
    second = Daemon(root, port=0, clock=lambda: NOW, env={})
    try:
        first.step()
        with caplog.at_level(logging.WARNING, logger="dq_agent.daemon.service"):
            second.step()
            second.step()  # said once
        told = [r.getMessage() for r in caplog.records if "SQLite" in r.getMessage()]
        assert told == [
            "another dq-agent daemon works on this SQLite state store: only one replica works "
            "on SQLite, so this one stands by until it stops (a PostgreSQL state_url lets "
            "replicas take over from each other)"
        ]
        assert first.leadership.holds() and not second.leadership.holds()
        assert first.enqueue_due("orders")
        assert second.work_once() is None  # only the leader works on SQLite
        assert first.work_once() is not None
    finally:
        second.shutdown()
        first.shutdown()
