"""``type: dagster`` — launch a Dagster job run with Dagster's own GraphQL client
(``dagster-graphql``'s ``DagsterGraphQLClient``).

``start`` first looks for a run of the job tagged ``dq-agent/restart-key: <key>``
(``runsOrError`` filtered by that tag: the client has no method for it, so the query goes
through the client's own transport) and follows it when there is one: a start retried after a
timeout, or after a crash of the agent, finds the run it launched. Only when there is none does
it launch the job (``submit_job_execution``: ``launchPipelineExecution``) with the configured
run config and that tag. The job's code location and repository are the configured ones, or
looked up by the client when not given. ``poll`` reads the run's status (``get_run_status``):
``SUCCESS`` is a success, ``FAILURE`` and ``CANCELED`` a failure; anything else is still on its
way.

Dagster's errors keep their names: an unknown job (``JobNotFoundError``,
``PipelineNotFoundError``), run config that does not fit (``RunConfigValidationInvalid``), an
unauthorized token, a refused request or a GraphQL error will not pass by trying again; a
``PythonError`` (a code location that cannot load), a 429, a 5xx or no connection may. The
client sends nothing but the GraphQL requests (Dagster's telemetry lives in its webserver and
daemon, not in this client).
"""

from __future__ import annotations

import math
from http import HTTPStatus
from typing import Any
from urllib.parse import urlsplit

import requests
from dagster_graphql import DagsterGraphQLClient, DagsterGraphQLClientError
from gql import Client, GraphQLRequest
from gql.transport.exceptions import (
    TransportConnectionFailed,
    TransportProtocolError,
    TransportQueryError,
    TransportServerError,
)
from gql.transport.requests import RequestsHTTPTransport

from dq_agent.config.models import DagsterConnector, DagsterRestart
from dq_agent.restart.base import PipelineRun, RestartError, RunState

__all__ = ["KEY_TAG", "DagsterTarget"]

KEY_TAG = "dq-agent/restart-key"  # the tag that names the restart a run was launched for
TOKEN_HEADER = "Dagster-Cloud-Api-Token"
_STATES: dict[str, RunState] = {
    "QUEUED": "queued",
    "NOT_STARTED": "queued",
    "STARTING": "queued",
    "MANAGED": "running",
    "STARTED": "running",
    "SUSPENDED": "running",
    "CANCELING": "running",
    "SUCCESS": "success",
    "FAILURE": "failed",
    "CANCELED": "failed",
}
_RUNS_BY_TAG = """
query DqAgentRunsByTag($filter: RunsFilter!, $limit: Int) {
  runsOrError(filter: $filter, limit: $limit) {
    __typename
    ... on Runs {
      results {
        runId
        status
      }
    }
    ... on InvalidPipelineRunsFilterError {
      message
    }
    ... on PythonError {
      message
    }
  }
}
"""
# Dagster's answers that may pass by trying again later.
_TRANSIENT_TYPES = frozenset({"PythonError"})


class DagsterTarget:
    """Launches one Dagster job (once per restart key) and follows that run until it is done."""

    def __init__(self, connector: DagsterConnector, spec: DagsterRestart, *, suite: str) -> None:
        self._spec = spec
        self._suite = suite
        self._base = connector.url.rstrip("/")
        parts = urlsplit(self._base)
        headers = {TOKEN_HEADER: connector.token.get_secret_value()} if connector.token else {}
        # One transport for the client's own calls and for the query it has no method for.
        self._transport = RequestsHTTPTransport(
            url=f"{self._base}/graphql",
            headers=headers,
            timeout=max(1, math.ceil(connector.timeout)),
            retries=0,  # the agent's schedule retries a transient failure
        )
        self._client = DagsterGraphQLClient(
            parts.hostname or "",
            port_number=parts.port,
            transport=self._transport,
            use_https=parts.scheme == "https",
            path_prefix=parts.path.rstrip("/"),
        )
        self._queries = Client(transport=self._transport)
        self.label = f"dagster job {spec.job}"

    def start(self, key: str) -> PipelineRun:
        existing = self._find_run(key)
        if existing is not None:
            run_id, status = existing
            return self._pipeline_run(run_id, status, "already launched")
        try:
            run_id = self._client.submit_job_execution(
                self._spec.job,
                repository_location_name=self._spec.repository_location,
                repository_name=self._spec.repository,
                run_config=dict(self._spec.run_config),
                tags={KEY_TAG: key},
            )
        except DagsterGraphQLClientError as exc:
            raise self._failure("launch", exc) from exc
        return self._pipeline_run(run_id, "QUEUED", "launched")

    def poll(self, run: PipelineRun) -> PipelineRun:
        if run.done:
            return run
        try:
            status = self._client.get_run_status(run.run_id)
        except DagsterGraphQLClientError as exc:
            raise self._failure(f"read run {run.run_id}", exc) from exc
        return self._pipeline_run(run.run_id, status.value, "")

    def _find_run(self, key: str) -> tuple[str, str] | None:
        """The newest run of the job tagged with this restart's key: (run id, status)."""
        variables = {
            "filter": {"pipelineName": self._spec.job, "tags": [{"key": KEY_TAG, "value": key}]},
            "limit": 1,
        }
        try:
            data = self._queries.execute(GraphQLRequest(_RUNS_BY_TAG, variable_values=variables))
        except Exception as exc:  # gql's transport errors, and a broken answer
            raise self._failure("find its run", exc) from exc
        answer = data.get("runsOrError") if isinstance(data, dict) else None
        kind = answer.get("__typename") if isinstance(answer, dict) else None
        if not isinstance(answer, dict) or kind != "Runs":
            message = answer.get("message") if isinstance(answer, dict) else None
            raise self._error(
                f"find its run: {kind or 'no answer'}: {message or 'Dagster answered no runs'}",
                transient=kind in _TRANSIENT_TYPES,
            )
        for item in answer.get("results") or []:
            if isinstance(item, dict) and item.get("runId"):
                return str(item["runId"]), str(item.get("status"))
        return None

    def _pipeline_run(self, run_id: str, status: str, detail: str) -> PipelineRun:
        state = _STATES.get(status, "running")  # a status added later is most likely in between
        words = status.replace("_", " ").capitalize()
        return PipelineRun(
            run_id=run_id,
            state=state,
            detail=f"{detail}: {words}" if detail else words,
            url=f"{self._base}/runs/{run_id}",
        )

    def _failure(self, what: str, exc: Exception) -> RestartError:
        """Dagster's, gql's or requests' error as ours, saying whether it may pass."""
        cause: BaseException = exc
        if isinstance(exc, DagsterGraphQLClientError) and exc.__cause__ is not None:
            cause = exc.__cause__  # the client wraps transport errors in its own
        if isinstance(cause, TransportServerError):
            code = cause.code
            transient = code is None or code == 429 or code >= 500
            phrase = _phrase(code)
            return self._error(f"{what} failed: HTTP {code}{phrase}", transient=transient)
        if isinstance(cause, TransportConnectionFailed | requests.RequestException):
            return self._error(
                f"cannot reach Dagster at {self._base} ({what}): {cause}", transient=True
            )
        if isinstance(cause, TransportQueryError):
            errors = cause.errors or []
            messages = [str(e.get("message")) for e in errors if isinstance(e, dict)]
            return self._error(
                f"{what}: GraphQL error: {'; '.join(messages) or cause}", transient=False
            )
        if isinstance(cause, TransportProtocolError):
            return self._error(f"{what}: not a GraphQL answer: {cause}", transient=False)
        if isinstance(exc, DagsterGraphQLClientError) and exc.args:
            kind = str(exc.args[0])
            detail = _detail(exc.args[1] if len(exc.args) > 1 else exc.body)
            if kind in ("JobNotFoundError", "PipelineNotFoundError"):
                return self._error(
                    f"Dagster has no job {self._spec.job!r} ({kind}: {detail})", transient=False
                )
            text = f"{what}: {kind}: {detail}" if detail else f"{what}: {kind}"
            return self._error(text, transient=kind in _TRANSIENT_TYPES)
        return self._error(f"{what} failed: {exc.__class__.__name__}: {exc}", transient=False)

    def _error(self, message: str, *, transient: bool) -> RestartError:
        return RestartError(f"{self.label} (suite {self._suite}): {message}", transient=transient)


def _phrase(code: int | None) -> str:
    try:
        return f" {HTTPStatus(code).phrase}" if code is not None else ""
    except ValueError:
        return ""


def _detail(value: Any) -> str:
    """A message, or the messages of a list of config errors."""
    if isinstance(value, list):
        parts = []
        for item in value:
            if isinstance(item, dict):
                parts.append(str(item.get("message") or item))
            else:
                parts.append(str(item))
        return "; ".join(parts)[:500]
    return "" if value is None else str(value)[:500]
