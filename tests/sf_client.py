"""A real ``simple_salesforce.Salesforce`` client whose calls reach a loopback emulator.

simple-salesforce always builds ``https://`` URLs (the instance URL only gives host and port), so
the session rewrites them to the emulator's plain-HTTP address. SOAP logins go to
``https://login.salesforce.com`` (or ``test.``), which is sent to the emulator too; any other host
is refused, so nothing a test does can reach the internet.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import requests
from simple_salesforce.api import Salesforce

LOGIN_ORIGINS = ("https://login.salesforce.com", "https://test.salesforce.com")


class Clock:
    """The emulator's notion of now, moved by the test."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


class LoopbackSession(requests.Session):
    """A ``requests`` session that sends Salesforce calls to the emulator at ``base_url``."""

    def __init__(self, base_url: str) -> None:
        super().__init__()
        self.base_url = base_url.rstrip("/")
        self.secure_origin = "https://" + urlsplit(self.base_url).netloc
        # This machine sets REQUESTS_CA_BUNDLE and maybe proxies: neither may steer loopback calls.
        self.trust_env = False

    def request(
        self, method: str, url: str | bytes, *args: Any, **kwargs: Any
    ) -> requests.Response:
        text = url.decode() if isinstance(url, bytes) else url
        for origin in (self.secure_origin, *LOGIN_ORIGINS):
            if text.startswith(origin + "/"):
                text = self.base_url + text[len(origin) :]
                break
        else:
            raise requests.ConnectionError(
                f"the loopback session refuses to reach {text}: only the emulator is reachable"
            )
        return super().request(method, text, *args, **kwargs)


def salesforce_client(
    base_url: str, session_id: str = "sandbox", *, version: str = "59.0"
) -> Salesforce:
    """A client for the emulator at ``base_url``; close ``.session`` after (sockets warn)."""
    return Salesforce(
        instance_url=base_url,
        session_id=session_id,
        version=version,
        session=LoopbackSession(base_url),
    )


def salesforce_login_client(
    base_url: str, username: str, password: str, security_token: str, *, version: str = "59.0"
) -> Salesforce:
    """A client that logs in with SOAP (username, password, token), as production configs do.

    Logging in happens here, and again whenever the session expires (a 401 INVALID_SESSION_ID).
    """
    return Salesforce(
        username=username,
        password=password,
        security_token=security_token,
        version=version,
        session=LoopbackSession(base_url),
    )


@contextmanager
def open_salesforce_client(
    base_url: str, session_id: str = "sandbox", *, version: str = "59.0"
) -> Iterator[Salesforce]:
    """:func:`salesforce_client`, with its session closed on exit."""
    client = salesforce_client(base_url, session_id, version=version)
    try:
        yield client
    finally:
        client.session.close()
