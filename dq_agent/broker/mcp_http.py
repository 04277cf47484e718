"""The investigation tools over MCP's streamable HTTP, served by the broker to its tokens.

``dq-agent broker --mcp-listen URL`` serves, at ``/mcp``, the tools ``dq-agent mcp`` serves
over stdio (the same server, :func:`~dq_agent.triage.mcp_server.build_server`), run in the
broker's process on the broker's reading of the project and its state store. Every HTTP
request must carry ``Authorization: Bearer <token>`` of a token that may ``investigate``; it is
checked at each request, so a revoked token is refused from its next request on. The token
decides what the request sees: the tools it names (``tools/list`` lists only those) and the
incidents of the suites its patterns cover. Every tool call and every refusal is a line of the
broker's audit log (operation ``mcp:<tool>``).

Each request stands alone (stateless streamable HTTP, JSON answers): no session outlives the
request whose token was checked.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import anyio
from mcp.server.context import ServerRequestContext
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from dq_agent.broker.server import Broker
from dq_agent.broker.tokens import Refused, Token
from dq_agent.errors import DqAgentError
from dq_agent.serving import BackgroundServer, tcp_socket
from dq_agent.triage.mcp_server import Grant, ToolCall, build_server

__all__ = ["MCP_PATH", "McpServer", "mcp_app"]


MCP_PATH = "/mcp"
# Where a request's checked token rides in its ASGI scope, from the door to the tools.
_TOKEN = "dq_agent.broker.token"
# How much of a refused request is read to name, in the audit log, the tool it called.
_PEEK = 64 * 1024


class _Door:
    """The MCP endpoint behind the broker's tokens: a request gets through only with a token
    that may investigate, valid now, and carries it on to the tools."""

    def __init__(self, broker: Broker, manager: StreamableHTTPSessionManager) -> None:
        self.broker = broker
        self.manager = manager

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        auth = Headers(scope=scope).get("authorization", "")
        scheme, _, presented = auth.partition(" ")
        try:
            if scheme.lower() != "bearer" or not presented.strip():
                raise Refused(
                    "no token: send Authorization: Bearer <token>",
                    status=401,
                    reason="no_token",
                    token_id=None,
                )
            token = await anyio.to_thread.run_sync(self._authorize, presented)
        except Refused as refused:
            await self._refuse(refused, scope, receive, send)
            return
        scope[_TOKEN] = token
        await self.manager.handle_request(scope, receive, send)

    def _authorize(self, presented: str) -> Token:
        return self.broker.tokens.authorize(
            presented, action="investigate", suite=None, now=self.broker.now()
        )

    async def _refuse(self, refused: Refused, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer with the refusal (naming the token's id at most, never its secret), after
        writing it to the audit log with the tool the request called, if it called one."""
        method = str(scope.get("method", ""))
        # A POST carries one JSON-RPC message; a GET (an event stream) or DELETE, none.
        operation, target = _called(await _body(receive)) if method == "POST" else ("mcp", method)
        await anyio.to_thread.run_sync(
            lambda: self.broker.audit.append(
                at=self.broker.now(),
                token_id=refused.token_id,
                suite=None,
                operation=operation,
                target=target,
                outcome="refused",
                detail=str(refused),
            )
        )
        headers = {"WWW-Authenticate": 'Bearer realm="dq-agent broker"'}
        response = JSONResponse(
            {"error": str(refused), "reason": refused.reason},
            status_code=refused.status,
            headers=headers if refused.status == 401 else None,
        )
        await response(scope, receive, send)


async def _body(receive: Receive) -> bytes | None:
    """The request's body, or None when it is longer than is worth reading for the record."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > _PEEK:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _called(body: bytes | None) -> tuple[str, str | None]:
    """The audit operation and target of a JSON-RPC request: ``mcp:<tool>`` and the incident
    it names for a tool call, ``mcp`` and the method otherwise."""
    try:
        message = json.loads(body) if body else None
    except ValueError:
        message = None
    if not isinstance(message, dict):
        return "mcp", None
    method = message.get("method")
    params = message.get("params")
    if method == "tools/call" and isinstance(params, dict) and isinstance(params.get("name"), str):
        arguments = params.get("arguments")
        incident = arguments.get("incident_id") if isinstance(arguments, dict) else None
        shown = isinstance(incident, int) and not isinstance(incident, bool)
        return f"mcp:{params['name']}", f"incident {incident}" if shown else None
    return "mcp", method if isinstance(method, str) else None


class _Grants:
    """What each request's token gives it: its tools, its suites, the broker's gateway."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker

    def __call__(self, ctx: ServerRequestContext[Any]) -> Grant:
        scope = ctx.request.scope if ctx.request is not None else {}
        token = scope.get(_TOKEN)
        if not isinstance(token, Token):  # only what came through the door reaches the tools
            return Grant(
                gateway=self.broker.gateway, tools=frozenset(), holder="an unchecked request"
            )

        def record(call: ToolCall) -> None:
            self.broker.audit.append(
                at=self.broker.now(),
                token_id=token.id,
                suite=call.suite,
                operation=f"mcp:{call.tool}",
                target=None if call.incident is None else f"incident {call.incident}",
                outcome=call.outcome,
                detail=call.detail,
            )

        return Grant(
            gateway=self.broker.gateway,
            tools=frozenset(token.tools),
            covers=token.allows_suite,
            holder=f"token {token.id}",
            record=record,
        )


def mcp_app(broker: Broker) -> Starlette:
    """The ASGI app: MCP's streamable HTTP at ``/mcp``, behind the broker's tokens."""
    manager = StreamableHTTPSessionManager(
        build_server(_Grants(broker)), stateless=True, json_response=True
    )

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        async with manager.run():
            yield

    return Starlette(routes=[Route(MCP_PATH, _Door(broker, manager))], lifespan=lifespan)


class McpServer:
    """Serves :func:`mcp_app` with uvicorn in a thread, on ``https://host:port`` (with
    ``cert`` and ``key``) or ``http://127.0.0.1:port`` on the loopback only."""

    def __init__(
        self, broker: Broker, listen: str, *, cert: Path | None = None, key: Path | None = None
    ) -> None:
        parts = urlsplit(listen)
        host, port = parts.hostname or "", parts.port or 0
        if parts.scheme not in ("http", "https") or not host or parts.path not in ("", MCP_PATH):
            raise DqAgentError(
                f"--mcp-listen {listen}: expected https://host:port or http://127.0.0.1:port"
            )
        if parts.scheme == "http" and host not in ("127.0.0.1", "localhost"):
            raise DqAgentError(
                f"--mcp-listen {listen}: without TLS the broker listens on the loopback only; "
                "give https://… with --cert and --key"
            )
        if parts.scheme == "https" and (cert is None or key is None):
            raise DqAgentError(f"--mcp-listen {listen}: HTTPS needs --cert and --key")
        # Bound here, so the port (0: any free one) is known at once and taken or not.
        sock = tcp_socket(host, port)
        bound_port = sock.getsockname()[1]
        shown = f"[{host}]" if ":" in host else host
        self.url = f"{parts.scheme}://{shown}:{bound_port}{MCP_PATH}"
        tls = parts.scheme == "https"
        self._server = BackgroundServer(
            mcp_app(broker),
            sock,
            name="broker MCP",
            cert=cert if tls else None,
            key=key if tls else None,
        )

    def start(self) -> McpServer:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()

    def __enter__(self) -> McpServer:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()
