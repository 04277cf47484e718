"""Records fetched from an API, copied into a private SQLite file the checks can scan.

Every check, built-in or Great Expectations, then runs on SQL exactly as it does for a
warehouse table, and the copy is also the "branch" a correction can be verified on.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from dq_agent.sources.base import ColumnInfo, Relation, type_family

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
        """Create the table, insert ``rows`` and describe it as a relation."""
        table = sa.Table(
            TABLE,
            sa.MetaData(),
            *[sa.Column(c.name, c.sql_type, primary_key=c.name in primary_key) for c in columns],
        )
        table.create(self.engine)
        with self.engine.begin() as conn:
            batch: list[dict[str, Any]] = []
            for row in rows:
                batch.append({c.name: _storable(row.get(c.name)) for c in columns})
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
            self.engine, table, infos, tuple(primary_key), self.label, self.url, table=TABLE
        )

    def close(self) -> None:
        self.engine.dispose()
        shutil.rmtree(self._dir, ignore_errors=True)


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
