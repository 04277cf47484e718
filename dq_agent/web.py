"""A project's web surfaces as one ASGI application, for uvicorn (``dq-agent serve``) or any
ASGI server behind a reverse proxy (``uvicorn dq_agent.web:app``).

For one project it serves the dashboard, the Slack interactions endpoint
(``POST /slack/actions``), ``/healthz`` and ``/metrics``: the application the daemon runs
too (:func:`dq_agent.escalate.server.asgi_app`), on its own state store.

It serves; it runs no schedule (the daemon does).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.types import Receive, Scope, Send

from dq_agent.agent import connect_slack
from dq_agent.config.loader import Project, load_project
from dq_agent.daemon.service import METRICS_TYPE, Metrics, health
from dq_agent.engine import RunOptions, utc_now
from dq_agent.errors import DqAgentError
from dq_agent.escalate.actions import Actions
from dq_agent.escalate.endpoint import Clicks, Interactions, Verifier
from dq_agent.escalate.server import asgi_app
from dq_agent.store import Store
from dq_agent.ui.app import Dashboard

__all__ = ["PROJECT_VARIABLE", "app", "build_app"]

# Where ``app`` finds its project folder.
PROJECT_VARIABLE = "DQ_AGENT_PROJECT"


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
    # Recorded in the store before they are acknowledged, where clicks come here.
    clicks = Clicks(act, store if verifier is not None else None, clock=clock)
    interactions = Interactions(verifier, clicks)
    dashboard = Dashboard(lambda: project, store, options, slack, lock=acting)
    metrics = Metrics()  # no runs here: the daemon counts those

    def healthz() -> tuple[int, str, str]:
        return health(store, role="web", scheduler="none", suites=len(project.suites))

    def metrics_page() -> tuple[int, str, str]:
        return 200, METRICS_TYPE, metrics.render(store, False, slack, now=clock())

    return asgi_app(
        interactions,
        clicks,
        pages={"/healthz": healthz, "/metrics": metrics_page},
        app=dashboard.handle,
        on_shutdown=store.close,
    )


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
