"""``dq-agent incidents``: list, show, resolve and snooze."""

from __future__ import annotations

import json
import sys
from datetime import datetime
from pathlib import Path

import click

from dq_agent import report
from dq_agent.cli.common import (
    EXIT_CANNOT_RUN,
    by_option,
    format_option,
    ledger,
    out_console,
    project_option,
)
from dq_agent.config import parse_duration
from dq_agent.engine import utc_now
from dq_agent.errors import DqAgentError

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


@click.group()
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
    with ledger(project_dir) as (_, store):
        found = store.incidents(status=status)
    if fmt == "json":
        click.echo(
            json.dumps([{k: v for k, v in i.items() if k != "events"} for i in found], indent=2)
        )
        return
    report.print_incidents(out_console(), found)


@incidents.command("show")
@click.argument("incident_id", type=int)
@project_option
@format_option
def incidents_show(incident_id: int, project_dir: Path, fmt: str) -> None:
    """One incident with its history."""
    with ledger(project_dir) as (_, store):
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
@by_option("An owner of the incident's suite.")
def incidents_resolve(incident_id: int, project_dir: Path, by: str) -> None:
    """Close an incident by hand (it re-opens if the check fails again)."""
    _set_incident(project_dir, incident_id, "resolved", by=by)


@incidents.command("snooze")
@click.argument("incident_id", type=int)
@project_option
@click.option("--for", "duration", required=True, metavar="DURATION", help="e.g. 4h, 2d")
@by_option("An owner of the incident's suite.")
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

    with ledger(project_dir) as (project, store):
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
