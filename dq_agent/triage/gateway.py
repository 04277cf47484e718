"""The tool gateway: everything a language model may see or do, behind the same policy.

The model never gets a connection, a credential or a raw record: it calls these tools, and
the gateway answers from the state store, with the columns named in ``llm.redact_columns``
replaced by ``[redacted]``. It can *propose* a correction, which goes through the same
guardrails as the agent's own proposals (allow-list, magnitude, read-only mode) and only for a
record and column the incident is about; only an owner's approval, or the deterministic
auto-correct rule, ever writes. The MCP server offers the same tools to people.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from dq_agent.config.loader import Project
from dq_agent.errors import DqAgentError
from dq_agent.remedy.apply import propose
from dq_agent.remedy.guard import guard
from dq_agent.remedy.plan import Change
from dq_agent.store import Store
from dq_agent.triage.rules import ACTIONS, KINDS

REDACTED = "[redacted]"
# Values never shown to a model whatever redact_columns says: they look like credentials.
_SECRET_WORDS = ("password", "secret", "token", "api_key", "apikey", "session")


class ToolRefused(DqAgentError):
    """A tool call the policy does not allow; its message goes back to the model."""


def _schema(properties: dict[str, Any], required: Sequence[str]) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": list(required)}


TOOLS: list[dict[str, Any]] = [
    {
        "name": "read_evidence",
        "description": "What failed in an incident: the check, its message, observed values "
        "and sample records (some columns redacted).",
        "input_schema": _schema({"incident_id": {"type": "integer"}}, ["incident_id"]),
    },
    {
        "name": "read_runbook",
        "description": "The runbook of the incident's suite: what its owners wrote down.",
        "input_schema": _schema({"incident_id": {"type": "integer"}}, ["incident_id"]),
    },
    {
        "name": "read_past_incidents",
        "description": "How the most similar past incidents ended: how, by whom, how long.",
        "input_schema": _schema({"incident_id": {"type": "integer"}}, ["incident_id"]),
    },
    {
        "name": "classify",
        "description": "Say what kind of failure this is when the rules could not: one of "
        + ", ".join(KINDS)
        + ".",
        "input_schema": _schema(
            {
                "incident_id": {"type": "integer"},
                "kind": {"type": "string", "enum": list(KINDS)},
                "reason": {"type": "string"},
            },
            ["incident_id", "kind", "reason"],
        ),
    },
    {
        "name": "propose_correction",
        "description": "Propose a new value for one column of one record of the incident. "
        "An owner decides; nothing is written by proposing.",
        "input_schema": _schema(
            {
                "incident_id": {"type": "integer"},
                "key": {"type": "object"},
                "column": {"type": "string"},
                "value": {},
                "reason": {"type": "string"},
            },
            ["incident_id", "key", "column", "value", "reason"],
        ),
    },
    {
        "name": "draft_message",
        "description": "Write the short message the data's owner will read about the incident.",
        "input_schema": _schema(
            {"incident_id": {"type": "integer"}, "text": {"type": "string"}},
            ["incident_id", "text"],
        ),
    },
]


class Gateway:
    """Answers tool calls for one agent, against its project and state store."""

    def __init__(
        self,
        project: Project,
        store: Store,
        clock: Callable[[], datetime],
        *,
        env: Mapping[str, str] | None = None,
        actor: str = "llm",
    ) -> None:
        self.project = project
        self.store = store
        self.clock = clock
        self.env = env
        # Who is behind the calls, kept with what they record: "llm: <model>", "mcp".
        self.actor = actor
        llm = project.settings.llm
        self.redact = {c.lower() for c in (llm.redact_columns if llm else [])}
        # What the model said, per incident, for the agent to use after the conversation.
        self.classified: dict[int, tuple[str, str]] = {}
        self.drafts: dict[int, str] = {}
        self.proposed: list[int] = []
        self.refused: list[str] = []

    def call(self, name: str, arguments: Mapping[str, Any]) -> str:
        """One tool call; the answer (or why it was refused) as text for the model."""
        handler = getattr(self, f"_tool_{name}", None)
        if handler is None or name not in {t["name"] for t in TOOLS}:
            raise ToolRefused(f"there is no tool {name!r}")
        try:
            return str(handler(arguments))
        except (KeyError, TypeError, ValueError) as exc:
            raise ToolRefused(f"bad arguments for {name}: {exc}") from exc

    # -- reading ---------------------------------------------------------------------------

    def _incident(self, arguments: Mapping[str, Any]) -> dict[str, Any]:
        incident = self.store.incident(int(arguments["incident_id"]), events=False)
        if incident is None:
            raise ToolRefused(f"no incident {arguments['incident_id']}")
        return incident

    def _tool_read_evidence(self, arguments: Mapping[str, Any]) -> str:
        incident = self._incident(arguments)
        shown = {
            "incident": incident["id"],
            "suite": incident["suite"],
            "check": incident["check"],
            "dataset": incident["dataset"],
            "status": incident["status"],
            "failures": incident["failures"],
            "evidence": self.redacted(incident.get("evidence") or {}),
        }
        return json.dumps(shown, default=str)

    def _tool_read_runbook(self, arguments: Mapping[str, Any]) -> str:
        incident = self._incident(arguments)
        suite = self.project.suites.get(incident["suite"])
        return (suite.runbook if suite else "").strip() or "(the suite has no runbook)"

    def _tool_read_past_incidents(self, arguments: Mapping[str, Any]) -> str:
        incident = self._incident(arguments)
        return json.dumps(self.store.similar(incident), default=str)

    def redacted(self, value: Any, key: str = "") -> Any:
        """``value`` with redacted and secret-looking columns hidden, however deep."""
        lowered = key.lower()
        if lowered in self.redact or any(word in lowered for word in _SECRET_WORDS):
            return REDACTED
        if isinstance(value, Mapping):
            column = str(value.get("column") or "").lower()
            hidden = column in self.redact
            return {
                k: (REDACTED if hidden and k in ("observed", "proposed") else self.redacted(v, k))
                for k, v in value.items()
            }
        if isinstance(value, list):
            return [self.redacted(v) for v in value]
        return value

    # -- acting ------------------------------------------------------------------------------

    def _tool_classify(self, arguments: Mapping[str, Any]) -> str:
        incident = self._incident(arguments)
        kind = str(arguments["kind"])
        if kind not in KINDS:
            raise ToolRefused(f"kind must be one of {', '.join(KINDS)}")
        reason = str(arguments["reason"])[:500]
        self.classified[incident["id"]] = (kind, reason)
        triage = {"kind": kind, "reason": f"{self.actor}: {reason}", "action": ACTIONS[kind]}
        self.store.annotate_incident(incident["id"], {"triage": {**triage, "by": self.actor}})
        return f"recorded: incident {incident['id']} is {kind}"

    def _tool_draft_message(self, arguments: Mapping[str, Any]) -> str:
        incident = self._incident(arguments)
        draft = str(arguments["text"]).strip()[:1500]
        self.drafts[incident["id"]] = draft
        self.store.annotate_incident(incident["id"], {"draft": draft})
        return "recorded: the owner will read this draft"

    def _tool_propose_correction(self, arguments: Mapping[str, Any]) -> str:
        """A proposal, only for a record and column the incident is about, within the policy."""
        incident = self._incident(arguments)
        suite = self.project.suites.get(incident["suite"])
        if suite is None:
            raise ToolRefused(f"suite {incident['suite']} is not in this project")
        key = {str(k): v for k, v in dict(arguments["key"]).items()}
        column = str(arguments["column"])
        findings = (incident.get("evidence") or {}).get("findings") or []
        finding = next(
            (f for f in findings if f.get("key") == key and f.get("column") == column), None
        )
        if finding is None:
            self.refused.append(f"{key} {column}: not a finding of this incident")
            raise ToolRefused(
                f"{column} of {key} is not among this incident's findings: only those can be "
                "proposed"
            )
        if column.lower() in self.redact:
            self.refused.append(f"{key} {column}: redacted")
            raise ToolRefused(f"{column} is redacted: it cannot be proposed")
        source = suite.source
        connector = self.project.connectors[source.connector]
        change = Change(
            suite=suite.suite,
            check=incident["check"],
            connector=source.connector,
            object=incident["dataset"].partition("/")[2],
            key=key,
            column=column,
            old=finding.get("observed"),
            new=arguments["value"],
            evidence=(f"the LLM reviewer: {str(arguments['reason'])[:300]}",),
            reason=str(arguments["reason"])[:300],
            confidence=None,
            action="propose",
        )
        verdict = guard(
            [change],
            suite,
            self.project.settings.corrections,
            connector.type,
            env=self.env,
            count_limit=False,
        )
        if verdict.refused:
            why = verdict.refused[0][1]
            self.refused.append(f"{key} {column}: {why}")
            raise ToolRefused(f"the policy refuses this proposal: {why}")
        # In the ledger, who proposed: the optional LLM reviewer, or a person through MCP.
        by = "mcp" if self.actor == "mcp" else "llm"
        outcome = propose(self.store, change, self.clock(), detail=change.reason, by=by)
        if outcome.correction_id is not None:
            self.proposed.append(outcome.correction_id)
        return f"proposed as correction {outcome.correction_id}: an owner decides"
