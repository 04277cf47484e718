"""``type: salesforce`` — an object's records through the REST API (simple-salesforce).

Reads use SOQL through ``query_all`` (which follows ``nextRecordsUrl``), typed by the object's
describe; the records are copied into a private SQLite table for the checks. Writes are
compare-and-set: the value is re-read and compared, the PATCH carries ``If-Unmodified-Since``
from the ``LastModifiedDate`` seen when the data was read, and the record is re-read after.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime
from email.utils import format_datetime
from typing import Any
from urllib.parse import urlsplit

import requests
import sqlalchemy as sa

from dq_agent.config.models import SalesforceConnector, SalesforceSourceSpec
from dq_agent.errors import SourceError
from dq_agent.sources.base import Relation, WriteResult, same_value
from dq_agent.sources.fetched import FetchedColumn, FetchedCopy, infer_type
from dq_agent.sources.http import ApiSession
from dq_agent.sources.retry import RetryPolicy

_NUMBER = {"double", "currency", "percent"}
_TEXT = {
    "string",
    "textarea",
    "picklist",
    "multipicklist",
    "email",
    "phone",
    "url",
    "id",
    "reference",
    "combobox",
    "encryptedstring",
}
_SQL_TYPES: dict[str, sa.types.TypeEngine[Any]] = {
    "int": sa.Integer(),
    "boolean": sa.Boolean(),
    "date": sa.Date(),
    "datetime": sa.DateTime(timezone=True),
}
_TYPED = {*_NUMBER, *_TEXT, *_SQL_TYPES}
# Plain decimal text (as Salesforce accepts for a number field); "1,000" or "1 000" is not
# guessed at: it means a thousand or one in different locales.
_DECIMAL_TEXT = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_WHOLE_TEXT = re.compile(r"[+-]?[0-9]{1,20}")
_TRANSIENT_CODES = {"REQUEST_LIMIT_EXCEEDED", "SERVER_UNAVAILABLE", "UNABLE_TO_LOCK_ROW"}
_IN_CHUNK = 200


def connect(connector: SalesforceConnector) -> Any:
    """A simple-salesforce client; the network is only touched by a password login."""
    try:
        from simple_salesforce.api import Salesforce
    except ImportError as exc:
        raise SourceError(
            "the salesforce connector needs simple-salesforce: pip install 'dq-agent[salesforce]'",
            transient=False,
        ) from exc
    session = _session(connector)
    secret = _secret
    try:
        if connector.session_id is not None and connector.instance_url is not None:
            return Salesforce(
                instance_url=connector.instance_url,
                session_id=secret(connector.session_id),
                version=connector.api_version,
                session=session,
            )
        return Salesforce(
            username=connector.username,
            password=secret(connector.password),
            security_token=secret(connector.security_token) or "",
            domain=connector.domain,
            version=connector.api_version,
            session=session,
        )
    except Exception as exc:
        raise translate(exc) from exc


def _secret(value: Any) -> str | None:
    return None if value is None else str(value.get_secret_value())


def _session(connector: SalesforceConnector) -> ApiSession:
    url = connector.instance_url
    if url and url.startswith("http://"):
        # An emulator on http://HOST:PORT: the client will ask for https://HOST:PORT.
        host = urlsplit(url).netloc
        return ApiSession(
            timeout=connector.timeout, rewrite_from=f"https://{host}", rewrite_to=f"http://{host}"
        )
    return ApiSession(timeout=connector.timeout)


def translate(exc: Exception) -> SourceError:
    """A client error as our own, saying whether trying again later may succeed."""
    if isinstance(exc, SourceError):
        return exc
    if isinstance(exc, requests.Timeout | requests.ConnectionError):
        return SourceError(f"cannot reach Salesforce: {exc.__class__.__name__}", transient=True)
    status = getattr(exc, "status", None)
    code, message = _error_body(getattr(exc, "content", None))
    name = exc.__class__.__name__
    if name == "SalesforceAuthenticationFailed":
        return SourceError(
            f"Salesforce login failed: {getattr(exc, 'message', '')}", transient=False
        )
    if name == "SalesforceExpiredSession" or code == "INVALID_SESSION_ID":
        return SourceError(
            "Salesforce session expired or invalid (INVALID_SESSION_ID)", transient=False
        )
    text = f"Salesforce {code or status}: {message}" if message else f"Salesforce error {status}"
    transient = code in _TRANSIENT_CODES or (isinstance(status, int) and status >= 500)
    if status == 429:
        transient = True
    return SourceError(text, transient=transient)


def _error_body(content: Any) -> tuple[str | None, str]:
    try:
        body = json.loads(content) if isinstance(content, bytes | str) else content
    except ValueError:
        return None, str(content)[:200]
    if isinstance(body, list) and body and isinstance(body[0], dict):
        return body[0].get("errorCode"), str(body[0].get("message", ""))
    return None, "" if body is None else str(body)[:200]


class SalesforceSource:
    """Reads one object's records; writes single fields back compare-and-set."""

    def __init__(
        self, client: Any, spec: SalesforceSourceSpec, *, retry: RetryPolicy | None = None
    ) -> None:
        self._sf = client
        self._spec = spec
        self._retry = retry or RetryPolicy()
        self._copy: FetchedCopy | None = None
        self._modified: dict[str, datetime] = {}
        self._types: dict[str, str] = {}

    # -- reading ------------------------------------------------------------------------------

    def open(self) -> Relation:
        spec = self._spec
        describe = self._call("describe", lambda: self._object().describe())
        self._types = {f["name"]: f["type"] for f in describe.get("fields", [])}
        unknown = [f for f in spec.fields if "." not in f and f not in self._types]
        if unknown:
            raise SourceError(
                f"{spec.object} has no field(s) {', '.join(unknown)}", transient=False
            )
        wanted = list(dict.fromkeys(["Id", *spec.fields, "LastModifiedDate"]))
        soql = f"SELECT {', '.join(wanted)} FROM {spec.object}"
        if spec.where:
            soql += f" WHERE {spec.where}"
        records = self._call("query", lambda: self._sf.query_all(soql)["records"])
        rows = [self._typed_row(record, wanted) for record in records]
        first: dict[str, Any] = {}
        for row in rows:  # of records that share an Id, the first is the one checked
            first.setdefault(str(row["Id"]), row.get("LastModifiedDate"))
        self._modified = {i: at for i, at in first.items() if isinstance(at, datetime)}
        names = list(dict.fromkeys(["Id", *spec.fields]))
        columns = [FetchedColumn(n, self._sql_type(n, rows)) for n in names]
        self._copy = FetchedCopy(spec.object)
        return self._copy.load(columns, rows, ("Id",))

    def _typed_row(self, record: Mapping[str, Any], names: Sequence[str]) -> dict[str, Any]:
        return {name: self._typed(name, _lookup(record, name)) for name in names}

    def _typed(self, name: str, value: Any) -> Any:
        """``value`` as the type describe gives the field; a value that is not of that type
        comes back as it is, and the copy reports it (see ``FetchedCopy.load``)."""
        kind = self._types.get(name)
        if value is None:
            return None
        if kind == "datetime":
            return _moment(value)
        if kind == "date":
            return _day(value)
        if kind in _NUMBER:
            return _number(value)
        if kind == "int":
            return _whole(value)
        if kind not in _TYPED and isinstance(value, Mapping | list):
            # A compound field (address, location) or a relationship: kept as its JSON text.
            return json.dumps(value, sort_keys=True, default=str)
        return value

    def _sql_type(self, name: str, rows: Sequence[Mapping[str, Any]]) -> sa.types.TypeEngine[Any]:
        kind = self._types.get(name)
        if kind in _NUMBER:
            return sa.Float()
        if kind in _SQL_TYPES:
            return _SQL_TYPES[kind]
        if kind in _TEXT:
            return sa.String()
        return infer_type(row.get(name) for row in rows)  # relationship fields: Owner.Email

    # -- writing ------------------------------------------------------------------------------

    def write(
        self, key: Mapping[str, Any], column: str, expected_old: Any, new: Any
    ) -> WriteResult:
        record_id = str(key["Id"])
        if column not in self._types and self._types:
            raise SourceError(f"{self._spec.object} has no field {column}", transient=False)
        before = self._read(record_id, column)
        if not same_value(before, expected_old):
            return WriteResult("conflict", before, before, f"{column} is now {before!r}")
        seen = self._modified.get(record_id)
        headers = {"If-Unmodified-Since": format_datetime(seen, usegmt=True)} if seen else {}
        try:
            self._call(
                "update", lambda: self._object().update(record_id, {column: new}, headers=headers)
            )
        except SourceError as exc:
            if "412" not in str(exc) and "PRECONDITION" not in str(exc):
                raise
            # Someone changed the record since it was read, even if to the very value meant
            # here: that is their write, not ours (the ledger says "already fixed").
            after = self._read(record_id, column)
            return WriteResult(
                "conflict", before, after, "the record changed after it was read (412)"
            )
        after = self._read(record_id, column)
        if not same_value(after, new):
            return WriteResult("conflict", before, after, f"{column} reads {after!r} after writing")
        return WriteResult("written", before, after)

    def read(self, key: Mapping[str, Any], column: str) -> Any:
        return self._read(str(key["Id"]), column)

    def _read(self, record_id: str, column: str) -> Any:
        record = self._call("read", lambda: self._object().get(record_id))
        return self._typed(column, record.get(column))

    # -- what later stages need: owners and history --------------------------------------------

    def owner_emails(self, owner_ids: Sequence[str]) -> dict[str, str]:
        """``OwnerId`` → the owner's e-mail (User object)."""
        rows = self._where_id_in("SELECT Id, Email FROM User", owner_ids)
        return {str(r["Id"]): str(r["Email"]) for r in rows if r.get("Id") and r.get("Email")}

    def record_owners(self, record_ids: Sequence[str]) -> dict[str, str]:
        """Record ``Id`` → its owner's e-mail, for objects that have an ``OwnerId``."""
        if "OwnerId" not in self._types:
            return {}
        rows = self._where_id_in(f"SELECT Id, OwnerId FROM {self._spec.object}", record_ids)
        owner_of = {
            str(r["Id"]): str(r["OwnerId"]) for r in rows if r.get("Id") and r.get("OwnerId")
        }
        emails = self.owner_emails(list(owner_of.values()))
        return {rid: emails[oid] for rid, oid in owner_of.items() if oid in emails}

    def _where_id_in(self, select: str, ids: Sequence[str]) -> list[dict[str, Any]]:
        """``select … WHERE Id IN (…)`` over any number of ids, in chunks SOQL accepts."""
        unique = sorted(set(ids))
        rows: list[dict[str, Any]] = []
        for start in range(0, len(unique), _IN_CHUNK):
            chunk = ", ".join(_quote(i) for i in unique[start : start + _IN_CHUNK])
            soql = f"{select} WHERE Id IN ({chunk})"
            rows += self._call("query", lambda soql=soql: self._sf.query_all(soql)["records"])
        return rows

    def field_history(self, record_id: str, field: str) -> list[dict[str, Any]]:
        """A field's past values, oldest first, from ``<Object>History``."""
        obj = self._spec.object
        if obj.endswith("__c"):
            table, parent = f"{obj[:-3]}__History", "ParentId"
        elif obj == "Opportunity":
            table, parent = "OpportunityFieldHistory", "OpportunityId"
        else:
            table, parent = f"{obj}History", f"{obj}Id"
        soql = (
            f"SELECT Field, OldValue, NewValue, CreatedDate FROM {table} "
            f"WHERE {parent} = {_quote(record_id)} AND Field = {_quote(field)} "
            "ORDER BY CreatedDate"
        )
        rows = self._call("history", lambda: self._sf.query_all(soql)["records"])
        return [
            {
                "at": datetime.fromisoformat(str(r["CreatedDate"])).astimezone(UTC),
                "old": r.get("OldValue"),
                "new": r.get("NewValue"),
            }
            for r in rows
        ]

    # -- plumbing -----------------------------------------------------------------------------

    def _object(self) -> Any:
        return getattr(self._sf, self._spec.object)

    def _call(self, what: str, action: Any) -> Any:
        return self._retry.call(f"Salesforce {what} on {self._spec.object}", action, translate)

    def close(self) -> None:
        if self._copy is not None:
            self._copy.close()
            self._copy = None


def _lookup(record: Mapping[str, Any], name: str) -> Any:
    """``Owner.Email`` follows the nested relationship object the API returns."""
    value: Any = record
    for part in name.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


def _number(value: Any) -> Any:
    """A number field's value as a float: a JSON number, or plain decimal text."""
    if isinstance(value, str) and _DECIMAL_TEXT.fullmatch(value):
        return float(value)
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            return float(value)
        except OverflowError:  # an integer beyond any float
            return value
    return value


def _whole(value: Any) -> Any:
    """An ``int`` field's value as an int: a whole JSON number, or digits."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and _WHOLE_TEXT.fullmatch(value):
        return int(value)
    return value


def _moment(value: Any) -> Any:
    """A datetime field's ISO 8601 text as an aware UTC datetime."""
    if not isinstance(value, str):
        return value
    try:
        return datetime.fromisoformat(value).astimezone(UTC)
    except (ValueError, OverflowError):
        return value


def _day(value: Any) -> Any:
    """A date field's ISO 8601 text as a date."""
    if not isinstance(value, str):
        return value
    try:
        return date.fromisoformat(value)
    except ValueError:
        return value


def _quote(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"
