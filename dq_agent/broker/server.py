"""``dq-agent broker``: the process that holds the sources' credentials.

It reads the project itself (suites, connector profiles and their secrets, from its own
environment) and does named operations for holders of a token, each checked against the
token's scope and the suite's own configuration (see ``OPERATIONS``): run a suite's checks as
compiled from its suite file (nobody can send it SQL to run), act on its source as a cycle does
(corrections within its guardrails), approve or undo its corrections for the people it names,
start and follow its restart targets. Every call, done or refused, is written to the
hash-chained audit log. It listens on a unix socket or on
HTTPS (a loopback address may go without TLS).

``read`` answers as a stream: NDJSON (one JSON object a line) in an HTTP/1.1 chunked body,
sent as the records are read from the source, which stays open until the last one::

    {"check": "<name>", "capped_at": null}    before each failed (or warned) check's records;
                                              capped_at: the suite's max_findings when the
                                              check cannot read them again (its findings follow)
    {"finding": {<Finding.to_json()>}}        one failing record
    {"result": {<SuiteResult.to_wire()>}}     the suite's result: the last line of a whole answer
    {"error": "<why>", "transient": <bool>}   instead, when the run fails on the way

A stream that ends without its ``result`` line was cut short: the caller takes none of it
for complete. The broker holds a few lines at a time (``STREAM_CHUNK``), never the records.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import queue
import socket
import threading
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import anyio
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from dq_agent.agent import at_sources
from dq_agent.broker.audit import AUDIT_FILE, AuditLog
from dq_agent.broker.slack import NOTIFY_FIELDS, SlackRelay
from dq_agent.broker.tokens import TOKENS_FILE, Refused, Token, TokenBook
from dq_agent.checks.base import plural
from dq_agent.config import Project, load_project
from dq_agent.config.loader import SETTINGS_FILE
from dq_agent.config.models import CommandRestart, Suite
from dq_agent.engine import RunOptions, SuiteHook, check_suite, utc_now
from dq_agent.errors import DqAgentError, SourceError
from dq_agent.escalate.slack import SlackError
from dq_agent.findings_out import failing_records, has_records
from dq_agent.remedy import approve_correction, revert_corrections
from dq_agent.remedy.apply import Outcome
from dq_agent.restart.base import PipelineRun, RestartError
from dq_agent.restart.runner import target_for
from dq_agent.results import SuiteResult, key_text
from dq_agent.serving import BackgroundServer, body_length, tcp_socket
from dq_agent.sources import Relation, Source
from dq_agent.sources.registry import Engines
from dq_agent.store import Store
from dq_agent.triage.gateway import Gateway

log = logging.getLogger(__name__)

API = "/v1"
# A request body larger than this is no operation's (the largest: a Slack message with its
# blocks, which Slack itself caps well below this).
MAX_BODY = 1024 * 1024
# Each operation, the token action it takes, and the fields its request may hold: anything
# else (SQL text, another object, a field list) is refused, not ignored.
OPERATIONS: dict[str, tuple[str, frozenset[str]]] = {
    "check": ("check", frozenset({"suite", "as_of"})),
    # The suite's checks and every failing record of its failed checks, streamed (see above).
    "read": ("read", frozenset({"suite", "as_of"})),
    # A cycle's work at the suite's source: settle corrections a crash interrupted, check,
    # correct (or propose) within the suite's guardrails, find the records' owners.
    "act": ("correct", frozenset({"suite", "dry_run"})),
    # An owner's decision on a correction of the suite: authorized again here, against the
    # suite's owners and escalation list (and the chain of the incident it came from).
    "approve": ("correct", frozenset({"suite", "correction", "by", "incident"})),
    "revert": ("correct", frozenset({"suite", "corrections", "by"})),
    # Start entry ``target`` of the suite's restart: list (``key``: the same for every
    # attempt at one restart, so a retried start starts no second run), and follow that run.
    "restart": ("restart", frozenset({"suite", "target", "key"})),
    "restart_poll": ("restart", frozenset({"suite", "target", "run"})),
    # One Slack method (see dq_agent.broker.slack), for the people of the token's suites:
    # it names a person or a channel, not a suite.
    "notify": ("notify", NOTIFY_FIELDS),
}
# Seconds a caller may stay idle: between requests, in a body, or not reading a stream.
IDLE_CALLER_S = 300
# Bytes of a streamed answer gathered before they go out as one chunk.
STREAM_CHUNK = 64 * 1024


class _TargetFailed(DqAgentError):
    """A restart target refused or could not be reached; ``transient`` as RestartError's."""

    def __init__(self, message: str, *, transient: bool) -> None:
        super().__init__(message)
        self.transient = transient


# Sends one line of a streamed answer.
Send = Callable[[Mapping[str, Any]], None]


class _CallerGone(Exception):
    """The caller of a streamed answer closed its connection before the end."""


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict[str, Any]
    # A streamed answer (``body`` unused): called with the function that sends each line.
    stream: Callable[[Send], None] | None = None


@dataclass(frozen=True)
class Call:
    """One authorized operation: the broker's reading of the project, the suite it names,
    the request, when it came, and the token it came with."""

    project: Project
    suite: str
    operation: str
    body: Mapping[str, Any]
    now: datetime
    token_id: str


class Broker:
    """The operations, with their authorization and their audit; no transport."""

    def __init__(
        self,
        project_dir: Path,
        home: Path,
        *,
        env: Mapping[str, str] | None = None,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.project_dir = project_dir
        self.tokens = TokenBook(home / TOKENS_FILE)
        self.audit = AuditLog(home / AUDIT_FILE)
        self._env = env
        self._clock = clock
        self._engines = Engines()
        self._stores: dict[str, Store] = {}
        self._slack = SlackRelay()
        self._lock = threading.Lock()

    def handle(self, operation: str, presented: str | None, body: Any) -> Answer:
        """Authorize and do one operation; every outcome is audited."""
        now = self._clock()
        suite = body.get("suite") if isinstance(body, dict) else None
        suite = suite if isinstance(suite, str) else None
        token_id: str | None = None
        target: str | None = None  # what the call reached, when not the suite itself
        try:
            if operation not in OPERATIONS:
                known = ", ".join(OPERATIONS)
                raise Refused(
                    f"operation {operation!r} is unknown; this broker does: {known}",
                    status=404,
                    reason="unknown_operation",
                    token_id=None,
                )
            action, fields = OPERATIONS[operation]
            if presented is None:
                raise Refused(
                    "no token: send Authorization: Bearer <token>",
                    status=401,
                    reason="no_token",
                    token_id=None,
                )
            token = self.tokens.authorize(presented, action=action, suite=suite, now=now)
            token_id = token.id
            if not isinstance(body, dict):
                raise Refused(
                    f"{operation} takes a JSON object",
                    status=400,
                    reason="bad_request",
                    token_id=None,
                )
            extra = sorted(set(body) - fields)
            if extra:
                raise Refused(
                    f"{operation} takes only {', '.join(sorted(fields))}; refused: "
                    f"{', '.join(extra)} (the broker does what the suite's own file says: "
                    "it takes no SQL or other text to run)",
                    status=400,
                    reason="unexpected_fields",
                    token_id=token_id,
                )
            if operation == "notify":
                answer, suite, target = self._notify(token, body)
                detail = str(body.get("method"))
            elif suite is None:
                raise Refused(
                    f"{operation} names the suite it is for",
                    status=400,
                    reason="bad_request",
                    token_id=None,
                )
            else:
                project = self._project(suite)
                call = Call(project, suite, operation, body, now, token_id)
                if operation == "read":  # streamed, and audited when the stream ends
                    return Answer(200, {}, stream=self._audited(call, self._read(call)))
                do = getattr(self, f"_{operation}")
                answer, detail = do(call)
        except Refused as exc:
            self._audit(now, exc.token_id or token_id, suite, operation, "refused", str(exc))
            return Answer(exc.status, {"error": str(exc), "reason": exc.reason})
        except _TargetFailed as exc:
            self._audit(now, token_id, suite, operation, "error", str(exc))
            status = 503 if exc.transient else 422
            return Answer(status, {"error": str(exc), "reason": "target_failed"})
        except DqAgentError as exc:
            self._audit(now, token_id, suite, operation, "error", str(exc))
            return Answer(422, {"error": str(exc), "reason": "cannot_run"})
        except Exception as exc:  # the broker stays up; the caller learns it failed
            log.exception("broker %s of %s failed", operation, suite)
            self._audit(now, token_id, suite, operation, "error", exc.__class__.__name__)
            return Answer(500, {"error": f"the broker failed: {exc.__class__.__name__}"})
        self._audit(now, token_id, suite, operation, "ok", detail, target=target)
        return Answer(200, answer)

    def _project(self, suite_id: str | None) -> Project:
        """The project as its files say now (a changed suite needs no restart of the broker),
        if it has the suite (when one is named)."""
        project = load_project(self.project_dir, self._env, as_broker=True)
        if project.settings_issues:  # its defaults are no stand-in for the project's
            broken = "; ".join(str(i) for i in project.settings_issues)
            raise DqAgentError(f"the broker cannot read {SETTINGS_FILE}: {broken}")
        if suite_id is None:
            return project
        if suite_id not in project.suites and suite_id not in project.broken_suites:
            raise Refused(
                f"no suite {suite_id!r} in the broker's project",
                status=404,
                reason="no_suite",
                token_id=None,
            )
        return project

    def _check(self, call: Call) -> tuple[dict[str, Any], str]:
        project, suite_id = call.project, call.suite
        options = RunOptions(as_of=_as_of(call), clock=self._clock, engines=self._engines)
        result = check_suite(project, suite_id, self._store(project.state_url), options)
        return {"result": result.to_wire()}, f"status {result.status}"

    def _read(self, call: Call) -> Callable[[Send], str]:
        """The suite's checks, as ``check`` runs them, then every failing record of each
        failed check, read from the source a chunk at a time while it is open and sent as it
        is read (the lines: see the module's docstring). Returns the stream, which returns
        what its audit line says."""
        project, suite_id = call.project, call.suite
        options = RunOptions(as_of=_as_of(call), clock=self._clock, engines=self._engines)
        store = self._store(project.state_url)

        def stream(send: Send) -> str:
            sent = Counter[str]()

            def hook(
                suite: Suite, _source: Source, relation: Relation, result: SuiteResult
            ) -> None:
                for check in result.checks:
                    if not has_records(check):
                        continue
                    capped_at = suite.max_findings if check.records is None else None
                    send({"check": check.name, "capped_at": capped_at})
                    label = f"{suite.suite} / {check.name}"
                    for finding in failing_records(check, relation, label):
                        send({"finding": finding.to_json()})
                        sent[check.name] += 1

            result = check_suite(project, suite_id, store, options, hook=hook)
            send({"result": result.to_wire()})
            records = plural(sent.total(), "record")
            return f"status {result.status}; {records} of {plural(len(sent), 'check')}"

        return stream

    def _audited(self, call: Call, stream: Callable[[Send], str]) -> Callable[[Send], None]:
        """``stream`` with its one audit line, written when it ends; a failure on the way is
        sent as its last line, so that the caller never takes a cut answer for a whole one."""

        def audited(send: Send) -> None:
            outcome, detail = "error", "the caller went away before the end"
            try:
                outcome, detail = "ok", stream(send)
            except _CallerGone:
                raise
            except DqAgentError as exc:
                detail = str(exc)
                transient = isinstance(exc, SourceError) and exc.transient
                send({"error": detail, "transient": transient})
            except Exception as exc:  # the broker stays up; the caller learns it failed
                log.exception("broker %s of %s failed", call.operation, call.suite)
                detail = exc.__class__.__name__
                send({"error": f"the broker failed: {detail}", "transient": True})
            finally:
                self._audit(call.now, call.token_id, call.suite, call.operation, outcome, detail)

        return audited

    def _act(self, call: Call) -> tuple[dict[str, Any], str]:
        """The suite's checks with its corrections, each written compare-and-set after its
        verification on a branch and recorded in the ledger (the shared state store), as the
        agent makes them without a broker: same guardrails, same exactly-once claims. The
        agent calls it holding the suite's acting lock."""
        project, suite_id, dry_run = call.project, call.suite, call.body.get("dry_run", False)
        if not isinstance(dry_run, bool):
            raise Refused(
                "dry_run is true or false", status=400, reason="bad_request", token_id=None
            )
        store = self._store(project.state_url)
        options = RunOptions(clock=self._clock, engines=self._engines)

        def run(hook: SuiteHook) -> list[SuiteResult]:
            return [check_suite(project, suite_id, store, options, hook=hook)]

        acted = at_sources(
            project, [suite_id], store, options, dry_run=dry_run, env=self._env, run=run
        )
        # Who owns the records behind its findings may hear of them (notify).
        self._slack.met((suite, email) for (suite, _key), email in acted.records.by_record.items())
        written = [*acted.settled.written, *acted.outcomes]
        self._audit_writes(call.now, call.token_id, suite_id, written)
        counts = Counter(o.status for o in acted.outcomes)
        done = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
        status = acted.results[0].status
        return acted.to_json(), f"status {status}; corrections: {done or 'none'}"

    def _decide(self, call: Call) -> tuple[dict[str, Any], str]:
        """Approve or undo corrections of the suite as ``by``, who must be one who may decide
        on them by the broker's own reading of the suite and the ledger."""
        project, suite_id, operation, body = call.project, call.suite, call.operation, call.body
        store = self._store(project.state_url)
        by = body.get("by")
        ids = [body.get("correction")] if operation == "approve" else body.get("corrections")
        if not isinstance(by, str) or not isinstance(ids, list) or not ids:
            raise Refused(
                f"{operation} takes who decides (by) and the corrections",
                status=400,
                reason="bad_request",
                token_id=None,
            )
        for correction_id in ids:
            correction = store.correction(correction_id) if isinstance(correction_id, int) else None
            if correction is None or correction.suite != suite_id:
                raise Refused(
                    f"correction {correction_id!r} is not one of suite {suite_id!r}",
                    status=403,
                    reason="not_the_suites",
                    token_id=None,
                )
        options = RunOptions(clock=self._clock, engines=self._engines)
        if operation == "revert":
            outcomes = revert_corrections(project, store, ids, by=by, options=options)
        else:
            chain: list[str] = []
            incident = body.get("incident")
            found = store.incident(incident) if isinstance(incident, int) else None
            if found is not None and found["suite"] == suite_id:
                chain = [person for step in found["chain"] for person in step]
            outcomes = [
                approve_correction(
                    project, store, ids[0], by=by, options=options, env=self._env, also=chain
                )
            ]
        self._audit_writes(call.now, call.token_id, suite_id, outcomes)
        statuses = ", ".join(f"{o.correction_id} {o.status}" for o in outcomes)
        answer: dict[str, Any] = {"outcomes": [o.to_json() for o in outcomes]}
        if operation == "approve":
            answer = {"outcome": answer["outcomes"][0]}
        return answer, f"by {by}: {statuses}"

    def _audit_writes(
        self, now: datetime, token_id: str, suite_id: str, outcomes: Sequence[Outcome]
    ) -> None:
        """One line per ledgered change, with its ledger id."""
        for outcome in outcomes:
            if outcome.correction_id is not None:
                change = outcome.change
                self.audit.append(
                    at=now,
                    token_id=token_id,
                    suite=suite_id,
                    operation="correct",
                    target=f"{change.source} {key_text(change.key)} {change.column}",
                    outcome=outcome.status,
                    detail=outcome.detail,
                    ledger_id=outcome.correction_id,
                )

    _approve = _revert = _decide

    def _restart(self, call: Call) -> tuple[dict[str, Any], str]:
        """Start or poll a restart target the suite itself names; nothing else can be run."""
        project, suite_id, operation, body = call.project, call.suite, call.operation, call.body
        suite = project.suites.get(suite_id)
        index = body.get("target")
        if suite is None or not isinstance(index, int) or not 0 <= index < len(suite.restart):
            named = len(suite.restart) if suite is not None else 0
            raise Refused(
                f"suite {suite_id!r} names {plural(named, 'restart target')}: there is no "
                f"target {index!r}",
                status=404,
                reason="no_target",
                token_id=None,
            )
        if isinstance(suite.restart[index].args, CommandRestart):
            raise Refused(
                f"restart {index} of suite {suite_id!r} is a local command: running commands "
                "through the broker is not supported yet",
                status=404,
                reason="not_supported",
                token_id=None,
            )
        target = target_for(project, suite, index)
        try:
            if operation == "restart":
                key = body.get("key")
                if not isinstance(key, str) or not key:
                    raise Refused(
                        "restart takes the restart's key",
                        status=400,
                        reason="bad_request",
                        token_id=None,
                    )
                run = target.start(key)
            else:
                try:
                    run = target.poll(PipelineRun(**body.get("run") or {}))
                except TypeError:
                    raise Refused(
                        "restart_poll takes the run the start answered",
                        status=400,
                        reason="bad_request",
                        token_id=None,
                    ) from None
        except RestartError as exc:
            # The caller's retry policy needs to know whether trying again may help.
            raise _TargetFailed(str(exc), transient=exc.transient) from exc
        finally:
            close = getattr(target, "close", None)
            if close is not None:
                close()
        label = suite.restart[index].label
        return {"run": dataclasses.asdict(run)}, f"{label}: run {run.run_id} {run.state}"

    _restart_poll = _restart

    def _notify(self, token: Token, body: Mapping[str, Any]) -> tuple[dict[str, Any], str, str]:
        """One Slack method for the people of the token's suites (the broker holds the bot
        token); the answer, the suites whose people it reached, and what it reached."""
        try:
            return self._slack.relay(self._project(None), token, body)
        except SlackError as exc:
            raise _TargetFailed(str(exc), transient=exc.transient) from exc

    def _store(self, url: str) -> Store:
        """The state store, for the baselines' history (kept open across calls)."""
        with self._lock:
            store = self._stores.get(url)
            if store is None:
                store = self._stores[url] = Store.open(url)
            return store

    def _audit(
        self,
        now: datetime,
        token_id: str | None,
        suite: str | None,
        operation: str,
        outcome: str,
        detail: str,
        *,
        target: str | None = None,
    ) -> None:
        self.audit.append(
            at=now,
            token_id=token_id,
            suite=suite,
            operation=operation,
            target=target or suite,
            outcome=outcome,
            detail=detail,
        )

    def now(self) -> datetime:
        """The broker's time: what a token's expiry is checked against."""
        return self._clock()

    def gateway(self) -> Gateway:
        """The gateway of the investigation tools the broker serves over MCP: on the project
        as its files say now, its state store and the broker's environment."""
        project = self._project(None)
        store = self._store(project.state_url)
        return Gateway(project, store, self._clock, env=self._env, actor="mcp")

    def close(self) -> None:
        self._engines.dispose()
        for store in self._stores.values():
            store.close()
        self.tokens.dispose()


def _as_of(call: Call) -> datetime | None:
    """The moment the call's ``as_of`` names (None when it names none)."""
    text = call.body.get("as_of")
    if text is None:
        return None
    try:
        as_of = datetime.fromisoformat(str(text))
    except ValueError:
        as_of = None
    if as_of is None or as_of.tzinfo is None:
        raise Refused(
            "as_of must be an ISO 8601 moment with its zone",
            status=400,
            reason="bad_request",
            token_id=None,
        )
    return as_of


def broker_app(broker: Broker) -> Starlette:
    """The broker's HTTP API as an ASGI application: ``POST /v1/<operation>`` with a JSON
    body and ``Authorization: Bearer <token>``, and ``GET /healthz``."""

    async def healthz(_request: Request) -> Response:
        return JSONResponse({"ok": True})

    async def operation(request: Request) -> Response:
        length = body_length(request.headers.items(), MAX_BODY)
        if isinstance(length, tuple):
            status, reason = length
            return JSONResponse({"error": reason}, status, headers={"Connection": "close"})
        try:
            # A caller that stops sending mid-body is let go.
            raw = await asyncio.wait_for(request.body(), IDLE_CALLER_S) if length else b""
        except (ClientDisconnect, TimeoutError):
            raw = b""
        if len(raw) != length:
            return JSONResponse({"error": "incomplete body"}, 400, headers={"Connection": "close"})
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            body = None
        auth = request.headers.get("authorization") or ""
        presented = auth[len("Bearer ") :].strip() if auth.startswith("Bearer ") else None
        name = request.path_params["operation"]
        answer = await run_in_threadpool(broker.handle, name, presented, body)
        if answer.stream is None:
            return JSONResponse(answer.body, answer.status)
        return StreamingResponse(_streamed(answer.stream), media_type="application/x-ndjson")

    async def not_found(_request: Request) -> Response:
        return JSONResponse({"error": "not found"}, 404)

    return Starlette(
        routes=[
            Route("/healthz", healthz, methods=["GET"]),
            Route(API + "/{operation}", operation, methods=["POST"]),
            Route("/{path:path}", not_found, methods=["GET", "POST", "PUT", "PATCH", "DELETE"]),
        ]
    )


async def _streamed(stream: Callable[[Send], None]) -> AsyncIterator[bytes]:
    """A streamed answer's lines, in chunks of about ``STREAM_CHUNK`` bytes, as ``stream``
    sends them from a thread of its own. A few chunks wait at most: the stream is held back
    while the caller does not read, and stopped when it is gone or stalled for
    ``IDLE_CALLER_S``."""
    chunks: queue.Queue[bytes | None] = queue.Queue(maxsize=4)
    gone = threading.Event()
    pending = bytearray()

    def put(chunk: bytes) -> None:
        if gone.is_set():
            raise _CallerGone()
        try:
            chunks.put(chunk, timeout=IDLE_CALLER_S)
        except queue.Full:
            raise _CallerGone() from None

    def send(line: Mapping[str, Any]) -> None:
        pending.extend(json.dumps(line).encode() + b"\n")
        if len(pending) >= STREAM_CHUNK:
            put(bytes(pending))
            pending.clear()

    def produce() -> None:
        try:
            stream(send)
            if pending:
                put(bytes(pending))
        except _CallerGone:
            pass  # audited by the stream itself
        finally:
            with contextlib.suppress(queue.Full):
                chunks.put(None, timeout=1 if gone.is_set() else IDLE_CALLER_S)

    threading.Thread(target=produce, name="broker-stream", daemon=True).start()
    try:
        while True:
            chunk = await anyio.to_thread.run_sync(chunks.get, abandon_on_cancel=True)
            if chunk is None:
                return
            yield chunk
    finally:
        gone.set()
        with contextlib.suppress(queue.Empty):  # let a producer waiting for room see it
            while True:
                chunks.get_nowait()


class BrokerServer:
    """Serves a :class:`Broker` on ``listen``: ``unix:/path``, or ``https://host:port``
    (with ``cert`` and ``key``), or ``http://127.0.0.1:port`` on the loopback only."""

    def __init__(
        self, broker: Broker, listen: str, *, cert: Path | None = None, key: Path | None = None
    ) -> None:
        self.broker = broker
        tls = False
        if listen.startswith("unix:"):
            path = Path(listen[len("unix:") :])
            path.parent.mkdir(parents=True, exist_ok=True)
            path.unlink(missing_ok=True)  # a socket left by a broker that was killed
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.bind(str(path))
            os.chmod(path, 0o660)  # the agent's group may connect; nobody else
            sock.listen()
            self.url = f"unix:{path}"
        else:
            parts = urlsplit(listen)
            host, port = parts.hostname or "", parts.port or 0
            if parts.scheme == "http" and host not in ("127.0.0.1", "localhost"):
                raise DqAgentError(
                    f"--listen {listen}: without TLS the broker listens on the loopback only; "
                    "give https://… with --cert and --key"
                )
            if parts.scheme not in ("http", "https"):
                raise DqAgentError(
                    f"--listen {listen}: expected unix:/path, https://host:port or "
                    "http://127.0.0.1:port"
                )
            tls = parts.scheme == "https"
            if tls and (cert is None or key is None):
                raise DqAgentError(f"--listen {listen}: HTTPS needs --cert and --key")
            sock = tcp_socket(host, port)
            bound_host, bound_port = sock.getsockname()[:2]
            self.url = f"{parts.scheme}://{bound_host!s}:{bound_port}"
        self._server = BackgroundServer(
            broker_app(broker),
            sock,
            name="broker",
            cert=cert if tls else None,
            key=key if tls else None,
            timeout_keep_alive=IDLE_CALLER_S,
        )

    def start(self) -> BrokerServer:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()
        if self.url.startswith("unix:"):
            Path(self.url[len("unix:") :]).unlink(missing_ok=True)

    def __enter__(self) -> BrokerServer:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()
