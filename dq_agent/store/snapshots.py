"""Copies of source records taken before a write, for restoring them."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from dq_agent.store.database import Database
from dq_agent.store.models import Snapshot


class SnapshotRepository(Database):
    """Snapshots of source records."""

    # -- snapshots of operational sources ------------------------------------------------------

    def save_snapshot(
        self, suite: str, content: Sequence[Any], *, row_count: int, at: datetime, keep: int
    ) -> int:
        """Keep what a run read; only the newest ``keep`` snapshots of a suite survive."""
        with self._transaction(f"save a snapshot of {suite!r}") as session:
            snapshot = Snapshot(
                suite=suite, taken_at=at, row_count=row_count, content=list(content)
            )
            session.add(snapshot)
            session.flush()
            stale = (
                sa.select(Snapshot.id)
                .where(Snapshot.suite == suite)
                .order_by(Snapshot.taken_at.desc(), Snapshot.id.desc())
                .offset(keep)
            )
            session.execute(sa.delete(Snapshot).where(Snapshot.id.in_(stale.scalar_subquery())))
            return snapshot.id

    def last_good_snapshot(self, suite: str) -> tuple[datetime, list[Any]] | None:
        """The newest snapshot of ``suite`` that held rows: (when, content)."""
        query = (
            sa.select(Snapshot.taken_at, Snapshot.content)
            .where(Snapshot.suite == suite, Snapshot.row_count > 0)
            .order_by(Snapshot.taken_at.desc(), Snapshot.id.desc())
            .limit(1)
        )
        with self._transaction(f"read snapshots of {suite!r}", read=True) as session:
            row = session.execute(query).first()
        return None if row is None else (row.taken_at, list(row.content))
