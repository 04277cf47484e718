"""Verify a changeset on a branch before it reaches the source.

Operational sources (Salesforce, Sheets) cannot branch: the branch is a private copy of the
records the suite just read, made with SQLite's online backup, and the source itself is never
touched here. A SQL table's branch is a transaction on the table itself
(:meth:`~dq_agent.sources.sql.SqlSource.branch`); :func:`verify_relation` judges either.
"""

from __future__ import annotations

import dataclasses
import shutil
import sqlite3
import tempfile
from collections.abc import Sequence
from pathlib import Path

import sqlalchemy as sa

from dq_agent.checks.base import CheckContext
from dq_agent.config.models import Suite
from dq_agent.engine import RunOptions, evaluate_checks
from dq_agent.errors import DqAgentError
from dq_agent.remedy.plan import Change
from dq_agent.results import CheckResult, worst
from dq_agent.sources.base import Relation

_PREFIX = "sqlite:///"


@dataclasses.dataclass(frozen=True)
class BranchVerdict:
    ok: bool
    detail: str
    checks: tuple[CheckResult, ...] = ()


def verify_on_branch(
    suite: Suite,
    relation: Relation,
    changes: Sequence[Change],
    ctx: CheckContext,
    baseline: Sequence[CheckResult],
) -> BranchVerdict:
    """Apply ``changes`` to a copy of ``relation`` and re-run the suite's checks on it.

    Passes when none of the changed values is still a finding and no check got worse.
    """
    if not relation.url.startswith(_PREFIX) or relation.table is None:
        raise DqAgentError(f"{relation.label} has no private copy to branch from")
    folder = Path(tempfile.mkdtemp(prefix="dq-agent-branch-"))
    branch_url = f"{_PREFIX}{folder / 'branch.db'}"
    engine = sa.create_engine(branch_url)
    try:
        _copy(relation.url[len(_PREFIX) :], folder / "branch.db")
        branch = dataclasses.replace(relation, engine=engine, url=branch_url)
        table = branch.selectable
        assert isinstance(table, sa.Table)
        with engine.begin() as conn:
            for change in changes:
                where = [table.c[k] == v for k, v in change.key.items()]
                conn.execute(sa.update(table).where(*where).values({change.column: change.new}))
        return verify_relation(suite, branch, changes, ctx, baseline)
    finally:
        engine.dispose()
        shutil.rmtree(folder, ignore_errors=True)


def verify_relation(
    suite: Suite,
    branch: Relation,
    changes: Sequence[Change],
    ctx: CheckContext,
    baseline: Sequence[CheckResult],
) -> BranchVerdict:
    """Re-run the suite's checks on a branch that holds ``changes`` (a copy, or a SQL
    transaction's relation) and compare with what they said before."""
    return _compare(changes, baseline, judge(suite, branch, ctx))


def judge(suite: Suite, relation: Relation, ctx: CheckContext) -> list[CheckResult]:
    """The suite's checks on a branch; nothing they compute is kept as history."""
    quiet = dataclasses.replace(ctx, history=None)
    return evaluate_checks(suite, relation, quiet, RunOptions(as_of=ctx.as_of))


def got_worse(before: Sequence[CheckResult], after: Sequence[CheckResult]) -> list[str]:
    """Each check whose status is worse in ``after`` than in ``before``, in words."""
    was = {c.name: c.status for c in before}
    return [
        f"{c.name} would go from {was[c.name]} to {c.status}"
        for c in after
        if c.name in was and worst([was[c.name], c.status]) != was[c.name]
    ]


def _copy(source: str, target: Path) -> None:
    with sqlite3.connect(source) as origin, sqlite3.connect(target) as copy:
        origin.backup(copy)
    origin.close()
    copy.close()


def _compare(
    changes: Sequence[Change], before: Sequence[CheckResult], after: Sequence[CheckResult]
) -> BranchVerdict:
    changed = {(c.check, tuple(sorted(c.key.items())), c.column) for c in changes}
    still = [
        f"{check.name}: {dict(key)} {column} is still a finding"
        for check in after
        for finding in check.findings
        for (name, key, column) in [
            (check.name, tuple(sorted(finding.key.items())), finding.column)
        ]
        if (name, key, column) in changed
    ]
    if still:
        return BranchVerdict(False, "; ".join(still), tuple(after))
    worse = got_worse(before, after)
    if worse:
        return BranchVerdict(False, "; ".join(worse), tuple(after))
    return BranchVerdict(
        True, "verified on a branch: the values are no longer findings", tuple(after)
    )
