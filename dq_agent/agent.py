"""One agent cycle: check → correct what is clearly a slip → track incidents → tell people."""

from __future__ import annotations

import dataclasses
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
from dq_agent.store.locks import ACTING_WAIT_S, ActingBusy, acting
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
    follow_up_if_free: bool = False,
) -> Cycle:
    """Settle interrupted corrections, check, correct, track incidents, then tell people.

    Suites green again restart their pipelines (``restarts`` keeps the targets a long-running
    caller polls across cycles). Telling people: the events of this run, reminders that are
    due, and the daily digests go to the outbox, and whatever in the outbox is due is sent
    (with ``slack``; without it the caller prints the notices).

    What a cycle does to its suites (settling, correcting, tracking their incidents, planning
    their messages and restarts) holds those suites' acting locks: another process's cycle of
    the same suite (a second ``run``, a daemon replica, a click) waits for it, then finds the
    work done; cycles of other suites go on at once. The follow-up (starting restarts,
    reminders, digests) then holds the follow-up lock; with ``follow_up_if_free`` (a daemon
    replica) a cycle that finds another process following up leaves it to that one and to
    the next tick.
    """
    if dry_run:
        return _checked(project, suite_ids, store, options, True, env, progress, restarts)[0]
    own = restarts is None
    restarts = restarts or Restarts(project, store, options)
    try:
        with acting(project.state_url, suite_ids, pool=store.engine):
            cycle, written, records = _checked(
                project, suite_ids, store, options, False, env, progress, restarts
            )
            escalation = Escalation(project, store, slack, options.clock)
            escalation.announce(cycle.notices)
            escalation.corrected(written, records)
        later, delivery = _follow_up(project, store, options, slack, restarts, follow_up_if_free)
    finally:
        if own:  # a caller's (the daemon's) keeps its targets across cycles
            restarts.close()
    return dataclasses.replace(cycle, notices=cycle.notices + later, delivery=delivery)


def _checked(
    project: Project,
    suite_ids: Sequence[str],
    store: Store,
    options: RunOptions,
    dry_run: bool,
    env: Mapping[str, str] | None,
    progress: Any,
    restarts: Restarts | None,
) -> tuple[Cycle, list[Outcome], RecordOwners]:
    """The part of a cycle that belongs to its suites: what it saw, the corrections written
    (settled and new), and the records' owners."""
    settled = Settled() if dry_run else settle(project, store, options, suite_ids)
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
        return Cycle(results, remedy.outcomes, settled.notes, []), [], records
    notices = track(project, store, results, remedy.outcomes, options.clock(), records)
    if project.settings.llm is not None:
        _review(project, store, options, notices, env)
    assert restarts is not None
    restarts.plan(results)
    cycle = Cycle(results, remedy.outcomes, settled.notes, notices)
    return cycle, [*settled.written, *remedy.outcomes], records


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
        notices, delivery = _follow_up(project, store, options, slack, restarts, False)
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
    if_free: bool,
) -> tuple[list[Notice], Delivery]:
    """Start and follow restarts, remind people and write digests (under the follow-up lock;
    ``if_free``: not at all while another process holds it), then send what is due: each
    message is claimed before it is sent, so senders need no lock."""
    escalation = Escalation(project, store, slack, options.clock)
    notices: list[Notice] = []
    try:
        wait_s = 0.0 if if_free else ACTING_WAIT_S
        with acting(project.state_url, wait_s=wait_s, pool=store.engine):
            notices = restarts.advance()
            notices += escalation.cadence()
            escalation.announce(notices)
            escalation.digests()
    except ActingBusy:
        if not if_free:
            raise
        log.debug("another process is following up: leaving restarts and reminders to it")
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


def connect_slack(project: Project, store: Store | None = None) -> SlackApi | None:
    """The Slack client when ``slack:`` is configured, else None (people hear in the terminal).

    On a PostgreSQL state store, posts take their channel's turns from the store, so the
    replicas together keep to Slack's pace."""
    settings = project.settings.slack
    if settings is None:
        return None
    if store is not None and store.engine.dialect.name == "postgresql":
        from dq_agent.store.pacing import SharedPace

        return SlackApi(settings, pace=SharedPace(store))
    return SlackApi(settings)
