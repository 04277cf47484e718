"""``dq-agent sources``: each connector of a project, whether it answers, and what is left of
the quotas its service reports (a Salesforce org's daily API requests and Bulk jobs)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dq_agent.config.models import (
    Connector,
    GSheetsConnector,
    GSheetsSourceSpec,
    IcebergConnector,
    SalesforceConnector,
    SparkConnector,
    SqlConnector,
    Suite,
)
from dq_agent.errors import DqAgentError, SourceError

# The org limits worth a data team's attention, as ``/limits`` names them.
_SALESFORCE_LIMITS = (
    ("DailyApiRequests", "daily API requests"),
    ("DailyBulkV2QueryJobs", "daily Bulk API 2.0 query jobs"),
    ("DailyBulkV2QueryFileStorageMB", "Bulk API 2.0 query result storage (MB)"),
)


@dataclass(frozen=True)
class Quota:
    """One limit a service reports: how much of ``limit`` is used."""

    name: str
    used: int
    limit: int

    @property
    def share(self) -> float:
        return self.used / self.limit if self.limit else 0.0

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "used": self.used, "limit": self.limit}


@dataclass(frozen=True)
class SourceStatus:
    """A connector as probed now."""

    name: str
    type: str
    # "reachable", "unreachable", or "not probed" (what cannot be probed cheaply).
    state: str
    detail: str = ""
    quotas: tuple[Quota, ...] = ()
    suites: tuple[str, ...] = field(default=())

    def to_json(self) -> dict[str, Any]:
        return {
            "connector": self.name,
            "type": self.type,
            "state": self.state,
            "detail": self.detail,
            "suites": list(self.suites),
            "quotas": [q.to_json() for q in self.quotas],
        }


def probe_all(
    root: Path, connectors: Mapping[str, Connector], suites: Iterable[Suite]
) -> list[SourceStatus]:
    """Every connector, probed one after another with one attempt each (no retries: the
    answer is about now); one that fails does not stop the others."""
    users: dict[str, list[Suite]] = {}
    for suite in suites:
        users.setdefault(suite.source.connector, []).append(suite)
    statuses = []
    for name, connector in sorted(connectors.items()):
        using = users.get(name, [])
        suite_ids = tuple(s.suite for s in using)
        try:
            state, detail, quotas = _probe(root, connector, using)
        except (SourceError, DqAgentError) as exc:
            # Connector errors are free of secrets already (URLs masked, tokens left out).
            state, detail, quotas = "unreachable", str(exc), ()
        statuses.append(SourceStatus(name, connector.type, state, detail, quotas, suite_ids))
    return statuses


def _probe(
    root: Path, connector: Connector, suites: list[Suite]
) -> tuple[str, str, tuple[Quota, ...]]:
    if isinstance(connector, SqlConnector):
        return _probe_sql(root, connector)
    if isinstance(connector, SalesforceConnector):
        return _probe_salesforce(connector)
    if isinstance(connector, GSheetsConnector):
        return _probe_sheets(connector, suites)
    if isinstance(connector, IcebergConnector):
        from dq_agent.sources.iceberg import connect

        catalog = connect(connector)
        try:
            namespaces = catalog.list_namespaces()
        except Exception as exc:  # any catalog's own errors
            raise SourceError(
                f"the catalog did not answer: {exc.__class__.__name__}", transient=True
            ) from exc
        return "reachable", f"catalog with {len(namespaces)} namespace(s)", ()
    if isinstance(connector, SparkConnector):
        return "not probed", "a Spark session starts when a suite first reads", ()
    return "not probed", "a restart target: reached when a pipeline is restarted", ()


def _probe_sql(root: Path, connector: SqlConnector) -> tuple[str, str, tuple[Quota, ...]]:
    from dq_agent.sources.sql import create_engine, reach

    engine = create_engine(connector, root)
    try:
        reach(engine)
        return "reachable", engine.dialect.name, ()
    finally:
        engine.dispose()


def _probe_salesforce(connector: SalesforceConnector) -> tuple[str, str, tuple[Quota, ...]]:
    from dq_agent.sources.salesforce import connect
    from dq_agent.sources.salesforce import translate as translate_salesforce

    client = connect(connector)
    try:
        limits = client.limits()
    except Exception as exc:
        raise translate_salesforce(exc) from exc
    quotas = tuple(
        Quota(label, int(entry["Max"]) - int(entry["Remaining"]), int(entry["Max"]))
        for key, label in _SALESFORCE_LIMITS
        if isinstance(entry := (limits or {}).get(key), Mapping)
        and isinstance(entry.get("Max"), int)
        and isinstance(entry.get("Remaining"), int)
    )
    detail = f"API v{connector.api_version}; runs stop past {connector.max_api_share:.0%} of "
    detail += "the daily API requests"
    return "reachable", detail, quotas


def _probe_sheets(
    connector: GSheetsConnector, suites: list[Suite]
) -> tuple[str, str, tuple[Quota, ...]]:
    from dq_agent.sources.gsheets import connect, spreadsheet_key
    from dq_agent.sources.gsheets import translate as translate_sheets

    client = connect(connector)
    books = sorted(
        {s.source.spreadsheet for s in suites if isinstance(s.source, GSheetsSourceSpec)}
    )
    for book in books:
        try:
            client.open_by_key(spreadsheet_key(book))
        except Exception as exc:
            raise translate_sheets(exc) from exc
    if not books:
        return "not probed", "no suite reads it", ()
    # Google's per-minute quotas are not reported by the API; its 429s are waited out.
    return "reachable", f"{len(books)} spreadsheet(s) opened", ()
