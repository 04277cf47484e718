"""``distribution_shift``: a share of a numeric column's rows whose order of magnitude moved.

The silent ELT failure this is for: the columns and types stay the same, but some rows start
arriving in another currency or unit (Yen beside dollars, cents beside dollars, grams beside
kilograms). Row counts, nulls and schemas all pass; the magnitudes do not.

The database counts each bucket's rows in quarter-decade bins of ``|value|`` (one GROUP BY per
bucket, bin and, with ``group_by``, group; never the rows themselves). The baseline is the
pooled histogram of the buckets before: its top and bottom 1% set two edges, and each bucket's
share of rows beyond them is how often values are that large (small). A bucket is flagged when
its share beyond an edge exceeds the baseline buckets' median share by more than ``sensitivity``
robust deviations, more than sampling noise and at least ``min_share``. How far the rows moved
is read from the bins (or, when a group explains it, from the group's mean against the usual
mean), and the groups whose rows carry the excess are named, new ones as such.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from dq_agent.checks.base import CheckContext, error_result, result
from dq_agent.checks.volume import MAD_SCALE
from dq_agent.checks.windows import (
    STEP,
    BucketVerdict,
    WindowedCheck,
    bucket_label,
    bucket_start,
    bucket_starts,
    last_complete_bucket,
    to_utc,
    training_span,
    verdict_status,
)
from dq_agent.config.models import CheckSpec, DistributionShiftArgs
from dq_agent.results import CheckResult, Status
from dq_agent.sources.base import Relation
from dq_agent.sources.sql import translate

# Quarter-decade bins of |value| from 10^-3 to 10^12: bin k holds [EDGES[k-1], EDGES[k]).
_PER_DECADE = 4
EDGES = tuple(10 ** (-3 + k / _PER_DECADE) for k in range(15 * _PER_DECADE + 1))
# The share of the baseline's rows beyond each edge: what counts as "that large" or "that small".
TAIL = 0.01

Histogram = dict[int, int]


@dataclass
class _Bucket:
    """One bucket's rows: counts and sums per bin, overall and per group."""

    bins: Histogram = field(default_factory=dict)
    groups: dict[Any, Histogram] = field(default_factory=dict)
    sums: dict[Any, float] = field(default_factory=dict)

    @property
    def rows(self) -> int:
        return sum(self.bins.values())

    def add(self, group: Any, bin_: int, count: int, total: float) -> None:
        self.bins[bin_] = self.bins.get(bin_, 0) + count
        per_group = self.groups.setdefault(group, {})
        per_group[bin_] = per_group.get(bin_, 0) + count
        self.sums[group] = self.sums.get(group, 0.0) + total


@dataclass(frozen=True)
class Shift:
    """What the check made of one bucket."""

    bucket: datetime  # start, UTC
    label: str
    rows: int
    outcome: str  # normal | anomaly | too_little_history
    message: str
    observed: dict[str, Any]


class DistributionShift(WindowedCheck[DistributionShiftArgs]):
    """One GROUP BY of its own over the window (bucket, group, bin)."""

    args_type = DistributionShiftArgs

    def evaluate(self, values: Mapping[str, Any]) -> CheckResult:
        problem = self.problem()
        if problem:
            return error_result(self.spec, problem)
        local = last_complete_bucket(self.settled_at, self.args.bucket, self.zone)
        buckets = self.histograms(local - training_span(self.args), local + STEP[self.args.bucket])
        found = self.judge(buckets, local)
        ok = found.outcome != "anomaly"
        checked = result(self.spec, ok, found.message, observed=found.observed)
        metrics = {"rows": float(found.rows)}
        # The shares beyond the usual range with their limits, for the dashboard's charts.
        for name in ("share_above", "share_below", "share_above.upper", "share_below.upper"):
            if name in found.observed:
                metrics[name] = float(found.observed[name])
        status: Status = "warn" if found.outcome == "too_little_history" else checked.status
        return dataclasses.replace(checked, status=status, metrics=metrics)

    def problem(self) -> str | None:
        missing = super().problem()
        if missing:
            return missing
        for column in (self.args.column, self.args.group_by):
            if column is not None and column not in self.relation.columns:
                return (
                    f"column {column!r} not found in {self.relation.label}; "
                    f"available: {', '.join(self.relation.columns)}"
                )
        if self.relation.columns[self.args.column].family not in ("integer", "number"):
            return f"column {self.args.column!r} is not numeric: distribution_shift needs numbers"
        return None

    # -- the database's part ----------------------------------------------------------------

    def histograms(self, start: datetime, end: datetime) -> dict[datetime, _Bucket]:
        """Per bucket (naive local start) in ``[start, end)``: rows per bin and group."""
        value = self.relation.column(self.args.column)
        group = (
            self.relation.column(self.args.group_by)
            if self.args.group_by
            else sa.literal(None, sa.String())
        )
        magnitude = sa.func.abs(value)
        bin_ = sa.case(
            *[(magnitude < edge, sa.literal(k)) for k, edge in enumerate(EDGES)],
            else_=sa.literal(len(EDGES)),
        )
        rows = self.window.rows(start, end, value=value, grp=group, bin=bin_)
        query = (
            sa.select(
                rows.c.bucket,
                rows.c.grp,
                rows.c.bin,
                sa.func.count().label("n"),
                sa.func.sum(rows.c.value).label("total"),
            )
            .where(rows.c.value.is_not(None))
            .group_by(rows.c.bucket, rows.c.grp, rows.c.bin)
        )
        try:
            with self.relation.connect() as conn:
                found = conn.execute(query).all()
        except sa.exc.SQLAlchemyError as exc:
            raise translate(exc, self.relation.engine.url) from exc
        buckets: dict[datetime, _Bucket] = {}
        for start_value, grp, bin_value, count, total in found:
            if start_value is None:
                continue
            bucket = buckets.setdefault(bucket_start(start_value), _Bucket())
            bucket.add(grp, int(bin_value), int(count), float(total or 0))
        return buckets

    # -- the judgement ----------------------------------------------------------------------

    def judge(self, buckets: Mapping[datetime, _Bucket], local: datetime) -> Shift:
        """The bucket starting at naive ``local``, against the ones before it."""
        unit, args = self.args.bucket, self.args
        label = bucket_label(local, unit)
        utc = to_utc(local, self.zone)
        current = buckets.get(local, _Bucket())
        expected = self.expected(local - training_span(args), local + STEP[unit])
        baseline = [
            buckets[start]
            for start in bucket_starts(local - training_span(args), local, unit, self.zone)
            if start in buckets
            and buckets[start].rows > 0
            and to_utc(start, self.zone) not in expected
        ]

        def shift(outcome: str, message: str, **observed: Any) -> Shift:
            return Shift(
                utc,
                label,
                current.rows,
                outcome,
                f"{label}: {message}",
                {"bucket": local.replace(tzinfo=self.zone).isoformat(), "rows": current.rows}
                | observed,
            )

        if utc in expected:
            return shift("normal", expected[utc])
        if len(baseline) < args.min_history:
            have = f"only {len(baseline)} {unit}s of history" if baseline else "no history yet"
            return shift(
                "too_little_history", f"{have} (needs {args.min_history}): cannot judge yet"
            )
        if current.rows == 0:
            return shift("normal", f"no {args.column} values to judge")
        # The edges are the median of each baseline bucket's own: a bucket that went wrong
        # before (and was never repaired) cannot move them, as it would a pooled percentile.
        upper = round(statistics.median(_upper_edge(b.bins) for b in baseline))
        lower = round(statistics.median(_lower_edge(b.bins) for b in baseline))

        def above(k: int) -> bool:
            return k >= upper

        def below(k: int) -> bool:
            return k < lower

        # Such buckets leave the baseline for everything else, too.
        clean = self._clean(baseline, above, below)
        pooled = _pool(b.bins for b in clean)
        up, down = _share(current.bins, above), _share(current.bins, below)
        ups = [_share(b.bins, above) for b in clean]
        downs = [_share(b.bins, below) for b in clean]
        usual_up, usual_down = statistics.median(ups), statistics.median(downs)
        observed: dict[str, Any] = {
            "share_above": round(up, 4),
            "usual_share_above": round(usual_up, 4),
            "share_below": round(down, 4),
            "usual_share_below": round(usual_down, 4),
            "above": _number(EDGES[upper - 1]) if upper > 0 else None,
            "below": _number(EDGES[lower - 1]) if lower > 0 else None,
            "baseline_buckets": len(clean),
        }
        n = current.rows
        limit_up = usual_up + self._allowance(ups, usual_up, _share(pooled, above), n)
        limit_down = usual_down + self._allowance(downs, usual_down, _share(pooled, below), n)
        observed["share_above.upper"] = round(limit_up, 4)
        observed["share_below.upper"] = round(limit_down, 4)
        excess_up, excess_down = up - limit_up, down - limit_down
        unusual = max(excess_up, excess_down) > 0
        larger = excess_up >= excess_down
        beyond = above if larger else below
        steps, moved = _fit_shift(current.bins, pooled, larger)
        factor = 10 ** (steps / _PER_DECADE)
        groups = self._explaining(current, baseline, clean, beyond) if unusual else []
        unknown = [g["value"] for g in groups if g["seen"] * 2 < len(clean)]
        if groups and len(unknown) == len(groups):
            # Groups without a baseline of their own: their rows are the ones that moved, by
            # their mean against the usual mean of the others.
            moved = sum(g["rows"] for g in groups) / current.rows
            factor = _mean_factor(current, clean, unknown) or factor
        if not unusual or moved < args.min_share:
            return shift(
                "normal",
                f"{args.column} as usual: {up:.1%} of {current.rows:,} values above "
                f"{observed['above']} (usually {usual_up:.1%})",
                **observed,
            )
        size = "larger" if larger else "smaller"
        times = _times(factor if larger else 1 / factor)
        rows = round(moved * current.rows)
        message = (
            f"{args.column} shifted: {moved:.0%} of {current.rows:,} rows ({rows:,}) are about "
            f"{times} {size} than usual"
        )
        if groups:
            message += "; " + _groups_sentence(args.group_by or "", groups, len(clean), args)
        else:
            edge = observed["above"] if larger else observed["below"]
            share, usual = (up, usual_up) if larger else (down, usual_down)
            message += (
                f" ({share:.0%} are {'above' if larger else 'below'} {edge}, usually {usual:.0%})"
            )
        observed |= {"moved_share": round(moved, 4), "factor": round(factor, 3), "groups": groups}
        return shift("anomaly", message, **observed)

    def _clean(self, baseline: Sequence[_Bucket], above: Any, below: Any) -> list[_Bucket]:
        """The baseline buckets whose shares beyond the edges were themselves ordinary."""
        kept = list(baseline)
        for beyond in (above, below):
            shares = [_share(b.bins, beyond) for b in kept]
            usual = statistics.median(shares)
            spread = MAD_SCALE * statistics.median([abs(x - usual) for x in shares])
            limit = usual + max(self.args.sensitivity * spread, self.args.min_share)
            kept = [b for b, x in zip(kept, shares, strict=True) if x <= limit]
        return kept

    def _allowance(self, shares: Sequence[float], usual: float, pooled: float, rows: int) -> float:
        """How far above the usual share a bucket may go by chance, and still not alert."""
        k = self.args.sensitivity
        spread = MAD_SCALE * statistics.median([abs(s - usual) for s in shares])
        # A share of n rows cannot be steadier than binomial noise, at the rate the whole
        # baseline shows (a small bucket's usual share is often none at all), and never less
        # than one row in a thousand, so that an empty tail does not make one row news.
        p = max(usual, pooled, 0.001)
        noise = math.sqrt(p * (1 - p) / rows)
        return max(k * spread, k * noise, self.args.min_share)

    def _explaining(
        self,
        current: _Bucket,
        baseline: Sequence[_Bucket],
        clean: Sequence[_Bucket],
        beyond: Any,
    ) -> list[dict[str, Any]]:
        """The groups whose rows carry most of the excess, largest first (up to three). A
        group seen in fewer than half the ordinary buckets has no usual share of its own."""
        if not self.args.group_by:
            return []
        before: dict[Any, Histogram] = {}
        seen: dict[Any, int] = {}
        for bucket in clean:
            for value, hist in bucket.groups.items():
                before[value] = _pool([before.get(value, {}), hist])
                seen[value] = seen.get(value, 0) + 1
        ever = {value for bucket in baseline for value in bucket.groups}
        overall = _share(_pool(b.bins for b in clean), beyond)
        excess: list[tuple[float, Any, int]] = []
        for value, hist in current.groups.items():
            n = sum(hist.values())
            own = seen.get(value, 0) * 2 >= len(clean)
            usual = _share(before[value], beyond) if own else overall
            extra = _count(hist, beyond) - usual * n
            if extra > 0:
                excess.append((extra, value, n))
        total = sum(e for e, _, _ in excess)
        chosen: list[dict[str, Any]] = []
        covered = 0.0
        for extra, value, n in sorted(excess, key=lambda e: -e[0])[:3]:
            if covered >= 0.8 * total:
                break
            covered += extra
            chosen.append(
                {"value": value, "rows": n, "new": value not in ever, "seen": seen.get(value, 0)}
            )
        return chosen


def _pool(histograms: Any) -> Histogram:
    pooled: Histogram = {}
    for hist in histograms:
        for k, n in hist.items():
            pooled[k] = pooled.get(k, 0) + n
    return pooled


def _count(hist: Histogram, where: Any) -> int:
    return sum(n for k, n in hist.items() if where(k))


def _share(hist: Histogram, where: Any) -> float:
    total = sum(hist.values())
    return _count(hist, where) / total if total else 0.0


def _upper_edge(pooled: Histogram) -> int:
    """The lowest bin from which up the baseline holds at most ``TAIL`` of its rows."""
    total, above = sum(pooled.values()), 0
    for k in range(len(EDGES), -1, -1):
        if above + pooled.get(k, 0) > TAIL * total:
            return k + 1
        above += pooled.get(k, 0)
    return 0


def _lower_edge(pooled: Histogram) -> int:
    """The highest bin below which the baseline holds at most ``TAIL`` of its rows."""
    total, below = sum(pooled.values()), 0
    for k in range(len(EDGES) + 1):
        if below + pooled.get(k, 0) > TAIL * total:
            return k
        below += pooled.get(k, 0)
    return len(EDGES) + 1


def _fit_shift(current: Histogram, pooled: Histogram, larger: bool) -> tuple[int, float]:
    """The move that best explains the bucket: a share ``m`` of the usual distribution moved
    by ``s`` bins (up when ``larger``), the rest where it was. For each ``s`` the best ``m`` is
    a least-squares fit of (current − usual) to m · (moved − usual); the ``s`` leaving the
    smallest difference wins."""
    total_now, total_before = sum(current.values()), sum(pooled.values())
    bins = range(-len(EDGES), 2 * len(EDGES) + 2)
    now = [current.get(k, 0) / total_now for k in bins]
    usual = [pooled.get(k, 0) / total_before for k in bins]
    best = (math.inf, 0, 0.0)
    for steps in range(1, len(EDGES) + 1):
        signed = steps if larger else -steps
        moved = [pooled.get(k - signed, 0) / total_before for k in bins]
        change = [m - u for m, u in zip(moved, usual, strict=True)]
        gap = [n - u for n, u in zip(now, usual, strict=True)]
        norm = sum(c * c for c in change)
        if not norm:
            continue
        share = min(1.0, max(0.0, sum(c * g for c, g in zip(change, gap, strict=True)) / norm))
        left = sum(abs(g - share * c) for g, c in zip(gap, change, strict=True))
        if left < best[0]:
            best = (left, signed, share)
    return best[1], best[2]


def _mean_factor(current: _Bucket, baseline: Sequence[_Bucket], groups: list[Any]) -> float | None:
    """The explaining groups' mean against the usual mean of the other rows."""
    rows = sum(sum(current.groups[g].values()) for g in groups)
    total = sum(current.sums[g] for g in groups)
    others = [
        (sum(h.values()), bucket.sums[value])
        for bucket in baseline
        for value, h in bucket.groups.items()
        if value not in groups
    ]
    usual_rows = sum(n for n, _ in others) or sum(b.rows for b in baseline)
    usual_total = sum(s for _, s in others) or sum(sum(b.sums.values()) for b in baseline)
    if not rows or not usual_rows or not usual_total or not total:
        return None
    return abs((total / rows) / (usual_total / usual_rows))


def _groups_sentence(
    column: str, groups: Sequence[Mapping[str, Any]], buckets: int, args: Any
) -> str:
    parts = []
    for g in groups:
        part = f"{column} = {g['value']} ({g['rows']:,} rows"
        if g["new"]:
            part += f", new: not seen in the {args.training_days} days before"
        elif g["seen"] * 2 < buckets:
            part += f", seen in only {g['seen']} of the {buckets} {args.bucket}s before"
        parts.append(part + ")")
    return "they have " + " or ".join(parts)


def _times(factor: float) -> str:
    """A factor as people say it: 130×, 1,000×, 2.5×."""
    if factor >= 10:
        digits = len(str(int(factor))) - 2
        return f"{round(factor, -digits):,.0f}×"
    return f"{factor:.1f}×"


def _number(value: float) -> str:
    return f"{value:,.0f}" if value >= 10 else f"{value:.3g}"


# --- backtest --------------------------------------------------------------------------------


def backtest(
    spec: CheckSpec, relation: Relation, ctx: CheckContext, start: datetime, end: datetime
) -> list[BucketVerdict]:
    """What the check would have said at the end of every bucket in ``[start, end)``."""
    check = DistributionShift(spec, relation, ctx)
    judged = check.backtest_buckets(start, end)
    unit = check.args.bucket
    if not judged:
        return []
    buckets = check.histograms(judged[0] - training_span(check.args), judged[-1] + STEP[unit])
    verdicts = []
    for local in judged:
        found = check.judge(buckets, local)
        status = verdict_status(found.outcome, spec.severity)
        verdicts.append(
            BucketVerdict(found.bucket, found.rows, status, found.message, None, None, None)
        )
    return verdicts
