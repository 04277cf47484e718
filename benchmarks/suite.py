"""The benchmark's ten checks, defined once and rendered for each of the four tools.

Every tool names its checks the same way, so their outcomes can be compared check by check.
dq-agent's project can also carry an eleventh, ``fat_finger`` (``FAT_FINGER``), to measure
what that check adds to the suite.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy.engine import make_url

TABLE = "bench_orders"
POSTGRES_SCHEMA = "dq_bench"
DEFAULT_ROWS = 1_000_000
STATUSES = ("new", "paid", "shipped", "cancelled")
NOT_NULL = ("customer_id", "email", "created_at")
BETWEEN: tuple[tuple[str, float, float], ...] = (("quantity", 1, 100), ("discount", 0, 0.5))
FRESHNESS_COLUMN = "updated_at"
MAX_AGE = timedelta(hours=26)
# Every Spark session of the benchmark (dq-agent's connector, the hand-written query's, GX's):
# a local one on every core, no web UI or console progress bars, one shuffle partition a core
# (the default 200 would be 200 tasks for a few hundred bytes), timestamps shown in UTC, and
# its (empty) warehouse directory in the temporary directory, not in the working directory.
SPARK_MASTER = "local[*]"
SPARK_CONF = {
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.shuffle.partitions": str(os.cpu_count() or 2),
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.warehouse.dir": os.path.join(tempfile.gettempdir(), "dq-bench-spark-warehouse"),
}
# The check whose cost ``run.py --fat-finger`` measures: dq-agent only (GX and Soda have no
# such check). A warning, not a failure: the table holds a few slips for it to find.
FAT_FINGER_CHECK = "fat_finger"
FAT_FINGER: dict[str, Any] = {
    "name": FAT_FINGER_CHECK,
    "column": "amount",
    "witness": "quantity * unit_price",
    "auto_correct": True,
    "severity": "warn",
    "peers": {"group_by": ["status"]},
}

# One expectation per check, in GX's own terms; dq-agent runs them under the same names.
ColumnCheck = tuple[str, str, dict[str, Any]]


def column_checks() -> list[ColumnCheck]:
    """The eight column-level checks as (name, expectation, arguments)."""
    checks: list[ColumnCheck] = [
        (f"not_null({c})", "expect_column_values_to_not_be_null", {"column": c}) for c in NOT_NULL
    ]
    checks += [
        (
            f"between({c})",
            "expect_column_values_to_be_between",
            {"column": c, "min_value": low, "max_value": high},
        )
        for c, low, high in BETWEEN
    ]
    checks.append(("unique(id)", "expect_column_values_to_be_unique", {"column": "id"}))
    checks.append(
        (
            "in_set(status)",
            "expect_column_values_to_be_in_set",
            {"column": "status", "value_set": list(STATUSES)},
        )
    )
    checks.append(
        (
            "positive(amount)",
            "expect_column_values_to_be_between",
            {"column": "amount", "min_value": 0, "strict_min": True},
        )
    )
    return checks


def check_names() -> list[str]:
    return ["row_count", "freshness", *(name for name, _, _ in column_checks())]


def utc_naive(moment: datetime) -> datetime:
    """``moment`` in UTC without a timezone: how the table stores its timestamps."""
    return moment.astimezone(UTC).replace(tzinfo=None)


def gx_checks(now: datetime) -> list[ColumnCheck]:
    """All ten checks as GX expectations; freshness becomes a lower bound on the newest value."""
    oldest_fresh = utc_naive(now - MAX_AGE)
    return [
        ("row_count", "expect_table_row_count_to_be_between", {"min_value": 1}),
        (
            "freshness",
            "expect_column_max_to_be_between",
            {"column": FRESHNESS_COLUMN, "min_value": oldest_fresh},
        ),
        *column_checks(),
    ]


def spark_table(path: str) -> str:
    """The Parquet file at ``path`` as a table in Spark SQL."""
    return "parquet.`{}`".format(path.replace("`", "``"))


def write_dq_agent_project(
    root: Path, backend: str, url: str, schema: str | None, *, fat_finger: bool = False
) -> Path:
    """A dq-agent project for the benchmark table, its state store a SQLite file inside it.

    On ``spark``, ``url`` is the Parquet file: a ``type: spark`` connector with the benchmark's
    session settings reads it through a query. With ``fat_finger`` the suite has the
    ``FAT_FINGER`` check after the ten others.
    """
    (root / "connectors").mkdir(parents=True, exist_ok=True)
    (root / "checks").mkdir(exist_ok=True)
    settings = {"state_url": f"sqlite:///{root / 'state.db'}"}
    connector: dict[str, Any]
    source: dict[str, Any] = {"connector": "bench"}
    if backend == "spark":
        connector = {"type": "spark", "master": SPARK_MASTER, "conf": dict(SPARK_CONF)}
        source["query"] = f"SELECT * FROM {spark_table(url)}"
    else:
        connector = {"type": "sql", "url": url}
        if schema:
            connector["schema"] = schema
        source["table"] = TABLE
    hours = int(MAX_AGE.total_seconds() // 3600)
    checks: list[dict[str, Any]] = [
        {"row_count": {"name": "row_count", "min": 1}},
        {"freshness": {"name": "freshness", "column": FRESHNESS_COLUMN, "max_age": f"{hours}h"}},
        *({kind: {"name": name, **kwargs}} for name, kind, kwargs in column_checks()),
    ]
    if fat_finger:
        checks.append({"fat_finger": dict(FAT_FINGER)})
    suite = {
        "suite": "bench_orders",
        "description": "Benchmark: ten checks"
        + (f" and {FAT_FINGER_CHECK}" if fat_finger else "")
        + " on a generated orders table",
        "source": source,
        "key": ["id"],
        "checks": checks,
    }
    for path, doc in (
        (root / "dq-agent.yml", settings),
        (root / "connectors" / "bench.yml", connector),
        (root / "checks" / "bench.yml", suite),
    ):
        path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return root


# Where Soda Core 4's contract differs from the others' checks (printed with its results).
SODA_NOTES = (
    "all ten checks are Soda's own check types and judge the same predicates as the others "
    "(NULLs are 'missing', never 'invalid'), in one aggregate query",
    "positive(amount): Soda has no exclusive minimum, so amount > 0 is written as an 'invalid' "
    "check with valid_min: 0 plus invalid_values: [0] (exact for a numeric column)",
    "unique(id): a 'duplicate' check, rows - missing - COUNT(DISTINCT id) must be 0 "
    "(the same count as the single-pass query's)",
    "freshness: the age of MAX(updated_at) (a naive timestamp, read as UTC) against Soda's "
    "verification time, floored to whole seconds, must be <= 26 hours",
    "its one query computes 15 aggregates to the single-pass query's 11 (it also counts the "
    "NULLs of every column with an 'invalid' check) and wraps the table in a CTE",
)


def soda_contract(database: str, schema: str) -> dict[str, Any]:
    """The ten checks as a Soda Core 4 data contract on ``<database>.<schema>.bench_orders``."""
    hours = int(MAX_AGE.total_seconds() // 3600)
    columns: dict[str, list[dict[str, Any]]] = {}

    def add(column: str, kind: str, name: str, **body: Any) -> None:
        columns.setdefault(column, []).append({kind: {"name": name, **body}})

    add("id", "duplicate", "unique(id)")
    for column in NOT_NULL:
        add(column, "missing", f"not_null({column})")
    for column, low, high in BETWEEN:
        add(column, "invalid", f"between({column})", valid_min=low, valid_max=high)
    add("status", "invalid", "in_set(status)", valid_values=list(STATUSES))
    add("amount", "invalid", "positive(amount)", valid_min=0, invalid_values=[0])
    return {
        "dataset": f"bench/{database}/{schema}/{TABLE}",
        "checks": [
            {"row_count": {"name": "row_count", "threshold": {"must_be_greater_than_or_equal": 1}}},
            {
                "freshness": {
                    "name": "freshness",
                    "column": FRESHNESS_COLUMN,
                    "unit": "hour",
                    "threshold": {"must_be_less_than_or_equal": hours},
                }
            },
        ],
        "columns": [{"name": column, "checks": checks} for column, checks in columns.items()],
    }


def write_soda_project(root: Path, url: str, schema: str) -> tuple[Path, Path]:
    """Soda's data source (from the SQLAlchemy ``url``) and contract files; their paths."""
    parsed = make_url(url)
    if not parsed.database:
        raise ValueError(f"the PostgreSQL URL names no database: {url}")
    connection: dict[str, Any] = {
        "host": parsed.host or "localhost",
        "port": parsed.port or 5432,
        "database": parsed.database,
        "user": parsed.username or "postgres",
        "password": parsed.password or "",  # Soda requires the key; trust auth ignores it
    }
    connection.update({key: str(value) for key, value in parsed.query.items()})
    root.mkdir(parents=True, exist_ok=True)
    data_source = root / "soda-data-source.yml"
    contract = root / "soda-contract.yml"
    for path, doc in (
        (data_source, {"type": "postgres", "name": "bench", "connection": connection}),
        (contract, soda_contract(parsed.database, schema)),
    ):
        path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return data_source, contract


def single_pass_sql(table: str) -> str:
    """Every check's metric in one aggregate SELECT over ``table`` (NULLs are not violations).

    One text for SQLite, PostgreSQL, DuckDB, MariaDB and Spark SQL: only COUNT, MAX, CASE, IN
    and comparisons with numeric literals, no regex, casts, booleans or date arithmetic (the
    freshness age is computed in Python, ``evaluate_single_pass``). On MariaDB, as for
    dq-agent's own query, ``IN`` compares by the column's collation (case- and trailing-space-
    insensitive by default), which cannot change a verdict on the generated data.
    """
    statuses = ", ".join(f"'{s}'" for s in STATUSES)
    (q, q_low, q_high), (d, d_low, d_high) = BETWEEN
    parts = [
        "COUNT(*) AS row_count",
        f"MAX({FRESHNESS_COLUMN}) AS newest",
        *(f"COUNT({c}) AS nonnull_{c}" for c in NOT_NULL),
        f"COUNT(CASE WHEN {q} < {q_low} OR {q} > {q_high} THEN 1 END) AS outside_{q}",
        f"COUNT(CASE WHEN {d} < {d_low} OR {d} > {d_high} THEN 1 END) AS outside_{d}",
        "COUNT(id) AS nonnull_id",
        "COUNT(DISTINCT id) AS distinct_id",
        f"COUNT(CASE WHEN status NOT IN ({statuses}) THEN 1 END) AS outside_status",
        "COUNT(CASE WHEN amount <= 0 THEN 1 END) AS not_positive_amount",
    ]
    return "SELECT\n  " + ",\n  ".join(parts) + f"\nFROM {table}"


def evaluate_single_pass(row: Mapping[str, Any], now: datetime) -> dict[str, bool]:
    """Each check's verdict from the single-pass row (same names as the other tools)."""
    newest = row["newest"]  # naive UTC: a datetime from PostgreSQL, DuckDB, MariaDB, Spark
    if isinstance(newest, str):  # SQLite keeps timestamps as text
        newest = datetime.fromisoformat(newest)
    fresh = newest is not None and utc_naive(now) - newest <= MAX_AGE
    rows = int(row["row_count"])
    outcomes = {"row_count": rows >= 1, "freshness": fresh}
    outcomes.update({f"not_null({c})": int(row[f"nonnull_{c}"]) == rows for c in NOT_NULL})
    outcomes.update({f"between({c})": int(row[f"outside_{c}"]) == 0 for c, _, _ in BETWEEN})
    outcomes["unique(id)"] = int(row["distinct_id"]) == int(row["nonnull_id"])
    outcomes["in_set(status)"] = int(row["outside_status"]) == 0
    outcomes["positive(amount)"] = int(row["not_positive_amount"]) == 0
    return outcomes
