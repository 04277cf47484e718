"""Slack's per-channel pace, shared by every replica on one state store.

Each replica sending to a channel takes its turn from the same row: a burst of posts, then
one a second (:func:`dq_agent.escalate.slack.next_turn`). The turn is reserved in one short
transaction (the row locked ``FOR UPDATE`` on PostgreSQL) and waited out after it commits,
so replicas queue behind each other's reserved turns without holding a lock while they wait.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from dq_agent.errors import StoreError
from dq_agent.escalate.slack import next_turn
from dq_agent.store.database import Database
from dq_agent.store.models import SlackTurns


class SharedPace:
    """The pace of each channel as the state store records it (wall-clock seconds)."""

    def __init__(self, store: Database, *, clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._clock = clock

    def reserve(self, channel: str) -> float:
        """Reserve ``channel``'s next turn; how long to wait for it."""
        try:
            return self._reserve(channel)
        except StoreError as exc:
            if not isinstance(exc.__cause__, IntegrityError):
                raise
            return self._reserve(channel)  # two replicas added the channel's row at once

    def _reserve(self, channel: str) -> float:
        query = sa.select(SlackTurns).where(SlackTurns.channel == channel).with_for_update()
        with self._store._transaction(f"take a Slack turn in {channel}") as session:
            row = session.execute(query).scalar_one_or_none()
            wait, turns = next_turn(row.turns if row is not None else [], self._clock())
            if row is None:
                session.add(SlackTurns(channel=channel, turns=turns))
            else:
                row.turns = turns
            return wait
