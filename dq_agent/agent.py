"""One agent cycle: check → correct what is clearly a slip → track incidents → tell people."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from dq_agent.config.loader import Project
from dq_agent.config.models import Suite
from dq_agent.engine import RunOptions, SuiteHook, run_checks
from dq_agent.errors import DqAgentError
from dq_agent.escalate.incidents import Notice, RecordOwners, track
from dq_agent.escalate.notify import Delivery, Escalation
from dq_agent.escalate.slack import Slack, SlackApi
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
    slack: Slack | None = None,
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
    if project.sealed:
        acted = _through_broker(project, suite_ids, store, options, dry_run, progress)
    else:

        def run(hook: SuiteHook) -> list[SuiteResult]:
            return run_checks(
                project,
                suite_ids,
                store=store,
                options=options,
                progress=progress,
                command="run",
                hook=hook,
            )

        acted = at_sources(project, suite_ids, store, options, dry_run=dry_run, env=env, run=run)
    if dry_run:
        return Cycle(acted.results, acted.outcomes, acted.settled.notes, []), [], acted.records
    now = options.clock()
    notices = track(project, store, acted.results, acted.outcomes, now, acted.records)
    if project.settings.llm is not None:
        _review(project, store, options, notices, env)
    assert restarts is not None
    restarts.plan(acted.results)
    cycle = Cycle(acted.results, acted.outcomes, acted.settled.notes, notices)
    return cycle, [*acted.settled.written, *acted.outcomes], acted.records


@dataclass
class Acted:
    """What a cycle saw and did at its suites' sources: their results, the corrections a
    crash had interrupted (settled), those made or proposed now, and the records' owners."""

    results: list[SuiteResult] = field(default_factory=list)
    settled: Settled = field(default_factory=Settled)
    outcomes: list[Outcome] = field(default_factory=list)
    records: RecordOwners = field(default_factory=RecordOwners)

    def to_json(self) -> dict[str, Any]:
        """As a broker that acted hands it over (one suite's)."""
        return {
            "results": [r.to_wire() for r in self.results],
            "settled": {
                "notes": self.settled.notes,
                "written": [o.to_json() for o in self.settled.written],
            },
            "outcomes": [o.to_json() for o in self.outcomes],
            "owners": [
                [suite, key, email] for (suite, key), email in self.records.by_record.items()
            ],
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Acted:
        settled = doc["settled"]
        return cls(
            results=[SuiteResult.from_wire(r) for r in doc["results"]],
            settled=Settled(
                list(settled["notes"]), [Outcome.from_json(o) for o in settled["written"]]
            ),
            outcomes=[Outcome.from_json(o) for o in doc["outcomes"]],
            records=RecordOwners({(suite, key): email for suite, key, email in doc["owners"]}),
        )

    def add(self, other: Acted) -> None:
        """Take in what was done at one more suite's source (but its results)."""
        self.settled.notes.extend(other.settled.notes)
        self.settled.written.extend(other.settled.written)
        self.outcomes += other.outcomes
        self.records.by_record.update(other.records.by_record)


def at_sources(
    project: Project,
    suite_ids: Sequence[str],
    store: Store,
    options: RunOptions,
    *,
    dry_run: bool,
    env: Mapping[str, str] | None,
    run: Callable[[SuiteHook], list[SuiteResult]],
) -> Acted:
    """Settle interrupted corrections, then ``run`` the suites with the hook that corrects
    (or proposes) within the guardrails and finds the records' owners while each suite's
    source is open: the agent's own work on a laptop, the broker's in production."""
    settled = Settled() if dry_run else settle(project, store, options, suite_ids)
    remedy = Remedy(project, store, options, dry_run=dry_run, env=env)
    records = RecordOwners()

    def hook(suite: Suite, source: Source, relation: Relation, result: SuiteResult) -> None:
        if not dry_run:
            records(suite, source, relation, result)
        remedy(suite, source, relation, result)

    results = run(hook)
    return Acted(results, settled, remedy.outcomes, records)


def _through_broker(
    project: Project,
    suite_ids: Sequence[str],
    store: Store,
    options: RunOptions,
    dry_run: bool,
    progress: Any,
) -> Acted:
    """Each suite run and acted on by the broker (it holds the sources' credentials); the
    agent records the results, and tells people."""
    from dq_agent.broker.client import BrokerClient

    client = BrokerClient.of(project, options.retry)
    acted = Acted()

    def remote(suite_id: str) -> SuiteResult:
        one = client.act(suite_id, dry_run=dry_run)
        acted.add(one)
        return one.results[0]

    acted.results = run_checks(
        project,
        suite_ids,
        store=store,
        options=options,
        progress=progress,
        command="run",
        remote=remote,
    )
    return acted


def tick(
    project: Project,
    store: Store,
    options: RunOptions,
    *,
    slack: Slack | None = None,
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
    slack: Slack | None,
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


def connect_slack(project: Project, store: Store | None = None) -> Slack | None:
    """The Slack client when ``slack:`` is configured, else None (people hear in the terminal).

    On a PostgreSQL state store, posts take their channel's turns from the store, so the
    replicas together keep to Slack's pace."""
    settings = project.settings.slack
    if settings is None:
        return None
    if project.sealed:  # the bot token is the broker's
        from dq_agent.broker.client import BrokerClient
        from dq_agent.broker.slack import BrokeredSlack

        return BrokeredSlack(BrokerClient.of(project))
    if store is not None and store.engine.dialect.name == "postgresql":
        from dq_agent.store.pacing import SharedPace

        return SlackApi(settings, pace=SharedPace(store))
    return SlackApi(settings)
