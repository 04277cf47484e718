"""Rule-based triage, always available: transient, infrastructure, code, schema change,
semantic change, data.

Each kind has a default action. A suite's runbook can override the rules with lines such as
``when "lock wait timeout": transient`` (the text is looked for in the failure's message,
case-insensitively); the first matching line wins.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from dq_agent.config.models import Suite
from dq_agent.results import CheckResult, SuiteResult

Kind = Literal["transient", "infrastructure", "code", "schema_change", "semantic_change", "data"]
KINDS: tuple[Kind, ...] = (
    "transient",
    "infrastructure",
    "code",
    "schema_change",
    "semantic_change",
    "data",
)
# Checks whose failure means the source changed what its values mean (a currency or unit mixed
# in, a new category, broken references): never a slip to correct.
SEMANTIC_CHECKS = frozenset(
    {"distribution_shift", "column_anomaly", "new_values", "accepted_values", "reference"}
)

ACTIONS: dict[Kind, str] = {
    "transient": "try again with backoff; tell people only if it keeps failing",
    "infrastructure": "tell the owners with the error: credentials, permissions, quota or host",
    "code": "tell the owners: the suite or its query refers to something that is not there",
    "schema_change": "tell the source's owners: columns were added, removed or retyped upstream",
    "semantic_change": "never corrected: tell the source's owners what changed upstream, with "
    "the evidence and the group that explains it",
    "data": "correct clear slips in the source; ask the data's owner about the rest",
}

# A host that does not answer is infrastructure, but, like a transient fault, often passes.
UNREACHABLE = "an unreachable host"
# Looked for in error messages, most specific first: (kind, pattern, what it means).
_RULE_TEXT: tuple[tuple[Kind, str, str], ...] = (
    ("transient", r"timed? ?out|timeout", "a timeout"),
    (
        "transient",
        r"\b429\b|rate.?limit|too many requests|REQUEST_LIMIT_EXCEEDED",
        "a rate limit",
    ),
    ("transient", r"\b50[0-4]\b|service unavailable|bad gateway|overloaded", "a server error"),
    (
        "transient",
        r"connection (reset|aborted)|server closed the connection|broken pipe",
        "a dropped connection",
    ),
    ("transient", r"deadlock|could not serialize|temporarily unavailable", "a busy database"),
    (
        "infrastructure",
        r"authenticat|INVALID_SESSION_ID|invalid_auth|password|credential|"
        r"token (expired|revoked)|\b401\b",
        "credentials",
    ),
    (
        "infrastructure",
        r"permission|denied|insufficient|not authori[sz]ed|forbidden|\b403\b",
        "permissions",
    ),
    ("infrastructure", r"quota|storage limit|disk full|no space left", "a quota"),
    (
        "infrastructure",
        r"could not translate host|name or service not known|"
        r"connection refused|no route to host|unreachable|unable to open database",
        UNREACHABLE,
    ),
    (
        "code",
        r"syntax error|no such column|column .* does not exist|no such table|"
        r"relation .* does not exist|not in .*; available|unknown (field|column)|"
        r"INVALID_FIELD|MALFORMED_QUERY",
        "something the suite refers to is not there",
    ),
)
_ERROR_RULES = tuple(
    (kind, re.compile(pattern, re.IGNORECASE), meaning) for kind, pattern, meaning in _RULE_TEXT
)
_OVERRIDE = re.compile(
    r"""^\s*(?:when|if)\s+["']([^"']+)["']\s*(?::|->|→)\s*(""" + "|".join(KINDS) + r""")\b""",
    re.IGNORECASE | re.MULTILINE,
)


@dataclass(frozen=True)
class Triage:
    """What kind of failure it is (None: the rules cannot tell), why, and what to do."""

    kind: Kind | None
    reason: str
    # Whether the failure often passes on its own (a timeout, a 5xx, a host that does not
    # answer): people hear of it only once it persists.
    may_pass: bool = False

    @property
    def action(self) -> str:
        return ACTIONS[self.kind] if self.kind else "tell the owners; the rules cannot tell more"

    def to_json(self) -> dict[str, str | None]:
        return {"kind": self.kind, "reason": self.reason, "action": self.action}


def classify_error(message: str, transient: bool | None = None, runbook: str = "") -> Triage:
    """A suite or check that could not run, from its error message."""
    override = _override(message, runbook)
    if override is not None:
        return override
    for kind, pattern, meaning in _ERROR_RULES:
        if pattern.search(message):
            may_pass = kind == "transient" or meaning == UNREACHABLE
            return Triage(kind, f"{meaning}: {message}", may_pass)
    if transient is True:
        return Triage("transient", f"the source said it may pass: {message}", True)
    return Triage(None, message)


def classify(suite: Suite, result: SuiteResult, check: CheckResult | None = None) -> Triage:
    """One failure of a suite: the suite's own error, or one of its checks."""
    if check is None:
        return classify_error(result.error or result.status, result.transient, suite.runbook)
    if check.status == "error":
        return classify_error(check.message, None, suite.runbook)
    override = _override(check.message, suite.runbook)
    if override is not None:
        return override
    if check.type == "schema":
        drift = check.observed.get("drift") or {}
        if check.observed.get("missing") or any(
            drift.get(k) for k in ("added", "removed", "retyped")
        ):
            return Triage("schema_change", check.message)
    if check.type in SEMANTIC_CHECKS:
        return Triage("semantic_change", check.message)
    return Triage("data", check.message)


def _override(message: str, runbook: str) -> Triage | None:
    for text, kind in _OVERRIDE.findall(runbook):
        if text.lower() in message.lower():
            found = next(k for k in KINDS if k == kind.lower())
            reason = f"the runbook says {text!r} is {found}: {message}"
            return Triage(found, reason, found == "transient")
    return None
