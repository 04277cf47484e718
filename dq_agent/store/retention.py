"""Keeping the state store in check: each suite's run history thinned past its newest
``retention.full_runs`` runs, run history pruned past ``retention.days`` in small batches, and
what each table holds (``dq-agent store stats``).

Thinned: beyond a suite's newest ``full_runs`` runs, a run that passed goes with its check
results and metrics unless it is the newest of its day (of its week, once it is two weeks
older than the newest run). Runs that did not pass stay: the history grows with the weeks a
suite runs and what went wrong, not with how often it runs (an hourly suite keeps 60 runs,
one a day for two weeks and one a week before, not 24 a day).

Pruned: runs, their suite runs, check results and metrics older than the
cutoff, and schema snapshots older than it (each suite's newest kept). The short-lived
memories (seen Slack requests, ended sessions, failed sign-ins) prune themselves as new ones
are written. Never pruned: a
suite's latest run, anything a baseline window can still reach (the cutoff is pushed back to
the longest window of the project's checks), the ledger, incidents and their threads,
feedback, restarts, snapshots for restores and LLM calls.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError

from dq_agent.config.models import Suite, WindowedArgs
from dq_agent.store.database import Database
from dq_agent.store.models import (
    CheckResultRow,
    Metric,
    Run,
    SchemaSnapshot,
    SuiteRun,
)

# Beyond a suite's newest runs, passing runs are kept one a day for this long, then one a week.
DAILY_FOR = timedelta(days=14)
# Beyond a baseline's own window: its newest bucket may be a week long and still settling.
_REACH_MARGIN = timedelta(days=8)


def reach(suites: Iterable[Suite]) -> timedelta:
    """How far back any check's baseline reads stored history: its training window, how long
    its buckets settle, and a margin."""
    from dq_agent.checks.windows import training_span

    longest = timedelta(0)
    for suite in suites:
        for check in suite.checks:
            args = check.args
            if isinstance(args, WindowedArgs):
                longest = max(longest, training_span(args) + args.settle)
    return longest + _REACH_MARGIN


def cutoff(days: int | None, suites: Iterable[Suite], now: datetime) -> datetime | None:
    """Run history started before this moment may go; None when retention is off."""
    if days is None:
        return None
    return now - max(timedelta(days=days), reach(suites))


@dataclass
class Pruned:
    """What one pruning removed, by table."""

    cutoff: datetime | None
    rows: dict[str, int] = field(default_factory=dict)
    batches: int = 0

    def add(self, table: str, count: int) -> None:
        if count:
            self.rows[table] = self.rows.get(table, 0) + count

    @property
    def total(self) -> int:
        return sum(self.rows.values())


def _period(started_at: datetime, newest: datetime) -> tuple[int, int, int]:
    """The day a run started on, or its ISO week once that is ``DAILY_FOR`` before the newest
    run's: the runs kept beyond the newest are one a day, then one a week."""
    year, week, weekday = started_at.isocalendar()
    return year, week, weekday if newest - started_at < DAILY_FOR else 0


def thin(store: Database, suite: str, *, keep: int | None, dry_run: bool = False) -> dict[str, int]:
    """Thin ``suite``'s run history beyond its newest ``keep`` runs (see above); rows deleted
    (would be, with ``dry_run``) by table. ``keep`` None: nothing is thinned."""
    if keep is None:
        return {}
    newest_first = (
        sa.select(SuiteRun.id, SuiteRun.run_id, SuiteRun.started_at, SuiteRun.status)
        .where(SuiteRun.suite == suite)
        .order_by(SuiteRun.id.desc())
    )
    counted: dict[str, int] = {}
    with store._transaction(f"thin the run history of {suite!r}") as session:
        periods: set[tuple[int, int, int]] = set()
        doomed: list[int] = []
        runs: set[int] = set()
        newest: datetime | None = None
        for place, (suite_run, run, started_at, status) in enumerate(session.execute(newest_first)):
            newest = newest or started_at
            period = _period(started_at, newest)
            if place >= keep and status == "pass" and period in periods:
                doomed.append(suite_run)
                runs.add(run)
            periods.add(period)
        if not doomed:
            return {}
        for model in (CheckResultRow, Metric):
            rows = model.suite_run_id.in_(doomed)
            if dry_run:
                count = session.execute(sa.select(sa.func.count()).where(rows)).scalar_one()
            else:
                count = _count(session.execute(_delete(model).where(rows)))
            counted[model.__tablename__] = int(count)
        counted[SuiteRun.__tablename__] = len(doomed)
        if not dry_run:
            session.execute(_delete(SuiteRun).where(SuiteRun.id.in_(doomed)))
            empty = (
                sa.select(Run.id)
                .where(
                    Run.id.in_(runs),
                    ~sa.exists().where(SuiteRun.run_id == Run.id),
                    ~sa.exists().where(SchemaSnapshot.run_id == Run.id),
                )
                .scalar_subquery()
            )
            gone = session.execute(_delete(Run).where(Run.id.in_(empty)))
            counted[Run.__tablename__] = _count(gone)
    return {table: count for table, count in counted.items() if count}


def prune(
    store: Database,
    *,
    days: int | None,
    suites: Iterable[Suite],
    now: datetime,
    batch: int = 1_000,
    full_runs: int | None = None,
    dry_run: bool = False,
    progress: Callable[[Pruned], None] | None = None,
) -> Pruned:
    """Thin each suite's run history beyond its newest ``full_runs`` runs, then delete what
    ``days`` lets go, ``batch`` suite runs (with their rows) per transaction. ``dry_run``
    counts what would go and deletes nothing."""
    suites = list(suites)
    before = cutoff(days, suites, now)
    pruned = Pruned(before)
    for suite in suites:
        for table, count in thin(store, suite.suite, keep=full_runs, dry_run=dry_run).items():
            pruned.add(table, count)
    if before is None:
        return pruned
    if dry_run:
        pruned.rows |= _count_old(store, before)
        return pruned
    while ids := _old_suite_runs(store, before, batch):
        with store._transaction("prune old suite runs") as session:
            for model in _OF_SUITE_RUNS:
                deleted = session.execute(_delete(model).where(model.suite_run_id.in_(ids)))
                pruned.add(model.__tablename__, _count(deleted))
            deleted = session.execute(_delete(SuiteRun).where(SuiteRun.id.in_(ids)))
            pruned.add(SuiteRun.__tablename__, _count(deleted))
        pruned.batches += 1
        if progress is not None:
            progress(pruned)
    _old_schemas(store, before, pruned)
    _old_runs(store, before, batch, pruned)
    return pruned


# The rows that belong to a suite run and go with it. Bucket values outlive their runs: each
# bucket is stored once and let go by the runs whose baselines no longer reach it.
_OF_SUITE_RUNS: tuple[type[CheckResultRow] | type[Metric], ...] = (CheckResultRow, Metric)


def _delete(model: type[Any]) -> sa.Delete:
    """A bulk DELETE of ``model``'s rows; no objects are loaded, so none need syncing."""
    return sa.delete(model).execution_options(synchronize_session=False)


def _count(result: Any) -> int:
    return int(getattr(result, "rowcount", 0) or 0)


def _old(before: datetime) -> sa.Select[Any]:
    """The suite runs started before ``before``, none a suite's latest, oldest first."""
    latest = sa.select(sa.func.max(SuiteRun.id)).group_by(SuiteRun.suite).scalar_subquery()
    return (
        sa.select(SuiteRun.id)
        .where(SuiteRun.started_at < before, SuiteRun.id.not_in(latest))
        .order_by(SuiteRun.id)
    )


def _old_suite_runs(store: Database, before: datetime, batch: int) -> list[int]:
    with store._transaction("find old suite runs") as session:
        return [int(i) for i in session.execute(_old(before).limit(batch)).scalars()]


def _count_old(store: Database, before: datetime) -> dict[str, int]:
    """What pruning ``before`` would delete with the suite runs, by table (a dry run)."""
    old = _old(before).order_by(None)
    counts: dict[str, int] = {}
    with store._transaction("count old suite runs") as session:
        for model in _OF_SUITE_RUNS:
            count = sa.select(sa.func.count()).where(model.suite_run_id.in_(old))
            counts[model.__tablename__] = int(session.execute(count).scalar_one())
        count = sa.select(sa.func.count()).select_from(old.subquery())
        counts[SuiteRun.__tablename__] = int(session.execute(count).scalar_one())
    return {k: v for k, v in counts.items() if v}


def _old_schemas(store: Database, before: datetime, pruned: Pruned) -> None:
    """Schema snapshots seen before ``before``, each suite's newest kept (drift compares
    against it)."""
    newest = (
        sa.select(sa.func.max(SchemaSnapshot.id)).group_by(SchemaSnapshot.suite).scalar_subquery()
    )
    with store._transaction("prune old schema snapshots") as session:
        deleted = session.execute(
            _delete(SchemaSnapshot).where(
                SchemaSnapshot.seen_at < before, SchemaSnapshot.id.not_in(newest)
            )
        )
        pruned.add(SchemaSnapshot.__tablename__, _count(deleted))


def _old_runs(store: Database, before: datetime, batch: int, pruned: Pruned) -> None:
    """Runs started before ``before`` that nothing refers to any more, ``batch`` at a time."""
    unused = (
        sa.select(Run.id)
        .where(
            Run.started_at < before,
            ~sa.exists().where(SuiteRun.run_id == Run.id),
            ~sa.exists().where(SchemaSnapshot.run_id == Run.id),
        )
        .order_by(Run.id)
        .limit(batch)
    )
    while True:
        with store._transaction("prune old runs") as session:
            ids = [int(i) for i in session.execute(unused).scalars()]
            if ids:
                session.execute(_delete(Run).where(Run.id.in_(ids)))
        pruned.add(Run.__tablename__, len(ids))
        if len(ids) < batch:
            return
        pruned.batches += 1


# -- stats ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TableStats:
    """One table of the store: its rows and, where the database tells, its bytes."""

    name: str
    rows: int
    bytes: int | None

    def to_json(self) -> dict[str, Any]:
        return {"table": self.name, "rows": self.rows, "bytes": self.bytes}


def stats(store: Database) -> list[TableStats]:
    """Every table of the store (Alembic's own left out), largest first."""
    from dq_agent.store.models import Base

    sizes = _sizes(store)
    found = []
    with store._transaction("count the store's rows") as session:
        for table in Base.metadata.sorted_tables:
            rows = session.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()
            found.append(TableStats(str(table.name), int(rows), sizes.get(str(table.name))))
    return sorted(found, key=lambda t: (-(t.bytes or 0), -t.rows, t.name))


def _sizes(store: Database) -> dict[str, int]:
    """Bytes per table with its indexes: PostgreSQL's relation sizes, SQLite's ``dbstat``
    where the library has it; nothing elsewhere."""
    dialect = store.engine.dialect.name
    with store._transaction("measure the store's tables") as session:
        conn = session.connection()
        if dialect == "postgresql":
            query = sa.text(
                "SELECT c.relname, pg_total_relation_size(c.oid) FROM pg_class c "
                "JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE c.relkind = 'r' AND n.nspname = current_schema()"
            )
            return {str(name): int(size) for name, size in conn.execute(query)}
        if dialect != "sqlite":
            return {}
        try:
            with conn.begin_nested():
                rows = conn.execute(
                    sa.text(
                        "SELECT coalesce(m.tbl_name, s.name), sum(s.pgsize) FROM dbstat s "
                        "LEFT JOIN sqlite_master m ON m.name = s.name GROUP BY 1"
                    )
                ).all()
        except SQLAlchemyError:  # built without SQLITE_ENABLE_DBSTAT_VTAB
            return {}
        return {str(name): int(size) for name, size in rows}
