"""``accepted_values`` and ``new_values``: which values a categorical column may hold.

``accepted_values`` counts its violations in the suite's one scan and reads the offending
values only when there are some. ``new_values`` compares the last complete time bucket with the
training window before it in one query of its own, so that no value list leaves the database.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from dq_agent.checks.base import (
    CheckContext,
    FindingsQuery,
    all_records,
    count_where,
    error_result,
    plural,
    result,
)
from dq_agent.checks.windows import (
    STEP,
    BucketVerdict,
    Window,
    WindowedCheck,
    bucket_label,
    last_complete_bucket,
    to_utc,
    training_span,
)
from dq_agent.config.models import AcceptedValuesArgs, CheckSpec, NewValuesArgs
from dq_agent.results import CheckResult, Finding
from dq_agent.sources.base import Relation
from dq_agent.sources.sql import translate

# --- shared by the value checks (reference too) ----------------------------------------------


@dataclass(frozen=True)
class ValueCounts:
    """Values matching a condition: the first few with their rows (most rows first), and how
    many values and rows match in all."""

    top: list[tuple[Any, int]]
    values: int
    rows: int

    def listing(self, rows_word: bool = False) -> str:
        """``: JPY (120), GBP (3) and 2 more`` (``JPY (120 rows)`` with ``rows_word``) to end a
        message with; nothing when no value is listed (``max_findings: 0``)."""
        if not self.top:
            return ""
        parts = [f"{shown(v)} ({plural(n, 'row') if rows_word else f'{n:,}'})" for v, n in self.top]
        more = self.values - len(self.top)
        return ": " + ", ".join(parts) + (f" and {more:,} more" if more > 0 else "")

    def observed(self) -> dict[str, int]:
        # Keyed by the value as shown: JSON keys must be text, and decimals are not.
        return {shown(v): n for v, n in self.top}

    def findings(self, column: str, reason: str) -> tuple[Finding, ...]:
        """One finding per listed value; ``reason`` gets the value's rows in parentheses."""
        return tuple(
            Finding(
                key={"value": v}, column=column, observed=v, reason=f"{reason} ({plural(n, 'row')})"
            )
            for v, n in self.top
        )


def value_counts(
    conn: sa.Connection,
    column: sa.ColumnElement[Any],
    source: sa.FromClause,
    where: Sequence[sa.ColumnElement[bool]],
    limit: int,
) -> ValueCounts:
    """``GROUP BY column`` over the rows of ``source`` matching ``where``: one bounded query.

    Window functions over the groups give the totals along with the first ``limit`` values.
    """
    rows = sa.func.count()
    query = (
        sa.select(
            column.label("value"),
            rows.label("n"),
            sa.func.count().over().label("all_values"),
            sa.func.sum(sa.func.count()).over().label("all_rows"),
        )
        .select_from(source)
        .where(*where)
        .group_by(column)
        .order_by(rows.desc(), column)
        .limit(max(limit, 1))  # one row at least, for the totals
    )
    found = conn.execute(query).all()
    if not found:
        return ValueCounts([], 0, 0)
    top = [(row.value, int(row.n)) for row in found[:limit]]
    return ValueCounts(top, int(found[0].all_values), int(found[0].all_rows))


def shown(value: Any) -> str:
    """A value as a person reads it: text as is, unless blank or padded (then quoted)."""
    if isinstance(value, str) and (not value or value != value.strip()):
        return repr(value)
    return str(value)


# --- accepted_values -------------------------------------------------------------------------


class AcceptedValues:
    """Every non-null value of ``column`` is one of ``values``: counted in the one scan."""

    def __init__(self, spec: CheckSpec, relation: Relation, ctx: CheckContext) -> None:
        assert isinstance(spec.args, AcceptedValuesArgs)
        self.spec = spec
        self.args = spec.args
        self.relation = relation
        self.ctx = ctx
        self.column = relation.column(self.args.column)
        self.violation = sa.and_(self.column.is_not(None), self.column.not_in(self.args.values))

    def aggregates(self) -> dict[str, sa.ColumnElement[Any]]:
        return {"rows": sa.func.count(self.column), "unexpected": count_where(self.violation)}

    def evaluate(self, values: Mapping[str, Any]) -> CheckResult:
        rows, unexpected = int(values["rows"]), int(values["unexpected"])
        name = self.args.column
        if not unexpected:
            observed = {"unexpected_values": {}, "unexpected_rows": 0, "rows": rows}
            return result(
                self.spec,
                True,
                f"all {rows:,} {name} values accepted",
                observed=observed,
                metrics={"unexpected_rows": 0},
            )
        with self.relation.connect() as conn:
            found = value_counts(
                conn, self.column, self.relation.selectable, [self.violation], self.ctx.max_findings
            )
        verb = "is" if unexpected == 1 else "are"
        return result(
            self.spec,
            False,
            f"{unexpected:,} of {rows:,} {name} values {verb} not accepted{found.listing()}",
            observed={
                "unexpected_values": found.observed(),
                "unexpected_rows": unexpected,
                "rows": rows,
            },
            findings=found.findings(name, "not an accepted value"),
            metrics={"unexpected_rows": unexpected},
            records=all_records(
                self.relation,
                self.ctx,
                FindingsQuery(self.violation, name, "not an accepted value"),
            ),
        )


# --- new_values ------------------------------------------------------------------------------


class NewValues(WindowedCheck[NewValuesArgs]):
    """Values of ``column`` in the last complete bucket that the window before it never had."""

    args_type = NewValuesArgs

    def __init__(self, spec: CheckSpec, relation: Relation, ctx: CheckContext) -> None:
        super().__init__(spec, relation, ctx)
        self.span = training_span(self.args)

    def evaluate(self, values: Mapping[str, Any]) -> CheckResult:
        problem = self.problem()
        if problem:
            return error_result(self.spec, problem)
        local = last_complete_bucket(self.settled_at, self.args.bucket, self.zone)
        with self.relation.connect() as conn:
            return self.judge(conn, local)

    def problem(self) -> str | None:
        """Why the check cannot run here (a missing column, an unsupported database), if so."""
        column = self.args.column
        if column not in self.relation.columns:
            return (
                f"column {column!r} not found in {self.relation.label}; "
                f"available: {', '.join(self.relation.columns)}"
            )
        return super().problem()

    def judge(self, conn: sa.Connection, local: datetime) -> CheckResult:
        """The verdict on the bucket starting at naive wall-clock ``local``, from rows before
        its end only (so a backtest judges each bucket as a run at its end would have)."""
        name, label = self.args.column, bucket_label(local, self.args.bucket)
        before = f"the {self._span_words()} before"
        # The baseline reads the same relation under another name, so that its rows are not
        # taken for the outer query's (correlation).
        earlier = dataclasses.replace(
            self.relation, selectable=self.relation.selectable.alias("baseline")
        )
        past = earlier.column(name)
        seen = (
            sa.select(past)
            .select_from(earlier.selectable)
            .where(*self._window(earlier, local - self.span, local), past.is_not(None))
        )
        bucket = local.replace(tzinfo=self.zone).isoformat()
        if conn.execute(seen.limit(1)).first() is None:
            return result(
                self.spec,
                True,
                f"{label}: no history yet: no {name} values in {before}",
                observed={"bucket": bucket, "new_values": {}, "new_value_rows": 0},
                metrics={"new_values": 0, "new_value_rows": 0},
            )
        column = self.relation.column(name)
        where = [
            *self._window(self.relation, local, local + STEP[self.args.bucket]),
            column.is_not(None),
            column.not_in(seen),
        ]
        if self.args.ignore:
            where.append(column.not_in(self.args.ignore))
        found = value_counts(conn, column, self.relation.selectable, where, self.ctx.max_findings)
        observed = {"bucket": bucket, "new_values": found.observed(), "new_value_rows": found.rows}
        metrics = {"new_values": found.values, "new_value_rows": found.rows}
        if not found.values:
            message = f"{label}: every {name} value was seen in {before}"
            return result(self.spec, True, message, observed=observed, metrics=metrics)
        message = (
            f"{label}: {plural(found.values, f'new {name} value')} never seen in {before}"
            f"{found.listing(rows_word=True)}"
        )
        return result(
            self.spec,
            False,
            message,
            observed=observed,
            findings=found.findings(name, f"never seen in {before}"),
            metrics=metrics,
            records=all_records(
                self.relation,
                self.ctx,
                FindingsQuery(sa.and_(*where), name, f"never seen in {before}"),
            ),
        )

    def _window(
        self, relation: Relation, start: datetime, end: datetime
    ) -> tuple[sa.ColumnElement[bool], sa.ColumnElement[bool]]:
        """Rows of ``relation`` (the source, or the source under another name) stamped in
        naive wall-clock ``[start, end)``, read as every time-bucketed check reads them."""
        window = Window(relation, self.args.timestamp_column, self.args.bucket, self.zone)
        _, low, high = window.local_timestamp(start, end)
        return low, high

    def _span_words(self) -> str:
        if self.args.bucket == "week":
            return plural(self.span // timedelta(weeks=1), "week")
        return plural(self.span.days, "day")


def backtest(
    spec: CheckSpec, relation: Relation, ctx: CheckContext, start: datetime, end: datetime
) -> list[BucketVerdict]:
    """What ``new_values`` would have said at the end of every bucket in ``[start, end)``.

    Each bucket is judged by the very query a run at its end makes (one per bucket, each
    bounded, on one connection), on earlier rows only. Buckets that had not ended by ``end``
    (or by ``ctx.at``) are left out. Raises :class:`~dq_agent.errors.DqAgentError` when the
    check cannot run on this source.
    """
    check = NewValues(spec, relation, ctx)
    judged = check.backtest_buckets(start, end)
    zone = check.zone
    try:
        with relation.connect() as conn:
            verdicts = [(local, check.judge(conn, local)) for local in judged]
    except sa.exc.SQLAlchemyError as exc:
        raise translate(exc, relation.engine.url) from exc
    return [
        BucketVerdict(
            bucket=to_utc(local, zone),
            rows=int(found.metrics["new_value_rows"]),
            status=found.status,
            message=found.message,
            baseline_median=None,
            lower=None,
            upper=None,
        )
        for local, found in verdicts
    ]
