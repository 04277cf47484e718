"""An incident's page: what failed, the evidence, fixes waiting, the Slack thread, history."""

from __future__ import annotations

from collections.abc import Mapping
from html import escape
from typing import Any

from dq_agent.config.loader import Project
from dq_agent.escalate import messages
from dq_agent.store import Store
from dq_agent.store.ledger import RUNBOOK_FIX
from dq_agent.ui import pages


def render(project: Project, store: Store, incident_id: int, csrf: str | None) -> str | None:
    """An incident's page, or None when there is no such incident."""
    incident = store.incident(incident_id)
    if incident is None:
        return None
    evidence = incident.get("evidence") or {}
    observed = {
        k: v for k, v in (evidence.get("observed") or {}).items() if not isinstance(v, dict)
    }
    findings = pages.table(
        ["Record", "Column", "Observed", "Proposed", "Why"],
        (
            [
                pages.link(
                    messages.record_link(project, incident["suite"], f.get("key") or {}),
                    ", ".join(f"{k}={v}" for k, v in (f.get("key") or {}).items()),
                ),
                escape(f.get("column") or ""),
                pages.value(f.get("observed")),
                pages.value(f.get("proposed")) if f.get("proposed") is not None else "",
                escape(f.get("reason") or ""),
            ]
            for f in evidence.get("findings") or []
        ),
        empty="No record-level findings.",
    )
    chain = " → ".join(", ".join(step) for step in incident["chain"])
    buttons = ""
    if incident["status"] != "resolved":
        here = f"/incidents/{incident_id}"
        buttons = "".join(
            pages.form(here, label, csrf, {"action": verb}, style=style)
            for verb, label, style in (
                ("resolve", "Resolve", "primary"),
                ("snooze", "Snooze", ""),
                ("expected", "This is expected", ""),
            )
        )
    pending = [
        c
        for c in store.corrections(suite=incident["suite"], status="pending")
        if c.check == incident["check"]
    ]
    corrections = pages.table(
        ["#", "Suite / check", "Record", "Change", "Evidence", "By", "Status", ""],
        (
            pages.correction_row(
                c,
                pages.form(
                    f"/incidents/{incident_id}",
                    "Apply fix" if c.column == RUNBOOK_FIX else "Approve",
                    csrf,
                    {"action": "approve", "correction": c.id},
                    style="primary",
                )
                + pages.form(
                    f"/incidents/{incident_id}",
                    "Reject",
                    csrf,
                    {"action": "reject", "correction": c.id},
                    style="danger",
                ),
            )
            for c in pending
        ),
        empty="No corrections waiting for a decision.",
    )
    thread = pages.table(
        ["Sent", "To", "Kind", "Status", "Message"],
        (
            [
                pages.when(m.sent_at or m.created_at),
                escape(m.recipient),
                escape(m.kind),
                escape(m.status),
                escape(m.text),
            ]
            for m in store.outbox(incident_id=incident_id)
        ),
        empty="Nothing sent on Slack.",
    )
    similar = pages.table(
        ["Incident", "Check", "Resolved", "How"],
        (
            [
                f'<a href="/incidents/{s["id"]}">#{s["id"]}</a>',
                escape(f"{s['suite']} / {s['check']}"),
                pages.when(s.get("resolved_at")),
                escape(_resolution(s.get("resolution"))),
            ]
            for s in store.similar(incident)
        ),
        empty="No similar incidents resolved before.",
    )
    return (
        f'<div class="card"><p><strong>{escape(incident["suite"])} / '
        f"{escape(incident['check'])}</strong> · {escape(incident['status'])}</p>"
        f"<p>{escape(incident['summary'])}</p>"
        f"<p>Owners: {escape(', '.join(incident['owners']))}<br>Escalation: {escape(chain)}"
        f"<br>Reminders sent: {incident['nudges']} · opened {pages.when(incident['opened_at'])}"
        f"</p><p>{buttons}</p></div>"
        f"<h2>Evidence</h2><pre>{pages.value(observed)}</pre>{findings}"
        f"<h2>Corrections waiting</h2>{corrections}"
        f"<h2>Slack thread</h2>{thread}"
        f"<h2>History</h2>{pages.events(incident['events'])}"
        f"<h2>Similar incidents</h2>{similar}"
    )


def _resolution(resolution: Mapping[str, Any] | None) -> str:
    if not resolution:
        return ""
    return ", ".join(f"{k}: {v}" for k, v in resolution.items() if v is not None)
