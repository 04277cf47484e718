"""What every source hands to the engine: a SQL relation it can scan, and its columns."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import sqlalchemy as sa


@dataclass(frozen=True)
class ColumnInfo:
    """One column: its name, its type family (integer, number, string, ...), its SQL type."""

    name: str
    family: str
    sql_type: sa.types.TypeEngine[Any] | None


@dataclass(frozen=True)
class Relation:
    """A readable relation (table or query) on a live SQLAlchemy engine."""

    engine: sa.Engine
    selectable: sa.FromClause
    columns: Mapping[str, ColumnInfo]
    primary_key: tuple[str, ...]
    # What a person recognises: the table name or "query".
    label: str

    def column(self, name: str) -> sa.ColumnElement[Any]:
        return self.selectable.c[name]

    def connect(self) -> sa.Connection:
        """A read-only connection where the dialect supports one."""
        conn = self.engine.connect()
        if self.engine.dialect.name == "postgresql":
            conn = conn.execution_options(postgresql_readonly=True)
        return conn


class Source(Protocol):
    """A connector bound to one suite's ``source:`` block."""

    def open(self) -> Relation:
        """Connect and describe the data; raises :class:`~dq_agent.errors.SourceError`."""
        ...

    def close(self) -> None: ...


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


def jsonable_key(row: Mapping[str, Any], key: tuple[str, ...]) -> dict[str, Any]:
    return {name: row[name] for name in key}
