"""dq-agent: an operational data-quality agent with human escalation."""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dq_agent.config import Project, load_project
    from dq_agent.engine import RunOptions, run_checks
    from dq_agent.errors import ConfigIssue, DqAgentError, SourceError, StoreError
    from dq_agent.results import CheckResult, Finding, SuiteResult
    from dq_agent.store import Store

# Where each public name lives. Each is imported when first asked for, so that importing one
# module of the package (an orchestrator loading dq_agent.integrations' provider) loads only
# what that module needs.
_PUBLIC = {
    "CheckResult": "dq_agent.results",
    "ConfigIssue": "dq_agent.errors",
    "DqAgentError": "dq_agent.errors",
    "Finding": "dq_agent.results",
    "Project": "dq_agent.config",
    "RunOptions": "dq_agent.engine",
    "SourceError": "dq_agent.errors",
    "Store": "dq_agent.store",
    "StoreError": "dq_agent.errors",
    "SuiteResult": "dq_agent.results",
    "load_project": "dq_agent.config",
    "run_checks": "dq_agent.engine",
}
__all__ = [
    "CheckResult",
    "ConfigIssue",
    "DqAgentError",
    "Finding",
    "Project",
    "RunOptions",
    "SourceError",
    "Store",
    "StoreError",
    "SuiteResult",
    "load_project",
    "run_checks",
]


def __getattr__(name: str) -> Any:
    where = _PUBLIC.get(name)
    if where is None:
        raise AttributeError(f"module 'dq_agent' has no attribute {name!r}")
    return getattr(import_module(where), name)
