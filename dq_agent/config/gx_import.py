"""Great Expectations expectation suites (JSON) converted into dq-agent suites (YAML).

A team moving from GX keeps its expectations: dq-agent runs any GX 1.x expectation by its
snake_case name with its own arguments, so each expectation becomes one check, arguments
unchanged. One that could not run here (a type GX 1.x does not know, arguments it refuses, a
row condition dq-agent cannot read) is kept in the file, commented out with the reason, and
reported, so that nothing is lost without a word and the suite written still loads.

The YAML is written by PyYAML's emitter, one check at a time, so that any value round-trips
(quotes, colons, line breaks, any script); only comments are written here, each on one line,
with whatever could end a line escaped.
"""

from __future__ import annotations

import json
import math
import re
import textwrap
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from pydantic import ValidationError

from dq_agent.checks.conditions import RowCondition, parse_row_condition
from dq_agent.config import expectations
from dq_agent.config.models import CheckArgs
from dq_agent.config.yamlwrite import Flow, dump
from dq_agent.errors import DqAgentError

# Arguments GX stores with an expectation that say how GX runs it, not what it checks:
# dq-agent sets them itself and refuses them in a suite (include_config is GX 0.x's).
DROPPED_KWARGS = expectations.RESERVED_FIELDS | {"include_config"}
# GX 1.x's severities below critical (which is dq-agent's default, fail).
_SEVERITIES = {"warning": "warn", "info": "warn"}
_ID_PATTERN = re.compile(r"^[A-Za-z0-9_.\-]+$")
_NOT_IN_ID = re.compile(r"[^A-Za-z0-9_.\-]+")
# The longest line a check's arguments are written on; longer, they go one a line.
_FLOW_WIDTH = 100
_COMMON = ("name", "severity", "owner")


@dataclass(frozen=True)
class Converted:
    """The text of ``checks/<suite>.yml``, the expectations left commented out in it (one
    ``expectations[i] type: reason`` each), and the suite's id."""

    yaml: str
    skipped: tuple[str, ...]
    suite: str


def read_gx_suite(path: Path) -> Mapping[str, Any]:
    """The GX expectation suite saved as JSON at ``path``; an error naming the file if it
    cannot be read, is not JSON, or is JSON of something else (a checkpoint, a result)."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise DqAgentError(f"{path}: cannot read it: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise DqAgentError(f"{path}: not UTF-8 text; expected a GX suite's JSON") from None
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DqAgentError(f"{path}: not JSON ({exc}); expected a GX suite's JSON") from None
    problem = _not_a_suite(document)
    if problem:
        raise DqAgentError(f"{path}: not a Great Expectations expectation suite: {problem}")
    return cast("Mapping[str, Any]", document)


def suite_from_gx(
    document: Mapping[str, Any],
    *,
    connector: str,
    table: str,
    suite: str | None = None,
    owner: str | None = None,
) -> Converted:
    """A dq-agent suite reading ``table`` through ``connector`` with the checks of the GX
    suite ``document`` (GX 1.x or 0.x), with id ``suite`` (default: the GX suite's name)."""
    problem = _not_a_suite(document)
    if problem:
        raise DqAgentError(f"not a Great Expectations expectation suite: {problem}")
    name = _suite_name(document)
    suite_id = _NOT_IN_ID.sub("_", name) if suite is None else suite
    if not _ID_PATTERN.match(suite_id):
        raise DqAgentError(f"suite id {suite_id!r}: expected letters, digits, _ . - only")
    items: list[Mapping[str, Any]] = document["expectations"]
    count = f"{len(items)} expectation{'' if len(items) == 1 else 's'}"
    header: dict[str, Any] = {"suite": suite_id}
    if owner:
        header["owner"] = owner
    header["source"] = Flow(connector=connector, table=table)
    lines = [
        _comment(f"Converted from Great Expectations suite {name} ({count}) by dq-agent import gx.")
    ]
    lines.append(dump(header, width=_FLOW_WIDTH).rstrip("\n"))
    checks: list[str] = []
    skipped: list[str] = []
    names: set[str] = set()
    for index, item in enumerate(items):
        kind = _kind(item)
        args, reason = _arguments(kind, item)
        checks += _notes(item)
        if reason is None:
            default = _default_name(kind, args)
            check_name, repeat = default, 1
            while check_name in names:  # dq-agent names checks uniquely within a suite
                repeat += 1
                check_name = f"{default} #{repeat}"
            names.add(check_name)
            if check_name != default:
                args["name"] = check_name
            checks.append(_check(kind, args))
        else:
            skipped.append(f"expectations[{index}] {kind}: {reason}")
            checks.append(_comment(f"not converted: {reason}"))
            checks += [f"# {line}" for line in _check(kind, args).splitlines()]
    lines.append("checks:" if names else "checks: []  # none could be converted")
    lines += [textwrap.indent(check, "  ") for check in checks]
    return Converted("\n".join(lines) + "\n", tuple(skipped), suite_id)


def _not_a_suite(document: Any) -> str | None:
    """What makes ``document`` something else than a GX 1.x or 0.x expectation suite."""
    if not isinstance(document, Mapping):
        return f"expected a JSON object, got {type(document).__name__}"
    if not isinstance(document.get("expectations"), list):
        return "no expectations list"
    name = _suite_name(document)
    if not isinstance(name, str) or not name:
        return "no suite name (name, or expectation_suite_name before GX 1.0)"
    for index, item in enumerate(document["expectations"]):
        if not isinstance(item, Mapping):
            return f"expectations[{index}] is not an object"
        if not _kind(item):
            return f"expectations[{index}] has no type (expectation_type before GX 1.0)"
        if not isinstance(item.get("kwargs", {}), Mapping):
            return f"expectations[{index}].kwargs is not an object"
    return None


def _suite_name(document: Mapping[str, Any]) -> Any:
    return document.get("name", document.get("expectation_suite_name"))


def _kind(item: Mapping[str, Any]) -> str:
    """An expectation's type: ``type`` in GX 1.x, ``expectation_type`` before ("" if none)."""
    kind = item.get("type", item.get("expectation_type"))
    return kind if isinstance(kind, str) else ""


def _arguments(kind: str, item: Mapping[str, Any]) -> tuple[dict[str, Any], str | None]:
    """The check's arguments for expectation ``item``, and why it cannot run (None: it can)."""
    args = {k: v for k, v in item.get("kwargs", {}).items() if k not in DROPPED_KWARGS}
    reason = None
    condition = args.get("row_condition")
    if condition is not None and not isinstance(condition, str):
        text = _condition_text(condition)
        if text is None:
            shape = (
                condition.get("type")
                if isinstance(condition, Mapping)
                else type(condition).__name__
            )
            reason = f"a row_condition of type {shape!r} has no string form dq-agent reads"
        else:
            args["row_condition"] = text
            if condition.get("type") != "pass_through":
                args["condition_parser"] = "great_expectations"
    for key, value in args.items():
        if isinstance(value, Mapping) and "$PARAMETER" in value:
            # GX fills these in from the parameters a validation is given; dq-agent has none.
            reason = f"{key} is the suite parameter {value['$PARAMETER']!r}: write its value"
    if isinstance(item.get("description"), str):
        args["description"] = item["description"]
    severity = _SEVERITIES.get(str(item.get("severity")))
    if severity:
        args["severity"] = severity
    return args, reason or _problem(kind, args)


def _condition_text(condition: Any) -> str | None:
    """The string form of a row condition recent GX 1.x saves as structure, when there is one
    dq-agent reads as meaning the same: one column compared with a number or a text, not
    null, or a pandas or Spark filter passed through as written."""
    if not isinstance(condition, Mapping):
        return None
    if condition.get("type") == "pass_through":
        text = condition.get("pass_through_filter")
        return text if isinstance(text, str) else None
    column = condition.get("column")
    name = column.get("name") if isinstance(column, Mapping) else None
    if not isinstance(name, str):
        return None
    op = condition.get("operator")
    value = condition.get("parameter")
    if condition.get("type") == "nullity" and condition.get("is_null") is False:
        text, expected = f"col({json.dumps(name)}).notnull()", RowCondition(name)
    elif (
        condition.get("type") == "comparison"
        and op in ("==", "!=", "<", "<=", ">", ">=")
        and isinstance(value, int | float | str)
        and not isinstance(value, bool)
        and not (isinstance(value, float) and not math.isfinite(value))
    ):
        text = f"col({json.dumps(name)}) {op} {json.dumps(value, ensure_ascii=False)}"
        expected = RowCondition(name, op, value)
    else:
        return None
    # Kept only if dq-agent's own reader gives back what GX saved (no escapes, say).
    return text if parse_row_condition(text) == expected else None


def _problem(kind: str, args: dict[str, Any]) -> str | None:
    """Why dq-agent would refuse expectation ``kind`` with ``args``, as its loader does."""
    native = expectations.NATIVE_EXPECTATIONS.get(kind)
    # GX's registry imports GX, which takes seconds: asked only when dq-agent does not compile
    # the expectation. One not there was removed in GX 1.0, or is a contributed one.
    if native is None and kind not in expectations.expectation_names():
        return "not a Great Expectations 1.x expectation"
    common = {k: v for k, v in args.items() if k in _COMMON}
    model, values = (native, args) if native else (CheckArgs, common)
    problems: list[tuple[tuple[Any, ...], str]] = []
    try:
        model.model_validate(values)
    except ValidationError as exc:
        problems += [
            (e["loc"], "unknown argument" if e["type"] == "extra_forbidden" else e["msg"])
            for e in exc.errors(include_url=False)
        ]
    if native is None:
        kwargs = {k: v for k, v in args.items() if k not in _COMMON}
        problems += expectations.validate_expectation(kind, kwargs)
    return (
        "; ".join(
            f"{'.'.join(map(str, loc))}: {message}" if loc else message for loc, message in problems
        )
        or None
    )


def _default_name(kind: str, args: Mapping[str, Any]) -> str:
    """The name dq-agent's loader gives a check with no ``name:``."""
    target = args.get("column") or ",".join(args.get("column_list", []) or [])
    return f"{kind}({target})" if target else kind


def _notes(item: Mapping[str, Any]) -> list[str]:
    """GX's notes and meta of ``item``, as comments: dq-agent keeps neither."""
    notes = item.get("notes")
    notes = [notes] if isinstance(notes, str) else notes if isinstance(notes, list) else []
    lines = [_comment(f"note: {note}") for note in notes]
    if item.get("meta"):
        meta = json.dumps(item["meta"], ensure_ascii=False, default=str)
        lines.append(_comment(f"meta: {meta}"))
    return lines


def _comment(text: str) -> str:
    """``text`` as one comment line: anything but a printable character (a line break, a
    tab, a Unicode line separator) written as its Python escape."""
    return "# " + "".join(
        ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in text
    )


def _check(kind: str, args: dict[str, Any]) -> str:
    """``- type: {arguments}`` on one line if it fits, else one argument a line."""
    line = dump([{kind: Flow(args)}]).rstrip("\n")
    if len(line.splitlines()) == 1 and len(line) <= _FLOW_WIDTH - 2:  # indented under checks:
        return line
    return dump([{kind: args}], width=_FLOW_WIDTH).rstrip("\n")
