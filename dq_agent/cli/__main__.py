"""``python -m dq_agent.cli``: the ``dq-agent`` command."""

from dq_agent.cli.app import main

main()
