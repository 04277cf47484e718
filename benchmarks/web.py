"""Benchmark: how fast ``dq-agent serve`` answers Slack's clicks and the dashboard's overview
page under 50 concurrent clients, with 10,000 suite runs in the state store.

The project and its store are the dashboard benchmark's (:mod:`benchmarks.ui`: generated
suites, 10,000 suite runs and 1,000 incidents played through the product), dated so that the
last run is this hour's, with working hours on every day and all day (:data:`ALWAYS`).
``dq-agent.yml`` then gets a ``slack:`` section (a bot token, a signing secret, and a Slack
emulator from :mod:`dq_agent_sandbox` serving in a process of its own, where the clicks are
acted on after they are acknowledged) and a dashboard user who signs in with a token. The
threads of the open incidents are posted in the emulator, so the replies a click causes find
them.

The real command serves it, ``dq-agent serve --listen 127.0.0.1:PORT --workers N`` (uvicorn),
and once ``/healthz`` answers, ``--clients`` asyncio clients, each with a connection of its
own, send two kinds of request. By default each sends with :class:`LeanClient`, a minimal
HTTP/1.1 client on asyncio's streams, because the clients share the machine's cores with the
server: with httpx (``--http-client httpx``), the 50 clients used more CPU than the server
they measured, and the closed loop timed them as much as the server.

1. ``GET /`` (the overview page), by clients signed in with a session cookie
   (``GET /login``, then ``POST /login`` with the form token and the user's token);
2. ``POST /slack/actions``: a Slack ``block_actions`` click on an open incident's Snooze
   button, signed with the signing secret at the current time, each click a different request
   (its ``trigger_id``), so none is refused as a replay.

Each kind is measured under two loads:

- **closed** (capacity): every client sends back to back until ``--requests`` are sent or
  ``--seconds`` have passed, each request timed from sending to the whole response read. With
  50 clients always waiting, latency is 50 divided by the rate the server and clients reach
  together (Little's law): it measures throughput more than waiting.
- **open** (latency at a load), at each of ``--rates`` (arrivals a second, in all): the same
  number of requests arrive as a Poisson process, each to a client drawn at random, whether or
  not the earlier ones were answered, each timed from when it was due (a request that waited
  for its client's previous answer counts the wait).

The overview goes first: the server acts on acknowledged clicks afterwards, one at a time, and
that work would otherwise be timed with the pages. Anything but a 200 is an error. After the
clicks it reports how many of them had been acted on (the snoozes recorded in the store) when
the last was acknowledged, and waits up to ``--drain`` seconds for the rest; then it stops the
server with SIGTERM, which acts on what is left before exiting (for at most 30 s), and reports
how many were acted on in all.

Last, the same clients measure **the floor**: a server that does nothing but answer, served as
``dq-agent serve`` is (uvicorn with the product's settings, the answer made in the thread
pool), with a page the overview's size and an empty 200 for a click. The clients share the
machine's cores with the server, so the floor is what this machine allows any Python server.

Printed per kind and load: p50/p95/p99/max milliseconds, requests per second and errors,
against the targets: p99 ≤ 50 ms for a click's acknowledgement and ≤ 200 ms for the overview
page. A miss is printed as ``MISS``, not an error exit. The clients collect no garbage while
they time (their pauses are not the server's).

Usage: ``.venv/bin/python benchmarks/web.py [--runs 10000] [--incidents 1000] [--clients 50]
[--requests 2000] [--seconds 120] [--rates 50,200] [--workers 1[,2...]] [--state-url URL]
[--drain 60] [--http-client lean|httpx] [--json PATH]``
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import itertools
import json
import math
import multiprocessing
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

import httpx
import sqlalchemy as sa
import uvicorn
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: make the `benchmarks` package importable
    sys.path.insert(0, str(ROOT))

from benchmarks import ui  # noqa: E402
from dq_agent.config import load_project  # noqa: E402
from dq_agent.serving import SERVER_OPTIONS, tcp_socket  # noqa: E402
from dq_agent.store import Store  # noqa: E402
from dq_agent.store.models import IncidentEvent, OutboxMessage, SlackClick  # noqa: E402
from dq_agent.ui.app import LOGIN_COOKIE  # noqa: E402
from dq_agent.ui.auth import hash_token  # noqa: E402
from dq_agent_sandbox.http import LoopbackServer  # noqa: E402
from dq_agent_sandbox.slack import SlackEmulator, button_click, signed_interaction  # noqa: E402

CLICK_TARGET_MS = 50.0
PAGE_TARGET_MS = 200.0
TOKEN = "xoxb-bench-web"
SIGNING_SECRET = "bench-web-signing-secret"
USER = "ana@acme.com"
USER_TOKEN = "bench-web-token-0123456789"
# The channel ui.Seeder records every delivered message in: the emulator must know it.
SEEDED_CHANNEL = "C0DQALERTS"
# Untimed clicks before the timed ones (few: each is acted on after, about one a second).
WARM_CLICKS = 2
STOP_TIMEOUT_S = 90  # serve acts on the clicks left for at most 30 s, then exits
# Every day, all day: whatever day and hour this runs, the open incidents' first messages
# were sent when they opened (not held for Monday morning), so there are threads to click
# in, and the replies a click causes are sent at once.
ALWAYS = "{start: '00:00', end: '23:59', days: [mon, tue, wed, thu, fri, sat, sun]}"


# -- the project ---------------------------------------------------------------------------------


def settings_yaml(state_url: str, slack_url: str) -> str:
    """``dq-agent.yml`` for serving: the seeded store, Slack, a dashboard user, working hours
    :data:`ALWAYS`."""
    return (
        f"state_url: '{state_url}'\n"
        "slack:\n"
        f"  token: {TOKEN}\n"
        f"  signing_secret: {SIGNING_SECRET}\n"
        f"  base_url: {slack_url}/api/\n"
        "ui:\n"
        "  session_secret: bench-web-session-secret\n"  # one for every worker process
        f"  users:\n    {USER}: {{token_hash: '{hash_token(USER_TOKEN)}'}}\n"
        "nudges:\n"
        "  every: 4h\n"
        "  escalate_after: 2\n"
        f"  working_hours: {ALWAYS}\n"
    )


def slack_emulator(conn: Connection) -> None:
    """The Slack emulator, in a process of its own (its work must not slow the clients):
    sends its base URL, then serves until told to stop or the parent goes away."""
    emulator = SlackEmulator(token=TOKEN, signing_secret=SIGNING_SECRET)
    emulator.seed({"channels": [{"name": "data-alerts", "id": SEEDED_CHANNEL}]})
    server = LoopbackServer(emulator).start()
    conn.send(server.base_url)
    with contextlib.suppress(EOFError):
        conn.recv()
    server.stop()


def floor_server(conn: Connection, page_size: int) -> None:
    """The floor: a server that does nothing but answer, as ``dq-agent serve`` is served
    (uvicorn with the product's settings, each answer made in the thread pool), with a page
    the size of the overview at ``/`` and an empty 200 for a click. In a process of its own:
    sends its port, then serves until terminated."""
    page = b"x" * page_size

    def made() -> bytes:
        return page

    async def get(_request: Request) -> Response:
        return Response(await run_in_threadpool(made), media_type="text/html; charset=utf-8")

    async def post(request: Request) -> Response:
        await request.body()
        await run_in_threadpool(made)
        return Response(b"", media_type="text/plain; charset=utf-8")

    app = Starlette(routes=[Route("/", get), Route("/slack/actions", post, methods=["POST"])])
    sock = tcp_socket("127.0.0.1", 0)
    conn.send(sock.getsockname()[1])
    config = uvicorn.Config(app, log_config=None, log_level="warning", **SERVER_OPTIONS)
    uvicorn.Server(config).run(sockets=[sock])


def floor_round(context: Any, page_size: int, targets: list[Target], args: Any) -> list[Kind]:
    ours, theirs = context.Pipe()
    server = context.Process(target=floor_server, args=(theirs, page_size), daemon=True)
    server.start()
    try:
        base_url = f"http://127.0.0.1:{ours.recv()}"
        print(f"\nthe floor: an empty server answering {page_size:,}-byte pages")
        pages, clicks = asyncio.run(measure(base_url, targets, args, sign_in_first=False))
        return pages + clicks
    finally:
        server.terminate()
        server.join(timeout=STOP_TIMEOUT_S)


@dataclass(frozen=True)
class Target:
    """An open incident's Snooze button, as a person who may press it sees it."""

    incident: int
    user_id: str
    channel: str
    ts: str


def post_threads(url: str, slack_url: str) -> list[Target]:
    """Post the open incidents' first messages in the emulator, where the product posts them
    (a person's in a direct message, a ``#channel``'s there), and record their channels and
    timestamps in the store (the seeded store made them up); the Snooze buttons of the first
    person told, whom the product lets snooze the incident."""
    api = httpx.Client(base_url=f"{slack_url}/api/", headers={"Authorization": f"Bearer {TOKEN}"})
    users: dict[str, str] = {}

    def user_id(email: str) -> str:
        if email not in users:
            found = api.post("users.lookupByEmail", data={"email": email}).json()
            users[email] = found["user"]["id"]
        return users[email]

    targets: list[Target] = []
    with Store.open(url) as store, api:
        for incident in store.incidents(events=False):
            if incident["status"] == "resolved":
                continue
            roots = [
                m
                for m in store.outbox(incident_id=incident["id"])
                if m.kind == "root" and m.status == "sent"
            ]
            for root in roots:
                person = not root.recipient.startswith("#")
                to = user_id(root.recipient) if person else root.recipient[1:]
                posted = api.post(
                    "chat.postMessage", data={"channel": to, "text": root.text}
                ).json()
                if not posted.get("ok"):
                    raise SystemExit(f"the Slack emulator refused a thread: {posted}")
                with store.engine.begin() as conn:
                    conn.execute(
                        sa.update(OutboxMessage)
                        .where(OutboxMessage.id == root.id)
                        .values(channel=posted["channel"], ts=posted["ts"])
                    )
                if person and not any(t.incident == incident["id"] for t in targets):
                    targets.append(
                        Target(incident["id"], to, str(posted["channel"]), str(posted["ts"]))
                    )
    return targets


def snoozes(url: str) -> int:
    """Snoozes recorded in the store so far."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            query = sa.select(sa.func.count()).where(IncidentEvent.event == "snoozed")
            return int(conn.execute(query).scalar_one())
    finally:
        engine.dispose()


def waiting_clicks(url: str) -> int:
    """Acknowledged clicks in the store that no process has acted on yet."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            query = sa.select(sa.func.count()).where(SlackClick.done_at.is_(None))
            return int(conn.execute(query).scalar_one())
    finally:
        engine.dispose()


# -- the server ----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def serve_command() -> list[str]:
    """The installed ``dq-agent`` beside this interpreter, else the module."""
    script = Path(sys.executable).parent / "dq-agent"
    return [str(script)] if script.exists() else [sys.executable, "-m", "dq_agent.cli"]


class Server:
    """``dq-agent serve`` as a child process, its log in a file."""

    def __init__(self, project: Path, workers: int, log: Path) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log = log
        command = [*serve_command(), "serve", "--project", str(project)]
        command += ["--listen", f"127.0.0.1:{self.port}", "--workers", str(workers)]
        with log.open("w") as out:
            self.process = subprocess.Popen(
                command, stdout=out, stderr=subprocess.STDOUT, env={**os.environ}
            )

    def wait_healthy(self, timeout: float = 120) -> float:
        """Seconds until ``/healthz`` answered 200."""
        started = time.perf_counter()
        deadline = started + timeout
        while time.perf_counter() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"dq-agent serve exited {self.process.returncode}:\n{self.tail()}")
            try:
                if httpx.get(self.base_url + "/healthz", timeout=2).status_code == 200:
                    return time.perf_counter() - started
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise SystemExit(
            f"dq-agent serve did not answer /healthz in {timeout:.0f} s:\n{self.tail()}"
        )

    def stop(self) -> tuple[float, int | None]:
        """SIGTERM, then wait (SIGKILL after STOP_TIMEOUT_S): seconds taken, exit code."""
        started = time.perf_counter()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return time.perf_counter() - started, self.process.returncode

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def errors(self) -> list[str]:
        """The error lines of the server's log."""
        lines = self.log.read_text(errors="replace").splitlines()
        return [line for line in lines if "ERROR" in line or line.startswith("Traceback")]


# -- the clients ---------------------------------------------------------------------------------


@dataclass
class Kind:
    """One kind of request's timings."""

    name: str
    target_ms: float
    load: str = "closed"  # "closed": back to back; "N/s": N arrivals a second in all
    took_ms: list[float] = field(default_factory=list)
    size: int = 0  # bytes of the last answer's body
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)
    wall_s: float = 0.0

    def error(self, what: str) -> None:
        self.errors += 1
        if len(self.error_samples) < 5:
            self.error_samples.append(what)

    def percentile(self, share: float) -> float:
        ranked = sorted(self.took_ms)
        return ranked[max(0, math.ceil(share * len(ranked)) - 1)] if ranked else math.nan

    def summary(self) -> dict[str, Any]:
        done = len(self.took_ms)
        p99 = self.percentile(0.99)
        return {
            "kind": self.name,
            "load": self.load,
            "size": self.size,
            "requests": done,
            "errors": self.errors,
            "p50_ms": round(self.percentile(0.50), 2),
            "p95_ms": round(self.percentile(0.95), 2),
            "p99_ms": round(p99, 2),
            "max_ms": round(max(self.took_ms), 2) if done else math.nan,
            "per_s": round(done / self.wall_s, 1) if self.wall_s else 0.0,
            "wall_s": round(self.wall_s, 2),
            "target_p99_ms": self.target_ms,
            "verdict": "PASS" if done and p99 <= self.target_ms and not self.errors else "MISS",
            "error_samples": self.error_samples,
        }


class Answer(Protocol):
    """What the timing needs of an answer: httpx's response, or :class:`LeanAnswer`."""

    @property
    def status_code(self) -> int: ...
    @property
    def content(self) -> bytes: ...
    @property
    def text(self) -> str: ...


class Client(Protocol):
    """What the clients send with: ``httpx.AsyncClient``, or :class:`LeanClient`."""

    async def get(self, url: str) -> Answer: ...
    async def post(self, url: str, *, content: bytes, headers: dict[str, str]) -> Answer: ...
    async def aclose(self) -> None: ...


@dataclass(frozen=True)
class LeanAnswer:
    status_code: int
    content: bytes

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")


class LeanError(Exception):
    """An answer this client does not read (or none at all)."""


class LeanClient:
    """One keep-alive HTTP/1.1 connection on asyncio's streams, doing no more than the
    benchmark needs: it writes each request whole and reads the status line, the headers
    and a ``Content-Length`` body. A session cookie, when given, is sent with every
    request."""

    def __init__(self, base_url: str, cookie: str = "", timeout: float = 60) -> None:
        parts = urlsplit(base_url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.head = f"Host: {self.host}:{self.port}\r\n"
        if cookie:
            self.head += f"Cookie: {cookie}\r\n"
        self.timeout = timeout
        self.streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def get(self, url: str) -> LeanAnswer:
        return await self.request("GET", url, b"", {})

    async def post(self, url: str, *, content: bytes, headers: dict[str, str]) -> LeanAnswer:
        return await self.request("POST", url, content, headers)

    async def request(
        self, method: str, url: str, body: bytes, headers: dict[str, str]
    ) -> LeanAnswer:
        async with asyncio.timeout(self.timeout):
            if self.streams is not None and self.streams[0].at_eof():
                await self.aclose()  # the server let it go while idle: another, as httpx does
            if self.streams is None:
                self.streams = await asyncio.open_connection(self.host, self.port)
            reader, writer = self.streams
            extra = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
            request = f"{method} {url} HTTP/1.1\r\n{self.head}{extra}"
            writer.write(f"{request}Content-Length: {len(body)}\r\n\r\n".encode() + body)
            try:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                status = int(lines[0].split(" ", 2)[1])
                fields = dict(
                    (name.strip().lower(), value.strip())
                    for name, _, value in (line.partition(":") for line in lines[1:] if line)
                )
                if "content-length" not in fields:
                    await self.aclose()
                    raise LeanError(f"{status} without a Content-Length: {fields}")
                content = await reader.readexactly(int(fields["content-length"]))
            except asyncio.IncompleteReadError as exc:
                await self.aclose()
                raise LeanError("the server closed the connection") from exc
            if fields.get("connection", "").lower() == "close":
                await self.aclose()
            return LeanAnswer(status, content)

    async def aclose(self) -> None:
        if self.streams is not None:
            _, writer = self.streams
            self.streams = None
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


Send = Callable[[Client], Awaitable[Answer]]


@contextlib.contextmanager
def collector_quiet() -> Iterator[None]:
    """No garbage collection here while requests are timed: the clients stand in for 50
    browsers (or Slack), and their own collector's pauses (up to 180 ms in this process)
    are not the server's latency."""
    gc.collect()
    gc.freeze()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
        gc.unfreeze()


async def timed(kind: Kind, send: Send, client: Client, since: float) -> None:
    """Send one request and count it in ``kind``: its time from ``since`` (a perf_counter
    reading) to the whole answer read when it is a 200, else an error."""
    try:
        response = await send(client)
    except (httpx.HTTPError, OSError, LeanError) as exc:
        kind.error(f"{exc.__class__.__name__}: {exc}")
        return
    if response.status_code == 200:
        kind.took_ms.append((time.perf_counter() - since) * 1000)
        kind.size = len(response.content)
    else:
        kind.error(f"{response.status_code} {response.text[:120]!r}")


async def load(
    clients: list[Client], send: Send, kind: Kind, requests: int, seconds: float
) -> None:
    """Every client sends ``send`` back to back until ``requests`` are sent or ``seconds``
    have passed; each is timed from sending to the whole response read."""
    counter = itertools.count()
    deadline = time.perf_counter() + seconds

    async def client_loop(client: Client) -> None:
        while next(counter) < requests and time.perf_counter() < deadline:
            await timed(kind, send, client, time.perf_counter())

    with collector_quiet():
        started = time.perf_counter()
        await asyncio.gather(*(client_loop(c) for c in clients))
        kind.wall_s = time.perf_counter() - started


async def paced(
    clients: list[Client],
    send: Send,
    kind: Kind,
    rate: float,
    requests: int,
    seconds: float,
    seed: int,
) -> None:
    """``requests`` arrive (fewer when ``seconds`` are over first) at ``rate`` a second in
    all, a Poisson process, each to a client drawn at random, whether or not the earlier
    ones were answered. Each is timed from when it was due: one that waited for its
    client's previous answer counts the wait (no coordinated omission)."""
    rng = random.Random(seed)
    schedules: list[list[float]] = [[] for _ in clients]
    at = 0.0
    for _ in range(min(requests, max(1, int(rate * seconds)))):
        at += rng.expovariate(rate)
        schedules[rng.randrange(len(clients))].append(at)

    async def client_loop(client: Client, due: list[float]) -> None:
        for offset in due:
            wait = started + offset - time.perf_counter()
            if wait > 0:
                await asyncio.sleep(wait)
            await timed(kind, send, client, started + offset)

    with collector_quiet():
        started = time.perf_counter()
        await asyncio.gather(*(client_loop(c, d) for c, d in zip(clients, schedules, strict=True)))
        kind.wall_s = time.perf_counter() - started


async def sign_in(client: httpx.AsyncClient) -> None:
    """A session cookie for ``client``, as a browser gets one."""
    form = await client.get("/login")
    nonce = client.cookies.get(LOGIN_COOKIE, path="/login")
    if form.status_code != 200 or not nonce:
        raise SystemExit(f"GET /login: {form.status_code} {form.text[:200]}")
    signed = await client.post("/login", data={"csrf": nonce, "email": USER, "token": USER_TOKEN})
    if signed.status_code != 303:
        raise SystemExit(f"POST /login: {signed.status_code} {signed.text[:200]}")


async def connected(base_url: str, count: int, kind: str, sign_in_first: bool) -> list[Client]:
    """``count`` clients of ``kind`` (``httpx`` or ``lean``), each signed in first when
    ``sign_in_first`` (a lean client through httpx, then given its session cookie)."""
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    browsers = [
        httpx.AsyncClient(base_url=base_url, timeout=60, limits=limits) for _ in range(count)
    ]
    if sign_in_first:
        await asyncio.gather(*(sign_in(b) for b in browsers))
    if kind == "httpx":
        return list(browsers)
    cookies = [
        "; ".join(f"{c.name}={c.value}" for c in b.cookies.jar if c.path == "/") for b in browsers
    ]
    await asyncio.gather(*(b.aclose() for b in browsers))
    return [LeanClient(base_url, cookie) for cookie in cookies]


def clicker(targets: list[Target]) -> Send:
    """Sends a signed Snooze click on the open incidents in turn, each a different request."""
    turns = itertools.cycle(targets)
    run = uuid.uuid4().hex[:8]
    numbers = itertools.count()

    async def send(client: Client) -> Answer:
        target, n = next(turns), next(numbers)
        payload = button_click(
            user_id=target.user_id,
            action_id="snooze",
            value=json.dumps({"incident": target.incident}, separators=(",", ":")),
            channel_id=target.channel,
            message_ts=target.ts,
            trigger_id=f"{int(time.time())}.{n}.{run}",
        )
        headers, body = signed_interaction(SIGNING_SECRET, payload, timestamp=int(time.time()))
        return await client.post("/slack/actions", content=body, headers=headers)

    return send


async def overview(client: Client) -> Answer:
    return await client.get("/")


@dataclass
class Round:
    workers: int
    started_s: float
    kinds: list[dict[str, Any]]
    clicks_acked: int
    acted_at_last_ack: int
    acted_after_drain: int
    drain_s: float
    acted_after_stop: int
    waiting_after_stop: int
    stop_s: float
    exit_code: int | None
    log_errors: list[str]


async def measure(
    base_url: str, targets: list[Target], args: argparse.Namespace, *, sign_in_first: bool = True
) -> tuple[list[Kind], list[Kind]]:
    """The overview's timings, then the clicks': back to back first, then at each of
    ``args.rates``."""
    clients = await connected(base_url, args.clients, args.http_client, sign_in_first)
    try:
        # Warm-up, untimed: every client's connection open and every worker serving.
        warm = Kind("warm-up", 0)
        await load(clients, overview, warm, 2 * len(clients), args.seconds)
        await load(clients[:WARM_CLICKS], clicker(targets), warm, WARM_CLICKS, args.seconds)
        if warm.errors:  # counted where they are timed; said here
            print(f"  warm-up: {warm.errors} errors, e.g. {warm.error_samples[0]}", flush=True)
        timed: list[list[Kind]] = []
        for name, send, target in (
            ("overview GET /", overview, PAGE_TARGET_MS),
            ("Slack click ack", clicker(targets), CLICK_TARGET_MS),
        ):
            kinds = [Kind(name, target)]
            print(f"  {name}: {args.requests:,} requests by {len(clients)} clients", flush=True)
            await load(clients, send, kinds[0], args.requests, args.seconds)
            for rate in args.rates:
                kinds.append(Kind(name, target, load=f"{rate:g}/s"))
                print(f"  {name}: {rate:g} a second for {args.seconds:g} s", flush=True)
                await paced(clients, send, kinds[-1], rate, args.requests, args.seconds, args.seed)
            timed.append(kinds)
        return timed[0], timed[1]
    finally:
        await asyncio.gather(*(c.aclose() for c in clients))


def one_round(project: Path, url: str, targets: list[Target], workers: int, args: Any) -> Round:
    server = Server(project, workers, project / f"serve-{workers}.log")
    try:
        started = server.wait_healthy()
        print(f"\ndq-agent serve --workers {workers}: /healthz answered after {started:.1f} s")
        before = snoozes(url)
        pages, clicks = asyncio.run(measure(server.base_url, targets, args))
        acked = sum(len(k.took_ms) for k in clicks) + WARM_CLICKS
        at_last_ack = snoozes(url) - before
        drained = time.perf_counter()
        acted = at_last_ack
        while acted < acked and time.perf_counter() - drained < args.drain:
            time.sleep(0.5)
            acted = snoozes(url) - before
        drain_s = time.perf_counter() - drained
    except BaseException:
        server.stop()
        print(f"the server's log ends:\n{server.tail()}", file=sys.stderr)
        raise
    stop_s, code = server.stop()
    return Round(
        workers,
        round(started, 2),
        [k.summary() for k in pages + clicks],
        acked,
        at_last_ack,
        acted,
        round(drain_s, 1),
        snoozes(url) - before,
        waiting_clicks(url),
        round(stop_s, 1),
        code,
        server.errors(),
    )


# -- the report ----------------------------------------------------------------------------------


def table(title: str, kinds: list[dict[str, Any]]) -> None:
    head = (
        f"{'kind':<18} {'load':>6} {'requests':>8} {'errors':>6} {'p50':>7} {'p95':>7} "
        f"{'p99':>7} {'max':>8} {'req/s':>7}  target p99"
    )
    print(f"\n{title} (ms)")
    print(head)
    print("-" * len(head))
    for k in kinds:
        print(
            f"{k['kind']:<18} {k['load']:>6} {k['requests']:>8,} {k['errors']:>6} "
            f"{k['p50_ms']:7.1f} {k['p95_ms']:7.1f} {k['p99_ms']:7.1f} {k['max_ms']:8.1f} "
            f"{k['per_s']:7.1f}  ≤ {k['target_p99_ms']:.0f} ms {k['verdict']}"
        )
        for sample in k["error_samples"]:
            print(f"    error: {sample}")


def report(result: Round, clients: int) -> None:
    table(f"workers={result.workers}, {clients} concurrent clients", result.kinds)
    print(
        f"clicks acted on (snoozes recorded): {result.acted_at_last_ack:,} of "
        f"{result.clicks_acked:,} acknowledged when the last was acknowledged, "
        f"{result.acted_after_drain:,} after waiting {result.drain_s:.0f} s, "
        f"{result.acted_after_stop:,} once the server had stopped "
        f"(SIGTERM → exit {result.exit_code} in {result.stop_s:.0f} s); "
        f"{result.waiting_after_stop:,} kept in the state store for the next process"
    )
    if result.log_errors:
        print(f"the server logged {len(result.log_errors)} error lines, e.g.:")
        for line in result.log_errors[:3]:
            print(f"    {line[:300]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10_000, help="suite runs in the store")
    parser.add_argument("--incidents", type=int, default=1_000, help="incidents in the store")
    parser.add_argument("--clients", type=int, default=50, help="concurrent clients (50)")
    parser.add_argument("--requests", type=int, default=2_000, help="requests per kind (2,000)")
    parser.add_argument("--seconds", type=float, default=120, help="at most this long per kind")
    parser.add_argument(
        "--workers", default="1", help="dq-agent serve --workers; a list (1,2) serves each in turn"
    )
    parser.add_argument("--drain", type=float, default=60, help="wait for clicks' actions (s)")
    parser.add_argument(
        "--rates",
        default="50,200",
        help="arrivals a second, in all, of each open-loop measurement (none: '')",
    )
    parser.add_argument(
        "--state-url",
        help="a new SQLite file, or a PostgreSQL database to make a schema in "
        f"(e.g. {ui.DEFAULT_POSTGRES_URL}); default: SQLite in a temporary folder",
    )
    parser.add_argument(
        "--http-client",
        choices=("lean", "httpx"),
        default="lean",
        help="what the clients send with: a minimal HTTP/1.1 client (lean), or httpx",
    )
    parser.add_argument("--seed", type=int, default=20261124)
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args()
    workers = [int(w) for w in args.workers.split(",")]
    args.rates = [float(r) for r in args.rates.split(",") if r]
    suites = max(10, math.ceil(args.incidents * (1 + ui.SPARE_PROBLEMS) / ui.CHECKS_PER_SUITE))
    # The last run this hour, so the overview's recent days hold runs, as a live store's do.
    ui.END = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    load_average = os.getloadavg()

    # Forked before any thread or connection exists here: it starts in a moment.
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
    ours, theirs = context.Pipe()
    emulator = context.Process(target=slack_emulator, args=(theirs,), daemon=True)
    with (
        tempfile.TemporaryDirectory(prefix="dq-bench-web-") as tmp,
        ui.stores(args.state_url, Path(tmp)) as new_store,
    ):
        emulator.start()
        try:
            slack_url = ours.recv()
            url = new_store("web")
            root = Path(tmp) / "project"
            project = ui.write_project(root, suites, url, working_hours=ALWAYS)
            engine = sa.make_url(url).get_backend_name()
            print(f"{len(project.suites)} suites; {engine} state store")
            print(f"store: {args.runs:,} suite runs, {args.incidents:,} incidents")
            seeded = ui.seed(project, url, args.runs, args.incidents, args.seed)
            print(f"  seeded in {seeded:.1f} s")
            (root / "dq-agent.yml").write_text(settings_yaml(url, slack_url), encoding="utf-8")
            served = load_project(root, env={})
            if served.issues:
                raise SystemExit("\n".join(str(i) for i in served.issues))
            targets = post_threads(url, slack_url)
            if not targets:
                raise SystemExit("no open incident to snooze: give --incidents more")
            print(f"clicks: Snooze on {len(targets)} open incidents, their threads in the emulator")
            rounds = []
            for n in workers:
                rounds.append(one_round(root, url, targets, n, args))
                report(rounds[-1], args.clients)
            page_size = rounds[0].kinds[0]["size"]
            floor = [k.summary() for k in floor_round(context, page_size, targets, args)]
            table(f"the floor, {args.clients} concurrent clients", floor)
        finally:
            ours.send("stop")
            emulator.join(timeout=10)
            if emulator.is_alive():
                emulator.terminate()
    print(
        f"\nload average before the run: {' '.join(f'{x:.2f}' for x in load_average)} "
        f"on {os.cpu_count()} cores (the clients and the server share them)"
    )
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "runs": args.runs,
                    "incidents": args.incidents,
                    "clients": args.clients,
                    "state_store": engine,
                    "load_average": load_average,
                    "rounds": [asdict(r) for r in rounds],
                    "floor": floor,
                },
                indent=2,
            ),
            encoding="utf-8",
        )


if __name__ == "__main__":
    main()
