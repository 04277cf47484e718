"""GX's ``row_condition`` strings, read the way GX reads them, as SQL for the single scan.

GX (``condition_parser: great_expectations``) accepts ``col("name") OP value`` where OP is
one of ``== != < <= > >=`` and value a number, a quoted string or ``date("…")``, and
``col("name").notnull()``. It compares the untyped column with the value bound as what it
is (a number or a string). Only conditions this module reads with certainty are compiled:
GX's own parser ignores trailing text and strips or converts some characters, and any such
case is left to GX, so a compiled condition always means what GX would have made of it.
"""

from __future__ import annotations

import ast
import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from dq_agent.sources.base import Relation

_OPERATORS: dict[str, Callable[[Any, Any], Any]] = {
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
# A name without quotes, backslashes (GX converts "\t" and the like) or line breaks.
_COLUMN = r'col\("(?P<column>[^"\\\r\n]+)"\)'
# A quoted value as GX's grammar takes it: printable ASCII but quotes, not starting with
# whitespace (GX would drop it), with no backslash escapes to interpret.
_TEXT = r"""(?P<q>["'])(?P<text>[!#-&(-~](?:[ \t!#-&(-~]*))(?P=q)"""
_NUMBER = r"(?P<number>[+-]?\d+(?:\.\d*)?(?:[eE][+-]?\d+)?)"
# The whitespace GX's parser skips between tokens (``\s`` would also take e.g. form feeds).
_WS = r"[ \t\r\n]*"
_DATE = rf"""date{_WS}\({_WS}(?P<dq>["'])(?P<date>[!#-&(-~](?:[ \t!#-&(-~]*))(?P=dq){_WS}\)"""
_COMPARISON = re.compile(
    rf"{_WS}{_COLUMN}{_WS}(?P<op>>=|<=|==|!=|>|<){_WS}(?:{_DATE}|{_TEXT}|{_NUMBER}){_WS}"
)
_NOT_NULL = re.compile(rf"{_WS}{_COLUMN}{_WS}(?i:\.notnull\(\)){_WS}")


@dataclass(frozen=True)
class RowCondition:
    """A parsed condition: ``column OP value``, or ``column IS NOT NULL`` when ``op`` is None."""

    column: str
    op: str | None = None
    value: Any = None

    def clause(self, relation: Relation) -> sa.ColumnElement[bool]:
        # Untyped on the column side, as GX builds it: the value binds as its own type.
        column = sa.type_coerce(relation.column(self.column), sa.types.NULLTYPE)
        if self.op is None:
            return column.is_not(None)
        return _OPERATORS[self.op](column, sa.literal(self.value))  # type: ignore[no-any-return]


def parse_row_condition(text: str) -> RowCondition | None:
    """The condition ``text`` means to GX, or None when it is not one read here with certainty."""
    found = _NOT_NULL.fullmatch(text)
    if found:
        return RowCondition(found["column"])
    found = _COMPARISON.fullmatch(text)
    if not found:
        return None
    value: Any
    if found["number"] is not None:
        digits = found["number"]
        try:
            value = int(digits)
        except ValueError:
            value = float(digits)
    else:
        value = found["date"] if found["date"] is not None else found["text"]
    return RowCondition(found["column"], found["op"], value)


def for_pandas(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """An expectation's arguments for GX's pandas engine, which does not read GX's own
    condition grammar: a condition read here becomes the pandas query that means the same."""
    condition = row_condition_of(kwargs) if compiles(kwargs) else None
    if condition is None:
        return dict(kwargs)
    column = "`" + condition.column.replace("`", "") + "`"
    query = (
        f"{column}.notnull()"
        if condition.op is None
        else f"{column} {condition.op} {condition.value!r}"
    )
    return {**kwargs, "row_condition": query, "condition_parser": "pandas"}


def row_condition_of(kwargs: Mapping[str, Any]) -> RowCondition | None:
    """The compiled row filter of an expectation's arguments (None when it has none)."""
    text = kwargs.get("row_condition")
    return parse_row_condition(text) if isinstance(text, str) else None


def compiles(kwargs: Mapping[str, Any]) -> bool:
    """Whether the expectation's row filter, if any, is one the scan can apply as GX does."""
    text = kwargs.get("row_condition")
    if text is None:
        return kwargs.get("condition_parser") in (None, "great_expectations")
    return (
        kwargs.get("condition_parser") == "great_expectations"
        and isinstance(text, str)
        and parse_row_condition(text) is not None
    )


# Every col("name") of a condition: GX's grammar names a column no other way.
_COLUMNS = re.compile(_COLUMN)
# A pandas query's `quoted name` (one with spaces, say).
_BACKTICKED = re.compile(r"`([^`]+)`")


def condition_columns(kwargs: Mapping[str, Any]) -> list[str]:
    """The columns an expectation's ``row_condition`` names, each once, where they can be told
    for certain: each ``col("name")`` of a great_expectations condition; the names a pandas
    one (``status == "open"``) reads. A spark (SQL) condition, or one that does not parse,
    names none here."""
    text = kwargs.get("row_condition")
    parser = kwargs.get("condition_parser")
    if not isinstance(text, str):
        return []
    if parser == "great_expectations" or (parser is None and _COLUMNS.search(text)):
        return list(dict.fromkeys(found["column"] for found in _COLUMNS.finditer(text)))
    if parser in (None, "pandas"):
        return _pandas_columns(text)
    return []


def _pandas_columns(text: str) -> list[str]:
    """The bare names of a pandas query (a Python expression), but those it calls."""
    quoted: dict[str, str] = {}

    def placeholder(found: re.Match[str]) -> str:
        name = f"_quoted_{len(quoted)}"
        quoted[name] = found[1]
        return name

    source = _BACKTICKED.sub(placeholder, text)
    if "@" in source:  # an @variable of the caller's, not a column: not told apart here
        return []
    try:
        tree = ast.parse(source.strip(), mode="eval")
    except SyntaxError:
        return []
    called = {id(node.func) for node in ast.walk(tree) if isinstance(node, ast.Call)}
    # ``index`` is pandas' name for the row labels, not a column.
    names = sorted(
        (node.col_offset, node.id)
        for node in ast.walk(tree)
        if isinstance(node, ast.Name) and id(node) not in called and node.id != "index"
    )
    return list(dict.fromkeys(quoted.get(name, name) for _, name in names))
