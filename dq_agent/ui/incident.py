"""An incident's page: what failed, the evidence, fixes waiting, the Slack thread, history."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from markupsafe import Markup

from dq_agent.config.loader import Project
from dq_agent.escalate import messages
from dq_agent.remedy.runner import approval_refusal
from dq_agent.store import Store
from dq_agent.store.ledger import Correction
from dq_agent.store.models import OutboxMessage
from dq_agent.ui import slackview, templating
from dq_agent.ui.templating import moment, plain


@dataclass(frozen=True)
class Finding:
    """A record the check found wrong, with the link to it in its source system."""

    record: str
    link: str | None
    column: str
    observed: str
    proposed: str
    reason: str


@dataclass(frozen=True)
class Pending:
    """A correction waiting for a decision, and why approving it could not write (if so)."""

    correction: Correction
    refused: str | None


@dataclass(frozen=True)
class Said:
    """A Slack message as people read it."""

    at: datetime
    to: str
    message: Sequence[slackview.Node]
    note: str | None  # how sending it went, when it was not sent


def render(
    project: Project,
    store: Store,
    incident_id: int,
    csrf: str | None,
    names: Callable[[str], str | None] = lambda _: None,
) -> Markup | None:
    """An incident's page, or None when there is no such incident; ``names`` gives a Slack
    user's name from their id (None when unknown) for the thread's mentions."""
    incident = store.incident(incident_id)
    if incident is None:
        return None
    evidence = incident.get("evidence") or {}
    if incident["status"] == "resolved":
        csrf = None  # nothing can be done on a resolved incident: no buttons
    findings = [
        Finding(
            record=", ".join(f"{k}={v}" for k, v in (f.get("key") or {}).items()),
            link=messages.record_link(project, incident["suite"], f.get("key") or {}),
            column=f.get("column") or "",
            observed=plain(f.get("observed")),
            proposed=plain(f["proposed"]) if f.get("proposed") is not None else "",
            reason=f.get("reason") or "",
        )
        for f in evidence.get("findings") or []
    ]
    pending = [
        Pending(c, approval_refusal(project, c) if csrf is not None else None)
        for c in store.corrections(suite=incident["suite"], status="pending")
        if c.check == incident["check"]
    ]
    return templating.render(
        "incident.html",
        incident=incident,
        here=f"/incidents/{incident_id}",
        csrf=csrf,
        # All of them: the incident's own count starts again at each step of the chain.
        reminders=sum(e["event"] == "nudged" for e in incident["events"]),
        chain=" → ".join(", ".join(step) for step in incident["chain"]),
        measured=_measured(evidence.get("observed") or {}),
        findings=findings,
        pending=pending,
        thread=_thread(incident, store.outbox(incident_id=incident_id), names),
        similar=store.similar(incident, others_only=True),
    )


def _measured(observed: Mapping[str, Any]) -> list[tuple[str, list[str]]]:
    """What the check measured, one figure per row (its lines), formatted as the rest of the
    page."""
    return [
        (name.replace("_", " "), _figure(v))
        for name, v in observed.items()
        if v is not None and v != {} and v != []
    ]


def _figure(item: Any) -> list[str]:
    """A figure's lines: a moment as the page shows moments, a mapping one line per key."""
    if isinstance(item, str):
        try:
            return [moment(datetime.fromisoformat(item)) if "T" in item else item]
        except ValueError:
            return [item]
    if isinstance(item, Mapping):
        lines: list[str] = []
        for key, value in item.items():
            first, *rest = _figure(value) or [""]
            lines += [f"{key}: {first}", *rest]
        return lines
    return [plain(item)]


def _thread(
    incident: Mapping[str, Any],
    sent: Sequence[OutboxMessage],
    names: Callable[[str], str | None],
) -> list[Said]:
    """The Slack messages as people read them: the first message as it stands now (it is
    kept current), then each reply; the updates that keep it current are not messages."""
    said = [m for m in sent if m.kind != "update"]
    # Roots and FYIs hold plain text (their Slack markup is made as they are sent).
    texts = [m.text if m.kind in ("reply", "digest") else messages.escape(m.text) for m in said]
    known = {uid: name for uid in slackview.mentioned(texts) if (name := names(uid))}
    thread = []
    for m, text in zip(said, texts, strict=True):
        if m.kind == "root":
            text = f"*{messages.title(incident)}*"
        note = None
        if m.status != "sent":
            note = m.status + (f": {m.error}" if m.error else "")
        thread.append(
            Said(m.sent_at or m.created_at, m.recipient, slackview.parse(text, known), note)
        )
    return thread
