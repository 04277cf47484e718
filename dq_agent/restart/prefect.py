"""``type: prefect`` — run a Prefect deployment with Prefect's own client (``prefect-client``).

``start`` reads the deployment (``GET /deployments/name/{flow}/{deployment}``, or
``GET /deployments/{id}``), then creates a flow run from it
(``POST /deployments/{id}/create_flow_run``) with the configured parameters, the tag
``dq-agent`` and the restart's key as its ``idempotency_key``: Prefect answers a second create
with the same key with the run the first one made, so a start retried after a timeout (or after
a crash of the agent) follows that run rather than starting another. ``poll`` reads
``GET /flow_runs/{id}`` and maps the run's state type: ``COMPLETED`` is a success, ``FAILED``,
``CRASHED`` and ``CANCELLED`` a failure with the state's message; anything else is still on
its way.

The settings the client reads during these calls are set explicitly, over any Prefect profile
or ``PREFECT_*`` variable: the connector's URL, key and timeout, no custom headers, HTTP/1.1,
the server's CSRF protection honoured when it has it on (its ``/csrf-token``), and no retries
of its own — neither of requests (``client.max_retries: 0``; and a 408/429/502/503, which the
client would still wait on once, is answered at once by a response hook) nor of connections (a
transport of ours, with verified TLS). The agent's schedule retries a transient failure (1, 5
and 15 minutes later). Importing ``prefect`` sets up Prefect's SDK telemetry unless
``DO_NOT_TRACK`` is set in the environment (its only switch), so it is set before the first
import; the settings' own analytics flag is off as well. Nothing is sent but to ``api_url``.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import httpx
import pydantic

from dq_agent.config.models import PrefectConnector, PrefectRestart
from dq_agent.restart.base import PipelineRun, RestartError, RunState

if TYPE_CHECKING:
    from prefect.client.orchestration import SyncPrefectClient
    from prefect.client.schemas.objects import FlowRun
    from prefect.client.schemas.responses import DeploymentResponse

__all__ = ["TAG", "PrefectTarget"]

TAG = "dq-agent"  # on every flow run a restart creates
_STATES: dict[str, RunState] = {
    "SCHEDULED": "queued",
    "PENDING": "queued",
    "PAUSED": "running",  # waiting for input or a resume: it started, and may still end well
    "RUNNING": "running",
    "CANCELLING": "running",
    "COMPLETED": "success",
    "FAILED": "failed",
    "CRASHED": "failed",
    "CANCELLED": "failed",
}
# HTTP statuses that may pass: a timeout, a rate limit, server or proxy trouble.
_TRANSIENT = frozenset({408, 429})
# Those Prefect's client waits on before it gives up, even with no retries (it sleeps after its
# last try, up to the Retry-After asked): answered at once instead, the agent's schedule retries.
_NO_WAIT = frozenset({408, 429, 502, 503})


def _offline() -> None:
    """Before ``prefect`` is imported: its SDK telemetry off (it reads this variable once, on
    import; there is no other switch)."""
    os.environ["DO_NOT_TRACK"] = "1"


class PrefectTarget:
    """Creates a flow run of one Prefect deployment and follows it until it is done."""

    def __init__(self, connector: PrefectConnector, spec: PrefectRestart, *, suite: str) -> None:
        self._connector = connector
        self._spec = spec
        self._suite = suite
        self._api_url = connector.api_url.rstrip("/")
        self._api_key = connector.api_key.get_secret_value() if connector.api_key else None
        self.label = f"prefect deployment {spec.deployment}"

    def start(self, key: str) -> PipelineRun:
        with self._client("create a flow run") as (client, ui_url):
            deployment = self._deployment(client)
            flow_run = client.create_flow_run_from_deployment(
                deployment.id,
                parameters=dict(self._spec.parameters),
                tags=[TAG],
                idempotency_key=key,
            )
            return _pipeline_run(flow_run, ui_url)

    def poll(self, run: PipelineRun) -> PipelineRun:
        if run.done:
            return run
        try:
            flow_run_id = uuid.UUID(run.run_id)
        except ValueError:
            raise self._error(f"{run.run_id!r} is not a flow run id", transient=False) from None
        with self._client(f"read flow run {run.run_id}") as (client, ui_url):
            from prefect.exceptions import ObjectNotFound

            try:
                flow_run = client.read_flow_run(flow_run_id)
            except ObjectNotFound as exc:
                raise self._error(
                    f"flow run {run.run_id} no longer exists ({_detail(exc)})", transient=False
                ) from exc
            return _pipeline_run(flow_run, ui_url)

    def _deployment(self, client: SyncPrefectClient) -> DeploymentResponse:
        from prefect.exceptions import ObjectNotFound

        name = self._spec.deployment
        try:
            if "/" in name:
                return client.read_deployment_by_name(name)
            return client.read_deployment(uuid.UUID(name))
        except ObjectNotFound as exc:
            raise self._error(
                f"Prefect has no deployment {name!r} ({_detail(exc)})", transient=False
            ) from exc

    @contextmanager
    def _client(self, what: str) -> Iterator[tuple[SyncPrefectClient, str]]:
        """A client with every setting it reads given here, and Prefect's errors as ours."""
        _offline()
        from prefect.client.orchestration import SyncPrefectClient
        from prefect.exceptions import ObjectNotFound
        from prefect.settings import get_current_settings, temporary_settings

        updates: dict[str, Any] = {
            "api.url": self._api_url,
            "api.key": self._api_key,
            "api.request_timeout": self._connector.timeout,
            "api.enable_http2": False,
            "client.max_retries": 0,
            "client.retry_extra_codes": set(),
            "client.custom_headers": {},
            "client.csrf_support_enabled": True,
            "server.analytics_enabled": False,
        }
        try:
            with temporary_settings(updates=updates):
                ui_url = get_current_settings().ui_url or self._api_url
                client = SyncPrefectClient(
                    self._api_url,
                    api_key=self._api_key,
                    httpx_settings={
                        "timeout": httpx.Timeout(self._connector.timeout),
                        "http2": False,
                        # Given, so the client keeps it as it is: no connection retries of its
                        # own either (it would set three, with their waits).
                        "transport": httpx.HTTPTransport(retries=0),
                        "event_hooks": {"response": [_answer_at_once]},
                    },
                )
                with client:
                    yield client, ui_url.rstrip("/")
        except RestartError:
            raise
        except ObjectNotFound as exc:
            raise self._error(f"{what}: not found ({_detail(exc)})", transient=False) from exc
        except (httpx.HTTPStatusError, _Unavailable) as exc:
            status = exc.response.status_code
            transient = status in _TRANSIENT or status >= 500
            text = f"{what} failed: HTTP {status}"
            detail = _detail(exc)
            raise self._error(f"{text}: {detail}" if detail else text, transient=transient) from exc
        except (httpx.TimeoutException, httpx.TransportError) as exc:
            raise self._error(
                f"cannot reach Prefect at {self._api_url} ({what}): {exc.__class__.__name__}",
                transient=True,
            ) from exc
        except pydantic.ValidationError as exc:
            raise self._error(
                f"Prefect answered {what} with something unexpected: {exc.error_count()} "
                "fields do not fit",
                transient=False,
            ) from exc

    def _error(self, message: str, *, transient: bool) -> RestartError:
        return RestartError(f"{self.label} (suite {self._suite}): {message}", transient=transient)


class _Unavailable(Exception):
    """An answer that may pass, raised as it arrives (see ``_NO_WAIT``)."""

    def __init__(self, response: httpx.Response) -> None:
        super().__init__(f"HTTP {response.status_code}")
        self.response = response


def _answer_at_once(response: httpx.Response) -> None:
    if response.status_code in _NO_WAIT:
        response.read()
        raise _Unavailable(response)


def _pipeline_run(flow_run: FlowRun, ui_url: str) -> PipelineRun:
    state = flow_run.state
    kind = state.type.value if state is not None else "SCHEDULED"
    mapped = _STATES.get(kind, "running")  # a state type added later is most likely in between
    detail = (state.name or kind.title()) if state is not None else "Scheduled"
    if mapped == "failed" and state is not None and state.message:
        detail = f"{detail}: {state.message}"
    return PipelineRun(
        run_id=str(flow_run.id),
        state=mapped,
        detail=detail,
        url=f"{ui_url}/runs/flow-run/{flow_run.id}",
    )


def _detail(exc: Exception) -> str:
    """What the server said: FastAPI's ``detail``, or Prefect's validation error body."""
    response = getattr(exc, "response", None)
    http_exc = getattr(exc, "http_exc", None)
    if response is None and http_exc is not None:
        response = getattr(http_exc, "response", None)
    if not isinstance(response, httpx.Response):
        return str(exc)[:200]
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:200]
    if not isinstance(body, dict):
        return str(body)[:200]
    if isinstance(body.get("detail"), str):
        return str(body["detail"])
    problems = body.get("exception_detail")
    if isinstance(problems, list) and problems:
        parts = []
        for item in problems:
            if isinstance(item, dict):
                loc = ".".join(str(p) for p in item.get("loc") or [])
                parts.append(f"{loc}: {item.get('msg')}" if loc else str(item.get("msg")))
        return "; ".join(parts)[:500]
    message = body.get("exception_message") or body.get("detail")
    return str(message)[:200] if message else str(body)[:200]
