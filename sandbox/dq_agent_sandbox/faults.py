"""Faults on demand for the sandbox's emulators: chosen requests answered with an error, or a
person's edit made just before the agent's write.

A faults file (``dq-agent sandbox --faults FILE``) maps a service to its faults, each taken by
the next requests it matches, ``times`` of them (default 1)::

    salesforce:
      - {status: 503, code: SERVER_UNAVAILABLE, message: down for maintenance, times: 2}
      - method: PATCH                          # the agent's write of one record …
        path: /sobjects/Opportunity/006Dn0000040000042
        edit: {Amount: 1000000}                # … finds the owner typed this a moment before
        by: 005Dn000001AbCdIAK                 # as this user (LastModifiedById)
    gsheets:
      - {status: 429, message: Quota exceeded, retry_after: 5}
    slack:
      - {status: 429, retry_after: 1}          # or {error: channel_not_found}
    airflow:
      - {status: 503, detail: scheduler restarting, path: /dagRuns}

``method`` and ``path`` (a regular expression searched in the request's path) narrow which
requests a fault takes; without them it takes the next ones. An error is answered the way the
service answers it (its own status, body and headers).
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from dq_agent.errors import DqAgentError
from dq_agent_sandbox.http import Emulator, Request, Response

# What each service's error takes (beside status and times), as its emulator's fail_next does.
_ANSWERS: dict[str, frozenset[str]] = {
    "salesforce": frozenset({"code", "message", "headers"}),
    "gsheets": frozenset({"message", "retry_after"}),
    "slack": frozenset({"error", "retry_after"}),
    "airflow": frozenset({"detail", "retry_after"}),
}
_MATCH = frozenset({"method", "path", "times"})


@dataclass
class Fault:
    """One fault: the requests it takes, and what they meet."""

    method: str | None
    path: re.Pattern[str] | None
    left: int
    # The error to answer with (the emulator's fail_next arguments), or a person's edit.
    answer: dict[str, Any]
    edit: dict[str, Any] | None = None
    by: str | None = None

    def takes(self, request: Request) -> bool:
        if self.left < 1 or (self.method and request.method != self.method):
            return False
        return self.path is None or self.path.search(request.path) is not None


class Faulty:
    """An emulator whose requests meet ``faults`` first: the emulator answers them itself."""

    def __init__(self, emulator: Any, faults: list[Fault]) -> None:
        self.emulator = emulator
        self.name: str = emulator.name
        self._faults = faults
        self._lock = threading.Lock()

    def handle(self, request: Request) -> Response:
        # One request at a time: the error queued for this one is never met by another.
        with self._lock:
            fault = next((f for f in self._faults if f.takes(request)), None)
            if fault is not None:
                fault.left -= 1
                self._apply(fault, request)
            return self.emulator.handle(request)  # type: ignore[no-any-return]

    def state(self) -> dict[str, Any]:
        return self.emulator.state()  # type: ignore[no-any-return]

    def _apply(self, fault: Fault, request: Request) -> None:
        if fault.edit is not None:
            object_name, record_id = _record_of(request.path)
            self.emulator.edit(object_name, record_id, fault.edit, by=fault.by)
            return
        answer = dict(fault.answer)
        status = int(answer.pop("status", 503 if self.name != "slack" else 200))
        if self.name == "salesforce":
            self.emulator.fail_next(
                status,
                str(answer.get("code", "SERVER_UNAVAILABLE")),
                str(answer.get("message", "Service Unavailable")),
                headers=answer.get("headers"),
            )
        elif self.name == "gsheets":
            message = str(answer.get("message", "The service is currently unavailable."))
            self.emulator.fail_next(status, message, retry_after=answer.get("retry_after"))
        elif self.name == "slack":
            error = str(answer.get("error", "internal_error"))
            self.emulator.fail_next(error, status=status, retry_after=answer.get("retry_after"))
        else:
            detail = str(answer.get("detail", ""))
            self.emulator.fail_next(status, detail, retry_after=answer.get("retry_after"))


def _record_of(path: str) -> tuple[str, str]:
    """The (object, id) a Salesforce record path names (``…/sobjects/Opportunity/006…``)."""
    found = re.search(r"/sobjects/([^/]+)/([^/?]+)", path)
    if found is None:
        raise DqAgentError(f"an edit fault needs a request for one record, not {path}")
    return found[1], found[2]


def load_faults(path: Path) -> dict[str, list[Fault]]:
    """The faults file at ``path``, by service; raises DqAgentError saying what is wrong."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise DqAgentError(f"cannot read faults file {path}: {exc}") from exc
    if not isinstance(data, dict) or not set(data) <= set(_ANSWERS):
        raise DqAgentError(
            f"{path}: expected a mapping of {', '.join(_ANSWERS)} to lists of faults"
        )
    faults: dict[str, list[Fault]] = {}
    for service, entries in data.items():
        if not isinstance(entries, list):
            raise DqAgentError(f"{path}: {service}: expected a list of faults")
        faults[service] = [_fault(path, service, i, e) for i, e in enumerate(entries)]
    return faults


def _fault(path: Path, service: str, index: int, entry: Any) -> Fault:
    where = f"{path}: {service}[{index}]"
    if not isinstance(entry, dict):
        raise DqAgentError(f"{where}: expected a mapping")
    allowed = _MATCH | _ANSWERS[service] | {"status"}
    if service == "salesforce":
        allowed |= {"edit", "by"}
    unknown = sorted(set(entry) - allowed)
    if unknown:
        raise DqAgentError(
            f"{where}: unknown {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}"
        )
    times = entry.get("times", 1)
    if not isinstance(times, int) or times < 1:
        raise DqAgentError(f"{where}: times: expected a whole number of at least 1")
    status = entry.get("status")
    if status is not None and (not isinstance(status, int) or not 100 <= status <= 599):
        raise DqAgentError(f"{where}: status: expected an HTTP status like 503")
    edit = entry.get("edit")
    if edit is not None and (not isinstance(edit, dict) or "status" in entry):
        raise DqAgentError(f"{where}: edit: expected a mapping of fields to values, without status")
    try:
        pattern = re.compile(str(entry["path"])) if "path" in entry else None
    except re.error as exc:
        raise DqAgentError(f"{where}: path: not a regular expression: {exc}") from exc
    method = str(entry["method"]).upper() if "method" in entry else None
    answer = {k: v for k, v in entry.items() if k in _ANSWERS[service] | {"status"}}
    by = str(entry["by"]) if "by" in entry else None
    return Fault(method, pattern, times, answer, edit, by)


def with_faults(emulators: list[Emulator], faults: dict[str, list[Fault]]) -> list[Emulator]:
    """``emulators``, each behind its faults (those without faults as they are)."""
    return [Faulty(e, faults[e.name]) if faults.get(e.name) else e for e in emulators]
