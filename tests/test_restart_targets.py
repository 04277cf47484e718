"""The dbt Cloud, webhook and command restart targets, against local stand-ins.

dbt Cloud and the webhook receiver are emulators served over real HTTP by ``LoopbackServer``
and reached with ``requests``; commands are real ``sys.executable -c`` processes.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import socket
import sys
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import requests

from dq_agent.config.models import (
    CommandRestart,
    DbtCloudConnector,
    DbtCloudRestart,
    WebhookConnector,
    WebhookRestart,
)
from dq_agent.restart.base import PipelineRun, RestartError, RestartTarget
from dq_agent.restart.command import KEY_VARIABLE, UNKNOWN_OUTCOME, CommandTarget
from dq_agent.restart.dbt_cloud import DbtCloudTarget, cause_for
from dq_agent.restart.webhook import WebhookTarget, sign
from dq_agent_sandbox.http import LoopbackServer, Request, Response

TOKEN = "dbtc_test_token"
ACCOUNT = 70403
JOB = 1234
SECRET = "whsec-test"
NOW = 1764000000


def wait_done(target: RestartTarget, run: PipelineRun, seconds: float = 10.0) -> PipelineRun:
    """Poll until the run is done, failing the test after ``seconds``."""
    deadline = time.monotonic() + seconds
    while not run.done:
        assert time.monotonic() < deadline, f"{target.label} still {run.state} after {seconds}s"
        time.sleep(0.01)
        run = target.poll(run)
    return run


@pytest.fixture
def session() -> Iterator[requests.Session]:
    with requests.Session() as s:
        s.trust_env = False  # loopback servers: no proxies from the environment
        yield s


# --- dbt Cloud ------------------------------------------------------------------------------


def _envelope(data: Any, code: int = 200, message: str | None = None) -> dict[str, Any]:
    return {
        "status": {
            "code": code,
            "is_success": code < 400,
            "user_message": message or "Success!",
            "developer_message": "",
        },
        "data": data,
    }


class DbtCloudEmulator:
    """Just enough of dbt Cloud's Administrative API v2 to trigger, list and read runs.

    Each ``GET runs/{id}/`` moves a run one step along its script (by default
    Queued → Running → Success), so polling sees the progression a real run goes through.
    """

    name = "dbt_cloud"
    HUMAN = {1: "Queued", 2: "Starting", 3: "Running", 10: "Success", 20: "Error", 30: "Cancelled"}

    def __init__(self, *, jobs: tuple[int, ...] = (JOB,)) -> None:
        self.jobs = set(jobs)
        self.runs: dict[int, dict[str, Any]] = {}
        self.scripts: dict[int, list[tuple[int, str | None]]] = {}
        self.script: list[tuple[int, str | None]] = [(3, None), (10, None)]
        self.requests: list[Request] = []
        self.fail_next: list[Response] = []
        self._next_id = 500
        self._lock = threading.Lock()

    def handle(self, request: Request) -> Response:
        with self._lock:
            self.requests.append(request)
            if self.fail_next:
                return self.fail_next.pop(0)
            if request.headers.get("authorization") != f"Token {TOKEN}":
                return Response(401, _envelope(None, 401, "Invalid token."))
            prefix = f"/api/v2/accounts/{ACCOUNT}/"
            if not request.path.startswith(prefix):
                return Response(404, _envelope(None, 404, "Account not found."))
            parts = request.path[len(prefix) :].strip("/").split("/")
            if request.method == "POST" and len(parts) == 3 and parts[::2] == ["jobs", "run"]:
                return self._trigger(int(parts[1]), request.json() or {})
            if request.method == "GET" and parts == ["runs"]:
                return self._list(request)
            if request.method == "GET" and len(parts) == 2 and parts[0] == "runs":
                return self._get(int(parts[1]))
            return Response(404, _envelope(None, 404, "Not found."))

    def _trigger(self, job_id: int, body: dict[str, Any]) -> Response:
        if job_id not in self.jobs:
            return Response(404, _envelope(None, 404, f"Job {job_id} not found."))
        if not body.get("cause"):
            return Response(400, _envelope(None, 400, "cause is required"))
        self._next_id += 1
        run_id = self._next_id
        run = {
            "id": run_id,
            "job_definition_id": job_id,
            "status": 1,
            "status_humanized": "Queued",
            "status_message": None,
            "href": f"https://cloud.example/deploy/{ACCOUNT}/runs/{self._next_id}",
            "trigger": {
                "id": self._next_id + 9000,
                "cause": body["cause"],
                "steps_override": body.get("steps_override"),
            },
        }
        self.runs[run_id] = run
        self.scripts[run_id] = list(self.script)
        return Response(200, _envelope(self._public(run, with_trigger=True)))

    def _get(self, run_id: int) -> Response:
        run = self.runs.get(run_id)
        if run is None:
            return Response(404, _envelope(None, 404, "Run not found."))
        script = self.scripts[run_id]
        if script:
            status, message = script.pop(0)
            run.update(status=status, status_humanized=self.HUMAN[status], status_message=message)
        return Response(200, _envelope(self._public(run, with_trigger=False)))

    def _list(self, request: Request) -> Response:
        runs = sorted(self.runs.values(), key=lambda r: r["id"])
        job = request.param("job_definition_id")
        if job is not None:
            runs = [r for r in runs if str(r["job_definition_id"]) == job]
        if request.param("order_by") == "-id":
            runs.reverse()
        runs = runs[int(request.param("offset", "0") or 0) :]
        runs = runs[: int(request.param("limit", "100") or 100)]
        # The docs write it as a JSON array: include_related=["trigger"].
        related = request.param("include_related") or "[]"
        wanted = json.loads(related) if related.startswith("[") else related.split(",")
        listed = [self._public(r, with_trigger="trigger" in wanted) for r in runs]
        return Response(200, _envelope(listed))

    @staticmethod
    def _public(run: dict[str, Any], *, with_trigger: bool) -> dict[str, Any]:
        shown = dict(run)
        if not with_trigger:
            shown["trigger"] = None  # as dbt Cloud does without include_related
        return shown

    def state(self) -> dict[str, Any]:
        with self._lock:
            return {"runs": list(self.runs.values())}


@pytest.fixture
def dbt() -> Iterator[tuple[DbtCloudEmulator, LoopbackServer]]:
    emulator = DbtCloudEmulator()
    with LoopbackServer(emulator) as server:
        yield emulator, server


def _dbt_target(
    server: LoopbackServer, session: requests.Session, *, token: str = TOKEN, job: int = JOB
) -> DbtCloudTarget:
    connector = DbtCloudConnector(
        type="dbt_cloud", base_url=server.base_url + "/", account_id=ACCOUNT, token=token
    )
    spec = DbtCloudRestart(connector="dbt", job_id=job, cause="orders fixed by dq-agent")
    return DbtCloudTarget(connector, spec, session=session)


def test_dbt_cloud_run_goes_queued_running_success(
    dbt: tuple[DbtCloudEmulator, LoopbackServer], session: requests.Session
) -> None:
    emulator, server = dbt
    target = _dbt_target(server, session)
    assert target.label == f"dbt Cloud job {JOB}"

    run = target.start("restart-7")
    assert run == PipelineRun(
        "501", "queued", "Queued", f"https://cloud.example/deploy/{ACCOUNT}/runs/501"
    )
    lookup, trigger = emulator.requests
    assert (lookup.method, lookup.path) == ("GET", f"/api/v2/accounts/{ACCOUNT}/runs/")
    assert lookup.query == {
        "job_definition_id": [str(JOB)],
        "order_by": ["-id"],
        "limit": ["10"],
        "include_related": ['["trigger"]'],
    }
    assert (trigger.method, trigger.path) == ("POST", f"/api/v2/accounts/{ACCOUNT}/jobs/{JOB}/run/")
    assert trigger.json() == {"cause": "orders fixed by dq-agent (dq-agent restart-7)"}
    assert all(r.headers["authorization"] == f"Token {TOKEN}" for r in emulator.requests)

    run = target.poll(run)
    assert (run.state, run.detail) == ("running", "Running")
    run = target.poll(run)
    assert (run.state, run.detail) == ("success", "Success")
    assert emulator.requests[-1].path == f"/api/v2/accounts/{ACCOUNT}/runs/501/"
    # A finished run is not asked about again.
    assert target.poll(run) is run
    assert len(emulator.requests) == 4


def test_dbt_cloud_error_and_cancelled_runs_fail_with_the_message(
    dbt: tuple[DbtCloudEmulator, LoopbackServer], session: requests.Session
) -> None:
    emulator, server = dbt
    target = _dbt_target(server, session)
    emulator.script = [(2, None), (3, None), (20, "Database Error in model orders_agg")]
    run = target.start("restart-8")
    assert target.poll(run).state == "queued"  # 2 Starting: nothing of the job ran yet
    run = wait_done(target, run)
    assert (run.state, run.detail) == ("failed", "Error: Database Error in model orders_agg")

    emulator.script = [(30, None)]
    run = wait_done(target, target.start("restart-9"))
    assert (run.state, run.detail) == ("failed", "Cancelled")


def test_dbt_cloud_start_reuses_the_run_its_key_triggered(
    dbt: tuple[DbtCloudEmulator, LoopbackServer], session: requests.Session
) -> None:
    emulator, server = dbt
    first = _dbt_target(server, session).start("restart-7")
    _dbt_target(server, session).start("other-restart")
    # The agent crashed after triggering: a new instance retries the same restart.
    again = _dbt_target(server, session).start("restart-7")
    assert again.run_id == first.run_id
    assert len(emulator.runs) == 2
    posts = [r for r in emulator.requests if r.method == "POST"]
    assert len(posts) == 2


def test_dbt_cloud_cause_keeps_the_key_within_the_length_limit() -> None:
    cause = cause_for("x" * 400, "restart-7")
    assert len(cause) == 255
    assert cause.endswith("… (dq-agent restart-7)")


def test_dbt_cloud_bad_token_is_not_transient(
    dbt: tuple[DbtCloudEmulator, LoopbackServer], session: requests.Session
) -> None:
    _, server = dbt
    with pytest.raises(RestartError, match=r"^dbt Cloud 401: Invalid token\.$") as caught:
        _dbt_target(server, session, token="wrong").start("restart-7")
    assert caught.value.transient is False


def test_dbt_cloud_unknown_job_is_not_transient(
    dbt: tuple[DbtCloudEmulator, LoopbackServer], session: requests.Session
) -> None:
    _, server = dbt
    with pytest.raises(RestartError, match=r"^dbt Cloud 404: Job 99 not found\.$") as caught:
        _dbt_target(server, session, job=99).start("restart-7")
    assert caught.value.transient is False


def test_dbt_cloud_unavailable_or_unreachable_is_transient(
    dbt: tuple[DbtCloudEmulator, LoopbackServer], session: requests.Session
) -> None:
    emulator, server = dbt
    target = _dbt_target(server, session)
    emulator.fail_next.append(Response(503, b"<html>upstream unavailable</html>"))
    with pytest.raises(RestartError, match=r"^dbt Cloud 503: <html>") as caught:
        target.start("restart-7")
    assert caught.value.transient is True

    run = target.start("restart-7")
    emulator.fail_next.append(Response(429, _envelope(None, 429, "Too many requests")))
    with pytest.raises(RestartError, match="429: Too many requests") as caught:
        target.poll(run)
    assert caught.value.transient is True

    # Nothing listens on a port just released (a fresh session: no kept-alive connection).
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with requests.Session() as fresh:
        fresh.trust_env = False
        connector = DbtCloudConnector(
            type="dbt_cloud", base_url=f"http://127.0.0.1:{port}", account_id=ACCOUNT, token=TOKEN
        )
        spec = DbtCloudRestart(connector="dbt", job_id=JOB)
        gone = DbtCloudTarget(connector, spec, session=fresh)
        with pytest.raises(
            RestartError, match="^cannot reach dbt Cloud: ConnectionError"
        ) as caught:
            gone.poll(run)
    assert caught.value.transient is True


# --- webhook --------------------------------------------------------------------------------


class WebhookReceiver:
    """A pipeline's restart endpoint, verifying signatures the way a receiver should."""

    name = "webhook"

    def __init__(self, secret: str | None = SECRET, *, now: float = NOW) -> None:
        self.secret = secret
        self.now = now
        self.answer: Response = Response(202, {"run_id": "r-1"})
        self.states: list[dict[str, Any]] = []
        self.received: list[Request] = []
        self.polls = 0
        self._lock = threading.Lock()

    def handle(self, request: Request) -> Response:
        with self._lock:
            if request.method == "GET" and request.path == "/status/r-1":
                self.polls += 1
                return Response(200, self.states.pop(0))
            if request.method != "POST" or request.path != "/hooks/restart":
                return Response(404, {"error": f"no route {request.method} {request.path}"})
            self.received.append(request)
            if self.secret is not None:
                problem = self._verify(request)
                if problem:
                    return Response(401, {"error": problem})
            return self.answer

    def _verify(self, request: Request) -> str | None:
        timestamp = request.headers.get("x-dq-agent-timestamp", "")
        signature = request.headers.get("x-dq-agent-signature", "")
        if not timestamp.isdigit() or abs(self.now - int(timestamp)) > 300:
            return "stale or missing timestamp"
        assert self.secret is not None
        # Over the raw bytes as received, before any JSON parsing.
        expected = hmac.new(
            self.secret.encode(), timestamp.encode() + b"." + request.body, hashlib.sha256
        ).hexdigest()
        if not hmac.compare_digest(signature, f"sha256={expected}"):
            return "bad signature"
        return None

    def state(self) -> dict[str, Any]:
        return {"received": len(self.received), "polls": self.polls}


@pytest.fixture
def receiver() -> Iterator[tuple[WebhookReceiver, LoopbackServer]]:
    emulator = WebhookReceiver()
    with LoopbackServer(emulator) as server:
        yield emulator, server


def _webhook_target(
    server: LoopbackServer,
    session: requests.Session,
    *,
    secret: str | None = SECRET,
    path: str = "/hooks/restart",
) -> WebhookTarget:
    connector = WebhookConnector(
        type="webhook", url=server.base_url + path, secret=secret, headers={"X-Team": "data"}
    )
    spec = WebhookRestart(connector="orders_hook", body={"pipeline": "orders", "full": True})
    return WebhookTarget("orders_hook", connector, spec, session=session, clock=lambda: NOW)


def test_webhook_sends_a_signed_idempotent_request(
    receiver: tuple[WebhookReceiver, LoopbackServer], session: requests.Session
) -> None:
    emulator, server = receiver
    target = _webhook_target(server, session)
    assert target.label == "webhook orders_hook"

    run = target.start("restart-7")
    assert run == PipelineRun("r-1", "success", "the webhook accepted the restart")
    (request,) = emulator.received
    assert request.body == b'{"full":true,"idempotency_key":"restart-7","pipeline":"orders"}'
    assert request.headers["content-type"] == "application/json"
    assert request.headers["idempotency-key"] == "restart-7"
    assert request.headers["x-team"] == "data"
    assert request.headers["x-dq-agent-timestamp"] == str(NOW)
    assert request.headers["x-dq-agent-signature"] == sign(SECRET, NOW, request.body)
    # Without a status_url there is nothing to follow.
    assert target.poll(run) is run


def test_webhook_receiver_rejects_a_wrong_signature(
    receiver: tuple[WebhookReceiver, LoopbackServer], session: requests.Session
) -> None:
    _, server = receiver
    target = _webhook_target(server, session, secret="not-the-secret")
    with pytest.raises(RestartError, match=r"^webhook 401: bad signature$") as caught:
        target.start("restart-7")
    assert caught.value.transient is False


def test_webhook_without_a_secret_is_unsigned_and_run_id_defaults_to_the_key(
    session: requests.Session,
) -> None:
    emulator = WebhookReceiver(secret=None)
    emulator.answer = Response(200, b"OK")
    with LoopbackServer(emulator) as server:
        run = _webhook_target(server, session, secret=None).start("restart-7")
    assert (run.run_id, run.state) == ("restart-7", "success")
    (request,) = emulator.received
    assert "x-dq-agent-signature" not in request.headers
    assert "x-dq-agent-timestamp" not in request.headers


def test_webhook_status_url_is_polled_until_done(
    receiver: tuple[WebhookReceiver, LoopbackServer], session: requests.Session
) -> None:
    emulator, server = receiver
    status_url = server.base_url + "/status/r-1"
    emulator.answer = Response(202, {"run_id": "r-1", "status_url": status_url})
    emulator.states = [
        {"state": "queued"},
        {"state": "running", "detail": "step 2 of 3"},
        {"state": "failed", "detail": "orders_agg: division by zero"},
    ]
    target = _webhook_target(server, session)
    run = target.start("restart-7")
    assert (run.run_id, run.state, run.url) == ("r-1", "running", status_url)
    assert target.poll(run).state == "queued"
    run = target.poll(run)
    assert (run.state, run.detail) == ("running", "step 2 of 3")
    run = target.poll(run)
    assert (run.state, run.detail) == ("failed", "orders_agg: division by zero")
    assert emulator.polls == 3

    emulator.states = [{"state": "success"}]
    assert target.poll(PipelineRun("r-1", "running", url=status_url)).state == "success"
    emulator.states = [{"state": "exploded"}]
    with pytest.raises(RestartError, match="answered state 'exploded'"):
        target.poll(PipelineRun("r-1", "running", url=status_url))


def test_webhook_server_error_is_transient_and_missing_endpoint_is_not(
    receiver: tuple[WebhookReceiver, LoopbackServer], session: requests.Session
) -> None:
    emulator, server = receiver
    emulator.answer = Response(500, {"error": "database is locked"})
    with pytest.raises(RestartError, match=r"^webhook 500: database is locked$") as caught:
        _webhook_target(server, session).start("restart-7")
    assert caught.value.transient is True

    with pytest.raises(RestartError, match=r"^webhook 404: no route POST /hooks/nope$") as caught:
        _webhook_target(server, session, path="/hooks/nope").start("restart-7")
    assert caught.value.transient is False


# --- command --------------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _command(*code: str, **kwargs: Any) -> CommandRestart:
    return CommandRestart(run=[sys.executable, "-c", "\n".join(code)], **kwargs)


def _live_members(group: int) -> list[int]:
    """Processes of a process group that are neither gone nor zombies (Linux /proc)."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        state, pgrp = fields[0], int(fields[2])
        if pgrp == group and state not in ("Z", "X"):
            members.append(int(entry.name))
    return members


def test_command_success(tmp_path: Path) -> None:
    target = CommandTarget(_command("print('rebuilt orders_agg')"), root=tmp_path)
    assert target.label.startswith(f"command {sys.executable} -c print(")
    run = target.start("restart-7")
    assert run.state == "running" and run.run_id.isdigit()
    run = wait_done(target, run)
    assert (run.state, run.detail) == ("success", "exit code 0")


def test_command_failure_reports_exit_code_and_output_tail(tmp_path: Path) -> None:
    spec = _command(
        "import sys",
        "for i in range(1, 31): print(f'line {i}', flush=True)",
        "print('boom: orders_agg failed', file=sys.stderr)",
        "sys.exit(3)",
    )
    target = CommandTarget(spec, root=tmp_path)
    run = wait_done(target, target.start("restart-7"))
    assert run.state == "failed"
    lines = run.detail.splitlines()
    assert lines[0] == "exit code 3"
    assert lines[1:] == [f"line {i}" for i in range(12, 31)] + ["boom: orders_agg failed"]


def test_command_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    spec = _command(
        "import subprocess, sys, time",
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])",
        f"open({str(pid_file)!r}, 'w').write(str(child.pid))",
        "time.sleep(60)",
        timeout=timedelta(minutes=2),
    )
    clock = FakeClock()
    target = CommandTarget(spec, root=tmp_path, clock=clock)
    run = target.start("restart-7")
    group = int(run.run_id)
    deadline = time.monotonic() + 10
    while not pid_file.exists() or not pid_file.read_text():
        assert time.monotonic() < deadline, "the command never started its child"
        time.sleep(0.01)
    child = int(pid_file.read_text())
    assert child in _live_members(group)

    clock.now += 120  # at the limit: still allowed
    assert target.poll(run).state == "running"
    clock.now += 1
    run = target.poll(run)
    assert (run.state, run.detail) == ("failed", "timed out after 2m; stopped")

    deadline = time.monotonic() + 5
    while _live_members(group):
        assert time.monotonic() < deadline, f"still alive in group {group}: {_live_members(group)}"
        time.sleep(0.01)


def test_command_missing_executable_is_not_transient(tmp_path: Path) -> None:
    for argv in (["dq-agent-no-such-program-xyz"], [str(tmp_path / "missing.sh")]):
        target = CommandTarget(CommandRestart(run=argv), root=tmp_path)
        with pytest.raises(RestartError, match="no such executable") as caught:
            target.start("restart-7")
        assert caught.value.transient is False


def test_command_sees_the_key_its_env_and_its_cwd(tmp_path: Path) -> None:
    (tmp_path / "pipelines").mkdir()
    spec = _command(
        "import json, os",
        "json.dump({'key': os.environ['DQ_AGENT_RESTART_KEY'], 'stage': os.environ['STAGE'],"
        " 'path': 'PATH' in os.environ}, open('seen.json', 'w'))",
        cwd="pipelines",
        env={"STAGE": "prod"},
    )
    target = CommandTarget(spec, root=tmp_path)
    run = wait_done(target, target.start("restart-7"))
    assert run.state == "success"
    seen = json.loads((tmp_path / "pipelines" / "seen.json").read_text())
    assert seen == {"key": "restart-7", "stage": "prod", "path": True}
    assert KEY_VARIABLE == "DQ_AGENT_RESTART_KEY"
    assert KEY_VARIABLE not in os.environ  # the agent's own environment is left alone


def test_command_missing_cwd_is_not_transient(tmp_path: Path) -> None:
    target = CommandTarget(_command("pass", cwd="nowhere"), root=tmp_path)
    with pytest.raises(RestartError, match="working directory .* does not exist") as caught:
        target.start("restart-7")
    assert caught.value.transient is False


def test_command_retried_start_and_unknown_runs(tmp_path: Path) -> None:
    target = CommandTarget(_command("import time; time.sleep(0.2)"), root=tmp_path)
    run = target.start("restart-7")
    assert target.start("restart-7").run_id == run.run_id  # no second process
    # A fresh instance (dq-agent restarted) cannot know how the process ended.
    after_restart = CommandTarget(_command("pass"), root=tmp_path).poll(run)
    assert (after_restart.state, after_restart.detail) == ("failed", UNKNOWN_OUTCOME)
    assert wait_done(target, run).state == "success"
    assert target.start("restart-7") == PipelineRun(run.run_id, "success", "exit code 0")
