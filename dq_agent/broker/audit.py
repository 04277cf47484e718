"""The broker's audit log: one JSON line per call, each chained to the one before by hash.

Each line's ``hash`` covers its content and the previous line's hash, so editing, removing or
reordering a line breaks the chain from there on. Rewriting the whole tail with fresh hashes
is not caught by the file alone: keep the latest hash somewhere else to catch that too.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dq_agent.errors import DqAgentError

__all__ = ["AUDIT_FILE", "GENESIS", "AuditCheck", "AuditError", "AuditLog"]

# The file in the broker's folder that holds it.
AUDIT_FILE = "audit.log"
# The ``prev`` of the first line.
GENESIS = "0" * 64

_KEYS = ("seq", "at", "token", "suite", "operation", "target", "outcome", "detail", "ledger_id")


class AuditError(DqAgentError):
    """The audit log cannot be appended to (its last line is cut short or unreadable); the
    broker must not act while it cannot record what it does."""


@dataclass(frozen=True)
class AuditCheck:
    """What :meth:`AuditLog.verify` found: every line's place in the chain, or the first break."""

    lines: int
    ok: bool
    first_bad_line: int | None
    problem: str | None


class AuditLog:
    """An append-only, hash-chained JSON-lines file, safe to append to from many threads and
    processes at once."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def append(
        self,
        *,
        at: datetime,
        token_id: str | None,
        suite: str | None,
        operation: str,
        target: str | None,
        outcome: str,
        detail: str = "",
        ledger_id: int | None = None,
    ) -> dict[str, Any]:
        """Write one line for one broker call; returns it as written, with its seq and hash."""
        if at.tzinfo is None:
            raise ValueError(f"expected a timezone-aware time, got naive {at.isoformat()}")
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        try:
            # The lock spans reading the last line and writing the next, so no two writers
            # can take the same seq; closing the file releases it.
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                last = _last_line(fd)
            except AuditError as exc:
                raise AuditError(
                    f"{self.path}: {exc}; run verify to see where the log broke"
                ) from exc
            if last is None:
                seq, prev = 1, GENESIS
            else:
                try:
                    previous = json.loads(last)
                    seq, prev = int(previous["seq"]) + 1, str(previous["hash"])
                except (ValueError, TypeError, KeyError) as exc:
                    raise AuditError(
                        f"{self.path}: the last line is not an audit entry ({exc}); "
                        "run verify to see where the log broke"
                    ) from exc
            entry: dict[str, Any] = {
                "seq": seq,
                "at": at.astimezone(UTC).isoformat(),
                "token": token_id,
                "suite": suite,
                "operation": operation,
                "target": target,
                "outcome": outcome,
                "detail": detail,
                "ledger_id": ledger_id,
                "prev": prev,
            }
            entry["hash"] = _hash(entry)
            _write_all(fd, (_canonical(entry) + "\n").encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        return entry

    def verify(self) -> AuditCheck:
        """Check every line: it parses, its seq follows, its prev is the previous line's hash,
        and its hash matches its content. An empty or missing file is a valid empty log."""
        lines = 0
        problem: str | None = None
        first_bad: int | None = None
        prev = GENESIS
        with self._reading() as raw_lines:
            for number, raw in enumerate(raw_lines, start=1):
                lines = number
                if problem is not None:
                    continue  # only counting the lines now
                problem = _line_problem(number, raw, prev)
                if problem is not None:
                    first_bad = number
                else:
                    prev = json.loads(raw)["hash"]
        return AuditCheck(
            lines=lines, ok=problem is None, first_bad_line=first_bad, problem=problem
        )

    def entries(self, *, limit: int | None = None) -> list[dict[str, Any]]:
        """The last ``limit`` entries (all when None), oldest first."""
        if limit is not None and limit < 0:
            raise ValueError(f"limit must be 0 or more, got {limit}")
        with self._reading() as raw_lines:
            kept = deque(raw_lines, maxlen=limit)
        return [json.loads(raw) for raw in kept]

    @contextmanager
    def _reading(self) -> Iterator[Iterator[bytes]]:
        """The file's lines under a shared lock, so a line being written is never half read."""
        try:
            file = self.path.open("rb")
        except FileNotFoundError:
            yield iter(())
            return
        with file:
            fcntl.flock(file.fileno(), fcntl.LOCK_SH)
            yield iter(file)


def _line_problem(number: int, raw: bytes, prev: str) -> str | None:
    """What is wrong with line ``number``, given the hash the line before it ended with."""
    if not raw.endswith(b"\n"):
        return f"line {number}: has no line end (a write was cut short)"
    try:
        entry = json.loads(raw)
    except ValueError:
        return f"line {number}: is not valid JSON"
    if not isinstance(entry, dict) or set(entry) != {*_KEYS, "prev", "hash"}:
        return f"line {number}: is not an audit entry (its keys differ)"
    content = {key: value for key, value in entry.items() if key != "hash"}
    if _hash(content) != entry["hash"]:
        return f"line {number}: its hash does not match its content (edited?)"
    if entry["prev"] != prev:
        if number == 1:
            return "line 1: does not start the chain (prev is not 64 zeros: lines were removed?)"
        return (
            f"line {number}: does not follow line {number - 1} "
            "(prev hash differs: a line was removed or reordered)"
        )
    if entry["seq"] != number:
        return f"line {number}: its seq is {entry['seq']!r}, expected {number}"
    return None


def _canonical(entry: dict[str, Any]) -> str:
    return json.dumps(entry, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _hash(content: dict[str, Any]) -> str:
    """The sha256 of an entry's canonical JSON, without its own hash."""
    return hashlib.sha256(_canonical(content).encode()).hexdigest()


def _last_line(fd: int) -> bytes | None:
    """The file's last line without its line end (None when the file is empty), read back
    from the end in blocks rather than reading the whole log."""
    size = os.fstat(fd).st_size
    if size == 0:
        return None
    if os.pread(fd, 1, size - 1) != b"\n":
        raise AuditError("its last line has no line end (a write was cut short)")
    tail = b""
    position = size
    while position > 0:
        step = min(4096, position)
        position -= step
        tail = os.pread(fd, step, position) + tail
        start = tail.rfind(b"\n", 0, len(tail) - 1)
        if start >= 0:
            return tail[start + 1 : -1]
    return tail[:-1]


def _write_all(fd: int, data: bytes) -> None:
    # os.write may write fewer bytes than asked; one line must land whole.
    while data:
        written = os.write(fd, data)
        data = data[written:]
