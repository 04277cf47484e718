"""The overview's last seven days and a suite's own page, rendered from a real project and
state store (tests/test_ui.py drives the dashboard in Chromium).

The orders suite ran fifteen times in a week: a good day, a day it failed and then could not
read its table at all, a day its freshness check warned just before midnight, and today nine
runs in a few minutes, two of them failing. The overview shows one cell per day, as bad as the
day's worst run; the suite's page shows where it reads from, when it runs, who hears about
it, every check's history, its open incidents, corrections and restart targets.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from html import escape, unescape
from pathlib import Path
from typing import Any

import pytest

from dq_agent.config import load_project
from dq_agent.config.loader import Project
from dq_agent.engine import RunOptions
from dq_agent.escalate.endpoint import WebRequest
from dq_agent.results import CheckResult, Status, SuiteResult
from dq_agent.store import Store
from dq_agent.ui import overview, suite, templating
from dq_agent.ui.app import Dashboard
from dq_agent.ui.auth import hash_token
from tests.helpers import make_project

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
ANA = "ana@acme.com"
ORDERS = """
suite: orders
description: Paid orders <script>alert(1)</script> & refunds
owner: pete@acme.com
escalation: [pete@acme.com, lead@acme.com, "#data"]
schedule: "0 6 * * *"
timezone: Europe/Paris
source: {connector: warehouse, schema: sales, table: orders}
checks:
  - row_count: {min: 1}
  - freshness: {column: paid_at, max_age: 26h, severity: warn, owner: ana@acme.com}
restart:
  - webhook: {connector: hook, body: {pipeline: agg}}
  - command: {run: [make, agg]}
"""
BROKEN = """
suite: billing
source: {connector: nowhere, table: invoices}
checks:
  - row_count: {minimum: 1}
"""
UNNAMED = "suite: [not, a, name]\nsource: {connector: warehouse, table: t}\nchecks: [row_count]\n"
FRESHNESS = "freshness(paid_at)"
READ_ERROR = "cannot read sales.orders: connection refused"


def nov(day: int, hour: int = 6, minute: int = 0, second: int = 0) -> datetime:
    return datetime(2026, 11, day, hour, minute, second, tzinfo=UTC)


def today(hour: int, minute: int = 0, second: int = 0) -> datetime:
    return datetime(2026, 12, 1, hour, minute, second, tzinfo=UTC)


# The orders suite's live runs, oldest first: (started, status).
RUNS: list[tuple[datetime, Status]] = [
    (nov(24), "pass"),  # eight days ago: before the last seven
    (nov(25), "pass"),
    (nov(28), "fail"),
    (nov(28, 7), "error"),
    (nov(30), "pass"),
    (nov(30, 23, 59, 59), "warn"),
    (today(0), "pass"),  # midnight: today's first run
    # Nine runs in five minutes, two of them failing.
    (today(8, 0, 0), "pass"),
    (today(8, 0, 30), "pass"),
    (today(8, 1, 0), "fail"),
    (today(8, 1, 30), "pass"),
    (today(8, 2, 0), "pass"),
    (today(8, 2, 30), "pass"),
    (today(8, 3, 0), "pass"),
    (today(8, 3, 30), "fail"),
]


def record(
    store: Store,
    started: datetime,
    status: Status,
    *,
    suite_id: str = "orders",
    as_of: datetime | None = None,
) -> None:
    """A run of ``suite_id``: row_count fails it, freshness warns; an error is a source
    that could not be read, where no check ran."""
    checks: tuple[CheckResult, ...] = ()
    if status != "error":
        rows = 0 if status == "fail" else 1200
        row_count: Status = "fail" if status == "fail" else "pass"
        freshness: Status = "warn" if status == "warn" else "pass"
        checks = (
            CheckResult("row_count", "row_count", row_count, "fail", f"{rows} rows"),
            CheckResult(FRESHNESS, "freshness", freshness, "warn", "newest paid_at 3h ago"),
        )
    run_id = store.start_run(command="check", started_at=started, as_of=as_of, suites=[suite_id])
    store.record_suite(
        run_id,
        SuiteResult(
            suite=suite_id,
            status=status,
            started_at=started,
            duration_s=1.0,
            checks=checks,
            error=READ_ERROR if status == "error" else None,
            as_of=as_of,
        ),
    )


@pytest.fixture
def project(tmp_path: Path) -> Project:
    token_hash = hash_token("ana-token-123456")
    make_project(
        tmp_path,
        connectors={
            "warehouse": f"type: sql\nurl: 'sqlite:///{tmp_path}/w.db'\n",
            "hook": "type: webhook\nurl: http://hook.example/agg\n",
        },
        suites={"orders": ORDERS, "billing": BROKEN, "q3 plan": UNNAMED},
        settings=f"state_url: 'sqlite:///{tmp_path}/state.db'\n"
        f"ui:\n  trusted_header: X-User\n  users:\n    {ANA}: {{token_hash: '{token_hash}'}}\n",
    )
    return load_project(tmp_path, env={})


@pytest.fixture
def store(project: Project) -> Iterator[Store]:
    """The orders suite's week, an incident open and one resolved, two corrections and a
    restart; another suite's incident and correction that its page must not show."""
    with Store.open(project.state_url) as opened:
        for started, status in RUNS:
            record(opened, started, status)
        # A replay of an earlier day is no run of today's.
        record(opened, today(9), "error", as_of=nov(20))
        problem = {"dataset": "warehouse/orders", "owners": ["pete@acme.com"]}
        opened.record_problem(
            suite="orders", check="row_count", summary="0 rows <b>", at=today(8, 1), **problem
        )
        opened.record_problem(
            suite="orders", check=FRESHNESS, summary="stale", at=nov(30, 23, 59), **problem
        )
        opened.problems_gone(suite="orders", check=FRESHNESS, dataset="warehouse/orders", at=NOW)
        opened.record_problem(
            suite="events",
            check="row_count",
            dataset="warehouse/events",
            owners=[ANA],
            summary="no events",
            at=NOW,
        )
        for suite_id, key in (("orders", {"id": 7}), ("events", {"id": 8}), ("orders", {"id": 9})):
            opened.ledger_append(
                event="proposed",
                at=nov(30),
                suite=suite_id,
                check="row_count",
                source="warehouse",
                key=key,
                column="amount",
                old=100,
                new=10,
                decided_by="agent",
            )
        opened.restarts_add(
            [
                {
                    "key": "orders:1:1",
                    "batch": "orders:1",
                    "suite": "orders",
                    "target": 1,
                    "label": "command make agg",
                    "incidents": [1],
                }
            ],
            at=nov(29),
        )
        opened.restart_update(1, state="success", finished_at=nov(29, 6, 5))
        yield opened


def cells(html: str, suite_id: str) -> list[tuple[str, str]]:
    """The day cells of ``suite_id``'s row on the overview: (colour class, tooltip as read)."""
    [row] = re.findall(rf'<tr><td><a href="/suites/{suite_id}">.*?</tr>', html)
    found = re.findall(r'<li class="day (\w+)" title="([^"]*)">', row)
    return [(status, unescape(tooltip)) for status, tooltip in found]


def test_the_overview_shows_seven_days_each_as_bad_as_its_worst_run(
    project: Project, store: Store
) -> None:
    html = overview.render(project, store, NOW)
    assert cells(html, "orders") == [
        ("pass", "2026-11-25: 1 run — 1 pass"),
        ("none", "2026-11-26: no runs"),
        ("none", "2026-11-27: no runs"),
        ("error", "2026-11-28: 2 runs — 1 fail, 1 error"),
        ("none", "2026-11-29: no runs"),
        ("warn", "2026-11-30: 2 runs — 1 pass, 1 warn"),
        ("fail", "2026-12-01: 9 runs — 7 pass, 2 fail"),
    ]
    # Screen readers hear what the pointer shows, and a sign marks the day besides colour.
    assert (
        '<li class="day fail" title="2026-12-01: 9 runs — 7 pass, 2 fail">'
        '<span aria-hidden="true">✕</span>'
        '<span class="vh">2026-12-01: 9 runs — 7 pass, 2 fail</span></li>'
    ) in html
    [row] = re.findall(r'<tr><td><a href="/suites/orders">orders</a></td>.*?</tr>', html)
    assert '<td><span class="fail">fail</span></td><td>2026-12-01 08:03 UTC</td>' in row
    assert '<td>2026-12-02 05:00 UTC</td><td><a href="/incidents/1">#1 row_count</a></td>' in row


def test_a_suite_with_an_invalid_file_links_to_its_errors_and_has_empty_days(
    project: Project, store: Store
) -> None:
    html = overview.render(project, store, NOW)
    assert '<a href="/suites/billing">billing</a> <span class="error">(invalid' in html
    assert '<a href="/suites/q3%20plan">q3 plan</a>' in html
    assert cells(html, "billing") == [
        ("none", f"2026-11-{day}: no runs") for day in range(25, 31)
    ] + [("none", "2026-12-01: no runs")]


def test_the_overview_is_rendered_again_only_when_what_it_shows_may_have_changed(
    project: Project, store: Store
) -> None:
    page = overview.Overview(store)
    first = page.render(project, NOW)
    assert first == templating.ascii_only(overview.render(project, store, NOW))
    # The same store, project and minute: the page already rendered, not a new one.
    assert page.render(project, NOW + timedelta(seconds=59)) is first

    # A run recorded: today's cell counts it.
    record(store, today(11), "fail")
    ran = page.render(project, NOW + timedelta(seconds=59))
    assert cells(ran, "orders")[-1] == ("fail", "2026-12-01: 10 runs — 7 pass, 3 fail")
    # Something happened to an incident: it shows.
    store.set_incident_status(1, "snoozed", at=NOW, by=ANA, until=NOW + timedelta(hours=4))
    snoozed = page.render(project, NOW + timedelta(seconds=59))
    assert "<td>snoozed</td>" in snoozed and "<td>snoozed</td>" not in ran
    # Another project loaded, or a new minute: rendered again (the next run moves on).
    assert page.render(load_project(project.root, env={}), NOW) is not snoozed
    later = page.render(project, datetime(2026, 12, 2, 5, 0, 30, tzinfo=UTC))
    assert "2026-12-03 05:00 UTC" in later and "2026-12-03 05:00 UTC" not in snoozed


def test_what_another_process_records_shows_within_a_second(project: Project, store: Store) -> None:
    seconds = [0.0]
    page = overview.Overview(store, monotonic=lambda: seconds[0])
    first = page.render(project, NOW)
    with Store.open(project.state_url) as elsewhere:  # the daemon's, say
        record(elsewhere, today(11), "fail")
    # The store is not asked again within the second: the page from before.
    seconds[0] += overview.RECHECK_S * 0.9
    assert page.render(project, NOW) is first
    seconds[0] += overview.RECHECK_S * 0.1
    ran = page.render(project, NOW)
    assert cells(ran, "orders")[-1] == ("fail", "2026-12-01: 10 runs — 7 pass, 3 fail")
    # Written through the page's own store: at once.
    store.set_incident_status(1, "snoozed", at=NOW, by=ANA, until=NOW + timedelta(hours=4))
    snoozed = page.render(project, NOW)
    assert "<td>snoozed</td>" in snoozed and "<td>snoozed</td>" not in ran


def test_while_a_change_is_rendered_other_requests_get_the_page_before_it(
    project: Project, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    page = overview.Overview(store)
    before = page.render(project, NOW)
    rendering, finish = threading.Event(), threading.Event()
    slow = overview.render

    def render(*args: Any) -> Any:
        rendering.set()
        assert finish.wait(10)
        return slow(*args)

    monkeypatch.setattr(overview, "render", render)
    record(store, today(11), "fail")
    after: list[str] = []
    first = threading.Thread(target=lambda: after.append(page.render(project, NOW)))
    first.start()
    assert rendering.wait(10)
    assert page.render(project, NOW) is before  # not waited for
    finish.set()
    first.join()
    assert cells(after[0], "orders")[-1] == ("fail", "2026-12-01: 10 runs — 7 pass, 3 fail")
    assert page.render(project, NOW) is after[0]


def test_the_days_are_utc_days_whatever_the_clock_s_zone() -> None:
    five_past_midnight_in_tashkent = datetime(
        2026, 12, 1, 0, 5, tzinfo=timezone(timedelta(hours=5))
    )
    days = overview.last_days(five_past_midnight_in_tashkent)
    assert days[0] == datetime(2026, 11, 24, tzinfo=UTC)
    assert days[-1] == datetime(2026, 11, 30, tzinfo=UTC)
    assert len(days) == 7


def test_the_suite_page_says_what_it_reads_when_and_who_hears_about_it(
    project: Project, store: Store
) -> None:
    html = suite.render(project, store, "orders", NOW)
    assert html is not None
    assert "<script>" not in html
    assert (
        "<dt>Description</dt><dd>Paid orders &lt;script&gt;alert(1)&lt;/script&gt; "
        "&amp; refunds</dd>"
    ) in html
    assert (
        "<dt>Source</dt><dd>connector <strong>warehouse</strong> · "
        "table <strong>sales.orders</strong></dd>"
    ) in html
    assert (
        "<dt>Schedule</dt><dd><code>0 6 * * *</code> in Europe/Paris; "
        "next run 2026-12-02 05:00 UTC (06:00 Europe/Paris)</dd>"
    ) in html
    assert "<dt>Owners</dt><dd>pete@acme.com</dd>" in html
    assert "<dt>Escalation</dt><dd>pete@acme.com → lead@acme.com → #data</dd>" in html
    assert '<dt>Last run</dt><dd><span class="fail">fail</span> 2026-12-01 08:03 UTC</dd>' in html
    assert '<li class="day error" title="2026-11-28: 2 runs — 1 fail, 1 error">' in html


def test_each_check_shows_its_last_result_and_its_history(project: Project, store: Store) -> None:
    html = suite.render(project, store, "orders", NOW)
    assert html is not None
    checks = html[html.index("<h2>Checks</h2>") : html.index("<h2>Open incidents</h2>")]
    rows = re.findall(r"<tr>" + r"<td>(.*?)</td>" * 6 + r"</tr>", checks)
    assert [row[:5] for row in rows] == [
        (
            "<strong>row_count</strong>",
            "row_count",
            "fail",
            '<span class="fail">fail</span>',
            "0 rows",
        ),
        (
            '<strong>freshness(paid_at)</strong><br><span class="muted">owner: ana@acme.com</span>',
            "freshness",
            "warn",
            '<span class="pass">pass</span>',
            "newest paid_at 3h ago",
        ),
    ]
    # The fifteen live runs, the source error a gap in every check's history.
    row_count, freshness = (row[5] for row in rows)
    assert row_count.startswith(
        '<span class="spark" role="img" aria-label="History of row_count, oldest first: '
        '15 runs — 11 pass, 3 fail, 1 not run">'
        '<span class="tl pass" title="2026-11-24 06:00 UTC: pass"></span>'
    )
    assert '<span class="tl none" title="2026-11-28 07:00 UTC: not run"></span>' in row_count
    assert row_count.count('class="tl ') == 15
    assert re.findall(r'class="tl (\w+)"', row_count)[-2:] == ["pass", "fail"]
    assert (
        'aria-label="History of freshness(paid_at), oldest first: '
        '15 runs — 13 pass, 1 warn, 1 not run"'
    ) in freshness


def test_the_suite_page_lists_its_open_incidents_corrections_and_restart_targets(
    project: Project, store: Store
) -> None:
    html = suite.render(project, store, "orders", NOW)
    assert html is not None
    incidents = html[html.index("<h2>Open incidents</h2>") : html.index("<h2>Corrections</h2>")]
    assert re.findall(r'href="(/incidents/\d+)"', incidents) == ["/incidents/1"]
    assert "<td>0 rows &lt;b&gt;</td>" in incidents
    corrections = html[html.index("<h2>Corrections</h2>") : html.index("<h2>Restart targets")]
    assert re.findall(r'href="([^"]+)"', corrections) == [
        "/corrections#correction-3",
        "/corrections#correction-1",
    ]
    assert "<td>id=9 · amount</td><td>100 → <strong>10</strong></td><td>pending</td>" in corrections
    restarts = html[html.index("<h2>Restart targets</h2>") :]
    assert re.findall(r"<tr><td>(.*?)</td><td>(.*?)</td><td>(.*?)</td></tr>", restarts) == [
        ("webhook hook", "webhook", '<span class="muted">never restarted</span>'),
        ("command make agg", "command", "success 2026-11-29 06:05 UTC"),
    ]


def test_a_suite_whose_file_is_invalid_shows_its_errors_instead(
    project: Project, store: Store
) -> None:
    html = suite.render(project, store, "billing", NOW)
    assert html is not None
    errors = re.findall(r"<li>(.*?)</li>", html[: html.index('<dl class="about">')])
    assert errors == [
        escape(
            "checks/billing.yml:2:21: source.connector: unknown connector 'nowhere'; "
            "available: hook, warehouse"
        ),
        escape(
            "checks/billing.yml:4:17: checks[0].row_count.minimum: unknown key; "
            "expected one of: max, min, name, owner, severity"
        ),
    ]
    assert "This suite does not run: its configuration is invalid." in html
    assert "<h2>Checks</h2>" not in html and "<h2>Restart targets</h2>" not in html
    assert "<h2>Open incidents</h2>" in html and "No open incidents." in html


def test_the_served_overview_is_ascii_and_reads_as_rendered(project: Project, store: Store) -> None:
    """Rendered once and served many times over, the overview is sent as ASCII (copied, not
    encoded character by character): its dashes and signs become character references."""
    app = Dashboard(lambda: project, store, RunOptions(clock=lambda: NOW))
    answer = app.handle(WebRequest("GET", "/", {}, {"x-user": ANA}, {}))
    assert answer is not None and answer.status == 200
    assert answer.body.isascii()
    assert "<title>Overview &middot; dq-agent</title>" in answer.body
    rendered = overview.render(project, store, NOW)
    assert not rendered.isascii()  # a dash in each day's runs, a sign in each bad day
    assert cells(answer.body, "orders") == cells(rendered, "orders")
    assert '<span aria-hidden="true">&#10005;</span>' in answer.body  # the failed day's ✕


def test_the_dashboard_serves_a_page_per_suite_and_404_for_an_unknown_one(
    project: Project, store: Store
) -> None:
    app = Dashboard(lambda: project, store, RunOptions(clock=lambda: NOW))

    def get(path: str) -> tuple[int, str]:
        answer = app.handle(WebRequest("GET", path, {}, {"x-user": ANA}, {}))
        assert answer is not None
        return answer.status, answer.body

    status, body = get("/suites/orders")
    assert status == 200
    assert "<title>Suite orders &middot; dq-agent</title>" in body
    assert get("/suites/q3%20plan")[0] == 200
    assert get("/suites/nope") == (404, "no suite nope")
    assert get("/suites/%3Cb%3E") == (404, "no suite <b>")
    assert app.handle(WebRequest("GET", "/suites/orders/more", {}, {"x-user": ANA}, {})) is None


# -- the store's counts, on every database the store runs on ----------------------------------


@pytest.fixture(params=["sqlite_url", "postgres_url", "mariadb_url"])
def any_store(request: pytest.FixtureRequest) -> Iterator[Store]:
    with Store.open(str(request.getfixturevalue(request.param))) as opened:
        yield opened


def test_runs_are_counted_per_day_by_status_in_the_database(any_store: Store) -> None:
    start = datetime(2026, 11, 29, tzinfo=UTC)
    second, day = timedelta(seconds=1), timedelta(days=1)
    runs: list[tuple[datetime, Status]] = [
        (start - second, "fail"),  # before the first day
        (start, "pass"),
        (start + day - second, "fail"),
        (start + day, "pass"),
        (start + day + timedelta(hours=1), "pass"),
        (start + 3 * day - second, "error"),
        (start + 3 * day, "fail"),  # after the last day
    ]
    for started, status in runs:
        record(any_store, started, status)
    record(any_store, start, "pass", suite_id="events")
    record(any_store, start + timedelta(hours=2), "fail", as_of=start)  # a replay

    days = [start, start + day, start + 2 * day]
    assert any_store.suite_days(start=start, days=3) == {
        "orders": {
            days[0]: {"pass": 1, "fail": 1},
            days[1]: {"pass": 2},
            days[2]: {"error": 1},
        },
        "events": {days[0]: {"pass": 1}},
    }
    assert any_store.suite_days(start=start, days=3, suite="events") == {
        "events": {days[0]: {"pass": 1}}
    }
    assert any_store.suite_days(start=start + 10 * day, days=7) == {}


def test_the_latest_run_of_each_suite_and_a_suite_s_recent_runs(any_store: Store) -> None:
    start = datetime(2026, 11, 29, tzinfo=UTC)
    hour = timedelta(hours=1)
    record(any_store, start, "pass")
    record(any_store, start + hour, "fail")
    record(any_store, start + 2 * hour, "error")
    record(any_store, start + 3 * hour, "pass", as_of=start)  # a replay
    record(any_store, start, "pass", suite_id="events")
    record(any_store, start, "fail", suite_id="events")  # the same moment, recorded last

    assert any_store.latest_runs() == {
        "orders": (start + 2 * hour, "error"),
        "events": (start, "fail"),
    }
    runs = any_store.suite_runs("orders", limit=2)
    assert [(r["started_at"], r["status"], r["error"]) for r in runs] == [
        (start + hour, "fail", None),
        (start + 2 * hour, "error", READ_ERROR),
    ]
    assert runs[0]["checks"] == {
        "row_count": {"status": "fail", "message": "0 rows"},
        FRESHNESS: {"status": "pass", "message": "newest paid_at 3h ago"},
    }
    assert runs[1]["checks"] == {}
    assert any_store.suite_runs("nothing", limit=30) == []


def test_the_newest_run_and_incident_event_ids_move_with_each_record(any_store: Store) -> None:
    assert any_store.newest_ids() == (0, 0)
    record(any_store, NOW, "pass")
    runs, events = any_store.newest_ids()
    assert runs > 0 and events == 0
    change = any_store.record_problem(
        suite="orders",
        check="row_count",
        dataset="warehouse/orders",
        owners=[ANA],
        summary="0 rows",
        at=NOW,
    )
    opened = any_store.newest_ids()
    assert opened == (runs, change.event_id)
    any_store.nudged(change.incident_id, at=NOW, level=0, nudges=1, event="nudged", detail="")
    assert any_store.newest_ids()[1] > opened[1]
