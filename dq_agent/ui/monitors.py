"""The monitors page: each time-bucketed check charted against its band."""

from __future__ import annotations

from html import escape
from zoneinfo import ZoneInfo

from dq_agent.checks.column_anomaly import RATES
from dq_agent.checks.volume import detect
from dq_agent.config.loader import Project
from dq_agent.config.models import VolumeAnomalyArgs
from dq_agent.store import Store
from dq_agent.ui import pages
from dq_agent.ui.charts import ChartPoint, render_chart

CHART_BUCKETS = 60
# Checks that record each metric with its band (name, name.lower, name.upper) on every run.
BANDED_METRICS = frozenset({"column_anomaly", "distribution_shift"})


def render(project: Project, store: Store, csrf: str | None) -> str:
    """Every time-bucketed monitor charted against its band, flagged buckets listed."""
    parts = []
    for suite in project.suites.values():
        for spec in suite.checks:
            if spec.type in BANDED_METRICS:
                parts.append(_metric_charts(store, suite.suite, spec.name))
            if not isinstance(spec.args, VolumeAnomalyArgs):
                continue
            points = _points(store, suite.suite, spec.name, spec.args, suite.timezone)
            chart = render_chart(points, title=f"{suite.suite} / {spec.name}")
            flagged = pages.table(
                ["Bucket", "Rows", "Usual", ""],
                (
                    [
                        escape(p.label),
                        f"{p.value:,.0f}",
                        f"{p.lower or 0:,.0f}–{p.upper or 0:,.0f}",
                        pages.form(
                            "/monitors/expected",
                            "Mark expected",
                            csrf,
                            {
                                "suite": suite.suite,
                                "check": spec.name,
                                "bucket": p.start.isoformat(),
                            },
                        ),
                    ]
                    for p in points
                    if p.outcome == "anomaly"
                ),
                empty="No flagged buckets.",
            )
            parts.append(
                f'<section class="card" id="{escape(spec.name)}"><h2>'
                f"{escape(suite.suite)} / {escape(spec.name)}</h2>{chart}{flagged}</section>"
            )
    return "".join(parts) or '<p class="muted">No time-bucketed checks in this project.</p>'


def _metric_charts(store: Store, suite: str, check: str) -> str:
    """A chart per metric the check recorded with its band, one point per run."""
    recorded = store.check_metrics(suite, check)
    charts = []
    for name, values in recorded.items():
        if "." in name or f"{name}.upper" not in recorded:
            continue
        lower, upper = recorded.get(f"{name}.lower", {}), recorded[f"{name}.upper"]
        points = []
        for at, value in list(values.items())[-CHART_BUCKETS:]:
            low, high = lower.get(at), upper.get(at)
            outside = value is not None and (
                (high is not None and value > high) or (low is not None and value < low)
            )
            points.append(
                ChartPoint(
                    start=at,
                    label=f"{at:%Y-%m-%d %H:%M}",
                    value=float(value or 0.0),
                    lower=low if low is not None else (0.0 if high is not None else None),
                    upper=high,
                    outcome="anomaly" if outside else "normal",
                )
            )
        share = name in RATES or name.startswith("share_")
        chart = render_chart(
            points, title=f"{suite} / {check}: {name}, run by run", unit="", percent=share
        )
        charts.append(f"<h3>{escape(name.replace('_', ' '))}</h3>{chart}")
    if not charts:
        return ""
    return (
        f'<section class="card" id="{escape(check)}"><h2>{escape(suite)} / '
        f'{escape(check)}</h2>{"".join(charts)}<p class="muted">One point per run: what '
        "the run judged (its last complete bucket) and the band it judged it by. Mark a day "
        "expected from its incident.</p></section>"
    )


def _points(
    store: Store, suite: str, check: str, args: VolumeAnomalyArgs, timezone: str
) -> list[ChartPoint]:
    series = store.bucket_history(suite, check)
    expected = store.expected_buckets(suite, check)
    zone = ZoneInfo(args.timezone or timezone)
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
    return points
