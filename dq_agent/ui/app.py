"""The dashboard: every suite, incident, correction and monitor the agent knows, and the
buttons to act on them, served by the daemon (or ``dq-agent ui``) from the state store.

Viewing needs a signed-in user; acting needs one on the suite's owner or escalation list,
the same rule as Slack's buttons, through the same :class:`~dq_agent.escalate.actions.Actions`,
so every action is recorded with the user's identity as a Slack click would be.
"""

from __future__ import annotations

import re
import secrets
import threading
from collections.abc import Callable, Mapping
from contextlib import nullcontext
from datetime import UTC, datetime, timedelta
from html import escape
from typing import Any
from urllib.parse import quote, urlencode
from zoneinfo import ZoneInfo

from dq_agent.checks.column_anomaly import RATES
from dq_agent.checks.volume import detect
from dq_agent.config.loader import Project
from dq_agent.config.models import VolumeAnomalyArgs
from dq_agent.config.schedule import cron_trigger
from dq_agent.engine import RunOptions
from dq_agent.errors import DqAgentError
from dq_agent.escalate import messages
from dq_agent.escalate.actions import REJECT, RESOLVE, Actions
from dq_agent.escalate.endpoint import WebRequest, WebResponse
from dq_agent.escalate.slack import SlackApi
from dq_agent.store import Store
from dq_agent.store.ledger import RUNBOOK_FIX
from dq_agent.ui import pages
from dq_agent.ui.auth import FAILURE_WINDOW, MAX_EMAIL, SESSION_COOKIE, Gate
from dq_agent.ui.charts import ChartPoint, render_chart

# The login form's own token: a random cookie the form must repeat (there is no session yet).
LOGIN_COOKIE = "dq_agent_login"
TIMELINE_DAYS = 7
CHART_BUCKETS = 60
# Checks that record each metric with its band (name, name.lower, name.upper) on every run.
BANDED_METRICS = frozenset({"column_anomaly", "distribution_shift"})
# Ids are the database's integers: 1 to 2**31 - 1 (a larger one is nothing we know of).
MAX_ID = 2**31 - 1
_INCIDENT = re.compile(r"^/incidents/([0-9]+)$")
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
        slack: SlackApi | None = None,
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

    @property
    def read_only(self) -> bool:
        return self._project().settings.ui.read_only

    def handle(self, request: WebRequest) -> WebResponse | None:
        # Users and their settings as last (re)loaded: a user removed from dq-agent.yml is
        # signed out at the daemon's next reload, not at its next restart.
        self.gate.settings = self._project().settings.ui
        if request.path == "/login":
            return self._login(request)
        if request.path == "/favicon.ico":
            return None
        if request.path == "/logout" and request.method == "POST":
            return self._logout(request)
        user = self.gate.identify(request.headers, request.cookies)
        if user is None:
            if request.method == "POST":
                return _text(403, "sign in first")
            return _redirect("/login")
        if request.method == "POST":
            return self._post(request, user)
        return self._get(request, user)

    # -- signing in ------------------------------------------------------------------------

    def _login(self, request: WebRequest) -> WebResponse:
        if request.method == "GET":
            # Kept while the browser has one: another tab (or a favicon request redirected
            # here) must not invalidate a form already on screen.
            nonce = request.cookies.get(LOGIN_COOKIE) or secrets.token_urlsafe(16)
            body = pages.login(None, nonce)
            return _html(
                pages.page("Sign in", body, user=None, flash={}),
                cookie=f"{LOGIN_COOKIE}={nonce}; HttpOnly; SameSite=Strict; Path=/login",
            )
        nonce = request.cookies.get(LOGIN_COOKIE, "")
        if not nonce or not secrets.compare_digest(nonce, request.form.get("csrf", "")):
            return _text(403, "the sign-in form expired or came from elsewhere: reload it")
        email = request.form.get("email", "").strip()
        if len(email) > MAX_EMAIL:
            return _text(400, f"the e-mail address is longer than {MAX_EMAIL} characters")
        if self.gate.throttled(email, request.client):
            minutes = int(FAILURE_WINDOW.total_seconds()) // 60
            body = pages.login(
                f"Too many failed sign-ins from this address or for this e-mail address: "
                f"try again in {minutes} minutes.",
                nonce,
            )
            return _html(
                pages.page("Sign in", body, user=None, flash={}),
                status=429,
                headers=(("Retry-After", str(int(FAILURE_WINDOW.total_seconds()))),),
            )
        session = self.gate.sign_in(email, request.form.get("token", ""), request.client)
        if session is None:
            body = pages.login("Unknown e-mail address or wrong token.", nonce)
            return _html(pages.page("Sign in", body, user=None, flash={}), status=401)
        max_age = int(self._project().settings.ui.session_ttl.total_seconds())
        cookie = f"{SESSION_COOKIE}={session}; HttpOnly; SameSite=Lax; Path=/; Max-Age={max_age}"
        return _redirect("/", cookie=cookie)

    def _logout(self, request: WebRequest) -> WebResponse:
        signed_out = _redirect("/login", cookie=f"{SESSION_COOKIE}=; Max-Age=0; Path=/")
        if self.gate.session(request.cookies) is None:
            return signed_out  # nothing to end (expired, or already signed out)
        if not self.gate.form_token_ok(
            request.form.get("csrf", ""), request.headers, request.cookies
        ):
            return _text(403, "missing or wrong form token: reload the page and try again")
        self.gate.sign_out(request.cookies)
        return signed_out

    # -- acting ----------------------------------------------------------------------------

    def _post(self, request: WebRequest, user: str) -> WebResponse:
        if self.read_only:
            return _text(403, "this dashboard is read-only")
        if not self.gate.form_token_ok(
            request.form.get("csrf", ""), request.headers, request.cookies
        ):
            return _text(403, "missing or wrong form token: reload the page and try again")
        try:
            back, act = self._action(request)
        except (ValueError, KeyError):
            return _text(400, "the form is incomplete: reload the page and try again")
        if act is None:
            return _text(404, "not found")
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
            incident, verb = _id(found[1]), form["action"]
            if incident is None:
                return request.path, None
            value: dict[str, Any] = {"incident": incident}
            if verb in ("approve", "reject"):
                correction = _id(form["correction"])
                if correction is None:
                    raise ValueError(f"not a correction: {form['correction']!r}")
                value["correction"] = correction

            def on_incident(actions: Actions, user: str) -> str:
                actions.act(_INCIDENT_ACTIONS[verb], value, user)
                return f"{verb}: done"

            return request.path, on_incident
        found = _REVERT.match(request.path)
        if found:
            correction = _id(found[1])
            if correction is None:
                return "/corrections", None

            def revert(actions: Actions, user: str) -> str:
                actions.act(messages.UNDO, {"correction": correction}, user)
                after = self.store.correction(correction)
                return f"correction {correction}: {after.status if after else 'unknown'}"

            return "/corrections", revert
        if request.path == "/monitors/expected":

            def expected(actions: Actions, user: str) -> str:
                bucket = datetime.fromisoformat(form["bucket"])
                actions.mark_expected(form["suite"], form["check"], bucket, user)
                return f"{form['check']}: the bucket of {bucket:%Y-%m-%d %H:%M} is expected"

            return f"/monitors#{quote(form.get('check', ''))}", expected
        return "/", None

    def _actions(self) -> Actions:
        return Actions(self._project(), self.store, self.slack, self.options)

    # -- pages -----------------------------------------------------------------------------

    def _get(self, request: WebRequest, user: str) -> WebResponse | None:
        token = self.gate.form_token(request.headers, request.cookies)
        csrf = None if self.read_only else token
        # Signing out is allowed on a read-only dashboard too.
        sign_out = token if self.gate.session(request.cookies) else None
        flash = {k: v for k, v in request.query.items() if k in ("done", "error")}
        view: tuple[str, str] | None = None
        if request.path == "/":
            view = "Overview", self._overview()
        elif request.path == "/corrections":
            view = "Corrections", self._corrections(csrf)
        elif request.path == "/monitors":
            view = "Monitors", self._monitors(csrf)
        elif found := _INCIDENT.match(request.path):
            incident = _id(found[1])
            body = self._incident(incident, csrf) if incident is not None else None
            if body is None:
                return _text(404, f"no incident {found[1]}")
            view = f"Incident #{found[1]}", body
        if view is None:
            return None
        return _html(pages.page(view[0], view[1], user=user, flash=flash, sign_out=sign_out))

    def _overview(self) -> str:
        project, now = self._project(), self.options.clock()
        history = self.store.suite_history(since=now - timedelta(days=TIMELINE_DAYS))
        open_by_suite: dict[str, list[dict[str, Any]]] = {}
        for incident in self.store.incidents(active=True, events=False):
            open_by_suite.setdefault(incident["suite"], []).append(incident)
        rows = []
        for suite_id in [*project.suites, *project.broken_suites]:
            runs = history.get(suite_id, [])
            suite = project.suites.get(suite_id)
            next_run = None
            if suite is not None and suite.schedule:
                next_run = cron_trigger(suite.schedule, suite.timezone).get_next_fire_time(
                    None, now
                )
            incidents = " ".join(
                f'<a href="/incidents/{i["id"]}">#{i["id"]} {escape(i["check"])}</a>'
                for i in open_by_suite.get(suite_id, [])
            )
            rows.append(
                [
                    escape(suite_id)
                    + ("" if suite else ' <span class="error">(invalid configuration)</span>'),
                    pages.status(runs[-1][1] if runs else None),
                    pages.when(runs[-1][0] if runs else None),
                    pages.when(next_run.astimezone(UTC) if next_run else None),
                    incidents or '<span class="muted">none</span>',
                    pages.timeline(runs),
                ]
            )
        suites = pages.table(
            ["Suite", "Status", "Last run", "Next run", "Open incidents", "Last 7 days"],
            rows,
            empty="No suites in this project.",
        )
        recent = self.store.incidents(events=False)[:20]
        incidents = pages.table(
            ["Incident", "Suite / check", "Status", "Owners", "Opened", "Summary"],
            (
                [
                    f'<a href="/incidents/{i["id"]}">#{i["id"]}</a>',
                    escape(f"{i['suite']} / {i['check']}"),
                    escape(i["status"]),
                    escape(", ".join(i["owners"])),
                    pages.when(i["opened_at"]),
                    escape(i["summary"]),
                ]
                for i in recent
            ),
            empty="No incidents.",
        )
        return f"{suites}<h2>Incidents</h2>{incidents}"

    def _incident(self, incident_id: int, csrf: str | None) -> str | None:
        incident = self.store.incident(incident_id)
        if incident is None:
            return None
        project = self._project()
        evidence = incident.get("evidence") or {}
        observed = {
            k: v for k, v in (evidence.get("observed") or {}).items() if not isinstance(v, dict)
        }
        findings = pages.table(
            ["Record", "Column", "Observed", "Proposed", "Why"],
            (
                [
                    pages.link(
                        messages.record_link(project, incident["suite"], f.get("key") or {}),
                        ", ".join(f"{k}={v}" for k, v in (f.get("key") or {}).items()),
                    ),
                    escape(f.get("column") or ""),
                    pages.value(f.get("observed")),
                    pages.value(f.get("proposed")) if f.get("proposed") is not None else "",
                    escape(f.get("reason") or ""),
                ]
                for f in evidence.get("findings") or []
            ),
            empty="No record-level findings.",
        )
        chain = " → ".join(", ".join(step) for step in incident["chain"])
        buttons = ""
        if incident["status"] != "resolved":
            here = f"/incidents/{incident_id}"
            buttons = "".join(
                pages.form(here, label, csrf, {"action": verb}, style=style)
                for verb, label, style in (
                    ("resolve", "Resolve", "primary"),
                    ("snooze", "Snooze", ""),
                    ("expected", "This is expected", ""),
                )
            )
        pending = [
            c
            for c in self.store.corrections(suite=incident["suite"], status="pending")
            if c.check == incident["check"]
        ]
        corrections = pages.table(
            ["#", "Suite / check", "Record", "Change", "Evidence", "By", "Status", ""],
            (
                pages.correction_row(
                    c,
                    pages.form(
                        f"/incidents/{incident_id}",
                        "Apply fix" if c.column == RUNBOOK_FIX else "Approve",
                        csrf,
                        {"action": "approve", "correction": c.id},
                        style="primary",
                    )
                    + pages.form(
                        f"/incidents/{incident_id}",
                        "Reject",
                        csrf,
                        {"action": "reject", "correction": c.id},
                        style="danger",
                    ),
                )
                for c in pending
            ),
            empty="No corrections waiting for a decision.",
        )
        thread = pages.table(
            ["Sent", "To", "Kind", "Status", "Message"],
            (
                [
                    pages.when(m.sent_at or m.created_at),
                    escape(m.recipient),
                    escape(m.kind),
                    escape(m.status),
                    escape(m.text),
                ]
                for m in self.store.outbox(incident_id=incident_id)
            ),
            empty="Nothing sent on Slack.",
        )
        similar = pages.table(
            ["Incident", "Check", "Resolved", "How"],
            (
                [
                    f'<a href="/incidents/{s["id"]}">#{s["id"]}</a>',
                    escape(f"{s['suite']} / {s['check']}"),
                    pages.when(s.get("resolved_at")),
                    escape(_resolution(s.get("resolution"))),
                ]
                for s in self.store.similar(incident)
            ),
            empty="No similar incidents resolved before.",
        )
        return (
            f'<div class="card"><p><strong>{escape(incident["suite"])} / '
            f"{escape(incident['check'])}</strong> · {escape(incident['status'])}</p>"
            f"<p>{escape(incident['summary'])}</p>"
            f"<p>Owners: {escape(', '.join(incident['owners']))}<br>Escalation: {escape(chain)}"
            f"<br>Reminders sent: {incident['nudges']} · opened {pages.when(incident['opened_at'])}"
            f"</p><p>{buttons}</p></div>"
            f"<h2>Evidence</h2><pre>{pages.value(observed)}</pre>{findings}"
            f"<h2>Corrections waiting</h2>{corrections}"
            f"<h2>Slack thread</h2>{thread}"
            f"<h2>History</h2>{pages.events(incident['events'])}"
            f"<h2>Similar incidents</h2>{similar}"
        )

    def _corrections(self, csrf: str | None) -> str:
        problems = self.store.verify_ledger()
        corrections = self.store.corrections()
        if problems:
            chain = '<div class="flash bad" role="alert">Ledger hash chain broken: ' + "; ".join(
                escape(p) for p in problems
            )
        else:
            chain = (
                f'<div class="flash ok" id="ledger-status">Ledger hash chain intact: '
                f"{len(corrections)} correction{'s' if len(corrections) != 1 else ''}"
            )
        rows = (
            pages.correction_row(
                c,
                pages.form(f"/corrections/{c.id}/revert", "Revert", csrf, style="danger")
                if c.status == "applied"
                else "",
            )
            for c in corrections
        )
        table = pages.table(
            ["#", "Suite / check", "Record", "Change", "Evidence", "Decided by", "Status", ""],
            rows,
            empty="No corrections yet.",
        )
        return f"{chain}</div>{table}"

    def _monitors(self, csrf: str | None) -> str:
        project = self._project()
        parts = []
        for suite in project.suites.values():
            for spec in suite.checks:
                if spec.type in BANDED_METRICS:
                    parts.append(self._metric_charts(suite.suite, spec.name))
                if not isinstance(spec.args, VolumeAnomalyArgs):
                    continue
                points = self._points(suite.suite, spec.name, spec.args, suite.timezone)
                chart = render_chart(points, title=f"{suite.suite} / {spec.name}")
                flagged = pages.table(
                    ["Bucket", "Rows", "Usual", ""],
                    (
                        [
                            escape(p.label),
                            f"{p.value:,.0f}",
                            f"{p.lower or 0:,.0f}–{p.upper or 0:,.0f}",
                            pages.form(
                                "/monitors/expected",
                                "Mark expected",
                                csrf,
                                {
                                    "suite": suite.suite,
                                    "check": spec.name,
                                    "bucket": p.start.isoformat(),
                                },
                            ),
                        ]
                        for p in points
                        if p.outcome == "anomaly"
                    ),
                    empty="No flagged buckets.",
                )
                parts.append(
                    f'<section class="card" id="{escape(spec.name)}"><h2>'
                    f"{escape(suite.suite)} / {escape(spec.name)}</h2>{chart}{flagged}</section>"
                )
        return "".join(parts) or '<p class="muted">No time-bucketed checks in this project.</p>'

    def _metric_charts(self, suite: str, check: str) -> str:
        """A chart per metric the check recorded with its band, one point per run."""
        recorded = self.store.check_metrics(suite, check)
        charts = []
        for name, values in recorded.items():
            if "." in name or f"{name}.upper" not in recorded:
                continue
            lower, upper = recorded.get(f"{name}.lower", {}), recorded[f"{name}.upper"]
            points = []
            for at, value in list(values.items())[-CHART_BUCKETS:]:
                low, high = lower.get(at), upper.get(at)
                outside = value is not None and (
                    (high is not None and value > high) or (low is not None and value < low)
                )
                points.append(
                    ChartPoint(
                        start=at,
                        label=f"{at:%Y-%m-%d %H:%M}",
                        value=float(value or 0.0),
                        lower=low if low is not None else (0.0 if high is not None else None),
                        upper=high,
                        outcome="anomaly" if outside else "normal",
                    )
                )
            share = name in RATES or name.startswith("share_")
            chart = render_chart(
                points, title=f"{suite} / {check}: {name}, run by run", unit="", percent=share
            )
            charts.append(f"<h3>{escape(name.replace('_', ' '))}</h3>{chart}")
        if not charts:
            return ""
        return (
            f'<section class="card" id="{escape(check)}"><h2>{escape(suite)} / '
            f'{escape(check)}</h2>{"".join(charts)}<p class="muted">One point per run: what '
            "the run judged (its last complete bucket) and the band it judged it by. Mark a day "
            "expected from its incident.</p></section>"
        )

    def _points(
        self, suite: str, check: str, args: VolumeAnomalyArgs, timezone: str
    ) -> list[ChartPoint]:
        series = self.store.bucket_history(suite, check)
        expected = self.store.expected_buckets(suite, check)
        zone = ZoneInfo(args.timezone or timezone)
        points = []
        for bucket in sorted(series)[-CHART_BUCKETS:]:
            found = detect(series, bucket, args, zone=zone, expected=expected)
            points.append(
                ChartPoint(
                    start=bucket,
                    label=found.label,
                    value=float(found.rows),
                    lower=found.lower,
                    upper=found.upper,
                    outcome=found.outcome,
                )
            )
        return points


def _id(text: str) -> int | None:
    """A database id written in ``text`` (ASCII digits), or None when it cannot be one."""
    text = text.strip().lstrip("0")
    if not text.isascii() or not text.isdigit() or len(text) > len(str(MAX_ID)):
        return None
    number = int(text)
    return number if number <= MAX_ID else None


def _resolution(resolution: Mapping[str, Any] | None) -> str:
    if not resolution:
        return ""
    return ", ".join(f"{k}: {v}" for k, v in resolution.items() if v is not None)


def _html(
    body: str,
    *,
    status: int = 200,
    cookie: str | None = None,
    headers: tuple[tuple[str, str], ...] = (),
) -> WebResponse:
    always = (("Cache-Control", "no-store"), ("X-Frame-Options", "DENY"))
    cookies = (("Set-Cookie", cookie),) if cookie else ()
    return WebResponse(status, body, headers=(*always, *headers, *cookies))


def _text(status: int, text: str) -> WebResponse:
    return WebResponse(status, text, "text/plain; charset=utf-8")


def _redirect(
    to: str, *, cookie: str | None = None, done: str | None = None, error: str | None = None
) -> WebResponse:
    path, _, fragment = to.partition("#")
    flash = {k: v for k, v in (("done", done), ("error", error)) if v}
    location = (
        path + (f"?{urlencode(flash)}" if flash else "") + (f"#{fragment}" if fragment else "")
    )
    headers = [("Location", location)]
    if cookie:
        headers.append(("Set-Cookie", cookie))
    return WebResponse(303, "", headers=tuple(headers))
