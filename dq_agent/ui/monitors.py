"""The monitors page: each time-bucketed check charted against its band, bucket by bucket."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import datetime
from html import escape
from typing import Any
from zoneinfo import ZoneInfo

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
from dq_agent.store import Store
from dq_agent.ui import pages
from dq_agent.ui.charts import ChartPoint, render_chart

CHART_BUCKETS = 60
# Statuses of a verdict that flagged its bucket (a "warn" severity flags with a warn).
FLAGGED = frozenset({"fail", "warn"})
# The order of one check's charts: rates first, as the configuration lists column metrics.
METRIC_ORDER = (*COLUMN_METRICS, "share_above", "share_below")


def render(project: Project, store: Store, csrf: str | None) -> str:
    """Every time-bucketed monitor charted against its band, flagged buckets listed."""
    parts = []
    for suite in project.suites.values():
        for spec in suite.checks:
            args, name = spec.args, spec.name
            if not isinstance(args, WindowedArgs):
                continue
            zone = ZoneInfo(args.timezone or suite.timezone)
            if isinstance(args, ColumnAnomalyArgs | DistributionShiftArgs):
                parts.append(_banded(store, suite.suite, name, args, zone, csrf))
            elif isinstance(args, NewValuesArgs):
                parts.append(_new_values(store, suite.suite, name, args, zone))
            elif isinstance(args, VolumeAnomalyArgs):
                parts.append(_volume(store, suite.suite, name, args, zone, csrf))
    return "".join(parts) or '<p class="muted">No time-bucketed checks in this project.</p>'


def _section(check: str, heading: str, body: str) -> str:
    return f'<section class="card" id="{escape(check)}"><h2>{escape(heading)}</h2>{body}</section>'


def _bucket_cell(label: str) -> str:
    # "2026-11-22" breaks at its hyphens in a narrow column otherwise.
    return f'<span style="white-space:nowrap">{escape(label)}</span>'


def _expected_form(suite: str, check: str, point: ChartPoint, csrf: str | None) -> str:
    fields = {"suite": suite, "check": check, "bucket": point.start.isoformat()}
    return pages.form("/monitors/expected", "Mark expected", csrf, fields)


# -- volume_anomaly: rows per bucket, judged again from the recorded series -------------------


def _volume(
    store: Store, suite: str, check: str, args: VolumeAnomalyArgs, zone: ZoneInfo, csrf: str | None
) -> str:
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
    chart = render_chart(points, title=f"{suite} / {check}")
    flagged = pages.table(
        ["Bucket", "Rows", "Usual", ""],
        (
            [
                _bucket_cell(p.label),
                f"{p.value:,.0f}",
                f"{p.lower or 0:,.0f}–{p.upper or 0:,.0f}",
                _expected_form(suite, check, p, csrf),
            ]
            for p in points
            if p.outcome == "anomaly"
        ),
        empty="No flagged buckets.",
    )
    return _section(check, f"{suite} / {check}", chart + flagged)


# -- column_anomaly, distribution_shift: each metric with the band it was judged by -----------


def _banded(
    store: Store,
    suite: str,
    check: str,
    args: ColumnAnomalyArgs | DistributionShiftArgs,
    zone: ZoneInfo,
    csrf: str | None,
) -> str:
    """A chart per metric the check records with its band (``name``, ``name.upper`` and
    perhaps ``name.lower``): one point per bucket, as the newest run judged it."""
    judged = store.judged_buckets(suite, check, limit=CHART_BUCKETS)
    expected = store.expected_buckets(suite, check)
    recorded = {name for verdict in judged for name in verdict["metrics"]}
    banded = [name for name in METRIC_ORDER if f"{name}.upper" in recorded]
    unit = args.bucket
    charts: list[str] = []
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
        chart = render_chart(points, title=title, unit="", percent=share)
        charts.append(f"<h3>{escape(words)}</h3>{chart}")
        flagged.update((p.start, p) for p in points if p.outcome == "anomaly")
    if not charts:
        body = _no_chart(judged, unit)
    else:
        messages = {verdict["bucket"]: verdict["message"] for verdict in judged}
        table = pages.table(
            [unit.capitalize(), "What the check said", ""],
            (
                [
                    _bucket_cell(p.label),
                    # The message starts with the bucket, already in the first column.
                    escape(messages[start].removeprefix(f"{p.label}: ")),
                    _expected_form(suite, check, p, csrf),
                ]
                for start, p in sorted(flagged.items(), reverse=True)
            ),
            empty=f"No flagged {unit}s.",
        )
        note = (
            f'<p class="muted">One point per {unit}: the newest run\'s verdict on it and the '
            "band it was judged by.</p>"
        )
        body = "".join(charts) + note + table
    return _section(check, f"{suite} / {check}", body)


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


def _no_chart(judged: Sequence[Mapping[str, Any]], unit: str) -> str:
    if not judged:
        return '<p class="muted">Not run yet.</p>'
    newest = judged[-1]
    return (
        f'<p class="muted">Nothing to chart yet: no {unit} has been judged against a band. '
        f"Latest: {pages.status(newest['status'])} {escape(newest['message'])}</p>"
    )


# -- new_values: which values appeared, when, and what the check made of them ----------------


def _new_values(store: Store, suite: str, check: str, args: NewValuesArgs, zone: ZoneInfo) -> str:
    judged = store.judged_buckets(suite, check, limit=CHART_BUCKETS)
    unit = args.bucket
    heading = f"{suite} / {check}"
    if not judged:
        return _section(check, heading, '<p class="muted">Not run yet.</p>')
    rows = []
    for verdict in reversed(judged):
        listed: dict[str, int] = verdict["observed"].get("new_values") or {}
        distinct = int(verdict["metrics"].get("new_values") or len(listed))
        if not distinct:
            continue
        values = "<br>".join(
            f"<code>{escape(value)}</code> "
            f'<span class="muted">{count:,} row{"" if count == 1 else "s"}</span>'
            for value, count in listed.items()
        )
        if distinct > len(listed):
            more = distinct - len(listed)
            values += f"{'<br>' if listed else ''}and {more:,} more"
        label = bucket_label(to_local(verdict["bucket"], zone), unit)
        rows.append(
            [
                _bucket_cell(label),
                values,
                f"{int(verdict['observed'].get('new_value_rows') or 0):,}",
                pages.status(verdict["status"]),
                pages.when(verdict["first_judged_at"]),
            ]
        )
    first = bucket_label(to_local(judged[0]["bucket"], zone), unit)
    last = bucket_label(to_local(judged[-1]["bucket"], zone), unit)
    checked = f"{len(judged)} {unit}{'' if len(judged) == 1 else 's'} checked, {first} to {last}"
    summary = (
        f"New {args.column} values in {len(rows)} of the {checked}: each is a value the "
        f"{args.training_days} days before its {unit} never had."
        if rows
        else f"No new {args.column} values in the {checked}."
    )
    headers = [unit.capitalize(), "New values", "Rows", "Check", "First reported"]
    table = pages.table(headers, rows, empty="") if rows else ""
    return _section(check, heading, f'<p class="muted">{escape(summary)}</p>{table}')
