"""What the agent's HTTP surfaces do, apart from the server that runs them
(:mod:`dq_agent.escalate.server`): the Slack interactions endpoint ``POST /slack/actions``,
plain GET pages (``/healthz``, ``/metrics``) and the web application's requests and answers.

Slack wants an answer within three seconds, so a click is verified (signature and
timestamp), recorded in the state store (in the same transaction that refuses a request seen
before, by any replica sharing the store, as a replay), acknowledged with an empty 200, and
acted on afterwards by one worker thread, in the order clicks arrived. Slack never sends an
acknowledged click again, so the record is what keeps it: a process that stops gives the
clicks it has not acted on back to the store, and one that dies leaves them to lapse; either
way the next process, or another replica, acts on them (:class:`Clicks`).

A body is read only when its Content-Length is given and within the path's limit; anything
else is answered from the headers alone and the connection closed.
"""

from __future__ import annotations

import asyncio
import binascii
import json
import logging
import os
import queue
import re
import socket
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.cookies import CookieError, SimpleCookie
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from dq_agent.errors import DqAgentError, StoreError
from dq_agent.store import NewClick

if TYPE_CHECKING:
    from dq_agent.store.clicks import ClickRepository

log = logging.getLogger(__name__)

ACTIONS_PATH = "/slack/actions"
# Slack's own rule: a request older than five minutes is refused.
REPLAY_WINDOW_S = 300
# Slack's interaction payloads carry the whole message clicked: allow them room.
MAX_BODY = 1 << 20
# The dashboard's forms are a few hidden fields.
MAX_FORM = 64 << 10
# A client that stops sending mid-request is dropped after this long.
REQUEST_TIMEOUT_S = 30
# A form value's printable ASCII, but for what separates fields and values.
_FORM_PRINTABLE = bytes(c for c in range(0x20, 0x7F) if c not in b"&=")
# Slack's timestamps are Unix seconds.
_TIMESTAMP = re.compile(r"[0-9]{1,12}")
# How long a stopping process goes on acting on the clicks it holds before it gives them back.
STOP_GRACE_S = 30.0
# A click is held this long, renewed while it waits: a process that dies leaves its clicks
# to another after at most this long.
CLICK_LEASE = timedelta(seconds=60)
# How often the holder renews its leases, and an idle worker looks for clicks nobody holds.
KEEP_S = 5.0
# Clicks taken over at a time.
SWEEP_BATCH = 100

Act = Callable[[Mapping[str, Any]], None]


def _utc_now() -> datetime:
    return datetime.now(UTC)


class Verifier:
    """Checks Slack's request signature and refuses replays of a request already seen.

    Signatures seen are kept in the state store, so a replay is refused by every replica
    sharing it, and after a restart.
    """

    def __init__(
        self, signing_secret: str, store: ClickRepository, clock: Callable[[], datetime] = _utc_now
    ) -> None:
        from slack_sdk.signature import Clock, SignatureVerifier

        class _Clock(Clock):
            def now(self) -> float:
                return clock().timestamp()

        self._verifier = SignatureVerifier(signing_secret, clock=_Clock())
        self._store = store
        self._clock = clock

    @property
    def store(self) -> ClickRepository:
        """Where requests seen are remembered (and clicks recorded)."""
        return self._store

    def signed(self, body: bytes, headers: Mapping[str, str]) -> Signed | str:
        """The request's signature, when Slack's and current, else why it is refused. A
        replay is not looked for: that is :meth:`check`, or :meth:`Clicks.accept`."""
        timestamp = headers.get("x-slack-request-timestamp", "")
        signature = headers.get("x-slack-signature", "")
        if not timestamp or not signature:
            return "missing Slack signature headers"
        if not _TIMESTAMP.fullmatch(timestamp):
            return "X-Slack-Request-Timestamp is not a number"
        try:
            valid = self._verifier.is_valid(body, timestamp, signature)
        except UnicodeDecodeError:
            return "the body is not UTF-8"
        if not valid:
            # The verifier also refuses timestamps more than five minutes away.
            return "bad signature or stale timestamp"
        # The signature stays valid until five minutes after its timestamp, which may be
        # ahead of this clock: remember it at least that long.
        now = self._clock()
        signed = datetime.fromtimestamp(int(timestamp), UTC)
        return Signed(signature, now, max(now, signed) + timedelta(seconds=REPLAY_WINDOW_S))

    def check(self, body: bytes, headers: Mapping[str, str]) -> str | None:
        """None when the request is genuine and new, else why it is refused.

        Raises :class:`~dq_agent.errors.StoreError` when the store cannot tell a replay.
        """
        signed = self.signed(body, headers)
        if isinstance(signed, str):
            return signed
        if not self._store.remember_request(signed.key, at=signed.at, until=signed.until):
            return "replayed request"
        return None


@dataclass(frozen=True)
class Signed:
    """A request Slack signed: its key in the memory of requests seen, when it came, and
    until when a replay of it must be refused."""

    key: str
    at: datetime
    until: datetime


@dataclass(frozen=True)
class _Click:
    id: int | None  # None: kept in memory only (no store)
    payload: Mapping[str, Any]


# The worker's cue to take over the clicks nobody holds.
_SWEEP = object()
# A click waiting to be recorded has no outcome yet.
_WAITING = object()


@dataclass
class _Waiting:
    """A click waiting to be recorded (and its payload, to act on), and then its outcome: its
    id, None for a replay, or why it could not be recorded."""

    click: NewClick
    payload: Mapping[str, Any]
    outcome: object = _WAITING


def _waiting(
    key: str, payload: Mapping[str, Any], at: datetime, until: datetime, text: str | None
) -> _Waiting:
    stored = json.dumps(payload) if text is None else text
    return _Waiting(NewClick(key, stored, at, until), payload)


def _recorded(waiting: _Waiting) -> bool:
    """Whether a click recorded is new (False: a replay); raises what kept it from the store."""
    outcome = waiting.outcome
    if isinstance(outcome, StoreError):
        raise StoreError(str(outcome)) from outcome
    if isinstance(outcome, BaseException):
        raise RuntimeError("recording Slack clicks failed") from outcome
    assert outcome is not _WAITING
    return outcome is not None


class Clicks:
    """Clicks already answered, acted on by one worker thread, in the order they arrived.

    With a ``store``, each click is recorded there before it is acknowledged
    (:meth:`accept`), held by this worker (a lease, renewed while it waits), and marked done
    once acted on, also when acting failed (that is logged, not tried again). On start, and
    whenever its queue is idle (every few seconds), the worker takes over the clicks nobody
    holds: those a stopping process gave back, and those of a process that died, once their
    lease lapsed. Each is taken by compare-and-set in the store, so of several replicas
    exactly one acts on it. A click is acted on twice only when a process dies (or its lease
    lapses) after acting and before marking it done; the actions themselves bear that for
    the decisions that matter: a second approval of a fix is refused (it is no longer a
    proposal) and a second undo is told the correction is reverted already, while a repeated
    snooze or "expected" is recorded and told in the thread again, and a repeated "I fixed
    it" checks again (refused once the incident is resolved).

    Without a store (no clicks come over HTTP: :meth:`put`), the queue is kept in memory only.
    """

    def __init__(
        self,
        act: Act,
        store: ClickRepository | None = None,
        *,
        clock: Callable[[], datetime] = _utc_now,
        grace: float = STOP_GRACE_S,
        lease: timedelta = CLICK_LEASE,
    ) -> None:
        self._act = act
        self._store = store
        self._clock = clock
        self._grace = grace
        self._lease = lease
        # Who holds this worker's clicks in the store.
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self._work: queue.Queue[_Click | object | None] = queue.Queue()
        self._thread = threading.Thread(target=self._worker, name="slack-actions", daemon=True)
        self._keeper = threading.Thread(target=self._keep, name="slack-clicks", daemon=True)
        self._closing = threading.Event()
        self._lock = threading.Lock()
        self._recording = threading.Lock()  # held by the thread recording clicks
        self._waiting: list[_Waiting] = []  # clicks to record, in the order they came
        # The event loop's clicks to record, and the task recording them (accept_async).
        self._pending: list[tuple[_Waiting, asyncio.Future[None]]] = []
        self._flusher: asyncio.Task[None] | None = None
        self._acting: int | None = None  # the click being acted on
        self._stopped = False  # past the grace: act on nothing more
        self._started = False

    @property
    def durable(self) -> bool:
        """Whether clicks are recorded in a store (and :meth:`accept` may be called)."""
        return self._store is not None

    def start(self) -> None:
        self._work.put(_SWEEP)  # first, the clicks a process before this one left
        self._thread.start()
        if self._store is not None:
            self._keeper.start()
        self._started = True

    def accept(
        self,
        key: str,
        payload: Mapping[str, Any],
        *,
        at: datetime,
        until: datetime,
        text: str | None = None,
    ) -> bool:
        """Record a click from request ``key`` (refused as a replay until ``until``) and queue
        it; False for a replay. Returns once the click is in the store, so it may be
        acknowledged; raises :class:`~dq_agent.errors.StoreError` when it could not be.
        ``text``, the payload's JSON as it came, is what is stored (else it is written out).

        Clicks that come together are recorded together (a group commit): the thread that
        finds no record being written writes every click waiting, with one commit, while
        the clicks that come meanwhile wait for the next.
        """
        if self._store is None:
            raise TypeError("Clicks.accept needs a store: without one, put() the payload")
        waiting = _waiting(key, payload, at, until, text)
        with self._lock:
            self._waiting.append(waiting)
        with self._recording:
            if waiting.outcome is _WAITING:  # not recorded by the thread before: record
                with self._lock:
                    batch, self._waiting = self._waiting, []
                self._record(batch)
        return _recorded(waiting)

    async def accept_async(
        self,
        key: str,
        payload: Mapping[str, Any],
        *,
        at: datetime,
        until: datetime,
        text: str | None = None,
    ) -> bool:
        """:meth:`accept` on an event loop, which goes on meanwhile: the clicks that come
        while one batch is being recorded (in a thread) are recorded together next."""
        if self._store is None:
            raise TypeError("Clicks.accept needs a store: without one, put() the payload")
        loop = asyncio.get_running_loop()
        waiting = _waiting(key, payload, at, until, text)
        recorded: asyncio.Future[None] = loop.create_future()
        self._pending.append((waiting, recorded))
        if self._flusher is None:
            self._flusher = loop.create_task(self._flush())
        await recorded
        return _recorded(waiting)

    async def _flush(self) -> None:
        """Record the clicks waiting on the loop, a batch at a time, until none wait."""
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                try:
                    await asyncio.to_thread(self._record, [w for w, _ in batch])
                except Exception as exc:  # told to each click, unless _record told it already
                    for waiting, _ in batch:
                        if waiting.outcome is _WAITING:
                            waiting.outcome = exc
                for _, recorded in batch:
                    recorded.set_result(None)
        finally:
            self._flusher = None

    def _record(self, batch: list[_Waiting]) -> None:
        """Record ``batch`` with one commit, tell each click its outcome, and queue the new
        ones; a fault other than the store's is raised too, once every click is told."""
        assert self._store is not None
        try:
            ids = self._store.accept_clicks(
                [w.click for w in batch],
                claim=self.holder,
                lease_until=self._clock() + self._lease,
            )
        except BaseException as exc:  # told to every click of the batch, none acknowledged
            for waiting in batch:
                waiting.outcome = exc
            if not isinstance(exc, StoreError):
                raise
            return
        for waiting, click_id in zip(batch, ids, strict=True):
            waiting.outcome = click_id
            if click_id is not None:
                self._work.put(_Click(click_id, waiting.payload))

    def put(self, payload: Mapping[str, Any]) -> None:
        """Queue a click in memory only (it is lost if the process stops first)."""
        self._work.put(_Click(None, payload))

    def drain(self) -> None:
        """Wait until every click put here, accepted or taken over has been acted on."""
        self._work.join()

    def sweep(self) -> int:
        """Take over the clicks nobody holds, oldest first, and queue them; how many."""
        if self._store is None or self._closing.is_set():
            return 0  # stopping: what it would take, it would give back
        now = self._clock()
        taken = self._store.claim_clicks(
            self.holder, at=now, lease_until=now + self._lease, limit=SWEEP_BATCH
        )
        for click_id, payload in taken:
            self._work.put(_Click(click_id, json.loads(payload)))
        if len(taken) == SWEEP_BATCH:
            self._work.put(_SWEEP)  # there may be more: after these
        return len(taken)

    def stop(self) -> None:
        """Act on the clicks already here for up to the grace, then give the rest back to
        the store (the click being acted on stays held, until it is done or its lease
        lapses), so the next process or another replica acts on them at once."""
        self._closing.set()
        if self._started:
            self._work.put(None)
            self._thread.join(timeout=self._grace)
            if self._keeper.is_alive():
                self._keeper.join()
            self._started = False
        with self._lock:
            self._stopped = True
            acting = self._acting
        if self._store is None:
            return
        try:
            released = self._store.release_clicks(self.holder, keep=acting)
        except StoreError as exc:
            log.error(
                "could not give back the Slack clicks not acted on (%s): another process takes "
                "them when their lease lapses",
                exc,
            )
            return
        if released:
            log.warning(
                "stopping with %d Slack clicks not acted on: given back, for the next process "
                "or another replica",
                released,
            )

    def _worker(self) -> None:
        while True:
            item = self._work.get()
            try:
                if item is None:
                    return
                if item is _SWEEP:
                    self.sweep()
                elif isinstance(item, _Click):
                    self._take(item)
            except Exception:  # one bad click, or a store away for a moment, stops nothing
                log.exception("acting on a Slack interaction failed")
            finally:
                self._work.task_done()

    def _take(self, click: _Click) -> None:
        if click.id is None or self._store is None:
            self._act(click.payload)
            return
        with self._lock:
            if self._stopped:
                return  # given back: the next process acts on it
            self._acting = click.id
        try:
            lease_until = self._clock() + self._lease
            if not self._store.hold_click(click.id, self.holder, lease_until=lease_until):
                return  # done, or another replica took it over when the lease lapsed
            try:
                self._act(click.payload)
            except Exception:  # marked done all the same: a failing click is not retried
                log.exception("acting on a Slack interaction failed")
            if not self._store.finish_click(click.id, self.holder, at=self._clock()):
                log.warning(
                    "Slack click %d was taken over while it was acted on (its lease lapsed): "
                    "it may be acted on twice",
                    click.id,
                )
        finally:
            with self._lock:
                self._acting = None

    def _keep(self) -> None:
        """Renew the leases of the clicks waiting here; when none wait, take over others."""
        assert self._store is not None
        while not self._closing.wait(KEEP_S):
            try:
                if self._work.unfinished_tasks:
                    now = self._clock()
                    self._store.hold_clicks(self.holder, lease_until=now + self._lease)
                else:
                    self.sweep()
            except StoreError as exc:
                log.warning("cannot keep the Slack clicks' leases now: %s", exc)


@dataclass(frozen=True)
class _Genuine(Signed):
    """A click Slack signed, with its payload, parsed and as it came (JSON text)."""

    payload: Mapping[str, Any]
    text: str


def _unrecorded(exc: DqAgentError) -> tuple[int, str]:
    # Slack sends again a request that was not answered 200.
    log.error("cannot record a Slack interaction: %s", exc)
    return 503, "cannot record the request now: try again"


class Interactions:
    """Slack's requests to :data:`ACTIONS_PATH`: checked, the genuine clicks recorded by
    :class:`Clicks`, then answered. Without a ``verifier`` (Slack not configured, or its clicks
    come over Socket Mode) every request is answered 404."""

    def __init__(self, verifier: Verifier | None, clicks: Clicks) -> None:
        if verifier is not None and not clicks.durable:
            raise ValueError("Slack's clicks must be recorded: give Clicks the verifier's store")
        self._verifier = verifier
        self._clicks = clicks
        self.refused = 0

    def accept(self, body: bytes, headers: Mapping[str, str]) -> tuple[int, str]:
        """The answer to one request (HTTP status, text), its lower-cased headers given."""
        click = self._genuine(body, headers)
        if not isinstance(click, _Genuine):
            return click
        try:
            new = self._clicks.accept(
                click.key, click.payload, at=click.at, until=click.until, text=click.text
            )
        except DqAgentError as exc:
            return _unrecorded(exc)
        return (200, "") if new else self._refuse("replayed request")

    async def accept_async(self, body: bytes, headers: Mapping[str, str]) -> tuple[int, str]:
        """:meth:`accept` on an event loop: checked there (a signature costs microseconds),
        the click recorded with the others that come meanwhile (:meth:`Clicks.accept_async`)."""
        click = self._genuine(body, headers)
        if not isinstance(click, _Genuine):
            return click
        try:
            new = await self._clicks.accept_async(
                click.key, click.payload, at=click.at, until=click.until, text=click.text
            )
        except DqAgentError as exc:
            return _unrecorded(exc)
        return (200, "") if new else self._refuse("replayed request")

    def _genuine(self, body: bytes, headers: Mapping[str, str]) -> _Genuine | tuple[int, str]:
        """The click a request holds when Slack signed it, else the answer to give."""
        if self._verifier is None:
            return 404, "Slack clicks do not come here (no slack: section, or slack.mode: socket)"
        malformed = _malformed(body, headers)
        if malformed is not None:
            log.warning("refused a malformed Slack interaction: %s", malformed)
            return 400, malformed
        signed = self._verifier.signed(body, headers)
        if isinstance(signed, str):
            return self._refuse(signed)
        try:
            text = payload_field(body)
            payload = json.loads(text)
        except (ValueError, KeyError, UnicodeDecodeError):
            return 400, "expected a form with a JSON payload"
        if not isinstance(payload, dict):
            return 400, "expected a JSON object payload"
        return _Genuine(signed.key, signed.at, signed.until, payload, text)

    def _refuse(self, reason: str) -> tuple[int, str]:
        self.refused += 1
        log.warning("refused a Slack interaction: %s", reason)
        return 401, reason


# A GET route: () -> (HTTP status, content type, body).
Page = Callable[[], tuple[int, str, str]]


@dataclass(frozen=True)
class WebRequest:
    """One request for the web application, parsed: lower-cased headers, cookies, form."""

    method: str
    path: str
    query: Mapping[str, str]
    headers: Mapping[str, str]
    cookies: Mapping[str, str]
    form: Mapping[str, str] = field(default_factory=dict)
    # The address the request came from (the proxy's, behind one); "" when unknown.
    client: str = ""
    # Who is signed in, once the web application has found out.
    user: str | None = None
    # The live session's cookie, once the web application has checked it ("" without one).
    session: str = ""


@dataclass(frozen=True)
class WebResponse:
    status: int
    body: str = ""
    content_type: str = "text/html; charset=utf-8"
    headers: tuple[tuple[str, str], ...] = ()


# The web application: None when it has no such route (the server answers 404).
WebApp = Callable[[WebRequest], WebResponse | None]


def limit_for(path: str) -> int:
    """The largest body accepted at ``path``."""
    return MAX_BODY if path == ACTIONS_PATH else MAX_FORM


def web_request(
    method: str, target: str, headers: Mapping[str, str], body: bytes, client: str
) -> WebRequest | tuple[int, str]:
    """The web application's request, from the request line's target (path and query),
    the lower-cased headers and the body read; or the answer to give instead (status, why)."""
    url = urlsplit(target)
    query = {k: v[-1] for k, v in parse_qs(url.query).items()}
    form: dict[str, str] = {}
    if method == "POST":
        try:
            fields = parse_qs(body.decode("utf-8"), keep_blank_values=True)
        except UnicodeDecodeError:
            return 400, "expected a UTF-8 form"
        form = {k: v[-1] for k, v in fields.items()}
    return WebRequest(method, url.path, query, headers, cookies_of(headers), form, client)


def answer(app: WebApp, request: WebRequest) -> WebResponse:
    """``app``'s response to ``request``: 404 where it has no route, 500 where it broke."""
    try:
        response = app(request)
    except Exception:  # a broken page must answer, not hang the client
        log.exception("serving %s %s failed", request.method, request.path)
        return WebResponse(500, "internal error", "text/plain; charset=utf-8")
    if response is None:
        return WebResponse(404, "not found", "text/plain; charset=utf-8")
    return response


def show(page: Page, path: str) -> tuple[int, str, str]:
    """A GET route's answer (status, text, content type); 500 where it broke."""
    try:
        status, kind, text = page()
    except Exception as exc:  # a broken page must answer, not hang the client
        log.exception("serving %s failed", path)
        return 500, str(exc), "text/plain; charset=utf-8"
    return status, text, kind


def payload_field(body: bytes) -> str:
    """The ``payload`` field of a form Slack sent, as ``parse_qs(body.decode("utf-8"),
    strict_parsing=True)["payload"][0]`` reads it, and raising what that raises.

    Slack's form is that one field, its JSON percent-encoded nearly byte for byte, and
    ``parse_qs`` decodes it in Python a byte at a time: a fifth of the event loop's time per
    click. So a form of printable ASCII, the one field, is decoded in C instead: with each
    ``%`` made ``=``, quoted-printable decoding (:func:`binascii.a2b_qp`) turns every ``=XX``
    into its byte, as percent-decoding does, and leaves anything else as it was (there is
    no line break for it to read as a soft one). Each valid escape shortens the text by
    exactly two bytes and nothing else shortens it by as many, so the length tells whether
    every ``%`` was one; any other form takes ``parse_qs``."""
    name, _, value = body.partition(b"=")
    if name == b"payload" and value and not value.translate(None, _FORM_PRINTABLE):
        decoded = binascii.a2b_qp(value.replace(b"+", b" ").replace(b"%", b"="))
        if len(decoded) == len(value) - 2 * value.count(b"%"):
            return decoded.decode("utf-8", "replace")
    return parse_qs(body.decode("utf-8"), strict_parsing=True)["payload"][0]


def _malformed(body: bytes, headers: Mapping[str, str]) -> str | None:
    """Why a Slack request cannot even be checked, if it cannot."""
    timestamp = headers.get("x-slack-request-timestamp")
    if timestamp and not _TIMESTAMP.fullmatch(timestamp):
        return "X-Slack-Request-Timestamp is not a number"
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return "the body is not UTF-8"
    return None


def cookies_of(headers: Mapping[str, str]) -> dict[str, str]:
    """The request's cookies, from its lower-cased headers; none when they do not parse."""
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(headers.get("cookie", ""))
    except CookieError:
        return {}
    return {name: morsel.value for name, morsel in jar.items()}
