"""``dq-agent init``: a project folder and, with a database, a suite suggested for each table.

A table is profiled in one aggregate query pushed down to its database (rows; per column the
nulls, distinct values and range; per timestamp column the days and hours that hold rows),
plus one small GROUP BY per column with few distinct values to list them. Each suggestion is
a check the data as it is today passes, written with the evidence for it as a comment, so
that ``dq-agent check`` right after ``init`` is green on healthy data and a person can read
why each line is there.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from dq_agent.checks.base import plural
from dq_agent.checks.windows import Window
from dq_agent.config.durations import format_duration
from dq_agent.config.models import SqlConnector, SqlSourceSpec
from dq_agent.config.yamlwrite import dump, one_line
from dq_agent.results import to_jsonable
from dq_agent.sources.base import Relation
from dq_agent.sources.sql import SqlSource, create_engine, translate

# Columns with at most this many distinct values (and repeats) get accepted_values.
MAX_ACCEPTED_VALUES = 20
# A column is categorical when it holds at least this many rows per distinct value.
MIN_ROWS_PER_VALUE = 5
# The share of a timestamp's span, in hours (days), that holds rows for an hourly (daily) load.
STEADY_SHARE = 0.8
# A daily load on business days only fills this share of the days.
WEEKDAYS_SHARE = 5 / 7 * STEADY_SHARE
# volume_anomaly needs its training window (28 days) and a week to judge against.
MIN_VOLUME_DAYS = 35
# The connector profile init writes (connectors/warehouse.yml), which its suites read.
CONNECTOR = "warehouse"
# Table names made into suite ids and file names.
_UNSAFE = re.compile(r"[^A-Za-z0-9_.\-]+")
# Names that say a timestamp is when a row last changed (freshness) or arrived (volume).
_UPDATED = ("updated", "modified", "changed", "loaded", "ingested", "synced")
_CREATED = ("created", "inserted", "ordered", "occurred", "event", "_at", "date", "time")
# Freshness limits by how often rows arrive.
_MAX_AGE = {"hourly": timedelta(hours=2), "daily": timedelta(hours=26), "weekly": timedelta(days=8)}
_TEXT_FAMILIES = ("string",)
_RANGED_FAMILIES = ("integer", "number", "timestamp", "date")


@dataclass(frozen=True)
class ColumnProfile:
    """What one column holds."""

    name: str
    family: str
    nulls: int
    distinct: int
    low: Any = None
    high: Any = None
    # Timestamps: how many distinct days and hours hold rows.
    days: int = 0
    hours: int = 0
    # Columns with few distinct values: each value and its rows, most frequent first.
    values: tuple[tuple[Any, int], ...] = ()


@dataclass(frozen=True)
class TableProfile:
    """What one table holds, as one scan of it found."""

    table: str
    rows: int
    primary_key: tuple[str, ...]
    columns: tuple[ColumnProfile, ...]
    profiled_at: datetime
    seconds: float = 0.0


@dataclass
class Suggested:
    """A suite suggested for one table: its YAML, and how many checks it holds."""

    table: str
    suite: str
    text: str
    checks: int


def connector_for(url: str, schema: str | None) -> SqlConnector:
    """The connector profile ``init`` writes for ``url``."""
    return SqlConnector.model_validate(
        {"type": "sql", "url": url, **({"schema": schema} if schema else {})}
    )


def tables(connector: SqlConnector, root: Path) -> list[str]:
    """The tables of the connector's database (its schema's), in name order."""
    engine = create_engine(connector, root)
    try:
        return sorted(sa.inspect(engine).get_table_names(schema=connector.schema_))
    except sa.exc.SQLAlchemyError as exc:
        raise translate(exc, engine.url) from exc
    finally:
        engine.dispose()


def profile(connector: SqlConnector, root: Path, table: str, now: datetime) -> TableProfile:
    """One table's profile: one aggregate query, and one GROUP BY per categorical column."""
    engine = create_engine(connector, root)
    try:
        source = SqlSource(engine, SqlSourceSpec(connector=CONNECTOR, table=table), connector)
        relation = source.open()
        started = datetime.now(UTC)
        with relation.connect() as conn:
            scanned = _scan(conn, relation)
            columns = tuple(
                _with_values(conn, relation, column, scanned.rows) for column in scanned.columns
            )
        seconds = (datetime.now(UTC) - started).total_seconds()
    except sa.exc.SQLAlchemyError as exc:
        raise translate(exc, engine.url) from exc
    finally:
        engine.dispose()
    return TableProfile(scanned.table, scanned.rows, scanned.primary_key, columns, now, seconds)


def _scan(conn: sa.Connection, relation: Relation) -> TableProfile:
    """The aggregate query: every column's nulls, distinct values and range at once."""
    aggregates: list[sa.Label[Any]] = [sa.func.count().label("rows")]
    for i, (name, info) in enumerate(relation.columns.items()):
        column = relation.column(name)
        aggregates.append(sa.func.count(column).label(f"n{i}"))
        aggregates.append(sa.func.count(sa.distinct(column)).label(f"d{i}"))
        if info.family in _RANGED_FAMILIES:
            aggregates.append(sa.func.min(column).label(f"lo{i}"))
            aggregates.append(sa.func.max(column).label(f"hi{i}"))
        if info.family == "timestamp":
            for unit in ("day", "hour"):
                bucket = Window(relation, name, unit, ZoneInfo("UTC"))
                aggregates.append(
                    sa.func.count(sa.distinct(bucket.bucket(bucket.local()))).label(f"{unit}{i}")
                )
    row = conn.execute(sa.select(*aggregates).select_from(relation.selectable)).mappings().one()
    rows = int(row["rows"])
    columns = tuple(
        ColumnProfile(
            str(name),  # not the dialect's quoted_name: YAML writes plain text
            info.family,
            nulls=rows - int(row[f"n{i}"]),
            distinct=int(row[f"d{i}"]),
            low=row.get(f"lo{i}"),
            high=row.get(f"hi{i}"),
            days=int(row.get(f"day{i}") or 0),
            hours=int(row.get(f"hour{i}") or 0),
        )
        for i, (name, info) in enumerate(relation.columns.items())
    )
    key = tuple(str(k) for k in relation.primary_key)
    return TableProfile(str(relation.label), rows, key, columns, datetime.now(UTC))


def _with_values(
    conn: sa.Connection, relation: Relation, column: ColumnProfile, rows: int
) -> ColumnProfile:
    """A categorical text column with its values listed (the others as they are)."""
    if not _categorical(column, rows):
        return column
    value = relation.column(column.name)
    query = (
        sa.select(value, sa.func.count().label("n"))
        .select_from(relation.selectable)
        .where(value.is_not(None))
        .group_by(value)
        .order_by(sa.desc("n"), value)
        .limit(MAX_ACCEPTED_VALUES + 1)
    )
    found = tuple((v, int(n)) for v, n in conn.execute(query))
    return dataclasses.replace(column, values=found)


def _categorical(column: ColumnProfile, rows: int) -> bool:
    return (
        column.family in _TEXT_FAMILIES
        and 0 < column.distinct <= MAX_ACCEPTED_VALUES
        and rows >= column.distinct * MIN_ROWS_PER_VALUE
    )


# --- suggestions -----------------------------------------------------------------------------


def suggest(found: TableProfile, connector: str, schema: str | None = None) -> Suggested:
    """A suite for the profiled table: checks it passes today, each with its evidence."""
    suite = _UNSAFE.sub("_", found.table.split(".")[-1]).strip("_") or "table"
    items: list[tuple[dict[str, Any], str]] = []
    notes: list[str] = []
    rows = found.rows
    items.append(({"row_count": {"min": 1}}, f"{rows:,} rows"))
    key = _key(found)
    updated, created = _timestamps(found)
    if updated is not None:
        items.append(_freshness(found, updated, notes))
    if created is not None:
        volume = _volume(found, created, notes)
        if volume is not None:
            items.append(volume)
    for column in found.columns:
        if column.name in found.primary_key:
            continue  # the database keeps it unique and present
        if rows and column.nulls == 0:
            items.append(
                (
                    {"expect_column_values_to_not_be_null": {"column": column.name}},
                    f"0 nulls in {rows:,} rows",
                )
            )
        if key == (column.name,) and not found.primary_key:
            items.append(
                (
                    {"expect_column_values_to_be_unique": {"column": column.name}},
                    f"{column.distinct:,} distinct values in {rows:,} rows: a key",
                )
            )
        if 2 <= len(column.values) <= MAX_ACCEPTED_VALUES:
            values = [to_jsonable(v) for v, _ in column.values]
            shown = ", ".join(f"{to_jsonable(v)} ({n:,})" for v, n in column.values[:5])
            more = f", … {len(column.values) - 5} more" if len(column.values) > 5 else ""
            items.append(
                (
                    {"accepted_values": {"column": column.name, "values": values}},
                    f"{plural(len(values), 'value')}: {shown}{more}",
                )
            )
        if column.family in ("integer", "number") and _number(column.low) >= 0 and rows:
            items.append(
                (
                    {
                        "expect_column_values_to_be_between": {
                            "column": column.name,
                            "min_value": 0,
                        }
                    },
                    f"from {to_jsonable(column.low)} to {to_jsonable(column.high)}",
                )
            )
    source: dict[str, Any] = {"connector": connector, "table": found.table.split(".")[-1]}
    if schema:
        source["schema"] = schema
    header = {
        "suite": suite,
        "description": f"Suggested by dq-agent init from {found.table} "
        f"({rows:,} rows, {found.profiled_at:%Y-%m-%d %H:%M} UTC)",
        "source": source,
    }
    lines = [
        "# yaml-language-server: $schema=../.dq-agent/schemas/suite.schema.json",
        "# Each check holds on the data as profiled; the comment says why it was suggested.",
        *[_entry(name, value) for name, value in header.items()],
        "# owner: you@example.com           # who hears about it (e-mail, or a list)",
    ]
    if key:
        why = "the primary key" if found.primary_key else "unique and never null"
        lines.append(f"{_entry('key', list(key))}  # {why}")
    lines.append("checks:")
    for check, why in items:
        [(name, arguments)] = check.items()
        lines.append(f"  - {_entry(name, arguments)}  # {_comment(why)}")
    lines += [f"# {_comment(note)}" for note in notes]
    return Suggested(found.table, suite, "\n".join(lines) + "\n", len(items))


def _key(found: TableProfile) -> tuple[str, ...]:
    """The primary key, else the first column that is unique and never null."""
    if found.primary_key:
        return found.primary_key
    unique = (
        c.name
        for c in found.columns
        if found.rows and c.nulls == 0 and c.distinct == found.rows
        if c.family in ("integer", "string")
    )
    name = next(unique, None)
    return (name,) if name is not None else ()


def _timestamps(found: TableProfile) -> tuple[ColumnProfile | None, ColumnProfile | None]:
    """The timestamp that says when rows change (freshness) and when they arrive (volume)."""
    stamps = [c for c in found.columns if c.family == "timestamp" and c.high is not None]

    def first(words: Sequence[str]) -> ColumnProfile | None:
        return next((c for w in words for c in stamps if w in c.name.lower()), None)

    newest = max(stamps, key=lambda c: _aware(c.high), default=None)
    return first(_UPDATED) or newest, first(_CREATED) or newest


def _cadence(column: ColumnProfile) -> str | None:
    """How often rows arrive, from the hours and days that hold them over the span."""
    if column.low is None or column.high is None:
        return None
    span = _aware(column.high) - _aware(column.low)
    hours, days = span / timedelta(hours=1) + 1, span / timedelta(days=1) + 1
    if hours >= 48 and column.hours >= STEADY_SHARE * hours:
        return "hourly"
    if days >= 7 and column.days >= WEEKDAYS_SHARE * days:
        return "daily"
    if days >= 28 and column.days >= days / 7 * STEADY_SHARE:
        return "weekly"
    return None


def _freshness(
    found: TableProfile, column: ColumnProfile, notes: list[str]
) -> tuple[dict[str, Any], str]:
    cadence = _cadence(column)
    age = max(found.profiled_at - _aware(column.high), timedelta(0))
    limit = _MAX_AGE.get(cadence or "", timedelta(hours=26))
    if age >= limit:
        # Stale already, or rows arrive seldom: a limit it passes today, with room.
        limit = timedelta(hours=math.ceil(age / timedelta(hours=1) * 1.5))
        notes.append(
            f"freshness({column.name}): the newest row is {format_duration(age)} old; "
            f"max_age {format_duration(limit)} lets it pass today: tighten it to your load's "
            "schedule"
        )
    why = f"newest {format_duration(age)} old" + (f"; rows arrive {cadence}" if cadence else "")
    return {"freshness": {"column": column.name, "max_age": format_duration(limit)}}, why


def _volume(
    found: TableProfile, column: ColumnProfile, notes: list[str]
) -> tuple[dict[str, Any], str] | None:
    cadence = _cadence(column)
    if cadence not in ("hourly", "daily"):
        notes.append(
            f"volume_anomaly({column.name}) left out: rows do not arrive every day "
            f"({column.days:,} days with rows)"
        )
        return None
    if column.days < MIN_VOLUME_DAYS:
        notes.append(
            f"volume_anomaly({column.name}) left out: {column.days} days of rows, it needs "
            f"{MIN_VOLUME_DAYS} to judge a day: add it then"
        )
        return None
    why = f"rows on {column.days:,} days, {found.rows / column.days:,.0f} a day"
    return {"volume_anomaly": {"timestamp_column": column.name}}, why


def _aware(value: Any) -> datetime:
    """A timestamp read back (or its ISO text) as an aware datetime; naive ones are UTC."""
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return -math.inf


def _entry(name: str, value: Any) -> str:
    """``name: value`` with the value as one line of flow YAML (any text in it quoted as it
    needs, by the YAML emitter)."""
    return f"{name}: {one_line(value)}"


def _comment(text: str) -> str:
    """Text from the data made safe for a YAML comment: one line."""
    return " ".join(text.split())


# --- the project folder ----------------------------------------------------------------------

SETTINGS = """\
# yaml-language-server: $schema=.dq-agent/schemas/dq-agent.schema.json
# dq-agent's settings for this project (docs/project.md in dq-agent's documentation).
state_url: sqlite:///.dq-agent/state.db   # production: a PostgreSQL URL, shared by replicas
defaults:
  timezone: UTC
"""


def write_project(
    root: Path,
    *,
    connector: SqlConnector | None,
    suggested: Sequence[Suggested],
    say: Callable[[str], None],
) -> None:
    """The project folder: settings, the connector profile, a suite per table; nothing that
    is there already is overwritten (it is left, and said so)."""
    (root / "connectors").mkdir(parents=True, exist_ok=True)
    (root / "checks").mkdir(exist_ok=True)
    _write(root / "dq-agent.yml", SETTINGS, say)
    if connector is not None:
        profile_text = {"type": "sql", "url": connector.url}
        if connector.schema_:
            profile_text["schema"] = connector.schema_
        schema = "# yaml-language-server: $schema=../.dq-agent/schemas/connector.schema.json\n"
        text = schema + dump(profile_text)
        _write(root / "connectors" / f"{CONNECTOR}.yml", text, say)
    for one in suggested:
        _write(root / "checks" / f"{one.suite}.yml", one.text, say)


def _write(path: Path, text: str, say: Callable[[str], None]) -> None:
    if path.exists():
        say(f"kept {path} (it is there already)")
        return
    path.write_text(text)
    say(f"wrote {path}")


def secret_free(url: str) -> tuple[str, str | None]:
    """``url`` with its password replaced by ``${DQ_WAREHOUSE_PASSWORD}`` (secrets never go in
    YAML), and the variable to set; the URL as it is when it has none."""
    parsed = sa.make_url(url)
    if parsed.password is None:
        return url, None
    variable = "DQ_WAREHOUSE_PASSWORD"
    shown = parsed.set(password="PASSWORD_PLACEHOLDER").render_as_string(hide_password=False)
    return shown.replace("PASSWORD_PLACEHOLDER", f"${{{variable}}}"), variable
