"""A loopback stand-in for the Google Sheets v4 REST API, served by :class:`LoopbackServer`.

It speaks the service's wire format, so the real ``gspread`` client works against it unchanged:
the same paths, A1 ranges, JSON shapes, render and input options, and error bodies. Where the
emulation stops, it says so here rather than guessing:

- formulas are stored and returned as text, never evaluated;
- the only number formats are the ones Sheets picks when a user types ``1,000``, ``12.5%``,
  ``$5`` or a date (the cell then shows what was typed); everything else uses the automatic
  format;
- ``spreadsheets:batchUpdate`` knows ``addSheet``, ``deleteSheet`` and
  ``updateSheetProperties`` (title, index, grid size) and answers 501 for anything else;
- R1C1 ranges are read in their absolute forms only (``R2C1``, ``R2C1:R5C3``);
- ``dateTimeRenderOption`` is accepted and ignored: a typed date reads back unformatted as
  its serial number whatever it asks.

Reads answer as Sheets does at the grid's edge: a range that starts inside the grid but
ends past it is clipped to the grid, an empty range (or sheet) is a ``ValueRange`` with no
``values``, and only a range that starts outside the grid is a 400.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import math
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import date
from typing import Any, NamedTuple
from urllib.parse import unquote

from dq_agent_sandbox.http import Request, Response

__all__ = ["SheetsEmulator"]

Scalar = str | int | float | bool
SeedCell = Scalar | None
JsonObject = dict[str, Any]

API_PREFIX = "/v4/spreadsheets/"
DEFAULT_ROWS = 1000  # a new Google sheet is 1000 x 26
DEFAULT_COLUMNS = 26
LOCALE = "en_US"
TIME_ZONE = "Etc/GMT"
FORMATTED = "FORMATTED_VALUE"
RENDER_OPTIONS = ("FORMATTED_VALUE", "UNFORMATTED_VALUE", "FORMULA")
INPUT_OPTIONS = ("RAW", "USER_ENTERED")
DIMENSIONS = ("ROWS", "COLUMNS")
INSERT_OPTIONS = ("OVERWRITE", "INSERT_ROWS")
# Sheets keeps numbers as doubles: integers beyond this lose precision there too.
EXACT_INT_LIMIT = 2**53

_STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}

# What a spreadsheet's properties hold beside its title, locale and time zone: the defaults of
# a new Google spreadsheet (white cells, 10pt Arial, the standard theme). Nothing reads them.
_WHITE = {"red": 1, "green": 1, "blue": 1}
DEFAULT_FORMAT: JsonObject = {
    "backgroundColor": _WHITE,
    "padding": {"top": 2, "right": 3, "bottom": 2, "left": 3},
    "verticalAlignment": "BOTTOM",
    "wrapStrategy": "OVERFLOW_CELL",
    "textFormat": {
        "foregroundColor": {},
        "fontFamily": "arial,sans,sans-serif",
        "fontSize": 10,
        "bold": False,
        "italic": False,
        "strikethrough": False,
        "underline": False,
        "foregroundColorStyle": {"rgbColor": {}},
    },
    "backgroundColorStyle": {"rgbColor": _WHITE},
}
THEME_COLORS = {
    "TEXT": "000000",
    "BACKGROUND": "ffffff",
    "ACCENT1": "4285f4",
    "ACCENT2": "ea4335",
    "ACCENT3": "fbbc04",
    "ACCENT4": "34a853",
    "ACCENT5": "ff6d01",
    "ACCENT6": "46bdc6",
    "LINK": "1155cc",
}


# --------------------------------------------------------------------------- model


@dataclass(frozen=True)
class _Cell:
    value: Scalar
    shown: str | None = None  # what the sheet displays when typing picked a format ("1,000")

    def formatted(self) -> str:
        return self.shown if self.shown is not None else _display(self.value)


@dataclass
class _Sheet:
    sheet_id: int
    title: str
    row_count: int
    column_count: int
    cells: dict[tuple[int, int], _Cell] = field(default_factory=dict)  # (row, col), 0-based

    def clone(self) -> _Sheet:
        return replace(self, cells=dict(self.cells))  # cells are immutable: a shallow copy will do

    def properties(self, index: int) -> JsonObject:
        return {
            "sheetId": self.sheet_id,
            "title": self.title,
            "index": index,
            "sheetType": "GRID",
            "gridProperties": {"rowCount": self.row_count, "columnCount": self.column_count},
        }

    def put(self, row: int, col: int, cell: _Cell | None) -> None:
        if cell is None:
            self.cells.pop((row, col), None)
        else:
            self.cells[(row, col)] = cell

    def clear(self, box: _Box) -> None:
        for key in [key for key in self.cells if box.holds(*key)]:
            del self.cells[key]

    def dense(self) -> list[list[SeedCell]]:
        """The used part of the sheet as a rectangle, ``None`` where a cell is empty."""
        height = max((r + 1 for r, _ in self.cells), default=0)
        width = max((c + 1 for _, c in self.cells), default=0)
        grid: list[list[SeedCell]] = [[None] * width for _ in range(height)]
        for (r, c), cell in self.cells.items():
            grid[r][c] = cell.value
        return grid


@dataclass
class _Book:
    key: str
    title: str
    sheets: list[_Sheet]

    def clone(self) -> _Book:
        return _Book(self.key, self.title, [sheet.clone() for sheet in self.sheets])

    def sheet_named(self, title: str) -> _Sheet | None:
        # Sheets matches sheet names case-insensitively, preferring an exact match.
        exact = next((s for s in self.sheets if s.title == title), None)
        folded = (s for s in self.sheets if s.title.casefold() == title.casefold())
        return exact or next(folded, None)

    def sheet_with_id(self, sheet_id: object) -> _Sheet | None:
        return next((s for s in self.sheets if s.sheet_id == sheet_id), None)

    def resource(self) -> JsonObject:
        return {
            "spreadsheetId": self.key,
            "properties": {
                "title": self.title,
                "locale": LOCALE,
                "autoRecalc": "ON_CHANGE",
                "timeZone": TIME_ZONE,
                "defaultFormat": DEFAULT_FORMAT,
                "spreadsheetTheme": _theme(),
            },
            "sheets": [{"properties": s.properties(i)} for i, s in enumerate(self.sheets)],
            "spreadsheetUrl": f"https://docs.google.com/spreadsheets/d/{self.key}/edit",
        }


def _theme() -> JsonObject:
    colors = [
        {"colorType": kind, "color": {"rgbColor": _rgb(hex_rgb)}}
        for kind, hex_rgb in THEME_COLORS.items()
    ]
    return {"primaryFontFamily": "Arial", "themeColors": colors}


def _rgb(hex_rgb: str) -> JsonObject:
    """A Color as the API writes one: channels from 0 to 1, a channel at 0 left out."""
    channels = zip(("red", "green", "blue"), bytes.fromhex(hex_rgb), strict=True)
    return {name: _number(round(value / 255, 8)) for name, value in channels if value}


class _Box(NamedTuple):
    """A concrete block of cells: 0-based, ends exclusive."""

    row0: int
    col0: int
    row1: int
    col1: int

    def holds(self, row: int, col: int) -> bool:
        return self.row0 <= row < self.row1 and self.col0 <= col < self.col1


@dataclass(frozen=True)
class _Span:
    """A range as written in A1 notation: 0-based, ends exclusive, ``None`` = to the grid's edge."""

    row0: int
    col0: int
    row1: int | None
    col1: int | None

    @property
    def is_cell(self) -> bool:
        return self.row1 == self.row0 + 1 and self.col1 == self.col0 + 1


WHOLE_SHEET = _Span(0, 0, None, None)


@dataclass(frozen=True)
class _Target:
    sheet: _Sheet
    span: _Span
    text: str  # the range as the client sent it, echoed in error messages as Sheets does


class _ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class _Fault:
    status: int
    message: str
    retry_after: int | str | None


# --------------------------------------------------------------------------- A1 notation

_ENDPOINT = re.compile(r"\$?([A-Za-z]{0,3})\$?([0-9]{0,7})")
_R1C1_CELL = re.compile(r"[Rr]([0-9]{1,7})[Cc]([0-9]{1,5})")
_BARE_TITLE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_LOOKS_LIKE_CELL = re.compile(r"[A-Za-z]{1,3}[0-9]+|[Rr][0-9]*[Cc][0-9]*")


def _column_index(letters: str) -> int:
    index = 0
    for letter in letters.upper():
        index = index * 26 + ord(letter) - ord("A") + 1
    return index - 1


def _column_letters(index: int) -> str:
    letters = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        letters = chr(ord("A") + rest) + letters
    return letters


def _quote_title(title: str) -> str:
    # Sheets quotes a sheet name in the ranges it returns only when the name needs it.
    if _BARE_TITLE.fullmatch(title) and not _LOOKS_LIKE_CELL.fullmatch(title):
        return title
    return "'" + title.replace("'", "''") + "'"


def _a1(sheet: _Sheet, box: _Box) -> str:
    start = f"{_column_letters(box.col0)}{box.row0 + 1}"
    if box.row1 - box.row0 == 1 and box.col1 - box.col0 == 1:
        return f"{_quote_title(sheet.title)}!{start}"
    end = f"{_column_letters(box.col1 - 1)}{box.row1}"
    return f"{_quote_title(sheet.title)}!{start}:{end}"


def _unquote_title(text: str) -> tuple[str, str] | None:
    """``("It's", "!A1")`` from ``'It''s'!A1``; ``None`` when the closing quote is missing."""
    chars: list[str] = []
    i = 1
    while i < len(text):
        if text[i] != "'":
            chars.append(text[i])
            i += 1
        elif text[i + 1 : i + 2] == "'":
            chars.append("'")
            i += 2
        else:
            return "".join(chars), text[i + 1 :]
    return None


def _split_sheet(text: str) -> tuple[str | None, str | None] | None:
    """``(sheet name, cell part or None for the whole sheet)``; ``None`` when malformed.

    Text with neither quotes nor ``!`` gives ``(None, text)``: it may name a sheet or a range.
    """
    if text.startswith("'"):
        quoted = _unquote_title(text)
        if quoted is None:
            return None
        name, rest = quoted
        if rest == "":
            return name, None
        return (name, rest[1:]) if rest.startswith("!") else None
    if "!" in text:
        name, _, cells = text.partition("!")
        return name, cells
    return None, text


def _parse_endpoint(text: str) -> tuple[int | None, int | None] | None:
    """(column, row), 0-based, either possibly absent; ``None`` when not an A1 endpoint."""
    match = _ENDPOINT.fullmatch(text)
    if match is None or not (match[1] or match[2]):
        return None
    col = _column_index(match[1]) if match[1] else None
    row = int(match[2]) - 1 if match[2] else None
    if row is not None and row < 0:
        return None
    return col, row


def _ordered(start: int | None, end: int | None) -> tuple[int, int | None]:
    """Start and exclusive end of one axis; Sheets accepts ``C3:A1`` as ``A1:C3``."""
    first = start if start is not None else 0
    if end is None:
        return first, None
    low, high = sorted((first, end))
    return low, high + 1


def _parse_span(text: str) -> _Span | None:
    return _parse_a1(text) or _parse_r1c1(text)


def _parse_r1c1(text: str) -> _Span | None:
    """``R2C1`` or ``R2C1:R5C3``; other R1C1 forms (``R2``, ``C3``) read as A1 cells first."""
    corners = [_R1C1_CELL.fullmatch(part) for part in text.split(":")]
    if len(corners) > 2 or None in corners:
        return None
    rows = [int(m[1]) - 1 for m in corners if m]
    cols = [int(m[2]) - 1 for m in corners if m]
    if min(rows + cols) < 0:
        return None
    return _Span(min(rows), min(cols), max(rows) + 1, max(cols) + 1)


def _parse_a1(text: str) -> _Span | None:
    first, colon, second = text.partition(":")
    start = _parse_endpoint(first)
    if start is None:
        return None
    if not colon:
        col, row = start
        if col is None or row is None:
            return None
        return _Span(row, col, row + 1, col + 1)
    end = _parse_endpoint(second)
    if end is None:
        return None
    row0, row1 = _ordered(start[1], end[1])
    col0, col1 = _ordered(start[0], end[0])
    return _Span(row0, col0, row1, col1)


def _resolve(book: _Book, text: str) -> _Target:
    unparsable = _ApiError(400, f"Unable to parse range: {text}")
    split = _split_sheet(text)
    if split is None:
        raise unparsable
    name, cells = split
    if name is None:
        # A bare word names a sheet first; only otherwise is it a range on the first sheet.
        sheet = book.sheet_named(text)
        if sheet is not None:
            return _Target(sheet, WHOLE_SHEET, text)
        span = _parse_span(text)
        if span is None:
            raise unparsable
        return _Target(book.sheets[0], span, text)
    sheet = book.sheet_named(name)
    span = WHOLE_SHEET if cells is None else _parse_span(cells)
    if sheet is None or span is None:
        raise unparsable
    return _Target(sheet, span, text)


def _grid_error(sheet: _Sheet, row: int, col: int) -> _ApiError:
    where = _a1(sheet, _Box(row, col, row + 1, col + 1))
    return _ApiError(
        400,
        f"Range ({where}) exceeds grid limits. "
        f"Max rows: {sheet.row_count}, max columns: {sheet.column_count}",
    )


def _clip(target: _Target) -> _Box:
    """The block a read or clear covers: it must start inside the grid and stops at its edge."""
    sheet, span = target.sheet, target.span
    if span.row0 >= sheet.row_count or span.col0 >= sheet.column_count:
        raise _grid_error(sheet, span.row0, span.col0)
    row1 = sheet.row_count if span.row1 is None else min(span.row1, sheet.row_count)
    col1 = sheet.column_count if span.col1 is None else min(span.col1, sheet.column_count)
    return _Box(span.row0, span.col0, row1, col1)


# --------------------------------------------------------------------------- values


def _display(value: Scalar) -> str:
    """A value as the automatic number format shows it."""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        text = f"{value:.15g}"
        mantissa, e, exponent = text.partition("e")
        return f"{mantissa}E{exponent}" if e else text
    return value


def _number(value: int | float) -> int | float:
    """Sheets holds doubles and returns whole ones as integers (``3.0`` comes back as ``3``)."""
    if not math.isfinite(value):
        raise ValueError(f"{value!r} is not a number Sheets can hold")
    if isinstance(value, int):
        return value if abs(value) < EXACT_INT_LIMIT else float(value)
    return int(value) if value.is_integer() and abs(value) < EXACT_INT_LIMIT else value


_TYPED_NUMBER = re.compile(
    r"(?P<sign>[+-]?)(?P<currency>\$?)"
    r"(?P<digits>\d{1,3}(?:,\d{3})+(?:\.\d*)?|\d+(?:\.\d*)?|\.\d+)"
    r"(?P<exponent>[eE][+-]?\d+)?(?P<percent>%?)"
)
_ISO_DATE = re.compile(r"(\d{4})-(\d{1,2})-(\d{1,2})")
_US_DATE = re.compile(r"(\d{1,2})/(\d{1,2})/(\d{4})")
_EPOCH = date(1899, 12, 30)  # day 0 of Sheets' date serial numbers


def _typed_number(text: str) -> _Cell | None:
    match = _TYPED_NUMBER.fullmatch(text)
    if match is None or (match["currency"] and match["percent"]):
        return None
    value = float(match["digits"].replace(",", "") + (match["exponent"] or ""))
    if match["sign"] == "-":
        value = -value
    if match["percent"]:
        value /= 100
    formatted = bool("," in match["digits"] or match["currency"] or match["percent"])
    return _Cell(_number(value), text if formatted else None)


def _typed_date(text: str) -> _Cell | None:
    iso, us = _ISO_DATE.fullmatch(text), _US_DATE.fullmatch(text)
    try:
        if iso is not None:
            day = date(int(iso[1]), int(iso[2]), int(iso[3]))
        elif us is not None:  # the spreadsheet's en_US locale reads month first
            day = date(int(us[3]), int(us[1]), int(us[2]))
        else:
            return None
    except ValueError:  # "2024-02-30" stays text, as in Sheets
        return None
    return _Cell((day - _EPOCH).days, text)


def _user_entered(text: str) -> _Cell | None:
    """A string as Sheets reads it when a user types it into a cell."""
    if text.startswith("'"):  # a leading apostrophe forces text and is not stored
        return _Cell(text[1:]) if len(text) > 1 else None
    stripped = text.strip()
    if stripped.upper() in ("TRUE", "FALSE"):
        return _Cell(stripped.upper() == "TRUE")
    return _typed_number(stripped) or _typed_date(stripped) or _Cell(text)


def _input_cell(raw: Scalar, option: str) -> _Cell | None:
    """The cell a written value becomes; ``None`` clears the cell."""
    if isinstance(raw, bool):
        return _Cell(raw)
    if isinstance(raw, int | float):
        return _Cell(_number(raw))
    if raw == "":
        return None
    return _Cell(raw) if option == "RAW" else _user_entered(raw)


def _render(cell: _Cell | None, option: str) -> Scalar:
    if cell is None:
        return ""
    # FORMULA renders like UNFORMATTED_VALUE here: formulas are only ever stored as text.
    return cell.formatted() if option == FORMATTED else cell.value


def _trimmed(grid: list[list[Scalar]]) -> list[list[Scalar]]:
    """Drop trailing empty cells of each row and trailing empty rows, as Sheets does."""
    rows = []
    for row in grid:
        end = len(row)
        while end and row[end - 1] == "":
            end -= 1
        rows.append(row[:end])
    while rows and not rows[-1]:
        rows.pop()
    return rows


def _value_range(sheet: _Sheet, box: _Box, render: str, major: str) -> JsonObject:
    # Only the used part of the box is materialised: a 'Sheet1' read spans the whole grid.
    used = [key for key in sheet.cells if box.holds(*key)]
    last_row = max((r + 1 for r, _ in used), default=box.row0)
    last_col = max((c + 1 for _, c in used), default=box.col0)
    grid = [
        [_render(sheet.cells.get((r, c)), render) for c in range(box.col0, last_col)]
        for r in range(box.row0, last_row)
    ]
    if major == "COLUMNS":
        grid = [list(column) for column in zip(*grid, strict=True)]
    result: JsonObject = {"range": _a1(sheet, box), "majorDimension": major}
    values = _trimmed(grid)
    if values:
        result["values"] = values
    return result


def _input_rows(values: object, major: str) -> list[list[SeedCell]]:
    """The ``values`` of a request body, checked, as rows (``None`` = leave the cell alone)."""
    if values is None:
        return []
    if not isinstance(values, list) or not all(isinstance(row, list) for row in values):
        raise _ApiError(400, f"Invalid values: {json.dumps(values)}")
    for i, row in enumerate(values):
        for j, cell in enumerate(row):
            if cell is not None and not isinstance(cell, str | int | float | bool):
                raise _ApiError(400, f"Invalid values[{i}][{j}]: {json.dumps(cell)}")
            if isinstance(cell, float) and not math.isfinite(cell):
                raise _ApiError(400, f"Invalid values[{i}][{j}]: {cell}")
    rows: list[list[SeedCell]] = values
    if major == "COLUMNS":
        height = max((len(column) for column in rows), default=0)
        rows = [[col[i] if i < len(col) else None for col in rows] for i in range(height)]
    return rows


# --------------------------------------------------------------------------- writes


def _check_fits(target: _Target, height: int, width: int) -> None:
    span = target.span
    if span.is_cell:
        return  # a single cell anchors a write of any size, as in Sheets
    if span.row1 is not None and span.row0 + height > span.row1:
        raise _ApiError(
            400,
            f"Requested writing within range [{target.text}], "
            f"but tried writing to row [{span.row1 + 1}]",
        )
    if span.col1 is not None and span.col0 + width > span.col1:
        raise _ApiError(
            400,
            f"Requested writing within range [{target.text}], "
            f"but tried writing to column [{_column_letters(span.col1)}]",
        )


def _put_rows(sheet: _Sheet, row0: int, col0: int, rows: list[list[SeedCell]], option: str) -> None:
    for i, row in enumerate(rows):
        for j, raw in enumerate(row):
            if raw is not None:  # Sheets skips nulls; an empty string is what clears a cell
                sheet.put(row0 + i, col0 + j, _input_cell(raw, option))


def _block(row0: int, col0: int, rows: list[list[SeedCell]]) -> _Box | None:
    """The block ``rows`` cover when written at (row0, col0); ``None`` when they hold no cell."""
    width = max((len(row) for row in rows), default=0)
    return _Box(row0, col0, row0 + len(rows), col0 + width) if rows and width else None


def _written(
    book: _Book, sheet: _Sheet, box: _Box | None, rows: list[list[SeedCell]], echo: str | None
) -> JsonObject:
    """An UpdateValuesResponse; ``echo`` is the render option when values are to be returned."""
    result: JsonObject = {"spreadsheetId": book.key}
    if box is None:
        return result
    result.update(
        updatedRange=_a1(sheet, box),
        updatedRows=len(rows),
        updatedColumns=box.col1 - box.col0,
        updatedCells=sum(len(row) for row in rows),
    )
    if echo is not None:
        result["updatedData"] = _value_range(sheet, box, echo, "ROWS")
    return result


@dataclass(frozen=True)
class _WriteOptions:
    input: str
    major: str = "ROWS"
    echo: str | None = None  # the render option of values returned in the response, if any


@dataclass(frozen=True)
class _Update:
    """One range written: its sheet, the block it covers (``None`` when no cell), the reply."""

    sheet: _Sheet
    box: _Box | None
    reply: JsonObject


def _update(book: _Book, range_text: str, values: object, options: _WriteOptions) -> _Update:
    target = _resolve(book, range_text)
    rows = _input_rows(values, options.major)
    height, width = len(rows), max((len(row) for row in rows), default=0)
    _check_fits(target, height, width)
    sheet, span = target.sheet, target.span
    # Unlike append, an update never grows the grid: Sheets answers 400 instead.
    if height and span.row0 + height > sheet.row_count:
        raise _grid_error(sheet, sheet.row_count, span.col0)
    if width and span.col0 + width > sheet.column_count:
        raise _grid_error(sheet, span.row0, sheet.column_count)
    _put_rows(sheet, span.row0, span.col0, rows, options.input)
    box = _block(span.row0, span.col0, rows)
    return _Update(sheet, box, _written(book, sheet, box, rows, options.echo))


def _find_table(sheet: _Sheet, box: _Box) -> _Box | None:
    """The first block of consecutive non-empty rows in ``box``: what append writes after."""
    used_cols: dict[int, list[int]] = {}
    for r, c in sheet.cells:
        if box.holds(r, c):
            used_cols.setdefault(r, []).append(c)
    if not used_cols:
        return None
    top = bottom = min(used_cols)
    while bottom + 1 in used_cols:
        bottom += 1
    cols = [c for r in range(top, bottom + 1) for c in used_cols[r]]
    return _Box(top, min(cols), bottom + 1, max(cols) + 1)


def _insert_rows(sheet: _Sheet, at: int, count: int) -> None:
    moved = {((r + count if r >= at else r), c): cell for (r, c), cell in sheet.cells.items()}
    sheet.cells = moved
    sheet.row_count += count


def _append(
    book: _Book, range_text: str, values: object, options: _WriteOptions, insert: str
) -> JsonObject:
    target = _resolve(book, range_text)
    sheet, span = target.sheet, target.span
    rows = _input_rows(values, options.major)
    row1 = sheet.row_count if span.row1 is None else max(span.row1, sheet.row_count)
    col1 = sheet.column_count if span.col1 is None else span.col1
    table = _find_table(sheet, _Box(span.row0, span.col0, row1, col1))
    row0, col0 = (table.row1, table.col0) if table else (span.row0, span.col0)
    if insert == "INSERT_ROWS":
        _insert_rows(sheet, row0, len(rows))
    # Append is the one write that grows the grid to fit.
    width = max((len(row) for row in rows), default=0)
    sheet.row_count = max(sheet.row_count, row0 + len(rows))
    sheet.column_count = max(sheet.column_count, col0 + width)
    _put_rows(sheet, row0, col0, rows, options.input)
    result: JsonObject = {"spreadsheetId": book.key}
    if table is not None:
        result["tableRange"] = _a1(sheet, table)
    result["updates"] = _written(book, sheet, _block(row0, col0, rows), rows, options.echo)
    return result


def _clear(book: _Book, range_text: str) -> str:
    target = _resolve(book, range_text)
    box = _clip(target)
    target.sheet.clear(box)
    return _a1(target.sheet, box)


# --------------------------------------------------------------------------- sheet requests


def _sheet_id_for(book: _Book, title: str) -> int:
    """A sheet id like Google's (a large int), deterministic, unused in ``book``."""
    digest = hashlib.sha256(f"{book.key}/{title}".encode()).digest()
    candidate = int.from_bytes(digest[:4], "big") % 2_000_000_000 + 1
    taken = {s.sheet_id for s in book.sheets}
    while candidate in taken:
        candidate += 1
    return candidate


def _next_title(book: _Book) -> str:
    n = len(book.sheets) + 1
    while book.sheet_named(f"Sheet{n}") is not None:
        n += 1
    return f"Sheet{n}"


def _title_taken(book: _Book, title: str, where: str, ignore: _Sheet | None = None) -> None:
    other = book.sheet_named(title)
    if other is not None and other is not ignore:
        raise _ApiError(
            400,
            f'Invalid {where}: A sheet with the name "{title}" already exists. '
            "Please enter another name.",
        )


def _sheet_arg(book: _Book, args: Mapping[str, Any], where: str) -> _Sheet:
    sheet = book.sheet_with_id(args.get("sheetId", 0))
    if sheet is None:
        raise _ApiError(400, f"Invalid {where}: No grid with id: {args.get('sheetId', 0)}")
    return sheet


def _grid_size(props: Mapping[str, Any], where: str) -> tuple[int | None, int | None]:
    grid = props.get("gridProperties") or {}
    sizes = grid.get("rowCount"), grid.get("columnCount")
    for size in sizes:
        if size is not None and (not isinstance(size, int) or size < 1):
            raise _ApiError(400, f"Invalid {where}: grid sizes must be positive integers")
    return sizes


def _move(book: _Book, sheet: _Sheet, index: object) -> None:
    book.sheets.remove(sheet)
    position = index if isinstance(index, int) else len(book.sheets)
    book.sheets.insert(max(0, min(position, len(book.sheets))), sheet)


def _add_sheet(book: _Book, args: Mapping[str, Any], where: str) -> JsonObject:
    props = args.get("properties") or {}
    title = props.get("title") or _next_title(book)
    _title_taken(book, title, where)
    sheet_id = props.get("sheetId")
    if sheet_id is None:
        sheet_id = _sheet_id_for(book, title)
    elif book.sheet_with_id(sheet_id) is not None:
        raise _ApiError(400, f"Invalid {where}: A sheet with id {sheet_id} already exists.")
    rows, cols = _grid_size(props, where)
    sheet = _Sheet(sheet_id, title, rows or DEFAULT_ROWS, cols or DEFAULT_COLUMNS)
    book.sheets.append(sheet)
    _move(book, sheet, props.get("index"))
    return {"addSheet": {"properties": sheet.properties(book.sheets.index(sheet))}}


def _delete_sheet(book: _Book, args: Mapping[str, Any], where: str) -> JsonObject:
    sheet = _sheet_arg(book, args, where)
    if len(book.sheets) == 1:
        raise _ApiError(400, f"Invalid {where}: You can't remove all the sheets in a document.")
    book.sheets.remove(sheet)
    return {}


_PROPERTY_FIELDS = ("title", "index", "gridProperties.rowCount", "gridProperties.columnCount")


def _field_mask(args: Mapping[str, Any], where: str) -> set[str]:
    mask = str(args.get("fields") or "")
    if not mask:
        raise _ApiError(400, f"Invalid {where}: 'fields' is required")
    fields = {part.strip().replace("/", ".") for part in mask.split(",")}
    if "*" in fields:
        return set(_PROPERTY_FIELDS)
    if "gridProperties" in fields:
        fields |= {"gridProperties.rowCount", "gridProperties.columnCount"}
        fields.discard("gridProperties")
    unknown = sorted(fields - set(_PROPERTY_FIELDS))
    if unknown:
        raise _ApiError(501, f"The Sheets emulator cannot update {', '.join(unknown)} ({where})")
    return fields


def _update_sheet_properties(book: _Book, args: Mapping[str, Any], where: str) -> JsonObject:
    props = args.get("properties") or {}
    sheet = _sheet_arg(book, props, where)
    fields = _field_mask(args, where)
    if "title" in fields:
        title = props.get("title")
        if not isinstance(title, str) or not title:
            raise _ApiError(400, f"Invalid {where}: a sheet needs a non-empty title")
        _title_taken(book, title, where, ignore=sheet)
        sheet.title = title
    rows, cols = _grid_size(props, where)
    sheet.row_count = rows if "gridProperties.rowCount" in fields and rows else sheet.row_count
    sheet.column_count = (
        cols if "gridProperties.columnCount" in fields and cols else sheet.column_count
    )
    # Shrinking a grid deletes what falls outside it.
    grid = _Box(0, 0, sheet.row_count, sheet.column_count)
    sheet.cells = {key: cell for key, cell in sheet.cells.items() if grid.holds(*key)}
    if "index" in fields:
        _move(book, sheet, props.get("index"))
    return {}


_SheetRequest = Callable[[_Book, Mapping[str, Any], str], JsonObject]
_SHEET_REQUESTS: dict[str, _SheetRequest] = {
    "addSheet": _add_sheet,
    "deleteSheet": _delete_sheet,
    "updateSheetProperties": _update_sheet_properties,
}


def _sheet_requests(book: _Book, body: Mapping[str, Any]) -> JsonObject:
    requests = body.get("requests")
    if not isinstance(requests, list):
        raise _ApiError(400, "Invalid JSON payload received. 'requests' must be a list.")
    replies = []
    for i, item in enumerate(requests):
        if not isinstance(item, dict) or len(item) != 1:
            raise _ApiError(400, f"Invalid requests[{i}]: exactly one kind of request must be set")
        ((kind, args),) = item.items()
        handler = _SHEET_REQUESTS.get(kind)
        if handler is None:
            supported = ", ".join(sorted(_SHEET_REQUESTS))
            raise _ApiError(
                501,
                f"The Sheets emulator does not implement requests[{i}].{kind} "
                f"(it knows {supported})",
            )
        replies.append(
            handler(book, args if isinstance(args, dict) else {}, f"requests[{i}].{kind}")
        )
    return {"spreadsheetId": book.key, "replies": replies}


# --------------------------------------------------------------------------- seeding

_SEED_FIELDS = ("key", "sheets", "title")


def _key_for(name: str) -> str:
    """A 44-character id shaped like Google's, the same for the same name on every run."""
    digest = base64.urlsafe_b64encode(hashlib.sha256(name.encode()).digest()).decode()
    return "1" + digest.rstrip("=")[:43]


def _seed_cell(value: object, where: str) -> _Cell | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str | int | float | bool):
        raise ValueError(f"{where}: a cell must be str, int, float, bool or None, not {value!r}")
    try:
        return _input_cell(value, "RAW")
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None


def _seed_sheet(book: _Book, title: str, rows: object, where: str) -> _Sheet:
    if not isinstance(rows, list | tuple) or not all(isinstance(r, list | tuple) for r in rows):
        raise ValueError(f"{where}: a sheet is a list of rows, each a list of cells")
    sheet_id = 0 if not book.sheets else _sheet_id_for(book, title)
    width = max((len(row) for row in rows), default=0)
    sheet = _Sheet(sheet_id, title, max(DEFAULT_ROWS, len(rows)), max(DEFAULT_COLUMNS, width))
    for r, row in enumerate(rows):
        for c, value in enumerate(row):
            sheet.put(r, c, _seed_cell(value, f"{where}[{r}][{c}]"))
    return sheet


def _seed_book(name: str, spec: Mapping[str, Any]) -> _Book:
    where = f"spreadsheets[{name!r}]"
    unknown = sorted(set(spec) - set(_SEED_FIELDS))
    if unknown:
        raise ValueError(f"{where}: unknown field(s) {unknown}; valid: {list(_SEED_FIELDS)}")
    book = _Book(str(spec.get("key") or _key_for(name)), str(spec.get("title") or name), [])
    sheets: Mapping[str, object] = spec.get("sheets") or {"Sheet1": []}
    for title, rows in sheets.items():
        if not isinstance(title, str) or not title:
            raise ValueError(f"{where}.sheets: a sheet title must be a non-empty string")
        if book.sheet_named(title) is not None:
            raise ValueError(f"{where}.sheets: two sheets named {title!r} (names ignore case)")
        book.sheets.append(_seed_sheet(book, title, rows, f"{where}.sheets[{title!r}]"))
    return book


# --------------------------------------------------------------------------- requests


def _error(
    status: int,
    message: str,
    headers: dict[str, str] | None = None,
    details: list[JsonObject] | None = None,
) -> Response:
    """An error body shaped as Google sends it."""
    error: JsonObject = {
        "code": status,
        "message": message,
        "status": _STATUS_NAMES.get(status, "UNKNOWN"),
    }
    if details:
        error["details"] = details
    return Response(status, {"error": error}, headers or {})


def _quota_details(request: Request) -> list[JsonObject]:
    """The ErrorInfo Sheets attaches to a 429: which per-minute quota ran out."""
    kind = "Read" if request.method == "GET" else "Write"
    return [
        {
            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
            "reason": "RATE_LIMIT_EXCEEDED",
            "domain": "googleapis.com",
            "metadata": {
                "consumer": "projects/0",
                "quota_limit": f"{kind}RequestsPerMinutePerUser",
                "quota_metric": f"sheets.googleapis.com/{kind.lower()}_requests",
                "service": "sheets.googleapis.com",
            },
        }
    ]


def _logged(request: Request) -> JsonObject:
    try:
        body: Any = request.json()
    except ValueError:
        body = request.body.decode("utf-8", "replace")
    return {
        "method": request.method,
        "path": unquote(request.path),
        "query": {name: list(values) for name, values in request.query.items()},
        "body": body,
    }


def _body(request: Request) -> JsonObject:
    try:
        data = request.json()
    except ValueError as exc:
        raise _ApiError(400, f"Invalid JSON payload received. {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise _ApiError(400, "Invalid JSON payload received. Expected an object.")
    return data


def _enum(value: object, allowed: tuple[str, ...], default: str, proto: str, name: str) -> str:
    if value is None:
        return default
    if value not in allowed:
        raise _ApiError(
            400,
            f"Invalid value at '{name}' (type.googleapis.com/google.apps.sheets.v4.{proto}), "
            f'"{value}"',
        )
    return str(value)


def _input_option(value: object) -> str:
    if value is None:
        raise _ApiError(400, "Invalid valueInputOption: INPUT_VALUE_OPTION_UNSPECIFIED")
    return _enum(value, INPUT_OPTIONS, "RAW", "ValueInputOption", "value_input_option")


def _flag(value: object) -> bool:
    return str(value).lower() == "true"


def _write_options(source: Mapping[str, Any], major: object = None) -> _WriteOptions:
    """Write options from a query (``param`` values) or a batch body."""
    echo = None
    if _flag(source.get("includeValuesInResponse")):
        echo = _enum(
            source.get("responseValueRenderOption"),
            RENDER_OPTIONS,
            FORMATTED,
            "ValueRenderOption",
            "response_value_render_option",
        )
    return _WriteOptions(
        input=_input_option(source.get("valueInputOption")),
        major=_enum(major, DIMENSIONS, "ROWS", "Dimension", "major_dimension"),
        echo=echo,
    )


def _query(request: Request) -> dict[str, str]:
    return {name: values[-1] for name, values in request.query.items() if values}


def _read_options(request: Request) -> tuple[str, str]:
    render = _enum(
        request.param("valueRenderOption"),
        RENDER_OPTIONS,
        FORMATTED,
        "ValueRenderOption",
        "value_render_option",
    )
    major = _enum(
        request.param("majorDimension"), DIMENSIONS, "ROWS", "Dimension", "major_dimension"
    )
    return render, major


def _read(book: _Book, range_text: str, render: str, major: str) -> JsonObject:
    target = _resolve(book, range_text)
    return _value_range(target.sheet, _clip(target), render, major)


def _values_batch_update(book: _Book, body: Mapping[str, Any]) -> JsonObject:
    data = body.get("data") or []
    if not isinstance(data, list):
        raise _ApiError(400, "Invalid JSON payload received. 'data' must be a list.")
    updates = []
    for i, item in enumerate(data):
        if not isinstance(item, dict):
            raise _ApiError(400, f"Invalid data[{i}]: {json.dumps(item)}")
        options = _write_options(body, item.get("majorDimension"))
        updates.append(_update(book, str(item.get("range", "")), item.get("values"), options))
    # Rows and columns are counted once however many ranges touch them, as Sheets does (two
    # rows A1:D1 and A4:D4 are 2 rows and 4 columns); a row of another sheet is another row.
    boxes = [(u.sheet.sheet_id, u.box) for u in updates if u.box is not None]
    rows = {(sheet, r) for sheet, box in boxes for r in range(box.row0, box.row1)}
    columns = {(sheet, c) for sheet, box in boxes for c in range(box.col0, box.col1)}
    return {
        "spreadsheetId": book.key,
        "totalUpdatedRows": len(rows),
        "totalUpdatedColumns": len(columns),
        "totalUpdatedCells": sum(u.reply.get("updatedCells", 0) for u in updates),
        "totalUpdatedSheets": len({sheet for sheet, _ in boxes}),
        "responses": [u.reply for u in updates],
    }


def _values_batch_clear(book: _Book, body: Mapping[str, Any]) -> JsonObject:
    ranges = body.get("ranges") or []
    return {"spreadsheetId": book.key, "clearedRanges": [_clear(book, str(r)) for r in ranges]}


def _values_batch_get(book: _Book, request: Request) -> JsonObject:
    render, major = _read_options(request)
    ranges = request.query.get("ranges", [])
    result: JsonObject = {"spreadsheetId": book.key}
    if ranges:
        result["valueRanges"] = [_read(book, text, render, major) for text in ranges]
    return result


class SheetsEmulator:
    """The Google Sheets v4 REST API over in-memory spreadsheets; serve it with LoopbackServer."""

    name = "gsheets"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._books: dict[str, _Book] = {}
        self._faults: list[_Fault] = []
        self._requests = 0
        self._log: list[JsonObject] = []

    def seed(self, spreadsheets: Mapping[str, Mapping[str, Any]]) -> dict[str, str]:
        """Add (or replace) spreadsheets by name; returns ``{name: spreadsheet id}``.

        Each spec is ``{"key"?: id, "title"?: title, "sheets"?: {sheet title: [[cell, ...]]}}``;
        cells are str/int/float/bool/None, stored as given (as a RAW write would store them).
        """
        books = {name: _seed_book(name, spec) for name, spec in spreadsheets.items()}
        with self._lock:
            for book in books.values():
                self._books[book.key] = book
        return {name: book.key for name, book in books.items()}

    def reset(self) -> None:
        """Forget every spreadsheet, pending fault and request seen."""
        with self._lock:
            self._books.clear()
            self._faults.clear()
            self._requests = 0
            self._log.clear()

    def fail_next(
        self,
        status: int,
        message: str,
        *,
        times: int = 1,
        retry_after: int | str | None = None,
    ) -> None:
        """Answer the next ``times`` requests with a Google error body instead of serving them.

        ``retry_after`` goes out as the ``Retry-After`` header; text as it is (``"nan"``). A 429
        carries the ``details`` Sheets gives one (the read or write quota that ran out).
        """
        if not 400 <= status <= 599 or times < 1:
            raise ValueError("fail_next needs an HTTP error status (4xx/5xx) and times >= 1")
        with self._lock:
            self._faults.extend([_Fault(status, message, retry_after)] * times)

    def requests_for(self, method: str, path_prefix: str = "") -> list[JsonObject]:
        """Requests that arrived (failed ones included), oldest first, as ``{"method", "path",
        "query", "body"}`` with the path percent-decoded and a JSON body decoded (else its
        text)."""
        with self._lock:
            return [
                copy.deepcopy(entry)
                for entry in self._log
                if entry["method"] == method.upper() and entry["path"].startswith(path_prefix)
            ]

    def state(self) -> dict[str, Any]:
        with self._lock:
            spreadsheets = {
                key: {"title": book.title, "sheets": {s.title: s.dense() for s in book.sheets}}
                for key, book in self._books.items()
            }
            return {"spreadsheets": spreadsheets, "requests": self._requests}

    def handle(self, request: Request) -> Response:
        with self._lock:
            self._requests += 1
            self._log.append(_logged(request))
            if self._faults:
                fault = self._faults.pop(0)
                headers = (
                    {} if fault.retry_after is None else {"Retry-After": str(fault.retry_after)}
                )
                details = _quota_details(request) if fault.status == 429 else None
                return _error(fault.status, fault.message, headers, details)
            try:
                return Response(200, self._route(request))
            except _ApiError as exc:
                return _error(exc.status, exc.message)

    # Routing works on the raw path: a literal ':' marks a method (values:batchGet, …:clear),
    # while one inside a range arrives percent-encoded and is decoded only afterwards.
    def _route(self, request: Request) -> JsonObject:
        if not request.path.startswith(API_PREFIX):
            raise _ApiError(404, f"The Sheets emulator has no resource at {request.path}")
        head, *rest = request.path[len(API_PREFIX) :].split("/")
        key, _, method = head.partition(":")
        book = self._books.get(unquote(key))
        if book is None:
            raise _ApiError(404, "Requested entity was not found.")
        if not rest:
            return self._spreadsheet_route(book, request, method)
        if rest[0].startswith("values:") and len(rest) == 1:
            return self._values_batch_route(book, request, rest[0].partition(":")[2])
        if rest[0] == "values" and len(rest) >= 2:
            return self._values_route(book, request, "/".join(rest[1:]))
        raise _not_routed(request)

    def _spreadsheet_route(self, book: _Book, request: Request, method: str) -> JsonObject:
        if (request.method, method) == ("GET", ""):
            return book.resource()
        if (request.method, method) == ("POST", "batchUpdate"):
            body = _body(request)
            return self._change(book, lambda draft: _sheet_requests(draft, body))
        raise _not_routed(request)

    def _values_batch_route(self, book: _Book, request: Request, method: str) -> JsonObject:
        if (request.method, method) == ("GET", "batchGet"):
            return _values_batch_get(book, request)
        if (request.method, method) == ("POST", "batchUpdate"):
            body = _body(request)
            return self._change(book, lambda draft: _values_batch_update(draft, body))
        if (request.method, method) == ("POST", "batchClear"):
            body = _body(request)
            return self._change(book, lambda draft: _values_batch_clear(draft, body))
        raise _not_routed(request)

    def _values_route(self, book: _Book, request: Request, raw_range: str) -> JsonObject:
        encoded, colon, method = raw_range.rpartition(":")
        if not colon or method not in ("append", "clear"):
            encoded, method = raw_range, ""  # an unencoded ':' inside the range itself
        range_text = unquote(encoded)
        query = _query(request)
        if (request.method, method) == ("GET", ""):
            return _read(book, range_text, *_read_options(request))
        if (request.method, method) == ("PUT", ""):
            body = _body(request)
            options = _write_options(query, body.get("majorDimension"))
            return self._change(
                book, lambda draft: _update(draft, range_text, body.get("values"), options).reply
            )
        if (request.method, method) == ("POST", "append"):
            body = _body(request)
            options = _write_options(query, body.get("majorDimension"))
            insert = _enum(
                query.get("insertDataOption"),
                INSERT_OPTIONS,
                "OVERWRITE",
                "InsertDataOption",
                "insert_data_option",
            )
            return self._change(
                book, lambda draft: _append(draft, range_text, body.get("values"), options, insert)
            )
        if (request.method, method) == ("POST", "clear"):
            return self._change(
                book,
                lambda draft: {
                    "spreadsheetId": draft.key,
                    "clearedRange": _clear(draft, range_text),
                },
            )
        raise _not_routed(request)

    def _change(self, book: _Book, change: Callable[[_Book], JsonObject]) -> JsonObject:
        """Apply ``change`` to a copy and keep it only if it succeeds: requests are atomic."""
        draft = book.clone()
        result = change(draft)
        self._books[book.key] = draft
        return result


def _not_routed(request: Request) -> _ApiError:
    return _ApiError(404, f"The Sheets emulator does not serve {request.method} {request.path}")
