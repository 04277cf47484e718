"""The subset of SOQL the Salesforce emulator answers: a tokenizer and a recursive-descent parser.

Syntax only: whether a field or object exists is the emulator's business, since only it knows
the schema. Errors carry the offending position so they render the way Salesforce renders them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime
from enum import Enum

__all__ = [
    "BoolOp",
    "Comparison",
    "Condition",
    "DateKeyword",
    "FieldRef",
    "Like",
    "Literal",
    "Membership",
    "Not",
    "OrderItem",
    "Query",
    "SoqlError",
    "Value",
    "like_pattern",
    "parse",
    "tokenize",
]

# Words that can never be field names; SOQL reserves them.
RESERVED = frozenset(
    [
        "AND",
        "ASC",
        "DESC",
        "EXCLUDES",
        "FIRST",
        "FROM",
        "GROUP",
        "HAVING",
        "IN",
        "INCLUDES",
        "LAST",
        "LIKE",
        "LIMIT",
        "NOT",
        "NULL",
        "NULLS",
        "OR",
        "SELECT",
        "WHERE",
        "WITH",
        "OFFSET",
        "ORDER",
        "BY",
    ]
)
DATE_KEYWORDS = frozenset({"TODAY", "YESTERDAY", "TOMORROW"})
COMPARISON_OPERATORS = frozenset({"=", "!=", "<>", "<", "<=", ">", ">="})
# Characters a number, date or datetime literal is made of: scanned as one run, then classified.
_LITERAL_CHARS = frozenset("0123456789-:.TZ+")
_STRING_ESCAPES = {"'": "'", '"': '"', "\\": "\\", "n": "\n", "r": "\r", "t": "\t", "b": "\b"}
_STRING_ESCAPES.update({"f": "\f", "%": "%", "_": "_"})


class SoqlError(Exception):
    """A query Salesforce would refuse: ``code`` is its errorCode, ``message`` its message."""

    def __init__(self, code: str, reason: str, *, source: str, position: int) -> None:
        self.code = code
        self.reason = reason
        self.message = _pointed_message(source, position, reason)
        super().__init__(self.message)


def _pointed_message(source: str, position: int, reason: str) -> str:
    """Salesforce's layout: the query line, a caret under the column, then the reason."""
    position = min(max(position, 0), len(source))
    row = source.count("\n", 0, position) + 1
    line_start = source.rfind("\n", 0, position) + 1
    line_end = source.find("\n", position)
    line = source[line_start : line_end if line_end >= 0 else len(source)]
    column = position - line_start + 1
    caret = " " * (column - 1) + "^"
    return f"\n{line}\n{caret}\nERROR at Row:{row}:Column:{column}\n{reason}"


class Kind(Enum):
    WORD = "word"
    STRING = "string"
    NUMBER = "number"
    DATE = "date"
    DATETIME = "datetime"
    SYMBOL = "symbol"
    END = "end"


@dataclass(frozen=True)
class Token:
    kind: Kind
    text: str  # as written (for strings: between the quotes, escapes untouched)
    position: int
    value: str | int | float | date | datetime | None = None

    def is_word(self, *words: str) -> bool:
        return self.kind is Kind.WORD and self.text.upper() in words

    def is_symbol(self, *symbols: str) -> bool:
        return self.kind is Kind.SYMBOL and self.text in symbols

    def shown(self) -> str:
        return "<EOF>" if self.kind is Kind.END else f"'{self.text}'"


def tokenize(source: str) -> list[Token]:
    """The tokens of ``source``, ending with an END token."""
    tokens: list[Token] = []
    i = 0
    while i < len(source):
        char = source[i]
        if char.isspace():
            i += 1
        elif char == "'":
            token = _scan_string(source, i)
            tokens.append(token)
            i += len(token.text) + 2
        elif char.isdigit():
            token = _scan_literal(source, i)
            tokens.append(token)
            i += len(token.text)
        elif char.isalpha() or char == "_":
            end = i
            while end < len(source) and (source[end].isalnum() or source[end] in "_."):
                end += 1
            tokens.append(Token(Kind.WORD, source[i:end], i))
            i = end
        else:
            token = _scan_symbol(source, i)
            tokens.append(token)
            i += len(token.text)
    tokens.append(Token(Kind.END, "", len(source)))
    return tokens


def _scan_string(source: str, start: int) -> Token:
    chars: list[str] = []
    i = start + 1
    while i < len(source):
        char = source[i]
        if char == "'":
            return Token(Kind.STRING, source[start + 1 : i], start, "".join(chars))
        if char == "\\":
            escaped = source[i + 1 : i + 2]
            if escaped not in _STRING_ESCAPES:
                raise _malformed(source, i, "Invalid string literal: bad escape sequence")
            chars.append(_STRING_ESCAPES[escaped])
            i += 2
        else:
            chars.append(char)
            i += 1
    raise _malformed(source, start, "Invalid string literal: missing closing quote")


def _scan_literal(source: str, start: int) -> Token:
    end = start
    while end < len(source) and source[end] in _LITERAL_CHARS:
        end += 1
    text = source[start:end]
    if len(text) >= 10 and text[4] == "-" and text[7] == "-":
        return _date_token(source, text, start)
    try:
        number: int | float = int(text) if text.isdigit() else float(text)
    except ValueError:
        raise _malformed(source, start, f"unexpected token: '{text}'") from None
    return Token(Kind.NUMBER, text, start, number)


def _date_token(source: str, text: str, start: int) -> Token:
    try:
        day = date.fromisoformat(text[:10])
        if len(text) == 10:
            return Token(Kind.DATE, text, start, day)
        # SOQL wants seconds and an explicit zone (Z or ±hh:mm); Python is more lenient.
        if text[10] != "T" or len(text) < 20 or text[13] != ":" or text[16] != ":":
            raise ValueError(text)
        moment = datetime.fromisoformat(text)
        if moment.tzinfo is None:
            raise ValueError(text)
    except ValueError:
        raise _malformed(source, start, f"invalid date or datetime literal: '{text}'") from None
    return Token(Kind.DATETIME, text, start, moment)


def _scan_symbol(source: str, start: int) -> Token:
    pair = source[start : start + 2]
    if pair in ("!=", "<>", "<=", ">="):
        return Token(Kind.SYMBOL, pair, start)
    if source[start] in "=<>(),-":
        return Token(Kind.SYMBOL, source[start], start)
    raise _malformed(source, start, f"unexpected token: '{source[start]}'")


def _malformed(source: str, position: int, reason: str) -> SoqlError:
    return SoqlError("MALFORMED_QUERY", reason, source=source, position=position)


def like_pattern(pattern: Literal) -> re.Pattern[str]:
    """LIKE's ``%`` and ``_`` as a case-insensitive regex; escaped ones stay literal."""
    parts: list[str] = []
    raw = pattern.raw
    i = 0
    while i < len(raw):
        char = raw[i]
        if char == "\\" and i + 1 < len(raw):
            parts.append(re.escape(_STRING_ESCAPES.get(raw[i + 1], raw[i + 1])))
            i += 2
            continue
        parts.append(".*" if char == "%" else "." if char == "_" else re.escape(char))
        i += 1
    return re.compile("".join(parts), re.IGNORECASE | re.DOTALL)


# ---- the syntax tree -------------------------------------------------------------------------


@dataclass(frozen=True)
class FieldRef:
    """``Amount`` or ``Owner.Email``: a field, possibly through relationships."""

    path: tuple[str, ...]
    position: int

    @property
    def text(self) -> str:
        return ".".join(self.path)


@dataclass(frozen=True)
class Literal:
    value: str | int | float | bool | date | datetime | None
    raw: str  # the text as written; LIKE needs it to tell \% from %
    position: int

    @property
    def quoted(self) -> bool:
        return isinstance(self.value, str)


@dataclass(frozen=True)
class DateKeyword:
    """``TODAY`` and friends: resolved against the emulator's clock when the query runs."""

    name: str
    position: int


Value = Literal | DateKeyword


@dataclass(frozen=True)
class Comparison:
    field: FieldRef
    operator: str  # one of COMPARISON_OPERATORS, with <> spelled !=
    value: Value


@dataclass(frozen=True)
class Like:
    field: FieldRef
    pattern: Literal


@dataclass(frozen=True)
class Membership:
    field: FieldRef
    values: tuple[Value, ...]
    negated: bool


@dataclass(frozen=True)
class Not:
    operand: Condition


@dataclass(frozen=True)
class BoolOp:
    operator: str  # "AND" or "OR"
    operands: tuple[Condition, ...]


Condition = Comparison | Like | Membership | Not | BoolOp


@dataclass(frozen=True)
class OrderItem:
    field: FieldRef
    descending: bool
    nulls_last: bool


@dataclass(frozen=True)
class Query:
    fields: tuple[FieldRef, ...]  # empty for SELECT COUNT()
    count_only: bool
    object_name: str
    object_position: int
    where: Condition | None
    order_by: tuple[OrderItem, ...]
    limit: int | None
    offset: int | None
    source: str


def parse(source: str) -> Query:
    """Parse one SOQL query, raising :class:`SoqlError` (MALFORMED_QUERY) on bad syntax."""
    return _Parser(source).query()


class _Parser:
    def __init__(self, source: str) -> None:
        self.source = source
        self.tokens = tokenize(source)
        self.index = 0

    # -- token helpers

    def peek(self) -> Token:
        return self.tokens[self.index]

    def advance(self) -> Token:
        token = self.tokens[self.index]
        if token.kind is not Kind.END:
            self.index += 1
        return token

    def unexpected(self, token: Token | None = None) -> SoqlError:
        token = token or self.peek()
        return _malformed(self.source, token.position, f"unexpected token: {token.shown()}")

    def expect_word(self, word: str) -> Token:
        if not self.peek().is_word(word):
            raise self.unexpected()
        return self.advance()

    def expect_symbol(self, symbol: str) -> Token:
        if not self.peek().is_symbol(symbol):
            raise self.unexpected()
        return self.advance()

    def accept_word(self, word: str) -> bool:
        if self.peek().is_word(word):
            self.advance()
            return True
        return False

    # -- grammar

    def query(self) -> Query:
        self.expect_word("SELECT")
        fields, count_only = self.select_list()
        self.expect_word("FROM")
        target = self.advance()
        if target.kind is not Kind.WORD or target.text.upper() in RESERVED or "." in target.text:
            raise self.unexpected(target)
        where = self.condition() if self.accept_word("WHERE") else None
        order_by = self.order_by() if self.accept_word("ORDER") else ()
        limit = self.integer() if self.accept_word("LIMIT") else None
        offset = self.integer() if self.accept_word("OFFSET") else None
        if self.peek().kind is not Kind.END:
            raise self.unexpected()
        return Query(
            fields=tuple(fields),
            count_only=count_only,
            object_name=target.text,
            object_position=target.position,
            where=where,
            order_by=order_by,
            limit=limit,
            offset=offset,
            source=self.source,
        )

    def select_list(self) -> tuple[list[FieldRef], bool]:
        if self.peek().is_word("COUNT") and self.tokens[self.index + 1].is_symbol("("):
            self.advance()
            self.expect_symbol("(")
            if not self.peek().is_symbol(")"):
                reason = "only COUNT() is supported here, not COUNT(field)"
                raise _malformed(self.source, self.peek().position, reason)
            self.advance()
            return [], True
        fields = [self.field_ref()]
        while self.peek().is_symbol(","):
            self.advance()
            fields.append(self.field_ref())
        return fields, False

    def field_ref(self) -> FieldRef:
        token = self.advance()
        if token.kind is not Kind.WORD or token.text.upper() in RESERVED:
            raise self.unexpected(token)
        path = tuple(token.text.split("."))
        if not all(path):
            raise self.unexpected(token)
        return FieldRef(path, token.position)

    def condition(self) -> Condition:
        """Operands joined by AND or by OR; SOQL refuses to mix them without parentheses."""
        first = self.unary()
        joiner = self.peek()
        if not joiner.is_word("AND", "OR"):
            return first
        operator = joiner.text.upper()
        operands = [first]
        while self.peek().is_word("AND", "OR"):
            if self.peek().text.upper() != operator:
                raise self.unexpected()
            self.advance()
            operands.append(self.unary())
        return BoolOp(operator, tuple(operands))

    def unary(self) -> Condition:
        if self.accept_word("NOT"):
            return Not(self.unary())
        if self.peek().is_symbol("("):
            self.advance()
            inner = self.condition()
            self.expect_symbol(")")
            return inner
        return self.predicate()

    def predicate(self) -> Condition:
        field = self.field_ref()
        token = self.peek()
        if token.is_symbol(*COMPARISON_OPERATORS):
            self.advance()
            operator = "!=" if token.text == "<>" else token.text
            return Comparison(field, operator, self.value())
        if self.accept_word("LIKE"):
            pattern = self.value()
            if not isinstance(pattern, Literal) or not pattern.quoted:
                raise self.unexpected(self.tokens[self.index - 1])
            return Like(field, pattern)
        negated = self.accept_word("NOT")
        if self.accept_word("IN"):
            return Membership(field, self.value_list(), negated)
        raise self.unexpected()

    def value_list(self) -> tuple[Value, ...]:
        self.expect_symbol("(")
        if self.peek().is_word("SELECT"):
            reason = "semi-join subqueries are not supported by the sandbox"
            raise _malformed(self.source, self.peek().position, reason)
        values = [self.value()]
        while self.peek().is_symbol(","):
            self.advance()
            values.append(self.value())
        self.expect_symbol(")")
        return tuple(values)

    def value(self) -> Value:
        token = self.advance()
        if token.kind in (Kind.STRING, Kind.NUMBER, Kind.DATE, Kind.DATETIME):
            return Literal(token.value, token.text, token.position)
        if token.is_symbol("-") and self.peek().kind is Kind.NUMBER:
            number = self.advance()
            assert isinstance(number.value, int | float)
            return Literal(-number.value, f"-{number.text}", token.position)
        if token.is_word("TRUE", "FALSE"):
            return Literal(token.text.upper() == "TRUE", token.text, token.position)
        if token.is_word("NULL"):
            return Literal(None, token.text, token.position)
        if token.is_word(*DATE_KEYWORDS):
            return DateKeyword(token.text.upper(), token.position)
        raise self.unexpected(token)

    def order_by(self) -> tuple[OrderItem, ...]:
        self.expect_word("BY")
        items = [self.order_item()]
        while self.peek().is_symbol(","):
            self.advance()
            items.append(self.order_item())
        return tuple(items)

    def order_item(self) -> OrderItem:
        field = self.field_ref()
        descending = False
        if self.peek().is_word("ASC", "DESC"):
            descending = self.advance().text.upper() == "DESC"
        nulls_last = False  # Salesforce sorts nulls first unless told otherwise, either way
        if self.accept_word("NULLS"):
            if not self.peek().is_word("FIRST", "LAST"):
                raise self.unexpected()
            nulls_last = self.advance().text.upper() == "LAST"
        return OrderItem(field, descending, nulls_last)

    def integer(self) -> int:
        token = self.advance()
        if token.kind is not Kind.NUMBER or not isinstance(token.value, int):
            raise self.unexpected(token)
        return token.value
