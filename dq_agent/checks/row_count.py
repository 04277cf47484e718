"""``row_count``: the source holds at least ``min`` (default 1) and at most ``max`` rows."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from dq_agent.checks.base import CheckContext, result
from dq_agent.config.models import CheckSpec, RowCountArgs
from dq_agent.results import CheckResult
from dq_agent.sources.base import Relation


class RowCount:
    def __init__(self, spec: CheckSpec, relation: Relation, ctx: CheckContext) -> None:
        assert isinstance(spec.args, RowCountArgs)
        self.spec = spec
        self.args = spec.args

    def aggregates(self) -> dict[str, sa.ColumnElement[Any]]:
        return {"rows": sa.func.count()}

    def evaluate(self, values: Mapping[str, Any]) -> CheckResult:
        rows = int(values["rows"])
        low, high = self.args.min, self.args.max
        observed = {"row_count": rows, "min": low, "max": high}
        if low is not None and rows < low:
            message = (
                "the source is empty" if rows == 0 else f"{rows:,} rows, expected at least {low:,}"
            )
            ok = False
        elif high is not None and rows > high:
            message, ok = f"{rows:,} rows, expected at most {high:,}", False
        else:
            message, ok = f"{rows:,} rows", True
        return result(self.spec, ok, message, observed=observed, metrics={"row_count": rows})
