"""An incident's page: what failed, the evidence, fixes waiting, the Slack thread, history."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from html import escape
from typing import Any

from dq_agent.config.loader import Project
from dq_agent.escalate import messages
from dq_agent.remedy.runner import approval_refusal
from dq_agent.store import Store
from dq_agent.store.ledger import RUNBOOK_FIX, Correction
from dq_agent.store.models import OutboxMessage
from dq_agent.ui import pages, slackview


def render(
    project: Project,
    store: Store,
    incident_id: int,
    csrf: str | None,
    names: Callable[[str], str | None] = lambda _: None,
) -> str | None:
    """An incident's page, or None when there is no such incident; ``names`` gives a Slack
    user's name from their id (None when unknown) for the thread's mentions."""
    incident = store.incident(incident_id)
    if incident is None:
        return None
    evidence = incident.get("evidence") or {}
    if incident["status"] == "resolved":
        csrf = None  # nothing can be done on a resolved incident: no buttons
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
    # All of them: the incident's own count starts again at each step of the chain.
    reminders = sum(e["event"] == "nudged" for e in incident["events"])
    chain = " → ".join(", ".join(step) for step in incident["chain"])
    here = f"/incidents/{incident_id}"
    buttons = "".join(  # none on a resolved incident: its csrf is None
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
                _approve_button(project, c, f"/incidents/{incident_id}", csrf)
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
    thread = _thread(incident, store.outbox(incident_id=incident_id), names)
    similar = pages.table(
        ["Incident", "Check", "Resolved", "How"],
        (
            [
                f'<a href="/incidents/{s["id"]}">#{s["id"]}</a>',
                escape(f"{s['suite']} / {s['check']}"),
                pages.when(s.get("at")),
                escape(str(s.get("how") or "")),
            ]
            for s in store.similar(incident, others_only=True)
        ),
        empty="No similar incidents resolved before.",
    )
    return (
        f'<div class="card"><p><strong>{escape(incident["suite"])} / '
        f"{escape(incident['check'])}</strong> · {escape(incident['status'])}</p>"
        f"<p>{escape(incident['summary'])}</p>"
        f"<p>Owners: {escape(', '.join(incident['owners']))}<br>Escalation: {escape(chain)}"
        f"<br>Reminders sent: {reminders} · opened {pages.when(incident['opened_at'])}"
        f"</p><p>{buttons}</p></div>"
        f"<h2>Evidence</h2>{_evidence(evidence.get('observed') or {})}{findings}"
        f"<h2>Corrections waiting</h2>{corrections}"
        f"<h2>Slack thread</h2>{thread}"
        f"<h2>History</h2>{pages.events(incident['events'])}"
        f'<section id="similar"><h2>Similar incidents</h2>{similar}</section>'
    )


def _approve_button(project: Project, c: Correction, here: str, csrf: str | None) -> str:
    """Approve (Apply fix) where approving can write; otherwise why it cannot."""
    if csrf is None:
        return ""
    refused = approval_refusal(project, c)
    if refused is not None:
        return f'<span class="muted">{escape(refused)}</span> '
    label = "Apply fix" if c.column == RUNBOOK_FIX else "Approve"
    fields = {"action": "approve", "correction": c.id}
    return pages.form(here, label, csrf, fields, style="primary")


def _evidence(observed: Mapping[str, Any]) -> str:
    """What the check measured, one row per figure, formatted as the rest of the page."""
    rows = [
        [escape(name.replace("_", " ")), _figure(v)]
        for name, v in observed.items()
        if v is not None and v != {} and v != []
    ]
    return pages.table(["Measured", "Value"], rows, empty="The check recorded no figures.")


def _figure(item: Any) -> str:
    if isinstance(item, str):
        try:
            return pages.when(datetime.fromisoformat(item)) if "T" in item else escape(item)
        except ValueError:
            return escape(item)
    if isinstance(item, Mapping):
        return "<br>".join(f"{escape(str(k))}: {_figure(v)}" for k, v in item.items())
    return pages.value(item)


def _thread(
    incident: Mapping[str, Any],
    sent: Sequence[OutboxMessage],
    names: Callable[[str], str | None],
) -> str:
    """The Slack messages as people read them: the first message as it stands now (it is
    kept current), then each reply; the updates that keep it current are not messages."""
    said = [m for m in sent if m.kind != "update"]
    # Roots and FYIs hold plain text (their Slack markup is made as they are sent).
    texts = [m.text if m.kind in ("reply", "digest") else messages.escape(m.text) for m in said]
    known = {uid: name for uid in slackview.mentioned(texts) if (name := names(uid))}
    rows = []
    for m, text in zip(said, texts, strict=True):
        if m.kind == "root":
            text = f"*{messages.title(incident)}*"
        shown = slackview.to_html(text, known)
        if m.status != "sent":
            why = f": {m.error}" if m.error else ""
            shown += f'<br><span class="muted">{escape(m.status + why)}</span>'
        rows.append([pages.when(m.sent_at or m.created_at), escape(m.recipient), shown])
    return pages.table(["Sent", "To", "Message"], rows, empty="Nothing sent on Slack.")
