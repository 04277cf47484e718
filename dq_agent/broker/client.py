"""The agent's side of the broker: named operations over a unix socket or HTTPS.

The agent holds only the broker's URL and its token. Every answer that is not a result comes
back as a :class:`~dq_agent.errors.SourceError`: transient when the broker could not be
reached or failed itself (the suite reports ``error`` and is tried again), final when it
refused (a token out of scope, revoked or expired: the broker's message names the token's
id, never its secret).
"""

from __future__ import annotations

import dataclasses
import http.client
import json
import socket
import ssl
from collections.abc import Generator, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from dq_agent.config.loader import Project
from dq_agent.config.models import BrokerSettings
from dq_agent.errors import DqAgentError, SourceError
from dq_agent.redact import redact
from dq_agent.remedy.apply import Outcome
from dq_agent.restart.base import PipelineRun, RestartError
from dq_agent.results import Finding, SuiteResult
from dq_agent.sources.retry import NO_RETRY, RetryPolicy

if TYPE_CHECKING:
    from dq_agent.agent import Acted

API = "/v1"


class _UnixConnection(http.client.HTTPConnection):
    """HTTP over a unix socket: the path replaces the host and port."""

    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


@dataclasses.dataclass(frozen=True)
class ReadCheck:
    """In a ``read`` stream, what comes before one check's failing records: the check, and
    the suite's ``max_findings`` when it cannot read its records again (only the findings it
    reported follow)."""

    name: str
    capped_at: int | None = None


# A line of a ``read`` stream, as :meth:`BrokerClient.read` yields it.
ReadLine = ReadCheck | Finding | SuiteResult


class BrokerClient:
    """Asks the broker of ``settings`` for operations, retrying transient faults."""

    def __init__(self, settings: BrokerSettings, retry: RetryPolicy | None = None) -> None:
        self._settings = settings
        self._retry = retry or RetryPolicy()
        self._token = settings.token.get_secret_value()

    @classmethod
    def of(cls, project: Project, retry: RetryPolicy | None = None) -> BrokerClient:
        """The broker a sealed project names (``broker:`` in its settings)."""
        if project.settings.broker is None:
            raise DqAgentError(f"{project.root} names no broker (broker: in dq-agent.yml)")
        return cls(project.settings.broker, retry)

    @property
    def where(self) -> str:
        return self._settings.url

    def check(self, suite: str, as_of: datetime | None = None) -> SuiteResult:
        """Run ``suite``'s checks in the broker (compiled there from its own suite file)."""
        body: dict[str, Any] = {"suite": suite}
        if as_of is not None:
            body["as_of"] = as_of.isoformat()
        return SuiteResult.from_wire(self.call("check", body)["result"])

    def act(self, suite: str, *, dry_run: bool = False) -> Acted:
        """The source side of a cycle for ``suite``, in the broker: its checks, the
        corrections it makes (or, ``dry_run``, would make) within the guardrails, and the
        owners of the records behind its findings."""
        from dq_agent.agent import Acted

        return Acted.from_json(self.call("act", {"suite": suite, "dry_run": dry_run}))

    def approve(
        self, suite: str, correction_id: int, *, by: str, incident_id: int | None = None
    ) -> Outcome:
        """Write the proposal ``by`` approved (from incident ``incident_id``, whose chain may
        decide), verified on a branch and compare-and-set, as the broker's guardrails allow."""
        body = {"suite": suite, "correction": correction_id, "by": by, "incident": incident_id}
        return Outcome.from_json(self.call("approve", body)["outcome"])

    def revert(self, suite: str, correction_ids: Sequence[int], *, by: str) -> list[Outcome]:
        """Undo corrections of ``suite`` as ``by`` (compare-and-set, back to what was there)."""
        body = {"suite": suite, "corrections": list(correction_ids), "by": by}
        return [Outcome.from_json(o) for o in self.call("revert", body)["outcomes"]]

    def read(self, suite: str, as_of: datetime | None = None) -> Generator[ReadLine, None, None]:
        """``suite``'s checks run in the broker, then every failing record of each failed
        check as the broker reads it from the source: for each check a :class:`ReadCheck`
        and its records, then the suite's result. Lines are read as they are iterated (the
        request is sent at the first); only the request is retried, never a stream begun.
        A stream the broker ends with an error, or that breaks off, raises SourceError."""
        body: dict[str, Any] = {"suite": suite}
        if as_of is not None:
            body["as_of"] = as_of.isoformat()
        connection, response = self._retry.call(
            "broker read", lambda: self._open("read", body), self._translate
        )
        lines = 0
        try:
            for raw in response:
                lines += 1
                line = self._read_line(suite, raw)
                yield line
                if isinstance(line, SuiteResult):
                    return
        except (OSError, http.client.HTTPException) as exc:
            reason = self._redacted(str(exc) or exc.__class__.__name__)
            raise SourceError(
                f"the broker at {self.where} broke off its read of suite {suite!r} after "
                f"{lines:,} lines: {reason}",
                transient=True,
            ) from exc
        finally:
            connection.close()
        raise SourceError(
            f"the broker at {self.where} ended its read of suite {suite!r} before the "
            f"suite's result ({lines:,} lines)",
            transient=True,
        )

    def _read_line(self, suite: str, raw: bytes) -> ReadLine:
        """One line of a ``read`` stream (see :mod:`dq_agent.broker.server`)."""
        try:
            line = json.loads(raw)
        except ValueError:
            line = None
        if isinstance(line, dict) and "finding" in line:
            return Finding.from_json(line["finding"])
        if isinstance(line, dict) and "check" in line:
            return ReadCheck(str(line["check"]), line.get("capped_at"))
        if isinstance(line, dict) and "result" in line:
            return SuiteResult.from_wire(line["result"])
        if isinstance(line, dict) and "error" in line:
            raise SourceError(
                self._redacted(
                    f"the broker at {self.where} failed reading suite {suite!r}: {line['error']}"
                ),
                transient=bool(line.get("transient")),
            )
        raise SourceError(
            f"the broker at {self.where} sent a line its read of suite {suite!r} cannot hold: "
            f"{raw[:80]!r}",
            transient=True,
        )

    def call(
        self, operation: str, body: Mapping[str, Any], *, once: bool = False
    ) -> dict[str, Any]:
        """POST ``body`` to the operation and return the broker's JSON answer; ``once``: not
        sent again after a dropped connection (a message may have been posted already)."""
        retry = NO_RETRY if once else self._retry
        return retry.call(
            f"broker {operation}", lambda: self._post(operation, body), self._translate
        )

    def _connection(self) -> http.client.HTTPConnection:
        url, timeout = self._settings.url, self._settings.timeout
        if url.startswith("unix:"):
            return _UnixConnection(url[len("unix:") :], timeout)
        parts = urlsplit(url)
        if parts.scheme == "http":  # loopback only (the settings allow nothing else)
            return http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=timeout)
        context = ssl.create_default_context(cafile=self._settings.ca_file)
        return http.client.HTTPSConnection(
            parts.hostname or "", parts.port, timeout=timeout, context=context
        )

    def _post(self, operation: str, body: Mapping[str, Any]) -> dict[str, Any]:
        connection, response = self._open(operation, body)
        try:
            answer = _json(response.read())
        finally:
            connection.close()
        if isinstance(answer, dict):
            return answer
        raise self._refusal(operation, response, answer)

    def _open(
        self, operation: str, body: Mapping[str, Any]
    ) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
        """The answer's connection and response, its body not read yet (a stream's is read
        as it comes); a refusal raises."""
        connection = self._connection()
        try:
            connection.request(
                "POST",
                f"{API}/{operation}",
                body=json.dumps(body).encode(),
                headers={
                    "Authorization": f"Bearer {self._token}",
                    "Content-Type": "application/json",
                },
            )
            response = connection.getresponse()
            if response.status == 200:
                return connection, response
            answer = _json(response.read())
        except BaseException:
            connection.close()
            raise
        connection.close()
        raise self._refusal(operation, response, answer)

    def _refusal(
        self, operation: str, response: http.client.HTTPResponse, answer: Any
    ) -> SourceError:
        message = answer.get("error") if isinstance(answer, dict) else None
        reason = message or f"HTTP {response.status} {response.reason}"
        return SourceError(
            self._redacted(f"the broker at {self.where} refused {operation}: {reason}"),
            transient=response.status >= 500 or response.status == 429,
            code=str(response.status),
        )

    def _translate(self, exc: Exception) -> SourceError:
        """A fault on the way to the broker: it may be back soon (restarting, a full queue)."""
        if isinstance(exc, ssl.SSLCertVerificationError):
            reason = f"its certificate is not trusted ({exc.verify_message}); set broker.ca_file"
            return SourceError(f"the broker at {self.where}: {reason}", transient=False)
        reason = self._redacted(str(exc) or exc.__class__.__name__)
        return SourceError(f"the broker at {self.where} is unreachable: {reason}", transient=True)

    def _redacted(self, text: str) -> str:
        return redact(text, self._token)


def _json(data: bytes) -> Any:
    try:
        return json.loads(data) if data else {}
    except ValueError:
        return None


class BrokeredTarget:
    """A suite's restart target, started and followed by the broker (which holds the
    pipeline's credentials): entry ``index`` of the suite's ``restart:`` list."""

    def __init__(self, client: BrokerClient, suite: str, index: int, label: str) -> None:
        self._client = client
        self._suite = suite
        self._index = index
        self.label = label

    def start(self, key: str) -> PipelineRun:
        return self._run("restart", {"key": key})

    def poll(self, run: PipelineRun) -> PipelineRun:
        return self._run("restart_poll", {"run": dataclasses.asdict(run)})

    def _run(self, operation: str, extra: Mapping[str, Any]) -> PipelineRun:
        body = {"suite": self._suite, "target": self._index, **extra}
        try:
            answer = self._client.call(operation, body)
        except SourceError as exc:
            raise RestartError(str(exc), transient=exc.transient) from exc
        return PipelineRun(**answer["run"])
