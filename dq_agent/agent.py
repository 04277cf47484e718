"""One agent cycle: check → correct what is clearly a slip → track incidents → tell people."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from dq_agent.config.loader import Project
from dq_agent.config.models import Suite
from dq_agent.engine import RunOptions, run_checks
from dq_agent.errors import DqAgentError
from dq_agent.escalate.incidents import Notice, RecordOwners, track
from dq_agent.escalate.notify import Delivery, Escalation
from dq_agent.escalate.slack import SlackApi
from dq_agent.remedy.apply import Outcome
from dq_agent.remedy.runner import Remedy, Settled, settle
from dq_agent.restart.runner import Restarts
from dq_agent.results import SuiteResult
from dq_agent.sources.base import Relation, Source
from dq_agent.store import Store
from dq_agent.store.locks import acting
from dq_agent.triage.llm import Reviewer

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Cycle:
    """What one agent cycle saw and did."""

    results: list[SuiteResult]
    outcomes: list[Outcome]
    settled: list[str]
    notices: list[Notice]
    delivery: Delivery = field(default_factory=Delivery)


def run_cycle(
    project: Project,
    suite_ids: Sequence[str],
    store: Store,
    options: RunOptions,
    *,
    dry_run: bool = False,
    env: Mapping[str, str] | None = None,
    progress: Any = None,
    slack: SlackApi | None = None,
    restarts: Restarts | None = None,
) -> Cycle:
    """Settle interrupted corrections, check, correct, track incidents, then tell people.

    Suites green again restart their pipelines (``restarts`` keeps the targets a long-running
    caller polls across cycles). Telling people: the events of this run, reminders that are
    due, and the daily digests go to the outbox, and whatever in the outbox is due is sent
    (with ``slack``; without it the caller prints the notices).

    A cycle that acts holds the state store's acting lock throughout: another process's
    cycle (a second ``run``, the daemon, a click) waits for it, then finds the work done.
    """
    if dry_run:
        return _cycle(project, suite_ids, store, options, True, env, progress, slack, restarts)
    with acting(project.state_url):
        return _cycle(project, suite_ids, store, options, False, env, progress, slack, restarts)


def _cycle(
    project: Project,
    suite_ids: Sequence[str],
    store: Store,
    options: RunOptions,
    dry_run: bool,
    env: Mapping[str, str] | None,
    progress: Any,
    slack: SlackApi | None,
    restarts: Restarts | None,
) -> Cycle:
    settled = Settled() if dry_run else settle(project, store, options)
    remedy = Remedy(project, store, options, dry_run=dry_run, env=env)
    records = RecordOwners()

    def hook(suite: Suite, source: Source, relation: Relation, result: SuiteResult) -> None:
        if not dry_run:
            records(suite, source, relation, result)
        remedy(suite, source, relation, result)

    results = run_checks(
        project,
        suite_ids,
        store=store,
        options=options,
        progress=progress,
        command="run",
        hook=hook,
    )
    if dry_run:
        return Cycle(results, remedy.outcomes, settled.notes, [])
    notices = track(project, store, results, remedy.outcomes, options.clock(), records)
    if project.settings.llm is not None:
        _review(project, store, options, notices, env)
    own = restarts is None
    restarts = restarts or Restarts(project, store, options)
    try:
        restarts.plan(results)
        written = [*settled.written, *remedy.outcomes]
        notices, delivery = _follow_up(
            project, store, options, slack, restarts, notices, written, records
        )
    finally:
        if own:  # a caller's (the daemon's) keeps its targets across cycles
            restarts.close()
    return Cycle(results, remedy.outcomes, settled.notes, notices, delivery)


def tick(
    project: Project,
    store: Store,
    options: RunOptions,
    *,
    slack: SlackApi | None = None,
    restarts: Restarts | None = None,
) -> Cycle:
    """Between scheduled runs: move restarts along, remind people, send what is due."""
    own = restarts is None
    restarts = restarts or Restarts(project, store, options)
    try:
        with acting(project.state_url):
            notices, delivery = _follow_up(project, store, options, slack, restarts, [], [], None)
    finally:
        if own:
            restarts.close()
    return Cycle([], [], [], notices, delivery)


def _follow_up(
    project: Project,
    store: Store,
    options: RunOptions,
    slack: SlackApi | None,
    restarts: Restarts,
    notices: list[Notice],
    outcomes: Sequence[Outcome],
    records: RecordOwners | None,
) -> tuple[list[Notice], Delivery]:
    notices = notices + restarts.advance()
    escalation = Escalation(project, store, slack, options.clock)
    notices += escalation.cadence()
    escalation.announce(notices)
    escalation.corrected(outcomes, records)
    escalation.digests()
    return notices, escalation.deliver()


def _review(
    project: Project,
    store: Store,
    options: RunOptions,
    notices: Sequence[Notice],
    env: Mapping[str, str] | None,
) -> None:
    """The optional LLM's look at new incidents the rules leave open; never fails the run."""
    escalation = Escalation(project, store, None, options.clock)
    try:
        reviewer = Reviewer(project, store, options.clock, env=env)
    except DqAgentError as exc:
        log.warning("the LLM review was skipped: %s", exc)
        return
    try:
        for note in reviewer.consider(notices, lambda i: bool(escalation.pending(i))):
            log.info("%s", note)
    except DqAgentError as exc:
        log.warning("the LLM review was skipped: %s", exc)
    finally:
        reviewer.close()


def connect_slack(project: Project) -> SlackApi | None:
    """The Slack client when ``slack:`` is configured, else None (people hear in the terminal)."""
    settings = project.settings.slack
    return SlackApi(settings) if settings is not None else None
