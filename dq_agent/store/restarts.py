"""Pipeline restarts: each written before it is started, then followed until done."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from dq_agent.store.database import Database
from dq_agent.store.models import Restart

# What may change on a row after it is recorded.
RESTART_FIELDS = frozenset(
    {"state", "run_id", "url", "detail", "attempts", "next_try_at", "started_at", "finished_at"}
)


class RestartRepository(Database):
    """Restarts of downstream pipelines and their progress."""

    # -- pipeline restarts ----------------------------------------------------------------------

    def restarts_add(self, rows: Sequence[Mapping[str, Any]], *, at: datetime) -> int:
        """Record restarts to make; one whose key is already recorded is left alone."""
        if not rows:
            return 0
        with self._transaction("record restarts") as session:
            keys = [r["key"] for r in rows]
            known = set(session.scalars(sa.select(Restart.key).where(Restart.key.in_(keys))))
            added = 0
            for r in rows:
                if r["key"] in known:
                    continue
                session.add(
                    Restart(
                        key=r["key"],
                        batch=r["batch"],
                        suite=r["suite"],
                        target=r["target"],
                        label=r["label"],
                        incidents=list(r["incidents"]),
                        state="pending",
                        run_id=None,
                        url=None,
                        detail="",
                        attempts=0,
                        created_at=at,
                        next_try_at=at,
                        started_at=None,
                        finished_at=None,
                    )
                )
                added += 1
            return added

    def restarts(
        self, *, suite: str | None = None, states: Sequence[str] | None = None
    ) -> list[Restart]:
        """Recorded restarts, oldest first."""
        query = sa.select(Restart).order_by(Restart.id)
        if suite is not None:
            query = query.where(Restart.suite == suite)
        if states is not None:
            query = query.where(Restart.state.in_(list(states)))
        with self._transaction("read restarts", read=True) as session:
            return list(session.scalars(query))

    def restart_update(self, restart_id: int, **values: Any) -> None:
        """Record where a restart stands (started with its run id, polled, finished...)."""
        self._update(Restart, restart_id, values, RESTART_FIELDS, "restart")
