"""The Slack emulator, driven by the real slack-sdk WebClient over HTTP."""

from __future__ import annotations

import json
import threading
import urllib.request
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any
from urllib.parse import parse_qs

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry import builtin_handlers
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler
from slack_sdk.models.metadata import Metadata
from slack_sdk.signature import Clock, SignatureVerifier
from slack_sdk.webhook import WebhookClient

from dq_agent_sandbox.http import LoopbackServer, Request, Response
from dq_agent_sandbox.slack import (
    APP_ID,
    BOT_ID,
    BOT_USER_ID,
    TEAM_ID,
    SlackEmulator,
    button_click,
    signed_interaction,
)

TOKEN = "xoxb-test-token"
SECRET = "test-signing-secret"
NOW = 1764000000.0  # 2025-11-24T16:00:00Z: Berlin is on CET (UTC+1)
PETE = "pete@example.com"
PETE_ID = "UPETE00001"
REVENUE_ID = "CREVENUE01"
APPROVE_BLOCKS: list[dict[str, Any]] = [
    {"type": "section", "text": {"type": "mrkdwn", "text": "*3 rows* look wrong in `orders`"}},
    {
        "type": "actions",
        "block_id": "decision",
        "elements": [
            {
                "type": "button",
                "action_id": "approve",
                "value": "incident-7",
                "text": {"type": "plain_text", "text": "Approve"},
            }
        ],
    },
]


class FixedClock(Clock):
    def __init__(self, now: float) -> None:
        self.at = now

    def now(self) -> float:
        return self.at


@pytest.fixture(scope="module")
def clock() -> FixedClock:
    return FixedClock(NOW)


@pytest.fixture(scope="module")
def server(clock: FixedClock) -> Iterator[LoopbackServer]:
    emulator = SlackEmulator(token=TOKEN, signing_secret=SECRET, clock=clock.now)
    with LoopbackServer(emulator) as server:
        yield server


@pytest.fixture
def emulator(server: LoopbackServer, clock: FixedClock) -> SlackEmulator:
    emulator = server.emulator
    assert isinstance(emulator, SlackEmulator)
    emulator.reset()
    clock.at = NOW
    emulator.seed(
        {
            "users": [{"id": PETE_ID, "email": PETE, "name": "pete", "tz": "Europe/Berlin"}],
            "channels": [{"id": REVENUE_ID, "name": "revenue-data"}],
        }
    )
    return emulator


@pytest.fixture
def client(server: LoopbackServer, emulator: SlackEmulator) -> WebClient:
    return WebClient(base_url=server.base_url + "/api/", token=TOKEN)


def ts(micros: int) -> str:
    """The n-th timestamp the emulator hands out while its clock stands still at NOW."""
    return f"1764000000.{micros:06d}"


def bot_message(text: str, at: str, **extra: Any) -> dict[str, Any]:
    return {
        "type": "message",
        "user": BOT_USER_ID,
        "bot_id": BOT_ID,
        "app_id": APP_ID,
        "text": text,
        "ts": at,
        "team": TEAM_ID,
        **extra,
    }


def stored(channel: str, at: str, text: str, **extra: Any) -> dict[str, Any]:
    message = {"channel": channel, "ts": at, "thread_ts": None, "text": text, "blocks": None}
    return {**message, "user": BOT_USER_ID, "edited": False, "metadata": None, **extra}


def dm_id(client: WebClient, user_id: str) -> str:
    return str(client.conversations_open(users=user_id)["channel"]["id"])


def test_auth_test_names_the_bot(client: WebClient) -> None:
    response = client.auth_test()

    assert response.data == {
        "ok": True,
        "url": "https://sandbox.slack.com/",
        "team": "Sandbox",
        "user": "dq-agent",
        "team_id": TEAM_ID,
        "user_id": BOT_USER_ID,
        "bot_id": BOT_ID,
        "is_enterprise_install": False,
    }


def test_a_seeded_user_resolves_by_email_whatever_the_case(client: WebClient) -> None:
    response = client.users_lookupByEmail(email="Pete@Example.com")

    assert response.data == {
        "ok": True,
        "user": {
            "id": PETE_ID,
            "team_id": TEAM_ID,
            "name": "pete",
            "deleted": False,
            "real_name": "Pete",
            "tz": "Europe/Berlin",
            "tz_offset": 3600,
            "is_bot": False,
            "profile": {"email": PETE, "real_name": "Pete", "display_name": "pete"},
        },
    }


def test_lenient_lookup_creates_a_user_with_a_stable_id(
    client: WebClient, emulator: SlackEmulator
) -> None:
    first = client.users_lookupByEmail(email="ana.lopez@example.com")["user"]
    again = client.users_lookupByEmail(email="ana.lopez@example.com")["user"]

    assert first == again
    assert first["id"].startswith("U") and len(first["id"]) == 11
    assert first["id"] == first["id"].upper()
    assert (first["name"], first["real_name"], first["tz"]) == ("ana.lopez", "Ana Lopez", "UTC")
    assert emulator.state()["users"][1] == {
        "id": first["id"],
        "email": "ana.lopez@example.com",
        "name": "ana.lopez",
        "real_name": "Ana Lopez",
        "tz": "UTC",
    }
    # The id depends on the address alone, so a fresh emulator hands out the same one.
    assert SlackEmulator().seed({"users": [{"email": "ana.lopez@example.com"}]})["users"] == {
        "ana.lopez@example.com": first["id"]
    }


def test_strict_lookup_knows_only_seeded_users(client: WebClient, emulator: SlackEmulator) -> None:
    emulator.seed({"strict_users": True})

    with pytest.raises(SlackApiError) as caught:
        client.users_lookupByEmail(email="stranger@example.com")

    assert caught.value.response.data == {"ok": False, "error": "users_not_found"}
    assert client.users_lookupByEmail(email=PETE)["user"]["id"] == PETE_ID
    assert [user["email"] for user in emulator.state()["users"]] == [PETE]


def test_conversations_open_gives_one_stable_dm_per_user(client: WebClient) -> None:
    ana = client.users_lookupByEmail(email="ana@example.com")["user"]["id"]

    first = client.conversations_open(users=PETE_ID)
    again = client.conversations_open(users=[PETE_ID])
    other = client.conversations_open(users=ana)

    assert first.data == {"ok": True, "channel": {"id": first["channel"]["id"]}}
    assert first["channel"]["id"].startswith("D")
    assert again.data == {
        "ok": True,
        "no_op": True,
        "already_open": True,
        "channel": {"id": first["channel"]["id"]},
    }
    assert other["channel"]["id"] not in (first["channel"]["id"], REVENUE_ID)


def test_post_to_a_user_id_lands_in_their_dm_with_blocks(
    client: WebClient, emulator: SlackEmulator
) -> None:
    response = client.chat_postMessage(
        channel=PETE_ID, text="Orders look wrong", blocks=APPROVE_BLOCKS
    )
    dm = dm_id(client, PETE_ID)

    assert response.data == {
        "ok": True,
        "channel": dm,
        "ts": ts(0),
        "message": bot_message("Orders look wrong", ts(0), blocks=APPROVE_BLOCKS),
    }
    assert emulator.state()["messages"] == [
        stored(dm, ts(0), "Orders look wrong", blocks=APPROVE_BLOCKS)
    ]


def test_post_to_a_channel_by_name_and_a_new_one(
    client: WebClient, emulator: SlackEmulator
) -> None:
    seeded = client.chat_postMessage(channel="#revenue-data", text="hi", blocks=APPROVE_BLOCKS)
    bare = client.chat_postMessage(channel="revenue-data", text="again")
    created = client.chat_postMessage(channel="#dq-alerts", text="first alert")

    assert (seeded["channel"], bare["channel"]) == (REVENUE_ID, REVENUE_ID)
    assert created["channel"].startswith("C")
    assert emulator.state()["messages"] == [
        stored(REVENUE_ID, ts(0), "hi", blocks=APPROVE_BLOCKS),
        stored(REVENUE_ID, ts(1), "again"),
        stored(created["channel"], ts(2), "first alert"),
    ]
    assert emulator.state()["channels"] == [
        {"id": REVENUE_ID, "name": "revenue-data", "is_im": False, "user": None},
        {"id": created["channel"], "name": "dq-alerts", "is_im": False, "user": None},
    ]


def test_a_form_encoded_post_carries_blocks_as_a_json_string(
    client: WebClient, emulator: SlackEmulator
) -> None:
    response = client.api_call(
        "chat.postMessage",
        params={"channel": REVENUE_ID, "text": "form", "blocks": json.dumps(APPROVE_BLOCKS)},
    )

    assert response["message"]["blocks"] == APPROVE_BLOCKS
    assert emulator.state()["messages"] == [
        stored(REVENUE_ID, ts(0), "form", blocks=APPROVE_BLOCKS)
    ]


def test_timestamps_increase_with_the_clock(
    client: WebClient, emulator: SlackEmulator, clock: FixedClock
) -> None:
    clock.at = NOW + 0.0001
    first = client.chat_postMessage(channel=REVENUE_ID, text="one")["ts"]
    clock.at = NOW  # a clock stepping back must not reorder messages
    second = client.chat_postMessage(channel=REVENUE_ID, text="two")["ts"]

    assert (first, second) == ("1764000000.000100", "1764000000.000101")


def test_thread_replies_are_messages_of_their_own(
    client: WebClient, emulator: SlackEmulator
) -> None:
    root = client.chat_postMessage(channel=REVENUE_ID, text="Incident 7")["ts"]
    reply = client.chat_postMessage(channel=REVENUE_ID, text="Nudge 1", thread_ts=root)["ts"]
    nested = client.chat_postMessage(channel=REVENUE_ID, text="Nudge 2", thread_ts=reply)["ts"]

    thread = client.conversations_replies(channel=REVENUE_ID, ts=root)

    assert thread.data == {
        "ok": True,
        "messages": [
            bot_message("Incident 7", root, thread_ts=root, reply_count=2, latest_reply=nested),
            bot_message("Nudge 1", reply, thread_ts=root, parent_user_id=BOT_USER_ID),
            bot_message("Nudge 2", nested, thread_ts=root, parent_user_id=BOT_USER_ID),
        ],
        "has_more": False,
    }
    assert emulator.state()["messages"] == [
        stored(REVENUE_ID, root, "Incident 7"),
        stored(REVENUE_ID, reply, "Nudge 1", thread_ts=root),
        stored(REVENUE_ID, nested, "Nudge 2", thread_ts=root),
    ]


def test_a_reply_to_an_unknown_thread_fails(client: WebClient, emulator: SlackEmulator) -> None:
    other = client.chat_postMessage(channel="#elsewhere", text="x")["ts"]

    with pytest.raises(SlackApiError) as caught:
        client.chat_postMessage(channel=REVENUE_ID, text="lost", thread_ts=other)

    assert caught.value.response["error"] == "thread_not_found"
    assert len(emulator.state()["messages"]) == 1


def test_chat_update_edits_the_message_in_place(client: WebClient, emulator: SlackEmulator) -> None:
    first = client.chat_postMessage(channel=REVENUE_ID, text="Approve?", blocks=APPROVE_BLOCKS)
    client.chat_postMessage(channel=REVENUE_ID, text="later")
    done = [{"type": "section", "text": {"type": "mrkdwn", "text": "Approved by <@UPETE00001>"}}]

    response = client.chat_update(channel=REVENUE_ID, ts=first["ts"], text="Approved", blocks=done)

    assert response.data == {
        "ok": True,
        "channel": REVENUE_ID,
        "ts": ts(0),
        "text": "Approved",
        "message": bot_message(
            "Approved", ts(0), blocks=done, edited={"user": BOT_USER_ID, "ts": ts(2)}
        ),
    }
    assert emulator.state()["messages"] == [
        stored(REVENUE_ID, ts(0), "Approved", blocks=done, edited=True),
        stored(REVENUE_ID, ts(1), "later"),
    ]
    with pytest.raises(SlackApiError) as caught:
        client.chat_update(channel=REVENUE_ID, ts="1.000000", text="nope")
    assert caught.value.response["error"] == "message_not_found"


def test_post_ephemeral_is_recorded_for_its_viewer(
    client: WebClient, emulator: SlackEmulator
) -> None:
    response = client.chat_postEphemeral(channel=REVENUE_ID, user=PETE_ID, text="Only you")

    assert response.data == {"ok": True, "message_ts": ts(0)}
    assert emulator.state()["messages"] == [
        stored(REVENUE_ID, ts(0), "Only you", ephemeral_for=PETE_ID)
    ]
    with pytest.raises(SlackApiError) as caught:  # ephemeral messages cannot be edited
        client.chat_update(channel=REVENUE_ID, ts=ts(0), text="x")
    assert caught.value.response["error"] == "message_not_found"


def test_get_permalink(client: WebClient) -> None:
    root = client.chat_postMessage(channel=REVENUE_ID, text="root")["ts"]
    reply = client.chat_postMessage(channel=REVENUE_ID, text="reply", thread_ts=root)["ts"]

    assert client.chat_getPermalink(channel=REVENUE_ID, message_ts=root)["permalink"] == (
        f"https://sandbox.slack.com/archives/{REVENUE_ID}/p1764000000000000"
    )
    assert client.chat_getPermalink(channel=REVENUE_ID, message_ts=reply)["permalink"] == (
        f"https://sandbox.slack.com/archives/{REVENUE_ID}/p1764000000000001"
        f"?thread_ts={root}&cid={REVENUE_ID}"
    )


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda c: c.chat_postMessage(channel="C0000000000", text="x"), "channel_not_found"),
        (lambda c: c.chat_postMessage(channel="UNKNOWN0001", text="x"), "channel_not_found"),
        # The client warns before sending a message without text: send the body as it is.
        (lambda c: c.api_call("chat.postMessage", json={"channel": REVENUE_ID}), "no_text"),
        (
            lambda c: c.chat_postMessage(channel=REVENUE_ID, text="x", blocks=[{"x": 1}]),
            "invalid_blocks",
        ),
        (
            lambda c: c.chat_postEphemeral(channel=REVENUE_ID, user="U404", text="x"),
            "user_not_found",
        ),
        (lambda c: c.conversations_replies(channel=REVENUE_ID, ts="1.0"), "thread_not_found"),
        (lambda c: c.api_call("no.such.method"), "unknown_method"),
    ],
)
def test_application_errors_are_200_with_ok_false(
    client: WebClient, emulator: SlackEmulator, call: Any, error: str
) -> None:
    with pytest.raises(SlackApiError) as caught:
        call(client)

    assert caught.value.response.status_code == 200
    assert caught.value.response.data == {"ok": False, "error": error}
    assert emulator.state()["messages"] == []


def test_a_wrong_or_missing_token_is_refused(
    server: LoopbackServer, emulator: SlackEmulator
) -> None:
    wrong = WebClient(base_url=server.base_url + "/api/", token="xoxb-wrong")
    missing = WebClient(base_url=server.base_url + "/api/")

    with pytest.raises(SlackApiError) as bad:
        wrong.chat_postMessage(channel=REVENUE_ID, text="x")
    with pytest.raises(SlackApiError) as none:
        missing.auth_test()

    assert bad.value.response["error"] == "invalid_auth"
    assert none.value.response["error"] == "not_authed"
    assert emulator.state()["messages"] == []


def test_a_token_form_field_authenticates(server: LoopbackServer) -> None:
    request = urllib.request.Request(
        server.base_url + "/api/auth.test",
        data=f"token={TOKEN}".encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    with urllib.request.urlopen(request) as reply:
        assert json.load(reply)["user_id"] == BOT_USER_ID


def test_injected_application_errors(client: WebClient, emulator: SlackEmulator) -> None:
    emulator.fail_next("fatal_error", times=2)

    for _ in range(2):
        with pytest.raises(SlackApiError) as caught:
            client.chat_postMessage(channel=REVENUE_ID, text="x")
        assert caught.value.response.data == {"ok": False, "error": "fatal_error"}
    client.chat_postMessage(channel=REVENUE_ID, text="x")

    assert emulator.requests_for("chat.postMessage") == 3
    assert len(emulator.state()["messages"]) == 1


def test_a_rate_limit_without_a_retry_handler_raises(
    client: WebClient, emulator: SlackEmulator
) -> None:
    emulator.fail_next("ratelimited", status=429, retry_after=30)

    with pytest.raises(SlackApiError) as caught:
        client.chat_postMessage(channel=REVENUE_ID, text="x")

    assert caught.value.response.status_code == 429
    assert caught.value.response.headers["Retry-After"] == "30"
    assert caught.value.response.data == {"ok": False, "error": "ratelimited"}


def test_rate_limit_retry_handler_honours_retry_after(
    server: LoopbackServer, emulator: SlackEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    sleeps: list[float] = []
    monkeypatch.setattr(builtin_handlers, "time", SimpleNamespace(sleep=sleeps.append))
    client = WebClient(
        base_url=server.base_url + "/api/",
        token=TOKEN,
        retry_handlers=[RateLimitErrorRetryHandler(max_retry_count=2)],
    )
    emulator.fail_next("ratelimited", status=429, retry_after=7, times=2)

    response = client.chat_postMessage(channel=REVENUE_ID, text="after the wait")

    assert response["ts"] == ts(0)
    assert len(sleeps) == 2 and all(7 <= s < 8 for s in sleeps)  # Retry-After plus jitter
    assert emulator.requests_for("chat.postMessage") == 3
    assert emulator.state()["messages"] == [stored(REVENUE_ID, ts(0), "after the wait")]


def test_sandbox_state_over_http(
    server: LoopbackServer, client: WebClient, emulator: SlackEmulator
) -> None:
    client.chat_postMessage(channel=REVENUE_ID, text="hello")

    with urllib.request.urlopen(server.base_url + "/_sandbox/state") as reply:
        state = json.load(reply)

    assert state == {
        "messages": [stored(REVENUE_ID, ts(0), "hello")],
        "users": [
            {
                "id": PETE_ID,
                "email": PETE,
                "name": "pete",
                "real_name": "Pete",
                "tz": "Europe/Berlin",
            }
        ],
        "channels": [{"id": REVENUE_ID, "name": "revenue-data", "is_im": False, "user": None}],
        "requests": 1,
    }


def test_concurrent_posts_get_distinct_ordered_timestamps(
    server: LoopbackServer, emulator: SlackEmulator
) -> None:
    def post(n: int) -> None:
        client = WebClient(base_url=server.base_url + "/api/", token=TOKEN)
        for i in range(5):
            client.chat_postMessage(channel=REVENUE_ID, text=f"{n}-{i}")

    threads = [threading.Thread(target=post, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    stamps = [m["ts"] for m in emulator.state()["messages"]]
    assert stamps == [ts(i) for i in range(30)]


# --------------------------------------------------------------------------- metadata, history

INCIDENT_METADATA: dict[str, Any] = {
    "event_type": "dq_incident_opened",
    "event_payload": {"incident_id": 7, "check": "orders.amount_not_null", "rows": [1, 2, 3]},
}
NUDGE_METADATA: dict[str, Any] = {
    "event_type": "dq_nudge",
    "event_payload": {"incident_id": 7, "attempt": 1},
}


def history_page(messages: list[dict[str, Any]], next_cursor: str = "") -> dict[str, Any]:
    return {
        "ok": True,
        "messages": messages,
        "has_more": next_cursor != "",
        "pin_count": 0,
        "response_metadata": {"next_cursor": next_cursor},
    }


def test_metadata_from_json_and_form_bodies_reads_back_only_when_asked(
    client: WebClient, emulator: SlackEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    content_types: list[str] = []
    handle = emulator.handle

    def spy(request: Request) -> Response:
        content_types.append(request.headers.get("content-type", "").partition(";")[0])
        return handle(request)

    monkeypatch.setattr(emulator, "handle", spy)
    with_blocks = client.chat_postMessage(
        channel=REVENUE_ID,
        text="Approve?",
        blocks=APPROVE_BLOCKS,
        metadata=Metadata(**INCIDENT_METADATA),
    )
    form = client.api_call(
        "chat.postMessage",
        params={"channel": REVENUE_ID, "text": "Nudge", "metadata": json.dumps(NUDGE_METADATA)},
    )
    plain = client.chat_postMessage(channel=REVENUE_ID, text="No metadata")

    assert content_types == [
        "application/json",
        "application/x-www-form-urlencoded",
        "application/json",
    ]
    # chat.postMessage's own answer leaves the metadata out.
    assert with_blocks["message"] == bot_message("Approve?", ts(0), blocks=APPROVE_BLOCKS)
    assert (form["ts"], plain["ts"]) == (ts(1), ts(2))
    asked = client.conversations_history(channel=REVENUE_ID, include_all_metadata=True)
    assert asked.data == history_page(
        [
            bot_message("No metadata", ts(2)),
            bot_message("Nudge", ts(1), metadata=NUDGE_METADATA),
            bot_message("Approve?", ts(0), blocks=APPROVE_BLOCKS, metadata=INCIDENT_METADATA),
        ]
    )
    assert client.conversations_history(channel=REVENUE_ID).data == history_page(
        [
            bot_message("No metadata", ts(2)),
            bot_message("Nudge", ts(1)),
            bot_message("Approve?", ts(0), blocks=APPROVE_BLOCKS),
        ]
    )
    assert (
        client.conversations_history(channel=REVENUE_ID, include_all_metadata=False).data
        == client.conversations_history(channel=REVENUE_ID).data
    )
    assert emulator.state()["messages"] == [
        stored(REVENUE_ID, ts(0), "Approve?", blocks=APPROVE_BLOCKS, metadata=INCIDENT_METADATA),
        stored(REVENUE_ID, ts(1), "Nudge", metadata=NUDGE_METADATA),
        stored(REVENUE_ID, ts(2), "No metadata"),
    ]


def test_replies_show_metadata_only_when_asked(client: WebClient) -> None:
    root = client.chat_postMessage(
        channel=REVENUE_ID, text="Incident 7", metadata=INCIDENT_METADATA
    )
    reply = client.chat_postMessage(
        channel=REVENUE_ID, text="Nudge 1", thread_ts=root["ts"], metadata=NUDGE_METADATA
    )

    asked = client.conversations_replies(
        channel=REVENUE_ID, ts=root["ts"], include_all_metadata=True
    )
    unasked = client.conversations_replies(channel=REVENUE_ID, ts=root["ts"])

    root_view = {"thread_ts": ts(0), "reply_count": 1, "latest_reply": ts(1)}
    reply_view = {"thread_ts": ts(0), "parent_user_id": BOT_USER_ID}
    assert reply["ts"] == ts(1)
    assert asked["messages"] == [
        bot_message("Incident 7", ts(0), **root_view, metadata=INCIDENT_METADATA),
        bot_message("Nudge 1", ts(1), **reply_view, metadata=NUDGE_METADATA),
    ]
    assert unasked["messages"] == [
        bot_message("Incident 7", ts(0), **root_view),
        bot_message("Nudge 1", ts(1), **reply_view),
    ]


def test_chat_update_replaces_metadata_only_when_sent(
    client: WebClient, emulator: SlackEmulator
) -> None:
    posted = client.chat_postMessage(channel=REVENUE_ID, text="Open", metadata=INCIDENT_METADATA)
    client.chat_update(channel=REVENUE_ID, ts=posted["ts"], text="Still open")
    kept = emulator.state()["messages"][0]["metadata"]
    resolved = {"event_type": "dq_incident_resolved", "event_payload": {"incident_id": 7}}
    client.chat_update(channel=REVENUE_ID, ts=posted["ts"], text="Resolved", metadata=resolved)

    assert kept == INCIDENT_METADATA
    assert emulator.state()["messages"] == [
        stored(REVENUE_ID, ts(0), "Resolved", edited=True, metadata=resolved)
    ]
    [message] = client.conversations_history(channel=REVENUE_ID, include_all_metadata=True)[
        "messages"
    ]
    assert message == bot_message(
        "Resolved", ts(0), edited={"user": BOT_USER_ID, "ts": ts(2)}, metadata=resolved
    )


@pytest.mark.parametrize(
    "metadata",
    [
        "not json",
        json.dumps(["dq_incident_opened", {}]),
        json.dumps({"event_type": "dq_incident_opened"}),
        json.dumps({"event_payload": {"incident_id": 7}}),
        json.dumps({"event_type": "", "event_payload": {}}),
        json.dumps({"event_type": 7, "event_payload": {}}),
        json.dumps({"event_type": "dq_incident_opened", "event_payload": "incident 7"}),
        json.dumps({**INCIDENT_METADATA, "extra": True}),
    ],
)
def test_malformed_metadata_is_refused_in_a_form_body(
    client: WebClient, emulator: SlackEmulator, metadata: str
) -> None:
    with pytest.raises(SlackApiError) as caught:
        client.api_call(
            "chat.postMessage",
            params={"channel": REVENUE_ID, "text": "x", "metadata": metadata},
        )

    assert caught.value.response.status_code == 200
    assert caught.value.response.data == {"ok": False, "error": "invalid_metadata_format"}
    assert emulator.state()["messages"] == []


def test_malformed_metadata_is_refused_in_a_json_body_and_on_update(
    client: WebClient, emulator: SlackEmulator
) -> None:
    with pytest.raises(SlackApiError) as posted:
        client.chat_postMessage(
            channel=REVENUE_ID, text="x", blocks=APPROVE_BLOCKS, metadata={"event_type": "x"}
        )
    original = client.chat_postMessage(channel=REVENUE_ID, text="kept", metadata=NUDGE_METADATA)
    with pytest.raises(SlackApiError) as updated:
        client.chat_update(
            channel=REVENUE_ID,
            ts=original["ts"],
            text="changed",
            metadata={"event_type": "x", "event_payload": [1]},
        )

    assert posted.value.response["error"] == "invalid_metadata_format"
    assert updated.value.response["error"] == "invalid_metadata_format"
    assert emulator.state()["messages"] == [
        stored(REVENUE_ID, ts(0), "kept", metadata=NUDGE_METADATA)
    ]


def test_history_is_newest_first_and_leaves_out_replies_other_channels_and_ephemerals(
    client: WebClient,
) -> None:
    first = client.chat_postMessage(channel=REVENUE_ID, text="Incident 7")["ts"]
    client.chat_postMessage(channel=REVENUE_ID, text="Nudge 1", thread_ts=first)
    client.chat_postMessage(channel="#elsewhere", text="Other channel")
    client.chat_postEphemeral(channel=REVENUE_ID, user=PETE_ID, text="Only Pete")
    second = client.chat_postMessage(channel=REVENUE_ID, text="Incident 8")["ts"]
    client.chat_postMessage(channel=REVENUE_ID, text="Nudge 2", thread_ts=first)

    history = client.conversations_history(channel=REVENUE_ID)

    assert (first, second) == (ts(0), ts(4))
    assert history.data == history_page(
        [
            bot_message("Incident 8", ts(4)),
            bot_message("Incident 7", ts(0), thread_ts=ts(0), reply_count=2, latest_reply=ts(5)),
        ]
    )


def test_history_pages_with_a_limit_and_cursor(client: WebClient) -> None:
    for n in range(5):
        client.chat_postMessage(channel=REVENUE_ID, text=f"message {n}")

    pages: list[list[str]] = []
    flags: list[bool] = []
    cursor: str | None = None
    while True:
        page = client.conversations_history(channel=REVENUE_ID, limit=2, cursor=cursor)
        pages.append([m["ts"] for m in page["messages"]])
        flags.append(page["has_more"])
        cursor = page["response_metadata"]["next_cursor"]
        if not cursor:
            break

    assert pages == [[ts(4), ts(3)], [ts(2), ts(1)], [ts(0)]]
    assert flags == [True, True, False]
    # A cursor resumes where its page ended, whatever was posted since.
    first = client.conversations_history(channel=REVENUE_ID, limit=2)
    client.chat_postMessage(channel=REVENUE_ID, text="message 5")
    resumed = client.conversations_history(
        channel=REVENUE_ID, limit=2, cursor=first["response_metadata"]["next_cursor"]
    )
    assert [m["text"] for m in resumed["messages"]] == ["message 2", "message 1"]
    assert resumed["has_more"] is True


def test_history_limit_is_clamped(client: WebClient) -> None:
    for n in range(3):
        client.chat_postMessage(channel=REVENUE_ID, text=f"message {n}")

    zero = client.conversations_history(channel=REVENUE_ID, limit=0)
    huge = client.conversations_history(channel=REVENUE_ID, limit=5000)

    assert [m["ts"] for m in zero["messages"]] == [ts(2)]
    assert zero["has_more"] is True
    assert [m["ts"] for m in huge["messages"]] == [ts(2), ts(1), ts(0)]
    assert huge["has_more"] is False


def test_history_bounds_are_exclusive_unless_inclusive(client: WebClient) -> None:
    for n in range(5):
        client.chat_postMessage(channel=REVENUE_ID, text=f"message {n}")

    def stamps(**bounds: Any) -> list[str]:
        return [
            m["ts"] for m in client.conversations_history(channel=REVENUE_ID, **bounds)["messages"]
        ]

    assert stamps(oldest=ts(1), latest=ts(4)) == [ts(3), ts(2)]
    assert stamps(oldest=ts(1), latest=ts(4), inclusive=True) == [ts(4), ts(3), ts(2), ts(1)]
    assert stamps(oldest=ts(2)) == [ts(4), ts(3)]
    assert stamps(latest=ts(2), inclusive=True) == [ts(2), ts(1), ts(0)]
    assert stamps(latest="1764000000") == []
    assert stamps(oldest="1764000000") == [ts(4), ts(3), ts(2), ts(1)]
    assert stamps(oldest="1764000000", inclusive=True) == [ts(4), ts(3), ts(2), ts(1), ts(0)]
    # Paging within bounds keeps to them.
    page = client.conversations_history(channel=REVENUE_ID, oldest=ts(0), limit=3)
    rest = client.conversations_history(
        channel=REVENUE_ID, oldest=ts(0), limit=3, cursor=page["response_metadata"]["next_cursor"]
    )
    assert [m["ts"] for m in page["messages"]] == [ts(4), ts(3), ts(2)]
    assert rest.data == history_page([bot_message("message 1", ts(1))])


@pytest.mark.parametrize(
    ("arguments", "error"),
    [
        ({"channel": "C0000000000"}, "channel_not_found"),
        ({"channel": ""}, "channel_not_found"),
        ({"channel": REVENUE_ID, "oldest": "yesterday"}, "invalid_ts_oldest"),
        ({"channel": REVENUE_ID, "latest": "NaN"}, "invalid_ts_latest"),
        ({"channel": REVENUE_ID, "cursor": "not a cursor"}, "invalid_cursor"),
        ({"channel": REVENUE_ID, "limit": "many"}, "invalid_arguments"),
    ],
)
def test_history_errors(client: WebClient, arguments: dict[str, Any], error: str) -> None:
    with pytest.raises(SlackApiError) as caught:
        client.api_call("conversations.history", http_verb="GET", params=arguments)

    assert caught.value.response.status_code == 200
    assert caught.value.response.data == {"ok": False, "error": error}


def test_history_of_an_unknown_channel_fails(client: WebClient) -> None:
    with pytest.raises(SlackApiError) as caught:
        client.conversations_history(channel="CNOSUCH0001")

    assert caught.value.response["error"] == "channel_not_found"


# --------------------------------------------------------------------------- interactions


def test_button_click_payload_shape() -> None:
    payload = button_click(
        user_id=PETE_ID,
        action_id="approve",
        value="incident-7",
        channel_id=REVENUE_ID,
        message_ts=ts(0),
        trigger_id="1764000000.123456.abc",
        username="pete",
        block_id="decision",
    )

    assert payload["type"] == "block_actions"
    assert payload["user"] == {
        "id": PETE_ID,
        "username": "pete",
        "name": "pete",
        "team_id": TEAM_ID,
    }
    assert payload["trigger_id"] == "1764000000.123456.abc"
    assert payload["channel"]["id"] == REVENUE_ID
    assert payload["message"]["ts"] == ts(0)
    assert payload["container"] == {
        "type": "message",
        "message_ts": ts(0),
        "channel_id": REVENUE_ID,
        "is_ephemeral": False,
    }
    assert payload["response_url"] == (
        f"https://hooks.slack.com/actions/{TEAM_ID}/{REVENUE_ID}/{ts(0)}/{PETE_ID}"
    )
    [action] = payload["actions"]
    assert {k: action[k] for k in ("action_id", "block_id", "value", "type")} == {
        "action_id": "approve",
        "block_id": "decision",
        "value": "incident-7",
        "type": "button",
    }


def test_signed_interaction_passes_slack_sdk_verification(clock: FixedClock) -> None:
    payload = button_click(
        user_id=PETE_ID,
        action_id="approve",
        value="incident-7",
        channel_id=REVENUE_ID,
        message_ts=ts(0),
    )
    headers, body = signed_interaction(SECRET, payload, timestamp=int(NOW))
    verifier = SignatureVerifier(SECRET, clock=FixedClock(NOW + 60))

    assert headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert headers["X-Slack-Request-Timestamp"] == "1764000000"
    assert headers["X-Slack-Signature"].startswith("v0=")
    assert json.loads(parse_qs(body.decode())["payload"][0]) == payload
    assert verifier.is_valid_request(body, headers)
    assert not verifier.is_valid_request(body.replace(b"approve", b"reject_"), headers)
    assert not SignatureVerifier("another-secret", clock=clock).is_valid_request(body, headers)
    stale = SignatureVerifier(SECRET, clock=FixedClock(NOW + 5 * 60 + 1))
    assert not stale.is_valid_request(body, headers)


def test_the_emulator_signs_with_its_own_secret_and_clock(emulator: SlackEmulator) -> None:
    headers, body = emulator.sign({"type": "block_actions"})

    assert headers["X-Slack-Request-Timestamp"] == "1764000000"
    assert SignatureVerifier(SECRET, clock=FixedClock(NOW)).is_valid_request(body, headers)


def test_response_url_replaces_the_original_message(
    server: LoopbackServer, client: WebClient, emulator: SlackEmulator
) -> None:
    posted = client.chat_postMessage(channel=REVENUE_ID, text="Approve?", blocks=APPROVE_BLOCKS)
    payload = button_click(
        user_id=PETE_ID,
        action_id="approve",
        value="incident-7",
        channel_id=REVENUE_ID,
        message_ts=posted["ts"],
        hooks_base=server.base_url,
    )
    webhook = WebhookClient(payload["response_url"])

    replaced = webhook.send(text="Approved by pete", replace_original=True)
    private = webhook.send(text="Thanks, the fix is queued")
    public = webhook.send(text="Fix applied", response_type="in_channel")

    assert [r.status_code for r in (replaced, private, public)] == [200, 200, 200]
    assert emulator.state()["messages"] == [
        stored(REVENUE_ID, ts(0), "Approved by pete", edited=True),
        stored(REVENUE_ID, ts(2), "Thanks, the fix is queued", ephemeral_for=PETE_ID),
        stored(REVENUE_ID, ts(3), "Fix applied"),
    ]
    assert webhook.send(text="gone", delete_original=True).status_code == 200
    assert [m["text"] for m in emulator.state()["messages"]] == [
        "Thanks, the fix is queued",
        "Fix applied",
    ]
    assert webhook.send(text="again", replace_original=True).status_code == 404


def test_seed_rejects_bad_input() -> None:
    emulator = SlackEmulator()

    with pytest.raises(ValueError, match=r"users\[0\]\.email: expected an e-mail address"):
        emulator.seed({"users": [{"email": "not-an-address"}]})
    with pytest.raises(ValueError, match=r"channels\[0\]\.name: a channel name is lower-case"):
        emulator.seed({"channels": [{"name": "Revenue Data"}]})
    with pytest.raises(ValueError, match="fail_next needs times >= 1"):
        emulator.fail_next("x", times=0)
