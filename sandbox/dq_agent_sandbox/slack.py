"""A loopback stand-in for the Slack Web API, served by :class:`LoopbackServer`.

It speaks the service's wire format, so the real ``slack_sdk.WebClient`` works against it with
``base_url=server.base_url + "/api/"``: every method is a POST to ``/api/<method>`` with a
form-encoded or JSON body, application errors are HTTP 200 with ``{"ok": false, "error": …}``
and rate limits are HTTP 429 with ``Retry-After``. Interactions go the other way, from Slack to
the app: :func:`button_click` builds a ``block_actions`` payload and :func:`signed_interaction`
signs it as Slack does. A payload's ``response_url`` may point back at this emulator
(``/actions/…``), which then edits or posts messages as Slack would. Over Socket Mode,
``apps.connections.open`` (with the app-level token) answers a WebSocket URL of
:attr:`SlackEmulator.socket_mode` (:mod:`dq_agent_sandbox.slack_socket`), which delivers clicks
as envelopes while it is started.

Where the emulation stops, it says so here rather than guessing:

- one workspace, one bot; every message is posted by the bot;
- blocks are checked for shape (a list of at most 50 objects with a ``type``) and stored as
  sent: Slack's normalisation (generated ``block_id``\\s, ``emoji`` flags) is not applied;
- ``conversations.open`` opens one-to-one direct messages only;
- message metadata is ``{"event_type", "event_payload"}`` and nothing else (no work-object
  ``entities``), checked for shape only: no event schemas, no size limit;
- ``conversations.history`` lists top-level messages only (a reply broadcast to the channel is
  not modelled), newest first, whether or not ``oldest`` is given; a non-numeric ``limit`` is
  ``invalid_arguments``; ``conversations.replies`` returns a whole thread and ignores paging;
- membership is not modelled: the bot can post to, and any user can see, every channel;
- ``apps.connections.open`` takes the app token from the header or the form alike (Slack
  refuses it in the form), and answers ``service_unavailable`` while the link is not started.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import json
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dq_agent_sandbox.http import Request, Response
from dq_agent_sandbox.slack_socket import SocketModeLink

__all__ = [
    "APP_ID",
    "BOT_ID",
    "BOT_USER_ID",
    "TEAM_ID",
    "SlackEmulator",
    "button_click",
    "signed_interaction",
]

JsonObject = dict[str, Any]

API_PREFIX = "/api/"
ACTIONS_PREFIX = "/actions/"
HOOKS_BASE = "https://hooks.slack.com"
TEAM_NAME = "Sandbox"
TEAM_DOMAIN = "sandbox"
BOT_NAME = "dq-agent"
DEFAULT_TZ = "UTC"
MAX_BLOCKS = 50
MAX_TEXT = 40_000
HISTORY_LIMIT = 100  # conversations.history's default page size
MAX_HISTORY_LIMIT = 999

_LOOKS_LIKE_ID = re.compile(r"[CDGUW][A-Z0-9]{8,}")
_USER_ID = re.compile(r"[UW][A-Z0-9]{8,}")
_CHANNEL_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,79}")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")


def _derived_id(prefix: str, key: str) -> str:
    """A stable Slack-looking id: the prefix and ten upper-case characters from ``key``."""
    digest = hashlib.sha256(key.encode("utf-8")).digest()
    return prefix + base64.b32encode(digest).decode("ascii")[:10]


TEAM_ID = _derived_id("T", "team")
BOT_USER_ID = _derived_id("U", "bot user")
BOT_ID = _derived_id("B", "bot")
APP_ID = _derived_id("A", "app")


# --------------------------------------------------------------------------- model


@dataclass
class _User:
    id: str
    email: str
    name: str
    real_name: str
    tz: str

    def resource(self, now: float) -> JsonObject:
        try:
            offset = ZoneInfo(self.tz).utcoffset(datetime.fromtimestamp(now, UTC))
        except ZoneInfoNotFoundError:
            offset = None
        return {
            "id": self.id,
            "team_id": TEAM_ID,
            "name": self.name,
            "deleted": False,
            "real_name": self.real_name,
            "tz": self.tz,
            "tz_offset": int(offset.total_seconds()) if offset is not None else 0,
            "is_bot": False,
            "profile": {
                "email": self.email,
                "real_name": self.real_name,
                "display_name": self.name,
            },
        }

    def summary(self) -> JsonObject:
        return {
            "id": self.id,
            "email": self.email,
            "name": self.name,
            "real_name": self.real_name,
            "tz": self.tz,
        }


@dataclass
class _Channel:
    id: str
    name: str | None  # None for a direct message
    user: str | None = None  # the other side of a direct message

    def summary(self) -> JsonObject:
        return {"id": self.id, "name": self.name, "is_im": self.user is not None, "user": self.user}


@dataclass
class _Message:
    channel: str
    ts: str
    text: str
    blocks: list[JsonObject] | None
    thread_ts: str | None = None  # set on replies only; a thread's root keeps None
    ephemeral_for: str | None = None
    edited_ts: str | None = None
    user: str = BOT_USER_ID
    metadata: JsonObject | None = None

    def summary(self) -> JsonObject:
        summary: JsonObject = {
            "channel": self.channel,
            "ts": self.ts,
            "thread_ts": self.thread_ts,
            "text": self.text,
            "blocks": copy.deepcopy(self.blocks),
            "user": self.user,
            "edited": self.edited_ts is not None,
            "metadata": copy.deepcopy(self.metadata),
        }
        if self.ephemeral_for is not None:
            summary["ephemeral_for"] = self.ephemeral_for
        return summary


class _SlackError(Exception):
    def __init__(self, error: str) -> None:
        super().__init__(error)
        self.error = error


@dataclass(frozen=True)
class _Fault:
    error: str
    status: int
    retry_after: int | str | None


# --------------------------------------------------------------------------- arguments


def _params(request: Request) -> tuple[JsonObject, bool]:
    """Query and body arguments merged, and whether the body was JSON."""
    params: JsonObject = {name: values[-1] for name, values in request.query.items() if values}
    if not request.headers.get("content-type", "").startswith("application/json"):
        params.update(request.form())
        return params, False
    try:
        body = request.json()
    except ValueError:
        raise _SlackError("invalid_json") from None
    if body is not None and not isinstance(body, dict):
        raise _SlackError("invalid_json")
    params.update(body or {})
    return params, True


def _arg(params: Mapping[str, Any], name: str, missing: str) -> str:
    value = params.get(name)
    if value is None or value == "":
        raise _SlackError(missing)
    return str(value)


def _flag(value: object) -> bool:
    return value is True or str(value).lower() in ("1", "true")


def _json_param(params: Mapping[str, Any], name: str, error: str) -> Any:
    """A structured argument: a JSON string in a form body, already decoded in a JSON body."""
    raw = params.get(name)
    if raw is None or raw == "":
        return None
    if isinstance(raw, str):
        try:
            return json.loads(raw)
        except ValueError:
            raise _SlackError(error) from None
    return raw


def _blocks(params: Mapping[str, Any]) -> list[JsonObject] | None:
    """Blocks arrive as a JSON string in a form body and as a list in a JSON body."""
    raw = _json_param(params, "blocks", "invalid_blocks_format")
    if raw is None:
        return None
    if (
        not isinstance(raw, list)
        or len(raw) > MAX_BLOCKS
        or not all(isinstance(b, dict) and isinstance(b.get("type"), str) for b in raw)
    ):
        raise _SlackError("invalid_blocks")
    return copy.deepcopy(raw)


def _metadata(params: Mapping[str, Any]) -> JsonObject | None:
    """``{"event_type", "event_payload"}``: a JSON string in a form body, an object in JSON."""
    raw = _json_param(params, "metadata", "invalid_metadata_format")
    if raw is None:
        return None
    if (
        not isinstance(raw, dict)
        or set(raw) != {"event_type", "event_payload"}
        or not isinstance(raw["event_type"], str)
        or not raw["event_type"]
        or not isinstance(raw["event_payload"], dict)
    ):
        raise _SlackError("invalid_metadata_format")
    return copy.deepcopy(raw)


def _ts_value(value: object, invalid: str) -> Decimal:
    """A message timestamp (``"1764000000.000001"``, or whole seconds) as a number."""
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation:
        raise _SlackError(invalid) from None
    if not number.is_finite() or number < 0:
        raise _SlackError(invalid)
    return number


def _limit(params: Mapping[str, Any], default: int, maximum: int) -> int:
    raw = params.get("limit")
    if raw is None or raw == "":
        return default
    try:
        limit = int(str(raw).strip())
    except ValueError:
        raise _SlackError("invalid_arguments") from None
    return min(max(limit, 1), maximum)


def _history_cursor(ts: str) -> str:
    """An opaque cursor naming the newest message of the next page, as Slack's own do."""
    return base64.b64encode(f"next_ts:{ts}".encode()).decode("ascii")


def _cursor_ts(cursor: str) -> Decimal:
    try:
        decoded = base64.b64decode(cursor.encode("ascii"), validate=True).decode("ascii")
    except (ValueError, UnicodeError):
        raise _SlackError("invalid_cursor") from None
    prefix, _, ts = decoded.partition(":")
    if prefix != "next_ts":
        raise _SlackError("invalid_cursor")
    return _ts_value(ts, "invalid_cursor")


def _content(params: Mapping[str, Any]) -> tuple[str, list[JsonObject] | None]:
    text = params.get("text")
    text = "" if text is None else str(text)
    blocks = _blocks(params)
    if not text and not blocks:
        raise _SlackError("no_text")
    if len(text) > MAX_TEXT:
        raise _SlackError("msg_too_long")
    return text, blocks


# --------------------------------------------------------------------------- seeding


def _real_name(name: str) -> str:
    return " ".join(part.capitalize() for part in re.split(r"[._-]+", name) if part)


def _new_user(email: str, spec: Mapping[str, Any] | None = None, where: str = "user") -> _User:
    spec = spec or {}
    if not isinstance(email, str) or not _EMAIL.fullmatch(email):
        raise ValueError(f"{where}.email: expected an e-mail address, got {email!r}")
    user_id = spec.get("id") or _derived_id("U", email.lower())
    if not isinstance(user_id, str) or not _USER_ID.fullmatch(user_id):
        raise ValueError(f"{where}.id: a user id is U or W and upper-case letters, got {user_id!r}")
    name = spec.get("name") or email.partition("@")[0].lower()
    real_name = spec.get("real_name") or _real_name(str(name))
    tz = spec.get("tz") or DEFAULT_TZ
    try:
        ZoneInfo(str(tz))
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{where}.tz: unknown time zone {tz!r}") from None
    return _User(user_id, email, str(name), str(real_name), str(tz))


def _seed_channel(spec: Mapping[str, Any], where: str) -> _Channel:
    name = spec.get("name")
    if not isinstance(name, str) or not _CHANNEL_NAME.fullmatch(name.removeprefix("#")):
        raise ValueError(f"{where}.name: a channel name is lower-case, got {name!r}")
    name = name.removeprefix("#")
    channel_id = spec.get("id") or _derived_id("C", name)
    if not isinstance(channel_id, str) or not re.fullmatch(r"[CG][A-Z0-9]{8,}", channel_id):
        raise ValueError(f"{where}.id: a channel id is C or G and upper-case letters")
    return _Channel(channel_id, name)


# --------------------------------------------------------------------------- interactions


def signed_interaction(
    signing_secret: str, payload: Mapping[str, Any], *, timestamp: int
) -> tuple[dict[str, str], bytes]:
    """Headers and body of an interaction request, signed as Slack signs it."""
    body = urlencode({"payload": json.dumps(payload, separators=(",", ":"))}).encode("utf-8")
    base = f"v0:{timestamp}:".encode() + body
    digest = hmac.new(signing_secret.encode("utf-8"), base, hashlib.sha256).hexdigest()
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Slack-Request-Timestamp": str(timestamp),
        "X-Slack-Signature": f"v0={digest}",
    }
    return headers, body


def button_click(
    *,
    user_id: str,
    action_id: str,
    value: str,
    channel_id: str,
    message_ts: str,
    trigger_id: str | None = None,
    username: str | None = None,
    block_id: str = "actions",
    hooks_base: str = HOOKS_BASE,
) -> JsonObject:
    """A ``block_actions`` payload for a click on a button in a message the bot posted.

    ``hooks_base`` is where ``response_url`` points: pass a server's ``base_url`` to have the
    emulator answer it.
    """
    seconds = message_ts.partition(".")[0]
    token = hashlib.sha256(f"{channel_id}:{message_ts}:{action_id}".encode()).hexdigest()
    return {
        "type": "block_actions",
        "user": {
            "id": user_id,
            "username": username or user_id.lower(),
            "name": username or user_id.lower(),
            "team_id": TEAM_ID,
        },
        "api_app_id": APP_ID,
        "token": token[:24],
        "container": {
            "type": "message",
            "message_ts": message_ts,
            "channel_id": channel_id,
            "is_ephemeral": False,
        },
        "trigger_id": trigger_id or f"{seconds}.{seconds[-6:]}.{token[:32]}",
        "team": {"id": TEAM_ID, "domain": TEAM_DOMAIN},
        "enterprise": None,
        "is_enterprise_install": False,
        "channel": {"id": channel_id, "name": channel_id},
        "message": {"type": "message", "ts": message_ts, "user": BOT_USER_ID, "bot_id": BOT_ID},
        "state": {"values": {}},
        "response_url": (
            f"{hooks_base.rstrip('/')}{ACTIONS_PREFIX}{TEAM_ID}/{channel_id}/{message_ts}/{user_id}"
        ),
        "actions": [
            {
                "action_id": action_id,
                "block_id": block_id,
                "value": value,
                "type": "button",
                "action_ts": f"{seconds}.{token[:6]}",
            }
        ],
    }


# --------------------------------------------------------------------------- the emulator

_Method = Callable[[JsonObject], JsonObject]


class SlackEmulator:
    """The Slack Web API over an in-memory workspace; serve it with LoopbackServer."""

    name = "slack"

    def __init__(
        self,
        *,
        token: str = "xoxb-sandbox",
        signing_secret: str = "sandbox-signing-secret",
        app_token: str = "xapp-sandbox",
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.token = token
        self.signing_secret = signing_secret
        self.app_token = app_token
        # Socket Mode: serve it with ``with emulator.socket_mode:`` beside the LoopbackServer.
        self.socket_mode = SocketModeLink(APP_ID)
        self._clock = clock or time.time
        self._lock = threading.Lock()
        self._methods: dict[str, _Method] = {
            "auth.test": self._auth_test,
            "users.lookupByEmail": self._users_lookup_by_email,
            "users.info": self._users_info,
            "conversations.open": self._conversations_open,
            "conversations.replies": self._conversations_replies,
            "conversations.history": self._conversations_history,
            "conversations.list": self._conversations_list,
            "chat.postMessage": self._chat_post_message,
            "chat.update": self._chat_update,
            "chat.postEphemeral": self._chat_post_ephemeral,
            "chat.getPermalink": self._chat_get_permalink,
            "apps.connections.open": self._apps_connections_open,
        }
        self.reset()

    # ----------------------------------------------------------------- test controls

    def reset(self) -> None:
        """Forget every user, channel, message, pending fault and request count."""
        with self._lock:
            self._users: dict[str, _User] = {}  # by id
            self._emails: dict[str, str] = {}  # lower-case e-mail -> user id
            self._channels: dict[str, _Channel] = {}  # by id
            self._messages: list[_Message] = []
            self._faults: list[_Fault] = []
            self._drops: Counter[str] = Counter()
            self._calls: Counter[str] = Counter()
            self._requests = 0
            self._last_micros = 0
            self._strict_users = False

    def seed(self, data: Mapping[str, Any]) -> dict[str, dict[str, str]]:
        """Add users and channels; returns ``{"users": {email: id}, "channels": {name: id}}``.

        ``data`` is ``{"users": [{"email", "id"?, "name"?, "real_name"?, "tz"?}],
        "channels": [{"name", "id"?}], "strict_users"?: bool}``. With ``strict_users`` only
        seeded e-mails resolve; otherwise any address does, creating the user on first lookup.
        """
        users = [
            _new_user(u.get("email"), u, f"users[{i}]")
            for i, u in enumerate(data.get("users") or [])
        ]
        channels = [
            _seed_channel(c, f"channels[{i}]") for i, c in enumerate(data.get("channels") or [])
        ]
        with self._lock:
            for user in users:
                self._add_user(user)
            for channel in channels:
                self._channels[channel.id] = channel
            if "strict_users" in data:
                self._strict_users = bool(data["strict_users"])
        return {
            "users": {user.email: user.id for user in users},
            "channels": {str(channel.name): channel.id for channel in channels},
        }

    def fail_next(
        self,
        error: str,
        *,
        times: int = 1,
        status: int = 200,
        retry_after: int | str | None = None,
    ) -> None:
        """Answer the next ``times`` API calls with ``{"ok": false, "error": error}``.

        With ``status=429`` the answer is Slack's rate limit instead: a 429 with ``Retry-After``
        (``retry_after``, default 1) and the error ``ratelimited``, whatever ``error`` says.
        """
        if times < 1 or not (status in (200, 429) or 500 <= status <= 599):
            raise ValueError("fail_next needs times >= 1 and a status of 200, 429 or 5xx")
        with self._lock:
            self._faults.extend([_Fault(error, status, retry_after)] * times)

    def drop_after(self, method: str, *, times: int = 1) -> None:
        """Carry out the next ``times`` calls of ``method`` (a message is posted), then drop
        the connection instead of answering: the client cannot tell whether it went through."""
        with self._lock:
            self._drops[method] += times

    def requests_for(self, method: str) -> int:
        """How many calls of an API method (``chat.postMessage``) arrived, failed ones included."""
        with self._lock:
            return self._calls[method]

    def sign(self, payload: Mapping[str, Any]) -> tuple[dict[str, str], bytes]:
        """``payload`` signed with this workspace's secret at the emulator's current time."""
        return signed_interaction(self.signing_secret, payload, timestamp=int(self._clock()))

    def state(self) -> dict[str, Any]:
        """Messages in posting order (edits applied in place), users, channels and DMs."""
        with self._lock:
            return {
                "messages": [message.summary() for message in self._messages],
                "users": [user.summary() for user in self._users.values()],
                "channels": [channel.summary() for channel in self._channels.values()],
                "requests": self._requests,
            }

    # ----------------------------------------------------------------- requests

    def handle(self, request: Request) -> Response:
        with self._lock:
            self._requests += 1
            if request.path.startswith(ACTIONS_PREFIX) and request.method == "POST":
                return self._respond(request)
            if not request.path.startswith(API_PREFIX) or request.method not in ("GET", "POST"):
                return Response(404, {"ok": False, "error": "not_found"})
            method = request.path[len(API_PREFIX) :].strip("/")
            self._calls[method] += 1
            if self._faults:
                return self._fault(self._faults.pop(0))
            try:
                answer = Response(200, {"ok": True, **self._call(method, request)})
            except _SlackError as exc:
                return Response(200, {"ok": False, "error": exc.error})
            if self._drops[method]:
                self._drops[method] -= 1
                answer.drop = True
            return answer

    def _fault(self, fault: _Fault) -> Response:
        if fault.status == 429:
            headers = {"Retry-After": str(1 if fault.retry_after is None else fault.retry_after)}
            return Response(429, {"ok": False, "error": "ratelimited"}, headers)
        headers = {} if fault.retry_after is None else {"Retry-After": str(fault.retry_after)}
        return Response(fault.status, {"ok": False, "error": fault.error}, headers)

    def _call(self, method: str, request: Request) -> JsonObject:
        handler = self._methods.get(method)
        if handler is None:
            raise _SlackError("unknown_method")
        params, via_json = _params(request)
        # A JSON body cannot carry the token: Slack reads it from the header only.
        token = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        if not token and not via_json:
            token = str(params.get("token") or "")
        if not token:
            raise _SlackError("not_authed")
        # Socket Mode connections are opened with the app-level token, everything else with
        # the bot's.
        expected = self.app_token if method == "apps.connections.open" else self.token
        if not hmac.compare_digest(token.encode(), expected.encode()):
            other = self.token if expected == self.app_token else self.app_token
            wrong_kind = hmac.compare_digest(token.encode(), other.encode())
            raise _SlackError("not_allowed_token_type" if wrong_kind else "invalid_auth")
        return handler(params)

    # ----------------------------------------------------------------- lookups

    def _add_user(self, user: _User) -> _User:
        self._users[user.id] = user
        self._emails[user.email.lower()] = user.id
        return user

    def _user(self, user_id: str) -> _User:
        user = self._users.get(user_id)
        if user is None:
            raise _SlackError("user_not_found")
        return user

    def _dm(self, user: _User) -> _Channel:
        channel_id = _derived_id("D", user.id)
        return self._channels.setdefault(channel_id, _Channel(channel_id, None, user.id))

    def _channel(self, ref: str, *, create: bool = False) -> _Channel:
        """A channel by id, ``#name`` or name; a user id means the DM with that user."""
        channel = self._channels.get(ref)
        if channel is not None:
            return channel
        if ref in self._users:
            return self._dm(self._users[ref])
        name = ref.removeprefix("#")
        channel = next((c for c in self._channels.values() if c.name == name), None)
        if channel is not None:
            return channel
        if create and _CHANNEL_NAME.fullmatch(name) and not _LOOKS_LIKE_ID.fullmatch(ref):
            channel = _Channel(_derived_id("C", name), name)
            self._channels[channel.id] = channel
            return channel
        raise _SlackError("channel_not_found")

    def _message(self, channel: _Channel, ts: str, missing: str) -> _Message:
        for message in self._messages:
            if message.channel == channel.id and message.ts == ts and not message.ephemeral_for:
                return message
        raise _SlackError(missing)

    def _thread(self, root: _Message) -> list[_Message]:
        replies = [
            m
            for m in self._messages
            if m.channel == root.channel and m.thread_ts == root.ts and not m.ephemeral_for
        ]
        return [root, *replies]

    def _next_ts(self) -> str:
        """A message timestamp: the clock in microseconds, strictly increasing."""
        micros = max(int(self._clock() * 1_000_000), self._last_micros + 1)
        self._last_micros = micros
        return f"{micros // 1_000_000}.{micros % 1_000_000:06d}"

    def _view(self, message: _Message, *, metadata: bool = False) -> JsonObject:
        """A message as the Web API returns it; ``metadata`` for ``include_all_metadata``."""
        view: JsonObject = {
            "type": "message",
            "user": message.user,
            "bot_id": BOT_ID,
            "app_id": APP_ID,
            "text": message.text,
            "ts": message.ts,
            "team": TEAM_ID,
        }
        if message.blocks is not None:
            view["blocks"] = copy.deepcopy(message.blocks)
        if message.thread_ts is not None:
            view["thread_ts"] = message.thread_ts
            view["parent_user_id"] = BOT_USER_ID
        else:
            replies = self._thread(message)[1:]
            if replies:
                view["thread_ts"] = message.ts
                view["reply_count"] = len(replies)
                view["latest_reply"] = replies[-1].ts
        if message.edited_ts is not None:
            view["edited"] = {"user": message.user, "ts": message.edited_ts}
        if metadata and message.metadata is not None:
            view["metadata"] = copy.deepcopy(message.metadata)
        return view

    def _post(self, channel: _Channel, params: Mapping[str, Any], **extra: Any) -> _Message:
        text, blocks = _content(params)
        thread_ts = params.get("thread_ts") or None
        if thread_ts is not None:
            parent = self._message(channel, str(thread_ts), "thread_not_found")
            thread_ts = parent.thread_ts or parent.ts  # a reply to a reply joins the thread
        message = _Message(channel.id, self._next_ts(), text, blocks, thread_ts, **extra)
        self._messages.append(message)
        return message

    # ----------------------------------------------------------------- methods

    def _auth_test(self, _params: JsonObject) -> JsonObject:
        return {
            "url": f"https://{TEAM_DOMAIN}.slack.com/",
            "team": TEAM_NAME,
            "user": BOT_NAME,
            "team_id": TEAM_ID,
            "user_id": BOT_USER_ID,
            "bot_id": BOT_ID,
            "is_enterprise_install": False,
        }

    def _apps_connections_open(self, _params: JsonObject) -> JsonObject:
        if not self.socket_mode.serving:
            raise _SlackError("service_unavailable")
        return {"url": self.socket_mode.open_url()}

    def _users_lookup_by_email(self, params: JsonObject) -> JsonObject:
        email = _arg(params, "email", "invalid_arguments").strip()
        user_id = self._emails.get(email.lower())
        if user_id is None:
            if self._strict_users or not _EMAIL.fullmatch(email):
                raise _SlackError("users_not_found")
            user_id = self._add_user(_new_user(email)).id
        return {"user": self._users[user_id].resource(self._clock())}

    def _users_info(self, params: JsonObject) -> JsonObject:
        user = self._user(_arg(params, "user", "user_not_found"))
        return {"user": user.resource(self._clock())}

    def _conversations_open(self, params: JsonObject) -> JsonObject:
        if params.get("channel"):
            channel = self._channel(str(params["channel"]))
            if channel.user is None:
                raise _SlackError("method_not_supported_for_channel_type")
            return {"no_op": True, "already_open": True, "channel": {"id": channel.id}}
        users = [u for u in _arg(params, "users", "users_list_not_supplied").split(",") if u]
        if len(users) != 1:
            raise _SlackError("not_supported")  # group DMs are beyond this emulator
        user = self._user(users[0].strip())
        already_open = _derived_id("D", user.id) in self._channels
        channel = self._dm(user)
        if already_open:
            return {"no_op": True, "already_open": True, "channel": {"id": channel.id}}
        return {"channel": {"id": channel.id}}

    def _conversations_replies(self, params: JsonObject) -> JsonObject:
        channel = self._channel(_arg(params, "channel", "channel_not_found"))
        message = self._message(channel, _arg(params, "ts", "thread_not_found"), "thread_not_found")
        root = (
            message
            if message.thread_ts is None
            else self._message(channel, message.thread_ts, "thread_not_found")
        )
        metadata = _flag(params.get("include_all_metadata"))
        return {
            "messages": [self._view(m, metadata=metadata) for m in self._thread(root)],
            "has_more": False,
        }

    def _conversations_list(self, params: JsonObject) -> JsonObject:
        """Named channels, by name, a page at a time (direct messages are not listed)."""
        limit = _limit(params, HISTORY_LIMIT, MAX_HISTORY_LIMIT)
        named = sorted(
            (c for c in self._channels.values() if c.name is not None), key=lambda c: str(c.name)
        )
        start = 0
        if params.get("cursor"):
            try:
                decoded = base64.b64decode(str(params["cursor"]), validate=True).decode("ascii")
                start = int(decoded.removeprefix("offset:"))
            except (ValueError, UnicodeError):
                raise _SlackError("invalid_cursor") from None
        page = named[start : start + limit]
        more = start + limit < len(named)
        cursor = base64.b64encode(f"offset:{start + limit}".encode()).decode() if more else ""
        return {
            "channels": [
                {"id": c.id, "name": c.name, "is_channel": True, "is_archived": False} for c in page
            ],
            "response_metadata": {"next_cursor": cursor},
        }

    def _conversations_history(self, params: JsonObject) -> JsonObject:
        """Top-level messages, newest first, within ``oldest``..``latest`` and a cursor."""
        channel = self._channel(_arg(params, "channel", "channel_not_found"))
        limit = _limit(params, HISTORY_LIMIT, MAX_HISTORY_LIMIT)
        inclusive = _flag(params.get("inclusive"))
        oldest = latest = None
        if params.get("oldest") not in (None, ""):
            oldest = _ts_value(params["oldest"], "invalid_ts_oldest")
        if params.get("latest") not in (None, ""):
            latest = _ts_value(params["latest"], "invalid_ts_latest")
        below = _cursor_ts(str(params["cursor"])) if params.get("cursor") else None

        def listed(message: _Message) -> bool:
            at = Decimal(message.ts)
            return (
                message.channel == channel.id
                and message.thread_ts is None
                and message.ephemeral_for is None
                and (oldest is None or at > oldest or (inclusive and at == oldest))
                and (latest is None or at < latest or (inclusive and at == latest))
                and (below is None or at <= below)
            )

        found = sorted(
            (m for m in self._messages if listed(m)), key=lambda m: Decimal(m.ts), reverse=True
        )
        page, rest = found[:limit], found[limit:]
        metadata = _flag(params.get("include_all_metadata"))
        return {
            "messages": [self._view(m, metadata=metadata) for m in page],
            "has_more": bool(rest),
            "pin_count": 0,
            "response_metadata": {"next_cursor": _history_cursor(rest[0].ts) if rest else ""},
        }

    def _chat_post_message(self, params: JsonObject) -> JsonObject:
        channel = self._channel(_arg(params, "channel", "channel_not_found"), create=True)
        message = self._post(channel, params, metadata=_metadata(params))
        return {"channel": channel.id, "ts": message.ts, "message": self._view(message)}

    def _chat_update(self, params: JsonObject) -> JsonObject:
        channel = self._channel(_arg(params, "channel", "channel_not_found"))
        message = self._message(
            channel, _arg(params, "ts", "message_not_found"), "message_not_found"
        )
        metadata = _metadata(params)
        self._edit(message, params)
        if metadata is not None:  # chat.update keeps the metadata unless it is sent new
            message.metadata = metadata
        return {
            "channel": channel.id,
            "ts": message.ts,
            "text": message.text,
            "message": self._view(message),
        }

    def _edit(self, message: _Message, params: Mapping[str, Any], *, whole: bool = False) -> None:
        """chat.update keeps the fields it is not sent; a ``response_url`` replaces them all."""
        if whole:
            text, blocks = _content(params)
        else:
            text = str(params["text"]) if params.get("text") is not None else message.text
            blocks = _blocks(params) if params.get("blocks") is not None else message.blocks
        _content({"text": text, "blocks": blocks})
        message.text, message.blocks, message.edited_ts = text, blocks, self._next_ts()

    def _chat_post_ephemeral(self, params: JsonObject) -> JsonObject:
        channel = self._channel(_arg(params, "channel", "channel_not_found"))
        user = self._user(_arg(params, "user", "user_not_found"))
        message = self._post(channel, params, ephemeral_for=user.id)
        return {"message_ts": message.ts}

    def _chat_get_permalink(self, params: JsonObject) -> JsonObject:
        channel = self._channel(_arg(params, "channel", "channel_not_found"))
        ts = _arg(params, "message_ts", "message_not_found")
        message = self._message(channel, ts, "message_not_found")
        link = f"https://{TEAM_DOMAIN}.slack.com/archives/{channel.id}/p{ts.replace('.', '')}"
        if message.thread_ts is not None:
            link += f"?thread_ts={message.thread_ts}&cid={channel.id}"
        return {"channel": channel.id, "permalink": link}

    # ----------------------------------------------------------------- response_url

    def _respond(self, request: Request) -> Response:
        """A message sent to a ``response_url`` from :func:`button_click`."""
        parts = request.path[len(ACTIONS_PREFIX) :].split("/")
        channel = self._channels.get(parts[1]) if len(parts) == 4 else None
        if channel is None or parts[0] != TEAM_ID:
            return Response(404, {"ok": False, "error": "expired_url"})
        try:
            params, _ = _params(request)
            message = self._message(channel, parts[2], "expired_url")
            if _flag(params.get("delete_original")):
                self._messages.remove(message)
            elif _flag(params.get("replace_original")):
                self._edit(message, params, whole=True)
            elif params.get("response_type") == "in_channel":
                self._post(channel, params)
            else:  # Slack's default for a response is a message only the clicker sees
                self._post(channel, params, ephemeral_for=parts[3])
        except _SlackError as exc:
            status = 404 if exc.error == "expired_url" else 400
            return Response(status, {"ok": False, "error": exc.error})
        return Response(200, {"ok": True})
