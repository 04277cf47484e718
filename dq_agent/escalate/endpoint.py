"""What the agent's HTTP surfaces do, apart from the server that runs them
(:mod:`dq_agent.escalate.server`): the Slack interactions endpoint ``POST /slack/actions``,
plain GET pages (``/healthz``, ``/metrics``) and the web application's requests and answers.

Slack wants an answer within three seconds, so a click is verified (signature and
timestamp, and a request seen before, by any replica sharing the state store, is refused as
a replay), acknowledged with an empty 200, and acted on afterwards by one worker thread, in
the order clicks arrived.

A body is read only when its Content-Length is given and within the path's limit; anything
else is answered from the headers alone and the connection closed.
"""

from __future__ import annotations

import json
import logging
import queue
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.cookies import CookieError, SimpleCookie
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from dq_agent.errors import DqAgentError

if TYPE_CHECKING:
    from dq_agent.store import Store

log = logging.getLogger(__name__)

ACTIONS_PATH = "/slack/actions"
# Slack's own rule: a request older than five minutes is refused.
REPLAY_WINDOW_S = 300
# Slack's interaction payloads carry the whole message clicked: allow them room.
MAX_BODY = 1 << 20
# The dashboard's forms are a few hidden fields.
MAX_FORM = 64 << 10
# A client that stops sending mid-request is dropped after this long.
REQUEST_TIMEOUT_S = 30
# Slack's timestamps are Unix seconds.
_TIMESTAMP = re.compile(r"[0-9]{1,12}")

Act = Callable[[Mapping[str, Any]], None]


def _utc_now() -> datetime:
    return datetime.now(UTC)


class Verifier:
    """Checks Slack's request signature and refuses replays of a request already seen.

    Signatures seen are kept in the state store, so a replay is refused by every replica
    sharing it, and after a restart.
    """

    def __init__(
        self, signing_secret: str, store: Store, clock: Callable[[], datetime] = _utc_now
    ) -> None:
        from slack_sdk.signature import Clock, SignatureVerifier

        class _Clock(Clock):
            def now(self) -> float:
                return clock().timestamp()

        self._verifier = SignatureVerifier(signing_secret, clock=_Clock())
        self._store = store
        self._clock = clock

    def check(self, body: bytes, headers: Mapping[str, str]) -> str | None:
        """None when the request is genuine and new, else why it is refused.

        Raises :class:`~dq_agent.errors.StoreError` when the store cannot tell a replay.
        """
        timestamp = headers.get("x-slack-request-timestamp", "")
        signature = headers.get("x-slack-signature", "")
        if not timestamp or not signature:
            return "missing Slack signature headers"
        if not _TIMESTAMP.fullmatch(timestamp):
            return "X-Slack-Request-Timestamp is not a number"
        try:
            valid = self._verifier.is_valid(body, timestamp, signature)
        except UnicodeDecodeError:
            return "the body is not UTF-8"
        if not valid:
            # The verifier also refuses timestamps more than five minutes away.
            return "bad signature or stale timestamp"
        # The signature stays valid until five minutes after its timestamp, which may be
        # ahead of this clock: remember it at least that long.
        now = self._clock()
        signed = datetime.fromtimestamp(int(timestamp), UTC)
        until = max(now, signed) + timedelta(seconds=REPLAY_WINDOW_S)
        if not self._store.remember_request(signature, at=now, until=until):
            return "replayed request"
        return None


class Clicks:
    """Clicks already answered, acted on by one worker thread, in the order they arrived."""

    def __init__(self, act: Act) -> None:
        self._act = act
        self._work: queue.Queue[Mapping[str, Any] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._worker, name="slack-actions", daemon=True)
        self._started = False

    def start(self) -> None:
        self._thread.start()
        self._started = True

    def put(self, payload: Mapping[str, Any]) -> None:
        self._work.put(payload)

    def drain(self) -> None:
        """Wait until every click put here has been acted on."""
        self._work.join()

    def stop(self) -> None:
        """Act on the clicks already put here, then stop."""
        if self._started:
            self._work.put(None)
            self._thread.join(timeout=30)
            self._started = False

    def _worker(self) -> None:
        while True:
            payload = self._work.get()
            try:
                if payload is None:
                    return
                self._act(payload)
            except Exception:  # one bad click must not stop the others
                log.exception("acting on a Slack interaction failed")
            finally:
                self._work.task_done()


class Interactions:
    """Slack's requests to :data:`ACTIONS_PATH`: checked, answered, and the genuine clicks
    handed to :class:`Clicks`. Without a ``verifier`` (Slack not configured, or its clicks
    come over Socket Mode) every request is answered 404."""

    def __init__(self, verifier: Verifier | None, clicks: Clicks) -> None:
        self._verifier = verifier
        self._clicks = clicks
        self.refused = 0

    def accept(self, body: bytes, headers: Mapping[str, str]) -> tuple[int, str]:
        """The answer to one request (HTTP status, text), its lower-cased headers given."""
        if self._verifier is None:
            return 404, "Slack clicks do not come here (no slack: section, or slack.mode: socket)"
        malformed = _malformed(body, headers)
        if malformed is not None:
            log.warning("refused a malformed Slack interaction: %s", malformed)
            return 400, malformed
        try:
            reason = self._verifier.check(body, headers)
        except DqAgentError as exc:  # Slack retries a request that was not answered 200
            log.error("cannot check a Slack interaction for replays: %s", exc)
            return 503, "cannot check the request for replays now: try again"
        if reason is not None:
            self.refused += 1
            log.warning("refused a Slack interaction: %s", reason)
            return 401, reason
        try:
            form = parse_qs(body.decode("utf-8"), strict_parsing=True)
            payload = json.loads(form["payload"][0])
        except (ValueError, KeyError, UnicodeDecodeError):
            return 400, "expected a form with a JSON payload"
        if not isinstance(payload, dict):
            return 400, "expected a JSON object payload"
        self._clicks.put(payload)
        return 200, ""


# A GET route: () -> (HTTP status, content type, body).
Page = Callable[[], tuple[int, str, str]]


@dataclass(frozen=True)
class WebRequest:
    """One request for the web application, parsed: lower-cased headers, cookies, form."""

    method: str
    path: str
    query: Mapping[str, str]
    headers: Mapping[str, str]
    cookies: Mapping[str, str]
    form: Mapping[str, str] = field(default_factory=dict)
    # The address the request came from (the proxy's, behind one); "" when unknown.
    client: str = ""
    # Who is signed in, once the web application has found out.
    user: str | None = None


@dataclass(frozen=True)
class WebResponse:
    status: int
    body: str = ""
    content_type: str = "text/html; charset=utf-8"
    headers: tuple[tuple[str, str], ...] = ()


# The web application: None when it has no such route (the server answers 404).
WebApp = Callable[[WebRequest], WebResponse | None]


def limit_for(path: str) -> int:
    """The largest body accepted at ``path``."""
    return MAX_BODY if path == ACTIONS_PATH else MAX_FORM


def web_request(
    method: str, target: str, headers: Mapping[str, str], body: bytes, client: str
) -> WebRequest | tuple[int, str]:
    """The web application's request, from the request line's target (path and query),
    the lower-cased headers and the body read; or the answer to give instead (status, why)."""
    url = urlsplit(target)
    query = {k: v[-1] for k, v in parse_qs(url.query).items()}
    form: dict[str, str] = {}
    if method == "POST":
        try:
            fields = parse_qs(body.decode("utf-8"), keep_blank_values=True)
        except UnicodeDecodeError:
            return 400, "expected a UTF-8 form"
        form = {k: v[-1] for k, v in fields.items()}
    return WebRequest(method, url.path, query, headers, cookies_of(headers), form, client)


def answer(app: WebApp, request: WebRequest) -> WebResponse:
    """``app``'s response to ``request``: 404 where it has no route, 500 where it broke."""
    try:
        response = app(request)
    except Exception:  # a broken page must answer, not hang the client
        log.exception("serving %s %s failed", request.method, request.path)
        return WebResponse(500, "internal error", "text/plain; charset=utf-8")
    if response is None:
        return WebResponse(404, "not found", "text/plain; charset=utf-8")
    return response


def show(page: Page, path: str) -> tuple[int, str, str]:
    """A GET route's answer (status, text, content type); 500 where it broke."""
    try:
        status, kind, text = page()
    except Exception as exc:  # a broken page must answer, not hang the client
        log.exception("serving %s failed", path)
        return 500, str(exc), "text/plain; charset=utf-8"
    return status, text, kind


def _malformed(body: bytes, headers: Mapping[str, str]) -> str | None:
    """Why a Slack request cannot even be checked, if it cannot."""
    timestamp = headers.get("x-slack-request-timestamp")
    if timestamp and not _TIMESTAMP.fullmatch(timestamp):
        return "X-Slack-Request-Timestamp is not a number"
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return "the body is not UTF-8"
    return None


def cookies_of(headers: Mapping[str, str]) -> dict[str, str]:
    """The request's cookies, from its lower-cased headers; none when they do not parse."""
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(headers.get("cookie", ""))
    except CookieError:
        return {}
    return {name: morsel.value for name, morsel in jar.items()}
