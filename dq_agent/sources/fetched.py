"""Records fetched from an API, copied into a private SQLite file the checks can scan.

Every check, built-in or Great Expectations, then runs on SQL exactly as it does for a
warehouse table, and the copy is also the "branch" a correction can be verified on.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from dq_agent.sources.base import ColumnInfo, Rejected, Relation, type_family

TABLE = "records"
_BATCH = 5_000


@dataclass(frozen=True)
class FetchedColumn:
    name: str
    sql_type: sa.types.TypeEngine[Any]
    # False when the type is a guess from no values: the schema check then calls it unknown,
    # so an emptied sheet does not look "retyped" once its rows are back.
    known: bool = True


class FetchedCopy:
    """A temporary SQLite database holding one fetched table; :meth:`close` deletes it."""

    def __init__(self, label: str) -> None:
        self._dir = Path(tempfile.mkdtemp(prefix="dq-agent-"))
        self.label = label
        self.url = f"sqlite:///{self._dir / 'copy.db'}"
        self.engine = sa.create_engine(self.url)

    def load(
        self,
        columns: Sequence[FetchedColumn],
        rows: Iterable[Mapping[str, Any]],
        primary_key: Sequence[str],
    ) -> Relation:
        """Create the table, insert ``rows`` and describe it as a relation.

        Reading never stops at one bad record: a value that does not fit its column is loaded
        as null, a record without a key or with a key already loaded is left out, and each
        is listed in the relation's ``rejected``.
        """
        table = sa.Table(
            TABLE,
            sa.MetaData(),
            *[sa.Column(c.name, c.sql_type, primary_key=c.name in primary_key) for c in columns],
        )
        table.create(self.engine)
        rejected: list[Rejected] = []
        with self.engine.begin() as conn:
            batch: list[dict[str, Any]] = []
            for stored in screened(columns, rows, primary_key, rejected):
                batch.append(stored)
                if len(batch) >= _BATCH:
                    conn.execute(table.insert(), batch)
                    batch = []
            if batch:
                conn.execute(table.insert(), batch)
        infos = {
            c.name: ColumnInfo(
                c.name, type_family(c.sql_type) if c.known else "unknown", c.sql_type
            )
            for c in columns
        }
        return Relation(
            self.engine,
            table,
            infos,
            tuple(primary_key),
            self.label,
            self.url,
            table=TABLE,
            rejected=tuple(rejected),
        )

    def close(self) -> None:
        self.engine.dispose()
        shutil.rmtree(self._dir, ignore_errors=True)


def screened(
    columns: Sequence[FetchedColumn],
    rows: Iterable[Mapping[str, Any]],
    primary_key: Sequence[str],
    rejected: list[Rejected],
) -> Iterator[dict[str, Any]]:
    """The records of ``rows`` that are kept, as stored: a value that does not fit its column
    is null, a record without a key or with a key already read is left out. Each of these is
    added to ``rejected``, repeated keys once each when ``rows`` is exhausted."""
    seen: dict[tuple[Any, ...], int] = {}
    for row in rows:
        stored, misfits = _fitted(columns, row, primary_key)
        key = tuple(stored[k] for k in primary_key)
        if any(v is None for v in key):
            reason = f"no {', '.join(primary_key)}: the record is left out"
            rejected += [*misfits, _record_rejected(primary_key, key, reason)]
            continue
        if primary_key:  # without a key no record repeats another
            seen[key] = seen.get(key, 0) + 1
            if seen[key] > 1:
                continue  # reported below, once per key; the first record is the one read
        rejected += misfits
        yield stored
    rejected += [
        _record_rejected(
            primary_key,
            key,
            f"came {times} times among the records read (only the first is checked)",
        )
        for key, times in seen.items()
        if times > 1
    ]


# Values longer than this are cut short in messages.
_SHOWN_CHARS = 60
# What SQLite (and every warehouse) stores in an integer column.
_INT64 = (-(2**63), 2**63 - 1)


def _misfit(sql_type: sa.types.TypeEngine[Any], value: Any) -> str | None:
    """Why a column of ``sql_type`` cannot hold ``value`` ("not a number"), or None."""
    if value is None:
        return None
    if isinstance(sql_type, sa.Boolean):
        return None if isinstance(value, bool) else "not true or false"
    if isinstance(sql_type, sa.Integer):
        whole = isinstance(value, int) and not isinstance(value, bool)
        return None if whole and _INT64[0] <= value <= _INT64[1] else "not a whole number"
    if isinstance(sql_type, sa.Float | sa.Numeric):
        if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
            return "not a number"
        try:
            finite = math.isfinite(float(value))
        except OverflowError:
            finite = False
        return None if finite else "not a finite number"
    if isinstance(sql_type, sa.DateTime):
        return None if isinstance(value, datetime) else "not a date and time"
    if isinstance(sql_type, sa.Date):
        plain_date = isinstance(value, date) and not isinstance(value, datetime)
        return None if plain_date else "not a date"
    if isinstance(value, Mapping | list | tuple | set | frozenset | bytes | bytearray):
        return "not a single value"
    if isinstance(value, float) and not math.isfinite(value):
        return "not a finite number"
    if isinstance(value, int) and not _INT64[0] <= value <= _INT64[1]:
        return "too large a number to store"
    return None


def _shown(value: Any) -> str:
    """A value as a message shows it: text quoted, an object or list as JSON; cut short."""
    text = repr(value)
    if isinstance(value, Mapping | list | tuple):
        text = json.dumps(value, default=str)
    return text if len(text) <= _SHOWN_CHARS else text[: _SHOWN_CHARS - 1] + "…"


def _fitted(
    columns: Sequence[FetchedColumn], row: Mapping[str, Any], primary_key: Sequence[str]
) -> tuple[dict[str, Any], list[Rejected]]:
    """``row`` as stored, and its values no column can hold (stored as null instead)."""
    stored: dict[str, Any] = {}
    misfits: list[Rejected] = []
    for column in columns:
        value = row.get(column.name)
        problem = _misfit(column.sql_type, value)
        if problem is not None:
            reason = f"{column.name} holds {_shown(value)}, {problem}"
            misfits.append(Rejected(_key(primary_key, row), column.name, value, reason))
            value = None
        stored[column.name] = _storable(value)
    return stored, misfits


def _record_rejected(primary_key: Sequence[str], key: tuple[Any, ...], reason: str) -> Rejected:
    """A whole record left out: the fault is its key's (the key column, when there is one)."""
    column, value = (primary_key[0], key[0]) if len(primary_key) == 1 else (None, None)
    return Rejected(dict(zip(primary_key, key, strict=True)), column, value, reason)


def _key(primary_key: Sequence[str], row: Mapping[str, Any]) -> dict[str, Any]:
    return {k: row.get(k) for k in primary_key}


def _storable(value: Any) -> Any:
    # SQLite keeps no offsets: timestamps are stored as naive UTC, in columns declared
    # timezone-aware so that checks read them back as UTC.
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.astimezone(UTC).replace(tzinfo=None)
    return value


def infer_type(values: Iterable[Any]) -> sa.types.TypeEngine[Any]:
    """The narrowest column type holding every non-null value (text when they disagree)."""
    kinds = {type(v) for v in values if v is not None}
    if not kinds:
        return sa.String()
    if kinds == {bool}:
        return sa.Boolean()
    if kinds == {int}:
        return sa.Integer()
    if kinds <= {int, float}:
        return sa.Float()
    if kinds == {datetime}:
        return sa.DateTime(timezone=True)
    if kinds == {date}:
        return sa.Date()
    return sa.String()
