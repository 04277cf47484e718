"""``dq-agent corrections``: list, show, approve, reject, revert and verify the ledger."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import click

from dq_agent import report
from dq_agent.cli.common import (
    EXIT_CANNOT_RUN,
    by_option,
    format_option,
    ledger,
    out_console,
    project_option,
)
from dq_agent.config import Project
from dq_agent.engine import (
    RunOptions,
    utc_now,
)
from dq_agent.errors import DqAgentError
from dq_agent.store import Store
from dq_agent.store.ledger import STATUS_AFTER

if TYPE_CHECKING:
    from dq_agent.remedy import Outcome


@click.group()
def corrections() -> None:
    """The corrections ledger: list, show, approve, reject, revert, verify."""


@corrections.command("list")
@project_option
@click.option("--suite", default=None, help="Only this suite's corrections.")
@click.option(
    "--status",
    type=click.Choice(sorted(set(STATUS_AFTER.values()))),
    default=None,
    help="Only the corrections in this state.",
)
@format_option
def corrections_list(project_dir: Path, suite: str | None, status: str | None, fmt: str) -> None:
    """Every correction, newest first."""
    with ledger(project_dir) as (_, store):
        found = store.corrections(suite=suite, status=status)
    if fmt == "json":
        click.echo(json.dumps([c.to_json() for c in found], indent=2))
    else:
        report.print_corrections(out_console(), found)


@corrections.command("show")
@click.argument("correction_id", type=int)
@project_option
@format_option
def corrections_show(correction_id: int, project_dir: Path, fmt: str) -> None:
    """One correction with its evidence and every event in its ledger."""
    with ledger(project_dir) as (_, store):
        found = store.correction(correction_id)
    if found is None:
        click.echo(f"error: no correction {correction_id}", err=True)
        sys.exit(EXIT_CANNOT_RUN)
    if fmt == "json":
        click.echo(json.dumps(found.to_json(events=True), indent=2))
    else:
        report.print_correction(out_console(), found)


@corrections.command("revert")
@click.argument("correction_ids", metavar="ID...", type=int, nargs=-1, required=True)
@project_option
@by_option("An owner of the suite, or the owner of the record it changed.")
def corrections_revert(correction_ids: tuple[int, ...], project_dir: Path, by: str) -> None:
    """Put the old values back, compare-and-set (refused where they changed since).

    Several corrections of one Salesforce object or sheet are written back together
    (200 records a call)."""
    from dq_agent.agent import connect_slack
    from dq_agent.escalate.notify import Escalation
    from dq_agent.remedy import revert_corrections

    def undo(project: Project, store: Store, options: RunOptions) -> list[Outcome]:
        ids = list(dict.fromkeys(correction_ids))
        outcomes = revert_corrections(project, store, ids, by=by, options=options)
        # The owner told about a correction hears about its undo in the same thread.
        escalation = Escalation(project, store, connect_slack(project, store), options.clock)
        for correction_id, outcome in zip(ids, outcomes, strict=True):
            escalation.undone(correction_id, outcome, by)
        escalation.deliver()
        return outcomes

    _decide(project_dir, correction_ids, undo)


@corrections.command("approve")
@click.argument("correction_id", type=int)
@project_option
@by_option("An owner of the suite.")
def corrections_approve(correction_id: int, project_dir: Path, by: str) -> None:
    """Approve a proposed correction: verified on a copy, then written compare-and-set."""
    from dq_agent.remedy import approve_correction

    _decide(
        project_dir,
        [correction_id],
        lambda project, store, options: approve_correction(
            project, store, correction_id, by=by, options=options
        ),
    )


@corrections.command("reject")
@click.argument("correction_id", type=int)
@project_option
@by_option("An owner of the suite.")
def corrections_reject(correction_id: int, project_dir: Path, by: str) -> None:
    """Reject a proposed correction; nothing is written."""
    from dq_agent.remedy import reject_correction

    with ledger(project_dir) as (project, store):
        try:
            reject_correction(store, project, correction_id, by=by, clock=utc_now)
        except DqAgentError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(EXIT_CANNOT_RUN)
    click.echo(f"correction {correction_id}: rejected by {by}")


@corrections.command("verify")
@project_option
def corrections_verify(project_dir: Path) -> None:
    """Check the ledger's hash chain: any edited or deleted entry is reported."""
    with ledger(project_dir) as (_, store):
        problems = store.verify_ledger()
        entries = len(store.corrections())
    for problem in problems:
        click.echo(problem, err=True)
    if problems:
        sys.exit(EXIT_CANNOT_RUN)
    click.echo(f"ledger intact: {entries} correction{'s' if entries != 1 else ''}")


def _decide(
    project_dir: Path,
    correction_ids: Sequence[int],
    action: Callable[[Project, Store, RunOptions], Outcome | Sequence[Outcome]],
) -> None:
    """A person's decision on corrections, made while no other process acts on their
    suites."""
    from dq_agent.store.locks import acting

    with ledger(project_dir) as (project, store):
        try:
            found = (store.correction(i) for i in correction_ids)
            suites = {c.suite for c in found if c is not None}
            with acting(project.state_url, suites, pool=store.engine):
                done = action(project, store, RunOptions(clock=utc_now))
        except DqAgentError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(EXIT_CANNOT_RUN)
    outcomes = list(done) if isinstance(done, Sequence) else [done]
    for outcome in outcomes:
        click.echo(f"correction {outcome.correction_id}: {outcome.status}: {outcome.detail}")
    if any(o.status not in ("applied", "reverted", "unchanged") for o in outcomes):
        sys.exit(2)
