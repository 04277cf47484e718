"""The monitors page: each time-bucketed check charted against its band, bucket by bucket."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar
from zoneinfo import ZoneInfo

from markupsafe import Markup

from dq_agent.checks.column_anomaly import RATES
from dq_agent.checks.volume import detect
from dq_agent.checks.windows import BucketUnit, bucket_label, to_local
from dq_agent.config.loader import Project
from dq_agent.config.models import (
    COLUMN_METRICS,
    ColumnAnomalyArgs,
    DistributionShiftArgs,
    NewValuesArgs,
    VolumeAnomalyArgs,
    WindowedArgs,
)
from dq_agent.store.buckets import BucketRepository
from dq_agent.ui import templating
from dq_agent.ui.charts import Chart, ChartPoint, chart

CHART_BUCKETS = 60
# Statuses of a verdict that flagged its bucket (a "warn" severity flags with a warn).
FLAGGED = frozenset({"fail", "warn"})
# The order of one check's charts: rates first, as the configuration lists column metrics.
METRIC_ORDER = (*COLUMN_METRICS, "share_above", "share_below")


@dataclass(frozen=True)
class Flagged:
    """A flagged bucket: its label, what is said of it, and its start (for Mark expected)."""

    label: str
    said: Sequence[str]  # the cells between the bucket and its button
    start: datetime


@dataclass(frozen=True)
class Volume:
    """A ``volume_anomaly`` check: rows per bucket, judged again from the recorded series."""

    kind: ClassVar[str] = "volume"
    suite: str
    check: str
    chart: Chart
    flagged: Sequence[Flagged]


@dataclass(frozen=True)
class Banded:
    """A ``column_anomaly`` or ``distribution_shift`` check: a chart per metric it records
    with its band (``charts``: the metric in words, and its chart); with none, its latest
    verdict (``latest``: status and message; None when it never ran)."""

    kind: ClassVar[str] = "banded"
    suite: str
    check: str
    unit: str
    charts: Sequence[tuple[str, Chart]]
    flagged: Sequence[Flagged]
    latest: tuple[str, str] | None


@dataclass(frozen=True)
class NewBucket:
    """A bucket that brought new values: those listed with their rows, how many more."""

    label: str
    values: Sequence[tuple[str, int]]
    more: int
    rows: int
    status: str
    first_judged_at: datetime


@dataclass(frozen=True)
class NewValues:
    """A ``new_values`` check: the buckets that brought new values (``judged``: how many
    buckets it has judged)."""

    kind: ClassVar[str] = "new_values"
    suite: str
    check: str
    unit: str
    judged: int
    summary: str
    buckets: Sequence[NewBucket]


Monitor = Volume | Banded | NewValues


def render(project: Project, store: BucketRepository, csrf: str | None) -> Markup:
    """Every time-bucketed monitor charted against its band, flagged buckets listed."""
    found: list[Monitor] = []
    for suite in project.suites.values():
        for spec in suite.checks:
            args, name = spec.args, spec.name
            if not isinstance(args, WindowedArgs):
                continue
            zone = ZoneInfo(args.timezone or suite.timezone)
            if isinstance(args, ColumnAnomalyArgs | DistributionShiftArgs):
                found.append(_banded(store, suite.suite, name, args, zone))
            elif isinstance(args, NewValuesArgs):
                found.append(_new_values(store, suite.suite, name, args, zone))
            elif isinstance(args, VolumeAnomalyArgs):
                found.append(_volume(store, suite.suite, name, args, zone))
    return templating.render("monitors.html", monitors=found, csrf=csrf)


def _volume(
    store: BucketRepository, suite: str, check: str, args: VolumeAnomalyArgs, zone: ZoneInfo
) -> Volume:
    series = store.bucket_history(suite, check)
    expected = store.expected_buckets(suite, check)
    points = []
    for bucket in sorted(series)[-CHART_BUCKETS:]:
        found = detect(series, bucket, args, zone=zone, expected=expected)
        points.append(
            ChartPoint(
                start=bucket,
                label=found.label,
                value=float(found.rows),
                lower=found.lower,
                upper=found.upper,
                outcome=found.outcome,
            )
        )
    flagged = [
        Flagged(p.label, [f"{p.value:,.0f}", f"{p.lower or 0:,.0f}–{p.upper or 0:,.0f}"], p.start)
        for p in points
        if p.outcome == "anomaly"
    ]
    return Volume(suite, check, chart(points, title=f"{suite} / {check}"), flagged)


# -- column_anomaly, distribution_shift: each metric with the band it was judged by -----------


def _banded(
    store: BucketRepository,
    suite: str,
    check: str,
    args: ColumnAnomalyArgs | DistributionShiftArgs,
    zone: ZoneInfo,
) -> Banded:
    """A chart per metric the check records with its band (``name``, ``name.upper`` and
    perhaps ``name.lower``): one point per bucket, as the newest run judged it."""
    judged = store.judged_buckets(suite, check, limit=CHART_BUCKETS)
    expected = store.expected_buckets(suite, check)
    recorded = {name for verdict in judged for name in verdict["metrics"]}
    banded = [name for name in METRIC_ORDER if f"{name}.upper" in recorded]
    unit = args.bucket
    charts: list[tuple[str, Chart]] = []
    flagged: dict[datetime, ChartPoint] = {}
    for name in banded:
        points = [
            point
            for verdict in judged
            if (point := _metric_point(verdict, name, zone, unit, expected)) is not None
        ]
        share = name in RATES or name.startswith("share_")
        words = name.replace("_", " ")
        title = f"{suite} / {check}: {words}, {unit} by {unit}"
        charts.append((words, chart(points, title=title, unit="", percent=share)))
        flagged.update((p.start, p) for p in points if p.outcome == "anomaly")
    messages = {verdict["bucket"]: verdict["message"] for verdict in judged}
    listed = [
        # The message starts with the bucket, already in the first column.
        Flagged(p.label, [messages[start].removeprefix(f"{p.label}: ")], start)
        for start, p in sorted(flagged.items(), reverse=True)
    ]
    latest = (judged[-1]["status"], judged[-1]["message"]) if judged else None
    return Banded(suite, check, unit, charts, listed, latest)


def _metric_point(
    verdict: Mapping[str, Any],
    name: str,
    zone: ZoneInfo,
    unit: BucketUnit,
    expected: Collection[datetime],
) -> ChartPoint | None:
    metrics = verdict["metrics"]
    value = metrics.get(name)
    if value is None:
        return None  # not judged: too little history, no rows, a closure day
    low, high = metrics.get(f"{name}.lower"), metrics.get(f"{name}.upper")
    outside = (high is not None and value > high) or (low is not None and value < low)
    if verdict["bucket"] in expected:
        outcome = "expected"
    elif outside and verdict["status"] in FLAGGED:
        outcome = "anomaly"
    else:
        # Within its band, or beyond it and still passing (a shift of too few rows to matter).
        outcome = "normal"
    return ChartPoint(
        start=verdict["bucket"],
        label=bucket_label(to_local(verdict["bucket"], zone), unit),
        value=float(value),
        # Shares beyond the usual range are recorded with an upper limit only: from none.
        lower=low if low is not None else (0.0 if high is not None else None),
        upper=high,
        outcome=outcome,
    )


# -- new_values: which values appeared, when, and what the check made of them ----------------


def _new_values(
    store: BucketRepository, suite: str, check: str, args: NewValuesArgs, zone: ZoneInfo
) -> NewValues:
    judged = store.judged_buckets(suite, check, limit=CHART_BUCKETS)
    unit = args.bucket
    if not judged:
        return NewValues(suite, check, unit, 0, "", [])
    buckets = []
    for verdict in reversed(judged):
        listed: dict[str, int] = verdict["observed"].get("new_values") or {}
        distinct = int(verdict["metrics"].get("new_values") or len(listed))
        if not distinct:
            continue
        buckets.append(
            NewBucket(
                label=bucket_label(to_local(verdict["bucket"], zone), unit),
                values=list(listed.items()),
                more=max(distinct - len(listed), 0),
                rows=int(verdict["observed"].get("new_value_rows") or 0),
                status=verdict["status"],
                first_judged_at=verdict["first_judged_at"],
            )
        )
    first = bucket_label(to_local(judged[0]["bucket"], zone), unit)
    last = bucket_label(to_local(judged[-1]["bucket"], zone), unit)
    checked = f"{len(judged)} {unit}{'' if len(judged) == 1 else 's'} checked, {first} to {last}"
    summary = (
        f"New {args.column} values in {len(buckets)} of the {checked}: each is a value the "
        f"{args.training_days} days before its {unit} never had."
        if buckets
        else f"No new {args.column} values in the {checked}."
    )
    return NewValues(suite, check, unit, len(judged), summary, buckets)
