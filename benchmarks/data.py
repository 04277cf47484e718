"""The generated ``bench_orders`` table, built inside each database and reused while valid.

Values follow from the row number alone, so SQLite, PostgreSQL, DuckDB and MariaDB hold the
same data (each database computes it with one ``INSERT … SELECT`` over a row-number series);
Spark reads DuckDB's table written out as a Parquet file.
It is built to pass every check: no NULLs where checked, values inside their bounds, unique
ids, and ``updated_at`` spread over the 30 days up to the moment of generation.

``amount`` is ``quantity * unit_price`` exactly, but for a few typing slips (ten times the
amount, one row in 3,333,331: three in 10,000,000, none below 3,333,331 rows) for the
``fat_finger`` check to find; they are positive amounts like any other, so every other check
passes.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa

from benchmarks.suite import (
    DEFAULT_ROWS,
    POSTGRES_SCHEMA,
    STATUSES,
    TABLE,
    spark_table,
    utc_naive,
)

Log = Callable[[str], None]

COLUMNS = (
    "id",
    "customer_id",
    "email",
    "status",
    "amount",
    "quantity",
    "unit_price",
    "discount",
    "created_at",
    "updated_at",
)
# Reused data must leave this much room before the 26h freshness limit is reached.
REUSE_MAX_AGE = timedelta(hours=20)
SPREAD_S = 30 * 86400  # updated_at runs from 30 days before generation up to it
SLIP_EVERY = 3_333_331  # the rows whose amount is typed ten times too large: x % SLIP_EVERY = 0


@dataclass(frozen=True)
class Dataset:
    """Where a backend's benchmark table lives."""

    backend: str  # "sqlite", "postgresql", "duckdb", "mariadb" or "spark"
    url: str  # SQLAlchemy URL of the database; on spark, the Parquet file's path
    schema: str | None
    rows: int

    @property
    def table(self) -> str:
        """The table as SQL, schema-qualified where there is a schema (Spark: the file)."""
        if self.backend == "spark":
            return spark_table(self.url)
        return f"{self.schema}.{TABLE}" if self.schema else TABLE


def bench_schema(rows: int) -> str:
    """Each size has its own table: schema ``dq_bench`` at the default size, else ``dq_bench_N``
    (a PostgreSQL schema; on MariaDB a schema is a database of its own)."""
    return POSTGRES_SCHEMA if rows == DEFAULT_ROWS else f"{POSTGRES_SCHEMA}_{rows}"


def bench_file(data_dir: Path, rows: int, suffix: str) -> Path:
    """Each size has its own file: ``bench.sqlite`` at the default size, else ``bench-N.sqlite``
    (``suffix`` ``.duckdb`` or ``.parquet``: the same names for DuckDB and Spark)."""
    name = "bench" if rows == DEFAULT_ROWS else f"bench-{rows}"
    return (data_dir / f"{name}{suffix}").resolve()


class Unreachable(Exception):
    """The database cannot be connected to."""


def _concat(parts: Sequence[str]) -> str:
    return " || ".join(parts)


def _values(
    timestamp: Callable[[str], str],
    div: str = "/",
    concat: Callable[[Sequence[str]], str] = _concat,
) -> str:
    """The SELECT list computing one row from ``x`` (the id) and the ``:rows``/``:base`` params.

    ``timestamp`` turns an expression in Unix seconds into the backend's UTC timestamp; ``div``
    is its integer division (``/`` of two integers gives a fraction on DuckDB and MariaDB) and
    ``concat`` its string concatenation (``||`` is OR on MariaDB).
    """
    status = "CASE " + " ".join(
        f"WHEN (x {div} 3) % 10 < {limit} THEN '{name}'"
        for limit, name in zip((1, 5, 9), STATUSES, strict=False)
    )
    status += f" ELSE '{STATUSES[-1]}' END"
    updated = f":base - ((:rows - x) * {SPREAD_S}) {div} :rows"
    quantity = "1 + (x * 13) % 20"
    unit_price = "ROUND(1 + ((x * 104729) % 99900) / 100.0, 2)"
    # Rounded to cents: exact already where numbers are decimals, and on SQLite (floats) the
    # same double as the literal amount would be.
    slip = f"CASE WHEN x % {SLIP_EVERY} = 0 THEN 10 ELSE 1 END"
    amount = f"ROUND(({quantity}) * {unit_price} * {slip}, 2)"
    return ",\n".join(
        [
            "x",
            "1 + (x * 7919) % 50000",
            concat(["'customer'", "((x * 7919) % 50000)", "'@example.com'"]),
            status,
            amount,
            quantity,
            unit_price,
            "CASE WHEN x % 10 = 0 THEN NULL ELSE ((x * 17) % 51) / 100.0 END",
            timestamp(f"{updated} - ((x * 11) % 30) * 86400"),
            timestamp(updated),
        ]
    )


def _stale_reason(conn: sa.Connection, table: str, rows: int) -> str | None:
    """Why the existing table cannot be reused, or None if it can."""
    count, newest = conn.execute(sa.text(f"SELECT COUNT(*), MAX(updated_at) FROM {table}")).one()
    if count != rows:
        return f"it has {count:,} rows, not {rows:,}"
    if isinstance(newest, str):
        newest = datetime.fromisoformat(newest)
    if newest is None or utc_naive(datetime.now(UTC)) - newest > REUSE_MAX_AGE:
        return f"its newest updated_at ({newest}) is too old for the freshness check"
    return None


def _columns(conn: sa.Connection, schema: str | None) -> set[str]:
    """The benchmark table's column names; NoSuchTableError when it is not there."""
    if conn.dialect.name == "duckdb":
        # duckdb-engine's reflection queries PostgreSQL catalog tables DuckDB does not have.
        names = conn.execute(
            sa.text("SELECT column_name FROM information_schema.columns WHERE table_name = :t"),
            {"t": TABLE},
        ).scalars()
        columns = {str(name) for name in names}
        if not columns:
            raise sa.exc.NoSuchTableError(TABLE)
        return columns
    return {c["name"] for c in sa.inspect(conn).get_columns(TABLE, schema=schema)}


def _reusable(url: str, schema: str | None, rows: int, log: Log) -> bool:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            columns = _columns(conn, schema)
            if columns != set(COLUMNS):
                log(f"  regenerating: columns are {sorted(columns)}")
                return False
            table = f"{schema}.{TABLE}" if schema else TABLE
            reason = _stale_reason(conn, table, rows)
    except sa.exc.NoSuchTableError:
        return False
    finally:
        engine.dispose()
    if reason is not None:
        log(f"  regenerating: {reason}")
        return False
    return True


def prepare_sqlite(data_dir: Path, rows: int, log: Log) -> Dataset:
    """The SQLite benchmark file, generated unless a valid one is already there."""
    path = bench_file(data_dir, rows, ".sqlite")
    dataset = Dataset("sqlite", f"sqlite:///{path}", None, rows)
    if path.exists() and _reusable(dataset.url, None, rows, log):
        log(f"sqlite: reusing {rows:,} rows in {path}")
        return dataset
    log(f"sqlite: generating {rows:,} rows in {path} ...")
    started = time.perf_counter()
    data_dir.mkdir(parents=True, exist_ok=True)
    building = path.with_suffix(".building")
    building.unlink(missing_ok=True)
    conn = sqlite3.connect(building, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode = OFF")
        conn.execute("PRAGMA synchronous = OFF")
        conn.execute(
            f"CREATE TABLE {TABLE} (id INTEGER PRIMARY KEY, customer_id INTEGER, email TEXT, "
            "status TEXT, amount NUMERIC(12, 2), quantity INTEGER, unit_price NUMERIC(12, 2), "
            "discount NUMERIC(4, 2), created_at TIMESTAMP, updated_at TIMESTAMP)"
        )
        values = _values(lambda seconds: f"datetime({seconds}, 'unixepoch')")
        conn.execute("BEGIN")
        conn.execute(
            f"INSERT INTO {TABLE} ({', '.join(COLUMNS)}) "
            "WITH RECURSIVE seq(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM seq WHERE x < :rows) "
            f"SELECT {values} FROM seq",
            {"rows": rows, "base": int(time.time())},
        )
        conn.execute("COMMIT")
        conn.execute("ANALYZE")
    finally:
        conn.close()
    os.replace(building, path)
    log(f"sqlite: generated in {time.perf_counter() - started:.1f}s")
    return dataset


def _require_reachable(url: str) -> None:
    """Raise Unreachable unless the server at ``url`` answers within 5 seconds."""
    engine = sa.create_engine(url, connect_args={"connect_timeout": 5})
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except sa.exc.SQLAlchemyError as exc:
        raise Unreachable(str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]) from exc
    finally:
        engine.dispose()


def prepare_postgres(url: str, rows: int, log: Log) -> Dataset:
    """The PostgreSQL benchmark table (``bench_schema(rows)``), generated unless still valid."""
    schema = bench_schema(rows)
    dataset = Dataset("postgresql", url, schema, rows)
    _require_reachable(url)
    if _reusable(url, schema, rows, log):
        log(f"postgresql: reusing {rows:,} rows in {dataset.table}")
        return dataset
    log(f"postgresql: generating {rows:,} rows in {dataset.table} ...")
    started = time.perf_counter()
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text(f"CREATE SCHEMA IF NOT EXISTS {schema}"))
            conn.execute(sa.text(f"DROP TABLE IF EXISTS {dataset.table}"))
            conn.execute(
                sa.text(
                    f"CREATE TABLE {dataset.table} (id integer NOT NULL, customer_id integer, "
                    "email text, status text, amount numeric(12, 2), quantity integer, "
                    "unit_price numeric(12, 2), discount numeric(4, 2), created_at timestamp, "
                    "updated_at timestamp)"
                )
            )
            values = _values(lambda seconds: f"(to_timestamp({seconds}) AT TIME ZONE 'UTC')")
            conn.execute(
                sa.text(
                    f"INSERT INTO {dataset.table} ({', '.join(COLUMNS)}) "
                    f"SELECT {values} FROM generate_series(1::bigint, :rows) AS x"
                ),
                {"rows": rows, "base": int(time.time())},
            )
            conn.execute(sa.text(f"ALTER TABLE {dataset.table} ADD PRIMARY KEY (id)"))
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(sa.text(f"VACUUM ANALYZE {dataset.table}"))
    finally:
        engine.dispose()
    log(f"postgresql: generated in {time.perf_counter() - started:.1f}s")
    return dataset


def prepare_duckdb(data_dir: Path, rows: int, log: Log) -> Dataset:
    """The DuckDB benchmark file (``bench.duckdb`` or ``bench-N.duckdb``), generated unless a
    valid one is already there. DuckDB computes the rows itself from ``range()``, in parallel:
    10,000,000 take about 10 s on two cores."""
    path = bench_file(data_dir, rows, ".duckdb")
    dataset = Dataset("duckdb", f"duckdb:///{path}", None, rows)
    if path.exists() and _reusable(dataset.url, None, rows, log):
        log(f"duckdb: reusing {rows:,} rows in {path}")
        return dataset
    log(f"duckdb: generating {rows:,} rows in {path} ...")
    started = time.perf_counter()
    data_dir.mkdir(parents=True, exist_ok=True)
    building = path.with_name(f"{path.name}.building")
    for stale in (building, building.with_name(f"{building.name}.wal")):  # an aborted build
        stale.unlink(missing_ok=True)
    engine = sa.create_engine(f"duckdb:///{building}")
    try:
        with engine.begin() as conn:
            conn.execute(
                sa.text(
                    f"CREATE TABLE {TABLE} (id INTEGER NOT NULL, customer_id INTEGER, "
                    "email VARCHAR, status VARCHAR, amount DECIMAL(12, 2), quantity INTEGER, "
                    "unit_price DECIMAL(12, 2), discount DECIMAL(4, 2), created_at TIMESTAMP, "
                    "updated_at TIMESTAMP)"
                )
            )
            # make_timestamp(microseconds) is naive UTC whatever the session's TimeZone.
            values = _values(lambda seconds: f"make_timestamp(({seconds}) * 1000000)", div="//")
            conn.execute(
                sa.text(
                    f"INSERT INTO {TABLE} ({', '.join(COLUMNS)}) "
                    f"SELECT {values} FROM range(1, :rows + 1) AS r(x)"
                ),
                {"rows": rows, "base": int(time.time())},
            )
            # Added after the load, as on PostgreSQL: faster than maintaining it row by row.
            conn.execute(sa.text(f"ALTER TABLE {TABLE} ADD PRIMARY KEY (id)"))
        with engine.connect() as conn:
            conn.execute(sa.text("CHECKPOINT"))
    finally:
        engine.dispose()
    os.replace(building, path)
    log(f"duckdb: generated in {time.perf_counter() - started:.1f}s")
    return dataset


def _parquet_stale_reason(path: Path, rows: int) -> str | None:
    """Why the Parquet file at ``path`` cannot be reused (DuckDB reads it), or None if it can."""
    source = "read_parquet('{}')".format(str(path).replace("'", "''"))
    engine = sa.create_engine("duckdb:///:memory:")
    try:
        with engine.connect() as conn:
            described = conn.execute(sa.text(f"DESCRIBE SELECT * FROM {source}")).all()
            columns = {str(row[0]) for row in described}
            if columns != set(COLUMNS):
                return f"its columns are {sorted(columns)}"
            return _stale_reason(conn, source, rows)
    finally:
        engine.dispose()


def prepare_spark(data_dir: Path, rows: int, log: Log) -> Dataset:
    """The Parquet file Spark reads (``bench.parquet`` or ``bench-N.parquet``): DuckDB's table
    (``prepare_duckdb``) written out with ``COPY … TO``, unless a valid file is already there.
    """
    path = bench_file(data_dir, rows, ".parquet")
    dataset = Dataset("spark", str(path), None, rows)
    if path.exists():
        reason = _parquet_stale_reason(path, rows)
        if reason is None:
            log(f"spark: reusing {rows:,} rows in {path}")
            return dataset
        log(f"  rewriting: {reason}")
    source = prepare_duckdb(data_dir, rows, log)
    log(f"spark: writing {rows:,} rows to {path} ...")
    started = time.perf_counter()
    building = path.with_name(f"{path.name}.building")
    building.unlink(missing_ok=True)
    target = str(building).replace("'", "''")
    engine = sa.create_engine(source.url)
    try:
        with engine.connect() as conn:
            conn.execute(sa.text(f"COPY {TABLE} TO '{target}' (FORMAT parquet)"))
    finally:
        engine.dispose()
    os.replace(building, path)
    log(f"spark: written in {time.perf_counter() - started:.1f}s")
    return dataset


def _mysql_numbers(rows: int) -> str:
    """A derived table of ``x`` from 1 to at least ``rows``: a cross join of digit tables
    (MySQL has no generate_series, and MariaDB's SEQUENCE engine is not in MySQL)."""
    digits = "(SELECT 0 AS d " + " ".join(f"UNION ALL SELECT {d}" for d in range(1, 10)) + ")"
    places = len(str(max(rows - 1, 1)))
    number = " + ".join(f"d{i}.d * {10**i}" for i in range(places))
    joined = ", ".join(f"{digits} AS d{i}" for i in range(places))
    return f"(SELECT 1 + {number} AS x FROM {joined})"


def prepare_mariadb(url: str, rows: int, log: Log) -> Dataset:
    """The MariaDB (or MySQL) benchmark table, generated unless still valid; in database
    ``bench_schema(rows)`` beside the URL's own, which the URL's user must be able to create.

    InnoDB writes about 100,000 rows a second here, so 1,000,000 rows (the default size) take
    about 10 s to generate; 10,000,000 should take a few minutes (not measured).
    """
    schema = bench_schema(rows)
    dataset = Dataset("mariadb", url, schema, rows)
    _require_reachable(url)
    if _reusable(url, schema, rows, log):
        log(f"mariadb: reusing {rows:,} rows in {dataset.table}")
        return dataset
    log(f"mariadb: generating {rows:,} rows in {dataset.table} ...")
    started = time.perf_counter()
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text(f"CREATE DATABASE IF NOT EXISTS {schema}"))
            conn.execute(sa.text(f"DROP TABLE IF EXISTS {dataset.table}"))
            # The primary key from the start: InnoDB stores rows in its order anyway.
            conn.execute(
                sa.text(
                    f"CREATE TABLE {dataset.table} (id INT NOT NULL PRIMARY KEY, "
                    "customer_id INT, email VARCHAR(64), status VARCHAR(16), "
                    "amount DECIMAL(12, 2), quantity INT, unit_price DECIMAL(12, 2), "
                    "discount DECIMAL(4, 2), created_at DATETIME, updated_at DATETIME) "
                    "ENGINE = InnoDB"
                )
            )
            values = _values(
                # Not FROM_UNIXTIME: it answers in the session's time zone.
                lambda seconds: f"TIMESTAMPADD(SECOND, {seconds}, '1970-01-01 00:00:00')",
                div="DIV",
                concat=lambda parts: f"CONCAT({', '.join(parts)})",
            )
            conn.execute(
                sa.text(
                    f"INSERT INTO {dataset.table} ({', '.join(COLUMNS)}) "
                    f"SELECT {values} FROM {_mysql_numbers(rows)} AS n "
                    "WHERE x <= :rows ORDER BY x"
                ),
                {"rows": rows, "base": int(time.time())},
            )
        with engine.connect() as conn:
            conn.execute(sa.text(f"ANALYZE TABLE {dataset.table}")).all()
    finally:
        engine.dispose()
    log(f"mariadb: generated in {time.perf_counter() - started:.1f}s")
    return dataset
