"""Bridges to the orchestrators users run dq-agent's suites from, one module each.

Each module imports its orchestrator and is imported only by users' own code (the rest of
dq_agent never imports this package): install the matching extra, e.g. ``dq-agent[dagster]``.
"""
