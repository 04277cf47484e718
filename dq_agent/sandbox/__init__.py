"""Loopback stand-ins for the systems dq-agent talks to, for tests and ``dq-agent demo``."""

from dq_agent.sandbox.warehouse import build_demo_warehouse

__all__ = ["build_demo_warehouse"]
