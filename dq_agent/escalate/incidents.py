"""Turn a run's results into incidents: one per (suite, check, dataset) problem.

Repeated failures update the open incident instead of opening new ones; a check that passes
again resolves it; a resolved one that fails again re-opens with its history.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from dq_agent.config.loader import Project
from dq_agent.config.models import GSheetsSourceSpec, SalesforceSourceSpec, Suite
from dq_agent.remedy.apply import Outcome
from dq_agent.results import SuiteResult
from dq_agent.store import Store

SOURCE_PROBLEM = "(source)"


@dataclass(frozen=True)
class Notice:
    """Something people should hear about (until Slack is configured: the terminal)."""

    incident_id: int
    event: str  # opened | reopened | failed_again | resolved
    suite: str
    check: str
    owners: tuple[str, ...]
    summary: str

    def __str__(self) -> str:
        who = ", ".join(self.owners) or "no owner set"
        where = f"{self.suite} / {self.check}"
        return f"incident #{self.incident_id} {self.event} → {who}: {where}: {self.summary}"


def dataset_of(suite: Suite) -> str:
    """What the suite reads, as a person names it."""
    source = suite.source
    if isinstance(source, SalesforceSourceSpec):
        return f"{source.connector}/{source.object}"
    if isinstance(source, GSheetsSourceSpec):
        return f"{source.connector}/{source.worksheet}"
    return f"{source.connector}/{source.table or 'query'}"


def owners_of(suite: Suite, check: str) -> tuple[str, ...]:
    """The check's owner, else the suite's."""
    for spec in suite.checks:
        if spec.name == check and spec.owner:
            return spec.owner
    return suite.owner


def track(
    project: Project,
    store: Store,
    results: Sequence[SuiteResult],
    outcomes: Sequence[Outcome],
    at: datetime,
) -> list[Notice]:
    """Open, update or resolve incidents from one run; what people should hear about."""
    fixed = {
        (o.change.suite, o.change.check, tuple(sorted(o.change.key.items())), o.change.column)
        for o in outcomes
        if o.status == "applied"
    }
    notices: list[Notice] = []
    for result in results:
        suite = project.suites.get(result.suite)
        if suite is None:
            continue
        dataset = dataset_of(suite)
        if result.status == "error" and result.error is not None:
            notices += _problem(store, suite, SOURCE_PROBLEM, dataset, result.error, at)
            continue
        store.problems_gone(suite=suite.suite, check=SOURCE_PROBLEM, dataset=dataset, at=at)
        for check in result.checks:
            corrected = check.findings and all(
                (suite.suite, check.name, tuple(sorted(f.key.items())), f.column) in fixed
                for f in check.findings
            )
            if check.status in ("fail", "error") and not corrected:
                notices += _problem(store, suite, check.name, dataset, check.message, at)
            elif check.status == "pass" or corrected:
                resolved = store.problems_gone(
                    suite=suite.suite, check=check.name, dataset=dataset, at=at
                )
                if resolved is not None:
                    notices.append(
                        Notice(
                            resolved,
                            "resolved",
                            suite.suite,
                            check.name,
                            owners_of(suite, check.name),
                            "the check passes again",
                        )
                    )
    return notices


def _problem(
    store: Store, suite: Suite, check: str, dataset: str, summary: str, at: datetime
) -> list[Notice]:
    owners = owners_of(suite, check)
    incident_id, event = store.record_problem(
        suite=suite.suite, check=check, dataset=dataset, owners=owners, summary=summary, at=at
    )
    return [Notice(incident_id, event, suite.suite, check, owners, summary)]
