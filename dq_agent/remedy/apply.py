"""Write corrections through the ledger: intent first, outcome after, undo on demand.

The intent row is committed before the source is called, so a crash in between leaves a
trace that :func:`reconcile` settles on the next start by reading the source: applied if the
new value is there, not applied if the old one still is. Nothing is ever written twice.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from dq_agent.errors import LedgerConflict, SourceError, StoreError
from dq_agent.remedy.plan import Change
from dq_agent.sources.base import (
    BatchWriting,
    CellWrite,
    Source,
    SourceBranch,
    WriteResult,
    same_value,
)
from dq_agent.sources.sql import SqlSource
from dq_agent.sources.sqlrows import same_rows
from dq_agent.store.ledger import Correction, LedgerRepository

Clock = Callable[[], datetime]


@dataclass(frozen=True)
class Outcome:
    """What became of one change in a run."""

    change: Change
    # applied | conflict | failed | refused | proposed | planned | rejected | reverted
    # | unchanged (asked for what was already done: a second revert)
    # | kept (the value a person put back with Undo: what they meant, not a slip)
    status: str
    detail: str
    correction_id: int | None = None
    # A conflict because someone else already wrote the intended value: the record is right,
    # but the change is theirs, never told as the agent's.
    fixed_at_source: bool = False

    @property
    def fixed(self) -> bool:
        """Whether the record now holds what it should: what the change intended (written
        by the agent or not), or what a person put back with Undo."""
        return self.status in ("applied", "kept") or self.fixed_at_source

    def to_json(self) -> dict[str, Any]:
        """As JSON, whole: how a broker that made the change hands it over."""
        fields = {field.name: getattr(self, field.name) for field in dataclasses.fields(self)}
        return fields | {"change": self.change.to_json()}

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Outcome:
        return cls(**{**doc, "change": Change.from_json(doc["change"])})


def record_refused(store: LedgerRepository, change: Change, reason: str, at: datetime) -> Outcome:
    """A change the policy did not allow becomes a pending proposal for the owner."""
    return propose(
        store, change, at, detail=f"not applied automatically: {reason}", status="refused"
    )


def propose(
    store: LedgerRepository,
    change: Change,
    at: datetime,
    *,
    detail: str = "",
    status: str = "proposed",
    by: str = "rule",
) -> Outcome:
    """A pending correction an owner can approve, unless the same one is already pending.

    ``by``: who proposes it, ``rule`` (the checks) or ``llm`` (the optional reviewer).
    """
    for pending in store.corrections(suite=change.suite, status="pending"):
        if (
            pending.check == change.check
            and pending.key == dict(change.key)
            and pending.column == change.column
            and same_value(pending.new, change.new)
        ):
            return Outcome(
                change, status, f"{detail} (pending as correction {pending.id})".strip(), pending.id
            )
    correction_id = store.ledger_append(
        event="proposed",
        at=at,
        decided_by=by,
        detail=detail or change.reason,
        **_subject(change),
    )
    return Outcome(change, status, detail or "proposed to the owner", correction_id)


def _subject(change: Change) -> dict[str, Any]:
    """What a ledger entry is about: the record, the value, the evidence."""
    return {
        "suite": change.suite,
        "check": change.check,
        "source": change.source,
        "key": change.key,
        "column": change.column,
        "old": change.old,
        "new": change.new,
        "evidence": change.evidence,
    }


def apply(
    store: LedgerRepository,
    source: Source,
    change: Change,
    *,
    decided_by: str,
    marker: str,
    clock: Clock,
    correction_id: int | None = None,
) -> Outcome:
    """Intent, compare-and-set write, outcome: the ledger holds each step.

    Writing an existing proposal (``correction_id``) first claims it: its intent follows the
    proposal or nothing happens, so two approvals never write it twice.
    """
    try:
        correction_id = _intend(store, change, decided_by, marker, clock, correction_id)
    except _NotIntended as refused:
        return refused.outcome
    note = _noter(store, correction_id, decided_by, clock)
    try:
        written = source.write(change.key, change.column, change.old, change.new)
    except SourceError as exc:
        note("failed", change.old, change.new, str(exc))
        return Outcome(change, "failed", str(exc), correction_id)
    return _settled_write(note, change, written, correction_id)


def apply_many(
    store: LedgerRepository,
    source: BatchWriting,
    changes: Sequence[Change],
    *,
    decided_by: str,
    marker: str,
    clock: Clock,
) -> list[Outcome]:
    """:func:`apply` for many changes in one batch of writes: every intent recorded first,
    the writes made together (a source's collection call), each outcome recorded on its own.

    A batch that fails part-way leaves its intents for the next run, which settles each
    record by reading it, as after a crash.
    """
    outcomes: list[Outcome | None] = []
    intended: list[tuple[int, Change, int]] = []
    for change in changes:
        try:
            correction_id = _intend(store, change, decided_by, marker, clock, None)
        except _NotIntended as refused:
            outcomes.append(refused.outcome)
            continue
        intended.append((len(outcomes), change, correction_id))
        outcomes.append(None)
    writes = [CellWrite(c.key, c.column, c.old, c.new) for _, c, _ in intended]
    try:
        results = source.write_many(writes) if writes else []
    except SourceError as exc:
        detail = f"the batch of writes failed ({exc}); the next run settles each record"
        for at, change, correction_id in intended:
            outcomes[at] = Outcome(change, "failed", detail, correction_id)
        return [o for o in outcomes if o is not None]
    for (at, change, correction_id), written in zip(intended, results, strict=True):
        note = _noter(store, correction_id, decided_by, clock)
        outcomes[at] = _settled_write(note, change, written, correction_id)
    return [o for o in outcomes if o is not None]


def _settled_write(
    note: _Note, change: Change, written: WriteResult, correction_id: int
) -> Outcome:
    """The ledger's outcome of one compare-and-set write, and the run's."""
    if written.status == "written":
        how = "written compare-and-set" + (f": {written.detail}" if written.detail else "")
        note("applied", written.before, written.after, how)
        done = "verified on a copy, then written compare-and-set"
        return Outcome(change, "applied", done, correction_id)
    if written.status == "failed":
        note("failed", written.before, change.new, written.detail)
        return Outcome(change, "failed", written.detail, correction_id)
    return _conflict(note, change, written, correction_id)


def refuse_conflict(
    store: LedgerRepository,
    change: Change,
    written: WriteResult,
    *,
    decided_by: str,
    marker: str,
    clock: Clock,
    correction_id: int | None = None,
) -> Outcome:
    """A change a branch could not make (its value changed since it was read): recorded as
    a conflict, like one met by a direct write."""
    try:
        correction_id = _intend(store, change, decided_by, marker, clock, correction_id)
    except _NotIntended as refused:
        return refused.outcome
    note = _noter(store, correction_id, decided_by, clock)
    return _conflict(note, change, written, correction_id)


def publish(
    store: LedgerRepository,
    branch: SourceBranch,
    changes: Sequence[Change],
    *,
    decided_by: str,
    marker: str,
    clock: Clock,
    correction_id: int | None = None,
) -> list[Outcome]:
    """Intents for a verified branch's changes, the branch published, the outcomes recorded.

    The intents are committed before the branch is, so a crash in between is settled on the
    next start by reading the source (the database has either committed all of them or
    none). Nothing is published unless every intent is recorded.
    """
    ids: list[int] = []
    for change in changes:
        try:
            ids.append(_intend(store, change, decided_by, marker, clock, correction_id))
        except _NotIntended as refused:
            # The branch is dropped unpublished: what was intended never happened.
            for intended, cid in zip(changes, ids, strict=False):
                _noter(store, cid, decided_by, clock)(
                    "failed",
                    intended.old,
                    intended.new,
                    f"not published: {refused.outcome.detail}",
                )
            return [refused.outcome]
    try:
        published = branch.publish()
    except SourceError as exc:
        # Committed or not, the database knows: the next run reads it and settles each one.
        detail = f"publishing the branch failed ({exc}); the next run settles it"
        return [Outcome(c, "failed", detail, cid) for c, cid in zip(changes, ids, strict=True)]
    done = "verified on a branch, then published"
    outcomes = []
    for change, cid in zip(changes, ids, strict=True):
        _noter(store, cid, decided_by, clock)(
            "applied", change.old, change.new, f"{done}: {published}"
        )
        outcomes.append(Outcome(change, "applied", done, cid))
    return outcomes


class _NotIntended(Exception):
    """The ledger did not take an intent: nothing may be written."""

    def __init__(self, outcome: Outcome) -> None:
        super().__init__(outcome.detail)
        self.outcome = outcome


def _intend(
    store: LedgerRepository,
    change: Change,
    decided_by: str,
    marker: str,
    clock: Clock,
    correction_id: int | None,
) -> int:
    """Record the intent to write ``change``; a proposal's must follow the proposal."""
    try:
        return store.ledger_append(
            event="intent",
            at=clock(),
            correction_id=correction_id,
            decided_by=decided_by,
            detail=change.reason,
            idempotency_key=change.idempotency_key(marker),
            after=None if correction_id is None else ("proposed",),
            **_subject(change),
        )
    except LedgerConflict as exc:
        detail = f"not written: {exc}: someone else decided it first"
        raise _NotIntended(Outcome(change, "refused", detail, correction_id)) from exc
    except StoreError as exc:
        detail = f"not written: the ledger refused the intent ({exc})"
        raise _NotIntended(Outcome(change, "failed", detail)) from exc


def _conflict(note: _Note, change: Change, written: WriteResult, correction_id: int) -> Outcome:
    if same_value(written.after, change.new):
        # Someone else wrote the intended value first: theirs, not a correction of ours.
        detail = (
            f"already fixed at the source: {change.column} holds {_shown(written.after)} already"
            + (f" (changed by {written.by})" if written.by else "")
        )
        note("conflict", written.before, written.after, f"{detail}; nothing written")
        return Outcome(change, "conflict", detail, correction_id, fixed_at_source=True)
    detail = f"conflict: {written.detail}; nothing overwritten"
    note("conflict", written.before, change.new, detail)
    return Outcome(change, "conflict", detail, correction_id)


def revert(
    store: LedgerRepository, source: Source, correction: Correction, *, by: str, clock: Clock
) -> Outcome:
    """Put the old value back, compare-and-set: refused if the value changed since.

    The revert claims the correction first (its intent must follow the write or a refused
    revert), so of two clicks on Undo one reverts and the other is told it is done.
    """
    try:
        change, note = _claim_revert(store, correction, by, clock)
    except _NotIntended as refused:
        return refused.outcome
    try:
        written = source.write(correction.key, correction.column, correction.new, correction.old)
    except SourceError as exc:
        note("revert_refused", correction.new, correction.old, f"revert failed: {exc}")
        return Outcome(change, "failed", str(exc), correction.id)
    return _settled_revert(note, change, correction, written)


def revert_many(
    store: LedgerRepository,
    source: BatchWriting,
    corrections: Sequence[Correction],
    *,
    by: str,
    clock: Clock,
) -> list[Outcome]:
    """:func:`revert` for many corrections of one source in one batch of writes: each
    claimed first, the old values written back together, each outcome recorded on its own.
    A batch that fails part-way leaves its claims for the next run to settle by reading."""
    outcomes: list[Outcome | None] = []
    claimed: list[tuple[int, Correction, Change, _Note]] = []
    for correction in corrections:
        try:
            change, note = _claim_revert(store, correction, by, clock)
        except _NotIntended as refused:
            outcomes.append(refused.outcome)
            continue
        claimed.append((len(outcomes), correction, change, note))
        outcomes.append(None)
    writes = [CellWrite(c.key, c.column, c.new, c.old) for _, c, _, _ in claimed]
    try:
        results = source.write_many(writes) if writes else []
    except SourceError as exc:
        detail = f"the batch of reverts failed ({exc}); the next run settles each record"
        for at, correction, change, _ in claimed:
            outcomes[at] = Outcome(change, "failed", detail, correction.id)
        return [o for o in outcomes if o is not None]
    for (at, correction, change, note), written in zip(claimed, results, strict=True):
        outcomes[at] = _settled_revert(note, change, correction, written)
    return [o for o in outcomes if o is not None]


def _settled_revert(
    note: _Note, change: Change, correction: Correction, written: WriteResult
) -> Outcome:
    """The ledger's outcome of one compare-and-set revert, and the run's."""
    if written.status == "failed":
        note("revert_refused", written.before, correction.old, f"revert failed: {written.detail}")
        return Outcome(change, "failed", written.detail, correction.id)
    if written.status != "written":
        detail = f"revert refused: {written.detail}; nothing overwritten"
        note("revert_refused", written.before, correction.old, detail)
        return Outcome(change, "conflict", detail, correction.id)
    how = "reverted compare-and-set" + (f": {written.detail}" if written.detail else "")
    note("reverted", written.before, written.after, how)
    done = f"{correction.column} is {written.after!r} again, written compare-and-set"
    return Outcome(change, "reverted", done, correction.id)


def _claim_revert(
    store: LedgerRepository, correction: Correction, by: str, clock: Clock
) -> tuple[Change, _Note]:
    """The undo of ``correction`` as a change, once the correction is claimed for it (its
    revert intent follows the write or a refused revert); raises :class:`_NotIntended` when
    it is not in a state to undo or another undo got there first."""
    change = dataclasses.replace(
        Change.of(correction),
        old=correction.new,
        new=correction.old,
        evidence=(f"revert of correction {correction.id}",),
        reason="revert",
    )
    if correction.status != "applied":
        raise _NotIntended(_not_revertible(store, change, correction.id, correction.status))
    note = _noter(store, correction.id, by, clock)
    try:
        note("revert_intent", correction.new, correction.old, "revert requested", _REVERTIBLE)
    except LedgerConflict as exc:  # another undo got there first
        raise _NotIntended(_not_revertible(store, change, correction.id, exc.status)) from exc
    return change, note


def revert_rows(
    store: LedgerRepository,
    source: SqlSource,
    correction: Correction,
    *,
    key: Sequence[str],
    by: str,
    clock: Clock,
    waits: Mapping[str, timedelta],
) -> Outcome:
    """Undo a runbook fix: its rows put back as they were, on a branch (``waits``: its
    ``branch()`` arguments), compare-and-set row by row; refused whole if any of them changed
    since. Claimed first, like :func:`revert`."""
    try:
        change, note = _claim_revert(store, correction, by, clock)
    except _NotIntended as refused:
        return refused.outcome
    try:
        with source.branch(**waits) as b:
            written = b.put_rows(key, correction.new or [], correction.old or [])
            published = b.publish() if written.status == "written" else ""
    except SourceError as exc:
        note("revert_refused", correction.new, correction.old, f"revert failed: {exc}")
        return Outcome(change, "failed", str(exc), correction.id)
    if written.status != "written":
        detail = f"revert refused: {written.detail}; nothing overwritten"
        note("revert_refused", correction.new, correction.old, detail)
        return Outcome(change, "conflict", detail, correction.id)
    note("reverted", correction.new, correction.old, f"reverted on a branch: {published}")
    rows = max(len(correction.old or []), len(correction.new or []))
    done = f"{rows:,} row(s) are as they were before the fix"
    return Outcome(change, "reverted", done, correction.id)


def _shown(value: Any) -> str:
    """A value as a person reads it: 1,000,000 rather than 1000000.0."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return f"{value:,}"
    return repr(value)


def _not_revertible(
    store: LedgerRepository, change: Change, correction_id: int, status: str
) -> Outcome:
    """Why a revert did nothing: already undone (a no-op), or not in a state to undo."""
    if status == "reverted":
        now = store.correction(correction_id)
        when = f" at {now.reverted_at:%Y-%m-%d %H:%M} UTC" if now and now.reverted_at else ""
        detail = f"correction {correction_id} was already reverted{when}: nothing to do"
        return Outcome(change, "unchanged", detail, correction_id)
    if status == "applied":  # another revert holds it right now
        detail = f"correction {correction_id} is being reverted by someone else"
        return Outcome(change, "refused", detail, correction_id)
    return Outcome(
        change, "refused", f"correction {correction_id} is {status}, not applied", correction_id
    )


# What a revert may follow: the write, or an earlier revert that was refused.
_REVERTIBLE = ("applied", "revert_refused")


class _Note(Protocol):
    def __call__(
        self, event: str, old: Any, new: Any, detail: str, after: Collection[str] | None = None
    ) -> None: ...


def _noter(store: LedgerRepository, correction_id: int, by: str, clock: Clock) -> _Note:
    """Append the next event of one correction: what happened, old → new, and why;
    ``after``: the events it must follow (a claim), as
    :meth:`LedgerRepository.ledger_append` says."""

    def note(
        event: str, old: Any, new: Any, detail: str, after: Collection[str] | None = None
    ) -> None:
        store.ledger_append(
            event=event,
            at=clock(),
            correction_id=correction_id,
            old=old,
            new=new,
            decided_by=by,
            detail=detail,
            after=after,
        )

    return note


# The outcome of a settled event, as a run reports it.
_SETTLED = {
    "applied": "applied",
    "failed": "failed",
    "conflict": "conflict",
    "reverted": "reverted",
    "revert_refused": "conflict",
}


def reconcile(
    store: LedgerRepository, correction: Correction, source: Source, *, clock: Clock
) -> Outcome | None:
    """Settle a correction interrupted between its intent and its outcome; None if it was not.

    A write found to have gone through is ``applied`` like any other, so the run that settles
    it tells the owner (the process that wrote it died before it could).
    """
    if correction.events[-1].event not in ("intent", "revert_intent"):
        return None
    current = source.read(correction.key, correction.column)
    return _settle(
        store,
        correction,
        current,
        same_value,
        clock,
        values=(correction.old, correction.new),
        went_through="settled on start: the write had gone through",
        untouched="settled on start: interrupted before the write; nothing changed",
        moved=f"settled on start: the value is now {current!r}, changed by someone else",
    )


def reconcile_rows(
    store: LedgerRepository,
    correction: Correction,
    source: SqlSource,
    *,
    key: Sequence[str],
    clock: Clock,
) -> Outcome | None:
    """:func:`reconcile` for a runbook fix: its rows read back, compared with the images."""
    if correction.events[-1].event not in ("intent", "revert_intent"):
        return None
    old, new = correction.old or [], correction.new or []
    keys = list({tuple(row[k] for k in key): row for row in [*old, *new]}.values())
    current = [row for row in source.rows(key, keys) if row is not None]
    return _settle(
        store,
        correction,
        current,
        same_rows,
        clock,
        values=(old, new),
        went_through="settled on start: the branch had been published",
        untouched="settled on start: interrupted before the branch was published; nothing changed",
        moved="settled on start: the rows were changed by someone else since",
    )


def _settle(
    store: LedgerRepository,
    correction: Correction,
    current: Any,
    same: Callable[[Any, Any], bool],
    clock: Clock,
    *,
    values: tuple[Any, Any],
    went_through: str,
    untouched: str,
    moved: str,
) -> Outcome:
    """Record what ``current`` (what the source holds now) means for an interrupted write or
    revert of ``values`` (old, new): done if it holds the target, not done if it still holds
    the original, someone else's change otherwise."""
    last = correction.events[-1].event
    reverting = last == "revert_intent"
    old, new = values
    target, original = (old, new) if reverting else (new, old)
    if same(current, target):
        event, detail = ("reverted" if reverting else "applied"), went_through
    elif same(current, original):
        event, detail = ("revert_refused" if reverting else "failed"), untouched
    else:
        event, detail = ("revert_refused" if reverting else "conflict"), moved
    _noter(store, correction.id, "reconcile", clock)(event, original, current, detail, (last,))
    return Outcome(Change.of(correction), _SETTLED[event], detail, correction.id)


def interrupted(store: LedgerRepository) -> Sequence[Correction]:
    """Corrections whose latest entry is an intent: a run stopped in the middle."""
    return [c for c in store.corrections() if c.events[-1].event in ("intent", "revert_intent")]
