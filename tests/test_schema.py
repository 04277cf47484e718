"""``dq-agent schema``: JSON Schemas an editor checks project files with, true to the models."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from click.testing import CliRunner

from dq_agent.cli import main
from dq_agent.config.schema import schemas

EXAMPLE = Path(__file__).resolve().parents[1] / "dq_agent" / "example"
SUITE = schemas()["suite"]


def as_an_editor_reads(text: str) -> Any:
    """YAML as a language server sees it: dates are strings."""
    return json.loads(json.dumps(yaml.safe_load(text), default=str))


def problems(kind: str, text: str) -> list[str]:
    validator = jsonschema.Draft202012Validator(schemas()[kind])
    return [
        ".".join(map(str, e.absolute_path)) for e in validator.iter_errors(as_an_editor_reads(text))
    ]


def test_the_schemas_are_valid_json_schemas() -> None:
    for document in schemas().values():
        jsonschema.Draft202012Validator.check_schema(document)


def test_the_schema_command_writes_them_and_says_how_files_name_them(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["schema", "--project", str(tmp_path)])
    assert result.exit_code == 0, result.output
    folder = tmp_path / ".dq-agent" / "schemas"
    assert sorted(p.name for p in folder.iterdir()) == [
        "connector.schema.json",
        "dq-agent.schema.json",
        "suite.schema.json",
    ]
    assert json.loads((folder / "suite.schema.json").read_text()) == SUITE
    assert "  # yaml-language-server: $schema=../.dq-agent/schemas/suite.schema.json" in (
        result.output.splitlines()
    )


@pytest.mark.parametrize(
    "kind, file",
    [("settings", EXAMPLE / "dq-agent.yml")]
    + [("connector", p) for p in sorted((EXAMPLE / "connectors").glob("*.yml"))]
    + [("suite", p) for p in sorted((EXAMPLE / "checks").glob("*.yml"))],
    ids=lambda value: value.name if isinstance(value, Path) else value,
)
def test_every_file_of_the_example_project_fits_its_schema(kind: str, file: Path) -> None:
    assert problems(kind, file.read_text()) == []


GOOD_SUITE = """
suite: orders
owner: data@acme.com
source: {connector: warehouse, table: orders}
checks:
  - row_count: {min: 1}
  - freshness: {column: updated_at, max_age: 26h}
  - expect_column_values_to_not_be_null: {column: status, severity: warn}
restart:
  - airflow: {connector: airflow, dag_id: orders_agg}
"""


def test_a_suite_as_people_write_it_fits() -> None:
    # One owner as a string, a duration as text, an expectation with GX's own arguments.
    assert problems("suite", GOOD_SUITE) == []
    # A check without arguments, by its name alone or with nothing after it.
    bare = GOOD_SUITE.replace("restart:", "  - row_count\n  - schema:\nrestart:")
    assert problems("suite", bare) == []


@pytest.mark.parametrize(
    "line, where",
    [
        ("  - rowcount: {min: 1}", "checks.3"),  # no such check
        ("  - row_count: {minimum: 1}", "checks.3"),  # no such argument
        ("  - row_count: {min: lots}", "checks.3"),  # not a number
        ("  - freshness: {column: updated_at, max_age: soon}", "checks.3"),  # no duration
    ],
)
def test_what_validate_would_refuse_the_editor_marks_too(line: str, where: str) -> None:
    text = GOOD_SUITE.replace("restart:", f"{line}\nrestart:")
    assert problems("suite", text) == [where]
