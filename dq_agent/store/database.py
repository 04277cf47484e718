"""The state store's database: its engine (SQLite or a server), its migrations, and the
transactions every repository runs in."""

from __future__ import annotations

import fcntl
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext, suppress
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self, TypeVarTuple

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.orm import QueryableAttribute, Session, sessionmaker

from dq_agent.errors import StoreError
from dq_agent.redact import mask_url, redact, url_secrets
from dq_agent.store.models import (
    OutboxMessage,
    Restart,
)

if TYPE_CHECKING:
    from alembic.config import Config


MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

# Arbitrary but fixed ("dqagent1" in ASCII): every dq-agent process contends for the same lock.
MIGRATION_LOCK_KEY = 0x6471_6167_656E_7431

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

# Set in a session's ``info`` by a transaction that records a suite run or an incident event.
RECORDS = "dq_agent_records"


def unheld(until: QueryableAttribute[datetime | None], at: datetime) -> sa.ColumnElement[bool]:
    """Whether nobody holds a claimed row at ``at``: never claimed (or let go of), or its
    holder's lease lapsed without renewal (the holder died). The one rule of every lease in
    the store: queued runs, outbox messages, Slack clicks."""
    return sa.or_(until.is_(None), until < at)


def alembic_config(connection: sa.Connection) -> Config:
    """An Alembic configuration for the packaged migrations, bound to ``connection``."""
    from alembic.config import Config

    config = Config()
    # Config values go through configparser interpolation, where "%" is special.
    config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    config.attributes["connection"] = connection
    return config


def describe_error(exc: BaseException) -> str:
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


def sqlite_lock_path(url: sa.URL, suffix: str) -> Path | None:
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


class Database:
    """One SQL database, migrated to the head revision: what every repository is built on
    (see :mod:`dq_agent.store.store`)."""

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
            _SqliteWriters(sqlite_lock_path(engine.url, "-writers"), _busy_timeout(engine.url))
            if engine.dialect.name == "sqlite"
            else nullcontext()
        )
        self._recorded = 0

    @classmethod
    def open(cls, url: str) -> Self:
        """Connect to ``url`` and bring its schema up to date; errors become StoreError."""
        try:
            parsed = sa.make_url(url)
        except (SQLAlchemyError, ValueError) as exc:  # ValueError: e.g. a non-numeric port
            shown = mask_url(url)
            raise StoreError(f"invalid state store URL {shown}: {describe_error(exc)}") from exc
        shown = mask_url(parsed)
        engine: sa.Engine | None = None
        try:
            engine = _create_engine(parsed)
            _migrate(engine)
        except (SQLAlchemyError, _MigrationError, OSError, ImportError) as exc:
            if engine is not None:
                engine.dispose()
            reason = redact(describe_error(exc), *url_secrets(parsed))
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
                if session.info.get(RECORDS):
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
        reason = describe_error(exc)
        return StoreError(f"cannot {what} in state store {self._display_url}: {reason}")

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
