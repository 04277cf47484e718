"""What people read: incident cards, thread replies and correction notes, as Block Kit.

Every message has a plain ``text`` too: it is what notifications and screen readers show,
and what the terminal prints when Slack is not configured.

Slack reads ``<…>`` as markup: ``<!channel>`` notifies a whole channel, ``<@U123>`` mentions
someone, ``<https://…|Approve here>`` is a link under any label. So every piece of text that
comes from data (record keys and values, check messages, people's names) or from a model (a
draft) goes through :func:`escape` as it is put into a message, and text objects are
``verbatim`` so that Slack does not turn bare URLs, ``#channel`` or ``@name`` into links and
mentions either. Only the agent's own markup stays live: its mentions of the people it chose,
its links to records, its emoji and bold.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any
from urllib.parse import quote

from dq_agent.config.loader import Project
from dq_agent.config.models import (
    GSheetsConnector,
    GSheetsSourceSpec,
    SalesforceConnector,
    SalesforceSourceSpec,
)
from dq_agent.sources.gsheets import WHOLE_SHEET
from dq_agent.store.ledger import RUNBOOK_FIX, Correction

Block = dict[str, Any]

# Button action ids, shared with the interactions endpoint.
APPROVE, RECHECK, SNOOZE, EXPECTED, UNDO = "approve_fix", "recheck", "snooze", "expected", "undo"

_ICON = {"resolved": ":white_check_mark:", "snoozed": ":zzz:", "expected": ":ok_hand:"}
_MAX_RUNBOOK_LINES = 4
_WORD = re.compile(r"[a-z]{4,}")


def escape(value: Any) -> str:
    """Text from data or a model, made inert in Slack markup (Slack's own escaping)."""
    return str(value).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _mrkdwn(text: str, *, verbatim: bool = True) -> Block:
    # verbatim: bare URLs, #channel and @name stay words; the agent's <…> markup still works.
    return {"type": "mrkdwn", "text": text, "verbatim": verbatim}


def amount(value: Any) -> str:
    """A value as a person reads it: 10,000,000 rather than 10000000.0."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return f"{value:,}"


def record_link(project: Project, suite_id: str, key: Mapping[str, Any]) -> str | None:
    """A link to the record (Salesforce) or the sheet (Google Sheets), when there is one."""
    suite = project.suites.get(suite_id)
    if suite is None:
        return None
    connector = project.connectors.get(suite.source.connector)
    source = suite.source
    if (
        isinstance(source, SalesforceSourceSpec)
        and isinstance(connector, SalesforceConnector)
        and connector.instance_url
        and "Id" in key
    ):
        base = connector.instance_url.rstrip("/")
        # The Id comes from the record: quoted, it cannot end the link or add a label.
        return f"{base}/lightning/r/{source.object}/{quote(str(key['Id']), safe='')}/view"
    if isinstance(source, GSheetsSourceSpec) and isinstance(connector, GSheetsConnector):
        spreadsheet = quote(source.spreadsheet, safe="")
        return f"https://docs.google.com/spreadsheets/d/{spreadsheet}/edit"
    return None


def _linked(text: str, url: str | None) -> str:
    """``text`` (plain) as mrkdwn, linked to ``url`` when there is one."""
    return f"<{url}|{escape(text)}>" if url else escape(text)


def _record(key: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in key.items()) or "the source"


def memory(incident: Mapping[str, Any], similar: Sequence[Mapping[str, Any]]) -> str:
    """The most similar past incident and how it ended, in one sentence."""
    if not similar:
        return ""
    last = similar[0]
    when = datetime.fromisoformat(str(last["at"]))
    minutes = last.get("minutes_after_first_nudge")
    took = f", {_duration(int(minutes))} after the first message" if minutes is not None else ""
    alike = (last["suite"], last["check"]) == (incident["suite"], incident["check"])
    same = "" if alike else f" on {last['suite']} / {last['check']}"
    return f"Last time{same} ({when:%b} {when.day}) {last['how']}{took}."


def _duration(minutes: int) -> str:
    if minutes < 60:
        return f"{minutes} min"
    hours, rest = divmod(minutes, 60)
    return f"{hours}h{rest:02d}" if hours < 48 else f"{hours // 24} days"


def fix_of(correction: Correction) -> str:
    """A pending correction as a suggestion a person can approve."""
    if correction.column == RUNBOOK_FIX:
        return (
            f"apply the runbook fix {correction.key.get('fix')} to {_rows(correction)} of "
            f"{_table(correction)}, as verified on a branch"
        )
    if correction.column == WHOLE_SHEET:
        rows = max(len(correction.new or []) - 1, 0)
        return f"restore the last good copy of the worksheet ({rows:,} rows) kept by the agent"
    return (
        f"change {correction.column} on {_record(correction.key)} from "
        f"{amount(correction.old)} to {amount(correction.new)}"
    )


def _rows(correction: Correction) -> str:
    """How many rows a runbook fix changes: updated, deleted or inserted."""
    count = max(len(correction.old or []), len(correction.new or []))
    return f"{count:,} row{'s' if count != 1 else ''}"


def _table(correction: Correction) -> str:
    return correction.source.partition("/")[2] or correction.source


def undone_text(correction: Correction, by: str) -> str:
    """What an undo put back, in a sentence (plain text)."""
    if correction.column == RUNBOOK_FIX:
        return f"Undone by {by}: the {_rows(correction)} of {_table(correction)} are as before."
    return f"Undone by {by}: {correction.column} is {amount(correction.old)} again."


def runbook_lines(runbook: str, incident: Mapping[str, Any]) -> list[str]:
    """The runbook's lines that speak of this problem; all of a short runbook."""
    lines = [" ".join(p.split()) for p in re.split(r"\n\s*\n", runbook.strip()) if p.strip()]
    if not lines:
        return []
    # A runbook paragraph per line; a short one applies whole.
    sentences = [s for line in lines for s in re.split(r"(?<=[.!?])\s+", line) if s]
    if len(sentences) <= _MAX_RUNBOOK_LINES:
        return sentences
    context = " ".join(
        [incident["check"], incident.get("check_type", ""), incident["summary"]]
    ).lower()
    words = set(_WORD.findall(context))
    return [s for s in sentences if words & set(_WORD.findall(s.lower()))][:_MAX_RUNBOOK_LINES]


def _button(text: str, action_id: str, value: Mapping[str, Any], style: str | None = None) -> Block:
    button: Block = {
        "type": "button",
        "text": {"type": "plain_text", "text": text},
        "action_id": action_id,
        "value": json.dumps(value, separators=(",", ":")),
    }
    if style:
        button["style"] = style
    return button


def headline(incident: Mapping[str, Any]) -> str:
    """What failed, in one sentence (plain text: :func:`escape` it for Slack)."""
    return (
        f"{incident['suite']} / {incident['check']} on {incident['dataset']}: {incident['summary']}"
    )


def title(incident: Mapping[str, Any]) -> str:
    """The first message's first line as Slack markup: its status icon and the headline."""
    return f"{_ICON.get(incident['status'], ':rotating_light:')} {escape(headline(incident))}"


def card(
    project: Project,
    incident: Mapping[str, Any],
    pending: Sequence[Correction],
    *,
    similar: str = "",
) -> tuple[str, list[Block]]:
    """The first message of an incident, kept current by ``chat.update``.

    ``similar`` is plain text, as :func:`memory` gives it.
    """
    status = incident["status"]
    text = title(incident)
    blocks: list[Block] = [{"type": "section", "text": _mrkdwn(f"*{text}*")}]
    failures = incident["failures"]
    told = [
        ", ".join(escape(r) for r in step) for step in incident["chain"][: incident["level"] + 1]
    ]
    owners = ", ".join(escape(o) for o in incident["owners"]) or "none set"
    state = (
        f"Incident #{incident['id']} · *{escape(status)}* · failed {failures} "
        f"time{'s' if failures != 1 else ''} since {escape(incident['opened_at'][:16])} UTC · "
        f"owner: {owners}"
    )
    if len(told) > 1:
        state += f" · escalated: {' → '.join(told)}"
    if incident.get("snoozed_until") and status == "snoozed":
        state += f" · snoozed until {escape(incident['snoozed_until'][:16])} UTC"
    blocks.append({"type": "context", "elements": [_mrkdwn(state)]})
    triage = (incident.get("evidence") or {}).get("triage") or {}
    if triage.get("kind"):
        kind = escape(str(triage["kind"]).replace("_", " "))
        blocks.append(
            {
                "type": "context",
                "elements": [_mrkdwn(f"Triage: {kind}: {escape(triage['action'])}")],
            }
        )
    draft = (incident.get("evidence") or {}).get("draft")
    if draft:
        # A model's words: escaped like data, so they can add no link and no mention.
        blocks.append({"type": "section", "text": _mrkdwn(f"*In short*\n{escape(draft)}")})
    evidence = _evidence(project, incident)
    if evidence:
        blocks.append({"type": "section", "text": _mrkdwn(evidence)})
    if pending:
        fixes = "\n".join(
            f"• {escape(fix_of(c))} (correction {c.id})"
            + "".join(f"\n    ◦ {escape(line)}" for line in _report(c))
            for c in pending
        )
        blocks.append({"type": "section", "text": _mrkdwn(f"*Suggested fix*\n{fixes}")})
    suite = project.suites.get(incident["suite"])
    lines = runbook_lines(suite.runbook, incident) if suite else []
    if lines:
        runbook = "\n".join(f"> {escape(line)}" for line in lines)
        # The owners' own words: a URL they wrote down stays a link.
        blocks.append({"type": "section", "text": _mrkdwn(f"*Runbook*\n{runbook}", verbatim=False)})
    if similar and status != "resolved":
        blocks.append({"type": "context", "elements": [_mrkdwn(escape(similar))]})
    if status not in ("resolved", "expected"):
        blocks.append(
            {"type": "actions", "block_id": "incident", "elements": _buttons(incident, pending)}
        )
    return text, blocks


def _report(correction: Correction) -> Sequence[str]:
    """A runbook fix's branch report (rows changed, each check before → after)."""
    return correction.evidence if correction.column == RUNBOOK_FIX else ()


def approve_label(correction: Correction) -> str:
    """A fix run on a branch is applied; a value is approved."""
    return "Apply fix" if correction.column == RUNBOOK_FIX else "Approve fix"


def _buttons(incident: Mapping[str, Any], pending: Sequence[Correction]) -> list[Block]:
    ref = {"incident": incident["id"]}
    buttons = [
        _button(
            f"{approve_label(c)} ({c.id})" if len(pending) > 1 else approve_label(c),
            APPROVE,
            ref | {"correction": c.id},
            "primary",
        )
        for c in pending[:3]
    ]
    buttons.append(_button("I fixed it", RECHECK, ref))
    buttons.append(_button("Snooze", SNOOZE, ref))
    buttons.append(_button("This is expected", EXPECTED, ref))
    return buttons


def _evidence(project: Project, incident: Mapping[str, Any]) -> str:
    evidence = incident.get("evidence") or {}
    lines: list[str] = []
    observed = evidence.get("observed") or {}
    shown = {k: v for k, v in observed.items() if v is not None and not isinstance(v, dict | list)}
    if shown:
        lines.append(
            "Observed: " + ", ".join(f"{escape(k)} {escape(amount(v))}" for k, v in shown.items())
        )
    for finding in evidence.get("findings") or []:
        key = finding.get("key") or {}
        where = _linked(_record(key), record_link(project, incident["suite"], key))
        line = f"• {where}"
        if finding.get("column"):
            line += f" {escape(finding['column'])} = {escape(amount(finding.get('observed')))}"
        if finding.get("proposed") is not None:
            line += f" (should be {escape(amount(finding['proposed']))})"
        if finding.get("reason"):
            line += f": {escape(finding['reason'])}"
        lines.append(line)
    if evidence.get("also"):
        also = ", ".join(escape(name) for name in evidence["also"])
        lines.append(f"Failing with it while the source is empty: {also}")
    if not evidence.get("findings"):
        link = record_link(project, incident["suite"], {})
        if link:
            lines.append(f"Source: {_linked(incident['dataset'], link)}")
    return "*Evidence*\n" + "\n".join(lines) if lines else ""


def fyi(project: Project, correction: Correction, reason: str) -> tuple[str, list[Block]]:
    """A note to the owner that the agent changed a value, with Undo while it stands."""
    link = record_link(project, correction.suite, correction.key)
    where = _linked(_record(correction.key), link)
    because = f" because {escape(reason)}" if reason else ""
    if correction.column == RUNBOOK_FIX:
        text = (
            f"I applied the runbook fix {escape(str(correction.key.get('fix')))} to "
            f"{_rows(correction)} of {escape(_table(correction))}, verified on a branch first."
        )
    else:
        text = (
            f"I changed {escape(correction.column)} on {where} from "
            f"{escape(amount(correction.old))} to {escape(amount(correction.new))}{because}."
        )
    blocks: list[Block] = [{"type": "section", "text": _mrkdwn(text)}]
    state = (
        f"Correction {correction.id} · {escape(correction.status)} · "
        f"`dq-agent corrections show {correction.id}`"
    )
    blocks.append({"type": "context", "elements": [_mrkdwn(state)]})
    if correction.status == "applied":
        blocks.append(
            {
                "type": "actions",
                "block_id": "correction",
                "elements": [_button("Undo", UNDO, {"correction": correction.id}, "danger")],
            }
        )
    return text, blocks


def digest(
    person: str, incidents: Sequence[Mapping[str, Any]], at: datetime
) -> tuple[str, list[Block]]:
    """One message listing a person's open incidents, instead of one message each."""
    count = len(incidents)
    text = f"Daily digest for {escape(person)}: {count} open incident{'s' if count != 1 else ''}"
    blocks: list[Block] = [{"type": "section", "text": _mrkdwn(f"*{text}* ({at:%Y-%m-%d})")}]
    for incident in incidents[:45]:  # Slack allows 50 blocks a message
        blocks.append(
            {
                "type": "section",
                "text": _mrkdwn(f"• #{incident['id']} {escape(headline(incident))}"),
                "accessory": _button("I fixed it", RECHECK, {"incident": incident["id"]}),
            }
        )
    return text, blocks


def reply(incident: Mapping[str, Any], event: str, detail: str, mentions: Sequence[str]) -> str:
    """One thread reply for one incident event, in plain words.

    ``mentions`` are the agent's own markup (``<@U…>`` of the people it tells) and stay live;
    ``detail`` and the incident's summary are escaped.
    """
    people = " ".join(mentions)
    said = escape(detail)
    if event == "nudged":
        return f"{people} {said}. Buttons above: I fixed it, Snooze, This is expected."
    if event == "escalated":
        return f"{said}."  # the people told get a first message of their own
    if event == "reopened":
        return f"{people} failing again after it was resolved: {escape(incident['summary'])}"
    if event == "resolved":
        return f":white_check_mark: Resolved: {said}. Closing incident #{incident['id']}."
    return f"{event.replace('_', ' ').capitalize()}: {said}" if detail else escape(event)
