"""The corrections ledger's shapes and its hash chain.

Every event of every correction is one appended row; each row's hash covers its content and
the previous row's hash, so editing or deleting any row breaks every hash after it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from dq_agent.results import to_jsonable

GENESIS = "0" * 64

# The column of a runbook fix's corrections: their old and new values are the rows it
# touched, before and after (lists of column → value), not one value.
RUNBOOK_FIX = "(rows)"

# The status a correction is in after each kind of event.
STATUS_AFTER = {
    "proposed": "pending",
    "intent": "pending",
    "applied": "applied",
    "conflict": "conflict",
    "failed": "failed",
    "rejected": "rejected",
    "revert_intent": "applied",
    "reverted": "reverted",
    # A refused or failed revert leaves the correction applied: nothing was changed.
    "revert_refused": "applied",
}
EVENTS = tuple(STATUS_AFTER)


@dataclass(frozen=True)
class LedgerEvent:
    id: int
    at: datetime
    event: str
    decided_by: str
    detail: str
    old: Any
    new: Any

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "at": self.at.isoformat(),
            "event": self.event,
            "by": self.decided_by,
            "detail": self.detail,
            "old": to_jsonable(self.old),
            "new": to_jsonable(self.new),
        }


@dataclass(frozen=True)
class Correction:
    """A proposed or applied change to one value in a source, with its history."""

    id: int
    suite: str
    check: str
    source: str
    key: dict[str, Any]
    column: str
    old: Any
    new: Any
    evidence: tuple[str, ...]
    decided_by: str
    status: str
    created_at: datetime
    applied_at: datetime | None
    reverted_at: datetime | None
    detail: str
    events: tuple[LedgerEvent, ...]

    def to_json(self, *, events: bool = False) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "id": self.id,
            "suite": self.suite,
            "check": self.check,
            "source": self.source,
            "key": to_jsonable(self.key),
            "column": self.column,
            "old": to_jsonable(self.old),
            "new": to_jsonable(self.new),
            "status": self.status,
            "decided_by": self.decided_by,
            "created_at": self.created_at.isoformat(),
            "applied_at": self.applied_at.isoformat() if self.applied_at else None,
            "reverted_at": self.reverted_at.isoformat() if self.reverted_at else None,
            "detail": self.detail,
            "evidence": list(self.evidence),
        }
        if events:
            doc["events"] = [e.to_json() for e in self.events]
        return doc


def entry_hash(prev_hash: str, content: dict[str, Any]) -> str:
    """SHA-256 over the previous hash and the entry's canonical JSON."""
    canonical = json.dumps(_canonical(to_jsonable(content)), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(f"{prev_hash}\n{canonical}".encode()).hexdigest()


def _canonical(value: Any) -> Any:
    # JSON columns may hand 1000000.0 back as 1000000: the hash must not depend on it.
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _canonical(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_canonical(v) for v in value]
    return value
