"""The HTTP server at the edge: bodies are read only within their limit, malformed requests
get a short 400, and a Slack request is accepted once across replicas and restarts.

Requests are sent as raw HTTP (headers only, where the body never comes) against the real
server, with a one-second timeout: an answer that waits for the body fails the test.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, quote_plus, urlencode, urlsplit

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dq_agent.escalate.endpoint import (
    ACTIONS_PATH,
    Verifier,
    WebRequest,
    WebResponse,
    payload_field,
)
from dq_agent.escalate.server import InteractionsServer
from dq_agent.serving import body_length
from dq_agent.store import Store

SECRET = "endpoint-signing-secret"


@pytest.fixture
def store(sqlite_url: str) -> Iterator[Store]:
    with Store.open(sqlite_url) as opened:
        yield opened


@contextmanager
def serving(store: Store, acted: list[Any] | None = None) -> Iterator[InteractionsServer]:
    """The endpoint with Slack configured and a web application that echoes its form."""

    def app(request: WebRequest) -> WebResponse:
        return WebResponse(200, json.dumps(dict(request.form)), "application/json")

    act = (acted if acted is not None else []).append
    with InteractionsServer(Verifier(SECRET, store), act, port=0, app=app) as server:
        yield server


def connect(server: InteractionsServer) -> http.client.HTTPConnection:
    url = urlsplit(server.base_url)
    return http.client.HTTPConnection(url.hostname or "", url.port, timeout=1)


def headers_only(
    server: InteractionsServer, path: str, headers: dict[str, str]
) -> tuple[int, str, str | None]:
    """POST ``path`` with ``headers`` and never a body: status, text, Connection header."""
    connection = connect(server)
    try:
        connection.putrequest("POST", path, skip_accept_encoding=True)
        for name, value in headers.items():
            connection.putheader(name, value)
        connection.endheaders()
        response = connection.getresponse()  # times out if the server waits for a body
        return response.status, response.read().decode(), response.getheader("Connection")
    finally:
        connection.close()


def send(
    server: InteractionsServer, path: str, headers: dict[str, str], body: bytes
) -> tuple[int, str]:
    connection = connect(server)
    try:
        connection.request("POST", path, body=body, headers=headers)
        response = connection.getresponse()
        return response.status, response.read().decode()
    finally:
        connection.close()


def signed(body: bytes, timestamp: int | None = None) -> dict[str, str]:
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    digest = hmac.new(SECRET.encode(), f"v0:{stamp}:".encode() + body, hashlib.sha256)
    return {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Slack-Request-Timestamp": stamp,
        "X-Slack-Signature": f"v0={digest.hexdigest()}",
    }


def click(trigger: str) -> bytes:
    return click_form({"type": "block_actions", "trigger_id": trigger, "actions": []})


@pytest.mark.parametrize("path", [ACTIONS_PATH, "/login"])
@pytest.mark.parametrize("length", ["-1", "lots", "1e3", "99999999999999999999999999"])
def test_a_length_that_is_not_one_is_answered_without_reading_the_body(
    store: Store, path: str, length: str
) -> None:
    # The server's HTTP parser refuses these before the application sees the request.
    with serving(store) as server:
        status, _, connection = headers_only(server, path, {"Content-Length": length})
        assert (status, connection) == (400, "close")


@pytest.mark.parametrize(
    ("headers", "answer"),
    [
        ([("Content-Length", "-1")], (400, "Content-Length is not a number of bytes")),
        ([("Content-Length", "lots")], (400, "Content-Length is not a number of bytes")),
        ([("Content-Length", "1e3")], (400, "Content-Length is not a number of bytes")),
        ([("Content-Length", "٣")], (400, "Content-Length is not a number of bytes")),
        ([("Content-Length", "9" * 26)], (413, "request too large: at most 100 bytes here")),
        ([("Content-Length", "101")], (413, "request too large: at most 100 bytes here")),
        (
            [("content-length", "0"), ("Content-Length", "5")],
            (400, "conflicting Content-Length headers"),
        ),
        (
            [("Transfer-Encoding", "chunked")],
            (411, "send the body with a Content-Length (chunked bodies are not accepted)"),
        ),
        ([("Content-Length", "0100")], 100),
        ([("Content-Length", "5"), ("Content-Length", "5")], 5),
        ([], 0),
    ],
)
def test_the_length_is_judged_from_the_headers_alone(
    headers: list[tuple[str, str]], answer: int | tuple[int, str]
) -> None:
    # What an ASGI server more lenient than uvicorn lets through is refused all the same.
    assert body_length(headers, 100) == answer


@pytest.mark.parametrize(("path", "limit"), [(ACTIONS_PATH, 1048576), ("/login", 65536)])
def test_a_body_over_the_limit_is_refused_before_it_is_sent(
    store: Store, path: str, limit: int
) -> None:
    with serving(store) as server:
        answer = headers_only(server, path, {"Content-Length": str(limit + 1)})
        assert answer == (413, f"request too large: at most {limit} bytes here", "close")


def test_a_form_within_the_limit_is_read_to_its_length(store: Store) -> None:
    with serving(store) as server:
        form = urlencode({"csrf": "x" * 60_000}).encode()
        assert send(server, "/login", {}, form) == (200, json.dumps({"csrf": "x" * 60_000}))


def test_a_chunked_body_is_refused_from_its_headers(store: Store) -> None:
    with serving(store) as server:
        answer = headers_only(server, ACTIONS_PATH, {"Transfer-Encoding": "chunked"})
        assert answer == (
            411,
            "send the body with a Content-Length (chunked bodies are not accepted)",
            "close",
        )


def test_two_different_lengths_are_refused(store: Store) -> None:
    with serving(store) as server:
        connection = connect(server)
        try:
            connection.putrequest("POST", ACTIONS_PATH, skip_accept_encoding=True)
            connection.putheader("Content-Length", "0")
            connection.putheader("Content-Length", "5")
            connection.endheaders()
            response = connection.getresponse()
            assert (response.status, response.getheader("Connection")) == (400, "close")
        finally:
            connection.close()


def test_a_slack_request_with_no_length_has_no_body(store: Store) -> None:
    with serving(store) as server:
        status, reason, _ = headers_only(server, ACTIONS_PATH, {})
        assert (status, reason) == (401, "missing Slack signature headers")


def test_a_timestamp_that_is_not_a_number_is_a_bad_request(store: Store) -> None:
    body = click("1")
    with serving(store) as server:
        headers = {**signed(body), "X-Slack-Request-Timestamp": "soon"}
        assert send(server, ACTIONS_PATH, headers, body) == (
            400,
            "X-Slack-Request-Timestamp is not a number",
        )
        headers = {**signed(body), "X-Slack-Request-Timestamp": "1" * 5000}
        assert send(server, ACTIONS_PATH, headers, body) == (
            400,
            "X-Slack-Request-Timestamp is not a number",
        )


def test_a_body_that_is_not_utf8_is_a_bad_request(store: Store) -> None:
    body = b"payload=\xff\xfe"
    with serving(store) as server:
        assert send(server, ACTIONS_PATH, signed(body), body) == (400, "the body is not UTF-8")


def test_a_replayed_request_is_refused_by_another_replica_and_after_a_restart(
    store: Store, sqlite_url: str
) -> None:
    body = click("replayed")
    headers = signed(body)
    acted: list[Any] = []
    with serving(store, acted) as first:
        assert send(first, ACTIONS_PATH, headers, body) == (200, "")
        assert send(first, ACTIONS_PATH, headers, body) == (401, "replayed request")
        first.drain()
    # A second replica, its own connection to the same state store.
    with Store.open(sqlite_url) as replica, serving(replica, acted) as second:
        assert send(second, ACTIONS_PATH, headers, body) == (401, "replayed request")
        assert second.refused == 1
        # A new request still goes through.
        fresh = click("fresh")
        assert send(second, ACTIONS_PATH, signed(fresh), fresh) == (200, "")
        second.drain()
    assert [a["trigger_id"] for a in acted] == ["replayed", "fresh"]


def test_a_signature_dated_ahead_is_remembered_until_it_goes_stale(store: Store) -> None:
    now = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
    at = [now]
    verifier = Verifier(SECRET, store, clock=lambda: at[0])
    body = click("ahead")
    # Signed by a clock four minutes ahead: valid until 12:09 here.
    headers = {k.lower(): v for k, v in signed(body, int(now.timestamp()) + 240).items()}
    assert verifier.check(body, headers) is None
    at[0] = now + timedelta(minutes=8)
    assert verifier.check(body, headers) == "replayed request"
    at[0] = now + timedelta(minutes=9, seconds=1)
    assert verifier.check(body, headers) == "bad signature or stale timestamp"


def _read(read: Callable[[bytes], str], body: bytes) -> str | type[Exception]:
    """What ``read`` makes of ``body``: the field, or the kind of error it raises."""
    try:
        return read(body)
    except (ValueError, KeyError, UnicodeDecodeError) as exc:
        return type(exc)


def _read_by_parse_qs(body: bytes) -> str:
    return parse_qs(body.decode("utf-8"), strict_parsing=True)["payload"][0]


# Bytes that make a form irregular: escapes cut short or not hex, separators, line breaks,
# what quoted-printable reads specially, and bytes that are not ASCII.
_FORM_BYTES = st.sampled_from(list(b"%=+&;_\r\n\t aAfFgZ09") + [0x80, 0xC3, 0xA9, 0xFF])


@settings(max_examples=1500, deadline=None)
@given(
    st.one_of(
        st.text().map(lambda text: f"payload={quote_plus(text)}".encode()),
        st.lists(_FORM_BYTES, max_size=16).map(lambda value: b"payload=" + bytes(value)),
        st.binary(max_size=24),
    )
)
def test_the_payload_field_is_read_as_parse_qs_reads_it(body: bytes) -> None:
    assert _read(payload_field, body) == _read(_read_by_parse_qs, body)


def test_a_slack_click_form_is_read_whole() -> None:
    payload = {"type": "block_actions", "text": "100% = 1/1 & more +ü", "actions": []}
    assert json.loads(payload_field(click_form(payload))) == payload
    assert payload_field(b"payload=%7B%7d") == "{}"  # escapes in either case
    assert payload_field(b"payload=%zz") == "%zz"  # not an escape: read as it is


def click_form(payload: dict[str, Any]) -> bytes:
    return urlencode({"payload": json.dumps(payload, ensure_ascii=False)}).encode()
