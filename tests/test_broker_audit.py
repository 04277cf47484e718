"""The broker's audit log: a hash chain that shows an edited or removed line, and holds
together when many threads and processes append at once."""

from __future__ import annotations

import json
import multiprocessing
import stat
import threading
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any

from dq_agent.broker.audit import GENESIS, AuditCheck, AuditLog

NOW = datetime(2026, 12, 4, 10, 0, tzinfo=UTC)


def _append(log: AuditLog, n: int, *, who: str = "main", outcome: str = "ok") -> dict[str, Any]:
    return log.append(
        at=NOW + timedelta(seconds=n),
        token_id="3fa2c1d0e9b8",
        suite="crm_opportunities",
        operation="check",
        target=f"{who}-{n}",
        outcome=outcome,
    )


def _filled(tmp_path: Path, count: int = 5) -> AuditLog:
    log = AuditLog(tmp_path / "audit.log")
    for n in range(count):
        _append(log, n)
    return log


def test_appended_lines_form_a_chain(tmp_path: Path) -> None:
    log = _filled(tmp_path)
    assert log.verify() == AuditCheck(lines=5, ok=True, first_bad_line=None, problem=None)
    entries = log.entries()
    assert [e["seq"] for e in entries] == [1, 2, 3, 4, 5]
    assert entries[0]["prev"] == GENESIS
    for before, after in pairwise(entries):
        assert after["prev"] == before["hash"]
    assert entries[0]["at"] == "2026-12-04T10:00:00+00:00"
    assert stat.S_IMODE(log.path.stat().st_mode) == 0o600


def test_append_returns_the_line_as_written(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.log")
    written = log.append(
        at=NOW,
        token_id=None,
        suite=None,
        operation="restart",
        target="airflow:crm_sync",
        outcome="refused",
        detail="token 3fa2c1d0e9b8 may not `restart`; it allows: check",
        ledger_id=7,
    )
    assert json.loads(log.path.read_text()) == written
    assert written["ledger_id"] == 7 and written["token"] is None


def test_an_edited_line_is_found(tmp_path: Path) -> None:
    log = _filled(tmp_path)
    lines = log.path.read_text().splitlines()
    assert '"outcome":"ok"' in lines[2]
    lines[2] = lines[2].replace('"outcome":"ok"', '"outcome":"ol"')
    log.path.write_text("\n".join(lines) + "\n")
    assert log.verify() == AuditCheck(
        lines=5,
        ok=False,
        first_bad_line=3,
        problem="line 3: its hash does not match its content (edited?)",
    )


def test_a_removed_line_is_found(tmp_path: Path) -> None:
    log = _filled(tmp_path)
    lines = log.path.read_text().splitlines()
    del lines[2]
    log.path.write_text("\n".join(lines) + "\n")
    assert log.verify() == AuditCheck(
        lines=4,
        ok=False,
        first_bad_line=3,
        problem="line 3: does not follow line 2 (prev hash differs: a line was removed or reordered)",
    )


def test_a_removed_first_line_is_found(tmp_path: Path) -> None:
    log = _filled(tmp_path)
    lines = log.path.read_text().splitlines()
    log.path.write_text("\n".join(lines[1:]) + "\n")
    check = log.verify()
    assert (check.ok, check.first_bad_line) == (False, 1)
    assert check.problem == (
        "line 1: does not start the chain (prev is not 64 zeros: lines were removed?)"
    )


def test_a_line_cut_short_is_found(tmp_path: Path) -> None:
    log = _filled(tmp_path, 2)
    with log.path.open("a") as file:
        file.write('{"seq":3,"at":')
    assert log.verify() == AuditCheck(
        lines=3,
        ok=False,
        first_bad_line=3,
        problem="line 3: has no line end (a write was cut short)",
    )


def _append_from_a_child(path: Path, go: Any) -> None:
    go.wait()
    log = AuditLog(path)
    for n in range(50):
        _append(log, n, who="child")


def test_threads_and_a_process_appending_at_once_keep_the_chain(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    context = multiprocessing.get_context("fork")
    go = context.Event()
    # Forked before the threads exist, so the child inherits no lock held by one of them.
    child = context.Process(target=_append_from_a_child, args=(path, go))
    child.start()
    start = threading.Barrier(4)

    def append_many(who: str) -> None:
        log = AuditLog(path)
        start.wait()
        for n in range(50):
            _append(log, n, who=who)

    threads = [threading.Thread(target=append_many, args=(f"thread{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    go.set()
    for thread in threads:
        thread.join()
    child.join()
    assert child.exitcode == 0

    log = AuditLog(path)
    assert log.verify() == AuditCheck(lines=250, ok=True, first_bad_line=None, problem=None)
    entries = log.entries()
    assert [e["seq"] for e in entries] == list(range(1, 251))
    targets = [e["target"] for e in entries]
    assert len(set(targets)) == 250
    assert sum(t.startswith("child-") for t in targets) == 50


def test_a_missing_or_empty_file_is_an_intact_empty_log(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.log")
    assert log.verify() == AuditCheck(lines=0, ok=True, first_bad_line=None, problem=None)
    assert log.entries() == []
    assert not log.path.exists()
    log.path.touch()
    assert log.verify() == AuditCheck(lines=0, ok=True, first_bad_line=None, problem=None)


def test_entries_gives_the_last_ones_oldest_first(tmp_path: Path) -> None:
    log = _filled(tmp_path)
    assert [e["seq"] for e in log.entries(limit=2)] == [4, 5]
    assert log.entries(limit=0) == []
    assert len(log.entries(limit=50)) == 5


def test_the_chain_continues_past_a_long_line(tmp_path: Path) -> None:
    # The last line is found by reading back from the end in blocks; one longer than a block
    # must still be read whole.
    log = AuditLog(tmp_path / "audit.log")
    first = log.append(
        at=NOW,
        token_id=None,
        suite="crm_opportunities",
        operation="check",
        target=None,
        outcome="error",
        detail="é" * 10_000,
    )
    second = _append(log, 1)
    assert (second["seq"], second["prev"]) == (2, first["hash"])
    assert log.verify().ok
