"""Each suite run as OpenLineage run events (``openlineage:`` in ``dq-agent.yml``).

A suite run is a job run: a START event when it begins, then COMPLETE (or FAIL when the
suite's status is ``error``) with the same run id. The suite's source is the run's input
dataset, named as OpenLineage's naming conventions name it (``postgres://host:5432`` +
``db.schema.table``), and carries the standard ``dataQualityAssertions`` facet (one assertion
per check) and, where a check measured them, ``dataQualityMetrics`` (row count, null counts).

Where the events go is OpenLineage's own configuration, read by its client
(``OPENLINEAGE_URL``/``OPENLINEAGE_API_KEY``, ``OPENLINEAGE_CONFIG``, ``openlineage.yml``,
``OPENLINEAGE__TRANSPORT__…``), or ``openlineage.transport`` in ``dq-agent.yml``. Sending never
fails a run: the first transport error of a run of suites is logged (secrets masked) and the
rest of that run's events are left out, so a receiver that is down costs one timeout, not one
per suite.
"""

from __future__ import annotations

import copy
import logging
import os
import re
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import sqlalchemy as sa

from dq_agent.checks.conditions import row_condition_of
from dq_agent.config.loader import Project
from dq_agent.config.models import (
    CheckSpec,
    Connector,
    GSheetsConnector,
    GSheetsSourceSpec,
    IcebergConnector,
    IcebergSourceSpec,
    OpenLineageSettings,
    SalesforceConnector,
    SalesforceSourceSpec,
    SparkConnector,
    SparkSourceSpec,
    SqlConnector,
    SqlSourceSpec,
    Suite,
)
from dq_agent.redact import redact
from dq_agent.results import CheckResult, SuiteResult
from dq_agent.sources.gsheets import spreadsheet_key

if TYPE_CHECKING:
    from openlineage.client import OpenLineageClient
    from openlineage.client.event_v2 import InputDataset, RunEvent

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
# The standard facet names consumers (Marquez, DataHub, …) look for.
ASSERTIONS_FACET = "dataQualityAssertions"
METRICS_FACET = "dataQualityMetrics"
# A check's ``observed`` value that counts its column's nulls (the column map expectations').
_NULLS_OBSERVED = "missing_count"
# Keys whose values in an OpenLineage transport configuration are secrets to keep out of logs.
_SECRET_KEY = re.compile(r"(key|token|secret|password|passwd|pwd|credential)", re.IGNORECASE)
_HEADERS_KEY = re.compile(r"headers", re.IGNORECASE)


def dq_agent_version() -> str:
    try:
        return metadata.version("dq-agent")
    except metadata.PackageNotFoundError:  # pragma: no cover - a source tree not installed
        return "0+unknown"


def producer() -> str:
    """The URI naming dq-agent and its version, as events and facets give their producer."""
    return f"https://pypi.org/project/dq-agent/{dq_agent_version()}/"


# --- dataset naming -------------------------------------------------------------------------


def dataset_of(project: Project, suite: Suite) -> tuple[str, str] | None:
    """The (namespace, name) of the suite's source under OpenLineage's naming conventions;
    None when its connector is not known (a broken profile)."""
    connector = project.connectors.get(suite.source.connector)
    if connector is None:
        return None
    return _named(connector, suite, project.root)


def _named(connector: Connector, suite: Suite, root: Path) -> tuple[str, str]:
    spec = suite.source
    fallback = f"{connector.type}://{spec.connector}"
    if _unresolved(connector):
        # A sealed project's profiles keep their ${…} references: the broker resolves them.
        return fallback, _object_of(suite)
    if isinstance(connector, SqlConnector) and isinstance(spec, SqlSourceSpec):
        return _sql(connector, spec, suite.suite, root)
    if isinstance(connector, SalesforceConnector) and isinstance(spec, SalesforceSourceSpec):
        host = urlsplit(connector.instance_url or "").hostname
        return f"salesforce://{host or f'{connector.domain}.salesforce.com'}", spec.object
    if isinstance(connector, GSheetsConnector) and isinstance(spec, GSheetsSourceSpec):
        return f"gsheets://{spreadsheet_key(spec.spreadsheet)}", spec.worksheet
    if isinstance(connector, IcebergConnector) and isinstance(spec, IcebergSourceSpec):
        return f"iceberg://{connector.name}", spec.table
    if isinstance(connector, SparkConnector) and isinstance(spec, SparkSourceSpec):
        where = connector.remote or connector.master or ""
        if "://" in where:  # a Spark Connect URL's host and port; never its token
            parts = urlsplit(where)
            where = f"{parts.hostname}" + (f":{parts.port}" if parts.port else "")
        return f"spark://{where}", spec.table or _query(suite.suite)
    return fallback, _object_of(suite)


def _unresolved(connector: Connector) -> bool:
    return "${" in connector.model_dump_json()


def _object_of(suite: Suite) -> str:
    spec = suite.source
    for field in ("table", "object", "worksheet"):
        value = getattr(spec, field, None)
        if isinstance(value, str):
            return value
    return _query(suite.suite)


def _query(suite_id: str) -> str:
    """A query has no name of its own: its dataset is named after the suite."""
    return f"query:{suite_id}"


# SQLAlchemy backends by the scheme OpenLineage names them with, and their default ports.
_SCHEMES = {"postgresql": "postgres", "mariadb": "mysql"}
_PORTS = {"postgres": 5432, "mysql": 3306, "redshift": 5439, "trino": 8080}
_DEFAULT_SCHEMA = {"postgres": "public", "redshift": "public"}


def _sql(
    connector: SqlConnector, spec: SqlSourceSpec, suite_id: str, root: Path
) -> tuple[str, str]:
    try:
        url = sa.make_url(connector.url)
    except (sa.exc.ArgumentError, ValueError):
        return f"sql://{spec.connector}", spec.table or _query(suite_id)
    backend = url.get_backend_name()
    scheme = _SCHEMES.get(backend, backend)
    table = spec.table
    schema = spec.schema_ or connector.schema_
    if table is not None and "." in table and schema is None:
        schema, table = table.rsplit(".", 1)
    database = url.database or ""
    host = url.host or ""
    qualifiers: list[str | None]
    if scheme in ("sqlite", "duckdb"):
        # A file: the namespace is its path (a relative one taken from the project).
        path = database if database in ("", ":memory:") else str((root / database).resolve())
        namespace, qualifiers = f"{scheme}://{path or ':memory:'}", [schema or "main"]
    elif scheme == "bigquery":
        namespace, qualifiers = "bigquery", [host, database or schema]
    else:
        if scheme == "redshift" and host.endswith(".redshift.amazonaws.com"):
            cluster, _, region = host.split(".")[:3]
            host = f"{cluster}.{region}"
        if scheme in ("trino", "snowflake") and "/" in database:
            database, _, in_url = database.partition("/")
            schema = schema or in_url
        port = url.port or _PORTS.get(scheme)
        namespace = f"{scheme}://{host}" + (f":{port}" if port and scheme != "snowflake" else "")
        qualifiers = (
            [schema or database]
            if scheme == "mysql"
            else [database, schema or _DEFAULT_SCHEMA.get(scheme)]
        )
    if table is None:
        return namespace, _query(suite_id)
    return namespace, _dotted(*qualifiers, table)


def _dotted(*parts: str | None) -> str:
    return ".".join(p for p in parts if p)


# --- what the checks say --------------------------------------------------------------------


def _column(spec: CheckSpec | None) -> str | None:
    if spec is None:
        return None
    column = spec.expectation_kwargs.get("column") or getattr(spec.args, "column", None)
    return column if isinstance(column, str) else None


def _whole_table(spec: CheckSpec | None) -> bool:
    """Whether the check looked at every row (no row condition narrowing it)."""
    return spec is not None and row_condition_of(spec.expectation_kwargs) is None


def _count(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return int(value)


Checked = list[tuple[CheckResult, CheckSpec | None]]


def row_count(checks: Checked) -> int | None:
    """The rows of the source, when a check counted them all."""
    for check, spec in checks:
        if check.status == "error":
            continue
        if (found := _count(check.metrics.get("row_count"))) is not None:
            return found
        if _whole_table(spec) and (found := _count(check.metrics.get("element_count"))) is not None:
            return found
    return None


def null_counts(checks: Checked) -> dict[str, int]:
    """Each column's nulls, where a check on every row counted them."""
    counts: dict[str, int] = {}
    for check, spec in checks:
        column = _column(spec)
        if check.status == "error" or column is None or not _whole_table(spec):
            continue
        found = _count(check.observed.get(_NULLS_OBSERVED))
        if found is None and check.type == "expect_column_values_to_not_be_null":
            found = _count(check.metrics.get("unexpected_count"))
        if found is not None:
            counts.setdefault(column, found)
    return counts


# --- events ---------------------------------------------------------------------------------


class _NotInstalled(Exception):
    """openlineage-python (the ``openlineage`` extra) is not installed."""


class Lineage:
    """The OpenLineage events of one run of suites (a ``check``, a ``run``, a daemon cycle).

    Does nothing without ``openlineage:`` in the settings. Never raises: what cannot be sent is
    logged once, and the run goes on.
    """

    def __init__(self, project: Project, clock: Clock) -> None:
        self.project = project
        self.clock = clock
        self.settings: OpenLineageSettings | None = project.settings.openlineage
        if self.settings is not None and not self.settings.enabled:
            self.settings = None
        self._client: OpenLineageClient | None = None
        self._runs: dict[str, str] = {}
        self._failed = False

    def start(self, suite_id: str) -> None:
        """The suite's run begins: a START event."""
        if self.settings is None or self._failed:
            return
        self._send(suite_id, lambda: self._event(suite_id, None))

    def finish(self, result: SuiteResult) -> None:
        """The suite's run is over: COMPLETE (FAIL when it could not run), with its checks."""
        if self.settings is None or self._failed or result.suite not in self._runs:
            return
        self._send(result.suite, lambda: self._event(result.suite, result))
        del self._runs[result.suite]

    def close(self) -> None:
        client, self._client = self._client, None
        if client is None:
            return
        try:
            client.close()
        except Exception as exc:  # a transport failing to flush must not fail the run
            self._failure(None, exc)

    # -- sending -----------------------------------------------------------------------------

    def _send(self, suite_id: str, build: Callable[[], RunEvent]) -> None:
        try:
            client = self._connect()
            client.emit(build())
        except _NotInstalled:
            self._failed = True
            log.warning(
                "openlineage: is set in dq-agent.yml, but openlineage-python is not installed: "
                "pip install 'dq-agent[openlineage]'; no lineage is sent"
            )
        except Exception as exc:  # any transport's error: lineage never fails a run
            self._failure(suite_id, exc)

    def _connect(self) -> OpenLineageClient:
        if self._client is None:
            try:
                from openlineage.client import OpenLineageClient
            except ImportError:
                raise _NotInstalled from None

            assert self.settings is not None
            # A copy: OpenLineage's transport factory takes keys out of what it is given.
            transport = copy.deepcopy(self.settings.transport)
            config = {"transport": transport} if transport else None
            self._client = OpenLineageClient(config=config)
        return self._client

    def _failure(self, suite_id: str | None, exc: Exception) -> None:
        """Say once why lineage could not be sent, secrets masked; send no more this run."""
        if self._failed:
            return
        self._failed = True
        what = f"the run events of {suite_id}" if suite_id else "the run events"
        text = redact(f"{type(exc).__name__}: {exc}", *self._secrets())
        log.warning(
            "OpenLineage: could not send %s (%s); the checks' results are unaffected, and no "
            "more lineage is sent in this run",
            what,
            text,
        )

    def _secrets(self) -> list[str]:
        """Every secret of the transport configurations in play, to mask in what is logged."""
        found = [os.environ.get("OPENLINEAGE_API_KEY") or ""]
        configs: list[Any] = [self.settings.transport if self.settings else None]
        if self._client is not None:  # its configuration merged from file, env and ours
            configs.append(self._client.config.transport)
        for config in configs:
            found.extend(_secret_values(config))
        return [s for s in found if s]

    # -- building ----------------------------------------------------------------------------

    def _event(self, suite_id: str, result: SuiteResult | None) -> RunEvent:
        from openlineage.client.event_v2 import Job, Run, RunEvent, RunState
        from openlineage.client.generated import (
            error_message_run,
            job_type_job,
            processing_engine_run,
        )
        from openlineage.client.uuid import generate_new_uuid

        assert self.settings is not None
        now = self.clock()
        made_by = producer()
        if result is None:
            self._runs[suite_id] = str(generate_new_uuid(now))
            state = RunState.START
        else:
            state = RunState.FAIL if result.status == "error" else RunState.COMPLETE
        run_facets: dict[str, Any] = {
            "processing_engine": processing_engine_run.ProcessingEngineRunFacet(
                version=dq_agent_version(),
                name="dq-agent",
                openlineageAdapterVersion=metadata.version("openlineage-python"),
                producer=made_by,
            )
        }
        if result is not None and result.error is not None:
            run_facets["errorMessage"] = error_message_run.ErrorMessageRunFacet(
                message=result.error, programmingLanguage="python", producer=made_by
            )
        suite = self.project.suites.get(suite_id)
        connector = suite.source.connector if suite is not None else ""
        job_facets: dict[str, Any] = {
            "jobType": job_type_job.JobTypeJobFacet(
                processingType="BATCH",
                integration="DQ_AGENT",
                jobType="CHECK_SUITE",
                producer=made_by,
            )
        }
        return RunEvent(
            eventType=state,
            eventTime=now.isoformat(),
            run=Run(runId=self._runs[suite_id], facets=run_facets),
            job=Job(
                namespace=self.settings.namespace,
                name=self.settings.job(suite_id, connector, self.project.root.name),
                facets=job_facets,
            ),
            inputs=list(self._inputs(suite, result)),
            producer=made_by,
        )

    def _inputs(self, suite: Suite | None, result: SuiteResult | None) -> Iterator[InputDataset]:
        from openlineage.client.event_v2 import InputDataset
        from openlineage.client.generated import (
            data_quality_assertions_dataset as assertions,
        )
        from openlineage.client.generated import (
            data_quality_metrics_input_dataset as metrics,
        )

        if suite is None:
            return
        named = dataset_of(self.project, suite)
        if named is None:
            return
        facets: dict[str, Any] = {}
        if result is not None and result.checks:
            specs = {spec.name: spec for spec in suite.checks}
            checks = [(check, specs.get(check.name)) for check in result.checks]
            made_by = producer()
            facets[ASSERTIONS_FACET] = assertions.DataQualityAssertionsDatasetFacet(
                assertions=[
                    assertions.Assertion(
                        assertion=check.name,
                        success=check.status == "pass",
                        column=_column(spec),
                        severity="warn" if check.severity == "warn" else "error",
                    )
                    for check, spec in checks
                ],
                producer=made_by,
            )
            rows, nulls = row_count(checks), null_counts(checks)
            if rows is not None or nulls:
                facets[METRICS_FACET] = metrics.DataQualityMetricsInputDatasetFacet(
                    rowCount=rows,
                    columnMetrics={
                        column: metrics.ColumnMetrics(nullCount=count)
                        for column, count in nulls.items()
                    },
                    producer=made_by,
                )
        yield InputDataset(namespace=named[0], name=named[1], inputFacets=facets)


def _secret_values(config: Any, under_secret: bool = False) -> Iterator[str]:
    """The values of a transport configuration's secret keys (``apiKey``, ``token``, …) and
    of its headers, however deeply nested."""
    if isinstance(config, Mapping):
        for key, value in config.items():
            secret = under_secret or bool(
                _SECRET_KEY.search(str(key)) or _HEADERS_KEY.search(str(key))
            )
            yield from _secret_values(value, secret)
    elif isinstance(config, list | tuple):
        for value in config:
            yield from _secret_values(value, under_secret)
    elif under_secret and isinstance(config, str):
        yield config
