"""A fresh emulated org has Salesforce's standard objects, described and validated as a real one.

Driven by the real simple-salesforce client over HTTP, with no seed unless a test says so.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import SalesforceMalformedRequest

from dq_agent_sandbox.http import LoopbackServer
from dq_agent_sandbox.salesforce import SalesforceEmulator
from tests.sf_client import open_salesforce_client
from tests.sf_reference import DESCRIBE_FIELD, DESCRIBE_GLOBAL_SOBJECT, DESCRIBE_SOBJECT

NOW = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)

FIELD_KEYS = DESCRIBE_FIELD
GLOBAL_KEYS = DESCRIBE_GLOBAL_SOBJECT
OBJECT_KEYS = DESCRIBE_SOBJECT
PICKLIST_ENTRY_KEYS = {"active", "defaultValue", "label", "validFor", "value"}

# Per object: standard fields and their describe types, and what a create must give.
STANDARD = {
    "Opportunity": (
        {
            "Name": "string",
            "AccountId": "reference",
            "Amount": "currency",
            "CloseDate": "date",
            "StageName": "picklist",
            "Probability": "percent",
            "Type": "picklist",
            "LeadSource": "picklist",
            "NextStep": "string",
            "Description": "textarea",
            "ForecastCategoryName": "picklist",
            "IsClosed": "boolean",
            "IsWon": "boolean",
            "OwnerId": "reference",
            "CreatedById": "reference",
            "LastModifiedById": "reference",
            "ExpectedRevenue": "currency",
            "TotalOpportunityQuantity": "double",
            "HasOpportunityLineItem": "boolean",
            "Pricebook2Id": "reference",
            "CampaignId": "reference",
            "IsDeleted": "boolean",
            "FiscalYear": "int",
            "FiscalQuarter": "int",
        },
        {"Name", "StageName", "CloseDate"},
    ),
    "Account": (
        {
            "Name": "string",
            "Type": "picklist",
            "Industry": "picklist",
            "AnnualRevenue": "currency",
            "NumberOfEmployees": "int",
            "BillingStreet": "textarea",
            "BillingCity": "string",
            "BillingState": "string",
            "BillingPostalCode": "string",
            "BillingCountry": "string",
            "Phone": "phone",
            "Website": "url",
            "OwnerId": "reference",
            "ParentId": "reference",
        },
        {"Name"},
    ),
    "Contact": (
        {
            "FirstName": "string",
            "LastName": "string",
            "Name": "string",
            "Email": "email",
            "Phone": "phone",
            "Title": "string",
            "AccountId": "reference",
            "OwnerId": "reference",
            "Birthdate": "date",
        },
        {"LastName"},
    ),
    "Lead": (
        {
            "FirstName": "string",
            "LastName": "string",
            "Name": "string",
            "Company": "string",
            "Status": "picklist",
            "Email": "email",
            "LeadSource": "picklist",
            "Industry": "picklist",
            "Rating": "picklist",
            "IsConverted": "boolean",
            "OwnerId": "reference",
        },
        {"LastName", "Company"},  # Status is required too, but defaulted on create
    ),
    "Case": (
        {
            "CaseNumber": "string",
            "Subject": "string",
            "Description": "textarea",
            "Status": "picklist",
            "Priority": "picklist",
            "Origin": "picklist",
            "Type": "picklist",
            "Reason": "picklist",
            "AccountId": "reference",
            "ContactId": "reference",
            "IsClosed": "boolean",
            "OwnerId": "reference",
            "ClosedDate": "datetime",
        },
        set(),
    ),
    "User": (
        {
            "Username": "string",
            "Name": "string",
            "FirstName": "string",
            "LastName": "string",
            "Email": "email",
            "Alias": "string",
            "IsActive": "boolean",
            "ProfileId": "reference",
            "UserRoleId": "reference",
            "TimeZoneSidKey": "picklist",
            "LocaleSidKey": "picklist",
            "EmailEncodingKey": "picklist",
            "LanguageLocaleKey": "picklist",
            "ManagerId": "reference",
        },
        {
            "Username",
            "LastName",
            "Email",
            "Alias",
            "TimeZoneSidKey",
            "LocaleSidKey",
            "EmailEncodingKey",
            "ProfileId",
            "LanguageLocaleKey",
        },
    ),
}


@pytest.fixture
def emulator() -> SalesforceEmulator:
    return SalesforceEmulator(clock=lambda: NOW)


@pytest.fixture
def sf(emulator: SalesforceEmulator) -> Iterator[Salesforce]:
    with LoopbackServer(emulator) as server, open_salesforce_client(server.base_url) as client:
        yield client


def refusal(raised: pytest.ExceptionInfo[SalesforceMalformedRequest]) -> list[dict[str, Any]]:
    assert raised.value.status == 400
    return list(raised.value.content)


def by_name(described: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {f["name"]: f for f in described["fields"]}


# ---- writes ----------------------------------------------------------------------------------


def test_a_standard_opportunity_is_created_in_a_fresh_org(
    sf: Salesforce, emulator: SalesforceEmulator
) -> None:
    created = sf.Opportunity.create(
        {"Name": "Acme renewal", "StageName": "Prospecting", "CloseDate": "2026-12-31"}
        | {"Amount": 1200}
    )
    deal = sf.Opportunity.get(created["id"])
    assert (deal["Name"], deal["StageName"], deal["CloseDate"], deal["Amount"]) == (
        "Acme renewal",
        "Prospecting",
        "2026-12-31",
        1200.0,
    )
    # Salesforce fills in the owner and creator (the API user) and unchecked checkboxes.
    assert deal["OwnerId"] == deal["CreatedById"] == emulator.user_id
    assert (deal["IsWon"], deal["IsDeleted"], deal["Description"]) == (False, False, None)
    (row,) = sf.query("SELECT Name FROM Opportunity WHERE CloseDate = 2026-12-31")["records"]
    assert row["Name"] == "Acme renewal"


def test_a_create_without_close_date_is_refused_naming_it(sf: Salesforce) -> None:
    with pytest.raises(SalesforceMalformedRequest) as raised:
        sf.Opportunity.create({"Name": "Acme renewal", "StageName": "Prospecting"})
    assert refusal(raised) == [
        {
            "message": "Required fields are missing: [CloseDate]",
            "errorCode": "REQUIRED_FIELD_MISSING",
            "fields": ["CloseDate"],
        }
    ]
    with pytest.raises(SalesforceMalformedRequest) as raised:
        sf.Opportunity.create({"Amount": 1})
    assert refusal(raised)[0]["fields"] == ["Name", "StageName", "CloseDate"]


def test_a_required_field_cannot_be_emptied(sf: Salesforce) -> None:
    created = sf.Account.create({"Name": "Acme"})
    with pytest.raises(SalesforceMalformedRequest) as raised:
        sf.Account.update(created["id"], {"Name": None})
    assert refusal(raised) == [
        {
            "message": "Required fields are missing: [Name]",
            "errorCode": "REQUIRED_FIELD_MISSING",
            "fields": ["Name"],
        }
    ]


def test_a_restricted_picklist_refuses_other_values_an_open_one_takes_them(
    sf: Salesforce,
) -> None:
    deal = {"Name": "Acme renewal", "CloseDate": "2026-12-31"}
    with pytest.raises(SalesforceMalformedRequest) as raised:
        sf.Opportunity.create(deal | {"StageName": "Foo"})
    assert refusal(raised) == [
        {
            "message": "Stage: bad value for restricted picklist field: Foo",
            "errorCode": "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
            "fields": ["StageName"],
        }
    ]
    created = sf.Opportunity.create(deal | {"StageName": "Qualification", "Type": "Renewal"})
    with pytest.raises(SalesforceMalformedRequest) as raised:
        sf.Opportunity.update(created["id"], {"StageName": "closed won"})  # values match exactly
    assert refusal(raised)[0]["errorCode"] == "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"
    sf.Opportunity.update(created["id"], {"StageName": "Closed Won", "LeadSource": "Webinar"})
    deal_now = sf.Opportunity.get(created["id"])
    assert (deal_now["StageName"], deal_now["Type"], deal_now["LeadSource"]) == (
        "Closed Won",
        "Renewal",
        "Webinar",
    )


def test_derived_fields_are_read_only(sf: Salesforce) -> None:
    deal = {"Name": "Acme renewal", "StageName": "Closed Won", "CloseDate": "2026-12-31"}
    with pytest.raises(SalesforceMalformedRequest) as raised:
        sf.Opportunity.create(deal | {"IsWon": True, "ExpectedRevenue": 10})
    (error,) = refusal(raised)
    assert (error["errorCode"], error["fields"]) == (
        "INVALID_FIELD_FOR_INSERT_UPDATE",
        ["IsWon", "ExpectedRevenue"],
    )
    contact = sf.Contact.create({"LastName": "Chen"})
    with pytest.raises(SalesforceMalformedRequest) as raised:
        sf.Contact.update(contact["id"], {"Name": "Maria Chen"})
    assert refusal(raised)[0]["fields"] == ["Name"]


def test_text_longer_than_the_field_is_refused(sf: Salesforce) -> None:
    with pytest.raises(SalesforceMalformedRequest) as raised:
        sf.Lead.create({"LastName": "x" * 81, "Company": "Acme"})
    assert refusal(raised) == [
        {
            "message": f"Last Name: data value too large: {'x' * 81} (max length=80)",
            "errorCode": "STRING_TOO_LONG",
            "fields": ["LastName"],
        }
    ]


def test_creates_get_picklist_defaults_and_case_numbers(sf: Salesforce) -> None:
    with pytest.raises(SalesforceMalformedRequest) as raised:
        sf.Lead.create({"LastName": "Ruiz"})
    assert refusal(raised)[0]["fields"] == ["Company"]
    lead = sf.Lead.get(sf.Lead.create({"LastName": "Ruiz", "Company": "Acme"})["id"])
    assert lead["Status"] == "Open - Not Contacted"

    first = sf.Case.get(sf.Case.create({"Subject": "Printer on fire", "Origin": "Web"})["id"])
    second = sf.Case.get(sf.Case.create({"Status": "Working", "Priority": None})["id"])
    assert (first["CaseNumber"], first["Status"], first["Priority"]) == (
        "00001001",
        "New",
        "Medium",
    )
    assert (second["CaseNumber"], second["Status"], second["Priority"]) == (
        "00001002",
        "Working",
        None,
    )
    with pytest.raises(SalesforceMalformedRequest) as raised:
        sf.Case.update(first["Id"], {"CaseNumber": "1"})
    assert refusal(raised)[0]["errorCode"] == "INVALID_FIELD_FOR_INSERT_UPDATE"


def test_a_user_needs_what_a_real_org_requires(sf: Salesforce) -> None:
    with pytest.raises(SalesforceMalformedRequest) as raised:
        sf.User.create({"LastName": "Ruiz"})
    assert refusal(raised)[0]["fields"] == [
        "Username",
        "Email",
        "Alias",
        "TimeZoneSidKey",
        "LocaleSidKey",
        "EmailEncodingKey",
        "ProfileId",
        "LanguageLocaleKey",
    ]


def test_relationships_between_standard_objects_are_queryable(sf: Salesforce) -> None:
    account = sf.Account.create({"Name": "Acme", "Industry": "Manufacturing"})
    sf.Contact.create({"LastName": "Chen", "AccountId": account["id"]})
    (row,) = sf.query("SELECT LastName, Account.Name, Account.Industry FROM Contact")["records"]
    assert (row["LastName"], row["Account"]["Name"], row["Account"]["Industry"]) == (
        "Chen",
        "Acme",
        "Manufacturing",
    )


# ---- describe --------------------------------------------------------------------------------


@pytest.mark.parametrize("object_name", sorted(STANDARD))
def test_describe_lists_the_standard_fields_as_a_real_org_does(
    sf: Salesforce, object_name: str
) -> None:
    types, required = STANDARD[object_name]
    described = sf.restful(f"sobjects/{object_name}/describe")
    assert set(described) == OBJECT_KEYS
    fields = by_name(described)
    assert {name: fields[name]["type"] for name in types} == types
    for definition in described["fields"]:
        assert set(definition) == FIELD_KEYS, definition["name"]
        for entry in definition["picklistValues"]:
            assert set(entry) == PICKLIST_ENTRY_KEYS
    # Clients read "required" off describe as createable, not nillable, not defaulted.
    assert {
        f["name"]
        for f in described["fields"]
        if f["createable"] and not f["nillable"] and not f["defaultedOnCreate"]
    } == required
    assert fields["Id"]["type"] == "id" and fields["Id"]["idLookup"] is True
    assert [f["name"] for f in described["fields"] if f["nameField"]] == [
        "CaseNumber" if object_name == "Case" else "Name"
    ]


def test_describe_carries_real_sizes_picklists_and_flags(sf: Salesforce) -> None:
    opportunity = by_name(sf.Opportunity.describe())
    amount = opportunity["Amount"]
    assert (amount["precision"], amount["scale"], amount["soapType"]) == (18, 2, "xsd:double")
    assert (opportunity["Name"]["length"], opportunity["Name"]["byteLength"]) == (120, 360)
    stage = opportunity["StageName"]
    assert (stage["label"], stage["restrictedPicklist"], stage["nillable"]) == (
        "Stage",
        True,
        False,
    )
    assert [entry["value"] for entry in stage["picklistValues"]] == [
        "Prospecting",
        "Qualification",
        "Needs Analysis",
        "Value Proposition",
        "Id. Decision Makers",
        "Perception Analysis",
        "Proposal/Price Quote",
        "Negotiation/Review",
        "Closed Won",
        "Closed Lost",
    ]
    for derived in ("IsClosed", "IsWon", "ExpectedRevenue"):
        assert (opportunity[derived]["createable"], opportunity[derived]["updateable"]) == (
            False,
            False,
        )
    assert opportunity["Description"]["filterable"] is False  # a long text area

    case = by_name(sf.Case.describe())
    assert (case["CaseNumber"]["autoNumber"], case["CaseNumber"]["createable"]) == (True, False)
    assert case["OwnerId"]["referenceTo"] == ["Group", "User"]
    assert case["OwnerId"]["polymorphicForeignKey"] is True
    assert [e["value"] for e in case["Status"]["picklistValues"] if e["defaultValue"]] == ["New"]

    contact = by_name(sf.Contact.describe())
    assert (contact["Name"]["createable"], contact["FirstName"]["compoundFieldName"]) == (
        False,
        "Name",
    )
    assert by_name(sf.User.describe())["IsActive"]["defaultValue"] is True


def test_describe_lists_child_relationships(sf: Salesforce) -> None:
    children = {
        (c["childSObject"], c["field"]): c["relationshipName"]
        for c in sf.Account.describe()["childRelationships"]
    }
    assert children[("Contact", "AccountId")] == "Contacts"
    assert children[("Opportunity", "AccountId")] == "Opportunities"
    assert children[("Case", "AccountId")] == "Cases"
    assert children[("AccountHistory", "AccountId")] == "Histories"


def test_describe_global_lists_the_standard_objects(sf: Salesforce) -> None:
    listed = {o["name"]: o for o in sf.describe()["sobjects"]}
    for name in STANDARD:
        assert set(listed[name]) == GLOBAL_KEYS
        assert listed[name]["custom"] is False
    assert listed["Opportunity"]["keyPrefix"] == "006"
    assert listed["Lead"]["mergeable"] is True
    assert listed["CaseHistory"]["associateParentEntity"] == "Case"


# ---- seeds -----------------------------------------------------------------------------------


def test_a_seed_adds_custom_fields_and_objects_and_customises_standard_ones(
    emulator: SalesforceEmulator,
) -> None:
    emulator.seed(
        {
            "Opportunity": {
                "fields": {
                    "Name": "string",  # already a string: nothing changes
                    "Seats__c": "double",
                    "Probability": "double",  # another type: the seed's replaces it
                    "StageName": {"type": "picklist", "restrictedPicklist": False},
                    "NextStep": {"type": "string", "nillable": False},
                },
                "records": [{"Name": "Seeded without a stage", "Seats__c": 10}],
            },
            "Forecast__c": {"fields": {"Units__c": "int"}, "records": [{"Units__c": 40}]},
        }
    )
    with LoopbackServer(emulator) as server, open_salesforce_client(server.base_url) as sf:
        fields = by_name(sf.Opportunity.describe())
        assert (fields["Name"]["nillable"], fields["Name"]["length"]) == (False, 120)
        assert fields["Seats__c"]["custom"] is True
        assert (fields["Probability"]["type"], fields["Probability"]["label"]) == (
            "double",
            "Probability (%)",
        )
        assert fields["StageName"]["restrictedPicklist"] is False
        assert list(fields)[-1] == "Seats__c"  # custom fields come after the standard ones

        deal = {"Name": "Acme", "CloseDate": "2026-12-31", "Probability": 12.5}
        with pytest.raises(SalesforceMalformedRequest) as raised:
            sf.Opportunity.create(deal | {"StageName": "Pipeline review"})
        assert refusal(raised)[0]["fields"] == ["NextStep"]
        created = sf.Opportunity.create(
            deal | {"StageName": "Pipeline review", "NextStep": "Call", "Seats__c": 4}
        )
        assert sf.Opportunity.get(created["id"])["StageName"] == "Pipeline review"

        (seeded,) = sf.query("SELECT StageName, Seats__c FROM Opportunity WHERE Seats__c = 10")[
            "records"
        ]
        assert seeded["StageName"] is None  # seeds are stored as given
        assert sf.query("SELECT Units__c FROM Forecast__c")["records"][0]["Units__c"] == 40
        assert sf.Forecast__c.describe()["custom"] is True


def test_a_seed_cannot_change_a_field_type_under_existing_records(
    emulator: SalesforceEmulator,
) -> None:
    emulator.seed({"Account": {"records": [{"Name": "Acme"}]}})
    with pytest.raises(ValueError) as raised:
        emulator.seed({"Account": {"fields": {"Name": "int"}}})
    assert str(raised.value) == "Account.Name is already a string field with records, not int"
