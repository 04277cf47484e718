"""The agent's web surfaces as one ASGI application, for uvicorn (``dq-agent serve``) or any
ASGI server behind a reverse proxy (``uvicorn dq_agent.web:app``).

For one project it serves the dashboard, the Slack interactions endpoint
(``POST /slack/actions``), ``/healthz`` and ``/metrics``: the same handlers the daemon's own
HTTP server runs (:mod:`dq_agent.escalate.endpoint`), each request translated to a
:class:`~dq_agent.escalate.endpoint.WebRequest` in one place and run in Starlette's
threadpool. A body is read only when its Content-Length is given and within the path's
limit; anything else is answered from the headers alone and the connection closed. A Slack
click is verified, acknowledged at once and acted on afterwards by one worker, which finishes
the clicks already acknowledged before the application shuts down.

It serves; it runs no schedule (the daemon does).
"""

from __future__ import annotations

import os
import threading
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from dq_agent.agent import connect_slack
from dq_agent.config.loader import Project, load_project
from dq_agent.daemon.service import METRICS_TYPE, Metrics, health
from dq_agent.engine import RunOptions, utc_now
from dq_agent.errors import DqAgentError
from dq_agent.escalate.actions import Actions
from dq_agent.escalate.endpoint import (
    ACTIONS_PATH,
    Clicks,
    Interactions,
    Page,
    Verifier,
    WebApp,
    WebResponse,
    answer,
    body_length,
    limit_for,
    show,
    web_request,
)
from dq_agent.store import Store
from dq_agent.ui.app import Dashboard

__all__ = ["PROJECT_VARIABLE", "app", "build_app"]

# Where ``app`` finds its project folder.
PROJECT_VARIABLE = "DQ_AGENT_PROJECT"
_TEXT = "text/plain; charset=utf-8"


def build_app(
    project_dir: Path,
    *,
    clock: Callable[[], datetime] = utc_now,
    env: Mapping[str, str] | None = None,
) -> Starlette:
    """The web application of the project in ``project_dir``, on its state store (opened
    here, closed when the application shuts down).

    The project is read once: a changed ``dq-agent.yml`` or suite is seen after a restart.
    Raises :class:`~dq_agent.errors.DqAgentError` when ``dq-agent.yml`` is invalid.
    """
    project = load_project(project_dir, env=env)
    if project.settings_issues:
        broken = "; ".join(str(i) for i in project.settings_issues)
        raise DqAgentError(f"dq-agent.yml is invalid: {broken}")
    store = Store.open(project.state_url)
    try:
        return _assemble(project, store, clock, env)
    except BaseException:
        store.close()
        raise


def _assemble(
    project: Project,
    store: Store,
    clock: Callable[[], datetime],
    env: Mapping[str, str] | None,
) -> Starlette:
    options = RunOptions(clock=clock)
    slack = connect_slack(project, store)
    # One action at a time, from a click or the dashboard: the daemon's rule too.
    acting = threading.Lock()
    actions = Actions(project, store, slack, options, env=env) if slack is not None else None

    def act(payload: Mapping[str, Any]) -> None:
        if actions is None:
            return
        with acting:
            actions.handle(payload)

    # Clicks come here unless they come over Socket Mode (the daemon's connection).
    settings = project.settings.slack
    verifier = (
        Verifier(settings.verifying_secret(), store, clock)
        if settings is not None and settings.mode != "socket"
        else None
    )
    clicks = Clicks(act)
    interactions = Interactions(verifier, clicks)
    dashboard = Dashboard(lambda: project, store, options, slack, lock=acting)
    metrics = Metrics()  # no runs here: the daemon counts those

    def healthz() -> tuple[int, str, str]:
        return health(store, role="web", scheduler="none", suites=len(project.suites))

    def metrics_page() -> tuple[int, str, str]:
        return 200, METRICS_TYPE, metrics.render(store, False, slack, now=clock())

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        clicks.start()
        try:
            yield
        finally:
            # The server has stopped taking requests: finish what was acknowledged.
            await run_in_threadpool(clicks.stop)
            store.close()

    async def slack_actions(request: Request) -> Response:
        body = await _body(request)
        if isinstance(body, Response):
            return body
        headers = {k: v for k, v in request.headers.items()}
        status, text = await run_in_threadpool(interactions.accept, body, headers)
        return Response(text, status, media_type=_TEXT)

    routes = [
        Route(ACTIONS_PATH, slack_actions, methods=["POST"]),
        Route("/healthz", _page(healthz), methods=["GET"]),
        Route("/metrics", _page(metrics_page), methods=["GET"]),
        Route("/{path:path}", _web(dashboard.handle), methods=["GET", "POST"]),
    ]
    application = Starlette(routes=routes, lifespan=lifespan)
    # For tests and embedders: wait until every acknowledged click has been acted on.
    application.state.drain = clicks.drain
    return application


async def _body(request: Request) -> bytes | Response:
    """The request's body, read only when its Content-Length allows; or the answer to give
    instead, the body unread and the connection closed after it."""
    length = body_length(request.headers.items(), limit_for(request.url.path))
    if isinstance(length, tuple):
        status, reason = length
        return Response(reason, status, headers={"Connection": "close"}, media_type=_TEXT)
    if length == 0:
        return b""
    try:
        body = await request.body()
    except ClientDisconnect:
        body = b""
    if len(body) != length:  # the client went away, or sent other than it announced
        return Response("incomplete body", 400, headers={"Connection": "close"}, media_type=_TEXT)
    return body


def _page(page: Page) -> Callable[[Request], Any]:
    async def endpoint(request: Request) -> Response:
        status, text, kind = await run_in_threadpool(show, page, request.url.path)
        return Response(text, status, media_type=kind)

    return endpoint


def _web(handle: WebApp) -> Callable[[Request], Any]:
    """The adapter between ASGI and the web application: the request in, the response out."""

    async def endpoint(request: Request) -> Response:
        method = "GET" if request.method == "HEAD" else request.method
        body = await _body(request) if method == "POST" else b""
        if isinstance(body, Response):
            return body
        target = request.scope["path"]
        if request.scope.get("query_string"):
            target += "?" + request.scope["query_string"].decode("latin-1")
        headers = {k: v for k, v in request.headers.items()}
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


class _FromEnvironment:
    """``build_app`` of the project named by ``DQ_AGENT_PROJECT`` (default: the current
    folder), built at the first event the server sends (its startup, normally)."""

    def __init__(self) -> None:
        self._app: Starlette | None = None
        self._lock = threading.Lock()

    def _built(self) -> Starlette:
        with self._lock:
            if self._app is None:
                self._app = build_app(Path(os.environ.get(PROJECT_VARIABLE) or "."))
            return self._app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        built = self._app if self._app is not None else await run_in_threadpool(self._built)
        await built(scope, receive, send)


app = _FromEnvironment()
