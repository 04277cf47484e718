"""Expectations that run through Great Expectations itself: one validation per suite."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from typing import Any

from dq_agent.checks.base import CheckContext, error_result, result
from dq_agent.checks.compiled import show_value
from dq_agent.checks.conditions import for_pandas
from dq_agent.config.expectations import expectation_class
from dq_agent.config.models import CheckSpec
from dq_agent.redact import redact, url_secrets
from dq_agent.results import CheckResult, Finding
from dq_agent.sources.base import Relation
from dq_agent.sources.spark import is_spark

_META_KEY = "dq_agent_check"
# Numbers worth showing from a GX result; the long lists stay out of the observed block.
_OBSERVED_KEYS = (
    "observed_value",
    "element_count",
    "unexpected_count",
    "unexpected_percent",
    "missing_count",
    "missing_percent",
    "partial_unexpected_list",
)
# The counts of a GX result. On MySQL and MariaDB GX sums a condition for the unexpected and
# missing counts, the sum comes back DECIMAL and GX hands it on as a float (7.0 where other
# databases give 7): counts are reported as integers on every database.
_COUNTS = ("element_count", "unexpected_count", "missing_count")


def run_expectations(
    specs: Sequence[CheckSpec], relation: Relation, ctx: CheckContext
) -> list[CheckResult]:
    """Validate ``specs`` in one GX validation against the same database; one result each."""
    if not specs:
        return []
    try:
        with warnings.catch_warnings():
            # GX's deprecation notices (e.g. string row conditions) concern its Python API,
            # which the user never calls: nothing for them to act on.
            warnings.simplefilter("ignore", DeprecationWarning)
            outcome = _validate(specs, relation, ctx)
    except Exception as exc:  # GX raises many unrelated types; every one means "could not run"
        logging.getLogger(__name__).debug("GX validation failed", exc_info=True)
        if len(specs) > 1:
            # One expectation can sink the whole validation: run each alone to find which.
            return [r for spec in specs for r in run_expectations([spec], relation, ctx)]
        # GX opens its own connection: its errors may quote the connection string.
        detail = redact(str(exc), *url_secrets(relation.engine.url))
        message = f"Great Expectations could not run: {exc.__class__.__name__}: {detail}"
        return [error_result(specs[0], message)]
    key = finding_key(relation, ctx)
    by_name = {spec.name: spec for spec in specs}
    results: dict[str, CheckResult] = {}
    for item in outcome.results:
        name = (item.expectation_config.meta or {}).get(_META_KEY)
        if name in by_name:
            results[name] = _to_result(by_name[name], item, ctx, key)
    return [
        results.get(spec.name) or error_result(spec, "Great Expectations returned no result")
        for spec in specs
    ]


def _validate(specs: Sequence[CheckSpec], relation: Relation, ctx: CheckContext) -> Any:
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    batch, parameters, release = _batch(context, relation)

    suite = context.suites.add(gx.ExpectationSuite(name=ctx.suite))
    on_pandas = relation.frame is not None and not is_spark(relation)
    for spec in specs:
        kwargs = for_pandas(spec.expectation_kwargs) if on_pandas else dict(spec.expectation_kwargs)
        kwargs["meta"] = {**(kwargs.get("meta") or {}), _META_KEY: spec.name}
        suite.add_expectation(expectation_class(spec.type)(**kwargs))

    result_format: dict[str, Any] = {
        "result_format": "COMPLETE",
        "partial_unexpected_count": ctx.max_findings,
    }
    key = finding_key(relation, ctx)
    if key:
        result_format["unexpected_index_column_names"] = key
    else:
        result_format["return_unexpected_index_query"] = False
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(name=f"{ctx.suite}-validation", data=batch, suite=suite)
    )
    try:
        return definition.run(batch_parameters=parameters, result_format=result_format)
    finally:
        release()


def _batch(
    context: Any, relation: Relation
) -> tuple[Any, dict[str, Any] | None, Callable[[], object]]:
    """Where GX reads ``relation``: its batch definition, the batch parameters of a run, and
    what releases what GX holds on to afterwards."""
    if relation.frame is not None:
        dataframe = relation.frame()
        if is_spark(relation):  # GX's Spark engine, on the same session (local or Connect)
            spark = context.data_sources.add_spark(name="source")
            frames = spark.add_dataframe_asset(name="data")
            # GX caches the DataFrame for its several passes and never lets it go.
            release: Callable[[], object] = dataframe.unpersist
        else:
            frames = context.data_sources.add_pandas(name="source").add_dataframe_asset("data")
            release = _nothing
        batch = frames.add_batch_definition_whole_dataframe("all")
        return batch, {"dataframe": dataframe}, release
    url = relation.url
    backend = relation.engine.dialect.name
    datasource: Any
    if backend == "sqlite":
        datasource = context.data_sources.add_sqlite(name="source", connection_string=url)
    elif backend == "postgresql":
        datasource = context.data_sources.add_postgres(name="source", connection_string=url)
    else:
        if backend == "mariadb":
            # GX knows MySQL's SQL (its regex operator, say) by the name mysql alone, and
            # MariaDB speaks it: through a mariadb:// URL GX would refuse those expectations.
            driver = relation.engine.url.get_driver_name()
            mysql = relation.engine.url.set(drivername=f"mysql+{driver}")
            url = mysql.render_as_string(hide_password=False)
        datasource = context.data_sources.add_sql(name="source", connection_string=url)
    asset: Any
    if relation.table is not None:
        asset = datasource.add_table_asset(
            name="data", table_name=relation.table, schema_name=relation.schema
        )
    else:
        asset = datasource.add_query_asset(name="data", query=relation.query)
    # GX keeps its engine (and a pooled connection) alive with the context: release it.
    return (
        asset.add_batch_definition_whole_table("all"),
        None,
        lambda: datasource.get_engine().dispose(),
    )


def _nothing() -> None:
    return None


def finding_key(relation: Relation, ctx: CheckContext) -> list[str]:
    """The columns that identify a record: the suite's ``key``, else the primary key."""
    key = list(ctx.key or relation.primary_key)
    return key if all(k in relation.columns for k in key) else []


def _to_result(spec: CheckSpec, item: Any, ctx: CheckContext, key: list[str]) -> CheckResult:
    crash = _exception_message(item.exception_info)
    if crash is not None:
        return error_result(spec, f"Great Expectations could not evaluate it: {crash}")
    raw = {k: _whole(v) if k in _COUNTS else v for k, v in (item.result or {}).items()}
    observed = {k: raw[k] for k in _OBSERVED_KEYS if k in raw}
    column = spec.expectation_kwargs.get("column")
    # Like compiled checks, only a check that did not hold reports records.
    rows = [] if item.success else (raw.get("unexpected_index_list") or [])
    findings = tuple(
        Finding(
            key={k: row[k] for k in key if k in row},
            column=column,
            observed=row.get(column) if column else None,
            reason=f"{spec.type} not met",
        )
        for row in rows[: ctx.max_findings]
        if isinstance(row, Mapping)
    )
    metrics = {
        k: float(raw[k])
        for k in ("unexpected_count", "element_count", "observed_value")
        if isinstance(raw.get(k), int | float) and not isinstance(raw.get(k), bool)
    }
    return result(
        spec,
        bool(item.success),
        _message(raw, bool(item.success)),
        observed=observed,
        findings=findings,
        metrics=metrics,
    )


def _message(raw: Mapping[str, Any], ok: bool) -> str:
    if "unexpected_count" in raw and "element_count" in raw:
        unexpected, total = raw["unexpected_count"], raw["element_count"]
        # GX counts unexpected values among the non-null ones for most expectations.
        total -= raw.get("missing_count") or 0
        if not unexpected:
            return f"all {total:,} values as expected"
        pct = raw.get("unexpected_percent")
        share = f" ({pct:.2f}%)" if isinstance(pct, int | float) else ""
        return f"{unexpected:,} of {total:,} values unexpected{share}"
    if "observed_value" in raw:
        shown = show_value(raw["observed_value"])
        return f"observed {shown}" + ("" if ok else ", outside the expectation")
    return "expectation met" if ok else "expectation not met"


def _whole(count: Any) -> Any:
    """A count as an int when it is a whole number of another type (see ``_COUNTS``)."""
    if isinstance(count, float) and count.is_integer():
        return int(count)
    if isinstance(count, Decimal) and count.is_finite() and count == count.to_integral_value():
        return int(count)
    return count


def _exception_message(info: Any) -> str | None:
    """GX reports a crash in the result, not by raising: find it in ``exception_info``."""
    if not isinstance(info, Mapping):
        return None
    if info.get("raised_exception"):
        return str(info.get("exception_message") or "unknown error").strip().splitlines()[-1]
    for value in info.values():
        found = _exception_message(value)
        if found is not None:
            return found
    return None
