"""``fat_finger``: values a typing slip away from what the record should hold."""

from __future__ import annotations

from dq_agent.checks.fat_finger.check import MAX_ANALYSED, FatFinger
from dq_agent.checks.fat_finger.slips import Slip, SlipKind, classify

__all__ = ["MAX_ANALYSED", "FatFinger", "Slip", "SlipKind", "classify"]
