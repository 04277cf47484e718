"""``type: gsheets`` — one worksheet of a Google Sheet (gspread, Sheets API v4).

The header row names the columns; every other row becomes a record keyed by its sheet row
number (column ``_row``), typed from the cells' unformatted values. Writes re-read the
worksheet, write (in one ``values:batchUpdate``) only the cells that still hold the expected
value, and re-read it after. The Sheets API has no conditional write, so a person typing
into the same cell in the milliseconds between the re-read and the write is the one race
this cannot see.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from pathlib import Path
from typing import Any

import requests

from dq_agent.config.models import GSheetsConnector, GSheetsSourceSpec
from dq_agent.errors import SourceError
from dq_agent.redact import redact
from dq_agent.sources.base import CellWrite, Relation, WriteResult, same_value
from dq_agent.sources.fetched import FetchedColumn, FetchedCopy, infer_type
from dq_agent.sources.http import ApiSession
from dq_agent.sources.retry import RetryPolicy, parse_retry_after

ROW_COLUMN = "_row"
# The "column" a restore writes: every cell of the worksheet at once.
WHOLE_SHEET = "(all cells)"
SHEETS_API = "https://sheets.googleapis.com"
# How written values are read: as if typed into the sheet (what gspread's update_cell sends).
INPUT_OPTION = "USER_ENTERED"
_KEY_IN_URL = re.compile(r"/spreadsheets/d/([A-Za-z0-9_-]+)")


def connect(connector: GSheetsConnector) -> Any:
    """A gspread client: service-account credentials, or none for a loopback emulator."""
    try:
        import gspread
    except ImportError as exc:
        raise SourceError(
            "the gsheets connector needs gspread: pip install 'dq-agent[gsheets]'", transient=False
        ) from exc
    if connector.base_url is not None:
        session = ApiSession(
            timeout=connector.timeout, rewrite_from=SHEETS_API, rewrite_to=connector.base_url
        )
        return gspread.Client(auth=None, session=session)  # type: ignore[arg-type]
    path = connector.service_account_file
    info = _key_file(str(path))
    try:
        client = gspread.service_account_from_dict(info)
    except Exception as exc:  # google-auth raises several types for a malformed key
        secrets = [v for v in info.values() if isinstance(v, str)]
        raise SourceError(
            f"cannot use service account file {path}: {redact(str(exc), *secrets)}",
            transient=False,
        ) from None
    client.set_timeout(connector.timeout)
    return client


def _key_file(path: str) -> dict[str, Any]:
    """A service account key file's content; no error quotes any of it (it holds a private key)."""
    try:
        info = json.loads(Path(path).read_bytes())
    except OSError as exc:  # the reason alone: its message would name the path again
        reason = exc.strerror or exc.__class__.__name__
        raise SourceError(
            f"cannot read service account file {path}: {reason}", transient=False
        ) from None
    except ValueError as exc:  # says where the JSON breaks, never what is there
        raise SourceError(
            f"service account file {path} is not JSON: {exc}", transient=False
        ) from None
    if not isinstance(info, dict):
        raise SourceError(
            f"service account file {path}: expected a JSON object (a key file)", transient=False
        )
    return info


def spreadsheet_key(text: str) -> str:
    """The key from a spreadsheet URL, or the text itself when it is already a key."""
    found = _KEY_IN_URL.search(text)
    return found.group(1) if found else text


def translate(exc: Exception) -> SourceError:
    """A gspread or HTTP error as our own, saying whether trying again may help."""
    if isinstance(exc, SourceError):
        return exc
    if isinstance(exc, requests.Timeout | requests.ConnectionError):
        return SourceError(f"cannot reach Google Sheets: {exc.__class__.__name__}", transient=True)
    name = exc.__class__.__name__
    if name == "SpreadsheetNotFound":
        return SourceError(
            "spreadsheet not found (or not shared with this account)", transient=False, code="404"
        )
    if name == "WorksheetNotFound":
        return SourceError(f"worksheet not found: {exc}", transient=False, code="404")
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    if status is None:
        if isinstance(exc, requests.RequestException):  # a bad URL, a redirect loop...
            return SourceError(f"Google Sheets request failed: {name}", transient=False)
        raise exc
    error = getattr(exc, "error", {}) or {}
    message = error.get("message") if isinstance(error, dict) else None
    header = response.headers.get("Retry-After") if response is not None else None
    retry_after = parse_retry_after(header)
    transient = status == 429 or status >= 500
    return SourceError(
        f"Google Sheets {status}: {message or name}",
        transient=transient,
        retry_after=retry_after,
        code=str(status),
    )


class GSheetsSource:
    """Reads one worksheet; writes cells back compare-and-set, many in one call."""

    def __init__(
        self, client: Any, spec: GSheetsSourceSpec, *, retry: RetryPolicy | None = None
    ) -> None:
        self._client = client
        self._spec = spec
        self._key = spreadsheet_key(spec.spreadsheet)
        self._retry = retry or RetryPolicy()
        self._copy: FetchedCopy | None = None
        self._header: list[str] = []
        # The worksheet's cells as the last open() read them, header row first.
        self.last_grid: list[list[Any]] = []

    def open(self) -> Relation:
        grid = self._grid()
        self.last_grid = [list(row) for row in grid]
        self._header = _header(grid[0]) if grid else []
        rows = [
            {ROW_COLUMN: number, **_record(self._header, cells)}
            for number, cells in enumerate(grid[1:], start=2)
            if any(cell not in ("", None) for cell in cells)
        ]
        names = [n for n in self._header if n]
        columns = [FetchedColumn(ROW_COLUMN, infer_type([1]))]
        columns += [
            FetchedColumn(
                n,
                infer_type(r.get(n) for r in rows),
                known=any(r.get(n) is not None for r in rows),
            )
            for n in names
        ]
        self._copy = FetchedCopy(f"{self._spec.worksheet}")
        return self._copy.load(columns, rows, (ROW_COLUMN,))

    def write(
        self, key: Mapping[str, Any], column: str, expected_old: Any, new: Any
    ) -> WriteResult:
        if column == WHOLE_SHEET:
            return self.write_grid(expected_old or [], new or [])
        [result] = self._write_cells([CellWrite(key, column, expected_old, new)])
        if result.status == "failed":  # alone, a write the sheet cannot take is an error
            raise SourceError(result.detail, transient=False)
        return result

    def write_many(self, writes: Sequence[CellWrite]) -> list[WriteResult]:
        """Compare-and-set writes in five requests however many there are: the worksheet
        found (two), read once, the cells that still hold their expected value written in one
        ``values:batchUpdate``, and read once more to verify. A write of the whole sheet
        (``WHOLE_SHEET``) goes on its own, as :meth:`write` makes it."""
        cells = [i for i, w in enumerate(writes) if w.column != WHOLE_SHEET]
        done = dict(zip(cells, self._write_cells([writes[i] for i in cells]), strict=True))
        for i, write in enumerate(writes):
            if write.column != WHOLE_SHEET:
                continue
            try:
                done[i] = self.write_grid(write.expected_old or [], write.new or [])
            except SourceError as exc:
                if not any(r.status == "written" for r in done.values()):
                    raise
                done[i] = WriteResult("failed", None, None, str(exc))
        return [done[i] for i in range(len(writes))]

    def _write_cells(self, writes: Sequence[CellWrite]) -> list[WriteResult]:
        """One result per cell write, in order."""
        if not writes:
            return []
        worksheet = self._worksheet()
        grid = self._grid(worksheet)
        header = _header(grid[0]) if grid else []
        results: list[WriteResult | None] = [None] * len(writes)
        planned: dict[tuple[int, int], int] = {}  # (row, column), 1-based → index in writes
        for i, write in enumerate(writes):
            refused = self._refusal(write, grid, header, worksheet.row_count)
            if isinstance(refused, WriteResult):
                results[i] = refused
            elif refused in planned:
                detail = f"{write.column} of row {refused[0]} is set by an earlier write"
                results[i] = WriteResult("failed", None, None, detail)
            else:
                planned[refused] = i
        # Only what still holds its expected value is written, in one request.
        values = {_a1(row, col): writes[i].new for (row, col), i in planned.items()}
        if values:
            # Fresh dicts on every attempt: gspread prefixes each range with the sheet's name.
            self._call(
                "write",
                lambda: worksheet.batch_update(
                    [{"range": a1, "values": [[new]]} for a1, new in values.items()],
                    value_input_option=INPUT_OPTION,
                ),
            )
        after_grid = self._grid(worksheet) if values else grid
        for (row, col), i in planned.items():
            write = writes[i]
            before, after = _value_at(grid, row, col), _value_at(after_grid, row, col)
            if not same_value(after, write.new):
                detail = f"{write.column} reads {after!r} after writing"
                results[i] = WriteResult("conflict", before, after, detail)
            else:
                results[i] = WriteResult("written", before, after)
        return [r for r in results if r is not None]

    def _refusal(
        self, write: CellWrite, grid: list[list[Any]], header: list[str], row_count: int
    ) -> WriteResult | tuple[int, int]:
        """Why ``write`` cannot go (a ``conflict`` or ``failed`` result), or its cell."""
        if write.column not in header:
            detail = f"no column {write.column!r} in worksheet {self._spec.worksheet}"
            return WriteResult("failed", None, None, detail)
        row = _row_in(grid, header, write.key)
        if row is None:
            return WriteResult("conflict", None, None, f"no row matches {dict(write.key)}")
        if not 2 <= row <= row_count:
            detail = f"row {row} is not a record of worksheet {self._spec.worksheet}"
            return WriteResult("failed", None, None, detail)
        col = header.index(write.column) + 1
        before = _value_at(grid, row, col)
        if not same_value(before, write.expected_old):
            return WriteResult("conflict", before, before, f"{write.column} is now {before!r}")
        return row, col

    def write_grid(
        self, expected: Sequence[Sequence[Any]], new: Sequence[Sequence[Any]]
    ) -> WriteResult:
        """Replace the whole worksheet, compare-and-set: only if it still holds ``expected``."""
        before = _trimmed(self._grid())
        if before != _trimmed(expected):
            return WriteResult(
                "conflict", before, before, "the worksheet changed since it was read"
            )
        worksheet = self._worksheet()
        self._call("clear", lambda: worksheet.clear())
        rows = [list(row) for row in new]
        if rows:
            self._call("write", lambda: worksheet.update(rows, "A1", value_input_option="RAW"))
        after = _trimmed(self._grid())
        if after != _trimmed(new):
            return WriteResult(
                "conflict", before, after, "the worksheet reads differently after writing"
            )
        return WriteResult("written", before, after)

    def read(self, key: Mapping[str, Any], column: str) -> Any:
        if column == WHOLE_SHEET:
            return _trimmed(self._grid())
        worksheet = self._worksheet()
        if not self._header:
            self._header = _header(self._grid()[0])
        row = self._row_of(key)
        if row is None or column not in self._header:
            return None
        return self._cell(worksheet, row, self._header.index(column) + 1)

    def close(self) -> None:
        if self._copy is not None:
            self._copy.close()
            self._copy = None

    # -- pieces -------------------------------------------------------------------------------

    def _worksheet(self) -> Any:
        spreadsheet = self._call("open", lambda: self._client.open_by_key(self._key))
        return self._call("worksheet", lambda: spreadsheet.worksheet(self._spec.worksheet))

    def _grid(self, worksheet: Any = None) -> list[list[Any]]:
        if worksheet is None:
            worksheet = self._worksheet()
        return list(
            self._call(
                "read",
                lambda: worksheet.get_all_values(
                    value_render_option="UNFORMATTED_VALUE",
                    date_time_render_option="FORMATTED_STRING",
                ),
            )
        )

    def _row_of(self, key: Mapping[str, Any]) -> int | None:
        if ROW_COLUMN in key:
            return int(key[ROW_COLUMN])
        return _row_in(self._grid(), self._header, key)

    def _cell(self, worksheet: Any, row: int, col: int) -> Any:
        cell = self._call(
            "read cell", lambda: worksheet.cell(row, col, value_render_option="UNFORMATTED_VALUE")
        )
        return _cell_value(cell.value)

    def _call(self, what: str, action: Any) -> Any:
        label = f"Google Sheets {what} on {self._spec.worksheet}"
        return self._retry.call(label, action, translate)


def _header(cells: Sequence[Any]) -> list[str]:
    names = [str(c).strip() if c is not None else "" for c in cells]
    duplicates = sorted({n for n in names if n and names.count(n) > 1})
    if duplicates:
        raise SourceError(f"duplicate column header(s): {', '.join(duplicates)}", transient=False)
    if ROW_COLUMN in names:
        raise SourceError(
            f"column header {ROW_COLUMN!r} is reserved for row numbers", transient=False
        )
    return names


def _record(header: Sequence[str], cells: Sequence[Any]) -> dict[str, Any]:
    """A row's cells by column name, typed."""
    return {
        name: _cell_value(cells[i] if i < len(cells) else None)
        for i, name in enumerate(header)
        if name
    }


def _row_in(
    grid: Sequence[Sequence[Any]], header: Sequence[str], key: Mapping[str, Any]
) -> int | None:
    """The sheet row of the record ``key``: its ``_row``, or the one row whose cells match."""
    if ROW_COLUMN in key:
        return int(key[ROW_COLUMN])
    found = [
        number
        for number, cells in enumerate(grid[1:], start=2)
        if all(same_value(_record(header, cells).get(k), v) for k, v in key.items())
    ]
    return found[0] if len(found) == 1 else None


def _value_at(grid: Sequence[Sequence[Any]], row: int, col: int) -> Any:
    """The typed value at (row, col), 1-based; beyond what the API returned, the cell is empty."""
    cells = grid[row - 1] if row <= len(grid) else []
    return _cell_value(cells[col - 1] if col <= len(cells) else None)


def _a1(row: int, col: int) -> str:
    """``C2`` for row 2, column 3."""
    letters = ""
    while col:
        col, rest = divmod(col - 1, 26)
        letters = chr(ord("A") + rest) + letters
    return f"{letters}{row}"


def _cell_value(value: Any) -> Any:
    """Empty cells are None; ISO dates and timestamps typed as text become dates."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        text = value.strip()
        try:
            if len(text) == 10:
                return date.fromisoformat(text)
            if len(text) > 10 and text[4] == "-" and text[10] in " T":
                return datetime.fromisoformat(text)
        except ValueError:
            return value
    return value


def _trimmed(grid: Sequence[Sequence[Any]]) -> list[list[Any]]:
    """A grid without trailing empty cells and rows, as the API returns it."""
    rows = [list(row) for row in grid]
    for row in rows:
        while row and row[-1] in ("", None):
            row.pop()
    while rows and not rows[-1]:
        rows.pop()
    return rows
