"""Bulk API 2.0 query jobs and sObject Collections on the Salesforce emulator, driven by the real
simple-salesforce client over HTTP."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest
import requests
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import (
    SalesforceGeneralError,
    SalesforceMalformedRequest,
    SalesforceResourceNotFound,
)

from dq_agent_sandbox.http import LoopbackServer
from dq_agent_sandbox.salesforce import SalesforceEmulator
from tests.sf_client import Clock, open_salesforce_client

T0 = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
PETE = "005000000000010AAA"
MARIA = "005000000000011AAA"
ACME = "006000000000001AAA"
GLOBEX = "006000000000002AAA"
INITECH = "006000000000003AAA"
ROLLED_BACK = (
    "Record rolled back because not all records were valid and the request was using "
    "AllOrNone header"
)
OPPORTUNITY_FIELDS = {
    "Name": "string",
    "StageName": "picklist",
    "Amount": "currency",
    "Quantity__c": "int",
    "CloseDate": "date",
    "IsWon": "boolean",
    "OwnerId": "reference",
}
BULK_SOQL = (
    "SELECT Id, Name, Amount, Quantity__c, CloseDate, IsWon, Owner.Email, LastModifiedDate "
    "FROM Opportunity"
)


def opportunities(count: int) -> list[dict[str, Any]]:
    """Varied rows: nulls, owners and none, text that needs CSV quoting, odd amounts."""
    rows: list[dict[str, Any]] = []
    for n in range(count):
        rows.append(
            {
                "Name": f'Deal {n:05d}, "phase {n % 3}"' if n % 7 == 0 else f"Deal {n:05d}",
                "StageName": "Closed Won" if n % 4 == 0 else "Prospecting",
                "Amount": None if n % 11 == 0 else n * 10.25,
                "Quantity__c": n % 9,
                "CloseDate": f"2026-12-{n % 28 + 1:02d}",
                "IsWon": n % 4 == 0,
                "OwnerId": (PETE, MARIA, None)[n % 3],
                "LastModifiedDate": T0 - timedelta(minutes=n),
            }
        )
    return rows


def seed(emulator: SalesforceEmulator, opportunity_rows: list[dict[str, Any]]) -> None:
    emulator.seed(
        {
            "User": {
                "fields": {"Name": "string", "Email": "email"},
                "records": [
                    {"Id": PETE, "Name": "Pete Ortiz", "Email": "pete@example.com"},
                    {"Id": MARIA, "Name": "Maria Chen", "Email": "maria@example.com"},
                ],
            },
            "Opportunity": {"fields": OPPORTUNITY_FIELDS, "records": opportunity_rows},
        }
    )


@pytest.fixture
def clock() -> Clock:
    return Clock(T0 + timedelta(hours=1))


@pytest.fixture
def emulator(clock: Clock) -> SalesforceEmulator:
    emulator = SalesforceEmulator(clock=clock)
    seed(
        emulator,
        [
            {"Id": ACME, "Name": "Acme renewal", "Amount": 120000, "OwnerId": PETE},
            {"Id": GLOBEX, "Name": "Globex expansion", "Amount": 45000.5, "OwnerId": MARIA},
            {"Id": INITECH, "Name": "Initech pilot", "Amount": 9000, "OwnerId": PETE},
        ],
    )
    return emulator


@pytest.fixture
def server(emulator: SalesforceEmulator) -> Iterator[LoopbackServer]:
    with LoopbackServer(emulator) as server:
        yield server


@pytest.fixture
def sf(server: LoopbackServer) -> Iterator[Salesforce]:
    with open_salesforce_client(server.base_url) as client:
        yield client


def state(server: LoopbackServer) -> dict[str, Any]:
    with requests.Session() as session:
        session.trust_env = False
        response = session.get(server.base_url + "/_sandbox/state")
        response.raise_for_status()
        return dict(response.json())


def error_of(raised: pytest.ExceptionInfo[Any]) -> tuple[int, str, str]:
    (body,) = raised.value.content
    return raised.value.status, body["errorCode"], body["message"]


def create_job(sf: Salesforce, soql: str, **options: str) -> dict[str, Any]:
    job = sf.restful(
        "jobs/query", method="POST", json={"operation": "query", "query": soql, **options}
    )
    assert isinstance(job, dict)
    return job


def results(sf: Salesforce, job_id: str, **params: str | int) -> requests.Response:
    """One page of a job's results, as the raw HTTP answer (its headers matter)."""
    url = f"{sf.base_url}jobs/query/{job_id}/results"
    return sf.session.get(url, headers=sf.headers, params=params)


def as_bulk_csv(record: dict[str, Any]) -> dict[str, str]:
    """A REST query record as Bulk API 2.0 writes the same row in CSV: every value text, a null
    empty, booleans lower case, datetimes in UTC with a Z, relationship fields dotted."""
    row: dict[str, str] = {}
    for key, value in record.items():
        if key == "attributes":
            continue
        if isinstance(value, dict) or (value is None and key == "Owner"):
            for field, nested in (value or {"Email": None}).items():
                if field != "attributes":
                    row[f"{key}.{field}"] = "" if nested is None else str(nested)
        elif value is None:
            row[key] = ""
        elif isinstance(value, bool):
            row[key] = "true" if value else "false"
        elif key == "LastModifiedDate":
            row[key] = value.replace("+0000", "Z")
        else:
            row[key] = str(value)
    return row


def http_date(moment: datetime) -> str:
    return format_datetime(moment, usegmt=True)


# ---- Bulk API 2.0 query jobs -----------------------------------------------------------------


def test_a_bulk_query_returns_the_records_a_rest_query_returns(clock: Clock) -> None:
    emulator = SalesforceEmulator(clock=clock)
    seed(emulator, opportunities(2500))
    with LoopbackServer(emulator) as server, open_salesforce_client(server.base_url) as sf:
        pages = list(sf.bulk2.Opportunity.query(BULK_SOQL, max_records=1000, wait=0))
        assert len(pages) == 3
        rows = [row for page in pages for row in csv.DictReader(io.StringIO(page))]
        expected = [as_bulk_csv(record) for record in sf.query_all(BULK_SOQL)["records"]]
        assert len(rows) == 2500
        assert rows == expected
        # The columns keep the query's order; relationship columns are dotted.
        assert pages[0].splitlines()[0] == (
            '"Id","Name","Amount","Quantity__c","CloseDate","IsWon","Owner.Email",'
            '"LastModifiedDate"'
        )
        assert rows[0]["Name"] == 'Deal 00000, "phase 0"'
        assert (rows[0]["Amount"], rows[1]["Amount"]) == ("", "10.25")
        assert (rows[2]["Owner.Email"], rows[0]["Owner.Email"]) == ("", "pete@example.com")

        # Create, two polls (InProgress, then JobComplete), three pages: six API calls, one job;
        # then query_all's two pages and this call.
        limits = sf.limits()
        assert limits["DailyBulkV2QueryJobs"] == {"Max": 10000, "Remaining": 9999}
        assert limits["DailyApiRequests"] == {"Max": 15000, "Remaining": 15000 - 9}
        assert state(server)["requests"] == 9


def test_a_job_is_in_progress_until_the_configured_poll(clock: Clock) -> None:
    emulator = SalesforceEmulator(clock=clock, bulk_polls_to_complete=3)
    seed(emulator, opportunities(5))
    with LoopbackServer(emulator) as server, open_salesforce_client(server.base_url) as sf:
        created = create_job(sf, "SELECT Id FROM Opportunity")
        assert created["state"] == "UploadComplete"
        assert created["id"].startswith("750") and len(created["id"]) == 18

        seen = []
        for _ in range(4):
            clock.advance(seconds=2)
            info = sf.restful(f"jobs/query/{created['id']}")
            assert isinstance(info, dict)
            seen.append((info["state"], info["numberRecordsProcessed"], info["systemModstamp"]))
        assert seen == [
            ("InProgress", 0, "2026-11-24T11:00:02.000+0000"),
            ("InProgress", 0, "2026-11-24T11:00:02.000+0000"),
            ("JobComplete", 5, "2026-11-24T11:00:06.000+0000"),
            ("JobComplete", 5, "2026-11-24T11:00:06.000+0000"),
        ]
        assert info["totalProcessingTime"] == 6000
        assert (info["jobType"], info["retries"], info["createdDate"]) == (
            "V2Query",
            0,
            "2026-11-24T11:00:00.000+0000",
        )


def test_results_are_refused_until_the_job_completes(sf: Salesforce) -> None:
    job = create_job(sf, "SELECT Id FROM Opportunity")
    early = results(sf, job["id"])
    assert early.status_code == 412
    assert early.json() == [
        {
            "message": "can only download query results of successfully completed bulk job "
            "with status: JOB_COMPLETE. Current status: UPLOAD_COMPLETE",
            "errorCode": "JOB_NOT_COMPLETE",
        }
    ]
    sf.restful(f"jobs/query/{job['id']}")
    assert "IN_PROGRESS" in results(sf, job["id"]).json()[0]["message"]
    sf.restful(f"jobs/query/{job['id']}")
    assert results(sf, job["id"]).status_code == 200


def test_results_page_by_locator(clock: Clock) -> None:
    emulator = SalesforceEmulator(clock=clock, bulk_polls_to_complete=1)
    seed(emulator, opportunities(25))
    with LoopbackServer(emulator) as server, open_salesforce_client(server.base_url) as sf:
        job = create_job(sf, "SELECT Name FROM Opportunity ORDER BY Name DESC")
        assert sf.restful(f"jobs/query/{job['id']}")["state"] == "JobComplete"

        first = results(sf, job["id"], maxRecords=10)
        assert first.headers["Content-Type"].startswith("text/csv")
        assert first.headers["Sforce-NumberOfRecords"] == "10"
        locator = first.headers["Sforce-Locator"]
        assert locator not in ("", "null")
        assert first.text.splitlines()[:2] == ['"Name"', '"Deal 00024"']

        second = results(sf, job["id"], maxRecords=10, locator=locator)
        assert second.text.splitlines()[1] == '"Deal 00014, ""phase 2"""'
        # A locator names the same page for as long as the job exists.
        assert results(sf, job["id"], maxRecords=10, locator=locator).text == second.text

        last = results(sf, job["id"], maxRecords=10, locator=second.headers["Sforce-Locator"])
        assert (last.headers["Sforce-NumberOfRecords"], last.headers["Sforce-Locator"]) == (
            "5",
            "null",
        )
        assert last.text.splitlines()[-1] == '"Deal 00000, ""phase 0"""'

        # Without maxRecords the whole result comes in one page.
        whole = results(sf, job["id"])
        assert (whole.headers["Sforce-NumberOfRecords"], whole.headers["Sforce-Locator"]) == (
            "25",
            "null",
        )
        assert whole.headers["Sforce-Limit-Info"] == "api-usage=7/15000"

        bad = results(sf, job["id"], locator="not-a-locator")
        assert bad.status_code == 400
        assert bad.json()[0]["errorCode"] == "INVALID_LOCATOR"


def test_delimiter_and_line_ending_follow_the_job(sf: Salesforce) -> None:
    sf.Opportunity.update(GLOBEX, {"Name": 'Globex | "east"\nwing'})
    job = create_job(
        sf,
        "SELECT Name, Amount, CloseDate, IsWon, Owner.Email FROM Opportunity "
        "WHERE Amount < 50000 ORDER BY Amount DESC",
        columnDelimiter="PIPE",
        lineEnding="CRLF",
    )
    assert (job["columnDelimiter"], job["lineEnding"]) == ("PIPE", "CRLF")
    sf.restful(f"jobs/query/{job['id']}")
    sf.restful(f"jobs/query/{job['id']}")
    page = results(sf, job["id"])
    assert page.content == (
        b'"Name"|"Amount"|"CloseDate"|"IsWon"|"Owner.Email"\r\n'
        b'"Globex | ""east""\nwing"|"45000.5"|""|"false"|"maria@example.com"\r\n'
        b'"Initech pilot"|"9000.0"|""|"false"|"pete@example.com"\r\n'
    )


def test_relationship_columns_follow_the_lookup(sf: Salesforce) -> None:
    pages = sf.bulk2.Opportunity.query(
        "SELECT Name, Owner.Name, Owner.Email FROM Opportunity ORDER BY Name", wait=0
    )
    assert list(csv.reader(io.StringIO("".join(pages)))) == [
        ["Name", "Owner.Name", "Owner.Email"],
        ["Acme renewal", "Pete Ortiz", "pete@example.com"],
        ["Globex expansion", "Maria Chen", "maria@example.com"],
        ["Initech pilot", "Pete Ortiz", "pete@example.com"],
    ]


@pytest.mark.parametrize(
    ("soql", "code", "message"),
    [
        (
            "SELECT Id, Amont FROM Opportunity",
            "INVALID_FIELD",
            "\nSELECT Id, Amont FROM Opportunity\n           ^\nERROR at Row:1:Column:12\n"
            "No such column 'Amont' on entity 'Opportunity'. If you are attempting to use a "
            "custom field, be sure to append the '__c' after the custom field name. Please "
            "reference your WSDL or the describe call for the appropriate names.",
        ),
        (
            "SELECT Id FRM Opportunity",
            "MALFORMED_QUERY",
            "\nSELECT Id FRM Opportunity\n          ^\nERROR at Row:1:Column:11\n"
            "unexpected token: 'FRM'",
        ),
        (
            "SELECT Id, (SELECT Id FROM OpportunityLineItems) FROM Opportunity",
            "API_ERROR",
            "Aggregate Relationships not supported in Bulk V2 Query with CSV content type",
        ),
        (
            "SELECT COUNT() FROM Opportunity",
            "API_ERROR",
            "Aggregate functions such as COUNT() are not supported in Bulk V2 Query",
        ),
        (
            "SELECT Id FROM Opportunity LIMIT 10 OFFSET 5",
            "API_ERROR",
            "OFFSET is not supported in Bulk V2 Query",
        ),
    ],
)
def test_a_query_bulk_cannot_run_is_refused_when_the_job_is_created(
    sf: Salesforce, soql: str, code: str, message: str
) -> None:
    with pytest.raises(SalesforceMalformedRequest) as raised:
        next(iter(sf.bulk2.Opportunity.query(soql, wait=0)))
    assert error_of(raised) == (400, code, message)
    listed = sf.restful("jobs/query")
    assert isinstance(listed, dict) and listed["records"] == []
    assert sf.limits()["DailyBulkV2QueryJobs"]["Remaining"] == 10000


def test_a_job_can_be_aborted_then_deleted(sf: Salesforce) -> None:
    job = create_job(sf, "SELECT Id FROM Opportunity")
    client = sf.bulk2.Opportunity._client
    aborted = client.abort_job(job["id"], True)
    assert (aborted["id"], aborted["state"]) == (job["id"], "Aborted")
    assert client.get_job(job["id"], True)["state"] == "Aborted"  # polling does not revive it
    assert "Current status: ABORTED" in results(sf, job["id"]).json()[0]["message"]
    with pytest.raises(SalesforceMalformedRequest) as raised:
        client.abort_job(job["id"], True)
    assert error_of(raised) == (400, "INVALIDJOBSTATE", "Aborting already Aborted Job not allowed")

    listed = sf.restful("jobs/query")
    assert isinstance(listed, dict)
    assert [j["id"] for j in listed["records"]] == [job["id"]]
    assert (listed["done"], listed["nextRecordsUrl"]) == (True, None)

    # DELETE answers 204 with no body, as Salesforce does; simple-salesforce's delete_job parses
    # that empty body as JSON and fails, so the product deletes through restful().
    assert sf.restful(f"jobs/query/{job['id']}", method="DELETE") is None
    with pytest.raises(SalesforceResourceNotFound) as raised:
        client.get_job(job["id"], True)
    assert error_of(raised) == (404, "NOT_FOUND", "The requested resource does not exist")
    assert sf.restful("jobs/query")["records"] == []


def test_a_job_in_progress_cannot_be_deleted(sf: Salesforce) -> None:
    job = create_job(sf, "SELECT Id FROM Opportunity")
    sf.restful(f"jobs/query/{job['id']}")
    with pytest.raises(SalesforceMalformedRequest) as raised:
        sf.restful(f"jobs/query/{job['id']}", method="DELETE")
    assert error_of(raised)[:2] == (400, "INVALIDJOBSTATE")


def test_the_daily_bulk_job_limit_is_enforced(clock: Clock) -> None:
    emulator = SalesforceEmulator(clock=clock, bulk_query_job_limit=1)
    seed(emulator, [])
    with LoopbackServer(emulator) as server, open_salesforce_client(server.base_url) as sf:
        create_job(sf, "SELECT Id FROM Opportunity")
        with pytest.raises(SalesforceMalformedRequest) as raised:
            create_job(sf, "SELECT Id FROM Opportunity")
        assert error_of(raised) == (
            400,
            "LIMIT_EXCEEDED",
            "Max bulk v2 query jobs (1) per 24 hrs has been reached",
        )
        assert sf.limits()["DailyBulkV2QueryJobs"] == {"Max": 1, "Remaining": 0}


def test_polls_to_complete_must_be_at_least_one() -> None:
    with pytest.raises(ValueError, match="bulk_polls_to_complete must be 1 or more"):
        SalesforceEmulator(bulk_polls_to_complete=0)


# ---- sObject Collections ---------------------------------------------------------------------


def patch(sf: Salesforce, records: list[dict[str, Any]], **options: Any) -> Any:
    return sf.restful("composite/sobjects", method="PATCH", json={"records": records, **options})


def opportunity(record_id: str, **values: Any) -> dict[str, Any]:
    return {"attributes": {"type": "Opportunity"}, "id": record_id, **values}


def history(sf: Salesforce) -> list[tuple[str, str, Any, Any]]:
    rows = sf.query(
        "SELECT OpportunityId, Field, OldValue, NewValue FROM OpportunityFieldHistory "
        "ORDER BY OpportunityId, Field"
    )["records"]
    return [(r["OpportunityId"], r["Field"], r["OldValue"], r["NewValue"]) for r in rows]


def outcomes(answers: Any) -> list[tuple[str | None, bool, str | None, str | None]]:
    """Each record's id, success, and first error's statusCode and message."""
    summary = []
    for answer in answers:
        error = answer["errors"][0] if answer["errors"] else {}
        summary.append(
            (answer.get("id"), answer["success"], error.get("statusCode"), error.get("message"))
        )
    return summary


def a_history_row(sf: Salesforce) -> str:
    sf.Opportunity.update(INITECH, {"StageName": "Qualification"})
    (row,) = sf.query("SELECT Id FROM OpportunityFieldHistory")["records"]
    return str(row["Id"])


def test_a_collection_update_writes_the_good_records_and_refuses_the_bad(
    sf: Salesforce, clock: Clock
) -> None:
    clock.advance(minutes=10)
    answers = patch(
        sf,
        [
            opportunity(ACME, Amount=125000),
            opportunity(GLOBEX, Amount=1, LastModifiedDate="2020-01-01T00:00:00Z"),
            {"attributes": {"type": "Opportunity"}, "Id": INITECH, "StageName": "Closed Won"},
        ],
        allOrNone=False,
    )
    assert outcomes(answers) == [
        (ACME, True, None, None),
        (
            GLOBEX,
            False,
            "INVALID_FIELD_FOR_INSERT_UPDATE",
            "Unable to create/update fields: LastModifiedDate. Please check the security "
            "settings of this field and verify that it is read/write for your profile or "
            "permission set.",
        ),
        (INITECH, True, None, None),
    ]
    assert answers[0] == {"id": ACME, "success": True, "errors": []}
    assert answers[1]["errors"][0]["fields"] == ["LastModifiedDate"]

    # Written as sObject Rows writes: field history, and LastModifiedDate moved to now.
    assert history(sf) == [
        (ACME, "Amount", 120000.0, 125000.0),
        (INITECH, "StageName", None, "Closed Won"),
    ]
    acme, globex = sf.Opportunity.get(ACME), sf.Opportunity.get(GLOBEX)
    assert (acme["Amount"], acme["LastModifiedDate"]) == (125000.0, "2026-11-24T11:10:00.000+0000")
    assert (globex["Amount"], globex["LastModifiedDate"]) == (
        45000.5,
        "2026-11-24T11:00:00.000+0000",
    )


def test_all_or_none_writes_nothing_when_one_record_fails(
    sf: Salesforce, server: LoopbackServer
) -> None:
    before = state(server)["objects"]
    answers = patch(
        sf,
        [
            opportunity(ACME, Amount=125000),
            opportunity("006000000000099AAA", Amount=5),
            opportunity("001000000000001AAA", Amount=5),
        ],
        allOrNone=True,
    )
    assert answers == [
        {
            "id": ACME,
            "success": False,
            "errors": [
                {
                    "statusCode": "ALL_OR_NONE_OPERATION_ROLLED_BACK",
                    "message": ROLLED_BACK,
                    "fields": [],
                }
            ],
        },
        {
            "id": "006000000000099AAA",
            "success": False,
            "errors": [
                {
                    "statusCode": "INVALID_CROSS_REFERENCE_KEY",
                    "message": "invalid cross reference id",
                    "fields": [],
                }
            ],
        },
        {
            "success": False,
            "errors": [
                {
                    "statusCode": "MALFORMED_ID",
                    "message": "Opportunity ID: id value of incorrect type: 001000000000001AAA",
                    "fields": ["Id"],
                }
            ],
        },
    ]
    assert state(server)["objects"] == before


def test_collection_records_are_checked_as_single_records_are(clock: Clock) -> None:
    emulator = SalesforceEmulator(clock=clock)
    emulator.seed(
        {
            "Case": {
                "fields": {
                    "Subject": {"type": "string", "nillable": False},
                    "OwnerId": "reference",
                },
                "records": [{"Subject": "Printer on fire"}],
            }
        }
    )
    with LoopbackServer(emulator) as server, open_salesforce_client(server.base_url) as sf:
        (case,) = sf.query("SELECT Id FROM Case")["records"]
        answers = sf.restful(
            "composite/sobjects",
            method="POST",
            json={
                "records": [
                    {"attributes": {"type": "Case"}, "Subject": "Toner low"},
                    {"attributes": {"type": "Case"}},
                    {"attributes": {"type": "Case"}, "Subject": "x", "OwnerId": "pete"},
                    {"attributes": {"type": "Case"}, "Id": case["Id"], "Subject": "Again"},
                    {"attributes": {"type": "CaseHistory"}, "Field": "Subject"},
                ]
            },
        )
        created = answers[0]["id"]
        assert created.startswith("500")
        assert outcomes(answers) == [
            (created, True, None, None),
            (None, False, "REQUIRED_FIELD_MISSING", "Required fields are missing: [Subject]"),
            (None, False, "MALFORMED_ID", "Owner ID: id value of incorrect type: pete"),
            (None, False, "INVALID_FIELD_FOR_INSERT_UPDATE", "cannot specify Id in an insert call"),
            (
                None,
                False,
                "INVALID_TYPE_FOR_OPERATION",
                "entity type cannot be inserted: Case History",
            ),
        ]
        assert [answer["errors"][0]["fields"] for answer in answers[1:3]] == [
            ["Subject"],
            ["OwnerId"],
        ]
        # sObject Rows refuses the same record in the same words.
        with pytest.raises(SalesforceMalformedRequest) as raised:
            sf.Case.create({})
        assert error_of(raised) == (
            400,
            "REQUIRED_FIELD_MISSING",
            "Required fields are missing: [Subject]",
        )
        assert [r["Subject"] for r in state(server)["objects"]["Case"]] == [
            "Printer on fire",
            "Toner low",
        ]


@pytest.mark.parametrize(
    ("record", "code", "message"),
    [
        (
            opportunity(ACME, Amont=5),
            "INVALID_FIELD",
            "No such column 'Amont' on sobject of type Opportunity",
        ),
        (
            opportunity(ACME, Amount="lots"),
            "JSON_PARSER_ERROR",
            "Cannot deserialize instance of double from VALUE_STRING value lots or request may "
            "be missing a required field",
        ),
        (
            {"attributes": {"type": "Opportunities"}, "id": ACME},
            "INVALID_TYPE",
            "sObject type 'Opportunities' is not supported.",
        ),
    ],
)
def test_a_body_that_cannot_be_read_as_records_fails_the_whole_request(
    sf: Salesforce, server: LoopbackServer, record: dict[str, Any], code: str, message: str
) -> None:
    before = state(server)["objects"]
    with pytest.raises(SalesforceMalformedRequest) as raised:
        patch(sf, [opportunity(GLOBEX, Amount=1), record])
    assert error_of(raised) == (400, code, message)
    assert state(server)["objects"] == before


def test_more_than_200_records_are_refused(sf: Salesforce) -> None:
    with pytest.raises(SalesforceMalformedRequest) as raised:
        patch(sf, [opportunity(ACME, Amount=n) for n in range(201)])
    assert error_of(raised) == (
        400,
        "EXCEEDED_ID_LIMIT",
        "record limit reached. cannot submit more than 200 records into this call",
    )
    assert sf.Opportunity.get(ACME)["Amount"] == 120000.0
    assert len(patch(sf, [opportunity(ACME, Amount=n) for n in range(200)])) == 200
    assert sf.Opportunity.get(ACME)["Amount"] == 199.0


def test_collections_ignore_if_unmodified_since_as_salesforce_does(sf: Salesforce) -> None:
    """Salesforce documents If-Unmodified-Since for sObject Rows, not for sObject Collections: a
    record changed after the header's moment is written all the same, so the product compares by
    re-reading before it writes."""
    read_at = http_date(T0 - timedelta(days=1))  # before every record's LastModifiedDate
    with pytest.raises(SalesforceGeneralError) as raised:
        sf.Opportunity.update(ACME, {"Amount": 1}, headers={"If-Unmodified-Since": read_at})
    assert error_of(raised)[:2] == (412, "PRECONDITION_FAILED")

    answers = sf.restful(
        "composite/sobjects",
        method="PATCH",
        json={"records": [opportunity(ACME, Amount=2), opportunity(GLOBEX, Amount=3)]},
        headers={"If-Unmodified-Since": read_at},
    )
    assert answers == [
        {"id": ACME, "success": True, "errors": []},
        {"id": GLOBEX, "success": True, "errors": []},
    ]
    assert [sf.Opportunity.get(i)["Amount"] for i in (ACME, GLOBEX)] == [2.0, 3.0]


def test_create_then_read_by_id(sf: Salesforce) -> None:
    created = sf.restful(
        "composite/sobjects",
        method="POST",
        json={
            "allOrNone": True,
            "records": [
                {
                    "attributes": {"type": "Opportunity"},
                    "Name": "Hooli pilot",
                    "StageName": "Prospecting",
                    "CloseDate": "2027-01-15",
                    "Amount": 10,
                },
                {"attributes": {"type": "Account"}, "Name": "Hooli"},
            ],
        },
    )
    hooli, account = (answer["id"] for answer in created)
    assert (hooli[:3], account[:3]) == ("006", "001")

    def url(record_id: str) -> str:
        return f"/services/data/v59.0/sobjects/Opportunity/{record_id}"

    ids = f"{hooli},{ACME[:15]},006000000000099AAA,nonsense"
    read = sf.restful(
        "composite/sobjects/Opportunity", params={"ids": ids, "fields": "Name,Amount"}
    )
    assert read == [
        {
            "attributes": {"type": "Opportunity", "url": url(hooli)},
            "Name": "Hooli pilot",
            "Amount": 10.0,
        },
        {
            "attributes": {"type": "Opportunity", "url": url(ACME)},
            "Name": "Acme renewal",
            "Amount": 120000.0,
        },
        None,
        None,
    ]
    # The same read as a POST, for id lists too long for a URL.
    by_post = sf.restful(
        "composite/sobjects/Opportunity", method="POST", json={"ids": [ACME], "fields": ["Name"]}
    )
    assert by_post == [
        {"attributes": {"type": "Opportunity", "url": url(ACME)}, "Name": "Acme renewal"}
    ]
    with pytest.raises(SalesforceMalformedRequest) as raised:
        sf.restful("composite/sobjects/Opportunity", params={"ids": ",".join([ACME] * 2001)})
    assert error_of(raised) == (
        400,
        "EXCEEDED_ID_LIMIT",
        "record limit reached. cannot submit more than 2000 records into this call",
    )


def test_delete_by_ids(sf: Salesforce, server: LoopbackServer) -> None:
    history_row = a_history_row(sf)
    ids = f"{ACME},{history_row},abc"
    answers = sf.restful(
        "composite/sobjects", method="DELETE", params={"ids": ids, "allOrNone": "true"}
    )
    assert outcomes(answers) == [
        (ACME, False, "ALL_OR_NONE_OPERATION_ROLLED_BACK", ROLLED_BACK),
        (
            history_row,
            False,
            "INVALID_TYPE_FOR_OPERATION",
            "entity type cannot be deleted: Opportunity Field History",
        ),
        (None, False, "MALFORMED_ID", "malformed id abc"),
    ]
    assert len(state(server)["objects"]["Opportunity"]) == 3

    answers = sf.restful(
        "composite/sobjects", method="DELETE", params={"ids": f"{ACME},{GLOBEX},{ACME}"}
    )
    assert outcomes(answers) == [
        (ACME, True, None, None),
        (GLOBEX, True, None, None),
        (ACME, False, "ENTITY_IS_DELETED", "entity is deleted"),
    ]
    assert [r["Id"] for r in state(server)["objects"]["Opportunity"]] == [INITECH]
    assert patch(sf, [opportunity(ACME, Amount=1)])[0]["errors"][0]["statusCode"] == (
        "ENTITY_IS_DELETED"
    )


def test_updates_need_an_id_of_a_record_that_can_be_updated(sf: Salesforce) -> None:
    history_row = a_history_row(sf)
    answers = patch(
        sf,
        [
            {"attributes": {"type": "Opportunity"}, "Amount": 1},
            {"attributes": {"type": "OpportunityFieldHistory"}, "id": history_row},
        ],
    )
    assert outcomes(answers) == [
        (None, False, "MISSING_ARGUMENT", "Id not specified in an update call"),
        (
            history_row,
            False,
            "INVALID_TYPE_FOR_OPERATION",
            "entity type cannot be updated: Opportunity Field History",
        ),
    ]
