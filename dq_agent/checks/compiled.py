"""Common GX expectations compiled into the suite's single scan, with GX's own semantics.

Great Expectations reads a table many times per suite; these expectations are answered from
the one aggregate query instead. The numbers reported (element_count, unexpected_count,
unexpected_percent, missing_count, observed_value) and the success rule (``mostly`` over the
rows considered) are GX's, and the test suite checks them against GX itself; where GX answers
on one database unlike on every other (text lengths in bytes on MySQL), dq-agent gives the
others' answer, the same on every database. Anything not listed here, or any argument not
understood here (a ``row_condition`` beyond the ones :mod:`dq_agent.checks.conditions`
reads), runs through GX unchanged. A row condition filters every aggregate of the check, as
GX filters its domain before computing anything.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from dq_agent.checks import conditions
from dq_agent.checks.base import CheckContext, FindingsQuery, count_where, error_result, result
from dq_agent.config.models import CheckSpec
from dq_agent.results import CheckResult
from dq_agent.sources.base import Relation

# Arguments that do not change what an expectation computes.
_INERT = {"meta", "notes", "description"}
# GX's row filter: compiled when conditions.compiles() reads it with certainty.
_FILTER = {"row_condition", "condition_parser"}
_BOUNDS = {"min_value", "max_value", "strict_min", "strict_max"}

# Row-by-row checks of one column: GX counts the unexpected values among the non-null ones.
_COLUMN_MAP_ARGS: dict[str, set[str]] = {
    "expect_column_values_to_not_be_null": {"column", "mostly"},
    "expect_column_values_to_be_null": {"column", "mostly"},
    "expect_column_values_to_be_between": {"column", "mostly", *_BOUNDS},
    "expect_column_values_to_be_in_set": {"column", "mostly", "value_set"},
    "expect_column_values_to_not_be_in_set": {"column", "mostly", "value_set"},
    "expect_column_values_to_be_unique": {"column", "mostly"},
    "expect_column_value_lengths_to_be_between": {"column", "mostly", *_BOUNDS},
    "expect_column_values_to_match_regex": {"column", "mostly", "regex"},
    "expect_column_values_to_be_increasing": {"column", "mostly", "strictly"},
}
# One statistic of a column (MIN, MAX, AVG, SUM), reported as observed_value.
_COLUMN_AGGREGATE_ARGS: dict[str, set[str]] = {
    f"expect_column_{stat}_to_be_between": {"column", *_BOUNDS}
    for stat in ("min", "max", "mean", "sum")
}
_MULTICOLUMN_ARGS: dict[str, set[str]] = {
    "expect_compound_columns_to_be_unique": {"column_list", "mostly", "ignore_row_if"},
}
_TABLE_ARGS: dict[str, set[str]] = {
    "expect_table_row_count_to_be_between": set(_BOUNDS),
    "expect_table_row_count_to_equal": {"value"},
}
_ARGS = {**_COLUMN_MAP_ARGS, **_COLUMN_AGGREGATE_ARGS, **_MULTICOLUMN_ARGS, **_TABLE_ARGS}
# Expectations whose SQL only some databases have: compiled there, through GX elsewhere.
_DIALECTS: dict[str, set[str]] = {"expect_column_values_to_match_regex": {"postgresql"}}
_IGNORE_ROW_IF = ("all_values_are_missing", "any_value_is_missing", "never")


def can_compile(spec: CheckSpec, dialect: str | None = None) -> bool:
    """Whether ``spec`` can be answered from the scan (else it runs through GX).

    ``dialect`` is the source's SQLAlchemy dialect name (``relation.engine.dialect.name``);
    without it, expectations that only some databases can compile are left to GX.
    """
    allowed = _ARGS.get(spec.type)
    kwargs = spec.expectation_kwargs
    if allowed is None or not set(kwargs) <= allowed | _INERT | _FILTER:
        return False
    if not conditions.compiles(kwargs):
        return False
    only = _DIALECTS.get(spec.type)
    if only is not None and dialect not in only:
        return False
    return _arguments_compile(spec.type, kwargs)


def _arguments_compile(kind: str, kwargs: Mapping[str, Any]) -> bool:
    """Whether the arguments' values are ones the SQL here means the same by as GX does
    (GX coerces others, e.g. a date string bound or ``strict_min: "yes"``: it answers those)."""
    if any(not isinstance(kwargs.get(k, False), bool) for k in ("strict_min", "strict_max")):
        return False
    if not isinstance(kwargs.get("strictly", False), bool | None):
        return False
    bounds = [kwargs.get("min_value"), kwargs.get("max_value")]
    if kind == "expect_column_value_lengths_to_be_between":
        return any(b is not None for b in bounds) and all(b is None or _is_int(b) for b in bounds)
    if kind in _COLUMN_AGGREGATE_ARGS:
        return all(b is None or _is_number(b) for b in bounds)
    if kind == "expect_column_values_to_match_regex":
        return isinstance(kwargs.get("regex"), str)
    if kind in _MULTICOLUMN_ARGS:
        columns = kwargs.get("column_list")
        return (
            isinstance(columns, list | tuple)
            and len(columns) >= 2
            and all(isinstance(c, str) for c in columns)
            and kwargs.get("ignore_row_if", _IGNORE_ROW_IF[0]) in _IGNORE_ROW_IF
        )
    return True


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


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
        self.column_list: list[str] = list(self.kwargs.get("column_list") or [])
        row_condition = conditions.row_condition_of(self.kwargs)
        # GX's row filter: only the rows it keeps take part, in every number reported.
        self.condition = row_condition.clause(relation) if row_condition else None
        # The records to report, once evaluate() has found the check failed.
        self.wanted: FindingsQuery | None = None

    # -- the scan -------------------------------------------------------------------------

    def aggregates(self) -> dict[str, sa.ColumnElement[Any]]:
        kind = self.spec.type
        if kind in _TABLE_ARGS:
            return {"rows": self._rows()}
        if kind in _COLUMN_AGGREGATE_ARGS:
            return {"value": self._statistic()}
        if kind in _MULTICOLUMN_ARGS:
            if self._missing_columns():
                return {}  # evaluate reports it
            # Uniqueness, as for one column, is proven or probed outside the scan.
            return {"rows": self._rows(), "considered": self._considered_rows()}
        col = self._col()
        aggs: dict[str, sa.ColumnElement[Any]] = {
            "rows": self._rows(),
            "nonnull": sa.func.count(self._kept(col)),
        }
        if kind in ("expect_column_values_to_be_unique", "expect_column_values_to_be_increasing"):
            # No COUNT(DISTINCT) here: it stops PostgreSQL running the scan in parallel.
            # Uniqueness is proven from the catalog, or probed on its own; the order of
            # values needs a window over the rows, in a statement of its own (see evaluate).
            pass
        elif kind not in (
            "expect_column_values_to_not_be_null",
            "expect_column_values_to_be_null",
        ):
            aggs["unexpected"] = count_where(self._filtered(self._violation()))
        return aggs

    def evaluate(self, values: Mapping[str, Any]) -> CheckResult:
        kind = self.spec.type
        if kind in _TABLE_ARGS:
            return self._row_count(int(values["rows"]))
        if kind in _COLUMN_AGGREGATE_ARGS:
            return self._statistic_result(values["value"])
        if kind in _MULTICOLUMN_ARGS:
            missing = self._missing_columns()
            if missing:
                return error_result(
                    self.spec,
                    f"column {missing[0]!r} not found in {self.relation.label}; "
                    f"available: {', '.join(self.relation.columns)}",
                )
            rows, considered = int(values["rows"]), int(values["considered"])
            # GX reports every row its ignore_row_if filter leaves out as missing.
            return self._judge(
                rows,
                considered,
                lambda: self._duplicates(self.column_list),
                missing=rows - considered,
                counted_when_empty=True,
            )
        rows, nonnull = int(values["rows"]), int(values["nonnull"])
        if kind == "expect_column_values_to_not_be_null":
            return self._judge(rows, rows, lambda: rows - nonnull)
        if kind == "expect_column_values_to_be_null":
            return self._judge(rows, rows, lambda: nonnull)
        if kind == "expect_column_values_to_be_increasing":
            if not self._order():
                return error_result(
                    self.spec,
                    "needs the suite's key (or a primary key) to put the rows in order: "
                    "a table has no order of its own",
                )
            return self._judge(rows, nonnull, self._out_of_order_rows, missing=rows - nonnull)
        if kind == "expect_column_values_to_be_unique":
            assert self.column_name is not None
            return self._judge(
                rows,
                nonnull,
                lambda: self._duplicates([str(self.column_name)]),
                missing=rows - nonnull,
                counted_when_empty=True,
            )
        return self._judge(rows, nonnull, lambda: int(values["unexpected"]), missing=rows - nonnull)

    def _judge(
        self,
        rows: int,
        considered: int,
        unexpected_count: Callable[[], int],
        *,
        missing: int | None = None,
        counted_when_empty: bool = False,
    ) -> CheckResult:
        """GX's verdict for a map expectation: ``mostly`` of the ``considered`` rows hold."""
        mostly = float(self.kwargs.get("mostly", 1.0))
        observed: dict[str, Any] = {"element_count": rows}
        if missing is not None:
            observed["missing_count"] = missing
            observed["missing_percent"] = _pct(missing, rows)
        if rows == 0:
            # GX reports no percentages (and, but for uniqueness, no counts) on an empty table.
            observed.update(
                unexpected_count=0 if counted_when_empty else None, unexpected_percent=None
            )
            return result(
                self.spec,
                True,
                "no rows to check",
                observed=observed,
                metrics={"element_count": 0.0},
            )
        unexpected = unexpected_count()
        observed["unexpected_count"] = unexpected
        observed["unexpected_percent"] = _pct(unexpected, considered)
        ok = _mostly_ok(considered, unexpected, mostly)
        if unexpected and not ok:
            self.wanted = FindingsQuery(
                self._filtered(self._violation()), self.column_name, self._reason()
            )
        what = "null" if self.spec.type == "expect_column_values_to_not_be_null" else "unexpected"
        if unexpected == 0:
            message = f"all {considered:,} values as expected"
        else:
            message = (
                f"{unexpected:,} of {considered:,} {self._target()} values {what} "
                f"({observed['unexpected_percent']:.2f}%)"
            )
            if mostly < 1:
                message += f", mostly={mostly:g} {'met' if ok else 'not met'}"
        metrics = {"unexpected_count": float(unexpected), "element_count": float(rows)}
        return result(self.spec, ok, message, observed=observed, metrics=metrics)

    # -- pieces ---------------------------------------------------------------------------

    def _rows(self) -> sa.ColumnElement[Any]:
        """The rows the check looks at: all of them, or those its row condition keeps."""
        return sa.func.count() if self.condition is None else count_where(self.condition)

    def _kept(self, value: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
        """``value`` on the rows the row condition keeps, NULL on the others."""
        return value if self.condition is None else sa.case((self.condition, value))

    def _filtered(self, condition: sa.ColumnElement[bool]) -> sa.ColumnElement[bool]:
        """``condition``, on the rows the row condition keeps."""
        return condition if self.condition is None else sa.and_(self.condition, condition)

    def _col(self) -> sa.ColumnElement[Any]:
        assert self.column_name is not None
        return self.relation.column(self.column_name)

    def _cols(self) -> list[sa.ColumnElement[Any]]:
        return [self.relation.column(name) for name in self.column_list]

    def _missing_columns(self) -> list[str]:
        return [name for name in self.column_list if name not in self.relation.columns]

    def _target(self) -> str:
        if self.column_list:
            return f"({', '.join(self.column_list)})"
        return str(self.column_name)

    def _violation(self) -> sa.ColumnElement[bool]:
        kind = self.spec.type
        if kind in _MULTICOLUMN_ARGS:
            return self._repeated(self._cols())
        col = self._col()
        builders: dict[str, Callable[[], sa.ColumnElement[bool]]] = {
            "expect_column_values_to_not_be_null": lambda: col.is_(None),
            "expect_column_values_to_be_null": lambda: col.is_not(None),
            "expect_column_values_to_be_between": self._outside_bounds,
            # An empty set: every value is unexpected, NULLs excepted (an empty NOT IN would
            # count the NULLs too).
            "expect_column_values_to_be_in_set": lambda: (
                col.not_in(list(self.kwargs["value_set"]))
                if self.kwargs["value_set"]
                else col.is_not(None)
            ),
            "expect_column_values_to_not_be_in_set": lambda: col.in_(
                list(self.kwargs["value_set"])
            ),
            "expect_column_values_to_be_unique": lambda: self._repeated([col]),
            "expect_column_values_to_be_increasing": self._out_of_order,
            "expect_column_value_lengths_to_be_between": lambda: self._unexpected_unless(
                self._length_within()
            ),
            "expect_column_values_to_match_regex": lambda: self._unexpected_unless(
                col.regexp_match(self.kwargs["regex"])
            ),
        }
        return builders[kind]()

    def _unexpected_unless(self, expected: sa.ColumnElement[bool]) -> sa.ColumnElement[bool]:
        """GX's rule for a condition on a column's values: a null is never unexpected."""
        return sa.and_(self._col().is_not(None), sa.not_(expected))

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

    def _length_within(self) -> sa.ColumnElement[bool]:
        length = _characters(self._col(), self.relation.engine.dialect.name)
        low, high = self.kwargs.get("min_value"), self.kwargs.get("max_value")
        within: list[sa.ColumnElement[bool]] = []
        if low is not None:
            within.append(length > low if self.kwargs.get("strict_min") else length >= low)
        if high is not None:
            within.append(length < high if self.kwargs.get("strict_max") else length <= high)
        return sa.and_(*within)

    def _statistic(self) -> sa.ColumnElement[Any]:
        # GX's own SQL, on the column as the driver returns it (no SQLAlchemy result type:
        # GX reads it untyped too, so e.g. SQLite hands back the stored int, not a Decimal).
        col = self._kept(sa.type_coerce(self._col(), sa.types.NULLTYPE))
        stat = self._stat_name()
        if stat == "mean":
            return sa.func.avg(1.0 * col)  # GX multiplies by 1.0 (integer AVG on SQL Server)
        if stat == "min":
            return sa.func.min(col)
        return sa.func.max(col) if stat == "max" else sa.func.sum(col)

    def _stat_name(self) -> str:
        return self.spec.type.removeprefix("expect_column_").removesuffix("_to_be_between")

    def _considered_rows(self) -> sa.ColumnElement[Any]:
        """The rows GX's ``ignore_row_if`` keeps (by default, all but the all-null ones)."""
        nulls = [c.is_(None) for c in self._cols()]
        rule = self.kwargs.get("ignore_row_if", "all_values_are_missing")
        if rule == "never":
            return self._rows()
        ignored = sa.and_(*nulls) if rule == "all_values_are_missing" else sa.or_(*nulls)
        return count_where(self._filtered(sa.not_(ignored)))

    def _repeated(self, cols: Sequence[sa.ColumnElement[Any]]) -> sa.ColumnElement[bool]:
        """Rows whose values of ``cols`` (none of them null) appear together more than once."""
        present = [c.is_not(None) for c in cols]
        dupes = (
            sa.select(*cols)
            .where(self._filtered(sa.and_(*present)))
            .group_by(*cols)
            .having(sa.func.count() > 1)
            .correlate(None)
        )
        return sa.and_(*present, _among(cols, dupes))

    def _order(self) -> list[str]:
        """The columns that put rows in order: the suite's key, else the primary key."""
        key = list(self.ctx.key or self.relation.primary_key)
        return key if all(k in self.relation.columns for k in key) else []

    def _lagged(self) -> sa.Subquery:
        """The key, the value and the value before it, in key order, over the non-null values
        the row condition keeps: what GX compares when it takes the differences of a column."""
        col = self._col()
        order = [self.relation.column(k) for k in self._order()]
        return (
            sa.select(
                *[c.label(f"k{i}") for i, c in enumerate(order)],
                col.label("value"),
                sa.func.lag(col).over(order_by=order).label("previous"),
            )
            .where(self._filtered(col.is_not(None)))
            .subquery()
        )

    def _out_of_order_where(self, lagged: sa.Subquery) -> sa.ColumnElement[bool]:
        value, previous = lagged.c.value, lagged.c.previous
        # The first value has nothing before it: GX lets it pass.
        worse = value <= previous if self.kwargs.get("strictly") else value < previous
        return sa.and_(previous.is_not(None), worse)

    def _out_of_order_rows(self) -> int:
        lagged = self._lagged()
        query = sa.select(count_where(self._out_of_order_where(lagged))).select_from(lagged)
        with self.relation.connect() as conn:
            return int(conn.execute(query).scalar() or 0)

    def _out_of_order(self) -> sa.ColumnElement[bool]:
        lagged = self._lagged()
        keys = [lagged.c[f"k{i}"] for i in range(len(self._order()))]
        wrong = sa.select(*keys).where(self._out_of_order_where(lagged))
        return _among([self.relation.column(k) for k in self._order()], wrong)

    def _duplicates(self, columns: Sequence[str]) -> int:
        """GX's unexpected count for uniqueness: none if the catalog proves it, else probed."""
        if self._proven_unique(columns):
            return 0
        return self._duplicate_rows([self.relation.column(name) for name in columns])

    def _proven_unique(self, columns: Sequence[str]) -> bool:
        """The catalog guarantees it: a primary key, unique constraint or unique index made of
        some of these columns. Their NULLs may repeat, but GX never counts a row with a NULL
        in any of the columns as a duplicate either."""
        wanted = set(columns)
        if self.relation.primary_key and set(self.relation.primary_key) <= wanted:
            return True
        if self.relation.table is None:
            return False
        try:
            with self.relation.connect() as conn:
                inspector = sa.inspect(conn)
                table, schema = self.relation.table, self.relation.schema
                constraints = inspector.get_unique_constraints(table, schema)
                keys: list[list[str | None]] = [list(c["column_names"]) for c in constraints]
                keys += [
                    list(index["column_names"])
                    for index in inspector.get_indexes(table, schema)
                    # A partial index (WHERE ...) only vouches for some rows.
                    if index["unique"]
                    and not any(k.endswith("_where") for k in index.get("dialect_options", {}))
                ]
        except sa.exc.SQLAlchemyError:
            return False  # then the probe answers
        # An expression in an index reflects as None: never a column of ours.
        return any(key and set(key) <= wanted for key in keys)

    def _duplicate_rows(self, cols: Sequence[sa.ColumnElement[Any]]) -> int:
        """Rows whose values (all non-null) appear more than once: GX counts every copy."""
        groups = (
            sa.select(sa.func.count().label("n"))
            .where(self._filtered(sa.and_(*[c.is_not(None) for c in cols])))
            .group_by(*cols)
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
            "expect_column_value_lengths_to_be_between": (
                f"{col} length outside [{_or(kw.get('min_value'), '-inf')}, "
                f"{_or(kw.get('max_value'), 'inf')}]"
            ),
            "expect_column_values_to_match_regex": f"{col} does not match {kw.get('regex')!r}",
            "expect_column_values_to_be_increasing": (
                f"{col} is {'not above' if kw.get('strictly') else 'below'} the value before it"
            ),
            "expect_compound_columns_to_be_unique": (
                f"{', '.join(self.column_list)} combination is duplicated"
            ),
        }
        return reasons[self.spec.type]

    def _statistic_result(self, fetched: Any) -> CheckResult:
        """GX's verdict on a column statistic (``_validate_metric_value_between``)."""
        value = _as_gx_reads(fetched)
        stat, kw = self._stat_name(), self.kwargs
        if value is None:
            # An empty table or an all-null column: GX fails, having nothing to compare.
            return result(
                self.spec,
                False,
                f"no {stat} of {self.column_name}: it has no non-null values",
                observed={"observed_value": None},
            )
        # GX's argument model turns numeric bounds into floats before comparing.
        low, high = (None if b is None else float(b) for b in _bounds(kw))
        ok = _within(value, low, high, kw)
        message = f"{stat} of {self.column_name} is {show_value(value)}"
        if not ok:
            message += f", expected {_between(kw)}"
        metrics = {"observed_value": float(value)} if _is_number(value) else {}
        return result(self.spec, ok, message, observed={"observed_value": value}, metrics=metrics)

    def _row_count(self, rows: int) -> CheckResult:
        kw = self.kwargs
        if self.spec.type == "expect_table_row_count_to_equal":
            ok = rows == int(kw["value"])
            expected = f"exactly {int(kw['value']):,}"
        else:
            low, high = _bounds(kw)
            ok = _within(rows, low, high, kw)
            expected = _between(kw)
        message = f"{rows:,} rows" + ("" if ok else f", expected {expected}")
        return result(
            self.spec, ok, message, observed={"observed_value": rows}, metrics={"row_count": rows}
        )


def _characters(text: sa.ColumnElement[Any], dialect: str) -> sa.ColumnElement[Any]:
    """The length of ``text`` in characters, as GX measures it on every database but MySQL.
    There LENGTH() counts bytes ("payé" is 5 long in UTF-8), and GX's SQL uses it all the same;
    dq-agent counts characters on every database (CHAR_LENGTH() on MySQL and MariaDB)."""
    if dialect in ("mysql", "mariadb"):
        return sa.func.char_length(text)
    return sa.func.length(text)


def _among(cols: Sequence[sa.ColumnElement[Any]], rows: sa.Select[Any]) -> sa.ColumnElement[bool]:
    """``cols`` (one column, or several together) among the rows ``rows`` selects."""
    return cols[0].in_(rows) if len(cols) == 1 else sa.tuple_(*cols).in_(rows)


def show_value(value: Any) -> str:
    """A value for a message: a number as people write it, whatever type the database handed
    back (9,000,000 for 9000000, 9000000.0 or Decimal("9000000.00")); anything else as its repr."""
    if isinstance(value, Decimal) and value.is_finite():
        value = float(value)
    if isinstance(value, float) and math.isfinite(value):
        shown = round(value, 6)
        return f"{int(shown):,}" if shown.is_integer() else f"{shown:,}"
    return f"{value:,}" if _is_int(value) else repr(value)


def _bounds(kw: Mapping[str, Any]) -> tuple[Any, Any]:
    return kw.get("min_value"), kw.get("max_value")


def _within(value: Any, low: Any, high: Any, kw: Mapping[str, Any]) -> bool:
    ok = True
    if low is not None:
        ok = ok and (value > low if kw.get("strict_min") else value >= low)
    if high is not None:
        ok = ok and (value < high if kw.get("strict_max") else value <= high)
    return bool(ok)


def _between(kw: Mapping[str, Any]) -> str:
    low, high = _bounds(kw)
    return f"between {_or(low, '-inf')} and {_or(high, 'inf')}"


def _or(value: Any, default: str) -> Any:
    return default if value is None else value


def _as_gx_reads(value: Any) -> Any:
    """A fetched value as GX's SQL engine hands it on (``convert_to_json_serializable``)."""
    if isinstance(value, Decimal):
        value = float(value)
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dt.date | dt.time):  # datetime is a date
        return value.isoformat()
    return value


def _pct(part: int, whole: int) -> float | None:
    # GX's arithmetic (to the last bit), and no percentage of nothing: e.g. unexpected values
    # among the non-null ones of an all-null column.
    return part / whole * 100 if whole else None
