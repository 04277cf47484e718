"""Checking: ``validate``, ``sources``, ``check``, ``run``, ``plan``, ``backtest``, ``feedback``."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import click
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.text import Text

from dq_agent import report
from dq_agent.checks.windows import bucket_floor, to_local, to_utc
from dq_agent.cli.common import (
    EXIT_CANNOT_RUN,
    err_console,
    format_option,
    not_brokered,
    out_console,
    project_option,
    project_to_run,
)
from dq_agent.config import Project, load_project
from dq_agent.config.models import CheckSpec, VolumeAnomalyArgs
from dq_agent.engine import (
    RunOptions,
    SuiteHook,
    backtest_suite,
    run_checks,
    select_suites,
    utc_now,
)
from dq_agent.errors import DqAgentError
from dq_agent.findings_out import FORMATS, FindingsExport
from dq_agent.results import SuiteResult, exit_code, worst
from dq_agent.store import Store


@click.command()
@project_option
@click.option(
    "--connect",
    is_flag=True,
    help="Also connect to each suite's source: is its table there, does it have the columns "
    "the suite names, do its checks run on that database.",
)
def validate(project_dir: Path, connect: bool) -> None:
    """Parse every suite and connector profile and report every error; change nothing."""
    project = load_project(project_dir)
    issues = list(project.issues)
    if connect:
        from dq_agent.preflight import connect_issues

        issues += connect_issues(project)
    console = err_console()
    for issue in issues:
        click.echo(str(issue), err=True)
    if issues:
        files = len({issue.file for issue in issues})
        console.print(
            f"{len(issues)} error{'s' if len(issues) != 1 else ''} "
            f"in {files} file{'s' if files != 1 else ''}",
            style="bold red",
        )
        sys.exit(EXIT_CANNOT_RUN)
    click.echo(
        f"OK: {len(project.suites)} suite{'s' if len(project.suites) != 1 else ''}, "
        f"{len(project.connectors)} connector{'s' if len(project.connectors) != 1 else ''}"
    )


@click.command()
@project_option
@format_option
def sources(project_dir: Path, fmt: str) -> None:
    """List the connectors: whether each answers now, the suites that read it, and what is
    left of the quotas its service reports (a Salesforce org's daily API requests)."""
    from dq_agent.sources.probe import probe_all

    project = load_project(project_dir)
    try:
        not_brokered(
            project,
            "dq-agent sources",
            "it probes each source, which only the broker can reach; the broker does not "
            "probe sources yet",
        )
    except DqAgentError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_CANNOT_RUN)
    statuses = probe_all(project.root, project.connectors, project.suites.values())
    if fmt == "json":
        click.echo(json.dumps({"sources": [s.to_json() for s in statuses]}, indent=2))
    else:
        for status in statuses:
            suites = ", ".join(status.suites) or "no suite"
            click.echo(f"{status.name} ({status.type}): {status.state}: {status.detail}")
            click.echo(f"  read by: {suites}")
            for quota in status.quotas:
                click.echo(
                    f"  {quota.name}: {quota.used:,} of {quota.limit:,} used ({quota.share:.0%})"
                )
    if any(s.state == "unreachable" for s in statuses):
        sys.exit(EXIT_CANNOT_RUN)


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


@click.command()
@click.argument("suites", nargs=-1)
@project_option
@click.option(
    "--as-of",
    callback=_parse_as_of,
    metavar="TS",
    help="Evaluate as if it were this moment (rows after it are ignored).",
)
@format_option
@click.option(
    "--findings-out",
    type=click.Path(file_okay=False, path_type=Path),
    metavar="DIR",
    help="Also write every failing record of each failed check (not only the first "
    "max_findings) to DIR/<suite>/<check>.jsonl.",
)
@click.option(
    "--findings-format",
    type=click.Choice(FORMATS),
    help="The files --findings-out writes: jsonl (default), or parquet (needs pyarrow).",
)
def check(
    suites: tuple[str, ...],
    project_dir: Path,
    as_of: datetime | None,
    fmt: str,
    findings_out: Path | None,
    findings_format: str | None,
) -> None:
    """Run checks read-only and print results; writes nothing to sources, notifies nobody.

    Exit code: 0 all passed, 1 warnings only, 2 a check failed, 3 could not run.
    """
    if findings_format is not None and findings_out is None:
        raise click.UsageError("--findings-format needs --findings-out DIR")
    sys.exit(
        check_and_report(
            project_dir,
            suites,
            as_of=as_of,
            fmt=fmt,
            findings_out=findings_out,
            findings_format=findings_format or FORMATS[0],
        )
    )


def check_and_report(
    project_dir: Path,
    suites: tuple[str, ...],
    *,
    as_of: datetime | None,
    fmt: str,
    findings_out: Path | None = None,
    findings_format: str = FORMATS[0],
) -> int:
    console = err_console()
    project = project_to_run(project_dir, console, results_shown=fmt == "text")
    if project is None:
        return EXIT_CANNOT_RUN
    export = None
    try:
        if findings_out is not None:
            # Progress lines print above the live spinner; stdout keeps the report alone.
            export = FindingsExport(
                findings_out,
                findings_format,
                say=lambda line: console.print(line, markup=False, soft_wrap=True),
            )
        ids = select_suites(project, suites)
        if not ids:
            console.print("no suites to run", style="bold red")
            return EXIT_CANNOT_RUN
        options = RunOptions(as_of=as_of, clock=utc_now)
        with Store.open(project.state_url) as store:
            results = _run_with_progress(project, ids, store, options, console, export)
    except DqAgentError as exc:
        click.echo(f"error: {exc}", err=True)  # unwrapped: users grep and copy it
        return EXIT_CANNOT_RUN
    if fmt == "json":
        click.echo(report.to_json(results))
    else:
        report.print_text(out_console(), results)
    for written in export.written if export is not None else []:
        click.echo(str(written), err=True)
    return exit_code(worst(r.status for r in results))


def _run_with_progress(
    project: Project,
    ids: list[str],
    store: Store,
    options: RunOptions,
    console: Console,
    hook: SuiteHook | None = None,
) -> list[SuiteResult]:
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as progress:
        task = progress.add_task("checking", total=len(ids))
        current = ""

        def on_progress(suite_id: str, outcome: SuiteResult | None) -> None:
            nonlocal current
            if outcome is None:
                current = suite_id
                progress.update(task, description=f"checking {suite_id}")
            else:
                progress.advance(task)

        def on_step(what: str) -> None:
            progress.update(task, description=f"checking {current}: {what}")

        stepped = replace(options, step=on_step)
        return run_checks(
            project, ids, store=store, options=stepped, progress=on_progress, hook=hook
        )


@click.command()
@click.argument("suites", nargs=-1)
@project_option
@click.option("--dry-run", is_flag=True, help="Print the changeset; write nothing, record nothing.")
@format_option
def run(suites: tuple[str, ...], project_dir: Path, dry_run: bool, fmt: str) -> None:
    """One agent cycle now: check, then correct what is clearly a slip (see corrections:).

    Settles corrections a crash interrupted, runs the suites, proposes what it may not write,
    and writes allowed auto-corrections after verifying them on a copy. Exit code as check.
    """
    sys.exit(run_and_report(project_dir, suites, dry_run=dry_run, fmt=fmt))


@click.command()
@click.argument("suites", nargs=-1)
@project_option
@format_option
def plan(suites: tuple[str, ...], project_dir: Path, fmt: str) -> None:
    """Print the corrections a run would make, and what it would refuse, and the pipelines
    each suite restarts once it passes again (with the lineage that found them); change
    nothing.

    Only the changeset: "run --dry-run" also prints the checks it comes from.
    """
    sys.exit(run_and_report(project_dir, suites, dry_run=True, fmt=fmt, changeset_only=True))


def run_and_report(
    project_dir: Path,
    suites: tuple[str, ...],
    *,
    dry_run: bool,
    fmt: str,
    clock: Callable[[], datetime] = utc_now,
    changeset_only: bool = False,
) -> int:
    """One cycle, printed as ``fmt`` (``quiet``: nothing; with ``changeset_only``, the
    corrections alone); returns the exit code."""
    shown = fmt == "text" and not changeset_only
    project = project_to_run(project_dir, err_console(), results_shown=shown)
    if project is None:
        return EXIT_CANNOT_RUN
    from dq_agent.agent import connect_slack, run_cycle

    try:
        ids = select_suites(project, suites)
        options = RunOptions(clock=clock)
        with Store.open(project.state_url) as store:
            cycle = run_cycle(
                project, ids, store, options, dry_run=dry_run, slack=connect_slack(project, store)
            )
    except DqAgentError as exc:
        click.echo(f"error: {exc}", err=True)
        return EXIT_CANNOT_RUN
    planned = [project.suites[i] for i in ids if i in project.suites]  # broken ones restart none
    if fmt == "quiet":
        pass
    elif changeset_only and fmt == "json":
        changeset = {
            "corrections": [report.outcome_json(o) for o in cycle.outcomes],
            "restarts": report.restarts_json(planned),
        }
        click.echo(json.dumps(changeset))
    elif changeset_only:
        report.print_outcomes(out_console(), cycle.outcomes, cycle.settled, dry_run=dry_run)
        report.print_restarts(out_console(), planned)
    elif fmt == "json":
        doc = json.loads(report.to_json(cycle.results))
        doc["corrections"] = [report.outcome_json(o) for o in cycle.outcomes]
        doc["settled"] = cycle.settled
        doc["incidents"] = [vars(n) | {"owners": list(n.owners)} for n in cycle.notices]
        doc["messages"] = vars(cycle.delivery)
        click.echo(json.dumps(doc, indent=2))
    else:
        out = out_console()
        report.print_text(out, cycle.results)
        report.print_outcomes(out, cycle.outcomes, cycle.settled, dry_run=dry_run)
        for notice in cycle.notices:
            out.print(Text(str(notice), style="yellow" if notice.event != "resolved" else "green"))
        report.print_delivery(out, cycle.delivery)
    return exit_code(worst(r.status for r in cycle.results))


@click.command()
@click.argument("suite")
@project_option
@click.option(
    "--check",
    "checks",
    multiple=True,
    metavar="NAME",
    help="Only this check (repeatable); default: every time-bucketed check.",
)
@click.option(
    "--from",
    "start",
    required=True,
    callback=_parse_as_of,
    metavar="TS",
    help="First bucket to evaluate (ISO date or timestamp; UTC if no zone).",
)
@click.option(
    "--to",
    "end",
    required=True,
    callback=_parse_as_of,
    metavar="TS",
    help="End of the range, exclusive.",
)
@format_option
def backtest(
    suite: str,
    project_dir: Path,
    checks: tuple[str, ...],
    start: datetime,
    end: datetime,
    fmt: str,
) -> None:
    """Replay a monitor over past buckets: which ones would have alerted.

    Each bucket is judged only on what came before it, as the live check would have been,
    so sensitivity can be tuned before the monitor is turned on. Writes nothing.
    """
    project = load_project(project_dir)
    try:
        with Store.open(project.state_url) as store:
            replays = backtest_suite(
                project, suite, checks=checks, start=start, end=end, store=store
            )
    except DqAgentError as exc:
        click.echo(f"error: {exc}", err=True)  # unwrapped: users grep and copy it
        sys.exit(EXIT_CANNOT_RUN)
    if fmt == "json":
        click.echo(report.backtest_json(suite, replays))
    else:
        report.print_backtest(out_console(), replays)


@click.command()
@click.argument("suite")
@click.argument("check")
@click.argument("bucket")
@click.argument("verdict", type=click.Choice(["expected", "unexpected"]))
@project_option
@click.option(
    "--by",
    default=lambda: os.environ.get("USER", "cli"),
    show_default="$USER",
    help="Who gives the verdict (kept with it).",
)
@click.option("--note", default="", help="Why, for the people who read it later.")
def feedback(
    suite: str, check: str, bucket: str, verdict: str, project_dir: Path, by: str, note: str
) -> None:
    """Mark one bucket of a monitor as expected (it leaves the baseline) or undo that.

    BUCKET is a date or timestamp inside the bucket, read in the check's timezone,
    e.g. 2026-11-23 for a daily bucket.
    """
    project = load_project(project_dir)
    try:
        spec, zone = _bucketed_check(project, suite, check)
        start = _bucket_of(bucket, spec, zone)
        with Store.open(project.state_url) as store:
            store.add_feedback(suite, check, start, verdict=verdict, by=by, at=utc_now(), note=note)
    except DqAgentError as exc:
        click.echo(f"error: {exc}", err=True)  # unwrapped: users grep and copy it
        sys.exit(EXIT_CANNOT_RUN)
    click.echo(f"{suite} / {check}: bucket {start.isoformat()} marked {verdict} by {by}")


def _bucketed_check(project: Project, suite_id: str, check: str) -> tuple[CheckSpec, ZoneInfo]:
    ids = select_suites(project, [suite_id])
    if ids[0] not in project.suites:
        raise DqAgentError(f"suite {suite_id!r} has configuration errors: run dq-agent validate")
    suite = project.suites[ids[0]]
    bucketed = {c.name: c for c in suite.checks if isinstance(c.args, VolumeAnomalyArgs)}
    if check not in bucketed:
        available = ", ".join(bucketed) or "none"
        raise DqAgentError(
            f"no time-bucketed check {check!r} in suite {suite_id!r}; available: {available}"
        )
    spec = bucketed[check]
    assert isinstance(spec.args, VolumeAnomalyArgs)
    return spec, ZoneInfo(spec.args.timezone or suite.timezone)


def _bucket_of(text: str, spec: CheckSpec, zone: ZoneInfo) -> datetime:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise DqAgentError(f"expected a date or timestamp like 2026-11-23, got {text!r}") from None
    assert isinstance(spec.args, VolumeAnomalyArgs)
    local = to_local(moment, zone) if moment.tzinfo else moment
    return to_utc(bucket_floor(local, spec.args.bucket), zone)
