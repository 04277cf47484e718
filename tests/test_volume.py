"""``volume_anomaly``: the decision on in-memory series, then end to end on SQLite and PostgreSQL."""

from __future__ import annotations

import dataclasses
import math
import random
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from dq_agent.checks.base import CheckContext
from dq_agent.checks.volume import Detection, VolumeAnomaly, backtest, detect
from dq_agent.checks.windows import bucket_starts, last_complete_bucket
from dq_agent.config import load_project
from dq_agent.config.models import CalendarSpec, VolumeAnomalyArgs
from dq_agent.errors import DqAgentError
from dq_agent.results import CheckResult
from dq_agent.sources import SqlSource, create_engine
from tests.sources import NOW, load_orders, project_for, run_one

MONDAY = datetime(2026, 11, 23, tzinfo=UTC)  # the last complete day at NOW


def args(**overrides: Any) -> VolumeAnomalyArgs:
    return VolumeAnomalyArgs(timestamp_column="created_at", **overrides)


def days_before(end: datetime, counts: Sequence[float]) -> dict[datetime, float]:
    """``counts`` on the consecutive days that end the day before ``end``."""
    first = end - timedelta(days=len(counts))
    return {first + timedelta(days=i): float(n) for i, n in enumerate(counts)}


def judge(
    history: Sequence[float], rows: float, *, at: datetime = MONDAY, **overrides: Any
) -> Detection:
    series = {**days_before(at, history), at: float(rows)}
    return detect(series, at, args(**overrides))


def weekly(weeks: int, weekday: int = 1000, weekend: int = 300) -> list[int]:
    """Whole weeks ending on a Sunday, small wobbles around a weekday and a weekend level."""
    wobble = (0, 12, -9, 5, -14, 8, -3)
    return [
        (weekday if day % 7 < 5 else weekend) + wobble[(day * 3 + day // 7) % 7]
        for day in range(weeks * 7)
    ]


# --- the decision on a series in memory ------------------------------------------------------


def test_median_and_mad_are_robust_to_one_outlier_in_the_baseline() -> None:
    history = [100, 102, 98, 101, 99, 100, 103, 97, 100, 5000, 101, 99, 100, 100]
    found = judge(history, 125, seasonality="none")
    # The spread of log ratios (about 1%) is below Poisson noise √100 = 10: 100 ± 3 × 10.
    assert (found.baseline_median, found.lower, found.upper) == (100.0, 70.0, 130.0)
    assert found.outcome == "normal"
    assert found.message == "2026-11-23: 125 rows, within the usual 70–130"
    spike = judge(history, 135, seasonality="none")
    assert spike.message == "2026-11-23: 135 rows, 35% above baseline 100 (usually 70–130)"
    assert spike.anomalous


def test_the_band_is_3_spreads_of_log_ratios_either_way_when_the_counts_are_large() -> None:
    history = [10_000 + d for d in (0, 500, -500, 1000, -1000, 250, -250, 0, 750, -750)]
    found = judge(history, 10_000, seasonality="none", min_change_pct=0)
    # |log((x + 10) / 10,010)|: 0, 0, .0247, .0253, .0488, .0512, .0723, .0778, .0952, .1053
    # → median .0500 → spread × 1.4826 = .0741 → 3 spreads = ×/÷ e^.2224 = 1.2490 (on x + 10)
    assert found.baseline_median == 10_000.0
    assert (round(found.lower or 0, 2), round(found.upper or 0, 2)) == (8_004.33, 12_492.61)
    # A ratio either way: 1,996 rows fewer is as unusual as 2,493 rows more.
    for rows, outcome in ((8_050, "normal"), (7_950, "anomaly")):
        assert judge(history, rows, seasonality="none", min_change_pct=0).outcome == outcome
    for rows, outcome in ((12_450, "normal"), (12_550, "anomaly")):
        assert judge(history, rows, seasonality="none", min_change_pct=0).outcome == outcome
    # So a 23% fall (÷1.30) alerts where a 23% rise (×1.23) does not.
    assert judge(history, 7_700, seasonality="none", min_change_pct=0).anomalous
    assert not judge(history, 12_300, seasonality="none", min_change_pct=0).anomalous


def test_a_handful_of_rows_compares_by_difference_not_by_ratio() -> None:
    # Around 3 rows a bucket, chance alone moves the count by ±2 (√3): 1 row is no 67% drop.
    # Ratios of rows + 10 keep the band at the Poisson count's own tails (9 rows where 3 are
    # usual happens by chance once in 260 buckets, 10 once in 900), where plain ratios (1
    # against 3 is ÷3) would stretch it to 0–14 and let a tripled count through.
    small = [2, 4, 3, 1, 5, 3, 2, 4, 3, 3, 5, 1, 4, 2]
    assert judge(small, 1, seasonality="none").message == "2026-11-23: 1 row, within the usual 0–9"
    assert judge(small, 10, seasonality="none").message == (
        "2026-11-23: 10 rows, 233% above baseline 3 (usually 0–9)"
    )


def test_an_empty_bucket_is_judged_by_the_count_model_like_any_other() -> None:
    # A sparse series: three rows an hour, many hours empty. An empty hour is within its band.
    sparse = [0, 3, 7, 0, 2, 5, 1, 0, 4, 3, 6, 0, 2, 3]
    quiet = judge(sparse, 0, seasonality="none")
    assert quiet.message == "2026-11-23: 0 rows, within the usual 0–11"
    # With seven usual, an empty bucket is as unlikely as a value 3 deviations off (e^-7 <
    # 0.135%): the normal approximation, 7 − 3√7 < 0, would have let it through.
    seven = [7, 6, 8, 7, 5, 9, 7, 6, 8, 7, 7, 6, 8, 7]
    assert judge(seven, 0, seasonality="none").message == (
        "2026-11-23: 0 rows, baseline 7 (usually 1–16)"
    )
    # A table that must never be empty says so.
    assert judge(sparse, 0, seasonality="none", empty_is_anomaly=True).anomalous


def test_a_few_rows_are_judged_by_the_count_model_alone_not_widened_by_their_log_spread() -> None:
    # About 2.6 rows a bucket, varying twice as much as Poisson counts (χ²/df ≈ 2.1). The
    # count model with that dispersion is the whole noise model: 12 rows is beyond its tail.
    # The spread of log(rows + 10) of such counts is their counting noise again, stretched
    # upwards, and taking it as a second rule widened the band to 0–15 and let 12 through.
    sparse = [0, 3, 7, 0, 2, 5, 1, 0, 4, 3, 6, 0, 2, 3]
    assert judge(sparse, 11, seasonality="none").message == (
        "2026-11-23: 11 rows, within the usual 0–11"
    )
    assert judge(sparse, 12, seasonality="none").message == (
        "2026-11-23: 12 rows, 300% above baseline 3 (usually 0–11)"
    )
    # Counts in larger clusters than the count model allows (over MAX_DISPERSION times a
    # Poisson count's variance) keep the log spread's band as well.
    bursts = [0, 0, 40, 0, 0, 1, 0, 0, 35, 0, 0, 2, 0, 30]
    assert judge(bursts, 28, seasonality="none").message == (
        "2026-11-23: 28 rows, within the usual 0–50"
    )


def test_a_run_of_a_few_rows_each_within_its_band_alerts_when_their_sum_is_beyond_chance() -> None:
    # About one row a day. Five rows happen by chance (the band reaches 5 or 6), but two days
    # of five in a row hold ten where two are usual: the sum of counts is a count too, and
    # ten of a Poisson count of about two happen once in a hundred thousand runs.
    usual = [1, 0, 2, 1, 0, 1, 3, 0, 1, 1, 2, 0, 1, 0, 1, 2, 1, 0, 1, 1, 0, 2, 1, 1, 0, 1]
    assert judge(usual + [5], 5, seasonality="none").message == (
        "2026-11-23: 5 rows, within the usual 0–6, but the last 2 days hold 10 rows, "
        "far more than the 2 usual"
    )
    assert judge(usual + [4, 4], 4, seasonality="none").message == (
        "2026-11-23: 4 rows, within the usual 0–5, but the last 3 days hold 12 rows, "
        "far more than the 3 usual"
    )
    # Each day must have moved the run's way, and the check must watch that direction.
    assert judge(usual + [0], 5, seasonality="none").message == (
        "2026-11-23: 5 rows, within the usual 0–5"
    )
    assert not judge(usual + [5], 5, seasonality="none", direction="drop").anomalous


def test_a_normal_bucket_after_an_anomaly_is_no_run_with_it() -> None:
    # Twelve rows were reported the day they came; three the day after are within the band,
    # and adding the twelve again would only echo that alert.
    usual = [1, 0, 2, 1, 0, 1, 3, 0, 1, 1, 2, 0, 1, 0, 1, 2, 1, 0, 1, 1, 0, 2, 1, 1, 0, 1]
    assert judge(usual, 12, seasonality="none").anomalous
    assert judge(usual + [12], 3, seasonality="none").message == (
        "2026-11-23: 3 rows, within the usual 0–12"
    )


def test_runs_of_large_counts_are_left_to_the_band() -> None:
    # Thousands of rows vary with the level, which neighbouring buckets share: three days
    # just inside the band in a row are no stronger evidence than one.
    steady = [1000, 1040, 960, 1010, 990, 1030, 970, 1000, 1020, 980, 1000, 1010, 990, 1000]
    found = judge([*steady, 1090, 1090], 1090, seasonality="none", min_change_pct=0)
    assert found.message == "2026-11-23: 1,090 rows, within the usual 905–1,095"


def test_a_clear_spike_fails() -> None:
    found = judge(weekly(4), 3000)
    assert found.anomalous
    assert found.message == (
        "2026-11-23: 3,000 rows, 199% above baseline 1,003 (usually 802–1,203 on Mondays)"
    )


def test_the_evaluated_bucket_is_not_part_of_its_own_baseline() -> None:
    found = judge([100] * 7, 0, seasonality="none")
    assert (found.baseline_buckets, found.baseline_median) == (7, 100.0)
    assert found.message == "2026-11-23: 0 rows, baseline 100 (usually 70–130)"
    # Nor are later buckets: a backtest hands detect() the whole range.
    later = {MONDAY + timedelta(days=1): 0.0, MONDAY + timedelta(days=2): 0.0}
    series = {**days_before(MONDAY, [100] * 7), MONDAY: 0.0, **later}
    assert detect(series, MONDAY, args(seasonality="none")) == found
    assert judge([100] * 6, 100).message == (
        "2026-11-23: only 6 days of history (needs 7): cannot judge yet"
    )


def test_a_normal_weekend_dip_does_not_alert_with_weekday_seasonality() -> None:
    sunday = MONDAY - timedelta(days=1)
    history = weekly(4)[:-1]  # up to the Saturday before
    found = judge(history, 296, at=sunday)
    assert found.outcome == "normal"
    assert found.seasonality == "weekday"
    assert found.message == "2026-11-22: 296 rows, within the usual 232–379 on Sundays"
    # Without seasonality a Sunday is judged against weekdays, and every weekend alerts.
    flat = judge(history, 296, at=sunday, seasonality="none")
    assert flat.message == "2026-11-22: 296 rows, 70% below baseline 997 (usually 798–1,196)"


def test_a_weekend_outage_still_alerts_with_weekday_seasonality() -> None:
    found = judge(weekly(4)[:-1], 90, at=MONDAY - timedelta(days=1))
    assert (
        found.message == "2026-11-22: 90 rows, 70% below baseline 297 (usually 232–379 on Sundays)"
    )


def test_auto_seasonality_needs_a_material_weekly_pattern() -> None:
    # Weekdays and weekends differ by 2%: not a pattern worth judging weekdays apart.
    assert judge(weekly(4, 1000, 980), 1000).seasonality == "none"
    assert judge(weekly(4), 1000).seasonality == "weekday"
    assert judge(weekly(4), 1000, seasonality="none").seasonality == "none"
    assert judge(weekly(4, 1000, 980), 1000, seasonality="weekday").seasonality == "weekday"


def test_the_level_follows_a_drift_that_the_latest_week_shows() -> None:
    # Three weeks as usual, then a week 8% busier on every day: the median of the last four
    # Mondays (1,006) trails; the latest week over its weekdays' medians says where it is now.
    grown = weekly(3) + [round(rows * 1.08) for rows in weekly(1)]
    assert judge(grown, 860).message == (
        "2026-11-23: 860 rows, 20% below baseline 1,080 (usually 864–1,296 on Mondays)"
    )
    # Without the drift, 860 rows is a 14% dip: under the 20% floor.
    steady = judge(weekly(4), 860)
    assert (steady.outcome, steady.baseline_median) == ("normal", 1002.5)


def test_a_week_of_failed_loads_is_no_trend_to_follow() -> None:
    # Every day of the latest week lost 90% of its rows: a minority of every weekday's points,
    # each far outside its weekday's band, so they are no trend and leave the level and the
    # spread. The next broken Monday alerts against the usual Mondays, and the Monday things
    # are back to normal is not an anomaly either.
    broken = weekly(3) + [round(rows * 0.1) for rows in weekly(1)]
    assert judge(broken, 100).message == (
        "2026-11-23: 100 rows, 90% below baseline 996 (usually 796–1,195 on Mondays)"
    )
    assert judge(broken, 1000).message == (
        "2026-11-23: 1,000 rows, within the usual 800–1,200 on Mondays; "
        "left out 1 Monday that was an anomaly"
    )


def test_mondays_nobody_repaired_do_not_make_the_next_normal_one_an_anomaly() -> None:
    # The loads of two of the last four Mondays never ran, and nobody reloaded them: their
    # median is halfway down. Each was an anomaly in its day, below the level while the next
    # Monday is above it: left out, the two others are the baseline.
    days = weekly(4)
    for monday in (7, 21):
        days[monday] = 0
    found = judge(days, 1000)
    assert found.message == (
        "2026-11-23: 1,000 rows, within the usual 796–1,195 on Mondays; "
        "left out 2 Mondays that were anomalies"
    )
    # An empty Monday again is still news.
    assert judge(days, 0).anomalous


def test_earlier_anomalies_on_the_same_side_may_be_a_new_level_and_stay() -> None:
    # The last two Mondays were 40% down, each an anomaly in its day; so is this one. They may
    # be the first of a new level: they stay in the baseline, whose median is then halfway.
    days = weekly(4)
    for monday in (14, 21):
        days[monday] = 600
    found = judge(days, 600)
    assert "left out" not in found.message
    assert found.baseline_median == pytest.approx(800, rel=0.01)


def noisy_days(seed: int, days: int, *, weekend: int = 300, noise: float = 0.07) -> list[int]:
    """``days`` days ending on the day before the one judged, from a Monday on: 1,000 rows on
    weekdays, ``weekend`` on weekends, each off by a seeded log-normal wobble."""
    wobble = random.Random(seed)
    return [
        round((1000 if day % 7 < 5 else weekend) * math.exp(wobble.gauss(0, noise)))
        for day in range(days)
    ]


def test_a_holiday_week_in_the_training_window_leaves_the_next_fridays_band_as_narrow() -> None:
    friday = MONDAY + timedelta(days=4)
    usual = noisy_days(3, 32)  # four weeks and this week's Monday to Thursday
    holiday = list(usual)
    holiday[14:19] = [round(rows * 0.35) for rows in usual[14:19]]  # two weeks ago, Mon–Fri
    plain, odd = judge(usual, 776, at=friday), judge(holiday, 776, at=friday)
    assert plain.message == (
        "2026-11-27: 776 rows, 22% below baseline 990 (usually 792–1,219 on Fridays)"
    )
    # The holiday's days are far outside their weekdays' bands: they leave the spread, so the
    # clear drop the Friday after still alerts (it used to pass, within 527–1,852).
    assert odd.message == (
        "2026-11-27: 776 rows, 22% below baseline 990 (usually 792–1,188 on Fridays)"
    )


def test_a_year_end_break_does_not_turn_the_weekly_rhythm_off_for_the_weeks_after() -> None:
    # Seven weeks with a 9-day break at 30% two weeks in; every day from the one after the
    # break to the last is judged. A break lowers all its days alike, which keeps their rhythm.
    days = noisy_days(2, 49, weekend=700, noise=0.1)
    days[14:23] = [round(rows * 0.3) for rows in days[14:23]]
    first = MONDAY - timedelta(days=len(days))
    series = {first + timedelta(days=i): float(rows) for i, rows in enumerate(days)}
    after = [first + timedelta(days=i) for i in range(23, len(days))]
    kinds = {detect(series, day, args()).seasonality for day in after}
    assert kinds == {"weekday"}  # the weekly pattern used to be off for 21 of these 26 days


SUNDAY_8 = datetime(2026, 11, 22, 8, tzinfo=UTC)


def hours_before(end: datetime, rows: Callable[[datetime], float]) -> dict[datetime, float]:
    """28 days of hourly counts ending the hour before ``end``, ``rows(start)`` each."""
    first = end - timedelta(days=28)
    return {first + timedelta(hours=h): rows(first + timedelta(hours=h)) for h in range(28 * 24)}


def test_hourly_buckets_of_a_weekly_rhythm_compare_the_same_hour_of_the_same_weekday() -> None:
    # A commuters' station: weekdays ten times as busy as weekends, at every hour.
    wobble = random.Random(5)

    def station(start: datetime) -> float:
        busy = 1000 if start.weekday() < 5 else 150
        shape = 0.2 + math.sin(math.pi * start.hour / 24)
        return float(round(busy * shape * math.exp(wobble.gauss(0, 0.08))))

    series = hours_before(SUNDAY_8, station)
    hourly = args(bucket="hour")
    quiet = detect({**series, SUNDAY_8: 180.0}, SUNDAY_8, hourly)
    # A Sunday's 08:00 is compared with Sundays' 08:00, not with the weekdays' rush hour (it
    # was "83% below baseline 1,041 (usually 821–1,319 at 08:00)").
    assert quiet.outcome == "normal"
    assert quiet.seasonality == "hour_of_week"
    assert "within the usual 124–211 on Sundays at 08:00" in quiet.message
    busy = detect({**series, SUNDAY_8: 1200.0}, SUNDAY_8, hourly)
    assert busy.anomalous  # a weekday's crowd on a Sunday (it passed, as a usual 08:00)


def test_a_closure_in_the_window_is_made_up_from_before_it_and_keeps_the_weekly_rhythm() -> None:
    # The station's 28 days, and 28 more before them, with a nine-day year-end closure (the
    # suite's calendar: expected) in the window. Without the days before the window only 19
    # days were left: too few to tell the weekly rhythm, so a quiet Sunday was compared with
    # every day's 08:00 ("83% below baseline 1,035 (usually 776–1,380 at 08:00)").
    wobble = random.Random(5)

    def station(start: datetime) -> float:
        busy = 1000 if start.weekday() < 5 else 150
        shape = 0.2 + math.sin(math.pi * start.hour / 24)
        return float(round(busy * shape * math.exp(wobble.gauss(0, 0.08))))

    series = {
        **hours_before(SUNDAY_8 - timedelta(days=28), station),
        **hours_before(SUNDAY_8, station),
    }
    closed = {SUNDAY_8 - timedelta(days=3, hours=h) for h in range(9 * 24)}
    found = detect({**series, SUNDAY_8: 180.0}, SUNDAY_8, args(bucket="hour"), expected=closed)
    assert found.seasonality == "hour_of_week"
    assert found.baseline_buckets == 28 * 24  # the 216 closed hours made up from before them
    assert found.outcome == "normal"
    assert (
        found.message == "2026-11-22 08:00: 180 rows, within the usual 124–211 on Sundays at 08:00"
    )


def test_a_sparse_series_is_judged_at_its_rate_not_at_its_median_of_nothing() -> None:
    # 0.4 rows an hour: most hours are empty, so the median is 0. Two or three rows in an hour
    # happen (6% and 0.8% of hours), five in an hour once in 17,000.
    arrivals = random.Random(1)

    def sparse(start: datetime) -> float:
        count, chance = 0, arrivals.random()
        while chance > math.exp(-0.4):
            count, chance = count + 1, chance * arrivals.random()
        return float(count)

    series = hours_before(SUNDAY_8, sparse)
    hourly = args(bucket="hour")
    for rows in (2, 3):
        found = detect({**series, SUNDAY_8: float(rows)}, SUNDAY_8, hourly)
        assert found.message == f"2026-11-22 08:00: {rows} rows, within the usual 0–3"
    found = detect({**series, SUNDAY_8: 5.0}, SUNDAY_8, hourly)
    assert found.message == "2026-11-22 08:00: 5 rows, baseline 0 (usually 0–3)"


def test_a_weekly_pattern_with_too_few_of_this_weekday_cannot_be_judged_yet() -> None:
    # Two weeks of history: the pattern shows, but two Mondays are no baseline.
    found = judge(weekly(2), 1000)
    assert found.outcome == "too_little_history"
    assert found.message == "2026-11-23: only 2 Mondays of history (needs 3): cannot judge yet"


def test_changes_below_min_change_pct_never_alert_even_with_a_tiny_mad() -> None:
    history = [1_000_000 + d for d in (0, 50, -50, 100, -100, 20, -20, 0, 70, -70)]
    plus_8_pct = 1_080_000
    quiet = judge(history, plus_8_pct, seasonality="none")
    assert quiet.outcome == "normal"
    assert quiet.message == "2026-11-23: 1,080,000 rows, within the usual 800,000–1,200,000"
    loud = judge(history, plus_8_pct, seasonality="none", min_change_pct=5)
    assert loud.message == (
        "2026-11-23: 1,080,000 rows, 8% above baseline 1,000,000 (usually 950,000–1,050,000)"
    )


def test_an_empty_bucket_within_a_wide_band_passes_unless_the_table_must_never_be_empty() -> None:
    noisy = [1, 60, 2, 55, 3, 50, 4, 45, 5, 40]  # so noisy that 0 is inside the band
    found = judge(noisy, 0, seasonality="none")
    assert found.lower == 0.0
    # Swinging sixty-fold, as ratios, makes for a wide band: 0 rows is within it.
    assert found.message == "2026-11-23: 0 rows, within the usual 0–989"
    must = judge(noisy, 0, seasonality="none", empty_is_anomaly=True)
    assert must.message == "2026-11-23: 0 rows, baseline 23 (usually 0–989)"
    assert judge(noisy, 0, seasonality="none", direction="drop", empty_is_anomaly=True).anomalous
    spike = judge(noisy, 0, seasonality="none", direction="spike", empty_is_anomaly=True)
    assert not spike.anomalous
    assert judge([0] * 7 + [5] + [0] * 6, 0).outcome == "normal"  # nothing usually arrives


def test_direction_drop_ignores_spikes_and_spike_ignores_drops() -> None:
    history = [100] * 14
    assert judge(history, 300, seasonality="none", direction="drop").outcome == "normal"
    assert judge(history, 30, seasonality="none", direction="drop").anomalous
    assert judge(history, 30, seasonality="none", direction="spike").outcome == "normal"
    assert judge(history, 300, seasonality="none", direction="spike").anomalous
    assert judge(history, 300, seasonality="none").anomalous


def test_too_little_history_says_why() -> None:
    assert judge([100, 100, 100], 0).message == (
        "2026-11-23: only 3 days of history (needs 7): cannot judge yet"
    )
    assert judge([], 50).message == "2026-11-23: no history yet (needs 7): cannot judge yet"
    assert judge([100] * 3, 0, min_history=3).outcome == "anomaly"
    hourly = detect({MONDAY - timedelta(hours=1): 5.0}, MONDAY, args(bucket="hour"))
    assert hourly.message == "2026-11-23 00:00: only 1 hour of history (needs 7): cannot judge yet"


def test_buckets_before_the_first_row_are_not_zeros_but_later_gaps_are() -> None:
    series = days_before(MONDAY, [100] * 8)
    del series[MONDAY - timedelta(days=3)]  # a day without rows after the first one
    found = detect({**series, MONDAY: 100.0}, MONDAY, args(seasonality="none"))
    assert found.baseline_buckets == 8  # the training window holds 28 days; 20 are before
    assert found.message == "2026-11-23: 100 rows, within the usual 70–130"


def test_expected_buckets_leave_the_baseline() -> None:
    # Every other day a batch import quadruples the rows; the owner marked those "expected".
    history = [100.0, 400.0] * 7
    series = {**days_before(MONDAY, history), MONDAY: 30.0}
    imports = {MONDAY - timedelta(days=i) for i in range(1, 15, 2)}
    unmarked = detect(series, MONDAY, args(seasonality="none"))
    assert unmarked.message == "2026-11-23: 30 rows, within the usual 4–4,839"  # drop missed
    marked = detect(series, MONDAY, args(seasonality="none"), expected=imports)
    assert (marked.baseline_buckets, marked.baseline_median) == (7, 100.0)
    assert marked.message == "2026-11-23: 30 rows, 70% below baseline 100 (usually 70–130)"
    too_few = detect(series, MONDAY, args(seasonality="none", min_history=8), expected=imports)
    assert too_few.message == "2026-11-23: only 7 days of history (needs 8): cannot judge yet"


def test_an_expected_evaluated_bucket_passes() -> None:
    series = {**days_before(MONDAY, [100] * 14), MONDAY: 5000.0}
    found = detect(series, MONDAY, args(), expected={MONDAY})
    assert (found.outcome, found.message) == (
        "expected",
        "2026-11-23: 5,000 rows, marked as expected",
    )


def test_buckets_follow_the_timezone_and_weeks_start_on_monday() -> None:
    tokyo = ZoneInfo("Asia/Tokyo")
    start = datetime(2026, 11, 22, 15, tzinfo=UTC)  # 2026-11-23 00:00 in Tokyo
    series = {start - timedelta(days=7 - i): 50.0 for i in range(7)} | {start: 50.0}
    found = detect(series, start, args(seasonality="none"), zone=tokyo)
    assert (found.label, found.bucket, found.baseline_buckets) == ("2026-11-23", start, 7)
    weeks = {MONDAY - timedelta(weeks=8 - i): 700.0 for i in range(8)} | {MONDAY: 700.0}
    weekly_found = detect(weeks, MONDAY, args(bucket="week", training_days=56, min_history=3))
    assert weekly_found.message == "week of 2026-11-23: 700 rows, within the usual 560–840"


def test_hours_a_clock_skips_are_not_buckets() -> None:
    new_york = ZoneInfo("America/New_York")
    night = datetime(2026, 3, 8)  # clocks jump from 02:00 to 03:00
    starts = bucket_starts(night, night + timedelta(hours=4), "hour", new_york)
    assert [f"{s:%H}" for s in starts] == ["00", "01", "03"]
    at = datetime(2026, 3, 8, 7, 30, tzinfo=UTC)  # 03:30 in New York
    assert last_complete_bucket(at, "hour", new_york) == datetime(2026, 3, 8, 1)


# --- month turns ------------------------------------------------------------------------------

MONTH_END = datetime(2026, 11, 30, tzinfo=UTC)  # a Monday, the last business day of November
# Of May to October 2026.
LAST_BUSINESS_DAYS = [
    date(2026, 5, 29),
    date(2026, 6, 30),
    date(2026, 7, 31),
    date(2026, 8, 31),
    date(2026, 9, 30),
    date(2026, 10, 30),
]


def with_month_ends(factors: Sequence[float]) -> dict[date, int]:
    """The usual rows a day from May to 29 November 2026; on the last business day of each
    month from May to October, times ``factors`` (oldest first)."""
    counts = daily_counts(first=date(2026, 5, 1), last=nov(29))
    for day, factor in zip(LAST_BUSINESS_DAYS, factors, strict=True):
        counts[day] = round(counts[day] * factor)
    return counts


def at_month_end(counts: dict[date, int], rows: float) -> Detection:
    series = {datetime.combine(d, time(), UTC): float(n) for d, n in counts.items()}
    return detect({**series, MONTH_END: rows}, MONTH_END, args())


def test_a_month_end_rush_the_past_months_show_is_no_anomaly() -> None:
    # Payroll runs on the last business day: half as many rows again, month after month.
    payroll = with_month_ends([1.5] * 6)
    assert at_month_end(payroll, 300).message == (
        "2026-11-30: 300 rows, within the usual 246–369 on Mondays; "
        "last business day of the month: usually ×1.5"
    )
    # The 28 days before know nothing of it: there the same day is an anomaly.
    recent = {day: n for day, n in payroll.items() if day >= nov(2)}
    assert at_month_end(recent, 300).message == (
        "2026-11-30: 300 rows, 49% above baseline 202 (usually 159–245 on Mondays)"
    )


def test_a_month_end_that_lost_its_rush_still_alerts_and_says_what_was_usual() -> None:
    assert at_month_end(with_month_ends([1.5] * 6), 200).message == (
        "2026-11-30: 200 rows, 35% below baseline 308 (usually 246–369 on Mondays); "
        "last business day of the month: usually ×1.5"
    )


def test_month_ends_that_disagree_teach_nothing() -> None:
    # Busy one month, quiet the next: no effect to follow, so the month end is a usual Monday.
    found = at_month_end(with_month_ends([1.5, 0.7] * 3), 300)
    assert found.message == (
        "2026-11-30: 300 rows, 49% above baseline 202 (usually 159–245 on Mondays)"
    )


# --- end to end on SQLite and PostgreSQL -----------------------------------------------------

FIRST_DAY = date(2026, 10, 12)  # a Monday: six weeks of events up to NOW (Tue 2026-11-24 12:00)
LAST_DAY = date(2026, 11, 24)


def events_table(aware: bool = False) -> sa.Table:
    return sa.Table(
        "events",
        sa.MetaData(),
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("created_at", sa.DateTime(timezone=aware)),
    )


def usual_rows(day: date) -> int:
    """About 200 events on weekdays and 60 at weekends, wobbling by a few."""
    wobble = (day.toordinal() * 7) % 11 - 5
    return (200 if day.weekday() < 5 else 60) + wobble


def nov(day: int) -> date:
    return date(2026, 11, day)


def daily_counts(
    changed: dict[date, int] | None = None, *, first: date = FIRST_DAY, last: date = LAST_DAY
) -> dict[date, int]:
    """The usual rows per day from ``first`` to ``last``, but for the ``changed`` days."""
    days = (first + timedelta(days=i) for i in range((last - first).days + 1))
    return {day: usual_rows(day) for day in days} | (changed or {})


def event_rows(counts: dict[date, int], zone: ZoneInfo | None = None) -> list[dict[str, Any]]:
    """Each day's rows spread over its hours; naive wall-clock times unless ``zone`` is given."""
    rows: list[dict[str, Any]] = []
    for day, count in counts.items():
        for i in range(count):
            moment = datetime.combine(day, time(i * 24 // count, (i * 7) % 60))
            if zone is not None:
                moment = moment.replace(tzinfo=zone).astimezone(UTC)
            rows.append({"id": len(rows) + 1, "created_at": moment})
    return rows


def suite(check: str = "{timestamp_column: created_at}", timezone: str = "UTC") -> str:
    return f"""
    suite: events
    timezone: {timezone}
    source: {{connector: warehouse, table: events}}
    checks:
      - volume_anomaly: {check}
    """


def only_check(root: Path, url: str, suite_yaml: str, **kwargs: Any) -> CheckResult:
    [result] = run_one(root, url, suite_yaml, **kwargs).checks
    return result


def test_a_normal_day_passes(tmp_path: Path, engine_url: str) -> None:
    load_orders(engine_url, event_rows(daily_counts()), events_table())
    result = only_check(tmp_path, engine_url, suite())
    assert (result.status, result.message) == (
        "pass",
        "2026-11-23: 204 rows, within the usual 157–242 on Mondays",
    )
    # Mondays had 199, 205, 200 and 195 rows; √199.5 (Poisson noise) sets the width. The
    # latest week is within chance of its weekdays' medians: the level stays their median.
    assert result.observed == {
        "bucket": "2026-11-23T00:00:00+00:00",
        "rows": 204,
        "baseline_median": 199.5,
        "lower": 157.13,
        "upper": 241.87,
        "baseline_buckets": 28,
        "seasonality": "weekday",
        "direction": "both",
    }
    assert result.metrics == {"rows": 204}
    # Every day of the window, from the evaluated day back 28 days, goes to the state store.
    assert len(result.series) == 29
    assert result.series[datetime(2026, 10, 26, tzinfo=UTC)] == usual_rows(date(2026, 10, 26))


def test_a_dropped_day_fails(tmp_path: Path, engine_url: str) -> None:
    load_orders(engine_url, event_rows(daily_counts({nov(23): 23})), events_table())
    result = only_check(tmp_path, engine_url, suite())
    assert (result.status, result.message) == (
        "fail",
        "2026-11-23: 23 rows, 88% below baseline 200 (usually 157–242 on Mondays)",
    )
    empty = daily_counts({nov(23): 0})
    load_orders(engine_url, event_rows(empty), events_table())
    assert only_check(tmp_path, engine_url, suite()).message == (
        "2026-11-23: 0 rows, baseline 200 (usually 157–242 on Mondays)"
    )


def test_a_day_still_landing_is_not_judged_until_it_has_settled(
    tmp_path: Path, engine_url: str
) -> None:
    """Monday's load lands in the morning: at 06:00 on Tuesday it holds a tenth of its rows."""
    load_orders(engine_url, event_rows(daily_counts({nov(23): 20})), events_table())
    early = datetime(2026, 11, 24, 6, tzinfo=UTC)
    hasty = only_check(tmp_path / "hasty", engine_url, suite(), as_of=early)
    assert (hasty.status, hasty.message) == (
        "fail",
        "2026-11-23: 20 rows, 90% below baseline 200 (usually 157–242 on Mondays)",
    )
    # With 12 hours to settle, at 06:00 Sunday is the last day judged; at noon, Monday.
    settled = suite("{timestamp_column: created_at, settle: 12h}")
    waiting = only_check(tmp_path / "waiting", engine_url, settled, as_of=early)
    assert (waiting.status, waiting.observed["bucket"]) == ("pass", "2026-11-22T00:00:00+00:00")
    noon = only_check(tmp_path / "noon", engine_url, settled, as_of=early + timedelta(hours=6))
    assert (noon.status, noon.observed["bucket"]) == ("fail", "2026-11-23T00:00:00+00:00")


def test_a_holiday_or_closure_of_the_suites_calendar_is_expected_and_no_baseline(
    tmp_path: Path, engine_url: str
) -> None:
    """Veterans Day (Wednesday 11 November 2026) is quiet; so is a closure on the 23rd."""
    counts = daily_counts({nov(11): 30, nov(23): 25})
    load_orders(engine_url, event_rows(counts), events_table())
    after_holiday = datetime(2026, 11, 12, 10, tzinfo=UTC)
    plain = only_check(tmp_path / "plain", engine_url, suite(), as_of=after_holiday)
    assert plain.status == "fail"
    with_calendar = suite() + "calendar: {country: us, subdiv: ny, closed: [2026-11-23]}\n"
    holiday = only_check(tmp_path / "us", engine_url, with_calendar, as_of=after_holiday)
    assert (holiday.status, holiday.message) == (
        "pass",
        "2026-11-11: 30 rows, a holiday (Veterans Day)",
    )
    closed = only_check(tmp_path / "closed", engine_url, with_calendar)
    assert (closed.status, closed.message) == ("pass", "2026-11-23: 25 rows, a closure day")
    # Holidays are left out of later baselines: the 18th is judged on 25 of the 28 days before
    # it, without Veterans Day, New York's Election Day (Tuesday 3 November) and the bridge day
    # before it, and on the three days before those 28 in their place.
    later = only_check(
        tmp_path / "later", engine_url, with_calendar, as_of=datetime(2026, 11, 19, tzinfo=UTC)
    )
    assert (later.status, later.observed["baseline_buckets"]) == ("pass", 28)


def test_a_bridge_day_between_a_holiday_and_the_weekend_is_expected_too() -> None:
    us = CheckContext("s", NOW, None, "UTC", (), 0, calendar=CalendarSpec(country="US"))
    assert us.known_day(nov(27)) == "a bridge day between Thanksgiving Day and the weekend"
    assert us.known_day(nov(12)) is None  # the Thursday after Veterans Day bridges nothing
    victoria = CalendarSpec(country="AU", subdiv="VIC")
    melbourne = CheckContext("s", NOW, None, "UTC", (), 0, calendar=victoria)
    assert melbourne.known_day(nov(2)) == ("a bridge day between Melbourne Cup Day and the weekend")


def test_the_check_learns_month_ends_from_the_table_and_a_backtest_agrees(
    tmp_path: Path, engine_url: str
) -> None:
    counts = with_month_ends([1.5] * 6) | {nov(30): 300}
    load_orders(engine_url, event_rows(counts), events_table())
    after = datetime(2026, 12, 1, 10, tzinfo=UTC)
    result = only_check(tmp_path, engine_url, suite(), as_of=after)
    assert (result.status, result.message) == (
        "pass",
        "2026-11-30: 300 rows, within the usual 246–369 on Mondays; "
        "last business day of the month: usually ×1.5",
    )
    assert len(result.series) == 29  # the state store keeps the training window
    project_for(tmp_path, engine_url, {"s": suite()})
    with planned(tmp_path) as (spec, relation, ctx):
        ctx = dataclasses.replace(ctx, as_of=after)
        [verdict] = backtest(spec, relation, ctx, MONTH_END, after)
    assert (verdict.status, verdict.message) == ("pass", result.message)


def test_a_calendar_names_a_country_and_subdivision_the_holidays_package_knows(
    tmp_path: Path,
) -> None:
    bad = {
        "a": suite() + "calendar: {country: XX}\n",
        "b": suite().replace("suite: events", "suite: b") + "calendar: {country: US, subdiv: ZZ}\n",
    }
    project_for(tmp_path, "sqlite:///x.db", bad)
    issues = [str(i).replace(f"{tmp_path}/", "") for i in load_project(tmp_path).issues]
    assert issues[0] == (
        "checks/a.yml:6:21: calendar.country: expected a country code the holidays package "
        "knows (US, DE…), got 'XX'"
    )
    assert issues[1].startswith(
        "checks/b.yml:6:11: calendar: US has no subdivision 'ZZ'; expected one of: AK, AL,"
    )


def test_as_of_evaluates_an_earlier_day_and_ignores_later_rows(
    tmp_path: Path, engine_url: str
) -> None:
    load_orders(engine_url, event_rows(daily_counts({nov(20): 5, nov(23): 0})), events_table())
    # As of Saturday 10:00 the last complete day is Friday 20th: its outage shows, later days not.
    result = only_check(tmp_path, engine_url, suite(), as_of=datetime(2026, 11, 21, 10, tzinfo=UTC))
    assert (result.status, result.message) == (
        "fail",
        "2026-11-20: 5 rows, 97% below baseline 198 (usually 156–240 on Fridays)",
    )
    assert max(result.series) == datetime(2026, 11, 20, tzinfo=UTC)


def test_a_timezone_aware_column_is_bucketed_in_the_checks_timezone(
    tmp_path: Path, postgres_url: str
) -> None:
    new_york = ZoneInfo("America/New_York")
    counts = daily_counts({nov(23): 20}, last=nov(23))
    load_orders(postgres_url, event_rows(counts, new_york), events_table(aware=True))
    check = "{timestamp_column: created_at, timezone: America/New_York}"
    result = only_check(tmp_path, postgres_url, suite(check))
    # NOW is 07:00 in New York: the last complete day there is Monday the 23rd.
    assert (result.status, result.message) == (
        "fail",
        "2026-11-23: 20 rows, 90% below baseline 200 (usually 157–242 on Mondays)",
    )
    assert result.observed["bucket"] == "2026-11-23T00:00:00-05:00"
    assert result.series[datetime(2026, 11, 23, 5, tzinfo=UTC)] == 20


def test_naive_timestamps_are_wall_clock_time_in_the_suites_timezone(
    tmp_path: Path, engine_url: str
) -> None:
    load_orders(engine_url, event_rows(daily_counts()), events_table())
    # At NOW it is 01:00 on Wednesday the 25th in Auckland: Tuesday the 24th is complete.
    result = only_check(tmp_path, engine_url, suite(timezone="Pacific/Auckland"))
    assert result.message == "2026-11-24: 200 rows, within the usual 156–241 on Tuesdays"
    assert result.observed["bucket"] == "2026-11-24T00:00:00+13:00"


def test_hourly_buckets_compare_the_same_hour_of_day(tmp_path: Path, engine_url: str) -> None:
    first = NOW - timedelta(days=10)
    rows: list[dict[str, Any]] = []
    for h in range(10 * 24 + 12):
        start = (first + timedelta(hours=h)).replace(tzinfo=None)
        busy = 8 <= start.hour < 20
        count = (60 if busy else 6) + (h * 5) % 7 - 3
        if start == datetime(2026, 11, 24, 11):
            count = 9  # the evaluated hour lost most of its rows
        rows += [{"created_at": start + timedelta(minutes=(i * 13) % 60)} for i in range(count)]
    rows = [{"id": i, **row} for i, row in enumerate(rows, 1)]
    load_orders(engine_url, rows, events_table())
    check = "{timestamp_column: created_at, bucket: hour, training_days: 7}"
    result = only_check(tmp_path, engine_url, suite(check))
    assert (result.status, result.message) == (
        "fail",
        "2026-11-24 11:00: 9 rows, 85% below baseline 60 (usually 37–83 at 11:00)",
    )
    assert result.observed["seasonality"] == "hour_of_day"
    assert result.observed["baseline_buckets"] == 168
    night = only_check(
        tmp_path, engine_url, suite(check), as_of=datetime(2026, 11, 24, 4, tzinfo=UTC)
    )
    assert (night.status, night.message) == (
        "pass",
        "2026-11-24 03:00: 3 rows, within the usual 0–15 at 03:00",
    )


def test_backtest_finds_exactly_the_injected_anomalies(tmp_path: Path, engine_url: str) -> None:
    counts = daily_counts({nov(12): 0, nov(18): 640, nov(21): 15})
    load_orders(engine_url, event_rows(counts), events_table())
    project_for(tmp_path, engine_url, {"s": suite()})
    start, end = datetime(2026, 11, 9, tzinfo=UTC), datetime(2026, 11, 24, tzinfo=UTC)
    with planned(tmp_path) as (spec, relation, ctx):
        verdicts = backtest(spec, relation, ctx, start, end)
    assert [v.bucket.date() for v in verdicts] == [
        date(2026, 11, 9) + timedelta(days=i) for i in range(15)
    ]
    failed = [(v.bucket.date().isoformat(), v.message) for v in verdicts if v.status != "pass"]
    assert failed == [
        ("2026-11-12", "2026-11-12: 0 rows, baseline 200 (usually 157–242 on Thursdays)"),
        (
            "2026-11-18",
            "2026-11-18: 640 rows, 219% above baseline 201 (usually 158–243 on Wednesdays)",
        ),
        ("2026-11-21", "2026-11-21: 15 rows, 75% below baseline 60 (usually 36–86 on Saturdays)"),
    ]
    assert {v.status for v in verdicts} == {"pass", "fail"}
    # The Thursday after the outage keeps its baseline: the empty one is left out of it.
    after = verdicts[10]
    assert (after.message, after.baseline_median, after.lower, after.upper) == (
        "2026-11-19: 198 rows, within the usual 158–242 on Thursdays; "
        "left out 1 Thursday that was an anomaly",
        200.0,
        157.57,
        242.43,
    )


class FakeHistory:
    """What the state store would say: stored rows per day and owners' "expected" marks."""

    def __init__(self, stored: dict[datetime, float], expected: set[datetime]) -> None:
        self.stored, self.expected = stored, expected

    def expected_buckets(self, suite: str, check: str) -> set[datetime]:
        return self.expected

    def bucket_history(
        self, suite: str, check: str, *, since: datetime | None = None
    ) -> dict[datetime, float]:
        return {b: v for b, v in self.stored.items() if since is None or b >= since}


def test_stored_counts_fill_in_purged_days_and_expected_days_leave_the_baseline(
    tmp_path: Path, sqlite_url: str
) -> None:
    counts = daily_counts()
    kept = {day: n for day, n in counts.items() if day >= nov(9)}
    load_orders(sqlite_url, event_rows(kept), events_table())
    project_for(tmp_path, sqlite_url, {"s": suite()})
    stored = {datetime.combine(d, time(), UTC): float(n) for d, n in counts.items()}
    with planned(tmp_path, FakeHistory(stored, set())) as (spec, relation, ctx):
        result = VolumeAnomaly(spec, relation, ctx).evaluate({})
    assert result.message == "2026-11-23: 204 rows, within the usual 157–242 on Mondays"
    assert result.observed["baseline_buckets"] == 28

    # Without the stored counts only two Mondays are left: too few to judge.
    with planned(tmp_path) as (spec, relation, ctx):
        alone = VolumeAnomaly(spec, relation, ctx).evaluate({})
    assert (alone.status, alone.message) == (
        "warn",
        "2026-11-23: only 2 Mondays of history (needs 3): cannot judge yet",
    )

    mondays = {datetime(2026, 11, d, tzinfo=UTC) for d in (2, 9, 16)}
    with planned(tmp_path, FakeHistory(stored, mondays)) as (spec, relation, ctx):
        warned = VolumeAnomaly(spec, relation, ctx).evaluate({})
    assert (warned.status, warned.message) == (
        "warn",
        "2026-11-23: only 1 Monday of history (needs 3): cannot judge yet",
    )


def test_a_baseline_survives_the_source_purging_old_rows(tmp_path: Path, engine_url: str) -> None:
    load_orders(engine_url, event_rows(daily_counts()), events_table())
    first = only_check(tmp_path, engine_url, suite())
    engine = sa.create_engine(engine_url)
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM events WHERE created_at < '2026-11-09'"))
    engine.dispose()
    again = only_check(tmp_path, engine_url, suite())
    assert (again.message, again.observed) == (first.message, first.observed)


def test_too_little_history_is_a_warning_whatever_the_severity(
    tmp_path: Path, engine_url: str
) -> None:
    counts = daily_counts(first=nov(20))
    load_orders(engine_url, event_rows(counts), events_table())
    result = only_check(
        tmp_path, engine_url, suite("{timestamp_column: created_at, severity: fail}")
    )
    assert (result.status, result.message) == (
        "warn",
        "2026-11-23: only 3 days of history (needs 7): cannot judge yet",
    )


def test_a_missing_timestamp_column_is_an_error(tmp_path: Path, engine_url: str) -> None:
    load_orders(engine_url, event_rows(daily_counts()), events_table())
    result = only_check(tmp_path, engine_url, suite("{timestamp_column: inserted_at}"))
    assert (result.status, result.message) == (
        "error",
        "column 'inserted_at' not found in events; available: id, created_at",
    )


def test_a_backtest_that_cannot_run_raises_a_readable_error(
    tmp_path: Path, sqlite_url: str
) -> None:
    load_orders(sqlite_url, event_rows(daily_counts()), events_table())
    project_for(tmp_path, sqlite_url, {"s": suite("{timestamp_column: inserted_at}")})
    start, end = datetime(2026, 11, 9, tzinfo=UTC), datetime(2026, 11, 24, tzinfo=UTC)
    with planned(tmp_path) as (spec, relation, ctx), pytest.raises(DqAgentError) as raised:
        backtest(spec, relation, ctx, start, end)
    assert str(raised.value) == (
        "volume_anomaly(inserted_at): column 'inserted_at' not found in events; available: id, created_at"
    )


def test_other_databases_are_not_supported_yet(tmp_path: Path, sqlite_url: str) -> None:
    load_orders(sqlite_url, event_rows(daily_counts()), events_table())
    project_for(tmp_path, sqlite_url, {"s": suite()})
    with planned(tmp_path) as (spec, relation, ctx):
        relation.engine.dialect.name = "mssql"
        result = VolumeAnomaly(spec, relation, ctx).evaluate({})
    assert (result.status, result.message) == (
        "error",
        "volume_anomaly is not supported yet on mssql",
    )


@contextmanager
def planned(root: Path, history: FakeHistory | None = None) -> Iterator[tuple[Any, Any, Any]]:
    """The one check of the project's one suite, its relation and a context at NOW."""
    project = load_project(root, env={})
    [suite_] = project.suites.values()
    connector = project.connectors[suite_.source.connector]
    engine = create_engine(connector, root)
    try:
        relation = SqlSource(engine, suite_.source, connector).open()
        ctx = CheckContext(
            suite=suite_.suite,
            now=NOW,
            as_of=None,
            timezone=suite_.timezone,
            key=(),
            max_findings=20,
            history=history,
        )
        yield suite_.checks[0], relation, ctx
    finally:
        engine.dispose()


def test_the_benchmark_runs_on_real_series() -> None:
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run(
        [sys.executable, str(root / "benchmarks" / "volume.py"), "--rounds", "1"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    for line in (
        "recall: caught/judged",
        "false alarms: alerts/judged",
        "without a calendar (only days with no count are expected)",
        "with the calendar (its holidays and closure days are expected too)",
        "  all but Birrarung Marr ",
    ):
        assert line in done.stdout
    assert [w for w in ("drop", "spike", "zero") if w not in done.stdout] == []
