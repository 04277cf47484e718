"""Runs and their results: suite runs, check results, metrics and schema snapshots."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from dq_agent.errors import StoreError
from dq_agent.results import Status, SuiteResult, to_jsonable
from dq_agent.store.buckets import keep_series
from dq_agent.store.database import (
    RECORDS,
    Database,
)
from dq_agent.store.models import (
    CheckResultRow,
    IncidentEvent,
    Metric,
    Run,
    SchemaSnapshot,
    SuiteRun,
)


class RunRepository(Database):
    """Runs, their suites' and checks' results, metrics and schemas."""

    def start_run(
        self,
        *,
        command: str,
        started_at: datetime,
        as_of: datetime | None,
        suites: Sequence[str],
    ) -> int:
        """Record the start of a run and return its id."""
        run = Run(command=command, started_at=started_at, as_of=as_of, suites=list(suites))
        with self._transaction("start a run") as session:
            session.add(run)
        return run.id

    def record_suite(self, run_id: int, result: SuiteResult) -> None:
        """Store one suite's result, its checks and their metrics in one transaction."""
        measured_at = result.as_of or result.started_at
        with self._transaction(f"record suite {result.suite!r}") as session:
            suite_run = SuiteRun(
                run_id=run_id,
                suite=result.suite,
                status=result.status,
                started_at=result.started_at,
                duration_s=result.duration_s,
                error=result.error,
                as_of=result.as_of,
            )
            session.add(suite_run)
            session.flush()
            session.info[RECORDS] = True
            for check in result.checks:
                session.add(
                    CheckResultRow(
                        suite_run_id=suite_run.id,
                        suite=result.suite,
                        name=check.name,
                        type=check.type,
                        status=check.status,
                        severity=check.severity,
                        message=check.message,
                        observed=to_jsonable(check.observed),
                        findings=[finding.to_json() for finding in check.findings],
                    )
                )
                session.add_all(
                    Metric(
                        suite_run_id=suite_run.id,
                        suite=result.suite,
                        check_name=check.name,
                        metric=name,
                        value=None if value is None else float(value),
                        measured_at=measured_at,
                    )
                    for name, value in check.metrics.items()
                )
                keep_series(session, suite_run.id, result, check)

    def finish_run(self, run_id: int, *, status: Status, finished_at: datetime) -> None:
        """Mark a run finished with its overall status."""
        with self._transaction(f"finish run {run_id}") as session:
            run = session.get(Run, run_id)
            if run is None:
                raise StoreError(f"no run {run_id} in state store {self._display_url}")
            run.status = status
            run.finished_at = finished_at

    def last_schema(self, suite: str) -> list[tuple[str, str]] | None:
        """The most recent column snapshot for ``suite``, or None if there is none."""
        latest = self.last_schemas(suite, 1)
        return latest[0] if latest else None

    def last_schemas(self, suite: str, count: int) -> list[list[tuple[str, str]]]:
        """The ``count`` most recent distinct column snapshots for ``suite``, newest first."""
        with self._transaction(f"read the schema of {suite!r}", read=True) as session:
            found = session.scalars(self._latest_schema(suite).limit(count)).all()
        return [[(str(name), str(type_)) for name, type_ in columns] for columns in found]

    def save_schema(
        self,
        suite: str,
        columns: Sequence[tuple[str, str]],
        *,
        seen_at: datetime,
        run_id: int | None = None,
    ) -> bool:
        """Store a column snapshot unless it equals the latest one; True if stored."""
        wanted = [[name, type_] for name, type_ in columns]
        with self._transaction(f"save the schema of {suite!r}") as session:
            if session.scalar(self._latest_schema(suite)) == wanted:
                return False
            session.add(SchemaSnapshot(suite=suite, columns=wanted, seen_at=seen_at, run_id=run_id))
        return True

    @staticmethod
    def _latest_schema(suite: str) -> sa.Select[list[list[str]]]:
        return (
            sa.select(SchemaSnapshot.columns)
            .where(SchemaSnapshot.suite == suite)
            .order_by(SchemaSnapshot.seen_at.desc(), SchemaSnapshot.id.desc())
            .limit(1)
        )

    def metric_history(
        self,
        suite: str,
        check: str,
        metric: str,
        *,
        since: datetime | None = None,
    ) -> list[tuple[datetime, float | None]]:
        """(measured_at, value) pairs for one metric, oldest first."""
        query = (
            sa.select(Metric.measured_at, Metric.value)
            .where(Metric.suite == suite, Metric.check_name == check, Metric.metric == metric)
            .order_by(Metric.measured_at, Metric.id)
        )
        if since is not None:
            query = query.where(Metric.measured_at >= since)
        with self._transaction(f"read metric {suite}/{check}/{metric}", read=True) as session:
            return [(row.measured_at, row.value) for row in session.execute(query)]

    def check_metrics(self, suite: str, check: str) -> dict[str, dict[datetime, float | None]]:
        """Every metric a check recorded, by name: measured_at → value (live runs only)."""
        query = (
            sa.select(Metric.metric, Metric.measured_at, Metric.value)
            .join(SuiteRun, SuiteRun.id == Metric.suite_run_id)
            .where(Metric.suite == suite, Metric.check_name == check, SuiteRun.as_of.is_(None))
            .order_by(Metric.measured_at, Metric.id)
        )
        found: dict[str, dict[datetime, float | None]] = {}
        with self._transaction(f"read the metrics of {suite}/{check}", read=True) as session:
            for name, at, value in session.execute(query):
                found.setdefault(name, {})[at] = value
        return found

    def error_streak(self, suite: str, *, limit: int = 500) -> tuple[int, datetime | None]:
        """How many of ``suite``'s latest runs in a row ended in ``error``, and when the first
        of them started (None when the latest did not fail); at most ``limit`` are read."""
        query = (
            sa.select(SuiteRun.status, SuiteRun.started_at)
            .where(SuiteRun.suite == suite, SuiteRun.as_of.is_(None))
            .order_by(SuiteRun.started_at.desc(), SuiteRun.id.desc())
            .limit(limit)
        )
        count, since = 0, None
        with self._transaction(f"read the latest runs of {suite}", read=True) as session:
            for status, started_at in session.execute(query):
                if status != "error":
                    break
                count, since = count + 1, started_at
        return count, since

    def suite_history(self, *, since: datetime) -> dict[str, list[tuple[datetime, str]]]:
        """Each suite's runs since ``since``: (started_at, status), oldest first."""
        query = (
            sa.select(SuiteRun.suite, SuiteRun.started_at, SuiteRun.status)
            .where(SuiteRun.started_at >= since, SuiteRun.as_of.is_(None))
            .order_by(SuiteRun.started_at, SuiteRun.id)
        )
        history: dict[str, list[tuple[datetime, str]]] = {}
        with self._transaction("read suite runs", read=True) as session:
            for suite, started_at, status in session.execute(query):
                history.setdefault(suite, []).append((started_at, status))
        return history

    def suite_days(
        self, *, start: datetime, days: int, suite: str | None = None
    ) -> dict[str, dict[datetime, dict[str, int]]]:
        """How many live runs of each suite (or of ``suite``) ended in each status, day by
        day, for ``days`` days of 24 hours from ``start``: suite → the day's start → status
        → runs. Days without a run are left out.

        Counted by the database: a busy store holds thousands of runs a week. The day a run
        falls on is a CASE over the days' bounds, since taking a date from a timestamp is
        written differently in every dialect.
        """
        bounds = [start + timedelta(days=i) for i in range(days + 1)]
        day = sa.case(*((SuiteRun.started_at < end, i) for i, end in enumerate(bounds[1:])))
        runs = sa.select(SuiteRun.suite, SuiteRun.status, day.label("day")).where(
            SuiteRun.started_at >= bounds[0],
            SuiteRun.started_at < bounds[-1],
            SuiteRun.as_of.is_(None),
        )
        if suite is not None:
            runs = runs.where(SuiteRun.suite == suite)
        # Grouped outside: a GROUP BY repeating the CASE would repeat its parameters too,
        # and PostgreSQL does not take the two for the same expression.
        counted = runs.subquery()
        query = sa.select(
            counted.c.suite, counted.c.day, counted.c.status, sa.func.count()
        ).group_by(counted.c.suite, counted.c.day, counted.c.status)
        found: dict[str, dict[datetime, dict[str, int]]] = {}
        with self._transaction("count suite runs by day", read=True) as session:
            for name, index, status, count in session.execute(query):
                found.setdefault(name, {}).setdefault(bounds[int(index)], {})[status] = int(count)
        return found

    def latest_runs(self) -> dict[str, tuple[datetime, str]]:
        """Each suite's newest live run: suite → (started_at, status)."""
        newest = (
            sa.select(SuiteRun.suite, sa.func.max(SuiteRun.started_at).label("at"))
            .where(SuiteRun.as_of.is_(None))
            .group_by(SuiteRun.suite)
            .subquery()
        )
        query = (
            sa.select(SuiteRun.suite, SuiteRun.started_at, SuiteRun.status)
            .join(
                newest,
                sa.and_(SuiteRun.suite == newest.c.suite, SuiteRun.started_at == newest.c.at),
            )
            .where(SuiteRun.as_of.is_(None))
            .order_by(SuiteRun.id)
        )
        with self._transaction("read the latest suite runs", read=True) as session:
            # Of two runs started at the same moment, the one recorded last.
            return {suite: (at, status) for suite, at, status in session.execute(query)}

    def newest_ids(self) -> tuple[int, int]:
        """The newest suite run's id and the newest incident event's id (0 for none): one
        or the other changes whenever a run is recorded or anything happens to an incident
        (it opens, fails again, is nudged, snoozed, resolved...)."""
        query = sa.select(
            sa.select(sa.func.max(SuiteRun.id)).scalar_subquery(),
            sa.select(sa.func.max(IncidentEvent.id)).scalar_subquery(),
        )
        row = self._read_one("read the newest ids", query)
        assert row is not None  # a query of two aggregates has its one row
        run, event = row
        return run or 0, event or 0

    def suite_runs(self, suite: str, *, limit: int) -> list[dict[str, Any]]:
        """The newest ``limit`` live runs of ``suite``, oldest first, each with its checks'
        results: ``{"id", "started_at", "status", "error", "checks": {name: {"status",
        "message"}}}``."""
        newest = (
            sa.select(SuiteRun.id, SuiteRun.started_at, SuiteRun.status, SuiteRun.error)
            .where(SuiteRun.suite == suite, SuiteRun.as_of.is_(None))
            .order_by(SuiteRun.started_at.desc(), SuiteRun.id.desc())
            .limit(limit)
        )
        with self._transaction(f"read the runs of {suite!r}", read=True) as session:
            runs: dict[int, dict[str, Any]] = {
                row.id: {
                    "id": row.id,
                    "started_at": row.started_at,
                    "status": row.status,
                    "error": row.error,
                    "checks": {},
                }
                for row in session.execute(newest)
            }
            # A second query rather than IN over the first: MariaDB refuses LIMIT in IN.
            checks = (
                sa.select(
                    CheckResultRow.suite_run_id,
                    CheckResultRow.name,
                    CheckResultRow.status,
                    CheckResultRow.message,
                )
                .where(CheckResultRow.suite_run_id.in_(list(runs)))
                .order_by(CheckResultRow.id)
            )
            for run_id, name, status, message in session.execute(checks):
                runs[run_id]["checks"][name] = {"status": status, "message": message}
        return list(reversed(runs.values()))

    def recent_runs(self, limit: int = 20) -> list[dict[str, Any]]:
        """The latest ``limit`` runs, newest first."""
        query = sa.select(Run).order_by(Run.started_at.desc(), Run.id.desc()).limit(limit)
        with self._transaction("list runs", read=True) as session:
            runs = session.scalars(query).all()
        return [
            {
                "id": run.id,
                "command": run.command,
                "started_at": run.started_at,
                "finished_at": run.finished_at,
                "status": run.status,
                "suites": list(run.suites),
            }
            for run in runs
        ]
