"""Slack clicks: recorded before they are answered, then claimed and held under a lease by
one process, acted on once, and let go of a day later."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import NamedTuple, cast

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from dq_agent.errors import StoreError
from dq_agent.store.database import (
    Database,
    unheld,
)
from dq_agent.store.models import (
    SeenRequest,
    SlackClick,
)

# How long a Slack click acted on is kept before it is pruned.
CLICKS_KEPT = timedelta(days=1)

# How often recording requests also lets go of what expired (requests seen, clicks done):
# with every recording, the two deletes were a tenth of a click's cost on PostgreSQL.
PRUNE_REQUESTS_EVERY = timedelta(minutes=1)


class NewClick(NamedTuple):
    """A Slack click to record: request ``key`` (remembered until ``until``), its
    ``payload`` (JSON text), and when it came."""

    key: str
    payload: str
    at: datetime
    until: datetime


def _held_click(claim: str) -> tuple[sa.ColumnElement[bool], ...]:
    """Clicks ``claim`` holds and has not finished."""
    return (SlackClick.claimed_by == claim, SlackClick.done_at.is_(None))


class ClickRepository(Database):
    """The Slack requests seen and the clicks they carried, each claimed by one holder."""

    # When this process last let go of the requests and clicks expired.
    _requests_pruned_at: datetime | None = None

    # -- what the web endpoints remember ---------------------------------------------------------

    def remember_request(self, key: str, *, at: datetime, until: datetime) -> bool:
        """True the first time ``key`` (a request's signature, a Socket Mode envelope's id) is
        seen; False for a replay.

        Kept in the store until ``until``, so every replica, and this one after a restart,
        refuses the same request twice.
        """
        try:
            with self._transaction("remember a request") as session:
                self._prune_requests(session, at)
                if session.get(SeenRequest, key) is not None:
                    return False
                session.add(SeenRequest(key=key, expires_at=until))
        except StoreError as exc:
            if isinstance(exc.__cause__, IntegrityError):  # another replica saw it first
                return False
            raise
        return True

    # -- Slack clicks acknowledged, until acted on -----------------------------------------------

    def accept_click(
        self,
        key: str,
        payload: str,
        *,
        at: datetime,
        until: datetime,
        claim: str,
        lease_until: datetime,
    ) -> int | None:
        """Record a click (``payload``, JSON text) held by ``claim`` until ``lease_until``,
        and remember request ``key`` until ``until``, in one transaction: the click's id, or
        None for a replay (nothing recorded). Done clicks older than a day are pruned, once a
        minute.
        """
        [click_id] = self.accept_clicks(
            [NewClick(key, payload, at, until)], claim=claim, lease_until=lease_until
        )
        return click_id

    def accept_clicks(
        self, clicks: Sequence[NewClick], *, claim: str, lease_until: datetime
    ) -> list[int | None]:
        """:meth:`accept_click` for several clicks with one commit: each one's id, or None
        for a replay (of a request remembered, or of one earlier in ``clicks``).

        When another replica records one of the same requests meanwhile, the transaction
        fails as a whole; each click is then recorded on its own, so only that one is
        refused as a replay.
        """
        if not clicks:
            return []
        try:
            return self._accept_clicks(clicks, claim, lease_until)
        except StoreError as exc:
            if not isinstance(exc.__cause__, IntegrityError):
                raise
        return [self._accept_clicks([c], claim, lease_until)[0] for c in clicks]

    def _accept_clicks(
        self, clicks: Sequence[NewClick], claim: str, lease_until: datetime
    ) -> list[int | None]:
        at = min(c.at for c in clicks)
        try:
            with self._transaction("record Slack clicks") as session:
                self._prune_requests(session, at)
                keys = {c.key for c in clicks}
                seen = set(
                    session.scalars(sa.select(SeenRequest.key).where(SeenRequest.key.in_(keys)))
                )
                new: dict[str, NewClick] = {}
                for click in clicks:  # the first of two alike is new, the second a replay
                    if click.key not in seen:
                        new.setdefault(click.key, click)
                if not new:
                    return [None] * len(clicks)
                # Written as two statements of many rows, into the tables themselves: the
                # ORM's unit of work took most of a click's time, and its bulk insert a
                # fifth to a third of what was left.
                session.execute(
                    sa.insert(cast(sa.Table, SeenRequest.__table__)),
                    [{"key": c.key, "expires_at": c.until} for c in new.values()],
                )
                ids = session.execute(
                    sa.insert(cast(sa.Table, SlackClick.__table__)).returning(
                        SlackClick.key, SlackClick.id, sort_by_parameter_order=True
                    ),
                    [
                        {
                            "key": c.key,
                            "payload": c.payload,
                            "received_at": c.at,
                            "claimed_by": claim,
                            "lease_until": lease_until,
                            "done_at": None,
                        }
                        for c in new.values()
                    ],
                )
                by_key: dict[str, int] = {key: id_ for key, id_ in ids}
                return [by_key[c.key] if new.get(c.key) is c else None for c in clicks]
        except StoreError as exc:
            if isinstance(exc.__cause__, IntegrityError) and len(clicks) == 1:
                return [None]  # another replica took it first
            raise

    def _prune_requests(self, session: Session, at: datetime) -> None:
        """Let go of the requests whose memory expired and the clicks done long enough ago,
        once every :data:`PRUNE_REQUESTS_EVERY` (of ``at``, a recording's time). An expired
        request kept a minute longer is harmless: Slack's signature of it is stale by then."""
        last = self._requests_pruned_at
        if last is not None and last <= at < last + PRUNE_REQUESTS_EVERY:
            return
        self._requests_pruned_at = at
        session.execute(sa.delete(SeenRequest).where(SeenRequest.expires_at < at))
        session.execute(sa.delete(SlackClick).where(SlackClick.done_at < at - CLICKS_KEPT))

    def claim_clicks(
        self, claim: str, *, at: datetime, lease_until: datetime, limit: int
    ) -> list[tuple[int, str]]:
        """The oldest clicks not done that nobody holds (released, or their lease lapsed),
        at most ``limit``, now held by ``claim``: (id, payload) in the order they came.

        Each is taken by a conditional UPDATE whose row count says who won, so of replicas
        racing for a click exactly one gets it (on PostgreSQL the rows another replica is
        taking are skipped, not waited for).
        """
        free = unheld(SlackClick.lease_until, at)
        candidates = (
            sa.select(SlackClick.id, SlackClick.payload)
            .where(SlackClick.done_at.is_(None), free)
            .order_by(SlackClick.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        taken: list[tuple[int, str]] = []
        with self._transaction("claim Slack clicks") as session:
            for click_id, payload in session.execute(candidates).all():
                claimed = session.execute(
                    sa.update(SlackClick)
                    .where(SlackClick.id == click_id, SlackClick.done_at.is_(None), free)
                    .values(claimed_by=claim, lease_until=lease_until)
                    .execution_options(synchronize_session=False)
                )
                if getattr(claimed, "rowcount", 0) == 1:
                    taken.append((click_id, payload))
        return taken

    def hold_click(self, click_id: int, claim: str, *, lease_until: datetime) -> bool:
        """Extend ``claim``'s lease on a click; False when it is done or another holds it."""
        with self._transaction("hold a Slack click") as session:
            held = session.execute(
                sa.update(SlackClick)
                .where(*_held_click(claim), SlackClick.id == click_id)
                .values(lease_until=lease_until)
                .execution_options(synchronize_session=False)
            )
            return getattr(held, "rowcount", 0) == 1

    def hold_clicks(self, claim: str, *, lease_until: datetime) -> int:
        """Extend ``claim``'s lease on every click it holds; how many."""
        with self._transaction("hold Slack clicks") as session:
            held = session.execute(
                sa.update(SlackClick)
                .where(*_held_click(claim))
                .values(lease_until=lease_until)
                .execution_options(synchronize_session=False)
            )
            return int(getattr(held, "rowcount", 0))

    def finish_click(self, click_id: int, claim: str, *, at: datetime) -> bool:
        """Mark a click ``claim`` holds done; False when another holds it now."""
        with self._transaction("mark a Slack click done") as session:
            done = session.execute(
                sa.update(SlackClick)
                .where(*_held_click(claim), SlackClick.id == click_id)
                .values(done_at=at, lease_until=None)
                .execution_options(synchronize_session=False)
            )
            return getattr(done, "rowcount", 0) == 1

    def release_clicks(self, claim: str, *, keep: int | None = None) -> int:
        """Give back the clicks ``claim`` holds and has not acted on (but ``keep``, the one
        being acted on): any replica may take them at once. How many."""
        query = sa.update(SlackClick).where(*_held_click(claim))
        if keep is not None:
            query = query.where(SlackClick.id != keep)
        with self._transaction("release Slack clicks") as session:
            released = session.execute(
                query.values(claimed_by=None, lease_until=None).execution_options(
                    synchronize_session=False
                )
            )
            return int(getattr(released, "rowcount", 0))
