"""Loopback stand-ins for the systems dq-agent talks to, for tests and ``dq-agent demo``.

A package of its own (``dq-agent-sandbox``): it imports the agent, the agent never imports it,
and its ``demo`` and ``sandbox`` commands (:mod:`dq_agent_sandbox.cli`) plug into dq-agent's
command line. Import the emulators from their modules (``dq_agent_sandbox.slack`` and so on):
this package stays empty so that the commands can name the default ports without loading them.
"""

# Salesforce listens on N, Google Sheets on N+1, Slack on N+2, Airflow on N+3, Anthropic on N+4.
DEFAULT_PORT_BASE = 8791
