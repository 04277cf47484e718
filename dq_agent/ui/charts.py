"""A monitor's history as a self-contained inline SVG chart: no scripts, fonts or assets."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from html import escape

_LEFT, _RIGHT, _TOP, _BOTTOM = 56, 16, 12, 28
_CHAR_PX = 6  # rough width of a 10px sans-serif glyph, to keep x labels from overlapping
# Inline <style> in an SVG applies to the whole HTML page, so every rule is scoped to the chart.
_STYLE = (
    ".dq-chart text{font:10px sans-serif;fill:#555}"
    ".dq-chart .grid{stroke:#e5e7eb;stroke-width:1}"
    ".dq-chart .band{fill:#3b82f6;fill-opacity:.15;stroke:#3b82f6;stroke-opacity:.3}"
    ".dq-chart .line{fill:none;stroke:#1f2937;stroke-width:1.5}"
    ".dq-chart .point{fill:#1f2937}"
    ".dq-chart .point.anomaly{fill:#dc2626}"
    ".dq-chart .point.expected{fill:#fff;stroke:#2563eb;stroke-width:2}"
    ".dq-chart .point.too_little_history{fill:#9ca3af}"
)
_SUFFIX = {"anomaly": ", anomaly", "expected": ", marked expected"}


@dataclass(frozen=True)
class ChartPoint:
    """One bucket of a monitored metric and what the check made of it."""

    start: datetime  # aware UTC bucket start
    label: str  # e.g. "2026-11-20" or "2026-11-20 14:00"
    value: float  # rows in the bucket
    lower: float | None  # baseline band; None when there was too little history for one
    upper: float | None
    outcome: str  # "normal" | "anomaly" | "expected" | "too_little_history"


def _num(value: float, percent: bool = False) -> str:
    if percent:
        shown = round(value * 100, 1) + 0.0
        return f"{shown:.0f}%" if shown == int(shown) else f"{shown:.1f}%"
    # Adding 0.0 turns -0.0 into 0.0, so a tiny negative never shows as "-0".
    rounded = round(value, 1) + 0.0
    return f"{rounded:,.0f}" if rounded == int(rounded) else f"{rounded:,.1f}"


def _ticks(top: float, floor: float) -> list[float]:
    """3-5 evenly spaced round values from 0 to at least ``top`` (and ``floor``)."""
    # Steps of 1, 2 and 5 times a power of ten are at most 2.5x apart, so 4 steps of at
    # least top/4 always need 2 to 4 steps; a floor of 4 keeps every tick of a count whole.
    raw = max(top, floor) / 4
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(f * magnitude for f in (1, 2, 5, 10) if f * magnitude >= raw)
    return [round(i * step, 12) for i in range(math.ceil(max(top, floor) / step - 1e-9) + 1)]


def _label_indexes(points: Sequence[ChartPoint], plot_w: float) -> list[int]:
    count = len(points)
    if count <= 1:
        return list(range(count))
    step_px = plot_w / (count - 1)
    # The end labels are anchored at the plot's edges, so a centred neighbour needs one and a
    # half label widths of room; spacing all labels that far apart keeps the rule simple.
    room = 1.5 * max(len(p.label) for p in points) * _CHAR_PX + 8
    stride = max(math.ceil(room / step_px), math.ceil((count - 1) / 7))
    picked = list(range(0, count - 1, stride))
    if len(picked) > 1 and (count - 1 - picked[-1]) * step_px < room:
        picked.pop()  # the last bucket is always labelled; a label crowding it gives way
    return [*picked, count - 1]


def _tooltip(p: ChartPoint, lower: float | None, unit: str, percent: bool) -> str:
    text = f"{p.label}: {_num(p.value, percent)}"
    if unit == "rows":
        text += f" row{'' if p.value == 1 else 's'}"
    elif unit:
        text += f" {unit}"
    if lower is not None and p.upper is not None:
        text += f" (usual {_num(lower, percent)}\u2013{_num(p.upper, percent)})"
    return text + _SUFFIX.get(p.outcome, "")


def render_chart(
    points: Sequence[ChartPoint],
    *,
    title: str,
    unit: str = "rows",
    percent: bool = False,
    width: int = 720,
    height: int = 240,
) -> str:
    """An ``<svg>`` element charting ``points`` (oldest first) against their baseline band.

    ``unit`` follows each value in the tooltips (``rows``: counts, whole ticks); ``percent``
    shows shares (0.25) as percentages.

    The band is drawn wherever consecutive buckets have one, the metric as a line with one
    circle per bucket; each circle carries its outcome as a class and ``data-outcome``, its
    start as ``data-bucket`` and a tooltip. All text is escaped, so any title is safe.
    """
    name = escape(title)
    head = (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="dq-chart" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" role="img" aria-label="{name}">'
        f"<title>{name}</title><style>{_STYLE}</style>"
    )
    if not points:
        return (
            f'{head}<text x="{width / 2:.1f}" y="{height / 2:.1f}" text-anchor="middle">'
            "no history recorded yet</text></svg>"
        )
    plot_w, plot_h = width - _LEFT - _RIGHT, height - _TOP - _BOTTOM
    # The band's lower bound can dip below zero; row counts cannot, and the axis starts at 0.
    lowers = [None if p.lower is None else max(p.lower, 0.0) for p in points]
    top = max([p.value for p in points] + [p.upper for p in points if p.upper is not None])
    # Counts keep whole ticks; other values (a null rate, a mean of cents) scale freely.
    ticks = _ticks(top, 4.0 if unit == "rows" else max(top, 1e-9) if top > 0 else 0.04)

    def x(i: int) -> float:
        return _LEFT + (plot_w / 2 if len(points) == 1 else i * plot_w / (len(points) - 1))

    def y(v: float) -> float:
        return _TOP + plot_h * (1 - v / ticks[-1])

    parts = [head]
    for tick in ticks:
        parts.append(
            f'<line class="grid" x1="{_LEFT}" x2="{width - _RIGHT}" y1="{y(tick):.1f}" '
            f'y2="{y(tick):.1f}"/><text class="y-tick" x="{_LEFT - 6}" y="{y(tick) + 3:.1f}" '
            f'text-anchor="end">{_num(tick, percent)}</text>'
        )
    for i in _label_indexes(points, plot_w):
        # The end labels hug the plot's edges instead of spilling past the viewBox.
        edge = {0: "start", len(points) - 1: "end"} if len(points) > 1 else {}
        anchor = edge.get(i, "middle")
        parts.append(
            f'<text class="x-tick" x="{x(i):.1f}" y="{height - 8}" text-anchor="{anchor}">'
            f"{escape(points[i].label)}</text>"
        )
    runs: list[list[int]] = []
    for i, p in enumerate(points):
        if lowers[i] is None or p.upper is None:
            runs.append([])
        elif runs and runs[-1]:
            runs[-1].append(i)
        else:
            runs.append([i])
    for run in filter(None, runs):
        # A lone bucket with a band would be a zero-width polygon; widen it to stay visible.
        pad = 3.0 if len(run) == 1 else 0.0
        upper = [(x(i) + d, y(points[i].upper or 0.0)) for i in run for d in (-pad, pad)]
        lower = [(x(i) + d, y(lowers[i] or 0.0)) for i in reversed(run) for d in (pad, -pad)]
        path = " L".join(f"{px:.1f},{py:.1f}" for px, py in upper + lower)
        parts.append(f'<path class="band" d="M{path} Z"/>')
    line = " ".join(f"{x(i):.1f},{y(p.value):.1f}" for i, p in enumerate(points))
    parts.append(f'<polyline class="line" points="{line}"/>')
    for i, p in enumerate(points):
        outcome = escape(p.outcome)
        parts.append(
            f'<circle class="point {outcome}" cx="{x(i):.1f}" cy="{y(p.value):.1f}" '
            f'r="{4.5 if p.outcome == "anomaly" else 3}" data-bucket="{p.start.isoformat()}" '
            f'data-outcome="{outcome}"><title>'
            f"{escape(_tooltip(p, lowers[i], unit, percent))}</title></circle>"
        )
    return "".join(parts) + "</svg>"
