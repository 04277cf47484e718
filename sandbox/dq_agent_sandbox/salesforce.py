"""A loopback Salesforce org: the REST API's shapes, status codes and errors, and SOAP login.

The real ``simple-salesforce`` client talks to it over HTTP (through :class:`LoopbackServer`), so
tests and ``dq-agent demo`` exercise the same requests a production org would see: SOQL with
pagination, sObject rows with ``If-Unmodified-Since``, field history, describe, session expiry
and API limits. SOQL syntax lives in :mod:`~dq_agent_sandbox.soql` and how a query runs over the
records in :mod:`~dq_agent_sandbox.sfquery`; the records, their types and the checks of a write in
:mod:`~dq_agent_sandbox.sobjects`; the standard objects in :mod:`~dq_agent_sandbox.sfcatalog`;
Bulk API 2.0 query jobs and sObject Collections in :mod:`~dq_agent_sandbox.sfjobs`.

Seed format, per object type (see :meth:`SalesforceEmulator.seed`)::

    {"Opportunity": {
        "fields": {"Name": "string", "Amount": "currency", "OwnerId": "reference",
                   "AccountId": {"type": "reference", "referenceTo": "Account"}},
        "records": [{"Name": "Acme renewal", "Amount": 1200.0, "CloseDate": "2026-12-31"}]}}
"""

from __future__ import annotations

import threading
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime
from typing import Any
from urllib.parse import unquote
from xml.sax.saxutils import escape

from dq_agent_sandbox.http import Request, Response
from dq_agent_sandbox.sfcatalog import STANDARD_OBJECTS, standard_fields
from dq_agent_sandbox.sfjobs import DAILY_BULK_QUERY_JOBS, BulkQueries, collections
from dq_agent_sandbox.sfquery import QueryPlan, attributes, no_such_column
from dq_agent_sandbox.sfrest import ApiError as _ApiError
from dq_agent_sandbox.sfrest import allow as _allow
from dq_agent_sandbox.sfrest import json_object as _json_object
from dq_agent_sandbox.sfrest import not_found as _not_found
from dq_agent_sandbox.sobjects import (
    KEY_PREFIXES,
    Record,
    SObjectType,
    WriteError,
    coerce,
    field_from_spec,
    fill_system_dates,
    history_name,
    history_parent_field,
    key_prefix,
    looks_like_id,
    make_id,
    render,
    require_fields,
    to_18,
    utc,
    with_defaults,
    writable_values,
)
from dq_agent_sandbox.soql import Query, SoqlError, parse

__all__ = ["SalesforceEmulator"]

QUERY_LOCATOR_PREFIX = "01g"
DEFAULT_REQUEST_LIMIT = 15_000
_MAX_OPEN_CURSORS = 50  # Salesforce caps open query cursors per user; so do we, to bound memory
_SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
_PARTNER_NS = "urn:partner.soap.sforce.com"
_FAULT_NS = "urn:fault.partner.soap.sforce.com"
_INVALID_SESSION = "Session expired or invalid"
ORG_ID = to_18("00D000000000001")


# ---- errors ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Fault:
    status: int
    code: str
    message: str
    headers: Mapping[str, str]


# ---- the emulator ----------------------------------------------------------------------------


class SalesforceEmulator:
    """An in-memory Salesforce org behind the REST API (and SOAP login); thread-safe."""

    name = "salesforce"

    def __init__(
        self,
        *,
        session_id: str = "sandbox",
        api_version: str = "59.0",
        page_size: int = 2000,
        clock: Callable[[], datetime] | None = None,
        username: str | None = None,
        password: str | None = None,
        security_token: str | None = None,
        request_limit: int = DEFAULT_REQUEST_LIMIT,
        bulk_polls_to_complete: int = 2,
        bulk_query_job_limit: int = DAILY_BULK_QUERY_JOBS,
    ) -> None:
        self.api_version = api_version
        self.page_size = page_size
        self.request_limit = request_limit
        # A Bulk API 2.0 query job completes at this poll of its state; the polls before it see
        # InProgress, so a client's waiting loop runs without the test waiting on a clock.
        self._bulk = BulkQueries(
            polls_to_complete=bulk_polls_to_complete, daily_job_limit=bulk_query_job_limit
        )
        self._clock = clock or (lambda: datetime.now(UTC))
        self._credentials = (
            (username, password + (security_token or ""))
            if username is not None and password is not None
            else None
        )
        self._lock = threading.Lock()
        self._sessions = {session_id}
        self._logins = 0
        self._types: dict[str, SObjectType] = {}
        self._ids: set[str] = set()
        self._counters: dict[str, int] = {}
        self._cursors: dict[str, list[dict[str, Any]]] = {}
        self._faults: list[_Fault] = []
        self._raw: dict[str, list[dict[str, Any]]] = {}
        self._requests = 0
        self._api_calls = 0
        self.user_id = self._new_id(KEY_PREFIXES["User"])  # who the API session acts as
        for name in STANDARD_OBJECTS:  # a new org already has its standard objects
            self._create_type(name)

    # -- set-up and fault injection (for tests and the demo)

    def seed(self, objects: Mapping[str, Mapping[str, Any]]) -> None:
        """Add object types and records: ``{type: {"fields": {name: spec}, "records": [...]}}``.

        A field spec is a describe type name (string, textarea, picklist, email, phone, url,
        reference, double, currency, percent, int, boolean, date, datetime) or a mapping with
        ``type`` and optionally ``referenceTo``, ``label``, ``nillable``, ``createable``,
        ``updateable``, ``picklistValues`` and ``restrictedPicklist``. ``Id``, ``CreatedDate``,
        ``LastModifiedDate`` and ``SystemModstamp`` always exist; missing ones are filled in.

        User, Account, Contact, Lead, Opportunity and Case exist before any seed, with their
        standard fields (:mod:`~dq_agent_sandbox.sfcatalog`). Naming a field that exists
        again with the same type and no options changes nothing; with options, they customise
        it (``{"type": "string", "nillable": False}`` makes it required); with another type,
        the seed's definition replaces it, as an org customises its fields. Seeded records are
        stored as given: required fields and picklists are checked on API writes only.

        Seeding a type again adds fields and records. Field-history objects
        (``OpportunityFieldHistory``, ``<Type>History``) exist with their parent and can be
        seeded directly.
        """
        with self._lock:
            # Parents before their history objects (which they create), and every schema before
            # any record, since records may refer to each other.
            names = sorted(objects, key=lambda n: any(history_name(p) == n for p in objects))
            for name in names:
                self._define(name, objects[name].get("fields", {}))
            for name, spec in objects.items():
                sobject = self._require_type(name)
                for index, values in enumerate(spec.get("records", [])):
                    self._insert(sobject, self._seed_values(sobject, index, values))

    def fail_next(
        self,
        status: int,
        error_code: str,
        message: str,
        *,
        times: int = 1,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """Answer the next ``times`` authenticated API requests with this error."""
        with self._lock:
            fault = _Fault(status, error_code, message, dict(headers or {}))
            self._faults.extend([fault] * times)

    def edit(
        self, type_name: str, record_id: str, values: Mapping[str, Any], *, by: str | None = None
    ) -> None:
        """A person's edit of one record in the Salesforce UI: the values written as an API
        update would write them, its history and ``LastModifiedDate`` moved on, and
        ``LastModifiedById`` set to ``by`` (default: the API user)."""
        with self._lock:
            sobject = self._require_type(type_name)
            record = sobject.records.get(record_id)
            if record is None:
                raise KeyError(f"no {type_name} {record_id}")
            self._update(sobject, record, values, by=by or self.user_id)

    def serve_raw(self, type_name: str, records: Sequence[Mapping[str, Any]]) -> None:
        """Queries on ``type_name`` also return ``records`` exactly as given: untyped,
        unfiltered, after the stored ones.

        Salesforce itself never sends text in a currency field or one ``Id`` twice; something
        between it and the client (a proxy, a replica, a broken integration) might, and the
        client must survive it.
        """
        with self._lock:
            sobject = self._require_type(type_name)
            self._raw.setdefault(sobject.name, []).extend(dict(r) for r in records)

    def expire_session(self) -> None:
        """Invalidate every session: requests get 401 INVALID_SESSION_ID until a renewal."""
        with self._lock:
            self._sessions.clear()

    def renew_session(self, new_id: str) -> None:
        """Accept ``new_id`` as a valid session (as a fresh OAuth token would be)."""
        with self._lock:
            self._sessions.add(new_id)

    def state(self) -> dict[str, Any]:
        """Every object's records (history included) as the API renders them, and the number of
        requests handled (``GET /_sandbox/state`` itself not counted)."""
        with self._lock:
            objects = {
                name: [{k: render(v) for k, v in record.items()} for record in t.records.values()]
                for name, t in self._types.items()
            }
            return {"objects": objects, "requests": self._requests}

    # -- schema and records

    def _type(self, name: str) -> SObjectType | None:
        """Object names are case-insensitive in Salesforce."""
        found = self._types.get(name)
        if found is not None:
            return found
        lowered = name.lower()
        return next((t for t in self._types.values() if t.name.lower() == lowered), None)

    def _require_type(self, name: str) -> SObjectType:
        found = self._type(name)
        if found is None:
            raise ValueError(f"unknown object type {name!r}")
        return found

    def _define(self, name: str, field_specs: Mapping[str, Any]) -> None:
        sobject = self._type(name) or self._create_type(name)
        for field_name, spec in field_specs.items():
            existing = sobject.field(field_name)
            sobject.put_field(field_from_spec(sobject.name, field_name, spec, existing))

    def _create_type(self, name: str) -> SObjectType:
        prefix = key_prefix(name, (t.key_prefix for t in self._types.values()))
        if name in STANDARD_OBJECTS:
            fields = {f.name: f for f in standard_fields(name)}
            sobject = self._types[name] = SObjectType(name, prefix, fields)
        else:
            sobject = self._types[name] = SObjectType.regular(name, prefix)
        history = SObjectType.history_of(name)
        self._types.setdefault(history.name, history)
        return sobject

    def _new_id(self, prefix: str) -> str:
        while True:  # seeded records may already hold the next number
            self._counters[prefix] = self._counters.get(prefix, 0) + 1
            candidate = make_id(prefix, self._counters[prefix])
            if candidate not in self._ids:
                return candidate

    def _seed_values(self, sobject: SObjectType, index: int, values: Mapping[str, Any]) -> Record:
        record: Record = {}
        for key, value in values.items():
            definition = sobject.field(key)
            if definition is None:
                raise ValueError(f"{sobject.name} record {index}: no field {key!r} in its fields")
            try:
                record[definition.name] = coerce(definition, value)
            except ValueError:
                raise ValueError(
                    f"{sobject.name} record {index}: {value!r} is not a valid "
                    f"{definition.type} value for {definition.name}"
                ) from None
        return record

    def _insert(self, sobject: SObjectType, values: Record) -> str:
        now = self._now()
        record: Record = {}
        for definition in sobject.fields.values():
            record[definition.name] = False if definition.type == "boolean" else None
        record.update(values)
        record_id = str(record["Id"] or self._new_id(sobject.key_prefix))
        if record_id in self._ids:
            raise ValueError(f"duplicate id {record_id} in {sobject.name}")
        record["Id"] = record_id
        fill_system_dates(record, now)
        self._ids.add(record_id)
        sobject.records[record_id] = record
        return record_id

    def _now(self) -> datetime:
        return utc(self._clock())

    # -- HTTP

    def handle(self, request: Request) -> Response:
        with self._lock:
            self._requests += 1
            try:
                return self._route(request)
            except _ApiError as error:
                return error.response()

    def _route(self, request: Request) -> Response:
        path = request.path
        if path.startswith("/services/Soap/u/") and request.method == "POST":
            return self._soap_login(request, path.removeprefix("/services/Soap/u/"))
        if path.rstrip("/") == "/services/data":
            return Response(200, [self._version_entry(self.api_version)])
        if not path.startswith("/services/data/v"):
            raise _not_found()
        version, _, rest = path.removeprefix("/services/data/v").partition("/")
        if not self._supports(version):
            raise _not_found()
        self._authenticate(request)
        self._api_calls += 1
        response = self._answer(request, version, rest)
        # Every authenticated answer, errors included, reports the day's API usage so far.
        usage = f"api-usage={self._api_calls}/{self.request_limit}"
        response.headers.setdefault("Sforce-Limit-Info", usage)
        return response

    def _answer(self, request: Request, version: str, rest: str) -> Response:
        if self._faults:
            fault = self._faults.pop(0)
            body = [{"message": fault.message, "errorCode": fault.code}]
            return Response(fault.status, body, dict(fault.headers))
        try:
            if self._api_calls > self.request_limit:
                raise _ApiError(403, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.")
            parts = [unquote(part) for part in rest.split("/") if part]
            return self._dispatch(request, version, parts)
        except SoqlError as error:
            return _ApiError(400, error.code, error.message).response()
        except _ApiError as error:
            return error.response()

    def _supports(self, version: str) -> bool:
        major, dot, minor = version.partition(".")
        if not (major.isdigit() and dot and minor == "0"):
            return False
        return 20 <= int(major) <= int(float(self.api_version))

    def _version_entry(self, version: str) -> dict[str, str]:
        return {"label": "Sandbox", "url": f"/services/data/v{version}", "version": version}

    def _authenticate(self, request: Request) -> None:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() not in ("bearer", "oauth") or token.strip() not in self._sessions:
            raise _ApiError(401, "INVALID_SESSION_ID", _INVALID_SESSION)

    def _dispatch(self, request: Request, version: str, parts: list[str]) -> Response:
        method = request.method
        match parts:
            case []:
                _allow(method, "GET")
                return Response(200, self._resources(version))
            case ["query" | "queryAll"]:
                _allow(method, "GET")
                return self._query(request.param("q"), version)
            case ["query" | "queryAll", locator]:
                _allow(method, "GET")
                return self._query_more(locator, version)
            case ["limits"]:
                _allow(method, "GET")
                return Response(200, self._limits())
            case ["jobs", "query", *job]:
                return self._bulk.handle(self, request, version, job)
            case ["composite", "sobjects", *rest]:
                return collections(self, request, version, rest)
            case ["sobjects"]:
                _allow(method, "GET")
                return Response(200, self._describe_global(version))
            case ["sobjects", type_name]:
                return self._sobject(request, self._sobject_type(type_name), version)
            case ["sobjects", type_name, "describe"]:
                _allow(method, "GET")
                sobject = self._sobject_type(type_name)
                return Response(200, sobject.describe(version, self._types.values()))
            case ["sobjects", type_name, record_id]:
                return self._row(request, self._sobject_type(type_name), record_id, version)
        raise _not_found()

    def _resources(self, version: str) -> dict[str, str]:
        base = f"/services/data/v{version}"
        return {name: f"{base}/{name}" for name in ("sobjects", "query", "queryAll", "limits")}

    def _limits(self) -> dict[str, dict[str, int]]:
        remaining = max(self.request_limit - self._api_calls, 0)
        limits = {"DailyApiRequests": {"Max": self.request_limit, "Remaining": remaining}}
        return dict(sorted((limits | self._bulk.limits()).items()))  # Salesforce sorts them too

    def _describe_global(self, version: str) -> dict[str, Any]:
        sobjects = [t.summary(version) for t in self._types.values()]
        return {"encoding": "UTF-8", "maxBatchSize": 200, "sobjects": sobjects}

    def _sobject_type(self, name: str) -> SObjectType:
        sobject = self._type(name)
        if sobject is None:
            raise _not_found()
        return sobject

    # -- SOQL

    def _query(self, text: str | None, version: str) -> Response:
        if not text:
            raise _ApiError(400, "MALFORMED_QUERY", "A query string has to be specified")
        query = parse(text)
        plan, rows = self._select(query)
        root = plan.root
        if query.count_only:
            return Response(200, {"totalSize": len(rows), "done": True, "records": []})
        rendered = [plan.render(row, version) for row in rows]
        rendered += [
            {**attributes(root.name, {"Id": raw.get("Id")}, version), **raw}
            for raw in self._raw.get(root.name, ())
        ]
        cursor = self._new_id(QUERY_LOCATOR_PREFIX) if len(rendered) > self.page_size else None
        if cursor:
            self._cursors[cursor] = rendered
            while len(self._cursors) > _MAX_OPEN_CURSORS:
                del self._cursors[next(iter(self._cursors))]
        return Response(200, self._page(rendered, cursor, 0, version))

    def _select(self, query: Query) -> tuple[QueryPlan, list[Record]]:
        """The query bound to the schema, and the stored records it returns, in order."""
        root = self._type(query.object_name)
        if root is None:
            reason = (
                f"sObject type '{query.object_name}' is not supported. If you are attempting to "
                "use a custom object, be sure to append the '__c' after the entity name. Please "
                "reference your WSDL or the describe call for the appropriate names."
            )
            raise SoqlError(
                "INVALID_TYPE", reason, source=query.source, position=query.object_position
            )
        plan = QueryPlan(query, root, self._type, self._now().date())
        return plan, plan.matching(root.records.values())

    def _query_more(self, locator: str, version: str) -> Response:
        cursor, _, offset = locator.rpartition("-")
        rows = self._cursors.get(cursor)
        if rows is None or not offset.isdigit() or int(offset) > len(rows):
            raise _ApiError(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
        page = self._page(rows, cursor, int(offset), version)
        if page["done"]:
            del self._cursors[cursor]  # Salesforce closes a cursor once it is read to the end
        return Response(200, page)

    def _page(
        self, rows: list[dict[str, Any]], cursor: str | None, offset: int, version: str
    ) -> dict[str, Any]:
        end = offset + self.page_size
        page: dict[str, Any] = {"totalSize": len(rows), "done": end >= len(rows)}
        if not page["done"]:
            page["nextRecordsUrl"] = f"/services/data/v{version}/query/{cursor}-{end}"
        page["records"] = rows[offset:end]
        return page

    # -- sObject basic information and rows

    def _sobject(self, request: Request, sobject: SObjectType, version: str) -> Response:
        _allow(request.method, "GET", "POST")
        if request.method == "GET":
            return Response(200, {"objectDescribe": sobject.summary(version), "recentItems": []})
        record_id = self._create(sobject, _json_object(request))
        return Response(201, {"id": record_id, "success": True, "errors": []})

    def _row(
        self, request: Request, sobject: SObjectType, record_id: str, version: str
    ) -> Response:
        _allow(request.method, "GET", "PATCH", "DELETE")
        record = sobject.records.get(to_18(record_id)) if looks_like_id(record_id) else None
        if record is None:
            raise _not_found()
        if request.method == "GET":
            return Response(
                200, self._render_row(sobject, record, request.param("fields"), version)
            )
        if request.method == "DELETE":
            self._delete(sobject, record)
            return Response(204)
        self._check_unmodified_since(request, record)
        self._update(sobject, record, _json_object(request))
        return Response(204)

    def _render_row(
        self, sobject: SObjectType, record: Record, fields: str | None, version: str
    ) -> dict[str, Any]:
        names = [name.strip() for name in fields.split(",")] if fields else list(sobject.fields)
        out = attributes(sobject.name, record, version)
        for name in names:
            definition = sobject.field(name)
            if definition is None:
                raise _ApiError(400, "INVALID_FIELD", no_such_column(name, sobject.name))
            out[definition.name] = render(record.get(definition.name))
        return out

    def _check_unmodified_since(self, request: Request, record: Record) -> None:
        header = request.headers.get("if-unmodified-since")
        if header is None:
            return
        try:
            since = utc(parsedate_to_datetime(header))
        except (TypeError, ValueError):
            raise _ApiError(
                400, "INVALID_HEADER_TYPE", f"Invalid If-Unmodified-Since header: {header}"
            ) from None
        modified = record["LastModifiedDate"]
        assert isinstance(modified, datetime)
        # HTTP dates have whole seconds: a change within the header's second does not count.
        if modified.replace(microsecond=0) > since:
            message = (
                f"The requested resource was modified at {format_datetime(modified, usegmt=True)},"
                f" after the If-Unmodified-Since date {format_datetime(since, usegmt=True)}"
            )
            raise _ApiError(412, "PRECONDITION_FAILED", message)

    # One write path for sObject Rows and sObject Collections: check, then create, update or
    # delete a single record.

    def _checked_values(
        self, sobject: SObjectType, body: Mapping[str, Any], *, creating: bool
    ) -> Record:
        """The values a create or update of one record would write, or the error refusing it."""
        values = self._write_values(sobject, body, creating=creating)
        _require_fields(sobject, values, creating=creating)
        return values

    def _create(self, sobject: SObjectType, body: Mapping[str, Any]) -> str:
        return self._insert(sobject, self._checked_values(sobject, body, creating=True))

    def _deletable(self, sobject: SObjectType) -> None:
        _require_writable(sobject, "deleted")

    def _delete(self, sobject: SObjectType, record: Record) -> None:
        self._deletable(sobject)
        del sobject.records[str(record["Id"])]

    def _update(
        self,
        sobject: SObjectType,
        record: Record,
        body: Mapping[str, Any],
        *,
        by: str | None = None,
    ) -> None:
        values = self._checked_values(sobject, body, creating=False)
        who = by or self.user_id
        now = self._now()
        history = self._types[history_name(sobject.name)]
        parent_field = history_parent_field(sobject.name)
        for name, new in values.items():
            old = record.get(name)
            if old == new and type(old) is type(new):
                continue
            record[name] = new
            change: Record = {parent_field: record["Id"], "Field": name, "OldValue": old}
            change |= {"NewValue": new, "CreatedById": who, "CreatedDate": now}
            self._insert(history, change)
        record["LastModifiedDate"] = record["SystemModstamp"] = now
        if "LastModifiedById" in record:
            record["LastModifiedById"] = who

    def _write_values(
        self, sobject: SObjectType, body: Mapping[str, Any], *, creating: bool
    ) -> Record:
        """The typed values a create (with its defaults) or an update of one record writes."""
        _require_writable(sobject, "inserted" if creating else "updated")
        try:
            values = writable_values(sobject, body, creating=creating)
        except WriteError as error:
            raise _refusal(error) from None
        return with_defaults(sobject, values, self.user_id) if creating else values

    # -- SOAP login (simple-salesforce's username + password + security token)

    def _soap_login(self, request: Request, version: str) -> Response:
        try:
            envelope = ElementTree.fromstring(request.body)
        except ElementTree.ParseError:
            return _soap_fault("INVALID_LOGIN", "Unable to parse the login request")
        given = {
            element.tag.rpartition("}")[2]: element.text or ""
            for element in envelope.iter()
            if element.tag.endswith(("}username", "}password"))
        }
        if self._credentials is None or (given.get("username"), given.get("password")) != (
            self._credentials
        ):
            message = "Invalid username, password, security token; or user locked out."
            return _soap_fault("INVALID_LOGIN", message)
        self._logins += 1
        session_id = f"{ORG_ID[:15]}!login{self._logins}"
        self._sessions.add(session_id)
        host = request.headers.get("host", "127.0.0.1")
        return _soap_login_result(host, version.strip("/"), session_id, self.user_id, given)


def _require_fields(sobject: SObjectType, values: Record, *, creating: bool) -> None:
    """Required fields need a value on create; none that is not nillable may be set to null."""
    try:
        require_fields(sobject, values, creating=creating)
    except WriteError as error:
        raise _refusal(error) from None


class _RecordError(_ApiError):
    """A record refused: the REST answer names the fields at fault too."""

    def response(self) -> Response:
        body = {"message": self.message, "errorCode": self.code, "fields": list(self.fields)}
        return Response(self.status, [body])


def _refusal(error: WriteError) -> _ApiError:
    if error.fields is None:
        return _ApiError(400, error.code, error.message)
    return _RecordError(400, error.code, error.message, error.fields)


def _require_writable(sobject: SObjectType, verb: str) -> None:
    if sobject.parent is not None:
        message = f"entity type cannot be {verb}: {sobject.label}"
        raise _ApiError(400, "INVALID_TYPE_FOR_OPERATION", message)


def _soap_login_result(
    host: str, version: str, session_id: str, user_id: str, given: Mapping[str, str]
) -> Response:
    server = f"https://{host}/services/Soap/u/{version}/{ORG_ID[:15]}"
    metadata = f"https://{host}/services/Soap/m/{version}/{ORG_ID[:15]}"
    username = escape(given.get("username", ""))
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f'<soapenv:Envelope xmlns:soapenv="{_SOAP_ENV}" xmlns="{_PARTNER_NS}">'
        "<soapenv:Body><loginResponse><result>"
        f"<metadataServerUrl>{escape(metadata)}</metadataServerUrl>"
        "<passwordExpired>false</passwordExpired><sandbox>true</sandbox>"
        f"<serverUrl>{escape(server)}</serverUrl>"
        f"<sessionId>{escape(session_id)}</sessionId><userId>{user_id}</userId>"
        f"<userInfo><organizationId>{ORG_ID}</organizationId><userId>{user_id}</userId>"
        f"<userName>{username}</userName></userInfo>"
        "</result></loginResponse></soapenv:Body></soapenv:Envelope>"
    )
    return Response(200, body.encode("utf-8"), {"Content-Type": "text/xml; charset=utf-8"})


def _soap_fault(code: str, message: str) -> Response:
    # simple-salesforce looks the code up by the literal tag name "sf:exceptionCode".
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f'<soapenv:Envelope xmlns:soapenv="{_SOAP_ENV}" xmlns:sf="{_FAULT_NS}"'
        ' xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
        "<soapenv:Body><soapenv:Fault>"
        f"<faultcode>sf:{code}</faultcode><faultstring>{code}: {escape(message)}</faultstring>"
        '<detail><sf:LoginFault xsi:type="sf:LoginFault">'
        f"<sf:exceptionCode>{code}</sf:exceptionCode>"
        f"<sf:exceptionMessage>{escape(message)}</sf:exceptionMessage>"
        "</sf:LoginFault></detail></soapenv:Fault></soapenv:Body></soapenv:Envelope>"
    )
    return Response(500, body.encode("utf-8"), {"Content-Type": "text/xml; charset=utf-8"})
