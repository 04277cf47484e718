"""Bulk API 2.0 query jobs and sObject Collections, for the loopback Salesforce org.

**Bulk API 2.0 query jobs** (``/jobs/query``) read a large object as CSV: a job is created from a
SOQL query, polled until its state is ``JobComplete``, then read page by page, each page naming
the next in its ``Sforce-Locator`` header. The query runs when the job is created. The job
completes at a set poll of its state rather than after some time, so a client's waiting loop
runs for real while nothing waits on a clock.

**sObject Collections** (``/composite/sobjects``) create, update and delete up to 200 records,
and read up to 2,000, per request. Every record goes through the org's single-record write path,
so its checks, its field history and its ``LastModifiedDate`` are those of sObject Rows. As in
Salesforce:

- a body that cannot be read as records at all (an unknown field, a value of the wrong JSON
  type, a missing or unknown ``attributes.type``) fails the whole request with 400;
- any other refusal belongs to its record: ``{"success": false, "errors": [{"statusCode",
  "message", "fields"}]}`` in the record's place, the other records written; unless
  ``allOrNone`` is true, in which case nothing is written and every other record reports
  ``ALL_OR_NONE_OPERATION_ROLLED_BACK``.

**Compare-and-set.** The REST API documents ``If-Unmodified-Since`` for sObject Rows, sObject
Describe, Describe Global and Invocable Actions only ("Conditional Request Headers", REST API
Developer Guide); sObject Collections is not among them. A Collections request that carries the
header is answered as if it had none: a record changed since the given moment is written all the
same. A caller that must not overwrite newer data re-reads the records before writing them.

Where Salesforce documents an error's code and message, they are used as documented; the few it
leaves undocumented (the refusal of COUNT() or OFFSET in a bulk query, a bad job state, a bad
locator) are worded here in its style.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from dq_agent_sandbox.http import Request, Response
from dq_agent_sandbox.sfrest import ApiError, allow, json_object, not_found
from dq_agent_sandbox.sobjects import Record, SObjectType, looks_like_id, render, to_18, utc
from dq_agent_sandbox.soql import parse, tokenize

if TYPE_CHECKING:
    from dq_agent_sandbox.salesforce import SalesforceEmulator

__all__ = ["BULK_JOB_PREFIX", "DAILY_BULK_QUERY_JOBS", "BulkQueries", "QueryJob", "collections"]

BULK_JOB_PREFIX = "750"
DAILY_BULK_QUERY_JOBS = 10_000
BULK_QUERY_STORAGE_MB = 976_562  # 1 TB of stored query results per rolling 24 hours
COLLECTION_WRITE_LIMIT = 200
COLLECTION_READ_LIMIT = 2000
_FIRST_BULK_QUERY_VERSION = 47
_FIRST_COLLECTIONS_VERSION = 42
_JOB_LIST_PAGE = 1000
_MEGABYTE = 1024 * 1024
_DELIMITERS = {
    "BACKQUOTE": "`",
    "CARET": "^",
    "COMMA": ",",
    "PIPE": "|",
    "SEMICOLON": ";",
    "TAB": "\t",
}
_LINE_ENDINGS = {"LF": "\n", "CRLF": "\r\n"}
_OPEN_STATES = ("UploadComplete", "InProgress")
_SHOUTED_STATES = {
    "UploadComplete": "UPLOAD_COMPLETE",
    "InProgress": "IN_PROGRESS",
    "Aborted": "ABORTED",
    "Failed": "FAILED",
}
# Objects whose large queries Salesforce splits by primary key (custom ones and history tables
# too); a job reports it in isPkChunkingSupported.
_PK_CHUNKED = frozenset(
    {"Account", "Asset", "Campaign", "CampaignMember", "Case", "Contact", "Lead"}
    | {"Opportunity", "OpportunityLineItem", "Task", "User"}
)
# Errors raised while reading a Collections body as records: the whole request fails with them.
_UNREADABLE = frozenset({"INVALID_FIELD", "JSON_PARSER_ERROR"})
_ROLLED_BACK = (
    "Record rolled back because not all records were valid and the request was using "
    "AllOrNone header"
)


def _require_version(version: str, first: int) -> None:
    if int(float(version)) < first:
        raise not_found()


# ---- Bulk API 2.0 query jobs -----------------------------------------------------------------


@dataclass
class QueryJob:
    """One Bulk API 2.0 query job and the CSV its query produced."""

    id: str
    operation: str
    object_name: str
    created_by: str
    created: datetime
    modified: datetime
    api_version: str
    column_delimiter: str
    line_ending: str
    header: str
    lines: list[str]
    state: str = "UploadComplete"
    polls: int = 0
    processing_ms: int = 0

    @property
    def size(self) -> int:
        """Bytes of the whole result, as its pages add up."""
        ending = len(_LINE_ENDINGS[self.line_ending])
        return sum(len(line.encode("utf-8")) + ending for line in [self.header, *self.lines])

    def summary(self, *, with_type: bool = False) -> dict[str, Any]:
        """The job as creating, aborting (and, ``with_type``, listing) it answers."""
        out: dict[str, Any] = {
            "id": self.id,
            "operation": self.operation,
            "object": self.object_name,
            "createdById": self.created_by,
            "createdDate": render(self.created),
            "systemModstamp": render(self.modified),
            "state": self.state,
            "concurrencyMode": "Parallel",
            "contentType": "CSV",
            "apiVersion": float(self.api_version),
        }
        if with_type:
            out["jobType"] = "V2Query"
        return out | {"lineEnding": self.line_ending, "columnDelimiter": self.column_delimiter}

    def info(self) -> dict[str, Any]:
        """The job as ``GET /jobs/query/{id}`` answers it."""
        chunked = self.object_name in _PK_CHUNKED or self.object_name.endswith(("__c", "History"))
        return self.summary(with_type=True) | {
            "numberRecordsProcessed": len(self.lines) if self.state == "JobComplete" else 0,
            "retries": 0,
            "totalProcessingTime": self.processing_ms,
            "isPkChunkingSupported": chunked,
        }


class BulkQueries:
    """The org's Bulk API 2.0 query jobs, and what they count against its daily limits."""

    def __init__(self, *, polls_to_complete: int, daily_job_limit: int) -> None:
        if polls_to_complete < 1:
            raise ValueError(
                f"bulk_polls_to_complete must be 1 or more (the poll that sees JobComplete), "
                f"not {polls_to_complete}"
            )
        self.polls_to_complete = polls_to_complete
        self.daily_job_limit = daily_job_limit
        self._jobs: dict[str, QueryJob] = {}
        self._created = 0
        self._stored_bytes = 0

    def limits(self) -> dict[str, dict[str, int]]:
        """This API's entries in ``/limits``."""
        stored_mb = self._stored_bytes // _MEGABYTE
        return {
            "DailyBulkV2QueryFileStorageMB": {
                "Max": BULK_QUERY_STORAGE_MB,
                "Remaining": max(BULK_QUERY_STORAGE_MB - stored_mb, 0),
            },
            "DailyBulkV2QueryJobs": {
                "Max": self.daily_job_limit,
                "Remaining": max(self.daily_job_limit - self._created, 0),
            },
        }

    def handle(
        self, org: SalesforceEmulator, request: Request, version: str, path: Sequence[str]
    ) -> Response:
        """Answer a request under ``/jobs/query``; ``path`` is what follows it."""
        _require_version(version, _FIRST_BULK_QUERY_VERSION)
        method = request.method
        match list(path):
            case []:
                allow(method, "GET", "POST")
                if method == "GET":
                    return Response(200, self._list(request, version))
                job = self._create(org, json_object(request), version)
                return Response(200, job.summary())
            case [job_id]:
                allow(method, "GET", "PATCH", "DELETE")
                job = self._job(job_id)
                if method == "GET":
                    self._poll(job, org._now())
                    return Response(200, job.info())
                if method == "PATCH":
                    self._abort(job, json_object(request), org._now())
                    return Response(200, job.summary())
                self._delete(job)
                return Response(204)
            case [job_id, "results"]:
                allow(method, "GET")
                return self._results(self._job(job_id), request, version)
        raise not_found()

    def _job(self, job_id: str) -> QueryJob:
        job = self._jobs.get(to_18(job_id)) if looks_like_id(job_id) else None
        if job is None:
            raise not_found()
        return job

    def _create(self, org: SalesforceEmulator, body: Mapping[str, Any], version: str) -> QueryJob:
        operation = _choice(body, "operation", ("query", "queryAll"), "OperationEnum", None)
        delimiter = _choice(body, "columnDelimiter", _DELIMITERS, "ColumnDelimiterEnum", "COMMA")
        ending = _choice(body, "lineEnding", _LINE_ENDINGS, "LineEndingEnum", "LF")
        text = body.get("query")
        if not isinstance(text, str) or not text.strip():
            raise ApiError(400, "MALFORMED_QUERY", "A query string has to be specified")
        if self._created >= self.daily_job_limit:
            message = f"Max bulk v2 query jobs ({self.daily_job_limit}) per 24 hrs has been reached"
            raise ApiError(400, "LIMIT_EXCEEDED", message)
        _refuse_nested_queries(text)
        query = parse(text)
        plan, rows = org._select(query)
        if query.count_only:
            message = "Aggregate functions such as COUNT() are not supported in Bulk V2 Query"
            raise ApiError(400, "API_ERROR", message)
        if query.offset is not None:
            raise ApiError(400, "API_ERROR", "OFFSET is not supported in Bulk V2 Query")

        columns = [
            ".".join([*(hop.relationship for hop in bound.hops), bound.leaf.name])
            for bound in plan.selected
        ]
        separator = _DELIMITERS[delimiter]
        lines = [_csv_line([b.value(row) for b in plan.selected], separator) for row in rows]
        lines += [
            _csv_line([_raw_value(raw, column) for column in columns], separator)
            for raw in org._raw.get(plan.root.name, ())
        ]
        now = org._now()
        job = QueryJob(
            id=org._new_id(BULK_JOB_PREFIX),
            operation=operation,
            object_name=plan.root.name,
            created_by=org.user_id,
            created=now,
            modified=now,
            api_version=version,
            column_delimiter=delimiter,
            line_ending=ending,
            header=_csv_line(columns, separator),
            lines=lines,
        )
        self._jobs[job.id] = job
        self._created += 1
        self._stored_bytes += job.size
        return job

    def _poll(self, job: QueryJob, now: datetime) -> None:
        if job.state not in _OPEN_STATES:
            return
        job.polls += 1
        state = "JobComplete" if job.polls >= self.polls_to_complete else "InProgress"
        if state != job.state:
            job.state, job.modified = state, now
        if state == "JobComplete":
            job.processing_ms = int((now - job.created).total_seconds() * 1000)

    def _abort(self, job: QueryJob, body: Mapping[str, Any], now: datetime) -> None:
        state = body.get("state")
        if state != "Aborted":
            message = f"A query job can only be set to the state Aborted, not {state}"
            raise ApiError(400, "INVALIDJOBSTATE", message)
        if job.state not in _OPEN_STATES:
            finished = {"JobComplete": "Completed"}.get(job.state, job.state)
            raise ApiError(400, "INVALIDJOBSTATE", f"Aborting already {finished} Job not allowed")
        job.state, job.modified = "Aborted", now

    def _delete(self, job: QueryJob) -> None:
        if job.state == "InProgress":
            raise ApiError(400, "INVALIDJOBSTATE", "Deleting a job in progress is not allowed")
        del self._jobs[job.id]  # what it stored still counts against the day's storage

    def _results(self, job: QueryJob, request: Request, version: str) -> Response:
        if version != job.api_version:
            message = (
                f"Query results can only be read with the API version that created the job "
                f"({job.api_version})"
            )
            raise ApiError(409, "API_ERROR", message)
        if job.state != "JobComplete":
            message = (
                "can only download query results of successfully completed bulk job with "
                f"status: JOB_COMPLETE. Current status: {_SHOUTED_STATES[job.state]}"
            )
            # The status and wording of the Bulk API 2.0 guide's example for this case.
            raise ApiError(412, "JOB_NOT_COMPLETE", message)
        start = _decode_locator(request.param("locator"), len(job.lines))
        size = _max_records(request.param("maxRecords"))
        end = len(job.lines) if size is None else min(start + size, len(job.lines))
        page = job.lines[start:end]
        ending = _LINE_ENDINGS[job.line_ending]
        body = "".join(line + ending for line in [job.header, *page]).encode("utf-8")
        headers = {
            "Content-Type": "text/csv",
            "Sforce-NumberOfRecords": str(len(page)),
            "Sforce-Locator": _encode_locator(end) if end < len(job.lines) else "null",
        }
        return Response(200, body, headers)

    def _list(self, request: Request, version: str) -> dict[str, Any]:
        job_type = request.param("jobType")
        jobs = list(self._jobs.values()) if job_type in (None, "V2Query") else []
        start = _decode_locator(request.param("queryLocator"), len(jobs))
        end = start + _JOB_LIST_PAGE
        done = end >= len(jobs)
        following = f"/services/data/v{version}/jobs/query?queryLocator={_encode_locator(end)}"
        return {
            "done": done,
            "records": [job.summary(with_type=True) for job in jobs[start:end]],
            "nextRecordsUrl": None if done else following,
        }


def _choice(
    body: Mapping[str, Any], key: str, choices: Iterable[str], kind: str, default: str | None
) -> str:
    value = body.get(key, default)
    if not isinstance(value, str) or value not in choices:
        message = (
            f"Cannot deserialize instance of {kind} from VALUE_STRING value {value} or request "
            "may be missing a required field"
        )
        raise ApiError(400, "JSON_PARSER_ERROR", message)
    return value


def _refuse_nested_queries(text: str) -> None:
    """Bulk API 2.0 answers no parent-to-child query; such a subquery sits before the main FROM."""
    tokens = tokenize(text)
    for before, token in zip(tokens, tokens[1:], strict=False):
        if before.is_word("FROM"):
            return
        if before.is_symbol("(") and token.is_word("SELECT"):
            message = "Aggregate Relationships not supported in Bulk V2 Query with CSV content type"
            raise ApiError(400, "API_ERROR", message)


def _encode_locator(offset: int) -> str:
    # Salesforce's locators are short opaque strings ("MTAwMDA"): base64 of a record offset.
    return base64.b64encode(str(offset).encode()).decode().rstrip("=")


def _decode_locator(locator: str | None, total: int) -> int:
    if not locator:
        return 0
    try:
        offset = int(base64.b64decode(locator + "=" * (-len(locator) % 4), validate=True))
    except (binascii.Error, ValueError):
        offset = -1
    if not 0 <= offset <= total:
        raise ApiError(400, "INVALID_LOCATOR", f"Invalid locator: {locator}")
    return offset


def _max_records(text: str | None) -> int | None:
    if text is None:
        return None  # no page size asked for: the whole result in one page
    if not text.isdigit() or int(text) < 1:
        raise ApiError(400, "API_ERROR", f"maxRecords must be a positive integer, not {text}")
    return int(text)


def _csv_line(values: Iterable[object], separator: str) -> str:
    """One CSV line as Bulk API 2.0 writes it: every value quoted, a null as an empty value."""
    return separator.join('"' + _csv_text(value).replace('"', '""') + '"' for value in values)


def _csv_text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        moment = utc(value)
        return f"{moment:%Y-%m-%dT%H:%M:%S}.{moment.microsecond // 1000:03d}Z"
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, float):
        text = repr(value)
        return format(Decimal(text), "f") if "e" in text else text  # never 1e+16
    return str(value)


def _raw_value(raw: Mapping[str, Any], column: str) -> object:
    """A served-as-is record's value for ``Owner.Email``: nested as the REST API nests it."""
    current: object = raw
    for part in column.split("."):
        current = current.get(part) if isinstance(current, Mapping) else None
    return current


# ---- sObject Collections ---------------------------------------------------------------------


@dataclass(frozen=True)
class _Pending:
    """One record of a Collections request, checked: either refused or ready to write."""

    known_id: str | None  # the id its answer names; a record yet to be created has none
    write: Callable[[], str] | None = None  # writes it and answers its id
    error: ApiError | None = None


def collections(
    org: SalesforceEmulator, request: Request, version: str, path: Sequence[str]
) -> Response:
    """Answer a request under ``/composite/sobjects``; ``path`` is what follows it."""
    _require_version(version, _FIRST_COLLECTIONS_VERSION)
    method = request.method
    match list(path):
        case []:
            allow(method, "POST", "PATCH", "DELETE")
            if method == "DELETE":
                ids = _id_list(request.param("ids"))
                _within_limit(len(ids), COLLECTION_WRITE_LIMIT)
                all_or_none = (request.param("allOrNone") or "").lower() == "true"
                return Response(200, _settle([_delete_plan(org, i) for i in ids], all_or_none))
            records, all_or_none = _records(json_object(request))
            plan = _create_plan if method == "POST" else _update_plan
            # Every record is read and checked before any is written, as Salesforce reads the
            # whole body first.
            return Response(200, _settle([plan(org, record) for record in records], all_or_none))
        case [type_name]:
            allow(method, "GET", "POST")
            sobject = org._sobject_type(type_name)
            if method == "GET":
                ids = _id_list(request.param("ids"))
                fields = request.param("fields")
            else:
                ids, fields = _read_body(json_object(request))
            _within_limit(len(ids), COLLECTION_READ_LIMIT)
            return Response(200, [_read(org, sobject, i, fields, version) for i in ids])
    raise not_found()


def _records(body: Mapping[str, Any]) -> tuple[list[Mapping[str, Any]], bool]:
    records = body.get("records")
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise ApiError(400, "JSON_PARSER_ERROR", "records must be a list of JSON objects")
    _within_limit(len(records), COLLECTION_WRITE_LIMIT)
    all_or_none = body.get("allOrNone", False)
    if not isinstance(all_or_none, bool):
        message = (
            f"Cannot deserialize instance of boolean from VALUE_STRING value {all_or_none} or "
            "request may be missing a required field"
        )
        raise ApiError(400, "JSON_PARSER_ERROR", message)
    return records, all_or_none


def _within_limit(count: int, limit: int) -> None:
    if count > limit:
        message = f"record limit reached. cannot submit more than {limit} records into this call"
        raise ApiError(400, "EXCEEDED_ID_LIMIT", message)


def _id_list(text: str | None) -> list[str]:
    ids = [part.strip() for part in (text or "").split(",") if part.strip()]
    if not ids:
        raise ApiError(400, "MISSING_ARGUMENT", "ids: at least one record id is required")
    return ids


def _read_body(body: Mapping[str, Any]) -> tuple[list[str], str | None]:
    ids, fields = body.get("ids"), body.get("fields")
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise ApiError(400, "JSON_PARSER_ERROR", "ids must be a list of record ids")
    if not isinstance(fields, list) or not all(isinstance(f, str) for f in fields):
        raise ApiError(400, "JSON_PARSER_ERROR", "fields must be a list of field names")
    return ids, ",".join(fields) or None


def _record_type(org: SalesforceEmulator, record: Mapping[str, Any]) -> SObjectType:
    attributes = record.get("attributes")
    name = attributes.get("type") if isinstance(attributes, Mapping) else None
    if not isinstance(name, str) or not name:
        raise ApiError(400, "INVALID_TYPE", "Each record needs its sObject type in attributes")
    sobject = org._type(name)
    if sobject is None:
        raise ApiError(400, "INVALID_TYPE", f"sObject type '{name}' is not supported.")
    return sobject


def _refusal(check: Callable[[], object]) -> ApiError | None:
    """The record's own refusal, if any; an error with the request as a whole propagates."""
    try:
        check()
    except ApiError as error:
        if error.code in _UNREADABLE:
            raise
        return error
    return None


def _without_id(record: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in record.items() if key.lower() != "id"}


def _given_id(record: Mapping[str, Any]) -> object:
    return next((value for key, value in record.items() if key.lower() == "id"), None)


def _missing(org: SalesforceEmulator, record_id: str) -> ApiError:
    if record_id in org._ids:  # issued once, so deleted since
        return ApiError(400, "ENTITY_IS_DELETED", "entity is deleted")
    return ApiError(400, "INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id")


def _create_plan(org: SalesforceEmulator, record: Mapping[str, Any]) -> _Pending:
    sobject = _record_type(org, record)
    body = _without_id(record)
    error = _refusal(lambda: org._checked_values(sobject, body, creating=True))
    if _given_id(record) is not None:
        message = "cannot specify Id in an insert call"
        error = ApiError(400, "INVALID_FIELD_FOR_INSERT_UPDATE", message, ["Id"])
    if error is not None:
        return _Pending(None, error=error)
    return _Pending(None, write=lambda: org._create(sobject, body))


def _update_plan(org: SalesforceEmulator, record: Mapping[str, Any]) -> _Pending:
    sobject = _record_type(org, record)
    body = _without_id(record)
    error = _refusal(lambda: org._checked_values(sobject, body, creating=False))
    given = _given_id(record)
    if given is None:
        message = "Id not specified in an update call"
        return _Pending(None, error=ApiError(400, "MISSING_ARGUMENT", message))
    if not (isinstance(given, str) and looks_like_id(given) and given[:3] == sobject.key_prefix):
        message = f"{sobject.label} ID: id value of incorrect type: {given}"
        return _Pending(None, error=ApiError(400, "MALFORMED_ID", message, ["Id"]))
    record_id = to_18(given)
    found = sobject.records.get(record_id)
    if found is None:
        return _Pending(record_id, error=_missing(org, record_id))
    if error is not None:
        return _Pending(record_id, error=error)

    def write() -> str:
        org._update(sobject, found, body)
        return record_id

    return _Pending(record_id, write=write)


def _delete_plan(org: SalesforceEmulator, given: str) -> _Pending:
    if not looks_like_id(given):
        return _Pending(None, error=ApiError(400, "MALFORMED_ID", f"malformed id {given}"))
    record_id = to_18(given)
    located = _locate(org, record_id)
    if located is None:
        return _Pending(record_id, error=_missing(org, record_id))
    sobject, record = located
    error = _refusal(lambda: org._deletable(sobject))
    if error is not None:
        return _Pending(record_id, error=error)

    def write() -> str:
        if record_id not in sobject.records:  # named twice in one request
            raise _missing(org, record_id)
        org._delete(sobject, record)
        return record_id

    return _Pending(record_id, write=write)


def _locate(org: SalesforceEmulator, record_id: str) -> tuple[SObjectType, Record] | None:
    for sobject in org._types.values():
        record = sobject.records.get(record_id)
        if record is not None:
            return sobject, record
    return None


def _settle(pending: Sequence[_Pending], all_or_none: bool) -> list[dict[str, Any]]:
    """Write what may be written; one answer per record, in the request's order."""
    if all_or_none and any(p.error is not None for p in pending):
        rolled_back = ApiError(400, "ALL_OR_NONE_OPERATION_ROLLED_BACK", _ROLLED_BACK)
        return [_refused(p.known_id, p.error or rolled_back) for p in pending]
    answers = []
    for item in pending:
        if item.write is None:
            assert item.error is not None
            answers.append(_refused(item.known_id, item.error))
            continue
        try:
            answers.append({"id": item.write(), "success": True, "errors": []})
        except ApiError as error:
            answers.append(_refused(item.known_id, error))
    return answers


def _refused(record_id: str | None, error: ApiError) -> dict[str, Any]:
    answer: dict[str, Any] = {"id": record_id} if record_id else {}
    detail = {"statusCode": error.code, "message": error.message, "fields": list(error.fields)}
    return answer | {"success": False, "errors": [detail]}


def _read(
    org: SalesforceEmulator, sobject: SObjectType, given: str, fields: str | None, version: str
) -> dict[str, Any] | None:
    record = sobject.records.get(to_18(given)) if looks_like_id(given) else None
    return None if record is None else org._render_row(sobject, record, fields, version)
