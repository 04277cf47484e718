"""Loopback stand-ins for the systems dq-agent talks to, for tests and ``dq-agent demo``.

Import the emulators from their modules (``dq_agent_sandbox.slack`` and so on): this package
stays empty so that the command line can name the default ports without loading them.
"""

# Salesforce listens on N, Google Sheets on N+1, Slack on N+2, Airflow on N+3, Anthropic on N+4.
DEFAULT_PORT_BASE = 8791
