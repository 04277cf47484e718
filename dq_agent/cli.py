"""The ``dq-agent`` command line."""

from __future__ import annotations

import json
import os
import shlex
import signal
import ssl
import sys
import tempfile
import threading
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import replace
from datetime import UTC, datetime
from importlib import resources
from importlib.abc import Traversable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import click
from click.core import ParameterSource
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.text import Text

from dq_agent import report
from dq_agent.checks.base import plural
from dq_agent.checks.windows import bucket_floor, to_local, to_utc
from dq_agent.config import Project, load_project, parse_duration
from dq_agent.config.loader import load_file, resolve_sqlite_path
from dq_agent.config.models import BrokerConfig, CheckSpec, SqlConnector, VolumeAnomalyArgs
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
from dq_agent.sandbox import DEFAULT_PORT_BASE
from dq_agent.store import Store
from dq_agent.store.ledger import STATUS_AFTER

if TYPE_CHECKING:
    from dq_agent.broker.mcp_http import McpServer
    from dq_agent.broker.server import Broker
    from dq_agent.broker.tokens import Token
    from dq_agent.remedy import Outcome

# The agent's parts beyond checking (Slack, corrections, the daemon, the emulators) are
# imported by the commands that use them: `dq-agent check` starts without loading them.

EXIT_CANNOT_RUN = 3
INCIDENT_STATUSES = [
    "open",
    "notified",
    "acknowledged",
    "fixing",
    "verifying",
    "resolved",
    "snoozed",
    "expected",
]

PROJECT_HELP = "The project folder (dq-agent.yml, connectors/, checks/)."


def _project_dir(ctx: click.Context, _param: click.Parameter, value: Path | None) -> Path:
    """``--project`` after the command, else the one before it (or DQ_AGENT_PROJECT)."""
    if value is not None:
        return value
    given = ctx.find_root().params.get("project_dir")
    return given if isinstance(given, Path) else Path(".")


def _project_given(ctx: click.Context) -> bool:
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


def _err() -> Console:
    return Console(stderr=True, highlight=False)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
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


@main.command()
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
    console = _err()
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


@main.command()
@project_option
@format_option
def sources(project_dir: Path, fmt: str) -> None:
    """List the connectors: whether each answers now, the suites that read it, and what is
    left of the quotas its service reports (a Salesforce org's daily API requests)."""
    from dq_agent.sources.probe import probe_all

    project = load_project(project_dir)
    try:
        _not_brokered(
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


@main.command()
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
        _check(
            project_dir,
            suites,
            as_of=as_of,
            fmt=fmt,
            findings_out=findings_out,
            findings_format=findings_format or FORMATS[0],
        )
    )


def _check(
    project_dir: Path,
    suites: tuple[str, ...],
    *,
    as_of: datetime | None,
    fmt: str,
    findings_out: Path | None = None,
    findings_format: str = FORMATS[0],
) -> int:
    console = _err()
    project = _project_to_run(project_dir, console, results_shown=fmt == "text")
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
        report.print_text(_out(), results)
    for written in export.written if export is not None else []:
        click.echo(str(written), err=True)
    return exit_code(worst(r.status for r in results))


def _project_to_run(
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


@main.command()
@click.argument("suites", nargs=-1)
@project_option
@click.option("--dry-run", is_flag=True, help="Print the changeset; write nothing, record nothing.")
@format_option
def run(suites: tuple[str, ...], project_dir: Path, dry_run: bool, fmt: str) -> None:
    """One agent cycle now: check, then correct what is clearly a slip (see corrections:).

    Settles corrections a crash interrupted, runs the suites, proposes what it may not write,
    and writes allowed auto-corrections after verifying them on a copy. Exit code as check.
    """
    sys.exit(_run(project_dir, suites, dry_run=dry_run, fmt=fmt))


@main.command()
@click.argument("suites", nargs=-1)
@project_option
@format_option
def plan(suites: tuple[str, ...], project_dir: Path, fmt: str) -> None:
    """Print the corrections a run would make, and what it would refuse, and the pipelines
    each suite restarts once it passes again (with the lineage that found them); change
    nothing.

    Only the changeset: "run --dry-run" also prints the checks it comes from.
    """
    sys.exit(_run(project_dir, suites, dry_run=True, fmt=fmt, changeset_only=True))


def _run(
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
    project = _project_to_run(project_dir, _err(), results_shown=shown)
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
        report.print_outcomes(_out(), cycle.outcomes, cycle.settled, dry_run=dry_run)
        report.print_restarts(_out(), planned)
    elif fmt == "json":
        doc = json.loads(report.to_json(cycle.results))
        doc["corrections"] = [report.outcome_json(o) for o in cycle.outcomes]
        doc["settled"] = cycle.settled
        doc["incidents"] = [vars(n) | {"owners": list(n.owners)} for n in cycle.notices]
        doc["messages"] = vars(cycle.delivery)
        click.echo(json.dumps(doc, indent=2))
    else:
        out = _out()
        report.print_text(out, cycle.results)
        report.print_outcomes(out, cycle.outcomes, cycle.settled, dry_run=dry_run)
        for notice in cycle.notices:
            out.print(Text(str(notice), style="yellow" if notice.event != "resolved" else "green"))
        report.print_delivery(out, cycle.delivery)
    return exit_code(worst(r.status for r in cycle.results))


def _not_brokered(project: Project, command: str, why: str) -> None:
    """Raise for a command the agent cannot do with a broker (``broker:`` in dq-agent.yml):
    it holds no source credential; ``why`` says what to do instead, or why not yet."""
    if project.sealed:
        raise DqAgentError(f"{command} does not run with a broker (broker: in dq-agent.yml): {why}")


# Wide enough that no line written to a pipe is wrapped.
PIPED_WIDTH = 10_000


def _out() -> Console:
    out = Console(highlight=False)
    # Piped output is read by programs (grep, a log): one line per line, never wrapped or cut
    # to rich's 80 columns. Tables still take only the width their contents need.
    return out if out.is_terminal else Console(highlight=False, width=PIPED_WIDTH)


@main.group()
def corrections() -> None:
    """The corrections ledger: list, show, approve, reject, revert, verify."""


@corrections.command("list")
@project_option
@click.option("--suite", default=None, help="Only this suite's corrections.")
@click.option(
    "--status",
    type=click.Choice(sorted(set(STATUS_AFTER.values()))),
    default=None,
    help="Only the corrections in this state.",
)
@format_option
def corrections_list(project_dir: Path, suite: str | None, status: str | None, fmt: str) -> None:
    """Every correction, newest first."""
    with _ledger(project_dir) as (_, store):
        found = store.corrections(suite=suite, status=status)
    if fmt == "json":
        click.echo(json.dumps([c.to_json() for c in found], indent=2))
    else:
        report.print_corrections(_out(), found)


@corrections.command("show")
@click.argument("correction_id", type=int)
@project_option
@format_option
def corrections_show(correction_id: int, project_dir: Path, fmt: str) -> None:
    """One correction with its evidence and every event in its ledger."""
    with _ledger(project_dir) as (_, store):
        found = store.correction(correction_id)
    if found is None:
        click.echo(f"error: no correction {correction_id}", err=True)
        sys.exit(EXIT_CANNOT_RUN)
    if fmt == "json":
        click.echo(json.dumps(found.to_json(events=True), indent=2))
    else:
        report.print_correction(_out(), found)


@corrections.command("revert")
@click.argument("correction_ids", metavar="ID...", type=int, nargs=-1, required=True)
@project_option
@click.option(
    "--by",
    required=True,
    metavar="EMAIL",
    help="An owner of the suite, or the owner of the record it changed.",
)
def corrections_revert(correction_ids: tuple[int, ...], project_dir: Path, by: str) -> None:
    """Put the old values back, compare-and-set (refused where they changed since).

    Several corrections of one Salesforce object or sheet are written back together
    (200 records a call)."""
    from dq_agent.agent import connect_slack
    from dq_agent.escalate.notify import Escalation
    from dq_agent.remedy import revert_corrections

    def undo(project: Project, store: Store, options: RunOptions) -> list[Outcome]:
        ids = list(dict.fromkeys(correction_ids))
        outcomes = revert_corrections(project, store, ids, by=by, options=options)
        # The owner told about a correction hears about its undo in the same thread.
        escalation = Escalation(project, store, connect_slack(project, store), options.clock)
        for correction_id, outcome in zip(ids, outcomes, strict=True):
            escalation.undone(correction_id, outcome, by)
        escalation.deliver()
        return outcomes

    _decide(project_dir, correction_ids, undo)


@corrections.command("approve")
@click.argument("correction_id", type=int)
@project_option
@click.option("--by", required=True, metavar="EMAIL", help="An owner of the suite.")
def corrections_approve(correction_id: int, project_dir: Path, by: str) -> None:
    """Approve a proposed correction: verified on a copy, then written compare-and-set."""
    from dq_agent.remedy import approve_correction

    _decide(
        project_dir,
        [correction_id],
        lambda project, store, options: approve_correction(
            project, store, correction_id, by=by, options=options
        ),
    )


@corrections.command("reject")
@click.argument("correction_id", type=int)
@project_option
@click.option("--by", required=True, metavar="EMAIL", help="An owner of the suite.")
def corrections_reject(correction_id: int, project_dir: Path, by: str) -> None:
    """Reject a proposed correction; nothing is written."""
    from dq_agent.remedy import reject_correction

    with _ledger(project_dir) as (project, store):
        try:
            reject_correction(store, project, correction_id, by=by, clock=utc_now)
        except DqAgentError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(EXIT_CANNOT_RUN)
    click.echo(f"correction {correction_id}: rejected by {by}")


@corrections.command("verify")
@project_option
def corrections_verify(project_dir: Path) -> None:
    """Check the ledger's hash chain: any edited or deleted entry is reported."""
    with _ledger(project_dir) as (_, store):
        problems = store.verify_ledger()
        entries = len(store.corrections())
    for problem in problems:
        click.echo(problem, err=True)
    if problems:
        sys.exit(EXIT_CANNOT_RUN)
    click.echo(f"ledger intact: {entries} correction{'s' if entries != 1 else ''}")


@main.group()
def incidents() -> None:
    """Problems people are told about until they are fixed: list, show, resolve, snooze."""


@incidents.command("list")
@project_option
@click.option(
    "--status",
    type=click.Choice(INCIDENT_STATUSES),
    default=None,
    help="Only the incidents in this state.",
)
@format_option
def incidents_list(project_dir: Path, status: str | None, fmt: str) -> None:
    """Every incident, newest first."""
    with _ledger(project_dir) as (_, store):
        found = store.incidents(status=status)
    if fmt == "json":
        click.echo(
            json.dumps([{k: v for k, v in i.items() if k != "events"} for i in found], indent=2)
        )
        return
    report.print_incidents(_out(), found)


@incidents.command("show")
@click.argument("incident_id", type=int)
@project_option
@format_option
def incidents_show(incident_id: int, project_dir: Path, fmt: str) -> None:
    """One incident with its history."""
    with _ledger(project_dir) as (_, store):
        incident = store.incident(incident_id)
        messages = [
            {
                "kind": m.kind,
                "to": m.recipient,
                "status": m.status,
                "due_at": m.due_at.isoformat(),
                "sent_at": m.sent_at.isoformat() if m.sent_at else None,
                "channel": m.channel,
                "ts": m.ts,
                "error": m.error,
            }
            for m in store.outbox(incident_id=incident_id)
            if m.kind != "update"
        ]
    if incident is None:
        click.echo(f"error: no incident {incident_id}", err=True)
        sys.exit(EXIT_CANNOT_RUN)
    incident["messages"] = messages
    if fmt == "json":
        click.echo(json.dumps(incident, indent=2))
        return
    click.echo(f"incident #{incident['id']}  {incident['status']}")
    click.echo(f"  {incident['suite']} / {incident['check']} on {incident['dataset']}")
    click.echo(f"  owners: {', '.join(incident['owners']) or 'none set'}")
    click.echo(f"  {incident['summary']}")
    for event in incident["events"]:
        click.echo(
            f"  {event['at'][:19]}  {event['event']:<13} {event['by']:<18} {event['detail']}"
        )
    for m in messages:
        when = m["sent_at"] or f"due {m['due_at']}"
        problem = f" ({m['error']})" if m["error"] else ""
        click.echo(f"  slack: {m['kind']:<6} to {m['to']}: {m['status']} {when[:19]}{problem}")


@incidents.command("resolve")
@click.argument("incident_id", type=int)
@project_option
@click.option("--by", required=True, metavar="EMAIL", help="An owner of the incident's suite.")
def incidents_resolve(incident_id: int, project_dir: Path, by: str) -> None:
    """Close an incident by hand (it re-opens if the check fails again)."""
    _set_incident(project_dir, incident_id, "resolved", by=by)


@incidents.command("snooze")
@click.argument("incident_id", type=int)
@project_option
@click.option("--for", "duration", required=True, metavar="DURATION", help="e.g. 4h, 2d")
@click.option("--by", required=True, metavar="EMAIL", help="An owner of the incident's suite.")
def incidents_snooze(incident_id: int, project_dir: Path, duration: str, by: str) -> None:
    """Quiet an incident for a while; failures still count."""
    try:
        length = parse_duration(duration)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--for") from None
    _set_incident(project_dir, incident_id, "snoozed", by=by, until=utc_now() + length)


def _set_incident(
    project_dir: Path, incident_id: int, status: str, *, by: str, until: datetime | None = None
) -> None:
    from dq_agent.escalate.actions import require_decider

    with _ledger(project_dir) as (project, store):
        try:
            incident = store.incident(incident_id, events=False)
            if incident is None:
                raise DqAgentError(f"no incident {incident_id}")
            require_decider(project, incident, by, status.removesuffix("d"))
            store.set_incident_status(incident_id, status, at=utc_now(), by=by, until=until)
        except DqAgentError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(EXIT_CANNOT_RUN)
    suffix = f" until {until.isoformat(timespec='minutes')}" if until else ""
    click.echo(f"incident #{incident_id}: {status} by {by}{suffix}")


@main.group("store")
def store_group() -> None:
    """The state store: what it holds, and pruning old run history (retention: in
    dq-agent.yml)."""


@store_group.command("stats")
@project_option
@format_option
def store_stats(project_dir: Path, fmt: str) -> None:
    """Rows and bytes (where the database tells) of every table, largest first."""
    from dq_agent.store.retention import stats

    with _ledger(project_dir) as (_, store):
        tables = stats(store)
    if fmt == "json":
        click.echo(json.dumps({"tables": [t.to_json() for t in tables]}, indent=2))
        return
    for table in tables:
        size = f"{table.bytes / 1024:>10,.0f} KB" if table.bytes is not None else " " * 13
        click.echo(f"{table.name:<20} {table.rows:>12,} rows {size}")


@store_group.command("prune")
@project_option
@format_option
@click.option("--dry-run", is_flag=True, help="Count what would go; delete nothing.")
def store_prune(project_dir: Path, fmt: str, dry_run: bool) -> None:
    """Delete run history older than retention.days (what no baseline reaches, never a
    suite's latest run nor the ledger), in small batches."""
    from dq_agent.store.retention import prune

    with _ledger(project_dir) as (project, store):
        settings = project.settings.retention
        try:
            pruned = prune(
                store,
                days=settings.days,
                suites=project.suites.values(),
                now=utc_now(),
                batch=settings.batch,
                full_runs=settings.full_runs,
                dry_run=dry_run,
            )
        except DqAgentError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(EXIT_CANNOT_RUN)
    if fmt == "json":
        doc = {
            "cutoff": pruned.cutoff.isoformat() if pruned.cutoff else None,
            "dry_run": dry_run,
            "rows": pruned.rows,
        }
        click.echo(json.dumps(doc, indent=2))
        return
    if pruned.cutoff is None:
        click.echo("retention.days is not set in dq-agent.yml: run history is only thinned")
    else:
        click.echo(f"run history started before {pruned.cutoff:%Y-%m-%d %H:%M} UTC")
    verb = "would delete" if dry_run else "deleted"
    for table, count in sorted(pruned.rows.items()):
        click.echo(f"  {verb} {count:,} from {table}")
    if not pruned.rows:
        click.echo(f"  {verb} nothing")


class _ledger:
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


def _decide(
    project_dir: Path,
    correction_ids: Sequence[int],
    action: Callable[[Project, Store, RunOptions], Outcome | Sequence[Outcome]],
) -> None:
    """A person's decision on corrections, made while no other process acts on their
    suites."""
    from dq_agent.store.locks import acting

    with _ledger(project_dir) as (project, store):
        try:
            found = (store.correction(i) for i in correction_ids)
            suites = {c.suite for c in found if c is not None}
            with acting(project.state_url, suites, pool=store.engine):
                done = action(project, store, RunOptions(clock=utc_now))
        except DqAgentError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(EXIT_CANNOT_RUN)
    outcomes = list(done) if isinstance(done, Sequence) else [done]
    for outcome in outcomes:
        click.echo(f"correction {outcome.correction_id}: {outcome.status}: {outcome.detail}")
    if any(o.status not in ("applied", "reverted", "unchanged") for o in outcomes):
        sys.exit(2)


@main.command()
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
    console = _err()
    if keep_in is not None:
        code = _play_demo(_write_example(keep_in, console), fmt, ui, ui_listen, kept=True)
    elif _project_given(ctx):
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
    from dq_agent.demo import Clock, Demo, fresh_state, start_time
    from dq_agent.sandbox.runner import demo_seed, start_sandbox
    from dq_agent.sandbox.warehouse import build_demo_warehouse

    console = _err()
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
                return _run(project_dir, (), dry_run=False, fmt=shown, clock=at)

            out = console if fmt == "json" else _out()
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

    host, port = _listen(listen)
    token = secrets.token_urlsafe(12)
    user = UiUser(token_hash=hash_token(token))
    with Store.open(project.state_url) as store:
        # Everyone in the story: the suites' people and whoever was told on Slack.
        everyone = [p for s in project.suites.values() for p in (*s.owner, *s.escalation)]
        everyone += [m.recipient for m in store.outbox()]
        # An update of a sent message has no recipient of its own; a channel cannot sign in.
        people = sorted({p.lower() for p in everyone if p and not p.startswith("#")})
        shown = _with_ui(project, users=dict.fromkeys(people, user))
        _serve_dashboard(
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


def _with_ui(project: Project, **changes: Any) -> Project:
    """``project`` with its ``ui:`` settings changed (read-only, the demo's users)."""
    ui = project.settings.ui.model_copy(update=changes)
    return replace(project, settings=project.settings.model_copy(update={"ui": ui}))


def _serve_dashboard(
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

    stop = stop or _stop_on_signals()
    dashboard = Dashboard(
        lambda: project, store, RunOptions(clock=clock), connect_slack(project, store)
    )
    app = dashboard.handle
    with InteractionsServer(None, lambda _: None, host=host, port=port, app=app) as server:
        click.echo(announce(server.base_url), err=True)
        _until(stop)


def _sqlite_file(url: str, project_dir: Path) -> Path | None:
    resolved = resolve_sqlite_path(url, project_dir)
    prefix = "sqlite:///"
    if not resolved.startswith(prefix) or resolved.endswith(":memory:"):
        return None
    return Path(resolved[len(prefix) :])


@main.command()
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
        report.print_backtest(_out(), replays)


@main.command()
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


def _stop_on_signals() -> threading.Event:
    """An event that Ctrl-C (SIGINT) or SIGTERM sets: what a serving command waits on."""
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    return stop


def _until(stop: threading.Event) -> None:
    """Wait for ``stop`` in short steps. A signal the kernel hands to another thread runs its
    Python handler only once the main thread runs again: blocked in a wait without a timeout,
    it never would, and Ctrl-C would leave the command up."""
    while not stop.wait(0.25):
        pass


def _listen(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit():
        raise click.BadParameter(f"expected HOST:PORT, got {value!r}", param_hint="--listen")
    return host, int(port)


def listen_option(help: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    return click.option(
        "--listen", default="127.0.0.1:8787", show_default=True, metavar="HOST:PORT", help=help
    )


@main.command()
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

    host, port = _listen(listen)
    configure_logging(log_format)
    stop = _stop_on_signals()
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


@main.command()
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

    host, port = _listen(listen)
    project = _project_to_run(project_dir, _err())
    if project is None:
        sys.exit(EXIT_CANNOT_RUN)
    settings = project.settings.slack
    if settings is None:
        click.echo("error: dq-agent.yml has no slack: section (token, signing_secret)", err=True)
        sys.exit(EXIT_CANNOT_RUN)
    stop = _stop_on_signals()
    try:
        with Store.open(project.state_url) as store:
            slack = connect_slack(project, store)
            assert slack is not None  # slack: is configured
            actions = Actions(project, store, slack, RunOptions(clock=utc_now))
            if settings.mode == "socket":
                with SocketInteractions(settings, store, actions.handle):
                    click.echo("connected to Slack (Socket Mode)", err=True)
                    _until(stop)
                return
            verifier = Verifier(settings.verifying_secret(), store)
            with InteractionsServer(verifier, actions.handle, host=host, port=port) as server:
                click.echo(f"listening on {server.base_url}{ACTIONS_PATH}", err=True)
                _until(stop)
    except (DqAgentError, OSError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_CANNOT_RUN)


@main.command()
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
    stop = _stop_on_signals()
    host, port = _listen(listen)
    project = _project_to_run(project_dir, _err())
    if project is None:
        sys.exit(EXIT_CANNOT_RUN)
    if read_only:
        project = _with_ui(project, read_only=True)
    settings = project.settings.ui
    if not settings.users and settings.trusted_header is None:
        click.echo(
            "warning: no ui.users and no ui.trusted_header in dq-agent.yml: nobody can sign "
            "in. Make a token's hash with dq-agent hash-token and list people under ui.users.",
            err=True,
        )
    try:
        with Store.open(project.state_url) as store:
            _serve_dashboard(
                project, store, utc_now, host, port, lambda url: f"dashboard on {url}/", stop
            )
    except (DqAgentError, OSError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_CANNOT_RUN)


@main.command()
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
    _stop_on_signals()
    host, port = _listen(listen)
    if _project_to_run(project_dir, _err()) is None:
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


@main.command()
@project_option
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where to write them (default: .dq-agent/schemas in the project).",
)
def schema(project_dir: Path, out: Path | None) -> None:
    """Write JSON Schemas of dq-agent.yml, connector profiles and suites, for editors.

    A YAML file names its schema in a first line such as
    "# yaml-language-server: $schema=../.dq-agent/schemas/suite.schema.json" (the line
    printed for each kind), and editors with a YAML language server then complete and check
    it as it is typed. "dq-agent validate" remains the judge.
    """
    for line in _write_schemas(project_dir, out):
        click.echo(line)


def _write_schemas(project_dir: Path, out: Path | None = None) -> list[str]:
    """The JSON Schemas written to ``out`` (default: the project's .dq-agent/schemas), and for
    each the line that makes an editor use it."""
    from dq_agent.config.schema import FILES, schemas

    folder = out if out is not None else project_dir / ".dq-agent" / "schemas"
    folder.mkdir(parents=True, exist_ok=True)
    # Where each kind of file lives in a project, relative to the project folder.
    homes = {"settings": Path("."), "connector": Path("connectors"), "suite": Path("checks")}
    told = []
    for kind, document in schemas().items():
        target = folder / FILES[kind]
        target.write_text(json.dumps(document, indent=2) + "\n")
        relative = os.path.relpath(target.resolve(), (project_dir / homes[kind]).resolve())
        told.append(f"wrote {target}: first line of a {kind} file:")
        told.append(f"  # yaml-language-server: $schema={relative}")
    return told


# init profiles at most this many tables unless --tables names them.
MAX_TABLES = 50


@main.command()
@project_option
@click.option(
    "--connect",
    "url",
    metavar="URL",
    help="A database URL, as SQLAlchemy takes it (postgresql+psycopg://user@host/db, "
    "sqlite:///file.db): write its connector profile and suggest a suite for each table.",
)
@click.option(
    "--tables",
    metavar="A,B",
    help=f"The tables to profile, comma-separated (default: every table, at most {MAX_TABLES}).",
)
@click.option("--schema", "schema", help="The database schema the tables are in.")
def init(project_dir: Path, url: str | None, tables: str | None, schema: str | None) -> None:
    """Start a project: dq-agent.yml, connectors/, checks/ and the editors' JSON Schemas.

    With --connect, each table is profiled in one query pushed down to the database (rows,
    nulls, distinct values, ranges, keys, when rows arrive) and a suite is written for it:
    row_count, freshness, volume_anomaly, not-null, accepted values, uniqueness and ranges
    where the data supports them, each line commented with its evidence. Every suggestion
    holds on the data as it is, so "dq-agent check" passes on healthy data. Files that are
    there already are kept.
    """
    from dq_agent import scaffold

    console = _err()
    connector = written = None
    suggested = []
    failed = 0
    variable: str | None = None
    if url is not None:
        # A relative SQLite or DuckDB path is the user's, from here: the profile written
        # into the project must find the same file.
        url = resolve_sqlite_path(url, Path.cwd())
        connector = scaffold.connector_for(url, schema)
        shown, variable = scaffold.secret_free(url)
        written = scaffold.connector_for(shown, schema)
        try:
            names = (
                [t.strip() for t in tables.split(",") if t.strip()]
                if tables
                else scaffold.tables(connector, project_dir)
            )
        except DqAgentError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(EXIT_CANNOT_RUN)
        if len(names) > MAX_TABLES:
            console.print(
                f"{len(names)} tables: profiling the first {MAX_TABLES} (--tables to choose)"
            )
            names = names[:MAX_TABLES]
        for name in names:
            try:
                found = scaffold.profile(connector, project_dir, name, utc_now())
            except DqAgentError as exc:
                click.echo(f"error: {name}: {exc}", err=True)
                failed += 1
                continue
            one = scaffold.suggest(found, scaffold.CONNECTOR, schema)
            suggested.append(one)
            console.print(
                f"{name}: {found.rows:,} rows, {len(found.columns)} columns profiled in "
                f"{found.seconds:.2f}s: {plural(one.checks, 'check')} suggested"
            )
    project_dir.mkdir(parents=True, exist_ok=True)
    scaffold.write_project(project_dir, connector=written, suggested=suggested, say=click.echo)
    _write_schemas(project_dir)
    if url is None:
        click.echo(
            "next: dq-agent init --connect URL to suggest suites for your tables, or write "
            "checks/*.yml by hand (dq-agent demo --dir DIR writes a worked example)"
        )
        return
    if variable is not None:
        click.echo(f"the password is not written down: set {variable} (URL-encoded) to run")
    click.echo(f"next: dq-agent check --project {shlex.quote(str(project_dir))}")
    if failed:
        sys.exit(EXIT_CANNOT_RUN)


@main.group("import")
def import_() -> None:
    """Suites from another tool's definitions, written into the project's checks/."""


@import_.command("gx")
@project_option
@click.argument("suite_json", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--connector", required=True, help="The connector the suite reads (connectors/NAME.yml)."
)
@click.option("--table", required=True, help="The table the expectations are about.")
@click.option("--suite", "suite_id", help="The suite's id (default: the GX suite's name).")
@click.option("--owner", help="Who hears about it: an e-mail address.")
def import_gx(
    project_dir: Path,
    suite_json: Path,
    connector: str,
    table: str,
    suite_id: str | None,
    owner: str | None,
) -> None:
    """A Great Expectations expectation suite (its JSON file) as checks/<suite>.yml.

    Each expectation becomes a check of the same name with the same arguments (dq-agent runs
    any GX expectation); one dq-agent cannot run is kept, commented out, with the reason.
    """
    from dq_agent.config.gx_import import read_gx_suite, suite_from_gx

    try:
        converted = suite_from_gx(
            read_gx_suite(suite_json),
            connector=connector,
            table=table,
            suite=suite_id,
            owner=owner,
        )
    except DqAgentError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_CANNOT_RUN)
    target = project_dir / "checks" / f"{converted.suite}.yml"
    if target.exists():
        click.echo(f"error: {target} is there already: --suite to name another", err=True)
        sys.exit(EXIT_CANNOT_RUN)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(converted.yaml)
    click.echo(f"wrote {target}")
    for line in converted.skipped:
        click.echo(f"not converted (commented out): {line}", err=True)
    click.echo(f"next: dq-agent validate --project {shlex.quote(str(project_dir))}")


@main.command("hash-token")
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


@main.command()
@project_option
def mcp(project_dir: Path) -> None:
    """Serve the agent's investigation tools to an MCP client over stdio (the same tools and
    policy the optional LLM uses).

    Run it from the MCP client's configuration, e.g. command: dq-agent, args: [mcp,
    --project, /path/to/project]. Stdout carries only the MCP protocol; errors go to stderr.
    """
    from dq_agent.triage.mcp_server import serve as serve_mcp

    project = _project_to_run(project_dir, _err())
    if project is None:
        sys.exit(EXIT_CANNOT_RUN)
    try:
        _not_brokered(
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


def home_option(function: Callable[..., None]) -> Callable[..., None]:
    return click.option(
        "--home",
        type=click.Path(file_okay=False, path_type=Path),
        envvar="DQ_BROKER_HOME",
        default=Path("~/.dq-agent-broker").expanduser(),
        show_default="~/.dq-agent-broker, or DQ_BROKER_HOME",
        help="The broker's own folder: its tokens (hashes only) and its audit log.",
    )(function)


@main.group(invoke_without_command=True)
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

    stop = _stop_on_signals()
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
            _until(stop)
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


@main.command()
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
    from dq_agent.sandbox.faults import load_faults
    from dq_agent.sandbox.runner import demo_seed, load_seed, start_sandbox

    try:
        seed = load_seed(seed_file) if seed_file else demo_seed(utc_now())
        faults = load_faults(faults_file) if faults_file else {}
        running = start_sandbox(seed, port_base=port_base, faults=faults)
    except DqAgentError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_CANNOT_RUN)
    stop = _stop_on_signals()
    with running:
        click.echo(json.dumps(running.info))
        _until(stop)


if __name__ == "__main__":
    main()
