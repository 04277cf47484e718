"""``type: sql`` — any database SQLAlchemy can reach, read through one table or query."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from dq_agent.config.loader import resolve_sqlite_path
from dq_agent.config.models import Connector, SourceSpec, SqlConnector, SqlSourceSpec
from dq_agent.config.statements import FixStatement
from dq_agent.errors import SourceError
from dq_agent.redact import mask_url, redact, url_secrets
from dq_agent.sources.base import ColumnInfo, Relation, WriteResult, type_family
from dq_agent.sources.sqlrows import RowsChanged, current_rows, put_rows, run_statement

# The extra that brings each driver (or dialect) a URL may name but the core lacks.
_DRIVER_EXTRAS = {"psycopg": "postgres", "pymysql": "mysql", "duckdb": "duckdb"}
_DIALECT_EXTRAS = {
    "databricks": "spark",
    "snowflake": "warehouses",
    "bigquery": "warehouses",
    "redshift": "warehouses",
    "trino": "warehouses",
}


def create_engine(connector: SqlConnector, project_root: Path) -> sa.Engine:
    """An engine for ``connector``; refuses to create a SQLite or DuckDB file that is not
    there. A relative path to one is taken from the project directory.
    """
    url_text = resolve_sqlite_path(connector.url, project_root)
    try:
        url = sa.make_url(url_text)
    except (sa.exc.ArgumentError, ValueError) as exc:  # ValueError: e.g. a non-numeric port
        # The message quotes the URL it could not parse.
        raise SourceError(f"invalid database URL: {redact(str(exc))}", transient=False) from exc
    connect_args = dict(connector.connect_args)
    if url.get_backend_name() in ("sqlite", "duckdb"):
        # Both would create an empty database where a path is mistyped.
        database = url.database or ""
        in_file = database and database != ":memory:" and not database.startswith("file:")
        if in_file and not Path(database).exists():
            kind = "SQLite" if url.get_backend_name() == "sqlite" else "DuckDB"
            raise SourceError(f"{kind} database file not found: {database}", transient=False)
    elif url.get_backend_name() == "postgresql":
        connect_args.setdefault("connect_timeout", connector.connect_timeout)
    try:
        engine = sa.create_engine(url, connect_args=connect_args, pool_pre_ping=True)
    except (sa.exc.ArgumentError, ImportError) as exc:
        if isinstance(exc, ImportError):
            extra = _DRIVER_EXTRAS.get(url.get_driver_name())
        else:
            extra = _DIALECT_EXTRAS.get(url.get_backend_name())
        install = f": pip install 'dq-agent[{extra}]'" if extra else ""
        raise SourceError(
            f"cannot use database URL {mask_url(url)}: "
            f"{redact(str(exc), *url_secrets(url))}{install}",
            transient=False,
        ) from exc
    if url.get_backend_name() == "duckdb":
        _search_files_from(engine, project_root)
    return engine


def _search_files_from(engine: sa.Engine, folder: Path) -> None:
    """Files a DuckDB query reads (``read_parquet('data/*.parquet')``) are found from the
    project. Set on each connection rather than in the database's configuration, which
    DuckDB requires to be the same for every connection to one file."""
    path = str(folder.resolve()).replace("'", "''")

    def search(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.execute(f"SET file_search_path = '{path}'")

    sa.event.listen(engine, "connect", search)


class SqlSource:
    """Reads one table or query of a ``sql`` connector."""

    def __init__(self, engine: sa.Engine, spec: SqlSourceSpec, connector: SqlConnector) -> None:
        self._engine = engine
        self._spec = spec
        self._schema = spec.schema_ or connector.schema_
        # Great Expectations opens its own connection to the same database.
        self._url = engine.url.render_as_string(hide_password=False)
        self._relation: Relation | None = None

    def open(self) -> Relation:
        try:
            with self._engine.connect() as conn:
                self._relation = self.describe(conn)
                return self._relation
        except SourceError:
            raise
        except sa.exc.NoSuchTableError as exc:
            # The driver's own text quotes the name its own way (`orders` on MySQL).
            name = self._spec.table or str(exc)
            where = f"{self._schema}.{name}" if self._schema else name
            raise SourceError(
                f"table {where} not found in {mask_url(self._engine.url)}", transient=False
            ) from exc
        except sa.exc.SQLAlchemyError as exc:
            raise translate(exc, self._engine.url) from exc

    def close(self) -> None:
        """Nothing to release: the engine belongs to the run and is disposed with it."""

    def read(self, key: Mapping[str, Any], column: str) -> Any:
        relation = self._relation or self.open()
        table = relation.selectable
        where = [table.c[k] == v for k, v in key.items()]
        try:
            with self._engine.connect() as conn:
                return conn.execute(sa.select(table.c[column]).where(*where)).scalar_one_or_none()
        except sa.exc.SQLAlchemyError as exc:
            raise translate(exc, self._engine.url) from exc

    def write(
        self, key: Mapping[str, Any], column: str, expected_old: Any, new: Any
    ) -> WriteResult:
        """``UPDATE … WHERE key AND column = expected_old`` in a transaction of its own."""
        relation = self._writable()
        try:
            with self._engine.begin() as conn:
                return _compare_and_set(conn, relation, key, column, expected_old, new)
        except sa.exc.SQLAlchemyError as exc:
            raise translate(exc, self._engine.url) from exc

    @property
    def backend(self) -> str:
        """The database's SQLAlchemy backend name (``postgresql``, ``mysql``, ``sqlite``)."""
        return self._engine.dialect.name

    def rows(
        self, key: Sequence[str], keys: Sequence[Mapping[str, Any]]
    ) -> list[dict[str, Any] | None]:
        """The rows ``keys`` name right now, as images; None where there is none."""
        relation = self._writable()
        try:
            with self._engine.connect() as conn:
                return current_rows(conn, relation, key, keys)
        except sa.exc.SQLAlchemyError as exc:
            raise translate(exc, self._engine.url) from exc

    @contextmanager
    def branch(
        self, *, lock_timeout: timedelta, statement_timeout: timedelta
    ) -> Iterator[SqlBranch]:
        """A branch of the table: one transaction on one connection.

        What is written through it, and what checks read on its relation, nobody else sees
        until :meth:`SqlBranch.publish` commits; leaving the block unpublished rolls it back.
        Rows it changed stay locked until then, so waits are bounded by ``lock_timeout`` (for
        its own writes) and ``statement_timeout`` (for each check it runs), where the
        database has them (PostgreSQL, MariaDB/MySQL).
        """
        relation = self._writable()
        try:
            conn = self._engine.connect()
        except sa.exc.SQLAlchemyError as exc:
            raise translate(exc, self._engine.url) from exc
        transaction: sa.RootTransaction | None = None
        session_set = False
        try:
            if conn.dialect.name == "mysql":
                # Session settings, so this connection is not handed back to the pool after.
                session_set = True
                _bound_mysql_waits(conn, lock_timeout, statement_timeout)
            transaction = conn.begin()
            if conn.dialect.name == "postgresql":  # for this transaction only
                for name, value in (
                    ("lock_timeout", lock_timeout),
                    ("statement_timeout", statement_timeout),
                ):
                    conn.execute(sa.select(sa.func.set_config(name, _milliseconds(value), True)))
            yield SqlBranch(
                conn, dataclasses.replace(relation, bound=conn), self._engine.url, self._spec
            )
        except sa.exc.SQLAlchemyError as exc:
            raise translate(exc, self._engine.url) from exc
        finally:
            try:
                if transaction is not None and transaction.is_active:  # not published
                    transaction.rollback()
            finally:
                if session_set:
                    conn.invalidate()
                conn.close()

    def describe(self, conn: sa.Connection) -> Relation:
        """The table's or query's columns and key, read through ``conn``."""
        if self._spec.table is not None:
            return self._open_table(conn, self._spec.table)
        assert self._spec.query is not None
        return self._open_query(conn, self._spec.query)

    def _writable(self) -> Relation:
        if self._spec.table is None:
            raise SourceError("cannot write through a query source: name a table", transient=False)
        return self._relation or self.open()

    def _open_table(self, conn: sa.Connection, name: str) -> Relation:
        # Columns and primary key only: full reflection (indexes, foreign keys, comments)
        # costs a dozen catalog queries per suite that nothing here uses.
        described, primary_key = describe_table(conn, name, self._schema)
        table = sa.Table(
            name,
            sa.MetaData(),
            *[sa.Column(column, sql_type) for column, sql_type in described],
            schema=self._schema,
        )
        columns = {c.name: ColumnInfo(c.name, type_family(c.type), c.type) for c in table.columns}
        label = f"{self._schema}.{name}" if self._schema else name
        return Relation(
            self._engine,
            table,
            columns,
            primary_key,
            label,
            self._url,
            table=name,
            schema=self._schema,
        )

    def _open_query(self, conn: sa.Connection, query: str) -> Relation:
        described: list[tuple[str, sa.types.TypeEngine[Any] | None]]
        if conn.dialect.name == "duckdb":
            # DuckDB describes any query (a Parquet or CSV scan too) without running it.
            described = [
                (str(name), _duckdb_type(conn, str(data_type)))
                for name, data_type, *_ in conn.exec_driver_sql(f"DESCRIBE {query}")
            ]
        else:
            # Elsewhere column types of an arbitrary query are not reflected: the schema
            # check says so.
            probe = sa.text(f"SELECT * FROM ({query}) AS dq_probe WHERE 1 = 0")
            names = conn.execute(probe).keys()
            described = [(name, None) for name in names]
        sub = sa.text(query).columns(*[sa.column(n, t) for n, t in described]).subquery("dq_source")
        columns = {n: ColumnInfo(n, type_family(t), t) for n, t in described}
        return Relation(self._engine, sub, columns, (), "query", self._url, query=query)


class SqlBranch:
    """Changes to a table inside one open transaction, and the relation that sees them."""

    def __init__(
        self, connection: sa.Connection, relation: Relation, url: sa.URL, spec: SqlSourceSpec
    ) -> None:
        self._connection = connection
        self._relation = relation
        self._url = url
        self._spec = spec

    @property
    def relation(self) -> Relation:
        """The table as the transaction sees it."""
        return self._relation

    def write(
        self, key: Mapping[str, Any], column: str, expected_old: Any, new: Any
    ) -> WriteResult:
        """Compare-and-set on the branch; nobody sees it before :meth:`publish`."""
        try:
            return _compare_and_set(self._connection, self.relation, key, column, expected_old, new)
        except sa.exc.SQLAlchemyError as exc:
            raise translate(exc, self._url) from exc

    def run_fix(
        self,
        statement: FixStatement,
        sql: str,
        params: Mapping[str, Any],
        key: Sequence[str],
        max_rows: int,
    ) -> RowsChanged:
        """Run a runbook fix's statement on the branch; the rows it touched, before and after."""
        try:
            return run_statement(
                self._connection, self.relation, statement, sql, params, key, max_rows
            )
        except sa.exc.SQLAlchemyError as exc:
            raise translate(exc, self._url) from exc

    def put_rows(
        self,
        key: Sequence[str],
        expected: Sequence[Mapping[str, Any]],
        target: Sequence[Mapping[str, Any]],
    ) -> WriteResult:
        """Rows holding ``expected`` made to hold ``target`` on the branch, compare-and-set."""
        try:
            return put_rows(self._connection, self.relation, key, expected, target)
        except sa.exc.SQLAlchemyError as exc:
            raise translate(exc, self._url) from exc

    def publish(self) -> str:
        """Commit: every change of the branch becomes visible at once, or none does."""
        try:
            self._connection.commit()
        except sa.exc.SQLAlchemyError as exc:
            raise translate(exc, self._url) from exc
        return "the transaction committed"

    def keep(self) -> str | None:
        """A transaction cannot outlive its connection: nothing is kept."""
        return None

    def relation_of(self, spec: SourceSpec, connector: Connector) -> Relation | None:
        """A table or query of the same connector, read inside the transaction: a view over
        the changed table shows the change."""
        if not isinstance(spec, SqlSourceSpec) or not isinstance(connector, SqlConnector):
            return None
        if spec.connector != self._spec.connector:
            return None
        other = SqlSource(self._connection.engine, spec, connector)
        try:
            relation = other.describe(self._connection)
        except sa.exc.SQLAlchemyError as exc:
            raise translate(exc, self._url) from exc
        return dataclasses.replace(relation, bound=self._connection)


def _compare_and_set(
    conn: sa.Connection,
    relation: Relation,
    key: Mapping[str, Any],
    column: str,
    expected_old: Any,
    new: Any,
) -> WriteResult:
    """Set ``column`` of the one row ``key`` names to ``new`` if it still holds ``expected_old``.

    A key that names several rows raises, so the caller's transaction rolls back: nothing is
    half-applied.
    """
    unknown = [c for c in (*key, column) if c not in relation.columns]
    if unknown:
        raise SourceError(
            f"unknown column(s) {', '.join(unknown)} in {relation.label}", transient=False
        )
    table = relation.selectable
    assert isinstance(table, sa.Table)
    where = [table.c[k] == v for k, v in key.items()]
    current = table.c[column]
    unchanged = current.is_(None) if expected_old is None else current == expected_old
    updated = conn.execute(sa.update(table).where(*where, unchanged).values({column: new})).rowcount
    if updated > 1:
        raise SourceError(
            f"{dict(key)} names {updated} rows of {relation.label}, not one: nothing written",
            transient=False,
        )
    after = conn.execute(sa.select(current).where(*where)).scalar_one_or_none()
    if updated == 1:
        return WriteResult("written", expected_old, after)
    return WriteResult("conflict", after, after, f"{column} is {after!r}, not {expected_old!r}")


# DuckDB's type names that SQLAlchemy's PostgreSQL-derived dialect does not know by name.
_DUCKDB_TYPES: dict[str, sa.types.TypeEngine[Any]] = {
    "double": sa.Float(),
    "float": sa.Float(),
    "real": sa.Float(),
    "hugeint": sa.BigInteger(),
    "timestamp with time zone": sa.DateTime(timezone=True),
    "blob": sa.LargeBinary(),
}
_DECIMAL = re.compile(r"^decimal\((\d+),\s*(\d+)\)$")


def describe_table(
    conn: sa.Connection, name: str, schema: str | None
) -> tuple[list[tuple[str, sa.types.TypeEngine[Any]]], tuple[str, ...]]:
    """A table's columns (name, type) and primary key; raises ``NoSuchTableError``."""
    if conn.dialect.name == "duckdb":
        described, primary_key = _describe_duckdb(conn, name, schema)
    else:
        inspector = sa.inspect(conn)
        described = [(c["name"], c["type"]) for c in inspector.get_columns(name, schema)]
        pk = inspector.get_pk_constraint(name, schema=schema)
        primary_key = tuple(pk.get("constrained_columns") or ())
    if not described:
        raise sa.exc.NoSuchTableError(name)
    return described, primary_key


def _duckdb_type(conn: sa.Connection, data_type: str) -> sa.types.TypeEngine[Any]:
    """The SQLAlchemy type of a DuckDB type name (``DECIMAL(14,2)``, ``VARCHAR``, …)."""
    text = data_type.lower()
    decimal = _DECIMAL.match(text)
    if decimal:
        return sa.Numeric(int(decimal[1]), int(decimal[2]))
    if text in _DUCKDB_TYPES:
        return _DUCKDB_TYPES[text]
    known = conn.dialect.ischema_names  # type: ignore[attr-defined]
    return known[text]() if text in known else sa.types.NullType()


def _describe_duckdb(
    conn: sa.Connection, name: str, schema: str | None
) -> tuple[list[tuple[str, sa.types.TypeEngine[Any]]], tuple[str, ...]]:
    """A DuckDB table's columns and primary key from its own catalog (SQLAlchemy's
    PostgreSQL reflection queries catalog tables DuckDB does not have)."""
    where = "table_name = :name AND table_schema = " + (":schema" if schema else "current_schema()")
    params = {"name": name, "schema": schema} if schema else {"name": name}
    rows = conn.execute(
        sa.text(
            "SELECT column_name, data_type FROM information_schema.columns "
            f"WHERE {where} ORDER BY ordinal_position"
        ),
        params,
    ).all()
    described = [(str(column), _duckdb_type(conn, str(data_type))) for column, data_type in rows]
    keys = conn.execute(
        sa.text(
            "SELECT constraint_column_names FROM duckdb_constraints() "
            "WHERE table_name = :name AND constraint_type = 'PRIMARY KEY'"
            + (" AND schema_name = :schema" if schema else "")
        ),
        params,
    ).first()
    return described, tuple(keys[0]) if keys else ()


# PostgreSQL's lock_not_available and query_canceled: a lock_timeout or statement_timeout ran
# out (a row someone holds, a check too slow), not an unreachable database.
_GAVE_UP_WAITING = {"55P03", "57014"}
# MySQL/MariaDB: lock wait timeout exceeded; MariaDB's max_statement_time and MySQL's
# max_execution_time exceeded.
_MYSQL_GAVE_UP = {1205, 1969, 3024}


def _bound_mysql_waits(
    conn: sa.Connection, lock_timeout: timedelta, statement_timeout: timedelta
) -> None:
    """InnoDB's row-lock wait (whole seconds, at least one) and the statement time limit:
    ``max_statement_time`` (seconds) on MariaDB, ``max_execution_time`` (ms) on MySQL."""
    lock_s = max(1, round(lock_timeout.total_seconds()))
    conn.exec_driver_sql(f"SET SESSION innodb_lock_wait_timeout = {lock_s:d}")
    if getattr(conn.dialect, "is_mariadb", False):
        seconds = max(statement_timeout.total_seconds(), 0.001)
        conn.exec_driver_sql(f"SET SESSION max_statement_time = {seconds:.3f}")
    else:
        milliseconds = max(1, int(statement_timeout.total_seconds() * 1000))
        conn.exec_driver_sql(f"SET SESSION max_execution_time = {milliseconds:d}")
    conn.commit()  # SQLAlchemy began a transaction for the SETs; the branch begins its own


def _milliseconds(value: timedelta) -> str:
    return f"{int(value.total_seconds() * 1000)}ms"


def reach(engine: sa.Engine) -> None:
    """Connect once, so that a database that does not answer is told apart from a table
    that is not there; raises :class:`SourceError` saying why it does not."""
    try:
        with engine.connect():
            pass
    except sa.exc.SQLAlchemyError as exc:
        raise translate(exc, engine.url) from exc


def translate(exc: sa.exc.SQLAlchemyError, url: sa.URL) -> SourceError:
    """A database error as our own, saying whether trying again may help."""
    detail = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
    # Drivers may echo the connection string, or the password alone.
    detail = redact(detail, *url_secrets(url))
    orig = getattr(exc, "orig", None)
    mysql_code = orig.args[0] if isinstance(orig, Exception) and orig.args else None
    if getattr(orig, "sqlstate", None) in _GAVE_UP_WAITING or mysql_code in _MYSQL_GAVE_UP:
        return SourceError(f"gave up waiting on {mask_url(url)}: {detail}", transient=True)
    if url.get_backend_name() == "sqlite" and detail.startswith(
        ("no such table", "no such column")
    ):
        # SQLite reports a query's mistakes as OperationalError too: no retry mends those.
        return SourceError(f"query failed on {mask_url(url)}: {detail}", transient=False)
    if isinstance(exc, sa.exc.OperationalError | sa.exc.InterfaceError | sa.exc.TimeoutError):
        # Connection refused, timeouts and dropped connections usually pass; the daemon retries.
        return SourceError(f"cannot reach {mask_url(url)}: {detail}", transient=True)
    return SourceError(f"query failed on {mask_url(url)}: {detail}", transient=False)
