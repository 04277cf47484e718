"""``schema``: required columns (optionally typed) exist, and no drift since the last run."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from dq_agent.checks.base import CheckContext, result
from dq_agent.config.models import CheckSpec, SchemaArgs
from dq_agent.results import CheckResult
from dq_agent.sources.base import Relation

# A column declared "number" accepts integers too: every integer is a number.
_ACCEPTS = {"number": {"number", "integer"}, "timestamp": {"timestamp"}}


class Schema:
    def __init__(self, spec: CheckSpec, relation: Relation, ctx: CheckContext) -> None:
        assert isinstance(spec.args, SchemaArgs)
        self.spec = spec
        self.args = spec.args
        self.relation = relation
        self.ctx = ctx

    def aggregates(self) -> dict[str, sa.ColumnElement[Any]]:
        return {}

    def evaluate(self, values: Mapping[str, Any]) -> CheckResult:
        current = [(c.name, c.family) for c in self.relation.columns.values()]
        families = dict(current)
        problems: list[str] = []

        missing = [name for name in self.args.columns if name not in families]
        if missing:
            problems.append("missing " + ", ".join(missing))
        # A column the suite's other checks read is required too: its going is this check's
        # problem (theirs are skipped and told under it), for as long as it is gone.
        gone = [
            (name, readers)
            for name, readers in self.ctx.columns_in_use.items()
            if name not in families and name not in missing
        ]
        if gone:
            problems.append(
                "missing "
                + ", ".join(f"{name} (read by {', '.join(readers)})" for name, readers in gone)
            )
            missing += [name for name, _ in gone]
        typed = {n: t for n, t in self.args.columns.items() if t != "any" and n in families}
        if any(families[n] == "unknown" for n in typed):
            return CheckResult(
                self.spec.name,
                self.spec.type,
                "error",
                self.spec.severity,
                f"column types of {self.relation.label} are not known (a query source); "
                "list column names without types, or read a table",
            )
        for name, expected in typed.items():
            if families[name] not in _ACCEPTS.get(expected, {expected}):
                problems.append(f"{name} is {families[name]}, expected {expected}")

        drift: dict[str, list[str]] = {}
        previous = self.ctx.previous_schema
        if self.args.drift and previous is not None:
            drift = _drift(dict(previous), families, self.ctx.earlier_schema)
            if drift["added"]:
                problems.append("added since the last run: " + ", ".join(drift["added"]))
            if drift["removed"]:
                problems.append("removed since the last run: " + ", ".join(drift["removed"]))
            if drift["retyped"]:
                problems.append("retyped since the last run: " + ", ".join(drift["retyped"]))

        observed: dict[str, Any] = {"columns": dict(current)}
        if drift:
            observed["drift"] = drift
        if missing:
            observed["missing"] = missing
        if problems:
            return result(self.spec, False, "; ".join(problems), observed=observed)
        baseline = (
            "" if previous is not None or not self.args.drift else " (first run: baseline saved)"
        )
        message = f"{len(current)} columns as expected{baseline}"
        return result(
            self.spec, True, message, observed=observed, metrics={"columns": len(current)}
        )


def _drift(
    before: dict[str, str], after: dict[str, str], earlier: list[tuple[str, str]] | None
) -> dict[str, list[str]]:
    """What changed from ``before`` to ``after``, leaving out a column put back as it was in
    the ``earlier`` snapshot (dropped by mistake and restored: no news)."""
    was = dict(earlier) if earlier is not None else None

    def news(name: str) -> bool:
        return was is None or was.get(name) != after.get(name)

    return {
        "added": [n for n in after if n not in before and news(n)],
        "removed": [n for n in before if n not in after and news(n)],
        "retyped": [
            f"{n} {before[n]}→{after[n]}"
            for n in after
            if n in before
            and before[n] != after[n]
            and "unknown" not in (before[n], after[n])
            and news(n)
        ],
    }
