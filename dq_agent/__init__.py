"""dq-agent: an operational data-quality agent with human escalation."""

from dq_agent.config import Project, load_project
from dq_agent.engine import RunOptions, run_checks
from dq_agent.errors import ConfigIssue, DqAgentError, SourceError, StoreError
from dq_agent.results import CheckResult, Finding, SuiteResult
from dq_agent.store import Store

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
