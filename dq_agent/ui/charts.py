"""A monitor's history as a self-contained inline SVG chart: no scripts, fonts or assets.

The geometry is computed here (:func:`chart`); the ``chart.svg`` template draws it."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import pairwise

from markupsafe import Markup

from dq_agent.ui import templating

# The chart is drawn in a viewBox this wide and scales to its card: 1,250 px wide at most, 740
# in a window of 800. Its text is drawn smaller in a wide window and larger in a narrow one,
# so that it shows at 11 to 15 px.
WIDTH, HEIGHT = 1000, 270
_FONT, _WIDE_FONT, _NARROW_FONT = 13, 12, 16
_CHAR_PX = 0.6 * _NARROW_FONT  # rough width of a digit, to keep labels from overlapping
_GAP = 12  # the least room between two x labels
_RIGHT, _TOP, _BOTTOM = 12, 14, 34
_SUFFIX = {"anomaly": ", anomaly", "expected": ", marked expected"}


@dataclass(frozen=True)
class ChartPoint:
    """One bucket of a monitored metric and what the check made of it."""

    start: datetime  # aware UTC bucket start
    label: str  # e.g. "2026-11-20" or "2026-11-20 14:00"
    value: float  # the metric in the bucket: its rows, a null rate, a share
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


def _ticks(low: float, high: float, *, whole: bool) -> list[float]:
    """3-6 evenly spaced round values from ``low`` (or just below) to at least ``high``."""
    # Steps of 1, 2 and 5 times a power of ten are at most 2.5x apart, so a step of at least a
    # quarter of the span takes 2 to 4 steps, and one more at each end to reach round values.
    raw = (high - low) / 4
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(f * magnitude for f in (1, 2, 5, 10) if f * magnitude >= raw)
    if whole:
        step = max(step, 1.0)
    first = math.floor(low / step + 1e-9) * step
    steps = max(math.ceil((high - first) / step - 1e-9), 1)
    return [round(first + i * step, 12) + 0.0 for i in range(steps + 1)]


def _axis(
    points: Sequence[ChartPoint], lowers: Sequence[float | None], counts: bool
) -> tuple[float, float]:
    """The range the y axis must cover. Counts and shares start at zero; other values
    (a mean, a length) do too unless they keep well away from it, where zero would squash
    them into a flat line."""
    values = [p.value for p in points]
    high = max(values + [p.upper for p in points if p.upper is not None])
    low = min(values + [v for v in lowers if v is not None])
    if counts or (low >= 0 and low <= high / 2) or (high <= 0 and high >= low / 2):
        low, high = min(low, 0.0), max(high, 0.0)
    if high - low < 1e-9:  # a flat line of zeros, or of one value
        pad = abs(high) / 10 or 0.04
        low, high = (0.0, pad) if low >= 0 and counts else (low - pad, high + pad)
    return low, high


def _tick_text(value: float, step: float, percent: bool) -> str:
    """A tick with as many decimals as its step needs: 0.5, 1.0, 1.5, not 0, 1, 2."""
    if percent:
        value, step = value * 100, step * 100
    digits = max(0, -math.floor(math.log10(step) + 1e-9)) if step else 0
    text = f"{value + 0.0:,.{digits}f}"
    return f"{text}%" if percent else text


def _label_indexes(labels: Sequence[str], xs: Sequence[float]) -> list[int]:
    """The points whose x labels are drawn: the first, the last and evenly spaced ones between
    them, never more than eight nor two closer than ``_GAP``."""
    count = len(xs)
    if count <= 1:
        return list(range(count))

    def extent(i: int) -> tuple[float, float]:
        # The end labels hug the plot's edges instead of spilling past the viewBox.
        width = len(labels[i]) * _CHAR_PX
        if i == 0:
            return xs[i], xs[i] + width
        if i == count - 1:
            return xs[i] - width, xs[i]
        return xs[i] - width / 2, xs[i] + width / 2

    closest = max(min(b - a for a, b in pairwise(xs)), 1e-9)
    # The first label starts at its point, so a centred neighbour needs one and a half label
    # widths of room; spacing all labels that far apart keeps them evenly spaced.
    room = 1.5 * max(len(label) for label in labels) * _CHAR_PX + _GAP
    stride = max(math.ceil(room / closest), math.ceil((count - 1) / 7))
    picked = [0]
    for i in range(stride, count - 1, stride):
        if extent(i)[0] - extent(picked[-1])[1] >= _GAP:
            picked.append(i)
    # The last bucket is always labelled; labels crowding it give way (the first one too,
    # if the plot is too narrow for both).
    while picked and extent(count - 1)[0] - extent(picked[-1])[1] < _GAP:
        picked.pop()
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


@dataclass(frozen=True)
class Tick:
    """A y value's grid line and its text (``y``: its height, formatted)."""

    y: str
    text_y: str
    text: str


@dataclass(frozen=True)
class Label:
    """A bucket's label under the x axis."""

    x: str
    anchor: str  # "start", "middle" or "end"
    text: str


@dataclass(frozen=True)
class Circle:
    """A bucket's point: where, how large, its outcome, its start and its tooltip."""

    x: str
    y: str
    r: int
    outcome: str
    bucket: str
    tooltip: str


@dataclass(frozen=True)
class Chart:
    """What ``chart.svg`` draws, its coordinates formatted; no ``circles`` draws "no
    history recorded yet"."""

    title: str
    width: int
    height: int
    left: str = ""  # where the plot starts, after the y ticks' text
    right: int = 0
    ticks_x: str = ""  # where the y ticks' text ends
    label_y: int = 0
    ticks: Sequence[Tick] = ()
    labels: Sequence[Label] = ()
    bands: Sequence[str] = ()  # each band's path
    line: str = ""  # the polyline's points
    circles: Sequence[Circle] = ()
    fonts: tuple[int, int, int] = (_FONT, _WIDE_FONT, _NARROW_FONT)  # usual, wide, narrow


def render_chart(
    points: Sequence[ChartPoint],
    *,
    title: str,
    unit: str = "rows",
    percent: bool = False,
    width: int = WIDTH,
    height: int = HEIGHT,
) -> Markup:
    """An SVG element charting ``points`` (oldest first) against their baseline band, as
    :func:`chart` lays it out. All text is escaped, so any title is safe."""
    drawn = chart(points, title=title, unit=unit, percent=percent, width=width, height=height)
    return templating.render("chart.svg", chart=drawn)


def chart(
    points: Sequence[ChartPoint],
    *,
    title: str,
    unit: str = "rows",
    percent: bool = False,
    width: int = WIDTH,
    height: int = HEIGHT,
) -> Chart:
    """``points`` (oldest first) charted against their baseline band.

    ``unit`` follows each value in the tooltips (``rows``: counts, whole ticks from zero);
    ``percent`` shows shares (0.25) as percentages. The chart is ``width`` by ``height`` in
    its own units and as wide as its container on the page.

    Points stand at their buckets' starts, so a bucket missing from ``points`` leaves its
    room empty. The band is drawn wherever consecutive buckets have one, the metric as a line
    with one circle per bucket; each circle carries its outcome as a class and
    ``data-outcome``, its start as ``data-bucket`` and a tooltip.
    """
    if not points:
        return Chart(title, width, height)
    counts = unit == "rows" or percent
    # Row counts and shares cannot be negative, even where the band's lower bound is.
    lowers = [None if p.lower is None else max(p.lower, 0.0) if counts else p.lower for p in points]
    low, high = _axis(points, lowers, counts)
    ticks = _ticks(low, max(high, 4.0) if unit == "rows" else high, whole=unit == "rows")
    step = ticks[1] - ticks[0]
    tick_texts = [_tick_text(tick, step, percent) for tick in ticks]
    left = max(len(text) for text in tick_texts) * _CHAR_PX + 14
    plot_w, plot_h = width - left - _RIGHT, height - _TOP - _BOTTOM
    first, span = points[0].start, (points[-1].start - points[0].start).total_seconds()
    xs = [
        left + (plot_w / 2 if not span else (p.start - first).total_seconds() / span * plot_w)
        for p in points
    ]

    def y(v: float) -> float:
        return _TOP + plot_h * (ticks[-1] - v) / (ticks[-1] - ticks[0])

    grid = [
        Tick(f"{y(tick):.1f}", f"{y(tick) + 5:.1f}", text)
        for tick, text in zip(ticks, tick_texts, strict=True)
    ]
    edge = {0: "start", len(points) - 1: "end"} if len(points) > 1 else {}
    labels = [
        Label(f"{xs[i]:.1f}", edge.get(i, "middle"), points[i].label)
        for i in _label_indexes([p.label for p in points], xs)
    ]
    runs: list[list[int]] = []
    for i, p in enumerate(points):
        if lowers[i] is None or p.upper is None:
            runs.append([])
        elif runs and runs[-1]:
            runs[-1].append(i)
        else:
            runs.append([i])
    bands = []
    for run in filter(None, runs):
        # A lone bucket with a band would be a zero-width polygon; widen it to stay visible.
        pad = 4.0 if len(run) == 1 else 0.0
        upper = [(xs[i] + d, y(points[i].upper or 0.0)) for i in run for d in (-pad, pad)]
        lower = [(xs[i] + d, y(lowers[i] or 0.0)) for i in reversed(run) for d in (pad, -pad)]
        bands.append(" L".join(f"{px:.1f},{py:.1f}" for px, py in upper + lower))
    circles = [
        Circle(
            x=f"{xs[i]:.1f}",
            y=f"{y(p.value):.1f}",
            r=6 if p.outcome == "anomaly" else 4,
            outcome=p.outcome,
            bucket=p.start.isoformat(),
            tooltip=_tooltip(p, lowers[i], unit, percent),
        )
        for i, p in enumerate(points)
    ]
    return Chart(
        title,
        width,
        height,
        left=f"{left:.1f}",
        right=width - _RIGHT,
        ticks_x=f"{left - 8:.1f}",
        label_y=height - 10,
        ticks=grid,
        labels=labels,
        bands=bands,
        line=" ".join(f"{xs[i]:.1f},{y(p.value):.1f}" for i, p in enumerate(points)),
        circles=circles,
    )
