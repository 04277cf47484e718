"""Owners from a dbt project: the ``meta.owner`` of each model, by the table it builds.

Teams that keep ownership in dbt (``meta: {owner: …}`` on a model) need not write it again in
every suite: a suite without ``owner:`` takes the owner of the model whose table it reads.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

# dbt nodes that build a table or view a suite may read.
_BUILT = ("model", "snapshot", "seed")


def manifest_owners(path: Path) -> dict[str, tuple[str, ...]]:
    """Owners by table, from the dbt ``manifest.json`` at ``path``: keyed by the lowercased
    ``schema.table`` and by the table alone (a name two schemas share keeps the first owner).

    Raises ValueError with what is wrong: a file that cannot be read, is not JSON, or is no
    manifest.
    """
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror or exc}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path} is not JSON: {exc}") from None
    nodes = document.get("nodes") if isinstance(document, dict) else None
    if not isinstance(nodes, dict):
        raise ValueError(f"{path} is not a dbt manifest.json: it has no nodes")
    owners: dict[str, tuple[str, ...]] = {}
    for node in nodes.values():
        if not isinstance(node, dict) or node.get("resource_type") not in _BUILT:
            continue
        found = _owners(node)
        table = node.get("alias") or node.get("name")
        if not found or not isinstance(table, str):
            continue
        schema = node.get("schema")
        names = [table, f"{schema}.{table}"] if isinstance(schema, str) else [table]
        for name in names:
            owners.setdefault(name.lower(), found)
    return owners


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
