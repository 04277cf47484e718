"""``airflow`` and ``airflow_asset`` — rerun DAGs through the Airflow 3 REST API (v2).

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

``airflow_asset``
    Tells Airflow that an asset (a table) is updated, as a task that wrote it would: the asset
    is found by its URI, else its name (``GET /api/v2/assets`` with ``uri_pattern`` or
    ``name_pattern``, every page, exact match), then ``POST /api/v2/assets/events`` with
    ``extra: {"dq_agent_restart_key": key}`` — unless one of the asset's recent events
    (``GET /api/v2/assets/events?asset_id=…&order_by=-timestamp``) already carries the key,
    so a retried start sends no second event. The event id is the run id. Airflow's scheduler
    then creates a run of each DAG scheduled on the asset and lists it in the event's
    ``created_dagruns``; ``poll`` reads the event again and each of those runs. The restart
    succeeds when every scheduled DAG's run has succeeded, and fails once a run failed and
    none of the others is still going. A run Airflow has not created yet (the DAG is paused,
    or also waits for another asset) is waited for. An asset no DAG is scheduled on succeeds
    at once, saying so.

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

from dq_agent.config.models import AirflowAssetRestart, AirflowConnector, AirflowRestart
from dq_agent.restart.base import PipelineRun, RestartError, RunState
from dq_agent.sources.retry import parse_retry_after

__all__ = ["NOTE", "RESTART_KEY", "AirflowAssetTarget", "AirflowTarget", "dag_run_id_for"]

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
# Where an asset event carries the restart's key. Airflow masks the values of extra keys that
# look secret (containing "token", "secret", "api_key", …): this name must not, or a retried
# start could not recognise its own event.
RESTART_KEY = "dq_agent_restart_key"
# Characters that are more than themselves in a pattern: "|" splits it into alternatives and a
# backslash escapes on some databases. "_" matches any one character, itself included.
_PATTERN_SPECIAL = re.compile(r"[|\\]")


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
        self._spec = spec
        self._api = _Api(connector, f"Airflow DAG {spec.dag_id}", session=session, sleep=sleep)
        self._dag = quote(spec.dag_id, safe="")
        self.label = f"airflow DAG {spec.dag_id}"

    # ----------------------------------------------------------------- the protocol

    def close(self) -> None:
        """Close the HTTP connections this target opened (not a session it was given)."""
        self._api.close()

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
        response = self._api.call(
            "trigger", "POST", f"/dags/{self._dag}/dagRuns", json=body, ok={409}
        )
        if response.status_code == 409:  # an earlier attempt of this restart started it
            return self._pipeline_run(
                self._api.dag_run(self._spec.dag_id, run_id), "already triggered"
            )
        return self._pipeline_run(_json(response, "trigger"), "triggered")

    def poll(self, run: PipelineRun) -> PipelineRun:
        if run.done:
            return run
        data = self._api.dag_run(self._spec.dag_id, run.run_id)
        state = _state(data)
        detail = self._api.failed_tasks(self._spec.dag_id, run.run_id) if state == "failed" else ""
        return run.moved(state, detail)

    # ----------------------------------------------------------------- clear mode

    def _clear(self) -> PipelineRun:
        listed = _json(
            self._api.call(
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
            _json(
                self._api.call("dry run", "POST", path, json={**body, "dry_run": True}), "dry run"
            )
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
        self._api.call("clear", "POST", path, json={**body, "dry_run": False}, safe=False)
        return self._pipeline_run(
            self._api.dag_run(self._spec.dag_id, run_id), f"cleared {', '.join(would)}"
        )

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
            url=f"{self._api.base}/dags/{self._spec.dag_id}/runs/{run_id}",
        )


class AirflowAssetTarget:
    """Sends an event of an asset and follows the DAG runs Airflow starts for it."""

    def __init__(
        self,
        connector: AirflowConnector,
        spec: AirflowAssetRestart,
        *,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._spec = spec
        self._api = _Api(connector, f"Airflow asset {spec.asset}", session=session, sleep=sleep)
        self._asset: dict[str, Any] | None = None  # found once, by the first start or poll
        self.label = f"airflow asset {spec.asset}"

    def close(self) -> None:
        """Close the HTTP connections this target opened (not a session it was given)."""
        self._api.close()

    def start(self, key: str) -> PipelineRun:
        asset = self._find()
        event = self._sent(asset["id"], key)
        said = "already sent"
        if event is None:
            body = {"asset_id": asset["id"], "extra": {RESTART_KEY: key}}
            # Not retried here: a POST that did reach Airflow would be a second event. The
            # next start finds this one by its key instead.
            response = self._api.call("send event", "POST", "/assets/events", json=body, safe=False)
            event, said = _json(response, "send event"), "sent"
        event_id = event.get("id")
        if not isinstance(event_id, int):
            raise RestartError(
                "Airflow answered with an asset event without an id", transient=False
            )
        state, detail = self._progress(asset, event)
        return PipelineRun(
            run_id=str(event_id),
            state=state,
            detail=f"asset event {event_id} {said}; {detail}",
            url=f"{self._api.base}/assets/{asset['id']}",
        )

    def poll(self, run: PipelineRun) -> PipelineRun:
        if run.done:
            return run
        asset = self._find()
        return run.moved(*self._progress(asset, self._event(asset["id"], run.run_id)))

    # ----------------------------------------------------------------- the asset

    def _find(self) -> dict[str, Any]:
        """The asset named by its URI, else by its name (both are unique among active ones)."""
        if self._asset is None:
            self._asset = self._matching("uri") or self._matching("name")
        if self._asset is None:
            raise RestartError(
                f"Airflow has no asset with the URI or name {self._spec.asset!r}",
                transient=False,
            )
        return self._asset

    def _matching(self, field: str) -> dict[str, Any] | None:
        """The asset whose ``field`` is exactly the configured text, reading every page of
        what Airflow's pattern (a case-insensitive substring match) gives."""
        wanted = self._spec.asset
        params: dict[str, Any] = {
            f"{field}_pattern": _PATTERN_SPECIAL.sub("_", wanted),
            "limit": _PAGE_LIMIT,
            "offset": 0,
        }
        while True:
            data = _json(self._api.call("find asset", "GET", "/assets", params=params), "assets")
            listed = data.get("assets")
            page: list[dict[str, Any]] = (
                [a for a in listed if isinstance(a, dict)] if isinstance(listed, list) else []
            )
            for asset in page:
                if asset.get(field) == wanted:
                    if not isinstance(asset.get("id"), int):
                        raise RestartError(
                            f"Airflow answered with asset {wanted!r} without an id",
                            transient=False,
                        )
                    return asset
            params["offset"] += len(page)
            total = data.get("total_entries")
            if not page or not isinstance(total, int) or params["offset"] >= total:
                return None

    # ----------------------------------------------------------------- its events

    def _events(self, asset_id: int, offset: int) -> tuple[list[dict[str, Any]], int]:
        """A page of the asset's events, newest first, and how many there are in all."""
        params = {
            "asset_id": asset_id,
            "order_by": "-timestamp",
            "limit": _PAGE_LIMIT,
            "offset": offset,
        }
        data = _json(
            self._api.call("read events", "GET", "/assets/events", params=params), "events"
        )
        events = data.get("asset_events")
        total = data.get("total_entries")
        page = [e for e in events if isinstance(e, dict)] if isinstance(events, list) else []
        return page, total if isinstance(total, int) else 0

    def _sent(self, asset_id: int, key: str) -> dict[str, Any] | None:
        """The event an earlier attempt of this restart sent, among the asset's latest."""
        recent, _ = self._events(asset_id, 0)
        for event in recent:
            extra = event.get("extra")
            if isinstance(extra, dict) and extra.get(RESTART_KEY) == key:
                return event
        return None

    def _event(self, asset_id: int, event_id: str) -> dict[str, Any]:
        offset = 0
        while True:
            page, total = self._events(asset_id, offset)
            for event in page:
                if str(event.get("id")) == event_id:
                    return event
            offset += len(page)
            if not page or offset >= total:
                raise RestartError(
                    f"Airflow no longer has event {event_id} of asset {self._spec.asset}",
                    transient=False,
                )

    # ----------------------------------------------------------------- the runs it started

    def _progress(self, asset: dict[str, Any], event: dict[str, Any]) -> tuple[RunState, str]:
        """Where the runs of the DAGs scheduled on the asset stand, and how to say it."""
        scheduled = [
            str(ref.get("dag_id"))
            for ref in asset.get("scheduled_dags") or []
            if isinstance(ref, dict) and ref.get("dag_id")
        ]
        created = {
            str(ref.get("dag_id")): str(ref.get("run_id"))
            for ref in event.get("created_dagruns") or []
            if isinstance(ref, dict) and ref.get("dag_id") and ref.get("run_id")
        }
        if not scheduled and not created:
            return "success", "no DAG is scheduled on the asset: there is nothing to run"
        states = {
            dag_id: _state(self._api.dag_run(dag_id, run_id)) for dag_id, run_id in created.items()
        }
        waiting = [dag_id for dag_id in scheduled if dag_id not in created]
        going = [dag_id for dag_id, state in states.items() if state in ("queued", "running")]
        failed = [dag_id for dag_id, state in states.items() if state == "failed"]
        if failed and not going:
            return "failed", "; ".join(self._failed(dag_id, created[dag_id]) for dag_id in failed)
        if not failed and not going and not waiting:
            return "success", f"{', '.join(states)} succeeded"
        parts = [f"{dag_id} {state}" for dag_id, state in states.items()]
        if waiting:
            parts.append(f"waiting for Airflow to start {', '.join(waiting)}")
        running = any(state == "running" for state in states.values())
        return ("running" if running else "queued"), ", ".join(parts)

    def _failed(self, dag_id: str, run_id: str) -> str:
        tasks = self._api.failed_tasks(dag_id, run_id)
        return f"DAG {dag_id} failed" + ("" if tasks == "failed" else f" ({tasks})")


class _Api:
    """An Airflow 3 API server as its connector describes it: authentication, errors as our
    own (transient or not), one more try of a safe request after a transient failure."""

    def __init__(
        self,
        connector: AirflowConnector,
        subject: str,
        *,
        session: requests.Session | None,
        sleep: Callable[[float], None],
    ) -> None:
        self.connector = connector
        self.subject = subject  # how its errors begin: "Airflow DAG forecasts_agg"
        self._owns_session = session is None
        self.session = session or requests.Session()
        self._sleep = sleep
        self.base = connector.base_url.rstrip("/")
        self._token = connector.token.get_secret_value() if connector.token is not None else None

    def close(self) -> None:
        """Close the HTTP connections opened here (not a session it was given)."""
        if self._owns_session:
            self.session.close()

    # ----------------------------------------------------------------- DAG runs

    def dag_run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        path = f"/dags/{quote(dag_id, safe='')}/dagRuns/{quote(run_id, safe='')}"
        return _json(self.call("read run", "GET", path), "read run")

    def failed_tasks(self, dag_id: str, run_id: str) -> str:
        path = f"/dags/{quote(dag_id, safe='')}/dagRuns/{quote(run_id, safe='')}/taskInstances"
        params = {"state": ["failed", "upstream_failed"], "limit": _PAGE_LIMIT}
        data = _json(self.call("read task instances", "GET", path, params=params), "tasks")
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

    # ----------------------------------------------------------------- HTTP

    def call(
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
            url = self.base + "/api/v2" + path
            if self.connector.auth == "basic":
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
            raise _http_error(self.subject, what, response)

    @property
    def _logs_in(self) -> bool:
        return self.connector.token is None and self.connector.auth == "token"

    def _credentials(self) -> tuple[str, str]:
        password = self.connector.password
        return self.connector.username or "", password.get_secret_value() if password else ""

    def _bearer(self, what: str) -> str:
        if self._token is None:
            self._token = self._login(what)
        return self._token

    def _login(self, what: str) -> str:
        username, password = self._credentials()
        response = self._request(
            what,
            "POST",
            self.base + "/auth/token",
            None,
            json={"username": username, "password": password},
        )
        if not response.ok:
            raise _http_error(self.subject, f"log in as {username}", response)
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
            return self.session.request(
                method, url, headers=headers, timeout=self.connector.timeout, **kwargs
            )
        except (requests.Timeout, requests.ConnectionError) as exc:
            raise _Transient(
                f"cannot reach Airflow at {self.base} ({what}): {exc.__class__.__name__}",
                _DEFAULT_DELAY_S,
            ) from exc
        except requests.RequestException as exc:
            raise RestartError(f"Airflow request failed ({what}): {exc}", transient=False) from exc


class _Transient(RestartError):
    """A failure that may pass, with how long to wait before the next try."""

    def __init__(self, message: str, delay: float) -> None:
        super().__init__(message, transient=True)
        self.delay = delay


def _http_error(subject: str, what: str, response: requests.Response) -> RestartError:
    """An error answer as our own: rate limits and server trouble may pass, the rest will not."""
    status = response.status_code
    detail = _detail(response)
    text = f"{subject}: {what} failed: HTTP {status}"
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
