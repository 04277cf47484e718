"""Dashboard sign-ins: sessions ended before they expire, and failed sign-ins."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa

from dq_agent.store.database import Database
from dq_agent.store.models import (
    EndedSession,
    SignInFailure,
)


class SessionRepository(Database):
    """The dashboard's ended sessions and failed sign-ins."""

    def end_session(self, session_id: str, *, until: datetime, at: datetime) -> None:
        """A dashboard session was signed out: refuse its cookie until it would expire."""
        with self._transaction("end a session") as session:
            session.execute(sa.delete(EndedSession).where(EndedSession.expires_at < at))
            if session.get(EndedSession, session_id) is None:
                session.add(EndedSession(session_id=session_id, expires_at=until))

    def session_ended(self, session_id: str) -> bool:
        query = sa.select(EndedSession.session_id).where(EndedSession.session_id == session_id)
        return self._read_one("read ended sessions", query) is not None

    def sign_in_failed(
        self, subjects: Sequence[str], *, at: datetime, forget_before: datetime
    ) -> None:
        """Record a wrong sign-in for each subject (an address, an e-mail)."""
        with self._transaction("record a failed sign-in") as session:
            session.execute(sa.delete(SignInFailure).where(SignInFailure.at < forget_before))
            session.add_all(SignInFailure(subject=s, at=at) for s in subjects)

    def sign_in_failures(self, subject: str, *, since: datetime) -> int:
        """How many wrong sign-ins ``subject`` made since ``since``."""
        with self._transaction("count failed sign-ins", read=True) as session:
            return int(
                session.scalar(
                    sa.select(sa.func.count())
                    .select_from(SignInFailure)
                    .where(SignInFailure.subject == subject, SignInFailure.at >= since)
                )
                or 0
            )
