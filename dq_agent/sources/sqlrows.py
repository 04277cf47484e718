"""Whole rows of a SQL table changed by one statement, kept as images for the undo.

A runbook fix runs inside a branch's transaction: the rows it will touch are selected first
(refused above ``max_rows`` before anything changes), the statement runs, and the touched rows
are read again. The before- and after-images (JSON-ready, as the ledger keeps them) are what
publishing records and what an undo puts back, row by row, compare-and-set.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from dq_agent.config.statements import FixStatement
from dq_agent.errors import SourceError
from dq_agent.results import to_jsonable
from dq_agent.sources.base import ColumnInfo, Relation, WriteResult

Row = dict[str, Any]
_CHUNK = 200


@dataclass(frozen=True)
class RowsChanged:
    """The rows a statement touched, before and after it ran, in key order."""

    before: list[Row]
    after: list[Row]

    @property
    def count(self) -> int:
        """How many rows changed: updated (both), deleted (before) or inserted (after)."""
        return max(len(self.before), len(self.after))


def run_statement(
    conn: sa.Connection,
    relation: Relation,
    statement: FixStatement,
    sql: str,
    params: Mapping[str, Any],
    key: Sequence[str],
    max_rows: int,
) -> RowsChanged:
    """Run a fix's ``sql`` on ``conn`` (a branch's transaction), with ``params`` bound.

    Raises :class:`SourceError` (the caller's transaction then rolls back) when it would
    touch more than ``max_rows`` rows, or when it changed other rows than it selected.
    """
    table = _table(relation)
    missing = [k for k in key if k not in relation.columns]
    if not key or missing:
        raise _refused(f"the rows of {relation.label} need a key (the suite's key:) to be undone")
    if statement.kind == "insert":
        absent = [k for k in key if k not in statement.columns]
        if absent:
            raise _refused(f"the INSERT must set the key column(s) {', '.join(absent)}")
        typed = [table.c[c] for c in statement.columns if c in table.c]
        if len(typed) != len(statement.columns):
            unknown = [c for c in statement.columns if c not in table.c]
            raise _refused(f"unknown column(s) {', '.join(unknown)} in {relation.label}")
        query = _bound(statement.touched, statement, params).columns(*typed)
        added = _fetch(conn, query, max_rows, relation)
        keys = [{k: row[statement.columns.index(k)] for k in key} for row in added]
        if any(current is not None for current in current_rows(conn, relation, key, keys)):
            raise _refused(f"the INSERT would add rows whose key is already in {relation.label}")
        before: list[Row] = []
    else:
        query = _bound(statement.touched, statement, params).columns(*table.columns)
        found = _fetch(conn, query, max_rows, relation)
        before = [_image(relation, row._mapping) for row in found]
        keys = [{k: row[k] for k in key} for row in before]
    expected = len(keys)
    done = conn.execute(_bound(sql, statement, params)).rowcount
    if done != expected:
        raise _refused(
            f"the fix changed {done} rows of {relation.label} where its WHERE selects "
            f"{expected}: nothing is published"
        )
    after = (
        []
        if statement.kind == "delete"
        else [r for r in current_rows(conn, relation, key, keys) if r is not None]
    )
    return RowsChanged(before, after)


def current_rows(
    conn: sa.Connection,
    relation: Relation,
    key: Sequence[str],
    keys: Sequence[Mapping[str, Any]],
) -> list[Row | None]:
    """The row each of ``keys`` names right now, as an image; None where there is none."""
    table = _table(relation)
    found: dict[tuple[Any, ...], Row] = {}
    for chunk in _chunks(keys):
        where = sa.or_(
            *[
                sa.and_(*[table.c[k] == _typed(relation.columns[k], one[k]) for k in key])
                for one in chunk
            ]
        )
        for row in conn.execute(sa.select(table).where(where)):
            image = _image(relation, row._mapping)
            found[tuple(image[k] for k in key)] = image
    return [found.get(tuple(to_jsonable(one[k]) for k in key)) for one in keys]


def put_rows(
    conn: sa.Connection,
    relation: Relation,
    key: Sequence[str],
    expected: Sequence[Mapping[str, Any]],
    target: Sequence[Mapping[str, Any]],
) -> WriteResult:
    """Turn the rows now holding ``expected`` into ``target``, row by row compare-and-set:
    a changed row is updated, a row only in ``target`` inserted, one only in ``expected``
    deleted. A row that is no longer as expected is a ``conflict``; the caller's transaction
    must then roll back whatever was put so far."""
    table = _table(relation)
    was = {_row_key(row, key): row for row in expected}
    goal = {_row_key(row, key): row for row in target}
    for row_key in dict.fromkeys([*was, *goal]):
        old, new = was.get(row_key), goal.get(row_key)
        named = dict(zip(key, row_key, strict=True))
        where = [table.c[k] == _typed(relation.columns[k], v) for k, v in named.items()]
        if old is not None:
            where += [_holds(relation, table.c[c], v) for c, v in old.items() if c in table.c]
        if old is not None and new is not None:
            values = {c: _typed(relation.columns[c], v) for c, v in new.items() if old.get(c) != v}
            if not values:
                continue
            done = conn.execute(sa.update(table).where(*where).values(values)).rowcount
        elif old is not None:
            done = conn.execute(sa.delete(table).where(*where)).rowcount
        else:
            assert new is not None
            taken = conn.execute(sa.select(sa.func.count()).select_from(table).where(*where))
            if taken.scalar_one():
                done = 0
            else:
                typed = {c: _typed(relation.columns[c], v) for c, v in new.items()}
                done = conn.execute(sa.insert(table).values(typed)).rowcount
        if done != 1:
            now = current_rows(conn, relation, key, [named])[0]
            detail = f"the row {named} of {relation.label} changed since: it now holds {now}"
            return WriteResult("conflict", now, now, detail)
    return WriteResult("written", list(expected), list(target))


def same_rows(a: Sequence[Mapping[str, Any]], b: Sequence[Mapping[str, Any]]) -> bool:
    """Two sets of row images hold the same rows, whatever their order."""
    return sorted(map(_frozen, a), key=repr) == sorted(map(_frozen, b), key=repr)


# -- helpers ---------------------------------------------------------------------------------


def _table(relation: Relation) -> sa.Table:
    table = relation.selectable
    if not isinstance(table, sa.Table):
        raise _refused("a fix changes a table, not a query")
    return table


def _bound(sql: str, statement: FixStatement, params: Mapping[str, Any]) -> sa.TextClause:
    """``sql`` with the statement's parameters bound (datetimes as the dialect stores them)."""
    binds = [
        sa.bindparam(name, params[name], type_=sa.DateTime())
        if isinstance(params[name], datetime)
        else sa.bindparam(name, params[name])
        for name in sorted(statement.params)
    ]
    return sa.text(sql).bindparams(*binds)


def _fetch(
    conn: sa.Connection, query: sa.TextualSelect, max_rows: int, relation: Relation
) -> list[sa.Row[Any]]:
    """The rows ``query`` selects, refused past ``max_rows`` (a row joined to several others
    counts once) before any is changed."""
    rows: dict[Any, sa.Row[Any]] = {}
    for row in conn.execute(query):
        rows.setdefault(tuple(map(repr, row)), row)
        if len(rows) > max_rows:
            raise _refused(
                f"the fix would touch more than max_rows ({max_rows}) rows of "
                f"{relation.label}: refused before it ran"
            )
    return list(rows.values())


def _image(relation: Relation, row: Mapping[Any, Any]) -> Row:
    """A row as the ledger keeps it: its table's columns, JSON-ready."""
    return {c: to_jsonable(row[c]) for c in relation.columns if c in row}


def _typed(column: ColumnInfo, value: Any) -> Any:
    """A JSON-ready value back as its column's Python type, for binding."""
    if value is None or not isinstance(value, str | int | float):
        return value
    if column.family == "timestamp" and isinstance(value, str):
        return datetime.fromisoformat(value)
    if column.family == "date" and isinstance(value, str):
        return date.fromisoformat(value)
    sql_type = column.sql_type
    exact = isinstance(sql_type, sa.Numeric) and not isinstance(sql_type, sa.Float)
    if column.family == "number" and exact and not isinstance(value, str):
        return Decimal(str(value))
    return value


def _holds(relation: Relation, column: sa.ColumnElement[Any], value: Any) -> sa.ColumnElement[Any]:
    """``column`` holds ``value``; null-safe."""
    if value is None:
        return column.is_(None)
    held: sa.ColumnElement[Any] = column == _typed(relation.columns[str(column.key)], value)
    return held


def _row_key(row: Mapping[str, Any], key: Sequence[str]) -> tuple[Any, ...]:
    return tuple(row[k] for k in key)


def _frozen(row: Mapping[str, Any]) -> tuple[tuple[str, Any], ...]:
    return tuple(sorted((k, repr(v)) for k, v in row.items()))


def _chunks(items: Sequence[Any]) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]


def _refused(detail: str) -> SourceError:
    return SourceError(detail, transient=False, code="fix_refused")
