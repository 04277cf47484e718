"""The state store: one repository per aggregate on one SQL database (see :mod:`.store`)."""

from __future__ import annotations

from dq_agent.store.clicks import NewClick
from dq_agent.store.store import Store

__all__ = ["NewClick", "Store"]
