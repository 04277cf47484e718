"""Common GX expectations compiled into the suite's single scan, with GX's own semantics.

Great Expectations reads a table many times per suite; these expectations are answered from
the one aggregate query instead. The numbers reported (element_count, unexpected_count,
unexpected_percent, missing_count) and the success rule (``mostly`` over the rows considered)
are GX's, and the test suite checks them against GX itself. Anything not listed here, or any
argument not understood here (e.g. ``row_condition``), runs through GX unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import sqlalchemy as sa

from dq_agent.checks.base import CheckContext, count_where, fetch_findings, result
from dq_agent.config.models import CheckSpec
from dq_agent.results import CheckResult, Finding
from dq_agent.sources.base import Relation

# Arguments that do not change what an expectation computes.
_INERT = {"meta", "notes", "description"}

_COLUMN_MAP_ARGS: dict[str, set[str]] = {
    "expect_column_values_to_not_be_null": {"column", "mostly"},
    "expect_column_values_to_be_null": {"column", "mostly"},
    "expect_column_values_to_be_between": {
        "column",
        "mostly",
        "min_value",
        "max_value",
        "strict_min",
        "strict_max",
    },
    "expect_column_values_to_be_in_set": {"column", "mostly", "value_set"},
    "expect_column_values_to_not_be_in_set": {"column", "mostly", "value_set"},
    "expect_column_values_to_be_unique": {"column", "mostly"},
}
_TABLE_ARGS: dict[str, set[str]] = {
    "expect_table_row_count_to_be_between": {"min_value", "max_value", "strict_min", "strict_max"},
    "expect_table_row_count_to_equal": {"value"},
}


def can_compile(spec: CheckSpec) -> bool:
    """Whether ``spec`` can be answered from the scan (else it runs through GX)."""
    allowed = _COLUMN_MAP_ARGS.get(spec.type) or _TABLE_ARGS.get(spec.type)
    return allowed is not None and set(spec.expectation_kwargs) <= allowed | _INERT


def _mostly_ok(considered: int, unexpected: int, mostly: float) -> bool:
    if considered == 0:
        return True  # GX treats a check over no values as vacuously met
    return (considered - unexpected) / considered >= mostly


class CompiledExpectation:
    """One compiled expectation: aggregates for the scan, GX's verdict from their values."""

    def __init__(self, spec: CheckSpec, relation: Relation, ctx: CheckContext) -> None:
        self.spec = spec
        self.kwargs = spec.expectation_kwargs
        self.relation = relation
        self.ctx = ctx
        self.column_name: str | None = self.kwargs.get("column")

    # -- the scan -------------------------------------------------------------------------

    def aggregates(self) -> dict[str, sa.ColumnElement[Any]]:
        if self.spec.type in _TABLE_ARGS:
            return {"rows": sa.func.count()}
        col = self._col()
        aggs: dict[str, sa.ColumnElement[Any]] = {
            "rows": sa.func.count(),
            "nonnull": sa.func.count(col),
        }
        if self.spec.type == "expect_column_values_to_be_unique":
            # No COUNT(DISTINCT) here: it stops PostgreSQL running the scan in parallel.
            # Uniqueness is proven from the catalog, or probed on its own (see evaluate).
            pass
        elif self.spec.type not in (
            "expect_column_values_to_not_be_null",
            "expect_column_values_to_be_null",
        ):
            aggs["unexpected"] = count_where(self._violation())
        return aggs

    def evaluate(self, values: Mapping[str, Any]) -> CheckResult:
        if self.spec.type in _TABLE_ARGS:
            return self._row_count(int(values["rows"]))
        rows, nonnull = int(values["rows"]), int(values["nonnull"])
        mostly = float(self.kwargs.get("mostly", 1.0))
        nulls = rows - nonnull
        observed: dict[str, Any] = {"element_count": rows}
        if self.spec.type == "expect_column_values_to_not_be_null":
            considered, unexpected = rows, nulls
        elif self.spec.type == "expect_column_values_to_be_null":
            considered, unexpected = rows, nonnull
        else:
            considered = nonnull
            if self.spec.type == "expect_column_values_to_be_unique":
                unexpected = 0 if self._proven_unique() else self._duplicate_rows()
            else:
                unexpected = int(values["unexpected"])
            observed["missing_count"] = nulls
            observed["missing_percent"] = _pct(nulls, rows)
        if rows == 0:
            # GX reports no percentages (and, but for uniqueness, no counts) on an empty table.
            unique = self.spec.type == "expect_column_values_to_be_unique"
            observed.update(unexpected_count=0 if unique else None, unexpected_percent=None)
            if "missing_percent" in observed:
                observed["missing_percent"] = None
            return result(
                self.spec,
                True,
                "no rows to check",
                observed=observed,
                metrics={"element_count": 0.0},
            )
        observed["unexpected_count"] = unexpected
        observed["unexpected_percent"] = _pct(unexpected, considered)
        ok = _mostly_ok(considered, unexpected, mostly)
        findings: tuple[Finding, ...] = ()
        if unexpected and not ok:
            findings = fetch_findings(
                self.relation, self.ctx, self._violation(), self.column_name, self._reason()
            )
        what = "null" if self.spec.type == "expect_column_values_to_not_be_null" else "unexpected"
        if unexpected == 0:
            message = f"all {considered:,} values as expected"
        else:
            message = (
                f"{unexpected:,} of {considered:,} {self.column_name} values {what} "
                f"({observed['unexpected_percent']:.2f}%)"
            )
            if mostly < 1:
                message += f", mostly={mostly:g} {'met' if ok else 'not met'}"
        metrics = {"unexpected_count": float(unexpected), "element_count": float(rows)}
        return result(self.spec, ok, message, observed=observed, findings=findings, metrics=metrics)

    # -- pieces ---------------------------------------------------------------------------

    def _col(self) -> sa.ColumnElement[Any]:
        assert self.column_name is not None
        return self.relation.column(self.column_name)

    def _violation(self) -> sa.ColumnElement[bool]:
        col = self._col()
        kind = self.spec.type
        builders: dict[str, Callable[[], sa.ColumnElement[bool]]] = {
            "expect_column_values_to_not_be_null": lambda: col.is_(None),
            "expect_column_values_to_be_null": lambda: col.is_not(None),
            "expect_column_values_to_be_between": self._outside_bounds,
            "expect_column_values_to_be_in_set": lambda: col.not_in(list(self.kwargs["value_set"])),
            "expect_column_values_to_not_be_in_set": lambda: col.in_(
                list(self.kwargs["value_set"])
            ),
            "expect_column_values_to_be_unique": self._duplicated,
        }
        return builders[kind]()

    def _outside_bounds(self) -> sa.ColumnElement[bool]:
        col = self._col()
        low, high = self.kwargs.get("min_value"), self.kwargs.get("max_value")
        outside: list[sa.ColumnElement[bool]] = []
        if low is not None:
            outside.append(col <= low if self.kwargs.get("strict_min") else col < low)
        if high is not None:
            outside.append(col >= high if self.kwargs.get("strict_max") else col > high)
        # A NULL compares as unknown, so nulls never count as outside: GX's rule too.
        return sa.or_(*outside)

    def _duplicated(self) -> sa.ColumnElement[bool]:
        col = self._col()
        dupes = sa.select(col).where(col.is_not(None)).group_by(col).having(sa.func.count() > 1)
        return col.in_(dupes.scalar_subquery())

    def _proven_unique(self) -> bool:
        """The catalog guarantees it: a primary key or a unique constraint or index on exactly
        this column (their NULLs may repeat, and GX leaves NULLs out of uniqueness too)."""
        column = self.column_name
        if self.relation.primary_key == (column,):
            return True
        if self.relation.table is None:
            return False
        try:
            with self.relation.connect() as conn:
                inspector = sa.inspect(conn)
                table, schema = self.relation.table, self.relation.schema
                constraints = inspector.get_unique_constraints(table, schema)
                keys: list[list[str | None]] = [list(c["column_names"]) for c in constraints]
                indexes = inspector.get_indexes(table, schema)
                keys += [list(i["column_names"]) for i in indexes if i["unique"]]
        except sa.exc.SQLAlchemyError:
            return False  # then the probe answers
        return [column] in keys

    def _duplicate_rows(self) -> int:
        """Rows whose value appears more than once (GX counts every copy as unexpected)."""
        col = self._col()
        groups = (
            sa.select(sa.func.count().label("n"))
            .where(col.is_not(None))
            .group_by(col)
            .having(sa.func.count() > 1)
            .subquery()
        )
        with self.relation.connect() as conn:
            total = conn.execute(sa.select(sa.func.coalesce(sa.func.sum(groups.c.n), 0))).scalar()
        return int(total or 0)

    def _reason(self) -> str:
        col, kw = self.column_name, self.kwargs
        reasons = {
            "expect_column_values_to_not_be_null": f"{col} is null",
            "expect_column_values_to_be_null": f"{col} is not null",
            "expect_column_values_to_be_between": (
                f"{col} outside [{kw.get('min_value', '-inf')}, {kw.get('max_value', 'inf')}]"
            ),
            "expect_column_values_to_be_in_set": f"{col} not in the accepted set",
            "expect_column_values_to_not_be_in_set": f"{col} in the forbidden set",
            "expect_column_values_to_be_unique": f"{col} value is duplicated",
        }
        return reasons[self.spec.type]

    def _row_count(self, rows: int) -> CheckResult:
        kw = self.kwargs
        if self.spec.type == "expect_table_row_count_to_equal":
            ok = rows == int(kw["value"])
            expected = f"exactly {int(kw['value']):,}"
        else:
            low, high = kw.get("min_value"), kw.get("max_value")
            ok = True
            if low is not None:
                ok = ok and (rows > low if kw.get("strict_min") else rows >= low)
            if high is not None:
                ok = ok and (rows < high if kw.get("strict_max") else rows <= high)
            lower = "-inf" if low is None else low
            upper = "inf" if high is None else high
            expected = f"between {lower} and {upper}"
        message = f"{rows:,} rows" + ("" if ok else f", expected {expected}")
        return result(
            self.spec, ok, message, observed={"observed_value": rows}, metrics={"row_count": rows}
        )


def _pct(part: int, whole: int) -> float:
    return 100.0 * part / whole if whole else 0.0
