"""A loopback stand-in for Dagster's GraphQL API (webserver or Dagster+), served by
:class:`LoopbackServer`.

``POST /graphql`` takes ``{"query", "variables"?, "operationName"?}`` as the real API does.
The emulator does not run GraphQL: it reads just enough of the query to answer it — the
operation's root field (``repositoriesOrError``, ``launchPipelineExecution`` or ``launchRun``,
``pipelineRunOrError`` or ``runOrError``, ``runsOrError``) — and the variables, and answers
with the fields those operations are asked for, plus a few more (a client reads only what it
asked for). Results carry ``__typename`` as Dagster names its types:

- ``repositoriesOrError``: ``RepositoryConnection`` with each repository's ``name``,
  ``location { name }`` and ``pipelines { name }``;
- launching: ``LaunchRunSuccess { run { runId … } }``; ``PipelineNotFoundError`` ("Could not
  find Pipeline location.repository.job"); ``RunConfigValidationInvalid`` with ``errors``
  (``FieldNotDefinedConfigError`` for an op the job does not have); ``PythonError`` when
  told (:meth:`DagsterEmulator.python_error_next`), as a code location that cannot load says;
- a run: ``Run { runId status … }`` or ``RunNotFoundError``;
- ``runsOrError(filter: {tags, pipelineName, runIds, statuses}, limit)``: ``Runs { results }``,
  newest first.

A query with an unknown root field answers ``{"errors": [{"message": "Cannot query field …"}]}``
as GraphQL validation does; a body without a query is a 400. With a ``token``, every call needs
``Dagster-Cloud-Api-Token: <token>`` (else 401, as Dagster+ answers). :meth:`fail_next`
answers with an HTTP error (a 503 from a load balancer) before looking at the request.

Runs move on the emulator's clock, computed when someone looks: ``QUEUED`` for
:data:`QUEUE_DELAY_S`, ``STARTING`` for one more second, ``STARTED`` for the job's
``duration_s``, then its ``outcome``: ``SUCCESS``, ``FAILURE`` or ``CANCELED``.

Where the emulation stops: no assets, schedules, sensors, partitions or backfills; the run
config is checked only for ``ops`` the job does not have; ``cursor`` is ignored; there is no
GraphQL introspection.
"""

from __future__ import annotations

import copy
import re
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from dq_agent_sandbox.http import Request, Response

__all__ = ["DEFAULT_REPOSITORY", "GRAPHQL_PATH", "OUTCOMES", "QUEUE_DELAY_S", "DagsterEmulator"]

JsonObject = dict[str, Any]

GRAPHQL_PATH = "/graphql"
DEFAULT_REPOSITORY = "__repository__"  # where a code location's Definitions are
QUEUE_DELAY_S = 1.0  # how long a launched run waits in the run queue
STARTING_S = 1.0  # how long the run worker takes to start
DEFAULT_DURATION_S = 60.0
OUTCOMES = ("SUCCESS", "FAILURE", "CANCELED")
_ROOT = re.compile(r"\{\s*(?:\w+\s*:\s*)?(\w+)")  # the first field of the selection, unaliased
_OPERATION = re.compile(r"^\s*(query|mutation|subscription)\b\s*(\w*)")
_NAMESPACE = uuid.UUID("9d7c51f2-6a0e-4b8e-8f47-2f1d0c3a7b65")


@dataclass
class _Job:
    name: str
    location: str
    repository: str
    ops: list[str]
    outcome: str
    duration_s: float


@dataclass
class _Run:
    seq: int
    run_id: str
    job: _Job
    run_config: JsonObject
    tags: dict[str, str]
    created_at: float
    outcome: str
    duration_s: float


class DagsterEmulator:
    """Jobs that can be launched and the runs they make, moving on ``clock``."""

    name = "dagster"

    def __init__(self, *, token: str | None = None, clock: Callable[[], float] | None = None):
        self.token = token
        self._clock = clock or time.time
        self._lock = threading.Lock()
        self.reset()

    # ----------------------------------------------------------------- test controls

    def reset(self) -> None:
        """Forget every job, run, pending fault and recorded request."""
        with self._lock:
            self._jobs: list[_Job] = []
            self._runs: list[_Run] = []
            self._faults: list[tuple[int, str]] = []
            self._python_errors: list[str] = []
            self._log: list[JsonObject] = []

    def seed(self, data: Mapping[str, Any]) -> list[str]:
        """Add jobs; returns their names.

        ``data`` is ``{"jobs": {name: {"location"?: "defs", "repository"?: "__repository__",
        "ops"?: [op, …], "outcome"?: "SUCCESS"|"FAILURE"|"CANCELED", "duration_s"?: 60}}}``.
        """
        jobs = []
        for name, spec in (data.get("jobs") or {}).items():
            spec = spec or {}
            outcome = str(spec.get("outcome", "SUCCESS"))
            if outcome not in OUTCOMES:
                raise ValueError(f"jobs.{name}.outcome: one of {', '.join(OUTCOMES)}")
            jobs.append(
                _Job(
                    name=str(name),
                    location=str(spec.get("location", "defs")),
                    repository=str(spec.get("repository", DEFAULT_REPOSITORY)),
                    ops=[str(op) for op in spec.get("ops") or []],
                    outcome=outcome,
                    duration_s=float(spec.get("duration_s", DEFAULT_DURATION_S)),
                )
            )
        with self._lock:
            for job in jobs:
                self._jobs = [
                    j for j in self._jobs if (j.name, j.location) != (job.name, job.location)
                ]
                self._jobs.append(job)
        return [job.name for job in jobs]

    def set_outcome(self, job_name: str, outcome: str) -> None:
        """How the job's next runs end."""
        if outcome not in OUTCOMES:
            raise ValueError(f"outcome: one of {', '.join(OUTCOMES)}")
        with self._lock:
            matched = [job for job in self._jobs if job.name == job_name]
            if not matched:
                raise KeyError(f"no job {job_name!r} was seeded")
            for job in matched:
                job.outcome = outcome

    def fail_next(self, status: int = 503, detail: str = "", *, times: int = 1) -> None:
        """Answer the next ``times`` requests with ``status`` and a plain-text body."""
        if times < 1 or not 400 <= status <= 599:
            raise ValueError("fail_next needs times >= 1 and a status of 4xx or 5xx")
        with self._lock:
            self._faults.extend([(status, detail or HTTPStatus(status).phrase)] * times)

    def python_error_next(self, message: str) -> None:
        """The next launch answers ``PythonError`` with ``message`` (a code location that
        cannot load, a run launcher that raised)."""
        with self._lock:
            self._python_errors.append(message)

    def operations(self) -> list[JsonObject]:
        """GraphQL operations that arrived, oldest first: ``{"operation", "root", "variables",
        "headers"}`` (``operation`` is the name in the query, ``root`` its first field)."""
        with self._lock:
            return copy.deepcopy(self._log)

    def state(self) -> dict[str, Any]:
        """Jobs, and every run (oldest first) as the API shows it."""
        with self._lock:
            now = self._clock()
            return {
                "jobs": [
                    {"name": j.name, "location": j.location, "repository": j.repository}
                    for j in self._jobs
                ],
                "runs": [self._run_view(run, now) for run in self._runs],
            }

    # ----------------------------------------------------------------- requests

    def handle(self, request: Request) -> Response:
        with self._lock:
            if request.path.rstrip("/") != GRAPHQL_PATH:
                return Response(404, b"Not Found")
            if self._faults:
                status, detail = self._faults.pop(0)
                return Response(status, detail.encode("utf-8"))
            if self.token is not None and request.headers.get("dagster-cloud-api-token") != (
                self.token
            ):
                return Response(401, {"message": "Invalid Dagster Cloud API token"})
            if request.method != "POST":
                return Response(405, b"Method Not Allowed")
            try:
                body = request.json()
            except ValueError:
                body = None
            query = body.get("query") if isinstance(body, dict) else None
            if not isinstance(query, str) or not query.strip():
                return Response(400, {"errors": [{"message": "Must provide query string."}]})
            variables = body.get("variables") or {}
            operation = _OPERATION.match(query)
            root = _ROOT.search(query)
            self._log.append(
                {
                    "operation": operation.group(2) if operation else "",
                    "root": root.group(1) if root else "",
                    "variables": copy.deepcopy(variables),
                    "headers": dict(request.headers),
                }
            )
            if root is None:
                return Response(400, {"errors": [{"message": "Syntax Error: no selection."}]})
            kind = operation.group(1) if operation else "query"
            return self._route(kind, root.group(1), variables)

    def _route(self, kind: str, field: str, variables: JsonObject) -> Response:
        now = self._clock()
        if kind == "query" and field == "repositoriesOrError":
            return _data(field, self._repositories())
        if kind == "mutation" and field in ("launchPipelineExecution", "launchRun"):
            params = variables.get("executionParams")
            return _data(field, self._launch(params if isinstance(params, dict) else {}, now))
        if kind == "query" and field in ("pipelineRunOrError", "runOrError"):
            return _data(field, self._run_or_error(str(variables.get("runId")), now))
        if kind == "query" and field == "runsOrError":
            return _data(field, self._runs_or_error(variables, now))
        parent = "Mutation" if kind == "mutation" else "Query"
        message = f'Cannot query field "{field}" on type "{parent}".'
        return Response(200, {"errors": [{"message": message, "locations": []}]})

    # ----------------------------------------------------------------- operations

    def _repositories(self) -> JsonObject:
        repositories: dict[tuple[str, str], list[str]] = {}
        for job in self._jobs:
            repositories.setdefault((job.location, job.repository), []).append(job.name)
        return {
            "__typename": "RepositoryConnection",
            "nodes": [
                {
                    "name": repository,
                    "location": {"name": location},
                    "pipelines": [{"name": name} for name in names],
                }
                for (location, repository), names in repositories.items()
            ],
        }

    def _launch(self, params: JsonObject, now: float) -> JsonObject:
        if self._python_errors:
            message = self._python_errors.pop(0)
            return {"__typename": "PythonError", "message": message, "stack": [], "cause": None}
        selector = params.get("selector") or {}
        location = selector.get("repositoryLocationName")
        repository = selector.get("repositoryName")
        name = selector.get("pipelineName") or selector.get("jobName")
        job = next(
            (
                j
                for j in self._jobs
                if (j.name, j.location, j.repository) == (name, location, repository)
            ),
            None,
        )
        if job is None:
            return {
                "__typename": "PipelineNotFoundError",
                "message": f"Could not find Pipeline {location}.{repository}.{name}",
                "pipelineName": name,
                "repositoryName": repository,
                "repositoryLocationName": location,
            }
        run_config = params.get("runConfigData") or {}
        errors = _config_errors(job, run_config)
        if errors:
            return {
                "__typename": "RunConfigValidationInvalid",
                "pipelineName": job.name,
                "errors": errors,
            }
        metadata = params.get("executionMetadata") or {}
        tags = {str(t["key"]): str(t["value"]) for t in metadata.get("tags") or []}
        seq = len(self._runs) + 1
        run = _Run(
            seq=seq,
            run_id=str(uuid.uuid5(_NAMESPACE, f"{job.location}/{job.name}/{seq}")),
            job=job,
            run_config=dict(run_config),
            tags=tags,
            created_at=now,
            outcome=job.outcome,
            duration_s=job.duration_s,
        )
        self._runs.append(run)
        return {"__typename": "LaunchRunSuccess", "run": self._run_view(run, now)}

    def _run_or_error(self, run_id: str, now: float) -> JsonObject:
        for run in self._runs:
            if run.run_id == run_id:
                return self._run_view(run, now)
        return {
            "__typename": "RunNotFoundError",
            "runId": run_id,
            "message": f"Run {run_id} could not be found.",
        }

    def _runs_or_error(self, variables: JsonObject, now: float) -> JsonObject:
        wanted = variables.get("filter") or {}
        tags = {str(t.get("key")): str(t.get("value")) for t in wanted.get("tags") or []}
        job_name = wanted.get("pipelineName")
        run_ids = wanted.get("runIds")
        statuses = wanted.get("statuses")
        results = []
        for run in reversed(self._runs):  # newest first
            view = self._run_view(run, now)
            if any(run.tags.get(key) != value for key, value in tags.items()):
                continue
            if job_name is not None and run.job.name != job_name:
                continue
            if run_ids is not None and run.run_id not in run_ids:
                continue
            if statuses is not None and view["status"] not in statuses:
                continue
            results.append(view)
        limit = variables.get("limit")
        if isinstance(limit, int) and limit >= 0:
            results = results[:limit]
        return {"__typename": "Runs", "results": results}

    # ----------------------------------------------------------------- views

    def _status(self, run: _Run, now: float) -> tuple[str, float | None, float | None]:
        """The run's status, when it started and when it ended."""
        starting = run.created_at + QUEUE_DELAY_S
        started = starting + STARTING_S
        ended = started + run.duration_s
        if now < starting:
            return "QUEUED", None, None
        if now < started:
            return "STARTING", None, None
        if now < ended:
            return "STARTED", started, None
        return run.outcome, started, ended

    def _run_view(self, run: _Run, now: float) -> JsonObject:
        status, started, ended = self._status(run, now)
        return {
            "__typename": "Run",
            "id": run.run_id,
            "runId": run.run_id,
            "status": status,
            "jobName": run.job.name,
            "pipelineName": run.job.name,
            "repositoryOrigin": {
                "repositoryLocationName": run.job.location,
                "repositoryName": run.job.repository,
            },
            "tags": [{"key": key, "value": value} for key, value in run.tags.items()],
            "runConfig": copy.deepcopy(run.run_config),
            "creationTime": run.created_at,
            "startTime": started,
            "endTime": ended,
        }


def _data(field: str, value: JsonObject) -> Response:
    return Response(200, {"data": {field: value}})


def _config_errors(job: _Job, run_config: Any) -> list[JsonObject]:
    """What Dagster's config validation says about ops the job does not have."""
    if not isinstance(run_config, dict):
        return [
            {
                "__typename": "RuntimeMismatchConfigError",
                "message": f"Value at path root must be a dict. Got {run_config!r}.",
                "path": [],
                "reason": "RUNTIME_TYPE_MISMATCH",
            }
        ]
    errors = []
    for key in run_config:
        if key not in ("ops", "resources", "execution", "loggers"):
            errors.append(_not_defined(key, "root"))
    ops = run_config.get("ops") or {}
    if isinstance(ops, dict):
        for op in ops:
            if op not in job.ops:
                errors.append(_not_defined(op, "root:ops"))
    return errors


def _not_defined(key: str, where: str) -> JsonObject:
    return {
        "__typename": "FieldNotDefinedConfigError",
        "message": f'Received unexpected config entry "{key}" at path {where}.',
        "path": [] if where == "root" else where.split(":")[1:],
        "reason": "FIELD_NOT_DEFINED",
    }
