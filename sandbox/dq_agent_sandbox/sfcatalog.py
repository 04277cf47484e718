"""The standard objects every org starts with: User, Account, Contact, Lead, Opportunity, Case.

Each has the standard fields a CRM integration reads and writes, with the types, lengths,
required and read-only flags and picklist values Salesforce's object reference gives them. Left
out: fields only some editions or features add (person accounts, Data.com, territories,
multi-currency) and the compound address and geolocation fields, whose parts are here.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from dq_agent_sandbox.sobjects import FieldDef, field_label

__all__ = ["STANDARD_OBJECTS", "standard_fields"]

STANDARD_OBJECTS = ("User", "Account", "Contact", "Lead", "Opportunity", "Case")

STAGES = (
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
)
FORECAST_CATEGORIES = ("Omitted", "Pipeline", "Best Case", "Commit", "Closed")
OPPORTUNITY_TYPES = (
    "Existing Customer - Upgrade",
    "Existing Customer - Replacement",
    "Existing Customer - Downgrade",
    "New Customer",
)
LEAD_SOURCES = ("Web", "Phone Inquiry", "Partner Referral", "Purchased List", "Other")
LEAD_STATUSES = (
    "Open - Not Contacted",
    "Working - Contacted",
    "Closed - Converted",
    "Closed - Not Converted",
)
ACCOUNT_TYPES = (
    "Prospect",
    "Customer - Direct",
    "Customer - Channel",
    "Channel Partner / Reseller",
    "Installation Partner",
    "Technology Partner",
    "Other",
)
INDUSTRIES = (
    "Agriculture",
    "Apparel",
    "Banking",
    "Biotechnology",
    "Chemicals",
    "Communications",
    "Construction",
    "Consulting",
    "Education",
    "Electronics",
    "Energy",
    "Engineering",
    "Entertainment",
    "Environmental",
    "Finance",
    "Food & Beverage",
    "Government",
    "Healthcare",
    "Hospitality",
    "Insurance",
    "Machinery",
    "Manufacturing",
    "Media",
    "Not For Profit",
    "Recreation",
    "Retail",
    "Shipping",
    "Technology",
    "Telecommunications",
    "Transportation",
    "Utilities",
    "Other",
)
RATINGS = ("Hot", "Warm", "Cold")
OWNERSHIPS = ("Public", "Private", "Subsidiary", "Other")
SALUTATIONS = ("Mr.", "Ms.", "Mrs.", "Dr.", "Prof.")
CASE_STATUSES = ("New", "Working", "Escalated", "Closed")
CASE_PRIORITIES = ("High", "Medium", "Low")
CASE_ORIGINS = ("Phone", "Email", "Web")
CASE_TYPES = ("Mechanical", "Electrical", "Electronic", "Structural", "Other")
CASE_REASONS = (
    "Installation",
    "Equipment Complexity",
    "Performance",
    "Breakdown",
    "Equipment Design",
    "Feedback",
    "Other",
)
USER_TYPES = ("Standard", "PowerPartner", "PowerCustomerSuccess", "CustomerSuccess", "Guest")
# A real org lists hundreds of time zones and locales and restricts these picklists to them; the
# common ones are here, so the picklists are left open rather than refuse a real value.
TIME_ZONES = (
    "Pacific/Honolulu",
    "America/Anchorage",
    "America/Los_Angeles",
    "America/Denver",
    "America/Phoenix",
    "America/Chicago",
    "America/New_York",
    "America/Sao_Paulo",
    "GMT",
    "Europe/London",
    "Europe/Dublin",
    "Europe/Lisbon",
    "Europe/Paris",
    "Europe/Berlin",
    "Europe/Madrid",
    "Europe/Amsterdam",
    "Europe/Rome",
    "Africa/Johannesburg",
    "Europe/Istanbul",
    "Asia/Dubai",
    "Asia/Kolkata",
    "Asia/Singapore",
    "Asia/Shanghai",
    "Asia/Tokyo",
    "Australia/Sydney",
    "Pacific/Auckland",
)
LOCALES = (
    "en_US",
    "en_GB",
    "en_CA",
    "en_AU",
    "en_IE",
    "en_IN",
    "fr_FR",
    "fr_CA",
    "de_DE",
    "es_ES",
    "es_MX",
    "it_IT",
    "nl_NL",
    "pt_BR",
    "pt_PT",
    "ja_JP",
    "zh_CN",
    "ko_KR",
)
EMAIL_ENCODINGS = ("UTF-8", "ISO-8859-1", "Shift_JIS", "ISO-2022-JP", "EUC-JP", "Big5", "GB2312")
LANGUAGES = (
    "en_US",
    "en_GB",
    "fr",
    "de",
    "es",
    "es_MX",
    "it",
    "nl_NL",
    "pt_BR",
    "ja",
    "zh_CN",
    "zh_TW",
    "ko",
)


# ---- building blocks -------------------------------------------------------------------------


def _field(name: str, kind: str, label: str | None = None, **options: Any) -> FieldDef:
    return FieldDef(name, kind, label or field_label(name), **options)


def _read_only(name: str, kind: str, label: str | None = None, **options: Any) -> FieldDef:
    """A field Salesforce maintains: read through the API, never written."""
    return _field(name, kind, label, createable=False, updateable=False, **options)


def _required(name: str, kind: str, label: str | None = None, **options: Any) -> FieldDef:
    return _field(name, kind, label, nillable=False, **options)


def _checkbox(name: str, label: str | None = None, **options: Any) -> FieldDef:
    """Checkboxes are never null in Salesforce."""
    return _field(name, "boolean", label, nillable=False, **options)


def _lookup(name: str, target: str, label: str | None = None, **options: Any) -> FieldDef:
    return _field(name, "reference", label, reference_to=target, **options)


def _picklist(
    name: str, values: tuple[str, ...], label: str | None = None, **options: Any
) -> FieldDef:
    return _field(name, "picklist", label, picklist=values, **options)


def _identity(object_name: str, *, deletable: bool = True) -> list[FieldDef]:
    fields = [
        _read_only("Id", "id", f"{object_name} ID", nillable=False),
    ]
    if deletable:  # users are deactivated, never deleted, and have no IsDeleted
        fields.append(_checkbox("IsDeleted", "Deleted", createable=False, updateable=False))
    return fields


def _audit() -> list[FieldDef]:
    """Who created and last changed the record, and when."""
    return [
        _read_only("CreatedDate", "datetime", nillable=False),
        _read_only(
            "CreatedById", "reference", "Created By ID", nillable=False, reference_to="User"
        ),
        _read_only("LastModifiedDate", "datetime", nillable=False),
        _read_only(
            "LastModifiedById",
            "reference",
            "Last Modified By ID",
            nillable=False,
            reference_to="User",
        ),
        _read_only("SystemModstamp", "datetime", "System Modstamp", nillable=False),
    ]


def _recently_used(*, activity: bool = True) -> list[FieldDef]:
    fields = [_read_only("LastActivityDate", "date", "Last Activity")] if activity else []
    return fields + [
        _read_only("LastViewedDate", "datetime"),
        _read_only("LastReferencedDate", "datetime"),
    ]


def _owner(*, queues: bool = False) -> FieldDef:
    """A record's owner: a user, or for leads and cases a queue (a Group) too."""
    also = ("Group",) if queues else ()
    return _lookup("OwnerId", "User", "Owner ID", nillable=False, also_refers_to=also)


def _merged_into(object_name: str) -> FieldDef:
    return _read_only("MasterRecordId", "reference", "Master Record ID", reference_to=object_name)


def _person_name(*, salutation: bool = True) -> list[FieldDef]:
    """LastName (required), FirstName and Salutation, and the Name Salutation derives from them."""
    fields = [
        _required("LastName", "string", length=80, compound="Name"),
        _field("FirstName", "string", length=40, compound="Name"),
    ]
    if salutation:
        fields.append(_picklist("Salutation", SALUTATIONS, length=40, compound="Name"))
    name = _read_only("Name", "string", "Full Name", nillable=False, length=121)
    fields.append(replace(name, name_field=True, extra_type="personname"))
    return fields


def _address(prefix: str = "", label: str = "") -> list[FieldDef]:
    """The parts of an address: ``Billing`` → BillingStreet … BillingCountry."""
    compound = f"{prefix}Address"
    part = f"{label} " if label else ""
    return [
        _field(f"{prefix}Street", "textarea", f"{part}Street", length=255, compound=compound),
        _field(f"{prefix}City", "string", f"{part}City", length=40, compound=compound),
        _field(f"{prefix}State", "string", f"{part}State/Province", length=80, compound=compound),
        _field(
            f"{prefix}PostalCode",
            "string",
            f"{part}Zip/Postal Code",
            length=20,
            compound=compound,
        ),
        _field(f"{prefix}Country", "string", f"{part}Country", length=80, compound=compound),
    ]


def _description(label: str = "Description") -> FieldDef:
    return _field("Description", "textarea", label, length=32000)


def _email_bounces() -> list[FieldDef]:
    return [
        _field("EmailBouncedReason", "string", length=255),
        _field("EmailBouncedDate", "datetime"),
    ]


# ---- the objects -----------------------------------------------------------------------------


def _user() -> list[FieldDef]:
    return [
        *_identity("User", deletable=False),
        _required("Username", "string", length=80, unique=True, id_lookup=True),
        *_person_name(salutation=False),
        _field("CompanyName", "string", "Company Name", length=80),
        _field("Division", "string", length=80),
        _field("Department", "string", length=80),
        _field("Title", "string", length=80),
        *_address(),
        _required("Email", "email", length=128, id_lookup=True),
        _field("Phone", "phone"),
        _field("Fax", "phone"),
        _field("MobilePhone", "phone", "Mobile"),
        _required("Alias", "string", length=8),
        _field("CommunityNickname", "string", "Nickname", length=40),
        _checkbox("IsActive", "Active", default=True),
        _required("TimeZoneSidKey", "picklist", "Time Zone", length=40, picklist=TIME_ZONES),
        _lookup("UserRoleId", "UserRole", "Role ID"),
        _required("LocaleSidKey", "picklist", "Locale", length=40, picklist=LOCALES),
        _checkbox("ReceivesInfoEmails", "Info Emails"),
        _required(
            "EmailEncodingKey", "picklist", "Email Encoding", length=40, picklist=EMAIL_ENCODINGS
        ),
        _lookup("ProfileId", "Profile", "Profile ID", nillable=False),
        _read_only(
            "UserType", "picklist", "User Type", length=40, picklist=USER_TYPES, restricted=True
        ),
        _required("LanguageLocaleKey", "picklist", "Language", length=40, picklist=LANGUAGES),
        _field("EmployeeNumber", "string", "Employee Number", length=20),
        _lookup("DelegatedApproverId", "User", "Delegated Approver ID", also_refers_to=("Group",)),
        _lookup("ManagerId", "User", "Manager ID", child_relationship="ManagedUsers"),
        _read_only("LastLoginDate", "datetime", "Last Login"),
        *_audit(),
        _lookup("ContactId", "Contact", "Contact ID"),
        _read_only("AccountId", "reference", "Account ID", reference_to="Account"),
        _field("FederationIdentifier", "string", "SAML Federation ID", length=512),
        _field("AboutMe", "textarea", "About Me", length=1000),
        *_recently_used(activity=False),
    ]


def _account() -> list[FieldDef]:
    return [
        *_identity("Account"),
        _merged_into("Account"),
        _required("Name", "string", "Account Name", length=255, name_field=True),
        _picklist("Type", ACCOUNT_TYPES, "Account Type"),
        _lookup("ParentId", "Account", "Parent Account ID", child_relationship="ChildAccounts"),
        *_address("Billing", "Billing"),
        *_address("Shipping", "Shipping"),
        _field("Phone", "phone", "Account Phone"),
        _field("Fax", "phone", "Account Fax"),
        _field("AccountNumber", "string", "Account Number", length=40),
        _field("Website", "url"),
        _read_only("PhotoUrl", "url", "Photo URL"),
        _field("Sic", "string", "SIC Code", length=20),
        _picklist("Industry", INDUSTRIES),
        _field("AnnualRevenue", "currency", precision=18, scale=0),
        _field("NumberOfEmployees", "int", "Employees", digits=8),
        _picklist("Ownership", OWNERSHIPS),
        _field("TickerSymbol", "string", "Ticker Symbol", length=20),
        _description("Account Description"),
        _picklist("Rating", RATINGS, "Account Rating"),
        _field("Site", "string", "Account Site", length=80),
        _owner(),
        *_audit(),
        *_recently_used(),
        _picklist("AccountSource", LEAD_SOURCES, "Account Source"),
        _field("SicDesc", "string", "SIC Description", length=80),
    ]


def _contact() -> list[FieldDef]:
    return [
        *_identity("Contact"),
        _merged_into("Contact"),
        _lookup("AccountId", "Account", "Account ID", child_relationship="Contacts"),
        *_person_name(),
        *_address("Other", "Other"),
        *_address("Mailing", "Mailing"),
        _field("Phone", "phone", "Business Phone"),
        _field("Fax", "phone", "Business Fax"),
        _field("MobilePhone", "phone", "Mobile Phone"),
        _field("HomePhone", "phone", "Home Phone"),
        _field("OtherPhone", "phone", "Other Phone"),
        _field("AssistantPhone", "phone", "Asst. Phone"),
        _lookup("ReportsToId", "Contact", "Reports To ID"),
        _field("Email", "email", id_lookup=True),
        _field("Title", "string", length=128),
        _field("Department", "string", length=80),
        _field("AssistantName", "string", "Assistant's Name", length=40),
        _picklist("LeadSource", LEAD_SOURCES, "Lead Source"),
        _field("Birthdate", "date"),
        _description("Contact Description"),
        _owner(),
        _checkbox("HasOptedOutOfEmail", "Email Opt Out"),
        _checkbox("HasOptedOutOfFax", "Fax Opt Out"),
        _checkbox("DoNotCall", "Do Not Call"),
        *_audit(),
        *_recently_used(),
        *_email_bounces(),
        _checkbox("IsEmailBounced", "Is Email Bounced", createable=False, updateable=False),
        _read_only("PhotoUrl", "url", "Photo URL"),
    ]


def _lead() -> list[FieldDef]:
    return [
        *_identity("Lead"),
        _merged_into("Lead"),
        *_person_name(),
        _field("Title", "string", length=128),
        _required("Company", "string", length=255),
        *_address(),
        _field("Phone", "phone"),
        _field("MobilePhone", "phone", "Mobile Phone"),
        _field("Fax", "phone"),
        _field("Email", "email", id_lookup=True),
        _field("Website", "url"),
        _read_only("PhotoUrl", "url", "Photo URL"),
        _description(),
        _picklist("LeadSource", LEAD_SOURCES, "Lead Source"),
        _required(
            "Status",
            "picklist",
            "Lead Status",
            length=40,
            picklist=LEAD_STATUSES,
            default=LEAD_STATUSES[0],
        ),
        _picklist("Industry", INDUSTRIES, length=40),
        _picklist("Rating", RATINGS, length=40),
        _field("AnnualRevenue", "currency", precision=18, scale=0),
        _field("NumberOfEmployees", "int", "Employees", digits=8),
        _owner(queues=True),
        _checkbox("HasOptedOutOfEmail", "Email Opt Out"),
        _checkbox("IsConverted", "Converted", updateable=False),  # set by converting the lead
        _read_only("ConvertedDate", "date"),
        _read_only(
            "ConvertedAccountId", "reference", "Converted Account ID", reference_to="Account"
        ),
        _read_only(
            "ConvertedContactId", "reference", "Converted Contact ID", reference_to="Contact"
        ),
        _read_only(
            "ConvertedOpportunityId",
            "reference",
            "Converted Opportunity ID",
            reference_to="Opportunity",
        ),
        _checkbox("IsUnreadByOwner", "Unread By Owner"),
        *_audit(),
        *_recently_used(),
        _checkbox("DoNotCall", "Do Not Call"),
        _checkbox("HasOptedOutOfFax", "Fax Opt Out"),
        *_email_bounces(),
    ]


def _opportunity() -> list[FieldDef]:
    return [
        *_identity("Opportunity"),
        _lookup("AccountId", "Account", "Account ID", child_relationship="Opportunities"),
        _checkbox("IsPrivate", "Private"),
        _required("Name", "string", length=120, name_field=True),
        _description(),
        _required("StageName", "picklist", "Stage", picklist=STAGES, restricted=True),
        _field("Amount", "currency", precision=18, scale=2),
        # Probability and the forecast category follow the stage unless a write names them.
        _field("Probability", "percent", "Probability (%)", precision=3, scale=0, defaulted=True),
        _read_only("ExpectedRevenue", "currency", "Expected Amount", precision=18, scale=2),
        _field("TotalOpportunityQuantity", "double", "Quantity", precision=18, scale=2),
        _required("CloseDate", "date"),
        _picklist("Type", OPPORTUNITY_TYPES, "Opportunity Type"),
        _field("NextStep", "string", "Next Step", length=255),
        _picklist("LeadSource", LEAD_SOURCES, "Lead Source"),
        _checkbox("IsClosed", "Closed", createable=False, updateable=False),
        _checkbox("IsWon", "Won", createable=False, updateable=False),
        _picklist(
            "ForecastCategoryName",
            FORECAST_CATEGORIES,
            "Forecast Category",
            restricted=True,
            defaulted=True,
        ),
        _lookup("CampaignId", "Campaign", "Campaign ID", child_relationship="Opportunities"),
        _checkbox("HasOpportunityLineItem", "Has Line Item", createable=False, updateable=False),
        _lookup("Pricebook2Id", "Pricebook2", "Price Book ID", child_relationship="Opportunities"),
        _owner(),
        *_audit(),
        *_recently_used(),
        _read_only("FiscalQuarter", "int", "Fiscal Quarter", digits=8),
        _read_only("FiscalYear", "int", "Fiscal Year", digits=8),
        _read_only("Fiscal", "string", "Fiscal Period", length=6),
        _lookup("ContactId", "Contact", "Contact ID"),
        _checkbox("HasOpenActivity", "Has Open Activity", createable=False, updateable=False),
        _checkbox("HasOverdueTask", "Has Overdue Task", createable=False, updateable=False),
        _read_only("LastStageChangeDate", "datetime", "Last Stage Change Date"),
    ]


def _case() -> list[FieldDef]:
    case_number = _read_only("CaseNumber", "string", "Case Number", nillable=False, length=30)
    return [
        *_identity("Case"),
        _merged_into("Case"),
        replace(case_number, auto_number=True, name_field=True, id_lookup=True),
        _lookup("ContactId", "Contact", "Contact ID", child_relationship="Cases"),
        _lookup("AccountId", "Account", "Account ID", child_relationship="Cases"),
        _lookup("AssetId", "Asset", "Asset ID", child_relationship="Cases"),
        _lookup("ParentId", "Case", "Parent Case ID", child_relationship="Cases"),
        _field("SuppliedName", "string", "Name", length=80),
        _field("SuppliedEmail", "email", "Email Address"),
        _field("SuppliedPhone", "string", "Phone", length=40),
        _field("SuppliedCompany", "string", "Company", length=80),
        _picklist("Type", CASE_TYPES, "Case Type"),
        _picklist("Status", CASE_STATUSES, length=40, default=CASE_STATUSES[0]),
        _picklist("Reason", CASE_REASONS, "Case Reason"),
        _picklist("Origin", CASE_ORIGINS, "Case Origin"),
        _field("Subject", "string", length=255),
        _picklist("Priority", CASE_PRIORITIES, length=40, default="Medium"),
        _description(),
        _checkbox("IsClosed", "Closed", createable=False, updateable=False),
        _read_only("ClosedDate", "datetime", "Closed Date"),
        _checkbox("IsEscalated", "Escalated"),
        _owner(queues=True),
        *_audit(),
        _read_only("ContactPhone", "phone", "Contact Phone"),
        _read_only("ContactMobile", "phone", "Contact Mobile"),
        _read_only("ContactEmail", "email", "Contact Email"),
        _read_only("ContactFax", "phone", "Contact Fax"),
        _field("Comments", "textarea", "Internal Comments", length=4000),
        *_recently_used(activity=False),
    ]


_CATALOG = {
    "User": _user,
    "Account": _account,
    "Contact": _contact,
    "Lead": _lead,
    "Opportunity": _opportunity,
    "Case": _case,
}


def standard_fields(object_name: str) -> list[FieldDef]:
    """The standard fields of one of :data:`STANDARD_OBJECTS`, in describe order."""
    return _CATALOG[object_name]()
