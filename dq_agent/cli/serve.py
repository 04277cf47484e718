"""Serving: ``daemon``, ``interactions``, ``ui``, ``serve``, ``mcp`` and ``hash-token``."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from dq_agent.cli.common import (
    EXIT_CANNOT_RUN,
    err_console,
    listen_option,
    not_brokered,
    parse_listen,
    project_option,
    project_to_run,
    serve_dashboard,
    stop_on_signals,
    wait_until,
    with_ui,
)
from dq_agent.engine import (
    RunOptions,
    utc_now,
)
from dq_agent.errors import DqAgentError
from dq_agent.store import Store


@click.command()
@project_option
@listen_option("/healthz, /metrics, the dashboard and Slack interactions (POST /slack/actions).")
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="json: one JSON object per log line, for log collectors.",
)
def daemon(project_dir: Path, listen: str, log_format: str) -> None:
    """Run the agent on its own: every suite on its cron, until SIGTERM or Ctrl-C.

    Replicas may share one PostgreSQL state store: one of them leads and runs the schedule,
    the others stand by and take over if it stops. Suite files are re-read every few
    seconds. On SIGTERM, no new runs start, running ones finish, and it exits 0.
    """
    from dq_agent.daemon.logs import configure_logging
    from dq_agent.daemon.service import Daemon

    host, port = parse_listen(listen)
    configure_logging(log_format)
    stop = stop_on_signals()
    try:
        agent = Daemon(project_dir, host=host, port=port)
    except (DqAgentError, OSError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_CANNOT_RUN)
    try:
        agent.serve(stop)
    except DqAgentError as exc:  # Slack refused the Socket Mode connection
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_CANNOT_RUN)


@click.command()
@project_option
@listen_option("Where Slack sends button clicks (POST /slack/actions; slack.mode: http).")
def interactions(project_dir: Path, listen: str) -> None:
    """Take Slack button clicks on their own, until interrupted.

    Button clicks on the agent's messages (Approve fix, I fixed it, Snooze, This is expected,
    Undo) arrive here, signed by Slack; forged and replayed requests are refused. Point the
    Slack app's Interactivity Request URL at https://<public host>/slack/actions. With
    slack.mode: socket, it connects to Slack instead (Socket Mode, with slack.app_token) and
    needs no public URL: --listen is not used.
    """
    from dq_agent.agent import connect_slack
    from dq_agent.escalate.actions import Actions
    from dq_agent.escalate.endpoint import ACTIONS_PATH, Verifier
    from dq_agent.escalate.server import InteractionsServer
    from dq_agent.escalate.socket_mode import SocketInteractions

    host, port = parse_listen(listen)
    project = project_to_run(project_dir, err_console())
    if project is None:
        sys.exit(EXIT_CANNOT_RUN)
    settings = project.settings.slack
    if settings is None:
        click.echo("error: dq-agent.yml has no slack: section (token, signing_secret)", err=True)
        sys.exit(EXIT_CANNOT_RUN)
    stop = stop_on_signals()
    try:
        with Store.open(project.state_url) as store:
            slack = connect_slack(project, store)
            assert slack is not None  # slack: is configured
            actions = Actions(project, store, slack, RunOptions(clock=utc_now))
            if settings.mode == "socket":
                with SocketInteractions(settings, store, actions.handle):
                    click.echo("connected to Slack (Socket Mode)", err=True)
                    wait_until(stop)
                return
            verifier = Verifier(settings.verifying_secret(), store)
            with InteractionsServer(verifier, actions.handle, host=host, port=port) as server:
                click.echo(f"listening on {server.base_url}{ACTIONS_PATH}", err=True)
                wait_until(stop)
    except (DqAgentError, OSError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_CANNOT_RUN)


@click.command()
@project_option
@listen_option("Where to serve the dashboard.")
@click.option("--read-only", is_flag=True, help="Show everything; change nothing.")
def ui(project_dir: Path, listen: str, read_only: bool) -> None:
    """Serve the web dashboard from the state store alone, until interrupted.

    Suites, incidents, corrections and monitor charts, with buttons for their owners. Sign-in
    uses ui.users in dq-agent.yml (tokens made with dq-agent hash-token) or, behind an
    authenticating proxy, ui.trusted_header. The daemon serves the same dashboard.
    """
    # Ctrl-C while it starts (migrating the state store, say) stops it as cleanly as later.
    stop = stop_on_signals()
    host, port = parse_listen(listen)
    project = project_to_run(project_dir, err_console())
    if project is None:
        sys.exit(EXIT_CANNOT_RUN)
    if read_only:
        project = with_ui(project, read_only=True)
    settings = project.settings.ui
    if not settings.users and settings.trusted_header is None:
        click.echo(
            "warning: no ui.users and no ui.trusted_header in dq-agent.yml: nobody can sign "
            "in. Make a token's hash with dq-agent hash-token and list people under ui.users.",
            err=True,
        )
    try:
        with Store.open(project.state_url) as store:
            serve_dashboard(
                project, store, utc_now, host, port, lambda url: f"dashboard on {url}/", stop
            )
    except (DqAgentError, OSError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_CANNOT_RUN)


@click.command()
@project_option
@listen_option("The dashboard, Slack interactions (POST /slack/actions), /healthz and /metrics.")
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Worker processes, each with its own connections to the state store.",
)
@click.option(
    "--forwarded-allow-ips",
    default="127.0.0.1",
    show_default=True,
    metavar="IPS",
    help="Proxies (comma-separated addresses or networks; * for any) whose X-Forwarded-For "
    "and X-Forwarded-Proto are believed. The client address slows down repeated failed "
    "sign-ins, so name only your own proxies.",
)
def serve(project_dir: Path, listen: str, workers: int, forwarded_allow_ips: str) -> None:
    """Serve the dashboard, Slack interactions, /healthz and /metrics with uvicorn, until
    SIGTERM or Ctrl-C.

    It runs no schedule (dq-agent daemon does): start it next to a daemon, or several behind a
    load balancer, on the same state store. On SIGTERM it stops taking requests, answers the
    ones in flight, acts on the Slack clicks already acknowledged for up to 30 seconds (the
    rest stay in the state store for the next process), and exits 0.
    """
    import uvicorn

    from dq_agent.daemon.logs import configure_logging
    from dq_agent.serving import SERVER_OPTIONS
    from dq_agent.web import PROJECT_VARIABLE

    # Handlers of our own, which uvicorn calls again once it has stopped: a signal then stops
    # a command that has already finished, not the process.
    stop_on_signals()
    host, port = parse_listen(listen)
    if project_to_run(project_dir, err_console()) is None:
        sys.exit(EXIT_CANNOT_RUN)
    configure_logging("text")
    # Each worker builds the application itself, from the environment.
    os.environ[PROJECT_VARIABLE] = str(project_dir.resolve())
    uvicorn.run(
        "dq_agent.web:app",
        host=host,
        port=port,
        workers=workers,
        proxy_headers=True,
        forwarded_allow_ips=forwarded_allow_ips,
        **SERVER_OPTIONS,
    )


@click.command("hash-token")
def hash_token() -> None:
    """Read a dashboard sign-in token (prompted, not echoed) and print its hash for
    ui.users.<email>.token_hash in dq-agent.yml."""
    from dq_agent.ui.auth import hash_token as scrypt_hash

    token = click.prompt("token", hide_input=True, confirmation_prompt=not _piped())
    if len(token) < 12:
        raise click.BadParameter("use a token of at least 12 characters", param_hint="token")
    click.echo(scrypt_hash(token))


def _piped() -> bool:
    return not sys.stdin.isatty()


@click.command()
@project_option
def mcp(project_dir: Path) -> None:
    """Serve the agent's investigation tools to an MCP client over stdio (the same tools and
    policy the optional LLM uses).

    Run it from the MCP client's configuration, e.g. command: dq-agent, args: [mcp,
    --project, /path/to/project]. Stdout carries only the MCP protocol; errors go to stderr.
    """
    from dq_agent.triage.mcp_server import serve as serve_mcp

    project = project_to_run(project_dir, err_console())
    if project is None:
        sys.exit(EXIT_CANNOT_RUN)
    try:
        not_brokered(
            project,
            "dq-agent mcp",
            "the broker serves these tools over HTTP instead (dq-agent broker --mcp-listen URL, "
            "to tokens with the investigate action)",
        )
        with Store.open(project.state_url) as store:
            serve_mcp(project, store, clock=utc_now)
    except DqAgentError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_CANNOT_RUN)
