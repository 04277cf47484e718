"""The run queue that lets several daemon replicas share the suites.

The replica that leads turns each suite's cron into queued runs; every replica claims the
oldest due one it can, for a lease it renews while the run goes on, and marks it finished.
On PostgreSQL the claim is ``SELECT … FOR UPDATE SKIP LOCKED``: two replicas never claim the
same run, and neither waits for the other. A replica that dies stops renewing: once its lease
lapses another replica claims the run again (``attempts`` says how often it was tried). At
most one unfinished run per suite is queued (a partial unique index): a cron time that comes
while the suite's run is still queued or running is coalesced into it, and no suite ever runs
on two replicas at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from dq_agent.errors import StoreError
from dq_agent.store.database import Database, unheld
from dq_agent.store.models import QueuedRun


@dataclass(frozen=True)
class Claim:
    """A queued run this replica holds until ``lease_until``."""

    id: int
    suite: str
    due_at: datetime
    reason: str
    attempts: int
    lease_until: datetime


def enqueue(store: Database, suite: str, due_at: datetime, *, reason: str = "schedule") -> bool:
    """Queue ``suite`` to run at ``due_at``; False when it is queued already (for that time,
    or a run of it is still waiting or running: the new time coalesces into it)."""
    try:
        with store._transaction(f"queue a run of {suite}") as session:
            session.add(QueuedRun(suite=suite, due_at=due_at, reason=reason, attempts=0))
    except StoreError as exc:
        if isinstance(exc.__cause__, IntegrityError):
            return False
        raise
    return True


def claim(store: Database, *, by: str, now: datetime, lease: timedelta) -> Claim | None:
    """The oldest due run nobody holds (never claimed, or its lease lapsed), now held by
    ``by`` until ``now + lease``; None when there is none."""
    free = unheld(QueuedRun.lease_until, now)
    query = (
        sa.select(QueuedRun)
        .where(QueuedRun.finished_at.is_(None), QueuedRun.due_at <= now, free)
        .order_by(QueuedRun.due_at, QueuedRun.id)
        .limit(1)
        .with_for_update(skip_locked=True)
    )
    with store._transaction("claim a queued run") as session:
        row = session.execute(query).scalar_one_or_none()
        if row is None:
            return None
        row.claimed_by = by
        row.lease_until = now + lease
        row.attempts += 1
        row.started_at = now
        return Claim(row.id, row.suite, row.due_at, row.reason, row.attempts, row.lease_until)


def _held(claimed: Claim, by: str) -> tuple[sa.ColumnElement[bool], ...]:
    """The run ``claimed``, as long as ``by`` still holds it and it is not finished."""
    return (
        QueuedRun.id == claimed.id,
        QueuedRun.claimed_by == by,
        QueuedRun.finished_at.is_(None),
    )


def renew(store: Database, claimed: Claim, *, by: str, until: datetime) -> bool:
    """Extend the lease of a run ``by`` still holds; False if it lost it (lapsed and taken)."""
    with store._transaction("renew a run's lease") as session:
        done = session.execute(
            sa.update(QueuedRun)
            .where(*_held(claimed, by))
            .values(lease_until=until)
            .execution_options(synchronize_session=False)
        )
        return bool(getattr(done, "rowcount", 0))


def finish(store: Database, claimed: Claim, *, by: str, status: str, at: datetime) -> bool:
    """Mark the run done with its suite's status; False if another replica holds it now."""
    with store._transaction("finish a queued run") as session:
        done = session.execute(
            sa.update(QueuedRun)
            .where(*_held(claimed, by))
            .values(finished_at=at, status=status, lease_until=None)
            .execution_options(synchronize_session=False)
        )
        return bool(getattr(done, "rowcount", 0))


def release(store: Database, claimed: Claim, *, by: str) -> None:
    """Give back a run ``by`` claimed but did not start (it is stopping): free at once."""
    with store._transaction("release a queued run") as session:
        session.execute(
            sa.update(QueuedRun)
            .where(*_held(claimed, by))
            .values(claimed_by=None, lease_until=None, attempts=QueuedRun.attempts - 1)
            .execution_options(synchronize_session=False)
        )


def depth(store: Database, *, now: datetime) -> int:
    """Runs due and not finished (waiting for a replica, or running)."""
    query = (
        sa.select(sa.func.count())
        .select_from(QueuedRun)
        .where(QueuedRun.finished_at.is_(None), QueuedRun.due_at <= now)
    )
    with store._transaction("count queued runs") as session:
        return int(session.execute(query).scalar_one())


def history(store: Database, *, since: datetime) -> list[QueuedRun]:
    """Every queued run due since ``since``, oldest first (for benchmarks and tests)."""
    query = (
        sa.select(QueuedRun)
        .where(QueuedRun.due_at >= since)
        .order_by(QueuedRun.due_at, QueuedRun.id)
    )
    with store._transaction("read the run queue") as session:
        return list(session.execute(query).scalars())
