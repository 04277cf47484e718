"""Locks that every dq-agent process on one state store respects, freed when a holder dies.

* PostgreSQL: a session-level advisory lock (``pg_try_advisory_lock``) taken on a dedicated
  connection kept open while held. When the holder's process dies its connection closes and
  PostgreSQL frees the lock; another process's next ``try_acquire`` takes it over.
* SQLite (one host): an exclusive ``flock`` on ``<database file><suffix>``, freed by the
  kernel when the holder's process dies. An in-memory database is private to its process,
  which therefore always holds it.

Two kinds of lock are built on this: the daemon's leadership (:mod:`dq_agent.daemon.leader`),
and the acting locks (:func:`acting`). The acting part of a cycle for a suite and every
person's action on it hold that suite's acting lock, so two processes never correct or message
about one suite at once; the follow-up of cycles (starting restarts, reminders, digests) holds
the follow-up lock, so one process at a time does it. On SQLite (one replica) they are one lock.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib
import logging
import os
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import NullPool

from dq_agent.errors import StoreError
from dq_agent.redact import mask_url, redact, url_secrets
from dq_agent.store.database import describe_error, sqlite_lock_path

log = logging.getLogger(__name__)


class ActingBusy(StoreError):
    """Another holder kept an acting lock longer than this one would wait."""


# Arbitrary but fixed ("dqacting" in ASCII), like the store's migration and ledger lock keys:
# the follow-up lock's key, and on SQLite the one acting lock's.
ACTING_LOCK_KEY = 0x6471_6163_7469_6E67
# How long an action waits for another process's cycle to finish before giving up.
ACTING_WAIT_S = 600.0
_ACTING_POLL_S = 0.2

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


class SharedLock:
    """One lock shared by every process on a state store: ``key`` names it on PostgreSQL
    (several keys: all of them, taken together or not at all), ``suffix`` its file beside a
    SQLite database.

    ``try_acquire`` never waits. Not safe across ``fork``; safe to share between the threads
    of one process. Used as a context manager, it releases the lock (if held) on exit.
    On PostgreSQL it holds a connection of its own, or one borrowed from ``pool`` (the state
    store's engine, for locks held briefly and often) and given back unlocked.
    """

    def __init__(
        self, url: str, *, key: int | Sequence[int], suffix: str, pool: sa.Engine | None = None
    ) -> None:
        try:
            parsed = sa.make_url(url)
        except (SQLAlchemyError, ValueError) as exc:  # ValueError: e.g. a non-numeric port
            shown = mask_url(url)
            raise StoreError(f"invalid state store URL {shown}: {describe_error(exc)}") from exc
        self._url = parsed
        self._shown = mask_url(parsed)
        self._keys = (key,) if isinstance(key, int) else tuple(key)
        self._lock = threading.Lock()
        self._held = False
        self._engine: sa.Engine | None = pool
        self._owns_engine = pool is None
        self._connection: sa.Connection | None = None
        self._lock_path: Path | None = None
        self._fd: int | None = None
        backend = parsed.get_backend_name()
        if backend == "postgresql" and pool is not None:
            self._backend = "postgresql"
        elif backend == "postgresql":
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
            self._lock_path = sqlite_lock_path(parsed, suffix)
            self._backend = "sqlite" if self._lock_path is not None else "memory"
        else:
            raise StoreError(
                f"dq-agent's locks need a SQLite or PostgreSQL state store, not {self._shown}"
            )

    def _error(self, what: str, exc: BaseException) -> StoreError:
        reason = redact(describe_error(exc), *url_secrets(self._url))
        return StoreError(f"{what} {self._shown}: {reason}")

    # -- the public face ------------------------------------------------------------------------

    def try_acquire(self) -> bool:
        """Take the lock if no one else holds it; True if this process (now or already) does."""
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
        """Whether this process still holds it: for PostgreSQL, its lock's connection answers."""
        with self._lock:
            if self._held and not self._still_held():
                self._drop()
            return self._held

    def release(self) -> None:
        """Let go (a no-op when not held); another process may then take it."""
        with self._lock:
            if self._connection is not None:
                try:
                    self._unlock(self._connection, self._keys)
                except SQLAlchemyError:
                    # A broken connection holds nothing anyway, and is never pooled again.
                    with suppress(SQLAlchemyError):
                        self._connection.invalidate()
            self._drop()

    @property
    def held(self) -> bool:
        """As last known, without a round trip to the database."""
        return self._held

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Release the lock (if held) and the connections kept for it."""
        self.release()
        if self._engine is not None and self._owns_engine:
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
        """Forget the lock, closing what held it (which frees it if it is still held)."""
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
            if not self._owns_engine:  # as its own engine's are; reset when given back
                connection = connection.execution_options(isolation_level="AUTOCOMMIT")
            # The server, too, should notice a vanished leader's host within seconds.
            connection.execute(
                sa.select(
                    *(
                        sa.func.set_config(name, value, False)
                        for name, value in _SERVER_KEEPALIVES.items()
                    )
                )
            )
            got: list[int] = []
            for key in self._keys:
                if not connection.execute(
                    sa.select(sa.func.pg_try_advisory_lock(sa.bindparam("key", key)))
                ).scalar_one():
                    break
                got.append(key)
            if len(got) < len(self._keys):
                self._unlock(connection, got)
        except SQLAlchemyError as exc:
            if connection is not None:
                with suppress(SQLAlchemyError):
                    connection.invalidate()
                    connection.close()
            raise self._error("cannot reach state store", exc) from exc
        if len(got) == len(self._keys):
            self._connection = connection
            return True
        connection.close()
        return False

    @staticmethod
    def _unlock(connection: sa.Connection, keys: Iterable[int]) -> None:
        for key in keys:
            connection.execute(sa.select(sa.func.pg_advisory_unlock(sa.bindparam("key", key))))

    def _acquire_file(self) -> bool:
        path = self._lock_path
        assert path is not None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise self._error(f"cannot open lock file {path} of state store", exc) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        except OSError as exc:
            os.close(fd)
            raise self._error(f"cannot lock lock file {path} of state store", exc) from exc
        # The file may have been replaced between our open and our lock: then we lock nothing.
        if not self._same_lock_file(fd):
            os.close(fd)
            return False
        # For people looking: who holds it. The lock, not the content, is what counts.
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


@dataclass
class _Held:
    """This process's hold on one acting lock: threads queue on ``turn``; the first holder
    takes it on the state store, nested holds by the same thread only count."""

    key: int
    turn: threading.RLock
    depth: int = 0


_ACTING: dict[tuple[str, int], _Held] = {}
_ACTING_GUARD = threading.Lock()


@contextmanager
def acting(
    url: str,
    suites: Iterable[str] = (),
    *,
    wait_s: float = ACTING_WAIT_S,
    pool: sa.Engine | None = None,
) -> Iterator[None]:
    """Hold the acting locks of ``suites`` on the state store at ``url`` for the block; with
    no suites, the follow-up lock.

    Whatever corrects a suite's source, plans messages about it or restarts its pipelines
    holds its suite's lock: an agent cycle (``run``, the daemon's), a click in Slack or the
    dashboard, a command-line decision. What reaches across suites (starting restarts,
    reminders, digests) holds the follow-up lock. Another process's holder makes this one
    wait (up to ``wait_s``, then a StoreError); the same thread may nest them (a click that
    re-runs a suite). Several suites' locks are taken in one order and together, so holders
    never deadlock; a suite's lock is never taken while holding the follow-up lock. On
    SQLite (one replica) every scope is one lock. On PostgreSQL, ``pool`` (the caller's
    store's engine) lends the connection the locks are held on; without it one is opened.
    """
    keys = sorted({_key(url, suite) for suite in suites}) or [ACTING_LOCK_KEY]
    with _ACTING_GUARD:
        helds = [_ACTING.setdefault((url, k), _Held(k, threading.RLock())) for k in keys]
    turns: list[_Held] = []
    try:
        for held in helds:
            if not held.turn.acquire(timeout=wait_s):
                raise ActingBusy(
                    f"another action on this state store did not finish in {wait_s:.0f} s"
                )
            turns.append(held)
        fresh = [h.key for h in helds if h.depth == 0]
        lock = _take(url, fresh, wait_s, pool) if fresh else None
        for held in helds:
            held.depth += 1
        try:
            yield
        finally:
            for held in helds:
                held.depth -= 1
            if lock is not None:
                lock.close()
    finally:
        for held in reversed(turns):
            held.turn.release()


def _key(url: str, suite: str) -> int:
    """The advisory lock key of ``suite``'s acting lock (on SQLite: the one acting lock)."""
    if not url.startswith("postgresql"):
        return ACTING_LOCK_KEY
    digest = hashlib.blake2b(f"dq-agent acting {suite}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def _take(url: str, keys: Sequence[int], wait_s: float, pool: sa.Engine | None) -> SharedLock:
    lock = SharedLock(url, key=keys, suffix=".acting", pool=pool)
    deadline = time.monotonic() + wait_s
    told = False
    try:
        while not lock.try_acquire():
            if time.monotonic() >= deadline:
                raise ActingBusy(
                    f"another dq-agent process kept acting on this state store for "
                    f"{wait_s:.0f} s (a run, the daemon or the dashboard): nothing was done"
                )
            if not told:
                log.info("waiting for another dq-agent process to finish acting")
                told = True
            time.sleep(_ACTING_POLL_S)
    except BaseException:
        lock.close()
        raise
    return lock
