"""Slack's side of Socket Mode for the Slack emulator: WebSocket connections that carry
button clicks to the app, so the app needs no public URL.

The app calls ``apps.connections.open`` (served by :class:`~dq_agent_sandbox.slack.SlackEmulator`
with the app-level token), which answers ``ws://127.0.0.1:PORT/link/?ticket=…&app_id=…`` from
:meth:`SocketModeLink.open_url`. The app connects there (a WebSocket, RFC 6455, written here on
a plain socket: the standard library has no WebSocket server), is greeted with ``hello``, and
gets each click as an ``interactive`` envelope, which it acknowledges by sending back
``{"envelope_id": …}``. As Slack does, an envelope not acknowledged is delivered again on the
next connection.

For tests: :meth:`SocketModeLink.click` delivers a ``block_actions`` payload (optionally
dropping the connection right after, before any acknowledgement can arrive),
:meth:`SocketModeLink.deliver` delivers an envelope again, :meth:`SocketModeLink.drop` and
:meth:`SocketModeLink.refresh` end a connection abruptly or as Slack asks for a reconnect,
and :meth:`SocketModeLink.state` shows connections, deliveries and acknowledgements.

Where the emulation stops:

- a ticket is good for one connection and never expires; there is no TLS (``ws://``);
- frames from the app must be masked, as RFC 6455 requires; extensions and subprotocols are
  not negotiated; a message is at most :data:`MAX_MESSAGE` bytes;
- only ``interactive`` envelopes are sent (no Events API, no slash commands), each with
  ``accepts_response_payload: false``; an acknowledgement's own payload is ignored.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import socket
import struct
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

__all__ = ["SocketModeLink"]

# RFC 6455, section 1.3: what the server appends to the client's key before hashing it.
_ACCEPT_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_TEXT, _CONTINUATION, _CLOSE, _PING, _PONG = 0x1, 0x0, 0x8, 0x9, 0xA
MAX_HANDSHAKE = 16 << 10
MAX_MESSAGE = 1 << 20
HANDSHAKE_TIMEOUT_S = 5.0
LINK_PATH = "/link/"


def _accept_key(key: str) -> str:
    digest = hashlib.sha1((key + _ACCEPT_GUID).encode("ascii")).digest()
    return base64.b64encode(digest).decode("ascii")


def _frame(opcode: int, payload: bytes) -> bytes:
    """One unmasked, final frame (a server never masks)."""
    head = bytes([0x80 | opcode])
    size = len(payload)
    if size < 126:
        head += bytes([size])
    elif size < 1 << 16:
        head += bytes([126]) + struct.pack("!H", size)
    else:
        head += bytes([127]) + struct.pack("!Q", size)
    return head + payload


class _Closed(Exception):
    """The other side closed the connection, or broke the protocol."""


def _read_exact(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise _Closed("connection closed")
        data += chunk
    return data


def _read_frame(sock: socket.socket) -> tuple[bool, int, bytes]:
    """The next frame from a client: whether it is final, its opcode, its unmasked payload."""
    first, second = _read_exact(sock, 2)
    size = second & 0x7F
    if size == 126:
        (size,) = struct.unpack("!H", _read_exact(sock, 2))
    elif size == 127:
        (size,) = struct.unpack("!Q", _read_exact(sock, 8))
    if not second & 0x80:
        raise _Closed("an unmasked frame from the client")
    if size > MAX_MESSAGE:
        raise _Closed("a frame too large")
    mask = _read_exact(sock, 4)
    masked = _read_exact(sock, size)
    payload = bytes(byte ^ mask[i % 4] for i, byte in enumerate(masked))
    return bool(first & 0x80), first & 0x0F, payload


def _half_close(sock: socket.socket) -> None:
    """Stop sending: the app sees the connection end; what it still sends is read and lost
    (closing outright would reset the connection and could discard what it has not read)."""
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_WR)


@dataclass
class _Connection:
    number: int
    sock: socket.socket
    send_lock: threading.Lock = field(default_factory=threading.Lock)
    ready: bool = False  # greeted with hello
    dropped: bool = False  # nothing it sends is heard any more
    open: bool = True

    def send(self, opcode: int, payload: bytes) -> None:
        with self.send_lock:
            try:
                self.sock.sendall(_frame(opcode, payload))
            except OSError:
                self.open = False


class SocketModeLink:
    """Socket Mode connections to the app, served on 127.0.0.1 until :meth:`stop`."""

    def __init__(self, app_id: str, *, host_name: str = "applink-sandbox") -> None:
        self.app_id = app_id
        self._host_name = host_name
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._threads: list[threading.Thread] = []
        self._tickets: set[str] = set()
        self._connections: list[_Connection] = []
        self._envelopes: dict[str, dict[str, Any]] = {}  # by id, in the order of the clicks
        self._deliveries: list[tuple[str, int]] = []  # (envelope id, connection number)
        self._acks: list[tuple[str, int]] = []
        self._refused = 0

    # ----------------------------------------------------------------- serving

    @property
    def serving(self) -> bool:
        return self._listener is not None

    def start(self) -> SocketModeLink:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        listener.settimeout(0.05)  # so that stop() returns promptly
        self._listener = listener
        self._thread = threading.Thread(
            target=self._accept, name="sandbox-slack-socket", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        listener, self._listener = self._listener, None
        if listener is None:
            return
        if self._thread is not None:
            self._thread.join(timeout=5)
        listener.close()
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            self._close(connection)
        for thread in self._threads:
            thread.join(timeout=5)

    def __enter__(self) -> SocketModeLink:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def open_url(self) -> str:
        """A WebSocket URL with a new one-use ticket (what ``apps.connections.open`` answers)."""
        listener = self._listener
        if listener is None:
            raise RuntimeError("the Socket Mode link is not serving: start() it first")
        ticket = uuid.uuid4().hex
        with self._lock:
            self._tickets.add(ticket)
        port = listener.getsockname()[1]
        return f"ws://127.0.0.1:{port}{LINK_PATH}?ticket={ticket}&app_id={self.app_id}"

    # ----------------------------------------------------------------- test controls

    def click(self, payload: Mapping[str, Any], *, drop: bool = False) -> str:
        """Deliver ``payload`` (a ``block_actions`` payload) to the newest connection as an
        ``interactive`` envelope; its id. With ``drop``, the connection is dropped right after
        the envelope is sent, so no acknowledgement on it is heard. With no connection open,
        it waits for the next one."""
        envelope_id = str(uuid.uuid4())
        envelope = {
            "envelope_id": envelope_id,
            "payload": dict(payload),
            "type": "interactive",
            "accepts_response_payload": False,
        }
        with self._lock:
            self._envelopes[envelope_id] = envelope
            connection = self._newest()
            if connection is not None:
                self._deliver(connection, envelope_id)
                # Before the app can answer: its acknowledgement is lost with the connection.
                connection.dropped = drop
        if connection is not None and drop:
            _half_close(connection.sock)
        return envelope_id

    def deliver(self, envelope_id: str, *, to: int | None = None) -> None:
        """Deliver an envelope again, acknowledged or not, to connection number ``to`` (the
        newest when not given), as Slack may after a reconnect or to another connection."""
        with self._lock:
            connection = self._newest() if to is None else self._number(to)
            if connection is None:
                raise RuntimeError("no Socket Mode connection is open")
            self._deliver(connection, envelope_id)

    def drop(self, to: int | None = None) -> None:
        """End a connection abruptly (no close frame, no ``disconnect``): what it sends from
        now on is lost, and it stops answering pings."""
        with self._lock:
            connection = self._newest() if to is None else self._number(to)
            if connection is None:
                return
            connection.dropped = True
        _half_close(connection.sock)

    def refresh(self, to: int | None = None) -> None:
        """Ask the app to reconnect, as Slack does every few hours (``disconnect``)."""
        with self._lock:
            connection = self._newest() if to is None else self._number(to)
        if connection is not None:
            message = {
                "type": "disconnect",
                "reason": "refresh_requested",
                "debug_info": {"host": self._host_name},
            }
            connection.send(_TEXT, json.dumps(message).encode("utf-8"))

    def acknowledged(self, envelope_id: str) -> int:
        """How many acknowledgements of an envelope were heard."""
        with self._lock:
            return sum(1 for acked, _ in self._acks if acked == envelope_id)

    def open_connections(self) -> list[int]:
        """The numbers of the connections open and greeted, oldest first."""
        with self._lock:
            return [c.number for c in self._connections if c.open and c.ready and not c.dropped]

    def wait(self, condition: Callable[[], bool], timeout: float = 5.0) -> None:
        """Wait until ``condition()`` holds; raises TimeoutError after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise TimeoutError(f"still waiting after {timeout}s: {self.state()}")
            time.sleep(0.01)

    def state(self) -> dict[str, Any]:
        with self._lock:
            return {
                "connections": [
                    {"number": c.number, "open": c.open, "ready": c.ready, "dropped": c.dropped}
                    for c in self._connections
                ],
                "deliveries": [list(d) for d in self._deliveries],
                "acks": [list(a) for a in self._acks],
                "unacknowledged": self._unacknowledged(),
                "refused": self._refused,
            }

    # ----------------------------------------------------------------- connections

    def _newest(self) -> _Connection | None:
        for connection in reversed(self._connections):
            if connection.open and connection.ready and not connection.dropped:
                return connection
        return None

    def _number(self, number: int) -> _Connection | None:
        return next((c for c in self._connections if c.number == number), None)

    def _unacknowledged(self) -> list[str]:
        acked = {envelope_id for envelope_id, _ in self._acks}
        return [e for e in self._envelopes if e not in acked]

    def _deliver(self, connection: _Connection, envelope_id: str) -> None:
        """Send an envelope (the lock held: deliveries keep their order)."""
        self._deliveries.append((envelope_id, connection.number))
        body = json.dumps(self._envelopes[envelope_id], separators=(",", ":"))
        connection.send(_TEXT, body.encode("utf-8"))

    def _accept(self) -> None:
        while self._listener is not None:
            listener = self._listener
            try:
                sock, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            thread = threading.Thread(
                target=self._serve, args=(sock,), name="sandbox-slack-link", daemon=True
            )
            self._threads.append(thread)
            thread.start()

    def _serve(self, sock: socket.socket) -> None:
        with sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.settimeout(HANDSHAKE_TIMEOUT_S)
            try:
                key = self._handshake(sock)
            except (OSError, _Closed, ValueError):
                return
            if key is None:
                return
            sock.settimeout(None)
            with self._lock:
                connection = _Connection(len(self._connections) + 1, sock)
                self._connections.append(connection)
                hello = {
                    "type": "hello",
                    "num_connections": sum(1 for c in self._connections if c.open),
                    "debug_info": {
                        "host": self._host_name,
                        "build_number": 1,
                        "approximate_connection_time": 18060,
                    },
                    "connection_info": {"app_id": self.app_id},
                }
                connection.send(_TEXT, json.dumps(hello).encode("utf-8"))
                connection.ready = True
                for envelope_id in self._unacknowledged():  # Slack tries again
                    self._deliver(connection, envelope_id)
            self._read(connection)

    def _handshake(self, sock: socket.socket) -> str | None:
        """Upgrade the request to a WebSocket; the client's key, or None when refused."""
        request = b""
        while b"\r\n\r\n" not in request:
            chunk = sock.recv(1024)
            if not chunk or len(request) > MAX_HANDSHAKE:
                return None
            request += chunk
        head = request.split(b"\r\n\r\n", 1)[0].decode("latin-1")
        line, *lines = head.split("\r\n")
        method, target, _version = line.split(" ", 2)
        headers = {}
        for header in lines:
            name, _, value = header.partition(":")
            headers[name.strip().lower()] = value.strip()
        url = urlsplit(target)
        ticket = (parse_qs(url.query).get("ticket") or [""])[0]
        with self._lock:
            known = ticket in self._tickets
            self._tickets.discard(ticket)
        key = headers.get("sec-websocket-key", "")
        upgrade = (
            method == "GET"
            and url.path == LINK_PATH
            and headers.get("upgrade", "").lower() == "websocket"
            and "upgrade" in headers.get("connection", "").lower()
            and headers.get("sec-websocket-version") == "13"
            and key
        )
        if not upgrade or not known:
            with self._lock:
                self._refused += 1
            status = "400 Bad Request" if not upgrade else "401 Unauthorized"
            sock.sendall(
                f"HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode()
            )
            return None
        sock.sendall(
            (
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Accept: {_accept_key(key)}\r\n\r\n"
            ).encode("ascii")
        )
        return key

    def _read(self, connection: _Connection) -> None:
        """Take the app's frames until it closes: acknowledgements, pings, a close."""
        message = b""
        try:
            while True:
                final, opcode, payload = _read_frame(connection.sock)
                if connection.dropped:
                    continue  # lost on the way
                if opcode == _PING:
                    connection.send(_PONG, payload)
                elif opcode == _CLOSE:
                    connection.send(_CLOSE, payload[:2])
                    break
                elif opcode in (_TEXT, _CONTINUATION):
                    message += payload
                    if len(message) > MAX_MESSAGE:
                        break
                    if final:
                        self._heard(connection, message)
                        message = b""
        except (OSError, _Closed):
            pass
        finally:
            connection.open = False

    def _heard(self, connection: _Connection, message: bytes) -> None:
        try:
            answer = json.loads(message.decode("utf-8"))
        except ValueError:
            return
        envelope_id = answer.get("envelope_id") if isinstance(answer, dict) else None
        if isinstance(envelope_id, str):
            with self._lock:
                self._acks.append((envelope_id, connection.number))

    def _close(self, connection: _Connection) -> None:
        connection.open = False
        with contextlib.suppress(OSError):
            connection.sock.shutdown(socket.SHUT_RDWR)
