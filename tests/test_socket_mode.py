"""Button clicks over Slack's Socket Mode, with slack-sdk's own SocketModeClient connected to
the Slack emulator: the agent opens the connection, so Slack needs no public URL.

The scenario is the forecast sheet of tests/test_escalation.py: Pete's tab is emptied, the
agent proposes to put back its last good copy, and Pete presses Approve fix. Whatever the
connection does (the same envelope twice, a second replica, a connection lost before the
acknowledgement), the click is acknowledged and the fix written once. Clients ping and check
their connection every 0.2 s, so a lost one is replaced within about a second.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from click.testing import CliRunner

from dq_agent.cli import main
from dq_agent.config import load_project
from dq_agent.daemon import service
from dq_agent.daemon.service import Daemon
from dq_agent.escalate.actions import Actions
from dq_agent.escalate.endpoint import ACTIONS_PATH
from dq_agent.escalate.slack import SlackError
from dq_agent.escalate.socket_mode import SocketInteractions
from dq_agent.store import Store
from dq_agent_sandbox.http import LoopbackServer
from dq_agent_sandbox.slack import SlackEmulator, button_click
from dq_agent_sandbox.slack_socket import SocketModeLink
from tests.helpers import make_project
from tests.test_config import ANY_SUITE, WAREHOUSE, issues_of
from tests.test_escalation import (
    HEADER,
    PETE,
    ROWS,
    SECRET,
    TUESDAY,
    World,
    button_value,
    make_world,
    post,
)

APP_TOKEN = "xapp-1-A0TEST-0001-socket"
PING_S = 0.2
FIX_APPLIED = (
    f"Fix applied: {PETE} approved correction 1 (verified on a copy, then written compare-and-set)"
)
RESOLVED = ":white_check_mark: Resolved: the check passes again. Closing incident #1."


@contextmanager
def socket_world(
    tmp_path: Path, app_token: str = APP_TOKEN, *, pending_fix: bool = True
) -> Iterator[World]:
    """tests/test_escalation.py's world with ``slack.mode: socket`` (and no signing secret),
    the emulator's Socket Mode link serving, and a fix of Pete's sheet awaiting approval."""
    with make_world(tmp_path) as world, world.slack.socket_mode:
        world.slack.app_token = APP_TOKEN
        settings = world.root / "dq-agent.yml"
        settings.write_text(
            settings.read_text().replace(
                f"  signing_secret: {SECRET}\n", f"  mode: socket\n  app_token: {app_token}\n"
            )
        )
        if pending_fix:
            world.cycle(TUESDAY - timedelta(hours=1))  # a good read: kept as the last good copy
            world.empty_the_sheet()
            world.cycle(TUESDAY)
        world.clock.at = TUESDAY + timedelta(minutes=10)
        yield world


def link(world: World) -> SocketModeLink:
    return world.slack.socket_mode


def approve_fix(world: World) -> dict[str, Any]:
    """What Slack sends when Pete presses Approve fix on the incident's first message."""
    [root] = world.roots(PETE)
    return button_click(
        user_id=world.user_id(PETE),
        action_id="approve_fix",
        value=button_value(root, "approve_fix"),
        channel_id=root["channel"],
        message_ts=root["ts"],
    )


@contextmanager
def replica(world: World, acted: list[str]) -> Iterator[SocketInteractions]:
    """One agent process taking clicks over Socket Mode, with its own store connection;
    ``acted`` hears the trigger of every click it acts on."""
    project = load_project(world.root, env={})
    assert project.issues == () and project.settings.slack is not None
    with Store.open(project.state_url) as store:
        actions = Actions(project, store, world.api(), world.options())

        def act(payload: Mapping[str, Any]) -> None:
            acted.append(str(payload["trigger_id"]))
            actions.handle(payload)

        with SocketInteractions(project.settings.slack, store, act, ping_interval=PING_S) as taken:
            yield taken


def assert_fixed_once(world: World) -> None:
    assert world.sheets.state()["spreadsheets"]["fin"]["sheets"]["US"] == [HEADER, *ROWS]
    assert world.incident()["status"] == "resolved"
    [root] = world.roots(PETE)
    assert world.thread(root) == [FIX_APPLIED, RESOLVED]
    assert world.ephemerals() == []


def test_approve_fix_is_acknowledged_at_once_and_applied_once(tmp_path: Path) -> None:
    with socket_world(tmp_path) as world:
        release, acted = threading.Event(), []
        project = load_project(world.root, env={})
        assert project.settings.slack is not None
        with Store.open(project.state_url) as store:
            actions = Actions(project, store, world.api(), world.options())

            def slow_act(payload: Mapping[str, Any]) -> None:
                release.wait(timeout=10)  # writing and checking the fix takes its time
                acted.append(payload["trigger_id"])
                actions.handle(payload)

            settings = project.settings.slack
            with SocketInteractions(settings, store, slow_act, ping_interval=PING_S) as taken:
                envelope = link(world).click(approve_fix(world))
                link(world).wait(lambda: link(world).acknowledged(envelope) == 1)
                assert acted == []  # acknowledged while the action still waits
                release.set()
                taken.drain()
                assert (taken.taken, taken.repeated) == (1, 0)
        assert len(acted) == 1
        assert_fixed_once(world)
        assert [acked for acked, _ in link(world).state()["acks"]] == [envelope]


def test_an_envelope_delivered_twice_or_to_another_replica_is_acted_on_once(
    tmp_path: Path,
) -> None:
    with socket_world(tmp_path) as world:
        acted: list[str] = []
        with replica(world, acted) as first:
            link(world).wait(lambda: len(link(world).open_connections()) == 1)
            [to_first] = link(world).open_connections()
            with replica(world, acted) as second:
                link(world).wait(lambda: len(link(world).open_connections()) == 2)
                [_, to_second] = link(world).open_connections()
                envelope = link(world).click(approve_fix(world))  # to the newest: the second
                link(world).wait(lambda: link(world).acknowledged(envelope) == 1)
                second.drain()
                link(world).deliver(envelope, to=to_second)  # the same envelope again
                link(world).deliver(envelope, to=to_first)  # and to the other replica
                link(world).wait(lambda: link(world).acknowledged(envelope) == 3)
                first.drain()
                second.drain()
                assert (second.taken, second.repeated) == (1, 1)
                assert (first.taken, first.repeated) == (0, 1)
        assert len(acted) == 1
        assert_fixed_once(world)


def test_a_connection_lost_before_the_ack_is_replaced_and_the_click_acted_on_once(
    tmp_path: Path,
) -> None:
    with socket_world(tmp_path) as world:
        acted: list[str] = []
        with replica(world, acted) as taken:
            link(world).wait(lambda: len(link(world).open_connections()) == 1)
            [lost] = link(world).open_connections()
            # Delivered, then the connection drops: the acknowledgement never reaches Slack.
            envelope = link(world).click(approve_fix(world), drop=True)
            # The client finds its connection dead, opens a new one (apps.connections.open
            # again), and Slack delivers the unacknowledged envelope there.
            link(world).wait(lambda: link(world).acknowledged(envelope) == 1, timeout=10)
            taken.drain()
            assert taken.connected
            assert (taken.taken, taken.repeated) == (1, 1)
        state = link(world).state()
        [(_, delivered), (_, again)] = state["deliveries"]
        assert delivered == lost and again > lost  # on the new connection
        assert state["acks"] == [[envelope, again]]
        assert [c["dropped"] for c in state["connections"] if c["number"] == lost] == [True]
        assert world.slack.requests_for("apps.connections.open") >= 2
        assert len(acted) == 1
        assert_fixed_once(world)


def test_a_bad_app_token_names_the_setting_and_never_shows_the_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wrong = "xapp-1-A0TEST-0001-not-the-one"
    with socket_world(tmp_path, app_token=wrong, pending_fix=False) as world:
        project = load_project(world.root, env={})
        assert project.settings.slack is not None
        with Store.open(project.state_url) as store:
            taking = SocketInteractions(project.settings.slack, store, lambda _: None)
            with pytest.raises(SlackError) as refused:
                taking.start()
        assert str(refused.value) == (
            "Slack refused slack.app_token (invalid_auth): it must be the app-level token "
            "(xapp-…) of the agent's Slack app, with the connections:write scope"
        )
        assert refused.value.transient is False
        assert link(world).state()["connections"] == []

        # The command says so and stops (its signal handlers left alone: this is pytest's).
        monkeypatch.setattr("dq_agent.cli.serve.stop_on_signals", threading.Event)
        done = CliRunner().invoke(main, ["interactions", "--project", str(world.root)])
        assert done.exit_code == 3
        assert done.stderr == f"error: {refused.value}\n"
        assert wrong not in done.output


def test_the_interactions_command_takes_clicks_over_socket_mode(tmp_path: Path) -> None:
    with socket_world(tmp_path) as world:
        command = [sys.executable, "-m", "dq_agent.cli", "interactions"]
        with subprocess.Popen(
            [*command, "--project", str(world.root)], stderr=subprocess.PIPE, text=True
        ) as process:
            assert process.stderr is not None
            try:
                assert process.stderr.readline() == "connected to Slack (Socket Mode)\n"
                envelope = link(world).click(approve_fix(world))
                link(world).wait(lambda: link(world).acknowledged(envelope) == 1)
                process.send_signal(signal.SIGTERM)  # clicks acknowledged are acted on first
                assert process.wait(timeout=30) == 0
            finally:
                if process.poll() is None:
                    process.kill()
        assert_fixed_once(world)


def test_the_daemon_takes_clicks_over_socket_mode_and_still_serves_its_health(
    tmp_path: Path,
) -> None:
    with socket_world(tmp_path) as world:
        daemon = Daemon(world.root, port=0, clock=world.clock, env={})
        stop = threading.Event()
        serving = threading.Thread(target=daemon.serve, args=(stop,), kwargs={"poll_s": 0.05})
        serving.start()
        try:
            link(world).wait(lambda: len(link(world).open_connections()) == 1)
            envelope = link(world).click(approve_fix(world))
            link(world).wait(lambda: link(world).acknowledged(envelope) == 1)
            base = daemon.server.base_url
            with urllib.request.urlopen(base + "/healthz", timeout=10) as health:
                assert json.load(health)["store"] == "ok"
            assert post(base + ACTIONS_PATH, {}, b"payload=%7B%7D") == 404  # not over HTTP
        finally:
            stop.set()  # clicks acknowledged are acted on before it stops
            serving.join(timeout=30)
        assert not serving.is_alive()
        assert_fixed_once(world)


def test_a_daemon_that_cannot_reach_slack_at_start_serves_and_connects_once_it_can(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(service, "SOCKET_RETRY_S", (0.05,))
    with socket_world(tmp_path) as world:
        world.slack.fail_next("service_unavailable", status=503, times=2)
        daemon = Daemon(world.root, port=0, clock=world.clock, env={})
        stop = threading.Event()
        serving = threading.Thread(target=daemon.serve, args=(stop,), kwargs={"poll_s": 0.05})
        serving.start()
        try:
            link(world).wait(lambda: len(link(world).open_connections()) == 1)
            envelope = link(world).click(approve_fix(world))
            link(world).wait(lambda: link(world).acknowledged(envelope) == 1)
        finally:
            stop.set()
            serving.join(timeout=30)
        assert not serving.is_alive()
        assert_fixed_once(world)


def test_the_emulator_opens_connections_for_the_app_token_and_each_ticket_once() -> None:
    from slack_sdk import WebClient
    from slack_sdk.errors import SlackApiError

    slack = SlackEmulator(token="xoxb-test", app_token=APP_TOKEN)
    with LoopbackServer(slack) as server:
        web = WebClient(base_url=server.base_url + "/api/")
        with pytest.raises(SlackApiError, match="service_unavailable"):  # the link not started
            web.apps_connections_open(app_token=APP_TOKEN)
        with slack.socket_mode:
            with pytest.raises(SlackApiError, match="not_allowed_token_type"):
                web.apps_connections_open(app_token="xoxb-test")  # the bot's token
            url = str(web.apps_connections_open(app_token=APP_TOKEN)["url"])
            assert url.startswith("ws://127.0.0.1:") and "/link/?ticket=" in url
            assert [handshake(url) for _ in range(2)] == [
                "HTTP/1.1 101 Switching Protocols",
                "HTTP/1.1 401 Unauthorized",  # a ticket is good once
            ]
            assert slack.socket_mode.state()["refused"] == 1


def handshake(url: str) -> str:
    """The status line the emulator answers a WebSocket upgrade to ``url`` with."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname or "", parts.port or 80), timeout=5) as sock:
        sock.sendall(
            (
                f"GET {parts.path}?{parts.query} HTTP/1.1\r\nHost: {parts.hostname}\r\n"
                "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        with sock.makefile("rb") as answer:
            return answer.readline().decode().strip()


def test_socket_mode_needs_the_app_token_and_no_signing_secret(tmp_path: Path) -> None:
    make_project(
        tmp_path,
        connectors={"warehouse": WAREHOUSE},
        suites={"a": ANY_SUITE},
        settings="""
        slack:
          token: ${SLACK_BOT_TOKEN}
          mode: socket
        """,
    )
    env = {"SLACK_BOT_TOKEN": "xoxb-1"}
    assert issues_of(tmp_path, env=env) == [
        f"{tmp_path}/dq-agent.yml:2:3: slack.app_token: required key is missing "
        "(mode: socket needs it)"
    ]
    settings = tmp_path / "dq-agent.yml"
    settings.write_text(settings.read_text() + "  app_token: ${SLACK_APP_TOKEN}\n")
    assert issues_of(tmp_path, env=env) == [
        f"{tmp_path}/dq-agent.yml:4:14: slack.app_token: environment variable SLACK_APP_TOKEN "
        "is not set"
    ]
    project = load_project(tmp_path, env={**env, "SLACK_APP_TOKEN": "xapp-1"})
    assert project.issues == ()
    slack = project.settings.slack
    assert slack is not None and slack.mode == "socket" and slack.signing_secret is None
    assert slack.connection_token() == "xapp-1"
    assert "xapp-1" not in repr(project.settings)

    settings.write_text(settings.read_text().replace("mode: socket", "mode: websocket"))
    assert issues_of(tmp_path, env={**env, "SLACK_APP_TOKEN": "xapp-1"}) == [
        f"{tmp_path}/dq-agent.yml:3:9: slack.mode: expected 'http' or 'socket', got 'websocket'"
    ]
    # HTTP, the default, needs the signing secret and not the app token.
    settings.write_text(settings.read_text().replace("  mode: websocket\n", ""))
    assert issues_of(tmp_path, env={**env, "SLACK_APP_TOKEN": "xapp-1"}) == [
        f"{tmp_path}/dq-agent.yml:2:3: slack.signing_secret: required key is missing"
    ]


def test_with_a_broker_the_app_token_is_the_agents(tmp_path: Path) -> None:
    make_project(
        tmp_path,
        connectors={"warehouse": WAREHOUSE},
        suites={"a": ANY_SUITE},
        settings="""
        broker: {url: "unix:/run/dq/broker.sock", token: "${DQ_BROKER_TOKEN}"}
        slack:
          token: ${SLACK_BOT_TOKEN}
          mode: socket
          app_token: ${SLACK_APP_TOKEN}
        """,
    )
    agent = load_project(tmp_path, env={"DQ_BROKER_TOKEN": "dqb_x", "SLACK_APP_TOKEN": "xapp-1"})
    assert agent.issues == ()
    assert agent.settings.slack is not None and agent.settings.slack.token is None
    assert agent.settings.slack.connection_token() == "xapp-1"
    broker = load_project(tmp_path, env={"SLACK_BOT_TOKEN": "xoxb-1"}, as_broker=True)
    assert broker.issues == ()
    assert broker.settings.slack is not None and broker.settings.slack.app_token is None
