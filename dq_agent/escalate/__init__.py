"""Escalation: incidents for what the agent cannot fix, routed to the people who can."""

from dq_agent.escalate.incidents import Notice, dataset_of, owners_of, track

__all__ = ["Notice", "dataset_of", "owners_of", "track"]
