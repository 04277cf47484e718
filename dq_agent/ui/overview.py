"""The overview page: every suite at a glance, and the latest incidents."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from html import escape
from typing import Any

from dq_agent.config.loader import Project
from dq_agent.config.schedule import cron_trigger
from dq_agent.store import Store
from dq_agent.ui import pages

TIMELINE_DAYS = 7


def render(project: Project, store: Store, now: datetime) -> str:
    """Every suite with its latest status, next run and open incidents; the latest incidents."""
    history = store.suite_history(since=now - timedelta(days=TIMELINE_DAYS))
    open_by_suite: dict[str, list[dict[str, Any]]] = {}
    for incident in store.incidents(active=True, events=False):
        open_by_suite.setdefault(incident["suite"], []).append(incident)
    rows = []
    for suite_id in [*project.suites, *project.broken_suites]:
        runs = history.get(suite_id, [])
        suite = project.suites.get(suite_id)
        next_run = None
        if suite is not None and suite.schedule:
            next_run = cron_trigger(suite.schedule, suite.timezone).get_next_fire_time(None, now)
        incidents = " ".join(
            f'<a href="/incidents/{i["id"]}">#{i["id"]} {escape(i["check"])}</a>'
            for i in open_by_suite.get(suite_id, [])
        )
        rows.append(
            [
                escape(suite_id)
                + ("" if suite else ' <span class="error">(invalid configuration)</span>'),
                pages.status(runs[-1][1] if runs else None),
                pages.when(runs[-1][0] if runs else None),
                pages.when(next_run.astimezone(UTC) if next_run else None),
                incidents or '<span class="muted">none</span>',
                pages.timeline(runs),
            ]
        )
    suites = pages.table(
        ["Suite", "Status", "Last run", "Next run", "Open incidents", "Last 7 days"],
        rows,
        empty="No suites in this project.",
    )
    recent = store.incidents(events=False)[:20]
    incidents = pages.table(
        ["Incident", "Suite / check", "Status", "Owners", "Opened", "Summary"],
        (
            [
                f'<a href="/incidents/{i["id"]}">#{i["id"]}</a>',
                escape(f"{i['suite']} / {i['check']}"),
                escape(i["status"]),
                escape(", ".join(i["owners"])),
                pages.when(i["opened_at"]),
                escape(i["summary"]),
            ]
            for i in recent
        ),
        empty="No incidents.",
    )
    return f"{suites}<h2>Incidents</h2>{incidents}"
