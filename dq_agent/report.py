"""How results reach a person (a rich table) or a script (the stable JSON document)."""

from __future__ import annotations

import itertools
import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from dq_agent.results import SuiteResult, key_text, to_jsonable
from dq_agent.store.ledger import RUNBOOK_FIX

if TYPE_CHECKING:  # named in annotations only: printing a check result loads none of them
    from dq_agent.checks.windows import BucketVerdict
    from dq_agent.config.models import CheckSpec, Suite
    from dq_agent.escalate.notify import Delivery
    from dq_agent.remedy.apply import Outcome
    from dq_agent.store.ledger import Correction

_STYLE = {"pass": "green", "warn": "yellow", "fail": "bold red", "error": "bold magenta"}


def to_json(results: Sequence[SuiteResult]) -> str:
    """The ``check --format json`` document (SPEC §4); keep its shape stable."""
    return json.dumps({"suites": [r.to_json() for r in results]}, indent=2, default=to_jsonable)


def print_text(console: Console, results: Sequence[SuiteResult]) -> None:
    """One table per suite, findings under the check that produced them, then a summary."""
    for suite in results:
        title = Text.assemble(
            (suite.suite, "bold"),
            "  ",
            (suite.status.upper(), _STYLE[suite.status]),
            (f"  {suite.duration_s:.2f}s", "dim"),
        )
        console.print(title)
        if suite.error is not None:
            console.print(Text(f"  {suite.error}", style=_STYLE["error"]))
            console.print()
            continue
        table = Table(show_header=True, header_style="dim", box=None, padding=(0, 2, 0, 2))
        table.add_column("status", no_wrap=True)
        table.add_column("check", no_wrap=True)
        table.add_column("result")
        for check in suite.checks:
            table.add_row(Text(check.status, _STYLE[check.status]), check.name, check.message)
            for finding in check.findings:
                key = key_text(finding.key)
                detail = f"  ↳ {key}: {finding.column}={finding.observed!r}"
                if finding.proposed is not None:
                    detail += f" → {finding.proposed!r} ({finding.action})"
                table.add_row("", "", Text(detail, style="dim"))
        console.print(table)
        console.print()
    console.print(summary(results))


def summary(results: Sequence[SuiteResult]) -> Text:
    counts: dict[str, int] = {}
    for suite in results:
        counts[suite.status] = counts.get(suite.status, 0) + 1
    parts: list[Any] = [f"{len(results)} suite{'s' if len(results) != 1 else ''}: "]
    for status in ("pass", "warn", "fail", "error"):
        if counts.get(status):
            parts.append((f"{counts[status]} {status}", _STYLE[status]))
            parts.append("  ")
    return Text.assemble(*parts)


def backtest_json(suite: str, replays: Sequence[tuple[CheckSpec, Sequence[BucketVerdict]]]) -> str:
    """``backtest --format json``: every bucket's verdict per check."""
    doc = {
        "suite": suite,
        "checks": [
            {
                "name": spec.name,
                "type": spec.type,
                "buckets": [
                    {
                        "bucket": v.bucket.isoformat(),
                        "rows": v.rows,
                        "status": v.status,
                        "message": v.message,
                        "baseline_median": v.baseline_median,
                        "lower": v.lower,
                        "upper": v.upper,
                    }
                    for v in verdicts
                ],
                "alerts": sum(1 for v in verdicts if v.status in ("warn", "fail")),
            }
            for spec, verdicts in replays
        ],
    }
    return json.dumps(doc, indent=2, default=to_jsonable)


def print_backtest(
    console: Console, replays: Sequence[tuple[CheckSpec, Sequence[BucketVerdict]]]
) -> None:
    """One table per check: every bucket, its value, the usual range and the verdict."""
    for spec, verdicts in replays:
        console.print(Text(spec.name, style="bold"))
        table = Table(show_header=True, header_style="dim", box=None, padding=(0, 2, 0, 2))
        for column in ("bucket", "rows", "usual", "verdict"):
            table.add_column(column, no_wrap=column != "verdict")
        for v in verdicts:
            usual = "" if v.lower is None or v.upper is None else f"{v.lower:,.0f}–{v.upper:,.0f}"
            table.add_row(
                v.bucket.isoformat(),
                f"{v.rows:,.0f}",
                usual,
                Text(v.message, _STYLE[v.status]),
            )
        console.print(table)
        alerts = sum(1 for v in verdicts if v.status in ("warn", "fail"))
        console.print(f"{alerts} of {len(verdicts)} buckets would have alerted\n")


_OUTCOME_STYLE = {
    "applied": "bold green",
    "reverted": "green",
    "planned": "cyan",
    "proposed": "yellow",
    "refused": "yellow",
    "conflict": "bold red",
    "failed": "bold magenta",
}


def outcome_json(outcome: Outcome) -> dict[str, Any]:
    change = outcome.change
    return {
        "correction": outcome.correction_id,
        "status": outcome.status,
        "detail": outcome.detail,
        "suite": change.suite,
        "check": change.check,
        "source": change.source,
        "key": to_jsonable(dict(change.key)),
        "column": change.column,
        "old": to_jsonable(change.old),
        "new": to_jsonable(change.new),
        "action": change.action,
    }


def print_outcomes(
    console: Console, outcomes: Sequence[Outcome], settled: Sequence[str], *, dry_run: bool
) -> None:
    """What the remedy step did (or, in a dry run, would do) with each change."""
    for note in settled:
        console.print(Text(note, style="dim"))
    if not outcomes:
        console.print("corrections: none" + (" (dry run)" if dry_run else ""))
        return
    console.print(Text("corrections" + (" (dry run: nothing written)" if dry_run else ""), "bold"))
    for outcome in outcomes:
        change = outcome.change
        key = key_text(change.key)
        ref = f"#{outcome.correction_id} " if outcome.correction_id else ""
        console.print(
            Text.assemble(
                (f"  {outcome.status:<9}", _OUTCOME_STYLE.get(outcome.status, "")),
                f" {ref}{change.source} {key}: "
                + change_text(change.column, change.old, change.new),
                (f"  {outcome.detail}", "dim"),
            )
        )


def restarts_json(suites: Sequence[Suite]) -> list[dict[str, Any]]:
    """What restarts once each suite passes again, and, for a target its table's lineage
    gave (``restart: {auto: true}``), how it was found."""
    return [
        {"suite": suite.suite, "target": spec.label, "why": spec.why or None}
        for suite in suites
        for spec in suite.restart
    ]


def print_restarts(console: Console, suites: Sequence[Suite]) -> None:
    planned = restarts_json(suites)
    if not planned:  # suites that name no restart: nothing to say
        return
    console.print(Text("restarts once each suite passes again", "bold"))
    for entry in planned:
        why = f"  lineage: {entry['why']}" if entry["why"] else ""
        console.print(Text.assemble(f"  {entry['suite']}: {entry['target']}", (why, "dim")))


def change_text(column: str, old: Any, new: Any) -> str:
    """``column: old → new``; for a runbook fix, how many rows before and after."""
    if column == RUNBOOK_FIX:
        if not old and not new:  # a dry run: the fix has not run, so no rows are known
            return "the rows its SQL selects"
        return f"{len(old or []):,} row(s) → {len(new or []):,} row(s)"
    return f"{column}: {old!r} → {new!r}"


# Rows of a runbook fix listed by ``corrections show``; the ledger holds all of them.
_SHOWN_ROWS = 20


def row_changes(old: Sequence[Mapping[str, Any]], new: Sequence[Mapping[str, Any]]) -> list[str]:
    """A runbook fix's rows, what changed in each (rows are kept in the same order before
    and after; a DELETE has no after, an INSERT no before)."""
    lines = []
    for before, after in list(itertools.zip_longest(old, new))[:_SHOWN_ROWS]:
        if before is None or after is None:
            lines.append(("inserted " if before is None else "deleted ") + repr(before or after))
            continue
        changed = [
            f"{k} {before[k]!r} → {after.get(k)!r}" for k in before if before[k] != after.get(k)
        ]
        same = ", ".join(f"{k}={v!r}" for k, v in before.items() if v == after.get(k))
        lines.append(f"{same}: {', '.join(changed) or 'unchanged'}")
    hidden = max(len(old), len(new)) - _SHOWN_ROWS
    if hidden > 0:
        lines.append(f"… and {hidden:,} more (dq-agent corrections show --format json)")
    return lines


def print_corrections(console: Console, corrections: Sequence[Correction]) -> None:
    table = Table(show_header=True, header_style="dim", box=None, padding=(0, 2, 0, 0))
    for column in ("id", "status", "suite", "record", "change", "decided by", "when"):
        table.add_column(column, no_wrap=column != "change")
    for c in corrections:
        key = key_text(c.key)
        table.add_row(
            str(c.id),
            Text(c.status, _OUTCOME_STYLE.get(c.status, "")),
            c.suite,
            f"{c.source} {key}",
            change_text(c.column, c.old, c.new),
            c.decided_by,
            c.created_at.strftime("%Y-%m-%d %H:%M"),
        )
    console.print(table if corrections else "no corrections")


def print_incidents(console: Console, incidents: Sequence[Mapping[str, Any]]) -> None:
    """Incidents (as the store lists them) as a table, like the corrections."""
    table = Table(show_header=True, header_style="dim", box=None, padding=(0, 2, 0, 0))
    for column in ("id", "status", "suite", "check", "failures", "opened", "summary"):
        table.add_column(column, no_wrap=column != "summary")
    for i in incidents:
        table.add_row(
            str(i["id"]),
            i["status"],
            i["suite"],
            i["check"],
            str(i["failures"]),
            i["opened_at"][:16].replace("T", " "),
            Text(i["summary"]),
        )
    console.print(table if incidents else "no incidents")


def print_correction(console: Console, c: Correction) -> None:
    key = key_text(c.key)
    console.print(
        Text.assemble(
            (f"correction {c.id}", "bold"), "  ", (c.status, _OUTCOME_STYLE.get(c.status, ""))
        )
    )
    console.print(f"  {c.suite} / {c.check}: {c.source} {key}")
    console.print(f"  {change_text(c.column, c.old, c.new)}  (decided by {c.decided_by})")
    for line in c.evidence:
        console.print(Text(f"  • {line}", style="dim"))
    if c.column == RUNBOOK_FIX:
        for line in row_changes(c.old or [], c.new or []):
            console.print(f"    {line}")
    for event in c.events:
        console.print(
            f"  {event.at.strftime('%Y-%m-%d %H:%M:%S')}  {event.event:<14} "
            f"{event.decided_by:<22} {event.detail}"
        )


def print_delivery(out: Console, delivery: Delivery) -> None:
    """What went to Slack in this run (nothing is printed when Slack is not configured)."""
    if delivery.sent:
        out.print(Text(f"slack: {len(delivery.sent)} message(s) sent", style="dim"))
    if delivery.waiting:
        out.print(
            Text(
                f"slack: {delivery.waiting} message(s) waiting (working hours, retries)",
                style="dim",
            )
        )
    for problem in delivery.failed:
        out.print(Text(f"slack: not delivered: {problem}", style="red"))
