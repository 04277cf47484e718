"""The dashboard's middleware: who is signed in, what a read-only dashboard refuses, the
forms' CSRF tokens and the sign-in throttle, each written once and put in front of the pages
by :class:`~dq_agent.ui.app.Dashboard`, in this order::

    signed_in → read_only → form_token → sign_in_throttle → the pages

Each takes the handler after it and gives the one to put before it; a request it refuses
goes no further.
"""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import Callable

from dq_agent.escalate.endpoint import WebApp, WebRequest, WebResponse
from dq_agent.ui import pages
from dq_agent.ui.auth import FAILURE_WINDOW, Gate

__all__ = [
    "LOGIN",
    "LOGIN_COOKIE",
    "LOGOUT",
    "Middleware",
    "form_token",
    "html",
    "read_only",
    "redirect",
    "sign_in_throttle",
    "signed_in",
    "text",
]

Middleware = Callable[[WebApp], WebApp]

LOGIN = "/login"
LOGOUT = "/logout"
# The sign-in form's own token: a random cookie the form must repeat (there is no session
# yet to bind one to).
LOGIN_COOKIE = "dq_agent_login"
# Paths anyone may reach: signing in, and the icon a browser asks for on the sign-in page.
_OPEN = frozenset({LOGIN, "/favicon.ico"})


def signed_in(gate: Gate) -> Middleware:
    """Requests from a signed-in user (a session or the trusted proxy's header) go on with
    their ``user`` set; others are sent to sign in (a GET) or refused (a POST). Signing in
    and out is open to all: signing out without a session only clears the cookie."""

    def middleware(next_: WebApp) -> WebApp:
        def handle(request: WebRequest) -> WebResponse | None:
            if request.path in _OPEN or _signing_out(request):
                return next_(request)
            user, session = gate.visitor(request.headers, request.cookies)
            if user is None:
                return text(403, "sign in first") if request.method == "POST" else redirect(LOGIN)
            return next_(dataclasses.replace(request, user=user, session=session))

        return handle

    return middleware


def read_only(is_read_only: Callable[[], bool]) -> Middleware:
    """On a read-only dashboard, a form that acts is refused (signing out is not acting)."""

    def middleware(next_: WebApp) -> WebApp:
        def handle(request: WebRequest) -> WebResponse | None:
            acting = request.method == "POST" and request.path not in (LOGIN, LOGOUT)
            if acting and is_read_only():
                return text(403, "this dashboard is read-only")
            return next_(request)

        return handle

    return middleware


def form_token(gate: Gate) -> Middleware:
    """Every form posted carries the token of the page it came from, which another site
    cannot read: the session's (or the proxy's user's) form token, or on the sign-in form
    the random value of its own cookie."""

    def middleware(next_: WebApp) -> WebApp:
        def handle(request: WebRequest) -> WebResponse | None:
            if request.method != "POST":
                return next_(request)
            given = request.form.get("csrf", "")
            if request.path == LOGIN:
                nonce = request.cookies.get(LOGIN_COOKIE, "")
                if not nonce or not secrets.compare_digest(nonce, given):
                    return text(403, "the sign-in form expired or came from elsewhere: reload it")
                return next_(request)
            user, session = request.user, request.session
            if request.path == LOGOUT:  # signing out is open to all: not seen by signed_in
                user, session = gate.visitor(request.headers, request.cookies)
                if not session:
                    return next_(request)  # no session to end: nothing a forger could do
            if not given or not secrets.compare_digest(given, gate.token_of(user, session)):
                return text(403, "missing or wrong form token: reload the page and try again")
            return next_(request)

        return handle

    return middleware


def sign_in_throttle(gate: Gate, max_email: int) -> Middleware:
    """Sign-ins from an address, or for an e-mail address, that failed too often lately are
    refused without checking the token, until the failures are old enough."""

    def middleware(next_: WebApp) -> WebApp:
        def handle(request: WebRequest) -> WebResponse | None:
            if request.method != "POST" or request.path != LOGIN:
                return next_(request)
            email = request.form.get("email", "").strip()
            if len(email) > max_email or not gate.throttled(email, request.client):
                return next_(request)
            minutes = int(FAILURE_WINDOW.total_seconds()) // 60
            error = (
                "Too many failed sign-ins from this address or for this e-mail address: "
                f"try again in {minutes} minutes."
            )
            return html(
                pages.login(error, request.cookies.get(LOGIN_COOKIE, "")),
                status=429,
                headers=(("Retry-After", str(int(FAILURE_WINDOW.total_seconds()))),),
            )

        return handle

    return middleware


def _signing_out(request: WebRequest) -> bool:
    return request.method == "POST" and request.path == LOGOUT


def html(
    body: str,
    *,
    status: int = 200,
    cookie: str | None = None,
    headers: tuple[tuple[str, str], ...] = (),
) -> WebResponse:
    """A page, never cached nor framed by another site."""
    always = (("Cache-Control", "no-store"), ("X-Frame-Options", "DENY"))
    cookies = (("Set-Cookie", cookie),) if cookie else ()
    return WebResponse(status, body, headers=(*always, *headers, *cookies))


def text(status: int, message: str) -> WebResponse:
    return WebResponse(status, message, "text/plain; charset=utf-8")


def redirect(to: str, *, cookie: str | None = None) -> WebResponse:
    headers = [("Location", to)]
    if cookie:
        headers.append(("Set-Cookie", cookie))
    return WebResponse(303, "", headers=tuple(headers))
