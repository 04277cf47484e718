"""SOQL evaluated over the org's records: which match, in what order, rendered as the REST API
renders them (relationship fields followed to the related record)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from dq_agent_sandbox.sobjects import (
    FLOAT_TYPES,
    TEXT_TYPES,
    FieldDef,
    FieldValue,
    Record,
    SObjectType,
    coerce,
    error_type_name,
    render,
    sort_key,
)
from dq_agent_sandbox.soql import (
    BoolOp,
    Comparison,
    Condition,
    DateKeyword,
    FieldRef,
    Like,
    Membership,
    Not,
    OrderItem,
    Query,
    SoqlError,
    Value,
    like_pattern,
)

__all__ = ["QueryPlan", "attributes", "no_such_column"]


def no_such_column(name: str, entity: str) -> str:
    """Salesforce's INVALID_FIELD message for an unknown field."""
    return (
        f"No such column '{name}' on entity '{entity}'. If you are attempting to use a custom "
        "field, be sure to append the '__c' after the custom field name. Please reference your "
        "WSDL or the describe call for the appropriate names."
    )


@dataclass(frozen=True)
class _Hop:
    """One step along a relationship: read ``via`` (an id) and look it up in ``target``."""

    relationship: str
    via: str
    target: SObjectType


@dataclass(frozen=True)
class _BoundField:
    """A field reference resolved against the schema."""

    hops: tuple[_Hop, ...]
    leaf: FieldDef

    def value(self, record: Record) -> FieldValue:
        current: Record | None = record
        for hop in self.hops:
            reference = current.get(hop.via) if current is not None else None
            current = hop.target.records.get(str(reference)) if reference is not None else None
        return current.get(self.leaf.name) if current is not None else None


@dataclass(frozen=True)
class _Span:
    """A day keyword (TODAY) against a datetime field: the instants in ``[start, end)``."""

    start: datetime
    end: datetime


Operand = FieldValue | _Span
Predicate = Callable[[Record], bool]


def _compare(operator: str, actual: FieldValue, expected: Operand) -> bool:
    """SOQL comparison: ``!=`` and NOT IN match nulls; ordering comparisons never do."""
    if isinstance(expected, _Span):
        if not isinstance(actual, datetime):
            return operator == "!="
        inside = expected.start <= actual < expected.end
        outcomes = {
            "=": inside,
            "!=": not inside,
            "<": actual < expected.start,
            "<=": actual < expected.end,
            ">": actual >= expected.end,
            ">=": actual >= expected.start,
        }
        return outcomes[operator]
    if actual is None or expected is None:
        both_null = actual is None and expected is None
        if operator == "=":
            return both_null
        return not both_null if operator == "!=" else False
    left, right = sort_key(actual), sort_key(expected)
    if left[0] != right[0]:
        return operator == "!="  # only anyType fields can hold mixed kinds
    checks: dict[str, Callable[[Any, Any], bool]] = {
        "=": lambda a, b: a == b,
        "!=": lambda a, b: a != b,
        "<": lambda a, b: a < b,
        "<=": lambda a, b: a <= b,
        ">": lambda a, b: a > b,
        ">=": lambda a, b: a >= b,
    }
    return checks[operator](left[1], right[1])


class QueryPlan:
    """One parsed query bound to the schema: which records match, in which order, as what."""

    def __init__(
        self,
        query: Query,
        root: SObjectType,
        resolve: Callable[[str], SObjectType | None],
        today: date,
    ) -> None:
        self.query = query
        self.root = root
        self._resolve = resolve
        self._today = today
        self.selected = [self.bind(ref) for ref in query.fields]
        self.predicate = self.compile(query.where) if query.where else None
        self.ordering = [(item, self.bind(item.field)) for item in query.order_by]

    def error(self, code: str, reason: str, position: int) -> SoqlError:
        return SoqlError(code, reason, source=self.query.source, position=position)

    def bind(self, ref: FieldRef) -> _BoundField:
        hops: list[_Hop] = []
        current = self.root
        for part in ref.path[:-1]:
            via = current.relationship(part)
            target = self._resolve(via.reference_to) if via and via.reference_to else None
            if via is None or target is None:
                reason = (
                    f"Didn't understand relationship '{part}' in field path. If you are "
                    "attempting to use a custom relationship, be sure to append the '__r' after "
                    "the custom relationship name. Please reference your WSDL or the describe "
                    "call for the appropriate names."
                )
                raise self.error("INVALID_FIELD", reason, ref.position)
            hops.append(_Hop(str(via.relationship_name), via.name, target))
            current = target
        leaf = current.field(ref.path[-1])
        if leaf is None:
            raise self.error(
                "INVALID_FIELD", no_such_column(ref.path[-1], current.name), ref.position
            )
        return _BoundField(tuple(hops), leaf)

    def compile(self, condition: Condition) -> Predicate:
        match condition:
            case BoolOp(operator="AND", operands=operands):
                parts = [self.compile(operand) for operand in operands]
                return lambda record: all(part(record) for part in parts)
            case BoolOp(operands=operands):
                parts = [self.compile(operand) for operand in operands]
                return lambda record: any(part(record) for part in parts)
            case Not(operand=operand):
                inner = self.compile(operand)
                return lambda record: not inner(record)
            case Comparison():
                return self._comparison(condition)
            case Like():
                return self._like(condition)
            case Membership():
                return self._membership(condition)
        raise AssertionError(f"unhandled condition {condition!r}")

    def _comparison(self, condition: Comparison) -> Predicate:
        bound = self.bind(condition.field)
        expected = self.operand(bound.leaf, condition.value)
        operator = condition.operator
        return lambda record: _compare(operator, bound.value(record), expected)

    def _like(self, condition: Like) -> Predicate:
        bound = self.bind(condition.field)
        if bound.leaf.type not in TEXT_TYPES:
            reason = f"invalid operator on {bound.leaf.type} field: LIKE"
            raise self.error("INVALID_FIELD", reason, condition.field.position)
        pattern = like_pattern(condition.pattern)

        def matches(record: Record) -> bool:
            value = bound.value(record)
            return isinstance(value, str) and pattern.fullmatch(value) is not None

        return matches

    def _membership(self, condition: Membership) -> Predicate:
        bound = self.bind(condition.field)
        options = [self.operand(bound.leaf, value) for value in condition.values]
        negated = condition.negated

        def matches(record: Record) -> bool:
            actual = bound.value(record)
            return any(_compare("=", actual, option) for option in options) != negated

        return matches

    def operand(self, leaf: FieldDef, value: Value) -> Operand:
        """A literal checked against the field's type, as Salesforce checks it."""
        if isinstance(value, DateKeyword):
            offset = {"TODAY": 0, "YESTERDAY": -1, "TOMORROW": 1}[value.name]
            day = self._today + timedelta(days=offset)
            if leaf.type == "datetime":
                start = datetime.combine(day, time(), UTC)
                return _Span(start, start + timedelta(days=1))
            if leaf.type in ("date", "anyType"):
                return day
            raise self._type_error(leaf, quoted=False, position=value.position)
        literal = value.value
        if literal is None or leaf.type == "anyType":
            return literal
        if not _literal_fits(leaf.type, literal):
            raise self._type_error(leaf, quoted=value.quoted, position=value.position)
        try:
            return coerce(leaf, literal)
        except ValueError:  # only ids can fail here: every other literal was checked above
            reason = f"invalid ID field: {literal}"
            raise self.error("INVALID_QUERY_FILTER_OPERATOR", reason, value.position) from None

    def _type_error(self, leaf: FieldDef, *, quoted: bool, position: int) -> SoqlError:
        text = leaf.type in TEXT_TYPES
        kind = error_type_name(leaf.type)
        reason = f"value of filter criterion for field '{leaf.name}' must be of type {kind}"
        if text and not quoted:
            reason += " and should be enclosed in quotes"
        elif quoted and not text:
            reason += " and should not be enclosed in quotes"
        return self.error("INVALID_FIELD", reason, position)

    def matching(self, records: Iterable[Record]) -> list[Record]:
        rows = [r for r in records if self.predicate(r)] if self.predicate else list(records)
        for item, bound in reversed(self.ordering):  # stable sorts, last key first
            rows.sort(key=_order_key(item, bound), reverse=item.descending)
        start = self.query.offset or 0
        end = None if self.query.limit is None else start + self.query.limit
        return rows[start:end]

    def render(self, record: Record, version: str) -> dict[str, Any]:
        """A record as the query returns it, relationship fields nested under their name."""
        out = attributes(self.root.name, record, version)
        for bound in self.selected:
            target, current = out, record
            for hop in bound.hops:
                reference = current.get(hop.via)
                related = hop.target.records.get(str(reference)) if reference else None
                if hop.relationship not in target:
                    nested = attributes(hop.target.name, related, version) if related else None
                    target[hop.relationship] = nested
                if related is None:
                    break
                target, current = target[hop.relationship], related
            else:
                target[bound.leaf.name] = render(current.get(bound.leaf.name))
        return out


def _literal_fits(field_type: str, literal: object) -> bool:
    if field_type in TEXT_TYPES:
        return isinstance(literal, str)
    if field_type in FLOAT_TYPES or field_type == "int":
        return isinstance(literal, int | float) and not isinstance(literal, bool)
    if field_type == "boolean":
        return isinstance(literal, bool)
    if field_type == "date":
        return isinstance(literal, date) and not isinstance(literal, datetime)
    return field_type == "datetime" and isinstance(literal, datetime)


def _order_key(item: OrderItem, bound: _BoundField) -> Callable[[Record], tuple[int, Any]]:
    # With reverse=True the groups flip too, so the null group depends on both settings.
    null_group = int(item.nulls_last != item.descending)

    def key(record: Record) -> tuple[int, Any]:
        value = bound.value(record)
        return (null_group, 0) if value is None else (1 - null_group, sort_key(value))

    return key


def attributes(type_name: str, record: Record, version: str) -> dict[str, Any]:
    url = f"/services/data/v{version}/sobjects/{type_name}/{record['Id']}"
    return {"attributes": {"type": type_name, "url": url}}
