"""How a check takes part in a suite's single scan of its source."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from functools import cache
from typing import Any, Protocol

import sqlalchemy as sa

from dq_agent.config.models import CalendarSpec, CheckSpec
from dq_agent.results import CheckResult, Finding, Records, Status, failed_status
from dq_agent.sources.base import Relation


class History(Protocol):
    """What a check may read back from earlier runs and from people's feedback."""

    def expected_buckets(self, suite: str, check: str) -> set[datetime]:
        """Bucket starts (UTC) an owner marked "expected": they leave the baseline."""
        ...

    def bucket_history(
        self, suite: str, check: str, *, since: datetime | None = None
    ) -> dict[datetime, float]:
        """The latest recorded value per bucket start (UTC), e.g. rows per day."""
        ...


@dataclass(frozen=True)
class CheckContext:
    """What a check may know beyond its own arguments."""

    suite: str
    now: datetime
    # Evaluate time-bucketed checks as if it were this moment (rows after it are ignored).
    as_of: datetime | None
    timezone: str
    key: tuple[str, ...]
    max_findings: int
    # The column list seen on the previous run (for schema drift), oldest knowledge first.
    previous_schema: list[tuple[str, str]] | None = None
    # The one seen before that: a column back as it was then is restored, not drift.
    earlier_schema: list[tuple[str, str]] | None = None
    # The source's columns the suite's checks read, each with the checks that read it.
    columns_in_use: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    # What earlier runs and people said (the state store), when one is attached.
    history: History | None = None
    # Another SQL connector's engine by name, for checks that read a second table (reference);
    # raises SourceError for an unknown or non-SQL connector. None: not available here.
    sql_engine: Callable[[str], sa.Engine] | None = None
    # The suite's days known to be unusual (holidays, closures).
    calendar: CalendarSpec | None = None

    @property
    def at(self) -> datetime:
        return self.as_of or self.now

    def known_day(self, day: date) -> str | None:
        """Why ``day`` is no ordinary day by the suite's ``calendar:`` (a public holiday, a
        closure, a bridge day between a holiday and the weekend), or None."""
        calendar = self.calendar
        if calendar is None:
            return None
        if day in calendar.closed:
            return "a closure day"
        name = self._holiday(day)
        if name:
            return f"a holiday ({name})"
        if day.weekday() in (0, 4):
            # The Monday before a holiday Tuesday, the Friday after a holiday Thursday: many
            # take it off as well, and the day is as unusual as the holiday.
            bridged = self._holiday(day + timedelta(days=1 if day.weekday() == 0 else -1))
            if bridged:
                return f"a bridge day between {bridged} and the weekend"
        return None

    def _holiday(self, day: date) -> str | None:
        """The name of the calendar's public holiday on ``day``, if one is."""
        calendar = self.calendar
        if calendar is None or calendar.country is None:
            return None
        name = _holidays(calendar.country, calendar.subdiv).get(day)
        return str(name) if name else None

    def expected_buckets(self, check: str) -> set[datetime]:
        """Bucket starts (UTC) an owner marked "expected" for ``check``: they leave baselines."""
        if self.history is None:
            return set()
        return self.history.expected_buckets(self.suite, check)


@cache
def _holidays(country: str, subdiv: str | None) -> Any:
    """A country's (or region's) public holidays; years are filled in as they are asked for."""
    import holidays

    return holidays.country_holidays(country, subdiv=subdiv)


class PlannedCheck(Protocol):
    """A check compiled against a relation: aggregates for the one scan, then a verdict."""

    spec: CheckSpec

    def aggregates(self) -> dict[str, sa.ColumnElement[Any]]:
        """Named aggregate expressions over the relation (names are local to the check)."""
        ...

    def evaluate(self, values: Mapping[str, Any]) -> CheckResult:
        """The result from the values of :meth:`aggregates` (may fetch bounded findings)."""
        ...


def result(
    spec: CheckSpec,
    ok: bool,
    message: str,
    *,
    observed: Mapping[str, Any] | None = None,
    findings: tuple[Finding, ...] = (),
    metrics: Mapping[str, float] | None = None,
    records: Records | None = None,
) -> CheckResult:
    """A pass, or a warn/fail according to the check's severity."""
    status: Status = "pass" if ok else failed_status(spec.severity)
    return CheckResult(
        name=spec.name,
        type=spec.type,
        status=status,
        severity=spec.severity,
        message=message,
        observed=dict(observed or {}),
        findings=findings,
        metrics=dict(metrics or {}),
        records=records,
    )


def error_result(
    spec: CheckSpec, message: str, observed: Mapping[str, Any] | None = None
) -> CheckResult:
    """The check could not be evaluated (missing column, query error)."""
    return CheckResult(spec.name, spec.type, "error", spec.severity, message, dict(observed or {}))


def count_where(condition: sa.ColumnElement[bool]) -> sa.ColumnElement[Any]:
    """``COUNT(CASE WHEN condition THEN 1 END)``: portable and parallel-safe on PostgreSQL."""
    return sa.func.count(sa.case((condition, sa.literal(1))))


@dataclass(frozen=True)
class FindingsQuery:
    """The records a failed check reports: those matching ``violation``."""

    violation: sa.ColumnElement[bool]
    column: str | None
    reason: str


# Which check a row of the findings statement belongs to.
_CHECK_TAG = "dq_agent_check_no"
# Rows fetched per round trip when every failing record is read (a server-side cursor on
# PostgreSQL): memory stays flat however many there are.
RECORDS_CHUNK = 5_000


def fetch_findings(
    relation: Relation, ctx: CheckContext, wanted: Mapping[str, FindingsQuery]
) -> dict[str, tuple[Finding, ...]]:
    """Up to ``max_findings`` records per check of ``wanted``, all in one statement.

    Each check's records are chosen (first keys first) in a branch of a ``UNION ALL``; every
    branch selects the same columns (the key and every reported column), so the branches
    line up on any database.
    """
    key = _record_key(relation, ctx)
    if not wanted or not key or ctx.max_findings == 0:
        return {}
    columns = list(dict.fromkeys([*key, *(q.column for q in wanted.values() if q.column)]))
    names = list(wanted)
    branches: list[sa.Select[Any]] = []
    for number, name in enumerate(names):
        branch = (
            sa.select(
                sa.literal(number).label(_CHECK_TAG),
                *[relation.column(c).label(c) for c in columns],
            )
            .where(wanted[name].violation)
            .order_by(*[relation.column(k) for k in key])
            .limit(ctx.max_findings)
        )
        # A bounded branch of a compound statement must be a subquery (SQLite insists).
        branches.append(sa.select(*branch.subquery().c) if len(names) > 1 else branch)
    query: sa.Select[Any] | sa.CompoundSelect[Any] = branches[0]
    if len(branches) > 1:
        union = sa.union_all(*branches)
        query = union.order_by(*[union.selected_columns[c] for c in [_CHECK_TAG, *key]])
    with relation.connect() as conn:
        rows = conn.execute(query).mappings().all()
    found: dict[str, list[Finding]] = {name: [] for name in names}
    for row in rows:
        name = names[row[_CHECK_TAG]]
        found[name].append(_finding(row, key, wanted[name]))
    return {name: tuple(findings) for name, findings in found.items()}


def all_records(relation: Relation, ctx: CheckContext, wanted: FindingsQuery) -> Records | None:
    """Every record matching ``wanted`` (first keys first, no cap), read when called; None when
    records have no key to be named by."""
    key = _record_key(relation, ctx)
    if not key:
        return None
    columns = list(dict.fromkeys([*key, *([wanted.column] if wanted.column else [])]))
    query = (
        sa.select(*[relation.column(c).label(c) for c in columns])
        .where(wanted.violation)
        .order_by(*[relation.column(k) for k in key])
    )

    def records() -> Iterator[Finding]:
        with relation.connect() as conn:
            rows = conn.execute(query, execution_options={"yield_per": RECORDS_CHUNK})
            for row in rows.mappings():
                yield _finding(row, key, wanted)

    return records


def _record_key(relation: Relation, ctx: CheckContext) -> list[str]:
    """The columns naming a record (the suite's key, else the primary key); none if missing."""
    key = list(ctx.key or relation.primary_key)
    return key if all(k in relation.columns for k in key) else []


def _finding(row: sa.RowMapping, key: list[str], wanted: FindingsQuery) -> Finding:
    column = wanted.column
    return Finding(
        key={k: row[k] for k in key},
        column=column,
        observed=row[column] if column is not None else None,
        reason=wanted.reason,
    )


def plural(count: int, singular: str, plural_form: str | None = None) -> str:
    word = singular if count == 1 else (plural_form or singular + "s")
    return f"{count:,} {word}"
