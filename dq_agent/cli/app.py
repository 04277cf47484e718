"""The ``dq-agent`` group: every command group of the package, and the commands other packages
plug in through ``dq_agent.commands`` entry points (the emulators' ``demo`` and ``sandbox``)."""

from __future__ import annotations

import os
import sys
from functools import cache
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path

import click

from dq_agent.cli import broker, checking, corrections, incidents, serve, setup, state
from dq_agent.cli.common import EXIT_CANNOT_RUN, PROJECT_HELP
from dq_agent.errors import DqAgentError

PLUGINS = "dq_agent.commands"
# Commands of a package that may not be installed, and the extra that installs it.
OPTIONAL = {"demo": "dq-agent[demo]", "sandbox": "dq-agent[demo]"}


@cache
def _plugins() -> dict[str, EntryPoint]:
    return {point.name: point for point in entry_points(group=PLUGINS)}


def _unavailable(name: str, why: str, summary: str) -> click.Command:
    """A stand-in for a command that cannot run here: it says ``why`` and exits 3, whatever
    it is given. ``summary`` is its line in ``--help``."""

    def refuse() -> None:
        click.echo(f"error: dq-agent {name} {why}", err=True)
        sys.exit(EXIT_CANNOT_RUN)

    return click.Command(
        name,
        callback=refuse,
        help=summary,
        context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
    )


class Commands(click.Group):
    """The package's commands, then those plugged in (loaded only when named or listed)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *_plugins(), *OPTIONAL})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        found = super().get_command(ctx, cmd_name)
        if found is not None:
            return found
        point = _plugins().get(cmd_name)
        if point is not None:
            # A broken plug-in says so when it is asked for, and takes no other command down
            # (`--help` loads every one to list it).
            try:
                command = point.load()
            except Exception as exc:
                why = f"could not be loaded from {point.value}: {exc}"
                return _unavailable(cmd_name, why, f"Broken: {why}.")
            if not isinstance(command, click.Command):
                why = f"could not be loaded from {point.value}: it is no click command"
                return _unavailable(cmd_name, why, f"Broken: {why}.")
            return command
        extra = OPTIONAL.get(cmd_name)
        if extra is None:
            return None
        install = f"pip install '{extra}'"
        why = f"needs the emulators, which are not installed: {install}"
        return _unavailable(cmd_name, why, f"Not installed: {install}.")


@click.group(cls=Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--project",
    "project_dir",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="DQ_AGENT_PROJECT",
    default=Path("."),
    show_default=True,
    help=f"{PROJECT_HELP} Also accepted after the command. [env: DQ_AGENT_PROJECT]",
)
@click.option(
    "--now",
    metavar="TIME",
    help="Run as if it were TIME (ISO 8601 with its zone, e.g. 2026-03-01T09:00:00Z); the "
    "clock moves on from there. For rehearsals and tests. [env: DQ_AGENT_NOW]",
)
@click.version_option(package_name="dq-agent")
def main(project_dir: Path, now: str | None) -> None:
    """Operational data-quality agent: run YAML check suites against your sources."""
    from dq_agent.engine import NOW_VARIABLE, parse_now

    if now is not None:
        os.environ[NOW_VARIABLE] = now
    if os.environ.get(NOW_VARIABLE):
        try:
            parse_now(os.environ[NOW_VARIABLE])
        except DqAgentError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(EXIT_CANNOT_RUN)


for _command in (
    checking.validate,
    checking.sources,
    checking.check,
    checking.run,
    checking.plan,
    checking.backtest,
    checking.feedback,
    corrections.corrections,
    incidents.incidents,
    state.store_group,
    serve.daemon,
    serve.interactions,
    serve.ui,
    serve.serve,
    serve.mcp,
    serve.hash_token,
    broker.broker,
    setup.schema,
    setup.init,
    setup.import_,
):
    main.add_command(_command)
