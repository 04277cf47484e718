"""``dq-agent validate --connect``: each suite held against its live source, before any run.

Parsing proves a suite well formed; only the source can say whether its table is there, whether
it has the columns the suite names, and whether its time-bucketed checks run on that database.
Each answer is a :class:`ConfigIssue` at the YAML node that named the table, column or check.

This sits beside the engine, not in ``sources/``: it reads both the sources and the checks.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import sqlalchemy as sa

from dq_agent.checks import BUILTIN
from dq_agent.checks.windows import SUPPORTED_DIALECTS, WindowedCheck
from dq_agent.config import Project
from dq_agent.config.models import (
    CheckSpec,
    FatFingerArgs,
    SchemaArgs,
    SqlConnector,
    SqlSourceSpec,
    Suite,
)
from dq_agent.config.yamlfile import NodePath, YamlDocument, YamlSyntaxError, load_yaml
from dq_agent.errors import ConfigIssue, SourceError
from dq_agent.expressions import parse
from dq_agent.sources.base import Relation
from dq_agent.sources.registry import Connections
from dq_agent.sources.retry import NO_RETRY
from dq_agent.sources.sql import translate

# Arguments of the built-in checks that name one column of the source.
CHECK_COLUMN_ARGS = ("column", "timestamp_column", "group_by")
# Arguments of Great Expectations expectations that name one column, and several.
GX_COLUMN_ARGS = ("column", "column_A", "column_B")
GX_COLUMN_LIST_ARGS = ("column_list",)


def connect_issues(project: Project) -> list[ConfigIssue]:
    """What each valid suite's source says about the suite: a table that is not there, columns
    it does not have, checks that cannot run on its database, or that it cannot be reached.

    Each suite is checked on its own: an unreachable source is one issue, and the other suites
    are still checked. Issues come suite by suite, each suite's top to bottom.
    """
    # One attempt each: validate answers now, and a retry's backoff would only delay it.
    connections = Connections(project.root, project.connectors, retry=NO_RETRY)
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
            _reach(connections.sql_engine(spec.connector))
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
    if isinstance(spec, SqlSourceSpec):
        issues += _unsupported(suite, relation, doc)
    return issues


def _unreached(suite: Suite, doc: YamlDocument, error: SourceError) -> ConfigIssue:
    # A SourceError's message is free of secrets already (URLs masked, passwords redacted).
    name = suite.source.connector
    return doc.issue(("source", "connector"), f"connector {name!r} could not be reached: {error}")


def _reach(engine: sa.Engine) -> None:
    """Connect once, so that a database that does not answer is told apart from a table
    that is not there."""
    try:
        with engine.connect():
            pass
    except sa.exc.SQLAlchemyError as exc:
        raise translate(exc, engine.url) from exc


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
        for name, value in check.expectation_kwargs.items():
            if name in GX_COLUMN_ARGS and isinstance(value, str):
                yield _Named((*path, name), value)
            elif name in GX_COLUMN_LIST_ARGS and isinstance(value, list):
                yield from _items(doc, (*path, name), [str(v) for v in value])
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
