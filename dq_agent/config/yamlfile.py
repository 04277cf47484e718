"""YAML → plain Python values, remembering the file position of every node.

PyYAML's composer gives nodes with marks; we build the values ourselves so that each value,
and each mapping key, can be traced back to ``file:line:col`` when validation rejects it.

A configuration file is small and shallow; one that is not is refused before anything is
built: a few hundred bytes of nested aliases ("billion laughs") would expand to gigabytes,
and deep nesting would exhaust Python's recursion limit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from dq_agent.errors import ConfigIssue
from dq_agent.redact import redact

PathPart = str | int
NodePath = tuple[PathPart, ...]

# Far above any real configuration file (a suite of a hundred checks is some 20 kB); it bounds
# the time and memory that parsing one can take.
MAX_BYTES = 256 * 1024
# Lists and mappings inside one another; a suite nests about six deep.
MAX_DEPTH = 100
# Nodes an alias (*name) may copy in, all aliases of a file together: room for many
# ``<<: *defaults`` merges, not for an expansion that grows exponentially.
MAX_ALIAS_NODES = 10_000


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
    # Values ``${…}`` references resolved to: no issue about this file ever shows them.
    secrets: set[str] = field(default_factory=set)

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
        return ConfigIssue(self.file, line, col, format_path(path), redact(message, *self.secrets))


class YamlSyntaxError(Exception):
    """The file is not YAML, or YAML too large to accept; carries the located issue."""

    def __init__(self, issue: ConfigIssue) -> None:
        super().__init__(str(issue))
        self.issue = issue


def load_yaml(text: str, file: Path) -> YamlDocument:
    """Parse one YAML document. Raises :class:`YamlSyntaxError` with the position on failure."""
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        doc = YamlDocument(file, None)
        if node is not None:
            doc.value = _build(node, (), doc, loader)
        return doc
    except _Refused as exc:
        raise YamlSyntaxError(ConfigIssue(file, exc.line, exc.col, "", exc.message)) from None
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


class _Refused(yaml.YAMLError):
    """The YAML is well formed but beyond the limits above."""

    def __init__(self, event: yaml.Event, message: str) -> None:
        super().__init__(message)
        mark = event.start_mark
        self.line, self.col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        self.message = message


class _Loader(yaml.SafeLoader):
    """A safe loader whose composer enforces :data:`MAX_DEPTH` and :data:`MAX_ALIAS_NODES`.

    Every node's extent (the nodes it expands to, the collections nested in it) is known
    when it is composed, so an alias is priced before anything is copied, and the composer
    never recurses more than ``MAX_DEPTH`` collections deep.
    """

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self._depth = 0
        self._through_aliases = 0
        # id(collection) → (nodes it expands to, depth), once it is composed.
        self._extents: dict[int, tuple[int, int]] = {}

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        event: yaml.Event = self.peek_event()  # type: ignore[no-untyped-call]
        if isinstance(event, yaml.AliasEvent):
            return self._alias(event, super().compose_node(parent, index))
        level = 1 if isinstance(event, yaml.CollectionStartEvent) else 0
        if level and self._depth >= MAX_DEPTH:
            raise _Refused(
                event,
                f"lists and mappings nested more than {MAX_DEPTH} deep; "
                f"expected at most {MAX_DEPTH} levels",
            )
        self._depth += level
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= level
        if isinstance(node, yaml.SequenceNode):
            self._extents[id(node)] = self._sum(node.value)
        elif isinstance(node, yaml.MappingNode):
            self._extents[id(node)] = self._sum([part for pair in node.value for part in pair])
        return node

    def _sum(self, children: list[yaml.Node]) -> tuple[int, int]:
        """The extent of a collection of ``children``, every one of them composed."""
        size, depth = 1, 1
        for child in children:
            extent = self._extent(child)
            assert extent is not None  # an alias of an unfinished node was refused
            size, depth = size + extent[0], max(depth, 1 + extent[1])
        return size, depth

    def _extent(self, node: yaml.Node | None) -> tuple[int, int] | None:
        """The nodes ``node`` expands to and its depth; None while it is being composed."""
        if isinstance(node, yaml.ScalarNode):
            return (1, 0)
        return self._extents.get(id(node))

    def _alias(self, event: yaml.AliasEvent, node: yaml.Node | None) -> yaml.Node | None:
        extent = self._extent(node)
        if extent is None:  # its node is still being composed: the alias is inside it
            raise _Refused(
                event,
                f"alias *{event.anchor} is inside the node it names; "
                "expected an alias of a node that ends before it",
            )
        size, depth = extent
        if self._depth + depth > MAX_DEPTH:
            raise _Refused(
                event,
                f"alias *{event.anchor} nests lists and mappings more than {MAX_DEPTH} deep; "
                f"expected at most {MAX_DEPTH} levels",
            )
        self._through_aliases += size
        if self._through_aliases > MAX_ALIAS_NODES:
            raise _Refused(
                event,
                f"aliases expand to more than {MAX_ALIAS_NODES:,} values; "
                f"expected at most {MAX_ALIAS_NODES:,} values copied through aliases (*name)",
            )
        return node


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
