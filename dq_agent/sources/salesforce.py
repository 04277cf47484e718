"""``type: salesforce`` — an object's records through the REST API (simple-salesforce).

Reads use SOQL, typed by the object's describe: REST pages (2,000 records a call) for up to
``bulk_threshold`` records, a Bulk API 2.0 query job (CSV pages of up to 50,000) above it; the
records are copied into a private SQLite table for the checks, a page at a time (never all
held at once). Writes are compare-and-set: the value is re-read and compared, the write carries
``If-Unmodified-Since``, and the record is re-read after. Many writes go as sObject
Collections, 200 records a call, each record standing alone (re-read just before: Collections
take no ``If-Unmodified-Since``). Every response's ``Sforce-Limit-Info`` is read: past
``max_api_share`` of the org's daily requests, the run stops calling the org.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from email.utils import format_datetime
from typing import Any, Literal
from urllib.parse import urlsplit

import requests
import sqlalchemy as sa

from dq_agent.config.models import SalesforceConnector, SalesforceSourceSpec
from dq_agent.errors import SourceError
from dq_agent.sources.base import CellWrite, Relation, WriteResult, same_value
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
# sObject Collections: records a write may carry, ids a read may ask for.
_COLLECTION_WRITE = 200
_COLLECTION_READ = 2000
# Bulk API 2.0: records a results page may carry, and how long a query job may take.
_BULK_PAGE = 50_000
_BULK_MAX_WAIT_S = 3600.0
_BULK_POLL_MAX_S = 30.0
_LIMIT_INFO = re.compile(r"(?:^|[;,\s])api-usage=(\d+)/(\d+)")


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


def _session(connector: SalesforceConnector) -> OrgSession:
    url = connector.instance_url
    if url and url.startswith("http://"):
        # An emulator on http://HOST:PORT: the client will ask for https://HOST:PORT.
        host = urlsplit(url).netloc
        return OrgSession(
            timeout=connector.timeout, rewrite_from=f"https://{host}", rewrite_to=f"http://{host}"
        )
    return OrgSession(timeout=connector.timeout)


@dataclass
class ApiUsage:
    """The org's daily API requests, as the latest ``Sforce-Limit-Info`` header said."""

    used: int | None = None
    limit: int | None = None

    def observe(self, header: str | None) -> None:
        match = _LIMIT_INFO.search(header or "")
        if match:
            self.used, self.limit = int(match[1]), int(match[2])

    @property
    def share(self) -> float | None:
        if self.used is None or not self.limit:
            return None
        return self.used / self.limit

    def __str__(self) -> str:
        if self.used is None or not self.limit:
            return "unknown"
        return f"{self.used:,} of {self.limit:,} daily API requests ({self.used / self.limit:.0%})"


class OrgSession(ApiSession):
    """The client's HTTP session: every response's ``Sforce-Limit-Info`` is kept in
    :attr:`usage`, whichever part of the client made the call (REST, Bulk 2.0, Collections)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.usage = ApiUsage()

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> Any:
        response = super().request(method, url, *args, **kwargs)
        self.usage.observe(response.headers.get("Sforce-Limit-Info"))
        return response


def api_usage(client: Any) -> ApiUsage:
    """What the client's responses said of the org's daily API usage."""
    session = getattr(client, "session", None)
    return session.usage if isinstance(session, OrgSession) else ApiUsage()


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
    """Reads one object's records; writes fields back compare-and-set, one or many at once."""

    def __init__(
        self,
        client: Any,
        spec: SalesforceSourceSpec,
        *,
        retry: RetryPolicy | None = None,
        connector: SalesforceConnector | None = None,
    ) -> None:
        self._sf = client
        self._spec = spec
        self._retry = retry or RetryPolicy()
        self._bulk_threshold = connector.bulk_threshold if connector else 10_000
        self._max_api_share = connector.max_api_share if connector else 0.5
        self._copy: FetchedCopy | None = None
        self._modified: dict[str, datetime] = {}
        self._types: dict[str, str] = {}
        # How the last read went: "rest" (pages of 2,000) or "bulk" (a Bulk API 2.0 job).
        self.read_by: str | None = None

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
        names = list(dict.fromkeys(["Id", *spec.fields]))
        rows: Iterable[dict[str, Any]] = (
            self._typed_row(record, wanted) for record in self._records(soql)
        )
        if any(self._types.get(n) not in _TYPED for n in names):
            # A relationship field's (Owner.Email) type is guessed from all its values.
            rows = list(rows)
        columns = [FetchedColumn(n, self._sql_type(n, rows)) for n in names]
        self._copy = FetchedCopy(spec.object)
        # Otherwise the records go to the copy a page at a time, never all held at once.
        return self._copy.load(columns, self._noting_modified(rows), ("Id",))

    def _noting_modified(self, rows: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        """``rows``, each record's ``LastModifiedDate`` kept (for ``If-Unmodified-Since``) as
        they pass; of records that share an Id, the first is the one checked."""
        self._modified = {}
        first: dict[str, Any] = {}
        for row in rows:
            first.setdefault(str(row["Id"]), row.get("LastModifiedDate"))
            yield row
        for record_id in [i for i, at in first.items() if not isinstance(at, datetime)]:
            del first[record_id]  # in place: a copy would double the index for a moment
        self._modified = first

    def _records(self, soql: str) -> Iterator[Mapping[str, Any]]:
        """The query's records, a page at a time: REST pages (``nextRecordsUrl``) while there
        are at most ``bulk_threshold`` of them, a Bulk API 2.0 job when there are more (its
        first REST page says how many)."""
        page = self._call("query", lambda: self._sf.query(soql))
        if page.get("totalSize", 0) > self._bulk_threshold:
            self.read_by = "bulk"
            yield from self._bulk_query(soql)
            return
        self.read_by = "rest"
        yield from page["records"]
        while not page.get("done", True):
            url = page["nextRecordsUrl"]
            page = self._call(
                "query", lambda url=url: self._sf.query_more(url, identifier_is_url=True)
            )
            yield from page["records"]

    def _bulk_query(self, soql: str) -> Iterator[Mapping[str, Any]]:
        """A Bulk API 2.0 query job: created, polled with backoff until complete, its CSV
        results fetched page by page (``Sforce-Locator``)."""
        body = {"operation": "query", "query": soql, "contentType": "CSV"}
        body |= {"columnDelimiter": "COMMA", "lineEnding": "LF"}
        job = self._call(
            "bulk query", lambda: self._sf.restful("jobs/query", method="POST", json=body)
        )
        job_id = str(job["id"])
        self._await_job(job_id)
        locator = ""
        while True:
            text, locator = self._call(
                "bulk results", lambda loc=locator: self._bulk_page(job_id, loc)
            )
            for row in csv.DictReader(_lines(text)):
                yield {name: self._from_csv(name, value) for name, value in row.items()}
            if not locator:
                return

    def _await_job(self, job_id: str) -> None:
        waited, attempt = 0.0, 0
        while True:
            job = self._call(
                "bulk job", lambda: self._sf.restful(f"jobs/query/{job_id}", method="GET")
            )
            state = job.get("state")
            if state == "JobComplete":
                return
            if state in ("Failed", "Aborted"):
                why = job.get("errorMessage") or state
                raise SourceError(
                    f"Salesforce Bulk API query job {job_id} on {self._spec.object} {state}: {why}",
                    transient=False,
                )
            if waited >= _BULK_MAX_WAIT_S:
                self._call(
                    "bulk abort",
                    lambda: self._sf.restful(
                        f"jobs/query/{job_id}", method="PATCH", json={"state": "Aborted"}
                    ),
                )
                raise SourceError(
                    f"Salesforce Bulk API query job {job_id} on {self._spec.object} did not "
                    f"finish in {_BULK_MAX_WAIT_S / 60:.0f} minutes; aborted it",
                    transient=True,
                )
            delay = min(_BULK_POLL_MAX_S, self._retry.base_delay * 2**attempt)
            attempt += 1
            waited += delay
            self._retry.sleep(delay)

    def _bulk_page(self, job_id: str, locator: str) -> tuple[str, str]:
        """One page of a finished job's CSV results, and the locator of the next ("" at the
        end). The client's ``restful`` parses JSON, so the CSV is fetched on its session."""
        from simple_salesforce.util import exception_handler

        params: dict[str, Any] = {"maxRecords": _BULK_PAGE}
        if locator:
            params["locator"] = locator
        headers = {**self._sf.headers, "Accept": "text/csv"}
        url = f"{self._sf.bulk2_url}query/{job_id}/results"
        response = self._sf.session.get(url, headers=headers, params=params)
        if response.status_code >= 300:
            exception_handler(response, f"jobs/query/{job_id}/results")
        following = response.headers.get("Sforce-Locator") or ""
        return response.content.decode("utf-8"), "" if following == "null" else following

    def _from_csv(self, name: str, text: str | None) -> Any:
        """A Bulk CSV field as the REST API's JSON has it: an empty field is null, a
        boolean field's ``true``/``false`` a boolean; the rest is typed as REST text is."""
        if text is None or text == "":
            return None
        if self._types.get(name) == "boolean" and text in ("true", "false"):
            return text == "true"
        return text

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

    def _sql_type(self, name: str, rows: Iterable[Mapping[str, Any]]) -> sa.types.TypeEngine[Any]:
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
        self._require_field(column)
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
            # here: that is their write, not ours (the ledger says "already fixed", by whom).
            record = self._get(record_id)
            after = self._typed(column, record.get(column))
            return WriteResult(
                "conflict", before, after, _CHANGED_SINCE_READ, by=self._modifier(record)
            )
        after = self._read(record_id, column)
        if not same_value(after, new):
            return WriteResult("conflict", before, after, f"{column} reads {after!r} after writing")
        return WriteResult("written", before, after)

    def write_many(self, writes: Sequence[CellWrite]) -> list[WriteResult]:
        """Compare-and-set writes as sObject Collections: the records re-read (2,000 a
        call), those still holding the value read and not modified since the read written
        200 a call with ``allOrNone: false``, then re-read to verify. Each record stands
        alone. Collections take no ``If-Unmodified-Since``, so an edit in the milliseconds
        between the re-read and the write is the one race this cannot see (as with Sheets)."""
        for write in writes:
            self._require_field(write.column)
        ids = [str(w.key["Id"]) for w in writes]
        columns = sorted({w.column for w in writes})
        now = self._collection_read(ids, columns)
        results: list[WriteResult | None] = [None] * len(writes)
        ready: list[int] = []
        for i, write in enumerate(writes):
            record = now.get(ids[i])
            before = None if record is None else self._typed(write.column, record.get(write.column))
            seen = self._modified.get(ids[i])
            moved = None if record is None else _moment(record.get("LastModifiedDate"))
            if record is None:
                results[i] = WriteResult("conflict", None, None, "the record no longer exists")
            elif not same_value(before, write.expected_old):
                results[i] = WriteResult(
                    "conflict", before, before, f"{write.column} is now {before!r}"
                )
            elif seen is not None and isinstance(moved, datetime) and moved > seen:
                results[i] = WriteResult("conflict", before, before, _CHANGED_SINCE_READ)
            else:
                ready.append(i)
        refused = self._collection_update([writes[i] for i in ready])
        after = self._collection_read([ids[i] for i in ready], columns) if ready else {}
        for i, why in zip(ready, refused, strict=True):
            write = writes[i]
            before = self._typed(write.column, now[ids[i]].get(write.column))
            record = after.get(ids[i])
            value = None if record is None else self._typed(write.column, record.get(write.column))
            if why is not None:
                results[i] = WriteResult(why[0], before, value, why[1])
            elif not same_value(value, write.new):
                detail = f"{write.column} reads {value!r} after writing"
                results[i] = WriteResult("conflict", before, value, detail)
            else:
                results[i] = WriteResult("written", before, value)
        return [r for r in results if r is not None]

    def _collection_read(
        self, ids: Sequence[str], columns: Sequence[str]
    ) -> dict[str, Mapping[str, Any]]:
        """The records ``ids`` now (those that exist), by id, 2,000 a call."""
        fields = ",".join(dict.fromkeys(["Id", *columns, "LastModifiedDate"]))
        unique = list(dict.fromkeys(ids))
        found: dict[str, Mapping[str, Any]] = {}
        for start in range(0, len(unique), _COLLECTION_READ):
            chunk = ",".join(unique[start : start + _COLLECTION_READ])
            path = f"composite/sobjects/{self._spec.object}"
            params = {"ids": chunk, "fields": fields}
            records = self._call(
                "read", lambda path=path, params=params: self._sf.restful(path, params=params)
            )
            for record in records or []:
                if isinstance(record, Mapping) and record.get("Id"):
                    found[_id15(str(record["Id"]))] = record
        return {i: found[_id15(i)] for i in ids if _id15(i) in found}

    def _collection_update(
        self, writes: Sequence[CellWrite]
    ) -> list[tuple[Literal["conflict", "failed"], str] | None]:
        """PATCH the writes, 200 records a call (the writes of one record as one entry, since
        Salesforce refuses an id twice in a call); per write None (accepted) or its refusal."""
        by_record: dict[str, dict[str, Any]] = {}
        outcome_of: list[tuple[str, tuple[Literal["conflict", "failed"], str] | None]] = []
        for write in writes:
            record_id = str(write.key["Id"])
            fields = by_record.setdefault(record_id, {})
            if write.column in fields:
                detail = f"{write.column} of {record_id} is set by an earlier write of the batch"
                outcome_of.append((record_id, ("failed", detail)))
                continue
            fields[write.column] = write.new
            outcome_of.append((record_id, None))
        answers: dict[str, tuple[Literal["conflict", "failed"], str] | None] = {}
        ids = list(by_record)
        for start in range(0, len(ids), _COLLECTION_WRITE):
            chunk = ids[start : start + _COLLECTION_WRITE]
            records = [
                {"attributes": {"type": self._spec.object}, "id": i, **by_record[i]} for i in chunk
            ]
            # Collections honour no If-Unmodified-Since (Salesforce applies it to sObject Rows
            # only): the re-read just before is the comparison, the one after the proof.
            body = {"allOrNone": False, "records": records}
            try:
                answered = self._call(
                    "update",
                    lambda body=body: self._sf.restful(
                        "composite/sobjects", method="PATCH", json=body
                    ),
                )
            except SourceError as exc:
                # A timeout may have written the chunk, a refusal did not: the records say.
                answers |= self._after_error(chunk, by_record, exc)
                continue
            answered = answered or [{}] * len(chunk)
            answers |= {i: _refusal(a) for i, a in zip(chunk, answered, strict=True)}
        return [own or answers[record_id] for record_id, own in outcome_of]

    def _after_error(
        self, ids: Sequence[str], by_record: Mapping[str, Mapping[str, Any]], error: SourceError
    ) -> dict[str, tuple[Literal["conflict", "failed"], str] | None]:
        """What became of records whose call failed, read back: written (None) where they
        hold every new value, failed where they do not."""
        columns = sorted({c for i in ids for c in by_record[i]})
        now = self._collection_read(ids, columns)
        return {
            i: None
            if all(
                same_value(self._typed(c, now.get(i, {}).get(c)), new)
                for c, new in by_record[i].items()
            )
            else ("failed", f"not written: {error}")
            for i in ids
        }

    def _require_field(self, column: str) -> None:
        if column not in self._types and self._types:
            raise SourceError(f"{self._spec.object} has no field {column}", transient=False)

    def read(self, key: Mapping[str, Any], column: str) -> Any:
        return self._read(str(key["Id"]), column)

    def _modifier(self, record: Mapping[str, Any]) -> str | None:
        """The e-mail of the user who changed ``record`` last, when Salesforce says."""
        user = record.get("LastModifiedById")
        if not user:
            return None
        try:
            return self.owner_emails([str(user)]).get(str(user))
        except SourceError:
            return None

    def _read(self, record_id: str, column: str) -> Any:
        return self._typed(column, self._get(record_id).get(column))

    def _get(self, record_id: str) -> Any:
        return self._call("read", lambda: self._object().get(record_id))

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
        usage = api_usage(self._sf)
        share = usage.share
        if share is not None and share > self._max_api_share:
            raise SourceError(
                f"Salesforce API usage is {usage}, past max_api_share "
                f"{self._max_api_share:.0%}: no more Salesforce reads or writes this run "
                f"(the {what} on {self._spec.object} was not made)",
                transient=False,
            )
        return self._retry.call(f"Salesforce {what} on {self._spec.object}", action, translate)

    def close(self) -> None:
        if self._copy is not None:
            self._copy.close()
            self._copy = None


_CHANGED_SINCE_READ = "the record changed after it was read (412)"


def _refusal(answer: Any) -> tuple[Literal["conflict", "failed"], str] | None:
    """A Collections answer for one record: None when it succeeded; else a precondition
    failure is someone else's change (a conflict), any other error the source's refusal of
    this record (failed), with what it said."""
    if isinstance(answer, Mapping) and answer.get("success"):
        return None
    errors = answer.get("errors", []) if isinstance(answer, Mapping) else []
    errors = [e for e in errors if isinstance(e, Mapping)]
    if any("PRECONDITION" in str(e.get("statusCode", "")) for e in errors):
        return "conflict", _CHANGED_SINCE_READ
    text = "; ".join(f"{e.get('statusCode')}: {e.get('message')}" for e in errors)
    return "failed", f"Salesforce refused the record: {text or 'no reason given'}"


def _lines(text: str) -> Iterator[str]:
    """``text``'s lines one at a time, each with its end (a quoted CSV field may span lines):
    a page of 50,000 records is not copied again (``io.StringIO`` would hold it 4 times)."""
    start = 0
    while start < len(text):
        end = text.find("\n", start)
        end = len(text) if end < 0 else end + 1
        yield text[start:end]
        start = end


def _id15(record_id: str) -> str:
    """The case-sensitive 15-character form of an id: what 15- and 18-character ids share."""
    return record_id[:15]


def _lookup(record: Mapping[str, Any], name: str) -> Any:
    """``Owner.Email`` follows the nested relationship object the API returns (a Bulk CSV
    row names the column ``Owner.Email`` itself)."""
    if name in record:
        return record[name]
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
