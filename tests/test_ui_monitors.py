"""The monitors page: a column's metrics and shares charted day by day, new values listed.

Three weeks of payments, checked three times a day for five days. The null rate jumps on
20 November (an owner marks that day expected), on 21 November (repaired the next morning) and
on 22 November, when a quarter of the payments also arrive in a currency never seen before,
in yen.
"""

from __future__ import annotations

import random
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from dq_agent.config import load_project
from dq_agent.store import Store
from dq_agent.ui import monitors
from tests.sources import load_orders, project_for, run

FIRST, LAST = date(2026, 11, 1), date(2026, 11, 23)
EXPECTED, REPAIRED, BROKEN = date(2026, 11, 20), date(2026, 11, 21), date(2026, 11, 22)
JUDGED = [date(2026, 11, 19) + timedelta(days=i) for i in range(5)]
# Each day's runs; each judges the day before.
RUN_TIMES = (time(1, 0), time(9, 0), time(17, 0))
NEW_CURRENCY = "JPY <&>"
PAYMENTS = sa.Table(
    "payments",
    sa.MetaData(),
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("paid_at", sa.DateTime()),
    sa.Column("amount", sa.Float),
    sa.Column("currency", sa.String(20)),
)
SUITE = """\
suite: payments
owner: finance-data@acme.com
source: {connector: warehouse, table: payments}
checks:
  - column_anomaly: {timestamp_column: paid_at, column: amount, metrics: [null_rate, mean]}
  - distribution_shift: {timestamp_column: paid_at, column: amount, group_by: currency}
  - new_values: {timestamp_column: paid_at, column: currency}
"""
COLUMN, SHIFT, NEW = "column_anomaly(amount)", "distribution_shift(amount)", "new_values(currency)"
NS = {"svg": "http://www.w3.org/2000/svg"}
NOWRAP = '<span style="white-space:nowrap">'


def payments(nulls: dict[date, float]) -> list[dict[str, Any]]:
    """About 60 payments a day of $20–$2,000 in dollars and euros, a share of them without an
    amount on the days in ``nulls``, and a quarter in yen on ``BROKEN``."""
    rng = random.Random(11)
    rows: list[dict[str, Any]] = []
    day = FIRST
    while day <= LAST:
        count = 60 + rng.randint(-5, 5)
        for i in range(count):
            amount: float | None = round(10 ** rng.uniform(1.3, 3.3), 2)
            currency = "USD" if rng.random() < 0.7 else "EUR"
            if day == BROKEN and rng.random() < 0.25:
                amount, currency = round((amount or 0) * 130), NEW_CURRENCY
            if rng.random() < 0.01 + nulls.get(day, 0.0):
                amount = None
            moment = datetime.combine(day, time(i * 24 // count, (i * 7) % 60))
            rows.append(
                {"id": len(rows) + 1, "paid_at": moment, "amount": amount, "currency": currency}
            )
        day += timedelta(days=1)
    return rows


@dataclass(frozen=True)
class Checked:
    root: Path
    page: str
    first_verdicts: dict[date, dict[str, str]]  # the first run's status per day and check


@pytest.fixture(scope="module")
def checked(tmp_path_factory: pytest.TempPathFactory) -> Checked:
    return check_five_days(tmp_path_factory.mktemp("monitors"))


def check_five_days(root: Path) -> Checked:
    """Runs three times a day on 20–24 November; the monitors page after them."""
    url = f"sqlite:///{root / 'payments.sqlite'}"
    load_orders(url, payments({EXPECTED: 0.4, REPAIRED: 0.4, BROKEN: 0.4}), PAYMENTS)
    project_for(root, url, {"payments": SUITE})
    project = load_project(root, env={})
    first: dict[date, dict[str, str]] = {}
    for judged in JUDGED:
        for at in RUN_TIMES:
            now = datetime.combine(judged + timedelta(days=1), at, tzinfo=UTC)
            [result] = run(root, now=now)
            first.setdefault(judged, {c.name: c.status for c in result.checks})
            if judged == EXPECTED and at == RUN_TIMES[0]:
                with Store.open(project.state_url) as store:
                    store.add_feedback(
                        "payments",
                        COLUMN,
                        datetime.combine(EXPECTED, time(), tzinfo=UTC),
                        verdict="expected",
                        by="finance-data@acme.com",
                        at=now,
                    )
            if judged == REPAIRED and at == RUN_TIMES[0]:
                # The missing amounts are loaded again before the next run.
                load_orders(url, payments({EXPECTED: 0.4, BROKEN: 0.4}), PAYMENTS)
    with Store.open(project.state_url) as store:
        page = monitors.render(project, store, "token")
    return Checked(root, page, first)


def section(page: str, check: str) -> str:
    found = re.search(rf'<section class="card" id="{re.escape(check)}">(.*?)</section>', page)
    assert found, f"no section for {check}"
    return found[1]


def charts(html: str) -> dict[str, ET.Element]:
    """Each chart of a section by its heading."""
    found = re.findall(r"<h3>(.*?)</h3>(<svg .*?</svg>)", html)
    return {heading: ET.fromstring(svg) for heading, svg in found}


def circles(chart: ET.Element) -> list[ET.Element]:
    return chart.findall(".//svg:circle", NS)


def labels(chart: ET.Element, axis: str) -> list[str]:
    return [t.text or "" for t in chart.findall(".//svg:text", NS) if t.get("class") == axis]


def root_is_fluid(chart: ET.Element) -> bool:
    return chart.get("width") == "100%" and chart.get("viewBox") == "0 0 1000 270"


def day_starts() -> list[str]:
    return [datetime.combine(day, time(), tzinfo=UTC).isoformat() for day in JUDGED]


def test_column_metrics_have_one_point_per_day_as_the_newest_run_judged_it(
    checked: Checked,
) -> None:
    # The first look at 21 November flagged its null rate; the runs after the repair did not.
    assert checked.first_verdicts[REPAIRED][COLUMN] == "fail"
    assert checked.first_verdicts[EXPECTED][COLUMN] == "fail"
    found = charts(section(checked.page, COLUMN))
    assert list(found) == ["null rate", "mean"]
    null_rate = found["null rate"]
    assert [c.get("data-bucket") for c in circles(null_rate)] == day_starts()
    assert [c.get("data-outcome") for c in circles(null_rate)] == [
        "normal",
        "expected",  # flagged by the first run, marked expected: the later runs measured nothing
        "normal",
        "anomaly",
        "normal",
    ]
    assert labels(null_rate, "x-tick") == [f"{day:%Y-%m-%d}" for day in JUDGED]
    assert len(null_rate.findall(".//svg:path[@class='band']", NS)) == 1
    tooltips = [c.findtext("svg:title", namespaces=NS) or "" for c in circles(null_rate)]
    assert re.fullmatch(r"2026-11-22: \d\d(\.\d)?% \(usual 0%–\d(\.\d)?%\), anomaly", tooltips[3])
    assert tooltips[1].startswith("2026-11-20: ") and tooltips[1].endswith(", marked expected")
    # Round steps from zero to past the highest rate, 2026-11-22's (40% of its amounts or so).
    assert labels(null_rate, "y-tick") == ["0%", "20%", "40%", "60%"]
    mean = found["mean"]
    # The yen raise 2026-11-22's mean, but so few and so wild amounts are within its noise.
    assert [c.get("data-outcome") for c in circles(mean)] == [
        "normal",
        "expected",
        "normal",
        "normal",
        "normal",
    ]
    assert root_is_fluid(null_rate) and root_is_fluid(mean)


def test_only_the_day_still_flagged_can_be_marked_expected(checked: Checked) -> None:
    html = section(checked.page, COLUMN)
    rows = re.findall(r"<tr><td>(.*?)</td><td>(.*?)</td>", html)
    assert [day for day, _ in rows] == [f"{NOWRAP}2026-11-22</span>"]
    assert rows[0][1].startswith("amount null rate ")
    assert html.count('value="2026-11-22T00:00:00+00:00"') == 1
    assert html.count("Mark expected") == 1


def test_shares_beyond_the_usual_range_are_charted_day_by_day(checked: Checked) -> None:
    found = charts(section(checked.page, SHIFT))
    assert list(found) == ["share above", "share below"]
    above = found["share above"]
    assert [c.get("data-bucket") for c in circles(above)] == day_starts()
    outcomes = [c.get("data-outcome") for c in circles(above)]
    assert outcomes == ["normal", "normal", "normal", "anomaly", "normal"]
    assert labels(above, "x-tick") == [f"{day:%Y-%m-%d}" for day in JUDGED]
    assert len(above.findall(".//svg:path[@class='band']", NS)) == 1
    assert labels(above, "y-tick") == ["0%", "5%", "10%", "15%"]


def test_new_values_list_the_value_its_day_and_the_failed_check(checked: Checked) -> None:
    html = section(checked.page, NEW)
    assert "<svg" not in html
    assert NEW_CURRENCY not in html  # escaped
    summary = re.search(r'<p class="muted">(.*?)</p>', html)
    assert summary is not None
    assert summary[1] == (
        "New currency values in 1 of the 5 days checked, 2026-11-19 to 2026-11-23: each is a "
        "value the 28 days before its day never had."
    )
    [row] = re.findall(r"<tr><td>.*?</tr>", html)
    loaded = payments({EXPECTED: 0.4, BROKEN: 0.4})
    rows = sum(1 for payment in loaded if payment["currency"] == NEW_CURRENCY)
    assert re.findall(r"<td>(.*?)</td>", row) == [
        f"{NOWRAP}2026-11-22</span>",
        f'<code>JPY &lt;&amp;&gt;</code> <span class="muted">{rows} rows</span>',
        str(rows),
        '<span class="fail">fail</span>',
        "2026-11-23 01:00 UTC",  # the first run that judged the day
    ]


def test_the_page_shows_the_newest_days_only(
    checked: Checked, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(monitors, "CHART_BUCKETS", 3)
    project = load_project(checked.root, env={})
    with Store.open(project.state_url) as store:
        page = monitors.render(project, store, "token")
    null_rate = charts(section(page, COLUMN))["null rate"]
    assert [c.get("data-bucket") for c in circles(null_rate)] == day_starts()[2:]
    assert "in 1 of the 3 days checked, 2026-11-21 to 2026-11-23:" in section(page, NEW)


HOURLY = """\
suite: events
owner: data@acme.com
timezone: America/New_York
source: {connector: warehouse, table: payments}
checks:
  - column_anomaly:
      {timestamp_column: paid_at, column: amount, metrics: [null_rate], bucket: hour,
       training_days: 1, min_history: 3}
"""


def test_hourly_buckets_are_labelled_with_their_local_hour(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'payments.sqlite'}"
    start = datetime(2026, 11, 23, 0, 0)  # naive: New York wall-clock time
    rows = [
        {
            "id": i + 1,
            "paid_at": start + timedelta(minutes=6 * i),
            "amount": None if i % 10 == 0 else 100.0 + i,
            "currency": "USD",
        }
        for i in range(240)
    ]
    load_orders(url, rows, PAYMENTS)
    project_for(tmp_path, url, {"events": HOURLY})
    for minutes in range(0, 150, 30):
        # From 10:05 in New York every half hour: each hour from 09:00 to 11:00 is judged.
        run(tmp_path, now=datetime(2026, 11, 23, 15, 5, tzinfo=UTC) + timedelta(minutes=minutes))
    project = load_project(tmp_path, env={})
    with Store.open(project.state_url) as store:
        page = monitors.render(project, store, None)
    [chart] = charts(section(page, "column_anomaly(amount)")).values()
    assert [c.get("data-bucket") for c in circles(chart)] == [
        "2026-11-23T14:00:00+00:00",
        "2026-11-23T15:00:00+00:00",
        "2026-11-23T16:00:00+00:00",
    ]
    assert [c.get("data-outcome") for c in circles(chart)] == ["normal"] * 3
    assert labels(chart, "x-tick") == ["2026-11-23 09:00", "2026-11-23 10:00", "2026-11-23 11:00"]
    assert "One point per hour" in page
