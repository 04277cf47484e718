"""The exception hierarchy: one root, a few children a caller can act on."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


class DqAgentError(Exception):
    """Root of every error dq-agent raises on purpose."""


@dataclass(frozen=True)
class ConfigIssue:
    """One problem in one YAML file, located to the node that caused it (line 0: the file or
    folder as a whole, which has no line to point at)."""

    file: Path
    line: int
    col: int
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}:{self.col}" if self.line else str(self.file)
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


class SourceError(DqAgentError):
    """A source could not be read.

    ``transient`` says whether trying again later may succeed (a timeout, a dropped connection)
    or not (bad credentials, a missing table): the daemon's retry policy depends on it.
    """

    def __init__(
        self,
        message: str,
        *,
        transient: bool,
        retry_after: float | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.transient = transient
        # Seconds the service asked us to wait (a Retry-After header), if it said.
        self.retry_after = retry_after
        # The service's error code or HTTP status, when it gave one (e.g. "412").
        self.code = code


class StoreError(DqAgentError):
    """The state store could not be opened, migrated or written."""


class LedgerConflict(StoreError):
    """A correction's next step was refused because another one got there first (say, a
    second click on Revert): ``status`` is what the correction is now."""

    def __init__(self, message: str, *, status: str) -> None:
        super().__init__(message)
        self.status = status
