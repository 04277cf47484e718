"""Slack through the broker: the bot token is the broker's, and it posts for a token only to
the people of the token's suites.

The broker's ``notify`` operation takes one Slack method at a time (``METHODS``): look a
person up, open their DM, post, find a posted message by its idempotency key, update one,
post an ephemeral answer, read a profile. Every person and every channel named is checked
against the suites the token covers, as the broker reads them itself: their owners, their
escalation lists, their checks' owners, and the owners of the records its own corrections
found (Salesforce's ``OwnerId``). A channel is allowed when it is one of those people's DMs
or a channel they list. The agent's side, :class:`BrokeredSlack`, offers what
:class:`~dq_agent.escalate.slack.SlackApi` offers, so the escalation code is the same in
both modes.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from dq_agent.broker.client import BrokerClient
from dq_agent.broker.tokens import Refused, Token
from dq_agent.config import Project
from dq_agent.config.models import SlackSettings
from dq_agent.errors import DqAgentError, SourceError
from dq_agent.escalate.slack import SlackApi, SlackError, SlackUser

# Each method of ``notify``, the fields it takes (besides ``method``) and which of them it
# needs; a field is text unless named in _MAY_BE_EMPTY or _LISTS.
METHODS: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    "lookup": (frozenset({"email"}), frozenset({"email"})),
    "channel": (frozenset({"recipient"}), frozenset({"recipient"})),
    "post": (
        frozenset({"channel", "text", "blocks", "key", "thread_ts"}),
        frozenset({"channel", "text", "key"}),
    ),
    "find": (frozenset({"channel", "key", "thread_ts"}), frozenset({"channel", "key"})),
    "update": (
        frozenset({"channel", "ts", "text", "blocks"}),
        frozenset({"channel", "ts", "text"}),
    ),
    "ephemeral": (frozenset({"channel", "user", "text"}), frozenset({"channel", "user", "text"})),
    "profile": (frozenset({"user"}), frozenset({"user"})),
}
NOTIFY_FIELDS = frozenset({"method"}).union(*(fields for fields, _ in METHODS.values()))
_MAY_BE_EMPTY = frozenset({"thread_ts", "blocks"})
_LISTS = frozenset({"blocks"})


def _refused(message: str, reason: str, status: int = 403) -> Refused:
    return Refused(message, status=status, reason=reason, token_id=None)


class SlackRelay:
    """The broker's side of ``notify``: the Web API with the broker's bot token, for the
    people of a token's suites only. Keeps one client per Slack app (its look-ups cached)."""

    def __init__(self) -> None:
        self._apis: dict[tuple[str, str | None], SlackApi] = {}
        # Owners of records behind the suites' findings, found by the broker's own `act`.
        self._record_owners: dict[str, set[str]] = {}
        self._lock = threading.Lock()

    def met(self, owners: Iterable[tuple[str, str]]) -> None:
        """Remember (suite, e-mail) pairs of record owners the broker found."""
        with self._lock:
            for suite_id, email in owners:
                self._record_owners.setdefault(suite_id, set()).add(email.lower())

    def relay(
        self, project: Project, token: Token, body: Mapping[str, Any]
    ) -> tuple[dict[str, Any], str, str]:
        """Do one method for ``token``: its answer, the suites whose people it reached, and
        what it reached (for the audit log; never the message's text)."""
        method = body.get("method")
        if method not in METHODS:
            raise _refused(
                f"notify takes a method among {', '.join(METHODS)}; got {method!r}",
                "bad_request",
                400,
            )
        args = self._arguments(method, body)
        people = self._people(project, token)
        api = self._api(project.settings.slack)
        if method in ("lookup", "channel"):
            person = args["email" if method == "lookup" else "recipient"]
            suites = people.get(person.lower())
            if suites is None:
                raise self._outside(token, f"{person!r} is not", "not_their_person")
            if method == "lookup":
                user = api.user(person)
                return {"id": user.id, "email": user.email, "tz": user.tz}, suites, person
            return {"channel": api.channel_for(person)}, suites, person
        if method == "profile":
            email = api.email_of(args["user"])
            suites = people.get(email.lower()) if email else None
            if suites is None:  # who someone outside the suites is, is not the token's to know
                return {"email": None, "name": None}, "", f"profile {args['user']}: not theirs"
            return {"email": email, "name": api.name_of(args["user"])}, suites, email or ""
        channel = args["channel"]
        suites = self._suites_of_channel(api, people, channel)
        if suites is None:
            raise self._outside(
                token, f"channel {channel} is not a DM or channel of", "not_their_channel"
            )
        target = f"{method} {channel}"
        if method == "post":
            ts = api.post(
                channel,
                args["text"],
                args.get("blocks"),
                key=args["key"],
                thread_ts=args.get("thread_ts"),
            )
            return {"ts": ts}, suites, f"{target} ts {ts}"
        if method == "find":
            found = api.find(channel, args["key"], thread_ts=args.get("thread_ts"))
            return {"ts": found}, suites, target
        if method == "update":
            api.update(channel, args["ts"], args["text"], args.get("blocks"))
            return {}, suites, f"{target} ts {args['ts']}"
        api.ephemeral(channel, args["user"], args["text"])
        return {}, suites, target

    def _arguments(self, method: str, body: Mapping[str, Any]) -> dict[str, Any]:
        fields, needed = METHODS[method]
        extra = sorted(set(body) - fields - {"method"})
        if extra:
            raise _refused(
                f"notify {method} takes only {', '.join(sorted(fields))}; refused: "
                f"{', '.join(extra)}",
                "unexpected_fields",
                400,
            )
        args = {name: body.get(name) for name in fields}
        for name, value in args.items():
            if value is None and name not in needed:
                continue
            kind = list if name in _LISTS else str
            if not isinstance(value, kind) or (
                kind is str and not value and name not in _MAY_BE_EMPTY
            ):
                raise _refused(
                    f"notify {method}: {name} is missing or not a {kind.__name__}",
                    "bad_request",
                    400,
                )
        return args

    def _people(self, project: Project, token: Token) -> dict[str, str]:
        """The people and channels of the token's suites, lower-cased, each with the suites
        (comma-joined) that name them."""
        named: dict[str, list[str]] = {}
        with self._lock:
            record_owners = {s: sorted(e) for s, e in self._record_owners.items()}
        for suite_id, suite in project.suites.items():
            if not token.allows_suite(suite_id):
                continue
            checks = [person for spec in suite.checks for person in spec.owner or ()]
            for person in {
                p.lower()
                for p in [
                    *suite.owner,
                    *suite.escalation,
                    *checks,
                    *record_owners.get(suite_id, ()),
                ]
            }:
                named.setdefault(person, []).append(suite_id)
        return {person: ",".join(suites) for person, suites in named.items()}

    def _suites_of_channel(
        self, api: SlackApi, people: Mapping[str, str], channel: str
    ) -> str | None:
        """The suites one of whose people has ``channel`` as DM or lists it as a channel."""
        for person in sorted(people):
            try:
                if api.channel_for(person) == channel:
                    return people[person]
            except SlackError as exc:
                if exc.transient:
                    raise
                # Someone not in this Slack (or a channel gone) has no channel to match.
        return None

    def _outside(self, token: Token, what: str, reason: str) -> Refused:
        return _refused(
            f"{what} one of the people of the suites token {token.id} covers "
            f"({', '.join(token.suites)}): their owners, escalation lists and record owners",
            reason,
        )

    def _api(self, settings: SlackSettings | None) -> SlackApi:
        if settings is None or settings.token is None:
            raise DqAgentError(
                "the broker's project has no slack: section with a token: it cannot notify"
            )
        key = (settings.bot_token(), settings.base_url)
        with self._lock:
            api = self._apis.get(key)
            if api is None:
                api = self._apis[key] = SlackApi(settings)
            return api


class BrokeredSlack:
    """Slack for an agent with a broker: each call is the broker's ``notify``, which holds
    the bot token and reaches only the people of the token's suites. Look-ups are cached
    here as :class:`SlackApi` caches them; Slack's pace is kept by the broker."""

    def __init__(self, client: BrokerClient) -> None:
        self._client = client
        # The broker waits out Slack's rate limits; the agent does not see them.
        self.rate_limit_waits = 0
        self.rate_limit_wait_s = 0.0
        self.paced_s = 0.0
        self._users: dict[str, SlackUser] = {}
        self._channels: dict[str, str] = {}
        self._profiles: dict[str, dict[str, Any]] = {}

    def _ask(self, method: str, *, once: bool = False, **args: Any) -> dict[str, Any]:
        try:
            return self._client.call("notify", {"method": method, **args}, once=once)
        except SourceError as exc:
            raise SlackError(str(exc), transient=exc.transient) from exc

    def user(self, email: str) -> SlackUser:
        key = email.lower()
        if key not in self._users:
            answer = self._ask("lookup", email=email)
            self._users[key] = SlackUser(str(answer["id"]), email, answer.get("tz"))
        return self._users[key]

    def email_of(self, user_id: str) -> str | None:
        return self._profile(user_id).get("email")

    def name_of(self, user_id: str) -> str | None:
        return self._profile(user_id).get("name")

    def _profile(self, user_id: str) -> dict[str, Any]:
        if user_id not in self._profiles:
            self._profiles[user_id] = self._ask("profile", user=user_id)
        return self._profiles[user_id]

    def channel_for(self, recipient: str) -> str:
        if recipient not in self._channels:
            self._channels[recipient] = str(self._ask("channel", recipient=recipient)["channel"])
        return self._channels[recipient]

    def post(
        self,
        channel: str,
        text: str,
        blocks: Sequence[Mapping[str, Any]] | None,
        *,
        key: str,
        thread_ts: str | None = None,
    ) -> str:
        # Sent once: after a dropped connection the outbox looks for it (find) before
        # posting again, as it does without a broker.
        answer = self._ask(
            "post",
            once=True,
            channel=channel,
            text=text,
            blocks=[dict(b) for b in blocks] if blocks is not None else None,
            key=key,
            thread_ts=thread_ts,
        )
        return str(answer["ts"])

    def update(
        self, channel: str, ts: str, text: str, blocks: Sequence[Mapping[str, Any]] | None
    ) -> None:
        self._ask(
            "update", channel=channel, ts=ts, text=text, blocks=[dict(b) for b in blocks or []]
        )

    def ephemeral(self, channel: str, user_id: str, text: str) -> None:
        self._ask("ephemeral", once=True, channel=channel, user=user_id, text=text)

    def find(self, channel: str, key: str, *, thread_ts: str | None = None) -> str | None:
        found = self._ask("find", channel=channel, key=key, thread_ts=thread_ts)["ts"]
        return None if found is None else str(found)
