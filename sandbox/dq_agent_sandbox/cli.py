"""``dq-agent demo`` and ``dq-agent sandbox``: the running example and the emulators it plays on."""

from __future__ import annotations

import json
import shlex
import sys
import tempfile
from collections.abc import Callable
from datetime import datetime
from importlib import resources
from importlib.abc import Traversable
from pathlib import Path

import click
from rich.console import Console

from dq_agent.cli.checking import run_and_report
from dq_agent.cli.common import (
    EXIT_CANNOT_RUN,
    err_console,
    format_option,
    out_console,
    parse_listen,
    project_given,
    project_option,
    serve_dashboard,
    stop_on_signals,
    wait_until,
    with_ui,
)
from dq_agent.config import Project, load_project
from dq_agent.config.loader import resolve_sqlite_path
from dq_agent.config.models import SqlConnector
from dq_agent.engine import utc_now
from dq_agent.errors import DqAgentError
from dq_agent.store import Store
from dq_agent_sandbox import DEFAULT_PORT_BASE


@click.command()
@project_option
@format_option
@click.option("--ui", is_flag=True, help="Leave the dashboard up at the end, until Ctrl-C.")
@click.option(
    "--ui-listen",
    default="127.0.0.1:8790",
    show_default=True,
    metavar="HOST:PORT",
    help="Where --ui serves the dashboard.",
)
@click.option(
    "--dir",
    "keep_in",
    type=click.Path(file_okay=False, path_type=Path),
    help="Write the example project to this folder (new or empty) and play it there, to "
    "explore or start from afterwards. Without it, and without --project, the example is "
    "played in a temporary folder that is removed at the end.",
)
@click.pass_context
def demo(
    ctx: click.Context, project_dir: Path, fmt: str, ui: bool, ui_listen: str, keep_in: Path | None
) -> None:
    """The running example end to end, on the embedded warehouse and loopback emulators.

    Pete overwrote the US forecast sheet, so us_forecast_dec_v1 is empty and
    forecasts_agg is stale; a CRM deal was typed as $10m instead of $1m. One agent cycle
    runs: the slip is corrected in the Salesforce emulator and its owner told on Slack; Pete
    is messaged. Then, on a simulated clock: a reminder, Pete's fix and "I fixed it", and the
    undo of the correction. Needs no credentials and no network. With --ui, the dashboard
    stays up afterwards (emulators included) to click through what happened. It plays the
    example project shipped with dq-agent, or the project --project names.
    """
    console = err_console()
    if keep_in is not None:
        code = _play_demo(_write_example(keep_in, console), fmt, ui, ui_listen, kept=True)
    elif project_given(ctx):
        code = _play_demo(project_dir, fmt, ui, ui_listen, kept=True)
    else:
        with tempfile.TemporaryDirectory(prefix="dq-agent-demo-") as folder:
            console.print(
                f"the example project is played in {folder} and removed at the end "
                "(--dir DIR keeps it)",
                style="dim",
            )
            code = _play_demo(_write_example(Path(folder), console), fmt, ui, ui_listen, kept=False)
    # The scenario is meant to fail checks; only "could not run" is a failed demo.
    sys.exit(EXIT_CANNOT_RUN if code == EXIT_CANNOT_RUN else 0)


def _write_example(folder: Path, console: Console) -> Path:
    """The example project shipped in the package, written to ``folder`` (new or empty)."""
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        console.print(
            f"{folder} is not an empty folder: --dir needs a new or empty one", style="bold red"
        )
        sys.exit(EXIT_CANNOT_RUN)

    def copy(source: Traversable, target: Path) -> None:
        target.mkdir(parents=True, exist_ok=True)
        for item in source.iterdir():
            if item.is_dir():
                copy(item, target / item.name)
            elif item.name.endswith(".yml"):
                (target / item.name).write_bytes(item.read_bytes())

    copy(resources.files("dq_agent") / "example", folder)
    return folder


def _play_demo(project_dir: Path, fmt: str, ui: bool, ui_listen: str, *, kept: bool) -> int:
    """Play the story on the project in ``project_dir`` (``kept`` afterwards, or removed);
    the exit code of its first cycle."""
    # Imported here: the emulators are of no use to the other commands, which start faster.
    from dq_agent_sandbox.demo import Clock, Demo, fresh_state, start_time
    from dq_agent_sandbox.runner import demo_seed, start_sandbox
    from dq_agent_sandbox.warehouse import build_demo_warehouse

    console = err_console()
    project = load_project(project_dir)
    warehouse = project.connectors.get(DEMO_CONNECTOR)
    url = warehouse.url if isinstance(warehouse, SqlConnector) else ""
    database = _sqlite_file(url, project_dir)
    if database is None:
        console.print(
            f"the demo needs connectors/{DEMO_CONNECTOR}.yml with a sqlite:/// URL in "
            f"{project_dir}: run it without --project to play the example shipped with "
            "dq-agent",
            style="bold red",
        )
        return EXIT_CANNOT_RUN
    clock = Clock(start_time(utc_now()))
    try:
        fresh_state(project)
        build_demo_warehouse(database, clock.at)
        console.print(f"demo warehouse written to {database}", style="dim")
        with start_sandbox(
            demo_seed(clock.at),
            port_base=DEFAULT_PORT_BASE,
            clock=lambda: clock.at.timestamp(),
        ) as emulators:
            endpoints = ", ".join(f"{n} {srv.base_url}" for n, srv in emulators.servers.items())
            console.print(f"emulators: {endpoints}", style="dim")
            console.print(f"the story starts {clock.at:%a %Y-%m-%d %H:%M} UTC", style="dim")
            first = True

            def run_once(at: Callable[[], datetime]) -> int:
                # The first cycle prints its results (as JSON with --format json); later ones
                # are told through the Slack conversation.
                nonlocal first
                shown, first = (fmt if first else "quiet"), False
                return run_and_report(project_dir, (), dry_run=False, fmt=shown, clock=at)

            out = console if fmt == "json" else out_console()
            command = f"dq-agent --project {shlex.quote(str(project_dir))}" if kept else None
            story = Demo(project, emulators, clock, out, run_once, database, command)
            code = story.play()
            if ui:
                _demo_dashboard(project, ui_listen, lambda: clock.at)
    except DqAgentError as exc:
        click.echo(f"error: {exc}", err=True)
        return EXIT_CANNOT_RUN
    return code


DEMO_CONNECTOR = "warehouse"


def _demo_dashboard(project: Project, listen: str, clock: Callable[[], datetime]) -> None:
    """Serve the dashboard on the demo's state until Ctrl-C; every person in the example may
    sign in with one token made up for this run."""
    import secrets

    from dq_agent.config.models import UiUser
    from dq_agent.ui.auth import hash_token

    host, port = parse_listen(listen)
    token = secrets.token_urlsafe(12)
    user = UiUser(token_hash=hash_token(token))
    with Store.open(project.state_url) as store:
        # Everyone in the story: the suites' people and whoever was told on Slack.
        everyone = [p for s in project.suites.values() for p in (*s.owner, *s.escalation)]
        everyone += [m.recipient for m in store.outbox()]
        # An update of a sent message has no recipient of its own; a channel cannot sign in.
        people = sorted({p.lower() for p in everyone if p and not p.startswith("#")})
        shown = with_ui(project, users=dict.fromkeys(people, user))
        serve_dashboard(
            shown,
            store,
            clock,
            host,
            port,
            # Not through rich: it would wrap the token across lines.
            lambda url: (
                f"dashboard on {url}/ — sign in as any of {', '.join(people)} "
                f"with the token {token} (Ctrl-C to stop)"
            ),
        )


def _sqlite_file(url: str, project_dir: Path) -> Path | None:
    resolved = resolve_sqlite_path(url, project_dir)
    prefix = "sqlite:///"
    if not resolved.startswith(prefix) or resolved.endswith(":memory:"):
        return None
    return Path(resolved[len(prefix) :])


@click.command()
@click.option(
    "--seed",
    "seed_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Records and sheets to start with (YAML/JSON); default: the running example.",
)
@click.option(
    "--port-base",
    type=click.IntRange(1, 65534),
    default=DEFAULT_PORT_BASE,
    show_default=True,
    help=(
        "Salesforce listens on N, Google Sheets on N+1, Slack on N+2, Airflow on N+3, "
        "Anthropic on N+4."
    ),
)
@click.option(
    "--faults",
    "faults_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Errors chosen requests meet, and people's edits made just before the agent's "
    "writes (YAML; see the commands reference).",
)
def sandbox(seed_file: Path | None, port_base: int, faults_file: Path | None) -> None:
    """Serve loopback emulators of Salesforce, Google Sheets, Slack, Airflow and Anthropic until
    interrupted.

    Prints one JSON line with each service's URL and credentials. Point connectors at them:
    type: salesforce, instance_url: http://127.0.0.1:N, session_id: sandbox; type: gsheets,
    base_url: http://127.0.0.1:N+1; dq-agent.yml's slack: at base_url:
    http://127.0.0.1:N+2/api/ with the printed token and signing_secret; type: airflow,
    base_url: http://127.0.0.1:N+3 with the printed username and password; the Anthropic
    client at base_url: http://127.0.0.1:N+4 with the printed api_key.
    """
    from dq_agent_sandbox.faults import load_faults
    from dq_agent_sandbox.runner import demo_seed, load_seed, start_sandbox

    try:
        seed = load_seed(seed_file) if seed_file else demo_seed(utc_now())
        faults = load_faults(faults_file) if faults_file else {}
        running = start_sandbox(seed, port_base=port_base, faults=faults)
    except DqAgentError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_CANNOT_RUN)
    stop = stop_on_signals()
    with running:
        click.echo(json.dumps(running.info))
        wait_until(stop)
