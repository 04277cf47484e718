"""``type: iceberg`` — an Apache Iceberg table through pyiceberg, corrected on a branch.

Reading scans the table's current snapshot (main) into a private SQLite copy, which the
checks query like any fetched source. A correction is written to a branch
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
from typing import Any

import sqlalchemy as sa

from dq_agent.config.models import Connector, IcebergConnector, IcebergSourceSpec, SourceSpec
from dq_agent.errors import DqAgentError, SourceError
from dq_agent.redact import redact
from dq_agent.results import to_jsonable
from dq_agent.sources.base import Relation, WriteResult, same_value
from dq_agent.sources.fetched import FetchedColumn, FetchedCopy

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
        self._copies: list[FetchedCopy] = []

    # -- reading ------------------------------------------------------------------------------

    def open(self) -> Relation:
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
        """``table`` as of ``snapshot_id`` in a private copy (empty before the first one)."""
        if snapshot_id is None:
            arrow = table.schema().as_arrow().empty_table()
        else:
            scan = table.scan(selected_fields=tuple(self._wanted), snapshot_id=snapshot_id)
            arrow = self._call("read the table", scan.to_arrow)
        columns = [
            FetchedColumn(name, _sql_type(arrow.schema.field(name).type)) for name in self._wanted
        ]
        copy = FetchedCopy(self._spec.table)
        self._copies.append(copy)
        return copy.load(columns, arrow.select(self._wanted).to_pylist(), self._key)

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
        for copy in self._copies:
            copy.close()
        self._copies.clear()

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


def _sql_type(arrow_type: Any) -> sa.types.TypeEngine[Any]:
    """The column type of the private copy for an Arrow type."""
    import pyarrow as pa

    kinds: Sequence[tuple[Any, sa.types.TypeEngine[Any]]] = (
        (pa.types.is_boolean, sa.Boolean()),
        (pa.types.is_integer, sa.BigInteger()),
        (pa.types.is_floating, sa.Float()),
        (pa.types.is_decimal, sa.Numeric()),
        (pa.types.is_timestamp, sa.DateTime(timezone=True)),
        (pa.types.is_date, sa.Date()),
    )
    for test, kind in kinds:
        if test(arrow_type):
            return kind
    return sa.String()
