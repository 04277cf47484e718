"""Guardrails: what may be written at all, and how much at once. A deterministic policy."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from dq_agent.config.models import CORRECTABLE_TYPES, CorrectionsSettings, Suite
from dq_agent.remedy.plan import Change

READ_ONLY_ENV = "DQ_AGENT_READ_ONLY"


@dataclass
class Verdict:
    allowed: list[Change] = field(default_factory=list)
    refused: list[tuple[Change, str]] = field(default_factory=list)


def switched_off(
    suite: Suite,
    settings: CorrectionsSettings,
    connector_type: str,
    *,
    env: Mapping[str, str] | None = None,
) -> str | None:
    """Why nothing may be written to this suite's source at all, or None if writes may go."""
    env = os.environ if env is None else env
    if env.get(READ_ONLY_ENV) == "1":
        return f"read-only mode ({READ_ONLY_ENV}=1)"
    enabled = suite.corrections.enabled
    if not (settings.enabled if enabled is None else enabled):
        return "corrections are disabled (corrections: enabled: false)"
    if connector_type not in CORRECTABLE_TYPES:
        only = ", ".join(CORRECTABLE_TYPES)
        return f"{connector_type} sources are not corrected (only {only})"
    return None


def guard(
    changes: Sequence[Change],
    suite: Suite,
    settings: CorrectionsSettings,
    connector_type: str,
    *,
    env: Mapping[str, str] | None = None,
    count_limit: bool = True,
) -> Verdict:
    """Split ``changes`` into those the policy allows and those it refuses, with why."""
    verdict = Verdict()
    off = switched_off(suite, settings, connector_type, env=env)
    if off is not None:
        verdict.refused.extend((change, off) for change in changes)
        return verdict

    magnitude = suite.corrections.max_magnitude or settings.max_magnitude
    candidates: list[Change] = []
    for change in changes:
        if not _allowed(change, settings):
            verdict.refused.append(
                (
                    change,
                    f"{change.object}.{change.column} on {change.connector} is not in "
                    "corrections.allow",
                )
            )
        elif _magnitude(change) > magnitude:
            verdict.refused.append(
                (change, f"a change of more than 10^{magnitude} needs a person (max_magnitude)")
            )
        else:
            candidates.append(change)

    limit = suite.corrections.max_per_run
    limit = settings.max_per_run if limit is None else limit
    if count_limit and len(candidates) > limit:
        reason = (
            f"{len(candidates)} corrections in one run exceed max_per_run ({limit}): "
            "nothing is written, the owner decides"
        )
        verdict.refused.extend((change, reason) for change in candidates)
        return verdict
    verdict.allowed.extend(candidates)
    return verdict


def _allowed(change: Change, settings: CorrectionsSettings) -> bool:
    return any(
        rule.connector == change.connector
        and (rule.object is None or rule.object == change.object)
        and change.column in rule.fields
        for rule in settings.allow
    )


def _magnitude(change: Change) -> float:
    """How many powers of ten lie between the old and the new value (0 for non-numbers)."""
    try:
        old, new = abs(float(change.old)), abs(float(change.new))
    except (TypeError, ValueError):
        return 0.0
    if old == 0 or new == 0:
        return math.inf if old != new else 0.0
    return abs(math.log10(new / old))
