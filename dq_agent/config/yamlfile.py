"""YAML → plain Python values, remembering the file position of every node.

PyYAML's composer gives nodes with marks; we build the values ourselves so that each value,
and each mapping key, can be traced back to ``file:line:col`` when validation rejects it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from dq_agent.errors import ConfigIssue

PathPart = str | int
NodePath = tuple[PathPart, ...]


def format_path(path: NodePath) -> str:
    """``('checks', 2, 'freshness', 'max_age')`` → ``checks[2].freshness.max_age``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out


@dataclass
class YamlDocument:
    """A parsed YAML file: its value and the position of every value and key in it."""

    file: Path
    value: Any
    positions: dict[NodePath, tuple[int, int]] = field(default_factory=dict)
    key_positions: dict[NodePath, tuple[int, int]] = field(default_factory=dict)

    def position(self, path: NodePath, *, key: bool = False) -> tuple[int, int]:
        """The position of ``path``, or of its nearest ancestor that has one."""
        if key and path in self.key_positions:
            return self.key_positions[path]
        while path:
            if path in self.positions:
                return self.positions[path]
            path = path[:-1]
        return self.positions.get((), (1, 1))

    def issue(self, path: NodePath, message: str, *, key: bool = False) -> ConfigIssue:
        line, col = self.position(path, key=key)
        return ConfigIssue(self.file, line, col, format_path(path), message)


class YamlSyntaxError(Exception):
    """The file is not YAML at all; carries the located issue."""

    def __init__(self, issue: ConfigIssue) -> None:
        super().__init__(str(issue))
        self.issue = issue


def load_yaml(text: str, file: Path) -> YamlDocument:
    """Parse one YAML document. Raises :class:`YamlSyntaxError` with the position on failure."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        doc = YamlDocument(file, None)
        if node is not None:
            doc.value = _build(node, (), doc, loader)
        return doc
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        problem = exc.problem or "invalid YAML"
        if exc.context:
            problem = f"{problem} ({exc.context})"
        raise YamlSyntaxError(ConfigIssue(file, line, col, "", f"invalid YAML: {problem}")) from exc
    except yaml.YAMLError as exc:
        raise YamlSyntaxError(ConfigIssue(file, 1, 1, "", f"invalid YAML: {exc}")) from exc
    finally:
        loader.dispose()


def _build(node: yaml.Node, path: NodePath, doc: YamlDocument, loader: yaml.SafeLoader) -> Any:
    doc.positions[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
    if isinstance(node, yaml.MappingNode):
        loader.flatten_mapping(node)  # resolves YAML merge keys (<<)
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            if not isinstance(key, str | int | float | bool):
                raise yaml.MarkedYAMLError(
                    problem="mapping keys must be plain scalars", problem_mark=key_node.start_mark
                )
            if key in result:
                raise yaml.MarkedYAMLError(
                    problem=f"duplicate key {key!r}", problem_mark=key_node.start_mark
                )
            child = (*path, str(key))
            doc.key_positions[child] = (
                key_node.start_mark.line + 1,
                key_node.start_mark.column + 1,
            )
            result[str(key) if isinstance(key, str) else key] = _build(
                value_node, child, doc, loader
            )
        return result
    if isinstance(node, yaml.SequenceNode):
        return [_build(item, (*path, i), doc, loader) for i, item in enumerate(node.value)]
    return loader.construct_object(node, deep=True)
