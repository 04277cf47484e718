"""What every command group shares: the options defined once (``--project``, ``--format``,
``--by``), the consoles, the exit code for "could not run", and opening a project and its state."""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource
from rich.console import Console

from dq_agent.config import Project, load_project
from dq_agent.engine import RunOptions
from dq_agent.errors import DqAgentError
from dq_agent.store import Store

# Every command group imports the agent's parts beyond checking (Slack, corrections, the
# daemon) in the commands that use them: `dq-agent check` starts without loading them.

EXIT_CANNOT_RUN = 3

PROJECT_HELP = "The project folder (dq-agent.yml, connectors/, checks/)."


def _project_dir(ctx: click.Context, _param: click.Parameter, value: Path | None) -> Path:
    """``--project`` after the command, else the one before it (or DQ_AGENT_PROJECT)."""
    if value is not None:
        return value
    given = ctx.find_root().params.get("project_dir")
    return given if isinstance(given, Path) else Path(".")


def project_given(ctx: click.Context) -> bool:
    """Whether a project folder was named (before or after the command, or in the
    environment) rather than left to the current folder."""
    root = ctx.find_root()
    return (
        ctx.get_parameter_source("project_dir") is not ParameterSource.DEFAULT
        or root.get_parameter_source("project_dir") is not ParameterSource.DEFAULT
    )


project_option = click.option(
    "--project",
    "project_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    callback=_project_dir,
    help=f"{PROJECT_HELP} Also accepted before the command; default: DQ_AGENT_PROJECT, "
    "else the current folder.",
)

format_option = click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="text for people, json for scripts (a stable shape).",
)


def by_option(help: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """``--by EMAIL``: who decides; checked against the owners of what is decided on."""
    return click.option("--by", required=True, metavar="EMAIL", help=help)


def err_console() -> Console:
    return Console(stderr=True, highlight=False)


def project_to_run(
    project_dir: Path, console: Console, *, results_shown: bool = False
) -> Project | None:
    """The project, its config issues printed; None when dq-agent.yml itself is broken.

    Broken suites are still returned (they report as ``error``) so the others run. With
    ``results_shown`` (a text report follows), a broken suite's issues are left to its
    result, so that each is printed once; JSON on stdout is no place a person reads them.
    """
    project = load_project(project_dir)
    in_results = {issue for issues in project.broken_suites.values() for issue in issues}
    for issue in project.issues:
        if not (results_shown and issue in in_results):
            click.echo(str(issue), err=True)
    if project.settings_issues:
        console.print("dq-agent.yml is invalid: nothing was run", style="bold red")
        return None
    return project


def not_brokered(project: Project, command: str, why: str) -> None:
    """Raise for a command the agent cannot do with a broker (``broker:`` in dq-agent.yml):
    it holds no source credential; ``why`` says what to do instead, or why not yet."""
    if project.sealed:
        raise DqAgentError(f"{command} does not run with a broker (broker: in dq-agent.yml): {why}")


# Wide enough that no line written to a pipe is wrapped.
PIPED_WIDTH = 10_000


def out_console() -> Console:
    out = Console(highlight=False)
    # Piped output is read by programs (grep, a log): one line per line, never wrapped or cut
    # to rich's 80 columns. Tables still take only the width their contents need.
    return out if out.is_terminal else Console(highlight=False, width=PIPED_WIDTH)


class ledger:
    """``with ledger(project_dir) as (project, store)``: the project and its state store, for
    a command that reads or decides on what is recorded; exit 3 when the store cannot open."""

    def __init__(self, project_dir: Path) -> None:
        self._project = load_project(project_dir)

    def __enter__(self) -> tuple[Project, Store]:
        try:
            self._store = Store.open(self._project.state_url)
        except DqAgentError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(EXIT_CANNOT_RUN)
        return self._project, self._store

    def __exit__(self, *_exc: object) -> None:
        self._store.close()


def with_ui(project: Project, **changes: Any) -> Project:
    """``project`` with its ``ui:`` settings changed (read-only, the demo's users)."""
    ui = project.settings.ui.model_copy(update=changes)
    return replace(project, settings=project.settings.model_copy(update={"ui": ui}))


def serve_dashboard(
    project: Project,
    store: Store,
    clock: Callable[[], datetime],
    host: str,
    port: int,
    announce: Callable[[str], str],
    stop: threading.Event | None = None,
) -> None:
    """Serve the dashboard until SIGINT or SIGTERM (or ``stop``, set by the signal handlers
    installed earlier), after saying where (``announce(url)``)."""
    from dq_agent.agent import connect_slack
    from dq_agent.escalate.server import InteractionsServer
    from dq_agent.ui.app import Dashboard

    stop = stop or stop_on_signals()
    dashboard = Dashboard(
        lambda: project, store, RunOptions(clock=clock), connect_slack(project, store)
    )
    app = dashboard.handle
    with InteractionsServer(None, lambda _: None, host=host, port=port, app=app) as server:
        click.echo(announce(server.base_url), err=True)
        wait_until(stop)


def stop_on_signals() -> threading.Event:
    """An event that Ctrl-C (SIGINT) or SIGTERM sets: what a serving command waits on."""
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    return stop


def wait_until(stop: threading.Event) -> None:
    """Wait for ``stop`` in short steps. A signal the kernel hands to another thread runs its
    Python handler only once the main thread runs again: blocked in a wait without a timeout,
    it never would, and Ctrl-C would leave the command up."""
    while not stop.wait(0.25):
        pass


def parse_listen(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit():
        raise click.BadParameter(f"expected HOST:PORT, got {value!r}", param_hint="--listen")
    return host, int(port)


def listen_option(help: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    return click.option(
        "--listen", default="127.0.0.1:8787", show_default=True, metavar="HOST:PORT", help=help
    )
