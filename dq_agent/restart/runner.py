"""Restarting pipelines once a suite is green again, then verifying what they feed.

A suite with ``restart:`` does not close its incidents when its checks pass again: they are
held (``verifying``) while each target is started once for that recovery (the restart's key
is unique), polled until done, and the suites under ``verify:`` pass. Only then are the
incidents resolved. A pipeline run that fails keeps them open and escalates.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import timedelta
from typing import Any

from dq_agent.config.loader import Project
from dq_agent.config.models import (
    AirflowAssetRestart,
    AirflowConnector,
    AirflowRestart,
    CommandRestart,
    DagsterConnector,
    DagsterRestart,
    DbtCloudConnector,
    DbtCloudRestart,
    PrefectConnector,
    PrefectRestart,
    Suite,
    WebhookConnector,
    WebhookRestart,
)
from dq_agent.engine import RunOptions, run_checks
from dq_agent.errors import DqAgentError
from dq_agent.escalate.incidents import Notice
from dq_agent.restart.base import PipelineRun, RestartError, RestartTarget
from dq_agent.results import SuiteResult
from dq_agent.store import Store
from dq_agent.store.models import Restart

# A transient failure to start waits this long before the next try, then gives up.
_BACKOFF = (timedelta(minutes=1), timedelta(minutes=5), timedelta(minutes=15))
_MAX_ATTEMPTS = 5
# A run not finished this long after it started is given up on (a DAG the orchestrator never
# starts, a job stuck in its queue): its incidents go up their chains as for a failed run.
LONGEST_RUN = timedelta(hours=12)
# How often a blocking target (a local command) is polled while the agent waits for it.
_COMMAND_POLL_S = 0.05


def target_for(project: Project, suite: Suite, index: int) -> RestartTarget:
    """The restart target for entry ``index`` of the suite's ``restart:`` list (started by
    the broker, when there is one: it holds the pipelines' credentials)."""
    args = suite.restart[index].args
    if project.settings.broker is not None:
        from dq_agent.broker.client import BrokerClient, BrokeredTarget

        client = BrokerClient.of(project)
        return BrokeredTarget(client, suite.suite, index, suite.restart[index].label)
    if isinstance(args, CommandRestart):
        from dq_agent.restart.command import CommandTarget

        return CommandTarget(args, root=project.root)
    connector = project.connectors.get(args.connector)
    if isinstance(args, AirflowRestart) and isinstance(connector, AirflowConnector):
        from dq_agent.restart.airflow import AirflowTarget

        return AirflowTarget(connector, args)
    if isinstance(args, AirflowAssetRestart) and isinstance(connector, AirflowConnector):
        from dq_agent.restart.airflow import AirflowAssetTarget

        return AirflowAssetTarget(connector, args)
    if isinstance(args, DbtCloudRestart) and isinstance(connector, DbtCloudConnector):
        from dq_agent.restart.dbt_cloud import DbtCloudTarget

        return DbtCloudTarget(connector, args)
    if isinstance(args, WebhookRestart) and isinstance(connector, WebhookConnector):
        from dq_agent.restart.webhook import WebhookTarget

        return WebhookTarget(args.connector, connector, args)
    if isinstance(args, PrefectRestart) and isinstance(connector, PrefectConnector):
        from dq_agent.restart.prefect import PrefectTarget

        return PrefectTarget(connector, args, suite=suite.suite)
    if isinstance(args, DagsterRestart) and isinstance(connector, DagsterConnector):
        from dq_agent.restart.dagster import DagsterTarget

        return DagsterTarget(connector, args, suite=suite.suite)
    raise DqAgentError(f"restart {index} of suite {suite.suite}: connector {args.connector!r}")


TargetFactory = Callable[[Project, Suite, int], RestartTarget]


class Restarts:
    """Plans restarts for suites that are green again, and moves them along each cycle."""

    def __init__(
        self,
        project: Project,
        store: Store,
        options: RunOptions,
        *,
        targets: TargetFactory = target_for,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.project = project
        self.store = store
        self.options = options
        self._targets = targets
        self._sleep = sleep
        # Targets that started a run, by restart key: a local command is polled by the
        # instance that started it.
        self._live: dict[str, RestartTarget] = {}

    def plan(self, results: Sequence[SuiteResult]) -> None:
        """Record the restarts of each suite whose checks all pass again, once per recovery."""
        now = self.options.clock()
        for result in results:
            suite = self.project.suites.get(result.suite)
            if suite is None or not suite.restart or result.status in ("fail", "error"):
                continue
            held = self._held(suite.suite)
            if not held:
                continue
            recovery = max(event_id for _, event_id in held)
            batch = f"{suite.suite}:{recovery}"
            self.store.restarts_add(
                [
                    {
                        "key": f"{batch}:{index}",
                        "batch": batch,
                        "suite": suite.suite,
                        "target": index,
                        "label": spec.label,
                        "incidents": [incident_id for incident_id, _ in held],
                    }
                    for index, spec in enumerate(suite.restart)
                ],
                at=now,
            )

    def _held(self, suite: str) -> list[tuple[int, int]]:
        """Incidents of ``suite`` waiting for a restart: (incident id, its recovery event id)."""
        held = []
        for incident in self.store.incidents(active=True):
            if incident["suite"] != suite or incident["status"] != "verifying":
                continue
            recovered = [e for e in incident["events"] if e["event"] == "recovered"]
            if recovered:
                held.append((incident["id"], recovered[-1]["id"]))
        return held

    # -- moving along ----------------------------------------------------------------------------

    def advance(self) -> list[Notice]:
        """Start what is due, poll what runs, verify what finished; what people should hear."""
        notices: list[Notice] = []
        now = self.options.clock()
        for row in self.store.restarts(states=["pending"]):
            if row.next_try_at <= now:
                notices += self._start(row)
        for row in self.store.restarts(states=["queued", "running"]):
            notices += self._poll(row)
        notices += self._verify()
        return notices

    def _target(self, row: Restart) -> RestartTarget | None:
        if row.key in self._live:
            return self._live[row.key]
        suite = self.project.suites.get(row.suite)
        if suite is None or row.target >= len(suite.restart):
            return None
        return self._targets(self.project, suite, row.target)

    def _start(self, row: Restart) -> list[Notice]:
        now = self.options.clock()
        target = self._target(row)
        if target is None:
            self.store.restart_update(row.id, state="cancelled", detail="no longer configured")
            return []
        try:
            run = target.start(row.key)
        except RestartError as exc:
            attempts = row.attempts + 1
            if exc.transient and attempts < _MAX_ATTEMPTS:
                wait = _BACKOFF[min(attempts, len(_BACKOFF)) - 1]
                self.store.restart_update(
                    row.id, attempts=attempts, next_try_at=now + wait, detail=str(exc)
                )
                return []
            self.store.restart_update(
                row.id, state="failed", attempts=attempts, detail=str(exc), finished_at=now
            )
            return self._failed(row, str(exc))
        self._live[row.key] = target
        self.store.restart_update(
            row.id,
            state=run.state,
            run_id=run.run_id,
            url=run.url,
            detail=run.detail,
            attempts=row.attempts + 1,
            started_at=now,
        )
        told = self._tell(row, "restarted", f"{row.label}: run {run.run_id} {run.state}")
        if getattr(target, "blocking", False):
            run = self._wait(target, run)
        return told + self._moved(row, run)

    def _wait(self, target: RestartTarget, run: PipelineRun) -> PipelineRun:
        """A local command runs here: wait for it (its own timeout bounds the wait)."""
        while not run.done:
            self._sleep(_COMMAND_POLL_S)
            run = target.poll(run)
        return run

    def close(self) -> None:
        """Release what the targets hold (HTTP connections)."""
        for target in self._live.values():
            close = getattr(target, "close", None)
            if close is not None:
                close()
        self._live.clear()

    def _poll(self, row: Restart) -> list[Notice]:
        target = self._target(row)
        if target is not None:
            self._live[row.key] = target
        if target is None:
            self.store.restart_update(row.id, state="cancelled", detail="no longer configured")
            return []
        current = PipelineRun(str(row.run_id), row.state, row.detail, row.url)  # type: ignore[arg-type]
        try:
            run = target.poll(current)
        except RestartError as exc:
            if not exc.transient:
                run = current.moved("failed", str(exc))
            elif not self._overdue(row):
                return []  # asked again next cycle
            else:
                run = current
        if not run.done and self._overdue(row):
            hours = LONGEST_RUN.total_seconds() / 3600
            why = f"still {run.state} {hours:g} hours after it started"
            run = run.moved("failed", f"{why} ({run.detail})" if run.detail else why)
        return self._moved(row, run)

    def _overdue(self, row: Restart) -> bool:
        started = row.started_at
        return started is not None and self.options.clock() - started > LONGEST_RUN

    def _moved(self, row: Restart, run: PipelineRun) -> list[Notice]:
        now = self.options.clock()
        if run.state == row.state and not run.done:
            return []
        finished = now if run.done else None
        self.store.restart_update(
            row.id, state=run.state, detail=run.detail, url=run.url, finished_at=finished
        )
        if run.state == "failed":
            return self._failed(row, run.detail or "the run failed")
        if run.state == "success":
            return self._tell(row, "restart_succeeded", f"{row.label}: run {run.run_id} succeeded")
        return []

    def _failed(self, row: Restart, why: str) -> list[Notice]:
        """The pipeline did not run: the incidents stay open and go one step up the chain."""
        notices = []
        now = self.options.clock()
        for incident in self._waiting(row):
            incident_id = incident["id"]
            # Open again: a person's "I fixed it" starts the next recovery and restart.
            detail = f"{row.label} failed: {why}"
            change = self.store.set_incident_status(
                incident_id, "open", at=now, by="agent", detail=detail
            )
            notices.append(_notice(incident, "restart_failed", detail, change.event_id))
            chain, level = incident["chain"], incident["level"]
            if level + 1 < len(chain):
                detail = f"the pipeline restart failed: telling {', '.join(chain[level + 1])}"
                change = self.store.nudged(
                    incident_id, at=now, level=level + 1, nudges=0, event="escalated", detail=detail
                )
                notices.append(
                    _notice(incident, "escalated", detail, change.event_id, chain[level + 1])
                )
        return notices

    def _verify(self) -> list[Notice]:
        """Batches whose runs all succeeded: check the downstream suites, then resolve."""
        notices: list[Notice] = []
        batches: dict[str, list[Restart]] = {}
        for row in self.store.restarts(states=["pending", "queued", "running", "success"]):
            batches.setdefault(row.batch, []).append(row)
        for rows in batches.values():
            if any(r.state != "success" for r in rows):
                continue
            suite = self.project.suites.get(rows[0].suite)
            verify = [v for v in (suite.verify if suite else ()) if v in self.project.suites]
            failing: list[SuiteResult] = []
            if verify:
                results = run_checks(
                    self.project, verify, store=self.store, options=self.options, command="verify"
                )
                failing = [r for r in results if r.status in ("fail", "error")]
            if failing:
                detail = "waiting for " + "; ".join(f"{r.suite}: {_reason(r)}" for r in failing)
                if rows[0].detail != detail:  # say it once, not every cycle
                    for row in rows:
                        self.store.restart_update(row.id, detail=detail)
                    notices += self._tell(rows[0], "verifying", detail)
                continue
            for row in rows:
                self.store.restart_update(row.id, state="verified")
            labels = ", ".join(r.label for r in rows)
            checked = (
                f"; {', '.join(verify)} pass{'es' if len(verify) == 1 else ''}" if verify else ""
            )
            notices += self._resolve(rows[0], f"{labels} ran{checked}")
        return notices

    def _resolve(self, row: Restart, detail: str) -> list[Notice]:
        notices = []
        now = self.options.clock()
        for incident in self._waiting(row):
            if incident["status"] != "verifying":
                continue
            change = self.store.set_incident_status(
                incident["id"], "resolved", at=now, by="agent", detail=detail
            )
            notices.append(_notice(incident, "resolved", detail, change.event_id))
        return notices

    def _tell(self, row: Restart, event: str, detail: str) -> list[Notice]:
        notices = []
        now = self.options.clock()
        for incident in self._waiting(row):
            change = self.store.note_incident(
                incident["id"], event, at=now, by="agent", detail=detail
            )
            notices.append(_notice(incident, event, detail, change.event_id))
        return notices

    def _waiting(self, row: Restart) -> Iterator[dict[str, Any]]:
        """The incidents a restart is for that are not resolved yet."""
        for incident_id in row.incidents:
            incident = self.store.incident(incident_id, events=False)
            if incident is not None and incident["status"] != "resolved":
                yield incident


def _notice(
    incident: Mapping[str, Any],
    event: str,
    detail: str,
    event_id: int,
    owners: Sequence[str] | None = None,
) -> Notice:
    return Notice(
        incident["id"],
        event,
        incident["suite"],
        incident["check"],
        tuple(owners if owners is not None else incident["owners"]),
        detail,
        event_id,
    )


def _reason(result: SuiteResult) -> str:
    if result.error:
        return result.error
    failed = [c for c in result.checks if c.status in ("fail", "error")]
    return "; ".join(f"{c.name}: {c.message}" for c in failed) or result.status
