"""The monitor chart: well-formed inline SVG whose points, band and axis say what the data says."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from itertools import pairwise

import pytest

from dq_agent.ui.charts import ChartPoint, render_chart

NS = {"svg": "http://www.w3.org/2000/svg"}
DAY0 = datetime(2026, 11, 1, tzinfo=UTC)


def point(
    i: int,
    value: float,
    band: tuple[float, float] | None = (900.0, 1_100.0),
    outcome: str = "normal",
) -> ChartPoint:
    start = DAY0 + timedelta(days=i)
    lower, upper = band if band is not None else (None, None)
    return ChartPoint(start, start.date().isoformat(), value, lower, upper, outcome)


def parse(svg: str) -> ET.Element:
    root = ET.fromstring(svg)
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    return root


def circles(root: ET.Element) -> list[ET.Element]:
    return root.findall(".//svg:circle", NS)


def bands(root: ET.Element) -> list[ET.Element]:
    return [p for p in root.findall(".//svg:path", NS) if p.get("class") == "band"]


def y_ticks(root: ET.Element) -> list[str]:
    return [t.text or "" for t in root.findall(".//svg:text", NS) if t.get("class") == "y-tick"]


def test_one_circle_per_point_with_bucket_outcome_and_tooltip() -> None:
    points = [
        point(0, 1_000),
        point(1, 1_234, outcome="anomaly"),
        point(2, 5_000, outcome="expected"),
        point(3, 10, band=None, outcome="too_little_history"),
    ]
    root = parse(render_chart(points, title="orders volume"))
    found = circles(root)
    assert [c.get("data-bucket") for c in found] == [p.start.isoformat() for p in points]
    assert [c.get("data-outcome") for c in found] == [p.outcome for p in points]
    assert [(c.get("class") or "").split() for c in found] == [["point", p.outcome] for p in points]
    tips = [c.findtext("svg:title", namespaces=NS) for c in found]
    assert tips == [
        "2026-11-01: 1,000 rows (usual 900\u20131,100)",
        "2026-11-02: 1,234 rows (usual 900\u20131,100), anomaly",
        "2026-11-03: 5,000 rows (usual 900\u20131,100), marked expected",
        "2026-11-04: 10 rows",
    ]
    anomaly = found[1]
    assert float(anomaly.get("r", "0")) > float(found[0].get("r", "0"))


def test_root_is_labelled_and_self_contained() -> None:
    svg = render_chart([point(0, 5), point(1, 7)], title="orders volume")
    root = parse(svg)
    assert root.get("role") == "img"
    assert root.get("aria-label") == "orders volume"
    # As wide as its card, drawn in a viewBox that keeps its text readable when scaled.
    assert (root.get("width"), root.get("height")) == ("100%", None)
    assert root.get("viewBox") == "0 0 1000 270"
    assert root.findtext("svg:title", namespaces=NS) == "orders volume"
    assert root.find("svg:style", NS) is not None
    assert "<script" not in svg and "http://" not in svg.replace('xmlns="http://www.w3', "")


def test_band_drawn_per_run_of_points_that_have_one() -> None:
    with_gap = [point(0, 1_000), point(1, 1_000), point(2, 1_000, band=None), point(3, 1_000)]
    assert len(bands(parse(render_chart(with_gap, title="t")))) == 2
    unbroken = [point(i, 1_000) for i in range(5)]
    assert len(bands(parse(render_chart(unbroken, title="t")))) == 1
    no_band = [point(i, 3, band=None, outcome="too_little_history") for i in range(3)]
    assert bands(parse(render_chart(no_band, title="t"))) == []


def test_title_with_markup_characters_is_escaped() -> None:
    title = 'a<b & "c"'
    svg = render_chart([point(0, 1)], title=title)
    assert "a<b" not in svg
    root = parse(svg)
    assert root.get("aria-label") == title
    assert root.findtext("svg:title", namespaces=NS) == title


def test_labels_are_escaped() -> None:
    odd = ChartPoint(DAY0, "<week & 'one'>", 3, None, None, "too_little_history")
    root = parse(render_chart([odd], title="t"))
    x_labels = [t.text for t in root.findall(".//svg:text", NS) if t.get("class") == "x-tick"]
    assert x_labels == ["<week & 'one'>"]


def test_empty_history_says_so() -> None:
    root = parse(render_chart([], title="orders <new>"))
    assert root.get("aria-label") == "orders <new>"
    assert [t.text for t in root.findall(".//svg:text", NS)] == ["no history recorded yet"]
    assert circles(root) == []


def test_y_ticks_are_round_formatted_and_reach_the_band() -> None:
    # The band's upper bound, not the largest value, sets the top of the axis.
    points = [point(0, 800, band=(900, 1_234)), point(1, 950, band=(900, 1_234))]
    labels = y_ticks(parse(render_chart(points, title="t")))
    assert 3 <= len(labels) <= 5
    assert labels[0] == "0"
    assert all(re.fullmatch(r"\d{1,3}(,\d{3})*", label) for label in labels), labels
    values = [int(label.replace(",", "")) for label in labels]
    assert values == sorted(values) and values[-1] >= 1_234
    assert "1,000" in labels or "1,500" in labels


def test_y_ticks_for_large_and_fractional_values() -> None:
    points = [point(0, 1_234_567.000001, band=None), point(1, 2_000_000.4, band=None)]
    labels = y_ticks(parse(render_chart(points, title="t")))
    # Just over 2,000,000 needs a tick above it; steps of 500,000 would make six ticks.
    assert labels == ["0", "1,000,000", "2,000,000", "3,000,000"]


def test_all_zero_values_and_single_point_render() -> None:
    zeros = [point(i, 0, band=None, outcome="too_little_history") for i in range(4)]
    root = parse(render_chart(zeros, title="t"))
    labels = y_ticks(root)
    assert 3 <= len(labels) <= 5 and labels[0] == "0"
    assert len({c.get("cy") for c in circles(root)}) == 1
    single = parse(render_chart([point(0, 42)], title="t"))
    assert len(circles(single)) == 1
    assert len(bands(single)) == 1


def test_larger_value_is_drawn_higher() -> None:
    points = [point(0, 100), point(1, 1_000), point(2, 0, band=None)]
    cys = [float(c.get("cy", "nan")) for c in circles(parse(render_chart(points, title="t")))]
    assert cys[1] < cys[0] < cys[2]  # SVG y grows downward


@pytest.mark.parametrize(("count", "hours"), [(60, False), (48, True), (9, False), (2, True)])
def test_x_labels_are_few_include_both_ends_and_do_not_overlap(count: int, hours: bool) -> None:
    fmt = "%Y-%m-%d %H:00" if hours else "%Y-%m-%d"
    starts = [
        DAY0 + timedelta(hours=i) if hours else DAY0 + timedelta(days=i) for i in range(count)
    ]
    points = [ChartPoint(s, s.strftime(fmt), 1_000, 900, 1_100, "normal") for s in starts]
    root = parse(render_chart(points, title="t"))
    ticks = [t for t in root.findall(".//svg:text", NS) if t.get("class") == "x-tick"]
    assert 2 <= len(ticks) <= 8
    assert ticks[0].text == points[0].label and ticks[-1].text == points[-1].label
    extents = []
    for tick in ticks:
        # A digit is 0.56 em wide; in a narrow window the chart's text is 16 px.
        x, width = float(tick.get("x", "nan")), len(tick.text or "") * 0.56 * 16
        shift = {"start": 0.0, "middle": width / 2, "end": width}[tick.get("text-anchor", "")]
        extents.append((x - shift, x - shift + width))
    assert all(a[1] < b[0] for a, b in pairwise(extents)), extents
    assert extents[0][0] >= 0 and extents[-1][1] <= 1000


def test_shares_are_charted_as_percentages_on_their_own_scale() -> None:
    points = [
        point(0, 0.015, (0.0, 0.05)),
        point(1, 0.02, (0.0, 0.05)),
        point(2, 0.26, (0.0, 0.05), outcome="anomaly"),
    ]
    root = parse(render_chart(points, title="null rate", unit="", percent=True))
    assert y_ticks(root) == ["0%", "10%", "20%", "30%"]
    tooltip = circles(root)[2].find("svg:title", NS)
    assert tooltip is not None
    assert tooltip.text == f"{points[2].label}: 26% (usual 0%–5%), anomaly"


def x_of(root: ET.Element) -> list[float]:
    return [float(c.get("cx", "nan")) for c in circles(root)]


def test_points_stand_at_their_buckets_so_a_missing_day_leaves_a_gap() -> None:
    points = [point(0, 5), point(1, 6), point(3, 7), point(4, 5)]
    xs = x_of(parse(render_chart(points, title="t")))
    steps = [round(b - a, 1) for a, b in pairwise(xs)]
    assert steps[1] == round(2 * steps[0], 1) and steps[2] == steps[0]


def test_values_far_from_zero_get_an_axis_of_their_own() -> None:
    # A mean around 1,000 on an axis from 0 would be a flat line.
    points = [point(0, 1_010, (950, 1_060)), point(1, 1_180, (960, 1_070), outcome="anomaly")]
    root = parse(render_chart(points, title="mean", unit=""))
    assert y_ticks(root) == ["900", "1,000", "1,100", "1,200"]
    # Counts keep their zero.
    counts = y_ticks(parse(render_chart(points, title="rows")))
    assert counts[0] == "0"


def test_negative_values_and_bands_stay_on_the_axis() -> None:
    points = [point(0, -40, (-60, -10)), point(1, -5, (-55, -15), outcome="anomaly")]
    root = parse(render_chart(points, title="mean", unit=""))
    assert y_ticks(root) == ["-60", "-40", "-20", "0"]
    top, bottom = 12.0, 270.0 - 30
    cys = [float(c.get("cy", "nan")) for c in circles(root)]
    assert all(top <= cy <= bottom for cy in cys), cys
    assert cys[1] < cys[0]


def test_small_steps_get_the_decimals_they_need() -> None:
    points = [point(0, 5.02, (5.0, 5.06)), point(1, 5.05, (5.01, 5.07))]
    assert y_ticks(parse(render_chart(points, title="length", unit=""))) == [
        "5.00",
        "5.02",
        "5.04",
        "5.06",
        "5.08",
    ]
    shares = [point(0, 0.001, (0.0, 0.004)), point(1, 0.002, (0.0, 0.004))]
    assert y_ticks(parse(render_chart(shares, title="t", unit="", percent=True))) == [
        "0.0%",
        "0.1%",
        "0.2%",
        "0.3%",
        "0.4%",
    ]
