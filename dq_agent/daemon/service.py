"""``dq-agent daemon``: every suite on its cron, the runs shared by the replicas.

One process among the replicas sharing a state store holds the leadership and keeps the
schedule (APScheduler 3: a cron trigger per suite in its timezone): at each cron time it
queues a run of the suite in the store (:mod:`dq_agent.store.queue`). Every replica claims
due runs from the queue, one agent cycle at a time, holding each for a lease it renews while
the run goes on; a replica that dies loses its claim when the lease lapses and another runs
it. On SQLite only the leader works. Every replica serves the HTTP endpoints: ``/healthz``,
``/metrics`` and the Slack interactions.

Between scheduled runs a tick moves restarts along, reminds people and sends what is due.
Suite files are re-read on a short interval: a changed suite is rescheduled, a removed one
unscheduled, and a broken one keeps running in its last good version while its owner hears
about the broken file.
"""

from __future__ import annotations

import itertools
import logging
import os
import re
import socket
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any

from dq_agent.agent import Cycle, connect_slack, run_cycle, tick
from dq_agent.config.loader import Project, load_project
from dq_agent.config.models import Suite
from dq_agent.config.schedule import cron_trigger
from dq_agent.daemon.leader import Leadership
from dq_agent.engine import RunOptions, utc_now
from dq_agent.errors import DqAgentError
from dq_agent.escalate.actions import Actions
from dq_agent.escalate.endpoint import Verifier
from dq_agent.escalate.incidents import Notice
from dq_agent.escalate.notify import Escalation
from dq_agent.escalate.server import InteractionsServer
from dq_agent.escalate.slack import Slack, SlackError
from dq_agent.escalate.socket_mode import SocketInteractions
from dq_agent.restart.runner import Restarts
from dq_agent.results import SuiteResult, worst
from dq_agent.sources.registry import Engines
from dq_agent.store import Store, queue
from dq_agent.triage import classify
from dq_agent.ui.app import Dashboard

log = logging.getLogger(__name__)

# APScheduler job options: a late run is still made within 5 minutes, missed runs collapse
# into one, and a suite never runs twice at the same time.
JOB_DEFAULTS = {"coalesce": True, "misfire_grace_time": 300, "max_instances": 1}
TICK = timedelta(minutes=1)
RELOAD = timedelta(seconds=15)
# How often the retention prunes old run history (when ``retention.days`` is set).
PRUNE_EVERY = timedelta(hours=1)
# How long a claimed run is held without a renewal; renewed every third of it while it runs.
LEASE = timedelta(minutes=2)
# Transient source failures are tried again after these waits, then left to the schedule.
RETRY_BACKOFF = (timedelta(minutes=1), timedelta(minutes=5), timedelta(minutes=15))
CONFIG_PROBLEM = "(config)"
# Prometheus' text exposition format.
METRICS_TYPE = "text/plain; version=0.0.4"
# How long a stop waits for the running cycle before leaving it to the next start.
SHUTDOWN_GRACE_S = 60.0
# Seconds between tries to open Slack's Socket Mode connection while Slack cannot be reached
# (the last one repeats).
SOCKET_RETRY_S: tuple[float, ...] = (5.0, 15.0, 60.0, 300.0)
_WINDOW = re.compile(r"retry between (\d{1,2}:\d{2}) and (\d{1,2}:\d{2})(?: ?UTC)?", re.IGNORECASE)

Clock = Callable[[], datetime]


def retry_windows(runbook: str) -> list[tuple[time, time]]:
    """The runbook's "retry between 02:47 and 03:12 UTC" windows, as UTC (start, end)."""
    return [(_clock(a), _clock(b)) for a, b in _WINDOW.findall(runbook)]


def _clock(text: str) -> time:
    hours, minutes = text.split(":")
    return time(int(hours), int(minutes))


def next_retry(suite: Suite, attempt: int, now: datetime) -> datetime | None:
    """When to try a transiently failing suite again; None once the retries are spent.

    Without runbook windows: after a growing wait. Inside a window: the same, if still in
    the window. Outside every window: at the start of the next one.
    """
    if attempt >= len(RETRY_BACKOFF):
        return None
    wait = now + RETRY_BACKOFF[attempt]
    windows = retry_windows(suite.runbook)
    if not windows:
        return wait
    utc = now.astimezone(UTC)
    day = utc.date()
    for start, end in windows:
        opens = datetime.combine(day, start, tzinfo=UTC)
        closes = datetime.combine(day, end, tzinfo=UTC)
        if opens <= utc < closes:
            return wait if wait < closes else None
    starts = [datetime.combine(day, start, tzinfo=UTC) for start, _ in windows]
    return min(s if s > utc else s + timedelta(days=1) for s in starts)


@dataclass
class Metrics:
    """What ``/metrics`` reports (Prometheus text format), counted since the process started."""

    runs: Counter[tuple[str, str]] = field(default_factory=Counter)
    duration_sum: dict[str, float] = field(default_factory=dict)
    notifications: int = 0
    failed_notifications: int = 0
    pruned: Counter[str] = field(default_factory=Counter)
    # Messages waiting in the outbox after the last delivery round.
    outbox_depth: int = 0
    # Queued runs this replica claimed: how late each started after it was due (sum, max),
    # and how the finished ones ended (by the suite's status, or "abandoned").
    claims: int = 0
    lag_sum: float = 0.0
    lag_max: float = 0.0
    finishes: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, cycle: Cycle) -> None:
        with self.lock:
            for result in cycle.results:
                self.runs[(result.suite, result.status)] += 1
                total = self.duration_sum.get(result.suite, 0.0)
                self.duration_sum[result.suite] = total + result.duration_s
            self.notifications += len(cycle.delivery.sent)
            self.failed_notifications += len(cycle.delivery.failed)
            self.outbox_depth = cycle.delivery.waiting

    def claimed(self, lag_s: float) -> None:
        """This replica claimed a queued run ``lag_s`` seconds after it was due."""
        with self.lock:
            self.claims += 1
            self.lag_sum += lag_s
            self.lag_max = max(self.lag_max, lag_s)

    def finished(self, status: str) -> None:
        with self.lock:
            self.finishes[status] += 1

    def render(
        self, store: Store, leader: bool, slack: Slack | None = None, now: datetime | None = None
    ) -> str:
        open_incidents = len(store.incidents(active=True, events=False))
        queued = queue.depth(store, now=now or utc_now())
        corrections = Counter(c.status for c in store.corrections())
        with self.lock:
            lines = [
                "# HELP dq_agent_leader 1 when this replica runs the schedule.",
                "# TYPE dq_agent_leader gauge",
                f"dq_agent_leader {int(leader)}",
                "# HELP dq_agent_runs_total Suite runs by status.",
                "# TYPE dq_agent_runs_total counter",
                *(
                    f'dq_agent_runs_total{{suite="{s}",status="{st}"}} {n}'
                    for (s, st), n in sorted(self.runs.items())
                ),
                "# HELP dq_agent_run_duration_seconds Time spent running suites.",
                "# TYPE dq_agent_run_duration_seconds summary",
            ]
            for suite in sorted(self.duration_sum):
                count = sum(n for (s, _), n in self.runs.items() if s == suite)
                lines.append(
                    f'dq_agent_run_duration_seconds_sum{{suite="{suite}"}} '
                    f"{self.duration_sum[suite]:.3f}"
                )
                lines.append(f'dq_agent_run_duration_seconds_count{{suite="{suite}"}} {count}')
            lines += [
                "# HELP dq_agent_incidents_open Incidents not resolved.",
                "# TYPE dq_agent_incidents_open gauge",
                f"dq_agent_incidents_open {open_incidents}",
                "# HELP dq_agent_corrections Corrections in the ledger by status.",
                "# TYPE dq_agent_corrections gauge",
                *(
                    f'dq_agent_corrections{{status="{status}"}} {corrections.get(status, 0)}'
                    for status in ("applied", "reverted", "pending", "conflict", "failed")
                ),
                "# HELP dq_agent_notifications_sent_total Slack messages sent.",
                "# TYPE dq_agent_notifications_sent_total counter",
                f"dq_agent_notifications_sent_total {self.notifications}",
                "# HELP dq_agent_notifications_failed_total Slack messages given up on.",
                "# TYPE dq_agent_notifications_failed_total counter",
                f"dq_agent_notifications_failed_total {self.failed_notifications}",
                "# HELP dq_agent_outbox_depth Messages waiting in the outbox.",
                "# TYPE dq_agent_outbox_depth gauge",
                f"dq_agent_outbox_depth {self.outbox_depth}",
                "# HELP dq_agent_slack_rate_limit_waits_total Waits Slack asked for (429).",
                "# TYPE dq_agent_slack_rate_limit_waits_total counter",
                f"dq_agent_slack_rate_limit_waits_total {slack.rate_limit_waits if slack else 0}",
                "# HELP dq_agent_slack_rate_limit_wait_seconds_total Time spent in those waits.",
                "# TYPE dq_agent_slack_rate_limit_wait_seconds_total counter",
                "dq_agent_slack_rate_limit_wait_seconds_total "
                f"{slack.rate_limit_wait_s if slack else 0.0:.3f}",
                "# HELP dq_agent_queue_depth Runs due and not finished, fleet-wide.",
                "# TYPE dq_agent_queue_depth gauge",
                f"dq_agent_queue_depth {queued}",
                "# HELP dq_agent_slack_paced_seconds_total Time posts waited for their "
                "channel's turn.",
                "# TYPE dq_agent_slack_paced_seconds_total counter",
                f"dq_agent_slack_paced_seconds_total {slack.paced_s if slack else 0.0:.3f}",
                "# HELP dq_agent_schedule_lag_seconds How late this replica's runs started "
                "after they were due.",
                "# TYPE dq_agent_schedule_lag_seconds summary",
                f"dq_agent_schedule_lag_seconds_sum {self.lag_sum:.3f}",
                f"dq_agent_schedule_lag_seconds_count {self.claims}",
                "# HELP dq_agent_schedule_lag_seconds_max The latest a run of it started.",
                "# TYPE dq_agent_schedule_lag_seconds_max gauge",
                f"dq_agent_schedule_lag_seconds_max {self.lag_max:.3f}",
                "# HELP dq_agent_queued_runs_claimed_total Queued runs this replica claimed.",
                "# TYPE dq_agent_queued_runs_claimed_total counter",
                f"dq_agent_queued_runs_claimed_total {self.claims}",
                "# HELP dq_agent_queued_runs_finished_total Queued runs it finished, by status.",
                "# TYPE dq_agent_queued_runs_finished_total counter",
                *(
                    f'dq_agent_queued_runs_finished_total{{status="{st}"}} {n}'
                    for st, n in sorted(self.finishes.items())
                ),
                "# HELP dq_agent_pruned_rows_total Rows the retention pruned, by table.",
                "# TYPE dq_agent_pruned_rows_total counter",
                *(
                    f'dq_agent_pruned_rows_total{{table="{t}"}} {n}'
                    for t, n in sorted(self.pruned.items())
                ),
            ]
        return "\n".join(lines) + "\n"


class Daemon:
    """The scheduled agent for one project directory."""

    def __init__(
        self,
        root: Path,
        *,
        host: str = "127.0.0.1",
        port: int = 8787,
        clock: Clock = utc_now,
        env: Mapping[str, str] | None = None,
    ) -> None:
        from apscheduler.schedulers.background import BackgroundScheduler

        self.root = root
        self.clock = clock
        self.env = env
        self.project = self._load()
        if self.project is None:
            raise DqAgentError("dq-agent.yml is invalid: nothing was started")
        self.store = Store.open(self.project.state_url)
        # Its SQL engines stay open across cycles: no new connections or statement compiling
        # for every run.
        self.engines = Engines()
        self.options = RunOptions(clock=clock, engines=self.engines)
        self.slack = connect_slack(self.project, self.store)
        self.restarts = Restarts(self.project, self.store, self.options)
        self.leadership = Leadership(self.project.state_url)
        self.metrics = Metrics()
        self.scheduler = BackgroundScheduler(timezone="UTC", job_defaults=JOB_DEFAULTS)
        self._cycle_lock = threading.Lock()  # one agent cycle at a time
        self._retries: dict[str, int] = {}
        self._broken_seen: dict[str, str] = {}
        self._leading = False
        self._stopping = threading.Event()
        self._pruned_at: datetime | None = None
        self._said_standby = False
        # Who this replica is in the run queue's claims.
        self.replica = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        settings = self.project.settings.slack
        self.actions = (
            Actions(self.project, self.store, self.slack, self.options, env=env)
            if self.slack is not None
            else None
        )
        # Clicks come over Socket Mode (a connection the daemon opens) or to the HTTP server.
        over_socket = settings is not None and settings.mode == "socket"
        self.socket_mode = (
            SocketInteractions(settings, self.store, self._act, clock=clock)
            if settings is not None and over_socket
            else None
        )
        self.server = InteractionsServer(
            Verifier(settings.verifying_secret(), self.store, clock)
            if settings is not None and not over_socket
            else None,
            self._act,
            host=host,
            port=port,
            pages={"/healthz": self._health, "/metrics": self._metrics},
            app=Dashboard(
                self._current, self.store, self.options, self.slack, lock=self._cycle_lock
            ).handle,
        )

    def _current(self) -> Project:
        assert self.project is not None  # set at start, and a reload keeps the last good one
        return self.project

    def _load(self) -> Project | None:
        project = load_project(self.root, env=self.env)
        for issue in project.issues:
            log.error("%s", issue)
        if project.settings_issues:
            return None
        return project

    # -- the loop ----------------------------------------------------------------------------

    def _connect_socket_mode(self, stop: threading.Event) -> None:
        """Open the Socket Mode connection; while Slack cannot be reached, keep trying in the
        background (clicks wait at Slack meanwhile). A token Slack refuses stops the daemon."""
        assert self.socket_mode is not None
        try:
            self.socket_mode.start()
        except SlackError as exc:
            if not exc.transient:
                self.shutdown()
                raise
            log.warning("Slack Socket Mode: %s; trying again in the background", exc)
            threading.Thread(
                target=self._reconnect_socket_mode, args=(stop,), name="slack-socket", daemon=True
            ).start()
            return
        log.info("taking Slack clicks over Socket Mode")

    def _reconnect_socket_mode(self, stop: threading.Event) -> None:
        assert self.socket_mode is not None
        for wait in itertools.chain(SOCKET_RETRY_S, itertools.repeat(SOCKET_RETRY_S[-1])):
            if stop.wait(wait):
                return
            try:
                self.socket_mode.start()
            except SlackError as exc:
                if not exc.transient:
                    log.error("Slack Socket Mode: %s; no clicks until the token is fixed", exc)
                    return
                log.warning("Slack Socket Mode: %s; trying again later", exc)
                continue
            log.info("taking Slack clicks over Socket Mode")
            return

    def serve(self, stop: threading.Event, *, poll_s: float = 1.0) -> None:
        """Run until ``stop`` is set: lead when possible, stand by otherwise."""
        self.server.start()
        log.info("serving on %s", self.server.base_url)
        if self.socket_mode is not None:
            self._connect_socket_mode(stop)
        log.info("replica %s: claims due runs from the queue", self.replica)
        worker = threading.Thread(target=self._work, args=(stop, poll_s), name="dq-agent-worker")
        worker.start()
        try:
            while not stop.is_set():
                self.step()
                stop.wait(poll_s)
        finally:
            stop.set()
            self.shutdown()
            worker.join()

    def _work(self, stop: threading.Event, poll_s: float) -> None:
        """Claim and run due runs until ``stop``; wait ``poll_s`` when none is due."""
        while not stop.is_set() and not self._stopping.is_set():
            try:
                ran = self.work_once()
            except DqAgentError as exc:  # the store unreachable: try again in a moment
                log.warning("could not take a run from the queue: %s", exc)
                ran = None
            if ran is None:
                stop.wait(poll_s)

    def step(self) -> None:
        """One turn of the leadership loop: take the lead if free, give it up if lost."""
        if not self._leading and self.leadership.try_acquire():
            self._leading = True
            self._schedule_all()
            if not self.scheduler.running:
                self.scheduler.start()
            else:
                self.scheduler.resume()
            log.info("leading: %d suites scheduled", len(self.scheduler.get_jobs()))
        elif not self._leading:
            self._standing_by()
        elif not self.leadership.holds():
            self._leading = False
            self.scheduler.pause()
            log.warning("lost the leadership: standing by")

    def _standing_by(self) -> None:
        """On SQLite, say once why this replica does nothing: only one works on SQLite."""
        if self._said_standby or self.store.engine.dialect.name != "sqlite":
            return
        self._said_standby = True
        log.warning(
            "another dq-agent daemon works on this SQLite state store: only one replica works "
            "on SQLite, so this one stands by until it stops (a PostgreSQL state_url lets "
            "replicas take over from each other)"
        )

    def shutdown(self) -> None:
        """Stop taking new runs, let the running one finish, answer what was clicked.

        A cycle still running after :data:`SHUTDOWN_GRACE_S` is abandoned: every write it made
        was recorded first (ledger, outbox, restarts), and the next start settles it.
        """
        self._stopping.set()
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        if self._cycle_lock.acquire(timeout=SHUTDOWN_GRACE_S):
            self._cycle_lock.release()
        else:
            log.warning(
                "a run did not finish in %ss: abandoned, settled on next start", SHUTDOWN_GRACE_S
            )
        if self.socket_mode is not None:
            self.socket_mode.stop()
        self.server.stop()
        self.restarts.close()
        self.engines.dispose()
        self.leadership.release()
        self.store.close()

    # -- jobs --------------------------------------------------------------------------------

    def _schedule_all(self) -> None:
        from apscheduler.triggers.interval import IntervalTrigger

        self.scheduler.remove_all_jobs()
        assert self.project is not None
        for suite in self.project.suites.values():
            self._schedule(suite)
        self.scheduler.add_job(
            self.tick_once, IntervalTrigger(seconds=TICK.total_seconds()), id="tick"
        )
        self.scheduler.add_job(
            self.reload, IntervalTrigger(seconds=RELOAD.total_seconds()), id="reload"
        )

    def _schedule(self, suite: Suite) -> None:
        job_id = f"suite:{suite.suite}"
        if self.scheduler.get_job(job_id) is not None:
            self.scheduler.remove_job(job_id)
        if suite.schedule is None:
            log.warning(
                "suite %s has no schedule: it runs only with dq-agent run (add schedule: to %s)",
                suite.suite,
                suite.file,
            )
            return
        trigger = cron_trigger(suite.schedule, suite.timezone)
        self.scheduler.add_job(
            self.enqueue_due, trigger, args=[suite.suite], id=job_id, name=suite.suite
        )

    def enqueue_due(self, suite_id: str) -> bool:
        """The suite's cron time has come: queue its run for whichever replica is free
        (coalesced into a run of it still waiting or running)."""
        due = self.clock().replace(second=0, microsecond=0)
        return queue.enqueue(self.store, suite_id, due)

    def work_once(self) -> Cycle | None:
        """Claim the oldest due run and do it, renewing the claim while it runs; None when
        nothing is due (or this replica may not work: a standby on SQLite)."""
        if self._stopping.is_set():
            return None
        if not self._leading and self.store.engine.dialect.name == "sqlite":
            return None
        now = self.clock()
        held = queue.claim(self.store, by=self.replica, now=now, lease=LEASE)
        if held is None:
            return None
        self.metrics.claimed(max(0.0, (now - held.due_at).total_seconds()))
        if self.project is None or held.suite not in self.project.suites:
            # Its file was removed (or broke before it ever ran) after the run was queued.
            queue.finish(self.store, held, by=self.replica, status="removed", at=now)
            self.metrics.finished("removed")
            log.info("run %d of %s: the suite is gone, nothing to run", held.id, held.suite)
            return None
        done = threading.Event()
        renewing = threading.Thread(target=self._renew, args=(held, done), daemon=True)
        renewing.start()
        try:
            cycle = self._run(held.suite)
        finally:
            done.set()
            renewing.join()
        if cycle is None:  # stopping before it started: another replica runs it
            queue.release(self.store, held, by=self.replica)
            return None
        status = worst(r.status for r in cycle.results)
        if not queue.finish(self.store, held, by=self.replica, status=status, at=self.clock()):
            log.error("run %d of %s: the claim was lost while it ran", held.id, held.suite)
        self.metrics.finished(status)
        for result in cycle.results:
            self._after(result)
        return cycle

    def _renew(self, held: queue.Claim, done: threading.Event) -> None:
        """Renew ``held``'s lease every third of it until ``done``."""
        while not done.wait(LEASE.total_seconds() / 3):
            until = self.clock() + LEASE
            if not queue.renew(self.store, held, by=self.replica, until=until):
                log.error("run %d of %s: lost its claim (lease lapsed)", held.id, held.suite)
                return

    def run_suite(self, suite_id: str) -> Cycle | None:
        """One cycle of one suite now; transient source failures are tried again soon."""
        cycle = self._run(suite_id)
        if cycle is not None:
            for result in cycle.results:
                self._after(result)
        return cycle

    def _run(self, suite_id: str) -> Cycle | None:
        with self._cycle_lock:
            if self._stopping.is_set():
                return None
            assert self.project is not None
            cycle = run_cycle(
                self.project,
                [suite_id],
                self.store,
                self.options,
                env=self.env,
                slack=self.slack,
                restarts=self.restarts,
                # Another replica (or this one's tick) following up sends this run's news too.
                follow_up_if_free=True,
            )
        self.metrics.record(cycle)
        return cycle

    def _after(self, result: SuiteResult) -> None:
        suite = self.project.suites.get(result.suite) if self.project else None
        if suite is None:
            return
        if result.status != "error" or classify(suite, result).kind != "transient":
            self._retries.pop(result.suite, None)
            return
        attempt = self._retries.get(result.suite, 0)
        when = next_retry(suite, attempt, self.clock())
        if when is None:
            self._retries.pop(result.suite, None)
            log.warning("%s: giving up retrying until its next scheduled run", result.suite)
            return
        self._retries[result.suite] = attempt + 1
        log.info("%s: transient failure, trying again at %s", result.suite, when.isoformat())
        queue.enqueue(self.store, result.suite, when, reason="retry")

    def tick_once(self) -> Cycle | None:
        with self._cycle_lock:
            if self._stopping.is_set():
                return None
            assert self.project is not None
            cycle = tick(
                self.project,
                self.store,
                self.options,
                slack=self.slack,
                restarts=self.restarts,
            )
        self.metrics.record(cycle)
        self.prune_if_due()
        return cycle

    def prune_if_due(self) -> None:
        """Once every :data:`PRUNE_EVERY`, the retention's pruning: old run history goes in
        small batches, outside the cycle lock (it deletes only what no cycle reads)."""
        from dq_agent.store.retention import prune

        now = self.clock()
        if self._pruned_at is not None and now - self._pruned_at < PRUNE_EVERY:
            return
        self._pruned_at = now
        assert self.project is not None
        settings = self.project.settings.retention
        try:
            pruned = prune(
                self.store,
                days=settings.days,
                suites=self.project.suites.values(),
                now=now,
                batch=settings.batch,
                full_runs=settings.full_runs,
            )
        except DqAgentError as exc:
            log.warning("pruning the state store failed (tried again in an hour): %s", exc)
            return
        with self.metrics.lock:
            self.metrics.pruned.update(pruned.rows)
        if pruned.total:
            log.info("pruned %d rows of run history: %s", pruned.total, pruned.rows)

    def reload(self) -> list[str]:
        """Pick up added, changed, removed and broken suite files; what changed, in words."""
        fresh = self._load()
        if fresh is None or self.project is None:
            return []
        changes: list[str] = []
        suites = dict(fresh.suites)
        for suite_id, issues in fresh.broken_suites.items():
            old = self.project.suites.get(suite_id)
            message = "; ".join(str(i) for i in issues) or "invalid"
            if old is not None:
                suites[suite_id] = old  # keeps running in its last good version
            if self._broken_seen.get(suite_id) != message:
                self._broken_seen[suite_id] = message
                changes.append(f"{suite_id}: broken, {'kept' if old else 'not scheduled'}")
                self._tell_broken(suite_id, old, message)
        for suite_id in list(self._broken_seen):
            if suite_id not in fresh.broken_suites:
                del self._broken_seen[suite_id]
                self._fixed(suite_id)
        for suite_id, suite in suites.items():
            if self.project.suites.get(suite_id) != suite:
                changes.append(
                    f"{suite_id}: {'changed' if suite_id in self.project.suites else 'added'}"
                )
                if self._leading:
                    self._schedule(suite)
        for suite_id in self.project.suites:
            if suite_id not in suites and suite_id not in fresh.broken_suites:
                changes.append(f"{suite_id}: removed")
                if self._leading and self.scheduler.get_job(f"suite:{suite_id}"):
                    self.scheduler.remove_job(f"suite:{suite_id}")
        with self._cycle_lock:
            self.project = replace(fresh, suites=suites)
            self.restarts.project = self.project
            if self.actions is not None:
                self.actions.project = self.project
                self.actions.escalation.project = self.project
        for change in changes:
            log.info("reloaded: %s", change)
        return changes

    def _tell_broken(self, suite_id: str, old: Suite | None, message: str) -> None:
        owners = old.owner if old else ()
        state = "the last good version keeps running" if old else "not running"
        change = self.store.record_problem(
            suite=suite_id,
            check=CONFIG_PROBLEM,
            dataset=f"checks/{suite_id}.yml",
            owners=owners,
            summary=f"the suite file is broken ({state}): {message}",
            at=self.clock(),
            check_type="config",
            evidence={"message": message},
        )
        notice = Notice(
            change.incident_id,
            change.event,
            suite_id,
            CONFIG_PROBLEM,
            tuple(owners),
            message,
            change.event_id,
        )
        assert self.project is not None
        Escalation(self.project, self.store, self.slack, self.clock).announce([notice])

    def _fixed(self, suite_id: str) -> None:
        change = self.store.problems_gone(
            suite=suite_id, check=CONFIG_PROBLEM, dataset=f"checks/{suite_id}.yml", at=self.clock()
        )
        if change is not None and self.project is not None:
            notice = Notice(
                change.incident_id,
                "resolved",
                suite_id,
                CONFIG_PROBLEM,
                (),
                "the suite file is valid again",
                change.event_id,
            )
            Escalation(self.project, self.store, self.slack, self.clock).announce([notice])

    # -- endpoints ---------------------------------------------------------------------------

    def _act(self, payload: Mapping[str, Any]) -> None:
        if self.actions is None:
            return
        with self._cycle_lock:
            self.actions.handle(payload)

    def _health(self) -> tuple[int, str, str]:
        return health(
            self.store,
            role="leader" if self._leading else "standby",
            scheduler="running" if self.scheduler.running and self._leading else "standby",
            scheduler_ok=not self._leading or self.scheduler.running,
            suites=len(self.project.suites) if self.project else 0,
        )

    def _metrics(self) -> tuple[int, str, str]:
        text = self.metrics.render(self.store, self._leading, self.slack, now=self.clock())
        return 200, METRICS_TYPE, text


def health(
    store: Store, *, role: str, scheduler: str, suites: int, scheduler_ok: bool = True
) -> tuple[int, str, str]:
    """``/healthz``: this process's part and whether the state store answers, as JSON;
    503 when unhealthy (the store unreachable, or a leader whose scheduler stopped)."""
    import json

    try:
        store.ping()
        store_ok = True
    except DqAgentError:
        store_ok = False
    healthy = store_ok and scheduler_ok
    doc = {
        "status": "ok" if healthy else "unhealthy",
        "role": role,
        "scheduler": scheduler,
        "store": "ok" if store_ok else "unreachable",
        "suites": suites,
    }
    return (200 if healthy else 503), "application/json", json.dumps(doc)
