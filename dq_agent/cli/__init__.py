"""The ``dq-agent`` command line, one module per command group (:mod:`dq_agent.cli.app` puts
them together; :mod:`dq_agent.cli.common` holds what they share)."""

from dq_agent.cli.app import main

__all__ = ["main"]
