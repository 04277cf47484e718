"""Runbook fixes: the changes a suite's ``fixes:`` names for a known failure.

A fix is triggered by one of the suite's checks failing (for the groups it names), runs as
one SQL statement on a branch with parameters bound from the failing check, and must turn
that check green with every other check and ``verify:`` suite no worse. In the ledger it is
one correction whose old and new values are the before- and after-images of the rows it
touched: what publishing records, what the owner approves, what an undo puts back.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from dq_agent.checks.windows import STEP
from dq_agent.config.models import BUCKET_PARAMS, RunbookFix, Suite, WindowedArgs
from dq_agent.remedy.branch import got_worse
from dq_agent.remedy.plan import Change
from dq_agent.results import CheckResult, SuiteResult, to_jsonable
from dq_agent.sources.base import Relation
from dq_agent.sources.sqlrows import RowsChanged
from dq_agent.store.ledger import RUNBOOK_FIX

# Check statuses a fix answers: a failure, or a warn-severity check's.
_FAILING = ("fail", "warn")


@dataclass(frozen=True)
class Trigger:
    """A fix the suite's last result calls for, with the parameters to bind."""

    fix: RunbookFix
    params: Mapping[str, Any]

    @classmethod
    def of(cls, fix: RunbookFix, key: Mapping[str, Any]) -> Trigger:
        """The trigger a ledger key records (to run the fix again when it is approved)."""
        params = {k: v for k, v in key.items() if k != "fix"}
        for name in BUCKET_PARAMS:
            if isinstance(params.get(name), str):
                params[name] = datetime.fromisoformat(params[name])
        return cls(fix, params)

    @property
    def key(self) -> dict[str, Any]:
        """The ledger's key of this fix for this failure: its name and what it binds."""
        return {"fix": self.fix.name, **to_jsonable(dict(self.params))}


def triggered(suite: Suite, result: SuiteResult) -> list[Trigger]:
    """The suite's fixes whose check failed, for each group they name."""
    checks = {c.name: c for c in result.checks}
    specs = {s.name: s for s in suite.checks}
    found = []
    for fix in suite.fixes:
        check = checks.get(fix.when.check)
        if check is None or check.status not in _FAILING:
            continue
        params = _params(fix, check, specs[fix.when.check].args)
        if params is not None:
            found.append(Trigger(fix, params))
    return found


def _params(fix: RunbookFix, check: CheckResult, args: object) -> dict[str, Any] | None:
    """What the fix binds from ``check``'s result, or None if the failure is not one it is
    for (a group it names is not among those the check blames)."""
    observed = check.observed or {}
    params: dict[str, Any] = {}
    if fix.when.group:
        blamed = {str(g.get("value")) for g in observed.get("groups") or () if isinstance(g, dict)}
        for column, value in fix.when.group.items():
            if str(value) not in blamed:
                return None
            params[column] = value
    if isinstance(args, WindowedArgs) and observed.get("bucket"):
        # The bucket's wall-clock bounds in the check's timezone, as its timestamps are read.
        start = datetime.fromisoformat(str(observed["bucket"])).replace(tzinfo=None)
        params["bucket_start"] = start
        params["bucket_end"] = start + STEP[args.bucket]
    return params


def row_key(suite: Suite, relation: Relation) -> tuple[str, ...]:
    """The columns that name one row of a fix's table: the suite's key, or the primary key."""
    return suite.key or relation.primary_key


def fix_change(
    suite: Suite,
    relation: Relation,
    trigger: Trigger,
    rows: RowsChanged,
    report: Sequence[str],
) -> Change:
    """The ledger's view of a fix run on a branch: its rows before and after."""
    action: Literal["auto_correct", "propose"] = (
        "auto_correct" if trigger.fix.approve == "auto" else "propose"
    )
    return Change(
        suite=suite.suite,
        check=trigger.fix.when.check,
        connector=suite.source.connector,
        object=relation.label,
        key=trigger.key,
        column=RUNBOOK_FIX,
        old=rows.before,
        new=rows.after,
        evidence=tuple(report),
        reason=f"runbook fix {trigger.fix.name}: {rows.count:,} row(s) of {relation.label}",
        confidence=None,
        action=action,
    )


def fix_report(
    fix: RunbookFix,
    rows: RowsChanged,
    before: Sequence[CheckResult],
    after: Sequence[CheckResult],
    downstream: Sequence[tuple[str, str, str]] = (),
) -> tuple[list[str], list[str]]:
    """What the branch showed, line by line, and what is wrong with it (empty: it may be
    published). ``downstream``: each ``verify:`` suite's status before and after."""
    was = {c.name: c.status for c in before}
    lines = [f"{rows.count:,} row(s) changed on a branch (max_rows {fix.max_rows:,})"]
    lines += [f"{c.name}: {was.get(c.name, 'not run')} → {c.status}" for c in after]
    lines += [f"{name} (verify): {old} → {new}" for name, old, new in downstream]
    problems = []
    target = next((c for c in after if c.name == fix.when.check), None)
    if target is None or target.status != "pass":
        status = target.status if target else "not run"
        message = f": {target.message}" if target and target.message else ""
        problems.append(f"{fix.when.check} is still {status} on the branch{message}")
    if rows.count == 0:
        problems.append("the fix changed no rows")
    problems += got_worse(before, after)
    return lines, problems
