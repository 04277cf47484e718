"""The corrections ledger: its shapes, its hash chain and its repository.

Every event of every correction is one appended row; each row's hash covers its content and
the previous row's hash, so editing or deleting any row breaks every hash after it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from dq_agent.errors import LedgerConflict, StoreError
from dq_agent.results import to_jsonable
from dq_agent.store.database import Database
from dq_agent.store.models import LedgerEntry

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


# Appends to the hash-chained ledger are serialised ("dqledger").
LEDGER_LOCK_KEY = 0x6471_6C65_6467_6572


def _fold(rows: Sequence[LedgerEntry]) -> Correction:
    first, last = rows[0], rows[-1]
    applied_at = next((r.at for r in reversed(rows) if r.event == "applied"), None)
    reverted_at = next((r.at for r in reversed(rows) if r.event == "reverted"), None)
    # Who decided to write it (the latest intent), else who proposed it.
    decided = next((r.decided_by for r in reversed(rows) if r.event == "intent"), "")
    return Correction(
        id=first.correction_id,
        suite=first.suite,
        check=first.check_name,
        source=first.source,
        key=dict(first.record_key),
        column=first.column,
        old=first.old,
        new=first.new,
        evidence=tuple(first.evidence),
        decided_by=decided or first.decided_by,
        status=STATUS_AFTER[last.event],
        created_at=first.at,
        applied_at=applied_at,
        reverted_at=reverted_at,
        detail=last.detail,
        events=tuple(
            LedgerEvent(r.id, r.at, r.event, r.decided_by, r.detail, r.old, r.new) for r in rows
        ),
    )


class LedgerRepository(Database):
    """The ledger of corrections: appended with its hash chain, read back, verified."""

    # -- the corrections ledger ---------------------------------------------------------------

    def ledger_append(
        self,
        *,
        event: str,
        at: datetime,
        correction_id: int | None = None,
        suite: str = "",
        check: str = "",
        source: str = "",
        key: Mapping[str, Any] | None = None,
        column: str = "",
        old: Any = None,
        new: Any = None,
        evidence: Sequence[str] = (),
        decided_by: str = "",
        detail: str = "",
        idempotency_key: str | None = None,
        after: Collection[str] | None = None,
    ) -> int:
        """Append one event; a new correction when ``correction_id`` is None. Returns its id.

        Later events of a correction repeat what it is about (suite, key, column...) from its
        first entry, so every row can be read, and hashed, on its own. ``after``: the events
        this one may follow; when the correction's latest event is another one (someone else
        moved it on), nothing is appended and :class:`LedgerConflict` says what it is now.
        This is how an action claims a correction before touching the source.
        """
        if event not in EVENTS:
            raise StoreError(f"unknown ledger event {event!r}")
        at = at.astimezone(UTC)
        old, new = to_jsonable(old), to_jsonable(new)
        with self._transaction(f"append {event} to the ledger") as session:
            if self.engine.dialect.name == "postgresql":
                session.execute(sa.select(sa.func.pg_advisory_xact_lock(LEDGER_LOCK_KEY)))
            last = session.execute(
                sa.select(LedgerEntry.hash, LedgerEntry.correction_id)
                .order_by(LedgerEntry.id.desc())
                .limit(1)
            ).first()
            prev_hash = last.hash if last else GENESIS
            if correction_id is None:
                top = session.scalar(sa.select(sa.func.max(LedgerEntry.correction_id)))
                correction_id = int(top or 0) + 1
                subject = {
                    "suite": suite,
                    "check_name": check,
                    "source": source,
                    "record_key": dict(key or {}),
                    "column": column,
                }
            else:
                first = session.scalars(
                    sa.select(LedgerEntry)
                    .where(LedgerEntry.correction_id == correction_id)
                    .order_by(LedgerEntry.id)
                    .limit(1)
                ).first()
                if first is None:
                    raise StoreError(f"no correction {correction_id} in the ledger")
                if after is not None:
                    latest = session.scalars(
                        sa.select(LedgerEntry.event)
                        .where(LedgerEntry.correction_id == correction_id)
                        .order_by(LedgerEntry.id.desc())
                        .limit(1)
                    ).one()
                    if latest not in after:
                        status = STATUS_AFTER[latest]
                        raise LedgerConflict(
                            f"correction {correction_id} is {status} ({latest})", status=status
                        )
                subject = {
                    "suite": first.suite,
                    "check_name": first.check_name,
                    "source": first.source,
                    "record_key": first.record_key,
                    "column": first.column,
                }
            content = {
                "correction_id": correction_id,
                "at": at,
                "event": event,
                **subject,
                "old": old,
                "new": new,
                "evidence": list(evidence),
                "decided_by": decided_by,
                "detail": detail,
                "idempotency_key": idempotency_key,
            }
            session.add(
                LedgerEntry(
                    **{k: v for k, v in content.items()},
                    prev_hash=prev_hash,
                    hash=entry_hash(prev_hash, content),
                )
            )
        return correction_id

    def corrections(
        self, *, suite: str | None = None, status: str | None = None
    ) -> list[Correction]:
        """Every correction (newest first), folded from its ledger entries."""
        query = sa.select(LedgerEntry).order_by(LedgerEntry.id)
        if suite is not None:
            query = query.where(LedgerEntry.suite == suite)
        with self._transaction("read the ledger", read=True) as session:
            entries = list(session.scalars(query))
        grouped: dict[int, list[LedgerEntry]] = {}
        for entry in entries:
            grouped.setdefault(entry.correction_id, []).append(entry)
        folded = [_fold(rows) for rows in grouped.values()]
        if status is not None:
            folded = [c for c in folded if c.status == status]
        return sorted(folded, key=lambda c: c.id, reverse=True)

    def correction(self, correction_id: int) -> Correction | None:
        query = (
            sa.select(LedgerEntry)
            .where(LedgerEntry.correction_id == correction_id)
            .order_by(LedgerEntry.id)
        )
        with self._transaction(f"read correction {correction_id}", read=True) as session:
            rows = list(session.scalars(query))
        return _fold(rows) if rows else None

    def verify_ledger(self) -> list[str]:
        """Every break in the hash chain, as a sentence; empty when the ledger is intact."""
        problems: list[str] = []
        prev_hash = GENESIS
        with self._transaction("verify the ledger", read=True) as session:
            for entry in session.scalars(sa.select(LedgerEntry).order_by(LedgerEntry.id)):
                content = {
                    "correction_id": entry.correction_id,
                    "at": entry.at,
                    "event": entry.event,
                    "suite": entry.suite,
                    "check_name": entry.check_name,
                    "source": entry.source,
                    "record_key": entry.record_key,
                    "column": entry.column,
                    "old": entry.old,
                    "new": entry.new,
                    "evidence": entry.evidence,
                    "decided_by": entry.decided_by,
                    "detail": entry.detail,
                    "idempotency_key": entry.idempotency_key,
                }
                if entry.prev_hash != prev_hash:
                    problems.append(f"entry {entry.id}: does not follow the entry before it")
                if entry_hash(entry.prev_hash, content) != entry.hash:
                    problems.append(f"entry {entry.id}: content does not match its hash")
                prev_hash = entry.hash
        return problems
