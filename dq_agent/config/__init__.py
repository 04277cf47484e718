"""Project configuration: YAML files parsed into frozen, typed models."""

from dq_agent.config.durations import format_duration, parse_duration
from dq_agent.config.loader import Project, load_project
from dq_agent.config.models import (
    CheckSpec,
    Connector,
    FreshnessArgs,
    RowCountArgs,
    SchemaArgs,
    Settings,
    SourceSpec,
    SqlConnector,
    SqlSourceSpec,
    Suite,
)

__all__ = [
    "CheckSpec",
    "Connector",
    "FreshnessArgs",
    "Project",
    "RowCountArgs",
    "SchemaArgs",
    "Settings",
    "SourceSpec",
    "SqlConnector",
    "SqlSourceSpec",
    "Suite",
    "format_duration",
    "load_project",
    "parse_duration",
]
