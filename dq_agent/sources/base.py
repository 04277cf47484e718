"""What every source hands to the engine: a SQL relation it can scan, and its columns."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any, Literal, Protocol, cast, runtime_checkable

import sqlalchemy as sa

from dq_agent.config.models import Connector, SourceSpec


@dataclass(frozen=True)
class ColumnInfo:
    """One column: its name, its type family (integer, number, string, ...), its SQL type."""

    name: str
    family: str
    sql_type: sa.types.TypeEngine[Any] | None


@dataclass(frozen=True)
class Rejected:
    """A value a source could not load as its column's type (loaded as null instead), or a
    record it left out because its key was missing or came more than once (``column`` is then
    the key column, or None for a key of several columns)."""

    key: Mapping[str, Any]
    column: str | None
    value: Any
    # What a person reads after the record's key: "Amount holds 'abc', not a number".
    reason: str


@dataclass(frozen=True)
class Relation:
    """A readable relation (table or query) on a live SQLAlchemy engine."""

    engine: sa.Engine
    selectable: sa.FromClause
    columns: Mapping[str, ColumnInfo]
    primary_key: tuple[str, ...]
    # What a person recognises: the table name or "query".
    label: str
    # Where another client (Great Expectations) reads the same data: a URL, and the table
    # (with its schema) or the query.
    url: str
    table: str | None = None
    schema: str | None = None
    query: str | None = None
    # What reading left out or could not type, record by record (fetched sources only).
    rejected: tuple[Rejected, ...] = ()
    # A branch's open transaction: checks then read through it and see its changes.
    bound: sa.Connection | None = None
    # Where no URL reaches the data (it lives in this process or its Spark session): the data
    # as a DataFrame, Spark's or pandas', for Great Expectations to read instead.
    frame: Callable[[], Any] | None = None

    def column(self, name: str) -> sa.ColumnElement[Any]:
        return self.selectable.c[name]

    def connect(self) -> sa.Connection:
        """A read-only connection where the dialect supports one; on a branch, the branch's
        own connection (closing it is left to the branch)."""
        if self.bound is not None:
            return cast(sa.Connection, _Lent(self.bound))
        conn = self.engine.connect()
        if self.engine.dialect.name == "postgresql":
            conn = conn.execution_options(postgresql_readonly=True)
        return conn


class _Lent:
    """A connection lent to a check: ``with`` and ``close()`` leave it open and its
    transaction going, for the branch that owns it to publish or discard."""

    def __init__(self, connection: sa.Connection) -> None:
        self._connection = connection

    def __enter__(self) -> sa.Connection:
        return self._connection

    def __exit__(self, *_exc: object) -> None:
        return None

    def close(self) -> None:
        return None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._connection, name)


@contextmanager
def planner_settings(relation: Relation, conn: sa.Connection, **settings: str) -> Iterator[None]:
    """On PostgreSQL, ``settings`` (``work_mem="64MB"``) for the statements run inside on
    ``conn`` (from ``relation.connect()``), for its transaction; on a branch's, which goes on
    after a check's query, what they were is put back after. Elsewhere nothing."""
    if conn.dialect.name != "postgresql" or not settings:
        yield
        return
    lent = relation.bound is not None
    before = {
        name: conn.execute(sa.select(sa.func.current_setting(name))).scalar_one()
        for name in settings
        if lent
    }
    for name, value in settings.items():
        conn.execute(sa.select(sa.func.set_config(name, value, True)))
    try:
        yield
    finally:
        for name, value in before.items():
            conn.execute(sa.select(sa.func.set_config(name, value, True)))


@dataclass(frozen=True)
class WriteResult:
    """The outcome of a compare-and-set write: ``written``, ``conflict`` (nothing changed), or
    ``failed`` (the source refused this record's write; in a batch, the others still went)."""

    status: Literal["written", "conflict", "failed"]
    # The value found before writing, and after (re-read from the source).
    before: Any
    after: Any
    detail: str = ""
    # Who changed the record last, when the source says (a conflict: whose change it met).
    by: str | None = None


@dataclass(frozen=True)
class CellWrite:
    """One compare-and-set write of a batch: ``column`` of record ``key`` from
    ``expected_old`` to ``new``."""

    key: Mapping[str, Any]
    column: str
    expected_old: Any
    new: Any


class Source(Protocol):
    """A connector bound to one suite's ``source:`` block."""

    def open(self) -> Relation:
        """Connect and read or describe the data; raises :class:`~dq_agent.errors.SourceError`."""
        ...

    def write(
        self, key: Mapping[str, Any], column: str, expected_old: Any, new: Any
    ) -> WriteResult:
        """Set ``column`` of the record ``key`` to ``new`` only if it still holds ``expected_old``.

        A record changed since it was read is a ``conflict``, never an overwrite.
        """
        ...

    def read(self, key: Mapping[str, Any], column: str) -> Any:
        """The value ``column`` of record ``key`` holds in the source right now."""
        ...

    def close(self) -> None:
        """Release what :meth:`open` acquired (temporary copies, sessions)."""
        ...


@runtime_checkable
class BatchWriting(Protocol):
    """A source whose API writes many records in one call (sObject Collections, a Sheets
    ``values.batchUpdate``)."""

    def write_many(self, writes: Sequence[CellWrite]) -> list[WriteResult]:
        """Each write compare-and-set, as :meth:`Source.write` does one, in as few calls as the
        API allows: one result per write, in order. A record whose precondition fails or
        that the source refuses is a ``conflict`` or ``failed`` of its own; the others still
        go. Raises :class:`~dq_agent.errors.SourceError` when the batch could not be made or
        what became of it cannot be told (the ledger's intents then wait for the next run,
        which reads each record, as after a crash)."""
        ...


class SourceBranch(Protocol):
    """Changes nobody sees until they are published: a SQL transaction, an Iceberg branch."""

    @property
    def relation(self) -> Relation:
        """The data as the branch holds it, for the checks that verify it."""
        ...

    def write(
        self, key: Mapping[str, Any], column: str, expected_old: Any, new: Any
    ) -> WriteResult:
        """Compare-and-set on the branch."""
        ...

    def publish(self) -> str:
        """Make every change of the branch visible at once, or raise and change nothing;
        returns what was published, for the ledger (a commit, a snapshot)."""
        ...

    def keep(self) -> str | None:
        """Keep the unpublished branch for people to inspect; where it is, or None when the
        store cannot keep one (a transaction)."""
        ...

    def relation_of(self, spec: SourceSpec, connector: Connector) -> Relation | None:
        """Another source as the branch sees it (a view or table of the same database,
        inside the transaction), or None when the branch does not reach it."""
        ...


@runtime_checkable
class Branching(Protocol):
    """A source whose store can hold changes apart until they are verified."""

    def branch(
        self, *, lock_timeout: timedelta, statement_timeout: timedelta
    ) -> AbstractContextManager[SourceBranch]:
        """A branch of the data just read; left unpublished, it is discarded."""
        ...


def same_value(a: Any, b: Any) -> bool:
    """Equality across the types sources hand back (Decimal vs float, int vs float)."""
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b or a == b
    if isinstance(a, int | float | Decimal) and isinstance(b, int | float | Decimal):
        return Decimal(str(a)) == Decimal(str(b))
    return bool(a == b)


def type_family(sql_type: sa.types.TypeEngine[Any] | None) -> str:
    """The coarse family the ``schema`` check compares: stable across dialects."""
    if sql_type is None or isinstance(sql_type, sa.types.NullType):
        return "unknown"
    checks: tuple[tuple[type[Any], str], ...] = (
        (sa.Boolean, "boolean"),
        (sa.Integer, "integer"),
        (sa.Numeric, "number"),
        (sa.Float, "number"),
        (sa.DateTime, "timestamp"),
        (sa.Date, "date"),
        (sa.Time, "time"),
        (sa.Interval, "interval"),
        (sa.String, "string"),
        (sa.LargeBinary, "binary"),
        (sa.JSON, "json"),
    )
    for cls, family in checks:
        if isinstance(sql_type, cls):
            return family
    return str(sql_type).lower()
