"""Benchmark: daemon replicas sharing a thousand suites through the run queue, one killed.

A project of ``--suites`` suites (default 1,000), each a ``row_count`` and a ``freshness`` check
on one of 20 small PostgreSQL tables, with mixed crons spread over the hour as people write
them (a quarter each every 5, 15 and 30 minutes and hourly, at different minutes). The state
store is a PostgreSQL database of its own. For each replica count in ``--replicas`` (default
1,2,3), ``--minutes`` simulated minutes (default 60) are played:

- each simulated minute, the suites whose cron fires are queued, as the leader's scheduler
  queues them, due at that minute;
- the replicas (real processes running ``Daemon.work_once`` against the store) claim and run
  them; the minute ends when every due run is finished, and the next begins at once (no
  waiting for the rest of a minute: the clock is injected, and it moves with real time within
  a minute, so a run's lag is the real time it waited in the queue);
- with two replicas or more, one is killed with SIGKILL half-way, in the middle of its runs:
  its claimed run is taken over when its lease (shortened to 5 s here) lapses.

Printed per replica count: runs due, finished, lost and run twice (suite runs recorded by the
checks beyond the queue's: a run killed mid-cycle and taken over records twice, its actions
do not, as the ledger and outbox make them once), scheduling lag p50/p99/max (due → claimed),
throughput, and each replica's peak RSS. Nothing is asserted.

With ``--soak N`` it instead runs N queued runs back to back on one replica and prints its
resident memory every tenth of the way.

Usage: ``.venv/bin/python benchmarks/replicas.py [--suites N] [--replicas 1,2,3] [--minutes M]
[--postgres-url URL] [--soak N]``
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import sqlalchemy as sa  # noqa: E402

from dq_agent.config.schedule import cron_trigger  # noqa: E402
from dq_agent.store import Store, queue  # noqa: E402

DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
# The warehouse schema and (with "_state") the state store's database; --name changes both.
NAME = "dq_bench_replicas"
TABLES = 20
T0 = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)  # a Monday


def crons(count: int) -> list[str]:
    """Mixed schedules, spread over the minutes of the hour."""
    found = []
    for i in range(count):
        kind = i % 4
        if kind == 0:
            found.append(f"{i % 5}-59/5 * * * *")
        elif kind == 1:
            found.append(f"{i % 15}-59/15 * * * *")
        elif kind == 2:
            found.append(f"{i % 30}-59/30 * * * *")
        else:
            found.append(f"{i % 60} * * * *")
    return found


def setup(base_url: str, suites: int, folder: Path, name: str) -> tuple[Path, str]:
    """The warehouse tables, a fresh state database and the project; the project and the
    state store's URL."""
    engine = sa.create_engine(base_url)
    schema = name
    with engine.begin() as conn:
        conn.execute(sa.text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
        conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
        for t in range(TABLES):
            conn.execute(
                sa.text(f"CREATE TABLE {schema}.t{t} (id int primary key, at timestamptz)")
            )
            conn.execute(
                sa.text(f"INSERT INTO {schema}.t{t} SELECT g, now() FROM generate_series(1, 50) g")
            )
    engine.dispose()
    state_url = fresh_state(base_url, f"{name}_state")
    (folder / "checks").mkdir(parents=True)
    (folder / "connectors").mkdir()
    (folder / "connectors" / "w.yml").write_text(
        f"type: sql\nurl: '{base_url}'\nschema: {schema}\n"
    )
    for i, cron in enumerate(crons(suites)):
        (folder / "checks" / f"s{i:04d}.yml").write_text(
            f"suite: s{i:04d}\nowner: data@acme.com\nschedule: '{cron}'\n"
            f"source: {{connector: w, table: t{i % TABLES}}}\n"
            "checks:\n  - row_count: {min: 1}\n  - freshness: {column: at, max_age: 3650d}\n"
        )
    (folder / "dq-agent.yml").write_text(f"state_url: '{state_url}'\n")
    return folder, state_url


def fresh_state(base_url: str, database: str) -> str:
    url = sa.make_url(base_url).set(query={})
    admin = sa.create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)"))
        conn.execute(sa.text(f"CREATE DATABASE {database}"))
    admin.dispose()
    return url.set(database=database).render_as_string(hide_password=False)


def due_in_minute(suites: dict[str, Any], minute: datetime) -> list[str]:
    """The suites whose cron fires at ``minute``."""
    before = minute - timedelta(seconds=1)
    return [
        name
        for name, trigger in suites.items()
        if trigger.get_next_fire_time(None, before) == minute
    ]


def play(project: Path, state_url: str, replicas: int, minutes: int, kill: bool) -> dict[str, Any]:
    from dq_agent.config import load_project

    loaded = load_project(project, env={})
    triggers = {s.suite: cron_trigger(s.schedule or "", s.timezone) for s in loaded.suites.values()}
    clock_file = project / "clock"
    stop_file = project / "stop"
    set_clock(clock_file, T0)
    children = [
        subprocess.Popen(
            [sys.executable, __file__, "--child", str(project), f"r{n}"],
            stdout=subprocess.PIPE,
            text=True,
        )
        for n in range(replicas)
    ]
    due = coalesced = 0
    killed: dict[str, Any] | None = None
    started = time.perf_counter()
    with Store.open(state_url) as store:
        for m in range(minutes):
            minute = T0 + timedelta(minutes=m)
            set_clock(clock_file, minute)
            for name in due_in_minute(triggers, minute):
                if queue.enqueue(store, name, minute):
                    due += 1
                else:
                    coalesced += 1
            if kill and replicas > 1 and m == minutes // 2:
                holding(store, "r0", since=minute)  # in the middle of a run
                victim = children[0]
                killed = {
                    "replica": "r0",
                    "process": victim,
                    "peak_rss_mb": _peak_rss_mb(victim.pid),
                }
                victim.send_signal(signal.SIGKILL)
                victim.wait()
            while queue.depth(store, now=minute + timedelta(days=1)):
                dead = [c for c in children if c.poll() is not None and c is not victim_of(killed)]
                if dead:
                    raise SystemExit(f"a replica died on its own (exit {dead[0].returncode})")
                time.sleep(0.02)
        elapsed = time.perf_counter() - started
        runs = queue.history(store, since=T0)
        with store.engine.connect() as conn:
            recorded = conn.execute(sa.text("SELECT count(*) FROM suite_runs")).scalar_one()
    stop_file.touch()
    reports = [json.loads(c.communicate()[0] or "{}") for c in children if c.returncode is None]
    lags = sorted(
        (r.started_at - r.due_at).total_seconds() for r in runs if r.started_at is not None
    )
    finished = [r for r in runs if r.finished_at is not None]
    return {
        "replicas": replicas,
        "due": due,
        "coalesced": coalesced,
        "finished": len(finished),
        "lost": due - len(finished),
        "taken_over": sum(1 for r in runs if r.attempts > 1),
        "recorded_twice": recorded - len(finished),
        "lag_p50": statistics.median(lags) if lags else 0.0,
        "lag_p99": lags[int(0.99 * (len(lags) - 1))] if lags else 0.0,
        "lag_max": lags[-1] if lags else 0.0,
        "seconds": elapsed,
        "runs_per_s": len(finished) / elapsed if elapsed else 0.0,
        "peak_rss_mb": {r["name"]: r["peak_rss_mb"] for r in reports if r}
        | ({killed["replica"] + " (killed)": killed["peak_rss_mb"]} if killed else {}),
    }


def set_clock(path: Path, moment: datetime) -> None:
    """The simulated time ``moment`` starts now (replaced at once: readers never see half)."""
    partial = path.with_suffix(".new")
    partial.write_text(f"{moment.isoformat()} {time.time()}")
    os.replace(partial, path)


def victim_of(killed: dict[str, Any] | None) -> Any:
    return killed["process"] if killed else None


def holding(store: Store, replica: str, *, since: datetime, wait_s: float = 10.0) -> bool:
    """Wait until ``replica`` holds an unfinished run (at most ``wait_s``)."""
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        runs = queue.history(store, since=since)
        if any(r.claimed_by == replica and r.finished_at is None for r in runs):
            return True
        time.sleep(0.005)
    return False


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def child(project: Path, name: str) -> None:
    """One replica: claim and run due runs until the stop file appears."""
    import resource

    from dq_agent.daemon import service

    service.LEASE = timedelta(seconds=5)  # a killed replica's run is taken over quickly
    clock_file = project / "clock"

    def clock() -> datetime:
        text = clock_file.read_text().split()
        return datetime.fromisoformat(text[0]) + timedelta(seconds=time.time() - float(text[1]))

    daemon = service.Daemon(project, port=0, clock=clock, env={})
    daemon.replica = name
    while not (project / "stop").exists():
        if daemon.work_once() is None:
            time.sleep(0.02)
    daemon.store.close()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"name": name, "peak_rss_mb": round(peak, 1)}))


def soak(base_url: str, cycles: int, name: str) -> None:
    """One replica running ``cycles`` queued runs of 10 suites back to back: its RSS every
    tenth of the way (flat memory means nothing accumulates per cycle)."""
    import resource

    from dq_agent.daemon.service import Daemon

    with tempfile.TemporaryDirectory() as tmp:
        project, _ = setup(base_url, 10, Path(tmp) / "p", name)
        now = [T0]
        daemon = Daemon(project, port=0, clock=lambda: now[0], env={})
        suites = sorted(daemon.project.suites) if daemon.project else []
        daemon.step()  # the only replica: it leads
        print(f"soak: {cycles:,} cycles of {len(suites)} suites, one replica")
        print("cycles   RSS MB   peak MB")
        try:
            for n in range(cycles):
                now[0] = T0 + timedelta(minutes=n)
                queue.enqueue(daemon.store, suites[n % len(suites)], now[0])
                daemon.work_once()
                if (n + 1) % max(1, cycles // 10) == 0:
                    rss = _rss_mb(os.getpid())
                    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
                    print(f"{n + 1:>6,} {rss:>8.1f} {peak:>9.1f}", flush=True)
        finally:
            daemon.shutdown()


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--suites", type=int, default=1000)
    parser.add_argument("--replicas", default="1,2,3")
    parser.add_argument("--minutes", type=int, default=60)
    parser.add_argument("--no-kill", action="store_true", help="kill no replica half-way")
    parser.add_argument("--postgres-url", default=os.environ.get("DQ_AGENT_TEST_POSTGRES_URL"))
    parser.add_argument("--name", default=NAME, help="the warehouse schema; NAME_state the store")
    parser.add_argument("--child", nargs=2, metavar=("PROJECT", "NAME"), help=argparse.SUPPRESS)
    parser.add_argument("--soak", type=int, default=0, help="instead: N cycles on one replica")
    args = parser.parse_args()
    if args.child:
        child(Path(args.child[0]), args.child[1])
        return
    base_url = args.postgres_url or DEFAULT_POSTGRES_URL
    if args.soak:
        soak(base_url, args.soak, f"{args.name}_soak")
        return
    print(f"{args.suites:,} suites, {args.minutes} simulated minutes")
    print(
        "replicas   due  finished  lost  taken over  recorded twice  lag p50   p99    max"
        "   runs/s  peak RSS MB"
    )
    for count in [int(n) for n in args.replicas.split(",")]:
        with tempfile.TemporaryDirectory() as tmp:
            project, state_url = setup(base_url, args.suites, Path(tmp) / "p", args.name)
            r = play(project, state_url, count, args.minutes, kill=not args.no_kill)
        rss = ", ".join(f"{k} {v:.0f}" for k, v in sorted(r["peak_rss_mb"].items()))
        print(
            f"{r['replicas']:>8} {r['due']:>5} {r['finished']:>9} {r['lost']:>5} "
            f"{r['taken_over']:>11} {r['recorded_twice']:>15} {r['lag_p50']:>7.2f}s "
            f"{r['lag_p99']:>5.2f}s {r['lag_max']:>5.2f}s {r['runs_per_s']:>8.1f}  {rss}"
        )


if __name__ == "__main__":
    main()
