"""``dq-agent broker``: the credential broker, its tokens and its audit log."""

from __future__ import annotations

import json
import ssl
import sys
from collections.abc import Callable
from contextlib import ExitStack
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import click
from click.core import ParameterSource

from dq_agent.checks.base import plural
from dq_agent.cli.common import (
    EXIT_CANNOT_RUN,
    format_option,
    project_option,
    stop_on_signals,
    wait_until,
)
from dq_agent.config import parse_duration
from dq_agent.config.loader import load_file
from dq_agent.config.models import BrokerConfig
from dq_agent.engine import utc_now
from dq_agent.errors import DqAgentError

if TYPE_CHECKING:
    from dq_agent.broker.mcp_http import McpServer
    from dq_agent.broker.server import Broker
    from dq_agent.broker.tokens import Token


def home_option(function: Callable[..., None]) -> Callable[..., None]:
    return click.option(
        "--home",
        type=click.Path(file_okay=False, path_type=Path),
        envvar="DQ_BROKER_HOME",
        default=Path("~/.dq-agent-broker").expanduser(),
        show_default="~/.dq-agent-broker, or DQ_BROKER_HOME",
        help="The broker's own folder: its tokens (hashes only) and its audit log.",
    )(function)


@click.group(invoke_without_command=True)
@project_option
@home_option
@click.option(
    "--config",
    "config_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A YAML file with project, home, listen, mcp_listen, cert and key (paths relative "
    "to it); the options given here win over it.",
)
@click.option(
    "--listen",
    default=None,
    metavar="URL",
    help="unix:/path/broker.sock, https://HOST:PORT (with --cert and --key), or "
    "http://127.0.0.1:PORT (the loopback only).",
)
@click.option(
    "--mcp-listen",
    default=None,
    metavar="URL",
    help="Also serve the investigation tools over MCP (streamable HTTP, at /mcp) to tokens "
    "with the investigate action: https://HOST:PORT (with --cert and --key), or "
    "http://127.0.0.1:PORT (the loopback only).",
)
@click.option(
    "--cert",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The broker's TLS certificate chain (PEM), for https:// (both listeners).",
)
@click.option(
    "--key",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The private key of --cert (PEM).",
)
@click.pass_context
def broker(
    ctx: click.Context,
    project_dir: Path,
    home: Path,
    config_file: Path | None,
    listen: str | None,
    mcp_listen: str | None,
    cert: Path | None,
    key: Path | None,
) -> None:
    """Hold the sources' credentials and do only what a scoped token allows, until SIGTERM.

    Run it as its own process, with its own environment (the secrets its connector profiles
    name) and the project's files; the agent then names it (broker: {url, token} in
    dq-agent.yml) and holds no source secret. Every call is written to a hash-chained audit
    log. With --mcp-listen it also serves the investigation tools to MCP clients, each
    token seeing its own tools and suites. Without a subcommand it serves; see also `broker
    token` and `broker audit`.
    """
    if ctx.invoked_subcommand is not None:
        return
    if config_file is not None:
        config, issues = load_file(config_file, BrokerConfig)
        for issue in issues:
            click.echo(str(issue), err=True)
        if config is None:
            sys.exit(EXIT_CANNOT_RUN)
        given = ctx.get_parameter_source

        def beside(value: str | None) -> Path | None:
            return None if value is None else config_file.parent / Path(value).expanduser()

        if given("project_dir") in (ParameterSource.DEFAULT, None):
            project_dir = beside(config.project) or project_dir
        if given("home") in (ParameterSource.DEFAULT, None) and config.home is not None:
            home = beside(config.home) or home
        listen = listen or config.listen
        mcp_listen = mcp_listen or config.mcp_listen
        cert, key = cert or beside(config.cert), key or beside(config.key)
    if listen is None:
        raise click.UsageError(
            "give --listen unix:/path or https://HOST:PORT (or listen: in --config)"
        )
    from dq_agent.broker.server import Broker, BrokerServer

    stop = stop_on_signals()
    try:
        served = Broker(project_dir, home)
    except (DqAgentError, OSError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_CANNOT_RUN)
    try:
        with ExitStack() as serving:
            server = serving.enter_context(BrokerServer(served, listen, cert=cert, key=key))
            click.echo(f"broker listening on {server.url}", err=True)
            if mcp_listen is not None:
                mcp_server = serving.enter_context(_mcp_server(served, mcp_listen, cert, key))
                click.echo(f"broker serving MCP on {mcp_server.url}", err=True)
            wait_until(stop)
    except (DqAgentError, OSError, ssl.SSLError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_CANNOT_RUN)
    finally:
        served.close()


def _mcp_server(served: Broker, listen: str, cert: Path | None, key: Path | None) -> McpServer:
    try:
        from dq_agent.broker.mcp_http import McpServer
    except ImportError as exc:  # pragma: no cover - depends on the installed extras
        raise DqAgentError(
            "--mcp-listen needs the MCP SDK, which is not installed: pip install 'dq-agent[mcp]'"
        ) from exc
    return McpServer(served, listen, cert=cert, key=key)


@broker.group("token")
def broker_token() -> None:
    """Create, list and revoke the tokens the broker honours."""


@broker_token.command("create")
@home_option
@click.option(
    "--suites",
    required=True,
    metavar="PATTERNS",
    help="Comma-separated suite ids or patterns (crm_*).",
)
@click.option(
    "--actions",
    required=True,
    metavar="ACTIONS",
    help="Comma-separated: check, read (check --findings-out), correct (runs, approvals, "
    "undo), notify (Slack, to the suites' people), restart, investigate (the MCP tools of "
    "--tools).",
)
@click.option(
    "--tools",
    default=None,
    metavar="TOOLS",
    help="With investigate: the MCP tools the token may use, comma-separated (default: the "
    "read-only list_incidents, read_evidence, read_runbook, read_past_incidents; "
    "propose_correction, classify and draft_message only when named).",
)
@click.option("--ttl", default="30d", show_default=True, help="How long it is valid: 12h, 30d.")
@click.option("--note", default="", help="Who or what holds it.")
def broker_token_create(
    home: Path, suites: str, actions: str, tools: str | None, ttl: str, note: str
) -> None:
    """Make a token and print it, once: the broker keeps only its hash."""
    from dq_agent.broker.tokens import TOKENS_FILE, TokenBook

    book = TokenBook(home / TOKENS_FILE)
    try:
        token, secret = book.create(
            suites=_items(suites),
            actions=_items(actions),
            tools=None if tools is None else _items(tools),
            ttl=parse_duration(ttl),
            now=utc_now(),
            note=note,
        )
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    finally:
        book.dispose()
    click.echo(f"token {token.id}, valid until {token.expires_at:%Y-%m-%d %H:%M} UTC:", err=True)
    click.echo(secret)


def _items(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


@broker_token.command("list")
@home_option
@format_option
def broker_token_list(home: Path, fmt: str) -> None:
    """The tokens, newest first (never their secrets)."""
    from dq_agent.broker.tokens import TOKENS_FILE, TokenBook

    book = TokenBook(home / TOKENS_FILE)
    try:
        tokens = book.list()
    finally:
        book.dispose()
    now = utc_now()
    if fmt == "json":
        rows = [
            {
                "id": t.id,
                "suites": list(t.suites),
                "actions": list(t.actions),
                "tools": list(t.tools),
                "note": t.note,
                "created_at": t.created_at.isoformat(),
                "expires_at": t.expires_at.isoformat(),
                "revoked_at": t.revoked_at.isoformat() if t.revoked_at else None,
                "state": _token_state(t, now),
            }
            for t in tokens
        ]
        click.echo(json.dumps(rows, indent=2))
        return
    for t in tokens:
        click.echo(
            f"{t.id}  {_token_state(t, now):<7}  suites {','.join(t.suites)}  actions "
            f"{','.join(t.actions)}  tools {','.join(t.tools) or '-'}  "
            f"until {t.expires_at:%Y-%m-%d %H:%M}  {t.note}"
        )


def _token_state(token: Token, now: datetime) -> str:
    return "revoked" if token.revoked_at else "expired" if token.expired(now) else "valid"


@broker_token.command("revoke")
@click.argument("token_id")
@home_option
def broker_token_revoke(token_id: str, home: Path) -> None:
    """Revoke a token: the broker refuses it from its next call on."""
    from dq_agent.broker.tokens import TOKENS_FILE, TokenBook

    book = TokenBook(home / TOKENS_FILE)
    try:
        token = book.revoke(token_id, utc_now())
    except LookupError as exc:
        click.echo(f"error: {exc.args[0] if exc.args else exc}", err=True)
        sys.exit(EXIT_CANNOT_RUN)
    finally:
        book.dispose()
    assert token.revoked_at is not None
    click.echo(f"token {token.id} revoked at {token.revoked_at:%Y-%m-%d %H:%M:%S} UTC")


@broker.command("audit")
@home_option
@click.option("--verify", is_flag=True, help="Check the hash chain; exit 2 when it is broken.")
@click.option("--last", type=click.IntRange(min=1), default=None, help="Only the last N calls.")
@format_option
def broker_audit(home: Path, verify: bool, last: int | None, fmt: str) -> None:
    """Show the broker's audit log, or check that no line was edited, removed or reordered."""
    from dq_agent.broker.audit import AUDIT_FILE, AuditLog

    log = AuditLog(home / AUDIT_FILE)
    if verify:
        checked = log.verify()
        if fmt == "json":
            click.echo(json.dumps(vars(checked)))
        elif checked.ok:
            click.echo(f"audit log intact: {plural(checked.lines, 'line')}")
        else:
            click.echo(f"audit log broken: {checked.problem}", err=True)
        sys.exit(0 if checked.ok else 2)
    entries = log.entries(limit=last)
    if fmt == "json":
        click.echo(json.dumps(entries, indent=2))
        return
    for e in entries:
        click.echo(
            f"{e['seq']:>6}  {e['at']}  {e['token'] or '-':<12}  {e['operation']:<8}  "
            f"{e['suite'] or '-'}  {e['outcome']}  {e['detail']}"
        )
