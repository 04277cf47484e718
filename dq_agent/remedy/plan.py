"""From findings to a changeset: which values to change, to what, and why."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from dq_agent.config.models import FatFingerArgs, Suite
from dq_agent.results import SuiteResult, to_jsonable
from dq_agent.store.ledger import Correction


@dataclass(frozen=True)
class Change:
    """One value to change in a source, with the evidence for it."""

    suite: str
    check: str
    connector: str
    object: str  # the Salesforce object, worksheet or table the value lives in
    key: Mapping[str, Any]
    column: str
    old: Any
    new: Any
    evidence: tuple[str, ...]
    reason: str
    confidence: float | None
    action: Literal["auto_correct", "propose"]

    @property
    def source(self) -> str:
        return f"{self.connector}/{self.object}"

    @classmethod
    def of(cls, correction: Correction) -> Change:
        """The change a ledger correction stands for (to approve, or to undo)."""
        connector, _, obj = correction.source.partition("/")
        return cls(
            suite=correction.suite,
            check=correction.check,
            connector=connector,
            object=obj,
            key=correction.key,
            column=correction.column,
            old=correction.old,
            new=correction.new,
            evidence=correction.evidence,
            reason=correction.detail,
            confidence=None,
            action="propose",
        )

    def to_json(self) -> dict[str, Any]:
        return {
            field.name: to_jsonable(getattr(self, field.name)) for field in dataclasses.fields(self)
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Change:
        return cls(**{**doc, "key": dict(doc["key"]), "evidence": tuple(doc["evidence"])})

    def idempotency_key(self, marker: str) -> str:
        """The same change in the same run always has the same key: it can be recorded once."""
        payload = json.dumps(
            to_jsonable(
                [
                    self.suite,
                    self.check,
                    self.source,
                    dict(self.key),
                    self.column,
                    self.old,
                    self.new,
                    marker,
                ]
            ),
            sort_keys=True,
        )
        return hashlib.sha256(payload.encode()).hexdigest()[:40]


def plan(suite: Suite, result: SuiteResult, object_name: str) -> list[Change]:
    """The suite's correctable findings: auto-corrections and proposals, in check order."""
    specs = {spec.name: spec for spec in suite.checks}
    changes: list[Change] = []
    for check in result.checks:
        spec = specs.get(check.name)
        if spec is None or not isinstance(spec.args, FatFingerArgs):
            continue
        for finding in check.findings:
            if finding.proposed is None or finding.column is None:
                continue
            if finding.action == "auto_correct" and spec.args.auto_correct:
                action: Literal["auto_correct", "propose"] = "auto_correct"
            elif finding.action in ("auto_correct", "propose"):
                action = "propose"
            else:
                continue
            changes.append(
                Change(
                    suite=suite.suite,
                    check=check.name,
                    connector=suite.source.connector,
                    object=object_name,
                    key=dict(finding.key),
                    column=finding.column,
                    old=finding.observed,
                    new=finding.proposed,
                    evidence=(finding.reason, *finding.evidence),
                    reason=finding.reason,
                    confidence=finding.confidence,
                    action=action,
                )
            )
    return changes
