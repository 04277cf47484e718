"""Witness expressions: the grammar, exact evaluation, the same answers in SQL, and refusals."""

from __future__ import annotations

import dataclasses
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa

from dq_agent.errors import DqAgentError
from dq_agent.expressions import MAX_DEPTH, MAX_LENGTH, Expression, ExpressionError, parse

HELP = " (a witness uses column names, numbers, + - * / and parentheses)"
ROW = {"a": 7, "b": Decimal("2.00"), "c": 0.1, "n": None, "z": 0}


def value(text: str, row: dict[str, Any] | None = None) -> Decimal | None:
    return parse(text).evaluate(ROW if row is None else row)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a + b * 3", Decimal("13")),  # * binds tighter than +
        ("(a + b) * 3", Decimal("27")),
        ("a - b - 1", Decimal("4")),  # left to right
        ("a / b / 7", Decimal("0.5")),
        ("a / b", Decimal("3.5")),  # no integer division
        ("-a * b", Decimal("-14")),
        ("- -a", Decimal("7")),
        ("2 * -a", Decimal("-14")),
        ("a - -1", Decimal("8")),
        ("1.5e2 + .5 + 3.", Decimal("153.5")),
        ("c + c + c", Decimal("0.3")),  # floats by their shortest text: exact decimals
        ("abs(b - a)", Decimal("5")),
        ("coalesce(n, a)", Decimal("7")),
        ("coalesce(n, n)", None),
        ("sum_of(a, n, b)", Decimal("9")),
        ("sum_of(n, n)", None),
        ("a * n", None),  # any other operator is null-strict
        ("-n", None),
        ("abs(n)", None),
        ("a / z", None),  # division by zero
        ("a / (b - 2)", None),
    ],
)
def test_evaluation_follows_the_grammar_exactly(text: str, expected: Decimal | None) -> None:
    assert value(text) == expected


def test_an_expression_is_frozen_and_knows_its_columns() -> None:
    expression = parse("Seats__c * Price_Per_Seat__c + coalesce(Fee, 0)")
    assert expression.text == "Seats__c * Price_Per_Seat__c + coalesce(Fee, 0)"
    assert str(expression) == expression.text
    assert expression.columns() == frozenset({"Seats__c", "Price_Per_Seat__c", "Fee"})
    assert parse("12 * 3").columns() == frozenset()
    with pytest.raises(dataclasses.FrozenInstanceError):
        expression.text = "x"  # type: ignore[misc]


def test_exact_evaluation_refuses_values_without_an_exact_decimal_form() -> None:
    third = parse("a / 3")
    assert str(third.evaluate({"a": 1})) == "0." + "3" * 50
    assert third.evaluate({"a": 1}, exact=True) is None
    assert third.evaluate({"a": 6}, exact=True) == Decimal(2)
    assert parse("a / 8").evaluate({"a": 1}, exact=True) == Decimal("0.125")


def test_database_values_of_any_numeric_type_are_read_exactly() -> None:
    times = parse("a * b")
    assert times.evaluate({"a": 3, "b": 0.1}) == Decimal("0.3")
    assert times.evaluate({"a": True, "b": "2.5"}) == Decimal("2.5")
    assert times.evaluate({"a": float("nan"), "b": 1}) is None
    with pytest.raises(ValueError, match="^column a holds 'seven', not a number$"):
        times.evaluate({"a": "seven", "b": 1})
    with pytest.raises(KeyError):
        times.evaluate({"a": 1})


@pytest.mark.parametrize(
    ("text", "message", "offset"),
    [
        (
            "__import__('os')",
            "unknown function '__import__' at 0; available: abs, coalesce, sum_of",
            0,
        ),
        ("a.__class__", "unexpected character '.' at 1" + HELP, 1),
        ("'x'", 'unexpected character "\'" at 0' + HELP, 0),
        ("a[0]", "unexpected character '[' at 1" + HELP, 1),
        ("lambda x: x", "expected an operator or the end at 7, got 'x'", 7),
        ("a + )", "expected a column name, a number or '(' at 4, got ')'", 4),
        ("Seats * )", "expected a column name, a number or '(' at 8, got ')'", 8),
        ("", "expected a column name, a number or '(' at 0, got the end", 0),
        ("a +", "expected a column name, a number or '(' at 3, got the end", 3),
        ("(a + b", "expected an operator or ')' at 6, got the end", 6),
        ("2a", "expected an operator or the end at 1, got 'a'", 1),
        ("a ** 2", "expected a column name, a number or '(' at 3, got '*'", 3),
        ("a % 2", "unexpected character '%' at 2" + HELP, 2),
        ("a == b", "unexpected character '=' at 2" + HELP, 2),
        ("os.system(1)", "unexpected character '.' at 2" + HELP, 2),
        ("eval(a)", "unknown function 'eval' at 0; available: abs, coalesce, sum_of", 0),
        ("coalesce(a b)", "expected an operator, ',' or ')' at 11, got 'b'", 11),
        ("abs(a, b)", "abs() takes 1 argument at 0, got 2", 0),
        ("sum_of()", "expected a column name, a number or '(' at 7, got ')'", 7),
        ("1e31", "number 1e31 out of range at 0", 0),
        ("1.2.3", "expected an operator or the end at 3, got '.3'", 3),
    ],
)
def test_anything_but_arithmetic_is_refused_with_what_was_expected(
    text: str, message: str, offset: int
) -> None:
    with pytest.raises(ExpressionError) as caught:
        parse(text)
    assert (caught.value.message, caught.value.offset, str(caught.value)) == (
        message,
        offset,
        message,
    )


def test_length_and_nesting_are_limited() -> None:
    longest = "a" + " + a" * ((MAX_LENGTH - 1) // 4)
    assert len(parse(longest).text) <= MAX_LENGTH
    with pytest.raises(ExpressionError) as caught:
        parse("a + " * 200 + "a")
    assert (caught.value.message, caught.value.offset) == (
        "longer than 500 characters (801 given)",
        500,
    )

    deepest = "(" * MAX_DEPTH + "a" + ")" * MAX_DEPTH
    assert parse(deepest).evaluate({"a": 1}) == 1
    with pytest.raises(ExpressionError) as caught:
        parse("(" * (MAX_DEPTH + 1) + "a" + ")" * (MAX_DEPTH + 1))
    assert (caught.value.message, caught.value.offset) == ("nested deeper than 24 levels at 24", 24)
    with pytest.raises(ExpressionError) as caught:
        parse("-" * 30 + "a")
    assert caught.value.message == "nested deeper than 24 levels at 24"
    with pytest.raises(ExpressionError) as caught:
        parse("abs(" * 30 + "a" + ")" * 30)
    assert caught.value.message == "nested deeper than 24 levels at 96"


def test_expression_errors_are_ours_and_value_errors() -> None:
    with pytest.raises(ExpressionError) as caught:
        parse("a.b")
    assert isinstance(caught.value, DqAgentError)
    assert isinstance(caught.value, ValueError)


# --- the same answers in SQL ------------------------------------------------------------------

CASES = sa.Table(
    "cases",
    sa.MetaData(),
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("qty", sa.Integer),
    sa.Column("price", sa.Numeric(12, 2)),
    sa.Column("rate", sa.Double),  # FLOAT is single precision on MySQL
)
CASE_ROWS: list[dict[str, Any]] = [
    {"id": 1, "qty": 7, "price": Decimal("2.00"), "rate": 0.5},
    {"id": 2, "qty": 200, "price": Decimal("5000.00"), "rate": 0.1},
    {"id": 3, "qty": 0, "price": Decimal("19.99"), "rate": 3.0},
    {"id": 4, "qty": None, "price": Decimal("10.00"), "rate": 1.0},
    {"id": 5, "qty": 3, "price": None, "rate": None},
    {"id": 6, "qty": 2_000_000_000, "price": Decimal("3.00"), "rate": 2.5},
]
EXPRESSIONS = [
    "qty * price",
    "qty / 2",
    "7 / qty",
    "price / qty",
    "qty * qty",  # beyond 32-bit integers: numeric, not an overflow
    "-qty + price * rate",
    "(qty - 1) * (price + 0.5) / 4",
    "abs(1 - qty)",
    "coalesce(qty, 0) * price",
    "sum_of(qty, price, rate)",
    "qty * rate / (price - 19.99)",
    "1e3 * rate",
]


def test_sql_and_python_agree_on_every_database(engine_url: str) -> None:
    engine = sa.create_engine(engine_url)
    try:
        CASES.metadata.drop_all(engine)
        CASES.metadata.create_all(engine)
        with engine.begin() as conn:
            conn.execute(CASES.insert(), CASE_ROWS)
        for text in EXPRESSIONS:
            expression = parse(text)
            query = sa.select(
                CASES.c.id,
                expression.to_sql(CASES.c.__getitem__).label("v"),
                sa.case((expression.null_sql(CASES.c.__getitem__), 1), else_=0).label("null"),
            )
            with engine.connect() as conn:
                in_sql = {r.id: r for r in conn.execute(query.order_by(CASES.c.id))}
            for row in CASE_ROWS:
                expected = expression.evaluate(row)
                got = in_sql[row["id"]].v
                # Whether it is null is known without computing it.
                assert in_sql[row["id"]].null == (expected is None), (text, row)
                if expected is None:
                    assert got is None, (text, row)
                else:
                    assert got is not None, (text, row)
                    assert float(got) == pytest.approx(float(expected), rel=1e-12), (text, row)
    finally:
        engine.dispose()


def test_sql_division_by_zero_is_null_not_an_error(engine_url: str) -> None:
    engine = sa.create_engine(engine_url)
    try:
        with engine.connect() as conn:
            zero = sa.literal(0, sa.Integer)
            got = conn.execute(sa.select(parse("7 / x").to_sql(lambda _: zero))).scalar()
        assert got is None
    finally:
        engine.dispose()


def test_an_expression_can_be_built_without_a_database() -> None:
    assert isinstance(parse("a"), Expression)
    rendered = str(parse("a / b").to_sql(sa.column).compile(compile_kwargs={"literal_binds": True}))
    assert rendered == "CAST(a AS NUMERIC) / CAST(nullif(CAST(b AS NUMERIC), 0) AS NUMERIC)"
