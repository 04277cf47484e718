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
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from dq_agent.config.models import BrokerSettings
from dq_agent.errors import SourceError
from dq_agent.redact import redact
from dq_agent.remedy.apply import Outcome
from dq_agent.restart.base import PipelineRun, RestartError
from dq_agent.results import SuiteResult
from dq_agent.sources.retry import RetryPolicy

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


class BrokerClient:
    """Asks the broker of ``settings`` for operations, retrying transient faults."""

    def __init__(self, settings: BrokerSettings, retry: RetryPolicy | None = None) -> None:
        self._settings = settings
        self._retry = retry or RetryPolicy()
        self._token = settings.token.get_secret_value()

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

    def call(self, operation: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """POST ``body`` to the operation and return the broker's JSON answer."""
        return self._retry.call(
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
            data = response.read()
        finally:
            connection.close()
        try:
            answer = json.loads(data) if data else {}
        except ValueError:
            answer = {}
        if response.status == 200 and isinstance(answer, dict):
            return answer
        message = answer.get("error") if isinstance(answer, dict) else None
        reason = message or f"HTTP {response.status} {response.reason}"
        raise SourceError(
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
