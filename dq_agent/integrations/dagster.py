"""Dagster asset checks from dq-agent suites.

Every check of a suite becomes an asset check on the asset the suite watches, and one Dagster
step (a ``@multi_asset_check``) runs the suite once for all of them, as ``dq-agent check``
does: read-only, recorded in the project's state store so that baselines build up.

    import dagster as dg
    from dq_agent.integrations.dagster import dq_agent_asset_checks

    defs = dg.Definitions(
        assets=[orders],
        asset_checks=dq_agent_asset_checks("my-dq-project", {"orders": "orders"}),
    )
"""

# No ``from __future__ import annotations``: Dagster reads the type of a check's ``context``
# parameter at definition time, and refuses it as a string.
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeAlias

import dagster as dg

from dq_agent.config.loader import Project, load_project
from dq_agent.config.models import CheckSpec, Suite
from dq_agent.engine import REJECTED_CHECK
from dq_agent.errors import DqAgentError
from dq_agent.integrations.suites import check_once, refuse_invalid
from dq_agent.results import CheckResult, SuiteResult, to_jsonable

__all__ = ["AssetRef", "dq_agent_asset_checks"]

# What names the asset a suite's checks are on: a key, its string or path, or the asset itself.
AssetRef: TypeAlias = dg.AssetKey | str | Sequence[str] | dg.AssetsDefinition

# Metadata stays small: Dagster keeps every evaluation's metadata in its event log.
_FINDINGS_LISTED = 5
_TEXT_LIMIT = 1_000
_JSON_LIMIT = 2_000
# Dagster's names (of checks and of steps) allow these characters only.
_NOT_IN_A_NAME = re.compile(r"[^A-Za-z0-9_]+")


def dq_agent_asset_checks(
    project: Project | Path | str,
    suites: Mapping[str, AssetRef],
    *,
    blocking: bool = False,
) -> list[dg.AssetChecksDefinition]:
    """One ``@multi_asset_check`` per suite in ``suites`` (suite id → the asset it checks).

    ``project`` is a project folder or a loaded project. Each check of a suite is an asset
    check named after it (``freshness(updated_at)`` → ``freshness_updated_at``); a failing
    ``severity: warn`` check is a Dagster ``WARN``, any other an ``ERROR``. ``blocking``: a
    failing ``ERROR`` check stops the assets downstream of it in the same run. Raises
    :class:`DqAgentError` for a suite id the project does not have, a suite or ``dq-agent.yml``
    that is invalid, or two checks that would share a name on one asset.
    """
    loaded = project if isinstance(project, Project) else load_project(project)
    refuse_invalid(loaded, list(suites))
    taken: dict[dg.AssetCheckKey, str] = {}
    definitions = []
    for suite_id, asset in suites.items():
        suite = loaded.suites[suite_id]
        key = (
            asset.key
            if isinstance(asset, dg.AssetsDefinition)
            else dg.AssetKey.from_coercible(asset)
        )
        names = _check_names(suite, key, taken)
        definitions.append(_suite_checks(loaded, suite, key, names, blocking))
    return definitions


def _check_names(
    suite: Suite, asset: dg.AssetKey, taken: dict[dg.AssetCheckKey, str]
) -> dict[str, str]:
    """Each check's Dagster name, recorded in ``taken`` (asset check → whose it is)."""
    names: dict[str, str] = {}
    for check in suite.checks:
        name = _dagster_name(check.name)
        key = dg.AssetCheckKey(asset, name)
        owner = f"check {check.name!r} of suite {suite.suite!r}"
        if key in taken:
            raise DqAgentError(
                f"{owner} and {taken[key]} would both be asset check {name!r} on "
                f"{asset.to_user_string()}: give one of them another name: in its suite"
            )
        taken[key] = owner
        names[check.name] = name
    return names


def _dagster_name(text: str) -> str:
    return _NOT_IN_A_NAME.sub("_", text).strip("_") or "check"


def _suite_checks(
    project: Project,
    suite: Suite,
    asset: dg.AssetKey,
    names: Mapping[str, str],
    blocking: bool,
) -> dg.AssetChecksDefinition:
    specs = [
        dg.AssetCheckSpec(
            names[check.name],
            asset=asset,
            description=f"dq-agent suite {suite.suite}: {check.name} (severity: {check.severity})",
            blocking=blocking,
        )
        for check in suite.checks
    ]

    @dg.multi_asset_check(
        name=f"dq_agent_{_dagster_name(suite.suite)}",
        specs=specs,
        description=suite.description or f"dq-agent suite {suite.suite}",
        # A subset selected in Dagster still runs the whole suite (one scan), but reports
        # only the checks asked for.
        can_subset=True,
    )
    def run_suite(context: dg.AssetCheckExecutionContext) -> Iterator[dg.AssetCheckResult]:
        result = check_once(project, suite.suite)
        context.log.info(f"dq-agent suite {suite.suite}: {result.status}")
        selected = context.selected_asset_check_keys
        for check in suite.checks:
            if dg.AssetCheckKey(asset, names[check.name]) in selected:
                yield _evaluation(check, result, asset, names[check.name])

    return run_suite


def _evaluation(
    check: CheckSpec, result: SuiteResult, asset: dg.AssetKey, name: str
) -> dg.AssetCheckResult:
    """The check's evaluation: passed, its severity, and its evidence as small metadata."""
    outcome = next((c for c in result.checks if c.name == check.name), None)
    metadata: dict[str, dg.MetadataValue] = {"suite": dg.MetadataValue.text(result.suite)}
    if outcome is None:  # the suite could not run (its source, its store)
        error = result.error or "the suite did not evaluate this check"
        metadata["status"] = dg.MetadataValue.text("error")
        metadata["error"] = _text(error)
        return dg.AssetCheckResult(
            passed=False,
            asset_key=asset,
            check_name=name,
            severity=dg.AssetCheckSeverity.ERROR,
            metadata=metadata,
            description=_clip(error),
        )
    metadata |= _evidence(outcome)
    # The records the source could not type are a result of their own, with no asset check
    # of its own: every check of the suite tells it.
    rejected = next((c for c in result.checks if c.name == REJECTED_CHECK), None)
    if rejected is not None:
        metadata[REJECTED_CHECK] = _text(rejected.message)
    # A check that could not be evaluated (a missing column) is as bad as a failure.
    warn = check.severity == "warn" and outcome.status != "error"
    return dg.AssetCheckResult(
        passed=outcome.status == "pass",
        asset_key=asset,
        check_name=name,
        severity=dg.AssetCheckSeverity.WARN if warn else dg.AssetCheckSeverity.ERROR,
        metadata=metadata,
        description=_clip(outcome.message),
    )


def _evidence(outcome: CheckResult) -> dict[str, dg.MetadataValue]:
    findings = outcome.findings[:_FINDINGS_LISTED]
    evidence = {
        "status": dg.MetadataValue.text(outcome.status),
        "message": _text(outcome.message),
        "findings": dg.MetadataValue.int(len(outcome.findings)),
    }
    if outcome.observed:
        evidence["observed"] = _json(outcome.observed)
    if findings:
        evidence["finding keys"] = _json([f.key for f in findings])
    return evidence


def _clip(text: str, limit: int = _TEXT_LIMIT) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _text(text: str) -> dg.MetadataValue:
    return dg.MetadataValue.text(_clip(text))


def _json(value: Any) -> dg.MetadataValue:
    """``value`` as JSON metadata, or as clipped text when it is too long or not JSON."""
    plain = to_jsonable(value)
    try:
        text = json.dumps(plain, allow_nan=False, default=str)
    except ValueError:  # NaN or infinity, which JSON has no word for
        return _text(repr(plain))
    if len(text) > _JSON_LIMIT:
        return _text(text)
    return dg.MetadataValue.json(json.loads(text))
