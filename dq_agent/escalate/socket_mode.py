"""Button clicks over Slack's Socket Mode: the agent opens a WebSocket to Slack, so Slack
needs no public URL to reach it (``slack.mode: socket``).

slack-sdk's built-in ``SocketModeClient`` asks ``apps.connections.open`` (with the app-level
token, at ``slack.base_url`` when set) for a WebSocket URL and connects to it. It reconnects by
itself: at once when Slack asks (a ``disconnect`` message, a close frame); when the connection
drops, at one of its checks, made every ``ping_interval`` seconds (a connection that has not
answered a ping for four intervals, or could not be written to five checks running, is closed
and a new one opened). A failed ``apps.connections.open`` is tried again at each check after, a
fixed interval (a rate limit is waited out as ``Retry-After`` asks).

An ``interactive`` envelope is taken as the HTTP endpoint takes a request: its click is
recorded in the state store, with its id in the same transaction (the memory of requests seen,
shared by every replica), then it is acknowledged at once, then acted on by one worker thread,
in the order envelopes came (:class:`~dq_agent.escalate.endpoint.Clicks`: a process that stops
or dies leaves the clicks it has not acted on to the next one, or another replica). An envelope
seen before (Slack delivers one it has not heard acknowledged again, after a reconnect or to
another replica) is acknowledged and nothing more. When the store cannot record it, the
envelope is left unacknowledged, and Slack delivers it again.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from dq_agent.config.models import SlackSettings
from dq_agent.errors import DqAgentError
from dq_agent.escalate.endpoint import Act, Clicks
from dq_agent.escalate.slack import SlackError

if TYPE_CHECKING:
    from slack_sdk.socket_mode.builtin import SocketModeClient
    from slack_sdk.socket_mode.client import BaseSocketModeClient
    from slack_sdk.socket_mode.request import SocketModeRequest

    from dq_agent.store import Store

log = logging.getLogger(__name__)

# slack-sdk's own default: how often the connection is pinged and checked.
PING_INTERVAL_S = 5.0
# How long an envelope's id is remembered: far longer than Slack goes on delivering it again.
ENVELOPE_MEMORY = timedelta(hours=1)
# Envelope ids share the store's memory with the HTTP endpoint's request signatures.
ENVELOPE_KEY = "socket-mode-envelope:"
# What apps.connections.open answers when the token is not one that may open connections.
_BAD_TOKEN = {
    "invalid_auth",
    "not_authed",
    "not_allowed_token_type",
    "token_revoked",
    "token_expired",
    "account_inactive",
    "missing_scope",
}


def _utc_now() -> datetime:
    return datetime.now(UTC)


class SocketInteractions:
    """Takes button clicks over Socket Mode and hands each to ``act`` once, until :meth:`stop`."""

    def __init__(
        self,
        settings: SlackSettings,
        store: Store,
        act: Act,
        *,
        clock: Callable[[], datetime] = _utc_now,
        ping_interval: float = PING_INTERVAL_S,
    ) -> None:
        self._settings = settings
        self._store = store
        self._clock = clock
        self._ping_interval = ping_interval
        self._clicks = Clicks(act, store, clock=clock)
        self._client: SocketModeClient | None = None
        # Envelopes being remembered and acknowledged, not yet handed to the worker.
        self._arriving = 0
        self._arrived = threading.Condition()
        # Envelopes acted on, and those that came again and were only acknowledged.
        self.taken = 0
        self.repeated = 0

    @property
    def connected(self) -> bool:
        return self._client is not None and self._client.is_connected()

    def start(self) -> SocketInteractions:
        """Connect to Slack; raises :class:`SlackError` naming ``slack.app_token`` when Slack
        refuses it (the token itself is never shown)."""
        try:
            from slack_sdk import WebClient
            from slack_sdk.errors import SlackApiError, SlackRequestError
            from slack_sdk.socket_mode.builtin import SocketModeClient
        except ImportError as exc:  # pragma: no cover - depends on the installed extras
            raise DqAgentError(
                "slack: is configured but slack-sdk is not installed: pip install 'dq-agent[slack]'"
            ) from exc

        web = WebClient(
            base_url=self._settings.base_url or WebClient.BASE_URL, timeout=self._settings.timeout
        )
        client = SocketModeClient(
            app_token=self._settings.connection_token(),
            web_client=web,
            ping_interval=self._ping_interval,
            # One listener at a time: envelopes are remembered and queued in the order they came.
            concurrency=1,
        )
        client.socket_mode_request_listeners.append(self._on_request)
        try:
            client.connect()
        except SlackApiError as exc:
            client.close()
            code = str(exc.response.get("error", "")) if exc.response is not None else ""
            if code in _BAD_TOKEN:
                raise SlackError(
                    f"Slack refused slack.app_token ({code}): it must be the app-level token "
                    "(xapp-…) of the agent's Slack app, with the connections:write scope",
                    transient=False,
                    code=code,
                ) from None
            raise SlackError(
                f"Slack apps.connections.open: {code or exc.response.status_code}",
                transient=True,
                code=code,
            ) from None
        except (SlackRequestError, OSError) as exc:
            client.close()
            raise SlackError(f"Slack apps.connections.open: {exc}", transient=True) from exc
        if not client.is_connected():
            log.warning(
                "the Socket Mode connection to Slack failed: trying again every %ss",
                self._ping_interval,
            )
        self._client = client
        self._clicks.start()
        return self

    def drain(self) -> None:
        """Wait until every acknowledged click has been acted on."""
        with self._arrived:
            self._arrived.wait_for(lambda: self._arriving == 0)
        self._clicks.drain()

    def stop(self) -> None:
        """Close the connection (Slack keeps what comes next for the next one); act on the
        clicks already acknowledged, within a grace, and give the rest back to the store."""
        client, self._client = self._client, None
        if client is not None:
            client.auto_reconnect_enabled = False
            # The client's receiving thread waits in recv() up to 3 s, and close() waits for
            # it: shutting the socket down first wakes it at once.
            sock = client.current_session.sock if client.current_session is not None else None
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
            client.close()
        self._clicks.stop()

    def __enter__(self) -> SocketInteractions:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def _on_request(self, client: BaseSocketModeClient, request: SocketModeRequest) -> None:
        with self._arrived:
            self._arriving += 1
        try:
            self._take(client, request)
        finally:
            with self._arrived:
                self._arriving -= 1
                self._arrived.notify_all()

    def _take(self, client: BaseSocketModeClient, request: SocketModeRequest) -> None:
        if request.type != "interactive":
            # Events and slash commands are not the agent's: answered so Slack stops sending.
            self._acknowledge(client, request.envelope_id)
            return
        now = self._clock()
        try:
            first = self._clicks.accept(
                ENVELOPE_KEY + request.envelope_id,
                request.payload,
                at=now,
                until=now + ENVELOPE_MEMORY,
            )
        except DqAgentError as exc:
            log.error(
                "cannot record a Slack envelope (%s): left unacknowledged, so Slack delivers "
                "it again",
                exc,
            )
            return
        if not first:
            self.repeated += 1
            self._acknowledge(client, request.envelope_id)
            log.info("Slack delivered envelope %s again: not acted on twice", request.envelope_id)
            return
        self.taken += 1
        self._acknowledge(client, request.envelope_id)  # at once: acting may take long

    def _acknowledge(self, client: BaseSocketModeClient, envelope_id: str) -> None:
        from slack_sdk.errors import SlackClientError
        from slack_sdk.socket_mode.response import SocketModeResponse

        try:
            client.send_socket_mode_response(SocketModeResponse(envelope_id=envelope_id))
        except (SlackClientError, OSError) as exc:
            # It is remembered: when Slack delivers it again, it is acknowledged then.
            log.warning("could not acknowledge Slack envelope %s: %s", envelope_id, exc)
