"""The agent's HTTP surfaces as one ASGI application (Starlette), and uvicorn running it.

One application serves Slack's interactions endpoint (:data:`ACTIONS_PATH`), plain GET pages
(``/healthz``, ``/metrics``) and, when given one, a web application (the dashboard), with
the handlers of :mod:`dq_agent.escalate.endpoint`: each request translated to a
:class:`~dq_agent.escalate.endpoint.WebRequest` in one place and run in Starlette's
threadpool. A body is read only when its Content-Length is given and within the path's
limit; anything else is answered from the headers alone and the connection closed. A Slack
click is verified, recorded in the state store, acknowledged at once and acted on afterwards
by one worker; at shutdown the worker acts on the clicks already acknowledged for a grace
period, then gives the rest back to the store for the next process (or another replica).

``dq-agent serve`` runs it on uvicorn's command line machinery (:mod:`dq_agent.web`); the
daemon, ``ui``, ``interactions`` and the demo run it on uvicorn in a thread
(:class:`InteractionsServer`).
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from dq_agent.escalate.endpoint import (
    ACTIONS_PATH,
    REQUEST_TIMEOUT_S,
    Act,
    Clicks,
    Interactions,
    Page,
    Verifier,
    WebApp,
    WebResponse,
    answer,
    limit_for,
    show,
    web_request,
)
from dq_agent.serving import BackgroundServer, body_length, tcp_socket

__all__ = ["InteractionsServer", "asgi_app"]

log = logging.getLogger(__name__)

_TEXT = "text/plain; charset=utf-8"


def _alive() -> tuple[int, str, str]:
    return 200, _TEXT, "ok"


def asgi_app(
    interactions: Interactions,
    clicks: Clicks,
    *,
    pages: Mapping[str, Page] | None = None,
    app: WebApp | None = None,
    on_shutdown: Callable[[], None] | None = None,
) -> Starlette:
    """The application: Slack's clicks to ``interactions`` (acted on by ``clicks``, started
    and finished with the application), GET ``pages`` (``/healthz`` at least), and every
    other request to ``app`` (404 without one). ``on_shutdown`` runs last, once ``clicks``
    has stopped (acted on the acknowledged clicks, or given back those it had no time for)."""
    routes = {"/healthz": _alive, **(pages or {})}

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        clicks.start()
        # What the process made to get here (modules, the project, the application) lives
        # while this serves: the collector's full passes leave it alone until then. They
        # went through all of it, pausing every request for about 100 ms.
        gc.freeze()
        try:
            yield
        finally:
            gc.unfreeze()
            # The server has stopped taking requests: act on what was acknowledged, within
            # the grace, and give the rest back to the store.
            await run_in_threadpool(clicks.stop)
            if on_shutdown is not None:
                await run_in_threadpool(on_shutdown)

    async def slack_actions(request: Request) -> Response:
        body = await _body(request)
        if isinstance(body, Response):
            return body
        headers = dict(request.headers.items())
        status, text = await interactions.accept_async(body, headers)
        return Response(text, status, media_type=_TEXT)

    application = Starlette(
        routes=[
            Route(ACTIONS_PATH, slack_actions, methods=["POST"]),
            *(Route(path, _page(page), methods=["GET"]) for path, page in routes.items()),
            Route("/{path:path}", _web(app), methods=["GET", "POST"]),
        ],
        lifespan=lifespan,
    )
    # For tests and embedders: wait until every acknowledged click has been acted on.
    application.state.drain = clicks.drain
    return application


async def _body(request: Request) -> bytes | Response:
    """The request's body, read only when its Content-Length allows; or the answer to give
    instead, the body unread and the connection closed after it."""
    length = body_length(request.headers.items(), limit_for(request.scope["path"]))
    if isinstance(length, tuple):
        status, reason = length
        return Response(reason, status, headers={"Connection": "close"}, media_type=_TEXT)
    if length == 0:
        return b""
    try:
        # A client that stops sending mid-body is dropped, not waited for (a deadline on
        # this task: wait_for would make a task of its own for every request).
        async with asyncio.timeout(REQUEST_TIMEOUT_S):
            body = await request.body()
    except (ClientDisconnect, TimeoutError):
        body = b""
    if len(body) != length:  # the client went away, or sent other than it announced
        return Response("incomplete body", 400, headers={"Connection": "close"}, media_type=_TEXT)
    return body


def _page(page: Page) -> Callable[[Request], Any]:
    async def endpoint(request: Request) -> Response:
        status, text, kind = await run_in_threadpool(show, page, request.url.path)
        return Response(text, status, media_type=kind)

    return endpoint


def _web(handle: WebApp | None) -> Callable[[Request], Any]:
    """The adapter between ASGI and the web application: the request in, the response out."""

    async def endpoint(request: Request) -> Response:
        method = "GET" if request.method == "HEAD" else request.method
        body = await _body(request) if method == "POST" else b""
        if isinstance(body, Response):
            return body
        if handle is None:
            return Response("not found", 404, media_type=_TEXT)
        target = request.scope["path"]
        if request.scope.get("query_string"):
            target += "?" + request.scope["query_string"].decode("latin-1")
        headers = dict(request.headers.items())
        # The peer's address, or the client's that a trusted proxy forwarded (uvicorn's
        # --forwarded-allow-ips decides which proxies are trusted).
        client = request.client.host if request.client else ""
        parsed = web_request(method, target, headers, body, client)
        if isinstance(parsed, tuple):
            return Response(parsed[1], parsed[0], media_type=_TEXT)
        response: WebResponse = await run_in_threadpool(answer, handle, parsed)
        sent = Response(response.body, response.status, media_type=response.content_type)
        for name, value in response.headers:
            sent.headers.append(name, value)
        return sent

    return endpoint


class InteractionsServer:
    """:func:`asgi_app` on uvicorn in a background thread, until :meth:`stop`.

    Without a ``verifier`` (Slack not configured, or its clicks come over Socket Mode) the
    actions path answers 404. The daemon adds its own pages (``/healthz`` with details,
    ``/metrics``) through ``pages``. The port is taken when the server is made (0: any free
    one; :attr:`base_url` tells which).
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
        # Clicks are recorded in the store where the verifier remembers requests seen.
        self._clicks = Clicks(act, verifier.store if verifier is not None else None)
        self._interactions = Interactions(verifier, self._clicks)
        application = asgi_app(self._interactions, self._clicks, pages=pages, app=app)
        sock = tcp_socket(host, port)
        bound_host, bound_port = sock.getsockname()[:2]
        self.base_url = f"http://{bound_host!s}:{bound_port}"
        self._server = BackgroundServer(application, sock, name="http")

    @property
    def refused(self) -> int:
        """Slack requests refused as forged, stale or replayed."""
        return self._interactions.refused

    def start(self) -> InteractionsServer:
        """Start serving; return once the server accepts requests."""
        self._server.start()
        return self

    def drain(self) -> None:
        """Wait until every acknowledged click has been acted on."""
        self._clicks.drain()

    def stop(self) -> None:
        """Stop taking requests; finish the ones in flight and the clicks acknowledged (those
        not acted on within the grace are given back to the store)."""
        self._server.stop()

    def __enter__(self) -> InteractionsServer:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()
