"""``column_anomaly``: a column's null rate, zero and negative rates, mean, min, max, distinct
count or text length per bucket, each against its own history.

One GROUP BY per bucket computes every metric in the database. Each metric of the last
complete bucket is judged against the same metric in the buckets before it: the median (of the
same weekday, when the metric has a weekly rhythm), a band of ``sensitivity`` robust standard
deviations (1.4826 × MAD), never narrower than sampling noise for rates, nor than
``min_change_pct`` of the level (two points, for rates). Buckets an owner marked "expected"
leave the baseline, as for ``volume_anomaly``.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from dq_agent.checks.base import CheckContext, count_where, error_result, result
from dq_agent.checks.volume import MAD_SCALE, MIN_SEASON_POINTS
from dq_agent.checks.windows import (
    STEP,
    BucketVerdict,
    WindowedCheck,
    bucket_label,
    bucket_start,
    bucket_starts,
    last_complete_bucket,
    to_utc,
    training_span,
    verdict_status,
)
from dq_agent.config.models import CheckSpec, ColumnAnomalyArgs, ColumnMetric
from dq_agent.results import CheckResult, Status
from dq_agent.sources.base import Relation
from dq_agent.sources.sql import translate

RATES = ("null_rate", "zero_rate", "negative_rate")
NUMERIC_ONLY = ("zero_rate", "negative_rate", "min", "max", "mean")
# A rate moving by less than this (two percentage points) is never news.
RATE_FLOOR = 0.02
_WORDS = {
    "null_rate": "null rate",
    "distinct_count": "distinct values",
    "zero_rate": "zero rate",
    "negative_rate": "negative rate",
    "min": "minimum",
    "max": "maximum",
    "mean": "mean",
    "length": "mean length",
}


@dataclass(frozen=True)
class Judged:
    metric: str
    value: float | None
    level: float | None
    lower: float | None
    upper: float | None
    anomaly: bool

    def sentence(self, column: str) -> str:
        usual = f"usually {_show(self.metric, self.level)}"
        if self.lower is not None and self.upper is not None:
            usual += f", {_show(self.metric, self.lower)}–{_show(self.metric, self.upper)}"
        return f"{column} {_WORDS[self.metric]} {_show(self.metric, self.value)} ({usual})"


class ColumnAnomaly(WindowedCheck[ColumnAnomalyArgs]):
    """One GROUP BY of its own over the window: every metric per bucket."""

    args_type = ColumnAnomalyArgs

    def metrics(self) -> list[ColumnMetric]:
        """The metrics asked for, or by default every one that fits the column's type."""
        if self.args.metrics:
            return list(dict.fromkeys(self.args.metrics))
        family = self.relation.columns[self.args.column].family
        if family in ("integer", "number"):
            return ["null_rate", "zero_rate", "negative_rate", "mean"]
        if family == "string":
            return ["null_rate", "distinct_count", "length"]
        return ["null_rate", "distinct_count"]

    def problem(self) -> str | None:
        missing = super().problem()
        if missing:
            return missing
        column = self.args.column
        if column not in self.relation.columns:
            return (
                f"column {column!r} not found in {self.relation.label}; "
                f"available: {', '.join(self.relation.columns)}"
            )
        family = self.relation.columns[column].family
        numeric = [m for m in self.metrics() if m in NUMERIC_ONLY]
        if numeric and family not in ("integer", "number"):
            return f"{', '.join(numeric)} need a numeric column; {column!r} is {family}"
        if "length" in self.metrics() and family != "string":
            return f"length needs a text column; {column!r} is {family}"
        return None

    def evaluate(self, values: Mapping[str, Any]) -> CheckResult:
        problem = self.problem()
        if problem:
            return error_result(self.spec, problem)
        local = last_complete_bucket(self.settled_at, self.args.bucket, self.zone)
        series = self.series(local - training_span(self.args), local + STEP[self.args.bucket])
        outcome, message, observed = self.judge(series, local)
        checked = result(self.spec, outcome != "anomaly", message, observed=observed)
        status: Status = "warn" if outcome == "too_little_history" else checked.status
        # Each metric with its band, so that the dashboard can chart them run by run.
        metrics = {
            f"{name}{part}": float(entry[key])
            for name, entry in observed.get("metrics", {}).items()
            for part, key in (("", "value"), (".lower", "lower"), (".upper", "upper"))
            if entry[key] is not None
        }
        return dataclasses.replace(checked, status=status, metrics=metrics)

    # -- the database's part ----------------------------------------------------------------

    def series(self, start: datetime, end: datetime) -> dict[datetime, dict[str, float | None]]:
        """Per bucket (naive local start): its rows and each metric."""
        column = self.relation.column(self.args.column)
        rows = self.window.rows(start, end, value=column)
        value = rows.c.value
        wanted = self.metrics()
        parts: dict[str, sa.ColumnElement[Any]] = {
            "rows": sa.func.count(),
            "nonnull": sa.func.count(value),
        }
        if "distinct_count" in wanted:
            parts["distinct_count"] = sa.func.count(sa.distinct(value))
        if "zero_rate" in wanted:
            parts["zeros"] = count_where(value == 0)
        if "negative_rate" in wanted:
            parts["negatives"] = count_where(value < 0)
        for stat in ("min", "max"):
            if stat in wanted:
                parts[stat] = getattr(sa.func, stat)(value)
        if "mean" in wanted:
            parts["mean"] = sa.func.avg(1.0 * value)
            # For the mean's sampling noise: a mean of few or wild values moves by chance.
            parts["mean_square"] = sa.func.avg(1.0 * value * value)
        if "length" in wanted:
            parts["length"] = sa.func.avg(1.0 * sa.func.length(value))
        query = sa.select(
            rows.c.bucket, *[expr.label(name) for name, expr in parts.items()]
        ).group_by(rows.c.bucket)
        try:
            with self.relation.connect() as conn:
                found = conn.execute(query).mappings().all()
        except sa.exc.SQLAlchemyError as exc:
            raise translate(exc, self.relation.engine.url) from exc
        out: dict[datetime, dict[str, float | None]] = {}
        for row in found:
            if row["bucket"] is None:
                continue
            total, nonnull = int(row["rows"]), int(row["nonnull"])
            measured: dict[str, float | None] = {"rows": float(total), "nonnull": float(nonnull)}
            for metric in wanted:
                measured[metric] = _metric(metric, row, total, nonnull)
            if "mean" in wanted and row["mean"] is not None:
                variance = float(row["mean_square"]) - float(row["mean"]) ** 2
                measured["mean_error"] = math.sqrt(max(variance, 0.0) / max(nonnull, 1))
            out[bucket_start(row["bucket"])] = measured
        return out

    # -- the judgement ----------------------------------------------------------------------

    def judge(
        self, series: Mapping[datetime, Mapping[str, float | None]], local: datetime
    ) -> tuple[str, str, dict[str, Any]]:
        """(outcome, message, observed) for the bucket starting at naive ``local``."""
        args, unit = self.args, self.args.bucket
        label = bucket_label(local, unit)
        expected = self.expected(local - training_span(args), local + STEP[unit])
        before = [
            (start, series[start])
            for start in bucket_starts(local - training_span(args), local, unit, self.zone)
            if start in series and to_utc(start, self.zone) not in expected
        ]
        current = series.get(local)
        observed: dict[str, Any] = {
            "bucket": local.replace(tzinfo=self.zone).isoformat(),
            "rows": int(current["rows"] or 0) if current else 0,
            "baseline_buckets": len(before),
        }
        if (reason := expected.get(to_utc(local, self.zone))) is not None:
            return "normal", f"{label}: {reason}", observed
        if len(before) < args.min_history:
            have = f"only {len(before)} {unit}s of history" if before else "no history yet"
            message = f"{label}: {have} (needs {args.min_history}): cannot judge yet"
            return "too_little_history", message, observed
        if current is None:
            return "normal", f"{label}: no rows to judge", observed
        judged = [self._judge_metric(metric, current, before, local) for metric in self.metrics()]
        observed["metrics"] = {
            j.metric: {
                "value": _round(j.value),
                "usual": _round(j.level),
                "lower": _round(j.lower),
                "upper": _round(j.upper),
                "anomaly": j.anomaly,
            }
            for j in judged
        }
        odd = [j for j in judged if j.anomaly]
        if odd:
            return (
                "anomaly",
                f"{label}: " + "; ".join(j.sentence(args.column) for j in odd),
                observed,
            )
        shown = "; ".join(j.sentence(args.column) for j in judged[:2])
        return "normal", f"{label}: as usual: {shown}", observed

    def _judge_metric(
        self,
        metric: str,
        current: Mapping[str, float | None],
        before: Sequence[tuple[datetime, Mapping[str, float | None]]],
        local: datetime,
    ) -> Judged:
        value = current.get(metric)
        points = [(start, v) for start, m in before if (v := m.get(metric)) is not None]
        if value is None or len(points) < 2:
            return Judged(metric, value, None, None, None, False)
        chosen = self._seasonal(points, local, metric)
        level = statistics.median(chosen)
        spread = MAD_SCALE * statistics.median([abs(v - level) for v in chosen])
        k = self.args.sensitivity
        if metric in RATES:
            rows = current.get("nonnull" if metric != "null_rate" else "rows") or current["rows"]
            n = max(rows or 1.0, 1.0)
            p = min(max(level, 0.001), 0.999)
            # Counting noise, with the skew of a small count (a few nulls a day): the
            # Cornish-Fisher correction of a Poisson quantile, and half a row for continuity.
            expected = p * n
            noise = (k * math.sqrt(expected * (1 - p)) + (k * k - 1) / 6 + 0.5) / n
            width = max(k * spread, noise, RATE_FLOOR, self.args.min_change_pct / 100 * level)
        else:
            noise = current.get("mean_error") or 0.0 if metric == "mean" else 0.0
            floor = self.args.min_change_pct / 100 * abs(level)
            width = max(k * spread, k * noise, floor, 1e-9)
        lower, upper = level - width, level + width
        if metric in RATES or metric in ("distinct_count", "length"):
            lower = max(lower, 0.0)
        return Judged(metric, value, level, lower, upper, not lower <= value <= upper)

    def _seasonal(
        self, points: Sequence[tuple[datetime, float]], local: datetime, metric: str
    ) -> list[float]:
        """The same weekday's values when the metric has a weekly rhythm, else all of them."""
        values = [v for _, v in points]
        if self.args.bucket != "day" or self.args.seasonality == "none":
            return values
        slots: dict[int, list[float]] = {}
        for start, v in points:
            slots.setdefault(start.weekday(), []).append(v)
        own = slots.get(local.weekday(), [])
        if self.args.seasonality == "weekday":
            return own if len(own) >= MIN_SEASON_POINTS else values
        # auto: a rhythm is one where the weekdays' medians differ by more than three times
        # the spread within a weekday, and by more than the smallest change that could alert.
        medians = [statistics.median(v) for v in slots.values()]
        within = [abs(x - statistics.median(v)) for v in slots.values() if len(v) >= 2 for x in v]
        if len(own) < MIN_SEASON_POINTS or len(medians) < 2 or not within:
            return values
        rhythm = max(medians) - min(medians)
        floor = (
            RATE_FLOOR
            if metric in RATES
            else self.args.min_change_pct / 100 * abs(statistics.median(values))
        )
        rhythmic = rhythm > 3 * MAD_SCALE * statistics.median(within) and rhythm > floor
        return own if rhythmic else values


def _metric(metric: str, row: Any, total: int, nonnull: int) -> float | None:
    if metric == "null_rate":
        return (total - nonnull) / total if total else None
    if metric == "zero_rate":
        return int(row["zeros"]) / nonnull if nonnull else None
    if metric == "negative_rate":
        return int(row["negatives"]) / nonnull if nonnull else None
    found = row[metric]
    return None if found is None else float(found)


def _show(metric: str, value: float | None) -> str:
    if value is None:
        return "—"
    if metric in RATES:
        return f"{value:.1%}"
    if metric == "distinct_count":
        return f"{value:,.0f}"
    return f"{value:,.2f}" if abs(value) < 1e6 else f"{value:,.0f}"


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


# --- backtest --------------------------------------------------------------------------------


def backtest(
    spec: CheckSpec, relation: Relation, ctx: CheckContext, start: datetime, end: datetime
) -> list[BucketVerdict]:
    """What the check would have said at the end of every bucket in ``[start, end)``."""
    check = ColumnAnomaly(spec, relation, ctx)
    judged = check.backtest_buckets(start, end)
    unit, zone = check.args.bucket, check.zone
    if not judged:
        return []
    series = check.series(judged[0] - training_span(check.args), judged[-1] + STEP[unit])
    verdicts = []
    for local in judged:
        outcome, message, observed = check.judge(series, local)
        status = verdict_status(outcome, spec.severity)
        utc = to_utc(local, zone)
        verdicts.append(BucketVerdict(utc, observed["rows"], status, message, None, None, None))
    return verdicts
