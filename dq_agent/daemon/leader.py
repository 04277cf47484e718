"""Leader election: of several daemon replicas sharing one state store, one runs the schedule.

APScheduler 3.x runs every job once per scheduler, so only one replica may run one. Replicas
compete for a lock that the operating system or the database frees when its holder dies:

* PostgreSQL: a session-level advisory lock (``pg_try_advisory_lock``) taken on a dedicated
  connection kept open while leading. When the leader's process dies its connection closes and
  PostgreSQL frees the lock; a standby's next ``try_acquire`` takes it over.
* SQLite (one host): an exclusive ``flock`` on ``<database file>.leader``, freed by the kernel
  when the holder's process dies. An in-memory database is private to its process, which is
  therefore always the leader.

A leader must keep asking ``holds()`` (say, before every job) and stop scheduling once it
answers False: a broken connection means PostgreSQL may already have handed the lock on.
"""

from __future__ import annotations

import fcntl
import importlib
import os
import threading
from contextlib import suppress
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import NullPool

from dq_agent.errors import StoreError
from dq_agent.store.store import _PASSWORD_IN_URL, _describe, _redact

# Arbitrary but fixed ("dqleader" in ASCII), like the store's migration and ledger lock keys.
LEADER_LOCK_KEY = 0x6471_6C65_6164_6572

# The leader's client gives up on an unanswered connection (TCP_USER_TIMEOUT, keepalives)
# well before the server drops it (its keepalives: 10 s idle + 3 probes 5 s apart), so a
# partitioned leader learns it lost the lock before a standby can take it.
_CLIENT_KEEPALIVES = {
    "keepalives": 1,
    "keepalives_idle": 5,
    "keepalives_interval": 2,
    "keepalives_count": 3,
    "connect_timeout": 10,
}
_CLIENT_USER_TIMEOUT_MS = 15_000
_SERVER_KEEPALIVES = {
    "tcp_keepalives_idle": "10",
    "tcp_keepalives_interval": "5",
    "tcp_keepalives_count": "3",
}


def _libpq_version(driver: str) -> int:
    """The libpq version a libpq-based driver is linked with (e.g. 160002), 0 if unknown."""
    try:
        if driver == "psycopg":
            return int(importlib.import_module("psycopg").pq.version())
        return int(importlib.import_module("psycopg2").__libpq_version__)
    except (ImportError, AttributeError, TypeError, ValueError):
        return 0


def _connect_args(url: sa.URL) -> dict[str, Any]:
    """TCP keepalive settings for libpq-based drivers; what the URL sets itself wins."""
    driver = url.get_dialect().driver
    if driver not in ("psycopg", "psycopg2"):
        return {}
    args: dict[str, Any] = dict(_CLIENT_KEEPALIVES)
    if _libpq_version(driver) >= 120000:  # tcp_user_timeout appeared in libpq 12
        args["tcp_user_timeout"] = _CLIENT_USER_TIMEOUT_MS
    return {name: value for name, value in args.items() if name not in url.query}


def _sqlite_lock_path(url: sa.URL) -> Path | None:
    """``<database file>.leader``, or None for an in-memory database."""
    database = url.database or ""
    if "uri" in url.query:
        if url.query.get("mode") == "memory":
            return None
        database = database.removeprefix("file:")
    if database in ("", ":memory:"):
        return None
    return Path(f"{database}.leader")


class Leadership:
    """This process's claim to be the one replica that runs the schedule.

    ``try_acquire`` never waits for another replica; call it every few seconds while standing
    by. Not safe across ``fork``; safe to share between the threads of one process.
    Used as a context manager, it releases the leadership (if held) on exit.
    """

    def __init__(self, url: str, *, key: int = LEADER_LOCK_KEY) -> None:
        try:
            parsed = sa.make_url(url)
        except (SQLAlchemyError, ValueError) as exc:  # ValueError: e.g. a non-numeric port
            shown = _PASSWORD_IN_URL.sub(r"\1***@", url)
            raise StoreError(f"invalid state store URL {shown}: {_describe(exc)}") from exc
        self._url = parsed
        self._shown = parsed.render_as_string(hide_password=True)
        self._key = key
        self._lock = threading.Lock()
        self._held = False
        self._engine: sa.Engine | None = None
        self._connection: sa.Connection | None = None
        self._lock_path: Path | None = None
        self._fd: int | None = None
        backend = parsed.get_backend_name()
        if backend == "postgresql":
            try:
                self._engine = sa.create_engine(
                    parsed,
                    poolclass=NullPool,
                    isolation_level="AUTOCOMMIT",
                    connect_args=_connect_args(parsed),
                )
            except (SQLAlchemyError, ImportError) as exc:
                raise self._error("cannot open state store", exc) from exc
            self._backend = "postgresql"
        elif backend == "sqlite":
            self._lock_path = _sqlite_lock_path(parsed)
            self._backend = "sqlite" if self._lock_path is not None else "memory"
        else:
            raise StoreError(
                f"leader election needs a SQLite or PostgreSQL state store, not {self._shown}"
            )

    def _error(self, what: str, exc: BaseException) -> StoreError:
        reason = _redact(_describe(exc), self._url.password)
        return StoreError(f"{what} {self._shown}: {reason}")

    # -- the public face ------------------------------------------------------------------------

    def try_acquire(self) -> bool:
        """Become the leader if no one else is; True if this process is (now or already) it."""
        with self._lock:
            if self._held and self._still_held():
                return True
            self._drop()
            if self._backend == "postgresql":
                self._held = self._acquire_postgres()
            elif self._backend == "sqlite":
                self._held = self._acquire_file()
            else:
                self._held = True
            return self._held

    def holds(self) -> bool:
        """Whether this process still leads: for PostgreSQL, its lock's connection answers."""
        with self._lock:
            if self._held and not self._still_held():
                self._drop()
            return self._held

    def release(self) -> None:
        """Stop leading (a no-op for a standby); another replica may then take over."""
        with self._lock:
            if self._connection is not None:
                # A broken connection holds nothing anyway; closing it frees the lock.
                with suppress(SQLAlchemyError):
                    self._connection.execute(
                        sa.select(sa.func.pg_advisory_unlock(sa.bindparam("key", self._key)))
                    )
            self._drop()

    def describe(self) -> str:
        """ "leader (pid N)" or "standby", as last known (no round trip to the database)."""
        return f"leader (pid {os.getpid()})" if self._held else "standby"

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
        if self._engine is not None:
            self._engine.dispose()

    # -- the backends ---------------------------------------------------------------------------

    def _still_held(self) -> bool:
        if self._backend == "postgresql":
            if self._connection is None:
                return False
            try:
                self._connection.execute(sa.text("SELECT 1")).scalar_one()
            except SQLAlchemyError:
                return False
            return True
        if self._backend == "sqlite":
            return self._fd is not None and self._same_lock_file(self._fd)
        return True

    def _drop(self) -> None:
        """Forget the leadership, closing what held it (which frees any lock still held)."""
        self._held = False
        if self._connection is not None:
            connection, self._connection = self._connection, None
            with suppress(SQLAlchemyError):  # already broken
                connection.close()
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)

    def _acquire_postgres(self) -> bool:
        assert self._engine is not None
        connection: sa.Connection | None = None
        try:
            connection = self._engine.connect()
            # The server, too, should notice a vanished leader's host within seconds.
            connection.execute(
                sa.select(
                    *(
                        sa.func.set_config(name, value, False)
                        for name, value in _SERVER_KEEPALIVES.items()
                    )
                )
            )
            got = connection.execute(
                sa.select(sa.func.pg_try_advisory_lock(sa.bindparam("key", self._key)))
            ).scalar_one()
        except SQLAlchemyError as exc:
            if connection is not None:
                with suppress(SQLAlchemyError):
                    connection.close()
            raise self._error("cannot reach state store", exc) from exc
        if got:
            self._connection = connection
            return True
        connection.close()
        return False

    def _acquire_file(self) -> bool:
        path = self._lock_path
        assert path is not None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise self._error(f"cannot open leader lock file {path} of state store", exc) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        except OSError as exc:
            os.close(fd)
            raise self._error(f"cannot lock leader lock file {path} of state store", exc) from exc
        # The file may have been replaced between our open and our lock: then we lock nothing.
        if not self._same_lock_file(fd):
            os.close(fd)
            return False
        # For people looking: who leads. The lock, not the content, is what counts.
        with suppress(OSError):
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return True

    def _same_lock_file(self, fd: int) -> bool:
        """Whether ``fd`` is still the file at the lock path (not deleted or replaced)."""
        assert self._lock_path is not None
        try:
            named = os.stat(self._lock_path)
        except OSError:
            return False
        held = os.fstat(fd)
        return (named.st_dev, named.st_ino) == (held.st_dev, held.st_ino)
