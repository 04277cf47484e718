"""``dq-agent validate --connect``: each suite held against its live source, before any run.

Parsing proves a suite well formed; only the source can say whether its table is there, whether
it has the columns the suite names (in checks, row conditions and runbook fixes), whether the
tables its reference checks and fixes read are there, and whether its time-bucketed checks run
on that database. Each answer is a :class:`ConfigIssue` at the YAML node that named the table,
column or check.

This sits beside the engine, not in ``sources/``: it reads both the sources and the checks.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import sqlalchemy as sa

from dq_agent.checks import BUILTIN
from dq_agent.checks.conditions import condition_columns
from dq_agent.checks.windows import SUPPORTED_DIALECTS, WindowedCheck
from dq_agent.config import Project
from dq_agent.config.models import (
    CheckSpec,
    FatFingerArgs,
    ReferenceArgs,
    SchemaArgs,
    SqlConnector,
    SqlSourceSpec,
    Suite,
)
from dq_agent.config.statements import ColumnName, Name, Source, TableName, fix_names
from dq_agent.config.yamlfile import NodePath, YamlDocument, YamlSyntaxError, load_yaml
from dq_agent.errors import ConfigIssue, SourceError
from dq_agent.expressions import parse
from dq_agent.sources.base import Relation
from dq_agent.sources.registry import Connections
from dq_agent.sources.retry import NO_RETRY
from dq_agent.sources.sql import describe_table, reach, translate

# Arguments of the built-in checks that name one column of the source.
CHECK_COLUMN_ARGS = ("column", "timestamp_column", "group_by")
# Arguments of Great Expectations expectations that name one column, and several.
GX_COLUMN_ARGS = ("column", "column_A", "column_B")
GX_COLUMN_LIST_ARGS = ("column_list",)
# Columns every table has without naming them, which a fix's SQL may read.
IMPLICIT_COLUMNS = {
    "sqlite": frozenset({"rowid", "oid", "_rowid_"}),
    "duckdb": frozenset({"rowid"}),
    "postgresql": frozenset({"ctid", "xmin", "xmax", "cmin", "cmax", "tableoid"}),
}


def connect_issues(project: Project) -> list[ConfigIssue]:
    """What each valid suite's source says about the suite: a table that is not there, columns
    it does not have, tables and columns its reference checks and runbook fixes read that are
    not there, checks that cannot run on its database, or that it cannot be reached.

    Each suite is checked on its own: an unreachable source is one issue, and the other suites
    are still checked. Issues come suite by suite, each suite's top to bottom.
    """
    # One attempt each: validate answers now, and a retry's backoff would only delay it.
    connections = Connections(
        project.root, project.connectors, retry=NO_RETRY, sealed=project.sealed
    )
    issues: list[ConfigIssue] = []
    try:
        for suite in project.suites.values():
            doc = _document(Path(suite.file))
            found = _suite_issues(project, connections, suite, doc)
            issues += sorted(found, key=lambda issue: (issue.line, issue.col))
    finally:
        connections.dispose()
    return issues


def _suite_issues(
    project: Project, connections: Connections, suite: Suite, doc: YamlDocument
) -> list[ConfigIssue]:
    spec = suite.source
    try:
        source = connections.source(spec)
        if isinstance(spec, SqlSourceSpec):
            reach(connections.sql_engine(spec.connector))
    except SourceError as exc:
        return [_unreached(suite, doc, exc)]
    try:
        try:
            relation = source.open()
        except SourceError as exc:
            return [_unopened(project, connections, suite, doc, exc)]
        issues = [
            doc.issue(
                named.path,
                f"column {named.column!r} not found in {relation.label}"
                f"{_hint(named.column, list(relation.columns))}",
                key=named.is_key,
            )
            for named in _named_columns(suite, doc)
            if named.column not in relation.columns
        ]
    finally:
        source.close()
    issues += _reference_issues(project, connections, suite, relation, doc)
    if isinstance(spec, SqlSourceSpec):
        issues += _fix_issues(suite, relation, doc)
        issues += _unsupported(suite, relation, doc)
    return issues


def _unreached(suite: Suite, doc: YamlDocument, error: SourceError) -> ConfigIssue:
    # A SourceError's message is free of secrets already (URLs masked, passwords redacted).
    name = suite.source.connector
    return doc.issue(("source", "connector"), f"connector {name!r} could not be reached: {error}")


def _unopened(
    project: Project,
    connections: Connections,
    suite: Suite,
    doc: YamlDocument,
    error: SourceError,
) -> ConfigIssue:
    """Why a reachable source could not be opened: for a table, whether it is there at all."""
    spec = suite.source
    if not isinstance(spec, SqlSourceSpec):
        # An API client connects on first use: a fault that may pass is the service's.
        if error.transient:
            return _unreached(suite, doc, error)
        return doc.issue(("source",), f"could not be opened: {error}")
    engine = connections.sql_engine(spec.connector)
    dialect = engine.dialect.name
    if spec.table is None:
        return doc.issue(("source", "query"), f"query cannot be run on {dialect}: {error}")
    connector = project.connectors[spec.connector]
    assert isinstance(connector, SqlConnector)  # the loader matched the spec to its connector
    schema = spec.schema_ or connector.schema_
    name = f"{schema}.{spec.table}" if schema else spec.table
    try:
        tables = _table_names(engine, schema)
    except sa.exc.SQLAlchemyError:
        tables = None
    if tables is None or spec.table in tables:  # there, but unreadable (say, a permission)
        return doc.issue(
            ("source", "table"), f"table {name!r} cannot be read on {dialect}: {error}"
        )
    return doc.issue(
        ("source", "table"),
        f"table {name!r} not found on {dialect}{_did_you_mean(spec.table, tables)}",
    )


def _table_names(engine: sa.Engine, schema: str | None) -> list[str]:
    """The tables and views of ``schema`` (default: the connection's own)."""
    with engine.connect() as conn:
        if conn.dialect.name == "duckdb":
            # SQLAlchemy's PostgreSQL-derived reflection asks catalogs DuckDB does not have.
            where = ":schema" if schema else "current_schema()"
            rows = conn.execute(
                sa.text(
                    f"SELECT table_name FROM information_schema.tables WHERE table_schema = {where}"
                ),
                {"schema": schema} if schema else {},
            )
            return [str(name) for (name,) in rows]
        inspector = sa.inspect(conn)
        return [*inspector.get_table_names(schema), *inspector.get_view_names(schema)]


class _Named(NamedTuple):
    """A column the suite names, and the YAML node that names it."""

    path: NodePath
    column: str
    # The name is a mapping's key (``columns: {amount: number}``), not a value.
    is_key: bool = False


def _named_columns(suite: Suite, doc: YamlDocument) -> Iterator[_Named]:
    yield from _items(doc, ("key",), suite.key)
    # A suite that loaded lost none of its checks: the nth check is the nth item in the file.
    for index, check in enumerate(suite.checks):
        yield from _check_columns(doc, ("checks", index, check.type), check)


def _check_columns(doc: YamlDocument, path: NodePath, check: CheckSpec) -> Iterator[_Named]:
    if check.is_expectation:
        kwargs = check.expectation_kwargs
        for name, value in kwargs.items():
            if name in GX_COLUMN_ARGS and isinstance(value, str):
                yield _Named((*path, name), value)
            elif name in GX_COLUMN_LIST_ARGS and isinstance(value, list):
                yield from _items(doc, (*path, name), [str(v) for v in value])
        for column in condition_columns(kwargs):
            yield _Named((*path, "row_condition"), column)
        return
    args = check.args
    for name in CHECK_COLUMN_ARGS:
        value = getattr(args, name, None)
        if isinstance(value, str):
            yield _Named((*path, name), value)
    if isinstance(args, SchemaArgs):
        yield from _items(doc, (*path, "columns"), list(args.columns))
    if isinstance(args, FatFingerArgs):
        if args.peers is not None:
            yield from _items(doc, (*path, "peers", "group_by"), args.peers.group_by)
        if args.witness is not None:
            for column in sorted(parse(args.witness).columns()):
                yield _Named((*path, "witness"), column)


def _items(doc: YamlDocument, path: NodePath, names: Iterable[str]) -> Iterator[_Named]:
    """Each of ``names`` at the node the YAML gives it: an item of the list at ``path``, a key
    of the mapping there, or the one scalar there (``key: id``)."""
    node = _value_at(doc.value, path)
    for index, name in enumerate(names):
        if isinstance(node, list):
            yield _Named((*path, index), name)
        elif isinstance(node, dict):
            yield _Named((*path, name), name, is_key=True)
        else:
            yield _Named(path, name)


def _value_at(value: Any, path: NodePath) -> Any:
    try:
        for part in path:
            value = value[part]
    except (KeyError, IndexError, TypeError):  # not there, or inside a scalar
        return None
    return value


def _reference_issues(
    project: Project,
    connections: Connections,
    suite: Suite,
    relation: Relation,
    doc: YamlDocument,
) -> list[ConfigIssue]:
    """The tables and columns ``reference`` checks look values up in, where they are not: on
    the source's own database or another SQL connector, in the schema the check reads."""
    issues: list[ConfigIssue] = []
    for index, check in enumerate(suite.checks):
        if not isinstance(check.args, ReferenceArgs):
            continue
        to = check.args.to
        path: NodePath = ("checks", index, check.type, "to")
        if to.connector is None:
            if not isinstance(suite.source, SqlSourceSpec):
                continue  # a fetched source's copy has no neighbours to look values up in
            engine, schema = relation.engine, to.schema_name or relation.schema
        elif isinstance(project.connectors.get(to.connector), SqlConnector):
            try:
                engine, schema = connections.sql_engine(to.connector), to.schema_name
                reach(engine)
            except SourceError as exc:
                message = f"connector {to.connector!r} could not be reached: {exc}"
                issues.append(doc.issue((*path, "connector"), message))
                continue
        else:
            continue
        issues += _referenced(engine, schema, check.args, doc, path)
    return issues


def _referenced(
    engine: sa.Engine,
    schema: str | None,
    args: ReferenceArgs,
    doc: YamlDocument,
    path: NodePath,
) -> list[ConfigIssue]:
    """Whether ``to.table`` and its ``to.column`` are there, found as the check finds them."""
    to = args.to
    dialect = engine.dialect.name
    where = f"connector {to.connector!r} ({dialect})" if to.connector else dialect
    name = f"{schema}.{to.table}" if schema else to.table
    try:
        with engine.connect() as conn:
            described, _ = describe_table(conn, to.table, schema)
    except sa.exc.NoSuchTableError:
        try:
            tables = _table_names(engine, schema)
        except sa.exc.SQLAlchemyError:
            tables = []
        message = f"table {name!r} not found on {where}{_did_you_mean(to.table, tables)}"
        return [doc.issue((*path, "table"), message)]
    except sa.exc.SQLAlchemyError as exc:
        error = translate(exc, engine.url)
        return [doc.issue((*path, "table"), f"table {name!r} cannot be read on {where}: {error}")]
    columns = [column for column, _ in described]
    if to.column in columns:
        return []
    message = f"column {to.column!r} not found in {name}{_hint(to.column, columns)}"
    return [doc.issue((*path, "column"), message)]


def _fix_issues(suite: Suite, relation: Relation, doc: YamlDocument) -> list[ConfigIssue]:
    """Tables and columns each runbook fix's SQL names that its database does not have."""
    if not suite.fixes:
        return []
    database = _FixDatabase(relation)
    return [
        doc.issue(("fixes", index, "sql"), problem)
        for index, fix in enumerate(suite.fixes)
        for problem in database.problems(fix.sql)
    ]


class _FixDatabase:
    """The suite's database as a fix's SQL reads it: the suite's table (already open), and
    the other tables and their columns, each looked up once.

    Names are matched as the database matches them: PostgreSQL folds an unquoted name to
    lower case and keeps a quoted one as it is; the others are taken to ignore case (MySQL's
    table names may not, on some systems: a mismatch there is left to the database).
    """

    def __init__(self, relation: Relation) -> None:
        self.relation = relation
        self.engine = relation.engine
        self.dialect = relation.engine.dialect.name
        self._tables: dict[str | None, list[str] | None] = {}
        self._columns: dict[tuple[str | None, str], list[str] | None] = {}

    def problems(self, sql: str) -> list[str]:
        """What ``sql`` names that is not there, in the order the SQL names it, once each."""
        names = fix_names(sql, self.dialect)
        found = [(table.at, self._missing_table(table)) for table in names.tables]
        found += [(column.at, self._missing_column(column)) for column in names.columns]
        return list(dict.fromkeys(problem for _, problem in sorted(found) if problem))

    def _missing_table(self, table: TableName) -> str | None:
        if self._own(table) or table.catalog:
            return None
        schema = self._read(table.schema) if table.schema else None
        tables = self._table_names(schema)
        if tables is None or self._find(table.name, tables) is not None:
            return None
        name = self._read(table.name)
        label = f"{schema}.{name}" if schema else name
        return f"table {label!r} not found on {self.dialect}{_did_you_mean(name, tables)}"

    def _missing_column(self, column: ColumnName) -> str | None:
        """Why ``column`` is not there, if it is not, found SQL's way: a qualified column in
        the source going by its qualifier in the nearest SELECT that has one; an unqualified
        one in any source of the SELECT naming it, else of the SELECT around it, and so on
        outwards. Nothing is said when a source on the way has columns that cannot be told."""
        name = column.name
        if self._read(name).lower() in IMPLICIT_COLUMNS.get(self.dialect, ()):
            return None
        if column.qualifier is not None:
            wanted = column.qualifier.lower()
            for scope in column.scopes:
                named = [(k, s) for k, s in scope.sources.items() if k.lower() == wanted]
                if named:
                    return self._not_in(named, name)
            return None  # a qualifier no source goes by: the database will say
        for scope in column.scopes:
            if name.text.lower() in {alias.lower() for alias in scope.aliases}:
                return None
            known = [self._columns_of(source) for source in scope.sources.values()]
            if any(columns is None for columns in known):
                return None
            if any(self._find(name, columns or []) is not None for columns in known):
                return None
        if not column.scopes or not column.scopes[0].sources:
            return None
        if self.dialect == "sqlite" and name.quoted:
            return None  # SQLite reads a double-quoted name no column has as a string
        return self._not_in(list(column.scopes[0].sources.items()), name)

    def _not_in(self, sources: list[tuple[str, Source]], name: Name) -> str | None:
        """Why no source of ``sources`` has ``name``; None if one has it, or may."""
        known = [self._columns_of(source) for _, source in sources]
        if any(columns is None for columns in known):
            return None
        columns = [column for each in known for column in each or []]
        if self._find(name, columns) is not None:
            return None
        labels = " or ".join(self._label(key, source) for key, source in sources)
        read = self._read(name)
        hint = _hint(read, columns) if len(sources) == 1 else _did_you_mean(read, columns)
        return f"column {read!r} not found in {labels}{hint}"

    def _columns_of(self, source: Source) -> list[str] | None:
        """The columns of a source; None when they cannot be told (or it is not there)."""
        if not isinstance(source, TableName):
            return None if source is None else list(source)
        if self._own(source):
            return list(self.relation.columns)
        if source.catalog:
            return None
        schema = self._read(source.schema) if source.schema else None
        actual = self._find(source.name, self._table_names(schema) or [])
        if actual is None:
            return None
        if (schema, actual) not in self._columns:
            try:
                with self.engine.connect() as conn:
                    described, _ = describe_table(conn, actual, schema)
                self._columns[schema, actual] = [column for column, _ in described]
            except sa.exc.SQLAlchemyError:
                self._columns[schema, actual] = None
        return self._columns[schema, actual]

    def _table_names(self, schema: str | None) -> list[str] | None:
        if schema not in self._tables:
            try:
                self._tables[schema] = _table_names(self.engine, schema)
            except sa.exc.SQLAlchemyError:
                self._tables[schema] = None
        return self._tables[schema]

    def _own(self, table: TableName) -> bool:
        """Whether ``table`` is the suite's: as the loader told, when it accepted the fix."""
        own, schema = self.relation.table or "", self.relation.schema
        return table.name.text.lower() == own.lower() and (
            table.schema is None
            or (schema is not None and table.schema.text.lower() == schema.lower())
        )

    def _label(self, key: str, source: Source) -> str:
        if not isinstance(source, TableName):
            return key
        if self._own(source):
            return self.relation.label
        name = self._read(source.name)
        return f"{self._read(source.schema)}.{name}" if source.schema else name

    def _read(self, name: Name) -> str:
        """The name as the database looks it up."""
        if self.dialect == "postgresql" and not name.quoted:
            return name.text.lower()
        return name.text

    def _find(self, name: Name, choices: Iterable[str]) -> str | None:
        """The one of ``choices`` that ``name`` names, if any."""
        read = self._read(name)
        for choice in choices:
            if choice == read or (self.dialect != "postgresql" and choice.lower() == read.lower()):
                return choice
        return None


def _unsupported(suite: Suite, relation: Relation, doc: YamlDocument) -> list[ConfigIssue]:
    """Time-bucketed checks on a database they have no bucketing SQL for."""
    dialect = relation.engine.dialect.name
    if dialect in SUPPORTED_DIALECTS:
        return []
    supported = ", ".join(SUPPORTED_DIALECTS)
    return [
        doc.issue(
            ("checks", index, check.type),
            f"{check.type} is not supported on {dialect} (supported: {supported})",
            key=True,
        )
        for index, check in enumerate(suite.checks)
        if _windowed(check)
    ]


def _windowed(check: CheckSpec) -> bool:
    factory = BUILTIN.get(check.type)
    return isinstance(factory, type) and issubclass(factory, WindowedCheck)


def _did_you_mean(name: str, choices: Sequence[str]) -> str:
    # A name in other case first: PostgreSQL folds unquoted names to lower case, SQL users
    # do not always.
    same = [choice for choice in choices if choice.lower() == name.lower()]
    close = same or difflib.get_close_matches(name, choices, n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def _hint(column: str, columns: Sequence[str]) -> str:
    """A close match among ``columns``, else all of them (a table's columns are few)."""
    return _did_you_mean(column, columns) or f"; available: {', '.join(columns)}"


def _document(file: Path) -> YamlDocument:
    """The suite's YAML read again, for the position of each node. A file that changed since
    it was loaded and no longer parses only costs the positions: issues then point at 1:1."""
    try:
        return load_yaml(file.read_text(encoding="utf-8"), file)
    except (OSError, UnicodeDecodeError, YamlSyntaxError):
        return YamlDocument(file, None)
