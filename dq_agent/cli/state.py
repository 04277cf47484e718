"""``dq-agent store``: the state store's size, and pruning what no baseline reaches."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from dq_agent.cli.common import (
    EXIT_CANNOT_RUN,
    format_option,
    ledger,
    project_option,
)
from dq_agent.engine import utc_now
from dq_agent.errors import DqAgentError


@click.group("store")
def store_group() -> None:
    """The state store: what it holds, and pruning old run history (retention: in
    dq-agent.yml)."""


@store_group.command("stats")
@project_option
@format_option
def store_stats(project_dir: Path, fmt: str) -> None:
    """Rows and bytes (where the database tells) of every table, largest first."""
    from dq_agent.store.retention import stats

    with ledger(project_dir) as (_, store):
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

    with ledger(project_dir) as (project, store):
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
