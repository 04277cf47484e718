"""Rows in wall-clock time buckets of a timestamp column: the calendar and the SQL every
time-bucketed check shares (volume_anomaly, distribution_shift, column_anomaly, new_values)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, Literal, TypeVar
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from dq_agent.checks.base import CheckContext
from dq_agent.config.models import CheckSpec, WindowedArgs
from dq_agent.errors import DqAgentError
from dq_agent.results import Severity, Status, failed_status
from dq_agent.sources.base import Relation

# Bucketing SQL is executed in tests on the first four; on the warehouses it is only compiled and
# syntax-checked (tests/test_warehouse_dialects.py): no test runs it there.
COMPILED_ONLY = ("snowflake", "bigquery", "databricks", "redshift", "trino")
SUPPORTED_DIALECTS = ("postgresql", "duckdb", "sqlite", "mysql", *COMPILED_ONLY)
BucketUnit = Literal["hour", "day", "week"]
STEP = {"hour": timedelta(hours=1), "day": timedelta(days=1), "week": timedelta(weeks=1)}


def to_local(moment: datetime, zone: ZoneInfo) -> datetime:
    """An aware moment as naive wall-clock time in ``zone`` (naive input is taken as UTC)."""
    aware = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return aware.astimezone(zone).replace(tzinfo=None)


def to_utc(local: datetime, zone: ZoneInfo) -> datetime:
    """Naive wall-clock time in ``zone`` as an aware UTC moment (the first one, if repeated)."""
    return local.replace(tzinfo=zone).astimezone(UTC)


@dataclass(frozen=True)
class BucketVerdict:
    """One line of a backtest: what the check would have said at the end of ``bucket``."""

    bucket: datetime  # start, UTC
    rows: int
    status: Status
    message: str
    baseline_median: float | None
    lower: float | None
    upper: float | None


# --- calendar: buckets are wall-clock intervals in the check's timezone ----------------------


def bucket_floor(local: datetime, unit: BucketUnit) -> datetime:
    """The start of the bucket holding the naive wall-clock time ``local`` (weeks: Monday)."""
    if unit == "hour":
        return local.replace(minute=0, second=0, microsecond=0)
    day = local.replace(hour=0, minute=0, second=0, microsecond=0)
    return day - timedelta(days=day.weekday()) if unit == "week" else day


def _exists(local: datetime, zone: ZoneInfo) -> bool:
    """Whether a wall-clock time happens at all (not skipped by a daylight-saving jump)."""
    return to_local(to_utc(local, zone), zone) == local


def bucket_starts(
    start: datetime, end: datetime, unit: BucketUnit, zone: ZoneInfo
) -> list[datetime]:
    """Naive wall-clock bucket starts in ``[start, end)``; hours a clock skips have none."""
    starts: list[datetime] = []
    current = bucket_floor(start, unit)
    if current < start:
        current += STEP[unit]
    while current < end:
        if unit != "hour" or _exists(current, zone):
            starts.append(current)
        current += STEP[unit]
    return starts


def last_complete_bucket(at: datetime, unit: BucketUnit, zone: ZoneInfo) -> datetime:
    """The naive start of the last bucket that had ended by ``at``."""
    current = bucket_floor(to_local(at, zone), unit)
    previous = current - STEP[unit]
    while unit == "hour" and not _exists(previous, zone):
        previous -= STEP[unit]
    return previous


def judged_buckets(
    start: datetime, end: datetime, at: datetime, unit: BucketUnit, zone: ZoneInfo
) -> list[datetime]:
    """Naive starts of the buckets from ``start`` that had ended by ``end`` and by ``at``:
    the ones a backtest judges."""
    horizon = to_local(min(end, at), zone)
    first = bucket_floor(to_local(start, zone), unit)
    return [
        local
        for local in bucket_starts(first, horizon, unit, zone)
        if local + STEP[unit] <= horizon
    ]


def verdict_status(outcome: str, severity: Severity) -> Status:
    """A backtest line's status: an anomaly fails (warns), too little history warns."""
    if outcome == "anomaly":
        return failed_status(severity)
    return "warn" if outcome == "too_little_history" else "pass"


def training_span(args: WindowedArgs) -> timedelta:
    """How far back the baseline reaches: ``training_days``, in whole weeks for weekly buckets."""
    if args.bucket == "week":
        return timedelta(weeks=max(1, round(args.training_days / 7)))
    return timedelta(days=args.training_days)


def bucket_label(local: datetime, unit: BucketUnit) -> str:
    if unit == "hour":
        return local.strftime("%Y-%m-%d %H:00")
    if unit == "week":
        return f"week of {local:%Y-%m-%d}"
    return f"{local:%Y-%m-%d}"


class Window:
    """A relation's rows by bucket (``hour``, ``day``, ``week``) of ``column`` in ``zone``."""

    def __init__(self, relation: Relation, column: str, unit: str, zone: ZoneInfo) -> None:
        self.relation = relation
        self.column = column
        self.unit = unit
        self.zone = zone

    def problem(self, check: str) -> str | None:
        """Why rows cannot be bucketed here (a missing column, another database), if so."""
        if self.column not in self.relation.columns:
            return (
                f"column {self.column!r} not found in {self.relation.label}; "
                f"available: {', '.join(self.relation.columns)}"
            )
        dialect = self.relation.engine.dialect.name
        if dialect not in SUPPORTED_DIALECTS:
            return f"{check} is not supported yet on {dialect}"
        return None

    def rows(self, start: datetime, end: datetime, **columns: sa.ColumnElement[Any]) -> sa.Subquery:
        """The rows of naive wall-clock ``[start, end)``: their bucket start and ``columns``."""
        local, low, high = self.local_timestamp(start, end)
        return (
            sa.select(self.bucket(local).label("bucket"), *[c.label(n) for n, c in columns.items()])
            .select_from(self.relation.selectable)
            .where(low, high)
            .subquery("bucketed")
        )

    def local(self) -> sa.ColumnElement[Any]:
        """The column as wall-clock time in the zone."""
        column = self.relation.column(self.column)
        info = self.relation.columns[self.column]
        if self.relation.engine.dialect.name == "sqlite":
            # SQLite keeps timestamps as text: normalise it so that text compares in time order.
            return sa.func.strftime("%Y-%m-%d %H:%M:%S", column)
        if info.family == "timestamp" and getattr(info.sql_type, "timezone", False):
            return self._in_zone(column)
        if info.family == "timestamp":
            return column
        return sa.cast(column, sa.DateTime())

    def local_timestamp(
        self, start: datetime, end: datetime
    ) -> tuple[sa.ColumnElement[Any], sa.ColumnElement[bool], sa.ColumnElement[bool]]:
        """The column as wall-clock time in the zone, and the window's bounds on it."""
        column = self.relation.column(self.column)
        info = self.relation.columns[self.column]
        local = self.local()
        if self.relation.engine.dialect.name == "sqlite":
            return local, local >= f"{start:%Y-%m-%d %H:%M:%S}", local < f"{end:%Y-%m-%d %H:%M:%S}"
        if info.family == "timestamp" and getattr(info.sql_type, "timezone", False):
            # Bounds on the column itself so that an index on it can serve the window.
            low = sa.literal(to_utc(start, self.zone), info.sql_type)
            high = sa.literal(to_utc(end, self.zone), info.sql_type)
            return local, column >= low, column < high
        if info.family == "timestamp":
            return local, column >= sa.literal(start, info.sql_type), column < sa.literal(end)
        return local, local >= sa.literal(start, sa.DateTime()), local < sa.literal(end)

    def _in_zone(self, column: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
        """A timestamp with a time zone as wall-clock time in the zone."""
        dialect, zone = self.relation.engine.dialect.name, self.zone.key
        if dialect in ("snowflake", "redshift"):
            return sa.func.convert_timezone(zone, column)
        if dialect == "bigquery":
            return sa.func.datetime(column, zone)
        if dialect == "databricks":
            # Reads the instant's UTC wall clock: right in a UTC session, Databricks SQL's default.
            return sa.func.from_utc_timestamp(column, zone)
        if dialect == "trino":
            return sa.cast(column.op("AT TIME ZONE")(zone), sa.DateTime())
        return sa.func.timezone(zone, column)

    def bucket(self, local: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
        """The start of the bucket of a wall-clock timestamp expression."""
        dialect = self.relation.engine.dialect.name
        if dialect in ("postgresql", "duckdb", "snowflake", "redshift", "databricks", "trino"):
            # ISO weeks: they start on Monday (on Snowflake, with WEEK_START at its default).
            return sa.func.date_trunc(self.unit, local)
        if dialect == "bigquery":  # its WEEK starts on Sunday, ISOWEEK on Monday
            part = "ISOWEEK" if self.unit == "week" else self.unit.upper()
            return sa.func.datetime_trunc(local, sa.literal_column(part))
        if dialect == "mysql":  # MySQL and MariaDB
            if self.unit == "hour":
                return sa.func.date_format(local, "%Y-%m-%d %H:00:00")
            if self.unit == "week":  # WEEKDAY() counts from Monday = 0
                return sa.func.subdate(sa.func.date(local), sa.func.weekday(local))
            return sa.func.date(local)
        if self.unit == "hour":
            return sa.func.strftime("%Y-%m-%d %H:00:00", local)
        if self.unit == "week":
            # The coming Sunday (today if Sunday), then back to that week's Monday.
            return sa.func.date(local, "weekday 0", "-6 days")
        return sa.func.date(local)


ArgsT = TypeVar("ArgsT", bound=WindowedArgs)


class WindowedCheck(Generic[ArgsT]):
    """A check of the last complete time bucket: its own queries, nothing in the shared scan."""

    args_type: type[ArgsT]

    def __init__(self, spec: CheckSpec, relation: Relation, ctx: CheckContext) -> None:
        assert isinstance(spec.args, self.args_type)
        self.spec = spec
        self.args: ArgsT = spec.args
        self.relation = relation
        self.ctx = ctx
        self.zone = ZoneInfo(self.args.timezone or ctx.timezone)
        self.window = Window(relation, self.args.timestamp_column, self.args.bucket, self.zone)

    @property
    def settled_at(self) -> datetime:
        """The moment whose last complete bucket is judged: ``settle`` before now (or as-of),
        so that a bucket whose rows are still landing is not judged yet."""
        return self.ctx.at - self.args.settle

    def expected(self, start: datetime, end: datetime) -> dict[datetime, str]:
        """The buckets (UTC starts) of naive ``[start, end)`` not judged like the others, and
        why: days of the suite's calendar (daily and hourly buckets), and those an owner marked
        "expected". None of them is part of a baseline."""
        known: dict[datetime, str] = {}
        if self.args.bucket != "week" and self.ctx.calendar is not None:
            for local in bucket_starts(start, end, self.args.bucket, self.zone):
                reason = self.ctx.known_day(local.date())
                if reason is not None:
                    known[to_utc(local, self.zone)] = reason
        known.update((m, "marked as expected") for m in self.ctx.expected_buckets(self.spec.name))
        return known

    def aggregates(self) -> dict[str, sa.ColumnElement[Any]]:
        return {}

    def problem(self) -> str | None:
        """Why the check cannot run here (a missing column, another database), if so."""
        return self.window.problem(self.spec.type)

    def backtest_buckets(self, start: datetime, end: datetime) -> list[datetime]:
        """The buckets a backtest over ``[start, end)`` judges; raises when it cannot run."""
        problem = self.problem()
        if problem:
            raise DqAgentError(f"{self.spec.name}: {problem}")
        return judged_buckets(start, end, self.settled_at, self.args.bucket, self.zone)


def bucket_start(value: Any) -> datetime:
    """A bucket start from the database, naive: a datetime, a date (MySQL's DATE()), or ISO
    text (SQLite's, MySQL's DATE_FORMAT())."""
    if isinstance(value, datetime):
        return value.replace(tzinfo=None)
    return datetime.fromisoformat(str(value))
