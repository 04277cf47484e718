"""``type: airflow`` — rerun a DAG through the Airflow 3 REST API (v2).

Mode ``trigger``
    ``POST /api/v2/dags/{dag_id}/dagRuns`` with ``dag_run_id`` derived from the idempotency
    key (:func:`dag_run_id_for`), ``logical_date: null``, the configured ``conf`` and a note.
    Airflow refuses a second run with the same id (409), so a start retried after a timeout
    whose request did reach Airflow finds that run and follows it instead.

Mode ``clear``
    Finds the DAG's latest run (``GET …/dagRuns?order_by=-run_after&limit=1``), asks
    ``POST /api/v2/dags/{dag_id}/clearTaskInstances`` what it would clear (``dry_run: true``,
    failed task instances only, the configured ``task_ids`` if any), and only then clears them
    (``dry_run: false``): Airflow queues that run again and reruns the cleared tasks. Given
    ``task_ids``, their downstream tasks are cleared with them (``include_downstream``), or
    the ``upstream_failed`` ones would fail the rerun again. With nothing to clear in a
    finished run the restart fails; a run still queued or running is followed as it is (it
    may be the one an earlier attempt of this restart cleared).

``poll`` reads ``GET /api/v2/dags/{dag_id}/dagRuns/{dag_run_id}``; a failed run's detail names
its failed task instances.

Authentication is the connector's bearer ``token``, or a token fetched once from
``POST /auth/token`` with ``username`` and ``password`` and fetched again when Airflow answers
401 (it expired), or with ``auth: basic`` the username and password on every request. Safe
requests (reads, the trigger with its fixed run id, the dry run) are tried a second time after
a transient failure, after ``Retry-After`` when Airflow says.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Callable, Collection
from typing import Any
from urllib.parse import quote

import requests

from dq_agent.config.models import AirflowConnector, AirflowRestart
from dq_agent.restart.base import PipelineRun, RestartError, RunState
from dq_agent.sources.retry import parse_retry_after

__all__ = ["NOTE", "AirflowTarget", "dag_run_id_for"]

NOTE = "restarted by dq-agent"
_RUN_ID_PREFIX = "dq_agent__"
_DISALLOWED = re.compile(r"[^A-Za-z0-9_.~:+-]")  # Airflow's default allowed_run_id_pattern
_RUN_ID_LIMIT = 250  # the dag_run.run_id column
_STATES: dict[str, RunState] = {
    "queued": "queued",
    "running": "running",
    "success": "success",
    "failed": "failed",
}
_ATTEMPTS = 2  # for safe requests: one more try after a transient failure
_DEFAULT_DELAY_S = 1.0
_MAX_DELAY_S = 30.0
_PAGE_LIMIT = 100  # Airflow's default maximum_page_limit


def dag_run_id_for(key: str) -> str:
    """The ``dag_run_id`` for an idempotency key: ``dq_agent__<key>``, kept to the characters
    Airflow allows; a key that had to change (or be cut) gets a digest of itself appended, so
    two keys never share a run id."""
    raw = _RUN_ID_PREFIX + key
    clean = _DISALLOWED.sub("_", raw)
    if clean == raw and len(raw) <= _RUN_ID_LIMIT:
        return raw
    digest = hashlib.sha256(key.encode("utf-8")).hexdigest()[:12]
    return f"{clean[: _RUN_ID_LIMIT - len(digest) - 2]}__{digest}"


class AirflowTarget:
    """Triggers a DAG (or clears the failed tasks of its latest run) and follows that run."""

    def __init__(
        self,
        connector: AirflowConnector,
        spec: AirflowRestart,
        *,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._connector = connector
        self._spec = spec
        self._owns_session = session is None
        self._session = session or requests.Session()
        self._sleep = sleep
        self._base = connector.base_url.rstrip("/")
        self._dag = quote(spec.dag_id, safe="")
        self._token = connector.token.get_secret_value() if connector.token is not None else None
        self.label = f"airflow DAG {spec.dag_id}"

    # ----------------------------------------------------------------- the protocol

    def close(self) -> None:
        """Close the HTTP connections this target opened (not a session it was given)."""
        if self._owns_session:
            self._session.close()

    def start(self, key: str) -> PipelineRun:
        if self._spec.mode == "clear":
            return self._clear()
        run_id = dag_run_id_for(key)
        body = {
            "dag_run_id": run_id,
            "logical_date": None,
            "conf": dict(self._spec.conf),
            "note": NOTE,
        }
        response = self._call("trigger", "POST", f"/dags/{self._dag}/dagRuns", json=body, ok={409})
        if response.status_code == 409:  # an earlier attempt of this restart started it
            return self._pipeline_run(self._get_run(run_id), "already triggered")
        return self._pipeline_run(_json(response, "trigger"), "triggered")

    def poll(self, run: PipelineRun) -> PipelineRun:
        if run.done:
            return run
        data = self._get_run(run.run_id)
        state = _state(data)
        detail = self._failed_tasks(run.run_id) if state == "failed" else ""
        return run.moved(state, detail)

    # ----------------------------------------------------------------- clear mode

    def _clear(self) -> PipelineRun:
        listed = _json(
            self._call(
                "list runs",
                "GET",
                f"/dags/{self._dag}/dagRuns",
                params={"order_by": "-run_after", "limit": 1},
            ),
            "list runs",
        )
        runs = listed.get("dag_runs")
        if not isinstance(runs, list) or not runs or not isinstance(runs[0], dict):
            raise RestartError(
                f"Airflow DAG {self._spec.dag_id} has no run to clear", transient=False
            )
        latest = runs[0]
        run_id = str(latest.get("dag_run_id"))
        body: dict[str, Any] = {
            "dag_run_id": run_id,
            "only_failed": True,
            "reset_dag_runs": True,
        }
        if self._spec.task_ids:
            # With their downstream tasks: left upstream_failed, those would fail the run again.
            body["task_ids"] = list(self._spec.task_ids)
            body["include_downstream"] = True
        path = f"/dags/{self._dag}/clearTaskInstances"
        would = _task_ids(
            _json(self._call("dry run", "POST", path, json={**body, "dry_run": True}), "dry run")
        )
        if not would:
            state = _state(latest)
            if state in ("queued", "running"):
                return self._pipeline_run(latest, f"already {state}, nothing to clear")
            among = f" among {', '.join(self._spec.task_ids)}" if self._spec.task_ids else ""
            raise RestartError(
                f"Airflow DAG {self._spec.dag_id} run {run_id}: nothing to clear "
                f"(no failed task instances{among}; the run is {latest.get('state')})",
                transient=False,
            )
        # Not retried: a clear that did reach Airflow must not be repeated blindly.
        self._call("clear", "POST", path, json={**body, "dry_run": False}, safe=False)
        return self._pipeline_run(self._get_run(run_id), f"cleared {', '.join(would)}")

    # ----------------------------------------------------------------- reads

    def _get_run(self, run_id: str) -> dict[str, Any]:
        path = f"/dags/{self._dag}/dagRuns/{quote(run_id, safe='')}"
        return _json(self._call("read run", "GET", path), "read run")

    def _failed_tasks(self, run_id: str) -> str:
        path = f"/dags/{self._dag}/dagRuns/{quote(run_id, safe='')}/taskInstances"
        params = {"state": ["failed", "upstream_failed"], "limit": _PAGE_LIMIT}
        data = _json(self._call("read task instances", "GET", path, params=params), "tasks")
        items = data.get("task_instances")
        failed, upstream = [], []
        for item in items if isinstance(items, list) else []:
            if isinstance(item, dict) and item.get("state") == "failed":
                failed.append(str(item.get("task_id")))
            elif isinstance(item, dict) and item.get("state") == "upstream_failed":
                upstream.append(str(item.get("task_id")))
        if not failed:
            return "failed"
        detail = f"failed tasks: {', '.join(failed)}"
        return f"{detail} (upstream_failed: {', '.join(upstream)})" if upstream else detail

    def _pipeline_run(self, data: dict[str, Any], detail: str) -> PipelineRun:
        run_id = data.get("dag_run_id")
        if not isinstance(run_id, str) or not run_id:
            raise RestartError(
                "Airflow answered with a run that has no dag_run_id", transient=False
            )
        return PipelineRun(
            run_id=run_id,
            state=_state(data),
            detail=detail,
            url=f"{self._base}/dags/{self._spec.dag_id}/runs/{run_id}",
        )

    # ----------------------------------------------------------------- HTTP

    def _call(
        self,
        what: str,
        method: str,
        path: str,
        *,
        ok: Collection[int] = (),
        safe: bool = True,
        **kwargs: Any,
    ) -> requests.Response:
        """One API call, tried again once after a transient failure when it is ``safe``."""
        attempts = _ATTEMPTS if safe else 1
        for attempt in range(1, attempts + 1):
            try:
                return self._send(what, method, path, ok=ok, **kwargs)
            except _Transient as exc:
                if attempt == attempts:
                    raise RestartError(str(exc), transient=True) from exc
                self._sleep(exc.delay)
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _send(
        self, what: str, method: str, path: str, *, ok: Collection[int], **kwargs: Any
    ) -> requests.Response:
        """One exchange, with a fresh token and a second go when a fetched one expired."""
        fresh = False
        while True:
            url = self._base + "/api/v2" + path
            if self._connector.auth == "basic":
                response = self._request(
                    what, method, url, None, auth=self._credentials(), **kwargs
                )
            else:
                response = self._request(what, method, url, self._bearer(what), **kwargs)
            if response.status_code == 401 and self._logs_in and not fresh:
                self._token, fresh = None, True  # expired: log in again, once
                continue
            if response.ok or response.status_code in ok:
                return response
            raise _http_error(self._spec.dag_id, what, response)

    @property
    def _logs_in(self) -> bool:
        return self._connector.token is None and self._connector.auth == "token"

    def _credentials(self) -> tuple[str, str]:
        password = self._connector.password
        return self._connector.username or "", password.get_secret_value() if password else ""

    def _bearer(self, what: str) -> str:
        if self._token is None:
            self._token = self._login(what)
        return self._token

    def _login(self, what: str) -> str:
        username, password = self._credentials()
        response = self._request(
            what,
            "POST",
            self._base + "/auth/token",
            None,
            json={"username": username, "password": password},
        )
        if not response.ok:
            raise _http_error(self._spec.dag_id, f"log in as {username}", response)
        token = _json(response, "log in").get("access_token")
        if not isinstance(token, str) or not token:
            raise RestartError(
                "Airflow's /auth/token answered without an access_token", transient=False
            )
        return token

    def _request(
        self, what: str, method: str, url: str, token: str | None, **kwargs: Any
    ) -> requests.Response:
        headers = {"Accept": "application/json"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        try:
            return self._session.request(
                method, url, headers=headers, timeout=self._connector.timeout, **kwargs
            )
        except (requests.Timeout, requests.ConnectionError) as exc:
            raise _Transient(
                f"cannot reach Airflow at {self._base} ({what}): {exc.__class__.__name__}",
                _DEFAULT_DELAY_S,
            ) from exc
        except requests.RequestException as exc:
            raise RestartError(f"Airflow request failed ({what}): {exc}", transient=False) from exc


class _Transient(RestartError):
    """A failure that may pass, with how long to wait before the next try."""

    def __init__(self, message: str, delay: float) -> None:
        super().__init__(message, transient=True)
        self.delay = delay


def _http_error(dag_id: str, what: str, response: requests.Response) -> RestartError:
    """An error answer as our own: rate limits and server trouble may pass, the rest will not."""
    status = response.status_code
    detail = _detail(response)
    text = f"Airflow DAG {dag_id}: {what} failed: HTTP {status}"
    text = f"{text}: {detail}" if detail else text
    if status == 429 or status >= 500:
        return _Transient(text, _retry_after(response))
    return RestartError(text, transient=False)


def _detail(response: requests.Response) -> str:
    """FastAPI's ``detail``: a string, a list of validation errors, or an object."""
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:200]
    detail = body.get("detail") if isinstance(body, dict) else body
    if isinstance(detail, str):
        return detail
    if isinstance(detail, list):
        parts = []
        for item in detail:
            if isinstance(item, dict):
                loc = ".".join(str(p) for p in item.get("loc") or [])
                parts.append(f"{loc}: {item.get('msg')}" if loc else str(item.get("msg")))
            else:
                parts.append(str(item))
        return "; ".join(parts)[:500]
    if isinstance(detail, dict):
        reason = detail.get("reason") or detail.get("message")
        return str(reason) if reason else str(detail)[:200]
    return "" if detail is None else str(detail)[:200]


def _retry_after(response: requests.Response) -> float:
    """What Airflow (or a proxy before it) asks to wait, capped; the default if it asks
    nothing usable (no header, ``nan``, ``-5``)."""
    asked = parse_retry_after(response.headers.get("Retry-After"))
    return _DEFAULT_DELAY_S if asked is None else min(asked, _MAX_DELAY_S)


def _json(response: requests.Response, what: str) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise RestartError(
            f"Airflow answered {what} with something other than a JSON object", transient=False
        )
    return body


def _state(data: dict[str, Any]) -> RunState:
    state = data.get("state")
    mapped = _STATES.get(state) if isinstance(state, str) else None
    if mapped is None:
        raise RestartError(f"Airflow reported an unknown run state {state!r}", transient=False)
    return mapped


def _task_ids(data: dict[str, Any]) -> list[str]:
    items = data.get("task_instances")
    if not isinstance(items, list):
        return []
    return [str(item.get("task_id")) for item in items if isinstance(item, dict)]
