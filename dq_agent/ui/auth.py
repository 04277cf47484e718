"""Who is at the dashboard: a signed session after a token sign-in, or a proxy's header.

Tokens are kept only as scrypt hashes (``dq-agent hash-token`` makes one). A session is a
cookie holding the e-mail address, an expiry and a random session id, signed with
HMAC-SHA256; signing out records the id in the state store, so the cookie is refused from
then on, by every replica. Every form carries a token derived from the same secret and the
session, so a form posted from another site (which cannot read it) is refused.

Wrong tokens are recorded per client address and per e-mail address: after
:data:`MAX_FAILURES` of either within :data:`FAILURE_WINDOW`, sign-ins from that address or
for that e-mail are refused without checking the token until the window has passed.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import secrets
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

from dq_agent.config.models import UiSettings
from dq_agent.store.sessions import SessionRepository

log = logging.getLogger(__name__)

SESSION_COOKIE = "dq_agent_session"
# scrypt's recommended interactive parameters: about 50 ms and 16 MB a check.
_N, _R, _P = 1 << 14, 8, 1
MAX_FAILURES = 5
FAILURE_WINDOW = timedelta(minutes=15)
# The longest e-mail address a sign-in may give: "email:" and it fit the store's 255
# characters for a failure's subject (real addresses are far shorter).
MAX_EMAIL = 249


def hash_token(token: str) -> str:
    """``scrypt$<salt>$<hash>`` of ``token``, for ``ui.users.<email>.token_hash``."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(token.encode(), salt=salt, n=_N, r=_R, p=_P, dklen=32)
    return f"scrypt${salt.hex()}${digest.hex()}"


def token_matches(token: str, hashed: str) -> bool:
    _, salt, expected = hashed.split("$")
    digest = hashlib.scrypt(token.encode(), salt=bytes.fromhex(salt), n=_N, r=_R, p=_P, dklen=32)
    return hmac.compare_digest(digest.hex(), expected)


class Session(NamedTuple):
    """A signed-in user's session, as its cookie tells it."""

    email: str
    id: str
    expires: datetime


class Gate:
    """Signs sessions and form tokens, and tells who a request comes from."""

    def __init__(
        self, settings: UiSettings, store: SessionRepository, clock: Callable[[], datetime]
    ) -> None:
        self.settings = settings
        self.store = store
        self._clock = clock
        secret = settings.session_secret
        self._key = (
            secret.get_secret_value().encode() if secret is not None else secrets.token_bytes(32)
        )

    def throttled(self, email: str, client: str) -> bool:
        """Whether sign-ins from ``client`` or for ``email`` are refused for now."""
        since = self._clock() - FAILURE_WINDOW
        subjects = (f"addr:{client}", f"email:{_normal(email)}")
        if all(self.store.sign_in_failures(s, since=since) < MAX_FAILURES for s in subjects):
            return False
        log.warning(
            "dashboard sign-in refused without checking the token: too many failures "
            "from %s or for %r",
            client,
            _normal(email),
        )
        return True

    def sign_in(self, email: str, token: str, client: str) -> str | None:
        """A session cookie value for a right token, else None (and the failure recorded)."""
        email = _normal(email)
        user = self.settings.users.get(email)
        # A wrong address costs the same time as a wrong token: no guessing who exists.
        hashed = user.token_hash if user else hash_token(secrets.token_hex(8))
        if not token_matches(token, hashed) or user is None:
            now = self._clock()
            self.store.sign_in_failed(
                [f"addr:{client}", f"email:{email}"], at=now, forget_before=now - FAILURE_WINDOW
            )
            log.warning("dashboard sign-in failed from %s for %r", client, email)
            return None
        expires = int((self._clock() + self.settings.session_ttl).timestamp())
        text = f"{email}|{expires}|{secrets.token_urlsafe(16)}"
        body = base64.urlsafe_b64encode(text.encode()).decode()
        return f"{body}.{self._sign('session', body)}"

    def sign_out(self, cookies: Mapping[str, str]) -> None:
        """End the cookie's session for good (a copy of the cookie no longer works)."""
        session = self.session(cookies)
        if session is not None:
            self.store.end_session(session.id, until=session.expires, at=self._clock())

    def visitor(
        self, headers: Mapping[str, str], cookies: Mapping[str, str]
    ) -> tuple[str | None, str]:
        """Who a request comes from, with one look at the store: the signed-in user's
        e-mail, lower-cased (None: nobody), and the session cookie when it holds a live
        session ("" when it does not: no cookie, or a user the trusted proxy names)."""
        session = self.session(cookies)
        live = cookies[SESSION_COOKIE] if session else ""
        header = self.settings.trusted_header
        if header:
            value = headers.get(header.lower(), "").strip().lower()
            if value:
                return value, live
        return (session.email if session else None), live

    def session(self, cookies: Mapping[str, str]) -> Session | None:
        """The cookie's session while it is signed, unexpired, not signed out, and its user
        still known; else None."""
        body, _, signature = cookies.get(SESSION_COOKIE, "").partition(".")
        if not body or not hmac.compare_digest(signature, self._sign("session", body)):
            return None
        try:
            email, expires, session_id = base64.urlsafe_b64decode(body).decode().rsplit("|", 2)
            ends = datetime.fromtimestamp(int(expires), UTC)
        except ValueError:  # not three fields (an older cookie), or not a number
            return None
        if ends < self._clock() or email not in self.settings.users:
            return None
        if self.store.session_ended(session_id):
            return None
        return Session(email, session_id, ends)

    def form_token(self, headers: Mapping[str, str], cookies: Mapping[str, str]) -> str:
        """The token every form of this user's pages carries."""
        return self.token_of(*self.visitor(headers, cookies))

    def token_of(self, user: str | None, session: str) -> str:
        """The form token of a :meth:`visitor`: bound to the live session cookie, or to the
        proxy's user when there is none."""
        return self._sign("form", session or f"header:{user or ''}")

    def _sign(self, purpose: str, text: str) -> str:
        return hmac.new(self._key, f"{purpose}|{text}".encode(), hashlib.sha256).hexdigest()


def _normal(email: str) -> str:
    return email.strip().lower()
