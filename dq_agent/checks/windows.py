"""Rows in wall-clock time buckets of a timestamp column: the SQL every time-bucketed check
shares (volume_anomaly, distribution_shift, column_anomaly, new_values)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Generic, TypeVar
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from dq_agent.checks.base import CheckContext
from dq_agent.config.models import CheckSpec, WindowedArgs
from dq_agent.sources.base import Relation

SUPPORTED_DIALECTS = ("postgresql", "sqlite")


def to_local(moment: datetime, zone: ZoneInfo) -> datetime:
    """An aware moment as naive wall-clock time in ``zone`` (naive input is taken as UTC)."""
    aware = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return aware.astimezone(zone).replace(tzinfo=None)


def to_utc(local: datetime, zone: ZoneInfo) -> datetime:
    """Naive wall-clock time in ``zone`` as an aware UTC moment (the first one, if repeated)."""
    return local.replace(tzinfo=zone).astimezone(UTC)


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

    def local_timestamp(
        self, start: datetime, end: datetime
    ) -> tuple[sa.ColumnElement[Any], sa.ColumnElement[bool], sa.ColumnElement[bool]]:
        """The column as wall-clock time in the zone, and the window's bounds on it."""
        column = self.relation.column(self.column)
        info = self.relation.columns[self.column]
        if self.relation.engine.dialect.name == "sqlite":
            # SQLite keeps timestamps as text: normalise it so that text compares in time order.
            text = sa.func.strftime("%Y-%m-%d %H:%M:%S", column)
            return text, text >= f"{start:%Y-%m-%d %H:%M:%S}", text < f"{end:%Y-%m-%d %H:%M:%S}"
        if info.family == "timestamp" and getattr(info.sql_type, "timezone", False):
            # Bounds on the column itself so that an index on it can serve the window.
            low = sa.literal(to_utc(start, self.zone), info.sql_type)
            high = sa.literal(to_utc(end, self.zone), info.sql_type)
            return sa.func.timezone(self.zone.key, column), column >= low, column < high
        if info.family == "timestamp":
            return column, column >= sa.literal(start, info.sql_type), column < sa.literal(end)
        local = sa.cast(column, sa.DateTime())
        return local, local >= sa.literal(start, sa.DateTime()), local < sa.literal(end)

    def bucket(self, local: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
        """The start of the bucket of a wall-clock timestamp expression."""
        if self.relation.engine.dialect.name == "postgresql":
            return sa.func.date_trunc(self.unit, local)  # ISO weeks: they start on Monday
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

    def aggregates(self) -> dict[str, sa.ColumnElement[Any]]:
        return {}


def bucket_start(value: Any) -> datetime:
    """A bucket start from the database, naive: a datetime, or ISO text from SQLite."""
    if isinstance(value, datetime):
        return value.replace(tzinfo=None)
    return datetime.fromisoformat(str(value))
