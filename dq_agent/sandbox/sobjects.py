"""The org's data model: object types, typed field values, ids, and SOQL evaluated over them.

Values are held as Python values (``date``, UTC ``datetime``, ``float`` …) and rendered the way
Salesforce renders them in JSON only on the way out.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from dq_agent.sandbox.soql import (
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

__all__ = [
    "ID_TYPES",
    "FieldDef",
    "FieldValue",
    "QueryPlan",
    "Record",
    "SObjectType",
    "attributes",
    "coerce",
    "error_type_name",
    "field_from_spec",
    "fill_system_dates",
    "history_name",
    "history_parent_field",
    "key_prefix",
    "looks_like_id",
    "make_id",
    "no_such_column",
    "render",
    "to_18",
    "utc",
]

FieldValue = str | int | float | bool | date | datetime | None
JsonScalar = str | int | float | bool | None
Record = dict[str, FieldValue]

TEXT_TYPES = frozenset(
    {"string", "textarea", "picklist", "multipicklist", "email", "phone", "url", "combobox"}
    | {"id", "reference"}
)
ID_TYPES = frozenset({"id", "reference"})
FLOAT_TYPES = frozenset({"double", "currency", "percent"})
FIELD_TYPES = TEXT_TYPES | FLOAT_TYPES | {"int", "boolean", "date", "datetime", "anyType"}

# Real key prefixes, so ids look like the ones people paste into tickets. Field-history objects
# all share 017 in Salesforce too (one underlying table).
KEY_PREFIXES = {
    "Account": "001",
    "Contact": "003",
    "User": "005",
    "Opportunity": "006",
    "Lead": "00Q",
    "Task": "00T",
    "Event": "00U",
    "Group": "00G",
    "OpportunityLineItem": "00k",
    "Pricebook2": "01s",
    "Product2": "01t",
    "Case": "500",
    "Campaign": "701",
}
HISTORY_PREFIX = "017"
SYSTEM_DATES = ("CreatedDate", "LastModifiedDate", "SystemModstamp")
USER_REFERENCES = frozenset({"OwnerId", "CreatedById", "LastModifiedById"})
_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


# ---- ids -------------------------------------------------------------------------------------


def to_18(record_id: str) -> str:
    """The case-safe 18-character form of a 15- or 18-character Salesforce id."""
    if len(record_id) == 18:
        return record_id
    if len(record_id) != 15 or not record_id.isalnum():
        raise ValueError(f"not a Salesforce id: {record_id!r}")
    suffix = ""
    for start in (0, 5, 10):
        # Each suffix character encodes which of five characters are upper case.
        bits = sum(1 << i for i, ch in enumerate(record_id[start : start + 5]) if ch.isupper())
        suffix += "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"[bits]
    return record_id + suffix


def looks_like_id(text: str) -> bool:
    return len(text) in (15, 18) and text.isalnum()


def _base62(number: int, width: int) -> str:
    digits = ""
    while number:
        number, rest = divmod(number, 62)
        digits = _BASE62[rest] + digits
    return digits.rjust(width, "0")


def make_id(prefix: str, serial: int) -> str:
    """The 18-character id numbered ``serial`` under a 3-character key prefix."""
    return to_18(prefix + "000" + _base62(serial, 9))


def key_prefix(name: str, taken: Iterable[str]) -> str:
    """The real prefix of a standard object, else one hashed from the name (same every run)."""
    if name in KEY_PREFIXES:
        return KEY_PREFIXES[name]
    unavailable = set(taken) | set(KEY_PREFIXES.values())
    salt = 0
    while True:
        digest = hashlib.sha256(f"{name}:{salt}".encode()).digest()
        prefix = "a" + _BASE62[digest[0] % 62] + _BASE62[digest[1] % 62]  # custom objects: aXX
        if prefix not in unavailable:
            return prefix
        salt += 1


# ---- schema ----------------------------------------------------------------------------------


def _label(api_name: str) -> str:
    """``CloseDate`` → ``Close Date``, ``Seats__c`` → ``Seats``, ``OwnerId`` → ``Owner ID``."""
    name = api_name.removesuffix("__c").replace("_", " ")
    words = ""
    for i, char in enumerate(name):
        if char.isupper() and i and name[i - 1].islower():
            words += " "
        words += char
    return words[:-2] + "ID" if words.endswith(" Id") else words


def _reference_target(field_name: str) -> str | None:
    """Standard lookups name their target: ``AccountId`` → Account, ``OwnerId`` → User."""
    if field_name in USER_REFERENCES:
        return "User"
    if field_name.endswith("Id") and len(field_name) > 2 and "__" not in field_name:
        return field_name[:-2]
    return None


@dataclass(frozen=True)
class FieldDef:
    name: str
    type: str
    label: str
    nillable: bool = True
    updateable: bool = True
    createable: bool = True
    reference_to: str | None = None

    @property
    def relationship_name(self) -> str | None:
        if self.type != "reference":
            return None
        if self.name.endswith("__c"):
            return self.name[:-3] + "__r"
        return self.name[:-2] if self.name.endswith("Id") and len(self.name) > 2 else None

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.type,
            "label": self.label,
            "nillable": self.nillable,
            "updateable": self.updateable,
            "createable": self.createable,
            "referenceTo": [self.reference_to] if self.reference_to else [],
            "relationshipName": self.relationship_name,
            "soapType": _soap_type(self.type),
        }


def error_type_name(field_type: str) -> str:
    """The type name Salesforce uses in filter and deserialisation errors."""
    if field_type in ID_TYPES:
        return "id"
    if field_type in TEXT_TYPES:
        return "string"
    names = {"int": "integer", "datetime": "dateTime", "date": "date", "boolean": "boolean"}
    return names.get(field_type, "double")


def _soap_type(field_type: str) -> str:
    if field_type in ID_TYPES:
        return "tns:ID"
    if field_type in TEXT_TYPES:
        return "xsd:string"
    names = {"int": "xsd:int", "boolean": "xsd:boolean", "date": "xsd:date"}
    names |= {"datetime": "xsd:dateTime", "anyType": "xsd:anyType"}
    return names.get(field_type, "xsd:double")


def _system_field(name: str, field_type: str, **extra: Any) -> FieldDef:
    return FieldDef(
        name, field_type, _label(name), nillable=False, updateable=False, createable=False, **extra
    )


_SPEC_KEYS = frozenset({"type", "referenceTo", "label", "nillable", "updateable"})


def field_from_spec(object_name: str, name: str, spec: str | Mapping[str, Any]) -> FieldDef:
    """One entry of a seed's ``fields``: a type name, or a mapping with ``type`` and options."""
    options: Mapping[str, Any] = {"type": spec} if isinstance(spec, str) else spec
    unknown = sorted(set(options) - _SPEC_KEYS)
    if unknown:
        raise ValueError(f"{object_name}.{name}: unknown field options {unknown}")
    field_type = options.get("type")
    if field_type not in FIELD_TYPES or field_type == "id":
        raise ValueError(f"{object_name}.{name}: unknown field type {field_type!r}")
    reference_to = options.get("referenceTo")
    if field_type == "reference" and reference_to is None:
        reference_to = _reference_target(name)
    return FieldDef(
        name=name,
        type=field_type,
        label=str(options.get("label") or _label(name)),
        nillable=bool(options.get("nillable", field_type != "boolean")),
        updateable=bool(options.get("updateable", True)),
        reference_to=reference_to,
    )


@dataclass
class SObjectType:
    """One object type: its fields (in describe order) and its records by 18-character id."""

    name: str
    key_prefix: str
    fields: dict[str, FieldDef]
    parent: str | None = None  # for a field-history object: the object whose changes it keeps
    records: dict[str, Record] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return _label(self.name.replace("__History", "History"))

    @property
    def custom(self) -> bool:
        return self.name.endswith(("__c", "__History"))

    @classmethod
    def regular(cls, name: str, prefix: str) -> SObjectType:
        """A new object type with the fields every object has."""
        standard = [_system_field("Id", "id")]
        standard += [_system_field(date_field, "datetime") for date_field in SYSTEM_DATES]
        return cls(name, prefix, {f.name: f for f in standard})

    @classmethod
    def history_of(cls, parent: str) -> SObjectType:
        """The field-history object that records changes to ``parent`` records."""
        return cls(history_name(parent), HISTORY_PREFIX, _history_fields(parent), parent=parent)

    def field(self, name: str) -> FieldDef | None:
        """Salesforce field names are case-insensitive."""
        found = self.fields.get(name)
        if found is not None:
            return found
        lowered = name.lower()
        return next((f for f in self.fields.values() if f.name.lower() == lowered), None)

    def relationship(self, name: str) -> FieldDef | None:
        lowered = name.lower()
        return next(
            (
                f
                for f in self.fields.values()
                if f.relationship_name and f.relationship_name.lower() == lowered
            ),
            None,
        )

    def add_field(self, definition: FieldDef) -> None:
        existing = self.field(definition.name)
        if existing is not None and existing.type != definition.type:
            raise ValueError(
                f"{self.name}.{definition.name} is already a {existing.type} field, "
                f"not {definition.type}"
            )
        if existing is None:
            self.fields[definition.name] = definition
            for name in SYSTEM_DATES:  # describe lists the audit fields last
                if name in self.fields:
                    self.fields[name] = self.fields.pop(name)

    def summary(self, version: str) -> dict[str, Any]:
        base = f"/services/data/v{version}/sobjects/{self.name}"
        writable = self.parent is None
        return {
            "name": self.name,
            "label": self.label,
            "labelPlural": _plural(self.label),
            "keyPrefix": self.key_prefix,
            "custom": self.custom,
            "queryable": True,
            "createable": writable,
            "updateable": writable,
            "deletable": writable,
            "urls": {
                "sobject": base,
                "describe": f"{base}/describe",
                "rowTemplate": f"{base}/{{ID}}",
            },
        }


def _plural(label: str) -> str:
    if label.endswith("y") and label[-2:-1] not in ("a", "e", "o", "u"):
        return label[:-1] + "ies"
    return label + ("es" if label.endswith(("s", "x", "ch", "sh")) else "s")


def history_name(object_name: str) -> str:
    if object_name == "Opportunity":
        return "OpportunityFieldHistory"  # OpportunityHistory is the stage history, another thing
    if object_name.endswith("__c"):
        return object_name[:-3] + "__History"
    return object_name + "History"


def history_parent_field(parent: str) -> str:
    """The field naming the changed record: AccountHistory.AccountId, Foo__History.ParentId."""
    return "ParentId" if parent.endswith("__c") else f"{parent}Id"


def _history_fields(parent: str) -> dict[str, FieldDef]:
    parent_field = history_parent_field(parent)
    fields = [
        _system_field("Id", "id"),
        _system_field(parent_field, "reference", reference_to=parent),
        _system_field("Field", "picklist"),
        FieldDef("OldValue", "anyType", "Old Value", updateable=False, createable=False),
        FieldDef("NewValue", "anyType", "New Value", updateable=False, createable=False),
        _system_field("CreatedById", "reference", reference_to="User"),
        _system_field("CreatedDate", "datetime"),
    ]
    return {f.name: f for f in fields}


# ---- values ----------------------------------------------------------------------------------


def utc(moment: datetime) -> datetime:
    """UTC at millisecond precision, which is all Salesforce keeps."""
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def render(value: FieldValue) -> JsonScalar:
    """A Python field value as Salesforce writes it in JSON."""
    if isinstance(value, datetime):
        moment = utc(value)
        return f"{moment:%Y-%m-%dT%H:%M:%S}.{moment.microsecond // 1000:03d}+0000"
    if isinstance(value, date):
        return value.isoformat()
    return value


def coerce(definition: FieldDef, value: object) -> FieldValue:
    """A JSON (or Python) value for ``definition`` as the Python value stored, or ValueError."""
    if value is None:
        return None
    kind = definition.type
    if kind in TEXT_TYPES:
        if not isinstance(value, str):
            raise ValueError(value)
        return to_18(value) if kind in ID_TYPES else value  # to_18 refuses what is not an id
    if kind in FLOAT_TYPES or kind == "int":
        return _coerce_number(value, integral=kind == "int")
    if kind == "boolean":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise ValueError(value)
    if kind == "date":
        return _coerce_date(value)
    if kind == "datetime":
        return _coerce_datetime(value)
    if isinstance(value, str | int | float | bool | date):  # anyType: history values
        return value
    raise ValueError(value)


def _coerce_number(value: object, *, integral: bool) -> int | float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(value)
    number = float(value)  # numeric strings are accepted, as Salesforce does
    if integral:
        if not number.is_integer():
            raise ValueError(value)
        return int(number)
    return number


def _coerce_date(value: object) -> date:
    if isinstance(value, datetime):
        raise ValueError(value)
    if isinstance(value, date):
        return value
    if isinstance(value, str) and len(value) == 10:
        return date.fromisoformat(value)
    raise ValueError(value)


def _coerce_datetime(value: object) -> datetime:
    if isinstance(value, datetime):
        return utc(value)
    if isinstance(value, str) and len(value) > 10 and value[10] == "T":
        return utc(datetime.fromisoformat(value))
    raise ValueError(value)


def _sort_key(value: FieldValue) -> tuple[int, Any]:
    """Orders values of one type; the rank keeps mixed anyType values comparable."""
    if isinstance(value, bool):
        return (0, value)
    if isinstance(value, int | float):
        return (1, value)
    if isinstance(value, str):
        return (2, value.casefold())  # SOQL sorts and compares text case-insensitively
    if isinstance(value, datetime):
        return (4, value)
    return (3, value)


def fill_system_dates(record: Record, now: datetime) -> None:
    """Missing audit dates: created now (or when last modified), modified when created."""
    if "LastModifiedDate" in record:
        record["CreatedDate"] = record["CreatedDate"] or record["LastModifiedDate"] or now
        record["LastModifiedDate"] = record["LastModifiedDate"] or record["CreatedDate"]
        record["SystemModstamp"] = record["SystemModstamp"] or record["LastModifiedDate"]
    elif record.get("CreatedDate") is None:  # history rows only have a CreatedDate
        record["CreatedDate"] = now


# ---- queries ---------------------------------------------------------------------------------


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
    left, right = _sort_key(actual), _sort_key(expected)
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
        return (null_group, 0) if value is None else (1 - null_group, _sort_key(value))

    return key


def attributes(type_name: str, record: Record, version: str) -> dict[str, Any]:
    url = f"/services/data/v{version}/sobjects/{type_name}/{record['Id']}"
    return {"attributes": {"type": type_name, "url": url}}
