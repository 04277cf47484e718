"""The outbox: each Slack message written before it is sent, claimed by one sender."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from dq_agent.store.database import (
    Database,
    unheld,
)
from dq_agent.store.models import OutboxMessage

OUTBOX_FIELDS = frozenset(
    {
        "status",
        "attempted_at",
        "sent_at",
        "attempts",
        "channel",
        "ts",
        "error",
        "due_at",
        "claimed_by",
        "claimed_until",
    }
)


class OutboxRepository(Database):
    """Messages to send, claimed before they are sent."""

    # -- the outbox of messages to people -------------------------------------------------------

    def outbox_add(self, messages: Sequence[Mapping[str, Any]], *, at: datetime) -> int:
        """Record messages to send; one whose key is already recorded is left alone.

        Each mapping has ``key``, ``kind``, ``recipient``, ``text`` and optionally
        ``incident_id``, ``correction_id``, ``due_at``. Returns how many were new.
        """
        if not messages:
            return 0
        with self._transaction("record messages to send") as session:
            keys = [m["key"] for m in messages]
            known = set(
                session.scalars(sa.select(OutboxMessage.key).where(OutboxMessage.key.in_(keys)))
            )
            added = 0
            for m in messages:
                if m["key"] in known:
                    continue
                known.add(m["key"])
                session.add(
                    OutboxMessage(
                        key=m["key"],
                        kind=m["kind"],
                        incident_id=m.get("incident_id"),
                        correction_id=m.get("correction_id"),
                        recipient=m["recipient"],
                        text=m["text"],
                        status="pending",
                        created_at=at,
                        due_at=m.get("due_at") or at,
                        attempted_at=None,
                        sent_at=None,
                        attempts=0,
                    )
                )
                added += 1
            return added

    def outbox(
        self,
        *,
        status: str | Collection[str] | None = None,
        kind: str | None = None,
        due_by: datetime | None = None,
        incident_id: int | None = None,
        correction_id: int | None = None,
    ) -> list[OutboxMessage]:
        """Recorded messages, oldest first; ``status`` one or any of several.

        Filter in the query rather than after it: a long-lived incident gathers a reply and
        an update per failing run, and reading them all to find its first messages made
        every run slower than the one before.
        """
        query = sa.select(OutboxMessage).order_by(OutboxMessage.id)
        if isinstance(status, str):
            query = query.where(OutboxMessage.status == status)
        elif status is not None:
            query = query.where(OutboxMessage.status.in_(status))
        if kind is not None:
            query = query.where(OutboxMessage.kind == kind)
        if due_by is not None:
            query = query.where(OutboxMessage.due_at <= due_by)
        if incident_id is not None:
            query = query.where(OutboxMessage.incident_id == incident_id)
        if correction_id is not None:
            query = query.where(OutboxMessage.correction_id == correction_id)
        with self._transaction("read the outbox", read=True) as session:
            return list(session.scalars(query))

    def outbox_waiting(self) -> int:
        """How many messages wait to be sent (counted in the database, not read)."""
        query = sa.select(sa.func.count()).where(OutboxMessage.status == "pending")
        row = self._read_one("count the messages waiting", query)
        assert row is not None  # a count has its one row
        return int(row[0])

    def outbox_update(self, message_id: int, **values: Any) -> None:
        """Record what became of one message (attempted, sent with its ts, failed...)."""
        self._update(OutboxMessage, message_id, values, OUTBOX_FIELDS, "outbox message")

    def outbox_claim(
        self, message_id: int, *, by: str, at: datetime, lease: timedelta
    ) -> OutboxMessage | None:
        """Claim a pending message for sending until ``at + lease``; None when it is no
        longer pending or another sender holds it (its claim has not lapsed).

        One conditional UPDATE: of two senders racing for a row, exactly one changes it.
        """
        claimable = sa.or_(unheld(OutboxMessage.claimed_until, at), OutboxMessage.claimed_by == by)
        claim = (
            sa.update(OutboxMessage)
            .where(OutboxMessage.id == message_id, OutboxMessage.status == "pending")
            .where(claimable)
            .values(claimed_by=by, claimed_until=at + lease)
            .execution_options(synchronize_session=False)
        )
        with self._transaction(f"claim outbox message {message_id}") as session:
            if self.engine.dialect.update_returning:  # SQLite, PostgreSQL: one statement
                return session.scalars(claim.returning(OutboxMessage)).one_or_none()
            if session.execute(claim).rowcount != 1:  # type: ignore[attr-defined]
                return None
            return session.scalars(
                sa.select(OutboxMessage)
                .where(OutboxMessage.id == message_id)
                .execution_options(populate_existing=True)
            ).one()
