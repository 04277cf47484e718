"""Great Expectations expectations named in suites: lookup and argument validation.

GX is imported only when a suite actually uses an ``expect_*`` check: the import alone costs
seconds and hundreds of megabytes.
"""

from __future__ import annotations

import datetime as dt
import difflib
import warnings
from functools import cache
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, model_validator
from pydantic_core import PydanticCustomError

from dq_agent.config.models import CheckArgs, Model
from dq_agent.config.yamlfile import NodePath

# GX fields that dq-agent sets itself; a user cannot pass them.
RESERVED_FIELDS = frozenset(
    {"id", "rendered_content", "batch_id", "windows", "result_format", "catch_exceptions"}
)


class _Expectation(CheckArgs):
    """dq-agent's own arguments, plus GX's that do not change what an expectation computes."""

    meta: dict[str, Any] | None = None
    notes: str | list[str] | None = None
    description: str | None = None
    # A row filter sends the expectation through GX itself (it is not compiled).
    row_condition: str | None = None
    condition_parser: Literal["great_expectations", "pandas", "spark"] | None = None


class _ColumnValues(_Expectation):
    column: str = Field(min_length=1)
    mostly: float = Field(1.0, ge=0.0, le=1.0)


class _Bounds(Model):
    """Bounds either of which may be null (no bound), written so or left out, as in GX."""

    min_value: Any = None
    max_value: Any = None
    strict_min: bool = False
    strict_max: bool = False


class _OneBound(_Bounds):
    """Bounds of which GX requires one (a value-by-value test with neither would be
    vacuous); a table's row count may have none, and is then vacuously within them."""

    @model_validator(mode="after")
    def _one_bound(self) -> _OneBound:
        if self.min_value is None and self.max_value is None:
            raise PydanticCustomError("bounds", "expected min_value, max_value or both")
        return self


class _Ordered(_Bounds):
    """Bounds GX itself refuses when min_value is above max_value."""

    @model_validator(mode="after")
    def _ordered(self) -> _Ordered:
        low, high = self.min_value, self.max_value
        try:
            above = low is not None and high is not None and low > high
        except TypeError:
            above = False  # values of different kinds: GX decides when it runs
        if above:
            raise PydanticCustomError(
                "bounds", f"min_value {low!r} is greater than max_value {high!r}"
            )
        return self


class _ValuesBetween(_ColumnValues, _Ordered, _OneBound):
    pass


class _ValueSet(_ColumnValues):
    value_set: list[Any]


class _ValueLengthsBetween(_ColumnValues, _OneBound):
    min_value: int | None = None
    max_value: int | None = None


def _comparable(value: Any) -> Any:
    """What GX compares a column's min, max, mean or sum with: a number, a date or a datetime
    (written as such, or as a string that reads as one); null is no bound."""
    if value is None:
        return None
    if isinstance(value, int | float | dt.date) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        for parse in (float, dt.date.fromisoformat, dt.datetime.fromisoformat):
            try:
                parse(value)
            except ValueError:
                continue
            return value
    raise PydanticCustomError("comparable", "expected a number, a date or a datetime")


_Comparable = Annotated[Any, BeforeValidator(_comparable)]


class _StatisticBetween(_Expectation):
    # GX's own rule: no bound at all is allowed (the statistic then only has to exist).
    column: str = Field(min_length=1)
    min_value: _Comparable = None
    max_value: _Comparable = None
    strict_min: bool = False
    strict_max: bool = False


class _CompoundUnique(_Expectation):
    column_list: list[Annotated[str, Field(min_length=1)]] = Field(min_length=2)
    mostly: float = Field(1.0, ge=0.0, le=1.0)
    ignore_row_if: Literal["all_values_are_missing", "any_value_is_missing", "never"] = (
        "all_values_are_missing"
    )


class _RowCountBetween(_Expectation, _Ordered):
    min_value: int | None = Field(None, ge=0)
    max_value: int | None = Field(None, ge=0)


class _RowCountEqual(_Expectation):
    value: int = Field(ge=0)


# Expectations dq-agent answers from its own single scan (see checks/compiled.py), validated
# here with GX's argument names and rules so that suites using only these never import GX.
# (expect_column_values_to_match_regex compiles on PostgreSQL only: GX validates it.)
NATIVE_EXPECTATIONS: dict[str, type[CheckArgs]] = {
    "expect_column_values_to_not_be_null": _ColumnValues,
    "expect_column_values_to_be_null": _ColumnValues,
    "expect_column_values_to_be_between": _ValuesBetween,
    "expect_column_values_to_be_in_set": _ValueSet,
    "expect_column_values_to_not_be_in_set": _ValueSet,
    "expect_column_values_to_be_unique": _ColumnValues,
    "expect_column_value_lengths_to_be_between": _ValueLengthsBetween,
    "expect_column_min_to_be_between": _StatisticBetween,
    "expect_column_max_to_be_between": _StatisticBetween,
    "expect_column_mean_to_be_between": _StatisticBetween,
    "expect_column_sum_to_be_between": _StatisticBetween,
    "expect_compound_columns_to_be_unique": _CompoundUnique,
    "expect_table_row_count_to_be_between": _RowCountBetween,
    "expect_table_row_count_to_equal": _RowCountEqual,
}


@cache
def expectation_names() -> tuple[str, ...]:
    """Every expectation GX registers, by snake_case name."""
    from great_expectations.expectations.registry import (
        list_registered_expectation_implementations,
    )

    return tuple(sorted(list_registered_expectation_implementations()))


def expectation_class(name: str) -> Any:
    """The GX class for ``name`` (e.g. ``expect_column_values_to_not_be_null``)."""
    from great_expectations.expectations.registry import get_expectation_impl

    return get_expectation_impl(name)


def suggest(name: str, choices: tuple[str, ...] | list[str]) -> str:
    close = difflib.get_close_matches(name, choices, n=1)
    return f" (did you mean {close[0]}?)" if close else ""


def validate_expectation(name: str, kwargs: dict[str, Any]) -> list[tuple[NodePath, str]]:
    """Problems with ``kwargs`` for expectation ``name``, each as (relative path, message)."""
    cls = expectation_class(name)
    fields = [f for f in cls.__fields__ if f not in RESERVED_FIELDS]
    problems: list[tuple[NodePath, str]] = []
    for key in kwargs:
        if key in RESERVED_FIELDS or key not in cls.__fields__:
            # GX's own `severity` is shadowed by dq-agent's, which every check accepts.
            names = (set(fields) - {"meta", "notes"}) | {"name", "owner", "severity"}
            expected = ", ".join(sorted(names))
            problems.append(((key,), f"unknown argument for {name}; expected one of: {expected}"))
    if problems:
        return problems
    try:
        with warnings.catch_warnings():
            # GX's deprecation notices (e.g. for string row conditions, the only kind a YAML
            # file can hold) concern its Python API: nothing for the user to act on.
            warnings.simplefilter("ignore", DeprecationWarning)
            cls(**kwargs)
    except Exception as exc:  # GX raises pydantic v1 ValidationError or plain errors
        errors = getattr(exc, "errors", None)
        if not callable(errors):
            return [((), f"invalid arguments for {name}: {exc}")]
        seen: set[NodePath] = set()
        for error in errors():
            loc = tuple(p for p in error.get("loc", ()) if p != "__root__")
            if loc in seen:  # GX lists one message per member of a Union type; keep the first
                continue
            seen.add(loc)
            got = f", got {kwargs[loc[0]]!r}" if loc and loc[0] in kwargs else ""
            message = str(error.get("msg", "invalid value"))
            if error.get("type") == "value_error.missing":
                message = "required argument is missing"
                got = ""
            problems.append((loc, f"{message}{got}"))
    return problems
