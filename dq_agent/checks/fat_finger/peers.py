"""Peers: what a column typically holds, per group or across the table, on a log scale.

Typing slips multiply a value (× 10, × 1.1 for a transposition), so typicality is judged on
log10 of positive values. Quantiles do not change under the log, so each group's five-number
summary (min, quartiles, median, max) is read with one window query in the database; nothing
but those few rows per group comes back.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from dq_agent.sources.base import Relation

# Fewer values than this say nothing reliable about what is typical.
MIN_PEERS = 8
# The spread (a robust standard deviation of log10 values) never counts as narrower than this:
# a price list with one price per product would otherwise make a 1% change an outlier.
MIN_LOG_SCALE = 0.05
# Summaries read per query at most; records in other groups are judged against all rows.
MAX_PEER_GROUPS = 1_000
# IQR / 1.349 estimates a standard deviation for normally distributed (log) values.
_IQR_TO_SD = 1.349


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


def measure(
    relation: Relation,
    column: str,
    group_by: Sequence[str] = (),
    *,
    only: Collection[tuple[Any, ...]] | None = None,
) -> Peers:
    """The spreads of ``column``: across all rows, and per group (only ``only``, if given)."""
    overall = _summaries(relation, column, (), None).get(())
    groups: dict[tuple[Any, ...], Spread] = {}
    if group_by:
        wanted = None
        if only is not None:
            wanted = [g for g in only if all(v is not None for v in g)][:MAX_PEER_GROUPS]
        if wanted is None or wanted:
            groups = _summaries(relation, column, group_by, wanted)
    return Peers(column, tuple(group_by), overall, groups)


def _summaries(
    relation: Relation,
    column: str,
    group_by: Sequence[str],
    only: Sequence[tuple[Any, ...]] | None,
) -> dict[tuple[Any, ...], Spread]:
    value = relation.column(column)
    keys = [relation.column(name) for name in group_by]
    conditions: list[sa.ColumnElement[bool]] = [value > 0]
    if only is not None:
        if len(keys) == 1:
            conditions.append(keys[0].in_([g[0] for g in only]))
        else:
            conditions.append(sa.tuple_(*keys).in_(list(only)))
    partition = keys or None
    ranked = (
        sa.select(
            *[key.label(f"g{i}") for i, key in enumerate(keys)],
            value.label("v"),
            sa.func.row_number().over(partition_by=partition, order_by=value).label("rn"),
            sa.func.count().over(partition_by=partition).label("n"),
        )
        .select_from(relation.selectable)
        .where(*conditions)
        .subquery("ranked")
    )
    rn, n = ranked.c.rn, ranked.c.n
    query = (
        sa.select(ranked)
        .where(
            n >= MIN_PEERS,
            sa.or_(
                rn == 1,
                rn == n,
                _is_first_after(rn, n - 1, 4),
                _is_first_after(rn, n - 1, 2),
                _is_first_after(rn, 3 * (n - 1), 4),
            ),
        )
        .limit(5 * MAX_PEER_GROUPS)
    )
    with relation.connect() as conn:
        rows = conn.execute(query).mappings().all()
    by_group: dict[tuple[Any, ...], dict[int, Decimal]] = {}
    counts: dict[tuple[Any, ...], int] = {}
    for row in rows:
        group = tuple(row[f"g{i}"] for i in range(len(keys)))
        by_group.setdefault(group, {})[int(row["rn"])] = to_decimal(row["v"])
        counts[group] = int(row["n"])
    spreads: dict[tuple[Any, ...], Spread] = {}
    for group, ranks in by_group.items():
        count = counts[group]
        positions = (1, 1 + (count - 1) // 4, 1 + (count - 1) // 2, 1 + 3 * (count - 1) // 4)
        if not all(p in ranks for p in (*positions, count)):
            continue  # cut off by the row limit
        low, q1, median, q3 = (ranks[p] for p in positions)
        spreads[group] = Spread(count, low, q1, median, q3, ranks[count])
    return spreads


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


def _is_first_after(
    rn: sa.ColumnElement[Any], numerator: sa.ColumnElement[Any], denominator: int
) -> sa.ColumnElement[bool]:
    """``rn == 1 + numerator // denominator`` without dividing: integer division is ``/``
    on some warehouses (BigQuery's is a FLOAT64 division), comparisons are the same everywhere."""
    return sa.and_(denominator * (rn - 1) <= numerator, numerator < denominator * rn)
