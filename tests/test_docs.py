"""The YAML examples of README.md and docs/: each parses, and each that is a project file (or a
part of one) fits the JSON Schema of its kind, the schema editors check the files with."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from dq_agent.config.schema import schemas

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SCHEMAS = schemas()
SUITE_KEYS = set(SCHEMAS["suite"]["properties"])
SETTINGS_KEYS = set(SCHEMAS["settings"]["properties"])
# What a bare list of checks, or a part of a suite, is completed with to make a whole suite.
MINIMAL_SUITE: dict[str, Any] = {
    "suite": "x",
    "source": {"connector": "c", "table": "t"},
    "checks": [{"row_count": {"min": 1}}],
}

# Blocks that fail their schema although the example is right: the schema is what is wrong.
# "file:line" of the block's opening fence → why. Each must still fail (strict xfail), so an
# entry is removed once the schema is fixed.
KNOWN_SCHEMA_GAPS: dict[str, str] = {}

FENCE = re.compile(r"^( *)(`{3,}|~{3,})\s*([\w+-]*)")


@dataclass(frozen=True)
class Block:
    page: str  # relative to the repository
    line: int  # 1-based line of the opening fence
    text: str

    @property
    def id(self) -> str:
        return f"{self.page}:{self.line}"


def yaml_blocks(path: Path) -> list[Block]:
    """Every ```yaml fenced block of a Markdown file, also one indented in a list item (fences
    of any other language skipped)."""
    blocks: list[Block] = []
    lines = path.read_text(encoding="utf-8").splitlines()
    page = path.relative_to(ROOT).as_posix()
    i = 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        indent, fence, language = opening.groups()
        start = i
        i += 1
        body: list[str] = []
        while i < len(lines) and not lines[i].lstrip(" ").startswith(fence):
            body.append(lines[i].removeprefix(indent))
            i += 1
        i += 1  # the closing fence
        if language.lower() in ("yaml", "yml"):
            blocks.append(Block(page, start + 1, "\n".join(body) + "\n"))
    return blocks


BLOCKS = [block for page in PAGES for block in yaml_blocks(page)]


def as_an_editor_reads(value: Any) -> Any:
    """YAML as a language server sees it: dates are strings."""
    return json.loads(json.dumps(value, default=str))


def is_check_list(value: Any) -> bool:
    return (
        isinstance(value, list)
        and bool(value)
        and all(isinstance(item, dict) and len(item) == 1 for item in value)
    )


def what_to_validate(value: Any) -> tuple[str, str, Any] | None:
    """(kind of file, what the block is, the document to validate), or None for a block that
    is no project file nor a part of one (a sandbox seed, say): that one need only parse."""
    if isinstance(value, dict) and "suite" in value and "checks" in value:
        return "suite", "a whole suite", value
    if isinstance(value, dict) and "type" in value and "suite" not in value:
        return "connector", "a connector profile", value
    if is_check_list(value):
        return "suite", "a list of checks", {**MINIMAL_SUITE, "checks": value}
    if isinstance(value, dict) and value and set(value) <= SETTINGS_KEYS:
        return "settings", "dq-agent.yml or a part of it", value
    if isinstance(value, dict) and value and set(value) <= SUITE_KEYS:
        return "suite", "a part of a suite", {**MINIMAL_SUITE, **value}
    return None


def explain(error: jsonschema.ValidationError) -> list[jsonschema.ValidationError]:
    """For a value that fits none of the alternatives (a check, a source, a connector type):
    the errors of the alternative it misses by the least (not by its `type:`, fewest errors,
    then the deepest), else, when none stands out, the error itself."""
    if not error.context:
        return [error]
    by_alternative: dict[Any, list[jsonschema.ValidationError]] = {}
    for e in error.context:
        by_alternative.setdefault(e.relative_schema_path[0], []).append(e)

    def miss(errors: list[jsonschema.ValidationError]) -> tuple[bool, int, int]:
        wrong_type = any(e.validator == "const" for e in errors)
        return wrong_type, len(errors), -max(len(e.absolute_path) for e in errors)

    ranked = sorted(by_alternative.values(), key=miss)
    if miss(ranked[0])[0] or (len(ranked) > 1 and miss(ranked[0]) == miss(ranked[1])):
        return [error]
    return [reason for e in ranked[0] for reason in explain(e)]


def schema_errors(kind: str, document: Any) -> list[str]:
    validator = jsonschema.Draft202012Validator(SCHEMAS[kind])
    return [
        f"{'.'.join(map(str, reason.absolute_path)) or '(top)'}: {reason.message}"
        for error in validator.iter_errors(as_an_editor_reads(document))
        for reason in explain(error)
    ]


def test_the_documentation_has_yaml_examples() -> None:
    assert len(BLOCKS) >= 20  # as many as there were when the test was written
    assert {block.page for block in BLOCKS} >= {"README.md", "docs/project.md", "docs/checks.md"}


def test_every_known_schema_gap_names_a_block() -> None:
    assert set(KNOWN_SCHEMA_GAPS) <= {block.id for block in BLOCKS}


@pytest.mark.parametrize(
    "block",
    [
        pytest.param(
            block,
            id=block.id,
            marks=[pytest.mark.xfail(reason=KNOWN_SCHEMA_GAPS[block.id], strict=True)]
            if block.id in KNOWN_SCHEMA_GAPS
            else [],
        )
        for block in BLOCKS
    ],
)
def test_a_yaml_example_parses_and_fits_its_schema(block: Block) -> None:
    try:
        value = yaml.safe_load(block.text)
    except yaml.YAMLError as error:
        pytest.fail(f"{block.id}: the YAML example does not parse: {error}")
    target = what_to_validate(value)
    if target is None:
        return
    kind, what, document = target
    errors = schema_errors(kind, document)
    assert not errors, f"{block.id}: {what} that does not fit the {kind} schema:\n" + "\n".join(
        errors
    )
