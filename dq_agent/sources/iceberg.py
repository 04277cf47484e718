"""``type: iceberg`` — an Apache Iceberg table through pyiceberg, corrected on a branch.

Reading scans the table's current snapshot (main) into Arrow, and the checks are pushed down
to DuckDB over it: the Arrow table is a view of a private in-memory DuckDB database, read where
it lies (``pip install 'dq-agent[iceberg]'`` brings DuckDB). A correction is written to a branch
``dq-agent/fix-<id>`` created at the snapshot that was read; the checks run on the branch's
snapshot; publishing moves main to it only if main has not moved since it was read
(pyiceberg commits with a requirement on main's snapshot id, so a writer in between makes the
commit fail and nothing changes). The branch is removed once published or abandoned.

Every snapshot a correction writes carries the change it made (:data:`CHANGE_PROPERTY`), so
an undo of the change main's newest snapshots made, with nothing written since, moves main
back to the snapshot before them instead of writing the inverse.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from datetime import timedelta
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from dq_agent.config.models import Connector, IcebergConnector, IcebergSourceSpec, SourceSpec
from dq_agent.errors import DqAgentError, SourceError
from dq_agent.redact import redact
from dq_agent.results import to_jsonable
from dq_agent.sources.base import (
    ColumnInfo,
    Rejected,
    Relation,
    WriteResult,
    same_value,
    type_family,
)
from dq_agent.sources.fetched import FetchedColumn, screened

BRANCH_PREFIX = "dq-agent/fix-"
# The snapshot summary property naming the change a correction's snapshot made.
CHANGE_PROPERTY = "dq-agent.change"
# How long a branch whose fix failed verification stays for inspection.
KEPT_FOR = timedelta(days=7)


def connect(connector: IcebergConnector) -> Any:
    """The catalog the connector names (pyiceberg's ``load_catalog``)."""
    try:
        from pyiceberg.catalog import load_catalog
    except ImportError as exc:  # pragma: no cover - depends on the installed extras
        raise DqAgentError(
            "an iceberg connector needs pyiceberg: pip install 'dq-agent[iceberg]'"
        ) from exc
    try:
        return load_catalog(connector.name, **connector.catalog)
    except Exception as exc:  # any catalog's own errors: a missing driver, a bad URI
        raise _translate(exc, "open the catalog", connector.catalog.values()) from exc


class IcebergSource:
    """Reads one Iceberg table; writes single values back on a branch, compare-and-set."""

    def __init__(self, catalog: Any, spec: IcebergSourceSpec, connector: IcebergConnector):
        self._catalog = catalog
        self._spec = spec
        self._secrets = tuple(connector.catalog.values())
        self._table: Any = None
        self._snapshot_id: int | None = None
        self._key: tuple[str, ...] = ()
        self._views: list[ArrowView] = []

    # -- reading ------------------------------------------------------------------------------

    def open(self) -> Relation:
        _duckdb()  # before anything is read: without DuckDB nothing can be checked
        self._table = self._call("load the table", self._load)
        snapshot = self._table.current_snapshot()
        self._snapshot_id = snapshot.snapshot_id if snapshot is not None else None
        schema = self._table.schema()
        names = [f.name for f in schema.fields]
        identifier = [schema.find_field(i).name for i in schema.identifier_field_ids]
        self._key = tuple(self._spec.key or identifier)
        wanted = list(dict.fromkeys([*self._key, *(self._spec.fields or names)]))
        unknown = [n for n in wanted if n not in names]
        if unknown:
            raise SourceError(
                f"{self._spec.table} has no column(s) {', '.join(unknown)}", transient=False
            )
        self._wanted = wanted
        return self._relation_at(self._table, self._snapshot_id)

    def _relation_at(self, table: Any, snapshot_id: int | None) -> Relation:
        """``table`` as of ``snapshot_id`` in a private DuckDB view (empty before the first
        snapshot)."""
        if snapshot_id is None:
            arrow = table.schema().as_arrow().empty_table()
        else:
            scan = table.scan(selected_fields=tuple(self._wanted), snapshot_id=snapshot_id)
            arrow = self._call("read the table", scan.to_arrow)

        def in_duckdb() -> Relation:
            view = ArrowView(self._spec.table)
            self._views.append(view)  # closed with the source, even if loading fails
            return view.load(arrow.select(self._wanted), self._key)

        relation: Relation = self._call("read the table into DuckDB", in_duckdb)
        return relation

    def read(self, key: Mapping[str, Any], column: str) -> Any:
        table = self._call("load the table", self._load)
        rows = self._call(
            "read a record",
            lambda: (
                table.scan(row_filter=self._where(key), selected_fields=(column,))
                .to_arrow()
                .to_pylist()
            ),
        )
        return rows[0][column] if rows else None

    def close(self) -> None:
        """Close every DuckDB database the relations used, and let their Arrow data go."""
        for view in self._views:
            view.close()
        self._views.clear()

    # -- writing ------------------------------------------------------------------------------

    def write(
        self, key: Mapping[str, Any], column: str, expected_old: Any, new: Any
    ) -> WriteResult:
        """One value, compare-and-set, on a branch published at once (an undo, say); or, when
        it undoes what main's newest snapshots did, main rolled back to the one before."""
        rolled = self._roll_back(key, column, expected_old, new)
        if rolled is not None:
            return rolled
        with self.branch(lock_timeout=timedelta(0), statement_timeout=timedelta(0)) as branch:
            written: WriteResult = branch.write(key, column, expected_old, new)
            if written.status == "written":
                written = dataclasses.replace(written, detail=branch.publish())
            return written

    def _roll_back(
        self, key: Mapping[str, Any], column: str, expected_old: Any, new: Any
    ) -> WriteResult | None:
        """Main moved back to the snapshot before the change this undoes, if main's newest
        snapshots are that change's and nothing was written after them; else None."""
        table = self._call("load the table", self._load)
        main = table.current_snapshot()
        undone = change_id(key, column, new, expected_old)
        if main is None or (main.summary or {}).get(CHANGE_PROPERTY) != undone:
            return None
        target = main
        while target is not None and (target.summary or {}).get(CHANGE_PROPERTY) == undone:
            parent = target.parent_snapshot_id
            target = table.snapshot_by_id(parent) if parent is not None else None
        if target is None:
            return None
        moved = target.snapshot_id
        # Committed with a requirement that main is still ``main``: a writer in between fails it.
        self._call(
            "roll main back",
            lambda: table.manage_snapshots().set_current_snapshot(snapshot_id=moved).commit(),
        )
        detail = f"main rolled back from snapshot {main.snapshot_id} to {moved}"
        return WriteResult("written", expected_old, new, detail)

    @contextmanager
    def branch(self, *, lock_timeout: timedelta, statement_timeout: timedelta) -> Iterator[Any]:
        """A branch at main's current snapshot (the one read); removed when the block ends,
        unless :meth:`IcebergBranch.keep` kept it.

        Iceberg takes no locks, so the timeouts do not apply: a writer in between makes the
        publish fail instead.
        """
        del lock_timeout, statement_timeout
        if self._table is None:
            self.open()
        if not self._key:
            raise SourceError(
                f"{self._spec.table} has no identifier fields: name key: in the source to "
                "correct it",
                transient=False,
            )
        if self._snapshot_id is None:
            raise SourceError(f"{self._spec.table} has no snapshot to branch from", transient=False)
        self._prune()
        name = f"{BRANCH_PREFIX}{uuid.uuid4().hex[:12]}"
        base = self._snapshot_id
        self._call(
            "create a branch",
            lambda: self._table.manage_snapshots().create_branch(base, name).commit(),
        )
        branch = IcebergBranch(self, name, base)
        try:
            yield branch
        finally:
            if not branch.kept:
                self._remove([name])

    def _prune(self) -> None:
        """Remove the agent's branches older than :data:`KEPT_FOR`: those kept after a failed
        verification, and those a process that died left behind."""
        table = self._load()
        horizon = (time.time() - KEPT_FOR.total_seconds()) * 1000
        old = [
            name
            for name, ref in table.refs().items()
            if name.startswith(BRANCH_PREFIX)
            and table.snapshot_by_id(ref.snapshot_id).timestamp_ms <= horizon
        ]
        self._remove(old)

    def _remove(self, names: Sequence[str]) -> None:
        if not names:
            return
        with suppress(Exception):  # best effort: a leftover branch only costs a reference
            table = self._load()
            snapshots = table.manage_snapshots()
            for name in names:
                if name in table.refs():
                    snapshots = snapshots.remove_branch(name)
            snapshots.commit()

    # -- helpers ------------------------------------------------------------------------------

    def _load(self) -> Any:
        return self._catalog.load_table(self._spec.table)

    def _where(self, key: Mapping[str, Any]) -> Any:
        from pyiceberg.expressions import And, EqualTo, IsNull

        terms = [IsNull(term=k) if v is None else EqualTo(term=k, value=v) for k, v in key.items()]
        return terms[0] if len(terms) == 1 else And(*terms)

    def _call(self, what: str, action: Any) -> Any:
        try:
            return action()
        except SourceError:
            raise
        except Exception as exc:
            raise _translate(exc, what, self._secrets) from exc


class IcebergBranch:
    """Changes on one branch of an Iceberg table, and the table as the branch holds it."""

    def __init__(self, source: IcebergSource, name: str, base: int) -> None:
        self._source = source
        self.name = name
        self._base = base
        self.kept = False

    def relation_of(self, spec: SourceSpec, connector: Connector) -> Relation | None:
        """Other tables do not live on this table's branch."""
        return None

    def keep(self) -> str | None:
        """Leave the branch in the catalog for people to inspect (for :data:`KEPT_FOR`)."""
        self.kept = True
        return self.name

    @property
    def relation(self) -> Relation:
        table = self._source._call("load the table", self._source._load)
        return self._source._relation_at(table, self._head(table))

    def write(
        self, key: Mapping[str, Any], column: str, expected_old: Any, new: Any
    ) -> WriteResult:
        import pyarrow as pa

        source = self._source
        table = source._call("load the table", source._load)
        where = source._where(key)
        head = self._head(table)
        rows = source._call(
            "read a record", lambda: table.scan(row_filter=where, snapshot_id=head).to_arrow()
        )
        if rows.num_rows != 1:
            raise SourceError(
                f"{dict(key)} names {rows.num_rows} rows of {source._spec.table}, not one: "
                "nothing written",
                transient=False,
            )
        before = rows.column(column)[0].as_py()
        if not same_value(before, expected_old):
            return WriteResult("conflict", before, before, f"{column} is {before!r}")
        index = rows.schema.get_field_index(column)
        field = rows.schema.field(index)
        fixed = rows.set_column(index, field, pa.array([new], type=field.type))
        source._call(
            "write to the branch",
            lambda: table.overwrite(
                fixed,
                overwrite_filter=where,
                branch=self.name,
                snapshot_properties={CHANGE_PROPERTY: change_id(key, column, expected_old, new)},
            ),
        )
        return WriteResult("written", before, new)

    def publish(self) -> str:
        """Move main to the branch's snapshot, only if main is still the snapshot read."""
        source = self._source
        table = source._call("load the table", source._load)
        main = table.current_snapshot()
        if main is None or main.snapshot_id != self._base:
            raise SourceError(
                f"{source._spec.table} changed since it was read (main is now "
                f"{main.snapshot_id if main else 'empty'}, was {self._base}): not published",
                transient=False,
            )
        head = self._head(table)
        source._call(
            "publish the branch",
            lambda: table.manage_snapshots().set_current_snapshot(snapshot_id=head).commit(),
        )
        return f"main moved from snapshot {self._base} to {head}"

    def _head(self, table: Any) -> int:
        """The branch's newest snapshot, as ``table`` (freshly loaded) knows it."""
        return int(table.refs()[self.name].snapshot_id)


def change_id(key: Mapping[str, Any], column: str, old: Any, new: Any) -> str:
    """What names one change in a snapshot's summary: a digest of record, column, old, new."""
    text = json.dumps(to_jsonable([dict(key), column, old, new]), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _translate(exc: Exception, what: str, secrets: Any) -> SourceError:
    name = exc.__class__.__name__
    detail = redact(str(exc).strip().splitlines()[0] if str(exc).strip() else name, *secrets)
    transient = name in {
        "ServiceUnavailableError",
        "TooManyRequestsError",
        "WaitingForLockException",
        "CommitStateUnknownException",
    } or isinstance(exc, OSError | TimeoutError)
    return SourceError(f"Iceberg: cannot {what}: {detail}", transient=transient)


def _duckdb() -> tuple[Any, Any]:
    """The ``duckdb`` module and duckdb-engine's DB-API connection wrapper."""
    try:
        import duckdb
        from duckdb_engine import ConnectionWrapper
    except ImportError as exc:
        raise SourceError(
            "type: iceberg needs duckdb: pip install 'dq-agent[iceberg]'", transient=False
        ) from exc
    return duckdb, ConnectionWrapper


# The name the checks read the records by, in every DuckDB connection of a view.
TABLE = "records"
# The scanned Arrow table while it is screened (see ArrowView.load), the column numbering its
# records in scan order there, and a window function's value over them.
_SCANNED = "dq_agent_scanned"
_ORDINAL = "dq_agent_ordinal"
_WINDOW = "dq_agent_window"
# No extension is ever fetched: scanning Arrow needs none, and the machine may be offline.
_DUCKDB_CONFIG = {"autoinstall_known_extensions": False, "autoload_known_extensions": False}


class ArrowView:
    """An Arrow table as the ``records`` table of a private in-memory DuckDB database.

    DuckDB scans the Arrow buffers in place: nothing is copied unless some records must be
    left out or values nulled, as :meth:`load` says. A registered Arrow table is seen only by
    the DuckDB connection it was registered on, so every connection the engine's pool makes
    is a cursor of the one database (DuckDB's way to share a database between threads) with
    the table registered on it; timestamps with a time zone come back in UTC on each.
    """

    def __init__(self, label: str) -> None:
        duckdb, self._wrapper = _duckdb()
        self.label = label
        self._database = duckdb.connect(":memory:", config=_DUCKDB_CONFIG)
        self._arrow: Any = None
        # Nothing else reaches the data through this URL (Great Expectations included): it
        # lives in this process's memory alone.
        self.url = f"duckdb:///:memory:{label}"
        self.engine = sa.create_engine(self.url, creator=self._connect, poolclass=sa.pool.QueuePool)

    def _connect(self) -> Any:
        cursor = self._database.cursor()
        cursor.execute("SET TimeZone = 'UTC'")
        if self._arrow is not None:
            cursor.register(TABLE, self._arrow)
        return self._wrapper(cursor)

    def load(self, arrow: Any, primary_key: Sequence[str]) -> Relation:
        """``arrow`` as a relation keyed by ``primary_key``.

        Records are screened as every fetched source's are (:class:`FetchedCopy`): a float
        that is not finite, or a value that is not a single one (a list, a struct, bytes), is
        read as null; a record without a key, or with a key already read, is left out; each is
        listed in the relation's ``rejected``. Only when there is such a record are the rest
        copied into a DuckDB table; otherwise the checks read the Arrow table itself.
        """
        kinds = {name: _kind(arrow.schema.field(name).type) for name in arrow.column_names}
        columns = [
            FetchedColumn(name, _sql_type(arrow.schema.field(name).type))
            for name in arrow.column_names
        ]
        rejected: list[Rejected] = []
        self._database.register(_SCANNED, arrow)
        try:
            if self._flawed(kinds, primary_key):
                rejected = self._screen(arrow, columns, kinds, primary_key)
            else:
                self._arrow = arrow
        finally:
            self._database.unregister(_SCANNED)
        table = sa.Table(
            TABLE,
            sa.MetaData(),
            *[sa.Column(c.name, c.sql_type, primary_key=c.name in primary_key) for c in columns],
        )
        infos = {c.name: ColumnInfo(c.name, type_family(c.sql_type), c.sql_type) for c in columns}
        return Relation(
            self.engine,
            table,
            infos,
            tuple(primary_key),
            self.label,
            self.url,
            table=TABLE,
            rejected=tuple(rejected),
            frame=self.frame,
        )

    def frame(self) -> Any:
        """The records as a pandas DataFrame (Great Expectations reads them there)."""
        if self._arrow is not None:
            return self._arrow.to_pandas()
        return self._database.execute(f"SELECT * FROM {TABLE}").df()

    def _flawed(self, kinds: Mapping[str, str], primary_key: Sequence[str]) -> bool:
        """Whether some record has a value read as null, or a missing or repeated key."""
        wrong = [m for m in (_misfit_sql(n, k) for n, k in kinds.items()) if m is not None]
        wrong += [_missing_sql(k, kinds[k]) for k in primary_key]
        tests = []
        if wrong:
            tests.append(f"EXISTS (SELECT 1 FROM {_SCANNED} WHERE {_any(wrong)})")
        if primary_key:
            keys = ", ".join(map(_quoted, primary_key))
            tests.append(f"EXISTS (SELECT 1 FROM {_SCANNED} GROUP BY {keys} HAVING count(*) > 1)")
        if not tests:
            return False
        [(found,)] = self._database.execute(f"SELECT {' OR '.join(tests)}").fetchall()
        return bool(found)

    def _screen(
        self,
        arrow: Any,
        columns: Sequence[FetchedColumn],
        kinds: Mapping[str, str],
        primary_key: Sequence[str],
    ) -> list[Rejected]:
        """Copy the records that are kept into a DuckDB table, values that do not fit read
        as null; the rejections, in the order :class:`FetchedCopy` lists them."""
        import pyarrow as pa

        numbered = arrow.append_column(_ORDINAL, pa.array(range(arrow.num_rows), pa.int64()))
        self._database.register(_SCANNED, numbered)  # in place of the unnumbered one
        ordinal = _quoted(_ORDINAL)
        misfit = _any([m for m in (_misfit_sql(n, k) for n, k in kinds.items()) if m])
        missing = _any([_missing_sql(k, kinds[k]) for k in primary_key])
        keys = ", ".join(map(_quoted, primary_key))
        # Without a key no record repeats another.
        times = f"count(*) OVER (PARTITION BY {keys})" if keys else "1"
        nth = f"row_number() OVER (PARTITION BY {keys} ORDER BY {ordinal})" if keys else "1"
        # Only these records can be rejected: the others have keys of their own and fit.
        suspects = self._database.execute(
            f"SELECT {ordinal} FROM (SELECT *, {times} AS {_WINDOW} FROM {_SCANNED}) "
            f"WHERE ({missing}) OR ({misfit}) OR {_WINDOW} > 1 ORDER BY {ordinal}"
        ).fetchall()
        rows = arrow.take(pa.array([n for (n,) in suspects], pa.int64())).to_pylist()
        screened = [c for c in columns if kinds[c.name] != "plain" or c.name in primary_key]
        rejected = _rejections(screened, rows, primary_key)

        kept = ", ".join(_kept_sql(name, kind) for name, kind in kinds.items())
        self._database.execute(
            f"CREATE TABLE {TABLE} AS SELECT {kept} FROM "
            f"(SELECT *, {nth} AS {_WINDOW} FROM {_SCANNED} WHERE NOT ({missing})) "
            f"WHERE {_WINDOW} = 1 ORDER BY {ordinal}"
        )
        return rejected

    def close(self) -> None:
        self.engine.dispose()
        self._arrow = None
        with suppress(Exception):  # already closed
            self._database.close()


def _rejections(
    columns: Sequence[FetchedColumn], rows: Sequence[Mapping[str, Any]], primary_key: Sequence[str]
) -> list[Rejected]:
    """What :meth:`FetchedCopy.load` reports of ``rows`` (in scan order), in its words."""
    rejected: list[Rejected] = []
    for _kept in screened(columns, rows, primary_key, rejected):
        pass
    return rejected


def _kind(arrow_type: Any) -> str:
    """``float`` (NaN and infinities are read as null), ``unheld`` (a list, struct, map or
    bytes: not a single value, read as null) or ``plain``."""
    import pyarrow as pa

    if pa.types.is_floating(arrow_type):
        return "float"
    binary = (
        pa.types.is_binary(arrow_type)
        or pa.types.is_large_binary(arrow_type)
        or pa.types.is_fixed_size_binary(arrow_type)
        or pa.types.is_binary_view(arrow_type)
    )
    return "unheld" if binary or pa.types.is_nested(arrow_type) else "plain"


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _any(tests: Sequence[str]) -> str:
    return " OR ".join(f"({t})" for t in tests) or "false"


def _misfit_sql(name: str, kind: str) -> str | None:
    """DuckDB's test of a value of the column that is read as null, if any can be."""
    if kind == "float":
        return f"NOT isfinite({_quoted(name)})"
    if kind == "unheld":
        return f"{_quoted(name)} IS NOT NULL"
    return None


def _missing_sql(name: str, kind: str) -> str:
    """DuckDB's test of a key column without a value (or with one read as null)."""
    misfit = _misfit_sql(name, kind)
    return f"{_quoted(name)} IS NULL" + (f" OR {misfit}" if misfit else "")


def _kept_sql(name: str, kind: str) -> str:
    if kind == "float":
        return f"CASE WHEN isfinite({_quoted(name)}) THEN {_quoted(name)} END AS {_quoted(name)}"
    if kind == "unheld":
        return f"CAST(NULL AS VARCHAR) AS {_quoted(name)}"
    return _quoted(name)


class _Decimal(sa.Numeric[Decimal]):
    """A decimal column read as DuckDB hands it back: duckdb-engine would pass the value
    through a float, and lose digits past the fifteenth."""

    cache_ok = True

    def result_processor(self, dialect: sa.Dialect, coltype: object) -> None:
        return None


def _sql_type(arrow_type: Any) -> sa.types.TypeEngine[Any]:
    """The column type the checks see for an Arrow type."""
    import pyarrow as pa

    if pa.types.is_timestamp(arrow_type):
        # Iceberg's timestamptz is UTC in Arrow; its timestamp is wall-clock time, naive.
        return sa.DateTime(timezone=arrow_type.tz is not None)
    if pa.types.is_decimal(arrow_type):
        return _Decimal(arrow_type.precision, arrow_type.scale)
    kinds: Sequence[tuple[Any, sa.types.TypeEngine[Any]]] = (
        (pa.types.is_boolean, sa.Boolean()),
        (pa.types.is_integer, sa.BigInteger()),
        (pa.types.is_floating, sa.Float()),
        (pa.types.is_date, sa.Date()),
        (pa.types.is_time, sa.Time()),
    )
    for test, kind in kinds:
        if test(arrow_type):
            return kind
    return sa.String()
