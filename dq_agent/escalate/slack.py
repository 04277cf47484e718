"""The Slack Web API as the agent uses it, through slack-sdk's ``WebClient``.

Vendor errors are translated here into :class:`SlackError`, which says whether trying again
later may help (rate limits, timeouts, Slack's own outages) or not (a bad token, a channel
that does not exist).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from dq_agent.config.models import SlackSettings
from dq_agent.errors import DqAgentError
from dq_agent.sources.retry import parse_retry_after

if TYPE_CHECKING:
    from slack_sdk.web import SlackResponse

# Answers from Slack that will not change by trying again.
_PERMANENT = {
    "account_inactive",
    "channel_not_found",
    "invalid_auth",
    "invalid_blocks",
    "invalid_metadata_format",
    "is_archived",
    "message_not_found",
    "missing_scope",
    "not_authed",
    "not_in_channel",
    "token_revoked",
    "user_not_found",
    "users_not_found",
}
# The longest Retry-After honoured in place; longer waits are left to the next delivery round.
MAX_RETRY_AFTER_S = 60
# chat.postMessage allows about one message a second per channel (a DM is a channel), with
# short bursts above it: posts beyond a burst of this many are spaced out, in order.
POST_BURST = 4
POST_INTERVAL_S = 1.0


def next_turn(recent: Sequence[float], now: float) -> tuple[float, list[float]]:
    """A channel's next post: how long it waits (a burst of :data:`POST_BURST` posts, then
    one per :data:`POST_INTERVAL_S`), and the channel's recent turns with it (oldest first)."""
    window = POST_BURST * POST_INTERVAL_S
    kept = [t for t in recent if t > now - window]
    wait = 0.0
    if len(kept) >= POST_BURST:
        wait = max(0.0, kept[-POST_BURST] + window - now)
    return wait, [*kept, now + wait][-POST_BURST:]


class Pace(Protocol):
    """Where a sender reserves its channel's next turn: how long it must wait for it."""

    def reserve(self, channel: str) -> float: ...


class Slack(Protocol):
    """What the agent asks of Slack: :class:`SlackApi` holding the bot token, or, with a
    credential broker, :class:`~dq_agent.broker.slack.BrokeredSlack` asking the broker."""

    # Waits Slack asked for (429), their seconds, and the seconds posts waited their turn.
    rate_limit_waits: int
    rate_limit_wait_s: float
    paced_s: float

    def user(self, email: str) -> SlackUser: ...

    def email_of(self, user_id: str) -> str | None: ...

    def name_of(self, user_id: str) -> str | None: ...

    def channel_for(self, recipient: str) -> str: ...

    def post(
        self,
        channel: str,
        text: str,
        blocks: Sequence[Mapping[str, Any]] | None,
        *,
        key: str,
        thread_ts: str | None = None,
    ) -> str: ...

    def update(
        self, channel: str, ts: str, text: str, blocks: Sequence[Mapping[str, Any]] | None
    ) -> None: ...

    def ephemeral(self, channel: str, user_id: str, text: str) -> None: ...

    def find(self, channel: str, key: str, *, thread_ts: str | None = None) -> str | None: ...


class _LocalPace:
    """This process's own record of each channel's turns (one sender, or SQLite)."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._turns: dict[str, list[float]] = {}

    def reserve(self, channel: str) -> float:
        with self._lock:
            wait, self._turns[channel] = next_turn(self._turns.get(channel, []), self._clock())
        return wait


METADATA_EVENT = "dq_agent_message"


class SlackError(DqAgentError):
    """A Slack Web API call failed; ``transient`` says whether a later try may succeed."""

    def __init__(self, message: str, *, transient: bool, code: str = "") -> None:
        super().__init__(message)
        self.transient = transient
        self.code = code


@dataclass(frozen=True)
class SlackUser:
    id: str
    email: str
    tz: str | None


@dataclass(frozen=True)
class _Profile:
    """What ``users.info`` says of a person that the agent uses."""

    email: str | None
    name: str | None


def _rate_limit_handler(sleep: Callable[[float], None], retries: int) -> Any:
    """slack-sdk's rate-limit retry, waiting with ``sleep`` (which also counts the waits)."""
    from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler

    class _HonourRetryAfter(RateLimitErrorRetryHandler):
        """Waits exactly what ``Retry-After`` asks (capped), with a sleep that can be injected."""

        def prepare_for_next_attempt(
            self, *, state: Any, request: Any, response: Any = None, error: Any = None
        ) -> None:
            if response is None:
                raise error
            values = {k.lower(): v for k, v in response.headers.items()}.get("retry-after")
            asked = parse_retry_after(values[0] if isinstance(values, list) and values else values)
            state.next_attempt_requested = True
            sleep(min(1.0 if asked is None else asked, MAX_RETRY_AFTER_S))
            state.increment_current_attempt()

    return _HonourRetryAfter(max_retry_count=retries)


class SlackApi:
    """Posting, threading, updating and looking people up; users and DMs are cached."""

    def __init__(
        self,
        settings: SlackSettings,
        *,
        sleep: Callable[[float], None] = time.sleep,
        rate_limit_retries: int = 3,
        monotonic: Callable[[], float] = time.monotonic,
        pace: Pace | None = None,
    ) -> None:
        try:
            from slack_sdk import WebClient
            from slack_sdk.http_retry.builtin_handlers import ConnectionErrorRetryHandler
        except ImportError as exc:  # pragma: no cover - depends on the installed extras
            raise DqAgentError(
                "slack: is configured but slack-sdk is not installed: pip install 'dq-agent[slack]'"
            ) from exc

        # How often Slack asked to wait (429 with Retry-After), and for how long in all.
        self.rate_limit_waits = 0
        self.rate_limit_wait_s = 0.0
        # And how long posts waited for their channel's turn.
        self.paced_s = 0.0
        # Replicas share their pace through the state store (``pace``); alone, it is local.
        self._pace = pace or _LocalPace(monotonic)
        self._sleep = sleep

        def waited(seconds: float) -> None:
            self.rate_limit_waits += 1
            self.rate_limit_wait_s += seconds
            sleep(seconds)

        def client(*, reconnect: bool) -> WebClient:
            handlers = [_rate_limit_handler(waited, rate_limit_retries)]
            if reconnect:
                handlers.insert(0, ConnectionErrorRetryHandler(max_retry_count=2))
            return WebClient(
                token=settings.bot_token(),
                base_url=settings.base_url or WebClient.BASE_URL,
                timeout=settings.timeout,
                retry_handlers=handlers,
            )

        # Look-ups and edits may be sent again after a dropped connection; a new message may
        # not: Slack may have posted it before the connection dropped. A failed post is
        # retried by the outbox, which first looks for it (:meth:`find`).
        self._client = client(reconnect=True)
        self._poster = client(reconnect=False)
        self._users: dict[str, SlackUser] = {}
        self._profiles: dict[str, _Profile] = {}
        self._channels: dict[str, str] = {}

    def _call(self, what: str, method: Callable[[], SlackResponse]) -> SlackResponse:
        from slack_sdk.errors import SlackApiError, SlackRequestError

        try:
            return method()
        except SlackApiError as exc:
            code = str(exc.response.get("error", "")) if exc.response is not None else ""
            status = exc.response.status_code if exc.response is not None else 0
            transient = code not in _PERMANENT and (status == 429 or status >= 500 or not code)
            raise SlackError(
                f"Slack {what}: {code or status}", transient=transient, code=code
            ) from exc
        except (SlackRequestError, OSError) as exc:
            raise SlackError(f"Slack {what}: {exc}", transient=True) from exc

    # -- people and places ---------------------------------------------------------------------

    def user(self, email: str) -> SlackUser:
        """The Slack user with this e-mail address (``users.lookupByEmail``)."""
        key = email.lower()
        if key not in self._users:
            response = self._call(
                f"users.lookupByEmail {email}",
                lambda: self._client.users_lookupByEmail(email=email),
            )
            user = response["user"]
            self._users[key] = SlackUser(str(user["id"]), email, user.get("tz"))
        return self._users[key]

    def email_of(self, user_id: str) -> str | None:
        """A Slack user's e-mail address (``users.info``), None when Slack does not show it."""
        return self._profile(user_id).email

    def name_of(self, user_id: str) -> str | None:
        """A Slack user's name as Slack shows it (``users.info``): the display name, else the
        full name, else the username."""
        return self._profile(user_id).name

    def _profile(self, user_id: str) -> _Profile:
        if user_id not in self._profiles:
            response = self._call(
                f"users.info {user_id}", lambda: self._client.users_info(user=user_id)
            )
            user = response["user"]
            profile = user.get("profile") or {}
            email = profile.get("email")
            # Slack shows the display name a person chose; many never choose one.
            name = (
                profile.get("display_name")
                or profile.get("real_name")
                or user.get("real_name")
                or user.get("name")
            )
            self._profiles[user_id] = _Profile(
                str(email) if email else None, str(name) if name else None
            )
        return self._profiles[user_id]

    def channel_for(self, recipient: str) -> str:
        """The channel id to post to: a DM for an e-mail, the channel for ``#name``."""
        if recipient not in self._channels:
            if recipient.startswith("#"):
                self._channels[recipient] = self._channel_id(recipient[1:])
            else:
                user = self.user(recipient)
                response = self._call(
                    f"conversations.open with {recipient}",
                    lambda: self._client.conversations_open(users=[user.id]),
                )
                self._channels[recipient] = str(response["channel"]["id"])
        return self._channels[recipient]

    def _channel_id(self, name: str) -> str:
        if name and name[0] in "CG" and name.isupper():
            return name  # already an id (#C0123ABCD)
        cursor: str | None = None
        while True:
            response = self._call(
                "conversations.list",
                lambda cursor=cursor: self._client.conversations_list(  # type: ignore[misc]
                    types="public_channel,private_channel",
                    exclude_archived=True,
                    limit=200,
                    cursor=cursor,
                ),
            )
            for channel in response["channels"]:
                if channel.get("name") == name:
                    return str(channel["id"])
            cursor = (response.get("response_metadata") or {}).get("next_cursor")
            if not cursor:
                raise SlackError(
                    f"Slack: no channel #{name}", transient=False, code="channel_not_found"
                )

    # -- messages ------------------------------------------------------------------------------

    def post(
        self,
        channel: str,
        text: str,
        blocks: Sequence[Mapping[str, Any]] | None,
        *,
        key: str,
        thread_ts: str | None = None,
    ) -> str:
        """Post a message carrying its idempotency key as metadata; returns its ``ts``.
        Posts to one channel are paced as Slack allows (:func:`next_turn`)."""
        wait = self._pace.reserve(channel)
        if wait > 0:
            self._sleep(wait)
            self.paced_s += wait
        response = self._call(
            "chat.postMessage",
            lambda: self._poster.chat_postMessage(
                channel=channel,
                text=text,
                blocks=[dict(b) for b in blocks] if blocks is not None else None,
                thread_ts=thread_ts,
                metadata={"event_type": METADATA_EVENT, "event_payload": {"key": key}},
                unfurl_links=False,
            ),
        )
        return str(response["ts"])

    def update(
        self, channel: str, ts: str, text: str, blocks: Sequence[Mapping[str, Any]] | None
    ) -> None:
        self._call(
            "chat.update",
            lambda: self._client.chat_update(
                channel=channel, ts=ts, text=text, blocks=[dict(b) for b in blocks or []]
            ),
        )

    def ephemeral(self, channel: str, user_id: str, text: str) -> None:
        """A message only ``user_id`` sees (a refusal, a confirmation)."""
        self._call(
            "chat.postEphemeral",
            lambda: self._poster.chat_postEphemeral(channel=channel, user=user_id, text=text),
        )

    def find(self, channel: str, key: str, *, thread_ts: str | None = None) -> str | None:
        """The ``ts`` of a message already posted with this key, if any.

        After a crash between "about to send" and "sent", this tells the two cases apart.
        """
        if thread_ts is not None:
            response = self._call(
                "conversations.replies",
                lambda: self._client.conversations_replies(
                    channel=channel, ts=thread_ts, include_all_metadata=True, limit=200
                ),
            )
            return _with_key(response["messages"], key)
        cursor: str | None = None
        for _page in range(5):  # recent history is enough: the crash was moments ago
            response = self._call(
                "conversations.history",
                lambda cursor=cursor: self._client.conversations_history(  # type: ignore[misc]
                    channel=channel, include_all_metadata=True, limit=200, cursor=cursor
                ),
            )
            found = _with_key(response["messages"], key)
            cursor = (response.get("response_metadata") or {}).get("next_cursor")
            if found is not None or not cursor:
                return found
        return None


def _with_key(messages: Sequence[Mapping[str, Any]], key: str) -> str | None:
    for message in messages:
        metadata = message.get("metadata") or {}
        if (metadata.get("event_payload") or {}).get("key") == key:
            return str(message["ts"])
    return None
