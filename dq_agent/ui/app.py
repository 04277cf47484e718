"""The dashboard: every suite, incident, correction and monitor the agent knows, and the
buttons to act on them, served by the daemon (or ``dq-agent ui``) from the state store.

Viewing needs a signed-in user; acting needs one on the suite's owner or escalation list,
the same rule as Slack's buttons, through the same :class:`~dq_agent.escalate.actions.Actions`,
so every action is recorded with the user's identity as a Slack click would be.
"""

from __future__ import annotations

import logging
import re
import secrets
import threading
from collections.abc import Callable
from contextlib import nullcontext
from datetime import datetime
from typing import Any
from urllib.parse import quote, unquote, urlencode

from markupsafe import Markup

from dq_agent.config.loader import Project
from dq_agent.engine import RunOptions
from dq_agent.errors import DqAgentError
from dq_agent.escalate import messages
from dq_agent.escalate.actions import REJECT, RESOLVE, Actions
from dq_agent.escalate.endpoint import WebApp, WebRequest, WebResponse
from dq_agent.escalate.slack import Slack, SlackError
from dq_agent.store import Store
from dq_agent.ui import corrections, incident, middleware, monitors, overview, pages, suite
from dq_agent.ui.auth import MAX_EMAIL, SESSION_COOKIE, Gate
from dq_agent.ui.middleware import LOGIN, LOGIN_COOKIE, LOGOUT, html, redirect, text

__all__ = ["LOGIN_COOKIE", "Dashboard"]

log = logging.getLogger(__name__)

# Ids are the database's integers: 1 to 2**31 - 1 (a larger one is nothing we know of).
MAX_ID = 2**31 - 1
_INCIDENT = re.compile(r"^/incidents/([0-9]+)$")
_SUITE = re.compile(r"^/suites/([^/]+)$")
_REVERT = re.compile(r"^/corrections/([0-9]+)/revert$")
_INCIDENT_ACTIONS = {
    "approve": messages.APPROVE,
    "reject": REJECT,
    "resolve": RESOLVE,
    "snooze": messages.SNOOZE,
    "expected": messages.EXPECTED,
}


class Dashboard:
    """Answers the dashboard's requests for one project and state store."""

    def __init__(
        self,
        project: Callable[[], Project],
        store: Store,
        options: RunOptions,
        slack: Slack | None = None,
        *,
        lock: threading.Lock | None = None,
    ) -> None:
        self._project = project
        self.store = store
        self.options = options
        self.slack = slack
        # The daemon's: an action and an agent cycle never run at once.
        self._lock = lock
        self.gate = Gate(project().settings.ui, store, options.clock)
        self._overview = overview.Overview(store)
        self._handle: WebApp = self._route
        for wrap in reversed(
            (
                middleware.signed_in(self.gate),
                middleware.read_only(lambda: self.read_only),
                middleware.form_token(self.gate),
                middleware.sign_in_throttle(self.gate, MAX_EMAIL),
            )
        ):
            self._handle = wrap(self._handle)

    @property
    def read_only(self) -> bool:
        return self._project().settings.ui.read_only

    def handle(self, request: WebRequest) -> WebResponse | None:
        # Users and their settings as last (re)loaded: a user removed from dq-agent.yml is
        # signed out at the daemon's next reload, not at its next restart.
        self.gate.settings = self._project().settings.ui
        return self._handle(request)

    def _route(self, request: WebRequest) -> WebResponse | None:
        if request.path == LOGIN:
            return self._login(request)
        if request.path == "/favicon.ico":
            return None
        if request.path == LOGOUT and request.method == "POST":
            return self._logout(request)
        assert request.user is not None  # the signed_in middleware let it through
        if request.method == "POST":
            return self._post(request, request.user)
        return self._get(request, request.user)

    # -- signing in ------------------------------------------------------------------------

    def _login(self, request: WebRequest) -> WebResponse:
        nonce = request.cookies.get(LOGIN_COOKIE)
        if request.method == "GET":
            # Kept while the browser has one: another tab (or a favicon request redirected
            # here) must not invalidate a form already on screen.
            nonce = nonce or secrets.token_urlsafe(16)
            return html(
                pages.login(None, nonce),
                cookie=f"{LOGIN_COOKIE}={nonce}; HttpOnly; SameSite=Strict; Path=/login",
            )
        email = request.form.get("email", "").strip()
        if len(email) > MAX_EMAIL:
            return text(400, f"the e-mail address is longer than {MAX_EMAIL} characters")
        session = self.gate.sign_in(email, request.form.get("token", ""), request.client)
        if session is None:
            error = "Unknown e-mail address or wrong token."
            return html(pages.login(error, nonce or ""), status=401)
        max_age = int(self._project().settings.ui.session_ttl.total_seconds())
        cookie = f"{SESSION_COOKIE}={session}; HttpOnly; SameSite=Lax; Path=/; Max-Age={max_age}"
        return redirect("/", cookie=cookie)

    def _logout(self, request: WebRequest) -> WebResponse:
        # Without a session (expired, or already signed out) there is nothing to end.
        self.gate.sign_out(request.cookies)
        return redirect(LOGIN, cookie=f"{SESSION_COOKIE}=; Max-Age=0; Path=/")

    # -- acting ----------------------------------------------------------------------------

    def _post(self, request: WebRequest, user: str) -> WebResponse:
        try:
            back, act = self._action(request)
        except (ValueError, KeyError):
            return text(400, "the form is incomplete: reload the page and try again")
        if act is None:
            return text(404, "not found")
        try:
            with self._lock or nullcontext():
                done = act(self._actions(), user)
        except (DqAgentError, ValueError, KeyError) as exc:
            return _redirect(back, error=str(exc))
        return _redirect(back, done=done)

    def _action(self, request: WebRequest) -> tuple[str, Callable[[Actions, str], str] | None]:
        form = request.form
        found = _INCIDENT.match(request.path)
        if found and form.get("action") in _INCIDENT_ACTIONS:
            incident_id, verb = _id(found[1]), form["action"]
            if incident_id is None:
                return request.path, None
            value: dict[str, Any] = {"incident": incident_id}
            if verb in ("approve", "reject"):
                correction = _id(form["correction"])
                if correction is None:
                    raise ValueError(f"not a correction: {form['correction']!r}")
                value["correction"] = correction

            def on_incident(actions: Actions, user: str) -> str:
                return actions.act(_INCIDENT_ACTIONS[verb], value, user)

            return request.path, on_incident
        found = _REVERT.match(request.path)
        if found:
            correction = _id(found[1])
            if correction is None:
                return "/corrections", None

            def revert(actions: Actions, user: str) -> str:
                return actions.act(messages.UNDO, {"correction": correction}, user)

            return "/corrections", revert
        if request.path == "/monitors/expected":

            def expected(actions: Actions, user: str) -> str:
                bucket = datetime.fromisoformat(form["bucket"])
                actions.mark_expected(form["suite"], form["check"], bucket, user)
                return f"{form['check']}: the bucket of {bucket:%Y-%m-%d %H:%M} is expected"

            return f"/monitors#{quote(form.get('check', ''))}", expected
        return "/", None

    def _name_of(self, user_id: str) -> str | None:
        """A Slack user's name for the thread's mentions; None without Slack or an answer."""
        if self.slack is None:
            return None
        try:
            return self.slack.name_of(user_id)
        except SlackError as exc:
            log.info("no name for Slack user %s: %s", user_id, exc)
            return None

    def _actions(self) -> Actions:
        return Actions(self._project(), self.store, self.slack, self.options)

    # -- pages -----------------------------------------------------------------------------

    def _get(self, request: WebRequest, user: str) -> WebResponse | None:
        token = self.gate.token_of(request.user, request.session)
        csrf = None if self.read_only else token
        # Signing out is allowed on a read-only dashboard too.
        sign_out = token if request.session else None
        flash = {k: v for k, v in request.query.items() if k in ("done", "error")}
        view: tuple[str, Markup] | None = None
        project, store = self._project(), self.store
        if request.path == "/":
            view = "Overview", self._overview.render(project, self.options.clock())
        elif request.path == "/corrections":
            view = "Corrections", corrections.render(store, csrf)
        elif request.path == "/monitors":
            view = "Monitors", monitors.render(project, store, csrf)
        elif found := _INCIDENT.match(request.path):
            incident_id = _id(found[1])
            body = (
                incident.render(project, store, incident_id, csrf, self._name_of)
                if incident_id
                else None
            )
            if body is None:
                return text(404, f"no incident {found[1]}")
            view = f"Incident #{found[1]}", body
        elif found := _SUITE.match(request.path):
            suite_id = unquote(found[1])
            body = suite.render(project, store, suite_id, self.options.clock())
            if body is None:
                return text(404, f"no suite {suite_id}")
            view = f"Suite {suite_id}", body
        if view is None:
            return None
        return html(pages.page(view[0], view[1], user=user, flash=flash, sign_out=sign_out))


def _id(text: str) -> int | None:
    """A database id written in ``text`` (ASCII digits), or None when it cannot be one."""
    text = text.strip().lstrip("0")
    if not text.isascii() or not text.isdigit() or len(text) > len(str(MAX_ID)):
        return None
    number = int(text)
    return number if number <= MAX_ID else None


def _redirect(to: str, *, done: str | None = None, error: str | None = None) -> WebResponse:
    """Back to ``to`` with what was done, or what went wrong, for the page to show."""
    path, _, fragment = to.partition("#")
    flash = {k: v for k, v in (("done", done), ("error", error)) if v}
    location = (
        path + (f"?{urlencode(flash)}" if flash else "") + (f"#{fragment}" if fragment else "")
    )
    return redirect(location)
