"""``check --findings-out DIR``: every failing record of every failed check, one file each.

The report lists a check's first ``max_findings`` records; this writes all of them, read again
from the source a chunk at a time while it is still open (:attr:`CheckResult.records`), to
``DIR/<suite>/<check>.jsonl`` (or ``.parquet``). A check that cannot read its records again
(one run by Great Expectations, ``fat_finger``) writes the findings it reported, and says so.
In a sealed project (``broker:`` in ``dq-agent.yml``) the records come from the broker's
``read``, written as they arrive (:meth:`FindingsExport.from_read`).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import sqlalchemy as sa

from dq_agent.checks.base import plural
from dq_agent.config.models import Suite
from dq_agent.errors import DqAgentError, SourceError
from dq_agent.results import CheckResult, Finding, SuiteResult, to_jsonable
from dq_agent.sources import Relation, Source
from dq_agent.sources.sql import translate

if TYPE_CHECKING:
    from dq_agent.broker.client import ReadLine

FORMATS = ("jsonl", "parquet")
# What each line (or Parquet row) holds.
FIELDS = ("key", "column", "observed", "proposed", "action", "reason")
# Records written at a time (a Parquet row group), and how often a long export says how far.
BATCH = 10_000
PROGRESS_EVERY = 100_000


@dataclass(frozen=True)
class Written:
    """One file written: whose records, how many, and whether they are all of them."""

    suite: str
    check: str
    path: Path
    count: int
    # The suite's max_findings, when only the findings the report lists could be written.
    capped_at: int | None = None

    def __str__(self) -> str:
        line = (
            f"wrote {plural(self.count, 'failing record')} of {self.suite} / {self.check} "
            f"to {self.path}"
        )
        if self.capped_at is not None:
            line += (
                f" (capped at max_findings={self.capped_at}: "
                "this check's records cannot be streamed yet)"
            )
        return line


class FindingsExport:
    """A suite hook for :func:`~dq_agent.engine.run_checks`: writes each failed check's
    records under ``folder`` while the suite's source is open (or, in a sealed project, as the
    broker streams them: :meth:`from_read`); ``written`` lists the files."""

    def __init__(self, folder: Path, fmt: str, *, say: Callable[[str], None]) -> None:
        if fmt not in FORMATS:
            raise ValueError(f"unknown findings format {fmt!r}; known: {', '.join(FORMATS)}")
        if fmt == "parquet":
            try:
                import pyarrow.parquet  # noqa: F401
            except ImportError:
                raise DqAgentError(
                    "--findings-format parquet needs pyarrow, which is not installed: "
                    "pip install pyarrow"
                ) from None
        self.folder = folder
        self.fmt = fmt
        self.say = say
        self.written: list[Written] = []

    def __call__(
        self, suite: Suite, source: Source, relation: Relation, result: SuiteResult
    ) -> None:
        taken: set[str] = set()
        for check in result.checks:
            if has_records(check):
                capped_at = suite.max_findings if check.records is None else None
                records = failing_records(check, relation, f"{suite.suite} / {check.name}")
                self.written.append(self.write(suite.suite, check.name, records, capped_at, taken))

    def from_read(self, suite: str, lines: Iterable[ReadLine]) -> SuiteResult:
        """The suite's result as the broker's ``read`` streams it, each check's records
        written as they arrive; a stream that ends before the result raises SourceError."""
        taken: set[str] = set()
        reading = iter(lines)
        line = next(reading, None)
        while line is not None and not isinstance(line, Finding | SuiteResult):
            records = _Records(reading)
            self.written.append(self.write(suite, line.name, records, line.capped_at, taken))
            line = records.following
        if not isinstance(line, SuiteResult):
            raise SourceError(
                f"the broker's read of suite {suite!r} did not end with its result",
                transient=True,
            )
        return line

    def write(
        self,
        suite: str,
        check: str,
        records: Iterable[Finding],
        capped_at: int | None,
        taken: set[str],
    ) -> Written:
        """Write one check's ``records`` to its file (``capped_at``: they are only the
        findings the report lists); ``taken`` holds the suite's file names so far."""
        label = f"{suite} / {check}"
        path = self.folder / _safe(suite, "suite") / self._file_name(check, taken)
        # Written aside and renamed when complete: a file under its name holds every record.
        partial = path.with_name(path.name + ".partial")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            count = self._write(partial, records, label)
            os.replace(partial, path)
        except OSError as exc:
            partial.unlink(missing_ok=True)
            raise DqAgentError(f"cannot write {path}: {exc.strerror or exc}") from exc
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        return Written(suite, check, path, count, capped_at)

    def _write(self, path: Path, findings: Iterable[Finding], label: str) -> int:
        writer: _Writer = _Parquet(path) if self.fmt == "parquet" else _JsonLines(path)
        count = 0
        try:
            for batch in _batches(findings, BATCH):
                writer.write([_row(finding) for finding in batch])
                before, count = count, count + len(batch)
                if count // PROGRESS_EVERY > before // PROGRESS_EVERY:
                    self.say(f"{label}: {count:,} failing records written so far")
        finally:
            writer.close()
        return count

    def _file_name(self, check: str, taken: set[str]) -> str:
        """The check's name made safe for a file name, unique in its suite's folder (also
        where case does not count)."""
        stem = candidate = _safe(check, "check")
        number = 1
        while candidate.lower() in taken:
            number += 1
            candidate = f"{stem}-{number}"
        taken.add(candidate.lower())
        return f"{candidate}.{self.fmt}"


def has_records(check: CheckResult) -> bool:
    """Whether ``check`` failed (or warned) with records to write."""
    return check.status in ("warn", "fail") and bool(check.records or check.findings)


def failing_records(check: CheckResult, relation: Relation, label: str) -> Iterator[Finding]:
    """Every failing record of ``check``, read again from ``relation`` a chunk at a time (the
    findings it reported when it cannot), the source's errors as ours."""
    if check.records is None:
        yield from check.findings
        return
    try:
        yield from check.records()
    except sa.exc.OperationalError as exc:
        raise translate(exc, relation.engine.url) from exc
    except sa.exc.SQLAlchemyError as exc:
        first = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise DqAgentError(f"reading the failing records of {label}: {first}") from exc


class _Records:
    """The findings at the head of a ``read`` stream; :attr:`following` is the line after
    them once they are read (a check's header, or the suite's result)."""

    def __init__(self, lines: Iterator[ReadLine]) -> None:
        self._lines = lines
        self.following: ReadLine | None = None

    def __iter__(self) -> Iterator[Finding]:
        for line in self._lines:
            if not isinstance(line, Finding):
                self.following = line
                return
            yield line


def _safe(name: str, fallback: str) -> str:
    """``expect_column_values_to_not_be_null(amount)`` → ``…_not_be_null_amount``."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._-") or fallback


def _row(finding: Finding) -> dict[str, Any]:
    return {
        "key": to_jsonable(finding.key),
        "column": finding.column,
        "observed": to_jsonable(finding.observed),
        "proposed": to_jsonable(finding.proposed),
        "action": finding.action,
        "reason": finding.reason,
    }


def _batches(findings: Iterable[Finding], size: int) -> Iterator[list[Finding]]:
    records = iter(findings)
    while batch := list(islice(records, size)):
        yield batch


class _Writer(Protocol):
    def write(self, rows: list[dict[str, Any]]) -> None: ...

    def close(self) -> None: ...


class _JsonLines:
    def __init__(self, path: Path) -> None:
        self.file = path.open("w", encoding="utf-8")

    def write(self, rows: list[dict[str, Any]]) -> None:
        self.file.writelines(_json(row) + "\n" for row in rows)

    def close(self) -> None:
        self.file.close()


class _Parquet:
    """Every column is text, ``key``, ``observed`` and ``proposed`` JSON text (null for
    none): a column's values need not share one type (SQLite keeps what it is given)."""

    def __init__(self, path: Path) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        self.table = pa.Table
        self.schema = pa.schema([(name, pa.string()) for name in FIELDS])
        self.writer = pq.ParquetWriter(path, self.schema)

    def write(self, rows: list[dict[str, Any]]) -> None:
        texts = [
            {**row, **{k: None if row[k] is None else _json(row[k]) for k in _AS_JSON}}
            for row in rows
        ]
        self.writer.write_table(self.table.from_pylist(texts, schema=self.schema))

    def close(self) -> None:
        self.writer.close()


_AS_JSON = ("key", "observed", "proposed")


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)
