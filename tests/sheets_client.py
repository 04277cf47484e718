"""A real ``gspread`` client whose Sheets API calls reach a loopback emulator instead of Google.

gspread has no base-URL setting, so the session rewrites ``https://sheets.googleapis.com`` to the
emulator; any other host (the Drive API, Google's token endpoint) is refused, so nothing a test
does can reach the internet.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import gspread
import requests
from gspread.http_client import BackOffHTTPClient, HTTPClient

SHEETS_ORIGIN = "https://sheets.googleapis.com"


class LoopbackSession(requests.Session):
    """A ``requests`` session that sends Sheets API calls to ``base_url``."""

    def __init__(self, base_url: str) -> None:
        super().__init__()
        self.base_url = base_url.rstrip("/")
        # Environment settings (proxies, REQUESTS_CA_BUNDLE) must not steer loopback calls.
        self.trust_env = False

    def request(
        self, method: str, url: str | bytes, *args: Any, **kwargs: Any
    ) -> requests.Response:
        text = url.decode() if isinstance(url, bytes) else url
        if text.startswith(SHEETS_ORIGIN + "/"):
            text = self.base_url + text[len(SHEETS_ORIGIN) :]
        elif not text.startswith(self.base_url + "/"):
            raise requests.ConnectionError(
                f"the loopback session refuses to reach {text}: only the Sheets API is emulated"
            )
        return super().request(method, text, *args, **kwargs)


def sheets_client(base_url: str, *, backoff: bool = False) -> gspread.Client:
    """A gspread client for the emulator at ``base_url``; close ``.http_client.session`` after.

    ``backoff=True`` uses gspread's ``BackOffHTTPClient``, which retries 408/429/5xx answers
    after sleeping 2, 4, 8, … seconds (``time.sleep`` in ``gspread.http_client``).
    """
    http_client: type[HTTPClient] = BackOffHTTPClient if backoff else HTTPClient
    # auth=None with a session of our own makes gspread skip google-auth entirely.
    return gspread.Client(
        auth=None,  # type: ignore[arg-type]
        session=LoopbackSession(base_url),
        http_client=http_client,
    )


@contextmanager
def open_sheets_client(base_url: str, *, backoff: bool = False) -> Iterator[gspread.Client]:
    """:func:`sheets_client`, with its session closed on exit (unclosed sockets warn)."""
    client = sheets_client(base_url, backoff=backoff)
    try:
        yield client
    finally:
        client.http_client.session.close()
