"""Corrections: plan → guardrails → verify on a branch → compare-and-set write → ledger."""

from dq_agent.remedy.apply import Outcome
from dq_agent.remedy.plan import Change
from dq_agent.remedy.runner import (
    Remedy,
    approve_correction,
    reject_correction,
    revert_correction,
    revert_corrections,
    settle,
)

__all__ = [
    "Change",
    "Outcome",
    "Remedy",
    "approve_correction",
    "reject_correction",
    "revert_correction",
    "revert_corrections",
    "settle",
]
