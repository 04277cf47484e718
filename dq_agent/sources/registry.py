"""One place that turns a suite's ``source:`` into a :class:`Source` for its connector type."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from dq_agent.config.models import (
    Connector,
    GSheetsConnector,
    GSheetsSourceSpec,
    IcebergConnector,
    IcebergSourceSpec,
    SalesforceConnector,
    SalesforceSourceSpec,
    SourceSpec,
    SparkConnector,
    SparkSourceSpec,
    SqlConnector,
    SqlSourceSpec,
)
from dq_agent.errors import SourceError
from dq_agent.sources.base import Relation, Source
from dq_agent.sources.retry import RetryPolicy
from dq_agent.sources.sql import SqlSource, create_engine


class Engines:
    """SQL engines kept across runs by a long-running process (the daemon): each run would
    otherwise open new connections and compile every statement afresh. An engine is made
    again when its connector's profile changed; :meth:`dispose` closes them all. Files are
    not kept open: a SQLite file may be replaced between runs, and an open DuckDB file
    cannot be written by anyone else (and opening either costs no round trip)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._kept: dict[str, tuple[SqlConnector, Path, sa.Engine]] = {}

    def get(self, name: str, connector: SqlConnector, root: Path) -> sa.Engine | None:
        """The kept engine of connector ``name``; None for one not to keep (a file)."""
        if connector.url.startswith(("sqlite", "duckdb")):
            return None
        with self._lock:
            kept = self._kept.get(name)
            if kept is not None and (kept[0], kept[1]) == (connector, root):
                return kept[2]
            engine = create_engine(connector, root)
            self._kept[name] = (connector, root, engine)
        if kept is not None:
            kept[2].dispose()  # its profile changed: a run still using it reconnects
        return engine

    def dispose(self) -> None:
        with self._lock:
            kept, self._kept = list(self._kept.values()), {}
        for _, _, engine in kept:
            engine.dispose()


class Connections:
    """Per run: one engine or API client per connector, shared by the suites using it.
    SQL engines come from ``engines`` when the caller keeps them across runs. ``sealed``:
    the connectors' secrets are a broker's (their ``${…}`` are unresolved), so no source can
    be opened here."""

    def __init__(
        self,
        root: Path,
        connectors: Mapping[str, Connector],
        *,
        retry: RetryPolicy | None = None,
        engines: Engines | None = None,
        sealed: bool = False,
    ) -> None:
        self._root = root
        self._connectors = connectors
        self._sealed = sealed
        self._retry = retry or RetryPolicy()
        self._kept = engines
        self._engines: dict[str, sa.Engine] = {}
        self._clients: dict[str, Any] = {}

    def source(self, spec: SourceSpec) -> Source:
        """The source for ``spec``; raises :class:`SourceError` if it cannot be set up."""
        if self._sealed:
            raise SourceError(
                f"connector {spec.connector!r}: its credentials are the broker's (broker: in "
                "dq-agent.yml); this is not supported through the broker yet",
                transient=False,
            )
        connector = self._connectors[spec.connector]
        if isinstance(connector, SqlConnector) and isinstance(spec, SqlSourceSpec):
            return SqlSource(self._engine(spec.connector, connector), spec, connector)
        if isinstance(connector, IcebergConnector) and isinstance(spec, IcebergSourceSpec):
            from dq_agent.sources.iceberg import IcebergSource
            from dq_agent.sources.iceberg import connect as connect_iceberg

            catalog = self._client(spec.connector, lambda: connect_iceberg(connector))
            return IcebergSource(catalog, spec, connector)
        if isinstance(connector, SparkConnector) and isinstance(spec, SparkSourceSpec):
            from dq_agent.sources.spark import SparkSource
            from dq_agent.sources.spark import session as spark_session

            # The session is the process's (see spark.session): not closed with the run.
            return SparkSource(spark_session(connector), spec, connector)
        if isinstance(connector, SalesforceConnector) and isinstance(spec, SalesforceSourceSpec):
            from dq_agent.sources.salesforce import SalesforceSource, connect

            client = self._client(spec.connector, lambda: connect(connector))
            return SalesforceSource(client, spec, retry=self._retry, connector=connector)
        if isinstance(connector, GSheetsConnector) and isinstance(spec, GSheetsSourceSpec):
            from dq_agent.sources.gsheets import GSheetsSource
            from dq_agent.sources.gsheets import connect as connect_sheets

            client = self._client(spec.connector, lambda: connect_sheets(connector))
            return GSheetsSource(client, spec, retry=self._retry)
        raise SourceError(
            f"source of connector {spec.connector!r} does not match its type {connector.type!r}",
            transient=False,
        )

    def sql_engine(self, name: str) -> sa.Engine:
        """The engine of SQL connector ``name`` (a check reading another table of it)."""
        connector = self._connectors.get(name)
        if not isinstance(connector, SqlConnector):
            known = ", ".join(n for n, c in self._connectors.items() if isinstance(c, SqlConnector))
            raise SourceError(
                f"{name!r} is not an SQL connector of this project; SQL connectors: "
                f"{known or 'none'}",
                transient=False,
            )
        return self._engine(name, connector)

    def _engine(self, name: str, connector: SqlConnector) -> sa.Engine:
        kept = None if self._kept is None else self._kept.get(name, connector, self._root)
        if kept is not None:
            return kept
        if name not in self._engines:
            self._engines[name] = create_engine(connector, self._root)
        return self._engines[name]

    def _client(self, name: str, make: Any) -> Any:
        if name not in self._clients:
            self._clients[name] = make()
        return self._clients[name]

    def dispose(self) -> None:
        for engine in self._engines.values():
            engine.dispose()
        for client in self._clients.values():
            close = getattr(client, "close", None)
            if callable(close):
                close()
        self._engines.clear()
        self._clients.clear()


@contextmanager
def opened(
    root: Path,
    connectors: Mapping[str, Connector],
    spec: SourceSpec,
    *,
    retry: RetryPolicy | None = None,
    sealed: bool = False,
) -> Iterator[tuple[Source, Relation]]:
    """One suite's source, opened for the ``with`` block and released after.

    For work outside a run (backtests, reverts, approvals); a run shares its connections
    across suites instead.
    """
    connections = Connections(root, connectors, retry=retry, sealed=sealed)
    try:
        source = connections.source(spec)
        try:
            yield source, source.open()
        finally:
            source.close()
    finally:
        connections.dispose()
