"""Keeping secrets out of what is shown: passwords in URLs, and known secrets in error text.

A URL's password may sit in its user-info (``user:password@``) or in a query parameter
(``?password=…``, ``?sslpassword=…``, ``?api_key=…``); both are hidden. Drivers often echo
the connection string, or the password alone, in their errors: :func:`redact` hides both.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING
from urllib.parse import quote, quote_plus

if TYPE_CHECKING:
    import sqlalchemy as sa

MASK = "***"

# ``scheme://user:password@``: the password may hold an "@" that is not percent-encoded, so
# it runs to the last "@" before a space, as SQLAlchemy reads it.
PASSWORD_IN_URL = re.compile(r"(://[^:/@\s]*:)\S*@")
# Query parameters that carry a secret: any name ending in one of these words
# (password, sslpassword, api_key, access_token, client_secret, pwd, …), in any case.
_SECRET_NAME = r"[\w.-]*(?:password|passwd|pwd|secret|token|key)"
_SECRET_PARAM = re.compile(rf"([?&;]{_SECRET_NAME}=)[^&;#\s'\"]*", re.IGNORECASE)


def mask_url(url: str | sa.URL) -> str:
    """``url`` as text with its password hidden, wherever in the URL it is."""
    # An SQLAlchemy URL renders its user-info password as *** already.
    return redact(str(url))


def url_secrets(url: sa.URL) -> tuple[str, ...]:
    """The password of ``url`` and the values of its secret query parameters."""
    found = [url.password] if isinstance(url.password, str) else []
    for name, value in url.query.items():
        if re.fullmatch(_SECRET_NAME, name, re.IGNORECASE):
            found.extend([value] if isinstance(value, str) else value)
    return tuple(v for v in found if v)


def redact(text: str, *secrets: str | None) -> str:
    """``text`` with every URL password, and each of ``secrets``, replaced by ``***``."""
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        # Also as a URL carries it (percent-encoded) and as repr() quotes it (escaped).
        forms = (secret, quote(secret, safe=""), quote_plus(secret), repr(secret)[1:-1])
        for form in dict.fromkeys(forms):
            text = text.replace(form, MASK)
    text = PASSWORD_IN_URL.sub(rf"\1{MASK}@", text)
    return _SECRET_PARAM.sub(rf"\1{MASK}", text)
