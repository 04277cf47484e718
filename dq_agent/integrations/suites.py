"""What each orchestrator integration does with a suite: refuse what no change in the data
will fix, and run it once as ``dq-agent check`` does."""

from __future__ import annotations

from collections.abc import Sequence

from dq_agent.config.loader import SETTINGS_FILE, Project
from dq_agent.engine import run_checks, select_suites, utc_now
from dq_agent.errors import DqAgentError
from dq_agent.results import SuiteResult
from dq_agent.store import Store


def refuse_invalid(project: Project, suite_ids: Sequence[str]) -> None:
    """Raise DqAgentError for what keeps the suites from running whatever the data: no
    project there, an invalid ``dq-agent.yml``, no such suite, an invalid suite."""
    issues = [i for i in project.issues if i.file == project.root or i.file.name == SETTINGS_FILE]
    if not issues:
        select_suites(project, list(suite_ids))
        issues = [i for suite_id in suite_ids for i in project.broken_suites.get(suite_id, ())]
    if issues:
        raise DqAgentError("invalid configuration: " + "; ".join(str(i) for i in issues))


def check_once(project: Project, suite_id: str) -> SuiteResult:
    """The suite's result as ``dq-agent check`` gets it, recorded in the project's state store
    (so baselines build up); a state store (or broker) that cannot be reached makes it
    ``error``, as an unreachable source does."""
    try:
        with Store.open(project.state_url) as store:
            [result] = run_checks(project, [suite_id], store=store)
    except DqAgentError as exc:
        return SuiteResult(suite_id, "error", utc_now(), 0.0, error=str(exc))
    return result
