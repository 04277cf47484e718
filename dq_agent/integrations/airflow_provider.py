"""What Airflow lists of dq-agent as one of its providers (``airflow providers list``).

Airflow calls :func:`get_provider_info` while it is itself being imported (its configuration
reads every provider's), when no operator can be defined yet: this module imports nothing of
Airflow's, and the operator, sensor and trigger live in :mod:`dq_agent.integrations.airflow`.
"""

from __future__ import annotations

from importlib.metadata import version
from typing import Any

PACKAGE = "dq-agent"
MODULE = "dq_agent.integrations.airflow"
_INTEGRATION = "dq-agent"


def get_provider_info() -> dict[str, Any]:
    """dq-agent as an Airflow provider: its distribution, version and where its classes are."""
    modules = [{"integration-name": _INTEGRATION, "python-modules": [MODULE]}]
    return {
        "package-name": PACKAGE,
        "name": "dq-agent",
        "description": "Runs dq-agent check suites as Airflow tasks, and waits for them to pass.",
        "versions": [version(PACKAGE)],
        "integrations": [{"integration-name": _INTEGRATION, "tags": ["service"]}],
        "operators": modules,
        "sensors": modules,
        "triggers": modules,
    }
