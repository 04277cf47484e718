"""The dashboard's HTML comes only from its Jinja2 templates, with autoescaping on: text from
data, the store, Slack or a model shows as text on every page, never as markup."""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from dq_agent.config import load_project
from dq_agent.config.loader import Project
from dq_agent.engine import RunOptions
from dq_agent.escalate.endpoint import WebRequest
from dq_agent.results import CheckResult, SuiteResult
from dq_agent.store import Store
from dq_agent.ui import pages, templating
from dq_agent.ui.app import Dashboard
from dq_agent.ui.charts import ChartPoint, render_chart
from dq_agent.ui.slackview import to_html
from tests.helpers import make_project

UI = Path(__file__).resolve().parent.parent / "dq_agent" / "ui"
TEMPLATES = UI / "templates"
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
LEAD = "lead@acme.com"
# What a person, a source system or a model could write anywhere: a tag, both quotes, an entity.
HOSTILE = "<script>alert(1)</script>\"'&"
SHOWN = "&lt;script&gt;alert(1)&lt;/script&gt;&quot;&#x27;&amp;"
SUITE = f"""
suite: orders
description: {json.dumps(HOSTILE)}
owner: {LEAD}
source: {{connector: warehouse, table: orders}}
checks:
  - row_count: {{min: 1, name: {json.dumps(HOSTILE)}}}
  - volume_anomaly: {{timestamp_column: paid_at, bucket: day, name: {json.dumps(HOSTILE + " v")}}}
"""


def shows_as_text(html: str) -> None:
    """``HOSTILE`` is on the page escaped, and nothing of it is markup."""
    assert SHOWN in html
    assert HOSTILE not in html and "<script>" not in html


@pytest.fixture
def project(tmp_path: Path) -> Project:
    make_project(
        tmp_path,
        connectors={"warehouse": f"type: sql\nurl: 'sqlite:///{tmp_path}/w.db'\n"},
        suites={"orders": SUITE},
        settings=f"state_url: 'sqlite:///{tmp_path}/state.db'\nui:\n  trusted_header: X-User\n",
    )
    loaded = load_project(tmp_path, env={})
    assert loaded.issues == ()
    return loaded


@pytest.fixture
def store(project: Project) -> Iterator[Store]:
    """A failed run, an incident, a fix waiting and a Slack message, all full of markup."""
    with Store.open(project.state_url) as opened:
        run_id = opened.start_run(command="check", started_at=NOW, as_of=None, suites=["orders"])
        check = CheckResult(HOSTILE, "row_count", "fail", "fail", HOSTILE)
        opened.record_suite(
            run_id,
            SuiteResult("orders", "fail", NOW, 1.0, (check,), error=HOSTILE),
        )
        evidence = {
            "observed": {HOSTILE: HOSTILE, "by_region": {HOSTILE: HOSTILE}},
            "findings": [
                {"key": {"Id": HOSTILE}, "column": HOSTILE, "observed": HOSTILE, "reason": HOSTILE}
            ],
        }
        opened.record_problem(
            suite="orders",
            check=HOSTILE,
            dataset=HOSTILE,
            owners=[LEAD, HOSTILE],
            summary=HOSTILE,
            at=NOW,
            evidence=evidence,
        )
        opened.ledger_append(
            event="proposed",
            at=NOW,
            suite="orders",
            check=HOSTILE,
            source="warehouse",
            key={"Id": HOSTILE},
            column="amount",
            old=HOSTILE,
            new=HOSTILE,
            evidence=[HOSTILE],
            decided_by=HOSTILE,
            detail=HOSTILE,
        )
        message = {"key": "m1", "kind": "fyi", "incident_id": 1, "recipient": HOSTILE}
        opened.outbox_add([{**message, "text": HOSTILE}], at=NOW)
        yield opened


@pytest.mark.parametrize("path", ["/", "/suites/orders", "/incidents/1", "/corrections"])
def test_text_from_the_store_shows_as_text_on_every_page(
    project: Project, store: Store, path: str
) -> None:
    app = Dashboard(lambda: project, store, RunOptions(clock=lambda: NOW))

    answer = app.handle(WebRequest("GET", path, {"error": HOSTILE}, {"x-user": LEAD}, {}))

    assert answer is not None and answer.status == 200
    shows_as_text(answer.body)
    # The flash, the page's own data and the Slack thread, each escaped once.
    assert f'<div class="flash bad" role="alert">{SHOWN}</div>' in answer.body
    assert answer.body.count(SHOWN) >= 3


def test_a_monitor_named_with_markup_is_escaped_in_its_card_and_its_chart(
    project: Project, store: Store
) -> None:
    app = Dashboard(lambda: project, store, RunOptions(clock=lambda: NOW))

    answer = app.handle(WebRequest("GET", "/monitors", {}, {"x-user": LEAD}, {}))

    assert answer is not None and answer.status == 200
    shows_as_text(answer.body)
    assert f'<section class="card" id="{SHOWN} v">' in answer.body
    assert f'aria-label="orders / {SHOWN} v"' in answer.body


def test_the_slack_thread_the_user_and_the_title_are_escaped() -> None:
    page = pages.page(HOSTILE, to_html(HOSTILE, {}), user=HOSTILE, flash={"done": HOSTILE})

    assert f"<title>{SHOWN} &middot; dq-agent</title>" in page
    assert f'<span class="who">{SHOWN}</span>' in page
    assert f'<div class="flash ok" role="status">{SHOWN}</div>' in page
    # In Slack's own markup a raw "<…>" is the sender's markup: it shows as its label, no tag.
    assert "<script>" not in page and "scriptalert(1)/script" in page


def test_the_sign_in_page_escapes_its_message_and_its_token() -> None:
    page = pages.login(HOSTILE, HOSTILE)

    shows_as_text(page)
    assert f'<input type="hidden" name="csrf" value="{SHOWN}">' in page


def test_a_chart_escapes_its_title_labels_and_tooltips() -> None:
    point = ChartPoint(NOW, HOSTILE, 3.0, 1.0, 5.0, "anomaly")

    svg = render_chart([point], title=HOSTILE)

    shows_as_text(svg)
    assert svg.count(SHOWN) == 4  # the label, the title, the aria-label and the tooltip


# -- the templates and the environment -----------------------------------------------------------


def test_every_template_is_rendered_with_autoescaping_and_strict_undefined() -> None:
    env = templating.environment()
    names = env.list_templates()

    assert sorted(names) == sorted(p.name for p in TEMPLATES.iterdir())
    assert {"base.html", "macros.html", "chart.svg"} <= set(names)
    for name in names:
        template = env.get_template(name)
        assert template.new_context({}).eval_ctx.autoescape is True, name
    assert env.undefined.__name__ == "StrictUndefined"
    assert templating.environment() is env  # one per process


def test_no_template_marks_anything_safe_or_turns_escaping_off() -> None:
    for path in sorted(TEMPLATES.iterdir()):
        source = path.read_text(encoding="utf-8")
        assert not re.search(r"\|\s*safe\b|autoescape\s+false|Markup", source), path.name


def test_an_undefined_name_in_a_template_is_an_error() -> None:
    with pytest.raises(Exception, match="'nothing' is undefined"):
        templating.environment().from_string("{{ nothing }}").render()


# HTML and SVG elements the dashboard draws: none may be written in Python any more.
_TAG = re.compile(
    r"<\s*/?\s*(?:!doctype|a|blockquote|br|button|circle|code|dd|del|div|dl|dt|em|form|h[1-6]|"
    r"head|header|html|input|label|li|line|main|meta|ol|p|path|polyline|pre|section|span|"
    r"strong|style|svg|table|tbody|td|text|th|thead|title|tr|ul)(?=[\s>/])",
    re.IGNORECASE,
)


def html_in_strings(source: str) -> list[str]:
    """The string literals (f-strings' text included) of ``source`` holding an HTML tag."""
    return [
        node.value
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and _TAG.search(node.value)
    ]


def test_the_scan_finds_tags_in_strings_and_fstrings_only() -> None:
    found = html_in_strings(
        'a = "<div class=x>"\n'
        'b = f"<td>{value}</td>"\n'
        "c = '<br>'.join(lines)\n"
        "# <table> in a comment\n"
        'd = "<@U123> and <https://x|y> are Slack markup, 1 < 2"\n'
    )

    assert found == ["<div class=x>", "<td>", "</td>", "<br>"]


@pytest.mark.parametrize("path", sorted(UI.glob("*.py")), ids=lambda p: p.name)
def test_no_module_of_the_dashboard_writes_html(path: Path) -> None:
    assert html_in_strings(path.read_text(encoding="utf-8")) == []


def test_only_the_template_environment_makes_markup() -> None:
    for path in sorted(UI.glob("*.py")):
        calls = [
            node
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
            if isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in ("Markup", "escape")
        ]
        assert path.name == "templating.py" or calls == [], path.name
