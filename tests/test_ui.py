"""The dashboard end to end, in headless Chromium (Debian's, driven by Playwright).

A data lead signs in, opens the incident about a mistyped deal, approves the proposed fix and
sees the record change in the Salesforce emulator, reverts it from the ledger, and marks a
flagged day of a volume monitor expected; someone outside the suite's owners is refused, and
a form posted without its token is refused. Each page is saved as a screenshot under
``test-artifacts/screenshots`` (not committed).
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dq_agent.config import load_project
from dq_agent.escalate.endpoint import InteractionsServer
from dq_agent.store import Store
from dq_agent.ui.app import Dashboard
from dq_agent.ui.auth import hash_token
from tests.test_escalation import (  # noqa: F401  (the world fixture)
    CRM_SUITE,
    SLIP,
    TUESDAY,
    World,
    amount,
    settings,
    world,
)

CHROMIUM = "/usr/bin/chromium"
SCREENSHOTS = Path(__file__).resolve().parents[1] / "test-artifacts" / "screenshots"
LEAD, OUTSIDER = "sales-ops@acme.com", "mallory@acme.com"
TOKENS = {LEAD: "lead-token-0123456789", OUTSIDER: "mallory-token-0123456789"}
# The CRM suite with its fix left to an owner's decision (no auto_correct).
PROPOSING_CRM = CRM_SUITE.replace(", auto_correct: true", "")

if not Path(CHROMIUM).exists():
    if os.environ.get("CI"):
        raise RuntimeError(f"{CHROMIUM} is missing: `make test` installs Debian's chromium")
    pytest.skip(f"no {CHROMIUM} (Debian's chromium package)", allow_module_level=True)

from playwright.sync_api import Browser, Page, expect, sync_playwright  # noqa: E402


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        yield launched
        launched.close()


@pytest.fixture
def dashboard(world: World) -> Iterator[str]:  # noqa: F811
    """The CRM suite proposing its fix, a volume monitor with a spike, and the dashboard."""
    users = "".join(
        f"    {email}: {{token_hash: '{hash_token(token)}'}}\n" for email, token in TOKENS.items()
    )
    ui = f"ui:\n  session_secret: test-session-secret\n  users:\n{users}"
    slack_url = load_project(world.root, env={}).settings.slack.base_url  # type: ignore[union-attr]
    (world.root / "dq-agent.yml").write_text(
        settings(world.root, str(slack_url).removesuffix("/api/"), ui)
    )
    (world.root / "checks" / "crm.yml").write_text(PROPOSING_CRM)
    world.spiky_events("sales-ops@acme.com")
    world.cycle(TUESDAY, "crm_opportunities")
    world.cycle(TUESDAY, "events")
    project = load_project(world.root, env={})
    assert project.issues == ()
    with Store.open(project.state_url) as store:
        app = Dashboard(lambda: project, store, world.options(), world.api())
        with InteractionsServer(None, lambda _: None, port=0, app=app.handle) as server:
            yield server.base_url


def shot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def sign_in(page: Page, base: str, email: str) -> None:
    page.goto(f"{base}/")
    expect(page).to_have_url(re.compile(r"/login$"))
    page.get_by_label("E-mail").fill(email)
    page.get_by_label("Token").fill(TOKENS[email])
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()


def test_a_lead_approves_a_fix_reverts_it_and_marks_a_day_expected(
    browser: Browser,
    dashboard: str,
    world: World,  # noqa: F811
) -> None:
    page = browser.new_page()
    page.goto(f"{dashboard}/login")
    shot(page, "login")
    page.get_by_label("E-mail").fill(LEAD)
    page.get_by_label("Token").fill("not-the-token-at-all")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_have_text("Unknown e-mail address or wrong token.")

    sign_in(page, dashboard, LEAD)
    suites = page.locator("table").first
    expect(suites.locator("tr", has_text="crm_opportunities")).to_contain_text("fail")
    expect(suites.locator("tr", has_text="events")).to_contain_text("fail")
    shot(page, "overview")

    # The deal typed as $10m: the fix waits for an owner.
    page.locator("tr", has_text="crm_opportunities").get_by_role("link").first.click()
    expect(page.get_by_role("heading", name=re.compile(r"Incident #\d+"))).to_be_visible()
    expect(page.locator("body")).to_contain_text(SLIP)
    shot(page, "incident")
    assert amount(world, SLIP) == 10_000_000
    page.get_by_role("button", name="Approve").click()
    expect(page.get_by_role("status")).to_have_text("approve: done")
    assert amount(world, SLIP) == 1_000_000

    # The ledger shows it applied, intact, and takes it back compare-and-set.
    page.get_by_role("link", name="Corrections").click()
    expect(page.locator("#ledger-status")).to_contain_text("Ledger hash chain intact")
    row = page.locator("tr", has_text=SLIP)
    expect(row).to_contain_text("applied")
    expect(row).to_contain_text(LEAD)
    shot(page, "corrections")
    row.get_by_role("button", name="Revert").click()
    expect(page.get_by_role("status")).to_contain_text("reverted")
    assert amount(world, SLIP) == 10_000_000
    expect(page.locator("tr", has_text=SLIP)).to_contain_text("reverted")

    # The spike on 23 November, flagged on the chart, marked expected.
    page.get_by_role("link", name="Monitors").click()
    spike = page.locator('circle[data-bucket^="2026-11-23"]')
    expect(spike).to_have_attribute("data-outcome", "anomaly")
    shot(page, "monitors")
    page.get_by_role("button", name="Mark expected").click()
    expect(page.get_by_role("status")).to_contain_text("is expected")
    expect(spike).to_have_attribute("data-outcome", "expected")
    expect(page.get_by_role("button", name="Mark expected")).to_have_count(0)
    shot(page, "monitors-after")

    # Every action is on record with who did it.
    project = load_project(world.root, env={})
    with Store.open(project.state_url) as store:
        [correction] = store.corrections()
        decided = {(e.event, e.decided_by) for e in correction.events}
        assert {("applied", f"owner:{LEAD}"), ("reverted", LEAD)} <= decided
        assert store.expected_buckets("events", "volume_anomaly(created_at)")
    page.close()


def test_someone_outside_the_owners_may_look_but_not_act(
    browser: Browser,
    dashboard: str,
    world: World,  # noqa: F811
) -> None:
    page = browser.new_page()
    sign_in(page, dashboard, OUTSIDER)
    page.locator("tr", has_text="crm_opportunities").get_by_role("link").first.click()
    page.get_by_role("button", name="Approve").click()
    expect(page.get_by_role("alert")).to_contain_text(
        "Only the owners and escalation list of crm_opportunities"
    )
    shot(page, "refused")
    assert amount(world, SLIP) == 10_000_000
    page.close()


def test_a_form_posted_without_its_token_is_refused(
    browser: Browser,
    dashboard: str,
    world: World,  # noqa: F811
) -> None:
    context = browser.new_context()
    page = context.new_page()
    sign_in(page, dashboard, LEAD)
    page.locator("tr", has_text="crm_opportunities").get_by_role("link").first.click()
    form = page.locator("form", has=page.get_by_role("button", name="Approve"))
    fields: dict[str, Any] = {
        name: form.locator(f'input[name="{name}"]').get_attribute("value")
        for name in ("action", "correction")
    }
    incident = page.url.split("?")[0]
    # The signed-in browser's cookies, a forged form: no token, then a wrong one.
    for forged in (fields, {**fields, "csrf": "0" * 64}):
        response = context.request.post(incident, form=forged, max_redirects=0)
        assert response.status == 403
        assert "form token" in response.text()
    assert amount(world, SLIP) == 10_000_000
    # And a sign-in form from elsewhere (no login cookie) is refused too.
    anonymous = browser.new_context()
    response = anonymous.request.post(
        f"{dashboard}/login", form={"email": LEAD, "token": TOKENS[LEAD]}, max_redirects=0
    )
    assert response.status == 403
    anonymous.close()
    context.close()


def test_screenshots_are_left_for_people_to_look_at() -> None:
    # Written by the tests above (pytest runs a module's tests in order).
    names = {p.stem for p in SCREENSHOTS.glob("*.png")}
    assert {"login", "overview", "incident", "corrections", "monitors", "refused"} <= names


@pytest.fixture(scope="session", autouse=True)
def _fresh_screenshots() -> None:
    shutil.rmtree(SCREENSHOTS, ignore_errors=True)
