"""A runbook fix's SQL, read before it ever runs: one statement, on the suite's own table.

From the statement comes the SELECT of the rows it will touch (the rows an UPDATE or DELETE
matches, the rows an INSERT … SELECT adds), so those rows can be counted against
``max_rows`` and kept as before-images for the undo, and the names of its bound parameters.
:func:`fix_names` lists the tables and columns it names, for ``validate --connect`` to look up.
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


# --- what a fix's SQL names -----------------------------------------------------------------


@dataclass(frozen=True)
class Name:
    """An identifier as written; a quoted one keeps its case on every database."""

    text: str
    quoted: bool = False


@dataclass(frozen=True)
class TableName:
    """A table the statement reads or changes, as written (``schema.table`` or ``table``)."""

    name: Name
    schema: Name | None = None
    # A three-part name (``catalog.schema.table``): not looked up.
    catalog: str | None = None
    # Where the SQL names it (a character offset).
    at: int = 0


# What a query reads under one name: a table; the columns of a subquery, CTE or table
# function, where the text tells them all; or None where it does not.
Source = TableName | tuple[str, ...] | None


@dataclass(frozen=True)
class Scope:
    """One SELECT, or the statement itself: its sources by the name it calls each, and the
    aliases of its output columns (an ORDER BY may name those)."""

    sources: dict[str, Source]
    aliases: frozenset[str] = frozenset()


@dataclass(frozen=True)
class ColumnName:
    """A column the statement names, qualified (``fx_rates.rate``) or not, with the scopes it
    is read in: the SELECT naming it first, then each around it (a subquery sees those)."""

    name: Name
    qualifier: str | None
    scopes: tuple[Scope, ...]
    at: int = 0


@dataclass(frozen=True)
class FixNames:
    """The tables and columns a fix's SQL names, in the order it names them."""

    tables: tuple[TableName, ...]
    columns: tuple[ColumnName, ...]


def fix_names(sql: str, backend: str) -> FixNames:
    """The tables and columns ``sql`` names: a fix that :func:`read_fix` accepted (any other
    SQL may name none)."""
    reader = _NameReader()
    try:
        statement = sqlglot.parse_one(sql, read=dialect_of(backend))
    except ParseError:
        return FixNames((), ())
    reader.statement(statement)
    tables = sorted(reader.tables, key=lambda table: table.at)
    return FixNames(tuple(tables), tuple(sorted(reader.columns, key=lambda column: column.at)))


# Arguments of a statement or SELECT that are sources, not expressions.
_SOURCE_ARGS = frozenset({"from", "from_", "joins", "using", "with", "with_"})
# Keywords that stand for a value, which sqlglot reads as a column in some dialects.
_VALUE_KEYWORDS = frozenset(
    {
        "default",
        "user",
        "current_user",
        "session_user",
        "system_user",
        "current_role",
        "current_schema",
        "current_catalog",
        "localtime",
        "localtimestamp",
        "unknown",
    }
)


class _NameReader:
    """Walks a statement, one scope per SELECT, noting each table and column it meets."""

    def __init__(self) -> None:
        self.tables: list[TableName] = []
        self.columns: list[ColumnName] = []
        # Common table expressions by name: read by name, they are no table of the database.
        self.ctes: dict[str, Source] = {}

    def statement(self, node: exp.Expr) -> None:
        if isinstance(node, exp.Insert):
            into = node.this
            if not isinstance(into, exp.Schema):
                return  # no column list: read_fix refuses it
            scope = self._scope([into.this], ())
            [target] = scope.sources
            for column in into.expressions:
                self._column(column, target, (scope,))
            # The SELECT of an INSERT does not see the table it inserts into.
            self._query(node.expression, ())
            return
        if not isinstance(node, exp.Update | exp.Delete):
            self._query(node, ())
            return
        origin = node.args.get("from") or node.args.get("from_")
        sources = [node.this, *([origin.this] if origin is not None else [])]
        chain = (self._scope([*sources, *(node.args.get("using") or [])], ()),)
        if isinstance(node, exp.Update):
            for assignment in node.expressions:
                target = assignment.this
                if isinstance(target, exp.Column) and not target.table:
                    # A SET target is a column of the updated table, whatever else is read.
                    self._column(target.this, node.this.alias_or_name, chain)
                else:
                    self._expression(target, chain)
                self._expression(assignment.expression, chain)
        for key, value in node.args.items():
            if key not in _SOURCE_ARGS and key not in ("this", "expressions"):
                self._expression(value, chain)

    def _query(self, node: exp.Expr, outer: tuple[Scope, ...]) -> None:
        if isinstance(node, exp.Subquery):
            self._query(node.this, outer)
        elif isinstance(node, exp.SetOperation):
            # Its ORDER BY names the output columns of its first SELECT: left alone.
            self._query(node.this, outer)
            self._query(node.expression, outer)
        elif isinstance(node, exp.Select):
            with_ = node.args.get("with") or node.args.get("with_")
            for cte in with_.expressions if with_ is not None else ():
                self._query(cte.this, outer)
                self.ctes[cte.alias.lower()] = _output_columns(cte)
            origin = node.args.get("from") or node.args.get("from_")
            sources = [
                *([origin.this] if origin is not None else []),
                *(node.args.get("joins") or []),
            ]
            scope = self._scope(sources, outer)
            aliases = frozenset(a.alias for a in node.expressions if isinstance(a, exp.Alias))
            chain = (Scope(scope.sources, aliases), *outer)
            for key, value in node.args.items():
                if key not in _SOURCE_ARGS:
                    self._expression(value, chain)
        else:
            self._expression(node, outer)

    def _scope(self, nodes: list[exp.Expr], outer: tuple[Scope, ...]) -> Scope:
        """The sources ``nodes`` (FROM items and their JOINs) bring into one scope. What they
        read themselves (a subquery, a JOIN's ON) is read once all of them are known, with
        this scope around it (a LATERAL subquery may look sideways)."""
        scope = Scope({})
        inner: list[exp.Expr | None] = []
        queue = list(nodes)
        while queue:
            node = queue.pop(0)
            if isinstance(node, exp.Join):
                inner.append(node.args.get("on"))  # its USING (…) is left alone
                node = node.this
            queue += node.args.get("joins") or []
            # A table function without an alias has no name to qualify with, but it has
            # columns all the same.
            name = node.alias_or_name or f"#{len(scope.sources)}"
            if isinstance(node, exp.Table) and isinstance(node.this, exp.Identifier):
                if not node.db and node.name.lower() in self.ctes:
                    scope.sources[name] = self.ctes[node.name.lower()]
                    continue
                table = TableName(
                    _name(node.this),
                    _name(node.args["db"]) if node.db else None,
                    node.catalog or None,
                    _offset(node.this),
                )
                self.tables.append(table)
                scope.sources[name] = table
            else:
                scope.sources[name] = _output_columns(node)
                inner.append(node)  # a subquery, a table function's arguments, VALUES ...
        for part in inner:
            self._expression(part, (scope, *outer))
        return scope

    def _expression(self, value: object, chain: tuple[Scope, ...]) -> None:
        if isinstance(value, list):
            for item in value:
                self._expression(item, chain)
        elif isinstance(value, exp.Query):
            self._query(value, chain)
        elif isinstance(value, exp.Column):
            # schema.table.column and struct fields are left alone.
            identifier = value.this
            if not isinstance(identifier, exp.Identifier) or value.args.get("db"):
                return
            if identifier.quoted or value.table or value.name.lower() not in _VALUE_KEYWORDS:
                self._column(identifier, value.table or None, chain)
        elif isinstance(value, exp.Expr):
            for child in value.args.values():
                self._expression(child, chain)

    def _column(
        self, identifier: exp.Expr, qualifier: str | None, chain: tuple[Scope, ...]
    ) -> None:
        self.columns.append(ColumnName(_name(identifier), qualifier, chain, _offset(identifier)))


def _name(identifier: exp.Expr) -> Name:
    return Name(identifier.name, bool(identifier.args.get("quoted")))


def _offset(node: exp.Expr) -> int:
    start = node.meta.get("start")
    return start if isinstance(start, int) else 0


def _output_columns(node: exp.Expr) -> tuple[str, ...] | None:
    """The columns a subquery, CTE or table function gives, where the text tells them all."""
    alias = node.args.get("alias")
    if isinstance(alias, exp.TableAlias) and alias.columns:
        return tuple(c.name for c in alias.columns)
    query = node.this if isinstance(node, exp.Subquery | exp.CTE) else None
    if isinstance(query, exp.Query) and not query.is_star and all(query.named_selects):
        return tuple(query.named_selects)
    return None
