"""An ASGI application on uvicorn in a background thread: how the daemon, ``ui``,
``interactions``, the demo and the broker serve beside their own work; and the rule every one
of them applies to a request's body before reading it.

The socket is bound by the caller when the server is made, so the port (0: any free one) is
known at once and a port already taken fails there; requests that come before the server is
up wait in the socket's backlog. Logging stays as the agent configured it.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import uvicorn
from starlette.types import ASGIApp

from dq_agent.errors import DqAgentError

__all__ = ["SERVER_OPTIONS", "BackgroundServer", "body_length", "tcp_socket"]

# How long stopping waits for requests in flight (an acknowledged click's work is then
# finished by the application's shutdown).
GRACEFUL_S = 30
# How long starting waits for the application's startup.
STARTUP_S = 30
# How uvicorn runs every surface, wherever it runs: by itself (dq-agent serve) or in a thread.
SERVER_OPTIONS: dict[str, Any] = {
    "lifespan": "on",
    "access_log": False,
    "server_header": False,
    "timeout_graceful_shutdown": GRACEFUL_S,
}


def tcp_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host`` (IPv6 when it has a colon) and ``port``."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server((host, port), family=family)


class BackgroundServer:
    """Serves ``app`` on ``sock`` with uvicorn in a thread named ``name``, from
    :meth:`start` until :meth:`stop`; over TLS when given a ``cert`` and its ``key``."""

    def __init__(
        self,
        app: ASGIApp,
        sock: socket.socket,
        *,
        name: str,
        cert: Path | None = None,
        key: Path | None = None,
        timeout_keep_alive: int = 5,
    ) -> None:
        config = uvicorn.Config(
            app,
            ssl_certfile=cert,
            ssl_keyfile=key,
            log_config=None,  # the agent's logging stays as the agent set it
            log_level="warning",
            timeout_keep_alive=timeout_keep_alive,
            **SERVER_OPTIONS,
        )
        try:
            config.load()  # a certificate that will not load fails here, not in the thread
        except BaseException:
            sock.close()
            raise
        self._socket = sock
        self._name = name
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name=name, daemon=True
        )

    def start(self) -> None:
        """Start serving; return once the application has started and takes requests."""
        self._thread.start()
        waited = 0.0
        while not self._server.started:
            if not self._thread.is_alive() or waited > STARTUP_S:
                self.stop()
                raise DqAgentError(f"the {self._name} server did not start")
            self._thread.join(0.005)
            waited += 0.005

    def stop(self) -> None:
        """Stop taking requests, finish the ones in flight and the application's shutdown."""
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout=GRACEFUL_S + 30)
        self._socket.close()


def body_length(headers: Iterable[tuple[str, str]], limit: int) -> int | tuple[int, str]:
    """The length of a request's body, from its headers alone (every name and value as
    received, repeated ones too); or the answer to give instead of reading it (status and
    reason)."""
    given: set[str] = set()
    for name, value in headers:
        name = name.lower()
        if name == "transfer-encoding":
            return 411, "send the body with a Content-Length (chunked bodies are not accepted)"
        if name == "content-length":
            given.add(value.strip())
    if not given:
        return 0
    if len(given) > 1:
        return 400, "conflicting Content-Length headers"
    [text] = given
    if not text.isascii() or not text.isdigit():
        return 400, "Content-Length is not a number of bytes"
    digits = text.lstrip("0")
    if len(digits) > len(str(limit)) or int(digits or "0") > limit:
        return 413, f"request too large: at most {limit} bytes here"
    return int(digits or "0")
