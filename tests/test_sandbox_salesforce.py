"""The Salesforce emulator, driven by the real simple-salesforce client over HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest
import requests
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import (
    SalesforceAuthenticationFailed,
    SalesforceExpiredSession,
    SalesforceGeneralError,
    SalesforceMalformedRequest,
    SalesforceRefusedRequest,
    SalesforceResourceNotFound,
)

from dq_agent_sandbox.http import LoopbackServer
from dq_agent_sandbox.salesforce import SalesforceEmulator
from dq_agent_sandbox.sobjects import to_18
from dq_agent_sandbox.soql import SoqlError, parse
from tests.sf_client import Clock, open_salesforce_client, salesforce_login_client

T0 = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
PETE = "005000000000010AAA"
MARIA = "005000000000011AAA"
ACME = "006000000000001AAA"
GLOBEX = "006000000000002AAA"
INITECH = "006000000000003AAA"
UMBRELLA = "006000000000004AAA"
SUFFIX = (
    "If you are attempting to use a custom field, be sure to append the '__c' after the custom "
    "field name. Please reference your WSDL or the describe call for the appropriate names."
)


def http_date(moment: datetime) -> str:
    return format_datetime(moment, usegmt=True)


SEED: dict[str, Any] = {
    "User": {
        "fields": {"Name": "string", "Email": "email", "IsActive": "boolean"},
        "records": [
            {"Id": PETE, "Name": "Pete Ortiz", "Email": "pete@example.com", "IsActive": True},
            {"Id": MARIA, "Name": "Maria Chen", "Email": "maria@example.com", "IsActive": True},
        ],
    },
    "Opportunity": {
        "fields": {
            "Name": "string",
            "StageName": "picklist",
            "Amount": "currency",
            "Seats__c": "double",
            "Probability": "percent",
            "Quantity__c": "int",
            "CloseDate": "date",
            "IsWon": "boolean",
            "OwnerId": "reference",
            "Description": "textarea",
        },
        "records": [
            {
                "Id": ACME,
                "Name": "Acme renewal",
                "StageName": "Closed Won",
                "Amount": 120000,
                "Seats__c": 400,
                "Probability": 100,
                "Quantity__c": 4,
                "CloseDate": "2026-11-20",
                "IsWon": True,
                "OwnerId": PETE,
                "CreatedDate": "2026-11-01T09:30:00Z",
                "LastModifiedDate": T0,
            },
            {
                "Id": GLOBEX,
                "Name": "Globex expansion",
                "StageName": "Negotiation",
                "Amount": 45000.5,
                "Seats__c": 150,
                "CloseDate": date(2026, 12, 15),
                "OwnerId": MARIA,
                "LastModifiedDate": T0,
            },
            {
                "Id": INITECH,
                "Name": "Initech pilot",
                "StageName": "Prospecting",
                "Amount": 9000,
                "CloseDate": "2027-01-31",
                "OwnerId": PETE,
                "LastModifiedDate": T0,
            },
            {
                "Id": UMBRELLA,
                "Name": "umbrella 100% upsell",
                "StageName": "Closed Lost",
                "CloseDate": "2026-10-02",
                "LastModifiedDate": T0,
            },
        ],
    },
}


@pytest.fixture
def clock() -> Clock:
    return Clock(T0 + timedelta(hours=1))


@pytest.fixture
def emulator(clock: Clock) -> SalesforceEmulator:
    emulator = SalesforceEmulator(
        clock=clock, username="ops@example.com", password="hunter2", security_token="TOKEN"
    )
    emulator.seed(SEED)
    return emulator


@pytest.fixture
def server(emulator: SalesforceEmulator) -> Iterator[LoopbackServer]:
    with LoopbackServer(emulator) as server:
        yield server


@pytest.fixture
def sf(server: LoopbackServer) -> Iterator[Salesforce]:
    with open_salesforce_client(server.base_url) as client:
        yield client


def names(result: dict[str, Any]) -> list[str]:
    return [record["Name"] for record in result["records"]]


def state(server: LoopbackServer) -> dict[str, Any]:
    with requests.Session() as session:
        session.trust_env = False
        response = session.get(server.base_url + "/_sandbox/state")
        response.raise_for_status()
        return dict(response.json())


def error_of(raised: pytest.ExceptionInfo[Any]) -> tuple[int, str, str]:
    (body,) = raised.value.content
    return raised.value.status, body["errorCode"], body["message"]


# ---- queries ---------------------------------------------------------------------------------


def test_query_pages_through_4500_records_2000_at_a_time(clock: Clock) -> None:
    emulator = SalesforceEmulator(clock=clock)
    rows = [{"Name": f"INV-{n:05d}", "Total__c": n} for n in range(4500)]
    emulator.seed(
        {"Invoice__c": {"fields": {"Name": "string", "Total__c": "currency"}, "records": rows}}
    )
    with LoopbackServer(emulator) as server, open_salesforce_client(server.base_url) as sf:
        first = sf.query("SELECT Id, Name FROM Invoice__c")
        assert (first["totalSize"], first["done"], len(first["records"])) == (4500, False, 2000)
        locator = first["nextRecordsUrl"].rpartition("/")[2]
        assert first["nextRecordsUrl"] == f"/services/data/v59.0/query/{locator}"
        assert locator.startswith("01g") and locator.endswith("-2000")
        second = sf.query_more(first["nextRecordsUrl"], identifier_is_url=True)
        assert (second["done"], len(second["records"])) == (False, 2000)
        assert second["nextRecordsUrl"].endswith("-4000")
        third = sf.query_more(second["nextRecordsUrl"], identifier_is_url=True)
        assert (third["totalSize"], third["done"], len(third["records"])) == (4500, True, 500)
        assert "nextRecordsUrl" not in third
        assert names(third)[-1] == "INV-04499"

        everything = sf.query_all("SELECT Name, Total__c FROM Invoice__c WHERE Total__c >= 500")
        assert everything["totalSize"] == 4000
        assert [r["Name"] for r in everything["records"]] == [
            f"INV-{n:05d}" for n in range(500, 4500)
        ]
        assert everything["records"][0]["Total__c"] == 500.0
        assert state(server)["requests"] == 3 + 2  # query_all read two pages

        # A cursor read to the end is closed, as Salesforce closes it.
        with pytest.raises(SalesforceMalformedRequest) as raised:
            sf.query_more(locator)
        assert error_of(raised) == (400, "INVALID_QUERY_LOCATOR", "invalid query locator")


def test_query_pages_by_the_configured_page_size(clock: Clock) -> None:
    emulator = SalesforceEmulator(clock=clock, page_size=2)
    emulator.seed({"Lead": {"fields": {"Name": "string"}, "records": [{"Name": "a"}] * 5}})
    with LoopbackServer(emulator) as server, open_salesforce_client(server.base_url) as sf:
        first = sf.query("SELECT Id FROM Lead")
        assert [r["Id"][:3] for r in first["records"]] == ["00Q", "00Q"]
        assert len(sf.query_all("SELECT Id FROM Lead")["records"]) == 5


def test_where_with_and_or_in_like_not_and_order_by(sf: Salesforce) -> None:
    soql = "SELECT Name FROM Opportunity WHERE {} ORDER BY Name"
    assert names(sf.query(soql.format("Amount > 10000 AND IsWon = false"))) == ["Globex expansion"]
    assert names(sf.query(soql.format("StageName IN ('closed won', 'Closed Lost')"))) == [
        "Acme renewal",
        "umbrella 100% upsell",
    ]
    assert names(sf.query(soql.format("StageName NOT IN ('Closed Won', 'Closed Lost')"))) == [
        "Globex expansion",
        "Initech pilot",
    ]
    assert names(sf.query(soql.format("Name LIKE '%ex%' OR Name LIKE 'INI%'"))) == [
        "Globex expansion",
        "Initech pilot",
    ]
    assert names(sf.query(soql.format(r"Name LIKE '%100\% up%'"))) == ["umbrella 100% upsell"]
    assert names(sf.query(soql.format("NOT (Amount < 50000 OR Amount = null)"))) == ["Acme renewal"]
    # SOQL's != matches nulls, unlike SQL's.
    assert names(sf.query(soql.format("Amount != 9000"))) == [
        "Acme renewal",
        "Globex expansion",
        "umbrella 100% upsell",
    ]
    assert names(sf.query(soql.format("(Seats__c > 100 AND Amount < 50000) OR IsWon = true"))) == [
        "Acme renewal",
        "Globex expansion",
    ]


def test_order_by_nulls_limit_and_offset(sf: Salesforce) -> None:
    by_amount = "SELECT Name FROM Opportunity ORDER BY Amount {} LIMIT {}"
    assert names(sf.query(by_amount.format("", 2))) == ["umbrella 100% upsell", "Initech pilot"]
    assert names(sf.query(by_amount.format("DESC", 2))) == ["umbrella 100% upsell", "Acme renewal"]
    assert names(sf.query(by_amount.format("DESC NULLS LAST", 2))) == [
        "Acme renewal",
        "Globex expansion",
    ]
    paged = sf.query("SELECT Name FROM Opportunity ORDER BY OwnerId, Name DESC LIMIT 2 OFFSET 1")
    assert names(paged) == ["Initech pilot", "Acme renewal"]
    assert sf.query("SELECT COUNT() FROM Opportunity WHERE Amount > 0") == {
        "totalSize": 3,
        "done": True,
        "records": [],
    }


def test_values_come_back_typed_as_salesforce_renders_them(sf: Salesforce) -> None:
    fields = "Id, Amount, Seats__c, Probability, Quantity__c, CloseDate, IsWon, OwnerId, "
    fields += "Description, CreatedDate, LastModifiedDate, SystemModstamp"
    (record,) = sf.query(f"SELECT {fields} FROM Opportunity WHERE Id = '{ACME}'")["records"]
    assert dict(record) == {
        "attributes": {
            "type": "Opportunity",
            "url": f"/services/data/v59.0/sobjects/Opportunity/{ACME}",
        },
        "Id": ACME,
        "Amount": 120000.0,
        "Seats__c": 400.0,
        "Probability": 100.0,
        "Quantity__c": 4,
        "CloseDate": "2026-11-20",
        "IsWon": True,
        "OwnerId": PETE,
        "Description": None,
        "CreatedDate": "2026-11-01T09:30:00.000+0000",
        "LastModifiedDate": "2026-11-24T10:00:00.000+0000",
        "SystemModstamp": "2026-11-24T10:00:00.000+0000",
    }


def test_date_datetime_and_day_literals(sf: Salesforce, clock: Clock) -> None:
    soql = "SELECT Name FROM Opportunity WHERE {} ORDER BY Name"
    assert names(sf.query(soql.format("CloseDate >= 2026-12-01 AND CloseDate < 2027-01-01"))) == [
        "Globex expansion"
    ]
    assert names(sf.query(soql.format("CreatedDate < 2026-11-01T11:00:00+01:00"))) == [
        "Acme renewal"
    ]
    # CreatedDate defaults to the seed's LastModifiedDate: 2026-11-24, which is TODAY.
    assert names(sf.query(soql.format("CreatedDate = TODAY AND Amount > 0"))) == [
        "Globex expansion",
        "Initech pilot",
    ]
    clock.advance(days=1)
    assert names(sf.query(soql.format("CreatedDate = YESTERDAY AND Amount < 10000"))) == [
        "Initech pilot"
    ]
    assert names(sf.query(soql.format("CreatedDate < YESTERDAY"))) == ["Acme renewal"]


def test_relationship_fields_follow_owner_id_to_the_user(sf: Salesforce) -> None:
    result = sf.query(
        "SELECT Name, Owner.Email, Owner.Name FROM Opportunity "
        "WHERE Owner.IsActive = true ORDER BY Owner.Name, Name"
    )
    assert [(r["Name"], r["Owner"]["Email"]) for r in result["records"]] == [
        ("Globex expansion", "maria@example.com"),
        ("Acme renewal", "pete@example.com"),
        ("Initech pilot", "pete@example.com"),
    ]
    assert dict(result["records"][0]["Owner"]) == {
        "attributes": {"type": "User", "url": f"/services/data/v59.0/sobjects/User/{MARIA}"},
        "Email": "maria@example.com",
        "Name": "Maria Chen",
    }
    unowned = sf.query(f"SELECT Owner.Email FROM Opportunity WHERE Id = '{UMBRELLA}'")
    assert unowned["records"][0]["Owner"] is None


def test_fifteen_character_ids_are_accepted(sf: Salesforce) -> None:
    assert to_18(ACME[:15]) == ACME
    assert sf.Opportunity.get(ACME[:15])["Id"] == ACME
    assert names(sf.query(f"SELECT Name FROM Opportunity WHERE Id = '{GLOBEX[:15]}'")) == [
        "Globex expansion"
    ]
    with pytest.raises(SalesforceMalformedRequest) as raised:
        sf.query("SELECT Name FROM Opportunity WHERE OwnerId = 'pete'")
    status, code, message = error_of(raised)
    assert (status, code) == (400, "INVALID_QUERY_FILTER_OPERATOR")
    assert message.splitlines()[-1] == "invalid ID field: pete"


# ---- query errors ----------------------------------------------------------------------------


def test_unknown_field_is_invalid_field(sf: Salesforce) -> None:
    with pytest.raises(SalesforceMalformedRequest) as raised:
        sf.query("SELECT Name, Amont FROM Opportunity")
    assert error_of(raised) == (
        400,
        "INVALID_FIELD",
        "\nSELECT Name, Amont FROM Opportunity\n             ^\nERROR at Row:1:Column:14\n"
        f"No such column 'Amont' on entity 'Opportunity'. {SUFFIX}",
    )


def test_unknown_object_is_invalid_type(sf: Salesforce) -> None:
    with pytest.raises(SalesforceMalformedRequest) as raised:
        sf.query("SELECT Id FROM Opportunities")
    status, code, message = error_of(raised)
    assert (status, code) == (400, "INVALID_TYPE")
    assert message.startswith(
        "\nSELECT Id FROM Opportunities\n               ^\nERROR at Row:1:Column:16\n"
        "sObject type 'Opportunities' is not supported."
    )


def test_unknown_relationship_is_invalid_field(sf: Salesforce) -> None:
    with pytest.raises(SalesforceMalformedRequest) as raised:
        sf.query("SELECT Acount.Name FROM Opportunity")
    status, code, message = error_of(raised)
    assert (status, code) == (400, "INVALID_FIELD")
    assert message.splitlines()[-1].startswith(
        "Didn't understand relationship 'Acount' in field path."
    )


@pytest.mark.parametrize(
    ("soql", "column", "reason"),
    [
        ("SELECT Id FROM Opportunity WHERE", 33, "unexpected token: <EOF>"),
        ("SELECT Id FRM Opportunity", 11, "unexpected token: 'FRM'"),
        (
            "SELECT Id FROM Opportunity WHERE IsWon = true AND Amount > 1 OR Amount = 2",
            62,
            "unexpected token: 'OR'",
        ),
        (
            "SELECT Id FROM Opportunity WHERE Name = 'Acme",
            41,
            "Invalid string literal: missing closing quote",
        ),
        ("SELECT Id FROM Opportunity LIMIT 1.5", 34, "unexpected token: '1.5'"),
        (
            "SELECT Id FROM Opportunity WHERE CloseDate = 2026-13-01",
            46,
            "invalid date or datetime literal: '2026-13-01'",
        ),
    ],
)
def test_syntax_errors_are_malformed_query(
    sf: Salesforce, soql: str, column: int, reason: str
) -> None:
    with pytest.raises(SalesforceMalformedRequest) as raised:
        sf.query(soql)
    caret = " " * (column - 1) + "^"
    assert error_of(raised) == (
        400,
        "MALFORMED_QUERY",
        f"\n{soql}\n{caret}\nERROR at Row:1:Column:{column}\n{reason}",
    )


@pytest.mark.parametrize(
    ("condition", "reason"),
    [
        (
            "Amount = '5'",
            "field 'Amount' must be of type double and should not be enclosed in quotes",
        ),
        ("Name = 5", "field 'Name' must be of type string and should be enclosed in quotes"),
        ("CloseDate > 2026-01-01T00:00:00Z", "field 'CloseDate' must be of type date"),
        (
            "IsWon = 'true'",
            "field 'IsWon' must be of type boolean and should not be enclosed in quotes",
        ),
    ],
)
def test_literals_must_fit_the_field_type(sf: Salesforce, condition: str, reason: str) -> None:
    with pytest.raises(SalesforceMalformedRequest) as raised:
        sf.query(f"SELECT Id FROM Opportunity WHERE {condition}")
    status, code, message = error_of(raised)
    assert (status, code) == (400, "INVALID_FIELD")
    assert message.splitlines()[-1] == f"value of filter criterion for {reason}"


def test_error_position_counts_rows_and_columns() -> None:
    with pytest.raises(SoqlError) as raised:
        parse("SELECT Id\nFROM Opportunity\nWHERE Amount >> 5")
    assert raised.value.message == (
        "\nWHERE Amount >> 5\n              ^\nERROR at Row:3:Column:15\nunexpected token: '>'"
    )


# ---- sObject rows ----------------------------------------------------------------------------


def test_create_get_update_delete(sf: Salesforce, server: LoopbackServer, clock: Clock) -> None:
    created = sf.Opportunity.create(
        {
            "Name": "Hooli pilot",
            "StageName": "Prospecting",
            "Amount": "2500",
            "CloseDate": "2026-12-01",
            "OwnerId": MARIA,
        }
    )
    assert created["success"] is True and created["errors"] == []
    new_id = created["id"]
    assert new_id.startswith("006") and len(new_id) == 18

    record = sf.Opportunity.get(new_id)
    assert record["attributes"] == {
        "type": "Opportunity",
        "url": f"/services/data/v59.0/sobjects/Opportunity/{new_id}",
    }
    assert (record["Name"], record["Amount"], record["IsWon"]) == ("Hooli pilot", 2500.0, False)
    assert record["CreatedDate"] == record["LastModifiedDate"] == "2026-11-24T11:00:00.000+0000"
    assert dict(sf.Opportunity.get(new_id, params={"fields": "Name,amount"})) == {
        "attributes": record["attributes"],
        "Name": "Hooli pilot",
        "Amount": 2500.0,
    }

    clock.advance(minutes=5)
    assert sf.Opportunity.update(new_id, {"StageName": "Qualification", "Amount": 3000}) == 204
    updated = sf.Opportunity.get(new_id)
    assert (updated["StageName"], updated["Amount"]) == ("Qualification", 3000.0)
    assert updated["LastModifiedDate"] == "2026-11-24T11:05:00.000+0000"
    assert updated["SystemModstamp"] == "2026-11-24T11:05:00.000+0000"
    assert updated["CreatedDate"] == "2026-11-24T11:00:00.000+0000"

    assert sf.Opportunity.delete(new_id) == 204
    with pytest.raises(SalesforceResourceNotFound) as raised:
        sf.Opportunity.get(new_id)
    assert error_of(raised) == (404, "NOT_FOUND", "The requested resource does not exist")
    with pytest.raises(SalesforceResourceNotFound):
        sf.Opportunity.update(new_id, {"Amount": 1})
    assert new_id not in [r["Id"] for r in state(server)["objects"]["Opportunity"]]


def test_writes_to_unknown_or_read_only_fields_are_refused(sf: Salesforce) -> None:
    with pytest.raises(SalesforceMalformedRequest) as raised:
        sf.Opportunity.update(ACME, {"Amount__c": 1})
    assert error_of(raised) == (
        400,
        "INVALID_FIELD",
        "No such column 'Amount__c' on sobject of type Opportunity",
    )
    with pytest.raises(SalesforceMalformedRequest) as raised:
        sf.Opportunity.update(ACME, {"LastModifiedDate": "2020-01-01T00:00:00Z"})
    assert error_of(raised)[:2] == (400, "INVALID_FIELD_FOR_INSERT_UPDATE")
    with pytest.raises(SalesforceMalformedRequest) as raised:
        sf.Opportunity.update(ACME, {"Amount": "lots"})
    assert error_of(raised)[:2] == (400, "JSON_PARSER_ERROR")
    with pytest.raises(SalesforceMalformedRequest) as raised:
        sf.Opportunity.update(ACME, {"OwnerId": "pete@example.com"})
    assert error_of(raised) == (
        400,
        "MALFORMED_ID",
        "Owner ID: id value of incorrect type: pete@example.com",
    )
    with pytest.raises(SalesforceMalformedRequest) as raised:
        sf.OpportunityFieldHistory.create({"Field": "Amount"})
    assert error_of(raised) == (
        400,
        "INVALID_TYPE_FOR_OPERATION",
        "entity type cannot be inserted: Opportunity Field History",
    )
    assert sf.Opportunity.get(ACME)["Amount"] == 120000.0


def test_required_fields_are_enforced(clock: Clock) -> None:
    emulator = SalesforceEmulator(clock=clock)
    emulator.seed({"Case": {"fields": {"Subject": {"type": "string", "nillable": False}}}})
    with LoopbackServer(emulator) as server, open_salesforce_client(server.base_url) as sf:
        with pytest.raises(SalesforceMalformedRequest) as raised:
            sf.Case.create({})
        assert error_of(raised) == (
            400,
            "REQUIRED_FIELD_MISSING",
            "Required fields are missing: [Subject]",
        )
        assert sf.Case.create({"Subject": "Printer on fire"})["id"].startswith("500")


def test_if_unmodified_since_guards_an_update(sf: Salesforce, clock: Clock) -> None:
    # Last modified at T0: a precondition at T0 (or later) holds.
    read_at = http_date(T0)
    assert (
        sf.Opportunity.update(ACME, {"Seats__c": 410}, headers={"If-Unmodified-Since": read_at})
        == 204
    )

    # That update moved LastModifiedDate to now (T0 + 1h): the same precondition now fails.
    with pytest.raises(SalesforceGeneralError) as raised:
        sf.Opportunity.update(ACME, {"Seats__c": 4000}, headers={"If-Unmodified-Since": read_at})
    status, code, message = error_of(raised)
    assert (status, code) == (412, "PRECONDITION_FAILED")
    assert message == (
        "The requested resource was modified at Tue, 24 Nov 2026 11:00:00 GMT, after the "
        "If-Unmodified-Since date Tue, 24 Nov 2026 10:00:00 GMT"
    )
    assert sf.Opportunity.get(ACME)["Seats__c"] == 410.0

    # HTTP dates have whole seconds: a change later within the same second still passes.
    clock.advance(milliseconds=700)
    sf.Opportunity.update(ACME, {"Seats__c": 420})
    assert sf.Opportunity.get(ACME)["LastModifiedDate"] == "2026-11-24T11:00:00.700+0000"
    header = {"If-Unmodified-Since": http_date(T0 + timedelta(hours=1))}
    assert sf.Opportunity.update(ACME, {"Seats__c": 430}, headers=header) == 204

    with pytest.raises(SalesforceMalformedRequest) as raised:
        sf.Opportunity.update(ACME, {"Seats__c": 1}, headers={"If-Unmodified-Since": "yesterday"})
    assert error_of(raised)[:2] == (400, "INVALID_HEADER_TYPE")


def test_updates_leave_field_history(sf: Salesforce, server: LoopbackServer, clock: Clock) -> None:
    clock.advance(minutes=30)
    sf.Opportunity.update(ACME, {"Amount": 12000, "StageName": "Closed Won", "Seats__c": 40})
    history = sf.query(
        "SELECT OpportunityId, Field, OldValue, NewValue, CreatedDate, CreatedById "
        f"FROM OpportunityFieldHistory WHERE OpportunityId = '{ACME}' ORDER BY Field"
    )
    rows = [
        (r["OpportunityId"], r["Field"], r["OldValue"], r["NewValue"], r["CreatedDate"])
        for r in history["records"]
    ]
    # StageName did not change, so it left no row.
    assert rows == [
        (ACME, "Amount", 120000.0, 12000.0, "2026-11-24T11:30:00.000+0000"),
        (ACME, "Seats__c", 400.0, 40.0, "2026-11-24T11:30:00.000+0000"),
    ]
    emulator_user = history["records"][0]["CreatedById"]
    assert emulator_user.startswith("005")
    parents = sf.query("SELECT Opportunity.Name FROM OpportunityFieldHistory")["records"]
    assert [r["Opportunity"]["Name"] for r in parents] == ["Acme renewal", "Acme renewal"]
    assert [r["Field"] for r in state(server)["objects"]["OpportunityFieldHistory"]] == [
        "Amount",
        "Seats__c",
    ]


def test_history_of_standard_and_custom_objects(clock: Clock) -> None:
    """AccountHistory names its parent AccountId; a custom object's Foo__History uses ParentId."""
    emulator = SalesforceEmulator(clock=clock)
    emulator.seed(
        {
            "Account": {"fields": {"Name": "string"}, "records": [{"Name": "Acme"}]},
            "Forecast__c": {"fields": {"Units__c": "int"}, "records": [{"Units__c": 40}]},
        }
    )
    with LoopbackServer(emulator) as server, open_salesforce_client(server.base_url) as sf:
        (account,) = sf.query("SELECT Id FROM Account")["records"]
        sf.Account.update(account["Id"], {"Name": "Acme Corp"})
        (row,) = sf.query("SELECT AccountId, Field, OldValue, NewValue FROM AccountHistory")[
            "records"
        ]
        assert (row["AccountId"], row["Field"], row["OldValue"], row["NewValue"]) == (
            account["Id"],
            "Name",
            "Acme",
            "Acme Corp",
        )

        (forecast,) = sf.query("SELECT Id FROM Forecast__c")["records"]
        sf.Forecast__c.update(forecast["Id"], {"Units__c": 4000})
        (row,) = sf.query(
            "SELECT ParentId, Field, OldValue, NewValue FROM Forecast__History "
            f"WHERE ParentId = '{forecast['Id']}' AND Field = 'Units__c'"
        )["records"]
        assert (row["Field"], row["OldValue"], row["NewValue"]) == ("Units__c", 40, 4000)


def test_history_can_be_seeded_directly(clock: Clock) -> None:
    emulator = SalesforceEmulator(clock=clock)
    emulator.seed(
        {
            "OpportunityFieldHistory": {
                "records": [
                    {
                        "OpportunityId": ACME,
                        "Field": "Amount",
                        "OldValue": 1200.0,
                        "NewValue": 120000.0,
                        "CreatedDate": "2026-11-23T17:45:00Z",
                    },
                ]
            },
            "Opportunity": {
                "fields": {"Name": "string"},
                "records": [{"Id": ACME, "Name": "Acme"}],
            },
        }
    )
    with LoopbackServer(emulator) as server, open_salesforce_client(server.base_url) as sf:
        (row,) = sf.query(
            "SELECT Opportunity.Name, OldValue, NewValue, CreatedDate FROM OpportunityFieldHistory "
            "WHERE CreatedDate < TODAY"
        )["records"]
        assert (row["Opportunity"]["Name"], row["OldValue"], row["NewValue"]) == (
            "Acme",
            1200.0,
            120000.0,
        )
        assert row["CreatedDate"] == "2026-11-23T17:45:00.000+0000"


# ---- describe --------------------------------------------------------------------------------


def test_describe_lists_fields_with_their_types(sf: Salesforce) -> None:
    described = sf.Opportunity.describe()
    assert (described["name"], described["label"], described["keyPrefix"]) == (
        "Opportunity",
        "Opportunity",
        "006",
    )
    types = [(f["name"], f["type"]) for f in described["fields"]]
    assert types[0] == ("Id", "id")
    # The seed's standard fields keep their standard types; its custom ones come last.
    seeded = ("Name", "StageName", "Amount", "Probability", "CloseDate", "IsWon", "OwnerId")
    assert [pair for pair in types if pair[0] in seeded] == [
        ("Name", "string"),
        ("StageName", "picklist"),
        ("Amount", "currency"),
        ("Probability", "percent"),
        ("CloseDate", "date"),
        ("IsWon", "boolean"),
        ("OwnerId", "reference"),
    ]
    assert ("Description", "textarea") in types
    assert ("LastModifiedDate", "datetime") in types
    assert types[-2:] == [("Seats__c", "double"), ("Quantity__c", "int")]
    owner = next(f for f in described["fields"] if f["name"] == "OwnerId")
    assert {k: owner[k] for k in ("label", "nillable", "updateable", "referenceTo")} == {
        "label": "Owner ID",
        "nillable": False,  # every record has an owner: the creator, unless the create names one
        "updateable": True,
        "referenceTo": ["User"],
    }
    assert owner["relationshipName"] == "Owner"
    identity = described["fields"][0]
    assert (identity["nillable"], identity["updateable"]) == (False, False)


def test_describe_global_lists_every_object(sf: Salesforce) -> None:
    listed = {o["name"]: o for o in sf.describe()["sobjects"]}
    assert sorted(listed) == [
        "Account",
        "AccountHistory",
        "Case",
        "CaseHistory",
        "Contact",
        "ContactHistory",
        "Lead",
        "LeadHistory",
        "Opportunity",
        "OpportunityFieldHistory",
        "User",
        "UserHistory",
    ]
    assert listed["OpportunityFieldHistory"]["updateable"] is False
    with pytest.raises(SalesforceResourceNotFound):
        sf.Opportunities.describe()


# ---- sessions, limits, faults ----------------------------------------------------------------


def test_an_expired_session_gets_401_until_renewed(
    sf: Salesforce, server: LoopbackServer, emulator: SalesforceEmulator
) -> None:
    emulator.expire_session()
    with pytest.raises(SalesforceExpiredSession) as raised:
        sf.query("SELECT Id FROM Opportunity")
    assert error_of(raised) == (401, "INVALID_SESSION_ID", "Session expired or invalid")
    emulator.renew_session("fresh-token")
    with pytest.raises(SalesforceExpiredSession):
        sf.Opportunity.get(ACME)
    with open_salesforce_client(server.base_url, "fresh-token") as renewed:
        assert renewed.query("SELECT COUNT() FROM Opportunity")["totalSize"] == 4


def test_a_wrong_token_is_refused(server: LoopbackServer) -> None:
    with (
        open_salesforce_client(server.base_url, "not-the-token") as sf,
        pytest.raises(SalesforceExpiredSession),
    ):
        sf.query("SELECT Id FROM Opportunity")


def test_request_limit_exceeded_is_refused_then_recovers(
    sf: Salesforce, emulator: SalesforceEmulator
) -> None:
    emulator.fail_next(403, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.", times=2)
    for _ in range(2):
        with pytest.raises(SalesforceRefusedRequest) as raised:
            sf.query("SELECT Id FROM Opportunity")
        assert error_of(raised) == (403, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.")
    assert sf.query("SELECT COUNT() FROM Opportunity")["totalSize"] == 4


def test_injected_faults_carry_their_headers(
    server: LoopbackServer, emulator: SalesforceEmulator
) -> None:
    emulator.fail_next(503, "SERVER_UNAVAILABLE", "Try later", headers={"Retry-After": "7"})
    with requests.Session() as session:
        session.trust_env = False
        url = server.base_url + "/services/data/v59.0/limits/"
        auth = {"Authorization": "Bearer sandbox"}
        failed = session.get(url, headers=auth)
        assert (failed.status_code, failed.headers["Retry-After"]) == (503, "7")
        assert failed.json() == [{"message": "Try later", "errorCode": "SERVER_UNAVAILABLE"}]
        limits = session.get(url, headers=auth)
        assert limits.json()["DailyApiRequests"] == {"Max": 15000, "Remaining": 14998}
        assert limits.headers["Sforce-Limit-Info"] == "api-usage=2/15000"


def test_the_daily_request_limit_is_enforced(clock: Clock) -> None:
    emulator = SalesforceEmulator(clock=clock, request_limit=2)
    emulator.seed({"Lead": {"fields": {"Name": "string"}}})
    with LoopbackServer(emulator) as server, open_salesforce_client(server.base_url) as sf:
        sf.query("SELECT Id FROM Lead")
        sf.query("SELECT Id FROM Lead")
        with pytest.raises(SalesforceRefusedRequest) as raised:
            sf.query("SELECT Id FROM Lead")
        assert error_of(raised) == (403, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.")


def test_soap_login_and_automatic_relogin_after_expiry(
    server: LoopbackServer, emulator: SalesforceEmulator
) -> None:
    sf = salesforce_login_client(server.base_url, "ops@example.com", "hunter2", "TOKEN")
    try:
        assert sf.sf_instance == f"127.0.0.1:{server.port}"
        assert sf.session_id.startswith("00D000000000001!")
        assert sf.query("SELECT COUNT() FROM User")["totalSize"] == 2
        first_session = sf.session_id
        emulator.expire_session()
        # simple-salesforce logs in again on 401 INVALID_SESSION_ID and retries.
        assert sf.query("SELECT COUNT() FROM User")["totalSize"] == 2
        assert sf.session_id != first_session
    finally:
        sf.session.close()


def test_soap_login_with_wrong_credentials_fails(server: LoopbackServer) -> None:
    with pytest.raises(SalesforceAuthenticationFailed) as raised:
        salesforce_login_client(server.base_url, "ops@example.com", "wrong", "TOKEN")
    assert raised.value.code == "INVALID_LOGIN"
    assert (
        raised.value.auth_message
        == "Invalid username, password, security token; or user locked out."
    )


def test_soap_login_is_disabled_without_configured_credentials(clock: Clock) -> None:
    with LoopbackServer(SalesforceEmulator(clock=clock)) as server:
        with pytest.raises(SalesforceAuthenticationFailed) as raised:
            salesforce_login_client(server.base_url, "anyone", "anything", "")
        assert raised.value.code == "INVALID_LOGIN"


# ---- state and seeding -----------------------------------------------------------------------


def test_state_reflects_writes(
    sf: Salesforce, server: LoopbackServer, emulator: SalesforceEmulator
) -> None:
    sf.Opportunity.update(GLOBEX, {"Amount": 50000, "StageName": "Closed Won"})
    created = sf.User.create(
        {
            "Username": "ana@example.com.sandbox",
            "FirstName": "Ana",
            "LastName": "Ruiz",
            "Email": "ana@example.com",
            "Alias": "aruiz",
            "TimeZoneSidKey": "Europe/Madrid",
            "LocaleSidKey": "es_ES",
            "EmailEncodingKey": "UTF-8",
            "LanguageLocaleKey": "es",
            "ProfileId": "00e000000000001AAA",
        }
    )
    snapshot = state(server)
    globex = next(r for r in snapshot["objects"]["Opportunity"] if r["Id"] == GLOBEX)
    assert (globex["Amount"], globex["StageName"], globex["CloseDate"]) == (
        50000.0,
        "Closed Won",
        "2026-12-15",
    )
    assert globex["LastModifiedDate"] == "2026-11-24T11:00:00.000+0000"
    # Every standard field is in the record: those not given are null (checkboxes false).
    ana = snapshot["objects"]["User"][-1]
    assert {name: value for name, value in ana.items() if value not in (None, False)} == {
        "Id": created["id"],
        "Username": "ana@example.com.sandbox",
        "FirstName": "Ana",
        "LastName": "Ruiz",
        "Email": "ana@example.com",
        "Alias": "aruiz",
        "IsActive": True,  # a new user is active unless the create says otherwise
        "TimeZoneSidKey": "Europe/Madrid",
        "LocaleSidKey": "es_ES",
        "EmailEncodingKey": "UTF-8",
        "LanguageLocaleKey": "es",
        "ProfileId": "00e000000000001AAA",
        "CreatedById": emulator.user_id,
        "LastModifiedById": emulator.user_id,
        "CreatedDate": "2026-11-24T11:00:00.000+0000",
        "LastModifiedDate": "2026-11-24T11:00:00.000+0000",
        "SystemModstamp": "2026-11-24T11:00:00.000+0000",
    }
    assert [r["Field"] for r in snapshot["objects"]["OpportunityFieldHistory"]] == [
        "Amount",
        "StageName",
    ]
    assert snapshot["requests"] == 2


def test_ids_use_real_key_prefixes_and_stable_custom_ones(clock: Clock) -> None:
    def seeded_ids() -> dict[str, str]:
        emulator = SalesforceEmulator(clock=clock)
        kinds = ("Account", "Contact", "Lead", "Opportunity", "User", "Forecast__c")
        emulator.seed({kind: {"records": [{}]} for kind in kinds})
        return {kind: rows[0]["Id"] for kind, rows in emulator.state()["objects"].items() if rows}

    ids = seeded_ids()
    assert {kind: record_id[:3] for kind, record_id in ids.items() if kind != "Forecast__c"} == {
        "Account": "001",
        "Contact": "003",
        "Lead": "00Q",
        "Opportunity": "006",
        "User": "005",
    }
    assert ids["Forecast__c"][0] == "a" and len(ids["Forecast__c"]) == 18
    assert seeded_ids() == ids


@pytest.mark.parametrize(
    ("seed", "message"),
    [
        ({"Lead": {"fields": {"Score": "float"}}}, "Lead.Score: unknown field type 'float'"),
        (
            {"Lead": {"fields": {"Name": "string"}, "records": [{"Nmae": "x"}]}},
            "Lead record 0: no field 'Nmae' in its fields",
        ),
        (
            {"Lead": {"fields": {"Seats": "int"}, "records": [{"Seats": "many"}]}},
            "Lead record 0: 'many' is not a valid int value for Seats",
        ),
        (
            {"Lead": {"records": [{"Id": "lead-1"}]}},
            "Lead record 0: 'lead-1' is not a valid id value for Id",
        ),
    ],
)
def test_bad_seeds_fail_loudly(seed: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError) as raised:
        SalesforceEmulator().seed(seed)
    assert str(raised.value) == message
