"""Triage: what kind of failure this is, and so what should happen next."""

from dq_agent.triage.rules import ACTIONS, Triage, classify, classify_error

__all__ = ["ACTIONS", "Triage", "classify", "classify_error"]
