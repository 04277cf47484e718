"""The overview page: every suite at a glance, and the latest incidents."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from markupsafe import Markup

from dq_agent.config.loader import Project
from dq_agent.config.schedule import cron_trigger
from dq_agent.store import Store
from dq_agent.ui import pages, templating

TIMELINE_DAYS = 7
RECENT_INCIDENTS = 20
# At most this long (seconds) before a run or incident event another process recorded shows.
RECHECK_S = 1.0


@dataclass(frozen=True)
class SuiteRow:
    """A suite's row: its latest run, next run, open incidents and last days."""

    suite: str
    valid: bool  # False: its file does not validate
    status: str | None  # of its latest run; None: never run
    last_run: datetime | None
    next_run: datetime | None
    incidents: Sequence[dict[str, Any]]  # open, as the store lists them
    days: Sequence[pages.Day]


def last_days(now: datetime) -> list[datetime]:
    """The starts of the last :data:`TIMELINE_DAYS` days in UTC, oldest first, today last."""
    today = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return [today - timedelta(days=n) for n in reversed(range(TIMELINE_DAYS))]


def render(project: Project, store: Store, now: datetime) -> Markup:
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
        rows.append(
            SuiteRow(
                suite=suite_id,
                valid=suite is not None,
                status=last[1] if last else None,
                last_run=last[0] if last else None,
                next_run=next_run.astimezone(UTC) if next_run else None,
                incidents=open_by_suite.get(suite_id, []),
                days=pages.timeline(days, by_day.get(suite_id, {})),
            )
        )
    recent = store.incidents(events=False, limit=RECENT_INCIDENTS)
    return templating.render("overview.html", suites=rows, incidents=recent)


class Overview:
    """The overview page of one store, rendered again only when what it shows may have
    changed: a run or an incident event recorded through this store object
    (:attr:`Store.recorded`) or by another process (:meth:`Store.newest_ids`, asked at most
    every :data:`RECHECK_S`), another project loaded, or a new minute begun (next runs, the
    days shown, and anything else that changes without any of those, such as old runs
    pruned, are at most a minute late).

    Rendering takes about 50 ms with 10,000 runs of 174 suites, most of it in the template.
    One request at a time renders a change; the others meanwhile get the page from before
    it (at most one rendering old) rather than wait, since clicks being acted on can change
    the store several times a second. Only the first page, or one of another project, is
    waited for.
    """

    def __init__(self, store: Store, *, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._store = store
        self._monotonic = monotonic
        self._rendering = threading.Lock()
        self._shown: tuple[Project, tuple[object, ...], Markup] | None = None
        self._newest: tuple[int, int] = (0, 0)
        self._recheck_at = -math.inf

    def render(self, project: Project, now: datetime) -> Markup:
        key = (now.replace(second=0, microsecond=0), *self._changes())
        shown = self._shown
        if shown is not None and shown[0] is project:
            if shown[1] == key:
                return shown[2]
            if not self._rendering.acquire(blocking=False):
                return shown[2]  # being rendered by another request
        else:
            self._rendering.acquire()
        try:
            shown = self._shown
            if shown is not None and shown[0] is project and shown[1] == key:
                return shown[2]  # rendered while this request waited
            page = templating.ascii_only(render(project, self._store, now))
            self._shown = (project, key, page)
            return page
        finally:
            self._rendering.release()

    def _changes(self) -> tuple[int, int, int]:
        """What changes when runs or incident events are recorded: at once through this
        store object, within :data:`RECHECK_S` by other processes. Asking the database every
        request was a third of the time a page took under load on PostgreSQL (its round
        trip, and the database's own work on the same cores)."""
        recorded = self._store.recorded  # read first: one recorded meanwhile shows next time
        at = self._monotonic()
        if at >= self._recheck_at:
            self._recheck_at = at + RECHECK_S
            self._newest = self._store.newest_ids()
        return (recorded, *self._newest)
