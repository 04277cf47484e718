"""Leader election: of several daemon replicas sharing one state store, one runs the schedule.

APScheduler 3.x runs every job once per scheduler, so only one replica may run one. Replicas
compete for a :class:`~dq_agent.store.locks.SharedLock` that the operating system or the
database frees when its holder dies. A leader must keep asking ``holds()`` (say, before
every job) and stop scheduling once it answers False: a broken connection means PostgreSQL
may already have handed the lock on.
"""

from __future__ import annotations

import os

from dq_agent.store.locks import SharedLock

# Arbitrary but fixed ("dqleader" in ASCII), like the store's migration and ledger lock keys.
LEADER_LOCK_KEY = 0x6471_6C65_6164_6572


class Leadership(SharedLock):
    """This process's claim to be the one replica that runs the schedule.

    ``try_acquire`` never waits for another replica; call it every few seconds while standing
    by.
    """

    def __init__(self, url: str, *, key: int = LEADER_LOCK_KEY) -> None:
        super().__init__(url, key=key, suffix=".leader")

    def describe(self) -> str:
        """ "leader (pid N)" or "standby", as last known (no round trip to the database)."""
        return f"leader (pid {os.getpid()})" if self.held else "standby"
