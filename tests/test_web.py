"""The web surfaces as one ASGI application under uvicorn: Slack's clicks, the dashboard,
/healthz and /metrics for one project, and ``dq-agent serve``.

Pete's forecast sheet is emptied and its fix waits for him: his click on Approve is answered
at once and acted on once, a replay and a forgery are refused, and a body too large is
refused from its headers. He signs in to the dashboard too, and snoozes the incident there.
Requests go over real HTTP to uvicorn on the loopback, except where a socket adds nothing.
"""

from __future__ import annotations

import gc
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.testclient import TestClient

from dq_agent.escalate.endpoint import ACTIONS_PATH
from dq_agent.ui.app import LOGIN_COOKIE
from dq_agent.ui.auth import hash_token
from dq_agent.web import build_app
from dq_agent_sandbox.slack import signed_interaction
from tests.test_escalation import (  # noqa: F401  (the world fixture)
    HEADER,
    PETE,
    ROWS,
    TUESDAY,
    World,
    post,
    settings,
    world,
)

PETE_TOKEN = "pete-token-0123456789"


@dataclass
class Served:
    base_url: str
    app: Starlette

    def drain(self) -> None:
        self.app.state.drain()


@contextmanager
def serving(app: Starlette) -> Iterator[Served]:
    """``app`` under uvicorn on 127.0.0.1 (any free port), in a thread, until the block ends;
    the server then stops as on SIGTERM."""
    config = uvicorn.Config(
        app, lifespan="on", log_config=None, access_log=False, timeout_graceful_shutdown=5
    )
    bound = socket.create_server(("127.0.0.1", 0))
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [bound]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.started, "uvicorn did not start"
    try:
        yield Served(f"http://127.0.0.1:{bound.getsockname()[1]}", app)
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        bound.close()


@pytest.fixture
def pending(world: World) -> World:  # noqa: F811
    """The sheet emptied, its fix proposed to Pete on Slack, and Pete a dashboard user."""
    user = f"    {PETE}: {{token_hash: '{hash_token(PETE_TOKEN)}'}}\n"
    ui = f"ui:\n  session_secret: web-test\n  users:\n{user}"
    (world.root / "dq-agent.yml").write_text(settings(world.root, world.slack_base, ui))
    world.cycle(TUESDAY - timedelta(hours=1))
    world.empty_the_sheet()
    world.cycle(TUESDAY)
    world.clock.at = TUESDAY + timedelta(minutes=10)
    return world


def sheet(world: World) -> list[list[Any]]:  # noqa: F811
    return list(world.sheets.state()["spreadsheets"]["fin"]["sheets"]["US"])


def headers_only(base_url: str, path: str, headers: dict[str, str]) -> tuple[int, str, str | None]:
    """POST ``path`` with ``headers`` and never a body: status, text, Connection header."""
    url = urlsplit(base_url)
    connection = http.client.HTTPConnection(url.hostname or "", url.port, timeout=1)
    try:
        connection.putrequest("POST", path, skip_accept_encoding=True)
        for name, value in headers.items():
            connection.putheader(name, value)
        connection.endheaders()
        response = connection.getresponse()  # times out if the server waits for a body
        return response.status, response.read().decode(), response.getheader("Connection")
    finally:
        connection.close()


def test_a_click_is_acknowledged_acted_on_once_and_finished_before_the_server_stops(
    pending: World,
) -> None:
    [root] = pending.roots(PETE)
    stamp = int(pending.clock().timestamp())  # the app's clock judges Slack's timestamps
    headers, body = pending.signed_click(PETE, root, "approve_fix", timestamp=stamp)
    with serving(build_app(pending.root, clock=pending.clock, env={})) as served:
        url = served.base_url + ACTIONS_PATH
        forged, _ = signed_interaction("not-the-secret", {"type": "block_actions"}, timestamp=stamp)
        assert post(url, {**forged, "Content-Length": str(len(body))}, body) == 401
        assert post(url, headers, body) == 200
        assert post(url, headers, body) == 401  # the same request again: a replay
        # The server stops at once: the click it acknowledged is still acted on.
    assert sheet(pending) == [HEADER, *ROWS]
    incident = pending.incident()
    assert incident["status"] == "resolved"
    assert [e["event"] for e in incident["events"]].count("resolved") == 1
    assert pending.thread(root)[0].startswith(f"Fix applied: {PETE} approved correction 1")


def test_a_body_over_the_limit_is_refused_from_its_headers(pending: World) -> None:
    with serving(build_app(pending.root, clock=pending.clock, env={})) as served:
        base = served.base_url
        for path, limit in ((ACTIONS_PATH, 1048576), ("/login", 65536)):
            too_large = f"request too large: at most {limit} bytes here"
            assert headers_only(base, path, {"Content-Length": str(limit + 1)}) == (
                413,
                too_large,
                "close",
            )
        assert headers_only(base, ACTIONS_PATH, {"Transfer-Encoding": "chunked"}) == (
            411,
            "send the body with a Content-Length (chunked bodies are not accepted)",
            "close",
        )
        # A length that is no number (or no number of bytes any request has) never reaches
        # the application: uvicorn's parser answers 400.
        for length in ("lots", "-1", "9" * 30):
            assert headers_only(base, ACTIONS_PATH, {"Content-Length": length})[0] == 400
        status, reason, _ = headers_only(base, ACTIONS_PATH, {"Content-Length": "0"})
        assert (status, reason) == (401, "missing Slack signature headers")


def test_pete_signs_in_looks_and_snoozes_on_the_dashboard(pending: World) -> None:
    with TestClient(build_app(pending.root, clock=pending.clock, env={})) as browser:
        assert browser.get("/", follow_redirects=False).headers["location"] == "/login"
        form = browser.get("/login")
        assert form.status_code == 200
        nonce = browser.cookies[LOGIN_COOKIE]
        signed_in = browser.post(
            "/login",
            data={"csrf": nonce, "email": PETE, "token": PETE_TOKEN},
            follow_redirects=False,
        )
        assert (signed_in.status_code, signed_in.headers["location"]) == (303, "/")
        overview = browser.get("/")
        assert overview.status_code == 200
        assert "us_forecast_sheet" in overview.text
        page = browser.get("/incidents/1")
        assert page.status_code == 200
        snooze = r'name="action" value="snooze"><input type="hidden" name="csrf" value="(\w+)"'
        found = re.search(snooze, page.text)
        assert found, "a Snooze button with its form token"
        snoozed = browser.post(
            "/incidents/1", data={"action": "snooze", "csrf": found[1]}, follow_redirects=False
        )
        assert snoozed.status_code == 303
        assert snoozed.headers["location"].startswith("/incidents/1?done=")
        forged = browser.post("/incidents/1", data={"action": "resolve", "csrf": "0" * 64})
        assert (forged.status_code, "form token" in forged.text) == (403, True)
        assert browser.get("/nowhere").status_code == 404
    snoozed_by = [e for e in pending.incident()["events"] if e["event"] == "snoozed"]
    assert pending.incident()["status"] == "snoozed"
    assert len(snoozed_by) == 1


def test_what_the_process_made_before_serving_is_left_out_of_full_collections(
    pending: World,
) -> None:
    """A full pass of the garbage collector went through every module and object the
    process made before serving (about 100 ms, a pause for every request in flight)."""
    assert gc.get_freeze_count() == 0
    with TestClient(build_app(pending.root, clock=pending.clock, env={})) as client:
        assert gc.get_freeze_count() > 100_000
        assert client.get("/healthz").status_code == 200
    assert gc.get_freeze_count() == 0


def test_health_and_metrics_answer(pending: World) -> None:
    with TestClient(build_app(pending.root, clock=pending.clock, env={})) as client:
        health = client.get("/healthz")
        assert health.status_code == 200
        assert json.loads(health.text) == {
            "status": "ok",
            "role": "web",
            "scheduler": "none",
            "store": "ok",
            "suites": 2,
        }
        metrics = client.get("/metrics")
        assert metrics.status_code == 200
        assert metrics.headers["content-type"].startswith("text/plain; version=0.0.4")
        assert "dq_agent_incidents_open 1" in metrics.text
        assert "dq_agent_leader 0" in metrics.text


def test_serve_answers_until_sigterm(pending: World) -> None:
    command = [sys.executable, "-m", "dq_agent.cli", "serve", "--project", str(pending.root)]
    with subprocess.Popen(
        [*command, "--listen", "127.0.0.1:0"],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    ) as process:
        assert process.stderr is not None
        try:
            base = None
            while base is None:
                line = process.stderr.readline()
                assert line, "dq-agent serve stopped before it served"
                running = re.search(r"running on (http://127\.0\.0\.1:\d+)", line)
                base = running[1] if running else None
            url = urlsplit(base)
            connection = http.client.HTTPConnection(url.hostname or "", url.port, timeout=10)
            connection.request("GET", "/healthz")
            response = connection.getresponse()
            assert (response.status, json.loads(response.read())["role"]) == (200, "web")
            connection.close()
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=30) == 0
        finally:
            if process.poll() is None:
                process.kill()
