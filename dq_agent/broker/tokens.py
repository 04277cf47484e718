"""The tokens the broker issues: what each may do, on which suites, until when.

A token is kept in a SQLite file in the broker's own folder by the sha256 of its secret part
only, so a copy of the file lets nobody act. The secret text is shown once, when the token is
made, as ``dqb_<id>_<secret>``: the id finds the row, the secret proves the holder.
"""

from __future__ import annotations

import fnmatch
import hashlib
import hmac
import os
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa

from dq_agent.errors import DqAgentError
from dq_agent.triage.mcp_server import READ_ONLY_TOOLS, TOOL_NAMES

__all__ = ["ACTIONS", "TOKENS_FILE", "Refused", "Token", "TokenBook"]

# The named operations a token may allow; ``investigate``: the MCP tools the token names.
ACTIONS = ("check", "read", "correct", "notify", "restart", "investigate")

# The file in the broker's folder that holds them.
TOKENS_FILE = "tokens.db"
PREFIX = "dqb_"
# dqb_, 12 hex chars of id, _, then the url-safe secret (which may itself hold _ and -).
_PRESENTED = re.compile(r"dqb_([0-9a-f]{12})_([A-Za-z0-9_-]{16,})")

_metadata = sa.MetaData()

# Times are ISO text in UTC with a fixed precision, so they sort as text and come back aware.
broker_tokens = sa.Table(
    "broker_tokens",
    _metadata,
    sa.Column("id", sa.String(12), primary_key=True),
    sa.Column("secret_hash", sa.String(64), nullable=False),
    sa.Column("suites", sa.JSON, nullable=False),
    sa.Column("actions", sa.JSON, nullable=False),
    sa.Column("tools", sa.JSON, nullable=False),
    sa.Column("note", sa.Text, nullable=False),
    sa.Column("created_at", sa.String(32), nullable=False),
    sa.Column("expires_at", sa.String(32), nullable=False),
    sa.Column("revoked_at", sa.String(32), nullable=True),
)


@dataclass(frozen=True)
class Token:
    """One issued token, as the broker knows it (never with its secret)."""

    id: str
    suites: tuple[str, ...]
    actions: tuple[str, ...]
    tools: tuple[str, ...]
    note: str
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None

    def allows_suite(self, suite_id: str) -> bool:
        """Whether one of the token's patterns (``crm_*``) covers the suite; case matters."""
        return any(fnmatch.fnmatchcase(suite_id, pattern) for pattern in self.suites)

    def expired(self, now: datetime) -> bool:
        """Whether the token's time is up at ``now``."""
        return _utc(now) >= self.expires_at


class Refused(DqAgentError):
    """A presented token may not do what was asked.

    ``status`` is the HTTP status to answer with (401: not a valid token now; 403: valid, but
    out of its scope), ``reason`` a short code for logs and clients. The message names the
    token's id but never repeats the presented text, which holds the secret.
    """

    def __init__(self, message: str, *, status: int, reason: str, token_id: str | None) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.token_id = token_id


class TokenBook:
    """The broker's tokens in one SQLite file: create, list, revoke, and check presented ones."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        # Made before SQLite opens it, so the file never exists with looser permissions.
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        os.close(fd)
        os.chmod(path, 0o600)
        self._engine = sa.create_engine(f"sqlite:///{path}")
        _metadata.create_all(self._engine)

    def create(
        self,
        *,
        suites: Sequence[str],
        actions: Sequence[str],
        tools: Sequence[str] | None = None,
        ttl: timedelta,
        now: datetime,
        note: str = "",
    ) -> tuple[Token, str]:
        """Issue a token; returns it and its secret text, which is not kept and cannot be
        shown again. ``tools``: the MCP tools of a token that may ``investigate`` (None: the
        read-only ones)."""
        suites = _strings("suites", suites)
        actions = _strings("actions", actions)
        if not suites or any(not pattern for pattern in suites):
            raise ValueError("a token needs at least one suite pattern (e.g. 'crm_*'), none empty")
        if not actions:
            raise ValueError(f"a token needs at least one action; valid: {', '.join(ACTIONS)}")
        for action in actions:
            if action not in ACTIONS:
                raise ValueError(f"unknown action {action!r}; valid: {', '.join(ACTIONS)}")
        tools = _tools(tools, actions)
        if ttl <= timedelta(0):
            raise ValueError(f"a token's ttl must be positive, got {ttl}")
        now = _utc(now)
        token = Token(
            id=secrets.token_hex(6),
            suites=tuple(suites),
            actions=tuple(dict.fromkeys(actions)),
            tools=tuple(tools),
            note=note,
            created_at=now,
            expires_at=now + ttl,
            revoked_at=None,
        )
        secret = secrets.token_urlsafe(32)
        with self._engine.begin() as conn:
            conn.execute(
                broker_tokens.insert().values(
                    id=token.id,
                    secret_hash=_hash(secret),
                    suites=list(token.suites),
                    actions=list(token.actions),
                    tools=list(token.tools),
                    note=token.note,
                    created_at=_iso(token.created_at),
                    expires_at=_iso(token.expires_at),
                    revoked_at=None,
                )
            )
        return token, f"{PREFIX}{token.id}_{secret}"

    def list(self) -> list[Token]:
        """Every token, revoked and expired ones too, newest first."""
        query = sa.select(broker_tokens).order_by(
            broker_tokens.c.created_at.desc(), broker_tokens.c.id
        )
        with self._engine.connect() as conn:
            return [_token(row) for row in conn.execute(query).mappings()]

    def revoke(self, token_id: str, now: datetime) -> Token:
        """Revoke a token from ``now`` on; revoking it again keeps the first time."""
        with self._engine.begin() as conn:
            conn.execute(
                broker_tokens.update()
                .where(broker_tokens.c.id == token_id, broker_tokens.c.revoked_at.is_(None))
                .values(revoked_at=_iso(_utc(now)))
            )
            row = (
                conn.execute(sa.select(broker_tokens).where(broker_tokens.c.id == token_id))
                .mappings()
                .first()
            )
        if row is None:
            raise LookupError(f"no token {token_id!r}")
        return _token(row)

    def authenticate(self, presented: str, now: datetime) -> Token:
        """The token whose secret text was presented, if it is valid at ``now``.

        The row is read on every call, so a revocation made by another process counts at once.
        """
        now = _utc(now)
        match = _PRESENTED.fullmatch(presented.strip())
        if match is None:
            raise Refused(
                f"a broker token looks like {PREFIX}<12 hex chars>_<secret>; "
                "the one presented does not",
                status=401,
                reason="malformed",
                token_id=None,
            )
        token_id, secret = match.groups()
        with self._engine.connect() as conn:
            row = (
                conn.execute(sa.select(broker_tokens).where(broker_tokens.c.id == token_id))
                .mappings()
                .first()
            )
        if row is None:
            raise Refused(
                f"no token {token_id} is known to this broker",
                status=401,
                reason="unknown_token",
                token_id=token_id,
            )
        # The secret is checked before the token's state, so only its holder learns that a
        # token was revoked or has expired.
        if not hmac.compare_digest(_hash(secret), row["secret_hash"]):
            raise Refused(
                f"token {token_id}: the secret does not match",
                status=401,
                reason="bad_secret",
                token_id=token_id,
            )
        token = _token(row)
        if token.revoked_at is not None:
            raise Refused(
                f"token {token_id} was revoked at {_shown(token.revoked_at)}",
                status=401,
                reason="revoked",
                token_id=token_id,
            )
        if token.expired(now):
            raise Refused(
                f"token {token_id} expired at {_shown(token.expires_at)}",
                status=401,
                reason="expired",
                token_id=token_id,
            )
        return token

    def authorize(self, presented: str, *, action: str, suite: str | None, now: datetime) -> Token:
        """The presented token, if it is valid and may do ``action`` on ``suite`` (when the
        operation is on no one suite, pass None and only the action is checked)."""
        if action not in ACTIONS:
            # A misspelt action is the broker's own bug, not the caller's lack of scope.
            raise ValueError(f"unknown action {action!r}; valid: {', '.join(ACTIONS)}")
        token = self.authenticate(presented, now)
        if action not in token.actions:
            raise Refused(
                f"token {token.id} may not `{action}`; it allows: {', '.join(token.actions)}",
                status=403,
                reason="action_not_allowed",
                token_id=token.id,
            )
        if suite is not None and not token.allows_suite(suite):
            raise Refused(
                f"token {token.id} may not act on suite {suite!r}; "
                f"it covers: {', '.join(token.suites)}",
                status=403,
                reason="suite_not_allowed",
                token_id=token.id,
            )
        return token

    def dispose(self) -> None:
        """Close the database connections."""
        self._engine.dispose()


def _strings(name: str, values: Sequence[str]) -> list[str]:
    # A bare string is a Sequence[str] too: "crm_*" would become the patterns c, r, m, _, *.
    if isinstance(values, str):
        raise ValueError(f"{name} must be a list of strings, not the string {values!r}")
    return list(values)


def _tools(tools: Sequence[str] | None, actions: Sequence[str]) -> list[str]:
    """A token's MCP tools: known ones, and only for a token that may investigate."""
    if "investigate" not in actions:
        if tools:
            raise ValueError(
                "tools are what a token may use over MCP: give it the investigate action too"
            )
        return []
    if tools is None:
        return list(READ_ONLY_TOOLS)
    tools = _strings("tools", tools)
    valid = ", ".join(TOOL_NAMES)
    if not tools:
        raise ValueError(f"a token that may investigate needs at least one tool; valid: {valid}")
    for tool in tools:
        if tool not in TOOL_NAMES:
            raise ValueError(f"unknown tool {tool!r}; valid: {valid}")
    return list(dict.fromkeys(tools))


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError(f"expected a timezone-aware time, got naive {moment.isoformat()}")
    return moment.astimezone(UTC)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def _shown(moment: datetime) -> str:
    return f"{moment:%Y-%m-%d %H:%M} UTC"


def _token(row: sa.RowMapping) -> Token:
    revoked_at = row["revoked_at"]
    return Token(
        id=row["id"],
        suites=tuple(row["suites"]),
        actions=tuple(row["actions"]),
        tools=tuple(row["tools"]),
        note=row["note"],
        created_at=datetime.fromisoformat(row["created_at"]),
        expires_at=datetime.fromisoformat(row["expires_at"]),
        revoked_at=None if revoked_at is None else datetime.fromisoformat(revoked_at),
    )
