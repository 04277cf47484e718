"""Witness expressions: arithmetic over a record's columns, parsed here and never run as code.

A witness such as ``Seats__c * Price_Per_Seat__c`` states what a column should hold. The
grammar is deliberately tiny, so that a suite file can never smuggle code into the agent:

    expression := term (("+" | "-") term)*
    term       := unary (("*" | "/") unary)*
    unary      := "-" unary | primary
    primary    := NUMBER | COLUMN | FUNCTION "(" expression ("," expression)* ")"
                | "(" expression ")"

Numbers are decimal (``12``, ``0.5``, ``1e3``); columns are ``[A-Za-z_][A-Za-z0-9_]*``; the
functions are ``abs(x)``, ``coalesce(a, b, …)`` (the first non-null argument) and
``sum_of(a, b, …)`` (the total of the non-null arguments, null when all are null). Any other
operator is null-strict: a null input gives a null result, and so does a division by zero.

The same expression evaluates in Python (exactly, with :class:`~decimal.Decimal`) and in SQL
(SQLAlchemy Core, cast to a numeric type so that integer division never truncates).
"""

from __future__ import annotations

import decimal
import math
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal

import sqlalchemy as sa

from dq_agent.errors import DqAgentError

__all__ = [
    "FUNCTIONS",
    "MAX_DEPTH",
    "MAX_LENGTH",
    "Expression",
    "ExpressionError",
    "numeric_type",
    "parse",
]

MAX_LENGTH = 500
MAX_DEPTH = 24
# Literals beyond 10^±30 are no amounts, prices or quantities; refusing them keeps Decimal
# arithmetic and SQL casts in range.
_MAX_LITERAL_EXPONENT = 30
# Name → (fewest, most) arguments; None means any number.
FUNCTIONS: dict[str, tuple[int, int | None]] = {
    "abs": (1, 1),
    "coalesce": (1, None),
    "sum_of": (1, None),
}
_HELP = "a witness uses column names, numbers, + - * / and parentheses"
# Exact for products and sums of any amount a database holds; divisions are rounded to this.
_PRECISION = 50


class ExpressionError(DqAgentError, ValueError):
    """A witness expression that does not parse; ``offset`` is the 0-based character index."""

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(message)
        self.message = message
        self.offset = offset


# --- syntax tree ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Number:
    value: Decimal


@dataclass(frozen=True)
class _Column:
    name: str


@dataclass(frozen=True)
class _Negate:
    operand: _Node


@dataclass(frozen=True)
class _Binary:
    op: Literal["+", "-", "*", "/"]
    left: _Node
    right: _Node


@dataclass(frozen=True)
class _Call:
    function: str
    args: tuple[_Node, ...]


_Node = _Number | _Column | _Negate | _Binary | _Call


def _children(node: _Node) -> tuple[_Node, ...]:
    if isinstance(node, _Negate):
        return (node.operand,)
    if isinstance(node, _Binary):
        return (node.left, node.right)
    if isinstance(node, _Call):
        return node.args
    return ()


def _walk(node: _Node) -> Iterator[_Node]:
    stack = [node]
    while stack:
        current = stack.pop()
        yield current
        stack.extend(_children(current))


# --- the expression -------------------------------------------------------------------------


@dataclass(frozen=True)
class Expression:
    """A parsed witness: its source text and what it computes."""

    text: str
    _root: _Node = field(repr=False, compare=False)

    def columns(self) -> frozenset[str]:
        """The column names the expression reads."""
        return frozenset(n.name for n in _walk(self._root) if isinstance(n, _Column))

    def to_sql(self, column: Callable[[str], sa.ColumnElement[Any]]) -> sa.ColumnElement[Any]:
        """The expression in SQL over ``column(name)``; ``x / 0`` is NULL, never an error."""
        return _to_sql(self._root, column)

    def null_sql(self, column: Callable[[str], sa.ColumnElement[Any]]) -> sa.ColumnElement[bool]:
        """SQL that holds exactly when the expression is NULL (an input is null, a divisor
        zero), without computing it: ``seats IS NULL OR price IS NULL`` for ``seats * price``."""
        return _null_sql(self._root, column)

    def evaluate(self, row: Mapping[str, Any], *, exact: bool = False) -> Decimal | None:
        """The value for one record (a mapping from column name to value).

        None when an input is null or a divisor is zero; with ``exact=True`` also None when
        the value has no exact decimal form (``1 / 3``).
        """
        context = decimal.Context(prec=_PRECISION, traps=[])
        value = _evaluate(self._root, row, context)
        if value is None or not value.is_finite():
            return None
        if exact and context.flags[decimal.Inexact]:
            return None
        return value

    def __str__(self) -> str:
        return self.text


def _evaluate(node: _Node, row: Mapping[str, Any], ctx: decimal.Context) -> Decimal | None:
    if isinstance(node, _Number):
        return node.value
    if isinstance(node, _Column):
        return _to_decimal(node.name, row[node.name])
    if isinstance(node, _Negate):
        operand = _evaluate(node.operand, row, ctx)
        return None if operand is None else ctx.minus(operand)
    if isinstance(node, _Binary):
        left = _evaluate(node.left, row, ctx)
        right = _evaluate(node.right, row, ctx)
        if left is None or right is None:
            return None
        if node.op == "+":
            return ctx.add(left, right)
        if node.op == "-":
            return ctx.subtract(left, right)
        if node.op == "*":
            return ctx.multiply(left, right)
        return None if right == 0 else ctx.divide(left, right)
    args = [_evaluate(a, row, ctx) for a in node.args]
    present = [a for a in args if a is not None]
    if node.function == "abs":
        return None if args[0] is None else ctx.abs(args[0])
    if node.function == "coalesce":
        return present[0] if present else None
    # sum_of
    if not present:
        return None
    total = Decimal(0)
    for value in present:
        total = ctx.add(total, value)
    return total


def _to_decimal(name: str, value: Any) -> Decimal | None:
    if value is None:
        return None
    if isinstance(value, Decimal):
        return value if value.is_finite() else None
    if isinstance(value, bool):
        return Decimal(int(value))
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        # The shortest text that reads back as the float: 0.1, not 0.1000000000000000055…
        return Decimal(repr(value)) if math.isfinite(value) else None
    if isinstance(value, str):
        try:
            parsed = Decimal(value.strip())
        except decimal.InvalidOperation:
            raise ValueError(f"column {name} holds {value!r}, not a number") from None
        return parsed if parsed.is_finite() else None
    raise ValueError(f"column {name} holds {value!r}, not a number")


# --- SQL ------------------------------------------------------------------------------------


def numeric_type() -> sa.types.TypeEngine[Any]:
    """A numeric SQL type wide enough for witnesses on every dialect we know.

    Plain NUMERIC is exact on PostgreSQL; on SQLite it keeps integers integral (and integer
    division truncating), so REAL is used there, and DOUBLE on DuckDB (its NUMERIC has three
    decimal places); MySQL, SQL Server and the warehouses (Snowflake, Redshift, Databricks,
    Trino) default NUMERIC/DECIMAL to zero decimal places, so they get explicit ones.
    """
    return (
        sa.Numeric()
        .with_variant(sa.Float(), "sqlite")
        .with_variant(sa.Double(), "duckdb")
        .with_variant(sa.Numeric(65, 12), "mysql", "mariadb")
        .with_variant(sa.Numeric(38, 10), "mssql", "snowflake", "redshift", "databricks", "trino")
    )


def _null_sql(
    node: _Node, column: Callable[[str], sa.ColumnElement[Any]]
) -> sa.ColumnElement[bool]:
    if isinstance(node, _Number):
        return sa.false()
    if isinstance(node, _Column):
        return column(node.name).is_(None)
    if isinstance(node, _Negate):
        return _null_sql(node.operand, column)
    if isinstance(node, _Binary):
        either = sa.or_(_null_sql(node.left, column), _null_sql(node.right, column))
        if node.op != "/":
            return either
        zero = sa.literal(Decimal(0), numeric_type())
        return sa.or_(either, _to_sql(node.right, column) == zero)
    if node.function == "abs":
        return _null_sql(node.args[0], column)
    # coalesce and sum_of are null only when every argument is.
    return sa.and_(*[_null_sql(a, column) for a in node.args])


def _to_sql(node: _Node, column: Callable[[str], sa.ColumnElement[Any]]) -> sa.ColumnElement[Any]:
    num = numeric_type()
    if isinstance(node, _Number):
        # Cast, not only typed: MySQL gives a quotient the dividend's scale plus four, so a
        # bare 7 would divide to four decimal places.
        return sa.cast(sa.literal(node.value, num), num)
    if isinstance(node, _Column):
        return sa.cast(column(node.name), num)
    if isinstance(node, _Negate):
        return -_to_sql(node.operand, column)
    if isinstance(node, _Binary):
        left, right = _to_sql(node.left, column), _to_sql(node.right, column)
        if node.op == "+":
            return left + right
        if node.op == "-":
            return left - right
        if node.op == "*":
            return left * right
        return left / sa.func.nullif(right, sa.literal(Decimal(0), num), type_=num)
    args = [_to_sql(a, column) for a in node.args]
    if node.function == "abs":
        return sa.func.abs(args[0], type_=num)
    if node.function == "coalesce":
        return sa.func.coalesce(*args, type_=num)
    zero = sa.literal(Decimal(0), num)
    total: sa.ColumnElement[Any] = sa.func.coalesce(args[0], zero, type_=num)
    for arg in args[1:]:
        total = total + sa.func.coalesce(arg, zero, type_=num)
    return sa.case((sa.func.coalesce(*args, type_=num).is_(None), sa.null()), else_=total)


# --- parsing --------------------------------------------------------------------------------

_TOKEN = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<number>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op>[-+*/(),])
    """,
    re.VERBOSE,
)


@dataclass(frozen=True)
class _Token:
    kind: Literal["number", "name", "op", "end"]
    text: str
    offset: int

    def shown(self) -> str:
        return "the end" if self.kind == "end" else f"'{self.text}'"


def _tokens(text: str) -> Iterator[_Token]:
    """Tokens on demand, so that an error is reported where the parser first meets it."""
    position = 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None:
            raise ExpressionError(
                f"unexpected character {text[position]!r} at {position} ({_HELP})", position
            )
        kind = match.lastgroup
        if kind == "number":
            yield _Token("number", match.group(), position)
        elif kind == "name":
            yield _Token("name", match.group(), position)
        elif kind == "op":
            yield _Token("op", match.group(), position)
        position = match.end()
    yield _Token("end", "", len(text))


class _Parser:
    def __init__(self, text: str) -> None:
        self.stream = _tokens(text)
        self.current = next(self.stream)
        self.depth = 0

    def take(self) -> _Token:
        token = self.current
        if token.kind != "end":
            self.current = next(self.stream)
        return token

    def at(self, *ops: str) -> bool:
        return self.current.kind == "op" and self.current.text in ops

    def fail(self, expected: str) -> ExpressionError:
        token = self.current
        return ExpressionError(
            f"expected {expected} at {token.offset}, got {token.shown()}", token.offset
        )

    def nest(self, token: _Token) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise ExpressionError(
                f"nested deeper than {MAX_DEPTH} levels at {token.offset}", token.offset
            )

    def expression(self) -> _Node:
        node = self.term()
        while self.at("+", "-"):
            op = self.take().text
            node = _Binary("+" if op == "+" else "-", node, self.term())
        return node

    def term(self) -> _Node:
        node = self.unary()
        while self.at("*", "/"):
            op = self.take().text
            node = _Binary("*" if op == "*" else "/", node, self.unary())
        return node

    def unary(self) -> _Node:
        if self.at("-"):
            token = self.take()
            self.nest(token)
            operand = self.unary()
            self.depth -= 1
            if isinstance(operand, _Number):
                return _Number(-operand.value)
            return _Negate(operand)
        return self.primary()

    def primary(self) -> _Node:
        token = self.current
        if token.kind == "number":
            self.take()
            return _Number(_literal(token))
        if token.kind == "name":
            self.take()
            if self.at("("):
                return self.call(token)
            return _Column(token.text)
        if self.at("("):
            self.take()
            self.nest(token)
            node = self.expression()
            if not self.at(")"):
                raise self.fail("an operator or ')'")
            self.take()
            self.depth -= 1
            return node
        raise self.fail("a column name, a number or '('")

    def call(self, name: _Token) -> _Node:
        if name.text not in FUNCTIONS:
            available = ", ".join(sorted(FUNCTIONS))
            raise ExpressionError(
                f"unknown function '{name.text}' at {name.offset}; available: {available}",
                name.offset,
            )
        self.take()  # "("
        self.nest(name)
        args = [self.expression()]
        while self.at(","):
            self.take()
            args.append(self.expression())
        if not self.at(")"):
            raise self.fail("an operator, ',' or ')'")
        self.take()
        self.depth -= 1
        fewest, most = FUNCTIONS[name.text]
        if len(args) < fewest or (most is not None and len(args) > most):
            wanted = f"{fewest}" if fewest == most else f"at least {fewest}"
            noun = "argument" if wanted == "1" else "arguments"
            raise ExpressionError(
                f"{name.text}() takes {wanted} {noun} at {name.offset}, got {len(args)}",
                name.offset,
            )
        return _Call(name.text, tuple(args))


def _literal(token: _Token) -> Decimal:
    value = Decimal(token.text)
    if value != 0 and abs(value.adjusted()) > _MAX_LITERAL_EXPONENT:
        raise ExpressionError(f"number {token.text} out of range at {token.offset}", token.offset)
    return value


def parse(text: str) -> Expression:
    """Parse a witness expression; raises :class:`ExpressionError` saying what was expected."""
    if len(text) > MAX_LENGTH:
        raise ExpressionError(
            f"longer than {MAX_LENGTH} characters ({len(text)} given)", MAX_LENGTH
        )
    parser = _Parser(text)
    root = parser.expression()
    if parser.current.kind != "end":
        raise parser.fail("an operator or the end")
    return Expression(text, root)
