"""The Sheets emulator answers each call the product or a user's gspread client makes as Google
does: the same HTTP status and the same body keys, two levels deep.

The expected table is written from Google's own answers: the HTTP exchanges recorded in
gspread's test cassettes (burnash/gspread, tests/cassettes/) and the Sheets API v4 reference
(developers.google.com/sheets/api/reference/rest/v4). Each entry names the one it follows.
A body's shape is its keys, each mapped to the keys of its value when that is an object (or a
list of objects: its first element), or to None.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import suppress
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

import gspread
import pytest
import requests
from gspread.exceptions import APIError, SpreadsheetNotFound
from gspread.utils import DateTimeOption, ValueRenderOption

from dq_agent_sandbox.gsheets import SheetsEmulator
from dq_agent_sandbox.http import LoopbackServer
from tests.sheets_client import open_sheets_client

Shape = dict[str, set[str] | None]

UPDATE_VALUES = {"spreadsheetId", "updatedRange", "updatedRows", "updatedColumns", "updatedCells"}
VALUE_RANGE = {"range", "majorDimension", "values"}
EMPTY_VALUE_RANGE: Shape = {"range": None, "majorDimension": None}
ERROR = {"code", "message", "status"}
BOOK_KEY = "1ConformanceBookAAAAAAAAAAAAAAAAAAAAAAAAAAAA"


@dataclass(frozen=True)
class Call:
    """One request as a gspread client makes it; its answer is the last response it gets."""

    name: str
    make: Callable[[gspread.Client, gspread.Spreadsheet, gspread.Worksheet], object]
    method: str
    path_end: str  # how the percent-decoded request path ends
    status: int
    shape: Shape
    fault: int | None = None  # an error the emulator is told to answer with first


CALLS = [
    # ClientTest.test_open_by_key_has_metadata.json
    Call(
        "open_by_key reads the metadata",
        lambda client, book, sheet: client.open_by_key(book.id),
        "GET",
        f"/v4/spreadsheets/{BOOK_KEY}",
        200,
        {
            "spreadsheetId": None,
            "properties": {
                "title",
                "locale",
                "autoRecalc",
                "timeZone",
                "defaultFormat",
                "spreadsheetTheme",
            },
            "sheets": {"properties"},
            "spreadsheetUrl": None,
        },
    ),
    # SpreadsheetTest.test_values_get.json
    Call(
        "values.get",
        lambda client, book, sheet: book.values_get("Sheet1!A1:B2"),
        "GET",
        "/values/Sheet1!A1:B2",
        200,
        {"range": None, "majorDimension": None, "values": None},
    ),
    # WorksheetTest.test_get_all_values.json: the whole sheet, as the connector reads it
    Call(
        "values.get of a whole sheet",
        lambda client, book, sheet: sheet.get_all_values(
            value_render_option=ValueRenderOption.unformatted,
            date_time_render_option=DateTimeOption.formatted_string,
        ),
        "GET",
        "/values/'Sheet1'",
        200,
        {"range": None, "majorDimension": None, "values": None},
    ),
    # WorksheetTest.test_range.json: A1:A5 of a cleared sheet answers 200 without `values`
    Call(
        "values.get of an empty range",
        lambda client, book, sheet: book.values_get("Sheet1!D10:E12"),
        "GET",
        "/values/Sheet1!D10:E12",
        200,
        EMPTY_VALUE_RANGE,
    ),
    # Reference, ValueRange: empty trailing rows and columns are omitted (so all of them)
    Call(
        "values.get of an empty sheet",
        lambda client, book, sheet: book.values_get("Empty"),
        "GET",
        "/values/Empty",
        200,
        EMPTY_VALUE_RANGE,
    ),
    # SpreadsheetTest.test_values_batch_get.json, WorksheetTest.test_batch_get.json
    Call(
        "values:batchGet",
        lambda client, book, sheet: book.values_batch_get(["Sheet1!A1:B2", "Sheet1!C3"]),
        "GET",
        "/values:batchGet",
        200,
        {"spreadsheetId": None, "valueRanges": VALUE_RANGE},
    ),
    # Reference, spreadsheets.values/batchGet: one ValueRange per range, in order (an empty
    # one as WorksheetTest.test_range.json answers it)
    Call(
        "values:batchGet starting with an empty range",
        lambda client, book, sheet: book.values_batch_get(["Empty!A1:B2", "Sheet1!A1"]),
        "GET",
        "/values:batchGet",
        200,
        {"spreadsheetId": None, "valueRanges": {"range", "majorDimension"}},
    ),
    # WorksheetTest.test_get_all_values.json (the PUT of 'Sheet1'!A1:D4)
    Call(
        "values.update (update_cell)",
        lambda client, book, sheet: sheet.update_cell(2, 2, "x"),
        "PUT",
        "/values/'Sheet1'!B2",
        200,
        dict.fromkeys(UPDATE_VALUES),
    ),
    # Reference, UpdateValuesResponse: updatedData when includeValuesInResponse is set
    Call(
        "values.update echoing what it wrote",
        lambda client, book, sheet: sheet.update([["x"]], "B2", include_values_in_response=True),
        "PUT",
        "/values/'Sheet1'!B2",
        200,
        {**dict.fromkeys(UPDATE_VALUES), "updatedData": VALUE_RANGE},
    ),
    # WorksheetTest.test_batch_update.json
    Call(
        "values:batchUpdate",
        lambda client, book, sheet: sheet.batch_update(
            [{"range": "A1:B1", "values": [["a", "b"]]}, {"range": "A4", "values": [["c"]]}]
        ),
        "POST",
        "/values:batchUpdate",
        200,
        {
            "spreadsheetId": None,
            "totalUpdatedRows": None,
            "totalUpdatedColumns": None,
            "totalUpdatedCells": None,
            "totalUpdatedSheets": None,
            "responses": UPDATE_VALUES,
        },
    ),
    # Reference, AppendValuesResponse: the table appended to and the update
    Call(
        "values:append after a table",
        lambda client, book, sheet: sheet.append_row(["d", 4]),
        "POST",
        "/values/'Sheet1':append",
        200,
        {"spreadsheetId": None, "tableRange": None, "updates": UPDATE_VALUES},
    ),
    # WorksheetTest.test_append_row.json: appended to a cleared sheet, no tableRange
    Call(
        "values:append to an empty sheet",
        lambda client, book, sheet: book.values_append(
            "Empty", {"valueInputOption": "RAW"}, {"values": [["a"]]}
        ),
        "POST",
        "/values/Empty:append",
        200,
        {"spreadsheetId": None, "updates": UPDATE_VALUES},
    ),
    # WorksheetTest.test_range.json (POST …/values/'Sheet1':clear)
    Call(
        "values:clear",
        lambda client, book, sheet: sheet.clear(),
        "POST",
        "/values/'Sheet1':clear",
        200,
        {"spreadsheetId": None, "clearedRange": None},
    ),
    # WorksheetTest.test_batch_clear.json; reference, BatchClearValuesResponse
    Call(
        "values:batchClear",
        lambda client, book, sheet: sheet.batch_clear(["A1:B2", "C3"]),
        "POST",
        "/values:batchClear",
        200,
        {"spreadsheetId": None, "clearedRanges": None},
    ),
    # SpreadsheetTest.test_values_get.json (its first request)
    Call(
        "spreadsheets:batchUpdate addSheet",
        lambda client, book, sheet: book.add_worksheet("Added", rows=10, cols=10),
        "POST",
        f"/v4/spreadsheets/{BOOK_KEY}:batchUpdate",
        200,
        {"spreadsheetId": None, "replies": {"addSheet"}},
    ),
    # SpreadsheetTest.test_values_get.json (its last request): an empty reply
    Call(
        "spreadsheets:batchUpdate deleteSheet",
        lambda client, book, sheet: book.del_worksheet(book.worksheet("Empty")),
        "POST",
        f"/v4/spreadsheets/{BOOK_KEY}:batchUpdate",
        200,
        {"spreadsheetId": None, "replies": set()},
    ),
    # WorksheetTest.test_get_all_values.json (its first request, a resize)
    Call(
        "spreadsheets:batchUpdate updateSheetProperties",
        lambda client, book, sheet: sheet.resize(rows=4, cols=4),
        "POST",
        f"/v4/spreadsheets/{BOOK_KEY}:batchUpdate",
        200,
        {"spreadsheetId": None, "replies": set()},
    ),
    # ClientTest.test_access_non_existing_spreadsheet.json
    Call(
        "404 spreadsheet not found",
        lambda client, book, sheet: client.open_by_key("1NoSuchSpreadsheet"),
        "GET",
        "/v4/spreadsheets/1NoSuchSpreadsheet",
        404,
        {"error": ERROR},
    ),
    # Google's body as gspread users quote it: robin900/gspread-formatting#49 ("Unable to
    # parse range: …", INVALID_ARGUMENT, no details)
    Call(
        "400 unparsable range",
        lambda client, book, sheet: book.values_get("Nope!A1"),
        "GET",
        "/values/Nope!A1",
        400,
        {"error": ERROR},
    ),
    # burnash/gspread#554: a read starting past the grid ("Range (…) exceeds grid limits")
    Call(
        "400 exceeds grid limits",
        lambda client, book, sheet: book.values_get("Sheet1!A1001"),
        "GET",
        "/values/Sheet1!A1001",
        400,
        {"error": ERROR},
    ),
    # Sage-Bionetworks/data_curator#110: a 429 carries a google.rpc.ErrorInfo in details
    Call(
        "429 quota exceeded",
        lambda client, book, sheet: book.values_get("Sheet1!A1"),
        "GET",
        "/values/Sheet1!A1",
        429,
        {"error": {*ERROR, "details"}},
        fault=429,
    ),
]


def shape(body: dict[str, Any]) -> Shape:
    return {key: _keys(value) for key, value in body.items()}


def _keys(value: Any) -> set[str] | None:
    first = value[0] if isinstance(value, list) and value else value
    return set(first) if isinstance(first, dict) else None


@pytest.fixture(scope="module")
def server() -> Iterator[LoopbackServer]:
    with LoopbackServer(SheetsEmulator()) as server:
        yield server


@pytest.fixture
def emulator(server: LoopbackServer) -> SheetsEmulator:
    emulator = server.emulator
    assert isinstance(emulator, SheetsEmulator)
    emulator.reset()
    return emulator


@pytest.fixture
def answers(server: LoopbackServer) -> Iterator[tuple[gspread.Client, list[requests.Response]]]:
    with open_sheets_client(server.base_url) as client:
        seen: list[requests.Response] = []
        client.http_client.session.hooks["response"].append(
            lambda response, *args, **kwargs: seen.append(response)
        )
        yield client, seen


@pytest.mark.parametrize("call", CALLS, ids=[c.name for c in CALLS])
def test_the_emulator_answers_in_googles_shape(
    call: Call,
    emulator: SheetsEmulator,
    answers: tuple[gspread.Client, list[requests.Response]],
) -> None:
    sheets = {"Sheet1": [["a", 1], ["b", 2], ["c", 3]], "Empty": []}
    emulator.seed({"Book": {"key": BOOK_KEY, "sheets": sheets}})
    client, seen = answers
    book = client.open_by_key(BOOK_KEY)
    sheet = book.sheet1
    if call.fault is not None:
        emulator.fail_next(call.fault, "Quota exceeded for quota metric 'Read requests'")
    seen.clear()

    with suppress(APIError, SpreadsheetNotFound):  # an error is the answer under test
        call.make(client, book, sheet)

    answer = seen[-1]
    path = unquote(answer.request.path_url.partition("?")[0])
    assert answer.request.method == call.method and path.endswith(call.path_end), path
    assert (answer.status_code, shape(answer.json())) == (call.status, call.shape)
