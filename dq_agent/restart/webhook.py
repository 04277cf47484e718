"""``type: webhook`` — POST a JSON body to an HTTP endpoint that reruns a pipeline.

The request
    ``POST <url>`` with ``Content-Type: application/json``, the connector's headers,
    ``Idempotency-Key: <key>``, and the body ``{**body, "idempotency_key": <key>}`` as compact
    JSON with sorted keys (so the same restart always sends the same bytes).

The signature, when the connector has a ``secret``
    ``X-Dq-Agent-Timestamp: <unix seconds>`` and
    ``X-Dq-Agent-Signature: sha256=<hex HMAC-SHA256>`` where the HMAC, keyed with the secret,
    covers ``f"{timestamp}.".encode() + body`` — the timestamp, a dot, then the exact body
    bytes. A receiver recomputes it over the raw body (before parsing any JSON), compares with
    ``hmac.compare_digest``, and rejects old timestamps so a captured request cannot be
    replayed later.

The answer
    Any 2xx means the restart was accepted. A JSON answer may name the run (``run_id`` or
    ``id``; else the idempotency key is its id) and may give a ``status_url``: then the run is
    ``running`` and :meth:`WebhookTarget.poll` GETs that URL, which answers
    ``{"state": "queued"|"running"|"success"|"failed", "detail": "..."}``. Without a
    ``status_url`` the accepted restart counts as a success at once.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable
from typing import Any, get_args

import requests

from dq_agent.config.models import WebhookConnector, WebhookRestart
from dq_agent.restart.base import PipelineRun, RestartError, RunState

__all__ = ["SIGNATURE_HEADER", "TIMESTAMP_HEADER", "WebhookTarget", "sign"]

SIGNATURE_HEADER = "X-Dq-Agent-Signature"
TIMESTAMP_HEADER = "X-Dq-Agent-Timestamp"
_STATES: frozenset[str] = frozenset(get_args(RunState))


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The ``X-Dq-Agent-Signature`` value for ``body`` sent at ``timestamp``."""
    message = f"{timestamp}.".encode() + body
    digest = hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


class WebhookTarget:
    """Restarts a pipeline by POSTing to a webhook; follows it when the answer says where."""

    def __init__(
        self,
        name: str,
        connector: WebhookConnector,
        spec: WebhookRestart,
        *,
        session: requests.Session | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._connector = connector
        self._spec = spec
        self._owns_session = session is None
        self._session = session or requests.Session()
        self._clock = clock
        self.label = f"webhook {name}"

    def close(self) -> None:
        """Close the HTTP connections this target opened (not a session it was given)."""
        if self._owns_session:
            self._session.close()

    def start(self, key: str) -> PipelineRun:
        payload = {**self._spec.body, "idempotency_key": key}
        body = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode("utf-8")
        headers = {
            **self._connector.headers,
            "Content-Type": "application/json",
            "Idempotency-Key": key,
        }
        if self._connector.secret is not None:
            timestamp = int(self._clock())
            secret = self._connector.secret.get_secret_value()
            headers[TIMESTAMP_HEADER] = str(timestamp)
            headers[SIGNATURE_HEADER] = sign(secret, timestamp, body)
        # ``data=`` rather than ``json=``: the bytes sent must be the bytes signed.
        answer = self._call("POST", self._connector.url, data=body, headers=headers)
        run_id = _text(answer.get("run_id")) or _text(answer.get("id")) or key
        status_url = _text(answer.get("status_url"))
        if status_url:
            # The status URL doubles as the run's link: it is all poll needs, and it survives
            # in a stored run across a restart of the agent.
            detail = _text(answer.get("detail")) or "accepted; following its status_url"
            return PipelineRun(run_id, "running", detail, url=status_url)
        detail = _text(answer.get("detail")) or "the webhook accepted the restart"
        return PipelineRun(run_id, "success", detail, url=_text(answer.get("url")) or None)

    def poll(self, run: PipelineRun) -> PipelineRun:
        if run.done or not run.url:
            return run
        answer = self._call("GET", run.url, headers=dict(self._connector.headers))
        state = answer.get("state")
        if state not in _STATES:
            raise RestartError(
                f"the webhook's status_url answered state {state!r}; expected one of "
                f"{', '.join(sorted(_STATES))}",
                transient=False,
            )
        detail = _text(answer.get("detail"))
        return run.moved(state, detail)

    def _call(self, method: str, url: str, **kwargs: Any) -> dict[str, Any]:
        """The answer's JSON object ({} for an empty or non-JSON 2xx answer)."""
        try:
            response = self._session.request(method, url, timeout=self._connector.timeout, **kwargs)
        except (requests.Timeout, requests.ConnectionError) as exc:
            raise RestartError(
                f"cannot reach the webhook: {exc.__class__.__name__}", transient=True
            ) from exc
        except requests.RequestException as exc:
            raise RestartError(f"webhook request failed: {exc}", transient=False) from exc
        if not response.ok:
            status = response.status_code
            message = _message(response)
            text = f"webhook {status}: {message}" if message else f"webhook error {status}"
            raise RestartError(text, transient=status == 429 or status >= 500)
        try:
            body = response.json() if response.content else {}
        except ValueError:
            # A receiver that answers "OK" in plain text has still accepted the restart.
            return {}
        return body if isinstance(body, dict) else {}


def _text(value: Any) -> str:
    return "" if value is None or isinstance(value, dict | list) else str(value)


def _message(response: requests.Response) -> str:
    """What the receiver said about the error: a JSON error/message/detail, else the body."""
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:200]
    if isinstance(body, dict):
        for name in ("error", "message", "detail"):
            if body.get(name):
                return str(body[name])[:200]
    return "" if body is None else str(body)[:200]
