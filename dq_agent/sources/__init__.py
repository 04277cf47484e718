"""Connectors that read data. Each turns a suite's ``source:`` into a scannable relation."""

from dq_agent.sources.base import ColumnInfo, Relation, Source, type_family
from dq_agent.sources.sql import SqlSource, create_engine

__all__ = ["ColumnInfo", "Relation", "Source", "SqlSource", "create_engine", "type_family"]
