"""A loopback stand-in for the Prefect 3 REST API (server or Cloud), served by
:class:`LoopbackServer`.

Point the real client at ``server.base_url + API_PREFIX``. Served, in Prefect's JSON shapes:

- ``GET  /api/deployments/name/{flow_name}/{deployment_name}`` and ``GET /api/deployments/{id}``
  (a ``DeploymentResponse``; 404 ``{"detail": "Deployment not found"}``);
- ``POST /api/deployments/{id}/create_flow_run`` (a ``FlowRun``, 201 when created; with an
  ``idempotency_key`` already used for the deployment's flow, the existing run and 200, as the
  server's unique index on ``(flow_id, idempotency_key)`` makes it);
- ``GET  /api/flow_runs/{id}`` (a ``FlowRun`` with its ``state``; 404 ``Flow run not found``);
- ``GET  /api/csrf-token`` answers 422 ``CSRF protection is disabled.``, as a server with its
  default settings does (so the client stops asking); ``GET /api/health`` and
  ``GET /api/admin/version``.

A body or path the server would reject is a 422 in the server's words:
``{"exception_message": "Invalid request received.", "exception_detail": [{"loc", "msg",
"type", …}], "request_body": …}``. With an ``api_key`` every call needs
``Authorization: Bearer <key>`` (else 401, as Prefect Cloud answers).

Faults on demand: :meth:`PrefectEmulator.fail_next` answers the next calls with an HTTP error
(a 503 from a load balancer, a 429 with ``Retry-After``) before looking at them;
:meth:`PrefectEmulator.drop_next_answer` creates the next flow run and closes the connection
without answering; :meth:`PrefectEmulator.forget_fields` rejects fields of a flow run to create
as an older server does.

Flow runs move on the emulator's clock, computed when someone looks: ``Scheduled`` for
:data:`PICKUP_DELAY_S` (a worker has not picked it up), ``Pending`` for one more second, then
``Running`` for the deployment's ``duration_s``, then the deployment's ``outcome``:
``Completed``, ``Failed``, ``Crashed`` or ``Cancelled`` (with its ``message``).

Where the emulation stops: no flows, work pools or workers as objects of their own; no
parameter schema enforcement, schedules, tags filters or pagination; the run's name is
``dq-run-<n>``; only the endpoints above exist (others are 404 ``Not Found``).
"""

from __future__ import annotations

import copy
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any
from urllib.parse import unquote

from dq_agent_sandbox.http import Request, Response

__all__ = ["API_PREFIX", "OUTCOMES", "PICKUP_DELAY_S", "VERSION", "PrefectEmulator"]

JsonObject = dict[str, Any]

API_PREFIX = "/api"
VERSION = "3.4.0"  # what GET /api/admin/version answers
PICKUP_DELAY_S = 1.0  # how long a new flow run waits for a worker
PENDING_S = 1.0  # how long the worker takes to start it
DEFAULT_DURATION_S = 60.0
# The final state each outcome ends in: (state type, state name).
OUTCOMES: dict[str, tuple[str, str]] = {
    "completed": ("COMPLETED", "Completed"),
    "failed": ("FAILED", "Failed"),
    "crashed": ("CRASHED", "Crashed"),
    "cancelled": ("CANCELLED", "Cancelled"),
}
_DEFAULT_MESSAGES = {
    "completed": "All states completed.",
    "failed": "Flow run encountered an exception: RuntimeError: the flow failed",
    "crashed": "Flow run infrastructure exited with non-zero status code 137.",
    "cancelled": "Flow run was cancelled.",
}
_CREATE_FIELDS = frozenset(
    {
        "state",
        "name",
        "parameters",
        "enforce_parameter_schema",
        "context",
        "infrastructure_document_id",
        "empirical_policy",
        "tags",
        "idempotency_key",
        "parent_task_run_id",
        "work_queue_name",
        "job_variables",
        "labels",
    }
)
_NAMESPACE = uuid.UUID("0b6f3f7e-2d55-4c1e-9a55-3e8c5d1f2a90")


def _iso(at: float | None) -> str | None:
    return None if at is None else datetime.fromtimestamp(at, UTC).isoformat()


def _uid(*parts: object) -> str:
    return str(uuid.uuid5(_NAMESPACE, "/".join(str(p) for p in parts)))


class _PrefectError(Exception):
    def __init__(self, status: int, body: JsonObject) -> None:
        super().__init__(str(body))
        self.status = status
        self.body = body


def _not_found(what: str) -> _PrefectError:
    return _PrefectError(404, {"detail": what})


def _invalid(loc: list[str | int], msg: str, kind: str, given: Any, body: Any) -> _PrefectError:
    """A 422 as the server's validation error handler words it."""
    detail = [{"type": kind, "loc": loc, "msg": msg, "input": given}]
    return _PrefectError(
        422,
        {
            "exception_message": "Invalid request received.",
            "exception_detail": detail,
            "request_body": body,
        },
    )


def _uuid_in_path(text: str) -> str:
    try:
        return str(uuid.UUID(text))
    except ValueError:
        msg = (
            "Input should be a valid UUID, invalid character: expected an optional prefix "
            "of `urn:uuid:` followed by [0-9a-fA-F-]"
        )
        raise _invalid(["path", "id"], msg, "uuid_parsing", text, None) from None


@dataclass
class _Deployment:
    id: str
    flow_name: str
    name: str
    flow_id: str
    parameters: JsonObject
    outcome: str
    message: str
    duration_s: float
    work_pool: str
    created_at: float

    def view(self) -> JsonObject:
        created = _iso(self.created_at)
        return {
            "id": self.id,
            "created": created,
            "updated": created,
            "name": self.name,
            "version": None,
            "description": None,
            "flow_id": self.flow_id,
            "concurrency_limit": None,
            "global_concurrency_limit": None,
            "concurrency_options": None,
            "paused": False,
            "schedules": [],
            "job_variables": {},
            "parameters": copy.deepcopy(self.parameters),
            "pull_steps": None,
            "tags": [],
            "labels": {},
            "work_queue_name": "default",
            "last_polled": created,
            "parameter_openapi_schema": {"type": "object", "properties": {}},
            "path": None,
            "entrypoint": f"flows.py:{self.flow_name}",
            "storage_document_id": None,
            "infrastructure_document_id": None,
            "created_by": None,
            "updated_by": None,
            "work_queue_id": _uid("work_queue", self.work_pool, "default"),
            "enforce_parameter_schema": True,
            "work_pool_name": self.work_pool,
            "status": "READY",
        }


@dataclass
class _FlowRun:
    seq: int
    id: str
    deployment: _Deployment
    parameters: JsonObject
    idempotency_key: str | None
    tags: list[str]
    created_at: float
    outcome: str
    message: str
    duration_s: float
    states: list[JsonObject] = field(default_factory=list)


class PrefectEmulator:
    """Deployments that can be run, and the flow runs they make, moving on ``clock``."""

    name = "prefect"

    def __init__(
        self, *, api_key: str | None = None, clock: Callable[[], float] | None = None
    ) -> None:
        self.api_key = api_key
        self._clock = clock or time.time
        self._lock = threading.Lock()
        self.reset()

    # ----------------------------------------------------------------- test controls

    def reset(self) -> None:
        """Forget every deployment, flow run, pending fault and recorded request."""
        with self._lock:
            self._deployments: dict[str, _Deployment] = {}
            self._runs: list[_FlowRun] = []
            self._faults: list[tuple[int, str, str | None]] = []
            self._drops = 0
            self._unknown: frozenset[str] = frozenset()
            self._log: list[JsonObject] = []

    def seed(self, data: Mapping[str, Any]) -> list[str]:
        """Add deployments; returns their ids.

        ``data`` is ``{"deployments": {"flow-name/deployment-name": {"parameters"?: {…},
        "outcome"?: "completed"|"failed"|"crashed"|"cancelled", "message"?: "…",
        "duration_s"?: 60, "work_pool"?: "default"}}}``.
        """
        added = []
        with self._lock:
            now = self._clock()
            for full_name, spec in (data.get("deployments") or {}).items():
                flow_name, slash, name = str(full_name).partition("/")
                if not slash or not flow_name or not name or "/" in name:
                    raise ValueError(f"deployments.{full_name}: expected flow-name/deployment-name")
                spec = spec or {}
                outcome = spec.get("outcome", "completed")
                if outcome not in OUTCOMES:
                    raise ValueError(
                        f"deployments.{full_name}.outcome: one of {', '.join(OUTCOMES)}"
                    )
                deployment = _Deployment(
                    id=_uid("deployment", flow_name, name),
                    flow_name=flow_name,
                    name=name,
                    flow_id=_uid("flow", flow_name),
                    parameters=dict(spec.get("parameters") or {}),
                    outcome=outcome,
                    message=str(spec.get("message") or _DEFAULT_MESSAGES[outcome]),
                    duration_s=float(spec.get("duration_s", DEFAULT_DURATION_S)),
                    work_pool=str(spec.get("work_pool", "default")),
                    created_at=now,
                )
                self._deployments[deployment.id] = deployment
                added.append(deployment.id)
        return added

    def set_outcome(self, full_name: str, outcome: str, message: str | None = None) -> None:
        """How the deployment's next flow runs end."""
        if outcome not in OUTCOMES:
            raise ValueError(f"outcome: one of {', '.join(OUTCOMES)}")
        with self._lock:
            deployment = self._by_name(full_name)
            if deployment is None:
                raise KeyError(f"no deployment {full_name!r} was seeded")
            deployment.outcome = outcome
            deployment.message = message or _DEFAULT_MESSAGES[outcome]

    def fail_next(
        self, status: int = 503, detail: str = "", *, times: int = 1, retry_after: str | None = None
    ) -> None:
        """Answer the next ``times`` API calls with ``status`` (as a proxy or load balancer in
        front of the server would, before it looks at the request)."""
        if times < 1 or not 400 <= status <= 599:
            raise ValueError("fail_next needs times >= 1 and a status of 4xx or 5xx")
        with self._lock:
            self._faults.extend(
                [(status, detail or HTTPStatus(status).phrase, retry_after)] * times
            )

    def drop_next_answer(self, times: int = 1) -> None:
        """Handle the next ``times`` POSTs (a flow run to create), then close the connection
        without answering, as a network that lost the answer would: the run is created."""
        with self._lock:
            self._drops += times

    def forget_fields(self, *names: str) -> None:
        """Reject these fields of a flow run to create as unknown (422), as a server older
        than the client does."""
        with self._lock:
            self._unknown = frozenset(names)

    def requests_for(self, method: str, path_prefix: str = "") -> list[JsonObject]:
        """Requests that arrived (refused ones included), oldest first, as ``{"method",
        "path", "query", "headers", "body"}``, the path without the ``/api`` prefix."""
        with self._lock:
            return [
                copy.deepcopy(entry)
                for entry in self._log
                if entry["method"] == method.upper() and entry["path"].startswith(path_prefix)
            ]

    def state(self) -> dict[str, Any]:
        """Deployments, and every flow run (oldest first) as the API shows it."""
        with self._lock:
            now = self._clock()
            return {
                "deployments": {
                    f"{d.flow_name}/{d.name}": d.view() for d in self._deployments.values()
                },
                "flow_runs": [self._run_view(run, now) for run in self._runs],
            }

    # ----------------------------------------------------------------- requests

    def handle(self, request: Request) -> Response:
        with self._lock:
            path = unquote(request.path)
            self._record(request, path)
            try:
                if not (path == API_PREFIX or path.startswith(API_PREFIX + "/")):
                    raise _not_found("Not Found")
                if self._faults:
                    status, detail, retry_after = self._faults.pop(0)
                    headers = {"Retry-After": retry_after} if retry_after is not None else {}
                    return Response(status, {"detail": detail}, headers)
                if self.api_key is not None:
                    expected = f"Bearer {self.api_key}"
                    if request.headers.get("authorization") != expected:
                        raise _PrefectError(401, {"detail": "Invalid authentication credentials"})
                response = self._route(request, path[len(API_PREFIX) :])
            except _PrefectError as exc:
                response = Response(exc.status, exc.body)
            if self._drops and request.method == "POST" and path.startswith(API_PREFIX + "/"):
                self._drops -= 1
                return Response(drop=True)
            return response

    def _record(self, request: Request, path: str) -> None:
        try:
            body: Any = request.json() if request.body else None
        except ValueError:
            body = request.body.decode("utf-8", "replace")
        self._log.append(
            {
                "method": request.method,
                "path": path.removeprefix(API_PREFIX),
                "query": {k: list(v) for k, v in request.query.items()},
                "headers": dict(request.headers),
                "body": body,
            }
        )

    def _route(self, request: Request, path: str) -> Response:
        parts = path.strip("/").split("/")
        now = self._clock()
        match request.method, parts:
            case "GET", ["health"]:
                return Response(200, True)
            case "GET", ["admin", "version"]:
                return Response(200, VERSION)
            case "GET", ["csrf-token"]:
                raise _PrefectError(422, {"detail": "CSRF protection is disabled."})
            case "GET", ["deployments", "name", flow_name, name]:
                deployment = self._by_name(f"{flow_name}/{name}")
                if deployment is None:
                    raise _not_found("Deployment not found")
                return Response(200, deployment.view())
            case "GET", ["deployments", deployment_id]:
                return Response(200, self._deployment(deployment_id).view())
            case "POST", ["deployments", deployment_id, "create_flow_run"]:
                deployment = self._deployment(deployment_id)
                return self._create_flow_run(deployment, request, now)
            case "GET", ["flow_runs", run_id]:
                wanted = _uuid_in_path(run_id)
                for run in self._runs:
                    if run.id == wanted:
                        return Response(200, self._run_view(run, now))
                raise _not_found("Flow run not found")
        raise _not_found("Not Found")

    def _by_name(self, full_name: str) -> _Deployment | None:
        for deployment in self._deployments.values():
            if f"{deployment.flow_name}/{deployment.name}" == full_name:
                return deployment
        return None

    def _deployment(self, text: str) -> _Deployment:
        deployment = self._deployments.get(_uuid_in_path(text))
        if deployment is None:
            raise _not_found("Deployment not found")
        return deployment

    def _create_flow_run(self, deployment: _Deployment, request: Request, now: float) -> Response:
        try:
            body = request.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise _invalid(["body"], "Input should be a valid dictionary", "dict_type", body, body)
        for name in body:
            if name not in _CREATE_FIELDS or name in self._unknown:
                raise _invalid(
                    ["body", name],
                    "Extra inputs are not permitted",
                    "extra_forbidden",
                    body[name],
                    body,
                )
        parameters = body.get("parameters", {})
        if not isinstance(parameters, dict):
            raise _invalid(
                ["body", "parameters"],
                "Input should be a valid dictionary",
                "dict_type",
                parameters,
                body,
            )
        key = body.get("idempotency_key")
        if key is not None and not isinstance(key, str):
            raise _invalid(
                ["body", "idempotency_key"],
                "Input should be a valid string",
                "string_type",
                key,
                body,
            )
        tags = body.get("tags") or []
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise _invalid(
                ["body", "tags"], "Input should be a valid list", "list_type", tags, body
            )
        if key is not None:
            for run in self._runs:
                if run.deployment.flow_id == deployment.flow_id and run.idempotency_key == key:
                    return Response(200, self._run_view(run, now))
        seq = len(self._runs) + 1
        run = _FlowRun(
            seq=seq,
            id=_uid("flow_run", deployment.id, seq, key),
            deployment=deployment,
            parameters={**deployment.parameters, **parameters},
            idempotency_key=key,
            tags=list(tags),
            created_at=now,
            outcome=deployment.outcome,
            message=deployment.message,
            duration_s=deployment.duration_s,
        )
        self._runs.append(run)
        return Response(201, self._run_view(run, now))

    # ----------------------------------------------------------------- views

    def _timeline(self, run: _FlowRun) -> list[tuple[float, str, str, str | None]]:
        """Every state the run goes through: (from when, type, name, message)."""
        start = run.created_at + PICKUP_DELAY_S
        running = start + PENDING_S
        kind, name = OUTCOMES[run.outcome]
        return [
            (run.created_at, "SCHEDULED", "Scheduled", None),
            (start, "PENDING", "Pending", None),
            (running, "RUNNING", "Running", None),
            (running + run.duration_s, kind, name, run.message),
        ]

    def _run_view(self, run: _FlowRun, now: float) -> JsonObject:
        reached = [step for step in self._timeline(run) if step[0] <= now]
        at, kind, name, message = reached[-1]
        running = [step[0] for step in reached if step[1] == "RUNNING"]
        start_time = running[0] if running else None
        finished = kind in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")
        end_time = at if finished else None
        deployment = run.deployment
        state_id = _uid("state", run.id, kind)
        state = {
            "id": state_id,
            "type": kind,
            "name": name,
            "timestamp": _iso(at),
            "message": message,
            "data": None,
            "state_details": {
                "flow_run_id": run.id,
                "task_run_id": None,
                "child_flow_run_id": None,
                "scheduled_time": _iso(run.created_at) if kind == "SCHEDULED" else None,
                "cache_key": None,
                "cache_expiration": None,
                "deferred": False,
                "untrackable_result": False,
                "pause_timeout": None,
                "pause_reschedule": False,
                "pause_key": None,
                "run_input_keyset": None,
                "refresh_cache": None,
                "retriable": None,
                "transition_id": None,
                "task_parameters_id": None,
            },
        }
        total = (min(now, end_time or now) - start_time) if start_time is not None else 0.0
        return {
            "id": run.id,
            "created": _iso(run.created_at),
            "updated": _iso(at),
            "name": f"dq-run-{run.seq}",
            "flow_id": deployment.flow_id,
            "state_id": state_id,
            "deployment_id": deployment.id,
            "deployment_version": None,
            "work_queue_name": "default",
            "flow_version": None,
            "parameters": copy.deepcopy(run.parameters),
            "idempotency_key": run.idempotency_key,
            "context": {},
            "empirical_policy": {
                "max_retries": 0,
                "retry_delay_seconds": 0.0,
                "retries": 0,
                "retry_delay": 0,
                "pause_keys": [],
                "resuming": False,
                "retry_type": None,
            },
            "tags": list(run.tags),
            "labels": {},
            "parent_task_run_id": None,
            "run_count": 1 if start_time is not None else 0,
            "expected_start_time": _iso(run.created_at),
            "next_scheduled_start_time": _iso(run.created_at) if kind == "SCHEDULED" else None,
            "start_time": _iso(start_time),
            "end_time": _iso(end_time),
            "total_run_time": max(total, 0.0),
            "estimated_run_time": max(total, 0.0),
            "estimated_start_time_delta": 0.0,
            "auto_scheduled": False,
            "infrastructure_document_id": None,
            "infrastructure_pid": None,
            "created_by": None,
            "work_queue_id": _uid("work_queue", deployment.work_pool, "default"),
            "work_pool_id": _uid("work_pool", deployment.work_pool),
            "work_pool_name": deployment.work_pool,
            "state": state,
            "job_variables": {},
            "state_type": kind,
            "state_name": name,
        }
