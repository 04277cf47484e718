"""Turn a run's results into incidents: one per (suite, check, dataset) problem.

Repeated failures update the open incident instead of opening new ones; a check that passes
again resolves it; a resolved one that fails again re-opens with its history.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from dq_agent.config.loader import Project
from dq_agent.config.models import GSheetsSourceSpec, SalesforceSourceSpec, Suite
from dq_agent.errors import SourceError
from dq_agent.remedy.apply import Outcome
from dq_agent.results import CheckResult, Finding, SuiteResult
from dq_agent.sources.base import Relation, Source
from dq_agent.sources.salesforce import SalesforceSource
from dq_agent.store import Store
from dq_agent.triage import classify

SOURCE_PROBLEM = "(source)"


@dataclass(frozen=True)
class Notice:
    """Something people should hear about: printed, and with Slack configured, messaged."""

    incident_id: int
    # opened | reopened | failed_again | resolved | nudged | escalated, or a person's answer
    event: str
    suite: str
    check: str
    owners: tuple[str, ...]
    summary: str
    event_id: int = 0

    def __str__(self) -> str:
        who = ", ".join(self.owners) or "no owner set"
        where = f"{self.suite} / {self.check}"
        return f"incident #{self.incident_id} {self.event} → {who}: {where}: {self.summary}"


# Findings kept with an incident as its evidence (the check reports up to max_findings).
EVIDENCE_FINDINGS = 5


@dataclass
class RecordOwners:
    """Engine hook: who owns the records behind row-level findings, where the source says.

    Salesforce records carry an ``OwnerId``; its User's e-mail is who hears about the record
    first. Other sources do not know, and routing falls back to the check's owner.
    """

    by_record: dict[tuple[str, str], str] = field(default_factory=dict)

    def __call__(
        self, suite: Suite, source: Source, relation: Relation, result: SuiteResult
    ) -> None:
        if not isinstance(source, SalesforceSource):
            return
        ids = {
            str(f.key["Id"])
            for check in result.checks
            if check.status != "pass"
            for f in check.findings
            if "Id" in f.key
        }
        if not ids:
            return
        try:
            owners = source.record_owners(sorted(ids))
        except SourceError:
            return  # routing falls back to the check's owner; the run itself went fine
        for record_id, email in owners.items():
            self.by_record[(suite.suite, record_id)] = email

    def of(self, suite: str, key: Mapping[str, Any]) -> str | None:
        record_id = key.get("Id")
        return None if record_id is None else self.by_record.get((suite, str(record_id)))


def dataset_of(suite: Suite) -> str:
    """What the suite reads, as a person names it."""
    source = suite.source
    if isinstance(source, SalesforceSourceSpec):
        return f"{source.connector}/{source.object}"
    if isinstance(source, GSheetsSourceSpec):
        return f"{source.connector}/{source.worksheet}"
    return f"{source.connector}/{source.table or 'query'}"


def owners_of(
    suite: Suite, check: str, findings: Sequence[Finding] = (), records: RecordOwners | None = None
) -> tuple[str, ...]:
    """The records' owners for row-level findings when known, else the check's, else the suite's."""
    if records is not None:
        found = [records.of(suite.suite, f.key) for f in findings]
        known = tuple(dict.fromkeys(e for e in found if e))
        if known:
            return known
    for spec in suite.checks:
        if spec.name == check and spec.owner:
            return spec.owner
    return suite.owner


def chain_of(suite: Suite, owners: Sequence[str]) -> list[list[str]]:
    """Who hears about a problem, step by step: its owners, then the suite's escalation list."""
    told = {o.lower() for o in owners}
    chain = [list(owners)] if owners else []
    for person in suite.escalation:
        if person.lower() not in told:
            told.add(person.lower())
            chain.append([person])
    return chain


def track(
    project: Project,
    store: Store,
    results: Sequence[SuiteResult],
    outcomes: Sequence[Outcome],
    at: datetime,
    records: RecordOwners | None = None,
) -> list[Notice]:
    """Open, update or resolve incidents from one run; what people should hear about."""
    fixed = {
        (o.change.suite, o.change.check, tuple(sorted(o.change.key.items())), o.change.column)
        for o in outcomes
        if o.fixed
    }
    notices: list[Notice] = []
    for result in results:
        suite = project.suites.get(result.suite)
        if suite is None:
            continue
        dataset = dataset_of(suite)
        if result.status == "error" and result.error is not None:
            triage = classify(suite, result)
            if triage.may_pass and not _persists(store, project, suite, at):
                continue  # it often passes by itself: nobody hears until it persists
            evidence: dict[str, Any] = {"message": result.error, "triage": triage.to_json()}
            notices.append(
                _problem(store, suite, SOURCE_PROBLEM, "", dataset, evidence, suite.owner, at)
            )
            continue
        notices += _gone(store, suite, SOURCE_PROBLEM, dataset, at)
        empty = _emptied(result)
        schema, gone = _columns_gone(result)
        for check in result.checks:
            # The findings still wrong: not corrected, nor fixed by someone before our write.
            wrong = [
                i
                for i, f in enumerate(check.findings)
                if (suite.suite, check.name, tuple(sorted(f.key.items())), f.column) not in fixed
            ]
            corrected = bool(check.findings) and not wrong
            failed = check.status in ("fail", "error")
            if failed and empty is not None and check is not empty:
                continue  # a consequence of the empty source: told under its row count
            if failed and check.observed.get("missing_column") in gone:
                continue  # its column is gone: told under the schema check
            if failed and not corrected:
                # Only the owners of records still wrong hear: one whose record was corrected
                # has had the agent's word about it already.
                remaining = [check.findings[i] for i in wrong]
                owners = owners_of(suite, check.name, remaining, records)
                evidence = check.to_json()
                evidence["findings"] = [f.to_json() for f in remaining[:EVIDENCE_FINDINGS]]
                evidence["triage"] = classify(suite, result, check).to_json()
                if check is empty:
                    evidence["also"] = [
                        c.name
                        for c in result.checks
                        if c is not empty and c.status in ("fail", "error")
                    ]
                elif check is schema:
                    evidence["also"] = [
                        c.name for c in result.checks if c.observed.get("missing_column") in gone
                    ]
                notices.append(
                    _problem(store, suite, check.name, check.type, dataset, evidence, owners, at)
                )
            elif check.status == "pass" or corrected:
                notices += _gone(store, suite, check.name, dataset, at, corrected=bool(corrected))
    return notices


def _persists(store: Store, project: Project, suite: Suite, at: datetime) -> bool:
    """Whether the suite's source has failed long enough to tell people: ``notify_after``
    failing cycles in a row (this one included), or failing for that long."""
    wait = project.settings.source_errors.notify_after
    count, since = store.error_streak(suite.suite)
    if isinstance(wait, int):
        return count >= wait
    return since is not None and at - since >= wait


def _columns_gone(result: SuiteResult) -> tuple[CheckResult | None, set[str]]:
    """The failing schema check that reports columns missing, and those columns: the checks
    reading them are skipped, one problem with it."""
    for check in result.checks:
        if check.type == "schema" and check.status in ("fail", "error"):
            missing = check.observed.get("missing") or []
            if missing:
                return check, set(missing)
    return None, set()


def _emptied(result: SuiteResult) -> CheckResult | None:
    """The failing row count of an empty source: one problem, whatever else fails with it."""
    return next(
        (
            c
            for c in result.checks
            if c.type == "row_count"
            and c.status in ("fail", "error")
            and c.observed.get("row_count") == 0
        ),
        None,
    )


def _problem(
    store: Store,
    suite: Suite,
    check: str,
    check_type: str,
    dataset: str,
    evidence: dict[str, Any],
    owners: tuple[str, ...],
    at: datetime,
) -> Notice:
    summary = str(evidence.get("message", ""))
    change = store.record_problem(
        suite=suite.suite,
        check=check,
        dataset=dataset,
        owners=owners,
        summary=summary,
        at=at,
        check_type=check_type,
        evidence=evidence,
        chain=chain_of(suite, owners),
    )
    return Notice(
        change.incident_id, change.event, suite.suite, check, owners, summary, change.event_id
    )


def _gone(
    store: Store, suite: Suite, check: str, dataset: str, at: datetime, corrected: bool = False
) -> list[Notice]:
    # A suite that restarts pipelines holds its incidents until the restart is verified.
    hold = bool(suite.restart) and check != SOURCE_PROBLEM
    change = store.problems_gone(
        suite=suite.suite, check=check, dataset=dataset, at=at, hold=hold, corrected=corrected
    )
    if change is None:
        return []
    summary = "the check passes again"
    if change.event == "recovered":
        summary += f"; restarting {', '.join(r.label for r in suite.restart)} before closing"
    owners = owners_of(suite, check)
    return [
        Notice(
            change.incident_id, change.event, suite.suite, check, owners, summary, change.event_id
        )
    ]
