"""``volume_anomaly``: rows per time bucket against a robust, seasonality-aware baseline.

The database counts rows per bucket (one GROUP BY over the training window); :func:`detect`
judges the last complete bucket against the earlier ones, in memory and without I/O, so that a
run, a backtest and a benchmark all make the very same decision.

Counts vary by ratios, not by differences: a busy Friday wobbles by more rows than a quiet
Sunday, and losing half the rows is as far from normal as doubling them. So the noise is
measured as the spread of log ratios to the level, and the usual band reaches as far below the
level as above it in those terms (÷ and × e^(k·spread)): a 50% drop and a 2× spike are equally
unusual, where a band symmetric in rows would be blind to drops long before it is to spikes.
"""

from __future__ import annotations

import calendar
import dataclasses
import math
import statistics
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from statistics import NormalDist
from typing import Any, Literal
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from dq_agent.checks.base import CheckContext, error_result, plural, result
from dq_agent.checks.windows import (
    STEP,
    BucketUnit,
    BucketVerdict,
    WindowedCheck,
    bucket_floor,
    bucket_label,
    bucket_start,
    bucket_starts,
    last_complete_bucket,
    to_local,
    to_utc,
    training_span,
    verdict_status,
)
from dq_agent.config.models import CheckSpec, VolumeAnomalyArgs
from dq_agent.results import CheckResult, Status
from dq_agent.sources.base import Relation
from dq_agent.sources.sql import translate

Seasonality = Literal["none", "weekday", "hour_of_day", "hour_of_week"]
Outcome = Literal["normal", "anomaly", "too_little_history", "expected"]

# 1.4826 × MAD estimates the standard deviation of normally distributed data.
MAD_SCALE = 1.4826
# A seasonal slot (a weekday, an hour of the day) needs this many points to have a median.
MIN_SEASON_POINTS = 3
# Between-slot spread, in within-slot robust deviations, that counts as a real pattern.
SEASONAL_SPREAD = 3.0
# Slots whose levels are within this factor of each other share one noise estimate.
SIMILAR_LEVEL = 2.0
# The latest week (day, for hourly buckets) can move a seasonal level when this many slots
# tell, and when it stands this many standard errors off the slot medians.
MIN_RECENT_SLOTS = 3
TREND_ERRORS = 2.0
# Ratios are taken between counts plus this many rows. It is nothing to thousands of rows, but
# makes a handful compare by difference: counting noise (about ±√rows by chance alone) is
# even in rows, not in ratios, and 2 rows where 5 are usual is no 60% drop.
RATIO_OFFSET = 10.0
# The first (last) business day of a month is compared with the first (last) business day of
# each of this many months before it, each one against its weekday in the weeks around it.
MONTH_TURN_MONTHS = 6
MONTH_TURN_WEEKS = 4  # half before, half after
# A month-turn effect is followed when this many past months tell (and all agree).
MIN_MONTH_TURNS = 3
# Up to this level the counting noise is a Poisson count's own tail; above it, the normal
# approximation (level ± k·√level) is as good.
POISSON_EXACT = 30.0
# An earlier bucket is odd (see _odd_buckets) beyond this many times the check's sensitivity.
ODD_BEYOND = 1.5
# Counts of a few rows may vary more than Poisson counts (clusters); up to this factor in
# variance, the counting band widens with them.
MAX_DISPERSION = 10.0
# A band wider than e^20 either way (a factor of 500 million) is as good as none; the cap
# keeps its edges finite numbers whatever the sensitivity.
MAX_LOG_RATIO = 20.0
# Counts of a few rows are also judged as the sum of the evaluated bucket and the ones right
# before it, up to this many buckets in all (see :func:`_sustained`).
RUN_BUCKETS = 3


@dataclass(frozen=True)
class Detection:
    """The verdict on one bucket and the baseline it was judged against."""

    bucket: datetime  # start, UTC
    label: str  # the bucket as a person reads it, in the check's timezone
    rows: int
    outcome: Outcome
    message: str
    # The level judged against: the median of the bucket's slot (of all buckets, without
    # seasonality), moved by a drift the latest week shows and by the month turn, if any.
    baseline_median: float | None
    lower: float | None
    upper: float | None
    baseline_buckets: int
    seasonality: Seasonality

    @property
    def anomalous(self) -> bool:
        return self.outcome == "anomaly"


# --- the decision ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Baseline:
    level: float  # the rows the bucket is expected to hold
    # A robust standard deviation of the log distance (see _log_distance) of a usual bucket
    # from its level: 0.1 is about 10% either way. The band's floors come on top of it.
    spread: float
    seasonality: Seasonality
    # Seasonal data whose evaluated slot has this few points (< MIN_SEASON_POINTS) to go by.
    thin_slot: int | None = None
    # For counts of a few rows: the mean of the slot (a median of 0 where 1 row an hour in
    # three is usual says nothing of the rate), and how much more the counts vary than a
    # Poisson count's do (variance over mean, 1 at least).
    rate: float = 0.0
    dispersion: float = 1.0


@dataclass(frozen=True)
class _MonthTurn:
    """How the first or last business day of a month usually compares with its weekday."""

    day: str  # "first business day of the month"
    factor: float

    def __str__(self) -> str:
        return f"{self.day}: usually ×{self.factor:.2g}"


def detect(
    series: Mapping[datetime, float],
    bucket: datetime,
    args: VolumeAnomalyArgs,
    *,
    zone: ZoneInfo | None = None,
    expected: Collection[datetime] = frozenset(),
    days_off: Collection[date] = frozenset(),
) -> Detection:
    """Judge the bucket starting at ``bucket`` against the buckets before it in ``series``.

    ``series`` maps aware bucket starts to row counts; buckets after the first non-empty one
    that are missing count as zero. Only buckets within the training window before ``bucket``
    form the baseline, minus those in ``expected`` (aware starts an owner marked "expected",
    or a mapping of them to why they are: a holiday, say).

    A daily bucket that is the first or the last business day of its month (Monday to Friday,
    but not in ``days_off``: the days the calendar names, in the zone's dates) is
    also compared with the same day of earlier months (see :func:`_month_turn`), for which
    ``series``, ``expected`` and ``days_off`` reach further back than the training window.
    """
    zone = zone or ZoneInfo("UTC")
    unit: BucketUnit = args.bucket
    local = to_local(bucket, zone)
    utc = to_utc(local, zone)
    label = bucket_label(local, unit)
    rows = int(series.get(utc, 0))
    judging = _Judging(series, args, zone, expected, days_off)
    history, baseline, broken, turn = _expectation(judging, local, screen=True)
    notes = [str(turn)] if turn else []
    if broken:
        were = "was an anomaly" if len(broken) == 1 else "were anomalies"
        notes.append(
            f"left out {_slot_history(len(broken), local, baseline.seasonality, unit)} that {were}"
        )
    note = "".join(f"; {n}" for n in notes)

    def verdict(outcome: Outcome, message: str, band: tuple[float, float] | None) -> Detection:
        return Detection(
            bucket=utc,
            label=label,
            rows=rows,
            outcome=outcome,
            message=f"{label}: {message}",
            baseline_median=baseline.level if history else None,
            lower=band[0] if band else None,
            upper=band[1] if band else None,
            baseline_buckets=len(history),
            seasonality=baseline.seasonality,
        )

    if utc in expected:
        reason = expected[utc] if isinstance(expected, Mapping) else "marked as expected"
        return verdict("expected", f"{plural(rows, 'row')}, {reason}", None)
    if len(history) < args.min_history:
        have = f"only {plural(len(history), unit)} of history" if history else "no history yet"
        message = f"{have} (needs {args.min_history}): cannot judge yet"
        return verdict("too_little_history", message, None)
    if baseline.thin_slot is not None:
        have = _slot_history(baseline.thin_slot, local, baseline.seasonality, unit)
        message = f"only {have} of history (needs {MIN_SEASON_POINTS}): cannot judge yet"
        return verdict("too_little_history", message, None)

    level, band = baseline.level, _band(baseline, args)
    usual = f"{_count(band[0])}–{_count(band[1])}{_season_words(baseline.seasonality, local)}"
    if not _is_anomaly(rows, level, band, args):
        within = f"{plural(rows, 'row')}, within the usual {usual}"
        run = _sustained(judging, local, baseline)
        if run is None:
            return verdict("normal", f"{within}{note}", band)
        return verdict("anomaly", f"{within}, but {run.describe(unit)}{note}", band)
    change = ""
    if rows and level:
        share = abs(rows - level) / level * 100
        change = f"{share:,.0f}% {'below' if rows < level else 'above'} "
    message = f"{plural(rows, 'row')}, {change}baseline {_count(level)} (usually {usual}){note}"
    return verdict("anomaly", message, band)


@dataclass(frozen=True)
class _Run:
    """Buckets in a row, ending with the evaluated one, whose rows together are unusual."""

    buckets: int
    rows: float
    usual: float  # the rows their baselines expect, together

    def describe(self, unit: BucketUnit) -> str:
        way = "fewer" if self.rows < self.usual else "more"
        return (
            f"the last {self.buckets} {unit}s hold {plural(round(self.rows), 'row')}, "
            f"far {way} than the {_count(self.usual)} usual"
        )


@dataclass(frozen=True)
class _Judging:
    """A series, and what judging any of its buckets takes besides (see :func:`detect`)."""

    series: Mapping[datetime, float]
    args: VolumeAnomalyArgs
    zone: ZoneInfo
    expected: Collection[datetime]
    days_off: Collection[date]

    def rows(self, local: datetime) -> float:
        return float(self.series.get(to_utc(local, self.zone), 0))


def _expectation(
    judging: _Judging, local: datetime, *, screen: bool
) -> tuple[list[tuple[datetime, float]], _Baseline, frozenset[datetime], _MonthTurn | None]:
    """The buckets the one starting at ``local`` is compared with, the baseline they give, the
    earlier buckets left out of its level (odd ones, see :func:`_odd_buckets`, and with
    ``screen`` earlier anomalies, see :func:`_broken_before`, both on the other side of the
    level from ``local``'s) and the month turn that moved its level, if any."""
    args = judging.args
    history = _baseline_points(judging, local)
    kind = _slot_kind(history, args)
    odd = _odd_buckets(history, args, kind)
    baseline = _baseline(history, local, args, kind, left_out=odd, odd=odd)
    # Odd buckets stay in the level when this one is out of the band on their side too: they
    # may be the first of a new level. Their noise stays out of the spread.
    rows, (lower, upper) = judging.rows(local), _band(baseline, args)
    side = -1 if rows < lower else 1 if rows > upper else 0
    left_out = frozenset(start for start, sign in odd.items() if sign != side)
    if screen:
        left_out |= _broken_before(judging, local, history, baseline)
    if left_out != frozenset(odd):
        baseline = _baseline(history, local, args, kind, left_out=left_out, odd=odd)
    turn = _month_turn(judging, local, baseline.spread)
    if turn is not None:
        level = (baseline.level + RATIO_OFFSET) * turn.factor - RATIO_OFFSET
        baseline = dataclasses.replace(baseline, level=max(0.0, level))
    slot = _slot_of(local, baseline.seasonality)
    own = frozenset(start for start in left_out if _slot_of(start, baseline.seasonality) == slot)
    return history, baseline, own if baseline.seasonality != "none" else left_out, turn


def _broken_before(
    judging: _Judging,
    local: datetime,
    history: list[tuple[datetime, float]],
    baseline: _Baseline,
) -> frozenset[datetime]:
    """The earlier buckets of ``local``'s seasonal slot that were anomalies themselves (each
    judged against the buckets before it), on the other side of the level from ``local``'s.

    Nobody repairs some tables: a Friday whose load never ran stays empty, and with four
    Fridays to go by, two such drag the median halfway down, so the next normal Friday looks
    like a spike. Left out, they no longer do. On the same side as ``local``'s they stay:
    earlier buckets that moved the way this one does may be the first of a new level (a
    market's summer nights ending), which the median is there to follow.
    """
    kind = baseline.seasonality
    slot = _slot_of(local, kind)
    if slot is None:
        return frozenset()
    level, rows = baseline.level, judging.rows(local)
    return frozenset(
        start
        for start, earlier in history
        if _slot_of(start, kind) == slot
        and (earlier - level) * (rows - level) < 0
        and _was_anomaly(judging, start)
    )


def _was_anomaly(judging: _Judging, local: datetime) -> bool:
    """Whether the bucket starting at ``local`` was judged an anomaly when it was the last."""
    args = judging.args
    history, baseline, _, _ = _expectation(judging, local, screen=False)
    if len(history) < args.min_history or baseline.thin_slot is not None:
        return False
    return _is_anomaly(int(judging.rows(local)), baseline.level, _band(baseline, args), args)


def _sustained(judging: _Judging, local: datetime, baseline: _Baseline) -> _Run | None:
    """The run of 2 to ``RUN_BUCKETS`` buckets ending with ``local`` whose rows together are
    beyond their count model's tail, when each of them is judged by one; None otherwise.

    A bucket of a few rows says little: 6 cases in a week where 1.2 are usual happen by chance
    once in 660 weeks, within a band that alerts on what happens once in 740 (sensitivity 3).
    Two such weeks in a row happen far more rarely, and the sum of counts
    is a count too: a Poisson count of the summed rates (scaled by the larger of the buckets'
    dispersions, see :func:`_counting_band`), whose tail is exact, with no assumption of how
    the buckets' noise is correlated. Each run length is a test of its own, so each takes an
    equal share of the one-sided tail of the bucket's own band (Bonferroni), keeping their
    joint false-alarm chance at that band's. Every bucket of the run must lie on the run's
    side of its level, and within its own band: one that alerted was reported already, and
    a normal bucket after it is no new evidence. The run must be a material change
    (``min_change_pct``) too. Larger counts are left to the band: their noise is the level's
    wobble from hour to hour, which neighbouring buckets share, and a sum of them is no
    stronger evidence.
    """
    args = judging.args
    if not _count_model(baseline):
        return None
    tail = NormalDist().cdf(-args.sensitivity) / (RUN_BUCKETS - 1)
    rows, means, scale = [judging.rows(local)], [_count_mean(baseline)], baseline.dispersion
    side = 1 if rows[0] > means[0] else -1 if rows[0] < means[0] else 0
    watched = args.direction == "both" or args.direction == ("spike" if side > 0 else "drop")
    if side == 0 or not watched:
        return None
    for earlier in _buckets_before(judging, local, RUN_BUCKETS - 1):
        points, before, _, _ = _expectation(judging, earlier, screen=False)
        if len(points) < args.min_history or before.thin_slot is not None:
            return None
        if not _count_model(before) or (judging.rows(earlier) - _count_mean(before)) * side <= 0:
            return None
        if _is_anomaly(int(judging.rows(earlier)), before.level, _band(before, args), args):
            return None  # reported on its own: its echo is no new evidence
        rows.append(judging.rows(earlier))
        means.append(_count_mean(before))
        scale = max(scale, before.dispersion)
        total, usual = sum(rows), sum(means)
        if abs(total - usual) < max(1.0, args.min_change_pct / 100 * usual):
            continue  # no material change yet; a longer run may be one
        if side > 0:
            chance = 1 - _poisson_cdf(math.ceil(total / scale) - 1, usual / scale)
        else:
            chance = _poisson_cdf(math.floor(total / scale), usual / scale)
        if chance < tail:
            return _Run(len(rows), total, usual)
    return None


def _buckets_before(judging: _Judging, local: datetime, count: int) -> list[datetime]:
    """The (naive) starts of up to ``count`` buckets right before ``local``, nearest first,
    up to one that is expected or before the series' first row."""
    unit, zone = judging.args.bucket, judging.zone
    # Two steps more than needed: an hour a clock skips is no bucket.
    starts = bucket_starts(local - (count + 2) * STEP[unit], local, unit, zone)[::-1][:count]
    first = min((moment for moment, rows in judging.series.items() if rows > 0), default=None)
    found: list[datetime] = []
    for start in starts:
        moment = to_utc(start, zone)
        if first is None or moment < first or moment in judging.expected:
            break
        found.append(start)
    return found


def _baseline_points(judging: _Judging, local: datetime) -> list[tuple[datetime, float]]:
    """(naive start, rows) of the buckets the evaluated one is compared with: the training
    window's, less the expected ones, and as many buckets from before the window as those.

    Expected buckets teach nothing of the usual rows, and a window they thin out loses its
    shape: after a nine-day year-end closure, 28 days hold two or three of each weekday, too
    few to tell a weekly rhythm or to give a Saturday's 11:00 a median of its own, so the
    Saturday would be compared with commuters' weekdays. So the window reaches back past them
    by as many buckets as they took, up to one more training window (``reach_span``).
    """
    series, args, zone = judging.series, judging.args, judging.zone
    first = min((moment for moment, rows in series.items() if rows > 0), default=None)
    if first is None:
        return []
    floor = bucket_floor(to_local(first, zone), args.bucket)
    start = max(local - training_span(args), floor)

    def usual(starts: list[datetime]) -> list[tuple[datetime, float]]:
        moments = ((local_start, to_utc(local_start, zone)) for local_start in starts)
        return [(s, float(series.get(m, 0))) for s, m in moments if m not in judging.expected]

    window = bucket_starts(start, local, args.bucket, zone)
    points = usual(window)
    missing = len(window) - len(points)
    if missing and start > floor:
        earlier = bucket_starts(max(local - reach_span(args), floor), start, args.bucket, zone)
        points = usual(earlier)[-missing:] + points
    return points


def _odd_buckets(
    history: list[tuple[datetime, float]], args: VolumeAnomalyArgs, kind: Seasonality
) -> dict[datetime, int]:
    """The buckets of ``history`` outside the band of their own seasonal slot (their weekday,
    their hour of day; all of them for weekly buckets) where they are a minority of the slot,
    each with its side of the slot's median (-1 below, 1 above).

    Odd days widen a band that is estimated on them: a holiday week in four makes a quarter
    of every weekday's points far off, and a median of distances over such points is no
    longer the distance of a usual day (a band of ×1.9 where ×1.2 was usual, so a clear drop
    the Friday after passes), and the weekly rhythm seems to drown in it. So each point is
    first judged against the median of its slot with the spread of all slots about theirs (as
    in-sample distances, which a minority of odd points moves less than leave-one-out ones),
    beyond counting noise and ``min_change_pct`` too. Where the points outside are a minority
    of their slot they are odd, and leave the spread and the seasonality decision. A slot
    whose points split in two, or with no more than ``MIN_SEASON_POINTS``, keeps them all: it
    may be changing level, which the median is there to follow.
    """
    slots: dict[int | None, list[tuple[datetime, float]]] = {}
    for start, rows in history:
        slots.setdefault(_slot_of(start, kind), []).append((start, rows))
    medians = {
        slot: statistics.median(rows for _, rows in points)
        for slot, points in slots.items()
        if len(points) > MIN_SEASON_POINTS
    }
    distances = [
        _log_distance(rows, medians[slot])
        for slot, points in slots.items()
        if slot in medians
        for _, rows in points
    ]
    if not distances:
        return {}
    spread = statistics.median(distances) * MAD_SCALE
    dispersion = _dispersion([[rows for _, rows in slots[slot]] for slot in medians])
    # In-sample distances from a median of four points understate the noise: only what is
    # far beyond the check's own band is odd.
    wide = args.model_copy(update={"sensitivity": args.sensitivity * ODD_BEYOND})
    odd: dict[datetime, int] = {}
    for slot, median in medians.items():
        points = slots[slot]
        rate = statistics.fmean(rows for _, rows in points)
        usual = _Baseline(median, spread, "none", rate=rate, dispersion=dispersion)
        lower, upper = _band(usual, wide)
        outside = [(start, rows) for start, rows in points if not lower <= rows <= upper]
        if len(outside) <= min((len(points) - 1) // 2, len(points) - MIN_SEASON_POINTS):
            odd.update((start, 1 if rows > median else -1) for start, rows in outside)
    return odd


def _month_turn(judging: _Judging, local: datetime, spread: float) -> _MonthTurn | None:
    """How the first (last) business day of a month usually compares with its weekday, when
    ``local`` is one and the months before agree; None otherwise.

    Month ends and paydays move some loads by a lot, and a 28-day window holds one of them at
    most: so the first (last) business day of each of ``MONTH_TURN_MONTHS`` months before is
    set against the median of its weekday in the ``MONTH_TURN_WEEKS`` weeks around it (so that
    a seasonal trend does not pass for an effect; expected days left out). The effect is the
    median of those log ratios, followed when at least ``MIN_MONTH_TURNS`` of them tell, all
    of them lie on its side, and it stands out by ``TREND_ERRORS`` standard errors (as in
    :func:`_recent_factor`) of their own spread or of the usual one (``spread``), whichever is
    larger. Real series show why all: four months of six on one side, by 15%, happen by chance
    (weather, a holiday next to the day), and a band moved by 15% alerts on a normal day.
    """
    series, args, zone = judging.series, judging.args, judging.zone
    expected, days_off = judging.expected, judging.days_off
    day = local.date()
    if args.bucket != "day" or not _is_month_turn(day, days_off):
        return None
    which = 0 if day == _business_days(day, days_off)[0] else -1
    first = min((moment for moment, rows in series.items() if rows > 0), default=None)
    logs: list[float] = []
    for back in range(1, MONTH_TURN_MONTHS + 1):
        month = _months_before(day, back)
        earlier = _business_days(month, days_off)
        ratio = _weekday_ratio(series, earlier[which], zone, expected, first) if earlier else None
        if ratio is not None:
            logs.append(ratio)
    if len(logs) < MIN_MONTH_TURNS:
        return None
    shift = statistics.median(logs)
    own = statistics.median(abs(x - shift) for x in logs) * MAD_SCALE
    standard_error = math.sqrt(math.pi / 2) * max(own, spread) / math.sqrt(len(logs))
    agree = all(x * shift > 0 for x in logs)
    if not agree or abs(shift) <= TREND_ERRORS * standard_error:
        return None
    words = "first" if which == 0 else "last"
    return _MonthTurn(f"{words} business day of the month", math.exp(shift))


def _is_month_turn(day: date, days_off: Collection[date]) -> bool:
    """Whether ``day`` is the first or the last business day of its month."""
    business = _business_days(day, days_off)
    return bool(business) and day in (business[0], business[-1])


def _business_days(day: date, days_off: Collection[date]) -> list[date]:
    """The weekdays of ``day``'s month that are not in ``days_off``."""
    start = day.replace(day=1)
    length = calendar.monthrange(day.year, day.month)[1]
    every = (start + timedelta(days=i) for i in range(length))
    return [d for d in every if d.weekday() < 5 and d not in days_off]


def _months_before(day: date, months: int) -> date:
    """The first day of the month ``months`` before ``day``'s."""
    index = day.year * 12 + day.month - 1 - months
    return date(index // 12, index % 12 + 1, 1)


def _weekday_ratio(
    series: Mapping[datetime, float],
    day: date,
    zone: ZoneInfo,
    expected: Collection[datetime],
    first: datetime | None,
) -> float | None:
    """The log ratio of ``day``'s rows (plus ``RATIO_OFFSET``) to the median of its weekday in
    the ``MONTH_TURN_WEEKS`` weeks around it; None when it is expected or too few of those
    weeks are known."""

    def rows(on: date) -> float | None:
        moment = to_utc(datetime.combine(on, time()), zone)
        if first is None or moment < first or moment in expected:
            return None
        return float(series.get(moment, 0))

    own = rows(day)
    half = MONTH_TURN_WEEKS // 2
    weeks = [rows(day + timedelta(weeks=w)) for w in range(-half, half + 1) if w]
    usual = [x for x in weeks if x is not None]
    if own is None or len(usual) < MIN_SEASON_POINTS:
        return None
    return math.log((own + RATIO_OFFSET) / (statistics.median(usual) + RATIO_OFFSET))


def _slot_kind(history: list[tuple[datetime, float]], args: VolumeAnomalyArgs) -> Seasonality:
    """The seasonal slots a bucket may be compared within: its weekday (daily buckets); its
    hour of the week when the days of an hourly series have a weekly rhythm (a Sunday's 08:00
    is no commuter's 08:00), else its hour of the day; none for weekly buckets."""
    if args.bucket != "hour":
        return "weekday" if args.bucket == "day" else "none"
    hours: dict[date, list[float]] = {}
    for start, rows in history:
        hours.setdefault(start.date(), []).append(rows)
    # Whole days only (23 to 25 hours: daylight saving), and three of each weekday at least,
    # as a weekday's slot needs (MIN_SEASON_POINTS).
    days = [
        (datetime.combine(day, time()), sum(rows)) for day, rows in hours.items() if len(rows) >= 23
    ]
    if len(days) < 7 * MIN_SEASON_POINTS:
        return "hour_of_day"
    daily = args.model_copy(update={"bucket": "day", "seasonality": "auto"})
    weekly = _use_seasonality(daily, "weekday", days)
    return "hour_of_week" if weekly else "hour_of_day"


def _slot_of(local: datetime, kind: Seasonality) -> int | None:
    """The seasonal slot of a bucket: its weekday, hour of the day or hour of the week."""
    if kind == "weekday":
        return local.weekday()
    if kind == "hour_of_day":
        return local.hour
    return local.weekday() * 24 + local.hour if kind == "hour_of_week" else None


def _slot_history(points: int, local: datetime, kind: Seasonality, unit: BucketUnit) -> str:
    day = calendar.day_name[local.weekday()]
    if kind == "weekday":
        return plural(points, day)
    if kind == "hour_of_day":
        return f"{plural(points, 'day')} of {local:%H}:00"
    if kind == "hour_of_week":
        return f"{plural(points, day)} at {local:%H}:00"
    return plural(points, unit)


def _baseline(
    history: list[tuple[datetime, float]],
    local: datetime,
    args: VolumeAnomalyArgs,
    kind: Seasonality,
    *,
    left_out: Collection[datetime] = frozenset(),
    odd: Collection[datetime] = frozenset(),
) -> _Baseline:
    """The level and spread ``history`` gives the bucket at ``local``: the level leaves out
    the buckets in ``left_out`` (earlier anomalies, odd buckets), the spread and the
    seasonality decision those in ``odd``."""
    usual = [(start, rows) for start, rows in history if start not in odd] or history
    values = [rows for _, rows in usual]
    if not values:
        return _Baseline(0.0, 0.0, "none")
    groups: dict[int, list[float]] = {}
    for start, rows in usual:
        slot = _slot_of(start, kind)
        if slot is not None:
            groups.setdefault(slot, []).append(rows)
    slot = _slot_of(local, kind)
    kept = [rows for start, rows in history if start not in left_out] or values
    if slot is not None and _use_seasonality(args, kind, usual):
        own = [rows for start, rows in history if _slot_of(start, kind) == slot]
        mine = [
            rows
            for start, rows in history
            if start not in left_out and _slot_of(start, kind) == slot
        ]
        median = statistics.median(mine or own or values)
        if len(own) < MIN_SEASON_POINTS:
            # A weekly rhythm with too few of this weekday to go by: the other days are no
            # baseline for it (a Saturday is not a slow Friday), so it cannot be judged yet.
            return _Baseline(median, 0.0, kind, thin_slot=len(own))
        # Four Mondays are too few for a stable spread, so the noise is pooled over the slots
        # at a similar level (a quiet Sunday is as erratic as a quiet Saturday, not as a
        # busy Monday), each point measured against the median of the rest of its slot.
        alike = [v for v in groups.values() if _similar(statistics.median(v), median)]
        spread = _log_spread(alike)
        level = median * _recent_factor(groups, spread, args)
        rate, dispersion = statistics.fmean(mine or own), _dispersion(alike)
        return _Baseline(level, spread, kind, rate=rate, dispersion=dispersion)
    # A week or more of points in one group: the in-sample spread about the median (the MAD
    # of log counts) is stable enough.
    median = statistics.median(kept)
    distances = [_log_distance(x, statistics.median(values)) for x in values]
    spread = statistics.median(distances) * MAD_SCALE
    rate, dispersion = statistics.fmean(kept), _dispersion([values])
    return _Baseline(median, spread, "none", rate=rate, dispersion=dispersion)


def _dispersion(groups: Iterable[list[float]]) -> float:
    """How much more counts of a few rows vary about their group's mean than Poisson counts
    do: Pearson's χ² over its degrees of freedom, from groups whose mean is at most
    ``POISSON_EXACT`` (above it the log spread measures the noise), 1 at least."""
    squares, freedom = 0.0, 0
    for values in groups:
        mean = statistics.fmean(values) if values else 0.0
        if len(values) >= 2 and 0 < mean <= POISSON_EXACT:
            squares += sum((x - mean) ** 2 for x in values) / mean
            freedom += len(values) - 1
    return max(1.0, squares / freedom) if freedom else 1.0


def _use_seasonality(
    args: VolumeAnomalyArgs,
    kind: Seasonality,
    history: list[tuple[datetime, float]],
) -> bool:
    """Whether to compare a bucket only with its own weekday (hour of day).

    ``auto`` decides from the data: a pattern is material when its slots (a slot with one
    point yet counts, so that a rhythm shows in the second week) spread, highest over lowest,
    by more than half the noise floor (``min_change_pct`` / 2: a difference that could reach
    an alert on its own) AND by more than three robust deviations of a bucket from its slot,
    so that the sampling noise of medians over a few points does not pass for a rhythm.

    Both the rhythm and its noise are read within each cycle (week, day), as each bucket's log
    ratio to its cycle's level: a holiday week lowers all its days alike, which keeps their
    rhythm, where comparing them with other weeks' days would drown it in noise (and turn the
    weekly pattern off for weeks after the holidays).
    """
    if args.seasonality != "auto":
        return args.seasonality == "weekday"
    logs: dict[int, list[float]] = {}
    cycles: dict[date, list[tuple[int, float]]] = {}
    for start, rows in history:
        slot = _slot_of(start, kind)
        if slot is not None:
            cycle = start.date() - timedelta(days=0 if kind == "hour_of_day" else start.weekday())
            cycles.setdefault(cycle, []).append((slot, math.log(rows + RATIO_OFFSET)))
            logs.setdefault(slot, []).append(math.log(rows + RATIO_OFFSET))
    # A cycle's level is the median of its buckets, each taken off its slot's usual place
    # first, so that a cycle the window cuts in half (a Thursday to Sunday) sits where its
    # days say and not where the mix of weekdays and weekend puts a plain median.
    first = {slot: statistics.median(values) for slot, values in logs.items()}
    ratios: dict[int, list[float]] = {}
    for points in cycles.values():
        level = statistics.median(x - first[slot] for slot, x in points)
        for slot, x in points:
            ratios.setdefault(slot, []).append(x - level)
    profile = {slot: statistics.median(values) for slot, values in ratios.items()}
    residuals = [
        abs(x - profile[slot])
        for slot, values in ratios.items()
        if len(values) >= 2
        for x in values
    ]
    if len(profile) < 2 or not residuals:
        return False
    overall = statistics.median(rows for _, rows in history)
    within = statistics.median(residuals) * MAD_SCALE
    noise = _counting_noise(overall) / (overall + RATIO_OFFSET)
    rhythm = max(profile.values()) - min(profile.values())
    material = math.expm1(rhythm) > args.min_change_pct / 200
    return material and rhythm > SEASONAL_SPREAD * max(within, noise)


def _similar(level: float, other: float) -> bool:
    """Whether two slot levels are within a factor of ``SIMILAR_LEVEL`` of each other."""
    return min(level, other) * SIMILAR_LEVEL >= max(level, other)


def _recent_factor(
    groups: Mapping[int, list[float]], spread: float, args: VolumeAnomalyArgs
) -> float:
    """Where the level stands now, as a factor on the slot medians (1: where they are).

    A median over the last four Mondays trails a trend by two weeks or so. The latest point of
    every slot (the last seven days, the last 24 hours) over its slot's median says how the
    latest cycle compares, and their median is not moved by a broken day or two in it. It is
    followed only when it stands out from chance: by more than ``TREND_ERRORS`` standard
    errors of a median of that many points (√(π/2) × spread / √n). And only by up to half of
    ``min_change_pct``: a larger shift is what the check is there to report, not a trend to
    follow. So a load that keeps failing for days does not become the new normal, and the day
    it recovers is no material change from the level followed either.
    """
    ratios = [
        values[-1] / median
        for values in groups.values()  # each in time order
        if len(values) >= MIN_SEASON_POINTS and (median := statistics.median(values)) > 0
    ]
    if len(ratios) < MIN_RECENT_SLOTS:
        return 1.0
    factor = statistics.median(ratios)
    shift = math.log(factor) if factor > 0 else -math.inf
    standard_error = math.sqrt(math.pi / 2) * spread / math.sqrt(len(ratios))
    if abs(shift) <= TREND_ERRORS * standard_error:
        return 1.0
    most = math.log1p(args.min_change_pct / 200)
    return math.exp(max(-most, min(most, shift)))


def _log_spread(groups: Iterable[list[float]]) -> float:
    """1.4826 × the median log distance of each point from the median of the rest of its group.

    Leaving the point out measures the error of the very prediction made (a median of the
    other Mondays), which in-sample deviations from three or four points understate.
    """
    distances = [
        _log_distance(x, median)
        for values in groups
        if len(values) >= MIN_SEASON_POINTS
        for x, median in _leave_one_out_medians(values)
    ]
    return statistics.median(distances) * MAD_SCALE if distances else 0.0


def _log_distance(rows: float, level: float) -> float:
    """How far ``rows`` is from ``level`` as a ratio: |log| of one over the other, both plus
    ``RATIO_OFFSET`` (so that an empty bucket is a long but finite way from the rest)."""
    return abs(math.log((rows + RATIO_OFFSET) / (level + RATIO_OFFSET)))


def _leave_one_out_medians(values: list[float]) -> list[tuple[float, float]]:
    """Each value with the median of all the others, in O(n log n)."""
    ordered = sorted(values)
    rest = len(ordered) - 1
    pairs: list[tuple[float, float]] = []
    for i, x in enumerate(ordered):
        upper = _without(ordered, i, rest // 2)
        median = upper if rest % 2 else (_without(ordered, i, rest // 2 - 1) + upper) / 2
        pairs.append((x, median))
    return pairs


def _without(ordered: list[float], skipped: int, k: int) -> float:
    """The ``k``-th smallest of ``ordered`` once the value at ``skipped`` is left out."""
    return ordered[k] if k < skipped else ordered[k + 1]


def _counting_noise(level: float) -> float:
    """A count cannot be steadier than Poisson noise (√level), nor than one row."""
    return max(math.sqrt(max(level, 0.0)), 1.0)


def _band(baseline: _Baseline, args: VolumeAnomalyArgs) -> tuple[float, float]:
    """The usual rows: outside this range a change is both unusual and material.

    Unusual: more than ``sensitivity`` spreads away in log distance (÷ or × e^(k·spread), on
    counts plus ``RATIO_OFFSET``), and further than a Poisson count of the level strays but
    for the chance of a normal tail beyond ``sensitivity`` (without that floor a perfectly
    flat history would alert on a one-row change). Material: at least ``min_change_pct`` of
    the level either way. Each rule can only widen the band, so its edges are the widest of
    the three; but where a count model describes the counts (see :func:`_count_model`), its
    tails are the whole test of what is unusual.
    """
    level, k = baseline.level, args.sensitivity
    # Where a count model describes the counts, it is the whole noise model: the log spread of
    # a few rows is mostly their counting noise again, which the offset log stretches upwards.
    ratio = 1.0 if _count_model(baseline) else math.exp(min(k * baseline.spread, MAX_LOG_RATIO))
    least, most = _counting_band(baseline, k)
    floor = args.min_change_pct / 100 * level
    offset = level + RATIO_OFFSET
    lower = min(offset / ratio - RATIO_OFFSET, least, level - floor)
    upper = max(offset * ratio - RATIO_OFFSET, most, level + floor)
    return max(0.0, lower), upper


def _count_model(baseline: _Baseline) -> bool:
    """Whether the baseline's counts are few enough for a count's own tails (the level and the
    slot's mean rate at most ``POISSON_EXACT``) and vary like counts do: no more than
    ``MAX_DISPERSION`` times a Poisson count's variance. Counts that come in larger clusters
    are judged by their log spread as well."""
    return (
        baseline.level <= POISSON_EXACT
        and baseline.rate <= POISSON_EXACT
        and baseline.dispersion <= MAX_DISPERSION
    )


def _count_mean(baseline: _Baseline) -> float:
    """The rows a count of the baseline holds on average: its level, or the slot's mean rate
    where that is more (a median of 0 where 1 row an hour in three is usual)."""
    return max(baseline.level, min(baseline.rate, POISSON_EXACT))


def _poisson_cdf(count: int, mean: float) -> float:
    """The chance that a Poisson count of ``mean`` is at most ``count``."""
    if count < 0:
        return 0.0
    mass = math.exp(-mean)
    total = mass
    for i in range(1, count + 1):
        mass *= mean / i
        total += mass
    return min(1.0, total)


def _counting_band(baseline: _Baseline, k: float) -> tuple[float, float]:
    """The fewest and the most rows a count of the baseline holds but for the chance of a
    normal tail beyond ``k`` on each side, and at least one row either way.

    A count of a few rows is no normal variable: with 7 usual, 0 is as unlikely as a normal
    value 3 deviations below (e^-7 < 0.135%), where level − 3√level says it is within reach.
    So up to ``POISSON_EXACT`` rows the edges are a Poisson count's tail quantiles, at the
    slot's mean rate (its median may be 0 where rows arrive one hour in three), scaled by
    the counts' dispersion when they vary more than Poisson counts do (cases that come in
    clusters). Above it the normal approximation is as good.
    """
    level = baseline.level
    if level > POISSON_EXACT:
        noise = k * math.sqrt(level)
        return level - noise, level + noise
    scale = min(baseline.dispersion, MAX_DISPERSION)
    mean = _count_mean(baseline) / scale
    tail = NormalDist().cdf(-k)
    least = most = None
    count, mass, total = 0, math.exp(-mean), 0.0
    while most is None:
        total += mass
        if least is None and total >= tail:
            least = count  # fewer rows than this are in the lower tail
        if total > 1 - tail:
            most = count  # more rows than this are in the upper tail
        count += 1
        mass *= mean / count
    assert least is not None
    return min(least * scale, level - 1.0), max(most * scale, level + 1.0)


def _is_anomaly(
    rows: int, level: float, band: tuple[float, float], args: VolumeAnomalyArgs
) -> bool:
    """Outside the usual band, in a direction the check watches."""
    if rows == 0 and level > 0 and args.empty_is_anomaly and args.direction != "spike":
        return True  # a table that must never be empty
    if rows < band[0]:
        return args.direction != "spike"
    return rows > band[1] and args.direction != "drop"


def _count(value: float) -> str:
    return f"{math.floor(value + 0.5):,}"  # half up: 980.5 reads as 981


def _season_words(seasonality: Seasonality, local: datetime) -> str:
    if seasonality == "weekday":
        return f" on {calendar.day_name[local.weekday()]}s"
    if seasonality == "hour_of_day":
        return f" at {local:%H}:00"
    if seasonality == "hour_of_week":
        return f" on {calendar.day_name[local.weekday()]}s at {local:%H}:00"
    return ""


# --- the check -------------------------------------------------------------------------------


class VolumeAnomaly(WindowedCheck[VolumeAnomalyArgs]):
    """Counts rows per bucket in the database and judges the last complete bucket."""

    args_type = VolumeAnomalyArgs

    def evaluate(self, values: Mapping[str, Any]) -> CheckResult:
        problem = self.problem()
        if problem:
            return error_result(self.spec, problem)
        unit = self.args.bucket
        local = last_complete_bucket(self.settled_at, unit, self.zone)
        days_off = self.days_off(local - history_span(self.args), local)
        # The months before are read only on a month turn: other days need the window alone.
        turn = unit == "day" and _is_month_turn(local.date(), days_off)
        span = history_span(self.args) if turn else training_span(self.args)
        end = local + STEP[unit]
        expected = self.expected(local - max(span, reach_span(self.args)), end)
        # Expected buckets in the window: the baseline reaches past them (_baseline_points).
        window = to_utc(local - training_span(self.args), self.zone), to_utc(local, self.zone)
        if any(window[0] <= moment < window[1] for moment in expected):
            span = max(span, reach_span(self.args))
        start = local - span
        series = self.series(start, end)
        found = detect(
            series,
            to_utc(local, self.zone),
            self.args,
            zone=self.zone,
            expected=expected,
            days_off=days_off,
        )
        # The state store keeps the training window (earlier days were stored by earlier
        # runs) and lets go of what no later run reads back.
        window_start = to_utc(local - training_span(self.args), self.zone)
        checked = self._result(found, local, {m: n for m, n in series.items() if m >= window_start})
        reach = to_utc(local - history_span(self.args), self.zone)
        return dataclasses.replace(checked, series_reach=reach)

    def series(self, start: datetime, end: datetime) -> dict[datetime, float]:
        """Rows per bucket (UTC start) for naive wall-clock ``[start, end)``, from the first
        non-empty bucket on; stored counts stand in for buckets the source has purged."""
        counts = self._count_rows(start, end)
        starts = [
            to_utc(local, self.zone)
            for local in bucket_starts(start, end, self.args.bucket, self.zone)
        ]
        if not starts:
            return {}
        # Sources purge their oldest rows: only buckets before the oldest one the table still
        # holds (and never the last, the one being judged) were purged rather than emptied.
        purged_before = min([*counts, starts[-1]])
        stored = {
            moment: rows
            for moment, rows in self._stored(starts[0]).items()
            if moment < purged_before
        }
        merged = {moment: float(counts.get(moment, stored.get(moment, 0))) for moment in starts}
        first = next((m for m, rows in merged.items() if rows > 0), None)
        return {m: rows for m, rows in merged.items() if first is not None and m >= first}

    def days_off(self, start: datetime, last: datetime) -> frozenset[date]:
        """The days the calendar names (holidays, bridge days, closures) from naive ``start``
        to the end of the month of ``last``: no business days, though some are weekdays."""
        if self.ctx.calendar is None or self.args.bucket != "day":
            return frozenset()
        days = bucket_starts(start, _next_month(last), "day", self.zone)
        return frozenset(d.date() for d in days if self.ctx.known_day(d.date()) is not None)

    def _stored(self, since: datetime) -> dict[datetime, float]:
        history = self.ctx.history
        if history is None:
            return {}
        return history.bucket_history(self.ctx.suite, self.spec.name, since=since)

    def _count_rows(self, start: datetime, end: datetime) -> dict[datetime, int]:
        """One GROUP BY: rows per bucket for naive wall-clock ``[start, end)``."""
        inner = self.window.rows(start, end)
        query = sa.select(inner.c.bucket, sa.func.count().label("rows")).group_by(inner.c.bucket)
        with self.relation.connect() as conn:
            rows = conn.execute(query).all()
        return {
            to_utc(bucket_start(start_value), self.zone): int(count)
            for start_value, count in rows
            if start_value is not None
        }

    def _result(
        self, found: Detection, local: datetime, series: Mapping[datetime, float]
    ) -> CheckResult:
        observed = {
            "bucket": local.replace(tzinfo=self.zone).isoformat(),
            "rows": found.rows,
            "baseline_median": _rounded(found.baseline_median),
            "lower": _rounded(found.lower),
            "upper": _rounded(found.upper),
            "baseline_buckets": found.baseline_buckets,
            "seasonality": found.seasonality,
            "direction": self.args.direction,
        }
        base = result(
            self.spec,
            found.outcome != "anomaly",
            found.message,
            observed=observed,
            metrics={"rows": found.rows},
        )
        # Too little history is never a pass, and never more than a warning.
        status: Status = "warn" if found.outcome == "too_little_history" else base.status
        return dataclasses.replace(base, status=status, series=dict(series))


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def history_span(args: VolumeAnomalyArgs) -> timedelta:
    """How far back a daily check reads: the training window, or as far as the month turns
    of ``MONTH_TURN_MONTHS`` months back and the weeks before them, if further."""
    if args.bucket != "day":
        return training_span(args)
    months = timedelta(days=31 * (MONTH_TURN_MONTHS + 1), weeks=MONTH_TURN_WEEKS)
    return max(training_span(args), months)


def reach_span(args: VolumeAnomalyArgs) -> timedelta:
    """How far back a baseline may reach when expected buckets thin out its training window:
    one more training window (see :func:`_baseline_points`)."""
    return 2 * training_span(args)


def _next_month(local: datetime) -> datetime:
    """The start of the month after the day starting at ``local``."""
    return (local.replace(day=28) + timedelta(days=4)).replace(day=1)


# --- backtest --------------------------------------------------------------------------------


def backtest(
    spec: CheckSpec, relation: Relation, ctx: CheckContext, start: datetime, end: datetime
) -> list[BucketVerdict]:
    """What the check would have said at the end of every bucket in ``[start, end)``.

    One query reads every count; each bucket is then judged on earlier buckets only. Buckets
    that had not ended by ``end`` (or by ``ctx.at``) are left out. Raises
    :class:`~dq_agent.errors.DqAgentError` when the check cannot run on this source.
    """
    check = VolumeAnomaly(spec, relation, ctx)
    judged = check.backtest_buckets(start, end)
    unit, zone = check.args.bucket, check.zone
    if not judged:
        return []
    reach = max(history_span(check.args), reach_span(check.args))
    start, end = judged[0] - reach, judged[-1] + STEP[unit]
    try:
        series = check.series(start, end)
    except sa.exc.SQLAlchemyError as exc:
        raise translate(exc, relation.engine.url) from exc
    expected = check.expected(start, end)
    days_off = check.days_off(start, judged[-1])
    return [
        _verdict(
            detect(
                series,
                to_utc(local, zone),
                check.args,
                zone=zone,
                expected=expected,
                days_off=days_off,
            ),
            spec,
        )
        for local in judged
    ]


def _verdict(found: Detection, spec: CheckSpec) -> BucketVerdict:
    return BucketVerdict(
        bucket=found.bucket,
        rows=found.rows,
        status=verdict_status(found.outcome, spec.severity),
        message=found.message,
        baseline_median=_rounded(found.baseline_median),
        lower=_rounded(found.lower),
        upper=_rounded(found.upper),
    )
