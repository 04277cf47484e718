"""A small threaded HTTP server on 127.0.0.1 that hands each request to an emulator.

Every emulator answers ``GET /_sandbox/state`` with its whole state as JSON, so a test or the
demo can assert what a client wrote.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

STATE_PATH = "/_sandbox/state"


@dataclass(frozen=True)
class Request:
    """One HTTP request, decoded just enough for an emulator to route it."""

    method: str
    path: str  # percent-decoding is left to the emulator: some services put ':' and '!' in it
    query: Mapping[str, list[str]]
    headers: Mapping[str, str]  # lower-case names
    body: bytes = b""

    def json(self) -> Any:
        return json.loads(self.body.decode("utf-8")) if self.body else None

    def form(self) -> dict[str, str]:
        """A form-encoded body (or a JSON object body) as a flat mapping."""
        if self.headers.get("content-type", "").startswith("application/json"):
            data = self.json() or {}
            return {str(k): v for k, v in data.items()}
        parsed = parse_qs(self.body.decode("utf-8"), keep_blank_values=True)
        return {k: v[-1] for k, v in parsed.items()}

    def param(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[-1] if values else default


@dataclass
class Response:
    status: int = 200
    body: Any = None  # JSON-serialisable, or bytes, or None for an empty body
    headers: dict[str, str] = field(default_factory=dict)
    # Close the connection without answering, as a network that drops it would (the request
    # itself was handled).
    drop: bool = False


class Emulator(Protocol):
    """A stand-in for one service: routes requests, exposes its state."""

    name: str

    def handle(self, request: Request) -> Response: ...

    def state(self) -> dict[str, Any]: ...


class LoopbackServer:
    """Serves one emulator on 127.0.0.1 in a background thread until :meth:`stop`."""

    def __init__(self, emulator: Emulator, port: int = 0) -> None:
        self.emulator = emulator
        self._server = ThreadingHTTPServer(("127.0.0.1", port), _handler_for(emulator))
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},  # so that stop() returns promptly
            name=f"sandbox-{emulator.name}",
            daemon=True,
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> LoopbackServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> LoopbackServer:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()


def _handler_for(emulator: Emulator) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Headers and body go out in two writes: without this, delayed ACKs stall each reply.
        disable_nagle_algorithm = True

        def _dispatch(self) -> None:
            parts = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            request = Request(
                method=self.command,
                path=parts.path,
                query=parse_qs(parts.query, keep_blank_values=True),
                headers={k.lower(): v for k, v in self.headers.items()},
                body=self.rfile.read(length) if length else b"",
            )
            if request.method == "GET" and request.path == STATE_PATH:
                response = Response(200, emulator.state())
            else:
                try:
                    response = emulator.handle(request)
                except Exception as exc:  # an emulator bug must surface as a 500, not a hang
                    response = Response(500, {"error": f"{exc.__class__.__name__}: {exc}"})
            self._send(response)

        def _send(self, response: Response) -> None:
            if response.drop:
                self.close_connection = True
                return
            if isinstance(response.body, bytes):
                payload, kind = response.body, "application/octet-stream"
            elif response.body is None:
                payload, kind = b"", "application/json"
            else:
                payload, kind = json.dumps(response.body).encode("utf-8"), "application/json"
            self.send_response(response.status)
            headers = {"Content-Type": f"{kind}; charset=utf-8", **response.headers}
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if payload and self.command != "HEAD":
                self.wfile.write(payload)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _dispatch

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: tests and the demo print their own story."""

    return Handler
