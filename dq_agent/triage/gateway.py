"""The tool gateway: everything a language model may see or do, behind the same policy.

The model never gets a connection, a credential or a raw record: it calls these tools, and
the gateway answers from the state store, with the columns named in ``llm.redact_columns``
replaced by ``[redacted]``: under their names, and wherever their values appear, in a check's
message, in value counts' keys, in record keys. It can *propose* a correction, which goes
through the same guardrails as the agent's own proposals (allow-list, magnitude, read-only
mode), only for a record and column the incident is about and only with a value of the
field's type; only an owner's approval, or the deterministic auto-correct rule, ever writes.
The reviewer's conversations are each bound to one incident. The MCP server offers the same
tools to people, for any incident.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
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
    """Answers tool calls for one agent, against its project and state store.

    Bound to an incident (``incident=``), as each of the reviewer's conversations is, it
    answers only about that incident: a call naming another is refused. Unbound (the MCP
    server, for a person choosing what to look at), it answers about any incident, under the
    same policy.
    """

    def __init__(
        self,
        project: Project,
        store: Store,
        clock: Callable[[], datetime],
        *,
        env: Mapping[str, str] | None = None,
        actor: str = "llm",
        incident: int | None = None,
    ) -> None:
        self.project = project
        self.store = store
        self.clock = clock
        self.env = env
        # Who is behind the calls, kept with what they record: "llm: <model>", "mcp".
        self.actor = actor
        self.incident = incident
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
        wanted = arguments["incident_id"]
        if isinstance(wanted, bool) or not isinstance(wanted, int):
            raise ToolRefused(f"incident_id must be an integer, not {_shown(wanted)}")
        if self.incident is not None and wanted != self.incident:
            self.refused.append(f"incident {wanted}: out of scope")
            raise ToolRefused(
                f"this conversation is about incident {self.incident} only: incident {wanted} "
                "cannot be read or changed from it"
            )
        incident = self.store.incident(wanted, events=False)
        if incident is None:
            raise ToolRefused(f"no incident {wanted}")
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
            "evidence": self.redacted(incident, incident.get("evidence") or {}),
        }
        return json.dumps(shown, default=str)

    def _tool_read_runbook(self, arguments: Mapping[str, Any]) -> str:
        incident = self._incident(arguments)
        suite = self.project.suites.get(incident["suite"])
        return (suite.runbook if suite else "").strip() or "(the suite has no runbook)"

    def _tool_read_past_incidents(self, arguments: Mapping[str, Any]) -> str:
        incident = self._incident(arguments)
        return json.dumps(self.redacted(incident, self.store.similar(incident)), default=str)

    def redacted(self, incident: Mapping[str, Any], value: Any) -> Any:
        """``value``, said about ``incident``, with redacted and secret-looking columns hidden:
        under their own names, and wherever one of their values appears, however deep, in
        text and in keys."""
        return _Redaction(self._is_redacted, self._private_values(incident)).apply(value)

    def _is_redacted(self, name: str) -> bool:
        lowered = name.lower()
        return lowered in self.redact or any(word in lowered for word in _SECRET_WORDS)

    def _private_values(self, incident: Mapping[str, Any]) -> list[Any]:
        """The values of redacted columns that the incident's evidence holds."""
        evidence = incident.get("evidence") or {}
        findings = [f for f in evidence.get("findings") or [] if isinstance(f, Mapping)]
        values: list[Any] = []
        for finding in findings:
            key = finding.get("key")
            key = key if isinstance(key, Mapping) else {}
            if self._is_redacted(str(finding.get("column") or "")):
                # A value check's findings are keyed by the value itself.
                values += [finding.get("observed"), finding.get("proposed"), key.get("value")]
            values += [v for k, v in key.items() if self._is_redacted(str(k))]
        columns = self._check_columns(incident) | {str(f.get("column") or "") for f in findings}
        if any(self._is_redacted(c) for c in columns if c):
            values += _observed_values(evidence.get("observed") or {})
        return values

    def _check_columns(self, incident: Mapping[str, Any]) -> set[str]:
        """The columns the incident's check is about, as its configuration names them."""
        suite = self.project.suites.get(incident["suite"])
        spec = (
            next((c for c in suite.checks if c.name == incident["check"]), None) if suite else None
        )
        if spec is None:
            return set()
        args = spec.args.model_dump() if spec.args is not None else {}
        return _named_columns(args) | _named_columns(spec.expectation_kwargs)

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
        value = arguments["value"]
        wrong = _type_problem(finding.get("observed"), value)
        if wrong is not None:
            self.refused.append(f"{key} {column}: {wrong}")
            raise ToolRefused(f"the policy refuses this proposal: {column} {wrong}")
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
            new=value,
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


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _type_problem(old: Any, new: Any) -> str | None:
    """Why ``new`` cannot replace ``old`` in a field, or None: a proposal keeps the field's
    type, and a number is a finite one (the guard's magnitude limit only means anything then).
    """
    if isinstance(new, dict | list) or new is None:
        return f"must be a single value, not {_shown(new)}"
    if isinstance(old, bool):
        return None if isinstance(new, bool) else f"must be true or false, not {_shown(new)}"
    numeric = isinstance(old, int | float)
    if numeric and (isinstance(new, bool) or not isinstance(new, int | float)):
        return f"must be a number, like the value it replaces, not {_shown(new)}"
    if isinstance(new, float) and not math.isfinite(new):
        return f"must be a finite number, not {_shown(new)}"
    if isinstance(old, str) and not isinstance(new, str):
        return f"must be text, like the value it replaces, not {_shown(new)}"
    return None


# Check arguments that name columns; ``peers`` holds a ``group_by`` of its own.
_COLUMN_ARGS = frozenset({"column", "group_by", "column_A", "column_B", "column_list"})


def _named_columns(args: Mapping[str, Any]) -> set[str]:
    names: set[str] = set()
    for name, value in args.items():
        if name == "peers" and isinstance(value, Mapping):
            names |= _named_columns(value)
        elif name in _COLUMN_ARGS:
            items = value if isinstance(value, list | tuple) else [value]
            names |= {item for item in items if isinstance(item, str)}
    return names


def _observed_values(observed: Mapping[str, Any]) -> list[Any]:
    """What a check on a redacted column observed that may be that column's values: its one
    observed value, the keys of value counts, the items of value lists and of groups."""
    found: list[Any] = [observed.get("observed_value")]
    for value in observed.values():
        if isinstance(value, Mapping):
            found += list(value)
        elif isinstance(value, list):
            for item in value:
                if isinstance(item, Mapping):
                    found += [v for k, v in item.items() if k == "value" or isinstance(v, str)]
                else:
                    found.append(item)
    return found


def _number_forms(number: int | float) -> set[str]:
    """How a number may have been written in a message: 1000000, 1,000,000, 1000000.0."""
    forms = {str(number), f"{number:,}"}
    if isinstance(number, int) or number.is_integer():
        whole = int(number)
        forms |= {str(whole), f"{whole:,}", str(float(whole))}
    return forms


def _token(text: str) -> str:
    """``text`` as a regular expression matching it where it stands whole, not inside a
    longer word or number."""
    pattern = re.escape(text)
    if re.match(r"\w", text):
        pattern = r"(?<!\w)(?<!\d[.,])" + pattern
    if re.search(r"\w$", text):
        pattern += r"(?!\w)(?![.,]\d)"
    return pattern


def _flat(values: Iterable[Any]) -> Iterator[Any]:
    """The single values in ``values``, lists and mappings opened (a row is its cells)."""
    for value in values:
        if isinstance(value, Mapping):
            yield from _flat(value.values())
        elif isinstance(value, list | tuple | set):
            yield from _flat(value)
        else:
            yield value


class _Redaction:
    """Hides redacted columns by name, and the given values of them wherever they appear: in
    text, as numbers and in the keys of mappings."""

    def __init__(self, is_redacted: Callable[[str], bool], values: Iterable[Any]) -> None:
        self.is_redacted = is_redacted
        self.numbers: set[int | float] = set()
        texts: set[str] = set()
        for value in _flat(values):
            if value is None or isinstance(value, bool):
                continue
            if isinstance(value, int | float):
                if math.isfinite(value):
                    self.numbers.add(value)
                    texts |= _number_forms(value)
            elif str(value).strip():
                texts.add(str(value).strip())
        # Longest first: a value that contains another is hidden whole.
        ordered = sorted(texts, key=len, reverse=True)
        self.pattern = re.compile("|".join(map(_token, ordered)), re.IGNORECASE) if texts else None

    def text(self, text: str) -> str:
        return self.pattern.sub(REDACTED, text) if self.pattern else text

    def apply(self, value: Any, key: str = "") -> Any:
        if key and self.is_redacted(key):
            return REDACTED
        if isinstance(value, Mapping):
            hidden = self.is_redacted(str(value.get("column") or ""))
            shown: dict[str, Any] = {}
            for k, v in value.items():
                name = hidden_name = self.text(str(k))
                count = 1
                while name in shown:  # two values hidden under one name: keep both entries
                    count += 1
                    name = f"{hidden_name} ({count})"
                shown[name] = (
                    REDACTED if hidden and k in ("observed", "proposed") else self.apply(v, str(k))
                )
            return shown
        if isinstance(value, list | tuple):
            return [self.apply(v) for v in value]
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, int | float) and not isinstance(value, bool) and value in self.numbers:
            return REDACTED
        return value
