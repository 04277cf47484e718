"""One contract for every source (sql, salesforce, gsheets), through the real clients.

The same records are served by a SQLite table, the Salesforce emulator (simple-salesforce)
and the Sheets emulator (gspread); each source must read them with the same types, key its
records, survive an empty source, say an unreachable one is transient, and write back only
compare-and-set.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from dq_agent.config.models import (
    GSheetsConnector,
    GSheetsSourceSpec,
    SalesforceConnector,
    SalesforceSourceSpec,
    SqlConnector,
    SqlSourceSpec,
)
from dq_agent.errors import SourceError
from dq_agent.sources import gsheets, salesforce
from dq_agent.sources.base import Relation, Source, planner_settings
from dq_agent.sources.retry import RetryPolicy
from dq_agent.sources.sql import SqlSource, create_engine
from dq_agent_sandbox.gsheets import SheetsEmulator
from dq_agent_sandbox.http import LoopbackServer
from dq_agent_sandbox.salesforce import SalesforceEmulator

SLEPT: list[float] = []
FAST = RetryPolicy(attempts=3, base_delay=1.0, sleep=SLEPT.append)

RECORDS = [
    {
        "name": "Acme",
        "amount": 1200.5,
        "seats": 10,
        "won": True,
        "close": date(2026, 12, 1),
        "seen": datetime(2026, 11, 20, 9, 30, tzinfo=UTC),
    },
    {
        "name": "Globex",
        "amount": 5000.0,
        "seats": 2,
        "won": False,
        "close": date(2026, 12, 15),
        "seen": datetime(2026, 11, 21, 17, 0, tzinfo=UTC),
    },
    {"name": None, "amount": None, "seats": 3, "won": None, "close": None, "seen": None},
]
FAMILIES = {
    "name": "string",
    "amount": "number",
    "seats": "integer",
    "won": "boolean",
    "close": "date",
    "seen": "timestamp",
}


@dataclass
class Case:
    """A source holding ``RECORDS`` (or nothing), and how to reach and change its records."""

    kind: str
    make: Callable[[list[dict[str, Any]]], Source]
    key_of: Callable[[Relation, int], dict[str, Any]]  # the key of the n-th record
    edit: Callable[[dict[str, Any], str, Any], None]  # someone else changes a value
    read: Callable[[dict[str, Any], str], Any]  # the value as the system now holds it
    unreachable: Callable[[], Source]


# --- sql ------------------------------------------------------------------------------------


def sql_case(tmp_path: Path) -> Case:
    url = f"sqlite:///{tmp_path / 'crm.db'}"
    connector = SqlConnector(type="sql", url=url)
    table = sa.Table(
        "deals",
        sa.MetaData(),
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String),
        sa.Column("amount", sa.Float),
        sa.Column("seats", sa.Integer),
        sa.Column("won", sa.Boolean),
        sa.Column("close", sa.Date),
        sa.Column("seen", sa.DateTime(timezone=True)),
    )
    engine = sa.create_engine(url)

    def make(records: list[dict[str, Any]]) -> Source:
        table.metadata.drop_all(engine)
        table.metadata.create_all(engine)
        with engine.begin() as conn:
            for i, record in enumerate(records, start=1):
                conn.execute(table.insert().values(id=i, **record))
        return SqlSource(
            create_engine(connector, tmp_path),
            SqlSourceSpec(connector="w", table="deals"),
            connector,
        )

    def edit(key: dict[str, Any], column: str, value: Any) -> None:
        with engine.begin() as conn:
            conn.execute(table.update().where(table.c.id == key["id"]).values({column: value}))

    def read(key: dict[str, Any], column: str) -> Any:
        with engine.connect() as conn:
            return conn.execute(sa.select(table.c[column]).where(table.c.id == key["id"])).scalar()

    def unreachable() -> Source:
        down = SqlConnector(
            type="sql", url="postgresql+psycopg://nobody@127.0.0.1:1/x", connect_timeout=2
        )
        return SqlSource(
            create_engine(down, tmp_path), SqlSourceSpec(connector="d", table="t"), down
        )

    return Case("sql", make, lambda rel, n: {"id": n + 1}, edit, read, unreachable)


# --- salesforce -----------------------------------------------------------------------------

SF_FIELDS = {
    "Name": "string",
    "Amount": "currency",
    "Seats__c": "int",
    "IsWon": "boolean",
    "CloseDate": "date",
    "Seen__c": "datetime",
}
SF_NAMES = dict(
    zip(FAMILIES, ["Name", "Amount", "Seats__c", "IsWon", "CloseDate", "Seen__c"], strict=True)
)


def salesforce_case(server: LoopbackServer, emulator: SalesforceEmulator) -> Case:
    connector = SalesforceConnector(
        type="salesforce", instance_url=server.base_url, session_id="sandbox"
    )  # type: ignore[arg-type]
    spec = SalesforceSourceSpec(connector="crm", object="Deal__c", fields=list(SF_NAMES.values()))
    client = salesforce.connect(connector)

    def make(records: list[dict[str, Any]]) -> Source:
        rows = [{SF_NAMES[k]: _sf(v) for k, v in r.items()} for r in records]
        emulator.seed({"Deal__c": {"fields": SF_FIELDS, "records": rows}})
        return salesforce.SalesforceSource(client, spec, retry=FAST)

    def key_of(relation: Relation, n: int) -> dict[str, Any]:
        name = relation.column("Name") == RECORDS[n]["name"]
        with relation.connect() as conn:
            return {"Id": conn.execute(sa.select(relation.column("Id")).where(name)).scalar_one()}

    def edit(key: dict[str, Any], column: str, value: Any) -> None:
        client.Deal__c.update(key["Id"], {SF_NAMES.get(column, column): value})

    def read(key: dict[str, Any], column: str) -> Any:
        return client.Deal__c.get(key["Id"])[SF_NAMES.get(column, column)]

    def unreachable() -> Source:
        down = SalesforceConnector(
            type="salesforce", instance_url="http://127.0.0.1:1", session_id="x", timeout=2
        )  # type: ignore[arg-type]
        return salesforce.SalesforceSource(salesforce.connect(down), spec, retry=FAST)

    return Case("salesforce", make, key_of, edit, read, unreachable)


def _sf(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


# --- gsheets --------------------------------------------------------------------------------


def gsheets_case(server: LoopbackServer, emulator: SheetsEmulator) -> Case:
    connector = GSheetsConnector(type="gsheets", base_url=server.base_url)
    spec = GSheetsSourceSpec(connector="sheets", spreadsheet="deals", worksheet="Deals")
    client = gsheets.connect(connector)
    header = list(FAMILIES)
    made: dict[str, str] = {}

    def make(records: list[dict[str, Any]]) -> Source:
        grid = [header] + [[_cell(r[c]) for c in header] for r in records]
        keys = emulator.seed({"deals": {"key": "deals", "sheets": {"Deals": grid}}})
        made.update(keys)
        return gsheets.GSheetsSource(client, spec, retry=FAST)

    def edit(key: dict[str, Any], column: str, value: Any) -> None:
        client.open_by_key("deals").worksheet("Deals").update_cell(
            key["_row"], header.index(column) + 1, value
        )

    def read(key: dict[str, Any], column: str) -> Any:
        cell = (
            client.open_by_key("deals")
            .worksheet("Deals")
            .cell(key["_row"], header.index(column) + 1, value_render_option="UNFORMATTED_VALUE")
        )
        return cell.value

    def unreachable() -> Source:
        down = gsheets.connect(
            GSheetsConnector(type="gsheets", base_url="http://127.0.0.1:1", timeout=2)
        )
        return gsheets.GSheetsSource(down, spec, retry=FAST)

    return Case("gsheets", make, lambda rel, n: {"_row": n + 2}, edit, read, unreachable)


def _cell(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, date):
        return value.isoformat()
    return value


# --- fixtures -------------------------------------------------------------------------------


@pytest.fixture
def sf_server() -> Iterator[tuple[LoopbackServer, SalesforceEmulator]]:
    emulator = SalesforceEmulator()
    with LoopbackServer(emulator) as server:
        yield server, emulator


@pytest.fixture(scope="module")
def sheets_server() -> Iterator[tuple[LoopbackServer, SheetsEmulator]]:
    emulator = SheetsEmulator()
    with LoopbackServer(emulator) as server:
        yield server, emulator


@pytest.fixture(params=["sql", "salesforce", "gsheets"])
def case(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Case]:
    SLEPT.clear()
    if request.param == "sql":
        yield sql_case(tmp_path)
    elif request.param == "salesforce":
        server, emulator = request.getfixturevalue("sf_server")
        yield salesforce_case(server, emulator)
    else:
        server, sheets = request.getfixturevalue("sheets_server")
        sheets.reset()
        yield gsheets_case(server, sheets)


def rows_of(relation: Relation, names: list[str]) -> list[dict[str, Any]]:
    with relation.connect() as conn:
        query = sa.select(*[relation.column(n) for n in names])
        return [dict(r) for r in conn.execute(query).mappings()]


def column_names(case: Case) -> dict[str, str]:
    return SF_NAMES if case.kind == "salesforce" else {k: k for k in FAMILIES}


# --- the contract ---------------------------------------------------------------------------


def test_values_are_read_with_their_types(case: Case) -> None:
    source = case.make(RECORDS)
    try:
        relation = source.open()
        names = column_names(case)
        assert {k: relation.columns[v].family for k, v in names.items()} == FAMILIES
        rows = sorted(rows_of(relation, list(names.values())), key=lambda r: str(r[names["name"]]))
        got = [{k: r[v] for k, v in names.items()} for r in rows]
        for row in got:
            if row["seen"] is not None:
                row["seen"] = row["seen"].replace(tzinfo=UTC)
        assert got == sorted(RECORDS, key=lambda r: str(r["name"]))
    finally:
        source.close()


def test_records_are_keyed(case: Case) -> None:
    source = case.make(RECORDS)
    try:
        relation = source.open()
        expected = {"sql": ("id",), "salesforce": ("Id",), "gsheets": ("_row",)}[case.kind]
        assert relation.primary_key == expected
        if case.kind == "gsheets":
            assert [r["_row"] for r in rows_of(relation, ["_row"])] == [2, 3, 4]
    finally:
        source.close()


def test_an_empty_source_reads_as_no_rows(case: Case) -> None:
    source = case.make([])
    try:
        relation = source.open()
        with relation.connect() as conn:
            count = conn.execute(
                sa.select(sa.func.count()).select_from(relation.selectable)
            ).scalar()
        assert count == 0
    finally:
        source.close()


def test_an_unreachable_source_is_a_transient_error(case: Case) -> None:
    source = case.unreachable()
    with pytest.raises(SourceError) as raised:
        source.open()
    assert raised.value.transient is True
    assert "sandbox" not in str(raised.value) and "x@" not in str(raised.value)


def test_compare_and_set_writes_when_the_value_is_unchanged(case: Case) -> None:
    source = case.make(RECORDS)
    try:
        relation = source.open()
        key = case.key_of(relation, 0)
        column = column_names(case)["amount"]
        result = source.write(key, column, 1200.5, 120.05)
        assert (result.status, result.before, result.after) == ("written", 1200.5, 120.05)
        assert case.read(key, "amount") == 120.05
    finally:
        source.close()


def test_compare_and_set_never_overwrites_a_concurrent_edit(case: Case) -> None:
    source = case.make(RECORDS)
    try:
        relation = source.open()
        key = case.key_of(relation, 0)
        case.edit(key, "amount", 999.0)  # someone fixed it by hand meanwhile
        result = source.write(key, column_names(case)["amount"], 1200.5, 120.05)
        assert (result.status, result.after) == ("conflict", 999.0)
        assert case.read(key, "amount") == 999.0
    finally:
        source.close()


# --- what each service adds -----------------------------------------------------------------


def opportunity_source(server: LoopbackServer, fields: list[str]) -> salesforce.SalesforceSource:
    connector = SalesforceConnector(
        type="salesforce", instance_url=server.base_url, session_id="sandbox"
    )  # type: ignore[arg-type]
    spec = SalesforceSourceSpec(connector="crm", object="Opportunity", fields=fields)
    return salesforce.SalesforceSource(salesforce.connect(connector), spec, retry=FAST)


OPPORTUNITY = {
    "Name": "string",
    "Amount": "currency",
    "StageName": "picklist",
    "OwnerId": "reference",
}
LONG_AGO = "2026-11-20T08:00:00+00:00"


def test_salesforce_reads_every_page_beyond_2000_records(sf_server: Any) -> None:
    server, emulator = sf_server
    deals = [{"Name": f"deal {i}", "Amount": i, "LastModifiedDate": LONG_AGO} for i in range(4_500)]
    emulator.seed({"Opportunity": {"fields": OPPORTUNITY, "records": deals}})
    source = opportunity_source(server, ["Name", "Amount"])
    try:
        relation = source.open()
        with relation.connect() as conn:
            total = conn.execute(
                sa.select(sa.func.count(), sa.func.sum(relation.column("Amount"))).select_from(
                    relation.selectable
                )
            ).one()
        assert tuple(total) == (4_500, sum(range(4_500)))
    finally:
        source.close()


def test_salesforce_write_loses_to_any_change_since_the_read(sf_server: Any) -> None:
    server, emulator = sf_server
    emulator.seed(
        {
            "Opportunity": {
                "fields": OPPORTUNITY,
                "records": [
                    {
                        "Name": "Acme",
                        "Amount": 10_000_000,
                        "StageName": "Proposal",
                        "LastModifiedDate": LONG_AGO,
                    }
                ],
            }
        }
    )
    source = opportunity_source(server, ["Name", "Amount"])
    try:
        relation = source.open()
        with relation.connect() as conn:
            record_id = conn.execute(sa.select(relation.column("Id"))).scalar_one()
        # The owner moves the stage after we read: Amount is unchanged, the record is not.
        source._sf.Opportunity.update(record_id, {"StageName": "Negotiation/Review"})
        result = source.write({"Id": record_id}, "Amount", 10_000_000, 1_000_000)
        assert result.status == "conflict"
        assert result.detail == "the record changed after it was read (412)"
        assert source._sf.Opportunity.get(record_id)["Amount"] == 10_000_000
    finally:
        source.close()


def test_salesforce_write_records_field_history(sf_server: Any) -> None:
    server, emulator = sf_server
    emulator.seed(
        {
            "Opportunity": {
                "fields": OPPORTUNITY,
                "records": [{"Name": "Acme", "Amount": 10_000_000, "LastModifiedDate": LONG_AGO}],
            }
        }
    )
    source = opportunity_source(server, ["Name", "Amount"])
    try:
        relation = source.open()
        with relation.connect() as conn:
            record_id = conn.execute(sa.select(relation.column("Id"))).scalar_one()
        assert source.write({"Id": record_id}, "Amount", 10_000_000, 1_000_000).status == "written"
        [change] = source.field_history(record_id, "Amount")
        assert (change["old"], change["new"]) == (10_000_000, 1_000_000)
    finally:
        source.close()


def test_salesforce_owner_emails(sf_server: Any) -> None:
    server, emulator = sf_server
    emulator.seed(
        {
            "User": {
                "fields": {"Email": "email"},
                "records": [
                    {"Id": "005Dn000001AbCdIAK", "Email": "dana@acme.com"},
                    {"Id": "005Dn000001AbCeIAK", "Email": "li@acme.com"},
                ],
            }
        }
    )
    source = opportunity_source(server, ["Name"])
    assert source.owner_emails(
        ["005Dn000001AbCdIAK", "005Dn000001AbCeIAK", "005Dn000001AbCdIAK"]
    ) == {
        "005Dn000001AbCdIAK": "dana@acme.com",
        "005Dn000001AbCeIAK": "li@acme.com",
    }


def test_salesforce_request_limit_is_retried_with_backoff(sf_server: Any) -> None:
    server, emulator = sf_server
    emulator.seed(
        {"Opportunity": {"fields": OPPORTUNITY, "records": [{"Name": "Acme", "Amount": 1}]}}
    )
    emulator.fail_next(403, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.", times=2)
    SLEPT.clear()
    source = opportunity_source(server, ["Name", "Amount"])
    try:
        relation = source.open()
        assert len(relation.columns) == 3
        assert SLEPT == [1.0, 2.0]
    finally:
        source.close()


def test_salesforce_expired_session_is_permanent_and_says_so(sf_server: Any) -> None:
    server, emulator = sf_server
    emulator.seed({"Opportunity": {"fields": OPPORTUNITY, "records": []}})
    emulator.expire_session()
    SLEPT.clear()
    with pytest.raises(SourceError) as raised:
        opportunity_source(server, ["Name"]).open()
    assert str(raised.value) == "Salesforce session expired or invalid (INVALID_SESSION_ID)"
    assert raised.value.transient is False
    assert SLEPT == []


def test_salesforce_unknown_field_is_named(sf_server: Any) -> None:
    server, emulator = sf_server
    emulator.seed({"Opportunity": {"fields": OPPORTUNITY, "records": []}})
    with pytest.raises(SourceError, match=r"^Opportunity has no field\(s\) Seats__c$"):
        opportunity_source(server, ["Name", "Seats__c"]).open()


def test_salesforce_credentials_stay_out_of_reprs() -> None:
    connector = SalesforceConnector(
        type="salesforce", username="ops@acme.com", password="hunter2", security_token="tok3n"
    )  # type: ignore[arg-type]
    assert "hunter2" not in repr(connector) and "tok3n" not in repr(connector)


def sheet_source(server: LoopbackServer, key: str, worksheet: str) -> gsheets.GSheetsSource:
    connector = GSheetsConnector(type="gsheets", base_url=server.base_url)
    spec = GSheetsSourceSpec(connector="s", spreadsheet=key, worksheet=worksheet)
    return gsheets.GSheetsSource(gsheets.connect(connector), spec, retry=FAST)


def test_sheets_rate_limit_waits_as_long_as_google_asks(sheets_server: Any) -> None:
    server, emulator = sheets_server
    emulator.reset()
    emulator.seed({"f": {"key": "f", "sheets": {"US": [["region", "units"], ["CA", 10]]}}})
    emulator.fail_next(429, "Quota exceeded for quota metric 'Read requests'", retry_after=7)
    SLEPT.clear()
    source = sheet_source(server, "https://docs.google.com/spreadsheets/d/f/edit#gid=0", "US")
    try:
        relation = source.open()
        assert rows_of(relation, ["region", "units"]) == [{"region": "CA", "units": 10}]
        assert SLEPT == [7.0]
    finally:
        source.close()


def test_sheets_unknown_spreadsheet_and_worksheet(sheets_server: Any) -> None:
    server, emulator = sheets_server
    emulator.reset()
    emulator.seed({"f": {"key": "f", "sheets": {"US": [["region"]]}}})
    with pytest.raises(SourceError, match="spreadsheet not found") as raised:
        sheet_source(server, "nope", "US").open()
    assert raised.value.transient is False
    with pytest.raises(SourceError, match="worksheet not found: EU"):
        sheet_source(server, "f", "EU").open()


def test_a_sheet_pasted_over_keeps_only_its_header(sheets_server: Any) -> None:
    server, emulator = sheets_server
    emulator.reset()
    emulator.seed({"f": {"key": "f", "sheets": {"US": [["region", "units"]]}}})
    source = sheet_source(server, "f", "US")
    try:
        relation = source.open()
        assert list(relation.columns) == ["_row", "region", "units"]
        assert rows_of(relation, ["_row"]) == []
    finally:
        source.close()


# --- one bad value never stops a read ---------------------------------------------------------

ACME = "006000000000001AAA"


def bad(number: int, **values: Any) -> dict[str, Any]:
    """A record as something between Salesforce and us might garble it."""
    return {"Id": f"0060000000001{number:02d}AAA", "LastModifiedDate": LONG_AGO, **values}


def test_salesforce_values_not_of_their_field_type_are_null_and_reported(sf_server: Any) -> None:
    server, emulator = sf_server
    fields = {**OPPORTUNITY, "Seats__c": "int", "CloseDate": "date", "IsWon": "boolean"}
    acme = {"Id": ACME, "Name": "Acme", "Amount": 1200.5, "Seats__c": 3, "IsWon": True}
    emulator.seed({"Opportunity": {"fields": fields, "records": [acme]}})
    emulator.serve_raw(
        "Opportunity",
        [
            bad(1, Name="text", Amount="abc"),
            bad(2, Name="empty", Amount=""),
            bad(3, Name="thousands", Amount="1,000"),
            bad(4, Name="object", Amount={"x": 1}),
            bad(5, Name="list", Amount=[1]),
            bad(6, Name="plain text", Amount="12.5", Seats__c="7", CloseDate="2026-12-01"),
            bad(7, Name={"first": "A"}, Seats__c=2.5, CloseDate="soon", IsWon="yes"),
            bad(8, Name="huge", Amount=10**400, Seats__c=10**30),
        ],
    )
    source = opportunity_source(server, ["Name", "Amount", "Seats__c", "CloseDate", "IsWon"])
    try:
        relation = source.open()
        assert rows_of(relation, ["Id", "Amount", "Seats__c", "CloseDate"]) == [
            {"Id": ACME, "Amount": 1200.5, "Seats__c": 3, "CloseDate": None},
            *[
                {"Id": bad(n)["Id"], "Amount": None, "Seats__c": None, "CloseDate": None}
                for n in range(1, 6)
            ],
            {"Id": bad(6)["Id"], "Amount": 12.5, "Seats__c": 7, "CloseDate": date(2026, 12, 1)},
            {"Id": bad(7)["Id"], "Amount": None, "Seats__c": None, "CloseDate": None},
            {"Id": bad(8)["Id"], "Amount": None, "Seats__c": None, "CloseDate": None},
        ]
        assert [(r.key["Id"][12:15], r.column, r.reason) for r in relation.rejected] == [
            ("101", "Amount", "Amount holds 'abc', not a number"),
            ("102", "Amount", "Amount holds '', not a number"),
            ("103", "Amount", "Amount holds '1,000', not a number"),
            ("104", "Amount", 'Amount holds {"x": 1}, not a number'),
            ("105", "Amount", "Amount holds [1], not a number"),
            ("107", "Name", 'Name holds {"first": "A"}, not a single value'),
            ("107", "Seats__c", "Seats__c holds 2.5, not a whole number"),
            ("107", "CloseDate", "CloseDate holds 'soon', not a date"),
            ("107", "IsWon", "IsWon holds 'yes', not true or false"),
            ("108", "Amount", "Amount holds 1" + "0" * 58 + "…, not a finite number"),
            ("108", "Seats__c", f"Seats__c holds {10**30}, not a whole number"),
        ]
    finally:
        source.close()


def test_salesforce_a_repeated_id_is_read_once_and_reported(sf_server: Any) -> None:
    server, emulator = sf_server
    acme = {"Id": ACME, "Name": "Acme", "Amount": 1200.5, "LastModifiedDate": LONG_AGO}
    emulator.seed({"Opportunity": {"fields": OPPORTUNITY, "records": [acme]}})
    again = {**acme, "Amount": 99.0, "LastModifiedDate": "2026-11-30T08:00:00.000+0000"}
    emulator.serve_raw("Opportunity", [again, again, {"Name": "no id"}])
    source = opportunity_source(server, ["Name", "Amount"])
    try:
        relation = source.open()
        assert rows_of(relation, ["Id", "Amount"]) == [{"Id": ACME, "Amount": 1200.5}]
        assert [(r.key, r.column, r.value, r.reason) for r in relation.rejected] == [
            ({"Id": None}, "Id", None, "no Id: the record is left out"),
            (
                {"Id": ACME},
                "Id",
                ACME,
                "came 3 times among the records read (only the first is checked)",
            ),
        ]
        # A write back is still guarded by the record that was checked, not a later copy.
        assert source._modified[ACME] == datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
    finally:
        source.close()


@pytest.mark.parametrize(
    ("header", "slept"),
    [
        ("nan", 1.0),  # not a number: the policy's own backoff
        ("inf", 1.0),
        ("-5", 1.0),
        ("soon", 1.0),
        ("²", 1.0),  # a digit to str.isdigit(), not to float()
        ("86400000", 20.0),  # capped at the policy's longest wait
    ],
)
def test_sheets_a_retry_after_that_is_no_wait_falls_back_to_the_backoff(
    sheets_server: Any, header: str, slept: float
) -> None:
    server, emulator = sheets_server
    emulator.reset()
    emulator.seed({"f": {"key": "f", "sheets": {"US": [["region", "units"], ["CA", 10]]}}})
    emulator.fail_next(429, "Quota exceeded for quota metric 'Read requests'", retry_after=header)
    SLEPT.clear()
    source = sheet_source(server, "f", "US")
    try:
        relation = source.open()
        assert rows_of(relation, ["region", "units"]) == [{"region": "CA", "units": 10}]
        [waited] = SLEPT
        assert waited == slept
    finally:
        source.close()


def test_sheets_a_retry_after_date_is_waited_until(sheets_server: Any) -> None:
    server, emulator = sheets_server
    emulator.reset()
    emulator.seed({"f": {"key": "f", "sheets": {"US": [["region"], ["CA"]]}}})
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=12), usegmt=True)
    emulator.fail_next(503, "The service is currently unavailable.", retry_after=later)
    SLEPT.clear()
    source = sheet_source(server, "f", "US")
    try:
        source.open()
        [slept] = SLEPT
        assert 9.0 <= slept <= 12.0
    finally:
        source.close()


def test_a_sheets_request_that_cannot_be_made_is_a_source_error() -> None:
    import requests

    from dq_agent.sources.gsheets import translate

    error = translate(requests.TooManyRedirects("Exceeded 30 redirects."))
    assert (str(error), error.transient) == (
        "Google Sheets request failed: TooManyRedirects",
        False,
    )


def test_a_query_naming_a_missing_sqlite_table_is_not_retried(tmp_path: Path) -> None:
    """SQLite raises OperationalError for a query's own mistakes as for a lost connection."""
    from dq_agent.sources.sql import translate

    engine = sa.create_engine(f"sqlite:///{tmp_path / 'w.db'}")
    try:
        with pytest.raises(sa.exc.OperationalError) as raised, engine.connect() as conn:
            conn.exec_driver_sql("SELECT * FROM ordrz")
    finally:
        engine.dispose()
    error = translate(raised.value, engine.url)
    assert (str(error), error.transient) == (
        f"query failed on sqlite:///{tmp_path / 'w.db'}: no such table: ordrz",
        False,
    )


def test_planner_settings_hold_for_the_query_and_a_branch_gets_its_own_back(
    postgres_url: str,
) -> None:
    engine = sa.create_engine(postgres_url)
    table = sa.table("t", sa.column("x"))
    setting = sa.select(sa.func.current_setting("work_mem"))

    def relation(bound: sa.Connection | None) -> Relation:
        return Relation(engine, table, {}, (), "t", postgres_url, bound=bound)

    try:
        plain = relation(None)
        with plain.connect() as conn, planner_settings(plain, conn, work_mem="64MB"):
            assert conn.execute(setting).scalar_one() == "64MB"
        # A branch's transaction goes on after the check's query, with what it had set.
        with engine.begin() as branch:
            branch.execute(sa.select(sa.func.set_config("work_mem", "5MB", True)))
            lent = relation(branch)
            with lent.connect() as conn, planner_settings(lent, conn, work_mem="64MB"):
                assert conn.execute(setting).scalar_one() == "64MB"
            assert branch.execute(setting).scalar_one() == "5MB"
    finally:
        engine.dispose()


def test_a_driver_that_is_not_installed_names_the_extra_that_brings_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def missing(*_args: Any, **_kwargs: Any) -> sa.Engine:
        raise ModuleNotFoundError("No module named 'psycopg'")

    monkeypatch.setattr(sa, "create_engine", missing)
    connector = SqlConnector(type="sql", url="postgresql+psycopg://dq:s3cret@db/analytics")
    with pytest.raises(SourceError) as raised:
        create_engine(connector, tmp_path)
    assert str(raised.value) == (
        "cannot use database URL postgresql+psycopg://dq:***@db/analytics: "
        "No module named 'psycopg': pip install 'dq-agent[postgres]'"
    )
    assert not raised.value.transient


def test_a_long_running_process_keeps_a_database_engine_until_its_profile_changes(
    postgres_url: str, tmp_path: Path
) -> None:
    from dq_agent.sources.registry import Connections, Engines

    engines = Engines()
    profile = SqlConnector(type="sql", url=postgres_url)
    spec = SqlSourceSpec(connector="w", query="SELECT 1 AS one")
    try:
        first = Connections(tmp_path, {"w": profile}, engines=engines)
        kept = first.sql_engine("w")
        assert first.source(spec).open().columns.keys() == {"one"}
        first.dispose()  # the run ends: the engine stays open for the next
        second = Connections(tmp_path, {"w": profile}, engines=engines)
        assert second.sql_engine("w") is kept
        assert kept.pool.checkedin() == 1  # the first run's connection, ready for reuse
        changed = SqlConnector(type="sql", url=postgres_url, connect_timeout=5)
        third = Connections(tmp_path, {"w": changed}, engines=engines)
        assert third.sql_engine("w") is not kept
        assert kept.pool.checkedin() == 0  # the old profile's connections are closed
        # A file database is opened by each run: it may be replaced between runs.
        sqlite = SqlConnector(type="sql", url=f"sqlite:///{tmp_path / 'w.db'}")
        assert engines.get("f", sqlite, tmp_path) is None
    finally:
        engines.dispose()
