"""Project YAML written for people (``init``'s suggestions, ``import gx``): PyYAML's emitter,
so that any value round-trips, with mappings on one line where asked."""

from __future__ import annotations

import math
from typing import Any

import yaml


class Flow(dict[str, Any]):
    """A mapping written on one line: ``{column: id, mostly: 0.9}``."""


class _Dumper(yaml.SafeDumper):
    """PyYAML's safe dumper, writing a :class:`Flow` in flow style."""


def _represent_flow(dumper: yaml.SafeDumper, data: Flow) -> yaml.Node:
    return dumper.represent_mapping("tag:yaml.org,2002:map", data, flow_style=True)


def _represent_str(dumper: yaml.SafeDumper, data: str) -> yaml.Node:
    # Quoted in single quotes, a line break is written as one, and PyYAML reads a NEL
    # (U+0085) back as a space: in double quotes every line break is an escape.
    style = '"' if any(ch in data for ch in "\n\r\x85\u2028\u2029") else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


_Dumper.add_representer(Flow, _represent_flow)
_Dumper.add_representer(str, _represent_str)


def dump(data: Any, *, width: float = math.inf, flow: bool = False) -> str:
    """``data`` as YAML: block style, but :class:`Flow` mappings (everything with ``flow``)."""
    return yaml.dump(
        data,
        Dumper=_Dumper,
        default_flow_style=flow,
        sort_keys=False,
        allow_unicode=True,
        width=width,
    )


def one_line(value: Any) -> str:
    """``value`` as one line of flow YAML (no document end marker)."""
    return dump(value, flow=True).removesuffix("\n").removesuffix("...").strip()
