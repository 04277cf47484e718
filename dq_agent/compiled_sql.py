"""The SQL a suite's checks send to a database, compiled for any SQLAlchemy dialect offline.

Warehouses the tests cannot reach (Snowflake, BigQuery, Databricks SQL, Redshift, Trino) are
checked this way: the suite runs through the engine as it would on the warehouse, against a
stand-in database that compiles every statement it is sent, with its values written in
(``literal_binds``), and records it. Nothing connects anywhere.

The stand-in answers as a table of two rows, one of them failing every check would:
a statement read for one row (an aggregate) gets one, ``COUNT(*)`` is 2 and every other value
is 1 or the like for its type; a statement read for all its rows gets none. So each check
goes on to the statements it sends when it fails (the records to report, the values to
list), and stops where it would need real rows to go further.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.engine import IteratorResult
from sqlalchemy.engine.interfaces import (
    ReflectedColumn,
    ReflectedIndex,
    ReflectedPrimaryKeyConstraint,
    ReflectedUniqueConstraint,
)
from sqlalchemy.engine.result import SimpleResultMetaData
from sqlalchemy.sql.visitors import replacement_traverse

from dq_agent.checks import can_compile
from dq_agent.config.models import CheckSpec, ReferenceArgs, SchemaArgs, SqlSourceSpec, Suite
from dq_agent.engine import RunOptions, context_for, evaluate_checks
from dq_agent.errors import DqAgentError
from dq_agent.results import CheckResult
from dq_agent.sources.base import ColumnInfo, Relation, type_family

__all__ = ["CompiledCheck", "CompiledSuite", "compile_suite", "dialect_named"]

# The SQL type a column of each ``schema`` family is taken to have.
FAMILY_TYPES: dict[str, sa.types.TypeEngine[Any]] = {
    "integer": sa.Integer(),
    "number": sa.Numeric(18, 2),
    "string": sa.String(),
    "boolean": sa.Boolean(),
    "date": sa.Date(),
    "timestamp": sa.DateTime(),
    "any": sa.types.NullType(),
}
THROUGH_GX = "runs through Great Expectations, which writes its own SQL: not compiled here"


@dataclass(frozen=True)
class CompiledCheck:
    """One check and the statements it sends, in order, when it runs alone."""

    name: str
    type: str
    statements: tuple[str, ...]
    # Why it is not compiled here, if so: it runs through Great Expectations (THROUGH_GX), or
    # the engine's error (a column not in the table, a connector it cannot reach here).
    problem: str | None = None


@dataclass(frozen=True)
class CompiledSuite:
    """Every statement a run of a suite sends to a database of ``dialect``."""

    suite: str
    dialect: str
    checks: tuple[CompiledCheck, ...]
    # What a run of the whole suite sends beyond the checks' own statements: their parts of
    # the scan merged into one SELECT, their findings into one UNION ALL.
    merged: tuple[str, ...]

    @property
    def statements(self) -> list[str]:
        return [s for check in self.checks for s in check.statements] + list(self.merged)

    def render(self) -> str:
        """The statements as one SQL file, each check's under a comment naming it."""
        parts = [f"-- suite {self.suite} compiled for {self.dialect}"]
        for check in self.checks:
            header = f"-- {check.name}"
            if not check.name.startswith(check.type):
                header += f" ({check.type})"
            if check.problem is not None:
                header += f": {check.problem}"
            elif not check.statements:
                header += ": sends no statement"
            parts.append("\n".join([header, *(f"{s};" for s in check.statements)]))
        if self.merged:
            merged = "-- one run of the whole suite merges the scans and findings above into:"
            parts.append("\n".join([merged, *(f"{s};" for s in self.merged)]))
        return "\n\n".join(parts) + "\n"


def dialect_named(name: str) -> sa.Dialect:
    """The SQLAlchemy dialect of a URL scheme (``snowflake``, ``bigquery``, ``trino``, …)."""
    try:
        return sa.make_url(f"{name}://").get_dialect()()
    except sa.exc.NoSuchModuleError as exc:
        raise DqAgentError(
            f"no SQLAlchemy dialect {name!r} is installed (the warehouses' are in "
            "pip install 'dq-agent[warehouses]')"
        ) from exc


def compile_suite(
    suite: Suite,
    dialect: str,
    *,
    at: datetime,
    types: Mapping[str, sa.types.TypeEngine[Any]] | None = None,
) -> CompiledSuite:
    """The statements ``suite`` sends to a ``dialect`` database when run as of ``at``.

    The table holds the columns the suite's ``schema`` checks declare, typed by family
    (:data:`FAMILY_TYPES`), or by ``types`` where given (a timestamp with a time zone, say).
    """
    if not isinstance(suite.source, SqlSourceSpec):
        raise DqAgentError(
            f"suite {suite.suite!r} reads a {type(suite.source).__name__}: only SQL sources "
            "are checked in the warehouse (others are copied into SQLite)"
        )
    database = _Database(dialect_named(dialect), _tables(suite, types or {}))
    gx = {spec.name for spec in suite.checks if _through_gx(suite, spec, database.dialect.name)}
    checks: list[CompiledCheck] = []
    for spec in suite.checks:
        if spec.name in gx:
            checks.append(CompiledCheck(spec.name, spec.type, (), THROUGH_GX))
            continue
        statements, (outcome,) = _run(suite, (spec,), database, at)
        problem = outcome.message if outcome.status == "error" else None
        checks.append(CompiledCheck(spec.name, spec.type, statements, problem))
    compiled = tuple(spec for spec in suite.checks if spec.name not in gx)
    seen = {s for check in checks for s in check.statements}
    whole, _ = _run(suite, compiled, database, at) if compiled else ((), [])
    return CompiledSuite(
        suite.suite, dialect, tuple(checks), tuple(s for s in whole if s not in seen)
    )


def _through_gx(suite: Suite, spec: CheckSpec, dialect: str) -> bool:
    """Whether the engine leaves ``spec`` to Great Expectations on this dialect."""
    if not spec.is_expectation:
        return False
    return suite.engine != "compiled" or not can_compile(spec, dialect)


def _run(
    suite: Suite, checks: Sequence[CheckSpec], database: _Database, at: datetime
) -> tuple[tuple[str, ...], list[CheckResult]]:
    """The statements the engine sends for ``checks`` of ``suite``, and its results."""
    database.statements.clear()
    part = suite.model_copy(update={"checks": tuple(checks)})
    options = RunOptions(as_of=at, clock=lambda: at)
    relation = database.relation(part)
    results = evaluate_checks(part, relation, context_for(part, None, options, at), options)
    return tuple(database.statements), results


def _tables(suite: Suite, types: Mapping[str, sa.types.TypeEngine[Any]]) -> list[sa.Table]:
    """The suite's table, and the tables its ``reference`` checks point to in its database."""
    source = suite.source
    assert isinstance(source, SqlSourceSpec)
    declared: dict[str, sa.types.TypeEngine[Any]] = {}
    for spec in suite.checks:
        if isinstance(spec.args, SchemaArgs):
            declared.update({n: FAMILY_TYPES[f] for n, f in spec.args.columns.items()})
    declared.update(types)
    metadata = sa.MetaData()
    name = source.table or "dq_source"
    columns = [sa.Column(n, t) for n, t in declared.items()]
    tables = [sa.Table(name, metadata, *columns, schema=source.schema_)]
    for spec in suite.checks:
        args = spec.args
        if not isinstance(args, ReferenceArgs) or args.to.connector is not None:
            continue
        schema = args.to.schema_name or source.schema_
        if (schema, args.to.table) in {(t.schema, t.name) for t in tables}:
            continue
        # The referenced column, of the checked column's type.
        kind = declared.get(args.column, sa.types.NullType())
        column = sa.Column(args.to.column, kind)
        tables.append(sa.Table(args.to.table, metadata, column, schema=schema))
    return tables


class _Database:
    """Stands in for an engine: hands out connections that compile what they are sent."""

    def __init__(self, dialect: sa.Dialect, tables: Sequence[sa.Table]) -> None:
        self.dialect = dialect
        self.url = sa.make_url(f"{dialect.name}://")
        self.tables = list(tables)
        self.statements: list[str] = []

    def connect(self) -> _Connection:
        return _Connection(self)

    def relation(self, suite: Suite) -> Relation:
        source = suite.source
        assert isinstance(source, SqlSourceSpec)
        table = self.tables[0]
        selectable: sa.FromClause = table
        if source.query is not None:
            typed = [sa.column(c.name, c.type) for c in table.c]
            selectable = sa.text(source.query).columns(*typed).subquery("dq_source")
        return Relation(
            engine=cast(sa.Engine, self),
            selectable=selectable,
            columns={
                c.name: ColumnInfo(c.name, type_family(c.type), c.type) for c in table.columns
            },
            primary_key=(),
            label=source.table or "query",
            url=str(self.url),
            table=source.table,
            schema=source.schema_,
            query=source.query,
        )


class _Connection(sa.Inspector):
    """A connection that records each statement compiled for its dialect, and answers as
    the module docstring says. It is the catalog too (an Inspector inspects as itself):
    the tables as built, with no keys or indexes."""

    def __init__(self, database: _Database) -> None:
        self.database = database
        self.dialect = database.dialect

    def __enter__(self) -> _Connection:
        return self

    def __exit__(self, *_exc: object) -> None:
        return None

    def close(self) -> None:
        return None

    def execution_options(self, **_options: Any) -> _Connection:
        return self

    def execute(self, statement: sa.ClauseElement, parameters: Any = None) -> _Answer:
        sent = statement
        if self.dialect.name == "trino":
            sent = cast(sa.ClauseElement, replacement_traverse(sent, {}, _trino_datetimes))
        compiled = sent.compile(dialect=self.dialect, compile_kwargs={"literal_binds": True})
        # Trailing blanks dropped: some dialects end lines with one, and golden files keep none.
        self.database.statements.append("\n".join(s.rstrip() for s in str(compiled).splitlines()))
        return _Answer(statement)

    # -- the catalog ---------------------------------------------------------------------

    def _table(self, name: str, schema: str | None) -> sa.Table:
        for table in self.database.tables:
            if (table.name, table.schema) == (name, schema):
                return table
        raise sa.exc.NoSuchTableError(name)

    def get_columns(
        self, table_name: str, schema: str | None = None, **kw: Any
    ) -> list[ReflectedColumn]:
        table = self._table(table_name, schema)
        return [
            {"name": c.name, "type": c.type, "nullable": True, "default": None} for c in table.c
        ]

    def get_pk_constraint(
        self, table_name: str, schema: str | None = None, **kw: Any
    ) -> ReflectedPrimaryKeyConstraint:
        self._table(table_name, schema)
        return {"name": None, "constrained_columns": []}

    def get_unique_constraints(
        self, table_name: str, schema: str | None = None, **kw: Any
    ) -> list[ReflectedUniqueConstraint]:
        self._table(table_name, schema)
        return []

    def get_indexes(
        self, table_name: str, schema: str | None = None, **kw: Any
    ) -> list[ReflectedIndex]:
        self._table(table_name, schema)
        return []


class _Answer:
    """A statement's result: one row when read for one, none when read for all of them."""

    def __init__(self, statement: sa.ClauseElement) -> None:
        # A text statement (DuckDB's catalog lookups) has no columns known here: no values.
        columns: list[sa.ColumnElement[Any]] = list(getattr(statement, "selected_columns", []))
        self._keys = [str(c.key) for c in columns]
        self._row = tuple(_value(c) for c in columns)

    def _rows(self, count: int) -> sa.Result[Any]:
        return IteratorResult(SimpleResultMetaData(self._keys), iter([self._row] * count))

    def one(self) -> sa.Row[Any]:
        return self._rows(1).one()

    def first(self) -> sa.Row[Any] | None:
        return self._rows(1).first()

    def scalar(self) -> Any:
        return self._rows(1).scalar()

    def scalar_one(self) -> Any:
        return self._rows(1).scalar_one()

    def all(self) -> Sequence[sa.Row[Any]]:
        return self._rows(0).all()

    def __iter__(self) -> Iterator[sa.Row[Any]]:
        return iter(self.all())

    def mappings(self) -> _Mappings:
        return _Mappings(self)


class _Mappings:
    def __init__(self, answer: _Answer) -> None:
        self._answer = answer

    def one(self) -> sa.RowMapping:
        return self._answer._rows(1).mappings().one()

    def all(self) -> Sequence[sa.RowMapping]:
        return self._answer._rows(0).mappings().all()

    def __iter__(self) -> Iterator[sa.RowMapping]:
        return iter(self.all())


_VALUES: dict[type[Any], Any] = {
    int: 1,
    float: 1.0,
    Decimal: Decimal(1),
    str: "x",
    bool: True,
    datetime: datetime(2000, 1, 1),
    date: date(2000, 1, 1),
}


def _trino_datetimes(element: Any, **_kw: Any) -> sa.ColumnElement[Any] | None:
    """A datetime or date value as Trino's driver sends it (``trino.dbapi``): as a typed literal.
    The dialect's own literal is bare text, which Trino does not compare with a timestamp."""
    if not isinstance(element, sa.BindParameter) or not isinstance(element.value, date):
        return None
    value = element.value
    if not isinstance(value, datetime):
        return sa.literal_column(f"DATE '{value:%Y-%m-%d}'", element.type)
    zone = value.tzinfo
    named = getattr(zone, "key", None) or (zone.tzname(value) if zone else None)
    text = f"{value:%Y-%m-%d %H:%M:%S.%f}" + (f" {named}" if named else "")
    return sa.literal_column(f"TIMESTAMP '{text}'", element.type)


def _value(column: sa.ColumnElement[Any]) -> Any:
    """What the stand-in answers for ``column``: see the module docstring."""
    element = column.element if isinstance(column, sa.Label) else column
    if isinstance(element, sa.sql.functions.count) and str(element) == "count(*)":
        return 2
    try:
        kind = column.type.python_type
    except NotImplementedError:
        return None
    return _VALUES.get(kind)
