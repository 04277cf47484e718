"""A ``requests`` session for API clients: default timeouts, and endpoint overrides.

Neither simple-salesforce nor gspread lets a caller choose the scheme or host they speak to
(both always use https://); pointing them at a loopback emulator means rewriting the URL of
each request on its way out.
"""

from __future__ import annotations

from typing import Any

import requests


class ApiSession(requests.Session):
    """Sends every request with a timeout; optionally rewrites one URL prefix to another."""

    def __init__(
        self, *, timeout: float, rewrite_from: str | None = None, rewrite_to: str | None = None
    ) -> None:
        super().__init__()
        self._timeout = timeout
        self._from = rewrite_from.rstrip("/") if rewrite_from else None
        self._to = rewrite_to.rstrip("/") if rewrite_to else None
        if self._to is not None and self._to.startswith("http://"):
            # A loopback endpoint: proxies and CA bundles from the environment do not apply.
            self.trust_env = False

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("timeout", self._timeout)
        text = url.decode() if isinstance(url, bytes) else url
        if self._from and self._to and text.startswith(self._from):
            text = self._to + text[len(self._from) :]
        return super().request(str(method), text, *args, **kwargs)
