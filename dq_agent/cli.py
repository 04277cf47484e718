"""The ``dq-agent`` command line."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path

import click
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from dq_agent import report
from dq_agent.config import Project, load_project
from dq_agent.config.loader import resolve_sqlite_path
from dq_agent.engine import RunOptions, run_checks, select_suites, utc_now
from dq_agent.errors import DqAgentError
from dq_agent.results import SuiteResult, exit_code, worst
from dq_agent.sandbox import build_demo_warehouse
from dq_agent.store import Store

EXIT_CANNOT_RUN = 3

project_option = click.option(
    "--project",
    "project_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("."),
    show_default=True,
    help="The project folder (dq-agent.yml, connectors/, checks/).",
)


def _err() -> Console:
    return Console(stderr=True, highlight=False)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="dq-agent")
def main() -> None:
    """Operational data-quality agent: run YAML check suites against your sources."""


@main.command()
@project_option
def validate(project_dir: Path) -> None:
    """Parse every suite and connector profile and report every error; change nothing."""
    project = load_project(project_dir)
    console = _err()
    for issue in project.issues:
        click.echo(str(issue), err=True)
    if project.issues:
        files = len({issue.file for issue in project.issues})
        console.print(
            f"{len(project.issues)} error{'s' if len(project.issues) != 1 else ''} "
            f"in {files} file{'s' if files != 1 else ''}",
            style="bold red",
        )
        sys.exit(EXIT_CANNOT_RUN)
    click.echo(
        f"OK: {len(project.suites)} suite{'s' if len(project.suites) != 1 else ''}, "
        f"{len(project.connectors)} connector{'s' if len(project.connectors) != 1 else ''}"
    )


def _parse_as_of(
    _ctx: click.Context, _param: click.Parameter, value: str | None
) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(
            f"expected an ISO-8601 timestamp like 2026-11-24T06:00:00Z, got {value!r}"
        ) from None
    # A bare timestamp is read as UTC, the timezone schedules default to.
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@main.command()
@click.argument("suites", nargs=-1)
@project_option
@click.option(
    "--as-of",
    callback=_parse_as_of,
    metavar="TS",
    help="Evaluate as if it were this moment (rows after it are ignored).",
)
@click.option(
    "--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True
)
def check(suites: tuple[str, ...], project_dir: Path, as_of: datetime | None, fmt: str) -> None:
    """Run checks read-only and print results; writes nothing to sources, notifies nobody.

    Exit code: 0 all passed, 1 warnings only, 2 a check failed, 3 could not run.
    """
    sys.exit(_check(project_dir, suites, as_of=as_of, fmt=fmt))


def _check(
    project_dir: Path,
    suites: tuple[str, ...],
    *,
    as_of: datetime | None,
    fmt: str,
) -> int:
    console = _err()
    project = load_project(project_dir)
    for issue in project.issues:
        click.echo(str(issue), err=True)
    if _settings_broken(project):
        console.print("dq-agent.yml is invalid: nothing was run", style="bold red")
        return EXIT_CANNOT_RUN
    try:
        ids = select_suites(project, suites)
        if not ids:
            console.print("no suites to run", style="bold red")
            return EXIT_CANNOT_RUN
        options = RunOptions(as_of=as_of, clock=utc_now)
        with Store.open(project.state_url) as store:
            results = _run_with_progress(project, ids, store, options, console)
    except DqAgentError as exc:
        console.print(f"error: {exc}", style="bold red", markup=False)
        return EXIT_CANNOT_RUN
    if fmt == "json":
        click.echo(report.to_json(results))
    else:
        out = Console(highlight=False)
        if not out.is_terminal:
            out = Console(highlight=False, width=120)  # piped output: wide enough for a table
        report.print_text(out, results)
    return exit_code(worst(r.status for r in results))


def _settings_broken(project: Project) -> bool:
    return any(issue.file.name == "dq-agent.yml" for issue in project.issues)


def _run_with_progress(
    project: Project, ids: list[str], store: Store, options: RunOptions, console: Console
) -> list[SuiteResult]:
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as progress:
        task = progress.add_task("checking", total=len(ids))

        def on_progress(suite_id: str, outcome: SuiteResult | None) -> None:
            if outcome is None:
                progress.update(task, description=f"checking {suite_id}")
            else:
                progress.advance(task)

        return run_checks(project, ids, store=store, options=options, progress=on_progress)


@main.command()
@project_option
@click.option(
    "--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True
)
def demo(project_dir: Path, fmt: str) -> None:
    """The running example: build the embedded warehouse, then check it.

    Pete overwrote the US forecast sheet, so ``us_forecast_dec_v1`` is empty and
    ``forecasts_agg`` is stale. Needs no credentials and no network.
    """
    console = _err()
    project = load_project(project_dir)
    warehouse = project.connectors.get(DEMO_CONNECTOR)
    database = _sqlite_file(warehouse.url if warehouse else "", project_dir)
    if database is None:
        console.print(
            f"the demo needs connectors/{DEMO_CONNECTOR}.yml with a sqlite:/// URL in "
            f"{project_dir} (the repository's own example project has one)",
            style="bold red",
        )
        sys.exit(EXIT_CANNOT_RUN)
    build_demo_warehouse(database, utc_now())
    console.print(f"demo warehouse written to {database}", style="dim")
    code = _check(project_dir, (), as_of=None, fmt=fmt)
    # The scenario is meant to fail checks; only "could not run" is a failed demo.
    sys.exit(EXIT_CANNOT_RUN if code == EXIT_CANNOT_RUN else 0)


DEMO_CONNECTOR = "warehouse"


def _sqlite_file(url: str, project_dir: Path) -> Path | None:
    resolved = resolve_sqlite_path(url, project_dir)
    prefix = "sqlite:///"
    if not resolved.startswith(prefix) or resolved.endswith(":memory:"):
        return None
    return Path(resolved[len(prefix) :])
