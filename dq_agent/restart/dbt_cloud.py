"""``type: dbt_cloud`` — run a dbt Cloud job through the Administrative API v2.

``start`` triggers ``POST /api/v2/accounts/{account}/jobs/{job}/run/``; ``poll`` reads
``GET /api/v2/accounts/{account}/runs/{run}/`` and maps its numeric ``status``.

dbt Cloud has no idempotency key, so the key goes into the run's ``cause`` text instead:
before triggering, ``start`` lists the job's most recent runs and reuses one whose
``trigger.cause`` carries the key. A start retried after a crash (or after a timeout whose
request did reach dbt Cloud) therefore finds its run rather than starting a second one.
"""

from __future__ import annotations

from typing import Any

import requests

from dq_agent.config.models import DbtCloudConnector, DbtCloudRestart
from dq_agent.restart.base import PipelineRun, RestartError, RunState

__all__ = ["DbtCloudTarget", "cause_for"]

# dbt Cloud's run status codes (``status`` on a run object).
_QUEUED, _STARTING, _RUNNING, _SUCCESS, _ERROR, _CANCELLED = 1, 2, 3, 10, 20, 30
_STATES: dict[int, RunState] = {
    _QUEUED: "queued",
    _STARTING: "queued",  # dbt Cloud is provisioning the run: nothing of the job ran yet
    _RUNNING: "running",
    _SUCCESS: "success",
    _ERROR: "failed",
    _CANCELLED: "failed",
}
_HUMAN = {
    _QUEUED: "Queued",
    _STARTING: "Starting",
    _RUNNING: "Running",
    _SUCCESS: "Success",
    _ERROR: "Error",
    _CANCELLED: "Cancelled",
}
# How far back ``start`` looks for a run it already triggered: a retry follows within minutes,
# and a job rarely runs more than a few times in between.
_RECENT_RUNS = 10
# dbt Cloud rejects a longer ``cause``; the key at its end must survive the cut.
_CAUSE_LIMIT = 255


def cause_for(cause: str, key: str) -> str:
    """The ``cause`` text of a triggered run: the configured text, then the key."""
    tag = f" (dq-agent {key})"
    room = max(_CAUSE_LIMIT - len(tag), 0)
    text = cause if len(cause) <= room else cause[: max(room - 1, 0)].rstrip() + "…"
    return text + tag


class DbtCloudTarget:
    """Runs one dbt Cloud job and follows that run until it is done."""

    def __init__(
        self,
        connector: DbtCloudConnector,
        spec: DbtCloudRestart,
        *,
        session: requests.Session | None = None,
    ) -> None:
        self._connector = connector
        self._spec = spec
        self._owns_session = session is None
        self._session = session or requests.Session()
        self._api = f"{connector.base_url.rstrip('/')}/api/v2/accounts/{connector.account_id}"
        self.label = f"dbt Cloud job {spec.job_id}"

    def close(self) -> None:
        """Close the HTTP connections this target opened (not a session it was given)."""
        if self._owns_session:
            self._session.close()

    def start(self, key: str) -> PipelineRun:
        existing = self._find_run(key)
        if existing is not None:
            return _pipeline_run(existing)
        trigger: dict[str, Any] = {"cause": cause_for(self._spec.cause, key)}
        if self._spec.select:  # the models lineage found, in place of the job's own steps
            trigger["steps_override"] = [f"dbt build --select {' '.join(self._spec.select)}"]
        body = self._call("POST", f"/jobs/{self._spec.job_id}/run/", json=trigger)
        return _pipeline_run(_data(body, dict))

    def poll(self, run: PipelineRun) -> PipelineRun:
        if run.done:
            return run
        body = self._call("GET", f"/runs/{run.run_id}/")
        return _pipeline_run(_data(body, dict))

    def _find_run(self, key: str) -> dict[str, Any] | None:
        """The most recent run of the job that this key triggered, if any."""
        body = self._call(
            "GET",
            "/runs/",
            params={
                "job_definition_id": self._spec.job_id,
                "order_by": "-id",
                "limit": _RECENT_RUNS,
                # Without it, the list leaves out each run's trigger (and so its cause).
                "include_related": '["trigger"]',
            },
        )
        tag = f"(dq-agent {key})"
        for item in _data(body, list):
            trigger = item.get("trigger") if isinstance(item, dict) else None
            cause = trigger.get("cause") if isinstance(trigger, dict) else None
            if isinstance(cause, str) and tag in cause:
                return dict(item)
        return None

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        token = self._connector.token.get_secret_value()
        headers = {"Authorization": f"Token {token}", "Accept": "application/json"}
        try:
            response = self._session.request(
                method,
                self._api + path,
                headers=headers,
                timeout=self._connector.timeout,
                **kwargs,
            )
        except (requests.Timeout, requests.ConnectionError) as exc:
            raise RestartError(
                f"cannot reach dbt Cloud: {exc.__class__.__name__}", transient=True
            ) from exc
        except requests.RequestException as exc:
            raise RestartError(f"dbt Cloud request failed: {exc}", transient=False) from exc
        if not response.ok:
            raise _http_error(response)
        try:
            return response.json()
        except ValueError as exc:
            raise RestartError(
                f"dbt Cloud answered {method} {path} with something other than JSON",
                transient=False,
            ) from exc


def _data(body: Any, kind: type[Any]) -> Any:
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, kind):
        raise RestartError("dbt Cloud answered without the expected 'data'", transient=False)
    return data


def _pipeline_run(data: dict[str, Any]) -> PipelineRun:
    if "id" not in data:
        raise RestartError("dbt Cloud answered with a run that has no id", transient=False)
    status = data.get("status")
    code = status if isinstance(status, int) else -1
    # A status this module does not know is most likely a new in-between state: keep polling.
    state: RunState = _STATES.get(code, "running")
    humanized = str(data.get("status_humanized") or _HUMAN.get(code, f"status {status}"))
    detail = humanized
    message = data.get("status_message")
    if state == "failed" and message:
        detail = f"{humanized}: {message}"
    href = data.get("href")
    return PipelineRun(
        run_id=str(data["id"]),
        state=state,
        detail=detail,
        url=href if isinstance(href, str) and href else None,
    )


def _http_error(response: requests.Response) -> RestartError:
    """An error answer as our own: rate limits and server trouble may pass, the rest will not."""
    status = response.status_code
    message = _message(response)
    text = f"dbt Cloud {status}: {message}" if message else f"dbt Cloud error {status}"
    return RestartError(text, transient=status == 429 or status >= 500)


def _message(response: requests.Response) -> str:
    """The API's own words: ``{"status": {"user_message": ...}}``, else the start of the body."""
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:200]
    status = body.get("status") if isinstance(body, dict) else None
    if isinstance(status, dict):
        for name in ("user_message", "developer_message"):
            if status.get(name):
                return str(status[name])
    return "" if body is None else str(body)[:200]
