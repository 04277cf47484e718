"""What a dbt project's ``manifest.json`` tells about the tables suites read.

Owners: teams that keep ownership in dbt (``meta: {owner: …}`` on a model) need not write it
again in every suite: a suite without ``owner:`` takes the owner of the model whose table it
reads. Lineage: the models built from a suite's table (a dbt source's, or a model's own), which
are what to rebuild once its data is right (``restart: {auto: true}``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dq_agent.config.models import (
    AirflowAssetRestart,
    Connector,
    LineageSettings,
    RestartSpec,
    SourceSpec,
    SqlConnector,
    SqlSourceSpec,
)

# dbt nodes that build a table or view a suite may read.
_BUILT = ("model", "snapshot", "seed")


def read_manifest(path: Path) -> dict[str, Any]:
    """The dbt ``manifest.json`` at ``path``. Raises ValueError with what is wrong: a file
    that cannot be read, is not JSON, or is no manifest."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror or exc}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path} is not JSON: {exc}") from None
    if not isinstance(document, dict) or not isinstance(document.get("nodes"), dict):
        raise ValueError(f"{path} is not a dbt manifest.json: it has no nodes")
    return document


def manifest_owners(manifest: Mapping[str, Any]) -> dict[str, tuple[str, ...]]:
    """Owners by table: keyed by the lowercased ``schema.table`` and by the table alone (a
    name two schemas share keeps the first owner)."""
    owners: dict[str, tuple[str, ...]] = {}
    for node in manifest["nodes"].values():
        if not isinstance(node, dict) or node.get("resource_type") not in _BUILT:
            continue
        found = _owners(node)
        if found:
            for name in _names(node):
                owners.setdefault(name, found)
    return owners


@dataclass(frozen=True)
class Downstream:
    """The models built from one table: ``node`` is the dbt node that is the table (``source
    raw.orders``, ``model stg_orders``), ``children`` the models built directly from it (a
    selection ``child+`` of each covers everything further down), ``below`` every model
    further down, for people to read."""

    node: str
    children: tuple[str, ...]
    below: tuple[str, ...]

    @property
    def path(self) -> str:
        """How the restart was found: ``source raw.orders → stg_orders → orders_daily, …``."""
        steps = [self.node, ", ".join(self.children)]
        if self.below:
            steps.append(", ".join(self.below))
        return " → ".join(steps)


def downstream(manifest: Mapping[str, Any], table: str, schema: str | None) -> Downstream | None:
    """The models built from ``table`` (in ``schema`` when given) by the manifest's lineage,
    or None when no source, model, seed or snapshot of it is that table."""
    wanted = f"{schema}.{table}".lower() if schema else table.lower()
    sources = manifest.get("sources")
    candidates = {**(sources if isinstance(sources, dict) else {}), **manifest["nodes"]}
    found = next(
        (
            unique_id
            for unique_id, node in candidates.items()
            if isinstance(node, dict)
            and node.get("resource_type") in (*_BUILT, "source")
            and wanted in _names(node)
        ),
        None,
    )
    if found is None:
        return None
    child_map = manifest.get("child_map")
    children_of = child_map if isinstance(child_map, dict) else {}

    def models(unique_id: str) -> list[str]:
        ids = children_of.get(unique_id)
        return [c for c in ids if c.startswith("model.")] if isinstance(ids, list) else []

    children = models(found)
    seen = set(children)
    below: list[str] = []
    queue = list(children)
    while queue:
        for child in models(queue.pop(0)):
            if child not in seen:
                seen.add(child)
                below.append(child)
                queue.append(child)
    node = candidates[found]
    kind = node.get("resource_type")
    label = (
        f"source {node.get('source_name')}.{node.get('name')}"
        if kind == "source"
        else f"{kind} {node.get('name')}"
    )

    def name(unique_id: str) -> str:
        model = manifest["nodes"].get(unique_id)
        return str(model.get("name")) if isinstance(model, dict) else unique_id.rpartition(".")[2]

    return Downstream(label, tuple(map(name, children)), tuple(map(name, below)))


def _names(node: Mapping[str, Any]) -> list[str]:
    """The lowercased names a suite may give the node's table: ``table`` and
    ``schema.table`` (a source's table is its ``identifier``, a model's its ``alias``)."""
    table = node.get("identifier") or node.get("alias") or node.get("name")
    if not isinstance(table, str):
        return []
    schema = node.get("schema")
    names = [table, f"{schema}.{table}"] if isinstance(schema, str) else [table]
    return [name.lower() for name in names]


def _owners(node: Mapping[str, Any]) -> tuple[str, ...]:
    """A node's owner(s): ``meta.owner``, else ``config.meta.owner``."""
    config = node.get("config")
    metas = [node.get("meta"), config.get("meta") if isinstance(config, dict) else None]
    for meta in metas:
        owner = meta.get("owner") if isinstance(meta, dict) else None
        if isinstance(owner, str) and owner.strip():
            return (owner.strip(),)
        if isinstance(owner, list) and owner and all(isinstance(o, str) for o in owner):
            return tuple(o.strip() for o in owner if o.strip())
    return ()


class LineageRestarts:
    """``restart: {auto: true}``: a suite's restart targets from the lineage of the table it
    reads (``lineage:`` in dq-agent.yml): the dbt models built from it, rebuilt as ``dbt:``
    says, and the Airflow DAGs scheduled on its asset. ``manifest`` is None when there is
    none, or it could not be read (``problem``)."""

    def __init__(
        self,
        settings: LineageSettings,
        manifest: Mapping[str, Any] | None,
        connectors: Mapping[str, Connector],
        problem: str = "",
    ) -> None:
        self.settings = settings
        self.manifest = manifest
        self.connectors = connectors
        self.problem = problem

    def restarts(self, source: SourceSpec, line: int) -> list[RestartSpec]:
        """The targets downstream of ``source``'s table (none when nothing is built from it);
        raises ValueError saying why lineage cannot be followed."""
        if self.settings.dbt is None and self.settings.airflow is None:
            raise ValueError(
                "auto: true needs lineage: in dq-agent.yml: {dbt_manifest: …, dbt: {dbt_cloud: "
                "{connector: …, job_id: …}} or {command: {run: [dbt, build]}}}, or {airflow: "
                "{connector: …}} (the DAGs scheduled on the table's asset)"
            )
        if not isinstance(source, SqlSourceSpec) or source.table is None:
            raise ValueError(
                "auto: true follows the lineage of a SQL table; this suite reads no table"
            )
        connector = self.connectors.get(source.connector)
        schema = source.schema_ or (
            connector.schema_ if isinstance(connector, SqlConnector) else None
        )
        table = source.table
        if "." in table and schema is None:
            schema, _, table = table.rpartition(".")
        targets = self._dbt(table, schema, line) if self.settings.dbt is not None else []
        assets = self.settings.airflow
        if assets is not None:
            if schema is None and "{schema}" in assets.asset:
                raise ValueError(
                    f"lineage.airflow.asset {assets.asset!r} names the table's schema, which "
                    "this suite does not give (source: {…, schema: …})"
                )
            asset = assets.asset.format(schema=schema, table=table)
            args = AirflowAssetRestart(connector=assets.connector, asset=asset)
            why = f"Airflow asset {asset} → the DAGs scheduled on it"
            targets.append(RestartSpec(type="airflow_asset", args=args, line=line, why=why))
        return targets

    def _dbt(self, table: str, schema: str | None, line: int) -> list[RestartSpec]:
        """What rebuilds the dbt models built from the table."""
        rebuild = self.settings.dbt
        if self.manifest is None or rebuild is None:
            raise ValueError(self.problem or "lineage.dbt needs a dbt_manifest: in dq-agent.yml")
        found = downstream(self.manifest, table, schema) or downstream(self.manifest, table, None)
        if found is None:
            shown = f"{schema}.{table}" if schema else table
            raise ValueError(
                f"table {shown} is no dbt source, model, seed or snapshot in the manifest: "
                "nothing to follow (name the restart targets instead)"
            )
        if not found.children:
            return []
        select = [f"{model}+" for model in found.children]
        if rebuild.dbt_cloud is not None:
            job = rebuild.dbt_cloud.model_copy(update={"select": select})
            return [RestartSpec(type="dbt_cloud", args=job, line=line, why=found.path)]
        assert rebuild.command is not None  # DbtRebuild holds exactly one
        run = [*rebuild.command.run, "--select", *select]
        command = rebuild.command.model_copy(update={"run": run})
        return [RestartSpec(type="command", args=command, line=line, why=found.path)]
