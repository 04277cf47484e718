"""The remedy step of a run: plan → guardrails → verify on a branch → write, per suite."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING

from dq_agent.checks.base import CheckContext
from dq_agent.config.loader import Project
from dq_agent.config.models import Suite
from dq_agent.config.statements import read_fix
from dq_agent.engine import RunOptions, context_for, run_checks
from dq_agent.errors import DqAgentError, LedgerConflict, SourceError
from dq_agent.remedy.apply import (
    Clock,
    Outcome,
    apply,
    apply_many,
    interrupted,
    propose,
    publish,
    reconcile,
    reconcile_rows,
    record_refused,
    refuse_conflict,
    revert,
    revert_many,
    revert_rows,
)
from dq_agent.remedy.branch import (
    BranchVerdict,
    got_worse,
    judge,
    verify_on_branch,
    verify_relation,
)
from dq_agent.remedy.fixes import Trigger, fix_change, fix_report, row_key, triggered
from dq_agent.remedy.guard import guard, switched_off
from dq_agent.remedy.plan import Change, plan
from dq_agent.results import CheckResult, SuiteResult, worst
from dq_agent.sources.base import (
    BatchWriting,
    Branching,
    Relation,
    Source,
    SourceBranch,
    WriteResult,
    same_value,
)
from dq_agent.sources.gsheets import WHOLE_SHEET, GSheetsSource
from dq_agent.sources.registry import opened
from dq_agent.sources.sql import SqlSource
from dq_agent.sources.sqlrows import RowsChanged, same_rows
from dq_agent.store import Store
from dq_agent.store.ledger import RUNBOOK_FIX, Correction

if TYPE_CHECKING:
    from dq_agent.broker.client import BrokerClient


@dataclass
class Remedy:
    """Called by the engine with each suite's result while its source is open."""

    project: Project
    store: Store
    options: RunOptions
    dry_run: bool = False
    env: Mapping[str, str] | None = None
    outcomes: list[Outcome] = field(default_factory=list)

    def __call__(
        self, suite: Suite, source: Source, relation: Relation, result: SuiteResult
    ) -> None:
        if result.status == "error":
            return
        if isinstance(source, GSheetsSource):
            self._snapshot_or_restore(suite, source, relation)
        self._corrections(suite, source, relation, result)
        if suite.fixes:
            self._fixes(suite, source, relation, result)

    def _corrections(
        self, suite: Suite, source: Source, relation: Relation, result: SuiteResult
    ) -> None:
        """The fat-finger findings: written within the guardrails, or proposed."""
        changes = plan(suite, result, relation.label)
        if not changes:
            return
        auto = [c for c in changes if c.action == "auto_correct"]
        proposals = [c for c in changes if c.action == "propose"]
        kind = self.project.connectors[suite.source.connector].type
        auto = self._not_undone(auto)
        verdict = guard(auto, suite, self.project.settings.corrections, kind, env=self.env)
        if self.dry_run:
            self.outcomes += [
                Outcome(c, "planned", "would be verified and written") for c in verdict.allowed
            ]
            self.outcomes += [Outcome(c, "refused", reason) for c, reason in verdict.refused]
            self.outcomes += [
                Outcome(c, "proposed", "would be proposed to the owner") for c in proposals
            ]
            return
        at = self.options.clock()
        self.outcomes += [
            record_refused(self.store, c, reason, at) for c, reason in verdict.refused
        ]
        self.outcomes += [propose(self.store, c, at) for c in proposals]
        if verdict.allowed:
            self._write(suite, source, relation, result, verdict.allowed, decided_by="rule")

    def _not_undone(self, changes: list[Change]) -> list[Change]:
        """A change a person undid is theirs to decide, never rewritten: while the record
        holds the value they put back, that value is what they meant (nobody is asked again);
        once it holds another, the change is proposed to them."""
        if not changes:
            return changes
        undone = {
            (c.check, tuple(sorted(c.key.items())), c.column, repr(c.new)): c
            for c in self.store.corrections(suite=changes[0].suite, status="reverted")
        }
        kept = []
        for change in changes:
            key = (change.check, tuple(sorted(change.key.items())), change.column, repr(change.new))
            if key in undone and same_value(change.old, undone[key].old):
                by = next(
                    (e.decided_by for e in reversed(undone[key].events) if e.event == "reverted"),
                    "",
                )
                detail = (
                    f"kept as {by or 'a person'} put it back (undo of correction "
                    f"{undone[key].id}): not a slip to them"
                )
                self.outcomes.append(Outcome(change, "kept", detail, undone[key].id))
            elif key in undone:
                change = dataclasses.replace(
                    change,
                    action="propose",
                    reason=f"{change.reason}; correction {undone[key].id} of the same value "
                    "was undone, so a person decides",
                )
                self.outcomes.append(propose(self.store, change, self.options.clock()))
            else:
                kept.append(change)
        return kept

    def _snapshot_or_restore(self, suite: Suite, source: GSheetsSource, relation: Relation) -> None:
        """Keep what was read; if the worksheet is now empty, propose the last good copy."""
        grid = source.last_grid
        rows = sum(1 for row in grid[1:] if any(cell not in ("", None) for cell in row))
        limits = self.project.settings.snapshots
        at = self.options.clock()
        if rows:
            if not self.dry_run and limits.keep and rows <= limits.max_rows:
                self.store.save_snapshot(suite.suite, grid, row_count=rows, at=at, keep=limits.keep)
            return
        good = self.store.last_good_snapshot(suite.suite)
        if good is None:
            return
        taken_at, content = good
        when = taken_at.strftime("%Y-%m-%d %H:%M UTC")
        change = Change(
            suite=suite.suite,
            check="restore",
            connector=suite.source.connector,
            object=relation.label,
            key={"worksheet": relation.label},
            column=WHOLE_SHEET,
            old=[list(row) for row in grid],
            new=content,
            evidence=(
                f"{relation.label} has no rows now",
                f"the snapshot from {when} has {len(content) - 1} rows",
            ),
            reason=f"restore the last good snapshot from {when}",
            confidence=None,
            action="propose",
        )
        if self.dry_run:
            self.outcomes.append(Outcome(change, "proposed", f"would propose: {change.reason}"))
        else:
            self.outcomes.append(propose(self.store, change, at, detail=change.reason))

    def _write(
        self,
        suite: Suite,
        source: Source,
        relation: Relation,
        result: SuiteResult,
        changes: Sequence[Change],
        *,
        decided_by: str,
        correction_id: int | None = None,
    ) -> None:
        if isinstance(source, Branching):
            self._publish_on_branch(
                suite, source, result, changes, decided_by=decided_by, correction_id=correction_id
            )
            return
        ctx = context_for(suite, self.store, self.options, self.options.clock())
        branch = verify_on_branch(suite, relation, changes, ctx, result.checks)
        if not branch.ok:
            for change in changes:
                self.outcomes.append(
                    propose(
                        self.store,
                        change,
                        self.options.clock(),
                        detail=f"the branch check failed: {branch.detail}",
                        status="refused",
                    )
                )
            return
        marker = f"{result.started_at.isoformat()}/{decided_by}"
        if isinstance(source, BatchWriting) and correction_id is None and len(changes) > 1:
            # One collection call per 200 records instead of a read, a write and a read each.
            self.outcomes += apply_many(
                self.store,
                source,
                changes,
                decided_by=decided_by,
                marker=marker,
                clock=self.options.clock,
            )
            return
        for change in changes:
            self.outcomes.append(
                apply(
                    self.store,
                    source,
                    change,
                    decided_by=decided_by,
                    marker=marker,
                    clock=self.options.clock,
                    correction_id=correction_id,
                )
            )

    def _publish_on_branch(
        self,
        suite: Suite,
        source: Branching,
        result: SuiteResult,
        changes: Sequence[Change],
        *,
        decided_by: str,
        correction_id: int | None,
    ) -> None:
        """Changes on a branch of the source (a SQL transaction, an Iceberg branch): written
        compare-and-set, the suite's checks run on the branch, then published only if they
        pass; otherwise discarded."""
        clock = self.options.clock
        marker = f"{result.started_at.isoformat()}/{decided_by}"
        ctx = context_for(suite, self.store, self.options, clock())
        try:
            with source.branch(**_waits(self.project)) as branch:
                downstream = self._before_change(suite, branch)
                for change in changes:
                    written = branch.write(change.key, change.column, change.old, change.new)
                    if written.status != "written":  # the whole branch is dropped
                        self.outcomes.append(
                            refuse_conflict(
                                self.store,
                                change,
                                written,
                                decided_by=decided_by,
                                marker=marker,
                                clock=clock,
                                correction_id=correction_id,
                            )
                        )
                        return
                verdict = verify_relation(suite, branch.relation, changes, ctx, result.checks)
                if verdict.ok:
                    _, worse = _verify_downstream(downstream)
                    if worse:
                        verdict = BranchVerdict(False, "; ".join(worse))
                if not verdict.ok:
                    detail = _failed_on(branch, verdict.detail)
                    self.outcomes += [
                        propose(self.store, c, clock(), detail=detail, status="refused")
                        for c in changes
                    ]
                    return
                self.outcomes += publish(
                    self.store,
                    branch,
                    changes,
                    decided_by=decided_by,
                    marker=marker,
                    clock=clock,
                    correction_id=correction_id,
                )
        except SourceError as exc:  # before anything was intended: nothing was written
            self.outcomes += [
                Outcome(c, "failed", f"not written: {exc}", correction_id) for c in changes
            ]

    def _fixes(self, suite: Suite, source: Source, relation: Relation, result: SuiteResult) -> None:
        """The suite's runbook fixes its failures call for, each tried on a branch once per
        failure: published when ``approve: auto`` and the guardrails allow, else proposed
        to the owner with the branch's report."""
        for trigger in triggered(suite, result):
            if self._decided(suite, trigger):
                continue
            if self.dry_run:
                change = fix_change(suite, relation, trigger, RowsChanged([], []), ())
                detail = f"would run {trigger.fix.name} on a branch"
                self.outcomes.append(Outcome(change, "planned", detail))
                continue
            undone = self._same_fix(suite, trigger, "reverted")
            self.run_fix(
                suite,
                source,
                relation,
                result,
                trigger,
                undone=undone[0].id if undone else None,
            )

    def _decided(self, suite: Suite, trigger: Trigger) -> bool:
        """A fix for this failure is already waiting for its owner, or was published."""
        return bool(
            self._same_fix(suite, trigger, "pending") or self._same_fix(suite, trigger, "applied")
        )

    def _same_fix(self, suite: Suite, trigger: Trigger, status: str) -> list[Correction]:
        """The corrections of this fix for this failure in ``status``."""
        return [
            c
            for c in self.store.corrections(suite=suite.suite, status=status)
            if c.column == RUNBOOK_FIX
            and c.check == trigger.fix.when.check
            and c.key == trigger.key
        ]

    def run_fix(
        self,
        suite: Suite,
        source: Source,
        relation: Relation,
        result: SuiteResult,
        trigger: Trigger,
        *,
        approval: tuple[Correction, str] | None = None,
        undone: int | None = None,
    ) -> None:
        """Run a fix on a branch and verify it there; then publish it (``approve: auto``
        within the guardrails, or an owner's ``approval`` of the proposal with the rows it
        was verified on), propose it, or drop the branch saying why. ``undone``: a
        correction of the same fix a person undid; it is then theirs to decide."""
        fix, clock = trigger.fix, self.options.clock
        empty = fix_change(suite, relation, trigger, RowsChanged([], []), ())
        if not isinstance(source, SqlSource) or relation.table is None:
            self.outcomes.append(Outcome(empty, "refused", "runbook fixes run on SQL tables only"))
            return
        kind = self.project.connectors[suite.source.connector].type
        off = switched_off(suite, self.project.settings.corrections, kind, env=self.env)
        correction_id = approval[0].id if approval else None
        if approval and off:
            self.outcomes.append(Outcome(empty, "refused", off, correction_id))
            return
        statement = read_fix(fix.sql, source.backend, relation.table, relation.schema)
        ctx = context_for(suite, self.store, self.options, clock())
        marker = f"{result.started_at.isoformat()}/fix"
        try:
            with source.branch(**_waits(self.project)) as branch:
                downstream = self._before_change(suite, branch)
                key = row_key(suite, relation)
                rows = branch.run_fix(statement, fix.sql, trigger.params, key, fix.max_rows)
                after = judge(suite, branch.relation, ctx)
                statuses, worse = _verify_downstream(downstream)
                report, problems = fix_report(fix, rows, result.checks, after, statuses)
                problems += worse
                change = fix_change(suite, relation, trigger, rows, report)
                shown = approval[0].old or [] if approval else []
                if approval and not problems and not same_rows(rows.before, shown):
                    problems = [
                        "the rows changed since the fix was verified; it will be "
                        "verified again on the next run"
                    ]
                if problems:
                    detail = _failed_on(branch, "; ".join(problems))
                    if approval is None:
                        self.outcomes.append(Outcome(change, "refused", detail))
                    else:  # the proposal is settled: the next failing run proposes afresh
                        self._refuse_approval(change, approval, detail, marker)
                    return
                if approval is not None:
                    decided_by = approval[1]
                elif fix.approve == "auto" and off is None and undone is None:
                    decided_by = "rule"
                else:
                    why = "verified on a branch"
                    if off:
                        why = f"not applied automatically: {off}"
                    elif fix.approve == "auto" and undone is not None:
                        why += (
                            f"; correction {undone} of the same fix was undone, so a person decides"
                        )
                    self.outcomes.append(propose(self.store, change, clock(), detail=why))
                    return
                self.outcomes += publish(
                    self.store,
                    branch,
                    [change],
                    decided_by=decided_by,
                    marker=marker,
                    clock=clock,
                    correction_id=correction_id,
                )
        except SourceError as exc:  # refused or failed on the branch: nothing was published
            if approval is not None and exc.code == "fix_refused":
                self._refuse_approval(empty, approval, f"not written: {exc}", marker)
                return
            status = "refused" if exc.code == "fix_refused" else "failed"
            self.outcomes.append(Outcome(empty, status, f"not written: {exc}", correction_id))

    def _refuse_approval(
        self, change: Change, approval: tuple[Correction, str], detail: str, marker: str
    ) -> None:
        """An approved fix that no longer holds on a fresh branch: the proposal is closed as
        a conflict, with why, and nothing is written."""
        proposal, by = approval
        found = WriteResult("conflict", proposal.old, proposal.old, detail)
        self.outcomes.append(
            refuse_conflict(
                self.store,
                dataclasses.replace(change, old=proposal.old, new=proposal.new),
                found,
                decided_by=by,
                marker=marker,
                clock=self.options.clock,
                correction_id=proposal.id,
            )
        )

    def _before_change(self, suite: Suite, branch: SourceBranch) -> list[_Downstream]:
        """The suite's ``verify:`` suites the branch reaches (views and tables of the same
        database, for a SQL transaction), judged before any change; the others are verified
        after restarts."""
        found = []
        for name in suite.verify:
            other = self.project.suites.get(name)
            connector = self.project.connectors.get(other.source.connector) if other else None
            if other is None or connector is None:
                continue
            relation = branch.relation_of(other.source, connector)
            if relation is not None:
                ctx = context_for(other, self.store, self.options, self.options.clock())
                found.append(_Downstream(other, relation, ctx, judge(other, relation, ctx)))
        return found


@dataclass(frozen=True)
class _Downstream:
    """A ``verify:`` suite read on a branch, as it was before the branch changed anything."""

    suite: Suite
    relation: Relation
    ctx: CheckContext
    before: list[CheckResult]


def _verify_downstream(
    downstream: Sequence[_Downstream],
) -> tuple[list[tuple[str, str, str]], list[str]]:
    """Each ``verify:`` suite judged again on the branch: its overall status before and
    now, and every check of it that got worse, in words."""
    statuses: list[tuple[str, str, str]] = []
    worse: list[str] = []
    for d in downstream:
        now = judge(d.suite, d.relation, d.ctx)
        was, is_now = worst(c.status for c in d.before), worst(c.status for c in now)
        statuses.append((d.suite.suite, was, is_now))
        worse += [f"{d.suite.suite}: {problem}" for problem in got_worse(d.before, now)]
    return statuses, worse


def _failed_on(branch: SourceBranch, detail: str) -> str:
    """Why a branch was not published; where it is kept for inspection, if it is."""
    kept = branch.keep()
    where = f" (the branch {kept} is kept for inspection)" if kept is not None else ""
    return f"the branch check failed: {detail}{where}"


@dataclass(frozen=True)
class Settled:
    """What settling the corrections a crash interrupted found."""

    notes: list[str] = field(default_factory=list)
    # Writes the rules made that had gone through: their owners are still to be told.
    written: list[Outcome] = field(default_factory=list)


def settle(
    project: Project, store: Store, options: RunOptions, suites: Iterable[str] | None = None
) -> Settled:
    """Reconcile every correction of ``suites`` (default: all) a crash left between intent
    and outcome. The caller holds their acting locks: no cycle of theirs is writing now."""
    settled = Settled()
    wanted = None if suites is None else set(suites)
    by_suite: dict[str, list[Correction]] = {}
    for correction in interrupted(store):  # a batch cut short leaves many of one suite
        if wanted is None or correction.suite in wanted:
            by_suite.setdefault(correction.suite, []).append(correction)
    for suite_id, group in by_suite.items():
        try:
            with _open(project, suite_id, options) as (source, relation):
                for correction in group:
                    _settle_one(project, store, options, settled, correction, source, relation)
        except (DqAgentError, SourceError) as exc:
            settled.notes.extend(f"correction {c.id}: still unsettled ({exc})" for c in group)
    return settled


def _settle_one(
    project: Project,
    store: Store,
    options: RunOptions,
    settled: Settled,
    correction: Correction,
    source: Source,
    relation: Relation,
) -> None:
    try:
        if correction.column == RUNBOOK_FIX and isinstance(source, SqlSource):
            key = row_key(project.suites[correction.suite], relation)
            outcome = reconcile_rows(store, correction, source, key=key, clock=options.clock)
        else:
            outcome = reconcile(store, correction, source, clock=options.clock)
    except (DqAgentError, SourceError) as exc:
        settled.notes.append(f"correction {correction.id}: still unsettled ({exc})")
        return
    if outcome is None:
        return
    settled.notes.append(f"correction {correction.id}: {outcome.status} ({outcome.detail})")
    if outcome.status == "applied" and correction.decided_by == "rule":
        settled.written.append(outcome)


def revert_correction(
    project: Project, store: Store, correction_id: int, *, by: str, options: RunOptions
) -> Outcome:
    """Undo a correction, as ``by``: one of its suite's deciders or the people told of it
    (the owners of the record it changed), whoever asks and from wherever."""
    return revert_corrections(project, store, [correction_id], by=by, options=options)[0]


def revert_corrections(
    project: Project, store: Store, correction_ids: Sequence[int], *, by: str, options: RunOptions
) -> list[Outcome]:
    """Undo corrections, as :func:`revert_correction` one, in the order given: every one
    authorized first (nothing is undone if ``by`` may not undo them all), then each suite's
    source opened once and its records written back together where its API allows."""
    corrections = [_correction(store, i) for i in correction_ids]
    by_suite: dict[str, list[Correction]] = {}
    for correction in corrections:
        told = [m.recipient for m in store.outbox(correction_id=correction.id)]
        _require_owner(_suite_of(project, correction), correction, by, told, what="undo")
        by_suite.setdefault(correction.suite, []).append(correction)
    outcomes: dict[int, Outcome] = {}
    if project.sealed:  # the broker writes (and authorizes again, against its own config)
        client = _broker(project, options)
        for suite_id, group in by_suite.items():
            done = client.revert(suite_id, [c.id for c in group], by=by)
            outcomes |= {c.id: o for c, o in zip(group, done, strict=True)}
        return [outcomes[c.id] for c in corrections]
    for suite_id, group in by_suite.items():
        suite = project.suites[suite_id]
        with _open(project, suite_id, options) as (source, relation):
            cells = [c for c in group if c.column != RUNBOOK_FIX]
            for correction in group:
                if correction.column == RUNBOOK_FIX and isinstance(source, SqlSource):
                    outcomes[correction.id] = revert_rows(
                        store,
                        source,
                        correction,
                        key=row_key(suite, relation),
                        by=by,
                        clock=options.clock,
                        waits=_waits(project),
                    )
                elif correction.column == RUNBOOK_FIX:
                    outcomes[correction.id] = revert(
                        store, source, correction, by=by, clock=options.clock
                    )
            if isinstance(source, BatchWriting) and len(cells) > 1:
                done = revert_many(store, source, cells, by=by, clock=options.clock)
                outcomes |= {c.id: o for c, o in zip(cells, done, strict=True)}
            else:
                for correction in cells:
                    outcomes[correction.id] = revert(
                        store, source, correction, by=by, clock=options.clock
                    )
    return [outcomes[c.id] for c in corrections]


def approve_correction(
    project: Project,
    store: Store,
    correction_id: int,
    *,
    by: str,
    options: RunOptions,
    env: Mapping[str, str] | None = None,
    also: Iterable[str] = (),
    incident_id: int | None = None,
) -> Outcome:
    """An owner approves a pending proposal: guardrails, branch check and write, as for a rule.

    ``also``: people who may decide besides the suite's owners and escalation list (the
    chain of the incident ``incident_id`` the approval came from, which a broker reads for
    itself).
    """
    correction = _correction(store, correction_id)
    suite = _suite_of(project, correction)
    _require_owner(suite, correction, by, also)
    refused = approval_refusal(project, correction, env=env)
    if refused is not None:
        raise DqAgentError(refused)
    if project.sealed:  # the broker writes (and authorizes again, against its own config)
        return _broker(project, options).approve(
            suite.suite, correction_id, by=by, incident_id=incident_id
        )
    if correction.column == RUNBOOK_FIX:
        return _apply_fix(project, store, suite, correction, by=by, options=options, env=env)
    change = Change.of(correction)
    if correction.column == WHOLE_SHEET:
        with _open(project, suite.suite, options) as (source, _):
            return apply(
                store,
                source,
                change,
                decided_by=f"owner:{by}",
                marker=options.clock().isoformat(),
                clock=options.clock,
                correction_id=correction.id,
            )
    remedy = Remedy(project, store, options)

    def approve_hook(s: Suite, source: Source, relation: Relation, result: SuiteResult) -> None:
        remedy._write(
            s,
            source,
            relation,
            result,
            [change],
            decided_by=f"owner:{by}",
            correction_id=correction.id,
        )

    run_checks(
        project, [suite.suite], store=store, options=options, command="approve", hook=approve_hook
    )
    if not remedy.outcomes:
        raise DqAgentError(f"suite {suite.suite} could not be read: nothing was written")
    return remedy.outcomes[0]


def approval_refusal(
    project: Project, correction: Correction, *, env: Mapping[str, str] | None = None
) -> str | None:
    """Why an owner's approval of ``correction`` would write nothing, or None when it can
    be tried: the same policy :func:`approve_correction` applies, asked before anyone
    presses a button (the dashboard shows Approve only where it can work)."""
    if correction.status != "pending" or correction.events[-1].event != "proposed":
        return f"correction {correction.id} is {correction.status}: only a proposal can be approved"
    suite = project.suites.get(correction.suite)
    if suite is None:
        return f"suite {correction.suite!r} of correction {correction.id} is not in this project"
    kind = project.connectors[suite.source.connector].type
    if correction.column in (RUNBOOK_FIX, WHOLE_SHEET):
        # A restore puts back data that was there, and a runbook fix was verified on a
        # branch: the owner's approval is the decision, within the global switches (the
        # allow-list and limits are about single values).
        off = switched_off(suite, project.settings.corrections, kind, env=env)
    else:
        verdict = guard(
            [Change.of(correction)],
            suite,
            project.settings.corrections,
            kind,
            env=env,
            count_limit=False,
        )
        off = verdict.refused[0][1] if verdict.refused else None
    return None if off is None else f"correction {correction.id} cannot be written: {off}"


def _apply_fix(
    project: Project,
    store: Store,
    suite: Suite,
    correction: Correction,
    *,
    by: str,
    options: RunOptions,
    env: Mapping[str, str] | None,
) -> Outcome:
    """An owner presses Apply fix: the fix runs again on a branch, is verified again, and is
    published only if it touches exactly the rows the owner was shown."""
    name = correction.key.get("fix")
    fix = next((f for f in suite.fixes if f.name == name), None)
    if fix is None:
        raise DqAgentError(
            f"correction {correction.id}: suite {suite.suite} has no fix {name!r} any more"
        )
    remedy = Remedy(project, store, options, env=env)
    trigger = Trigger.of(fix, correction.key)

    def hook(s: Suite, source: Source, relation: Relation, result: SuiteResult) -> None:
        if result.status != "error":
            remedy.run_fix(
                s, source, relation, result, trigger, approval=(correction, f"owner:{by}")
            )

    run_checks(project, [suite.suite], store=store, options=options, command="approve", hook=hook)
    if not remedy.outcomes:
        raise DqAgentError(f"suite {suite.suite} could not be read: nothing was written")
    return remedy.outcomes[0]


def reject_correction(
    store: Store, project: Project, correction_id: int, *, by: str, clock: Clock
) -> None:
    correction = _correction(store, correction_id)
    _require_owner(_suite_of(project, correction), correction, by)
    only = "only a proposal can be rejected (a write in progress cannot)"
    if correction.status != "pending":
        raise DqAgentError(f"correction {correction.id} is {correction.status}: {only}")
    try:
        store.ledger_append(
            event="rejected",
            at=clock(),
            correction_id=correction.id,
            old=correction.old,
            new=correction.new,
            decided_by=f"owner:{by}",
            detail="rejected by the owner",
            after=("proposed",),
        )
    except LedgerConflict as exc:
        raise DqAgentError(f"{exc}: {only}") from exc


# -- helpers ---------------------------------------------------------------------------------


def _waits(project: Project) -> dict[str, timedelta]:
    """How long a branch may wait, as ``corrections:`` says: its ``branch()`` arguments."""
    settings = project.settings.corrections
    return {"lock_timeout": settings.lock_timeout, "statement_timeout": settings.statement_timeout}


@contextmanager
def _open(
    project: Project, suite_id: str, options: RunOptions
) -> Iterator[tuple[Source, Relation]]:
    """A suite's source, opened (so writes know what was read) and closed after."""
    if suite_id not in project.suites:
        raise DqAgentError(f"suite {suite_id!r} is not in this project (or is invalid)")
    spec = project.suites[suite_id].source
    reading = opened(
        project.root, project.connectors, spec, retry=options.retry, sealed=project.sealed
    )
    with reading as opened_source:
        yield opened_source


def _broker(project: Project, options: RunOptions) -> BrokerClient:
    from dq_agent.broker.client import BrokerClient

    return BrokerClient.of(project, options.retry)


def _correction(store: Store, correction_id: int) -> Correction:
    correction = store.correction(correction_id)
    if correction is None:
        raise DqAgentError(f"no correction {correction_id}")
    return correction


def _suite_of(project: Project, correction: Correction) -> Suite:
    if correction.suite not in project.suites:
        raise DqAgentError(
            f"suite {correction.suite!r} of correction {correction.id} is not in this project"
        )
    return project.suites[correction.suite]


def deciders(suite: Suite | None, check: str, also: Iterable[str] = ()) -> set[str]:
    """Who may decide about a check's corrections and incidents, lower-cased: the suite's
    owners and escalation list, the check's own owners, and ``also``. People only: a
    channel on those lists cannot press a button."""
    named = [*(suite.owner if suite else ()), *(suite.escalation if suite else ()), *also]
    for spec in suite.checks if suite else ():
        if spec.name == check and spec.owner:
            named += spec.owner
    return {p.lower() for p in named if not p.startswith("#")}


def _require_owner(
    suite: Suite,
    correction: Correction,
    by: str,
    also: Iterable[str] = (),
    *,
    what: str = "decide",
) -> None:
    """Refuse unless ``by`` is a person who may decide this correction."""
    people = deciders(suite, correction.check, also)
    if by.lower() not in people:
        listed = ", ".join(sorted(people)) or "nobody"
        raise DqAgentError(
            f"{by} may not {what} correction {correction.id} of suite {suite.suite} "
            f"(its owners and escalation list: {listed})"
        )
