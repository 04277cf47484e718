"""The Sheets emulator, driven by the real gspread client over HTTP."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import gspread
import gspread.http_client
import pytest
import requests
from gspread.exceptions import APIError, SpreadsheetNotFound, WorksheetNotFound
from gspread.utils import InsertDataOption, ValueInputOption, ValueRenderOption

from dq_agent_sandbox.gsheets import SheetsEmulator
from dq_agent_sandbox.http import LoopbackServer
from tests.sheets_client import open_sheets_client

FORECAST_ROWS: list[list[Any]] = [
    ["region", "state", "units", "amount", "approved"],
    ["US", "CA", 120, 1520.5, True],
    ["US", "NY", 80, 990, False],
    ["US", "TX", None, "1,200", None],  # the amount was pasted as text
]
NOTES_TITLE = "Notes 'Q4'"
UNFORMATTED = ValueRenderOption.unformatted
LOG_KEY = "1LogSheetKeyAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
QUOTA_MESSAGE = (
    "Quota exceeded for quota metric 'Read requests' and limit 'Read requests per minute per "
    "user' of service 'sheets.googleapis.com' for consumer 'project_number:0'."
)


@pytest.fixture(scope="module")
def server() -> Iterator[LoopbackServer]:
    # One server for the module: stopping one waits out its 0.5 s poll interval.
    with LoopbackServer(SheetsEmulator()) as server:
        yield server


@pytest.fixture
def emulator(server: LoopbackServer) -> SheetsEmulator:
    emulator = server.emulator
    assert isinstance(emulator, SheetsEmulator)
    emulator.reset()
    return emulator


@pytest.fixture
def keys(emulator: SheetsEmulator) -> dict[str, str]:
    return emulator.seed(
        {
            "Forecast": {
                "title": "US forecast (Dec)",
                "sheets": {"Sheet1": FORECAST_ROWS, NOTES_TITLE: [["owner", "pete@example.com"]]},
            },
            "Log": {"key": LOG_KEY, "sheets": {"Sheet1": [["h"], ["1"], [], ["footer"]]}},
        }
    )


@pytest.fixture
def client(server: LoopbackServer, keys: dict[str, str]) -> Iterator[gspread.Client]:
    with open_sheets_client(server.base_url) as client:
        yield client


@pytest.fixture
def book(client: gspread.Client, keys: dict[str, str]) -> gspread.Spreadsheet:
    return client.open_by_key(keys["Forecast"])


@pytest.fixture
def sheet(book: gspread.Spreadsheet) -> gspread.Worksheet:
    return book.sheet1


def sheet_state(emulator: SheetsEmulator, key: str, title: str = "Sheet1") -> Any:
    return emulator.state()["spreadsheets"][key]["sheets"][title]


def api_error(exc: pytest.ExceptionInfo[APIError]) -> dict[str, Any]:
    return dict(exc.value.error)


# --------------------------------------------------------------------------- seeding and metadata


def test_seed_returns_google_shaped_ids_that_are_stable_across_runs(
    keys: dict[str, str],
) -> None:
    again = SheetsEmulator().seed({"Forecast": {"sheets": {"Sheet1": []}}})

    assert keys["Log"] == LOG_KEY
    assert keys["Forecast"] == again["Forecast"] == "1dSBd6LNC9Qb90iloSlF9shC3UXM31zTxG_t6xti1LKs"
    assert len(keys["Forecast"]) == 44


def test_seed_rejects_unknown_fields_and_cells_naming_where() -> None:
    emulator = SheetsEmulator()

    with pytest.raises(ValueError) as unknown:
        emulator.seed({"Forecast": {"tabs": {}}})
    with pytest.raises(ValueError) as bad_cell:
        emulator.seed({"Forecast": {"sheets": {"Sheet1": [["a", {"b": 1}]]}}})

    assert str(unknown.value) == (
        "spreadsheets['Forecast']: unknown field(s) ['tabs']; valid: ['key', 'sheets', 'title']"
    )
    assert str(bad_cell.value) == (
        "spreadsheets['Forecast'].sheets['Sheet1'][0][1]: "
        "a cell must be str, int, float, bool or None, not {'b': 1}"
    )


def test_open_by_key_reads_the_spreadsheet_and_its_worksheets(
    book: gspread.Spreadsheet, keys: dict[str, str]
) -> None:
    sheets = [(w.title, w.id, w.index, w.row_count, w.col_count) for w in book.worksheets()]

    assert (book.id, book.title, book.locale, book.timezone) == (
        keys["Forecast"],
        "US forecast (Dec)",
        "en_US",
        "Etc/GMT",
    )
    assert sheets == [("Sheet1", 0, 0, 1000, 26), (NOTES_TITLE, 1874373444, 1, 1000, 26)]


def test_spreadsheet_resource_has_googles_shape(
    book: gspread.Spreadsheet, keys: dict[str, str]
) -> None:
    key = keys["Forecast"]

    metadata = dict(book.fetch_sheet_metadata())
    properties = metadata.pop("properties")

    assert {k: properties[k] for k in ("title", "locale", "autoRecalc", "timeZone")} == {
        "title": "US forecast (Dec)",
        "locale": "en_US",
        "autoRecalc": "ON_CHANGE",
        "timeZone": "Etc/GMT",
    }
    assert properties["defaultFormat"]["textFormat"]["fontFamily"] == "arial,sans,sans-serif"
    assert properties["spreadsheetTheme"]["themeColors"][2] == {
        "colorType": "ACCENT1",
        "color": {"rgbColor": {"red": 0.25882353, "green": 0.52156863, "blue": 0.95686275}},
    }
    assert metadata == {
        "spreadsheetId": key,
        "sheets": [
            {
                "properties": {
                    "sheetId": 0,
                    "title": "Sheet1",
                    "index": 0,
                    "sheetType": "GRID",
                    "gridProperties": {"rowCount": 1000, "columnCount": 26},
                }
            },
            {
                "properties": {
                    "sheetId": 1874373444,
                    "title": NOTES_TITLE,
                    "index": 1,
                    "sheetType": "GRID",
                    "gridProperties": {"rowCount": 1000, "columnCount": 26},
                }
            },
        ],
        "spreadsheetUrl": f"https://docs.google.com/spreadsheets/d/{key}/edit",
    }


def test_worksheet_by_title_and_a_missing_one(book: gspread.Spreadsheet) -> None:
    assert book.worksheet(NOTES_TITLE).get_all_values() == [["owner", "pete@example.com"]]
    with pytest.raises(WorksheetNotFound, match="^Forecasts$"):
        book.worksheet("Forecasts")


def test_an_unknown_spreadsheet_is_not_found(client: gspread.Client) -> None:
    with pytest.raises(SpreadsheetNotFound) as exc:
        client.open_by_key("1NoSuchSheet")

    response = exc.value.args[0]
    assert response.status_code == 404
    assert response.json() == {
        "error": {"code": 404, "message": "Requested entity was not found.", "status": "NOT_FOUND"}
    }


# --------------------------------------------------------------------------- reading


def test_values_come_back_formatted_by_default_and_typed_on_request(
    sheet: gspread.Worksheet,
) -> None:
    assert sheet.get_all_values() == [
        ["region", "state", "units", "amount", "approved"],
        ["US", "CA", "120", "1520.5", "TRUE"],
        ["US", "NY", "80", "990", "FALSE"],
        ["US", "TX", "", "1,200", ""],
    ]
    assert sheet.get_all_values(value_render_option=UNFORMATTED) == [
        ["region", "state", "units", "amount", "approved"],
        ["US", "CA", 120, 1520.5, True],
        ["US", "NY", 80, 990, False],
        ["US", "TX", "", "1,200", ""],
    ]


def test_get_all_records_numericises_formatted_text_but_not_booleans(
    sheet: gspread.Worksheet,
) -> None:
    assert sheet.get_all_records() == [
        {"region": "US", "state": "CA", "units": 120, "amount": 1520.5, "approved": "TRUE"},
        {"region": "US", "state": "NY", "units": 80, "amount": 990, "approved": "FALSE"},
        {"region": "US", "state": "TX", "units": "", "amount": 1200, "approved": ""},
    ]
    typed = sheet.get_all_records(value_render_option=UNFORMATTED)
    assert [row["approved"] for row in typed] == [True, False, ""]


def test_the_wire_response_trims_trailing_empty_cells_and_names_the_whole_grid(
    book: gspread.Spreadsheet,
) -> None:
    assert book.values_get("Sheet1") == {
        "range": "Sheet1!A1:Z1000",
        "majorDimension": "ROWS",
        "values": [
            ["region", "state", "units", "amount", "approved"],
            ["US", "CA", "120", "1520.5", "TRUE"],
            ["US", "NY", "80", "990", "FALSE"],
            ["US", "TX", "", "1,200"],
        ],
    }
    assert book.values_get("Z1000") == {"range": "Sheet1!Z1000", "majorDimension": "ROWS"}


@pytest.mark.parametrize(
    ("range_name", "returned_range", "values"),
    [
        ("A1:B2", "Sheet1!A1:B2", [["region", "state"], ["US", "CA"]]),
        ("B2", "Sheet1!B2", [["CA"]]),
        ("$A$1", "Sheet1!A1", [["region"]]),
        ("A:A", "Sheet1!A1:A1000", [["region"], ["US"], ["US"], ["US"]]),
        ("C2:C", "Sheet1!C2:C1000", [["120"], ["80"]]),
        ("2:2", "Sheet1!A2:Z2", [["US", "CA", "120", "1520.5", "TRUE"]]),
        ("sheet1!E1:E3", "Sheet1!E1:E3", [["approved"], ["TRUE"], ["FALSE"]]),
        ("'Sheet1'!B3:A2", "Sheet1!A2:B3", [["US", "CA"], ["US", "NY"]]),
        ("Sheet1!D3:AZ3", "Sheet1!D3:Z3", [["990", "FALSE"]]),
        ("'Notes ''Q4'''!A1:B", "'Notes ''Q4'''!A1:B1000", [["owner", "pete@example.com"]]),
        (NOTES_TITLE, "'Notes ''Q4'''!A1:Z1000", [["owner", "pete@example.com"]]),
    ],
)
def test_a1_ranges_are_read_as_sheets_reads_them(
    book: gspread.Spreadsheet, range_name: str, returned_range: str, values: list[list[str]]
) -> None:
    assert book.values_get(range_name) == {
        "range": returned_range,
        "majorDimension": "ROWS",
        "values": values,
    }


@pytest.mark.parametrize(
    ("range_name", "message"),
    [
        ("Nope!A1", "Unable to parse range: Nope!A1"),
        ("A1:B2:C3", "Unable to parse range: A1:B2:C3"),
        ("'Sheet1!A1", "Unable to parse range: 'Sheet1!A1"),
        ("Sheet1!1A", "Unable to parse range: Sheet1!1A"),
        ("Sheet1!", "Unable to parse range: Sheet1!"),
        ("!A1", "Unable to parse range: !A1"),
        ("A1001", "Range (Sheet1!A1001) exceeds grid limits. Max rows: 1000, max columns: 26"),
        (
            "Sheet1!AA1:AB2",
            "Range (Sheet1!AA1) exceeds grid limits. Max rows: 1000, max columns: 26",
        ),
    ],
)
def test_bad_ranges_are_invalid_arguments(
    book: gspread.Spreadsheet, range_name: str, message: str
) -> None:
    with pytest.raises(APIError) as exc:
        book.values_get(range_name)

    assert api_error(exc) == {"code": 400, "message": message, "status": "INVALID_ARGUMENT"}


@pytest.fixture
def blank(client: gspread.Client, emulator: SheetsEmulator) -> gspread.Spreadsheet:
    """A spreadsheet with an empty sheet, a sheet of one cell, and a sheet of 2 x 3 cells."""
    key = emulator.seed({"Blank": {"sheets": {"Empty": [], "One": [["x"]]}}})["Blank"]
    book = client.open_by_key(key)
    book.add_worksheet("Tiny", rows=2, cols=3)
    return book


# Google answers 200 for a range that starts inside the grid whatever it holds: the range read
# (clipped to the grid) and no `values` (cassettes WorksheetTest.test_range.json: A1:A5 of a
# cleared sheet; WorksheetTest.test_get_all_values.json: four empty rows of a 4 x 4 grid).
EMPTY_READS = [
    ("Empty", "Empty!A1:Z1000"),  # an empty sheet still names its whole grid
    ("'Empty'", "Empty!A1:Z1000"),
    ("Empty!B2:C3", "Empty!B2:C3"),
    ("One!C5:D9", "One!C5:D9"),  # inside the grid, past the data
    ("One!B1", "One!B1"),
    ("Tiny", "Tiny!A1:C2"),
    ("Tiny!A1:Z100", "Tiny!A1:C2"),  # a grid smaller than the range: clipped to it
    ("Tiny!C:E", "Tiny!C1:C2"),
    ("Tiny!2:9", "Tiny!A2:C2"),
]


@pytest.mark.parametrize(("range_name", "returned_range"), EMPTY_READS)
@pytest.mark.parametrize("major", ["ROWS", "COLUMNS"])
def test_an_empty_range_reads_as_a_value_range_without_values(
    blank: gspread.Spreadsheet, range_name: str, returned_range: str, major: str
) -> None:
    response = blank.values_get(range_name, params={"majorDimension": major})

    assert response == {"range": returned_range, "majorDimension": major}


def test_batch_get_of_empty_ranges_answers_each_without_values(
    blank: gspread.Spreadsheet,
) -> None:
    response = blank.values_batch_get([name for name, _ in EMPTY_READS] + ["One!A1"])

    assert response == {
        "spreadsheetId": blank.id,
        "valueRanges": [
            *[{"range": returned, "majorDimension": "ROWS"} for _, returned in EMPTY_READS],
            {"range": "One!A1", "majorDimension": "ROWS", "values": [["x"]]},
        ],
    }


def test_gspread_reads_empty_sheets_and_ranges_without_error(
    blank: gspread.Spreadsheet,
) -> None:
    empty, tiny = blank.worksheet("Empty"), blank.worksheet("Tiny")

    assert empty.get_all_records() == []
    assert tiny.batch_get(["A1:B2", "C2"]) == [[], []]
    assert [c.value for c in tiny.range("A1:C2")] == [""] * 6
    assert empty.cell(3, 3).value is None


@pytest.mark.parametrize("range_name", ["Tiny!D1", "Tiny!A3", "Tiny!A3:C9", "Tiny!D:D"])
def test_a_range_that_starts_outside_the_grid_is_refused(
    blank: gspread.Spreadsheet, range_name: str
) -> None:
    # Google's answer to a read starting past the grid (burnash/gspread#554): a 400 naming
    # the first cell outside it.
    with pytest.raises(APIError) as exc:
        blank.values_get(range_name)
    with pytest.raises(APIError) as batch:
        blank.values_batch_get(["Tiny!A1", range_name])

    assert api_error(exc)["status"] == api_error(batch)["status"] == "INVALID_ARGUMENT"
    assert api_error(exc)["message"].endswith("exceeds grid limits. Max rows: 2, max columns: 3")


@pytest.mark.parametrize(
    ("range_name", "returned_range", "values"),
    [
        ("R2C1", "Sheet1!A2", [["US"]]),
        ("Sheet1!R2C1:R3C2", "Sheet1!A2:B3", [["US", "CA"], ["US", "NY"]]),
        ("Sheet1!R3C2:R2C1", "Sheet1!A2:B3", [["US", "CA"], ["US", "NY"]]),
        ("Sheet1!R1C5:R1C40", "Sheet1!E1:Z1", [["approved"]]),
    ],
)
def test_absolute_r1c1_ranges_are_read_like_a1_ones(
    book: gspread.Spreadsheet, range_name: str, returned_range: str, values: list[list[str]]
) -> None:
    # The reference of values.get and batchGet: "the A1 notation or R1C1 notation of the range".
    assert book.values_get(range_name) == {
        "range": returned_range,
        "majorDimension": "ROWS",
        "values": values,
    }


def test_columns_major_dimension_transposes(book: gspread.Spreadsheet) -> None:
    response = book.values_get("A1:C4", params={"majorDimension": "COLUMNS"})

    assert response["values"] == [
        ["region", "US", "US", "US"],
        ["state", "CA", "NY", "TX"],
        ["units", "120", "80"],
    ]


def test_batch_get_reads_several_ranges(
    sheet: gspread.Worksheet, book: gspread.Spreadsheet, keys: dict[str, str]
) -> None:
    ranges = sheet.batch_get(["A1:B2", "C2:C", "Y9"], value_render_option=UNFORMATTED)

    assert [(r.range, list(r)) for r in ranges] == [
        ("Sheet1!A1:B2", [["region", "state"], ["US", "CA"]]),
        ("Sheet1!C2:C1000", [[120], [80]]),
        ("Sheet1!Y9", []),
    ]
    assert book.values_batch_get(["B2", f"'{NOTES_TITLE.replace(chr(39), chr(39) * 2)}'!B1"]) == {
        "spreadsheetId": keys["Forecast"],
        "valueRanges": [
            {"range": "Sheet1!B2", "majorDimension": "ROWS", "values": [["CA"]]},
            {
                "range": "'Notes ''Q4'''!B1",
                "majorDimension": "ROWS",
                "values": [["pete@example.com"]],
            },
        ],
    }


# --------------------------------------------------------------------------- writing


@pytest.mark.parametrize(
    ("typed", "shown", "stored"),
    [
        ("1,000", "1,000", 1000),
        ("12.50", "12.5", 12.5),
        ("007", "7", 7),
        ("'007", "007", "007"),
        ("true", "TRUE", True),
        ("12.5%", "12.5%", 0.125),
        ("$1,200.00", "$1,200.00", 1200),
        ("-3", "-3", -3),
        ("2024-12-01", "2024-12-01", 45627),
        ("12/1/2024", "12/1/2024", 45627),
        ("2024-02-30", "2024-02-30", "2024-02-30"),
        ("1,00", "1,00", "1,00"),
        ("=SUM(C2:C3)", "=SUM(C2:C3)", "=SUM(C2:C3)"),
    ],
)
def test_user_entered_values_are_parsed_as_if_typed(
    sheet: gspread.Worksheet,
    book: gspread.Spreadsheet,
    emulator: SheetsEmulator,
    keys: dict[str, str],
    typed: str,
    shown: str,
    stored: object,
) -> None:
    sheet.update_acell("F2", typed)

    assert sheet.acell("F2").value == shown
    assert book.values_get("F2", params={"valueRenderOption": "UNFORMATTED_VALUE"})["values"] == [
        [stored]
    ]
    assert sheet_state(emulator, keys["Forecast"])[1][5] == stored


def test_update_acell_reports_the_cell_it_wrote(
    sheet: gspread.Worksheet, keys: dict[str, str]
) -> None:
    assert sheet.update_acell("C4", "95") == {
        "spreadsheetId": keys["Forecast"],
        "updatedRange": "Sheet1!C4",
        "updatedRows": 1,
        "updatedColumns": 1,
        "updatedCells": 1,
    }


def test_raw_updates_keep_strings_as_strings(
    sheet: gspread.Worksheet, emulator: SheetsEmulator, keys: dict[str, str]
) -> None:
    response = sheet.update([["1,000", "TRUE", 42, "007"], [2.0]], "A6")

    assert response == {
        "spreadsheetId": keys["Forecast"],
        "updatedRange": "Sheet1!A6:D7",
        "updatedRows": 2,
        "updatedColumns": 4,
        "updatedCells": 5,
    }
    assert sheet_state(emulator, keys["Forecast"])[5:] == [
        ["1,000", "TRUE", 42, "007", None],
        [2, None, None, None, None],
    ]


def test_null_leaves_a_cell_alone_and_an_empty_string_clears_it(
    sheet: gspread.Worksheet, emulator: SheetsEmulator, keys: dict[str, str]
) -> None:
    sheet.update([[None, "", "0"]], "A2:C2", raw=False)

    assert sheet_state(emulator, keys["Forecast"])[1] == ["US", None, 0, 1520.5, True]


def test_update_can_echo_the_written_values(sheet: gspread.Worksheet) -> None:
    response = sheet.update(
        [["5", "1,500"]],
        "C4:D4",
        raw=False,
        include_values_in_response=True,
        response_value_render_option=UNFORMATTED,
    )

    assert response["updatedData"] == {
        "range": "Sheet1!C4:D4",
        "majorDimension": "ROWS",
        "values": [[5, 1500]],
    }


def test_writing_past_the_requested_range_is_refused(sheet: gspread.Worksheet) -> None:
    with pytest.raises(APIError) as columns:
        sheet.update([[1, 2, 3]], "A6:B6")
    with pytest.raises(APIError) as rows:
        sheet.update([[1], [2]], "A6:B6")

    assert columns.value.error["message"] == (
        "Requested writing within range ['Sheet1'!A6:B6], but tried writing to column [C]"
    )
    assert rows.value.error["message"] == (
        "Requested writing within range ['Sheet1'!A6:B6], but tried writing to row [7]"
    )


def test_updates_never_grow_the_grid_but_a_resize_does(
    sheet: gspread.Worksheet, emulator: SheetsEmulator, keys: dict[str, str]
) -> None:
    with pytest.raises(APIError) as exc:
        sheet.update([["late"], ["later"]], "A1000")

    assert api_error(exc) == {
        "code": 400,
        "message": "Range (Sheet1!A1001) exceeds grid limits. Max rows: 1000, max columns: 26",
        "status": "INVALID_ARGUMENT",
    }
    sheet.resize(rows=1001)
    sheet.update([["late"], ["later"]], "A1000")
    assert sheet_state(emulator, keys["Forecast"])[-2:] == [
        ["late", None, None, None, None],
        ["later", None, None, None, None],
    ]


def test_a_write_needs_a_value_input_option(book: gspread.Spreadsheet) -> None:
    with pytest.raises(APIError) as exc:
        book.values_update("Sheet1!A1", body={"values": [["x"]]})

    assert api_error(exc) == {
        "code": 400,
        "message": "Invalid valueInputOption: INPUT_VALUE_OPTION_UNSPECIFIED",
        "status": "INVALID_ARGUMENT",
    }


def test_append_row_writes_after_the_table(
    sheet: gspread.Worksheet, emulator: SheetsEmulator, keys: dict[str, str]
) -> None:
    key = keys["Forecast"]

    response = sheet.append_row(
        ["US", "WA", 40, "2,000", "TRUE"], value_input_option=ValueInputOption.user_entered
    )

    assert response == {
        "spreadsheetId": key,
        "tableRange": "Sheet1!A1:E4",
        "updates": {
            "spreadsheetId": key,
            "updatedRange": "Sheet1!A5:E5",
            "updatedRows": 1,
            "updatedColumns": 5,
            "updatedCells": 5,
        },
    }
    assert sheet_state(emulator, key)[4] == ["US", "WA", 40, 2000, True]
    assert sheet.get_all_values()[4] == ["US", "WA", "40", "2,000", "TRUE"]


def test_append_fills_the_first_gap_or_inserts_rows(
    client: gspread.Client, emulator: SheetsEmulator
) -> None:
    log = client.open_by_key(LOG_KEY).sheet1

    log.append_row(["2"])
    assert sheet_state(emulator, LOG_KEY) == [["h"], ["1"], ["2"], ["footer"]]

    log.update([[""]], "A3")
    log.append_row(["2"], insert_data_option=InsertDataOption.insert_rows)
    assert sheet_state(emulator, LOG_KEY) == [["h"], ["1"], ["2"], [None], ["footer"]]
    assert log.spreadsheet.fetch_sheet_metadata()["sheets"][0]["properties"]["gridProperties"] == {
        "rowCount": 1001,
        "columnCount": 26,
    }


def test_append_grows_a_small_grid_to_fit(book: gspread.Spreadsheet) -> None:
    small = book.add_worksheet("Small", rows=1, cols=2)

    response = small.append_rows([["a", "b", "c"], ["d", "e", "f"]])

    assert response["updates"]["updatedRange"] == "Small!A1:C2"
    assert "tableRange" not in response
    assert book.worksheet("Small").get_all_values() == [["a", "b", "c"], ["d", "e", "f"]]
    assert (book.worksheet("Small").row_count, book.worksheet("Small").col_count) == (2, 3)


def test_batch_update_writes_several_ranges(
    sheet: gspread.Worksheet, emulator: SheetsEmulator, keys: dict[str, str]
) -> None:
    key = keys["Forecast"]

    response = sheet.batch_update(
        [
            {"range": "A2", "values": [["CAN"]]},
            {"range": "D2:D3", "values": [["1,600"], ["1,000"]]},
        ],
        raw=False,
    )

    assert response == {
        "spreadsheetId": key,
        "totalUpdatedRows": 2,  # rows 2 and 3, row 2 counted once though both ranges touch it
        "totalUpdatedColumns": 2,
        "totalUpdatedCells": 3,
        "totalUpdatedSheets": 1,
        "responses": [
            {
                "spreadsheetId": key,
                "updatedRange": "Sheet1!A2",
                "updatedRows": 1,
                "updatedColumns": 1,
                "updatedCells": 1,
            },
            {
                "spreadsheetId": key,
                "updatedRange": "Sheet1!D2:D3",
                "updatedRows": 2,
                "updatedColumns": 1,
                "updatedCells": 2,
            },
        ],
    }
    assert [row[:4] for row in sheet_state(emulator, key)[1:3]] == [
        ["CAN", "CA", 120, 1600],
        ["US", "NY", 80, 1000],
    ]


def test_batch_update_totals_count_each_row_and_column_once(
    sheet: gspread.Worksheet, book: gspread.Spreadsheet, keys: dict[str, str]
) -> None:
    # Cassette WorksheetTest.test_batch_update.json: A1:D1 and A4:D4 in one call are 2 rows,
    # 4 columns (not 8) and 8 cells; the reference says "columns where at least one cell in
    # the column was updated".
    row = [["a", "b", "", "d"]]
    response = sheet.batch_update(
        [{"range": "A6:D6", "values": row}, {"range": "A9", "values": row}]
    )
    across = book.values_batch_update(
        body={
            "valueInputOption": "RAW",
            "data": [
                {"range": "Sheet1!A10", "values": [["x"]]},
                {"range": f"'{NOTES_TITLE.replace(chr(39), chr(39) * 2)}'!A10", "values": [["y"]]},
                {"range": "Sheet1!B10", "values": []},  # no cell: nothing counted
            ],
        }
    )

    assert {k: v for k, v in response.items() if k.startswith("total")} == {
        "totalUpdatedRows": 2,
        "totalUpdatedColumns": 4,
        "totalUpdatedCells": 8,
        "totalUpdatedSheets": 1,
    }
    assert {k: v for k, v in across.items() if k.startswith("total")} == {
        "totalUpdatedRows": 2,  # row 10 of each sheet
        "totalUpdatedColumns": 2,
        "totalUpdatedCells": 2,
        "totalUpdatedSheets": 2,
    }
    assert across["responses"][2] == {"spreadsheetId": keys["Forecast"]}


def test_a_batch_with_one_bad_range_writes_nothing(
    book: gspread.Spreadsheet, emulator: SheetsEmulator, keys: dict[str, str]
) -> None:
    before = emulator.state()["spreadsheets"]

    with pytest.raises(APIError) as exc:
        book.values_batch_update(
            body={
                "valueInputOption": "RAW",
                "data": [
                    {"range": "Sheet1!A2", "values": [["changed"]]},
                    {"range": "Nope!A1", "values": [["x"]]},
                ],
            }
        )

    assert api_error(exc)["message"] == "Unable to parse range: Nope!A1"
    assert emulator.state()["spreadsheets"] == before


def test_clear_and_batch_clear(
    sheet: gspread.Worksheet, emulator: SheetsEmulator, keys: dict[str, str]
) -> None:
    key = keys["Forecast"]

    assert sheet.batch_clear(["A2:B3", "E2"]) == {
        "spreadsheetId": key,
        "clearedRanges": ["Sheet1!A2:B3", "Sheet1!E2"],
    }
    assert sheet_state(emulator, key)[1:3] == [
        [None, None, 120, 1520.5, None],
        [None, None, 80, 990, False],
    ]
    assert sheet.clear() == {"spreadsheetId": key, "clearedRange": "Sheet1!A1:Z1000"}
    assert sheet_state(emulator, key) == []
    assert sheet.get_all_records() == []


# --------------------------------------------------------------------------- worksheets


def test_add_and_delete_worksheets(book: gspread.Spreadsheet) -> None:
    added = book.add_worksheet("Corrections", rows=10, cols=3, index=1)

    assert [w.title for w in book.worksheets()] == ["Sheet1", "Corrections", NOTES_TITLE]
    assert (added.row_count, added.col_count, added.index) == (10, 3, 1)
    with pytest.raises(APIError) as duplicate:
        book.add_worksheet("corrections", rows=1, cols=1)
    assert api_error(duplicate)["message"] == (
        'Invalid requests[0].addSheet: A sheet with the name "corrections" already exists. '
        "Please enter another name."
    )

    book.del_worksheet(added)
    assert [w.title for w in book.worksheets()] == ["Sheet1", NOTES_TITLE]


def test_the_last_worksheet_cannot_be_deleted(client: gspread.Client) -> None:
    log = client.open_by_key(LOG_KEY)

    with pytest.raises(APIError) as exc:
        log.del_worksheet(log.sheet1)

    assert api_error(exc)["message"] == (
        "Invalid requests[0].deleteSheet: You can't remove all the sheets in a document."
    )


def test_rename_and_unemulated_requests(
    book: gspread.Spreadsheet, sheet: gspread.Worksheet
) -> None:
    sheet.update_title("Forecast")
    assert [w.title for w in book.worksheets()] == ["Forecast", NOTES_TITLE]

    with pytest.raises(APIError) as exc:
        sheet.format("A1", {"textFormat": {"bold": True}})
    assert api_error(exc) == {
        "code": 501,
        "message": "The Sheets emulator does not implement requests[0].repeatCell "
        "(it knows addSheet, deleteSheet, updateSheetProperties)",
        "status": "UNIMPLEMENTED",
    }


# --------------------------------------------------------------------------- faults and state


def test_a_rate_limit_is_a_google_error_with_retry_after(
    client: gspread.Client, emulator: SheetsEmulator, keys: dict[str, str]
) -> None:
    emulator.fail_next(429, QUOTA_MESSAGE, retry_after=30)

    with pytest.raises(APIError) as exc:
        client.open_by_key(keys["Forecast"])

    assert api_error(exc) == {
        "code": 429,
        "message": QUOTA_MESSAGE,
        "status": "RESOURCE_EXHAUSTED",
        "details": [
            {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "RATE_LIMIT_EXCEEDED",
                "domain": "googleapis.com",
                "metadata": {
                    "consumer": "projects/0",
                    "quota_limit": "ReadRequestsPerMinutePerUser",
                    "quota_metric": "sheets.googleapis.com/read_requests",
                    "service": "sheets.googleapis.com",
                },
            }
        ],
    }
    assert exc.value.response.headers["Retry-After"] == "30"
    assert client.open_by_key(keys["Forecast"]).title == "US forecast (Dec)"


def test_backoff_client_retries_rate_limits_without_real_sleeps(
    server: LoopbackServer,
    emulator: SheetsEmulator,
    keys: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # BackOffHTTPClient calls time.sleep(2 ** attempt) via its module's `time`; record instead.
    sleeps: list[float] = []
    monkeypatch.setattr(gspread.http_client, "time", SimpleNamespace(sleep=sleeps.append))
    emulator.fail_next(429, QUOTA_MESSAGE, times=2, retry_after=1)

    with open_sheets_client(server.base_url, backoff=True) as client:
        title = client.open_by_key(keys["Forecast"]).title

    assert title == "US forecast (Dec)"
    assert sleeps == [2, 4]
    assert emulator.state()["requests"] == 3


def test_the_state_endpoint_shows_what_clients_wrote(
    server: LoopbackServer, sheet: gspread.Worksheet, keys: dict[str, str]
) -> None:
    sheet.update_acell("C4", "1,100")

    with requests.Session() as http:
        http.trust_env = False
        state = http.get(f"{server.base_url}/_sandbox/state", timeout=5).json()

    assert state == {
        "spreadsheets": {
            keys["Forecast"]: {
                "title": "US forecast (Dec)",
                "sheets": {
                    "Sheet1": [
                        ["region", "state", "units", "amount", "approved"],
                        ["US", "CA", 120, 1520.5, True],
                        ["US", "NY", 80, 990, False],
                        ["US", "TX", 1100, "1,200", None],
                    ],
                    NOTES_TITLE: [["owner", "pete@example.com"]],
                },
            },
            LOG_KEY: {"title": "Log", "sheets": {"Sheet1": [["h"], ["1"], [None], ["footer"]]}},
        },
        "requests": 3,  # open_by_key, sheet1's metadata, the write
    }


def test_requests_are_logged_for_tests_to_inspect(
    sheet: gspread.Worksheet, emulator: SheetsEmulator, keys: dict[str, str]
) -> None:
    key = keys["Forecast"]
    sheet.batch_update([{"range": "C4", "values": [["1,100"]]}], raw=False)

    [logged] = emulator.requests_for("post", f"/v4/spreadsheets/{key}/values:batchUpdate")
    assert logged == {
        "method": "POST",
        "path": f"/v4/spreadsheets/{key}/values:batchUpdate",
        "query": {},
        "body": {
            "valueInputOption": "USER_ENTERED",
            "includeValuesInResponse": None,
            "responseValueRenderOption": None,
            "responseDateTimeRenderOption": None,
            "data": [{"range": "'Sheet1'!C4", "values": [["1,100"]]}],
        },
    }
    assert [r["path"] for r in emulator.requests_for("GET")] == [f"/v4/spreadsheets/{key}"] * 2
    emulator.reset()
    assert emulator.requests_for("POST") == []


def test_an_unknown_route_is_not_found(server: LoopbackServer, keys: dict[str, str]) -> None:
    with requests.Session() as http:
        http.trust_env = False
        response = http.get(
            f"{server.base_url}/v4/spreadsheets/{keys['Forecast']}/developerMetadata", timeout=5
        )

    assert response.status_code == 404
    assert response.json()["error"]["status"] == "NOT_FOUND"


def test_the_client_session_refuses_other_google_hosts(client: gspread.Client) -> None:
    with pytest.raises(requests.ConnectionError, match="only the Sheets API is emulated"):
        client.list_spreadsheet_files()


def test_concurrent_appends_all_land(server: LoopbackServer, emulator: SheetsEmulator) -> None:
    audit = emulator.seed({"Audit": {"sheets": {"Sheet1": [["writer"]]}}})["Audit"]

    def append_five(writer: int) -> None:
        with open_sheets_client(server.base_url) as client:
            sheet = client.open_by_key(audit).sheet1
            for n in range(5):
                sheet.append_row([f"{writer}-{n}"])

    threads = [threading.Thread(target=append_five, args=(w,)) for w in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    rows = sheet_state(emulator, audit)
    assert rows[0] == ["writer"]
    assert sorted(row[0] for row in rows[1:]) == [f"{w}-{n}" for w in range(6) for n in range(5)]
