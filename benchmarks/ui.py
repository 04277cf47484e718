"""Benchmark: whether the dashboard's pages render in under 200 ms over a busy state store.

Builds a project of generated suites (5–10 checks each; a ``volume_anomaly``, a
``fat_finger``, a ``column_anomaly`` or a ``distribution_shift`` on some of them) and a state
store holding 10,000 suite runs over about 55 days and 1,000 incidents, 3% of them still
open. Every scheduler cycle is played through the product's own code, as the daemon runs it:
``Store.start_run``/``record_suite``/``finish_run`` (check results, metrics, bucket values),
``track`` opening, updating and resolving the incidents (an event per failing run),
``Escalation.announce`` and ``cadence`` planning the Slack thread (reminders, the escalation
chain), every message due marked sent as a delivery marks it; owners answer through
``set_incident_status`` and ``add_feedback``, and fat-finger corrections go through
``ledger_append``. The sources need not exist: the pages read only the store and the project.

The store keeps one incident per problem (suite, check, dataset) and re-opens it when the
problem comes back, so 1,000 incidents take 1,000 problems: by default the project has as
many suites as that needs (174), two of them running every 30 and 60 minutes (where the
long-running incidents are), the others daily, on weekdays or weekly.

Then it times every page the dashboard serves, in process through ``Dashboard.handle`` for
a user a proxy vouches for (``ui.trusted_header``), over ``--repeat`` requests after one
warm-up: median and p95 milliseconds, the page's size, and the SQL statements it sent
(SQLAlchemy's ``before_cursor_execute`` on the store's engine). The same pages are timed over a
nearly empty store (10 suite runs, 10 incidents, the same project), and the ratio printed.
Target: p95 ≤ 200 ms on the full store; a miss is printed as ``MISS``, not an error. Last, the
slowest pages are profiled (cProfile, the product's functions by cumulative time) with their
statements by total time and the plan of the slowest one.

Usage: ``.venv/bin/python benchmarks/ui.py [--quick] [--runs N] [--incidents N]
[--repeat N] [--suites N] [--state-url URL] [--profile N] [--seed N]``
"""

from __future__ import annotations

import argparse
import cProfile
import dataclasses
import math
import pstats
import random
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
import zlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: make the `benchmarks` package importable
    sys.path.insert(0, str(ROOT))

from dq_agent.config import load_project  # noqa: E402
from dq_agent.config.loader import Project  # noqa: E402
from dq_agent.config.models import Suite  # noqa: E402
from dq_agent.engine import RunOptions  # noqa: E402
from dq_agent.escalate.endpoint import WebRequest  # noqa: E402
from dq_agent.escalate.incidents import Notice, track  # noqa: E402
from dq_agent.escalate.notify import Escalation  # noqa: E402
from dq_agent.results import CheckResult, Finding, SuiteResult, worst  # noqa: E402
from dq_agent.store import Store  # noqa: E402
from dq_agent.store.models import (  # noqa: E402
    BucketValue,
    CheckResultRow,
    Incident,
    IncidentEvent,
    LedgerEntry,
    Metric,
    OutboxMessage,
    SuiteRun,
)
from dq_agent.ui.app import Dashboard  # noqa: E402

TARGET_MS = 200.0
END = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)  # a Tuesday noon: the last run
NOW = END + timedelta(minutes=5)  # when the pages are looked at
DAYS = 60
HEADER = "X-Forwarded-Email"
USER = "ana@acme.com"
# Problems (suite, check) per suite, on average: the checks, 5–10 of them.
CHECKS_PER_SUITE = 7.5
# Share of the incidents still open at the end, and of the problems left without one.
OPEN_SHARE = 0.03
SPARE_PROBLEMS = 0.3
DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"

DOMAINS = (
    *("sales", "crm", "billing", "finance", "payments", "marketing", "support", "product"),
    *("hr", "ops", "logistics", "inventory", "web", "mobile", "ads", "risk", "fraud", "legal"),
    "partner",
)
TABLES = (
    *("orders", "accounts", "invoices", "events", "sessions", "leads", "tickets", "refunds"),
    *("shipments", "users"),
)
TEAMS = ("data-eng", "finance-data", "sales-ops", "growth", "platform", "analytics")

# -- the project ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Schedule:
    cron: str
    every: timedelta | None = None  # every N minutes from midnight; else at hour:minute
    hour: int = 0
    minute: int = 0
    weekdays: frozenset[int] = frozenset(range(7))  # Monday is 0

    def ticks(self, start: datetime, end: datetime) -> Iterator[datetime]:
        """The moments in (start, end] it fires at, UTC."""
        day = start.replace(hour=0, minute=0, second=0, microsecond=0)
        while day <= end:
            if self.every is not None:
                moments = [day + self.every * i for i in range(int(timedelta(days=1) / self.every))]
            elif day.weekday() in self.weekdays:
                moments = [day.replace(hour=self.hour, minute=self.minute)]
            else:
                moments = []
            yield from (m for m in moments if start < m <= end)
            day += timedelta(days=1)


def schedule_of(index: int) -> Schedule:
    """Two suites every 30 and 60 minutes; of the others, about a third each daily, on
    weekdays and weekly: 10,000 runs in about 55 days with 174 suites."""
    if index == 0:
        return Schedule("*/30 * * * *", every=timedelta(minutes=30))
    if index == 1:
        return Schedule("0 * * * *", every=timedelta(hours=1))
    hour, minute, kind = 2 + index % 8, (index * 7) % 60, index % 20
    if kind < 7:
        return Schedule(f"{minute} {hour} * * *", hour=hour, minute=minute)
    if kind < 13:
        weekdays = frozenset(range(5))
        return Schedule(f"{minute} {hour} * * 1-5", hour=hour, minute=minute, weekdays=weekdays)
    day = index % 5
    return Schedule(
        f"{minute} {hour} * * {day + 1}", hour=hour, minute=minute, weekdays=frozenset({day})
    )


def suite_name(index: int) -> str:
    domain, table = DOMAINS[index % len(DOMAINS)], TABLES[(index // len(DOMAINS)) % len(TABLES)]
    cycle = index // (len(DOMAINS) * len(TABLES))
    return f"{domain}_{table}" + (f"_{cycle + 1}" if cycle else "")


def suite_yaml(index: int, schedule: Schedule) -> str:
    team = TEAMS[index % len(TEAMS)]
    checks = [
        "row_count: {min: 100}",
        "freshness: {column: updated_at, max_age: 26h}",
        "expect_column_values_to_not_be_null: {column: customer_id}",
        "expect_column_values_to_be_unique: {column: id}",
        "expect_column_values_to_be_between: {column: amount, min_value: 0}",
    ]
    if index % 3 != 2:
        checks.append("expect_column_values_to_be_in_set: {column: status, value_set: [new, paid]}")
    if index % 2 == 0:
        checks.append("expect_column_values_to_not_be_null: {column: status, severity: warn}")
    # Every suite that runs more than daily has each kind of check; the others, some.
    if index < 2 or index % 4 == 0:
        checks.append("volume_anomaly: {timestamp_column: created_at, bucket: day}")
    if index < 2 or index % 5 == 1:
        checks.append('fat_finger: {column: amount, witness: "quantity * unit_price"}')
    if index < 2 or index % 10 == 3:
        checks.append(
            "column_anomaly: {timestamp_column: created_at, column: discount, metrics: [null_rate]}"
        )
    if index < 2 or index % 15 == 7:
        checks.append("distribution_shift: {timestamp_column: created_at, column: amount}")
    name = suite_name(index)
    listed = "".join(f"  - {c}\n" for c in checks)
    return (
        f"suite: {name}\ndescription: {name.replace('_', ' ')} from the warehouse\n"
        f"schedule: '{schedule.cron}'\nowner: {team}@acme.com\n"
        f"escalation: [{team}@acme.com, {team}-lead@acme.com, '#data-alerts']\n"
        f"source: {{connector: warehouse, table: {name}}}\nkey: [id]\nchecks:\n{listed}"
    )


# When the generated project's people are told: messages wait for these hours.
WORKING_HOURS = "{start: '09:00', end: '18:00', days: [mon, tue, wed, thu, fri]}"


def write_project(
    root: Path, suites: int, state_url: str, *, working_hours: str = WORKING_HOURS
) -> Project:
    (root / "connectors").mkdir(parents=True)
    (root / "checks").mkdir()
    (root / "connectors" / "warehouse.yml").write_text(
        f"type: sql\nurl: 'sqlite:///{root}/warehouse.db'\n", encoding="utf-8"
    )
    for i in range(suites):
        (root / "checks" / f"{suite_name(i)}.yml").write_text(
            suite_yaml(i, schedule_of(i)), encoding="utf-8"
        )
    (root / "dq-agent.yml").write_text(
        f"state_url: '{state_url}'\n"
        f"ui: {{trusted_header: {HEADER}}}\n"
        f"nudges: {{every: 4h, escalate_after: 2, working_hours: {working_hours}}}\n",
        encoding="utf-8",
    )
    project = load_project(root, env={})
    if project.issues:
        raise SystemExit("\n".join(str(i) for i in project.issues))
    return project


# -- what happens over the days: which runs fail -------------------------------------------------


@dataclass
class Plan:
    """Every suite run (time order) and, per problem, the runs it fails on (by run index)."""

    runs: list[tuple[datetime, str]]
    runs_of: dict[str, list[datetime]]
    failing: dict[tuple[str, str], list[tuple[int, int]]] = field(default_factory=dict)
    open_problems: int = 0

    def fails(self, suite: str, check: str, index: int) -> bool:
        return any(a <= index <= b for a, b in self.failing.get((suite, check), ()))


def plan(project: Project, runs: int, incidents: int, rng: random.Random) -> Plan:
    """The last ``runs`` scheduled runs, and ``incidents`` problems failing on some of them."""
    schedules = {suite_name(i): schedule_of(i) for i in range(len(project.suites))}
    days = DAYS
    while True:
        start = END - timedelta(days=days)
        ticks = sorted((t, s) for s, sch in schedules.items() for t in sch.ticks(start, END))
        if len(ticks) >= runs:
            break
        days *= 2
    ticks = ticks[-runs:] if runs else []
    span = ticks[-1][0] - ticks[0][0] if ticks else timedelta(0)
    runs_of: dict[str, list[datetime]] = {}
    for at, suite in ticks:
        runs_of.setdefault(suite, []).append(at)
    result = Plan(ticks, runs_of)
    # A check of severity warn only warns: it opens no incident.
    problems = [
        (s, spec.name)
        for s in project.suites
        if s in runs_of
        for spec in project.suites[s].checks
        if spec.severity == "fail"
    ]
    rng.shuffle(problems)
    if incidents > len(problems):
        print(f"  only {len(problems):,} problems in the runs: {len(problems):,} incidents")
        incidents = len(problems)
    # The long-running ones are on the busiest suites: an event per failing run.
    problems.sort(key=lambda p: -len(runs_of[p[0]]))
    n_open = max(1, round(incidents * OPEN_SHARE)) if incidents else 0
    long_open = problems[: min(3, n_open)]
    rest = problems[len(long_open) :]
    rng.shuffle(rest)
    chosen = long_open + rest[: incidents - len(long_open)]
    for k, problem in enumerate(chosen):
        count = len(runs_of[problem[0]])
        if k < len(long_open):  # open for 10, 3 and 1 days of 60 (fewer in fewer days)
            since = END - timedelta(days=(10, 3, 1)[k]) * min(1.0, span / timedelta(days=DAYS))
            length = max(1, sum(1 for at in runs_of[problem[0]] if at > since))
            result.failing[problem] = [(count - length, count - 1)]
        elif k < n_open or count < 2:
            length = min(count, rng.randint(1, 5))
            result.failing[problem] = [(count - length, count - 1)]
        else:
            length = 1 + int(rng.expovariate(0.5))  # a run or a few
            if rng.random() < 0.05:  # one in twenty is left failing for 2 to 14 days
                per_day = count / max(1.0, span / timedelta(days=1))
                length = max(2, round(per_day * rng.uniform(2, 14)))
            length = min(length, count - 1)
            first = rng.randint(0, count - length - 1)
            spans = [(first, first + length - 1)]
            # Some come back after passing again: the incident re-opens.
            again = 1 + int(rng.expovariate(0.5))
            if rng.random() < 0.15 and first + length + again < count - 1:
                spans.append((first + length + 1, first + length + again))
            result.failing[problem] = spans
    result.open_problems = sum(
        1 for (s, _), spans in result.failing.items() if spans[-1][1] == len(runs_of[s]) - 1
    )
    return result


# -- the runs' results ---------------------------------------------------------------------------


def _noise(*parts: object) -> float:
    """A stable pseudo-random number in [0, 1) for these parts (the same on every run)."""
    return zlib.crc32("|".join(map(str, parts)).encode()) / 2**32


def daily_rows(suite: str, day: datetime) -> float:
    base = 2_000 + 50_000 * _noise(suite)
    weekly = 0.55 if day.weekday() >= 5 else 1.0
    return round(base * weekly * (0.9 + 0.2 * _noise(suite, day.date())))


def check_result(
    suite: Suite, spec: Any, at: datetime, failing: bool, rows: int, run_no: int
) -> CheckResult:
    """What the check would have said, failing or not, in the product's shapes."""
    kind, name, severity = spec.type, spec.name, spec.severity
    status = ("warn" if severity == "warn" else "fail") if failing else "pass"
    day = at.replace(hour=0, minute=0, second=0, microsecond=0)
    judged = day - timedelta(days=1)
    observed: dict[str, Any]
    metrics: dict[str, float]
    series: dict[datetime, float] = {}
    findings: tuple[Finding, ...] = ()
    if kind == "row_count":
        seen = rows // 40 if failing else rows
        message = f"{seen:,} rows" + (", fewer than the minimum 100" if failing else "")
        observed, metrics = {"row_count": seen}, {"row_count": float(seen)}
    elif kind == "freshness":
        age = (31 if failing else 2 + 3 * _noise(suite.suite, at)) * 3600
        message = f"newest updated_at is {age / 3600:.1f}h old" + (
            " (more than 26h)" if failing else ""
        )
        observed, metrics = {"age_s": round(age)}, {"age_s": age}
    elif kind == "volume_anomaly":
        for back in range(29):
            bucket = judged - timedelta(days=back)
            series[bucket] = daily_rows(suite.suite, bucket)
        if failing:
            series[judged] = round(series[judged] * 0.18)
        usual = daily_rows(suite.suite, judged - timedelta(days=7))
        lower, upper = round(usual * 0.7), round(usual * 1.3)
        seen = int(series[judged])
        message = f"{seen:,} rows on {judged:%Y-%m-%d}, " + (
            f"below the usual {lower:,}–{upper:,}" if failing else "within the usual range"
        )
        observed = {
            "bucket": judged.isoformat(),
            "rows": seen,
            "baseline_median": usual,
            "lower": lower,
            "upper": upper,
            "baseline_buckets": 28,
            "seasonality": "weekday",
            "direction": "both",
        }
        metrics = {"rows": float(seen)}
    elif kind == "fat_finger":
        suspicious = 2 if failing else 0
        if failing:
            findings = tuple(
                Finding(
                    key={"id": 100_000 + run_no * 7 + i},
                    column="amount",
                    observed=12_990.0,
                    proposed=1_299.0,
                    action="propose",
                    confidence=0.97,
                    reason="amount is 10× quantity × unit_price (3 × 433.00)",
                    evidence=("quantity × unit_price = 1,299.00", "the record's amount was 1,299"),
                )
                for i in range(suspicious)
            )
        message = f"{suspicious} suspicious amounts of {rows:,}" if failing else "no slips"
        observed = {"rows": rows, "suspicious": suspicious}
        metrics = {"rows": float(rows), "suspicious": float(suspicious), "propose": suspicious}
    elif kind == "column_anomaly":
        rate = 0.21 if failing else 0.01 + 0.01 * _noise(suite.suite, at)
        upper = 0.035
        message = f"discount null_rate {rate:.1%}" + (
            f" above {upper:.1%}" if failing else " as usual"
        )
        band = {"value": rate, "lower": 0.0, "upper": upper}
        observed = {"bucket": judged.isoformat(), "metrics": {"null_rate": band}}
        metrics = {"null_rate": rate, "null_rate.lower": 0.0, "null_rate.upper": upper}
    elif kind == "distribution_shift":
        share = 0.12 if failing else 0.005 * _noise(suite.suite, at)
        message = f"{share:.1%} of amounts moved by ×100 or more" if failing else "as usual"
        observed = {"bucket": judged.isoformat(), "share_above": share, "share_above.upper": 0.03}
        metrics = {"rows": float(rows), "share_above": share, "share_above.upper": 0.03}
    else:  # a GX expectation, answered from the scan
        unexpected = 3 + rows // 1000 if failing else 0
        column = dict(spec.expectation_kwargs).get("column", "")
        if failing:
            findings = tuple(
                Finding(
                    key={"id": 200_000 + run_no * 11 + i},
                    column=column,
                    observed=None if "null" in kind else -12.5,
                    reason=f"{column} unexpected",
                )
                for i in range(min(unexpected, 5))
            )
        message = (
            f"{unexpected:,} of {rows:,} {column} values unexpected"
            if failing
            else f"all {rows:,} values as expected"
        )
        observed = {
            "element_count": rows,
            "unexpected_count": unexpected,
            "unexpected_percent": round(100 * unexpected / rows, 4),
        }
        metrics = {"unexpected_count": float(unexpected), "element_count": float(rows)}
    return CheckResult(
        name, kind, status, severity, message, observed, findings, metrics, series=series
    )


# -- seeding -------------------------------------------------------------------------------------


class Seeder:
    """Plays the plan through the product: runs recorded, incidents tracked, people told."""

    def __init__(self, project: Project, store: Store, plan: Plan, rng: random.Random) -> None:
        self.project, self.store, self.plan, self.rng = project, store, plan, rng
        self.clock = [END]
        self.escalation = Escalation(project, store, None, lambda: self.clock[0])
        self.index = {s: 0 for s in project.suites}  # the suite's next run index
        self.open: set[tuple[str, str]] = set()  # problems with an incident not resolved
        self.corrections: dict[int, int] = {}  # incident id → its pending correction
        self.ticked = datetime.min.replace(tzinfo=UTC)

    def cycles(self) -> dict[datetime, list[str]]:
        """The suites each scheduler cycle ran, by the cycle's moment."""
        cycles: dict[datetime, list[str]] = {}
        for at, suite in self.plan.runs:
            cycles.setdefault(at, []).append(suite)
        return cycles

    def results(self, at: datetime, suite_ids: Sequence[str]) -> list[SuiteResult]:
        """The cycle's suite results; each suite's run index moves on."""
        results = []
        for offset, suite_id in enumerate(suite_ids):
            suite, index = self.project.suites[suite_id], self.index[suite_id]
            self.index[suite_id] += 1
            rows = int(daily_rows(suite_id, at))
            checks = tuple(
                check_result(
                    suite, spec, at, self.plan.fails(suite_id, spec.name, index), rows, index
                )
                for spec in suite.checks
            )
            results.append(
                SuiteResult(
                    suite_id,
                    worst(c.status for c in checks),
                    at + timedelta(seconds=2 * offset),
                    1.5 + offset % 7,
                    checks,
                )
            )
        return results

    def analyze(self) -> None:
        """On PostgreSQL, what autovacuum does as the tables grow (a test server may run
        without it): with no statistics the planner reads the whole outbox for a few rows."""
        if self.store.engine.dialect.name == "postgresql":
            with self.store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
                c.exec_driver_sql("ANALYZE")

    def play(self, progress: Callable[[int], None]) -> None:
        """Every scheduler cycle as the daemon runs it: the suites' results recorded (checks,
        metrics, bucket values), incidents tracked, people told and answering."""
        done = 0
        for cycle, (at, suite_ids) in enumerate(self.cycles().items()):
            if cycle % 500 == 0:
                self.analyze()
            self.clock[0] = at
            store = self.store
            run_id = store.start_run(command="run", started_at=at, as_of=None, suites=suite_ids)
            results = self.results(at, suite_ids)
            for result in results:
                store.record_suite(run_id, result)
            finished = at + timedelta(seconds=2 * len(suite_ids) + 3)
            store.finish_run(run_id, status=worst(r.status for r in results), finished_at=finished)
            # A check that passes with no incident open changes nothing in track(): left out,
            # it saves track() a read of the incidents per check.
            tracked = [
                dataclasses.replace(
                    r,
                    checks=tuple(
                        c for c in r.checks if c.status != "pass" or (r.suite, c.name) in self.open
                    ),
                )
                for r in results
            ]
            notices = track(self.project, store, tracked, [], at)
            for notice in notices:
                problem = (notice.suite, notice.check)
                if notice.event in ("opened", "reopened"):
                    self.open.add(problem)
                elif notice.event == "resolved":
                    self.open.discard(problem)
            self.escalation.announce(notices)
            # The daemon's tick between runs, once an hour here: reminders are 4 hours apart.
            if self.open and at - self.ticked >= timedelta(hours=1):
                self.ticked = at
                self.escalation.announce(self.escalation.cadence())
            for notice in notices:
                self.people(notice, at)
            self.deliver(at)
            done += len(suite_ids)
            progress(done)

    def people(self, notice: Notice, at: datetime) -> None:
        """What owners do with what they hear: answer, snooze, say expected, fix a typo."""
        store, rng, later = self.store, self.rng, at + timedelta(minutes=20)
        owner = notice.owners[0] if notice.owners else "nobody@acme.com"
        spec = next(c for c in self.project.suites[notice.suite].checks if c.name == notice.check)
        if notice.event == "opened":
            if spec.type == "fat_finger":
                self.propose(notice, spec, at)
            roll = rng.random()
            if roll < 0.35:
                store.set_incident_status(
                    notice.incident_id, "acknowledged", at=later, by=owner, detail="looking"
                )
            elif roll < 0.40 and spec.type == "volume_anomaly":
                bucket = (at - timedelta(days=1)).replace(hour=0, minute=0, second=0)
                store.add_feedback(
                    notice.suite, notice.check, bucket, verdict="expected", by=owner, at=later
                )
                store.set_incident_status(
                    notice.incident_id, "expected", at=later, by=owner, detail="a holiday"
                )
            elif roll < 0.45:
                store.set_incident_status(
                    notice.incident_id,
                    "snoozed",
                    at=later,
                    by=owner,
                    detail="snoozed for 4h",
                    until=later + timedelta(hours=4),
                )
        elif notice.event == "resolved" and notice.incident_id in self.corrections:
            self.decide(self.corrections.pop(notice.incident_id), owner, at)

    def propose(self, notice: Notice, spec: Any, at: datetime) -> None:
        key = {"id": 100_000 + self.rng.randrange(1_000_000)}
        correction = self.store.ledger_append(
            event="proposed",
            at=at,
            decided_by="agent",
            detail="amount is 10× quantity × unit_price (3 × 433.00)",
            suite=notice.suite,
            check=notice.check,
            source=f"warehouse/{notice.suite}",
            key=key,
            column="amount",
            old=12_990.0,
            new=1_299.0,
            evidence=["quantity × unit_price = 1,299.00", "the record's amount was 1,299"],
        )
        self.corrections[notice.incident_id] = correction

    def decide(self, correction: int, owner: str, at: datetime) -> None:
        """The owner approves (sometimes undoing it the next day) or rejects the proposal."""
        store, roll = self.store, self.rng.random()
        if roll < 0.15:
            store.ledger_append(
                event="rejected",
                at=at,
                correction_id=correction,
                decided_by=f"owner:{owner}",
                detail="rejected by the owner",
                after=("proposed",),
            )
            return
        key = f"bench-ui:{correction}"
        store.ledger_append(
            event="intent",
            at=at,
            correction_id=correction,
            decided_by=f"owner:{owner}",
            detail="approved",
            idempotency_key=key,
            after=("proposed",),
        )
        store.ledger_append(
            event="applied",
            at=at,
            correction_id=correction,
            old=12_990.0,
            new=1_299.0,
            decided_by=f"owner:{owner}",
            detail="1 row written",
        )
        if roll > 0.9:
            undo = at + timedelta(days=1)
            store.ledger_append(
                event="revert_intent",
                at=undo,
                correction_id=correction,
                decided_by=owner,
                detail="undo",
                idempotency_key=f"{key}:revert",
            )
            store.ledger_append(
                event="reverted",
                at=undo,
                correction_id=correction,
                old=1_299.0,
                new=12_990.0,
                decided_by=owner,
                detail="1 row restored",
            )

    def deliver(self, at: datetime) -> None:
        """Every message due goes out, recorded as a delivery to Slack records it.

        One UPDATE for them all rather than ``Store.outbox_update`` per message (a
        transaction each, a third of the seeding's time): the rows end up the same.
        """
        with self.store.engine.begin() as conn:
            conn.execute(
                sa.update(OutboxMessage)
                .where(OutboxMessage.status == "pending", OutboxMessage.due_at <= at)
                .values(
                    status="sent",
                    attempted_at=at,
                    sent_at=at,
                    attempts=1,
                    channel="C0DQALERTS",
                    ts=sa.literal(f"{at.timestamp():.0f}.") + sa.cast(OutboxMessage.id, sa.String),
                )
            )


def _fast_commits(dbapi_connection: Any, _record: Any) -> None:
    # Seeding only: a commit need not reach the disk (the timed store is opened afresh, with
    # the product's settings).
    cursor = dbapi_connection.cursor()
    if isinstance(dbapi_connection, sqlite3.Connection):
        cursor.execute("PRAGMA synchronous=OFF")
    else:
        cursor.execute("SET synchronous_commit TO off")
    cursor.close()
    if not isinstance(dbapi_connection, sqlite3.Connection):
        dbapi_connection.commit()


def seed(project: Project, url: str, runs: int, incidents: int, seed_: int) -> float:
    """Fill the store at ``url``; returns the seconds it took."""
    rng = random.Random(seed_)
    started = time.perf_counter()
    the_plan = plan(project, runs, incidents, rng)
    span = (the_plan.runs[-1][0] - the_plan.runs[0][0]) if the_plan.runs else timedelta(0)
    print(
        f"  {len(the_plan.runs):,} suite runs of {len(the_plan.runs_of)} suites over "
        f"{span.days} days; {len(the_plan.failing):,} incidents "
        f"({the_plan.open_problems} left open)",
        flush=True,
    )
    step, shown = max(1, len(the_plan.runs) // 10), [0]

    def progress(done: int) -> None:
        if done - shown[0] >= step or done == len(the_plan.runs):
            shown[0] = done
            took = time.perf_counter() - started
            print(f"    {done:>7,} suite runs played  {took:6.1f} s", flush=True)

    with Store.open(url) as store:
        sa.event.listen(store.engine, "connect", _fast_commits)
        store.engine.dispose()  # the connection the migration used has the product's settings
        seeder = Seeder(project, store, the_plan, rng)
        seeder.play(progress)
        seeder.analyze()
        took = time.perf_counter() - started
        with store.engine.connect() as conn:
            counts = [
                f"{conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one():,} {name}"
                for name, t in TABLES_SHOWN.items()
            ]
    print("  rows: " + ", ".join(counts))
    return took


TABLES_SHOWN = {
    "suite runs": SuiteRun,
    "check results": CheckResultRow,
    "metrics": Metric,
    "bucket values": BucketValue,
    "incidents": Incident,
    "incident events": IncidentEvent,
    "outbox messages": OutboxMessage,
    "ledger entries": LedgerEntry,
}


# -- timing pages --------------------------------------------------------------------------------


class Statements:
    """Counts (and, when asked, times) the statements sent on an engine."""

    def __init__(self, engine: sa.Engine) -> None:
        self.count = 0
        self.log: list[tuple[str, Any, float]] | None = None
        self._started: list[float] = []
        sa.event.listen(engine, "before_cursor_execute", self._before)
        sa.event.listen(engine, "after_cursor_execute", self._after)

    def _before(self, conn: Any, cursor: Any, statement: str, params: Any, *_: Any) -> None:
        self.count += 1
        self._started.append(time.perf_counter())

    def _after(self, conn: Any, cursor: Any, statement: str, params: Any, *_: Any) -> None:
        took = time.perf_counter() - self._started.pop()
        if self.log is not None:
            self.log.append((statement, params, took))


@dataclass
class Timing:
    median_ms: float
    p95_ms: float
    kb: float
    statements: int


def measure(app: Dashboard, counter: Statements, path: str, repeat: int) -> Timing | None:
    """The page timed over ``repeat`` requests after a warm-up; None when it is not served."""
    request = WebRequest("GET", path, {}, {HEADER.lower(): USER}, {})
    response = app.handle(request)
    if response is None or response.status == 404:
        return None
    if response.status != 200:
        raise SystemExit(f"{path}: {response.status} {response.body[:200]}")
    took = []
    for _ in range(repeat):
        counter.count = 0
        started = time.perf_counter()
        response = app.handle(request)
        took.append((time.perf_counter() - started) * 1000)
    assert response is not None
    ranked = sorted(took)
    p95 = ranked[max(0, math.ceil(0.95 * len(ranked)) - 1)]
    return Timing(statistics.median(took), p95, len(response.body.encode()) / 1024, counter.count)


def pages(store: Store, project: Project) -> list[tuple[str, str, str]]:
    """(row label, path, what it is) for every page the dashboard serves."""
    found = store.incidents(events=False)
    with store.engine.connect() as conn:
        events = dict(
            conn.execute(
                sa.select(IncidentEvent.incident_id, sa.func.count()).group_by(
                    IncidentEvent.incident_id
                )
            ).all()
        )
    active = [i for i in found if i["status"] != "resolved"]
    resolved = [i for i in found if i["status"] == "resolved"]
    listed = [("/", "/", ""), ("/corrections", "/corrections", ""), ("/monitors", "/monitors", "")]
    if active:
        busy = max(active, key=lambda i: events.get(i["id"], 0))
        note = f"#{busy['id']}, {busy['status']}, {events.get(busy['id'], 0)} events"
        listed.insert(1, ("/incidents/<open>", f"/incidents/{busy['id']}", note))
    if resolved:
        # The one with the longest history, as for the open ones.
        last = max(resolved, key=lambda i: events.get(i["id"], 0))
        note = f"#{last['id']}, resolved, {events.get(last['id'], 0)} events"
        path = f"/incidents/{last['id']}"
        listed.insert(2 if active else 1, ("/incidents/<resolved>", path, note))
    busiest = suite_name(0)
    listed.append(("/suites/<id>", f"/suites/{busiest}", busiest))
    return listed


@dataclass
class Measured:
    label: str
    path: str
    note: str
    timing: Timing | None


def time_pages(
    project: Project, url: str, repeat: int
) -> tuple[list[Measured], Dashboard, Statements]:
    store = Store.open(url)
    app = Dashboard(lambda: project, store, RunOptions(clock=lambda: NOW))
    counter = Statements(store.engine)
    measured = [
        Measured(label, path, note, measure(app, counter, path, repeat))
        for label, path, note in pages(store, project)
    ]
    return measured, app, counter


# -- profiling -----------------------------------------------------------------------------------


def profile(app: Dashboard, counter: Statements, path: str, requests: int) -> None:
    """Where one page's time goes: product functions, statements, the slowest one's plan."""
    request = WebRequest("GET", path, {}, {HEADER.lower(): USER}, {})
    counter.log = []
    profiler = cProfile.Profile()
    started = time.perf_counter()
    profiler.enable()
    for _ in range(requests):
        app.handle(request)
    profiler.disable()
    total_ms = (time.perf_counter() - started) * 1000 / requests
    log, counter.log = counter.log, None
    sql_ms = sum(t for _, _, t in log) * 1000 / requests
    print(f"\n{path}: {total_ms:.1f} ms a request (profiled), {sql_ms:.1f} ms of it in SQL")
    stats = pstats.Stats(profiler)
    rows = []
    for (file, line, func), (_, calls, _, cumulative, _) in stats.stats.items():  # type: ignore[attr-defined]
        if "/dq_agent/" not in file:
            continue
        where = file.split("/dq_agent/")[-1]
        rows.append((cumulative, calls, f"{where}:{line}({func})"))
    rows.sort(reverse=True)
    print(f"  {'cumulative ms':>13} {'calls':>7}  product function")
    for cumulative, calls, name in rows[:15]:
        print(f"  {cumulative * 1000 / requests:13.1f} {calls // requests:7,}  {name}")
    by_text: dict[str, list[Any]] = {}
    for statement, params, took in log:
        entry = by_text.setdefault(statement, [0, 0.0, params, 0.0])
        entry[0] += 1
        entry[1] += took
        if took >= entry[3]:
            entry[2], entry[3] = params, took
    print(f"  {'SQL ms':>13} {'count':>7}  statement")
    ranked = sorted(by_text.items(), key=lambda kv: -kv[1][1])
    for statement, (count, took, _, _) in ranked[:6]:
        text = " ".join(statement.split())
        print(f"  {took * 1000 / requests:13.1f} {count // requests:7,}  {text[:150]}")
    selects = [(text, entry) for text, entry in ranked if text.lstrip().startswith("SELECT")]
    if selects:
        statement, (_, _, params, _) = selects[0]
        explain(app.store.engine, statement, params)


def explain(engine: sa.Engine, statement: str, params: Any) -> None:
    """The plan of a statement as the store's database runs it."""
    postgres = engine.dialect.name == "postgresql"
    prefix = "EXPLAIN (ANALYZE, BUFFERS) " if postgres else "EXPLAIN QUERY PLAN "
    with engine.connect() as conn:
        rows = conn.exec_driver_sql(prefix + statement, params).all()
    print("  plan of the slowest statement:")
    for row in rows:
        print("    " + (row[0] if postgres else f"{row[1]:>3} {row[2]:>3}  {row[3]}"))


# -- stores: SQLite files or fresh PostgreSQL schemas --------------------------------------------


@contextmanager
def stores(url: str | None, folder: Path) -> Iterator[Callable[[str], str]]:
    """Hands out a fresh store URL per name; drops what it created in PostgreSQL."""
    if url is None or url.startswith("sqlite"):
        base = Path(sa.make_url(url).database or "") if url else folder / "state.sqlite"

        def sqlite(name: str) -> str:
            path = base.with_name(f"{base.stem}-{name}{base.suffix}")
            if path.exists():
                raise SystemExit(f"{path} exists: give --state-url a new file")
            return f"sqlite:///{path}"

        yield sqlite
        return
    admin = sa.create_engine(url)
    try:
        with admin.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except sa.exc.SQLAlchemyError as exc:
        admin.dispose()
        print(f"PostgreSQL not reachable at {url}: skipped ({exc.__class__.__name__})")
        raise SystemExit(0) from None
    made: list[str] = []

    def schema(name: str) -> str:
        created = f"dq_bench_ui_{name}_{uuid.uuid4().hex[:8]}"
        with admin.begin() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA "{created}"'))
        made.append(created)
        sep = "&" if "?" in url else "?"
        return f"{url}{sep}options=-csearch_path%3D{created}"

    try:
        yield schema
    finally:
        with admin.begin() as conn:
            for created in made:
                conn.execute(sa.text(f'DROP SCHEMA "{created}" CASCADE'))
        admin.dispose()


# -- the report ----------------------------------------------------------------------------------


def report(full: list[Measured], empty: list[Measured]) -> None:
    head = (
        f"{'page':<22} {'median':>7} {'p95':>7} {'KB':>7} {'stmts':>5} | "
        f"{'median':>6} {'p95':>6} {'KB':>6} {'stmts':>5} | {'full/empty':>10}  target"
    )
    print(f"{'':<22} {'full store (ms)':^30} | {'nearly empty (ms)':^27} |")
    print(head)
    print("-" * len(head))
    nearly = {m.label: m.timing for m in empty}
    for big in full:
        if big.timing is None:
            print(f"{big.label:<22} not served")
            continue
        b, s = big.timing, nearly.get(big.label)
        verdict = "PASS" if b.p95_ms <= TARGET_MS else "MISS"
        right = (
            f"{s.median_ms:6.1f} {s.p95_ms:6.1f} {s.kb:6.1f} {s.statements:5} | "
            f"{b.median_ms / s.median_ms:9.1f}×"
            if s is not None
            else f"{'(no such page)':>27} | {'':>10}"
        )
        print(
            f"{big.label:<22} {b.median_ms:7.1f} {b.p95_ms:7.1f} {b.kb:7.1f} {b.statements:5} | "
            f"{right}  {verdict}"
        )
    for big in full:
        if big.note:
            print(f"  {big.label}: {big.path} ({big.note})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1,000 runs, 100 incidents, 3 repeats")
    parser.add_argument("--runs", type=int, help="suite runs in the full store (10,000)")
    parser.add_argument("--incidents", type=int, help="incidents in the full store (1,000)")
    parser.add_argument("--repeat", type=int, help="requests timed per page (20)")
    parser.add_argument("--suites", type=int, help="suites in the project (enough problems)")
    parser.add_argument(
        "--state-url",
        help="a new SQLite file, or a PostgreSQL database to make schemas in "
        f"(e.g. {DEFAULT_POSTGRES_URL}); default: SQLite files in a temporary folder",
    )
    parser.add_argument("--profile", type=int, default=2, help="slowest pages to profile (2)")
    parser.add_argument("--seed", type=int, default=20261124)
    args = parser.parse_args()
    runs = args.runs or (1_000 if args.quick else 10_000)
    incidents = args.incidents if args.incidents is not None else (100 if args.quick else 1_000)
    repeat = args.repeat or (3 if args.quick else 20)
    suites = args.suites or max(10, math.ceil(incidents * (1 + SPARE_PROBLEMS) / CHECKS_PER_SUITE))

    with (
        tempfile.TemporaryDirectory(prefix="dq-bench-ui-") as tmp,
        stores(args.state_url, Path(tmp)) as new_store,
    ):
        full_url, empty_url = new_store("full"), new_store("empty")
        project = write_project(Path(tmp) / "project", suites, full_url)
        checks = sum(len(s.checks) for s in project.suites.values())
        engine = sa.make_url(full_url).get_backend_name()
        print(f"{len(project.suites)} suites, {checks} checks; {engine} state store")
        print(f"full store: {runs:,} suite runs, {incidents:,} incidents")
        seeded = seed(project, full_url, runs, incidents, args.seed)
        print(f"  seeded in {seeded:.1f} s")
        print("nearly empty store: 10 suite runs, 10 incidents")
        seed(project, empty_url, 10, 10, args.seed)

        print(f"\ntiming every page, {repeat} requests each after a warm-up")
        full, app, counter = time_pages(project, full_url, repeat)
        empty, small_app, _ = time_pages(project, empty_url, repeat)
        small_app.store.close()
        print(
            f"\n{engine}: {runs:,} suite runs and {incidents:,} incidents against 10 and 10; "
            f"target p95 ≤ {TARGET_MS:.0f} ms on the full store\n"
        )
        report(full, empty)

        served = [m for m in full if m.timing is not None]
        slowest = sorted(served, key=lambda m: -m.timing.median_ms if m.timing else 0)
        for m in slowest[: args.profile]:
            profile(app, counter, m.path, max(1, min(repeat, 5)))
        app.store.close()


if __name__ == "__main__":
    main()
