"""Signing in to the dashboard, sessions, the proxy header and read-only mode, without a
browser (tests/test_ui.py drives the pages in Chromium)."""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from dq_agent.config import load_project
from dq_agent.config.models import UiSettings, UiUser
from dq_agent.engine import RunOptions
from dq_agent.escalate.endpoint import WebRequest, WebResponse
from dq_agent.store import Store
from dq_agent.ui.app import LOGIN_COOKIE, Dashboard
from dq_agent.ui.auth import SESSION_COOKIE, Gate, hash_token, token_matches
from tests.helpers import make_project

NOON = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
ANA = "ana@acme.com"


class Clock:
    def __init__(self) -> None:
        self.at = NOON

    def __call__(self) -> datetime:
        return self.at


@pytest.fixture
def store(sqlite_url: str) -> Iterator[Store]:
    with Store.open(sqlite_url) as opened:
        yield opened


def gate(clock: Clock, store: Store, **settings: object) -> Gate:
    users = {ANA: UiUser(token_hash=hash_token("ana-token-123456"))}
    return Gate(UiSettings(users=users, **settings), store, clock)


def test_a_token_is_kept_as_a_salted_scrypt_hash() -> None:
    first, second = hash_token("s3cret-token-1"), hash_token("s3cret-token-1")
    assert first != second  # salted
    assert first.startswith("scrypt$") and "s3cret" not in first
    assert token_matches("s3cret-token-1", first)
    assert not token_matches("s3cret-token-2", first)


def test_a_session_is_signed_and_ends_after_its_time(store: Store) -> None:
    clock = Clock()
    ui = gate(clock, store, session_ttl=timedelta(hours=1))
    assert ui.sign_in(ANA, "wrong-token", "10.0.0.1") is None
    assert ui.sign_in("bob@acme.com", "ana-token-123456", "10.0.0.1") is None
    session = ui.sign_in(" Ana@Acme.com ", "ana-token-123456", "10.0.0.1")
    assert session is not None
    assert ui.visitor({}, {SESSION_COOKIE: session})[0] == ANA
    body, _, signature = session.partition(".")
    forged = ("A" if body[0] != "A" else "B") + body[1:] + "." + signature
    assert ui.visitor({}, {SESSION_COOKIE: forged})[0] is None
    # Another process's secret does not vouch for it.
    assert gate(clock, store).visitor({}, {SESSION_COOKIE: session})[0] is None
    clock.at = NOON + timedelta(hours=1, seconds=1)
    assert ui.visitor({}, {SESSION_COOKIE: session})[0] is None


def test_the_proxy_header_counts_only_when_configured(store: Store) -> None:
    clock = Clock()
    headers = {"x-forwarded-email": "Lee@Acme.com"}
    assert gate(clock, store).visitor(headers, {})[0] is None
    trusting = gate(clock, store, trusted_header="X-Forwarded-Email")
    assert trusting.visitor(headers, {})[0] == "lee@acme.com"


def test_form_tokens_are_bound_to_the_session(store: Store) -> None:
    clock = Clock()
    ui = gate(clock, store, session_secret="shared-secret")
    one = ui.sign_in(ANA, "ana-token-123456", "10.0.0.1")
    two = ui.sign_in(ANA, "ana-token-123456", "10.0.0.1")
    assert one and two
    token = ui.form_token({}, {SESSION_COOKIE: one})
    assert token == ui.form_token({}, {SESSION_COOKIE: one})
    assert token != ui.form_token({}, {SESSION_COOKIE: two})
    # A cookie that is no live session gets the token of nobody in particular.
    assert token != ui.form_token({}, {SESSION_COOKIE: one + "x"}) == ui.form_token({}, {})


def test_a_token_hash_that_is_not_one_is_a_configuration_error(tmp_path: Path) -> None:
    make_project(tmp_path, settings="ui:\n  users:\n    ana@acme.com: {token_hash: hunter2}\n")
    [issue] = [i for i in load_project(tmp_path, env={}).issues if i.file.name == "dq-agent.yml"]
    assert str(issue).endswith(
        "dq-agent.yml:3:32: ui.users.ana@acme.com.token_hash: not a token hash: use what "
        "`dq-agent hash-token` prints (scrypt$<salt>$<hash>), never the token itself"
    )


@pytest.mark.parametrize("path", ["/", "/corrections", "/monitors"])
def test_a_read_only_dashboard_shows_no_buttons_and_refuses_every_post(
    tmp_path: Path, path: str
) -> None:
    token_hash = hash_token("ana-token-123456")
    make_project(
        tmp_path,
        suites={"s": "suite: s\nsource: {connector: w, table: t}\nchecks: [row_count]\n"},
        connectors={"w": f"type: sql\nurl: 'sqlite:///{tmp_path}/w.db'\n"},
        settings=f"ui:\n  read_only: true\n  trusted_header: X-User\n"
        f"  users:\n    {ANA}: {{token_hash: '{token_hash}'}}\n",
    )
    project = load_project(tmp_path, env={})
    assert project.issues == ()
    with Store.open(project.state_url) as store:
        app = Dashboard(lambda: project, store, RunOptions(clock=Clock()))
        headers = {"x-user": ANA}
        page = app.handle(WebRequest("GET", path, {}, headers, {}))
        assert page is not None and page.status == 200
        assert "<form" not in page.body
        posted = app.handle(
            WebRequest("POST", "/corrections/1/revert", {}, headers, {}, {"csrf": "x"})
        )
        assert posted is not None
        assert (posted.status, posted.body) == (403, "this dashboard is read-only")
        anonymous = app.handle(WebRequest("GET", path, {}, {}, {}))
        assert anonymous is not None
        assert (anonymous.status, dict(anonymous.headers)["Location"]) == (303, "/login")


def test_an_incomplete_form_is_a_bad_request_not_a_crash(tmp_path: Path) -> None:
    token_hash = hash_token("ana-token-123456")
    make_project(
        tmp_path,
        suites={"s": "suite: s\nsource: {connector: w, table: t}\nchecks: [row_count]\n"},
        connectors={"w": f"type: sql\nurl: 'sqlite:///{tmp_path}/w.db'\n"},
        settings=f"ui:\n  trusted_header: X-User\n  users:\n    {ANA}: {{token_hash: '{token_hash}'}}\n",
    )
    project = load_project(tmp_path, env={})
    with Store.open(project.state_url) as store:
        app = Dashboard(lambda: project, store, RunOptions(clock=Clock()))
        headers = {"x-user": ANA}
        csrf = app.gate.form_token(headers, {})
        form = {"csrf": csrf, "action": "approve", "correction": "not-a-number"}
        answer = app.handle(WebRequest("POST", "/incidents/1", {}, headers, {}, form))
        assert answer is not None
        assert (answer.status, answer.body) == (
            400,
            "the form is incomplete: reload the page and try again",
        )


def test_the_monitors_page_charts_the_semantic_checks_day_by_day(tmp_path: Path) -> None:
    from tests.sources import load_orders, project_for, run
    from tests.test_semantic import LAST, NOW, PAYMENTS, payments

    url = f"sqlite:///{tmp_path / 'payments.db'}"
    load_orders(url, payments(nulls={LAST: 0.3}), PAYMENTS)
    suite = (
        "suite: payments\nowner: ana@acme.com\n"
        "source: {connector: warehouse, table: payments}\n"
        "checks:\n  - column_anomaly: {timestamp_column: paid_at, column: local_value}\n"
    )
    root = project_for(tmp_path / "p", url, {"payments": suite})
    # Three runs: the first judges the day before, the last two the day with the null jump.
    for hours in (-24, -1, 0):
        run(root, now=NOW + timedelta(hours=hours))
    token_hash = hash_token("ana-token-123456")
    settings = (root / "dq-agent.yml").read_text() + (
        f"ui:\n  trusted_header: X-User\n  users:\n    {ANA}: {{token_hash: '{token_hash}'}}\n"
    )
    (root / "dq-agent.yml").write_text(settings)
    project = load_project(root, env={})
    with Store.open(project.state_url) as store:
        app = Dashboard(lambda: project, store, RunOptions(clock=Clock()))
        page = app.handle(WebRequest("GET", "/monitors", {}, {"x-user": ANA}, {}))
    assert page is not None and page.status == 200
    assert "payments / column_anomaly(local_value): null rate, day by day" in page.body
    found = re.search(
        r'<svg[^>]*aria-label="[^"]*: null rate, day by day".*?</svg>', page.body, re.S
    )
    assert found
    null_rate = found[0]
    # One point per day, however many runs judged it.
    assert null_rate.count('data-outcome="anomaly"') == 1
    assert null_rate.count('data-outcome="normal"') == 1


# -- sessions that end, sign-ins that slow down, ids that cannot be ----------------------------

ANA_TOKEN = "ana-token-123456"
BOB, BOB_TOKEN = "bob@acme.com", "bob-token-654321"
NONCE = "login-form-nonce"


@contextmanager
def dashboard(tmp_path: Path, ui: str = "") -> Iterator[tuple[Dashboard, Clock]]:
    """A dashboard for a one-suite project with Ana and Bob as users, and its clock."""
    users = "".join(
        f"    {email}: {{token_hash: '{hash_token(token)}'}}\n"
        for email, token in ((ANA, ANA_TOKEN), (BOB, BOB_TOKEN))
    )
    make_project(
        tmp_path,
        suites={"s": "suite: s\nsource: {connector: w, table: t}\nchecks: [row_count]\n"},
        connectors={"w": f"type: sql\nurl: 'sqlite:///{tmp_path}/w.db'\n"},
        settings=f"ui:\n  session_secret: shared-secret\n{ui}  users:\n{users}",
    )
    project = load_project(tmp_path, env={})
    assert project.issues == ()
    clock = Clock()
    with Store.open(project.state_url) as store:
        yield Dashboard(lambda: project, store, RunOptions(clock=clock)), clock


def sign_in(app: Dashboard, email: str, token: str, client: str = "192.0.2.10") -> WebResponse:
    form = {"csrf": NONCE, "email": email, "token": token}
    answer = app.handle(WebRequest("POST", "/login", {}, {}, {LOGIN_COOKIE: NONCE}, form, client))
    assert answer is not None
    return answer


def session_cookie(answer: WebResponse) -> dict[str, str]:
    assert answer.status == 303, answer.body
    [cookie] = [v for k, v in answer.headers if k == "Set-Cookie"]
    name, _, rest = cookie.partition("=")
    assert name == SESSION_COOKIE
    return {SESSION_COOKIE: rest.split(";")[0]}


def visit(app: Dashboard, path: str, cookies: dict[str, str]) -> WebResponse:
    answer = app.handle(WebRequest("GET", path, {}, {}, cookies))
    assert answer is not None
    return answer


def submit(
    app: Dashboard, path: str, form: dict[str, str], cookies: dict[str, str] | None = None
) -> WebResponse:
    headers = {} if cookies is not None else {"x-user": ANA}
    answer = app.handle(WebRequest("POST", path, {}, headers, cookies or {}, form))
    assert answer is not None
    return answer


def test_signing_out_ends_the_session_for_every_copy_of_its_cookie(tmp_path: Path) -> None:
    with dashboard(tmp_path) as (app, _clock):
        cookies = session_cookie(sign_in(app, ANA, ANA_TOKEN))
        overview = visit(app, "/", cookies)
        assert overview.status == 200
        found = re.search(
            r'<form class="inline" method="post" action="/logout">'
            r'<input type="hidden" name="csrf" value="([0-9a-f]+)">'
            r'<button type="submit" class="">Sign out</button></form>',
            overview.body,
        )
        assert found, "a Sign out button carrying the form token"
        # A sign-out posted from another site (it cannot know the token) does nothing.
        forged = submit(app, "/logout", {}, cookies)
        assert (forged.status, forged.body) == (
            403,
            "missing or wrong form token: reload the page and try again",
        )
        assert visit(app, "/", cookies).status == 200

        out = submit(app, "/logout", {"csrf": found[1]}, cookies)
        assert out.status == 303
        assert dict(out.headers)["Location"] == "/login"
        assert f"{SESSION_COOKIE}=; Max-Age=0; Path=/" in dict(out.headers)["Set-Cookie"]
        # A copy of the cookie taken before signing out no longer opens anything.
        after = visit(app, "/", cookies)
        assert (after.status, dict(after.headers)["Location"]) == (303, "/login")
        acting = submit(app, "/corrections/1/revert", {"csrf": found[1]}, cookies)
        assert (acting.status, acting.body) == (403, "sign in first")
        # Nor on another replica sharing the state store.
        project = load_project(tmp_path, env={})
        with Store.open(project.state_url) as store:
            other = Dashboard(lambda: project, store, RunOptions(clock=Clock()))
            assert visit(other, "/", cookies).status == 303
        # Signing in again gives a new session that works.
        assert visit(app, "/", session_cookie(sign_in(app, ANA, ANA_TOKEN))).status == 200


def test_repeated_wrong_tokens_are_slowed_down_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="dq_agent.ui.auth")
    with dashboard(tmp_path) as (app, clock):
        for _ in range(5):
            wrong = sign_in(app, ANA, "guessed-token-0000", client="203.0.113.9")
            assert wrong.status == 401
            assert "Unknown e-mail address or wrong token." in wrong.body
        # The right token now, from the same address: refused without being checked.
        held = sign_in(app, ANA, ANA_TOKEN, client="203.0.113.9")
        assert held.status == 429
        assert dict(held.headers)["Retry-After"] == "900"
        assert (
            "Too many failed sign-ins from this address or for this e-mail address: "
            "try again in 15 minutes." in held.body
        )
        assert "Set-Cookie" not in dict(held.headers)
        # The same e-mail from another address, and another e-mail from this address.
        assert sign_in(app, ANA, ANA_TOKEN, client="198.51.100.7").status == 429
        assert sign_in(app, BOB, BOB_TOKEN, client="203.0.113.9").status == 429
        # Someone else, elsewhere, is not held up.
        assert sign_in(app, BOB, BOB_TOKEN, client="198.51.100.7").status == 303

        clock.at += timedelta(minutes=15, seconds=1)
        assert (
            visit(app, "/", session_cookie(sign_in(app, ANA, ANA_TOKEN, "203.0.113.9"))).status
            == 200
        )

    logged = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    failed = "dashboard sign-in failed from 203.0.113.9 for 'ana@acme.com'"
    assert logged.count(failed) == 5
    assert any("203.0.113.9" in line and "'bob@acme.com'" in line for line in logged)
    assert not [line for line in logged if "guessed-token" in line or ANA_TOKEN in line]


def test_an_e_mail_address_longer_than_any_is_a_bad_request(tmp_path: Path) -> None:
    with dashboard(tmp_path) as (app, _clock):
        answer = sign_in(app, "a" * 250 + "@acme.com", ANA_TOKEN)
        assert (answer.status, answer.body) == (
            400,
            "the e-mail address is longer than 249 characters",
        )


HUGE = "99999999999999999999999"


@pytest.mark.parametrize(
    ("method", "path", "form", "expected"),
    [
        ("GET", f"/incidents/{HUGE}", {}, (404, f"no incident {HUGE}")),
        ("GET", "/incidents/2147483648", {}, (404, "no incident 2147483648")),
        ("GET", "/incidents/0", {}, (404, "no incident 0")),
        ("POST", f"/incidents/{HUGE}", {"action": "resolve"}, (404, "not found")),
        ("POST", f"/corrections/{HUGE}/revert", {}, (404, "not found")),
        (
            "POST",
            "/incidents/1",
            {"action": "approve", "correction": HUGE},
            (400, "the form is incomplete: reload the page and try again"),
        ),
        (
            "POST",
            "/incidents/1",
            {"action": "reject", "correction": "-1"},
            (400, "the form is incomplete: reload the page and try again"),
        ),
    ],
)
def test_an_id_no_database_integer_can_hold_is_not_found(
    tmp_path: Path, method: str, path: str, form: dict[str, str], expected: tuple[int, str]
) -> None:
    with dashboard(tmp_path, "  trusted_header: X-User\n") as (app, _clock):
        headers = {"x-user": ANA}
        if method == "POST":
            form = {**form, "csrf": app.gate.form_token(headers, {})}
        answer = app.handle(WebRequest(method, path, {}, headers, {}, form))
        assert answer is not None
        assert (answer.status, answer.body) == expected


def test_a_user_removed_from_the_settings_is_refused_after_the_reload(tmp_path: Path) -> None:
    with dashboard(tmp_path) as (app, _clock):
        cookies = session_cookie(sign_in(app, BOB, BOB_TOKEN))
        assert visit(app, "/", cookies).status == 200
        current = app._project()
        users = {ANA: current.settings.ui.users[ANA]}
        ui = current.settings.ui.model_copy(update={"users": users})
        reloaded = dataclasses.replace(
            current, settings=current.settings.model_copy(update={"ui": ui})
        )
        app._project = lambda: reloaded  # what the daemon's reload does
        answer = visit(app, "/", cookies)
        assert (answer.status, dict(answer.headers)["Location"]) == (303, "/login")
