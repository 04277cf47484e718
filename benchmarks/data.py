"""The generated ``bench_orders`` table, built inside each database and reused while valid.

Values follow from the row number alone, so SQLite and PostgreSQL hold the same data. It is
built to pass every check: no NULLs where checked, values inside their bounds, unique ids,
and ``updated_at`` spread over the 30 days up to the moment of generation.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa

from benchmarks.suite import DEFAULT_ROWS, POSTGRES_SCHEMA, STATUSES, TABLE, utc_naive

Log = Callable[[str], None]

COLUMNS = (
    "id",
    "customer_id",
    "email",
    "status",
    "amount",
    "quantity",
    "discount",
    "created_at",
    "updated_at",
)
# Reused data must leave this much room before the 26h freshness limit is reached.
REUSE_MAX_AGE = timedelta(hours=20)
SPREAD_S = 30 * 86400  # updated_at runs from 30 days before generation up to it


@dataclass(frozen=True)
class Dataset:
    """Where a backend's benchmark table lives."""

    backend: str  # "sqlite" or "postgresql"
    url: str  # SQLAlchemy URL of the database
    schema: str | None
    rows: int

    @property
    def table(self) -> str:
        """The table name as SQL, schema-qualified where there is a schema."""
        return f"{self.schema}.{TABLE}" if self.schema else TABLE


def postgres_schema(rows: int) -> str:
    """Each size has its own table: schema ``dq_bench`` at the default size, else ``dq_bench_N``."""
    return POSTGRES_SCHEMA if rows == DEFAULT_ROWS else f"{POSTGRES_SCHEMA}_{rows}"


def sqlite_path(data_dir: Path, rows: int) -> Path:
    """Each size has its own file: ``bench.sqlite`` at the default size, else ``bench-N.sqlite``."""
    name = "bench.sqlite" if rows == DEFAULT_ROWS else f"bench-{rows}.sqlite"
    return (data_dir / name).resolve()


class Unreachable(Exception):
    """The database cannot be connected to."""


def _values(timestamp: Callable[[str], str]) -> str:
    """The SELECT list computing one row from ``x`` (the id) and the ``:rows``/``:base`` params.

    ``timestamp`` turns an expression in Unix seconds into the backend's UTC timestamp.
    """
    status = "CASE " + " ".join(
        f"WHEN (x / 3) % 10 < {limit} THEN '{name}'"
        for limit, name in zip((1, 5, 9), STATUSES, strict=False)
    )
    status += f" ELSE '{STATUSES[-1]}' END"
    updated = f":base - ((:rows - x) * {SPREAD_S}) / :rows"
    return ",\n".join(
        [
            "x",
            "1 + (x * 7919) % 50000",
            "'customer' || ((x * 7919) % 50000) || '@example.com'",
            status,
            "ROUND(1 + ((x * 104729) % 99900) / 100.0, 2)",
            "1 + (x * 13) % 20",
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


def _reusable(url: str, schema: str | None, rows: int, log: Log) -> bool:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            columns = {c["name"] for c in sa.inspect(conn).get_columns(TABLE, schema=schema)}
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
    path = sqlite_path(data_dir, rows)
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
            "status TEXT, amount NUMERIC(12, 2), quantity INTEGER, discount NUMERIC(4, 2), "
            "created_at TIMESTAMP, updated_at TIMESTAMP)"
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


def prepare_postgres(url: str, rows: int, log: Log) -> Dataset:
    """The PostgreSQL benchmark table (``postgres_schema(rows)``), generated unless still valid."""
    schema = postgres_schema(rows)
    dataset = Dataset("postgresql", url, schema, rows)
    engine = sa.create_engine(url, connect_args={"connect_timeout": 5})
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except sa.exc.SQLAlchemyError as exc:
        raise Unreachable(str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]) from exc
    finally:
        engine.dispose()
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
                    "discount numeric(4, 2), created_at timestamp, updated_at timestamp)"
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
