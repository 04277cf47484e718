"""The agent's HTTP server: the Slack interactions endpoint ``POST /slack/actions``, plain
GET pages (``/healthz``, ``/metrics``) and, when given one, a web application (the dashboard).

Slack wants an answer within three seconds, so a click is verified (signature and
timestamp, and a request seen before is refused as a replay), acknowledged with an empty
200, and acted on afterwards by one worker thread, in the order clicks arrived.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.cookies import CookieError, SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

log = logging.getLogger(__name__)

ACTIONS_PATH = "/slack/actions"
# Slack's own rule: a request older than five minutes is refused.
REPLAY_WINDOW_S = 300
MAX_BODY = 1 << 20

Act = Callable[[Mapping[str, Any]], None]


class Verifier:
    """Checks Slack's request signature and refuses replays of a request already seen."""

    def __init__(self, signing_secret: str, clock: Callable[[], float] = time.time) -> None:
        from slack_sdk.signature import Clock, SignatureVerifier

        class _Clock(Clock):
            def now(self) -> float:
                return clock()

        self._verifier = SignatureVerifier(signing_secret, clock=_Clock())
        self._clock = clock
        self._seen: dict[str, float] = {}
        self._lock = threading.Lock()

    def check(self, body: bytes, headers: Mapping[str, str]) -> str | None:
        """None when the request is genuine and new, else why it is refused."""
        timestamp = headers.get("x-slack-request-timestamp", "")
        signature = headers.get("x-slack-signature", "")
        if not timestamp or not signature:
            return "missing Slack signature headers"
        if not self._verifier.is_valid(body, timestamp, signature):
            # The verifier also refuses timestamps more than five minutes away.
            return "bad signature or stale timestamp"
        now = self._clock()
        with self._lock:
            self._seen = {s: t for s, t in self._seen.items() if now - t <= REPLAY_WINDOW_S}
            if signature in self._seen:
                return "replayed request"
            self._seen[signature] = now
        return None


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


@dataclass(frozen=True)
class WebResponse:
    status: int
    body: str = ""
    content_type: str = "text/html; charset=utf-8"
    headers: tuple[tuple[str, str], ...] = ()


# The web application: None when it has no such route (the server answers 404).
WebApp = Callable[[WebRequest], WebResponse | None]


def _alive() -> tuple[int, str, str]:
    return 200, "text/plain; charset=utf-8", "ok"


class InteractionsServer:
    """Serves :data:`ACTIONS_PATH` and GET routes (``/healthz`` at least) until :meth:`stop`.

    Without a ``verifier`` (Slack not configured) the actions path answers 404. The daemon
    adds its own pages (``/healthz`` with details, ``/metrics``) through ``pages``.
    """

    def __init__(
        self,
        verifier: Verifier | None,
        act: Act,
        *,
        host: str = "127.0.0.1",
        port: int = 8787,
        pages: Mapping[str, Page] | None = None,
        app: WebApp | None = None,
    ) -> None:
        self._verifier = verifier
        self._act = act
        self._pages: dict[str, Page] = {"/healthz": _alive, **(pages or {})}
        self._app = app
        self._work: queue.Queue[Mapping[str, Any] | None] = queue.Queue()
        self._server = ThreadingHTTPServer((host, port), self._handler())
        self._server.daemon_threads = True
        self._threads = [
            threading.Thread(
                target=self._server.serve_forever,
                kwargs={"poll_interval": 0.05},  # so that stop() returns promptly
                name="slack-http",
                daemon=True,
            ),
            threading.Thread(target=self._worker, name="slack-actions", daemon=True),
        ]
        self.refused = 0
        self._started = False

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> InteractionsServer:
        for thread in self._threads:
            thread.start()
        self._started = True
        return self

    def drain(self) -> None:
        """Wait until every acknowledged click has been acted on."""
        self._work.join()

    def stop(self) -> None:
        """Stop taking clicks; finish the ones already acknowledged."""
        if self._started:  # shutdown() waits for a serve_forever() that never began otherwise
            self._server.shutdown()
            self._work.put(None)
            for thread in self._threads:
                thread.join(timeout=30)
        self._server.server_close()
        self._started = False

    def __enter__(self) -> InteractionsServer:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

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

    def _accept(self, body: bytes, headers: Mapping[str, str]) -> tuple[int, str]:
        if self._verifier is None:
            return 404, "Slack is not configured (dq-agent.yml has no slack: section)"
        reason = self._verifier.check(body, headers)
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
        self._work.put(payload)
        return 200, ""

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length > MAX_BODY:
                    self._reply(413, "request too large")
                    return
                body = self.rfile.read(length) if length else b""
                headers = {k.lower(): v for k, v in self.headers.items()}
                if urlsplit(self.path).path == ACTIONS_PATH:
                    self._reply(*server._accept(body, headers))
                    return
                try:
                    fields = parse_qs(body.decode("utf-8"), keep_blank_values=True)
                except UnicodeDecodeError:
                    self._reply(400, "expected a UTF-8 form")
                    return
                self._web("POST", headers, {k: v[-1] for k, v in fields.items()})

            def do_GET(self) -> None:
                page = server._pages.get(urlsplit(self.path).path)
                if page is None:
                    self._web("GET", {k.lower(): v for k, v in self.headers.items()}, {})
                    return
                try:
                    status, kind, text = page()
                except Exception as exc:  # a broken page must answer, not hang the client
                    log.exception("serving %s failed", self.path)
                    status, kind, text = 500, "text/plain; charset=utf-8", str(exc)
                self._reply(status, text, kind)

            def _web(self, method: str, headers: dict[str, str], form: dict[str, str]) -> None:
                if server._app is None:
                    self._reply(404, "not found")
                    return
                url = urlsplit(self.path)
                query = {k: v[-1] for k, v in parse_qs(url.query).items()}
                request = WebRequest(method, url.path, query, headers, _cookies(headers), form)
                try:
                    response = server._app(request)
                except Exception:  # a broken page must answer, not hang the client
                    log.exception("serving %s %s failed", method, url.path)
                    response = WebResponse(500, "internal error", "text/plain; charset=utf-8")
                if response is None:
                    self._reply(404, "not found")
                    return
                self._reply(response.status, response.body, response.content_type, response.headers)

            def _reply(
                self,
                status: int,
                text: str,
                kind: str = "text/plain; charset=utf-8",
                extra: tuple[tuple[str, str], ...] = (),
            ) -> None:
                payload = text.encode("utf-8")
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(payload)))
                for name, value in extra:
                    self.send_header(name, value)
                self.end_headers()
                if payload:
                    self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                log.debug("slack endpoint: " + format, *args)

        return Handler


def _cookies(headers: Mapping[str, str]) -> dict[str, str]:
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(headers.get("cookie", ""))
    except CookieError:
        return {}
    return {name: morsel.value for name, morsel in jar.items()}
