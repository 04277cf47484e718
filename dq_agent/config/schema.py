"""JSON Schemas of the three kinds of project file, generated from the models that parse them.

Editors validate and complete YAML with them (``# yaml-language-server: $schema=…``). The
models stay the judge: a schema cannot say that a connector named in a suite exists, or that
a ``source:`` block fits its connector's type, which ``dq-agent validate`` does.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from dq_agent.config.models import (
    BUILTIN_CHECKS,
    CONNECTOR_TYPES,
    RESTART_TYPES,
    SOURCE_SPECS,
    CheckArgs,
    Settings,
    SuiteHeader,
)

DRAFT = "https://json-schema.org/draft/2020-12/schema"
# File name of each schema, by the kind of file it describes.
FILES = {
    "settings": "dq-agent.schema.json",
    "connector": "connector.schema.json",
    "suite": "suite.schema.json",
}


def schemas() -> dict[str, dict[str, Any]]:
    """The schema of ``dq-agent.yml``, of a connector profile and of a suite, by kind."""
    return {
        "settings": _document("dq-agent.yml: the project's settings", _model(Settings)),
        "connector": _document(
            "connectors/<name>.yml: one connection profile",
            _one_of([_model(m) for m in CONNECTOR_TYPES.values()]),
        ),
        "suite": _document("checks/<name>.yml: one suite", _suite()),
    }


def _document(title: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"$schema": DRAFT, "title": title, **schema}


def _model(model: type[BaseModel]) -> dict[str, Any]:
    """A model's schema as a document of its own: its definitions inlined under ``$defs``."""
    return model.model_json_schema(mode="validation", ref_template="#/$defs/{model}")


def _one_of(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """Schemas with definitions of their own, as alternatives with one ``$defs``."""
    defs: dict[str, Any] = {}
    for part in parts:
        defs.update(part.pop("$defs", {}))
    return {"oneOf": parts, "$defs": defs} if defs else {"oneOf": parts}


def _suite() -> dict[str, Any]:
    """SuiteHeader's schema with ``source:``, ``checks:`` and ``restart:`` spelt out: a
    source block of any source type, each check a one-key mapping ``{type: arguments}``
    (``expect_*`` for Great Expectations, with GX's own arguments), each restart target one
    too."""
    suite = _model(SuiteHeader)
    defs = suite.setdefault("$defs", {})

    def keyed(name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        defs.update(arguments.pop("$defs", {}))
        return {
            "type": "object",
            "properties": {name: arguments},
            "required": [name],
            "additionalProperties": False,
        }

    # A check with no arguments is also written by its name alone: "- row_count".
    checks: list[dict[str, Any]] = [
        {"type": "string", "enum": list(BUILTIN_CHECKS)},
        {"type": "string", "pattern": "^expect_[a-z0-9_]+$"},
    ]
    for name, args in BUILTIN_CHECKS.items():
        item = keyed(name, _model(args))
        item["properties"][name] = {"anyOf": [item["properties"][name], {"type": "null"}]}
        checks.append(item)
    common = _model(CheckArgs)["properties"]
    checks.append(
        {
            "type": "object",
            "patternProperties": {
                "^expect_[a-z0-9_]+$": {
                    "type": "object",
                    "description": "a Great Expectations expectation's own arguments, and "
                    + ", ".join(common),
                    "properties": common,
                }
            },
            "minProperties": 1,
            "maxProperties": 1,
            "additionalProperties": False,
        }
    )
    sources = []
    for spec in SOURCE_SPECS.values():
        source = _model(spec)
        defs.update(source.pop("$defs", {}))
        sources.append(source)
    properties = suite["properties"]
    properties["source"] = {"anyOf": sources, "description": "what the suite reads"}
    properties["checks"] = {"type": "array", "minItems": 1, "items": {"anyOf": checks}}
    # auto: true stands for the targets the table's lineage gives (lineage: in dq-agent.yml).
    auto = {
        "type": "object",
        "properties": {"auto": {"const": True}},
        "required": ["auto"],
        "additionalProperties": False,
    }
    targets = [keyed(n, _model(m)) for n, m in RESTART_TYPES.items()]
    properties["restart"] = {
        "anyOf": [{"type": "array", "items": {"anyOf": [*targets, auto]}}, auto],
        "description": "the pipelines to restart once the suite passes again",
    }
    return suite
