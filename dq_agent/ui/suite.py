"""A suite's page: what it reads and when, who hears about it, each check's latest result and
recent history, its open incidents, its corrections and the pipelines it restarts."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from html import escape
from typing import Any

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
from dq_agent.ui import pages
from dq_agent.ui.overview import last_days

# Runs in each check's history.
HISTORY_RUNS = 30
# Corrections listed here; the rest are on the Corrections page.
CORRECTIONS_SHOWN = 20


def render(project: Project, store: Store, suite_id: str, now: datetime) -> str | None:
    """A suite's page, or None when the project has no such suite."""
    suite = project.suites.get(suite_id)
    if suite is None and suite_id not in project.broken_suites:
        return None
    runs = store.suite_runs(suite_id, limit=HISTORY_RUNS)
    days = last_days(now)
    by_day = store.suite_days(start=days[0], days=len(days), suite=suite_id).get(suite_id, {})
    recent = _recent(runs[-1] if runs else None, pages.timeline(days, by_day))
    if suite is None:
        head = _broken(project, project.broken_suites[suite_id], recent)
    else:
        head = _about(suite, now, recent) + "<h2>Checks</h2>" + _checks(suite, runs)
    return (
        head
        + "<h2>Open incidents</h2>"
        + _incidents(store, suite_id)
        + "<h2>Corrections</h2>"
        + _corrections(store, suite_id)
        + ("" if suite is None else "<h2>Restart targets</h2>" + _restarts(store, suite))
    )


def _recent(last: Mapping[str, Any] | None, week: str) -> str:
    """The suite's last run and its last seven days, as terms of the page's list."""
    if last is None:
        run = pages.status(None)
    else:
        run = f"{pages.status(last['status'])} {pages.when(last['started_at'])}"
        if last["error"]:
            run += f'<br><span class="error">{escape(last["error"])}</span>'
    return f"<dt>Last run</dt><dd>{run}</dd><dt>Last 7 days</dt><dd>{week}</dd>"


def _about(suite: Suite, now: datetime, recent: str) -> str:
    description = (
        escape(suite.description) if suite.description else '<span class="muted">none</span>'
    )
    if suite.schedule:
        upcoming = cron_trigger(suite.schedule, suite.timezone).get_next_fire_time(None, now)
        schedule = f"<code>{escape(suite.schedule)}</code> in {escape(suite.timezone)}"
        if upcoming is not None:
            local = "" if suite.timezone == "UTC" else f" ({upcoming:%H:%M} {suite.timezone})"
            schedule += f"; next run {pages.when(upcoming.astimezone(UTC))}{escape(local)}"
    else:
        schedule = '<span class="muted">not scheduled: runs only when asked</span>'
    chain = " → ".join(", ".join(step) for step in chain_of(suite, suite.owner))
    return (
        f'<section class="card" aria-label="About this suite"><dl class="about">'
        f"<dt>Description</dt><dd>{description}</dd>"
        f"<dt>Source</dt><dd>{_source(suite)}</dd>"
        f"<dt>Schedule</dt><dd>{schedule}</dd>"
        f"<dt>Owners</dt><dd>{_people(suite.owner)}</dd>"
        f"<dt>Escalation</dt><dd>{escape(chain) or _people(())}</dd>"
        f"{recent}</dl></section>"
    )


def _source(suite: Suite) -> str:
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
    parts = [f"connector <strong>{escape(source.connector)}</strong>"]
    parts += [f"{name} <strong>{escape(value)}</strong>" for name, value in what if value]
    query = getattr(source, "query", None)
    if query:
        return " · ".join([*parts, "query"]) + f"<pre>{escape(query)}</pre>"
    return " · ".join(parts)


def _people(people: Sequence[str]) -> str:
    return escape(", ".join(people)) if people else '<span class="muted">none</span>'


def _checks(suite: Suite, runs: Sequence[Mapping[str, Any]]) -> str:
    """Each check with its latest result and one bar per recent run of the suite."""
    rows = []
    for spec in suite.checks:
        results = [(run["started_at"], run["checks"].get(spec.name)) for run in runs]
        latest = next((r for _, r in reversed(results) if r is not None), None)
        owner = ""
        if spec.owner:
            owner = f'<br><span class="muted">owner: {_people(spec.owner)}</span>'
        history = pages.sparkline(
            [(at, r["status"] if r else None) for at, r in results],
            name=f"History of {spec.name}",
        )
        rows.append(
            [
                f"<strong>{escape(spec.name)}</strong>{owner}",
                escape(spec.type),
                escape(spec.severity),
                pages.status(latest["status"] if latest else None),
                escape(latest["message"]) if latest else "",
                history if runs else '<span class="muted">no runs yet</span>',
            ]
        )
    return pages.table(
        ["Check", "Type", "Severity", "Last result", "Message", f"Last {HISTORY_RUNS} runs"],
        rows,
        empty="This suite has no checks.",
    )


def _incidents(store: Store, suite_id: str) -> str:
    found = store.incidents(active=True, events=False, suite=suite_id)
    return pages.incidents(found, empty="No open incidents.", suite=False)


def _corrections(store: Store, suite_id: str) -> str:
    found = store.corrections(suite=suite_id)
    shown = pages.table(
        ["#", "Check", "Record", "Change", "Status", "Decided by", "Proposed"],
        (
            [
                f'<a href="/corrections#correction-{c.id}">#{c.id}</a>',
                escape(c.check),
                escape(f"{', '.join(f'{k}={v}' for k, v in c.key.items())} · {c.column}"),
                pages.change_cell(c),
                escape(c.status),
                escape(c.decided_by),
                pages.when(c.created_at),
            ]
            for c in found[:CORRECTIONS_SHOWN]
        ),
        empty="No corrections.",
    )
    if len(found) <= CORRECTIONS_SHOWN:
        return shown
    more = len(found) - CORRECTIONS_SHOWN
    return f'{shown}<p>{more} older on the <a href="/corrections">Corrections</a> page.</p>'


def _restarts(store: Store, suite: Suite) -> str:
    """Each pipeline the suite restarts once it recovers, with how its last restart went."""
    last = {r.target: r for r in store.restarts(suite=suite.suite)}
    rows = []
    for index, target in enumerate(suite.restart):
        restart = last.get(index)
        outcome = '<span class="muted">never restarted</span>'
        if restart is not None:
            outcome = (
                f"{pages.link(restart.url, restart.state)} "
                f"{pages.when(restart.finished_at or restart.started_at or restart.created_at)}"
                + (
                    f'<br><span class="muted">{escape(restart.detail)}</span>'
                    if restart.detail
                    else ""
                )
            )
        rows.append([escape(target.label), escape(target.type), outcome])
    return pages.table(
        ["Target", "Type", "Last restart"], rows, empty="This suite restarts no pipelines."
    )


def _broken(project: Project, issues: Sequence[ConfigIssue], recent: str) -> str:
    """A suite whose file does not validate: what is wrong with it, where."""
    listed = "".join(f"<li>{escape(str(_relative(project, i)))}</li>" for i in issues)
    return (
        '<section class="card" aria-label="Configuration errors">'
        '<p class="error"><strong>This suite does not run: its configuration is invalid.'
        "</strong></p>"
        f'<ul class="issues">{listed}</ul><dl class="about">{recent}</dl></section>'
    )


def _relative(project: Project, issue: ConfigIssue) -> ConfigIssue:
    """The issue with its file named from the project folder."""
    if not issue.file.is_relative_to(project.root):
        return issue
    return dataclasses.replace(issue, file=issue.file.relative_to(project.root))
