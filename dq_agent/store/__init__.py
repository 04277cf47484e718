"""The state store: run history, metric history and schema snapshots in a SQL database."""

from __future__ import annotations

from dq_agent.store.store import NewClick, Store

__all__ = ["NewClick", "Store"]
