"""A suite's page: what it reads and when, who hears about it, each check's latest result and
recent history, its open incidents, its corrections and the pipelines it restarts."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from markupsafe import Markup

from dq_agent.config.loader import Project
from dq_agent.config.models import (
    GSheetsSourceSpec,
    IcebergSourceSpec,
    SalesforceSourceSpec,
    SparkSourceSpec,
    SqlSourceSpec,
    Suite,
)
from dq_agent.config.schedule import cron_trigger
from dq_agent.errors import ConfigIssue
from dq_agent.escalate.incidents import chain_of
from dq_agent.store import Store
from dq_agent.store.models import Restart
from dq_agent.ui import pages, templating
from dq_agent.ui.overview import last_days

# Runs in each check's history.
HISTORY_RUNS = 30
# Corrections listed here; the rest are on the Corrections page.
CORRECTIONS_SHOWN = 20


@dataclass(frozen=True)
class About:
    """What a valid suite reads, when, and who hears about it."""

    description: str | None
    source: Sequence[tuple[str, str]]  # the connector, then the object, table… read from it
    query: str | None
    schedule: str | None  # cron; None: runs only when asked
    timezone: str
    next_run: datetime | None  # in UTC
    local: str  # the next run's time in the suite's timezone, if that is not UTC
    owners: Sequence[str]
    chain: str


@dataclass(frozen=True)
class CheckRow:
    """A check with its latest result and its history (None: the suite never ran)."""

    name: str
    type: str
    severity: str
    owners: Sequence[str]
    status: str | None
    message: str
    history: pages.Sparkline | None


@dataclass(frozen=True)
class RestartRow:
    """A pipeline the suite restarts, and its last restart (None: never restarted)."""

    label: str
    type: str
    last: Restart | None
    at: datetime | None


def render(project: Project, store: Store, suite_id: str, now: datetime) -> Markup | None:
    """A suite's page, or None when the project has no such suite."""
    suite = project.suites.get(suite_id)
    if suite is None and suite_id not in project.broken_suites:
        return None
    runs = store.suite_runs(suite_id, limit=HISTORY_RUNS)
    days = last_days(now)
    by_day = store.suite_days(start=days[0], days=len(days), suite=suite_id).get(suite_id, {})
    corrections = store.corrections(suite=suite_id)
    return templating.render(
        "suite.html",
        about=None if suite is None else _about(suite, now),
        issues=[
            str(_relative(project, issue)) for issue in project.broken_suites.get(suite_id, ())
        ],
        last=runs[-1] if runs else None,
        days=pages.timeline(days, by_day),
        checks=[] if suite is None else _checks(suite, runs),
        history_runs=HISTORY_RUNS,
        incidents=store.incidents(active=True, events=False, suite=suite_id),
        corrections=corrections[:CORRECTIONS_SHOWN],
        older=max(len(corrections) - CORRECTIONS_SHOWN, 0),
        restarts=[] if suite is None else _restarts(store, suite),
    )


def _about(suite: Suite, now: datetime) -> About:
    upcoming, local = None, ""
    if suite.schedule:
        upcoming = cron_trigger(suite.schedule, suite.timezone).get_next_fire_time(None, now)
        if upcoming is not None and suite.timezone != "UTC":
            local = f" ({upcoming:%H:%M} {suite.timezone})"
    source, query = _source(suite)
    return About(
        description=suite.description,
        source=source,
        query=query,
        schedule=suite.schedule,
        timezone=suite.timezone,
        next_run=upcoming.astimezone(UTC) if upcoming is not None else None,
        local=local,
        owners=suite.owner,
        chain=" → ".join(", ".join(step) for step in chain_of(suite, suite.owner)),
    )


def _source(suite: Suite) -> tuple[list[tuple[str, str]], str | None]:
    """The connector, and the object, table, worksheet or query read from it."""
    source = suite.source
    what: list[tuple[str, str | None]] = []
    if isinstance(source, SalesforceSourceSpec):
        what = [("object", source.object), ("where", source.where)]
    elif isinstance(source, GSheetsSourceSpec):
        what = [("spreadsheet", source.spreadsheet), ("worksheet", source.worksheet)]
    elif isinstance(source, SqlSourceSpec):
        table = f"{source.schema_}.{source.table}" if source.schema_ else source.table
        what = [("table", table)]
    elif isinstance(source, IcebergSourceSpec | SparkSourceSpec):
        what = [("table", source.table)]
    parts = [("connector", source.connector)]
    parts += [(name, value) for name, value in what if value]
    return parts, getattr(source, "query", None) or None


def _checks(suite: Suite, runs: Sequence[Mapping[str, Any]]) -> list[CheckRow]:
    """Each check with its latest result and one bar per recent run of the suite."""
    rows = []
    for spec in suite.checks:
        results = [(run["started_at"], run["checks"].get(spec.name)) for run in runs]
        latest = next((r for _, r in reversed(results) if r is not None), None)
        history = pages.sparkline(
            [(at, r["status"] if r else None) for at, r in results],
            name=f"History of {spec.name}",
        )
        rows.append(
            CheckRow(
                name=spec.name,
                type=spec.type,
                severity=spec.severity,
                owners=spec.owner or (),
                status=latest["status"] if latest else None,
                message=latest["message"] if latest else "",
                history=history if runs else None,
            )
        )
    return rows


def _restarts(store: Store, suite: Suite) -> list[RestartRow]:
    """Each pipeline the suite restarts once it recovers, with how its last restart went."""
    last = {r.target: r for r in store.restarts(suite=suite.suite)}
    rows = []
    for index, target in enumerate(suite.restart):
        restart = last.get(index)
        at = None
        if restart is not None:
            at = restart.finished_at or restart.started_at or restart.created_at
        rows.append(RestartRow(target.label, target.type, restart, at))
    return rows


def _relative(project: Project, issue: ConfigIssue) -> ConfigIssue:
    """The issue with its file named from the project folder."""
    if not issue.file.is_relative_to(project.root):
        return issue
    return dataclasses.replace(issue, file=issue.file.relative_to(project.root))
