"""A runbook fix's SQL, read before it ever runs: one statement, on the suite's own table.

From the statement comes the SELECT of the rows it will touch (the rows an UPDATE or DELETE
matches, the rows an INSERT … SELECT adds), so those rows can be counted against
``max_rows`` and kept as before-images for the undo, and the names of its bound parameters.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError

# SQLAlchemy's backend names → sqlglot's dialects; another backend is read as generic SQL.
_DIALECTS = {
    "postgresql": "postgres",
    "mysql": "mysql",
    "mariadb": "mysql",
    "sqlite": "sqlite",
    "duckdb": "duckdb",
}


class StatementError(ValueError):
    """Why a fix's SQL is refused, in words for the person who wrote it."""


@dataclass(frozen=True)
class FixStatement:
    """What a runbook fix's SQL does, as far as the agent must know before running it."""

    kind: Literal["update", "delete", "insert"]
    # Bound parameters it names (``:bucket_start``), never formatted into the text.
    params: frozenset[str]
    # SELECT of the touched rows: every column of the table's rows an UPDATE or DELETE
    # matches; for an INSERT, the rows its SELECT produces, in ``columns`` order.
    touched: str
    # The columns an INSERT sets; empty for UPDATE and DELETE.
    columns: tuple[str, ...] = ()


def dialect_of(backend: str) -> str | None:
    """The sqlglot dialect of a SQLAlchemy backend name, None for generic SQL."""
    return _DIALECTS.get(backend)


def read_fix(sql: str, backend: str, table: str, schema: str | None = None) -> FixStatement:
    """Read ``sql`` as a single UPDATE, DELETE or INSERT … SELECT on ``table``.

    Raises :class:`StatementError` saying what is wrong.
    """
    dialect = dialect_of(backend)
    try:
        statements = [s for s in sqlglot.parse(sql, read=dialect) if s is not None]
    except ParseError as exc:
        first = str(exc).splitlines()[0]
        raise StatementError(f"not valid SQL for {backend}: {first}") from None
    if len(statements) != 1:
        raise StatementError(
            f"expected one statement, found {len(statements)}: a fix is a single "
            "UPDATE, DELETE or INSERT … SELECT"
        )
    statement = statements[0]
    if statement.args.get("with") or statement.args.get("with_"):
        raise StatementError("WITH … before the statement is not supported yet")
    anonymous = [p for p in statement.find_all(exp.Placeholder) if not p.this]
    if anonymous:
        raise StatementError("name every parameter, like :bucket_start (not ? or %s)")
    params = frozenset(str(p.this) for p in statement.find_all(exp.Placeholder))
    # Rendered SQL keeps the parameters as :name, whatever the dialect writes them as.
    rendered = statement.copy()
    for placeholder in list(rendered.find_all(exp.Placeholder)):
        placeholder.replace(exp.var(f":{placeholder.this}"))

    def sql_of(node: exp.Expression) -> str:
        return node.sql(dialect=dialect)

    if isinstance(rendered, exp.Update):
        target = _target(rendered.this, table, schema, "UPDATE")
        for part in ("order", "limit"):
            if rendered.args.get(part):
                raise StatementError(f"UPDATE … {part.upper()} is not supported")
        sources = [sql_of(target)]
        origin = rendered.args.get("from") or rendered.args.get("from_")
        if origin is not None:
            sources.append(sql_of(origin.this))
        return FixStatement("update", params, _select_rows(target, sources, rendered, sql_of))
    if isinstance(rendered, exp.Delete):
        target = _target(rendered.this, table, schema, "DELETE")
        if rendered.args.get("tables"):
            raise StatementError("a DELETE of several tables is not supported")
        for part in ("order", "limit"):
            if rendered.args.get(part):
                raise StatementError(f"DELETE … {part.upper()} is not supported")
        sources = [sql_of(target), *(sql_of(t) for t in rendered.args.get("using") or ())]
        return FixStatement("delete", params, _select_rows(target, sources, rendered, sql_of))
    if isinstance(rendered, exp.Insert):
        into = rendered.this
        if not isinstance(into, exp.Schema) or not into.expressions:
            raise StatementError("name the columns an INSERT sets: INSERT INTO t (a, b) SELECT …")
        _target(into.this, table, schema, "INSERT")
        query = rendered.expression
        if not isinstance(query, exp.Select | exp.SetOperation):
            raise StatementError("only INSERT … SELECT is supported, not INSERT … VALUES")
        for part in ("conflict", "returning"):
            if rendered.args.get(part):
                raise StatementError("INSERT … ON CONFLICT / RETURNING is not supported")
        columns = tuple(c.name for c in into.expressions)
        return FixStatement("insert", params, sql_of(query), columns)
    kind = type(statement).__name__.upper()
    raise StatementError(f"a fix is an UPDATE, DELETE or INSERT … SELECT, not {kind}")


def _target(node: exp.Expression | None, table: str, schema: str | None, verb: str) -> exp.Table:
    """The statement's table, refused unless it is the suite's own."""
    if not isinstance(node, exp.Table) or not node.name:
        raise StatementError(f"{verb} must name the suite's table {table}")
    same = node.name.lower() == table.lower() and (
        not node.db or (schema is not None and node.db.lower() == schema.lower())
    )
    if not same:
        own = f"{schema}.{table}" if schema else table
        named = f"{node.db}.{node.name}" if node.db else node.name
        raise StatementError(
            f"{verb} changes {named}: a fix may change only the suite's table {own}"
        )
    return node


def _select_rows(
    target: exp.Table,
    sources: list[str],
    statement: exp.Expression,
    sql_of: Callable[[exp.Expression], str],
) -> str:
    """``SELECT t.* FROM t[, other…] [WHERE …]``: the rows of ``t`` the statement matches
    (a row joined to several others comes more than once)."""
    reference = target.alias_or_name
    quoted = sql_of(exp.column(exp.Star(), table=exp.to_identifier(reference)))
    where = statement.args.get("where")
    condition = f" WHERE {sql_of(where.this)}" if where is not None else ""
    return f"SELECT {quoted} FROM {', '.join(sources)}{condition}"
