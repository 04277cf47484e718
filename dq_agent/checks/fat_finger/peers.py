"""Peers: what a column typically holds, per group or across the table, on a log scale.

Typing slips multiply a value (× 10, × 1.1 for a transposition), so typicality is judged on
log10 of positive values. One aggregate query reads, for every analysed column at once, a
histogram of log10 values per group (:data:`BINS_PER_DECADE` bins a decade, each with its
count and its smallest and largest value); the five-number summaries (min, quartiles, median,
max) are read off those histograms here. Nothing but a few hundred rows per group comes back,
and the table is read once, on every engine: no window sorts, no engine-specific percentile
functions.

The extremes are exact. A quartile is exact where its bin holds one distinct value (a price
list) and otherwise interpolated on log10 between the bin's smallest and largest value, so it
is off by less than a bin's width (10^(1/40) − 1 ≈ 6%), a fraction of the narrowest spread
judged (:data:`MIN_LOG_SCALE`).

A table of more than :data:`SAMPLE_VALUES` rows is surveyed on a random sample of about that
many (whole pages of a PostgreSQL table, ``TABLESAMPLE SYSTEM``; elsewhere rows drawn with the
engine's random function): quartiles barely move, the extremes become the sample's, and a
small group may have too few sampled values to be judged on its own (its records are then
judged against all rows).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from dq_agent.checks.base import count_where
from dq_agent.expressions import numeric_type
from dq_agent.sources.base import Relation, planner_settings

# Fewer values than this say nothing reliable about what is typical.
MIN_PEERS = 8
# The spread (a robust standard deviation of log10 values) never counts as narrower than this:
# a price list with one price per product would otherwise make a 1% change an outlier.
MIN_LOG_SCALE = 0.05
# Histogram bins per factor of ten.
BINS_PER_DECADE = 40
# Histogram rows read at most; beyond it (tens of thousands of groups) peers are all rows.
MAX_HISTOGRAM_ROWS = 200_000
# Above this many rows the columns are surveyed on a random sample of about this many:
# quartiles of 100,000 values are within a fraction of a percent of all values'.
SAMPLE_VALUES = 100_000
# Decimal places probed: how many each column's values really use.
PROBED_PLACES = 4
# IQR / 1.349 estimates a standard deviation for normally distributed (log) values.
_IQR_TO_SD = 1.349
_LN_10 = math.log(10)


@dataclass(frozen=True)
class Spread:
    """The five-number summary of a column's positive values in one set of peers."""

    count: int
    low: Decimal
    q1: Decimal
    median: Decimal
    q3: Decimal
    high: Decimal

    @property
    def log_scale(self) -> float:
        """A robust standard deviation of log10(value)."""
        iqr = math.log10(self.q3) - math.log10(self.q1)
        return max(iqr / _IQR_TO_SD, MIN_LOG_SCALE)

    def z(self, value: Decimal) -> float | None:
        """How many robust standard deviations ``value`` lies from the median, on log10."""
        if value <= 0:
            return None
        return (math.log10(value) - math.log10(self.median)) / self.log_scale

    def within(self, value: Decimal) -> bool:
        """Whether ``value`` lies within the range the peers hold."""
        return self.low <= value <= self.high

    def describe(self) -> str:
        return (
            f"median {number(self.median)}, middle half {number(self.q1)}–{number(self.q3)}, "
            f"range {number(self.low)}–{number(self.high)}, {self.count:,} values"
        )


@dataclass(frozen=True)
class Peers:
    """Spreads of one column: per group of ``group_by`` values, and across all rows."""

    column: str
    group_by: tuple[str, ...]
    overall: Spread | None
    groups: Mapping[tuple[Any, ...], Spread] = field(default_factory=dict)

    def lookup(self, group: tuple[Any, ...]) -> tuple[Spread | None, str]:
        """The spread a record in ``group`` is judged against, and who its peers are."""
        spread = self.groups.get(group) if self.group_by else None
        if spread is not None and spread.count >= MIN_PEERS:
            scope = " and ".join(f"{n} = {v}" for n, v in zip(self.group_by, group, strict=True))
            return spread, f"rows with {scope}"
        if self.overall is not None and self.overall.count >= MIN_PEERS:
            return self.overall, "all rows"
        return None, "all rows"


# One histogram bin: its count, and the smallest and largest value in it.
_Bin = tuple[int, Decimal, Decimal]
_Histograms = dict[int, dict[tuple[Any, ...], dict[int, _Bin]]]
# Per column index, one row per histogram bin: its count, then how many of its values need
# more than 0, 1, … PROBED_PLACES decimal places.
_Probes = dict[int, list[tuple[int, ...]]]


@dataclass(frozen=True)
class Survey:
    """What the analysed columns typically hold, and the decimal places their values use."""

    peers: Mapping[str, Peers]
    # Per column: how many positive values were surveyed, and per number of decimal places
    # (0 to PROBED_PLACES) how many of them need more.
    values: Mapping[str, int]
    beyond_places: Mapping[str, tuple[int, ...]]
    # The share of rows surveyed (1: all of them).
    sampled: float = 1.0


def survey(
    relation: Relation, columns: Sequence[str], group_by: Sequence[str] = (), *, rows: int = 0
) -> Survey:
    """The spreads of each of ``columns``, across all rows and per group, and the decimal
    places their values use: one aggregate query (on a random sample of the rows when
    ``rows`` is over :data:`SAMPLE_VALUES` and the engine has a random function).

    When the groups are too many to read their histograms (more than
    :data:`MAX_HISTOGRAM_ROWS` rows), a second query reads them across all rows only.
    """
    share = min(1.0, SAMPLE_VALUES / rows) if rows else 1.0
    if _random(relation.engine.dialect.name) is None:
        share = 1.0
    found = _histograms(relation, columns, group_by, share)
    if found is None:
        found = _histograms(relation, columns, (), share)
        assert found is not None  # bins of one group cannot run past the limit
        group_by = ()
    histograms, probes = found
    values = {name: sum(p[0] for p in probes.get(i, [])) for i, name in enumerate(columns)}
    beyond = {
        name: tuple(sum(p[1 + d] for p in probes.get(i, [])) for d in range(PROBED_PLACES + 1))
        for i, name in enumerate(columns)
    }
    peers = {
        name: _peers(name, tuple(group_by), histograms.get(i, {})) for i, name in enumerate(columns)
    }
    return Survey(peers, values, beyond, share)


def _random(dialect: str) -> Callable[[sa.ColumnElement[Any]], sa.ColumnElement[Any]] | None:
    """A uniform random number in [0, 1) for each row of ``column``'s table, where the
    dialect has one."""
    if dialect == "sqlite":
        # Without a column in it, SQLite may draw once for the whole join, not once a row.
        return lambda column: (
            sa.func.abs((sa.func.random() + sa.func.coalesce(column, 0) * 0) % 1_000_000)
            / sa.literal(1_000_000.0)
        )
    if dialect in ("postgresql", "duckdb", "trino", "redshift"):
        return lambda column: sa.func.random()
    if dialect in ("mysql", "mariadb", "bigquery", "databricks"):
        return lambda column: sa.func.rand()
    return None


def _histograms(
    relation: Relation, columns: Sequence[str], group_by: Sequence[str], share: float
) -> tuple[_Histograms, _Probes] | None:
    """Per column index, per group, per bin: the bin, and the decimal places its values
    need. None when there are too many rows."""
    source: sa.FromClause = relation.selectable
    if share < 1 and relation.engine.dialect.name == "postgresql" and isinstance(source, sa.Table):
        # Whole pages drawn at random: a sample read without reading the rest of the table.
        source = sa.tablesample(source, sa.func.system(round(share * 100, 6)), name="sample")
    elif share < 1:
        random = _random(relation.engine.dialect.name)
        assert random is not None
        drawn = random(source.c[columns[0]]) < sa.literal(share)
        source = sa.select(source).where(drawn).subquery("sample")
    # Every row is read once, as one row per analysed column: a cross join with the column
    # indexes (a constant table) turns the columns into rows, on any engine.
    indexes = sa.union_all(
        *[sa.select(sa.literal_column(str(i)).label("k")) for i in range(len(columns))]
    ).subquery("k")
    k = indexes.c.k
    num = numeric_type()
    value = sa.case(*[(k == i, sa.cast(source.c[name], num)) for i, name in enumerate(columns)])
    positive = value > 0
    log_bin = sa.func.floor(
        sa.func.ln(sa.cast(value, sa.Double())) * sa.literal(BINS_PER_DECADE / _LN_10)
    )
    groups = [source.c[name].label(f"g{i}") for i, name in enumerate(group_by)]
    rows = (
        sa.select(k, *groups, value.label("v"), sa.case((positive, log_bin)).label("b"))
        .select_from(source)
        .join(indexes, sa.true())
        .subquery("rows")
    )
    keys = [rows.c.k, *[rows.c[f"g{i}"] for i in range(len(group_by))], rows.c.b]
    v = rows.c.v
    epsilon = sa.literal(Decimal("1e-9"), num)
    beyond = [
        count_where(sa.func.abs(sa.func.round(v, p, type_=num) - v) > epsilon).label(f"p{p}")
        for p in range(PROBED_PLACES + 1)
    ]
    query = (
        sa.select(
            *keys,
            sa.func.count().label("n"),
            sa.func.min(v).label("low"),
            sa.func.max(v).label("high"),
            *beyond,
        )
        .where(v > 0)
        .group_by(*keys)
        .limit(MAX_HISTOGRAM_ROWS + 1)
    )
    # PostgreSQL cannot tell how few bins there are (it guesses one a row) and would sort the
    # rows on disk to count them: room for a table of the bins is all it needs.
    with relation.connect() as conn, planner_settings(relation, conn, work_mem="64MB"):
        found = conn.execute(query).all()
    if len(found) > MAX_HISTOGRAM_ROWS:
        return None
    histograms: _Histograms = {}
    probes: _Probes = {}
    width = len(keys) + 3
    for row in found:
        index, *group, log_bin_, count, low, high = row[:width]
        bins = histograms.setdefault(int(index), {}).setdefault(tuple(group), {})
        bins[int(log_bin_)] = (int(count), to_decimal(low), to_decimal(high))
        probes.setdefault(int(index), []).append((int(count), *(int(n) for n in row[width:])))
    return histograms, probes


def _peers(
    column: str, group_by: tuple[str, ...], by_group: Mapping[tuple[Any, ...], dict[int, _Bin]]
) -> Peers:
    merged: dict[int, _Bin] = {}
    for bins in by_group.values():
        for index, (count, low, high) in bins.items():
            seen = merged.get(index)
            if seen is not None:
                count, low, high = count + seen[0], min(low, seen[1]), max(high, seen[2])
            merged[index] = (count, low, high)
    groups = {
        group: spread
        for group, bins in by_group.items()
        if group_by and (spread := _spread(bins)) is not None
    }
    return Peers(column, group_by, _spread(merged), groups)


def _spread(bins: Mapping[int, _Bin]) -> Spread | None:
    """The five-number summary read off a histogram (None: fewer than MIN_PEERS values)."""
    ordered = [bins[i] for i in sorted(bins)]
    count = sum(n for n, _, _ in ordered)
    if count < MIN_PEERS:
        return None

    def at(rank: int) -> Decimal:
        """The value of the given rank (1 = smallest)."""
        before = 0
        for n, low, high in ordered:
            if rank <= before + n:
                if low == high or rank == before + 1:
                    return low
                if rank == before + n:
                    return high
                share = (rank - before - 1) / (n - 1)
                logged = math.log10(low) + share * (math.log10(high) - math.log10(low))
                return Decimal(format(10**logged, ".6g"))
            before += n
        return ordered[-1][2]

    q1, median, q3 = (at(1 + (count - 1) * q // 4) for q in (1, 2, 3))
    return Spread(count, ordered[0][1], q1, median, q3, ordered[-1][2])


def to_decimal(value: Any) -> Decimal:
    """A database number as an exact decimal (floats by their shortest text)."""
    if isinstance(value, Decimal):
        return value
    if isinstance(value, float):
        return Decimal(repr(value))
    return Decimal(value)


def number(value: Decimal) -> str:
    """A decimal for people: ``1,000,000``, ``1,234.5``."""
    return format(value.normalize(), ",f")
