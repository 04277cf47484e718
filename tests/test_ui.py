"""The dashboard end to end, in headless Chromium (Debian's, driven by Playwright).

A data lead signs in, opens the incident about a mistyped deal, approves the proposed fix and
sees the record change in the Salesforce emulator, reverts it from the ledger, and marks a
flagged day of a volume monitor expected; someone outside the suite's owners is refused, and
a form posted without its token is refused. A button is shown only where its action can
work, and an action that did not happen says so in red.

Every page looked at is saved as a screenshot at 1400 px and 800 px wide under
``test-artifacts/screenshots`` (not committed) and checked with axe-core: no serious or
critical accessibility violation.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from dq_agent.config import load_project
from dq_agent.config.loader import Project
from dq_agent.engine import RunOptions
from dq_agent.escalate.server import InteractionsServer
from dq_agent.store import Store
from dq_agent.ui.app import Dashboard
from dq_agent.ui.auth import hash_token
from tests.sf_client import open_salesforce_client
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
ROOT = Path(__file__).resolve().parents[1]
SCREENSHOTS = ROOT / "test-artifacts" / "screenshots"
AXE = ROOT / "tests" / "browser" / "node_modules" / "axe-core" / "axe.min.js"
WIDTHS = (1400, 800)
LEAD, OUTSIDER = "sales-ops@acme.com", "mallory@acme.com"
TOKENS = {LEAD: "lead-token-0123456789", OUTSIDER: "mallory-token-0123456789"}
# The CRM suite with its fix left to an owner's decision (no auto_correct).
PROPOSING_CRM = CRM_SUITE.replace(", auto_correct: true", "")

for needed, how in ((CHROMIUM, "Debian's chromium package"), (AXE, "npm ci in tests/browser")):
    if not Path(needed).exists():
        if os.environ.get("CI"):
            raise RuntimeError(f"{needed} is missing: `make test` installs it ({how})")
        pytest.skip(f"no {needed} ({how}: `make browser`)", allow_module_level=True)

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


@dataclass
class Site:
    """The dashboard being served, on the project as its files say after :meth:`reload`."""

    url: str
    world: World
    project: Project

    def reload(self) -> None:
        self.project = load_project(self.world.root, env={})
        assert self.project.issues == ()

    def incident_of(self, suite: str) -> int:
        with Store.open(self.project.state_url) as store:
            [incident] = [i for i in store.incidents(events=False) if i["suite"] == suite]
        return int(incident["id"])


@pytest.fixture
def site(world: World) -> Iterator[Site]:  # noqa: F811
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
    with (
        Store.open(project.state_url) as store,
        InteractionsServer(
            None, lambda _: None, port=0, app=lambda request: app.handle(request)
        ) as server,
    ):
        served = Site(server.base_url, world, project)
        app = Dashboard(lambda: served.project, store, world.options(), world.api())
        yield served


@pytest.fixture
def dashboard(site: Site) -> str:
    return site.url


def look(page: Page, name: str) -> None:
    """Save the page at each width and check it with axe-core: nothing serious or critical."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": 900})
        page.screenshot(path=str(SCREENSHOTS / f"{name}-{width}.png"), full_page=True)
    page.set_viewport_size({"width": WIDTHS[0], "height": 900})
    if not page.evaluate("() => typeof axe !== 'undefined'"):
        page.add_script_tag(path=str(AXE))
    found = page.evaluate("async () => (await axe.run(document)).violations")
    serious = [
        {"rule": v["id"], "impact": v["impact"], "where": [n["target"] for n in v["nodes"]]}
        for v in found
        if v["impact"] in ("serious", "critical")
    ]
    assert serious == [], f"{name}: {json.dumps(serious, indent=1)}"


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
    look(page, "login")
    page.get_by_label("E-mail").fill(LEAD)
    page.get_by_label("Token").fill("not-the-token-at-all")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_have_text("Unknown e-mail address or wrong token.")

    sign_in(page, dashboard, LEAD)
    suites = page.locator("table").first
    expect(suites.locator("tr", has_text="crm_opportunities")).to_contain_text("fail")
    expect(suites.locator("tr", has_text="events")).to_contain_text("fail")
    look(page, "overview")

    # The deal typed as $10m: the fix waits for an owner.
    page.locator("tr", has_text="crm_opportunities").get_by_role(
        "link", name=re.compile(r"^#\d+")
    ).first.click()
    expect(page.get_by_role("heading", name=re.compile(r"Incident #\d+"))).to_be_visible()
    expect(page.locator("body")).to_contain_text(SLIP)
    look(page, "incident")
    assert amount(world, SLIP) == 10_000_000
    page.get_by_role("button", name="Approve").click()
    expect(page.get_by_role("status")).to_contain_text("correction 1 written")
    assert amount(world, SLIP) == 1_000_000

    # The ledger shows it applied, intact, and takes it back compare-and-set.
    page.get_by_role("link", name="Corrections").click()
    expect(page.locator("#ledger-status")).to_contain_text("Ledger hash chain intact")
    row = page.locator("tr", has_text=SLIP)
    expect(row).to_contain_text("applied")
    expect(row).to_contain_text(LEAD)
    look(page, "corrections")
    row.get_by_role("button", name="Revert").click()
    expect(page.get_by_role("status")).to_contain_text("reverted")
    assert amount(world, SLIP) == 10_000_000
    expect(page.locator("tr", has_text=SLIP)).to_contain_text("reverted")

    # The spike on 23 November, flagged on the chart, marked expected.
    page.get_by_role("link", name="Monitors").click()
    spike = page.locator('circle[data-bucket^="2026-11-23"]')
    expect(spike).to_have_attribute("data-outcome", "anomaly")
    look(page, "monitors")
    page.get_by_role("button", name="Mark expected").click()
    expect(page.get_by_role("status")).to_contain_text("is expected")
    expect(spike).to_have_attribute("data-outcome", "expected")
    expect(page.get_by_role("button", name="Mark expected")).to_have_count(0)
    look(page, "monitors-after")

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
    page.locator("tr", has_text="crm_opportunities").get_by_role(
        "link", name=re.compile(r"^#\d+")
    ).first.click()
    page.get_by_role("button", name="Approve").click()
    expect(page.get_by_role("alert")).to_contain_text(
        "Only the owners and escalation list of crm_opportunities"
    )
    look(page, "refused")
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
    page.locator("tr", has_text="crm_opportunities").get_by_role(
        "link", name=re.compile(r"^#\d+")
    ).first.click()
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


def open_incident(page: Page, site: Site, suite: str) -> None:
    page.goto(f"{site.url}/incidents/{site.incident_of(suite)}")
    expect(page.get_by_role("heading", name=re.compile(r"Incident #\d+"))).to_be_visible()


def test_a_fix_that_cannot_be_written_has_no_button_and_a_forced_approval_is_red(
    browser: Browser, site: Site
) -> None:
    # The owners switch corrections off for the suite after the fix was proposed.
    suite = site.world.root / "checks" / "crm.yml"
    suite.write_text(PROPOSING_CRM + "corrections: {enabled: false}\n")
    site.reload()
    context = browser.new_context()
    page = context.new_page()
    sign_in(page, site.url, LEAD)
    open_incident(page, site, "crm_opportunities")
    row = page.locator("tr", has=page.locator("#correction-1"))
    expect(row).to_contain_text("cannot be written: corrections are disabled")
    expect(row.get_by_role("button", name="Approve")).to_have_count(0)
    expect(row.get_by_role("button", name="Reject")).to_have_count(1)
    look(page, "incident-cannot-write")
    before = site.world.incident(site.incident_of("crm_opportunities"))["status"]

    # A form posted anyway (an old tab, a script) is refused, in red, and changes nothing.
    token = row.locator('input[name="csrf"]').first.get_attribute("value")
    correction = row.locator('input[name="correction"]').first.get_attribute("value")
    response = context.request.post(
        page.url,
        form={"action": "approve", "correction": str(correction), "csrf": str(token)},
        max_redirects=0,
    )
    assert response.status == 303
    page.goto(f"{site.url}{response.headers['location']}")
    expect(page.get_by_role("alert")).to_contain_text(
        "correction 1 cannot be written: corrections are disabled"
    )
    expect(page.get_by_role("status")).to_have_count(0)
    after = site.world.incident(site.incident_of("crm_opportunities"))
    assert after["status"] == before
    assert amount(site.world, SLIP) == 10_000_000
    with Store.open(site.project.state_url) as store:
        [pending] = store.corrections()
        assert pending.status == "pending"
    context.close()


def test_an_approval_that_finds_the_record_changed_says_so_in_red(
    browser: Browser, site: Site
) -> None:
    page = browser.new_page()
    sign_in(page, site.url, LEAD)
    open_incident(page, site, "crm_opportunities")
    # The rep fixes the deal by hand while the page is open.
    with open_salesforce_client(site.world.crm_url()) as sf:
        sf.Opportunity.update(SLIP, {"Amount": 1_000_001})
    page.get_by_role("button", name="Approve").click()
    expect(page.get_by_role("alert")).to_contain_text("correction 1 was not written (conflict)")
    expect(page.get_by_role("status")).to_have_count(0)
    assert amount(site.world, SLIP) == 1_000_001
    look(page, "incident-conflict")
    page.close()


def test_evidence_reads_as_a_table_with_the_page_number_format(
    browser: Browser, site: Site
) -> None:
    page = browser.new_page()
    sign_in(page, site.url, LEAD)
    open_incident(page, site, "crm_opportunities")
    expect(page.locator("pre")).to_have_count(0)
    fix = page.locator("tr", has=page.locator("#correction-1"))
    expect(fix).to_contain_text("10,000,000 → 1,000,000")
    open_incident(page, site, "events")
    evidence = page.locator("table", has=page.get_by_role("columnheader", name="Measured"))
    expect(evidence.locator("tr", has_text="rows")).to_contain_text("2,000")
    look(page, "incident-volume")
    page.close()


def test_the_slack_thread_reads_as_people_saw_it(browser: Browser, site: Site) -> None:
    site.world.cycle(TUESDAY + timedelta(hours=4), "crm_opportunities")  # a reminder
    page = browser.new_page()
    sign_in(page, site.url, LEAD)
    open_incident(page, site, "crm_opportunities")
    page.get_by_role("button", name="Approve").click()
    expect(page.get_by_role("status")).to_contain_text("correction 1 written")
    thread = page.locator("table", has=page.get_by_role("columnheader", name="Message"))
    [owner] = site.world.incident(site.incident_of("crm_opportunities"))["owners"]
    users = site.world.slack.state()["users"]
    [shown] = [u["name"] for u in users if u["email"] == owner]
    # Mentions by name, emoji as emoji, no raw markup, no bookkeeping rows.
    expect(thread.locator(".mention").first).to_have_text(f"@{shown}")
    expect(thread).not_to_contain_text("<@U")
    expect(thread).not_to_contain_text(":white_check_mark:")
    # The first message as it stands now, and the closing reply.
    expect(thread.locator("tr", has_text="✅")).to_have_count(2)
    for cell in thread.locator("tbody tr td:last-child").all():
        assert cell.inner_text().strip()
    expect(page.locator("main")).to_contain_text("Reminders sent: 1")
    look(page, "incident-thread")
    page.close()


def test_the_overview_has_one_cell_per_day_and_a_page_per_suite(
    browser: Browser, site: Site
) -> None:
    for minute in range(1, 9):  # nine runs in ten minutes
        site.world.cycle(TUESDAY + timedelta(minutes=minute), "crm_opportunities")
    page = browser.new_page()
    sign_in(page, site.url, LEAD)
    row = page.locator("tr", has_text="crm_opportunities")
    expect(row.locator(".day")).to_have_count(7)
    expect(row.locator(".day").last).to_have_attribute("title", re.compile(r": 9 runs — 9 fail$"))
    row.get_by_role("link", name="crm_opportunities").click()
    expect(page.get_by_role("heading", name="Suite crm_opportunities")).to_be_visible()
    checks = page.locator("table", has=page.get_by_role("columnheader", name="Last result"))
    expect(checks.locator("tr", has_text="fat_finger(Amount)")).to_contain_text("fail")
    look(page, "suite")
    page.close()


def test_similar_incidents_are_others_with_when_and_how_they_ended(
    browser: Browser, site: Site
) -> None:
    # A second suite on the same Salesforce object fails, and its owner resolves it.
    (site.world.root / "checks" / "crm_size.yml").write_text(
        "suite: crm_size\nowner: sales-ops@acme.com\n"
        "source: {connector: crm, object: Opportunity, fields: [Id, Amount]}\n"
        "checks:\n  - row_count: {min: 1000000}\n"
    )
    site.reload()
    site.world.cycle(TUESDAY, "crm_size")
    page = browser.new_page()
    sign_in(page, site.url, LEAD)
    open_incident(page, site, "crm_size")
    page.get_by_role("button", name="Resolve").click()
    expect(page.get_by_role("status")).to_contain_text("resolved")
    similar = page.locator("section#similar")
    expect(similar).to_contain_text("No similar incidents resolved before.")
    look(page, "incident-resolved")

    open_incident(page, site, "crm_opportunities")
    other = similar.locator("tr", has_text="crm_size / row_count")
    expect(other).to_contain_text("2026-11-24 08:00 UTC")
    expect(other).to_contain_text("sales-ops@acme.com resolved it by hand")
    page.close()


def test_column_monitors_chart_a_point_per_day_across_the_card_and_list_new_values(
    browser: Browser, tmp_path: Path
) -> None:
    from tests.test_ui_monitors import COLUMN, NEW, NEW_CURRENCY, check_five_days

    checked = check_five_days(tmp_path)  # three runs a day for five days
    settings = checked.root / "dq-agent.yml"
    settings.write_text(settings.read_text() + "ui:\n  trusted_header: X-User\n")
    project = load_project(checked.root, env={})
    with Store.open(project.state_url) as store:
        app = Dashboard(lambda: project, store, RunOptions(clock=lambda: TUESDAY))
        with InteractionsServer(None, lambda _: None, port=0, app=app.handle) as server:
            context = browser.new_context(extra_http_headers={"X-User": "finance-data@acme.com"})
            page = context.new_page()
            page.goto(f"{server.base_url}/monitors")
            card = page.locator(f'section[id="{COLUMN}"]')
            chart = card.locator("svg").first
            expect(chart.locator("circle")).to_have_count(5)
            days = chart.locator("text.x-tick").all_text_contents()
            assert len(days) == len(set(days)) > 1
            for width in WIDTHS:
                page.set_viewport_size({"width": width, "height": 900})
                drawn, room = chart.bounding_box(), card.bounding_box()
                assert drawn and room and drawn["width"] > 0.9 * room["width"]
            new = page.locator(f'section[id="{NEW}"]')
            expect(new.locator("tr", has_text=NEW_CURRENCY)).to_contain_text("fail")
            look(page, "monitors-columns")
            context.close()


def test_a_lead_can_do_it_all_by_keyboard(browser: Browser, site: Site) -> None:
    page = browser.new_page()
    page.goto(f"{site.url}/login")
    page.keyboard.press("Tab")
    expect(page.get_by_label("E-mail")).to_be_focused()
    page.keyboard.type(LEAD)
    page.keyboard.press("Tab")
    page.keyboard.type(TOKENS[LEAD])
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    link = page.get_by_role("link", name=f"#{site.incident_of('crm_opportunities')}").first
    link.focus()
    page.keyboard.press("Enter")
    approve = page.get_by_role("button", name="Approve")
    approve.focus()
    expect(approve).to_be_focused()
    # The focused button is visibly marked.
    outline = approve.evaluate("b => getComputedStyle(b).outlineStyle")
    assert outline not in ("", "none")
    page.keyboard.press("Enter")
    expect(page.get_by_role("status")).to_contain_text("correction 1 written")
    assert amount(site.world, SLIP) == 1_000_000
    page.close()


def test_screenshots_are_left_for_people_to_look_at() -> None:
    # Written by the tests above (pytest runs a module's tests in order).
    names = {p.stem for p in SCREENSHOTS.glob("*.png")}
    pages = {"login", "overview", "incident", "corrections", "monitors", "refused"}
    assert {f"{page}-{width}" for page in pages for width in WIDTHS} <= names


@pytest.fixture(scope="session", autouse=True)
def _fresh_screenshots() -> None:
    shutil.rmtree(SCREENSHOTS, ignore_errors=True)


def test_two_sessions_approving_one_fix_write_it_once(
    browser: Browser,
    dashboard: str,
    world: World,  # noqa: F811
) -> None:
    pages = []
    for _ in range(2):  # the same lead in two browsers, both on the incident
        page = browser.new_context().new_page()
        sign_in(page, dashboard, LEAD)
        page.locator("tr", has_text="crm_opportunities").get_by_role(
            "link", name=re.compile(r"^#\d+")
        ).first.click()
        pages.append(page)
    first, second = pages
    first.get_by_role("button", name="Approve").click()
    expect(first.get_by_role("status")).to_contain_text("correction 1 written")
    second.get_by_role("button", name="Approve").click()  # its page still offers it
    # The first approval fixed the deal and the incident with it: nothing left to approve.
    expect(second.get_by_role("alert")).to_have_text("incident #1 is already resolved")
    assert amount(world, SLIP) == 1_000_000
    project = load_project(world.root, env={})
    with Store.open(project.state_url) as store:
        [correction] = store.corrections()
        assert [e.event for e in correction.events].count("applied") == 1
        assert store.verify_ledger() == []
    for page in pages:
        page.context.close()
