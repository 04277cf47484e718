"""A loopback stand-in for the Airflow 3 REST API (v2), served by :class:`LoopbackServer`.

It speaks the API server's wire format, so any HTTP client written for Airflow 3 works against
``server.base_url``: ``POST /auth/token`` (the simple auth manager's login) exchanges a username
and password for a bearer token, and every ``/api/v2/…`` call needs
``Authorization: Bearer <token>``. Errors are FastAPI's ``{"detail": …}``: a string for most,
a list of pydantic-style ``{"type", "loc", "msg", "input"}`` entries for a 422, and an object
``{"reason": "Unique constraint violation", …}`` for the 409 of a duplicate ``dag_run_id``.
As in Airflow, a missing token is a 401 ``Not authenticated``, an expired one a 401
``Token Expired`` and an unknown one a 403 ``Invalid JWT token``.

Served: ``POST/GET /api/v2/dags/{dag_id}/dagRuns`` (trigger; list with ``order_by``, ``limit``,
``offset``, ``state``, ``run_type``; ``~`` lists every DAG's runs),
``GET /api/v2/dags/{dag_id}/dagRuns/{dag_run_id}``,
``GET /api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances``,
``POST /api/v2/dags/{dag_id}/clearTaskInstances``, ``GET /api/v2/assets`` (``name_pattern``,
``uri_pattern``, ``dag_ids``, ``order_by``, ``limit``, ``offset``),
``GET /api/v2/assets/{asset_id}`` and ``POST/GET /api/v2/assets/events`` (the list filtered by
``asset_id``, the ``source_*`` fields, ``name_pattern`` and ``timestamp_gte``/``_lte``).

Runs move on the emulator's clock, computed when someone looks (there is no scheduler thread):
a run is ``queued`` for :data:`QUEUE_DELAY_S`, then ``running`` while its tasks run one after
the other, each for ``duration_s / len(tasks)``, then ``success`` — or ``failed`` when the DAG
is set to fail: its ``fail_task`` runs on until the run's time is up and fails, and the tasks
after it become ``upstream_failed``. Clearing task instances (``dry_run: false``) sends the run
back to ``queued``; the cleared tasks, and any that had not finished, run again, and whether
they fail is decided by the DAG's ``fail`` flag at the time of the clear.

Assets are seeded with the DAGs scheduled on them. An asset event (``POST …/assets/events``)
queues those DAGs; the scheduler's next loop, :data:`SCHEDULER_LOOP_S` later on the clock,
creates one ``asset_triggered`` run of each DAG whose assets all have news (Airflow's default
for ``schedule=[a, b]``), records it in the ``created_dagruns`` of every event it consumes,
and the run then goes as a triggered one does. As everything here, the loop happens when
someone looks: a run's ``fail`` flag is the DAG's at the first request after the loop.

Where the emulation stops, it says so here rather than guessing:

- a DAG is a chain of tasks seeded here, each downstream of the one before; there are no DAG
  files, no ``/dags`` endpoints, no pausing, no timetables (a run given a ``logical_date`` gets
  the data interval ``[logical_date, logical_date]``), no mapped tasks (``map_index`` is -1),
  no task retries, no pools or executors (those fields hold fixed values);
- task instances of a run that has not started have no state, except the first, which is
  ``queued`` while the run is; ``try_number`` counts the times a task was queued;
- assets have no producing or consuming tasks, aliases or watchers; every seeded asset is
  active; events sent here have no source task, and their ``extra`` gets
  ``from_rest_api: true`` and the values of secret-looking keys masked, as Airflow does;
- tokens are opaque strings, not JWTs, and never expire unless :meth:`expire_tokens` says so;
  there is one user, allowed everything unless a token is :meth:`forbid`-den;
- request bodies are checked field by field as Airflow's strict models would (unknown fields,
  missing ``logical_date``, types), but datetimes must be ISO 8601 with a time zone, and a 422
  lists the first problem only;
- ``clearTaskInstances`` without ``dag_run_id`` clears across all runs of the DAG (within
  ``start_date``/``end_date`` on the logical date, when given); ``include_past`` and
  ``include_future`` only widen that date range; with ``reset_dag_runs: false`` the cleared
  tasks stay without a state and nothing runs them again.
"""

from __future__ import annotations

import base64
import copy
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, unquote

from dq_agent_sandbox.http import Request, Response

__all__ = ["API_PREFIX", "QUEUE_DELAY_S", "RUN_ID_PATTERN", "SCHEDULER_LOOP_S", "AirflowEmulator"]

JsonObject = dict[str, Any]

API_PREFIX = "/api/v2/"
TOKEN_PATH = "/auth/token"
QUEUE_DELAY_S = 1.0  # how long a triggered or cleared run waits for the "scheduler"
SCHEDULER_LOOP_S = 1.0  # how long after an asset event the scheduler creates the runs
DEFAULT_DURATION_S = 60.0
# [scheduler] allowed_run_id_pattern, Airflow's default.
RUN_ID_PATTERN = r"^[A-Za-z0-9_.~:+-]+$"
_RUN_ID = re.compile(RUN_ID_PATTERN)
_KEY = re.compile(r"^[\w.-]+$")  # dag_id and task_id, as Airflow validates them
FALLBACK_PAGE_LIMIT = 50  # [api] fallback_page_limit
MAXIMUM_PAGE_LIMIT = 100  # [api] maximum_page_limit
RUN_STATES = ("queued", "running", "success", "failed")
TI_STATES = (
    "removed",
    "scheduled",
    "queued",
    "running",
    "success",
    "restarting",
    "failed",
    "up_for_retry",
    "up_for_reschedule",
    "upstream_failed",
    "skipped",
    "deferred",
)
_FAILED = frozenset({"failed", "upstream_failed"})
_FINISHED = frozenset({"success", "failed", "upstream_failed", "skipped", "removed"})
_NAMESPACE = uuid.UUID("6f1c2a4e-55c0-4a53-9d1e-6c7a2b0d9e11")


def _iso(at: float | None) -> str | None:
    """A timestamp as the API writes it: ISO 8601 in UTC with a ``Z``."""
    if at is None:
        return None
    return datetime.fromtimestamp(at, UTC).isoformat().replace("+00:00", "Z")


def _uid(*parts: object) -> str:
    return str(uuid.uuid5(_NAMESPACE, "/".join(str(p) for p in parts)))


class _AirflowError(Exception):
    """An HTTP error answer: ``{"detail": detail}`` with ``status``."""

    def __init__(self, status: int, detail: Any, headers: dict[str, str] | None = None) -> None:
        super().__init__(str(detail))
        self.status = status
        self.detail = detail
        self.headers = headers or {}


def _invalid(kind: str, loc: Iterable[str | int], msg: str, given: Any) -> _AirflowError:
    """A 422 as FastAPI words a failed pydantic validation."""
    entry = {"type": kind, "loc": list(loc), "msg": msg, "input": given}
    return _AirflowError(422, [entry])


# --------------------------------------------------------------------------- model


@dataclass
class _Dag:
    dag_id: str
    tasks: list[str]
    duration_s: float
    fail: bool
    fail_task: str
    created_at: float

    def summary(self) -> JsonObject:
        return {
            "tasks": list(self.tasks),
            "duration_s": self.duration_s,
            "fail": self.fail,
            "fail_task": self.fail_task,
        }

    def version(self) -> JsonObject:
        return {
            "id": _uid("dag_version", self.dag_id),
            "version_number": 1,
            "dag_id": self.dag_id,
            "bundle_name": "dags-folder",
            "bundle_version": None,
            "created_at": _iso(self.created_at),
            "dag_display_name": self.dag_id,
            "bundle_url": None,
        }


@dataclass
class _TaskInstance:
    task_id: str
    id: str
    state: str | None = None
    try_number: int = 0
    max_tries: int = 0
    start: float | None = None
    end: float | None = None
    queued: float | None = None


@dataclass
class _Step:
    """One task's part in the current attempt of a run (offsets are absolute clock times)."""

    task_id: str
    start: float | None  # None: never runs (an upstream task failed)
    end: float | None
    outcome: str  # success, failed or upstream_failed
    prior_tries: int
    first: bool  # the first task of the attempt to run: queued while the run is


@dataclass
class _DagRun:
    seq: int
    dag_id: str
    run_id: str
    logical_date: float | None
    run_after: float
    conf: JsonObject
    note: str | None
    triggered_by: str
    triggering_user_name: str | None
    queued_at: float
    tis: dict[str, _TaskInstance]
    state: str = "queued"
    start: float | None = None
    end: float | None = None
    clear_number: int = 0
    begin_at: float = 0.0  # when the current attempt leaves the queue
    finish_at: float = 0.0  # when the current attempt is over
    plan: dict[str, _Step] = field(default_factory=dict)  # empty once the attempt is over
    run_type: str = "manual"
    interval: tuple[float, float] | None = None  # an asset-triggered run's: its events' span

    @property
    def updated_at(self) -> float:
        return max(t for t in (self.queued_at, self.start, self.end) if t is not None)

    @property
    def duration(self) -> float | None:
        return self.end - self.start if self.start is not None and self.end is not None else None


@dataclass
class _Asset:
    id: int
    name: str
    uri: str
    group: str
    dags: list[str]  # the DAGs scheduled on it
    created_at: float


@dataclass
class _AssetEvent:
    id: int
    asset_id: int
    extra: JsonObject
    at: float
    runs: list[_DagRun] = field(default_factory=list)  # created_dagruns


@dataclass(frozen=True)
class _Fault:
    status: int
    detail: str
    retry_after: int | str | None


# --------------------------------------------------------------------------- bodies

# Field kinds: a trailing "?" allows null.
_TRIGGER_FIELDS: dict[str, str] = {
    "dag_run_id": "str?",
    "data_interval_start": "datetime?",
    "data_interval_end": "datetime?",
    "logical_date": "datetime?",
    "run_after": "datetime?",
    "conf": "dict?",
    "note": "str?",
}
_CLEAR_FIELDS: dict[str, str] = {
    "dry_run": "bool",
    "start_date": "datetime?",
    "end_date": "datetime?",
    "only_failed": "bool",
    "only_running": "bool",
    "reset_dag_runs": "bool",
    "task_ids": "task_ids?",
    "dag_run_id": "str?",
    "include_upstream": "bool",
    "include_downstream": "bool",
    "include_future": "bool",
    "include_past": "bool",
    "run_on_latest_version": "bool",
}
_CLEAR_DEFAULTS: JsonObject = {
    "dry_run": True,  # Airflow's default: a clear that does nothing unless told
    "start_date": None,
    "end_date": None,
    "only_failed": True,
    "only_running": False,
    "reset_dag_runs": True,
    "task_ids": None,
    "dag_run_id": None,
    "include_upstream": False,
    "include_downstream": False,
    "include_future": False,
    "include_past": False,
    "run_on_latest_version": False,
}
_EVENT_FIELDS: dict[str, str] = {"asset_id": "int", "extra": "dict"}
# What Airflow's secrets masker hides in an event's extra: keys containing one of these.
_SENSITIVE = (
    "access_token",
    "api_key",
    "apikey",
    "authorization",
    "passphrase",
    "passwd",
    "password",
    "private_key",
    "secret",
    "token",
    "keyfile_dict",
    "service_account",
)
_TRUE = frozenset({"1", "true", "t", "yes", "y", "on"})
_FALSE = frozenset({"0", "false", "f", "no", "n", "off"})


def _json_body(request: Request) -> JsonObject:
    if not request.body:
        raise _invalid("missing", ["body"], "Field required", None)
    try:
        body = request.json()
    except ValueError:
        raise _invalid("json_invalid", ["body", 0], "JSON decode error", {}) from None
    if not isinstance(body, dict):
        raise _invalid("model_attributes_type", ["body"], "Input should be an object", body)
    return body


def _checked(body: JsonObject, fields: Mapping[str, str], required: Iterable[str]) -> JsonObject:
    """The body's fields converted, as a strict pydantic model would (unknown fields refused)."""
    for name, value in body.items():
        if name not in fields:
            raise _invalid(
                "extra_forbidden", ["body", name], "Extra inputs are not permitted", value
            )
    for name in required:
        if name not in body:
            raise _invalid("missing", ["body", name], "Field required", body)
    return {name: _convert(name, fields[name], value) for name, value in body.items()}


def _convert(name: str, kind: str, value: Any) -> Any:
    loc: list[str | int] = ["body", name]
    if value is None and kind.endswith("?"):
        return None
    kind = kind.rstrip("?")
    if kind == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        if isinstance(value, str) and value.lower() in _TRUE | _FALSE:
            return value.lower() in _TRUE
        msg = "Input should be a valid boolean, unable to interpret input"
        raise _invalid("bool_parsing", loc, msg, value)
    if kind == "str":
        if isinstance(value, str):
            return value
        raise _invalid("string_type", loc, "Input should be a valid string", value)
    if kind == "dict":
        if isinstance(value, dict):
            return copy.deepcopy(value)
        raise _invalid("dict_type", loc, "Input should be a valid dictionary", value)
    if kind == "int":
        return _integer(value, loc)
    if kind == "datetime":
        return _aware(value, loc)
    if kind == "task_ids":
        return _task_ids(value, loc)
    raise AssertionError(f"unknown field kind {kind}")


def _integer(value: Any, loc: list[str | int]) -> int:
    """An integer as pydantic's lax mode takes one: an int, a whole float, digits in text."""
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if value.is_integer():
            return int(value)
        msg = "Input should be a valid integer, got a number with a fractional part"
        raise _invalid("int_from_float", loc, msg, value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            msg = "Input should be a valid integer, unable to parse string as an integer"
            raise _invalid("int_parsing", loc, msg, value) from None
    raise _invalid("int_type", loc, "Input should be a valid integer", value)


def _path_int(raw: str, name: str) -> int:
    return _integer(raw, ["path", name])


def _query_number(raw: str, name: str) -> int:
    return _integer(raw, ["query", name])


def _query_bool(request: Request, name: str) -> bool | None:
    raw = request.param(name)
    if raw is None:
        return None
    if raw.lower() in _TRUE | _FALSE:
        return raw.lower() in _TRUE
    msg = "Input should be a valid boolean, unable to interpret input"
    raise _invalid("bool_parsing", ["query", name], msg, raw)


def _like(pattern: str, text: str) -> bool:
    """Whether ``text`` matches a ``*_pattern`` parameter as Airflow applies one:
    ``ILIKE '%pattern%'`` (``%`` any run of characters, ``_`` any one), ``~`` for all, and
    ``a | b`` for either."""
    if pattern == "~":
        pattern = "%"
    terms = [term.strip() for term in pattern.split("|") if term.strip()]
    if len(terms) < 2:
        terms = [pattern]
    for term in terms:
        regex = "".join(
            ".*" if char == "%" else "." if char == "_" else re.escape(char) for char in term
        )
        if re.search(regex, text, re.IGNORECASE | re.DOTALL):
            return True
    return False


def _redacted(value: Any) -> Any:
    """An event's ``extra`` as Airflow shows it: values of secret-looking keys masked."""
    if isinstance(value, dict):
        return {
            key: "***" if any(s in str(key).lower() for s in _SENSITIVE) else _redacted(item)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [_redacted(item) for item in value]
    return copy.deepcopy(value)


def _aware(value: Any, loc: list[str | int]) -> float:
    if not isinstance(value, str):
        raise _invalid("datetime_type", loc, "Input should be a valid datetime", value)
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        msg = "Input should be a valid datetime or date, invalid character in year"
        raise _invalid("datetime_from_date_parsing", loc, msg, value) from None
    if parsed.tzinfo is None:
        raise _invalid("timezone_aware", loc, "Input should have timezone info", value)
    return parsed.timestamp()


def _task_ids(value: Any, loc: list[str | int]) -> list[tuple[str, int]]:
    """``task_ids`` items: a task id, or ``[task_id, map_index]``."""
    if not isinstance(value, list):
        raise _invalid("list_type", loc, "Input should be a valid list", value)
    if not value:  # ClearTaskInstancesBody's own check
        msg = "Value error, task_ids list should have at least 1 element."
        raise _invalid("value_error", ["body"], msg, value)
    items: list[tuple[str, int]] = []
    for index, item in enumerate(value):
        if isinstance(item, str):
            items.append((item, -1))
        elif (
            isinstance(item, list)
            and len(item) == 2
            and isinstance(item[0], str)
            and isinstance(item[1], int)
        ):
            items.append((item[0], item[1]))
        else:
            msg = "Input should be a valid string"
            raise _invalid("string_type", [*loc, index, "str"], msg, item)
    return items


def _query_int(request: Request, name: str, default: int) -> int:
    raw = request.param(name)
    if raw is None or raw == "":
        return default
    try:
        number = int(raw)
    except ValueError:
        msg = "Input should be a valid integer, unable to parse string as an integer"
        raise _invalid("int_parsing", ["query", name], msg, raw) from None
    if number < 0:
        raise _invalid("greater_than_equal", ["query", name], "Input should be >= 0", raw)
    return number


def _query_values(request: Request, name: str) -> list[str]:
    """A repeatable query parameter (``state=a&state=b``; commas split too)."""
    values: list[str] = []
    for raw in request.query.get(name, []):
        values.extend(v.strip() for v in raw.split(",") if v.strip())
    return values


def _page(request: Request, items: list[Any]) -> list[Any]:
    limit = min(_query_int(request, "limit", FALLBACK_PAGE_LIMIT), MAXIMUM_PAGE_LIMIT)
    offset = _query_int(request, "offset", 0)
    return items[offset : offset + limit]


def _sorted(
    items: list[Any], order_by: list[str], keys: Mapping[str, Callable[[Any], Any]], default: str
) -> list[Any]:
    """Sorted by each ``[-]field`` in turn (NULLs last ascending, first descending)."""
    result = list(items)
    fields = order_by or [default]
    for spec in reversed(fields):
        name = spec.removeprefix("-")
        key = keys.get(name)
        if key is None:
            detail = (
                f"Ordering with '{name}' is disallowed or the attribute does not exist on the model"
            )
            raise _AirflowError(400, detail)
        descending = spec.startswith("-")
        result.sort(key=_nulls_last(key), reverse=descending)
    return result


def _nulls_last(key: Callable[[Any], Any]) -> Callable[[Any], tuple[int, Any]]:
    def sort_key(item: Any) -> tuple[int, Any]:
        value = key(item)
        return (1, "") if value is None else (0, value)

    return sort_key


# --------------------------------------------------------------------------- the emulator


class AirflowEmulator:
    """The Airflow 3 REST API over in-memory DAGs and runs; serve it with LoopbackServer."""

    name = "airflow"

    def __init__(
        self,
        *,
        token: str = "sandbox-airflow-token",
        username: str = "admin",
        password: str = "admin",
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.token = token
        self.username = username
        self.password = password
        self._clock = clock or time.time
        self._lock = threading.Lock()
        self.reset()

    # ----------------------------------------------------------------- test controls

    def reset(self) -> None:
        """Forget every DAG, run, asset, issued token, pending fault and recorded request."""
        with self._lock:
            self._dags: dict[str, _Dag] = {}
            self._runs: list[_DagRun] = []
            self._assets: dict[int, _Asset] = {}
            self._events: list[_AssetEvent] = []
            # The scheduler's queue: per DAG, the events of each of its assets not consumed yet.
            self._queue: dict[str, dict[int, list[_AssetEvent]]] = {}
            self._loops: list[float] = []  # when the scheduler looks at the queue next
            self._issued: set[str] = set()
            self._expired: set[str] = set()
            self._forbidden: set[str] = set()
            self._faults: list[_Fault] = []
            self._log: list[JsonObject] = []
            self._requests = 0

    def seed(self, data: Mapping[str, Any]) -> list[str]:
        """Add (or replace) DAGs and assets; returns the DAGs' ids.

        ``data`` is ``{"dags": {dag_id: {"tasks": [task_id, …], "duration_s"?: 60,
        "fail"?: false, "fail_task"?: task_id}}, "assets": [{"name"?: …, "uri"?: …,
        "group"?: "asset", "scheduled_dags"?: [dag_id, …]}]}``. ``duration_s`` is how long a run
        takes on the emulator's clock once it left the queue; with ``fail`` runs end ``failed``
        at ``fail_task`` (default: the middle task), and the tasks after it ``upstream_failed``.
        An asset given only a name has it as its URI too, and the other way round (as
        ``Asset(…)`` does); one with the name of a seeded asset replaces it, keeping its id.
        """
        dags = [
            _seed_dag(dag_id, spec or {}, f"dags.{dag_id}")
            for dag_id, spec in (data.get("dags") or {}).items()
        ]
        with self._lock:
            now = self._clock()
            for dag in dags:
                dag.created_at = now
                self._dags[dag.dag_id] = dag
            for index, spec in enumerate(data.get("assets") or []):
                self._seed_asset(spec, f"assets[{index}]", now)
        return [dag.dag_id for dag in dags]

    def _seed_asset(self, spec: Any, where: str, now: float) -> None:
        if not isinstance(spec, Mapping):
            raise ValueError(f"{where}: expected a mapping with a name or a uri")
        name, uri = spec.get("name") or spec.get("uri"), spec.get("uri") or spec.get("name")
        if not isinstance(name, str) or not isinstance(uri, str):
            raise ValueError(f"{where}: expected a name or a uri (text)")
        group = spec.get("group", "asset")
        dags = spec.get("scheduled_dags", [])
        if not isinstance(dags, list) or not all(isinstance(d, str) for d in dags):
            raise ValueError(f"{where}.scheduled_dags: expected a list of dag ids")
        unknown = [dag_id for dag_id in dags if dag_id not in self._dags]
        if unknown:
            raise ValueError(f"{where}.scheduled_dags: no DAG {unknown[0]!r} was seeded")
        same = next((a for a in self._assets.values() if a.name == name), None)
        if any(a.uri == uri and a is not same for a in self._assets.values()):
            raise ValueError(f"{where}: another asset has the uri {uri!r}")
        asset_id = same.id if same is not None else len(self._assets) + 1
        created = same.created_at if same is not None else now
        self._assets[asset_id] = _Asset(asset_id, name, uri, str(group), list(dags), created)

    def set_fail(self, dag_id: str, fail: bool, *, task_id: str | None = None) -> None:
        """Make the DAG's next runs (and next clears) fail, at ``task_id`` if given, or not."""
        with self._lock:
            dag = self._dags.get(dag_id)
            if dag is None:
                raise KeyError(f"no DAG {dag_id!r} was seeded")
            if task_id is not None:
                if task_id not in dag.tasks:
                    raise ValueError(f"DAG {dag_id!r} has no task {task_id!r}")
                dag.fail_task = task_id
            dag.fail = fail

    def fail_next(
        self,
        status: int,
        detail: str = "",
        *,
        times: int = 1,
        retry_after: int | str | None = None,
    ) -> None:
        """Answer the next ``times`` ``/api/v2`` calls with ``status`` and ``{"detail": …}``.

        As a proxy in front of Airflow would, before looking at the token. A 429 carries
        ``Retry-After`` (``retry_after``, default 1); other statuses only when it is given.
        Text goes out as it is (``"nan"``, an HTTP date), as a misbehaving proxy might send.
        """
        if times < 1 or not 400 <= status <= 599:
            raise ValueError("fail_next needs times >= 1 and a status of 4xx or 5xx")
        text = detail or HTTPStatus(status).phrase
        with self._lock:
            self._faults.extend([_Fault(status, text, retry_after)] * times)

    def expire_tokens(self) -> None:
        """Every token issued so far answers 401 ``Token Expired`` from now on."""
        with self._lock:
            self._expired |= self._issued
            self._issued = set()

    def forbid(self, token: str) -> None:
        """Calls with this token answer 403 ``Forbidden``, as for a user without permission."""
        with self._lock:
            self._forbidden.add(token)

    def requests_for(self, method: str, path_prefix: str = "") -> list[JsonObject]:
        """Requests that arrived (refused ones included), oldest first, as
        ``{"method", "path", "query", "body"}`` with the path percent-decoded and a JSON body
        decoded (else its text)."""
        with self._lock:
            return [
                copy.deepcopy(entry)
                for entry in self._log
                if entry["method"] == method.upper() and entry["path"].startswith(path_prefix)
            ]

    def state(self) -> dict[str, Any]:
        """DAGs, and every run (oldest first) with its task instances, as the API shows them."""
        with self._lock:
            now = self._clock()
            self._tick(now)
            for run in self._runs:
                self._advance(run, now)
            return {
                "dags": {dag_id: dag.summary() for dag_id, dag in self._dags.items()},
                "dag_runs": [
                    {**self._run_view(run), "task_instances": self._ti_views(run)}
                    for run in self._runs
                ],
                "assets": [self._asset_view(asset) for asset in self._assets.values()],
                "asset_events": [self._event_view(event, now) for event in self._events],
                "requests": self._requests,
            }

    # ----------------------------------------------------------------- requests

    def handle(self, request: Request) -> Response:
        with self._lock:
            self._requests += 1
            self._record(request)
            try:
                if request.path == TOKEN_PATH:
                    if request.method != "POST":
                        raise _AirflowError(405, "Method Not Allowed")
                    return Response(201, {"access_token": self._login(request)})
                if not request.path.startswith(API_PREFIX):
                    raise _AirflowError(404, "Not Found")
                if self._faults:
                    return self._fault(self._faults.pop(0))
                user = self._authenticate(request)
                return Response(200, self._route(request, user))
            except _AirflowError as exc:
                return Response(exc.status, {"detail": exc.detail}, exc.headers)

    def _fault(self, fault: _Fault) -> Response:
        wait = 1 if fault.retry_after is None and fault.status == 429 else fault.retry_after
        headers = {} if wait is None else {"Retry-After": str(wait)}
        return Response(fault.status, {"detail": fault.detail}, headers)

    def _record(self, request: Request) -> None:
        try:
            body: Any = request.json() if request.body else None
        except ValueError:
            body = request.body.decode("utf-8", "replace")
        self._log.append(
            {
                "method": request.method,
                "path": unquote(request.path),
                "query": {k: list(v) for k, v in request.query.items()},
                "body": body,
            }
        )

    def _login(self, request: Request) -> str:
        if request.headers.get("content-type", "").startswith("application/json"):
            body = _json_body(request)
        else:
            parsed = parse_qs(request.body.decode("utf-8"), keep_blank_values=True)
            body = {k: v[-1] for k, v in parsed.items()}
        username, password = body.get("username"), body.get("password")
        if not isinstance(username, str) or not isinstance(password, str):
            raise _AirflowError(400, "Username and password must be provided")
        if not username or not password:
            raise _AirflowError(400, "Username and password must be provided")
        if username != self.username or password != self.password:
            raise _AirflowError(401, "Invalid credentials")
        token = f"sandbox-jwt-{uuid.uuid4().hex}"
        self._issued.add(token)
        return token

    def _authenticate(self, request: Request) -> str:
        """The user a request's bearer token stands for, or the error Airflow answers."""
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        token = token.strip()
        if scheme.lower() == "basic":  # as the FAB auth manager's basic-auth backend takes it
            try:
                user, _, password = base64.b64decode(token).decode("utf-8").partition(":")
            except (ValueError, UnicodeDecodeError):
                user, password = "", ""
            if (user, password) != (self.username, self.password):
                raise _AirflowError(401, "Invalid credentials", {"WWW-Authenticate": "Basic"})
            return user
        if scheme.lower() != "bearer" or not token:
            raise _AirflowError(401, "Not authenticated", {"WWW-Authenticate": "Bearer"})
        if token in self._expired:
            raise _AirflowError(401, "Token Expired")
        if token != self.token and token not in self._issued:
            raise _AirflowError(403, "Invalid JWT token")
        if token in self._forbidden:
            raise _AirflowError(403, "Forbidden")
        return self.username

    def _route(self, request: Request, user: str) -> JsonObject:
        parts = [unquote(p) for p in request.path[len(API_PREFIX) :].strip("/").split("/")]
        now = self._clock()
        self._tick(now)
        match parts:
            case ["dags", dag_id, "dagRuns"]:
                if request.method == "POST":
                    return self._trigger(dag_id, _json_body(request), user, now)
                if request.method == "GET":
                    return self._list_runs(dag_id, request, now)
            case ["dags", dag_id, "dagRuns", run_id]:
                if request.method == "GET":
                    return self._run_view(self._run(dag_id, run_id, now))
            case ["dags", dag_id, "dagRuns", run_id, "taskInstances"]:
                if request.method == "GET":
                    return self._list_tis(dag_id, run_id, request, now)
            case ["dags", dag_id, "clearTaskInstances"]:
                if request.method == "POST":
                    return self._clear(dag_id, _json_body(request), now)
            case ["assets"]:
                if request.method == "GET":
                    return self._list_assets(request)
            case ["assets", "events"]:
                if request.method == "POST":
                    return self._send_event(_json_body(request), now)
                if request.method == "GET":
                    return self._list_events(request, now)
            case ["assets", asset_id]:
                if request.method == "GET":
                    return self._asset_view(self._asset(_path_int(asset_id, "asset_id")))
            case _:
                raise _AirflowError(404, "Not Found")
        raise _AirflowError(405, "Method Not Allowed")

    # ----------------------------------------------------------------- endpoints

    def _trigger(self, dag_id: str, raw: JsonObject, user: str, now: float) -> JsonObject:
        body = _checked(raw, _TRIGGER_FIELDS, required=["logical_date"])
        if (body.get("data_interval_start") is None) != (body.get("data_interval_end") is None):
            msg = (
                "Value error, Either both data_interval_start and data_interval_end must be "
                "provided or both must be None"
            )
            raise _invalid("value_error", ["body"], msg, raw)
        dag = self._dags.get(dag_id)
        if dag is None:
            raise _AirflowError(404, f"DAG with dag_id: '{dag_id}' not found")
        logical_date = body.get("logical_date")
        run_after = body.get("run_after") or now
        if logical_date is not None:
            run_after = logical_date  # the data interval [logical_date, logical_date] ends there
        run_id = body.get("dag_run_id") or (
            "manual__" + datetime.fromtimestamp(logical_date or run_after, UTC).isoformat()
        )
        if not _RUN_ID.match(run_id):
            raise _AirflowError(
                400,
                f"The run_id provided '{run_id}' does not match regex pattern '{RUN_ID_PATTERN}'",
            )
        for other in self._runs:
            same_id = other.run_id == run_id
            same_date = logical_date is not None and other.logical_date == logical_date
            if other.dag_id == dag_id and (same_id or same_date):
                raise _AirflowError(409, _unique_violation())
        run = _DagRun(
            seq=len(self._runs) + 1,
            dag_id=dag_id,
            run_id=run_id,
            logical_date=logical_date,
            run_after=run_after,
            conf=body.get("conf") or {},
            note=body.get("note"),
            triggered_by="rest_api",
            triggering_user_name=user,
            queued_at=now,
            tis={t: _TaskInstance(t, _uid(dag_id, run_id, t, 0)) for t in dag.tasks},
        )
        self._schedule(run, dag, list(dag.tasks), now)
        self._runs.append(run)
        return self._run_view(run)

    def _list_runs(self, dag_id: str, request: Request, now: float) -> JsonObject:
        if dag_id != "~" and dag_id not in self._dags:
            raise _AirflowError(404, f"The DAG with dag_id: `{dag_id}` was not found")
        states = _query_values(request, "state")
        for state in states:
            if state not in RUN_STATES:
                detail = f"Invalid value for state. Valid values are {', '.join(RUN_STATES)}"
                raise _AirflowError(422, detail)
        run_types = _query_values(request, "run_type")
        runs = []
        for run in self._runs:
            if dag_id != "~" and run.dag_id != dag_id:
                continue
            self._advance(run, now)
            if states and run.state not in states:
                continue
            if run_types and run.run_type not in run_types:
                continue
            runs.append(run)
        keys: dict[str, Callable[[Any], Any]] = {
            "id": lambda r: r.seq,
            "state": lambda r: r.state,
            "dag_id": lambda r: r.dag_id,
            "run_id": lambda r: r.run_id,
            "dag_run_id": lambda r: r.run_id,
            "logical_date": lambda r: r.logical_date,
            "run_after": lambda r: r.run_after,
            "start_date": lambda r: r.start,
            "end_date": lambda r: r.end,
            "updated_at": lambda r: r.updated_at,
            "conf": lambda r: str(r.conf),
            "duration": lambda r: r.duration,
        }
        ordered = _sorted(runs, _query_values(request, "order_by"), keys, "id")
        return {
            "dag_runs": [self._run_view(run) for run in _page(request, ordered)],
            "total_entries": len(ordered),
        }

    def _list_tis(self, dag_id: str, run_id: str, request: Request, now: float) -> JsonObject:
        runs = list(self._runs)
        if run_id != "~":
            # Airflow checks that a run has this id (in any DAG: asset-triggered runs of two
            # DAGs share theirs), then filters the task instances by run id and DAG.
            runs = [run for run in self._runs if run.run_id == run_id]
            if not runs:
                raise _AirflowError(404, f"DagRun with run_id: `{run_id}` was not found")
        if dag_id != "~":
            if dag_id not in self._dags:
                raise _AirflowError(404, f"Dag with id {dag_id} was not found")
            runs = [run for run in runs if run.dag_id == dag_id]
        states = _query_values(request, "state")
        for state in states:
            if state not in (*TI_STATES, "no_status", "none"):
                raise _AirflowError(422, f"Invalid value for state: {state}")
        wanted = {None if s in ("no_status", "none") else s for s in states}
        task_ids = _query_values(request, "task_id")
        rows: list[tuple[_DagRun, int, _TaskInstance]] = []
        for run in runs:
            self._advance(run, now)
            dag = self._dags.get(run.dag_id)
            order = dag.tasks if dag is not None else list(run.tis)
            for index, task_id in enumerate(order):
                ti = run.tis.get(task_id)
                if ti is None or (task_ids and task_id not in task_ids):
                    continue
                if states and ti.state not in wanted:
                    continue
                rows.append((run, index, ti))
        keys: dict[str, Callable[[Any], Any]] = {
            "id": lambda row: (row[0].seq, row[1]),
            "map_index": lambda row: -1,
            "state": lambda row: row[2].state,
            "duration": lambda row: _span(row[2].start, row[2].end),
            "start_date": lambda row: row[2].start,
            "end_date": lambda row: row[2].end,
            "try_number": lambda row: row[2].try_number,
            "logical_date": lambda row: row[0].logical_date,
            "run_after": lambda row: row[0].run_after,
            "data_interval_start": lambda row: row[0].logical_date,
            "data_interval_end": lambda row: row[0].logical_date,
            "rendered_map_index": lambda row: None,
            "operator": lambda row: "PythonOperator",
        }
        rows = sorted(rows, key=lambda row: (row[0].seq, row[1]))
        ordered = _sorted(rows, _query_values(request, "order_by"), keys, "map_index")
        return {
            "task_instances": [self._ti_view(run, ti) for run, _, ti in _page(request, ordered)],
            "total_entries": len(ordered),
        }

    def _clear(self, dag_id: str, raw: JsonObject, now: float) -> JsonObject:
        body = {**_CLEAR_DEFAULTS, **_checked(raw, _CLEAR_FIELDS, required=())}
        if body["only_failed"] and body["only_running"]:
            msg = "Value error, only_failed and only_running both are set to True"
            raise _invalid("value_error", ["body"], msg, raw)
        if body["dag_run_id"] is not None and (body["start_date"] or body["end_date"]):
            msg = (
                "Value error, Exactly one of dag_run_id or (start_date and end_date) "
                "must be provided"
            )
            raise _invalid("value_error", ["body"], msg, raw)
        dag = self._dags.get(dag_id)
        if dag is None:
            raise _AirflowError(404, f"Dag with id {dag_id} was not found")
        past, future = body["include_past"], body["include_future"]
        start, end = body["start_date"], body["end_date"]
        runs = [run for run in self._runs if run.dag_id == dag_id]
        if body["dag_run_id"] is not None:
            run = next((r for r in runs if r.run_id == body["dag_run_id"]), None)
            if run is None:
                raise _AirflowError(
                    404, f"Dag Run id {body['dag_run_id']} not found in dag {dag_id}"
                )
            if (past or future) and run.logical_date is None:
                raise _AirflowError(
                    400,
                    "Cannot use include_past or include_future with no logical_date"
                    "(e.g. manually or asset-triggered).",
                )
            runs = [run]
            start = end = run.logical_date
        if past:
            start = None
        if future:
            end = None
        if body["dag_run_id"] is None or past or future:
            runs = [
                r
                for r in runs
                if (start is None or (r.logical_date is not None and r.logical_date >= start))
                and (end is None or (r.logical_date is not None and r.logical_date <= end))
            ]
        tasks = self._clear_tasks(dag, body)
        matched: list[tuple[_DagRun, _TaskInstance]] = []
        for run in runs:
            self._advance(run, now)
            for task_id in dag.tasks:
                ti = run.tis.get(task_id)
                if ti is None or (tasks is not None and task_id not in tasks):
                    continue
                if body["only_failed"] and ti.state not in _FAILED:
                    continue
                if body["only_running"] and ti.state != "running":
                    continue
                matched.append((run, ti))
        if not body["dry_run"]:
            self._reset(dag, matched, reset_runs=body["reset_dag_runs"], now=now)
        return {
            "task_instances": [self._ti_view(run, ti) for run, ti in matched],
            "total_entries": len(matched),
        }

    def _clear_tasks(self, dag: _Dag, body: JsonObject) -> set[str] | None:
        """The task ids a clear is about (``None``: all), relatives included when asked."""
        if body["task_ids"] is None:
            return None
        tasks = {task_id for task_id, map_index in body["task_ids"] if map_index == -1}
        chosen = [i for i, task_id in enumerate(dag.tasks) if task_id in tasks]
        if chosen and body["include_upstream"]:
            tasks |= set(dag.tasks[: max(chosen)])
        if chosen and body["include_downstream"]:
            tasks |= set(dag.tasks[min(chosen) :])
        return tasks

    # ----------------------------------------------------------------- assets

    def _asset(self, asset_id: int) -> _Asset:
        asset = self._assets.get(asset_id)
        if asset is None:
            raise _AirflowError(404, f"The Asset with ID: `{asset_id}` was not found")
        return asset

    def _list_assets(self, request: Request) -> JsonObject:
        _query_bool(request, "only_active")  # every asset here is active
        assets = list(self._assets.values())
        for param, attribute in (("name_pattern", "name"), ("uri_pattern", "uri")):
            pattern = request.param(param)
            if pattern is not None:
                assets = [a for a in assets if _like(pattern, getattr(a, attribute))]
        dag_ids = _query_values(request, "dag_ids")
        if dag_ids:
            assets = [a for a in assets if set(a.dags) & set(dag_ids)]
        keys: dict[str, Callable[[Any], Any]] = {
            "id": lambda a: a.id,
            "name": lambda a: a.name,
            "uri": lambda a: a.uri,
            "created_at": lambda a: a.created_at,
            "updated_at": lambda a: a.created_at,
        }
        ordered = _sorted(assets, _query_values(request, "order_by"), keys, "id")
        return {
            "assets": [self._asset_view(asset) for asset in _page(request, ordered)],
            "total_entries": len(ordered),
        }

    def _send_event(self, raw: JsonObject, now: float) -> JsonObject:
        body = _checked(raw, _EVENT_FIELDS, required=["asset_id"])
        asset = self._assets.get(body["asset_id"])
        if asset is None:
            raise _AirflowError(404, f"Asset with ID: `{body['asset_id']}` was not found")
        extra = {**body.get("extra", {}), "from_rest_api": True}
        event = _AssetEvent(len(self._events) + 1, asset.id, extra, now)
        self._events.append(event)
        for dag_id in asset.dags:
            self._queue.setdefault(dag_id, {}).setdefault(asset.id, []).append(event)
        if asset.dags:
            self._loops.append(now + SCHEDULER_LOOP_S)
        return self._event_view(event, now)

    def _list_events(self, request: Request, now: float) -> JsonObject:
        events = list(self._events)
        asset_id, map_index = request.param("asset_id"), request.param("source_map_index")
        if asset_id is not None:
            wanted = _query_number(asset_id, "asset_id")
            events = [e for e in events if e.asset_id == wanted]
        if map_index is not None and _query_number(map_index, "source_map_index") != -1:
            events = []
        for name in ("source_dag_id", "source_task_id", "source_run_id"):
            if request.param(name) is not None:
                events = []  # events sent through the API have no source task
        pattern = request.param("name_pattern")
        if pattern is not None:
            events = [e for e in events if _like(pattern, self._assets[e.asset_id].name)]
        since, until = request.param("timestamp_gte"), request.param("timestamp_lte")
        if since:
            start = _aware(since, ["query", "timestamp_gte"])
            events = [e for e in events if e.at >= start]
        if until:
            end = _aware(until, ["query", "timestamp_lte"])
            events = [e for e in events if e.at <= end]
        order_by = _query_values(request, "order_by") or ["timestamp"]
        # Ties go by id, in the direction of the first field, as Airflow's do.
        events.sort(key=lambda e: e.id, reverse=order_by[0].startswith("-"))
        keys: dict[str, Callable[[Any], Any]] = {
            "timestamp": lambda e: e.at,
            "source_task_id": lambda e: None,
            "source_dag_id": lambda e: None,
            "source_run_id": lambda e: None,
            "source_map_index": lambda e: -1,
        }
        ordered = _sorted(events, order_by, keys, "timestamp")
        return {
            "asset_events": [self._event_view(event, now) for event in _page(request, ordered)],
            "total_entries": len(ordered),
        }

    # ----------------------------------------------------------------- the "scheduler"

    def _tick(self, now: float) -> None:
        """The scheduler's loops due by ``now``: a run of each DAG whose assets all have news."""
        due = sorted(at for at in self._loops if at <= now)
        self._loops = [at for at in self._loops if at > now]
        for at in due:
            for dag_id, queued in list(self._queue.items()):
                dag = self._dags.get(dag_id)
                needs = {a.id for a in self._assets.values() if dag_id in a.dags}
                if dag is None or not needs <= set(queued):
                    continue
                consumed = sorted(
                    {e.id: e for events in queued.values() for e in events}.values(),
                    key=lambda e: e.id,
                )
                self._asset_run(dag, consumed, at)
                del self._queue[dag_id]

    def _asset_run(self, dag: _Dag, consumed: list[_AssetEvent], at: float) -> None:
        run_id = "asset_triggered__" + datetime.fromtimestamp(at, UTC).isoformat()
        run = _DagRun(
            seq=len(self._runs) + 1,
            dag_id=dag.dag_id,
            run_id=run_id,
            logical_date=None,
            run_after=at,
            conf={},
            note=None,
            triggered_by="asset",
            triggering_user_name=None,
            queued_at=at,
            tis={t: _TaskInstance(t, _uid(dag.dag_id, run_id, t, 0)) for t in dag.tasks},
            run_type="asset_triggered",
            interval=(min(e.at for e in consumed), max(e.at for e in consumed)),
        )
        self._schedule(run, dag, list(dag.tasks), at)
        self._runs.append(run)
        for event in consumed:
            event.runs.append(run)

    def _reset(
        self,
        dag: _Dag,
        matched: list[tuple[_DagRun, _TaskInstance]],
        *,
        reset_runs: bool,
        now: float,
    ) -> None:
        """Clear task instances: no state, another try to come; their runs start over."""
        cleared: dict[int, tuple[_DagRun, set[str]]] = {}
        for run, ti in matched:
            cleared.setdefault(run.seq, (run, set()))[1].add(ti.task_id)
            ti.max_tries = ti.try_number
            ti.id = _uid(run.dag_id, run.run_id, ti.task_id, ti.try_number)
            ti.state, ti.start, ti.end, ti.queued = None, None, None, None
        for run, task_ids in cleared.values():
            if not reset_runs:
                for task_id in task_ids:
                    run.plan.pop(task_id, None)
                continue
            # Whatever had not finished runs again too, as the scheduler would.
            due = [
                task_id
                for task_id in dag.tasks
                if task_id in run.tis and run.tis[task_id].state not in _FINISHED
            ]
            run.clear_number += 1
            run.queued_at = now
            run.state, run.start, run.end = "queued", None, None
            self._schedule(run, dag, due, now)

    def _schedule(self, run: _DagRun, dag: _Dag, due: list[str], now: float) -> None:
        """Plan the run's next attempt: ``due`` tasks run one after the other from the queue."""
        slot = dag.duration_s / len(dag.tasks)
        begin = now + QUEUE_DELAY_S
        plan: dict[str, _Step] = {}
        broken = False  # an upstream task failed: the rest of the chain will not run
        offset = 0.0
        failing: _Step | None = None
        for task_id in dag.tasks:
            ti = run.tis.get(task_id)
            if ti is None:
                continue
            if task_id not in due:
                broken = broken or ti.state in _FAILED
                continue
            if broken:
                plan[task_id] = _Step(task_id, None, None, "upstream_failed", ti.try_number, False)
                continue
            fails = dag.fail and task_id == dag.fail_task
            step = _Step(
                task_id,
                begin + offset,
                begin + offset + slot,
                "failed" if fails else "success",
                ti.try_number,
                first=offset == 0.0,
            )
            plan[task_id] = step
            offset += slot
            if fails:
                failing, broken = step, True
        finish = begin + (slot * len(due) if offset else 0.0)
        if failing is not None:
            failing.end = finish  # the failing task runs on until the run's time is up
        run.plan, run.begin_at, run.finish_at = plan, begin, finish

    def _advance(self, run: _DagRun, now: float) -> None:
        """Bring a run and its task instances to where the clock says they are."""
        if not run.plan:
            return
        for step in run.plan.values():
            ti = run.tis[step.task_id]
            ti.try_number = step.prior_tries
            ti.state, ti.start, ti.end, ti.queued = None, None, None, None
            if step.start is None or step.end is None:  # upstream_failed, once the failure is
                if now >= run.finish_at:
                    ti.state, ti.start, ti.end = step.outcome, run.finish_at, run.finish_at
                continue
            if now < step.start:
                if step.first:
                    ti.state, ti.queued = "queued", run.queued_at
                    ti.try_number = step.prior_tries + 1
                continue
            ti.try_number = step.prior_tries + 1
            ti.queued = run.queued_at if step.first else step.start
            ti.start = step.start
            if now < step.end:
                ti.state = "running"
            else:
                ti.state, ti.end = step.outcome, step.end
        if now < run.begin_at:
            run.state = "queued"
            return
        run.start = run.begin_at
        if now < run.finish_at:
            run.state = "running"
            return
        failed = any(ti.state in _FAILED for ti in run.tis.values())
        run.state, run.end, run.plan = ("failed" if failed else "success"), run.finish_at, {}

    def _run(self, dag_id: str, run_id: str, now: float) -> _DagRun:
        for run in self._runs:
            if run.dag_id == dag_id and run.run_id == run_id:
                self._advance(run, now)
                return run
        raise _AirflowError(
            404, f"The DagRun with dag_id: `{dag_id}` and run_id: `{run_id}` was not found"
        )

    # ----------------------------------------------------------------- views

    def _run_view(self, run: _DagRun) -> JsonObject:
        dag = self._dags.get(run.dag_id)
        return {
            "dag_run_id": run.run_id,
            "dag_id": run.dag_id,
            "logical_date": _iso(run.logical_date),
            "queued_at": _iso(run.queued_at),
            "start_date": _iso(run.start),
            "end_date": _iso(run.end),
            "duration": run.duration,
            "data_interval_start": _iso(run.interval[0] if run.interval else run.logical_date),
            "data_interval_end": _iso(run.interval[1] if run.interval else run.logical_date),
            "run_after": _iso(run.run_after),
            "last_scheduling_decision": _iso(run.start),
            "run_type": run.run_type,
            "state": run.state,
            "triggered_by": run.triggered_by,
            "triggering_user_name": run.triggering_user_name,
            "conf": copy.deepcopy(run.conf),
            "note": run.note,
            "dag_versions": [dag.version()] if dag is not None else [],
            "bundle_version": None,
            "dag_display_name": run.dag_id,
        }

    def _asset_view(self, asset: _Asset) -> JsonObject:
        events = [e for e in self._events if e.asset_id == asset.id]
        last = max(events, key=lambda e: (e.at, e.id)) if events else None
        return {
            "id": asset.id,
            "name": asset.name,
            "uri": asset.uri,
            "group": asset.group,
            "extra": {},
            "created_at": _iso(asset.created_at),
            "updated_at": _iso(asset.created_at),
            "scheduled_dags": [
                {
                    "dag_id": dag_id,
                    "created_at": _iso(asset.created_at),
                    "updated_at": _iso(asset.created_at),
                }
                for dag_id in asset.dags
            ],
            "producing_tasks": [],
            "consuming_tasks": [],
            "aliases": [],
            "last_asset_event": {
                "id": last.id if last else None,
                "timestamp": _iso(last.at) if last else None,
            },
        }

    def _event_view(self, event: _AssetEvent, now: float) -> JsonObject:
        asset = self._assets.get(event.asset_id)
        created = []
        for run in event.runs:
            self._advance(run, now)
            view = self._run_view(run)
            created.append(
                {"run_id": run.run_id}
                | {
                    name: view[name]
                    for name in (
                        "dag_id",
                        "logical_date",
                        "start_date",
                        "end_date",
                        "state",
                        "data_interval_start",
                        "data_interval_end",
                    )
                }
            )
        return {
            "id": event.id,
            "asset_id": event.asset_id,
            "uri": asset.uri if asset else None,
            "name": asset.name if asset else None,
            "group": asset.group if asset else None,
            "extra": _redacted(event.extra),
            "source_task_id": None,
            "source_dag_id": None,
            "source_run_id": None,
            "source_map_index": -1,
            "created_dagruns": created,
            "timestamp": _iso(event.at),
        }

    def _ti_views(self, run: _DagRun) -> list[JsonObject]:
        return [self._ti_view(run, ti) for ti in run.tis.values()]

    def _ti_view(self, run: _DagRun, ti: _TaskInstance) -> JsonObject:
        dag = self._dags.get(run.dag_id)
        tasks = dag.tasks if dag is not None else list(run.tis)
        started = ti.start is not None
        return {
            "id": ti.id,
            "task_id": ti.task_id,
            "dag_id": run.dag_id,
            "dag_run_id": run.run_id,
            "map_index": -1,
            "logical_date": _iso(run.logical_date),
            "run_after": _iso(run.run_after),
            "start_date": _iso(ti.start),
            "end_date": _iso(ti.end),
            "duration": _span(ti.start, ti.end),
            "state": ti.state,
            "try_number": ti.try_number,
            "max_tries": ti.max_tries,
            "task_display_name": ti.task_id,
            "dag_display_name": run.dag_id,
            "hostname": "sandbox" if started else None,
            "unixname": "airflow",
            "pool": "default_pool",
            "pool_slots": 1,
            "queue": "default",
            "priority_weight": len(tasks) - tasks.index(ti.task_id) if ti.task_id in tasks else 1,
            "operator": "PythonOperator",
            "queued_when": _iso(ti.queued),
            "scheduled_when": _iso(ti.queued),
            "pid": 4242 if started else None,
            "executor": None,
            "executor_config": "{}",
            "note": None,
            "rendered_map_index": None,
            "rendered_fields": {},
            "trigger": None,
            "triggerer_job": None,
            "dag_version": dag.version() if dag is not None else None,
        }


def _span(start: float | None, end: float | None) -> float | None:
    return end - start if start is not None and end is not None else None


def _unique_violation() -> JsonObject:
    """The 409 of a duplicate run, as Airflow's unique-constraint handler words it."""
    return {
        "reason": "Unique constraint violation",
        "statement": "hidden",
        "orig_error": "hidden",
        "message": (
            "Serious error when handling your request. Check logs for more details - "
            "you will find it in api server when you look for ID sandbox"
        ),
    }


def _seed_dag(dag_id: Any, spec: Mapping[str, Any], where: str) -> _Dag:
    if not isinstance(dag_id, str) or not _KEY.match(dag_id):
        raise ValueError(f"{where}: a dag_id is letters, digits, '_', '.' and '-'")
    tasks = spec.get("tasks")
    if (
        not isinstance(tasks, list)
        or not tasks
        or not all(isinstance(t, str) and _KEY.match(t) for t in tasks)
        or len(set(tasks)) != len(tasks)
    ):
        raise ValueError(f"{where}.tasks: expected a non-empty list of distinct task ids")
    duration = spec.get("duration_s", DEFAULT_DURATION_S)
    if isinstance(duration, bool) or not isinstance(duration, int | float) or duration <= 0:
        raise ValueError(f"{where}.duration_s: expected a positive number of seconds")
    fail = spec.get("fail", False)
    if not isinstance(fail, bool):
        raise ValueError(f"{where}.fail: expected true or false")
    fail_task = spec.get("fail_task", tasks[len(tasks) // 2])
    if fail_task not in tasks:
        raise ValueError(f"{where}.fail_task: {fail_task!r} is not one of its tasks")
    return _Dag(dag_id, list(tasks), float(duration), fail, str(fail_task), 0.0)
