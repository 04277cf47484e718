"""Loopback stand-ins for the systems dq-agent talks to, for tests and ``dq-agent demo``."""

from dq_agent.sandbox.airflow import AirflowEmulator
from dq_agent.sandbox.anthropic import AnthropicEmulator
from dq_agent.sandbox.gsheets import SheetsEmulator
from dq_agent.sandbox.http import LoopbackServer
from dq_agent.sandbox.runner import Sandbox, demo_seed, load_seed, start_sandbox
from dq_agent.sandbox.salesforce import SalesforceEmulator
from dq_agent.sandbox.slack import SlackEmulator, button_click, signed_interaction
from dq_agent.sandbox.warehouse import build_demo_warehouse

__all__ = [
    "AirflowEmulator",
    "AnthropicEmulator",
    "LoopbackServer",
    "Sandbox",
    "SalesforceEmulator",
    "SheetsEmulator",
    "SlackEmulator",
    "build_demo_warehouse",
    "button_click",
    "demo_seed",
    "load_seed",
    "signed_interaction",
    "start_sandbox",
]
