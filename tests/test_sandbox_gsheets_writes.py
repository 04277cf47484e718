"""The gsheets connector's compare-and-set writes, through gspread, against the Sheets emulator:
many cells in one ``values:batchUpdate``, each one checked before and after on its own."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from dq_agent.config.models import GSheetsConnector, GSheetsSourceSpec
from dq_agent.errors import SourceError
from dq_agent.sources import gsheets
from dq_agent.sources.base import BatchWriting, CellWrite, WriteResult
from dq_agent.sources.retry import RetryPolicy
from dq_agent_sandbox.gsheets import SheetsEmulator
from dq_agent_sandbox.http import LoopbackServer, Request, Response
from tests.sheets_client import open_sheets_client

KEY = "1ForecastKeyAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
US = [
    ["region", "state", "units", "amount"],
    ["US", "CA", 120, 1520.5],
    ["US", "NY", 95, 990],
    ["US", "TX", 80, "1,200"],
]
BATCH_UPDATE = f"/v4/spreadsheets/{KEY}/values:batchUpdate"
SLEPT: list[float] = []


class FaultyBatchUpdates(SheetsEmulator):
    """The Sheets emulator, answering the next ``values:batchUpdate`` with an error if told to."""

    def __init__(self) -> None:
        super().__init__()
        self.batch_update_fault: tuple[int, str] | None = None

    def handle(self, request: Request) -> Response:
        if self.batch_update_fault and request.path.endswith("/values:batchUpdate"):
            self.fail_next(*self.batch_update_fault)
            self.batch_update_fault = None
        return super().handle(request)


@pytest.fixture(scope="module")
def server() -> Iterator[LoopbackServer]:
    with LoopbackServer(FaultyBatchUpdates()) as server:
        yield server


@pytest.fixture
def emulator(server: LoopbackServer) -> FaultyBatchUpdates:
    emulator = server.emulator
    assert isinstance(emulator, FaultyBatchUpdates)
    emulator.reset()
    emulator.seed({"Forecast": {"key": KEY, "sheets": {"US": US}}})
    SLEPT.clear()
    return emulator


def make_source(server: LoopbackServer, key: str) -> gsheets.GSheetsSource:
    spec = GSheetsSourceSpec(connector="sheets", spreadsheet=key, worksheet="US")
    client = gsheets.connect(GSheetsConnector(type="gsheets", base_url=server.base_url))
    retry = RetryPolicy(attempts=3, base_delay=1.0, sleep=SLEPT.append)
    return gsheets.GSheetsSource(client, spec, retry=retry)


@pytest.fixture
def source(server: LoopbackServer, emulator: SheetsEmulator) -> Iterator[gsheets.GSheetsSource]:
    source = make_source(server, KEY)
    source.open()
    yield source
    source.close()


def sheet(emulator: SheetsEmulator, key: str = KEY) -> list[list[Any]]:
    return [list(row) for row in emulator.state()["spreadsheets"][key]["sheets"]["US"]]


def requests_made(emulator: SheetsEmulator, action: Callable[[], Any]) -> tuple[Any, int]:
    before = emulator.state()["requests"]
    result = action()
    return result, emulator.state()["requests"] - before


def someone_types(server: LoopbackServer, a1: str, value: Any) -> None:
    with open_sheets_client(server.base_url) as client:
        client.open_by_key(KEY).worksheet("US").update_acell(a1, value)


def test_the_sheets_source_writes_in_batches(source: gsheets.GSheetsSource) -> None:
    assert isinstance(source, BatchWriting)


def test_many_cells_go_in_one_batch_update(
    source: gsheets.GSheetsSource, emulator: FaultyBatchUpdates
) -> None:
    writes = [
        CellWrite({"_row": 2}, "units", 120, 12),
        CellWrite({"_row": 3}, "amount", 990, 9900),
        CellWrite({"_row": 4}, "state", "TX", "OK"),
        CellWrite({"_row": 4}, "units", 80, 800),
    ]

    results, requests = requests_made(emulator, lambda: source.write_many(writes))

    assert results == [
        WriteResult("written", 120, 12),
        WriteResult("written", 990, 9900),
        WriteResult("written", "TX", "OK"),
        WriteResult("written", 80, 800),
    ]
    # The worksheet found (2), read (1), written (1), read again (1): 5 however many cells,
    # where one write() each costs 5 per cell.
    assert requests == 5
    [batch] = emulator.requests_for("POST", BATCH_UPDATE)
    assert [d["range"] for d in batch["body"]["data"]] == [
        "'US'!C2",
        "'US'!D3",
        "'US'!B4",
        "'US'!C4",
    ]
    assert sheet(emulator)[1:] == [
        ["US", "CA", 12, 1520.5],
        ["US", "NY", 95, 9900],
        ["US", "OK", 800, "1,200"],
    ]


def test_a_cell_changed_since_the_read_is_a_conflict_and_the_others_are_written(
    server: LoopbackServer, source: gsheets.GSheetsSource, emulator: FaultyBatchUpdates
) -> None:
    someone_types(server, "C3", "99")  # Pete fixed NY's units by hand meanwhile

    results = source.write_many(
        [
            CellWrite({"_row": 2}, "units", 120, 12),
            CellWrite({"_row": 3}, "units", 95, 9),
            CellWrite({"_row": 4}, "units", 80, 8),
        ]
    )

    assert results == [
        WriteResult("written", 120, 12),
        WriteResult("conflict", 99, 99, "units is now 99"),
        WriteResult("written", 80, 8),
    ]
    [batch] = emulator.requests_for("POST", BATCH_UPDATE)
    assert [d["range"] for d in batch["body"]["data"]] == ["'US'!C2", "'US'!C4"]
    assert [row[2] for row in sheet(emulator)[1:]] == [12, 99, 8]


def test_a_cell_that_reads_differently_after_writing_is_a_conflict(
    source: gsheets.GSheetsSource, emulator: FaultyBatchUpdates
) -> None:
    # Typed as a user would type it, "1,300" becomes the number 1300: not what was asked.
    results = source.write_many(
        [
            CellWrite({"_row": 4}, "amount", "1,200", "1,300"),
            CellWrite({"_row": 2}, "amount", 1520.5, 1525),
        ]
    )

    assert results == [
        WriteResult("conflict", "1,200", 1300, "amount reads 1300 after writing"),
        WriteResult("written", 1520.5, 1525),
    ]


NEW_VALUES: list[Any] = ["1,000", "12.5%", "$5", "2024-12-01", "'007", "TRUE", 42, 1.5, False, ""]


def test_values_are_typed_as_update_cell_types_them(
    server: LoopbackServer, emulator: FaultyBatchUpdates
) -> None:
    # The reference: each value written alone with gspread's update_cell, as write() used to.
    header = [f"c{n}" for n in range(len(NEW_VALUES))]
    old = ["x"] * len(NEW_VALUES)
    typed, by_hand = (
        "1TypedAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "1ByHandAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    )
    emulator.seed(
        {name: {"key": name, "sheets": {"US": [header, old]}} for name in (typed, by_hand)}
    )
    with open_sheets_client(server.base_url) as client:
        worksheet = client.open_by_key(by_hand).worksheet("US")
        for col, value in enumerate(NEW_VALUES, start=1):
            worksheet.update_cell(2, col, value)

    source = make_source(server, typed)
    source.write_many(
        [CellWrite({"_row": 2}, c, "x", v) for c, v in zip(header, NEW_VALUES, strict=True)]
    )

    assert sheet(emulator, typed) == sheet(emulator, by_hand)
    assert sheet(emulator, typed)[1] == [1000, 0.125, 5, 45627, "007", True, 42, 1.5, False, None]
    alone = emulator.requests_for("PUT", f"/v4/spreadsheets/{by_hand}/values/")
    assert {r["query"]["valueInputOption"][0] for r in alone} == {"USER_ENTERED"}
    [batch] = emulator.requests_for("POST", f"/v4/spreadsheets/{typed}/values:batchUpdate")
    assert batch["body"]["valueInputOption"] == "USER_ENTERED"
    assert [d["values"] for d in batch["body"]["data"]] == [r["body"]["values"] for r in alone]


def test_rows_are_found_by_the_suites_key_columns(
    source: gsheets.GSheetsSource, emulator: FaultyBatchUpdates
) -> None:
    results = source.write_many(
        [
            CellWrite({"state": "NY"}, "units", 95, 96),
            CellWrite({"state": "WA"}, "units", 10, 11),
            CellWrite({"region": "US"}, "units", 120, 121),  # three rows match: none is it
        ]
    )

    assert results == [
        WriteResult("written", 95, 96),
        WriteResult("conflict", None, None, "no row matches {'state': 'WA'}"),
        WriteResult("conflict", None, None, "no row matches {'region': 'US'}"),
    ]
    assert sheet(emulator)[2][2] == 96


def test_a_write_the_sheet_cannot_take_fails_alone(
    source: gsheets.GSheetsSource, emulator: FaultyBatchUpdates
) -> None:
    results = source.write_many(
        [
            CellWrite({"_row": 2}, "seats", 1, 2),
            CellWrite({"_row": 1001}, "units", None, 1),
            CellWrite({"_row": 1}, "units", "units", "qty"),
            CellWrite({"_row": 2}, "units", 120, 12),
            CellWrite({"_row": 2}, "units", 120, 13),
        ]
    )

    assert results == [
        WriteResult("failed", None, None, "no column 'seats' in worksheet US"),
        WriteResult("failed", None, None, "row 1001 is not a record of worksheet US"),
        WriteResult("failed", None, None, "row 1 is not a record of worksheet US"),
        WriteResult("written", 120, 12),
        WriteResult("failed", None, None, "units of row 2 is set by an earlier write"),
    ]
    assert sheet(emulator)[:2] == [US[0], ["US", "CA", 12, 1520.5]]


def test_a_write_of_the_whole_sheet_goes_on_its_own(
    source: gsheets.GSheetsSource, emulator: FaultyBatchUpdates
) -> None:
    restored = [["region", "units"], ["US", 1]]

    results = source.write_many(
        [
            CellWrite({"_row": 2}, "units", 120, 12),
            CellWrite(
                {}, gsheets.WHOLE_SHEET, [US[0], ["US", "CA", 12, 1520.5], *US[2:]], restored
            ),
        ]
    )

    assert [r.status for r in results] == ["written", "written"]
    assert sheet(emulator) == restored
    assert len(emulator.requests_for("POST", BATCH_UPDATE)) == 1


def test_nothing_to_write_asks_nothing(
    source: gsheets.GSheetsSource, emulator: FaultyBatchUpdates
) -> None:
    results, requests = requests_made(emulator, lambda: source.write_many([]))

    assert (results, requests) == ([], 0)


def test_when_no_cell_still_holds_its_value_nothing_is_written(
    source: gsheets.GSheetsSource, emulator: FaultyBatchUpdates
) -> None:
    results, requests = requests_made(
        emulator, lambda: source.write_many([CellWrite({"_row": 2}, "units", 121, 12)])
    )

    assert results == [WriteResult("conflict", 120, 120, "units is now 120")]
    assert (requests, emulator.requests_for("POST", BATCH_UPDATE)) == (3, [])


def test_a_rate_limited_batch_is_retried_as_it_was(
    source: gsheets.GSheetsSource, emulator: FaultyBatchUpdates
) -> None:
    emulator.batch_update_fault = (429, "Quota exceeded for quota metric 'Write requests'")

    results = source.write_many(
        [CellWrite({"_row": 2}, "units", 120, 12), CellWrite({"_row": 3}, "units", 95, 9)]
    )

    assert [r.status for r in results] == ["written", "written"]
    assert SLEPT == [1.0]
    first, second = emulator.requests_for("POST", BATCH_UPDATE)
    assert first["body"]["data"] == second["body"]["data"]
    assert [d["range"] for d in second["body"]["data"]] == ["'US'!C2", "'US'!C3"]


def test_a_batch_the_api_refuses_raises_and_writes_nothing(
    source: gsheets.GSheetsSource, emulator: FaultyBatchUpdates
) -> None:
    emulator.batch_update_fault = (400, "Invalid data[1]: a refused range")

    with pytest.raises(SourceError, match="^Google Sheets 400: Invalid data") as raised:
        source.write_many(
            [CellWrite({"_row": 2}, "units", 120, 12), CellWrite({"_row": 3}, "units", 95, 9)]
        )

    assert raised.value.transient is False
    assert sheet(emulator) == US


# --- write(): one cell, the same path -------------------------------------------------------


def test_writing_one_cell_costs_no_more_than_it_did(
    source: gsheets.GSheetsSource, emulator: FaultyBatchUpdates
) -> None:
    # Five requests whether the row is named by `_row` or found by the suite's key columns
    # (which took eight when each cell was read on its own).
    by_row, by_row_requests = requests_made(
        emulator, lambda: source.write({"_row": 2}, "units", 120, 12)
    )
    by_key, by_key_requests = requests_made(
        emulator, lambda: source.write({"state": "NY"}, "units", 95, 9)
    )

    assert (by_row, by_row_requests) == (WriteResult("written", 120, 12), 5)
    assert (by_key, by_key_requests) == (WriteResult("written", 95, 9), 5)


def test_writing_a_column_the_sheet_lacks_is_an_error(source: gsheets.GSheetsSource) -> None:
    with pytest.raises(SourceError, match=r"^no column 'seats' in worksheet US$") as raised:
        source.write({"_row": 2}, "seats", 1, 2)

    assert raised.value.transient is False
