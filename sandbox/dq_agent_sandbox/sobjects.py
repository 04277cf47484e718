"""The org's data model: object types, typed field values, ids, and the checks of a write.

Values are held as Python values (``date``, UTC ``datetime``, ``float`` …) and rendered the way
Salesforce renders them in JSON only on the way out.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from typing import Any

__all__ = [
    "ID_TYPES",
    "MASTER_RECORD_TYPE",
    "FieldDef",
    "FieldValue",
    "Record",
    "SObjectType",
    "WriteError",
    "coerce",
    "error_type_name",
    "field_from_spec",
    "field_label",
    "fill_system_dates",
    "history_name",
    "history_parent_field",
    "key_prefix",
    "looks_like_id",
    "make_id",
    "render",
    "sort_key",
    "require_fields",
    "to_18",
    "utc",
    "validate_create",
    "validate_update",
    "with_defaults",
    "writable_values",
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
MASTER_RECORD_TYPE = "012000000000000AAA"  # the record type every object has, with no others
MERGEABLE = frozenset({"Account", "Contact", "Lead", "Case"})
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


def field_label(api_name: str) -> str:
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


# What describe reports for a field whose definition does not say.
_LENGTHS = {"string": 255, "textarea": 255, "picklist": 255, "multipicklist": 4099}
_LENGTHS |= {"combobox": 255, "email": 80, "phone": 40, "url": 255, "id": 18, "reference": 18}
_SCALES = {"currency": 2, "double": 0, "percent": 0}
_SHORT_TEXT = 255  # a longer text area can be neither filtered, grouped nor sorted
# Filled in by Salesforce on every create, so never required of the caller.
_DEFAULTED_ON_CREATE = frozenset({"Id", *USER_REFERENCES, *SYSTEM_DATES})


@dataclass(frozen=True)
class FieldDef:
    """One field and what describe says of it; unset sizes take the type's usual ones."""

    name: str
    type: str
    label: str
    nillable: bool = True
    updateable: bool = True
    createable: bool = True
    reference_to: str | None = None
    also_refers_to: tuple[str, ...] = ()  # a polymorphic lookup: an Owner is a User or a queue
    child_relationship: str | None = None  # how the target lists these records: "Contacts"
    length: int | None = None
    precision: int | None = None
    scale: int | None = None
    digits: int | None = None
    picklist: tuple[str, ...] = ()
    default: str | bool | None = None  # what a create that names no value gets
    restricted: bool = False  # only the picklist's values are accepted
    defaulted: bool = False  # derived by Salesforce on create (Probability from the stage)
    auto_number: bool = False
    name_field: bool = False
    id_lookup: bool = False
    unique: bool = False
    compound: str | None = None  # the compound field this is part of: FirstName of Name
    extra_type: str | None = None

    @property
    def relationship_name(self) -> str | None:
        if self.type != "reference":
            return None
        if self.name.endswith("__c"):
            return self.name[:-3] + "__r"
        return self.name[:-2] if self.name.endswith("Id") and len(self.name) > 2 else None

    @property
    def targets(self) -> list[str]:
        """Every object type the field may point at, as describe's ``referenceTo`` lists them."""
        if self.reference_to is None:
            return []
        return sorted({self.reference_to, *self.also_refers_to})

    @property
    def max_length(self) -> int:
        return _LENGTHS.get(self.type, 0) if self.length is None else self.length

    @property
    def defaulted_on_create(self) -> bool:
        return (
            self.defaulted
            or self.auto_number
            or self.default is not None
            or self.type == "boolean"
            or self.name in _DEFAULTED_ON_CREATE
        )

    @property
    def required(self) -> bool:
        """A create must give a value: describe's reading of required, as clients apply it."""
        return self.createable and not self.nillable and not self.defaulted_on_create

    def describe(self) -> dict[str, Any]:
        """The field as ``/sobjects/{type}/describe`` lists it, with every key Salesforce sends."""
        kind = self.type
        text = kind in TEXT_TYPES
        long_text = kind == "textarea" and self.max_length > _SHORT_TEXT
        filterable = not long_text and kind != "anyType"
        sortable = filterable and kind != "multipicklist"
        polymorphic = len(self.targets) > 1
        numeric = kind in FLOAT_TYPES
        return {
            "aggregatable": sortable and kind != "boolean",
            "aiPredictionField": False,
            "autoNumber": self.auto_number,
            "byteLength": (18 if kind in ID_TYPES else self.max_length * 3) if text else 0,
            "calculated": False,
            "calculatedFormula": None,
            "cascadeDelete": False,
            "caseSensitive": False,
            "compoundFieldName": self.compound,
            "controllerName": None,
            "createable": self.createable,
            "custom": self.name.endswith("__c"),
            "defaultValue": (self.default is True) if kind == "boolean" else None,
            "defaultValueFormula": None,
            "defaultedOnCreate": self.defaulted_on_create,
            "dependentPicklist": False,
            "deprecatedAndHidden": False,
            "digits": (self.digits or 9) if kind == "int" else 0,
            "displayLocationInDecimal": False,
            "encrypted": False,
            "externalId": False,
            "extraTypeInfo": self.extra_type or ("plaintextarea" if kind == "textarea" else None),
            "filterable": filterable,
            "filteredLookupInfo": None,
            "formulaTreatNullNumberAsZero": False,
            "groupable": sortable and not numeric and kind != "datetime",
            "highScaleNumber": False,
            "htmlFormatted": False,
            "idLookup": self.id_lookup or kind == "id",
            "inlineHelpText": None,
            "label": self.label,
            "length": self.max_length if text else 0,
            "mask": None,
            "maskType": None,
            "name": self.name,
            "nameField": self.name_field,
            "namePointing": polymorphic,
            "nillable": self.nillable,
            "permissionable": (self.nillable or kind == "boolean")
            and (self.createable or self.updateable)
            and self.name not in _DEFAULTED_ON_CREATE,
            "picklistValues": [
                {
                    "active": True,
                    "defaultValue": value == self.default,
                    "label": value,
                    "validFor": None,
                    "value": value,
                }
                for value in self.picklist
            ],
            "polymorphicForeignKey": polymorphic,
            "precision": (self.precision or 18) if numeric else 0,
            "queryByDistance": False,
            "referenceTargetField": None,
            "referenceTo": self.targets,
            "relationshipName": self.relationship_name,
            "relationshipOrder": None,
            "restrictedDelete": False,
            "restrictedPicklist": self.restricted,
            "scale": (_SCALES[kind] if self.scale is None else self.scale) if numeric else 0,
            "searchPrefilterable": kind == "reference",
            "soapType": _soap_type(kind),
            "sortable": sortable,
            "type": kind,
            "unique": self.unique,
            "updateable": self.updateable,
            "writeRequiresMasterRead": False,
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
        name,
        field_type,
        field_label(name),
        nillable=False,
        updateable=False,
        createable=False,
        **extra,
    )


# A seed's option → the FieldDef attribute it sets.
_SPEC_OPTIONS = {
    "referenceTo": "reference_to",
    "label": "label",
    "nillable": "nillable",
    "createable": "createable",
    "updateable": "updateable",
    "picklistValues": "picklist",
    "restrictedPicklist": "restricted",
}


def field_from_spec(
    object_name: str, name: str, spec: str | Mapping[str, Any], existing: FieldDef | None = None
) -> FieldDef:
    """One entry of a seed's ``fields``: a type name, or a mapping with ``type`` and options.

    Against an ``existing`` field of the same type the options customise it (no options: it
    stays as it is); a different type makes a new field that keeps only the label.
    """
    options: Mapping[str, Any] = {"type": spec} if isinstance(spec, str) else spec
    unknown = sorted(set(options) - {"type", *_SPEC_OPTIONS})
    if unknown:
        raise ValueError(f"{object_name}.{name}: unknown field options {unknown}")
    field_type = options.get("type")
    if field_type not in FIELD_TYPES or field_type == "id":
        raise ValueError(f"{object_name}.{name}: unknown field type {field_type!r}")
    if existing is not None and existing.type == field_type:
        base = existing
    else:
        base = FieldDef(
            name=existing.name if existing else name,
            type=field_type,
            label=existing.label if existing else field_label(name),
            nillable=field_type != "boolean",
            reference_to=_reference_target(name) if field_type == "reference" else None,
        )
    changes: dict[str, Any] = {}
    for option, attribute in _SPEC_OPTIONS.items():
        if option not in options:
            continue
        value = options[option]
        if option == "picklistValues":
            changes[attribute] = tuple(str(v) for v in value)
        elif option in ("referenceTo", "label"):
            changes[attribute] = str(value) if value else getattr(base, attribute)
        else:
            changes[attribute] = bool(value)
    return replace(base, **changes)


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
        return field_label(self.name.replace("__History", "History"))

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

    def put_field(self, definition: FieldDef) -> None:
        """Add a field after the others, or replace the one of that name where it stands."""
        existing = self.field(definition.name)
        if existing is None:
            self.fields[definition.name] = definition
            return
        if existing.type != definition.type and self.records:
            raise ValueError(
                f"{self.name}.{existing.name} is already a {existing.type} field with records, "
                f"not {definition.type}"
            )
        self.fields[existing.name] = replace(definition, name=existing.name)

    def summary(self, version: str) -> dict[str, Any]:
        """The object as describeGlobal lists it (and ``/sobjects/{type}`` as objectDescribe)."""
        base = f"/services/data/v{version}/sobjects/{self.name}"
        writable = self.parent is None
        removable = writable and self.name != "User"  # users are deactivated, never deleted
        return {
            "activateable": False,
            "associateEntityType": None if writable else "History",
            "associateParentEntity": self.parent,
            "createable": writable,
            "custom": self.custom,
            "customSetting": False,
            "deepCloneable": False,
            "deletable": removable,
            "deprecatedAndHidden": False,
            "feedEnabled": writable and not self.custom,
            "hasSubtypes": False,
            "isInterface": False,
            "isSubtype": False,
            "keyPrefix": self.key_prefix,
            "label": self.label,
            "labelPlural": _plural(self.label),
            "layoutable": writable,
            "mergeable": self.name in MERGEABLE,
            "mruEnabled": writable,
            "name": self.name,
            "queryable": True,
            "replicateable": True,
            "retrieveable": True,
            "searchable": writable,
            "triggerable": writable,
            "undeletable": removable,
            "updateable": writable,
            "urls": {
                "sobject": base,
                "describe": f"{base}/describe",
                "rowTemplate": f"{base}/{{ID}}",
            },
        }

    def describe(self, version: str, types: Iterable[SObjectType]) -> dict[str, Any]:
        """The full describe: the summary's keys and the fields, child relationships, layouts
        and record types; ``types`` are every object in the org, to find the children."""
        base = f"/services/data/v{version}/sobjects/{self.name}"
        writable = self.parent is None
        master = {
            "active": True,
            "available": True,
            "defaultRecordTypeMapping": True,
            "developerName": "Master",
            "master": True,
            "name": "Master",
            "recordTypeId": MASTER_RECORD_TYPE,
            "urls": {"layout": f"{base}/describe/layouts/{MASTER_RECORD_TYPE}"},
        }
        plural = _plural(self.label).lower()
        scopes = [{"label": f"All {plural}", "name": "everything"}] if writable else []
        if "OwnerId" in self.fields:
            scopes.append({"label": f"My {plural}", "name": "mine"})
        described = self.summary(version) | {
            "actionOverrides": [],
            "childRelationships": [child for t in types for child in t.children_of(self.name)],
            "compactLayoutable": writable,
            "dataTranslationEnabled": False,
            "defaultImplementation": None,
            "extendedBy": None,
            "extendsInterfaces": None,
            "fields": [f.describe() for f in self.fields.values()],
            "implementedBy": None,
            "implementsInterfaces": None,
            "listviewable": None,
            "lookupLayoutable": None,
            "namedLayoutInfos": [],
            "networkScopeFieldName": None,
            "recordTypeInfos": [master] if writable else [],
            "searchLayoutable": writable,
            "sobjectDescribeOption": "FULL",
            "supportedScopes": scopes,
        }
        return dict(sorted(described.items()))

    def children_of(self, target: str) -> list[dict[str, Any]]:
        """This type's lookups to ``target``: the child relationships ``target`` describes."""
        return [
            {
                "cascadeDelete": self.parent == target,  # history goes with its record
                "childSObject": self.name,
                "deprecatedAndHidden": False,
                "field": f.name,
                "junctionIdListNames": [],
                "junctionReferenceTo": [],
                "relationshipName": f.child_relationship,
                "restrictedDelete": False,
            }
            for f in self.fields.values()
            if target in f.targets
        ]


def _plural(label: str) -> str:
    if label.endswith("History"):
        return label  # "Account History" is its own plural
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
        _system_field(
            parent_field, "reference", reference_to=parent, child_relationship="Histories"
        ),
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


def sort_key(value: FieldValue) -> tuple[int, Any]:
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


# ---- writes ----------------------------------------------------------------------------------


class WriteError(ValueError):
    """A record Salesforce refuses to write: its errorCode, message and the fields at fault."""

    def __init__(self, code: str, message: str, fields: Sequence[str] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.fields = None if fields is None else list(fields)

    def as_error(self) -> dict[str, Any]:
        """The error as the REST API lists it: ``{"message", "errorCode"[, "fields"]}``."""
        error: dict[str, Any] = {"message": self.message, "errorCode": self.code}
        if self.fields is not None:
            error["fields"] = self.fields
        return error


def validate_create(sobject: SObjectType, body: Mapping[str, Any], user_id: str) -> Record:
    """One record to insert, as Salesforce checks it: the values to store, or WriteError.

    ``user_id`` is who creates it: the owner, unless the record names one.
    """
    values = with_defaults(sobject, writable_values(sobject, body, creating=True), user_id)
    require_fields(sobject, values, creating=True)
    return values


def validate_update(sobject: SObjectType, body: Mapping[str, Any]) -> Record:
    """The changes to one record, as Salesforce checks them: the values to store, or
    WriteError."""
    values = writable_values(sobject, body, creating=False)
    require_fields(sobject, values, creating=False)
    return values


def writable_values(sobject: SObjectType, body: Mapping[str, Any], *, creating: bool) -> Record:
    """A JSON record body as typed values: each field known, writable and of the right type,
    within its length, and in its picklist if that is restricted."""
    values: Record = {}
    read_only: list[str] = []
    for key, raw in body.items():
        if key == "attributes":
            continue  # clients may echo a record's attributes back; Salesforce ignores them
        definition = sobject.field(key)
        if definition is None:
            message = f"No such column '{key}' on sobject of type {sobject.name}"
            raise WriteError("INVALID_FIELD", message)
        if not (definition.createable if creating else definition.updateable):
            read_only.append(definition.name)
            continue
        values[definition.name] = _checked(definition, raw)
    if read_only:
        message = (
            f"Unable to create/update fields: {', '.join(read_only)}. Please check the "
            "security settings of this field and verify that it is read/write for your "
            "profile or permission set."
        )
        raise WriteError("INVALID_FIELD_FOR_INSERT_UPDATE", message, read_only)
    return values


def _checked(definition: FieldDef, raw: object) -> FieldValue:
    try:
        value = coerce(definition, raw)
    except ValueError:
        if definition.type in ID_TYPES and isinstance(raw, str):
            message = f"{definition.label}: id value of incorrect type: {raw}"
            raise WriteError("MALFORMED_ID", message, [definition.name]) from None
        kind = error_type_name(definition.type)
        message = (
            f"Cannot deserialize instance of {kind} from VALUE_STRING value {raw} or "
            "request may be missing a required field"
        )
        raise WriteError("JSON_PARSER_ERROR", message) from None
    if not isinstance(value, str) or definition.type in ID_TYPES:
        return value
    chosen = value.split(";") if definition.type == "multipicklist" else [value]
    bad = [choice for choice in chosen if choice not in definition.picklist]
    if definition.restricted and bad:
        message = f"{definition.label}: bad value for restricted picklist field: {bad[0]}"
        raise WriteError("INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST", message, [definition.name])
    if len(value) > definition.max_length:
        message = (
            f"{definition.label}: data value too large: {value} "
            f"(max length={definition.max_length})"
        )
        raise WriteError("STRING_TOO_LONG", message, [definition.name])
    return value


def with_defaults(sobject: SObjectType, values: Record, user_id: str) -> Record:
    """A new record's values with what Salesforce fills in when the write names nothing:
    picklist and checkbox defaults, the next autonumber, and the API user as owner and
    creator."""
    filled = dict(values)
    for definition in sobject.fields.values():
        name = definition.name
        if name in filled:
            continue
        if definition.default is not None:
            filled[name] = definition.default
        elif definition.auto_number:
            filled[name] = _next_number(sobject, name)
        elif name in USER_REFERENCES and definition.type == "reference":
            filled[name] = user_id
    return filled


def _next_number(sobject: SObjectType, name: str) -> str:
    """Autonumbers count on from the highest given (Case numbers start after 00001000)."""
    taken = [
        int(value)
        for record in sobject.records.values()
        if isinstance(value := record.get(name), str) and value.isdigit()
    ]
    return f"{max(taken, default=1000) + 1:08d}"


def require_fields(sobject: SObjectType, values: Record, *, creating: bool) -> None:
    """Required fields need a value on create, and no field that is not nillable may be set
    to null (an absent checkbox is false, as in Salesforce)."""
    missing = [
        f.name
        for f in sobject.fields.values()
        if not f.nillable
        and values.get(f.name) is None
        and (f.name in values or (creating and f.required))
    ]
    if missing:
        message = f"Required fields are missing: [{', '.join(missing)}]"
        raise WriteError("REQUIRED_FIELD_MISSING", message, missing)
