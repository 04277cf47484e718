"""One agent cycle: check → correct what is clearly a slip → track incidents for the rest."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from dq_agent.config.loader import Project
from dq_agent.engine import RunOptions, run_checks
from dq_agent.escalate.incidents import Notice, track
from dq_agent.remedy.apply import Outcome
from dq_agent.remedy.runner import Remedy, settle
from dq_agent.results import SuiteResult
from dq_agent.store import Store


@dataclass(frozen=True)
class Cycle:
    """What one agent cycle saw and did."""

    results: list[SuiteResult]
    outcomes: list[Outcome]
    settled: list[str]
    notices: list[Notice]


def run_cycle(
    project: Project,
    suite_ids: Sequence[str],
    store: Store,
    options: RunOptions,
    *,
    dry_run: bool = False,
    env: Mapping[str, str] | None = None,
    progress: Any = None,
) -> Cycle:
    """Settle interrupted corrections, check, correct, then open/update/resolve incidents."""
    settled = [] if dry_run else settle(project, store, options)
    remedy = Remedy(project, store, options, dry_run=dry_run, env=env)
    results = run_checks(
        project,
        suite_ids,
        store=store,
        options=options,
        progress=progress,
        command="run",
        hook=remedy,
    )
    notices = [] if dry_run else track(project, store, results, remedy.outcomes, options.clock())
    return Cycle(results, remedy.outcomes, settled, notices)
