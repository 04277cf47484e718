"""What a run produces: suite, check and finding results, and their stable JSON shape."""

from __future__ import annotations

import numbers
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Literal

Status = Literal["pass", "warn", "fail", "error"]
Severity = Literal["warn", "fail"]
Action = Literal["auto_correct", "propose", "report"]

_RANK: dict[Status, int] = {"pass": 0, "warn": 1, "fail": 2, "error": 3}


def worst(statuses: Iterable[Status]) -> Status:
    """The most severe of ``statuses`` (``pass`` when there are none)."""
    return max(statuses, key=_RANK.__getitem__, default="pass")


def exit_code(status: Status) -> int:
    """The command-line exit code for an overall status (0 pass, 1 warn, 2 fail, 3 error)."""
    return _RANK[status]


def failed_status(severity: Severity) -> Status:
    """The status of a check that did not hold, given its severity."""
    return "warn" if severity == "warn" else "fail"


def key_text(key: Mapping[str, Any]) -> str:
    """A record's key as people read it: ``Id=006…`` or ``region=US, day=2026-12-01``."""
    return ", ".join(f"{name}={value}" for name, value in key.items())


def to_jsonable(value: Any) -> Any:
    """Convert database values (decimals, datetimes, tuples) into JSON-native ones."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [to_jsonable(v) for v in value]
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, numbers.Integral) and not isinstance(value, int):
        return int(value)  # numpy's integers, which GX hands back from pandas
    return value


@dataclass(frozen=True)
class Finding:
    """One record-level problem: which record, which column, what was seen, what to do."""

    key: Mapping[str, Any]
    column: str | None
    observed: Any
    proposed: Any = None
    action: Action = "report"
    confidence: float | None = None
    reason: str = ""
    evidence: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "key": to_jsonable(self.key),
            "column": self.column,
            "observed": to_jsonable(self.observed),
            "proposed": to_jsonable(self.proposed),
            "action": self.action,
            "confidence": self.confidence,
            "reason": self.reason,
            "evidence": list(self.evidence),
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Finding:
        return cls(
            key=dict(doc["key"]),
            column=doc.get("column"),
            observed=doc.get("observed"),
            proposed=doc.get("proposed"),
            action=doc.get("action", "report"),
            confidence=doc.get("confidence"),
            reason=doc.get("reason", ""),
            evidence=tuple(doc.get("evidence", ())),
        )


# Every failing record of a check, read afresh from its source a chunk at a time: only while
# the source is open (a suite hook), with no max_findings cap.
Records = Callable[[], Iterator[Finding]]


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one check. A failed check is a result, never an exception."""

    name: str
    type: str
    status: Status
    severity: Severity
    message: str
    observed: Mapping[str, Any] = field(default_factory=dict)
    findings: tuple[Finding, ...] = ()
    # Numeric measurements kept as history in the state store (row counts, ages, null counts).
    metrics: Mapping[str, float] = field(default_factory=dict)
    # Time-bucketed values seen by this run (bucket start, UTC → value), kept by the store so
    # that a baseline survives the source purging old rows.
    series: Mapping[datetime, float] = field(default_factory=dict)
    # Buckets before this start no baseline of the check reaches: the store may let them go.
    series_reach: datetime | None = None
    # Every failing record (``findings`` are the first max_findings of them); None when the
    # check cannot read them again (GX, fat_finger, no key). Not part of the JSON shape.
    records: Records | None = field(default=None, compare=False, repr=False)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.type,
            "status": self.status,
            "severity": self.severity,
            "message": self.message,
            "observed": to_jsonable(self.observed),
            "findings": [finding.to_json() for finding in self.findings],
        }

    def to_wire(self) -> dict[str, Any]:
        """The JSON shape and what the store keeps besides (metrics, bucket series)."""
        return {
            **self.to_json(),
            "metrics": dict(self.metrics),
            "series": {start.isoformat(): value for start, value in self.series.items()},
            "series_reach": self.series_reach.isoformat() if self.series_reach else None,
        }

    @classmethod
    def from_wire(cls, doc: Mapping[str, Any]) -> CheckResult:
        reach = doc.get("series_reach")
        return cls(
            name=doc["name"],
            type=doc["type"],
            status=doc["status"],
            severity=doc["severity"],
            message=doc["message"],
            observed=doc.get("observed") or {},
            findings=tuple(Finding.from_json(f) for f in doc.get("findings", ())),
            metrics={k: float(v) for k, v in (doc.get("metrics") or {}).items()},
            series={
                datetime.fromisoformat(k): float(v) for k, v in (doc.get("series") or {}).items()
            },
            series_reach=datetime.fromisoformat(reach) if reach else None,
        )


@dataclass(frozen=True)
class SuiteResult:
    """The outcome of one suite on one run."""

    suite: str
    status: Status
    started_at: datetime
    duration_s: float
    checks: tuple[CheckResult, ...] = ()
    error: str | None = None
    as_of: datetime | None = None
    # For an ``error``: whether trying again later may succeed (a timeout) or not (bad
    # credentials, a missing table). Not part of the JSON shape.
    transient: bool | None = None

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "suite": self.suite,
            "status": self.status,
            "started_at": self.started_at.isoformat(),
            "duration_s": round(self.duration_s, 3),
            "checks": [check.to_json() for check in self.checks],
        }
        if self.error is not None:
            doc["error"] = self.error
        if self.as_of is not None:
            doc["as_of"] = self.as_of.isoformat()
        return doc

    def to_wire(self) -> dict[str, Any]:
        """Everything the store records of this result, as JSON: how a broker hands it over."""
        return {
            **self.to_json(),
            "duration_s": self.duration_s,
            "checks": [check.to_wire() for check in self.checks],
            "transient": self.transient,
        }

    @classmethod
    def from_wire(cls, doc: Mapping[str, Any]) -> SuiteResult:
        as_of = doc.get("as_of")
        return cls(
            suite=doc["suite"],
            status=doc["status"],
            started_at=datetime.fromisoformat(doc["started_at"]),
            duration_s=float(doc["duration_s"]),
            checks=tuple(CheckResult.from_wire(c) for c in doc.get("checks", ())),
            error=doc.get("error"),
            as_of=datetime.fromisoformat(as_of) if as_of else None,
            transient=doc.get("transient"),
        )
