"""The Salesforce emulator answers every operation the product or a user's client performs with the
status and the response keys Salesforce documents.

Each expected shape below is written down from Salesforce's published examples (REST API, Bulk
API 2.0 and SOAP API developer guides) and simple-salesforce's own test fixtures; its comment
names the page. A shape is compared to depth 2: the keys of the body (of its first element when
the body is a list), and the keys of one nested object (or of its first element when it is a
list). Where the emulator answers only some of a resource's documented keys (describe, limits,
the SOAP login's user info), the shape says so and every key answered must be a documented one.
"""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest
import requests
from simple_salesforce import Salesforce

from dq_agent_sandbox.http import LoopbackServer
from dq_agent_sandbox.salesforce import SalesforceEmulator
from tests.sf_client import LoopbackSession, open_salesforce_client
from tests.sf_reference import DESCRIBE_FIELD, DESCRIBE_GLOBAL_SOBJECT, DESCRIBE_SOBJECT, keys

T0 = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
PETE = "005000000000010AAA"


@dataclass(frozen=True)
class Shape:
    """What Salesforce answers: a status, then the body's keys to depth 2."""

    status: int
    keys: frozenset[str] = frozenset()
    inner: str | None = None  # the nested object looked into
    inner_keys: frozenset[str] = frozenset()
    # False where the emulator answers only some of the documented keys (and no others).
    exact: bool = True
    inner_exact: bool = True


ERROR = keys("message", "errorCode")  # REST API: "Status Codes and Error Responses"
SAVE_RESULT = keys("id", "success", "errors")  # REST API: "Create a Record"
COLLECTION_ERROR = keys("statusCode", "message", "fields")  # REST API: sObject Collections pages
ATTRIBUTES = keys("type", "url")  # REST API: "Execute a SOQL Query", record attributes
QUERY_JOB = keys(  # Bulk API 2.0: "Create a Query Job", example response body
    "id",
    "operation",
    "object",
    "createdById",
    "createdDate",
    "systemModstamp",
    "state",
    "concurrencyMode",
    "contentType",
    "apiVersion",
    "lineEnding",
    "columnDelimiter",
)
LIMITS = keys(  # REST API: "List Org Limits", example response body
    "ActiveScratchOrgs",
    "AnalyticsExternalDataSizeMB",
    "ConcurrentAsyncGetReportInstances",
    "ConcurrentSyncReportRuns",
    "DailyAnalyticsDataflowJobExecutions",
    "DailyApiRequests",
    "DailyAsyncApexExecutions",
    "DailyBulkApiBatches",
    "DailyBulkV2QueryFileStorageMB",
    "DailyBulkV2QueryJobs",
    "DailyDurableGenericStreamingApiEvents",
    "DailyDurableStreamingApiEvents",
    "DailyGenericStreamingApiEvents",
    "DailyScratchOrgs",
    "DailyStandardVolumePlatformEvents",
    "DailyStreamingApiEvents",
    "DailyWorkflowEmails",
    "DataStorageMB",
    "DurableStreamingApiConcurrentClients",
    "FileStorageMB",
    "HourlyAsyncReportRuns",
    "HourlyDashboardRefreshes",
    "HourlyDashboardResults",
    "HourlyDashboardStatuses",
    "HourlyODataCallout",
    "HourlySyncReportRuns",
    "HourlyTimeBasedWorkflow",
    "MassEmail",
    "Package2VersionCreates",
    "PermissionSets",
    "SingleEmail",
    "StreamingApiConcurrentClients",
)
SOAP_USER_INFO = keys(  # simple-salesforce tests/__init__.py: LOGIN_RESPONSE_SUCCESS
    "accessibilityMode",
    "currencySymbol",
    "orgAttachmentFileSizeLimit",
    "orgDefaultCurrencyIsoCode",
    "orgDisallowHtmlAttachments",
    "orgHasPersonAccounts",
    "organizationId",
    "organizationMultiCurrency",
    "organizationName",
    "profileId",
    "roleId",
    "sessionSecondsValid",
    "userDefaultCurrencyIsoCode",
    "userEmail",
    "userFullName",
    "userId",
    "userLanguage",
    "userLocale",
    "userName",
    "userTimeZone",
    "userType",
    "userUiSkin",
)

EXPECTED: dict[str, Shape] = {
    # simple-salesforce tests/__init__.py (LOGIN_RESPONSE_SUCCESS); SOAP API: "LoginResult"
    "soap login": Shape(
        200,
        keys(
            "metadataServerUrl",
            "passwordExpired",
            "sandbox",
            "serverUrl",
            "sessionId",
            "userId",
            "userInfo",
        ),
        "userInfo",
        SOAP_USER_INFO,
        inner_exact=False,
    ),
    # REST API: "List Available REST API Versions"
    "versions": Shape(200, keys("label", "url", "version")),
    # REST API: "Execute a SOQL Query"
    "query": Shape(
        200, keys("totalSize", "done", "records"), "records", keys("attributes", "Name")
    ),
    # REST API: "Execute a SOQL Query", when the result has more records than one page
    "query, first page": Shape(
        200,
        keys("totalSize", "done", "nextRecordsUrl", "records"),
        "records",
        keys("attributes", "Id"),
    ),
    "query more": Shape(
        200, keys("totalSize", "done", "records"), "records", keys("attributes", "Id")
    ),
    # REST API: "Get Field Values from a Standard Object Record" (sObject Rows, ?fields=)
    "sobject get": Shape(200, keys("attributes", "Name", "Total__c"), "attributes", ATTRIBUTES),
    # REST API: "Create a Record"
    "sobject create": Shape(201, SAVE_RESULT),
    # REST API: "Update a Record"
    "sobject update": Shape(204),
    # REST API: "Delete a Record"
    "sobject delete": Shape(204),
    # REST API: "sObject Basic Information"
    "sobject basic information": Shape(
        200,
        keys("objectDescribe", "recentItems"),
        "objectDescribe",
        DESCRIBE_GLOBAL_SOBJECT,
        inner_exact=False,
    ),
    # REST API: "sObject Describe"; SOAP API: "DescribeSObjectResult"
    "describe": Shape(200, DESCRIBE_SOBJECT, "fields", DESCRIBE_FIELD),
    # REST API: "Describe Global"
    "describe global": Shape(
        200,
        keys("encoding", "maxBatchSize", "sobjects"),
        "sobjects",
        DESCRIBE_GLOBAL_SOBJECT,
        inner_exact=False,
    ),
    # REST API: "List Org Limits"
    "limits": Shape(200, LIMITS, "DailyApiRequests", keys("Max", "Remaining"), exact=False),
    # Bulk API 2.0: "Create a Query Job"
    "bulk job create": Shape(200, QUERY_JOB),
    # Bulk API 2.0: "Get Information About a Query Job"
    "bulk job get": Shape(
        200,
        QUERY_JOB
        | keys(
            "jobType",
            "numberRecordsProcessed",
            "retries",
            "totalProcessingTime",
            "isPkChunkingSupported",
        ),
    ),
    # Bulk API 2.0: "Get Results for a Query Job" (a CSV body: its keys are its header row)
    "bulk job results": Shape(200, keys("Id", "Name")),
    # Bulk API 2.0: "Abort a Query Job"
    "bulk job abort": Shape(200, QUERY_JOB),
    # Bulk API 2.0: "Delete a Query Job"
    "bulk job delete": Shape(204),
    # Bulk API 2.0: "Get Information About All Query Jobs"
    "bulk job list": Shape(
        200, keys("done", "records", "nextRecordsUrl"), "records", QUERY_JOB | keys("jobType")
    ),
    # Bulk API 2.0: "Errors"; the SOQL error as the REST API words it
    "bulk job with bad soql": Shape(400, ERROR),
    # REST API: "Create Records Using sObject Collections"
    "collections create": Shape(200, SAVE_RESULT),
    # REST API: "Update Records Using sObject Collections", some items failed
    "collections update": Shape(200, SAVE_RESULT, "errors", COLLECTION_ERROR),
    # REST API: "Get Records Using sObject Collections"
    "collections get": Shape(200, keys("attributes", "Name"), "attributes", ATTRIBUTES),
    # REST API: "Delete Records Using sObject Collections"
    "collections delete": Shape(200, SAVE_RESULT),
    # REST API: "Status Codes and Error Responses", one entry per status
    "401 INVALID_SESSION_ID": Shape(401, ERROR),
    "404 NOT_FOUND": Shape(404, ERROR),
    "400 MALFORMED_QUERY": Shape(400, ERROR),
    "400 INVALID_FIELD": Shape(400, ERROR),
    "412 PRECONDITION_FAILED": Shape(412, ERROR),
    "403 REQUEST_LIMIT_EXCEEDED": Shape(403, ERROR),
}


# ---- the operations --------------------------------------------------------------------------


@dataclass
class Org:
    """A running emulator, a client of it, and the ids the operations need."""

    emulator: SalesforceEmulator
    server: LoopbackServer
    sf: Salesforce
    invoice: str

    def call(self, method: str, path: str, **options: Any) -> requests.Response:
        """The request simple-salesforce sends for ``path`` (under /services/data/v59.0/)."""
        headers = {**self.sf.headers, **options.pop("headers", {})}
        url = self.sf.base_url + path
        return self.sf.session.request(method, url, headers=headers, **options)

    def job(self, soql: str = "SELECT Id, Name FROM Invoice__c") -> str:
        created = self.call("POST", "jobs/query", json={"operation": "query", "query": soql})
        return str(created.json()["id"])

    def completed_job(self) -> str:
        job_id = self.job()
        while self.call("GET", f"jobs/query/{job_id}").json()["state"] != "JobComplete":
            pass
        return job_id


@pytest.fixture
def org() -> Iterator[Org]:
    emulator = SalesforceEmulator(
        clock=lambda: T0,
        page_size=2,
        username="ops@example.com",
        password="pw",
        security_token="T",
    )
    emulator.seed(
        {
            "User": {"fields": {"Name": "string"}, "records": [{"Id": PETE, "Name": "Pete"}]},
            "Invoice__c": {
                "fields": {"Name": "string", "Total__c": "currency", "OwnerId": "reference"},
                "records": [
                    {"Name": f"INV-{n}", "Total__c": n, "OwnerId": PETE, "LastModifiedDate": T0}
                    for n in range(3)
                ],
            },
        }
    )
    invoice = emulator.state()["objects"]["Invoice__c"][0]["Id"]
    with LoopbackServer(emulator) as server, open_salesforce_client(server.base_url) as sf:
        yield Org(emulator, server, sf, invoice)


def soap_login(org: Org) -> requests.Response:
    envelope = (
        '<?xml version="1.0" encoding="utf-8" ?>'
        '<env:Envelope xmlns:env="http://schemas.xmlsoap.org/soap/envelope/"'
        ' xmlns:urn="urn:partner.soap.sforce.com"><env:Body><n1:login'
        ' xmlns:n1="urn:partner.soap.sforce.com"><n1:username>ops@example.com</n1:username>'
        "<n1:password>pwT</n1:password></n1:login></env:Body></env:Envelope>"
    )
    with LoopbackSession(org.server.base_url) as session:
        return session.post(
            "https://login.salesforce.com/services/Soap/u/59.0",
            data=envelope,
            headers={"Content-Type": "text/xml", "SOAPAction": "login"},
        )


def versions(org: Org) -> requests.Response:
    with LoopbackSession(org.server.base_url) as session:
        return session.get(f"https://{org.sf.sf_instance}/services/data/")


def query_more(org: Org) -> requests.Response:
    first = org.call("GET", "query/", params={"q": "SELECT Id FROM Invoice__c"}).json()
    return org.call("GET", first["nextRecordsUrl"].removeprefix("/services/data/v59.0/"))


def collections_update(org: Org) -> requests.Response:
    never_created = org.invoice[:3] + "000000000099AAA"
    records = [
        {"attributes": {"type": "Invoice__c"}, "id": never_created, "Total__c": 5},
        {"attributes": {"type": "Invoice__c"}, "id": org.invoice, "Total__c": 5},
    ]
    return org.call("PATCH", "composite/sobjects", json={"records": records})


def collections_create(org: Org) -> requests.Response:
    records = [{"attributes": {"type": "Invoice__c"}, "Name": "INV-9"}]
    return org.call("POST", "composite/sobjects", json={"allOrNone": True, "records": records})


def bulk_list(org: Org) -> requests.Response:
    org.job()
    return org.call("GET", "jobs/query")


def bulk_abort(org: Org) -> requests.Response:
    return org.call("PATCH", f"jobs/query/{org.job()}", json={"state": "Aborted"})


def request_limit_exceeded(org: Org) -> requests.Response:
    org.emulator.request_limit = 0
    return org.call("GET", "limits/")


def precondition_failed(org: Org) -> requests.Response:
    since = format_datetime(T0 - timedelta(hours=1), usegmt=True)
    return org.call(
        "PATCH",
        f"sobjects/Invoice__c/{org.invoice}",
        json={"Total__c": 1},
        headers={"If-Unmodified-Since": since},
    )


def invalid_session(org: Org) -> requests.Response:
    return org.call("GET", "limits/", headers={"Authorization": "Bearer expired"})


ACTIONS: dict[str, Callable[[Org], requests.Response]] = {
    "soap login": soap_login,
    "versions": versions,
    "query": lambda org: org.call("GET", "query/", params={"q": "SELECT Name FROM User"}),
    "query, first page": lambda org: org.call(
        "GET", "query/", params={"q": "SELECT Id FROM Invoice__c"}
    ),
    "query more": query_more,
    "sobject get": lambda org: org.call(
        "GET", f"sobjects/Invoice__c/{org.invoice}", params={"fields": "Name,Total__c"}
    ),
    "sobject create": lambda org: org.call("POST", "sobjects/Invoice__c/", json={"Name": "INV-8"}),
    "sobject update": lambda org: org.call(
        "PATCH", f"sobjects/Invoice__c/{org.invoice}", json={"Total__c": 7}
    ),
    "sobject delete": lambda org: org.call("DELETE", f"sobjects/Invoice__c/{org.invoice}"),
    "sobject basic information": lambda org: org.call("GET", "sobjects/Invoice__c/"),
    "describe": lambda org: org.call("GET", "sobjects/Invoice__c/describe/"),
    "describe global": lambda org: org.call("GET", "sobjects/"),
    "limits": lambda org: org.call("GET", "limits/"),
    "bulk job create": lambda org: org.call(
        "POST", "jobs/query", json={"operation": "query", "query": "SELECT Id FROM Invoice__c"}
    ),
    "bulk job get": lambda org: org.call("GET", f"jobs/query/{org.job()}"),
    "bulk job results": lambda org: org.call("GET", f"jobs/query/{org.completed_job()}/results"),
    "bulk job abort": bulk_abort,
    "bulk job delete": lambda org: org.call("DELETE", f"jobs/query/{org.completed_job()}"),
    "bulk job list": bulk_list,
    "bulk job with bad soql": lambda org: org.call(
        "POST", "jobs/query", json={"operation": "query", "query": "SELECT Nme FROM Invoice__c"}
    ),
    "collections create": collections_create,
    "collections update": collections_update,
    "collections get": lambda org: org.call(
        "GET", "composite/sobjects/Invoice__c", params={"ids": org.invoice, "fields": "Name"}
    ),
    "collections delete": lambda org: org.call(
        "DELETE", "composite/sobjects", params={"ids": org.invoice}
    ),
    "401 INVALID_SESSION_ID": invalid_session,
    "404 NOT_FOUND": lambda org: org.call("GET", "sobjects/Invoices__c/describe/"),
    "400 MALFORMED_QUERY": lambda org: org.call(
        "GET", "query/", params={"q": "SELECT Id FRM Invoice__c"}
    ),
    "400 INVALID_FIELD": lambda org: org.call(
        "GET", "query/", params={"q": "SELECT Totl__c FROM Invoice__c"}
    ),
    "412 PRECONDITION_FAILED": precondition_failed,
    "403 REQUEST_LIMIT_EXCEEDED": request_limit_exceeded,
}


# ---- reading a response's shape --------------------------------------------------------------


def observed(response: requests.Response, inner: str | None) -> tuple[frozenset[str], Any]:
    """The body's keys, and the nested value named ``inner`` (a list's first element)."""
    kind = response.headers.get("Content-Type", "")
    if not response.content:
        return frozenset(), None
    if kind.startswith("text/csv"):
        header = response.text.splitlines()[0]
        return frozenset(name.strip('"') for name in header.split(",")), None
    if kind.startswith("text/xml"):
        envelope = ElementTree.fromstring(response.content)
        (result,) = (e for e in envelope.iter() if e.tag.rpartition("}")[2] == "result")
        children = {child.tag.rpartition("}")[2]: child for child in result}
        nested = children.get(inner or "")
        inner_keys = None if nested is None else {c.tag.rpartition("}")[2]: c for c in nested}
        return frozenset(children), inner_keys
    body = response.json()
    top = body[0] if isinstance(body, list) else body
    value = top.get(inner) if inner else None
    return frozenset(top), value[0] if isinstance(value, list) else value


def assert_keys(actual: frozenset[str], documented: frozenset[str], exact: bool) -> None:
    if exact:
        assert actual == documented
    else:
        assert actual and actual <= documented, sorted(actual - documented)


@pytest.mark.parametrize("operation", list(EXPECTED))
def test_answers_have_the_documented_status_and_keys(org: Org, operation: str) -> None:
    shape = EXPECTED[operation]
    response = ACTIONS[operation](org)
    assert response.status_code == shape.status, response.text
    top, nested = observed(response, shape.inner)
    assert_keys(top, shape.keys, shape.exact)
    if shape.inner is not None:
        assert nested is not None, f"no {shape.inner} in the answer"
        assert_keys(frozenset(nested), shape.inner_keys, shape.inner_exact)


def test_every_operation_has_a_documented_shape() -> None:
    assert set(ACTIONS) == set(EXPECTED)


@pytest.mark.parametrize("operation", [name for name in EXPECTED if name[:3].isdigit()])
def test_errors_name_their_code(org: Org, operation: str) -> None:
    (body,) = ACTIONS[operation](org).json()
    assert body["errorCode"] == operation.partition(" ")[2]


def test_limits_report_what_the_product_reads(org: Org) -> None:
    limits = org.call("GET", "limits/").json()
    for name in ("DailyApiRequests", "DailyBulkV2QueryJobs", "DailyBulkV2QueryFileStorageMB"):
        assert set(limits[name]) == {"Max", "Remaining"}, name


# Not API calls: made before there is a session, or with none the org accepts.
NOT_API_CALLS = ("soap login", "versions", "401 INVALID_SESSION_ID")


@pytest.mark.parametrize("operation", [name for name in EXPECTED if name not in NOT_API_CALLS])
def test_every_api_answer_reports_api_usage(org: Org, operation: str) -> None:
    response = ACTIONS[operation](org)
    calls = org.emulator._api_calls
    assert (
        response.headers["Sforce-Limit-Info"] == f"api-usage={calls}/{org.emulator.request_limit}"
    )
