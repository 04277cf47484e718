"""Signing in to the dashboard, sessions, the proxy header and read-only mode, without a
browser (tests/test_ui.py drives the pages in Chromium)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from dq_agent.config import load_project
from dq_agent.config.models import UiSettings, UiUser
from dq_agent.engine import RunOptions
from dq_agent.escalate.endpoint import WebRequest
from dq_agent.store import Store
from dq_agent.ui.app import Dashboard
from dq_agent.ui.auth import SESSION_COOKIE, Gate, hash_token, token_matches
from tests.helpers import make_project

NOON = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
ANA = "ana@acme.com"


class Clock:
    def __init__(self) -> None:
        self.at = NOON

    def __call__(self) -> datetime:
        return self.at


def gate(clock: Clock, **settings: object) -> Gate:
    users = {ANA: UiUser(token_hash=hash_token("ana-token-123456"))}
    return Gate(UiSettings(users=users, **settings), clock)  # type: ignore[arg-type]


def test_a_token_is_kept_as_a_salted_scrypt_hash() -> None:
    first, second = hash_token("s3cret-token-1"), hash_token("s3cret-token-1")
    assert first != second  # salted
    assert first.startswith("scrypt$") and "s3cret" not in first
    assert token_matches("s3cret-token-1", first)
    assert not token_matches("s3cret-token-2", first)


def test_a_session_is_signed_and_ends_after_its_time() -> None:
    clock = Clock()
    ui = gate(clock, session_ttl=timedelta(hours=1))
    assert ui.sign_in(ANA, "wrong-token") is None
    assert ui.sign_in("bob@acme.com", "ana-token-123456") is None
    session = ui.sign_in(" Ana@Acme.com ", "ana-token-123456")
    assert session is not None
    assert ui.identify({}, {SESSION_COOKIE: session}) == ANA
    body, _, signature = session.partition(".")
    forged = ("A" if body[0] != "A" else "B") + body[1:] + "." + signature
    assert ui.identify({}, {SESSION_COOKIE: forged}) is None
    # Another process's secret does not vouch for it.
    assert gate(clock).identify({}, {SESSION_COOKIE: session}) is None
    clock.at = NOON + timedelta(hours=1, seconds=1)
    assert ui.identify({}, {SESSION_COOKIE: session}) is None


def test_the_proxy_header_counts_only_when_configured() -> None:
    clock = Clock()
    headers = {"x-forwarded-email": "Lee@Acme.com"}
    assert gate(clock).identify(headers, {}) is None
    assert gate(clock, trusted_header="X-Forwarded-Email").identify(headers, {}) == "lee@acme.com"


def test_form_tokens_are_bound_to_the_session() -> None:
    clock = Clock()
    ui = gate(clock, session_secret="shared-secret")
    one = ui.sign_in(ANA, "ana-token-123456")
    two = ui.sign_in(ANA, "ana-token-123456")
    assert one and two
    token = ui.form_token({}, {SESSION_COOKIE: one})
    assert ui.form_token_ok(token, {}, {SESSION_COOKIE: one})
    assert not ui.form_token_ok(token, {}, {SESSION_COOKIE: two + "x"})
    assert not ui.form_token_ok("", {}, {SESSION_COOKIE: one})


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


def test_the_monitors_page_charts_the_semantic_checks_run_by_run(tmp_path: Path) -> None:
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
    for hours in (-24, -1, 0):  # three runs; the last two judge the day with the null jump
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
    assert "payments / column_anomaly(local_value): null_rate, run by run" in page.body
    found = re.search(
        r'<svg[^>]*aria-label="[^"]*: null_rate, run by run".*?</svg>', page.body, re.S
    )
    assert found
    null_rate = found[0]
    assert null_rate.count('data-outcome="anomaly"') == 2
    assert null_rate.count('data-outcome="normal"') == 1
