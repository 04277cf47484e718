"""The state store API: open (and migrate) a database, record runs, read history back."""

from __future__ import annotations

import fcntl
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext, suppress
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, NamedTuple, Self, TypeVarTuple, cast

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.exc import DBAPIError, IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from dq_agent.errors import LedgerConflict, StoreError
from dq_agent.redact import mask_url, redact, url_secrets
from dq_agent.results import CheckResult, Status, SuiteResult, to_jsonable
from dq_agent.store.ledger import (
    EVENTS,
    GENESIS,
    STATUS_AFTER,
    Correction,
    LedgerEvent,
    entry_hash,
)
from dq_agent.store.models import (
    BucketValue,
    CheckResultRow,
    EndedSession,
    Feedback,
    Incident,
    IncidentEvent,
    LedgerEntry,
    LlmCall,
    Metric,
    OutboxMessage,
    Restart,
    Run,
    SchemaSnapshot,
    SeenRequest,
    SignInFailure,
    SlackClick,
    Snapshot,
    SuiteRun,
)

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

# Arbitrary but fixed ("dqagent1" in ASCII): every dq-agent process contends for the same lock.
MIGRATION_LOCK_KEY = 0x6471_6167_656E_7431
# Appends to the hash-chained ledger are serialised ("dqledger").
LEDGER_LOCK_KEY = 0x6471_6C65_6467_6572

log = logging.getLogger(__name__)

# Alembic keeps the running migration's context in module globals, so two threads of one
# process must not migrate at the same time, even against different databases.
_ALEMBIC_LOCK = threading.Lock()

# Connections a process keeps open to a SQLite store (as many as the ASGI server's threads).
SQLITE_POOL = 40
# How many more it may open for one transaction each when they are all in use.
SQLITE_OVERFLOW = 10
# Connections a process keeps open to a database server, and never more: its threads beyond
# these wait for one. A server's connections cost it memory (PostgreSQL allows 100 by
# default, for every replica and worker together), and one opened for a transaction and
# closed after costs it a process started and ended.
SERVER_POOL = 20

# How long a Slack click acted on is kept before it is pruned.
CLICKS_KEPT = timedelta(days=1)
# How often recording requests also lets go of what expired (requests seen, clicks done):
# with every recording, the two deletes were a tenth of a click's cost on PostgreSQL.
PRUNE_REQUESTS_EVERY = timedelta(minutes=1)

# Set in a session's ``info`` by a transaction that records a suite run or an incident event.
_RECORDS = "dq_agent_records"

# Rows per INSERT: SQLite allows 32,766 bound parameters in one statement (7 per row here).
_UPSERT_BATCH = 1_000


def _newer_counts(dialect: str, rows: list[dict[str, Any]]) -> sa.Insert:
    """INSERT ``rows`` into ``bucket_values``; a bucket already there takes a row's values
    when the row was counted no earlier (by the wall clock) than what it holds."""
    changing = ("suite_run_id", "value", "judged_at", "observed_at")
    if dialect in ("postgresql", "sqlite"):
        from sqlalchemy.dialects import postgresql, sqlite

        insert = (postgresql if dialect == "postgresql" else sqlite).insert(BucketValue)
        conflicting = insert.values(rows)
        return cast(
            sa.Insert,
            conflicting.on_conflict_do_update(
                index_elements=["suite", "check_name", "bucket"],
                set_={name: conflicting.excluded[name] for name in changing},
                where=conflicting.excluded.observed_at >= BucketValue.observed_at,
            ),
        )
    if dialect in ("mysql", "mariadb"):
        from sqlalchemy.dialects import mysql

        duplicate = mysql.insert(BucketValue).values(rows)
        newer = duplicate.inserted.observed_at >= BucketValue.observed_at
        # MySQL assigns in order: observed_at last, so that every test sees the old one.
        return cast(
            sa.Insert,
            duplicate.on_duplicate_key_update(
                [
                    (
                        name,
                        sa.case(
                            (newer, duplicate.inserted[name]), else_=BucketValue.__table__.c[name]
                        ),
                    )
                    for name in changing
                ]
            ),
        )
    raise StoreError(f"the state store cannot run on {dialect}")


# What may change on a row after it is recorded.
RESTART_FIELDS = frozenset(
    {"state", "run_id", "url", "detail", "attempts", "next_try_at", "started_at", "finished_at"}
)
OUTBOX_FIELDS = frozenset(
    {
        "status",
        "attempted_at",
        "sent_at",
        "attempts",
        "channel",
        "ts",
        "error",
        "due_at",
        "claimed_by",
        "claimed_until",
    }
)


class IncidentChange(NamedTuple):
    """What one call did to an incident: which incident, what happened, the event's id."""

    incident_id: int
    event: str
    event_id: int


class NewClick(NamedTuple):
    """A Slack click to record: request ``key`` (remembered until ``until``), its
    ``payload`` (JSON text), and when it came."""

    key: str
    payload: str
    at: datetime
    until: datetime


class IncidentMoved(StoreError):
    """The incident changed (its status or reminders) since the caller read it."""


def alembic_config(connection: sa.Connection) -> Config:
    """An Alembic configuration for the packaged migrations, bound to ``connection``."""
    from alembic.config import Config

    config = Config()
    # Config values go through configparser interpolation, where "%" is special.
    config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    config.attributes["connection"] = connection
    return config


def _describe(exc: BaseException) -> str:
    if isinstance(exc, DBAPIError) and exc.orig is not None:
        return str(exc.orig).strip()
    return str(exc).strip() or exc.__class__.__name__


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    # The sqlite3 driver's own transaction handling skips BEGIN before DDL and SELECT;
    # taking it over makes migrations atomic and read-then-write sequences consistent.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    # Write-ahead logging: one sync per commit instead of two, and readers never wait for the
    # writer (the daemon's scheduler and its interactions endpoint share the file). The mode
    # is kept in the file, so it is switched once; a process that finds another one switching
    # it at that moment goes on as it is.
    (mode,) = cursor.execute("PRAGMA journal_mode").fetchone()
    if mode not in ("wal", "memory"):
        with suppress(sqlite3.OperationalError):
            cursor.execute("PRAGMA journal_mode=WAL")
    cursor.close()


# The columns of a row one query reads (see Store._read_one).
_Columns = TypeVarTuple("_Columns")

# The execution option of the connections that only read (see Store._transaction).
_READ_ONLY = "dq_agent_read_only"


def _sqlite_begin(connection: sa.Connection) -> None:
    if connection.get_execution_options().get(_READ_ONLY):
        # A reader takes no lock: with write-ahead logging it reads the last commit, and
        # neither waits for a writer nor holds one up.
        connection.exec_driver_sql("BEGIN")
        return
    # IMMEDIATE takes the write lock up front, so two writers wait for each other
    # (up to the busy timeout) instead of one failing when it upgrades its lock.
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def _pool(url: sa.URL) -> dict[str, Any]:
    """How many connections to keep open. Served pages run in up to 40 threads at once, and
    opening a SQLite connection for each took a tenth of a page's time. On PostgreSQL, with
    10 kept open and up to 10 more opened for a transaction each, the overview served 18%
    fewer pages a second than with 20 kept open and none opened beyond (p99 108 ms against
    83). An in-memory SQLite database has a pool of its own kind."""
    if url.get_backend_name() != "sqlite":
        return {"pool_size": SERVER_POOL, "max_overflow": 0}
    if url.database in (None, "", ":memory:"):
        return {}
    return {"pool_size": SQLITE_POOL, "max_overflow": SQLITE_OVERFLOW}


def _create_engine(url: sa.URL) -> sa.Engine:
    if url.get_backend_name() == "sqlite":
        database = url.database or ""
        if database not in ("", ":memory:") and "uri" not in url.query:
            Path(database).parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(url, **_pool(url))
    if engine.dialect.name == "sqlite" and engine.dialect.driver == "pysqlite":
        event.listen(engine, "connect", _sqlite_connect)
        event.listen(engine, "begin", _sqlite_begin)
    return engine


def _sqlite_lock_path(url: sa.URL, suffix: str) -> Path | None:
    """``<database file><suffix>``, or None for an in-memory database."""
    database = url.database or ""
    if "uri" in url.query:
        if url.query.get("mode") == "memory":
            return None
        database = database.removeprefix("file:")
    if database in ("", ":memory:"):
        return None
    return Path(f"{database}{suffix}")


def _busy_timeout(url: sa.URL) -> float:
    """How long SQLite waits for a lock on this URL: its ``timeout`` (pysqlite's, 5 s)."""
    try:
        return float(str(url.query.get("timeout", 5.0)))
    except ValueError:
        return 5.0


class _SqliteWriters:
    """The writers of one SQLite store take turns: the threads of this process through a
    lock, the processes on the file through an exclusive ``flock`` on ``<database>-writers``
    (freed by the kernel when its holder dies).

    SQLite has one writer at a time, and one waiting for the database's own lock polls for
    it, sleeping up to 100 ms between tries: under a burst of writes (Slack clicks, each
    recorded before its acknowledgement) some waited a second. Here a thread is woken as soon
    as the writer before it is done, and another process's within half a millisecond. A
    process that waits longer than SQLite's busy timeout goes on without the turn, and
    SQLite's own lock decides, as it always did.
    """

    def __init__(self, path: Path | None, busy_s: float) -> None:
        self._threads = threading.RLock()
        self._busy_s = busy_s
        self._path = path  # None: a database in memory, private to this process
        self._file: int | None = None
        self._depth = 0  # nested write transactions of the thread holding the turn
        self._flocked = False

    def __enter__(self) -> None:
        self._threads.acquire()
        self._depth += 1
        if self._depth > 1 or self._path is None:
            return
        try:
            self._flocked = self._take_file()
        except OSError as exc:  # no turn across processes: SQLite's lock still rules
            log.warning("cannot take turns on %s: %s", self._path, exc)
            self._flocked = False
        except BaseException:  # interrupted while waiting: give the turn up
            self._depth -= 1
            self._threads.release()
            raise

    def __exit__(self, *_exc: object) -> None:
        try:
            if self._depth == 1 and self._flocked and self._file is not None:
                fcntl.flock(self._file, fcntl.LOCK_UN)
                self._flocked = False
        finally:
            self._depth -= 1
            self._threads.release()

    def _take_file(self) -> bool:
        if self._file is None:
            assert self._path is not None
            self._file = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
        deadline = time.monotonic() + self._busy_s
        while True:
            try:
                fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                if time.monotonic() > deadline:
                    return False
                time.sleep(0.0005)

    def close(self) -> None:
        with self._threads:
            if self._file is not None:
                os.close(self._file)
                self._file = None


class _MigrationError(Exception):
    """Alembic could not bring the schema up to date."""


def head_revision() -> str:
    """The newest migration's revision: its file is ``NNNN_what.py`` with revision ``NNNN``."""
    names = sorted(f.name for f in (MIGRATIONS_DIR / "versions").glob("[0-9][0-9][0-9][0-9]_*.py"))
    return names[-1][:4]


def _migrate(engine: sa.Engine) -> None:
    with _ALEMBIC_LOCK, engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            # Held until this transaction ends, i.e. until the migration is committed.
            connection.execute(sa.select(sa.func.pg_advisory_xact_lock(MIGRATION_LOCK_KEY)))
        if sa.inspect(connection).has_table("alembic_version"):
            current = connection.execute(sa.text("SELECT version_num FROM alembic_version"))
            if current.scalar() == head_revision():
                return  # up to date: Alembic (a tenth of a second to import) is not needed
        from alembic import command
        from alembic.util import CommandError

        try:
            command.upgrade(alembic_config(connection), "head")
        except CommandError as exc:
            raise _MigrationError(str(exc)) from exc


class Store:
    """Run, metric and schema history in a SQLite or PostgreSQL database."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self._display_url = mask_url(engine.url)
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        reads = engine.execution_options(**{_READ_ONLY: True})
        if engine.dialect.name == "postgresql":
            # At PostgreSQL's READ COMMITTED every statement takes a snapshot of its own,
            # inside a transaction or not: so a read goes without one, and without the
            # BEGIN and COMMIT round trips that made up two thirds of a one-query read.
            reads = reads.execution_options(isolation_level="AUTOCOMMIT")
        self._reads = sessionmaker(reads, expire_on_commit=False)
        self._read_engine = reads
        self._writing: AbstractContextManager[object] = (
            _SqliteWriters(_sqlite_lock_path(engine.url, "-writers"), _busy_timeout(engine.url))
            if engine.dialect.name == "sqlite"
            else nullcontext()
        )
        # When this process last let go of the requests and clicks expired.
        self._requests_pruned_at: datetime | None = None
        self._recorded = 0

    @classmethod
    def open(cls, url: str) -> Self:
        """Connect to ``url`` and bring its schema up to date; errors become StoreError."""
        try:
            parsed = sa.make_url(url)
        except (SQLAlchemyError, ValueError) as exc:  # ValueError: e.g. a non-numeric port
            shown = mask_url(url)
            raise StoreError(f"invalid state store URL {shown}: {_describe(exc)}") from exc
        shown = mask_url(parsed)
        engine: sa.Engine | None = None
        try:
            engine = _create_engine(parsed)
            _migrate(engine)
        except (SQLAlchemyError, _MigrationError, OSError, ImportError) as exc:
            if engine is not None:
                engine.dispose()
            reason = redact(_describe(exc), *url_secrets(parsed))
            raise StoreError(f"cannot open state store {shown}: {reason}") from exc
        return cls(engine)

    def close(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()
        if isinstance(self._writing, _SqliteWriters):
            self._writing.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def ping(self) -> None:
        """Raise StoreError unless the database answers."""
        with self._transaction("reach the state store") as session:
            session.execute(sa.text("SELECT 1"))

    @property
    def recorded(self) -> int:
        """How many transactions of this object recorded a suite run or an incident event
        (at least: two committed at once may count as one): what :meth:`newest_ids` tells
        of every process, told of this one without asking the database."""
        return self._recorded

    @contextmanager
    def _transaction(self, what: str, *, read: bool = False) -> Iterator[Session]:
        """A transaction; ``read``: one that only reads (on SQLite it takes no lock, so the
        dashboard's pages never queue behind the writers)."""
        try:
            if read:
                with self._reads.begin() as session:
                    yield session
            else:
                with self._writing, self._sessions.begin() as session:
                    yield session
                if session.info.get(_RECORDS):
                    self._recorded += 1  # once committed: a page read before is out of date
        except SQLAlchemyError as exc:
            raise self._failed(what, exc) from exc

    def _read_one(self, what: str, query: sa.Select[*_Columns]) -> sa.Row[*_Columns] | None:
        """The first row of one query, read on a plain connection: the reads every page makes
        (is the session live, has anything changed) skip the ORM session's bookkeeping, which
        took a third to a half of their time."""
        try:
            with self._read_engine.connect() as connection:
                return connection.execute(query).first()
        except SQLAlchemyError as exc:
            raise self._failed(what, exc) from exc

    def _failed(self, what: str, exc: SQLAlchemyError) -> StoreError:
        return StoreError(f"cannot {what} in state store {self._display_url}: {_describe(exc)}")

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
            session.info[_RECORDS] = True
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
                self._keep_series(session, suite_run.id, result, check)

    def _keep_series(
        self, session: Session, suite_run_id: int, result: SuiteResult, check: CheckResult
    ) -> None:
        """Each bucket of ``check.series`` once: a bucket seen before takes the newer count
        (by the wall clock: a backtest counts a finished bucket as a live run does, and later
        counts include late rows) when it differs; the same count again is not written. A live
        run lets go of the buckets its baselines no longer reach; a backtest (``as_of``)
        leaves them for the live runs."""
        series = (BucketValue.suite == result.suite, BucketValue.check_name == check.name)
        known: dict[datetime, float] = {}
        if check.series:
            buckets = BucketValue.bucket.between(min(check.series), max(check.series))
            query = sa.select(BucketValue.bucket, BucketValue.value).where(*series, buckets)
            known = {bucket: value for bucket, value in session.execute(query)}
        values = [
            {
                "suite_run_id": suite_run_id,
                "suite": result.suite,
                "check_name": check.name,
                "bucket": bucket,
                "value": float(value),
                "observed_at": result.started_at,
                "judged_at": result.as_of or result.started_at,
            }
            for bucket, value in check.series.items()
            if known.get(bucket) != float(value)
        ]
        dialect = self.engine.dialect.name
        for first in range(0, len(values), _UPSERT_BATCH):
            session.execute(_newer_counts(dialect, values[first : first + _UPSERT_BATCH]))
        if check.series_reach is not None and result.as_of is None:
            session.execute(
                sa.delete(BucketValue)
                .where(*series, BucketValue.bucket < check.series_reach)
                .execution_options(synchronize_session=False)
            )

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

    def add_feedback(
        self,
        suite: str,
        check: str,
        bucket: datetime,
        *,
        verdict: str,
        by: str,
        at: datetime,
        note: str = "",
    ) -> None:
        """Record a person's verdict on one bucket of a time-bucketed check."""
        row = Feedback(
            suite=suite,
            check_name=check,
            bucket=bucket,
            verdict=verdict,
            note=note,
            created_by=by,
            created_at=at,
        )
        with self._transaction(f"record feedback on {suite}/{check}") as session:
            session.add(row)

    def expected_buckets(self, suite: str, check: str) -> set[datetime]:
        """Bucket starts (UTC) whose latest verdict is "expected"."""
        query = (
            sa.select(Feedback.bucket, Feedback.verdict)
            .where(Feedback.suite == suite, Feedback.check_name == check)
            .order_by(Feedback.created_at, Feedback.id)
        )
        with self._transaction(f"read feedback on {suite}/{check}", read=True) as session:
            latest = {row.bucket: row.verdict for row in session.execute(query)}
        return {bucket for bucket, verdict in latest.items() if verdict == "expected"}

    def bucket_history(
        self, suite: str, check: str, *, since: datetime | None = None
    ) -> dict[datetime, float]:
        """The newest recorded value of every bucket (UTC start → value)."""
        query = sa.select(BucketValue.bucket, BucketValue.value).where(
            BucketValue.suite == suite, BucketValue.check_name == check
        )
        if since is not None:
            query = query.where(BucketValue.bucket >= since)
        with self._transaction(f"read bucket history of {suite}/{check}", read=True) as session:
            return {row.bucket: row.value for row in session.execute(query)}

    def judged_buckets(self, suite: str, check: str, *, limit: int) -> list[dict[str, Any]]:
        """The newest ``limit`` buckets a time-bucketed check judged in live runs, oldest first.

        Each is the newest run's verdict on the bucket: ``bucket`` (UTC start, from the
        ``bucket`` the check records in its observed values), ``judged_at`` (that run's start),
        ``status``, ``message``, ``observed``, ``findings``; ``runs`` (how many runs judged the
        bucket), ``first_judged_at`` (the first one's start) and ``metrics``: each metric's
        newest value among those runs, so that a run that recorded none (the bucket was marked
        expected since) leaves what an earlier run measured.
        """
        verdicts = (
            sa.select(CheckResultRow, SuiteRun.started_at)
            .join(SuiteRun, SuiteRun.id == CheckResultRow.suite_run_id)
            .where(
                CheckResultRow.suite == suite,
                CheckResultRow.name == check,
                SuiteRun.as_of.is_(None),
            )
            .order_by(SuiteRun.started_at.desc(), CheckResultRow.id.desc())
            .execution_options(yield_per=200)
        )
        found: dict[datetime, dict[str, Any]] = {}
        run_buckets: dict[int, datetime] = {}
        since: datetime | None = None
        with self._transaction(f"read the verdicts of {suite}/{check}", read=True) as session:
            # Newest first: the first verdict on a bucket is the one that counts. Later runs
            # judge later buckets, so once ``limit`` buckets are found, older rows are older.
            rows = session.execute(verdicts)
            for row, started_at in rows:
                stamp = row.observed.get("bucket") if isinstance(row.observed, dict) else None
                if not isinstance(stamp, str):
                    continue  # an error: no bucket was judged
                bucket = datetime.fromisoformat(stamp).astimezone(UTC)
                if bucket not in found:
                    if len(found) == limit:
                        break
                    found[bucket] = {
                        "bucket": bucket,
                        "judged_at": started_at,
                        "status": row.status,
                        "message": row.message,
                        "observed": row.observed,
                        "findings": row.findings,
                        "runs": 0,
                        "metrics": {},
                    }
                found[bucket]["runs"] += 1
                found[bucket]["first_judged_at"] = started_at
                run_buckets[row.suite_run_id] = bucket
                since = started_at
            rows.close()
            if since is None:
                return []
            metrics = (
                sa.select(Metric.suite_run_id, Metric.metric, Metric.value)
                .join(SuiteRun, SuiteRun.id == Metric.suite_run_id)
                .where(
                    Metric.suite == suite,
                    Metric.check_name == check,
                    SuiteRun.as_of.is_(None),
                    SuiteRun.started_at >= since,
                )
                .order_by(SuiteRun.started_at.desc(), Metric.id.desc())
            )
            for run_id, name, value in session.execute(metrics):
                if run_id in run_buckets:
                    found[run_buckets[run_id]]["metrics"].setdefault(name, value)
        return [found[bucket] for bucket in sorted(found)]

    # -- snapshots of operational sources ------------------------------------------------------

    def save_snapshot(
        self, suite: str, content: Sequence[Any], *, row_count: int, at: datetime, keep: int
    ) -> int:
        """Keep what a run read; only the newest ``keep`` snapshots of a suite survive."""
        with self._transaction(f"save a snapshot of {suite!r}") as session:
            snapshot = Snapshot(
                suite=suite, taken_at=at, row_count=row_count, content=list(content)
            )
            session.add(snapshot)
            session.flush()
            stale = (
                sa.select(Snapshot.id)
                .where(Snapshot.suite == suite)
                .order_by(Snapshot.taken_at.desc(), Snapshot.id.desc())
                .offset(keep)
            )
            session.execute(sa.delete(Snapshot).where(Snapshot.id.in_(stale.scalar_subquery())))
            return snapshot.id

    def last_good_snapshot(self, suite: str) -> tuple[datetime, list[Any]] | None:
        """The newest snapshot of ``suite`` that held rows: (when, content)."""
        query = (
            sa.select(Snapshot.taken_at, Snapshot.content)
            .where(Snapshot.suite == suite, Snapshot.row_count > 0)
            .order_by(Snapshot.taken_at.desc(), Snapshot.id.desc())
            .limit(1)
        )
        with self._transaction(f"read snapshots of {suite!r}", read=True) as session:
            row = session.execute(query).first()
        return None if row is None else (row.taken_at, list(row.content))

    # -- incidents ------------------------------------------------------------------------------

    def record_problem(
        self,
        *,
        suite: str,
        check: str,
        dataset: str,
        owners: Sequence[str],
        summary: str,
        at: datetime,
        check_type: str = "",
        evidence: Mapping[str, Any] | None = None,
        chain: Sequence[Sequence[str]] = (),
    ) -> IncidentChange:
        """One more failure of a problem: opens, re-opens or updates its incident.

        The event is ``opened``, ``reopened`` or ``failed_again``. A re-opened incident starts
        its escalation again from the first step of its chain.
        """
        with self._transaction(f"record a problem of {suite}/{check}") as session:
            incident = session.scalars(
                sa.select(Incident)
                .where(
                    Incident.suite == suite,
                    Incident.check_name == check,
                    Incident.dataset == dataset,
                )
                .order_by(Incident.id.desc())
                .limit(1)
            ).first()
            if incident is None:
                incident = Incident(
                    suite=suite,
                    check_name=check,
                    dataset=dataset,
                    status="open",
                    failures=0,
                    opened_at=at,
                    resolved_at=None,
                    snoozed_until=None,
                    level=0,
                    nudges=0,
                    last_nudged_at=None,
                )
                session.add(incident)
                event = "opened"
            else:
                event = "reopened" if incident.status == "resolved" else "failed_again"
                if event == "reopened":
                    incident.status, incident.resolved_at, incident.failures = "open", None, 0
                    incident.level, incident.nudges, incident.last_nudged_at = 0, 0, None
                    # incident.resolution stays: how it ended last time is worth knowing now
                elif incident.status == "snoozed" and (
                    incident.snoozed_until is None or incident.snoozed_until <= at
                ):
                    incident.status, incident.snoozed_until = "open", None
                elif incident.status == "verifying":
                    incident.status = "open"  # the fix did not hold
            incident.failures += 1
            incident.summary, incident.updated_at = summary, at
            incident.owners, incident.check_type = list(owners), check_type
            incident.evidence = to_jsonable(evidence) if evidence is not None else None
            incident.chain = [list(step) for step in chain] or [list(owners)]
            session.flush()
            return self._event(session, incident.id, at, event, "agent", summary)

    def problems_gone(
        self,
        *,
        suite: str,
        check: str,
        dataset: str,
        at: datetime,
        hold: bool = False,
        corrected: bool = False,
    ) -> IncidentChange | None:
        """The check passes again: resolve its open incident, if any.

        With ``hold`` (the suite restarts pipelines) the incident is not resolved yet but
        ``verifying`` with the event ``recovered``, once per recovery, until the restarted
        pipelines are verified.
        """
        with self._transaction(f"resolve {suite}/{check}") as session:
            incident = session.scalars(
                sa.select(Incident).where(
                    Incident.suite == suite,
                    Incident.check_name == check,
                    Incident.dataset == dataset,
                    Incident.status != "resolved",
                )
            ).first()
            if incident is None:
                return None
            if not hold:
                incident.status, incident.resolved_at, incident.updated_at = "resolved", at, at
                incident.resolution = _resolution(
                    session, incident, at, "agent", "the agent corrected it" if corrected else ""
                )
                detail = "corrected by the agent" if corrected else "the check passes again"
                return self._event(session, incident.id, at, "resolved", "agent", detail)
            latest = session.scalar(
                sa.select(IncidentEvent.event)
                .where(
                    IncidentEvent.incident_id == incident.id,
                    # "verifying": a person says it is fixed, e.g. after a failed restart
                    IncidentEvent.event.in_(
                        ["opened", "reopened", "failed_again", "recovered", "verifying"]
                    ),
                )
                .order_by(IncidentEvent.id.desc())
                .limit(1)
            )
            if latest == "recovered":
                return None  # held already: the restart of this recovery is under way
            incident.status, incident.updated_at = "verifying", at
            detail = "the check passes again; the pipelines restart before it closes"
            return self._event(session, incident.id, at, "recovered", "agent", detail)

    def set_incident_status(
        self,
        incident_id: int,
        status: str,
        *,
        at: datetime,
        by: str,
        detail: str = "",
        until: datetime | None = None,
    ) -> IncidentChange:
        """A person's decision (resolved, snoozed until, expected, acknowledged...).

        An answer from a person resets the count of unanswered nudges.
        """
        with self._transaction(f"update incident {incident_id}") as session:
            incident = session.get(Incident, incident_id)
            if incident is None:
                raise StoreError(f"no incident {incident_id}")
            incident.status, incident.updated_at = status, at
            incident.snoozed_until = until if status == "snoozed" else None
            if status == "resolved":
                incident.resolved_at = at
                how = "" if by == "agent" else f"{by} resolved it by hand"
                incident.resolution = _resolution(session, incident, at, by, how)
            if by != "agent":
                incident.nudges = 0
            return self._event(session, incident_id, at, status, by, detail)

    def annotate_incident(self, incident_id: int, updates: Mapping[str, Any]) -> None:
        """Add to an incident's evidence (a triage, a draft for its owner...)."""
        with self._transaction(f"annotate incident {incident_id}") as session:
            incident = session.get(Incident, incident_id)
            if incident is None:
                raise StoreError(f"no incident {incident_id}")
            incident.evidence = {**(incident.evidence or {}), **to_jsonable(dict(updates))}

    def note_incident(
        self, incident_id: int, event: str, *, at: datetime, by: str, detail: str
    ) -> IncidentChange:
        """Something happened to an incident that does not change its status."""
        with self._transaction(f"note {event} on incident {incident_id}") as session:
            if session.get(Incident, incident_id) is None:
                raise StoreError(f"no incident {incident_id}")
            return self._event(session, incident_id, at, event, by, detail)

    def nudged(
        self,
        incident_id: int,
        *,
        at: datetime,
        level: int,
        nudges: int,
        event: str,
        detail: str,
        read: Mapping[str, Any] | None = None,
    ) -> IncidentChange:
        """People were (or are about to be) reminded: where along the chain it now stands.

        With ``read`` (the incident as the caller saw it), only if its status, level and
        reminders are still as read; else :class:`IncidentMoved` (another process resolved,
        snoozed or reminded about it meanwhile)."""
        with self._transaction(f"record a nudge on incident {incident_id}") as session:
            incident = session.get(Incident, incident_id, with_for_update=read is not None)
            if incident is None:
                raise StoreError(f"no incident {incident_id}")
            if read is not None and (incident.status, incident.level, incident.nudges) != (
                read["status"],
                read["level"],
                read["nudges"],
            ):
                raise IncidentMoved(f"incident {incident_id} changed since it was read")
            incident.level, incident.nudges, incident.last_nudged_at = level, nudges, at
            if incident.status == "open":
                incident.status = "notified"
            return self._event(session, incident_id, at, event, "agent", detail)

    @staticmethod
    def _event(
        session: Session, incident_id: int, at: datetime, event: str, by: str, detail: str
    ) -> IncidentChange:
        row = IncidentEvent(incident_id=incident_id, at=at, event=event, by=by, detail=detail)
        session.add(row)
        session.flush()
        session.info[_RECORDS] = True
        return IncidentChange(incident_id, event, row.id)

    def similar(
        self, incident: Mapping[str, Any], limit: int = 3, *, others_only: bool = False
    ) -> list[dict[str, Any]]:
        """Past resolutions most like this incident: its own last one (a re-opened incident;
        not with ``others_only``) and others of the same suite and check first, then of the
        same dataset, then of the same kind of check; newest first within each."""
        query = sa.select(Incident).where(
            Incident.resolution.is_not(None),
            Incident.id != incident["id"] if others_only else sa.true(),
            sa.or_(
                sa.and_(
                    Incident.suite == incident["suite"], Incident.check_name == incident["check"]
                ),
                Incident.dataset == incident["dataset"],
                sa.and_(
                    Incident.check_type == incident.get("check_type", ""), Incident.check_type != ""
                ),
            ),
        )
        same_check = sa.and_(
            Incident.suite == incident["suite"], Incident.check_name == incident["check"]
        )
        rank = sa.case((same_check, 0), (Incident.dataset == incident["dataset"], 1), else_=2)
        newest = sa.func.coalesce(Incident.resolved_at, Incident.updated_at).desc()
        query = query.order_by(rank, newest, Incident.id.desc()).limit(limit)
        with self._transaction("find similar incidents", read=True) as session:
            return [
                {"id": i.id, "suite": i.suite, "check": i.check_name, **(i.resolution or {})}
                for i in session.scalars(query)
            ]

    def incident(self, incident_id: int, *, events: bool = True) -> dict[str, Any] | None:
        """One incident (with its events unless ``events=False``), or None."""
        query = sa.select(Incident).where(Incident.id == incident_id)
        found = self._incidents(query, events=events)
        return found[0] if found else None

    def incidents(
        self,
        *,
        status: str | None = None,
        active: bool = False,
        events: bool = True,
        suite: str | None = None,
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        """Incidents, newest first (the newest ``limit``), each with its events; ``active``:
        not resolved; ``suite``: of that suite only.

        ``events=False`` leaves the history out (``"events": []``): a long-lived incident
        gathers an event per failing run, and the agent's own loops do not need them.
        """
        query = sa.select(Incident).order_by(Incident.id.desc()).limit(limit)
        if status is not None:
            query = query.where(Incident.status == status)
        if active:
            query = query.where(Incident.status != "resolved")
        if suite is not None:
            query = query.where(Incident.suite == suite)
        return self._incidents(query, events=events)

    def _incidents(self, query: sa.Select[Incident], *, events: bool) -> list[dict[str, Any]]:
        with self._transaction("list incidents", read=True) as session:
            found = list(session.scalars(query))
            history = (
                list(
                    session.scalars(
                        sa.select(IncidentEvent)
                        .where(IncidentEvent.incident_id.in_([i.id for i in found]))
                        .order_by(IncidentEvent.id)
                    )
                )
                if events
                else []
            )
        by_incident: dict[int, list[dict[str, Any]]] = {}
        for e in history:
            by_incident.setdefault(e.incident_id, []).append(
                {
                    "id": e.id,
                    "at": e.at.isoformat(),
                    "event": e.event,
                    "by": e.by,
                    "detail": e.detail,
                }
            )
        return [
            {
                "id": i.id,
                "suite": i.suite,
                "check": i.check_name,
                "check_type": i.check_type,
                "dataset": i.dataset,
                "status": i.status,
                "owners": list(i.owners),
                "chain": [list(step) for step in i.chain or [i.owners]],
                "level": i.level,
                "nudges": i.nudges,
                "summary": i.summary,
                "evidence": i.evidence or {},
                "failures": i.failures,
                "opened_at": i.opened_at.isoformat(),
                "updated_at": i.updated_at.isoformat(),
                "resolved_at": i.resolved_at.isoformat() if i.resolved_at else None,
                "snoozed_until": i.snoozed_until.isoformat() if i.snoozed_until else None,
                "last_nudged_at": i.last_nudged_at.isoformat() if i.last_nudged_at else None,
                "resolution": i.resolution,
                "events": by_incident.get(i.id, []),
            }
            for i in found
        ]

    # -- language-model calls -------------------------------------------------------------------

    def record_llm_call(
        self,
        *,
        at: datetime,
        incident_id: int | None,
        purpose: str,
        model: str,
        input_tokens: int,
        output_tokens: int,
        outcome: str,
    ) -> None:
        with self._transaction("record a language-model call") as session:
            session.add(
                LlmCall(
                    at=at,
                    incident_id=incident_id,
                    purpose=purpose,
                    model=model,
                    input_tokens=input_tokens,
                    output_tokens=output_tokens,
                    outcome=outcome,
                )
            )

    def llm_tokens(self, *, incident_id: int | None = None, since: datetime | None = None) -> int:
        """Tokens used, input and output together: for one incident, or since a moment."""
        total = sa.func.coalesce(sa.func.sum(LlmCall.input_tokens + LlmCall.output_tokens), 0)
        query = sa.select(total)
        if incident_id is not None:
            query = query.where(LlmCall.incident_id == incident_id)
        if since is not None:
            query = query.where(LlmCall.at >= since)
        with self._transaction("sum language-model tokens", read=True) as session:
            return int(session.scalar(query) or 0)

    # -- pipeline restarts ----------------------------------------------------------------------

    def restarts_add(self, rows: Sequence[Mapping[str, Any]], *, at: datetime) -> int:
        """Record restarts to make; one whose key is already recorded is left alone."""
        if not rows:
            return 0
        with self._transaction("record restarts") as session:
            keys = [r["key"] for r in rows]
            known = set(session.scalars(sa.select(Restart.key).where(Restart.key.in_(keys))))
            added = 0
            for r in rows:
                if r["key"] in known:
                    continue
                session.add(
                    Restart(
                        key=r["key"],
                        batch=r["batch"],
                        suite=r["suite"],
                        target=r["target"],
                        label=r["label"],
                        incidents=list(r["incidents"]),
                        state="pending",
                        run_id=None,
                        url=None,
                        detail="",
                        attempts=0,
                        created_at=at,
                        next_try_at=at,
                        started_at=None,
                        finished_at=None,
                    )
                )
                added += 1
            return added

    def restarts(
        self, *, suite: str | None = None, states: Sequence[str] | None = None
    ) -> list[Restart]:
        """Recorded restarts, oldest first."""
        query = sa.select(Restart).order_by(Restart.id)
        if suite is not None:
            query = query.where(Restart.suite == suite)
        if states is not None:
            query = query.where(Restart.state.in_(list(states)))
        with self._transaction("read restarts", read=True) as session:
            return list(session.scalars(query))

    def restart_update(self, restart_id: int, **values: Any) -> None:
        """Record where a restart stands (started with its run id, polled, finished...)."""
        self._update(Restart, restart_id, values, RESTART_FIELDS, "restart")

    def _update(
        self,
        model: type[Restart | OutboxMessage],
        row_id: int,
        values: Mapping[str, Any],
        allowed: frozenset[str],
        what: str,
    ) -> None:
        if not set(values) <= allowed:
            raise StoreError(f"cannot set {sorted(set(values) - allowed)} on a {what}")
        with self._transaction(f"update {what} {row_id}") as session:
            session.execute(sa.update(model).where(model.id == row_id).values(**values))

    # -- the outbox of messages to people -------------------------------------------------------

    def outbox_add(self, messages: Sequence[Mapping[str, Any]], *, at: datetime) -> int:
        """Record messages to send; one whose key is already recorded is left alone.

        Each mapping has ``key``, ``kind``, ``recipient``, ``text`` and optionally
        ``incident_id``, ``correction_id``, ``due_at``. Returns how many were new.
        """
        if not messages:
            return 0
        with self._transaction("record messages to send") as session:
            keys = [m["key"] for m in messages]
            known = set(
                session.scalars(sa.select(OutboxMessage.key).where(OutboxMessage.key.in_(keys)))
            )
            added = 0
            for m in messages:
                if m["key"] in known:
                    continue
                known.add(m["key"])
                session.add(
                    OutboxMessage(
                        key=m["key"],
                        kind=m["kind"],
                        incident_id=m.get("incident_id"),
                        correction_id=m.get("correction_id"),
                        recipient=m["recipient"],
                        text=m["text"],
                        status="pending",
                        created_at=at,
                        due_at=m.get("due_at") or at,
                        attempted_at=None,
                        sent_at=None,
                        attempts=0,
                    )
                )
                added += 1
            return added

    def outbox(
        self,
        *,
        status: str | Collection[str] | None = None,
        kind: str | None = None,
        due_by: datetime | None = None,
        incident_id: int | None = None,
        correction_id: int | None = None,
    ) -> list[OutboxMessage]:
        """Recorded messages, oldest first; ``status`` one or any of several.

        Filter in the query rather than after it: a long-lived incident gathers a reply and
        an update per failing run, and reading them all to find its first messages made
        every run slower than the one before.
        """
        query = sa.select(OutboxMessage).order_by(OutboxMessage.id)
        if isinstance(status, str):
            query = query.where(OutboxMessage.status == status)
        elif status is not None:
            query = query.where(OutboxMessage.status.in_(status))
        if kind is not None:
            query = query.where(OutboxMessage.kind == kind)
        if due_by is not None:
            query = query.where(OutboxMessage.due_at <= due_by)
        if incident_id is not None:
            query = query.where(OutboxMessage.incident_id == incident_id)
        if correction_id is not None:
            query = query.where(OutboxMessage.correction_id == correction_id)
        with self._transaction("read the outbox", read=True) as session:
            return list(session.scalars(query))

    def outbox_waiting(self) -> int:
        """How many messages wait to be sent (counted in the database, not read)."""
        query = sa.select(sa.func.count()).where(OutboxMessage.status == "pending")
        row = self._read_one("count the messages waiting", query)
        assert row is not None  # a count has its one row
        return int(row[0])

    def outbox_update(self, message_id: int, **values: Any) -> None:
        """Record what became of one message (attempted, sent with its ts, failed...)."""
        self._update(OutboxMessage, message_id, values, OUTBOX_FIELDS, "outbox message")

    def outbox_claim(
        self, message_id: int, *, by: str, at: datetime, lease: timedelta
    ) -> OutboxMessage | None:
        """Claim a pending message for sending until ``at + lease``; None when it is no
        longer pending or another sender holds it (its claim has not lapsed).

        One conditional UPDATE: of two senders racing for a row, exactly one changes it.
        """
        claimable = sa.or_(
            OutboxMessage.claimed_until.is_(None),
            OutboxMessage.claimed_until < at,
            OutboxMessage.claimed_by == by,
        )
        claim = (
            sa.update(OutboxMessage)
            .where(OutboxMessage.id == message_id, OutboxMessage.status == "pending")
            .where(claimable)
            .values(claimed_by=by, claimed_until=at + lease)
            .execution_options(synchronize_session=False)
        )
        with self._transaction(f"claim outbox message {message_id}") as session:
            if self.engine.dialect.update_returning:  # SQLite, PostgreSQL: one statement
                return session.scalars(claim.returning(OutboxMessage)).one_or_none()
            if session.execute(claim).rowcount != 1:  # type: ignore[attr-defined]
                return None
            return session.scalars(
                sa.select(OutboxMessage)
                .where(OutboxMessage.id == message_id)
                .execution_options(populate_existing=True)
            ).one()

    # -- what the web endpoints remember ---------------------------------------------------------

    def remember_request(self, key: str, *, at: datetime, until: datetime) -> bool:
        """True the first time ``key`` (a request's signature, a Socket Mode envelope's id) is
        seen; False for a replay.

        Kept in the store until ``until``, so every replica, and this one after a restart,
        refuses the same request twice.
        """
        try:
            with self._transaction("remember a request") as session:
                self._prune_requests(session, at)
                if session.get(SeenRequest, key) is not None:
                    return False
                session.add(SeenRequest(key=key, expires_at=until))
        except StoreError as exc:
            if isinstance(exc.__cause__, IntegrityError):  # another replica saw it first
                return False
            raise
        return True

    # -- Slack clicks acknowledged, until acted on -----------------------------------------------

    def accept_click(
        self,
        key: str,
        payload: str,
        *,
        at: datetime,
        until: datetime,
        claim: str,
        lease_until: datetime,
    ) -> int | None:
        """Record a click (``payload``, JSON text) held by ``claim`` until ``lease_until``,
        and remember request ``key`` until ``until``, in one transaction: the click's id, or
        None for a replay (nothing recorded). Done clicks older than a day are pruned, once a
        minute.
        """
        [click_id] = self.accept_clicks(
            [NewClick(key, payload, at, until)], claim=claim, lease_until=lease_until
        )
        return click_id

    def accept_clicks(
        self, clicks: Sequence[NewClick], *, claim: str, lease_until: datetime
    ) -> list[int | None]:
        """:meth:`accept_click` for several clicks with one commit: each one's id, or None
        for a replay (of a request remembered, or of one earlier in ``clicks``).

        When another replica records one of the same requests meanwhile, the transaction
        fails as a whole; each click is then recorded on its own, so only that one is
        refused as a replay.
        """
        if not clicks:
            return []
        try:
            return self._accept_clicks(clicks, claim, lease_until)
        except StoreError as exc:
            if not isinstance(exc.__cause__, IntegrityError):
                raise
        return [self._accept_clicks([c], claim, lease_until)[0] for c in clicks]

    def _accept_clicks(
        self, clicks: Sequence[NewClick], claim: str, lease_until: datetime
    ) -> list[int | None]:
        at = min(c.at for c in clicks)
        try:
            with self._transaction("record Slack clicks") as session:
                self._prune_requests(session, at)
                keys = {c.key for c in clicks}
                seen = set(
                    session.scalars(sa.select(SeenRequest.key).where(SeenRequest.key.in_(keys)))
                )
                new: dict[str, NewClick] = {}
                for click in clicks:  # the first of two alike is new, the second a replay
                    if click.key not in seen:
                        new.setdefault(click.key, click)
                if not new:
                    return [None] * len(clicks)
                # Written as two statements of many rows, into the tables themselves: the
                # ORM's unit of work took most of a click's time, and its bulk insert a
                # fifth to a third of what was left.
                session.execute(
                    sa.insert(cast(sa.Table, SeenRequest.__table__)),
                    [{"key": c.key, "expires_at": c.until} for c in new.values()],
                )
                ids = session.execute(
                    sa.insert(cast(sa.Table, SlackClick.__table__)).returning(
                        SlackClick.key, SlackClick.id, sort_by_parameter_order=True
                    ),
                    [
                        {
                            "key": c.key,
                            "payload": c.payload,
                            "received_at": c.at,
                            "claimed_by": claim,
                            "lease_until": lease_until,
                            "done_at": None,
                        }
                        for c in new.values()
                    ],
                )
                by_key: dict[str, int] = {key: id_ for key, id_ in ids}
                return [by_key[c.key] if new.get(c.key) is c else None for c in clicks]
        except StoreError as exc:
            if isinstance(exc.__cause__, IntegrityError) and len(clicks) == 1:
                return [None]  # another replica took it first
            raise

    def _prune_requests(self, session: Session, at: datetime) -> None:
        """Let go of the requests whose memory expired and the clicks done long enough ago,
        once every :data:`PRUNE_REQUESTS_EVERY` (of ``at``, a recording's time). An expired
        request kept a minute longer is harmless: Slack's signature of it is stale by then."""
        last = self._requests_pruned_at
        if last is not None and last <= at < last + PRUNE_REQUESTS_EVERY:
            return
        self._requests_pruned_at = at
        session.execute(sa.delete(SeenRequest).where(SeenRequest.expires_at < at))
        session.execute(sa.delete(SlackClick).where(SlackClick.done_at < at - CLICKS_KEPT))

    def claim_clicks(
        self, claim: str, *, at: datetime, lease_until: datetime, limit: int
    ) -> list[tuple[int, str]]:
        """The oldest clicks not done that nobody holds (released, or their lease lapsed),
        at most ``limit``, now held by ``claim``: (id, payload) in the order they came.

        Each is taken by a conditional UPDATE whose row count says who won, so of replicas
        racing for a click exactly one gets it (on PostgreSQL the rows another replica is
        taking are skipped, not waited for).
        """
        free = sa.or_(SlackClick.lease_until.is_(None), SlackClick.lease_until < at)
        candidates = (
            sa.select(SlackClick.id, SlackClick.payload)
            .where(SlackClick.done_at.is_(None), free)
            .order_by(SlackClick.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        taken: list[tuple[int, str]] = []
        with self._transaction("claim Slack clicks") as session:
            for click_id, payload in session.execute(candidates).all():
                claimed = session.execute(
                    sa.update(SlackClick)
                    .where(SlackClick.id == click_id, SlackClick.done_at.is_(None), free)
                    .values(claimed_by=claim, lease_until=lease_until)
                    .execution_options(synchronize_session=False)
                )
                if getattr(claimed, "rowcount", 0) == 1:
                    taken.append((click_id, payload))
        return taken

    def hold_click(self, click_id: int, claim: str, *, lease_until: datetime) -> bool:
        """Extend ``claim``'s lease on a click; False when it is done or another holds it."""
        with self._transaction("hold a Slack click") as session:
            held = session.execute(
                sa.update(SlackClick)
                .where(*_held_click(claim), SlackClick.id == click_id)
                .values(lease_until=lease_until)
                .execution_options(synchronize_session=False)
            )
            return getattr(held, "rowcount", 0) == 1

    def hold_clicks(self, claim: str, *, lease_until: datetime) -> int:
        """Extend ``claim``'s lease on every click it holds; how many."""
        with self._transaction("hold Slack clicks") as session:
            held = session.execute(
                sa.update(SlackClick)
                .where(*_held_click(claim))
                .values(lease_until=lease_until)
                .execution_options(synchronize_session=False)
            )
            return int(getattr(held, "rowcount", 0))

    def finish_click(self, click_id: int, claim: str, *, at: datetime) -> bool:
        """Mark a click ``claim`` holds done; False when another holds it now."""
        with self._transaction("mark a Slack click done") as session:
            done = session.execute(
                sa.update(SlackClick)
                .where(*_held_click(claim), SlackClick.id == click_id)
                .values(done_at=at, lease_until=None)
                .execution_options(synchronize_session=False)
            )
            return getattr(done, "rowcount", 0) == 1

    def release_clicks(self, claim: str, *, keep: int | None = None) -> int:
        """Give back the clicks ``claim`` holds and has not acted on (but ``keep``, the one
        being acted on): any replica may take them at once. How many."""
        query = sa.update(SlackClick).where(*_held_click(claim))
        if keep is not None:
            query = query.where(SlackClick.id != keep)
        with self._transaction("release Slack clicks") as session:
            released = session.execute(
                query.values(claimed_by=None, lease_until=None).execution_options(
                    synchronize_session=False
                )
            )
            return int(getattr(released, "rowcount", 0))

    def end_session(self, session_id: str, *, until: datetime, at: datetime) -> None:
        """A dashboard session was signed out: refuse its cookie until it would expire."""
        with self._transaction("end a session") as session:
            session.execute(sa.delete(EndedSession).where(EndedSession.expires_at < at))
            if session.get(EndedSession, session_id) is None:
                session.add(EndedSession(session_id=session_id, expires_at=until))

    def session_ended(self, session_id: str) -> bool:
        query = sa.select(EndedSession.session_id).where(EndedSession.session_id == session_id)
        return self._read_one("read ended sessions", query) is not None

    def sign_in_failed(
        self, subjects: Sequence[str], *, at: datetime, forget_before: datetime
    ) -> None:
        """Record a wrong sign-in for each subject (an address, an e-mail)."""
        with self._transaction("record a failed sign-in") as session:
            session.execute(sa.delete(SignInFailure).where(SignInFailure.at < forget_before))
            session.add_all(SignInFailure(subject=s, at=at) for s in subjects)

    def sign_in_failures(self, subject: str, *, since: datetime) -> int:
        """How many wrong sign-ins ``subject`` made since ``since``."""
        with self._transaction("count failed sign-ins", read=True) as session:
            return int(
                session.scalar(
                    sa.select(sa.func.count())
                    .select_from(SignInFailure)
                    .where(SignInFailure.subject == subject, SignInFailure.at >= since)
                )
                or 0
            )

    # -- the corrections ledger ---------------------------------------------------------------

    def ledger_append(
        self,
        *,
        event: str,
        at: datetime,
        correction_id: int | None = None,
        suite: str = "",
        check: str = "",
        source: str = "",
        key: Mapping[str, Any] | None = None,
        column: str = "",
        old: Any = None,
        new: Any = None,
        evidence: Sequence[str] = (),
        decided_by: str = "",
        detail: str = "",
        idempotency_key: str | None = None,
        after: Collection[str] | None = None,
    ) -> int:
        """Append one event; a new correction when ``correction_id`` is None. Returns its id.

        Later events of a correction repeat what it is about (suite, key, column...) from its
        first entry, so every row can be read, and hashed, on its own. ``after``: the events
        this one may follow; when the correction's latest event is another one (someone else
        moved it on), nothing is appended and :class:`LedgerConflict` says what it is now.
        This is how an action claims a correction before touching the source.
        """
        if event not in EVENTS:
            raise StoreError(f"unknown ledger event {event!r}")
        at = at.astimezone(UTC)
        old, new = to_jsonable(old), to_jsonable(new)
        with self._transaction(f"append {event} to the ledger") as session:
            if self.engine.dialect.name == "postgresql":
                session.execute(sa.select(sa.func.pg_advisory_xact_lock(LEDGER_LOCK_KEY)))
            last = session.execute(
                sa.select(LedgerEntry.hash, LedgerEntry.correction_id)
                .order_by(LedgerEntry.id.desc())
                .limit(1)
            ).first()
            prev_hash = last.hash if last else GENESIS
            if correction_id is None:
                top = session.scalar(sa.select(sa.func.max(LedgerEntry.correction_id)))
                correction_id = int(top or 0) + 1
                subject = {
                    "suite": suite,
                    "check_name": check,
                    "source": source,
                    "record_key": dict(key or {}),
                    "column": column,
                }
            else:
                first = session.scalars(
                    sa.select(LedgerEntry)
                    .where(LedgerEntry.correction_id == correction_id)
                    .order_by(LedgerEntry.id)
                    .limit(1)
                ).first()
                if first is None:
                    raise StoreError(f"no correction {correction_id} in the ledger")
                if after is not None:
                    latest = session.scalars(
                        sa.select(LedgerEntry.event)
                        .where(LedgerEntry.correction_id == correction_id)
                        .order_by(LedgerEntry.id.desc())
                        .limit(1)
                    ).one()
                    if latest not in after:
                        status = STATUS_AFTER[latest]
                        raise LedgerConflict(
                            f"correction {correction_id} is {status} ({latest})", status=status
                        )
                subject = {
                    "suite": first.suite,
                    "check_name": first.check_name,
                    "source": first.source,
                    "record_key": first.record_key,
                    "column": first.column,
                }
            content = {
                "correction_id": correction_id,
                "at": at,
                "event": event,
                **subject,
                "old": old,
                "new": new,
                "evidence": list(evidence),
                "decided_by": decided_by,
                "detail": detail,
                "idempotency_key": idempotency_key,
            }
            session.add(
                LedgerEntry(
                    **{k: v for k, v in content.items()},
                    prev_hash=prev_hash,
                    hash=entry_hash(prev_hash, content),
                )
            )
        return correction_id

    def corrections(
        self, *, suite: str | None = None, status: str | None = None
    ) -> list[Correction]:
        """Every correction (newest first), folded from its ledger entries."""
        query = sa.select(LedgerEntry).order_by(LedgerEntry.id)
        if suite is not None:
            query = query.where(LedgerEntry.suite == suite)
        with self._transaction("read the ledger", read=True) as session:
            entries = list(session.scalars(query))
        grouped: dict[int, list[LedgerEntry]] = {}
        for entry in entries:
            grouped.setdefault(entry.correction_id, []).append(entry)
        folded = [_fold(rows) for rows in grouped.values()]
        if status is not None:
            folded = [c for c in folded if c.status == status]
        return sorted(folded, key=lambda c: c.id, reverse=True)

    def correction(self, correction_id: int) -> Correction | None:
        query = (
            sa.select(LedgerEntry)
            .where(LedgerEntry.correction_id == correction_id)
            .order_by(LedgerEntry.id)
        )
        with self._transaction(f"read correction {correction_id}", read=True) as session:
            rows = list(session.scalars(query))
        return _fold(rows) if rows else None

    def verify_ledger(self) -> list[str]:
        """Every break in the hash chain, as a sentence; empty when the ledger is intact."""
        problems: list[str] = []
        prev_hash = GENESIS
        with self._transaction("verify the ledger", read=True) as session:
            for entry in session.scalars(sa.select(LedgerEntry).order_by(LedgerEntry.id)):
                content = {
                    "correction_id": entry.correction_id,
                    "at": entry.at,
                    "event": entry.event,
                    "suite": entry.suite,
                    "check_name": entry.check_name,
                    "source": entry.source,
                    "record_key": entry.record_key,
                    "column": entry.column,
                    "old": entry.old,
                    "new": entry.new,
                    "evidence": entry.evidence,
                    "decided_by": entry.decided_by,
                    "detail": entry.detail,
                    "idempotency_key": entry.idempotency_key,
                }
                if entry.prev_hash != prev_hash:
                    problems.append(f"entry {entry.id}: does not follow the entry before it")
                if entry_hash(entry.prev_hash, content) != entry.hash:
                    problems.append(f"entry {entry.id}: content does not match its hash")
                prev_hash = entry.hash
        return problems


def _held_click(claim: str) -> tuple[sa.ColumnElement[bool], ...]:
    """Clicks ``claim`` holds and has not finished."""
    return (SlackClick.claimed_by == claim, SlackClick.done_at.is_(None))


def _resolution(
    session: Session, incident: Incident, at: datetime, by: str, how: str
) -> dict[str, Any]:
    """How an incident ended, in words, with who and how long: remembered for next time."""
    events = list(
        session.scalars(
            sa.select(IncidentEvent)
            .where(IncidentEvent.incident_id == incident.id)
            .order_by(IncidentEvent.id)
        )
    )
    people = [e for e in events if e.by != "agent"]
    if not how:
        fixes = [e for e in events if e.event == "fix_applied"]
        expected = [e for e in events if e.event == "expected"]
        restarted = any(e.event == "restart_succeeded" for e in events)
        if fixes:
            how = f"{fixes[-1].by} approved the suggested fix"
        elif expected:
            how = f"{expected[-1].by} said it was expected"
        elif people and people[-1].event in ("verifying", "acknowledged", "fixing"):
            how = f"{people[-1].by} fixed it"
        elif incident.check_name == "(source)":
            how = "it recovered by itself"
        else:
            how = "the data came back"
        if restarted:
            how += " and the agent restarted the pipelines"
    first_nudge = next((e.at for e in events if e.event == "notified"), None)
    return {
        "how": how,
        "by": people[-1].by if people and by == "agent" else by,
        "at": at.isoformat(),
        "minutes_open": round((at - incident.opened_at).total_seconds() / 60),
        "minutes_after_first_nudge": (
            round((at - first_nudge).total_seconds() / 60) if first_nudge else None
        ),
    }


def _fold(rows: Sequence[LedgerEntry]) -> Correction:
    first, last = rows[0], rows[-1]
    applied_at = next((r.at for r in reversed(rows) if r.event == "applied"), None)
    reverted_at = next((r.at for r in reversed(rows) if r.event == "reverted"), None)
    # Who decided to write it (the latest intent), else who proposed it.
    decided = next((r.decided_by for r in reversed(rows) if r.event == "intent"), "")
    return Correction(
        id=first.correction_id,
        suite=first.suite,
        check=first.check_name,
        source=first.source,
        key=dict(first.record_key),
        column=first.column,
        old=first.old,
        new=first.new,
        evidence=tuple(first.evidence),
        decided_by=decided or first.decided_by,
        status=STATUS_AFTER[last.event],
        created_at=first.at,
        applied_at=applied_at,
        reverted_at=reverted_at,
        detail=last.detail,
        events=tuple(
            LedgerEvent(r.id, r.at, r.event, r.decided_by, r.detail, r.old, r.new) for r in rows
        ),
    )
