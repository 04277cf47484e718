"""``reference``: every non-null value of a column exists in another table's column.

In the source's own database one ``NOT EXISTS`` query finds the orphans. Another connector's
table is copied, its distinct values a chunk at a time, into a temporary table beside the
checked one, and the same query runs against that: neither table is ever held in memory.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from dq_agent.checks.base import CheckContext, FindingsQuery, all_records, error_result, result
from dq_agent.checks.categorical import ValueCounts, value_counts
from dq_agent.config.models import CheckSpec, ReferenceArgs
from dq_agent.errors import SourceError
from dq_agent.results import CheckResult
from dq_agent.sources.base import Relation
from dq_agent.sources.sql import describe_table

# Distinct values of the other table copied per round trip.
CHUNK = 10_000


class Reference:
    """Counts the values of ``column`` with no match in ``to.table``'s ``to.column``."""

    def __init__(self, spec: CheckSpec, relation: Relation, ctx: CheckContext) -> None:
        assert isinstance(spec.args, ReferenceArgs)
        self.spec = spec
        self.args = spec.args
        self.relation = relation
        self.ctx = ctx
        self.column = relation.column(self.args.column)
        to = self.args.to
        # Without a connector the table is the source's neighbour, in the source's schema.
        self.schema = to.schema_name or (relation.schema if to.connector is None else None)
        self.target = ".".join(p for p in (to.schema_name, to.table, to.column) if p)

    def aggregates(self) -> dict[str, sa.ColumnElement[Any]]:
        return {"rows": sa.func.count(self.column)}

    def evaluate(self, values: Mapping[str, Any]) -> CheckResult:
        rows = int(values["rows"])
        try:
            other = self._other_engine()
            target_type = self._describe(other or self.relation.engine)
        except SourceError as exc:
            return error_result(self.spec, str(exc))
        found = self._orphans() if other is None else self._orphans_elsewhere(other, target_type)
        name = self.args.column
        observed = {"orphan_values": found.observed(), "orphan_rows": found.rows, "rows": rows}
        metrics = {"orphan_rows": found.rows}
        if not found.rows:
            message = f"all {rows:,} {name} values have a match in {self.target}"
            return result(self.spec, True, message, observed=observed, metrics=metrics)
        verb = "has" if found.rows == 1 else "have"
        reason = f"no match in {self.target}"
        records = None
        if other is None:  # another connector's values are copied for the count alone
            orphans = FindingsQuery(self._orphan(self._theirs()), name, reason)
            records = all_records(self.relation, self.ctx, orphans)
        return result(
            self.spec,
            False,
            f"{found.rows:,} of {rows:,} {name} values {verb} no match in {self.target}"
            f"{found.listing()}",
            observed=observed,
            findings=found.findings(name, reason),
            metrics=metrics,
            records=records,
        )

    def _other_engine(self) -> sa.Engine | None:
        """The other connector's engine; None when the table is in the source's database."""
        name = self.args.to.connector
        if name is None:
            return None
        if self.ctx.sql_engine is None:
            raise SourceError(f"connector {name!r} cannot be read here", transient=False)
        engine = self.ctx.sql_engine(name)
        return None if engine.url == self.relation.engine.url else engine

    def _describe(self, engine: sa.Engine) -> sa.types.TypeEngine[Any]:
        """The type of the referenced column; a clear error if the table or column is missing."""
        to = self.args.to
        where = f" on connector {to.connector!r}" if to.connector else ""
        table = f"{self.schema}.{to.table}" if self.schema else to.table
        with engine.connect() as conn:
            try:
                columns, _ = describe_table(conn, to.table, self.schema)
            except sa.exc.NoSuchTableError:
                raise SourceError(f"table {table!r} not found{where}", transient=False) from None
        types = dict(columns)
        if to.column not in types:
            raise SourceError(
                f"column {to.column!r} not found in {table}{where}; available: {', '.join(types)}",
                transient=False,
            )
        return types[to.column]

    def _theirs(self) -> sa.ColumnElement[Any]:
        """The referenced column, in the source's own database."""
        to = self.args.to
        # Aliased: the table may be the checked one itself (a manager_id to id, say).
        theirs = sa.table(to.table, sa.column(to.column), schema=self.schema).alias("ref")
        return theirs.c[to.column]

    def _orphans(self) -> ValueCounts:
        with self.relation.connect() as conn:
            return self._count(conn, self._theirs())

    def _orphans_elsewhere(
        self, other: sa.Engine, target_type: sa.types.TypeEngine[Any]
    ) -> ValueCounts:
        to = self.args.to
        # The copy takes the checked column's type, so the comparison is like for like there
        # (a query source's columns have none: the other column's, in generic terms, then).
        kind = self.relation.columns[self.args.column].sql_type
        if kind is None or isinstance(kind, sa.types.NullType):
            kind = _generic(target_type)
        copy = sa.Table(
            f"dq_ref_{uuid.uuid4().hex[:12]}",
            sa.MetaData(),
            sa.Column("value", kind),
            prefixes=["TEMPORARY"],
        )
        theirs = sa.table(to.table, sa.column(to.column), schema=self.schema)
        distinct = sa.select(theirs.c[to.column]).where(theirs.c[to.column].is_not(None)).distinct()
        # Not Relation.connect(): PostgreSQL refuses even a temporary table in a read-only
        # transaction. The temporary table is the only thing written, and it is dropped.
        with self.relation.engine.connect() as conn:
            try:
                with conn.begin():
                    copy.create(conn, checkfirst=False)
                    with _reading(other) as source:
                        stream = source.execution_options(yield_per=CHUNK).execute(distinct)
                        for chunk in stream.partitions():
                            conn.execute(copy.insert(), [{"value": v} for (v,) in chunk])
                    sa.Index(f"{copy.name}_value", copy.c.value).create(conn)
                    return self._count(conn, copy.c.value)
            finally:
                # A pooled connection would keep the table (SQLite even past a rollback); if
                # the connection is broken, the error that broke it is the one to report.
                with contextlib.suppress(sa.exc.SQLAlchemyError):
                    conn.execute(sa.schema.DropTable(copy, if_exists=True))
                    conn.commit()

    def _orphan(self, theirs: sa.ColumnElement[Any]) -> sa.ColumnElement[bool]:
        """A value of ``column`` with no match in ``theirs``."""
        return sa.and_(self.column.is_not(None), ~sa.exists().where(theirs == self.column))

    def _count(self, conn: sa.Connection, theirs: sa.ColumnElement[Any]) -> ValueCounts:
        where = [self._orphan(theirs)]
        return value_counts(
            conn, self.column, self.relation.selectable, where, self.ctx.max_findings
        )


def _reading(engine: sa.Engine) -> sa.Connection:
    """A connection to the other database, read-only where the dialect supports one."""
    conn = engine.connect()
    if engine.dialect.name == "postgresql":
        conn = conn.execution_options(postgresql_readonly=True)
    return conn


def _generic(kind: sa.types.TypeEngine[Any]) -> sa.types.TypeEngine[Any]:
    """A reflected type as one any dialect can create (as is if it has no generic form)."""
    try:
        return kind.as_generic()
    except NotImplementedError:
        return kind
