"""Runs suites: one scan per source for everything that compiles, one GX validation for the rest."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import closing
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import sqlalchemy as sa

from dq_agent.checks import (
    BUILTIN,
    CheckContext,
    CompiledExpectation,
    PlannedCheck,
    can_compile,
    categorical,
    column_anomaly,
    distribution,
)
from dq_agent.checks.base import (
    FindingsQuery,
    all_records,
    error_result,
    fetch_findings,
    plural,
)
from dq_agent.checks.conditions import row_condition_of
from dq_agent.checks.gx import run_expectations
from dq_agent.checks.volume import backtest
from dq_agent.checks.windows import BucketVerdict
from dq_agent.config.loader import Project
from dq_agent.config.models import CheckSpec, Suite
from dq_agent.errors import DqAgentError, SourceError
from dq_agent.lineage_out import Lineage
from dq_agent.results import (
    CheckResult,
    Finding,
    Status,
    SuiteResult,
    key_text,
    to_jsonable,
    worst,
)
from dq_agent.sources import Relation, Source
from dq_agent.sources.registry import Connections, Engines, opened
from dq_agent.sources.retry import RetryPolicy
from dq_agent.sources.spark import is_spark, not_on_spark
from dq_agent.sources.sql import translate
from dq_agent.store import Store
from dq_agent.store.retention import thin

if TYPE_CHECKING:
    from dq_agent.broker.client import BrokerClient, ReadLine

Clock = Callable[[], datetime]
Backtest = Callable[[CheckSpec, Relation, CheckContext, datetime, datetime], list[BucketVerdict]]
# Checks whose verdict is per time bucket, so a range of past buckets can be replayed.
BACKTESTS: dict[str, Backtest] = {
    "volume_anomaly": backtest,
    "distribution_shift": distribution.backtest,
    "column_anomaly": column_anomaly.backtest,
    "new_values": categorical.backtest,
}
Progress = Callable[[str, SuiteResult | None], None]
# The result listing the values a fetched source could not type and the records it left out;
# it appears only when there are some.
REJECTED_CHECK = "source_records"
_REJECTED_LISTED = 5
NOT_ON_A_BRANCH = (
    "runs through Great Expectations, which cannot read an uncommitted branch: not verified there"
)
# Called with each suite's result while its source is still open (remedy acts there).
SuiteHook = Callable[[Suite, Source, Relation, SuiteResult], None]


@runtime_checkable
class RecordsHook(Protocol):
    """A suite hook that needs only each failed check's records (``--findings-out``): in a
    sealed project it takes them as the broker's ``read`` streams them instead."""

    def __call__(
        self, suite: Suite, source: Source, relation: Relation, result: SuiteResult
    ) -> None: ...

    def from_read(self, suite: str, lines: Iterable[ReadLine]) -> SuiteResult:
        """The suite's result from the stream, its records taken on the way."""
        ...


# Set (to an ISO 8601 moment with its zone), the agent's clock starts there: tests, demos and
# rehearsals play schedules, reminders and working hours at any moment without waiting.
NOW_VARIABLE = "DQ_AGENT_NOW"
_pinned: tuple[str, datetime, float] | None = None


def utc_now() -> datetime:
    """The agent's clock: the real UTC time, or, with :data:`NOW_VARIABLE` set, that moment,
    moving on with real time from when this process first read it."""
    global _pinned
    text = os.environ.get(NOW_VARIABLE)
    if not text:
        return datetime.now(UTC)
    if _pinned is None or _pinned[0] != text:
        _pinned = (text, parse_now(text), time.monotonic())
    return _pinned[1] + timedelta(seconds=time.monotonic() - _pinned[2])


def parse_now(text: str) -> datetime:
    """The moment ``DQ_AGENT_NOW`` / ``--now`` names; raises DqAgentError saying why not."""
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise DqAgentError(
            f"{NOW_VARIABLE}={text!r} is not a moment with its zone "
            "(ISO 8601, e.g. 2026-03-01T09:00:00Z)"
        )
    return moment.astimezone(UTC)


@dataclass
class RunOptions:
    """How to run: the moment to evaluate at, the clock, and engine switches."""

    as_of: datetime | None = None
    clock: Clock = utc_now
    # Answer common GX expectations from the single scan (False sends all of them to GX).
    compile_expectations: bool = True
    # How API sources retry transient faults (tests inject one that does not sleep).
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    # Told what a suite's run is doing now ("the shared scan", a check's name), for a
    # progress line on long suites.
    step: Callable[[str], None] | None = None
    # SQL engines a long-running caller (the daemon) keeps across runs; None: each run's own.
    engines: Engines | None = None

    def doing(self, what: str) -> None:
        if self.step is not None:
            self.step(what)


def select_suites(project: Project, names: Sequence[str]) -> list[str]:
    """The suite ids to run, in file order; raises if a named suite does not exist."""
    known = [*project.suites, *project.broken_suites]
    if not names:
        return known
    unknown = [n for n in names if n not in known]
    if unknown:
        available = ", ".join(sorted(known)) or "none"
        raise DqAgentError(f"unknown suite {', '.join(map(repr, unknown))}; available: {available}")
    return list(dict.fromkeys(names))


def run_checks(
    project: Project,
    suite_ids: Iterable[str],
    *,
    store: Store | None = None,
    options: RunOptions | None = None,
    progress: Progress | None = None,
    command: str = "check",
    hook: SuiteHook | None = None,
    remote: Callable[[str], SuiteResult] | None = None,
) -> list[SuiteResult]:
    """Run the suites read-only, record them in ``store``, and return their results.

    ``remote`` runs a suite elsewhere: a sealed project's (``broker:`` in its settings) run
    in the broker, by default for their checks alone; a :class:`RecordsHook` takes the
    failing records the broker reads (any other ``hook`` needs the source, which only the
    broker can open).
    """
    options = options or RunOptions()
    ids = list(suite_ids)
    if project.sealed and remote is None:
        if hook is not None and not isinstance(hook, RecordsHook):
            raise DqAgentError(
                "with a broker (broker: in dq-agent.yml), only the broker opens the suites' "
                "sources: this is not supported through it yet"
            )
        from dq_agent.broker.client import BrokerClient

        client = BrokerClient.of(project, options.retry)
        if hook is None:
            remote = partial(client.check, as_of=options.as_of)
        else:
            remote = partial(_read, client, hook, options.as_of)
    run_id = None
    if store is not None:
        run_id = store.start_run(
            command=command, started_at=options.clock(), as_of=options.as_of, suites=ids
        )
    connections = _connections(project, options)
    # Every suite run, whichever command made it, as OpenLineage events (openlineage: set).
    lineage = Lineage(project, options.clock)
    results: list[SuiteResult] = []
    try:
        for suite_id in ids:
            if progress:
                progress(suite_id, None)
            lineage.start(suite_id)
            if suite_id in project.broken_suites:
                outcome = _broken(suite_id, project, options)
            elif remote is not None:
                outcome = _brokered(remote, suite_id, options)
            else:
                outcome = run_suite(
                    project.suites[suite_id], connections, store, options, run_id, hook
                )
            if store is not None and run_id is not None:
                store.record_suite(run_id, outcome)
                thin(store, suite_id, keep=project.settings.retention.full_runs)
            lineage.finish(outcome)
            results.append(outcome)
            if progress:
                progress(suite_id, outcome)
    finally:
        connections.dispose()
        lineage.close()
        if store is not None and run_id is not None:
            store.finish_run(
                run_id, status=worst(r.status for r in results), finished_at=options.clock()
            )
    return results


def check_suite(
    project: Project,
    suite_id: str,
    store: Store | None,
    options: RunOptions,
    hook: SuiteHook | None = None,
) -> SuiteResult:
    """One suite's checks on connections of their own, not recorded (what a broker runs for
    the agent, which records the result); ``hook`` as :func:`run_checks`'s."""
    if suite_id in project.broken_suites:
        return _broken(suite_id, project, options)
    connections = _connections(project, options)
    try:
        return run_suite(project.suites[suite_id], connections, store, options, hook=hook)
    finally:
        connections.dispose()


def _connections(project: Project, options: RunOptions) -> Connections:
    return Connections(
        project.root,
        project.connectors,
        retry=options.retry,
        engines=options.engines,
        sealed=project.sealed,
    )


def _brokered(
    remote: Callable[[str], SuiteResult], suite_id: str, options: RunOptions
) -> SuiteResult:
    """The suite as the broker ran it; an unreachable or refusing broker makes the suite
    ``error``, as an unreachable source does."""
    started_at = options.clock()
    started = time.perf_counter()
    try:
        return remote(suite_id)
    except SourceError as exc:
        duration = time.perf_counter() - started
        return SuiteResult(
            suite_id,
            "error",
            started_at,
            duration,
            error=str(exc),
            as_of=options.as_of,
            transient=exc.transient,
        )


def _read(
    client: BrokerClient, hook: RecordsHook, as_of: datetime | None, suite_id: str
) -> SuiteResult:
    """The suite as the broker ran it, ``hook`` taking the records it streams."""
    with closing(client.read(suite_id, as_of=as_of)) as lines:
        return hook.from_read(suite_id, lines)


def _broken(suite_id: str, project: Project, options: RunOptions) -> SuiteResult:
    issues = project.broken_suites[suite_id]
    reason = "invalid configuration: " + "; ".join(str(i) for i in issues)
    return SuiteResult(suite_id, "error", options.clock(), 0.0, error=reason, as_of=options.as_of)


def run_suite(
    suite: Suite,
    connections: Connections,
    store: Store | None,
    options: RunOptions,
    run_id: int | None = None,
    hook: SuiteHook | None = None,
) -> SuiteResult:
    """Run one suite; an unreachable source makes it ``error``, never an exception."""
    started_at = options.clock()
    started = time.perf_counter()

    def finish(
        status: Status,
        checks: Sequence[CheckResult] = (),
        error: str | None = None,
        transient: bool | None = None,
    ) -> SuiteResult:
        return SuiteResult(
            suite.suite,
            status,
            started_at,
            time.perf_counter() - started,
            tuple(checks),
            error,
            options.as_of,
            transient,
        )

    try:
        source = connections.source(suite.source)
    except SourceError as exc:
        return finish("error", error=str(exc), transient=exc.transient)
    try:
        return _run_on_source(
            suite, source, store, options, run_id, started_at, finish, hook, connections
        )
    finally:
        source.close()


def _run_on_source(
    suite: Suite,
    source: Source,
    store: Store | None,
    options: RunOptions,
    run_id: int | None,
    started_at: datetime,
    finish: Callable[..., SuiteResult],
    hook: SuiteHook | None,
    connections: Connections,
) -> SuiteResult:
    try:
        relation = source.open()
    except SourceError as exc:
        return finish("error", error=str(exc), transient=exc.transient)

    missing_key = [k for k in suite.key if k not in relation.columns]
    if missing_key:
        return finish(
            "error",
            error=f"key column(s) {', '.join(missing_key)} not in {relation.label}; "
            f"available: {', '.join(relation.columns)}",
        )

    current_schema = [(c.name, c.family) for c in relation.columns.values()]
    ctx = context_for(suite, store, options, started_at, connections)
    try:
        checks = evaluate_checks(suite, relation, ctx, options)
    except SourceError as exc:
        return finish("error", error=str(exc), transient=exc.transient)
    if relation.rejected:
        checks = [rejected_result(relation, ctx.max_findings), *checks]
    if store is not None:
        store.save_schema(suite.suite, current_schema, seen_at=started_at, run_id=run_id)
    result = finish(worst(c.status for c in checks), checks)
    if hook is not None:
        hook(suite, source, relation, result)
    return result


def rejected_result(relation: Relation, max_findings: int) -> CheckResult:
    """What reading the source could not type or left out, record by record, as a failure:
    the rest of the records are checked all the same."""
    rejected = relation.rejected
    lines = [f"record {key_text(r.key)}: {r.reason}" for r in rejected]
    listed = "; ".join(lines[:_REJECTED_LISTED])
    if len(lines) > _REJECTED_LISTED:
        listed += f"; and {len(lines) - _REJECTED_LISTED:,} more"
    every = [Finding(dict(r.key), r.column, _json_safe(r.value), reason=r.reason) for r in rejected]
    records = {key_text(r.key) for r in rejected}
    return CheckResult(
        REJECTED_CHECK,
        REJECTED_CHECK,
        "fail",
        "fail",
        f"reading {relation.label}: {plural(len(records), 'record')} with problems: {listed}",
        observed={"problems": len(rejected), "records": len(records)},
        findings=tuple(every[:max_findings]),
        records=lambda: iter(every),
    )


def _json_safe(value: Any) -> Any:
    """``value`` as JSON holds it, or its repr when JSON cannot (stores reject NaN)."""
    plain = to_jsonable(value)
    try:
        json.dumps(plain, allow_nan=False)
    except (TypeError, ValueError):
        return repr(value)
    return plain


def evaluate_checks(
    suite: Suite, relation: Relation, ctx: CheckContext, options: RunOptions
) -> list[CheckResult]:
    """Every check of ``suite`` on ``relation``: one scan, one GX validation, in suite order."""
    planned: dict[str, PlannedCheck] = {}
    early: dict[str, CheckResult] = {}
    via_gx: list[CheckSpec] = []
    spark = is_spark(relation)
    for spec in suite.checks:
        missing = _missing_column(spec, relation)
        if missing:
            # A suite's schema check owns a missing column: this one is told under it.
            owner = any(c.type == "schema" for c in suite.checks)
            early[spec.name] = error_result(
                spec,
                ("skipped: " if owner else "")
                + f"column {missing!r} not found in {relation.label}; "
                f"available: {', '.join(relation.columns)}",
                {"missing_column": missing},
            )
        elif spark and (why := not_on_spark(spec)):
            early[spec.name] = error_result(spec, why)
        elif not spec.is_expectation:
            planned[spec.name] = BUILTIN[spec.type](spec, relation, ctx)
        elif (
            options.compile_expectations
            and suite.engine == "compiled"
            and can_compile(spec, relation.engine.dialect.name)
        ):
            planned[spec.name] = CompiledExpectation(spec, relation, ctx)
        else:
            via_gx.append(spec)

    if planned:
        options.doing(f"one scan for {plural(len(planned), 'check')}")
    scanned = _scan(relation, planned)
    judged: dict[str, CheckResult] = {}
    for name, check in planned.items():
        options.doing(name)
        judged[name] = _evaluate(check, scanned[name])
    judged.update(_with_findings(relation, ctx, planned, judged))
    if relation.bound is not None and relation.frame is None:
        # Great Expectations opens connections of its own: it would judge production, not the
        # branch, and so could never tell that a change breaks it. (Given the relation's own
        # DataFrame, it reads what the checks read.)
        early.update(
            (spec.name, error_result(spec, NOT_ON_A_BRANCH))
            for spec in via_gx
            if spec.name not in early
        )
        via_gx = []
    if via_gx:
        options.doing(f"{plural(len(via_gx), 'expectation')} through Great Expectations")
    gx_results = {r.name: r for r in run_expectations(via_gx, relation, ctx)}
    checks: list[CheckResult] = []
    for spec in suite.checks:
        if spec.name in early:
            checks.append(early[spec.name])
        elif spec.name in gx_results:
            checks.append(gx_results[spec.name])
        else:
            checks.append(judged[spec.name])
    return checks


def _with_findings(
    relation: Relation,
    ctx: CheckContext,
    planned: Mapping[str, PlannedCheck],
    judged: Mapping[str, CheckResult],
) -> dict[str, CheckResult]:
    """The failed compiled checks' results with their records, read in one extra statement."""
    wanted: dict[str, FindingsQuery] = {
        name: check.wanted
        for name, check in planned.items()
        if isinstance(check, CompiledExpectation)
        and check.wanted is not None
        and judged[name].status != "error"
    }
    if not wanted:
        return {}
    notes: dict[str, str] = {}
    try:
        found = fetch_findings(relation, ctx, wanted)
    except sa.exc.OperationalError as exc:
        raise translate(exc, relation.engine.url) from exc
    except sa.exc.SQLAlchemyError:
        # One check's records cannot be read (e.g. a type mismatch): its verdict stands, and
        # the others still get theirs.
        found = {}
        for name, query in wanted.items():
            try:
                found.update(fetch_findings(relation, ctx, {name: query}))
            except sa.exc.SQLAlchemyError as exc:
                notes[name] = f"; its records could not be read: {_first_line(exc)}"
    return {
        name: replace(
            judged[name],
            findings=found.get(name, ()),
            message=judged[name].message + notes.get(name, ""),
            records=None if name in notes else all_records(relation, ctx, wanted[name]),
        )
        for name in wanted
    }


def context_for(
    suite: Suite,
    store: Store | None,
    options: RunOptions,
    now: datetime,
    connections: Connections | None = None,
) -> CheckContext:
    schemas = store.last_schemas(suite.suite, 2) if store is not None else []
    return CheckContext(
        suite=suite.suite,
        now=now,
        as_of=options.as_of,
        timezone=suite.timezone,
        key=suite.key,
        max_findings=suite.max_findings,
        previous_schema=schemas[0] if schemas else None,
        earlier_schema=schemas[1] if len(schemas) > 1 else None,
        columns_in_use=_columns_in_use(suite),
        history=store,
        sql_engine=connections.sql_engine if connections is not None else None,
        calendar=suite.calendar,
    )


def backtest_suite(
    project: Project,
    suite_id: str,
    *,
    checks: Sequence[str],
    start: datetime,
    end: datetime,
    store: Store | None,
    options: RunOptions | None = None,
) -> list[tuple[CheckSpec, list[BucketVerdict]]]:
    """Every bucket in [start, end) of the suite's time-bucketed checks, judged as if live."""
    options = options or RunOptions()
    if suite_id in project.broken_suites:
        raise DqAgentError(f"suite {suite_id!r} has configuration errors: run dq-agent validate")
    suite = project.suites[select_suites(project, [suite_id])[0]]
    bucketed = [c for c in suite.checks if c.type in BACKTESTS]
    unknown = [name for name in checks if name not in {c.name for c in bucketed}]
    if unknown or not bucketed:
        available = ", ".join(c.name for c in bucketed) or "none"
        raise DqAgentError(
            f"no time-bucketed check {', '.join(map(repr, unknown))} in suite {suite_id!r}; "
            f"available: {available}"
            if unknown
            else f"suite {suite_id!r} has no time-bucketed checks ({', '.join(BACKTESTS)})"
        )
    if end <= start:
        raise DqAgentError(f"--to ({end.isoformat()}) must be after --from ({start.isoformat()})")
    reading = opened(
        project.root, project.connectors, suite.source, retry=options.retry, sealed=project.sealed
    )
    with reading as (_, relation):
        ctx = context_for(suite, store, options, options.clock())
        return [
            (spec, BACKTESTS[spec.type](spec, relation, ctx, start, end))
            for spec in bucketed
            if not checks or spec.name in checks
        ]


def _columns_of(spec: CheckSpec) -> list[str]:
    """The source columns a check reads by name (its column, its row condition's)."""
    column = spec.expectation_kwargs.get("column") or getattr(spec.args, "column", None)
    condition = row_condition_of(spec.expectation_kwargs)
    return [n for n in (column, condition.column if condition else None) if isinstance(n, str)]


def _missing_column(spec: CheckSpec, relation: Relation) -> str | None:
    return next((n for n in _columns_of(spec) if n not in relation.columns), None)


def _columns_in_use(suite: Suite) -> dict[str, tuple[str, ...]]:
    used: dict[str, tuple[str, ...]] = {}
    for spec in suite.checks:
        for name in _columns_of(spec):
            used[name] = (*used.get(name, ()), spec.name)
    return used


def _evaluate(check: PlannedCheck, values: Mapping[str, Any] | Exception) -> CheckResult:
    if isinstance(values, Exception):
        return error_result(check.spec, str(values))
    try:
        return check.evaluate(values)
    except (ValueError, TypeError, ArithmeticError) as exc:
        return error_result(check.spec, f"cannot evaluate: {exc}")
    except sa.exc.SQLAlchemyError as exc:
        return error_result(check.spec, f"query failed: {_first_line(exc)}")


def _scan(
    relation: Relation, planned: Mapping[str, PlannedCheck]
) -> dict[str, Mapping[str, Any] | Exception]:
    """All checks' aggregates in one statement; if it fails, each alone to find the culprit."""
    labelled: list[sa.Label[Any]] = []
    # Several checks often ask for the same aggregate (COUNT(*), COUNT(col)): compute it once.
    owners: dict[str, list[tuple[str, str]]] = {}
    aggregates: dict[str, dict[str, sa.ColumnElement[Any]]] = {}
    for name, check in planned.items():
        aggregates[name] = check.aggregates()
        for local, expression in aggregates[name].items():
            label = next((e.name for e in labelled if _same(e, expression)), None)
            if label is None:
                label = f"a{len(labelled)}"
                labelled.append(expression.label(label))
            owners.setdefault(label, []).append((name, local))
    values: dict[str, Mapping[str, Any] | Exception] = {name: {} for name in planned}
    if not labelled:
        return values
    try:
        row = _select_one(relation, labelled)
    except sa.exc.OperationalError as exc:
        raise translate(exc, relation.engine.url) from exc
    except sa.exc.SQLAlchemyError:
        # One check's expression is at fault (a type mismatch, say): isolate it.
        for name, exprs in aggregates.items():
            if not exprs:
                continue
            try:
                values[name] = _select_one(relation, [e.label(k) for k, e in exprs.items()])
            except sa.exc.SQLAlchemyError as exc:
                values[name] = RuntimeError(f"query failed: {_first_line(exc)}")
        return values
    for label, value in row.items():
        for name, local in owners[label]:
            values[name] = {**values[name], local: value}  # type: ignore[dict-item]
    return values


def _same(labelled: sa.Label[Any], expression: sa.ColumnElement[Any]) -> bool:
    """Whether two aggregates are the same SQL (bound values included)."""
    return bool(labelled.element.compare(expression, compare_values=True))


def _select_one(relation: Relation, columns: Sequence[sa.ColumnElement[Any]]) -> Mapping[str, Any]:
    query = sa.select(*columns).select_from(relation.selectable)
    with relation.connect() as conn:
        return dict(conn.execute(query).mappings().one())


def _first_line(exc: BaseException) -> str:
    return str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
