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
RECENT_INCIDENTS = 20


def last_days(now: datetime) -> list[datetime]:
    """The starts of the last :data:`TIMELINE_DAYS` days in UTC, oldest first, today last."""
    today = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return [today - timedelta(days=n) for n in reversed(range(TIMELINE_DAYS))]


def render(project: Project, store: Store, now: datetime) -> str:
    """Every suite with its latest status, next run and open incidents; the latest incidents."""
    latest = store.latest_runs()
    days = last_days(now)
    by_day = store.suite_days(start=days[0], days=len(days))
    open_by_suite: dict[str, list[dict[str, Any]]] = {}
    for incident in store.incidents(active=True, events=False):
        open_by_suite.setdefault(incident["suite"], []).append(incident)
    rows = []
    for suite_id in [*project.suites, *project.broken_suites]:
        last = latest.get(suite_id)
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
                pages.suite_link(suite_id)
                + ("" if suite else ' <span class="error">(invalid configuration)</span>'),
                pages.status(last[1] if last else None),
                pages.when(last[0] if last else None),
                pages.when(next_run.astimezone(UTC) if next_run else None),
                incidents or '<span class="muted">none</span>',
                pages.timeline(days, by_day.get(suite_id, {})),
            ]
        )
    suites = pages.table(
        ["Suite", "Status", "Last run", "Next run", "Open incidents", "Last 7 days"],
        rows,
        empty="No suites in this project.",
    )
    recent = store.incidents(events=False, limit=RECENT_INCIDENTS)
    incidents = pages.incidents(recent, empty="No incidents.")
    return f"{suites}<h2>Incidents</h2>{incidents}"
