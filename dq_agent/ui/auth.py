"""Who is at the dashboard: a signed session after a token sign-in, or a proxy's header.

Tokens are kept only as scrypt hashes (``dq-agent hash-token`` makes one). A session is a
cookie holding the e-mail address and an expiry, signed with HMAC-SHA256; every form carries
a token derived from the same secret and the session, so a form posted from another site
(which cannot read it) is refused.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Callable, Mapping
from datetime import datetime

from dq_agent.config.models import UiSettings

SESSION_COOKIE = "dq_agent_session"
# scrypt's recommended interactive parameters: about 50 ms and 16 MB a check.
_N, _R, _P = 1 << 14, 8, 1


def hash_token(token: str) -> str:
    """``scrypt$<salt>$<hash>`` of ``token``, for ``ui.users.<email>.token_hash``."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(token.encode(), salt=salt, n=_N, r=_R, p=_P, dklen=32)
    return f"scrypt${salt.hex()}${digest.hex()}"


def token_matches(token: str, hashed: str) -> bool:
    _, salt, expected = hashed.split("$")
    digest = hashlib.scrypt(token.encode(), salt=bytes.fromhex(salt), n=_N, r=_R, p=_P, dklen=32)
    return hmac.compare_digest(digest.hex(), expected)


class Gate:
    """Signs sessions and form tokens, and tells who a request comes from."""

    def __init__(self, settings: UiSettings, clock: Callable[[], datetime]) -> None:
        self.settings = settings
        self._clock = clock
        secret = settings.session_secret
        self._key = (
            secret.get_secret_value().encode() if secret is not None else secrets.token_bytes(32)
        )

    def sign_in(self, email: str, token: str) -> str | None:
        """A session cookie value for a right token, else None."""
        user = self.settings.users.get(email.strip().lower())
        # A wrong address costs the same time as a wrong token: no guessing who exists.
        hashed = user.token_hash if user else hash_token(secrets.token_hex(8))
        if not token_matches(token, hashed) or user is None:
            return None
        expires = int((self._clock() + self.settings.session_ttl).timestamp())
        body = base64.urlsafe_b64encode(f"{email.strip().lower()}|{expires}".encode()).decode()
        return f"{body}.{self._sign('session', body)}"

    def identify(self, headers: Mapping[str, str], cookies: Mapping[str, str]) -> str | None:
        """The signed-in user's e-mail, lower-cased, or None."""
        header = self.settings.trusted_header
        if header:
            value = headers.get(header.lower(), "").strip().lower()
            if value:
                return value
        return self._session_user(cookies.get(SESSION_COOKIE, ""))

    def form_token(self, headers: Mapping[str, str], cookies: Mapping[str, str]) -> str:
        """The token every form of this user's pages carries."""
        return self._sign("form", self._session_key(headers, cookies))

    def form_token_ok(
        self, given: str, headers: Mapping[str, str], cookies: Mapping[str, str]
    ) -> bool:
        return bool(given) and hmac.compare_digest(given, self.form_token(headers, cookies))

    def _session_key(self, headers: Mapping[str, str], cookies: Mapping[str, str]) -> str:
        # Bound to the session cookie, or to the proxy's user when there is none.
        session = cookies.get(SESSION_COOKIE, "")
        if self._session_user(session):
            return session
        return f"header:{self.identify(headers, cookies) or ''}"

    def _session_user(self, value: str) -> str | None:
        body, _, signature = value.partition(".")
        if not body or not hmac.compare_digest(signature, self._sign("session", body)):
            return None
        try:
            email, _, expires = base64.urlsafe_b64decode(body).decode().partition("|")
            if int(expires) < self._clock().timestamp():
                return None
        except ValueError:
            return None
        return email if email in self.settings.users else None

    def _sign(self, purpose: str, text: str) -> str:
        return hmac.new(self._key, f"{purpose}|{text}".encode(), hashlib.sha256).hexdigest()
