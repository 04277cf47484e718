"""``check --findings-out DIR``: every failing record of every failed check, one file each.

The report lists a check's first ``max_findings`` records; this writes all of them, read again
from the source a chunk at a time while it is still open (:attr:`CheckResult.records`), to
``DIR/<suite>/<check>.jsonl`` (or ``.parquet``). A check that cannot read its records again
(one run by Great Expectations, ``fat_finger``) writes the findings it reported, and says so.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any, Protocol

import sqlalchemy as sa

from dq_agent.checks.base import plural
from dq_agent.config.models import Suite
from dq_agent.errors import DqAgentError
from dq_agent.results import CheckResult, Finding, SuiteResult, to_jsonable
from dq_agent.sources import Relation, Source
from dq_agent.sources.sql import translate

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
    records under ``folder`` while the suite's source is open; ``written`` lists the files."""

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
            if check.status in ("warn", "fail") and (check.records or check.findings):
                self.written.append(self._export(suite, relation, check, taken))

    def _export(
        self, suite: Suite, relation: Relation, check: CheckResult, taken: set[str]
    ) -> Written:
        label = f"{suite.suite} / {check.name}"
        path = self.folder / _safe(suite.suite, "suite") / self._file_name(check.name, taken)
        findings = check.findings if check.records is None else check.records()
        # Written aside and renamed when complete: a file under its name holds every record.
        partial = path.with_name(path.name + ".partial")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            count = self._write(partial, findings, label)
            os.replace(partial, path)
        except OSError as exc:
            raise DqAgentError(f"cannot write {path}: {exc.strerror or exc}") from exc
        except sa.exc.OperationalError as exc:
            raise translate(exc, relation.engine.url) from exc
        except sa.exc.SQLAlchemyError as exc:
            first = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
            raise DqAgentError(f"reading the failing records of {label}: {first}") from exc
        capped_at = suite.max_findings if check.records is None else None
        return Written(suite.suite, check.name, path, count, capped_at)

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
