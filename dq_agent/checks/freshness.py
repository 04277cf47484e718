"""``freshness``: the newest timestamp in ``column`` is at most ``max_age`` old."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime, time
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from dq_agent.checks.base import CheckContext, result
from dq_agent.config.durations import format_duration
from dq_agent.config.models import CheckSpec, FreshnessArgs
from dq_agent.results import CheckResult
from dq_agent.sources.base import Relation


class Freshness:
    def __init__(self, spec: CheckSpec, relation: Relation, ctx: CheckContext) -> None:
        assert isinstance(spec.args, FreshnessArgs)
        self.spec = spec
        self.args = spec.args
        self.ctx = ctx
        self.relation = relation
        self.zone = ZoneInfo(self.args.timezone or ctx.timezone)

    def aggregates(self) -> dict[str, sa.ColumnElement[Any]]:
        column = self.relation.column(self.args.column)
        info = self.relation.columns[self.args.column]
        if self.ctx.as_of is not None:
            # Rows stamped after --as-of did not exist yet at that moment.
            column = sa.case((column <= self._as_of_param(info.family, info.sql_type), column))
        newest: sa.ColumnElement[Any] = sa.func.max(column)
        if self.relation.engine.dialect.name == "sqlite":
            # SQLite keeps timestamps as text in many formats: read it raw and parse it here.
            newest = sa.cast(newest, sa.String)
        return {"newest": newest}

    def evaluate(self, values: Mapping[str, Any]) -> CheckResult:
        column = self.args.column
        newest = _to_datetime(values["newest"], self.zone)
        at = self.ctx.at
        if newest is None:
            return result(
                self.spec,
                False,
                f"no timestamps in {column}" + (" up to --as-of" if self.ctx.as_of else ""),
                observed={"newest": None, "max_age": format_duration(self.args.max_age)},
            )
        age = at - newest
        observed = {
            "newest": newest.isoformat(),
            "age": format_duration(age) if age.total_seconds() >= 0 else "in the future",
            "age_s": round(age.total_seconds(), 3),
            "max_age": format_duration(self.args.max_age),
        }
        ok = age <= self.args.max_age
        if ok and age.total_seconds() < 0:
            message = f"newest {column} is in the future (max age {observed['max_age']})"
        elif ok:
            message = f"newest {column} is {observed['age']} old (max {observed['max_age']})"
        else:
            message = (
                f"stale: newest {column} is {observed['age']} old, "
                f"over the {observed['max_age']} limit"
            )
        return result(
            self.spec, ok, message, observed=observed, metrics={"age_s": age.total_seconds()}
        )

    def _as_of_param(self, family: str, sql_type: Any) -> Any:
        as_of = self.ctx.at
        local = as_of.astimezone(self.zone).replace(tzinfo=None)
        if family == "timestamp" and getattr(sql_type, "timezone", False):
            return sa.literal(as_of.astimezone(UTC), sql_type)
        if family == "timestamp":
            return sa.literal(local, sql_type)
        if family == "date":
            return sa.literal(local.date(), sql_type)
        # Text timestamps: ISO-8601 text compares in time order.
        return sa.literal(local.isoformat(sep=" "))


def _to_datetime(value: Any, zone: ZoneInfo) -> datetime | None:
    """A database value as an aware datetime; naive values are read in ``zone``."""
    if value is None:
        return None
    if isinstance(value, str):
        text = value.strip().replace("Z", "+00:00")
        try:
            parsed: datetime | date = datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(f"not a timestamp: {value!r}") from None
        value = parsed
    if isinstance(value, date) and not isinstance(value, datetime):
        value = datetime.combine(value, time.max)  # a date is fresh until its end
    if not isinstance(value, datetime):
        raise ValueError(f"not a timestamp: {value!r}")
    moment: datetime = value if value.tzinfo else value.replace(tzinfo=zone)
    return moment.astimezone(UTC)
